//! A raw DNS client on `hickory-proto` (no code shared with juris) for the packets a
//! polite client never sends: garbage, truncations, pointer loops, responses.
//!
//! ```no_run
//! use juris_testkit::raw;
//! # let server: std::net::SocketAddr = "127.0.0.1:53".parse().unwrap();
//! for (what, packet) in raw::malformed_queries() {
//!     let reply = raw::udp_exchange(server, &packet, raw::SHORT_WAIT);
//!     assert!(reply.as_deref().map_or(true, |r| raw::rcode(r) == Some(1)), "{what}");
//! }
//! ```

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream, UdpSocket};
use std::time::{Duration, Instant};

use hickory_proto::op::{Edns, Message, MessageType, OpCode, Query};
use hickory_proto::rr::{Name, RecordType};

/// How long to wait for an answer that may legitimately never come.
pub const SHORT_WAIT: Duration = Duration::from_millis(700);

/// A well-formed recursive query, with EDNS (1232 bytes) when `edns` is set.
///
/// # Panics
/// When `name` is not a valid domain name.
#[must_use]
pub fn query(name: &str, record_type: RecordType, id: u16, edns: bool) -> Vec<u8> {
    let mut message = Message::new();
    message
        .set_id(id)
        .set_message_type(MessageType::Query)
        .set_op_code(OpCode::Query)
        .set_recursion_desired(true);
    let name = Name::from_ascii(name).unwrap_or_else(|error| panic!("bad name {name}: {error}"));
    message.add_query(Query::query(name, record_type));
    if edns {
        let mut options = Edns::new();
        options.set_max_payload(1232);
        message.set_edns(options);
    }
    message
        .to_vec()
        .unwrap_or_else(|error| panic!("cannot encode a query: {error}"))
}

/// Parses a response with hickory.
///
/// # Errors
/// When the bytes are not a DNS message.
pub fn parse(bytes: &[u8]) -> Result<Message, hickory_proto::ProtoError> {
    Message::from_vec(bytes)
}

/// RCODE from the header (low 4 bits of byte 3); `None` when shorter than a header.
#[must_use]
pub fn rcode(message: &[u8]) -> Option<u8> {
    (message.len() >= 12).then(|| message[3] & 0x0f)
}

/// Message ID from the header.
#[must_use]
pub fn id(message: &[u8]) -> Option<u16> {
    (message.len() >= 2).then(|| u16::from_be_bytes([message[0], message[1]]))
}

/// Sends one datagram from a fresh loopback socket and returns the first reply, if any
/// arrives within `wait`.
#[must_use]
pub fn udp_exchange(server: SocketAddr, packet: &[u8], wait: Duration) -> Option<Vec<u8>> {
    let socket = UdpSocket::bind(("127.0.0.1", 0)).ok()?;
    socket.set_read_timeout(Some(wait)).ok()?;
    socket.send_to(packet, server).ok()?;
    let mut buffer = vec![0; 65_535];
    let (length, _) = socket.recv_from(&mut buffer).ok()?;
    buffer.truncate(length);
    Some(buffer)
}

/// What a TCP exchange produced.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TcpOutcome {
    /// A complete length-prefixed message (prefix removed).
    Message(Vec<u8>),
    /// The server closed the connection without a complete message.
    Closed,
    /// Nothing within the wait (the connection is dropped by us).
    Silent,
    /// Could not connect.
    Refused,
}

/// Connects, writes `bytes` exactly as given (add the 2-byte length yourself, or use
/// [`frame`]), and reads one length-prefixed message.
#[must_use]
pub fn tcp_exchange(server: SocketAddr, bytes: &[u8], wait: Duration) -> TcpOutcome {
    let Ok(mut stream) = TcpStream::connect_timeout(&server, wait) else {
        return TcpOutcome::Refused;
    };
    let _ = stream.set_nodelay(true);
    if stream.write_all(bytes).is_err() {
        return TcpOutcome::Closed;
    }
    read_message(&mut stream, wait)
}

/// Reads one length-prefixed message from `stream`.
#[must_use]
pub fn read_message(stream: &mut TcpStream, wait: Duration) -> TcpOutcome {
    let deadline = Instant::now() + wait;
    let mut received = Vec::new();
    let mut buffer = [0; 4096];
    loop {
        if received.len() >= 2 {
            let length = usize::from(u16::from_be_bytes([received[0], received[1]]));
            if received.len() >= 2 + length {
                return TcpOutcome::Message(received[2..2 + length].to_vec());
            }
        }
        let Some(left) = deadline.checked_duration_since(Instant::now()) else {
            return TcpOutcome::Silent;
        };
        let _ = stream.set_read_timeout(Some(left.max(Duration::from_millis(1))));
        match stream.read(&mut buffer) {
            Ok(0) => return TcpOutcome::Closed,
            Ok(read) => received.extend_from_slice(&buffer[..read]),
            Err(error)
                if matches!(
                    error.kind(),
                    std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                ) =>
            {
                return TcpOutcome::Silent
            }
            Err(_) => return TcpOutcome::Closed,
        }
    }
}

/// `message` with the 2-byte TCP length prefix.
#[must_use]
pub fn frame(message: &[u8]) -> Vec<u8> {
    let length = u16::try_from(message.len()).unwrap_or(u16::MAX);
    let mut framed = length.to_be_bytes().to_vec();
    framed.extend_from_slice(message);
    framed
}

/// Deterministic pseudo-random bytes (xorshift), so failures reproduce.
#[must_use]
pub fn random_bytes(seed: u64, length: usize) -> Vec<u8> {
    let mut state = seed | 1;
    (0..length)
        .map(|_| {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            state.to_be_bytes()[0]
        })
        .collect()
}

/// Random bytes under a query header that cannot be satisfied (QUERY opcode, QR=0,
/// QDCOUNT=1, ANCOUNT=65535: more records than fit), so the only right answers are FORMERR
/// or silence, whatever the random part decodes to.
fn random_query(seed: u64, length: usize) -> Vec<u8> {
    let mut bytes = random_bytes(seed, length.max(12));
    bytes[2..8].copy_from_slice(&[0x01, 0x00, 0x00, 0x01, 0xFF, 0xFF]);
    bytes
}

/// Queries a server must answer with FORMERR or not at all, each with a description.
/// None of them is a well-formed query; every one that carries an ID uses 0xBAD0 + n.
#[must_use]
pub fn malformed_queries() -> Vec<(&'static str, Vec<u8>)> {
    let good = query("www.alpha.test.", RecordType::A, 0xBAD0, false);
    // Header: ID, flags (RD), QDCOUNT=1, AN=NS=AR=0.
    let header = |id: u16, qdcount: u16| {
        let mut bytes = id.to_be_bytes().to_vec();
        bytes.extend_from_slice(&[0x01, 0x00]);
        bytes.extend_from_slice(&qdcount.to_be_bytes());
        bytes.extend_from_slice(&[0, 0, 0, 0, 0, 0]);
        bytes
    };
    let mut pointer_loop = header(0xBAD3, 1);
    // The name at offset 12 is a compression pointer to offset 12: itself.
    pointer_loop.extend_from_slice(&[0xC0, 0x0C, 0x00, 0x01, 0x00, 0x01]);
    let mut pointer_pair = header(0xBAD4, 1);
    // offset 12: label "a" then pointer to 16; offset 16: pointer back to 12.
    pointer_pair.extend_from_slice(&[0x01, b'a', 0xC0, 0x10, 0xC0, 0x0C, 0x00, 0x01, 0x00, 0x01]);
    let mut forward_pointer = header(0xBAD5, 1);
    // A pointer past the end of the message.
    forward_pointer.extend_from_slice(&[0xC0, 0xFF, 0x00, 0x01, 0x00, 0x01]);
    let mut label_overrun = header(0xBAD6, 1);
    // A label claiming 63 bytes with 3 present.
    label_overrun.extend_from_slice(&[0x3F, b'a', b'b', b'c']);
    let mut too_long_name = header(0xBAD7, 1);
    // 5 labels of 63 bytes: 320 bytes of name > 255.
    for _ in 0..5 {
        too_long_name.push(63);
        too_long_name.extend_from_slice(&[b'x'; 63]);
    }
    too_long_name.extend_from_slice(&[0x00, 0x00, 0x01, 0x00, 0x01]);
    let mut bad_label_type = header(0xBAD8, 1);
    // 0x80 is a reserved label type.
    bad_label_type.extend_from_slice(&[0x81, b'a', 0x00, 0x00, 0x01, 0x00, 0x01]);
    let mut counts_lie = header(0xBAD9, 1);
    counts_lie[7] = 5; // ANCOUNT=5 with no records
    counts_lie.extend_from_slice(&good[12..]);
    let truncated_question = {
        let mut bytes = header(0xBAD2, 1);
        bytes.extend_from_slice(&good[12..good.len() - 3]);
        bytes
    };
    vec![
        ("empty datagram", Vec::new()),
        ("five bytes", vec![0xBA, 0xD0, 0x01, 0x00, 0x00]),
        ("header only, QDCOUNT=1", header(0xBAD1, 1)),
        ("header only, QDCOUNT=0", header(0xBADA, 0)),
        ("truncated question", truncated_question),
        ("compression pointer to itself", pointer_loop),
        ("two compression pointers in a loop", pointer_pair),
        ("compression pointer past the end", forward_pointer),
        ("label longer than the packet", label_overrun),
        ("name longer than 255 bytes", too_long_name),
        ("reserved label type", bad_label_type),
        ("ANCOUNT says 5, no records", counts_lie),
        ("random bytes (seed 1)", random_query(1, 40)),
        ("random bytes (seed 2)", random_query(2, 300)),
        ("random bytes (seed 3)", random_query(3, 1500)),
    ]
}
