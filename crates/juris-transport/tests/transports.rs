//! The encrypted listeners against real, independent clients: `kdig +tls`, `kdig +https`,
//! `dig +https`, `curl --http2` (GET and POST) and dnspython + aioquic for DoQ; plus Rust
//! clients (rustls, quinn) for what those tools cannot do (pipelining order, protocol errors,
//! slow clients, certificate reload).
//!
//! Every server here answers from a pre-filled cache; a miss goes to a loopback upstream that
//! never answers, so it fails (SERVFAIL) after the query timeout. Clients are placed by a test
//! MMDB: 127.0.0.101 is in Italy, 127.0.0.102 in Germany; the order `IT-1` blocks
//! `blocked.test` in Italy only.
#![allow(clippy::unwrap_used, clippy::expect_used, reason = "test code")]

use std::io::Write;
use std::net::{SocketAddr, UdpSocket};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Arc;
use std::time::{Duration, Instant};

use base64::Engine as _;
use hickory_proto::op::{Message, ResponseCode};
use hickory_proto::rr::rdata::opt::{EdnsCode, EdnsOption};
use hickory_proto::rr::RData;
use juris_geo::{Classifier, GeoConfig};
use juris_policy::{CompileOptions, CompiledPolicy, Order, ValidationOptions};
use juris_resolver::cache::{AnswerCache, CacheConfig, CacheKeyRef, CachedAnswer};
use juris_resolver::clock::{ManualClock, SharedClock};
use juris_resolver::{Mode, Resolver, ResolverConfig};
use juris_server::{ListenerConfig, Pipeline, PolicyEngine, PolicyHandle, ServerConfig};
use juris_testkit::mmdb::{MmdbWriter, Shape};
use juris_transport::cert::self_signed;
use juris_transport::{
    start, EncryptedListener, EncryptedServer, Limits, Protocol, TlsFiles, TransportConfig,
};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

const NOW: u64 = 1_700_000_000;
const ITALY: &str = "127.0.0.101";
const GERMANY: &str = "127.0.0.102";
/// `www.example.com.` A 10.0.0.1, TTL 300, cached.
const WWW: &[u8] = b"\x03www\x07example\x03com\x00";
/// `www.blocked.test.` A 10.9.9.9, TTL 300, cached; blocked in Italy by `IT-1`.
const BLOCKED: &[u8] = b"\x03www\x07blocked\x04test\x00";
/// `slow.example.com.`: not cached, resolution times out.
const SLOW: &[u8] = b"\x04slow\x07example\x03com\x00";

// ---------------------------------------------------------------------------------------------
// Harness
// ---------------------------------------------------------------------------------------------

struct Harness {
    server: Option<EncryptedServer>,
    pipeline: Arc<Pipeline>,
    runtime: Option<tokio::runtime::Runtime>,
    dot: SocketAddr,
    doh: SocketAddr,
    doq: SocketAddr,
    directory: tempfile::TempDir,
    _silent_upstream: UdpSocket,
}

impl Harness {
    fn start(configure: impl FnOnce(&mut TransportConfig)) -> Self {
        Self::start_with_proxies(&[], configure)
    }

    /// With `[server] proxy_protocol_from` set to `proxy_protocol_from`.
    fn start_with_proxies(
        proxy_protocol_from: &[&str],
        configure: impl FnOnce(&mut TransportConfig),
    ) -> Self {
        let directory = tempfile::tempdir().unwrap();
        let pair = self_signed("localhost").unwrap();
        let tls = TlsFiles {
            cert: directory.path().join("cert.pem"),
            key: directory.path().join("key.pem"),
        };
        std::fs::write(&tls.cert, &pair.cert_pem).unwrap();
        std::fs::write(&tls.key, &pair.key_pem).unwrap();
        let mmdb = directory.path().join("countries.mmdb");
        MmdbWriter::new(Shape::CountryCode)
            .insert(format!("{ITALY}/32").parse().unwrap(), "IT")
            .insert(format!("{GERMANY}/32").parse().unwrap(), "DE")
            .write_to(&mmdb)
            .unwrap();
        let silent = UdpSocket::bind("127.0.0.1:0").unwrap();
        let proxies = proxy_protocol_from
            .iter()
            .map(|p| p.parse().unwrap())
            .collect();
        let pipeline = Arc::new(pipeline(&mmdb, silent.local_addr().unwrap(), proxies));

        let any: SocketAddr = "127.0.0.1:0".parse().unwrap();
        let mut config = TransportConfig {
            listeners: vec![
                EncryptedListener::new(Protocol::Tls, any),
                EncryptedListener::new(Protocol::Https, any),
                EncryptedListener::new(Protocol::Quic, any),
            ],
            tls,
            limits: Limits::default(),
            trusted_proxies: Vec::new(),
        };
        configure(&mut config);
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .unwrap();
        let server = start(&config, Arc::clone(&pipeline), runtime.handle()).unwrap();
        let find = |protocol| {
            server
                .listeners()
                .iter()
                .find(|l| l.protocol == protocol)
                .map(|l| l.addr)
                .unwrap()
        };
        let (dot, doh, doq) = (
            find(Protocol::Tls),
            find(Protocol::Https),
            find(Protocol::Quic),
        );
        assert_ne!(dot.port(), 0);
        Self {
            server: Some(server),
            pipeline,
            runtime: Some(runtime),
            dot,
            doh,
            doq,
            directory,
            _silent_upstream: silent,
        }
    }

    fn server(&self) -> &EncryptedServer {
        self.server.as_ref().unwrap()
    }

    fn cert(&self) -> PathBuf {
        self.directory.path().join("cert.pem")
    }

    fn block_on<F: std::future::Future>(&self, future: F) -> F::Output {
        self.runtime.as_ref().unwrap().block_on(future)
    }
}

impl Drop for Harness {
    fn drop(&mut self) {
        if let Some(server) = self.server.take() {
            server.shutdown();
        }
        if let Some(runtime) = self.runtime.take() {
            runtime.shutdown_timeout(Duration::from_secs(2));
        }
    }
}

fn order_it_1() -> CompiledPolicy {
    let json = r#"{"id": "IT-1", "kind": "court_order", "authority": "Tribunale di Milano",
        "reference": "RG 12345/2024", "jurisdictions": ["IT"], "state": "active",
        "action": "nxdomain", "targets": [{"type": "subtree", "value": "blocked.test"}]}"#;
    let order = Order::from_json(json.as_bytes())
        .unwrap()
        .validate(&ValidationOptions::default())
        .unwrap();
    CompiledPolicy::compile(&[order], &CompileOptions { generation: 1 }).unwrap()
}

/// A pipeline as `juris-server`'s tests build one: pre-filled cache, GeoIP from `mmdb`, the
/// order IT-1, and an upstream that never answers.
fn pipeline(mmdb: &Path, upstream: SocketAddr, proxy_protocol_from: Vec<ipnet::IpNet>) -> Pipeline {
    let clock: SharedClock = Arc::new(ManualClock::new(NOW));
    let cache = Arc::new(AnswerCache::new(CacheConfig::default()));
    for (name, address) in [(WWW, [10, 0, 0, 1]), (BLOCKED, [10, 9, 9, 9])] {
        let entry =
            CachedAnswer::from_message(&a_response(name, address), NOW, cache.config()).unwrap();
        let key = CacheKeyRef {
            name,
            qtype: 1,
            qclass: 1,
            dnssec_ok: false,
        };
        assert!(cache.insert(key.to_owned_key(), Arc::new(entry)));
    }
    let resolver = Resolver::new(
        ResolverConfig {
            mode: Mode::Forward {
                upstreams: vec![upstream],
            },
            allow_loopback_upstreams: true,
            query_timeout: Duration::from_millis(400),
            resolution_deadline: Duration::from_millis(900),
            // The fake upstream signs nothing and the built-in root anchor cannot apply.
            dnssec: juris_resolver::dnssec::ValidatorConfig {
                enabled: false,
                ..Default::default()
            },
            ..ResolverConfig::default()
        },
        cache,
        Arc::clone(&clock),
    )
    .unwrap();
    let config = ServerConfig {
        listeners: vec![ListenerConfig::udp_and_tcp("127.0.0.1:0".parse().unwrap())],
        proxy_protocol_from,
        ..ServerConfig::default()
    };
    let engine = PolicyEngine::new(
        Arc::new(PolicyHandle::new(order_it_1())),
        Arc::new(
            Classifier::new(&GeoConfig {
                mmdb: Some(mmdb.to_owned()),
                ..GeoConfig::default()
            })
            .unwrap(),
        ),
    );
    Pipeline::new(&config, resolver, clock, engine).unwrap()
}

/// NOERROR, one A record, TTL 300.
fn a_response(name: &[u8], address: [u8; 4]) -> Vec<u8> {
    let mut m = vec![0, 0, 0x81, 0x80, 0, 1, 0, 1, 0, 0, 0, 0];
    m.extend_from_slice(name);
    m.extend_from_slice(&[0, 1, 0, 1, 0xC0, 12, 0, 1, 0, 1, 0, 0, 1, 44, 0, 4]);
    m.extend_from_slice(&address);
    m
}

/// An A query with EDNS (payload 1232).
fn query(id: u16, name: &[u8]) -> Vec<u8> {
    let mut m = Vec::new();
    m.extend_from_slice(&id.to_be_bytes());
    m.extend_from_slice(&[0x01, 0x00, 0, 1, 0, 0, 0, 0, 0, 1]);
    m.extend_from_slice(name);
    m.extend_from_slice(&[0, 1, 0, 1]);
    m.extend_from_slice(&[0, 0, 41, 0x04, 0xD0, 0, 0, 0, 0, 0, 0]);
    m
}

fn ede_of(message: &Message) -> Option<u16> {
    let edns = message.extensions().as_ref()?;
    match edns.options().get(EdnsCode::Unknown(15))? {
        EdnsOption::Unknown(15, data) if data.len() >= 2 => {
            Some(u16::from_be_bytes([data[0], data[1]]))
        }
        _ => None,
    }
}

fn first_a(message: &Message) -> Option<String> {
    message.answers().iter().find_map(|r| match r.data() {
        RData::A(a) => Some(a.0.to_string()),
        _ => None,
    })
}

/// Asserts the answer Italy gets for `www.blocked.test` (NXDOMAIN, EDE 16) or everyone else
/// (the cached address).
fn assert_blocked(message: &Message, blocked: bool, via: &str) {
    if blocked {
        assert_eq!(
            message.response_code(),
            ResponseCode::NXDomain,
            "{via}: {message:?}"
        );
        assert_eq!(ede_of(message), Some(16), "{via}: {message:?}");
        assert!(message.answers().is_empty(), "{via}");
    } else {
        assert_eq!(
            message.response_code(),
            ResponseCode::NoError,
            "{via}: {message:?}"
        );
        assert_eq!(first_a(message).as_deref(), Some("10.9.9.9"), "{via}");
        assert_eq!(ede_of(message), None, "{via}");
    }
}

/// Runs a client program (bounded by `timeout`); stdout, with stderr in the panic message.
fn run(program: &str, args: &[String]) -> String {
    let output = Command::new("timeout")
        .arg("30")
        .arg(program)
        .args(args)
        .output()
        .unwrap_or_else(|e| panic!("cannot run {program}: {e}"));
    let stdout = String::from_utf8_lossy(&output.stdout).into_owned();
    assert!(
        output.status.success(),
        "{program} {args:?} failed: {}\nstdout: {stdout}\nstderr: {}",
        output.status,
        String::from_utf8_lossy(&output.stderr)
    );
    stdout
}

fn strings(args: &[&str]) -> Vec<String> {
    args.iter().map(|s| s.to_string()).collect()
}

/// The `status:` of a dig/kdig header line.
fn dig_status(output: &str) -> &str {
    output
        .split("->>HEADER<<-")
        .nth(1)
        .and_then(|header| header.split("status: ").nth(1))
        .and_then(|rest| rest.split([',', ';']).next())
        .unwrap_or_else(|| panic!("no status in: {output}"))
}

// ---------------------------------------------------------------------------------------------
// Rust clients
// ---------------------------------------------------------------------------------------------

fn client_tls(cert_pem: &[u8], alpn: &[&[u8]]) -> Arc<rustls::ClientConfig> {
    use rustls_pki_types::pem::PemObject;
    let mut roots = rustls::RootCertStore::empty();
    for cert in rustls_pki_types::CertificateDer::pem_slice_iter(cert_pem) {
        roots.add(cert.unwrap()).unwrap();
    }
    let mut config = rustls::ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .unwrap()
    .with_root_certificates(roots)
    .with_no_client_auth();
    config.alpn_protocols = alpn.iter().map(|p| p.to_vec()).collect();
    Arc::new(config)
}

async fn tls_connect(
    addr: SocketAddr,
    config: Arc<rustls::ClientConfig>,
) -> std::io::Result<tokio_rustls::client::TlsStream<tokio::net::TcpStream>> {
    let stream = tokio::net::TcpStream::connect(addr).await?;
    let name = rustls_pki_types::ServerName::try_from("localhost").unwrap();
    tokio_rustls::TlsConnector::from(config)
        .connect(name, stream)
        .await
}

async fn read_frame<S: tokio::io::AsyncRead + Unpin>(stream: &mut S) -> Message {
    let mut len = [0u8; 2];
    stream.read_exact(&mut len).await.unwrap();
    let mut message = vec![0u8; usize::from(u16::from_be_bytes(len))];
    stream.read_exact(&mut message).await.unwrap();
    Message::from_vec(&message).unwrap()
}

fn frame(message: &[u8]) -> Vec<u8> {
    let mut f = (message.len() as u16).to_be_bytes().to_vec();
    f.extend_from_slice(message);
    f
}

/// Whether the server closes `stream` (EOF or error) within `limit`.
async fn closed_within<S: tokio::io::AsyncRead + Unpin>(stream: &mut S, limit: Duration) -> bool {
    let mut buf = [0u8; 64];
    loop {
        match tokio::time::timeout(limit, stream.read(&mut buf)).await {
            Err(_) => return false,
            Ok(Ok(0)) | Ok(Err(_)) => return true,
            Ok(Ok(_)) => continue,
        }
    }
}

// ---------------------------------------------------------------------------------------------
// DoT
// ---------------------------------------------------------------------------------------------

#[test]
fn kdig_over_tls_resolves_and_enforces_the_order_by_client_address() {
    let h = Harness::start(|_| {});
    let port = h.dot.port().to_string();
    let kdig = |source: &str, name: &str, extra: &[&str]| {
        let mut args = strings(&["@127.0.0.1", "-p", &port, "-b", source, "+tls"]);
        args.extend(strings(extra));
        args.extend(strings(&["+timeout=5", "+retry=0", name, "A"]));
        run("kdig", &args)
    };
    let out = kdig(ITALY, "www.example.com", &[]);
    assert_eq!(dig_status(&out), "NOERROR", "{out}");
    assert!(out.contains("10.0.0.1"), "{out}");
    // Verified against our certificate too (Out-Of-Band profile).
    let cert = h.cert().display().to_string();
    let out = kdig(
        GERMANY,
        "www.example.com",
        &[&format!("+tls-ca={cert}"), "+tls-hostname=localhost"],
    );
    assert_eq!(dig_status(&out), "NOERROR", "{out}");

    let out = kdig(ITALY, "www.blocked.test", &[]);
    assert_eq!(dig_status(&out), "NXDOMAIN", "{out}");
    assert!(out.contains("EDE: 16"), "{out}");
    let out = kdig(GERMANY, "www.blocked.test", &[]);
    assert_eq!(dig_status(&out), "NOERROR", "{out}");
    assert!(out.contains("10.9.9.9"), "{out}");
    assert!(h.server().stats().dot.connections >= 4);
}

#[test]
fn dot_pipelined_queries_are_answered_out_of_order() {
    let h = Harness::start(|_| {});
    let pem = std::fs::read(h.cert()).unwrap();
    h.block_on(async {
        let mut stream = tls_connect(h.dot, client_tls(&pem, &[b"dot"]))
            .await
            .unwrap();
        assert_eq!(stream.get_ref().1.alpn_protocol(), Some(&b"dot"[..]));
        // A miss first, then two hits, in one write.
        let mut bytes = frame(&query(1, SLOW));
        bytes.extend(frame(&query(2, WWW)));
        bytes.extend(frame(&query(3, BLOCKED)));
        stream.write_all(&bytes).await.unwrap();
        let mut order = Vec::new();
        for _ in 0..3 {
            let message = read_frame(&mut stream).await;
            order.push(message.id());
            match message.id() {
                1 => assert_eq!(message.response_code(), ResponseCode::ServFail),
                2 => assert_eq!(first_a(&message).as_deref(), Some("10.0.0.1")),
                3 => assert_blocked(&message, false, "DoT from 127.0.0.1"),
                other => panic!("unexpected ID {other}"),
            }
        }
        assert_eq!(order, vec![2, 3, 1], "the hits overtake the miss");
    });
}

#[test]
fn slow_tls_clients_are_closed() {
    let h = Harness::start(|config| {
        config.limits.handshake_timeout = Duration::from_millis(500);
        config.limits.idle_timeout = Duration::from_millis(800);
        config.limits.request_timeout = Duration::from_millis(800);
    });
    let pem = std::fs::read(h.cert()).unwrap();
    h.block_on(async {
        for addr in [h.dot, h.doh] {
            // TCP open, no ClientHello: closed after the handshake timeout.
            let started = Instant::now();
            let mut raw = tokio::net::TcpStream::connect(addr).await.unwrap();
            assert!(
                closed_within(&mut raw, Duration::from_secs(5)).await,
                "{addr}"
            );
            assert!(started.elapsed() >= Duration::from_millis(400), "{addr}");

            // TLS done, nothing sent: closed after the idle timeout.
            let alpn: &[u8] = if addr == h.dot { b"dot" } else { b"h2" };
            let started = Instant::now();
            let mut tls = tls_connect(addr, client_tls(&pem, &[alpn])).await.unwrap();
            assert!(
                closed_within(&mut tls, Duration::from_secs(5)).await,
                "{addr}"
            );
            assert!(started.elapsed() >= Duration::from_millis(600), "{addr}");
        }
        // DoT: a frame begun but never finished is not an idle connection, but it is closed
        // after the request timeout all the same.
        let mut tls = tls_connect(h.dot, client_tls(&pem, &[b"dot"]))
            .await
            .unwrap();
        tls.write_all(&[0, 40, 0x12]).await.unwrap();
        tls.flush().await.unwrap();
        assert!(closed_within(&mut tls, Duration::from_secs(5)).await);
        // An oversized length prefix closes at once.
        let mut tls = tls_connect(h.dot, client_tls(&pem, &[b"dot"]))
            .await
            .unwrap();
        tls.write_all(&[0xFF, 0xFF]).await.unwrap();
        tls.flush().await.unwrap();
        assert!(closed_within(&mut tls, Duration::from_secs(2)).await);
    });
    let stats = h.server().stats();
    assert!(stats.dot.handshake_failures >= 1, "{stats:?}");
    assert!(stats.dot.idle_closed >= 2, "{stats:?}");
    assert!(stats.doh.handshake_failures >= 1, "{stats:?}");
    assert!(stats.doh.idle_closed >= 1, "{stats:?}");
    assert!(stats.dot.bad_requests >= 1, "{stats:?}");
}

#[test]
fn connections_beyond_the_limit_are_closed() {
    let h = Harness::start(|config| config.limits.max_connections = 2);
    let pem = std::fs::read(h.cert()).unwrap();
    h.block_on(async {
        let config = client_tls(&pem, &[b"dot"]);
        let mut first = tls_connect(h.dot, Arc::clone(&config)).await.unwrap();
        let _second = tls_connect(h.dot, Arc::clone(&config)).await.unwrap();
        let third = tls_connect(h.dot, Arc::clone(&config)).await;
        assert!(third.is_err(), "the third connection must be refused");
        first.write_all(&frame(&query(9, WWW))).await.unwrap();
        assert_eq!(
            read_frame(&mut first).await.id(),
            9,
            "the others still work"
        );
    });
    assert_eq!(h.server().stats().dot.rejected, 1);
}

#[test]
fn certificate_reload_takes_effect_and_a_failed_one_keeps_the_old() {
    let h = Harness::start(|_| {});
    let old = std::fs::read(h.cert()).unwrap();
    let new = self_signed("localhost").unwrap();
    std::fs::write(h.cert(), &new.cert_pem).unwrap();
    std::fs::write(h.directory.path().join("key.pem"), &new.key_pem).unwrap();
    h.server().reload_certificates().unwrap();
    h.block_on(async {
        assert!(tls_connect(h.dot, client_tls(&old, &[b"dot"]))
            .await
            .is_err());
        assert!(
            tls_connect(h.dot, client_tls(new.cert_pem.as_bytes(), &[b"dot"]))
                .await
                .is_ok()
        );
    });
    std::fs::write(h.directory.path().join("key.pem"), "garbage").unwrap();
    let error = h.server().reload_certificates().unwrap_err();
    assert!(error.to_string().contains("key.pem"), "{error}");
    h.block_on(async {
        let mut stream = tls_connect(h.doh, client_tls(new.cert_pem.as_bytes(), &[b"h2"]))
            .await
            .expect("the previous certificate is still served");
        stream.shutdown().await.unwrap();
    });
}

// ---------------------------------------------------------------------------------------------
// DoH
// ---------------------------------------------------------------------------------------------

fn doh_url(addr: SocketAddr) -> String {
    format!("https://127.0.0.1:{}/dns-query", addr.port())
}

/// A curl exchange: (HTTP status, HTTP version, headers, body).
fn curl(h: &Harness, args: &[String]) -> (u16, String, String, Vec<u8>) {
    let dir = h.directory.path();
    let body = dir.join(format!("body-{}", rand_suffix()));
    let headers = dir.join(format!("headers-{}", rand_suffix()));
    let mut all = strings(&[
        "-sS",
        "--max-time",
        "10",
        "--cacert",
        &h.cert().display().to_string(),
        "-o",
        &body.display().to_string(),
        "-D",
        &headers.display().to_string(),
        "-w",
        "%{http_code} %{http_version}",
    ]);
    all.extend_from_slice(args);
    let out = run("curl", &all);
    let (status, version) = out.split_once(' ').unwrap();
    (
        status.parse().unwrap(),
        version.to_owned(),
        std::fs::read_to_string(&headers)
            .unwrap_or_default()
            .to_ascii_lowercase(),
        std::fs::read(&body).unwrap_or_default(),
    )
}

fn rand_suffix() -> u64 {
    use std::sync::atomic::{AtomicU64, Ordering};
    static NEXT: AtomicU64 = AtomicU64::new(0);
    NEXT.fetch_add(1, Ordering::Relaxed)
}

fn base64url(message: &[u8]) -> String {
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(message)
}

/// curl GET or POST of `message` from `source`, HTTP/2.
fn curl_dns(
    h: &Harness,
    source: &str,
    message: &[u8],
    post: bool,
    extra: &[&str],
) -> (String, Message) {
    let mut args = strings(&["--http2", "--interface", source]);
    args.extend(strings(extra));
    if post {
        let file = h.directory.path().join(format!("query-{}", rand_suffix()));
        std::fs::write(&file, message).unwrap();
        args.extend(strings(&[
            "-H",
            "content-type: application/dns-message",
            "--data-binary",
            &format!("@{}", file.display()),
            &doh_url(h.doh),
        ]));
    } else {
        args.push(format!("{}?dns={}", doh_url(h.doh), base64url(message)));
    }
    let (status, version, headers, body) = curl(h, &args);
    assert_eq!(status, 200, "{headers}");
    assert_eq!(version, "2", "HTTP/2");
    assert!(
        headers.contains("content-type: application/dns-message"),
        "{headers}"
    );
    (headers, Message::from_vec(&body).unwrap())
}

#[test]
fn curl_get_and_post_over_http2_with_cache_control() {
    let h = Harness::start(|_| {});
    for post in [false, true] {
        let (headers, message) = curl_dns(&h, ITALY, &query(0, WWW), post, &[]);
        assert_eq!(message.id(), 0);
        assert_eq!(first_a(&message).as_deref(), Some("10.0.0.1"));
        assert!(
            headers.contains("cache-control: max-age=300, private"),
            "{headers}"
        );

        let (headers, message) = curl_dns(&h, ITALY, &query(0, BLOCKED), post, &[]);
        assert_blocked(&message, true, "DoH from Italy");
        assert!(headers.contains("cache-control: max-age=0"), "{headers}");
        let (_, message) = curl_dns(&h, GERMANY, &query(0, BLOCKED), post, &[]);
        assert_blocked(&message, false, "DoH from Germany");

        // A non-zero ID is answered as given.
        let (_, message) = curl_dns(&h, GERMANY, &query(0x4242, WWW), post, &[]);
        assert_eq!(message.id(), 0x4242);
        // A miss goes through the resolver: SERVFAIL, not cacheable.
        let (headers, message) = curl_dns(&h, GERMANY, &query(0, SLOW), post, &[]);
        assert_eq!(message.response_code(), ResponseCode::ServFail);
        assert!(headers.contains("cache-control: max-age=0"), "{headers}");
    }
    // HTTP/1.1 is served too.
    let url = format!("{}?dns={}", doh_url(h.doh), base64url(&query(0, WWW)));
    let (status, version, _, body) = curl(&h, &strings(&["--http1.1", &url]));
    assert_eq!((status, version.as_str()), (200, "1.1"));
    assert_eq!(
        first_a(&Message::from_vec(&body).unwrap()).as_deref(),
        Some("10.0.0.1")
    );
}

#[test]
fn curl_gets_proper_http_errors() {
    let h = Harness::start(|_| {});
    let url = doh_url(h.doh);
    let status = |args: &[String]| curl(&h, args).0;
    let good = base64url(&query(0, WWW));
    assert_eq!(
        status(&strings(&[&format!(
            "https://127.0.0.1:{}/other?dns={good}",
            h.doh.port()
        )])),
        404
    );
    assert_eq!(status(&strings(&["-X", "PUT", &url])), 405);
    assert_eq!(status(&strings(&[&url])), 400, "missing dns parameter");
    assert_eq!(
        status(&strings(&[&format!("{url}?dns=***")])),
        400,
        "bad base64"
    );
    assert_eq!(
        status(&strings(&[&format!("{url}?dns=AAAA")])),
        400,
        "too short a message"
    );
    let file = h.directory.path().join("query");
    std::fs::write(&file, query(0, WWW)).unwrap();
    let data = format!("@{}", file.display());
    assert_eq!(
        status(&strings(&[
            "-H",
            "content-type: text/plain",
            "--data-binary",
            &data,
            &url
        ])),
        415
    );
    let big = h.directory.path().join("big");
    std::fs::write(&big, vec![0u8; 5000]).unwrap();
    let big = format!("@{}", big.display());
    assert_eq!(
        status(&strings(&[
            "-H",
            "content-type: application/dns-message",
            "--data-binary",
            &big,
            &url
        ])),
        413
    );
    let huge = base64url(&vec![0u8; 5000]);
    assert_eq!(status(&strings(&[&format!("{url}?dns={huge}")])), 413);
    // A response (QR=1) is not a query: the pipeline drops it, HTTP says 400.
    let mut response = query(0, WWW);
    response[2] |= 0x80;
    assert_eq!(
        status(&strings(&[&format!("{url}?dns={}", base64url(&response))])),
        400
    );
    assert!(h.server().stats().doh.bad_requests >= 8);
}

/// Regression: a POST refused before its body was read (415, 413) made HTTP/2 reset the
/// stream, and curl reported "Stream error in the HTTP/2 framing layer" instead of the status.
#[test]
fn refused_post_bodies_are_drained_so_clients_see_the_status() {
    let h = Harness::start(|_| {});
    let url = doh_url(h.doh);
    let medium = h.directory.path().join("medium");
    std::fs::write(&medium, vec![0u8; 4000]).unwrap();
    let large = h.directory.path().join("large");
    std::fs::write(&large, vec![0u8; 20_000]).unwrap();
    for _ in 0..10 {
        for (content_type, file, expected) in [
            ("text/plain", &medium, 415),
            ("application/dns-message", &large, 413),
        ] {
            let args = strings(&[
                "--http2",
                "-H",
                &format!("content-type: {content_type}"),
                "--data-binary",
                &format!("@{}", file.display()),
                &url,
            ]);
            assert_eq!(curl(&h, &args).0, expected, "{content_type}");
        }
    }
}

#[test]
fn kdig_and_dig_over_https() {
    let h = Harness::start(|_| {});
    let port = h.doh.port().to_string();
    for (program, mode) in [
        ("kdig", "+https"),
        ("kdig", "+https-get"),
        ("dig", "+https"),
        ("dig", "+https-get"),
    ] {
        for (source, blocked) in [(ITALY, true), (GERMANY, false)] {
            let mut args = strings(&["@127.0.0.1", "-p", &port, "-b", source, mode]);
            if program == "kdig" {
                args.extend(strings(&["+timeout=5", "+retry=0"]));
            } else {
                args.extend(strings(&["+time=5", "+tries=1"]));
            }
            args.extend(strings(&["www.blocked.test", "A"]));
            let out = run(program, &args);
            let via = format!("{program} {mode} from {source}");
            if program == "kdig" {
                let method = if mode == "+https-get" { "GET" } else { "POST" };
                assert!(out.contains(&format!("(HTTP/2-{method})")), "{via}: {out}");
            }
            if blocked {
                assert_eq!(dig_status(&out), "NXDOMAIN", "{via}: {out}");
                assert!(out.contains("EDE: 16"), "{via}: {out}");
            } else {
                assert_eq!(dig_status(&out), "NOERROR", "{via}: {out}");
                assert!(out.contains("10.9.9.9"), "{via}: {out}");
            }
        }
    }
}

#[test]
fn forwarded_headers_are_believed_only_from_trusted_proxies() {
    let h = Harness::start(|config| {
        config.trusted_proxies = vec!["127.0.0.1/32".parse().unwrap()];
    });
    let blocked = query(0, BLOCKED);
    // The proxy (127.0.0.1) speaks for an Italian client.
    let (_, message) = curl_dns(
        &h,
        "127.0.0.1",
        &blocked,
        false,
        &["-H", &format!("x-forwarded-for: {ITALY}")],
    );
    assert_blocked(&message, true, "trusted proxy, XFF Italy");
    let (_, message) = curl_dns(
        &h,
        "127.0.0.1",
        &blocked,
        true,
        &["-H", &format!("forwarded: for={ITALY};proto=https")],
    );
    assert_blocked(&message, true, "trusted proxy, Forwarded Italy");
    // The rightmost untrusted hop counts, not a forged left part.
    let (_, message) = curl_dns(
        &h,
        "127.0.0.1",
        &blocked,
        false,
        &["-H", &format!("x-forwarded-for: {ITALY}, {GERMANY}")],
    );
    assert_blocked(&message, false, "trusted proxy, XFF Italy, Germany");
    // A German client cannot claim to be Italian (or anything else).
    let (_, message) = curl_dns(
        &h,
        GERMANY,
        &blocked,
        false,
        &["-H", &format!("x-forwarded-for: {ITALY}")],
    );
    assert_blocked(&message, false, "untrusted peer with XFF");
    assert_eq!(h.server().stats().doh.forwarded_clients, 3);
}

// ---------------------------------------------------------------------------------------------
// PROXY protocol (DoT, DoH)
// ---------------------------------------------------------------------------------------------

/// A PROXY v2 header (stream) naming `client` (built with `ppp`).
fn proxy_v2(client: &str, server: SocketAddr) -> Vec<u8> {
    let client: SocketAddr = format!("{client}:40000").parse().unwrap();
    ppp::v2::Builder::with_addresses(0x21, ppp::v2::Protocol::Stream, (client, server))
        .build()
        .unwrap()
}

/// A TCP connection from `source`, with `prefix` written before anything else.
async fn tcp_with_prefix(source: &str, server: SocketAddr, prefix: &[u8]) -> tokio::net::TcpStream {
    let socket = tokio::net::TcpSocket::new_v4().unwrap();
    socket.bind(format!("{source}:0").parse().unwrap()).unwrap();
    let mut stream = socket.connect(server).await.unwrap();
    stream.write_all(prefix).await.unwrap();
    stream
}

/// TLS over a connection that already carries `prefix` (a PROXY header or nothing).
async fn tls_after(
    source: &str,
    server: SocketAddr,
    prefix: &[u8],
    config: Arc<rustls::ClientConfig>,
) -> std::io::Result<tokio_rustls::client::TlsStream<tokio::net::TcpStream>> {
    let stream = tcp_with_prefix(source, server, prefix).await;
    let name = rustls_pki_types::ServerName::try_from("localhost").unwrap();
    tokio_rustls::TlsConnector::from(config)
        .connect(name, stream)
        .await
}

/// One DoH POST over HTTP/1.1 on `stream`; the DNS answer.
async fn http1_post<S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin>(
    stream: &mut S,
    message: &[u8],
) -> Message {
    let mut request = format!(
        "POST /dns-query HTTP/1.1\r\nHost: localhost\r\nContent-Type: application/dns-message\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
        message.len()
    )
    .into_bytes();
    request.extend_from_slice(message);
    stream.write_all(&request).await.unwrap();
    let mut response = Vec::new();
    let _ = stream.read_to_end(&mut response).await;
    let split = response
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .unwrap_or_else(|| panic!("no HTTP response: {:?}", String::from_utf8_lossy(&response)));
    let head = String::from_utf8_lossy(&response[..split]);
    assert!(head.starts_with("HTTP/1.1 200"), "{head}");
    Message::from_vec(&response[split + 4..]).unwrap()
}

#[test]
fn dot_and_doh_classify_the_client_named_by_a_trusted_proxy_header() {
    // 127.0.0.1 is the load balancer; the clients it speaks for are Italian or German.
    let h = Harness::start_with_proxies(&["127.0.0.1/32"], |_| {});
    let cert = std::fs::read(h.cert()).unwrap();
    h.block_on(async {
        for (client, blocked) in [(ITALY, true), (GERMANY, false)] {
            let header = proxy_v2(client, h.dot);
            let mut tls = tls_after("127.0.0.1", h.dot, &header, client_tls(&cert, &[b"dot"]))
                .await
                .unwrap();
            tls.write_all(&frame(&query(1, BLOCKED))).await.unwrap();
            assert_blocked(
                &read_frame(&mut tls).await,
                blocked,
                &format!("DoT for {client}"),
            );

            let header = proxy_v2(client, h.doh);
            let mut tls = tls_after(
                "127.0.0.1",
                h.doh,
                &header,
                client_tls(&cert, &[b"http/1.1"]),
            )
            .await
            .unwrap();
            let answer = http1_post(&mut tls, &query(0, BLOCKED)).await;
            assert_blocked(&answer, blocked, &format!("DoH for {client}"));
        }
    });
}

#[test]
fn dot_and_doh_refuse_headers_from_others_and_trusted_peers_without_one() {
    let h = Harness::start_with_proxies(&["127.0.0.1/32"], |_| {});
    let cert = std::fs::read(h.cert()).unwrap();
    h.block_on(async {
        for server in [h.dot, h.doh] {
            // The trusted balancer must send a header: plain TLS is closed before the handshake.
            let plain = tls_after(
                "127.0.0.1",
                server,
                b"",
                client_tls(&cert, &[b"dot", b"http/1.1"]),
            )
            .await;
            assert!(
                plain.is_err(),
                "headerless TLS from the trusted peer to {server}"
            );
            // A German client claiming to speak for an Italian one is closed at once.
            let mut claimed = tcp_with_prefix(GERMANY, server, &proxy_v2(ITALY, server)).await;
            assert!(closed_within(&mut claimed, Duration::from_secs(5)).await);
        }
        // The German client without a header is served as itself.
        let mut tls = tls_after(GERMANY, h.dot, b"", client_tls(&cert, &[b"dot"]))
            .await
            .unwrap();
        tls.write_all(&frame(&query(2, BLOCKED))).await.unwrap();
        assert_blocked(&read_frame(&mut tls).await, false, "DoT, German, no header");
    });
    assert_eq!(h.pipeline.async_counters().snapshot().proxy_refused, 4);
}

#[test]
fn curl_haproxy_protocol_v1_is_accepted_only_from_a_trusted_peer() {
    // curl --haproxy-protocol sends a version 1 header naming its own address, so trusting the
    // Italian client's address itself makes curl a real v1 sender whose header is believed.
    let h = Harness::start_with_proxies(&[&format!("{ITALY}/32")], |_| {});
    let (_, message) = curl_dns(&h, ITALY, &query(0, BLOCKED), true, &["--haproxy-protocol"]);
    assert_blocked(&message, true, "curl v1 header, Italy");
    // Without the header from that trusted address, and with one from anyone else: refused.
    let cert = h.cert().display().to_string();
    let url = format!("{}?dns={}", doh_url(h.doh), base64url(&query(0, BLOCKED)));
    for (source, extra) in [(ITALY, None), (GERMANY, Some("--haproxy-protocol"))] {
        let mut command = Command::new("curl");
        command.args([
            "-sS",
            "--max-time",
            "10",
            "--cacert",
            &cert,
            "--interface",
            source,
        ]);
        command.args(extra);
        let output = command.arg(&url).output().unwrap();
        assert!(!output.status.success(), "{source} {extra:?}: {output:?}");
    }
    assert_eq!(h.pipeline.async_counters().snapshot().proxy_refused, 2);
}

// ---------------------------------------------------------------------------------------------
// DoQ
// ---------------------------------------------------------------------------------------------

const DOQ_CLIENT: &str = r#"
import sys
import dns.edns, dns.message, dns.query, dns.rcode
port, source, name, cafile = int(sys.argv[1]), sys.argv[2], sys.argv[3], sys.argv[4]
query = dns.message.make_query(name, "A", use_edns=0)
response = dns.query.quic(query, "127.0.0.1", port=port, source=source, timeout=10,
                          verify=cafile, server_hostname="localhost")
print("ID", response.id)
print("RCODE", dns.rcode.to_text(response.rcode()))
for rrset in response.answer:
    for rr in rrset:
        print("RDATA", rr.to_text())
for option in response.options:
    if option.otype == dns.edns.EDE:
        print("EDE", int(option.code))
"#;

fn python_doq_available() -> bool {
    let ok = Command::new("python3")
        .args(["-c", "import dns.quic, aioquic"])
        .output()
        .is_ok_and(|o| o.status.success());
    if !ok {
        let mut stderr = std::io::stderr();
        let _ = writeln!(
            stderr,
            "\n!!!!!!!! SKIPPED: the DoQ test needs dnspython with aioquic: \
             `pip install dnspython aioquic` !!!!!!!!\n"
        );
    }
    ok
}

#[test]
fn dnspython_over_quic_resolves_and_enforces_the_order() {
    if !python_doq_available() {
        return;
    }
    let h = Harness::start(|_| {});
    let doq = |source: &str, name: &str| {
        run(
            "python3",
            &[
                "-c".to_owned(),
                DOQ_CLIENT.to_owned(),
                h.doq.port().to_string(),
                source.to_owned(),
                name.to_owned(),
                h.cert().display().to_string(),
            ],
        )
    };
    let out = doq(ITALY, "www.example.com");
    assert!(out.contains("ID 0\n"), "{out}");
    assert!(
        out.contains("RCODE NOERROR") && out.contains("RDATA 10.0.0.1"),
        "{out}"
    );
    let out = doq(ITALY, "www.blocked.test");
    assert!(
        out.contains("RCODE NXDOMAIN") && out.contains("EDE 16"),
        "{out}"
    );
    let out = doq(GERMANY, "www.blocked.test");
    assert!(
        out.contains("RCODE NOERROR") && out.contains("RDATA 10.9.9.9"),
        "{out}"
    );
    let out = doq(GERMANY, "slow.example.com");
    assert!(out.contains("RCODE SERVFAIL"), "{out}");
    assert!(h.server().stats().doq.connections >= 4);
}

async fn quic_connect(h: &Harness) -> quinn::Connection {
    let pem = std::fs::read(h.cert()).unwrap();
    let mut tls = (*client_tls(&pem, &[b"doq"])).clone();
    tls.enable_early_data = false;
    let crypto = quinn::crypto::rustls::QuicClientConfig::try_from(tls).unwrap();
    let mut endpoint = quinn::Endpoint::client("127.0.0.1:0".parse().unwrap()).unwrap();
    endpoint.set_default_client_config(quinn::ClientConfig::new(Arc::new(crypto)));
    endpoint.connect(h.doq, "localhost").unwrap().await.unwrap()
}

#[test]
fn doq_message_id_other_than_zero_is_a_protocol_error() {
    let h = Harness::start(|_| {});
    h.block_on(async {
        let connection = quic_connect(&h).await;
        // ID 0: answered, FIN after the answer.
        let (mut send, mut recv) = connection.open_bi().await.unwrap();
        send.write_all(&frame(&query(0, WWW))).await.unwrap();
        send.finish().unwrap();
        let answer = recv.read_to_end(65537).await.unwrap();
        let message = Message::from_vec(&answer[2..]).unwrap();
        assert_eq!(
            usize::from(u16::from_be_bytes([answer[0], answer[1]])),
            answer.len() - 2
        );
        assert_eq!(first_a(&message).as_deref(), Some("10.0.0.1"));

        // ID 0x1234: the connection is closed with DOQ_PROTOCOL_ERROR.
        let (mut send, _recv) = connection.open_bi().await.unwrap();
        send.write_all(&frame(&query(0x1234, WWW))).await.unwrap();
        send.finish().unwrap();
        match tokio::time::timeout(Duration::from_secs(5), connection.closed()).await {
            Ok(quinn::ConnectionError::ApplicationClosed(close)) => {
                assert_eq!(close.error_code, quinn::VarInt::from_u32(0x2));
            }
            other => panic!("expected DOQ_PROTOCOL_ERROR, got {other:?}"),
        }

        // A stream that ends inside a message: also a protocol error.
        let connection = quic_connect(&h).await;
        let (mut send, _recv) = connection.open_bi().await.unwrap();
        send.write_all(&[0, 40, 0, 0, 1]).await.unwrap();
        send.finish().unwrap();
        match tokio::time::timeout(Duration::from_secs(5), connection.closed()).await {
            Ok(quinn::ConnectionError::ApplicationClosed(close)) => {
                assert_eq!(close.error_code, quinn::VarInt::from_u32(0x2));
            }
            other => panic!("expected DOQ_PROTOCOL_ERROR, got {other:?}"),
        }
    });
    assert_eq!(h.server().stats().doq.bad_requests, 2);
}

#[test]
fn doq_idle_connections_are_closed_and_streams_are_limited() {
    let h = Harness::start(|config| {
        config.limits.idle_timeout = Duration::from_millis(700);
        config.limits.max_streams = 2;
    });
    h.block_on(async {
        let connection = quic_connect(&h).await;
        // Two streams left open without a query: a third cannot be opened yet.
        let (mut a, _ra) = connection.open_bi().await.unwrap();
        let (mut b, _rb) = connection.open_bi().await.unwrap();
        a.write_all(&[0]).await.unwrap();
        b.write_all(&[0]).await.unwrap();
        let third = tokio::time::timeout(Duration::from_millis(300), async {
            let (mut c, _rc) = connection.open_bi().await.unwrap();
            c.write_all(&[0]).await
        })
        .await;
        assert!(third.is_err(), "stream credit limits concurrent queries");

        let connection = quic_connect(&h).await;
        let started = Instant::now();
        let reason = tokio::time::timeout(Duration::from_secs(5), connection.closed())
            .await
            .expect("an idle connection is closed");
        assert!(
            matches!(reason, quinn::ConnectionError::TimedOut),
            "{reason:?}"
        );
        assert!(started.elapsed() >= Duration::from_millis(500));
    });
}

// ---------------------------------------------------------------------------------------------
// dnsperf (issue #17): its DoH client reads one TLS record at a time and keeps one response per
// read; a record carrying several responses lost all but the first (docs/design/0008).
// ---------------------------------------------------------------------------------------------

/// `dnsperf` when installed (Debian `dnsperf`, 2.10 has `-m doh`), else `None` with a message.
fn dnsperf_with_doh() -> Option<()> {
    let help = Command::new("dnsperf").arg("-h").output();
    match help {
        Ok(out) if String::from_utf8_lossy(&out.stderr).contains("doh") => Some(()),
        Ok(_) => {
            eprintln!("SKIPPED: this dnsperf has no DNS-over-HTTPS mode (-m doh)");
            None
        }
        Err(_) => {
            eprintln!("SKIPPED: dnsperf is not installed (apt-get install dnsperf)");
            None
        }
    }
}

/// dnsperf's summary counter `label` (e.g. "Queries lost:").
fn dnsperf_count(output: &str, label: &str) -> u64 {
    output
        .lines()
        .find_map(|line| line.trim().strip_prefix(label))
        .and_then(|rest| rest.split_whitespace().next())
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("no '{label}' in dnsperf's output:\n{output}"))
}

#[test]
fn dnsperf_over_doh_loses_no_query() {
    if dnsperf_with_doh().is_none() {
        return;
    }
    let h = Harness::start(|_| {});
    let names = h.directory.path().join("dnsperf-queries.txt");
    let mut lines = String::new();
    for i in 0..250 {
        lines.push_str(if i % 5 == 0 {
            "www.blocked.test A\n"
        } else {
            "www.example.com A\n"
        });
    }
    std::fs::write(&names, lines).unwrap();
    let port = h.doh.port().to_string();
    let file = names.display().to_string();
    // (connections, outstanding, method, passes over the 250 names)
    for (clients, outstanding, method, passes) in [
        ("1", "20", "GET", "4"),
        ("1", "20", "POST", "4"),
        ("8", "200", "GET", "8"),
        ("8", "200", "POST", "8"),
    ] {
        // Not `run`: a dnsperf that loses queries waits out `-t` for each, and what it printed
        // until `timeout` stopped it is the useful part of the failure.
        let output = Command::new("timeout")
            .args([
                "120",
                "dnsperf",
                "-m",
                "doh",
                "-s",
                "127.0.0.1",
                "-p",
                &port,
                "-d",
                &file,
            ])
            .args([
                "-n",
                passes,
                "-c",
                clients,
                "-q",
                outstanding,
                "-t",
                "5",
                "-O",
            ])
            .arg(format!("doh-method={method}"))
            .output()
            .unwrap();
        let out = String::from_utf8_lossy(&output.stdout).into_owned();
        let via = format!("dnsperf -m doh -c {clients} -q {outstanding} {method}");
        assert!(output.status.success(), "{via}: {}\n{out}", output.status);
        let sent = dnsperf_count(&out, "Queries sent:");
        assert_eq!(sent, 250 * passes.parse::<u64>().unwrap(), "{via}:\n{out}");
        assert_eq!(dnsperf_count(&out, "Queries lost:"), 0, "{via}:\n{out}");
        assert_eq!(
            dnsperf_count(&out, "Queries completed:"),
            sent,
            "{via}:\n{out}"
        );
        assert!(out.contains("NOERROR"), "{via}:\n{out}");
    }
}

// ---------------------------------------------------------------------------------------------
// EDNS(0) padding (RFC 7830, RFC 8467): padded queries over DoT, DoH and DoQ get responses
// padded to a multiple of 468 bytes; unpadded queries get none.
// ---------------------------------------------------------------------------------------------

/// The response size kdig (";; Received N B") or dig (";; MSG SIZE  rcvd: N") reports.
fn received_size(output: &str) -> usize {
    output
        .lines()
        .find_map(|line| {
            line.strip_prefix(";; Received ")
                .or_else(|| line.strip_prefix(";; MSG SIZE  rcvd: "))
        })
        .and_then(|rest| rest.split_whitespace().next())
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("no response size in: {output}"))
}

#[test]
fn padded_queries_get_responses_padded_to_468_byte_blocks() {
    let h = Harness::start(|_| {});
    let cases: Vec<(&str, SocketAddr, &[&str])> = vec![
        ("kdig", h.dot, &["+tls"]),
        ("kdig", h.doh, &["+https"]),
        ("kdig", h.doh, &["+https-get"]),
        ("kdig", h.doq, &["+quic"]),
        ("dig", h.doh, &["+https"]),
    ];
    for (program, addr, mode) in cases {
        for padded in [true, false] {
            let port = addr.port().to_string();
            let mut args = strings(&["@127.0.0.1", "-p", &port, "-b", GERMANY]);
            args.extend(strings(mode));
            match (program, padded) {
                ("kdig", true) => args.extend(strings(&["+padding=128", "+timeout=5", "+retry=0"])),
                ("kdig", false) => args.extend(strings(&["+nopadding", "+timeout=5", "+retry=0"])),
                (_, true) => args.extend(strings(&["+padding=128", "+time=5", "+tries=1"])),
                (_, false) => args.extend(strings(&["+padding=0", "+time=5", "+tries=1"])),
            }
            args.extend(strings(&["www.example.com", "A"]));
            let out = run(program, &args);
            let via = format!("{program} {mode:?} padded={padded}");
            assert_eq!(dig_status(&out), "NOERROR", "{via}: {out}");
            assert!(out.contains("10.0.0.1"), "{via}: {out}");
            let size = received_size(&out);
            // kdig prints "PADDING: N B", dig "PAD: (N bytes)".
            let has_padding = out.contains("PADDING:") || out.contains("PAD:");
            if padded {
                assert!(has_padding, "{via}: no Padding option: {out}");
                assert_eq!(size % 468, 0, "{via}: {size} bytes: {out}");
            } else {
                assert!(!has_padding, "{via}: padded without being asked: {out}");
                assert_ne!(size % 468, 0, "{via}: {out}");
            }
        }
    }
}

// ---------------------------------------------------------------------------------------------
// dnsperf's DoH client, emulated (runs where dnsperf is not installed): an h2 client with
// dnsperf's settings, fed the server's bytes one TLS record at a time, and a tally of what
// dnsperf would do with each record (docs/design/0008-doh-stall.md).
// ---------------------------------------------------------------------------------------------

/// dnsperf 2.10 (`net_doh.c`) reads one TLS record per `SSL_read` (OpenSSL without read-ahead)
/// and hands it to `nghttp2_session_mem_recv`; the first DATA frame with END_STREAM completes
/// "the" response of that read, and the data callback answers NGHTTP2_ERR_PAUSE to any later
/// DATA in the same read. nghttp2 counts paused bytes as consumed, so dnsperf never sees that
/// response's body: the query is lost.
#[derive(Debug, Default)]
struct DnsperfReads {
    header: Vec<u8>,
    kind: u8,
    flags: u8,
    payload_left: usize,
    /// Some of this DATA frame's payload came after a completed response in the same read.
    paused: bool,
    answered: usize,
    lost: usize,
}

impl DnsperfReads {
    /// The plaintext of one TLS record.
    fn read(&mut self, plaintext: &[u8]) {
        let mut completed = false;
        let mut at = 0;
        while at < plaintext.len() {
            if self.header.len() < 9 {
                let take = (9 - self.header.len()).min(plaintext.len() - at);
                self.header.extend_from_slice(&plaintext[at..at + take]);
                at += take;
                if self.header.len() < 9 {
                    break;
                }
                let h = &self.header;
                self.payload_left = u32::from_be_bytes([0, h[0], h[1], h[2]]) as usize;
                (self.kind, self.flags, self.paused) = (h[3], h[4], false);
            }
            let take = self.payload_left.min(plaintext.len() - at);
            if self.kind == 0 && take > 0 && completed {
                self.paused = true;
            }
            self.payload_left -= take;
            at += take;
            if self.payload_left == 0 {
                if self.kind == 0 && self.flags & 0x1 != 0 {
                    if self.paused {
                        self.lost += 1;
                    } else {
                        self.answered += 1;
                        completed = true;
                    }
                }
                self.header.clear();
            }
        }
    }
}

/// Connects to the DoH listener and returns an h2 client configured as dnsperf's nghttp2
/// session (SETTINGS_MAX_CONCURRENT_STREAMS 100, ENABLE_PUSH 0, INITIAL_WINDOW_SIZE 65535;
/// 100 streams assumed before the server's SETTINGS), whose input arrives one TLS record at a
/// time, each also tallied by `reads`.
async fn dnsperf_like_client(
    h: &Harness,
    reads: Arc<std::sync::Mutex<DnsperfReads>>,
) -> h2::client::SendRequest<bytes::Bytes> {
    use std::io::Read as _;
    let cert = std::fs::read(h.cert()).unwrap();
    let tls = tls_connect(h.doh, client_tls(&cert, &[b"h2"]))
        .await
        .unwrap();
    assert_eq!(tls.get_ref().1.alpn_protocol(), Some(&b"h2"[..]));
    let (tcp, connection) = tls.into_inner();
    let connection = Arc::new(std::sync::Mutex::new(connection));
    let (mut tcp_read, mut tcp_write) = tcp.into_split();
    let (client_io, pump_io) = tokio::io::duplex(1 << 16);
    let (mut from_client, mut to_client) = tokio::io::split(pump_io);

    // Client → server: plaintext into TLS records, out to the socket.
    let writer = Arc::clone(&connection);
    tokio::spawn(async move {
        let mut buf = vec![0u8; 1 << 16];
        loop {
            let n = match from_client.read(&mut buf).await {
                Ok(0) | Err(_) => break,
                Ok(n) => n,
            };
            let mut wire = Vec::new();
            {
                let mut tls = writer.lock().unwrap();
                tls.writer().write_all(&buf[..n]).unwrap();
                while tls.wants_write() {
                    tls.write_tls(&mut wire).unwrap();
                }
            }
            if tcp_write.write_all(&wire).await.is_err() {
                break;
            }
        }
    });
    // Server → client: one record at a time, as dnsperf's SSL_read.
    tokio::spawn(async move {
        let mut pending = {
            // Anything that arrived with the end of the handshake.
            let mut tls = connection.lock().unwrap();
            tls.process_new_packets().unwrap();
            let mut plain = Vec::new();
            let _ = tls.reader().read_to_end(&mut plain);
            plain
        };
        loop {
            if !pending.is_empty() {
                reads.lock().unwrap().read(&pending);
                if to_client.write_all(&pending).await.is_err() {
                    break;
                }
            }
            let mut record = vec![0u8; 5];
            if tcp_read.read_exact(&mut record).await.is_err() {
                break;
            }
            let len = usize::from(u16::from_be_bytes([record[3], record[4]]));
            record.resize(5 + len, 0);
            if tcp_read.read_exact(&mut record[5..]).await.is_err() {
                break;
            }
            let mut tls = connection.lock().unwrap();
            tls.read_tls(&mut &record[..]).unwrap();
            tls.process_new_packets().unwrap();
            pending.clear();
            let _ = tls.reader().read_to_end(&mut pending);
        }
    });

    let (client, connection) = h2::client::Builder::new()
        .max_concurrent_streams(100)
        .enable_push(false)
        .initial_window_size(65535)
        .initial_max_send_streams(100)
        .handshake::<_, bytes::Bytes>(client_io)
        .await
        .unwrap();
    tokio::spawn(connection);
    client
}

/// Sends `total` queries for `www.example.com` with at most `outstanding` in flight (as
/// dnsperf `-q`), GET or POST; returns how many came back as a 200 DNS answer.
async fn dnsperf_like_load(
    client: h2::client::SendRequest<bytes::Bytes>,
    total: u16,
    outstanding: usize,
    post: bool,
) -> usize {
    let slots = Arc::new(tokio::sync::Semaphore::new(outstanding));
    let mut requests = tokio::task::JoinSet::new();
    for id in 0..total {
        let slot = Arc::clone(&slots).acquire_owned().await.unwrap();
        let mut client = client.clone().ready().await.unwrap();
        let message = query(id, WWW);
        let builder = http::Request::builder()
            .header("accept", "application/dns-message")
            .header("user-agent", "dnsperf-like test client");
        let (response, mut body) = if post {
            let request = builder
                .method("POST")
                .uri("https://localhost/dns-query")
                .header("content-type", "application/dns-message")
                .header("content-length", message.len().to_string())
                .body(())
                .unwrap();
            let (response, mut body) = client.send_request(request, false).unwrap();
            body.send_data(bytes::Bytes::from(message), true).unwrap();
            (response, Some(body))
        } else {
            let uri = format!("https://localhost/dns-query?dns={}", base64url(&message));
            let request = builder.method("GET").uri(uri).body(()).unwrap();
            (client.send_request(request, true).unwrap().0, None)
        };
        requests.spawn(async move {
            let _slot = slot;
            let _keep = body.take();
            let Ok(response) = response.await else {
                return false;
            };
            let ok = response.status() == 200;
            let mut body = response.into_body();
            let mut answer = Vec::new();
            while let Some(Ok(chunk)) = body.data().await {
                let _ = body.flow_control().release_capacity(chunk.len());
                answer.extend_from_slice(&chunk);
            }
            ok && Message::from_vec(&answer).is_ok_and(|m| m.id() == id)
        });
    }
    let mut answered = 0;
    while let Some(done) = requests.join_next().await {
        answered += usize::from(done.unwrap());
    }
    answered
}

#[test]
fn a_dnsperf_like_http2_client_gets_every_answer() {
    let h = Harness::start(|_| {});
    for post in [false, true] {
        for outstanding in [20, 100] {
            let reads = Arc::new(std::sync::Mutex::new(DnsperfReads::default()));
            let answered = h.block_on(async {
                let client = dnsperf_like_client(&h, Arc::clone(&reads)).await;
                dnsperf_like_load(client, 600, outstanding, post).await
            });
            let via = format!("post={post}, {outstanding} outstanding");
            assert_eq!(answered, 600, "{via}: the h2 client itself");
            let reads = reads.lock().unwrap();
            assert_eq!(
                (reads.answered, reads.lost),
                (600, 0),
                "{via}: responses dnsperf would see / lose (several in one TLS record)"
            );
        }
    }
}
