//! dnstap output (`[dnstap]`): CLIENT_QUERY/CLIENT_RESPONSE for every answered query and
//! RESOLVER_QUERY/RESOLVER_RESPONSE for juris's own queries upstream, as Frame Streams over a
//! Unix socket — what Unbound, Knot Resolver and PowerDNS send to the same collectors
//! (`fstrm_capture`, `dnstap-read`, dnscollector, dnstap-receiver).
//!
//! Two writer threads (client messages, resolver messages), each with its own bounded channel
//! and its own Frame Streams connection (bidirectional handshake: READY → ACCEPT, START … STOP
//! → FINISH). A writer that is not connected tries again at most once a second and drops what
//! arrives meanwhile; a socket write that stalls longer than a second drops the connection.
//! Every drop is counted (`juris_dnstap_dropped_total`); answering never waits.
//!
//! A blocked answer's CLIENT_RESPONSE carries `extra = "juris-order=<order id>"`.
//!
//! The messages are the dnstap schema (`dnstap.proto`, github.com/dnstap/dnstap.pb, released
//! under CC0), transcribed below for `prost`'s derive: only the fields juris fills.

use std::io::{self, Read, Write};
use std::net::IpAddr;
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc::{sync_channel, Receiver};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use anyhow::Context;
use juris_server::telemetry::{AnswerSink, Answered, ClientAddress};
use juris_server::Transport;
use prost::Message as _;

/// `[dnstap]` as validated.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DnstapSettings {
    /// The collector's Unix socket.
    pub socket: PathBuf,
    /// How much of the client address the messages keep.
    pub client: ClientAddress,
    /// Messages waiting at most, per writer.
    pub queue: usize,
    /// `identity` of every message.
    pub identity: Option<String>,
    /// Whether RESOLVER_QUERY/RESOLVER_RESPONSE are sent.
    pub resolver_messages: bool,
}

/// The Frame Streams content type of dnstap.
pub const CONTENT_TYPE: &[u8] = b"protobuf:dnstap.Dnstap";
const CONTROL_ACCEPT: u32 = 1;
const CONTROL_START: u32 = 2;
const CONTROL_STOP: u32 = 3;
const CONTROL_READY: u32 = 4;
const CONTROL_FINISH: u32 = 5;
const FIELD_CONTENT_TYPE: u32 = 1;
/// How long one write (or the handshake) may stall before the connection is given up.
const WRITE_TIMEOUT: Duration = Duration::from_secs(1);
/// How long the handshake may take (a collector under load answers READY late).
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(5);
/// How often a writer without a connection tries to connect.
const RECONNECT_EVERY: Duration = Duration::from_secs(1);

/// The dnstap schema (dnstap.proto), as far as juris fills it.
pub mod schema {
    /// `dnstap.Dnstap`.
    #[derive(Clone, PartialEq, prost::Message)]
    pub struct Dnstap {
        /// Identity of the server.
        #[prost(bytes = "vec", optional, tag = "1")]
        pub identity: Option<Vec<u8>>,
        /// Version of the server.
        #[prost(bytes = "vec", optional, tag = "2")]
        pub version: Option<Vec<u8>>,
        /// Extra data (juris: `juris-order=<id>` on blocked answers).
        #[prost(bytes = "vec", optional, tag = "3")]
        pub extra: Option<Vec<u8>>,
        /// The message.
        #[prost(message, optional, tag = "14")]
        pub message: Option<Message>,
        /// Always MESSAGE (1).
        #[prost(enumeration = "DnstapType", required, tag = "15")]
        pub r#type: i32,
    }

    /// `Dnstap.Type`.
    #[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, prost::Enumeration)]
    #[repr(i32)]
    pub enum DnstapType {
        /// A `Message`.
        Message = 1,
    }

    /// `dnstap.Message`.
    #[derive(Clone, PartialEq, prost::Message)]
    pub struct Message {
        /// The message type.
        #[prost(enumeration = "MessageType", required, tag = "1")]
        pub r#type: i32,
        /// INET (1) or INET6 (2).
        #[prost(enumeration = "SocketFamily", optional, tag = "2")]
        pub socket_family: Option<i32>,
        /// UDP, TCP, DOT, DOH, DOQ.
        #[prost(enumeration = "SocketProtocol", optional, tag = "3")]
        pub socket_protocol: Option<i32>,
        /// The initiator's address.
        #[prost(bytes = "vec", optional, tag = "4")]
        pub query_address: Option<Vec<u8>>,
        /// The responder's address.
        #[prost(bytes = "vec", optional, tag = "5")]
        pub response_address: Option<Vec<u8>>,
        /// The initiator's port.
        #[prost(uint32, optional, tag = "6")]
        pub query_port: Option<u32>,
        /// The responder's port.
        #[prost(uint32, optional, tag = "7")]
        pub response_port: Option<u32>,
        /// When the query was sent or received: seconds.
        #[prost(uint64, optional, tag = "8")]
        pub query_time_sec: Option<u64>,
        /// … nanoseconds.
        #[prost(fixed32, optional, tag = "9")]
        pub query_time_nsec: Option<u32>,
        /// The query, wire form.
        #[prost(bytes = "vec", optional, tag = "10")]
        pub query_message: Option<Vec<u8>>,
        /// When the response was sent or received: seconds.
        #[prost(uint64, optional, tag = "12")]
        pub response_time_sec: Option<u64>,
        /// … nanoseconds.
        #[prost(fixed32, optional, tag = "13")]
        pub response_time_nsec: Option<u32>,
        /// The response, wire form.
        #[prost(bytes = "vec", optional, tag = "14")]
        pub response_message: Option<Vec<u8>>,
    }

    /// `Message.Type` (the ones juris sends).
    #[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, prost::Enumeration)]
    #[repr(i32)]
    pub enum MessageType {
        /// A query juris sent upstream.
        ResolverQuery = 3,
        /// The response it received.
        ResolverResponse = 4,
        /// A client's query juris received.
        ClientQuery = 5,
        /// The response juris sent.
        ClientResponse = 6,
    }

    /// `SocketFamily`.
    #[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, prost::Enumeration)]
    #[repr(i32)]
    pub enum SocketFamily {
        /// IPv4.
        Inet = 1,
        /// IPv6.
        Inet6 = 2,
    }

    /// `SocketProtocol`.
    #[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, prost::Enumeration)]
    #[repr(i32)]
    pub enum SocketProtocol {
        /// UDP.
        Udp = 1,
        /// TCP.
        Tcp = 2,
        /// DNS over TLS.
        Dot = 3,
        /// DNS over HTTPS.
        Doh = 4,
        /// DNS over QUIC.
        Doq = 7,
    }
}

use schema::{Dnstap, DnstapType, Message, MessageType, SocketFamily, SocketProtocol};

/// Starts the client-message writer (and the resolver-message one when configured); the
/// returned sink goes to the pipeline.
pub fn start(settings: &DnstapSettings) -> anyhow::Result<AnswerSink> {
    let (sink, receiver) = AnswerSink::channel("dnstap", settings.queue);
    let writer = Writer::new(settings, sink.drops());
    let client = settings.client;
    let identity = settings.identity.clone();
    spawn("juris-dnstap", move || {
        writer.run(&receiver, |answered: Arc<Answered>| {
            client_frames(&answered, client, identity.as_deref())
        });
    })?;
    if settings.resolver_messages {
        let (sender, receiver) = sync_channel(settings.queue.max(1));
        let writer = Writer::new(settings, sink.drops());
        let identity = settings.identity.clone();
        let drops = sink.drops();
        let installed = juris_resolver::tap::install(Box::new(move |exchange| {
            if sender.try_send(exchange).is_err() {
                drops.fetch_add(1, Ordering::Relaxed);
            }
        }));
        if !installed {
            tracing::warn!(
                "dnstap: the resolver tap was already installed; no RESOLVER_* messages"
            );
        }
        spawn("juris-dnstap-resolver", move || {
            writer.run(&receiver, |exchange| {
                resolver_frames(&exchange, identity.as_deref())
            });
        })?;
    }
    Ok(sink)
}

fn spawn(name: &str, body: impl FnOnce() + Send + 'static) -> anyhow::Result<()> {
    std::thread::Builder::new()
        .name(name.into())
        .spawn(body)
        .with_context(|| format!("dnstap: cannot start {name}"))?;
    Ok(())
}

/// One Frame Streams connection, made again when lost.
struct Writer {
    socket: PathBuf,
    stream: Option<UnixStream>,
    next_attempt: Instant,
    drops: Arc<AtomicU64>,
    warned: bool,
}

impl Writer {
    fn new(settings: &DnstapSettings, drops: Arc<AtomicU64>) -> Self {
        Self {
            socket: settings.socket.clone(),
            stream: None,
            next_attempt: Instant::now(),
            drops,
            warned: false,
        }
    }

    /// Encodes and sends every item until the channel closes.
    fn run<T>(mut self, receiver: &Receiver<T>, frames: impl Fn(T) -> Vec<Vec<u8>>) {
        while let Ok(item) = receiver.recv() {
            let frames = frames(item);
            if !self.send(&frames) {
                self.drops.fetch_add(1, Ordering::Relaxed);
            }
        }
        if let Some(mut stream) = self.stream.take() {
            let _ = stop(&mut stream);
        }
    }

    /// Sends the frames of one item; false when they were dropped.
    fn send(&mut self, frames: &[Vec<u8>]) -> bool {
        if self.stream.is_none() {
            if Instant::now() < self.next_attempt {
                return false;
            }
            self.next_attempt = Instant::now() + RECONNECT_EVERY;
            match connect(&self.socket) {
                Ok(stream) => {
                    tracing::info!(socket = %self.socket.display(), "dnstap: connected");
                    self.stream = Some(stream);
                    self.warned = false;
                }
                Err(error) => {
                    if !self.warned {
                        tracing::warn!(socket = %self.socket.display(), %error,
                            "dnstap: cannot connect to the collector (trying again every second; messages are dropped meanwhile)");
                        self.warned = true;
                    }
                    return false;
                }
            }
        }
        let Some(stream) = self.stream.as_mut() else {
            return false;
        };
        let mut buffer = Vec::new();
        for frame in frames {
            buffer.extend_from_slice(&u32_len(frame.len()).to_be_bytes());
            buffer.extend_from_slice(frame);
        }
        match stream.write_all(&buffer) {
            Ok(()) => true,
            Err(error) => {
                tracing::warn!(%error, "dnstap: the collector went away or stalled; reconnecting");
                self.stream = None;
                false
            }
        }
    }
}

/// Connects and does the bidirectional handshake: READY → ACCEPT, then START.
fn connect(path: &Path) -> io::Result<UnixStream> {
    let mut stream = UnixStream::connect(path)?;
    stream.set_write_timeout(Some(HANDSHAKE_TIMEOUT))?;
    stream.set_read_timeout(Some(HANDSHAKE_TIMEOUT))?;
    stream.write_all(&control(CONTROL_READY, &DNSTAP_FIELDS))?;
    let (kind, body) = read_control(&mut stream)?;
    if kind != CONTROL_ACCEPT || !accepts_dnstap(&body) {
        return Err(io::Error::new(
            io::ErrorKind::InvalidData,
            "the collector did not accept protobuf:dnstap.Dnstap",
        ));
    }
    stream.write_all(&control(CONTROL_START, &DNSTAP_FIELDS))?;
    stream.set_write_timeout(Some(WRITE_TIMEOUT))?;
    Ok(stream)
}

/// STOP, then wait (bounded) for FINISH.
fn stop(stream: &mut UnixStream) -> io::Result<()> {
    stream.write_all(&control(CONTROL_STOP, &[]))?;
    match read_control(stream)? {
        (CONTROL_FINISH, _) => Ok(()),
        _ => Err(io::Error::new(
            io::ErrorKind::InvalidData,
            "expected FINISH",
        )),
    }
}

/// Whether an ACCEPT lists dnstap's content type (or none, which means any).
fn accepts_dnstap(fields: &[u8]) -> bool {
    let mut rest = fields;
    let mut any = true;
    while rest.len() >= 8 {
        let field = u32::from_be_bytes([rest[0], rest[1], rest[2], rest[3]]);
        let len = u32::from_be_bytes([rest[4], rest[5], rest[6], rest[7]]) as usize;
        let Some(value) = rest.get(8..8 + len) else {
            return false;
        };
        if field == FIELD_CONTENT_TYPE {
            any = false;
            if value == CONTENT_TYPE {
                return true;
            }
        }
        rest = &rest[8 + len..];
    }
    any
}

/// The one field READY and START carry: dnstap's content type.
const DNSTAP_FIELDS: [(u32, &[u8]); 1] = [(FIELD_CONTENT_TYPE, CONTENT_TYPE)];

/// An escaped control frame of `kind` with its `(field type, value)` fields: the escape
/// (0), the control frame's length, the type, then each field as type, length, value.
fn control(kind: u32, fields: &[(u32, &[u8])]) -> Vec<u8> {
    let length = 4 + fields
        .iter()
        .map(|(_, value)| 8 + value.len())
        .sum::<usize>();
    let mut frame = Vec::with_capacity(8 + length);
    for word in [0, u32_len(length), kind] {
        frame.extend_from_slice(&word.to_be_bytes());
    }
    for (field, value) in fields {
        frame.extend_from_slice(&field.to_be_bytes());
        frame.extend_from_slice(&u32_len(value.len()).to_be_bytes());
        frame.extend_from_slice(value);
    }
    frame
}

/// Reads one control frame: (type, fields after the type).
fn read_control(stream: &mut UnixStream) -> io::Result<(u32, Vec<u8>)> {
    let mut word = [0u8; 4];
    stream.read_exact(&mut word)?;
    if u32::from_be_bytes(word) != 0 {
        return Err(io::Error::new(
            io::ErrorKind::InvalidData,
            "expected a control frame",
        ));
    }
    stream.read_exact(&mut word)?;
    let len = u32::from_be_bytes(word) as usize;
    if !(4..=512).contains(&len) {
        return Err(io::Error::new(
            io::ErrorKind::InvalidData,
            "bad control frame length",
        ));
    }
    let mut body = vec![0u8; len];
    stream.read_exact(&mut body)?;
    let kind = u32::from_be_bytes([body[0], body[1], body[2], body[3]]);
    Ok((kind, body.split_off(4)))
}

fn u32_len(len: usize) -> u32 {
    u32::try_from(len).unwrap_or(u32::MAX)
}

fn time(at: SystemTime) -> (Option<u64>, Option<u32>) {
    let since = at.duration_since(UNIX_EPOCH).unwrap_or_default();
    (Some(since.as_secs()), Some(since.subsec_nanos()))
}

fn family(ip: IpAddr) -> i32 {
    match ip {
        IpAddr::V4(_) => SocketFamily::Inet as i32,
        IpAddr::V6(_) => SocketFamily::Inet6 as i32,
    }
}

fn address(ip: IpAddr) -> Vec<u8> {
    match ip {
        IpAddr::V4(v4) => v4.octets().to_vec(),
        IpAddr::V6(v6) => v6.octets().to_vec(),
    }
}

fn protocol(transport: Transport) -> i32 {
    (match transport {
        Transport::Udp => SocketProtocol::Udp,
        Transport::Tcp => SocketProtocol::Tcp,
        Transport::Dot => SocketProtocol::Dot,
        Transport::Doh => SocketProtocol::Doh,
        Transport::Doq => SocketProtocol::Doq,
    }) as i32
}

fn envelope(message: Message, identity: Option<&str>, extra: Option<Vec<u8>>) -> Vec<u8> {
    Dnstap {
        identity: identity.map(|i| i.as_bytes().to_vec()),
        version: Some(format!("juris {}", env!("CARGO_PKG_VERSION")).into_bytes()),
        extra,
        message: Some(message),
        r#type: DnstapType::Message as i32,
    }
    .encode_to_vec()
}

/// CLIENT_QUERY and CLIENT_RESPONSE for one answered query.
pub fn client_frames(
    answered: &Answered,
    client: ClientAddress,
    identity: Option<&str>,
) -> Vec<Vec<u8>> {
    let received = answered
        .time
        .checked_sub(answered.latency)
        .unwrap_or(answered.time);
    let (query_sec, query_nsec) = time(received);
    let (response_sec, response_nsec) = time(answered.time);
    let shown = client.apply(answered.client);
    let family_of = shown
        .map(|a| a.ip())
        .or(answered.server.map(|s| s.ip()))
        .unwrap_or(answered.client.ip());
    let base = Message {
        r#type: MessageType::ClientQuery as i32,
        socket_family: Some(family(family_of)),
        socket_protocol: Some(protocol(answered.transport)),
        query_address: shown.map(|a| address(a.ip())),
        query_port: shown.filter(|a| a.port() != 0).map(|a| u32::from(a.port())),
        response_address: answered.server.map(|s| address(s.ip())),
        response_port: answered.server.map(|s| u32::from(s.port())),
        query_time_sec: query_sec,
        query_time_nsec: query_nsec,
        query_message: Some(answered.query.to_vec()),
        response_time_sec: None,
        response_time_nsec: None,
        response_message: None,
    };
    let response = Message {
        r#type: MessageType::ClientResponse as i32,
        response_time_sec: response_sec,
        response_time_nsec: response_nsec,
        response_message: Some(answered.response.to_vec()),
        ..base.clone()
    };
    let extra = answered
        .order
        .as_ref()
        .map(|order| format!("juris-order={}", order.id).into_bytes());
    vec![
        envelope(base, identity, None),
        envelope(response, identity, extra),
    ]
}

/// RESOLVER_QUERY and (when one came) RESOLVER_RESPONSE for one upstream exchange.
pub fn resolver_frames(
    exchange: &juris_resolver::tap::UpstreamExchange,
    identity: Option<&str>,
) -> Vec<Vec<u8>> {
    let (query_sec, query_nsec) = time(exchange.query_time);
    let base = Message {
        r#type: MessageType::ResolverQuery as i32,
        socket_family: Some(family(exchange.server.ip())),
        socket_protocol: Some(if exchange.over_tcp {
            SocketProtocol::Tcp as i32
        } else {
            SocketProtocol::Udp as i32
        }),
        query_address: None,
        query_port: None,
        response_address: Some(address(exchange.server.ip())),
        response_port: Some(u32::from(exchange.server.port())),
        query_time_sec: query_sec,
        query_time_nsec: query_nsec,
        query_message: Some(exchange.query.clone()),
        response_time_sec: None,
        response_time_nsec: None,
        response_message: None,
    };
    let mut frames = vec![envelope(base.clone(), identity, None)];
    if let Some((response, at)) = &exchange.response {
        let (sec, nsec) = time(*at);
        frames.push(envelope(
            Message {
                r#type: MessageType::ResolverResponse as i32,
                response_time_sec: sec,
                response_time_nsec: nsec,
                response_message: Some(response.to_vec()),
                ..base
            },
            identity,
            None,
        ));
    }
    frames
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accept_with_or_without_content_types() {
        assert!(accepts_dnstap(&[]));
        let mut fields = FIELD_CONTENT_TYPE.to_be_bytes().to_vec();
        fields.extend_from_slice(&u32_len(CONTENT_TYPE.len()).to_be_bytes());
        fields.extend_from_slice(CONTENT_TYPE);
        assert!(accepts_dnstap(&fields));
        let mut other = FIELD_CONTENT_TYPE.to_be_bytes().to_vec();
        other.extend_from_slice(&3u32.to_be_bytes());
        other.extend_from_slice(b"foo");
        assert!(!accepts_dnstap(&other));
    }
}
