//! The public transparency page: `/transparency` (HTML), `/transparency.json` and a stable page
//! per order (`/transparency/orders/{id}`), no sign-in.
//!
//! Built off the request path: one background task per control plane (started with the router
//! inside a Tokio runtime, else by the first request) rebuilds it after every
//! committed change (the control plane's revision moves: what the resolver then publishes) and
//! when an order starts or expires by the clock; a request serves the last built copy (it waits
//! only for the first build after start). A build is incremental: each active order's part
//! (its HTML section and its JSON) is rendered when its version (migration 0005: moved by every
//! change of the order or its targets) moved since the last build, and reused otherwise; the
//! page is then the parts put together. No request reads or writes the store.

use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, OnceLock, Weak};
use std::time::Duration;

use axum::extract::{Path, State};
use axum::http::header;
use axum::middleware;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::Router;
use jiff::Timestamp;
use juris_policy::Transparency;
use maud::{html, PreEscaped};
use rusqlite::params;
use serde::Serialize;
use tokio::sync::watch;

use super::view::{document, page, time_text};
use super::{blocking, security_headers, segment, Console, Refusal, Shared};
use crate::api::ApiState;
use crate::control::{Control, OrderView};
use crate::error::ControlError;
use crate::export::TransparencyRow;
use crate::store::rows::{load_order, load_transitions};

/// The longest wait between two builds when nothing changes (a safety net; orders that start or
/// expire are rebuilt for at their time).
const MAX_IDLE: Duration = Duration::from_secs(3600);
/// The wait before a build is tried again after it failed.
const RETRY: Duration = Duration::from_secs(5);

/// The whole public report.
#[derive(Debug, Clone, Serialize)]
pub struct TransparencyPage {
    /// When it was built (RFC 3339, UTC).
    pub generated_at: String,
    /// Per jurisdiction (as written in the orders: `IT`, `EU`, `*`), the orders in force there.
    pub jurisdictions: BTreeMap<String, Vec<TransparencyOrder>>,
}

/// One order in force, as published: the transparency report's row (Lumen CourtOrder fields,
/// `export::TransparencyRow`), its stable page, and the names when its `transparency` is `full`.
#[derive(Debug, Clone, Serialize)]
pub struct TransparencyOrder {
    /// The order as in `juris export transparency`.
    #[serde(flatten)]
    pub row: TransparencyRow,
    /// Its stable page (`/transparency/orders/ID`).
    pub url: String,
    /// `full` or `summary`.
    pub transparency: Transparency,
    /// The names (held targets excluded), only with `transparency: full`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub names: Option<Vec<String>>,
}

/// One active order's part of the page, as of its version.
struct Part {
    /// (version, updated_at) of the order when rendered.
    key: (i64, String),
    /// When it starts and stops being in force (`effective_from`, `expires_at`).
    from: Option<Timestamp>,
    until: Option<Timestamp>,
    /// `None`: its transparency is `none` (not published).
    published: Option<Published>,
}

struct Published {
    order: TransparencyOrder,
    /// Its section of the page (escaped by maud when rendered).
    html: String,
    /// Its JSON object.
    json: String,
}

impl Part {
    fn in_force(&self, now: Timestamp) -> bool {
        self.from.is_none_or(|from| from <= now) && self.until.is_none_or(|until| now < until)
    }
}

struct Built {
    /// The parts by order id (every active order), reused by the next build.
    parts: BTreeMap<String, Arc<Part>>,
    /// The published orders in force, by id.
    published: HashMap<String, Arc<Part>>,
    generated_at: String,
    json: String,
    html: String,
    /// The next time an order starts or expires (a build is due then).
    next_boundary: Option<Timestamp>,
}

type Copy = Option<Result<Arc<Built>, String>>;

/// The built report of one control plane, shared by every router serving it.
pub struct TransparencyCache {
    control: Weak<Control>,
    built: watch::Sender<Copy>,
    /// Whether the background builder runs.
    started: AtomicBool,
}

impl std::fmt::Debug for TransparencyCache {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TransparencyCache").finish_non_exhaustive()
    }
}

impl TransparencyCache {
    /// The cache of `control`'s report (one per control plane). Its builder starts now when
    /// called inside a Tokio runtime, else with the first request.
    pub fn shared(control: &Arc<Control>) -> Arc<TransparencyCache> {
        let slot: &OnceLock<Arc<TransparencyCache>> = &control.transparency;
        let cache = slot
            .get_or_init(|| {
                Arc::new(TransparencyCache {
                    control: Arc::downgrade(control),
                    built: watch::Sender::new(None),
                    started: AtomicBool::new(false),
                })
            })
            .clone();
        cache.start();
        cache
    }

    /// Starts the background builder if it does not run and a Tokio runtime is at hand.
    fn start(self: &Arc<Self>) -> bool {
        if self.started.load(Ordering::Acquire) {
            return true;
        }
        let (Ok(runtime), Some(control)) = (
            tokio::runtime::Handle::try_current(),
            self.control.upgrade(),
        ) else {
            return false;
        };
        if !self.started.swap(true, Ordering::AcqRel) {
            runtime.spawn(builder(Arc::clone(self), control.subscribe()));
        }
        true
    }

    async fn get(self: &Arc<Self>) -> Result<Arc<Built>, ControlError> {
        if !self.start() {
            return self.build_now().await;
        }
        let mut copy = self.built.subscribe();
        let copy = copy
            .wait_for(Option::is_some)
            .await
            .map_err(|_| ControlError::Internal("the transparency builder stopped".into()))?;
        match copy.as_ref() {
            Some(Ok(built)) => Ok(Arc::clone(built)),
            Some(Err(error)) => Err(ControlError::Internal(error.clone())),
            None => Err(ControlError::Internal("no transparency report".into())),
        }
    }

    /// Builds in this request (no background task).
    async fn build_now(&self) -> Result<Arc<Built>, ControlError> {
        let control = self
            .control
            .upgrade()
            .ok_or_else(|| ControlError::Internal("the control plane is gone".into()))?;
        let previous = self.last();
        let built = Arc::new(blocking(move || build(&control, previous.as_deref())).await?);
        self.built.send_replace(Some(Ok(Arc::clone(&built))));
        Ok(built)
    }

    fn last(&self) -> Option<Arc<Built>> {
        match &*self.built.borrow() {
            Some(Ok(built)) => Some(Arc::clone(built)),
            _ => None,
        }
    }

    /// The report as last built.
    pub async fn report(self: &Arc<Self>) -> Result<TransparencyPage, ControlError> {
        let built = self.get().await?;
        let mut jurisdictions: BTreeMap<String, Vec<TransparencyOrder>> = BTreeMap::new();
        for (id, part) in &built.parts {
            let Some(p) = part
                .published
                .as_ref()
                .filter(|_| built.published.contains_key(id))
            else {
                continue;
            };
            for code in &p.order.row.jurisdictions {
                jurisdictions
                    .entry(code.clone())
                    .or_default()
                    .push(p.order.clone());
            }
        }
        Ok(TransparencyPage {
            generated_at: built.generated_at.clone(),
            jurisdictions,
        })
    }
}

/// The background builder: builds now, then after every change of the store's revision and at
/// the next time an order starts or expires; ends when the control plane is dropped.
async fn builder(cache: Arc<TransparencyCache>, mut revision: watch::Receiver<u64>) {
    loop {
        revision.borrow_and_update();
        let Some(control) = cache.control.upgrade() else {
            return;
        };
        let previous = cache.last();
        let clock = Arc::clone(&control);
        let result = blocking(move || build(&control, previous.as_deref())).await;
        let wait = match result {
            Ok(built) => {
                let wait = built
                    .next_boundary
                    .and_then(|at| {
                        let left = at.duration_since(clock.now());
                        Duration::try_from(left).ok()
                    })
                    .map_or(MAX_IDLE, |left| left.min(MAX_IDLE));
                cache.built.send_replace(Some(Ok(Arc::new(built))));
                wait
            }
            Err(error) => {
                tracing::error!(%error, "transparency page not rebuilt");
                if cache.last().is_none() {
                    cache.built.send_replace(Some(Err(error.to_string())));
                }
                RETRY
            }
        };
        drop(clock);
        tokio::select! {
            changed = revision.changed() => if changed.is_err() { return },
            () = tokio::time::sleep(wait.max(Duration::from_millis(10))) => {}
        }
    }
}

/// Builds the report: every active order in force now whose transparency is not `none`,
/// re-rendering only the orders whose version moved since `previous`.
fn build(control: &Control, previous: Option<&Built>) -> Result<Built, ControlError> {
    let now = control.now();
    let active: Vec<(String, i64, String)> = control.store.read(|conn| {
        let mut statement = conn.prepare_cached(
            "SELECT o.id, COALESCE(c.version, 0), o.updated_at
             FROM orders o LEFT JOIN order_target_counts c ON c.order_id = o.id
             WHERE o.state = 'active' ORDER BY o.id",
        )?;
        let rows = statement.query_map([], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))?;
        Ok(rows.collect::<Result<_, _>>()?)
    })?;
    let mut parts = BTreeMap::new();
    for (id, version, updated_at) in active {
        let key = (version, updated_at);
        let reused = previous
            .and_then(|p| p.parts.get(&id))
            .filter(|part| part.key == key);
        let part = match reused {
            Some(part) => Arc::clone(part),
            None => match render_part(control, &id, key, now)? {
                Some(part) => Arc::new(part),
                None => continue,
            },
        };
        parts.insert(id, part);
    }
    let mut jurisdictions: BTreeMap<&str, Vec<&Published>> = BTreeMap::new();
    let mut published = HashMap::new();
    let mut next_boundary: Option<Timestamp> = None;
    for (id, part) in &parts {
        for at in [part.from, part.until].into_iter().flatten() {
            if at > now && next_boundary.is_none_or(|next| at < next) {
                next_boundary = Some(at);
            }
        }
        let Some(p) = part.published.as_ref().filter(|_| part.in_force(now)) else {
            continue;
        };
        published.insert(id.clone(), Arc::clone(part));
        for code in &p.order.row.jurisdictions {
            jurisdictions.entry(code.as_str()).or_default().push(p);
        }
    }
    let generated_at = now.to_string();
    let json = assemble_json(&generated_at, &jurisdictions)?;
    let html = render(&generated_at, &jurisdictions);
    Ok(Built {
        parts,
        published,
        generated_at,
        json,
        html,
        next_boundary,
    })
}

/// The part of active order `id` (`None` if it is no longer active).
fn render_part(
    control: &Control,
    id: &str,
    key: (i64, String),
    now: Timestamp,
) -> Result<Option<Part>, ControlError> {
    control.store.read(|conn| {
        let Some(row) = load_order(conn, id)? else {
            return Ok(None);
        };
        let mut order = row.document;
        order.state = row.state;
        let transparency = order.transparency();
        let (from, until) = (order.effective_from, order.expires_at);
        if transparency == Transparency::None {
            return Ok(Some(Part {
                key,
                from,
                until,
                published: None,
            }));
        }
        let names: Vec<String> = if transparency == Transparency::Full {
            conn.prepare_cached(
                "SELECT value FROM targets WHERE order_id = ?1 AND status != 'needs_review'
                 ORDER BY added_at, kind, value",
            )?
            .query_map(params![id], |r| r.get(0))?
            .collect::<Result<_, _>>()?
        } else {
            Vec::new()
        };
        let (targets, held) = crate::store::rows::target_counts(conn, id)?;
        let view = OrderView {
            parent_status: None,
            effective_state: "active".to_owned(),
            order,
            created_by: row.created_by,
            created_at: row.created_at,
            updated_at: row.updated_at,
            targets: Vec::new(),
            transitions: load_transitions(conn, id)?,
            fleet: None,
        };
        let mut published_row = crate::export::row(&view, now);
        // Shown only while in force: the row of an active order, even if rendered after it
        // expired (then it is never shown).
        published_row.state = "active".to_owned();
        published_row.action_taken = format!("blocked ({})", view.order.action.as_str());
        published_row.targets_count = targets.saturating_sub(held);
        let order = TransparencyOrder {
            url: format!("/transparency/orders/{}", segment(id)),
            transparency,
            names: (transparency == Transparency::Full).then_some(names),
            row: published_row,
        };
        let json = serde_json::to_string(&order)
            .map_err(|e| ControlError::Internal(format!("transparency report: {e}")))?;
        let html = order_section(&order, true).into_string();
        Ok(Some(Part {
            key,
            from,
            until,
            published: Some(Published { order, html, json }),
        }))
    })
}

/// `{"generated_at": …, "jurisdictions": {"IT": [order, …], …}}` from the parts' JSON.
fn assemble_json(
    generated_at: &str,
    jurisdictions: &BTreeMap<&str, Vec<&Published>>,
) -> Result<String, ControlError> {
    let text = |value: &str| {
        serde_json::to_string(value)
            .map_err(|e| ControlError::Internal(format!("transparency report: {e}")))
    };
    let size: usize = jurisdictions
        .values()
        .flatten()
        .map(|p| p.json.len() + 1)
        .sum();
    let mut out = String::with_capacity(size + 256);
    out.push_str("{\"generated_at\":");
    out.push_str(&text(generated_at)?);
    out.push_str(",\"jurisdictions\":{");
    for (i, (code, orders)) in jurisdictions.iter().enumerate() {
        if i > 0 {
            out.push(',');
        }
        out.push_str(&text(code)?);
        out.push_str(":[");
        for (j, order) in orders.iter().enumerate() {
            if j > 0 {
                out.push(',');
            }
            out.push_str(&order.json);
        }
        out.push(']');
    }
    out.push_str("}}");
    Ok(out)
}

fn order_section(order: &TransparencyOrder, heading: bool) -> maud::Markup {
    html! {
        article.card id=(format!("order-{}", order.row.order_id)) {
            @if heading { h3 { a href=(order.url) { (order.row.order_id) } } }
            dl.fields {
                dt { "Authority" } dd { (order.row.issuing_authority) }
                dt { "Reference" } dd { (order.row.case_reference) }
                dt { "Legal basis" } dd { (order.row.legal_basis) }
                dt { "Jurisdictions" } dd { (order.row.jurisdictions.join(", ")) }
                dt { "Received" } dd { (time_text(&order.row.date_received)) }
                dt { "Enforced since" } dd { @if let Some(t) = &order.row.date_enforced { (time_text(t)) } }
                @if let Some(t) = &order.row.expires_at { dt { "Expires" } dd { (time_text(t)) } }
                dt { "Notice" } dd { @if order.row.notice_url.is_empty() { "none published" } @else { a href=(order.row.notice_url) rel="noopener noreferrer" { (order.row.notice_url) } } }
                dt { "Names blocked" } dd { (order.row.targets_count) }
            }
            @match &order.names {
                Some(names) => { details { summary { "The names (" (names.len()) ")" } ul.names { @for n in names { li { (n) } } } } },
                None => { p { "The list of names is confidential; only its size is published." } },
            }
        }
    }
}

/// The page from the parts' sections (each rendered, and escaped, by maud).
fn render(generated_at: &str, jurisdictions: &BTreeMap<&str, Vec<&Published>>) -> String {
    let body = html! {
        p { "The legal orders this resolver enforces now, per jurisdiction: who ordered what, when, and how many names. Also as "
            a href="/transparency.json" { "JSON" } ". Generated " (time_text(generated_at)) ", after the last change." }
        @if jurisdictions.is_empty() {
            p { "No order is in force." }
        }
        @for (code, orders) in jurisdictions {
            section aria-labelledby=(format!("j-{code}")) {
                h2 id=(format!("j-{code}")) { "Jurisdiction " (code) " (" (orders.len()) " order(s))" }
                @for order in orders { (PreEscaped(order.html.as_str())) }
            }
        }
    };
    page_html("Transparency report", body)
}

fn page_html(title: &str, body: maud::Markup) -> String {
    document(title, None, "", body).into_string()
}

pub(crate) fn routes() -> Router<Shared> {
    Router::new()
        .route("/transparency", get(html_report))
        .route("/transparency.json", get(json_report))
        .route("/transparency/orders/{id}", get(order_report))
}

/// The public listener's router (`[control] public_listen`): the transparency page and the
/// assets, nothing else.
pub fn public_router(api: ApiState) -> Router {
    let console = Arc::new(Console {
        transparency: TransparencyCache::shared(&api.control),
        api,
    });
    routes()
        .merge(super::asset_routes())
        .layer(middleware::from_fn(security_headers))
        .with_state(console)
}

async fn html_report(State(console): State<Shared>) -> Result<Response, Refusal> {
    let built = console.transparency.get().await?;
    Ok((
        [(header::CONTENT_TYPE, "text/html; charset=utf-8")],
        built.html.clone(),
    )
        .into_response())
}

async fn json_report(State(console): State<Shared>) -> Result<Response, Refusal> {
    let built = console.transparency.get().await?;
    Ok((
        [
            (header::CONTENT_TYPE, "application/json"),
            (header::ACCESS_CONTROL_ALLOW_ORIGIN, "*"),
        ],
        built.json.clone(),
    )
        .into_response())
}

async fn order_report(
    State(console): State<Shared>,
    Path(id): Path<String>,
) -> Result<Response, Refusal> {
    let built = console.transparency.get().await?;
    let order = built
        .published
        .get(&id)
        .and_then(|part| part.published.as_ref())
        .map(|p| &p.order)
        .ok_or(ControlError::NotFound {
            what: "order in force",
            id: id.clone(),
        })?;
    Ok(page(
        &format!("Order {id}"),
        None,
        "",
        html! {
            (order_section(order, false))
            p { a href="/transparency" { "Every order in force" } }
        },
    ))
}

#[cfg(test)]
#[allow(clippy::unwrap_used, reason = "test code")]
mod tests {
    use super::*;
    use crate::control::{Actor, ControlConfig, Role, SystemClock};
    use crate::store::Store;
    use juris_policy::{Order, OrderState, Target, TargetKind};

    fn order(id: &str, extra: &str) -> Order {
        Order::from_json(
            format!(
                r#"{{"id": "{id}", "kind": "court_order", "authority": "A", "jurisdictions": ["IT"],
                    "action": "nxdomain", "state": "active"{extra},
                    "targets": [{{"type": "subtree", "value": "{}.example"}}]}}"#,
                id.to_lowercase()
            )
            .as_bytes(),
        )
        .unwrap()
    }

    #[test]
    fn a_build_re_renders_only_the_orders_that_changed() {
        let control = Control::new(
            Store::open_in_memory().unwrap(),
            &ControlConfig::default(),
            Arc::new(SystemClock),
        )
        .unwrap();
        let admin = Actor {
            name: "root".into(),
            role: Role::Admin,
        };
        for o in [
            order("ONE", ""),
            order("TWO", ""),
            order("HIDDEN", r#", "transparency": "none""#),
            order("LATER", r#", "effective_from": "2999-01-01T00:00:00Z""#),
        ] {
            control.apply_order(&admin, o, true, true, "").unwrap();
        }
        let first = build(&control, None).unwrap();
        let ids: Vec<&String> = first.parts.keys().collect();
        assert_eq!(ids, ["HIDDEN", "LATER", "ONE", "TWO"]);
        let mut shown: Vec<&String> = first.published.keys().collect();
        shown.sort();
        assert_eq!(shown, ["ONE", "TWO"], "not `none`, and in force now");
        assert_eq!(
            first.next_boundary,
            Some("2999-01-01T00:00:00Z".parse().unwrap()),
            "a build is due when LATER starts"
        );

        // Nothing changed: every part is reused.
        let again = build(&control, Some(&first)).unwrap();
        for (id, part) in &first.parts {
            assert!(Arc::ptr_eq(part, &again.parts[id]), "{id} was re-rendered");
        }

        // A future domain for ONE, TWO lifted: ONE is re-rendered, the rest reused.
        control
            .add_targets(
                &admin,
                "ONE",
                vec![Target::new(TargetKind::Domain, "new.example")],
                "",
            )
            .unwrap();
        control
            .transition(&admin, "TWO", OrderState::Lifted, "")
            .unwrap();
        let third = build(&control, Some(&again)).unwrap();
        assert!(!Arc::ptr_eq(&again.parts["ONE"], &third.parts["ONE"]));
        assert!(Arc::ptr_eq(&again.parts["HIDDEN"], &third.parts["HIDDEN"]));
        assert!(!third.parts.contains_key("TWO"));
        let report: serde_json::Value = serde_json::from_str(&third.json).unwrap();
        let it = report["jurisdictions"]["IT"].as_array().unwrap();
        assert_eq!(it.len(), 1);
        assert_eq!(it[0]["order_id"], "ONE");
        assert_eq!(
            it[0]["names"],
            serde_json::json!(["one.example", "new.example"])
        );
        assert_eq!(it[0]["targets_count"], 2);
        assert!(third.html.contains("new.example") && !third.html.contains("two.example"));
    }
}
