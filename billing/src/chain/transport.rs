//! JSON-RPC over HTTP for alloy, through a pooled hyper client with rustls
//! (ring): the TLS stack the rest of GPU-Bridge uses, with a deadline and a cap
//! on what a node may send back.

use alloy::rpc::json_rpc::{RequestPacket, ResponsePacket};
use alloy::transports::{TransportError, TransportErrorKind, TransportFut};
use bytes::Bytes;
use http_body_util::{BodyExt, Full, Limited};
use hyper::header::CONTENT_TYPE;
use hyper::{Request, Uri};
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use std::task::{Context, Poll};
use std::time::Duration;
use tower_service::Service;

type Https = hyper_rustls::HttpsConnector<HttpConnector>;

/// Largest JSON-RPC answer read (a page of logs can be large).
const MAX_ANSWER: usize = 32 * 1024 * 1024;

#[derive(Clone)]
pub struct RpcTransport {
    client: Client<Https, Full<Bytes>>,
    url: Uri,
    timeout: Duration,
}

impl RpcTransport {
    pub fn new(url: Uri, timeout: Duration) -> RpcTransport {
        let mut http = HttpConnector::new();
        http.set_nodelay(true);
        let https = gpubridge_protocol::media::https_connector(http);
        RpcTransport {
            client: Client::builder(TokioExecutor::new()).build(https),
            url,
            timeout,
        }
    }

    async fn send(self, packet: RequestPacket) -> Result<ResponsePacket, TransportError> {
        let body = packet.serialize().map_err(TransportError::ser_err)?;
        let request = Request::post(self.url.clone())
            .header(CONTENT_TYPE, "application/json")
            .body(Full::new(Bytes::from(body.get().to_owned())))
            .map_err(TransportErrorKind::custom)?;
        let exchange = async {
            let response = self.client.request(request).await.map_err(|e| {
                TransportErrorKind::custom_str(&gpubridge_protocol::media::error_chain(&e))
            })?;
            let status = response.status();
            let bytes = Limited::new(response.into_body(), MAX_ANSWER)
                .collect()
                .await
                .map_err(|e| TransportErrorKind::custom_str(&e.to_string()))?
                .to_bytes();
            if !status.is_success() {
                return Err(TransportErrorKind::http_error(
                    status.as_u16(),
                    String::from_utf8_lossy(&bytes).into_owned(),
                ));
            }
            serde_json::from_slice(&bytes)
                .map_err(|e| TransportError::deser_err(e, String::from_utf8_lossy(&bytes)))
        };
        tokio::time::timeout(self.timeout, exchange)
            .await
            .unwrap_or_else(|_| {
                Err(TransportErrorKind::custom_str(
                    "the RPC node did not answer in time",
                ))
            })
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
