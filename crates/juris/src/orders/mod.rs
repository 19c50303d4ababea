//! Orders from their sources (files: one JSON order document per file, or a directory of
//! `*.json` files; the control plane's store; a fleet primary's zone, by transfer) into the published
//! policy.
//! Startup and every change take the same path, incrementally:
//!
//! ```text
//!  FileSource:  each *.json ─stat/read─► unchanged? ── yes ─► keep its last good version
//!  StoreSource: each enforceable order ─serialise─┘  no
//!  (OrderSource, keyed by SourceId)               ▼
//!             Order ─► Safeguards: validate with the PSL; protected list ─► ValidatedOrder
//!                (only the changed orders)      (held → rejected with the reason)   │
//!                                                                      PolicyChange list
//!   first load, or most names changed: CompiledPolicy::compile ◄───────────┤
//!   otherwise:                  current.with_changes(&changes) ◄───────────┘
//!                                            │ publish (atomic) ──► PolicyHandle
//!                                            └─ overlay too big ─► compact() on a background
//!                                               thread, published only if no newer generation
//!                                               went out meanwhile
//!
//!   an invalid or held order ─► ERROR log naming the file (or store order) and the field or
//!                               target; its last good version stays in force, the other
//!                               changes apply
//! ```
//!
//! The startup load runs on the caller's thread (at normal priority, before the listeners
//! start); then [`spawn`] moves the [`OrderLoader`] to the loader actor's thread, which runs
//! every later load ([`watch`](self::watch) module: inotify, poll, SIGHUP, store changes).
//!
//! | module | concern |
//! |---|---|
//! | `files` | order files: listing, fingerprints, [`FileSource`] |
//! | `store` | the control plane's store: [`StoreSource`] |
//! | `fleet` | a fleet primary's orders, as an edge follows them: [`FleetSource`] |
//! | `source` | the [`OrderSource`] trait, [`SourceId`], [`Safeguards`] (PSL, protected list) |
//! | `diff` | last good versions, one load's reading, the change list |
//! | `loader` | [`OrderLoader`]: read, validate, diff, compile, publish |
//! | `publish` | publishing, freeing replaced policies, background compaction |
//! | `watch` | the loader actor: [`spawn`], [`LoaderHandle`], [`LoadStatus`], file-system events |
//! | `priority` | the loader's thread priority |
//!
//! Memory: the loader keeps, per order, a content hash and the last good order; orders with
//! more than [`RETAIN_TARGETS`] targets keep only a digest of their target set, so the loader
//! does not hold a second copy of millions of names (`docs/design/0006-incremental-policy-updates.md`).
//! Replaced policies are dropped on the loader's thread once no query holds them, and the
//! heap's free pages are then given back (`malloc_trim`): the transient of a load is not kept
//! in RSS. Decisions: `docs/design/0010-loader-actor.md`.

use std::io;
use std::path::PathBuf;

use juris_policy::{CompileError, ValidationErrors};

mod diff;
mod files;
mod fleet;
mod loader;
mod priority;
mod publish;
mod rpz_feed;
mod source;
mod store;
#[cfg(test)]
mod tests;
mod watch;

pub use files::FileSource;
pub use fleet::FleetSource;
pub use loader::{NameTargets, OrderLoader};
pub use rpz_feed::RpzFeedSource;
pub(crate) use source::document_hash;
pub use source::{OrderSource, Safeguards, SourceId};
pub use store::StoreSource;
pub use watch::{spawn, LoaderHandle};

/// Orders with more targets than this keep only a digest of their target set in the loader's
/// state (not the targets themselves): a change of their metadata is still a cheap
/// [`PolicyChange::Update`](juris_policy::PolicyChange), a change of their targets re-puts the
/// whole order (overlay, then compaction). Smaller orders keep their
/// [`ValidatedOrder`](juris_policy::ValidatedOrder) (≈ 80 B per target) for
/// `PolicyChange::between`. At this limit a retained order costs at most ≈ 1.3 MB.
pub const RETAIN_TARGETS: usize = 16_384;

/// Why an order (or the orders) could not be loaded. Each variant names the file or store
/// order.
#[derive(Debug, thiserror::Error)]
pub enum OrdersError {
    /// The file or directory could not be read.
    #[error("{path}: {source}")]
    Read {
        /// The file or directory.
        path: PathBuf,
        /// The I/O error.
        source: io::Error,
    },
    /// Not an order document (JSON syntax, an unknown field, a wrong type).
    #[error("{path}: not a valid order document: {source}")]
    Parse {
        /// The file.
        path: PathBuf,
        /// What serde reported (field, line and column).
        source: serde_json::Error,
    },
    /// An order that fails validation (each problem names its field), the Public Suffix List
    /// included.
    #[error("{from}: {source}")]
    Invalid {
        /// Where it comes from.
        from: SourceId,
        /// The problems.
        source: ValidationErrors,
    },
    /// An order with a target on the protected list and no override for it: held, not
    /// enforced.
    #[error(
        "{from}: held, not enforced: {reason}; record an override for {target:?} to enforce it"
    )]
    Held {
        /// Where it comes from.
        from: SourceId,
        /// The target, normalised.
        target: String,
        /// Which protected entry it touches.
        reason: String,
    },
    /// An order that does not compile with the others (e.g. two files with the same id).
    #[error("{from}: {source}")]
    Compile {
        /// Where it comes from.
        from: SourceId,
        /// Why.
        source: CompileError,
    },
    /// The orders do not compile together.
    #[error("{sources}: {source}")]
    Policy {
        /// The sources, as the loader names them.
        sources: String,
        /// Why.
        source: CompileError,
    },
    /// A source reported an order unchanged that it never handed over (a bug in the source).
    #[error("{from}: reported unchanged without a last good version")]
    Inconsistent {
        /// The order.
        from: SourceId,
    },
    /// The control plane's store could not be read.
    #[error("control store: {0}")]
    Store(String),
}
