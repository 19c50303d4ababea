//! In-memory counters. Each UDP worker owns one [`Counters`] and is its only writer (plain
//! loads and stores, no locked instructions); the async
//! side (cache misses, TCP) shares one more. Reading sums them into a [`ServerStats`].

use std::sync::atomic::{AtomicU64, Ordering};

use crate::pipeline::Transport;

/// One writer's counters. Relaxed atomics: each set is written by one thread (or, for the
/// async set, by the runtime's few threads), so no cache line bounces between UDP workers.
#[derive(Debug, Default)]
pub struct Counters {
    udp_queries: AtomicU64,
    tcp_queries: AtomicU64,
    dot_queries: AtomicU64,
    doh_queries: AtomicU64,
    doq_queries: AtomicU64,
    responses_by_rcode: [AtomicU64; 16],
    cache_hits: AtomicU64,
    hot_hits: AtomicU64,
    cache_misses: AtomicU64,
    stale_served: AtomicU64,
    truncated: AtomicU64,
    refused_by_acl: AtomicU64,
    proxy_refused: AtomicU64,
    dropped: AtomicU64,
    bad_cookies: AtomicU64,
    tcp_connections: AtomicU64,
    tcp_connections_rejected: AtomicU64,
    /// Only one thread ever writes this set (a UDP worker's): counts without locked
    /// instructions.
    single_writer: bool,
}

/// A snapshot of all counters, summed over every worker.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ServerStats {
    /// Datagrams processed over UDP (including ones later dropped).
    pub udp_queries: u64,
    /// Messages processed over TCP.
    pub tcp_queries: u64,
    /// Messages processed over DNS over TLS.
    pub dot_queries: u64,
    /// Messages processed over DNS over HTTPS.
    pub doh_queries: u64,
    /// Messages processed over DNS over QUIC.
    pub doq_queries: u64,
    /// Responses sent, by the RCODE in the header (index = RCODE; BADVERS counts as 0).
    pub responses_by_rcode: [u64; 16],
    /// Queries answered from the cache (fresh entries).
    pub cache_hits: u64,
    /// Of those, answered from a UDP worker's own hot answers without any policy lookup (no
    /// order can apply to the name or the answer; `crate::hot`).
    pub cache_hits_hot: u64,
    /// Queries handed to the resolver (cache misses and stale entries).
    pub cache_misses: u64,
    /// Stale entries sent (RFC 8767).
    pub stale_served: u64,
    /// Responses sent with TC=1.
    pub truncated: u64,
    /// Queries from clients outside the allow list (UDP) or connections closed (TCP).
    pub refused_by_acl: u64,
    /// Datagrams dropped and connections closed by the PROXY protocol check: no header from
    /// a trusted load balancer, a malformed one, or one from anyone else ([`crate::proxy`]).
    pub proxy_refused: u64,
    /// Messages dropped without an answer (malformed beyond answering, QR=1).
    pub dropped: u64,
    /// BADCOOKIE responses sent: UDP queries whose server cookie did not verify (RFC 7873
    /// §5.2.3; [`crate::cookie`]).
    pub bad_cookies: u64,
    /// TCP connections accepted.
    pub tcp_connections: u64,
    /// TCP connections closed at once because the connection limit was reached.
    pub tcp_connections_rejected: u64,
}

impl ServerStats {
    /// All responses sent.
    pub fn responses(&self) -> u64 {
        self.responses_by_rcode.iter().sum()
    }
}

impl Counters {
    /// A set that only the calling thread will ever write (a UDP worker's own): each count is
    /// a plain load and store instead of a locked add (four per cache hit). Readers on other
    /// threads still see whole values, at most a little late.
    pub(crate) fn single_writer() -> Self {
        Self {
            single_writer: true,
            ..Self::default()
        }
    }

    #[inline]
    fn bump(&self, counter: &AtomicU64) {
        if self.single_writer {
            counter.store(
                counter.load(Ordering::Relaxed).wrapping_add(1),
                Ordering::Relaxed,
            );
        } else {
            counter.fetch_add(1, Ordering::Relaxed);
        }
    }

    pub(crate) fn query(&self, transport: Transport) {
        match transport {
            Transport::Udp => self.bump(&self.udp_queries),
            Transport::Tcp => self.bump(&self.tcp_queries),
            Transport::Dot => self.bump(&self.dot_queries),
            Transport::Doh => self.bump(&self.doh_queries),
            Transport::Doq => self.bump(&self.doq_queries),
        }
    }

    /// Counts a response by the RCODE in its header (and TC).
    pub(crate) fn response(&self, message: &[u8]) {
        if let Some(&[flags_high, flags_low]) = message.get(2..4) {
            self.bump(&self.responses_by_rcode[(flags_low & 0x0F) as usize]);
            if flags_high & 0x02 != 0 {
                self.bump(&self.truncated);
            }
        }
    }

    pub(crate) fn cache_hit(&self) {
        self.bump(&self.cache_hits);
    }

    pub(crate) fn hot_hit(&self) {
        self.bump(&self.cache_hits);
        self.bump(&self.hot_hits);
    }

    pub(crate) fn cache_miss(&self) {
        self.bump(&self.cache_misses);
    }

    pub(crate) fn stale_served(&self) {
        self.bump(&self.stale_served);
    }

    pub(crate) fn refused_by_acl(&self) {
        self.bump(&self.refused_by_acl);
    }

    /// A datagram or connection refused by the PROXY protocol check.
    pub fn proxy_refused(&self) {
        self.bump(&self.proxy_refused);
    }

    pub(crate) fn bad_cookie(&self) {
        self.bump(&self.bad_cookies);
    }

    pub(crate) fn dropped(&self) {
        self.bump(&self.dropped);
    }

    pub(crate) fn tcp_connection(&self) {
        self.bump(&self.tcp_connections);
    }

    pub(crate) fn tcp_connection_rejected(&self) {
        self.bump(&self.tcp_connections_rejected);
    }

    /// This set alone, as stats.
    pub fn snapshot(&self) -> ServerStats {
        let mut stats = ServerStats::default();
        self.add_to(&mut stats);
        stats
    }

    /// Adds this set into `stats`.
    pub(crate) fn add_to(&self, stats: &mut ServerStats) {
        let read = |c: &AtomicU64| c.load(Ordering::Relaxed);
        stats.udp_queries += read(&self.udp_queries);
        stats.tcp_queries += read(&self.tcp_queries);
        stats.dot_queries += read(&self.dot_queries);
        stats.doh_queries += read(&self.doh_queries);
        stats.doq_queries += read(&self.doq_queries);
        for (sum, c) in stats
            .responses_by_rcode
            .iter_mut()
            .zip(&self.responses_by_rcode)
        {
            *sum += read(c);
        }
        stats.cache_hits += read(&self.cache_hits);
        stats.cache_hits_hot += read(&self.hot_hits);
        stats.cache_misses += read(&self.cache_misses);
        stats.stale_served += read(&self.stale_served);
        stats.truncated += read(&self.truncated);
        stats.refused_by_acl += read(&self.refused_by_acl);
        stats.proxy_refused += read(&self.proxy_refused);
        stats.dropped += read(&self.dropped);
        stats.bad_cookies += read(&self.bad_cookies);
        stats.tcp_connections += read(&self.tcp_connections);
        stats.tcp_connections_rejected += read(&self.tcp_connections_rejected);
    }
}
