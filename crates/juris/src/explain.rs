//! `juris explain NAME --client ADDR`: what NAME gets for that client, and why — through the
//! same code as a real query.
//!
//! ```text
//!  same config, --orders, the store in the data directory, --geoip
//!        ─► policy_engine_with_store (serve's) ─► Pipeline (serve's configuration, no sockets,
//!                                                  empty cache, never resolves)
//!  a real query packet (RD, EDNS, --ecs option) from --client ─► Pipeline::explain
//!        (juris_server::explain: the real answer path, counting nothing) ─► Explanation
//!        ─► Report: jurisdiction and what decided it, the decision, the order that fired,
//!           every matching order and why, the response decoded (RCODE, SOA, EDE)
//! ```
//! `--country CC` puts the query on a listener pinned to CC, so the pin decides as it would in
//! `serve`; `--listener ADDR:PORT` on the configured listener there (with its pin, if any).
//! The admin API's `/v1/explain` runs the same `Pipeline::explain` on the running server.
//!
//! `--resolve` resolves first (here with serve's resolver settings; with `--api URL` the running
//! server resolves, through `GET /v1/explain?resolve=true`, and [`render_view`] prints its
//! view): the live answer's checks (CNAME targets, addresses, the name servers that answered,
//! as the answer hook makes them) are then listed with the order that blocks each.
//!
//! # Limitations
//! - Without `--resolve` nothing is resolved: an answer not in the cache is not checked (the
//!   output says so).

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;

use anyhow::{bail, Context};
use juris_control::api::{CheckView, ExplainView, ValidationView};
use juris_geo::{CountryCode, Jurisdiction};
use juris_policy::{Match, MatchStatus};
use juris_resolver::cache::{AnswerCache, CacheConfig};
use juris_resolver::clock::{SharedClock, SystemClock};
use juris_resolver::Resolver;
use juris_server::block::Trigger;
use juris_server::{Arrival, Decision, ExplainQuery, Pipeline, Transport};
use serde::Serialize;

use crate::config::Settings;
use crate::serve::{policy_engine_with_store, server_config};

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
    /// A configured listener the query arrives on (its pin applies).
    pub listener: Option<SocketAddr>,
    /// Signal structured-error support in the query.
    pub structured: bool,
    /// Resolve the question first (the configured resolver, validation included), so that
    /// the report shows the live answer and its DNSSEC validation state.
    pub resolve: bool,
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
    /// `block`, `allow`, `withdrawn` or `refused` (access list) or `answered` (e.g. ANY), or
    /// `rejected` (an error answer before any policy: screened type or class, malformed).
    pub verdict: String,
    /// For a block: what matched (`query name`, `CNAME target`, `answer address`).
    pub trigger: Option<String>,
    /// The order that decides the answer, for a block.
    pub fired: Option<MatchReport>,
    /// Every order whose targets match the name, whether it applies or not, and why.
    pub matches: Vec<MatchReport>,
    /// The response juris would send, decoded; `None` when the query would be resolved.
    pub response: Option<crate::decode::Decoded>,
    /// What happens otherwise.
    pub note: Option<String>,
    /// The DNSSEC validation state of the live (cached) answer; `None` when no answer is
    /// cached (this command resolves only with `--resolve`).
    pub validation: Option<ValidationView>,
    /// The checks the answer hook makes on the live answer (CNAME targets, addresses, the
    /// name servers that answered), each with the order that blocks it for this client.
    pub checks: Vec<CheckView>,
    /// Why `--resolve` found no answer, when it failed.
    pub resolve_error: Option<String>,
}

/// The validation part of a report, from the server's explanation (the API's view type).
pub fn validation_view(validation: &juris_server::Validation) -> ValidationView {
    ValidationView {
        state: validation.state.to_owned(),
        ede: validation.ede,
        text: validation.text.clone(),
    }
}

/// The checks of the live answer, from the server's explanation (the API's view type).
pub fn check_views(checks: &[juris_server::LiveCheck]) -> Vec<CheckView> {
    checks
        .iter()
        .map(|check| CheckView {
            trigger: trigger_name(check.trigger).to_owned(),
            subject: check.subject.clone(),
            order: check.fired.as_ref().map(|m| m.order.id.clone()),
            target: check.fired.as_ref().map(|m| m.target.to_string()),
        })
        .collect()
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
    // The protected list `serve` would apply: with the published lists.
    settings.load_protected()?;
    let clock: SharedClock = Arc::new(SystemClock);
    let now = clock.unix_seconds();
    // The orders `serve` would enforce: the files and, when there is one, the store.
    let store = if settings
        .data_dir
        .join(juris_control::store::STORE_FILE)
        .exists()
    {
        Some(crate::control::open(settings, Arc::clone(&clock))?)
    } else {
        None
    };
    let (engine, _loader) = policy_engine_with_store(settings, now, store)?;
    let config = server_config(settings);
    let cache = Arc::new(AnswerCache::new(CacheConfig::default()));
    let resolver =
        Resolver::new(settings.resolver.clone(), cache, Arc::clone(&clock)).context("resolver")?;
    let pipeline = Pipeline::new(&config, resolver, clock, engine)
        .map_err(|e| anyhow::anyhow!("invalid server configuration: {e}"))?;
    let arrival = match (request.country, request.listener) {
        (Some(country), _) => Arrival::Pinned(country),
        (None, Some(addr)) => {
            Arrival::Listener(pipeline.listener_index(addr).with_context(|| {
                format!("--listener {addr}: not a configured listener (server.listen)")
            })?)
        }
        (None, None) => Arrival::Unpinned,
    };
    let qtype = parse_qtype(&request.qtype)?;
    let packet = pipeline
        .query_packet(
            &request.name,
            qtype,
            request.ecs.map(|net| (net.addr(), net.prefix_len())),
            request.structured,
        )
        .with_context(|| format!("{:?} is not a domain name", request.name))?;
    let resolve_error = if request.resolve {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .context("a runtime for --resolve")?;
        runtime
            .block_on(pipeline.resolve_for_explain(&packet))
            .err()
    } else {
        None
    };
    let explanation = pipeline.explain(&ExplainQuery {
        packet: &packet,
        client: SocketAddr::new(request.client, 53_000),
        transport: Transport::Udp,
        arrival,
    });
    let response = match &explanation.response {
        Some(bytes) => {
            Some(crate::decode::decode(bytes).context("decoding the synthesised response")?)
        }
        None => None,
    };
    let note = match &explanation.decision {
        Decision::Refused => {
            Some("the client is outside server.allow: REFUSED before any policy".to_owned())
        }
        Decision::Rejected => {
            Some("answered with an error before any policy (see the RCODE)".to_owned())
        }
        Decision::Withdrawn(_) => Some(
            "service is withdrawn in this jurisdiction (policy.withdraw): every query is \
             REFUSED with EDE 18"
                .to_owned(),
        ),
        Decision::Blocked { .. } => {
            Some("blocked answers are synthesised per query and never cached".to_owned())
        }
        Decision::Answered => None,
        Decision::Resolve => Some(
            "allowed: would be resolved normally (or answered from the cache); the answer's \
             CNAME targets, for orders with block_addresses its addresses, and the names and \
             addresses of the name servers that answered (nsdname, nsip) are then checked \
             against the same policy"
                .to_owned(),
        ),
        Decision::Dropped => bail!("the query would be dropped without an answer"),
    };
    let fired = explanation
        .fired()
        .map(|fired| match_report(fired, MatchStatus::Fired));
    Ok(Report {
        name: request.name.clone(),
        qtype: request.qtype.to_ascii_uppercase(),
        client: request.client,
        ecs: request.ecs.map(|n| n.to_string()),
        listener_country: request.country.map(|c| c.as_str().to_owned()),
        jurisdiction: jurisdiction_report(&explanation.jurisdiction),
        policy_generation: explanation.policy_generation,
        verdict: explanation.decision.as_str().to_owned(),
        trigger: match &explanation.decision {
            Decision::Blocked { trigger, .. } => Some(trigger_name(*trigger).to_owned()),
            _ => None,
        },
        fired,
        matches: explanation
            .matches
            .iter()
            .map(|m| match_report(&m.matched, m.status))
            .collect(),
        response,
        note,
        validation: explanation.validation.as_ref().map(validation_view),
        checks: check_views(&explanation.checks),
        resolve_error,
    })
}

/// What a block matched, for people: `query name`, `CNAME target`, `answer address`, `name
/// server name`, `name server address`.
pub fn trigger_name(trigger: Trigger) -> &'static str {
    match trigger {
        Trigger::QueryName => "query name",
        Trigger::CnameTarget => "CNAME target",
        Trigger::Address => "answer address",
        Trigger::NameServer => "name server name",
        Trigger::NameServerAddress => "name server address",
    }
}

fn jurisdiction_report(jurisdiction: &Jurisdiction) -> JurisdictionReport {
    JurisdictionReport {
        country: jurisdiction.country.map(|c| c.as_str().to_owned()),
        decided_by: jurisdiction.decided_by.to_string(),
        ecs_prefix_len: jurisdiction.ecs_prefix_len,
        summary: jurisdiction.to_string(),
    }
}

fn match_report(matched: &Match, status: MatchStatus) -> MatchReport {
    let order = &matched.order;
    MatchReport {
        order: order.id.clone(),
        kind: order.kind.as_str().to_owned(),
        authority: order.authority.clone(),
        reference: order.reference.clone(),
        state: order.state.as_str().to_owned(),
        jurisdictions: order.jurisdictions.clone(),
        action: order.action.as_str().to_owned(),
        target: matched.target.to_string(),
        applies: status.applies(),
        status: status.to_string(),
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
        render_live(
            &mut out,
            self.validation.as_ref(),
            &self.checks,
            self.resolve_error.as_deref(),
        );
        out
    }
}

/// The live answer's part of a report: its validation state, the answer hook's checks, why
/// the resolution failed.
fn render_live(
    out: &mut String,
    validation: Option<&ValidationView>,
    checks: &[CheckView],
    resolve_error: Option<&str>,
) {
    use std::fmt::Write;
    match validation {
        Some(validation) => {
            let _ = write!(out, "dnssec:       {}", validation.state);
            if let Some(ede) = validation.ede {
                let _ = write!(out, " (EDE {ede}");
                match validation.text.as_deref().filter(|t| !t.is_empty()) {
                    Some(text) => {
                        let _ = write!(out, ": {text})");
                    }
                    None => out.push(')'),
                }
            }
            out.push('\n');
        }
        None => {
            let _ = writeln!(
                out,
                "dnssec:       no live answer in the cache (--resolve resolves the question)"
            );
        }
    }
    if !checks.is_empty() {
        let _ = writeln!(out, "live answer checks:");
        for check in checks {
            let _ = match (&check.order, &check.target) {
                (Some(order), Some(target)) => writeln!(
                    out,
                    "  - {} {}: blocked by order {order} (target {target})",
                    check.trigger, check.subject
                ),
                _ => writeln!(
                    out,
                    "  - {} {}: no order applies",
                    check.trigger, check.subject
                ),
            };
        }
    }
    if let Some(error) = resolve_error {
        let _ = writeln!(out, "resolve:      failed: {error}");
    }
}

/// The text of an explanation by the running server (`juris explain --api`).
pub fn render_view(view: &ExplainView, client: IpAddr) -> String {
    use std::fmt::Write;
    let mut out = String::new();
    let subject = view
        .name
        .as_deref()
        .or(view.address.as_deref())
        .unwrap_or("");
    let _ = writeln!(out, "name:         {subject}");
    let _ = writeln!(out, "client:       {client}");
    let _ = writeln!(
        out,
        "jurisdiction: {} (decided by {})",
        view.jurisdiction.as_deref().unwrap_or("unknown"),
        view.decided_by
    );
    let _ = writeln!(
        out,
        "policy:       generation {} (the running server's)",
        view.policy_generation
    );
    let _ = writeln!(out, "verdict:      {}", view.verdict.to_ascii_uppercase());
    if let Some(fired) = &view.fired {
        let _ = writeln!(
            out,
            "fired:        order {} ({}, {}) target {} → {} (EDE {})",
            fired.order, fired.authority, fired.reference, fired.target, fired.action, fired.ede
        );
        if let Some(trigger) = &view.trigger {
            let _ = writeln!(out, "trigger:      {trigger}");
        }
    }
    if view.matches.is_empty() {
        let _ = writeln!(out, "matches:      no order targets this name");
    } else {
        let _ = writeln!(out, "matches:");
        for m in &view.matches {
            let _ = writeln!(
                out,
                "  - order {}: target {}\n    {}",
                m.order, m.target, m.status
            );
        }
    }
    if view.response.is_empty() {
        let _ = writeln!(out, "answer:       resolved normally");
    } else {
        let _ = writeln!(out, "answer that would be sent:");
        for line in &view.response {
            let _ = writeln!(out, "  {line}");
        }
    }
    render_live(
        &mut out,
        view.validation.as_ref(),
        &view.checks,
        view.resolve_error.as_deref(),
    );
    out
}

/// `A`, `aaaa`, `TYPE65`, `28`.
fn parse_qtype(text: &str) -> anyhow::Result<u16> {
    juris_server::codes::rtype::parse(text)
        .with_context(|| format!("--qtype {text:?}: not a record type"))
}

#[cfg(test)]
#[allow(clippy::unwrap_used, reason = "test code")]
mod tests {
    use super::*;

    /// The orders of the README's quick start (`examples/orders/`: the Milan court order, a
    /// Piracy Shield feed ticket) load through the same loader as `serve --orders` and block
    /// for a client in Italy, not elsewhere.
    #[test]
    fn the_example_orders_load_and_block_in_italy() {
        let orders = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../examples/orders");
        let mut raw = crate::config::RawConfig::default();
        raw.apply(&crate::config::Overrides {
            orders: Some(orders),
            data_dir: Some(std::env::temp_dir().join("juris-example-orders-test")),
            ..crate::config::Overrides::default()
        });
        let settings = crate::config::Settings::from_raw(&raw).unwrap();
        let ask = |name: &str, country: &str| {
            explain(
                &settings,
                &Request {
                    name: name.into(),
                    qtype: "A".into(),
                    client: "127.0.0.1".parse().unwrap(),
                    ecs: None,
                    country: crate::config::parse_jurisdiction(country),
                    listener: None,
                    structured: false,
                    resolve: false,
                },
            )
            .unwrap()
        };
        let milan = ask("www.kickasstorrents.to", "IT");
        assert_eq!(milan.verdict, "block");
        assert_eq!(milan.fired.unwrap().order, "IT-MI-2024-0001");
        let ticket = ask("live-football.example", "IT");
        assert_eq!(ticket.fired.unwrap().order, "IT-AGCOM-PS-2024-0042");
        assert_eq!(ask("www.kickasstorrents.to", "FR").verdict, "allow");
    }

    #[test]
    fn qtypes() {
        assert_eq!(parse_qtype("a").unwrap(), 1);
        assert_eq!(parse_qtype("AAAA").unwrap(), 28);
        assert_eq!(parse_qtype("TYPE65").unwrap(), 65);
        assert!(parse_qtype("nonsense").is_err());
    }

    fn request(name: &str, country: &str) -> Request {
        Request {
            name: name.to_owned(),
            qtype: "A".to_owned(),
            client: IpAddr::from([127, 0, 0, 1]),
            ecs: None,
            country: crate::config::parse_jurisdiction(country),
            listener: None,
            structured: false,
            resolve: false,
        }
    }

    #[test]
    fn explain_sees_the_orders_in_the_store() {
        let dir = tempfile::tempdir().unwrap();
        let toml = format!("[server]\ndata_dir = \"{}\"\n", dir.path().display());
        let settings =
            Settings::from_raw(&crate::config::RawConfig::from_toml(&toml, "test").unwrap())
                .unwrap();
        let control = crate::control::open(&settings, Arc::new(SystemClock)).unwrap();
        let order = juris_policy::Order::from_json(
            br#"{"id": "IT-STORE-1", "kind": "court_order", "authority": "Tribunale di Milano",
                "jurisdictions": ["IT"], "action": "nxdomain", "state": "active",
                "targets": [{"type": "subtree", "value": "stored.example"}]}"#,
        )
        .unwrap();
        let admin = juris_control::Actor {
            name: "admin".into(),
            role: juris_control::Role::Admin,
        };
        control
            .apply_order(&admin, order, true, true, "test")
            .unwrap();
        drop(control);

        let report = explain(&settings, &request("www.stored.example", "IT")).unwrap();
        assert_eq!(report.verdict, "block", "{}", report.render());
        assert_eq!(report.fired.as_ref().unwrap().order, "IT-STORE-1");
        assert_eq!(report.fired.as_ref().unwrap().action, "nxdomain");
        assert_eq!(report.trigger.as_deref(), Some("query name"));
        assert_eq!(report.response.as_ref().unwrap().rcode, "NXDOMAIN");
        let report = explain(&settings, &request("www.stored.example", "DE")).unwrap();
        assert_eq!(report.verdict, "allow", "{}", report.render());
    }

    #[test]
    fn explain_without_a_store_does_not_create_one() {
        let dir = tempfile::tempdir().unwrap();
        let data = dir.path().join("data");
        let toml = format!("[server]\ndata_dir = \"{}\"\n", data.display());
        let settings =
            Settings::from_raw(&crate::config::RawConfig::from_toml(&toml, "test").unwrap())
                .unwrap();
        let report = explain(&settings, &request("www.example.com", "IT")).unwrap();
        assert_eq!(report.verdict, "allow");
        assert!(!data.exists());
    }
}
