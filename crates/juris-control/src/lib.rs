//! # juris-control: the control plane
//!
//! Orders live in an embedded SQLite store; every change is one transaction that also appends a
//! hash-chained audit entry; an authenticated HTTP API (driven by the `juris` binary's CLI, a typed
//! client over this crate's view types) drives the lifecycle; feeds and
//! RPZ zones come in, RPZ zones and transparency reports go out. The resolver reads the
//! enforceable orders and a change notification and compiles them through the same path as
//! orders from files.
//!
//! ```text
//!  juris order/import/export/audit (the binary's cli.rs) ──HTTP──▶ api.rs (axum, bearer tokens, roles)
//!  juris token create / audit verify ──offline────┐        │
//!                                                 ▼        ▼
//!            Control (control.rs, feeds.rs, export.rs): roles, lifecycle, four-eyes,
//!            safeguards (PSL, protected list → needs_review), feed diff + acks
//!                                                 │ one transaction per change
//!                                                 ▼
//!            Store (store.rs): SQLite WAL, synchronous=FULL, migrations/*.sql
//!                          orders · targets · transitions · feeds · acks · tokens · audit (audit.rs)
//!                                                 │
//!  resolver ◀── Control::enforceable_orders() + Control::subscribe() (watch<u64> revision)
//!  resolver ──▶ ServerView (explain, counters, policy generation) for /v1/explain, /v1/status, /metrics
//! ```
//!
//! ```
//! use std::sync::Arc;
//! use juris_control::{Actor, Control, ControlConfig, Role, Store, SystemClock};
//! use juris_policy::Order;
//!
//! let control = Control::new(Store::open_in_memory()?, &ControlConfig::default(), Arc::new(SystemClock))?;
//! let alice = Actor { name: "alice".into(), role: Role::Admin };
//! let order = Order::from_json(br#"{"id": "IT-1", "kind": "court_order", "authority": "Court",
//!     "jurisdictions": ["IT"], "action": "nxdomain", "state": "active",
//!     "targets": [{"type": "subtree", "value": "bad.example"},
//!                 {"type": "domain", "value": "drive.usercontent.google.com"}]}"#)?;
//! let view = control.apply_order(&alice, order, true, true, "court order received")?;
//! assert_eq!(view.order.state.as_str(), "active");
//! // The protected Google host is held for review and not handed to the resolver.
//! let enforced = control.enforceable_orders()?;
//! assert_eq!(enforced[0].targets.len(), 1);
//! assert!(control.audit_verify()?.ok);
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```
//!
//! # Limitations
//! - The resolver recompiles every enforceable order after each change (no incremental
//!   `PolicyChange` feed from the store yet).
//! - The audit chain cannot detect removal of its newest entries by itself; anchor
//!   [`audit::VerifyReport::head`] elsewhere.

#![forbid(unsafe_code)]

pub mod api;
pub mod audit;
pub mod candidates;
pub mod console;
mod control;
mod error;
pub mod export;
pub mod feeds;
pub mod rpz;
pub mod safeguards;
pub mod stats;
pub mod store;

pub use api::{
    router, ApiState, ExplainRequest, ExplainView, ServerSnapshot, ServerView, ValidationView,
};
pub use control::{
    effective_state, require, role_str, token_hash, Actor, AddReport, Clock, Control,
    ControlConfig, Deadline, FleetProof, JurisdictionInForce, OrderFilter, OrderFleet, OrderNode,
    OrderPage, OrderQuery, OrderSummary, OrderView, Overview, Role, StoreStatus, SystemClock,
    TargetStatus, TargetView, TokenView, TransitionView,
};
pub use error::ControlError;
pub use safeguards::{
    parse_published, ProtectedConfig, ProtectedList, Psl, Published, PublishedList, SharedProtected,
};
pub use store::Store;

/// Where the admin API listens by default.
pub const DEFAULT_API_LISTEN: &str = "127.0.0.1:8053";

/// Parses JSON strictly into `T`; an error names the field (`targets[1].why`, `sha256`).
pub fn parse_json<T: serde::de::DeserializeOwned>(bytes: &[u8]) -> Result<T, ControlError> {
    let mut deserializer = serde_json::Deserializer::from_slice(bytes);
    match serde_path_to_error::deserialize::<_, T>(&mut deserializer) {
        Ok(value) => Ok(value),
        Err(error) => {
            let path = error.path().to_string();
            let inner = error.into_inner();
            let message = inner.to_string();
            // serde names unknown fields in the message: `unknown field `why`, expected ...`.
            let field = match message
                .strip_prefix("unknown field `")
                .and_then(|rest| rest.split('`').next())
            {
                Some(name) if path == "." || path.is_empty() => name.to_owned(),
                Some(name) if path == name || path.ends_with(&format!(".{name}")) => path,
                Some(name) => format!("{path}.{name}"),
                None if path == "." || path.is_empty() => "body".to_owned(),
                None => path,
            };
            Err(ControlError::invalid(field, message))
        }
    }
}
