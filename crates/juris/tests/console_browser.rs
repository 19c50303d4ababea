//! The web console in a real headless Chromium: `tests/browser/console.mjs` (Playwright's
//! `playwright-core` driving Debian's `chromium`, axe-core on every page) against a `juris
//! serve` started here with its store, admin listener and a GeoIP database that places one
//! client address in Italy. Nothing is resolved (explain does not resolve; the real queries the
//! test sends from the Italian address are blocked or only counted), so no NSD.
//!
//! Needs `node`, `chromium` and `npm ci` in `tests/browser` (`.ci/run` installs them). Set
//! `JURIS_SCREENSHOTS=DIR` to save screenshots of the main pages (docs/console/ was made so).
#![allow(clippy::unwrap_used, clippy::expect_used, reason = "test code")]

use std::net::{IpAddr, SocketAddr};
use std::path::{Path, PathBuf};
use std::process::Command;

use juris_testkit::addresses::AddressBlock;
use juris_testkit::juris::Juris;
use juris_testkit::mmdb::{MmdbWriter, Shape};

const JURIS: &str = env!("CARGO_BIN_EXE_juris");

fn browser_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../tests/browser")
}

/// `juris token create` offline on the store, as the README's first step.
fn token(data_dir: &Path, role: &str, name: &str) -> String {
    let mut create = Command::new(JURIS);
    create.args(["token", "create", "--role", role, "--name", name]);
    let output = create.arg("--data-dir").arg(data_dir).output().unwrap();
    assert!(output.status.success(), "{output:?}");
    String::from_utf8(output.stdout).unwrap().trim().to_owned()
}

#[test]
fn console_in_chromium_milan_order_from_sign_in_to_lift_with_accessibility_checks() {
    let chromium = std::env::var("CHROMIUM").unwrap_or_else(|_| "/usr/bin/chromium".into());
    assert!(
        Path::new(&chromium).exists(),
        "{chromium} is missing: apt-get install chromium (.ci/run does)"
    );
    assert!(
        browser_dir().join("node_modules/playwright-core").is_dir(),
        "tests/browser/node_modules is missing: run `npm ci` in tests/browser (.ci/run does)"
    );
    let clients = AddressBlock::allocate();
    let directory = tempfile::tempdir().unwrap();
    let italy = IpAddr::V4(clients.address(101));
    let mmdb = directory.path().join("countries.mmdb");
    MmdbWriter::new(Shape::CountryCode)
        .insert(format!("{italy}/32").parse().unwrap(), "IT")
        .write_to(&mmdb)
        .unwrap();
    let data_dir = directory.path().join("data");
    std::fs::create_dir_all(&data_dir).unwrap();
    let admin = token(&data_dir, "admin", "officer");
    let viewer = token(&data_dir, "viewer", "auditor");
    let api = SocketAddr::new(IpAddr::V4(clients.address(200)), 8053);
    // The per-day counters are flushed every second, so that a real query shows in the charts.
    let config = directory.path().join("juris.toml");
    std::fs::write(&config, "[control]\nstats_flush_seconds = 1\n").unwrap();
    let server = Juris::builder(JURIS)
        .arg("--config")
        .arg(&config)
        .args(["--threads", "1"])
        .arg("--geoip")
        .arg(&mmdb)
        .arg("--data-dir")
        .arg(&data_dir)
        .arg("--api-listen")
        .arg(api.to_string())
        .start();
    // The admin listener comes up with the server; wait for it (bounded, not timed).
    let up = (0..300).any(|_| {
        std::net::TcpStream::connect(api).is_ok() || {
            std::thread::sleep(std::time::Duration::from_millis(100));
            false
        }
    });
    assert!(
        up,
        "the admin listener did not come up: {}",
        server.stderr()
    );
    let mut command = Command::new("node");
    command
        .arg("console.mjs")
        .current_dir(browser_dir())
        .env("JURIS_UI", format!("http://{api}"))
        .env("ADMIN_TOKEN", &admin)
        .env("VIEWER_TOKEN", &viewer)
        .env("ITALY", italy.to_string())
        .env("DNS", server.address().to_string())
        .env("CHROMIUM", &chromium);
    if let Ok(dir) = std::env::var("JURIS_SCREENSHOTS") {
        command.env("SCREENSHOTS", dir);
    }
    let output = command.output().expect("node (apt-get install nodejs)");
    assert!(
        output.status.success(),
        "the browser test failed:\n{}{}\n--- juris ---\n{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr),
        server.stderr()
    );
}
