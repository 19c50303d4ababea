//! [`Control`]: the operations of the control plane on the store, with roles, lifecycle rules,
//! safeguards and the audit entry of every change in the same transaction.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use ipnet::IpNet;
use jiff::Timestamp;
use juris_policy::{
    normalize_name, Country, Order, OrderKind, OrderState, Target, TargetKind, TargetValue,
    ValidatedOrder, ValidatedTarget, ValidationOptions,
};
use rand::RngCore;
use rusqlite::{params, OptionalExtension, Transaction};
use serde::{Deserialize, Serialize};
use serde_json::json;
use sha2::{Digest, Sha256};
use tokio::sync::watch;

use crate::audit::{self, AuditEntry, NewEntry, VerifyReport};
use crate::error::ControlError;
use crate::safeguards::{ProtectedConfig, ProtectedList, Psl, SharedProtected};
use crate::store::rows::{
    delete_target, insert_target, insert_transition, load_order, load_target, load_targets,
    load_targets_first, load_transitions, target_counts, target_exists,
};
use crate::store::Store;

#[path = "review.rs"]
mod review;

#[path = "listing.rs"]
mod listing;
#[path = "sessions.rs"]
pub(crate) mod sessions;
pub use listing::{JurisdictionInForce, OrderPage, OrderQuery, Overview};

/// Roles, weakest first: each role may do everything the roles before it may.
#[derive(
    Debug,
    Clone,
    Copy,
    PartialEq,
    Eq,
    PartialOrd,
    Ord,
    Hash,
    Serialize,
    Deserialize,
    clap::ValueEnum,
)]
#[serde(rename_all = "snake_case")]
pub enum Role {
    /// Read everything (orders, audit, status, metrics, exports).
    Viewer,
    /// Run the resolver: flush its cache and read its cache statistics. No order changes.
    Operator,
    /// Create and update orders, add and remove targets, shadow, import feeds.
    Editor,
    /// Activate, suspend (including the kill switch) and lift orders.
    Approver,
    /// Override safeguards, create tokens.
    Admin,
}

/// Who is acting: the name of the token and its role.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Actor {
    /// The token's name (recorded in the audit log and in target provenance).
    pub name: String,
    /// The token's role.
    pub role: Role,
}

/// Supplies "now" (RFC 3339 times in the store and the audit log): the workspace's one clock.
/// Tests inject a fixed clock.
pub use juris_clock::{Clock, SystemClock};

/// The `[control]` section of the configuration.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ControlConfig {
    /// Where the admin API listens (`ADDR:PORT`), or `none`. Default: `127.0.0.1:8053`.
    #[serde(default = "default_api_listen")]
    pub api_listen: String,
    /// A second listener (`ADDR:PORT`) that serves only the public transparency page
    /// (`/transparency`, `/transparency.json`), e.g. on a public address while the admin API
    /// stays on loopback. Default: none.
    #[serde(default)]
    pub public_listen: Option<String>,
    /// Four-eyes rule: an order must be activated by someone other than its creator.
    /// Default: false.
    #[serde(default)]
    pub four_eyes: bool,
    /// Orders whose `comply_by` is closer than this and that are not active are listed in the
    /// status as approaching their deadline. Default: 72.
    #[serde(default = "default_deadline_hours")]
    pub deadline_warning_hours: u32,
    /// How many days of per-day counters (blocked answers and shadow matches per order ×
    /// jurisdiction × UTC day) the store keeps; older days are deleted at each flush.
    /// Default: 400.
    #[serde(default = "default_stats_retention_days")]
    pub stats_retention_days: u32,
    /// How often `juris serve` adds the resolver's counters to the store's per-day counters,
    /// in seconds (also once at shutdown). Default: 60.
    #[serde(default = "default_stats_flush_seconds")]
    pub stats_flush_seconds: u32,
    /// The protected list.
    #[serde(default)]
    pub protected: ProtectedConfig,
    /// PEM certificate chain of the admin API; with `tls_key`, the API speaks HTTPS only.
    /// Default: none (plain HTTP, allowed on loopback only).
    #[serde(default)]
    pub tls_cert: Option<std::path::PathBuf>,
    /// PEM private key of `tls_cert`. Default: none.
    #[serde(default)]
    pub tls_key: Option<std::path::PathBuf>,
    /// PEM CA certificates: with it, every API client must present a certificate they
    /// issued. Default: none (no client certificates).
    #[serde(default)]
    pub tls_client_ca: Option<std::path::PathBuf>,
    /// Serve the API over plain HTTP on an address beyond loopback (tokens in clear on the
    /// network). Default: false (refused at start).
    #[serde(default)]
    pub danger_api_without_tls: bool,
}

impl Default for ControlConfig {
    fn default() -> Self {
        ControlConfig {
            api_listen: default_api_listen(),
            public_listen: None,
            four_eyes: false,
            deadline_warning_hours: default_deadline_hours(),
            stats_retention_days: default_stats_retention_days(),
            stats_flush_seconds: default_stats_flush_seconds(),
            protected: ProtectedConfig::default(),
            tls_cert: None,
            tls_key: None,
            tls_client_ca: None,
            danger_api_without_tls: false,
        }
    }
}

fn default_api_listen() -> String {
    crate::DEFAULT_API_LISTEN.to_owned()
}

fn default_deadline_hours() -> u32 {
    72
}

fn default_stats_retention_days() -> u32 {
    400
}

fn default_stats_flush_seconds() -> u32 {
    60
}

/// The status of a stored target.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum TargetStatus {
    /// Handed to the resolver.
    Enforced,
    /// Held by a safeguard; not enforced until an admin overrides it.
    NeedsReview,
    /// Was held; an admin released it (audited).
    Overridden,
}

impl TargetStatus {
    /// `enforced`, `needs_review` or `overridden` (as the API writes it).
    pub fn as_str(self) -> &'static str {
        status_str(self)
    }
}

/// A stored target with its provenance and status.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TargetView {
    /// The kind.
    #[serde(rename = "type")]
    pub kind: TargetKind,
    /// The normalised value.
    pub value: String,
    /// When it was added (RFC 3339).
    pub added_at: String,
    /// Who added it (token name, or `feed:NAME`).
    pub added_by: String,
    /// The feed that added it, if any.
    pub feed: Option<String>,
    /// Evidence reference.
    pub evidence: Option<String>,
    /// Whether it is enforced.
    pub status: TargetStatus,
    /// Why it is held (for `needs_review` and `overridden`).
    pub review_reason: Option<String>,
    /// Who released it.
    pub override_by: Option<String>,
    /// Why it was released.
    pub override_reason: Option<String>,
}

/// One state change.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TransitionView {
    /// From (none for the creation).
    pub from: Option<String>,
    /// To.
    pub to: String,
    /// When.
    pub at: String,
    /// Who.
    pub actor: String,
    /// Why.
    pub reason: String,
}

/// An order as stored: the document (state and targets filled in), target statuses, history.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct OrderView {
    /// The order document, re-appliable (`juris order apply`).
    pub order: Order,
    /// `state`, or `expired` once `expires_at` has passed.
    pub effective_state: String,
    /// For an `extension`: whether its parent is in force (`in force`, or why not, e.g. `its
    /// parent order is suspended`); an extension matches nothing while its parent is not in
    /// force. Absent for other kinds.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub parent_status: Option<String>,
    /// Who created it.
    pub created_by: String,
    /// When.
    pub created_at: String,
    /// Last change.
    pub updated_at: String,
    /// Every target with provenance and status.
    pub targets: Vec<TargetView>,
    /// State history, oldest first.
    pub transitions: Vec<TransitionView>,
    /// On a fleet primary: where this version of the order is in force (every follower the
    /// primary knows of, since when). Absent on a node that publishes nothing.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub fleet: Option<OrderFleet>,
}

/// Where an order is in force across the fleet (on a primary; `docs/fleet.md`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct OrderFleet {
    /// The serial of the fleet's zones that first carried this version of the order; `None`
    /// when it is not published (not in force on the primary, or too large for the zone).
    pub serial: Option<u32>,
    /// When that serial was published.
    pub published_at: Option<Timestamp>,
    /// Every configured follower has this version in force.
    pub in_force_everywhere: bool,
    /// The configured followers that do not have it (yet).
    pub missing: Vec<String>,
    /// Every follower the primary knows of (configured, or seen transferring).
    pub nodes: Vec<OrderNode>,
}

/// One follower's part of [`OrderFleet`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct OrderNode {
    /// The follower's name (`[fleet] followers`, else its TSIG key or address).
    pub name: String,
    /// Listed in the configuration (`fleet.followers` or `fleet.notify`).
    pub configured: bool,
    /// It has this version of the order in force.
    pub in_force: bool,
    /// Since when (the first time the primary saw it at a serial carrying this version).
    pub since: Option<Timestamp>,
    /// The serial it has in force, as last reported.
    pub serial: Option<u32>,
    /// When the primary last heard from it.
    pub last_seen: Option<Timestamp>,
}

/// What a fleet primary knows of its followers, for [`Control`]: per order, where it is in
/// force. Set with [`Control::set_fleet`].
pub trait FleetProof: Send + Sync + std::fmt::Debug {
    /// Where the version in force of order `id` is in force; `None`: not a published order.
    fn order(&self, id: &str) -> Option<OrderFleet>;
}

/// One line of an order listing.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct OrderSummary {
    /// Id.
    pub id: String,
    /// Kind.
    pub kind: String,
    /// Issuing authority.
    pub authority: String,
    /// Case reference.
    pub reference: String,
    /// Jurisdictions as written.
    pub jurisdictions: Vec<String>,
    /// Stored state.
    pub state: String,
    /// `state`, or `expired`.
    pub effective_state: String,
    /// For an `extension`: whether its parent is in force (see [`OrderView::parent_status`]).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub parent_status: Option<String>,
    /// Number of targets.
    pub targets: u64,
    /// Number of targets held for review.
    pub needs_review: u64,
    /// Deadline.
    pub comply_by: Option<Timestamp>,
    /// Last change.
    pub updated_at: String,
}

/// Filters of an order listing (all optional, combined with AND).
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct OrderFilter {
    /// Stored state, or `expired`.
    pub state: Option<String>,
    /// A country code: orders that bind clients in it (global orders included).
    pub jurisdiction: Option<String>,
    /// Order kind.
    pub kind: Option<String>,
    /// Only orders with targets held for review.
    pub needs_review: Option<bool>,
}

/// The result of adding targets.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AddReport {
    /// Targets added and enforced.
    pub added: Vec<TargetView>,
    /// Targets added but held for review.
    pub held: Vec<TargetView>,
    /// Targets the order already had (`KIND VALUE`).
    pub existing: Vec<String>,
}

/// The store's part of the status.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct StoreStatus {
    /// Changes made since this process started (the value of the change notification).
    pub revision: u64,
    /// The last revision the resolver reported enforced.
    pub applied_revision: u64,
    /// Time from the last change to its enforcement, in milliseconds.
    pub last_change_to_enforcement_ms: Option<f64>,
    /// Orders by stored state.
    pub orders: BTreeMap<String, u64>,
    /// Orders whose `expires_at` has passed (still stored as active/shadow/suspended).
    pub expired: u64,
    /// Targets in all orders.
    pub targets: u64,
    /// Targets held for review.
    pub needs_review: u64,
    /// Orders approaching (or past) `comply_by` that are not active.
    pub deadlines: Vec<Deadline>,
    /// Audit log length.
    pub audit_entries: u64,
    /// Errors of the store since start.
    pub store_errors: u64,
}

/// A token as listed: never its secret nor its hash.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TokenView {
    /// Its name (what the audit log records).
    pub name: String,
    /// Its role.
    pub role: Role,
    /// When it was created (RFC 3339).
    pub created_at: String,
    /// Who created it.
    pub created_by: String,
    /// When it was revoked, if it was.
    pub revoked_at: Option<String>,
}

/// An order approaching its deadline without being enforced.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Deadline {
    /// The order.
    pub order: String,
    /// Its state.
    pub state: String,
    /// The deadline.
    pub comply_by: Timestamp,
    /// Whether it has passed.
    pub overdue: bool,
    /// On a fleet primary, for an active order: the configured followers that do not have it
    /// in force yet (the deadline is met only when every follower has it).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub followers_missing: Vec<String>,
}

/// The control plane: the store plus the rules. `Send + Sync`; share it in an `Arc`.
#[derive(Debug)]
pub struct Control {
    pub(crate) store: Store,
    clock: Arc<dyn Clock>,
    four_eyes: bool,
    pub(crate) protected: SharedProtected,
    deadline_warning: jiff::SignedDuration,
    /// Days of per-day counters kept (`stats.rs`), at least 1.
    pub(crate) stats_retention_days: u32,
    revision: watch::Sender<u64>,
    pending: Mutex<Pending>,
    store_errors: AtomicU64,
    /// Set on a fleet edge (`juris serve --follow`): the primary it follows. Order changes
    /// are then refused (they are made on the primary).
    follows: std::sync::OnceLock<String>,
    /// Set on a fleet primary: which followers have which orders in force.
    fleet: std::sync::OnceLock<Arc<dyn FleetProof>>,
    /// Feed imports being written now (memory only: read without waiting for the store).
    pub(crate) running: crate::feeds::Running,
    /// Parsed order documents by id, reused while the stored text is the same (the order list
    /// and the status parse 10,000 documents otherwise).
    documents: Mutex<HashMap<String, Arc<Parsed>>>,
    /// The audit chain as last found intact (for [`Control::audit_verify_recent`]).
    audit_checked: Mutex<Option<AuditChecked>>,
    /// The public transparency page, built in the background (`console/public.rs`).
    pub(crate) transparency: std::sync::OnceLock<Arc<crate::console::TransparencyCache>>,
}

/// The audit chain as last found intact: its entries, the hash of the entry before the last,
/// the last entry's hash (the head), and when the whole chain was verified.
type AuditChecked = (u64, String, String, Timestamp);

/// The stored `prev_hash` of the last entry a verification covered (verified by it when the
/// report is ok); the genesis hash for an empty chain.
fn last_prev_hash(
    conn: &rusqlite::Connection,
    report: &VerifyReport,
) -> Result<String, ControlError> {
    let seq = i64::try_from(report.entries).unwrap_or(i64::MAX);
    Ok(conn
        .query_row("SELECT prev_hash FROM audit WHERE seq = ?1", [seq], |r| {
            r.get(0)
        })
        .optional()?
        .unwrap_or_else(|| audit::GENESIS.to_owned()))
}

/// An order document as stored (its text) and parsed.
#[derive(Debug)]
struct Parsed {
    text: String,
    order: Order,
}

#[derive(Debug, Default)]
struct Pending {
    revision: u64,
    applied: u64,
    oldest_unapplied: Option<Instant>,
    last_latency: Option<Duration>,
}

impl Control {
    /// Marks this node as a fleet edge following `primary`: every request needing the editor
    /// role or above (order and feed changes) is refused with a conflict naming the primary.
    pub fn set_follower(&self, primary: String) {
        let _ = self.follows.set(primary);
    }

    /// Marks this node as a fleet primary: orders show where they are in force
    /// ([`OrderView::fleet`]) and an active order's deadline is met only once every
    /// configured follower has it ([`Deadline::followers_missing`]).
    pub fn set_fleet(&self, fleet: Arc<dyn FleetProof>) {
        let _ = self.fleet.set(fleet);
    }

    /// The primary this node follows, on a fleet edge.
    pub fn follows(&self) -> Option<&str> {
        self.follows.get().map(String::as_str)
    }

    /// A control plane over `store`.
    pub fn new(
        store: Store,
        config: &ControlConfig,
        clock: Arc<dyn Clock>,
    ) -> Result<Control, ControlError> {
        let protected = ProtectedList::from_config(&config.protected)?;
        Ok(Self::with_protected(
            store,
            config,
            SharedProtected::new(protected),
            clock,
        ))
    }

    /// A control plane over `store` with the protected list already parsed from
    /// `config.protected` and the published lists (the binary's `Settings` holds it, shared
    /// with the order loader and replaced on SIGHUP).
    pub fn with_protected(
        store: Store,
        config: &ControlConfig,
        protected: SharedProtected,
        clock: Arc<dyn Clock>,
    ) -> Control {
        let (revision, _) = watch::channel(0);
        Control {
            store,
            clock,
            four_eyes: config.four_eyes,
            protected,
            deadline_warning: jiff::SignedDuration::from_hours(i64::from(
                config.deadline_warning_hours,
            )),
            stats_retention_days: config.stats_retention_days.max(1),
            revision,
            pending: Mutex::new(Pending::default()),
            store_errors: AtomicU64::new(0),
            follows: std::sync::OnceLock::new(),
            running: crate::feeds::Running::default(),
            documents: Mutex::default(),
            audit_checked: Mutex::default(),
            transparency: std::sync::OnceLock::new(),
            fleet: std::sync::OnceLock::new(),
        }
    }

    /// The store.
    pub fn store(&self) -> &Store {
        &self.store
    }

    /// The protected list in force (it may be replaced live: see [`SharedProtected`]).
    pub fn protected(&self) -> Arc<ProtectedList> {
        self.protected.get()
    }

    /// The current time by the injected clock.
    pub fn now(&self) -> Timestamp {
        self.clock.now()
    }

    // ---- what the resolver enforces -------------------------------------------------------

    /// The orders the resolver should compile: every order in state shadow, active or
    /// suspended (the engine decides per query what applies; suspended ones show in explain),
    /// with targets held for review left out. Drafts and lifted orders are not included.
    pub fn enforceable_orders(&self) -> Result<Vec<Order>, ControlError> {
        self.counted(self.store.read(|conn| {
            let mut statement = conn.prepare(
                "SELECT id FROM orders WHERE state IN ('shadow', 'active', 'suspended') ORDER BY id",
            )?;
            let ids: Vec<String> = statement
                .query_map([], |row| row.get(0))?
                .collect::<Result<_, _>>()?;
            let mut orders = Vec::with_capacity(ids.len());
            for id in ids {
                let Some(row) = load_order(conn, &id)? else {
                    continue;
                };
                let mut order = row.document;
                order.state = row.state;
                order.targets = load_targets(conn, &id)?
                    .into_iter()
                    .filter(|t| t.status != TargetStatus::NeedsReview)
                    .map(|t| t.to_target())
                    .collect();
                orders.push(order);
            }
            Ok(orders)
        }))
    }

    /// A change notification: the value is bumped after every committed change.
    pub fn subscribe(&self) -> watch::Receiver<u64> {
        self.revision.subscribe()
    }

    /// The resolver reports that everything up to `revision` is enforced (for the status's
    /// "time from the last change to enforcement").
    pub fn mark_applied(&self, revision: u64) {
        let mut pending = self.lock_pending();
        if revision <= pending.applied {
            return;
        }
        pending.applied = revision;
        if let Some(since) = pending.oldest_unapplied.take() {
            pending.last_latency = Some(since.elapsed());
        }
        if revision < pending.revision {
            pending.oldest_unapplied = Some(Instant::now());
        }
    }

    fn changed(&self) {
        let revision = {
            let mut pending = self.lock_pending();
            pending.revision += 1;
            if pending.oldest_unapplied.is_none() {
                pending.oldest_unapplied = Some(Instant::now());
            }
            pending.revision
        };
        self.revision.send_replace(revision);
    }

    fn lock_pending(&self) -> std::sync::MutexGuard<'_, Pending> {
        // Plain counters: a panic elsewhere cannot leave them inconsistent in a harmful way.
        self.pending
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    pub(crate) fn counted<T>(&self, result: Result<T, ControlError>) -> Result<T, ControlError> {
        if let Err(error) = &result {
            if error.is_internal() {
                self.store_errors.fetch_add(1, Ordering::Relaxed);
                tracing::error!(%error, "control store error");
            }
        }
        result
    }

    /// Store errors since start (for `/metrics`).
    pub fn store_errors(&self) -> u64 {
        self.store_errors.load(Ordering::Relaxed)
    }

    pub(crate) fn write<T>(
        &self,
        f: impl FnOnce(&Transaction<'_>) -> Result<T, ControlError>,
    ) -> Result<T, ControlError> {
        let result = self.counted(self.store.write(f));
        if result.is_ok() {
            self.changed();
        }
        result
    }

    pub(crate) fn now_text(&self) -> String {
        self.clock.now().to_string()
    }

    // ---- tokens ----------------------------------------------------------------------------

    /// Creates a token with `role`, named `name`, and returns it: the only time it is seen in
    /// clear (only its SHA-256 is stored). `by` is recorded in the audit log.
    pub fn create_token(&self, by: &str, role: Role, name: &str) -> Result<String, ControlError> {
        let name = name.trim();
        if name.is_empty() || name.len() > 64 || !name.bytes().all(|b| b.is_ascii_graphic()) {
            return Err(ControlError::invalid(
                "name",
                "a token name is 1 to 64 printable ASCII characters without spaces",
            ));
        }
        let mut secret = [0_u8; 32];
        rand::thread_rng().fill_bytes(&mut secret);
        let token = format!("juris_{}", hex::encode(secret));
        let hash = token_hash(&token);
        let now = self.now_text();
        self.write(|tx| {
            tx.execute(
                "INSERT INTO tokens (hash, role, name, created_at, created_by) VALUES (?1, ?2, ?3, ?4, ?5)",
                params![hash, role_str(role), name, now, by],
            )?;
            audit::append(
                tx,
                &now,
                NewEntry {
                    actor: by,
                    action: "token.create",
                    object: format!("token:{name}"),
                    before: None,
                    after: Some(json!({"name": name, "role": role_str(role)})),
                    reason: "",
                },
            )?;
            Ok(())
        })?;
        Ok(token)
    }

    /// Every token, oldest first (names, roles and dates; never the secret nor its hash).
    pub fn tokens(&self) -> Result<Vec<TokenView>, ControlError> {
        self.counted(self.store.read(|conn| {
            let mut statement = conn.prepare(
                "SELECT name, role, created_at, created_by, revoked_at FROM tokens ORDER BY id",
            )?;
            let mut rows = statement.query([])?;
            let mut tokens = Vec::new();
            while let Some(row) = rows.next()? {
                let role: String = row.get(1)?;
                tokens.push(TokenView {
                    name: row.get(0)?,
                    role: parse_role(&role)?,
                    created_at: row.get(2)?,
                    created_by: row.get(3)?,
                    revoked_at: row.get(4)?,
                });
            }
            Ok(tokens)
        }))
    }

    /// Revokes every live token named `name` (admin; audited). Returns how many were revoked;
    /// none is a 404.
    pub fn revoke_token(
        &self,
        actor: &Actor,
        name: &str,
        reason: &str,
    ) -> Result<u64, ControlError> {
        require(actor, Role::Admin)?;
        let now = self.now_text();
        self.write(|tx| {
            let revoked = tx.execute(
                "UPDATE tokens SET revoked_at = ?2 WHERE name = ?1 AND revoked_at IS NULL",
                params![name, now],
            )? as u64;
            if revoked == 0 {
                return Err(not_found("token", name));
            }
            // Their console sessions end with them (a lookup would refuse them anyway).
            tx.execute(
                "DELETE FROM console_sessions WHERE token_id IN
                 (SELECT id FROM tokens WHERE name = ?1 AND revoked_at = ?2)",
                params![name, now],
            )?;
            audit::append(
                tx,
                &now,
                NewEntry {
                    actor: &actor.name,
                    action: "token.revoke",
                    object: format!("token:{name}"),
                    before: None,
                    after: Some(json!({"name": name, "revoked": revoked})),
                    reason,
                },
            )?;
            Ok(revoked)
        })
    }

    /// The actor a bearer token stands for.
    pub fn authenticate(&self, token: &str) -> Result<Actor, ControlError> {
        let hash = token_hash(token.trim());
        let found: Option<(String, String)> = self.counted(self.store.read(|conn| {
            Ok(conn
                .query_row(
                    "SELECT name, role FROM tokens WHERE hash = ?1 AND revoked_at IS NULL",
                    params![hash],
                    |row| Ok((row.get(0)?, row.get(1)?)),
                )
                .optional()?)
        }))?;
        actor_found(found, "unknown or revoked token")
    }

    // ---- resolver operations -----------------------------------------------------------------

    /// Records a cache flush the running server did for `actor` (`juris cache flush`): action
    /// `cache.flush`, object `cache:NAME` (`cache:*` for everything), `after` the scope and
    /// what was removed. Returns the entry's seq. Orders are not touched, so the order loader
    /// is not woken.
    pub fn record_cache_flush(
        &self,
        actor: &Actor,
        name: Option<&str>,
        after: serde_json::Value,
        reason: &str,
    ) -> Result<i64, ControlError> {
        require(actor, Role::Operator)?;
        let now = self.now_text();
        self.counted(self.store.write(|tx| {
            audit::append(
                tx,
                &now,
                NewEntry {
                    actor: &actor.name,
                    action: "cache.flush",
                    object: format!("cache:{}", name.unwrap_or("*")),
                    before: None,
                    after: Some(after),
                    reason,
                },
            )
        }))
    }

    // ---- orders ----------------------------------------------------------------------------

    /// Validation options with the Public Suffix List plugged in.
    pub fn validate(&self, order: &Order) -> Result<ValidatedOrder, ControlError> {
        let psl = Psl;
        let options = ValidationOptions {
            public_suffixes: &psl,
            ..ValidationOptions::default()
        };
        Ok(order.validate(&options)?)
    }

    /// Creates (`create_only`) or creates-or-updates an order from its document. The document's
    /// targets replace the order's (targets kept keep their provenance and review status). If
    /// `state_given` and the document's state differs from the stored one, the transition is
    /// made too, under the same rules as [`Control::transition`], in the same transaction.
    pub fn apply_order(
        &self,
        actor: &Actor,
        order: Order,
        state_given: bool,
        create_only: bool,
        reason: &str,
    ) -> Result<OrderView, ControlError> {
        require(actor, Role::Editor)?;
        let validated = self.validate(&order)?;
        let now = self.now_text();
        let id = order.id.clone();
        self.write(|tx| {
            let existing = load_order(tx, &id)?;
            if create_only && existing.is_some() {
                return Err(ControlError::conflict(
                    "id",
                    format!("order {id:?} already exists; update it with PUT /v1/orders/{id}"),
                ));
            }
            let old_targets = match &existing {
                Some(_) => load_targets(tx, &id)?,
                None => Vec::new(),
            };
            let mut old: HashMap<(TargetKind, String), TargetView> = old_targets
                .into_iter()
                .map(|t| ((t.kind, t.value.clone()), t))
                .collect();
            let mut added = Vec::new();
            let mut seen = HashSet::new();
            for (written, valid) in order.targets.iter().zip(validated.targets()) {
                let key = (valid.kind(), value_text(valid));
                if !seen.insert(key.clone()) {
                    continue;
                }
                if old.remove(&key).is_some() {
                    continue;
                }
                let row = self.new_target_row(valid, written, &actor.name, None, &now);
                added.push(row);
            }
            let removed: Vec<TargetView> = old.into_values().collect();

            let mut document = order.clone();
            document.targets.clear();
            document.state = OrderState::Draft;
            let document_text = serde_json::to_string(&document)
                .map_err(|e| ControlError::Corrupt(e.to_string()))?;
            let (current, created_by, before) = match &existing {
                Some(row) => {
                    tx.execute(
                        "UPDATE orders SET document = ?2, kind = ?3, updated_at = ?4 WHERE id = ?1",
                        params![id, document_text, order.kind.as_str(), now],
                    )?;
                    let mut before = row.document.clone();
                    before.state = row.state;
                    (row.state, row.created_by.clone(), Some(json!(before)))
                }
                None => {
                    tx.execute(
                        "INSERT INTO orders (id, document, state, kind, created_by, created_at, updated_at)
                         VALUES (?1, ?2, 'draft', ?3, ?4, ?5, ?5)",
                        params![id, document_text, order.kind.as_str(), actor.name, now],
                    )?;
                    insert_transition(tx, &id, None, OrderState::Draft, &now, &actor.name, reason)?;
                    (OrderState::Draft, actor.name.clone(), None)
                }
            };
            for row in &removed {
                delete_target(tx, &id, row.kind, &row.value)?;
            }
            for row in &added {
                insert_target(tx, &id, row)?;
            }
            let mut after = document.clone();
            after.state = current;
            audit::append(
                tx,
                &now,
                NewEntry {
                    actor: &actor.name,
                    action: if existing.is_some() { "order.update" } else { "order.create" },
                    object: format!("order:{id}"),
                    before,
                    after: Some(json!({
                        "document": after,
                        "targets_added": added,
                        "targets_removed": removed.iter().map(|t| format!("{} {}", t.kind.as_str(), t.value)).collect::<Vec<_>>(),
                    })),
                    reason,
                },
            )?;
            let desired = if state_given { order.state } else { current };
            if desired != current {
                self.transition_in(tx, actor, &id, &created_by, current, desired, reason, &now)?;
            }
            Ok(())
        })?;
        self.order(&id)
    }

    /// Moves an order to another state: shadow (editor), activate, suspend, lift (approver).
    /// With the four-eyes rule, the creator of an order cannot activate it.
    pub fn transition(
        &self,
        actor: &Actor,
        id: &str,
        to: OrderState,
        reason: &str,
    ) -> Result<OrderView, ControlError> {
        require(actor, Role::Viewer)?;
        let now = self.now_text();
        self.write(|tx| {
            let row = load_order(tx, id)?.ok_or_else(|| not_found("order", id))?;
            self.transition_in(tx, actor, id, &row.created_by, row.state, to, reason, &now)
        })?;
        self.order(id)
    }

    #[allow(
        clippy::too_many_arguments,
        reason = "All of them identify the one change being made"
    )]
    fn transition_in(
        &self,
        tx: &Transaction<'_>,
        actor: &Actor,
        id: &str,
        created_by: &str,
        from: OrderState,
        to: OrderState,
        reason: &str,
        now: &str,
    ) -> Result<(), ControlError> {
        use OrderState::*;
        let needed = match to {
            Draft | Shadow => Role::Editor,
            Active | Suspended | Lifted => Role::Approver,
        };
        require(actor, needed)?;
        let allowed = matches!(
            (from, to),
            (Draft, Shadow | Active | Lifted)
                | (Shadow, Draft | Active | Suspended | Lifted)
                | (Active, Shadow | Suspended | Lifted)
                | (Suspended, Shadow | Active | Lifted)
        );
        if !allowed {
            return Err(ControlError::conflict(
                "state",
                format!(
                    "order {id:?} cannot go from {} to {}",
                    from.as_str(),
                    to.as_str()
                ),
            ));
        }
        if to == Active && self.four_eyes && actor.name == created_by {
            return Err(ControlError::Forbidden(format!(
                "four-eyes rule: order {id:?} was created by {created_by:?}; another approver must activate it"
            )));
        }
        tx.execute(
            "UPDATE orders SET state = ?2, updated_at = ?3 WHERE id = ?1",
            params![id, to.as_str(), now],
        )?;
        insert_transition(tx, id, Some(from), to, now, &actor.name, reason)?;
        let action = match to {
            Draft => "order.draft",
            Shadow => "order.shadow",
            Active => "order.activate",
            Suspended => "order.suspend",
            Lifted => "order.lift",
        };
        audit::append(
            tx,
            now,
            NewEntry {
                actor: &actor.name,
                action,
                object: format!("order:{id}"),
                before: Some(json!({"state": from.as_str()})),
                after: Some(json!({"state": to.as_str()})),
                reason,
            },
        )?;
        Ok(())
    }

    /// The kill switch: suspends every active and shadow order in one transaction. Returns the
    /// ids suspended.
    pub fn suspend_all(&self, actor: &Actor, reason: &str) -> Result<Vec<String>, ControlError> {
        require(actor, Role::Approver)?;
        let now = self.now_text();
        self.write(|tx| {
            let ids: Vec<(String, String)> = {
                let mut statement = tx.prepare(
                    "SELECT id, state FROM orders WHERE state IN ('active', 'shadow') ORDER BY id",
                )?;
                let rows = statement.query_map([], |row| Ok((row.get(0)?, row.get(1)?)))?;
                rows.collect::<Result<_, _>>()?
            };
            for (id, state) in &ids {
                tx.execute(
                    "UPDATE orders SET state = 'suspended', updated_at = ?2 WHERE id = ?1",
                    params![id, now],
                )?;
                insert_transition(
                    tx,
                    id,
                    Some(parse_state(state)?),
                    OrderState::Suspended,
                    &now,
                    &actor.name,
                    reason,
                )?;
            }
            audit::append(
                tx,
                &now,
                NewEntry {
                    actor: &actor.name,
                    action: "orders.suspend_all",
                    object: "orders:*".into(),
                    before: Some(json!(ids.iter().map(|(id, state)| json!({"id": id, "state": state})).collect::<Vec<_>>())),
                    after: Some(json!({"state": "suspended", "orders": ids.iter().map(|(id, _)| id).collect::<Vec<_>>()})),
                    reason,
                },
            )?;
            Ok(ids.into_iter().map(|(id, _)| id).collect())
        })
    }

    /// Adds targets to an order (extensions, "future domains"). `added_by` of each target
    /// defaults to the actor; `feed` marks targets a feed owns.
    pub fn add_targets(
        &self,
        actor: &Actor,
        id: &str,
        targets: Vec<Target>,
        reason: &str,
    ) -> Result<AddReport, ControlError> {
        require(actor, Role::Editor)?;
        let now = self.now_text();
        let document = self
            .counted(self.store.read(|conn| load_order(conn, id)))?
            .ok_or_else(|| not_found("order", id))?
            .document;
        // Validate the new targets in the context of the order (its overrides), so that error
        // paths index the request (`targets[3].value`).
        let mut probe = document;
        probe.targets = targets.clone();
        let validated = self.validate(&probe)?;
        self.write(|tx| {
            if load_order(tx, id)?.is_none() {
                return Err(not_found("order", id));
            }
            let mut report = AddReport {
                added: Vec::new(),
                held: Vec::new(),
                existing: Vec::new(),
            };
            let mut seen = HashSet::new();
            for (written, valid) in targets.iter().zip(validated.targets()) {
                let value = value_text(valid);
                if !seen.insert((valid.kind(), value.clone())) {
                    continue;
                }
                if target_exists(tx, id, valid.kind(), &value)? {
                    report
                        .existing
                        .push(format!("{} {value}", valid.kind().as_str()));
                    continue;
                }
                let row = self.new_target_row(valid, written, &actor.name, None, &now);
                insert_target(tx, id, &row)?;
                match row.status {
                    TargetStatus::NeedsReview => report.held.push(row),
                    _ => report.added.push(row),
                }
            }
            audit::append(
                tx,
                &now,
                NewEntry {
                    actor: &actor.name,
                    action: "target.add",
                    object: format!("order:{id}"),
                    before: None,
                    after: Some(json!({"added": report.added, "held": report.held})),
                    reason,
                },
            )?;
            Ok(report)
        })
    }

    /// Removes targets (`kind`, value as written) from an order.
    pub fn remove_targets(
        &self,
        actor: &Actor,
        id: &str,
        targets: &[(TargetKind, String)],
        reason: &str,
    ) -> Result<Vec<String>, ControlError> {
        require(actor, Role::Editor)?;
        let mut keys = Vec::with_capacity(targets.len());
        for (i, (kind, value)) in targets.iter().enumerate() {
            let normal = normalize_value(*kind, value)
                .map_err(|reason| ControlError::invalid(format!("targets[{i}].value"), reason))?;
            keys.push((*kind, normal));
        }
        let now = self.now_text();
        self.write(|tx| {
            if load_order(tx, id)?.is_none() {
                return Err(not_found("order", id));
            }
            let mut removed = Vec::new();
            for (kind, value) in &keys {
                let before = load_target(tx, id, *kind, value)?
                    .ok_or_else(|| not_found("target", &format!("{} {value}", kind.as_str())))?;
                delete_target(tx, id, *kind, value)?;
                removed.push(before);
            }
            audit::append(
                tx,
                &now,
                NewEntry {
                    actor: &actor.name,
                    action: "target.remove",
                    object: format!("order:{id}"),
                    before: Some(json!(removed)),
                    after: None,
                    reason,
                },
            )?;
            Ok(removed
                .iter()
                .map(|t| format!("{} {}", t.kind.as_str(), t.value))
                .collect())
        })
    }

    /// Releases a target held for review (admin only; the reason is required and audited).
    pub fn override_target(
        &self,
        actor: &Actor,
        id: &str,
        kind: TargetKind,
        value: &str,
        reason: &str,
    ) -> Result<TargetView, ControlError> {
        require(actor, Role::Admin)?;
        if reason.trim().is_empty() {
            return Err(ControlError::invalid(
                "reason",
                "an override needs a reason (it is audited)",
            ));
        }
        let value = normalize_value(kind, value).map_err(|r| ControlError::invalid("value", r))?;
        let now = self.now_text();
        self.write(|tx| {
            let before = load_target(tx, id, kind, &value)?
                .ok_or_else(|| not_found("target", &format!("{} {value}", kind.as_str())))?;
            if before.status != TargetStatus::NeedsReview {
                return Err(ControlError::conflict(
                    "value",
                    format!("target {} {value} is not held for review", kind.as_str()),
                ));
            }
            tx.execute(
                "UPDATE targets SET status = 'overridden', override_by = ?4, override_reason = ?5
                 WHERE order_id = ?1 AND kind = ?2 AND value = ?3",
                params![id, kind.as_str(), value, actor.name, reason],
            )?;
            let after =
                load_target(tx, id, kind, &value)?.ok_or_else(|| not_found("target", &value))?;
            audit::append(
                tx,
                &now,
                NewEntry {
                    actor: &actor.name,
                    action: "target.override",
                    object: format!("order:{id}"),
                    before: Some(json!(before)),
                    after: Some(json!(after)),
                    reason,
                },
            )?;
            Ok(after)
        })
    }

    /// One order with its targets and history.
    pub fn order(&self, id: &str) -> Result<OrderView, ControlError> {
        self.order_with(id, None).map(|(view, _)| view)
    }

    /// [`Control::order`] with only the first `max_targets` targets (by type, then value) in
    /// `targets` and the document, and the order's number of targets: for a page that shows
    /// part of an order with 100,000 targets.
    pub fn order_preview(
        &self,
        id: &str,
        max_targets: usize,
    ) -> Result<(OrderView, u64), ControlError> {
        self.order_with(id, Some(max_targets))
    }

    fn order_with(
        &self,
        id: &str,
        max_targets: Option<usize>,
    ) -> Result<(OrderView, u64), ControlError> {
        let now = self.clock.now();
        self.counted(self.store.read(|conn| {
            let row = load_order(conn, id)?.ok_or_else(|| not_found("order", id))?;
            let (targets, total) = match max_targets {
                Some(limit) => (
                    load_targets_first(conn, id, limit)?,
                    target_counts(conn, id)?.0,
                ),
                None => {
                    let targets = load_targets(conn, id)?;
                    let total = targets.len() as u64;
                    (targets, total)
                }
            };
            let transitions = load_transitions(conn, id)?;
            let mut order = row.document;
            order.state = row.state;
            order.targets = targets.iter().map(TargetView::to_target).collect();
            let view = OrderView {
                parent_status: parent_status(conn, &order, now)?,
                effective_state: effective_state(&order, now),
                order,
                created_by: row.created_by,
                created_at: row.created_at,
                updated_at: row.updated_at,
                targets,
                transitions,
                fleet: self.fleet.get().and_then(|fleet| fleet.order(id)),
            };
            Ok((view, total))
        }))
    }

    /// Orders matching `filter`, by id (every one: the API's listing; the console pages
    /// through [`Control::order_page`]).
    pub fn orders(&self, filter: &OrderFilter) -> Result<Vec<OrderSummary>, ControlError> {
        let page = self.order_page(&OrderQuery {
            filter: filter.clone(),
            ..OrderQuery::default()
        })?;
        Ok(page.orders)
    }

    /// Whether `order` binds clients in `country` (`global_only`: only global orders).
    pub(crate) fn binds(&self, order: &Order, country: Option<Country>, global_only: bool) -> bool {
        let mut probe = order.clone();
        probe.targets.clear();
        match self.validate(&probe) {
            Ok(valid) => {
                let countries = &valid.info().countries;
                if global_only {
                    countries.is_global()
                } else {
                    countries.applies_to(country)
                }
            }
            Err(_) => false,
        }
    }

    /// Every stored order in full (the JSON export).
    pub fn export_orders(&self) -> Result<Vec<OrderView>, ControlError> {
        let ids: Vec<String> = self.counted(self.store.read(|conn| {
            let mut statement = conn.prepare("SELECT id FROM orders ORDER BY id")?;
            let ids = statement
                .query_map([], |row| row.get(0))?
                .collect::<Result<_, _>>()?;
            Ok(ids)
        }))?;
        ids.iter().map(|id| self.order(id)).collect()
    }

    // ---- audit and status ------------------------------------------------------------------

    /// Audit entries after `after`, at most `limit`.
    pub fn audit_log(&self, after: i64, limit: u32) -> Result<Vec<AuditEntry>, ControlError> {
        self.counted(self.store.read(|conn| audit::entries(conn, after, limit)))
    }

    /// The newest `limit` audit entries about `object` (`order:ID`), newest first.
    pub fn audit_for(&self, object: &str, limit: u32) -> Result<Vec<AuditEntry>, ControlError> {
        self.counted(
            self.store
                .read(|conn| audit::entries_for(conn, object, limit)),
        )
    }

    /// Verifies the audit chain.
    pub fn audit_verify(&self) -> Result<VerifyReport, ControlError> {
        let now = self.now();
        let (report, last_prev) = self.counted(self.store.read(|conn| {
            let report = audit::verify(conn)?;
            let last_prev = last_prev_hash(conn, &report)?;
            Ok((report, last_prev))
        }))?;
        self.remember_check(&report, last_prev, now);
        Ok(report)
    }

    /// Verifies the entries appended since the chain was last found intact, and the entry
    /// that check ended with again (the whole chain when it never was in this process, or
    /// when that entry's hash changed), and says when the whole chain was last verified. For
    /// the console's audit page, which a full check of a long chain would slow;
    /// [`Control::audit_verify`] checks everything.
    pub fn audit_verify_recent(&self) -> Result<(VerifyReport, Timestamp), ControlError> {
        let checked = self.lock_checked().clone();
        let now = self.now();
        let (report, last_prev, full_at) = self.counted(self.store.read(|conn| {
            if let Some((entries, prev, head, at)) = checked.filter(|c| c.0 > 0) {
                let seq = i64::try_from(entries).unwrap_or(i64::MAX);
                let still: Option<String> = conn
                    .query_row("SELECT hash FROM audit WHERE seq = ?1", [seq], |r| r.get(0))
                    .optional()?;
                if still.as_deref() == Some(head.as_str()) {
                    let report = audit::verify_from(conn, seq - 1, &prev)?;
                    let last_prev = last_prev_hash(conn, &report)?;
                    return Ok((report, last_prev, at));
                }
            }
            let report = audit::verify(conn)?;
            let last_prev = last_prev_hash(conn, &report)?;
            Ok((report, last_prev, now))
        }))?;
        self.remember_check(&report, last_prev, full_at);
        Ok((report, full_at))
    }

    fn remember_check(&self, report: &VerifyReport, last_prev: String, full_at: Timestamp) {
        if report.ok {
            *self.lock_checked() = Some((report.entries, last_prev, report.head.clone(), full_at));
        }
    }

    fn lock_checked(&self) -> std::sync::MutexGuard<'_, Option<AuditChecked>> {
        self.audit_checked
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    pub(crate) fn new_target_row(
        &self,
        valid: &ValidatedTarget,
        written: &Target,
        actor: &str,
        feed: Option<&str>,
        now: &str,
    ) -> TargetView {
        let held = self.protected.get().check(valid);
        TargetView {
            kind: valid.kind(),
            value: value_text(valid),
            added_at: written
                .added_at
                .map(|t| t.to_string())
                .unwrap_or_else(|| now.to_owned()),
            added_by: written.added_by.clone().unwrap_or_else(|| match feed {
                Some(feed) => format!("feed:{feed}"),
                None => actor.to_owned(),
            }),
            feed: feed.map(str::to_owned),
            evidence: written.evidence.clone(),
            status: if held.is_some() {
                TargetStatus::NeedsReview
            } else {
                TargetStatus::Enforced
            },
            review_reason: held,
            override_by: None,
            override_reason: None,
        }
    }
}

impl TargetView {
    /// The target as it appears in an order document.
    pub fn to_target(&self) -> Target {
        Target {
            kind: self.kind,
            value: self.value.clone(),
            added_at: self.added_at.parse().ok(),
            added_by: Some(self.added_by.clone()),
            evidence: self.evidence.clone(),
        }
    }
}

/// Fails with 403 unless `actor` has at least `role`.
pub fn require(actor: &Actor, role: Role) -> Result<(), ControlError> {
    if actor.role >= role {
        Ok(())
    } else {
        Err(ControlError::Forbidden(format!(
            "this needs the role {} (the token {:?} has {})",
            role_str(role),
            actor.name,
            role_str(actor.role)
        )))
    }
}

/// The SHA-256 (hex) of a token: what the store keeps.
pub fn token_hash(token: &str) -> String {
    hex::encode(Sha256::digest(token.as_bytes()))
}

/// The name of a role.
pub fn role_str(role: Role) -> &'static str {
    match role {
        Role::Viewer => "viewer",
        Role::Operator => "operator",
        Role::Editor => "editor",
        Role::Approver => "approver",
        Role::Admin => "admin",
    }
}

/// The actor of a token row found as (name, role), or `Unauthorized` with `refusal`.
fn actor_found(found: Option<(String, String)>, refusal: &str) -> Result<Actor, ControlError> {
    match found {
        Some((name, role)) => Ok(Actor {
            name,
            role: parse_role(&role)?,
        }),
        None => Err(ControlError::Unauthorized(refusal.into())),
    }
}

fn parse_role(text: &str) -> Result<Role, ControlError> {
    match text {
        "viewer" => Ok(Role::Viewer),
        "operator" => Ok(Role::Operator),
        "editor" => Ok(Role::Editor),
        "approver" => Ok(Role::Approver),
        "admin" => Ok(Role::Admin),
        other => Err(ControlError::Corrupt(format!("unknown role {other:?}"))),
    }
}

pub(crate) fn parse_state(text: &str) -> Result<OrderState, ControlError> {
    serde_json::from_value(serde_json::Value::String(text.to_owned()))
        .map_err(|_| ControlError::Corrupt(format!("unknown state {text:?}")))
}

pub(crate) fn parse_kind(text: &str) -> Result<TargetKind, ControlError> {
    serde_json::from_value(serde_json::Value::String(text.to_owned()))
        .map_err(|_| ControlError::Corrupt(format!("unknown target type {text:?}")))
}

pub(crate) fn parse_status(text: &str) -> Result<TargetStatus, ControlError> {
    serde_json::from_value(serde_json::Value::String(text.to_owned()))
        .map_err(|_| ControlError::Corrupt(format!("unknown target status {text:?}")))
}

fn status_str(status: TargetStatus) -> &'static str {
    match status {
        TargetStatus::Enforced => "enforced",
        TargetStatus::NeedsReview => "needs_review",
        TargetStatus::Overridden => "overridden",
    }
}

/// [`OrderView::parent_status`] of an extension whose parent is in force.
pub const PARENT_IN_FORCE: &str = "in force";

/// For an `extension`, whether its parent order (in the store) is in force at `now`: `in force`,
/// or why not in the words of [`juris_policy::ParentStatus`], following extensions of
/// extensions as the policy does; `None` for other kinds. A parent that is not in the store
/// may come from an order file, which the store cannot see: then it says so.
fn parent_status(
    conn: &rusqlite::Connection,
    order: &Order,
    now: Timestamp,
) -> Result<Option<String>, ControlError> {
    if order.kind != OrderKind::Extension {
        return Ok(None);
    }
    let mut current = order.clone();
    for _ in 0..8 {
        let (OrderKind::Extension, Some(parent)) = (current.kind, current.parent.clone()) else {
            return Ok(Some(PARENT_IN_FORCE.into()));
        };
        let Some(row) = load_order(conn, &parent)? else {
            return Ok(Some(format!(
                "unknown: its parent order {parent} is not in the store (it may be in an order \
                 file: see juris status)"
            )));
        };
        let mut parent_order = row.document;
        parent_order.state = row.state;
        let why = match parent_order.state {
            OrderState::Active | OrderState::Shadow => time_status(&parent_order, now),
            other => Some(juris_policy::ParentStatus::NotActive(other)),
        };
        if let Some(why) = why {
            return Ok(Some(why.to_string()));
        }
        current = parent_order;
    }
    Ok(Some(juris_policy::ParentStatus::Missing.to_string()))
}

/// Why an order as written is not in force at `now` as far as time goes, if it is not.
fn time_status(order: &Order, now: Timestamp) -> Option<juris_policy::ParentStatus> {
    use juris_policy::ParentStatus;
    if order.effective_from.is_some_and(|from| now < from) {
        return Some(ParentStatus::NotYetEffective);
    }
    if order.expires_at.is_some_and(|until| now >= until) {
        return Some(ParentStatus::Expired);
    }
    if !order.windows.is_empty() && !order.windows.iter().any(|w| w.start <= now && now < w.end) {
        return Some(ParentStatus::OutsideWindows);
    }
    None
}

/// `state`, or `expired` when `expires_at` has passed for an order that could still apply.
pub fn effective_state(order: &Order, now: Timestamp) -> String {
    effective_state_of(order, order.state, now)
}

/// [`effective_state`] of `order` in the stored `state` (the document's own state is not
/// the authoritative one).
fn effective_state_of(order: &Order, state: OrderState, now: Timestamp) -> String {
    let live = matches!(
        state,
        OrderState::Active | OrderState::Shadow | OrderState::Suspended
    );
    match order.expires_at {
        Some(until) if live && now >= until => "expired".into(),
        _ => state.as_str().into(),
    }
}

pub(crate) fn value_text(target: &ValidatedTarget) -> String {
    match target.value() {
        TargetValue::Name(name) => name.to_string(),
        TargetValue::Prefix(net) => net.to_string(),
    }
}

/// Normalises a target value the way validation does (for lookups of existing targets).
pub(crate) fn normalize_value(kind: TargetKind, value: &str) -> Result<String, String> {
    match kind {
        TargetKind::Subtree | TargetKind::Domain | TargetKind::Nsdname => {
            normalize_name(value).map_err(|e| format!("{value:?} is not a valid domain name: {e}"))
        }
        TargetKind::Ip | TargetKind::Nsip => {
            let value = value.trim();
            value
                .parse::<IpNet>()
                .ok()
                .or_else(|| value.parse::<std::net::IpAddr>().ok().map(IpNet::from))
                .map(|net| net.to_string())
                .ok_or_else(|| format!("{value:?} is not an IP address or prefix"))
        }
    }
}

pub(crate) fn not_found(what: &'static str, id: &str) -> ControlError {
    ControlError::NotFound {
        what,
        id: id.to_owned(),
    }
}
