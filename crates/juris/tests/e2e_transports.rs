//! End-to-end: the same order enforced identically over UDP, TCP, DoT, DoH and DoQ for the
//! same client address. `juris serve` recurses through real NSD servers on loopback; the
//! certificate comes from `juris cert self-signed --name localhost`; clients are independent
//! programs bound to client addresses that an MMDB written here places in Italy or Germany:
//! `dig` (UDP, TCP), `kdig +tls`, `kdig +https`, `curl --http2` (POST), and dnspython with
//! aioquic for DoQ (skipped loudly when not installed: `pip install dnspython aioquic`).
//!
//! Needs `nsd`, `dig`, `kdig`, `curl` and root, like `e2e_policy.rs`.
#![allow(clippy::unwrap_used, clippy::expect_used, reason = "test code")]

use std::fs;
use std::io::Write;
use std::net::{IpAddr, SocketAddr, TcpStream};
use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use hickory_proto::op::{Message, ResponseCode};
use hickory_proto::rr::rdata::opt::{EdnsCode, EdnsOption};
use hickory_proto::rr::RData;
use juris_testkit::addresses::AddressBlock;
use juris_testkit::dig::{Lookup, Response};
use juris_testkit::hierarchy::{Hierarchy, Zone};
use juris_testkit::juris::Juris;
use juris_testkit::world::CountryWorld;

const JURIS: &str = env!("CARGO_BIN_EXE_juris");

fn world() -> Hierarchy {
    Hierarchy::builder()
        .zone(Zone::new("test."))
        .zone(Zone::new("kickasstorrents.test.").records("@ A 192.0.2.10\nwww A 192.0.2.10"))
        .zone(Zone::new("innocent.test.").records("www A 192.0.2.40"))
        .start()
}

const ORDER: &str = r#"{"id": "IT-T-1", "kind": "court_order", "authority": "Tribunale di Milano",
    "reference": "RG 12345/2024", "jurisdictions": ["IT"], "action": "nxdomain",
    "state": "active", "targets": [{"type": "subtree", "value": "kickasstorrents.test"}]}"#;

/// What a client got, whatever the transport.
#[derive(Debug, PartialEq, Eq)]
struct Outcome {
    rcode: String,
    addresses: Vec<String>,
    ede: Vec<u16>,
}

impl Outcome {
    fn from_dig(response: &Response) -> Self {
        Self {
            rcode: response.status.clone(),
            addresses: response.answer_data("A"),
            ede: response.extended_errors.iter().map(|e| e.code).collect(),
        }
    }

    fn from_wire(bytes: &[u8]) -> Self {
        let message = Message::from_vec(bytes).unwrap();
        let ede = message
            .extensions()
            .as_ref()
            .and_then(|edns| match edns.options().get(EdnsCode::Unknown(15)) {
                Some(EdnsOption::Unknown(15, data)) if data.len() >= 2 => {
                    Some(u16::from_be_bytes([data[0], data[1]]))
                }
                _ => None,
            })
            .into_iter()
            .collect();
        let rcode = match message.response_code() {
            ResponseCode::NoError => "NOERROR".to_owned(),
            ResponseCode::NXDomain => "NXDOMAIN".to_owned(),
            other => format!("{other:?}"),
        };
        Self {
            rcode,
            addresses: message
                .answers()
                .iter()
                .filter_map(|r| match r.data() {
                    RData::A(a) => Some(a.0.to_string()),
                    _ => None,
                })
                .collect(),
            ede,
        }
    }

    fn blocked() -> Self {
        Self {
            rcode: "NXDOMAIN".into(),
            addresses: Vec::new(),
            ede: vec![16],
        }
    }

    fn resolved(address: &str) -> Self {
        Self {
            rcode: "NOERROR".into(),
            addresses: vec![address.into()],
            ede: Vec::new(),
        }
    }
}

struct Setup {
    _hierarchy: Hierarchy,
    juris: Juris,
    world: CountryWorld,
    _server_block: AddressBlock,
    dot: SocketAddr,
    doh: SocketAddr,
    doq: SocketAddr,
}

fn setup() -> Setup {
    let hierarchy = world();
    let world = CountryWorld::new(ORDER);
    let server_block = AddressBlock::allocate();
    let (directory, orders, mmdb) = (&world.directory, &world.orders, &world.mmdb);
    // The newcomer's way to a certificate.
    let output = Command::new(JURIS)
        .args(["cert", "self-signed", "--name", "localhost"])
        .current_dir(directory.path())
        .output()
        .unwrap();
    assert!(output.status.success(), "{output:?}");
    assert!(directory.path().join("cert.pem").exists());
    assert!(directory.path().join("key.pem").exists());

    // The server's own loopback address, so the standard ports are free.
    let ip = IpAddr::V4(server_block.address(1));
    let (dot, doh, doq) = (
        SocketAddr::new(ip, 853),
        SocketAddr::new(ip, 443),
        SocketAddr::new(ip, 853),
    );
    let juris = Juris::builder(JURIS)
        .root_hints(hierarchy.root_hints())
        .args(["--threads", "2"])
        .arg("--geoip")
        .arg(&mmdb)
        .arg("--orders")
        .arg(&orders)
        .arg("--tls-cert")
        .arg(directory.path().join("cert.pem"))
        .arg("--tls-key")
        .arg(directory.path().join("key.pem"))
        .args(["--listen-tls", &dot.to_string()])
        .args(["--listen-https", &doh.to_string()])
        .args(["--listen-quic", &doq.to_string()])
        .start();
    // The encrypted listeners start right after UDP/TCP.
    let deadline = Instant::now() + Duration::from_secs(10);
    while TcpStream::connect(dot).is_err() || TcpStream::connect(doh).is_err() {
        assert!(
            Instant::now() < deadline,
            "no encrypted listeners: {}",
            juris.stderr()
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    Setup {
        _hierarchy: hierarchy,
        juris,
        world,
        _server_block: server_block,
        dot,
        doh,
        doq,
    }
}

fn lookup(lookup: Lookup) -> Outcome {
    let response = lookup
        .timeout_seconds(5)
        .run()
        .unwrap_or_else(|failure| panic!("{failure}"));
    Outcome::from_dig(&response)
}

fn curl_post(setup: &Setup, client: IpAddr, name: &str) -> Outcome {
    let query = query_bytes(name);
    let file = setup
        .world
        .directory
        .path()
        .join(format!("q-{client}-{name}"));
    fs::write(&file, query).unwrap();
    let body = setup
        .world
        .directory
        .path()
        .join(format!("a-{client}-{name}"));
    let output = Command::new("curl")
        .args(["-sS", "--http2", "--max-time", "10", "--interface"])
        .arg(client.to_string())
        .arg("--cacert")
        .arg(setup.world.directory.path().join("cert.pem"))
        .args([
            "-H",
            "content-type: application/dns-message",
            "--data-binary",
        ])
        .arg(format!("@{}", file.display()))
        .arg("-o")
        .arg(&body)
        .arg(format!("https://127.0.0.1:{}/dns-query", setup.doh.port()))
        .arg("--resolve")
        .arg(format!("127.0.0.1:{}:{}", setup.doh.port(), setup.doh.ip()))
        .output()
        .unwrap();
    assert!(output.status.success(), "curl: {output:?}");
    Outcome::from_wire(&fs::read(&body).unwrap())
}

/// An A query with EDNS, ID 0 (RFC 8484 §4.1).
fn query_bytes(name: &str) -> Vec<u8> {
    let mut m = vec![0, 0, 0x01, 0x00, 0, 1, 0, 0, 0, 0, 0, 1];
    for label in name.trim_end_matches('.').split('.') {
        m.push(label.len() as u8);
        m.extend_from_slice(label.as_bytes());
    }
    m.extend_from_slice(&[0, 0, 1, 0, 1, 0, 0, 41, 0x04, 0xD0, 0, 0, 0, 0, 0, 0]);
    m
}

const DOQ_CLIENT: &str = r#"
import sys
import dns.edns, dns.message, dns.query, dns.rcode
server, port, source, name, cafile = sys.argv[1], int(sys.argv[2]), sys.argv[3], sys.argv[4], sys.argv[5]
query = dns.message.make_query(name, "A", use_edns=0)
response = dns.query.quic(query, server, port=port, source=source, timeout=10,
                          verify=cafile, server_hostname="localhost")
sys.stdout.buffer.write(response.to_wire())
"#;

fn doq_available() -> bool {
    let ok = Command::new("python3")
        .args(["-c", "import dns.quic, aioquic"])
        .output()
        .is_ok_and(|o| o.status.success());
    if !ok {
        let _ = writeln!(
            std::io::stderr(),
            "\n!!!!!!!! SKIPPED DoQ: needs dnspython with aioquic: `pip install dnspython aioquic` !!!!!!!!\n"
        );
    }
    ok
}

fn doq(setup: &Setup, client: IpAddr, name: &str, cert: &Path) -> Outcome {
    let output = Command::new("timeout")
        .arg("30")
        .args(["python3", "-c", DOQ_CLIENT])
        .arg(setup.doq.ip().to_string())
        .arg(setup.doq.port().to_string())
        .arg(client.to_string())
        .arg(name)
        .arg(cert)
        .output()
        .unwrap();
    assert!(
        output.status.success(),
        "DoQ client: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    Outcome::from_wire(&output.stdout)
}

#[test]
fn the_same_order_is_enforced_identically_on_every_transport() {
    let s = setup();
    let italy = IpAddr::V4(s.world.clients.address(101));
    let germany = IpAddr::V4(s.world.clients.address(102));
    let python = doq_available();
    let cert = s.world.directory.path().join("cert.pem");
    let udp = s.juris.address();
    for (name, client, expected) in [
        ("www.kickasstorrents.test", italy, Outcome::blocked()),
        (
            "www.kickasstorrents.test",
            germany,
            Outcome::resolved("192.0.2.10"),
        ),
        ("www.innocent.test", italy, Outcome::resolved("192.0.2.40")),
        (
            "www.innocent.test",
            germany,
            Outcome::resolved("192.0.2.40"),
        ),
    ] {
        let mut got = vec![
            ("UDP", lookup(Lookup::dig(udp, name, "A").source(client))),
            (
                "TCP",
                lookup(Lookup::dig(udp, name, "A").source(client).tcp()),
            ),
            (
                "DoT",
                lookup(Lookup::kdig(s.dot, name, "A").source(client).arg("+tls")),
            ),
            (
                "DoH (kdig)",
                lookup(Lookup::kdig(s.doh, name, "A").source(client).arg("+https")),
            ),
            ("DoH (curl)", curl_post(&s, client, name)),
        ];
        if python {
            got.push(("DoQ", doq(&s, client, name, &cert)));
        }
        for (transport, outcome) in got {
            assert_eq!(
                outcome,
                expected,
                "{name} from {client} over {transport}\n{}",
                s.juris.stderr()
            );
        }
    }
    let stderr = s.juris.stderr();
    assert!(stderr.contains("DoT"), "listening lines: {stderr}");
}

#[test]
fn sighup_with_a_broken_certificate_keeps_serving_the_old_one() {
    let s = setup();
    fs::write(s.world.directory.path().join("key.pem"), "broken").unwrap();
    let pid = s.juris_pid();
    let status = Command::new("kill").args(["-HUP", &pid]).status().unwrap();
    assert!(status.success());
    let deadline = Instant::now() + Duration::from_secs(10);
    while !s.juris.stderr().contains("TLS certificate NOT reloaded") {
        assert!(Instant::now() < deadline, "{}", s.juris.stderr());
        std::thread::sleep(Duration::from_millis(50));
    }
    assert!(s.juris.stderr().contains("key.pem"), "{}", s.juris.stderr());
    let germany = IpAddr::V4(s.world.clients.address(102));
    assert_eq!(
        curl_post(&s, germany, "www.innocent.test"),
        Outcome::resolved("192.0.2.40")
    );
}

impl Setup {
    /// The server's process id: the one `juris serve` with our DoT address (unique: the
    /// address is in a block this test owns).
    fn juris_pid(&self) -> String {
        let output = Command::new("pgrep")
            .args(["-f", &format!("listen-tls {}", self.dot)])
            .output()
            .unwrap();
        let text = String::from_utf8_lossy(&output.stdout);
        text.lines().next().expect("juris pid").trim().to_owned()
    }
}
