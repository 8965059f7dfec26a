//! Time limits on calls to hosted providers, one per phase: connecting, the
//! response's headers, the first byte of its body, and silence between bytes
//! of it (streams). Each limit is per provider; every expiry is counted in
//! `gpubridge_upstream_timeouts_total{provider, phase}`.

use crate::lanes::Slot;
use bytes::Bytes;
use hyper::body::{Body, Frame, Incoming, SizeHint};
use prometheus::{IntCounter, IntCounterVec, Opts, Registry};
use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;
use tokio::time::{Instant, Sleep};

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Phase {
    Connect,
    Headers,
    FirstByte,
    Idle,
}

impl Phase {
    const ALL: [Phase; 4] = [
        Phase::Connect,
        Phase::Headers,
        Phase::FirstByte,
        Phase::Idle,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Phase::Connect => "connect",
            Phase::Headers => "headers",
            Phase::FirstByte => "first_byte",
            Phase::Idle => "idle",
        }
    }
}

/// What timed out, for an attempt's error.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
pub struct Stalled {
    pub phase: Phase,
    pub after: Duration,
}

impl fmt::Display for Stalled {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let what = match self.phase {
            Phase::Connect => "no connection",
            Phase::Headers => "no response headers",
            Phase::FirstByte => "no response body",
            Phase::Idle => "the response stopped for longer than",
        };
        match self.phase {
            Phase::Idle => write!(f, "{what} {:?}", self.after),
            _ => write!(f, "{what} within {:?}", self.after),
        }
    }
}

/// `gpubridge_upstream_timeouts_total`, registered once per scheduler.
#[derive(Clone)]
pub struct TimeoutCounters(IntCounterVec);

impl TimeoutCounters {
    pub fn register(registry: &Registry) -> Result<TimeoutCounters, prometheus::Error> {
        let counters = IntCounterVec::new(
            Opts::new(
                "gpubridge_upstream_timeouts_total",
                "Calls to hosted providers cut off by a time limit, by provider and phase",
            ),
            &["provider", "phase"],
        )?;
        registry.register(Box::new(counters.clone()))?;
        Ok(TimeoutCounters(counters))
    }
}

/// One provider's limits, with its counters resolved.
#[derive(Clone)]
pub struct Timeouts {
    pub connect: Duration,
    pub headers: Duration,
    pub first_byte: Duration,
    pub idle: Duration,
    counters: Arc<[IntCounter; 4]>,
}

impl Timeouts {
    pub fn new(provider: &str, limits: [Duration; 4], counters: &TimeoutCounters) -> Timeouts {
        let [connect, headers, first_byte, idle] = limits;
        Timeouts {
            connect,
            headers,
            first_byte,
            idle,
            counters: Arc::new(
                Phase::ALL.map(|p| counters.0.with_label_values(&[provider, p.as_str()])),
            ),
        }
    }

    /// Counts the expiry and says what it was.
    pub fn expired(&self, phase: Phase) -> Stalled {
        self.counters[phase as usize].inc();
        let after = match phase {
            Phase::Connect => self.connect,
            Phase::Headers => self.headers,
            Phase::FirstByte => self.first_byte,
            Phase::Idle => self.idle,
        };
        Stalled { phase, after }
    }

    /// The body, cut off when its first byte or any later one is late. It
    /// holds its connection lane's `slot` until read to the end or dropped.
    pub fn body(&self, inner: Incoming, slot: Slot) -> TimedBody {
        TimedBody {
            inner,
            timer: Box::pin(tokio::time::sleep(self.first_byte)),
            started: false,
            timeouts: self.clone(),
            _slot: slot,
        }
    }
}

/// A provider's response body under its first-byte and idle limits.
pub struct TimedBody {
    inner: Incoming,
    timer: Pin<Box<Sleep>>,
    started: bool,
    timeouts: Timeouts,
    _slot: Slot,
}

/// Why reading a provider's body stopped.
#[derive(Debug, thiserror::Error)]
pub enum BodyError {
    #[error(transparent)]
    Stalled(#[from] Stalled),
    #[error(transparent)]
    Read(#[from] hyper::Error),
}

impl Body for TimedBody {
    type Data = Bytes;
    type Error = BodyError;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BodyError>>> {
        let this = &mut *self;
        match Pin::new(&mut this.inner).poll_frame(cx) {
            Poll::Ready(frame) => {
                this.started = true;
                let next = Instant::now() + this.timeouts.idle;
                this.timer.as_mut().reset(next);
                Poll::Ready(frame.map(|f| f.map_err(BodyError::Read)))
            }
            Poll::Pending => match this.timer.as_mut().poll(cx) {
                Poll::Ready(()) => {
                    let phase = if this.started {
                        Phase::Idle
                    } else {
                        Phase::FirstByte
                    };
                    Poll::Ready(Some(Err(this.timeouts.expired(phase).into())))
                }
                Poll::Pending => Poll::Pending,
            },
        }
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}
