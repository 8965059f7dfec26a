//! A connection's two waits, told apart: a client has
//! `http.header_read_timeout_ms` to send a request's head, and a keep-alive
//! connection may sit idle between requests for `http.keep_alive_idle_ms`.
//! hyper has only the first, and runs it while a connection idles too, so
//! every pooled connection was closed after 10 s idle: clients whose pools
//! keep connections for 90 s (Go, reqwest, hyper) then raced that close with
//! their next POST. [`Watched`] wraps the connection's I/O and keeps both
//! deadlines; [`InFlight`], held by every request being served, tells it when
//! the connection is busy (no deadline: the body and inline-wait limits apply).
//!
//! A request's end wakes nothing: over HTTP/1.1 it ends inside the
//! connection's own poll, where a wake costs a yield and a second worker's
//! wake-up per request. A busy connection instead looks again every
//! head's limit, so an idle spell is counted from up to that much after the
//! last request ended, unless the connection reads first. Bytes read while
//! busy (a pipelined next request) start no head's clock: the idle limit
//! bounds them.

use hyper::body::{Body, Frame, SizeHint};
use std::future::Future;
use std::io;
use std::pin::Pin;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::time::{Instant, Sleep};

/// The two limits, from `[http]`.
#[derive(Clone, Copy, Debug)]
pub struct Waits {
    pub head: Duration,
    pub idle: Duration,
}

/// What the connection is waiting for.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Phase {
    /// A request's head: from the accept, or from the first byte after an
    /// idle spell. Past the deadline the connection fails (as hyper's timer did).
    Head,
    /// A request is being served.
    Busy,
    /// Nothing: past the deadline the connection ends quietly, as a client
    /// would see any server's idle close.
    Idle,
}

/// Requests being served on one connection (an HTTP/2 stream ends in its own task).
#[derive(Default)]
struct Shared {
    /// Requests ever started: one may start and end between two reads.
    started: AtomicUsize,
    in_flight: AtomicUsize,
}

/// Handed to the connection's service: marks each request it serves.
#[derive(Clone)]
pub struct Requests(Arc<Shared>);

impl Requests {
    /// Marks a request served until the returned guard drops (with the
    /// response's body, or with the handler if the client left first).
    pub fn start(&self) -> InFlight {
        self.0.started.fetch_add(1, Ordering::AcqRel);
        self.0.in_flight.fetch_add(1, Ordering::AcqRel);
        InFlight(self.0.clone())
    }
}

pub struct InFlight(Arc<Shared>);

impl Drop for InFlight {
    fn drop(&mut self) {
        self.0.in_flight.fetch_sub(1, Ordering::AcqRel);
    }
}

/// A response body that keeps its request in flight until hyper has sent it
/// (or dropped it: the client left).
pub struct Served<B> {
    body: B,
    _in_flight: InFlight,
}

impl<B> Served<B> {
    pub fn new(body: B, in_flight: InFlight) -> Self {
        Served {
            body,
            _in_flight: in_flight,
        }
    }
}

impl<B: Body + Unpin> Body for Served<B> {
    type Data = B::Data;
    type Error = B::Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<B::Data>, B::Error>>> {
        Pin::new(&mut self.get_mut().body).poll_frame(cx)
    }

    fn is_end_stream(&self) -> bool {
        self.body.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.body.size_hint()
    }
}

/// A connection's I/O with its head and idle deadlines.
pub struct Watched<I> {
    io: I,
    shared: Arc<Shared>,
    waits: Waits,
    phase: Phase,
    /// HTTP/2 (its preface came first): requests are streams, and bytes while
    /// idle are pings and settings, not the start of a head.
    multiplexed: bool,
    read_any: bool,
    /// `Shared::started` when last looked at.
    started: usize,
    deadline: Pin<Box<Sleep>>,
}

impl<I> Watched<I> {
    /// Wraps a just-accepted connection: its first head is due within `waits.head`.
    pub fn new(io: I, waits: Waits) -> (Self, Requests) {
        let shared = Arc::new(Shared::default());
        let watched = Watched {
            io,
            shared: shared.clone(),
            waits,
            phase: Phase::Head,
            multiplexed: false,
            read_any: false,
            started: 0,
            deadline: Box::pin(tokio::time::sleep(waits.head)),
        };
        (watched, Requests(shared))
    }

    fn enter(&mut self, phase: Phase) {
        self.phase = phase;
        let wait = match phase {
            Phase::Head => self.waits.head,
            Phase::Idle => self.waits.idle,
            Phase::Busy => return,
        };
        self.deadline.as_mut().reset(Instant::now() + wait);
    }

    fn busy(&self) -> bool {
        self.shared.in_flight.load(Ordering::Acquire) > 0
    }

    /// A read pending while busy: looks again every head's limit, until the
    /// requests have ended; then the idle spell starts.
    fn poll_busy(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        while self.deadline.as_mut().poll(cx).is_ready() {
            if !self.busy() {
                self.enter(Phase::Idle);
                return self.poll_deadline(cx);
            }
            self.deadline
                .as_mut()
                .reset(Instant::now() + self.waits.head);
        }
        Poll::Pending
    }

    fn saw(&mut self, bytes: &[u8]) {
        if !self.read_any {
            self.read_any = true;
            // "PRI * HTTP/2.0": a request line's method is never "PRI".
            self.multiplexed = bytes.starts_with(b"PRI ");
            if self.multiplexed {
                self.enter(Phase::Idle);
            }
        } else if self.phase == Phase::Idle && !self.multiplexed {
            self.enter(Phase::Head);
        }
    }

    fn poll_deadline(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        if self.deadline.as_mut().poll(cx).is_pending() {
            return Poll::Pending;
        }
        match self.phase {
            Phase::Head => Poll::Ready(Err(io::Error::new(
                io::ErrorKind::TimedOut,
                "the request's head did not arrive in time",
            ))),
            // End of stream: hyper closes an idle connection without an error.
            Phase::Idle => Poll::Ready(Ok(())),
            Phase::Busy => Poll::Pending,
        }
    }
}

impl<I: AsyncRead + Unpin> AsyncRead for Watched<I> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        if this.busy() {
            this.phase = Phase::Busy;
            return match Pin::new(&mut this.io).poll_read(cx, buf) {
                Poll::Pending => this.poll_busy(cx),
                ready => ready,
            };
        }
        // Served since the last read (a request may have started and ended
        // without one): idle from now.
        let started = this.shared.started.load(Ordering::Acquire);
        if this.phase == Phase::Busy || started != this.started {
            this.started = started;
            this.enter(Phase::Idle);
        }
        let before = buf.filled().len();
        match Pin::new(&mut this.io).poll_read(cx, buf) {
            Poll::Ready(Ok(())) => {
                let filled = buf.filled();
                if filled.len() > before {
                    this.saw(&filled[before..]);
                }
                Poll::Ready(Ok(()))
            }
            Poll::Pending => this.poll_deadline(cx),
            failed => failed,
        }
    }
}

impl<I: AsyncWrite + Unpin> AsyncWrite for Watched<I> {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.get_mut().io).poll_write(cx, buf)
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.get_mut().io).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.io.is_write_vectored()
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().io).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().io).poll_shutdown(cx)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::{AsyncReadExt, AsyncWriteExt, DuplexStream};
    use tokio::task::JoinHandle;

    /// Real time (tokio's paused clock would build tokio twice in CI): each
    /// test tells the two limits apart by how a read ends, not by when.
    fn waits(head_ms: u64, idle_ms: u64) -> Waits {
        Waits {
            head: Duration::from_millis(head_ms),
            idle: Duration::from_millis(idle_ms),
        }
    }

    type Outcome = (Result<usize, io::ErrorKind>, Watched<DuplexStream>);

    fn read_next(mut watched: Watched<DuplexStream>) -> JoinHandle<Outcome> {
        tokio::spawn(async move {
            let mut buf = [0u8; 64];
            let read = tokio::time::timeout(Duration::from_secs(20), watched.read(&mut buf))
                .await
                .expect("every wait here ends well within 20 s");
            (read.map_err(|e| e.kind()), watched)
        })
    }

    async fn read_now(watched: Watched<DuplexStream>) -> Outcome {
        read_next(watched).await.unwrap()
    }

    #[tokio::test]
    async fn a_head_is_due_from_the_accept_and_from_the_first_byte_after_idling() {
        let (mut client, io) = tokio::io::duplex(1024);
        let (watched, _requests) = Watched::new(io, waits(200, 30_000));
        client.write_all(b"GET / HT").await.unwrap();
        let (read, watched) = read_now(watched).await;
        assert_eq!(read, Ok(8));
        let (read, _) = read_now(watched).await;
        assert_eq!(read, Err(io::ErrorKind::TimedOut));

        // A request served, then an idle spell five times the head's limit:
        // still open. The next request's first byte starts the head's clock.
        let (mut client, io) = tokio::io::duplex(1024);
        let (watched, requests) = Watched::new(io, waits(200, 30_000));
        client.write_all(b"GET / HTTP/1.1\r\n\r\n").await.unwrap();
        let (_, watched) = read_now(watched).await;
        drop(requests.start());
        let waiting = read_next(watched);
        tokio::time::sleep(Duration::from_millis(1_000)).await;
        assert!(
            !waiting.is_finished(),
            "an idle connection closed at the head's limit"
        );
        client.write_all(b"GET / HT").await.unwrap();
        let (read, watched) = waiting.await.unwrap();
        assert_eq!(read, Ok(8));
        let (read, _) = read_now(watched).await;
        assert_eq!(read, Err(io::ErrorKind::TimedOut));
    }

    #[tokio::test]
    async fn a_busy_connection_has_no_deadline_and_an_idle_one_ends_quietly() {
        let (mut client, io) = tokio::io::duplex(1024);
        let (watched, requests) = Watched::new(io, waits(100, 100));
        client.write_all(b"POST / HTTP/1.1\r\n\r\n").await.unwrap();
        let (_, watched) = read_now(watched).await;
        let served = requests.start();
        let waiting = read_next(watched);
        tokio::time::sleep(Duration::from_millis(1_000)).await;
        assert!(!waiting.is_finished(), "a request in flight was cut");
        client.write_all(b"body").await.unwrap();
        let (read, watched) = waiting.await.unwrap();
        assert_eq!(read, Ok(4));
        // The last request ends while the connection waits: idle, then the end.
        let ending = read_next(watched);
        tokio::time::sleep(Duration::from_millis(300)).await;
        assert!(!ending.is_finished(), "ended while a request was in flight");
        drop(served);
        let (read, _) = ending.await.unwrap();
        assert_eq!(read, Ok(0));
    }

    #[tokio::test]
    async fn http2_bytes_while_idle_are_not_a_head() {
        let (mut client, io) = tokio::io::duplex(1024);
        let (watched, _requests) = Watched::new(io, waits(100, 1_500));
        client
            .write_all(b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n")
            .await
            .unwrap();
        let (_, watched) = read_now(watched).await;
        let waiting = read_next(watched);
        tokio::time::sleep(Duration::from_millis(300)).await;
        client.write_all(b"ping").await.unwrap();
        let (read, watched) = waiting.await.unwrap();
        assert_eq!(read, Ok(4));
        // Over HTTP/1.1 this would be a head, late after 100 ms.
        let (read, _) = read_now(watched).await;
        assert_eq!(read, Ok(0));
    }
}
