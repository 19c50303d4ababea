//! The console's page frame and small pieces shared by the pages (maud templates).

use axum::http::StatusCode;
use axum::response::{Html, IntoResponse, Response};
use jiff::Timestamp;
use maud::{html, Markup, DOCTYPE};

use super::User;
use crate::control::role_str;
use crate::error::ControlError;

/// The main navigation: (path, label).
const NAV: &[(&str, &str)] = &[
    ("/ui/", "Dashboard"),
    ("/ui/orders", "Orders"),
    ("/ui/feeds", "Feeds"),
    ("/ui/explain", "Explain"),
    ("/ui/audit", "Audit log"),
    ("/ui/tokens", "Tokens"),
    ("/ui/safeguards", "Safeguards"),
    ("/transparency", "Transparency"),
];

/// A whole page: head, skip link, navigation (for a signed-in user), `<main>` with the title.
pub(crate) fn page(title: &str, user: Option<&User>, current: &str, body: Markup) -> Response {
    Html(document(title, user, current, body).into_string()).into_response()
}

/// [`page`] that the browser reloads every `seconds` (a running import's progress: no
/// script needed).
pub(crate) fn refreshing_page(
    title: &str,
    user: Option<&User>,
    current: &str,
    body: Markup,
    seconds: Option<u32>,
) -> Response {
    Html(document_with(title, user, current, body, seconds).into_string()).into_response()
}

/// The HTML document of [`page`].
pub(crate) fn document(title: &str, user: Option<&User>, current: &str, body: Markup) -> Markup {
    document_with(title, user, current, body, None)
}

fn document_with(
    title: &str,
    user: Option<&User>,
    current: &str,
    body: Markup,
    refresh: Option<u32>,
) -> Markup {
    html! {
        (DOCTYPE)
        html lang="en" {
            head {
                meta charset="utf-8";
                meta name="viewport" content="width=device-width, initial-scale=1";
                meta name="color-scheme" content="light dark";
                @if let Some(seconds) = refresh { meta http-equiv="refresh" content=(seconds); }
                title { (title) " · juris" }
                link rel="stylesheet" href="/ui/assets/console.css";
                script src="/ui/assets/console.js" defer {}
            }
            body {
                a.skip href="#main" { "Skip to the content" }
                header.top {
                    a.brand href=(if user.is_some() { "/ui/" } else { "/transparency" }) { "juris" }
                    @if let Some(user) = user {
                        nav aria-label="Main" {
                            ul {
                                @for (path, label) in NAV {
                                    li {
                                        @if *path == current {
                                            a href=(path) aria-current="page" { (label) }
                                        } @else {
                                            a href=(path) { (label) }
                                        }
                                    }
                                }
                            }
                        }
                        form.signout method="post" action="/ui/logout" {
                            (csrf(user))
                            span { (user.actor.name) " (" (role_str(user.actor.role)) ")" }
                            " "
                            button type="submit" { "Sign out" }
                        }
                    }
                }
                main id="main" {
                    h1 { (title) }
                    (body)
                }
                footer { p { "Times are UTC; your local time follows in brackets where your browser runs scripts." } }
            }
        }
    }
}

/// The hidden CSRF field every form carries.
pub(crate) fn csrf(user: &User) -> Markup {
    html! { input type="hidden" name="csrf" value=(user.csrf); }
}

/// An error page (status and the error's words).
pub(crate) fn error_page(status: StatusCode, error: &ControlError) -> Response {
    let title = match status {
        StatusCode::FORBIDDEN => "Not allowed",
        StatusCode::NOT_FOUND => "Not found",
        StatusCode::CONFLICT => "Not possible now",
        StatusCode::BAD_REQUEST => "Invalid request",
        _ => "Error",
    };
    page(
        title,
        None,
        "",
        html! {
            p.error role="alert" { (error.to_string()) }
            p { a href="/ui/" { "Back to the dashboard" } }
        },
    )
}

/// A time in UTC (`2024-05-31 00:00 UTC`), machine-readable for the script's local time.
pub(crate) fn time(ts: Timestamp) -> Markup {
    html! { time datetime=(ts.to_string()) { (ts.strftime("%Y-%m-%d %H:%M UTC").to_string()) } }
}

/// A stored RFC 3339 text as [`time`], or as it is when it does not parse.
pub(crate) fn time_text(text: &str) -> Markup {
    match text.parse::<Timestamp>() {
        Ok(ts) => time(ts),
        Err(_) => html! { (text) },
    }
}

/// `3 d 4 h left`, `45 min left`, `overdue by 2 h`.
pub(crate) fn time_left(deadline: Timestamp, now: Timestamp) -> String {
    let seconds = deadline.as_second() - now.as_second();
    let amount = |s: i64| {
        let s = s.abs();
        if s >= 86_400 {
            format!("{} d {} h", s / 86_400, (s % 86_400) / 3600)
        } else if s >= 3600 {
            format!("{} h {} min", s / 3600, (s % 3600) / 60)
        } else {
            format!("{} min", s.max(60) / 60)
        }
    };
    if seconds >= 0 {
        format!("{} left", amount(seconds))
    } else {
        format!("overdue by {}", amount(seconds))
    }
}

/// A labelled text input with its error (if any) right after it, tied by `aria-describedby`.
pub(crate) fn field(
    name: &str,
    label: &str,
    value: &str,
    hint: Option<&str>,
    error: Option<&str>,
) -> Markup {
    field_in("", name, label, value, hint, error)
}

/// [`field`] in a form that shares a page with another form having a field of the same name:
/// the element ids get `form`'s prefix so that every label points at its own input.
pub(crate) fn field_in(
    form: &str,
    name: &str,
    label: &str,
    value: &str,
    hint: Option<&str>,
    error: Option<&str>,
) -> Markup {
    let id = format!("{form}{name}");
    let described = match (hint, error) {
        (_, Some(_)) => Some(format!("{id}-error")),
        (Some(_), None) => Some(format!("{id}-hint")),
        _ => None,
    };
    html! {
        div.field.invalid[error.is_some()] {
            label for=(id) { (label) }
            input type="text" id=(id) name=(name) value=(value)
                aria-invalid=[error.map(|_| "true")] aria-describedby=[described];
            @if let Some(hint) = hint { small.hint id=(format!("{id}-hint")) { (hint) } }
            @if let Some(error) = error { p.field-error id=(format!("{id}-error")) { (error) } }
        }
    }
}

/// A labelled select with its error.
pub(crate) fn select(
    name: &str,
    label: &str,
    options: &[(&str, &str)],
    chosen: &str,
    error: Option<&str>,
) -> Markup {
    html! {
        div.field.invalid[error.is_some()] {
            label for=(name) { (label) }
            select id=(name) name=(name) aria-invalid=[error.map(|_| "true")]
                aria-describedby=[error.map(|_| format!("{name}-error"))] {
                @for (value, text) in options {
                    option value=(value) selected[*value == chosen] { (text) }
                }
            }
            @if let Some(error) = error { p.field-error id=(format!("{name}-error")) { (error) } }
        }
    }
}

/// A state as a badge.
pub(crate) fn state_badge(state: &str) -> Markup {
    html! { span class=(format!("badge state-{state}")) { (state) } }
}
