//! `--log-format json`: one flat JSON object per line, for log stores that
//! index top-level fields (CloudWatch Logs Insights, Loki, Elasticsearch):
//! the event's own fields and every field of the spans it happened in
//! (`request_id`, `tenant`, `job_id`, `provider`, ...) side by side, the
//! innermost span's value winning a clash and the event's winning over
//! them; then `timestamp` (UTC, milliseconds), `level`, `target`, `span`
//! (the innermost span's name) and `spans` (their names, outermost first),
//! which no field overrides.

use std::fmt;

use serde_json::{Map, Value};
use tracing::field::{Field, Visit};
use tracing::{Event, Subscriber};
use tracing_subscriber::fmt::format::{JsonFields, Writer};
use tracing_subscriber::fmt::{FmtContext, FormatEvent, FormattedFields};
use tracing_subscriber::registry::LookupSpan;

/// The event formatter; spans' fields must be recorded by [`JsonFields`]
/// (`.fmt_fields(JsonFields::new())`), so each span's are a JSON object.
#[derive(Debug, Default, Clone, Copy)]
pub struct FlatJson;

impl<S> FormatEvent<S, JsonFields> for FlatJson
where
    S: Subscriber + for<'a> LookupSpan<'a>,
{
    fn format_event(
        &self,
        ctx: &FmtContext<'_, S, JsonFields>,
        mut writer: Writer<'_>,
        event: &Event<'_>,
    ) -> fmt::Result {
        let mut line = Map::new();
        let mut names = Vec::new();
        if let Some(scope) = ctx.event_scope() {
            for span in scope.from_root() {
                names.push(Value::from(span.name()));
                let extensions = span.extensions();
                if let Some(fields) = extensions.get::<FormattedFields<JsonFields>>()
                    && let Ok(Value::Object(fields)) = serde_json::from_str::<Value>(fields.as_str())
                {
                    line.extend(fields);
                }
            }
        }
        event.record(&mut Fields(&mut line));
        let metadata = event.metadata();
        line.insert(
            "timestamp".to_owned(),
            Value::from(chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Millis, true)),
        );
        line.insert("level".to_owned(), Value::from(metadata.level().as_str()));
        line.insert("target".to_owned(), Value::from(metadata.target()));
        if let Some(innermost) = names.last() {
            line.insert("span".to_owned(), innermost.clone());
        }
        if !names.is_empty() {
            line.insert("spans".to_owned(), Value::Array(names));
        }
        writeln!(writer, "{}", Value::Object(line))
    }
}

/// The event's fields as JSON values.
struct Fields<'a>(&'a mut Map<String, Value>);

impl Visit for Fields<'_> {
    fn record_str(&mut self, field: &Field, value: &str) {
        self.0.insert(field.name().to_owned(), Value::from(value));
    }

    fn record_bool(&mut self, field: &Field, value: bool) {
        self.0.insert(field.name().to_owned(), Value::from(value));
    }

    fn record_i64(&mut self, field: &Field, value: i64) {
        self.0.insert(field.name().to_owned(), Value::from(value));
    }

    fn record_u64(&mut self, field: &Field, value: u64) {
        self.0.insert(field.name().to_owned(), Value::from(value));
    }

    fn record_f64(&mut self, field: &Field, value: f64) {
        self.0.insert(field.name().to_owned(), Value::from(value));
    }

    fn record_error(&mut self, field: &Field, value: &(dyn std::error::Error + 'static)) {
        self.0
            .insert(field.name().to_owned(), Value::from(value.to_string()));
    }

    fn record_debug(&mut self, field: &Field, value: &dyn fmt::Debug) {
        self.0
            .insert(field.name().to_owned(), Value::from(format!("{value:?}")));
    }
}

#[cfg(test)]
mod tests {
    use std::io;
    use std::sync::{Arc, Mutex};

    use tracing_subscriber::fmt::MakeWriter;

    use super::*;

    #[derive(Clone, Default)]
    struct Captured(Arc<Mutex<Vec<u8>>>);

    impl io::Write for Captured {
        fn write(&mut self, bytes: &[u8]) -> io::Result<usize> {
            self.0
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .extend_from_slice(bytes);
            Ok(bytes.len())
        }

        fn flush(&mut self) -> io::Result<()> {
            Ok(())
        }
    }

    impl<'a> MakeWriter<'a> for Captured {
        type Writer = Self;

        fn make_writer(&'a self) -> Self::Writer {
            self.clone()
        }
    }

    fn lines_of(log: impl FnOnce()) -> Vec<Value> {
        let captured = Captured::default();
        let subscriber = tracing_subscriber::fmt()
            .with_writer(captured.clone())
            .fmt_fields(JsonFields::new())
            .event_format(FlatJson)
            .with_max_level(tracing::Level::DEBUG)
            .finish();
        tracing::subscriber::with_default(subscriber, log);
        let text = String::from_utf8(captured.0.lock().expect("lock").clone()).expect("utf-8");
        text.lines()
            .map(|line| serde_json::from_str(line).unwrap_or_else(|e| panic!("{e}: {line}")))
            .collect()
    }

    #[test]
    fn an_events_fields_and_its_spans_are_one_flat_object() {
        let lines = lines_of(|| {
            let request =
                tracing::info_span!("request", request_id = "req_1", tenant = tracing::field::Empty);
            let _request = request.enter();
            request.record("tenant", "acme");
            let job = tracing::info_span!("job", job_id = "job_1", attempt = 2u64);
            let _job = job.enter();
            tracing::info!(status = 503u64, took_ms = 1.5, retry = true, "callback answered");
        });
        let [line] = &lines[..] else { panic!("{lines:?}") };
        assert_eq!(line["message"], "callback answered");
        assert_eq!(line["request_id"], "req_1");
        assert_eq!(line["tenant"], "acme", "recorded after the span began");
        assert_eq!(line["job_id"], "job_1");
        assert_eq!(line["attempt"], 2);
        assert_eq!(line["status"], 503);
        assert_eq!(line["took_ms"], 1.5);
        assert_eq!(line["retry"], true);
        assert_eq!(line["level"], "INFO");
        assert_eq!(line["span"], "job");
        assert_eq!(line["spans"], serde_json::json!(["request", "job"]));
        assert!(
            line["timestamp"].as_str().is_some_and(|t| t.ends_with('Z')),
            "{line}"
        );
        assert!(line.get("fields").is_none(), "flat: {line}");
    }

    #[test]
    fn the_inner_value_wins_and_no_field_overrides_the_lines_own() {
        let lines = lines_of(|| {
            let outer = tracing::info_span!("outer", tenant = "outer", level = "spoofed");
            let _outer = outer.enter();
            let inner = tracing::info_span!("inner", tenant = "inner");
            let _inner = inner.enter();
            tracing::debug!("outside any clash");
        });
        let [line] = &lines[..] else { panic!("{lines:?}") };
        assert_eq!(line["tenant"], "inner");
        assert_eq!(line["level"], "DEBUG", "not the span's field");
        assert!(lines_of(|| tracing::warn!("no span"))[0].get("spans").is_none());
    }
}
