//! Upstream transport: one query to one server over UDP (fresh socket, random source port and
//! ID), with a retry over TCP when the answer is truncated.
//!
//! Responses are accepted only if they come from the address the query went to, carry the
//! query's ID and QR=1, and repeat the question (name compared case-insensitively, type,
//! class). Anything else arriving on the socket is ignored (it may be a spoofing attempt) and
//! the wait continues until the timeout.
//!
//! # Limitations
//! - No 0x20 case randomisation, no DNS cookies (RFC 7873), no EDNS fallback for servers
//!   that answer FORMERR to EDNS queries (they are treated as failing servers).
//! - TCP connections are not reused or pipelined: one connection per truncated answer.

use std::io;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use domain::base::iana::{Class, Opcode, Rcode};
use domain::base::name::FlattenInto;
use domain::base::{Message, MessageBuilder, Name, ParsedName, Rtype, ToName};
use domain::rdata::AllRecordData;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpStream, UdpSocket};
use tokio::time::{timeout_at, Instant};

use crate::names::Rr;

/// Why one upstream exchange failed. All of these make trying another server sensible.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub(crate) enum UpstreamError {
    /// No matching answer before the timeout.
    #[error("timed out")]
    Timeout,
    /// A socket operation failed.
    #[error("socket error: {0}")]
    Io(io::ErrorKind),
    /// The answer matched the query but could not be parsed.
    #[error("malformed response: {0}")]
    Malformed(&'static str),
    /// The TCP answer did not match the query.
    #[error("response does not match the query")]
    Mismatch,
    /// The query could not be built (name too long...).
    #[error("query could not be built")]
    Build,
}

impl From<io::Error> for UpstreamError {
    fn from(e: io::Error) -> Self {
        Self::Io(e.kind())
    }
}

/// How to ask.
#[derive(Debug, Clone, Copy)]
pub(crate) struct QueryOptions {
    /// Recursion desired (forward mode).
    pub recursion_desired: bool,
    /// Checking disabled (forward mode, echoing the client).
    pub checking_disabled: bool,
    /// EDNS(0) payload size advertised.
    pub edns_buffer_size: u16,
    /// Give up at this instant.
    pub deadline: Instant,
}

/// A parsed upstream response, records owned and names uncompressed.
#[derive(Debug, Clone)]
pub(crate) struct Response {
    /// RCODE (header bits only).
    pub rcode: Rcode,
    /// Authoritative answer bit.
    pub authoritative: bool,
    /// Answer section (class IN only).
    pub answer: Vec<Rr>,
    /// Authority section (class IN only).
    pub authority: Vec<Rr>,
    /// Additional section (class IN only, OPT removed).
    pub additional: Vec<Rr>,
    /// Whether the answer came over TCP.
    pub over_tcp: bool,
}

/// Sends one query and waits for the matching response, retrying over TCP on TC=1.
pub(crate) async fn exchange(
    server: SocketAddr,
    qname: &Name<Bytes>,
    qtype: Rtype,
    options: &QueryOptions,
) -> Result<Response, UpstreamError> {
    let id: u16 = rand::random();
    let query = build_query(id, qname, qtype, options)?;
    tracing::debug!(%server, qname = %qname, %qtype, id, "upstream query (udp)");
    let started = Instant::now();
    let response = timeout_at(
        options.deadline,
        udp_exchange(server, &query, id, qname, qtype, options.edns_buffer_size),
    )
    .await
    .map_err(|_| UpstreamError::Timeout)??;
    let response = match response {
        Some(response) => response,
        None => {
            tracing::debug!(%server, qname = %qname, %qtype, "truncated, retrying over tcp");
            timeout_at(
                options.deadline,
                tcp_exchange(server, &query, id, qname, qtype),
            )
            .await
            .map_err(|_| UpstreamError::Timeout)??
        }
    };
    tracing::trace!(
        %server,
        rcode = %response.rcode,
        answer = response.answer.len(),
        authority = response.authority.len(),
        additional = response.additional.len(),
        tcp = response.over_tcp,
        elapsed_ms = started.elapsed().as_millis() as u64,
        "upstream response"
    );
    Ok(response)
}

fn build_query(
    id: u16,
    qname: &Name<Bytes>,
    qtype: Rtype,
    options: &QueryOptions,
) -> Result<Vec<u8>, UpstreamError> {
    let mut builder = MessageBuilder::new_vec();
    {
        let header = builder.header_mut();
        header.set_id(id);
        header.set_opcode(Opcode::QUERY);
        header.set_rd(options.recursion_desired);
        header.set_cd(options.checking_disabled);
    }
    let mut question = builder.question();
    question
        .push((qname, qtype, Class::IN))
        .map_err(|_| UpstreamError::Build)?;
    let mut additional = question.additional();
    additional
        .opt(|opt| {
            opt.set_udp_payload_size(options.edns_buffer_size);
            // DO=1 so RRSIG, NSEC and NSEC3 come along for later validation.
            opt.set_dnssec_ok(true);
            Ok(())
        })
        .map_err(|_| UpstreamError::Build)?;
    Ok(additional.finish())
}

fn local_any(server: SocketAddr) -> SocketAddr {
    match server.ip() {
        IpAddr::V4(_) => SocketAddr::new(IpAddr::V4(Ipv4Addr::UNSPECIFIED), 0),
        IpAddr::V6(_) => SocketAddr::new(IpAddr::V6(Ipv6Addr::UNSPECIFIED), 0),
    }
}

/// The largest UDP answer accepted for a query advertising `edns_buffer_size` (at least 512,
/// RFC 1035 §2.3.4). The receive buffer has one byte more, so that a server sending more than
/// we advertised is noticed (and asked again over TCP) rather than silently cut.
fn udp_receive_limit(edns_buffer_size: u16) -> usize {
    usize::from(edns_buffer_size.max(512))
}

/// `Ok(None)` means the answer was truncated.
async fn udp_exchange(
    server: SocketAddr,
    query: &[u8],
    id: u16,
    qname: &Name<Bytes>,
    qtype: Rtype,
    edns_buffer_size: u16,
) -> Result<Option<Response>, UpstreamError> {
    // A fresh socket per query: the kernel picks a random ephemeral source port.
    let socket = UdpSocket::bind(local_any(server)).await?;
    socket.send_to(query, server).await?;
    let limit = udp_receive_limit(edns_buffer_size);
    loop {
        // Uninitialised capacity, filled by the kernel and handed on without a copy: no
        // zeroing and no second buffer per exchange.
        let mut buffer = BytesMut::with_capacity(limit + 1);
        let (len, from) = socket.recv_buf_from(&mut buffer).await?;
        if from != server {
            tracing::debug!(%server, %from, "ignoring datagram from an unexpected address");
            continue;
        }
        // Larger than advertised (the kernel may have cut it): if it answers our query,
        // ask again over TCP as for TC=1.
        let oversize = len > limit;
        let bytes = buffer.freeze();
        match check_and_parse_limited(bytes, id, qname, qtype, false, oversize) {
            Ok(parsed) => return Ok(parsed),
            Err(UpstreamError::Mismatch) => {
                tracing::debug!(%server, "ignoring response that does not match the query");
                continue;
            }
            Err(e) => return Err(e),
        }
    }
}

async fn tcp_exchange(
    server: SocketAddr,
    query: &[u8],
    id: u16,
    qname: &Name<Bytes>,
    qtype: Rtype,
) -> Result<Response, UpstreamError> {
    tracing::debug!(%server, qname = %qname, %qtype, id, "upstream query (tcp)");
    let mut stream = TcpStream::connect(server).await?;
    let len = u16::try_from(query.len()).map_err(|_| UpstreamError::Build)?;
    let mut framed = Vec::with_capacity(query.len() + 2);
    framed.extend_from_slice(&len.to_be_bytes());
    framed.extend_from_slice(query);
    stream.write_all(&framed).await?;
    let mut prefix = [0u8; 2];
    stream.read_exact(&mut prefix).await?;
    let len = u16::from_be_bytes(prefix) as usize;
    let mut buffer = vec![0u8; len];
    stream.read_exact(&mut buffer).await?;
    match check_and_parse(Bytes::from(buffer), id, qname, qtype, true)? {
        Some(response) => Ok(response),
        None => Err(UpstreamError::Malformed("truncated answer over TCP")),
    }
}

/// Checks that `bytes` answers our query and parses it; `Ok(None)` when TC=1 over UDP.
pub(crate) fn check_and_parse(
    bytes: Bytes,
    id: u16,
    qname: &Name<Bytes>,
    qtype: Rtype,
    over_tcp: bool,
) -> Result<Option<Response>, UpstreamError> {
    check_and_parse_limited(bytes, id, qname, qtype, over_tcp, false)
}

/// [`check_and_parse`]; with `oversize`, a matching answer counts as truncated (`Ok(None)`).
fn check_and_parse_limited(
    bytes: Bytes,
    id: u16,
    qname: &Name<Bytes>,
    qtype: Rtype,
    over_tcp: bool,
    oversize: bool,
) -> Result<Option<Response>, UpstreamError> {
    let message = Message::from_octets(bytes).map_err(|_| UpstreamError::Mismatch)?;
    let header = message.header();
    if header.id() != id || !header.qr() || header.opcode() != Opcode::QUERY {
        return Err(UpstreamError::Mismatch);
    }
    let rcode = header.rcode();
    let counts = message.header_counts();
    if counts.qdcount() == 0 && rcode != Rcode::NOERROR && rcode != Rcode::NXDOMAIN {
        // FORMERR/NOTIMP/REFUSED answers may omit the question (RFC 1035 leaves it open).
        return Ok(Some(empty_response(rcode, over_tcp)));
    }
    if counts.qdcount() != 1 {
        return Err(UpstreamError::Mismatch);
    }
    let question = message
        .sole_question()
        .map_err(|_| UpstreamError::Mismatch)?;
    if question.qtype() != qtype
        || question.qclass() != Class::IN
        || !question.qname().name_eq(qname)
    {
        return Err(UpstreamError::Mismatch);
    }
    if (header.tc() || oversize) && !over_tcp {
        return Ok(None);
    }
    let mut response = empty_response(rcode, over_tcp);
    response.authoritative = header.aa();
    let mut section = message
        .answer()
        .map_err(|_| UpstreamError::Malformed("answer section"))?;
    parse_section(&mut section, &mut response.answer)?;
    let mut section = message
        .authority()
        .map_err(|_| UpstreamError::Malformed("authority section"))?;
    parse_section(&mut section, &mut response.authority)?;
    let mut section = message
        .additional()
        .map_err(|_| UpstreamError::Malformed("additional section"))?;
    parse_section(&mut section, &mut response.additional)?;
    Ok(Some(response))
}

fn empty_response(rcode: Rcode, over_tcp: bool) -> Response {
    Response {
        rcode,
        authoritative: false,
        answer: Vec::new(),
        authority: Vec::new(),
        additional: Vec::new(),
        over_tcp,
    }
}

fn parse_section(
    section: &mut domain::base::message::RecordSection<'_, Bytes>,
    out: &mut Vec<Rr>,
) -> Result<(), UpstreamError> {
    for record in section {
        let record = record.map_err(|_| UpstreamError::Malformed("record"))?;
        if record.rtype() == Rtype::OPT || record.class() != Class::IN {
            continue;
        }
        let record = record
            .to_any_record::<AllRecordData<Bytes, ParsedName<Bytes>>>()
            .map_err(|_| UpstreamError::Malformed("record data"))?;
        out.push(record.flatten_into());
    }
    Ok(())
}

/// How long to wait for one server: the query timeout, but never past the deadline.
pub(crate) fn attempt_deadline(query_timeout: Duration, overall: Instant) -> Instant {
    (Instant::now() + query_timeout).min(overall)
}

#[cfg(test)]
#[allow(clippy::unwrap_used)] // reason: test code.
mod tests {
    use super::*;

    fn name(s: &str) -> Name<Bytes> {
        Name::bytes_from_str(s).unwrap()
    }

    fn options() -> QueryOptions {
        QueryOptions {
            recursion_desired: false,
            checking_disabled: false,
            edns_buffer_size: 1232,
            deadline: Instant::now() + Duration::from_secs(1),
        }
    }

    fn answer_to(query: &[u8], edit: impl FnOnce(&mut Vec<u8>)) -> Bytes {
        let mut answer = query.to_vec();
        answer[2] |= 0x80; // QR
        edit(&mut answer);
        Bytes::from(answer)
    }

    #[test]
    fn query_has_edns_do_and_question() {
        let query = build_query(7, &name("www.test."), Rtype::AAAA, &options()).unwrap();
        let message = Message::from_octets(query).unwrap();
        assert_eq!(message.header().id(), 7);
        assert!(!message.header().rd());
        let opt = message.opt().unwrap();
        assert!(opt.dnssec_ok());
        assert_eq!(opt.udp_payload_size(), 1232);
        assert_eq!(message.sole_question().unwrap().qtype(), Rtype::AAAA);
    }

    #[test]
    fn mismatches_are_rejected() {
        let qname = name("www.test.");
        let query = build_query(7, &qname, Rtype::A, &options()).unwrap();
        let ok = answer_to(&query, |_| {});
        assert!(check_and_parse(ok.clone(), 7, &qname, Rtype::A, false)
            .unwrap()
            .is_some());
        // Wrong ID, wrong type, wrong name, no QR.
        assert_eq!(
            check_and_parse(ok.clone(), 8, &qname, Rtype::A, false).unwrap_err(),
            UpstreamError::Mismatch
        );
        assert_eq!(
            check_and_parse(ok.clone(), 7, &qname, Rtype::AAAA, false).unwrap_err(),
            UpstreamError::Mismatch
        );
        assert_eq!(
            check_and_parse(ok, 7, &name("xxx.test."), Rtype::A, false).unwrap_err(),
            UpstreamError::Mismatch
        );
        let not_response = Bytes::from(query.clone());
        assert_eq!(
            check_and_parse(not_response, 7, &qname, Rtype::A, false).unwrap_err(),
            UpstreamError::Mismatch
        );
        // Case differences in the echoed name are fine.
        let upper = answer_to(&query, |m| m[13..16].copy_from_slice(b"WWW"));
        assert!(check_and_parse(upper, 7, &qname, Rtype::A, false).is_ok());
        // TC=1 over UDP asks for TCP.
        let truncated = answer_to(&query, |m| m[2] |= 0x02);
        assert!(check_and_parse(truncated, 7, &qname, Rtype::A, false)
            .unwrap()
            .is_none());
    }

    #[test]
    fn answer_larger_than_advertised_goes_to_tcp() {
        let qname = name("www.test.");
        let query = build_query(7, &qname, Rtype::A, &options()).unwrap();
        let ok = answer_to(&query, |_| {});
        assert!(
            check_and_parse_limited(ok.clone(), 7, &qname, Rtype::A, false, true)
                .unwrap()
                .is_none()
        );
        // ...but only when it answers our query.
        assert_eq!(
            check_and_parse_limited(ok, 8, &qname, Rtype::A, false, true).unwrap_err(),
            UpstreamError::Mismatch
        );
        assert_eq!(udp_receive_limit(100), 512);
        assert_eq!(udp_receive_limit(1232), 1232);
    }

    #[test]
    fn garbage_never_panics() {
        let qname = name("www.test.");
        let query = build_query(7, &qname, Rtype::A, &options()).unwrap();
        let base = answer_to(&query, |m| {
            m[7] = 1; // ANCOUNT 1 with no record: malformed
        });
        for cut in 0..base.len() {
            let _ = check_and_parse(base.slice(..cut), 7, &qname, Rtype::A, false);
        }
        for i in 0..base.len() {
            let mut bad = base.to_vec();
            bad[i] ^= 0xFF;
            let _ = check_and_parse(Bytes::from(bad), 7, &qname, Rtype::A, false);
        }
    }
}
