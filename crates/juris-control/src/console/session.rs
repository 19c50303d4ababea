//! Console session cookies: an opaque session id (the store keeps only its SHA-256:
//! `Control::start_session`, `crate::control::sessions`) in an HttpOnly, SameSite=Strict cookie,
//! with the session's expiry as its Max-Age; and the sign-in form's double-submit cookie.

use std::time::Duration;

use axum::http::HeaderMap;
use rand::RngCore;

/// The session cookie's name.
pub const SESSION_COOKIE: &str = "juris_session";
/// The cookie that carries the sign-in form's CSRF token (double submit; no session yet).
pub const LOGIN_COOKIE: &str = "juris_login";
/// How long a session lasts after sign-in.
pub const SESSION_TTL: Duration = Duration::from_secs(8 * 3600);

/// 32 random bytes in hex.
pub fn random_hex() -> String {
    let mut bytes = [0_u8; 32];
    rand::thread_rng().fill_bytes(&mut bytes);
    hex::encode(bytes)
}

/// The value of cookie `name` in the request.
pub fn cookie(headers: &HeaderMap, name: &str) -> Option<String> {
    headers
        .get_all(axum::http::header::COOKIE)
        .iter()
        .filter_map(|value| value.to_str().ok())
        .flat_map(|value| value.split(';'))
        .filter_map(|pair| pair.trim().split_once('='))
        .find(|(key, _)| *key == name)
        .map(|(_, value)| value.to_owned())
        .filter(|value| !value.is_empty())
}

/// A `Set-Cookie` value: HttpOnly, SameSite=Strict, limited to `path`, Secure when the request
/// came over TLS ([`over_tls`]).
pub fn set_cookie(name: &str, value: &str, path: &str, max_age: Duration, secure: bool) -> String {
    format!(
        "{name}={value}; Path={path}; Max-Age={}; HttpOnly; SameSite=Strict{}",
        max_age.as_secs(),
        if secure { "; Secure" } else { "" }
    )
}

/// The header a TLS proxy (or [`super::served_over_tls`]) sets to `https`.
pub const FORWARDED_PROTO: &str = "x-forwarded-proto";

/// Whether the browser reached us over TLS (`X-Forwarded-Proto: https` from a TLS proxy, or
/// set by [`super::served_over_tls`] on the API's own TLS listener).
pub fn over_tls(headers: &HeaderMap) -> bool {
    headers
        .get(FORWARDED_PROTO)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.eq_ignore_ascii_case("https"))
}

/// Compares two secrets in time independent of where they differ.
pub fn same_secret(a: &str, b: &str) -> bool {
    a.len() == b.len()
        && a.bytes()
            .zip(b.bytes())
            .fold(0_u8, |acc, (x, y)| acc | (x ^ y))
            == 0
}
