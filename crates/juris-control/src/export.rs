//! Exports: an RPZ zone per jurisdiction and the transparency report (Lumen CourtOrder fields).

use juris_policy::{Country, OrderState, TimeStatus};
use serde::Serialize;

use crate::control::{Control, OrderView, TargetStatus, PARENT_IN_FORCE};
use crate::error::ControlError;
use crate::rpz::{self, ExportOrder};

/// One row of the transparency report. Field names follow Lumen's CourtOrder notices (issuing
/// authority, jurisdictions, case reference) plus what the operator did.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct TransparencyRow {
    /// The order's id.
    pub order_id: String,
    /// The order's kind.
    pub kind: String,
    /// Who issued it.
    pub issuing_authority: String,
    /// Where it binds (codes as written, `;`-separated in CSV).
    pub jurisdictions: Vec<String>,
    /// Case reference.
    pub case_reference: String,
    /// Legal basis.
    pub legal_basis: String,
    /// Who asked for it.
    pub requested_by: Vec<String>,
    /// Targets enforced (held targets excluded).
    pub targets_count: u64,
    /// What the operator did: `blocked (nxdomain)`, `counted only (shadow)`, `suspended`,
    /// `lifted`, `expired`.
    pub action_taken: String,
    /// Current state (or `expired`).
    pub state: String,
    /// When the order was entered.
    pub date_received: String,
    /// First activation, if any.
    pub date_enforced: Option<String>,
    /// When it was lifted, if it was.
    pub date_lifted: Option<String>,
    /// `effective_from`.
    pub effective_from: Option<String>,
    /// `comply_by`.
    pub comply_by: Option<String>,
    /// `expires_at`.
    pub expires_at: Option<String>,
    /// Where to read the notice (e.g. a Lumen URL).
    pub notice_url: String,
}

impl Control {
    /// The RPZ zone of what is enforced now in `jurisdiction` (a country code, or `*` for the
    /// global orders only). Zone name: `<code>.rpz.invalid.` unless `zone` is given.
    pub fn export_rpz(
        &self,
        jurisdiction: &str,
        zone: Option<&str>,
    ) -> Result<String, ControlError> {
        let (country, global_only) = parse_jurisdiction(jurisdiction)?;
        let now = self.now();
        let mut orders = Vec::new();
        for view in self.export_orders()? {
            let order = &view.order;
            if order.state != OrderState::Active || !self.binds(order, country, global_only) {
                continue;
            }
            let Ok(valid) = self.validate(&stripped(order)) else {
                continue;
            };
            if valid.info().time_status(now) != TimeStatus::InForce {
                continue;
            }
            // An extension is in force only while its parent is.
            if view
                .parent_status
                .as_deref()
                .is_some_and(|status| status != PARENT_IN_FORCE)
            {
                continue;
            }
            orders.push(ExportOrder {
                id: order.id.clone(),
                description: format!("{}, {}", order.authority, order.reference),
                action: order.action,
                block_addresses: order.block_addresses,
                targets: view
                    .targets
                    .iter()
                    .filter(|t| t.status != TargetStatus::NeedsReview)
                    .map(|t| (t.kind, t.value.clone()))
                    .collect(),
            });
        }
        let origin = match zone {
            Some(zone) if zone.ends_with('.') => zone.to_ascii_lowercase(),
            Some(zone) => format!("{}.", zone.to_ascii_lowercase()),
            None if global_only => "global.rpz.invalid.".to_owned(),
            None => format!("{}.rpz.invalid.", jurisdiction.to_ascii_lowercase()),
        };
        let serial = self.audit_log_len()?;
        Ok(rpz::render(&origin, serial, &orders))
    }

    fn audit_log_len(&self) -> Result<u64, ControlError> {
        self.counted(
            self.store
                .read(|conn| Ok(conn.query_row("SELECT COUNT(*) FROM audit", [], |r| r.get(0))?)),
        )
    }

    /// The transparency report: every order past draft, optionally only those binding
    /// `jurisdiction`.
    pub fn transparency(
        &self,
        jurisdiction: Option<&str>,
    ) -> Result<Vec<TransparencyRow>, ControlError> {
        let filter = jurisdiction.map(parse_jurisdiction).transpose()?;
        let now = self.now();
        let mut rows = Vec::new();
        for view in self.export_orders()? {
            let order = &view.order;
            if order.state == OrderState::Draft {
                continue;
            }
            if let Some((country, global_only)) = filter {
                if !self.binds(order, country, global_only) {
                    continue;
                }
            }
            rows.push(row(&view, now));
        }
        Ok(rows)
    }
}

fn stripped(order: &juris_policy::Order) -> juris_policy::Order {
    let mut probe = order.clone();
    probe.targets.clear();
    probe
}

/// The report's row of one stored order at `now`.
pub(crate) fn row(view: &OrderView, now: jiff::Timestamp) -> TransparencyRow {
    let order = &view.order;
    let state = crate::control::effective_state(order, now);
    let action = match order.action {
        juris_policy::Action::Nxdomain => "nxdomain",
        juris_policy::Action::Nodata => "nodata",
        juris_policy::Action::Refused => "refused",
    };
    let action_taken = match state.as_str() {
        "active" => format!("blocked ({action})"),
        "shadow" => "counted only (shadow)".to_owned(),
        other => other.to_owned(),
    };
    TransparencyRow {
        order_id: order.id.clone(),
        kind: order.kind.as_str().to_owned(),
        issuing_authority: order.authority.clone(),
        jurisdictions: order.jurisdictions.clone(),
        case_reference: order.reference.clone(),
        legal_basis: order.legal_basis.clone(),
        requested_by: order.requested_by.clone(),
        targets_count: view
            .targets
            .iter()
            .filter(|t| t.status != TargetStatus::NeedsReview)
            .count() as u64,
        action_taken,
        state,
        date_received: view.created_at.clone(),
        date_enforced: view
            .transitions
            .iter()
            .find(|t| t.to == "active")
            .map(|t| t.at.clone()),
        date_lifted: view
            .transitions
            .iter()
            .rev()
            .find(|t| t.to == "lifted")
            .map(|t| t.at.clone()),
        effective_from: order.effective_from.map(|t| t.to_string()),
        comply_by: order.comply_by.map(|t| t.to_string()),
        expires_at: order.expires_at.map(|t| t.to_string()),
        notice_url: order.notice.url.clone(),
    }
}

fn parse_jurisdiction(code: &str) -> Result<(Option<Country>, bool), ControlError> {
    if code == "*" {
        return Ok((None, true));
    }
    let country: Country = code.to_ascii_uppercase().parse().map_err(|_| {
        ControlError::invalid(
            "jurisdiction",
            format!("{code:?} is not an ISO 3166-1 alpha-2 code or \"*\""),
        )
    })?;
    if !country.is_assigned() {
        return Err(ControlError::invalid(
            "jurisdiction",
            format!("{code:?} is not an assigned ISO 3166-1 alpha-2 code"),
        ));
    }
    Ok((Some(country), false))
}

/// The report as CSV (RFC 4180; list fields joined with `;`).
pub fn transparency_csv(rows: &[TransparencyRow]) -> String {
    let mut out = String::from(
        "order_id,kind,issuing_authority,jurisdictions,case_reference,legal_basis,requested_by,targets_count,action_taken,state,date_received,date_enforced,date_lifted,effective_from,comply_by,expires_at,notice_url\r\n",
    );
    for row in rows {
        let fields = [
            row.order_id.clone(),
            row.kind.clone(),
            row.issuing_authority.clone(),
            row.jurisdictions.join(";"),
            row.case_reference.clone(),
            row.legal_basis.clone(),
            row.requested_by.join(";"),
            row.targets_count.to_string(),
            row.action_taken.clone(),
            row.state.clone(),
            row.date_received.clone(),
            row.date_enforced.clone().unwrap_or_default(),
            row.date_lifted.clone().unwrap_or_default(),
            row.effective_from.clone().unwrap_or_default(),
            row.comply_by.clone().unwrap_or_default(),
            row.expires_at.clone().unwrap_or_default(),
            row.notice_url.clone(),
        ];
        let line: Vec<String> = fields.iter().map(|f| csv_field(f)).collect();
        out.push_str(&line.join(","));
        out.push_str("\r\n");
    }
    out
}

fn csv_field(text: &str) -> String {
    if text.contains([',', '"', '\r', '\n']) {
        format!("\"{}\"", text.replace('"', "\"\""))
    } else {
        text.to_owned()
    }
}
