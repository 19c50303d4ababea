//! The embedded SQLite store: opening, pragmas, migrations, transactions, and ([`rows`]) the
//! rows of orders, targets and transitions.
//!
//! One file, `control.sqlite3`, in the data directory. WAL journal, `synchronous = FULL` (a
//! change acknowledged to a client is on disk: it survives a crash or power loss), foreign keys
//! on, a 5 s busy timeout (the offline CLI commands may open the file while the server runs).
//! Migrations are the SQL files in `crates/juris-control/migrations/`, compiled in and applied in
//! order, each in its own transaction together with its row in `schema_version`.

use std::path::{Path, PathBuf};
use std::sync::{Mutex, MutexGuard};
use std::time::Duration;

use rusqlite::{Connection, OptionalExtension, Transaction, TransactionBehavior};

use crate::error::ControlError;

/// The file name of the store inside the data directory.
pub const STORE_FILE: &str = "control.sqlite3";

/// Migrations: (version, SQL), in order. Append only; never edit a released one.
const MIGRATIONS: &[(u32, &str)] = &[
    (1, include_str!("../migrations/0001_initial.sql")),
    (2, include_str!("../migrations/0002_operator_role.sql")),
    (
        3,
        include_str!("../migrations/0003_candidate_decisions.sql"),
    ),
    (
        4,
        include_str!("../migrations/0004_daily_counts_and_console_speed.sql"),
    ),
    (
        5,
        include_str!("../migrations/0005_console_indexes_and_sessions.sql"),
    ),
];

/// The schema version this build writes.
pub const SCHEMA_VERSION: u32 = 5;

/// The SQLite store. Cheap to share behind an `Arc`; operations serialise on one connection.
#[derive(Debug)]
pub struct Store {
    conn: Mutex<Connection>,
    path: Option<PathBuf>,
}

impl Store {
    /// Opens (creating if needed) the store in `dir`, and migrates it to [`SCHEMA_VERSION`].
    pub fn open(dir: &Path) -> Result<Store, ControlError> {
        std::fs::create_dir_all(dir).map_err(|source| ControlError::Io {
            path: dir.display().to_string(),
            source,
        })?;
        let path = dir.join(STORE_FILE);
        let conn = Connection::open(&path)?;
        Store::init(conn, Some(path))
    }

    /// A store in memory (tests, dry runs).
    pub fn open_in_memory() -> Result<Store, ControlError> {
        Store::init(Connection::open_in_memory()?, None)
    }

    fn init(mut conn: Connection, path: Option<PathBuf>) -> Result<Store, ControlError> {
        conn.busy_timeout(Duration::from_secs(5))?;
        // `journal_mode` answers with the mode in force (memory databases stay `memory`).
        let _mode: String = conn.query_row("PRAGMA journal_mode = WAL", [], |row| row.get(0))?;
        conn.execute_batch("PRAGMA synchronous = FULL; PRAGMA foreign_keys = ON;")?;
        migrate(&mut conn)?;
        Ok(Store {
            conn: Mutex::new(conn),
            path,
        })
    }

    /// The database file (`None` in memory).
    pub fn path(&self) -> Option<&Path> {
        self.path.as_deref()
    }

    /// The schema version of the open database.
    pub fn schema_version(&self) -> Result<u32, ControlError> {
        schema_version(&self.lock())
    }

    /// Runs `f` on the connection (reads).
    pub(crate) fn read<T>(
        &self,
        f: impl FnOnce(&Connection) -> Result<T, ControlError>,
    ) -> Result<T, ControlError> {
        f(&self.lock())
    }

    /// Runs `f` on the connection if nobody else is using it now (`None` while, e.g., a long
    /// import is being written): for pages that should not wait.
    pub(crate) fn try_read<T>(
        &self,
        f: impl FnOnce(&Connection) -> Result<T, ControlError>,
    ) -> Option<Result<T, ControlError>> {
        let conn = match self.conn.try_lock() {
            Ok(conn) => conn,
            Err(std::sync::TryLockError::Poisoned(poisoned)) => poisoned.into_inner(),
            Err(std::sync::TryLockError::WouldBlock) => return None,
        };
        Some(f(&conn))
    }

    /// Runs `f` in one `BEGIN IMMEDIATE` transaction: committed if `f` returns `Ok`, rolled back
    /// otherwise (nothing half-applied).
    pub(crate) fn write<T>(
        &self,
        f: impl FnOnce(&Transaction<'_>) -> Result<T, ControlError>,
    ) -> Result<T, ControlError> {
        let mut conn = self.lock();
        let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
        let value = f(&tx)?;
        tx.commit()?;
        Ok(value)
    }

    fn lock(&self) -> MutexGuard<'_, Connection> {
        // A panic while the lock was held left no half-written change: the transaction is rolled
        // back when it is dropped. The connection itself stays usable, so poisoning is ignored.
        self.conn
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

fn schema_version(conn: &Connection) -> Result<u32, ControlError> {
    let exists: Option<String> = conn
        .query_row(
            "SELECT name FROM sqlite_master WHERE type = 'table' AND name = 'schema_version'",
            [],
            |row| row.get(0),
        )
        .optional()?;
    if exists.is_none() {
        return Ok(0);
    }
    let version: Option<u32> =
        conn.query_row("SELECT MAX(version) FROM schema_version", [], |row| {
            row.get(0)
        })?;
    Ok(version.unwrap_or(0))
}

fn migrate(conn: &mut Connection) -> Result<(), ControlError> {
    conn.execute_batch(
        "CREATE TABLE IF NOT EXISTS schema_version (
             version INTEGER PRIMARY KEY NOT NULL,
             applied_at TEXT NOT NULL
         )",
    )?;
    let current = schema_version(conn)?;
    if current > SCHEMA_VERSION {
        return Err(ControlError::Schema(format!(
            "the store has schema version {current}, newer than this build's {SCHEMA_VERSION}; \
             use a newer juris"
        )));
    }
    for (version, sql) in MIGRATIONS {
        if *version <= current {
            continue;
        }
        let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
        tx.execute_batch(sql)?;
        tx.execute(
            "INSERT INTO schema_version (version, applied_at) VALUES (?1, ?2)",
            rusqlite::params![version, jiff::Timestamp::now().to_string()],
        )?;
        tx.commit()?;
        tracing::info!(version, "store migrated");
    }
    Ok(())
}

/// The rows of orders, targets and transitions: reading and writing them, for the rules in
/// `control.rs` and `feeds.rs` (which still hold the SQL of their other statements).
pub(crate) mod rows {
    use rusqlite::{params, Connection, OptionalExtension, Transaction};

    use juris_policy::{Order, OrderState, TargetKind};

    use crate::control::{parse_kind, parse_state, parse_status, TargetView, TransitionView};
    use crate::error::ControlError;

    pub(crate) struct OrderRow {
        pub document: Order,
        pub state: OrderState,
        pub created_by: String,
        pub created_at: String,
        pub updated_at: String,
    }

    pub(crate) fn load_order(
        conn: &Connection,
        id: &str,
    ) -> Result<Option<OrderRow>, ControlError> {
        let row: Option<(String, String, String, String, String)> = conn
            .query_row(
                "SELECT document, state, created_by, created_at, updated_at FROM orders WHERE id = ?1",
                params![id],
                |row| {
                    Ok((
                        row.get(0)?,
                        row.get(1)?,
                        row.get(2)?,
                        row.get(3)?,
                        row.get(4)?,
                    ))
                },
            )
            .optional()?;
        let Some((document, state, created_by, created_at, updated_at)) = row else {
            return Ok(None);
        };
        let document: Order = serde_json::from_str(&document)
            .map_err(|e| ControlError::Corrupt(format!("order {id:?}: {e}")))?;
        Ok(Some(OrderRow {
            document,
            state: parse_state(&state)?,
            created_by,
            created_at,
            updated_at,
        }))
    }

    const TARGET_COLUMNS: &str = "kind, value, added_at, added_by, feed, evidence, status, review_reason, override_by, override_reason";

    fn row_to_target(row: &rusqlite::Row<'_>) -> rusqlite::Result<[Option<String>; 10]> {
        let mut out: [Option<String>; 10] = Default::default();
        for (i, slot) in out.iter_mut().enumerate() {
            *slot = row.get(i)?;
        }
        Ok(out)
    }

    fn target_from_columns(columns: [Option<String>; 10]) -> Result<TargetView, ControlError> {
        let [kind, value, added_at, added_by, feed, evidence, status, review_reason, override_by, override_reason] =
            columns;
        Ok(TargetView {
            kind: parse_kind(kind.as_deref().unwrap_or_default())?,
            value: value.unwrap_or_default(),
            added_at: added_at.unwrap_or_default(),
            added_by: added_by.unwrap_or_default(),
            feed,
            evidence,
            status: parse_status(status.as_deref().unwrap_or_default())?,
            review_reason,
            override_by,
            override_reason,
        })
    }

    pub(crate) fn load_targets(
        conn: &Connection,
        id: &str,
    ) -> Result<Vec<TargetView>, ControlError> {
        let mut statement = conn.prepare_cached(&format!(
            "SELECT {TARGET_COLUMNS} FROM targets WHERE order_id = ?1 ORDER BY added_at, kind, value"
        ))?;
        let rows = statement.query_map(params![id], row_to_target)?;
        let mut out = Vec::new();
        for row in rows {
            out.push(target_from_columns(row?)?);
        }
        Ok(out)
    }

    /// The first `limit` targets of order `id` in key order (type, then value): what a page
    /// shows of an order with 100,000 targets, read by the primary key without a sort.
    pub(crate) fn load_targets_first(
        conn: &Connection,
        id: &str,
        limit: usize,
    ) -> Result<Vec<TargetView>, ControlError> {
        let mut statement = conn.prepare_cached(&format!(
            "SELECT {TARGET_COLUMNS} FROM targets WHERE order_id = ?1 ORDER BY kind, value LIMIT ?2"
        ))?;
        let limit = i64::try_from(limit).unwrap_or(i64::MAX);
        let rows = statement.query_map(params![id, limit], row_to_target)?;
        let mut out = Vec::new();
        for row in rows {
            out.push(target_from_columns(row?)?);
        }
        Ok(out)
    }

    /// (targets, held for review) of order `id`, from the counts the triggers keep.
    pub(crate) fn target_counts(conn: &Connection, id: &str) -> Result<(u64, u64), ControlError> {
        Ok(conn
            .prepare_cached("SELECT targets, held FROM order_target_counts WHERE order_id = ?1")?
            .query_row(params![id], |row| Ok((row.get(0)?, row.get(1)?)))
            .optional()?
            .unwrap_or((0, 0)))
    }

    pub(crate) fn load_target(
        conn: &Connection,
        id: &str,
        kind: TargetKind,
        value: &str,
    ) -> Result<Option<TargetView>, ControlError> {
        let columns = conn
            .query_row(
                &format!(
                    "SELECT {TARGET_COLUMNS} FROM targets WHERE order_id = ?1 AND kind = ?2 AND value = ?3"
                ),
                params![id, kind.as_str(), value],
                row_to_target,
            )
            .optional()?;
        columns.map(target_from_columns).transpose()
    }

    pub(crate) fn target_exists(
        conn: &Connection,
        id: &str,
        kind: TargetKind,
        value: &str,
    ) -> Result<bool, ControlError> {
        Ok(conn
            .prepare_cached(
                "SELECT 1 FROM targets WHERE order_id = ?1 AND kind = ?2 AND value = ?3",
            )?
            .exists(params![id, kind.as_str(), value])?)
    }

    /// Removes one target row of order `id`.
    pub(crate) fn delete_target(
        tx: &Transaction<'_>,
        id: &str,
        kind: TargetKind,
        value: &str,
    ) -> Result<(), ControlError> {
        tx.prepare_cached("DELETE FROM targets WHERE order_id = ?1 AND kind = ?2 AND value = ?3")?
            .execute(params![id, kind.as_str(), value])?;
        Ok(())
    }

    pub(crate) fn insert_target(
        tx: &Transaction<'_>,
        id: &str,
        row: &TargetView,
    ) -> Result<(), ControlError> {
        tx.prepare_cached(
            "INSERT INTO targets (order_id, kind, value, added_at, added_by, feed, evidence, status, review_reason)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9)",
        )?
        .execute(params![
            id,
            row.kind.as_str(),
            row.value,
            row.added_at,
            row.added_by,
            row.feed,
            row.evidence,
            row.status.as_str(),
            row.review_reason
        ])?;
        Ok(())
    }

    pub(crate) fn insert_transition(
        tx: &Transaction<'_>,
        id: &str,
        from: Option<OrderState>,
        to: OrderState,
        now: &str,
        actor: &str,
        reason: &str,
    ) -> Result<(), ControlError> {
        tx.execute(
            "INSERT INTO transitions (order_id, from_state, to_state, at, actor, reason) VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
            params![id, from.map(OrderState::as_str), to.as_str(), now, actor, reason],
        )?;
        Ok(())
    }

    pub(crate) fn load_transitions(
        conn: &Connection,
        id: &str,
    ) -> Result<Vec<TransitionView>, ControlError> {
        let mut statement = conn.prepare(
            "SELECT from_state, to_state, at, actor, reason FROM transitions WHERE order_id = ?1 ORDER BY seq",
        )?;
        let rows = statement.query_map(params![id], |row| {
            Ok(TransitionView {
                from: row.get(0)?,
                to: row.get(1)?,
                at: row.get(2)?,
                actor: row.get(3)?,
                reason: row.get(4)?,
            })
        })?;
        Ok(rows.collect::<Result<_, _>>()?)
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, reason = "test code")]
mod tests {
    use super::*;

    #[test]
    fn migrations_are_numbered_in_order() {
        for (i, (version, _)) in MIGRATIONS.iter().enumerate() {
            assert_eq!(*version as usize, i + 1);
        }
        assert_eq!(MIGRATIONS.last().unwrap().0, SCHEMA_VERSION);
    }

    #[test]
    fn open_migrates_once_and_reopens() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        assert_eq!(store.schema_version().unwrap(), SCHEMA_VERSION);
        let mode: String = store
            .read(|c| Ok(c.query_row("PRAGMA journal_mode", [], |r| r.get(0))?))
            .unwrap();
        assert_eq!(mode, "wal");
        let sync: i64 = store
            .read(|c| Ok(c.query_row("PRAGMA synchronous", [], |r| r.get(0))?))
            .unwrap();
        assert_eq!(sync, 2, "synchronous = FULL");
        drop(store);
        let store = Store::open(dir.path()).unwrap();
        let rows: i64 = store
            .read(|c| Ok(c.query_row("SELECT COUNT(*) FROM schema_version", [], |r| r.get(0))?))
            .unwrap();
        assert_eq!(rows, MIGRATIONS.len() as i64, "a migration is applied once");
    }

    /// A store in `dir` at schema `version` (as an older build left it).
    fn migrated_to(dir: &Path, version: u32) -> Connection {
        let mut conn = Connection::open(dir.join(STORE_FILE)).unwrap();
        conn.execute_batch(
            "CREATE TABLE schema_version (version INTEGER PRIMARY KEY, applied_at TEXT NOT NULL)",
        )
        .unwrap();
        let tx = conn.transaction().unwrap();
        for (v, sql) in MIGRATIONS.iter().take_while(|(v, _)| *v <= version) {
            tx.execute_batch(sql).unwrap();
            tx.execute("INSERT INTO schema_version VALUES (?1, 'x')", [v])
                .unwrap();
        }
        tx.commit().unwrap();
        conn
    }

    #[test]
    fn version_1_tokens_survive_the_operator_migration() {
        let dir = tempfile::tempdir().unwrap();
        {
            let mut conn = migrated_to(dir.path(), 1);
            let tx = conn.transaction().unwrap();
            tx.execute(
                "INSERT INTO tokens (hash, role, name, created_at, created_by) VALUES ('h', 'approver', 'n', 't', 'x')",
                [],
            )
            .unwrap();
            tx.commit().unwrap();
        }
        let store = Store::open(dir.path()).unwrap();
        assert_eq!(store.schema_version().unwrap(), SCHEMA_VERSION);
        let role: String = store
            .read(
                |c| Ok(c.query_row("SELECT role FROM tokens WHERE hash = 'h'", [], |r| r.get(0))?),
            )
            .unwrap();
        assert_eq!(role, "approver");
        store
            .write(|tx| {
                tx.execute(
                    "INSERT INTO tokens (hash, role, name, created_at, created_by) VALUES ('o', 'operator', 'op', 't', 'x')",
                    [],
                )?;
                Ok(())
            })
            .unwrap();
    }

    #[test]
    fn the_console_indexes_are_back_filled_from_a_version_4_store() {
        let dir = tempfile::tempdir().unwrap();
        {
            let mut conn = migrated_to(dir.path(), 4);
            let tx = conn.transaction().unwrap();
            for (id, state, codes) in [
                ("A", "active", r#"["it", "FR"]"#),
                ("B", "draft", r#"["IT"]"#),
            ] {
                let document = format!(
                    r#"{{"id":"{id}","authority":"Tribunale di Milano","reference":"RG {id}","jurisdictions":{codes},"comply_by":"2024-06-02T00:00:00.5Z"}}"#
                );
                tx.execute(
                    "INSERT INTO orders VALUES (?1, ?2, ?3, 'court_order', 'x', 't', 't')",
                    rusqlite::params![id, document, state],
                )
                .unwrap();
                for name in ["a.example", "b.example"] {
                    tx.execute(
                        "INSERT INTO targets (order_id, kind, value, added_at, added_by, status) VALUES (?1, 'domain', ?2, 't', 'x', 'needs_review')",
                        rusqlite::params![id, name],
                    )
                    .unwrap();
                }
            }
            tx.commit().unwrap();
        }
        let store = Store::open(dir.path()).unwrap();
        assert_eq!(store.schema_version().unwrap(), SCHEMA_VERSION);
        store
            .read(|c| {
                let in_force: Vec<(String, i64, i64)> = c
                    .prepare(
                        "SELECT code, orders, targets FROM jurisdiction_in_force ORDER BY code",
                    )?
                    .query_map([], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))?
                    .collect::<Result<_, _>>()?;
                assert_eq!(in_force, [("FR".into(), 1, 2), ("IT".into(), 1, 2)]);
                let totals: (i64, i64) =
                    c.query_row("SELECT targets, held FROM target_totals", [], |r| {
                        Ok((r.get(0)?, r.get(1)?))
                    })?;
                assert_eq!(totals, (4, 4));
                let found: String = c.query_row(
                    "SELECT t.id FROM order_text t JOIN order_text_index i ON i.rowid = t.row
                     WHERE order_text_index MATCH '\"rg b\"'",
                    [],
                    |r| r.get(0),
                )?;
                assert_eq!(found, "B");
                let comply: f64 =
                    c.query_row("SELECT comply_ts FROM orders WHERE id = 'A'", [], |r| {
                        r.get(0)
                    })?;
                assert!((comply - 1_717_286_400.5).abs() < 1e-6, "{comply}");
                Ok(())
            })
            .unwrap();
    }

    #[test]
    fn newer_schema_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        drop(Store::open(dir.path()).unwrap());
        let conn = Connection::open(dir.path().join(STORE_FILE)).unwrap();
        conn.execute(
            "INSERT INTO schema_version (version, applied_at) VALUES (99, 'x')",
            [],
        )
        .unwrap();
        drop(conn);
        let error = Store::open(dir.path()).unwrap_err();
        assert!(error.to_string().contains("schema version 99"), "{error}");
    }

    #[test]
    fn failed_write_rolls_back() {
        let store = Store::open_in_memory().unwrap();
        let result: Result<(), ControlError> = store.write(|tx| {
            tx.execute(
                "INSERT INTO tokens (hash, role, name, created_at, created_by) VALUES ('h', 'admin', 'n', 't', 'x')",
                [],
            )?;
            Err(ControlError::invalid("x", "abort"))
        });
        assert!(result.is_err());
        let count: i64 = store
            .read(|c| Ok(c.query_row("SELECT COUNT(*) FROM tokens", [], |r| r.get(0))?))
            .unwrap();
        assert_eq!(count, 0);
    }
}
