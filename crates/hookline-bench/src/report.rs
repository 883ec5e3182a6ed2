//! What a run found: figures with their ceilings and targets, the machine it
//! ran on, and how that is written out (JSON for tools, markdown for people).

use std::fmt::Write as _;

use serde::Serialize;

/// One measured number, with what it is compared with.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct Figure {
    pub scenario: String,
    /// Which store or design the figure is about (`sqlite`, `dynamodb`, `scan`...).
    pub subject: String,
    pub metric: String,
    pub value: f64,
    pub unit: String,
    /// The same quantity for the ceiling, measured in the same run.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub ceiling: Option<f64>,
    /// `value / ceiling`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub ratio: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub target: Option<Target>,
}

/// A target a figure is reported against.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct Target {
    /// As a person reads it, e.g. `<= 6 write units`.
    pub text: String,
    pub met: bool,
}

impl Figure {
    pub fn new(scenario: &str, subject: &str, metric: &str, value: f64, unit: &str) -> Self {
        Self {
            scenario: scenario.to_owned(),
            subject: subject.to_owned(),
            metric: metric.to_owned(),
            value,
            unit: unit.to_owned(),
            ceiling: None,
            ratio: None,
            target: None,
        }
    }

    /// Compares the figure with its ceiling: `ratio = value / ceiling`.
    pub fn against(mut self, ceiling: f64) -> Self {
        self.ceiling = Some(ceiling);
        self.ratio = (ceiling != 0.0).then(|| self.value / ceiling);
        self
    }

    pub fn target(mut self, text: &str, met: bool) -> Self {
        self.target = Some(Target {
            text: text.to_owned(),
            met,
        });
        self
    }
}

/// The machine a run measured, so numbers are read with it in mind.
#[derive(Debug, Clone, Serialize, Default)]
pub struct Machine {
    pub cpus: usize,
    pub cpu_model: String,
    pub memory_kib: u64,
    pub load_average: String,
    pub build: &'static str,
}

impl Machine {
    pub fn describe() -> Self {
        let cpuinfo = std::fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
        let meminfo = std::fs::read_to_string("/proc/meminfo").unwrap_or_default();
        Self {
            cpus: std::thread::available_parallelism().map_or(1, usize::from),
            cpu_model: field(&cpuinfo, "model name").unwrap_or_else(|| "unknown".to_owned()),
            memory_kib: field(&meminfo, "MemTotal")
                .and_then(|v| v.trim_end_matches(" kB").trim().parse().ok())
                .unwrap_or_default(),
            load_average: std::fs::read_to_string("/proc/loadavg")
                .map(|l| l.split_whitespace().take(3).collect::<Vec<_>>().join(" "))
                .unwrap_or_default(),
            build: if cfg!(debug_assertions) {
                "debug"
            } else {
                "release"
            },
        }
    }
}

/// The value of the first `name: value` line in a /proc file.
pub fn field(text: &str, name: &str) -> Option<String> {
    text.lines().find_map(|line| {
        let (key, value) = line.split_once(':')?;
        (key.trim() == name).then(|| value.trim().to_owned())
    })
}

/// A whole run.
#[derive(Debug, Clone, Serialize)]
pub struct Report {
    pub started_at: String,
    pub quick: bool,
    pub seed: u64,
    pub machine: Machine,
    pub elapsed_seconds: f64,
    pub scenarios: Vec<ScenarioReport>,
}

/// One scenario's figures and what a reader should know about them.
#[derive(Debug, Clone, Serialize)]
pub struct ScenarioReport {
    pub name: String,
    pub seconds: f64,
    pub figures: Vec<Figure>,
    pub notes: Vec<String>,
}

impl Report {
    pub fn to_markdown(&self) -> String {
        let mut out = String::new();
        let m = &self.machine;
        let _ = writeln!(out, "# hookline-bench results\n");
        let _ = writeln!(
            out,
            "Run {} ({}, {} build, seed {}), {:.0} s. Machine: {} CPUs ({}), {:.1} GiB memory, load average at start {}.\n",
            self.started_at,
            if self.quick { "--quick" } else { "full" },
            m.build,
            self.seed,
            self.elapsed_seconds,
            m.cpus,
            m.cpu_model,
            m.memory_kib as f64 / 1024.0 / 1024.0,
            m.load_average,
        );
        for scenario in &self.scenarios {
            let _ = writeln!(out, "## {} ({:.0} s)\n", scenario.name, scenario.seconds);
            if !scenario.figures.is_empty() {
                out.push_str("| subject | metric | value | ceiling | ratio | target |\n");
                out.push_str("|---|---|---:|---:|---:|---|\n");
                for f in &scenario.figures {
                    let _ = writeln!(
                        out,
                        "| {} | {} | {} {} | {} | {} | {} |",
                        f.subject,
                        f.metric,
                        number(f.value),
                        f.unit,
                        f.ceiling.map(number).unwrap_or_default(),
                        f.ratio.map(|r| format!("{:.0}%", r * 100.0)).unwrap_or_default(),
                        f.target
                            .as_ref()
                            .map(|t| format!("{} {}", t.text, if t.met { "(met)" } else { "(**not met**)" }))
                            .unwrap_or_default(),
                    );
                }
                out.push('\n');
            }
            for note in &scenario.notes {
                let _ = writeln!(out, "- {note}");
            }
            if !scenario.notes.is_empty() {
                out.push('\n');
            }
        }
        out
    }
}

/// A number as people read it: few significant digits, no float noise.
pub fn number(value: f64) -> String {
    if !value.is_finite() {
        return value.to_string();
    }
    let magnitude = value.abs();
    if magnitude >= 100.0 || value.fract() == 0.0 {
        format!("{value:.0}")
    } else if magnitude >= 10.0 {
        format!("{value:.1}")
    } else {
        format!("{value:.2}")
    }
}

/// The `p`th percentile (0..=100) of sorted samples, nearest rank: the
/// smallest sample with at least `p`% of samples at or below it.
pub fn percentile(sorted: &[u64], p: f64) -> Option<u64> {
    if sorted.is_empty() {
        return None;
    }
    // The epsilon keeps 99.9% of 1000 at rank 999 despite float rounding.
    let rank = ((p / 100.0) * sorted.len() as f64 - 1e-9).ceil() as usize;
    Some(sorted[rank.clamp(1, sorted.len()) - 1])
}

/// The median of a few repeated measurements.
pub fn median(values: &mut [f64]) -> f64 {
    if values.is_empty() {
        return f64::NAN;
    }
    values.sort_by(f64::total_cmp);
    let mid = values.len() / 2;
    if mid * 2 == values.len() {
        (values[mid - 1] + values[mid]) / 2.0
    } else {
        values[mid]
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percentiles_use_the_nearest_rank() {
        let samples: Vec<u64> = (1..=1000).collect();
        assert_eq!(percentile(&samples, 50.0), Some(500));
        assert_eq!(percentile(&samples, 99.0), Some(990));
        assert_eq!(percentile(&samples, 99.9), Some(999));
        assert_eq!(percentile(&samples, 100.0), Some(1000));
        assert_eq!(percentile(&samples, 0.0), Some(1));
        assert_eq!(percentile(&[7], 99.9), Some(7));
        assert_eq!(percentile(&[], 50.0), None);
    }

    #[test]
    fn medians_of_odd_and_even_counts() {
        assert_eq!(median(&mut [3.0, 1.0, 2.0]), 2.0);
        assert_eq!(median(&mut [4.0, 1.0, 2.0, 3.0]), 2.5);
        assert!(median(&mut []).is_nan());
    }

    #[test]
    fn numbers_are_printed_with_few_digits() {
        assert_eq!(number(12345.678), "12346");
        assert_eq!(number(9.0), "9");
        assert_eq!(number(12.345), "12.3");
        assert_eq!(number(0.12345), "0.12");
    }

    #[test]
    fn a_figure_against_its_ceiling_has_a_ratio() {
        let f = Figure::new("intake", "sqlite", "req/s", 50.0, "req/s").against(200.0);
        assert_eq!(f.ratio, Some(0.25));
        assert_eq!(Figure::new("s", "x", "m", 1.0, "u").against(0.0).ratio, None);
    }

    #[test]
    fn the_markdown_table_shows_ceiling_ratio_and_verdict() {
        let report = Report {
            started_at: "2026-11-23T21:00:00Z".to_owned(),
            quick: true,
            seed: 1,
            machine: Machine {
                cpus: 2,
                cpu_model: "Test CPU".to_owned(),
                memory_kib: 24 * 1024 * 1024,
                load_average: "1.00 0.50 0.25".to_owned(),
                build: "debug",
            },
            elapsed_seconds: 3.0,
            scenarios: vec![ScenarioReport {
                name: "cost".to_owned(),
                seconds: 1.0,
                figures: vec![
                    Figure::new("cost", "dynamodb", "write units per job", 9.0, "WCU").target("<= 6", false),
                ],
                notes: vec!["a note".to_owned()],
            }],
        };
        let md = report.to_markdown();
        assert!(
            md.contains("| dynamodb | write units per job | 9 WCU |  |  | <= 6 (**not met**) |"),
            "{md}"
        );
        assert!(md.contains("2 CPUs (Test CPU), 24.0 GiB"), "{md}");
        assert!(md.contains("- a note"), "{md}");
        let json = serde_json::to_value(&report).expect("json");
        assert_eq!(json["scenarios"][0]["figures"][0]["target"]["met"], false);
    }
}
