//! Public face of the resolver: configuration, errors, request coalescing and the memory of
//! recent failures. The engines live in [`crate::recursor`] and [`crate::forwarder`].

use std::collections::HashMap;
use std::future::Future;
use std::net::{IpAddr, SocketAddr};
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use domain::base::{iana::Class, Name, Rtype};
use quick_cache::DefaultHashBuilder;
use tokio::sync::oneshot;
use tokio::time::Instant;

use crate::answer;
use crate::cache::{AnswerCache, CacheKey, CacheKeyRef, CachedAnswer, FlushScope, Freshness};
use crate::clock::SharedClock;
use crate::dnssec::{Budget, Fetcher, Security, Validator};
use crate::forwarder::Forwarder;
use crate::names::lower;
use crate::recursor::Outcome;
use crate::recursor::{Recursor, Work};

/// One question to resolve (a cache miss).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Question {
    /// The query name, lower-cased.
    pub name: Name<Bytes>,
    /// Query type.
    pub qtype: Rtype,
    /// Query class (only IN is resolved; others get REFUSED/NOTIMP from the server).
    pub qclass: Class,
    /// The client asked for DNSSEC records (DO=1).
    pub dnssec_ok: bool,
    /// The client set CD=1.
    pub checking_disabled: bool,
}

/// How answers are found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Mode {
    /// Iterative recursion from the root, starting at these root servers (name, address).
    Recursive {
        /// Root server names and addresses (from a root hints file).
        root_hints: Vec<(Name<Bytes>, IpAddr)>,
    },
    /// Send every query to these upstreams (RD=1) and cache what they say.
    Forward {
        /// Upstream resolvers.
        upstreams: Vec<SocketAddr>,
    },
}

/// Hard limits on the work one client query may cause (loops, amplification), and the
/// bounds of the resolver's tables. Read as is from `[resolver.limits]` (every field a key of
/// the same name, every key optional, an unknown key refused); [`Limits::validate`] checks it.
#[derive(Debug, Clone, PartialEq, Eq, serde::Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Limits {
    /// Referrals followed for one name.
    pub max_referrals: u32,
    /// CNAME/DNAME links followed.
    pub max_cname_chain: u32,
    /// Sub-lookups for name server addresses (glueless delegations).
    pub max_ns_lookups: u32,
    /// Name server names of one zone cut whose addresses are looked up for one question
    /// (NXNS, CVE-2020-12662: a referral to many glueless names makes one query cause many);
    /// the names beyond are left alone.
    pub max_ns_lookups_per_zone: u32,
    /// Name server names kept per zone cut (the delegation cache's entry, and the root NS set
    /// of a priming answer): those with usable glue in the referral first, then the others,
    /// each in the referral's order; the rest are dropped ([`Limit::NameServersPerZoneCut`]).
    /// Makes a cut's size, chosen by the zone's parent, a byte bound (design 0051).
    pub max_ns_per_zone_cut: u32,
    /// Addresses kept per name server name and address type (A, AAAA), from glue or from a
    /// lookup of the name; the first ones in the answer's order, the rest dropped
    /// ([`Limit::AddressesPerNameServer`]).
    pub max_addresses_per_ns: u32,
    /// Upstream queries sent in total on behalf of one client query.
    pub max_upstream_queries: u32,
    /// Nesting depth of sub-lookups (NS address lookups that need NS address lookups...).
    pub max_depth: u32,
    /// Upstream queries outstanding at once to the servers of one zone (random-subdomain
    /// floods); beyond it a client query that needs the zone fails at once
    /// ([`Limit::OutstandingPerZone`]). 0: no cap. Recursive mode only.
    pub max_outstanding_per_zone: u32,
    /// Upstream queries outstanding at once in total ([`Limit::OutstandingTotal`]). 0: no cap.
    pub max_outstanding: u32,
    /// Upstream TCP connections open at once to one server (RFC 7766 §6.2.1.1).
    pub tcp_connections_per_server: u32,
    /// Upstream TCP connections open at once in all.
    pub tcp_connections: u32,
    /// Queries outstanding at once on one upstream TCP connection (pipelining).
    pub tcp_queries_per_connection: u32,
    /// How long an upstream TCP connection with nothing to answer is kept open, in
    /// milliseconds (a server's edns-tcp-keepalive can shorten it, RFC 7828).
    pub tcp_idle_ms: u64,
    /// Servers whose health (SRTT, back-off, EDNS, cookies) is kept, and as many lame
    /// zone/server pairs.
    pub infra_servers: u32,
    /// Zone cuts kept, and as many name server address sets.
    pub delegation_entries: u32,
    /// Followed CNAME/DNAME records kept.
    pub redirect_entries: u32,
    /// Zones whose DS data from referrals is kept.
    pub referral_ds_zones: u32,
    /// Zones whose DNSSEC state (DNSKEY/DS outcome) is kept, and as many proven non-cuts.
    pub validated_zones: u32,
    /// Zones whose validated NSEC/NSEC3 ranges are kept (RFC 8198).
    pub aggressive_nsec_zones: u32,
    /// NSEC/NSEC3 records (each with its RRSIGs) kept per zone, the oldest dropped first.
    pub aggressive_nsec_ranges: u32,
    /// Secure wildcard expansions kept per zone (RFC 8198 §5.3), the oldest dropped first.
    pub aggressive_nsec_wildcards: u32,
    /// Bytes the whole aggressive NSEC store may hold (its ranges, SOAs and wildcard
    /// expansions, by [`crate::dnssec::aggressive`]'s estimate of their heap size): past it
    /// the zones least recently inserted into or answered from go first
    /// ([`Limit::AggressiveNsecBytes`], design 0052). Bytes, or a size such as `"32M"`.
    #[serde(deserialize_with = "deserialize_size")]
    pub aggressive_nsec_bytes: u64,
    /// Resolution failures remembered (RFC 9520).
    pub remembered_failures: u32,
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            max_referrals: 30,
            max_cname_chain: 12,
            max_ns_lookups: 16,
            max_ns_lookups_per_zone: 4,
            max_ns_per_zone_cut: crate::delegation::MAX_NS_PER_CUT as u32,
            max_addresses_per_ns: crate::delegation::MAX_ADDRESSES_PER_NS as u32,
            max_upstream_queries: 64,
            max_depth: 6,
            max_outstanding_per_zone: 250,
            max_outstanding: 1000,
            tcp_connections_per_server: 2,
            tcp_connections: 128,
            tcp_queries_per_connection: 16,
            tcp_idle_ms: 10_000,
            infra_servers: crate::infra::MAX_SERVERS as u32,
            delegation_entries: crate::delegation::MAX_ENTRIES as u32,
            redirect_entries: crate::redirects::MAX_ENTRIES as u32,
            referral_ds_zones: crate::referral_ds::MAX_ZONES as u32,
            validated_zones: crate::dnssec::validator::MAX_ZONES as u32,
            aggressive_nsec_zones: crate::dnssec::aggressive::MAX_ZONES as u32,
            aggressive_nsec_ranges: crate::dnssec::aggressive::MAX_NSECS_PER_ZONE as u32,
            aggressive_nsec_wildcards: crate::dnssec::aggressive::MAX_WILDCARDS_PER_ZONE as u32,
            aggressive_nsec_bytes: crate::dnssec::aggressive::MAX_BYTES as u64,
            remembered_failures: MAX_REMEMBERED_FAILURES as u32,
        }
    }
}

impl Limits {
    /// Checks the values: every field that bounds something must be above 0 (the outstanding
    /// caps take 0 for "no cap"), and a server's share of the upstream TCP connections must
    /// not exceed the total. The first field found wrong is named.
    pub fn validate(&self) -> Result<(), LimitsError> {
        // (the key, its value): the key is the field's own name.
        macro_rules! named {
            ($($field:ident),*) => { [$((stringify!($field), self.$field)),*] };
        }
        let positive = named![
            max_referrals,
            max_cname_chain,
            max_ns_lookups,
            max_ns_lookups_per_zone,
            max_ns_per_zone_cut,
            max_addresses_per_ns,
            max_upstream_queries,
            max_depth,
            tcp_connections_per_server,
            tcp_connections,
            tcp_queries_per_connection,
            infra_servers,
            delegation_entries,
            redirect_entries,
            referral_ds_zones,
            validated_zones,
            aggressive_nsec_zones,
            aggressive_nsec_ranges,
            aggressive_nsec_wildcards,
            remembered_failures
        ];
        if let Some((field, _)) = positive.into_iter().find(|(_, value)| *value == 0) {
            return Err(LimitsError {
                field,
                problem: LimitsProblem::Zero,
            });
        }
        if self.tcp_connections_per_server > self.tcp_connections {
            return Err(LimitsError {
                field: "tcp_connections_per_server",
                problem: LimitsProblem::AboveField("tcp_connections"),
            });
        }
        if self.aggressive_nsec_bytes < MIN_AGGRESSIVE_NSEC_BYTES {
            return Err(LimitsError {
                field: "aggressive_nsec_bytes",
                problem: LimitsProblem::BelowSize("64K"),
            });
        }
        if self.tcp_idle_ms == 0 {
            return Err(LimitsError {
                field: "tcp_idle_ms",
                problem: LimitsProblem::Zero,
            });
        }
        Ok(())
    }
}

/// The smallest `aggressive_nsec_bytes` taken: room for some hundred ranges, as `cache.size`'s
/// own floor (a smaller store would keep nearly nothing; `dnssec.aggressive_nsec = false`
/// turns it off).
const MIN_AGGRESSIVE_NSEC_BYTES: u64 = 64 << 10;

/// A size key: an integer of bytes, or a string such as `"32M"` ([`parse_size`]).
fn deserialize_size<'de, D: serde::Deserializer<'de>>(deserializer: D) -> Result<u64, D::Error> {
    #[derive(serde::Deserialize)]
    #[serde(untagged)]
    enum Size {
        Bytes(u64),
        Text(String),
    }
    match <Size as serde::Deserialize>::deserialize(deserializer)? {
        Size::Bytes(bytes) => Ok(bytes),
        Size::Text(text) => parse_size(&text).ok_or_else(|| {
            serde::de::Error::custom(format!(
                "{text:?} is not a size (e.g. 33554432, \"32M\", \"1G\")"
            ))
        }),
    }
}

/// `64M` → 67108864. Suffixes K, M, G (powers of 1024), case-insensitive, optional `B`/`iB`.
pub fn parse_size(text: &str) -> Option<u64> {
    let t = text.trim();
    let t = t
        .strip_suffix("iB")
        .or_else(|| t.strip_suffix('B'))
        .unwrap_or(t);
    let (digits, multiplier) = match t.chars().last()?.to_ascii_uppercase() {
        'K' => (&t[..t.len() - 1], 1u64 << 10),
        'M' => (&t[..t.len() - 1], 1 << 20),
        'G' => (&t[..t.len() - 1], 1 << 30),
        _ => (t, 1),
    };
    digits.trim().parse::<u64>().ok()?.checked_mul(multiplier)
}

/// A [`Limits`] field refused by [`Limits::validate`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LimitsError {
    /// The field, as named in `[resolver.limits]`.
    pub field: &'static str,
    /// What is wrong with its value.
    pub problem: LimitsProblem,
}

/// What is wrong with a [`Limits`] field.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LimitsProblem {
    /// It is 0 and must be above.
    Zero,
    /// It is above this other field, and must be at most that.
    AboveField(&'static str),
    /// A size below this one (as written in the configuration, `"64K"`).
    BelowSize(&'static str),
}

impl LimitsError {
    /// What is wrong, another field named with `prefix` before it (`"resolver.limits."`).
    pub fn reason(&self, prefix: &str) -> String {
        match self.problem {
            LimitsProblem::Zero => "must be above 0".to_owned(),
            LimitsProblem::AboveField(other) => format!("must be at most {prefix}{other}"),
            LimitsProblem::BelowSize(size) => format!("must be at least {size}"),
        }
    }
}

/// Resolver settings (validated; the raw TOML layer lives in the binary).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ResolverConfig {
    /// Recursion or forwarding.
    pub mode: Mode,
    /// QNAME minimisation (RFC 9156, relaxed mode).
    pub qname_minimisation: bool,
    /// Recursive mode: ask the hints for the root NS set before the first use of the root
    /// (RFC 8109), and again when it expires; the hints stay the fallback.
    pub root_priming: bool,
    /// EDNS(0) UDP payload size advertised upstream.
    pub edns_buffer_size: u16,
    /// Timeout for one upstream query before trying another server.
    pub query_timeout: Duration,
    /// Total time budget for one client query.
    pub resolution_deadline: Duration,
    /// Work limits.
    pub limits: Limits,
    /// Query upstreams over IPv4.
    pub ipv4: bool,
    /// Query upstreams over IPv6.
    pub ipv6: bool,
    /// Allow upstream servers on loopback and other local addresses (needed for local test
    /// hierarchies; off for a public resolver so a referral cannot aim us at ourselves).
    pub allow_loopback_upstreams: bool,
    /// Port used for every authoritative server whose address comes from the root hints, glue
    /// or a lookup (53; tests run fake authorities on high ports). Forward-mode upstreams carry
    /// their own ports.
    pub upstream_port: u16,
    /// DNSSEC validation.
    pub dnssec: crate::dnssec::ValidatorConfig,
}

impl Default for ResolverConfig {
    fn default() -> Self {
        Self {
            mode: Mode::Forward {
                upstreams: Vec::new(),
            },
            qname_minimisation: true,
            root_priming: true,
            edns_buffer_size: 1232,
            query_timeout: Duration::from_millis(800),
            resolution_deadline: Duration::from_secs(10),
            limits: Limits::default(),
            ipv4: true,
            ipv6: true,
            allow_loopback_upstreams: false,
            upstream_port: 53,
            dnssec: crate::dnssec::ValidatorConfig::default(),
        }
    }
}

/// Why a question could not be answered. The server maps these to SERVFAIL + EDE.
#[derive(Debug, Clone, thiserror::Error)]
pub enum ResolveError {
    /// No authoritative server answered (EDE 22).
    #[error("no reachable authority for {0}")]
    NoReachableAuthority(String),
    /// A work limit was hit (loop or amplification guard).
    #[error("work limit reached: {0}")]
    LimitExceeded(Limit),
    /// The total deadline passed.
    #[error("resolution timed out")]
    Timeout,
    /// Upstream answers were unusable (malformed, out of bailiwick, lame).
    #[error("invalid upstream data: {0}")]
    InvalidData(String),
    /// Something local failed (socket, ...).
    #[error("internal error: {0}")]
    Internal(String),
}

/// The work limit a resolution hit (a loop or amplification guard).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Limit {
    /// Upstream queries per client query ([`Limits`]).
    UpstreamQueries,
    /// Referrals followed.
    Referrals,
    /// Name server address lookups.
    NameServerLookups,
    /// CNAME chain length.
    CnameChain,
    /// A CNAME chain that comes back on itself.
    CnameLoop,
    /// Sub-lookups nested too deep.
    Depth,
    /// A name server lookup that needs its own result (a delegation loop).
    DelegationLoop,
    /// Name server address lookups for one zone cut ([`Limits::max_ns_lookups_per_zone`]).
    NameServerLookupsPerZone,
    /// Upstream queries outstanding to one zone's servers ([`Limits::max_outstanding_per_zone`]).
    OutstandingPerZone,
    /// Upstream queries outstanding in total ([`Limits::max_outstanding`]).
    OutstandingTotal,
    /// A referral (or priming answer) listed more name servers than
    /// [`Limits::max_ns_per_zone_cut`]: the cut was stored without the rest (one hit per NS
    /// set cut down, not per name dropped). Never fails a query.
    NameServersPerZoneCut,
    /// Glue or a lookup gave a name server more addresses of one type than
    /// [`Limits::max_addresses_per_ns`]: the rest were dropped (one hit per address set cut
    /// down). Never fails a query.
    AddressesPerNameServer,
    /// The aggressive NSEC store went over [`Limits::aggressive_nsec_bytes`]: a zone's ranges
    /// were dropped to make room (one hit per zone dropped, or per zone cut down when it
    /// alone is over). Never fails a query.
    AggressiveNsecBytes,
}

impl Limit {
    /// Every limit, in the order of [`Limit::label`]'s counters.
    pub const ALL: [Limit; 13] = [
        Limit::UpstreamQueries,
        Limit::Referrals,
        Limit::NameServerLookups,
        Limit::CnameChain,
        Limit::CnameLoop,
        Limit::Depth,
        Limit::DelegationLoop,
        Limit::NameServerLookupsPerZone,
        Limit::OutstandingPerZone,
        Limit::OutstandingTotal,
        Limit::NameServersPerZoneCut,
        Limit::AddressesPerNameServer,
        Limit::AggressiveNsecBytes,
    ];

    /// A short label for metrics (`juris_resolver_limit_hits_total{limit=...}`).
    pub fn label(self) -> &'static str {
        match self {
            Limit::UpstreamQueries => "upstream_queries",
            Limit::Referrals => "referrals",
            Limit::NameServerLookups => "ns_lookups",
            Limit::CnameChain => "cname_chain",
            Limit::CnameLoop => "cname_loop",
            Limit::Depth => "depth",
            Limit::DelegationLoop => "delegation_loop",
            Limit::NameServerLookupsPerZone => "ns_lookups_per_zone",
            Limit::OutstandingPerZone => "outstanding_per_zone",
            Limit::OutstandingTotal => "outstanding_total",
            Limit::NameServersPerZoneCut => "ns_per_zone_cut",
            Limit::AddressesPerNameServer => "addresses_per_ns",
            Limit::AggressiveNsecBytes => "aggressive_nsec_bytes",
        }
    }

    /// Whether hitting this limit stops the whole client query; a delegation loop or a too
    /// deep sub-lookup only rules out one name server name, and the caps on what a zone cut
    /// keeps only drop names or addresses.
    pub fn is_fatal(self) -> bool {
        !matches!(
            self,
            Limit::DelegationLoop
                | Limit::Depth
                | Limit::NameServerLookupsPerZone
                | Limit::NameServersPerZoneCut
                | Limit::AddressesPerNameServer
                | Limit::AggressiveNsecBytes
        )
    }
}

impl std::fmt::Display for Limit {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Limit::UpstreamQueries => "upstream queries per client query",
            Limit::Referrals => "referrals",
            Limit::NameServerLookups => "name server lookups",
            Limit::CnameChain => "CNAME chain length",
            Limit::CnameLoop => "CNAME loop",
            Limit::Depth => "sub-lookup depth",
            Limit::DelegationLoop => "delegation loop (name server lookup needs itself)",
            Limit::NameServerLookupsPerZone => "name server lookups per zone cut",
            Limit::OutstandingPerZone => "upstream queries outstanding for one zone",
            Limit::OutstandingTotal => "upstream queries outstanding in total",
            Limit::NameServersPerZoneCut => "name servers kept per zone cut",
            Limit::AddressesPerNameServer => "addresses kept per name server",
            Limit::AggressiveNsecBytes => "bytes of the aggressive NSEC store",
        })
    }
}

/// How often each [`Limit`] was hit since start (every hit, also those that only ruled out
/// one name server name).
#[derive(Debug, Default)]
pub(crate) struct LimitCounters {
    hits: [std::sync::atomic::AtomicU64; Limit::ALL.len()],
}

impl LimitCounters {
    fn record(&self, hits: &[Limit]) {
        for limit in hits {
            if let Some(at) = Limit::ALL.iter().position(|l| l == limit) {
                self.hits[at].fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            }
        }
    }

    fn snapshot(&self) -> Vec<(Limit, u64)> {
        Limit::ALL
            .iter()
            .zip(&self.hits)
            .map(|(limit, n)| (*limit, n.load(std::sync::atomic::Ordering::Relaxed)))
            .collect()
    }
}

/// Problems constructing a resolver.
#[derive(Debug, thiserror::Error)]
pub enum ResolverError {
    /// Recursive mode without root hints, forward mode without upstreams.
    #[error("{0}")]
    Config(&'static str),
    /// A trust anchor file could not be used.
    #[error(transparent)]
    Anchors(#[from] crate::dnssec::AnchorError),
}

/// What one [`Resolver::flush`] removed.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct FlushReport {
    /// Answer cache entries (one per name, type, class and DO bit).
    pub answers: usize,
    /// Zone cuts (recursive mode).
    pub delegations: usize,
    /// Name server address entries (recursive mode).
    pub addresses: usize,
    /// Remembered resolution failures.
    pub failures: usize,
}

/// The resolver: cheap to clone, shared by all listeners.
#[derive(Debug, Clone)]
pub struct Resolver {
    inner: Arc<Inner>,
}

type Shared = Result<Arc<CachedAnswer>, ResolveError>;

/// Bound on remembered failures (RFC 9520); past it the map is pruned.
const MAX_REMEMBERED_FAILURES: usize = 100_000;

/// A table bound from [`Limits`] as a size (at least 1).
pub(crate) fn table_bound(n: u32) -> usize {
    usize::try_from(n).unwrap_or(usize::MAX).max(1)
}
/// Rounds of asking other servers after a bogus answer (Unbound restarts validation a few
/// times likewise); each round avoids the servers that answered the round before.
const MAX_BOGUS_RETRIES: u32 = 3;

#[derive(Debug)]
struct Inner {
    config: Arc<ResolverConfig>,
    cache: Arc<AnswerCache>,
    clock: SharedClock,
    engine: Engine,
    /// DNSSEC validation (`None` when `dnssec.enabled` is off).
    validator: Option<Validator>,
    /// Resolutions under way, by question, with the later askers waiting for the result.
    /// Same keys and the same hasher as the answer cache.
    in_flight: Mutex<HashMap<CacheKey, Vec<oneshot::Sender<Shared>>, DefaultHashBuilder>>,
    /// Recent failures (RFC 9520 §3.2): the error and the Unix time it is forgotten.
    failures: Mutex<HashMap<CacheKey, (ResolveError, u64), DefaultHashBuilder>>,
    /// Work limits hit (NXNS, loops, amplification guards), for `/metrics`.
    limit_hits: LimitCounters,
    /// Background refreshes started ([`Resolver::prefetch`]).
    prefetches: std::sync::atomic::AtomicU64,
}

#[derive(Debug)]
enum Engine {
    Recursive(Box<Recursor>),
    Forward(Box<Forwarder>),
}

impl Resolver {
    /// A resolver that stores its answers in `cache`.
    ///
    /// Recursive mode takes its root servers from `Mode::Recursive::root_hints` (see
    /// [`crate::builtin_root_hints`] and [`crate::parse_root_hints`]).
    pub fn new(
        config: ResolverConfig,
        cache: Arc<AnswerCache>,
        clock: SharedClock,
    ) -> Result<Self, ResolverError> {
        let config = Arc::new(config);
        let engine = match &config.mode {
            Mode::Recursive { root_hints } if root_hints.is_empty() => {
                return Err(ResolverError::Config("recursive mode needs root hints"))
            }
            Mode::Forward { upstreams } if upstreams.is_empty() => {
                return Err(ResolverError::Config(
                    "forward mode needs at least one upstream",
                ))
            }
            Mode::Recursive { root_hints } => Engine::Recursive(Box::new(Recursor::new(
                config.clone(),
                root_hints,
                clock.clone(),
                cache.config().max_ttl,
            ))),
            Mode::Forward { upstreams } => {
                Engine::Forward(Box::new(Forwarder::new(config.clone(), upstreams.clone())))
            }
        };
        if !config.ipv4 && !config.ipv6 {
            return Err(ResolverError::Config(
                "at least one of ipv4 and ipv6 must be enabled for upstream queries",
            ));
        }
        let validator = if config.dnssec.enabled {
            let anchors = config.dnssec.load_anchors()?;
            Some(
                Validator::new(config.dnssec.clone(), anchors, clock.clone()).with_limits(
                    table_bound(config.limits.validated_zones),
                    (
                        table_bound(config.limits.aggressive_nsec_zones),
                        table_bound(config.limits.aggressive_nsec_ranges),
                        table_bound(config.limits.aggressive_nsec_wildcards),
                        usize::try_from(config.limits.aggressive_nsec_bytes).unwrap_or(usize::MAX),
                    ),
                ),
            )
        } else {
            None
        };
        Ok(Self {
            inner: Arc::new(Inner {
                config,
                cache,
                clock,
                engine,
                validator,
                in_flight: Mutex::new(HashMap::default()),
                failures: Mutex::new(HashMap::default()),
                limit_hits: LimitCounters::default(),
                prefetches: std::sync::atomic::AtomicU64::new(0),
            }),
        })
    }

    /// The answer cache this resolver fills.
    pub fn cache(&self) -> &Arc<AnswerCache> {
        &self.inner.cache
    }

    /// Forgets what `scope` covers: answer cache entries (every type, positive, negative and
    /// failures), remembered failures (RFC 9520), and in recursive mode the zone cuts and name
    /// server addresses learnt for those names, the followed CNAME/DNAME records and referral
    /// DS data, and the aggressive-NSEC ranges that could deny them. Validated DNSSEC keys and per-server health
    /// (RTT, lameness) stay: they are about servers and trust chains, not about one name's
    /// data (`docs/design/0017-cache-control.md`). The answer cache's generation moves on, so
    /// copies held outside it (the UDP workers' hot answers) are dropped too.
    pub fn flush(&self, scope: FlushScope<'_>) -> FlushReport {
        let failures = {
            let mut failures = lock(&self.inner.failures);
            let before = failures.len();
            failures.retain(|key, _| !scope.covers(key.as_ref().name));
            before - failures.len()
        };
        let (delegations, addresses) = match &self.inner.engine {
            Engine::Recursive(recursor) => recursor.flush(scope),
            Engine::Forward(_) => (0, 0),
        };
        if let Some(validator) = &self.inner.validator {
            validator.flush(scope);
        }
        // Last: the generation moves on only once everything is gone.
        let answers = self.inner.cache.flush(scope);
        FlushReport {
            answers,
            delegations,
            addresses,
            failures,
        }
    }

    /// Refreshes the cache entry of `question` in the background (a popular entry near its
    /// expiry: [`crate::cache::CacheConfig::prefetch`]), unless a resolution of the same
    /// question is under way. Runs on the tokio runtime of the caller; outside of one it does
    /// nothing. Returns whether a refresh was started.
    pub fn prefetch(&self, question: &Question) -> bool {
        let Ok(runtime) = tokio::runtime::Handle::try_current() else {
            return false;
        };
        let name = lower(&question.name);
        let key = key_of(question, &name).to_owned_key();
        {
            let mut in_flight = lock(&self.inner.in_flight);
            if in_flight.contains_key(&key) {
                return false;
            }
            in_flight.insert(key.clone(), Vec::new());
        }
        self.inner
            .prefetches
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        tracing::debug!(qname = %name, qtype = %question.qtype, "prefetch");
        let lead = Lead::new(&self.inner, question, name, key);
        drop(runtime.spawn(async move {
            let _ = lead.run().await;
        }));
        true
    }

    /// Background refreshes started by [`Resolver::prefetch`] since start.
    pub fn prefetches(&self) -> u64 {
        self.inner
            .prefetches
            .load(std::sync::atomic::Ordering::Relaxed)
    }

    /// How often each work limit was hit since start: every [`Limit`], zeros included.
    pub fn limit_hits(&self) -> Vec<(Limit, u64)> {
        let mut hits = self.inner.limit_hits.snapshot();
        // Counted by the store itself: it is filled after validation, outside any `Work`.
        let evictions = self
            .inner
            .validator
            .as_ref()
            .map_or(0, Validator::aggressive_evictions);
        for (limit, count) in &mut hits {
            if *limit == Limit::AggressiveNsecBytes {
                *count += evictions;
            }
        }
        hits
    }

    /// The configuration in force.
    pub fn config(&self) -> &ResolverConfig {
        &self.inner.config
    }

    /// This resolver's upstream TCP connections (its engine's pool).
    #[cfg(test)]
    pub(crate) fn tcp_pool(&self) -> &crate::tcp_pool::TcpPool {
        match &self.inner.engine {
            Engine::Recursive(recursor) => recursor.tcp_pool(),
            Engine::Forward(forwarder) => forwarder.tcp_pool(),
        }
    }

    /// Resolves a question that missed the cache; the answer is inserted into the cache (if
    /// cacheable) and returned. Concurrent identical questions are resolved once.
    ///
    /// A fresh cache entry (one stored since the caller looked) is returned as is, and a
    /// failure seen for the same question within `CacheConfig::servfail_ttl` seconds is
    /// returned again without asking upstream (RFC 9520).
    ///
    /// The first asker runs the resolution inside its own future (no task, no channel when
    /// nobody else asks); later askers of the same question wait for its result. If the
    /// first asker gives up (its future is dropped), the resolution is moved to a task of its
    /// own and finishes there, so the others still get the answer and the cache is filled.
    pub async fn resolve(&self, question: &Question) -> Result<Arc<CachedAnswer>, ResolveError> {
        let name = lower(&question.name);
        let key_ref = key_of(question, &name);
        loop {
            let now = self.inner.clock.unix_seconds();
            if let Some((entry, Freshness::Fresh)) = self.inner.cache.get(&key_ref, now) {
                return Ok(entry);
            }
            let key = key_ref.to_owned_key();
            if let Some(error) = self.inner.recent_failure(&key, now) {
                tracing::debug!(qname = %question.name, qtype = %question.qtype, %error, "recent failure remembered");
                return Err(error);
            }
            let waiting = {
                let mut in_flight = lock(&self.inner.in_flight);
                match in_flight.get_mut(&key) {
                    Some(waiters) => {
                        let (sender, receiver) = oneshot::channel();
                        waiters.push(sender);
                        Some(receiver)
                    }
                    None => {
                        in_flight.insert(key.clone(), Vec::new());
                        None
                    }
                }
            };
            match waiting {
                Some(receiver) => match receiver.await {
                    Ok(result) => return result,
                    // The resolution ended without a result (it panicked, or its task was
                    // cancelled at shutdown): look again, and take over if still needed.
                    Err(_) => continue,
                },
                None => {
                    let lead = Lead::new(&self.inner, question, name, key);
                    return DetachOnDrop::new(lead.run()).await;
                }
            }
        }
    }
}

/// The cache key of `question`, whose name lower-cased is `name`.
fn key_of<'a>(question: &Question, name: &'a Name<Bytes>) -> CacheKeyRef<'a> {
    CacheKeyRef {
        name: name.as_slice(),
        qtype: question.qtype.to_int(),
        qclass: question.qclass.to_int(),
        dnssec_ok: question.dnssec_ok,
    }
}

/// The resolution of one question by its first asker: runs it, then hands the result to the
/// askers that came later.
struct Lead {
    inner: Arc<Inner>,
    /// The question, name lower-cased.
    question: Question,
    key: CacheKey,
}

impl Lead {
    /// The lead of `question`, whose name lower-cased is `name`.
    fn new(inner: &Arc<Inner>, question: &Question, name: Name<Bytes>, key: CacheKey) -> Self {
        Self {
            inner: inner.clone(),
            question: Question {
                name,
                ..question.clone()
            },
            key,
        }
    }

    async fn run(self) -> Result<Arc<CachedAnswer>, ResolveError> {
        // Removes the in-flight entry however this ends; if it ends without a result, the
        // waiters' senders are dropped with it and they look again.
        let guard = InFlightGuard {
            inner: &self.inner,
            key: &self.key,
        };
        let result = self.inner.run(&self.question, &self.key).await;
        let waiters = guard.finish();
        for waiter in waiters {
            let _ = waiter.send(result.clone());
        }
        result
    }
}

/// A resolution polled in place; if dropped before it completes, the rest of it runs in a
/// task of its own (when a runtime is there to take it). A panic inside it is caught and
/// becomes an internal error for this asker (as when the resolution ran in a task of its
/// own), and the in-flight entry is removed so that the others look again.
struct DetachOnDrop<F>
where
    F: Future<Output = Shared> + Send + 'static,
{
    future: Option<Pin<Box<F>>>,
}

impl<F> DetachOnDrop<F>
where
    F: Future<Output = Shared> + Send + 'static,
{
    fn new(future: F) -> Self {
        Self {
            future: Some(Box::pin(future)),
        }
    }
}

impl<F> Future for DetachOnDrop<F>
where
    F: Future<Output = Shared> + Send + 'static,
{
    type Output = Shared;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Shared> {
        let Some(future) = self.future.as_mut() else {
            return Poll::Pending;
        };
        let polled =
            std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| future.as_mut().poll(cx)));
        let output = match polled {
            Ok(Poll::Pending) => return Poll::Pending,
            Ok(Poll::Ready(output)) => output,
            Err(_) => Err(ResolveError::Internal(
                "resolution task ended without a result".into(),
            )),
        };
        // Done (or broken): nothing is left to detach.
        self.future = None;
        Poll::Ready(output)
    }
}

impl<F> Drop for DetachOnDrop<F>
where
    F: Future<Output = Shared> + Send + 'static,
{
    fn drop(&mut self) {
        if let Some(future) = self.future.take() {
            if let Ok(handle) = tokio::runtime::Handle::try_current() {
                drop(handle.spawn(future));
            }
        }
    }
}

impl Inner {
    /// Resolves `question` (name lower-cased) and stores the answer under `key`.
    async fn run(
        &self,
        question: &Question,
        key: &CacheKey,
    ) -> Result<Arc<CachedAnswer>, ResolveError> {
        if question.qclass != Class::IN {
            return Err(ResolveError::Internal(format!(
                "class {} is not resolved",
                question.qclass
            )));
        }
        let started = Instant::now();
        // The one deadline: every upstream exchange waits at most until it (see
        // `upstream::attempt_deadline`) and nothing else waits, so no timer of its own is
        // needed around the whole resolution.
        let deadline = started + self.config.resolution_deadline;
        let mut work = Work::new(deadline);
        let name = &question.name;
        // RFC 8198: a name a validated cached NSEC/NSEC3 range proves absent, or one a cached
        // wildcard expansion covers, is not asked.
        if let Some(outcome) = self
            .validator
            .as_ref()
            .and_then(|v| v.synthesise(name, question.qtype))
        {
            tracing::debug!(qname = %name, qtype = %question.qtype, rcode = %outcome.rcode, "answer synthesised from the validated cache (RFC 8198)");
            let now = self.clock.unix_seconds();
            let mut entry = answer::build(question, &outcome, now, self.cache.config())?;
            let security = self.validator.as_ref().map_or(Security::Secure, |v| {
                v.root_key_sentinel(name, question.qtype, Security::Secure)
            });
            let bogus_ttl = self.validator.as_ref().map_or(0, Validator::bogus_ttl);
            entry.set_security(security, bogus_ttl);
            let entry = Arc::new(entry);
            self.cache.insert(key.clone(), entry.clone());
            return Ok(entry);
        }
        let outcome = match &self.engine {
            Engine::Recursive(recursor) => {
                recursor
                    .resolve(name.clone(), question.qtype, 0, &mut work)
                    .await
            }
            // Boxed so that the recursive mode's state does not carry the forwarder's.
            Engine::Forward(forwarder) => Box::pin(forwarder.forward(question, &mut work)).await,
        };
        self.limit_hits.record(&work.limits_hit);
        let outcome = match outcome {
            Err(_) if Instant::now() >= deadline => Err(ResolveError::Timeout),
            other => other,
        };
        tracing::debug!(
            qname = %name,
            qtype = %question.qtype,
            upstream_queries = work.upstream_queries,
            elapsed_ms = started.elapsed().as_millis() as u64,
            ok = outcome.is_ok(),
            "resolution finished"
        );
        let now = self.clock.unix_seconds();
        match outcome {
            Ok(outcome) => {
                let stripped = work.answered_by.is_some_and(|server| {
                    self.config
                        .dnssec
                        .forwarders_without_dnssec
                        .contains(&server)
                });
                let (outcome, security) = match &self.validator {
                    // An upstream that strips DNSSEC: nothing to validate.
                    Some(_) if stripped => (outcome, Security::Insecure),
                    Some(validator) => {
                        let (outcome, security) = self
                            .validate(validator, question, outcome, &mut work, deadline)
                            .await;
                        let security = validator.root_key_sentinel(name, question.qtype, security);
                        (outcome, security)
                    }
                    None => (outcome, Security::Unchecked),
                };
                let now = self.clock.unix_seconds();
                let bogus_ttl = self.validator.as_ref().map_or(0, Validator::bogus_ttl);
                let mut entry = answer::build(question, &outcome, now, self.cache.config())?;
                entry.set_security(security, bogus_ttl);
                entry.set_name_servers(std::mem::take(&mut work.name_servers));
                let entry = Arc::new(entry);
                self.cache.insert(key.clone(), entry.clone());
                Ok(entry)
            }
            Err(error) => {
                self.remember_failure(key.clone(), &error, now);
                Err(error)
            }
        }
    }

    /// Validates `outcome`; when it is bogus, asks the zones' other servers again (design
    /// 0012, "Bogus data: other servers"): the servers that answered in signed territory are
    /// avoided for the rest of this query, the bogus chain-of-trust states above the name
    /// are forgotten, and the question is resolved again with the same `work` budget, at
    /// most `MAX_BOGUS_RETRIES` times and with one verification budget for all rounds.
    async fn validate(
        &self,
        validator: &Validator,
        question: &Question,
        mut outcome: Outcome,
        work: &mut Work,
        deadline: Instant,
    ) -> (Outcome, Security) {
        let name = &question.name;
        let mut fetch_work = Work::new(deadline);
        let mut budget = Budget::default();
        let mut retries = 0;
        let result = loop {
            let mut fetcher = EngineFetcher {
                engine: &self.engine,
                work: &mut fetch_work,
            };
            let security = validator
                .validate(name, question.qtype, &outcome, &mut fetcher, &mut budget)
                .await;
            tracing::debug!(qname = %name, qtype = %question.qtype, security = ?security, "validated");
            let Engine::Recursive(recursor) = &self.engine else {
                validator.remember_denial(question.qtype, &outcome, &security);
                break (outcome, security);
            };
            let blamed: Vec<(Name<Bytes>, SocketAddr)> =
                if security.bogus().is_some() && retries < MAX_BOGUS_RETRIES && !budget.exhausted()
                {
                    // Blame only the servers that supplied what failed (design 0019): a bogus
                    // chain of trust (a DS or DNSKEY set) blames the referrals and the key
                    // fetches, bogus answer data the servers that answered the question. A
                    // server that gave good keys for data another server forged is not blamed:
                    // it is the one to ask next.
                    let chain = validator.chain_bogus(name);
                    work.responders
                        .iter()
                        .filter(|responder| responder.referral == chain)
                        .chain(fetch_work.responders.iter().filter(|_| chain))
                        .filter(|r| validator.covers(&r.zone) && !work.avoid.contains(&r.server))
                        .fold(Vec::new(), |mut blamed, r| {
                            if !blamed.iter().any(|(_, s)| *s == r.server) {
                                blamed.push((r.zone.clone(), r.server));
                            }
                            blamed
                        })
                } else {
                    Vec::new()
                };
            work.avoid.extend(blamed.iter().map(|(_, server)| *server));
            // Only worth a round when a blamed zone has a server not avoided yet.
            if !blamed
                .iter()
                .any(|(zone, _)| recursor.has_other_servers(zone, &work.avoid))
            {
                validator.remember_denial(question.qtype, &outcome, &security);
                break (outcome, security);
            }
            retries += 1;
            tracing::debug!(qname = %name, qtype = %question.qtype, ?blamed, retries, "bogus: asking other servers");
            fetch_work.avoid.clone_from(&work.avoid);
            work.responders.clear();
            fetch_work.responders.clear();
            work.name_servers = crate::cache::NameServers::default();
            validator.forget_bogus(name);
            recursor.forget_referral_ds(name);
            match recursor
                .resolve(name.clone(), question.qtype, 0, work)
                .await
            {
                Ok(next) => outcome = next,
                // No better answer to be had: the bogus one stands.
                Err(_) => break (outcome, security),
            }
        };
        // The validation's own fetches count against the limits too (the answer's are
        // recorded by the caller).
        self.limit_hits.record(&fetch_work.limits_hit);
        result
    }

    fn recent_failure(&self, key: &CacheKey, now: u64) -> Option<ResolveError> {
        let failures = lock(&self.failures);
        failures
            .get(key)
            .filter(|(_, until)| *until > now)
            .map(|(error, _)| error.clone())
    }

    fn remember_failure(&self, key: CacheKey, error: &ResolveError, now: u64) {
        if matches!(error, ResolveError::Internal(_)) {
            return;
        }
        let ttl = self.cache.config().servfail_ttl;
        if ttl == 0 {
            return;
        }
        let max = table_bound(self.config.limits.remembered_failures);
        let mut failures = lock(&self.failures);
        if failures.len() >= max {
            failures.retain(|_, (_, until)| *until > now);
            if failures.len() >= max {
                failures.clear();
            }
        }
        failures.insert(key, (error.clone(), now + u64::from(ttl)));
    }
}

/// The validator's way to ask for DS, DNSKEY and SOA records: the engine in use, with a
/// work budget of its own (the client query's deadline).
struct EngineFetcher<'a> {
    engine: &'a Engine,
    work: &'a mut Work,
}

impl Fetcher for EngineFetcher<'_> {
    fn fetch(
        &mut self,
        name: Name<Bytes>,
        rtype: Rtype,
    ) -> crate::dnssec::BoxFuture<'_, Result<Outcome, ResolveError>> {
        Box::pin(async move {
            match self.engine {
                Engine::Recursive(recursor) => {
                    if rtype == Rtype::DS {
                        if let Some(outcome) = recursor.referral_ds(&name) {
                            return Ok(outcome);
                        }
                    }
                    recursor.resolve(name, rtype, 0, self.work).await
                }
                Engine::Forward(forwarder) => {
                    let question = Question {
                        name,
                        qtype: rtype,
                        qclass: Class::IN,
                        dnssec_ok: true,
                        checking_disabled: true,
                    };
                    forwarder.forward(&question, self.work).await
                }
            }
        })
    }

    fn known_cut(&self, name: &Name<Bytes>) -> Option<Name<Bytes>> {
        match self.engine {
            Engine::Recursive(recursor) => Some(recursor.known_cut(name)),
            Engine::Forward(_) => None,
        }
    }
}

/// Removes a question from the in-flight map when its resolution ends (even by panic or
/// cancellation), so a later asker starts afresh.
struct InFlightGuard<'a> {
    inner: &'a Inner,
    key: &'a CacheKey,
}

impl InFlightGuard<'_> {
    /// Removes the entry and returns the askers waiting for the result.
    fn finish(self) -> Vec<oneshot::Sender<Shared>> {
        let waiters = lock(&self.inner.in_flight)
            .remove(self.key)
            .unwrap_or_default();
        std::mem::forget(self);
        waiters
    }
}

impl Drop for InFlightGuard<'_> {
    fn drop(&mut self) {
        lock(&self.inner.in_flight).remove(self.key);
    }
}

pub(crate) fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    match mutex.lock() {
        Ok(guard) => guard,
        Err(poisoned) => poisoned.into_inner(),
    }
}

/// Compile-time check: one resolver is shared by every worker thread and runtime.
fn _assert_send_sync() {
    fn check<T: Send + Sync>() {}
    check::<Resolver>();
}
