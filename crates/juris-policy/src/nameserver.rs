//! `nsdname` and `nsip` targets (RPZ's NSDNAME and NSIP triggers): the names and addresses of
//! the authoritative servers that answered, matched against the orders.
//!
//! An `nsdname` target matches a name server whose name is exactly the target (as an RPZ
//! `NAME.rpz-nsdname` trigger); an `nsip` target matches a name server address inside its
//! prefix (as `rpz-nsip`). Both are small tables: order authors list a handful of servers,
//! not millions.

use crate::index::{remove_rule, rule, rule_order, AddressIndex, Rule};
use crate::order::TargetKind;
use crate::validate::{TargetValue, ValidatedTarget};
use std::collections::HashMap;

/// The name server triggers of a policy.
#[derive(Debug, Clone, Default)]
pub(crate) struct NameServerRules {
    /// Lower-case uncompressed wire names → rules.
    names: HashMap<Box<[u8]>, Vec<Rule>>,
    addresses: AddressIndex,
}

impl NameServerRules {
    /// Whether `target` is a name server trigger.
    pub(crate) fn holds(target: &ValidatedTarget) -> bool {
        matches!(target.kind(), TargetKind::Nsdname | TargetKind::Nsip)
    }

    /// Adds a name server target of order `order`; `true` when it was not there yet.
    pub(crate) fn add(&mut self, order: u32, target: &ValidatedTarget) -> bool {
        let rule = rule(order, false);
        match (target.kind(), target.value()) {
            (TargetKind::Nsdname, TargetValue::Name(name)) => {
                let rules = self.names.entry(wire_of(name)).or_default();
                if rules.contains(&rule) {
                    return false;
                }
                rules.push(rule);
                rules.sort_unstable();
                true
            }
            (TargetKind::Nsip, TargetValue::Prefix(net)) => {
                if self.addresses.contains(*net, rule) {
                    return false;
                }
                self.addresses.insert(*net, rule);
                true
            }
            _ => false,
        }
    }

    /// Removes a name server target of order `order`; `true` when it was there.
    pub(crate) fn remove(&mut self, order: u32, target: &ValidatedTarget) -> bool {
        let rule = rule(order, false);
        match (target.kind(), target.value()) {
            (TargetKind::Nsdname, TargetValue::Name(name)) => {
                remove_rule(&mut self.names, &wire_of(name), rule)
            }
            (TargetKind::Nsip, TargetValue::Prefix(net)) => self.addresses.remove(*net, rule),
            _ => false,
        }
    }

    /// Keeps only the rules of orders for which `keep` holds.
    pub(crate) fn retain_orders(&mut self, keep: impl Fn(usize) -> bool) {
        self.names.retain(|_, rules| {
            rules.retain(|r| keep(rule_order(*r)));
            !rules.is_empty()
        });
        self.addresses.retain_orders(keep);
    }

    /// Call after a batch of changes.
    pub(crate) fn refresh(&mut self) {
        self.addresses.refresh();
    }

    /// Whether there is no name server trigger at all.
    #[inline]
    pub(crate) fn is_empty(&self) -> bool {
        self.names.is_empty() && self.addresses.len() == 0
    }

    /// Calls `visit(rule)` for every `nsdname` rule naming `name` (wire form, any case).
    #[inline]
    pub(crate) fn visit_name(&self, name: &[u8], mut visit: impl FnMut(Rule)) {
        if self.names.is_empty() || name.len() > 255 {
            return;
        }
        let mut lower = [0u8; 255];
        let lower = &mut lower[..name.len()];
        lower.copy_from_slice(name);
        lower.make_ascii_lowercase();
        if let Some(rules) = self.names.get(&*lower) {
            rules.iter().copied().for_each(&mut visit);
        }
    }

    /// The `nsip` prefixes.
    #[inline]
    pub(crate) fn addresses(&self) -> &AddressIndex {
        &self.addresses
    }

    /// Every rule (for the per-order counts).
    pub(crate) fn for_each_rule(&self, mut f: impl FnMut(Rule)) {
        for rules in self.names.values() {
            rules.iter().copied().for_each(&mut f);
        }
        self.addresses.for_each_rule(f);
    }

    /// (name, order rule) entries plus address entries.
    pub(crate) fn len(&self) -> usize {
        self.names.values().map(Vec::len).sum::<usize>() + self.addresses.len()
    }

    pub(crate) fn memory_bytes(&self) -> usize {
        self.names
            .iter()
            .map(|(k, r)| k.len() + r.capacity() * 4 + 64)
            .sum::<usize>()
            + self.addresses.memory_bytes()
    }
}

/// The lower-case wire form of a normalised name (`ns1.example.net` → `\3ns1\7example\3net\0`).
fn wire_of(name: &str) -> Box<[u8]> {
    let mut wire = Vec::with_capacity(name.len() + 2);
    for label in name.split('.') {
        // Labels of validated names are ≤ 63 bytes.
        wire.push(label.len() as u8);
        wire.extend_from_slice(label.as_bytes());
    }
    wire.push(0);
    wire.into_boxed_slice()
}
