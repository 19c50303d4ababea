//! The PROXY protocol (HAProxy's, versions 1 and 2) from trusted load balancers: the client
//! address a balancer puts in front of each datagram (UDP) or connection (TCP, DoT, DoH) is
//! the one the pipeline classifies, checks against the access list and counts.
//!
//! ```text
//!  [server] proxy_protocol_from empty ─► off: one `Option` test per datagram, nothing else
//!  peer in proxy_protocol_from ─► header required: v2 (binary) or v1 (text), parsed by `ppp`
//!       PROXY command, IPv4/IPv6 ─► client = the header's source address and port
//!       LOCAL command, UNSPEC/UNIX family, v1 UNKNOWN ─► client = the peer itself
//!       no header, a malformed one ─► refused (datagram dropped, connection closed)
//!  any other peer ─► no header believed: one that starts with a PROXY signature ─► refused;
//!       anything else is DNS as usual
//! ```
//!
//! Over UDP the header and the DNS message share a datagram; the response goes back to the
//! balancer, without a header (as dnsdist, HAProxy and NGINX expect). Over TCP the header
//! comes first on the connection and is read before the DNS framing (or, for DoT and DoH,
//! before the TLS handshake), never more bytes than the header has.
//!
//! # Limitations
//! - Type-length-value fields of version 2 (ALPN, authority, SSL, ...) are ignored.
//! - Over TCP, a peer outside `proxy_protocol_from` that sends a PROXY signature is refused only
//!   when the signature's first bytes arrive in its first segment; a signature split across
//!   segments is read as DNS (and fails as such).

use std::net::{IpAddr, SocketAddr};

use ipnet::IpNet;
use ppp::v1;
use ppp::v2;
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncReadExt};
use tokio::net::TcpStream;

use crate::pipeline::Pipeline;

/// The 12-byte signature that opens a version 2 header.
pub const V2_SIGNATURE: &[u8; 12] = b"\r\n\r\n\0\r\nQUIT\n";
/// The text that opens a version 1 header.
pub const V1_PREFIX: &[u8; 6] = b"PROXY ";
/// Longest version 1 header, CRLF included (the specification's 107 bytes).
const V1_MAX: usize = 107;
/// Fixed part of a version 2 header: signature, version/command, family/protocol, length.
const V2_FIXED: usize = 16;

/// The load balancers whose PROXY headers are believed (`[server] proxy_protocol_from`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProxyTrust {
    from: Vec<IpNet>,
}

/// Why a PROXY header (or its absence) was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ProxyError {
    /// A trusted balancer sent no header.
    #[error("no PROXY header from a trusted load balancer")]
    Missing,
    /// A trusted balancer sent a header that does not parse.
    #[error("malformed PROXY header: {0}")]
    Malformed(String),
    /// A peer outside `proxy_protocol_from` sent a header.
    #[error("PROXY header from a peer that is not a trusted load balancer")]
    Untrusted,
    /// The connection ended or failed while the header was read.
    #[error("connection failed while reading the PROXY header: {0}")]
    Io(std::io::ErrorKind),
    /// The header (or, from another peer, the first bytes) did not arrive in time.
    #[error("no PROXY header (or first bytes) in time")]
    TimedOut,
}

impl ProxyTrust {
    /// `None` when `from` is empty (the PROXY protocol is off).
    pub fn new(from: &[IpNet]) -> Option<Self> {
        if from.is_empty() {
            return None;
        }
        Some(Self {
            from: from.iter().map(IpNet::trunc).collect(),
        })
    }

    /// Whether `peer` is a trusted load balancer (IPv4-mapped IPv6 addresses count as IPv4).
    pub fn trusts(&self, peer: IpAddr) -> bool {
        let peer = peer.to_canonical();
        self.from.iter().any(|net| net.contains(&peer))
    }

    /// For a datagram from `peer`: the client it speaks for and its DNS message (what follows
    /// the header). A trusted peer must open it with a header; any other peer must not.
    pub fn admit_datagram<'a>(
        &self,
        peer: SocketAddr,
        datagram: &'a [u8],
    ) -> Result<(SocketAddr, &'a [u8]), ProxyError> {
        if self.trusts(peer.ip()) {
            let (client, length) = parse_header(datagram, peer)?;
            let message = datagram
                .get(length..)
                .ok_or_else(|| ProxyError::Malformed("header longer than the datagram".into()))?;
            Ok((client, message))
        } else if has_signature(datagram) {
            Err(ProxyError::Untrusted)
        } else {
            Ok((peer, datagram))
        }
    }

    /// The client a new TCP connection from `peer` speaks for: from a trusted peer, the
    /// header it must open with ([`read_header`], the stream is left at the first byte after
    /// it); from any other peer, the peer itself, unless its first bytes (peeked, not read)
    /// are a PROXY signature. Bounded by `timeout`.
    pub async fn admit_connection(
        &self,
        stream: &mut TcpStream,
        peer: SocketAddr,
        timeout: Duration,
    ) -> Result<SocketAddr, ProxyError> {
        let admit = async {
            if self.trusts(peer.ip()) {
                return read_header(stream, peer).await;
            }
            let mut first = [0u8; V2_SIGNATURE.len()];
            let n = stream
                .peek(&mut first)
                .await
                .map_err(|e| ProxyError::Io(e.kind()))?;
            if has_signature(&first[..n]) {
                Err(ProxyError::Untrusted)
            } else {
                Ok(peer)
            }
        };
        tokio::time::timeout(timeout, admit)
            .await
            .unwrap_or(Err(ProxyError::TimedOut))
    }
}

/// The client a new TCP (or, before its handshake, TLS) connection from `peer` speaks for:
/// `peer` when the PROXY protocol is off; otherwise what
/// [`ProxyTrust::admit_connection`] finds, checked with `admit` (the listener's access
/// check). `None`: refused (counted), close the connection.
pub async fn connection_client(
    pipeline: &Pipeline,
    stream: &mut TcpStream,
    peer: SocketAddr,
    timeout: Duration,
    admit: impl Fn(IpAddr) -> bool,
) -> Option<SocketAddr> {
    let Some(trust) = pipeline.proxy() else {
        return Some(peer);
    };
    let counters = pipeline.async_counters();
    match trust.admit_connection(stream, peer, timeout).await {
        Ok(client) if admit(client.ip()) => Some(client),
        Ok(_) => {
            counters.refused_by_acl();
            None
        }
        Err(error) => {
            tracing::debug!(%peer, %error, "connection refused");
            counters.proxy_refused();
            None
        }
    }
}

/// Whether `bytes` open with a PROXY signature (version 2, or version 1's `PROXY `), judging
/// by as many bytes as there are (at least 5 are needed to say yes).
pub fn has_signature(bytes: &[u8]) -> bool {
    let v2 = bytes.len().min(V2_SIGNATURE.len());
    let v1 = bytes.len().min(V1_PREFIX.len());
    bytes.len() >= 5 && (bytes[..v2] == V2_SIGNATURE[..v2] || bytes[..v1] == V1_PREFIX[..v1])
}

/// Parses the header at the start of `bytes` (version 2 or 1): the client it names (`peer`
/// itself for LOCAL, UNSPEC, UNIX and UNKNOWN) and the header's length.
pub fn parse_header(bytes: &[u8], peer: SocketAddr) -> Result<(SocketAddr, usize), ProxyError> {
    if bytes.starts_with(V2_SIGNATURE) {
        let header =
            v2::Header::try_from(bytes).map_err(|e| ProxyError::Malformed(e.to_string()))?;
        let client = match (header.command, header.addresses) {
            (v2::Command::Local, _) => peer,
            (v2::Command::Proxy, v2::Addresses::IPv4(a)) => {
                SocketAddr::new(IpAddr::V4(a.source_address), a.source_port)
            }
            (v2::Command::Proxy, v2::Addresses::IPv6(a)) => {
                SocketAddr::new(IpAddr::V6(a.source_address).to_canonical(), a.source_port)
            }
            (v2::Command::Proxy, v2::Addresses::Unspecified | v2::Addresses::Unix(_)) => peer,
        };
        Ok((client, header.len()))
    } else if bytes.starts_with(V1_PREFIX) {
        let header =
            v1::Header::try_from(bytes).map_err(|e| ProxyError::Malformed(e.to_string()))?;
        let client = match header.addresses {
            v1::Addresses::Tcp4(a) => SocketAddr::new(IpAddr::V4(a.source_address), a.source_port),
            v1::Addresses::Tcp6(a) => {
                SocketAddr::new(IpAddr::V6(a.source_address).to_canonical(), a.source_port)
            }
            v1::Addresses::Unknown => peer,
        };
        Ok((client, header.header.len()))
    } else {
        Err(ProxyError::Missing)
    }
}

/// Reads one header from the start of a stream, never a byte beyond it, and returns the
/// client it names (see [`parse_header`]). Version 2 takes two reads (fixed part, then the
/// announced length); version 1 is read a byte at a time up to its CRLF (at most 107).
/// Callers bound it with a timeout.
pub async fn read_header<R: AsyncRead + Unpin>(
    reader: &mut R,
    peer: SocketAddr,
) -> Result<SocketAddr, ProxyError> {
    let io = |e: std::io::Error| ProxyError::Io(e.kind());
    let mut buffer = vec![0u8; V2_FIXED];
    reader.read_exact(&mut buffer[..5]).await.map_err(io)?;
    if buffer[..5] == V2_SIGNATURE[..5] {
        reader
            .read_exact(&mut buffer[5..V2_FIXED])
            .await
            .map_err(io)?;
        if &buffer[..12] != V2_SIGNATURE {
            return Err(ProxyError::Missing);
        }
        let length = usize::from(u16::from_be_bytes([buffer[14], buffer[15]]));
        buffer.resize(V2_FIXED + length, 0);
        reader
            .read_exact(&mut buffer[V2_FIXED..])
            .await
            .map_err(io)?;
    } else if buffer[..5] == V1_PREFIX[..5] {
        buffer.truncate(5);
        while !buffer.ends_with(b"\r\n") {
            if buffer.len() >= V1_MAX {
                return Err(ProxyError::Malformed(
                    "version 1 header over 107 bytes".into(),
                ));
            }
            buffer.push(reader.read_u8().await.map_err(io)?);
        }
    } else {
        return Err(ProxyError::Missing);
    }
    let (client, length) = parse_header(&buffer, peer)?;
    if length != buffer.len() {
        return Err(ProxyError::Malformed(format!(
            "{} bytes after the header's end",
            buffer.len() - length
        )));
    }
    Ok(client)
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used, reason = "test code")]
mod tests {
    use super::*;

    fn addr(s: &str) -> SocketAddr {
        s.parse().unwrap()
    }

    fn v2(source: &str, destination: &str, command: u8) -> Vec<u8> {
        v2::Builder::with_addresses(
            0x20 | command,
            v2::Protocol::Datagram,
            (addr(source), addr(destination)),
        )
        .build()
        .unwrap()
    }

    fn trust(prefixes: &[&str]) -> ProxyTrust {
        let nets: Vec<IpNet> = prefixes.iter().map(|p| p.parse().unwrap()).collect();
        ProxyTrust::new(&nets).unwrap()
    }

    #[test]
    fn empty_list_is_off() {
        assert_eq!(ProxyTrust::new(&[]), None);
    }

    #[test]
    fn v2_datagram_from_trusted_peer_names_the_client() {
        let mut datagram = v2("192.0.2.7:4242", "127.0.0.1:53", 1);
        let header_len = datagram.len();
        datagram.extend_from_slice(b"DNSMESSAGE");
        let (client, message) = trust(&["127.0.0.2/32"])
            .admit_datagram(addr("127.0.0.2:999"), &datagram)
            .unwrap();
        assert_eq!(client, addr("192.0.2.7:4242"));
        assert_eq!(message, b"DNSMESSAGE");
        assert_eq!(
            parse_header(&datagram, addr("127.0.0.2:999")).unwrap().1,
            header_len
        );
    }

    #[test]
    fn v2_ipv6_and_mapped_sources() {
        let (client, _) = parse_header(
            &v2("[2001:db8::1]:53000", "[::1]:53", 1),
            addr("127.0.0.1:1"),
        )
        .unwrap();
        assert_eq!(client, addr("[2001:db8::1]:53000"));
        let (client, _) = parse_header(
            &v2("[::ffff:192.0.2.9]:5", "[::1]:53", 1),
            addr("127.0.0.1:1"),
        )
        .unwrap();
        assert_eq!(client, addr("192.0.2.9:5"));
    }

    #[test]
    fn v2_local_command_keeps_the_peer() {
        let peer = addr("127.0.0.2:999");
        let (client, _) = parse_header(&v2("192.0.2.7:1", "127.0.0.1:53", 0), peer).unwrap();
        assert_eq!(client, peer);
    }

    #[test]
    fn v1_header() {
        let mut bytes = b"PROXY TCP4 198.51.100.3 127.0.0.1 5000 53\r\n".to_vec();
        let header_len = bytes.len();
        bytes.extend_from_slice(b"\x00\x1cquery");
        let (client, start) = parse_header(&bytes, addr("127.0.0.1:1")).unwrap();
        assert_eq!(client, addr("198.51.100.3:5000"));
        assert_eq!(start, header_len);
        let peer = addr("127.0.0.1:1");
        assert_eq!(
            parse_header(b"PROXY UNKNOWN\r\n", peer).unwrap(),
            (peer, 15)
        );
    }

    #[test]
    fn missing_or_malformed_header_from_trusted_peer_is_refused() {
        let trust = trust(&["127.0.0.0/8"]);
        let peer = addr("127.0.0.1:53000");
        assert_eq!(
            trust.admit_datagram(peer, b"\x12\x34\x01\x00\x00\x01\x00\x00\x00\x00\x00\x00"),
            Err(ProxyError::Missing)
        );
        assert!(matches!(
            trust.admit_datagram(peer, b"PROXY TCP4 not-an-address\r\n"),
            Err(ProxyError::Malformed(_))
        ));
        let mut truncated = v2("192.0.2.7:4242", "127.0.0.1:53", 1);
        truncated.truncate(20);
        assert!(matches!(
            trust.admit_datagram(peer, &truncated),
            Err(ProxyError::Malformed(_))
        ));
        assert!(matches!(
            trust.admit_datagram(peer, &[]),
            Err(ProxyError::Missing)
        ));
    }

    #[test]
    fn header_from_untrusted_peer_is_refused_plain_dns_is_not() {
        let trust = trust(&["10.0.0.0/8"]);
        let peer = addr("127.0.0.1:53000");
        let header = v2("192.0.2.7:4242", "127.0.0.1:53", 1);
        assert_eq!(
            trust.admit_datagram(peer, &header),
            Err(ProxyError::Untrusted)
        );
        assert_eq!(
            trust.admit_datagram(peer, b"PROXY TCP4 1.2.3.4 5.6.7.8 1 2\r\n"),
            Err(ProxyError::Untrusted)
        );
        let query = b"\x12\x34\x01\x00\x00\x01\x00\x00\x00\x00\x00\x00";
        assert_eq!(trust.admit_datagram(peer, query), Ok((peer, &query[..])));
        assert!(has_signature(&header[..5]));
        assert!(!has_signature(&header[..4]));
        assert!(!has_signature(b"\x16\x03\x01\x02\x00\x01"));
    }

    #[test]
    fn mapped_peer_counts_as_ipv4() {
        let trust = trust(&["127.0.0.2/32"]);
        assert!(trust.trusts("::ffff:127.0.0.2".parse().unwrap()));
        assert!(!trust.trusts("127.0.0.1".parse().unwrap()));
    }

    #[tokio::test]
    async fn stream_header_is_read_exactly() {
        let peer = addr("127.0.0.2:1");
        for (header, client) in [
            (v2("192.0.2.7:4242", "127.0.0.1:53", 1), "192.0.2.7:4242"),
            (
                b"PROXY TCP6 2001:db8::5 ::1 4000 53\r\n".to_vec(),
                "[2001:db8::5]:4000",
            ),
        ] {
            let mut bytes = header.clone();
            bytes.extend_from_slice(b"\x00\x0crest");
            let mut reader = &bytes[..];
            assert_eq!(read_header(&mut reader, peer).await, Ok(addr(client)));
            assert_eq!(reader, b"\x00\x0crest");
        }
        let mut plain: &[u8] = b"\x00\x1c\x12\x34\x01\x00";
        assert_eq!(
            read_header(&mut plain, peer).await,
            Err(ProxyError::Missing)
        );
        let mut long = b"PROXY ".to_vec();
        long.extend(std::iter::repeat_n(b'x', 200));
        let mut reader = &long[..];
        assert!(matches!(
            read_header(&mut reader, peer).await,
            Err(ProxyError::Malformed(_))
        ));
        let mut short: &[u8] = b"PROXY TCP4";
        assert!(matches!(
            read_header(&mut short, peer).await,
            Err(ProxyError::Io(_))
        ));
    }
}
