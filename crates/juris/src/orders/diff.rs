//! Diffing: the last good version of every order ([`Known`]), one load's reading of the
//! sources ([`Reading`]), and the [`PolicyChange`] list that turns the policy in force into it.

use std::collections::{BTreeMap, HashMap};
use std::hash::{Hash, Hasher};
use std::sync::Arc;

use juris_policy::{
    CompileError, OrderInfo, OrderUpdate, PolicyChange, ValidatedOrder, ValidatedTarget,
};

use super::files::FileStamp;
use super::source::SourceId;
use super::{OrdersError, RETAIN_TARGETS};

/// A 128-bit digest (two SipHash-1-3 streams with fixed keys).
fn digest(write: impl Fn(&mut std::collections::hash_map::DefaultHasher)) -> u128 {
    let half = |seed: u8| {
        let mut hasher = std::collections::hash_map::DefaultHasher::new();
        seed.hash(&mut hasher);
        write(&mut hasher);
        hasher.finish()
    };
    (u128::from(half(0x5a)) << 64) | u128::from(half(0xa5))
}

/// A digest of an order's target *set* (order of writing and duplicates do not matter).
pub(crate) fn target_digest(order: &ValidatedOrder) -> u128 {
    let mut targets: Vec<&ValidatedTarget> = order.targets().iter().collect();
    targets.sort_unstable();
    targets.dedup();
    digest(|h| targets.iter().for_each(|t| t.hash(h)))
}

/// The last good version of one source, as compiled into the policy in force.
#[derive(Debug, Clone)]
pub struct Known {
    /// Files: the metadata when read, and whether it can be trusted to show a change (the
    /// file was not modified within [`RACY_SECONDS`] of being read).
    pub(crate) stamp: Option<(FileStamp, bool)>,
    /// Hash of the file's bytes or of the store order's serialisation.
    pub(crate) content: u64,
    pub(crate) info: Arc<OrderInfo>,
    /// Targets, for the large-change decision.
    pub(crate) targets: usize,
    pub(crate) body: Body,
}

#[derive(Debug, Clone)]
pub(crate) enum Body {
    /// The order itself (at most [`RETAIN_TARGETS`] targets).
    Full(Arc<ValidatedOrder>),
    /// Only the digest of its target set ([`target_digest`]).
    Digest(u128),
}

impl Known {
    pub(crate) fn new(
        stamp: Option<(FileStamp, bool)>,
        content: u64,
        order: &ValidatedOrder,
    ) -> Known {
        let targets = order.targets().len();
        Known {
            stamp,
            content,
            info: Arc::clone(order.info()),
            targets,
            body: if targets <= RETAIN_TARGETS {
                Body::Full(Arc::new(order.clone()))
            } else {
                Body::Digest(target_digest(order))
            },
        }
    }

    pub(crate) fn id(&self) -> &str {
        &self.info.id
    }
}

/// One load's reading of the sources.
#[derive(Default)]
pub(crate) struct Reading {
    /// Every source, each at its new version if valid, else at its last good one.
    pub(crate) next: BTreeMap<SourceId, Known>,
    /// The sources validated anew (their new version is in `next`).
    pub(crate) fresh: BTreeMap<SourceId, ValidatedOrder>,
    pub(crate) rejected: Vec<(SourceId, OrdersError)>,
    pub(crate) validated: usize,
}

impl Reading {
    pub(crate) fn reject(
        &mut self,
        known: &BTreeMap<SourceId, Known>,
        key: SourceId,
        error: OrdersError,
    ) {
        self.fresh.remove(&key);
        match known.get(&key) {
            Some(last_good) => {
                self.next.insert(key.clone(), last_good.clone());
            }
            None => {
                self.next.remove(&key);
            }
        }
        self.rejected.push((key, error));
    }

    pub(crate) fn accept(&mut self, key: SourceId, known: Known, fresh: Option<ValidatedOrder>) {
        if let Some(order) = fresh {
            self.fresh.insert(key.clone(), order);
        }
        self.next.insert(key, known);
    }

    /// Two sources with one id: every *new* version involved is rejected (its last good
    /// version, if any, stays), until the ids are unique. The versions that are not new come
    /// from the last good state, whose ids were unique, so this ends.
    pub(crate) fn reject_duplicate_ids(&mut self, known: &BTreeMap<SourceId, Known>) {
        loop {
            let mut holders: HashMap<&str, Vec<&SourceId>> = HashMap::new();
            for (key, entry) in &self.next {
                holders.entry(entry.id()).or_default().push(key);
            }
            let clashing: Vec<(String, SourceId)> = holders
                .iter()
                .filter(|(_, keys)| keys.len() > 1)
                .flat_map(|(id, keys)| {
                    keys.iter()
                        .filter(|key| self.fresh.contains_key(**key))
                        .map(|key| ((*id).to_owned(), (*key).clone()))
                })
                .collect();
            if clashing.is_empty() {
                return;
            }
            for (id, key) in clashing {
                let error = OrdersError::Compile {
                    from: key.clone(),
                    source: CompileError::DuplicateOrder(id),
                };
                self.reject(known, key, error);
            }
        }
    }
}

/// The changes that turn the policy in force into `reading.next`: removals first, then
/// updates, then additions (so that an id moving from one file to another is removed
/// before it is added again). Also returns the number of targets they touch.
pub(crate) fn changes(
    known: &BTreeMap<SourceId, Known>,
    reading: &Reading,
) -> (Vec<PolicyChange>, usize) {
    let mut removes = Vec::new();
    let mut updates = Vec::new();
    let mut puts = Vec::new();
    let mut names = 0;
    for (key, old) in known {
        if !reading.next.contains_key(key) {
            removes.push(PolicyChange::Remove(old.id().to_owned()));
            names += old.targets;
        }
    }
    for (key, new) in &reading.fresh {
        let Some(old) = known.get(key) else {
            names += new.targets().len();
            puts.push(PolicyChange::Put(new.clone()));
            continue;
        };
        match &old.body {
            Body::Full(old) => {
                for change in PolicyChange::between(old, new) {
                    match change {
                        PolicyChange::Remove(_) => {
                            names += old.targets().len();
                            removes.push(change);
                        }
                        PolicyChange::Put(_) => {
                            names += new.targets().len();
                            puts.push(change);
                        }
                        PolicyChange::Update(ref update) => {
                            names += update.added.len() + update.removed.len();
                            updates.push(change);
                        }
                    }
                }
            }
            Body::Digest(digest) if old.id() == new.id() && *digest == target_digest(new) => {
                updates.push(PolicyChange::Update(OrderUpdate {
                    order: Arc::clone(new.info()),
                    added: Vec::new(),
                    removed: Vec::new(),
                }));
            }
            Body::Digest(_) => {
                // The old targets are not kept: replace the whole order.
                if old.id() != new.id() {
                    removes.push(PolicyChange::Remove(old.id().to_owned()));
                }
                names += old.targets + new.targets().len();
                puts.push(PolicyChange::Put(new.clone()));
            }
        }
    }
    removes.append(&mut updates);
    removes.append(&mut puts);
    (removes, names)
}
