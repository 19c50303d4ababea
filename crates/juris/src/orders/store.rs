//! Orders from the control plane's store ([`StoreSource`]).

use std::collections::BTreeMap;
use std::sync::Arc;

use juris_control::Control;

use super::diff::Known;
use super::source::{hand_over, OrderSource, SourceId, Version};
use super::OrdersError;

/// The enforceable orders of the control plane's store. The store is read whole (it has no
/// per-order change feed yet); an order whose serialisation is unchanged is not validated
/// again. Its changes wake the loader through [`LoaderHandle::reload`](super::LoaderHandle).
#[derive(Debug)]
pub struct StoreSource {
    control: Arc<Control>,
    /// The store's revision as read at the start of the last read.
    revision: Option<u64>,
}

impl StoreSource {
    /// The orders of `control`.
    pub fn new(control: Arc<Control>) -> StoreSource {
        StoreSource {
            control,
            revision: None,
        }
    }
}

impl OrderSource for StoreSource {
    fn describe(&self) -> String {
        "control store".to_owned()
    }

    fn read(
        &mut self,
        known: &BTreeMap<SourceId, Known>,
        sink: &mut dyn FnMut(SourceId, Version),
    ) -> Result<(), OrdersError> {
        // The revision is read before the orders: a change after this point triggers another
        // load, so the revision reported applied is never newer than what was read.
        self.revision = Some(*self.control.subscribe().borrow());
        let orders = self
            .control
            .enforceable_orders()
            .map_err(|e| OrdersError::Store(e.to_string()))?;
        for order in orders {
            let id = SourceId::Store {
                order: order.id.clone(),
            };
            hand_over(id, std::borrow::Cow::Owned(order), known, sink);
        }
        Ok(())
    }

    /// Held targets never leave the store (`needs_review` until an admin overrides them).
    fn reviews_protected_targets(&self) -> bool {
        true
    }

    fn loaded(&mut self, clean: bool) {
        if let (Some(revision), true) = (self.revision, clean) {
            self.control.mark_applied(revision);
        }
    }
}
