//! `hookline-bench`: hookline's benchmarks, each figure printed beside its
//! ceiling measured in the same run, written as JSON and a markdown table.
//! See docs/BENCHMARKS.md for what each scenario measures and how to read it.

mod cost;
mod e2e;
mod fanout;
mod ingest;
mod intake;
mod load;
mod nostore;
mod payload_cost;
mod report;
mod rig;
mod scale;
mod timed;

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Instant;

use anyhow::{Context, Result};
use clap::{Parser, ValueEnum};

use report::{Machine, Report};

/// hookline's benchmarks: throughput, latency, DynamoDB cost and scale-out,
/// each against its ceiling measured in the same run.
#[derive(Debug, Parser)]
#[command(name = "hookline-bench", version)]
struct Cli {
    /// Everything small: checks the benchmark works (under 2 minutes); the numbers mean little.
    #[arg(long)]
    quick: bool,
    /// Where to write results.json and results.md.
    #[arg(long, value_name = "DIR", default_value = "target/bench")]
    out: PathBuf,
    /// Scenarios to run, comma-separated (default: all).
    #[arg(long, value_enum, value_delimiter = ',', value_name = "LIST")]
    scenarios: Vec<Scenario>,
    /// Seed for everything random (job ids, jitter, mock faults).
    #[arg(long, default_value_t = 1)]
    seed: u64,
    /// A running DynamoDB endpoint to use instead of starting DynamoDB Local.
    #[arg(long, env = "HOOKLINE_BENCH_DYNAMODB_ENDPOINT", value_name = "URL")]
    dynamodb_endpoint: Option<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
enum Scenario {
    /// POST /webhook under closed-loop load, beside a no-store ceiling.
    Intake,
    /// 10,000 jobs accepted then drained, beside raw store writes/s.
    E2e,
    /// DynamoDB capacity units per job and per poll.
    Cost,
    /// 1, 2 and 4 processor processes on one DynamoDB table.
    Scale,
    /// Peak RSS of the server during the intake scenario.
    Memory,
    /// Events to 1 and to 10 endpoints: events/s, deliveries/s, latency, write units.
    Fanout,
    /// POST /in/{source}: verified requests/s and events/s with splitting, beside a no-store ceiling.
    Ingest,
}

impl Scenario {
    const ALL: [Scenario; 7] = [
        Self::Intake,
        Self::E2e,
        Self::Cost,
        Self::Scale,
        Self::Memory,
        Self::Fanout,
        Self::Ingest,
    ];

    fn name(self) -> &'static str {
        match self {
            Self::Intake => "intake",
            Self::E2e => "e2e",
            Self::Cost => "cost",
            Self::Scale => "scale",
            Self::Memory => "memory",
            Self::Fanout => "fanout",
            Self::Ingest => "ingest",
        }
    }
}

/// What every scenario reads.
#[derive(Debug, Clone)]
pub struct Settings {
    pub quick: bool,
    pub seed: u64,
}

fn main() -> ExitCode {
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(err) if !err.use_stderr() => {
            // --help and --version
            let _ = err.print();
            return ExitCode::SUCCESS;
        }
        Err(err) => {
            let text = err.to_string();
            let first = text.lines().next().unwrap_or("invalid arguments");
            eprintln!(
                "hookline-bench: {} (see --help)",
                first.trim_start_matches("error: ")
            );
            return ExitCode::from(2);
        }
    };
    let runtime = match tokio::runtime::Builder::new_multi_thread().enable_all().build() {
        Ok(runtime) => runtime,
        Err(err) => {
            eprintln!("hookline-bench: starting the async runtime: {err}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(run(cli)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            eprintln!("hookline-bench: {err:#}");
            ExitCode::FAILURE
        }
    }
}

async fn run(cli: Cli) -> Result<()> {
    let started = Instant::now();
    let settings = Settings {
        quick: cli.quick,
        seed: cli.seed,
    };
    let selected: Vec<Scenario> = if cli.scenarios.is_empty() {
        Scenario::ALL.to_vec()
    } else {
        Scenario::ALL
            .into_iter()
            .filter(|s| cli.scenarios.contains(s))
            .collect()
    };
    let mut report = Report {
        started_at: chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
        quick: cli.quick,
        seed: cli.seed,
        machine: Machine::describe(),
        elapsed_seconds: 0.0,
        scenarios: Vec::new(),
    };
    std::fs::create_dir_all(&cli.out).with_context(|| format!("creating {}", cli.out.display()))?;
    let dynamo = rig::Dynamo::new(cli.dynamodb_endpoint.clone());
    for scenario in selected {
        eprintln!("hookline-bench: scenario {}", scenario.name());
        let scenario_started = Instant::now();
        let mut result = match scenario {
            Scenario::Cost => cost::run(&settings, &dynamo).await,
            Scenario::Intake => intake::run(&settings, &dynamo).await,
            Scenario::Memory => intake::memory(&settings).await,
            Scenario::Ingest => ingest::run(&settings).await,
            Scenario::E2e => e2e::run(&settings, &dynamo).await,
            Scenario::Scale => scale::run(&settings, &dynamo).await,
            Scenario::Fanout => fanout::run(&settings, &dynamo).await,
        }
        .with_context(|| format!("scenario {}", scenario.name()))?;
        result.seconds = scenario_started.elapsed().as_secs_f64();
        for figure in &result.figures {
            eprintln!(
                "  {:<28} {:<48} {:>10} {}",
                figure.subject,
                figure.metric,
                report::number(figure.value),
                figure.unit
            );
        }
        report.scenarios.push(result);
    }
    report.elapsed_seconds = started.elapsed().as_secs_f64();
    let json = cli.out.join("results.json");
    let md = cli.out.join("results.md");
    std::fs::write(&json, serde_json::to_string_pretty(&report)?)
        .with_context(|| format!("writing {}", json.display()))?;
    std::fs::write(&md, report.to_markdown()).with_context(|| format!("writing {}", md.display()))?;
    eprintln!(
        "hookline-bench: done in {:.0} s; wrote {} and {}",
        report.elapsed_seconds,
        json.display(),
        md.display()
    );
    Ok(())
}
