//! Answered queries handed to the query log and dnstap writers, off the answer path.
//!
//! When at least one [`AnswerSink`] is set ([`crate::Pipeline::observe_answers`]), every
//! answered query becomes one [`Answered`] (the query and the response as sent, how it was
//! answered, how long it took, the order that blocked it), offered to each sink's bounded
//! channel with `try_send`: a full channel drops it and counts the drop, so a slow writer or
//! collector never slows answering. With no sink set, the pipeline pays one test of an empty
//! `OnceLock` per query and nothing else (`docs/design/0034-query-log-dnstap-metrics.md`).

use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc::{sync_channel, Receiver, SyncSender};
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use juris_policy::OrderInfo;

use crate::pipeline::Transport;

/// How the answer was found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CacheUse {
    /// From the cache (or a UDP worker's hot answers).
    Hit,
    /// Resolved (a cache miss or a stale entry refreshed).
    Miss,
    /// Synthesised without the cache: a block before the cache, an error, a refusal.
    None,
}

impl CacheUse {
    /// `hit`, `miss` or `none`.
    pub fn label(self) -> &'static str {
        match self {
            CacheUse::Hit => "hit",
            CacheUse::Miss => "miss",
            CacheUse::None => "none",
        }
    }
}

/// One answered query.
#[derive(Debug, Clone)]
pub struct Answered {
    /// When it was answered.
    pub time: SystemTime,
    /// How it arrived.
    pub transport: Transport,
    /// The client (after the PROXY protocol, when trusted).
    pub client: SocketAddr,
    /// The listener's configured address, when known.
    pub server: Option<SocketAddr>,
    /// The query as received.
    pub query: Box<[u8]>,
    /// The response as sent.
    pub response: Box<[u8]>,
    /// How the answer was found.
    pub cache: CacheUse,
    /// From receiving the query to the response.
    pub latency: Duration,
    /// The order that blocked the answer, when one did.
    pub order: Option<Arc<OrderInfo>>,
}

/// The sending side of one consumer (the query log, dnstap): cheap to clone, never waits.
#[derive(Debug, Clone)]
pub struct AnswerSink {
    name: &'static str,
    sender: SyncSender<Arc<Answered>>,
    dropped: Arc<AtomicU64>,
}

impl AnswerSink {
    /// A sink named `name` (`querylog`, `dnstap`: its drops are `juris_{name}_dropped_total`)
    /// holding at most `capacity` answers not yet taken, and its receiving side.
    pub fn channel(name: &'static str, capacity: usize) -> (AnswerSink, Receiver<Arc<Answered>>) {
        let (sender, receiver) = sync_channel(capacity.max(1));
        (
            AnswerSink {
                name,
                sender,
                dropped: Arc::default(),
            },
            receiver,
        )
    }

    /// Offers one answer; dropped (and counted) when the channel is full or closed.
    #[inline]
    pub fn offer(&self, answered: &Arc<Answered>) {
        if self.sender.try_send(Arc::clone(answered)).is_err() {
            self.dropped.fetch_add(1, Ordering::Relaxed);
        }
    }

    /// Counts one answer dropped by the consumer itself (e.g. no collector connected).
    pub fn count_drop(&self) {
        self.dropped.fetch_add(1, Ordering::Relaxed);
    }

    /// The drop counter (shared with every clone).
    pub fn drops(&self) -> Arc<AtomicU64> {
        Arc::clone(&self.dropped)
    }

    /// The consumer's name.
    pub fn name(&self) -> &'static str {
        self.name
    }

    /// Answers dropped so far.
    pub fn dropped(&self) -> u64 {
        self.dropped.load(Ordering::Relaxed)
    }
}

/// How much of the client address a consumer keeps.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum ClientAddress {
    /// None of it (the default).
    #[default]
    Omit,
    /// The network only: IPv4 to /24, IPv6 to /48; no port.
    Truncate,
    /// The whole address and port.
    Full,
}

impl ClientAddress {
    /// The address to keep, if any: truncated addresses keep port 0.
    pub fn apply(self, client: SocketAddr) -> Option<SocketAddr> {
        match self {
            ClientAddress::Omit => None,
            ClientAddress::Full => Some(client),
            ClientAddress::Truncate => Some(SocketAddr::new(truncate(client.ip()), 0)),
        }
    }
}

/// IPv4 to its /24, IPv6 to its /48 (IPv4-mapped IPv6 as IPv4).
pub fn truncate(ip: std::net::IpAddr) -> std::net::IpAddr {
    use std::net::IpAddr;
    match ip {
        IpAddr::V4(v4) => {
            let [a, b, c, _] = v4.octets();
            IpAddr::from([a, b, c, 0])
        }
        IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => truncate(IpAddr::V4(v4)),
            None => {
                let mut octets = v6.octets();
                octets[6..].fill(0);
                IpAddr::from(octets)
            }
        },
    }
}

/// What the writers read out of a response: RCODE and the EDE info codes of its OPT.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ResponseFacts {
    /// The RCODE (header only; extended RCODE bits ignored).
    pub rcode: u8,
    /// EDE INFO-CODEs (RFC 8914), in order.
    pub ede: Vec<u16>,
}

/// Reads RCODE and EDE codes from a response; `None` if it is not a DNS message.
pub fn response_facts(message: &[u8]) -> Option<ResponseFacts> {
    use juris_resolver::wire::{counts, record_at, skip_questions};
    const OPT: u16 = 41;
    const EDE: u16 = 15;
    let counts = counts(message).ok()?;
    let rcode = message.get(3)? & 0x0f;
    let mut pos = skip_questions(message, counts.question).ok()?;
    let mut ede = Vec::new();
    let records = u32::from(counts.answer) + u32::from(counts.authority);
    for _ in 0..records {
        pos = record_at(message, pos).ok()?.end();
    }
    for _ in 0..counts.additional {
        let record = record_at(message, pos).ok()?;
        if record.rtype == OPT {
            let mut options = message.get(record.rdata..record.end())?;
            while options.len() >= 4 {
                let code = u16::from_be_bytes([options[0], options[1]]);
                let len = usize::from(u16::from_be_bytes([options[2], options[3]]));
                let data = options.get(4..4 + len)?;
                if code == EDE && data.len() >= 2 {
                    ede.push(u16::from_be_bytes([data[0], data[1]]));
                }
                options = &options[4 + len..];
            }
        }
        pos = record.end();
    }
    Some(ResponseFacts { rcode, ede })
}

/// The question of a message: the name (presentation form, absolute) and the type, if any.
pub fn question(message: &[u8]) -> Option<(String, u16)> {
    use juris_resolver::wire::{read_name_lower, u16_at, HEADER_LEN, MAX_NAME_LEN};
    if juris_resolver::wire::counts(message).ok()?.question == 0 {
        return None;
    }
    let mut name = [0u8; MAX_NAME_LEN];
    let (end, len) = read_name_lower(message, HEADER_LEN, &mut name).ok()?;
    let qtype = u16_at(message, end).ok()?;
    Some((presentation(&name[..len]), qtype))
}

/// A wire name (uncompressed) in presentation form, absolute (`www.example.`, `.`), with
/// dots and unprintable bytes in labels escaped as RFC 1035 says.
fn presentation(wire: &[u8]) -> String {
    let mut out = String::new();
    let mut rest = wire;
    while let Some((&len, tail)) = rest.split_first() {
        if len == 0 {
            break;
        }
        let label = tail.get(..usize::from(len)).unwrap_or(tail);
        for &byte in label {
            match byte {
                b'.' | b'\\' | b'"' | b';' | b'(' | b')' | b'@' | b'$' => {
                    out.push('\\');
                    out.push(char::from(byte));
                }
                0x21..=0x7e => out.push(char::from(byte)),
                other => out.push_str(&format!("\\{other:03}")),
            }
        }
        out.push('.');
        rest = tail.get(usize::from(len)..).unwrap_or_default();
    }
    if out.is_empty() {
        out.push('.');
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn truncation_keeps_the_24_and_the_48() {
        let ip = |s: &str| s.parse::<std::net::IpAddr>().unwrap();
        assert_eq!(truncate(ip("192.0.2.77")), ip("192.0.2.0"));
        assert_eq!(truncate(ip("2001:db8:aa:bb::1")), ip("2001:db8:aa::"));
        assert_eq!(truncate(ip("::ffff:198.51.100.9")), ip("198.51.100.0"));
        let client: SocketAddr = "192.0.2.77:5353".parse().unwrap();
        assert_eq!(ClientAddress::Omit.apply(client), None);
        assert_eq!(ClientAddress::Full.apply(client), Some(client));
        assert_eq!(
            ClientAddress::Truncate.apply(client),
            Some("192.0.2.0:0".parse().unwrap())
        );
    }

    #[test]
    fn facts_of_a_response_with_ede() {
        // Header (NXDOMAIN, QD 1, AR 1), question www.x. A IN, OPT with EDE 15 "t".
        let mut message = vec![0x12, 0x34, 0x81, 0x83, 0, 1, 0, 0, 0, 0, 0, 1];
        message.extend_from_slice(b"\x03WwW\x01x\x00\x00\x01\x00\x01");
        message.extend_from_slice(&[0, 0, 41, 0x04, 0xd0, 0, 0, 0, 0, 0, 7]);
        message.extend_from_slice(&[0, 15, 0, 3, 0, 15, b't']);
        assert_eq!(
            response_facts(&message),
            Some(ResponseFacts {
                rcode: 3,
                ede: vec![15]
            })
        );
        assert_eq!(question(&message), Some(("www.x.".to_owned(), 1)));
        assert_eq!(response_facts(&message[..5]), None);
    }
}
