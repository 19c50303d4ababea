//! Where jurisdiction and policy plug into the pipeline. Each hook is called from exactly one
//! place in [`crate::pipeline`], marked `HOOK:` (which explain runs too, with a recording
//! [`Tally`]), and classify/withdrawn also from [`crate::explain`]'s address explanation.
//!
//! ```text
//!  parse ─► classify(ctx) ─► withdrawn? ─► check_query(qname) ─► cache / resolve
//!                                                                   │
//!              respond ◄─ check_answer(CNAME targets, addresses, name servers) ◄──┘
//! ```
//! A block is rendered by [`crate::block::write_block`]. Nothing here allocates unless an
//! order matched (then the verdict, the counters and the EDE text do).

use std::net::IpAddr;
use std::sync::Arc;

use juris_geo::{CountryCode, Jurisdiction};
use juris_policy::{Block, CompiledPolicy, Country, Match, Verdict};
use juris_resolver::cache::CachedAnswer;

use crate::block::Trigger;
use crate::pipeline::ClientContext;
use crate::policy::{policy_country, OrderCounters, PolicyEngine, PolicyHandle};

/// Where the hooks report what they decided. A real query counts ([`OrderCounters`]: blocks
/// and shadow matches per order × jurisdiction, refusals per withdrawn jurisdiction); explain
/// records instead (`crate::explain`), so explaining never moves the counters. Both go
/// through the same hooks, in the same order.
pub(crate) trait Tally {
    /// A query refused because service is withdrawn in `country`.
    fn withdrawn(&self, country: CountryCode);
    /// A block: the order that fired, on which part of the query or answer.
    fn blocked(&self, block: &Block, trigger: Trigger, country: Option<Country>);
    /// A shadow order that would have blocked.
    fn shadow(&self, matched: &Match, country: Option<Country>);
    /// The client's jurisdiction, once decided (a real query needs nothing here).
    #[inline]
    fn classified(&self, _jurisdiction: &Jurisdiction) {}
    /// The policy the query is judged by (a real query needs nothing here).
    #[inline]
    fn consulted(&self, _policy: &Arc<CompiledPolicy>) {}
    /// The answer came from the cache (or a worker's hot answers).
    #[inline]
    fn answered_from_cache(&self) {}
    /// Whether the query may cause resolution (a prefetch); explain resolves nothing.
    #[inline]
    fn resolves(&self) -> bool {
        true
    }
}

impl Tally for OrderCounters {
    #[inline]
    fn withdrawn(&self, country: CountryCode) {
        OrderCounters::withdrawn(self, country);
    }

    #[inline]
    fn blocked(&self, block: &Block, _trigger: Trigger, country: Option<Country>) {
        OrderCounters::blocked(self, &block.fired.order.id, country);
    }

    #[inline]
    fn shadow(&self, matched: &Match, country: Option<Country>) {
        OrderCounters::shadow(self, &matched.order.id, country);
    }
}

/// HOOK: classify the client: listener pin → trusted ECS → GeoIP on the source → unknown
/// (juris-geo decides; the ECS option is ignored unless the source is a trusted forwarder).
/// `pins` holds the country pin of each listener index.
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

/// HOOK: whether service is withdrawn in the client's jurisdiction. Counts the refusal.
#[inline]
pub(crate) fn withdrawn(
    tally: &impl Tally,
    policy: &PolicyHandle,
    jurisdiction: &Jurisdiction,
) -> Option<CountryCode> {
    let country = jurisdiction
        .country
        .filter(|country| policy.is_withdrawn(*country))?;
    tally.withdrawn(country);
    Some(country)
}

/// HOOK: policy on the query name, before the cache. Counts what matched.
#[inline]
pub(crate) fn check_query(
    tally: &impl Tally,
    policy: &CompiledPolicy,
    query_name: &[u8],
    jurisdiction: &Jurisdiction,
    now: jiff::Timestamp,
) -> Option<Box<Block>> {
    let country = policy_country(jurisdiction.country);
    let verdict = policy.check_name(query_name, country, now);
    count(tally, verdict, Trigger::QueryName, country)
}

/// One check the answer hook makes on an answer: what it looks at, for which trigger.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AnswerCheck<'a> {
    /// A CNAME/DNAME target, by name (wire form).
    CnameTarget(&'a [u8]),
    /// An A/AAAA address (only `ip` targets of orders with `block_addresses` match).
    Address(IpAddr),
    /// The NS name of a server that answered (`nsdname` targets).
    NameServer(&'a [u8]),
    /// The address of a server that answered (`nsip` targets).
    NameServerAddress(IpAddr),
}

impl AnswerCheck<'_> {
    /// The trigger a block by this check reports.
    pub fn trigger(&self) -> Trigger {
        match self {
            AnswerCheck::CnameTarget(_) => Trigger::CnameTarget,
            AnswerCheck::Address(_) => Trigger::Address,
            AnswerCheck::NameServer(_) => Trigger::NameServer,
            AnswerCheck::NameServerAddress(_) => Trigger::NameServerAddress,
        }
    }

    /// The policy's verdict on this check for a client in `country`.
    #[inline]
    pub fn verdict(
        &self,
        policy: &CompiledPolicy,
        country: Option<Country>,
        now: jiff::Timestamp,
    ) -> Verdict {
        match *self {
            AnswerCheck::CnameTarget(name) => policy.check_name(name, country, now),
            AnswerCheck::Address(address) => policy.check_address(address, country, now),
            AnswerCheck::NameServer(name) => policy.check_name_server(name, country, now),
            AnswerCheck::NameServerAddress(address) => {
                policy.check_name_server_address(address, country, now)
            }
        }
    }
}

/// The checks the answer hook makes on `answer`, in its order: every CNAME/DNAME target,
/// every A/AAAA address, then (when `name_servers`) the NS names and addresses of the
/// authoritative servers that answered (kept with the cache entry).
pub fn answer_checks(
    answer: &CachedAnswer,
    name_servers: bool,
) -> impl Iterator<Item = AnswerCheck<'_>> {
    let servers = answer.name_servers();
    let (ns_names, ns_addresses) = if name_servers {
        (servers.names(), servers.addresses())
    } else {
        (&[][..], &[][..])
    };
    let targets = answer.cname_targets().iter();
    targets
        .map(|name| AnswerCheck::CnameTarget(name))
        .chain(answer.addresses().iter().map(|a| AnswerCheck::Address(*a)))
        .chain(ns_names.iter().map(|name| AnswerCheck::NameServer(name)))
        .chain(
            ns_addresses
                .iter()
                .map(|a| AnswerCheck::NameServerAddress(*a)),
        )
}

/// HOOK: policy on the answer, after the cache or the resolver: the [`answer_checks`] in
/// order (the name-server checks only when the policy has `nsdname`/`nsip` targets; RPZ's
/// NSDNAME/NSIP). The first block wins. Counts what matched.
#[inline]
pub(crate) fn check_answer(
    tally: &impl Tally,
    policy: &CompiledPolicy,
    answer: &CachedAnswer,
    jurisdiction: &Jurisdiction,
    now: jiff::Timestamp,
) -> Option<(Box<Block>, Trigger)> {
    let country = policy_country(jurisdiction.country);
    answer_checks(answer, policy.has_name_server_triggers()).find_map(|check| {
        let verdict = check.verdict(policy, country, now);
        count(tally, verdict, check.trigger(), country).map(|block| (block, check.trigger()))
    })
}

#[inline]
fn count(
    tally: &impl Tally,
    verdict: Verdict,
    trigger: Trigger,
    country: Option<Country>,
) -> Option<Box<Block>> {
    match verdict {
        Verdict::Allow { shadow } => {
            count_shadow(tally, &shadow, country);
            None
        }
        Verdict::Block(block) => {
            tally.blocked(&block, trigger, country);
            count_shadow(tally, &block.shadow, country);
            Some(block)
        }
    }
}

#[inline]
fn count_shadow(tally: &impl Tally, shadow: &[Match], country: Option<Country>) {
    for matched in shadow {
        tally.shadow(matched, country);
    }
}
