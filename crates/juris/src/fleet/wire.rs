//! The DNS messages of the fleet: building (`domain::base::MessageBuilder`), parsing
//! (`domain::base::Message`), TSIG (`domain::tsig`: `ServerSequence` signs every message of a
//! transfer, `ClientSequence` checks them), and the client side of a transfer (AXFR, IXFR).

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::str::FromStr;
use std::time::Duration;

use domain::base::iana::{Class, Rcode};
use domain::base::message_builder::{AdditionalBuilder, AnswerBuilder};
use domain::base::name::ParsedName;
use domain::base::{Message, MessageBuilder, Name, Record, Rtype, Ttl, UnknownRecordData};
use domain::rdata::tsig::Time48;
use domain::rdata::Cname;
use domain::tsig::{ClientSequence, Key};

use super::zone::{name_wire, rtype, soa_serial, Diff, Records, Rr, TTL};

/// A message is closed once it holds this many bytes (well under 65535 with the TSIG).
pub const MESSAGE_TARGET: usize = 16_000;

/// A record as the builder takes it.
pub type WireRecord = Record<Name<Vec<u8>>, UnknownRecordData<Vec<u8>>>;

/// The `domain` record of `rr`; `None` if its owner is not a name.
pub fn record(rr: &Rr) -> Option<WireRecord> {
    let owner = Name::from_octets(name_wire(&rr.owner)?).ok()?;
    let data = UnknownRecordData::from_octets(Rtype::from_int(rr.rtype), rr.rdata.clone()).ok()?;
    Some(Record::new(owner, Class::IN, Ttl::from_secs(TTL), data))
}

/// The records of a section, as [`Rr`]s (owner lower-cased, absolute).
pub fn section_records<'a>(
    section: domain::base::message::RecordSection<'a, Vec<u8>>,
) -> Result<Vec<Rr>, String> {
    let mut out = Vec::new();
    for parsed in section {
        let parsed = parsed.map_err(|e| format!("malformed record: {e}"))?;
        if parsed.rtype() == Rtype::TSIG || parsed.rtype() == Rtype::OPT {
            continue;
        }
        let record = parsed
            .to_record::<UnknownRecordData<&[u8]>>()
            .map_err(|e| format!("malformed record: {e}"))?
            .ok_or("malformed record")?;
        let mut owner = record.owner().to_string().to_ascii_lowercase();
        if !owner.ends_with('.') {
            owner.push('.');
        }
        // A CNAME's target may be compressed (RFC 3597 §4; NSD does it in RPZ zones): kept
        // uncompressed, as every `Rr`.
        let rdata = if record.rtype() == Rtype::CNAME {
            let cname = parsed
                .to_record::<Cname<ParsedName<&[u8]>>>()
                .map_err(|e| format!("malformed CNAME: {e}"))?
                .ok_or("malformed CNAME")?;
            let target = cname.data().cname().to_string().to_ascii_lowercase();
            let target = if target.ends_with('.') {
                target
            } else {
                format!("{target}.")
            };
            name_wire(&target).ok_or_else(|| format!("{owner}: malformed CNAME target"))?
        } else {
            record.data().data().to_vec()
        };
        out.push(Rr {
            owner,
            rtype: record.rtype().to_int(),
            rdata,
        });
    }
    Ok(out)
}

/// The data of a message's TSIG record (its time and MAC make it unique per signed request),
/// if it has one.
pub fn tsig_rdata(message: &Message<Vec<u8>>) -> Option<Vec<u8>> {
    let additional = message.additional().ok()?;
    for parsed in additional {
        let parsed = parsed.ok()?;
        if parsed.rtype() == Rtype::TSIG {
            let record = parsed.to_record::<UnknownRecordData<&[u8]>>().ok()??;
            return Some(record.data().data().to_vec());
        }
    }
    None
}

/// Adds `rr` to a message being built.
pub fn push(answer: &mut AnswerBuilder<Vec<u8>>, rr: &Rr) -> Result<(), String> {
    let record = record(rr).ok_or_else(|| format!("{}: not a name", rr.owner))?;
    answer
        .push(record)
        .map_err(|e| format!("{}: message full: {e}", rr.owner))
}

/// Reads one length-prefixed message from a stream.
pub fn read_framed(stream: &mut impl Read) -> std::io::Result<Vec<u8>> {
    let mut len = [0u8; 2];
    stream.read_exact(&mut len)?;
    let mut buffer = vec![0u8; usize::from(u16::from_be_bytes(len))];
    stream.read_exact(&mut buffer)?;
    Ok(buffer)
}

/// Writes one length-prefixed message to a stream.
pub fn write_framed(stream: &mut impl Write, message: &[u8]) -> std::io::Result<()> {
    let len = u16::try_from(message.len())
        .map_err(|_| std::io::Error::other("message longer than 65535 bytes"))?;
    let mut framed = Vec::with_capacity(message.len() + 2);
    framed.extend_from_slice(&len.to_be_bytes());
    framed.extend_from_slice(message);
    stream.write_all(&framed)
}

/// What a transfer brought.
#[derive(Debug)]
pub enum Transfer {
    /// The primary has no newer serial than ours.
    UpToDate,
    /// The whole zone (AXFR, or an IXFR answered in AXFR form).
    Full(u32, Records),
    /// The net difference to our zone (IXFR): applied to it, it gives the zone at the serial.
    Incremental(u32, Diff),
}

/// A request for `zone` (`AXFR`, or `IXFR` from `serial`), signed with `key` if given.
fn request(
    zone: &str,
    ixfr_from: Option<u32>,
    key: Option<&Key>,
    suffix: &str,
) -> Result<(Vec<u8>, Option<ClientSequence<Key>>), String> {
    request_at(zone, ixfr_from, key, suffix, Time48::now())
}

/// [`request`] signed at time `now` (tests: a request from a clock outside the fudge).
pub(super) fn request_at(
    zone: &str,
    ixfr_from: Option<u32>,
    key: Option<&Key>,
    suffix: &str,
    now: Time48,
) -> Result<(Vec<u8>, Option<ClientSequence<Key>>), String> {
    let name: Name<Vec<u8>> = Name::from_str(zone).map_err(|e| format!("{zone}: {e}"))?;
    let mut builder = MessageBuilder::new_vec();
    builder.header_mut().set_id(rand::random());
    let mut question = builder.question();
    let qtype = if ixfr_from.is_some() {
        Rtype::IXFR
    } else {
        Rtype::AXFR
    };
    question
        .push((name.clone(), qtype))
        .map_err(|e| e.to_string())?;
    let mut authority = question.authority();
    if let Some(serial) = ixfr_from {
        let soa =
            UnknownRecordData::from_octets(Rtype::SOA, super::zone::soa_rdata(suffix, serial))
                .map_err(|e| e.to_string())?;
        authority
            .push(Record::new(name, Class::IN, Ttl::from_secs(TTL), soa))
            .map_err(|e| e.to_string())?;
    }
    let mut additional: AdditionalBuilder<Vec<u8>> = authority.additional();
    let sequence = match key {
        Some(key) => Some(
            ClientSequence::request(key.clone(), &mut additional, now)
                .map_err(|e| format!("cannot sign the request: {e}"))?,
        ),
        None => None,
    };
    Ok((additional.finish(), sequence))
}

/// Reports to `primary` that `serial` of `zone` is in force here: an IXFR query over UDP
/// carrying it (signed with `key`), which the primary answers with its SOA (RFC 1995 §2).
/// Three tries, `timeout` each; `Ok` once answered.
pub fn report(
    primary: SocketAddr,
    zone: &str,
    suffix: &str,
    key: Option<&Key>,
    serial: u32,
    timeout: Duration,
) -> Result<(), String> {
    let local = if primary.is_ipv4() {
        "0.0.0.0:0"
    } else {
        "[::]:0"
    };
    let socket = std::net::UdpSocket::bind(local).map_err(|e| format!("report: {e}"))?;
    socket
        .set_read_timeout(Some(timeout))
        .map_err(|e| e.to_string())?;
    let mut buffer = vec![0u8; 65_535];
    for _ in 0..3 {
        // A fresh signature each try: the primary refuses an identical request (a replay).
        let (query, _) = request(zone, Some(serial), key, suffix)?;
        socket
            .send_to(&query, primary)
            .map_err(|e| format!("report to {primary}: {e}"))?;
        while let Ok((len, from)) = socket.recv_from(&mut buffer) {
            if from == primary && len >= 12 && buffer[..2] == query[..2] {
                let rcode = buffer[3] & 0x0f;
                return if rcode == 0 {
                    Ok(())
                } else {
                    Err(format!("{primary} answered the report with RCODE {rcode}"))
                };
            }
        }
    }
    Err(format!("{primary} did not answer the report"))
}

/// Transfers `zone` from `primary` over TCP: IXFR from `have` (its serial and records) when
/// given, else AXFR. Every response must be signed with `key` (when given) and valid; any
/// failure leaves `have` untouched (the caller keeps what it has).
pub fn transfer(
    primary: SocketAddr,
    zone: &str,
    suffix: &str,
    key: Option<&Key>,
    have: Option<(u32, &Records)>,
    timeout: Duration,
) -> Result<Transfer, String> {
    let (query, mut sequence) = request(zone, have.map(|(serial, _)| serial), key, suffix)?;
    let mut stream = TcpStream::connect_timeout(&primary, timeout)
        .map_err(|e| format!("cannot connect to {primary}: {e}"))?;
    stream
        .set_read_timeout(Some(timeout))
        .and_then(|()| stream.set_write_timeout(Some(timeout)))
        .map_err(|e| e.to_string())?;
    write_framed(&mut stream, &query).map_err(|e| format!("{primary}: {e}"))?;
    let mut reader = Reader::new(zone, have);
    loop {
        let bytes =
            read_framed(&mut stream).map_err(|e| format!("{primary}: transfer cut short: {e}"))?;
        let mut message =
            Message::from_octets(bytes).map_err(|_| format!("{primary}: short message"))?;
        if let Some(sequence) = sequence.as_mut() {
            sequence
                .answer(&mut message, Time48::now())
                .map_err(|e| format!("{primary}: TSIG check failed: {e}"))?;
        }
        let rcode = message.header().rcode();
        if rcode != Rcode::NOERROR {
            return Err(format!("{primary} answered {rcode} for {zone}"));
        }
        let answer = message.answer().map_err(|e| format!("{primary}: {e}"))?;
        for rr in section_records(answer)? {
            if let Some(done) = reader.take(rr)? {
                if let Some(sequence) = sequence {
                    sequence
                        .done()
                        .map_err(|e| format!("{primary}: TSIG: {e}"))?;
                }
                return Ok(done);
            }
        }
    }
}

/// The answer records of a transfer, one at a time (RFC 5936 and RFC 1995).
struct Reader<'a> {
    zone: &'a str,
    have: Option<(u32, &'a Records)>,
    /// The serial of the first SOA.
    last: Option<u32>,
    mode: Mode,
    /// AXFR: the zone.
    records: Records,
    /// IXFR: the net difference to `have` so far.
    diff: Diff,
}

enum Mode {
    /// After the first SOA: the second record tells AXFR from IXFR.
    Start,
    Full,
    Deleting,
    Adding,
}

impl<'a> Reader<'a> {
    fn new(zone: &'a str, have: Option<(u32, &'a Records)>) -> Self {
        Reader {
            zone,
            have,
            last: None,
            mode: Mode::Start,
            records: Records::new(),
            diff: Diff::default(),
        }
    }

    fn take(&mut self, rr: Rr) -> Result<Option<Transfer>, String> {
        let soa = if rr.rtype == rtype::SOA {
            if rr.owner != self.zone {
                return Err(format!(
                    "an SOA for {} in the transfer of {}",
                    rr.owner, self.zone
                ));
            }
            Some(soa_serial(&rr.rdata).ok_or("malformed SOA")?)
        } else {
            None
        };
        let Some(last) = self.last else {
            let serial = soa.ok_or("the transfer does not start with an SOA")?;
            self.last = Some(serial);
            return Ok(match self.have {
                // An IXFR answered with the one SOA: nothing newer.
                Some((ours, _)) if ours == serial => Some(Transfer::UpToDate),
                _ => None,
            });
        };
        if !rr.owner.ends_with(self.zone) {
            return Err(format!("{} is outside {}", rr.owner, self.zone));
        }
        match (&self.mode, soa) {
            (Mode::Start, Some(serial)) if self.have.is_some_and(|(s, _)| s == serial) => {
                // IXFR: differences from our serial (our zone is not copied: the net
                // difference is kept).
                self.mode = Mode::Deleting;
            }
            (Mode::Start, Some(serial)) if serial == last => {
                // An empty zone in AXFR form.
                return Ok(Some(Transfer::Full(last, Records::new())));
            }
            (Mode::Start, Some(_)) => return Err("an unexpected SOA".into()),
            (Mode::Start, None) => {
                self.mode = Mode::Full;
                self.records.insert(rr);
            }
            (Mode::Full, Some(serial)) if serial == last => {
                return Ok(Some(Transfer::Full(
                    last,
                    std::mem::take(&mut self.records),
                )));
            }
            (Mode::Full, Some(_)) => return Err("an SOA inside an AXFR".into()),
            (Mode::Full, None) => {
                self.records.insert(rr);
            }
            (Mode::Deleting, Some(_)) => self.mode = Mode::Adding,
            (Mode::Deleting, None) => {
                let have = self.have.is_some_and(|(_, r)| r.contains(&rr));
                if !(self.diff.added.remove(&rr) || have && self.diff.removed.insert(rr.clone())) {
                    return Err(format!("IXFR deletes {} which we do not have", rr.owner));
                }
            }
            (Mode::Adding, Some(serial)) if serial == last => {
                return Ok(Some(Transfer::Incremental(
                    last,
                    std::mem::take(&mut self.diff),
                )));
            }
            (Mode::Adding, Some(_)) => self.mode = Mode::Deleting,
            (Mode::Adding, None) => {
                let have = self.have.is_some_and(|(_, r)| r.contains(&rr));
                if !self.diff.removed.remove(&rr) && !have {
                    self.diff.added.insert(rr);
                }
            }
        }
        Ok(None)
    }
}
