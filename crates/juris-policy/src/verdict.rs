//! What a check returns: [`Verdict`] on the hot path, [`Explanation`] for explain.

use std::fmt;
use std::sync::Arc;

use ipnet::IpNet;

use crate::order::{Action, BlockMeaning, OrderState, TargetKind};
use crate::validate::OrderInfo;

/// The result of checking a name or an address for one client at one moment.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    /// Answer normally. `shadow` lists shadow orders that would have blocked: count them, never
    /// enforce them. Empty (and not allocated) on the common path.
    Allow {
        /// Matching shadow orders (in force for this client and time).
        shadow: Vec<Match>,
    },
    /// Block with the order that fired.
    Block(Box<Block>),
}

/// A block: the order that fired, and every other order that matched too.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Block {
    /// The order and target that decide the answer (the most specific target; ties: earliest
    /// effective_from, then order id).
    pub fired: Match,
    /// Other active orders in force for this client that also matched, most specific first.
    pub others: Vec<Match>,
    /// Shadow orders that matched: count them; they never block.
    pub shadow: Vec<Match>,
}

/// One order matched through one of its targets.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Match {
    /// The order (id, kind, authority, reference, notice, ...).
    pub order: Arc<OrderInfo>,
    /// The target that matched.
    pub target: MatchedTarget,
}

/// The target that matched.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum MatchedTarget {
    /// A `domain` (exact) or `subtree` target.
    Name {
        /// `Domain` or `Subtree`.
        kind: TargetKind,
        /// The target's name (lower case, punycode, no trailing dot).
        name: String,
    },
    /// An `ip` target.
    Prefix(IpNet),
    /// An `nsdname` target: the name of an authoritative server of the answer.
    NameServer(String),
    /// An `nsip` target: a prefix holding an address of an authoritative server of the answer.
    NameServerPrefix(IpNet),
}

/// Everything that matched a name or address, applicable or not, with the reason for each, and
/// the verdict the hot path gives (computed by the same walk).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Explanation {
    /// What `check_name` / `check_address` return for the same input.
    pub verdict: Verdict,
    /// Every match, most specific first.
    pub matches: Vec<ExplainedMatch>,
}

/// One match in an explanation.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ExplainedMatch {
    /// The order and target.
    pub matched: Match,
    /// Whether and why it applies.
    pub status: MatchStatus,
}

/// Whether a matching order applies, and why not.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MatchStatus {
    /// This order decided the answer.
    Fired,
    /// Applies, but a more specific (or earlier) order fired.
    Outranked,
    /// A shadow order in force: counted, never enforced.
    Shadow,
    /// The order's state never matches (draft, suspended, lifted).
    NotActive(OrderState),
    /// The client is in a country the order does not bind.
    OtherJurisdiction,
    /// The client's country is unknown and the order is not global.
    UnknownJurisdiction,
    /// Before effective_from.
    NotYetEffective,
    /// At or after expires_at.
    Expired,
    /// Between the order's windows.
    OutsideWindows,
    /// An `ip` target of an order without `block_addresses`.
    AddressBlockingOff,
    /// An `extension` whose parent order is not in force.
    ParentNotInForce(ParentStatus),
}

/// Why the parent of an `extension` is not in force.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ParentStatus {
    /// The parent is not in the policy (or the chain of extensions is longer than 8, or loops).
    Missing,
    /// The parent is draft, suspended or lifted.
    NotActive(OrderState),
    /// Before the parent's effective_from.
    NotYetEffective,
    /// At or after the parent's expires_at.
    Expired,
    /// Between the parent's windows.
    OutsideWindows,
}

impl fmt::Display for ParentStatus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ParentStatus::Missing => f.write_str("its parent order is not loaded"),
            ParentStatus::NotActive(state) => {
                write!(f, "its parent order is {}", state.as_str())
            }
            ParentStatus::NotYetEffective => f.write_str("its parent order is not yet effective"),
            ParentStatus::Expired => f.write_str("its parent order has expired"),
            ParentStatus::OutsideWindows => {
                f.write_str("its parent order is outside its time windows")
            }
        }
    }
}

impl Verdict {
    /// An allow with no shadow matches (no allocation).
    pub const fn allow() -> Verdict {
        Verdict::Allow { shadow: Vec::new() }
    }

    /// Whether the answer must be blocked.
    pub fn is_block(&self) -> bool {
        matches!(self, Verdict::Block(_))
    }

    /// The block, if any.
    pub fn block(&self) -> Option<&Block> {
        match self {
            Verdict::Block(block) => Some(block),
            Verdict::Allow { .. } => None,
        }
    }

    /// The matching shadow orders (to count).
    pub fn shadow(&self) -> &[Match] {
        match self {
            Verdict::Allow { shadow } => shadow,
            Verdict::Block(block) => &block.shadow,
        }
    }
}

impl Block {
    /// The order that fired.
    pub fn order(&self) -> &OrderInfo {
        &self.fired.order
    }

    /// The answer to give.
    pub fn action(&self) -> Action {
        self.fired.order.action
    }

    /// What the block means (censored, blocked, filtered); the server maps it to an EDE code.
    pub fn meaning(&self) -> BlockMeaning {
        self.fired.order.meaning()
    }

    /// The target that matched.
    pub fn target(&self) -> &MatchedTarget {
        &self.fired.target
    }
}

impl fmt::Display for MatchedTarget {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            MatchedTarget::Name { kind, name } => write!(f, "{} {}", kind.as_str(), name),
            MatchedTarget::Prefix(net) => write!(f, "ip {net}"),
            MatchedTarget::NameServer(name) => write!(f, "nsdname {name}"),
            MatchedTarget::NameServerPrefix(net) => write!(f, "nsip {net}"),
        }
    }
}

impl MatchStatus {
    /// Whether the match blocks or is counted as shadow (i.e. the order is in force for this
    /// client).
    pub fn applies(self) -> bool {
        matches!(
            self,
            MatchStatus::Fired | MatchStatus::Outranked | MatchStatus::Shadow
        )
    }
}

impl fmt::Display for MatchStatus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            MatchStatus::Fired => f.write_str("applies: this order decides the answer"),
            MatchStatus::Outranked => {
                f.write_str("applies, but a more specific or earlier order decides the answer")
            }
            MatchStatus::Shadow => f.write_str("shadow: counted, never enforced"),
            MatchStatus::NotActive(state) => {
                write!(f, "does not apply: the order is {}", state.as_str())
            }
            MatchStatus::OtherJurisdiction => {
                f.write_str("does not apply: the client is outside the order's jurisdictions")
            }
            MatchStatus::UnknownJurisdiction => f.write_str(
                "does not apply: the client's jurisdiction is unknown and the order is not global",
            ),
            MatchStatus::NotYetEffective => f.write_str("does not apply: not yet effective"),
            MatchStatus::Expired => f.write_str("does not apply: expired"),
            MatchStatus::OutsideWindows => {
                f.write_str("does not apply: outside the order's time windows")
            }
            MatchStatus::AddressBlockingOff => {
                f.write_str("does not apply: the order does not enable block_addresses")
            }
            MatchStatus::ParentNotInForce(why) => write!(f, "does not apply: {why}"),
        }
    }
}
