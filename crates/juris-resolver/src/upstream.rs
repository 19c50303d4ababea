//! Upstream transport: one query to one server over UDP (fresh random source port and ID),
//! with a retry over TCP when the answer is truncated.
//!
//! The UDP socket is `connect`ed to the server for the query, which binds it to a
//! kernel-chosen random ephemeral port and makes the kernel drop datagrams from any other
//! address (an ICMP port unreachable from the server ends the exchange at once as a socket
//! error instead of waiting for the timeout). After a clean exchange the socket is
//! disconnected, which releases the port, and kept for a later query, which draws a new one
//! ([`crate::udp_sockets`]; a socket that saw an error or a timeout is closed).
//!
//! Responses are accepted only if they come from the address the query went to, carry the
//! query's ID and QR=1, and repeat the question (name compared case-insensitively, type,
//! class). Anything else arriving on the socket is ignored (it may be a spoofing attempt) and
//! the wait continues until the timeout.
//!
//! # Limitations
//! - No 0x20 case randomisation.
//! - DNS cookies (RFC 7873) are sent with EDNS queries only; a server that answers without a
//!   COOKIE option is not held to it (no "server is known to do cookies" state), so a
//!   spoofed answer without the option is not caught by cookies.
//!
//! # EDNS fallback
//! [`ask`] sends the query with EDNS; a server that answers it with FORMERR or NOTIMP without
//! an OPT record, or with a message that does not parse, is asked again at once without EDNS,
//! and one that answers that is remembered in the infra cache as not supporting EDNS (asked
//! without it for 15 minutes). A server whose EDNS queries time out twice, never having
//! answered one, gets its next query without EDNS. A server seen answering an EDNS query is
//! never downgraded (a forged FORMERR cannot turn DNSSEC off). Queries without EDNS carry no
//! DO bit and accept 512-byte UDP answers (TC=1 goes to TCP).
//!
//! # DNS cookies (RFC 7873 §5.1, §5.3)
//! Every EDNS query carries a COOKIE option: our client cookie for the server
//! ([`crate::infra::InfraCache::client_cookie`]) and the server cookie it sent last (kept in
//! the infra cache). A response that echoes a different client cookie is not an answer to us
//! and is ignored like one with a wrong ID (UDP: the wait goes on; TCP: the exchange fails).
//! A server cookie in a response with our client cookie replaces the remembered one. A
//! BADCOOKIE answer (extended RCODE 23) that brings a new server cookie is asked again once
//! with it; a second BADCOOKIE is returned as the answer (a server failure to the engines).
//!
//! # TCP
//! A truncated answer is asked again over TCP through [`crate::tcp_pool`]: connections per
//! server reused and pipelined (RFC 7766 §6.2.1.1), answers matched by ID and question in any
//! order, bounded per connection, per server and in all; a query whose connection is lost
//! is asked once more on another. EDNS queries over TCP carry an empty edns-tcp-keepalive
//! option (RFC 7828 §3.2.1), so servers that do it tell us how long to keep the connection.

use std::io;
use std::net::SocketAddr;
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use domain::base::iana::{Class, Opcode, Rcode};
use domain::base::name::{FlattenInto, ToLabelIter};
use domain::base::{Message, Name, ParsedName, Rtype, ToName};
use domain::rdata::AllRecordData;
use tokio::time::{timeout_at, Instant};

use crate::infra::ServerCookie;
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
    /// Every upstream TCP connection place is taken (`resolver.limits.tcp_*`).
    #[error("too many upstream tcp queries")]
    TcpBusy,
}

impl From<io::Error> for UpstreamError {
    fn from(e: io::Error) -> Self {
        Self::Io(e.kind())
    }
}

/// How to ask.
#[derive(Debug, Clone)]
pub(crate) struct QueryOptions {
    /// Recursion desired (forward mode).
    pub recursion_desired: bool,
    /// Checking disabled (forward mode, echoing the client).
    pub checking_disabled: bool,
    /// EDNS(0) payload size advertised.
    pub edns_buffer_size: u16,
    /// Send an OPT record (EDNS(0), DO=1); without it the UDP limit is 512 bytes.
    pub edns: bool,
    /// Give up at this instant.
    pub deadline: Instant,
    /// The resolver's upstream TCP connections (a truncated answer is asked again there).
    pub tcp: std::sync::Arc<crate::tcp_pool::TcpPool>,
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
    /// Additional section (class IN only, OPT removed); parsed only for NOERROR responses
    /// without answer records (the only ones whose glue is used), empty otherwise.
    pub additional: Vec<Rr>,
    /// Whether the answer came over TCP.
    pub over_tcp: bool,
    /// The message as received (shared, not copied).
    pub wire: Bytes,
    /// The server cookie of a response that echoed our client cookie (RFC 7873 §5.3).
    pub server_cookie: Option<ServerCookie>,
    /// The extended RCODE is BADCOOKIE (23; the header alone shows 7).
    pub bad_cookie: bool,
}

/// The COOKIE option a query carries: our client cookie for the server, and the server
/// cookie it gave us last, if any.
#[derive(Debug, Clone, Copy)]
pub(crate) struct QueryCookie {
    client: [u8; 8],
    server: Option<ServerCookie>,
}

impl QueryCookie {
    /// The option's length, header included.
    fn option_len(&self) -> usize {
        4 + 8 + self.server.map_or(0, |s| s.as_slice().len())
    }
}

/// [`exchange`] with the EDNS fallback the infra cache remembers per server (module docs).
pub(crate) async fn ask(
    infra: &crate::infra::InfraCache,
    server: SocketAddr,
    qname: &Name<Bytes>,
    qtype: Rtype,
    options: &QueryOptions,
) -> Result<Response, UpstreamError> {
    use crate::infra::EdnsPlan;
    let plain = QueryOptions {
        edns: false,
        ..options.clone()
    };
    let plan = infra.edns_plan(server);
    if plan != EdnsPlan::Edns {
        let result = exchange(infra, server, qname, qtype, &plain).await;
        if plan == EdnsPlan::Probe {
            match &result {
                Ok(response) if !is_rejection(response) => infra.edns_broken(server),
                Err(UpstreamError::Timeout) => infra.edns_timeout(server, true),
                _ => {}
            }
        }
        return result;
    }
    let result = exchange(infra, server, qname, qtype, options).await;
    let rejected = match &result {
        Ok(response) if is_rejection(response) => !has_opt(&response.wire),
        Ok(_) => {
            infra.edns_works(server);
            false
        }
        Err(UpstreamError::Malformed(_)) => true,
        Err(UpstreamError::Timeout) => {
            infra.edns_timeout(server, false);
            false
        }
        Err(_) => false,
    };
    if !rejected || infra.edns_known_to_work(server) || Instant::now() >= options.deadline {
        return result;
    }
    tracing::debug!(%server, qname = %qname, %qtype, "EDNS query rejected, asking without EDNS");
    let retry = exchange(infra, server, qname, qtype, &plain).await;
    if matches!(&retry, Ok(response) if !is_rejection(response)) {
        infra.edns_broken(server);
    }
    retry
}

/// FORMERR or NOTIMP: what a server without EDNS says to an OPT record (RFC 6891 §7).
fn is_rejection(response: &Response) -> bool {
    matches!(response.rcode, Rcode::FORMERR | Rcode::NOTIMP)
}

/// Whether the message carries an OPT record (a server that knows EDNS).
fn has_opt(wire: &Bytes) -> bool {
    Message::from_octets(wire.clone())
        .ok()
        .is_some_and(|message| message.opt().is_some())
}

/// [`exchange_with`] with the cookie the infra cache holds for `server` (EDNS queries only),
/// learning the server cookie of the response; a BADCOOKIE answer that brings a new server
/// cookie is asked again once with it (RFC 7873 §5.3).
async fn exchange(
    infra: &crate::infra::InfraCache,
    server: SocketAddr,
    qname: &Name<Bytes>,
    qtype: Rtype,
    options: &QueryOptions,
) -> Result<Response, UpstreamError> {
    if !options.edns {
        return exchange_with(server, qname, qtype, options, None).await;
    }
    let client = infra.client_cookie(server);
    let mut retried = false;
    loop {
        let cookie = QueryCookie {
            client,
            server: infra.server_cookie(server),
        };
        let response = exchange_with(server, qname, qtype, options, Some(&cookie)).await?;
        let learnt = response.server_cookie;
        if let Some(learnt) = learnt {
            infra.learn_server_cookie(server, learnt);
        }
        if !response.bad_cookie || retried || learnt.is_none() || Instant::now() >= options.deadline
        {
            return Ok(response);
        }
        tracing::debug!(%server, qname = %qname, %qtype, "BADCOOKIE, asking again with the new server cookie");
        retried = true;
    }
}

/// Sends one query and waits for the matching response, retrying over TCP on TC=1. With a
/// `cookie`, a response that echoes another client cookie is ignored as spoofed.
pub(crate) async fn exchange_with(
    server: SocketAddr,
    qname: &Name<Bytes>,
    qtype: Rtype,
    options: &QueryOptions,
    cookie: Option<&QueryCookie>,
) -> Result<Response, UpstreamError> {
    let id: u16 = rand::random();
    let query = build_query(id, qname, qtype, options, cookie)?;
    let expected = Expected {
        id,
        qname,
        qtype,
        client_cookie: cookie.map(|c| c.client),
    };
    tracing::debug!(%server, qname = %qname, %qtype, id, "upstream query (udp)");
    // dnstap's RESOLVER_QUERY/RESPONSE (crate::tap): only when a tap is installed.
    if crate::tap::installed() {
        let sent = std::time::SystemTime::now();
        let result = exchange_sent(server, options, expected, &query).await;
        crate::tap::emit(crate::tap::UpstreamExchange {
            server,
            over_tcp: matches!(&result, Ok(response) if response.over_tcp),
            query,
            query_time: sent,
            response: result
                .as_ref()
                .ok()
                .map(|response| (response.wire.clone(), std::time::SystemTime::now())),
        });
        return result;
    }
    exchange_sent(server, options, expected, &query).await
}

/// [`exchange`] of a query already built.
async fn exchange_sent(
    server: SocketAddr,
    options: &QueryOptions,
    expected: Expected<'_>,
    query: &[u8],
) -> Result<Response, UpstreamError> {
    let (qname, qtype) = (expected.qname, expected.qtype);
    // The clock is read for the trace below only when it is enabled.
    let started = tracing::enabled!(tracing::Level::TRACE).then(Instant::now);
    let response = timeout_at(
        options.deadline,
        udp_exchange(
            server,
            query,
            expected,
            if options.edns {
                options.edns_buffer_size
            } else {
                512
            },
        ),
    )
    .await
    .map_err(|_| UpstreamError::Timeout)??;
    let response = match response {
        Some(response) => response,
        None => {
            tracing::debug!(%server, qname = %qname, %qtype, "truncated, retrying over tcp");
            // Boxed: the rare TCP path should not make every exchange's state larger.
            Box::pin(timeout_at(
                options.deadline,
                tcp_exchange(server, query, expected, options),
            ))
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
        elapsed_ms = started.map_or(0, |started| started.elapsed().as_millis() as u64),
        "upstream response"
    );
    Ok(response)
}

/// The query message: header, the question, and an OPT record (EDNS(0), our payload size,
/// DO=1 so RRSIG, NSEC and NSEC3 come along for later validation). Written directly into a
/// buffer of the exact size: one allocation, no builder.
fn build_query(
    id: u16,
    qname: &Name<Bytes>,
    qtype: Rtype,
    options: &QueryOptions,
    cookie: Option<&QueryCookie>,
) -> Result<Vec<u8>, UpstreamError> {
    let name = qname.as_slice();
    if name.len() > 255 {
        return Err(UpstreamError::Build);
    }
    let mut flags = u16::from(Opcode::QUERY.to_int()) << 11;
    if options.recursion_desired {
        flags |= 0x0100;
    }
    if options.checking_disabled {
        flags |= 0x0010;
    }
    let cookie = cookie.filter(|_| options.edns);
    let cookie_len = cookie.map_or(0, QueryCookie::option_len);
    let mut query = Vec::with_capacity(12 + name.len() + 4 + 11 + cookie_len);
    query.extend_from_slice(&id.to_be_bytes());
    query.extend_from_slice(&flags.to_be_bytes());
    // QDCOUNT 1, ANCOUNT 0, NSCOUNT 0, ARCOUNT 1 (the OPT record) or 0.
    query.extend_from_slice(&[0, 1, 0, 0, 0, 0, 0, u8::from(options.edns)]);
    query.extend_from_slice(name);
    query.extend_from_slice(&qtype.to_int().to_be_bytes());
    query.extend_from_slice(&Class::IN.to_int().to_be_bytes());
    if !options.edns {
        return Ok(query);
    }
    // OPT: root owner, TYPE 41, CLASS = payload size, TTL = extended RCODE 0, version 0,
    // DO=1; the COOKIE option (RFC 7873 §5.1) when there is one.
    query.push(0);
    query.extend_from_slice(&Rtype::OPT.to_int().to_be_bytes());
    query.extend_from_slice(&options.edns_buffer_size.to_be_bytes());
    query.extend_from_slice(&[0, 0, 0x80, 0]);
    // At most 4 + 8 + 32: fits.
    query.extend_from_slice(&(cookie_len as u16).to_be_bytes());
    if let Some(cookie) = cookie {
        query.extend_from_slice(&10u16.to_be_bytes());
        query.extend_from_slice(&((cookie_len - 4) as u16).to_be_bytes());
        query.extend_from_slice(&cookie.client);
        if let Some(server) = &cookie.server {
            query.extend_from_slice(server.as_slice());
        }
    }
    Ok(query)
}

/// The largest UDP answer accepted for a query advertising `edns_buffer_size` (at least 512,
/// RFC 1035 §2.3.4). The receive buffer has one byte more, so that a server sending more than
/// we advertised is noticed (and asked again over TCP) rather than silently cut.
fn udp_receive_limit(edns_buffer_size: u16) -> usize {
    usize::from(edns_buffer_size.max(512))
}

/// What an answer to our query must match: ID and question (checked when parsing) and the
/// client cookie, if we sent one.
#[derive(Clone, Copy)]
struct Expected<'a> {
    id: u16,
    qname: &'a Name<Bytes>,
    qtype: Rtype,
    client_cookie: Option<[u8; 8]>,
}

impl Expected<'_> {
    /// Checks and parses `bytes` ([`check_and_parse_limited`]), then its cookie: one that
    /// echoes another client cookie is [`UpstreamError::Mismatch`].
    fn check(
        &self,
        bytes: Bytes,
        over_tcp: bool,
        oversize: bool,
    ) -> Result<Option<Response>, UpstreamError> {
        let cookie = match &self.client_cookie {
            Some(ours) => {
                Some(response_cookie(&bytes, ours).map_err(|()| UpstreamError::Mismatch)?)
            }
            None => None,
        };
        let parsed =
            check_and_parse_limited(bytes, self.id, self.qname, self.qtype, over_tcp, oversize)?;
        Ok(parsed.map(|mut response| {
            if let Some((server_cookie, bad_cookie)) = cookie {
                response.server_cookie = server_cookie;
                response.bad_cookie = bad_cookie;
            }
            response
        }))
    }
}

/// `Ok(None)` means the answer was truncated.
async fn udp_exchange(
    server: SocketAddr,
    query: &[u8],
    expected: Expected<'_>,
    edns_buffer_size: u16,
) -> Result<Option<Response>, UpstreamError> {
    // A fresh random ephemeral source port per query, drawn by the kernel on connect (a new
    // socket, or a kept one whose port was released: crate::udp_sockets).
    let (socket, sent) = crate::udp_sockets::connected_sent(server, query)?;
    if !sent {
        socket.send(query).await?;
    }
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
        match expected.check(bytes, false, oversize) {
            Ok(parsed) => {
                // A clean exchange: the socket is kept for another query (port released).
                crate::udp_sockets::give_back(socket, server.is_ipv6());
                return Ok(parsed);
            }
            Err(UpstreamError::Mismatch) => {
                tracing::debug!(%server, "ignoring response that does not match the query (ID, question or client cookie)");
                continue;
            }
            Err(e) => return Err(e),
        }
    }
}

/// `query` with its TCP length prefix and, for an EDNS query (whose OPT record is the last
/// one, as [`build_query`] writes it), an empty edns-tcp-keepalive option (RFC 7828 §3.2.1).
fn tcp_framed(query: &[u8], edns: bool, qname: &Name<Bytes>) -> Result<Vec<u8>, UpstreamError> {
    const KEEPALIVE: [u8; 4] = [0, 11, 0, 0];
    let extra = if edns { KEEPALIVE.len() } else { 0 };
    let len = u16::try_from(query.len() + extra).map_err(|_| UpstreamError::Build)?;
    let mut framed = Vec::with_capacity(query.len() + extra + 2);
    framed.extend_from_slice(&len.to_be_bytes());
    framed.extend_from_slice(query);
    if edns {
        // Header, question (name, type, class), then the OPT's owner, type, class, TTL.
        let rdlen_at = 2 + 12 + qname.as_slice().len() + 4 + 1 + 2 + 2 + 4;
        let rdlen = framed
            .get(rdlen_at..rdlen_at + 2)
            .map(|b| u16::from_be_bytes([b[0], b[1]]))
            .ok_or(UpstreamError::Build)?;
        framed[rdlen_at..rdlen_at + 2].copy_from_slice(&(rdlen + 4).to_be_bytes());
        framed.extend_from_slice(&KEEPALIVE);
    }
    Ok(framed)
}

/// One query over TCP through the connection pool ([`crate::tcp_pool`]): reused and
/// pipelined connections. A query whose connection is lost before the answer (closed by the
/// server, garbage) is asked once more; so is one that a reused connection leaves
/// unanswered for half the time left (the connection is retired: a server that keeps the
/// connection but never answers a second query on it leaves the other half to another).
async fn tcp_exchange(
    server: SocketAddr,
    query: &[u8],
    expected: Expected<'_>,
    options: &QueryOptions,
) -> Result<Response, UpstreamError> {
    use crate::tcp_pool::{count_retry, PoolError};
    let (qname, qtype, id) = (expected.qname, expected.qtype, expected.id);
    let deadline = options.deadline;
    let framed = tcp_framed(query, options.edns, qname)?;
    let mut retried = false;
    loop {
        let (conn, reused) = options.tcp.acquire(server).map_err(|e| match e {
            PoolError::Connect(kind) => UpstreamError::Io(kind),
            PoolError::Busy | PoolError::Lost => UpstreamError::TcpBusy,
        })?;
        tracing::debug!(%server, qname = %qname, %qtype, id, reused, "upstream query (tcp)");
        let now = Instant::now();
        let limit = if reused && !retried {
            now + deadline.saturating_duration_since(now) / 2
        } else {
            deadline
        };
        match timeout_at(limit, conn.ask(framed.clone(), id, qname, qtype)).await {
            Ok(Ok(bytes)) => {
                return match expected.check(bytes, true, false)? {
                    Some(response) => Ok(response),
                    None => Err(UpstreamError::Malformed("truncated answer over TCP")),
                };
            }
            Ok(Err(PoolError::Lost)) if !retried => {
                tracing::debug!(%server, "upstream tcp connection lost, asking again");
            }
            Ok(Err(PoolError::Lost)) => {
                return Err(UpstreamError::Io(io::ErrorKind::ConnectionReset))
            }
            Ok(Err(PoolError::Connect(kind))) => return Err(UpstreamError::Io(kind)),
            Ok(Err(PoolError::Busy)) => return Err(UpstreamError::TcpBusy),
            Err(_) if reused && !retried => {
                tracing::debug!(%server, "reused tcp connection left the query unanswered, retiring it");
                conn.retire();
            }
            Err(_) => return Err(UpstreamError::Timeout),
        }
        retried = true;
        count_retry();
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
        return Ok(Some(empty_response(rcode, over_tcp, message.into_octets())));
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
    let mut response = empty_response(rcode, over_tcp, message.as_octets().clone());
    response.authoritative = header.aa();
    let mut section = message
        .answer()
        .map_err(|_| UpstreamError::Malformed("answer section"))?;
    response.answer = Vec::with_capacity(usize::from(counts.ancount()));
    parse_section(&mut section, qname, &mut response.answer)?;
    // An answer holding records of the asked type at the asked name is all the engines use
    // of such a response (the name is in the bailiwick of every server asked about it): its
    // authority section (usually the zone's NS records) is left unparsed — unless the answer
    // was expanded from a wildcard (an RRSIG with fewer labels than its owner): then the
    // authority holds the NSEC/NSEC3 proof the validator needs.
    if response
        .answer
        .iter()
        .any(|r| r.rtype() == qtype && r.owner().name_eq(qname))
        && !response.answer.iter().any(|r| match r.data() {
            AllRecordData::Rrsig(sig) => {
                usize::from(sig.labels()) < crate::dnssec::rrsig_labels(r.owner())
            }
            _ => false,
        })
    {
        return Ok(Some(response));
    }
    let mut section = section
        .next_section()
        .ok()
        .flatten()
        .ok_or(UpstreamError::Malformed("authority section"))?;
    response.authority = Vec::with_capacity(usize::from(counts.nscount()));
    parse_section(&mut section, qname, &mut response.authority)?;
    // The additional section is only ever used for the glue of a referral (NOERROR, no
    // answer records): other responses leave it unparsed.
    if rcode == Rcode::NOERROR && counts.ancount() == 0 {
        let mut section = section
            .next_section()
            .ok()
            .flatten()
            .ok_or(UpstreamError::Malformed("additional section"))?;
        response.additional = Vec::with_capacity(usize::from(counts.arcount()));
        parse_section(&mut section, qname, &mut response.additional)?;
    }
    Ok(Some(response))
}

fn empty_response(rcode: Rcode, over_tcp: bool, wire: Bytes) -> Response {
    Response {
        rcode,
        authoritative: false,
        answer: Vec::new(),
        authority: Vec::new(),
        additional: Vec::new(),
        over_tcp,
        wire,
        server_cookie: None,
        bad_cookie: false,
    }
}

/// What a response says about cookies: its server cookie (when it echoes our client cookie)
/// and whether its extended RCODE is BADCOOKIE. `Err` when it carries a client cookie that
/// is not the one we sent: not an answer to our query (RFC 7873 §5.3), to be dropped as a
/// spoofing attempt. A response without a COOKIE option is accepted (a server that does not
/// do cookies, or an error answer written before the option was read).
fn response_cookie(wire: &Bytes, ours: &[u8; 8]) -> Result<(Option<ServerCookie>, bool), ()> {
    let Some((ext_rcode, options)) = opt_of(wire) else {
        return Ok((None, false));
    };
    // BADCOOKIE is extended RCODE 23: 1 in the OPT's upper bits, 7 in the header's (RFC 6891 §6.1.3).
    let bad = ext_rcode == 1 && wire[3] & 0x0f == 7;
    let Some(cookie) = cookie_option(options) else {
        return Ok((None, bad));
    };
    let (client, server) = cookie.split_at(8);
    if client != ours {
        return Err(());
    }
    Ok((ServerCookie::new(server), bad))
}

/// The OPT record of `wire`, the first one of its additional section (RFC 6891 §6.1.1): its
/// extended-RCODE bits and its options. Found by skipping the other records with the
/// allocation-free walker of [`crate::wire`] (`domain`'s `Message::opt` parses every name on
/// the way: ≈ 1,500 instructions per upstream answer). `None` when the message is malformed
/// before it, has none, or its option list is malformed, as `Message::opt` reads it.
fn opt_of(wire: &[u8]) -> Option<(u8, &[u8])> {
    use crate::wire::{counts, record_at, skip_questions};
    let counts = counts(wire).ok()?;
    let mut pos = skip_questions(wire, counts.question).ok()?;
    let before = usize::from(counts.answer) + usize::from(counts.authority);
    for index in 0..before + usize::from(counts.additional) {
        // The additional section's owner names are parsed whole (compression pointers
        // followed and checked), the others only skipped, as `Message::opt` does.
        if index >= before {
            let mut parser = domain::dep::octseq::Parser::from_ref(wire);
            parser.advance(pos).ok()?;
            ParsedName::parse(&mut parser).ok()?;
        }
        let record = record_at(wire, pos).ok()?;
        if index >= before && record.rtype == Rtype::OPT.to_int() {
            let options = &wire[record.rdata..record.end()];
            let mut at = 0;
            while at < options.len() {
                let len = options.get(at + 2..at + 4)?;
                at += 4 + usize::from(u16::from_be_bytes([len[0], len[1]]));
            }
            return (at == options.len()).then_some((wire[record.ttl_at], options));
        }
        pos = record.end();
    }
    None
}

/// The data of the first COOKIE option (code 10) in `options` (a well-formed list), if it
/// parses as RFC 7873 §4 says: an 8-byte client cookie, then nothing or an 8- to 32-byte
/// server cookie. A malformed first COOKIE option counts as none, as `domain` reads it.
fn cookie_option(options: &[u8]) -> Option<&[u8]> {
    let mut at = 0;
    while at + 4 <= options.len() {
        let code = u16::from_be_bytes([options[at], options[at + 1]]);
        let len = usize::from(u16::from_be_bytes([options[at + 2], options[at + 3]]));
        let data = options.get(at + 4..at + 4 + len)?;
        if code == 10 {
            return (len == 8 || (16..=40).contains(&len)).then_some(data);
        }
        at += 4 + len;
    }
    None
}

/// Parses the records of one section (class IN, no OPT) into `out`. An owner name spelt
/// exactly like `qname` (usually a compression pointer to the question) shares `qname`'s
/// octets instead of being copied out of the message.
fn parse_section(
    section: &mut domain::base::message::RecordSection<'_, Bytes>,
    qname: &Name<Bytes>,
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
        let (class, ttl) = (record.class(), record.ttl());
        let (owner, data) = record.into_owner_and_data();
        let owner = if spelt_like(&owner, qname) {
            qname.clone()
        } else {
            owner.flatten_into()
        };
        out.push(Rr::new(owner, class, ttl, data.flatten_into()));
    }
    Ok(())
}

/// Whether `name` has exactly the octets of `qname` (same labels, same case).
fn spelt_like(name: &ParsedName<Bytes>, qname: &Name<Bytes>) -> bool {
    let mut theirs = name.iter_labels();
    let mut ours = qname.iter_labels();
    loop {
        match (theirs.next(), ours.next()) {
            (None, None) => return true,
            (Some(a), Some(b)) if a.as_slice() == b.as_slice() => {}
            _ => return false,
        }
    }
}

/// How long to wait for one server asked at `now`: the query timeout, but never past the
/// deadline.
pub(crate) fn attempt_deadline(query_timeout: Duration, overall: Instant, now: Instant) -> Instant {
    (now + query_timeout).min(overall)
}

#[cfg(test)]
#[allow(clippy::unwrap_used, reason = "test code")]
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
            edns: true,
            deadline: Instant::now() + Duration::from_secs(1),
            tcp: pool(&crate::Limits::default()),
        }
    }

    /// A resolver's TCP pool with `limits`.
    fn pool(limits: &crate::Limits) -> std::sync::Arc<crate::tcp_pool::TcpPool> {
        use crate::tcp_pool::{TcpLimits, TcpPool};
        std::sync::Arc::new(TcpPool::new(TcpLimits::from(limits)))
    }

    fn answer_to(query: &[u8], edit: impl FnOnce(&mut Vec<u8>)) -> Bytes {
        let mut answer = query.to_vec();
        answer[2] |= 0x80; // QR
        edit(&mut answer);
        Bytes::from(answer)
    }

    #[test]
    fn query_has_edns_do_and_question() {
        let query = build_query(7, &name("www.test."), Rtype::AAAA, &options(), None).unwrap();
        let message = Message::from_octets(query).unwrap();
        assert_eq!(message.header().id(), 7);
        assert!(!message.header().rd());
        let opt = message.opt().unwrap();
        assert!(opt.dnssec_ok());
        assert_eq!(opt.udp_payload_size(), 1232);
        assert_eq!(message.sole_question().unwrap().qtype(), Rtype::AAAA);
    }

    #[test]
    fn queries_carry_our_cookie_and_answers_with_another_client_cookie_are_spoofed() {
        let qname = name("www.test.");
        let server = ServerCookie::new(&[9; 16]).unwrap();
        let cookie = QueryCookie {
            client: [1, 2, 3, 4, 5, 6, 7, 8],
            server: Some(server),
        };
        let query = build_query(7, &qname, Rtype::A, &options(), Some(&cookie)).unwrap();
        let message = Message::from_octets(query.clone()).unwrap();
        let sent = message.opt().unwrap().opt().cookie().unwrap();
        assert_eq!(sent.client().into_octets(), cookie.client);
        assert_eq!(sent.server().unwrap().as_ref(), &[9; 16]);
        // Without EDNS there is no OPT to carry it.
        let plain = QueryOptions {
            edns: false,
            ..options()
        };
        let query_plain = build_query(7, &qname, Rtype::A, &plain, Some(&cookie)).unwrap();
        assert!(Message::from_octets(query_plain).unwrap().opt().is_none());

        let expected = Expected {
            id: 7,
            qname: &qname,
            qtype: Rtype::A,
            client_cookie: Some(cookie.client),
        };
        // The query echoed as an answer: our client cookie, the server cookie learnt.
        let echoed = answer_to(&query, |_| {});
        let response = expected.check(echoed, false, false).unwrap().unwrap();
        assert_eq!(response.server_cookie, Some(server));
        assert!(!response.bad_cookie);
        // Another client cookie: not ours.
        let mut other = cookie;
        other.client[0] ^= 0xff;
        let spoofed = build_query(7, &qname, Rtype::A, &options(), Some(&other)).unwrap();
        assert_eq!(
            expected
                .check(answer_to(&spoofed, |_| {}), false, false)
                .unwrap_err(),
            UpstreamError::Mismatch
        );
        // No COOKIE option at all (a server without cookies): accepted.
        let bare = build_query(7, &qname, Rtype::A, &options(), None).unwrap();
        let response = expected
            .check(answer_to(&bare, |_| {}), false, false)
            .unwrap()
            .unwrap();
        assert_eq!(response.server_cookie, None);
        // BADCOOKIE: header RCODE 7, extended bits 1 in the OPT TTL.
        let bad = answer_to(&query, |m| {
            m[3] |= 7;
            let opt_at = 12 + qname.as_slice().len() + 4;
            m[opt_at + 5] = 1;
        });
        let response = expected.check(bad, false, false).unwrap().unwrap();
        assert!(response.bad_cookie);
    }

    /// What `domain` reads of a response's cookie (the reader [`response_cookie`] replaced).
    fn cookie_by_domain(wire: &Bytes, ours: &[u8; 8]) -> Result<(Option<ServerCookie>, bool), ()> {
        let Ok(message) = Message::from_octets(wire.clone()) else {
            return Ok((None, false));
        };
        let Some(opt) = message.opt() else {
            return Ok((None, false));
        };
        let bad = opt.rcode(message.header()) == domain::base::iana::OptRcode::BADCOOKIE;
        let Some(cookie) = opt.opt().cookie() else {
            return Ok((None, bad));
        };
        if cookie.client().into_octets() != *ours {
            return Err(());
        }
        Ok((
            cookie.server().and_then(|s| ServerCookie::new(s.as_ref())),
            bad,
        ))
    }

    #[test]
    fn the_wire_cookie_reader_agrees_with_domain_on_every_byte_changed() {
        let qname = name("www.test.");
        let cookie = QueryCookie {
            client: [1, 2, 3, 4, 5, 6, 7, 8],
            server: Some(ServerCookie::new(&[9; 16]).unwrap()),
        };
        let ours = cookie.client;
        let query = build_query(7, &qname, Rtype::A, &options(), Some(&cookie)).unwrap();
        // An answer with a record in each section before the OPT, compressed owners included.
        let mut base = query.clone();
        base[2] |= 0x80;
        let opt_at = 12 + qname.as_slice().len() + 4;
        let opt = base.split_off(opt_at);
        base[7] = 1; // ANCOUNT
        base[9] = 1; // NSCOUNT
        base[11] = 2; // ARCOUNT: one A record, then the OPT
        base.extend_from_slice(&[0xc0, 12, 0, 1, 0, 1, 0, 0, 0, 60, 0, 4, 192, 0, 2, 1]);
        base.extend_from_slice(&[0xc0, 16, 0, 2, 0, 1, 0, 0, 0, 60, 0, 2, 0xc0, 12]);
        base.extend_from_slice(&[0xc0, 12, 0, 1, 0, 1, 0, 0, 0, 60, 0, 4, 192, 0, 2, 2]);
        base.extend_from_slice(&opt);
        let mut variants = vec![base.clone(), query.clone()];
        for at in 0..base.len() {
            for value in [0u8, 1, 7, 8, 9, 10, 16, 41, 0x3f, 0xc0, 0xff] {
                let mut changed = base.clone();
                changed[at] = value;
                variants.push(changed);
            }
        }
        for cut in 0..base.len() {
            variants.push(base[..cut].to_vec());
        }
        let mut cookies = 0;
        for variant in variants {
            let wire = Bytes::from(variant);
            let ours_read = response_cookie(&wire, &ours);
            assert_eq!(
                ours_read,
                cookie_by_domain(&wire, &ours),
                "{:02x?}",
                &wire[..]
            );
            cookies += usize::from(matches!(ours_read, Ok((Some(_), _))));
        }
        assert!(
            cookies > 100,
            "the variants exercise the cookie path: {cookies}"
        );
    }

    #[test]
    fn mismatches_are_rejected() {
        let qname = name("www.test.");
        let query = build_query(7, &qname, Rtype::A, &options(), None).unwrap();
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

    /// What a fake TCP authority does on each connection.
    #[derive(Clone, Copy, PartialEq)]
    enum Behaviour {
        /// Answers every query as it comes.
        Serve,
        /// Answers the first `n` queries, then closes the connection.
        CloseAfter(usize),
        /// Answers the first query, then keeps the connection but never answers again.
        Ignore,
        /// Waits for `n` queries, then answers them in the reverse order, and again.
        Reverse(usize),
        /// Answers the first query, then sends a message with an ID nobody asked.
        Garbage,
        /// Answers with edns-tcp-keepalive 0: "do not send more on this connection".
        KeepaliveZero,
    }

    /// A fake authority on loopback TCP answering with the query flagged QR, as `behaviour`
    /// says; counts the connections it accepts.
    async fn tcp_authority(
        behaviour: Behaviour,
    ) -> (SocketAddr, std::sync::Arc<std::sync::atomic::AtomicUsize>) {
        use std::sync::atomic::{AtomicUsize, Ordering};
        use tokio::io::AsyncWriteExt;
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let address = listener.local_addr().unwrap();
        let accepted = std::sync::Arc::new(AtomicUsize::new(0));
        let counter = accepted.clone();
        tokio::spawn(async move {
            while let Ok((mut connection, _)) = listener.accept().await {
                counter.fetch_add(1, Ordering::SeqCst);
                tokio::spawn(async move {
                    let mut answered = 0;
                    let mut batch = Vec::new();
                    while let Some(query) = crate::tcp_pool::read_frame(&mut connection).await {
                        let mut answers = Vec::new();
                        match behaviour {
                            Behaviour::Serve => answers.push(answer_to(&query, |_| {})),
                            Behaviour::CloseAfter(_) => answers.push(answer_to(&query, |_| {})),
                            Behaviour::Ignore | Behaviour::Garbage if answered > 0 => {
                                if behaviour == Behaviour::Garbage {
                                    answers.push(answer_to(&query, |m| m[0] ^= 0xff));
                                }
                            }
                            Behaviour::Ignore | Behaviour::Garbage => {
                                answers.push(answer_to(&query, |_| {}));
                            }
                            Behaviour::Reverse(n) => {
                                batch.push(query);
                                if batch.len() == n {
                                    answers.extend(
                                        batch.drain(..).rev().map(|q| answer_to(&q, |_| {})),
                                    );
                                }
                            }
                            Behaviour::KeepaliveZero => {
                                // Our query ends with an empty keepalive option: give it
                                // a timeout of 0.
                                answers.push(answer_to(&query, |m| {
                                    let at = m.len() - 6;
                                    let rdlen = u16::from_be_bytes([m[at], m[at + 1]]) + 2;
                                    m[at..at + 2].copy_from_slice(&rdlen.to_be_bytes());
                                    let end = m.len();
                                    m[end - 2..].copy_from_slice(&2u16.to_be_bytes());
                                    m.extend_from_slice(&[0, 0]);
                                }));
                            }
                        }
                        for answer in answers {
                            answered += 1;
                            let mut framed = (answer.len() as u16).to_be_bytes().to_vec();
                            framed.extend_from_slice(&answer);
                            if connection.write_all(&framed).await.is_err() {
                                return;
                            }
                        }
                        if let Behaviour::CloseAfter(n) = behaviour {
                            if answered >= n {
                                // Closes its side (FIN after the answers) and reads what
                                // is left: closing with unread queries would reset the
                                // connection, which may discard the answers sent.
                                let _ = connection.shutdown().await;
                                while crate::tcp_pool::read_frame(&mut connection).await.is_some() {
                                }
                                return;
                            }
                        }
                    }
                });
            }
        });
        (address, accepted)
    }

    /// One TCP exchange of `qname`/DNSKEY with ID `id` through `tcp`: the response, checked
    /// to answer it.
    async fn tcp_ask(
        tcp: &std::sync::Arc<crate::tcp_pool::TcpPool>,
        server: SocketAddr,
        qname: &Name<Bytes>,
        id: u16,
    ) -> Result<Response, UpstreamError> {
        let query = build_query(id, qname, Rtype::DNSKEY, &options(), None).unwrap();
        let options = QueryOptions {
            deadline: Instant::now() + Duration::from_secs(4),
            tcp: std::sync::Arc::clone(tcp),
            ..options()
        };
        let expected = Expected {
            id,
            qname,
            qtype: Rtype::DNSKEY,
            client_cookie: None,
        };
        let response = tcp_exchange(server, &query, expected, &options).await?;
        assert!(response.over_tcp);
        let header = Message::from_octets(response.wire.clone()).unwrap();
        assert_eq!(header.header().id(), id);
        assert!(header.sole_question().unwrap().qname().name_eq(qname));
        Ok(response)
    }

    /// Two TCP exchanges, one after the other, with a fake authority behaving as
    /// `behaviour`: how many connections it accepted.
    async fn connections_for_two(behaviour: Behaviour) -> usize {
        let (server, accepted) = tcp_authority(behaviour).await;
        let qname = name("example.test.");
        let tcp = pool(&crate::Limits::default());
        for id in [11u16, 12] {
            tcp_ask(&tcp, server, &qname, id)
                .await
                .unwrap_or_else(|e| panic!("tcp exchange {id}: {e}"));
        }
        accepted.load(std::sync::atomic::Ordering::SeqCst)
    }

    /// `n` TCP exchanges with `server` at once through `tcp` (distinct names and IDs); all
    /// must succeed.
    async fn concurrent_tcp_exchanges(
        tcp: &std::sync::Arc<crate::tcp_pool::TcpPool>,
        server: SocketAddr,
        n: u16,
    ) {
        let names: Vec<Name<Bytes>> = (0..n)
            .map(|i| name(&format!("n{i}.example.test.")))
            .collect();
        let asks = names
            .iter()
            .zip(100u16..)
            .map(|(qname, id)| tcp_ask(tcp, server, qname, id));
        for (i, result) in futures_join_all(asks).await.into_iter().enumerate() {
            result.unwrap_or_else(|e| panic!("tcp exchange {i}: {e}"));
        }
    }

    /// Runs the futures concurrently on this task and returns their outputs in order.
    async fn futures_join_all<F: std::future::Future>(
        futures: impl Iterator<Item = F>,
    ) -> Vec<F::Output> {
        let mut set = Vec::new();
        for future in futures {
            set.push(Box::pin(future));
        }
        let mut outputs: Vec<Option<F::Output>> = set.iter().map(|_| None).collect();
        std::future::poll_fn(|cx| {
            let mut all = true;
            for (future, output) in set.iter_mut().zip(outputs.iter_mut()) {
                if output.is_none() {
                    match future.as_mut().poll(cx) {
                        std::task::Poll::Ready(value) => *output = Some(value),
                        std::task::Poll::Pending => all = false,
                    }
                }
            }
            if all {
                std::task::Poll::Ready(())
            } else {
                std::task::Poll::Pending
            }
        })
        .await;
        outputs.into_iter().flatten().collect()
    }

    fn counter(event: &str) -> u64 {
        crate::tcp_pool::upstream_tcp_counters()
            .into_iter()
            .find(|(e, _)| *e == event)
            .map_or(0, |(_, count)| count)
    }

    /// `n` exchanges at once with a fake authority behaving as `behaviour`: the connections
    /// it accepted and how much the counter of `event` grew (other tests running at the same
    /// time can only add to it).
    async fn concurrent_run(behaviour: Behaviour, n: u16, event: &str) -> (usize, u64) {
        let before = counter(event);
        let connections = connections_through(&pool(&crate::Limits::default()), behaviour, n).await;
        (connections, counter(event) - before)
    }

    /// How many connections an authority behaving as `behaviour` accepted for `n` concurrent
    /// TCP exchanges through `pool`.
    async fn connections_through(
        pool: &std::sync::Arc<crate::tcp_pool::TcpPool>,
        behaviour: Behaviour,
        n: u16,
    ) -> usize {
        let (server, accepted) = tcp_authority(behaviour).await;
        concurrent_tcp_exchanges(pool, server, n).await;
        accepted.load(std::sync::atomic::Ordering::SeqCst)
    }

    #[tokio::test]
    async fn a_tcp_connection_is_reused_for_the_next_truncated_answer() {
        assert_eq!(connections_for_two(Behaviour::Serve).await, 1);
    }

    #[tokio::test]
    async fn a_reused_tcp_connection_that_goes_unanswered_is_replaced() {
        assert_eq!(connections_for_two(Behaviour::Ignore).await, 2);
    }

    #[tokio::test]
    async fn a_reused_tcp_connection_closed_by_the_server_is_replaced() {
        assert_eq!(connections_for_two(Behaviour::CloseAfter(1)).await, 2);
    }

    #[tokio::test]
    async fn tcp_queries_are_pipelined_on_one_connection_and_answers_matched_out_of_order() {
        // The authority answers only once it holds all eight queries on one connection,
        // and then last first: the queries were pipelined, the answers matched by ID and
        // question whatever their order.
        let (connections, pipelined) = concurrent_run(Behaviour::Reverse(8), 8, "pipelined").await;
        assert_eq!(connections, 1);
        assert!(pipelined >= 7);
    }

    #[tokio::test]
    async fn tcp_queries_of_a_connection_the_server_closes_are_asked_again_on_a_new_one() {
        // Two answers per connection: of four pipelined queries, two are lost with the
        // first connection and answered on a second.
        let (connections, retried) = concurrent_run(Behaviour::CloseAfter(2), 4, "retried").await;
        assert_eq!(connections, 2);
        assert!(retried >= 2);
    }

    #[tokio::test]
    async fn two_resolvers_pools_keep_their_own_limits_in_one_process() {
        // One resolver's pool takes one query per connection, up to 8 connections per
        // server; another, made after it with the defaults, pipelines 16 per connection.
        let one_each = pool(&crate::Limits {
            tcp_queries_per_connection: 1,
            tcp_connections_per_server: 8,
            ..crate::Limits::default()
        });
        let defaults = pool(&crate::Limits::default());
        // Eight queries at once through each: the first pool opens a connection per query
        // (they are all placed before any answer comes), the second packs them onto one
        // (the authority answers only once it holds all eight on one connection).
        assert_eq!(connections_through(&one_each, Behaviour::Serve, 8).await, 8);
        assert_eq!(
            connections_through(&defaults, Behaviour::Reverse(8), 8).await,
            1
        );
    }

    #[tokio::test]
    async fn a_tcp_connection_that_sends_garbage_is_dropped_and_the_query_asked_again() {
        assert_eq!(connections_for_two(Behaviour::Garbage).await, 2);
    }

    #[tokio::test]
    async fn a_tcp_keepalive_of_zero_from_the_server_stops_reuse() {
        assert_eq!(connections_for_two(Behaviour::KeepaliveZero).await, 2);
        // With an ordinary server, the same two queries share a connection (above).
    }

    #[test]
    fn tcp_queries_carry_an_empty_keepalive_option() {
        let qname = name("www.test.");
        let query = build_query(7, &qname, Rtype::A, &options(), None).unwrap();
        let framed = tcp_framed(&query, true, &qname).unwrap();
        assert_eq!(
            usize::from(u16::from_be_bytes([framed[0], framed[1]])),
            framed.len() - 2
        );
        let message = Message::from_octets(framed[2..].to_vec()).unwrap();
        let keepalive = message.opt().unwrap().opt().tcp_keepalive().unwrap();
        assert_eq!(keepalive.timeout(), None);
        // Without EDNS: the query as it was.
        let plain = QueryOptions {
            edns: false,
            ..options()
        };
        let query = build_query(7, &qname, Rtype::A, &plain, None).unwrap();
        assert_eq!(tcp_framed(&query, false, &qname).unwrap()[2..], query[..]);
    }

    #[test]
    fn answer_larger_than_advertised_goes_to_tcp() {
        let qname = name("www.test.");
        let query = build_query(7, &qname, Rtype::A, &options(), None).unwrap();
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
        let query = build_query(7, &qname, Rtype::A, &options(), None).unwrap();
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
