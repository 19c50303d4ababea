//! Hook points for the parts of the pipeline that land later: the jurisdiction classifier
//! (juris-geo) and the policy engine (juris-policy). Each function below is called from
//! exactly one place in [`crate::pipeline`], marked `HOOK:`; today they allow everything.
//!
//! ```text
//!  parse ─► classify(ctx) ─► check_query(query, jurisdiction) ─► cache / resolve
//!                                                                   │
//!                         respond ◄─ check_answer(answer, jurisdiction) ◄┘
//! ```
//! A blocking verdict is expected to be rendered with [`crate::synth::ResponseBuilder`]
//! (RCODE + SOA in authority + EDE 16 with the order in EXTRA-TEXT, or structured JSON when
//! [`crate::query::Edns::wants_structured_errors`] is set).

use juris_resolver::cache::CachedAnswer;

use crate::pipeline::ClientContext;
use crate::query::Query;

/// The client's jurisdiction. Placeholder until juris-geo provides the real type (country,
/// decided by listener pin, trusted ECS, GeoIP or unknown).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ClientJurisdiction {
    /// Not decided (only global orders apply).
    Unknown,
}

/// What the policy says about a query or an answer. Placeholder until juris-policy lands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    /// Answer normally.
    Allow,
}

/// HOOK: classify the client (listener pin → trusted ECS in `ctx.client_subnet` → GeoIP on
/// `ctx.client` → unknown).
#[inline]
pub(crate) fn classify(_ctx: &ClientContext) -> ClientJurisdiction {
    ClientJurisdiction::Unknown
}

/// HOOK: policy check on the query name and type, before the cache.
#[inline]
pub(crate) fn check_query(_query: &Query<'_>, _jurisdiction: ClientJurisdiction) -> Verdict {
    Verdict::Allow
}

/// HOOK: policy check on the answer (its `cname_targets()` and `addresses()`), after the
/// cache or the resolver, before rendering. Both paths go through here.
#[inline]
pub(crate) fn check_answer(_answer: &CachedAnswer, _jurisdiction: ClientJurisdiction) -> Verdict {
    Verdict::Allow
}
