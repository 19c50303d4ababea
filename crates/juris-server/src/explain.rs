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
//!  ─► Explanation { decision, jurisdiction, fired, matches, response, policy generation, now }
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
use crate::hooks::{self, Tally};
use crate::pipeline::{ClientContext, Judge, Outcome, Pipeline, Transport};
use juris_resolver::clock::timestamp;
use crate::query::{parse_query, ClientSubnet};

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
        }
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
        };
        if !self.allows(client.ip()) {
            return explanation;
        }
        let recorder = Recorder::default();
        if let Some(country) = hooks::withdrawn(&recorder, self.withdrawn(), &jurisdiction) {
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
        if let (true, Some(code)) = (structured, self.parse_config().structured_error_option_code)
        {
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
