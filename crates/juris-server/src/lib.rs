//! juris-server: the listeners (UDP with `recvmmsg`/`sendmmsg` batching, TCP) and the query
//! pipeline every transport shares.
//!
//! ```text
//!  UDP worker threads (SO_REUSEPORT, one socket each per address) ─┐
//!  TCP connections (tokio, RFC 7766 pipelining) ────────────────────┤
//!                                                                   ▼
//!   Pipeline::handle: access list → parse (header, question, EDNS) → screening
//!     → HOOK classify client (juris-geo) → HOOK withdrawn? REFUSED + EDE 18
//!     → HOOK policy on the name (juris-policy) ── block ──► block::write_block → respond
//!     → ANY (RFC 8482)
//!     → AnswerCache::get ── fresh ──► HOOK policy on the answer (CNAME targets, addresses)
//!                      │               → block? synthesised : render (ID, case, TTLs, OPT, EDE, TC)
//!                      └─ miss/stale ─► task (UDP: the worker's own current-thread runtime;
//!                                        TCP: the shared runtime): Resolver::resolve → same check → same render
//!                                        error → SERVFAIL + EDE, or stale + EDE 3
//! ```
//!
//! Modules: [`codes`] defines every protocol number (RCODE, EDE, flags, option codes) once,
//! [`query`] parses (public for the fuzz target), [`cookie`] verifies and makes DNS cookies
//! (RFC 7873, RFC 9018), [`synth`] writes responses,
//! [`block`] writes blocked answers (RCODE per action, SOA, EDE with the order, structured
//! errors), [`error_map`] is the one place that maps failures (and blocks) to RCODE + EDE,
//! [`pipeline`] ties them together, [`hooks`] is where jurisdiction and policy plug in, and
//! [`policy`] holds the policy in force ([`PolicyHandle`], swapped atomically), the classifier
//! and the counters per order × jurisdiction ([`PolicyEngine`]). [`start`] runs without
//! orders; [`start_with_policy`] enforces an engine's policy.
//!
//! # Example
//! ```no_run
//! use std::sync::Arc;
//! use juris_resolver::cache::{AnswerCache, CacheConfig};
//! use juris_resolver::clock::{SharedClock, SystemClock};
//! use juris_resolver::{Mode, Resolver, ResolverConfig};
//! use juris_server::{start, ServerConfig};
//!
//! let clock: SharedClock = Arc::new(SystemClock);
//! let cache = Arc::new(AnswerCache::new(CacheConfig::default()));
//! let resolver = Resolver::new(
//!     ResolverConfig {
//!         mode: Mode::Forward { upstreams: vec!["127.0.0.1:5300".parse().unwrap()] },
//!         ..ResolverConfig::default()
//!     },
//!     cache,
//!     Arc::clone(&clock),
//! )
//! .unwrap();
//! let server = start(ServerConfig::default(), resolver, clock).unwrap();
//! let stop = server.shutdown_handle();
//! // e.g. from a signal handler thread: stop.trigger();
//! # stop.trigger();
//! server.wait();
//! ```
#![deny(unsafe_code)]

pub mod acl;
pub mod block;
pub mod codes;
pub mod config;
pub mod cookie;
pub mod counters;
pub mod error_map;
pub mod explain;
pub mod hooks;
pub mod hot;
pub mod kdrop;
pub mod observe;
pub mod pipeline;
pub mod policy;
pub mod proxy;
pub mod query;
pub mod ratelimit;
mod server;
pub mod stream;
pub mod synth;
mod sys;
mod tcp;
pub mod telemetry;
mod udp;

pub use config::{default_allow_list, DeniedAction, ListenerConfig, PolicySettings, ServerConfig};
pub use cookie::CookieConfig;
pub use counters::ServerStats;
pub use explain::{Arrival, Decision, ExplainQuery, Explanation, LiveCheck, Validation};
pub use hot::HotAnswers;
pub use pipeline::{ClientContext, Outcome, Pipeline, Transport};
pub use policy::{
    NotifyFn, NotifyReceiver, OrderCount, OrderCounters, PolicyEngine, PolicyHandle, WithdrawnCount,
};
pub use proxy::{ProxyError, ProxyTrust};
pub use query::{parse_query, ParseConfig, ParseError, Query};
pub use ratelimit::{PrefixRates, RateClass, RateLimitConfig, RateLimiter, Rates};
pub use server::{
    start, start_with_policy, wait_for_permits, BoundListener, RunningServer, ServerError,
    ShutdownHandle,
};
pub use sys::{lower_thread_priority, release_free_heap_memory, tune_allocator};
