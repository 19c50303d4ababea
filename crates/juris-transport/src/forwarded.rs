//! The client address of a DoH request that came through a reverse proxy: `Forwarded`
//! (RFC 7239 `for=`) or `X-Forwarded-For`, believed only when the TCP peer is a trusted proxy.
//!
//! ```text
//!  peer ∉ trusted proxies ─► peer (headers ignored: anyone can write them)
//!  peer ∈ trusted proxies ─► hops = Forwarded for= values (else X-Forwarded-For), left to right
//!        walk right to left, skipping trusted proxies; the first other hop is the client
//!        a hop we cannot read ("unknown", obfuscated, garbage) ─► stop: the peer
//!        every hop trusted ─► the leftmost
//! ```
//! Only `Forwarded` is read when both headers are present.
//!
//! # Limitations
//! - Quoted strings containing `,` or `;` inside other `Forwarded` parameters are not
//!   unquoted before splitting (no common proxy writes them).

use std::net::{IpAddr, SocketAddr};

use http::HeaderMap;
use ipnet::IpNet;

/// At most this many hops are read (a longer chain is cut at the right end's side: the rest is
/// treated as unreadable).
const MAX_HOPS: usize = 32;

/// Where a request's client address came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ClientSource {
    /// The TCP peer (no trusted proxy, or nothing usable in the headers).
    Peer,
    /// A `Forwarded` / `X-Forwarded-For` hop named by a trusted proxy.
    Forwarded,
}

/// The client address for a request from `peer` with `headers`. `port` is the one in the
/// header, or 0.
pub fn client_address(
    peer: SocketAddr,
    headers: &HeaderMap,
    trusted: &[IpNet],
) -> (SocketAddr, ClientSource) {
    let peer = SocketAddr::new(peer.ip().to_canonical(), peer.port());
    if trusted.is_empty() || !is_trusted(peer.ip(), trusted) {
        return (peer, ClientSource::Peer);
    }
    let mut hops: Vec<Option<SocketAddr>> = Vec::new();
    let forwarded = headers.get_all(http::header::FORWARDED);
    if forwarded.iter().next().is_some() {
        for value in forwarded {
            let Ok(value) = value.to_str() else {
                hops.push(None);
                continue;
            };
            for element in value.split(',') {
                hops.push(forwarded_for(element));
            }
        }
    } else {
        for value in headers.get_all("x-forwarded-for") {
            let Ok(value) = value.to_str() else {
                hops.push(None);
                continue;
            };
            for hop in value.split(',') {
                hops.push(node(hop.trim()));
            }
        }
    }
    if hops.is_empty() {
        return (peer, ClientSource::Peer);
    }
    let start = hops.len().saturating_sub(MAX_HOPS);
    let readable = &hops[start..];
    for hop in readable.iter().rev() {
        match hop {
            Some(addr) if is_trusted(addr.ip(), trusted) => continue,
            Some(addr) => return (*addr, ClientSource::Forwarded),
            None => return (peer, ClientSource::Peer),
        }
    }
    // Every hop is a trusted proxy: the leftmost is where the request began (unless the chain
    // was cut, when we cannot know).
    match (start, readable.first()) {
        (0, Some(Some(addr))) => (*addr, ClientSource::Forwarded),
        _ => (peer, ClientSource::Peer),
    }
}

fn is_trusted(address: IpAddr, trusted: &[IpNet]) -> bool {
    let address = address.to_canonical();
    trusted.iter().any(|net| net.contains(&address))
}

/// The `for=` node of one `Forwarded` element (`for=192.0.2.60;proto=http;by=203.0.113.43`).
fn forwarded_for(element: &str) -> Option<SocketAddr> {
    element.split(';').find_map(|pair| {
        let (name, value) = pair.split_once('=')?;
        if !name.trim().eq_ignore_ascii_case("for") {
            return None;
        }
        let value = value.trim();
        let value = value
            .strip_prefix('"')
            .and_then(|v| v.strip_suffix('"'))
            .unwrap_or(value);
        node(value)
    })
}

/// An RFC 7239 node: `192.0.2.1`, `192.0.2.1:4711`, `[2001:db8::1]`, `[2001:db8::1]:4711`;
/// also a bare IPv6 address (as `X-Forwarded-For` writes it). `unknown`, obfuscated
/// identifiers (`_hidden`) and obfuscated ports give `None`.
fn node(value: &str) -> Option<SocketAddr> {
    if let Ok(ip) = value.parse::<IpAddr>() {
        return Some(SocketAddr::new(ip.to_canonical(), 0));
    }
    if let Ok(addr) = value.parse::<SocketAddr>() {
        return Some(SocketAddr::new(addr.ip().to_canonical(), addr.port()));
    }
    let inner = value.strip_prefix('[')?.strip_suffix(']')?;
    let ip: std::net::Ipv6Addr = inner.parse().ok()?;
    Some(SocketAddr::new(IpAddr::V6(ip).to_canonical(), 0))
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used, reason = "test code")]
mod tests {
    use super::*;

    fn headers(pairs: &[(&str, &str)]) -> HeaderMap {
        let mut map = HeaderMap::new();
        for (name, value) in pairs {
            map.append(
                http::HeaderName::from_bytes(name.as_bytes()).unwrap(),
                value.parse().unwrap(),
            );
        }
        map
    }

    fn trusted() -> Vec<IpNet> {
        vec!["10.0.0.0/8".parse().unwrap(), "::1/128".parse().unwrap()]
    }

    fn client(peer: &str, pairs: &[(&str, &str)]) -> (SocketAddr, ClientSource) {
        client_address(peer.parse().unwrap(), &headers(pairs), &trusted())
    }

    #[test]
    fn headers_from_an_untrusted_peer_are_ignored() {
        let (addr, source) = client("192.0.2.7:5000", &[("x-forwarded-for", "198.51.100.1")]);
        assert_eq!(addr, "192.0.2.7:5000".parse().unwrap());
        assert_eq!(source, ClientSource::Peer);
        let (addr, _) = client_address(
            "10.0.0.1:1".parse().unwrap(),
            &headers(&[("forwarded", "for=198.51.100.1")]),
            &[],
        );
        assert_eq!(addr, "10.0.0.1:1".parse().unwrap(), "no trusted proxies");
    }

    #[test]
    fn rightmost_untrusted_hop_of_x_forwarded_for() {
        // A client forging the left part cannot choose its jurisdiction.
        let (addr, source) = client(
            "10.0.0.1:443",
            &[("x-forwarded-for", "203.0.113.9, 198.51.100.1, 10.0.0.2")],
        );
        assert_eq!(addr, "198.51.100.1:0".parse().unwrap());
        assert_eq!(source, ClientSource::Forwarded);
        // Several header lines form one list.
        let (addr, _) = client(
            "10.0.0.1:443",
            &[
                ("x-forwarded-for", "198.51.100.1"),
                ("x-forwarded-for", "198.51.100.2"),
            ],
        );
        assert_eq!(addr.ip(), "198.51.100.2".parse::<IpAddr>().unwrap());
    }

    #[test]
    fn forwarded_for_with_ports_quotes_and_ipv6() {
        let (addr, _) = client(
            "10.0.0.1:443",
            &[(
                "forwarded",
                r#"for=192.0.2.43, for="[2001:db8:cafe::17]:4711";proto=https, for=10.9.9.9"#,
            )],
        );
        assert_eq!(addr, "[2001:db8:cafe::17]:4711".parse().unwrap());
        let (addr, _) = client(
            "[::1]:443",
            &[("Forwarded", "proto=https;For=192.0.2.60:8080;by=10.0.0.1")],
        );
        assert_eq!(addr, "192.0.2.60:8080".parse().unwrap());
        // Forwarded wins over X-Forwarded-For.
        let (addr, _) = client(
            "10.0.0.1:443",
            &[
                ("x-forwarded-for", "198.51.100.1"),
                ("forwarded", "for=192.0.2.1"),
            ],
        );
        assert_eq!(addr.ip(), "192.0.2.1".parse::<IpAddr>().unwrap());
    }

    #[test]
    fn unreadable_or_missing_hops_fall_back_to_the_peer() {
        for value in ["for=unknown", "for=_hidden", "for=\"\"", "proto=https"] {
            let (addr, source) = client("10.0.0.1:443", &[("forwarded", value)]);
            assert_eq!(addr, "10.0.0.1:443".parse().unwrap(), "{value}");
            assert_eq!(source, ClientSource::Peer);
        }
        let (addr, _) = client("10.0.0.1:443", &[("x-forwarded-for", "garbage")]);
        assert_eq!(addr, "10.0.0.1:443".parse().unwrap());
        let (addr, _) = client("10.0.0.1:443", &[]);
        assert_eq!(addr, "10.0.0.1:443".parse().unwrap());
    }

    #[test]
    fn all_trusted_hops_give_the_leftmost() {
        let (addr, source) = client("10.0.0.1:443", &[("x-forwarded-for", "10.1.1.1, 10.2.2.2")]);
        assert_eq!(addr, "10.1.1.1:0".parse().unwrap());
        assert_eq!(source, ClientSource::Forwarded);
    }

    #[test]
    fn ipv4_mapped_addresses_are_canonical() {
        let (addr, _) = client(
            "[::ffff:10.0.0.1]:443",
            &[("x-forwarded-for", "::ffff:192.0.2.5")],
        );
        assert_eq!(addr, "192.0.2.5:0".parse().unwrap());
    }
}
