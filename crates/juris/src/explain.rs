//! `juris explain NAME --client ADDR`: what NAME gets for that client, and why — through the
//! same code as a real query.
//!
//! ```text
//!  same config, --orders, --geoip ─► policy_engine (serve's) ─► Pipeline (serve's, no sockets,
//!                                                                empty cache, never resolves)
//!  a real query packet (RD, EDNS, --ecs option) from --client ─► Pipeline::handle
//!        Respond(bytes) ─► decoded: RCODE, SOA, EDE  (block, withdrawal, access list, ANY)
//!        Resolve        ─► allowed at the name: would be resolved normally (then the answer's
//!                          CNAME targets and addresses are checked too)
//!  + Pipeline::classify (how the jurisdiction was decided) and CompiledPolicy::explain_name
//!    (every matching order, applicable or not, and why)
//! ```
//! `--country CC` puts the query on a listener pinned to CC, so the pin decides as it would in
//! `serve`.
//!
//! # Limitations
//! - Nothing is resolved, so CNAME targets and answer addresses are not checked here (the
//!   output says so); `explain` on the CNAME target's name shows how that name fares.

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;

use anyhow::{bail, Context};
use juris_geo::{CountryCode, Jurisdiction};
use juris_policy::{ExplainedMatch, MatchStatus, Verdict};
use juris_resolver::cache::{AnswerCache, CacheConfig};
use juris_resolver::clock::{SharedClock, SystemClock};
use juris_resolver::Resolver;
use juris_server::counters::Counters;
use juris_server::query::ParseConfig;
use juris_server::{parse_query, ClientContext, ListenerConfig, Outcome, Pipeline, Transport};
use serde::Serialize;

use crate::config::Settings;
use crate::serve::{policy_engine, server_config};

/// What to explain.
#[derive(Debug, Clone)]
pub struct Request {
    /// The query name.
    pub name: String,
    /// The query type (mnemonic or number).
    pub qtype: String,
    /// The client's address.
    pub client: IpAddr,
    /// An EDNS Client Subnet option in the query (`ADDR/LEN`).
    pub ecs: Option<ipnet::IpNet>,
    /// A listener pin.
    pub country: Option<CountryCode>,
    /// Signal structured-error support in the query.
    pub structured: bool,
}

/// The explanation (`--json` prints it as is).
#[derive(Debug, Serialize)]
pub struct Report {
    /// The query name as asked.
    pub name: String,
    /// The query type.
    pub qtype: String,
    /// The client address given (explain output only; never logged or stored).
    pub client: IpAddr,
    /// The ECS option sent, if any.
    pub ecs: Option<String>,
    /// The listener pin used, if any.
    pub listener_country: Option<String>,
    /// The client's jurisdiction and what decided it.
    pub jurisdiction: JurisdictionReport,
    /// Policy generation consulted.
    pub policy_generation: u64,
    /// `block`, `allow`, `withdrawn` or `refused` (access list) or `answered` (e.g. ANY).
    pub verdict: String,
    /// The order that decides the answer, for a block.
    pub fired: Option<MatchReport>,
    /// Every order whose targets match the name, whether it applies or not, and why.
    pub matches: Vec<MatchReport>,
    /// The response juris would send, decoded; `None` when the query would be resolved.
    pub response: Option<crate::decode::Decoded>,
    /// What happens otherwise.
    pub note: Option<String>,
}

/// The jurisdiction part of [`Report`].
#[derive(Debug, Serialize)]
pub struct JurisdictionReport {
    /// Two-letter code, or `None` (unknown: only global orders apply).
    pub country: Option<String>,
    /// `listener`, `trusted-ecs`, `geoip` or `unknown`.
    pub decided_by: String,
    /// ECS prefix looked up, when a trusted forwarder's ECS was used.
    pub ecs_prefix_len: Option<u8>,
    /// The classifier's own wording, e.g. `IT (geoip)`.
    pub summary: String,
}

/// One matching order.
#[derive(Debug, Serialize)]
pub struct MatchReport {
    /// Order id.
    pub order: String,
    /// Kind.
    pub kind: String,
    /// Authority.
    pub authority: String,
    /// Case reference.
    pub reference: String,
    /// State.
    pub state: String,
    /// Jurisdictions as written.
    pub jurisdictions: Vec<String>,
    /// Action.
    pub action: String,
    /// The target that matched, e.g. `subtree kickasstorrents.to`.
    pub target: String,
    /// Whether it applies to this client now.
    pub applies: bool,
    /// Why (not).
    pub status: String,
}

/// Runs the explanation.
pub fn explain(settings: &Settings, request: &Request) -> anyhow::Result<Report> {
    let clock: SharedClock = Arc::new(SystemClock);
    let now = clock.unix_seconds();
    let (engine, _loader) = policy_engine(settings, now)?;

    // serve's configuration, with two sockets-free listeners: 0 unpinned, 1 pinned.
    let mut config = server_config(settings);
    let any: SocketAddr = SocketAddr::new(request.client, 0);
    config.listeners = vec![
        ListenerConfig::udp_and_tcp(any),
        ListenerConfig {
            country: request.country,
            ..ListenerConfig::udp_and_tcp(any)
        },
    ];
    let cache = Arc::new(AnswerCache::new(CacheConfig::default()));
    let resolver =
        Resolver::new(settings.resolver.clone(), cache, Arc::clone(&clock)).context("resolver")?;
    let pipeline = Pipeline::new(&config, resolver, clock, engine.clone())
        .map_err(|e| anyhow::anyhow!("invalid server configuration: {e}"))?;

    let qtype = parse_qtype(&request.qtype)?;
    let packet = query_packet(
        &request.name,
        qtype,
        request.ecs,
        request.structured,
        settings,
    )?;
    let parse_config = ParseConfig {
        max_udp_payload: settings.max_udp_payload,
        structured_error_option_code: settings.structured_error_option_code,
    };
    let parsed = parse_query(&packet, &parse_config)
        .map_err(|e| anyhow::anyhow!("the query for {:?} does not parse: {e:?}", request.name))?;
    let query_name = parsed.name().to_vec();
    let context = ClientContext {
        client: SocketAddr::new(request.client, 53_000),
        transport: Transport::Udp,
        listener: usize::from(request.country.is_some()),
        client_subnet: parsed.edns.and_then(|e| e.client_subnet),
    };
    let jurisdiction = pipeline.classify(&context);

    let mut out = vec![0u8; 65_535];
    let counters = Counters::default();
    let outcome = pipeline.handle(&packet, context, &mut out, &counters);

    let policy = engine.policy.current();
    let country = juris_server::policy::policy_country(jurisdiction.country);
    let timestamp = i64::try_from(now)
        .ok()
        .and_then(|s| jiff::Timestamp::from_second(s).ok())
        .unwrap_or(jiff::Timestamp::MAX);
    let explanation = policy.explain_name(&query_name, country, timestamp);
    let matches: Vec<MatchReport> = explanation.matches.iter().map(match_report).collect();
    let fired = match &explanation.verdict {
        Verdict::Block(block) => explanation
            .matches
            .iter()
            .find(|m| m.status == MatchStatus::Fired && m.matched.order.id == block.fired.order.id)
            .map(match_report),
        Verdict::Allow { .. } => None,
    };

    let withdrawn = jurisdiction
        .country
        .is_some_and(|c| pipeline.is_withdrawn(c));
    let (verdict, response, note) = match outcome {
        Outcome::Respond(len) => {
            let decoded =
                crate::decode::decode(&out[..len]).context("decoding the synthesised response")?;
            let verdict = if !pipeline.allows(request.client) {
                "refused"
            } else if withdrawn {
                "withdrawn"
            } else if explanation.verdict.is_block() {
                "block"
            } else {
                "answered"
            };
            let note = match verdict {
                "refused" => Some("the client is outside server.allow: REFUSED before any policy".to_owned()),
                "withdrawn" => Some("service is withdrawn in this jurisdiction (policy.withdraw): every query is REFUSED with EDE 18".to_owned()),
                "block" => Some("blocked answers are synthesised per query and never cached".to_owned()),
                _ => None,
            };
            (verdict, Some(decoded), note)
        }
        Outcome::Resolve(_) => (
            "allow",
            None,
            Some(
                "allowed: would be resolved normally (or answered from the cache); the answer's \
                 CNAME targets and, for orders with block_addresses, its addresses are then \
                 checked against the same policy"
                    .to_owned(),
            ),
        ),
        Outcome::Drop => bail!("the query would be dropped without an answer"),
    };
    if verdict == "allow" && explanation.verdict.is_block() {
        bail!("internal inconsistency: the policy blocks but the pipeline would resolve");
    }

    Ok(Report {
        name: request.name.clone(),
        qtype: request.qtype.to_ascii_uppercase(),
        client: request.client,
        ecs: request.ecs.map(|n| n.to_string()),
        listener_country: request.country.map(|c| c.as_str().to_owned()),
        jurisdiction: jurisdiction_report(&jurisdiction),
        policy_generation: policy.generation(),
        verdict: verdict.to_owned(),
        fired,
        matches,
        response,
        note,
    })
}

fn jurisdiction_report(jurisdiction: &Jurisdiction) -> JurisdictionReport {
    JurisdictionReport {
        country: jurisdiction.country.map(|c| c.as_str().to_owned()),
        decided_by: jurisdiction.decided_by.to_string(),
        ecs_prefix_len: jurisdiction.ecs_prefix_len,
        summary: jurisdiction.to_string(),
    }
}

fn match_report(explained: &ExplainedMatch) -> MatchReport {
    let order = &explained.matched.order;
    MatchReport {
        order: order.id.clone(),
        kind: order.kind.as_str().to_owned(),
        authority: order.authority.clone(),
        reference: order.reference.clone(),
        state: order.state.as_str().to_owned(),
        jurisdictions: order.jurisdictions.clone(),
        action: format!("{:?}", order.action).to_ascii_lowercase(),
        target: explained.matched.target.to_string(),
        applies: explained.status.applies(),
        status: explained.status.to_string(),
    }
}

impl Report {
    /// The human-readable form.
    pub fn render(&self) -> String {
        use std::fmt::Write;
        let mut out = String::new();
        let _ = writeln!(
            out,
            "query:        {} {} from {}",
            self.name, self.qtype, self.client
        );
        if let Some(ecs) = &self.ecs {
            let _ = writeln!(out, "ecs option:   {ecs}");
        }
        if let Some(country) = &self.listener_country {
            let _ = writeln!(out, "listener pin: {country}");
        }
        let _ = writeln!(
            out,
            "jurisdiction: {} (decided by {})",
            self.jurisdiction.country.as_deref().unwrap_or("unknown"),
            self.jurisdiction.decided_by
        );
        let _ = writeln!(out, "              {}", self.jurisdiction.summary);
        let _ = writeln!(out, "policy:       generation {}", self.policy_generation);
        let _ = writeln!(out, "verdict:      {}", self.verdict.to_ascii_uppercase());
        if let Some(fired) = &self.fired {
            let _ = writeln!(
                out,
                "fired:        order {} ({}, {}) target {} → {}",
                fired.order, fired.authority, fired.reference, fired.target, fired.action
            );
        }
        if self.matches.is_empty() {
            let _ = writeln!(out, "matches:      no order targets this name");
        } else {
            let _ = writeln!(out, "matches:");
            for m in &self.matches {
                let _ = writeln!(
                    out,
                    "  - order {} [{}] {} ({}) state {} jurisdictions [{}] action {}: target {}\n    {}",
                    m.order,
                    m.kind,
                    m.authority,
                    m.reference,
                    m.state,
                    m.jurisdictions.join(","),
                    m.action,
                    m.target,
                    m.status
                );
            }
        }
        match &self.response {
            Some(response) => {
                let _ = writeln!(out, "answer that would be sent:");
                for line in response.render().lines() {
                    let _ = writeln!(out, "  {line}");
                }
            }
            None => {
                let _ = writeln!(out, "answer:       resolved normally");
            }
        }
        if let Some(note) = &self.note {
            let _ = writeln!(out, "note:         {note}");
        }
        out
    }
}

/// `A`, `aaaa`, `TYPE65`, `28`.
fn parse_qtype(text: &str) -> anyhow::Result<u16> {
    let upper = text.to_ascii_uppercase();
    let known = [
        ("A", 1),
        ("NS", 2),
        ("CNAME", 5),
        ("SOA", 6),
        ("PTR", 12),
        ("MX", 15),
        ("TXT", 16),
        ("AAAA", 28),
        ("SRV", 33),
        ("DS", 43),
        ("DNSKEY", 48),
        ("SVCB", 64),
        ("HTTPS", 65),
        ("CAA", 257),
        ("ANY", 255),
    ];
    if let Some((_, code)) = known.iter().find(|(name, _)| *name == upper) {
        return Ok(*code);
    }
    upper
        .strip_prefix("TYPE")
        .unwrap_or(&upper)
        .parse()
        .with_context(|| format!("--qtype {text:?}: not a record type"))
}

/// A query as a stub resolver sends it: RD, one question, OPT (payload 1232) with the ECS
/// option and the structured-error signal when asked for.
fn query_packet(
    name: &str,
    qtype: u16,
    ecs: Option<ipnet::IpNet>,
    structured: bool,
    settings: &Settings,
) -> anyhow::Result<Vec<u8>> {
    let wire = juris_server::block::name_to_wire(name)
        .with_context(|| format!("{name:?} is not a domain name"))?;
    let mut options = Vec::new();
    if let Some(net) = ecs {
        let family: u16 = if net.addr().is_ipv4() { 1 } else { 2 };
        let prefix = net.prefix_len();
        let significant = usize::from(prefix).div_ceil(8);
        let address_bytes: Vec<u8> = match net.trunc().addr() {
            IpAddr::V4(v4) => v4.octets().to_vec(),
            IpAddr::V6(v6) => v6.octets().to_vec(),
        };
        options.extend_from_slice(&8u16.to_be_bytes());
        options.extend_from_slice(&u16::try_from(4 + significant)?.to_be_bytes());
        options.extend_from_slice(&family.to_be_bytes());
        options.push(prefix);
        options.push(0);
        options.extend_from_slice(&address_bytes[..significant]);
    }
    if structured {
        let code = settings.structured_error_option_code.unwrap_or(15);
        options.extend_from_slice(&code.to_be_bytes());
        options.extend_from_slice(&[0, 0]);
    }
    let mut m = Vec::with_capacity(64 + wire.len());
    m.extend_from_slice(&0x4a55u16.to_be_bytes());
    m.extend_from_slice(&0x0100u16.to_be_bytes());
    m.extend_from_slice(&[0, 1, 0, 0, 0, 0, 0, 1]);
    m.extend_from_slice(&wire);
    m.extend_from_slice(&qtype.to_be_bytes());
    m.extend_from_slice(&1u16.to_be_bytes());
    m.extend_from_slice(&[0, 0, 41]);
    m.extend_from_slice(&1232u16.to_be_bytes());
    m.extend_from_slice(&[0, 0, 0, 0]);
    m.extend_from_slice(&u16::try_from(options.len())?.to_be_bytes());
    m.extend_from_slice(&options);
    Ok(m)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn qtypes() {
        assert_eq!(parse_qtype("a").unwrap(), 1);
        assert_eq!(parse_qtype("AAAA").unwrap(), 28);
        assert_eq!(parse_qtype("TYPE65").unwrap(), 65);
        assert!(parse_qtype("nonsense").is_err());
    }

    #[test]
    fn the_query_packet_parses_with_its_ecs_option() {
        let settings = Settings::from_raw(&crate::config::RawConfig::default()).unwrap();
        let ecs = "198.51.100.77/24".parse().ok();
        let packet = query_packet("www.Example.com", 1, ecs, true, &settings).unwrap();
        let parsed = parse_query(&packet, &ParseConfig::default()).unwrap();
        assert_eq!(parsed.name(), b"\x03www\x07example\x03com\x00");
        let edns = parsed.edns.unwrap();
        assert!(edns.wants_structured_errors);
        let subnet = edns.client_subnet.unwrap();
        assert_eq!(subnet.source_prefix, 24);
        assert_eq!(subnet.address, "198.51.100.0".parse::<IpAddr>().unwrap());
    }
}
