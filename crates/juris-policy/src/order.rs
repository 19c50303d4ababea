//! The order document: the JSON contract of issue #3, as plain serde types.
//!
//! These types hold what a person or a feed *wrote*; nothing here is checked yet. Turn an
//! [`Order`] into a [`ValidatedOrder`](crate::ValidatedOrder) with
//! [`Order::validate`](crate::Order::validate) before compiling it.

use jiff::Timestamp;
use serde::{Deserialize, Serialize};

/// An enforceable instrument: a court injunction, a regulator order, a feed ticket, an extension
/// of an earlier order, an operator security list or a client-requested filter.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Order {
    /// Stable identifier, e.g. `IT-MI-2024-0001`. Printable ASCII without spaces, ≤ 128 bytes.
    pub id: String,
    /// What kind of instrument this is; decides the EDE code.
    pub kind: OrderKind,
    /// The issuing authority, e.g. `Tribunale di Milano`. Required.
    pub authority: String,
    /// The case reference. Default: empty.
    #[serde(default)]
    pub reference: String,
    /// The legal basis. Default: empty.
    #[serde(default)]
    pub legal_basis: String,
    /// Who asked for the order (rights holders). Default: none.
    #[serde(default)]
    pub requested_by: Vec<String>,
    /// ISO 3166-1 alpha-2 codes, the group `EU`, or `*` for global. At least one.
    pub jurisdictions: Vec<String>,
    /// What the order blocks. Default: none (an order may be entered before its targets).
    #[serde(default)]
    pub targets: Vec<Target>,
    /// The answer a blocked client gets.
    pub action: Action,
    /// Whether `ip` targets are enforced on answer addresses. Default: false.
    #[serde(default)]
    pub block_addresses: bool,
    /// Lifecycle state. Default: `draft`.
    #[serde(default)]
    pub state: OrderState,
    /// From when the order is enforced. Default: null (immediately).
    #[serde(default)]
    pub effective_from: Option<Timestamp>,
    /// The compliance deadline (informational: shown, not enforced). Default: null.
    #[serde(default)]
    pub comply_by: Option<Timestamp>,
    /// When the order stops. Default: null (never).
    #[serde(default)]
    pub expires_at: Option<Timestamp>,
    /// If not empty, the order is enforced only inside these intervals. Default: none.
    #[serde(default)]
    pub windows: Vec<Window>,
    /// What the user is told. Default: all empty.
    #[serde(default)]
    pub notice: Notice,
    /// The order this one extends (required for `kind: extension`). Default: null.
    #[serde(default)]
    pub parent: Option<String>,
    /// Recorded overrides of the safety checks (public suffixes, TLDs, very broad prefixes).
    /// Default: none.
    #[serde(default)]
    pub overrides: Vec<Override>,
    /// What the public transparency page (`/transparency`) shows of this order: `full` (the
    /// order and its names), `summary` (the order and the number of names) or `none` (not
    /// listed). Default: by `kind` ([`OrderKind::default_transparency`]).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub transparency: Option<Transparency>,
}

/// How much of an order the public transparency page shows.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Transparency {
    /// The order with its names.
    Full,
    /// The order and the number of names, not the names.
    Summary,
    /// Not listed.
    None,
}

impl Transparency {
    /// `full`, `summary` or `none`.
    pub fn as_str(self) -> &'static str {
        match self {
            Transparency::Full => "full",
            Transparency::Summary => "summary",
            Transparency::None => "none",
        }
    }
}

impl Order {
    /// The order's `transparency`, or its kind's default.
    pub fn transparency(&self) -> Transparency {
        self.transparency
            .unwrap_or_else(|| self.kind.default_transparency())
    }
}

/// The kind of instrument. Decides what a block means ([`BlockMeaning`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum OrderKind {
    /// A court injunction (censored).
    CourtOrder,
    /// An order of a regulator (censored).
    RegulatorOrder,
    /// A ticket from a regulator's machine feed (censored).
    FeedTicket,
    /// Future domains added to an earlier order (censored).
    Extension,
    /// The operator's own security list (blocked).
    OperatorSecurity,
    /// Filtering the client asked for (filtered).
    ClientFilter,
}

impl OrderKind {
    /// What the transparency page shows of an order of this kind unless the order says:
    /// court and regulator orders and their extensions are public documents (`full`); feed
    /// tickets (e.g. Piracy Shield's, whose lists are confidential) and the operator's own
    /// security list are counted only (`summary`); filtering a client asked for is not a
    /// legal order and is not listed (`none`).
    pub fn default_transparency(self) -> Transparency {
        match self {
            OrderKind::CourtOrder | OrderKind::RegulatorOrder | OrderKind::Extension => {
                Transparency::Full
            }
            OrderKind::FeedTicket | OrderKind::OperatorSecurity => Transparency::Summary,
            OrderKind::ClientFilter => Transparency::None,
        }
    }
}

/// The answer given to a blocked query. Never a forged address.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Action {
    /// RCODE REFUSED.
    Refused,
    /// RCODE NXDOMAIN.
    Nxdomain,
    /// NOERROR with an empty answer.
    Nodata,
}

/// Lifecycle state of an order. Only `active` blocks; `shadow` is evaluated and reported but never
/// blocks; the others never match.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum OrderState {
    /// Being written; never matches.
    #[default]
    Draft,
    /// Evaluated and counted, never enforced.
    Shadow,
    /// Enforced.
    Active,
    /// Temporarily not enforced.
    Suspended,
    /// Lifted (on appeal, or done); never matches again.
    Lifted,
}

/// What an order blocks.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Target {
    /// The kind of target.
    #[serde(rename = "type")]
    pub kind: TargetKind,
    /// A domain name (IDNA allowed) or an IP address or prefix.
    pub value: String,
    /// When the target was added. Default: null.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub added_at: Option<Timestamp>,
    /// Who or which feed added it. Default: null.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub added_by: Option<String>,
    /// Evidence (URL, document id). Default: null.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub evidence: Option<String>,
}

/// The kind of a target.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum TargetKind {
    /// The name and everything below it.
    Subtree,
    /// Exactly this name.
    Domain,
    /// An address or prefix in an answer (enforced only with `block_addresses`).
    Ip,
    /// A name server name: matches a name whose authoritative servers include exactly this one
    /// (RPZ NSDNAME).
    Nsdname,
    /// A name server address or prefix: matches a name whose authoritative servers have an
    /// address in it (RPZ NSIP).
    Nsip,
}

/// An interval `[start, end)` during which an order with windows is enforced.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Window {
    /// Start (inclusive).
    pub start: Timestamp,
    /// End (exclusive).
    pub end: Timestamp,
}

/// What the user is told about a block.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Notice {
    /// Human-readable text.
    #[serde(default)]
    pub text: String,
    /// BCP 47 language tag of `text`.
    #[serde(default)]
    pub lang: String,
    /// Where to read more (e.g. a Lumen notice).
    #[serde(default)]
    pub url: String,
}

/// An explicit, recorded decision to block something the safety checks would refuse (a TLD, a
/// public suffix, a very broad address prefix).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Override {
    /// The target value the override is for (normalised the same way as the target).
    pub target: String,
    /// Why it is allowed. Required, not empty.
    pub reason: String,
    /// Who recorded it. Default: null.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub recorded_by: Option<String>,
}

/// What a block by an order means to the client, whatever the wire says: the server's error
/// map (`juris_server::error_map`) turns it into an RFC 8914 Extended DNS Error code. The
/// policy crate knows no protocol numbers.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum BlockMeaning {
    /// A legal instrument (court, regulator, feed ticket, extension) censors the name.
    Censored,
    /// The operator blocks it for security.
    Blocked,
    /// The client asked for it to be filtered.
    Filtered,
}

impl BlockMeaning {
    /// `censored`, `blocked` or `filtered`.
    pub fn as_str(self) -> &'static str {
        match self {
            BlockMeaning::Censored => "censored",
            BlockMeaning::Blocked => "blocked",
            BlockMeaning::Filtered => "filtered",
        }
    }
}

impl OrderKind {
    /// What a block by this kind of order means.
    pub fn meaning(self) -> BlockMeaning {
        match self {
            OrderKind::CourtOrder
            | OrderKind::RegulatorOrder
            | OrderKind::FeedTicket
            | OrderKind::Extension => BlockMeaning::Censored,
            OrderKind::OperatorSecurity => BlockMeaning::Blocked,
            OrderKind::ClientFilter => BlockMeaning::Filtered,
        }
    }

    /// The name used in the order document.
    pub fn as_str(self) -> &'static str {
        match self {
            OrderKind::CourtOrder => "court_order",
            OrderKind::RegulatorOrder => "regulator_order",
            OrderKind::FeedTicket => "feed_ticket",
            OrderKind::Extension => "extension",
            OrderKind::OperatorSecurity => "operator_security",
            OrderKind::ClientFilter => "client_filter",
        }
    }
}

impl Action {
    /// The name used in the order document (`refused`, `nxdomain`, `nodata`).
    pub fn as_str(self) -> &'static str {
        match self {
            Action::Refused => "refused",
            Action::Nxdomain => "nxdomain",
            Action::Nodata => "nodata",
        }
    }
}

impl OrderState {
    /// The name used in the order document.
    pub fn as_str(self) -> &'static str {
        match self {
            OrderState::Draft => "draft",
            OrderState::Shadow => "shadow",
            OrderState::Active => "active",
            OrderState::Suspended => "suspended",
            OrderState::Lifted => "lifted",
        }
    }
}

impl TargetKind {
    /// Every kind, in document order.
    pub const ALL: [TargetKind; 5] = [
        TargetKind::Subtree,
        TargetKind::Domain,
        TargetKind::Ip,
        TargetKind::Nsdname,
        TargetKind::Nsip,
    ];

    /// The name used in the order document.
    pub fn as_str(self) -> &'static str {
        match self {
            TargetKind::Subtree => "subtree",
            TargetKind::Domain => "domain",
            TargetKind::Ip => "ip",
            TargetKind::Nsdname => "nsdname",
            TargetKind::Nsip => "nsip",
        }
    }
}

impl Target {
    /// A target with only a kind and a value.
    pub fn new(kind: TargetKind, value: impl Into<String>) -> Target {
        Target {
            kind,
            value: value.into(),
            added_at: None,
            added_by: None,
            evidence: None,
        }
    }
}

impl Order {
    /// Parses one order document from JSON (strict: unknown fields are errors).
    pub fn from_json(json: &[u8]) -> Result<Order, serde_json::Error> {
        serde_json::from_slice(json)
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used, reason = "test code")]
mod tests {
    use super::*;

    pub(crate) const ISSUE_EXAMPLE: &str = r#"{
      "id": "IT-MI-2024-0001",
      "kind": "court_order",
      "authority": "Tribunale di Milano",
      "reference": "RG 12345/2024",
      "legal_basis": "L. 633/1941; L. 93/2023",
      "requested_by": ["FIMI", "FPM"],
      "jurisdictions": ["IT"],
      "targets": [
        {"type": "subtree", "value": "kickasstorrents.to"},
        {"type": "domain",  "value": "limetorrents.pro"},
        {"type": "ip",      "value": "203.0.113.0/24"}
      ],
      "action": "nxdomain",
      "block_addresses": false,
      "state": "active",
      "effective_from": "2024-05-01T00:00:00Z",
      "comply_by": "2024-05-31T00:00:00Z",
      "expires_at": null,
      "windows": [],
      "notice": {"text": "Blocked by order of the Court of Milan", "lang": "en", "url": "https://lumendatabase.org/notices/0"},
      "parent": null
    }"#;

    #[test]
    fn parses_the_issue_example() {
        let order = Order::from_json(ISSUE_EXAMPLE.as_bytes()).unwrap();
        assert_eq!(order.id, "IT-MI-2024-0001");
        assert_eq!(order.kind, OrderKind::CourtOrder);
        assert_eq!(order.targets.len(), 3);
        assert_eq!(order.targets[0].kind, TargetKind::Subtree);
        assert_eq!(order.action, Action::Nxdomain);
        assert_eq!(order.state, OrderState::Active);
        assert!(order.expires_at.is_none());
        // Round trip.
        let json = serde_json::to_string(&order).unwrap();
        assert_eq!(Order::from_json(json.as_bytes()).unwrap(), order);
    }

    #[test]
    fn unknown_fields_are_rejected() {
        let json = ISSUE_EXAMPLE.replace("\"parent\": null", "\"parent\": null, \"colour\": 1");
        let error = Order::from_json(json.as_bytes()).unwrap_err();
        assert!(error.to_string().contains("colour"), "{error}");
        let json = ISSUE_EXAMPLE.replace(
            r#""value": "limetorrents.pro""#,
            r#""value": "x.pro", "why": 1"#,
        );
        assert!(Order::from_json(json.as_bytes()).is_err());
    }

    #[test]
    fn defaults() {
        let order = Order::from_json(
            br#"{"id":"a","kind":"client_filter","authority":"me","jurisdictions":["*"],"action":"refused"}"#,
        )
        .unwrap();
        assert_eq!(order.state, OrderState::Draft);
        assert!(order.targets.is_empty() && order.windows.is_empty() && !order.block_addresses);
    }

    #[test]
    fn meanings() {
        use BlockMeaning::*;
        assert_eq!(OrderKind::CourtOrder.meaning(), Censored);
        assert_eq!(OrderKind::RegulatorOrder.meaning(), Censored);
        assert_eq!(OrderKind::FeedTicket.meaning(), Censored);
        assert_eq!(OrderKind::Extension.meaning(), Censored);
        assert_eq!(OrderKind::OperatorSecurity.meaning(), Blocked);
        assert_eq!(OrderKind::ClientFilter.meaning(), Filtered);
    }
}
