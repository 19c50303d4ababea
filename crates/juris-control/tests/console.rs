//! The web console and the public transparency page through the admin API's router
//! (`tower::ServiceExt::oneshot`, no sockets): sign-in, session cookie, CSRF, CSP, roles,
//! validator errors next to the field, tokens, and what `/transparency` publishes per
//! `transparency` level. The same flows run in a real Chromium in
//! `crates/juris/tests/console_browser.rs`.

#![allow(clippy::unwrap_used, clippy::expect_used, reason = "test code")]

use std::sync::Arc;

use axum::body::Body;
use axum::http::{header, Request, StatusCode};
use http_body_util::BodyExt;
use juris_control::api::NoServer;
use juris_control::{router, Actor, ApiState, Control, ControlConfig, Role, Store, SystemClock};
use juris_policy::Order;
use serde_json::Value;
use tower::ServiceExt;

struct Console {
    router: axum::Router,
    control: Arc<Control>,
}

struct Reply {
    status: StatusCode,
    headers: axum::http::HeaderMap,
    body: String,
}

impl Reply {
    fn cookie(&self, name: &str) -> Option<String> {
        self.headers
            .get_all(header::SET_COOKIE)
            .iter()
            .map(|v| v.to_str().unwrap().to_owned())
            .find(|v| v.starts_with(&format!("{name}=")))
    }
    /// The value of the hidden `csrf` field of the page's first form.
    fn csrf(&self) -> String {
        let at = self
            .body
            .find("name=\"csrf\" value=\"")
            .expect("a csrf field")
            + 19;
        self.body[at..at + 64].to_owned()
    }
}

fn console() -> Console {
    console_over(Store::open_in_memory().unwrap(), Arc::new(SystemClock))
}

fn console_over(store: Store, clock: Arc<dyn juris_control::Clock>) -> Console {
    let control = Arc::new(Control::new(store, &ControlConfig::default(), clock).unwrap());
    let router = router(ApiState {
        control: control.clone(),
        server: Arc::new(NoServer),
    });
    Console { router, control }
}

impl Console {
    async fn send(&self, method: &str, path: &str, cookie: Option<&str>, form: &str) -> Reply {
        let cookies = cookie.map(|c| (header::COOKIE, c));
        let kind = (method == "POST")
            .then_some((header::CONTENT_TYPE, "application/x-www-form-urlencoded"));
        let request = cookies
            .into_iter()
            .chain(kind)
            .fold(Request::builder().method(method).uri(path), |r, (k, v)| {
                r.header(k, v)
            })
            .body(Body::from(form.to_owned()))
            .unwrap();
        let response = self.router.clone().oneshot(request).await.unwrap();
        let status = response.status();
        let headers = response.headers().clone();
        let bytes = response.into_body().collect().await.unwrap().to_bytes();
        Reply {
            status,
            headers,
            body: String::from_utf8_lossy(&bytes).into_owned(),
        }
    }

    /// `/transparency.json` once it lists exactly `ids` in Italy (it is rebuilt in the
    /// background after each change; polled, at most about 20 s).
    async fn transparency_until(&self, ids: &[&str]) -> Value {
        let mut last = Value::Null;
        for _ in 0..2000 {
            let reply = self.send("GET", "/transparency.json", None, "").await;
            assert_eq!(reply.status, StatusCode::OK);
            last = serde_json::from_str(&reply.body).unwrap();
            let listed: Vec<&str> = last["jurisdictions"]["IT"]
                .as_array()
                .map(|list| list.iter().filter_map(|o| o["order_id"].as_str()).collect())
                .unwrap_or_default();
            if listed == ids {
                return last;
            }
            tokio::time::sleep(std::time::Duration::from_millis(10)).await;
        }
        panic!("the transparency report never listed {ids:?}: {last}");
    }

    /// Signs in with a new token of `role`; returns the `Cookie` header value.
    async fn sign_in(&self, role: Role) -> String {
        let token = self
            .control
            .create_token("test", role, juris_control::role_str(role))
            .unwrap();
        self.sign_in_with(&token).await
    }

    async fn sign_in_with(&self, token: &str) -> String {
        let form = self.send("GET", "/ui/login", None, "").await;
        let login = form.cookie("juris_login").unwrap();
        let login = login.split(';').next().unwrap().to_owned();
        let csrf = form.csrf();
        let reply = self.login(Some(&login), &csrf, token).await;
        assert_eq!(reply.status, StatusCode::SEE_OTHER, "{}", reply.body);
        let cookie = reply.cookie("juris_session").unwrap();
        cookie.split(';').next().unwrap().to_owned()
    }

    /// Posts a form with the session cookie.
    async fn post(&self, path: &str, cookie: &str, form: &str) -> Reply {
        self.send("POST", path, Some(cookie), form).await
    }

    /// Posts the sign-in form with the sign-in cookie (if any), its CSRF token and `token`.
    async fn login(&self, login_cookie: Option<&str>, csrf: &str, token: &str) -> Reply {
        let form = format!("csrf={csrf}&token={token}");
        self.send("POST", "/ui/login", login_cookie, &form).await
    }

    async fn csrf(&self, cookie: &str) -> String {
        self.send("GET", "/ui/", Some(cookie), "").await.csrf()
    }
}

fn root() -> Actor {
    Actor {
        name: "root".into(),
        role: Role::Admin,
    }
}

const MILAN: &str = "id=IT-MI-2024-0001&kind=court_order&authority=Tribunale+di+Milano&reference=RG+12345%2F2024\
    &jurisdictions=IT&action=nxdomain&targets=kickasstorrents.to%0Adomain+limetorrents.pro&notice_url=https%3A%2F%2Flumendatabase.org%2Fnotices%2F0";

#[tokio::test]
async fn sign_in_sets_a_strict_http_only_cookie_and_pages_carry_a_strict_csp() {
    let c = console();
    // Not signed in: to the sign-in form.
    let reply = c.send("GET", "/ui/", None, "").await;
    assert_eq!(reply.status, StatusCode::SEE_OTHER);
    assert_eq!(reply.headers[header::LOCATION], "/ui/login");

    let token = c
        .control
        .create_token("test", Role::Viewer, "vera")
        .unwrap();
    // A wrong token: the form again, 401, no session.
    let form = c.send("GET", "/ui/login", None, "").await;
    let login = form.cookie("juris_login").unwrap();
    let login = login.split(';').next().unwrap();
    let wrong = c.login(Some(login), &form.csrf(), "juris_0").await;
    assert_eq!(wrong.status, StatusCode::UNAUTHORIZED);
    assert!(wrong.cookie("juris_session").is_none());
    assert!(wrong.body.contains("token-error"), "{}", wrong.body);
    // Without the sign-in form's CSRF cookie: refused.
    let forged = c.login(None, &form.csrf(), &token).await;
    assert_eq!(forged.status, StatusCode::FORBIDDEN);

    let reply = c.login(Some(login), &form.csrf(), &token).await;
    let cookie = reply.cookie("juris_session").unwrap();
    for attribute in ["HttpOnly", "SameSite=Strict", "Max-Age=28800", "Path=/"] {
        assert!(cookie.contains(attribute), "{cookie}");
    }
    assert!(!cookie.contains("Secure"), "plain HTTP: {cookie}");
    let session = cookie.split(';').next().unwrap();
    let page = c.send("GET", "/ui/", Some(session), "").await;
    assert_eq!(page.status, StatusCode::OK);
    assert!(
        page.body.contains("no orders yet"),
        "empty state: {}",
        page.body
    );
    let csp = page.headers[header::CONTENT_SECURITY_POLICY]
        .to_str()
        .unwrap();
    assert!(
        csp.contains("script-src 'self'") && !csp.contains("unsafe-inline"),
        "{csp}"
    );
    assert!(!page.body.contains("<script>") && !page.body.contains("style=\""));

    // Behind a TLS proxy the cookie is Secure.
    let form = c.send("GET", "/ui/login", None, "").await;
    let login = form.cookie("juris_login").unwrap();
    let request = Request::builder()
        .method("POST")
        .uri("/ui/login")
        .header(header::COOKIE, login.split(';').next().unwrap())
        .header("x-forwarded-proto", "https")
        .body(Body::from(format!("csrf={}&token={token}", form.csrf())))
        .unwrap();
    let response = c.router.clone().oneshot(request).await.unwrap();
    let secure = response.headers()[header::SET_COOKIE].to_str().unwrap();
    assert!(secure.contains("; Secure"), "{secure}");

    // Sign-out needs the CSRF token, then ends the session.
    let out = c.send("POST", "/ui/logout", Some(session), "").await;
    assert_eq!(out.status, StatusCode::FORBIDDEN);
    let csrf = page.csrf();
    let out = c.post("/ui/logout", session, &format!("csrf={csrf}")).await;
    assert_eq!(out.status, StatusCode::SEE_OTHER);
    let after = c.send("GET", "/ui/", Some(session), "").await;
    assert_eq!(after.headers[header::LOCATION], "/ui/login");
}

#[tokio::test]
async fn a_form_without_the_csrf_token_changes_nothing() {
    let c = console();
    let cookie = c.sign_in(Role::Admin).await;
    let reply = c.post("/ui/orders/new", &cookie, MILAN).await;
    assert_eq!(reply.status, StatusCode::FORBIDDEN, "{}", reply.body);
    let wrong = format!("csrf={}&{MILAN}", "0".repeat(64));
    let reply = c.post("/ui/orders/new", &cookie, &wrong).await;
    assert_eq!(reply.status, StatusCode::FORBIDDEN);
    assert!(c.control.order("IT-MI-2024-0001").is_err());
    assert_eq!(
        c.control.audit_verify().unwrap().entries,
        1,
        "only the token"
    );
}

#[tokio::test]
async fn the_validator_error_is_shown_next_to_the_field_and_the_fixed_form_creates_the_order() {
    let c = console();
    let cookie = c.sign_in(Role::Admin).await;
    let csrf = c.csrf(&cookie).await;
    let wrong = format!(
        "csrf={csrf}&{}",
        MILAN.replace("jurisdictions=IT", "jurisdictions=ITALY")
    );
    let reply = c.post("/ui/orders/new", &cookie, &wrong).await;
    assert_eq!(reply.status, StatusCode::UNPROCESSABLE_ENTITY);
    assert!(
        reply.body.contains("id=\"jurisdictions-error\""),
        "{}",
        reply.body
    );
    assert!(reply.body.contains("value=\"ITALY\""), "the input is kept");
    assert!(reply.body.contains("value=\"Tribunale di Milano\""));
    assert!(c.control.order("IT-MI-2024-0001").is_err());

    let fixed = format!("csrf={csrf}&{MILAN}");
    let reply = c.post("/ui/orders/new", &cookie, &fixed).await;
    assert_eq!(reply.status, StatusCode::SEE_OTHER, "{}", reply.body);
    assert_eq!(
        reply.headers[header::LOCATION],
        "/ui/orders/IT-MI-2024-0001"
    );
    let view = c.control.order("IT-MI-2024-0001").unwrap();
    assert_eq!(view.targets.len(), 2);
    assert_eq!(view.created_by, "admin");

    // Activate through the lifecycle form; the page then lists it with its history.
    let form = format!("csrf={csrf}&to=active&reason=court+order");
    let reply = c
        .post("/ui/orders/IT-MI-2024-0001/state", &cookie, &form)
        .await;
    assert_eq!(reply.status, StatusCode::SEE_OTHER, "{}", reply.body);
    let page = c
        .send("GET", "/ui/orders/IT-MI-2024-0001", Some(&cookie), "")
        .await;
    assert!(
        page.body.contains("order.activate"),
        "audit entries on the page"
    );
    assert!(page.body.contains("limetorrents.pro"));
    let list = c
        .send(
            "GET",
            "/ui/orders?jurisdiction=IT&q=milano",
            Some(&cookie),
            "",
        )
        .await;
    assert!(list.body.contains("IT-MI-2024-0001"), "{}", list.body);
    let none = c
        .send("GET", "/ui/orders?state=draft", Some(&cookie), "")
        .await;
    assert!(!none.body.contains("IT-MI-2024-0001"));
}

#[tokio::test]
async fn a_viewer_sees_no_lifecycle_buttons_and_the_server_refuses_them_anyway() {
    let c = console();
    let admin = root();
    let order = Order::from_json(
        br#"{"id": "IT-1", "kind": "court_order", "authority": "Court", "jurisdictions": ["IT"],
             "action": "nxdomain", "targets": [{"type": "subtree", "value": "bad.example"}]}"#,
    )
    .unwrap();
    c.control
        .apply_order(&admin, order, false, true, "")
        .unwrap();
    let viewer = c.sign_in(Role::Viewer).await;
    let page = c.send("GET", "/ui/orders/IT-1", Some(&viewer), "").await;
    assert_eq!(page.status, StatusCode::OK);
    assert!(
        !page.body.contains("value=\"active\""),
        "no Activate button"
    );
    assert!(!page.body.contains("Add the target"));
    let csrf = page.csrf();
    let form = format!("csrf={csrf}&to=active");
    let reply = c.post("/ui/orders/IT-1/state", &viewer, &form).await;
    assert_eq!(reply.status, StatusCode::FORBIDDEN);
    assert_eq!(
        c.control.order("IT-1").unwrap().order.state.as_str(),
        "draft"
    );
    let tokens = c.send("GET", "/ui/tokens", Some(&viewer), "").await;
    assert_eq!(tokens.status, StatusCode::FORBIDDEN);

    let approver = c.sign_in(Role::Approver).await;
    let page = c.send("GET", "/ui/orders/IT-1", Some(&approver), "").await;
    assert!(page.body.contains("value=\"active\""), "{}", page.body);
}

#[tokio::test]
async fn a_revoked_token_ends_its_session_and_tokens_are_listed_without_secrets() {
    let c = console();
    let admin = c.sign_in(Role::Admin).await;
    let csrf = c.csrf(&admin).await;
    let form = format!("csrf={csrf}&name=carla&role=viewer");
    let reply = c.post("/ui/tokens", &admin, &form).await;
    assert_eq!(reply.status, StatusCode::OK);
    let at = reply.body.find("juris_").unwrap();
    let token = reply.body[at..at + 70].to_owned();
    let carla = c.sign_in_with(&token).await;
    assert_eq!(
        c.send("GET", "/ui/", Some(&carla), "").await.status,
        StatusCode::OK
    );
    let listed = c.control.tokens().unwrap();
    assert!(listed
        .iter()
        .any(|t| t.name == "carla" && t.revoked_at.is_none()));
    let form = format!("csrf={csrf}&name=carla&reason=left");
    let reply = c.post("/ui/tokens/revoke", &admin, &form).await;
    assert!(reply.body.contains("Revoked 1 token"), "{}", reply.body);
    let after = c.send("GET", "/ui/", Some(&carla), "").await;
    assert_eq!(after.headers[header::LOCATION], "/ui/login");
}

#[tokio::test]
async fn transparency_publishes_names_only_for_full_and_follows_changes() {
    let c = console();
    let admin = root();
    let order = |id: &str, kind: &str, extra: &str| {
        Order::from_json(
            format!(
                r#"{{"id": "{id}", "kind": "{kind}", "authority": "Authority {id}", "jurisdictions": ["IT"],
                    "action": "nxdomain", "state": "active"{extra},
                    "targets": [{{"type": "subtree", "value": "{}.example"}}]}}"#,
                id.to_lowercase()
            )
            .as_bytes(),
        )
        .unwrap()
    };
    for o in [
        order("COURT", "court_order", ""),
        order("FEED", "feed_ticket", ""),
        order("HIDDEN", "court_order", r#", "transparency": "none""#),
        order("FILTER", "client_filter", ""),
    ] {
        c.control.apply_order(&admin, o, true, true, "").unwrap();
    }
    // Built in the background after each change: the page follows shortly.
    let report = c.transparency_until(&["COURT", "FEED"]).await;
    let it = report["jurisdictions"]["IT"].as_array().unwrap();
    let ids: Vec<&str> = it.iter().map(|o| o["order_id"].as_str().unwrap()).collect();
    assert_eq!(ids, ["COURT", "FEED"]);
    assert_eq!(it[0]["names"], serde_json::json!(["court.example"]));
    assert_eq!(it[1]["targets_count"], 1);
    assert!(it[1].get("names").is_none(), "feed lists are confidential");
    let html = c.send("GET", "/transparency", None, "").await;
    assert!(html.body.contains("court.example") && !html.body.contains("feed.example"));
    assert!(!html.body.contains("hidden.example"));
    let one = c.send("GET", "/transparency/orders/COURT", None, "").await;
    assert_eq!(one.status, StatusCode::OK);
    assert!(one.body.contains("Authority COURT"));

    // Lifting an order takes it off (the page is rebuilt after the change).
    c.control
        .transition(&admin, "COURT", juris_policy::OrderState::Lifted, "")
        .unwrap();
    c.transparency_until(&["FEED"]).await;
    let gone = c.send("GET", "/transparency/orders/COURT", None, "").await;
    assert_eq!(gone.status, StatusCode::NOT_FOUND);
}

#[tokio::test]
async fn charts_of_the_per_day_counters_are_inline_svg_with_a_table_and_the_shadow_impact() {
    let c = console();
    let cookie = c.sign_in(Role::Admin).await;
    let mut order: Order = serde_json::from_str(
        r#"{"id": "IT-1", "kind": "court_order", "authority": "Tribunale di Milano",
            "jurisdictions": ["IT", "DE"], "action": "nxdomain", "state": "shadow",
            "targets": [{"type": "subtree", "value": "kickasstorrents.to"}]}"#,
    )
    .unwrap();
    c.control
        .apply_order(&root(), order.clone(), true, true, "")
        .unwrap();
    let delta = |jurisdiction: &str, blocked, shadow| juris_control::stats::CountDelta {
        order: "IT-1".into(),
        jurisdiction: jurisdiction.into(),
        blocked,
        shadow,
    };
    c.control
        .record_daily(&[delta("IT", 3, 0), delta("DE", 2, 0), delta("IT", 0, 7)])
        .unwrap();

    let dashboard = c.send("GET", "/ui/", Some(&cookie), "").await;
    assert_eq!(dashboard.status, StatusCode::OK);
    assert!(
        dashboard.body.contains("<svg class=\"bars\" role=\"img\""),
        "{}",
        dashboard.body
    );
    assert!(
        dashboard.body.contains(": 5 in all, at most 5"),
        "the chart names its numbers: {}",
        dashboard.body
    );
    assert!(dashboard.body.contains("<rect class=\"bar\""));
    assert!(!dashboard.body.contains("style=\""), "no inline style");
    let week = c.send("GET", "/ui/?days=7", Some(&cookie), "").await;
    assert_eq!(week.body.matches("<tr><td>20").count(), 7, "a row per day");

    let page = c.send("GET", "/ui/orders/IT-1", Some(&cookie), "").await;
    assert_eq!(page.status, StatusCode::OK);
    assert!(page.body.contains("Shadow-mode impact"), "{}", page.body);
    assert!(
        page.body
            .contains("would have blocked <strong>7</strong> answer(s)"),
        "{}",
        page.body
    );
    for caption in [
        "<figcaption>IT: 3</figcaption>",
        "<figcaption>DE: 2</figcaption>",
    ] {
        assert!(page.body.contains(caption), "{caption}: {}", page.body);
    }
    assert!(page.body.contains("<td>DE</td><td>2</td>"), "the table");
    assert!(!page.body.contains("style=\""), "no inline style");
    // Active: no impact box any more, the per-day chart stays.
    order.state = juris_policy::OrderState::Active;
    c.control
        .apply_order(&root(), order, true, false, "")
        .unwrap();
    let page = c.send("GET", "/ui/orders/IT-1", Some(&cookie), "").await;
    assert!(!page.body.contains("Shadow-mode impact"));
    assert!(page.body.contains("5 answer(s) blocked from"));
}

#[tokio::test]
async fn the_feeds_pages_list_imports_checksums_and_acknowledgements() {
    use juris_control::feeds::{list_checksum, CumulativeFeed};
    let c = console();
    let cookie = c.sign_in(Role::Viewer).await;
    let empty = c.send("GET", "/ui/feeds", Some(&cookie), "").await;
    assert_eq!(empty.status, StatusCode::OK);
    assert!(
        empty.body.contains("No feed has been imported yet"),
        "{}",
        empty.body
    );
    assert!(
        !empty.body.contains("http-equiv=\"refresh\""),
        "nothing running: no reload"
    );
    let order = Order::from_json(
        br#"{"id": "PS-IT", "kind": "feed_ticket", "authority": "AGCOM",
            "jurisdictions": ["IT"], "action": "nxdomain", "state": "active", "targets": []}"#,
    )
    .unwrap();
    c.control
        .apply_order(&root(), order, true, true, "")
        .unwrap();
    let fqdn = vec!["a.example".to_owned(), "co.uk".to_owned()];
    let feed = CumulativeFeed::new(fqdn.clone(), Vec::new(), Vec::new());
    let first = c
        .control
        .import_feed(&root(), "ps", Some("PS-IT"), &feed, "")
        .unwrap();
    let list = c.send("GET", "/ui/feeds", Some(&cookie), "").await;
    assert!(list.body.contains("href=\"/ui/feeds/ps\""), "{}", list.body);
    assert!(
        list.body.contains(&list_checksum(&fqdn)),
        "the full SHA-256"
    );
    assert!(list.body.contains("href=\"/ui/orders/PS-IT\""));
    let page = c.send("GET", "/ui/feeds/ps", Some(&cookie), "").await;
    assert_eq!(page.status, StatusCode::OK);
    assert!(
        page.body.contains("1 processed, 1 not processed, 0 lifted"),
        "{}",
        page.body
    );
    assert!(page
        .body
        .contains("<td>co.uk</td><td>fqdn</td><td>unprocessed</td><td>UNDEFINED</td>"));
    // A second import: the history lists both, the older one is a link to its acknowledgement.
    let second = c
        .control
        .import_feed(&root(), "ps", None, &feed, "")
        .unwrap();
    let page = c.send("GET", "/ui/feeds/ps", Some(&cookie), "").await;
    assert!(page
        .body
        .contains(&format!("Acknowledgement of import #{}", second.import_id)));
    assert!(page
        .body
        .contains(&format!("href=\"/ui/feeds/ps?import={}\"", first.import_id)));
    let older = c
        .send(
            "GET",
            &format!("/ui/feeds/ps?import={}", first.import_id),
            Some(&cookie),
            "",
        )
        .await;
    assert!(older
        .body
        .contains(&format!("Acknowledgement of import #{}", first.import_id)));
    let missing = c.send("GET", "/ui/feeds/nope", Some(&cookie), "").await;
    assert_eq!(missing.status, StatusCode::NOT_FOUND);
}

/// A clock the test moves.
#[derive(Debug)]
struct Hands(std::sync::atomic::AtomicU64);

impl juris_control::Clock for Hands {
    fn unix_seconds(&self) -> u64 {
        self.0.load(std::sync::atomic::Ordering::SeqCst)
    }
}

#[tokio::test]
async fn sessions_survive_a_restart_are_hashed_at_rest_expire_and_end_on_sign_out() {
    let dir = tempfile::tempdir().unwrap();
    let hands = Arc::new(Hands(std::sync::atomic::AtomicU64::new(1_717_243_200)));
    let first = console_over(Store::open(dir.path()).unwrap(), hands.clone());
    let cookie = first.sign_in(Role::Admin).await;
    let id = cookie.strip_prefix("juris_session=").unwrap().to_owned();
    let csrf = first.csrf(&cookie).await;
    drop(first);

    // A restart: a new control plane over the same store still knows the session.
    let second = console_over(Store::open(dir.path()).unwrap(), hands.clone());
    let page = second.send("GET", "/ui/", Some(&cookie), "").await;
    assert_eq!(page.status, StatusCode::OK, "{}", page.body);
    assert_eq!(
        second.csrf(&cookie).await,
        csrf,
        "the same CSRF token after the restart"
    );

    // At rest: the SHA-256 of the id, never the id, nor the CSRF token, nor the API token.
    let conn = rusqlite::Connection::open(dir.path().join("control.sqlite3")).unwrap();
    let stored: Vec<String> = conn
        .prepare("SELECT id_hash FROM console_sessions")
        .unwrap()
        .query_map([], |r| r.get(0))
        .unwrap()
        .collect::<Result<_, _>>()
        .unwrap();
    use sha2::Digest;
    assert_eq!(stored, [hex::encode(sha2::Sha256::digest(id.as_bytes()))]);
    let dump: String = conn
        .query_row(
            "SELECT group_concat(id_hash || token_id || created_at || expires_at) FROM console_sessions",
            [],
            |r| r.get(0),
        )
        .unwrap();
    assert!(!dump.contains(&id) && !dump.contains(&csrf));

    // Expiry is enforced by the server (not only by the cookie's Max-Age).
    hands
        .0
        .fetch_add(8 * 3600 - 1, std::sync::atomic::Ordering::SeqCst);
    assert_eq!(
        second.send("GET", "/ui/", Some(&cookie), "").await.status,
        StatusCode::OK
    );
    hands.0.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
    let late = second.send("GET", "/ui/", Some(&cookie), "").await;
    assert_eq!(late.headers[header::LOCATION], "/ui/login");

    // Sign-out ends the session for good: the same cookie sent again is not signed in.
    let cookie = second.sign_in(Role::Viewer).await;
    let csrf = second.csrf(&cookie).await;
    let out = second
        .post("/ui/logout", &cookie, &format!("csrf={csrf}"))
        .await;
    assert_eq!(out.status, StatusCode::SEE_OTHER);
    let again = second.send("GET", "/ui/", Some(&cookie), "").await;
    assert_eq!(again.headers[header::LOCATION], "/ui/login");
    let count = || -> i64 {
        conn.query_row("SELECT COUNT(*) FROM console_sessions", [], |r| r.get(0))
            .unwrap()
    };
    assert_eq!(
        count(),
        0,
        "the expired session was deleted at the next sign-in, the other at sign-out"
    );

    // Revoking a token deletes its sessions.
    let token = second
        .control
        .create_token("root", Role::Editor, "erin")
        .unwrap();
    let erin = second.sign_in_with(&token).await;
    assert_eq!(count(), 1);
    second
        .control
        .revoke_token(&root(), "erin", "left")
        .unwrap();
    assert_eq!(count(), 0);
    let gone = second.send("GET", "/ui/", Some(&erin), "").await;
    assert_eq!(gone.headers[header::LOCATION], "/ui/login");
}
