//! The loader: reads every source, validates the changed orders through the same safeguards,
//! diffs them against the policy in force and publishes the result.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Instant;

use juris_policy::{CompileError, CompileOptions, CompiledPolicy, Order, ValidatedOrder};
use juris_server::PolicyHandle;

use super::diff::{changes, Body, Known, Reading};
use super::files::{unix_seconds, RACY_SECONDS};
use super::publish::{reap, Compactor};
use super::source::{OrderSource, Safeguards, SourceId, Version};
use super::OrdersError;

/// Keeps the published policy in step with its sources. Owned by one thread at a time: the
/// startup load runs on the caller's thread, then [`spawn`](super::spawn) moves the loader to
/// its own thread, and everything else reaches it through a
/// [`LoaderHandle`](super::LoaderHandle).
#[derive(Debug)]
pub struct OrderLoader {
    sources: Vec<Box<dyn OrderSource>>,
    safeguards: Safeguards,
    pub(crate) generation: u64,
    last_error: Option<String>,
    /// The last good version of every order compiled into the policy in force.
    pub(crate) known: BTreeMap<SourceId, Known>,
    pub(crate) compactor: Compactor,
    /// Orders parsed and validated since the start (tests, logs).
    pub(crate) validations: u64,
    /// Successful loads so far (the first one compiles from scratch).
    loads: u64,
    /// The protected list's generation the orders in `known` were validated with.
    protected_generation: u64,
    /// The name targets of the orders in force, shared with candidate mining (when asked).
    name_targets: Option<NameTargets>,
    /// A fleet primary's publisher: after every load that published, it gets the orders in
    /// force as written (`documents`).
    publisher: Option<Arc<crate::fleet::publisher::Publisher>>,
    /// The last good document of every order in force (kept only with a publisher).
    documents: BTreeMap<SourceId, Arc<Order>>,
}

/// (order id, target name) of every `domain`/`subtree` target of the active and shadow orders
/// the loader holds whole (orders over `RETAIN_TARGETS` targets are left out), replaced after
/// each load that published.
pub type NameTargets = Arc<std::sync::Mutex<Arc<Vec<(String, String)>>>>;

/// What a load put in force.
#[derive(Debug)]
pub struct Loaded {
    /// The generation in force after the load.
    pub generation: u64,
    /// Orders in it.
    pub orders: usize,
    /// Whether a new policy was published (nothing is when nothing valid changed).
    pub published: bool,
    /// Whether it was compiled from scratch rather than changed incrementally.
    pub full: bool,
    /// Orders parsed and validated by this load (the changed ones).
    pub validated: usize,
    /// Orders that are invalid or held and were not applied: the last good version of each
    /// (if any) stays in force.
    pub rejected: Vec<OrdersError>,
}

impl OrderLoader {
    /// A loader compiling the orders of `sources` together, each through `safeguards`, and
    /// publishing to `handle`. Nothing is read yet.
    pub fn new(
        sources: Vec<Box<dyn OrderSource>>,
        safeguards: Safeguards,
        handle: Arc<PolicyHandle>,
    ) -> Self {
        Self {
            protected_generation: safeguards.protected_generation(),
            sources,
            safeguards,
            generation: handle.current().generation(),
            last_error: None,
            known: BTreeMap::new(),
            compactor: Compactor::new(handle),
            validations: 0,
            loads: 0,
            name_targets: None,
            publisher: None,
            documents: BTreeMap::new(),
        }
    }

    /// The cell the loader keeps the orders' name targets in from now on (for candidate
    /// mining), filled now.
    pub fn share_name_targets(&mut self) -> NameTargets {
        let cell = self
            .name_targets
            .get_or_insert_with(NameTargets::default)
            .clone();
        self.refresh_name_targets();
        cell
    }

    fn refresh_name_targets(&self) {
        use juris_policy::{OrderState, TargetKind, TargetValue};
        let Some(cell) = &self.name_targets else {
            return;
        };
        let mut targets = Vec::new();
        for known in self.known.values() {
            let Body::Full(order) = &known.body else {
                continue;
            };
            if !matches!(order.info().state, OrderState::Active | OrderState::Shadow) {
                continue;
            }
            for target in order.targets() {
                if let (TargetKind::Domain | TargetKind::Subtree, TargetValue::Name(name)) =
                    (target.kind(), target.value())
                {
                    targets.push((order.id().to_owned(), name.to_string()));
                }
            }
        }
        if let Ok(mut slot) = cell.lock() {
            *slot = Arc::new(targets);
        }
    }

    /// Publishes the orders in force to `publisher` after every load that changes them. Set
    /// before the first load (the documents of unchanged orders are not read again).
    pub fn set_publisher(&mut self, publisher: Arc<crate::fleet::publisher::Publisher>) {
        self.publisher = Some(publisher);
    }

    /// How logs name the sources: `/etc/juris/orders + control store`.
    pub fn describe(&self) -> String {
        let names: Vec<String> = self.sources.iter().map(|s| s.describe()).collect();
        names.join(" + ")
    }

    /// The last load's rejections, while they last (cleared by the next load without one).
    pub fn last_error(&self) -> Option<&str> {
        self.last_error.as_deref()
    }

    /// The generation in force.
    pub fn generation(&self) -> u64 {
        self.generation
    }

    /// Files read whole so far, by every source.
    pub(crate) fn reads(&self) -> u64 {
        self.sources.iter().map(|s| s.reads()).sum()
    }

    /// The paths whose file-system events concern the sources.
    pub(crate) fn watch_paths(&self) -> Vec<std::path::PathBuf> {
        self.sources
            .iter()
            .filter_map(|s| s.watch_path().map(ToOwned::to_owned))
            .collect()
    }

    /// Reads the sources, validates the changed orders and publishes the result: at startup
    /// (a full compile), on every change and on SIGHUP (the changes on top of the policy in
    /// force). An invalid or held order is reported in [`Loaded::rejected`] and its last good
    /// version stays in force; on `Err` (a source could not be read, the changes do not
    /// compile) nothing changes at all.
    pub fn load(&mut self, now: u64) -> Result<Loaded, OrdersError> {
        let started = Instant::now();
        reap(&self.compactor.published);
        // A new protected list (SIGHUP after `juris safeguards update`): every order is
        // validated again, as at a start. Forgetting what was read makes each source hand
        // every order over as changed; an order the new list holds is rejected like any held
        // change (its version in force stays, reported).
        let protected = self.safeguards.protected_generation();
        if protected != self.protected_generation {
            for known in self.known.values_mut() {
                known.stamp = None;
                known.content = !known.content;
            }
            self.protected_generation = protected;
        }
        let mut reading = Reading::default();
        let mut rejected_by_source = Vec::with_capacity(self.sources.len());
        // The documents of the orders validated anew (kept only for a fleet publisher).
        let keep_documents = self.publisher.is_some();
        let mut fresh_documents: BTreeMap<SourceId, Arc<Order>> = BTreeMap::new();
        for source in &mut self.sources {
            let reviewed = source.reviews_protected_targets();
            let before = reading.rejected.len();
            let (known, safeguards) = (&self.known, &self.safeguards);
            let mut documents = keep_documents.then_some(&mut fresh_documents);
            source.read(known, &mut |id, version| {
                take(
                    &mut reading,
                    known,
                    safeguards,
                    reviewed,
                    id,
                    version,
                    documents.as_deref_mut(),
                );
            })?;
            rejected_by_source.push(reading.rejected.len() - before);
        }
        reading.reject_duplicate_ids(&self.known);
        self.validations += reading.validated as u64;

        let current = self.compactor.current();
        // The first load compiles from scratch: no change list (it would copy every order).
        let (changes, changed_names) = if self.loads == 0 {
            (Vec::new(), 0)
        } else {
            changes(&self.known, &reading)
        };
        let total_names: usize = reading.next.values().map(|k| k.targets).sum();
        let complete = reading
            .next
            .iter()
            .all(|(key, k)| reading.fresh.contains_key(key) || matches!(k.body, Body::Full(_)));
        // A full compile at the first load, or when most names changed and every order is at
        // hand: one sort of all names then beats an overlay of most of them plus a compaction.
        let full =
            self.loads == 0 || (complete && changed_names > 0 && changed_names > total_names / 2);
        let sources = self.describe();
        let compile_error = |source| OrdersError::Policy {
            sources: sources.clone(),
            source,
        };
        let policy = if full {
            let generation = self.generation + 1;
            let mut orders = Vec::with_capacity(reading.next.len());
            for (key, k) in &reading.next {
                match (reading.fresh.remove(key), &k.body) {
                    (Some(order), _) => orders.push(order),
                    (None, Body::Full(order)) => orders.push(ValidatedOrder::clone(order)),
                    // `complete` (or the first load: every order is fresh).
                    (None, Body::Digest(_)) => {
                        return Err(compile_error(CompileError::UnknownOrder(k.id().to_owned())))
                    }
                }
            }
            Some(
                CompiledPolicy::compile(&orders, &CompileOptions { generation })
                    .map_err(compile_error)?,
            )
        } else if changes.is_empty() {
            None
        } else {
            Some(current.with_changes(&changes).map_err(compile_error)?)
        };
        // The new orders (and their copies in the change list) are in the policy now.
        let change_count = changes.len();
        drop(changes);
        drop(reading.fresh);
        drop(current);

        let published = policy.is_some();
        if let Some(policy) = policy {
            self.generation = policy.generation();
            self.compactor.publish(policy, now);
        }
        let orders = self.compactor.current().stats().orders;
        let generation = self.generation;
        if keep_documents {
            let documents: BTreeMap<SourceId, Arc<Order>> = reading
                .next
                .keys()
                .filter_map(|key| {
                    let document = fresh_documents
                        .remove(key)
                        .or_else(|| self.documents.get(key).cloned())?;
                    Some((key.clone(), document))
                })
                .collect();
            self.documents = documents;
            if let (Some(publisher), true) = (&self.publisher, published) {
                publisher.publish(self.documents.values().cloned().collect());
            }
        }
        self.known = reading.next;
        self.loads += 1;
        if published {
            self.refresh_name_targets();
        }
        for (source, rejected) in self.sources.iter_mut().zip(rejected_by_source) {
            source.loaded(rejected == 0);
        }
        let rejected: Vec<OrdersError> = reading.rejected.into_iter().map(|(_, e)| e).collect();
        self.last_error = (!rejected.is_empty()).then(|| {
            rejected
                .iter()
                .map(ToString::to_string)
                .collect::<Vec<_>>()
                .join("; ")
        });
        tracing::debug!(
            generation,
            full,
            changes = change_count,
            changed_names,
            validated = reading.validated,
            elapsed_us = started.elapsed().as_micros() as u64,
            "orders loaded"
        );
        Ok(Loaded {
            generation,
            orders,
            published,
            full,
            validated: reading.validated,
            rejected,
        })
    }

    /// Loads again if a source changed since the last load (the poll), logging the outcome.
    pub fn poll(&mut self, now: u64) -> Option<Loaded> {
        let mut changed = false;
        for source in &mut self.sources {
            changed |= source.changed();
        }
        changed
            .then(|| self.reload(now, "orders changed", true))
            .flatten()
    }

    /// [`load`](Self::load) with logging (`why` says what triggered it); `log_unchanged`: say
    /// so at INFO when nothing changed (DEBUG otherwise: a file-system event that changed no
    /// order).
    pub fn reload(&mut self, now: u64, why: &str, log_unchanged: bool) -> Option<Loaded> {
        let started = Instant::now();
        let sources = self.describe();
        match self.load(now) {
            Ok(loaded) => {
                for error in &loaded.rejected {
                    tracing::error!(
                        sources,
                        generation = loaded.generation,
                        "{why}: an order is INVALID or HELD and was NOT applied; its last good \
                         version (if any) stays in force: {error}"
                    );
                }
                if loaded.published {
                    tracing::info!(
                        sources,
                        generation = loaded.generation,
                        orders = loaded.orders,
                        validated = loaded.validated,
                        full = loaded.full,
                        elapsed_ms = started.elapsed().as_secs_f64() * 1e3,
                        "{why}: new policy in force"
                    );
                } else if loaded.rejected.is_empty() && log_unchanged {
                    tracing::info!(
                        sources,
                        generation = loaded.generation,
                        "{why}: no order changed; generation {} stays in force",
                        loaded.generation
                    );
                } else if loaded.rejected.is_empty() {
                    tracing::debug!(
                        sources,
                        generation = loaded.generation,
                        "{why}: no order changed"
                    );
                }
                Some(loaded)
            }
            Err(error) => {
                tracing::error!(
                    sources,
                    generation = self.generation,
                    "{why}: the orders are INVALID and were NOT applied; the last good policy \
                     (generation {}) stays in force: {error}",
                    self.generation
                );
                None
            }
        }
    }

    /// Whether a file was read while it was being modified (its stamp is not trusted, so every
    /// load reads and hashes it again) and has been left alone since for longer than
    /// [`RACY_SECONDS`]: one more load then trusts its stamp, and later loads need not open it.
    pub(crate) fn has_settled_untrusted_files(&self) -> bool {
        let now = unix_seconds();
        self.known.values().any(|k| {
            k.stamp
                .as_ref()
                .is_some_and(|(stamp, trusted)| !trusted && stamp.mtime.0 < now - RACY_SECONDS)
        })
    }
}

/// One order handed over by a source: kept at its last good version, validated anew, or
/// rejected.
fn take(
    reading: &mut Reading,
    known: &BTreeMap<SourceId, Known>,
    safeguards: &Safeguards,
    protected_reviewed: bool,
    id: SourceId,
    version: Version,
    documents: Option<&mut BTreeMap<SourceId, Arc<Order>>>,
) {
    match version {
        Version::Unchanged(stamp) => match known.get(&id) {
            Some(last_good) => {
                let mut k = last_good.clone();
                if stamp.is_some() {
                    k.stamp = stamp;
                }
                reading.accept(id, k, None);
            }
            // A source says unchanged only of what `known` holds; be safe anyway.
            None => {
                let error = OrdersError::Inconsistent { from: id.clone() };
                reading.reject(known, id, error);
            }
        },
        Version::Unreadable(error) => reading.reject(known, id, error),
        // Validated with the rules in force (an edge's snapshot): no document to keep (an
        // edge has no publisher).
        Version::Validated { content, order } => {
            let k = Known::new(None, content, &order);
            reading.accept(id, k, Some(order));
        }
        Version::Changed {
            content,
            stamp,
            order,
        } => {
            reading.validated += 1;
            let valid = order.and_then(|order| {
                let valid = safeguards.validate(&id, &order, protected_reviewed)?;
                if let Some(documents) = documents {
                    documents.insert(id.clone(), Arc::new(order));
                }
                Ok(valid)
            });
            match valid {
                Ok(order) => {
                    let k = Known::new(stamp, content, &order);
                    reading.accept(id, k, Some(order));
                }
                Err(error) => reading.reject(known, id, error),
            }
        }
    }
}
