//! Interoperability of the fleet (issue #12, item 4), end to end with Debian's packages on
//! loopback: a juris primary (store, admin API, `[fleet]` XFR service) publishes
//! `it.rpz.juris.invalid.`, and BIND 9, Unbound and PowerDNS Recursor enforce it while
//! resolving through an NSD hierarchy. Each test starts and stops its own servers.
//!
//! The third-party configurations written here are the ones `docs/fleet.md` shows (same
//! statements; only addresses, ports, paths and the secret differ).
//!
//! A test whose third-party binary is not installed prints `SKIPPED: ...` and passes
//! (`.ci/run` installs bind9, unbound and pdns-recursor, so CI runs them all). Needs `nsd`,
//! `dig` and root, like the other end-to-end tests.
#![allow(clippy::unwrap_used, clippy::expect_used, reason = "test code")]

use std::fs;
use std::net::{IpAddr, SocketAddr};
use std::process::Command;
use std::thread;
use std::time::{Duration, Instant};

use juris_testkit::addresses::AddressBlock;
use juris_testkit::daemon::{Daemon, Prepared};
use juris_testkit::dig::{Lookup, Response};
use juris_testkit::hierarchy::{nsd_server_clause, Hierarchy};
use juris_testkit::juris::Juris;
use juris_testkit::unbound::server_clause;

const JURIS: &str = env!("CARGO_BIN_EXE_juris");
/// The RPZ zone every consumer here takes.
const ZONE: &str = "it.rpz.juris.invalid";

/// The Italian order: the Milan site's subtree, NXDOMAIN.
const ORDER: &str = r#"{"id": "IT-MI-2024-0001", "kind": "court_order",
  "authority": "Tribunale di Milano", "reference": "RG 12345/2024", "jurisdictions": ["IT"],
  "action": "nxdomain", "state": "active",
  "targets": [{"type": "subtree", "value": "kickasstorrents.to"}]}"#;

/// Runs the juris CLI; its stdout, or a panic with everything it said.
fn run_juris(args: &[&str], token: Option<&str>) -> String {
    let mut command = Command::new(JURIS);
    command.args(args).env_remove("JURIS_API");
    match token {
        Some(token) => command.env("JURIS_TOKEN", token),
        None => command.env_remove("JURIS_TOKEN"),
    };
    let output = command.output().unwrap();
    let [stdout, stderr] = [&output.stdout, &output.stderr].map(|b| String::from_utf8_lossy(b));
    assert!(output.status.success(), "juris {args:?}: {stdout}{stderr}");
    stdout.into_owned()
}

/// Polls `check` for up to 60 s (transfers and refresh timers of other programs; the bound
/// only keeps a real failure from hanging the suite, nothing is timed).
fn within_a_minute(mut check: impl FnMut() -> bool) -> bool {
    let start = Instant::now();
    while start.elapsed() < Duration::from_secs(60) {
        if check() {
            return true;
        }
        thread::sleep(Duration::from_millis(100));
    }
    false
}

fn ask(server: SocketAddr, name: &str) -> Option<Response> {
    Lookup::dig(server, name, "A")
        .timeout_seconds(2)
        .tries(1)
        .run()
        .ok()
}

fn nxdomain(server: SocketAddr, name: &str) -> bool {
    ask(server, name).is_some_and(|r| r.status == "NXDOMAIN" && r.answer.is_empty())
}

fn resolves(server: SocketAddr, name: &str, address: &str) -> bool {
    ask(server, name).is_some_and(|r| r.status == "NOERROR" && r.answer_data("A") == [address])
}

/// `juris token create` offline in `data`: the token.
fn create_token(data: &std::path::Path, role: &str, name: &str) -> String {
    juris_testkit::juris::create_token(std::path::Path::new(JURIS), data, role, name)
}

/// A juris primary with the control store, publishing over AXFR/IXFR with a TSIG key made by
/// `juris tsig generate`, and the NSD hierarchy every resolver of the test uses.
struct Primary {
    hierarchy: Hierarchy,
    juris: Juris,
    /// `--tsig-key` form: `interop:hmac-sha256:SECRET`.
    key: String,
    /// The BIND `key` clause `juris tsig generate` printed.
    bind_key: String,
    xfr: SocketAddr,
    api: String,
    token: String,
    directory: tempfile::TempDir,
    _block: AddressBlock,
}

impl Primary {
    /// Starts the primary with `[fleet]` plus `more_fleet` (TOML lines), waits for its API,
    /// and applies [`ORDER`].
    fn start(more_fleet: &str) -> Primary {
        let hierarchy = Hierarchy::milan();
        let generated = run_juris(&["tsig", "generate", "interop"], None);
        let key = generated
            .lines()
            .find_map(|line| line.strip_prefix("--tsig-key "))
            .unwrap_or_else(|| panic!("no --tsig-key line in {generated}"))
            .to_owned();
        let bind_key = generated[generated.find("key \"").unwrap()..].to_owned();
        let secret = key.rsplit(':').next().unwrap().to_owned();
        let block = AddressBlock::allocate();
        let xfr = SocketAddr::new(IpAddr::V4(block.address(1)), 5300);
        let api_address = SocketAddr::new(IpAddr::V4(block.address(2)), 8053);
        let directory = tempfile::tempdir().unwrap();
        let data = directory.path().join("data");
        fs::create_dir_all(&data).unwrap();
        let token = create_token(&data, "admin", "officer");
        let config = directory.path().join("primary.toml");
        fs::write(
            &config,
            format!(
                "[fleet]\nxfr_listen = \"{xfr}\"\nzone_suffix = \"rpz.juris.invalid.\"\n\
                 allow_transfer = [\"127.0.0.0/8\"]\n\
                 tsig_keys = [{{ name = \"interop\", algorithm = \"hmac-sha256\", secret = \"{secret}\" }}]\n\
                 {more_fleet}\n"
            ),
        )
        .unwrap();
        let juris = Juris::builder(JURIS)
            .env("RUST_LOG", "info,juris::fleet=debug")
            .root_hints(hierarchy.root_hints())
            .args(["--threads", "2", "--config"])
            .arg(&config)
            .arg("--data-dir")
            .arg(&data)
            .args(["--api-listen", &api_address.to_string()])
            .start();
        let primary = Primary {
            hierarchy,
            juris,
            key,
            bind_key,
            xfr,
            api: format!("http://{api_address}"),
            token,
            directory,
            _block: block,
        };
        let ready = within_a_minute(|| {
            Command::new(JURIS)
                .args(["order", "list", "--api", &primary.api])
                .env("JURIS_TOKEN", &primary.token)
                .output()
                .is_ok_and(|output| output.status.success())
        });
        assert!(
            ready,
            "the admin API never came up: {}",
            primary.juris.stderr()
        );
        let file = primary.directory.path().join("order.json");
        fs::write(&file, ORDER).unwrap();
        let applied = primary.cli(&[
            "order",
            "apply",
            file.to_str().unwrap(),
            "--reason",
            "interop",
        ]);
        assert!(applied.contains("IT-MI-2024-0001: active"), "{applied}");
        primary
    }

    fn cli(&self, args: &[&str]) -> String {
        let mut all = args.to_vec();
        all.extend(["--api", &self.api]);
        run_juris(&all, Some(&self.token))
    }

    /// The root hints of the NSD hierarchy, for a configuration file.
    fn hints(&self) -> String {
        self.hierarchy.root_hints().display().to_string()
    }

    /// The secret part of the key.
    fn secret(&self) -> &str {
        self.key.rsplit(':').next().unwrap()
    }

    /// Starts a third party (`Daemon::start_with_files`) and asserts that it enforces the
    /// Italian zone ([`Primary::assert_enforced`]).
    fn enforced_by(
        &self,
        name: &str,
        program: &std::path::Path,
        prepared: Prepared,
        files: &[(&str, &str)],
        args: &[&str],
    ) -> Daemon {
        let daemon = Daemon::start_with_files(name, program, prepared, files, args);
        self.assert_enforced(daemon.address(), &daemon);
        daemon
    }

    /// Asserts the Italian zone's effect at `server`: the order's names NXDOMAIN, another
    /// name its real answer from the NSD hierarchy.
    fn assert_enforced(&self, server: SocketAddr, what: &Daemon) {
        assert!(
            within_a_minute(|| nxdomain(server, "www.kickasstorrents.to.")),
            "{} never enforced the Italian zone\n--- juris primary ---\n{}\n--- {} ---\n{}",
            what.directory().display(),
            self.juris.stderr(),
            what.directory().display(),
            what.log()
        );
        assert!(nxdomain(server, "kickasstorrents.to."), "{}", what.log());
        assert!(
            resolves(server, "www.mirror.test.", "192.0.2.50"),
            "{}",
            what.log()
        );
        assert!(
            resolves(server, "other.mirror.test.", "192.0.2.51"),
            "{}",
            what.log()
        );
    }
}

/// The program of a third-party test, the juris primary (`[fleet]` plus `more_fleet`) and the
/// third party's directory and address; `None` (the test is SKIPPED, said on stderr) when the
/// program is not installed.
fn third_party(
    program: &str,
    package: &str,
    prepare: fn(&str) -> Prepared,
    more_fleet: &str,
) -> Option<(std::path::PathBuf, Primary, Prepared)> {
    let binary = Daemon::find(program, package)?;
    let prepared = prepare(program);
    Some((binary, Primary::start(more_fleet), prepared))
}

/// BIND 9 (`named -g`) as a secondary of `it.rpz.juris.invalid.` with TSIG, in
/// `response-policy`: NXDOMAIN for the Italian order's names, the real answer otherwise; a
/// change on the primary reaches it by NOTIFY (the primary's `notify` names BIND) and IXFR,
/// without waiting for its refresh timer.
#[test]
fn bind_is_a_tsig_secondary_of_the_italian_rpz_zone_enforces_it_and_takes_a_change_by_notify_and_ixfr(
) {
    let Some(named) = Daemon::find("named", "bind9") else {
        return;
    };
    let prepared = Daemon::prepare_on_localhost("named");
    let primary = Primary::start(&format!("notify = [\"{}\"]", prepared.address));
    let config = format!(
        r#"{key}
options {{
{common}
    recursion yes;
    allow-query {{ 127.0.0.0/8; }};
    allow-recursion {{ 127.0.0.0/8; }};
    dnssec-validation no;
    response-policy {{ zone "{ZONE}"; }} min-update-interval 0;
}};
controls {{ }};
zone "." {{ type hint; file "{hints}"; }};
zone "{ZONE}" {{
    type secondary;
    primaries port {xport} {{ {xip} key "interop"; }};
    file "{ZONE}.db";
}};
"#,
        key = primary.bind_key,
        common = bind_options(&prepared),
        hints = primary.hints(),
        xport = primary.xfr.port(),
        xip = primary.xfr.ip(),
    );
    let files = [("named.conf", config.as_str())];
    let args = ["-g", "-c", "{dir}/named.conf"];
    let bind = primary.enforced_by("named", &named, prepared, &files, &args);
    let log = bind.log();
    assert!(
        log.contains(&format!("zone {ZONE}/IN: transferred serial")),
        "{log}"
    );
    assert!(log.contains("TSIG interop"), "{log}");

    // A change: the primary's NOTIFY (from its XFR address, signed) makes BIND ask at once;
    // the change comes as an IXFR delta.
    let server = bind.address();
    assert!(resolves(server, "www.mirror.test.", "192.0.2.50"));
    primary.cli(&["order", "add-target", "IT-MI-2024-0001", "www.mirror.test"]);
    assert!(
        within_a_minute(|| nxdomain(server, "www.mirror.test.")),
        "BIND never took the change\n--- juris primary ---\n{}\n--- named ---\n{}",
        primary.juris.stderr(),
        bind.log()
    );
    let log = bind.log();
    let serial = primary_serial(&primary);
    let notified = format!("zone {ZONE}/IN: notify from {}#", primary.xfr.ip());
    assert!(
        log.lines()
            .any(|l| l.contains(&notified) && l.ends_with(&format!(": serial {serial}"))),
        "no NOTIFY of serial {serial} from the primary in\n{log}"
    );
    assert!(
        log.contains(&format!("zone {ZONE}/IN: transferred serial {serial}")),
        "{log}"
    );
    // As the primary saw it: one AXFR (the first load), then IXFR.
    let served = primary.juris.stderr();
    let asked = |qtype: &str| {
        served
            .lines()
            .filter(|l| l.contains(&format!("zone={ZONE}. qtype={qtype} ")))
            .count()
    };
    assert_eq!(asked("AXFR"), 1, "{served}");
    assert!(asked("IXFR") >= 1, "{served}");
    assert!(nxdomain(server, "www.kickasstorrents.to."), "{log}");
    assert!(resolves(server, "other.mirror.test.", "192.0.2.51"));
}

/// The statements of BIND's `options` every test here has: its directory and address.
fn bind_options(prepared: &Prepared) -> String {
    format!(
        r#"    directory "{d}";
    pid-file "{d}/named.pid";
    session-keyfile "{d}/session.key";
    listen-on port {port} {{ {ip}; }};
    listen-on-v6 {{ none; }};"#,
        d = prepared.directory.path().display(),
        ip = prepared.address.ip(),
        port = prepared.address.port(),
    )
}

/// The serial the primary publishes now (its SOA for the Italian zone, asked over UDP).
fn primary_serial(primary: &Primary) -> u32 {
    let output = Command::new("dig")
        .args([
            "+short",
            "-p",
            &primary.xfr.port().to_string(),
            &format!("@{}", primary.xfr.ip()),
            "-y",
            &format!("hmac-sha256:interop:{}", primary.secret()),
            &format!("{ZONE}."),
            "SOA",
        ])
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&output.stdout);
    text.split_whitespace()
        .nth(2)
        .and_then(|serial| serial.parse().ok())
        .unwrap_or_else(|| panic!("no SOA from the primary: {text}"))
}

/// Unbound (`rpz:` with `primary:`, AXFR): it cannot sign transfers, so the primary serves it
/// unsigned through `fleet.allow_unsigned`. Unbound 1.17 sends its transfers from the
/// system's choice of source (127.0.0.1 on loopback), not from `outgoing-interface`, so that
/// is the prefix allowed (`/32`: nobody else on the host may transfer unsigned).
#[test]
fn unbound_takes_the_italian_rpz_zone_unsigned_and_enforces_it() {
    let unsigned = "allow_unsigned = [\"127.0.0.1/32\"]";
    let Some((unbound, primary, prepared)) =
        third_party("unbound", "unbound", Daemon::prepare, unsigned)
    else {
        return;
    };
    let base = server_clause(
        prepared.address,
        prepared.directory.path(),
        primary.hierarchy.root_hints(),
    );
    let config = format!(
        r#"{base}    module-config: "respip iterator"
rpz:
    name: "{ZONE}."
    primary: {xip}@{xport}
    rpz-log: yes
remote-control:
    control-enable: no
"#,
        xport = primary.xfr.port(),
        xip = primary.xfr.ip(),
    );
    let files = [("unbound.conf", config.as_str())];
    let args = ["-d", "-c", "{dir}/unbound.conf"];
    let server = primary.enforced_by("unbound", &unbound, prepared, &files, &args);
    let log = server.log();
    assert!(
        log.contains("rpz: applied kickasstorrents.to. rpz-nxdomain"),
        "{log}"
    );
}

/// PowerDNS Recursor 4.8 (`rpzPrimary` in its Lua configuration, TSIG, IXFR) enforces the
/// Italian zone, and a change on the primary (`juris order add-target`) reaches it by IXFR.
/// Recursor 4.8 does not take NOTIFY for RPZ zones (its `allow-notify-for` only wipes the
/// cache; RPZ NOTIFY came in 5.x): it checks the primary's SOA every `refresh` seconds
/// (default: the zone's SOA refresh, 60 s from juris), so the configuration sets `refresh=1`.
/// Its packet cache answers a name it has cached without consulting the RPZ again (until
/// the answer's TTL runs out), so the configuration disables it (`disable-packetcache`).
#[test]
fn powerdns_recursor_follows_the_italian_rpz_zone_with_tsig_and_receives_a_change_by_ixfr() {
    let Some((recursor, primary, prepared)) =
        third_party("pdns_recursor", "pdns-recursor", Daemon::prepare, "")
    else {
        return;
    };
    let d = prepared.directory.path().display().to_string();
    let lua = format!(
        "rpzPrimary(\"{xfr}\", \"{ZONE}.\", {{tsigname=\"interop\", tsigalgo=\"hmac-sha256\", \
         tsigsecret=\"{secret}\", refresh=1}})\n",
        xfr = primary.xfr,
        secret = primary.secret(),
    );
    let conf = format!(
        "local-address={ip}\nlocal-port={port}\nallow-from=127.0.0.0/8\n\
         hint-file={hints}\ndont-query=\ndnssec=off\nlua-config-file={d}/recursor.lua\n\
         disable-packetcache=yes\ndaemon=no\nwrite-pid=no\nsocket-dir={d}\nthreads=1\n\
         disable-syslog=yes\nloglevel=6\n",
        hints = primary.hints(),
        ip = prepared.address.ip(),
        port = prepared.address.port(),
    );
    let files = [
        ("recursor.lua", lua.as_str()),
        ("recursor.conf", conf.as_str()),
    ];
    let args = ["--config-dir={dir}"];
    let server = primary.enforced_by("pdns-recursor", &recursor, prepared, &files, &args);

    primary.cli(&["order", "add-target", "IT-MI-2024-0001", "www.mirror.test"]);
    assert!(
        within_a_minute(|| nxdomain(server.address(), "www.mirror.test.")),
        "the change never reached PowerDNS\n--- juris primary ---\n{}\n--- recursor ---\n{}",
        primary.juris.stderr(),
        server.log()
    );
    assert!(resolves(
        server.address(),
        "other.mirror.test.",
        "192.0.2.51"
    ));
    // The change came as an IXFR delta (the first load was the only full transfer).
    let served = primary.juris.stderr();
    assert!(
        served.contains(&format!("zone={ZONE}. qtype=IXFR")),
        "no IXFR served:\n{served}"
    );
    let log = server.log();
    assert!(
        log.contains("msg=\"RPZ mutations\"") && log.contains("additions=\"1\""),
        "{log}"
    );
}

/// `GET path` on the admin API with `token`; the body.
fn api_get(api: SocketAddr, path: &str, token: &str) -> String {
    use std::io::{Read, Write};
    let mut stream = std::net::TcpStream::connect(api).unwrap();
    write!(
        stream,
        "GET {path} HTTP/1.1\r\nHost: {api}\r\nAuthorization: Bearer {token}\r\nConnection: close\r\n\r\n"
    )
    .unwrap();
    let mut response = String::new();
    stream.read_to_string(&mut response).unwrap();
    assert!(response.starts_with("HTTP/1.1 200"), "{path}: {response}");
    response
}

/// The vendor's RPZ zone as NSD serves it, at `serial`, with `extra` triggers.
fn vendor_zone(serial: u32, extra: &str) -> String {
    format!(
        "$ORIGIN rpz.vendor.test.\n$TTL 30\n\
         @ SOA ns.vendor.test. hostmaster.vendor.test. {serial} 3600 600 86400 30\n\
         @ NS ns.vendor.test.\n\
         kickasstorrents.to CNAME .\n*.kickasstorrents.to CNAME .\n{extra}"
    )
}

/// The TSIG secret of the vendor's key in the feed tests.
const VENDOR_SECRET: &str = "dmVuZG9yLWZlZWQtc2VjcmV0LWZvci10aGUtdGVzdHM=";

/// A juris node consuming the vendor's zone `rpz.vendor.test.` as the feed `vendor` mapped
/// onto an Italian order (refresh: an hour, so only a NOTIFY brings a change in a test).
struct FeedNode {
    juris: Juris,
    dns: SocketAddr,
    api: SocketAddr,
    token: String,
    config: std::path::PathBuf,
    data: std::path::PathBuf,
    world: juris_testkit::world::CountryWorld,
    hierarchy: Hierarchy,
    _block: AddressBlock,
}

impl FeedNode {
    /// The node's addresses, fixed before the vendor's server starts (its NOTIFY goes to `dns`).
    fn addresses() -> (AddressBlock, SocketAddr, SocketAddr) {
        let block = AddressBlock::allocate();
        let dns = SocketAddr::new(IpAddr::V4(block.address(1)), 5353);
        let api = SocketAddr::new(IpAddr::V4(block.address(2)), 8053);
        (block, dns, api)
    }

    fn start(
        (block, dns, api): (AddressBlock, SocketAddr, SocketAddr),
        primary: SocketAddr,
    ) -> FeedNode {
        let hierarchy = Hierarchy::milan();
        let world = juris_testkit::world::CountryWorld::new("{}");
        fs::remove_file(world.orders.join("it.json")).unwrap();
        let config = world.directory.path().join("juris.toml");
        fs::write(
            &config,
            format!(
                r#"[[fleet.rpz_feed]]
name = "vendor"
primary = "{primary}"
zone = "rpz.vendor.test."
tsig_key = {{ name = "vendor", algorithm = "hmac-sha256", secret = "{VENDOR_SECRET}" }}
refresh_seconds = 3600

[fleet.rpz_feed.order]
id = "VENDOR-IT-1"
kind = "feed_ticket"
authority = "AGCOM (vendor list)"
jurisdictions = ["IT"]
action = "nxdomain"
state = "active"
"#
            ),
        )
        .unwrap();
        let data = world.directory.path().join("data");
        fs::create_dir_all(&data).unwrap();
        let token = create_token(&data, "viewer", "auditor");
        let juris = FeedNode::launch(&hierarchy, &world, dns, api, &config, &data);
        FeedNode {
            juris,
            dns,
            api,
            token,
            config,
            data,
            world,
            hierarchy,
            _block: block,
        }
    }

    fn launch(
        hierarchy: &Hierarchy,
        world: &juris_testkit::world::CountryWorld,
        dns: SocketAddr,
        api: SocketAddr,
        config: &std::path::Path,
        data: &std::path::Path,
    ) -> Juris {
        Juris::builder(JURIS)
            .without_listen()
            .root_hints(hierarchy.root_hints())
            .args(["--threads", "2", "--listen", &dns.to_string()])
            .arg("--config")
            .arg(config)
            .arg("--geoip")
            .arg(&world.mmdb)
            .arg("--data-dir")
            .arg(data)
            .args(["--api-listen", &api.to_string()])
            .start()
    }

    /// Stops juris and starts it again (same configuration and data directory).
    fn restart(&mut self) {
        self.juris.stop();
        self.juris = FeedNode::launch(
            &self.hierarchy,
            &self.world,
            self.dns,
            self.api,
            &self.config,
            &self.data,
        );
    }

    /// Starts the vendor's server (`program` with `config` and the vendor's zone at serial 1),
    /// then a node following it, and waits until the node enforces the zone for Italy.
    fn with_vendor(
        addresses: (AddressBlock, SocketAddr, SocketAddr),
        (name, program): (&str, &std::path::Path),
        prepared: Prepared,
        (config_name, config): (&str, &str),
        args: &[&str],
    ) -> (Daemon, FeedNode) {
        let zone = vendor_zone(1, "");
        let files = [
            (config_name, config),
            ("rpz.vendor.test.zone", zone.as_str()),
        ];
        let vendor = Daemon::start_with_files(name, program, prepared, &files, args);
        let node = FeedNode::start(addresses, vendor.address());
        assert!(
            within_a_minute(|| node.censored("www.kickasstorrents.to.")),
            "the vendor's zone is not enforced for Italy\n--- juris ---\n{}\n--- {name} ---\n{}",
            node.juris.stderr(),
            vendor.log()
        );
        (vendor, node)
    }

    fn dig(&self, client: IpAddr, name: &str) -> Option<Response> {
        Lookup::dig(self.dns, name, "A")
            .source(client)
            .timeout_seconds(2)
            .tries(1)
            .run()
            .ok()
    }

    fn italy(&self) -> IpAddr {
        IpAddr::V4(self.world.italy())
    }

    fn germany(&self) -> IpAddr {
        IpAddr::V4(self.world.germany())
    }

    /// NXDOMAIN with EDE 16 for the Italian client.
    fn censored(&self, name: &str) -> bool {
        self.dig(self.italy(), name).is_some_and(|r| {
            r.status == "NXDOMAIN" && r.extended_errors.iter().any(|e| e.code == 16)
        })
    }

    fn resolves(&self, client: IpAddr, name: &str, address: &str) -> bool {
        self.dig(client, name)
            .is_some_and(|r| r.status == "NOERROR" && r.answer_data("A") == [address])
    }

    fn get(&self, path: &str) -> String {
        api_get(self.api, path, &self.token)
    }
}

/// The other direction: juris consumes a third-party RPZ zone (a vendor's list served by NSD,
/// TSIG) as a feed mapped onto an order for Italy: an Italian client gets NXDOMAIN with EDE 16
/// and the order's counter moves, a German client gets the real answer; a new serial that NSD
/// announces by NOTIFY arrives (the feed's refresh is an hour: only the NOTIFY can bring it).
#[test]
fn juris_consumes_a_vendors_rpz_zone_over_xfr_as_an_order_for_italy() {
    let nsd = juris_testkit::tools::require("nsd");
    let addresses = FeedNode::addresses();
    let dns = addresses.1;
    let prepared = Daemon::prepare("nsd");
    let zone_file = prepared.directory.path().join("rpz.vendor.test.zone");
    let conf = format!(
        r#"{server}    zonefiles-write: 0
remote-control:
    control-enable: no
key:
    name: "vendor"
    algorithm: hmac-sha256
    secret: "{VENDOR_SECRET}"
zone:
    name: "rpz.vendor.test"
    zonefile: "{zone}"
    provide-xfr: 127.0.0.0/8 vendor
    notify: {dns_ip}@{dns_port} vendor
    outgoing-interface: {ip}
"#,
        server = nsd_server_clause(prepared.address, prepared.directory.path()),
        ip = prepared.address.ip(),
        zone = zone_file.display(),
        dns_ip = dns.ip(),
        dns_port = dns.port(),
    );
    let args = ["-d", "-c", "{dir}/nsd.conf"];
    let (vendor, mut node) = FeedNode::with_vendor(
        addresses,
        ("nsd", &nsd),
        prepared,
        ("nsd.conf", &conf),
        &args,
    );
    let (italy, germany) = (node.italy(), node.germany());
    assert!(node.censored("kickasstorrents.to."));
    assert!(node.resolves(germany, "www.kickasstorrents.to.", "192.0.2.10"));
    assert!(node.resolves(italy, "www.mirror.test.", "192.0.2.50"));

    let metrics = node.get("/metrics");
    assert!(
        metrics.contains("juris_blocks_total{order=\"VENDOR-IT-1\",jurisdiction=\"IT\"}"),
        "{metrics}"
    );
    let status = node.get("/v1/status");
    assert!(status.contains("\"rpz_feeds\""), "{status}");
    assert!(status.contains("\"zone\":\"rpz.vendor.test.\""), "{status}");

    // The vendor adds a name: a new serial, NOTIFY (signed) to juris, a transfer.
    fs::write(&zone_file, vendor_zone(2, "www.mirror.test CNAME .\n")).unwrap();
    vendor.signal(libc::SIGHUP);
    assert!(
        within_a_minute(|| node.censored("www.mirror.test.")),
        "the vendor's change never arrived\n--- juris ---\n{}\n--- nsd ---\n{}",
        node.juris.stderr(),
        vendor.log()
    );
    assert!(node.resolves(germany, "www.mirror.test.", "192.0.2.50"));
    assert!(node.resolves(italy, "other.mirror.test.", "192.0.2.51"));
    let log = node.juris.stderr();
    assert!(log.contains("RPZ feed: transfer applied"), "{log}");
    assert!(log.contains("serial=2"), "{log}");
    // The feed in the metrics: serial in force, last transfer, failures.
    let metrics = node.get("/metrics");
    for sample in [
        "juris_fleet_rpz_feed_serial{feed=\"vendor\"} 2",
        "juris_fleet_rpz_feed_failures{feed=\"vendor\"} 0",
        "juris_fleet_rpz_feed_snapshot_ok{feed=\"vendor\"} 1",
        "juris_fleet_rpz_feed_last_transfer{feed=\"vendor\"} ",
    ] {
        assert!(metrics.contains(sample), "{sample} not in\n{metrics}");
    }

    // The vendor's server goes; juris restarts: the feed's snapshot keeps its order in force.
    drop(vendor);
    node.restart();
    assert!(
        within_a_minute(|| node.censored("www.mirror.test.")),
        "{}",
        node.juris.stderr()
    );
    assert!(node.censored("www.kickasstorrents.to."));
    assert!(node.resolves(germany, "www.mirror.test.", "192.0.2.50"));
    assert!(node
        .juris
        .stderr()
        .contains("enforcing the order of the snapshot"));
    let status = node.get("/v1/status");
    assert!(status.contains("\"origin\":\"snapshot\""), "{status}");
    let metrics = node.get("/metrics");
    assert!(
        metrics.contains("juris_fleet_rpz_feed_serial{feed=\"vendor\"} 2"),
        "{metrics}"
    );
    assert!(
        !metrics.contains("juris_fleet_rpz_feed_failures{feed=\"vendor\"} 0"),
        "the failed transfers are counted: {metrics}"
    );
}

/// The vendor's primary is BIND 9 with a dynamic zone: a name added by `nsupdate` (TSIG) is
/// journaled, BIND tells juris by NOTIFY and answers juris's IXFR with the delta (not the whole
/// zone, as NSD 4.6 does); juris applies the delta and enforces the new name for Italy.
#[test]
fn juris_applies_an_ixfr_delta_from_a_bind_primary_of_a_vendors_rpz_zone() {
    let Some(named) = Daemon::find("named", "bind9") else {
        return;
    };
    let nsupdate = juris_testkit::tools::require("nsupdate");
    let addresses = FeedNode::addresses();
    let dns = addresses.1;
    let prepared = Daemon::prepare_on_localhost("named");
    let bind = prepared.address;
    let config = format!(
        r#"key "vendor" {{
    algorithm hmac-sha256;
    secret "{VENDOR_SECRET}";
}};
options {{
{common}
    recursion no;
    notify explicit;
}};
controls {{ }};
zone "rpz.vendor.test" {{
    type primary;
    file "rpz.vendor.test.zone";
    allow-update {{ key "vendor"; }};
    allow-transfer {{ key "vendor"; }};
    also-notify {{ {dns_ip} port {dns_port} key "vendor"; }};
}};
"#,
        common = bind_options(&prepared),
        dns_ip = dns.ip(),
        dns_port = dns.port(),
    );
    let args = ["-g", "-c", "{dir}/named.conf"];
    let (vendor, node) = FeedNode::with_vendor(
        addresses,
        ("named", &named),
        prepared,
        ("named.conf", &config),
        &args,
    );
    assert!(node.resolves(node.italy(), "www.mirror.test.", "192.0.2.50"));

    // A dynamic update: BIND journals it, moves the serial on and sends NOTIFY.
    let mut child = Command::new(&nsupdate)
        .args(["-y", &format!("hmac-sha256:vendor:{VENDOR_SECRET}")])
        .stdin(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    {
        use std::io::Write;
        let mut stdin = child.stdin.take().unwrap();
        write!(
            stdin,
            "server {} {}\nzone rpz.vendor.test\nupdate add www.mirror.test.rpz.vendor.test. 30 CNAME .\nsend\n",
            bind.ip(),
            bind.port()
        )
        .unwrap();
    }
    assert!(child.wait().unwrap().success(), "{}", vendor.log());
    assert!(
        within_a_minute(|| node.censored("www.mirror.test.")),
        "the vendor's change never arrived\n--- juris ---\n{}\n--- named ---\n{}",
        node.juris.stderr(),
        vendor.log()
    );
    assert!(node.resolves(node.germany(), "www.mirror.test.", "192.0.2.50"));
    assert!(node.censored("www.kickasstorrents.to."));
    // It was a delta: juris logged an IXFR and counts one whole zone (the first transfer).
    let log = node.juris.stderr();
    assert!(
        log.lines()
            .any(|l| l.contains("RPZ feed: transfer applied") && l.contains("IXFR")),
        "{log}"
    );
    let status = node.get("/v1/status");
    assert!(
        status.contains("\"transfers\":2") && status.contains("\"full_transfers\":1"),
        "{status}"
    );
    assert!(vendor.log().contains("IXFR"), "{}", vendor.log());
}
