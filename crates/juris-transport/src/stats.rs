//! Counters of the encrypted listeners (queries and responses are counted by the pipeline
//! itself, in the server's counters).

use std::sync::atomic::{AtomicU64, Ordering};

use crate::config::Protocol;

/// Counters for one transport.
#[derive(Debug, Default)]
pub(crate) struct ProtocolCounters {
    connections: AtomicU64,
    rejected: AtomicU64,
    handshake_failures: AtomicU64,
    idle_closed: AtomicU64,
    bad_requests: AtomicU64,
    forwarded_clients: AtomicU64,
}

/// The counters of all three transports.
#[derive(Debug, Default)]
pub(crate) struct Counters {
    dot: ProtocolCounters,
    doh: ProtocolCounters,
    doq: ProtocolCounters,
}

/// A snapshot of one transport's counters.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ProtocolStats {
    /// Connections accepted (TCP accepted, or QUIC connection attempts let in).
    pub connections: u64,
    /// Connections closed or refused at once: the connection limit was reached, or the client
    /// is outside the access list.
    pub rejected: u64,
    /// Handshakes that failed or timed out.
    pub handshake_failures: u64,
    /// Connections closed for being idle or too slow.
    pub idle_closed: u64,
    /// Requests refused as malformed: a bad DoT length, an HTTP 4xx, a DoQ protocol error.
    pub bad_requests: u64,
    /// DoH requests whose client address came from a trusted proxy's header.
    pub forwarded_clients: u64,
}

/// A snapshot of every transport's counters.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct TransportStats {
    /// DNS over TLS.
    pub dot: ProtocolStats,
    /// DNS over HTTPS.
    pub doh: ProtocolStats,
    /// DNS over QUIC.
    pub doq: ProtocolStats,
}

#[inline]
fn bump(counter: &AtomicU64) {
    counter.fetch_add(1, Ordering::Relaxed);
}

impl ProtocolCounters {
    pub(crate) fn connection(&self) {
        bump(&self.connections);
    }
    pub(crate) fn rejected(&self) {
        bump(&self.rejected);
    }
    pub(crate) fn handshake_failure(&self) {
        bump(&self.handshake_failures);
    }
    pub(crate) fn idle_closed(&self) {
        bump(&self.idle_closed);
    }
    pub(crate) fn bad_request(&self) {
        bump(&self.bad_requests);
    }
    pub(crate) fn forwarded_client(&self) {
        bump(&self.forwarded_clients);
    }

    fn snapshot(&self) -> ProtocolStats {
        let read = |c: &AtomicU64| c.load(Ordering::Relaxed);
        ProtocolStats {
            connections: read(&self.connections),
            rejected: read(&self.rejected),
            handshake_failures: read(&self.handshake_failures),
            idle_closed: read(&self.idle_closed),
            bad_requests: read(&self.bad_requests),
            forwarded_clients: read(&self.forwarded_clients),
        }
    }
}

impl Counters {
    pub(crate) fn of(&self, protocol: Protocol) -> &ProtocolCounters {
        match protocol {
            Protocol::Tls => &self.dot,
            Protocol::Https => &self.doh,
            Protocol::Quic => &self.doq,
        }
    }

    pub(crate) fn snapshot(&self) -> TransportStats {
        TransportStats {
            dot: self.dot.snapshot(),
            doh: self.doh.snapshot(),
            doq: self.doq.snapshot(),
        }
    }
}
