//! What the encrypted listeners need: addresses, certificate files, limits, trusted proxies.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use ipnet::IpNet;

/// One of the three encrypted transports.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Protocol {
    /// DNS over TLS (RFC 7858), ALPN `dot`, TCP.
    Tls,
    /// DNS over HTTPS (RFC 8484) at `/dns-query`, ALPN `h2` (and `http/1.1`), TCP.
    Https,
    /// DNS over QUIC (RFC 9250), ALPN `doq`, UDP.
    Quic,
}

impl Protocol {
    /// A short name for logs and errors: `DoT`, `DoH`, `DoQ`.
    pub fn name(self) -> &'static str {
        match self {
            Protocol::Tls => "DoT",
            Protocol::Https => "DoH",
            Protocol::Quic => "DoQ",
        }
    }
}

impl std::fmt::Display for Protocol {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

/// Listener index meaning "no listener pin": the pipeline's pins are looked up by index in
/// `ServerConfig::listeners`, and this index is past any such list.
pub const NO_PIN: usize = usize::MAX;

/// One encrypted listen address.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct EncryptedListener {
    /// Address and port (port 0 picks a free one; read it from
    /// [`crate::EncryptedServer::listeners`]).
    pub addr: SocketAddr,
    /// Which transport is served here.
    pub protocol: Protocol,
    /// The index reported to the pipeline as `ClientContext::listener`: a listener country pin
    /// of `ServerConfig::listeners[listener]` applies to this listener's clients. Default
    /// [`NO_PIN`].
    pub listener: usize,
}

impl EncryptedListener {
    /// A listener for `protocol` on `addr`, without a country pin.
    pub fn new(protocol: Protocol, addr: SocketAddr) -> Self {
        Self {
            addr,
            protocol,
            listener: NO_PIN,
        }
    }
}

/// PEM files of the server certificate chain and its private key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TlsFiles {
    /// The certificate chain, leaf first (PEM, `CERTIFICATE` blocks).
    pub cert: PathBuf,
    /// The private key (PEM: PKCS#8, PKCS#1 RSA or SEC1 EC).
    pub key: PathBuf,
}

/// Limits that keep slow or greedy clients from tying up the server. Each transport counts
/// its connections separately.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// Open connections per transport; more are closed at once (DoQ: refused). Default: 1000.
    pub max_connections: usize,
    /// Queries one connection may have in flight: DoT pipelined queries (reading pauses
    /// beyond it), HTTP/2 concurrent streams, QUIC bidirectional streams. Default: 100.
    pub max_streams: u32,
    /// A connection with no query in flight is closed after this long without a query
    /// (DoH: without a request; DoQ: the QUIC idle timeout). Default: 10 s.
    pub idle_timeout: Duration,
    /// The TLS (or QUIC) handshake must finish within this long after the connection is
    /// accepted. Default: 5 s.
    pub handshake_timeout: Duration,
    /// A single request (a DoT frame, a DoH body or decoded `dns` parameter, a DoQ message)
    /// must arrive within this long once it has begun. Default: 5 s.
    pub request_timeout: Duration,
    /// Largest DNS query accepted, in bytes. Default: 4096.
    pub max_request_size: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            max_connections: 1000,
            max_streams: 100,
            idle_timeout: Duration::from_secs(10),
            handshake_timeout: Duration::from_secs(5),
            request_timeout: Duration::from_secs(5),
            max_request_size: 4096,
        }
    }
}

/// Everything [`crate::start`] needs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TransportConfig {
    /// Encrypted listen addresses.
    pub listeners: Vec<EncryptedListener>,
    /// Certificate and key, shared by every listener; reloaded by
    /// [`crate::EncryptedServer::reload_certificates`].
    pub tls: TlsFiles,
    /// Limits for all three transports.
    pub limits: Limits,
    /// Reverse proxies whose `Forwarded` / `X-Forwarded-For` headers are believed (DoH only).
    /// A request from any other address is classified by its TCP peer address. Default: none.
    pub trusted_proxies: Vec<IpNet>,
}

impl TransportConfig {
    /// Checks ranges; [`crate::start`] calls it.
    pub fn validate(&self) -> Result<(), &'static str> {
        let limits = &self.limits;
        if limits.max_connections == 0 {
            return Err("max_connections must be at least 1");
        }
        if limits.max_streams == 0 {
            return Err("max_streams must be at least 1");
        }
        if limits.max_request_size < 12 || limits.max_request_size > usize::from(u16::MAX) {
            return Err("max_request_size must be between 12 (a DNS header) and 65535");
        }
        for timeout in [
            limits.idle_timeout,
            limits.handshake_timeout,
            limits.request_timeout,
        ] {
            if timeout.is_zero() || timeout > Duration::from_secs(3600) {
                return Err("timeouts must be between 1 ms and 1 hour");
            }
        }
        Ok(())
    }
}
