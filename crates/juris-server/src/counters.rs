//! In-memory counters. Each UDP worker owns one [`Counters`] and is its only writer (plain
//! loads and stores, no locked instructions); the async
//! side (cache misses, TCP) shares one more. Reading sums them into a [`ServerStats`].
//!
//! Responses are counted per transport × RCODE, and the time to answer goes into two
//! histograms with fixed power-of-two buckets ([`LATENCY_BUCKETS`]): answers given at once
//! (cache and hot hits, blocks, errors: "hit") and answers that waited for the resolver
//! ("miss"). A UDP worker times a whole batch once (receive to send) and records it for
//! every answer of the batch in one update, so a hot answer costs no clock read of its own.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use crate::pipeline::Transport;
use crate::ratelimit::RateClass;

/// One writer's counters. Relaxed atomics: each set is written by one thread (or, for the
/// async set, by the runtime's few threads), so no cache line bounces between UDP workers.
#[derive(Debug, Default)]
pub struct Counters {
    udp_queries: AtomicU64,
    tcp_queries: AtomicU64,
    dot_queries: AtomicU64,
    doh_queries: AtomicU64,
    doq_queries: AtomicU64,
    responses: [[AtomicU64; 16]; TRANSPORTS],
    hit_latency: Histogram,
    miss_latency: Histogram,
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
    /// Queries and responses over their rate ([`crate::ratelimit`]): dropped, then slipped,
    /// per [`RateClass`].
    rate_limited: [[AtomicU64; 7]; 2],
    /// Only one thread ever writes this set (a UDP worker's): counts without locked
    /// instructions.
    single_writer: bool,
}

/// How many transports [`Transport`] names (the first index of the response counters).
pub const TRANSPORTS: usize = 5;

/// Every transport in the order of [`Transport::index`], with its label.
pub const TRANSPORT_LABELS: [(Transport, &str); TRANSPORTS] = [
    (Transport::Udp, "udp"),
    (Transport::Tcp, "tcp"),
    (Transport::Dot, "dot"),
    (Transport::Doh, "doh"),
    (Transport::Doq, "doq"),
];

/// Histogram buckets: bucket `i` holds durations of at most `2^i` microseconds (1 µs … about
/// 4.2 s); the last one (`LATENCY_BUCKETS`) holds everything longer.
pub const LATENCY_BUCKETS: usize = 23;

/// The upper bound of bucket `i` in seconds (`None` for the last, unbounded one).
pub fn latency_bucket_bound(i: usize) -> Option<f64> {
    (i < LATENCY_BUCKETS).then(|| (1u64 << i) as f64 / 1e6)
}

/// The bucket of a duration: the smallest `i` with `micros <= 2^i`.
#[inline]
fn latency_bucket(elapsed: Duration) -> usize {
    let micros = u64::try_from(elapsed.as_micros()).unwrap_or(u64::MAX);
    let bucket = if micros <= 1 {
        0
    } else {
        (u64::BITS - (micros - 1).leading_zeros()) as usize
    };
    bucket.min(LATENCY_BUCKETS)
}

/// One latency histogram: counts per bucket (not cumulative) and the sum in nanoseconds.
#[derive(Debug, Default)]
struct Histogram {
    buckets: [AtomicU64; LATENCY_BUCKETS + 1],
    sum_nanos: AtomicU64,
}

/// A histogram as read: counts per bucket (not cumulative; the last one is unbounded), the
/// number of observations and their sum.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct LatencyStats {
    /// Observations per bucket ([`latency_bucket_bound`]), not cumulative.
    pub buckets: [u64; LATENCY_BUCKETS + 1],
    /// Sum of every observation, nanoseconds.
    pub sum_nanos: u64,
}

impl LatencyStats {
    /// Number of observations.
    pub fn count(&self) -> u64 {
        self.buckets.iter().sum()
    }

    fn add(&mut self, histogram: &Histogram) {
        for (sum, bucket) in self.buckets.iter_mut().zip(&histogram.buckets) {
            *sum += bucket.load(Ordering::Relaxed);
        }
        self.sum_nanos += histogram.sum_nanos.load(Ordering::Relaxed);
    }
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
    /// Responses sent, by transport ([`TRANSPORT_LABELS`] order) and RCODE in the header.
    pub responses_by_transport: [[u64; 16]; TRANSPORTS],
    /// Time to answer queries answered at once (cache and hot hits, blocks, errors).
    pub hit_latency: LatencyStats,
    /// Time to answer queries that waited for the resolver (misses, stale refreshes).
    pub miss_latency: LatencyStats,
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
    /// Queries and responses over their client prefix's rate ([`crate::ratelimit`]):
    /// `[0]` dropped, `[1]` sent truncated (slipped), each indexed by [`RateClass::ALL`].
    pub rate_limited: [[u64; 7]; 2],
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

    #[inline]
    fn bump_by(&self, counter: &AtomicU64, n: u64) {
        if self.single_writer {
            counter.store(
                counter.load(Ordering::Relaxed).wrapping_add(n),
                Ordering::Relaxed,
            );
        } else {
            counter.fetch_add(n, Ordering::Relaxed);
        }
    }

    /// Records `answers` answers given at once that each took `elapsed`.
    #[inline]
    pub fn hit_latency(&self, elapsed: Duration, answers: u64) {
        self.observe(&self.hit_latency, elapsed, answers);
    }

    /// Records one answer that waited for the resolver and took `elapsed`.
    #[inline]
    pub fn miss_latency(&self, elapsed: Duration) {
        self.observe(&self.miss_latency, elapsed, 1);
    }

    #[inline]
    fn observe(&self, histogram: &Histogram, elapsed: Duration, answers: u64) {
        if answers == 0 {
            return;
        }
        self.bump_by(&histogram.buckets[latency_bucket(elapsed)], answers);
        let nanos = u64::try_from(elapsed.as_nanos()).unwrap_or(u64::MAX);
        self.bump_by(&histogram.sum_nanos, nanos.saturating_mul(answers));
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

    /// Counts a response by its transport and the RCODE in its header (and TC).
    pub(crate) fn response(&self, transport: Transport, message: &[u8]) {
        if let Some(&[flags_high, flags_low]) = message.get(2..4) {
            self.bump(&self.responses[transport.index()][(flags_low & 0x0F) as usize]);
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

    /// A query or response of `class` over its rate: dropped, or `slipped` (sent truncated).
    pub(crate) fn rate_limited(&self, class: RateClass, slipped: bool) {
        self.bump(&self.rate_limited[usize::from(slipped)][class.index()]);
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
        for (per_transport, counters) in
            stats.responses_by_transport.iter_mut().zip(&self.responses)
        {
            for ((sum, all), c) in per_transport
                .iter_mut()
                .zip(stats.responses_by_rcode.iter_mut())
                .zip(counters)
            {
                let count = read(c);
                *sum += count;
                *all += count;
            }
        }
        stats.hit_latency.add(&self.hit_latency);
        stats.miss_latency.add(&self.miss_latency);
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
        for (sums, row) in stats.rate_limited.iter_mut().zip(&self.rate_limited) {
            for (sum, c) in sums.iter_mut().zip(row) {
                *sum += read(c);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn latency_buckets_are_powers_of_two_microseconds() {
        let bucket = |micros: u64| latency_bucket(Duration::from_micros(micros));
        assert_eq!(bucket(0), 0);
        assert_eq!(bucket(1), 0);
        assert_eq!(bucket(2), 1);
        assert_eq!(bucket(3), 2);
        assert_eq!(bucket(4), 2);
        assert_eq!(bucket(5), 3);
        assert_eq!(bucket(1 << 22), 22);
        assert_eq!(bucket((1 << 22) + 1), LATENCY_BUCKETS);
        assert_eq!(latency_bucket(Duration::MAX), LATENCY_BUCKETS);
        assert_eq!(latency_bucket_bound(0), Some(0.000_001));
        assert_eq!(latency_bucket_bound(10), Some(0.001_024));
        assert_eq!(latency_bucket_bound(LATENCY_BUCKETS), None);
    }

    #[test]
    fn responses_are_counted_per_transport_and_rcode() {
        for counters in [Counters::default(), Counters::single_writer()] {
            let nxdomain = [0, 0, 0x81, 0x83];
            counters.response(Transport::Udp, &nxdomain);
            counters.response(Transport::Doh, &nxdomain);
            counters.response(Transport::Doh, &[0, 0, 0x81, 0x80]);
            counters.hit_latency(Duration::from_micros(3), 5);
            counters.miss_latency(Duration::from_millis(20));
            let stats = counters.snapshot();
            assert_eq!(stats.responses_by_rcode[3], 2);
            assert_eq!(stats.responses_by_rcode[0], 1);
            assert_eq!(stats.responses_by_transport[0][3], 1);
            assert_eq!(stats.responses_by_transport[3][3], 1);
            assert_eq!(stats.responses_by_transport[3][0], 1);
            assert_eq!(stats.responses(), 3);
            assert_eq!(stats.hit_latency.buckets[2], 5);
            assert_eq!(stats.hit_latency.count(), 5);
            assert_eq!(stats.hit_latency.sum_nanos, 15_000);
            assert_eq!(stats.miss_latency.buckets[15], 1);
        }
    }
}
