//! The policy state the pipeline consults: the compiled policy (swapped atomically on every
//! change), the jurisdiction classifier, and the counters per order × jurisdiction.
//!
//! ```text
//!  loader (binary: files, later the control plane) ──PolicyHandle::publish──┐
//!                                                                          ▼
//!  every query: PolicyHandle::load() ─► Arc<CompiledPolicy> (lock-free, no allocation)
//!               Classifier::classify ─► Jurisdiction
//!  a match only: OrderCounters::blocked / shadow ─► Mutex<HashMap> (no client address)
//! ```

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};

use arc_swap::ArcSwap;
use juris_geo::{Classifier, CountryCode, GeoConfig, GeoError};
use juris_policy::{CompiledPolicy, Country};

/// The policy in force, published atomically. Readers never block and never allocate; a
/// publisher replaces the whole [`CompiledPolicy`] (its generation says which one it is).
/// The jurisdictions where service is withdrawn (`policy.withdraw`) are published here too,
/// apart from the orders: the order loader and a configuration reload each replace their part
/// without a restart.
#[derive(Debug)]
pub struct PolicyHandle {
    current: ArcSwap<CompiledPolicy>,
    /// Jurisdictions where service is withdrawn.
    withdrawn: ArcSwap<Vec<CountryCode>>,
    /// Whether `withdrawn` is not empty: one atomic load for the common case of none.
    any_withdrawn: AtomicBool,
    /// Unix seconds of the last [`publish`](Self::publish) (0: never since start).
    changed_at: AtomicU64,
    /// The verdict epoch: moves on after every publish (stored after the policy itself) and
    /// every [`void_verdicts`](Self::void_verdicts) (a cache flush). Never 0.
    epoch: AtomicU64,
    /// Publishers take turns.
    publishing: Mutex<()>,
}

impl PolicyHandle {
    /// A handle holding `policy`.
    pub fn new(policy: CompiledPolicy) -> Self {
        Self {
            epoch: AtomicU64::new(1),
            current: ArcSwap::from_pointee(policy),
            withdrawn: ArcSwap::from_pointee(Vec::new()),
            any_withdrawn: AtomicBool::new(false),
            changed_at: AtomicU64::new(0),
            publishing: Mutex::new(()),
        }
    }

    /// The policy in force (a cheap guard; hold it for one query, not longer).
    #[inline]
    pub fn load(&self) -> arc_swap::Guard<Arc<CompiledPolicy>> {
        self.current.load()
    }

    /// The policy in force, as an owned `Arc`.
    pub fn current(&self) -> Arc<CompiledPolicy> {
        self.current.load_full()
    }

    /// Puts `policy` in force for every query that starts after this call. `now` (Unix
    /// seconds) is recorded as the time of the last change.
    pub fn publish(&self, policy: CompiledPolicy, now: u64) {
        let _turn = self
            .publishing
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        self.current.store(Arc::new(policy));
        // After the store: whoever reads the new epoch finds that policy (or a newer one) in
        // force, so a verdict remembered under it is never applied to an older policy.
        self.epoch.fetch_add(1, Ordering::AcqRel);
        self.changed_at.store(now, Ordering::Relaxed);
    }

    /// The verdict epoch (one atomic load): the UDP workers' hot answers remember their
    /// "no order applies" verdict under it (`docs/design/0007-hot-answers.md`). Read it
    /// **before** [`load`](Self::load): a verdict is then never remembered under an epoch newer
    /// than the policy it was decided with. Right after a publish it may still be the previous
    /// epoch for an instant, which is the same as the query having arrived an instant earlier.
    #[inline]
    pub fn epoch(&self) -> u64 {
        self.epoch.load(Ordering::Acquire)
    }

    /// Voids every remembered verdict (the epoch moves on without a new policy): what a cache
    /// flush does after removing the entries, so no worker serves a flushed answer from its
    /// hot table (`docs/design/0017-cache-control.md`).
    pub fn void_verdicts(&self) {
        self.epoch.fetch_add(1, Ordering::AcqRel);
    }

    /// Puts `withdrawn` in force as the jurisdictions where service is withdrawn, for every
    /// query that starts after this call (independent of the orders and their generation).
    pub fn publish_withdrawn(&self, withdrawn: Vec<CountryCode>) {
        let any = !withdrawn.is_empty();
        self.withdrawn.store(Arc::new(withdrawn));
        self.any_withdrawn.store(any, Ordering::Release);
    }

    /// The jurisdictions where service is withdrawn now.
    pub fn withdrawn(&self) -> Arc<Vec<CountryCode>> {
        self.withdrawn.load_full()
    }

    /// Whether service is withdrawn in `country` now. One atomic load when it is withdrawn
    /// nowhere (the common case).
    #[inline]
    pub fn is_withdrawn(&self, country: CountryCode) -> bool {
        self.any_withdrawn.load(Ordering::Acquire) && self.withdrawn.load().contains(&country)
    }

    /// Whether service is withdrawn anywhere now (one atomic load).
    #[inline]
    pub fn any_withdrawn(&self) -> bool {
        self.any_withdrawn.load(Ordering::Acquire)
    }

    /// Unix seconds of the last publish, `None` if nothing was published since start.
    pub fn changed_at(&self) -> Option<u64> {
        match self.changed_at.load(Ordering::Relaxed) {
            0 => None,
            at => Some(at),
        }
    }
}

impl Default for PolicyHandle {
    fn default() -> Self {
        Self::new(CompiledPolicy::empty())
    }
}

/// Everything the pipeline needs to enforce orders: shared with the loader (which publishes
/// new policies), the SIGHUP handler (which reloads the GeoIP database) and status output
/// (which reads the counters). Cloning copies three `Arc`s.
#[derive(Debug, Clone)]
pub struct PolicyEngine {
    /// The compiled policy in force.
    pub policy: Arc<PolicyHandle>,
    /// Client → jurisdiction.
    pub classifier: Arc<Classifier>,
    /// Blocks and shadow matches per order × jurisdiction.
    pub counters: Arc<OrderCounters>,
    /// Who takes NOTIFY messages (RFC 1996) arriving on the DNS listeners: a fleet edge.
    pub notify: NotifyReceiver,
}

/// What a NOTIFY names: the zone (wire form, as received) and the sender's address. The
/// receiver returns whether it follows that zone (NOERROR) or not (REFUSED).
pub type NotifyFn = dyn Fn(&[u8], std::net::IpAddr) -> bool + Send + Sync;

/// The receiver of NOTIFY messages, set once (by a fleet edge) after the engine is built;
/// without one NOTIFY is answered NOTIMP like any opcode other than QUERY.
#[derive(Clone, Default)]
pub struct NotifyReceiver(Arc<std::sync::OnceLock<Box<NotifyFn>>>);

impl NotifyReceiver {
    /// Sets the receiver (a second call is ignored).
    pub fn set(&self, receiver: Box<NotifyFn>) {
        let _ = self.0.set(receiver);
    }

    /// The receiver, if one is set.
    pub fn get(&self) -> Option<&NotifyFn> {
        self.0.get().map(|f| &**f)
    }
}

impl std::fmt::Debug for NotifyReceiver {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_tuple("NotifyReceiver")
            .field(&self.0.get().is_some())
            .finish()
    }
}

impl PolicyEngine {
    /// An engine enforcing `policy` for clients placed by `classifier`.
    pub fn new(policy: Arc<PolicyHandle>, classifier: Arc<Classifier>) -> Self {
        Self {
            policy,
            classifier,
            counters: Arc::new(OrderCounters::default()),
            notify: NotifyReceiver::default(),
        }
    }

    /// No orders and no GeoIP database: every query is allowed (only listener pins place
    /// clients). What [`crate::start`] uses.
    pub fn allow_all() -> Result<Self, GeoError> {
        Ok(Self::new(
            Arc::new(PolicyHandle::default()),
            Arc::new(Classifier::new(&GeoConfig::default())?),
        ))
    }
}

/// Counts per order × jurisdiction: queries blocked by the order (the order that fired), and
/// shadow matches (what a shadow order would have blocked). Only touched when something
/// matched; holds no client address, only the country (or "unknown").
#[derive(Debug, Default)]
pub struct OrderCounters {
    by_order: Mutex<HashMap<String, PerJurisdiction>>,
    withdrawn: Mutex<HashMap<CountryCode, u64>>,
}

/// [blocked, shadow] per client country (`None`: unknown).
type PerJurisdiction = HashMap<Option<Country>, [u64; 2]>;

/// One row of [`OrderCounters::snapshot`].
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct OrderCount {
    /// The order id.
    pub order: String,
    /// The client's jurisdiction: a two-letter code or `unknown`.
    pub jurisdiction: String,
    /// Queries this order blocked there.
    pub blocked: u64,
    /// Queries this order (in shadow state) would have blocked there.
    pub shadow: u64,
}

/// Queries refused in one withdrawn jurisdiction.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct WithdrawnCount {
    /// The two-letter code.
    pub jurisdiction: String,
    /// Queries refused.
    pub refused: u64,
}

const BLOCKED: usize = 0;
const SHADOW: usize = 1;

impl OrderCounters {
    /// Counts one query blocked by `order` for a client in `country`.
    pub fn blocked(&self, order: &str, country: Option<Country>) {
        self.bump(order, country, BLOCKED);
    }

    /// Counts one shadow match of `order` for a client in `country`.
    pub fn shadow(&self, order: &str, country: Option<Country>) {
        self.bump(order, country, SHADOW);
    }

    /// Counts one query refused because service is withdrawn in `country`.
    pub fn withdrawn(&self, country: CountryCode) {
        let mut map = self
            .withdrawn
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        *map.entry(country).or_default() += 1;
    }

    fn bump(&self, order: &str, country: Option<Country>, which: usize) {
        let mut map = self.by_order.lock().unwrap_or_else(PoisonError::into_inner);
        // Look up by &str first: the order's id is allocated once, on its first match.
        let per_country = match map.get_mut(order) {
            Some(per_country) => per_country,
            None => map.entry(order.to_owned()).or_default(),
        };
        per_country.entry(country).or_default()[which] += 1;
    }

    /// Every (order, jurisdiction) with a count, sorted by order then jurisdiction.
    pub fn snapshot(&self) -> Vec<OrderCount> {
        let map = self.by_order.lock().unwrap_or_else(PoisonError::into_inner);
        let mut rows: Vec<OrderCount> = map
            .iter()
            .flat_map(|(order, per_country)| {
                per_country.iter().map(move |(country, counts)| OrderCount {
                    order: order.clone(),
                    jurisdiction: country.map_or_else(|| "unknown".to_owned(), |c| c.to_string()),
                    blocked: counts[BLOCKED],
                    shadow: counts[SHADOW],
                })
            })
            .collect();
        rows.sort_by(|a, b| (&a.order, &a.jurisdiction).cmp(&(&b.order, &b.jurisdiction)));
        rows
    }

    /// Queries refused per withdrawn jurisdiction, sorted.
    pub fn withdrawn_snapshot(&self) -> Vec<WithdrawnCount> {
        let map = self
            .withdrawn
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        let mut rows: Vec<WithdrawnCount> = map
            .iter()
            .map(|(country, refused)| WithdrawnCount {
                jurisdiction: country.as_str().to_owned(),
                refused: *refused,
            })
            .collect();
        rows.sort_by(|a, b| a.jurisdiction.cmp(&b.jurisdiction));
        rows
    }
}

/// The policy's country for a classifier's country code (both are two upper-case letters).
#[inline]
pub fn policy_country(code: Option<CountryCode>) -> Option<Country> {
    code.and_then(|code| Country::from_ascii(&code.as_bytes()).ok())
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used, reason = "test code")]
mod tests {
    use super::*;

    #[test]
    fn counters_are_per_order_and_jurisdiction() {
        let counters = OrderCounters::default();
        let it = Some("IT".parse().unwrap());
        counters.blocked("A", it);
        counters.blocked("A", it);
        counters.shadow("A", None);
        counters.shadow("B", it);
        counters.withdrawn(CountryCode::parse("FR").unwrap());
        let rows = counters.snapshot();
        assert_eq!(
            rows,
            vec![
                OrderCount {
                    order: "A".into(),
                    jurisdiction: "IT".into(),
                    blocked: 2,
                    shadow: 0
                },
                OrderCount {
                    order: "A".into(),
                    jurisdiction: "unknown".into(),
                    blocked: 0,
                    shadow: 1
                },
                OrderCount {
                    order: "B".into(),
                    jurisdiction: "IT".into(),
                    blocked: 0,
                    shadow: 1
                },
            ]
        );
        assert_eq!(counters.withdrawn_snapshot()[0].refused, 1);
    }

    #[test]
    fn publish_swaps_and_records_the_time() {
        let handle = PolicyHandle::default();
        assert_eq!(handle.changed_at(), None);
        let next =
            CompiledPolicy::compile(&[], &juris_policy::CompileOptions { generation: 7 }).unwrap();
        handle.publish(next, 1_700_000_000);
        assert_eq!(handle.load().generation(), 7);
        assert_eq!(handle.changed_at(), Some(1_700_000_000));
    }
}
