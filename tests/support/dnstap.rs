//! What an NSD server received, from its dnstap stream (and what juris's own dnstap output
//! says: [`listen`] is the collector the telemetry tests point juris at).
//!
//! NSD (Debian builds it with `--enable-dnstap`) writes one dnstap `AUTH_QUERY` message
//! per query it receives, over UDP or TCP, to a Unix socket as a Frame Streams
//! connection. This module is the other end of that socket: it does the bidirectional
//! Frame Streams handshake (READY → ACCEPT, START … STOP → FINISH), decodes the few
//! protobuf fields it needs by hand (no protobuf dependency) and keeps a list of
//! [`ReceivedQuery`]. NSD sends messages asynchronously, within milliseconds; use
//! [`QueryLog::wait_for`] before asserting that something was received, and wait
//! for a positive event before asserting that something was *not* received.

use std::io::{self, Read, Write};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::Path;
use std::sync::{Arc, Condvar, Mutex, PoisonError};
use std::thread;
use std::time::{Duration, Instant};

use hickory_proto::op::Message;
use hickory_proto::rr::RecordType;

const CONTENT_TYPE: &[u8] = b"protobuf:dnstap.Dnstap";
const CONTROL_ACCEPT: u32 = 1;
const CONTROL_START: u32 = 2;
const CONTROL_STOP: u32 = 3;
const CONTROL_READY: u32 = 4;
const CONTROL_FINISH: u32 = 5;
const FIELD_CONTENT_TYPE: u32 = 1;
/// Largest frame accepted; NSD's are a few hundred bytes.
const MAX_FRAME: usize = 1 << 20;

/// Transport a query arrived on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Transport {
    Udp,
    Tcp,
    /// Anything else dnstap can name (DoT, DoH, …): NSD here never sees those.
    Other(u64),
}

/// One query an authoritative server received.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReceivedQuery {
    /// Query name in lower case, absolute, with the final dot (`www.alpha.test.`, `.`).
    pub name: String,
    pub record_type: RecordType,
    pub transport: Transport,
    /// Who sent it, when dnstap says.
    pub client: Option<SocketAddr>,
    /// The query as it came off the wire.
    pub wire: Vec<u8>,
    /// The dnstap `Message.type` (1 AUTH_QUERY, 3 RESOLVER_QUERY, 4 RESOLVER_RESPONSE,
    /// 5 CLIENT_QUERY, 6 CLIENT_RESPONSE, ...).
    pub message_type: u64,
    /// The response message, for *_RESPONSE messages.
    pub response: Option<Vec<u8>>,
    /// Where the response came from (`response_address`, `response_port`), when given.
    pub responder: Option<SocketAddr>,
    /// The `extra` field of the `Dnstap` envelope.
    pub extra: Option<Vec<u8>>,
    /// The whole frame, as received.
    pub frame: Vec<u8>,
}

/// The queries one server has received so far; clones share the same log.
#[derive(Debug, Clone, Default)]
pub struct QueryLog {
    inner: Arc<(Mutex<LogState>, Condvar)>,
}

#[derive(Debug, Default)]
struct LogState {
    queries: Vec<ReceivedQuery>,
    started: bool,
    /// The open connections (clones), so that [`QueryLog::disconnect_all`] can end them.
    connections: Vec<UnixStream>,
    /// Connections accepted so far.
    accepted: usize,
}

impl QueryLog {
    /// Everything received so far.
    #[must_use]
    pub fn all(&self) -> Vec<ReceivedQuery> {
        self.state().queries.clone()
    }

    /// Waits until some received query satisfies `predicate`; returns it, or `None` at
    /// the deadline.
    pub fn wait_for(
        &self,
        timeout: Duration,
        mut predicate: impl FnMut(&ReceivedQuery) -> bool,
    ) -> Option<ReceivedQuery> {
        let deadline = Instant::now() + timeout;
        let (lock, condvar) = &*self.inner;
        let mut state = lock.lock().unwrap_or_else(PoisonError::into_inner);
        loop {
            if let Some(found) = state.queries.iter().find(|query| predicate(query)) {
                return Some(found.clone());
            }
            let left = deadline.checked_duration_since(Instant::now())?;
            state = condvar
                .wait_timeout(state, left)
                .unwrap_or_else(PoisonError::into_inner)
                .0;
        }
    }

    /// Closes every open connection, as a collector that restarts does; senders connect again.
    pub fn disconnect_all(&self) {
        for connection in self.state().connections.drain(..) {
            let _ = connection.shutdown(std::net::Shutdown::Both);
        }
    }

    /// Connections accepted so far.
    #[must_use]
    pub fn connections_accepted(&self) -> usize {
        self.state().accepted
    }

    /// Whether NSD has connected and started its stream.
    pub(crate) fn wait_started(&self, timeout: Duration) -> bool {
        let deadline = Instant::now() + timeout;
        let (lock, condvar) = &*self.inner;
        let mut state = lock.lock().unwrap_or_else(PoisonError::into_inner);
        while !state.started {
            let Some(left) = deadline.checked_duration_since(Instant::now()) else {
                return false;
            };
            state = condvar
                .wait_timeout(state, left)
                .unwrap_or_else(PoisonError::into_inner)
                .0;
        }
        true
    }

    fn state(&self) -> std::sync::MutexGuard<'_, LogState> {
        self.inner.0.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn update(&self, change: impl FnOnce(&mut LogState)) {
        change(&mut self.state());
        self.inner.1.notify_all();
    }
}

/// Listens on `socket_path` for dnstap connections (NSD's, juris's) and records into the
/// returned log. The listener thread ends with the process; it is idle when nobody is connected.
pub fn listen(socket_path: &Path) -> io::Result<QueryLog> {
    let listener = UnixListener::bind(socket_path)?;
    let log = QueryLog::default();
    let for_thread = log.clone();
    thread::Builder::new()
        .name("testkit-dnstap".into())
        .spawn(move || {
            for stream in listener.incoming() {
                let Ok(stream) = stream else { return };
                let log = for_thread.clone();
                if let Ok(clone) = stream.try_clone() {
                    log.update(|state| {
                        state.connections.push(clone);
                        state.accepted += 1;
                    });
                }
                // NSD reconnects after a restart: one reader per connection.
                let _ = thread::Builder::new()
                    .name("testkit-dnstap-reader".into())
                    .spawn(move || {
                        let _ = read_stream(stream, &log);
                    });
            }
        })?;
    Ok(log)
}

fn read_stream(mut stream: UnixStream, log: &QueryLog) -> io::Result<()> {
    loop {
        let length = read_u32(&mut stream)? as usize;
        if length != 0 {
            let frame = read_exact(&mut stream, length)?;
            if let Some(query) = decode_dnstap(&frame) {
                log.update(|state| state.queries.push(query));
            }
            continue;
        }
        // Escape sequence: a control frame follows.
        let length = read_u32(&mut stream)? as usize;
        let control = read_exact(&mut stream, length)?;
        let kind = control.get(..4).map_or(0, |bytes| {
            u32::from_be_bytes([bytes[0], bytes[1], bytes[2], bytes[3]])
        });
        match kind {
            CONTROL_READY => stream.write_all(&control_frame(CONTROL_ACCEPT, true))?,
            CONTROL_START => log.update(|state| state.started = true),
            CONTROL_STOP => {
                stream.write_all(&control_frame(CONTROL_FINISH, false))?;
                return Ok(());
            }
            _ => {}
        }
    }
}

/// `messages`' frames as a Frame Streams file (START with dnstap's content type, the data
/// frames, STOP): what `fstrm_capture` writes and `dnstap-read` reads.
#[must_use]
pub fn fstrm_file(messages: &[ReceivedQuery]) -> Vec<u8> {
    let mut file = control_frame(CONTROL_START, true);
    for message in messages {
        file.extend_from_slice(&u32_len(message.frame.len()).to_be_bytes());
        file.extend_from_slice(&message.frame);
    }
    file.extend_from_slice(&control_frame(CONTROL_STOP, false));
    file
}

fn control_frame(kind: u32, with_content_type: bool) -> Vec<u8> {
    let mut body = kind.to_be_bytes().to_vec();
    if with_content_type {
        body.extend_from_slice(&FIELD_CONTENT_TYPE.to_be_bytes());
        body.extend_from_slice(&u32_len(CONTENT_TYPE.len()).to_be_bytes());
        body.extend_from_slice(CONTENT_TYPE);
    }
    let mut frame = 0u32.to_be_bytes().to_vec();
    frame.extend_from_slice(&u32_len(body.len()).to_be_bytes());
    frame.extend_from_slice(&body);
    frame
}

fn u32_len(length: usize) -> u32 {
    u32::try_from(length).unwrap_or(u32::MAX)
}

fn read_u32(stream: &mut UnixStream) -> io::Result<u32> {
    let mut bytes = [0; 4];
    stream.read_exact(&mut bytes)?;
    Ok(u32::from_be_bytes(bytes))
}

fn read_exact(stream: &mut UnixStream, length: usize) -> io::Result<Vec<u8>> {
    if length > MAX_FRAME {
        return Err(io::Error::new(
            io::ErrorKind::InvalidData,
            "frame too large",
        ));
    }
    let mut bytes = vec![0; length];
    stream.read_exact(&mut bytes)?;
    Ok(bytes)
}

/// Decodes `Dnstap { extra (3), message (14): Message { type (1), socket_protocol (3),
/// query_address (4), response_address (5), query_port (6), response_port (7),
/// query_message (10), response_message (14) } }`; messages without a query message are
/// skipped.
fn decode_dnstap(frame: &[u8]) -> Option<ReceivedQuery> {
    let (mut message, mut extra) = (None, None);
    for (number, value) in fields(frame)? {
        match (number, value) {
            (14, Field::Bytes(bytes)) => message = Some(bytes),
            (3, Field::Bytes(bytes)) => extra = Some(bytes.to_vec()),
            _ => {}
        }
    }
    let message = message?;
    let (mut transport, mut address, mut port, mut wire) = (Transport::Udp, None, None, None);
    let (mut message_type, mut response, mut responder, mut responder_port) = (0, None, None, None);
    for (number, value) in fields(message)? {
        match (number, value) {
            (1, Field::Varint(value)) => message_type = value,
            (5, Field::Bytes(bytes)) => responder = ip_address(bytes),
            (7, Field::Varint(value)) => responder_port = u16::try_from(value).ok(),
            (14, Field::Bytes(bytes)) => response = Some(bytes.to_vec()),
            (3, Field::Varint(1)) => transport = Transport::Udp,
            (3, Field::Varint(2)) => transport = Transport::Tcp,
            (3, Field::Varint(other)) => transport = Transport::Other(other),
            (4, Field::Bytes(bytes)) => address = ip_address(bytes),
            (6, Field::Varint(value)) => port = u16::try_from(value).ok(),
            (10, Field::Bytes(bytes)) => wire = Some(bytes.to_vec()),
            _ => {}
        }
    }
    let wire = wire?;
    let (name, record_type) = match Message::from_vec(&wire) {
        Ok(parsed) => parsed.queries().first().map_or_else(
            || (String::new(), RecordType::Unknown(0)),
            |question| {
                (
                    question.name().to_ascii().to_ascii_lowercase(),
                    question.query_type(),
                )
            },
        ),
        Err(_) => (String::from("<unparseable>"), RecordType::Unknown(0)),
    };
    Some(ReceivedQuery {
        name,
        record_type,
        transport,
        client: address
            .zip(port)
            .map(|(ip, port)| SocketAddr::new(ip, port)),
        wire,
        message_type,
        response,
        responder: responder
            .zip(responder_port)
            .map(|(ip, port)| SocketAddr::new(ip, port)),
        extra,
        frame: frame.to_vec(),
    })
}

fn ip_address(bytes: &[u8]) -> Option<IpAddr> {
    match bytes.len() {
        4 => <[u8; 4]>::try_from(bytes)
            .ok()
            .map(|b| IpAddr::V4(Ipv4Addr::from(b))),
        16 => <[u8; 16]>::try_from(bytes)
            .ok()
            .map(|b| IpAddr::V6(Ipv6Addr::from(b))),
        _ => None,
    }
}

enum Field<'a> {
    Varint(u64),
    Bytes(&'a [u8]),
    Fixed,
}

/// Splits a protobuf message into (field number, value); `None` if malformed.
fn fields(mut bytes: &[u8]) -> Option<Vec<(u64, Field<'_>)>> {
    let mut out = Vec::new();
    while !bytes.is_empty() {
        let key = varint(&mut bytes)?;
        let value = match key & 7 {
            0 => Field::Varint(varint(&mut bytes)?),
            1 => {
                bytes = bytes.get(8..)?;
                Field::Fixed
            }
            2 => {
                let length = usize::try_from(varint(&mut bytes)?).ok()?;
                let (value, rest) = (bytes.get(..length)?, bytes.get(length..)?);
                bytes = rest;
                Field::Bytes(value)
            }
            5 => {
                bytes = bytes.get(4..)?;
                Field::Fixed
            }
            _ => return None,
        };
        out.push((key >> 3, value));
    }
    Some(out)
}

fn varint(bytes: &mut &[u8]) -> Option<u64> {
    let mut value = 0u64;
    for shift in (0..64).step_by(7) {
        let (&byte, rest) = bytes.split_first()?;
        *bytes = rest;
        value |= u64::from(byte & 0x7f) << shift;
        if byte & 0x80 == 0 {
            return Some(value);
        }
    }
    None
}
