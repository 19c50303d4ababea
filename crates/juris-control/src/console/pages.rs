//! The console's pages and form handlers. Each calls [`Control`](crate::Control) (or the
//! [`ServerView`](crate::ServerView)) with the signed-in actor, exactly as the JSON API does.

use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::{header, HeaderMap, Uri};
use axum::response::Response;
use juris_policy::{Order, OrderState};
use maud::{html, Markup};
use serde_json::{json, Map, Value};

use super::chart;
use super::session::{self, LOGIN_COOKIE, SESSION_COOKIE, SESSION_TTL};
use super::view::{self, field, field_in, page, select, state_badge, time, time_left, time_text};
use super::{
    blocking, query_form, see_other, segment, user, Form, PageResult, Posted, Refusal, Shared, User,
};
use crate::api::ExplainRequest;
use crate::control::{OrderFilter, OrderQuery, Role};
use crate::error::ControlError;
use crate::safeguards::Protected;

/// Orders per page of the list.
const PAGE: u64 = 50;
/// Orders with held targets listed on the dashboard (the rest through the list's filter).
const REVIEW_SHOWN: u32 = 20;
/// Audit entries per page.
const AUDIT_PAGE: u32 = 50;
/// Targets shown on an order's page.
const TARGETS_SHOWN: usize = 500;

const KINDS: &[(&str, &str)] = &[
    ("court_order", "Court order"),
    ("regulator_order", "Regulator order"),
    ("feed_ticket", "Feed ticket"),
    ("extension", "Extension (future domains)"),
    ("operator_security", "Operator security"),
    ("client_filter", "Client filter"),
];
const ACTIONS: &[(&str, &str)] = &[
    ("nxdomain", "NXDOMAIN"),
    ("refused", "REFUSED"),
    ("nodata", "NODATA (empty answer)"),
];
const TRANSPARENCY: &[(&str, &str)] = &[
    ("", "Default for the kind"),
    ("full", "Full: the order and its names"),
    ("summary", "Summary: counts only"),
    ("none", "None: not listed"),
];
/// Text fields of the order form: (name, label, hint); who ordered what under which case.
const PARTIES: &[(&str, &str, Option<&str>)] = &[
    (
        "authority",
        "Issuing authority",
        Some("e.g. Tribunale di Milano"),
    ),
    ("reference", "Case reference", None),
    ("legal_basis", "Legal basis", None),
    ("requested_by", "Requested by", Some("comma-separated")),
    (
        "jurisdictions",
        "Jurisdictions",
        Some("ISO 3166-1 alpha-2 codes, EU, or * (global), comma-separated"),
    ),
];
/// Text fields of the order form: when, the parent, and what users are told.
const DATES_AND_NOTICE: &[(&str, &str, Option<&str>)] = &[
    (
        "effective_from",
        "Effective from (UTC)",
        Some("RFC 3339, e.g. 2024-05-01T00:00:00Z; empty: immediately"),
    ),
    (
        "comply_by",
        "Comply by (UTC)",
        Some("the deadline, RFC 3339"),
    ),
    ("expires_at", "Expires at (UTC)", Some("empty: never")),
    ("parent", "Parent order (extensions only)", None),
    ("notice_text", "Notice shown to users", None),
    (
        "notice_lang",
        "Notice language",
        Some("BCP 47, e.g. en, it"),
    ),
    ("notice_url", "Notice URL", Some("e.g. the Lumen notice")),
];
const TARGET_KINDS: &[(&str, &str)] = &[
    ("subtree", "subtree (the name and below)"),
    ("domain", "domain (exactly the name)"),
    ("ip", "ip (answer addresses)"),
    ("nsdname", "nsdname (name server name)"),
    ("nsip", "nsip (name server address)"),
];
const ROLES: &[(&str, &str)] = &[
    ("viewer", "viewer"),
    ("operator", "operator"),
    ("editor", "editor"),
    ("approver", "approver"),
    ("admin", "admin"),
];

// ---- sign-in ---------------------------------------------------------------------------------

pub(crate) async fn login_form(headers: HeaderMap) -> Response {
    login_page(&headers, None)
}

fn login_page(headers: &HeaderMap, error: Option<&str>) -> Response {
    let csrf = session::random_hex();
    let body = html! {
        p { "Sign in with an API token. An administrator creates one with "
            code { "juris token create --role admin" } " (or on the Tokens page)." }
        form.card method="post" action="/ui/login" {
            input type="hidden" name="csrf" value=(csrf);
            div.field.invalid[error.is_some()] {
                label for="token" { "API token" }
                input type="password" id="token" name="token" autocomplete="current-password"
                    required aria-invalid=[error.map(|_| "true")]
                    aria-describedby=[error.map(|_| "token-error")];
                @if let Some(error) = error { p.field-error id="token-error" { (error) } }
            }
            button type="submit" { "Sign in" }
        }
    };
    let mut response = page("Sign in", None, "", body);
    let cookie = session::set_cookie(
        LOGIN_COOKIE,
        &csrf,
        "/ui/login",
        std::time::Duration::from_secs(3600),
        session::over_tls(headers),
    );
    if let Ok(value) = cookie.parse() {
        response.headers_mut().insert(header::SET_COOKIE, value);
    }
    response
}

pub(crate) async fn login(
    State(console): State<Shared>,
    headers: HeaderMap,
    body: Bytes,
) -> PageResult {
    let form = Form::parse(&body);
    let expected = session::cookie(&headers, LOGIN_COOKIE).unwrap_or_default();
    if expected.is_empty() || !session::same_secret(form.text("csrf"), &expected) {
        return Err(Refusal::Error(ControlError::Forbidden(
            "the sign-in form's CSRF token is missing or wrong: reload the page and try again"
                .into(),
        )));
    }
    let token = form.text("token").to_owned();
    let control = console.api.control.clone();
    match blocking(move || control.start_session(&token, SESSION_TTL)).await {
        Ok((id, _)) => {
            let mut response = see_other("/ui/");
            let cookie = session::set_cookie(
                SESSION_COOKIE,
                &id,
                "/",
                SESSION_TTL,
                session::over_tls(&headers),
            );
            if let Ok(value) = cookie.parse() {
                response.headers_mut().insert(header::SET_COOKIE, value);
            }
            Ok(response)
        }
        Err(ControlError::Unauthorized(reason)) => {
            let mut response = login_page(&headers, Some(&format!("Not signed in: {reason}.")));
            *response.status_mut() = axum::http::StatusCode::UNAUTHORIZED;
            Ok(response)
        }
        Err(error) => Err(error.into()),
    }
}

pub(crate) async fn logout(
    State(console): State<Shared>,
    headers: HeaderMap,
    signed_in: Posted,
) -> PageResult {
    let control = console.api.control.clone();
    let session = signed_in.user.session;
    blocking(move || control.end_session(&session)).await?;
    let mut response = see_other("/ui/login");
    let cookie = session::set_cookie(
        SESSION_COOKIE,
        "",
        "/",
        std::time::Duration::ZERO,
        session::over_tls(&headers),
    );
    if let Ok(value) = cookie.parse() {
        response.headers_mut().insert(header::SET_COOKIE, value);
    }
    Ok(response)
}

// ---- dashboard -------------------------------------------------------------------------------

/// The `days` of a page's query (the chart's window), within the retention; default 30.
fn days_of(console: &Shared, query: &Form) -> u32 {
    let retention = console.api.control.stats_retention_days();
    query
        .text("days")
        .parse::<u32>()
        .unwrap_or(crate::stats::DEFAULT_DAYS)
        .clamp(1, retention)
}

pub(crate) async fn dashboard(
    State(console): State<Shared>,
    headers: HeaderMap,
    uri: Uri,
) -> PageResult {
    let user = user(&console, &headers).await?;
    let days = days_of(&console, &query_form(&uri));
    let control = console.api.control.clone();
    let (overview, status, daily) = blocking(move || {
        Ok((
            control.overview(REVIEW_SHOWN)?,
            control.status()?,
            control.daily_stats(days)?,
        ))
    })
    .await?;
    let retention = console.api.control.stats_retention_days();
    let server = console.api.server.snapshot();
    let now = console.api.control.now();
    let stored: u64 = status.orders.values().sum();
    let body = html! {
        @if stored == 0 {
            section.card.empty aria-labelledby="start" {
                h2 id="start" { "Welcome: no orders yet" }
                ol {
                    li { "Enter the first order you received: " a href="/ui/orders/new" { "create an order" } "." }
                    li { "Put it in shadow mode to count what it would block, then activate it." }
                    li { "Check a name with " a href="/ui/explain" { "Explain" } " as a client in that country would." }
                    li { "Give your colleagues their own tokens on the " a href="/ui/tokens" { "Tokens" } " page (admin)." }
                }
            }
        }
        section aria-labelledby="deadlines" {
            h2 id="deadlines" { "Deadlines" }
            @if status.deadlines.is_empty() {
                p { "No order that is not active has its deadline within the warning period." }
            } @else {
                div.scroll tabindex="0" { table {
                    caption { "Orders not active whose deadline (comply_by) is near or past" }
                    thead { tr { th scope="col" { "Order" } th scope="col" { "State" } th scope="col" { "Comply by" } th scope="col" { "Time left" } } }
                    tbody {
                        @for deadline in &status.deadlines {
                            tr.urgent {
                                td { a href=(format!("/ui/orders/{}", segment(&deadline.order))) { (deadline.order) } }
                                td { (state_badge(&deadline.state)) }
                                td { (time(deadline.comply_by)) }
                                td { strong { (time_left(deadline.comply_by, now)) } }
                            }
                        }
                    }
                } }
            }
        }
        section aria-labelledby="in-force" {
            h2 id="in-force" { "Orders in force per jurisdiction" }
            @if overview.in_force.is_empty() {
                p { "No order is active." }
            } @else {
                div.scroll tabindex="0" { table {
                    thead { tr { th scope="col" { "Jurisdiction" } th scope="col" { "Orders" } th scope="col" { "Names" } } }
                    tbody {
                        @for j in &overview.in_force {
                            tr {
                                th scope="row" { a href=(format!("/ui/orders?jurisdiction={}", segment(&j.code))) { (j.code) } }
                                td { (j.orders) }
                                td { (j.targets) }
                            }
                        }
                    }
                } }
            }
        }
        section aria-labelledby="review" {
            h2 id="review" { "Review queue" }
            @if overview.review.is_empty() {
                p { "No target is held by a safeguard." }
            } @else {
                ul { @for (id, held) in &overview.review {
                    li { a href=(format!("/ui/orders/{}", segment(id))) { (id) } ": " (held) " target(s) held for review" }
                } }
                @if overview.review_orders > overview.review.len() as u64 {
                    p { a href="/ui/orders?needs_review=true" { "All " (overview.review_orders) " orders with targets held for review" } }
                }
            }
        }
        section aria-labelledby="policy" {
            h2 id="policy" { "Policy" }
            dl {
                dt { "Generation in force" } dd { (server.policy_generation) }
                dt { "Last change to enforcement" }
                dd { @match status.last_change_to_enforcement_ms { Some(ms) => { (format!("{ms:.0} ms")) }, None => { "no change since start" } } }
                @if let Some(error) = &server.policy_error { dt { "Refused policy" } dd.error { (error) } }
                dt { "Orders stored" } dd { (stored) }
                dt { "Targets" } dd { (status.targets) }
            }
        }
        section aria-labelledby="per-day" {
            h2 id="per-day" { "Blocked answers per day" }
            @let blocked: Vec<(String, u64)> = daily.totals.iter().map(|t| (t.day.clone(), t.blocked)).collect();
            figure.chart.wide {
                figcaption { (blocked.iter().map(|(_, n)| n).sum::<u64>()) " answers blocked from " (daily.from) " to " (daily.to) " (UTC days, every order)" }
                (chart::bars("Blocked answers", &blocked, "bar"))
            }
            (chart::windows("/ui/", days, retention))
            details {
                summary { "The numbers per day" }
                div.scroll tabindex="0" { table {
                    caption { "Answers blocked and shadow matches per UTC day, every order (counted by the resolver, stored every control.stats_flush_seconds: a minute by default)" }
                    thead { tr { th scope="col" { "Day (UTC)" } th scope="col" { "Blocked" } th scope="col" { "Shadow matches" } } }
                    tbody { @for t in daily.totals.iter().rev() {
                        tr { td { (t.day) } td { (t.blocked) } td { (t.shadow) } }
                    } }
                } }
            }
        }
        section aria-labelledby="blocked" {
            h2 id="blocked" { "Blocked answers since the resolver started" }
            (counts_table(&server.blocks, None))
        }
    };
    Ok(page("Dashboard", Some(&user), "/ui/", body))
}

fn counts_table(counts: &[crate::api::BlockCount], order: Option<&str>) -> Markup {
    let rows: Vec<_> = counts
        .iter()
        .filter(|c| order.is_none_or(|id| c.order == id))
        .collect();
    let max = rows.iter().map(|c| c.count).max().unwrap_or(0);
    html! {
        @if rows.is_empty() {
            p { "None yet." }
        } @else {
            div.scroll tabindex="0" { table.chart {
                thead { tr { th scope="col" { "Order" } th scope="col" { "Jurisdiction" } th scope="col" { "Answers" } } }
                tbody { @for c in &rows {
                    tr {
                        td { a href=(format!("/ui/orders/{}", segment(&c.order))) { (c.order) } }
                        td { (c.jurisdiction) }
                        td { meter min="0" max=(max) value=(c.count) aria-hidden="true" {} " " (c.count) }
                    }
                } }
            } }
        }
    }
}

// ---- orders ----------------------------------------------------------------------------------

pub(crate) async fn orders(
    State(console): State<Shared>,
    headers: HeaderMap,
    uri: Uri,
) -> PageResult {
    let (user, query) = (user(&console, &headers).await?, query_form(&uri));
    let filter = OrderFilter {
        state: Some(query.text("state").to_owned()).filter(|s| !s.is_empty()),
        jurisdiction: Some(query.text("jurisdiction").to_owned()).filter(|s| !s.is_empty()),
        kind: Some(query.text("kind").to_owned()).filter(|s| !s.is_empty()),
        needs_review: (query.text("needs_review") == "true").then_some(true),
    };
    let page_no: u64 = query.text("page").parse().unwrap_or(1).max(1);
    let text = |name: &str| Some(query.text(name).to_owned()).filter(|s| !s.is_empty());
    let request = OrderQuery {
        filter,
        authority: text("authority"),
        text: text("q"),
        offset: (page_no - 1).saturating_mul(PAGE),
        limit: Some(PAGE),
    };
    let control = console.api.control.clone();
    let found = blocking(move || control.order_page(&request)).await?;
    let pages = found.total.div_ceil(PAGE).max(1);
    let shown = &found.orders;
    let link = |page: u64| {
        let mut serializer = form_urlencoded::Serializer::new(String::new());
        for key in [
            "state",
            "jurisdiction",
            "kind",
            "authority",
            "q",
            "needs_review",
        ] {
            if !query.text(key).is_empty() {
                serializer.append_pair(key, query.text(key));
            }
        }
        serializer.append_pair("page", &page.to_string());
        format!("/ui/orders?{}", serializer.finish())
    };
    let states = [
        ("", "any"),
        ("draft", "draft"),
        ("shadow", "shadow"),
        ("active", "active"),
        ("suspended", "suspended"),
        ("lifted", "lifted"),
        ("expired", "expired"),
    ];
    let mut kinds = vec![("", "any")];
    kinds.extend_from_slice(KINDS);
    let body = html! {
        @if user.can(Role::Editor) { p { a.button href="/ui/orders/new" { "Create an order" } } }
        form.filters method="get" action="/ui/orders" role="search" {
            (select("state", "State", &states, query.text("state"), None))
            (field("jurisdiction", "Jurisdiction", query.text("jurisdiction"), Some("e.g. IT, or * for global orders"), None))
            (select("kind", "Kind", &kinds, query.text("kind"), None))
            (field("authority", "Authority", query.text("authority"), None, None))
            (field("q", "Text", query.text("q"), Some("id, reference or authority"), None))
            button type="submit" { "Filter" }
        }
        @if found.total == 0 {
            p { "No order matches." }
        } @else {
            div.scroll tabindex="0" { table {
                caption { (found.total) " order(s), page " (page_no) " of " (pages) }
                thead { tr {
                    th scope="col" { "Order" } th scope="col" { "State" } th scope="col" { "Authority" }
                    th scope="col" { "Reference" } th scope="col" { "Jurisdictions" } th scope="col" { "Targets" }
                    th scope="col" { "Comply by" }
                } }
                tbody { @for o in shown {
                    tr {
                        td { a href=(format!("/ui/orders/{}", segment(&o.id))) { (o.id) } }
                        td { (state_badge(&o.effective_state)) }
                        td { (o.authority) }
                        td { (o.reference) }
                        td { (o.jurisdictions.join(", ")) }
                        td { (o.targets) @if o.needs_review > 0 { " (" (o.needs_review) " held)" } }
                        td { @if let Some(t) = o.comply_by { (time(t)) } }
                    }
                } }
            } }
            nav.pager aria-label="Pages" {
                @if page_no > 1 { a href=(link(page_no - 1)) rel="prev" { "Previous page" } }
                @if page_no < pages { a href=(link(page_no + 1)) rel="next" { "Next page" } }
            }
        }
    };
    Ok(page("Orders", Some(&user), "/ui/orders", body))
}

pub(crate) async fn order(
    State(console): State<Shared>,
    headers: HeaderMap,
    Path(id): Path<String>,
    uri: Uri,
) -> PageResult {
    let user = user(&console, &headers).await?;
    let days = days_of(&console, &query_form(&uri));
    order_page(&console, &user, &id, days, None).await
}

async fn order_page(
    console: &Shared,
    user: &User,
    id: &str,
    days: u32,
    notice: Option<Markup>,
) -> PageResult {
    let control = console.api.control.clone();
    let key = id.to_owned();
    let ((view, total), audit, stats) = blocking(move || {
        let view = control.order_preview(&key, TARGETS_SHOWN)?;
        let audit = control.audit_for(&format!("order:{key}"), 50)?;
        let stats = control.order_stats(&key, days)?;
        Ok((view, audit, stats))
    })
    .await?;
    let retention = console.api.control.stats_retention_days();
    let server = console.api.server.snapshot();
    let order = &view.order;
    let state = order.state;
    let path = format!("/ui/orders/{}", segment(id));
    let moves: Vec<(&str, &str, Role)> = [
        (
            "shadow",
            "Shadow (count only)",
            Role::Editor,
            matches!(
                state,
                OrderState::Draft | OrderState::Active | OrderState::Suspended
            ),
        ),
        (
            "active",
            "Activate",
            Role::Approver,
            matches!(
                state,
                OrderState::Draft | OrderState::Shadow | OrderState::Suspended
            ),
        ),
        (
            "suspended",
            "Suspend",
            Role::Approver,
            matches!(state, OrderState::Shadow | OrderState::Active),
        ),
        (
            "lifted",
            "Lift",
            Role::Approver,
            state != OrderState::Lifted,
        ),
    ]
    .into_iter()
    .filter(|(_, _, role, allowed)| *allowed && user.can(*role))
    .map(|(to, label, role, _)| (to, label, role))
    .collect();
    let shadow: u64 = server
        .shadow_matches
        .iter()
        .filter(|c| c.order == order.id)
        .map(|c| c.count)
        .sum();
    let body = html! {
        @if let Some(notice) = notice { (notice) }
        p { (state_badge(&view.effective_state)) " "
            @if user.can(Role::Editor) { a href=(format!("{path}/edit")) { "Edit the order" } } }
        dl.fields {
            dt { "Kind" } dd { (order.kind.as_str()) }
            dt { "Authority" } dd { (order.authority) }
            dt { "Reference" } dd { (order.reference) }
            dt { "Legal basis" } dd { (order.legal_basis) }
            dt { "Requested by" } dd { (order.requested_by.join(", ")) }
            dt { "Jurisdictions" } dd { (order.jurisdictions.join(", ")) }
            dt { "Action" } dd { (order.action.as_str()) @if order.block_addresses { ", also on answer addresses" } }
            dt { "Effective from" } dd { @match order.effective_from { Some(t) => (time(t)), None => "immediately" } }
            dt { "Comply by" } dd { @if let Some(t) = order.comply_by { (time(t)) " (" (time_left(t, console.api.control.now())) ")" } }
            dt { "Expires" } dd { @match order.expires_at { Some(t) => (time(t)), None => "never" } }
            dt { "Notice" } dd { (order.notice.text) @if !order.notice.url.is_empty() { " " a href=(order.notice.url) rel="noopener noreferrer" { (order.notice.url) } } }
            @if let Some(parent) = &order.parent {
                dt { "Extends" } dd { a href=(format!("/ui/orders/{}", segment(parent))) { (parent) } @if let Some(s) = &view.parent_status { " (" (s) ")" } }
            }
            dt { "Transparency" } dd { (order.transparency().as_str()) @if order.transparency.is_none() { " (default for the kind)" } }
            dt { "Created" } dd { (time_text(&view.created_at)) " by " (view.created_by) }
        }
        @if !moves.is_empty() || state == OrderState::Shadow {
            section aria-labelledby="lifecycle" {
                h2 id="lifecycle" { "Lifecycle" }
                @if state != OrderState::Active && state != OrderState::Lifted {
                    div.card.impact aria-labelledby="impact" {
                        h3 id="impact" { "Shadow-mode impact" }
                        p { "In shadow mode this order would have blocked "
                            strong { (stats.shadow) } " answer(s) from " (stats.from) " to " (stats.to)
                            " (UTC days, per-day counters the server stores every control.stats_flush_seconds: a minute by default), and " strong { (shadow) } " since the resolver started." }
                        @if state == OrderState::Draft && stats.shadow == 0 && shadow == 0 {
                            p { "A draft counts nothing: put it in shadow mode to see what it would block before activating it." }
                        }
                        (chart::per_jurisdiction(&stats.from, &stats.to, &stats.counts, "Shadow matches", |c| c.shadow))
                    }
                }
                @if moves.is_empty() { p { "Your role cannot change this order's state." } } @else {
                form.card method="post" action=(format!("{path}/state")) {
                    (view::csrf(user))
                    (field("reason", "Reason (recorded in the audit log)", "", None, None))
                    div.buttons { @for (to, label, _) in &moves {
                        button type="submit" name="to" value=(to) class=(if *to == "lifted" || *to == "suspended" { "danger" } else { "" }) { (label) }
                    } }
                }
                }
            }
        }
        section aria-labelledby="targets" {
            h2 id="targets" { "Targets (" (total) ")" }
            @if total > view.targets.len() as u64 { p { "The first " (view.targets.len()) " by type and name are shown; the export has them all." } }
            div.scroll tabindex="0" { table {
                thead { tr { th scope="col" { "Type" } th scope="col" { "Value" } th scope="col" { "Status" }
                    th scope="col" { "Added" } th scope="col" { "By" } th scope="col" { "Evidence" } } }
                tbody { @for t in &view.targets {
                    tr {
                        td { (t.kind.as_str()) } td { (t.value) }
                        td { (t.status.as_str()) @if let Some(r) = &t.review_reason { ": " (r) } }
                        td { (time_text(&t.added_at)) } td { (t.added_by) }
                        td { @if let Some(e) = &t.evidence { (e) } }
                    }
                } }
            } }
            @if user.can(Role::Editor) {
                form.card method="post" action=(format!("{path}/targets")) aria-labelledby="add-target" {
                    h3 id="add-target" { "Add a target (future domain)" }
                    (view::csrf(user))
                    (select("type", "Type", TARGET_KINDS, "subtree", None))
                    (field("value", "Name or address", "", None, None))
                    (field("evidence", "Evidence", "", Some("URL or document reference"), None))
                    (field_in("add-", "reason", "Reason", "", None, None))
                    button type="submit" { "Add the target" }
                }
            }
        }
        section aria-labelledby="per-day" {
            h2 id="per-day" { "Blocked answers per day and jurisdiction" }
            p { (stats.blocked) " answer(s) blocked from " (stats.from) " to " (stats.to) " (UTC days)." }
            (chart::per_jurisdiction(&stats.from, &stats.to, &stats.counts, "Blocked answers", |c| c.blocked))
            (chart::windows(&path, days, retention))
        }
        section aria-labelledby="blocked" {
            h2 id="blocked" { "Blocked answers since the resolver started" }
            (counts_table(&server.blocks, Some(&order.id)))
        }
        section aria-labelledby="history" {
            h2 id="history" { "Lifecycle history" }
            ol { @for t in &view.transitions {
                li { (time_text(&t.at)) ": " (t.from.as_deref().unwrap_or("new")) " → " (t.to) " by " (t.actor)
                    @if !t.reason.is_empty() { " (" (t.reason) ")" } }
            } }
        }
        section aria-labelledby="audit" {
            h2 id="audit" { "Audit entries" }
            (audit_table(&audit))
        }
    };
    Ok(page(
        &format!("Order {}", order.id),
        Some(user),
        "/ui/orders",
        body,
    ))
}

fn audit_table(entries: &[crate::audit::AuditEntry]) -> Markup {
    html! {
        div.scroll tabindex="0" { table {
            thead { tr { th scope="col" { "#" } th scope="col" { "Time" } th scope="col" { "Who" }
                th scope="col" { "What" } th scope="col" { "On" } th scope="col" { "Reason" } } }
            tbody { @for e in entries {
                tr { td { (e.seq) } td { (time_text(&e.time)) } td { (e.actor) } td { (e.action) }
                     td { (e.object) } td { (e.reason) } }
            } }
        } }
    }
}

/// `GET /ui/orders/{id}/{action}`: `edit` is the edit form.
pub(crate) async fn order_get(
    State(console): State<Shared>,
    headers: HeaderMap,
    Path((id, action)): Path<(String, String)>,
) -> PageResult {
    match action.as_str() {
        "edit" => edit_order(&console, &headers, id).await,
        _ => Err(not_here(&action)),
    }
}

/// `POST /ui/orders/{id}/{action}`: `edit` saves the edit form, `targets` adds a target,
/// `state` moves the order through its lifecycle. Every one needs the CSRF token.
pub(crate) async fn order_post(
    State(console): State<Shared>,
    Path((id, action)): Path<(String, String)>,
    Posted { user, form }: Posted,
) -> PageResult {
    match action.as_str() {
        "edit" => save_order(&console, &user, Some(id), &form).await,
        "targets" => add_target(&console, &user, id, &form).await,
        "state" => change_state(&console, &user, id, &form).await,
        _ => Err(not_here(&action)),
    }
}

fn not_here(action: &str) -> Refusal {
    Refusal::Error(ControlError::NotFound {
        what: "page",
        id: action.to_owned(),
    })
}

async fn change_state(console: &Shared, user: &User, id: String, form: &Form) -> PageResult {
    let to = match form.text("to") {
        "draft" => OrderState::Draft,
        "shadow" => OrderState::Shadow,
        "active" => OrderState::Active,
        "suspended" => OrderState::Suspended,
        "lifted" => OrderState::Lifted,
        other => {
            return Err(ControlError::invalid("to", format!("{other:?} is not a state")).into())
        }
    };
    let (control, actor, key, reason) = acting(console, user, &id, form);
    blocking(move || control.transition(&actor, &key, to, &reason)).await?;
    Ok(see_other(&format!("/ui/orders/{}", segment(&id))))
}

/// What a change of order `id` needs off the runtime: the control plane, the actor, the id,
/// the form's reason.
fn acting(
    console: &Shared,
    user: &User,
    id: &str,
    form: &Form,
) -> (std::sync::Arc<crate::Control>, crate::Actor, String, String) {
    (
        console.api.control.clone(),
        user.actor.clone(),
        id.to_owned(),
        form.text("reason").to_owned(),
    )
}

async fn add_target(console: &Shared, user: &User, id: String, form: &Form) -> PageResult {
    let mut target = json!({"type": form.text("type"), "value": form.text("value")});
    if !form.text("evidence").is_empty() {
        target["evidence"] = json!(form.text("evidence"));
    }
    let (control, actor, key, reason) = acting(console, user, &id, form);
    let result = blocking(move || {
        let target: juris_policy::Target = crate::parse_json(target.to_string().as_bytes())
            .map_err(|e| ControlError::invalid("type", e.reason()))?;
        control.add_targets(&actor, &key, vec![target], &reason)
    })
    .await;
    let notice = match result {
        Ok(report) => html! { p.notice role="status" {
            @if !report.added.is_empty() { "Added: " (report.added.iter().map(|t| t.value.as_str()).collect::<Vec<_>>().join(", ")) ". " }
            @if !report.held.is_empty() { "Held for review by a safeguard: " (report.held.iter().map(|t| t.value.as_str()).collect::<Vec<_>>().join(", ")) ". " }
            @if !report.existing.is_empty() { "Already there: " (report.existing.join(", ")) "." }
        } },
        Err(error @ (ControlError::Invalid { .. } | ControlError::Validation(_))) => {
            html! { p.error role="alert" { "The target was not added: " (error.reason()) } }
        }
        Err(error) => return Err(error.into()),
    };
    order_page(console, user, &id, crate::stats::DEFAULT_DAYS, Some(notice)).await
}

// ---- the order form --------------------------------------------------------------------------

pub(crate) async fn new_order(State(console): State<Shared>, headers: HeaderMap) -> PageResult {
    let user = user(&console, &headers).await?;
    crate::control::require(&user.actor, Role::Editor)?;
    Ok(order_form_page(&user, None, &Form::default(), &[]))
}

async fn edit_order(console: &Shared, headers: &HeaderMap, id: String) -> PageResult {
    let user = user(console, headers).await?;
    crate::control::require(&user.actor, Role::Editor)?;
    let control = console.api.control.clone();
    let view = blocking(move || control.order(&id)).await?;
    Ok(order_form_page(
        &user,
        Some(&view.order.id),
        &order_to_form(&view.order),
        &[],
    ))
}

pub(crate) async fn create_order(State(console): State<Shared>, posted: Posted) -> PageResult {
    let Posted { user, form } = posted;
    save_order(&console, &user, None, &form).await
}

async fn save_order(
    console: &Shared,
    user: &User,
    existing: Option<String>,
    form: &Form,
) -> PageResult {
    let control = console.api.control.clone();
    let actor = user.actor.clone();
    let reason = form.text("reason").to_owned();
    let document = form_to_document(form, existing.as_deref());
    let editing = existing.clone();
    let result = blocking(move || {
        let mut document = document;
        if let Some(id) = &editing {
            // The edit form leaves targets and state alone: keep the stored ones.
            let stored = control.order(id)?;
            document["targets"] = json!(stored
                .targets
                .iter()
                .map(|t| t.to_target())
                .collect::<Vec<_>>());
        }
        let order: Order = crate::parse_json(document.to_string().as_bytes())?;
        control.apply_order(&actor, order, false, editing.is_none(), &reason)
    })
    .await;
    match result {
        Ok(view) => Ok(see_other(&format!(
            "/ui/orders/{}",
            segment(&view.order.id)
        ))),
        Err(error) => {
            let errors = form_errors(&error);
            if errors.is_empty() {
                return Err(error.into());
            }
            let mut response = order_form_page(user, existing.as_deref(), form, &errors);
            *response.status_mut() = axum::http::StatusCode::UNPROCESSABLE_ENTITY;
            Ok(response)
        }
    }
}

/// The order document a form describes (targets one per line: `[TYPE] VALUE`).
fn form_to_document(form: &Form, id: Option<&str>) -> Value {
    let mut doc = Map::new();
    let text = |name: &str| form.text(name).to_owned();
    let list = |name: &str| -> Vec<String> {
        form.text(name)
            .split(|c: char| c == ',' || c.is_whitespace())
            .filter(|s| !s.is_empty())
            .map(str::to_owned)
            .collect()
    };
    doc.insert(
        "id".into(),
        json!(id.map(str::to_owned).unwrap_or_else(|| text("id"))),
    );
    for key in ["kind", "action"] {
        doc.insert(key.into(), json!(text(key)));
    }
    for key in ["authority", "reference", "legal_basis"] {
        doc.insert(key.into(), json!(text(key)));
    }
    doc.insert(
        "requested_by".into(),
        json!(form
            .text("requested_by")
            .split(',')
            .map(str::trim)
            .filter(|s| !s.is_empty())
            .collect::<Vec<_>>()),
    );
    doc.insert("jurisdictions".into(), json!(list("jurisdictions")));
    doc.insert(
        "block_addresses".into(),
        json!(form.get("block_addresses").is_some()),
    );
    for key in [
        "effective_from",
        "comply_by",
        "expires_at",
        "parent",
        "transparency",
    ] {
        let value = text(key);
        if !value.is_empty() {
            doc.insert(key.into(), json!(value));
        }
    }
    doc.insert(
        "notice".into(),
        json!({"text": text("notice_text"), "lang": text("notice_lang"), "url": text("notice_url")}),
    );
    let evidence = text("evidence");
    let targets: Vec<Value> = form
        .text("targets")
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty())
        .map(|line| {
            let (kind, value) = match line.split_once(char::is_whitespace) {
                Some((kind, value)) if TARGET_KINDS.iter().any(|(k, _)| *k == kind) => {
                    (kind, value.trim())
                }
                _ => ("subtree", line),
            };
            let mut target = json!({"type": kind, "value": value});
            if !evidence.is_empty() {
                target["evidence"] = json!(evidence);
            }
            target
        })
        .collect();
    doc.insert("targets".into(), Value::Array(targets));
    Value::Object(doc)
}

fn order_to_form(order: &Order) -> Form {
    let ts = |t: Option<jiff::Timestamp>| t.map(|t| t.to_string()).unwrap_or_default();
    let pairs = vec![
        ("id", order.id.clone()),
        ("kind", order.kind.as_str().to_owned()),
        ("authority", order.authority.clone()),
        ("reference", order.reference.clone()),
        ("legal_basis", order.legal_basis.clone()),
        ("requested_by", order.requested_by.join(", ")),
        ("jurisdictions", order.jurisdictions.join(", ")),
        ("action", order.action.as_str().to_owned()),
        ("effective_from", ts(order.effective_from)),
        ("comply_by", ts(order.comply_by)),
        ("expires_at", ts(order.expires_at)),
        ("parent", order.parent.clone().unwrap_or_default()),
        (
            "transparency",
            order
                .transparency
                .map(|t| t.as_str().to_owned())
                .unwrap_or_default(),
        ),
        ("notice_text", order.notice.text.clone()),
        ("notice_lang", order.notice.lang.clone()),
        ("notice_url", order.notice.url.clone()),
    ];
    let mut pairs: Vec<(String, String)> =
        pairs.into_iter().map(|(k, v)| (k.to_owned(), v)).collect();
    if order.block_addresses {
        pairs.push(("block_addresses".into(), "on".into()));
    }
    Form(pairs)
}

/// The form field an error path belongs to (`targets[2].value` → `targets`,
/// `notice.url` → `notice_url`); problems of fields the form has no input for go on top.
fn form_field(path: &str) -> String {
    let path = path.trim_start_matches('.');
    if let Some(rest) = path.strip_prefix("notice.") {
        return format!("notice_{}", rest.split(['.', '[']).next().unwrap_or(rest));
    }
    let head = path.split(['.', '[']).next().unwrap_or(path);
    match head {
        "id" | "kind" | "authority" | "reference" | "legal_basis" | "requested_by"
        | "jurisdictions" | "action" | "effective_from" | "comply_by" | "expires_at" | "parent"
        | "transparency" | "targets" | "block_addresses" => head.to_owned(),
        _ => String::new(),
    }
}

/// The validator's problems per form field; empty when the error is not about the input.
fn form_errors(error: &ControlError) -> Vec<(String, String)> {
    match error {
        ControlError::Validation(errors) => {
            let mut out: Vec<(String, String)> = errors
                .errors
                .iter()
                .map(|e| (form_field(&e.path), format!("{}: {}", e.path, e.problem)))
                .collect();
            if errors.total > errors.errors.len() {
                out.push((
                    String::new(),
                    format!(
                        "{} more problem(s) not shown",
                        errors.total - errors.errors.len()
                    ),
                ));
            }
            out
        }
        ControlError::Invalid { field, reason } | ControlError::Conflict { field, reason } => {
            vec![(form_field(field), reason.clone())]
        }
        _ => Vec::new(),
    }
}

fn order_form_page(
    user: &User,
    editing: Option<&str>,
    form: &Form,
    errors: &[(String, String)],
) -> Response {
    let error = |name: &str| -> Option<String> {
        let list: Vec<&str> = errors
            .iter()
            .filter(|(f, _)| f == name)
            .map(|(_, e)| e.as_str())
            .collect();
        (!list.is_empty()).then(|| list.join("; "))
    };
    let general: Vec<&str> = errors
        .iter()
        .filter(|(f, _)| f.is_empty())
        .map(|(_, e)| e.as_str())
        .collect();
    let v = |name: &str| form.text(name).to_owned();
    let action = match editing {
        Some(id) => format!("/ui/orders/{}/edit", segment(id)),
        None => "/ui/orders/new".to_owned(),
    };
    let body = html! {
        @if !errors.is_empty() {
            div.error role="alert" {
                p { "The order was not saved: correct the fields marked below." }
                @if !general.is_empty() { ul { @for e in &general { li { (e) } } } }
            }
        }
        form.card.order-form method="post" action=(action) novalidate {
            (view::csrf(user))
            @if editing.is_none() {
                (field("id", "Order id", &v("id"), Some("e.g. IT-MI-2024-0001 (printable ASCII, no spaces)"), error("id").as_deref()))
            }
            (select("kind", "Kind", KINDS, &v("kind"), error("kind").as_deref()))
            @for (name, label, hint) in PARTIES {
                (field(name, label, &v(name), *hint, error(name).as_deref()))
            }
            (select("action", "Answer for a blocked name", ACTIONS, &v("action"), error("action").as_deref()))
            div.field {
                input type="checkbox" id="block_addresses" name="block_addresses" checked[form.get("block_addresses").is_some()];
                label for="block_addresses" { " Also block answers whose addresses match ip targets" }
            }
            @for (name, label, hint) in DATES_AND_NOTICE {
                (field(name, label, &v(name), *hint, error(name).as_deref()))
            }
            (select("transparency", "Transparency page", TRANSPARENCY, &v("transparency"), error("transparency").as_deref()))
            @if editing.is_none() {
                div.field.invalid[error("targets").is_some()] {
                    label for="targets" { "Targets, one per line" }
                    textarea id="targets" name="targets" rows="5" aria-describedby="targets-hint"
                        aria-invalid=[error("targets").map(|_| "true")] { (v("targets")) }
                    small.hint id="targets-hint" { "TYPE VALUE (subtree, domain, ip, nsdname, nsip) or just a name (subtree)" }
                    @if let Some(e) = error("targets") { p.field-error id="targets-error" { (e) } }
                }
                (field("evidence", "Evidence for these targets", &v("evidence"), None, None))
            }
            (field("reason", "Reason (recorded in the audit log)", &v("reason"), None, None))
            button type="submit" { @if editing.is_some() { "Save the order" } @else { "Create the order (as a draft)" } }
        }
    };
    let title = match editing {
        Some(id) => format!("Edit order {id}"),
        None => "Create an order".to_owned(),
    };
    page(&title, Some(user), "/ui/orders", body)
}

// ---- explain ---------------------------------------------------------------------------------

pub(crate) async fn explain(
    State(console): State<Shared>,
    uri: Uri,
    headers: HeaderMap,
) -> PageResult {
    let query = query_form(&uri);
    let user = user(&console, &headers).await?;
    let opt = |name: &str| Some(query.text(name).to_owned()).filter(|s| !s.is_empty());
    let request = ExplainRequest {
        name: opt("name"),
        client: opt("client"),
        country: opt("country"),
        qtype: opt("qtype"),
        ..ExplainRequest::default()
    };
    let outcome = if request.name.is_some() {
        let server = console.api.server.clone();
        Some(blocking(move || server.explain(&request)).await)
    } else {
        None
    };
    let body = html! {
        p { "What a client gets for a name, through the running resolver's own code path (nothing is resolved or counted)." }
        form.card method="get" action="/ui/explain" {
            (field("name", "Name", query.text("name"), Some("e.g. www.kickasstorrents.to"), None))
            (field("client", "Client address", query.text("client"), Some("its jurisdiction is looked up like a real query's"), None))
            (field("country", "Or the client's country", query.text("country"), Some("two letters, e.g. IT"), None))
            (field("qtype", "Query type", query.text("qtype"), Some("default A"), None))
            button type="submit" { "Explain" }
        }
        @match outcome {
            None => {},
            Some(Err(error)) => { p.error role="alert" { (error.to_string()) } },
            Some(Ok(view)) => {
                section.card aria-labelledby="verdict" aria-live="polite" {
                    h2 id="verdict" { "Verdict: " span class=(format!("verdict-{}", view.verdict)) { (view.verdict) } }
                    dl {
                        dt { "Client jurisdiction" } dd { (view.jurisdiction.as_deref().unwrap_or("unknown")) " (decided by " (view.decided_by) ")" }
                        @if let Some(fired) = &view.fired {
                            dt { "Order" } dd { a href=(format!("/ui/orders/{}", segment(&fired.order))) { (fired.order) } " (" (fired.authority) ", " (fired.reference) ")" }
                            dt { "Matched" } dd { (fired.target) @if let Some(t) = &view.trigger { " (" (t) ")" } }
                            dt { "Exact answer" } dd { code { (view.rcode.as_deref().unwrap_or(&fired.action.to_uppercase())) } ", Extended DNS Error " (fired.ede) }
                        } @else {
                            dt { "Answer" } dd { @if let Some(rcode) = &view.rcode { code { (rcode) } } @else { "resolved normally (no order applies)" } }
                        }
                        dt { "Policy generation" } dd { (view.policy_generation) }
                    }
                    @if !view.matches.is_empty() {
                        h3 { "Every matching order" }
                        ul { @for m in &view.matches { li { (m.order) ": " (m.target) ", " @if m.applies { "applies" } @else { "does not apply" } " (" (m.status) ")" } } }
                    }
                }
            },
        }
    };
    Ok(page("Explain", Some(&user), "/ui/explain", body))
}

// ---- audit, tokens, safeguards ---------------------------------------------------------------

pub(crate) async fn audit(
    State(console): State<Shared>,
    headers: HeaderMap,
    uri: Uri,
) -> PageResult {
    let user = user(&console, &headers).await?;
    let query = query_form(&uri);
    let control = console.api.control.clone();
    let after: Option<i64> = query.text("after").parse().ok();
    let full = query.text("verify") == "full";
    let ((report, full_at), entries) = blocking(move || {
        let report = if full {
            let report = control.audit_verify()?;
            (report, control.now())
        } else {
            control.audit_verify_recent()?
        };
        let (report, full_at) = report;
        let last = i64::try_from(report.entries).unwrap_or(i64::MAX);
        let after = after.unwrap_or_else(|| (last - i64::from(AUDIT_PAGE)).max(0));
        Ok(((report, full_at), control.audit_log(after, AUDIT_PAGE)?))
    })
    .await?;
    let first = entries.first().map(|e| e.seq).unwrap_or(0);
    let last = entries.last().map(|e| e.seq).unwrap_or(0);
    let body = html! {
        @if report.ok {
            p.ok role="status" { "Chain verified: " (report.entries) " entries intact; head " code { (report.head.get(..16).unwrap_or(&report.head)) "…" } }
            p { "The whole chain was verified at " (time(full_at)) "; the entries appended since are verified at each view. "
                a href="/ui/audit?verify=full" { "Verify the whole chain now" } }
        } @else {
            p.error role="alert" { "The chain is broken" @if let Some(bad) = &report.first_bad { " at entry " (bad.seq) ": " (bad.problem) } }
        }
        (audit_table(&entries))
        nav.pager aria-label="Pages" {
            @if first > 1 { a href=(format!("/ui/audit?after={}", (first - 1 - i64::from(AUDIT_PAGE)).max(0))) rel="prev" { "Older entries" } }
            @if u64::try_from(last).unwrap_or(0) < report.entries { a href=(format!("/ui/audit?after={last}")) rel="next" { "Newer entries" } }
        }
    };
    Ok(page("Audit log", Some(&user), "/ui/audit", body))
}

pub(crate) async fn tokens(State(console): State<Shared>, headers: HeaderMap) -> PageResult {
    let user = user(&console, &headers).await?;
    tokens_page(&console, &user, None).await
}

async fn tokens_page(console: &Shared, user: &User, notice: Option<Markup>) -> PageResult {
    crate::control::require(&user.actor, Role::Admin)?;
    let control = console.api.control.clone();
    let list = blocking(move || control.tokens()).await?;
    let body = html! {
        @if let Some(notice) = notice { (notice) }
        div.scroll tabindex="0" { table {
            thead { tr { th scope="col" { "Name" } th scope="col" { "Role" } th scope="col" { "Created" }
                th scope="col" { "By" } th scope="col" { "Revoked" } } }
            tbody { @for t in &list {
                tr { td { (t.name) } td { (crate::control::role_str(t.role)) } td { (time_text(&t.created_at)) }
                     td { (t.created_by) } td { @if let Some(r) = &t.revoked_at { (time_text(r)) } } }
            } }
        } }
        form.card method="post" action="/ui/tokens" aria-labelledby="new-token" {
            h2 id="new-token" { "Create a token" }
            (view::csrf(user))
            (field("name", "Name (who it is for)", "", Some("1 to 64 printable characters, no spaces"), None))
            (select("role", "Role", ROLES, "viewer", None))
            button type="submit" { "Create the token" }
        }
        form.card method="post" action="/ui/tokens/revoke" aria-labelledby="revoke-token" {
            h2 id="revoke-token" { "Revoke a token" }
            (view::csrf(user))
            (field_in("revoke-", "name", "Name of the token to revoke", "", None, None))
            (field_in("revoke-", "reason", "Reason", "", None, None))
            button.danger type="submit" { "Revoke" }
        }
    };
    Ok(page("Tokens", Some(user), "/ui/tokens", body))
}

pub(crate) async fn create_token(
    State(console): State<Shared>,
    Posted { user, form }: Posted,
) -> PageResult {
    crate::control::require(&user.actor, Role::Admin)?;
    let role: Role = serde_json::from_value(json!(form.text("role")))
        .map_err(|_| ControlError::invalid("role", "not a role"))?;
    let control = console.api.control.clone();
    let (by, name) = (user.actor.name.clone(), form.text("name").to_owned());
    let notice = match blocking(move || control.create_token(&by, role, &name)).await {
        Ok(token) => html! { div.notice role="status" {
            p { "The new token (shown once; only its hash is kept):" }
            p { code.token { (token) } }
        } },
        Err(error @ ControlError::Invalid { .. }) => {
            html! { p.error role="alert" { (error.to_string()) } }
        }
        Err(error) => return Err(error.into()),
    };
    tokens_page(&console, &user, Some(notice)).await
}

pub(crate) async fn revoke_token(State(console): State<Shared>, posted: Posted) -> PageResult {
    let Posted { user, form } = posted;
    let control = console.api.control.clone();
    let (actor, name, reason) = (
        user.actor.clone(),
        form.text("name").to_owned(),
        form.text("reason").to_owned(),
    );
    let notice = match blocking(move || control.revoke_token(&actor, &name, &reason)).await {
        Ok(n) => html! { p.notice role="status" { "Revoked " (n) " token(s)." } },
        Err(error @ ControlError::NotFound { .. }) => {
            html! { p.error role="alert" { (error.to_string()) } }
        }
        Err(error) => return Err(error.into()),
    };
    tokens_page(&console, &user, Some(notice)).await
}

pub(crate) async fn safeguards(State(console): State<Shared>, headers: HeaderMap) -> PageResult {
    let user = user(&console, &headers).await?;
    let protected = console.api.control.protected();
    let entries = protected.entries();
    let body = html! {
        p { "A target on this list (or below a name on it) is held for review, not enforced, until an admin overrides it with a reason. Configured in " code { "[control.protected]" } "." }
        div.scroll tabindex="0" { table {
            caption { (entries.len()) " protected entries" }
            thead { tr { th scope="col" { "Name or prefix" } th scope="col" { "Operator / source" } } }
            tbody { @for e in entries {
                tr { td { @match &e.value { Protected::Name(n) => (n), Protected::Prefix(p) => (p.to_string()) } } td { (e.source) } }
            } }
        } }
    };
    Ok(page("Safeguards", Some(&user), "/ui/safeguards", body))
}
