//! Validation: an [`Order`] as written becomes a [`ValidatedOrder`] (normalised names, parsed
//! prefixes, expanded jurisdictions) or a list of errors, each naming the field and the reason.

use std::fmt;
use std::sync::Arc;

use ipnet::IpNet;
use jiff::Timestamp;

use crate::country::{Country, CountrySet, EU_MEMBERS};
use crate::name::{normalize_name, NameError};
use crate::order::{
    Action, Notice, Order, OrderKind, OrderState, Override, Target, TargetKind, Window,
};

/// Tells whether a normalised name is a public suffix (`co.uk`, `github.io`). The control plane
/// plugs in a real Public Suffix List; any `Fn(&str) -> bool` works. Single-label names (TLDs) are
/// always refused without an override, whatever this says.
pub trait PublicSuffixes: Send + Sync {
    /// Whether `name` (lower-case, punycode, no trailing dot) is a public suffix.
    fn is_public_suffix(&self, name: &str) -> bool;
}

impl<F: Fn(&str) -> bool + Send + Sync> PublicSuffixes for F {
    fn is_public_suffix(&self, name: &str) -> bool {
        self(name)
    }
}

/// No list of public suffixes: only the built-in single-label (TLD) check applies.
#[derive(Debug, Clone, Copy, Default)]
pub struct NoPublicSuffixes;

impl PublicSuffixes for NoPublicSuffixes {
    fn is_public_suffix(&self, _name: &str) -> bool {
        false
    }
}

/// Limits and plug-ins for validation.
#[derive(Clone, Copy)]
pub struct ValidationOptions<'a> {
    /// The public suffix check. Default: [`NoPublicSuffixes`].
    pub public_suffixes: &'a dyn PublicSuffixes,
    /// Most targets one order may hold. Default: 1,000,000.
    pub max_targets: usize,
    /// Most windows one order may hold. Default: 10,000.
    pub max_windows: usize,
    /// IPv4 prefixes shorter than this need an override. Default: 8.
    pub min_ipv4_prefix: u8,
    /// IPv6 prefixes shorter than this need an override. Default: 32.
    pub min_ipv6_prefix: u8,
    /// Longest free-text field (authority, reference, notice text, ...), in bytes. Default: 4096.
    pub max_text: usize,
}

impl Default for ValidationOptions<'_> {
    fn default() -> Self {
        ValidationOptions {
            public_suffixes: &NoPublicSuffixes,
            max_targets: 1_000_000,
            max_windows: 10_000,
            min_ipv4_prefix: 8,
            min_ipv6_prefix: 32,
            max_text: 4096,
        }
    }
}

impl fmt::Debug for ValidationOptions<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ValidationOptions")
            .field("max_targets", &self.max_targets)
            .field("max_windows", &self.max_windows)
            .field("min_ipv4_prefix", &self.min_ipv4_prefix)
            .field("min_ipv6_prefix", &self.min_ipv6_prefix)
            .field("max_text", &self.max_text)
            .finish_non_exhaustive()
    }
}

/// One problem with one field of an order: `targets[2].value: "com" is a top-level domain; add an
/// override to block it`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{path}: {problem}")]
pub struct ValidationError {
    /// The field, e.g. `targets[2].value`, `jurisdictions[0]`, `windows[1]`.
    pub path: String,
    /// What is wrong with it.
    pub problem: Problem,
}

/// What is wrong with a field.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Problem {
    /// A required field is empty.
    #[error("must not be empty")]
    Empty,
    /// A text field is too long.
    #[error("is {len} bytes long (the limit is {max})")]
    TooLong {
        /// Its length.
        len: usize,
        /// The limit.
        max: usize,
    },
    /// An id holds characters other than printable ASCII without spaces.
    #[error("{0:?} may hold only printable ASCII without spaces")]
    BadId(String),
    /// A name target is not a usable domain name.
    #[error("{value:?} is not a valid domain name: {reason}")]
    BadName {
        /// The value as written.
        value: String,
        /// Why.
        reason: NameError,
    },
    /// A single-label name.
    #[error("{0:?} is a top-level domain; add an override to block it")]
    TopLevelDomain(String),
    /// A public suffix.
    #[error("{0:?} is a public suffix; add an override to block it")]
    PublicSuffix(String),
    /// Not an IP address or prefix.
    #[error("{0:?} is not an IP address or prefix")]
    BadAddress(String),
    /// A prefix with host bits set.
    #[error("{value:?} has host bits set; did you mean {suggestion}?")]
    HostBits {
        /// The value as written.
        value: String,
        /// The prefix with host bits cleared.
        suggestion: String,
    },
    /// A very broad prefix.
    #[error("{value:?} is broader than /{min}; add an override to block it")]
    BroadPrefix {
        /// The value as written.
        value: String,
        /// The shortest prefix length allowed without override.
        min: u8,
    },
    /// Not a jurisdiction.
    #[error("{0:?} is not an ISO 3166-1 alpha-2 code, \"EU\" or \"*\"")]
    BadJurisdiction(String),
    /// Too many targets.
    #[error("{count} targets exceed the limit of {max}")]
    TooManyTargets {
        /// How many there are.
        count: usize,
        /// The limit.
        max: usize,
    },
    /// Too many windows.
    #[error("{count} windows exceed the limit of {max}")]
    TooManyWindows {
        /// How many there are.
        count: usize,
        /// The limit.
        max: usize,
    },
    /// A window that ends before it starts.
    #[error("start {start} is not before end {end}")]
    EmptyWindow {
        /// Its start.
        start: Timestamp,
        /// Its end.
        end: Timestamp,
    },
    /// `expires_at` not after `effective_from`.
    #[error("{expires_at} is not after effective_from {effective_from}")]
    ExpiresBeforeEffective {
        /// When the order takes effect.
        effective_from: Timestamp,
        /// When it expires.
        expires_at: Timestamp,
    },
    /// `comply_by` before `effective_from`.
    #[error("{comply_by} is before effective_from {effective_from}")]
    DeadlineBeforeEffective {
        /// When the order takes effect.
        effective_from: Timestamp,
        /// The deadline.
        comply_by: Timestamp,
    },
    /// An extension without a parent.
    #[error("an order of kind extension needs a parent order")]
    MissingParent,
    /// An order naming itself as parent.
    #[error("an order cannot be its own parent")]
    OwnParent,
}

/// All problems found in one order (the first 100 are kept; `total` counts them all).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub struct ValidationErrors {
    /// The order's id as written.
    pub order_id: String,
    /// The first problems, in field order.
    pub errors: Vec<ValidationError>,
    /// How many problems there are in all.
    pub total: usize,
}

impl fmt::Display for ValidationErrors {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "order {:?} is invalid: ", self.order_id)?;
        for (i, error) in self.errors.iter().enumerate() {
            if i > 0 {
                f.write_str("; ")?;
            }
            write!(f, "{error}")?;
        }
        if self.total > self.errors.len() {
            write!(f, "; and {} more", self.total - self.errors.len())?;
        }
        Ok(())
    }
}

/// Everything about an order except its targets, validated: what a verdict, explain, EDE text and
/// counters report. Shared (`Arc`) between the compiled policy and its verdicts.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OrderInfo {
    /// The order's id.
    pub id: String,
    /// Its kind.
    pub kind: OrderKind,
    /// The issuing authority.
    pub authority: String,
    /// The case reference.
    pub reference: String,
    /// The legal basis.
    pub legal_basis: String,
    /// Who asked for it.
    pub requested_by: Vec<String>,
    /// The jurisdictions as written, normalised to upper case (`EU` kept as written).
    pub jurisdictions: Vec<String>,
    /// The same, expanded into a set (`EU` → 27 members, `*` → global).
    pub countries: CountrySet,
    /// The answer to give.
    pub action: Action,
    /// Whether `ip` targets are enforced.
    pub block_addresses: bool,
    /// The state.
    pub state: OrderState,
    /// From when it applies.
    pub effective_from: Option<Timestamp>,
    /// The deadline (informational).
    pub comply_by: Option<Timestamp>,
    /// When it stops.
    pub expires_at: Option<Timestamp>,
    /// Windows, sorted by start, overlapping ones merged.
    pub windows: Vec<Window>,
    /// The notice.
    pub notice: Notice,
    /// The parent order.
    pub parent: Option<String>,
    /// Recorded overrides.
    pub overrides: Vec<Override>,
}

/// A validated target: a normalised name or a parsed prefix.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ValidatedTarget {
    kind: TargetKind,
    value: TargetValue,
}

/// The value of a validated target.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum TargetValue {
    /// A lower-case punycode name without trailing dot (`subtree`, `domain`, `nsdname`).
    Name(Box<str>),
    /// A prefix with host bits clear (`ip`, `nsip`; a single address is a /32 or /128).
    Prefix(IpNet),
}

/// An order that passed validation: the only input the compiler takes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ValidatedOrder {
    info: Arc<OrderInfo>,
    targets: Vec<ValidatedTarget>,
}

impl Order {
    /// Checks and normalises the order. Every problem is reported with its field path.
    pub fn validate(
        &self,
        options: &ValidationOptions<'_>,
    ) -> Result<ValidatedOrder, ValidationErrors> {
        let mut errors = Errors::default();
        let text = |errors: &mut Errors, path: &str, value: &str, required: bool| {
            if required && value.trim().is_empty() {
                errors.push(path, || Problem::Empty);
            } else if value.len() > options.max_text {
                errors.push(path, || Problem::TooLong {
                    len: value.len(),
                    max: options.max_text,
                });
            }
        };

        // id
        if self.id.is_empty() {
            errors.push("id", || Problem::Empty);
        } else if self.id.len() > 128 {
            errors.push("id", || Problem::TooLong {
                len: self.id.len(),
                max: 128,
            });
        } else if !self.id.bytes().all(|b| b.is_ascii_graphic()) {
            errors.push("id", || Problem::BadId(self.id.clone()));
        }
        text(&mut errors, "authority", &self.authority, true);
        text(&mut errors, "reference", &self.reference, false);
        text(&mut errors, "legal_basis", &self.legal_basis, false);
        for (i, who) in self.requested_by.iter().enumerate() {
            text(&mut errors, &format!("requested_by[{i}]"), who, true);
        }
        text(&mut errors, "notice.text", &self.notice.text, false);
        text(&mut errors, "notice.lang", &self.notice.lang, false);
        text(&mut errors, "notice.url", &self.notice.url, false);

        // jurisdictions
        let mut countries = CountrySet::empty();
        let mut jurisdictions = Vec::with_capacity(self.jurisdictions.len());
        if self.jurisdictions.is_empty() {
            errors.push("jurisdictions", || Problem::Empty);
        }
        for (i, code) in self.jurisdictions.iter().enumerate() {
            let upper = code.trim().to_ascii_uppercase();
            if upper == "*" {
                countries = CountrySet::global();
            } else if upper == "EU" {
                for member in EU_MEMBERS {
                    if let Ok(country) = member.parse::<Country>() {
                        countries.insert(country);
                    }
                }
            } else {
                match upper.parse::<Country>() {
                    Ok(country) if country.is_assigned() => countries.insert(country),
                    _ => {
                        errors.push(&format!("jurisdictions[{i}]"), || {
                            Problem::BadJurisdiction(code.clone())
                        });
                        continue;
                    }
                }
            }
            jurisdictions.push(upper);
        }
        if countries.is_global() {
            // `*` binds everyone; remembering the others would only confuse explain output.
            countries = CountrySet::global();
        }

        // overrides (normalised the way their targets are)
        let mut overridden: Vec<String> = Vec::new();
        for (i, item) in self.overrides.iter().enumerate() {
            text(
                &mut errors,
                &format!("overrides[{i}].reason"),
                &item.reason,
                true,
            );
            let value = item.target.trim();
            let normal = match value.parse::<IpNet>() {
                Ok(net) => net.to_string(),
                Err(_) => normalize_name(value).unwrap_or_else(|_| value.to_ascii_lowercase()),
            };
            overridden.push(normal);
        }
        let is_overridden = |value: &str| overridden.iter().any(|o| o == value);

        // targets
        if self.targets.len() > options.max_targets {
            errors.push("targets", || Problem::TooManyTargets {
                count: self.targets.len(),
                max: options.max_targets,
            });
        }
        let mut targets = Vec::with_capacity(self.targets.len().min(options.max_targets));
        for (i, target) in self.targets.iter().enumerate().take(options.max_targets) {
            match validate_target(target, options, &is_overridden) {
                Ok(valid) => targets.push(valid),
                Err(problem) => errors.push(&format!("targets[{i}].value"), || problem),
            }
        }

        // time
        if let (Some(from), Some(until)) = (self.effective_from, self.expires_at) {
            if until <= from {
                errors.push("expires_at", || Problem::ExpiresBeforeEffective {
                    effective_from: from,
                    expires_at: until,
                });
            }
        }
        if let (Some(from), Some(deadline)) = (self.effective_from, self.comply_by) {
            if deadline < from {
                errors.push("comply_by", || Problem::DeadlineBeforeEffective {
                    effective_from: from,
                    comply_by: deadline,
                });
            }
        }
        if self.windows.len() > options.max_windows {
            errors.push("windows", || Problem::TooManyWindows {
                count: self.windows.len(),
                max: options.max_windows,
            });
        }
        for (i, window) in self.windows.iter().enumerate() {
            if window.start >= window.end {
                errors.push(&format!("windows[{i}]"), || Problem::EmptyWindow {
                    start: window.start,
                    end: window.end,
                });
            }
        }

        // parent
        match (&self.parent, self.kind) {
            (None, OrderKind::Extension) => errors.push("parent", || Problem::MissingParent),
            (Some(parent), _) if *parent == self.id => errors.push("parent", || Problem::OwnParent),
            (Some(parent), _) if parent.is_empty() => errors.push("parent", || Problem::Empty),
            _ => {}
        }

        if errors.total > 0 {
            return Err(ValidationErrors {
                order_id: self.id.clone(),
                errors: errors.list,
                total: errors.total,
            });
        }

        let info = OrderInfo {
            id: self.id.clone(),
            kind: self.kind,
            authority: self.authority.trim().to_owned(),
            reference: self.reference.trim().to_owned(),
            legal_basis: self.legal_basis.clone(),
            requested_by: self.requested_by.clone(),
            jurisdictions,
            countries,
            action: self.action,
            block_addresses: self.block_addresses,
            state: self.state,
            effective_from: self.effective_from,
            comply_by: self.comply_by,
            expires_at: self.expires_at,
            windows: merge_windows(&self.windows),
            notice: self.notice.clone(),
            parent: self.parent.clone(),
            overrides: self.overrides.clone(),
        };
        Ok(ValidatedOrder {
            info: Arc::new(info),
            targets,
        })
    }
}

fn validate_target(
    target: &Target,
    options: &ValidationOptions<'_>,
    is_overridden: &dyn Fn(&str) -> bool,
) -> Result<ValidatedTarget, Problem> {
    let kind = target.kind;
    match kind {
        TargetKind::Subtree | TargetKind::Domain | TargetKind::Nsdname => {
            let name = normalize_name(&target.value).map_err(|reason| Problem::BadName {
                value: target.value.clone(),
                reason,
            })?;
            // A name server target that is a TLD or a public suffix would stop every name
            // served by that server: the same override is needed as for a name target.
            if !is_overridden(&name) {
                if !name.contains('.') {
                    return Err(Problem::TopLevelDomain(name));
                }
                if options.public_suffixes.is_public_suffix(&name) {
                    return Err(Problem::PublicSuffix(name));
                }
            }
            Ok(ValidatedTarget {
                kind,
                value: TargetValue::Name(name.into_boxed_str()),
            })
        }
        TargetKind::Ip | TargetKind::Nsip => {
            let value = target.value.trim();
            let net = match value.parse::<IpNet>() {
                Ok(net) => net,
                Err(_) => match value.parse::<std::net::IpAddr>() {
                    Ok(addr) => IpNet::from(addr),
                    Err(_) => return Err(Problem::BadAddress(target.value.clone())),
                },
            };
            if net.trunc() != net {
                return Err(Problem::HostBits {
                    value: target.value.clone(),
                    suggestion: net.trunc().to_string(),
                });
            }
            let min = match net {
                IpNet::V4(_) => options.min_ipv4_prefix,
                IpNet::V6(_) => options.min_ipv6_prefix,
            };
            if net.prefix_len() < min && !is_overridden(&net.to_string()) {
                return Err(Problem::BroadPrefix {
                    value: target.value.clone(),
                    min,
                });
            }
            Ok(ValidatedTarget {
                kind,
                value: TargetValue::Prefix(net),
            })
        }
    }
}

fn merge_windows(windows: &[Window]) -> Vec<Window> {
    let mut sorted = windows.to_vec();
    sorted.sort_by_key(|w| (w.start, w.end));
    let mut merged: Vec<Window> = Vec::with_capacity(sorted.len());
    for window in sorted {
        match merged.last_mut() {
            Some(last) if window.start <= last.end => last.end = last.end.max(window.end),
            _ => merged.push(window),
        }
    }
    merged
}

#[derive(Default)]
struct Errors {
    list: Vec<ValidationError>,
    total: usize,
}

impl Errors {
    fn push(&mut self, path: &str, problem: impl FnOnce() -> Problem) {
        self.total += 1;
        if self.list.len() < 100 {
            self.list.push(ValidationError {
                path: path.to_owned(),
                problem: problem(),
            });
        }
    }
}

impl ValidatedTarget {
    /// A target validated before, with the same rules, and kept in its normalised form (an
    /// edge's snapshot records the digest of the rules it was validated with). Only the form
    /// is checked — a name as [`normalize_name`](crate::normalize_name) writes it (limits,
    /// lower-case host-name alphabet), a prefix without host bits, the value's type fitting the
    /// kind — not the IDNA mapping, the TLD, Public-Suffix or broad-prefix checks. `None`: not
    /// in that form.
    pub fn from_normal(kind: TargetKind, value: &str) -> Option<ValidatedTarget> {
        let value = match kind {
            TargetKind::Subtree | TargetKind::Domain | TargetKind::Nsdname => {
                crate::name::check_normal(value).ok()?;
                TargetValue::Name(value.into())
            }
            TargetKind::Ip | TargetKind::Nsip => {
                let net: IpNet = value.parse().ok()?;
                if net.trunc() != net {
                    return None;
                }
                TargetValue::Prefix(net)
            }
        };
        Some(ValidatedTarget { kind, value })
    }

    /// The kind of target.
    pub fn kind(&self) -> TargetKind {
        self.kind
    }

    /// The normalised value.
    pub fn value(&self) -> &TargetValue {
        &self.value
    }
}

impl fmt::Display for ValidatedTarget {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.value {
            TargetValue::Name(name) => write!(f, "{} {}", self.kind.as_str(), name),
            TargetValue::Prefix(net) => write!(f, "{} {}", self.kind.as_str(), net),
        }
    }
}

impl ValidatedOrder {
    /// Everything but the targets.
    pub fn info(&self) -> &Arc<OrderInfo> {
        &self.info
    }

    /// The order's id.
    pub fn id(&self) -> &str {
        &self.info.id
    }

    /// The targets, normalised, in the order written.
    pub fn targets(&self) -> &[ValidatedTarget] {
        &self.targets
    }

    /// This order (validated without targets) with `targets`, validated before with the same
    /// rules ([`ValidatedTarget::from_normal`]).
    pub fn with_targets(self, targets: Vec<ValidatedTarget>) -> ValidatedOrder {
        ValidatedOrder {
            info: self.info,
            targets,
        }
    }

    /// The same order with another state (a state change needs no re-validation).
    pub fn with_state(&self, state: OrderState) -> ValidatedOrder {
        let mut info = OrderInfo::clone(&self.info);
        info.state = state;
        ValidatedOrder {
            info: Arc::new(info),
            targets: self.targets.clone(),
        }
    }
}

impl OrderInfo {
    /// What a block by this order means (censored, blocked, filtered).
    pub fn meaning(&self) -> crate::order::BlockMeaning {
        self.kind.meaning()
    }

    /// Whether the order is in force at `now` as far as time goes (effective_from, expires_at,
    /// windows); says nothing about state or jurisdiction.
    #[inline]
    pub fn time_status(&self, now: Timestamp) -> TimeStatus {
        if matches!(self.effective_from, Some(from) if now < from) {
            return TimeStatus::NotYetEffective;
        }
        if matches!(self.expires_at, Some(until) if now >= until) {
            return TimeStatus::Expired;
        }
        if !self.windows.is_empty() {
            // Windows are sorted and disjoint: the candidate is the last one starting at or
            // before `now`.
            let after = self.windows.partition_point(|w| w.start <= now);
            let inside = after > 0 && now < self.windows[after - 1].end;
            if !inside {
                return TimeStatus::OutsideWindows;
            }
        }
        TimeStatus::InForce
    }
}

/// Where `now` lies relative to an order's time limits.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TimeStatus {
    /// Inside its validity (and inside a window, if it has windows).
    InForce,
    /// Before effective_from.
    NotYetEffective,
    /// At or after expires_at.
    Expired,
    /// Between windows.
    OutsideWindows,
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used, reason = "test code")]
mod tests {
    use super::*;

    fn order(json_targets: &str) -> Order {
        Order::from_json(
            format!(
                r#"{{"id":"T-1","kind":"court_order","authority":"Court","jurisdictions":["IT"],
                "action":"nxdomain","state":"active","targets":{json_targets}}}"#
            )
            .as_bytes(),
        )
        .unwrap()
    }

    fn first_error(order: &Order) -> String {
        order
            .validate(&ValidationOptions::default())
            .unwrap_err()
            .errors[0]
            .to_string()
    }

    #[test]
    fn tld_needs_override() {
        let o = order(
            r#"[{"type":"subtree","value":"a.to"},{"type":"domain","value":"b.to"},{"type":"subtree","value":"COM"}]"#,
        );
        assert_eq!(
            first_error(&o),
            r#"targets[2].value: "com" is a top-level domain; add an override to block it"#
        );
        let mut o = o;
        o.overrides.push(Override {
            target: "com".into(),
            reason: "test".into(),
            recorded_by: None,
        });
        assert!(o.validate(&ValidationOptions::default()).is_ok());
        o.overrides[0].reason = " ".into();
        assert_eq!(first_error(&o), "overrides[0].reason: must not be empty");
    }

    #[test]
    fn public_suffix_plug_in() {
        let psl = |name: &str| name == "co.uk";
        let options = ValidationOptions {
            public_suffixes: &psl,
            ..ValidationOptions::default()
        };
        let o = order(r#"[{"type":"subtree","value":"Co.UK."}]"#);
        let errors = o.validate(&options).unwrap_err();
        assert_eq!(errors.errors[0].path, "targets[0].value");
        assert_eq!(
            errors.errors[0].problem,
            Problem::PublicSuffix("co.uk".into())
        );
        assert!(order(r#"[{"type":"subtree","value":"bbc.co.uk"}]"#)
            .validate(&options)
            .is_ok());
    }

    #[test]
    fn idna_targets_are_normalised() {
        let o = order(r#"[{"type":"domain","value":"Bücher.example"}]"#);
        let v = o.validate(&ValidationOptions::default()).unwrap();
        assert_eq!(
            v.targets()[0].value(),
            &TargetValue::Name("xn--bcher-kva.example".into())
        );
    }

    #[test]
    fn each_error_names_its_field() {
        let cases: &[(&str, &str)] = &[
            (r#""id":"""#, "id"),
            (r#""id":"a b""#, "id"),
            (r#""authority":"""#, "authority"),
            (r#""jurisdictions":["XX"]"#, "jurisdictions[0]"),
            (r#""jurisdictions":[]"#, "jurisdictions"),
            (
                r#""targets":[{"type":"domain","value":"a..b"}]"#,
                "targets[0].value",
            ),
            (
                r#""targets":[{"type":"ip","value":"300.1.1.1"}]"#,
                "targets[0].value",
            ),
            (
                r#""targets":[{"type":"ip","value":"10.0.0.1/8"}]"#,
                "targets[0].value",
            ),
            (
                r#""targets":[{"type":"ip","value":"0.0.0.0/0"}]"#,
                "targets[0].value",
            ),
            (
                r#""effective_from":"2024-05-02T00:00:00Z","expires_at":"2024-05-01T00:00:00Z""#,
                "expires_at",
            ),
            (
                r#""effective_from":"2024-05-02T00:00:00Z","comply_by":"2024-05-01T00:00:00Z""#,
                "comply_by",
            ),
            (
                r#""windows":[{"start":"2024-05-02T00:00:00Z","end":"2024-05-02T00:00:00Z"}]"#,
                "windows[0]",
            ),
            (r#""kind":"extension""#, "parent"),
            (r#""parent":"T-1""#, "parent"),
        ];
        for (field, path) in cases {
            let mut value: serde_json::Value = serde_json::to_value(order("[]")).unwrap();
            let patch: serde_json::Value = serde_json::from_str(&format!("{{{field}}}")).unwrap();
            for (k, v) in patch.as_object().unwrap() {
                value[k] = v.clone();
            }
            let o: Order = serde_json::from_value(value).unwrap();
            let errors = o.validate(&ValidationOptions::default()).unwrap_err();
            assert_eq!(errors.errors[0].path, *path, "{field}: {errors}");
        }
    }

    #[test]
    fn host_bits_and_addresses() {
        let o = order(r#"[{"type":"ip","value":"203.0.113.7/24"}]"#);
        assert_eq!(
            first_error(&o),
            r#"targets[0].value: "203.0.113.7/24" has host bits set; did you mean 203.0.113.0/24?"#
        );
        let o =
            order(r#"[{"type":"ip","value":"203.0.113.7"},{"type":"ip","value":"2001:db8::/48"}]"#);
        let v = o.validate(&ValidationOptions::default()).unwrap();
        assert_eq!(
            v.targets()[0].value(),
            &TargetValue::Prefix("203.0.113.7/32".parse().unwrap())
        );
    }

    #[test]
    fn jurisdictions_expand() {
        let mut o = order("[]");
        o.jurisdictions = vec!["EU".into(), "ch".into()];
        let v = o.validate(&ValidationOptions::default()).unwrap();
        assert_eq!(v.info().countries.iter().count(), 28);
        assert_eq!(v.info().jurisdictions, ["EU", "CH"]);
        o.jurisdictions = vec!["*".into()];
        let v = o.validate(&ValidationOptions::default()).unwrap();
        assert!(v.info().countries.applies_to(None));
    }

    #[test]
    fn target_limit() {
        let mut o = order(r#"[{"type":"domain","value":"a.b"},{"type":"domain","value":"c.d"}]"#);
        o.targets.push(Target::new(TargetKind::Domain, "e.f"));
        let options = ValidationOptions {
            max_targets: 2,
            ..ValidationOptions::default()
        };
        let errors = o.validate(&options).unwrap_err();
        assert_eq!(
            errors.errors[0].to_string(),
            "targets: 3 targets exceed the limit of 2"
        );
    }

    #[test]
    fn windows_merge_and_time_status() {
        let t = |s: &str| s.parse::<Timestamp>().unwrap();
        let w = |a: &str, b: &str| Window {
            start: t(a),
            end: t(b),
        };
        let mut o = order("[]");
        o.windows = vec![
            w("2024-06-03T00:00:00Z", "2024-06-04T00:00:00Z"),
            w("2024-06-01T00:00:00Z", "2024-06-02T00:00:00Z"),
            w("2024-06-01T12:00:00Z", "2024-06-02T12:00:00Z"),
        ];
        o.expires_at = Some(t("2024-07-01T00:00:00Z"));
        let v = o.validate(&ValidationOptions::default()).unwrap();
        assert_eq!(v.info().windows.len(), 2);
        let s = |x: &str| v.info().time_status(t(x));
        assert_eq!(s("2024-05-31T23:59:59Z"), TimeStatus::OutsideWindows);
        assert_eq!(s("2024-06-01T00:00:00Z"), TimeStatus::InForce);
        assert_eq!(s("2024-06-02T11:00:00Z"), TimeStatus::InForce);
        assert_eq!(s("2024-06-02T12:00:00Z"), TimeStatus::OutsideWindows);
        assert_eq!(s("2024-06-03T05:00:00Z"), TimeStatus::InForce);
        assert_eq!(s("2024-07-01T00:00:00Z"), TimeStatus::Expired);
    }
}
