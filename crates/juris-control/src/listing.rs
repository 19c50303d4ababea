//! Order listings, the status and the dashboard's aggregates by indexed queries (migration
//! 0005): filters, text search, counts and pages in SQL, so that no request reads every order
//! (`docs/design/0041-console-paged-queries-transparency-sessions.md`).

use std::collections::BTreeMap;
use std::sync::Arc;

use jiff::Timestamp;
use juris_policy::{Country, Order, OrderKind, EU_MEMBERS};
use rusqlite::types::Value;
use rusqlite::{params, params_from_iter, Connection};
use serde::Serialize;

use super::{
    effective_state_of, parent_status, parse_state, Control, Deadline, OrderFilter, OrderSummary,
    Parsed, StoreStatus,
};
use crate::error::ControlError;

/// What an order listing asks for: the filters of the API's listing, two text filters, and a
/// page.
#[derive(Debug, Clone, Default)]
pub struct OrderQuery {
    /// State, kind, jurisdiction, review filters (as [`Control::orders`]).
    pub filter: OrderFilter,
    /// A case-insensitive part of the authority.
    pub authority: Option<String>,
    /// A case-insensitive part of the id, reference or authority.
    pub text: Option<String>,
    /// Orders skipped (by id order).
    pub offset: u64,
    /// At most this many orders (`None`: all).
    pub limit: Option<u64>,
}

/// One page of a listing and how many orders match in all.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct OrderPage {
    /// The orders of the page, by id.
    pub orders: Vec<OrderSummary>,
    /// Orders matching the filters.
    pub total: u64,
}

/// The active orders written for one jurisdiction.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct JurisdictionInForce {
    /// As written, upper case: a country, `EU` or `*`.
    pub code: String,
    /// Active orders (not expired) that name it.
    pub orders: u64,
    /// Their targets.
    pub targets: u64,
}

/// The dashboard's aggregates.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Overview {
    /// Per jurisdiction as written, by code.
    pub in_force: Vec<JurisdictionInForce>,
    /// The first orders (by id) with targets held for review, and how many.
    pub review: Vec<(String, u64)>,
    /// Orders with targets held for review.
    pub review_orders: u64,
}

/// A timestamp as the store's `*_ts` columns hold it (Unix seconds, millisecond precision).
fn seconds(t: Timestamp) -> f64 {
    // Milliseconds of any jiff timestamp fit in 2^53 exactly.
    #[allow(clippy::cast_precision_loss, reason = "exact below 2^53")]
    let ms = t.as_millisecond() as f64;
    ms / 1000.0
}

/// A phrase for an FTS5 trigram `MATCH` (a part of the text, any case).
fn phrase(text: &str) -> String {
    format!("\"{}\"", text.replace('"', "\"\""))
}

/// A `LIKE` pattern matching `text` anywhere (escape character `\`).
fn like(text: &str) -> String {
    let mut out = String::from("%");
    for c in text.chars() {
        if matches!(c, '%' | '_' | '\\') {
            out.push('\\');
        }
        out.push(c);
    }
    out.push('%');
    out
}

/// The trigram index finds parts of three characters or more; shorter ones are looked up with
/// `LIKE` (a scan of the small text table: ASCII case folding only).
fn searchable(text: &str) -> bool {
    text.chars().count() >= 3
}

/// The `WHERE` clause and its parameters for `query` at `now`.
fn conditions(query: &OrderQuery, now: Timestamp) -> Result<(String, Vec<Value>), ControlError> {
    let mut clauses: Vec<String> = Vec::new();
    let mut values: Vec<Value> = Vec::new();
    let filter = &query.filter;
    if let Some(state) = &filter.state {
        if state == "expired" {
            clauses.push(
                "o.state IN ('active', 'shadow', 'suspended') AND o.expires_ts <= ?".to_owned(),
            );
            values.push(Value::Real(seconds(now)));
        } else {
            // The effective state is the stored one unless the order expired.
            clauses.push("o.state = ?".to_owned());
            values.push(Value::Text(state.clone()));
        }
    }
    if let Some(kind) = &filter.kind {
        clauses.push("o.kind = ?".to_owned());
        values.push(Value::Text(kind.clone()));
    }
    if filter.needs_review == Some(true) {
        clauses.push("c.held > 0".to_owned());
    }
    if let Some(code) = &filter.jurisdiction {
        let mut codes = vec!["*".to_owned()];
        if code != "*" {
            let country = code.to_ascii_uppercase().parse::<Country>().map_err(|_| {
                ControlError::invalid(
                    "jurisdiction",
                    format!("{code:?} is not an ISO 3166-1 alpha-2 code"),
                )
            })?;
            if EU_MEMBERS.contains(&country.as_str()) {
                codes.push("EU".to_owned());
            }
            codes.push(country.as_str().to_owned());
        }
        clauses.push(format!(
            "o.id IN (SELECT order_id FROM order_jurisdictions WHERE code IN ({}))",
            vec!["?"; codes.len()].join(", ")
        ));
        values.extend(codes.into_iter().map(Value::Text));
    }
    for (text, column) in [(&query.authority, Some("authority")), (&query.text, None)] {
        let Some(text) = text.as_deref().map(str::trim).filter(|t| !t.is_empty()) else {
            continue;
        };
        if searchable(text) {
            clauses.push(
                "o.id IN (SELECT t.id FROM order_text t WHERE t.row IN \
                 (SELECT rowid FROM order_text_index WHERE order_text_index MATCH ?))"
                    .to_owned(),
            );
            values.push(Value::Text(match column {
                Some(column) => format!("{column} : {}", phrase(text)),
                None => phrase(text),
            }));
        } else {
            let columns: &[&str] = match column {
                Some(_) => &["authority"],
                None => &["id", "reference", "authority"],
            };
            let any = columns
                .iter()
                .map(|c| format!("t.{c} LIKE ? ESCAPE '\\'"))
                .collect::<Vec<_>>()
                .join(" OR ");
            clauses.push(format!(
                "o.id IN (SELECT t.id FROM order_text t WHERE {any})"
            ));
            values.extend(columns.iter().map(|_| Value::Text(like(text))));
        }
    }
    let clause = if clauses.is_empty() {
        String::new()
    } else {
        format!("WHERE {}", clauses.join(" AND "))
    };
    Ok((clause, values))
}

impl Control {
    /// One page of the orders matching `query`, by id, with the number matching: filtered,
    /// searched, counted and paged by the store's indexes (only the page's documents are read).
    pub fn order_page(&self, query: &OrderQuery) -> Result<OrderPage, ControlError> {
        let now = self.clock.now();
        let (clause, values) = conditions(query, now)?;
        self.counted(self.store.read(|conn| {
            let from = "FROM orders o LEFT JOIN order_target_counts c ON c.order_id = o.id";
            let total: u64 = conn
                .prepare_cached(&format!("SELECT COUNT(*) {from} {clause}"))?
                .query_row(params_from_iter(values.iter()), |row| row.get(0))?;
            let mut page_values = values.clone();
            page_values.push(Value::Integer(
                query
                    .limit
                    .map_or(-1, |limit| i64::try_from(limit).unwrap_or(i64::MAX)),
            ));
            page_values.push(Value::Integer(
                i64::try_from(query.offset).unwrap_or(i64::MAX),
            ));
            let mut statement = conn.prepare_cached(&format!(
                "SELECT o.id, o.document, o.state, o.updated_at,
                        COALESCE(c.targets, 0), COALESCE(c.held, 0)
                 {from} {clause} ORDER BY o.id LIMIT ? OFFSET ?"
            ))?;
            let mut rows = statement.query(params_from_iter(page_values.iter()))?;
            let mut orders = Vec::new();
            while let Some(row) = rows.next()? {
                let id: String = row.get(0)?;
                let text = row.get_ref(1)?.as_str().map_err(rusqlite::Error::from)?;
                let parsed = self.parsed(&id, text)?;
                let state = parse_state(&row.get::<_, String>(2)?)?;
                let order = &parsed.order;
                let parent_status = if order.kind == OrderKind::Extension {
                    let mut probe = order.clone();
                    probe.state = state;
                    parent_status(conn, &probe, now)?
                } else {
                    None
                };
                orders.push(OrderSummary {
                    id: order.id.clone(),
                    kind: order.kind.as_str().to_owned(),
                    authority: order.authority.clone(),
                    reference: order.reference.clone(),
                    jurisdictions: order.jurisdictions.clone(),
                    state: state.as_str().to_owned(),
                    effective_state: effective_state_of(order, state, now),
                    parent_status,
                    targets: row.get(4)?,
                    needs_review: row.get(5)?,
                    comply_by: order.comply_by,
                    updated_at: row.get(3)?,
                });
            }
            Ok(OrderPage { orders, total })
        }))
    }

    /// The parsed document of order `id` stored as `text`, reused while the text is the same
    /// (any writer, in this process or not, changes the text).
    fn parsed(&self, id: &str, text: &str) -> Result<Arc<Parsed>, ControlError> {
        let mut cache = self
            .documents
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if let Some(parsed) = cache.get(id).filter(|p| p.text == text) {
            return Ok(Arc::clone(parsed));
        }
        let order: Order = serde_json::from_str(text)
            .map_err(|e| ControlError::Corrupt(format!("order {id:?}: {e}")))?;
        let parsed = Arc::new(Parsed {
            text: text.to_owned(),
            order,
        });
        cache.insert(id.to_owned(), Arc::clone(&parsed));
        Ok(parsed)
    }

    /// The dashboard's aggregates: the active orders per jurisdiction (kept by triggers, less
    /// the active orders that expired, found by index) and the review queue (its first
    /// `review_limit` orders).
    pub fn overview(&self, review_limit: u32) -> Result<Overview, ControlError> {
        let now = seconds(self.clock.now());
        self.counted(self.store.read(|conn| {
            let mut in_force: BTreeMap<String, (i64, i64)> = BTreeMap::new();
            let mut statement = conn.prepare_cached(
                "SELECT code, orders, targets FROM jurisdiction_in_force WHERE orders > 0",
            )?;
            let mut rows = statement.query([])?;
            while let Some(row) = rows.next()? {
                in_force.insert(row.get(0)?, (row.get(1)?, row.get(2)?));
            }
            let mut statement = conn.prepare_cached(
                "SELECT j.code, COALESCE(c.targets, 0)
                 FROM orders o JOIN order_jurisdictions j ON j.order_id = o.id
                 LEFT JOIN order_target_counts c ON c.order_id = o.id
                 WHERE o.state IN ('active', 'shadow', 'suspended') AND o.state = 'active'
                   AND o.expires_ts <= ?1",
            )?;
            let mut rows = statement.query(params![now])?;
            while let Some(row) = rows.next()? {
                let code: String = row.get(0)?;
                let targets: i64 = row.get(1)?;
                if let Some(entry) = in_force.get_mut(&code) {
                    entry.0 -= 1;
                    entry.1 -= targets;
                }
            }
            let in_force = in_force
                .into_iter()
                .filter(|(_, (orders, _))| *orders > 0)
                .map(|(code, (orders, targets))| JurisdictionInForce {
                    code,
                    orders: u64::try_from(orders).unwrap_or(0),
                    targets: u64::try_from(targets).unwrap_or(0),
                })
                .collect();
            let review_orders: u64 = conn
                .prepare_cached("SELECT COUNT(*) FROM order_target_counts WHERE held > 0")?
                .query_row([], |row| row.get(0))?;
            let review = conn
                .prepare_cached(
                    "SELECT order_id, held FROM order_target_counts WHERE held > 0
                     ORDER BY order_id LIMIT ?1",
                )?
                .query_map(params![review_limit], |row| Ok((row.get(0)?, row.get(1)?)))?
                .collect::<Result<_, _>>()?;
            Ok(Overview {
                in_force,
                review,
                review_orders,
            })
        }))
    }

    /// Counts, deadlines and enforcement latency, from kept counts and indexed queries.
    pub fn status(&self) -> Result<StoreStatus, ControlError> {
        let now = self.clock.now();
        let horizon = now
            .checked_add(self.deadline_warning)
            .unwrap_or(Timestamp::MAX);
        let fleet = self.fleet.get();
        let (orders, expired, targets, needs_review, audit_entries, open) =
            self.counted(self.store.read(|conn| {
                let orders = state_counts(conn)?;
                let expired: u64 = conn.query_row(
                    "SELECT COUNT(*) FROM orders
                     WHERE state IN ('active', 'shadow', 'suspended') AND expires_ts <= ?1",
                    params![seconds(now)],
                    |r| r.get(0),
                )?;
                let (targets, held): (u64, u64) = conn.query_row(
                    "SELECT targets, held FROM target_totals WHERE one = 1",
                    [],
                    |r| Ok((r.get(0)?, r.get(1)?)),
                )?;
                let audit: u64 =
                    conn.query_row("SELECT COALESCE(MAX(seq), 0) FROM audit", [], |r| r.get(0))?;
                let mut open = deadlines(
                    conn,
                    "state IN ('draft', 'shadow', 'suspended')",
                    seconds(horizon),
                )?;
                if fleet.is_some() {
                    open.extend(deadlines(conn, "state = 'active'", seconds(horizon))?);
                }
                Ok((orders, expired, targets, held, audit, open))
            }))?;
        let mut list = Vec::new();
        for (id, state, comply_by) in open {
            // On a fleet primary an active order is in force only where its followers have it.
            let followers_missing = match (state.as_str(), fleet) {
                ("active", Some(fleet)) => fleet.order(&id).map(|f| f.missing).unwrap_or_default(),
                _ => Vec::new(),
            };
            if state == "active" && followers_missing.is_empty() {
                continue;
            }
            if comply_by <= horizon {
                list.push(Deadline {
                    order: id,
                    state,
                    comply_by,
                    overdue: comply_by <= now,
                    followers_missing,
                });
            }
        }
        list.sort_by(|a, b| a.comply_by.cmp(&b.comply_by).then(a.order.cmp(&b.order)));
        let pending = self.lock_pending();
        Ok(StoreStatus {
            revision: pending.revision,
            applied_revision: pending.applied,
            last_change_to_enforcement_ms: pending.last_latency.map(|d| d.as_secs_f64() * 1000.0),
            orders,
            expired,
            targets,
            needs_review,
            deadlines: list,
            audit_entries,
            store_errors: self.store_errors(),
        })
    }
}

/// Orders per stored state (kept by triggers).
fn state_counts(conn: &Connection) -> Result<BTreeMap<String, u64>, ControlError> {
    let mut statement =
        conn.prepare_cached("SELECT state, orders FROM order_state_counts WHERE orders > 0")?;
    let rows = statement.query_map([], |row| Ok((row.get(0)?, row.get(1)?)))?;
    Ok(rows.collect::<Result<_, _>>()?)
}

/// (id, state, comply_by) of the orders matching `states` (a condition on `state` that one of
/// migration 0005's partial indexes names) whose deadline is before `horizon`.
fn deadlines(
    conn: &Connection,
    states: &str,
    horizon: f64,
) -> Result<Vec<(String, String, Timestamp)>, ControlError> {
    let mut statement = conn.prepare_cached(&format!(
        "SELECT id, state, json_extract(document, '$.comply_by') FROM orders
         WHERE {states} AND comply_ts <= ?1"
    ))?;
    let mut rows = statement.query(params![horizon])?;
    let mut out = Vec::new();
    while let Some(row) = rows.next()? {
        let id: String = row.get(0)?;
        let text: String = row.get(2)?;
        let comply_by = text
            .parse()
            .map_err(|e| ControlError::Corrupt(format!("order {id:?}: comply_by: {e}")))?;
        out.push((id, row.get(1)?, comply_by));
    }
    Ok(out)
}
