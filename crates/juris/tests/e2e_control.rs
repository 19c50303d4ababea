//! End-to-end tests of the control plane: `juris serve` with its embedded store and admin
//! API, driven by the `juris order|import|audit|token` commands, checked with `dig` from client
//! addresses an MMDB written here places in Italy or Germany; and crash safety under kill -9.
//!
//! Needs `nsd` and `dig` and root (NSD binds port 53 on 127.x addresses), like
//! `e2e_policy.rs`.
#![allow(clippy::unwrap_used, clippy::expect_used, reason = "test code")]

use std::fs;
use std::net::{IpAddr, SocketAddr};
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::thread;
use std::time::{Duration, Instant};

use juris_testkit::addresses::AddressBlock;
use juris_testkit::dig::{Lookup, Response};
use juris_testkit::hierarchy::{Hierarchy, Zone};
use juris_testkit::juris::{Juris, JurisBuilder};
use juris_testkit::mmdb::{MmdbWriter, Shape};

const JURIS: &str = env!("CARGO_BIN_EXE_juris");

fn juris(args: &[&str], token: Option<&str>) -> Output {
    let mut command = Command::new(JURIS);
    command
        .args(args)
        .env_remove("JURIS_TOKEN")
        .env_remove("JURIS_API");
    if let Some(token) = token {
        command.env("JURIS_TOKEN", token);
    }
    command.output().unwrap()
}

fn ok(output: &Output) -> String {
    let text = String::from_utf8_lossy(&output.stdout).into_owned();
    assert!(
        output.status.success(),
        "juris failed: {text}{}",
        String::from_utf8_lossy(&output.stderr)
    );
    text
}

fn create_token(data_dir: &Path, role: &str, name: &str) -> String {
    juris_testkit::juris::create_token(Path::new(JURIS), data_dir, role, name)
}

/// Polls `check` until it holds. The product promises enforcement within a second, but tests never assert on
/// timings (a loaded CI machine is not a clock): the generous bound only keeps a real failure from hanging the
/// suite.
fn eventually(mut check: impl FnMut() -> bool) -> bool {
    let start = Instant::now();
    while start.elapsed() <= EVENTUALLY {
        if check() {
            return true;
        }
        thread::sleep(Duration::from_millis(20));
    }
    false
}

const EVENTUALLY: Duration = Duration::from_secs(30);

struct Setup {
    hierarchy: Hierarchy,
    juris: Juris,
    clients: AddressBlock,
    directory: tempfile::TempDir,
    api: String,
    token: String,
}

impl Setup {
    fn italy(&self) -> IpAddr {
        IpAddr::V4(self.clients.address(101))
    }
    fn germany(&self) -> IpAddr {
        IpAddr::V4(self.clients.address(102))
    }
    fn data_dir(&self) -> PathBuf {
        self.directory.path().join("data")
    }
    fn blocked(&self, client: IpAddr, name: &str) -> bool {
        blocked_at(self.juris.address(), client, name)
    }
    fn resolves(&self, client: IpAddr, name: &str, address: &str) -> bool {
        resolves_at(self.juris.address(), client, name, address)
    }
    fn cli(&self, args: &[&str]) -> String {
        let mut all: Vec<&str> = args.to_vec();
        all.extend(["--api", &self.api]);
        ok(&juris(&all, Some(&self.token)))
    }
    fn write(&self, name: &str, text: &str) -> PathBuf {
        let path = self.directory.path().join(name);
        fs::write(&path, text).unwrap();
        path
    }
    /// `juris order apply` of the Milan order [`ORDER`] with `reason`; the CLI's output.
    fn apply_milan_order(&self, reason: &str) -> String {
        let file = self.write("order.json", ORDER);
        self.cli(&["order", "apply", file.to_str().unwrap(), "--reason", reason])
    }
}

fn dig_at(server: SocketAddr, client: IpAddr, name: &str) -> Response {
    let lookup = Lookup::dig(server, name, "A")
        .source(client)
        .timeout_seconds(5);
    lookup
        .run()
        .unwrap_or_else(|failure| panic!("{}: {failure}", lookup.command_line()))
}

fn blocked_at(server: SocketAddr, client: IpAddr, name: &str) -> bool {
    let response = dig_at(server, client, name);
    response.status == "NXDOMAIN" && response.extended_errors.iter().any(|e| e.code == 16)
}

fn resolves_at(server: SocketAddr, client: IpAddr, name: &str, address: &str) -> bool {
    let response = dig_at(server, client, name);
    response.status == "NOERROR" && response.answer_data("A") == [address]
}

fn setup() -> Setup {
    setup_with(|builder, _| builder)
}

/// [`setup`], with more arguments for the server (`configure` gets the clients' block).
fn setup_with(configure: impl FnOnce(JurisBuilder, &AddressBlock) -> JurisBuilder) -> Setup {
    setup_in(Hierarchy::milan(), configure)
}

/// [`setup`] on another hierarchy, with more arguments for the server.
fn setup_in(
    hierarchy: Hierarchy,
    configure: impl FnOnce(JurisBuilder, &AddressBlock) -> JurisBuilder,
) -> Setup {
    let clients = AddressBlock::allocate();
    let directory = tempfile::tempdir().unwrap();
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
        .write_to(&mmdb)
        .unwrap();
    let data_dir = directory.path().join("data");
    fs::create_dir_all(&data_dir).unwrap();
    // The first admin is bootstrapped offline, before the server runs.
    let token = create_token(&data_dir, "admin", "officer");
    let builder = server_builder(&hierarchy, &clients, directory.path());
    let api = format!("http://{}", api_address(&clients));
    let server = configure(builder, &clients).start();
    let s = Setup {
        hierarchy,
        juris: server,
        clients,
        directory,
        api,
        token,
    };
    let ready = eventually(|| {
        juris(&["order", "list", "--api", &s.api], Some(&s.token))
            .status
            .success()
    });
    assert!(ready, "the admin API did not come up: {}", s.juris.stderr());
    s
}

/// The admin API of the server of [`setup_in`].
fn api_address(clients: &AddressBlock) -> SocketAddr {
    SocketAddr::new(IpAddr::V4(clients.address(200)), 8053)
}

/// The server of [`setup_in`] (its files in `directory`): also to start it again.
fn server_builder(hierarchy: &Hierarchy, clients: &AddressBlock, directory: &Path) -> JurisBuilder {
    Juris::builder(JURIS)
        .root_hints(hierarchy.root_hints())
        .args(["--threads", "2"])
        .arg("--geoip")
        .arg(directory.join("countries.mmdb"))
        .arg("--data-dir")
        .arg(directory.join("data"))
        .arg("--api-listen")
        .arg(api_address(clients).to_string())
}

const ORDER: &str = r#"{"id": "IT-MI-2024-0001", "kind": "court_order",
  "authority": "Tribunale di Milano", "reference": "RG 12345/2024", "jurisdictions": ["IT"],
  "action": "nxdomain", "state": "active",
  "targets": [{"type": "subtree", "value": "kickasstorrents.to"}]}"#;

#[test]
fn order_apply_blocks_italy_and_lift_unblocks_it() {
    let s = setup();
    let (italy, germany) = (s.italy(), s.germany());
    assert!(s.resolves(italy, "www.kickasstorrents.to.", "192.0.2.10"));

    let applied = s.apply_milan_order("court order received");
    assert!(applied.contains("IT-MI-2024-0001: active"), "{applied}");
    assert!(
        eventually(|| s.blocked(italy, "www.kickasstorrents.to.")),
        "never blocked: {}",
        s.juris.stderr()
    );
    assert!(s.resolves(germany, "www.kickasstorrents.to.", "192.0.2.10"));

    // A future domain, then the listing, explain through the API, and the audit log.
    s.cli(&[
        "order",
        "add-target",
        "IT-MI-2024-0001",
        "www.mirror.test",
        "--evidence",
        "report 7",
        "--added-by",
        "FIMI",
        "--added-at",
        "2025-01-10T00:00:00Z",
    ]);
    assert!(eventually(|| s.blocked(italy, "www.mirror.test.")));
    assert!(s.resolves(italy, "other.mirror.test.", "192.0.2.51"));
    let listing = s.cli(&["order", "list", "--state", "active"]);
    assert!(
        listing.contains("IT-MI-2024-0001") && listing.contains("Tribunale di Milano"),
        "{listing}"
    );

    let lifted = s.cli(&[
        "order",
        "lift",
        "IT-MI-2024-0001",
        "--reason",
        "appeal granted",
    ]);
    assert!(lifted.contains("lifted"), "{lifted}");
    assert!(
        eventually(|| s.resolves(italy, "www.kickasstorrents.to.", "192.0.2.10")),
        "still blocked after the lift"
    );
    assert!(s.resolves(italy, "www.mirror.test.", "192.0.2.50"));

    let log = s.cli(&["audit", "log"]);
    for action in [
        "token.create",
        "order.create",
        "order.activate",
        "target.add",
        "order.lift",
    ] {
        assert!(log.contains(action), "{action} missing from\n{log}");
    }
    assert!(log.contains("appeal granted"));
    // Who added which name, with its provenance, is in the audit log and on the target.
    assert!(
        log.contains(
            "+ domain www.mirror.test (added by FIMI, at 2025-01-10T00:00:00Z, evidence report 7)"
        ),
        "{log}"
    );
    let shown = s.cli(&["order", "show", "IT-MI-2024-0001"]);
    let shown: serde_json::Value = serde_json::from_str(&shown).unwrap();
    let added = shown["targets"]
        .as_array()
        .unwrap()
        .iter()
        .find(|t| t["value"] == "www.mirror.test")
        .unwrap_or_else(|| panic!("{shown}"));
    assert_eq!(added["added_by"], "FIMI", "{shown}");
    assert_eq!(added["added_at"], "2025-01-10T00:00:00Z", "{shown}");
    assert_eq!(added["evidence"], "report 7", "{shown}");
    let verified = ok(&juris(
        &[
            "audit",
            "verify",
            "--data-dir",
            s.data_dir().to_str().unwrap(),
        ],
        None,
    ));
    assert!(verified.starts_with("audit log intact"), "{verified}");

    // Roles are enforced through the CLI too: a viewer cannot apply.
    let viewer = create_token(&s.data_dir(), "viewer", "auditor");
    let file = s.write("order.json", ORDER);
    let refused = juris(
        &["order", "apply", file.to_str().unwrap(), "--api", &s.api],
        Some(&viewer),
    );
    assert!(!refused.status.success());
    assert!(String::from_utf8_lossy(&refused.stderr).contains("HTTP 403"));
    let refused = juris(&["order", "list", "--api", &s.api], None);
    assert!(String::from_utf8_lossy(&refused.stderr).contains("HTTP 401"));
}

#[test]
fn cache_flush_through_the_cli_takes_effect_on_the_next_query_and_is_audited() {
    let s = setup();
    let client = s.germany();
    let www = "www.mirror.test.";
    let other = "other.mirror.test.";
    let operator = create_token(&s.data_dir(), "operator", "noc");
    let viewer = create_token(&s.data_dir(), "viewer", "auditor");
    let as_operator = |args: &[&str]| {
        let mut all = args.to_vec();
        all.extend(["--api", &s.api]);
        ok(&juris(&all, Some(&operator)))
    };
    for _ in 0..3 {
        assert!(s.resolves(client, www, "192.0.2.50"));
        assert!(s.resolves(client, other, "192.0.2.51"));
    }

    // The zone changes: the cache (and the workers' hot answers) still hold the old answer.
    s.hierarchy.edit_zone(
        "mirror.test.",
        "192.0.2.50",
        "192.0.2.60",
        www,
        "192.0.2.60".parse().unwrap(),
    );
    assert!(
        s.resolves(client, www, "192.0.2.50"),
        "answered from the cache"
    );

    // A viewer may not flush.
    let refused = juris(&["cache", "flush", www, "--api", &s.api], Some(&viewer));
    assert!(!refused.status.success());
    assert!(
        String::from_utf8_lossy(&refused.stderr).contains("HTTP 403"),
        "{}",
        String::from_utf8_lossy(&refused.stderr)
    );
    assert!(s.resolves(client, www, "192.0.2.50"), "nothing was flushed");

    // The operator flushes the name: the very next query gets the new answer.
    let flushed = as_operator(&[
        "cache",
        "flush",
        "WWW.mirror.test",
        "--reason",
        "zone fixed",
    ]);
    assert!(flushed.contains("flushed www.mirror.test.: "), "{flushed}");
    assert!(s.resolves(client, www, "192.0.2.60"));
    assert!(s.resolves(client, other, "192.0.2.51"), "other names stay");

    // A name flush leaves the names below it; a subtree flush takes them all.
    s.hierarchy.edit_zone(
        "mirror.test.",
        "192.0.2.51",
        "192.0.2.61",
        other,
        "192.0.2.61".parse().unwrap(),
    );
    as_operator(&["cache", "flush", "mirror.test"]);
    assert!(
        s.resolves(client, other, "192.0.2.51"),
        "below the flushed name"
    );
    let flushed = as_operator(&["cache", "flush", "mirror.test", "--subtree", "--json"]);
    let flushed: serde_json::Value = serde_json::from_str(&flushed).unwrap();
    assert_eq!(flushed["name"], "mirror.test.");
    assert_eq!(flushed["subtree"], true);
    assert!(
        flushed["removed"]["answers"].as_u64().unwrap() >= 2,
        "{flushed}"
    );
    assert!(s.resolves(client, other, "192.0.2.61"));
    assert!(s.resolves(client, www, "192.0.2.60"));

    // --subtree without a name is a usage error; a bad name is refused with its field.
    let usage = juris(
        &["cache", "flush", "--subtree", "--api", &s.api],
        Some(&operator),
    );
    assert!(!usage.status.success());
    let bad = juris(
        &["cache", "flush", "a..b", "--api", &s.api],
        Some(&operator),
    );
    assert!(!bad.status.success());
    assert!(String::from_utf8_lossy(&bad.stderr).contains("name:"));

    // Every flush is in the audit log, with its actor and reason.
    let log = s.cli(&["audit", "log", "--json"]);
    let log: serde_json::Value = serde_json::from_str(&log).unwrap();
    let flushes: Vec<&serde_json::Value> = log["entries"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|entry| entry["action"] == "cache.flush")
        .collect();
    assert_eq!(flushes.len(), 3, "{log}");
    assert_eq!(flushes[0]["actor"], "noc");
    assert_eq!(flushes[0]["object"], "cache:www.mirror.test.");
    assert_eq!(flushes[0]["reason"], "zone fixed");
    assert_eq!(flushes[2]["object"], "cache:mirror.test.");

    // Stats: entries and counters (the counters as of the server's once-a-second refresh, so
    // wait for them to catch up), readable by the operator only.
    let stats = || -> serde_json::Value {
        serde_json::from_str(&as_operator(&["cache", "stats", "--json"])).unwrap()
    };
    let caught_up = eventually(|| {
        let now = stats();
        now["hits"].as_u64().unwrap() > 0 && now["misses"].as_u64().unwrap() >= 4
    });
    let now = stats();
    assert!(caught_up, "{now}");
    assert!(now["entries"].as_u64().unwrap() >= 2, "{now}");
    assert!(now["bytes"].as_u64().unwrap() > 0, "{now}");
    assert_eq!(now["flushes"], 3);
    let refused = juris(&["cache", "stats", "--api", &s.api], Some(&viewer));
    assert!(String::from_utf8_lossy(&refused.stderr).contains("HTTP 403"));
}

fn feed_json(fqdn: &[&str], ipv4: &[&str]) -> String {
    use sha2::Digest;
    let sum = |items: &[&str]| hex::encode(sha2::Sha256::digest(items.join("\n").as_bytes()));
    serde_json::json!({
        "fqdn": fqdn, "ipv4": ipv4, "ipv6": [],
        "sha256": {"fqdn": sum(fqdn), "ipv4": sum(ipv4), "ipv6": sum(&[])}
    })
    .to_string()
}

#[test]
fn a_feed_update_that_drops_an_item_unblocks_it_and_accidents_are_held() {
    let s = setup();
    let italy = s.italy();
    let order = s.write(
        "ps.json",
        r#"{"id": "PS-IT", "kind": "feed_ticket", "authority": "AGCOM", "jurisdictions": ["IT"],
            "action": "nxdomain", "state": "active", "block_addresses": true}"#,
    );
    s.cli(&["order", "apply", order.to_str().unwrap()]);
    let first = s.write(
        "feed-1.json",
        &feed_json(
            &[
                "www.kickasstorrents.to",
                "www.mirror.test",
                "drive.usercontent.google.com",
            ],
            &["188.114.97.7"],
        ),
    );
    let report = s.cli(&[
        "import",
        "feed",
        "piracy-shield",
        first.to_str().unwrap(),
        "--order",
        "PS-IT",
    ]);
    assert!(
        report.contains("unprocessed drive.usercontent.google.com UNKNOWN"),
        "{report}"
    );
    assert!(
        report.contains("unprocessed 188.114.97.7 UNKNOWN"),
        "{report}"
    );
    assert!(eventually(|| s.blocked(italy, "www.mirror.test.")));
    assert!(s.blocked(italy, "www.kickasstorrents.to."));

    // The next state of the feed no longer lists www.mirror.test: it is unblocked.
    let second = s.write(
        "feed-2.json",
        &feed_json(
            &["www.kickasstorrents.to", "drive.usercontent.google.com"],
            &["188.114.97.7"],
        ),
    );
    let report = s.cli(&["import", "feed", "piracy-shield", second.to_str().unwrap()]);
    assert!(report.contains("lifted 1"), "{report}");
    assert!(
        eventually(|| s.resolves(italy, "www.mirror.test.", "192.0.2.50")),
        "a dropped feed item stays blocked"
    );
    assert!(s.blocked(italy, "www.kickasstorrents.to."));

    // A corrupt feed changes nothing.
    let corrupt = s.write(
        "feed-3.json",
        &feed_json(&["www.mirror.test"], &[]).replace("\"fqdn\":[", "\"fqdn\":[\"x.example\","),
    );
    let refused = juris(
        &[
            "import",
            "feed",
            "piracy-shield",
            corrupt.to_str().unwrap(),
            "--api",
            &s.api,
        ],
        Some(&s.token),
    );
    assert!(!refused.status.success());
    assert!(String::from_utf8_lossy(&refused.stderr).contains("sha256.fqdn"));
    assert!(s.blocked(italy, "www.kickasstorrents.to."));

    let ack = s.cli(&["export", "ack", "piracy-shield"]);
    assert!(
        ack.contains("\"status\": \"lifted\"") && ack.contains("UNKNOWN"),
        "{ack}"
    );
    let zone = s.cli(&["export", "rpz", "--jurisdiction", "IT"]);
    assert!(zone.contains("www.kickasstorrents.to CNAME ."), "{zone}");
    assert!(
        !zone.contains("drive.usercontent") && !zone.contains("188"),
        "{zone}"
    );
}

#[test]
fn kill_9_while_writing_loses_no_acknowledged_order_and_the_chain_verifies() {
    let block = AddressBlock::allocate();
    let directory = tempfile::tempdir().unwrap();
    let data_dir = directory.path().join("data");
    let token = create_token(&data_dir, "admin", "writer");
    let api = format!("http://{}:8053", block.address(200));
    let start = || {
        Command::new(JURIS)
            .args([
                "serve",
                "--listen",
                &format!("{}:5353", block.address(1)),
                "--forward",
                "127.0.0.1:9",
            ])
            .arg("--data-dir")
            .arg(&data_dir)
            .args(["--api-listen", &format!("{}:8053", block.address(200))])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap()
    };
    let mut server = start();
    let up = || {
        juris(&["order", "list", "--api", &api], Some(&token))
            .status
            .success()
    };
    assert!(eventually(up));

    // A writer applies orders one after another; every acknowledged id is remembered.
    let (done_tx, done_rx) = std::sync::mpsc::channel::<Vec<String>>();
    let writer_api = api.clone();
    let writer_token = token.clone();
    let writer_dir = directory.path().to_owned();
    let writer = thread::spawn(move || {
        let mut acknowledged = Vec::new();
        for i in 0..10_000 {
            let id = format!("CRASH-{i:05}");
            let file = writer_dir.join("w.json");
            fs::write(
                &file,
                format!(
                    r#"{{"id": "{id}", "kind": "court_order", "authority": "Court", "jurisdictions": ["IT"],
                        "action": "nxdomain", "state": "active", "targets": [{{"type": "domain", "value": "n{i}.example"}}]}}"#
                ),
            )
            .unwrap();
            let output = juris(
                &[
                    "order",
                    "apply",
                    file.to_str().unwrap(),
                    "--api",
                    &writer_api,
                ],
                Some(&writer_token),
            );
            if !output.status.success() {
                break;
            }
            acknowledged.push(id);
        }
        done_tx.send(acknowledged).unwrap();
    });
    thread::sleep(Duration::from_millis(1500));
    server.kill().unwrap(); // SIGKILL
    server.wait().unwrap();
    let acknowledged = done_rx.recv_timeout(Duration::from_secs(30)).unwrap();
    writer.join().unwrap();
    assert!(
        acknowledged.len() >= 3,
        "the writer got only {} orders in",
        acknowledged.len()
    );

    let verified = ok(&juris(
        &["audit", "verify", "--data-dir", data_dir.to_str().unwrap()],
        None,
    ));
    assert!(verified.starts_with("audit log intact"), "{verified}");
    let mut server = start();
    assert!(eventually(up));
    let listing = ok(&juris(
        &["order", "list", "--json", "--api", &api],
        Some(&token),
    ));
    for id in &acknowledged {
        assert!(
            listing.contains(&format!("\"{id}\"")),
            "acknowledged order {id} lost after kill -9"
        );
    }
    server.kill().unwrap();
    server.wait().unwrap();
    let verified = ok(&juris(
        &["audit", "verify", "--data-dir", data_dir.to_str().unwrap()],
        None,
    ));
    assert!(verified.starts_with("audit log intact"), "{verified}");
}

/// The Milan site at its own address and behind a CDN address (Cloudflare's 104.16.0.0/13,
/// on the protected list); a mirror under another suffix at the site's own address; another
/// rotation; an innocent site on the same CDN address; an innocent site on the site's own
/// address (shared hosting the list does not know).
fn mirror_world() -> Hierarchy {
    Hierarchy::builder()
        .zone(Zone::new("to."))
        .zone(
            Zone::new("kickasstorrents.to.")
                .records("@ A 198.51.100.7\n@ A 104.16.5.5\nwww A 198.51.100.7"),
        )
        .zone(Zone::new("kickasstorrents2.to.").records("www A 198.51.100.7"))
        .zone(Zone::new("kickass-torrents.to.").records("www A 192.0.2.80"))
        .zone(Zone::new("test."))
        .zone(Zone::new("innocent.test.").records("www A 104.16.5.5"))
        .zone(Zone::new("neighbour.test.").records("www A 198.51.100.7"))
        .start()
}

/// `juris candidates [ARGS] --json`, parsed.
fn candidates(s: &Setup, args: &[&str]) -> serde_json::Value {
    let mut all = vec!["candidates", "--json"];
    all.extend_from_slice(args);
    serde_json::from_str(&s.cli(&all)).unwrap()
}

/// The signals listed for candidate `name` and order `order`, if it is listed.
fn signals_of(list: &serde_json::Value, name: &str, order: &str) -> Option<Vec<String>> {
    let candidate = list["candidates"]
        .as_array()?
        .iter()
        .find(|c| c["name"] == name)?;
    let matched = candidate["matches"]
        .as_array()?
        .iter()
        .find(|m| m["order"] == order)?;
    Some(
        matched["signals"]
            .as_array()?
            .iter()
            .map(|s| s["signal"].as_str().unwrap_or_default().to_owned())
            .collect(),
    )
}

#[test]
fn a_resolved_mirror_becomes_a_candidate_and_accepting_it_blocks_it_for_italy() {
    let s = setup_in(mirror_world(), |builder, _| builder);
    let (italy, germany) = (s.italy(), s.germany());
    s.apply_milan_order("court order");
    assert!(eventually(|| s.blocked(italy, "www.kickasstorrents.to.")));

    // Clients resolve the mirror, another rotation and two innocent sites.
    let mirror = "www.kickasstorrents2.to.";
    assert!(s.resolves(germany, mirror, "198.51.100.7"));
    assert!(s.resolves(italy, mirror, "198.51.100.7"));
    assert!(s.resolves(germany, "www.kickass-torrents.to.", "192.0.2.80"));
    assert!(s.resolves(germany, "www.innocent.test.", "104.16.5.5"));
    assert!(s.resolves(germany, "www.neighbour.test.", "198.51.100.7"));

    // The mirror is listed for the Milan order with the similar-name signal, and (once the
    // blocked target's addresses were looked up) the shared address outside the CDN range.
    let order = "IT-MI-2024-0001";
    let mut list = serde_json::Value::Null;
    let found = eventually(|| {
        list = candidates(&s, &["--order", order]);
        signals_of(&list, "kickasstorrents2.to", order)
            .is_some_and(|signals| signals == ["similar_name", "same_address"])
    });
    assert!(found, "{list:#}\n{}", s.juris.stderr());
    let everything = candidates(&s, &[]);
    assert!(
        signals_of(&everything, "kickass-torrents.to", order).is_some(),
        "{everything:#}"
    );
    // Sharing an address is never enough: not the CDN address, not even the site's own.
    for innocent in ["innocent.test", "neighbour.test"] {
        assert!(
            signals_of(&everything, innocent, order).is_none(),
            "{everything:#}"
        );
    }
    let text = s.cli(&["candidates", "--order", order]);
    assert!(
        text.contains("kickasstorrents2.to")
            && text.contains("similar_name [kickasstorrents2 ~ kickasstorrents (contains)]"),
        "{text}"
    );

    // Accepted: into an extension of the order, enforced for Italy only.
    let accepted = s.cli(&[
        "candidates",
        "accept",
        "kickasstorrents2.to",
        "--order",
        order,
        "--reason",
        "same site, new suffix",
    ]);
    assert!(
        accepted.contains("added to extension IT-MI-2024-0001-ext (active)"),
        "{accepted}"
    );
    assert!(
        eventually(|| s.blocked(italy, mirror)),
        "the accepted mirror is not blocked: {}",
        s.juris.stderr()
    );
    assert!(s.resolves(germany, mirror, "198.51.100.7"));
    let shown: serde_json::Value =
        serde_json::from_str(&s.cli(&["order", "show", "IT-MI-2024-0001-ext"])).unwrap();
    assert_eq!(shown["order"]["parent"], order, "{shown}");
    let evidence = shown["targets"][0]["evidence"].as_str().unwrap_or_default();
    assert!(evidence.contains("similar_name"), "{shown}");

    // Dismissed: not listed again. Both decisions are audited.
    s.cli(&[
        "candidates",
        "dismiss",
        "kickass-torrents.to",
        "--order",
        order,
    ]);
    let after = candidates(&s, &[]);
    for gone in ["kickasstorrents2.to", "kickass-torrents.to"] {
        assert!(signals_of(&after, gone, order).is_none(), "{after:#}");
    }
    let log = s.cli(&["audit", "log"]);
    for action in ["candidate.accept", "candidate.dismiss", "target.add"] {
        assert!(log.contains(action), "{action} missing from\n{log}");
    }
}

/// Whether `server` answers `name` at all (it may still be starting).
fn answers(server: SocketAddr, client: IpAddr, name: &str) -> bool {
    Lookup::dig(server, name, "A")
        .source(client)
        .timeout_seconds(2)
        .run()
        .is_ok()
}

/// `juris tsig generate NAME`: the key in `--tsig-key` form, and everything it printed.
fn generated_key(name: &str) -> (String, String) {
    let generated = ok(&juris(&["tsig", "generate", name], None));
    let key = generated
        .lines()
        .next()
        .and_then(|line| line.strip_prefix("--tsig-key "))
        .unwrap_or_else(|| panic!("{generated}"))
        .to_owned();
    (key, generated)
}

/// A fleet primary's XFR address in the clients' block.
fn fleet_xfr(c: &AddressBlock) -> SocketAddr {
    SocketAddr::new(IpAddr::V4(c.address(151)), 5300)
}

/// A fleet edge's DNS address in the clients' block.
fn fleet_edge(c: &AddressBlock) -> SocketAddr {
    SocketAddr::new(IpAddr::V4(c.address(150)), 5353)
}

/// The primary's fleet arguments: publishing on [`fleet_xfr`] with `key`, telling [`fleet_edge`].
fn fleet_primary(builder: JurisBuilder, clients: &AddressBlock, key: &str) -> JurisBuilder {
    builder
        .arg("--xfr-listen")
        .arg(fleet_xfr(clients).to_string())
        .arg("--tsig-key")
        .arg(key)
        .arg("--notify")
        .arg(fleet_edge(clients).to_string())
}

/// Starts an edge of `s`'s world on [`fleet_edge`] following `follow` with `key` (data in
/// `DIRECTORY/edge-data`, with `more` arguments) and waits until it answers.
fn start_fleet_edge(s: &Setup, follow: SocketAddr, key: &str, more: &[&str]) -> Juris {
    let edge_dns = fleet_edge(&s.clients);
    let edge = Juris::builder(JURIS)
        .without_listen()
        .root_hints(s.hierarchy.root_hints())
        .args(["--threads", "2", "--listen", &edge_dns.to_string()])
        .arg("--geoip")
        .arg(s.directory.path().join("countries.mmdb"))
        .arg("--data-dir")
        .arg(s.directory.path().join("edge-data"))
        .args(more)
        .args(["--follow", &follow.to_string(), "--tsig-key", key])
        .start();
    assert!(
        eventually(|| answers(edge_dns, s.germany(), "www.kickasstorrents.to.")),
        "the edge does not answer: {}",
        edge.stderr()
    );
    edge
}

/// Issue #12, "done when": a primary with the store and an edge following it by zone transfer
/// (TSIG, NOTIFY) enforce the same Italian order; the edge refuses order changes; with the
/// primary stopped, a restarted edge still enforces the order (its snapshot).
#[test]
fn a_fleet_edge_enforces_the_primarys_orders_and_keeps_them_through_a_restart_without_it() {
    let (key, generated) = generated_key("fleet-e2e");
    assert!(generated.contains("key \"fleet-e2e\" {"), "{generated}");
    // The primary knows the edge by its key: orders show where they are in force.
    let config_dir = tempfile::tempdir().unwrap();
    let config = config_dir.path().join("primary.toml");
    fs::write(
        &config,
        "[fleet]\nfollowers = [{ name = \"edge-milan\", key = \"fleet-e2e\" }]\n",
    )
    .unwrap();
    let s = setup_with(|builder, clients| {
        fleet_primary(builder.arg("--config").arg(&config), clients, &key)
    });
    let (italy, germany) = (s.italy(), s.germany());
    let (edge_dns, primary_xfr) = (fleet_edge(&s.clients), fleet_xfr(&s.clients));
    let edge_data = s.directory.path().join("edge-data");
    fs::create_dir_all(&edge_data).unwrap();
    let edge_token = create_token(&edge_data, "admin", "edge-officer");
    let edge_api = format!(
        "http://{}",
        SocketAddr::new(IpAddr::V4(s.clients.address(152)), 8053)
    );
    let start_edge = || {
        start_fleet_edge(
            &s,
            primary_xfr,
            &key,
            &["--api-listen", edge_api.trim_start_matches("http://")],
        )
    };
    let first = start_edge();
    assert!(resolves_at(
        edge_dns,
        italy,
        "www.kickasstorrents.to.",
        "192.0.2.10"
    ));

    s.apply_milan_order("court order received");
    assert!(eventually(|| s.blocked(italy, "www.kickasstorrents.to.")));
    assert!(
        eventually(|| blocked_at(edge_dns, italy, "www.kickasstorrents.to.")),
        "the edge never enforced the order:\n{}\n--- primary ---\n{}",
        first.stderr(),
        s.juris.stderr()
    );
    assert!(resolves_at(
        edge_dns,
        germany,
        "www.kickasstorrents.to.",
        "192.0.2.10"
    ));

    // A change after the first transfer comes by IXFR, on NOTIFY.
    s.cli(&["order", "add-target", "IT-MI-2024-0001", "www.mirror.test"]);
    assert!(
        eventually(|| blocked_at(edge_dns, italy, "www.mirror.test.")),
        "{}",
        first.stderr()
    );
    assert!(first.stderr().contains("kind=\"IXFR\"") || first.stderr().contains("kind=IXFR"));

    // Provable enforcement: the edge reports the serial it put in force; the primary shows
    // the order in force on it, and the edge is ready.
    let in_force_on_edge = || {
        let shown: serde_json::Value =
            serde_json::from_str(&s.cli(&["order", "show", "IT-MI-2024-0001"])).unwrap();
        let fleet = &shown["fleet"];
        fleet["in_force_everywhere"] == true
            && fleet["nodes"][0]["name"] == "edge-milan"
            && fleet["nodes"][0]["in_force"] == true
            && fleet["nodes"][0]["since"].is_string()
    };
    assert!(
        eventually(in_force_on_edge),
        "{}",
        s.cli(&["order", "show", "IT-MI-2024-0001"])
    );
    let edge_api_address: SocketAddr = edge_api.trim_start_matches("http://").parse().unwrap();
    let (code, ready) = juris_testkit::juris::http_get(edge_api_address, "/readyz");
    assert_eq!(code, 200, "{ready}");
    assert!(
        ready.contains("\"fleet\"") && ready.contains("in force"),
        "{ready}"
    );

    // The edge runs no store: order changes are refused, naming the primary.
    let file = s.write("order.json", ORDER);
    let refused = juris(
        &["order", "apply", file.to_str().unwrap(), "--api", &edge_api],
        Some(&edge_token),
    );
    assert!(!refused.status.success());
    let message = String::from_utf8_lossy(&refused.stderr);
    assert!(
        message.contains("fleet edge") && message.contains(&primary_xfr.to_string()),
        "{message}"
    );

    // The primary goes; the edge restarts from its snapshot and still enforces the order.
    s.juris.stop();
    first.stop();
    let second = start_edge();
    assert!(
        blocked_at(edge_dns, italy, "www.kickasstorrents.to."),
        "{}",
        second.stderr()
    );
    assert!(blocked_at(edge_dns, italy, "www.mirror.test."));
    assert!(resolves_at(
        edge_dns,
        germany,
        "www.kickasstorrents.to.",
        "192.0.2.10"
    ));
    // From the snapshot's validated orders (design 0043), not its records validated again.
    let log = second.stderr();
    assert!(
        log.contains("enforcing the orders of the snapshot (validated when it was written)"),
        "{log}"
    );
    assert!(!log.contains("validated orders are not used"), "{log}");
}

/// A TCP relay in front of a fleet primary's XFR listener. Normally it passes everything
/// both ways. Once [`armed`](Self::arm), the next connection gets only the length and the
/// first half of the primary's first response message: the relay then says so on `held`
/// and keeps the rest until the primary's side of the connection ends (the test kills the
/// primary process), and closes the follower's connection: to the follower, the primary
/// died in the middle of the transfer.
struct XfrRelay {
    address: SocketAddr,
    armed: std::sync::Arc<std::sync::atomic::AtomicBool>,
    held: std::sync::mpsc::Receiver<()>,
}

impl XfrRelay {
    fn start(address: SocketAddr, primary: SocketAddr) -> XfrRelay {
        use std::io::{Read, Write};
        use std::sync::atomic::{AtomicBool, Ordering};
        let listener = std::net::TcpListener::bind(address).unwrap();
        let armed = std::sync::Arc::new(AtomicBool::new(false));
        let (tx, held) = std::sync::mpsc::channel();
        let arm = std::sync::Arc::clone(&armed);
        thread::spawn(move || {
            for client in listener.incoming() {
                let Ok(mut client) = client else { continue };
                let Ok(mut upstream) = std::net::TcpStream::connect(primary) else {
                    continue; // the primary is down: the follower sees the connection close
                };
                if arm.swap(false, Ordering::SeqCst) {
                    let tx = tx.clone();
                    thread::spawn(move || {
                        let mut to_primary = upstream.try_clone().unwrap();
                        let mut from_client = client.try_clone().unwrap();
                        thread::spawn(move || std::io::copy(&mut from_client, &mut to_primary));
                        let mut length = [0u8; 2];
                        if upstream.read_exact(&mut length).is_err() {
                            return;
                        }
                        let mut message = vec![0; usize::from(u16::from_be_bytes(length))];
                        if upstream.read_exact(&mut message).is_err() {
                            return;
                        }
                        client.write_all(&length).unwrap();
                        client.write_all(&message[..message.len() / 2]).unwrap();
                        let _ = tx.send(());
                        // Until the primary's side ends (killed: EOF or reset).
                        let _ = std::io::copy(&mut upstream, &mut std::io::sink());
                        let _ = client.shutdown(std::net::Shutdown::Both);
                    });
                    continue;
                }
                let (mut down, mut to_client) =
                    (upstream.try_clone().unwrap(), client.try_clone().unwrap());
                thread::spawn(move || {
                    let _ = std::io::copy(&mut down, &mut to_client);
                    let _ = to_client.shutdown(std::net::Shutdown::Both);
                });
                thread::spawn(move || {
                    let _ = std::io::copy(&mut client, &mut upstream);
                    let _ = upstream.shutdown(std::net::Shutdown::Write);
                });
            }
        });
        XfrRelay {
            address,
            armed,
            held,
        }
    }

    fn arm(&self) {
        self.armed.store(true, std::sync::atomic::Ordering::SeqCst);
    }
}

/// Issue #12 item 6 with a real process: the primary juris is killed (SIGKILL) while it
/// transfers a change to an edge. The edge keeps the last good orders (the Italian client
/// stays blocked), a restarted edge starts from its snapshot while the primary is down, and
/// when the primary is back (its journal on disk keeps its serial and deltas) the edge
/// resumes by IXFR, not AXFR.
#[test]
fn a_primary_killed_during_a_transfer_and_restarted_leaves_the_edge_enforcing_and_it_resumes_by_ixfr(
) {
    let (key, _) = generated_key("fleet-kill");
    let s = setup_with(|builder, clients| fleet_primary(builder, clients, &key));
    let (italy, germany) = (s.italy(), s.germany());
    let edge_dns = fleet_edge(&s.clients);
    // The edge follows the primary through the relay.
    let relay = XfrRelay::start(
        SocketAddr::new(IpAddr::V4(s.clients.address(153)), 5300),
        fleet_xfr(&s.clients),
    );
    fs::create_dir_all(s.directory.path().join("edge-data")).unwrap();
    let start_edge = || start_fleet_edge(&s, relay.address, &key, &[]);
    let first = start_edge();
    s.apply_milan_order("court order received");
    assert!(
        eventually(|| blocked_at(edge_dns, italy, "www.kickasstorrents.to.")),
        "{}",
        first.stderr()
    );

    // A change; the primary dies while transferring it.
    relay.arm();
    s.cli(&["order", "add-target", "IT-MI-2024-0001", "www.mirror.test"]);
    relay
        .held
        .recv_timeout(EVENTUALLY)
        .unwrap_or_else(|_| panic!("no transfer after the change: {}", first.stderr()));
    s.juris.signal(libc::SIGKILL);
    assert!(eventually(|| !s.juris.is_running()));
    first.wait_for_log("transfer FAILED", EVENTUALLY);
    // The last good orders stay in force; the change never arrived.
    assert!(blocked_at(edge_dns, italy, "www.kickasstorrents.to."));
    for (client, name, address) in [
        (italy, "www.mirror.test.", "192.0.2.50"),
        (germany, "www.kickasstorrents.to.", "192.0.2.10"),
    ] {
        assert!(resolves_at(edge_dns, client, name, address), "{name}");
    }

    // The edge restarts while the primary is down: it starts from its snapshot.
    first.stop();
    let second = start_edge();
    let started = second.stderr();
    assert!(
        started.contains("enforcing the orders of the snapshot"),
        "{started}"
    );
    assert!(blocked_at(edge_dns, italy, "www.kickasstorrents.to."));

    // The primary is back (same store, same journal on disk): the edge gets the change by
    // IXFR from the serial it holds.
    let primary = fleet_primary(
        server_builder(&s.hierarchy, &s.clients, s.directory.path()),
        &s.clients,
        &key,
    )
    .start();
    assert!(
        eventually(|| blocked_at(edge_dns, italy, "www.mirror.test.")),
        "{}\n--- primary ---\n{}",
        second.stderr(),
        primary.stderr()
    );
    let log = second.stderr();
    let applied: Vec<&str> = log
        .lines()
        .filter(|line| line.contains("transfer applied"))
        .collect();
    assert!(
        !applied.is_empty() && applied.iter().all(|l| l.contains("IXFR")),
        "resumed by IXFR only: {applied:?}"
    );
    assert!(primary
        .stderr()
        .contains("the zones are those of the journal on disk"));
    assert!(blocked_at(edge_dns, italy, "www.kickasstorrents.to."));
    primary.stop();
}
