//! Benchmarks and their helpers send traffic to this machine only: the one
//! check of a URL they are given.

use anyhow::Context;
use std::net::IpAddr;

/// `url` is plain `http://` to a loopback address or `localhost`; `flag`
/// names where it came from, for the error.
pub fn require_loopback_http(flag: &str, url: &str) -> anyhow::Result<()> {
    let parsed = url::Url::parse(url).with_context(|| format!("{flag} URL {url:?}"))?;
    anyhow::ensure!(
        parsed.scheme() == "http",
        "{flag} {url}: plain http:// on loopback"
    );
    let loopback = match parsed.host() {
        Some(url::Host::Ipv4(ip)) => IpAddr::from(ip).is_loopback(),
        Some(url::Host::Ipv6(ip)) => IpAddr::from(ip).is_loopback(),
        Some(url::Host::Domain(name)) => name == "localhost",
        None => false,
    };
    anyhow::ensure!(loopback, "{flag} {url}: benchmarks target loopback only");
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_loopback_is_a_target() {
        for url in [
            "http://127.0.0.1:1/",
            "http://127.3.4.5:1/",
            "http://localhost:1/",
        ] {
            assert!(require_loopback_http("--target", url).is_ok(), "{url}");
        }
        for url in ["http://example.com/", "https://127.0.0.1/", "not a url"] {
            assert!(require_loopback_http("--target", url).is_err(), "{url}");
        }
    }
}
