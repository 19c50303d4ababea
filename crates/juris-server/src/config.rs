//! Validated server settings. The raw TOML layer lives in the binary; it builds a
//! [`ServerConfig`] and hands it to [`crate::start`].

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::time::Duration;

use ipnet::IpNet;
use juris_geo::CountryCode;

use crate::ratelimit::RateLimitConfig;

/// Everything the listeners and the pipeline need to know.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServerConfig {
    /// Addresses to listen on. Default: `127.0.0.1:53` and `[::1]:53`, UDP and TCP.
    pub listeners: Vec<ListenerConfig>,
    /// UDP worker OS threads. Each one owns an `SO_REUSEPORT` socket on every UDP listen
    /// address. Default: the number of CPUs (at least 1).
    pub threads: usize,
    /// Threads of the tokio runtime that serves TCP (and the encrypted transports) and resolves
    /// their misses. UDP misses are resolved on the UDP worker that received them, on its own
    /// single-threaded runtime. Default: 2.
    pub async_threads: usize,
    /// Client prefixes allowed to query. Default: loopback and private ranges
    /// ([`default_allow_list`]). An open resolver needs `0.0.0.0/0` and `::/0` here, explicitly.
    pub allow: Vec<IpNet>,
    /// What a UDP client outside [`ServerConfig::allow`] gets. TCP connections from such
    /// clients are always closed at once. Default: [`DeniedAction::Refuse`].
    pub denied: DeniedAction,
    /// Load balancers whose PROXY protocol headers (v1, v2) are believed, on UDP, TCP, DoT and
    /// DoH: a peer in these prefixes must open every datagram and connection with one, and
    /// the client named in it is the one classified, checked against [`ServerConfig::allow`]
    /// and counted; a header from any other peer is refused ([`crate::proxy`]). Empty: off.
    /// Default: empty.
    pub proxy_protocol_from: Vec<IpNet>,
    /// A TCP connection with no query in flight is closed after this long without data
    /// (RFC 7766 §6.2.3). Default: 10 s.
    pub tcp_idle_timeout: Duration,
    /// Open TCP connections at most; new ones beyond it are closed at once. Default: 1000.
    pub tcp_max_connections: usize,
    /// Queries one TCP connection may have in flight (pipelining); reading pauses beyond it.
    /// Default: 64.
    pub tcp_max_in_flight: usize,
    /// Longest query accepted over TCP; a longer length prefix closes the connection.
    /// Default: 4096 bytes.
    pub tcp_max_query_size: u16,
    /// The EDNS(0) UDP payload size we advertise and the cap on the client's (a client's
    /// value below 512 counts as 512). Default: 1232 (DNS flag day 2020).
    pub max_udp_payload: u16,
    /// EDNS option code whose presence in a query signals support for structured DNS errors
    /// (draft-ietf-dnsop-structured-dns-error; no code is assigned yet). An empty EDE option
    /// (code 15) in the query signals it too. `None` recognises only the empty EDE option.
    /// Default: `Some(65001)` (from the local/experimental range).
    pub structured_error_option_code: Option<u16>,
    /// TTL of the synthesised RFC 8482 answer to `ANY` queries. Default: 3600 s.
    pub any_answer_ttl: u32,
    /// Serve-stale client response timer (RFC 8767 §5): when a stale entry exists and fresh
    /// resolution takes longer than this, the stale entry is sent (resolution goes on and
    /// refreshes the cache). Default: 1.8 s.
    pub stale_client_timeout: Duration,
    /// Datagrams received and sent per `recvmmsg`/`sendmmsg` call. Default: 32.
    pub udp_batch_size: usize,
    /// `SO_RCVBUF` asked for on every UDP listener socket, in bytes; 0 keeps the kernel's
    /// default (`net.core.rmem_default`, 208 KiB on Linux: under 10 ms of a 30k qps flood, after
    /// which the kernel drops every client's datagrams alike). The kernel caps it at
    /// `net.core.rmem_max`. Default: 4 MiB (as Unbound's `so-rcvbuf: 4m` advice).
    pub udp_receive_buffer: usize,
    /// Hot-answer slots per UDP worker ([`crate::hot`]): a power of two, 2 to
    /// [`crate::hot::MAX_HOT_SLOTS`]. Each keeps one answer of at most
    /// `max_udp_payload` bytes alive, even after the shared cache evicted it, so this bounds
    /// memory outside `cache.size` (design 0048). Default: 8192.
    pub hot_answer_slots: usize,
    /// Per-client query rate limit and response-rate limiting over UDP
    /// ([`crate::ratelimit`]). Default: off (every rate 0).
    pub rate_limit: RateLimitConfig,
    /// DNS cookies as a server (RFC 7873, RFC 9018): secret, rotation, on/off
    /// ([`crate::cookie`]). Default: on, a random secret per process, rotated daily.
    pub cookies: crate::cookie::CookieConfig,
    /// How blocked and withdrawn answers look (the orders themselves come through
    /// [`crate::PolicyEngine`]).
    pub policy: PolicySettings,
}

/// Settings for answers synthesised by the policy engine (`[policy]` in the binary's file).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PolicySettings {
    /// TTL of the SOA in blocked NXDOMAIN/NODATA answers, and its MINIMUM field (the negative
    /// caching TTL, RFC 2308): how long a downstream cache may keep the block after the order
    /// is lifted. Blocked answers are never cached by juris itself. Default: 30 s.
    pub block_ttl: u32,
    /// Jurisdictions where service is withdrawn: every query from a client placed there gets
    /// REFUSED with EDE 18 (Prohibited). Default: none.
    pub withdrawn: Vec<CountryCode>,
    /// MNAME of the synthesised SOA (presentation format). Default: `blocked.juris.invalid.`
    /// (RFC 6761 `.invalid`: it names no real server).
    pub soa_mname: String,
    /// RNAME of the synthesised SOA (presentation format, the mailbox with its `@` as a dot).
    /// Default: `hostmaster.juris.invalid.`.
    pub soa_rname: String,
}

impl Default for PolicySettings {
    fn default() -> Self {
        Self {
            block_ttl: 30,
            withdrawn: Vec::new(),
            soa_mname: "blocked.juris.invalid.".to_owned(),
            soa_rname: "hostmaster.juris.invalid.".to_owned(),
        }
    }
}

/// One listen address.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ListenerConfig {
    /// Address and port. Port 0 picks a free port (the same one for UDP and TCP); read the
    /// result from [`crate::RunningServer::listeners`].
    pub addr: SocketAddr,
    /// Serve DNS over UDP here.
    pub udp: bool,
    /// Serve DNS over TCP here (RFC 7766).
    pub tcp: bool,
    /// Every client of this listener is in this jurisdiction (decides before ECS and GeoIP).
    /// Default: none.
    pub country: Option<CountryCode>,
}

/// What a UDP client outside the allow list gets.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum DeniedAction {
    /// A header-only REFUSED response (as Unbound's `access-control: refuse`).
    #[default]
    Refuse,
    /// Nothing (as Unbound's `deny`).
    Drop,
}

impl ListenerConfig {
    /// UDP and TCP on `addr`.
    pub fn udp_and_tcp(addr: SocketAddr) -> Self {
        Self {
            addr,
            udp: true,
            tcp: true,
            country: None,
        }
    }
}

/// Loopback and private ranges: 127.0.0.0/8, ::1/128, 10.0.0.0/8, 172.16.0.0/12,
/// 192.168.0.0/16, fc00::/7, fe80::/10.
pub fn default_allow_list() -> Vec<IpNet> {
    fn net(addr: IpAddr, prefix: u8) -> Option<IpNet> {
        IpNet::new(addr, prefix).ok()
    }
    [
        net(IpAddr::V4(Ipv4Addr::new(127, 0, 0, 0)), 8),
        net(IpAddr::V6(Ipv6Addr::LOCALHOST), 128),
        net(IpAddr::V4(Ipv4Addr::new(10, 0, 0, 0)), 8),
        net(IpAddr::V4(Ipv4Addr::new(172, 16, 0, 0)), 12),
        net(IpAddr::V4(Ipv4Addr::new(192, 168, 0, 0)), 16),
        net(IpAddr::V6(Ipv6Addr::new(0xfc00, 0, 0, 0, 0, 0, 0, 0)), 7),
        net(IpAddr::V6(Ipv6Addr::new(0xfe80, 0, 0, 0, 0, 0, 0, 0)), 10),
    ]
    .into_iter()
    .flatten()
    .collect()
}

impl Default for ServerConfig {
    fn default() -> Self {
        Self {
            listeners: vec![
                ListenerConfig::udp_and_tcp(SocketAddr::new(IpAddr::V4(Ipv4Addr::LOCALHOST), 53)),
                ListenerConfig::udp_and_tcp(SocketAddr::new(IpAddr::V6(Ipv6Addr::LOCALHOST), 53)),
            ],
            threads: std::thread::available_parallelism().map_or(1, |n| n.get()),
            async_threads: 2,
            allow: default_allow_list(),
            denied: DeniedAction::Refuse,
            proxy_protocol_from: Vec::new(),
            tcp_idle_timeout: Duration::from_secs(10),
            tcp_max_connections: 1000,
            tcp_max_in_flight: 64,
            tcp_max_query_size: 4096,
            max_udp_payload: 1232,
            structured_error_option_code: Some(65001),
            any_answer_ttl: 3600,
            stale_client_timeout: Duration::from_millis(1800),
            udp_batch_size: 32,
            udp_receive_buffer: 4 << 20,
            hot_answer_slots: crate::hot::HOT_SLOTS,
            rate_limit: RateLimitConfig::default(),
            cookies: crate::cookie::CookieConfig::default(),
            policy: PolicySettings::default(),
        }
    }
}

impl ServerConfig {
    /// Checks ranges; [`crate::start`] calls it.
    pub fn validate(&self) -> Result<(), &'static str> {
        if self.listeners.is_empty() {
            return Err("at least one listener is needed");
        }
        if self.listeners.iter().any(|l| !l.udp && !l.tcp) {
            return Err("a listener must serve UDP, TCP or both");
        }
        if self.threads == 0 || self.threads > 1024 {
            return Err("threads must be between 1 and 1024");
        }
        if self.async_threads == 0 || self.async_threads > 1024 {
            return Err("async_threads must be between 1 and 1024");
        }
        if self.max_udp_payload < 512 {
            return Err("max_udp_payload must be at least 512");
        }
        if self.tcp_max_connections == 0 {
            return Err("tcp_max_connections must be at least 1");
        }
        if self.tcp_max_in_flight == 0 {
            return Err("tcp_max_in_flight must be at least 1");
        }
        if self.tcp_max_query_size < 12 {
            return Err("tcp_max_query_size must be at least 12 (a DNS header)");
        }
        if self.udp_receive_buffer > 1 << 30 {
            return Err("udp_receive_buffer must be at most 1 GiB");
        }
        if !self.hot_answer_slots.is_power_of_two()
            || !(2..=crate::hot::MAX_HOT_SLOTS).contains(&self.hot_answer_slots)
        {
            return Err("hot_answer_slots must be a power of two from 2 to 1048576");
        }
        if self.udp_batch_size == 0 || self.udp_batch_size > 1024 {
            return Err("udp_batch_size must be between 1 and 1024");
        }
        if self.structured_error_option_code == Some(0) {
            return Err("structured_error_option_code 0 is reserved");
        }
        self.rate_limit.validate()?;
        self.cookies.validate()?;
        if self.policy.block_ttl > 86_400 {
            return Err("policy.block_ttl must be at most 86400 s");
        }
        if crate::block::name_to_wire(&self.policy.soa_mname).is_none() {
            return Err("policy.soa_mname is not a domain name");
        }
        if crate::block::name_to_wire(&self.policy.soa_rname).is_none() {
            return Err("policy.soa_rname is not a domain name");
        }
        Ok(())
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used, reason = "test code")]
mod tests {
    use super::*;

    #[test]
    fn default_is_valid_and_not_open() {
        let config = ServerConfig::default();
        assert_eq!(config.validate(), Ok(()));
        assert_eq!(config.allow.len(), 7);
        assert!(!config.allow.iter().any(|n| n.prefix_len() == 0));
        assert!(config.listeners.iter().all(|l| l.addr.ip().is_loopback()));
    }

    #[test]
    fn rejects_small_payload() {
        let config = ServerConfig {
            max_udp_payload: 511,
            ..ServerConfig::default()
        };
        assert!(config.validate().is_err());
    }
}
