//! The web console (`/ui/`) and the public transparency page (`/transparency`,
//! `/transparency.json`), served by the admin API's listener (`docs/design/0022-web-console.md`).
//!
//! Server-rendered HTML (maud: templates are Rust code checked by the compiler, escaped by
//! default); every asset is embedded; the one script only adds local times and draws nothing a
//! page needs. Every handler calls the same [`Control`](crate::Control) and
//! [`ServerView`](crate::ServerView) as the JSON API, with the signed-in token's actor: roles,
//! four-eyes and safeguards are enforced there, the console only hides buttons a role may not
//! press.
//!
//! Security: a session cookie (HttpOnly, SameSite=Strict, 8 h; Secure when served over TLS:
//! the API's own (`[control] tls_cert`, [`served_over_tls`]) or a TLS proxy's), a
//! CSRF token in every form (checked before anything else), a Content-Security-Policy without
//! `unsafe-inline`, `frame-ancestors 'none'`.

mod chart;
mod feeds;
mod pages;
mod public;
mod session;
mod view;

use std::sync::Arc;

use axum::extract::Request;
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Redirect, Response};
use axum::routing::{get, post};
use axum::Router;

use crate::api::{status_of, ApiState};
use crate::control::{require, Actor, Role};
use crate::error::ControlError;

use crate::control::sessions::csrf_of;
pub use public::{public_router, TransparencyCache, TransparencyOrder, TransparencyPage};

/// The Content-Security-Policy of every console and transparency page.
pub const CSP: &str = "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self'; \
     form-action 'self'; frame-ancestors 'none'; base-uri 'none'";

const CSS: &str = include_str!("assets/console.css");
const JS: &str = include_str!("assets/console.js");

/// The console's state: the API's state and the transparency cache (sessions are in the
/// store).
pub(crate) struct Console {
    pub(crate) api: ApiState,
    pub(crate) transparency: Arc<TransparencyCache>,
}

impl std::fmt::Debug for Console {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Console").finish_non_exhaustive()
    }
}

type Shared = Arc<Console>;

/// `router` as served on a TLS listener (`[control] tls_cert`): every request is marked
/// `X-Forwarded-Proto: https` (replacing what a client sent), so the console's cookies get
/// `Secure` as they do behind a TLS proxy that says so.
pub fn served_over_tls(router: Router) -> Router {
    router.layer(middleware::map_request(|mut request: Request| async move {
        request
            .headers_mut()
            .insert(session::FORWARDED_PROTO, HeaderValue::from_static("https"));
        request
    }))
}

/// Verifies the audit chain once in the background when the console starts (a runtime at
/// hand), so the audit page's first view checks only the entries written since, as every
/// later view does, instead of the whole chain on the request (design 0041).
fn check_the_audit_chain_once(control: &Arc<crate::Control>) {
    let Ok(runtime) = tokio::runtime::Handle::try_current() else {
        return;
    };
    let control = Arc::downgrade(control);
    runtime.spawn_blocking(move || {
        if let Some(control) = control.upgrade() {
            if let Err(error) = control.audit_verify_recent() {
                tracing::warn!(%error, "the audit chain could not be checked at start");
            }
        }
    });
}

/// The console and the transparency page, ready to merge into the admin API's router.
pub fn router(api: ApiState) -> Router {
    let console = Arc::new(Console {
        transparency: TransparencyCache::shared(&api.control),
        api,
    });
    check_the_audit_chain_once(&console.api.control);
    Router::new()
        .route("/ui", get(|| async { Redirect::to("/ui/") }))
        .route("/ui/", get(pages::dashboard))
        .route("/ui/login", get(pages::login_form).post(pages::login))
        .route("/ui/logout", post(pages::logout))
        .route("/ui/orders", get(pages::orders))
        .route(
            "/ui/orders/new",
            get(pages::new_order).post(pages::create_order),
        )
        .route("/ui/orders/{id}", get(pages::order))
        // `edit` (GET: the form; POST: save), `targets` (POST: add one), `state` (POST).
        .route(
            "/ui/orders/{id}/{action}",
            get(pages::order_get).post(pages::order_post),
        )
        .route("/ui/feeds", get(feeds::feeds))
        .route("/ui/feeds/{name}", get(feeds::feed))
        .route("/ui/explain", get(pages::explain))
        .route("/ui/audit", get(pages::audit))
        .route("/ui/tokens", get(pages::tokens).post(pages::create_token))
        .route("/ui/tokens/revoke", post(pages::revoke_token))
        .route("/ui/safeguards", get(pages::safeguards))
        .merge(public::routes())
        .merge(asset_routes())
        .layer(middleware::from_fn(security_headers))
        .with_state(console)
}

pub(crate) fn asset_routes() -> Router<Shared> {
    Router::new()
        .route(
            "/ui/assets/console.css",
            get(|| async { asset("text/css; charset=utf-8", CSS) }),
        )
        .route(
            "/ui/assets/console.js",
            get(|| async { asset("text/javascript; charset=utf-8", JS) }),
        )
}

fn asset(kind: &'static str, body: &'static str) -> Response {
    (
        [
            (header::CONTENT_TYPE, kind),
            (header::CACHE_CONTROL, "public, max-age=3600"),
        ],
        body,
    )
        .into_response()
}

async fn security_headers(request: Request, next: Next) -> Response {
    let mut response = next.run(request).await;
    let headers = response.headers_mut();
    headers.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(CSP),
    );
    headers.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    headers.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("no-referrer"),
    );
    headers.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    if !headers.contains_key(header::CACHE_CONTROL) {
        headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    }
    response
}

/// The signed-in user of a request: the session and the actor its token stands for now.
pub(crate) struct User {
    pub(crate) actor: Actor,
    pub(crate) csrf: String,
    /// The session's id (the cookie's value).
    pub(crate) session: String,
}

impl User {
    pub(crate) fn can(&self, role: Role) -> bool {
        require(&self.actor, role).is_ok()
    }
}

/// Why a request gets no page: not signed in (→ the sign-in form) or an error page.
pub(crate) enum Refusal {
    SignIn,
    Error(ControlError),
}

impl From<ControlError> for Refusal {
    fn from(error: ControlError) -> Self {
        Refusal::Error(error)
    }
}

impl IntoResponse for Refusal {
    fn into_response(self) -> Response {
        match self {
            Refusal::SignIn => Redirect::to("/ui/login").into_response(),
            Refusal::Error(error) => {
                let status = status_of(&error);
                (status, view::error_page(status, &error)).into_response()
            }
        }
    }
}

pub(crate) type PageResult = Result<Response, Refusal>;

/// The user of a request with a live session (in the store, not expired) whose token is still
/// valid.
pub(crate) async fn user(console: &Console, headers: &HeaderMap) -> Result<User, Refusal> {
    let Some(session) = session::cookie(headers, session::SESSION_COOKIE) else {
        return Err(Refusal::SignIn);
    };
    let control = console.api.control.clone();
    let id = session.clone();
    match blocking(move || control.session(&id)).await {
        Ok(actor) => Ok(User {
            actor,
            csrf: csrf_of(&session),
            session,
        }),
        Err(ControlError::Unauthorized(_)) => Err(Refusal::SignIn),
        Err(error) => Err(Refusal::Error(error)),
    }
}

/// The user of a form post: signed in, and the form carries the session's CSRF token.
pub(crate) async fn poster(
    console: &Console,
    headers: &HeaderMap,
    form: &Form,
) -> Result<User, Refusal> {
    let user = user(console, headers).await?;
    match form.get("csrf") {
        Some(sent) if session::same_secret(sent, &user.csrf) => Ok(user),
        _ => Err(Refusal::Error(ControlError::Forbidden(
            "the form's CSRF token is missing or wrong: reload the page and try again".into(),
        ))),
    }
}

/// A form post by a signed-in user whose form carries the session's CSRF token (checked
/// before the handler runs).
pub(crate) struct Posted {
    pub(crate) user: User,
    pub(crate) form: Form,
}

/// The largest form accepted.
const MAX_FORM: usize = 2 * 1024 * 1024;

impl axum::extract::FromRequest<Shared> for Posted {
    type Rejection = Refusal;

    async fn from_request(request: Request, console: &Shared) -> Result<Self, Refusal> {
        let (parts, body) = request.into_parts();
        let bytes = axum::body::to_bytes(body, MAX_FORM)
            .await
            .map_err(|_| ControlError::invalid("body", "the form is too large or cut short"))?;
        let form = Form::parse(&bytes);
        let user = poster(console, &parts.headers, &form).await?;
        Ok(Posted { user, form })
    }
}

/// Runs a store operation off the async runtime.
pub(crate) async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> Result<T, ControlError> + Send + 'static,
) -> Result<T, ControlError> {
    match tokio::task::spawn_blocking(f).await {
        Ok(result) => result,
        Err(error) => Err(ControlError::Internal(format!(
            "the request's task failed: {error}"
        ))),
    }
}

/// A form body (`application/x-www-form-urlencoded`), fields in order.
#[derive(Debug, Default)]
pub(crate) struct Form(Vec<(String, String)>);

impl Form {
    pub(crate) fn parse(body: &[u8]) -> Form {
        Form(
            form_urlencoded::parse(body)
                .map(|(k, v)| (k.into_owned(), v.into_owned()))
                .collect(),
        )
    }

    /// The first value of `name`.
    pub(crate) fn get(&self, name: &str) -> Option<&str> {
        self.0
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }

    /// The value of `name`, trimmed, or `""`.
    pub(crate) fn text(&self, name: &str) -> &str {
        self.get(name).map(str::trim).unwrap_or("")
    }
}

/// A query string as a form.
pub(crate) fn query_form(uri: &axum::http::Uri) -> Form {
    Form::parse(uri.query().unwrap_or("").as_bytes())
}

pub(crate) fn see_other(location: &str) -> Response {
    (StatusCode::SEE_OTHER, [(header::LOCATION, location)]).into_response()
}

/// A path segment, percent-encoded (order ids may hold `/` or `?`).
pub(crate) fn segment(text: &str) -> String {
    form_urlencoded::byte_serialize(text.as_bytes())
        .collect::<String>()
        .replace('+', "%20")
}
