//! The public transparency page: `/transparency` (HTML), `/transparency.json` and a stable page
//! per order (`/transparency/orders/{id}`), no sign-in. Built from the store into a cache that is
//! rebuilt after the store changes (the control plane's revision moves on every committed
//! change, which is what the resolver publishes) or after a minute (orders start and expire by
//! the clock); a request only reads the cache: no store write, no store read while it is fresh.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::extract::{Path, State};
use axum::http::header;
use axum::middleware;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::Router;
use juris_policy::{OrderState, Transparency};
use maud::html;
use serde::Serialize;

use super::view::{document, page, time_text};
use super::{blocking, security_headers, segment, Console, Refusal, Shared};
use crate::api::ApiState;
use crate::control::{Control, TargetStatus};
use crate::error::ControlError;
use crate::export::TransparencyRow;

/// How long a built page is served without looking at the store's revision... at most.
const MAX_AGE: Duration = Duration::from_secs(60);

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

struct Built {
    revision: u64,
    at: Instant,
    report: TransparencyPage,
    json: String,
    html: String,
}

/// The cache of the public report.
pub struct TransparencyCache {
    control: Arc<Control>,
    built: Mutex<Option<Arc<Built>>>,
}

impl std::fmt::Debug for TransparencyCache {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TransparencyCache").finish_non_exhaustive()
    }
}

impl TransparencyCache {
    /// An empty cache over `control`.
    pub fn new(control: Arc<Control>) -> Self {
        TransparencyCache {
            control,
            built: Mutex::new(None),
        }
    }

    fn fresh(&self) -> Option<Arc<Built>> {
        let revision = *self.control.subscribe().borrow();
        let built = self
            .built
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        built
            .as_ref()
            .filter(|b| b.revision == revision && b.at.elapsed() < MAX_AGE)
            .cloned()
    }

    async fn get(&self) -> Result<Arc<Built>, ControlError> {
        if let Some(built) = self.fresh() {
            return Ok(built);
        }
        let control = self.control.clone();
        let built = Arc::new(blocking(move || build(&control)).await?);
        *self
            .built
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner()) = Some(built.clone());
        Ok(built)
    }

    /// The report as it is now (from the cache when fresh).
    pub async fn report(&self) -> Result<TransparencyPage, ControlError> {
        Ok(self.get().await?.report.clone())
    }
}

/// Builds the report: every active order in force now whose transparency is not `none`.
fn build(control: &Control) -> Result<Built, ControlError> {
    // The revision first: a change during the build makes the next request build again.
    let revision = *control.subscribe().borrow();
    let now = control.now();
    let mut jurisdictions: BTreeMap<String, Vec<TransparencyOrder>> = BTreeMap::new();
    for view in control.export_orders()? {
        let order = &view.order;
        let transparency = order.transparency();
        if order.state != OrderState::Active
            || view.effective_state != "active"
            || transparency == Transparency::None
            || order.effective_from.is_some_and(|from| now < from)
        {
            continue;
        }
        let names: Vec<String> = view
            .targets
            .iter()
            .filter(|t| t.status != TargetStatus::NeedsReview)
            .map(|t| t.value.clone())
            .collect();
        let published = TransparencyOrder {
            row: crate::export::row(&view, now),
            url: format!("/transparency/orders/{}", segment(&order.id)),
            transparency,
            names: (transparency == Transparency::Full).then_some(names),
        };
        for code in &order.jurisdictions {
            jurisdictions
                .entry(code.clone())
                .or_default()
                .push(published.clone());
        }
    }
    let report = TransparencyPage {
        generated_at: now.to_string(),
        jurisdictions,
    };
    let json = serde_json::to_string_pretty(&report)
        .map_err(|e| ControlError::Internal(format!("transparency report: {e}")))?;
    let html = render(&report);
    Ok(Built {
        revision,
        at: Instant::now(),
        report,
        json,
        html,
    })
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

fn render(report: &TransparencyPage) -> String {
    let body = html! {
        p { "The legal orders this resolver enforces now, per jurisdiction: who ordered what, when, and how many names. Also as "
            a href="/transparency.json" { "JSON" } ". Generated " (time_text(&report.generated_at)) "." }
        @if report.jurisdictions.is_empty() {
            p { "No order is in force." }
        }
        @for (code, orders) in &report.jurisdictions {
            section aria-labelledby=(format!("j-{code}")) {
                h2 id=(format!("j-{code}")) { "Jurisdiction " (code) " (" (orders.len()) " order(s))" }
                @for order in orders { (order_section(order, true)) }
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
        transparency: TransparencyCache::new(api.control.clone()),
        api,
        sessions: Default::default(),
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
        .report
        .jurisdictions
        .values()
        .flatten()
        .find(|o| o.row.order_id == id)
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
