//! Feeds: the cumulative (Piracy-Shield-style) feed with its per-item acknowledgement, plain
//! lists and RPZ zone files imported into an order. The formats are specified in `docs/feeds.md`.

use std::collections::{HashMap, HashSet};
use std::net::IpAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use ipnet::IpNet;
use jiff::Timestamp;
use juris_policy::{
    normalize_name, OrderState, PublicSuffixes, Target, TargetKind, ValidationErrors,
};
use rusqlite::{params, OptionalExtension};
use serde::{Deserialize, Serialize};
use serde_json::json;
use sha2::{Digest, Sha256};

use crate::audit::{self, NewEntry};
use crate::control::{not_found, require, AddReport, Control, Role, TargetStatus, TargetView};
use crate::error::ControlError;
use crate::rpz;
use crate::safeguards::Psl;
use crate::store::rows::{delete_target, insert_target, load_order, load_targets, target_exists};
use crate::Actor;

/// A cumulative feed: the complete current lists, each with the SHA-256 of its items joined by
/// `\n` (no trailing newline; the empty list hashes the empty string).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CumulativeFeed {
    /// When the feed producer generated this state (informational). Default: null.
    #[serde(default)]
    pub generated_at: Option<Timestamp>,
    /// Fully qualified domain names, blocked exactly (target type `domain`).
    pub fqdn: Vec<String>,
    /// IPv4 addresses or prefixes (target type `ip`).
    pub ipv4: Vec<String>,
    /// IPv6 addresses or prefixes (target type `ip`).
    pub ipv6: Vec<String>,
    /// The checksums of the three lists.
    pub sha256: FeedChecksums,
}

/// SHA-256 (hex) of each list, newline-joined.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FeedChecksums {
    /// Of `fqdn`.
    pub fqdn: String,
    /// Of `ipv4`.
    pub ipv4: String,
    /// Of `ipv6`.
    pub ipv6: String,
}

/// Why an item was not processed (the Piracy Shield acknowledgement reasons).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum AckReason {
    /// Already blocked: by another active order, or already a target of this order.
    #[serde(rename = "ALREADY_BLOCKED")]
    AlreadyBlocked,
    /// The item is not a usable FQDN or address (or a public suffix / TLD).
    #[serde(rename = "UNDEFINED")]
    Undefined,
    /// Not blocked for another reason (held for review by a safeguard; order not active); the
    /// `detail` says which.
    #[serde(rename = "UNKNOWN")]
    Unknown,
}

impl AckReason {
    /// `ALREADY_BLOCKED`, `UNDEFINED` or `UNKNOWN` (as the acknowledgement writes it).
    pub fn as_str(self) -> &'static str {
        match self {
            AckReason::AlreadyBlocked => "ALREADY_BLOCKED",
            AckReason::Undefined => "UNDEFINED",
            AckReason::Unknown => "UNKNOWN",
        }
    }
}

/// One item of an acknowledgement.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AckItem {
    /// The item as the feed wrote it.
    pub item: String,
    /// Which list (`fqdn`, `ipv4`, `ipv6`).
    pub list: String,
    /// `processed`, `unprocessed`, or `lifted` (the item left the feed and was unblocked).
    pub status: String,
    /// For `unprocessed`.
    pub reason: Option<AckReason>,
    /// Human-readable detail.
    pub detail: Option<String>,
    /// When (RFC 3339).
    pub at: String,
}

/// The acknowledgement of one import.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FeedAck {
    /// The feed.
    pub feed: String,
    /// The order it feeds.
    pub order: String,
    /// The import's number.
    pub import_id: i64,
    /// When.
    pub imported_at: String,
    /// The checksums accepted.
    pub sha256: FeedChecksums,
    /// Items new in this import.
    pub added: u64,
    /// Items that vanished and were unblocked.
    pub lifted: u64,
    /// Items already present in the previous state.
    pub unchanged: u64,
    /// Every item of the feed, then every lifted item.
    pub items: Vec<AckItem>,
}

/// A feed and its last import.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct FeedSummary {
    /// Name.
    pub name: String,
    /// The order it feeds.
    pub order: String,
    /// When it was last imported.
    pub imported_at: String,
    /// The last import's number.
    pub last_import: i64,
    /// The last checksums.
    pub sha256: FeedChecksums,
}

/// One import of a feed, as listed (`GET /v1/feeds/{name}/imports`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ImportSummary {
    /// The import's number (`GET /v1/feeds/{name}/ack?import=N`).
    pub import_id: i64,
    /// When (RFC 3339).
    pub at: String,
    /// Who imported it.
    pub actor: String,
    /// The checksums accepted.
    pub sha256: FeedChecksums,
    /// Items new in this import.
    pub added: u64,
    /// Items that vanished and were unblocked.
    pub lifted: u64,
    /// Items already present before.
    pub unchanged: u64,
}

/// A feed import being written now (`GET /v1/imports`): from memory, never the store, so it
/// answers while the import holds the store.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RunningImport {
    /// The feed.
    pub feed: String,
    /// Who imports it.
    pub actor: String,
    /// When the import was accepted (checksums verified), RFC 3339.
    pub started_at: String,
    /// Items in the feed (the three lists).
    pub total: u64,
    /// Items processed so far.
    pub done: u64,
}

/// The feed imports in progress.
#[derive(Debug, Default)]
pub(crate) struct Running {
    live: std::sync::Mutex<Vec<Arc<Progress>>>,
}

#[derive(Debug)]
struct Progress {
    feed: String,
    actor: String,
    started_at: String,
    total: u64,
    done: AtomicU64,
}

/// Removes its import from [`Running`] when dropped (the import finished, failed or panicked).
struct ProgressGuard<'a> {
    running: &'a Running,
    progress: Arc<Progress>,
}

impl Drop for ProgressGuard<'_> {
    fn drop(&mut self) {
        self.running
            .lock()
            .retain(|p| !Arc::ptr_eq(p, &self.progress));
    }
}

impl Running {
    fn lock(&self) -> std::sync::MutexGuard<'_, Vec<Arc<Progress>>> {
        self.live
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    fn start(&self, feed: &str, actor: &str, started_at: &str, total: u64) -> ProgressGuard<'_> {
        let progress = Arc::new(Progress {
            feed: feed.to_owned(),
            actor: actor.to_owned(),
            started_at: started_at.to_owned(),
            total,
            done: AtomicU64::new(0),
        });
        self.lock().push(Arc::clone(&progress));
        ProgressGuard {
            running: self,
            progress,
        }
    }

    fn list(&self) -> Vec<RunningImport> {
        self.lock()
            .iter()
            .map(|p| RunningImport {
                feed: p.feed.clone(),
                actor: p.actor.clone(),
                started_at: p.started_at.clone(),
                total: p.total,
                done: p.done.load(Ordering::Relaxed),
            })
            .collect()
    }
}

/// The result of importing an RPZ zone.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RpzImportReport {
    /// Targets added.
    #[serde(flatten)]
    pub report: AddReport,
    /// Notes on records imported with a change of meaning.
    #[serde(default)]
    pub warnings: Vec<String>,
}

/// The SHA-256 (hex) of a list: items joined by `\n`, no trailing newline.
pub fn list_checksum(items: &[String]) -> String {
    let mut hasher = Sha256::new();
    for (i, item) in items.iter().enumerate() {
        if i > 0 {
            hasher.update(b"\n");
        }
        hasher.update(item.as_bytes());
    }
    hex::encode(hasher.finalize())
}

impl CumulativeFeed {
    /// A feed of these lists with their checksums (what a producer sends).
    pub fn new(fqdn: Vec<String>, ipv4: Vec<String>, ipv6: Vec<String>) -> CumulativeFeed {
        CumulativeFeed {
            generated_at: None,
            sha256: FeedChecksums {
                fqdn: list_checksum(&fqdn),
                ipv4: list_checksum(&ipv4),
                ipv6: list_checksum(&ipv6),
            },
            fqdn,
            ipv4,
            ipv6,
        }
    }

    /// Parses a feed document (strict: unknown fields are errors naming the field).
    pub fn from_json(bytes: &[u8]) -> Result<CumulativeFeed, ControlError> {
        crate::parse_json(bytes)
    }

    /// Checks the three checksums.
    pub fn verify(&self) -> Result<(), ControlError> {
        for (list, items, expected) in [
            ("fqdn", &self.fqdn, &self.sha256.fqdn),
            ("ipv4", &self.ipv4, &self.sha256.ipv4),
            ("ipv6", &self.ipv6, &self.sha256.ipv6),
        ] {
            let computed = list_checksum(items);
            if !computed.eq_ignore_ascii_case(expected.trim()) {
                return Err(ControlError::invalid(
                    format!("sha256.{list}"),
                    format!(
                        "checksum mismatch: the feed says {expected}, the {} items of {list} hash to {computed}; nothing was imported",
                        items.len()
                    ),
                ));
            }
        }
        Ok(())
    }
}

enum Item {
    Valid(TargetKind, String),
    Invalid(String),
}

fn classify(list: &str, item: &str) -> Item {
    match list {
        "fqdn" => match normalize_name(item) {
            Ok(name) if !name.contains('.') => {
                Item::Invalid(format!("{name} is a top-level domain"))
            }
            Ok(name) if Psl.is_public_suffix(&name) => {
                Item::Invalid(format!("{name} is a public suffix"))
            }
            Ok(name) => Item::Valid(TargetKind::Domain, name),
            Err(e) => Item::Invalid(format!("not a valid FQDN: {e}")),
        },
        _ => {
            let text = item.trim();
            let net = text
                .parse::<IpNet>()
                .ok()
                .or_else(|| text.parse::<IpAddr>().ok().map(IpNet::from));
            let Some(net) = net else {
                return Item::Invalid(format!("not an {list} address or prefix"));
            };
            let (family_ok, min) = match net {
                IpNet::V4(_) => (list == "ipv4", 8),
                IpNet::V6(_) => (list == "ipv6", 32),
            };
            if !family_ok {
                Item::Invalid(format!("not an {list} address or prefix"))
            } else if net.trunc() != net {
                Item::Invalid(format!("host bits set (did you mean {}?)", net.trunc()))
            } else if net.prefix_len() < min {
                Item::Invalid(format!("broader than /{min}"))
            } else {
                Item::Valid(TargetKind::Ip, net.to_string())
            }
        }
    }
}

fn valid_feed_name(name: &str) -> Result<(), ControlError> {
    let ok = !name.is_empty()
        && name.len() <= 64
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'));
    if ok {
        Ok(())
    } else {
        Err(ControlError::invalid(
            "feed",
            format!("{name:?}: a feed name is 1 to 64 letters, digits, '-', '_' or '.'"),
        ))
    }
}

impl Control {
    /// Imports a cumulative feed into the order it is bound to (`order` binds it on the first
    /// import). The feed is state, not a delta: new items are added, vanished items are lifted
    /// (removed), every item is acknowledged. A wrong checksum or a malformed feed changes
    /// nothing.
    pub fn import_feed(
        &self,
        actor: &Actor,
        name: &str,
        order: Option<&str>,
        feed: &CumulativeFeed,
        reason: &str,
    ) -> Result<FeedAck, ControlError> {
        require(actor, Role::Editor)?;
        valid_feed_name(name)?;
        feed.verify()?;
        let now = self.now_text();
        let lists: [(&str, &Vec<String>); 3] = [
            ("fqdn", &feed.fqdn),
            ("ipv4", &feed.ipv4),
            ("ipv6", &feed.ipv6),
        ];
        let total = (feed.fqdn.len() + feed.ipv4.len() + feed.ipv6.len()) as u64;
        let progress = self.running.start(name, &actor.name, &now, total);
        let done = &progress.progress.done;
        self.write(|tx| {
            let bound: Option<String> = tx
                .query_row("SELECT order_id FROM feeds WHERE name = ?1", params![name], |r| r.get(0))
                .optional()?;
            let order_id = match (bound, order) {
                (Some(bound), Some(asked)) if bound != asked => {
                    return Err(ControlError::conflict(
                        "order",
                        format!("feed {name:?} feeds order {bound:?}, not {asked:?}"),
                    ))
                }
                (Some(bound), _) => bound,
                (None, Some(asked)) => asked.to_owned(),
                (None, None) => {
                    return Err(ControlError::invalid(
                        "order",
                        format!("the first import of feed {name:?} must name the order it feeds"),
                    ))
                }
            };
            let order_row = load_order(tx, &order_id)?.ok_or_else(|| not_found("order", &order_id))?;
            let previous: HashMap<(TargetKind, String), TargetView> = load_targets(tx, &order_id)?
                .into_iter()
                .filter(|t| t.feed.as_deref() == Some(name))
                .map(|t| ((t.kind, t.value.clone()), t))
                .collect();
            let mut items = Vec::new();
            let mut seen = HashSet::new();
            let (mut added, mut unchanged) = (0_u64, 0_u64);
            let mut added_rows = Vec::new();
            let mut held_rows = Vec::new();
            let active = order_row.state == OrderState::Active;
            let not_active = || format!("order {order_id:?} is {}, not active", order_row.state.as_str());
            for (list, values) in lists {
                for raw in values.iter() {
                    done.fetch_add(1, Ordering::Relaxed);
                    let ack = |status: &str, reason: Option<AckReason>, detail: Option<String>| AckItem {
                        item: raw.clone(),
                        list: list.to_owned(),
                        status: status.to_owned(),
                        reason,
                        detail,
                        at: now.clone(),
                    };
                    let (kind, value) = match classify(list, raw) {
                        Item::Valid(kind, value) => (kind, value),
                        Item::Invalid(why) => {
                            items.push(ack("unprocessed", Some(AckReason::Undefined), Some(why)));
                            continue;
                        }
                    };
                    let key = (kind, value.clone());
                    if !seen.insert(key.clone()) {
                        items.push(ack(
                            "unprocessed",
                            Some(AckReason::AlreadyBlocked),
                            Some("listed twice in this feed".into()),
                        ));
                        continue;
                    }
                    let status = if let Some(row) = previous.get(&key) {
                        unchanged += 1;
                        row.status
                    } else if target_exists(tx, &order_id, kind, &value)? {
                        items.push(ack(
                            "unprocessed",
                            Some(AckReason::AlreadyBlocked),
                            Some(format!("already a target of order {order_id:?}")),
                        ));
                        continue;
                    } else {
                        let written = Target::new(kind, value.clone());
                        let row = self.new_target_row(
                            &self.validate_one(&order_row.document, &written)?,
                            &written,
                            &actor.name,
                            Some(name),
                            &now,
                        );
                        insert_target(tx, &order_id, &row)?;
                        added += 1;
                        let status = row.status;
                        if status == TargetStatus::NeedsReview {
                            held_rows.push(row);
                        } else {
                            added_rows.push(row);
                        }
                        status
                    };
                    if status == TargetStatus::NeedsReview {
                        let why = previous
                            .get(&key)
                            .and_then(|r| r.review_reason.clone())
                            .or_else(|| held_rows.last().and_then(|r| r.review_reason.clone()))
                            .unwrap_or_default();
                        items.push(ack(
                            "unprocessed",
                            Some(AckReason::Unknown),
                            Some(format!("held for review, not enforced: {why}")),
                        ));
                    } else if let Some(other) = blocked_elsewhere(tx, &order_id, kind, &value)? {
                        items.push(ack(
                            "unprocessed",
                            Some(AckReason::AlreadyBlocked),
                            Some(format!("already blocked by order {other:?}")),
                        ));
                    } else if !active {
                        items.push(ack("unprocessed", Some(AckReason::Unknown), Some(not_active())));
                    } else {
                        items.push(ack("processed", None, None));
                    }
                }
            }
            let mut lifted = Vec::new();
            for (key, row) in &previous {
                if seen.contains(key) {
                    continue;
                }
                delete_target(tx, &order_id, key.0, &key.1)?;
                lifted.push(row.clone());
            }
            lifted.sort_by(|a, b| (a.kind, &a.value).cmp(&(b.kind, &b.value)));
            for row in &lifted {
                let list = match row.value.parse::<IpNet>() {
                    Ok(IpNet::V4(_)) => "ipv4",
                    Ok(IpNet::V6(_)) => "ipv6",
                    Err(_) => "fqdn",
                };
                let item = match row.value.strip_suffix("/32").or_else(|| row.value.strip_suffix("/128")) {
                    Some(address) => address.to_owned(),
                    None => row.value.clone(),
                };
                items.push(AckItem {
                    item,
                    list: list.into(),
                    status: "lifted".into(),
                    reason: None,
                    detail: Some("no longer in the feed; unblocked".into()),
                    at: now.clone(),
                });
            }
            let checksums = serde_json::to_string(&feed.sha256)
                .map_err(|e| ControlError::Corrupt(e.to_string()))?;
            tx.execute(
                "INSERT INTO feed_imports (feed, at, actor, checksums, added, lifted, unchanged)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
                params![name, now, actor.name, checksums, added, lifted.len() as u64, unchanged],
            )?;
            let import_id = tx.last_insert_rowid();
            {
                let mut insert = tx.prepare_cached(
                    "INSERT INTO feed_acks (import_id, item, list, status, reason, detail, at)
                     VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
                )?;
                for item in &items {
                    insert.execute(params![
                        import_id,
                        item.item,
                        item.list,
                        item.status,
                        item.reason.map(reason_str),
                        item.detail,
                        item.at
                    ])?;
                }
            }
            let state = json!({"fqdn": feed.fqdn, "ipv4": feed.ipv4, "ipv6": feed.ipv6}).to_string();
            tx.execute(
                "INSERT INTO feeds (name, order_id, state, checksums, imported_at, last_import)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6)
                 ON CONFLICT (name) DO UPDATE SET state = ?3, checksums = ?4, imported_at = ?5, last_import = ?6",
                params![name, order_id, state, checksums, now, import_id],
            )?;
            audit::append(
                tx,
                &now,
                NewEntry {
                    actor: &actor.name,
                    action: "feed.import",
                    object: format!("feed:{name}"),
                    before: None,
                    after: Some(json!({
                        "order": order_id,
                        "import": import_id,
                        "sha256": feed.sha256,
                        "added": added_rows,
                        "held": held_rows,
                        "lifted": lifted.iter().map(|t| format!("{} {}", t.kind.as_str(), t.value)).collect::<Vec<_>>(),
                        "unchanged": unchanged,
                    })),
                    reason,
                },
            )?;
            Ok(FeedAck {
                feed: name.to_owned(),
                order: order_id,
                import_id,
                imported_at: now.clone(),
                sha256: feed.sha256.clone(),
                added,
                lifted: lifted.len() as u64,
                unchanged,
                items,
            })
        })
    }

    fn validate_one(
        &self,
        document: &juris_policy::Order,
        target: &Target,
    ) -> Result<juris_policy::ValidatedTarget, ControlError> {
        let mut probe = document.clone();
        probe.targets = vec![target.clone()];
        let valid = self.validate(&probe)?;
        valid
            .targets()
            .first()
            .cloned()
            .ok_or_else(|| ControlError::Corrupt("validation lost a target".into()))
    }

    /// The acknowledgement of a feed's import `import` (default: the last).
    pub fn feed_ack(&self, name: &str, import: Option<i64>) -> Result<FeedAck, ControlError> {
        self.counted(self.store.read(|conn| {
            let (order, last): (String, i64) = conn
                .query_row(
                    "SELECT order_id, last_import FROM feeds WHERE name = ?1",
                    params![name],
                    |r| Ok((r.get(0)?, r.get(1)?)),
                )
                .optional()?
                .ok_or_else(|| not_found("feed", name))?;
            let import_id = import.unwrap_or(last);
            let (at, checksums, added, lifted, unchanged): (String, String, u64, u64, u64) = conn
                .query_row(
                    "SELECT at, checksums, added, lifted, unchanged FROM feed_imports WHERE id = ?1 AND feed = ?2",
                    params![import_id, name],
                    |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?, r.get(4)?)),
                )
                .optional()?
                .ok_or_else(|| not_found("import", &import_id.to_string()))?;
            let mut statement = conn.prepare(
                "SELECT item, list, status, reason, detail, at FROM feed_acks WHERE import_id = ?1 ORDER BY rowid",
            )?;
            let rows = statement.query_map(params![import_id], |r| {
                Ok((
                    r.get::<_, String>(0)?,
                    r.get::<_, String>(1)?,
                    r.get::<_, String>(2)?,
                    r.get::<_, Option<String>>(3)?,
                    r.get::<_, Option<String>>(4)?,
                    r.get::<_, String>(5)?,
                ))
            })?;
            let mut items = Vec::new();
            for row in rows {
                let (item, list, status, reason, detail, at) = row?;
                let reason = match reason.as_deref() {
                    None => None,
                    Some("ALREADY_BLOCKED") => Some(AckReason::AlreadyBlocked),
                    Some("UNDEFINED") => Some(AckReason::Undefined),
                    Some("UNKNOWN") => Some(AckReason::Unknown),
                    Some(other) => {
                        return Err(ControlError::Corrupt(format!("unknown ack reason {other:?}")))
                    }
                };
                items.push(AckItem { item, list, status, reason, detail, at });
            }
            Ok(FeedAck {
                feed: name.to_owned(),
                order,
                import_id,
                imported_at: at,
                sha256: serde_json::from_str(&checksums)
                    .map_err(|e| ControlError::Corrupt(e.to_string()))?,
                added,
                lifted,
                unchanged,
                items,
            })
        }))
    }

    /// The feed imports being written now, from memory (answers while an import holds the
    /// store).
    pub fn running_imports(&self) -> Vec<RunningImport> {
        self.running.list()
    }

    /// The imports of feed `name`, newest first, at most `limit`.
    pub fn feed_imports(&self, name: &str, limit: u32) -> Result<Vec<ImportSummary>, ControlError> {
        self.counted(self.store.read(|conn| {
            let known = conn
                .prepare_cached("SELECT 1 FROM feeds WHERE name = ?1")?
                .exists(params![name])?;
            if !known {
                return Err(not_found("feed", name));
            }
            let mut statement = conn.prepare_cached(
                "SELECT id, at, actor, checksums, added, lifted, unchanged FROM feed_imports
                 WHERE feed = ?1 ORDER BY id DESC LIMIT ?2",
            )?;
            let rows = statement.query_map(params![name, limit], |r| {
                Ok((
                    r.get::<_, i64>(0)?,
                    r.get::<_, String>(1)?,
                    r.get::<_, String>(2)?,
                    r.get::<_, String>(3)?,
                    r.get::<_, u64>(4)?,
                    r.get::<_, u64>(5)?,
                    r.get::<_, u64>(6)?,
                ))
            })?;
            let mut out = Vec::new();
            for row in rows {
                let (import_id, at, actor, checksums, added, lifted, unchanged) = row?;
                out.push(ImportSummary {
                    import_id,
                    at,
                    actor,
                    sha256: serde_json::from_str(&checksums)
                        .map_err(|e| ControlError::Corrupt(e.to_string()))?,
                    added,
                    lifted,
                    unchanged,
                });
            }
            Ok(out)
        }))
    }

    /// [`Control::feeds`] unless the store is busy now (`None`: e.g. an import is being
    /// written), for pages that should not wait.
    pub fn feeds_now(&self) -> Option<Result<Vec<FeedSummary>, ControlError>> {
        self.store
            .try_read(feed_list)
            .map(|result| self.counted(result))
    }

    /// Every feed.
    pub fn feeds(&self) -> Result<Vec<FeedSummary>, ControlError> {
        self.counted(self.store.read(feed_list))
    }

    /// Imports a plain list (one name per line; `#` starts a comment) as targets of `kind`.
    /// Errors name the line.
    pub fn import_list(
        &self,
        actor: &Actor,
        order: &str,
        text: &str,
        kind: TargetKind,
        reason: &str,
    ) -> Result<AddReport, ControlError> {
        let mut lines = Vec::new();
        let mut targets = Vec::new();
        for (number, line) in text.lines().enumerate() {
            let line = line.split('#').next().unwrap_or("").trim();
            if line.is_empty() {
                continue;
            }
            lines.push(number + 1);
            targets.push(Target::new(kind, line));
        }
        self.add_targets(actor, order, targets, reason)
            .map_err(|error| rename_target_paths(error, &lines))
    }

    /// Imports an RPZ zone into `order`: QNAME triggers (`name`, `*.name`), `rpz-ip`,
    /// `rpz-nsdname` and `rpz-nsip` triggers, with the actions `CNAME .` (NXDOMAIN) and
    /// `CNAME *.` (NODATA), which must be the order's action.
    pub fn import_rpz(
        &self,
        actor: &Actor,
        order: &str,
        text: &str,
        reason: &str,
    ) -> Result<RpzImportReport, ControlError> {
        require(actor, Role::Editor)?;
        let zone = rpz::parse(text)?;
        let action = self
            .counted(self.store.read(|conn| load_order(conn, order)))?
            .ok_or_else(|| not_found("order", order))?
            .document
            .action;
        let mut lines = Vec::new();
        let mut targets = Vec::new();
        for record in &zone.records {
            if record.action != action {
                return Err(ControlError::invalid(
                    format!("line {}", record.line),
                    format!(
                        "the record's action is {}, order {order:?} answers {}",
                        rpz::action_name(record.action),
                        rpz::action_name(action)
                    ),
                ));
            }
            lines.push(record.line);
            targets.push(Target::new(record.kind, record.value.clone()));
        }
        let report = self
            .add_targets(actor, order, targets, reason)
            .map_err(|error| rename_target_paths(error, &lines))?;
        Ok(RpzImportReport {
            report,
            warnings: zone.warnings,
        })
    }
}

fn feed_list(conn: &rusqlite::Connection) -> Result<Vec<FeedSummary>, ControlError> {
    let mut statement = conn.prepare(
        "SELECT name, order_id, imported_at, last_import, checksums FROM feeds ORDER BY name",
    )?;
    let rows = statement.query_map([], |r| {
        Ok((
            r.get::<_, String>(0)?,
            r.get::<_, String>(1)?,
            r.get::<_, String>(2)?,
            r.get::<_, i64>(3)?,
            r.get::<_, String>(4)?,
        ))
    })?;
    let mut out = Vec::new();
    for row in rows {
        let (name, order, imported_at, last_import, checksums) = row?;
        out.push(FeedSummary {
            name,
            order,
            imported_at,
            last_import,
            sha256: serde_json::from_str(&checksums)
                .map_err(|e| ControlError::Corrupt(e.to_string()))?,
        });
    }
    Ok(out)
}

fn blocked_elsewhere(
    tx: &rusqlite::Transaction<'_>,
    order: &str,
    kind: TargetKind,
    value: &str,
) -> Result<Option<String>, ControlError> {
    Ok(tx
        .prepare_cached(
            "SELECT t.order_id FROM targets t JOIN orders o ON o.id = t.order_id
             WHERE t.kind = ?1 AND t.value = ?2 AND t.order_id != ?3
               AND o.state = 'active' AND t.status != 'needs_review'
             ORDER BY t.order_id LIMIT 1",
        )?
        .query_row(params![kind.as_str(), value, order], |r| r.get(0))
        .optional()?)
}

fn reason_str(reason: AckReason) -> &'static str {
    match reason {
        AckReason::AlreadyBlocked => "ALREADY_BLOCKED",
        AckReason::Undefined => "UNDEFINED",
        AckReason::Unknown => "UNKNOWN",
    }
}

/// Rewrites `targets[i].value` in validation errors into `line N` of the imported file.
fn rename_target_paths(error: ControlError, lines: &[usize]) -> ControlError {
    let rename = |path: &str| -> String {
        path.strip_prefix("targets[")
            .and_then(|rest| rest.split(']').next())
            .and_then(|i| i.parse::<usize>().ok())
            .and_then(|i| lines.get(i))
            .map(|line| format!("line {line}"))
            .unwrap_or_else(|| path.to_owned())
    };
    match error {
        ControlError::Validation(mut errors) => {
            for e in &mut errors.errors {
                e.path = rename(&e.path);
            }
            ControlError::Validation(ValidationErrors { ..errors })
        }
        ControlError::Invalid { field, reason } => ControlError::Invalid {
            field: rename(&field),
            reason,
        },
        other => other,
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, reason = "test code")]
mod tests {
    use super::*;

    #[test]
    fn checksum_of_newline_joined_items() {
        // printf 'a.example\nb.example' | sha256sum
        assert_eq!(
            list_checksum(&["a.example".into(), "b.example".into()]),
            hex::encode(Sha256::digest(b"a.example\nb.example"))
        );
        assert_eq!(
            list_checksum(&[]),
            "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
        );
    }

    #[test]
    fn a_running_import_shows_its_progress_from_memory_while_it_waits_for_the_store() {
        use crate::{Actor, Store, SystemClock};
        let store = Store::open_in_memory().unwrap();
        let control =
            Arc::new(Control::new(store, &Default::default(), Arc::new(SystemClock)).unwrap());
        let admin = Actor {
            name: "root".into(),
            role: Role::Admin,
        };
        let order: juris_policy::Order = serde_json::from_str(
            r#"{"id": "PS-IT", "kind": "feed_ticket", "authority": "AGCOM",
                "jurisdictions": ["IT"], "action": "nxdomain", "state": "active", "targets": []}"#,
        )
        .unwrap();
        control.apply_order(&admin, order, true, true, "").unwrap();
        let feed = CumulativeFeed::new(
            vec!["a.example".into(), "b.example".into()],
            vec!["192.0.2.1".into()],
            Vec::new(),
        );
        assert!(control.running_imports().is_empty());
        // Hold the store: the import registers, then waits for it.
        let seen = control
            .store
            .read(|_| {
                assert!(
                    control.feeds_now().is_none(),
                    "busy: the page does not wait"
                );
                let importer = Arc::clone(&control);
                let (admin, feed) = (admin.clone(), feed.clone());
                let thread = std::thread::spawn(move || {
                    importer.import_feed(&admin, "ps", Some("PS-IT"), &feed, "")
                });
                let mut seen = Vec::new();
                for _ in 0..10_000 {
                    seen = control.running_imports();
                    if !seen.is_empty() {
                        break;
                    }
                    std::thread::sleep(std::time::Duration::from_millis(1));
                }
                Ok((seen, thread))
            })
            .unwrap();
        let (seen, thread) = seen;
        assert_eq!(seen.len(), 1, "the import is listed while it waits");
        assert_eq!(
            (seen[0].feed.as_str(), seen[0].total, seen[0].done),
            ("ps", 3, 0)
        );
        let ack = thread.join().unwrap().unwrap();
        assert_eq!(ack.added, 3);
        assert!(
            control.running_imports().is_empty(),
            "done: no longer listed"
        );
        assert_eq!(control.feeds_now().unwrap().unwrap().len(), 1);
        let imports = control.feed_imports("ps", 10).unwrap();
        assert_eq!((imports[0].import_id, imports[0].added), (ack.import_id, 3));
        assert!(matches!(
            control.feed_imports("nope", 10),
            Err(ControlError::NotFound { .. })
        ));
    }

    #[test]
    fn items_are_classified() {
        assert!(
            matches!(classify("fqdn", "Example.COM."), Item::Valid(TargetKind::Domain, v) if v == "example.com")
        );
        assert!(matches!(classify("fqdn", "co.uk"), Item::Invalid(_)));
        assert!(matches!(classify("fqdn", "a..b"), Item::Invalid(_)));
        assert!(
            matches!(classify("ipv4", "188.114.97.7"), Item::Valid(TargetKind::Ip, v) if v == "188.114.97.7/32")
        );
        assert!(matches!(classify("ipv4", "2001:db8::1"), Item::Invalid(_)));
        assert!(
            matches!(classify("ipv6", "2001:db8::1"), Item::Valid(TargetKind::Ip, v) if v == "2001:db8::1/128")
        );
        assert!(matches!(classify("ipv4", "10.0.0.1/8"), Item::Invalid(_)));
        assert!(matches!(classify("ipv4", "0.0.0.0/0"), Item::Invalid(_)));
    }
}
