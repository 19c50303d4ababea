//! Console sessions in the store (migration 0005): a signed-in token behind an opaque id, kept
//! across restarts. Only the id's SHA-256 is stored; the session's CSRF token is derived from
//! the id ([`csrf_of`]), so neither can be read back from the store. A session stands for its
//! token: the lookup joins `tokens`, so a revoked token (by this process or the offline CLI) ends
//! it at once; expiry is checked on every lookup by the control plane's clock.

use std::time::Duration;

use rand::RngCore;
use rusqlite::{params, OptionalExtension};
use sha2::{Digest, Sha256};

use super::{actor_found, parse_role, token_hash, Actor, Control};
use crate::error::ControlError;

/// At most this many live sessions (the one expiring first goes when a new one starts).
const MAX_SESSIONS: i64 = 10_000;

fn id_hash(id: &str) -> String {
    hex::encode(Sha256::digest(id.as_bytes()))
}

/// The CSRF token of session `id` (the forms carry it; derived, never stored).
pub fn csrf_of(id: &str) -> String {
    let mut hasher = Sha256::new();
    hasher.update(b"juris console csrf\0");
    hasher.update(id.as_bytes());
    hex::encode(hasher.finalize())
}

impl Control {
    fn unix_now(&self) -> i64 {
        self.now().as_second()
    }

    /// Signs `token` in: a new session lasting `ttl`. Returns its id (the cookie's value: the only
    /// time it is seen in clear) and the actor. Sessions that expired are deleted meanwhile.
    pub fn start_session(
        &self,
        token: &str,
        ttl: Duration,
    ) -> Result<(String, Actor), ControlError> {
        let hash = token_hash(token.trim());
        let now = self.unix_now();
        let expires = now.saturating_add(i64::try_from(ttl.as_secs()).unwrap_or(i64::MAX));
        let mut secret = [0_u8; 32];
        rand::thread_rng().fill_bytes(&mut secret);
        let id = hex::encode(secret);
        let created = self.now_text();
        // Not an order change: the revision (and the order loader) is not moved.
        let actor = self.counted(self.store.write(|tx| {
            let found: Option<(i64, String, String)> = tx
                .query_row(
                    "SELECT id, name, role FROM tokens WHERE hash = ?1 AND revoked_at IS NULL",
                    params![hash],
                    |row| Ok((row.get(0)?, row.get(1)?, row.get(2)?)),
                )
                .optional()?;
            let Some((token_id, name, role)) = found else {
                return Err(ControlError::Unauthorized(
                    "unknown or revoked token".into(),
                ));
            };
            tx.execute(
                "DELETE FROM console_sessions WHERE expires_at <= ?1",
                params![now],
            )?;
            tx.execute(
                "DELETE FROM console_sessions WHERE id_hash IN (SELECT id_hash FROM console_sessions
                 ORDER BY expires_at LIMIT MAX(0, (SELECT COUNT(*) FROM console_sessions) - ?1 + 1))",
                params![MAX_SESSIONS],
            )?;
            tx.execute(
                "INSERT INTO console_sessions (id_hash, token_id, created_at, expires_at)
                 VALUES (?1, ?2, ?3, ?4)",
                params![id_hash(&id), token_id, created, expires],
            )?;
            Ok(Actor {
                name,
                role: parse_role(&role)?,
            })
        }))?;
        Ok((id, actor))
    }

    /// The actor of live session `id`: not expired, its token not revoked; otherwise
    /// `Unauthorized`.
    pub fn session(&self, id: &str) -> Result<Actor, ControlError> {
        let now = self.unix_now();
        let found: Option<(String, String)> = self.counted(self.store.read(|conn| {
            Ok(conn
                .prepare_cached(
                    "SELECT t.name, t.role FROM console_sessions s JOIN tokens t ON t.id = s.token_id
                     WHERE s.id_hash = ?1 AND s.expires_at > ?2 AND t.revoked_at IS NULL",
                )?
                .query_row(params![id_hash(id), now], |row| {
                    Ok((row.get(0)?, row.get(1)?))
                })
                .optional()?)
        }))?;
        actor_found(
            found,
            "no such session, or it expired, or its token was revoked",
        )
    }

    /// Ends session `id` (sign-out). Ending one that does not exist is not an error.
    pub fn end_session(&self, id: &str) -> Result<(), ControlError> {
        self.counted(self.store.write(|tx| {
            tx.execute(
                "DELETE FROM console_sessions WHERE id_hash = ?1",
                params![id_hash(id)],
            )?;
            Ok(())
        }))
    }
}
