//! The load generator: keep-alive HTTP clients sending one request body,
//! closed loop (each client sends its next request when the answer comes)
//! or open loop (requests at a fixed rate, latency counted from when each
//! was due, so a stalled server is not hidden by a stalled client).

use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Result;
use reqwest::header::CONTENT_TYPE;

use crate::report::percentile;

/// What one load run saw: answers in the measured window and their latencies.
#[derive(Debug, Clone, Default)]
pub struct LoadResult {
    /// Answers with the expected status in the window.
    pub ok: u64,
    /// Other answers and transport errors in the window.
    pub errors: u64,
    pub seconds: f64,
    /// Latencies of the `ok` answers, microseconds, sorted. Open loop: from
    /// when the request was due.
    pub latencies_us: Vec<u64>,
    /// Open loop only: latencies of the `ok` answers from when each request
    /// was actually sent, sorted. Far below `latencies_us`, it says the
    /// client side (this process, starved of CPU) sent late, not the server.
    pub from_send_us: Vec<u64>,
    /// The first unexpected answer, for the report.
    pub first_error: Option<String>,
    /// CPU time this whole process (server, load generator, all threads)
    /// spent in the measured window, seconds; `None` where /proc is missing.
    pub cpu_seconds: Option<f64>,
}

impl LoadResult {
    pub fn rate(&self) -> f64 {
        self.ok as f64 / self.seconds
    }

    /// CPU milliseconds this process spent per answered request.
    pub fn cpu_ms_per_request(&self) -> f64 {
        match self.cpu_seconds {
            Some(cpu) if self.ok > 0 => cpu * 1000.0 / self.ok as f64,
            _ => f64::NAN,
        }
    }

    /// The `p`th percentile latency in milliseconds.
    pub fn latency_ms(&self, p: f64) -> f64 {
        percentile(&self.latencies_us, p).map_or(f64::NAN, |us| us as f64 / 1000.0)
    }

    /// The `p`th percentile latency from the actual send, milliseconds.
    pub fn sent_latency_ms(&self, p: f64) -> f64 {
        percentile(&self.from_send_us, p).map_or(f64::NAN, |us| us as f64 / 1000.0)
    }

    fn merge(&mut self, other: Sample) {
        self.ok += other.latencies_us.len() as u64;
        self.errors += other.errors;
        self.latencies_us.extend(other.latencies_us);
        self.from_send_us.extend(other.from_send_us);
        if self.first_error.is_none() {
            self.first_error = other.first_error;
        }
    }
}

#[derive(Debug, Default)]
struct Sample {
    latencies_us: Vec<u64>,
    from_send_us: Vec<u64>,
    errors: u64,
    first_error: Option<String>,
}

impl Sample {
    fn record(&mut self, outcome: Result<u16, reqwest::Error>, expected: u16, latency: Duration) {
        match outcome {
            Ok(status) if status == expected => {
                self.latencies_us
                    .push(u64::try_from(latency.as_micros()).unwrap_or(u64::MAX));
            }
            Ok(status) => {
                self.errors += 1;
                self.first_error.get_or_insert_with(|| format!("HTTP {status}"));
            }
            Err(err) => {
                self.errors += 1;
                self.first_error.get_or_insert_with(|| err.to_string());
            }
        }
    }
}

/// One request to send again and again.
#[derive(Debug, Clone)]
pub struct Request {
    pub client: reqwest::Client,
    pub url: String,
    pub body: Arc<Vec<u8>>,
    pub expected: u16,
}

impl Request {
    async fn send(&self) -> Result<u16, reqwest::Error> {
        let response = self
            .client
            .post(&self.url)
            .header(CONTENT_TYPE, "application/json")
            .body(self.body.as_ref().clone())
            .send()
            .await?;
        let status = response.status().as_u16();
        // Read the body so the connection goes back to the pool.
        response.bytes().await?;
        Ok(status)
    }
}

/// `clients` loops, each sending as soon as its last answer came, for
/// `warmup` unmeasured and then `measure`.
pub async fn closed_loop(
    request: &Request,
    clients: usize,
    warmup: Duration,
    measure: Duration,
) -> LoadResult {
    let start = Instant::now();
    let window_start = start + warmup;
    let end = window_start + measure;
    let tasks: Vec<_> = (0..clients)
        .map(|_| {
            let request = request.clone();
            tokio::spawn(async move {
                let mut sample = Sample::default();
                loop {
                    let sent = Instant::now();
                    if sent >= end {
                        break;
                    }
                    let outcome = request.send().await;
                    if sent >= window_start {
                        sample.record(outcome, request.expected, sent.elapsed());
                    }
                }
                sample
            })
        })
        .collect();
    let cpu = cpu_in_window(window_start, end).await;
    let mut result = collect(tasks, measure).await;
    result.cpu_seconds = cpu;
    result
}

/// This process's CPU time between two instants (sleeps until `end`).
async fn cpu_in_window(start: Instant, end: Instant) -> Option<f64> {
    tokio::time::sleep_until(start.into()).await;
    let before = process_cpu_seconds();
    tokio::time::sleep_until(end.into()).await;
    Some(process_cpu_seconds()? - before?)
}

/// User + system CPU time of this process so far, from /proc/self/stat.
pub fn process_cpu_seconds() -> Option<f64> {
    let stat = std::fs::read_to_string("/proc/self/stat").ok()?;
    // Fields after the command name, which is in parentheses and may hold spaces.
    let rest = stat.rsplit_once(')')?.1;
    let fields: Vec<&str> = rest.split_whitespace().collect();
    // utime and stime are fields 14 and 15 of the line, 12 and 13 after the name.
    let ticks: u64 = fields.get(11)?.parse::<u64>().ok()? + fields.get(12)?.parse::<u64>().ok()?;
    // USER_HZ is 100 on every Linux we run on.
    Some(ticks as f64 / 100.0)
}

/// Requests at `rate` per second for `warmup` then `measure`, whatever the
/// server's pace, over `connections` keep-alive connections, as wrk2 does:
/// each connection sends on its own schedule (`rate / connections` a
/// second, the schedules spread over one period); a request whose time
/// comes while its connection still waits for the last answer goes as soon
/// as that answer is in, and its latency counts from when it was due, so a
/// stalled server is not hidden (no coordinated omission). A fixed set of
/// connections keeps the generator from opening new ones under a stall,
/// which would turn a short stall into a collapse of its own making.
pub async fn open_loop(
    request: &Request,
    rate: f64,
    warmup: Duration,
    measure: Duration,
    connections: usize,
) -> LoadResult {
    let start = tokio::time::Instant::now();
    let window_start = start + warmup;
    let end = window_start + measure;
    let connections = connections.max(1);
    let period = Duration::from_secs_f64(connections as f64 / rate.max(1.0));
    let tasks: Vec<_> = (0..connections)
        .map(|n| {
            let request = request.clone();
            let first = start + period.mul_f64(n as f64 / connections as f64);
            tokio::spawn(async move {
                let mut sample = Sample::default();
                let mut due = first;
                while due < end {
                    tokio::time::sleep_until(due).await;
                    let sent = tokio::time::Instant::now();
                    let outcome = request.send().await;
                    if due >= window_start {
                        let ok = matches!(outcome, Ok(status) if status == request.expected);
                        sample.record(outcome, request.expected, due.elapsed());
                        if ok {
                            let micros = sent.elapsed().as_micros();
                            sample
                                .from_send_us
                                .push(u64::try_from(micros).unwrap_or(u64::MAX));
                        }
                    }
                    due += period;
                }
                sample
            })
        })
        .collect();
    collect(tasks, measure).await
}

async fn collect(tasks: Vec<tokio::task::JoinHandle<Sample>>, measure: Duration) -> LoadResult {
    let mut result = LoadResult {
        seconds: measure.as_secs_f64(),
        ..LoadResult::default()
    };
    for task in tasks {
        match task.await {
            Ok(sample) => result.merge(sample),
            Err(err) => {
                result.errors += 1;
                result.first_error.get_or_insert_with(|| err.to_string());
            }
        }
    }
    result.latencies_us.sort_unstable();
    result.from_send_us.sort_unstable();
    result
}
