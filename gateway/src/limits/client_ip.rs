//! Who the client is, for per-IP limits: the TCP peer, or behind a trusted
//! proxy the last address that proxy (and any trusted hop before it) saw.

use hyper::HeaderMap;
use std::net::{IpAddr, Ipv6Addr};

/// The connection's peer, put in each request's extensions by the server.
#[derive(Clone, Copy, Debug)]
pub struct Peer(pub IpAddr);

/// What a per-IP bucket is keyed by: an IPv4 address, or an IPv6 /64 (one
/// subscriber's usual allocation, so rotating within it does not help).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum IpKey {
    V4(u32),
    /// The address's first 64 bits.
    V6(u64),
}

impl From<IpAddr> for IpKey {
    fn from(ip: IpAddr) -> IpKey {
        match canonical(ip) {
            IpAddr::V4(v4) => IpKey::V4(u32::from(v4)),
            IpAddr::V6(v6) => IpKey::V6((u128::from(v6) >> 64) as u64),
        }
    }
}

fn canonical(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(ip, IpAddr::V4),
        v4 => v4,
    }
}

/// The client's address: `peer` unless it is a trusted proxy, then the
/// right-most `X-Forwarded-For` entry that is not itself trusted.
pub fn client_ip(peer: IpAddr, headers: &HeaderMap, trusted: &[IpAddr]) -> IpAddr {
    let is_trusted = |ip: IpAddr| trusted.contains(&canonical(ip));
    if !is_trusted(peer) {
        return peer;
    }
    let hops = headers
        .get_all("x-forwarded-for")
        .iter()
        .filter_map(|value| value.to_str().ok())
        .flat_map(|value| value.split(','))
        .map(str::trim);
    let mut client = peer;
    for hop in hops.collect::<Vec<_>>().into_iter().rev() {
        match parse_hop(hop) {
            Some(ip) if is_trusted(ip) => client = ip,
            Some(ip) => return ip,
            // Garbage from before the trusted hops: stop at what they vouch for.
            None => return client,
        }
    }
    client
}

fn parse_hop(hop: &str) -> Option<IpAddr> {
    if let Ok(ip) = hop.parse::<IpAddr>() {
        return Some(ip);
    }
    // `[v6]:port` and `v4:port`, as some proxies write them.
    if let Some(inner) = hop.strip_prefix('[').and_then(|h| h.split(']').next()) {
        return inner.parse::<Ipv6Addr>().ok().map(IpAddr::V6);
    }
    hop.rsplit_once(':').and_then(|(ip, _)| ip.parse().ok())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(xff: &[&str]) -> HeaderMap {
        let mut map = HeaderMap::new();
        for value in xff {
            map.append("x-forwarded-for", value.parse().unwrap());
        }
        map
    }

    #[test]
    fn forwarded_for_counts_only_from_trusted_proxies() {
        let proxy: IpAddr = "127.0.0.9".parse().unwrap();
        let client: IpAddr = "203.0.113.7".parse().unwrap();
        let h = headers(&["198.51.100.1, 203.0.113.7"]);
        assert_eq!(
            client_ip(proxy, &h, &[]),
            proxy,
            "untrusted peer: its own address"
        );
        assert_eq!(client_ip(proxy, &h, &[proxy]), client, "the right-most hop");
        let chained = headers(&["198.51.100.1", "203.0.113.7, 127.0.0.8"]);
        let two = ["127.0.0.8".parse().unwrap(), proxy];
        assert_eq!(
            client_ip(proxy, &chained, &two),
            client,
            "trusted hops skipped"
        );
        assert_eq!(client_ip(proxy, &headers(&["junk"]), &[proxy]), proxy);
        assert_eq!(
            client_ip(proxy, &headers(&["[2001:db8::1]:443"]), &[proxy]),
            "2001:db8::1".parse::<IpAddr>().unwrap()
        );
        assert_eq!(
            client_ip(proxy, &headers(&["203.0.113.7:5000"]), &[proxy]),
            client
        );
    }

    #[test]
    fn ipv6_clients_share_their_64() {
        let a: IpAddr = "2001:db8:1:2::1".parse().unwrap();
        let b: IpAddr = "2001:db8:1:2:ffff::9".parse().unwrap();
        let c: IpAddr = "2001:db8:1:3::1".parse().unwrap();
        assert_eq!(IpKey::from(a), IpKey::from(b));
        assert_ne!(IpKey::from(a), IpKey::from(c));
        let mapped: IpAddr = "::ffff:203.0.113.7".parse().unwrap();
        assert_eq!(
            IpKey::from(mapped),
            IpKey::from("203.0.113.7".parse::<IpAddr>().unwrap())
        );
        assert_ne!(
            IpKey::from("0.0.0.1".parse::<IpAddr>().unwrap()),
            IpKey::from("::1".parse::<IpAddr>().unwrap())
        );
    }
}
