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
#![deny(unsafe_code)]

pub mod cache;
pub mod clock;
mod resolver;
pub mod wire;

pub use resolver::{Limits, Mode, Question, ResolveError, Resolver, ResolverConfig};
