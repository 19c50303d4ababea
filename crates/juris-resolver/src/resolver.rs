//! Public face of the resolver. The recursion and forwarding engines live in sibling modules.

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use domain::base::{iana::Class, Name, Rtype};

use crate::cache::{AnswerCache, CachedAnswer};
use crate::clock::SharedClock;

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

/// Hard limits on the work one client query may cause (loops, amplification).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Limits {
    /// Referrals followed for one name.
    pub max_referrals: u32,
    /// CNAME/DNAME links followed.
    pub max_cname_chain: u32,
    /// Sub-lookups for name server addresses (glueless delegations).
    pub max_ns_lookups: u32,
    /// Upstream queries sent in total on behalf of one client query.
    pub max_upstream_queries: u32,
    /// Nesting depth of sub-lookups (NS address lookups that need NS address lookups...).
    pub max_depth: u32,
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            max_referrals: 30,
            max_cname_chain: 12,
            max_ns_lookups: 16,
            max_upstream_queries: 64,
            max_depth: 6,
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
}

impl Default for ResolverConfig {
    fn default() -> Self {
        Self {
            mode: Mode::Forward {
                upstreams: Vec::new(),
            },
            qname_minimisation: true,
            edns_buffer_size: 1232,
            query_timeout: Duration::from_millis(800),
            resolution_deadline: Duration::from_secs(10),
            limits: Limits::default(),
            ipv4: true,
            ipv6: true,
            allow_loopback_upstreams: false,
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
    LimitExceeded(&'static str),
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

/// Problems constructing a resolver.
#[derive(Debug, thiserror::Error)]
pub enum ResolverError {
    /// Recursive mode without root hints, forward mode without upstreams.
    #[error("{0}")]
    Config(&'static str),
}

/// The resolver: cheap to clone, shared by all listeners.
#[derive(Debug, Clone)]
pub struct Resolver {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    config: ResolverConfig,
    cache: Arc<AnswerCache>,
    clock: SharedClock,
}

impl Resolver {
    /// A resolver that stores its answers in `cache`.
    pub fn new(
        config: ResolverConfig,
        cache: Arc<AnswerCache>,
        clock: SharedClock,
    ) -> Result<Self, ResolverError> {
        match &config.mode {
            Mode::Recursive { root_hints } if root_hints.is_empty() => {
                return Err(ResolverError::Config("recursive mode needs root hints"))
            }
            Mode::Forward { upstreams } if upstreams.is_empty() => {
                return Err(ResolverError::Config(
                    "forward mode needs at least one upstream",
                ))
            }
            _ => {}
        }
        Ok(Self {
            inner: Arc::new(Inner {
                config,
                cache,
                clock,
            }),
        })
    }

    /// The answer cache this resolver fills.
    pub fn cache(&self) -> &Arc<AnswerCache> {
        &self.inner.cache
    }

    /// Resolves a question that missed the cache; the answer is inserted into the cache (if
    /// cacheable) and returned. Concurrent identical questions are resolved once.
    pub async fn resolve(&self, question: &Question) -> Result<Arc<CachedAnswer>, ResolveError> {
        // Placeholder until the recursion engine lands (issue #2).
        let _ = (&self.inner.config, &self.inner.clock, question);
        Err(ResolveError::Internal(
            "resolution engine not built yet".into(),
        ))
    }
}

/// Not yet used by the placeholder; kept for the engine.
#[allow(dead_code)] // reason: consumed by the recursion engine being written.
fn _assert_send_sync() {
    fn check<T: Send + Sync>() {}
    check::<Resolver>();
}
