//! Reading a streamed chat completion (`stream: true`) from an HTTP body: each
//! chunk handed on the moment its event is complete, the end at `[DONE]`. The
//! hosted adapters and the node agent's `openai` runtime share it.

use crate::openai::{stream_data, StreamData};
use crate::sse::SseDecoder;
use bytes::Bytes;
use http_body_util::BodyExt;
use serde_json::Value;
use std::fmt::Display;
use std::future::Future;

#[derive(Debug, thiserror::Error)]
pub enum ChatStreamError<E> {
    /// Whoever takes the chunks refused one (its client left).
    #[error("{0}")]
    Sink(E),
    #[error("the stream broke: {0}")]
    Read(String),
    #[error("the stream is malformed: {0}")]
    Malformed(String),
    #[error("the server reported an error mid-stream: {0}")]
    Upstream(String),
    #[error("the stream ended without [DONE]")]
    Truncated,
}

/// Reads `body` to its `[DONE]`, passing every chunk to `sink` in order.
pub async fn read_chat_stream<B, F, Fut, E>(
    mut body: B,
    max_event: usize,
    mut sink: F,
) -> Result<(), ChatStreamError<E>>
where
    B: hyper::body::Body<Data = Bytes> + Unpin,
    B::Error: Display,
    F: FnMut(Value) -> Fut,
    Fut: Future<Output = Result<(), E>>,
{
    let mut decoder = SseDecoder::new(max_event);
    while let Some(frame) = body.frame().await {
        let frame = frame.map_err(|e| ChatStreamError::Read(e.to_string()))?;
        let Some(bytes) = frame.data_ref() else {
            continue;
        };
        let events = decoder
            .push(bytes)
            .map_err(|e| ChatStreamError::Malformed(e.to_string()))?;
        for data in events {
            match stream_data(&data).map_err(ChatStreamError::Malformed)? {
                StreamData::Chunk(chunk) => sink(chunk).await.map_err(ChatStreamError::Sink)?,
                StreamData::Done => return Ok(()),
                StreamData::Error(message) => return Err(ChatStreamError::Upstream(message)),
            }
        }
    }
    Err(ChatStreamError::Truncated)
}

#[cfg(test)]
mod tests {
    use super::*;
    use hyper::body::{Body, Frame, SizeHint};
    use serde_json::json;
    use std::collections::VecDeque;
    use std::convert::Infallible;
    use std::pin::Pin;
    use std::task::{Context, Poll};

    /// A body of ready pieces.
    struct Pieces(VecDeque<&'static str>);

    impl Body for Pieces {
        type Data = Bytes;
        type Error = Infallible;
        fn poll_frame(
            mut self: Pin<&mut Self>,
            _: &mut Context<'_>,
        ) -> Poll<Option<Result<Frame<Bytes>, Infallible>>> {
            Poll::Ready(self.0.pop_front().map(|p| Ok(Frame::data(Bytes::from(p)))))
        }
        fn size_hint(&self) -> SizeHint {
            SizeHint::default()
        }
    }

    async fn read(pieces: &[&'static str]) -> (Vec<Value>, Result<(), ChatStreamError<()>>) {
        let mut chunks = Vec::new();
        let result = read_chat_stream(Pieces(pieces.iter().copied().collect()), 1024, |c| {
            chunks.push(c);
            std::future::ready(Ok(()))
        })
        .await;
        (chunks, result)
    }

    #[tokio::test]
    async fn chunks_pass_in_order_until_done() {
        let (chunks, result) = read(&[
            "data: {\"a\":1}\n",
            "\ndata: {\"a\"",
            ":2}\n\ndata: [DONE]\n\n",
        ])
        .await;
        assert!(result.is_ok());
        assert_eq!(chunks, vec![json!({"a": 1}), json!({"a": 2})]);
    }

    #[tokio::test]
    async fn a_cut_stream_an_error_event_and_garbage_are_errors() {
        let (chunks, result) = read(&["data: {\"a\":1}\n\n"]).await;
        assert_eq!(chunks.len(), 1);
        assert!(matches!(result, Err(ChatStreamError::Truncated)));
        let (_, result) = read(&["data: {\"error\":{\"message\":\"gone\"}}\n\n"]).await;
        assert!(matches!(result, Err(ChatStreamError::Upstream(m)) if m == "gone"));
        let (_, result) = read(&["data: <html>\n\n"]).await;
        assert!(matches!(result, Err(ChatStreamError::Malformed(_))));
    }
}
