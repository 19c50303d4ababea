//! The admin HTTP API (axum). Every route but `/healthz`, `/readyz` and `/openapi.json` needs a bearer
//! token whose role is at least the route's (see [`routes`]); errors are
//! `{"error": {"field": "...", "reason": "..."}}`. The OpenAPI document is
//! `docs/api/openapi.json`, served at `/openapi.json`; a test checks that it lists every route.
//!
//! What only the running resolver knows (explain, counters, policy generation) comes through
//! [`ServerView`], which the binary implements.

use std::fmt::Write as _;
use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::{DefaultBodyLimit, Extension, Path, Query, Request, State};
use axum::http::{header, HeaderValue, StatusCode};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post, MethodRouter};
use axum::{Json, Router};
use juris_policy::{Order, OrderState, Target, TargetKind};
use serde::{Deserialize, Serialize};
use serde_json::json;

use crate::control::{require, Actor, Control, OrderFilter, Role};
use crate::error::ControlError;
use crate::export::transparency_csv;
use crate::feeds::CumulativeFeed;
use crate::parse_json;

/// The OpenAPI 3 document of this API (kept in `docs/api/openapi.json`).
pub const OPENAPI: &str = include_str!("../../../docs/api/openapi.json");

/// Largest request body (feeds and zone files can be big).
pub const MAX_BODY: usize = 256 * 1024 * 1024;

/// What the API needs from the running resolver.
pub trait ServerView: Send + Sync + 'static {
    /// Explains what a query gets, through the same code path as a real query. Errors name the
    /// field (`name`, `client`, `country`).
    fn explain(&self, request: &ExplainRequest) -> Result<ExplainView, ControlError>;
    /// Counters and the policy generation.
    fn snapshot(&self) -> ServerSnapshot;
    /// Flushes the resolver's caches for `name` (every name when `None`), and everything
    /// below it with `subtree`. Returns the name as the server understood it (absolute,
    /// lower-case) and what was removed. Errors name the field (`name`).
    fn flush_cache(
        &self,
        _name: Option<&str>,
        _subtree: bool,
    ) -> Result<(Option<String>, CacheRemoved), ControlError> {
        Err(no_resolver())
    }
    /// The answer cache's size and counters.
    fn cache_stats(&self) -> Result<CacheStats, ControlError> {
        Err(no_resolver())
    }
    /// The mirror candidates mined from resolved names (decided ones not yet left out).
    fn candidates(&self) -> Result<crate::candidates::CandidateList, ControlError> {
        Err(no_resolver())
    }
    /// Whether the resolver should get traffic (`GET /readyz`).
    fn readiness(&self) -> Readiness {
        Readiness {
            ready: false,
            checks: vec![ReadinessCheck {
                name: "resolver".into(),
                ok: false,
                detail: "no resolver is attached to this API".into(),
            }],
        }
    }
}

/// `GET /readyz`: 200 when `ready`, else 503; every check says why.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Readiness {
    /// Every check is ok.
    pub ready: bool,
    /// The checks: `listeners` (bound and serving; not while starting or draining), `policy`
    /// (a policy is in force, its generation).
    pub checks: Vec<ReadinessCheck>,
}

/// One check of a [`Readiness`].
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ReadinessCheck {
    /// `listeners`, `policy`, `fleet` (an edge: a transfer or snapshot in force).
    pub name: String,
    /// Whether it passes.
    pub ok: bool,
    /// What was found, e.g. `serving`, `draining`, `generation 3`.
    pub detail: String,
}

fn no_resolver() -> ControlError {
    ControlError::Internal("no resolver is attached to this API".into())
}

/// `POST /v1/cache/flush` body: `{}` flushes everything, `{"name": "example.com"}` one name
/// (every type), `{"name": "example.com", "subtree": true}` the name and everything below.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CacheFlushRequest {
    /// The name to flush; absent: the whole cache.
    #[serde(default)]
    pub name: Option<String>,
    /// Flush everything at or below `name` (needs `name`).
    #[serde(default)]
    pub subtree: bool,
    /// Why (recorded in the audit log).
    #[serde(default)]
    pub reason: String,
}

/// What one flush removed.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct CacheRemoved {
    /// Answer cache entries (one per name, type, class and DO bit; positive, negative and
    /// failure answers alike).
    pub answers: u64,
    /// Zone cuts learnt from referrals (recursive mode).
    pub delegations: u64,
    /// Name server address entries (recursive mode).
    pub addresses: u64,
    /// Remembered resolution failures (RFC 9520).
    pub failures: u64,
}

/// `POST /v1/cache/flush` answer.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CacheFlushView {
    /// The name flushed (absolute, lower-case), or `None` for the whole cache.
    pub name: Option<String>,
    /// Whether everything below the name was flushed too.
    pub subtree: bool,
    /// What was removed.
    pub removed: CacheRemoved,
    /// The audit log entry that records the flush.
    pub audit_seq: i64,
}

/// `GET /v1/cache/stats`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct CacheStats {
    /// Answers held (one per name, type, class and DO bit).
    pub entries: u64,
    /// Bytes accounted to them: wire data plus bookkeeping, as weighed for the `cache.size`
    /// bound (not the process's memory: the index and allocator overhead are not counted).
    pub bytes: u64,
    /// The bound on `bytes` (`cache.size`).
    pub max_bytes: u64,
    /// Queries answered from the cache since start (the UDP workers' hot answers included).
    pub hits: u64,
    /// Of `hits`, those answered from a UDP worker's hot answers.
    pub hits_hot: u64,
    /// Queries that needed resolution (misses and stale entries) since start.
    pub misses: u64,
    /// Flushes since start.
    pub flushes: u64,
}

/// `GET /v1/explain` parameters.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ExplainRequest {
    /// The query name.
    pub name: Option<String>,
    /// Or an answer address.
    pub address: Option<String>,
    /// The client's address (its jurisdiction is looked up like a real query's).
    pub client: Option<String>,
    /// Or the client's country: the query arrives on a listener pinned to it.
    pub country: Option<String>,
    /// The configured listener (`ADDR:PORT`) the query arrives on: its pin applies.
    pub listener: Option<String>,
    /// An EDNS Client Subnet option in the query (`ADDR/LEN`; believed only from a trusted
    /// forwarder, as in a real query).
    pub ecs: Option<String>,
    /// The query type (default `A`).
    pub qtype: Option<String>,
    /// Resolve the name first through the running server's resolver (`true`), so that the
    /// view shows the live answer and its checks; the answer stays in the cache as a real
    /// query's would.
    #[serde(default)]
    pub resolve: Option<bool>,
}

/// `GET /v1/explain` answer: what the query gets and why, from the running server's pipeline.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ExplainView {
    /// The query name asked about.
    pub name: Option<String>,
    /// Or the answer address.
    pub address: Option<String>,
    /// The client's jurisdiction (two letters), or `None` (unknown: only global orders apply).
    pub jurisdiction: Option<String>,
    /// `listener`, `trusted-ecs`, `geoip` or `unknown`.
    pub decided_by: String,
    /// The generation of the policy that judged the query.
    pub policy_generation: u64,
    /// `block`, `allow`, `withdrawn`, `refused` (access list), `rejected` (error before any
    /// policy) or `answered` (ANY, or a clean cached answer).
    pub verdict: String,
    /// The order that decides the answer, for a block.
    pub fired: Option<FiredView>,
    /// Every order whose targets match, applicable or not, and why.
    pub matches: Vec<MatchView>,
    /// For a block: what matched (`query name`, `CNAME target`, `answer address`).
    #[serde(default)]
    pub trigger: Option<String>,
    /// The RCODE of the response the server would send without resolving, if any.
    #[serde(default)]
    pub rcode: Option<String>,
    /// The server clock's Unix seconds the query was judged at.
    #[serde(default)]
    pub now: u64,
    /// The DNSSEC validation state of the live (cached) answer to the question; absent when
    /// none is cached.
    #[serde(default)]
    pub validation: Option<ValidationView>,
    /// The checks the answer hook makes on the live answer (CNAME/DNAME targets, answer
    /// addresses, the name servers that answered), each with the order that blocks it for
    /// this client; empty when no answer is cached.
    #[serde(default)]
    pub checks: Vec<CheckView>,
    /// The response the server would send without resolving (a block, a cached answer),
    /// rendered as `dig` would show it: the status line, then the records and EDEs, one line
    /// each; empty when the query would be resolved.
    #[serde(default)]
    pub response: Vec<String>,
    /// Why the resolution asked for with `resolve` failed.
    #[serde(default)]
    pub resolve_error: Option<String>,
}

/// One check of the live answer, in an [`ExplainView`].
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct CheckView {
    /// `CNAME target`, `answer address`, `name server name` or `name server address`.
    pub trigger: String,
    /// The name (absolute) or address checked.
    pub subject: String,
    /// The order that blocks it for this client, if one does.
    #[serde(default)]
    pub order: Option<String>,
    /// That order's target that matched.
    #[serde(default)]
    pub target: Option<String>,
}

/// The validation state of the live answer, in an [`ExplainView`].
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ValidationView {
    /// `secure`, `insecure`, `bogus`, `indeterminate` or `unchecked` (not validated).
    pub state: String,
    /// The Extended DNS Error that goes with it (6–12 for bogus, 1–2 for an unsupported
    /// algorithm or digest).
    #[serde(default)]
    pub ede: Option<u16>,
    /// Its EXTRA-TEXT (names the zone of a bogus answer).
    #[serde(default)]
    pub text: Option<String>,
}

/// The order that fired, in an [`ExplainView`].
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct FiredView {
    /// Order id.
    pub order: String,
    /// Authority.
    pub authority: String,
    /// Case reference.
    pub reference: String,
    /// `refused`, `nxdomain` or `nodata`.
    pub action: String,
    /// The Extended DNS Error code the answer carries.
    pub ede: u16,
    /// The target that matched, e.g. `subtree kickasstorrents.to`.
    pub target: String,
}

/// One matching order, in an [`ExplainView`].
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct MatchView {
    /// Order id.
    pub order: String,
    /// The target that matched.
    pub target: String,
    /// Whether it applies to this client now.
    pub applies: bool,
    /// Why (not).
    pub status: String,
}

/// `GET /v1/orders`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct OrderList {
    /// One line per order.
    pub orders: Vec<crate::OrderSummary>,
}

/// `POST /v1/orders/{id}/targets/remove`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Removed {
    /// The targets removed (`KIND VALUE`).
    pub removed: Vec<String>,
}

/// `POST /v1/suspend-all`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Suspended {
    /// The orders suspended.
    pub suspended: Vec<String>,
}

/// `GET /v1/audit`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AuditLog {
    /// The entries, oldest first.
    pub entries: Vec<crate::audit::AuditEntry>,
}

/// Every error answer: `{"error": {"field": ..., "reason": ..., "errors": [...]}}`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ErrorBody {
    /// The error.
    pub error: ErrorDetail,
}

/// The error of an [`ErrorBody`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ErrorDetail {
    /// The field at fault (`name`, `targets[1].value`, `body`, ...).
    pub field: String,
    /// Why.
    pub reason: String,
    /// Every problem, when an order document has several.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub errors: Vec<FieldProblem>,
}

/// One problem of an [`ErrorDetail`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FieldProblem {
    /// The field.
    pub field: String,
    /// Why.
    pub reason: String,
}

/// The resolver's counters and policy state.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct ServerSnapshot {
    /// Generation of the compiled policy in force.
    pub policy_generation: u64,
    /// The last policy that was refused (the previous one is kept), if the newest was.
    pub policy_error: Option<String>,
    /// Queries answered.
    pub queries: Vec<QueryCount>,
    /// Answers served from the cache.
    pub cache_hits: u64,
    /// Answers that needed resolution.
    pub cache_misses: u64,
    /// Blocks per order × jurisdiction.
    pub blocks: Vec<BlockCount>,
    /// Shadow matches per order × jurisdiction (would have blocked).
    pub shadow_matches: Vec<BlockCount>,
    /// Fleet state (a primary's publishing, an edge's following), when configured.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub fleet: Option<serde_json::Value>,
    /// Resolver work limits hit (NXNS, loops): (limit label, count).
    pub resolver_limit_hits: Vec<LimitHitCount>,
    /// Upstream TCP connections and queries (`opened`, `reused`, `pipelined`, `lost`,
    /// `retried`, `busy`): `limit` holds the event.
    pub upstream_tcp: Vec<LimitHitCount>,
    /// Responses sent by transport × RCODE (both labels always real, never "all").
    pub answers: Vec<QueryCount>,
    /// Answer latency histograms: `hit` (answered at once) and `miss` (resolved).
    pub latency: Vec<LatencyHistogram>,
    /// Answers the query log and dnstap dropped (writer or collector behind, or away):
    /// `limit` holds the consumer (`querylog`, `dnstap`).
    pub telemetry_dropped: Vec<LimitHitCount>,
    /// Queries and responses over their client prefix's rate (`server.rate_limit`).
    pub rate_limited: Vec<RateLimitedCount>,
    /// Client prefixes whose UDP queries the kernel drops now
    /// (`server.rate_limit.kernel_drop_*`).
    pub kernel_drop_prefixes: u64,
    /// Kernel drop events (`added`: prefixes listed; `refused`: the list was full):
    /// `limit` holds the event.
    pub kernel_drop: Vec<LimitHitCount>,
}

/// One answer latency histogram, cumulative as Prometheus wants it.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct LatencyHistogram {
    /// `hit` (answered at once: cache and hot hits, blocks, errors) or `miss` (waited for
    /// the resolver).
    pub cache: String,
    /// (upper bound in seconds, answers at most that long), ascending; the `+Inf` bucket is
    /// `count`.
    pub buckets: Vec<(f64, u64)>,
    /// Every answer's time, summed, in seconds.
    pub sum_seconds: f64,
    /// Answers observed.
    pub count: u64,
}

/// How many queries or responses of one class were rate-limited, and how.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct RateLimitedCount {
    /// `queries`, `answers`, `large`, `nxdomain`, `refused`, `errors`.
    pub class: String,
    /// `dropped` or `slipped` (sent truncated, TC=1).
    pub action: String,
    /// How many.
    pub count: u64,
}

/// How often one resolver work limit was hit.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct LimitHitCount {
    /// `upstream_queries`, `ns_lookups`, `ns_lookups_per_zone`, `delegation_loop`,
    /// `ns_per_zone_cut`, `addresses_per_ns`, ...
    pub limit: String,
    /// How many times.
    pub count: u64,
}

/// Queries by transport and RCODE.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct QueryCount {
    /// `udp`, `tcp`, `dot`, `doh`, `doq`.
    pub transport: String,
    /// `NOERROR`, `NXDOMAIN`, `REFUSED`, ...
    pub rcode: String,
    /// How many.
    pub count: u64,
}

/// A counter per order × jurisdiction.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct BlockCount {
    /// The order.
    pub order: String,
    /// The client's jurisdiction (`unknown` when none).
    pub jurisdiction: String,
    /// How many.
    pub count: u64,
}

/// A server view for when no resolver is attached: explain fails, counters are zero.
#[derive(Debug, Clone, Copy, Default)]
pub struct NoServer;

impl ServerView for NoServer {
    fn explain(&self, _request: &ExplainRequest) -> Result<ExplainView, ControlError> {
        Err(ControlError::Internal(
            "no resolver is attached to this API".into(),
        ))
    }

    fn snapshot(&self) -> ServerSnapshot {
        ServerSnapshot::default()
    }
}

/// The state shared by the handlers.
#[derive(Clone)]
pub struct ApiState {
    /// The control plane.
    pub control: Arc<Control>,
    /// The resolver.
    pub server: Arc<dyn ServerView>,
}

impl std::fmt::Debug for ApiState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ApiState").finish_non_exhaustive()
    }
}

/// One route: method, path (OpenAPI syntax), and the weakest role allowed (`None`: public).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RouteSpec {
    /// `GET`, `POST`, `PUT`.
    pub method: &'static str,
    /// E.g. `/v1/orders/{id}`.
    pub path: &'static str,
    /// Weakest role allowed.
    pub role: Option<Role>,
}

/// Serves the API on `listener` until `shutdown` completes.
pub async fn serve(
    listener: tokio::net::TcpListener,
    state: ApiState,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    serve_router(listener, router(state), shutdown).await
}

/// Serves `router` (the API's, or [`crate::console::public_router`]) on `listener` until
/// `shutdown` completes.
/// `listener` is plain TCP or the binary's TLS listener (`[control] tls_cert`); behind TLS the
/// router should go through [`crate::console::served_over_tls`] (the console's cookies get
/// `Secure`).
pub async fn serve_router<L>(
    listener: L,
    router: Router,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> std::io::Result<()>
where
    L: axum::serve::Listener,
    L::Addr: std::fmt::Debug,
{
    axum::serve(listener, router)
        .with_graceful_shutdown(shutdown)
        .await
}

/// Every route of the API.
pub fn routes() -> Vec<RouteSpec> {
    table().into_iter().map(|(spec, _)| spec).collect()
}

/// The API as a router, ready for `axum::serve`, with the web console (`/ui/`) and the public
/// transparency page (`/transparency`) merged in (`crate::console`).
pub fn router(state: ApiState) -> Router {
    let console = crate::console::router(state.clone());
    let mut router: Router<ApiState> = Router::new();
    for (spec, handler) in table() {
        let handler = match spec.role {
            Some(role) => handler.route_layer(middleware::from_fn_with_state(
                Guard {
                    control: state.control.clone(),
                    role,
                },
                authenticate,
            )),
            None => handler,
        };
        router = router.route(spec.path, handler);
    }
    router
        .fallback(|| async {
            ApiError(ControlError::NotFound {
                what: "route",
                id: String::new(),
            })
        })
        .layer(DefaultBodyLimit::max(MAX_BODY))
        .with_state(state)
        .merge(console)
}

fn table() -> Vec<(RouteSpec, MethodRouter<ApiState>)> {
    use Role::*;
    let spec = |method, path, role| RouteSpec { method, path, role };
    vec![
        (spec("GET", "/healthz", None), get(healthz)),
        (spec("GET", "/readyz", None), get(readyz)),
        (spec("GET", "/openapi.json", None), get(openapi)),
        (spec("GET", "/metrics", Some(Viewer)), get(metrics)),
        (spec("GET", "/v1/status", Some(Viewer)), get(status)),
        (spec("GET", "/v1/explain", Some(Viewer)), get(explain)),
        (spec("GET", "/v1/orders", Some(Viewer)), get(list_orders)),
        (spec("POST", "/v1/orders", Some(Editor)), post(create_order)),
        (
            spec("GET", "/v1/orders/{id}", Some(Viewer)),
            get(show_order),
        ),
        (
            spec("PUT", "/v1/orders/{id}", Some(Editor)),
            axum::routing::put(put_order),
        ),
        (
            spec("POST", "/v1/orders/{id}/targets", Some(Editor)),
            post(add_targets),
        ),
        (
            spec("POST", "/v1/orders/{id}/targets/remove", Some(Editor)),
            post(remove_targets),
        ),
        (
            spec("POST", "/v1/orders/{id}/targets/override", Some(Admin)),
            post(override_target),
        ),
        (
            spec("POST", "/v1/orders/{id}/import", Some(Editor)),
            post(import_into_order),
        ),
        (
            spec("POST", "/v1/orders/{id}/shadow", Some(Editor)),
            post(shadow),
        ),
        (
            spec("POST", "/v1/orders/{id}/activate", Some(Approver)),
            post(activate),
        ),
        (
            spec("POST", "/v1/orders/{id}/suspend", Some(Approver)),
            post(suspend),
        ),
        (
            spec("POST", "/v1/orders/{id}/lift", Some(Approver)),
            post(lift),
        ),
        (
            spec("POST", "/v1/suspend-all", Some(Approver)),
            post(suspend_all),
        ),
        (
            spec("GET", "/v1/orders/{id}/stats", Some(Viewer)),
            get(order_stats),
        ),
        (
            spec("GET", "/v1/stats/daily", Some(Viewer)),
            get(daily_stats),
        ),
        (spec("GET", "/v1/feeds", Some(Viewer)), get(list_feeds)),
        (
            spec("POST", "/v1/feeds/{name}", Some(Editor)),
            post(import_feed),
        ),
        (
            spec("GET", "/v1/feeds/{name}/ack", Some(Viewer)),
            get(feed_ack),
        ),
        (
            spec("GET", "/v1/feeds/{name}/imports", Some(Viewer)),
            get(feed_imports),
        ),
        (
            spec("GET", "/v1/imports", Some(Viewer)),
            get(running_imports),
        ),
        (spec("GET", "/v1/audit", Some(Viewer)), get(audit_log)),
        (
            spec("GET", "/v1/audit/verify", Some(Viewer)),
            get(audit_verify),
        ),
        (
            spec("GET", "/v1/export/orders", Some(Viewer)),
            get(export_orders),
        ),
        (spec("GET", "/v1/export/rpz", Some(Viewer)), get(export_rpz)),
        (
            spec("GET", "/v1/export/transparency", Some(Viewer)),
            get(export_transparency),
        ),
        (spec("POST", "/v1/tokens", Some(Admin)), post(create_token)),
        (spec("GET", "/v1/tokens", Some(Admin)), get(list_tokens)),
        (
            spec("POST", "/v1/tokens/{name}/revoke", Some(Admin)),
            post(revoke_token),
        ),
        (
            spec("POST", "/v1/cache/flush", Some(Operator)),
            post(cache_flush),
        ),
        (
            spec("GET", "/v1/cache/stats", Some(Operator)),
            get(cache_stats),
        ),
        (
            spec("GET", "/v1/candidates", Some(Viewer)),
            get(list_candidates),
        ),
        (
            spec("POST", "/v1/candidates/{name}/accept", Some(Editor)),
            post(|state, actor, name, body| decide_candidate(state, actor, name, body, true)),
        ),
        (
            spec("POST", "/v1/candidates/{name}/dismiss", Some(Editor)),
            post(|state, actor, name, body| decide_candidate(state, actor, name, body, false)),
        ),
    ]
}

// ---- errors -----------------------------------------------------------------------------------

/// A [`ControlError`] as an HTTP response.
#[derive(Debug)]
pub struct ApiError(pub ControlError);

impl From<ControlError> for ApiError {
    fn from(error: ControlError) -> Self {
        ApiError(error)
    }
}

/// The HTTP status of an error.
pub fn status_of(error: &ControlError) -> StatusCode {
    match error {
        ControlError::Invalid { .. } | ControlError::Validation(_) => StatusCode::BAD_REQUEST,
        ControlError::NotFound { .. } => StatusCode::NOT_FOUND,
        ControlError::Conflict { .. } => StatusCode::CONFLICT,
        ControlError::Unauthorized(_) => StatusCode::UNAUTHORIZED,
        ControlError::Forbidden(_) => StatusCode::FORBIDDEN,
        ControlError::Store(_)
        | ControlError::Schema(_)
        | ControlError::Io { .. }
        | ControlError::Corrupt(_)
        | ControlError::Internal(_) => StatusCode::INTERNAL_SERVER_ERROR,
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let status = status_of(&self.0);
        let errors = match &self.0 {
            ControlError::Validation(errors) => errors
                .errors
                .iter()
                .map(|e| FieldProblem {
                    field: e.path.clone(),
                    reason: e.problem.to_string(),
                })
                .collect(),
            _ => Vec::new(),
        };
        let body = ErrorBody {
            error: ErrorDetail {
                field: self.0.field(),
                reason: self.0.reason(),
                errors,
            },
        };
        let mut response = (status, Json(body)).into_response();
        if status == StatusCode::UNAUTHORIZED {
            response
                .headers_mut()
                .insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
        }
        response
    }
}

type ApiResult<T> = Result<T, ApiError>;

async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> Result<T, ControlError> + Send + 'static,
) -> ApiResult<T> {
    match tokio::task::spawn_blocking(f).await {
        Ok(result) => result.map_err(ApiError),
        Err(error) => Err(ApiError(ControlError::Internal(format!(
            "the request's task failed: {error}"
        )))),
    }
}

// ---- authentication ---------------------------------------------------------------------------

#[derive(Clone)]
struct Guard {
    control: Arc<Control>,
    role: Role,
}

async fn authenticate(State(guard): State<Guard>, mut request: Request, next: Next) -> Response {
    let token = request
        .headers()
        .get(header::AUTHORIZATION)
        .and_then(|value| value.to_str().ok())
        .and_then(|value| value.strip_prefix("Bearer "))
        .map(|token| token.trim().to_owned());
    let Some(token) = token.filter(|t| !t.is_empty()) else {
        return ApiError(ControlError::Unauthorized(
            "missing bearer token (Authorization: Bearer TOKEN)".into(),
        ))
        .into_response();
    };
    let control = guard.control.clone();
    let actor = match blocking(move || control.authenticate(&token)).await {
        Ok(actor) => actor,
        Err(error) => return error.into_response(),
    };
    if let Err(error) = require(&actor, guard.role) {
        return ApiError(error).into_response();
    }
    // A fleet edge holds no orders of its own: changes are made on the primary.
    if let (Some(primary), true) = (guard.control.follows(), guard.role >= Role::Editor) {
        return ApiError(ControlError::Conflict {
            field: "orders".into(),
            reason: format!(
                "this node is a fleet edge following {primary}: it takes its orders from the \
                 primary by zone transfer; make order changes on the primary"
            ),
        })
        .into_response();
    }
    request.extensions_mut().insert(actor);
    next.run(request).await
}

// ---- handlers ---------------------------------------------------------------------------------

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct ReasonQuery {
    #[serde(default)]
    reason: String,
}

fn query<T: serde::de::DeserializeOwned + Default>(raw: Option<&str>) -> ApiResult<T> {
    match raw {
        None | Some("") => serde_urlencoded_like(""),
        Some(raw) => serde_urlencoded_like(raw),
    }
}

/// Query strings through axum's own parser, with errors naming the parameter.
fn serde_urlencoded_like<T: serde::de::DeserializeOwned>(raw: &str) -> ApiResult<T> {
    let uri: axum::http::Uri = format!("/?{raw}")
        .parse()
        .map_err(|_| ApiError(ControlError::invalid("query", "malformed query string")))?;
    Query::<T>::try_from_uri(&uri)
        .map(|Query(value)| value)
        .map_err(|e| ApiError(ControlError::invalid("query", e.body_text())))
}

async fn healthz() -> impl IntoResponse {
    Json(json!({"status": "ok"}))
}

async fn readyz(State(state): State<ApiState>) -> impl IntoResponse {
    let readiness = state.server.readiness();
    let code = if readiness.ready {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    (code, Json(readiness))
}

async fn openapi() -> impl IntoResponse {
    ([(header::CONTENT_TYPE, "application/json")], OPENAPI)
}

async fn status(State(state): State<ApiState>) -> ApiResult<Json<serde_json::Value>> {
    let control = state.control.clone();
    let store = blocking(move || control.status()).await?;
    let server = state.server.snapshot();
    Ok(Json(json!({
        "policy_generation": server.policy_generation,
        "policy_error": server.policy_error,
        "store": store,
        "fleet": server.fleet,
        "server": server,
    })))
}

/// One sample line's labels and value: `{a="x",b="y"} count`.
fn two_labels(first: (&str, &str), second: (&str, &str), count: u64) -> String {
    format!(
        "{{{}=\"{}\",{}=\"{}\"}} {count}",
        first.0,
        escape(first.1),
        second.0,
        escape(second.1)
    )
}

async fn metrics(State(state): State<ApiState>) -> ApiResult<Response> {
    let control = state.control.clone();
    let store = blocking(move || control.status()).await?;
    let server = state.server.snapshot();
    let text = render_metrics(&server, &store);
    Ok((
        [(
            header::CONTENT_TYPE,
            "text/plain; version=0.0.4; charset=utf-8",
        )],
        text,
    )
        .into_response())
}

/// One metric: its HELP and TYPE lines, then `name` + each sample (labels and value).
fn section(text: &mut String, name: &str, kind: &str, help: &str, samples: Vec<String>) {
    let _ = writeln!(text, "# HELP {name} {help}\n# TYPE {name} {kind}");
    for sample in samples {
        let _ = writeln!(text, "{name}{sample}");
    }
}

/// Renders the Prometheus text exposition of the server's and the store's counters.
pub fn render_metrics(server: &ServerSnapshot, store: &crate::StoreStatus) -> String {
    let mut text = String::new();
    section(
        &mut text,
        "juris_queries_total",
        "counter",
        "Queries answered, by transport and RCODE.",
        transport_rcode_samples(&server.queries),
    );
    section(
        &mut text,
        "juris_answers_total",
        "counter",
        "Responses sent, by transport and RCODE.",
        transport_rcode_samples(&server.answers),
    );
    section(
        &mut text,
        "juris_answer_duration_seconds",
        "histogram",
        "Time from receiving a query to its answer: cache=\"hit\" answered at once (cache, blocks, errors), cache=\"miss\" after resolution.",
        server
            .latency
            .iter()
            .flat_map(|h| {
                let cache = escape(&h.cache);
                h.buckets
                    .iter()
                    .map(|(bound, count)| {
                        format!("_bucket{{cache=\"{cache}\",le=\"{bound}\"}} {count}")
                    })
                    .chain([
                        format!("_bucket{{cache=\"{cache}\",le=\"+Inf\"}} {}", h.count),
                        format!("_sum{{cache=\"{cache}\"}} {}", h.sum_seconds),
                        format!("_count{{cache=\"{cache}\"}} {}", h.count),
                    ])
                    .collect::<Vec<_>>()
            })
            .collect(),
    );
    for consumer in ["querylog", "dnstap"] {
        let dropped = server
            .telemetry_dropped
            .iter()
            .find(|d| d.limit == consumer)
            .map_or(0, |d| d.count);
        section(
            &mut text,
            &format!("juris_{consumer}_dropped_total"),
            "counter",
            &format!("Answers the {consumer} output dropped because its writer or collector was behind or away (0 when off)."),
            vec![format!(" {dropped}")],
        );
    }
    section(
        &mut text,
        "juris_cache_hits_total",
        "counter",
        "Answers served from the cache.",
        vec![format!(" {}", server.cache_hits)],
    );
    section(
        &mut text,
        "juris_cache_misses_total",
        "counter",
        "Answers that needed resolution.",
        vec![format!(" {}", server.cache_misses)],
    );
    section(
        &mut text,
        "juris_blocks_total",
        "counter",
        "Blocked answers per order and client jurisdiction.",
        server
            .blocks
            .iter()
            .map(|b| {
                format!(
                    "{{order=\"{}\",jurisdiction=\"{}\"}} {}",
                    escape(&b.order),
                    escape(&b.jurisdiction),
                    b.count
                )
            })
            .collect(),
    );
    section(
        &mut text,
        "juris_shadow_matches_total",
        "counter",
        "Answers a shadow order would have blocked, per order and client jurisdiction.",
        server
            .shadow_matches
            .iter()
            .map(|b| {
                format!(
                    "{{order=\"{}\",jurisdiction=\"{}\"}} {}",
                    escape(&b.order),
                    escape(&b.jurisdiction),
                    b.count
                )
            })
            .collect(),
    );
    if let Some(fleet) = server.fleet.as_ref().and_then(|f| f.as_object()) {
        // Every number of the fleet state as a gauge: `juris_fleet_serial`, `..._lag_seconds`.
        let role = fleet.get("role").and_then(|r| r.as_str()).unwrap_or("");
        for (key, value) in fleet {
            if let Some(number) = value.as_f64() {
                section(
                    &mut text,
                    &format!("juris_fleet_{key}"),
                    "gauge",
                    &format!("Fleet state: {key} (see /v1/status)."),
                    vec![format!("{{role=\"{}\"}} {number}", escape(role))],
                );
            }
        }
        // A primary's followers: every number of each as a gauge labelled with its name
        // (`juris_fleet_follower_serial{name="edge-1"}`, `..._in_sync`, `..._seen_seconds_ago`);
        // the RPZ feeds likewise (`juris_fleet_rpz_feed_serial{feed="vendor"}`, `..._failures`).
        for (list, prefix, label) in [
            ("followers", "juris_fleet_follower_", "name"),
            ("rpz_feeds", "juris_fleet_rpz_feed_", "feed"),
        ] {
            labelled_gauges(&mut text, fleet, list, prefix, label);
        }
    }
    section(
        &mut text,
        "juris_resolver_limit_hits_total",
        "counter",
        "Resolver work limits hit (NXNS, delegation loops, amplification guards), by limit.",
        server
            .resolver_limit_hits
            .iter()
            .map(|l| format!("{{limit=\"{}\"}} {}", escape(&l.limit), l.count))
            .collect(),
    );
    section(
        &mut text,
        "juris_upstream_tcp_total",
        "counter",
        "Upstream TCP (truncated answers): connections opened, queries given to a reused connection, queries pipelined behind another, queries whose connection was lost (closed by the server, garbage), queries asked again, queries refused for want of a connection place (resolver.limits.tcp_*).",
        server
            .upstream_tcp
            .iter()
            .map(|l| format!("{{event=\"{}\"}} {}", escape(&l.limit), l.count))
            .collect(),
    );
    section(
        &mut text,
        "juris_rate_limited_total",
        "counter",
        "UDP queries and responses over their client prefix's rate (server.rate_limit), by class and action (dropped, slipped = sent with TC=1).",
        server
            .rate_limited
            .iter()
            .map(|r| two_labels(("class", &r.class), ("action", &r.action), r.count))
            .collect(),
    );
    section(
        &mut text,
        "juris_kernel_drop_prefixes",
        "gauge",
        "Client prefixes whose UDP queries are dropped in the kernel now (server.rate_limit.kernel_drop_*).",
        vec![format!(" {}", server.kernel_drop_prefixes)],
    );
    section(
        &mut text,
        "juris_kernel_drop_total",
        "counter",
        "Client prefixes listed for dropping in the kernel (added), and refused because the list was full (refused).",
        server
            .kernel_drop
            .iter()
            .map(|l| format!("{{event=\"{}\"}} {}", escape(&l.limit), l.count))
            .collect(),
    );
    section(
        &mut text,
        "juris_policy_generation",
        "gauge",
        "Generation of the compiled policy in force.",
        vec![format!(" {}", server.policy_generation)],
    );
    section(
        &mut text,
        "juris_policy_rejected",
        "gauge",
        "1 when the newest policy was refused and the last good one is kept.",
        vec![format!(" {}", u8::from(server.policy_error.is_some()))],
    );
    section(
        &mut text,
        "juris_control_store_errors_total",
        "counter",
        "Errors of the control-plane store.",
        vec![format!(" {}", store.store_errors)],
    );
    section(
        &mut text,
        "juris_control_orders",
        "gauge",
        "Stored orders by state.",
        store
            .orders
            .iter()
            .map(|(state, n)| format!("{{state=\"{}\"}} {n}", escape(state)))
            .collect(),
    );
    section(
        &mut text,
        "juris_control_targets_needs_review",
        "gauge",
        "Targets held for review by a safeguard.",
        vec![format!(" {}", store.needs_review)],
    );
    section(
        &mut text,
        "juris_control_deadlines_open",
        "gauge",
        "Orders approaching or past comply_by that are not active.",
        vec![format!(" {}", store.deadlines.len())],
    );
    section(
        &mut text,
        "juris_control_change_to_enforcement_seconds",
        "gauge",
        "Time from the last change in the store to its enforcement by the resolver.",
        store
            .last_change_to_enforcement_ms
            .map(|ms| vec![format!(" {}", ms / 1000.0)])
            .unwrap_or_default(),
    );
    text
}

/// `{transport="…",rcode="…"} N` for each count.
fn transport_rcode_samples(counts: &[QueryCount]) -> Vec<String> {
    counts
        .iter()
        .map(|q| {
            format!(
                "{{transport=\"{}\",rcode=\"{}\"}} {}",
                escape(&q.transport),
                escape(&q.rcode),
                q.count
            )
        })
        .collect()
}

/// Every number of each object of `fleet[list]` as a gauge `PREFIX<field>{LABEL="<name>"}`
/// (the object's `name`), one section per field.
fn labelled_gauges(
    text: &mut String,
    fleet: &serde_json::Map<String, serde_json::Value>,
    list: &str,
    prefix: &str,
    label: &str,
) {
    let items: Vec<&serde_json::Map<String, serde_json::Value>> = fleet
        .get(list)
        .and_then(|f| f.as_array())
        .map(|list| list.iter().filter_map(|f| f.as_object()).collect())
        .unwrap_or_default();
    let mut fields: Vec<&String> = items
        .iter()
        .flat_map(|f| f.iter().filter(|(_, v)| v.is_number()).map(|(k, _)| k))
        .collect();
    fields.sort();
    fields.dedup();
    for field in fields {
        section(
            text,
            &format!("{prefix}{field}"),
            "gauge",
            &format!("Fleet {list}: {field} (see /v1/status fleet.{list})."),
            items
                .iter()
                .filter_map(|f| {
                    let name = f.get("name")?.as_str()?;
                    let number = f.get(field.as_str())?.as_f64()?;
                    Some(format!("{{{label}=\"{}\"}} {number}", escape(name)))
                })
                .collect(),
        );
    }
}

fn escape(value: &str) -> String {
    value
        .replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

async fn explain(
    State(state): State<ApiState>,
    request: axum::http::Uri,
) -> ApiResult<Json<ExplainView>> {
    let request: ExplainRequest = query(request.query())?;
    if request.name.is_none() && request.address.is_none() {
        return Err(ApiError(ControlError::invalid(
            "name",
            "give a name (or an answer address) to explain",
        )));
    }
    let server = state.server.clone();
    Ok(Json(blocking(move || server.explain(&request)).await?))
}

async fn list_orders(
    State(state): State<ApiState>,
    uri: axum::http::Uri,
) -> ApiResult<Json<OrderList>> {
    let filter: OrderFilter = query(uri.query())?;
    let control = state.control.clone();
    let orders = blocking(move || control.orders(&filter)).await?;
    Ok(Json(OrderList { orders }))
}

fn order_from_body(body: &[u8]) -> ApiResult<(Order, bool)> {
    let order: Order = parse_json(body)?;
    let state_given = serde_json::from_slice::<serde_json::Value>(body)
        .ok()
        .and_then(|v| v.get("state").map(|_| true))
        .unwrap_or(false);
    Ok((order, state_given))
}

async fn create_order(
    State(state): State<ApiState>,
    Extension(actor): Extension<Actor>,
    uri: axum::http::Uri,
    body: Bytes,
) -> ApiResult<Response> {
    let ReasonQuery { reason } = query(uri.query())?;
    let (order, state_given) = order_from_body(&body)?;
    let control = state.control.clone();
    let view =
        blocking(move || control.apply_order(&actor, order, state_given, true, &reason)).await?;
    Ok((StatusCode::CREATED, Json(view)).into_response())
}

async fn put_order(
    State(state): State<ApiState>,
    Extension(actor): Extension<Actor>,
    Path(id): Path<String>,
    uri: axum::http::Uri,
    body: Bytes,
) -> ApiResult<Response> {
    let ReasonQuery { reason } = query(uri.query())?;
    let (order, state_given) = order_from_body(&body)?;
    if order.id != id {
        return Err(ApiError(ControlError::invalid(
            "id",
            format!(
                "the document's id {:?} differs from the URL's {id:?}",
                order.id
            ),
        )));
    }
    let control = state.control.clone();
    let view =
        blocking(move || control.apply_order(&actor, order, state_given, false, &reason)).await?;
    Ok(Json(view).into_response())
}

async fn show_order(State(state): State<ApiState>, Path(id): Path<String>) -> ApiResult<Response> {
    let control = state.control.clone();
    let view = blocking(move || control.order(&id)).await?;
    Ok(Json(view).into_response())
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct TargetsBody {
    targets: Vec<Target>,
}

async fn add_targets(
    State(state): State<ApiState>,
    Extension(actor): Extension<Actor>,
    Path(id): Path<String>,
    uri: axum::http::Uri,
    body: Bytes,
) -> ApiResult<Response> {
    let ReasonQuery { reason } = query(uri.query())?;
    let TargetsBody { targets } = parse_json(&body)?;
    let control = state.control.clone();
    let report = blocking(move || control.add_targets(&actor, &id, targets, &reason)).await?;
    Ok(Json(report).into_response())
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct TargetKey {
    #[serde(rename = "type")]
    kind: TargetKind,
    value: String,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct TargetKeysBody {
    targets: Vec<TargetKey>,
}

async fn remove_targets(
    State(state): State<ApiState>,
    Extension(actor): Extension<Actor>,
    Path(id): Path<String>,
    uri: axum::http::Uri,
    body: Bytes,
) -> ApiResult<Response> {
    let ReasonQuery { reason } = query(uri.query())?;
    let TargetKeysBody { targets } = parse_json(&body)?;
    let keys: Vec<(TargetKind, String)> = targets.into_iter().map(|t| (t.kind, t.value)).collect();
    let control = state.control.clone();
    let removed = blocking(move || control.remove_targets(&actor, &id, &keys, &reason)).await?;
    Ok(Json(Removed { removed }).into_response())
}

async fn override_target(
    State(state): State<ApiState>,
    Extension(actor): Extension<Actor>,
    Path(id): Path<String>,
    uri: axum::http::Uri,
    body: Bytes,
) -> ApiResult<Response> {
    let ReasonQuery { reason } = query(uri.query())?;
    let key: TargetKey = parse_json(&body)?;
    let control = state.control.clone();
    let target =
        blocking(move || control.override_target(&actor, &id, key.kind, &key.value, &reason))
            .await?;
    Ok(Json(target).into_response())
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct ImportQuery {
    format: Option<String>,
    #[serde(rename = "type")]
    kind: Option<TargetKind>,
    #[serde(default)]
    reason: String,
}

async fn import_into_order(
    State(state): State<ApiState>,
    Extension(actor): Extension<Actor>,
    Path(id): Path<String>,
    uri: axum::http::Uri,
    body: Bytes,
) -> ApiResult<Response> {
    let params: ImportQuery = query(uri.query())?;
    let text = String::from_utf8(body.to_vec())
        .map_err(|_| ApiError(ControlError::invalid("body", "the file is not UTF-8")))?;
    let control = state.control.clone();
    match params.format.as_deref().unwrap_or("plain") {
        "plain" => {
            let kind = params.kind.unwrap_or(TargetKind::Domain);
            let report =
                blocking(move || control.import_list(&actor, &id, &text, kind, &params.reason))
                    .await?;
            let report = crate::feeds::RpzImportReport {
                report,
                warnings: Vec::new(),
            };
            Ok(Json(report).into_response())
        }
        "rpz" => {
            let report =
                blocking(move || control.import_rpz(&actor, &id, &text, &params.reason)).await?;
            Ok(Json(report).into_response())
        }
        other => Err(ApiError(ControlError::invalid(
            "format",
            format!("{other:?} is not a format: use plain or rpz"),
        ))),
    }
}

async fn transition(
    state: ApiState,
    actor: Actor,
    id: String,
    uri: axum::http::Uri,
    to: OrderState,
) -> ApiResult<Response> {
    let ReasonQuery { reason } = query(uri.query())?;
    let control = state.control.clone();
    let view = blocking(move || control.transition(&actor, &id, to, &reason)).await?;
    Ok(Json(view).into_response())
}

async fn shadow(
    State(state): State<ApiState>,
    Extension(actor): Extension<Actor>,
    Path(id): Path<String>,
    uri: axum::http::Uri,
) -> ApiResult<Response> {
    transition(state, actor, id, uri, OrderState::Shadow).await
}

async fn activate(
    State(state): State<ApiState>,
    Extension(actor): Extension<Actor>,
    Path(id): Path<String>,
    uri: axum::http::Uri,
) -> ApiResult<Response> {
    transition(state, actor, id, uri, OrderState::Active).await
}

async fn suspend(
    State(state): State<ApiState>,
    Extension(actor): Extension<Actor>,
    Path(id): Path<String>,
    uri: axum::http::Uri,
) -> ApiResult<Response> {
    transition(state, actor, id, uri, OrderState::Suspended).await
}

async fn lift(
    State(state): State<ApiState>,
    Extension(actor): Extension<Actor>,
    Path(id): Path<String>,
    uri: axum::http::Uri,
) -> ApiResult<Response> {
    transition(state, actor, id, uri, OrderState::Lifted).await
}

async fn suspend_all(
    State(state): State<ApiState>,
    Extension(actor): Extension<Actor>,
    uri: axum::http::Uri,
) -> ApiResult<Response> {
    let ReasonQuery { reason } = query(uri.query())?;
    let control = state.control.clone();
    let ids = blocking(move || control.suspend_all(&actor, &reason)).await?;
    Ok(Json(Suspended { suspended: ids }).into_response())
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct DaysQuery {
    days: Option<u32>,
}

async fn order_stats(
    State(state): State<ApiState>,
    Path(id): Path<String>,
    uri: axum::http::Uri,
) -> ApiResult<Response> {
    let DaysQuery { days } = query(uri.query())?;
    let days = days.unwrap_or(crate::stats::DEFAULT_DAYS);
    let control = state.control.clone();
    let stats = blocking(move || control.order_stats(&id, days)).await?;
    Ok(Json(stats).into_response())
}

async fn daily_stats(State(state): State<ApiState>, uri: axum::http::Uri) -> ApiResult<Response> {
    let DaysQuery { days } = query(uri.query())?;
    let days = days.unwrap_or(crate::stats::DEFAULT_DAYS);
    let control = state.control.clone();
    let stats = blocking(move || control.daily_stats(days)).await?;
    Ok(Json(stats).into_response())
}

async fn list_feeds(State(state): State<ApiState>) -> ApiResult<Response> {
    let control = state.control.clone();
    let feeds = blocking(move || control.feeds()).await?;
    Ok(Json(json!({ "feeds": feeds })).into_response())
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct FeedQuery {
    order: Option<String>,
    #[serde(default)]
    reason: String,
}

async fn import_feed(
    State(state): State<ApiState>,
    Extension(actor): Extension<Actor>,
    Path(name): Path<String>,
    uri: axum::http::Uri,
    body: Bytes,
) -> ApiResult<Response> {
    let params: FeedQuery = query(uri.query())?;
    let feed = CumulativeFeed::from_json(&body)?;
    let control = state.control.clone();
    let ack = blocking(move || {
        control.import_feed(
            &actor,
            &name,
            params.order.as_deref(),
            &feed,
            &params.reason,
        )
    })
    .await?;
    Ok(Json(ack).into_response())
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct AckQuery {
    import: Option<i64>,
}

async fn feed_ack(
    State(state): State<ApiState>,
    Path(name): Path<String>,
    uri: axum::http::Uri,
) -> ApiResult<Response> {
    let params: AckQuery = query(uri.query())?;
    let control = state.control.clone();
    let ack = blocking(move || control.feed_ack(&name, params.import)).await?;
    Ok(Json(ack).into_response())
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct LimitQuery {
    limit: Option<u32>,
}

async fn feed_imports(
    State(state): State<ApiState>,
    Path(name): Path<String>,
    uri: axum::http::Uri,
) -> ApiResult<Response> {
    let LimitQuery { limit } = query(uri.query())?;
    let control = state.control.clone();
    let limit = limit.unwrap_or(100).min(10_000);
    let imports = blocking(move || control.feed_imports(&name, limit)).await?;
    Ok(Json(json!({ "imports": imports })).into_response())
}

/// From memory: answers while an import holds the store.
async fn running_imports(State(state): State<ApiState>) -> ApiResult<Response> {
    Ok(Json(json!({ "running": state.control.running_imports() })).into_response())
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct AuditQuery {
    after: Option<i64>,
    limit: Option<u32>,
}

async fn audit_log(State(state): State<ApiState>, uri: axum::http::Uri) -> ApiResult<Response> {
    let params: AuditQuery = query(uri.query())?;
    let control = state.control.clone();
    let entries = blocking(move || {
        control.audit_log(
            params.after.unwrap_or(0),
            params.limit.unwrap_or(1000).min(10_000),
        )
    })
    .await?;
    Ok(Json(AuditLog { entries }).into_response())
}

async fn audit_verify(State(state): State<ApiState>) -> ApiResult<Response> {
    let control = state.control.clone();
    let report = blocking(move || control.audit_verify()).await?;
    Ok(Json(report).into_response())
}

async fn export_orders(State(state): State<ApiState>) -> ApiResult<Response> {
    let control = state.control.clone();
    let orders = blocking(move || control.export_orders()).await?;
    Ok(Json(json!({ "orders": orders })).into_response())
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RpzQuery {
    jurisdiction: Option<String>,
    zone: Option<String>,
}

async fn export_rpz(State(state): State<ApiState>, uri: axum::http::Uri) -> ApiResult<Response> {
    let params: RpzQuery = query(uri.query())?;
    let jurisdiction = params.jurisdiction.ok_or_else(|| {
        ApiError(ControlError::invalid(
            "jurisdiction",
            "required: a country code, or * for global orders",
        ))
    })?;
    let control = state.control.clone();
    let zone = blocking(move || control.export_rpz(&jurisdiction, params.zone.as_deref())).await?;
    Ok(([(header::CONTENT_TYPE, "text/dns; charset=utf-8")], zone).into_response())
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct TransparencyQuery {
    format: Option<String>,
    jurisdiction: Option<String>,
}

async fn export_transparency(
    State(state): State<ApiState>,
    uri: axum::http::Uri,
) -> ApiResult<Response> {
    let params: TransparencyQuery = query(uri.query())?;
    let format = params.format.clone().unwrap_or_else(|| "json".into());
    if format != "json" && format != "csv" {
        return Err(ApiError(ControlError::invalid(
            "format",
            format!("{format:?} is not a format: use json or csv"),
        )));
    }
    let control = state.control.clone();
    let rows = blocking(move || control.transparency(params.jurisdiction.as_deref())).await?;
    if format == "csv" {
        Ok((
            [(header::CONTENT_TYPE, "text/csv; charset=utf-8")],
            transparency_csv(&rows),
        )
            .into_response())
    } else {
        Ok(Json(json!({ "orders": rows })).into_response())
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct TokenBody {
    role: Role,
    name: String,
}

async fn cache_flush(
    State(state): State<ApiState>,
    Extension(actor): Extension<Actor>,
    body: Bytes,
) -> ApiResult<Response> {
    let request: CacheFlushRequest = if body.iter().all(u8::is_ascii_whitespace) {
        CacheFlushRequest::default()
    } else {
        crate::parse_json(&body)?
    };
    if request.subtree && request.name.is_none() {
        return Err(ApiError(ControlError::invalid(
            "subtree",
            "a subtree flush needs a name (without one the whole cache is flushed)",
        )));
    }
    // The flush first, then its audit entry with what it removed: a store failure after the
    // flush is reported (500), never a flush that did not happen.
    let server = state.server.clone();
    let (name, removed) = server.flush_cache(request.name.as_deref(), request.subtree)?;
    let after = json!({
        "name": name,
        "subtree": request.subtree,
        "removed": removed,
    });
    let control = state.control.clone();
    let audited = name.clone();
    let audit_seq = blocking(move || {
        control.record_cache_flush(&actor, audited.as_deref(), after, &request.reason)
    })
    .await?;
    Ok(Json(CacheFlushView {
        name,
        subtree: request.subtree,
        removed,
        audit_seq,
    })
    .into_response())
}

async fn cache_stats(State(state): State<ApiState>) -> ApiResult<Response> {
    Ok(Json(state.server.cache_stats()?).into_response())
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct CandidateFilter {
    #[serde(default)]
    order: Option<String>,
}

/// The live candidates without the (name, order) pairs already decided, optionally only those
/// with a match for `order`.
async fn live_candidates(
    state: &ApiState,
    order: Option<&str>,
) -> ApiResult<crate::candidates::CandidateList> {
    let mut list = state.server.candidates()?;
    let control = state.control.clone();
    let decided = blocking(move || control.decided_candidates()).await?;
    list.candidates.retain_mut(|candidate| {
        candidate.matches.retain(|m| {
            !decided.contains(&(candidate.name.clone(), m.order.clone()))
                && order.is_none_or(|o| o == m.order)
        });
        !candidate.matches.is_empty()
    });
    Ok(list)
}

async fn list_candidates(
    State(state): State<ApiState>,
    uri: axum::http::Uri,
) -> ApiResult<Response> {
    let filter: CandidateFilter = query(uri.query())?;
    Ok(Json(live_candidates(&state, filter.order.as_deref()).await?).into_response())
}

/// `POST /v1/candidates/{name}/accept` (`accept`) and `/dismiss`. An accepted candidate must
/// be listed now for the order (its signals become the evidence); a dismissal needs not be.
async fn decide_candidate(
    State(state): State<ApiState>,
    Extension(actor): Extension<Actor>,
    Path(name): Path<String>,
    body: Bytes,
    accept: bool,
) -> ApiResult<Response> {
    let decision: crate::candidates::CandidateDecision = parse_json(&body)?;
    let wanted = name.trim_end_matches('.').to_ascii_lowercase();
    let control = state.control.clone();
    if !accept {
        if decision.extension.is_some() {
            return Err(ApiError(ControlError::invalid(
                "extension",
                "only an accepted candidate goes to an extension",
            )));
        }
        let outcome = blocking(move || {
            control.dismiss_candidate(&actor, &wanted, &decision.order, &decision.reason)
        })
        .await?;
        return Ok(Json(outcome).into_response());
    }
    let list = live_candidates(&state, Some(&decision.order)).await?;
    let evidence = list
        .candidates
        .into_iter()
        .find(|c| c.name == wanted)
        .and_then(|c| c.matches.into_iter().next())
        .ok_or_else(|| {
            ApiError(ControlError::NotFound {
                what: "candidate",
                id: format!("{wanted} for order {}", decision.order),
            })
        })?;
    let outcome = blocking(move || {
        control.accept_candidate(
            &actor,
            &wanted,
            &evidence,
            decision.extension.as_deref(),
            &decision.reason,
        )
    })
    .await?;
    Ok(Json(outcome).into_response())
}

async fn create_token(
    State(state): State<ApiState>,
    Extension(actor): Extension<Actor>,
    body: Bytes,
) -> ApiResult<Response> {
    let TokenBody { role, name } = parse_json(&body)?;
    let control = state.control.clone();
    let by = actor.name.clone();
    let token = blocking(move || control.create_token(&by, role, &name)).await?;
    Ok((
        StatusCode::CREATED,
        Json(json!({ "token": token, "role": role })),
    )
        .into_response())
}

/// `GET /v1/tokens`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TokenList {
    /// Every token, oldest first (no secrets).
    pub tokens: Vec<crate::TokenView>,
}

async fn list_tokens(State(state): State<ApiState>) -> ApiResult<Response> {
    let control = state.control.clone();
    let tokens = blocking(move || control.tokens()).await?;
    Ok(Json(TokenList { tokens }).into_response())
}

async fn revoke_token(
    State(state): State<ApiState>,
    Extension(actor): Extension<Actor>,
    uri: axum::http::Uri,
    Path(name): Path<String>,
) -> ApiResult<Response> {
    let why: ReasonQuery = query(uri.query())?;
    let control = state.control.clone();
    let revoked = blocking(move || control.revoke_token(&actor, &name, &why.reason)).await?;
    Ok(Json(json!({ "revoked": revoked })).into_response())
}
