//! The infrastructure cache: what we know about each upstream server (smoothed RTT, recent
//! timeouts and failures) and which servers are lame for which zone.
//!
//! Times here are monotonic ([`tokio::time::Instant`]): they measure round trips and back-off,
//! not record lifetimes.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::Mutex;
use std::time::Duration;

use bytes::Bytes;
use domain::base::Name;
use rand::seq::SliceRandom;

use crate::names::lower;
use tokio::time::Instant;

/// RTT assumed for a server we never asked (Unbound uses 376 ms).
pub(crate) const INITIAL_RTT: Duration = Duration::from_millis(376);
/// Upper bound for the smoothed RTT (a server that always times out).
const MAX_RTT: Duration = Duration::from_secs(12);
/// Consecutive timeouts or failures after which a server is skipped for a while.
const FAILURES_BEFORE_BACKOFF: u32 = 2;
/// How long a failing server is skipped (doubling per further failure, capped).
const BACKOFF_BASE: Duration = Duration::from_secs(5);
const BACKOFF_MAX: Duration = Duration::from_secs(300);
/// How long a server stays lame for a zone.
const LAME_FOR: Duration = Duration::from_secs(600);
/// Servers within this much of the best SRTT are picked from at random (load spreading and
/// discovery, as Unbound does with its 400 ms band).
const SELECTION_BAND: Duration = Duration::from_millis(400);
/// Bound on tracked servers; past it the map is pruned of healthy entries.
const MAX_SERVERS: usize = 100_000;

#[derive(Debug, Clone, Copy)]
struct ServerState {
    srtt: Duration,
    consecutive_failures: u32,
    skip_until: Option<Instant>,
}

impl Default for ServerState {
    fn default() -> Self {
        Self {
            srtt: INITIAL_RTT,
            consecutive_failures: 0,
            skip_until: None,
        }
    }
}

/// Per-server health shared by all resolutions.
#[derive(Debug, Default)]
pub(crate) struct InfraCache {
    servers: Mutex<HashMap<SocketAddr, ServerState>>,
    /// Keyed by the zone's lower-cased wire form (one hash pass over the bytes).
    lame: Mutex<HashMap<(Bytes, SocketAddr), Instant>>,
}

impl InfraCache {
    /// The smoothed RTT of `server` (the initial guess when unknown).
    pub(crate) fn srtt(&self, server: SocketAddr) -> Duration {
        self.with(|servers| servers.get(&server).map_or(INITIAL_RTT, |s| s.srtt))
    }

    /// Records a successful exchange.
    pub(crate) fn record_rtt(&self, server: SocketAddr, rtt: Duration) {
        self.update(server, |state| {
            // RFC 6298-style smoothing, weight 1/8 for the new sample.
            state.srtt = (state.srtt * 7 + rtt) / 8;
            state.consecutive_failures = 0;
            state.skip_until = None;
        });
    }

    /// Records a timeout: the SRTT is doubled and repeated timeouts back the server off.
    pub(crate) fn record_timeout(&self, server: SocketAddr) {
        self.update(server, |state| {
            state.srtt = (state.srtt * 2).min(MAX_RTT);
            Self::fail(state);
        });
    }

    /// Records a failed exchange that was not a timeout (SERVFAIL, REFUSED, malformed).
    pub(crate) fn record_failure(&self, server: SocketAddr) {
        self.update(server, |state| {
            state.srtt = (state.srtt + INITIAL_RTT).min(MAX_RTT);
            Self::fail(state);
        });
    }

    fn fail(state: &mut ServerState) {
        state.consecutive_failures = state.consecutive_failures.saturating_add(1);
        if state.consecutive_failures >= FAILURES_BEFORE_BACKOFF {
            let exponent = (state.consecutive_failures - FAILURES_BEFORE_BACKOFF).min(6);
            let backoff = (BACKOFF_BASE * 2u32.pow(exponent)).min(BACKOFF_MAX);
            state.skip_until = Some(Instant::now() + backoff);
        }
    }

    /// Marks `server` as lame for `zone` (it answered without authority or with a bad referral).
    pub(crate) fn mark_lame(&self, zone: &Name<Bytes>, server: SocketAddr) {
        if let Ok(mut lame) = self.lame.lock() {
            if lame.len() >= MAX_SERVERS {
                let now = Instant::now();
                lame.retain(|_, until| *until > now);
                if lame.len() >= MAX_SERVERS {
                    lame.clear();
                }
            }
            lame.insert(
                (lower(zone).into_octets(), server),
                Instant::now() + LAME_FOR,
            );
        }
    }

    /// Whether `server` is currently worth asking about `zone`.
    #[cfg(test)]
    pub(crate) fn is_usable(&self, zone: &Name<Bytes>, server: SocketAddr) -> bool {
        self.usable_at(zone, server, Instant::now())
    }

    fn usable_at(&self, zone: &Name<Bytes>, server: SocketAddr, now: Instant) -> bool {
        let lame = self
            .lame
            .lock()
            .map(|lame| {
                !lame.is_empty()
                    && lame
                        .get(&(lower(zone).into_octets(), server))
                        .is_some_and(|until| *until > now)
            })
            .unwrap_or(false);
        if lame {
            return false;
        }
        self.with(|servers| {
            servers
                .get(&server)
                .and_then(|s| s.skip_until)
                .is_none_or(|until| until <= now)
        })
    }

    /// Orders candidate servers: usable ones first, the fastest band shuffled, then the
    /// others by SRTT; servers not usable come last (a last resort when all are down).
    pub(crate) fn order(&self, zone: &Name<Bytes>, candidates: Vec<SocketAddr>) -> Vec<SocketAddr> {
        if candidates.len() <= 1 {
            // Nothing to order (usable or not, it is the only one).
            return candidates;
        }
        let now = Instant::now();
        let mut usable: Vec<(Duration, SocketAddr)> = Vec::with_capacity(candidates.len());
        let mut resting: Vec<(Duration, SocketAddr)> = Vec::new();
        for &server in &candidates {
            let entry = (self.srtt(server), server);
            if self.usable_at(zone, server, now) {
                usable.push(entry);
            } else {
                resting.push(entry);
            }
        }
        usable.sort_by_key(|(rtt, _)| *rtt);
        resting.sort_by_key(|(rtt, _)| *rtt);
        if let Some(&(best, _)) = usable.first() {
            let band = usable
                .iter()
                .take_while(|(rtt, _)| *rtt <= best + SELECTION_BAND)
                .count();
            usable[..band].shuffle(&mut rand::thread_rng());
        }
        usable
            .into_iter()
            .chain(resting)
            .map(|(_, server)| server)
            .collect()
    }

    fn with<T>(&self, f: impl FnOnce(&HashMap<SocketAddr, ServerState>) -> T) -> T {
        match self.servers.lock() {
            Ok(servers) => f(&servers),
            Err(poisoned) => f(&poisoned.into_inner()),
        }
    }

    fn update(&self, server: SocketAddr, f: impl FnOnce(&mut ServerState)) {
        let mut servers = match self.servers.lock() {
            Ok(servers) => servers,
            Err(poisoned) => poisoned.into_inner(),
        };
        if servers.len() >= MAX_SERVERS && !servers.contains_key(&server) {
            // Forget healthy servers first: they come back with the initial RTT.
            servers.retain(|_, s| s.consecutive_failures > 0);
            if servers.len() >= MAX_SERVERS {
                servers.clear();
            }
        }
        f(servers.entry(server).or_default());
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, reason = "test code")]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn timeouts_demote_and_back_off_then_recover() {
        let infra = InfraCache::default();
        let zone = Name::root_bytes();
        let fast: SocketAddr = "127.0.0.2:53".parse().unwrap();
        let dead: SocketAddr = "127.0.0.3:53".parse().unwrap();
        infra.record_rtt(fast, Duration::from_millis(10));
        infra.record_timeout(dead);
        assert!(infra.is_usable(&zone, dead), "one timeout is not a verdict");
        infra.record_timeout(dead);
        assert!(!infra.is_usable(&zone, dead));
        assert_eq!(infra.order(&zone, vec![dead, fast]), vec![fast, dead]);
        tokio::time::advance(BACKOFF_BASE + Duration::from_millis(1)).await;
        assert!(infra.is_usable(&zone, dead), "retried after the back-off");
    }

    #[tokio::test(start_paused = true)]
    async fn lame_is_per_zone() {
        let infra = InfraCache::default();
        let server: SocketAddr = "127.0.0.2:53".parse().unwrap();
        let zone = Name::bytes_from_str("test.").unwrap();
        infra.mark_lame(&zone, server);
        assert!(!infra.is_usable(&zone, server));
        assert!(infra.is_usable(&Name::root_bytes(), server));
    }
}
