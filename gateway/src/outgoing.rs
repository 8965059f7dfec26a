//! Response bodies: whole bytes for nearly every answer, or chunks sent as they
//! are made (Server-Sent Events on `/v1/chat/completions`, MCP's streams, the
//! test stand-ins' streams). One
//! enum, so the common answer is not boxed.

use bytes::Bytes;
use http_body_util::combinators::BoxBody;
use http_body_util::Full;
use hyper::body::{Body, Frame, SizeHint};
use std::convert::Infallible;
use std::pin::Pin;
use std::task::{Context, Poll};
use tokio::sync::mpsc;

pub enum Outgoing {
    Whole(Full<Bytes>),
    /// Chunks from a producer task; it sees the client leave when its sends fail.
    Chunks(mpsc::Receiver<Bytes>),
    /// Another library's body (rmcp's).
    Boxed(BoxBody<Bytes, Infallible>),
    /// A body that makes its frames as the connection polls it (a running
    /// job's chat stream), with no task in between.
    Produced(Pin<Box<dyn Body<Data = Bytes, Error = Infallible> + Send>>),
}

impl Outgoing {
    pub fn whole(bytes: impl Into<Bytes>) -> Outgoing {
        Outgoing::Whole(Full::new(bytes.into()))
    }
}

impl Body for Outgoing {
    type Data = Bytes;
    type Error = Infallible;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Infallible>>> {
        match self.get_mut() {
            Outgoing::Whole(full) => Pin::new(full).poll_frame(cx),
            Outgoing::Chunks(rx) => rx.poll_recv(cx).map(|c| c.map(|b| Ok(Frame::data(b)))),
            Outgoing::Boxed(body) => Pin::new(body).poll_frame(cx),
            Outgoing::Produced(body) => body.as_mut().poll_frame(cx),
        }
    }

    fn is_end_stream(&self) -> bool {
        match self {
            Outgoing::Whole(full) => full.is_end_stream(),
            Outgoing::Chunks(_) => false,
            Outgoing::Boxed(body) => body.is_end_stream(),
            Outgoing::Produced(body) => body.is_end_stream(),
        }
    }

    fn size_hint(&self) -> SizeHint {
        match self {
            Outgoing::Whole(full) => full.size_hint(),
            Outgoing::Chunks(_) => SizeHint::default(),
            Outgoing::Boxed(body) => body.size_hint(),
            Outgoing::Produced(body) => body.size_hint(),
        }
    }
}
