//! `DATA_DIR/status.json`: what a running `juris serve` has in force and what it blocked,
//! written every few seconds and at shutdown; `juris status` prints it. No client addresses.

use std::fs;
use std::path::{Path, PathBuf};

use anyhow::Context;
use juris_server::{OrderCount, PolicyEngine, WithdrawnCount};
use serde::{Deserialize, Serialize};

/// The file name under the data directory.
pub const STATUS_FILE: &str = "status.json";

/// The status document.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Status {
    /// When this was written (RFC 3339).
    pub written_at: String,
    /// The server's process id.
    pub pid: u32,
    /// Whether the server was still running when this was written.
    pub running: bool,
    /// The policy in force.
    pub policy: PolicyStatus,
    /// The GeoIP database in force, if any.
    pub geoip: Option<GeoStatus>,
    /// Blocks and shadow matches per order × jurisdiction since start.
    pub counters: Vec<OrderCount>,
    /// Queries refused per withdrawn jurisdiction since start.
    pub withdrawn: Vec<WithdrawnCount>,
}

/// The policy part of [`Status`].
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct PolicyStatus {
    /// The order documents watched, if any.
    pub source: Option<PathBuf>,
    /// Generation of the policy in force (0: no orders loaded).
    pub generation: u64,
    /// When it was put in force (RFC 3339), if ever.
    pub changed_at: Option<String>,
    /// Orders in it.
    pub orders_loaded: usize,
    /// The orders: id, state, jurisdictions, enforced targets.
    pub orders: Vec<OrderSummary>,
    /// The last load error, while the files are invalid (the policy above stays in force).
    pub last_error: Option<String>,
}

/// One order in [`PolicyStatus`].
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct OrderSummary {
    /// Id.
    pub id: String,
    /// Kind.
    pub kind: String,
    /// State.
    pub state: String,
    /// Jurisdictions as written.
    pub jurisdictions: Vec<String>,
    /// Enforced targets (domain, subtree, ip, nsdname, nsip).
    pub targets: usize,
    /// The order an `extension` extends.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub parent: Option<String>,
    /// For an `extension` whose parent is not in force when this was written: why (the
    /// extension matches nothing then, whatever its own state).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub parent_not_in_force: Option<String>,
}

/// The GeoIP part of [`Status`].
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct GeoStatus {
    /// The file.
    pub path: PathBuf,
    /// Its database type.
    pub database_type: String,
    /// Its build time (Unix seconds).
    pub build_epoch: u64,
    /// The field path read.
    pub field_path: String,
}

impl Status {
    /// The status of `engine` now.
    pub fn collect(
        engine: &PolicyEngine,
        source: Option<&Path>,
        last_error: Option<&str>,
        running: bool,
    ) -> Status {
        let policy = engine.policy.current();
        let written_at = jiff::Timestamp::now();
        let orders: Vec<OrderSummary> = policy
            .orders()
            .map(|(order, stats)| OrderSummary {
                id: order.id.clone(),
                kind: order.kind.as_str().to_owned(),
                state: order.state.as_str().to_owned(),
                jurisdictions: order.jurisdictions.clone(),
                targets: stats.targets,
                parent: order.parent.clone(),
                parent_not_in_force: policy
                    .parent_status(order, written_at)
                    .err()
                    .map(|why| why.to_string()),
            })
            .collect();
        Status {
            written_at: written_at.to_string(),
            pid: std::process::id(),
            running,
            policy: PolicyStatus {
                source: source.map(Path::to_owned),
                generation: policy.generation(),
                changed_at: engine.policy.changed_at().and_then(|at| {
                    jiff::Timestamp::from_second(i64::try_from(at).ok()?)
                        .ok()
                        .map(|t| t.to_string())
                }),
                orders_loaded: orders.len(),
                orders,
                last_error: last_error.map(str::to_owned),
            },
            geoip: engine.classifier.database().map(|db| {
                let info = db.info();
                GeoStatus {
                    path: info.path.clone(),
                    database_type: info.database_type.clone(),
                    build_epoch: info.build_epoch,
                    field_path: info.field_path.clone(),
                }
            }),
            counters: engine.counters.snapshot(),
            withdrawn: engine.counters.withdrawn_snapshot(),
        }
    }

    /// Writes `DATA_DIR/status.json` atomically (temporary file, then rename).
    pub fn write(&self, data_dir: &Path) -> anyhow::Result<()> {
        let path = data_dir.join(STATUS_FILE);
        let temporary = data_dir.join(format!(".{STATUS_FILE}.tmp"));
        let text = serde_json::to_string_pretty(self)?;
        fs::write(&temporary, text)
            .with_context(|| format!("cannot write {}", temporary.display()))?;
        fs::rename(&temporary, &path)
            .with_context(|| format!("cannot rename to {}", path.display()))?;
        Ok(())
    }

    /// Reads `DATA_DIR/status.json`.
    pub fn read(data_dir: &Path) -> anyhow::Result<Status> {
        let path = data_dir.join(STATUS_FILE);
        let text = fs::read_to_string(&path).with_context(|| {
            format!(
                "cannot read {} (is juris serve running with this --data-dir?)",
                path.display()
            )
        })?;
        serde_json::from_str(&text)
            .with_context(|| format!("{}: not a status file", path.display()))
    }

    /// The human-readable form `juris status` prints.
    pub fn render(&self) -> String {
        use std::fmt::Write;
        let mut out = String::new();
        let p = &self.policy;
        let _ = writeln!(
            out,
            "juris (pid {}{}), status written {}",
            self.pid,
            if self.running { "" } else { ", stopped" },
            self.written_at
        );
        let _ = writeln!(
            out,
            "policy: generation {}, {} order(s), last change {}, source {}",
            p.generation,
            p.orders_loaded,
            p.changed_at.as_deref().unwrap_or("never"),
            p.source
                .as_ref()
                .map_or_else(|| "none".to_owned(), |s| s.display().to_string())
        );
        if let Some(error) = &p.last_error {
            let _ = writeln!(
                out,
                "  ERROR: the order files are invalid, the policy above stays in force: {error}"
            );
        }
        for order in &p.orders {
            let _ = writeln!(
                out,
                "  {} {} {} [{}] {} target(s)",
                order.id,
                order.kind,
                order.state,
                order.jurisdictions.join(","),
                order.targets
            );
            if let Some(parent) = &order.parent {
                let _ = writeln!(
                    out,
                    "    extends {parent}: {}",
                    order.parent_not_in_force.as_deref().map_or_else(
                        || "in force with it".to_owned(),
                        |why| format!("NOT in force: {why}")
                    )
                );
            }
        }
        match &self.geoip {
            Some(geo) => {
                let _ = writeln!(
                    out,
                    "geoip: {} ({}, field {})",
                    geo.path.display(),
                    geo.database_type,
                    geo.field_path
                );
            }
            None => {
                let _ = writeln!(out, "geoip: none (only listener pins place clients)");
            }
        }
        let _ = writeln!(out, "counters (order × jurisdiction: blocked, shadow):");
        if self.counters.is_empty() {
            let _ = writeln!(out, "  none yet");
        }
        for row in &self.counters {
            let _ = writeln!(
                out,
                "  {} {}: blocked {}, shadow {}",
                row.order, row.jurisdiction, row.blocked, row.shadow
            );
        }
        for row in &self.withdrawn {
            let _ = writeln!(
                out,
                "  withdrawn {}: refused {}",
                row.jurisdiction, row.refused
            );
        }
        out
    }
}
