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

use std::net::{IpAddr, SocketAddr};
use std::sync::{Arc, Mutex, PoisonError};

use anyhow::Context;
use juris_control::api::{
    BlockCount, CacheRemoved, CacheStats, FiredView, MatchView, QueryCount, Readiness,
    ReadinessCheck,
};
use juris_control::{
    Control, ControlError, ExplainRequest, ExplainView, ServerSnapshot, ServerView,
};

use juris_resolver::cache::FlushScope;
use juris_resolver::clock::SharedClock;
use juris_server::codes::{rtype, Rcode};
use juris_server::error_map;
use juris_server::query::ClientSubnet;
use juris_server::{
    Arrival, Decision, ExplainQuery, Explanation, Pipeline, PolicyEngine, ServerStats, Transport,
};
use tracing::info;

use crate::config::Settings;
use crate::orders::LoaderHandle;

/// Opens the store in the data directory; its timestamps come from `clock`.
pub fn open(settings: &Settings, clock: SharedClock) -> anyhow::Result<Arc<Control>> {
    let store = juris_control::Store::open(&settings.data_dir).with_context(|| {
        format!(
            "control store in {}: cannot open",
            settings.data_dir.display()
        )
    })?;
    Ok(Arc::new(Control::with_protected(
        store,
        &settings.control,
        settings.protected.clone(),
        clock,
    )))
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

/// Where `juris serve` is in its life, for `/readyz`: starting (until every listener is bound
/// and root is given up), serving, draining (shutdown has begun).
#[derive(Debug, Default)]
pub struct Phase(std::sync::atomic::AtomicU8);

impl Phase {
    const STARTING: u8 = 0;
    const SERVING: u8 = 1;
    const DRAINING: u8 = 2;

    /// Startup is done.
    pub fn serving(&self) {
        self.0
            .store(Self::SERVING, std::sync::atomic::Ordering::Release);
    }

    /// Shutdown has begun.
    pub fn draining(&self) {
        self.0
            .store(Self::DRAINING, std::sync::atomic::Ordering::Release);
    }

    fn describe(&self) -> (bool, &'static str) {
        match self.0.load(std::sync::atomic::Ordering::Acquire) {
            Self::STARTING => (false, "starting"),
            Self::SERVING => (true, "serving"),
            _ => (false, "draining: shutting down"),
        }
    }
}

/// The resolver as the API sees it.
pub struct LiveServer {
    pipeline: Arc<Pipeline>,
    stats: StatsCell,
    policy_error: Arc<dyn Fn() -> Option<String> + Send + Sync>,
    candidates: Arc<crate::candidates::Candidates>,
    /// The fleet state (publishing or following), when configured.
    fleet: Option<FleetStatusFn>,
    /// On a fleet edge: whether a transfer or snapshot is in force (`/readyz`).
    fleet_ready: Option<FleetReadyFn>,
    phase: Arc<Phase>,
}

/// Whether a fleet edge enforces its primary's orders yet, and why (`/readyz`).
pub type FleetReadyFn = Arc<dyn Fn() -> (bool, String) + Send + Sync>;

/// Reads the fleet state as JSON for `/v1/status` and `/metrics`.
pub type FleetStatusFn = Arc<dyn Fn() -> serde_json::Value + Send + Sync>;

impl LiveServer {
    /// A view of the running `pipeline` (its policy, classifier, listeners, clock and cache),
    /// with counters from `stats` and the loader's last error.
    pub fn new(
        pipeline: Arc<Pipeline>,
        stats: StatsCell,
        policy_error: Arc<dyn Fn() -> Option<String> + Send + Sync>,
        candidates: Arc<crate::candidates::Candidates>,
        phase: Arc<Phase>,
    ) -> Self {
        Self {
            pipeline,
            stats,
            policy_error,
            candidates,
            fleet: None,
            fleet_ready: None,
            phase,
        }
    }

    /// The same view, with a fleet edge's readiness in `/readyz` (check `fleet`: not ready
    /// until the first transfer or snapshot is in force).
    pub fn with_fleet_ready(mut self, ready: FleetReadyFn) -> Self {
        self.fleet_ready = Some(ready);
        self
    }

    /// The same view, with the fleet state in `/v1/status` and `/metrics`.
    pub fn with_fleet(mut self, fleet: FleetStatusFn) -> Self {
        self.fleet = Some(fleet);
        self
    }

    fn engine(&self) -> &PolicyEngine {
        self.pipeline.engine()
    }
}

impl ServerView for LiveServer {
    fn candidates(&self) -> Result<juris_control::candidates::CandidateList, ControlError> {
        Ok(self.candidates.list())
    }

    /// Through [`Pipeline::explain`]: the access list, the listener pin, trusted ECS, GeoIP,
    /// `policy.withdraw`, the policy and the cache, at the server clock's time.
    fn explain(&self, request: &ExplainRequest) -> Result<ExplainView, ControlError> {
        let invalid = |field: &str, reason: String| ControlError::invalid(field, reason);
        let arrival = match (&request.country, &request.listener) {
            (Some(code), _) => {
                Arrival::Pinned(crate::config::parse_jurisdiction(code).ok_or_else(|| {
                    invalid(
                        "country",
                        format!("{code:?} is not an ISO 3166-1 alpha-2 code"),
                    )
                })?)
            }
            (None, Some(listener)) => {
                let addr: SocketAddr = listener.parse().map_err(|_| {
                    invalid("listener", format!("{listener:?} is not an ADDR:PORT"))
                })?;
                Arrival::Listener(self.pipeline.listener_index(addr).ok_or_else(|| {
                    invalid("listener", format!("{addr} is not a configured listener"))
                })?)
            }
            (None, None) => Arrival::Unpinned,
        };
        // Without a client address the query comes from loopback, which the default access
        // list allows and no GeoIP database places: the pin (or nothing) decides.
        let client: IpAddr = match &request.client {
            Some(client) => client
                .parse()
                .map_err(|_| invalid("client", format!("{client:?} is not an IP address")))?,
            None => IpAddr::from([127, 0, 0, 1]),
        };
        let client = SocketAddr::new(client, 53_000);
        let ecs =
            match &request.ecs {
                Some(text) => Some(crate::config::parse_prefix(text).ok_or_else(|| {
                    invalid("ecs", format!("{text:?} is not an address or prefix"))
                })?),
                None => None,
            };
        let mut resolve_error = None;
        let explanation = match (&request.name, &request.address) {
            (Some(name), _) => {
                let qtype = match &request.qtype {
                    Some(text) => rtype::parse(text).ok_or_else(|| {
                        invalid("qtype", format!("{text:?} is not a record type"))
                    })?,
                    None => rtype::A,
                };
                let ecs = ecs.map(|net| (net.addr(), net.prefix_len()));
                let packet = self
                    .pipeline
                    .query_packet(name, qtype, ecs, false)
                    .ok_or_else(|| invalid("name", format!("{name:?} is not a domain name")))?;
                if request.resolve == Some(true) {
                    // On a blocking thread of the API's runtime: the resolution runs there,
                    // through the server's own resolver and cache.
                    resolve_error = tokio::runtime::Handle::try_current()
                        .map_err(|e| e.to_string())
                        .and_then(|runtime| {
                            runtime.block_on(self.pipeline.resolve_for_explain(&packet))
                        })
                        .err();
                }
                self.pipeline.explain(&ExplainQuery {
                    packet: &packet,
                    client,
                    transport: Transport::Udp,
                    arrival,
                })
            }
            (None, Some(address)) => {
                let address: IpAddr = address
                    .parse()
                    .map_err(|_| invalid("address", format!("{address:?} is not an IP address")))?;
                let subnet = ecs.map(|net| ClientSubnet {
                    family: if net.addr().is_ipv4() { 1 } else { 2 },
                    source_prefix: net.prefix_len(),
                    scope_prefix: 0,
                    address: net.trunc().addr(),
                });
                self.pipeline
                    .explain_address(client, arrival, subnet, address)
            }
            (None, None) => return Err(invalid("name", "give a name or an address".into())),
        };
        let mut view = explain_view(request, &explanation);
        view.resolve_error = resolve_error;
        Ok(view)
    }

    /// Through [`Pipeline::flush_cache`]: the answer cache, remembered failures, delegation
    /// data, and every UDP worker's hot answers.
    fn flush_cache(
        &self,
        name: Option<&str>,
        subtree: bool,
    ) -> Result<(Option<String>, CacheRemoved), ControlError> {
        let wire = match name {
            None => None,
            Some(text) => Some(flush_name(text)?),
        };
        let scope = match (&wire, subtree) {
            (None, _) => FlushScope::All,
            (Some(wire), false) => FlushScope::Name(wire),
            (Some(wire), true) => FlushScope::Subtree(wire),
        };
        let report = self.pipeline.flush_cache(scope);
        let canonical = name.map(|text| {
            let lower = text.trim_end_matches('.').to_ascii_lowercase();
            format!("{lower}.")
        });
        let count = |n: usize| n as u64;
        info!(
            name = canonical.as_deref().unwrap_or("*"),
            subtree,
            answers = report.answers,
            "cache flushed"
        );
        Ok((
            canonical,
            CacheRemoved {
                answers: count(report.answers),
                delegations: count(report.delegations),
                addresses: count(report.addresses),
                failures: count(report.failures),
            },
        ))
    }

    /// The shared cache's size, the server's hit and miss counters (as of the last refresh,
    /// once a second), and the flush generation (one per flush).
    fn cache_stats(&self) -> Result<CacheStats, ControlError> {
        let stats = self
            .stats
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone();
        let cache = self.pipeline.cache();
        Ok(CacheStats {
            entries: cache.len() as u64,
            bytes: cache.weight(),
            max_bytes: cache.config().max_bytes,
            hits: stats.cache_hits + stats.cache_hits_hot,
            hits_hot: stats.cache_hits_hot,
            misses: stats.cache_misses,
            flushes: cache.generation(),
        })
    }

    /// Listeners bound and serving (not starting, not draining), and a policy in force (the
    /// first load must succeed for `serve` to start; a later failed load keeps the last good
    /// policy, which is reported but does not make the server unready).
    fn readiness(&self) -> Readiness {
        let (serving, phase) = self.phase.describe();
        let generation = self.engine().policy.load().generation();
        let policy = match (self.policy_error)() {
            Some(error) => {
                format!("generation {generation} in force; the last load failed: {error}")
            }
            None => format!("generation {generation} in force"),
        };
        let mut checks = vec![
            ReadinessCheck {
                name: "listeners".into(),
                ok: serving,
                detail: phase.into(),
            },
            ReadinessCheck {
                name: "policy".into(),
                ok: true,
                detail: policy,
            },
        ];
        if let Some(ready) = &self.fleet_ready {
            let (ok, detail) = ready();
            checks.push(ReadinessCheck {
                name: "fleet".into(),
                ok,
                detail,
            });
        }
        Readiness {
            ready: checks.iter().all(|c| c.ok),
            checks,
        }
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
        for (rcode, count) in (0u16..).zip(stats.responses_by_rcode) {
            if count > 0 {
                queries.push(QueryCount {
                    transport: "all".into(),
                    rcode: Rcode(rcode).to_string(),
                    count,
                });
            }
        }
        let mut answers = Vec::new();
        for ((_, transport), per_rcode) in juris_server::counters::TRANSPORT_LABELS
            .iter()
            .zip(&stats.responses_by_transport)
        {
            for (rcode, &count) in (0u16..).zip(per_rcode) {
                if count > 0 {
                    answers.push(QueryCount {
                        transport: (*transport).into(),
                        rcode: Rcode(rcode).to_string(),
                        count,
                    });
                }
            }
        }
        let latency = [("hit", &stats.hit_latency), ("miss", &stats.miss_latency)]
            .into_iter()
            .map(|(cache, histogram)| latency_view(cache, histogram))
            .collect();
        let kernel_drop = self.pipeline.kernel_drop().stats();
        let counts = self.engine().counters.snapshot();
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
            policy_generation: self.engine().policy.load().generation(),
            policy_error: (self.policy_error)(),
            queries,
            cache_hits: stats.cache_hits,
            cache_misses: stats.cache_misses,
            blocks: per(|c| c.blocked),
            shadow_matches: per(|c| c.shadow),
            fleet: self.fleet.as_ref().map(|status| status()),
            resolver_limit_hits: self
                .pipeline
                .resolver_limit_hits()
                .into_iter()
                .map(|(limit, count)| juris_control::api::LimitHitCount {
                    limit: limit.label().into(),
                    count,
                })
                .collect(),
            upstream_tcp: juris_resolver::upstream_tcp_counters()
                .into_iter()
                .map(|(event, count)| juris_control::api::LimitHitCount {
                    limit: event.into(),
                    count,
                })
                .collect(),
            answers,
            latency,
            telemetry_dropped: self
                .pipeline
                .answer_drops()
                .into_iter()
                .map(|(consumer, count)| juris_control::api::LimitHitCount {
                    limit: consumer.into(),
                    count,
                })
                .collect(),
            kernel_drop_prefixes: kernel_drop.listed,
            kernel_drop: [
                ("added", kernel_drop.added),
                ("refused", kernel_drop.refused),
            ]
            .into_iter()
            .map(|(event, count)| juris_control::api::LimitHitCount {
                limit: event.into(),
                count,
            })
            .collect(),
            rate_limited: ["dropped", "slipped"]
                .into_iter()
                .zip(stats.rate_limited)
                .flat_map(|(action, row)| {
                    juris_server::RateClass::ALL
                        .into_iter()
                        .zip(row)
                        .map(move |(class, count)| juris_control::api::RateLimitedCount {
                            class: class.label().into(),
                            action: action.into(),
                            count,
                        })
                })
                .collect(),
        }
    }
}

/// A latency histogram as `/metrics` shows it: cumulative buckets, seconds.
fn latency_view(
    cache: &str,
    histogram: &juris_server::counters::LatencyStats,
) -> juris_control::api::LatencyHistogram {
    let mut cumulative = 0;
    let buckets = (0..juris_server::counters::LATENCY_BUCKETS)
        .filter_map(|i| {
            cumulative += histogram.buckets[i];
            juris_server::counters::latency_bucket_bound(i).map(|bound| (bound, cumulative))
        })
        .collect();
    juris_control::api::LatencyHistogram {
        cache: cache.into(),
        buckets,
        sum_seconds: histogram.sum_nanos as f64 / 1e9,
        count: histogram.count(),
    }
}

/// The lower-cased wire form of a name to flush (`example.com`, `example.com.`, `.` for the
/// root); errors name the field.
fn flush_name(text: &str) -> Result<Vec<u8>, ControlError> {
    let problem = |reason: &str| ControlError::invalid("name", format!("{text:?}: {reason}"));
    if text.is_empty() || !text.bytes().all(|b| b.is_ascii_graphic()) {
        return Err(problem(
            "a domain name is printable ASCII without spaces (`.` for the root)",
        ));
    }
    let mut wire = juris_server::block::name_to_wire(text).ok_or_else(|| {
        problem("not a domain name (empty label, label over 63 or name over 255 bytes)")
    })?;
    // Length octets are below b'A': lower-casing leaves them alone.
    wire.make_ascii_lowercase();
    Ok(wire)
}

/// The API's view of an explanation (field names are the API's contract).
fn explain_view(request: &ExplainRequest, explanation: &Explanation) -> ExplainView {
    let decoded = explanation
        .response
        .as_deref()
        .and_then(|bytes| crate::decode::decode(bytes).ok());
    let fired = explanation.fired().map(|fired| {
        let order = &fired.order;
        FiredView {
            order: order.id.clone(),
            authority: order.authority.clone(),
            reference: order.reference.clone(),
            action: order.action.as_str().to_owned(),
            ede: error_map::for_meaning(order.meaning()),
            target: fired.target.to_string(),
        }
    });
    ExplainView {
        name: request.name.clone(),
        address: request.address.clone(),
        jurisdiction: explanation.jurisdiction.country.map(|c| c.to_string()),
        decided_by: explanation.jurisdiction.decided_by.to_string(),
        policy_generation: explanation.policy_generation,
        verdict: explanation.decision.as_str().to_owned(),
        fired,
        matches: explanation
            .matches
            .iter()
            .map(|m| MatchView {
                order: m.matched.order.id.clone(),
                target: m.matched.target.to_string(),
                applies: m.status.applies(),
                status: m.status.to_string(),
            })
            .collect(),
        trigger: match &explanation.decision {
            Decision::Blocked { trigger, .. } => {
                Some(crate::explain::trigger_name(*trigger).to_owned())
            }
            _ => None,
        },
        rcode: decoded.as_ref().map(|decoded| decoded.rcode.clone()),
        response: decoded
            .map(|decoded| decoded.render().lines().map(str::to_owned).collect())
            .unwrap_or_default(),
        now: explanation.now,
        validation: explanation
            .validation
            .as_ref()
            .map(crate::explain::validation_view),
        checks: crate::explain::check_views(&explanation.checks),
        resolve_error: None,
    }
}

/// Binds `address` and serves `router` on `runtime` until `shutdown` fires: the admin API
/// (`juris_control::api::router`, key `control.api_listen`) or the public transparency page
/// (`juris_control::console::public_router`, key `control.public_listen`). With `https`
/// (`[control] tls_cert`) over TLS: the public listener's acceptor when `key` is
/// `control.public_listen` (no client certificates), else the admin API's.
pub fn start_http(
    address: SocketAddr,
    key: &'static str,
    router: axum::Router,
    https: Option<&Arc<crate::api_tls::HttpsConfig>>,
    runtime: &tokio::runtime::Handle,
    shutdown: tokio::sync::oneshot::Receiver<()>,
) -> anyhow::Result<SocketAddr> {
    let listener = std::net::TcpListener::bind(address)
        .with_context(|| format!("{key}: cannot listen on {address}"))?;
    listener
        .set_nonblocking(true)
        .with_context(|| format!("{key}: non-blocking socket"))?;
    let bound = listener.local_addr().context(key)?;
    let _entered = runtime.enter();
    let listener = tokio::net::TcpListener::from_std(listener).context(key)?;
    let stop = async move {
        let _ = shutdown.await;
    };
    let served = match https {
        Some(https) => {
            let public = key == PUBLIC_KEY;
            let listener =
                crate::api_tls::TlsListener::spawn(listener, bound, Arc::clone(https), public);
            let router = juris_control::console::served_over_tls(router);
            runtime.spawn(juris_control::api::serve_router(listener, router, stop))
        }
        None => runtime.spawn(juris_control::api::serve_router(listener, router, stop)),
    };
    runtime.spawn(async move {
        match served.await {
            Ok(Ok(())) => {}
            Ok(Err(error)) => tracing::error!(%error, key, "HTTP listener stopped"),
            Err(error) => tracing::error!(%error, key, "HTTP listener failed"),
        }
    });
    info!(addr = %bound, key, https = https.is_some(), "HTTP listener started");
    Ok(bound)
}

/// Moves the resolver's in-memory counters (blocked answers and shadow matches per order ×
/// jurisdiction, since start) into the store's per-day counters: each [`DailyFlusher::flush`]
/// adds what was counted since the previous one to today's (UTC) row
/// (`juris_control::stats`). Called every `control.stats_flush_seconds` by the status thread
/// and once more at shutdown; never on the answer path.
pub struct DailyFlusher {
    /// How often to flush.
    pub interval: std::time::Duration,
    control: Arc<Control>,
    counters: Arc<juris_server::OrderCounters>,
    /// What the store has been given so far: (order, jurisdiction) → [blocked, shadow].
    flushed: Mutex<std::collections::HashMap<(String, String), [u64; 2]>>,
}

impl DailyFlusher {
    /// A flusher of `counters` into `control`'s store every `interval`.
    pub fn new(
        control: Arc<Control>,
        counters: Arc<juris_server::OrderCounters>,
        interval: std::time::Duration,
    ) -> Self {
        DailyFlusher {
            interval,
            control,
            counters,
            flushed: Mutex::default(),
        }
    }

    /// Adds what was counted since the last successful flush to today's counters; returns
    /// how many (order, jurisdiction) rows changed. On a store error nothing is marked as
    /// flushed: the next flush carries it.
    pub fn flush(&self) -> Result<usize, ControlError> {
        let mut flushed = self.flushed.lock().unwrap_or_else(PoisonError::into_inner);
        let mut deltas = Vec::new();
        let mut now = Vec::new();
        for row in self.counters.snapshot() {
            let key = (row.order, row.jurisdiction);
            let before = flushed.get(&key).copied().unwrap_or_default();
            let blocked = row.blocked.saturating_sub(before[0]);
            let shadow = row.shadow.saturating_sub(before[1]);
            if blocked > 0 || shadow > 0 {
                deltas.push(juris_control::stats::CountDelta {
                    order: key.0.clone(),
                    jurisdiction: key.1.clone(),
                    blocked,
                    shadow,
                });
                now.push((key, [row.blocked, row.shadow]));
            }
        }
        if deltas.is_empty() {
            return Ok(0);
        }
        self.control.record_daily(&deltas)?;
        flushed.extend(now);
        Ok(deltas.len())
    }

    /// [`DailyFlusher::flush`], a failure logged.
    pub fn flush_logged(&self) {
        if let Err(error) = self.flush() {
            tracing::warn!(%error, "per-day counters not flushed to the store (kept for the next flush)");
        }
    }
}
/// The public transparency listener's key.
pub const PUBLIC_KEY: &str = "control.public_listen";

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used, reason = "test code")]
mod tests {
    use super::*;
    use juris_resolver::cache::{AnswerCache, CacheConfig};
    use juris_resolver::clock::{ManualClock, SharedClock};
    use juris_resolver::Resolver;
    use juris_testkit::mmdb::{MmdbWriter, Shape};

    use crate::config::RawConfig;
    use crate::serve::{policy_engine_with_store, server_config};

    #[test]
    fn daily_flusher_adds_only_what_was_counted_since_the_last_flush() {
        let clock: SharedClock = Arc::new(ManualClock::new(IN_2100));
        let control = Arc::new(
            Control::new(
                juris_control::Store::open_in_memory().unwrap(),
                &juris_control::ControlConfig::default(),
                clock,
            )
            .unwrap(),
        );
        let counters = Arc::new(juris_server::OrderCounters::default());
        let flusher = DailyFlusher::new(
            Arc::clone(&control),
            Arc::clone(&counters),
            std::time::Duration::from_secs(60),
        );
        let it = Some("IT".parse().unwrap());
        counters.blocked("IT-1", it);
        counters.blocked("IT-1", it);
        counters.shadow("IT-2", None);
        assert_eq!(flusher.flush().unwrap(), 2);
        assert_eq!(flusher.flush().unwrap(), 0, "nothing new: nothing written");
        counters.blocked("IT-1", it);
        assert_eq!(flusher.flush().unwrap(), 1);
        let stats = control.order_stats("IT-1", 1).unwrap();
        assert_eq!(stats.to, "2100-01-01");
        assert_eq!(stats.blocked, 3, "{stats:?}");
        assert_eq!(stats.counts[0].jurisdiction, "IT");
        let shadow = control.order_stats("IT-2", 1).unwrap();
        assert_eq!((shadow.blocked, shadow.shadow), (0, 1));
        assert_eq!(shadow.counts[0].jurisdiction, "unknown");
    }

    /// 2100-01-01T00:00:00Z: the pipeline clock of these tests, far from the wall clock.
    const IN_2100: u64 = 4_102_444_800;

    /// An order effective only from 2099 (not yet, by the wall clock), in Italy and France.
    const ORDER: &str = r#"{
        "id": "IT-2099-1", "kind": "court_order", "authority": "Tribunale di Milano",
        "reference": "RG 1/2099", "jurisdictions": ["IT", "FR"], "action": "nxdomain",
        "state": "active", "effective_from": "2099-01-01T00:00:00Z",
        "targets": [{"type": "subtree", "value": "blocked.example"}]
    }"#;

    /// A live server on `policy` settings: listener 127.0.0.1:5301 pinned to IT, a GeoIP
    /// database placing 198.51.100.0/24 in Italy, the forwarder 127.0.0.9 trusted for ECS,
    /// France withdrawn; the pipeline clock stands in 2100.
    fn live(dir: &std::path::Path) -> LiveServer {
        std::fs::write(dir.join("order.json"), ORDER).unwrap();
        let mmdb = dir.join("countries.mmdb");
        MmdbWriter::new(Shape::CountryCode)
            .insert("198.51.100.0/24".parse().unwrap(), "IT")
            .write_to(&mmdb)
            .unwrap();
        let toml = format!(
            r#"
            [server]
            listen = ["127.0.0.1:5300", {{ address = "127.0.0.1:5301", country = "IT" }}]
            data_dir = "{dir}/data"
            allow = ["127.0.0.0/8", "198.51.100.0/24", "203.0.113.0/24"]
            [policy]
            orders = "{dir}/order.json"
            withdraw = ["FR"]
            [geoip]
            mmdb = "{mmdb}"
            trusted_ecs_forwarders = ["127.0.0.9/32"]
            "#,
            dir = dir.display(),
            mmdb = mmdb.display(),
        );
        let settings = Settings::from_raw(&RawConfig::from_toml(&toml, "test").unwrap()).unwrap();
        let clock: SharedClock = Arc::new(ManualClock::new(IN_2100));
        let (engine, _loader) = policy_engine_with_store(&settings, IN_2100, None).unwrap();
        let cache = Arc::new(AnswerCache::new(CacheConfig::default()));
        let resolver = Resolver::new(settings.resolver.clone(), cache, Arc::clone(&clock)).unwrap();
        let pipeline = Pipeline::new(&server_config(&settings), resolver, clock, engine).unwrap();
        LiveServer::new(
            Arc::new(pipeline),
            Arc::new(Mutex::new(ServerStats::default())),
            Arc::new(|| None),
            crate::candidates::Candidates::disabled(),
            Arc::new(Phase::default()),
        )
    }

    /// `name=...&client=...` as the API's query string parser would read it.
    fn request(query: &str) -> ExplainRequest {
        serde_json::from_value(
            query
                .split('&')
                .map(|pair| pair.split_once('=').unwrap())
                .map(|(k, v)| (k.to_owned(), serde_json::Value::String(v.to_owned())))
                .collect::<serde_json::Map<_, _>>()
                .into(),
        )
        .unwrap()
    }

    fn ask(server: &LiveServer, query: &str) -> ExplainView {
        server.explain(&request(query)).unwrap()
    }

    /// (jurisdiction, decided by, verdict) of the explanation of `query`.
    fn placed(server: &LiveServer, query: &str) -> (Option<String>, String, String) {
        let view = ask(server, query);
        (view.jurisdiction, view.decided_by, view.verdict)
    }

    fn it(by: &str, verdict: &str) -> (Option<String>, String, String) {
        (Some("IT".to_owned()), by.to_owned(), verdict.to_owned())
    }

    fn unknown(verdict: &str) -> (Option<String>, String, String) {
        (None, "unknown".to_owned(), verdict.to_owned())
    }

    #[test]
    fn explain_judges_at_the_pipeline_clock_not_the_wall_clock() {
        let dir = tempfile::tempdir().unwrap();
        let server = live(dir.path());
        let view = ask(&server, "name=www.blocked.example&country=IT");
        assert_eq!(view.verdict, "block", "{view:?}");
        let fired = view.fired.unwrap();
        assert_eq!(
            (fired.order.as_str(), fired.action.as_str(), fired.ede),
            ("IT-2099-1", "nxdomain", 16)
        );
        assert_eq!(view.rcode.as_deref(), Some("NXDOMAIN"));
        assert_eq!(view.now, IN_2100);
    }

    #[test]
    fn explain_applies_policy_withdraw() {
        let dir = tempfile::tempdir().unwrap();
        let server = live(dir.path());
        let view = ask(&server, "name=www.blocked.example&country=FR");
        assert_eq!(view.verdict, "withdrawn", "{view:?}");
        assert_eq!(view.rcode.as_deref(), Some("REFUSED"));
        assert_eq!(view.jurisdiction.as_deref(), Some("FR"));
        // The order matches the name but service is withdrawn first.
        assert!(view.fired.is_none());
        assert_eq!(view.matches.len(), 1);
        let view = ask(&server, "address=192.0.2.1&country=FR");
        assert_eq!(view.verdict, "withdrawn", "{view:?}");
    }

    #[test]
    fn explain_places_the_client_by_listener_pin_then_trusted_ecs() {
        let dir = tempfile::tempdir().unwrap();
        let server = live(dir.path());
        let name = "name=www.blocked.example";
        let ecs = "ecs=198.51.100.77/24";
        for (query, expected) in [
            // A client nobody places, on the listener pinned to Italy, then on the unpinned
            // one (unknown: only global orders apply).
            (
                "client=203.0.113.5&listener=127.0.0.1:5301",
                it("listener", "block"),
            ),
            (
                "client=203.0.113.5&listener=127.0.0.1:5300",
                unknown("allow"),
            ),
            // ECS is believed from the trusted forwarder 127.0.0.9 only.
            (
                &format!("client=127.0.0.9&{ecs}"),
                it("trusted-ecs", "block"),
            ),
            (&format!("client=127.0.0.8&{ecs}"), unknown("allow")),
        ] {
            assert_eq!(
                placed(&server, &format!("{name}&{query}")),
                expected,
                "{query}"
            );
        }
        // A client outside server.allow is refused before anything else, pin or not.
        let view = ask(
            &server,
            &format!("{name}&client=192.0.2.1&listener=127.0.0.1:5301"),
        );
        assert_eq!(
            (view.verdict.as_str(), view.rcode.as_deref()),
            ("refused", Some("REFUSED"))
        );
    }

    #[test]
    fn explain_names_bad_fields() {
        let dir = tempfile::tempdir().unwrap();
        let server = live(dir.path());
        for (query, field) in [
            ("name=a.example&listener=127.0.0.1:9", "listener"),
            ("name=a.example&listener=nonsense", "listener"),
            ("name=a.example&ecs=nonsense", "ecs"),
            ("name=a.example&qtype=nonsense", "qtype"),
            ("name=a.example&country=XX", "country"),
            ("address=nonsense", "address"),
        ] {
            match server.explain(&request(query)) {
                Err(ControlError::Invalid { field: named, .. }) => {
                    assert_eq!(named, field, "{query}")
                }
                other => panic!("{query}: {other:?}"),
            }
        }
    }
}
