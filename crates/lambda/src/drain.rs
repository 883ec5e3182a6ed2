//! One drain per invocation: `hookline processor --once` under
//! `lambda_runtime`, bounded by the invocation's deadline.
//!
//! An invocation has until its deadline, then Lambda freezes the function
//! (and may never thaw it). So the drain stops claiming once a job claimed
//! then could not finish its attempt ([`Processor::attempt_time`]) before
//! the deadline minus the margin, and at the deadline minus the margin
//! whatever is still in flight (an endpoint with a long timeout) is
//! abandoned and its lease given back ([`Processor::release_in_flight`]):
//! the job is due again at once for the next invocation, nothing is lost.
//! The margin is the time kept for those releases and the answer.

use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use lambda_runtime::{Context, Diagnostic, LambdaEvent, service_fn};
use processor::{DrainReport, Processor};
use serde::Serialize;
use serde_json::Value;
use tokio_util::sync::CancellationToken;

/// `--deadline-margin`'s default: kept before the invocation's deadline
/// for giving back leases and answering.
pub const DEFAULT_DEADLINE_MARGIN: Duration = Duration::from_secs(10);

/// What one invocation's drain did: its answer, as JSON (camelCase).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct DrainSummary {
    /// Whether the drain ran to its end (nothing left it could claim, or
    /// its claiming time was over and every claimed job was saved). False
    /// when the deadline cut it short: the counts below are then zero
    /// (they are the finished drain's), and `released` says how many jobs
    /// were given back; what the abandoned work did is in those jobs'
    /// records.
    pub finished: bool,
    /// Claims won.
    pub claimed: u64,
    /// Jobs delivered (now complete).
    pub delivered: u64,
    /// Jobs whose attempt failed and which are due again later (backoff).
    pub retried: u64,
    /// Jobs that failed for good (the dead letter).
    pub dead_lettered: u64,
    /// Claims another processor won first.
    pub lost: u64,
    /// Writes refused because another processor had taken the lease over.
    pub fenced: u64,
    /// Store errors; their jobs are due again when their leases expire.
    pub store_errors: u64,
    /// Claims of jobs whose previous processor's lease had expired.
    pub recovered: u64,
    /// Finished jobs past their retention that the store deleted.
    pub purged: u64,
    /// Leases given back at the deadline (jobs due again at once).
    pub released: u64,
    /// How long the drain could claim, as the deadline allowed.
    pub claim_window_ms: u64,
    /// How long the invocation's drain took.
    pub duration_ms: u64,
}

impl DrainSummary {
    fn of(report: &DrainReport) -> Self {
        Self {
            finished: true,
            claimed: report.claimed,
            delivered: report.delivered,
            retried: report.retried,
            dead_lettered: report.dead_lettered,
            lost: report.lost,
            fenced: report.fenced,
            store_errors: report.store_errors,
            recovered: report.recovered,
            purged: report.purged,
            ..Self::default()
        }
    }

    fn json(&self) -> String {
        serde_json::to_string(self).unwrap_or_else(|_| "{}".to_owned())
    }
}

/// A drain that met store errors: the invocation fails (so Lambda's
/// `Errors` metric and alarms see it, as `hookline processor --once`
/// exits 1), its message carrying the summary.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{} store errors during the drain: {}", .0.store_errors, .0.json())]
pub struct DrainFailed(pub DrainSummary);

impl From<DrainFailed> for Diagnostic {
    fn from(failed: DrainFailed) -> Self {
        Diagnostic {
            error_type: "StoreErrors".to_owned(),
            error_message: failed.to_string(),
        }
    }
}

/// One invocation: a drain of `processor` until the invocation's deadline
/// (from `invocation`'s context) less `margin`, as the module says. The
/// event is whatever invoked it: an EventBridge scheduled event (its id and
/// time are logged), a Scheduler's input, or `{}` from `aws lambda invoke`;
/// it does not change what the drain does.
pub async fn drain_invocation(
    processor: &Processor,
    invocation: LambdaEvent<Value>,
    margin: Duration,
) -> Result<DrainSummary, DrainFailed> {
    let LambdaEvent { payload, context } = invocation;
    log_event(&payload, &context);
    let started = Instant::now();
    let remaining = context
        .deadline()
        .duration_since(SystemTime::now())
        .unwrap_or(Duration::ZERO);
    let stop = remaining.saturating_sub(margin);
    let claim_window = stop
        .saturating_sub(processor.attempt_time())
        .min(processor.config().run_budget);
    let mut summary = if claim_window.is_zero() {
        tracing::warn!(
            remaining_ms = millis(remaining),
            margin_ms = millis(margin),
            attempt_ms = millis(processor.attempt_time()),
            "too little of the invocation is left to finish a job before its deadline: claiming nothing \
             (raise the function's timeout)"
        );
        DrainSummary {
            finished: true,
            ..DrainSummary::default()
        }
    } else {
        drain_within(processor, claim_window, stop).await
    };
    summary.claim_window_ms = millis(claim_window);
    summary.duration_ms = millis(started.elapsed());
    tracing::info!(
        finished = summary.finished,
        claimed = summary.claimed,
        delivered = summary.delivered,
        retried = summary.retried,
        dead_lettered = summary.dead_lettered,
        released = summary.released,
        duration_ms = summary.duration_ms,
        "drain finished"
    );
    if summary.store_errors > 0 {
        return Err(DrainFailed(summary));
    }
    Ok(summary)
}

/// A drain that claims for `claim_window`, and is cut short at `stop`
/// (both from now), giving back the leases it still holds then.
async fn drain_within(processor: &Processor, claim_window: Duration, stop: Duration) -> DrainSummary {
    let now = tokio::time::Instant::now();
    let stop_claiming = CancellationToken::new();
    let claims_over = async {
        tokio::time::sleep_until(now + claim_window).await;
        stop_claiming.cancel();
        std::future::pending::<()>().await
    };
    let drained = tokio::select! {
        report = processor.drain(&stop_claiming) => Some(report),
        () = claims_over => None,
        () = tokio::time::sleep_until(now + stop) => None,
    };
    match drained {
        Some(report) => DrainSummary::of(&report),
        None => {
            let released = processor.release_in_flight().await;
            tracing::warn!(
                released,
                "the invocation's deadline came before the drain finished; gave its unfinished jobs back"
            );
            DrainSummary {
                finished: false,
                released: released as u64,
                ..DrainSummary::default()
            }
        }
    }
}

fn millis(duration: Duration) -> u64 {
    u64::try_from(duration.as_millis()).unwrap_or(u64::MAX)
}

/// What invoked the drain, in the log: a scheduled event's id, type and
/// time when it has them (never the whole event).
fn log_event(payload: &Value, context: &Context) {
    let field = |name: &str| {
        payload
            .get(name)
            .and_then(Value::as_str)
            .map(|text| bounded(text, 128))
    };
    tracing::info!(
        request_id = %bounded(&context.request_id, 128),
        event_id = field("id").as_deref().unwrap_or("-"),
        detail_type = field("detail-type").as_deref().unwrap_or("-"),
        time = field("time").as_deref().unwrap_or("-"),
        "scheduled drain"
    );
}

/// At most `max` characters of `text`.
fn bounded(text: &str, max: usize) -> String {
    text.chars().take(max).collect()
}

/// Runs one drain of `processor` per invocation under the Lambda runtime,
/// each ending `margin` before its deadline, until the runtime stops.
pub async fn serve_processor(
    processor: Arc<Processor>,
    margin: Duration,
) -> Result<(), lambda_runtime::Error> {
    lambda_runtime::run(service_fn(move |invocation: LambdaEvent<Value>| {
        let processor = Arc::clone(&processor);
        async move { drain_invocation(&processor, invocation, margin).await }
    }))
    .await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_summary_is_camel_case_json() {
        let summary = DrainSummary {
            finished: true,
            delivered: 2,
            dead_lettered: 1,
            ..DrainSummary::default()
        };
        let json: Value = serde_json::from_str(&summary.json()).expect("json");
        assert_eq!(json["finished"], true);
        assert_eq!(json["delivered"], 2);
        assert_eq!(json["deadLettered"], 1);
        assert_eq!(json["storeErrors"], 0);
        let failed = DrainFailed(DrainSummary {
            store_errors: 3,
            ..summary
        });
        let diagnostic = Diagnostic::from(failed);
        assert_eq!(diagnostic.error_type, "StoreErrors");
        assert!(
            diagnostic
                .error_message
                .starts_with("3 store errors during the drain: {")
        );
    }
}
