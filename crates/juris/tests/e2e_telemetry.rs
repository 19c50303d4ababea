//! End-to-end tests of juris's logs and telemetry (issue 15, item 5): JSON log lines, the
//! query log, dnstap output, the Prometheus metrics and the Grafana dashboard that uses them.
//!
//! No NSD needed unless said: juris forwards to a loopback port where nothing listens; every
//! query still gets an answer (SERVFAIL after resolution), which is a miss with an RCODE.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    reason = "tests: a failed expectation is a test failure"
)]

use std::fs;
use std::time::Duration;

use hickory_proto::rr::RecordType;
use juris_testkit::juris::Juris;
use juris_testkit::raw;

const JURIS: &str = env!("CARGO_BIN_EXE_juris");
/// How long to wait for something before the test fails (a failure bound only).
const PATIENCE: Duration = Duration::from_secs(30);

/// A configuration file forwarding to a port where nothing listens, with `extra` appended.
fn config(dir: &std::path::Path, extra: &str) -> std::path::PathBuf {
    let path = dir.join("juris.toml");
    fs::write(
        &path,
        format!("[resolver]\nforward = [\"127.0.0.1:9\"]\n{extra}"),
    )
    .unwrap();
    path
}

/// `[log] format = "json"`: every line juris writes is one JSON object with a timestamp, a
/// level and the event's fields, and a query's life still shows in them.
#[test]
fn json_log_format_writes_one_object_per_line() {
    let dir = tempfile::tempdir().unwrap();
    let config = config(dir.path(), "[log]\nformat = \"json\"\n");
    let juris = Juris::builder(JURIS)
        .args(["--threads", "1", "--api-listen", "none", "--config"])
        .arg(&config)
        .start();
    let query = raw::query("example.invalid.", RecordType::A, 0x7a7a, false);
    raw::udp_exchange(juris.address(), &query, PATIENCE).expect("an answer");
    let status = juris.stop().expect("juris was running");
    assert!(status.success(), "{status:?}");
    let log = juris.stderr();
    let lines: Vec<&str> = log.lines().filter(|l| !l.trim().is_empty()).collect();
    assert!(!lines.is_empty(), "juris logged nothing");
    for line in &lines {
        let object: serde_json::Value = serde_json::from_str(line)
            .unwrap_or_else(|e| panic!("not a JSON line ({e}): {line:?}\n{log}"));
        assert!(object["timestamp"].is_string(), "{line}");
        assert!(object["level"].is_string(), "{line}");
        assert!(object["fields"]["message"].is_string(), "{line}");
    }
    assert!(
        lines.iter().any(|l| l.contains("listening")),
        "no line about the listeners:\n{log}"
    );
}

/// The default stays text: the same start logs lines that are not JSON.
#[test]
fn text_log_format_is_the_default() {
    let dir = tempfile::tempdir().unwrap();
    let config = config(dir.path(), "");
    let juris = Juris::builder(JURIS)
        .args(["--threads", "1", "--api-listen", "none", "--config"])
        .arg(&config)
        .start();
    juris.stop().expect("juris was running");
    let log = juris.stderr();
    let line = log
        .lines()
        .find(|l| l.contains("listening"))
        .unwrap_or_else(|| panic!("no line about the listeners:\n{log}"));
    assert!(serde_json::from_str::<serde_json::Value>(line).is_err(), "{line}");
    assert!(line.contains("INFO"), "{line}");
}
