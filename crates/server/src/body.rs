//! The request body with its deadline, and the response body that tells
//! the connection's [`Watch`] when the answer is sent.

use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use bytes::Bytes;
use http_body::{Body, Frame, SizeHint};
use hyper::body::Incoming;
use tokio::time::{Instant, Sleep};

use crate::conn::Watch;

type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// A request body that fails once its deadline passes; the connection then
/// answers 408 instead of whatever the app made of the failure.
#[derive(Debug)]
pub(crate) struct Deadline {
    inner: Incoming,
    deadline: Instant,
    /// Made on the first wait only: a body that is already here (or empty)
    /// never touches the timer.
    sleep: Option<Pin<Box<Sleep>>>,
    watch: Arc<Watch>,
}

impl Deadline {
    pub(crate) fn new(inner: Incoming, deadline: Instant, watch: Arc<Watch>) -> Self {
        Self {
            inner,
            deadline,
            sleep: None,
            watch,
        }
    }
}

impl Body for Deadline {
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        let this = &mut *self;
        match Pin::new(&mut this.inner).poll_frame(cx) {
            Poll::Ready(frame) => Poll::Ready(frame.map(|frame| frame.map_err(BoxError::from))),
            Poll::Pending => {
                let deadline = this.deadline;
                let sleep = this
                    .sleep
                    .get_or_insert_with(|| Box::pin(tokio::time::sleep_until(deadline)));
                match sleep.as_mut().poll(cx) {
                    Poll::Ready(()) => {
                        this.watch.body_timed_out();
                        Poll::Ready(Some(Err(BoxError::from(
                            "the request body did not arrive in time",
                        ))))
                    }
                    Poll::Pending => Poll::Pending,
                }
            }
        }
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

/// The answer's body; dropped once hyper has taken all of it.
#[derive(Debug)]
pub(crate) struct Finished {
    inner: axum::body::Body,
    watch: Arc<Watch>,
}

impl Finished {
    pub(crate) fn new(inner: axum::body::Body, watch: Arc<Watch>) -> Self {
        Self { inner, watch }
    }
}

impl Drop for Finished {
    fn drop(&mut self) {
        self.watch.request_finished();
    }
}

impl Body for Finished {
    type Data = Bytes;
    type Error = axum::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, axum::Error>>> {
        Pin::new(&mut self.inner).poll_frame(cx)
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}
