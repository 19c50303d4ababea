//! RPZ zone files (draft-vixie-dnsop-dns-rpz): import of triggers and actions into an order, and
//! export of the enforced policy of one jurisdiction as a zone.
//!
//! # Limitations
//! - Triggers: QNAME (`name`, `*.name`), `rpz-ip`, `rpz-nsdname`, `rpz-nsip`. `rpz-client-ip` is
//!   refused (juris scopes by jurisdiction, not by client address).
//! - Actions: `CNAME .` (NXDOMAIN) and `CNAME *.` (NODATA). `rpz-passthru.`, `rpz-drop.`,
//!   `rpz-tcp-only.` and local data (forged answers) are refused with the line number.
//! - A wildcard `*.name` without the apex `name` is imported as a `subtree` target, which also
//!   blocks `name` itself (reported as a warning).
//! - `$INCLUDE` and `$GENERATE` are refused. Quoted strings are only understood well enough to
//!   skip comments inside them.
//! - Export: orders answering REFUSED are exported as NXDOMAIN (RPZ has no REFUSED action; the
//!   zone says so in a comment); `nsdname`/`nsip` targets are exported as `rpz-nsdname` and
//!   `rpz-nsip` triggers; time limits (`effective_from`, `windows`) cannot be expressed, so only
//!   orders in force at export time are included (an extension only while its parent is).

use std::collections::BTreeMap;
use std::net::IpAddr;

use ipnet::IpNet;
use juris_policy::{Action, TargetKind};

use crate::error::ControlError;

/// One trigger and its action.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RpzRecord {
    /// Line of the record (1-based).
    pub line: usize,
    /// Target kind.
    pub kind: TargetKind,
    /// Target value (name, or prefix).
    pub value: String,
    /// Action.
    pub action: Action,
}

/// A parsed zone.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RpzZone {
    /// The zone's apex (lower case, with trailing dot).
    pub origin: String,
    /// The triggers.
    pub records: Vec<RpzRecord>,
    /// Records imported with a change of meaning.
    pub warnings: Vec<String>,
}

/// The human name of an action.
pub fn action_name(action: Action) -> &'static str {
    match action {
        Action::Nxdomain => "nxdomain (CNAME .)",
        Action::Nodata => "nodata (CNAME *.)",
        Action::Refused => "refused",
    }
}

/// (line, action) of a name's exact trigger and of its wildcard trigger.
type NameTriggers = (Option<(usize, Action)>, Option<(usize, Action)>);

/// Parses an RPZ zone file.
pub fn parse(text: &str) -> Result<RpzZone, ControlError> {
    let mut origin: Option<String> = None;
    let mut apex: Option<String> = None;
    let mut last_owner: Option<String> = None;
    // name → (apex record, wildcard record): (line, action)
    let mut names: BTreeMap<String, NameTriggers> = BTreeMap::new();
    let mut records = Vec::new();
    for (line_number, line) in logical_lines(text)? {
        let bad = |reason: String| ControlError::invalid(format!("line {line_number}"), reason);
        let starts_blank = line.starts_with([' ', '\t']);
        let mut tokens: Vec<&str> = line.split_whitespace().collect();
        if tokens.is_empty() {
            continue;
        }
        if let Some(directive) = tokens.first().filter(|t| t.starts_with('$')) {
            match directive.to_ascii_uppercase().as_str() {
                "$ORIGIN" => {
                    let name = tokens
                        .get(1)
                        .ok_or_else(|| bad("$ORIGIN needs a name".into()))?;
                    origin = Some(absolute(name, origin.as_deref()).map_err(bad)?);
                }
                "$TTL" => {}
                other => return Err(bad(format!("{other} is not supported"))),
            }
            continue;
        }
        let owner_text = if starts_blank {
            last_owner
                .clone()
                .ok_or_else(|| bad("a record without an owner name".into()))?
        } else {
            let owner = tokens.remove(0);
            let owner = if owner == "@" {
                origin
                    .clone()
                    .ok_or_else(|| bad("@ without $ORIGIN".into()))?
            } else {
                absolute(owner, origin.as_deref()).map_err(bad)?
            };
            last_owner = Some(owner.clone());
            owner
        };
        // Optional TTL and class, in either order.
        while let Some(token) = tokens.first() {
            if token.bytes().all(|b| b.is_ascii_digit()) || token.eq_ignore_ascii_case("IN") {
                tokens.remove(0);
            } else {
                break;
            }
        }
        let rtype = tokens
            .first()
            .ok_or_else(|| bad("a record without a type".into()))?
            .to_ascii_uppercase();
        let rdata = &tokens[1..];
        if rtype == "SOA" {
            if apex.is_none() {
                apex = Some(owner_text.clone());
            }
            continue;
        }
        let zone = apex
            .clone()
            .or_else(|| origin.clone())
            .ok_or_else(|| bad("no SOA record or $ORIGIN before the first trigger".into()))?;
        if owner_text == zone {
            // NS, TXT and other records at the apex belong to the zone, not to the policy.
            continue;
        }
        let Some(trigger) = owner_text
            .strip_suffix(&zone)
            .and_then(|t| t.strip_suffix('.'))
        else {
            return Err(bad(format!("{owner_text} is outside the zone {zone}")));
        };
        if rtype != "CNAME" {
            return Err(bad(format!(
                "{rtype} records (local data: forged answers) are not supported; use CNAME . or CNAME *."
            )));
        }
        let target = rdata
            .first()
            .ok_or_else(|| bad("CNAME without a target".into()))?
            .to_ascii_lowercase();
        let action = match target.as_str() {
            "." => Action::Nxdomain,
            "*." => Action::Nodata,
            "rpz-passthru." | "rpz-drop." | "rpz-tcp-only." => {
                return Err(bad(format!("the action {target} is not supported")))
            }
            other => {
                return Err(bad(format!(
                    "CNAME {other} (a rewrite to another name) is not supported"
                )))
            }
        };
        if let Some(prefix) = trigger.strip_suffix(".rpz-ip") {
            let net = parse_rpz_ip(prefix).map_err(bad)?;
            records.push(record(line_number, TargetKind::Ip, net.to_string(), action));
        } else if let Some(prefix) = trigger.strip_suffix(".rpz-nsip") {
            let net = parse_rpz_ip(prefix).map_err(bad)?;
            records.push(record(
                line_number,
                TargetKind::Nsip,
                net.to_string(),
                action,
            ));
        } else if let Some(name) = trigger.strip_suffix(".rpz-nsdname") {
            records.push(record(
                line_number,
                TargetKind::Nsdname,
                name.to_owned(),
                action,
            ));
        } else if trigger.ends_with(".rpz-client-ip") {
            return Err(bad("rpz-client-ip triggers are not supported".into()));
        } else if let Some(base) = trigger.strip_prefix("*.") {
            names.entry(base.to_owned()).or_default().1 = Some((line_number, action));
        } else {
            names.entry(trigger.to_owned()).or_default().0 = Some((line_number, action));
        }
    }
    let mut warnings = Vec::new();
    for (name, (exact, wildcard)) in names {
        match (exact, wildcard) {
            (Some((line, a)), Some((wline, w))) => {
                if a != w {
                    return Err(ControlError::invalid(
                        format!("line {wline}"),
                        format!(
                            "*.{name} has action {} but {name} (line {line}) has {}",
                            action_name(w),
                            action_name(a)
                        ),
                    ));
                }
                records.push(record(line, TargetKind::Subtree, name, a));
            }
            (Some((line, a)), None) => records.push(record(line, TargetKind::Domain, name, a)),
            (None, Some((line, w))) => {
                warnings.push(format!(
                    "line {line}: *.{name} without {name} imported as subtree {name}, which also blocks {name} itself"
                ));
                records.push(record(line, TargetKind::Subtree, name, w));
            }
            (None, None) => {}
        }
    }
    records.sort_by_key(|r| r.line);
    Ok(RpzZone {
        origin: apex.or(origin).unwrap_or_default(),
        records,
        warnings,
    })
}

fn record(line: usize, kind: TargetKind, value: String, action: Action) -> RpzRecord {
    RpzRecord {
        line,
        kind,
        value,
        action,
    }
}

fn absolute(name: &str, origin: Option<&str>) -> Result<String, String> {
    let name = name.to_ascii_lowercase();
    if name.ends_with('.') {
        return Ok(name);
    }
    match origin {
        Some(".") => Ok(format!("{name}.")),
        Some(origin) => Ok(format!("{name}.{origin}")),
        None => Err(format!("relative name {name} without $ORIGIN")),
    }
}

/// Comments removed, parentheses joined: (first line number, text).
fn logical_lines(text: &str) -> Result<Vec<(usize, String)>, ControlError> {
    let mut out = Vec::new();
    let mut current = String::new();
    let mut start = 0;
    let mut depth = 0_i32;
    for (i, line) in text.lines().enumerate() {
        let mut in_quotes = false;
        let mut stripped = String::with_capacity(line.len());
        for c in line.chars() {
            match c {
                '"' => {
                    in_quotes = !in_quotes;
                    stripped.push(c);
                }
                ';' if !in_quotes => break,
                '(' if !in_quotes => {
                    depth += 1;
                    stripped.push(' ');
                }
                ')' if !in_quotes => {
                    depth -= 1;
                    stripped.push(' ');
                }
                _ => stripped.push(c),
            }
        }
        if depth < 0 {
            return Err(ControlError::invalid(
                format!("line {}", i + 1),
                "unbalanced ')'",
            ));
        }
        if current.is_empty() {
            start = i + 1;
            current = stripped;
        } else {
            current.push(' ');
            current.push_str(stripped.trim());
        }
        if depth == 0 {
            if !current.trim().is_empty() {
                out.push((start, std::mem::take(&mut current)));
            } else {
                current.clear();
            }
        }
    }
    if depth != 0 {
        return Err(ControlError::invalid(
            format!("line {start}"),
            "unbalanced '('",
        ));
    }
    Ok(out)
}

/// `32.7.97.114.188` → 188.114.97.7/32; `48.zz.1.b8d.2001` → 2001:b8d:1::/48.
fn parse_rpz_ip(text: &str) -> Result<IpNet, String> {
    let labels: Vec<&str> = text.split('.').collect();
    let bad = || format!("{text}.rpz-ip is not a valid RPZ address trigger");
    let (prefix, rest) = labels.split_first().ok_or_else(bad)?;
    let prefix: u8 = prefix.parse().map_err(|_| bad())?;
    let address: IpAddr = if rest.len() == 4 && rest.iter().all(|l| l.parse::<u8>().is_ok()) {
        let octets: Vec<&str> = rest.iter().rev().copied().collect();
        octets.join(".").parse().map_err(|_| bad())?
    } else {
        // Groups from the top; `zz` stands for the `::` run.
        let groups: Vec<&str> = rest
            .iter()
            .rev()
            .map(|g| if *g == "zz" { "" } else { g })
            .collect();
        let mut text6 = groups.join(":");
        if text6.starts_with(':') {
            text6.insert(0, ':');
        }
        if text6.ends_with(':') {
            text6.push(':');
        }
        text6.parse().map_err(|_| bad())?
    };
    let net = IpNet::new(address, prefix).map_err(|_| bad())?;
    if net.trunc() != net {
        return Err(format!("{text}.rpz-ip has host bits set"));
    }
    Ok(net)
}

fn rpz_ip_owner(net: &IpNet) -> String {
    match net {
        IpNet::V4(v4) => {
            let o = v4.network().octets();
            format!("{}.{}.{}.{}.{}", v4.prefix_len(), o[3], o[2], o[1], o[0])
        }
        IpNet::V6(v6) => {
            let groups: Vec<String> = v6
                .network()
                .segments()
                .iter()
                .rev()
                .map(|g| format!("{g:x}"))
                .collect();
            format!("{}.{}", v6.prefix_len(), groups.join("."))
        }
    }
}

/// One order's part of an exported zone.
#[derive(Debug, Clone)]
pub struct ExportOrder {
    /// Id.
    pub id: String,
    /// A one-line description (authority, reference).
    pub description: String,
    /// The answer.
    pub action: Action,
    /// Whether `ip` targets are exported.
    pub block_addresses: bool,
    /// (kind, normalised value).
    pub targets: Vec<(TargetKind, String)>,
}

/// The RPZ action of an order: `.` (NXDOMAIN) or `*.` (NODATA). REFUSED, which RPZ cannot
/// express, is published as NXDOMAIN (the closest: the name is not answered either way).
pub fn action_rdata(action: Action) -> &'static str {
    match action {
        Action::Nxdomain | Action::Refused => ".",
        Action::Nodata => "*.",
    }
}

/// The triggers of one order: (owner relative to the zone's apex, CNAME target `.` or `*.`).
/// A subtree is its name and `*.name`; `ip` targets only with `block_addresses`.
pub fn triggers(order: &ExportOrder) -> Vec<(String, &'static str)> {
    let rdata = action_rdata(order.action);
    let mut out = Vec::with_capacity(order.targets.len());
    for (kind, value) in &order.targets {
        match kind {
            TargetKind::Domain => out.push((value.clone(), rdata)),
            TargetKind::Subtree => {
                out.push((value.clone(), rdata));
                out.push((format!("*.{value}"), rdata));
            }
            TargetKind::Ip if order.block_addresses => {
                if let Ok(net) = value.parse::<IpNet>() {
                    out.push((format!("{}.rpz-ip", rpz_ip_owner(&net)), rdata));
                }
            }
            TargetKind::Nsdname => out.push((format!("{value}.rpz-nsdname"), rdata)),
            TargetKind::Nsip => {
                if let Ok(net) = value.parse::<IpNet>() {
                    out.push((format!("{}.rpz-nsip", rpz_ip_owner(&net)), rdata));
                }
            }
            TargetKind::Ip => {}
        }
    }
    out
}

/// Renders an RPZ zone named `origin` (absolute, with trailing dot) for `orders`.
pub fn render(origin: &str, serial: u64, orders: &[ExportOrder]) -> String {
    let mut out = String::new();
    out.push_str(&format!("$ORIGIN {origin}\n$TTL 30\n"));
    out.push_str(&format!(
        "@ IN SOA localhost. hostmaster.localhost. ( {serial} 3600 600 86400 30 )\n@ IN NS localhost.\n"
    ));
    for order in orders {
        out.push_str(&format!("; order {}: {}\n", order.id, order.description));
        if order.action == Action::Refused {
            out.push_str(
                "; this order answers REFUSED, which RPZ cannot express: exported as NXDOMAIN\n",
            );
        }
        for (owner, rdata) in triggers(order) {
            out.push_str(&format!("{owner} CNAME {rdata}\n"));
        }
    }
    out
}

#[cfg(test)]
#[allow(clippy::unwrap_used, reason = "test code")]
mod tests {
    use super::*;

    #[test]
    fn parses_triggers_and_actions() {
        let zone = parse(
            "$ORIGIN rpz.example.\n$TTL 60\n@ SOA ns. host. ( 1 2 3\n 4 5 )\n  NS ns.\n\
             bad.to CNAME . ; comment\n*.bad.to CNAME .\nexact.example 30 IN CNAME .\n\
             *.wild.example CNAME .\n32.7.97.114.188.rpz-ip CNAME .\n\
             48.zz.1.db8.2001.rpz-ip CNAME .\nns.bad.to.rpz-nsdname CNAME .\n",
        )
        .unwrap();
        let got: Vec<(TargetKind, &str)> = zone
            .records
            .iter()
            .map(|r| (r.kind, r.value.as_str()))
            .collect();
        assert_eq!(
            got,
            vec![
                (TargetKind::Subtree, "bad.to"),
                (TargetKind::Domain, "exact.example"),
                (TargetKind::Subtree, "wild.example"),
                (TargetKind::Ip, "188.114.97.7/32"),
                (TargetKind::Ip, "2001:db8:1::/48"),
                (TargetKind::Nsdname, "ns.bad.to"),
            ]
        );
        assert_eq!(zone.records[0].line, 6);
        assert_eq!(zone.warnings.len(), 1, "{:?}", zone.warnings);
        let nodata = parse("$ORIGIN z.\nx.example CNAME *.\n").unwrap();
        assert_eq!(nodata.records[0].action, Action::Nodata);
    }

    #[test]
    fn refuses_what_it_cannot_express() {
        for (zone, line) in [
            ("$ORIGIN z.\nx.example A 192.0.2.1\n", "line 2"),
            ("$ORIGIN z.\n\nx.example CNAME rpz-passthru.\n", "line 3"),
            ("$ORIGIN z.\nx.example CNAME other.example.\n", "line 2"),
            ("$ORIGIN z.\nx.example.other. CNAME .\n", "line 2"),
            ("x.example CNAME .\n", "line 1"),
            ("$ORIGIN z.\n$INCLUDE f\n", "line 2"),
            ("$ORIGIN z.\n@ SOA ( 1 2\n", "line 2"),
        ] {
            let error = parse(zone).unwrap_err();
            assert_eq!(error.field(), line, "{zone}: {error}");
        }
    }

    #[test]
    fn render_round_trips() {
        let orders = [ExportOrder {
            id: "A".into(),
            description: "Court".into(),
            action: Action::Nxdomain,
            block_addresses: true,
            targets: vec![
                (TargetKind::Subtree, "bad.to".into()),
                (TargetKind::Domain, "x.example".into()),
                (TargetKind::Ip, "188.114.97.7/32".into()),
                (TargetKind::Ip, "2001:db8:1::/48".into()),
                (TargetKind::Nsdname, "ns1.bad-dns.example".into()),
                (TargetKind::Nsip, "198.51.100.0/24".into()),
            ],
        }];
        let text = render("it.rpz.invalid.", 7, &orders);
        let zone = parse(&text).unwrap();
        let mut got: Vec<(TargetKind, String)> = zone
            .records
            .into_iter()
            .map(|r| (r.kind, r.value))
            .collect();
        got.sort();
        let mut want = orders[0].targets.clone();
        want.sort();
        assert_eq!(got, want);
        assert!(zone.warnings.is_empty());
    }
}
