//! One explain: what a query gets, and why, through the real answer path.
//!
//! ```text
//!  ExplainQuery (a query message, client, transport, listener)
//!     └─► Pipeline::handle_counted — the same function every real query runs: access list,
//!         parse, screening, HOOK classify (listener pin → trusted ECS → GeoIP), HOOK withdrawn,
//!         HOOK policy on the name, ANY, cache → HOOK policy on the answer, response writers —
//!         with a Recorder as its Tally: nothing is counted, every decision is recorded, a
//!         miss is not resolved
//!     └─► CompiledPolicy::explain_name on the policy that judged it (every matching order,
//!         applicable or not, and why), at the pipeline clock's time
//!     └─► the answer cache's entry for the question (either DO variant): the validation
//!         state of the live answer (secure, insecure, bogus with its EDE, ...), if cached
//!  ─► Explanation { decision, jurisdiction, fired, matches, response, validation,
//!                   policy generation, now }
//! ```
//! `juris explain` (a pipeline with serve's configuration and orders, no sockets) and the admin
//! API's `/v1/explain` (the running server's pipeline) both call [`Pipeline::explain`];
//! [`Pipeline::explain_address`] answers the API's question about an answer address.

use std::cell::RefCell;
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;

use juris_geo::{CountryCode, Jurisdiction};
use juris_policy::{Block, CompiledPolicy, Country, ExplainedMatch, Match, Verdict};

use crate::block::Trigger;
use crate::codes::option_code;
use crate::counters::Counters;
use crate::hooks::{self, AnswerCheck, Tally};
use crate::pipeline::{ClientContext, Judge, Outcome, Pipeline, Transport};
use crate::query::{parse_query, ClientSubnet};
use juris_resolver::cache::CachedAnswer;
use juris_resolver::clock::timestamp;

/// Which listener an explained query arrives on (decides the listener pin).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Arrival {
    /// The configured listener with this index ([`crate::ServerConfig::listeners`]): its pin
    /// applies, if it has one.
    Listener(usize),
    /// A listener pinned to this country (`juris explain --country`, the API's `country`).
    Pinned(CountryCode),
    /// A listener without a pin.
    Unpinned,
}

/// A query to explain.
#[derive(Debug, Clone, Copy)]
pub struct ExplainQuery<'a> {
    /// The query message as a client sends it ([`Pipeline::query_packet`] writes one).
    pub packet: &'a [u8],
    /// The client's address.
    pub client: SocketAddr,
    /// The transport (UDP limits the response size).
    pub transport: Transport,
    /// The listener.
    pub arrival: Arrival,
}

/// What the pipeline decided.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Decision {
    /// The client is outside `server.allow`: REFUSED (or dropped) before anything else.
    Refused,
    /// The message is answered with an error before any policy (malformed, screened type or
    /// class: FORMERR, NOTIMP, REFUSED + EDE 21, ...).
    Rejected,
    /// Service is withdrawn in the client's jurisdiction: REFUSED + EDE 18.
    Withdrawn(CountryCode),
    /// An order blocks: on the query name, a CNAME target or an answer address.
    Blocked {
        /// What matched.
        trigger: Trigger,
        /// The order that fired, and its target.
        fired: Match,
    },
    /// Answered without resolving and unblocked (ANY, RFC 8482; or a clean cached answer).
    Answered,
    /// Allowed at the name: would be resolved (its CNAME targets and addresses are then
    /// checked by the same policy).
    Resolve,
    /// No answer would be sent.
    Dropped,
}

/// What a query gets, and why.
#[derive(Debug, Clone)]
pub struct Explanation {
    /// The pipeline clock's Unix seconds the query was judged at.
    pub now: u64,
    /// The client's jurisdiction and what decided it (classified even when the query was
    /// refused or rejected before classification; then it decided nothing).
    pub jurisdiction: Jurisdiction,
    /// The generation of the policy that judged the query (the one in force, if none did).
    pub policy_generation: u64,
    /// What the pipeline decided.
    pub decision: Decision,
    /// Every order whose targets match the query name (or the address), applicable or not.
    pub matches: Vec<ExplainedMatch>,
    /// The response that would be sent, when the pipeline answers without resolving.
    pub response: Option<Vec<u8>>,
    /// The DNSSEC validation state of the live answer to the question (the answer cache's
    /// entry), `None` when no answer is cached (or for an address).
    pub validation: Option<Validation>,
    /// The checks the answer hook makes on the live answer (CNAME/DNAME targets, addresses,
    /// the name servers that answered), each with the order that blocks it for this client;
    /// empty when no answer is cached (or for an address).
    pub checks: Vec<LiveCheck>,
}

/// One check of the live answer, as the answer hook makes it.
#[derive(Debug, Clone)]
pub struct LiveCheck {
    /// What a block by this check reports.
    pub trigger: Trigger,
    /// The name (absolute, presentation form) or address checked.
    pub subject: String,
    /// The order (and target) that blocks it for this client, if one does.
    pub fired: Option<Match>,
}

/// The DNSSEC validation state of a cached answer, as `explain` shows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Validation {
    /// `secure`, `insecure`, `bogus`, `indeterminate` (no chain of trust to it) or
    /// `unchecked` (not validated: validation off, or the answer of a CD=1 query).
    pub state: &'static str,
    /// The Extended DNS Error the answer carries for it: 6–12 for a bogus answer (then it is
    /// answered with SERVFAIL), 1 or 2 for one insecure only by an unsupported algorithm.
    pub ede: Option<u16>,
    /// The EDE's EXTRA-TEXT (a bogus answer's names the zone).
    pub text: Option<String>,
}

impl Validation {
    fn of(security: &juris_resolver::dnssec::Security) -> Self {
        let (ede, text) = if let Some(bogus) = security.bogus() {
            let ede = crate::error_map::for_bogus(bogus);
            (Some(ede.info_code), Some(ede.extra_text.to_owned()))
        } else if let Some(what) = security.unsupported() {
            (
                Some(crate::error_map::for_unsupported(what).info_code),
                None,
            )
        } else {
            (None, None)
        };
        Self {
            state: security.as_str(),
            ede,
            text,
        }
    }
}

impl Explanation {
    /// The order that decides the answer, for a block.
    pub fn fired(&self) -> Option<&Match> {
        match &self.decision {
            Decision::Blocked { fired, .. } => Some(fired),
            _ => None,
        }
    }
}

/// The explain side of [`Tally`]: records, counts nothing.
#[derive(Default)]
struct Recorder {
    jurisdiction: RefCell<Option<Jurisdiction>>,
    policy: RefCell<Option<Arc<CompiledPolicy>>>,
    withdrawn: RefCell<Option<CountryCode>>,
    blocked: RefCell<Option<(Trigger, Match)>>,
}

impl Tally for Recorder {
    fn resolves(&self) -> bool {
        false
    }

    fn withdrawn(&self, country: CountryCode) {
        *self.withdrawn.borrow_mut() = Some(country);
    }

    fn blocked(&self, block: &Block, trigger: Trigger, _country: Option<Country>) {
        self.blocked
            .borrow_mut()
            .get_or_insert_with(|| (trigger, block.fired.clone()));
    }

    fn shadow(&self, _matched: &Match, _country: Option<Country>) {}

    fn classified(&self, jurisdiction: &Jurisdiction) {
        *self.jurisdiction.borrow_mut() = Some(*jurisdiction);
    }

    fn consulted(&self, policy: &Arc<CompiledPolicy>) {
        *self.policy.borrow_mut() = Some(Arc::clone(policy));
    }
}

impl Pipeline {
    /// Explains `query`: runs it through the answer path every real query takes (nothing is
    /// counted, nothing resolved) at the pipeline clock's time, and lists every order matching
    /// its name.
    pub fn explain(&self, query: &ExplainQuery<'_>) -> Explanation {
        let now = self.now();
        let recorder = Recorder::default();
        let mut pinned = [None];
        let (pins, listener) = self.arrival_pins(query.arrival, &mut pinned);
        let judge = Judge {
            pins,
            tally: &recorder,
            limiter: None,
        };
        let context = ClientContext {
            client: query.client,
            transport: query.transport,
            listener,
            client_subnet: None,
        };
        let mut out = vec![0u8; 65_535];
        let outcome = self.handle_counted(
            query.packet,
            context,
            &mut out,
            &Counters::default(),
            now,
            None,
            &judge,
        );
        let Recorder {
            jurisdiction,
            policy,
            withdrawn,
            blocked,
        } = recorder;
        let classified = jurisdiction.into_inner();
        let policy = policy
            .into_inner()
            .unwrap_or_else(|| self.engine().policy.current());
        let (decision, response) = match outcome {
            Outcome::Respond(len) => {
                let decision = match (withdrawn.into_inner(), blocked.into_inner()) {
                    (Some(country), _) => Decision::Withdrawn(country),
                    (None, Some((trigger, fired))) => Decision::Blocked { trigger, fired },
                    (None, None) if !self.allows(query.client.ip()) => Decision::Refused,
                    (None, None) if classified.is_none() => Decision::Rejected,
                    (None, None) => Decision::Answered,
                };
                out.truncate(len);
                (decision, Some(out))
            }
            Outcome::Resolve(_) => (Decision::Resolve, None),
            Outcome::Drop => (Decision::Dropped, None),
        };
        let parsed = parse_query(query.packet, &self.parse_config()).ok();
        let jurisdiction = classified.unwrap_or_else(|| {
            let context = ClientContext {
                client_subnet: parsed.as_ref().and_then(|p| p.edns?.client_subnet),
                ..context
            };
            hooks::classify(self.engine(), pins, &context)
        });
        let live = parsed
            .as_ref()
            .and_then(|parsed| self.live_answer(parsed, now));
        let validation = live
            .as_ref()
            .map(|answer| Validation::of(answer.security()));
        let country = crate::policy::policy_country(jurisdiction.country);
        let checks = live.as_ref().map_or_else(Vec::new, |answer| {
            live_checks(&policy, answer, country, timestamp(now))
        });
        let matches = match &parsed {
            Some(parsed) => {
                let country = crate::policy::policy_country(jurisdiction.country);
                policy
                    .explain_name(parsed.name(), country, timestamp(now))
                    .matches
            }
            None => Vec::new(),
        };
        Explanation {
            now,
            jurisdiction,
            policy_generation: policy.generation(),
            decision,
            matches,
            response,
            validation,
            checks,
        }
    }

    /// The cached answer to `query`: its own DO variant's entry, else the other one's (both
    /// hold the same validated data).
    fn live_answer(&self, query: &crate::query::Query<'_>, now: u64) -> Option<Arc<CachedAnswer>> {
        let key = query.cache_key();
        let other = juris_resolver::cache::CacheKeyRef {
            dnssec_ok: !key.dnssec_ok,
            ..key
        };
        let (answer, _) = self
            .cache()
            .get(&key, now)
            .or_else(|| self.cache().get(&other, now))?;
        Some(answer)
    }

    /// Explains an answer address for a client: the access list, the client's jurisdiction
    /// and withdrawal through the same hooks as a query, then the policy on the address as
    /// the answer check applies it (only `ip` targets of orders with `block_addresses`).
    pub fn explain_address(
        &self,
        client: SocketAddr,
        arrival: Arrival,
        client_subnet: Option<ClientSubnet>,
        address: IpAddr,
    ) -> Explanation {
        let now = self.now();
        let policy = self.engine().policy.current();
        let mut pinned = [None];
        let (pins, listener) = self.arrival_pins(arrival, &mut pinned);
        let context = ClientContext {
            client,
            transport: Transport::Udp,
            listener,
            client_subnet,
        };
        let jurisdiction = hooks::classify(self.engine(), pins, &context);
        let mut explanation = Explanation {
            now,
            jurisdiction,
            policy_generation: policy.generation(),
            decision: Decision::Refused,
            matches: Vec::new(),
            response: None,
            validation: None,
            checks: Vec::new(),
        };
        if !self.allows(client.ip()) {
            return explanation;
        }
        let recorder = Recorder::default();
        if let Some(country) = hooks::withdrawn(&recorder, &self.engine().policy, &jurisdiction) {
            explanation.decision = Decision::Withdrawn(country);
            return explanation;
        }
        let country = crate::policy::policy_country(jurisdiction.country);
        let explained = policy.explain_address(address, country, timestamp(now));
        explanation.decision = match explained.verdict {
            Verdict::Block(block) => Decision::Blocked {
                trigger: Trigger::Address,
                fired: block.fired,
            },
            Verdict::Allow { .. } => Decision::Resolve,
        };
        explanation.matches = explained.matches;
        explanation
    }

    /// The pins to classify with and the listener index for `arrival` (`pinned` holds an
    /// explicit pin).
    fn arrival_pins<'a>(
        &'a self,
        arrival: Arrival,
        pinned: &'a mut [Option<CountryCode>; 1],
    ) -> (&'a [Option<CountryCode>], usize) {
        match arrival {
            Arrival::Listener(index) => (self.pins(), index),
            Arrival::Pinned(country) => {
                pinned[0] = Some(country);
                (&pinned[..], 0)
            }
            Arrival::Unpinned => (&[], 0),
        }
    }

    /// A query as a stub resolver sends it: RD, one question, OPT (payload 1232) with an EDNS
    /// Client Subnet option (`ecs`: address and source prefix length) and the structured-error
    /// signal (when asked for and configured). `None` if `name` is not a domain name.
    pub fn query_packet(
        &self,
        name: &str,
        qtype: u16,
        ecs: Option<(IpAddr, u8)>,
        structured: bool,
    ) -> Option<Vec<u8>> {
        let wire = crate::block::name_to_wire(name)?;
        let mut options = Vec::new();
        if let Some((address, prefix)) = ecs {
            let (family, octets, max): (u16, Vec<u8>, u8) = match address {
                IpAddr::V4(v4) => (1, v4.octets().to_vec(), 32),
                IpAddr::V6(v6) => (2, v6.octets().to_vec(), 128),
            };
            let prefix = prefix.min(max);
            let significant = usize::from(prefix).div_ceil(8);
            let mut bytes = octets[..significant].to_vec();
            // Bits past the source prefix are zero (RFC 7871 §6).
            if let (Some(last), rest) = (bytes.last_mut(), prefix % 8) {
                if rest != 0 {
                    *last &= 0xFFu8 << (8 - rest);
                }
            }
            options.extend_from_slice(&option_code::CLIENT_SUBNET.to_be_bytes());
            options.extend_from_slice(&u16::try_from(4 + significant).ok()?.to_be_bytes());
            options.extend_from_slice(&family.to_be_bytes());
            options.push(prefix);
            options.push(0);
            options.extend_from_slice(&bytes);
        }
        if let (true, Some(code)) = (structured, self.parse_config().structured_error_option_code) {
            options.extend_from_slice(&code.to_be_bytes());
            options.extend_from_slice(&[0, 0]);
        }
        let mut m = Vec::with_capacity(64 + wire.len());
        m.extend_from_slice(&0x4a55u16.to_be_bytes());
        m.extend_from_slice(&crate::codes::flags::RD.to_be_bytes());
        m.extend_from_slice(&[0, 1, 0, 0, 0, 0, 0, 1]);
        m.extend_from_slice(&wire);
        m.extend_from_slice(&qtype.to_be_bytes());
        m.extend_from_slice(&crate::codes::rtype::CLASS_IN.to_be_bytes());
        m.push(0);
        m.extend_from_slice(&crate::codes::rtype::OPT.to_be_bytes());
        m.extend_from_slice(&1232u16.to_be_bytes());
        m.extend_from_slice(&[0, 0, 0, 0]);
        m.extend_from_slice(&u16::try_from(options.len()).ok()?.to_be_bytes());
        m.extend_from_slice(&options);
        Some(m)
    }
}

/// Every check the answer hook makes on `answer` (the name-server checks too, even when the
/// policy has no `nsdname`/`nsip` target and the hook skips them), with the order that blocks
/// each for a client in `country`; shadow matches do not block.
fn live_checks(
    policy: &CompiledPolicy,
    answer: &CachedAnswer,
    country: Option<Country>,
    now: jiff::Timestamp,
) -> Vec<LiveCheck> {
    hooks::answer_checks(answer, true)
        .map(|check| LiveCheck {
            trigger: check.trigger(),
            subject: match check {
                AnswerCheck::CnameTarget(name) | AnswerCheck::NameServer(name) => {
                    format!(
                        "{}.",
                        juris_policy::wire_to_text(name).trim_end_matches('.')
                    )
                }
                AnswerCheck::Address(address) | AnswerCheck::NameServerAddress(address) => {
                    address.to_string()
                }
            },
            fired: match check.verdict(policy, country, now) {
                Verdict::Block(block) => Some(block.fired),
                Verdict::Allow { .. } => None,
            },
        })
        .collect()
}

impl Decision {
    /// `refused`, `rejected`, `withdrawn`, `block`, `answered`, `allow` or `dropped`.
    pub fn as_str(&self) -> &'static str {
        match self {
            Decision::Refused => "refused",
            Decision::Rejected => "rejected",
            Decision::Withdrawn(_) => "withdrawn",
            Decision::Blocked { .. } => "block",
            Decision::Answered => "answered",
            Decision::Resolve => "allow",
            Decision::Dropped => "dropped",
        }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used, reason = "test code")]
mod tests {
    use super::*;
    use juris_geo::{Classifier, GeoConfig};
    use juris_policy::{CompileOptions, Order, ValidationOptions};
    use juris_resolver::cache::{AnswerCache, CacheConfig, CacheKeyRef, CachedAnswer};
    use juris_resolver::clock::{ManualClock, SharedClock};
    use juris_resolver::{Mode, Resolver, ResolverConfig};

    use crate::config::{ListenerConfig, ServerConfig};
    use crate::policy::{PolicyEngine, PolicyHandle};

    const NOW: u64 = 1_717_243_200;
    const ITALY: &str = "IT";

    /// A pipeline enforcing order IT-1 (subtree blocked.test in Italy), and its resolver.
    fn pipeline() -> (Pipeline, Resolver) {
        let order = Order::from_json(
            br#"{"id": "IT-1", "kind": "court_order", "authority": "Tribunale di Milano",
                "jurisdictions": ["IT"], "state": "active", "action": "nxdomain",
                "targets": [{"type": "subtree", "value": "blocked.test"}]}"#,
        )
        .unwrap()
        .validate(&ValidationOptions::default())
        .unwrap();
        let policy =
            juris_policy::CompiledPolicy::compile(&[order], &CompileOptions { generation: 3 })
                .unwrap();
        let engine = PolicyEngine::new(
            Arc::new(PolicyHandle::new(policy)),
            Arc::new(Classifier::new(&GeoConfig::default()).unwrap()),
        );
        let clock: SharedClock = Arc::new(ManualClock::new(NOW));
        let cache = Arc::new(AnswerCache::new(CacheConfig::default()));
        // Never asked: explain does not resolve.
        let root_hints = juris_resolver::builtin_root_hints();
        let config = ResolverConfig {
            mode: Mode::Recursive { root_hints },
            ..ResolverConfig::default()
        };
        let resolver = Resolver::new(config, cache, Arc::clone(&clock)).unwrap();
        let config = ServerConfig {
            listeners: vec![ListenerConfig::udp_and_tcp(
                "127.0.0.1:5300".parse().unwrap(),
            )],
            ..ServerConfig::default()
        };
        let pipeline = Pipeline::new(&config, resolver.clone(), clock, engine).unwrap();
        (pipeline, resolver)
    }

    fn italy() -> Arrival {
        Arrival::Pinned(CountryCode::parse(ITALY).unwrap())
    }

    fn explain(pipeline: &Pipeline, name: &str) -> Explanation {
        let packet = pipeline.query_packet(name, 1, None, false).unwrap();
        pipeline.explain(&ExplainQuery {
            packet: &packet,
            client: "127.0.0.1:53000".parse().unwrap(),
            transport: Transport::Udp,
            arrival: italy(),
        })
    }

    #[test]
    fn explain_counts_nothing_where_a_real_query_counts() {
        let (pipeline, resolver) = pipeline();
        for _ in 0..2 {
            let explanation = explain(&pipeline, "www.blocked.test");
            match &explanation.decision {
                Decision::Blocked { trigger, fired } => {
                    assert_eq!(
                        (*trigger, fired.order.id.as_str()),
                        (Trigger::QueryName, "IT-1")
                    )
                }
                other => panic!("{other:?}"),
            }
            assert_eq!(explanation.now, NOW);
            assert_eq!(explanation.policy_generation, 3);
            assert_eq!(explanation.matches.len(), 1);
            assert!(explanation.response.is_some());
        }
        assert!(pipeline.engine().counters.snapshot().is_empty());
        // The same query for real, on a listener pinned to Italy, is counted.
        let config = ServerConfig {
            listeners: vec![ListenerConfig {
                country: Some(CountryCode::parse(ITALY).unwrap()),
                ..ListenerConfig::udp_and_tcp("127.0.0.1:5301".parse().unwrap())
            }],
            ..ServerConfig::default()
        };
        let real = Pipeline::new(
            &config,
            resolver,
            Arc::new(ManualClock::new(NOW)),
            pipeline.engine().clone(),
        )
        .unwrap();
        let packet = real
            .query_packet("www.blocked.test", 1, None, false)
            .unwrap();
        let mut out = vec![0u8; 4096];
        let context = ClientContext {
            client: "127.0.0.1:53000".parse().unwrap(),
            transport: Transport::Udp,
            listener: 0,
            client_subnet: None,
        };
        assert!(matches!(
            real.handle(&packet, context, &mut out, &Counters::default()),
            Outcome::Respond(_)
        ));
        let counts = real.engine().counters.snapshot();
        assert_eq!((counts.len(), counts[0].blocked), (1, 1));
    }

    #[test]
    fn explain_checks_a_cached_answer_like_a_query() {
        let (pipeline, resolver) = pipeline();
        // alias.innocent.test. CNAME www.blocked.test., in the cache.
        let alias = b"\x05alias\x08innocent\x04test\x00";
        let target = b"\x03www\x07blocked\x04test\x00";
        let mut message = vec![0, 0, 0x81, 0x80, 0, 1, 0, 1, 0, 0, 0, 0];
        message.extend_from_slice(alias);
        message.extend_from_slice(&[0, 1, 0, 1, 0xC0, 12, 0, 5, 0, 1, 0, 0, 0, 60, 0]);
        message.push(u8::try_from(target.len()).unwrap());
        message.extend_from_slice(target);
        let cache = resolver.cache();
        let entry = CachedAnswer::from_message(&message, NOW, cache.config()).unwrap();
        let key = CacheKeyRef {
            name: alias,
            qtype: 1,
            qclass: 1,
            dnssec_ok: false,
        };
        assert!(cache.insert(key.to_owned_key(), Arc::new(entry)));

        let explanation = explain(&pipeline, "alias.innocent.test");
        assert!(
            matches!(
                explanation.decision,
                Decision::Blocked {
                    trigger: Trigger::CnameTarget,
                    ..
                }
            ),
            "{explanation:?}"
        );
        // Not cached: allowed at the name, would be resolved.
        assert_eq!(
            explain(&pipeline, "other.innocent.test").decision,
            Decision::Resolve
        );
        assert!(pipeline.engine().counters.snapshot().is_empty());
    }

    #[test]
    fn the_query_packet_parses_with_its_ecs_option() {
        let (pipeline, _) = pipeline();
        let ecs = Some(("198.51.100.77".parse().unwrap(), 24));
        let packet = pipeline
            .query_packet("www.Example.com", 1, ecs, true)
            .unwrap();
        let parsed = parse_query(&packet, &pipeline.parse_config()).unwrap();
        assert_eq!(parsed.name(), b"\x03www\x07example\x03com\x00");
        let edns = parsed.edns.unwrap();
        assert!(edns.wants_structured_errors);
        let subnet = edns.client_subnet.unwrap();
        assert_eq!(subnet.source_prefix, 24);
        assert_eq!(subnet.address, "198.51.100.0".parse::<IpAddr>().unwrap());
        assert!(pipeline.query_packet("bad..name", 1, None, false).is_none());
    }
}
