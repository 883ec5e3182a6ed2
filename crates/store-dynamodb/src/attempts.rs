//! Whether a write may have reached DynamoDB: the determinate/indeterminate
//! split of [`StoreError`] for the SDK's errors.
//!
//! The SDK retries a write on its own (timeouts, dropped connections, 5xx,
//! throttling) and returns only the last attempt's error, so the last error
//! alone cannot say whether an earlier attempt was applied: a dropped answer
//! followed by a throttled retry looks like throttling. [`WriteAttempts`],
//! attached to one operation as an interceptor, remembers whether any of its
//! attempts may have been applied. A write's failure is indeterminate when
//! one may have been, and a conditional write whose condition then fails
//! checks whether what it found is its own effect.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use aws_sdk_dynamodb::config::http::HttpResponse;
use aws_sdk_dynamodb::config::interceptors::FinalizerInterceptorContextRef;
use aws_sdk_dynamodb::config::{ConfigBag, Intercept, RuntimeComponents};
use aws_sdk_dynamodb::error::{BoxError, ConnectorError, DisplayErrorContext, SdkError};
use store::StoreError;

/// Records, across the SDK's attempts at one operation, whether any may
/// have been applied by DynamoDB. Clones share the record.
#[derive(Debug, Clone, Default)]
pub(crate) struct WriteAttempts {
    maybe_applied: Arc<AtomicBool>,
}

impl WriteAttempts {
    /// Whether an attempt so far may have been applied: it got a 2xx or a
    /// 5xx, or no answer after the request may have been sent.
    pub(crate) fn maybe_applied(&self) -> bool {
        self.maybe_applied.load(Ordering::Relaxed)
    }
}

impl Intercept for WriteAttempts {
    fn name(&self) -> &'static str {
        "hookline::WriteAttempts"
    }

    fn read_after_attempt(
        &self,
        context: &FinalizerInterceptorContextRef<'_>,
        _runtime_components: &RuntimeComponents,
        _cfg: &mut ConfigBag,
    ) -> Result<(), BoxError> {
        let maybe = match (context.response(), context.output_or_error()) {
            // A 4xx (validation, throttling, a failed condition) did nothing;
            // a 2xx was applied; a 5xx may have been.
            (Some(response), _) => !(400..500).contains(&response.status().as_u16()),
            (None, Some(Err(err))) => !err.as_connector_error().is_some_and(never_sent),
            // No answer and no error: the attempt was cut short (the
            // operation's timeout), possibly after sending.
            (None, _) => true,
        };
        if maybe {
            self.maybe_applied.store(true, Ordering::Relaxed);
        }
        Ok(())
    }
}

/// Whether a connector error happened before any byte of the request left:
/// the connection itself was refused or could not be made.
fn never_sent(err: &ConnectorError) -> bool {
    if err.is_user() {
        // The SDK could not even build the HTTP request.
        return true;
    }
    let mut next: Option<&(dyn std::error::Error + 'static)> = Some(err);
    while let Some(err) = next {
        if let Some(io) = err.downcast_ref::<std::io::Error>() {
            use std::io::ErrorKind::*;
            if matches!(
                io.kind(),
                ConnectionRefused | AddrNotAvailable | HostUnreachable | NetworkUnreachable
            ) {
                return true;
            }
        }
        next = err.source();
    }
    false
}

/// Whether the operation's final error itself says the request may have
/// been applied (an operation timeout cuts attempts short, so the
/// interceptor may not have seen the last one).
fn error_maybe_applied<E>(err: &SdkError<E, HttpResponse>) -> bool {
    match err {
        SdkError::ConstructionFailure(_) => false,
        SdkError::DispatchFailure(failure) => !failure.as_connector_error().is_some_and(never_sent),
        SdkError::ServiceError(service) => service.raw().status().is_server_error(),
        // A timeout, or an answer that could not be read.
        _ => true,
    }
}

/// A failed write as its caller must take it: [`StoreError::Indeterminate`]
/// when any attempt may have been applied, else [`StoreError::Unavailable`].
pub(crate) fn write_failed<E>(
    operation: &str,
    err: &SdkError<E, HttpResponse>,
    attempts: &WriteAttempts,
) -> StoreError
where
    E: std::error::Error + 'static,
{
    let message = format!("{operation}: {}", DisplayErrorContext(err));
    if attempts.maybe_applied() || error_maybe_applied(err) {
        StoreError::Indeterminate(message)
    } else {
        StoreError::Unavailable(message)
    }
}

/// A failed read: it changed nothing, whatever the error.
pub(crate) fn unavailable<E, R>(operation: &str, err: SdkError<E, R>) -> StoreError
where
    E: std::error::Error + 'static,
    R: std::fmt::Debug,
{
    StoreError::Unavailable(format!("{operation}: {}", DisplayErrorContext(&err)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_refused_connection_was_never_sent_and_a_reset_may_have_been() {
        let refused = ConnectorError::io(Box::new(std::io::Error::from(
            std::io::ErrorKind::ConnectionRefused,
        )));
        assert!(never_sent(&refused));
        let reset = ConnectorError::io(Box::new(std::io::Error::from(
            std::io::ErrorKind::ConnectionReset,
        )));
        assert!(!never_sent(&reset));
        let timeout = ConnectorError::timeout(Box::new(std::io::Error::from(std::io::ErrorKind::TimedOut)));
        assert!(!never_sent(&timeout));
    }
}
