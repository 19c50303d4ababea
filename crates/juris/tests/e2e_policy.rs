//! End-to-end tests of legal orders on the answer path: `juris serve --geoip FILE --orders DIR`
//! recursing through real NSD servers on loopback, asked by `dig` from client addresses that
//! an MMDB written here places in Italy, Germany, France (withdrawn) or nowhere.
//!
//! Needs `nsd` and `dig` and root (NSD binds port 53 on 127.x addresses), like
//! `e2e_resolver.rs`.
#![allow(clippy::unwrap_used, clippy::expect_used, reason = "test code")]

use std::fs;
use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::thread;
use std::time::{Duration, Instant};

use juris_testkit::addresses::AddressBlock;
use juris_testkit::dig::{Lookup, Response};
use juris_testkit::hierarchy::{Hierarchy, Zone};
use juris_testkit::juris::Juris;
use juris_testkit::mmdb::{MmdbWriter, Shape};

const JURIS: &str = env!("CARGO_BIN_EXE_juris");
const ORDER_ID: &str = "IT-MI-2024-0001";
const REFERENCE_TEXT: &str =
    "blocked by order IT-MI-2024-0001 (Tribunale di Milano, RG 12345/2024)";

/// ```text
/// .  ── to.   ── kickasstorrents.to.   www, @ A
///    ├─ pro.  ── limetorrents.pro.     @, www A
///    └─ test. ── ilcorsaronero.test.   @, www A
///             ├─ innocent.test.        www A; alias CNAME www.kickasstorrents.to.
///             ├─ kat-mirror.test.      www A          (the "future domain")
///             └─ elsewhere.test.       www, soon, shadowed A (other orders' targets)
/// ```
fn world() -> Hierarchy {
    Hierarchy::builder()
        .zone(Zone::new("to."))
        .zone(Zone::new("kickasstorrents.to.").records("@ A 192.0.2.10\nwww A 192.0.2.10"))
        .zone(Zone::new("pro."))
        .zone(Zone::new("limetorrents.pro.").records("@ A 192.0.2.20\nwww A 192.0.2.20"))
        .zone(Zone::new("test."))
        .zone(Zone::new("ilcorsaronero.test.").records("@ A 192.0.2.30\nwww A 192.0.2.30"))
        .zone(
            Zone::new("innocent.test.")
                .records("www A 192.0.2.40\nalias CNAME www.kickasstorrents.to."),
        )
        .zone(Zone::new("kat-mirror.test.").records("www A 192.0.2.50"))
        .zone(
            Zone::new("elsewhere.test.")
                .records("www A 192.0.2.60\nsoon A 192.0.2.61\nshadowed A 192.0.2.62"),
        )
        .start()
}

/// The Milan order of the issue, with `extra_targets` appended and `state`.
fn milan_order(state: &str, extra_targets: &str) -> String {
    format!(
        r#"{{
  "id": "{ORDER_ID}",
  "kind": "court_order",
  "authority": "Tribunale di Milano",
  "reference": "RG 12345/2024",
  "legal_basis": "L. 633/1941; L. 93/2023",
  "requested_by": ["FIMI", "FPM"],
  "jurisdictions": ["IT"],
  "targets": [
    {{"type": "subtree", "value": "kickasstorrents.to"}},
    {{"type": "subtree", "value": "limetorrents.pro"}},
    {{"type": "subtree", "value": "ilcorsaronero.test"}}{extra_targets}
  ],
  "action": "nxdomain",
  "block_addresses": false,
  "state": "{state}",
  "effective_from": "2024-05-01T00:00:00Z",
  "comply_by": "2024-05-31T00:00:00Z",
  "expires_at": null,
  "windows": [],
  "notice": {{"text": "Blocked by order of the Court of Milan", "lang": "en", "url": "https://lumendatabase.org/notices/0"}},
  "parent": null
}}"#
    )
}

/// A one-target order for Italy.
fn simple_order(id: &str, state: &str, target: &str, extra: &str) -> String {
    format!(
        r#"{{"id": "{id}", "kind": "court_order", "authority": "Tribunale di Roma",
            "reference": "RG 1/2025", "jurisdictions": ["IT"], "action": "nxdomain",
            "state": "{state}", "targets": [{{"type": "domain", "value": "{target}"}}] {extra}}}"#
    )
}

/// Writes a file so that a watcher never sees it half written (write, then rename).
fn write_atomically(path: &Path, text: &str) {
    let temporary = path.with_extension("tmp");
    fs::write(&temporary, text).unwrap();
    fs::rename(&temporary, path).unwrap();
}

struct Setup {
    hierarchy: Hierarchy,
    juris: Juris,
    clients: AddressBlock,
    directory: tempfile::TempDir,
}

impl Setup {
    fn orders(&self) -> PathBuf {
        self.directory.path().join("orders")
    }
    fn mmdb(&self) -> PathBuf {
        self.directory.path().join("countries.mmdb")
    }
    fn config(&self) -> PathBuf {
        self.directory.path().join("juris.toml")
    }
    fn data_dir(&self) -> PathBuf {
        self.directory.path().join("data")
    }
    fn italy(&self) -> IpAddr {
        IpAddr::V4(self.clients.address(101))
    }
    fn germany(&self) -> IpAddr {
        IpAddr::V4(self.clients.address(102))
    }
    fn france(&self) -> IpAddr {
        IpAddr::V4(self.clients.address(103))
    }
    fn nowhere(&self) -> IpAddr {
        IpAddr::V4(self.clients.address(104))
    }
    fn forwarder(&self) -> IpAddr {
        IpAddr::V4(self.clients.address(110))
    }
    /// The admin API's URL, when the configuration has `api_listen = "{api}"`.
    fn api(&self) -> String {
        format!("http://{}:8053", self.clients.address(200))
    }

    /// `dig +subnet=SUBNET` from `client`: the response and its Client Subnet option as dig
    /// prints it (`ADDRESS/SOURCE/SCOPE`), if any.
    fn dig_subnet(&self, client: IpAddr, name: &str, subnet: &str) -> (Response, Option<String>) {
        let lookup = Lookup::dig(self.juris.address(), name, "A")
            .source(client)
            .arg(&format!("+subnet={subnet}"))
            .timeout_seconds(5);
        let response = ask(&lookup);
        let ecs = response
            .output
            .lines()
            .find_map(|line| line.split("CLIENT-SUBNET:").nth(1))
            .map(|rest| rest.trim().to_owned());
        (response, ecs)
    }

    fn dig(&self, client: IpAddr, name: &str) -> Response {
        ask(&Lookup::dig(self.juris.address(), name, "A")
            .source(client)
            .timeout_seconds(5))
    }

    fn dig_tcp(&self, client: IpAddr, name: &str) -> Response {
        ask(&Lookup::dig(self.juris.address(), name, "A")
            .source(client)
            .tcp()
            .timeout_seconds(5))
    }

    /// `juris explain` with the same files as the server.
    fn explain(&self, client: IpAddr, name: &str, extra: &[&str]) -> String {
        let output = Command::new(JURIS)
            .arg("explain")
            .arg(name)
            .arg("--client")
            .arg(client.to_string())
            .arg("--config")
            .arg(self.config())
            .arg("--orders")
            .arg(self.orders())
            .arg("--geoip")
            .arg(self.mmdb())
            .args(extra)
            .output()
            .unwrap();
        let text = String::from_utf8_lossy(&output.stdout).into_owned();
        assert!(
            output.status.success(),
            "juris explain failed: {text}{}",
            String::from_utf8_lossy(&output.stderr)
        );
        text
    }
}

/// The hierarchy, an MMDB for the client addresses, the orders, and juris serving them.
fn setup(orders: &[(&str, String)]) -> Setup {
    setup_in(world(), orders)
}

/// [`setup`] on another hierarchy.
fn setup_in(hierarchy: Hierarchy, orders: &[(&str, String)]) -> Setup {
    setup_full(hierarchy, orders, DEFAULT_CONFIG)
}

/// The configuration [`setup`] gives juris.
const DEFAULT_CONFIG: &str = "[policy]\nwithdraw = [\"FR\"]\nblock_ttl = 30\n";

/// [`setup`] with `config` as the configuration file; `{forwarder}` in it is replaced by the
/// address [`Setup::forwarder`] (a trusted ECS forwarder when the config says so), `{api}` by
/// the admin API's `ADDR:PORT` ([`Setup::api`]). The MMDB
/// also places 10.20.0.0/16 in Italy and 10.30.0.0/16 in Germany (ECS subnets).
fn setup_with(orders: &[(&str, String)], config: &str) -> Setup {
    setup_full(world(), orders, config)
}

/// [`setup_in`] and [`setup_with`] together.
fn setup_full(hierarchy: Hierarchy, orders: &[(&str, String)], config: &str) -> Setup {
    let clients = AddressBlock::allocate();
    let directory = tempfile::tempdir().unwrap();
    let orders_dir = directory.path().join("orders");
    fs::create_dir_all(&orders_dir).unwrap();
    for (file, text) in orders {
        fs::write(orders_dir.join(file), text).unwrap();
    }
    let mmdb = directory.path().join("countries.mmdb");
    MmdbWriter::new(Shape::CountryCode)
        .insert(
            format!("{}/32", clients.address(101)).parse().unwrap(),
            "IT",
        )
        .insert(
            format!("{}/32", clients.address(102)).parse().unwrap(),
            "DE",
        )
        .insert(
            format!("{}/32", clients.address(103)).parse().unwrap(),
            "FR",
        )
        .insert("127.0.0.101/32".parse().unwrap(), "IT")
        .insert("127.0.0.102/32".parse().unwrap(), "DE")
        .insert("10.20.0.0/16".parse().unwrap(), "IT")
        .insert("10.30.0.0/16".parse().unwrap(), "DE")
        .write_to(&mmdb)
        .unwrap();
    let config_text = config
        .replace("{forwarder}", &clients.address(110).to_string())
        .replace("{api}", &format!("{}:8053", clients.address(200)));
    let config = directory.path().join("juris.toml");
    fs::write(&config, config_text).unwrap();
    let data_dir = directory.path().join("data");
    fs::create_dir_all(&data_dir).unwrap();
    let juris = Juris::builder(JURIS)
        .root_hints(hierarchy.root_hints())
        .args(["--threads", "2"])
        .arg("--config")
        .arg(&config)
        .arg("--geoip")
        .arg(&mmdb)
        .arg("--orders")
        .arg(&orders_dir)
        .arg("--data-dir")
        .arg(&data_dir)
        .start();
    Setup {
        hierarchy,
        juris,
        clients,
        directory,
    }
}

fn ask(lookup: &Lookup) -> Response {
    lookup
        .run()
        .unwrap_or_else(|failure| panic!("{}: {failure}", lookup.command_line()))
}

fn assert_blocked(response: &Response, soa_owner: &str) {
    assert_eq!(response.status, "NXDOMAIN", "{}", response.output);
    assert!(response.answer.is_empty(), "{}", response.output);
    let soa = response.authority_soa();
    assert_eq!(soa.len(), 1, "{}", response.output);
    assert_eq!(soa[0].name, soa_owner, "{}", response.output);
    assert!(soa[0].ttl <= 30, "{}", response.output);
    let ede = &response.extended_errors;
    assert_eq!(ede.len(), 1, "{}", response.output);
    assert_eq!(ede[0].code, 16, "{}", response.output);
    assert_eq!(
        ede[0].text.as_deref(),
        Some(REFERENCE_TEXT),
        "{}",
        response.output
    );
}

fn assert_resolved(response: &Response, address: &str) {
    assert_eq!(response.status, "NOERROR", "{}", response.output);
    assert_eq!(response.answer_data("A"), [address], "{}", response.output);
    assert!(response.extended_errors.is_empty(), "{}", response.output);
}

/// Polls `check` until it holds or `limit` passes; the time it took.
fn within(limit: Duration, mut check: impl FnMut() -> bool) -> Option<Duration> {
    let start = Instant::now();
    while start.elapsed() <= limit {
        if check() {
            return Some(start.elapsed());
        }
        thread::sleep(Duration::from_millis(25));
    }
    None
}

#[test]
fn italy_is_blocked_where_germany_resolves_over_udp_and_tcp() {
    let s = setup(&[
        ("it-mi-2024-0001.json", milan_order("active", "")),
        (
            "shadow.json",
            simple_order("IT-SHADOW-1", "shadow", "shadowed.elsewhere.test", ""),
        ),
    ]);
    let (italy, germany) = (s.italy(), s.germany());

    // The three sites and their subdomains, for Italy only.
    for (name, owner, address) in [
        ("kickasstorrents.to.", "kickasstorrents.to.", "192.0.2.10"),
        (
            "www.kickasstorrents.to.",
            "kickasstorrents.to.",
            "192.0.2.10",
        ),
        ("limetorrents.pro.", "limetorrents.pro.", "192.0.2.20"),
        ("www.limetorrents.pro.", "limetorrents.pro.", "192.0.2.20"),
        ("ilcorsaronero.test.", "ilcorsaronero.test.", "192.0.2.30"),
        (
            "www.ilcorsaronero.test.",
            "ilcorsaronero.test.",
            "192.0.2.30",
        ),
    ] {
        assert_blocked(&s.dig(italy, name), owner);
        assert_blocked(&s.dig_tcp(italy, name), owner);
        assert_resolved(&s.dig(germany, name), address);
        assert_resolved(&s.dig_tcp(germany, name), address);
        // After Germany filled the cache, Italy is still blocked: policy comes after it.
        assert_blocked(&s.dig(italy, name), owner);
    }
    // A client nowhere in the database: only global orders apply.
    assert_resolved(&s.dig(s.nowhere(), "www.kickasstorrents.to."), "192.0.2.10");

    // A name whose CNAME points into a blocked site: blocked for Italy (SOA at the query
    // name), resolved for Germany.
    assert_blocked(
        &s.dig(italy, "alias.innocent.test."),
        "alias.innocent.test.",
    );
    let german = s.dig(germany, "alias.innocent.test.");
    assert_eq!(german.answer_data("A"), ["192.0.2.10"], "{}", german.output);
    assert_blocked(
        &s.dig(italy, "alias.innocent.test."),
        "alias.innocent.test.",
    );
    assert_resolved(&s.dig(italy, "www.innocent.test."), "192.0.2.40");

    // A shadow order never blocks.
    assert_resolved(&s.dig(italy, "shadowed.elsewhere.test."), "192.0.2.62");

    // Structured errors when the client signals them (an empty EDE option).
    let structured = ask(
        &Lookup::dig(s.juris.address(), "www.kickasstorrents.to.", "A")
            .source(italy)
            .arg("+ednsopt=15"),
    );
    assert_eq!(structured.status, "NXDOMAIN", "{}", structured.output);
    let text = structured.extended_errors[0]
        .text
        .clone()
        .unwrap_or_default();
    assert!(
        text.contains(r#""o":"Tribunale di Milano""#) && text.contains(r#""l":"en""#),
        "{}",
        structured.output
    );
    assert!(
        text.contains("RG 12345/2024") && !text.contains(r#""s":"#),
        "{text}"
    );

    // A withdrawn jurisdiction: REFUSED + EDE 18 for everything, UDP and TCP.
    for response in [
        s.dig(s.france(), "www.innocent.test."),
        s.dig_tcp(s.france(), "www.innocent.test."),
    ] {
        assert_eq!(response.status, "REFUSED", "{}", response.output);
        assert_eq!(response.extended_errors[0].code, 18, "{}", response.output);
    }

    // Explain names the order and how the jurisdiction was decided, for both clients.
    let it = s.explain(italy, "www.kickasstorrents.to", &[]);
    assert!(it.contains("jurisdiction: IT (decided by geoip)"), "{it}");
    assert!(it.contains("verdict:      BLOCK"), "{it}");
    assert!(
        it.contains(&format!("fired:        order {ORDER_ID}")),
        "{it}"
    );
    assert!(it.contains("subtree kickasstorrents.to"), "{it}");
    assert!(it.contains("status: NXDOMAIN"), "{it}");
    assert!(
        it.contains(&format!("EDE: 16 (Censored): {REFERENCE_TEXT}")),
        "{it}"
    );
    let de = s.explain(germany, "www.kickasstorrents.to", &[]);
    assert!(de.contains("jurisdiction: DE (decided by geoip)"), "{de}");
    assert!(de.contains("verdict:      ALLOW"), "{de}");
    assert!(de.contains(ORDER_ID), "{de}");
    assert!(
        de.contains("does not apply: the client is outside the order's jurisdictions"),
        "{de}"
    );
    assert!(de.contains("resolved normally"), "{de}");
    let pinned = s.explain(
        germany,
        "www.kickasstorrents.to",
        &["--country", "IT", "--json"],
    );
    let report: serde_json::Value = serde_json::from_str(&pinned).unwrap();
    assert_eq!(report["jurisdiction"]["decided_by"], "listener", "{pinned}");
    assert_eq!(report["verdict"], "block", "{pinned}");
    assert_eq!(report["fired"]["order"], ORDER_ID, "{pinned}");
    assert_eq!(report["response"]["rcode"], "NXDOMAIN", "{pinned}");

    // The counters reach DATA_DIR/status.json (written every 2 s) and `juris status`.
    let counted = within(Duration::from_secs(20), || {
        let Ok(text) = fs::read_to_string(s.data_dir().join("status.json")) else {
            return false;
        };
        let status: serde_json::Value = serde_json::from_str(&text).unwrap_or_default();
        let rows = status["counters"].as_array().cloned().unwrap_or_default();
        let row = |order: &str, field: &str| {
            rows.iter()
                .find(|r| r["order"] == order && r["jurisdiction"] == "IT")
                .and_then(|r| r[field].as_u64())
                .unwrap_or(0)
        };
        // Every counter the assertions below read: a file written between two of the
        // queries above would otherwise satisfy this half-way.
        let refused_fr = status["withdrawn"]
            .as_array()
            .into_iter()
            .flatten()
            .any(|r| r["jurisdiction"] == "FR" && r["refused"] == 2);
        row(ORDER_ID, "blocked") >= 20 && row("IT-SHADOW-1", "shadow") >= 1 && refused_fr
    });
    assert!(
        counted.is_some(),
        "{}",
        fs::read_to_string(s.data_dir().join("status.json")).unwrap_or_default()
    );
    let status = Command::new(JURIS)
        .args(["status", "--data-dir"])
        .arg(s.data_dir())
        .output()
        .unwrap();
    let status = String::from_utf8_lossy(&status.stdout);
    assert!(
        status.contains(&format!("{ORDER_ID} IT: blocked")),
        "{status}"
    );
    assert!(status.contains("withdrawn FR: refused 2"), "{status}");
    assert!(
        !status.contains(&s.italy().to_string()),
        "no client addresses: {status}"
    );
}

#[test]
fn order_changes_apply_within_a_second_without_restart() {
    let from_now = |seconds: i64| {
        jiff::Timestamp::now()
            .checked_add(jiff::SignedDuration::from_secs(seconds))
            .unwrap()
    };
    let in_an_hour = from_now(3600);
    let s = setup(&[
        ("it-mi-2024-0001.json", milan_order("active", "")),
        (
            "rome.json",
            simple_order(
                "IT-RM-1",
                "active",
                "www.elsewhere.test",
                &format!(r#", "expires_at": "{in_an_hour}""#),
            ),
        ),
    ]);
    let italy = s.italy();
    let orders = s.orders();

    // An order that reaches its expires_at stops blocking, without any file change: the
    // engine checks the time on every query.
    assert_resolved(&s.dig(italy, "soon.elsewhere.test."), "192.0.2.61");
    let soon = from_now(3);
    write_atomically(
        &orders.join("soon.json"),
        &simple_order(
            "IT-RM-2",
            "active",
            "soon.elsewhere.test",
            &format!(r#", "expires_at": "{soon}""#),
        ),
    );
    let blocked = within(Duration::from_secs(2), || {
        s.dig(italy, "soon.elsewhere.test.").status == "NXDOMAIN"
    });
    assert!(blocked.is_some(), "IT-RM-2 never blocked");
    let expired = within(Duration::from_secs(6), || {
        s.dig(italy, "soon.elsewhere.test.").status == "NOERROR"
    });
    assert!(
        expired.is_some(),
        "IT-RM-2 still blocks after its expires_at"
    );
    assert!(
        jiff::Timestamp::now() >= soon,
        "unblocked before its expires_at"
    );

    // A "future domain" added to the order file is blocked, no restart. (How fast is measured
    // by the benchmarks, W4 in docs/performance.md; the bound here only says "at all".)
    assert_resolved(&s.dig(italy, "www.kat-mirror.test."), "192.0.2.50");
    write_atomically(
        &orders.join("it-mi-2024-0001.json"),
        &milan_order(
            "active",
            r#", {"type": "subtree", "value": "kat-mirror.test"}"#,
        ),
    );
    within(Duration::from_secs(20), || {
        s.dig(italy, "www.kat-mirror.test.").status == "NXDOMAIN"
    })
    .expect("the future domain was never blocked");
    assert_blocked(&s.dig(italy, "www.kat-mirror.test."), "kat-mirror.test.");
    assert_resolved(&s.dig(s.germany(), "www.kat-mirror.test."), "192.0.2.50");

    // An invalid change keeps the last good policy in force and is logged with the file and
    // the field.
    write_atomically(
        &orders.join("broken.json"),
        &simple_order("BROKEN", "active", "com", ""),
    );
    let logged = within(Duration::from_secs(20), || {
        s.juris.stderr().contains("broken.json")
    });
    assert!(logged.is_some(), "{}", s.juris.stderr());
    let log = s.juris.stderr();
    assert!(
        log.contains("ERROR") && log.contains("targets[0].value"),
        "{log}"
    );
    assert_blocked(&s.dig(italy, "www.kat-mirror.test."), "kat-mirror.test.");
    fs::remove_file(orders.join("broken.json")).unwrap();

    // Expiring an order by editing it, and lifting one, stop the blocks within a second.
    assert_eq!(s.dig(italy, "www.elsewhere.test.").status, "NXDOMAIN");
    let past = jiff::Timestamp::now() - jiff::SignedDuration::from_secs(60);
    write_atomically(
        &orders.join("rome.json"),
        &simple_order(
            "IT-RM-1",
            "active",
            "www.elsewhere.test",
            &format!(r#", "expires_at": "{past}""#),
        ),
    );
    write_atomically(
        &orders.join("it-mi-2024-0001.json"),
        &milan_order("lifted", ""),
    );
    within(Duration::from_secs(20), || {
        s.dig(italy, "www.kickasstorrents.to.").status == "NOERROR"
            && s.dig(italy, "www.elsewhere.test.").status == "NOERROR"
    })
    .expect("the lifted and expired orders still block");
    assert_resolved(&s.dig(italy, "www.kickasstorrents.to."), "192.0.2.10");
    assert_resolved(&s.dig(italy, "www.elsewhere.test."), "192.0.2.60");
    assert_resolved(&s.dig_tcp(italy, "www.kat-mirror.test."), "192.0.2.50");
    assert!(s.juris.is_running());
}

/// ```text
/// .  ── to.   ── kickasstorrents2.to.  www A   NS ns.dnshost.test. (glueless)
///    └─ test. ── kat-mirror.test.      www A   NS ns.dnshost.test. (glueless)
///             ├─ dnshost.test.         ns A ×2 (one address per zone's server)
///             └─ innocent.test.        www A   NS ns1.innocent.test. (its own)
/// ```
/// Two zones share the name server `ns.dnshost.test.` and its addresses: the "future
/// domains" of a blocked site that moved, keeping its DNS host.
fn shared_world() -> Hierarchy {
    Hierarchy::builder()
        .zone(Zone::new("to."))
        .zone(Zone::new("test."))
        .zone(Zone::new("dnshost.test."))
        .zone(
            Zone::new("kickasstorrents2.to.")
                .records("www A 192.0.2.70")
                .glueless_name_server("ns.dnshost.test."),
        )
        .zone(
            Zone::new("kat-mirror.test.")
                .records("www A 192.0.2.50")
                .glueless_name_server("ns.dnshost.test."),
        )
        .zone(Zone::new("innocent.test.").records("www A 192.0.2.40"))
        .start()
}

/// An Italian order with one name server target.
fn name_server_order(id: &str, state: &str, kind: &str, value: &str) -> String {
    format!(
        r#"{{"id": "{id}", "kind": "court_order", "authority": "Tribunale di Milano",
            "reference": "RG 99/2025", "jurisdictions": ["IT"], "action": "nxdomain",
            "state": "{state}", "targets": [{{"type": "{kind}", "value": "{value}"}}]}}"#
    )
}

/// NXDOMAIN with EDE 16 naming `order`, SOA at the query name (an answer trigger fired).
fn assert_blocked_by(response: &Response, owner: &str, order: &str) {
    assert_eq!(response.status, "NXDOMAIN", "{}", response.output);
    assert!(response.answer.is_empty(), "{}", response.output);
    let soa = response.authority_soa();
    assert_eq!(soa.len(), 1, "{}", response.output);
    assert_eq!(soa[0].name, owner, "{}", response.output);
    let ede = &response.extended_errors;
    assert_eq!(ede.len(), 1, "{}", response.output);
    assert_eq!(ede[0].code, 16, "{}", response.output);
    let text = ede[0].text.clone().unwrap_or_default();
    assert!(
        text.starts_with(&format!("blocked by order {order} (")),
        "{}",
        response.output
    );
}

/// Rewrites the order file `file` with `text`, then waits until Italy's answer for `probe` has
/// the RCODE `status` (the change was loaded).
fn replace_order(s: &Setup, file: &str, text: &str, probe: &str, status: &str) {
    write_atomically(&s.orders().join(file), text);
    eventually(
        &format!("{probe} answers {status} after {file} changed"),
        || s.dig(s.italy(), probe).status == status,
    );
}

/// Polls until `check` holds (30 s at most, so that a failure does not hang; no timing is
/// asserted).
fn eventually(what: &str, check: impl FnMut() -> bool) {
    assert!(
        within(Duration::from_secs(30), check).is_some(),
        "never happened: {what}"
    );
}

#[test]
fn name_server_triggers_block_shared_hosting_for_italy_only_while_active() {
    let s = setup_in(
        shared_world(),
        &[(
            "ns.json",
            name_server_order("IT-NS-1", "active", "nsdname", "ns.dnshost.test"),
        )],
    );
    let (italy, germany) = (s.italy(), s.germany());
    let moved = [
        ("www.kickasstorrents2.to.", "192.0.2.70"),
        ("www.kat-mirror.test.", "192.0.2.50"),
    ];
    // nsdname: both zones served by ns.dnshost.test are blocked for Italy, on the first
    // answer (resolved) and on the next ones (shared cache, then the worker's hot slot, which
    // must never hold them as clean); Germany gets the answers.
    for (name, address) in moved {
        for _ in 0..3 {
            assert_blocked_by(&s.dig(italy, name), name, "IT-NS-1");
        }
        for _ in 0..2 {
            assert_resolved(&s.dig(germany, name), address);
        }
        assert_blocked_by(&s.dig(italy, name), name, "IT-NS-1");
        assert_blocked_by(&s.dig_tcp(italy, name), name, "IT-NS-1");
    }
    // A zone with its own name server resolves for Italy (twice: the hot answer too).
    for _ in 0..2 {
        assert_resolved(&s.dig(italy, "www.innocent.test."), "192.0.2.40");
    }
    let explained = s.explain(italy, "www.kickasstorrents2.to", &[]);
    // `juris explain` does not resolve: it says the name servers are checked on the answer.
    assert!(
        explained.contains("name servers that answered"),
        "{explained}"
    );

    // Suspended: the cached answers are served to Italy again.
    replace_order(
        &s,
        "ns.json",
        &name_server_order("IT-NS-1", "suspended", "nsdname", "ns.dnshost.test"),
        "www.kickasstorrents2.to.",
        "NOERROR",
    );
    for (name, address) in moved {
        assert_resolved(&s.dig(italy, name), address);
    }

    // nsip: one address of the shared name server blocks both zones again (from the cache:
    // the addresses of the servers were kept with the answers), still for Italy only.
    let shared_address = s.hierarchy.addresses("kat-mirror.test.")[0];
    replace_order(
        &s,
        "ns.json",
        &name_server_order("IT-NS-2", "active", "nsip", &format!("{shared_address}/32")),
        "www.kat-mirror.test.",
        "NXDOMAIN",
    );
    for (name, address) in moved {
        for _ in 0..2 {
            assert_blocked_by(&s.dig(italy, name), name, "IT-NS-2");
            assert_resolved(&s.dig(germany, name), address);
        }
    }
    assert_resolved(&s.dig(italy, "www.innocent.test."), "192.0.2.40");

    // And only while active: lifted, the names resolve for Italy.
    replace_order(
        &s,
        "ns.json",
        &name_server_order("IT-NS-2", "lifted", "nsip", &format!("{shared_address}/32")),
        "www.kat-mirror.test.",
        "NOERROR",
    );
    for (name, address) in moved {
        assert_resolved(&s.dig(italy, name), address);
    }
}

#[test]
fn an_extension_stops_with_its_parent() {
    let extension = r#"{"id": "IT-MI-2024-0001-EXT-1", "kind": "extension",
        "authority": "Tribunale di Milano", "reference": "RG 12345/2024",
        "jurisdictions": ["IT"], "action": "nxdomain", "state": "active",
        "parent": "IT-MI-2024-0001",
        "targets": [{"type": "subtree", "value": "kickasstorrents2.to",
                     "added_at": "2025-01-10T00:00:00Z", "added_by": "FIMI",
                     "evidence": "https://example.org/evidence/1"}]}"#;
    let s = setup_in(
        shared_world(),
        &[
            ("it-mi-2024-0001.json", milan_order("active", "")),
            ("ext.json", extension.to_owned()),
        ],
    );
    let (italy, germany) = (s.italy(), s.germany());
    let name = "www.kickasstorrents2.to.";
    assert_blocked_by(
        &s.dig(italy, name),
        "kickasstorrents2.to.",
        "IT-MI-2024-0001-EXT-1",
    );
    assert_resolved(&s.dig(germany, name), "192.0.2.70");

    // The parent is suspended: its extension stops in the same publish.
    replace_order(
        &s,
        "it-mi-2024-0001.json",
        &milan_order("suspended", ""),
        name,
        "NOERROR",
    );
    assert_resolved(&s.dig(italy, name), "192.0.2.70");
    let explained = s.explain(italy, "www.kickasstorrents2.to", &[]);
    assert!(
        explained.contains("its parent order is suspended"),
        "{explained}"
    );
    // Active again: so is the extension.
    replace_order(
        &s,
        "it-mi-2024-0001.json",
        &milan_order("active", ""),
        name,
        "NXDOMAIN",
    );
    assert_blocked_by(
        &s.dig(italy, name),
        "kickasstorrents2.to.",
        "IT-MI-2024-0001-EXT-1",
    );
}

#[test]
fn a_trusted_forwarders_ecs_is_answered_with_the_scope_that_decided() {
    let s = setup_with(
        &[("milan.json", milan_order("active", ""))],
        "[geoip]\ntrusted_ecs_forwarders = [\"{forwarder}/32\"]\n",
    );
    let forwarder = s.forwarder();
    let blocked = "www.kickasstorrents.to.";
    let untouched = "www.kat-mirror.test.";

    // The response through the forwarder, after checking the Client Subnet option it carries.
    let through_forwarder = |name: &str, subnet: &str, expected: &str| {
        let (response, ecs) = s.dig_subnet(forwarder, name, subnet);
        assert_eq!(ecs.as_deref(), Some(expected), "{}", response.output);
        response
    };

    // A name an order can touch: the answer depends on the client's network, and the scope
    // is the GeoIP network (/16) that decided, for the blocked Italian subnet as for the
    // German one that resolves; twice each (the second is a cache hit).
    for _ in 0..2 {
        let italian = through_forwarder(blocked, "10.20.30.0/24", "10.20.30.0/24/16");
        assert_blocked(&italian, "kickasstorrents.to.");
        let german = through_forwarder(blocked, "10.30.1.0/24", "10.30.1.0/24/16");
        assert_resolved(&german, "192.0.2.10");
    }
    // Only the truncated /24 is looked at: a longer source prefix gets scope /16 still, a
    // shorter one never more than it sent.
    through_forwarder(blocked, "10.20.30.40/32", "10.20.30.40/32/16");
    through_forwarder(blocked, "10.20.0.0/12", "10.16.0.0/12/12");

    // A name no order can touch: scope /0, so a downstream cache shares it; the repeated
    // queries are answered from the UDP workers' hot answers the same way.
    for _ in 0..4 {
        let response = through_forwarder(untouched, "10.20.30.0/24", "10.20.30.0/24/0");
        assert_resolved(&response, "192.0.2.50");
    }

    // ECS from a source that is not a trusted forwarder is ignored: no option in the answer,
    // and the source address decides (Italy here).
    let (italian, ecs) = s.dig_subnet(s.italy(), blocked, "10.30.1.0/24");
    assert_blocked(&italian, "kickasstorrents.to.");
    assert_eq!(ecs, None, "{}", italian.output);
}

/// `juris explain --api` asks the running server: with `--resolve` its own resolver fetches the
/// answer (into its cache), and the report shows the checks the answer hook makes on that live
/// answer — here a CNAME into the Milan order's name, blocked for Italy only.
#[test]
fn explain_through_the_running_server_shows_the_checks_of_the_live_answer() {
    let s = setup_with(
        &[("milan.json", milan_order("active", ""))],
        "[control]\napi_listen = \"{api}\"\n",
    );
    let data_dir = s.data_dir();
    let token = Command::new(JURIS)
        .args([
            "token",
            "create",
            "--role",
            "viewer",
            "--name",
            "explainer",
            "--data-dir",
        ])
        .arg(&data_dir)
        .output()
        .unwrap();
    assert!(token.status.success(), "{token:?}");
    let token = String::from_utf8(token.stdout).unwrap().trim().to_owned();
    let remote = |client: IpAddr, name: &str, extra: &[&str]| {
        let output = Command::new(JURIS)
            .args([
                "explain",
                name,
                "--client",
                &client.to_string(),
                "--api",
                &s.api(),
            ])
            .args(extra)
            .env("JURIS_TOKEN", &token)
            .output()
            .unwrap();
        let text = String::from_utf8_lossy(&output.stdout).into_owned();
        assert!(
            output.status.success(),
            "juris explain --api failed: {text}{}",
            String::from_utf8_lossy(&output.stderr)
        );
        text
    };
    let alias = "alias.innocent.test";
    // Not asked yet: the server has no live answer, and says so.
    let before = remote(s.germany(), alias, &[]);
    assert!(before.contains("no live answer in the cache"), "{before}");
    // Germany: the server resolves; the CNAME target and the address are checked, no order
    // applies, and the cached answer is what it would send.
    let germany = remote(s.germany(), alias, &["--resolve"]);
    assert!(germany.contains("verdict:      ANSWERED"), "{germany}");
    assert!(
        germany.contains("CNAME target www.kickasstorrents.to.: no order applies"),
        "{germany}"
    );
    assert!(germany.contains("answer address "), "{germany}");
    assert!(
        germany.contains("IN CNAME www.kickasstorrents.to."),
        "{germany}"
    );
    // Italy, from the server's cache now: the CNAME target is blocked by the Milan order.
    let italy = remote(s.italy(), alias, &[]);
    assert!(italy.contains("verdict:      BLOCK"), "{italy}");
    assert!(italy.contains("trigger:      CNAME target"), "{italy}");
    assert!(
        italy.contains(&format!(
            "CNAME target www.kickasstorrents.to.: blocked by order {ORDER_ID}"
        )),
        "{italy}"
    );
    // The same through a real query: the server did keep the answer it resolved.
    assert_eq!(s.dig(s.italy(), alias).status, "NXDOMAIN");
    // --json is the API's own view.
    let json: serde_json::Value =
        serde_json::from_str(&remote(s.italy(), alias, &["--json"])).unwrap();
    assert_eq!(json["verdict"], "block", "{json}");
    let checks = json["checks"].as_array().unwrap();
    assert!(
        checks.iter().any(|c| c["trigger"] == "CNAME target"
            && c["subject"] == "www.kickasstorrents.to."
            && c["order"] == ORDER_ID),
        "{json}"
    );
}
