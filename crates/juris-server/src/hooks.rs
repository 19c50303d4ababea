//! Where jurisdiction and policy plug into the pipeline. Each hook is called from exactly one
//! place in [`crate::pipeline`], marked `HOOK:`.
//!
//! ```text
//!  parse ─► classify(ctx) ─► withdrawn? ─► check_query(qname) ─► cache / resolve
//!                                                                   │
//!              respond ◄─ check_answer(CNAME targets, addresses) ◄──┘
//! ```
//! A block is rendered by [`crate::block::write_block`]. Nothing here allocates unless an
//! order matched (then the verdict, the counters and the EDE text do).

use std::net::IpAddr;

use juris_geo::{CountryCode, Jurisdiction};
use juris_policy::{Block, CompiledPolicy, Country, Match, Verdict};
use juris_resolver::cache::CachedAnswer;

use crate::block::Trigger;
use crate::pipeline::ClientContext;
use crate::policy::{policy_country, PolicyEngine, PolicyHandle};

/// HOOK: classify the client: listener pin → trusted ECS → GeoIP on the source → unknown
/// (juris-geo decides; the ECS option is ignored unless the source is a trusted forwarder).
#[inline]
pub(crate) fn classify(
    engine: &PolicyEngine,
    pins: &[Option<CountryCode>],
    context: &ClientContext,
) -> Jurisdiction {
    let pin = pins.get(context.listener).copied().flatten();
    let ecs = context
        .client_subnet
        .map(|subnet| (subnet.address, subnet.source_prefix));
    engine.classifier.classify(context.client.ip(), pin, ecs)
}

/// HOOK: whether service is withdrawn in the client's jurisdiction.
#[inline]
pub(crate) fn withdrawn(policy: &PolicyHandle, jurisdiction: &Jurisdiction) -> Option<CountryCode> {
    jurisdiction
        .country
        .filter(|country| policy.is_withdrawn(*country))
}

/// HOOK: policy on the query name, before the cache. Counts what matched.
#[inline]
pub(crate) fn check_query(
    engine: &PolicyEngine,
    policy: &CompiledPolicy,
    query_name: &[u8],
    jurisdiction: &Jurisdiction,
    now: jiff::Timestamp,
) -> Option<Box<Block>> {
    let country = policy_country(jurisdiction.country);
    count(engine, policy.check_name(query_name, country, now), country)
}

/// HOOK: policy on the answer, after the cache or the resolver: every CNAME/DNAME target by
/// name, then every A/AAAA address (only `ip` targets of orders with `block_addresses`
/// match). The first block wins. Counts what matched.
#[inline]
pub(crate) fn check_answer(
    engine: &PolicyEngine,
    policy: &CompiledPolicy,
    answer: &CachedAnswer,
    jurisdiction: &Jurisdiction,
    now: jiff::Timestamp,
) -> Option<(Box<Block>, Trigger)> {
    let country = policy_country(jurisdiction.country);
    for target in answer.cname_targets() {
        if let Some(block) = count(engine, policy.check_name(target, country, now), country) {
            return Some((block, Trigger::CnameTarget));
        }
    }
    for address in answer.addresses() {
        let address: IpAddr = *address;
        if let Some(block) = count(engine, policy.check_address(address, country, now), country) {
            return Some((block, Trigger::Address));
        }
    }
    None
}

#[inline]
fn count(engine: &PolicyEngine, verdict: Verdict, country: Option<Country>) -> Option<Box<Block>> {
    match verdict {
        Verdict::Allow { shadow } => {
            count_shadow(engine, &shadow, country);
            None
        }
        Verdict::Block(block) => {
            engine.counters.blocked(&block.fired.order.id, country);
            count_shadow(engine, &block.shadow, country);
            Some(block)
        }
    }
}

#[inline]
fn count_shadow(engine: &PolicyEngine, shadow: &[Match], country: Option<Country>) {
    for matched in shadow {
        engine.counters.shadow(&matched.order.id, country);
    }
}
