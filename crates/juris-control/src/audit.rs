//! The audit log: append-only and hash-chained.
//!
//! Every change to the store appends one entry **in the same transaction** as the change. Each
//! entry's hash is `SHA-256(previous hash (32 bytes) ‖ canonical encoding of the entry)`, the
//! first entry chaining to 32 zero bytes. The canonical encoding is, in this order, the fields
//! `seq, time, actor, action, object, before, after, reason`, each written as
//! `<decimal byte length>:<bytes>\n`, an absent (`NULL`) field as `~\n`, after the line
//! `juris-audit-v1\n`. `before` and `after` are hashed as the exact JSON text stored, so no JSON
//! re-serialisation can change a hash.
//!
//! [`verify`] walks the chain in `seq` order and names the first entry that was edited, removed
//! or moved. Entries never hold client addresses: actors are token names, objects are order ids,
//! feed names and target values.
//!
//! # Limitations
//! - Removing the **newest** entries (truncating the tail) leaves a valid, shorter chain. Publish
//!   or copy [`VerifyReport::head`] elsewhere (it is in every transparency export) to detect that.

use rusqlite::{params, Connection, OptionalExtension, Transaction};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::error::ControlError;

/// The hash the first entry chains to.
pub const GENESIS: &str = "0000000000000000000000000000000000000000000000000000000000000000";

/// One entry of the audit log, as stored.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AuditEntry {
    /// Position in the chain, from 1.
    pub seq: i64,
    /// When (RFC 3339, UTC).
    pub time: String,
    /// Who: a token name (`alice`), `feed:NAME`, or `local` for offline commands.
    pub actor: String,
    /// What: `order.create`, `order.activate`, `target.add`, `feed.import`, `token.create`, ...
    pub action: String,
    /// On what: `order:ID`, `feed:NAME`, `token:NAME`, `orders:*`.
    pub object: String,
    /// The object before the change (JSON text), if it existed.
    pub before: Option<String>,
    /// The object after the change, or the change itself (JSON text).
    pub after: Option<String>,
    /// Why, as given by the actor.
    pub reason: String,
    /// Hash of the previous entry (hex).
    pub prev_hash: String,
    /// Hash of this entry (hex).
    pub hash: String,
}

/// An entry to append.
#[derive(Debug, Clone)]
pub(crate) struct NewEntry<'a> {
    pub actor: &'a str,
    pub action: &'a str,
    pub object: String,
    pub before: Option<serde_json::Value>,
    pub after: Option<serde_json::Value>,
    pub reason: &'a str,
}

/// The result of [`verify`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct VerifyReport {
    /// Whether the whole chain is intact.
    pub ok: bool,
    /// How many entries were read.
    pub entries: u64,
    /// The hash of the last intact entry (anchor it elsewhere to detect truncation).
    pub head: String,
    /// The first entry that is wrong, if any.
    pub first_bad: Option<BadEntry>,
}

/// The first entry found wrong by [`verify`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct BadEntry {
    /// Its sequence number (for a removed entry: the number that is missing).
    pub seq: i64,
    /// What is wrong.
    pub problem: String,
}

/// The canonical encoding of an entry's content (everything but the hashes).
#[allow(
    clippy::too_many_arguments,
    reason = "One argument per hashed field, in hashing order"
)]
pub fn canonical(
    seq: i64,
    time: &str,
    actor: &str,
    action: &str,
    object: &str,
    before: Option<&str>,
    after: Option<&str>,
    reason: &str,
) -> Vec<u8> {
    let mut out = Vec::with_capacity(128);
    out.extend_from_slice(b"juris-audit-v1\n");
    let seq = seq.to_string();
    let fields = [
        Some(seq.as_str()),
        Some(time),
        Some(actor),
        Some(action),
        Some(object),
        before,
        after,
        Some(reason),
    ];
    for field in fields {
        match field {
            Some(text) => {
                out.extend_from_slice(text.len().to_string().as_bytes());
                out.push(b':');
                out.extend_from_slice(text.as_bytes());
                out.push(b'\n');
            }
            None => out.extend_from_slice(b"~\n"),
        }
    }
    out
}

/// `SHA-256(prev ‖ canonical)` in lower-case hex. `prev_hex` that is not 64 hex digits is hashed
/// as its text bytes (it can then never match a correct chain).
pub fn chain_hash(prev_hex: &str, canonical: &[u8]) -> String {
    let mut hasher = Sha256::new();
    match hex::decode(prev_hex) {
        Ok(bytes) if bytes.len() == 32 => hasher.update(&bytes),
        _ => hasher.update(prev_hex.as_bytes()),
    }
    hasher.update(canonical);
    hex::encode(hasher.finalize())
}

/// Appends one entry inside the caller's transaction; returns its seq.
pub(crate) fn append(
    tx: &Transaction<'_>,
    time: &str,
    entry: NewEntry<'_>,
) -> Result<i64, ControlError> {
    let last: Option<(i64, String)> = tx
        .query_row(
            "SELECT seq, hash FROM audit ORDER BY seq DESC LIMIT 1",
            [],
            |row| Ok((row.get(0)?, row.get(1)?)),
        )
        .optional()?;
    let (seq, prev) = match last {
        Some((seq, hash)) => (seq + 1, hash),
        None => (1, GENESIS.to_owned()),
    };
    let before = entry.before.map(|v| v.to_string());
    let after = entry.after.map(|v| v.to_string());
    let encoded = canonical(
        seq,
        time,
        entry.actor,
        entry.action,
        &entry.object,
        before.as_deref(),
        after.as_deref(),
        entry.reason,
    );
    let hash = chain_hash(&prev, &encoded);
    tx.execute(
        "INSERT INTO audit (seq, time, actor, action, object, before, after, reason, prev_hash, hash)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10)",
        params![
            seq,
            time,
            entry.actor,
            entry.action,
            entry.object,
            before,
            after,
            entry.reason,
            prev,
            hash
        ],
    )?;
    Ok(seq)
}

/// Entries with `seq > after`, oldest first, at most `limit`.
pub fn entries(conn: &Connection, after: i64, limit: u32) -> Result<Vec<AuditEntry>, ControlError> {
    select(
        conn,
        "WHERE seq > ?1 ORDER BY seq LIMIT ?2",
        params![after, limit],
    )
}

/// The newest `limit` entries about `object` (`order:ID`), newest first.
pub fn entries_for(
    conn: &Connection,
    object: &str,
    limit: u32,
) -> Result<Vec<AuditEntry>, ControlError> {
    select(
        conn,
        "WHERE object = ?1 ORDER BY seq DESC LIMIT ?2",
        params![object, limit],
    )
}

fn select(
    conn: &Connection,
    filter: &str,
    params: impl rusqlite::Params,
) -> Result<Vec<AuditEntry>, ControlError> {
    let mut statement = conn.prepare(&format!(
        "SELECT seq, time, actor, action, object, before, after, reason, prev_hash, hash
         FROM audit {filter}"
    ))?;
    let rows = statement.query_map(params, row_to_entry)?;
    let mut out = Vec::new();
    for row in rows {
        out.push(row?);
    }
    Ok(out)
}

fn row_to_entry(row: &rusqlite::Row<'_>) -> rusqlite::Result<AuditEntry> {
    Ok(AuditEntry {
        seq: row.get(0)?,
        time: row.get(1)?,
        actor: row.get(2)?,
        action: row.get(3)?,
        object: row.get(4)?,
        before: row.get(5)?,
        after: row.get(6)?,
        reason: row.get(7)?,
        prev_hash: row.get(8)?,
        hash: row.get(9)?,
    })
}

/// Checks the whole chain. Detects an edited entry (its hash no longer matches its content), a
/// removed entry (a gap in `seq`, or the next entry no longer chains to its predecessor) and
/// reordered entries (`seq` is hashed, so moving content to another position breaks it).
pub fn verify(conn: &Connection) -> Result<VerifyReport, ControlError> {
    verify_from(conn, 0, GENESIS)
}

/// [`verify`] of the entries after `after`, whose entry `after` has the hash `prev` (checked
/// before: the console re-checks only what was appended since).
pub fn verify_from(
    conn: &Connection,
    after: i64,
    prev: &str,
) -> Result<VerifyReport, ControlError> {
    let mut statement = conn.prepare(
        "SELECT seq, time, actor, action, object, before, after, reason, prev_hash, hash
         FROM audit WHERE seq > ?1 ORDER BY seq",
    )?;
    let rows = statement.query_map([after], row_to_entry)?;
    let mut prev = prev.to_owned();
    let mut count = u64::try_from(after).unwrap_or(0);
    for (expected_seq, row) in (after + 1..).zip(rows) {
        let entry = row?;
        count += 1;
        let bad = |seq: i64, problem: String, head: String| VerifyReport {
            ok: false,
            entries: count,
            head,
            first_bad: Some(BadEntry { seq, problem }),
        };
        if entry.seq != expected_seq {
            return Ok(bad(
                expected_seq,
                format!(
                    "entry {expected_seq} is missing (the next entry is {})",
                    entry.seq
                ),
                prev,
            ));
        }
        if entry.prev_hash != prev {
            return Ok(bad(
                entry.seq,
                format!(
                    "entry {} does not chain to entry {} (removed or reordered entries)",
                    entry.seq,
                    entry.seq - 1
                ),
                prev,
            ));
        }
        let encoded = canonical(
            entry.seq,
            &entry.time,
            &entry.actor,
            &entry.action,
            &entry.object,
            entry.before.as_deref(),
            entry.after.as_deref(),
            &entry.reason,
        );
        let hash = chain_hash(&prev, &encoded);
        if hash != entry.hash {
            return Ok(bad(
                entry.seq,
                format!(
                    "entry {} was altered (its content does not match its hash)",
                    entry.seq
                ),
                prev,
            ));
        }
        prev = hash;
    }
    Ok(VerifyReport {
        ok: true,
        entries: count,
        head: prev,
        first_bad: None,
    })
}

#[cfg(test)]
#[allow(clippy::unwrap_used, reason = "test code")]
mod tests {
    use super::*;

    #[test]
    fn canonical_encoding_is_length_prefixed() {
        let encoded = canonical(
            3,
            "t",
            "alice",
            "order.create",
            "order:X",
            None,
            Some("{}"),
            "",
        );
        assert_eq!(
            String::from_utf8(encoded).unwrap(),
            "juris-audit-v1\n1:3\n1:t\n5:alice\n12:order.create\n7:order:X\n~\n2:{}\n0:\n"
        );
        // Moving a byte between fields changes the encoding.
        assert_ne!(
            canonical(1, "t", "ab", "c", "o", None, None, ""),
            canonical(1, "t", "a", "bc", "o", None, None, "")
        );
        assert_ne!(
            canonical(1, "t", "a", "b", "o", None, None, ""),
            canonical(1, "t", "a", "b", "o", Some(""), None, "")
        );
    }
}
