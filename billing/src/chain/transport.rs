//! JSON-RPC over HTTP for alloy, through billing's [`JsonPoster`].

use crate::poster::{JsonPoster, PostError};
use alloy::rpc::json_rpc::{RequestPacket, ResponsePacket};
use alloy::transports::{TransportError, TransportErrorKind, TransportFut};
use bytes::Bytes;
use hyper::Uri;
use std::task::{Context, Poll};
use std::time::Duration;
use tower_service::Service;

/// Largest JSON-RPC answer read (a page of logs can be large).
const MAX_ANSWER: usize = 32 * 1024 * 1024;

#[derive(Clone)]
pub struct RpcTransport {
    poster: JsonPoster,
    url: Uri,
}

impl RpcTransport {
    pub fn new(url: Uri, timeout: Duration) -> RpcTransport {
        RpcTransport {
            poster: JsonPoster::new(timeout, MAX_ANSWER),
            url,
        }
    }

    async fn send(self, packet: RequestPacket) -> Result<ResponsePacket, TransportError> {
        let body = packet.serialize().map_err(TransportError::ser_err)?;
        let bytes = self
            .poster
            .post(&self.url, Bytes::from(body.get().to_owned()))
            .await
            .map_err(|e| match e {
                PostError::Status { status, body } => TransportErrorKind::http_error(status, body),
                other => TransportErrorKind::custom_str(&other.to_string()),
            })?;
        serde_json::from_slice(&bytes)
            .map_err(|e| TransportError::deser_err(e, String::from_utf8_lossy(&bytes)))
    }
}

impl Service<RequestPacket> for RpcTransport {
    type Response = ResponsePacket;
    type Error = TransportError;
    type Future = TransportFut<'static>;

    fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, packet: RequestPacket) -> Self::Future {
        Box::pin(self.clone().send(packet))
    }
}
