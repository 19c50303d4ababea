//! End-to-end tests of the order loader inside `juris serve`: shutdown is never held up by a
//! load, whatever the load is doing (issue 16).
//!
//! No NSD needed: juris forwards to a loopback port where nothing listens; the tests look at
//! the process, not at answers.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    reason = "tests: a failed expectation is a test failure"
)]

use std::fmt::Write as _;
use std::fs;
use std::net::{SocketAddr, UdpSocket};
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread;
use std::time::{Duration, Instant};

use hickory_proto::rr::RecordType;
use juris_testkit::addresses::AddressBlock;
use juris_testkit::juris::Juris;
use juris_testkit::raw;

const JURIS: &str = env!("CARGO_BIN_EXE_juris");

/// One order with `targets` domain targets (`n-0.big.example` ...), `state` as given.
fn big_order(targets: usize, state: &str) -> String {
    let mut list = String::new();
    for i in 0..targets {
        if i > 0 {
            list.push(',');
        }
        let _ = write!(list, r#"{{"type":"domain","value":"n-{i}.big.example"}}"#);
    }
    format!(
        r#"{{"id":"BIG","kind":"court_order","authority":"Court","jurisdictions":["IT"],
        "action":"nxdomain","state":"{state}","targets":[{list}]}}"#
    )
}

/// Writes like an editor: a temporary file, then a rename.
fn write_atomically(path: &Path, text: &str) {
    let temp = path.with_extension("tmp");
    fs::write(&temp, text).unwrap();
    fs::rename(&temp, path).unwrap();
}

/// Threads that keep every CPU busy at normal priority until dropped: a loader at the lowest
/// priority then makes (almost) no progress, as on a loaded server.
struct BusyCpu {
    stop: Arc<AtomicBool>,
    threads: Vec<thread::JoinHandle<()>>,
}

impl BusyCpu {
    fn start() -> BusyCpu {
        let stop = Arc::new(AtomicBool::new(false));
        let cpus = thread::available_parallelism().map_or(2, |n| n.get());
        let threads = (0..cpus * 2)
            .map(|_| {
                let stop = Arc::clone(&stop);
                thread::spawn(move || {
                    let mut x = 0_u64;
                    while !stop.load(Ordering::Relaxed) {
                        x = std::hint::black_box(x.wrapping_mul(31).wrapping_add(7));
                    }
                })
            })
            .collect();
        BusyCpu { stop, threads }
    }
}

impl Drop for BusyCpu {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        for thread in self.threads.drain(..) {
            let _ = thread.join();
        }
    }
}

/// SIGHUP and then SIGTERM while the loader is in the middle of a large load that cannot
/// progress (the CPU is busy and the loader runs at the lowest priority): juris still exits,
/// cleanly, on SIGTERM. Before the loader actor, the SIGHUP handler waited for the loader's
/// lock (held for the whole load) and shutdown joined the loader's thread: neither returned
/// until the load was done. The bound is the testkit's generous stop timeout (SIGKILL after
/// it): the test checks that juris exits by itself at all, not how fast.
#[test]
fn sigterm_during_a_long_load_still_shuts_down() {
    let dir = tempfile::tempdir().unwrap();
    let orders = dir.path().join("orders");
    fs::create_dir(&orders).unwrap();
    let file = orders.join("big.json");
    write_atomically(&file, &big_order(50_000, "active"));
    let juris = Juris::builder(JURIS)
        .args(["--threads", "1", "--forward", "127.0.0.1:9"])
        .arg("--orders")
        .arg(&orders)
        .start();

    let busy = BusyCpu::start();
    // A change of every target: the watcher starts a long load at the lowest priority.
    write_atomically(&file, &big_order(50_000, "shadow"));
    thread::sleep(Duration::from_millis(500));
    juris.signal(libc::SIGHUP);
    thread::sleep(Duration::from_millis(200));
    let status = juris.stop();
    drop(busy);
    let status = status.expect("juris was running");
    assert!(
        status.success(),
        "juris did not exit cleanly on SIGTERM during a load ({status:?})\n{}",
        juris.stderr()
    );
}

const NXDOMAIN: u8 = 3;
const REFUSED: u8 = 5;

/// The RCODE juris answers `name` with over UDP, if it answers.
fn rcode(server: SocketAddr, name: &str) -> Option<u8> {
    let query = raw::query(name, RecordType::A, 0x1616, false);
    raw::udp_exchange(server, &query, Duration::from_millis(500)).and_then(|m| raw::rcode(&m))
}

/// Waits (bounded, generously) until `check` holds; whether it ever does is the test.
fn eventually(mut check: impl FnMut() -> bool) -> bool {
    let deadline = Instant::now() + Duration::from_secs(20);
    while Instant::now() < deadline {
        if check() {
            return true;
        }
        thread::sleep(Duration::from_millis(25));
    }
    false
}

/// A configuration: one listener at `address` that places every client in France, the
/// orders in `orders`, `policy.withdraw = withdraw`.
fn config(address: SocketAddr, orders: &Path, withdraw: &str) -> String {
    format!(
        r#"[server]
listen = [{{ address = "{address}", country = "FR" }}]
threads = 1
[resolver]
forward = ["127.0.0.1:9"]
[policy]
orders = "{}"
withdraw = [{withdraw}]
"#,
        orders.display()
    )
}

/// juris serving the orders in `orders` with [`config`] (no withdrawal) written to
/// `dir/juris.toml`, `args` added; its address, the configuration file and the address block
/// (kept alive as long as the server).
fn serve_in_france(
    dir: &Path,
    orders: &Path,
    args: &[&std::ffi::OsStr],
) -> (Juris, SocketAddr, std::path::PathBuf, AddressBlock) {
    let block = AddressBlock::allocate();
    let address = {
        let socket = UdpSocket::bind((block.address(1), 0)).unwrap();
        socket.local_addr().unwrap()
    };
    let config_file = dir.join("juris.toml");
    fs::write(&config_file, config(address, orders, "")).unwrap();
    let juris = Juris::builder(JURIS)
        .without_listen()
        .arg("--config")
        .arg(&config_file)
        .args(args)
        .start();
    (juris, address, config_file, block)
}

/// Issue 16: `policy.withdraw` lived in the pipeline, so changing it needed a restart while
/// orders reload live. It is published with the policy now: SIGHUP reads the configuration
/// again and puts the new list in force.
#[test]
fn policy_withdraw_reloads_on_sighup_without_a_restart() {
    let dir = tempfile::tempdir().unwrap();
    let orders = dir.path().join("orders");
    fs::create_dir(&orders).unwrap();
    write_atomically(
        &orders.join("fr.json"),
        r#"{"id":"FR-1","kind":"court_order","authority":"Tribunal judiciaire de Paris",
        "jurisdictions":["FR"],"action":"nxdomain","state":"active",
        "targets":[{"type":"domain","value":"blocked.example"}]}"#,
    );
    let (juris, address, config_file, _block) = serve_in_france(dir.path(), &orders, &[]);

    // Served (and blocked by the French order): not withdrawn.
    assert!(
        eventually(|| rcode(address, "blocked.example.") == Some(NXDOMAIN)),
        "{}",
        juris.stderr()
    );

    // Withdrawn in France by a configuration change and SIGHUP, no restart.
    fs::write(&config_file, config(address, &orders, r#""FR""#)).unwrap();
    juris.signal(libc::SIGHUP);
    assert!(
        eventually(|| rcode(address, "blocked.example.") == Some(REFUSED)),
        "{}",
        juris.stderr()
    );
    assert!(juris.stderr().contains("policy.withdraw reloaded"));

    // A configuration that does not validate changes nothing.
    fs::write(&config_file, config(address, &orders, r#""XX""#)).unwrap();
    juris.signal(libc::SIGHUP);
    assert!(eventually(|| juris
        .stderr()
        .contains("configuration NOT reloaded")));
    assert_eq!(rcode(address, "blocked.example."), Some(REFUSED));

    // And back.
    fs::write(&config_file, config(address, &orders, "")).unwrap();
    juris.signal(libc::SIGHUP);
    assert!(
        eventually(|| rcode(address, "blocked.example.") == Some(NXDOMAIN)),
        "{}",
        juris.stderr()
    );
    assert!(juris.stop().is_some_and(|s| s.success()));
}

/// A French order on `name`, id `id`.
fn french_order(id: &str, name: &str) -> String {
    format!(
        r#"{{"id":"{id}","kind":"court_order","authority":"Tribunal judiciaire de Paris",
        "jurisdictions":["FR"],"action":"nxdomain","state":"active",
        "targets":[{{"type":"domain","value":"{name}"}}]}}"#
    )
}

/// Design 0042: the operators' published lists (`juris safeguards update`) were read when the
/// configuration was parsed and applied only by a restart. SIGHUP now reads them again and
/// validates every order with the new protected list: an order touching a newly published
/// name is held (reported; a new one is not enforced), and one held before is enforced once
/// the list no longer covers it.
#[test]
fn sighup_applies_a_new_published_protected_list_to_the_orders() {
    let dir = tempfile::tempdir().unwrap();
    let orders = dir.path().join("orders");
    fs::create_dir(&orders).unwrap();
    let data = dir.path().join("data");
    write_atomically(
        &orders.join("one.json"),
        &french_order("FR-CDN-1", "www.shared-cdn.test"),
    );
    let (juris, address, _, _block) = serve_in_france(
        dir.path(),
        &orders,
        &[std::ffi::OsStr::new("--data-dir"), data.as_os_str()],
    );
    assert!(
        eventually(|| rcode(address, "www.shared-cdn.test.") == Some(NXDOMAIN)),
        "{}",
        juris.stderr()
    );

    // The hoster's names are published as shared infrastructure, then SIGHUP.
    fs::write(dir.path().join("hosters.txt"), "shared-cdn.test\n").unwrap();
    let update = std::process::Command::new(JURIS)
        .args(["safeguards", "update"])
        .arg(dir.path().join("hosters.txt"))
        .args(["--source", "hosters", "--data-dir"])
        .arg(&data)
        .output()
        .unwrap();
    assert!(update.status.success(), "{update:?}");
    juris.signal(libc::SIGHUP);
    // The order in force is validated again and reported held (its version in force stays,
    // as for any held change); a new order on a covered name is not enforced.
    assert!(
        eventually(|| juris
            .stderr()
            .contains("protected name shared-cdn.test (published list hosters)")),
        "{}",
        juris.stderr()
    );
    assert!(juris.stderr().contains("new protected list in force"));
    write_atomically(
        &orders.join("two.json"),
        &french_order("FR-CDN-2", "cdn2.shared-cdn.test"),
    );
    assert!(
        eventually(|| juris
            .stderr()
            .contains("two.json: held, not enforced: cdn2.shared-cdn.test is at or below")),
        "{}",
        juris.stderr()
    );
    assert_ne!(rcode(address, "cdn2.shared-cdn.test."), Some(NXDOMAIN));

    // The list withdrawn, SIGHUP: the held order validates and is enforced.
    fs::remove_file(data.join("protected/hosters.json")).unwrap();
    juris.signal(libc::SIGHUP);
    assert!(
        eventually(|| rcode(address, "cdn2.shared-cdn.test.") == Some(NXDOMAIN)),
        "{}",
        juris.stderr()
    );
    assert_eq!(rcode(address, "www.shared-cdn.test."), Some(NXDOMAIN));
    assert!(juris.stop().is_some_and(|s| s.success()));
}
