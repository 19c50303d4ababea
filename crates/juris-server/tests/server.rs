//! End-to-end tests of the listeners: a real server on 127.0.0.1 (ephemeral port), queried
//! with raw sockets and hand-made bytes; responses decoded with hickory-proto as an
//! independent parser. Answers come from a pre-filled cache; resolutions fail (the only
//! upstream is a closed loopback port).
#![allow(clippy::unwrap_used, clippy::expect_used)] // reason: tests.

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
use juris_server::{start, DeniedAction, ListenerConfig, RunningServer, ServerConfig};

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
        let server = start(config, resolver, shared).unwrap();
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
    let mut stream = tcp_connect(h.addr);
    let started = Instant::now();
    let mut buf = [0u8; 8];
    let n = stream.read(&mut buf).unwrap_or(0);
    assert_eq!(n, 0, "closed without data");
    assert!(started.elapsed() < Duration::from_secs(4));
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
fn shutdown_is_prompt_and_frees_the_port() {
    let h = Harness::start(|_, _| {});
    let addr = h.addr;
    let mut h = h;
    let started = Instant::now();
    h.server.take().unwrap().shutdown();
    assert!(started.elapsed() < Duration::from_secs(3));
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
