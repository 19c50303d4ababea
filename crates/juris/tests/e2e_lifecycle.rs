//! End-to-end tests of `juris serve` as a service (issue 15): the systemd notifications
//! (`Type=notify`: READY, RELOADING, STOPPING, watchdog) and, started as root, the switch to
//! an unprivileged user after binding.
//!
//! No NSD needed: juris forwards to a loopback port where nothing listens; every query still
//! gets an answer (SERVFAIL), which is all these tests need.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    reason = "tests: a failed expectation is a test failure"
)]

use std::fs;
use std::net::SocketAddr;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::os::unix::net::UnixDatagram;
use std::path::Path;
use std::time::Duration;

use hickory_proto::rr::RecordType;
use juris_testkit::addresses::AddressBlock;
use juris_testkit::juris::{http_get, Juris};
use juris_testkit::raw;

const JURIS: &str = env!("CARGO_BIN_EXE_juris");
/// How long to wait for one notification before the test fails (a failure bound only).
const PATIENCE: Duration = Duration::from_secs(30);
/// One worker, forwarding to a port where nothing listens (every query: SERVFAIL), no API.
const NO_UPSTREAM: [&str; 6] = [
    "--threads",
    "1",
    "--forward",
    "127.0.0.1:9",
    "--api-listen",
    "none",
];

/// Reads notifications until one holds `line`; returns every line read.
fn until(socket: &UnixDatagram, line: &str, juris: &Juris) -> Vec<String> {
    let mut seen = Vec::new();
    let mut buffer = [0u8; 4096];
    loop {
        let Ok(n) = socket.recv(&mut buffer) else {
            panic!(
                "no {line:?} from juris; got {seen:?}\n--- juris output ---\n{}",
                juris.stderr()
            );
        };
        let message = String::from_utf8_lossy(&buffer[..n]).into_owned();
        let found = message.lines().any(|l| l == line);
        seen.extend(message.lines().map(str::to_owned));
        if found {
            return seen;
        }
    }
}

/// READY=1 once serving, WATCHDOG=1 when systemd asks for a watchdog, RELOADING=1 with the
/// monotonic time then READY=1 around a SIGHUP reload, STOPPING=1 on SIGTERM.
#[test]
fn tells_systemd_ready_reloading_watchdog_and_stopping() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("notify.sock");
    let socket = UnixDatagram::bind(&path).unwrap();
    socket.set_read_timeout(Some(PATIENCE)).unwrap();
    let juris = Juris::builder(JURIS)
        .args(NO_UPSTREAM)
        .env("NOTIFY_SOCKET", &path)
        .env("WATCHDOG_USEC", "200000")
        .start();

    let seen = until(&socket, "READY=1", &juris);
    assert!(
        seen.iter().any(|l| l.starts_with("STATUS=")),
        "READY without a STATUS: {seen:?}"
    );
    until(&socket, "WATCHDOG=1", &juris);

    juris.signal(libc::SIGHUP);
    let seen = until(&socket, "RELOADING=1", &juris);
    assert!(
        seen.iter().any(|l| l.starts_with("MONOTONIC_USEC=")),
        "RELOADING without MONOTONIC_USEC: {seen:?}"
    );
    until(&socket, "READY=1", &juris);

    let status = juris.stop().expect("juris was running");
    assert!(status.success(), "{status:?}\n{}", juris.stderr());
    until(&socket, "STOPPING=1", &juris);
}

/// The uid and gid lines of /proc/PID/status: real, effective, saved, file system.
fn ids(pid: u32) -> (String, String) {
    let status = fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    let line = |key: &str| {
        status
            .lines()
            .find_map(|l| l.strip_prefix(key))
            .unwrap()
            .split_whitespace()
            .collect::<Vec<_>>()
            .join(" ")
    };
    (line("Uid:"), line("Gid:"))
}

/// `nobody`'s uid and gid from /etc/passwd.
fn nobody() -> Option<(u32, u32)> {
    let passwd = fs::read_to_string("/etc/passwd").ok()?;
    let fields: Vec<&str> = passwd
        .lines()
        .find(|l| l.starts_with("nobody:"))?
        .split(':')
        .collect();
    Some((fields.get(2)?.parse().ok()?, fields.get(3)?.parse().ok()?))
}

fn owner(path: &Path) -> u32 {
    fs::metadata(path).unwrap().uid()
}

/// Started as root with `--user nobody`: port 53 is bound first, then every thread runs as
/// nobody (real, effective, saved and file-system ids), the state directory and the store
/// root created in it belong to nobody, and port 53 still answers.
#[test]
fn started_as_root_binds_port_53_then_runs_as_the_user() {
    if !nix_like_root() {
        eprintln!("skipped: needs root (the CI and the developers' machines run tests as root)");
        return;
    }
    let (uid, gid) = nobody().expect("a `nobody` user");
    let dir = tempfile::tempdir().unwrap();
    fs::set_permissions(dir.path(), fs::Permissions::from_mode(0o755)).unwrap();
    let data = dir.path().join("data");
    let block = AddressBlock::allocate();
    let port_53 = SocketAddr::from((block.address(1), 53));
    let juris = Juris::builder(JURIS)
        .args(NO_UPSTREAM)
        .arg("--listen")
        .arg(port_53.to_string())
        .arg("--data-dir")
        .arg(&data)
        .args(["--user", "nobody"])
        .start();

    let pid = juris.pid().expect("juris runs");
    // The switch happens before READY; the log line says it is done.
    juris.wait_for_log("running as nobody from here on", PATIENCE);
    let (uids, gids) = ids(pid);
    assert_eq!(
        uids,
        format!("{uid} {uid} {uid} {uid}"),
        "{}",
        juris.stderr()
    );
    assert_eq!(
        gids,
        format!("{gid} {gid} {gid} {gid}"),
        "{}",
        juris.stderr()
    );
    assert_eq!(owner(&data), uid);
    assert_eq!(owner(&data.join("control.sqlite3")), uid);

    let query = raw::query("example.invalid.", RecordType::A, 0x1234, false);
    assert!(
        raw::udp_exchange(port_53, &query, PATIENCE).is_some(),
        "port 53 does not answer after the switch\n{}",
        juris.stderr()
    );
    let status = juris.stop().expect("juris was running");
    assert!(status.success(), "{status:?}\n{}", juris.stderr());
    // Written by the user at shutdown.
    assert_eq!(owner(&data.join("status.json")), uid);
}

fn nix_like_root() -> bool {
    fs::read_to_string("/proc/self/status").is_ok_and(|status| {
        status
            .lines()
            .find_map(|l| l.strip_prefix("Uid:"))
            .and_then(|ids| ids.split_whitespace().nth(1).map(|euid| euid == "0"))
            .unwrap_or(false)
    })
}

/// A forwarder's upstream that answers the testkit's start-up probes at once and hands every
/// other query to the test, which answers it when it wants (NXDOMAIN).
struct HeldUpstream {
    socket: std::net::UdpSocket,
    held: std::sync::mpsc::Receiver<(Vec<u8>, SocketAddr)>,
    _block: AddressBlock,
}

impl HeldUpstream {
    fn start() -> (HeldUpstream, SocketAddr) {
        let block = AddressBlock::allocate();
        let socket = std::net::UdpSocket::bind((block.address(1), 0)).unwrap();
        let address = socket.local_addr().unwrap();
        let (hold, held) = std::sync::mpsc::channel();
        let reader = socket.try_clone().unwrap();
        std::thread::spawn(move || {
            let mut buffer = [0u8; 4096];
            while let Ok((n, from)) = reader.recv_from(&mut buffer) {
                let query = buffer[..n].to_vec();
                if query.windows(19).any(|w| w == b"juris-testkit-probe") {
                    let _ = reader.send_to(&nxdomain(&query), from);
                } else if hold.send((query, from)).is_err() {
                    return;
                }
            }
        });
        let upstream = HeldUpstream {
            socket,
            held,
            _block: block,
        };
        (upstream, address)
    }

    fn next(&self) -> (Vec<u8>, SocketAddr) {
        self.held
            .recv_timeout(PATIENCE)
            .expect("juris forwarded no query")
    }
}

/// The query turned into its NXDOMAIN response (QR, RA, RCODE 3; everything else kept).
fn nxdomain(query: &[u8]) -> Vec<u8> {
    let mut response = query.to_vec();
    response[2] |= 0x80;
    response[3] = 0x80 | 3;
    response
}

/// SIGTERM while a TCP query is being resolved: juris stops accepting but the connection
/// stays open until that query is answered, then juris exits cleanly. Before the drain, the
/// connection was closed at once and the client got nothing.
#[test]
fn sigterm_drains_a_tcp_query_in_flight() {
    use std::io::{Read, Write};
    let (upstream, address) = HeldUpstream::start();
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("juris.toml");
    fs::write(
        &config,
        format!(
            "[server]\ndrain_timeout_ms = 60000\n\
             [resolver]\nforward = [\"{address}\"]\nquery_timeout_ms = 30000\n\
             resolution_deadline_ms = 60000\n"
        ),
    )
    .unwrap();
    let api_block = AddressBlock::allocate();
    let api = api_block.free_tcp_port();
    let juris = Juris::builder(JURIS)
        .args([
            "--threads",
            "1",
            "--api-listen",
            &api.to_string(),
            "--config",
        ])
        .arg(&config)
        .start();
    juris.wait_for_log("key=\"control.api_listen\"", PATIENCE);
    let (code, body) = http_get(api, "/readyz");
    assert_eq!(code, 200, "{body}");
    assert!(body.contains(r#""ready":true"#), "{body}");

    let mut client = std::net::TcpStream::connect(juris.address()).unwrap();
    client.set_read_timeout(Some(PATIENCE)).unwrap();
    let query = raw::query("drain.example.", RecordType::A, 0x4242, false);
    let mut framed = (query.len() as u16).to_be_bytes().to_vec();
    framed.extend_from_slice(&query);
    client.write_all(&framed).unwrap();
    let (forwarded, juris_side) = upstream.next();

    juris.signal(libc::SIGTERM);
    juris.wait_for_log("draining connections", PATIENCE);
    // Draining: no longer ready (a load balancer moves traffic away), still alive.
    let (code, body) = http_get(api, "/readyz");
    assert_eq!(code, 503, "{body}");
    assert!(body.contains("draining"), "{body}");
    upstream
        .socket
        .send_to(&nxdomain(&forwarded), juris_side)
        .unwrap();

    let mut length = [0u8; 2];
    client
        .read_exact(&mut length)
        .unwrap_or_else(|e| panic!("no answer during the drain ({e})\n{}", juris.stderr()));
    let mut response = vec![0u8; usize::from(u16::from_be_bytes(length))];
    client.read_exact(&mut response).unwrap();
    assert_eq!(&response[..2], &[0x42, 0x42], "not our answer");
    assert_eq!(response[3] & 0x0f, 3, "NXDOMAIN expected: {response:?}");
    let status = juris.stop().expect("juris was running");
    assert!(status.success(), "{status:?}\n{}", juris.stderr());
    assert!(
        juris.stderr().contains("connections drained"),
        "{}",
        juris.stderr()
    );
}

/// A port nobody listens on, on an address of `block`.

/// SIGHUP applies server.allow and log.level from the file at once, and names the changed
/// keys it does not apply (they need a restart).
#[test]
fn sighup_applies_the_live_keys_and_names_the_rest() {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("juris.toml");
    let write = |allow: &str, level: &str, cache: &str| {
        fs::write(
            &config,
            format!(
                "[server]\nallow = [\"{allow}\"]\n[resolver]\nforward = [\"127.0.0.1:9\"]\n\
                 [cache]\nsize = \"{cache}\"\n[log]\nlevel = \"{level}\"\n"
            ),
        )
        .unwrap();
    };
    write("127.0.0.0/8", "info", "64M");
    let juris = Juris::builder(JURIS)
        .args(["--threads", "1", "--api-listen", "none", "--config"])
        .arg(&config)
        .env("RUST_LOG", "")
        .start();
    let query = raw::query("example.invalid.", RecordType::A, 0x5151, false);
    let rcode = |response: Vec<u8>| response[3] & 0x0f;
    let before = raw::udp_exchange(juris.address(), &query, PATIENCE).expect("an answer");
    assert_ne!(rcode(before), 5, "refused before the change");

    write("192.0.2.0/24", "warn", "128M");
    juris.signal(libc::SIGHUP);
    juris.wait_for_log("SIGHUP: configuration reloaded", PATIENCE);
    let log = juris.stderr();
    assert!(
        log.contains("changed keys NOT applied, they need a restart: cache.size"),
        "{log}"
    );
    let after = raw::udp_exchange(juris.address(), &query, PATIENCE).expect("an answer");
    assert_eq!(rcode(after), 5, "server.allow not applied: not REFUSED");

    // log.level = "warn" from now on: the INFO lines of the shutdown are not written.
    let status = juris.stop().expect("juris was running");
    assert!(status.success(), "{status:?}");
    let log = juris.stderr();
    let after_reload = &log[log.find("SIGHUP: configuration reloaded").unwrap()..];
    assert!(
        !after_reload.contains("draining connections"),
        "log.level not applied:\n{after_reload}"
    );
    assert!(
        log[..log.len() - after_reload.len()].contains("listening"),
        "{log}"
    );
}
