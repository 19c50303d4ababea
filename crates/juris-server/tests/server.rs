//! End-to-end tests of the listeners: a real server on 127.0.0.1 (ephemeral port), queried
//! with raw sockets and hand-made bytes; responses decoded with hickory-proto as an
//! independent parser. Answers come from a pre-filled cache; resolutions fail (the only
//! upstream is a closed loopback port).
#![allow(clippy::unwrap_used, clippy::expect_used, reason = "test code")]

use std::io::{Read, Write};
use std::net::{Ipv4Addr, SocketAddr, TcpStream, UdpSocket};
use std::sync::Arc;
use std::time::{Duration, Instant};

use hickory_proto::op::{Message, ResponseCode};
use hickory_proto::rr::rdata::opt::{EdnsCode, EdnsOption};
use hickory_proto::rr::{RData, RecordType};
use juris_resolver::cache::{AnswerCache, CacheConfig, CacheKeyRef, CachedAnswer};
use juris_resolver::clock::{ManualClock, SharedClock};
use juris_resolver::{Mode, Resolver, ResolverConfig};
use juris_server::{
    start, start_with_policy, DeniedAction, ListenerConfig, PolicyEngine, RunningServer,
    ServerConfig,
};

const NOW: u64 = 1_700_000_000;
const WWW: &[u8] = b"\x03www\x07example\x03com\x00";

struct Harness {
    server: Option<RunningServer>,
    addr: SocketAddr,
    cache: Arc<AnswerCache>,
    clock: Arc<ManualClock>,
}

impl Harness {
    fn start(configure: impl FnOnce(&mut ServerConfig, &mut CacheConfig)) -> Self {
        Self::start_on("127.0.0.1:0".parse().unwrap(), configure)
    }

    fn start_on(
        addr: SocketAddr,
        configure: impl FnOnce(&mut ServerConfig, &mut CacheConfig),
    ) -> Self {
        Self::start_with_policy(addr, configure, PolicyEngine::allow_all().unwrap())
    }

    fn start_with_policy(
        addr: SocketAddr,
        configure: impl FnOnce(&mut ServerConfig, &mut CacheConfig),
        engine: PolicyEngine,
    ) -> Self {
        let mut config = ServerConfig {
            listeners: vec![ListenerConfig::udp_and_tcp(addr)],
            threads: 2,
            async_threads: 1,
            ..ServerConfig::default()
        };
        let mut cache_config = CacheConfig::default();
        configure(&mut config, &mut cache_config);
        let clock = Arc::new(ManualClock::new(NOW));
        let shared: SharedClock = clock.clone();
        let cache = Arc::new(AnswerCache::new(cache_config));
        let resolver = Resolver::new(
            ResolverConfig {
                // Nothing listens there (and loopback upstreams are off): every resolution
                // fails, quickly.
                mode: Mode::Forward {
                    upstreams: vec!["127.0.0.1:9".parse().unwrap()],
                },
                query_timeout: Duration::from_millis(200),
                resolution_deadline: Duration::from_secs(1),
                ..ResolverConfig::default()
            },
            Arc::clone(&cache),
            Arc::clone(&shared),
        )
        .unwrap();
        let server = start_with_policy(config, resolver, shared, engine).unwrap();
        let addr = server.listeners()[0].addr;
        assert_ne!(addr.port(), 0);
        Self {
            server: Some(server),
            addr,
            cache,
            clock,
        }
    }

    fn server(&self) -> &RunningServer {
        self.server.as_ref().unwrap()
    }

    /// Stores a response in the cache for (name, A, IN, DO=0).
    fn insert(&self, name: &[u8], response: &[u8]) {
        let entry =
            CachedAnswer::from_message(response, self.clock_now(), self.cache.config()).unwrap();
        let key = CacheKeyRef {
            name,
            qtype: 1,
            qclass: 1,
            dnssec_ok: false,
        };
        assert!(self.cache.insert(key.to_owned_key(), Arc::new(entry)));
    }

    fn clock_now(&self) -> u64 {
        use juris_resolver::clock::Clock;
        self.clock.unix_seconds()
    }

    fn udp(&self, query: &[u8]) -> Vec<u8> {
        udp_exchange(self.addr, query, Duration::from_secs(5)).expect("no UDP response")
    }
}

impl Drop for Harness {
    fn drop(&mut self) {
        if let Some(server) = self.server.take() {
            server.shutdown();
        }
    }
}

/// A query: ID, flags, one question, optional OPT (payload size, DO, version, options).
fn query(
    id: u16,
    flags: u16,
    name: &[u8],
    qtype: u16,
    opt: Option<(u16, bool, u8, &[u8])>,
) -> Vec<u8> {
    let mut m = Vec::new();
    m.extend_from_slice(&id.to_be_bytes());
    m.extend_from_slice(&flags.to_be_bytes());
    m.extend_from_slice(&[0, 1, 0, 0, 0, 0, 0, opt.is_some() as u8]);
    m.extend_from_slice(name);
    m.extend_from_slice(&qtype.to_be_bytes());
    m.extend_from_slice(&[0, 1]);
    if let Some((payload, dnssec_ok, version, options)) = opt {
        m.extend_from_slice(&[0, 0, 41]);
        m.extend_from_slice(&payload.to_be_bytes());
        m.extend_from_slice(&[0, version, if dnssec_ok { 0x80 } else { 0 }, 0]);
        m.extend_from_slice(&(options.len() as u16).to_be_bytes());
        m.extend_from_slice(options);
    }
    m
}

/// A NOERROR response for `name` A with `count` A records (10.0.x.y), TTL 300.
fn a_response(name: &[u8], count: usize) -> Vec<u8> {
    let mut m = vec![0, 0, 0x81, 0x80, 0, 1];
    m.extend_from_slice(&(count as u16).to_be_bytes());
    m.extend_from_slice(&[0, 0, 0, 0]);
    m.extend_from_slice(name);
    m.extend_from_slice(&[0, 1, 0, 1]);
    for i in 0..count {
        m.extend_from_slice(&[0xC0, 12, 0, 1, 0, 1, 0, 0, 1, 44, 0, 4, 10, 0]);
        m.extend_from_slice(&[(i / 256) as u8, (i % 256) as u8]);
    }
    m
}

fn udp_exchange(addr: SocketAddr, query: &[u8], wait: Duration) -> Option<Vec<u8>> {
    let bind = if addr.is_ipv6() {
        "[::1]:0"
    } else {
        "127.0.0.1:0"
    };
    let socket = UdpSocket::bind(bind).unwrap();
    socket.set_read_timeout(Some(wait)).unwrap();
    socket.send_to(query, addr).unwrap();
    let mut buf = vec![0u8; 65535];
    match socket.recv_from(&mut buf) {
        Ok((len, from)) => {
            assert_eq!(from, addr);
            buf.truncate(len);
            Some(buf)
        }
        Err(_) => None,
    }
}

fn tcp_connect(addr: SocketAddr) -> TcpStream {
    let stream = TcpStream::connect(addr).unwrap();
    stream
        .set_read_timeout(Some(Duration::from_secs(5)))
        .unwrap();
    stream
}

fn frame(message: &[u8]) -> Vec<u8> {
    let mut f = (message.len() as u16).to_be_bytes().to_vec();
    f.extend_from_slice(message);
    f
}

fn read_frame(stream: &mut TcpStream) -> Vec<u8> {
    let mut len = [0u8; 2];
    stream.read_exact(&mut len).unwrap();
    let mut message = vec![0u8; u16::from_be_bytes(len) as usize];
    stream.read_exact(&mut message).unwrap();
    message
}

fn ede_of(message: &Message) -> Option<(u16, String)> {
    let edns = message.extensions().as_ref()?;
    match edns.options().get(EdnsCode::Unknown(15))? {
        EdnsOption::Unknown(15, data) if data.len() >= 2 => Some((
            u16::from_be_bytes([data[0], data[1]]),
            String::from_utf8_lossy(&data[2..]).into_owned(),
        )),
        _ => None,
    }
}

#[test]
fn garbage_gets_formerr_and_short_packets_are_dropped() {
    let h = Harness::start(|_, _| {});
    // A header (QR=0) followed by an unreadable question.
    let garbage = [0x12, 0x34, 0, 0, 0, 1, 0, 0, 0, 0, 0, 0, 0xFF, 0xFE, 0x01];
    let response = h.udp(&garbage);
    assert_eq!(response.len(), 12, "header-only FORMERR");
    assert_eq!(&response[0..2], &[0x12, 0x34]);
    assert_eq!(response[2] & 0x80, 0x80, "QR set");
    assert_eq!(response[3] & 0x0F, 1, "FORMERR");

    // Shorter than a header, and a response (QR=1): no answer at all.
    assert!(udp_exchange(h.addr, &[1, 2, 3], Duration::from_millis(300)).is_none());
    let mut response_packet = query(7, 0x8100, WWW, 1, None);
    response_packet[2] |= 0x80;
    assert!(udp_exchange(h.addr, &response_packet, Duration::from_millis(300)).is_none());
    let stats = h.server().stats();
    assert!(stats.dropped >= 2, "{stats:?}");
    assert!(stats.responses_by_rcode[1] >= 1, "{stats:?}");
}

#[test]
fn opcode_other_than_query_gets_notimp() {
    let h = Harness::start(|_, _| {});
    let status = query(0x4242, 0x0100 | (2 << 11), WWW, 1, None);
    let response = Message::from_vec(&h.udp(&status)).unwrap();
    assert_eq!(response.id(), 0x4242);
    assert_eq!(response.response_code(), ResponseCode::NotImp);
}

#[test]
fn any_gets_rfc8482_minimal_answer() {
    let h = Harness::start(|_, _| {});
    let response = Message::from_vec(&h.udp(&query(9, 0x0100, WWW, 255, None))).unwrap();
    assert_eq!(response.response_code(), ResponseCode::NoError);
    assert_eq!(response.answers().len(), 1);
    let record = &response.answers()[0];
    assert_eq!(record.record_type(), RecordType::HINFO);
    assert_eq!(record.name().to_ascii(), "www.example.com.");
    match record.data() {
        RData::HINFO(hinfo) => {
            assert_eq!(hinfo.cpu(), b"RFC8482");
            assert_eq!(hinfo.os(), b"");
        }
        other => panic!("not HINFO: {other:?}"),
    }
    assert!(record.ttl() > 0);
}

#[test]
fn zone_transfer_and_other_classes_are_refused() {
    let h = Harness::start(|_, _| {});
    let axfr = Message::from_vec(&h.udp(&query(1, 0, WWW, 252, None))).unwrap();
    assert_eq!(axfr.response_code(), ResponseCode::Refused);
    let mut chaos = query(2, 0, b"\x07version\x04bind\x00", 16, None);
    let len = chaos.len();
    chaos[len - 1] = 3;
    let chaos = Message::from_vec(&h.udp(&chaos)).unwrap();
    assert_eq!(chaos.response_code(), ResponseCode::Refused);
}

#[test]
fn badvers_for_edns_version_1() {
    let h = Harness::start(|_, _| {});
    let response = h.udp(&query(5, 0x0100, WWW, 1, Some((1232, false, 1, &[]))));
    let message = Message::from_vec(&response).unwrap();
    // BADVERS and BADSIG share the value 16.
    assert_eq!(u16::from(message.response_code()), 16);
    assert_eq!(message.extensions().as_ref().unwrap().version(), 0);
}

#[test]
fn client_outside_allow_list_is_refused_over_udp_and_closed_over_tcp() {
    let h = Harness::start(|config, _| config.allow = vec!["10.0.0.0/8".parse().unwrap()]);
    h.insert(WWW, &a_response(WWW, 1));
    let response = h.udp(&query(0x0A0A, 0x0100, WWW, 1, None));
    assert_eq!(response.len(), 12);
    assert_eq!(&response[0..2], &[0x0A, 0x0A]);
    assert_eq!(response[3] & 0x0F, 5, "REFUSED");

    let mut stream = tcp_connect(h.addr);
    let _ = stream.write_all(&frame(&query(1, 0x0100, WWW, 1, None)));
    let mut buf = [0u8; 64];
    match stream.read(&mut buf) {
        Ok(0) | Err(_) => {}
        Ok(n) => panic!("got {n} bytes from a TCP connection that should be closed"),
    }
    let stats = h.server().stats();
    assert_eq!(stats.refused_by_acl, 2, "{stats:?}");
    assert_eq!(stats.cache_hits, 0);
}

#[test]
fn denied_clients_can_be_dropped_instead() {
    let h = Harness::start(|config, _| {
        config.allow = vec!["10.0.0.0/8".parse().unwrap()];
        config.denied = DeniedAction::Drop;
    });
    assert!(udp_exchange(
        h.addr,
        &query(1, 0x0100, WWW, 1, None),
        Duration::from_millis(300)
    )
    .is_none());
}

#[test]
fn cache_hit_is_served_with_client_id_and_case() {
    let h = Harness::start(|_, _| {});
    h.insert(WWW, &a_response(WWW, 1));
    h.clock.advance(10);
    let spelled = b"\x03WwW\x07ExAmPle\x03CoM\x00";
    let response = h.udp(&query(0xBEEF, 0x0100, spelled, 1, None));
    assert_eq!(&response[0..2], &[0xBE, 0xEF]);
    assert_eq!(
        &response[12..12 + spelled.len()],
        spelled,
        "0x20 case preserved"
    );
    let message = Message::from_vec(&response).unwrap();
    assert!(message.recursion_desired());
    assert!(message.recursion_available());
    assert_eq!(message.answers().len(), 1);
    let record = &message.answers()[0];
    assert_eq!(record.ttl(), 290, "TTL decremented by time in cache");
    match record.data() {
        RData::A(a) => assert_eq!(a.0, Ipv4Addr::new(10, 0, 0, 0)),
        other => panic!("not A: {other:?}"),
    }
    assert!(
        message.extensions().is_none(),
        "no OPT for a client without EDNS"
    );

    // With EDNS: OPT appended with our payload size, DO echoed (entry keyed DO=0 here).
    let response = h.udp(&query(
        0xBEF0,
        0x0100,
        spelled,
        1,
        Some((4096, false, 0, &[])),
    ));
    let message = Message::from_vec(&response).unwrap();
    assert_eq!(message.answers().len(), 1);
    let edns = message.extensions().as_ref().expect("OPT in response");
    assert_eq!(edns.max_payload(), 1232);
    assert!(h.server().stats().cache_hits >= 2);
}

#[test]
fn large_answer_is_truncated_for_a_512_byte_client_and_whole_over_tcp() {
    let h = Harness::start(|_, _| {});
    h.insert(WWW, &a_response(WWW, 40));

    let small = h.udp(&query(0x5151, 0x0100, WWW, 1, None));
    assert!(small.len() <= 512);
    let message = Message::from_vec(&small).unwrap();
    assert!(message.truncated(), "TC=1");
    assert_eq!(message.id(), 0x5151);
    assert_eq!(message.queries().len(), 1);
    assert_eq!(message.answers().len(), 0);

    let with_edns = h.udp(&query(0x5152, 0x0100, WWW, 1, Some((1232, false, 0, &[]))));
    let message = Message::from_vec(&with_edns).unwrap();
    assert!(!message.truncated());
    assert_eq!(message.answers().len(), 40);

    let tiny_edns = h.udp(&query(0x5153, 0x0100, WWW, 1, Some((100, false, 0, &[]))));
    let message = Message::from_vec(&tiny_edns).unwrap();
    assert!(message.truncated(), "payload below 512 counts as 512");
    assert!(
        message.extensions().is_some(),
        "OPT kept in the truncated answer"
    );

    let mut stream = tcp_connect(h.addr);
    stream
        .write_all(&frame(&query(0x5154, 0x0100, WWW, 1, None)))
        .unwrap();
    let message = Message::from_vec(&read_frame(&mut stream)).unwrap();
    assert!(!message.truncated(), "never TC over TCP");
    assert_eq!(message.answers().len(), 40);
    assert!(h.server().stats().truncated >= 2);
}

#[test]
fn tcp_pipelining_answers_every_query() {
    let h = Harness::start(|_, _| {});
    let other = b"\x04mail\x07example\x03com\x00";
    h.insert(WWW, &a_response(WWW, 1));
    h.insert(other, &a_response(other, 2));
    let mut stream = tcp_connect(h.addr);
    let mut burst = frame(&query(101, 0x0100, WWW, 1, None));
    // A miss: resolution fails (no upstream) → SERVFAIL, answered asynchronously.
    burst.extend(frame(&query(
        102,
        0x0100,
        b"\x04nope\x07example\x03com\x00",
        1,
        Some((1232, false, 0, &[])),
    )));
    burst.extend(frame(&query(103, 0x0100, other, 1, None)));
    stream.write_all(&burst).unwrap();
    let mut seen = Vec::new();
    for _ in 0..3 {
        let message = Message::from_vec(&read_frame(&mut stream)).unwrap();
        match message.id() {
            101 => assert_eq!(message.answers().len(), 1),
            102 => {
                assert_eq!(message.response_code(), ResponseCode::ServFail);
                let (code, text) = ede_of(&message).expect("EDE on SERVFAIL");
                assert!([0, 22, 23].contains(&code), "{code}");
                assert!(!text.is_empty());
            }
            103 => assert_eq!(message.answers().len(), 2),
            other => panic!("unexpected ID {other}"),
        }
        seen.push(message.id());
    }
    seen.sort_unstable();
    assert_eq!(seen, [101, 102, 103]);
    // The connection stays usable afterwards.
    stream
        .write_all(&frame(&query(104, 0x0100, WWW, 1, None)))
        .unwrap();
    assert_eq!(
        Message::from_vec(&read_frame(&mut stream)).unwrap().id(),
        104
    );
}

#[test]
fn tcp_idle_connection_is_closed() {
    let h = Harness::start(|config, _| config.tcp_idle_timeout = Duration::from_millis(300));
    let stream = tcp_connect(h.addr);
    // The server closes it (EOF or reset); our own read timeout is only the bound on "at all"
    // and must not count as a close.
    stream
        .set_read_timeout(Some(Duration::from_secs(60)))
        .unwrap();
    let mut buf = [0u8; 8];
    match (&stream).read(&mut buf) {
        Ok(0) => {}
        Ok(n) => panic!("{n} bytes on an idle connection"),
        Err(e) if e.kind() == std::io::ErrorKind::ConnectionReset => {}
        Err(e) => panic!("the idle connection was not closed: {e}"),
    }
}

#[test]
fn tcp_connection_limit_closes_extra_connections() {
    let h = Harness::start(|config, _| config.tcp_max_connections = 1);
    h.insert(WWW, &a_response(WWW, 1));
    let mut first = tcp_connect(h.addr);
    first
        .write_all(&frame(&query(1, 0x0100, WWW, 1, None)))
        .unwrap();
    assert_eq!(Message::from_vec(&read_frame(&mut first)).unwrap().id(), 1);
    let mut second = tcp_connect(h.addr);
    let _ = second.write_all(&frame(&query(2, 0x0100, WWW, 1, None)));
    let mut buf = [0u8; 8];
    assert_eq!(
        second.read(&mut buf).unwrap_or(0),
        0,
        "second connection closed"
    );
    assert_eq!(h.server().stats().tcp_connections_rejected, 1);
}

#[test]
fn miss_gets_servfail_with_ede_over_udp() {
    let h = Harness::start(|_, _| {});
    let response = h.udp(&query(77, 0x0100, WWW, 28, Some((1232, true, 0, &[]))));
    let message = Message::from_vec(&response).unwrap();
    assert_eq!(message.id(), 77);
    assert_eq!(message.response_code(), ResponseCode::ServFail);
    assert!(
        message.extensions().as_ref().unwrap().flags().dnssec_ok,
        "DO echoed"
    );
    let (code, text) = ede_of(&message).expect("EDE");
    assert!([0, 22, 23].contains(&code), "{code}");
    assert!(
        !text.is_empty() && !text.contains("example"),
        "short, fixed text: {text}"
    );
    let stats = h.server().stats();
    assert_eq!(stats.cache_misses, 1);
    assert_eq!(stats.responses_by_rcode[2], 1);
}

#[test]
fn stale_entry_served_when_resolution_fails() {
    let h = Harness::start(|_, cache| cache.stale_window = Some(3600));
    h.insert(WWW, &a_response(WWW, 1));
    h.clock.advance(400); // TTL 300 expired, within the stale window
    let response = h.udp(&query(31, 0x0100, WWW, 1, Some((1232, false, 0, &[]))));
    let message = Message::from_vec(&response).unwrap();
    assert_eq!(message.response_code(), ResponseCode::NoError);
    assert_eq!(message.answers().len(), 1);
    assert_eq!(message.answers()[0].ttl(), 30, "stale_answer_ttl");
    assert_eq!(ede_of(&message).expect("EDE").0, 3, "Stale Answer");
    assert_eq!(h.server().stats().stale_served, 1);
}

#[test]
fn ipv6_listener_answers() {
    if UdpSocket::bind("[::1]:0").is_err() {
        eprintln!("no IPv6 loopback here; skipped");
        return;
    }
    let h = Harness::start_on("[::1]:0".parse().unwrap(), |_, _| {});
    h.insert(WWW, &a_response(WWW, 1));
    assert!(h.addr.is_ipv6());
    let message = Message::from_vec(&h.udp(&query(6, 0x0100, WWW, 1, None))).unwrap();
    assert_eq!(message.answers().len(), 1);
}

#[test]
fn shutdown_returns_and_frees_the_port() {
    let h = Harness::start(|_, _| {});
    let addr = h.addr;
    let mut h = h;
    // How fast is not asserted here (a busy CI machine); that it returns at all is.
    h.server.take().unwrap().shutdown();
    assert!(udp_exchange(addr, &query(1, 0, WWW, 1, None), Duration::from_millis(300)).is_none());
    // The port can be bound again.
    assert!(UdpSocket::bind(addr).is_ok());
}

#[test]
fn bind_error_names_the_address() {
    let taken = UdpSocket::bind("127.0.0.1:0").unwrap();
    let addr = taken.local_addr().unwrap();
    let clock: SharedClock = Arc::new(ManualClock::new(NOW));
    let cache = Arc::new(AnswerCache::new(CacheConfig::default()));
    let resolver = Resolver::new(
        ResolverConfig {
            mode: Mode::Forward {
                upstreams: vec!["127.0.0.1:9".parse().unwrap()],
            },
            ..ResolverConfig::default()
        },
        cache,
        Arc::clone(&clock),
    )
    .unwrap();
    let config = ServerConfig {
        listeners: vec![ListenerConfig::udp_and_tcp(addr)],
        threads: 1,
        async_threads: 1,
        ..ServerConfig::default()
    };
    let error = start(config, resolver, clock).unwrap_err();
    assert!(error.to_string().contains(&addr.to_string()), "{error}");
}

// ---------------------------------------------------------------------------------------------
// Policy: orders scoped by the client's jurisdiction (listener pins place the clients here;
// GeoIP and ECS are covered by juris-geo's tests and the binary's end-to-end tests).
// ---------------------------------------------------------------------------------------------

mod policy {
    use super::*;
    use juris_geo::{Classifier, CountryCode, GeoConfig};
    use juris_policy::{CompileOptions, CompiledPolicy, Order, ValidationOptions};
    use juris_server::{ClientContext, Outcome, Pipeline, PolicyHandle, Transport};
    use proptest::prelude::*;

    /// `www.blocked.test.`
    const BLOCKED_WWW: &[u8] = b"\x03www\x07blocked\x04test\x00";
    /// `alias.innocent.test.` (CNAME → www.blocked.test.)
    const ALIAS: &[u8] = b"\x05alias\x08innocent\x04test\x00";

    fn order(id: &str, jurisdictions: &str, state: &str, action: &str, extra: &str) -> String {
        format!(
            r#"{{"id": "{id}", "kind": "court_order", "authority": "Tribunale di Milano",
                "reference": "RG 12345/2024", "jurisdictions": {jurisdictions}, "state": "{state}",
                "action": "{action}", "targets": [{{"type": "subtree", "value": "blocked.test"}}]
                {extra}}}"#
        )
    }

    fn compile(orders: &[String], generation: u64) -> CompiledPolicy {
        let validated: Vec<_> = orders
            .iter()
            .map(|json| {
                Order::from_json(json.as_bytes())
                    .unwrap()
                    .validate(&ValidationOptions::default())
                    .unwrap()
            })
            .collect();
        CompiledPolicy::compile(&validated, &CompileOptions { generation }).unwrap()
    }

    fn engine(orders: &[String]) -> PolicyEngine {
        PolicyEngine::new(
            Arc::new(PolicyHandle::new(compile(orders, 1))),
            Arc::new(Classifier::new(&GeoConfig::default()).unwrap()),
        )
    }

    fn country(code: &str) -> Option<CountryCode> {
        Some(CountryCode::parse(code).unwrap())
    }

    /// A server with listener 0 pinned to IT, listener 1 to DE, listener 2 to FR (withdrawn).
    struct Pinned {
        harness: Harness,
        italy: SocketAddr,
        germany: SocketAddr,
        france: SocketAddr,
    }

    fn pinned(orders: &[String]) -> Pinned {
        let harness = Harness::start_with_policy(
            "127.0.0.1:0".parse().unwrap(),
            |config, _| {
                let any: SocketAddr = "127.0.0.1:0".parse().unwrap();
                config.listeners = ["IT", "DE", "FR"]
                    .into_iter()
                    .map(|code| ListenerConfig {
                        country: country(code),
                        ..ListenerConfig::udp_and_tcp(any)
                    })
                    .collect();
                config.policy.withdrawn = vec![CountryCode::parse("FR").unwrap()];
            },
            engine(orders),
        );
        let listeners = harness.server().listeners().to_vec();
        Pinned {
            harness,
            italy: listeners[0].addr,
            germany: listeners[1].addr,
            france: listeners[2].addr,
        }
    }

    fn udp(addr: SocketAddr, message: &[u8]) -> Message {
        Message::from_vec(&udp_exchange(addr, message, Duration::from_secs(5)).expect("a response"))
            .unwrap()
    }

    fn tcp(addr: SocketAddr, message: &[u8]) -> Message {
        let mut stream = tcp_connect(addr);
        stream.write_all(&frame(message)).unwrap();
        Message::from_vec(&read_frame(&mut stream)).unwrap()
    }

    fn edns_query(name: &[u8], options: &[u8]) -> Vec<u8> {
        query(0x5151, 0x0100, name, 1, Some((1232, false, 0, options)))
    }

    /// NOERROR: `name` CNAME `target`, `target` A 10.9.9.9.
    fn cname_response(name: &[u8], target: &[u8]) -> Vec<u8> {
        let mut m = vec![0, 0, 0x81, 0x80, 0, 1, 0, 2, 0, 0, 0, 0];
        m.extend_from_slice(name);
        m.extend_from_slice(&[0, 1, 0, 1]);
        m.extend_from_slice(&[0xC0, 12, 0, 5, 0, 1, 0, 0, 1, 44]);
        m.extend_from_slice(&(target.len() as u16).to_be_bytes());
        m.extend_from_slice(target);
        m.extend_from_slice(target);
        m.extend_from_slice(&[0, 1, 0, 1, 0, 0, 1, 44, 0, 4, 10, 9, 9, 9]);
        m
    }

    #[test]
    fn the_query_name_is_blocked_only_where_the_order_applies_over_udp_and_tcp() {
        let s = pinned(&[order("IT-1", r#"["IT"]"#, "active", "nxdomain", "")]);
        s.harness.insert(BLOCKED_WWW, &a_response(BLOCKED_WWW, 1));
        let message = edns_query(BLOCKED_WWW, &[]);
        for response in [udp(s.italy, &message), tcp(s.italy, &message)] {
            assert_eq!(response.response_code(), ResponseCode::NXDomain);
            assert!(response.answers().is_empty());
            let soa = &response.name_servers()[0];
            assert_eq!(soa.record_type(), RecordType::SOA);
            assert_eq!(soa.name().to_ascii(), "blocked.test.");
            assert_eq!(soa.ttl(), 30);
            let (code, text) = ede_of(&response).unwrap();
            assert_eq!(code, 16);
            assert_eq!(
                text,
                "blocked by order IT-1 (Tribunale di Milano, RG 12345/2024)"
            );
        }
        for response in [udp(s.germany, &message), tcp(s.germany, &message)] {
            assert_eq!(response.response_code(), ResponseCode::NoError);
            assert_eq!(response.answers().len(), 1, "the cached answer");
            assert!(ede_of(&response).is_none());
        }
        let counts = s.harness.server().order_counts();
        assert_eq!(counts.len(), 1, "{counts:?}");
        assert_eq!(
            (counts[0].order.as_str(), counts[0].jurisdiction.as_str()),
            ("IT-1", "IT")
        );
        assert_eq!((counts[0].blocked, counts[0].shadow), (2, 0));
    }

    #[test]
    fn a_cname_into_a_blocked_site_is_blocked_after_the_cache() {
        let s = pinned(&[order("IT-1", r#"["IT"]"#, "active", "nodata", "")]);
        s.harness.insert(ALIAS, &cname_response(ALIAS, BLOCKED_WWW));
        let response = udp(s.italy, &edns_query(ALIAS, &[]));
        assert_eq!(response.response_code(), ResponseCode::NoError);
        assert!(
            response.answers().is_empty(),
            "NODATA: the CNAME is not shown"
        );
        assert_eq!(
            response.name_servers()[0].name().to_ascii(),
            "alias.innocent.test.",
            "SOA at the query name"
        );
        assert_eq!(ede_of(&response).unwrap().0, 16);
        let german = udp(s.germany, &edns_query(ALIAS, &[]));
        assert_eq!(german.answers().len(), 2);
    }

    #[test]
    fn address_targets_block_only_with_block_addresses() {
        let target = r#", "targets": [{"type": "ip", "value": "10.9.9.0/24"}]"#;
        let with = order("ADDR-ON", r#"["IT"]"#, "active", "refused", "")
            .replace(
                r#", "targets": [{"type": "subtree", "value": "blocked.test"}]"#,
                target,
            )
            .replace("\"action\"", "\"block_addresses\": true, \"action\"");
        let s = pinned(&[with]);
        s.harness
            .insert(ALIAS, &cname_response(ALIAS, b"\x05other\x04test\x00"));
        let response = udp(s.italy, &edns_query(ALIAS, &[]));
        assert_eq!(response.response_code(), ResponseCode::Refused);
        assert!(response.name_servers().is_empty(), "no SOA with REFUSED");
        assert_eq!(ede_of(&response).unwrap().0, 16);

        let without = order("ADDR-OFF", r#"["IT"]"#, "active", "refused", "").replace(
            r#", "targets": [{"type": "subtree", "value": "blocked.test"}]"#,
            target,
        );
        let s = pinned(&[without]);
        s.harness
            .insert(ALIAS, &cname_response(ALIAS, b"\x05other\x04test\x00"));
        assert_eq!(
            udp(s.italy, &edns_query(ALIAS, &[])).response_code(),
            ResponseCode::NoError
        );
    }

    #[test]
    fn shadow_orders_never_block_but_are_counted() {
        let s = pinned(&[order("SHADOW-1", r#"["IT"]"#, "shadow", "nxdomain", "")]);
        s.harness.insert(BLOCKED_WWW, &a_response(BLOCKED_WWW, 1));
        let response = udp(s.italy, &edns_query(BLOCKED_WWW, &[]));
        assert_eq!(response.response_code(), ResponseCode::NoError);
        assert_eq!(response.answers().len(), 1);
        let counts = s.harness.server().order_counts();
        assert_eq!(counts.len(), 1, "{counts:?}");
        assert_eq!((counts[0].blocked, counts[0].shadow), (0, 1));
    }

    #[test]
    fn a_withdrawn_jurisdiction_is_refused_with_ede_18() {
        let s = pinned(&[]);
        s.harness.insert(WWW, &a_response(WWW, 1));
        for response in [
            udp(s.france, &edns_query(WWW, &[])),
            tcp(s.france, &edns_query(WWW, &[])),
        ] {
            assert_eq!(response.response_code(), ResponseCode::Refused);
            assert_eq!(ede_of(&response).unwrap().0, 18);
        }
        assert_eq!(
            udp(s.italy, &edns_query(WWW, &[])).response_code(),
            ResponseCode::NoError
        );
        assert_eq!(s.harness.server().withdrawn_counts()[0].refused, 2);
    }

    #[test]
    fn structured_errors_when_signalled() {
        let notice = r#", "notice": {"text": "Blocked by order of the Court of Milan", "lang": "en", "url": "https://lumendatabase.org/notices/0"}"#;
        let s = pinned(&[order("IT-1", r#"["IT"]"#, "active", "nxdomain", notice)]);
        // An empty EDE option signals support; so does the configured option (65001).
        for signal in [&[0u8, 15, 0, 0][..], &[0xFD, 0xE9, 0, 0][..]] {
            let response = udp(s.italy, &edns_query(BLOCKED_WWW, signal));
            let (code, text) = ede_of(&response).unwrap();
            assert_eq!(code, 16);
            let json: serde_json::Value = serde_json::from_str(&text).unwrap();
            assert_eq!(json["o"], "Tribunale di Milano", "{text}");
            assert_eq!(json["l"], "en", "{text}");
            assert!(json.get("s").is_none(), "{text}");
        }
        // No signal: plain text.
        let (_, text) = ede_of(&udp(s.italy, &edns_query(BLOCKED_WWW, &[]))).unwrap();
        assert!(text.starts_with("blocked by order IT-1"), "{text}");
    }

    #[test]
    fn a_published_policy_applies_to_the_next_query_and_a_lift_needs_no_purge() {
        let s = pinned(&[]);
        s.harness.insert(BLOCKED_WWW, &a_response(BLOCKED_WWW, 1));
        let message = edns_query(BLOCKED_WWW, &[]);
        assert_eq!(
            udp(s.italy, &message).response_code(),
            ResponseCode::NoError
        );
        let handle = &s.harness.server().engine().policy;
        handle.publish(
            compile(&[order("IT-1", r#"["IT"]"#, "active", "nxdomain", "")], 2),
            NOW,
        );
        assert_eq!(
            udp(s.italy, &message).response_code(),
            ResponseCode::NXDomain
        );
        handle.publish(
            compile(&[order("IT-1", r#"["IT"]"#, "lifted", "nxdomain", "")], 3),
            NOW,
        );
        let lifted = udp(s.italy, &message);
        assert_eq!(lifted.response_code(), ResponseCode::NoError);
        assert_eq!(lifted.answers().len(), 1, "the cached answer, unfiltered");
    }

    #[test]
    fn hot_answers_are_served_without_policy_only_until_a_publish_touches_them() {
        // One UDP worker, so every query meets the same table of hot answers.
        let harness = Harness::start_with_policy(
            "127.0.0.1:0".parse().unwrap(),
            |config, _| {
                config.threads = 1;
                config.listeners = vec![ListenerConfig {
                    country: country("IT"),
                    ..ListenerConfig::udp_and_tcp("127.0.0.1:0".parse().unwrap())
                }];
            },
            engine(&[]),
        );
        let italy = harness.server().listeners()[0].addr;
        harness.insert(BLOCKED_WWW, &a_response(BLOCKED_WWW, 1));
        harness.insert(ALIAS, &cname_response(ALIAS, b"\x05other\x04test\x00"));
        let hot_hits = || harness.server().stats().cache_hits_hot;
        let ask = |name: &[u8]| udp(italy, &edns_query(name, &[]));
        let warm = |name: &[u8]| {
            // The first hit fills the worker's slot from the shared cache, later ones use it.
            let before = hot_hits();
            for _ in 0..3 {
                assert_eq!(ask(name).response_code(), ResponseCode::NoError);
            }
            let deadline = Instant::now() + Duration::from_secs(5);
            while hot_hits() < before + 2 && Instant::now() < deadline {
                std::thread::sleep(Duration::from_millis(10));
            }
            assert!(hot_hits() >= before + 2, "served from the hot answers");
        };
        warm(BLOCKED_WWW);
        warm(ALIAS);

        let handle = &harness.server().engine().policy;
        handle.publish(
            compile(&[order("IT-1", r#"["IT"]"#, "active", "nxdomain", "")], 2),
            NOW,
        );
        let before = hot_hits();
        for _ in 0..3 {
            let blocked = ask(BLOCKED_WWW);
            assert_eq!(blocked.response_code(), ResponseCode::NXDomain);
            assert_eq!(ede_of(&blocked).unwrap().0, 16);
            // The alias is still clean under the new policy: served hot again.
            assert_eq!(ask(ALIAS).answers().len(), 2);
        }
        // An order on the CNAME's target reaches the hot alias too.
        let target = r#", "targets": [{"type": "domain", "value": "other.test"}]"#;
        handle.publish(
            compile(
                &[
                    order("IT-2", r#"["IT"]"#, "active", "nxdomain", "").replace(
                        r#", "targets": [{"type": "subtree", "value": "blocked.test"}]"#,
                        target,
                    ),
                ],
                3,
            ),
            NOW,
        );
        let alias = ask(ALIAS);
        assert_eq!(alias.response_code(), ResponseCode::NXDomain);
        assert_eq!(ede_of(&alias).unwrap().0, 16);
        // The new policy has no IT-1: www.blocked.test is free again.
        assert_eq!(ask(BLOCKED_WWW).answers().len(), 1);
        assert!(
            hot_hits() > before,
            "clean answers kept coming from the hot table"
        );
    }

    #[test]
    fn a_name_blocked_only_in_italy_is_a_hot_hit_for_germany_exactly_across_publishes() {
        // One UDP worker (one table of hot answers), a listener pinned to Italy, one to Germany.
        let harness = Harness::start_with_policy(
            "127.0.0.1:0".parse().unwrap(),
            |config, _| {
                config.threads = 1;
                config.listeners = ["IT", "DE"]
                    .iter()
                    .map(|code| ListenerConfig {
                        country: country(code),
                        ..ListenerConfig::udp_and_tcp("127.0.0.1:0".parse().unwrap())
                    })
                    .collect();
            },
            engine(&[order("IT-1", r#"["IT"]"#, "active", "nxdomain", "")]),
        );
        let (italy, germany) = (
            harness.server().listeners()[0].addr,
            harness.server().listeners()[1].addr,
        );
        harness.insert(BLOCKED_WWW, &a_response(BLOCKED_WWW, 1));
        let hot_hits = || harness.server().stats().cache_hits_hot;
        let ask = |listener| udp(listener, &edns_query(BLOCKED_WWW, &[]));
        // Counters are refreshed asynchronously: wait until they reach `at_least`.
        let hot_hits_reach = |at_least: u64| {
            let deadline = Instant::now() + Duration::from_secs(5);
            while hot_hits() < at_least && Instant::now() < deadline {
                std::thread::sleep(Duration::from_millis(10));
            }
            hot_hits() >= at_least
        };
        let before = hot_hits();
        for _ in 0..3 {
            assert_eq!(ask(germany).response_code(), ResponseCode::NoError);
            assert_eq!(ask(italy).response_code(), ResponseCode::NXDomain);
        }
        // The first German query fills the slot; the next two are hot; Italy never is.
        assert!(hot_hits_reach(before + 2), "Germany was not served hot");
        std::thread::sleep(Duration::from_millis(50));
        assert_eq!(hot_hits(), before + 2, "Italy must never be served hot");

        // The order now binds Germany too: the next German query is blocked (the publish
        // voided the remembered verdict).
        let handle = &harness.server().engine().policy;
        handle.publish(
            compile(
                &[order("IT-1", r#"["IT", "DE"]"#, "active", "nxdomain", "")],
                2,
            ),
            NOW,
        );
        for _ in 0..2 {
            let blocked = ask(germany);
            assert_eq!(blocked.response_code(), ResponseCode::NXDomain);
            assert_eq!(ede_of(&blocked).unwrap().0, 16);
        }
        // Back to Italy only: Germany resolves, hot again.
        handle.publish(
            compile(&[order("IT-1", r#"["IT"]"#, "active", "nxdomain", "")], 3),
            NOW,
        );
        let before = hot_hits();
        for _ in 0..3 {
            assert_eq!(ask(germany).response_code(), ResponseCode::NoError);
        }
        assert_eq!(ask(italy).response_code(), ResponseCode::NXDomain);
        assert!(
            hot_hits_reach(before + 2),
            "Germany was not served hot again"
        );
    }

    /// A pipeline without sockets: listener `i` is pinned to `COUNTRIES[i]`.
    const COUNTRIES: [&str; 6] = ["IT", "DE", "FR", "ES", "AT", "NL"];

    fn pipeline(policy: CompiledPolicy) -> Pipeline {
        let clock: SharedClock = Arc::new(ManualClock::new(NOW));
        let cache = Arc::new(AnswerCache::new(CacheConfig::default()));
        for (name, response) in [
            (BLOCKED_WWW, a_response(BLOCKED_WWW, 1)),
            (ALIAS, cname_response(ALIAS, BLOCKED_WWW)),
        ] {
            let entry = CachedAnswer::from_message(&response, NOW, cache.config()).unwrap();
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
                    upstreams: vec!["127.0.0.1:9".parse().unwrap()],
                },
                ..ResolverConfig::default()
            },
            cache,
            Arc::clone(&clock),
        )
        .unwrap();
        let any: SocketAddr = "127.0.0.1:0".parse().unwrap();
        let config = ServerConfig {
            listeners: COUNTRIES
                .iter()
                .map(|code| ListenerConfig {
                    country: country(code),
                    ..ListenerConfig::udp_and_tcp(any)
                })
                .collect(),
            ..ServerConfig::default()
        };
        let engine = PolicyEngine::new(
            Arc::new(PolicyHandle::new(policy)),
            Arc::new(Classifier::new(&GeoConfig::default()).unwrap()),
        );
        Pipeline::new(&config, resolver, clock, engine).unwrap()
    }

    /// Runs one query through the full pipeline; the response (a cache hit or a block).
    fn ask(pipeline: &Pipeline, listener: usize, name: &[u8]) -> Message {
        let context = ClientContext {
            client: "127.0.0.1:5300".parse().unwrap(),
            transport: Transport::Udp,
            listener,
            client_subnet: None,
        };
        let mut out = vec![0u8; 4096];
        let counters = juris_server::counters::Counters::default();
        match pipeline.handle(&edns_query(name, &[]), context, &mut out, &counters) {
            Outcome::Respond(len) => Message::from_vec(&out[..len]).unwrap(),
            other => panic!("expected a cache hit or a block: {other:?}"),
        }
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(64))]

        /// A client whose jurisdiction is outside an order's set never gets a block from it,
        /// whatever the order's action, state and target, for the query name and for a CNAME
        /// into the blocked site; and (so the property is not vacuous) a client inside the set
        /// of an active order does.
        #[test]
        fn outside_the_jurisdictions_never_blocked(
            members in proptest::sample::subsequence(COUNTRIES.to_vec(), 1..COUNTRIES.len()),
            active in any::<bool>(),
            action in proptest::sample::select(vec!["refused", "nxdomain", "nodata"]),
            exact in any::<bool>(),
            via_alias in any::<bool>(),
        ) {
            let jurisdictions = serde_json::to_string(&members).unwrap();
            let mut json = order("P-1", &jurisdictions, if active { "active" } else { "shadow" }, action, "");
            if exact {
                json = json.replace(r#""subtree", "value": "blocked.test""#, r#""domain", "value": "www.blocked.test""#);
            }
            let pipeline = pipeline(compile(&[json], 1));
            let name = if via_alias { ALIAS } else { BLOCKED_WWW };
            for (listener, code) in COUNTRIES.iter().enumerate() {
                let response = ask(&pipeline, listener, name);
                if members.contains(code) && active {
                    prop_assert!(ede_of(&response).is_some_and(|(c, _)| c == 16), "{code} inside: {response:?}");
                } else {
                    prop_assert_eq!(response.response_code(), ResponseCode::NoError);
                    prop_assert!(!response.answers().is_empty(), "{} outside got {:?}", code, response);
                    prop_assert!(ede_of(&response).is_none());
                }
            }
        }
    }
}

#[test]
fn a_flush_reaches_the_workers_hot_answers() {
    use juris_resolver::cache::FlushScope;
    // One UDP worker, so every query meets the same table of hot answers.
    let h = Harness::start(|config, _| config.threads = 1);
    const OTHER: &[u8] = b"\x05other\x07example\x03org\x00";
    h.insert(WWW, &a_response(WWW, 1));
    h.insert(OTHER, &a_response(OTHER, 1));
    let hot_hits = || h.server().stats().cache_hits_hot;
    let ask = |name: &[u8]| {
        Message::from_vec(&h.udp(&query(9, 0x0100, name, 1, Some((1232, false, 0, &[]))))).unwrap()
    };
    for name in [WWW, OTHER] {
        for _ in 0..3 {
            assert_eq!(ask(name).answers().len(), 1);
        }
    }
    assert!(hot_hits() >= 4, "served from the hot answers");

    // A new answer in the shared cache after the flush: the worker's old copy is not served.
    let report = h.server().pipeline().flush_cache(FlushScope::Name(WWW));
    assert_eq!(report.answers, 1);
    h.insert(WWW, &a_response(WWW, 2));
    for _ in 0..3 {
        assert_eq!(
            ask(WWW).answers().len(),
            2,
            "the answer stored after the flush"
        );
    }
    // The other name was not flushed: still answered, and hot again once re-judged.
    let before = hot_hits();
    for _ in 0..3 {
        assert_eq!(ask(OTHER).answers().len(), 1);
    }
    assert!(hot_hits() >= before + 2);

    // A subtree flush of the root empties everything: the next query misses (SERVFAIL here,
    // the only upstream is closed).
    let report = h
        .server()
        .pipeline()
        .flush_cache(FlushScope::Subtree(b"\x00"));
    assert_eq!(report.answers, 2);
    assert_eq!(ask(OTHER).response_code(), ResponseCode::ServFail);
    assert_eq!(ask(WWW).response_code(), ResponseCode::ServFail);
}

#[test]
fn rd0_is_answered_from_the_cache_only() {
    let h = Harness::start(|_, _| {});
    const MISSING: &[u8] = b"\x07missing\x07example\x03com\x00";
    h.insert(WWW, &a_response(WWW, 1));
    // RFC 1034 §4.3.1: without RD the cache answers (RD stays clear in the response) …
    for _ in 0..2 {
        let hit = Message::from_vec(&h.udp(&query(5, 0x0000, WWW, 1, Some((1232, false, 0, &[])))))
            .unwrap();
        assert_eq!(hit.response_code(), ResponseCode::NoError);
        assert_eq!(hit.answers().len(), 1);
        assert!(!hit.recursion_desired());
    }
    // … and a miss is not resolved: REFUSED with EDE 20 (Not Authoritative), where the same
    // question with RD gets a resolution attempt (SERVFAIL here: the only upstream is closed).
    let miss =
        Message::from_vec(&h.udp(&query(6, 0x0000, MISSING, 1, Some((1232, false, 0, &[])))))
            .unwrap();
    assert_eq!(miss.response_code(), ResponseCode::Refused);
    assert_eq!(ede_of(&miss).expect("EDE").0, 20);
    assert!(miss.answers().is_empty());
    let stats = h.server().stats();
    assert_eq!(stats.cache_misses, 1);
    let resolved =
        Message::from_vec(&h.udp(&query(7, 0x0100, MISSING, 1, Some((1232, false, 0, &[])))))
            .unwrap();
    assert_eq!(resolved.response_code(), ResponseCode::ServFail);
    // Over TCP the same.
    let mut stream = tcp_connect(h.addr);
    stream
        .write_all(&frame(&query(8, 0x0000, MISSING, 1, None)))
        .unwrap();
    let over_tcp = Message::from_vec(&read_frame(&mut stream)).unwrap();
    assert_eq!(over_tcp.response_code(), ResponseCode::Refused);
}

/// A server with `rate_limit` and WWW in its cache.
fn limited_server(rate_limit: juris_server::RateLimitConfig) -> Harness {
    let h = Harness::start(move |config, _| config.rate_limit = rate_limit);
    h.insert(WWW, &a_response(WWW, 1));
    h
}

/// Ten queries that miss the cache: nx-0.example.com ... nx-9.example.com.
fn nx_queries() -> Vec<Vec<u8>> {
    (0..10u8)
        .map(|i| {
            let name = [
                b"\x04nx-".as_slice(),
                &[b'0' + i],
                b"\x07example\x03com\x00",
            ]
            .concat();
            query(u16::from(i), 0x0100, &name, 1, None)
        })
        .collect()
}

/// Five queries of class CH (3): REFUSED.
fn chaos_queries() -> Vec<Vec<u8>> {
    (0..5)
        .map(|i| {
            let mut q = query(i, 0x0100, WWW, 1, None);
            let class_at = q.len() - 1;
            q[class_at] = 3;
            q
        })
        .collect()
}

/// Sends every query of `queries` from `from` (an address of 127.0.0.0/8), then reads the
/// `expect` responses and checks that no more come (the rest were dropped).
fn flood(addr: SocketAddr, from: Ipv4Addr, queries: &[Vec<u8>], expect: usize) -> Vec<Message> {
    let socket = UdpSocket::bind((from, 0)).unwrap();
    for q in queries {
        socket.send_to(q, addr).unwrap();
    }
    let mut responses = Vec::new();
    let mut buf = [0u8; 4096];
    socket
        .set_read_timeout(Some(Duration::from_secs(5)))
        .unwrap();
    while responses.len() < expect {
        let (n, _) = socket.recv_from(&mut buf).expect("a response is missing");
        responses.push(Message::from_vec(&buf[..n]).unwrap());
    }
    socket
        .set_read_timeout(Some(Duration::from_millis(300)))
        .unwrap();
    assert!(
        socket.recv_from(&mut buf).is_err(),
        "more responses than expected from {from}"
    );
    responses
}

#[test]
fn a_flooding_client_is_rate_limited_while_others_are_answered() {
    use juris_server::{PrefixRates, RateClass, RateLimitConfig, Rates};
    let mut rates = Rates::default();
    rates.set(RateClass::Queries, 5);
    rates.set(RateClass::Refused, 2);
    let h = Harness::start(|config, _| {
        config.rate_limit = RateLimitConfig {
            rates,
            prefixes: vec![PrefixRates {
                prefix: "127.0.0.9/32".parse().unwrap(),
                rates: Rates::default(),
            }],
            slip: 2,
            // One account per address here (all test clients share 127.0.0.0/24).
            ipv4_prefix_len: 32,
            ..RateLimitConfig::default()
        };
    });
    h.insert(WWW, &a_response(WWW, 1));
    let www: Vec<Vec<u8>> = (0..40).map(|i| query(i, 0x0100, WWW, 1, None)).collect();
    // The clock stands still (ManualClock): the flooder's account never refills. 5 answers,
    // then 35 limited: every second one (17) slipped as TC=1, 18 dropped.
    let responses = flood(h.addr, Ipv4Addr::new(127, 0, 0, 2), &www, 22);
    let answered = responses.iter().filter(|m| !m.truncated()).count();
    let slipped: Vec<_> = responses.iter().filter(|m| m.truncated()).collect();
    assert_eq!((answered, slipped.len()), (5, 17));
    assert!(responses
        .iter()
        .filter(|m| !m.truncated())
        .all(|m| m.answers().len() == 1));
    assert!(slipped
        .iter()
        .all(|m| m.answers().is_empty() && m.response_code() == ResponseCode::NoError));
    // Another client is answered meanwhile.
    let other = flood(h.addr, Ipv4Addr::new(127, 0, 0, 3), &www[..5], 5);
    assert!(other
        .iter()
        .all(|m| !m.truncated() && m.answers().len() == 1));
    // REFUSED responses have their own rate (2): 5 queries of class CH, 2 refused, then 3
    // limited: one slipped (TC=1, REFUSED kept), two dropped.
    let chaos = chaos_queries();
    let refused = flood(h.addr, Ipv4Addr::new(127, 0, 0, 4), &chaos, 3);
    assert!(refused
        .iter()
        .all(|m| m.response_code() == ResponseCode::Refused));
    assert_eq!(refused.iter().filter(|m| m.truncated()).count(), 1);
    // An exempt prefix is never limited.
    let exempt = flood(h.addr, Ipv4Addr::new(127, 0, 0, 9), &www, 40);
    assert!(exempt.iter().all(|m| !m.truncated()));
    let stats = h.server().stats();
    let queries = RateClass::Queries as usize;
    let refused_class = RateClass::Refused as usize;
    assert_eq!(stats.rate_limited[0][queries], 18, "dropped queries");
    assert_eq!(stats.rate_limited[1][queries], 17, "slipped queries");
    assert_eq!(stats.rate_limited[0][refused_class], 2);
    assert_eq!(stats.rate_limited[1][refused_class], 1);
}

#[test]
fn a_random_subdomain_flooder_is_limited_on_its_misses_while_its_hits_are_answered() {
    use juris_server::{RateClass, RateLimitConfig, Rates};
    let mut rates = Rates::default();
    rates.set(RateClass::Misses, 3);
    let h = limited_server(RateLimitConfig {
        rates,
        slip: 2,
        ipv4_prefix_len: 32,
        ..RateLimitConfig::default()
    });
    // nx-0.example.com ... nx-9.example.com: every one a cache miss.
    let misses = nx_queries();
    // The clock stands still: 3 misses are resolved (this harness has no upstream: SERVFAIL),
    // 7 are limited before any resolution: every second one (3) slipped as TC=1, 4 dropped.
    let responses = flood(h.addr, Ipv4Addr::new(127, 0, 0, 5), &misses, 6);
    let resolved = responses.iter().filter(|m| !m.truncated()).count();
    assert_eq!(resolved, 3);
    assert!(responses
        .iter()
        .filter(|m| m.truncated())
        .all(|m| m.answers().is_empty() && m.response_code() == ResponseCode::NoError));
    let stats = h.server().stats();
    assert_eq!(stats.cache_misses, 10);
    // Its cache hits are not misses: all answered.
    let www: Vec<Vec<u8>> = (0..20).map(|i| query(i, 0x0100, WWW, 1, None)).collect();
    let hits = flood(h.addr, Ipv4Addr::new(127, 0, 0, 5), &www, 20);
    assert!(hits
        .iter()
        .all(|m| !m.truncated() && m.answers().len() == 1));
    // Another client's misses have their own account.
    let other = flood(h.addr, Ipv4Addr::new(127, 0, 0, 6), &misses[..3], 3);
    assert!(other.iter().all(|m| !m.truncated()));
    let stats = h.server().stats();
    let class = RateClass::Misses as usize;
    assert_eq!(stats.rate_limited[0][class], 4, "dropped misses");
    assert_eq!(stats.rate_limited[1][class], 3, "slipped misses");
}

#[test]
fn limited_misses_are_all_dropped_with_a_misses_slip_of_0_while_other_classes_still_slip() {
    use juris_server::{RateClass, RateLimitConfig, Rates};
    let mut rates = Rates::default();
    rates.set(RateClass::Misses, 3);
    rates.set(RateClass::Refused, 2);
    let h = limited_server(RateLimitConfig {
        rates,
        slip: 2,
        misses_slip: Some(0),
        ipv4_prefix_len: 32,
        ..RateLimitConfig::default()
    });
    let misses = nx_queries();
    // The clock stands still: 3 misses are resolved (SERVFAIL: no upstream here), the 7
    // limited ones are all dropped: not one truncated answer.
    let responses = flood(h.addr, Ipv4Addr::new(127, 0, 0, 7), &misses, 3);
    assert!(responses.iter().all(|m| !m.truncated()));
    // The same client's hits are answered.
    let www: Vec<Vec<u8>> = (0..5).map(|i| query(i, 0x0100, WWW, 1, None)).collect();
    let hits = flood(h.addr, Ipv4Addr::new(127, 0, 0, 7), &www, 5);
    assert!(hits
        .iter()
        .all(|m| !m.truncated() && m.answers().len() == 1));
    // Another class keeps `slip`: 5 REFUSED at a rate of 2, 3 limited, one of them slipped.
    let chaos = chaos_queries();
    let refused = flood(h.addr, Ipv4Addr::new(127, 0, 0, 7), &chaos, 3);
    assert_eq!(refused.iter().filter(|m| m.truncated()).count(), 1);
    let stats = h.server().stats();
    let class = RateClass::Misses as usize;
    assert_eq!(stats.rate_limited[0][class], 7, "dropped misses");
    assert_eq!(stats.rate_limited[1][class], 0, "slipped misses");
    assert_eq!(stats.rate_limited[1][RateClass::Refused as usize], 1);
}

/// An upstream for forwarding on loopback that holds the queries it receives until none came
/// for a moment (or 64 are waiting), then answers them all at once in reverse order: the
/// misses behind them complete together, in the same turn of a worker's runtime, and their
/// responses leave in one batch (design 0047). Each A answer's address is derived from the
/// query name ([`burst_address`]).
struct BurstUpstream {
    addr: SocketAddr,
    stop: Arc<std::sync::atomic::AtomicBool>,
    thread: Option<std::thread::JoinHandle<usize>>,
}

fn burst_address(name: &[u8]) -> [u8; 4] {
    let sum = name
        .iter()
        .fold(0u32, |h, b| h.wrapping_mul(31).wrapping_add(u32::from(*b)));
    [10, (sum >> 16) as u8, (sum >> 8) as u8, sum as u8]
}

impl BurstUpstream {
    fn start() -> Self {
        let socket = UdpSocket::bind("127.0.0.1:0").unwrap();
        socket
            .set_read_timeout(Some(Duration::from_millis(20)))
            .unwrap();
        let addr = socket.local_addr().unwrap();
        let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
        let stopped = Arc::clone(&stop);
        let thread = std::thread::spawn(move || {
            let mut answered = 0;
            let mut held: Vec<(Vec<u8>, SocketAddr)> = Vec::new();
            let mut buf = [0u8; 2048];
            while !stopped.load(std::sync::atomic::Ordering::Relaxed) {
                // A timeout (nothing came for 20 ms) is not an error here.
                if let Ok((len, from)) = socket.recv_from(&mut buf) {
                    held.push((buf[..len].to_vec(), from));
                }
                if held.is_empty() || (held.len() < 64 && !socket_idle(&socket)) {
                    continue;
                }
                for (query, from) in held.drain(..).rev() {
                    if let Some(response) = burst_response(&query) {
                        socket.send_to(&response, from).unwrap();
                        answered += 1;
                    }
                }
            }
            answered
        });
        Self {
            addr,
            stop,
            thread: Some(thread),
        }
    }

    /// Stops the thread; how many queries it answered.
    fn stop(mut self) -> usize {
        self.stop.store(true, std::sync::atomic::Ordering::Relaxed);
        self.thread.take().unwrap().join().unwrap()
    }
}

/// Whether nothing is waiting on the socket (a peek that does not wait).
fn socket_idle(socket: &UdpSocket) -> bool {
    socket.set_nonblocking(true).unwrap();
    let idle = socket.peek_from(&mut [0u8; 1]).is_err();
    socket.set_nonblocking(false).unwrap();
    idle
}

/// The answer to one query: its question echoed (with any OPT dropped), one A record.
fn burst_response(query: &[u8]) -> Option<Vec<u8>> {
    let mut end = 12;
    while *query.get(end)? != 0 {
        end += 1 + usize::from(query[end]);
    }
    let name = query.get(12..=end)?;
    let question = query.get(12..end + 5)?;
    let mut m = query.get(..2)?.to_vec();
    m.extend_from_slice(&[0x81, 0x80, 0, 1, 0, 1, 0, 0, 0, 0]);
    m.extend_from_slice(question);
    m.extend_from_slice(&[0xC0, 12, 0, 1, 0, 1, 0, 0, 1, 44, 0, 4]);
    m.extend_from_slice(&burst_address(&name.to_ascii_lowercase()));
    Some(m)
}

#[test]
fn many_concurrent_misses_over_udp_are_each_answered_once_with_their_own_id_and_answer() {
    let upstream = BurstUpstream::start();
    let clock = Arc::new(ManualClock::new(NOW));
    let shared: SharedClock = clock.clone();
    let cache = Arc::new(AnswerCache::new(CacheConfig::default()));
    let resolver = Resolver::new(
        ResolverConfig {
            mode: Mode::Forward {
                upstreams: vec![upstream.addr],
            },
            allow_loopback_upstreams: true,
            // The upstream's answers are unsigned and `burst.test` is no signed zone.
            dnssec: juris_resolver::dnssec::ValidatorConfig {
                enabled: false,
                ..Default::default()
            },
            query_timeout: Duration::from_secs(3),
            resolution_deadline: Duration::from_secs(10),
            ..ResolverConfig::default()
        },
        Arc::clone(&cache),
        Arc::clone(&shared),
    )
    .unwrap();
    let config = ServerConfig {
        listeners: vec![ListenerConfig::udp_and_tcp("127.0.0.1:0".parse().unwrap())],
        // One worker: every miss on the same runtime, so they share its outbox; a small
        // batch, so a burst also fills it and sends it before the runtime parks.
        threads: 1,
        async_threads: 1,
        udp_batch_size: 8,
        ..ServerConfig::default()
    };
    let server = start(config, resolver, shared).unwrap();
    let addr = server.listeners()[0].addr;
    // 4 clients, 300 distinct names, every query sent before any answer is read.
    const QUERIES: u16 = 300;
    let clients: Vec<UdpSocket> = (0..4)
        .map(|_| {
            let socket = UdpSocket::bind("127.0.0.1:0").unwrap();
            socket
                .set_read_timeout(Some(Duration::from_secs(10)))
                .unwrap();
            socket
        })
        .collect();
    let name = |i: u16| {
        let label = format!("n{i}");
        let mut wire = vec![label.len() as u8];
        wire.extend_from_slice(label.as_bytes());
        wire.extend_from_slice(b"\x05burst\x04test\x00");
        wire
    };
    let id = |i: u16| 0x4000 + i * 7;
    for i in 0..QUERIES {
        let client = &clients[usize::from(i % 4)];
        client
            .send_to(
                &query(id(i), 0x0100, &name(i), 1, Some((1232, false, 0, &[]))),
                addr,
            )
            .unwrap();
        if i % 50 == 49 {
            // Paced a little, so the server's receive buffer never overflows.
            std::thread::sleep(Duration::from_millis(5));
        }
    }
    let mut seen = std::collections::HashSet::new();
    let mut buf = vec![0u8; 4096];
    for (c, client) in clients.iter().enumerate() {
        let expected = (0..QUERIES).filter(|i| usize::from(i % 4) == c).count();
        for _ in 0..expected {
            let (len, from) = client.recv_from(&mut buf).expect("an answer to every miss");
            assert_eq!(from, addr);
            let message = Message::from_vec(&buf[..len]).unwrap();
            let i = (message.id() - 0x4000) / 7;
            assert_eq!(id(i), message.id(), "an ID this client sent");
            assert_eq!(usize::from(i % 4), c, "answered to the client that asked");
            assert!(seen.insert(i), "query {i} answered twice");
            assert_eq!(
                message.response_code(),
                ResponseCode::NoError,
                "{:?}",
                ede_of(&message)
            );
            assert_eq!(
                message.queries()[0].name().to_string(),
                format!("n{i}.burst.test."),
                "the question of this ID"
            );
            let want = burst_address(&name(i));
            match message.answers().first().map(|r| r.data()) {
                Some(RData::A(a)) => assert_eq!(a.0.octets(), want, "the answer of this name"),
                other => panic!("query {i}: {other:?}"),
            }
        }
    }
    assert_eq!(seen.len(), usize::from(QUERIES));
    let stats = server.stats();
    assert_eq!(stats.cache_misses, u64::from(QUERIES));
    assert_eq!(stats.responses_by_rcode[0], u64::from(QUERIES));
    server.shutdown();
    assert_eq!(
        upstream.stop(),
        usize::from(QUERIES),
        "one upstream query per miss"
    );
}

/// Sends `queries` from `from` and returns what came back within 300 ms (drops expected).
fn send_and_collect(addr: SocketAddr, from: Ipv4Addr, queries: &[Vec<u8>]) -> Vec<Vec<u8>> {
    let socket = UdpSocket::bind((from, 0)).unwrap();
    for q in queries {
        socket.send_to(q, addr).unwrap();
    }
    socket
        .set_read_timeout(Some(Duration::from_millis(300)))
        .unwrap();
    let mut responses = Vec::new();
    let mut buf = [0u8; 4096];
    while let Ok((n, _)) = socket.recv_from(&mut buf) {
        responses.push(buf[..n].to_vec());
    }
    responses
}

#[test]
fn a_prefix_far_over_its_rate_is_dropped_in_the_kernel_except_its_cookie_queries() {
    use juris_server::kdrop::KernelDropConfig;
    use juris_server::{RateClass, RateLimitConfig, Rates};
    let mut rates = Rates::default();
    rates.set(RateClass::Misses, 3);
    let config = RateLimitConfig {
        rates,
        misses_slip: Some(0),
        ipv4_prefix_len: 32,
        kernel_drop: KernelDropConfig {
            after: 4,
            seconds: 600,
            max_prefixes: 8,
        },
        ..RateLimitConfig::default()
    };
    let h = limited_server(config.clone());
    let flooder = Ipv4Addr::new(127, 0, 0, 11);
    // The flooder first gets a server cookie (client cookie only in its query).
    let client_cookie = [0, 10, 0, 8, 1, 2, 3, 4, 5, 6, 7, 8];
    let first = send_and_collect(
        h.addr,
        flooder,
        &[query(
            1,
            0x0100,
            WWW,
            1,
            Some((1232, false, 0, &client_cookie)),
        )],
    );
    assert_eq!(first.len(), 1);
    let at = first[0]
        .windows(4)
        .position(|w| w == [0, 10, 0, 24])
        .expect("a COOKIE option with a server cookie");
    let full_cookie = first[0][at..at + 28].to_vec();
    // Ten misses at a rate of 3, the clock standing still: 3 resolved, 7 limited (dropped);
    // the 4th limited lists 127.0.0.11/32.
    assert_eq!(send_and_collect(h.addr, flooder, &nx_queries()).len(), 3);
    let list = Arc::clone(h.server().pipeline().kernel_drop());
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while list.stats().listed == 0 && std::time::Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(10));
    }
    assert_eq!(
        list.listed()
            .iter()
            .map(|(p, _)| p.to_string())
            .collect::<Vec<_>>(),
        ["127.0.0.11/32"]
    );
    let before = h.server().stats().udp_queries;
    // Now even its cache hits never reach the server...
    let www: Vec<Vec<u8>> = (0..5).map(|i| query(i, 0x0100, WWW, 1, None)).collect();
    assert!(send_and_collect(h.addr, flooder, &www).is_empty());
    assert_eq!(
        h.server().stats().udp_queries,
        before,
        "dropped before user space"
    );
    // ...except a query with its server cookie, answered (and exempt from the limits).
    let with_cookie = query(9, 0x0100, WWW, 1, Some((1232, false, 0, &full_cookie)));
    let answered = send_and_collect(h.addr, flooder, &[with_cookie]);
    assert_eq!(answered.len(), 1);
    let answer = Message::from_vec(answered[0].as_slice()).unwrap();
    assert_eq!(answer.answers().len(), 1);
    // Another client is answered meanwhile.
    assert_eq!(
        send_and_collect(h.addr, Ipv4Addr::new(127, 0, 0, 12), &www).len(),
        5
    );
    // Kernel drops switched off (SIGHUP): the list empties, the flooder's hits are answered.
    h.server()
        .pipeline()
        .set_rate_limit(&RateLimitConfig {
            kernel_drop: KernelDropConfig::default(),
            ..config
        })
        .unwrap();
    assert!(list.listed().is_empty());
    assert_eq!(send_and_collect(h.addr, flooder, &www).len(), 5);
    assert_eq!(list.stats().added, 1);
}
