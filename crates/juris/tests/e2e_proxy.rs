//! End-to-end: juris behind a real load balancer speaking the PROXY protocol v2. Debian's
//! `dnsdist` listens on its own loopback address and forwards to `juris serve` over UDP and
//! TCP with `useProxyProtocol=true`, from a source address that juris trusts
//! (`[server] proxy_protocol_from`). Clients ask dnsdist with `dig` from addresses that an MMDB
//! written here places in Italy or Germany: juris must classify them by the address inside
//! the header (the balancer itself is in no country), so the Italian client gets the Milan
//! order's NXDOMAIN with EDE 16 and the German one the address.
//!
//! Also: a header from a peer that is not trusted is refused (UDP: no answer; TCP: closed),
//! and so is a trusted peer's datagram or connection without a header. The headers in those
//! cases are written here byte by byte from the specification (not with the parser juris
//! uses).
//!
//! Needs `nsd`, `dig`, `dnsdist` and root, like `e2e_policy.rs`.
#![allow(clippy::unwrap_used, clippy::expect_used, reason = "test code")]

use std::fs;
use std::io::Write;
use std::net::{IpAddr, Ipv4Addr, SocketAddr, TcpStream, UdpSocket};
use std::time::Duration;

use hickory_proto::rr::RecordType;
use juris_testkit::addresses::AddressBlock;
use juris_testkit::dig::{Lookup, Response};
use juris_testkit::dnsdist::Dnsdist;
use juris_testkit::hierarchy::{Hierarchy, Zone};
use juris_testkit::juris::Juris;
use juris_testkit::raw::{self, TcpOutcome};
use juris_testkit::tools;
use juris_testkit::world::{CountryWorld, GERMANY, ITALY};

const JURIS: &str = env!("CARGO_BIN_EXE_juris");

const ORDER: &str = r#"{"id": "IT-T-1", "kind": "court_order", "authority": "Tribunale di Milano",
    "reference": "RG 12345/2024", "jurisdictions": ["IT"], "action": "nxdomain",
    "state": "active", "targets": [{"type": "subtree", "value": "kickasstorrents.test"}]}"#;

/// dnsdist's own listen address (host number in the balancer's block).
const BALANCER_LISTEN: u8 = 1;
/// The source address dnsdist uses towards juris: the only trusted one.
const BALANCER_SOURCE: u8 = 2;

fn world() -> Hierarchy {
    Hierarchy::builder()
        .zone(Zone::new("test."))
        .zone(Zone::new("kickasstorrents.test.").records("@ A 192.0.2.10\nwww A 192.0.2.10"))
        .start()
}

struct Setup {
    _hierarchy: Hierarchy,
    juris: Juris,
    dnsdist: Dnsdist,
    world: CountryWorld,
    balancer: AddressBlock,
}

fn setup() -> Setup {
    let hierarchy = world();
    let world = CountryWorld::new(ORDER);
    let balancer = AddressBlock::allocate();
    let config = world.directory.path().join("juris.toml");
    fs::write(
        &config,
        format!(
            "[server]\nproxy_protocol_from = [\"{}/32\"]\n",
            balancer.address(BALANCER_SOURCE)
        ),
    )
    .unwrap();
    // Juris's own start-up probe comes from 127.0.0.1 without a header: it is answered,
    // since only the balancer's source address is trusted.
    let juris = Juris::builder(JURIS)
        .arg("--config")
        .arg(&config)
        .root_hints(hierarchy.root_hints())
        .args(["--threads", "2"])
        .arg("--geoip")
        .arg(&world.mmdb)
        .arg("--orders")
        .arg(&world.orders)
        .start();
    let dnsdist = Dnsdist::start(
        balancer.address(BALANCER_LISTEN),
        balancer.address(BALANCER_SOURCE),
        juris.address(),
    );
    Setup {
        _hierarchy: hierarchy,
        juris,
        dnsdist,
        world,
        balancer,
    }
}

fn ask(setup: &Setup, client: u8, tcp: bool) -> Response {
    let mut lookup = Lookup::dig(setup.dnsdist.address(), "www.kickasstorrents.test.", "A")
        .source(IpAddr::V4(setup.world.clients.address(client)))
        .timeout_seconds(5);
    if tcp {
        lookup = lookup.tcp();
    }
    lookup.run().unwrap_or_else(|failure| panic!("{failure}"))
}

fn assert_blocked(response: &Response, via: &str) {
    assert_eq!(response.status, "NXDOMAIN", "{via}: {response:?}");
    assert!(response.answer_data("A").is_empty(), "{via}");
    let codes: Vec<u16> = response.extended_errors.iter().map(|e| e.code).collect();
    assert_eq!(codes, vec![16], "{via}: {response:?}");
}

fn assert_resolved(response: &Response, via: &str) {
    assert_eq!(response.status, "NOERROR", "{via}: {response:?}");
    assert_eq!(response.answer_data("A"), vec!["192.0.2.10"], "{via}");
    assert!(response.extended_errors.is_empty(), "{via}: {response:?}");
}

/// A PROXY v2 header (PROXY command, IPv4, `protocol` 1 = stream, 2 = datagram), written from
/// the specification's byte layout.
fn v2_header(source: SocketAddr, destination: SocketAddr, protocol: u8) -> Vec<u8> {
    let (SocketAddr::V4(source), SocketAddr::V4(destination)) = (source, destination) else {
        panic!("IPv4 only here");
    };
    let mut header = b"\r\n\r\n\0\r\nQUIT\n".to_vec();
    header.push(0x21); // version 2, PROXY
    header.push(0x10 | protocol); // AF_INET
    header.extend_from_slice(&12u16.to_be_bytes());
    header.extend_from_slice(&source.ip().octets());
    header.extend_from_slice(&destination.ip().octets());
    header.extend_from_slice(&source.port().to_be_bytes());
    header.extend_from_slice(&destination.port().to_be_bytes());
    header
}

fn udp_socket(address: Ipv4Addr) -> UdpSocket {
    let socket = UdpSocket::bind((address, 0)).unwrap();
    socket
        .set_read_timeout(Some(Duration::from_secs(5)))
        .unwrap();
    socket
}

/// The ID of the first response `socket` receives.
fn first_response_id(socket: &UdpSocket) -> u16 {
    let mut buffer = [0u8; 4096];
    let (length, _) = socket.recv_from(&mut buffer).expect("a response");
    raw::id(&buffer[..length]).unwrap()
}

fn tcp_from(address: Ipv4Addr, server: SocketAddr) -> TcpStream {
    let socket = socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::STREAM, None).unwrap();
    socket
        .bind(&SocketAddr::new(IpAddr::V4(address), 0).into())
        .unwrap();
    socket.connect(&server.into()).unwrap();
    socket.into()
}

#[test]
fn clients_behind_dnsdist_are_classified_by_the_address_in_the_proxy_header() {
    let _ = tools::require("dig");
    let setup = setup();
    for tcp in [false, true] {
        let via = if tcp { "dnsdist, TCP" } else { "dnsdist, UDP" };
        assert_blocked(&ask(&setup, ITALY, tcp), &format!("{via}, Italian client"));
        assert_resolved(&ask(&setup, GERMANY, tcp), &format!("{via}, German client"));
    }
    // The balancer's addresses are in no jurisdiction: had juris classified the peer, the
    // Italian client would have got the address too (as the balancer asking directly does).
    let direct = Lookup::dig(setup.juris.address(), "www.kickasstorrents.test.", "A")
        .source(IpAddr::V4(setup.balancer.address(BALANCER_LISTEN)))
        .timeout_seconds(5)
        .run()
        .unwrap();
    assert_resolved(&direct, "the balancer's address, directly");
}

#[test]
fn headers_from_untrusted_peers_and_trusted_peers_without_headers_are_refused() {
    let setup = setup();
    let server = setup.juris.address();
    let name = "www.kickasstorrents.test.";
    let italy = setup.world.clients.address(ITALY);
    let trusted = setup.balancer.address(BALANCER_SOURCE);
    // Warm the cache, so every query below is answered in arrival order.
    assert_blocked(&ask(&setup, ITALY, false), "warm-up");

    // UDP, an Italian client claiming to be German: the header is refused (no answer), the
    // plain query after it on the same socket is answered, and first.
    let socket = udp_socket(italy);
    let germany = SocketAddr::new(IpAddr::V4(setup.world.clients.address(GERMANY)), 5300);
    let mut claimed = v2_header(germany, server, 2);
    claimed.extend_from_slice(&raw::query(name, RecordType::A, 1, true));
    socket.send_to(&claimed, server).unwrap();
    socket
        .send_to(&raw::query(name, RecordType::A, 2, true), server)
        .unwrap();
    assert_eq!(
        first_response_id(&socket),
        2,
        "the untrusted header was answered"
    );

    // UDP from the trusted balancer: a datagram without a header is refused, one with a
    // header is answered for the client it names.
    let socket = udp_socket(trusted);
    socket
        .send_to(&raw::query(name, RecordType::A, 3, true), server)
        .unwrap();
    let mut proxied = v2_header(SocketAddr::new(IpAddr::V4(italy), 5300), server, 2);
    proxied.extend_from_slice(&raw::query(name, RecordType::A, 4, true));
    socket.send_to(&proxied, server).unwrap();
    let mut buffer = [0u8; 4096];
    let (length, _) = socket.recv_from(&mut buffer).unwrap();
    assert_eq!(
        raw::id(&buffer[..length]),
        Some(4),
        "headerless datagram answered"
    );
    let response = raw::parse(&buffer[..length]).unwrap();
    assert_eq!(
        response.response_code(),
        hickory_proto::op::ResponseCode::NXDomain,
        "the proxied Italian client is blocked"
    );

    // TCP: the same two cases close the connection without an answer.
    let wait = Duration::from_secs(5);
    let mut stream = tcp_from(italy, server);
    let mut bytes = v2_header(germany, server, 1);
    bytes.extend_from_slice(&raw::frame(&raw::query(name, RecordType::A, 5, true)));
    stream.write_all(&bytes).unwrap();
    assert_eq!(raw::read_message(&mut stream, wait), TcpOutcome::Closed);
    let mut stream = tcp_from(trusted, server);
    stream
        .write_all(&raw::frame(&raw::query(name, RecordType::A, 6, true)))
        .unwrap();
    assert_eq!(raw::read_message(&mut stream, wait), TcpOutcome::Closed);
    // ... and the trusted balancer with a header is answered over TCP too.
    let mut stream = tcp_from(trusted, server);
    let mut bytes = v2_header(SocketAddr::new(IpAddr::V4(italy), 5300), server, 1);
    bytes.extend_from_slice(&raw::frame(&raw::query(name, RecordType::A, 7, true)));
    stream.write_all(&bytes).unwrap();
    match raw::read_message(&mut stream, wait) {
        TcpOutcome::Message(message) => assert_eq!(raw::rcode(&message), Some(3)),
        other => panic!("no answer over TCP with a header: {other:?}"),
    }
}
