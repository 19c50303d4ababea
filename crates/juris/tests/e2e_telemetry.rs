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
    assert!(
        serde_json::from_str::<serde_json::Value>(line).is_err(),
        "{line}"
    );
    assert!(line.contains("INFO"), "{line}");
}

/// A running juris with its admin API on a free loopback port and a viewer token.
struct WithApi {
    juris: Juris,
    api: std::net::SocketAddr,
    token: String,
    _dir: tempfile::TempDir,
}

fn start_with_api(extra_config: &str) -> WithApi {
    let dir = tempfile::tempdir().unwrap();
    let data_dir = dir.path().join("data");
    fs::create_dir_all(&data_dir).unwrap();
    let output = std::process::Command::new(JURIS)
        .args(["token", "create", "--role", "viewer", "--name", "grafana"])
        .arg("--data-dir")
        .arg(&data_dir)
        .env_remove("JURIS_TOKEN")
        .output()
        .unwrap();
    assert!(output.status.success(), "{output:?}");
    let token = String::from_utf8(output.stdout).unwrap().trim().to_owned();
    let api = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap();
    let config = config(dir.path(), extra_config);
    let juris = Juris::builder(JURIS)
        .args(["--threads", "1", "--config"])
        .arg(&config)
        .arg("--data-dir")
        .arg(&data_dir)
        .arg("--api-listen")
        .arg(api.to_string())
        .start();
    WithApi {
        juris,
        api,
        token,
        _dir: dir,
    }
}

impl WithApi {
    /// `GET /metrics` with the viewer token.
    fn metrics(&self) -> String {
        use std::io::{Read, Write};
        let mut stream = std::net::TcpStream::connect(self.api).unwrap();
        stream.set_read_timeout(Some(PATIENCE)).unwrap();
        write!(
            stream,
            "GET /metrics HTTP/1.1\r\nHost: juris\r\nAuthorization: Bearer {}\r\nConnection: close\r\n\r\n",
            self.token
        )
        .unwrap();
        let mut response = String::new();
        stream.read_to_string(&mut response).unwrap();
        assert!(response.starts_with("HTTP/1.1 200"), "{response}");
        response
            .split_once("\r\n\r\n")
            .map_or("", |(_, body)| body)
            .to_owned()
    }

    /// Polls `/metrics` until `check` holds (the counters reach the API every few seconds).
    fn metrics_until(&self, mut check: impl FnMut(&str) -> bool) -> String {
        let started = std::time::Instant::now();
        loop {
            let text = self.metrics();
            if check(&text) {
                return text;
            }
            assert!(
                started.elapsed() < PATIENCE,
                "metrics never got there:\n{text}\n--- juris ---\n{}",
                self.juris.stderr()
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }
}

/// The value of the sample `name{labels}` (exactly these labels), if present.
fn sample(metrics: &str, series: &str) -> Option<f64> {
    metrics.lines().find_map(|line| {
        let (key, value) = line.rsplit_once(' ')?;
        (key == series).then(|| value.parse().ok())?
    })
}

/// Answers are counted per transport × RCODE (both labels real), and answer latency goes
/// into a "hit" histogram (answered at once) and a "miss" one (after resolution), with
/// cumulative buckets whose `+Inf` bucket is the count.
#[test]
fn metrics_count_answers_by_transport_and_rcode_with_latency_histograms() {
    let server = start_with_api("");
    let address = server.juris.address();
    // A miss over UDP and over TCP: the upstream never answers, SERVFAIL after resolution.
    let query = raw::query("example.invalid.", RecordType::A, 0x1111, false);
    let answer = raw::udp_exchange(address, &query, PATIENCE).expect("an answer");
    let servfail = raw::rcode(&answer).unwrap();
    let _ = raw::tcp_exchange(address, &raw::frame(&query), PATIENCE);
    // RD=0: answered at once from the cache only (nothing there), a hit of the pipeline.
    let mut not_recursive = raw::query("example.invalid.", RecordType::AAAA, 0x2222, false);
    not_recursive[2] &= !0x01;
    let answer = raw::udp_exchange(address, &not_recursive, PATIENCE).expect("an answer");
    let inline_rcode = raw::rcode(&answer).unwrap();
    let label = |rcode: u8| match rcode {
        0 => "NOERROR",
        2 => "SERVFAIL",
        3 => "NXDOMAIN",
        5 => "REFUSED",
        other => panic!("unexpected RCODE {other}"),
    };
    let udp_servfail = format!(
        "juris_answers_total{{transport=\"udp\",rcode=\"{}\"}}",
        label(servfail)
    );
    let tcp_servfail = format!(
        "juris_answers_total{{transport=\"tcp\",rcode=\"{}\"}}",
        label(servfail)
    );
    let metrics = server.metrics_until(|m| {
        sample(m, &tcp_servfail).is_some()
            && sample(m, "juris_answer_duration_seconds_count{cache=\"miss\"}") >= Some(2.0)
    });
    let udp_inline = format!(
        "juris_answers_total{{transport=\"udp\",rcode=\"{}\"}}",
        label(inline_rcode)
    );
    assert!(sample(&metrics, &udp_servfail) >= Some(1.0), "{metrics}");
    assert!(sample(&metrics, &udp_inline) >= Some(1.0), "{metrics}");
    assert!(
        !metrics.contains("juris_answers_total{transport=\"all\""),
        "{metrics}"
    );
    assert!(metrics.contains("# TYPE juris_answer_duration_seconds histogram"));
    for cache in ["hit", "miss"] {
        let count = sample(
            &metrics,
            &format!("juris_answer_duration_seconds_count{{cache=\"{cache}\"}}"),
        )
        .unwrap();
        assert!(count >= 1.0, "{cache}: {metrics}");
        let buckets: Vec<f64> = metrics
            .lines()
            .filter(|l| {
                l.starts_with(&format!(
                    "juris_answer_duration_seconds_bucket{{cache=\"{cache}\","
                ))
            })
            .map(|l| l.rsplit_once(' ').unwrap().1.parse().unwrap())
            .collect();
        assert!(buckets.len() > 10, "{metrics}");
        assert!(
            buckets.windows(2).all(|w| w[0] <= w[1]),
            "not cumulative: {buckets:?}"
        );
        assert_eq!(buckets.last(), Some(&count), "+Inf is the count");
        let sum = sample(
            &metrics,
            &format!("juris_answer_duration_seconds_sum{{cache=\"{cache}\"}}"),
        )
        .unwrap();
        assert!(sum > 0.0, "{cache}: {metrics}");
        // Each answer is at most its bucket's bound: the sum cannot exceed theirs.
        let bounds: Vec<f64> = metrics
            .lines()
            .filter_map(|l| {
                let rest = l.strip_prefix(&format!(
                    "juris_answer_duration_seconds_bucket{{cache=\"{cache}\",le=\""
                ))?;
                rest.split('"').next()?.parse().ok()
            })
            .filter(|bound: &f64| bound.is_finite())
            .collect();
        let mut previous = 0.0;
        let ceiling: f64 = bounds
            .iter()
            .zip(&buckets)
            .map(|(bound, cumulative)| {
                let in_bucket = cumulative - previous;
                previous = *cumulative;
                in_bucket * bound
            })
            .sum();
        if buckets.get(bounds.len() - 1) == Some(&count) {
            assert!(
                sum <= ceiling,
                "{cache}: sum {sum} above {ceiling}:\n{metrics}"
            );
        }
    }
}

/// Every metric the Grafana dashboard (`contrib/grafana/juris.json`) queries exists in the
/// `/metrics` of a running juris; the file is valid JSON with at least one query per panel.
#[test]
fn grafana_dashboard_uses_only_metrics_juris_exports() {
    let path =
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../contrib/grafana/juris.json");
    let dashboard: serde_json::Value =
        serde_json::from_str(&fs::read_to_string(&path).unwrap()).unwrap();
    let panels = dashboard["panels"].as_array().expect("panels");
    assert!(!panels.is_empty());
    let mut referenced = std::collections::BTreeSet::new();
    for panel in panels {
        let targets = panel["targets"].as_array().expect("targets");
        assert!(!targets.is_empty(), "{panel}");
        for target in targets {
            let expr = target["expr"].as_str().expect("expr");
            let mut rest = expr;
            while let Some(at) = rest.find("juris_") {
                let name: String = rest[at..]
                    .chars()
                    .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
                    .collect();
                rest = &rest[at + name.len()..];
                referenced.insert(name);
            }
        }
    }
    assert!(referenced.len() > 5, "{referenced:?}");
    let server = start_with_api("");
    let metrics = server.metrics();
    let exported: std::collections::BTreeSet<&str> = metrics
        .lines()
        .filter_map(|line| {
            let line = line.strip_prefix("# TYPE ").unwrap_or(line);
            if line.starts_with('#') {
                return None;
            }
            line.split(|c: char| c == '{' || c == ' ').next()
        })
        .collect();
    let histogram_series = |name: &str| {
        ["_bucket", "_sum", "_count"]
            .iter()
            .find_map(|suffix| name.strip_suffix(suffix))
            .is_some_and(|base| exported.contains(base))
    };
    let missing: Vec<&String> = referenced
        .iter()
        .filter(|name| !exported.contains(name.as_str()) && !histogram_series(name))
        .collect();
    assert!(
        missing.is_empty(),
        "not in /metrics: {missing:?}\n{metrics}"
    );
}

/// The order the query log and dnstap tests enforce: `blocked.test` for clients in Italy.
const ORDER_ID: &str = "IT-TEST-TELEMETRY-1";

/// juris on a loopback listener pinned to Italy (so the order applies), enforcing
/// [`ORDER_ID`], forwarding to a port where nothing listens, with `extra` in its config.
fn start_pinned(dir: &std::path::Path, extra: &str) -> (Juris, std::net::SocketAddr) {
    let orders = dir.join("orders.json");
    fs::write(
        &orders,
        format!(
            r#"{{"id": "{ORDER_ID}", "kind": "court_order", "authority": "Tribunale di Roma",
                "reference": "RG 1/2025", "jurisdictions": ["IT"], "action": "nxdomain",
                "state": "active", "targets": [{{"type": "domain", "value": "blocked.test"}}]}}"#
        ),
    )
    .unwrap();
    // Free for TCP too: juris listens on both, and a port only UDP had free failed the start.
    let address = juris_testkit::juris::free_port(std::net::Ipv4Addr::LOCALHOST);
    let config = config(
        dir,
        &format!(
            "[server]\nlisten = [{{ address = \"{address}\", country = \"IT\" }}]\n\
             [policy]\norders = \"{}\"\n{extra}",
            orders.display()
        ),
    );
    let juris = Juris::builder(JURIS)
        .without_listen()
        .args(["--threads", "1", "--api-listen", "none", "--config"])
        .arg(&config)
        .start();
    // Answering (anything) means listening.
    let probe = raw::query("probe.invalid.", RecordType::A, 1, false);
    let started = std::time::Instant::now();
    while raw::udp_exchange(address, &probe, Duration::from_millis(200)).is_none() {
        assert!(
            started.elapsed() < PATIENCE,
            "never answered:\n{}",
            juris.stderr()
        );
    }
    (juris, address)
}

/// The three kinds of answer the telemetry tests look for: a blocked name (NXDOMAIN with
/// EDE, the order), a miss (SERVFAIL after resolution), a query answered at once (RD=0).
fn ask_three(address: std::net::SocketAddr, tag: &str) {
    let blocked = raw::query("blocked.test.", RecordType::A, 0x0b0b, true);
    let answer = raw::udp_exchange(address, &blocked, PATIENCE).expect("an answer");
    assert_eq!(raw::rcode(&answer), Some(3), "blocked.test. not blocked");
    let miss = raw::query(
        &format!("{tag}.miss.invalid."),
        RecordType::A,
        0x0c0c,
        false,
    );
    raw::udp_exchange(address, &miss, PATIENCE).expect("an answer");
    let mut at_once = raw::query(
        &format!("{tag}.norec.invalid."),
        RecordType::TXT,
        0x0d0d,
        false,
    );
    at_once[2] &= !0x01;
    raw::udp_exchange(address, &at_once, PATIENCE).expect("an answer");
}

/// Polls `read` until `done` holds; returns the last read.
fn until<T>(mut read: impl FnMut() -> T, done: impl Fn(&T) -> bool, what: &str) -> T {
    let started = std::time::Instant::now();
    loop {
        let value = read();
        if done(&value) {
            return value;
        }
        assert!(started.elapsed() < PATIENCE, "never got {what}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// `[querylog]`: one JSON line per answered query with time, transport, name, type, RCODE,
/// EDE, the order for a blocked answer, the cache use and the latency; the client address
/// truncated to its /24 as configured, never whole.
#[test]
fn query_log_writes_one_line_per_answer_with_the_order_and_a_truncated_client() {
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("queries.log");
    let (juris, address) = start_pinned(
        dir.path(),
        &format!(
            "[querylog]\nenabled = true\npath = \"{}\"\nclient = \"truncate\"\n",
            log.display()
        ),
    );
    ask_three(address, "ql");
    let lines: Vec<serde_json::Value> = until(
        || {
            fs::read_to_string(&log)
                .unwrap_or_default()
                .lines()
                .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{e}: {l}")))
                .collect::<Vec<serde_json::Value>>()
        },
        |lines| {
            lines
                .iter()
                .filter(|l| l["qname"] != "probe.invalid.")
                .count()
                >= 3
        },
        "three query log lines",
    );
    let find = |qname: &str| {
        lines
            .iter()
            .find(|l| l["qname"] == qname)
            .unwrap_or_else(|| panic!("no line for {qname}: {lines:?}"))
            .clone()
    };
    let blocked = find("blocked.test.");
    assert_eq!(blocked["order"], ORDER_ID, "{blocked}");
    assert_eq!(blocked["rcode"], "NXDOMAIN", "{blocked}");
    assert_eq!(blocked["qtype"], "A", "{blocked}");
    assert_eq!(blocked["transport"], "udp", "{blocked}");
    assert_eq!(blocked["cache"], "none", "{blocked}");
    assert!(!blocked["ede"].as_array().unwrap().is_empty(), "{blocked}");
    assert_eq!(blocked["client"], "127.0.0.0", "{blocked}");
    assert!(
        blocked["time"].as_str().unwrap().ends_with('Z'),
        "{blocked}"
    );
    assert!(blocked["latency_us"].is_u64(), "{blocked}");
    let miss = find("ql.miss.invalid.");
    assert_eq!(miss["cache"], "miss", "{miss}");
    assert_eq!(miss["rcode"], "SERVFAIL", "{miss}");
    assert!(miss.get("order").is_none(), "{miss}");
    let at_once = find("ql.norec.invalid.");
    assert_eq!(at_once["qtype"], "TXT", "{at_once}");
    assert_eq!(at_once["cache"], "none", "{at_once}");
    let text = fs::read_to_string(&log).unwrap();
    assert!(
        !text.contains("127.0.0.1"),
        "a whole client address:\n{text}"
    );
    drop(juris);
}

/// Off by default: the same queries leave no trace of their names anywhere juris writes.
#[test]
fn query_log_is_off_by_default() {
    let dir = tempfile::tempdir().unwrap();
    let (juris, address) = start_pinned(dir.path(), "");
    ask_three(address, "offbydefault");
    juris.stop();
    let stderr = juris.stderr();
    assert!(!stderr.contains("offbydefault"), "{stderr}");
    assert!(!stderr.contains("query log on"), "{stderr}");
}

/// dnstap: CLIENT_QUERY and CLIENT_RESPONSE for every answer (the blocked one naming its
/// order in `extra`), RESOLVER_QUERY for the upstream attempts, over Frame Streams to a Unix
/// socket; when the collector drops the connection juris connects again. Debian's
/// `dnstap-read` (bind9-dnsutils) reads the frames too when it is installed.
#[test]
fn dnstap_sends_client_and_resolver_messages_and_reconnects() {
    use juris_testkit::dnstap;
    let dir = tempfile::tempdir().unwrap();
    let socket = dir.path().join("dnstap.sock");
    let collector = dnstap::listen(&socket).unwrap();
    let (juris, address) = start_pinned(
        dir.path(),
        &format!(
            "[dnstap]\nsocket = \"{}\"\nclient = \"full\"\nidentity = \"juris-test\"\n",
            socket.display()
        ),
    );
    // Connected (the writer connects on its first message): a probe's CLIENT_QUERY arrives.
    until(
        || {
            let probe = raw::query("probe.invalid.", RecordType::A, 2, false);
            raw::udp_exchange(address, &probe, PATIENCE).expect("an answer");
            collector
                .wait_for(Duration::from_millis(300), |m| {
                    m.message_type == 5 && m.name == "probe.invalid."
                })
                .is_some()
        },
        |arrived| *arrived,
        "the first dnstap message",
    );
    ask_three(address, "tap");
    let seen = |kind: u64, name: &str| {
        collector
            .wait_for(PATIENCE, |m| m.message_type == kind && m.name == name)
            .unwrap_or_else(|| {
                panic!(
                    "no message type {kind} for {name}: {:?}\n{}",
                    collector
                        .all()
                        .iter()
                        .map(|m| (m.message_type, m.name.clone()))
                        .collect::<Vec<_>>(),
                    juris.stderr()
                )
            })
    };
    const CLIENT_QUERY: u64 = 5;
    const CLIENT_RESPONSE: u64 = 6;
    const RESOLVER_QUERY: u64 = 3;
    let query = seen(CLIENT_QUERY, "blocked.test.");
    assert_eq!(
        query.client.map(|c| c.ip()),
        Some(address.ip()),
        "{query:?}"
    );
    assert_eq!(query.transport, dnstap::Transport::Udp);
    assert!(query.extra.is_none());
    let response = seen(CLIENT_RESPONSE, "blocked.test.");
    assert_eq!(
        response.extra.as_deref(),
        Some(format!("juris-order={ORDER_ID}").as_bytes()),
        "{response:?}"
    );
    let wire = response.response.clone().expect("a response message");
    assert_eq!(raw::rcode(&wire), Some(3));
    assert_eq!(response.responder, Some(address));
    let miss = seen(CLIENT_RESPONSE, "tap.miss.invalid.");
    assert_eq!(raw::rcode(miss.response.as_ref().unwrap()), Some(2));
    assert!(miss.extra.is_none());
    seen(CLIENT_RESPONSE, "tap.norec.invalid.");
    let upstream = seen(RESOLVER_QUERY, "tap.miss.invalid.");
    assert_eq!(
        upstream.responder,
        Some("127.0.0.1:9".parse().unwrap()),
        "{upstream:?}"
    );

    // An independent reader: dnstap-read, on the frames as an fstrm file.
    if let Some(output) = dnstap_read(dir.path(), &collector.all()) {
        for expected in [
            "CLIENT_QUERY",
            "CLIENT_RESPONSE",
            "RESOLVER_QUERY",
            "blocked.test",
        ] {
            assert!(
                output.contains(expected),
                "dnstap-read: no {expected}:\n{output}"
            );
        }
    }

    // The collector restarts (drops its connections): juris connects again.
    let before = collector.connections_accepted();
    collector.disconnect_all();
    let mut round = 0;
    until(
        || {
            round += 1;
            let name = format!("again{round}.norec.invalid.");
            let mut again = raw::query(&name, RecordType::A, 0x0e0e, false);
            again[2] &= !0x01;
            raw::udp_exchange(address, &again, PATIENCE).expect("an answer");
            collector
                .wait_for(Duration::from_millis(300), |m| m.name == name)
                .is_some()
        },
        |arrived| *arrived,
        "a message after the collector restarted",
    );
    assert!(collector.connections_accepted() > before);
    drop(juris);
}

/// Writes `messages` as an fstrm file (START, frames, STOP) and runs `dnstap-read -y` on it;
/// `None` when dnstap-read is not installed.
fn dnstap_read(
    dir: &std::path::Path,
    messages: &[juris_testkit::dnstap::ReceivedQuery],
) -> Option<String> {
    let path = dir.join("capture.fstrm");
    fs::write(&path, juris_testkit::dnstap::fstrm_file(messages)).unwrap();
    let output = std::process::Command::new("dnstap-read")
        .arg("-y")
        .arg(&path)
        .output()
        .ok()?;
    assert!(output.status.success(), "dnstap-read failed: {output:?}");
    Some(String::from_utf8_lossy(&output.stdout).into_owned())
}

/// `[server.rate_limit] kernel_drop_after`: a client far over its miss rate is dropped in the
/// kernel (it gets nothing more, hits or misses), another client is answered, and `/metrics`
/// shows the listed prefix (design 0050).
#[test]
fn a_flooding_client_is_dropped_in_the_kernel_and_counted() {
    let server = start_with_api(
        "[server.rate_limit]\nmisses_per_second = 3\nmisses_slip = 0\nipv4_prefix_len = 32\n\
         kernel_drop_after = 5\nkernel_drop_seconds = 600\n",
    );
    let to = server.juris.address();
    let flooder = std::net::UdpSocket::bind("127.0.0.21:0").unwrap();
    for i in 0..30u16 {
        let query = raw::query(&format!("nx-{i}.example.invalid."), RecordType::A, i, false);
        flooder.send_to(&query, to).unwrap();
    }
    let metrics =
        server.metrics_until(|text| sample(text, "juris_kernel_drop_prefixes") == Some(1.0));
    assert_eq!(
        sample(&metrics, "juris_kernel_drop_total{event=\"added\"}"),
        Some(1.0)
    );
    assert!(
        server.juris.stderr().contains("127.0.0.21/32"),
        "the listing is logged:\n{}",
        server.juris.stderr()
    );
    // From here on nothing from the flooder reaches juris, not even a query no user-space
    // limit applies to (class CH: REFUSED at once, and only misses are limited here). Answers
    // to its first, resolved misses (ids 0..30) may still come.
    let chaos = |id: u16| {
        let mut query = raw::query("example.invalid.", RecordType::A, id, false);
        let class = query.len() - 1;
        query[class] = 3;
        query
    };
    flooder.send_to(&chaos(0x4242), to).unwrap();
    flooder
        .set_read_timeout(Some(Duration::from_secs(3)))
        .unwrap();
    let mut buf = [0u8; 2048];
    while let Ok((n, _)) = flooder.recv_from(&mut buf) {
        assert!(
            n < 2 || buf[..2] != [0x42, 0x42],
            "the listed client got an answer"
        );
    }
    let other = chaos(0x4343);
    let other_client = std::net::UdpSocket::bind("127.0.0.22:0").unwrap();
    other_client.set_read_timeout(Some(PATIENCE)).unwrap();
    other_client.send_to(&other, to).unwrap();
    let (n, _) = other_client
        .recv_from(&mut buf)
        .expect("another client is answered");
    assert!(
        n >= 4 && buf[..2] == [0x43, 0x43] && buf[3] & 0x0f == 5,
        "REFUSED"
    );
}
