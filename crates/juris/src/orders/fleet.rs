//! Orders from the fleet primary ([`FleetSource`]): the last good orders of the follower's
//! transfers (or of its snapshot), through the same validation as files and the store.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

use juris_policy::Order;

use crate::fleet::follower::{Follower, Handed};

use super::diff::Known;
use super::source::{document_hash, hand_over_hashed, OrderSource, SourceId, Version};
use super::OrdersError;

/// The orders an edge follows. Its follower wakes the loader after a transfer that changed
/// them; a transfer that fails or does not decode changes nothing here.
#[derive(Debug)]
pub struct FleetSource {
    follower: Arc<Follower>,
    /// The content hash of every order as last read, with the document it was made of: an
    /// order the follower did not touch since (the same `Arc`) is not serialised again, so a
    /// load after an IXFR costs the orders it changed, not the policy.
    hashes: HashMap<String, (Arc<Order>, u64)>,
}

impl FleetSource {
    /// The orders of `follower`.
    pub fn new(follower: Arc<Follower>) -> FleetSource {
        FleetSource {
            follower,
            hashes: HashMap::new(),
        }
    }
}

impl OrderSource for FleetSource {
    fn describe(&self) -> String {
        format!("fleet primary {}", self.follower.primary())
    }

    fn read(
        &mut self,
        known: &BTreeMap<SourceId, Known>,
        sink: &mut dyn FnMut(SourceId, Version),
    ) -> Result<(), OrdersError> {
        let orders = match self.follower.hand_over() {
            None => return Ok(()),
            // A start from the snapshot's validated orders (design 0043).
            Some(Handed::Validated(validated)) => {
                for (content, order) in validated {
                    let id = SourceId::Fleet {
                        order: order.id().to_owned(),
                    };
                    sink(id, Version::Validated { content, order });
                }
                return Ok(());
            }
            Some(Handed::Unchanged(ids)) => {
                for order in ids {
                    sink(SourceId::Fleet { order }, Version::Unchanged(None));
                }
                return Ok(());
            }
            Some(Handed::Documents { orders, seed }) => {
                if let Some(seed) = seed {
                    self.hashes = seed;
                }
                orders
            }
        };
        let mut hashes = HashMap::with_capacity(orders.len());
        for order in orders.iter() {
            let id = SourceId::Fleet {
                order: order.id.clone(),
            };
            let content = match self.hashes.get(&order.id) {
                Some((last, content)) if Arc::ptr_eq(last, order) => Ok(*content),
                _ => document_hash(order),
            };
            if let Ok(content) = content {
                hashes.insert(order.id.clone(), (Arc::clone(order), content));
            }
            hand_over_hashed(
                id,
                std::borrow::Cow::Borrowed(&**order),
                content,
                known,
                sink,
            );
        }
        self.hashes = hashes;
        Ok(())
    }

    /// The primary publishes only what its own loader accepted: file orders checked against
    /// the protected list with their overrides, store orders without their held targets (an
    /// admin's per-target override does not travel in the document). Validation with the
    /// Public Suffix List runs again here.
    fn reviews_protected_targets(&self) -> bool {
        true
    }

    /// The serial read is in force now (when none of its orders was rejected): the follower
    /// reports it to the primary.
    fn loaded(&mut self, clean: bool) {
        self.follower.loaded(clean);
    }
}
