//! juris-resolver: the answer cache, the iterative resolver and the forwarder.
//!
//! ```text
//!            ┌──────────────── Resolver::resolve(&Question) ────────────────┐
//!  miss ───► │ Mode::Recursive: delegation cache → server selection (SRTT) → │ ──► CachedAnswer
//!            │   upstream (UDP, TC→TCP) → referral / CNAME / negative ...    │     (inserted into
//!            │ Mode::Forward: upstreams with health tracking                 │      AnswerCache)
//!            └───────────────────────────────────────────────────────────────┘
//! ```
//!
//! The server looks in the [`cache::AnswerCache`] itself (synchronously, on the hot path) and
//! calls [`Resolver::resolve`] only on a miss. Every answer the resolver produces goes through
//! [`cache::CachedAnswer::from_message`], so hits and misses are rendered by the same code.
//!
//! # Example
//!
//! ```no_run
//! use std::sync::Arc;
//! use juris_resolver::cache::{AnswerCache, CacheConfig};
//! use juris_resolver::clock::SystemClock;
//! use juris_resolver::{builtin_root_hints, Mode, Question, Resolver, ResolverConfig};
//!
//! # async fn example() -> Result<(), Box<dyn std::error::Error>> {
//! let config = ResolverConfig {
//!     mode: Mode::Recursive { root_hints: builtin_root_hints() },
//!     ..ResolverConfig::default()
//! };
//! let cache = Arc::new(AnswerCache::new(CacheConfig::default()));
//! let resolver = Resolver::new(config, cache, Arc::new(SystemClock))?;
//! let question = Question {
//!     name: domain::base::Name::bytes_from_str("www.example.com.")?,
//!     qtype: domain::base::Rtype::A,
//!     qclass: domain::base::iana::Class::IN,
//!     dnssec_ok: false,
//!     checking_disabled: false,
//! };
//! let answer = resolver.resolve(&question).await?;
//! println!("{} bytes, {:?}", answer.len(), answer.kind());
//! # Ok(())
//! # }
//! ```
#![forbid(unsafe_code)]

mod answer;
pub mod cache;
pub mod clock;
mod delegation;
pub mod dnssec;
mod forwarder;
#[doc(hidden)]
pub mod fuzzing;
mod infra;
mod names;
mod outstanding;
mod recursor;
mod redirects;
mod referral_ds;
mod resolver;
mod root_hints;
pub mod tap;
mod tcp_pool;
mod udp_sockets;
mod upstream;
pub mod wire;

pub use resolver::{
    parse_size, FlushReport, Limit, Limits, LimitsError, LimitsProblem, Mode, Question,
    ResolveError, Resolver, ResolverConfig, ResolverError,
};
pub use root_hints::{builtin_root_hints, parse_root_hints, RootHintsError, BUILTIN_ROOT_HINTS};
pub use tcp_pool::upstream_tcp_counters;
