//! Where orders come from ([`OrderSource`]: files, the control plane's store, a fleet primary's
//! transfers), what each order is called ([`SourceId`]), and the safeguards every order goes
//! through whatever its source ([`Safeguards`]).
//!
//! A source only reads: it lists its orders, tells which are unchanged since their last good
//! version (so they are neither read whole nor parsed again) and parses the others into
//! [`Order`] documents. Validation, the Public Suffix List and the protected list, diffing and
//! publishing are the loader's, the same for every source (`docs/design/0010-loader-actor.md`).

use std::collections::BTreeMap;
use std::fmt;
use std::path::{Path, PathBuf};

use juris_control::{Psl, SharedProtected};
use juris_policy::{Order, TargetValue, ValidatedOrder, ValidationOptions};

use super::diff::Known;
use super::files::FileStamp;
use super::OrdersError;

/// The identity of one order's source: typed, never a path made up for what is not a file.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum SourceId {
    /// One order file.
    File(PathBuf),
    /// One order of the control plane's store, by order id.
    Store {
        /// The order's id in the store.
        order: String,
    },
    /// One order of the fleet primary's metadata zone, by order id.
    Fleet {
        /// The order's id.
        order: String,
    },
    /// The order of one third-party RPZ feed (`[[fleet.rpz_feed]]`), by feed name.
    RpzFeed {
        /// The feed's name.
        feed: String,
    },
}

impl fmt::Display for SourceId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            SourceId::File(path) => write!(f, "{}", path.display()),
            SourceId::Store { order } => write!(f, "control store order {order}"),
            SourceId::Fleet { order } => write!(f, "fleet primary's order {order}"),
            SourceId::RpzFeed { feed } => write!(f, "RPZ feed {feed}"),
        }
    }
}

/// One order as a source hands it to the loader.
#[derive(Debug)]
#[allow(
    clippy::large_enum_variant,
    reason = "one value per order, moved straight into the sink, never stored or collected"
)]
pub enum Version {
    /// The last good version is current (same content); `Some` carries new file metadata to
    /// remember with it.
    Unchanged(Option<(FileStamp, bool)>),
    /// A version that differs from the last good one (or the first): the loader validates it.
    Changed {
        /// Hash of its bytes or serialisation.
        content: u64,
        /// Files: the metadata when read, and whether it can be trusted to show a change.
        stamp: Option<(FileStamp, bool)>,
        /// The document, or why it is not one.
        order: Result<Order, OrdersError>,
    },
    /// Could not be read: its last good version (if any) stays in force.
    Unreadable(OrdersError),
    /// A version validated earlier with the rules in force now (an edge's snapshot, design
    /// 0043): taken as it is, without validating it again.
    Validated {
        /// Hash of its serialisation ([`document_hash`] of its document).
        content: u64,
        /// The order.
        order: ValidatedOrder,
    },
}

/// A source of orders. Implemented by [`FileSource`](super::FileSource) and
/// [`StoreSource`](super::StoreSource); a zone-transfer follower is the next one. Runs on the
/// loader's thread only.
pub trait OrderSource: Send + fmt::Debug {
    /// How logs and status name the source as a whole (`/etc/juris/orders`, `control store`).
    fn describe(&self) -> String;

    /// Hands every order the source holds now to `sink`, each once, by its [`SourceId`]:
    /// [`Version::Unchanged`] for those whose last good version in `known` is current. An
    /// order not handed over is gone from the source. `Err`: the source as a whole could not
    /// be read (nothing of this load is applied).
    fn read(
        &mut self,
        known: &BTreeMap<SourceId, Known>,
        sink: &mut dyn FnMut(SourceId, Version),
    ) -> Result<(), OrdersError>;

    /// Whether the source reviewed every target against the protected list itself, with a
    /// per-target override (the store: held targets are `needs_review` until an admin
    /// overrides them, and are not handed over). Otherwise the loader holds an order with an
    /// unreviewed protected target unless the order records an override for it.
    fn reviews_protected_targets(&self) -> bool;

    /// A cheap check whether [`read`](Self::read) would find a change (the poll). Sources
    /// that wake the loader themselves say `false`.
    fn changed(&mut self) -> bool {
        false
    }

    /// After a load that read this source: `clean` when none of its orders was rejected.
    fn loaded(&mut self, clean: bool) {
        let _ = clean;
    }

    /// Files read whole so far (their buffers leave memory to give back).
    fn reads(&self) -> u64 {
        0
    }

    /// A path whose file-system events concern this source.
    fn watch_path(&self) -> Option<&Path> {
        None
    }
}

/// Hands a document-backed order (the store's, a fleet primary's) to `sink`: unchanged when
/// the hash of its serialisation is its last good version's, else changed (a clone is made
/// only then).
pub(super) fn hand_over(
    id: SourceId,
    order: std::borrow::Cow<'_, juris_policy::Order>,
    known: &BTreeMap<SourceId, Known>,
    sink: &mut dyn FnMut(SourceId, Version),
) {
    let content = document_hash(&order);
    hand_over_hashed(id, order, content, known, sink);
}

/// The content hash of a document-backed order: of its serialisation.
pub(crate) fn document_hash(order: &juris_policy::Order) -> Result<u64, serde_json::Error> {
    serde_json::to_vec(order).map(|bytes| super::files::content_hash(&bytes))
}

/// [`hand_over`] with the order's [`document_hash`] at hand (a source may keep it).
pub(super) fn hand_over_hashed(
    id: SourceId,
    order: std::borrow::Cow<'_, juris_policy::Order>,
    content: Result<u64, serde_json::Error>,
    known: &BTreeMap<SourceId, Known>,
    sink: &mut dyn FnMut(SourceId, Version),
) {
    let content = match content {
        Ok(content) => content,
        Err(e) => {
            let error = OrdersError::Store(format!("{id}: {e}"));
            sink(id, Version::Unreadable(error));
            return;
        }
    };
    if known.get(&id).is_some_and(|k| k.content == content) {
        sink(id, Version::Unchanged(None));
        return;
    }
    sink(
        id,
        Version::Changed {
            content,
            stamp: None,
            order: Ok(order.into_owned()),
        },
    );
}

/// What every order goes through, whatever its source: validation with the Public Suffix List
/// (a public suffix or TLD target needs a recorded override) and the protected list (a target
/// touching shared infrastructure holds the order, with the reason, until it is overridden).
#[derive(Debug, Clone)]
pub struct Safeguards {
    protected: SharedProtected,
}

impl Safeguards {
    /// The safeguards with `protected` (the configured list: `control.protected`).
    #[cfg(test)]
    pub fn new(protected: juris_control::ProtectedList) -> Safeguards {
        Safeguards::shared(SharedProtected::new(protected))
    }

    /// The safeguards with the protected list in force in `protected`, which may be replaced
    /// live (SIGHUP): the loader validates every order again when it was.
    pub fn shared(protected: SharedProtected) -> Safeguards {
        Safeguards { protected }
    }

    /// How many times the protected list was replaced ([`SharedProtected::generation`]).
    pub fn protected_generation(&self) -> u64 {
        self.protected.generation()
    }

    /// Validates `order` from `from`. `protected_reviewed`: its source has applied the
    /// protected list per target already ([`OrderSource::reviews_protected_targets`]).
    pub fn validate(
        &self,
        from: &SourceId,
        order: &Order,
        protected_reviewed: bool,
    ) -> Result<ValidatedOrder, OrdersError> {
        let valid = Safeguards::validate_document(from, order)?;
        if !protected_reviewed {
            self.check_protected(from, &valid)?;
        }
        Ok(valid)
    }

    /// The part of [`validate`](Self::validate) that does not depend on the protected list:
    /// the document's own rules and the Public Suffix List (all of them compiled into the
    /// binary). What a source that reviews protected targets itself gets (a fleet edge).
    pub fn validate_document(
        from: &SourceId,
        order: &Order,
    ) -> Result<ValidatedOrder, OrdersError> {
        let options = ValidationOptions {
            public_suffixes: &Psl,
            ..ValidationOptions::default()
        };
        order
            .validate(&options)
            .map_err(|source| OrdersError::Invalid {
                from: from.clone(),
                source,
            })
    }

    /// The first target that touches the protected list without an override in the order.
    fn check_protected(&self, from: &SourceId, order: &ValidatedOrder) -> Result<(), OrdersError> {
        let overridden: Vec<String> = order
            .info()
            .overrides
            .iter()
            .map(|o| normal_override(&o.target))
            .collect();
        let protected = self.protected.get();
        for target in order.targets() {
            let Some(reason) = protected.check(target) else {
                continue;
            };
            let value = match target.value() {
                TargetValue::Name(name) => name.to_string(),
                TargetValue::Prefix(net) => net.to_string(),
            };
            if overridden.contains(&value) {
                continue;
            }
            return Err(OrdersError::Held {
                from: from.clone(),
                target: value,
                reason,
            });
        }
        Ok(())
    }
}

/// An override's target written the way targets are normalised (names IDNA-lower-cased,
/// prefixes truncated; one address as its host prefix).
fn normal_override(target: &str) -> String {
    let value = target.trim();
    if let Ok(net) = value.parse::<ipnet::IpNet>() {
        return net.trunc().to_string();
    }
    if let Ok(address) = value.parse::<std::net::IpAddr>() {
        return ipnet::IpNet::from(address).to_string();
    }
    juris_policy::normalize_name(value).unwrap_or_else(|_| value.to_ascii_lowercase())
}
