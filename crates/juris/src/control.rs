//! The control plane inside `juris serve`: the store in the data directory, the admin API on
//! `control.api_listen`, store changes recompiled through the same loader actor as file
//! orders, and the live server behind the API's explain, status and metrics.
//!
//! ```text
//!  DATA_DIR/control.sqlite3 ─► Control ──revision (watch)──► store watcher task
//!                                 ▲                               │ LoaderHandle::reload
//!  admin API (axum, server runtime) ┘                              ▼
//!       └─ ServerView = LiveServer: PolicyHandle, classifier, counters ◄── PolicyHandle::publish
//! ```

use std::net::SocketAddr;
use std::sync::{Arc, Mutex, PoisonError};

use anyhow::Context;
use juris_control::api::{BlockCount, QueryCount};
use juris_control::{ApiState, Control, ControlError, ExplainRequest, ServerSnapshot, ServerView};
use juris_server::{PolicyEngine, ServerStats};
use serde_json::json;
use tracing::info;

use crate::config::Settings;
use crate::orders::LoaderHandle;

/// Opens the store in the data directory.
pub fn open(settings: &Settings) -> anyhow::Result<Arc<Control>> {
    let store = juris_control::Store::open(&settings.data_dir).with_context(|| {
        format!(
            "control store in {}: cannot open",
            settings.data_dir.display()
        )
    })?;
    let control = Control::new(
        store,
        &settings.control,
        Arc::new(juris_control::SystemClock),
    )
    .map_err(|e| anyhow::anyhow!("control: {e}"))?;
    Ok(Arc::new(control))
}

/// Wakes the loader as soon as the store changes: a task on the server's runtime (it ends
/// with the runtime), no thread or runtime of its own.
pub fn watch_store(control: &Control, loader: LoaderHandle, runtime: &tokio::runtime::Handle) {
    let mut changes = control.subscribe();
    runtime.spawn(async move {
        while changes.changed().await.is_ok() {
            changes.mark_unchanged();
            loader.reload("control store changed");
        }
    });
}

/// The last server counters, refreshed by [`refresh`].
pub type StatsCell = Arc<Mutex<ServerStats>>;

/// The resolver as the API sees it.
pub struct LiveServer {
    engine: PolicyEngine,
    stats: StatsCell,
    policy_error: Arc<dyn Fn() -> Option<String> + Send + Sync>,
}

impl LiveServer {
    /// A view of `engine`, with counters from `stats` and the loader's last error.
    pub fn new(
        engine: PolicyEngine,
        stats: StatsCell,
        policy_error: Arc<dyn Fn() -> Option<String> + Send + Sync>,
    ) -> Self {
        Self {
            engine,
            stats,
            policy_error,
        }
    }
}

const RCODES: [&str; 16] = [
    "NOERROR",
    "FORMERR",
    "SERVFAIL",
    "NXDOMAIN",
    "NOTIMP",
    "REFUSED",
    "YXDOMAIN",
    "YXRRSET",
    "NXRRSET",
    "NOTAUTH",
    "NOTZONE",
    "DSOTYPENI",
    "RCODE12",
    "RCODE13",
    "RCODE14",
    "RCODE15",
];

impl ServerView for LiveServer {
    fn explain(&self, request: &ExplainRequest) -> Result<serde_json::Value, ControlError> {
        let invalid = |field: &str, reason: String| ControlError::invalid(field, reason);
        let (country_code, decided_by) = match (&request.country, &request.client) {
            (Some(code), _) => {
                let code = crate::config::parse_jurisdiction(code).ok_or_else(|| {
                    invalid(
                        "country",
                        format!("{code:?} is not an ISO 3166-1 alpha-2 code"),
                    )
                })?;
                (Some(code), "given".to_owned())
            }
            (None, Some(client)) => {
                let address: std::net::IpAddr = client
                    .parse()
                    .map_err(|_| invalid("client", format!("{client:?} is not an IP address")))?;
                let jurisdiction = self.engine.classifier.classify(address, None, None);
                (jurisdiction.country, jurisdiction.decided_by.to_string())
            }
            (None, None) => (None, "unknown".to_owned()),
        };
        let country = juris_server::policy::policy_country(country_code);
        let policy = self.engine.policy.current();
        let now = jiff::Timestamp::now();
        let explanation = match (&request.name, &request.address) {
            (Some(name), _) => {
                let wire = juris_policy::name_to_wire(name)
                    .map_err(|e| invalid("name", format!("{name:?}: {e}")))?;
                policy.explain_name(&wire, country, now)
            }
            (None, Some(address)) => {
                let address: std::net::IpAddr = address
                    .parse()
                    .map_err(|_| invalid("address", format!("{address:?} is not an IP address")))?;
                policy.explain_address(address, country, now)
            }
            (None, None) => return Err(invalid("name", "give a name or an address".into())),
        };
        let fired = explanation.verdict.block().map(|block| {
            let order = block.order();
            json!({
                "order": order.id, "authority": order.authority, "reference": order.reference,
                "action": format!("{:?}", block.action()).to_ascii_lowercase(),
                "ede": block.ede_code(), "target": block.target().to_string(),
            })
        });
        let matches: Vec<serde_json::Value> = explanation
            .matches
            .iter()
            .map(|m| {
                json!({
                    "order": m.matched.order.id,
                    "target": m.matched.target.to_string(),
                    "applies": m.status.applies(),
                    "status": m.status.to_string(),
                })
            })
            .collect();
        Ok(json!({
            "name": request.name,
            "address": request.address,
            "jurisdiction": country.map(|c| c.to_string()),
            "decided_by": decided_by,
            "policy_generation": policy.generation(),
            "verdict": if explanation.verdict.is_block() { "block" } else { "allow" },
            "fired": fired,
            "matches": matches,
        }))
    }

    fn snapshot(&self) -> ServerSnapshot {
        let stats = self
            .stats
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone();
        let mut queries = Vec::new();
        // The server counts queries per transport and responses per RCODE, not the cross
        // product: each is reported with the other label set to "all".
        for (transport, count) in [
            ("udp", stats.udp_queries),
            ("tcp", stats.tcp_queries),
            ("dot", stats.dot_queries),
            ("doh", stats.doh_queries),
            ("doq", stats.doq_queries),
        ] {
            queries.push(QueryCount {
                transport: transport.into(),
                rcode: "all".into(),
                count,
            });
        }
        for (rcode, count) in RCODES.iter().zip(stats.responses_by_rcode) {
            if count > 0 {
                queries.push(QueryCount {
                    transport: "all".into(),
                    rcode: (*rcode).into(),
                    count,
                });
            }
        }
        let counts = self.engine.counters.snapshot();
        let per = |pick: fn(&juris_server::OrderCount) -> u64| {
            counts
                .iter()
                .filter(|c| pick(c) > 0)
                .map(|c| BlockCount {
                    order: c.order.clone(),
                    jurisdiction: c.jurisdiction.clone(),
                    count: pick(c),
                })
                .collect()
        };
        ServerSnapshot {
            policy_generation: self.engine.policy.load().generation(),
            policy_error: (self.policy_error)(),
            queries,
            cache_hits: stats.cache_hits,
            cache_misses: stats.cache_misses,
            blocks: per(|c| c.blocked),
            shadow_matches: per(|c| c.shadow),
        }
    }
}

/// Binds the admin API and serves it on `runtime` until `shutdown` fires.
pub fn start_api(
    address: SocketAddr,
    state: ApiState,
    runtime: &tokio::runtime::Handle,
    shutdown: tokio::sync::oneshot::Receiver<()>,
) -> anyhow::Result<SocketAddr> {
    let listener = std::net::TcpListener::bind(address)
        .with_context(|| format!("control.api_listen: cannot listen on {address}"))?;
    listener
        .set_nonblocking(true)
        .context("control.api_listen: non-blocking socket")?;
    let bound = listener.local_addr().context("control.api_listen")?;
    let _entered = runtime.enter();
    let listener = tokio::net::TcpListener::from_std(listener).context("control.api_listen")?;
    runtime.spawn(async move {
        let stop = async move {
            let _ = shutdown.await;
        };
        if let Err(error) = juris_control::api::serve(listener, state, stop).await {
            tracing::error!(%error, "admin API stopped");
        }
    });
    info!(addr = %bound, "admin API listening");
    Ok(bound)
}
