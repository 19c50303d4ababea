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
use foldhash::fast::RandomState;
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
/// Servers within this much of the best SRTT count as equally fast and are picked from at
/// random (load spreading). Narrower than Unbound's 400 ms band, so that a server 100 ms
/// slower than the best gets only the exploration share of the queries.
const SELECTION_BAND: Duration = Duration::from_millis(50);
/// One query in this many explores: a random other usable server goes first, so that a
/// server slow (or unknown) before gets measured again (the epsilon-greedy choice of Knot
/// Resolver's server selection).
const EXPLORE_ONE_IN: u32 = 20;
/// Bound on tracked servers; past it the map is pruned of healthy entries.
pub(crate) const MAX_SERVERS: usize = 100_000;
/// How long a server that answered only without EDNS is asked without it (Unbound keeps its
/// infra cache entries 900 s), after which EDNS is tried again.
const EDNS_BROKEN_FOR: Duration = Duration::from_secs(900);
/// Timeouts of EDNS queries (from a server never seen answering one) after which one query
/// goes without EDNS, to find servers that drop EDNS queries.
const EDNS_TIMEOUTS_BEFORE_PROBE: u8 = 2;

/// What is known about a server's EDNS support.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
enum EdnsSupport {
    #[default]
    Unknown,
    /// It answered an EDNS query: a later FORMERR is not read as "no EDNS" (it may be forged
    /// to downgrade us), as Unbound's `edns_lame_known`.
    Works,
    /// It answered only a query without EDNS: asked without it until then.
    Broken { until: Instant },
}

/// How to ask a server, as far as EDNS goes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum EdnsPlan {
    /// With EDNS (the usual case).
    Edns,
    /// Without EDNS: the server is known not to support it.
    Plain,
    /// Without EDNS, once, after EDNS queries timed out: an answer means the server drops
    /// EDNS queries.
    Probe,
}

#[derive(Debug, Clone, Copy)]
struct ServerState {
    srtt: Duration,
    /// Whether `srtt` holds a measurement (the first one replaces the initial guess, RFC 6298
    /// §2.2) rather than the guess.
    measured: bool,
    consecutive_failures: u32,
    skip_until: Option<Instant>,
    edns: EdnsSupport,
    edns_timeouts: u8,
    /// The server cookie it sent last (RFC 7873 §5.3), sent back with every query to it.
    server_cookie: Option<ServerCookie>,
}

/// A server cookie learnt from an upstream server: 8 to 32 bytes (RFC 7873 §4.2), inline.
#[derive(Clone, Copy, PartialEq, Eq)]
pub(crate) struct ServerCookie {
    bytes: [u8; 32],
    len: u8,
}

impl ServerCookie {
    /// The cookie, if `bytes` has a length RFC 7873 allows.
    pub(crate) fn new(bytes: &[u8]) -> Option<Self> {
        if !(8..=32).contains(&bytes.len()) {
            return None;
        }
        let mut inline = [0u8; 32];
        inline[..bytes.len()].copy_from_slice(bytes);
        // At most 32: fits.
        Some(Self {
            bytes: inline,
            len: bytes.len() as u8,
        })
    }

    /// The cookie's bytes.
    pub(crate) fn as_slice(&self) -> &[u8] {
        &self.bytes[..usize::from(self.len)]
    }
}

impl std::fmt::Debug for ServerCookie {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "ServerCookie({} bytes)", self.len)
    }
}

impl Default for ServerState {
    fn default() -> Self {
        Self {
            srtt: INITIAL_RTT,
            measured: false,
            consecutive_failures: 0,
            skip_until: None,
            edns: EdnsSupport::Unknown,
            edns_timeouts: 0,
            server_cookie: None,
        }
    }
}

/// Per-server health shared by all resolutions.
#[derive(Debug)]
pub(crate) struct InfraCache {
    /// Hashed with the per-process seeded foldhash, as the delegation cache: server addresses
    /// are chosen by the zones juris is sent to, and SipHash over them cost ≈ 3 % of a cold
    /// answer's instructions (8 look-ups per answer, `bench/instructions.sh`).
    servers: Mutex<HashMap<SocketAddr, ServerState, RandomState>>,
    /// Keyed by the zone's lower-cased wire form (one hash pass over the bytes).
    lame: Mutex<HashMap<(Bytes, SocketAddr), Instant, RandomState>>,
    /// Key of the client cookies (random per process): see [`InfraCache::client_cookie`].
    cookie_secret: CookieSecret,
    /// Entries kept in each map (`resolver.limits.infra_servers`).
    max_servers: usize,
}

/// The client cookie key; never printed.
struct CookieSecret([u8; 16]);

impl std::fmt::Debug for CookieSecret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("CookieSecret(..)")
    }
}

impl Default for InfraCache {
    fn default() -> Self {
        Self {
            servers: Mutex::default(),
            lame: Mutex::default(),
            cookie_secret: CookieSecret(rand::random()),
            max_servers: MAX_SERVERS,
        }
    }
}

impl InfraCache {
    /// A cache that keeps at most `max_servers` servers (and as many lame zone/server pairs).
    pub(crate) fn with_max(max_servers: usize) -> Self {
        Self {
            max_servers: max_servers.max(1),
            ..Self::default()
        }
    }

    /// Servers and lame zone/server pairs kept (design 0048's bound tests).
    #[cfg(test)]
    pub(crate) fn lens(&self) -> (usize, usize) {
        let servers = self.servers.lock().map_or(0, |s| s.len());
        let lame = self.lame.lock().map_or(0, |l| l.len());
        (servers, lame)
    }

    /// Our client cookie for `server` (RFC 7873 §4.1): SipHash-2-4 of the server's address
    /// under a per-process random secret, so each server sees its own cookie, stable while
    /// the process runs, and no server can learn another's or track us across restarts.
    /// (The client address is not an input: the source address is chosen per query by the
    /// kernel; RFC 7873 §4.1 leaves the algorithm to the client.)
    pub(crate) fn client_cookie(&self, server: SocketAddr) -> [u8; 8] {
        let hasher = siphasher::sip::SipHasher24::new_with_key(&self.cookie_secret.0);
        let hash = match server.ip() {
            std::net::IpAddr::V4(v4) => hasher.hash(&v4.octets()),
            std::net::IpAddr::V6(v6) => hasher.hash(&v6.octets()),
        };
        hash.to_le_bytes()
    }

    /// The server cookie `server` gave us last, if any.
    pub(crate) fn server_cookie(&self, server: SocketAddr) -> Option<ServerCookie> {
        self.with(|servers| servers.get(&server).and_then(|s| s.server_cookie))
    }

    /// Remembers the server cookie of a response whose client cookie was ours.
    pub(crate) fn learn_server_cookie(&self, server: SocketAddr, cookie: ServerCookie) {
        if self.server_cookie(server) == Some(cookie) {
            return;
        }
        self.update(server, |state| state.server_cookie = Some(cookie));
    }

    /// The RTT `server` is ranked by: its SRTT, or zero for a server never asked, which is
    /// thus tried among the fastest (and so gets measured), as Unbound's initial 376 ms guess
    /// inside its 400 ms band does.
    fn selection_rtt(&self, server: SocketAddr) -> Duration {
        self.with(|servers| {
            servers
                .get(&server)
                .filter(|s| s.measured)
                .map_or(Duration::ZERO, |s| s.srtt)
        })
    }

    /// Records a successful exchange.
    pub(crate) fn record_rtt(&self, server: SocketAddr, rtt: Duration) {
        self.update(server, |state| {
            // RFC 6298-style smoothing, weight 1/8 for the new sample; the first sample
            // replaces the initial guess.
            state.srtt = if state.measured {
                (state.srtt * 7 + rtt) / 8
            } else {
                rtt
            };
            state.measured = true;
            state.consecutive_failures = 0;
            state.skip_until = None;
        });
    }

    /// Records a timeout: the SRTT is doubled and repeated timeouts back the server off.
    pub(crate) fn record_timeout(&self, server: SocketAddr) {
        self.update(server, |state| {
            state.srtt = (state.srtt * 2).min(MAX_RTT);
            state.measured = true;
            Self::fail(state);
        });
    }

    /// Records a failed exchange that was not a timeout (SERVFAIL, REFUSED, malformed).
    pub(crate) fn record_failure(&self, server: SocketAddr) {
        self.update(server, |state| {
            state.srtt = (state.srtt + INITIAL_RTT).min(MAX_RTT);
            state.measured = true;
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

    /// How to ask `server` as far as EDNS goes.
    pub(crate) fn edns_plan(&self, server: SocketAddr) -> EdnsPlan {
        let now = Instant::now();
        self.with(|servers| match servers.get(&server) {
            Some(state) => match state.edns {
                EdnsSupport::Broken { until } if until > now => EdnsPlan::Plain,
                EdnsSupport::Works => EdnsPlan::Edns,
                _ if state.edns_timeouts >= EDNS_TIMEOUTS_BEFORE_PROBE => EdnsPlan::Probe,
                _ => EdnsPlan::Edns,
            },
            None => EdnsPlan::Edns,
        })
    }

    /// Whether `server` was seen answering an EDNS query.
    pub(crate) fn edns_known_to_work(&self, server: SocketAddr) -> bool {
        self.with(|servers| {
            servers
                .get(&server)
                .is_some_and(|s| s.edns == EdnsSupport::Works)
        })
    }

    /// `server` answered an EDNS query.
    pub(crate) fn edns_works(&self, server: SocketAddr) {
        if self.edns_known_to_work(server) {
            return;
        }
        self.update(server, |state| {
            state.edns = EdnsSupport::Works;
            state.edns_timeouts = 0;
        });
    }

    /// `server` answered a query without EDNS after rejecting (or dropping) EDNS queries.
    pub(crate) fn edns_broken(&self, server: SocketAddr) {
        tracing::debug!(%server, "server does not support EDNS, asking without it");
        self.update(server, |state| {
            state.edns = EdnsSupport::Broken {
                until: Instant::now() + EDNS_BROKEN_FOR,
            };
            state.edns_timeouts = 0;
        });
    }

    /// An EDNS query to `server` timed out (`probe`: a query without EDNS did).
    pub(crate) fn edns_timeout(&self, server: SocketAddr, probe: bool) {
        self.update(server, |state| {
            if probe {
                state.edns_timeouts = 0;
            } else if state.edns != EdnsSupport::Works {
                state.edns_timeouts = state.edns_timeouts.saturating_add(1);
            }
        });
    }

    /// Marks `server` as lame for `zone` (it answered without authority or with a bad referral).
    pub(crate) fn mark_lame(&self, zone: &Name<Bytes>, server: SocketAddr) {
        if let Ok(mut lame) = self.lame.lock() {
            if lame.len() >= self.max_servers {
                let now = Instant::now();
                lame.retain(|_, until| *until > now);
                if lame.len() >= self.max_servers {
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
    /// others by SRTT; servers not usable come last (a last resort when all are down). One
    /// time in [`EXPLORE_ONE_IN`] a random usable server outside the fastest band goes first.
    pub(crate) fn order(&self, zone: &Name<Bytes>, candidates: Vec<SocketAddr>) -> Vec<SocketAddr> {
        self.order_with(zone, candidates, &mut rand::thread_rng())
    }

    fn order_with(
        &self,
        zone: &Name<Bytes>,
        candidates: Vec<SocketAddr>,
        rng: &mut impl rand::Rng,
    ) -> Vec<SocketAddr> {
        if candidates.len() <= 1 {
            // Nothing to order (usable or not, it is the only one).
            return candidates;
        }
        let now = Instant::now();
        let mut usable: Vec<(Duration, SocketAddr)> = Vec::with_capacity(candidates.len());
        let mut resting: Vec<(Duration, SocketAddr)> = Vec::new();
        for &server in &candidates {
            let entry = (self.selection_rtt(server), server);
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
            usable[..band].shuffle(rng);
            if band < usable.len() && rng.gen_ratio(1, EXPLORE_ONE_IN) {
                let explored = rng.gen_range(band..usable.len());
                let server = usable.remove(explored);
                usable.insert(0, server);
            }
        }
        usable
            .into_iter()
            .chain(resting)
            .map(|(_, server)| server)
            .collect()
    }

    fn with<T>(&self, f: impl FnOnce(&HashMap<SocketAddr, ServerState, RandomState>) -> T) -> T {
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
        if servers.len() >= self.max_servers && !servers.contains_key(&server) {
            // Forget healthy servers first: they come back with the initial RTT.
            servers.retain(|_, s| s.consecutive_failures > 0);
            if servers.len() >= self.max_servers {
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

    #[test]
    fn client_cookies_differ_per_server_and_process_and_server_cookies_are_kept() {
        let infra = InfraCache::default();
        let a: SocketAddr = "192.0.2.1:53".parse().unwrap();
        let b: SocketAddr = "192.0.2.2:53".parse().unwrap();
        assert_eq!(infra.client_cookie(a), infra.client_cookie(a));
        assert_ne!(infra.client_cookie(a), infra.client_cookie(b));
        assert_ne!(
            infra.client_cookie(a),
            InfraCache::default().client_cookie(a)
        );
        assert_eq!(infra.server_cookie(a), None);
        let cookie = ServerCookie::new(&[7; 16]).unwrap();
        infra.learn_server_cookie(a, cookie);
        assert_eq!(infra.server_cookie(a), Some(cookie));
        assert_eq!(infra.server_cookie(b), None);
        assert!(ServerCookie::new(&[0; 7]).is_none());
        assert!(ServerCookie::new(&[0; 33]).is_none());
        assert!(format!("{infra:?}").contains("CookieSecret(..)"));
    }

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

    /// The fastest server gets the queries but for the exploration share; a slow one gets
    /// some of them (it is measured again), a backed-off one none while it rests.
    #[tokio::test(start_paused = true)]
    async fn selection_prefers_the_fastest_and_explores_the_slow() {
        use rand::SeedableRng;
        let infra = InfraCache::default();
        let zone = Name::root_bytes();
        let fast: SocketAddr = "127.0.0.2:53".parse().unwrap();
        let slow: SocketAddr = "127.0.0.3:53".parse().unwrap();
        let dead: SocketAddr = "127.0.0.4:53".parse().unwrap();
        infra.record_rtt(fast, Duration::from_millis(2));
        infra.record_rtt(slow, Duration::from_millis(150));
        infra.record_timeout(dead);
        infra.record_timeout(dead);
        let mut rng = rand::rngs::StdRng::seed_from_u64(11);
        let mut first = HashMap::new();
        let rounds = 2000;
        for _ in 0..rounds {
            let order = infra.order_with(&zone, vec![dead, slow, fast], &mut rng);
            assert_eq!(
                order.last(),
                Some(&dead),
                "a resting server is the last resort"
            );
            *first.entry(order[0]).or_insert(0u32) += 1;
        }
        let (fast_first, slow_first) = (first[&fast], first.get(&slow).copied().unwrap_or(0));
        assert_eq!(fast_first + slow_first, rounds);
        assert!(
            fast_first > rounds * 9 / 10,
            "fast first {fast_first} of {rounds}"
        );
        assert!(slow_first > 0, "the slow server is explored");
        // Within the band, servers share the load.
        let near: SocketAddr = "127.0.0.5:53".parse().unwrap();
        infra.record_rtt(near, Duration::from_millis(3));
        let firsts: std::collections::HashSet<SocketAddr> = (0..200)
            .map(|_| infra.order_with(&zone, vec![near, fast], &mut rng)[0])
            .collect();
        assert_eq!(firsts.len(), 2, "equally fast servers are both used");
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

    /// Design 0048: upstream servers a client can make us ask (any address a referral names)
    /// and lame zone/server pairs never exceed `resolver.limits.infra_servers` each.
    #[test]
    fn servers_and_lame_pairs_stay_at_the_configured_bound() {
        let infra = InfraCache::with_max(50);
        for i in 0..1000u32 {
            let server = SocketAddr::from((i.to_be_bytes(), 53));
            match i % 3 {
                0 => infra.record_rtt(server, Duration::from_millis(10)),
                1 => infra.record_timeout(server),
                _ => infra.learn_server_cookie(server, ServerCookie::new(&[7; 16]).unwrap()),
            }
            let zone = Name::<Bytes>::bytes_from_str(&format!("z{i}.example.")).unwrap();
            infra.mark_lame(&zone, server);
            let (servers, lame) = infra.lens();
            assert!(
                servers <= 50 && lame <= 50,
                "{servers} servers, {lame} lame"
            );
        }
        assert!(infra.lens().0 > 0 && infra.lens().1 > 0);
    }
}
