//! juris-server: the listeners (UDP with `recvmmsg`/`sendmmsg` batching, TCP) and the query
//! pipeline every transport shares.
//!
//! ```text
//!  UDP worker threads (SO_REUSEPORT, one socket each per address) ─┐
//!  TCP connections (tokio, RFC 7766 pipelining) ────────────────────┤
//!                                                                   ▼
//!   Pipeline::handle: access list → parse (header, question, EDNS) → screening
//!     → HOOK classify client → HOOK policy on the name → ANY (RFC 8482)
//!     → AnswerCache::get ── fresh ──► HOOK policy on the answer → render (ID, case, TTLs,
//!                      │                                           OPT, EDE, TC) → respond
//!                      └─ miss/stale ─► tokio: Resolver::resolve → same render
//!                                        error → SERVFAIL + EDE, or stale + EDE 3
//! ```
//!
//! Modules: [`query`] parses (public for the fuzz target), [`synth`] writes responses
//! (reused by the policy engine for blocked answers), [`error_map`] is the one place that
//! maps failures to RCODE + EDE, [`pipeline`] ties them together, [`hooks`] marks where
//! jurisdiction and policy plug in.
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
pub mod config;
pub mod counters;
pub mod error_map;
pub mod hooks;
pub mod pipeline;
pub mod query;
mod server;
pub mod synth;
mod sys;
mod tcp;
mod udp;

pub use config::{default_allow_list, DeniedAction, ListenerConfig, ServerConfig};
pub use counters::ServerStats;
pub use pipeline::{ClientContext, Outcome, Pipeline, Transport};
pub use query::{parse_query, ParseConfig, ParseError, Query};
pub use server::{start, BoundListener, RunningServer, ServerError, ShutdownHandle};
