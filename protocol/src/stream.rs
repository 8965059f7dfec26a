//! Frames over any async byte stream (a QUIC stream in practice): a reader that
//! buffers exactly one frame at a time, and a writer of whole frames.

use crate::wire::{self, WireError};
use serde::de::DeserializeOwned;
use serde::Serialize;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};

#[derive(Debug, thiserror::Error)]
pub enum StreamError {
    #[error(transparent)]
    Wire(#[from] WireError),
    #[error("stream failed: {0}")]
    Io(#[from] std::io::Error),
    #[error("stream ended in the middle of a frame")]
    Truncated,
}

/// Reads frames one by one; never holds more than one frame plus one read.
pub struct FrameReader<R> {
    reader: R,
    buffer: Vec<u8>,
    max_frame: usize,
}

impl<R: AsyncRead + Unpin> FrameReader<R> {
    pub fn new(reader: R, max_frame: usize) -> Self {
        FrameReader {
            reader,
            buffer: Vec::new(),
            max_frame,
        }
    }

    /// The next message; `Ok(None)` when the stream ended cleanly between frames.
    pub async fn next<T: DeserializeOwned>(&mut self) -> Result<Option<T>, StreamError> {
        loop {
            if let Some((message, used)) = wire::decode(&self.buffer, self.max_frame)? {
                self.buffer.drain(..used);
                return Ok(Some(message));
            }
            // The length is checked before reserving room for the whole frame.
            if let Some(total) = wire::frame_len(&self.buffer, self.max_frame)? {
                self.buffer.reserve(total.saturating_sub(self.buffer.len()));
            }
            if self.reader.read_buf(&mut self.buffer).await? == 0 {
                return match self.buffer.is_empty() {
                    true => Ok(None),
                    false => Err(StreamError::Truncated),
                };
            }
        }
    }

    pub fn into_inner(self) -> R {
        self.reader
    }

    pub fn get_mut(&mut self) -> &mut R {
        &mut self.reader
    }
}

/// Writes one message as one frame.
pub async fn write_frame<W, T>(
    writer: &mut W,
    message: &T,
    max_frame: usize,
) -> Result<(), StreamError>
where
    W: AsyncWrite + Unpin,
    T: Serialize,
{
    let frame = wire::encode(message, max_frame)?;
    writer.write_all(&frame).await?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::wire::DEFAULT_MAX_FRAME;

    #[tokio::test]
    async fn frames_cross_a_pipe_in_small_pieces() {
        let (mut a, b) = tokio::io::duplex(7);
        let writer = tokio::spawn(async move {
            for i in 0..50u64 {
                write_frame(&mut a, &(i, "x".repeat(i as usize * 10)), DEFAULT_MAX_FRAME)
                    .await
                    .unwrap();
            }
        });
        let mut reader = FrameReader::new(b, DEFAULT_MAX_FRAME);
        for i in 0..50u64 {
            let (n, text): (u64, String) = reader.next().await.unwrap().unwrap();
            assert_eq!((n, text.len()), (i, i as usize * 10));
        }
        writer.await.unwrap();
        assert!(reader.next::<(u64, String)>().await.unwrap().is_none());
    }

    #[tokio::test]
    async fn a_cut_frame_and_a_huge_one_are_errors() {
        let frame = wire::encode(&"hello", DEFAULT_MAX_FRAME).unwrap();
        let mut reader = FrameReader::new(&frame[..frame.len() - 1], DEFAULT_MAX_FRAME);
        assert!(matches!(
            reader.next::<String>().await,
            Err(StreamError::Truncated)
        ));
        let huge = [0x7f, 0xff, 0xff, 0xff, 0, 1];
        let mut reader = FrameReader::new(&huge[..], DEFAULT_MAX_FRAME);
        assert!(matches!(
            reader.next::<String>().await,
            Err(StreamError::Wire(WireError::TooLarge { .. }))
        ));
    }
}
