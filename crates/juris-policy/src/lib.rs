//! # juris-policy: legal orders compiled into a jurisdiction-scoped matcher
//!
//! This crate turns **orders** (court injunctions, regulator orders, feed tickets, extensions,
//! operator security lists, client filters) into an immutable [`CompiledPolicy`] that the server
//! consults on every query. It is pure: no I/O, no clock (`now` is an argument), no sockets, no
//! SQL, so every decision can be replayed and property-tested.
//!
//! ```text
//!  JSON order ──serde──▶ Order ──validate()──▶ ValidatedOrder ──┐
//!  (issue #3 contract)   (as written)   IDNA, limits, TLD/PSL   │ compile()
//!                                       checks, ISO codes        ▼
//!                         ┌──────────────── CompiledPolicy (immutable, Send + Sync, Arc) ───────┐
//!                         │ base: reversed-label keys        com\0example\0www\0 → rules       │
//!                         │       Bloom filter ▸ hash buckets ▸ exact byte compare             │
//!                         │ overlay: small index + removals  (with_changes, ≤ ms)              │
//!                         │ addresses: prefix → rules        (ip targets, block_addresses)     │
//!                         │ orders: OrderInfo (state, jurisdiction bitset, times, notice)      │
//!                         └────────────────────────────────────────────────────────────────────┘
//!  server hot path: check_name(wire qname, Option<Country>, now) ──▶ Verdict::Allow | Block
//!                   check_address(ip, Option<Country>, now)      ──▶ Verdict
//!  explain:         explain_name / explain_address               ──▶ every match + why
//! ```
//!
//! Matching: a `domain` target matches exactly its name; a `subtree` target matches the name and
//! everything below it (`kickass.to` matches `www.kickass.to`, never `notkickass.to`); an `ip`
//! target matches answer addresses in its prefix, only for orders with `block_addresses`. Only
//! `active` orders block; `shadow` orders are reported for counting and never block; `draft`,
//! `suspended` and `lifted` never match. An order applies to a client only if the client's
//! country is in its jurisdictions (unknown country: global orders only), at or after
//! `effective_from`, before `expires_at`, and inside one of its `windows` if it has any.
//! The most specific target wins (longest name; exact before subtree at the same name); ties go
//! to the earliest `effective_from`, then the smallest order id. Every applicable match is
//! reported.
//!
//! ```
//! use juris_policy::{name_to_wire, BlockMeaning, CompileOptions, CompiledPolicy, Country, Order, ValidationOptions};
//!
//! let order = Order::from_json(br#"{
//!     "id": "IT-MI-2024-0001", "kind": "court_order", "authority": "Tribunale di Milano",
//!     "reference": "RG 12345/2024", "jurisdictions": ["IT"], "action": "nxdomain",
//!     "state": "active", "effective_from": "2024-05-01T00:00:00Z",
//!     "targets": [{"type": "subtree", "value": "kickasstorrents.to"}]
//! }"#)?;
//! let order = order.validate(&ValidationOptions::default())?;
//! let policy = CompiledPolicy::compile(&[order], &CompileOptions::default())?;
//!
//! let now: jiff::Timestamp = "2024-06-01T12:00:00Z".parse()?;
//! let qname = name_to_wire("www.kickasstorrents.to")?;
//! let italy: Country = "IT".parse()?;
//! let germany: Country = "DE".parse()?;
//!
//! let verdict = policy.check_name(&qname, Some(italy), now);
//! let block = verdict.block().expect("blocked in Italy");
//! assert_eq!(block.order().id, "IT-MI-2024-0001");
//! assert_eq!(block.meaning(), BlockMeaning::Censored);
//! assert!(!policy.check_name(&qname, Some(germany), now).is_block());
//! assert!(!policy.check_name(&qname, None, now).is_block());
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```
//!
//! # Limitations
//! - `nsdname` and `nsip` targets are checked with [`CompiledPolicy::check_name_server`] and
//!   [`CompiledPolicy::check_name_server_address`] against the servers that answered, which the
//!   caller supplies (the server keeps them with each cache entry); `nsdname` is exact (no
//!   wildcard form).
//! - The public-suffix check is a plug-in ([`PublicSuffixes`]); the crate itself refuses only
//!   single-label names (TLDs). The protected list (brief requirement 14) is not here yet.
//! - An `extension` is in force only while its parent (looked up by id in the same policy) is
//!   active and in force; its own jurisdictions decide where.
//! - `comply_by` is validated and reported, never enforced (it is a deadline for the operator).
//! - The name index hashes keys from a per-process secret seed (fast mixing, not a keyed PRF);
//!   answers stay exact whatever the hash does (a hit is always compared byte for byte). Memory
//!   per name grows with name length (≈ 6 B + the name); see `docs/performance.md`.

#![forbid(unsafe_code)]

mod country;
mod index;
mod name;
mod nameserver;
mod order;
mod policy;
mod validate;
mod verdict;

/// The instant type of every `now` argument (re-exported so callers use the same `jiff`).
pub use jiff::Timestamp;

pub use country::{Country, CountryError, CountrySet, EU_MEMBERS, ISO_3166_ALPHA2};
pub use name::{name_to_wire, normalize_name, wire_to_text, NameError};
pub use order::{
    Action, BlockMeaning, Notice, Order, OrderKind, OrderState, Override, Target, TargetKind,
    Transparency, Window,
};
pub use policy::{
    CompileError, CompileOptions, CompiledPolicy, OrderStats, OrderUpdate, PolicyChange,
    PolicyStats,
};
pub use validate::{
    NoPublicSuffixes, OrderInfo, Problem, PublicSuffixes, TargetValue, TimeStatus, ValidatedOrder,
    ValidatedTarget, ValidationError, ValidationErrors, ValidationOptions,
};
pub use verdict::{
    Block, ExplainedMatch, Explanation, Match, MatchStatus, MatchedTarget, ParentStatus, Verdict,
};
