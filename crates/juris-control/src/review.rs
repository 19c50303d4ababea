//! Decisions on mirror candidates (issue #14 item 3): accept (the name goes into an extension
//! of the order, through the same safeguards as any added target) or dismiss (remembered).
//! Both audited. A child of `control` so it shares the store helpers.

use std::collections::HashSet;

use juris_policy::{Order, OrderKind, OrderState, Target, TargetKind};
use rusqlite::params;
use serde_json::json;

use super::{load_order, not_found, require, Actor, Control, Role};
use crate::audit::{self, NewEntry};
use crate::candidates::{CandidateMatch, CandidateOutcome};
use crate::error::ControlError;

impl Control {
    /// The (name, order) pairs a person dismissed or accepted: not shown again.
    pub fn decided_candidates(&self) -> Result<HashSet<(String, String)>, ControlError> {
        self.counted(self.store.read(|conn| {
            let mut statement = conn.prepare("SELECT name, order_id FROM candidate_decisions")?;
            let rows = statement.query_map([], |row| Ok((row.get(0)?, row.get(1)?)))?;
            Ok(rows.collect::<Result<_, _>>()?)
        }))
    }

    /// Dismisses candidate `name` for `order` (editor): remembered, audited.
    pub fn dismiss_candidate(
        &self,
        actor: &Actor,
        name: &str,
        order: &str,
        reason: &str,
    ) -> Result<CandidateOutcome, ControlError> {
        require(actor, Role::Editor)?;
        let name = candidate_name(name)?;
        let now = self.now_text();
        let row = Decision {
            name: &name,
            order,
            accepted: false,
            reason,
            evidence: None,
            extension: None,
        };
        let after = json!({"name": name, "order": order});
        let audit_seq = self.write(|tx| row.record(tx, actor, &now, after))?;
        Ok(CandidateOutcome {
            name,
            order: order.to_owned(),
            decision: "dismissed".into(),
            extension: None,
            extension_state: None,
            held: false,
            audit_seq,
        })
    }

    /// Accepts candidate `name` for `order` (editor): adds `subtree name` to `extension`, or
    /// to an extension of `order` in the store (an active one first), or to a new extension
    /// `<order>-ext` copied from the parent (the parent must be in the store then). A new
    /// extension is made active when the actor is an approver and the four-eyes rule is off,
    /// else it waits in `shadow` for an approver. The target goes through the safeguards
    /// (validation, protected list → held for review); `evidence` (the signals) is recorded
    /// with the target, the decision and the audit entry.
    pub fn accept_candidate(
        &self,
        actor: &Actor,
        name: &str,
        evidence: &CandidateMatch,
        extension: Option<&str>,
        reason: &str,
    ) -> Result<CandidateOutcome, ControlError> {
        require(actor, Role::Editor)?;
        let name = candidate_name(name)?;
        let order = evidence.order.as_str();
        let extension = match extension {
            Some(id) => {
                let row = self
                    .counted(self.store.read(|conn| load_order(conn, id)))?
                    .ok_or_else(|| not_found("order", id))?;
                if row.document.kind != OrderKind::Extension
                    || row.document.parent.as_deref() != Some(order)
                {
                    return Err(ControlError::invalid(
                        "extension",
                        format!("order {id:?} is not an extension of {order:?}"),
                    ));
                }
                id.to_owned()
            }
            None => match self.extension_of(order)? {
                Some(id) => id,
                None => self.create_extension(actor, order, reason)?,
            },
        };
        let evidence_text = serde_json::to_string(&evidence.signals)
            .map_err(|e| ControlError::Internal(e.to_string()))?;
        let target = Target {
            kind: TargetKind::Subtree,
            value: name.clone(),
            added_at: None,
            added_by: Some(actor.name.clone()),
            evidence: Some(format!(
                "mirror candidate of {} ({}): {evidence_text}",
                evidence.target, order
            )),
        };
        let why = if reason.is_empty() {
            "mirror candidate accepted"
        } else {
            reason
        };
        let report = self.add_targets(actor, &extension, vec![target], why)?;
        let held = !report.held.is_empty();
        let state = self
            .counted(self.store.read(|conn| load_order(conn, &extension)))?
            .map(|row| row.state.as_str().to_owned());
        let now = self.now_text();
        let row = Decision {
            name: &name,
            order,
            accepted: true,
            reason,
            evidence: Some(&evidence_text),
            extension: Some(&extension),
        };
        let after = json!({
            "name": name,
            "order": order,
            "extension": extension,
            "evidence": evidence,
            "held": held,
        });
        let audit_seq = self.write(|tx| row.record(tx, actor, &now, after))?;
        Ok(CandidateOutcome {
            name,
            order: order.to_owned(),
            decision: "accepted".into(),
            extension: Some(extension),
            extension_state: state,
            held,
            audit_seq,
        })
    }

    /// An extension of `order` in the store that is not lifted, an active one first.
    fn extension_of(&self, order: &str) -> Result<Option<String>, ControlError> {
        let rows: Vec<(String, String, String)> = self.counted(self.store.read(|conn| {
            let mut statement = conn.prepare(
                "SELECT id, document, state FROM orders WHERE kind = 'extension' AND state != 'lifted' ORDER BY id",
            )?;
            let rows = statement.query_map([], |row| Ok((row.get(0)?, row.get(1)?, row.get(2)?)))?;
            Ok(rows.collect::<Result<_, _>>()?)
        }))?;
        let mut found: Vec<(bool, String)> = rows
            .into_iter()
            .filter(|(_, document, _)| {
                serde_json::from_str::<Order>(document)
                    .is_ok_and(|d| d.parent.as_deref() == Some(order))
            })
            .map(|(id, _, state)| (state != "active", id))
            .collect();
        found.sort();
        Ok(found.into_iter().next().map(|(_, id)| id))
    }

    fn create_extension(
        &self,
        actor: &Actor,
        order: &str,
        reason: &str,
    ) -> Result<String, ControlError> {
        let parent = self
            .counted(self.store.read(|conn| load_order(conn, order)))?
            .ok_or_else(|| {
                ControlError::invalid(
                    "order",
                    format!(
                        "order {order:?} is not in the store: create an extension of it and pass it as `extension`"
                    ),
                )
            })?
            .document;
        let id = format!("{order}-ext");
        let activate = actor.role >= Role::Approver && !self.four_eyes;
        let document = Order {
            id: id.clone(),
            kind: OrderKind::Extension,
            targets: Vec::new(),
            state: if activate {
                OrderState::Active
            } else {
                OrderState::Shadow
            },
            parent: Some(order.to_owned()),
            overrides: Vec::new(),
            ..parent
        };
        let why = if reason.is_empty() {
            "extension for accepted mirror candidates"
        } else {
            reason
        };
        self.apply_order(actor, document, true, true, why)?;
        Ok(id)
    }
}

/// The candidate as stored: lower-case, no trailing dot, a registrable domain.
fn candidate_name(name: &str) -> Result<String, ControlError> {
    let name = name.trim().trim_end_matches('.').to_ascii_lowercase();
    match crate::candidates::registrable(&name) {
        Some((domain, _)) if domain == name => Ok(name),
        _ => Err(ControlError::invalid(
            "name",
            format!("{name:?} is not a registrable domain (a candidate is one, e.g. example.to)"),
        )),
    }
}

/// One decision row: written with its audit entry (`candidate.accept` / `candidate.dismiss`).
struct Decision<'a> {
    name: &'a str,
    order: &'a str,
    accepted: bool,
    reason: &'a str,
    evidence: Option<&'a str>,
    extension: Option<&'a str>,
}

impl Decision<'_> {
    /// Stores the decision (a later one for the same pair replaces it) and audits it with
    /// `after`; the audit entry's sequence number.
    fn record(
        &self,
        tx: &rusqlite::Transaction<'_>,
        actor: &Actor,
        now: &str,
        after: serde_json::Value,
    ) -> Result<i64, ControlError> {
        let (decision, action) = if self.accepted {
            ("accepted", "candidate.accept")
        } else {
            ("dismissed", "candidate.dismiss")
        };
        tx.execute(
            "INSERT INTO candidate_decisions (name, order_id, decision, decided_by, decided_at, reason, evidence, extension)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)
             ON CONFLICT (name, order_id) DO UPDATE SET decision = ?3, decided_by = ?4, decided_at = ?5,
                 reason = ?6, evidence = ?7, extension = ?8",
            params![self.name, self.order, decision, actor.name, now, self.reason, self.evidence, self.extension],
        )?;
        let entry = NewEntry {
            actor: &actor.name,
            action,
            object: format!("candidate:{}", self.name),
            before: None,
            after: Some(after),
            reason: self.reason,
        };
        audit::append(tx, now, entry)
    }
}
