//! Orders from third-party RPZ feeds ([`RpzFeedSource`]): each feed's configured order with the
//! triggers of its last good transfer as targets, through the same validation as files and
//! the store.

use std::collections::BTreeMap;
use std::sync::Arc;

use crate::fleet::rpz_feed::RpzFeed;

use super::diff::Known;
use super::source::{hand_over, OrderSource, SourceId, Version};
use super::OrdersError;

/// The orders of the configured RPZ feeds. A feed's thread wakes the loader after a transfer
/// that changed its order; a transfer that fails or cannot be mapped changes nothing here.
#[derive(Debug)]
pub struct RpzFeedSource {
    feeds: Vec<Arc<RpzFeed>>,
}

impl RpzFeedSource {
    /// The orders of `feeds`.
    pub fn new(feeds: Vec<Arc<RpzFeed>>) -> RpzFeedSource {
        RpzFeedSource { feeds }
    }
}

impl OrderSource for RpzFeedSource {
    fn describe(&self) -> String {
        let names: Vec<&str> = self.feeds.iter().map(|f| f.name()).collect();
        format!("RPZ feeds {}", names.join(", "))
    }

    fn read(
        &mut self,
        known: &BTreeMap<SourceId, Known>,
        sink: &mut dyn FnMut(SourceId, Version),
    ) -> Result<(), OrdersError> {
        for feed in &self.feeds {
            let Some(order) = feed.order() else { continue };
            let id = SourceId::RpzFeed {
                feed: feed.name().to_owned(),
            };
            hand_over(id, std::borrow::Cow::Borrowed(&*order), known, sink);
        }
        Ok(())
    }

    /// A vendor's list was reviewed by nobody here: the loader checks every target against
    /// the protected list (a protected target holds the feed's order unless the configured
    /// order records an override for it).
    fn reviews_protected_targets(&self) -> bool {
        false
    }
}
