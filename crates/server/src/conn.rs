//! A connection's clock: which deadline applies to it now (its request's
//! head, or the idle wait for the next request; none while a request is
//! being answered), and the socket that fails its read when it passes.

use std::io;
use std::pin::Pin;
use std::sync::{Mutex, PoisonError};
use std::task::{Context, Poll, Waker};
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpStream;
use tokio::time::{Instant, Sleep};

#[derive(Debug)]
pub(crate) struct Watch {
    header_read_timeout: Duration,
    idle_timeout: Duration,
    state: Mutex<State>,
}

#[derive(Debug)]
struct State {
    /// Requests handed to the app whose answer is not yet sent.
    in_flight: u32,
    /// When the connection last started waiting (for a head, or idle).
    since: Instant,
    /// Bytes of the next head have arrived (or the connection is new).
    head_started: bool,
    /// The current request's body missed its deadline.
    body_timed_out: bool,
    /// The connection task's, to have hyper read again (and so start the
    /// idle timer) once an answer is sent.
    reader: Option<Waker>,
    /// The app was handed the request whose head is being (or was last)
    /// read; hyper writing while this is false is hyper answering a head it
    /// could not parse.
    answering: bool,
}

impl Watch {
    pub(crate) fn new(header_read_timeout: Duration, idle_timeout: Duration) -> Self {
        Self {
            header_read_timeout,
            idle_timeout,
            state: Mutex::new(State {
                in_flight: 0,
                since: Instant::now(),
                head_started: true,
                body_timed_out: false,
                reader: None,
                answering: false,
            }),
        }
    }

    fn state(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    pub(crate) fn request_started(&self) {
        let mut state = self.state();
        state.in_flight += 1;
        state.body_timed_out = false;
        state.answering = true;
    }

    /// The answer is sent (or abandoned): the connection waits again.
    pub(crate) fn request_finished(&self) {
        let reader = {
            let mut state = self.state();
            state.in_flight = state.in_flight.saturating_sub(1);
            if state.in_flight > 0 {
                return;
            }
            state.since = Instant::now();
            state.head_started = false;
            state.reader.clone()
        };
        // hyper may not read again until the client sends; the idle timer
        // starts on a read, so ask for one.
        if let Some(reader) = reader {
            reader.wake();
        }
    }

    fn bytes_arrived(&self) {
        let mut state = self.state();
        if state.in_flight == 0 && !state.head_started {
            state.head_started = true;
            state.answering = false;
            state.since = Instant::now();
        }
    }

    pub(crate) fn body_timed_out(&self) {
        self.state().body_timed_out = true;
    }

    pub(crate) fn take_body_timed_out(&self) -> bool {
        std::mem::take(&mut self.state().body_timed_out)
    }

    /// When the connection is to be closed unless a request arrives; notes
    /// who to wake when that changes.
    fn deadline(&self, reader: &Waker) -> Option<Instant> {
        let mut state = self.state();
        if !state.reader.as_ref().is_some_and(|known| known.will_wake(reader)) {
            state.reader = Some(reader.clone());
        }
        if state.in_flight > 0 {
            return None;
        }
        let timeout = if state.head_started {
            self.header_read_timeout
        } else {
            self.idle_timeout
        };
        Some(state.since + timeout)
    }

    fn answering(&self) -> bool {
        self.state().answering
    }

    /// Since when it has waited for a request; `None` while answering one.
    pub(crate) fn waiting_since(&self) -> Option<Instant> {
        let state = self.state();
        (state.in_flight == 0).then_some(state.since)
    }
}

/// The accepted socket; a read fails once the connection's deadline passes,
/// and hyper closes the connection.
#[derive(Debug)]
pub(crate) struct Guarded {
    io: TcpStream,
    watch: std::sync::Arc<Watch>,
    sleep: Pin<Box<Sleep>>,
    armed: Option<Instant>,
    /// Our problem+json in place of hyper's empty answer to a head it could
    /// not parse, and how much of it is written; hyper's bytes are dropped.
    replacement: Option<(Vec<u8>, usize)>,
}

impl Guarded {
    pub(crate) fn new(io: TcpStream, watch: std::sync::Arc<Watch>) -> Self {
        Self {
            io,
            watch,
            sleep: Box::pin(tokio::time::sleep(Duration::ZERO)),
            armed: None,
            replacement: None,
        }
    }

    /// Whether hyper is starting its own answer to a head it could not
    /// parse (it closes the connection after it): a status line written
    /// when no request reached the app.
    fn replace_hypers_answer(&mut self, first: &[u8]) {
        if self.replacement.is_some() || !first.starts_with(b"HTTP/1.") || self.watch.answering() {
            return;
        }
        let status = first
            .get(9..12)
            .and_then(|code| std::str::from_utf8(code).ok())
            .and_then(|code| code.parse::<u16>().ok())
            .unwrap_or(400);
        self.replacement = Some((crate::problem::unparsable_head(status), 0));
    }

    /// Writes what is left of the replacement; ready once all of it is out.
    fn poll_replacement(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let Some((bytes, written)) = &mut self.replacement else {
            return Poll::Ready(Ok(()));
        };
        while *written < bytes.len() {
            match Pin::new(&mut self.io).poll_write(cx, &bytes[*written..]) {
                Poll::Ready(Ok(0)) => return Poll::Ready(Err(io::ErrorKind::WriteZero.into())),
                Poll::Ready(Ok(n)) => *written += n,
                Poll::Ready(Err(err)) => return Poll::Ready(Err(err)),
                Poll::Pending => return Poll::Pending,
            }
        }
        Poll::Ready(Ok(()))
    }
}

impl AsyncRead for Guarded {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = &mut *self;
        let before = buf.filled().len();
        match Pin::new(&mut this.io).poll_read(cx, buf) {
            Poll::Ready(Ok(())) => {
                if buf.filled().len() > before {
                    this.watch.bytes_arrived();
                }
                Poll::Ready(Ok(()))
            }
            Poll::Ready(Err(err)) => Poll::Ready(Err(err)),
            Poll::Pending => {
                let Some(deadline) = this.watch.deadline(cx.waker()) else {
                    return Poll::Pending;
                };
                // The timer is moved only when it would fire too late; one
                // that fires early (the deadline moved on with each request
                // since) is set again then, so a busy connection touches
                // the timer about once per timeout, not once per request.
                if this.armed.is_none_or(|armed| armed > deadline) {
                    this.sleep.as_mut().reset(deadline);
                    this.armed = Some(deadline);
                }
                for _ in 0..2 {
                    if this.sleep.as_mut().poll(cx).is_pending() {
                        return Poll::Pending;
                    }
                    if Instant::now() >= deadline {
                        return Poll::Ready(Err(io::Error::new(
                            io::ErrorKind::TimedOut,
                            "no request within the header or idle timeout",
                        )));
                    }
                    this.sleep.as_mut().reset(deadline);
                    this.armed = Some(deadline);
                }
                Poll::Pending
            }
        }
    }
}

impl AsyncWrite for Guarded {
    fn poll_write(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &[u8]) -> Poll<io::Result<usize>> {
        let this = &mut *self;
        this.replace_hypers_answer(buf);
        if this.replacement.is_some() {
            return this.poll_replacement(cx).map_ok(|()| buf.len());
        }
        Pin::new(&mut this.io).poll_write(cx, buf)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let this = &mut *self;
        if let Some(first) = bufs.iter().find(|buf| !buf.is_empty()) {
            this.replace_hypers_answer(first);
        }
        if this.replacement.is_some() {
            let all = bufs.iter().map(|buf| buf.len()).sum();
            return this.poll_replacement(cx).map_ok(|()| all);
        }
        Pin::new(&mut this.io).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.io.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = &mut *self;
        std::task::ready!(this.poll_replacement(cx))?;
        Pin::new(&mut this.io).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = &mut *self;
        std::task::ready!(this.poll_replacement(cx))?;
        Pin::new(&mut this.io).poll_shutdown(cx)
    }
}
