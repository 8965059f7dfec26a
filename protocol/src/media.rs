//! Fetches user-supplied media URLs (audio to transcribe, images for an agent's
//! runtime) with size and time limits, refusing private, loopback and link-local
//! addresses unless configured to allow them. The check happens in the resolver,
//! so a name cannot rebind past it. Shared by the scheduler's adapters and the
//! node agents, behind the `media` feature.

use base64::Engine;
use bytes::Bytes;
use http_body_util::{BodyExt, Empty, Limited};
use hyper::Request;
use hyper_rustls::HttpsConnector;
use hyper_util::client::legacy::connect::dns::{GaiResolver, Name};
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use std::future::Future;
use std::net::{IpAddr, SocketAddr};
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

#[derive(Debug, thiserror::Error)]
pub enum MediaError {
    #[error("media URL {0:?} is not a valid http(s) or data: URL")]
    BadUrl(String),
    #[error("media URL points at a private or loopback address, which is not allowed")]
    PrivateAddress,
    #[error("could not fetch media: {0}")]
    Fetch(String),
    #[error("media server answered HTTP {0}")]
    Status(u16),
    #[error("media is larger than the {0}-byte limit")]
    TooLarge(usize),
    #[error("fetching media took too long")]
    Timeout,
}

pub struct Media {
    pub bytes: Bytes,
    pub content_type: Option<String>,
    /// A file name for multipart uploads, taken from the URL path.
    pub file_name: String,
}

#[derive(Clone)]
pub struct MediaFetcher {
    client: Client<HttpsConnector<HttpConnector<GuardedResolver>>, Empty<Bytes>>,
    allow_private: bool,
    max_bytes: usize,
}

const FETCH_TIMEOUT: Duration = Duration::from_secs(60);

impl MediaFetcher {
    pub fn new(allow_private: bool, max_bytes: usize) -> MediaFetcher {
        MediaFetcher {
            client: Client::builder(TokioExecutor::new()).build(guarded_connector(allow_private)),
            allow_private,
            max_bytes,
        }
    }

    pub async fn fetch(&self, raw: &str) -> Result<Media, MediaError> {
        if let Some(rest) = raw.strip_prefix("data:") {
            return self.decode_data_url(rest);
        }
        let url = url::Url::parse(raw).map_err(|_| MediaError::BadUrl(raw.to_string()))?;
        if !matches!(url.scheme(), "http" | "https") {
            return Err(MediaError::BadUrl(raw.to_string()));
        }
        match refuses_literal(&url, self.allow_private) {
            None => return Err(MediaError::BadUrl(raw.to_string())),
            Some(true) => return Err(MediaError::PrivateAddress),
            Some(false) => {}
        }
        let file_name = url
            .path_segments()
            .and_then(|mut s| s.next_back().map(str::to_string))
            .filter(|s| !s.is_empty())
            .unwrap_or_else(|| "media".to_string());
        let request = Request::get(url.as_str())
            .body(Empty::new())
            .map_err(|_| MediaError::BadUrl(raw.to_string()))?;
        let fetch = async {
            let response = self.client.request(request).await.map_err(|e| {
                if is_private_refusal(&e) {
                    MediaError::PrivateAddress
                } else {
                    MediaError::Fetch(error_chain(&e))
                }
            })?;
            if !response.status().is_success() {
                return Err(MediaError::Status(response.status().as_u16()));
            }
            let content_type = response
                .headers()
                .get(hyper::header::CONTENT_TYPE)
                .and_then(|v| v.to_str().ok())
                .map(str::to_string);
            let body = Limited::new(response.into_body(), self.max_bytes)
                .collect()
                .await
                .map_err(|_| MediaError::TooLarge(self.max_bytes))?
                .to_bytes();
            Ok(Media {
                bytes: body,
                content_type,
                file_name,
            })
        };
        tokio::time::timeout(FETCH_TIMEOUT, fetch)
            .await
            .map_err(|_| MediaError::Timeout)?
    }

    fn decode_data_url(&self, rest: &str) -> Result<Media, MediaError> {
        let bad = || MediaError::BadUrl("data: URL".to_string());
        let (meta, data) = rest.split_once(',').ok_or_else(bad)?;
        let (content_type, is_base64) = match meta.strip_suffix(";base64") {
            Some(ct) => (ct, true),
            None => (meta, false),
        };
        if data.len() > self.max_bytes.saturating_mul(4) / 3 + 4 {
            return Err(MediaError::TooLarge(self.max_bytes));
        }
        let bytes = if is_base64 {
            base64::engine::general_purpose::STANDARD
                .decode(data.trim())
                .map_err(|_| bad())?
        } else {
            data.as_bytes().to_vec()
        };
        if bytes.len() > self.max_bytes {
            return Err(MediaError::TooLarge(self.max_bytes));
        }
        Ok(Media {
            bytes: Bytes::from(bytes),
            content_type: (!content_type.is_empty()).then(|| content_type.to_string()),
            file_name: "media".to_string(),
        })
    }
}

const PRIVATE_REFUSAL: &str = "resolves only to private or loopback addresses";

/// Does the URL name a private address literally? Literal addresses never reach
/// the resolver, so they are checked here; `None` when it has no host.
pub fn refuses_literal(url: &url::Url, allow_private: bool) -> Option<bool> {
    let literal = match url.host()? {
        url::Host::Ipv4(ip) => Some(IpAddr::V4(ip)),
        url::Host::Ipv6(ip) => Some(IpAddr::V6(ip)),
        url::Host::Domain(_) => None,
    };
    Some(literal.is_some_and(|ip| !allow_private && is_private(ip)))
}

/// Did a request fail because its name resolved only to refused addresses?
pub fn is_private_refusal(error: &dyn std::error::Error) -> bool {
    error_chain(error).contains(PRIVATE_REFUSAL)
}

/// HTTP(S) whose names are resolved by a [`GuardedResolver`]: for clients of
/// user-supplied URLs (media, webhooks). hyper's client never follows redirects.
pub fn guarded_connector(allow_private: bool) -> HttpsConnector<HttpConnector<GuardedResolver>> {
    https_connector(
        HttpConnector::new_with_resolver(GuardedResolver {
            inner: GaiResolver::new(),
            allow_private,
        }),
        Duration::from_secs(10),
    )
}

/// DNS resolution that drops private addresses (unless allowed).
#[derive(Clone)]
pub struct GuardedResolver {
    inner: GaiResolver,
    allow_private: bool,
}

type ResolveFuture =
    Pin<Box<dyn Future<Output = Result<std::vec::IntoIter<SocketAddr>, std::io::Error>> + Send>>;

impl tower_service::Service<Name> for GuardedResolver {
    type Response = std::vec::IntoIter<SocketAddr>;
    type Error = std::io::Error;
    type Future = ResolveFuture;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, name: Name) -> Self::Future {
        let lookup = self.inner.call(name);
        let allow_private = self.allow_private;
        Box::pin(async move {
            let addrs: Vec<SocketAddr> = lookup
                .await?
                .filter(|a| allow_private || !is_private(a.ip()))
                .collect();
            if addrs.is_empty() {
                return Err(std::io::Error::new(
                    std::io::ErrorKind::PermissionDenied,
                    PRIVATE_REFUSAL,
                ));
            }
            Ok(addrs.into_iter())
        })
    }
}

/// HTTP and HTTPS (public web roots) over `http`, with a connect timeout.
pub fn https_connector<R>(
    mut http: HttpConnector<R>,
    connect_timeout: Duration,
) -> HttpsConnector<HttpConnector<R>> {
    http.enforce_http(false);
    http.set_connect_timeout(Some(connect_timeout));
    hyper_rustls::HttpsConnectorBuilder::new()
        .with_webpki_roots()
        .https_or_http()
        .enable_http1()
        .wrap_connector(http)
}

/// An error with its causes, `outer: inner: innermost`: hyper's own messages
/// say little without them.
pub fn error_chain(error: &dyn std::error::Error) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    text
}

/// Addresses a user must not be able to make us fetch from.
pub fn is_private(ip: IpAddr) -> bool {
    match ip {
        IpAddr::V4(v4) => {
            let [a, b, ..] = v4.octets();
            v4.is_private()
                || v4.is_loopback()
                || v4.is_link_local()
                || v4.is_broadcast()
                || v4.is_unspecified()
                || v4.is_documentation()
                || v4.is_multicast()
                || a == 0
                || a >= 240 // reserved, and broadcast
                || (a == 100 && (64..128).contains(&b)) // carrier-grade NAT (and cloud metadata)
                || (a == 198 && (b == 18 || b == 19)) // benchmarking
                || (a == 192 && b == 0 && v4.octets()[2] == 0) // IETF protocol assignments
        }
        IpAddr::V6(v6) => {
            if let Some(v4) = embedded_v4(v6) {
                return is_private(IpAddr::V4(v4));
            }
            let segments = v6.segments();
            let first = segments[0];
            v6.is_loopback()
                || v6.is_unspecified()
                || v6.is_multicast()
                || (first & 0xfe00) == 0xfc00 // unique local (AWS metadata's fd00:ec2::254)
                || (first & 0xffc0) == 0xfe80 // link local
                || (first & 0xffc0) == 0xfec0 // site local, deprecated
                || (first == 0x2001 && segments[1] == 0x0db8) // documentation
                || (first == 0x0100 && segments[1..4] == [0, 0, 0]) // discard
        }
    }
}

/// An IPv4 address carried inside an IPv6 one — mapped (`::ffff:a.b.c.d`),
/// compatible (`::a.b.c.d`), NAT64 (`64:ff9b::/96`) or 6to4 (`2002::/16`) —
/// which routes to that IPv4 address and must be judged as it.
fn embedded_v4(v6: std::net::Ipv6Addr) -> Option<std::net::Ipv4Addr> {
    if let Some(v4) = v6.to_ipv4_mapped() {
        return Some(v4);
    }
    let s = v6.segments();
    let from = |hi: u16, lo: u16| std::net::Ipv4Addr::from((u32::from(hi) << 16) | u32::from(lo));
    match s {
        [0, 0, 0, 0, 0, 0, hi, lo] if hi != 0 => Some(from(hi, lo)),
        [0x64, 0xff9b, 0, 0, 0, 0, hi, lo] => Some(from(hi, lo)),
        [0x2002, hi, lo, ..] => Some(from(hi, lo)),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn private_ranges_are_recognised() {
        for ip in [
            "127.0.0.1",
            "10.1.2.3",
            "172.16.0.1",
            "192.168.1.1",
            "169.254.169.254",
            "0.0.0.0",
            "100.64.0.1",
            "::1",
            "fd00::1",
            "fe80::1",
            "::ffff:127.0.0.1",
            "::127.0.0.1",
            "64:ff9b::a9fe:a9fe",
            "2002:7f00:1::",
            "fd00:ec2::254",
            "255.255.255.255",
            "240.0.0.1",
            "192.0.0.192",
            "100.100.100.200",
            "2001:db8::1",
            "fec0::1",
        ] {
            assert!(is_private(ip.parse().unwrap()), "{ip}");
        }
        for ip in [
            "8.8.8.8",
            "1.1.1.1",
            "2606:4700::1111",
            "64:ff9b::808:808",
            "2002:808:808::",
        ] {
            assert!(!is_private(ip.parse().unwrap()), "{ip}");
        }
    }

    #[tokio::test]
    async fn loopback_is_refused_unless_allowed() {
        let strict = MediaFetcher::new(false, 1024);
        assert!(matches!(
            strict.fetch("http://127.0.0.1:1/a.wav").await,
            Err(MediaError::PrivateAddress)
        ));
        assert!(matches!(
            strict.fetch("http://localhost:1/a.wav").await,
            Err(MediaError::PrivateAddress)
        ));
        let lax = MediaFetcher::new(true, 1024);
        assert!(matches!(
            lax.fetch("http://127.0.0.1:1/a.wav").await,
            Err(MediaError::Fetch(_))
        ));
    }

    #[tokio::test]
    async fn data_urls_decode_within_limits() {
        let fetcher = MediaFetcher::new(false, 8);
        let media = fetcher
            .fetch("data:audio/wav;base64,aGVsbG8=")
            .await
            .unwrap();
        assert_eq!(&media.bytes[..], b"hello");
        assert_eq!(media.content_type.as_deref(), Some("audio/wav"));
        assert!(matches!(
            fetcher.fetch("data:;base64,aGVsbG8gd29ybGQgaGVsbG8=").await,
            Err(MediaError::TooLarge(8))
        ));
        assert!(fetcher.fetch("ftp://x/y").await.is_err());
    }
}
