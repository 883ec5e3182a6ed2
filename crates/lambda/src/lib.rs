//! hookline as AWS Lambda functions (`hookline lambda intake|processor`):
//! the glue between the Lambda runtime and the intake's router or a
//! processor, which `hookline` builds from the same flags and environment
//! as `hookline intake` and `hookline processor`.
//!
//! - [`serve_intake`]: the intake's axum router under `lambda_http`, so an
//!   API Gateway HTTP API (payload 2.0), a REST API or an Application Load
//!   Balancer invokes it; each invocation is one request, answered by
//!   [`answer_request`].
//! - [`serve_processor`]: one drain per invocation (an EventBridge schedule),
//!   [`drain_invocation`], ending before the invocation's deadline so the
//!   leases it holds are saved or given back before Lambda freezes the
//!   function; it answers a [`DrainSummary`].
//!
//! [`in_lambda`] checks, before the runtime starts, that the process is in
//! a Lambda execution environment (the runtime would panic otherwise);
//! [`command_line`] turns a `bootstrap` run with no arguments into
//! `lambda {handler}`. Only this crate knows `lambda_http` and
//! `lambda_runtime`.

mod drain;
mod http;

use std::ffi::OsString;
use std::path::Path;

pub use drain::{DEFAULT_DEADLINE_MARGIN, DrainFailed, DrainSummary, drain_invocation, serve_processor};
pub use http::{answer_request, request_from_event, serve_intake};
pub use lambda_http::{Context, LambdaEvent, Request};

/// The variables Lambda sets in every execution environment, which the
/// runtime reads when it starts (and panics without).
const LAMBDA_VARIABLES: [&str; 4] = [
    "AWS_LAMBDA_RUNTIME_API",
    "AWS_LAMBDA_FUNCTION_NAME",
    "AWS_LAMBDA_FUNCTION_VERSION",
    "AWS_LAMBDA_FUNCTION_MEMORY_SIZE",
];

/// Not in a Lambda execution environment, or one the runtime cannot run in.
#[derive(Debug, thiserror::Error)]
pub enum NotInLambda {
    #[error(
        "{0} is not set: `hookline lambda` runs inside AWS Lambda (on a host, run `hookline intake` or \
         `hookline processor`)"
    )]
    Missing(&'static str),
    #[error("AWS_LAMBDA_FUNCTION_MEMORY_SIZE is not a whole number of megabytes")]
    Memory,
}

/// Whether the variables the Lambda runtime needs are set, as `lookup`
/// reads them (`std::env::var_os` in production).
pub fn in_lambda(lookup: impl Fn(&str) -> Option<OsString>) -> Result<(), NotInLambda> {
    for name in LAMBDA_VARIABLES {
        if lookup(name).is_none_or(|value| value.is_empty()) {
            return Err(NotInLambda::Missing(name));
        }
    }
    let memory = lookup("AWS_LAMBDA_FUNCTION_MEMORY_SIZE").unwrap_or_default();
    match memory.to_str().map(|text| text.trim().parse::<i32>()) {
        Some(Ok(_)) => Ok(()),
        _ => Err(NotInLambda::Memory),
    }
}

/// The command line to parse: `args` as given, except for a binary named
/// `bootstrap` run with no arguments (how Lambda starts a function on a
/// `provided` runtime), which becomes `bootstrap lambda {handler}`:
/// `handler` is the function's `Handler` setting (Lambda's `_HANDLER`),
/// `intake` or `processor`. Without one it is `bootstrap lambda`, which the
/// parser answers with a usage error naming both.
pub fn command_line(args: Vec<OsString>, handler: Option<OsString>) -> Vec<OsString> {
    let bootstrap = args.len() == 1
        && args
            .first()
            .and_then(|program| Path::new(program).file_name())
            .is_some_and(|name| name == "bootstrap");
    if !bootstrap {
        return args;
    }
    let mut line = args;
    line.push("lambda".into());
    if let Some(handler) = handler.filter(|handler| !handler.is_empty()) {
        line.push(handler);
    }
    line
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;

    use super::*;

    fn strings(items: &[&str]) -> Vec<OsString> {
        items.iter().map(OsString::from).collect()
    }

    #[test]
    fn a_bootstrap_without_arguments_runs_its_handler() {
        assert_eq!(
            command_line(strings(&["/var/task/bootstrap"]), Some("processor".into())),
            strings(&["/var/task/bootstrap", "lambda", "processor"])
        );
        assert_eq!(
            command_line(strings(&["bootstrap"]), None),
            strings(&["bootstrap", "lambda"])
        );
        assert_eq!(
            command_line(strings(&["bootstrap"]), Some("".into())),
            strings(&["bootstrap", "lambda"])
        );
        // Anything else is parsed as it was given.
        for given in [
            strings(&["hookline"]),
            strings(&["bootstrap", "intake"]),
            strings(&["/usr/bin/hookline", "lambda", "intake"]),
            strings(&["not-bootstrap"]),
        ] {
            assert_eq!(command_line(given.clone(), Some("intake".into())), given);
        }
    }

    #[test]
    fn the_lambda_environment_is_checked_before_the_runtime_starts() {
        let full: HashMap<&str, &str> = [
            ("AWS_LAMBDA_RUNTIME_API", "127.0.0.1:9001"),
            ("AWS_LAMBDA_FUNCTION_NAME", "hookline-intake"),
            ("AWS_LAMBDA_FUNCTION_VERSION", "$LATEST"),
            ("AWS_LAMBDA_FUNCTION_MEMORY_SIZE", "512"),
        ]
        .into();
        fn with(vars: &HashMap<&'static str, &'static str>) -> impl Fn(&str) -> Option<OsString> + use<> {
            let vars = vars.clone();
            move |name: &str| vars.get(name).map(OsString::from)
        }
        assert!(in_lambda(with(&full)).is_ok());
        for name in LAMBDA_VARIABLES {
            let mut less = full.clone();
            less.remove(name);
            let err = in_lambda(with(&less)).expect_err(name).to_string();
            assert!(err.contains(name), "{err}");
        }
        let mut odd = full.clone();
        odd.insert("AWS_LAMBDA_FUNCTION_MEMORY_SIZE", "lots");
        assert!(matches!(in_lambda(with(&odd)), Err(NotInLambda::Memory)));
    }
}
