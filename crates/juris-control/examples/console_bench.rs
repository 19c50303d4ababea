//! Server-side render time of the console's pages on a big store: 10,000 orders and about
//! 1,000,000 targets (one order with 100,000, the others 90 each), a valid audit chain of one
//! entry per order, 30 days of per-day counters for 2 jurisdictions of every active order, and
//! a feed of 10,000 items. The store is filled with plain SQL in one transaction (seconds);
//! then each page is requested through the admin router (`tower::ServiceExt::oneshot`, no
//! socket), signed in as an admin, and timed from the request to the last byte of the body.
//!
//! ```text
//! cargo run -p juris-control --example console_bench \
//!     --config 'profile.dev.package.juris-control.opt-level=2' \
//!     --config 'profile.dev.package.juris-policy.opt-level=2'   [-- ROUNDS]
//! ```
//! Prints a Markdown table (per page: mean CPU time of the process per request, median and
//! slowest wall time of ROUNDS requests, default 15) for `docs/performance.md`. Not a test: it
//! asserts nothing about time.

#![allow(clippy::unwrap_used, clippy::expect_used, reason = "benchmark code")]

use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::body::Body;
use axum::http::{header, Request, StatusCode};
use http_body_util::BodyExt;
use juris_control::api::NoServer;
use juris_control::audit::{canonical, chain_hash};
use juris_control::feeds::CumulativeFeed;
use juris_control::stats::CountDelta;
use juris_control::{router, Actor, ApiState, Control, ControlConfig, Role, Store, SystemClock};
use juris_policy::Order;
use rusqlite::params;
use tower::ServiceExt;

const ORDERS: usize = 10_000;
const BIG: usize = 100_000;
const EACH: usize = 90;
const JURISDICTIONS: &[&str] = &["IT", "FR", "DE", "ES", "GB", "AT", "BE", "NL", "PT", "*"];

fn state_of(i: usize) -> &'static str {
    match i % 20 {
        0 | 1 => "shadow",
        2 | 3 => "draft",
        4 => "suspended",
        5 => "lifted",
        _ => "active",
    }
}

fn order_id(i: usize) -> String {
    if i == 0 {
        "IT-BIG".to_owned()
    } else {
        format!("ORD-{i:05}")
    }
}

/// Fills the store with plain SQL in one transaction.
fn fill(dir: &std::path::Path) {
    drop(Store::open(dir).unwrap()); // migrations
    let mut conn = rusqlite::Connection::open(dir.join("control.sqlite3")).unwrap();
    conn.execute_batch("PRAGMA synchronous = OFF; PRAGMA journal_mode = WAL;")
        .unwrap();
    let tx = conn.transaction().unwrap();
    let now = "2026-12-01T00:00:00Z";
    let mut prev = "0".repeat(64);
    {
        let mut order_row = tx
            .prepare("INSERT INTO orders (id, document, state, kind, created_by, created_at, updated_at) VALUES (?1, ?2, ?3, 'court_order', 'bench', ?4, ?4)")
            .unwrap();
        let mut target_row = tx
            .prepare("INSERT INTO targets (order_id, kind, value, added_at, added_by, status) VALUES (?1, 'subtree', ?2, ?3, 'bench', ?4)")
            .unwrap();
        let mut transition = tx
            .prepare("INSERT INTO transitions (order_id, from_state, to_state, at, actor, reason) VALUES (?1, NULL, ?2, ?3, 'bench', '')")
            .unwrap();
        let mut audit = tx
            .prepare("INSERT INTO audit (seq, time, actor, action, object, before, after, reason, prev_hash, hash) VALUES (?1, ?2, 'bench', 'order.create', ?3, NULL, ?4, '', ?5, ?6)")
            .unwrap();
        for i in 0..ORDERS {
            let id = order_id(i);
            let jurisdiction = JURISDICTIONS[i % JURISDICTIONS.len()];
            let document = format!(
                r#"{{"id": "{id}", "kind": "court_order", "authority": "Authority {}",
                    "reference": "RG {i}/2026", "legal_basis": "L. 633/1941",
                    "jurisdictions": ["{jurisdiction}"], "action": "nxdomain", "state": "draft",
                    "comply_by": "2027-0{}-15T00:00:00Z", "targets": []}}"#,
                i % 37,
                1 + i % 9
            );
            let order = Order::from_json(document.as_bytes()).unwrap();
            let text = serde_json::to_string(&order).unwrap();
            order_row
                .execute(params![id, text, state_of(i), now])
                .unwrap();
            transition.execute(params![id, state_of(i), now]).unwrap();
            let count = if i == 0 { BIG } else { EACH };
            let mut names = Vec::with_capacity(count);
            for j in 0..count {
                let name = format!("site{j}.o{i}.example");
                let status = if j == 0 && i % 50 == 7 {
                    "needs_review"
                } else {
                    "enforced"
                };
                target_row.execute(params![id, name, now, status]).unwrap();
                names.push(name);
            }
            // The audit entry an order.create writes: the document and the targets added.
            let after = serde_json::json!({"document": order, "targets_added": names}).to_string();
            let seq = i as i64 + 1;
            let object = format!("order:{id}");
            let encoded = canonical(
                seq,
                now,
                "bench",
                "order.create",
                &object,
                None,
                Some(&after),
                "",
            );
            let hash = chain_hash(&prev, &encoded);
            audit
                .execute(params![seq, now, object, after, prev, hash])
                .unwrap();
            prev = hash;
        }
    }
    tx.commit().unwrap();
}

struct Bench {
    router: axum::Router,
    cookie: String,
}

impl Bench {
    async fn get(&self, path: &str, cookie: Option<&str>) -> (StatusCode, Vec<String>, String) {
        let mut request = Request::builder().uri(path);
        if let Some(cookie) = cookie {
            request = request.header(header::COOKIE, cookie);
        }
        self.send(request.body(Body::empty()).unwrap()).await
    }

    async fn send(&self, request: Request<Body>) -> (StatusCode, Vec<String>, String) {
        let response = self.router.clone().oneshot(request).await.unwrap();
        let status = response.status();
        let cookies = response
            .headers()
            .get_all(header::SET_COOKIE)
            .iter()
            .map(|v| v.to_str().unwrap().split(';').next().unwrap().to_owned())
            .collect();
        let body = response.into_body().collect().await.unwrap().to_bytes();
        (status, cookies, String::from_utf8_lossy(&body).into_owned())
    }

    /// Median and slowest wall time, mean CPU time of the process per request (the process
    /// does nothing else meanwhile: on a machine shared with other work, the wall time counts
    /// the waits for a core too), and the body's size.
    async fn time(&self, path: &str, rounds: usize) -> (Duration, Duration, Duration, usize) {
        let mut times = Vec::with_capacity(rounds);
        let mut size = 0;
        let cpu_before = process_cpu();
        for _ in 0..rounds {
            let start = Instant::now();
            let (status, _, body) = self.get(path, Some(&self.cookie)).await;
            times.push(start.elapsed());
            assert_eq!(status, StatusCode::OK, "{path}: {body}");
            size = body.len();
        }
        let cpu = (process_cpu() - cpu_before) / u32::try_from(rounds).unwrap();
        times.sort();
        (times[times.len() / 2], times[times.len() - 1], cpu, size)
    }
}

/// CPU time (user + system) of this process so far, from `/proc/self/stat` (clock ticks,
/// 100 per second).
fn process_cpu() -> Duration {
    let stat = std::fs::read_to_string("/proc/self/stat").unwrap();
    let after_name = &stat[stat.rfind(')').unwrap() + 2..];
    let fields: Vec<&str> = after_name.split(' ').collect();
    // Fields 14 and 15 of stat(5) (utime, stime) are the 12th and 13th after the name.
    let ticks: u64 = fields[11].parse::<u64>().unwrap() + fields[12].parse::<u64>().unwrap();
    Duration::from_millis(ticks * 10)
}

fn main() {
    let rounds: usize = std::env::args()
        .nth(1)
        .and_then(|a| a.parse().ok())
        .unwrap_or(15);
    let dir = tempfile::tempdir().unwrap();
    let started = Instant::now();
    fill(dir.path());
    let filled = started.elapsed();
    let control = Arc::new(
        Control::new(
            Store::open(dir.path()).unwrap(),
            &ControlConfig::default(),
            Arc::new(SystemClock),
        )
        .unwrap(),
    );
    let admin = Actor {
        name: "bench".into(),
        role: Role::Admin,
    };
    // A feed of 10,000 items into one of the orders, through Control (as `juris import feed`).
    let fqdn: Vec<String> = (0..10_000).map(|i| format!("feed{i}.example")).collect();
    let feed = CumulativeFeed::new(fqdn, Vec::new(), Vec::new());
    let started = Instant::now();
    control
        .import_feed(&admin, "ps", Some("ORD-00007"), &feed, "bench")
        .unwrap();
    let imported = started.elapsed();
    // 30 days of counters, 2 jurisdictions per active order, recorded day by day.
    let deltas: Vec<CountDelta> = (0..ORDERS)
        .filter(|i| state_of(*i) == "active")
        .flat_map(|i| {
            ["IT", "FR"].map(|j| CountDelta {
                order: order_id(i),
                jurisdiction: j.into(),
                blocked: 1 + (i % 7) as u64,
                shadow: 0,
            })
        })
        .collect();
    control.record_daily(&deltas).unwrap();
    let token = control.create_token("bench", Role::Admin, "bench").unwrap();
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    runtime.block_on(async {
        let mut bench = Bench {
            router: router(ApiState {
                control: control.clone(),
                server: Arc::new(NoServer),
            }),
            cookie: String::new(),
        };
        let (_, cookies, body) = bench.get("/ui/login", None).await;
        let at = body.find("name=\"csrf\" value=\"").unwrap() + 19;
        let csrf = &body[at..at + 64];
        let login = Request::builder()
            .method("POST")
            .uri("/ui/login")
            .header(header::COOKIE, &cookies[0])
            .header(header::CONTENT_TYPE, "application/x-www-form-urlencoded")
            .body(Body::from(format!("csrf={csrf}&token={token}")))
            .unwrap();
        let (status, cookies, _) = bench.send(login).await;
        assert_eq!(status, StatusCode::SEE_OTHER);
        bench.cookie = cookies[0].clone();
        // The transparency page: its builder started with the router; the first request waits
        // for the first build (every active order rendered).
        let first = Instant::now();
        let _ = bench.time("/transparency", 1).await;
        let transparency_build = first.elapsed();
        // One future domain added to a published order (ORD-00046 is active): the time until the
        // page served has it (the background rebuild re-renders that order only).
        let change = Instant::now();
        control
            .add_targets(
                &admin,
                "ORD-00046",
                vec![juris_policy::Target::new(
                    juris_policy::TargetKind::Domain,
                    "added-after-publish.example",
                )],
                "bench",
            )
            .unwrap();
        let committed = change.elapsed();
        for polled in 0.. {
            let (_, _, body) = bench.get("/transparency", None).await;
            if body.contains("added-after-publish.example") {
                break;
            }
            assert!(polled < 3000, "the change never reached the transparency page");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        let rebuilt = change.elapsed();
        println!(
            "store: {ORDERS} orders, {} targets, {ORDERS} audit entries; filled in {:.1} s; \
             feed of 10,000 items imported in {:.2} s; /transparency: first build (every order) {:.0} ms; \
             a target added to one order: committed in {:.0} ms, on the served page {:.0} ms after the change\n",
            BIG + (ORDERS - 1) * EACH,
            filled.as_secs_f64(),
            imported.as_secs_f64(),
            transparency_build.as_secs_f64() * 1000.0,
            committed.as_secs_f64() * 1000.0,
            rebuilt.as_secs_f64() * 1000.0
        );
        println!(
            "| page | CPU ms per request (mean) | wall ms, median | wall ms, slowest | bytes |\n|---|---:|---:|---:|---:|"
        );
        for path in [
            "/ui/",
            "/ui/?days=365",
            "/ui/orders",
            "/ui/orders?page=150",
            "/ui/orders?jurisdiction=IT",
            "/ui/orders?state=shadow&q=ORD-0",
            "/ui/orders?q=Authority%2013",
            "/ui/orders?authority=authority%202&jurisdiction=FR",
            "/ui/orders?q=RG",
            "/ui/orders?state=suspended&page=5",
            "/ui/orders?needs_review=true",
            "/ui/orders/ORD-00042",
            "/ui/orders/IT-BIG",
            "/ui/feeds",
            "/ui/feeds/ps",
            "/ui/audit",
            "/ui/tokens",
            "/ui/safeguards",
            "/transparency",
            "/transparency.json",
        ] {
            let (median, slowest, cpu, size) = bench.time(path, rounds).await;
            println!(
                "| `{path}` | {:.1} | {:.1} | {:.1} | {size} |",
                cpu.as_secs_f64() * 1000.0,
                median.as_secs_f64() * 1000.0,
                slowest.as_secs_f64() * 1000.0
            );
        }
    });
}
