//! Query parsing for the hot path: header, exactly one question, EDNS(0). No allocation, no
//! panic on any input.
//!
//! The result is either a [`Query`] to process, a reply the server must send instead
//! ([`ParseError::Respond`]: FORMERR, NOTIMP, BADVERS), or silence ([`ParseError::Drop`]).
//! Header-level checks follow Unbound's `worker_check_request`: shorter than a header or QR=1
//! → drop; TC=1, QDCOUNT≠1, ANCOUNT≠0, NSCOUNT≠0, ARCOUNT>1 → FORMERR; opcode other than QUERY
//! → NOTIMP. Those replies carry only the header (counts zeroed), since the question may not
//! be readable; errors found after the question echo it.
//!
//! # Limitations
//! - The question name must be uncompressed (a pointer in the first name can only point into
//!   the header): compressed question names are FORMERR.
//! - The only additional record accepted is OPT; TSIG-signed queries are FORMERR.
//! - Bytes after the last record are FORMERR.
//! - DNS cookies (RFC 7873) are only validated for length and kept here ([`Edns::cookie`]);
//!   the pipeline verifies the server cookie and answers it ([`crate::cookie`]).

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use juris_resolver::cache::CacheKeyRef;
use juris_resolver::wire::{HEADER_LEN, MAX_NAME_LEN};

use crate::codes::Rcode;

pub use crate::codes::rtype::OPT;
pub use crate::codes::{flags, option_code};

/// What [`parse_query`] needs from the configuration.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ParseConfig {
    /// Our largest UDP response; the client's EDNS payload size is capped to it.
    pub max_udp_payload: u16,
    /// Option code signalling structured DNS errors (besides an empty EDE option).
    pub structured_error_option_code: Option<u16>,
}

impl Default for ParseConfig {
    fn default() -> Self {
        Self {
            max_udp_payload: 1232,
            structured_error_option_code: Some(65001),
        }
    }
}

/// A lower-cased, uncompressed wire-format name held on the stack.
#[derive(Clone, Copy)]
pub struct NameBuf {
    bytes: [u8; MAX_NAME_LEN],
    len: u8,
}

impl NameBuf {
    /// The name in wire form (ends with the root label).
    pub fn as_slice(&self) -> &[u8] {
        &self.bytes[..self.len as usize]
    }
}

impl std::fmt::Debug for NameBuf {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("NameBuf(")?;
        for &b in self.as_slice() {
            if b.is_ascii_graphic() {
                write!(f, "{}", b as char)?;
            } else {
                write!(f, "\\{b:03}")?;
            }
        }
        f.write_str(")")
    }
}

/// An EDNS Client Subnet option from a query (RFC 7871 §6). Kept for the jurisdiction
/// classifier, which trusts it only from configured forwarders.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ClientSubnet {
    /// Address family (1 = IPv4, 2 = IPv6).
    pub family: u16,
    /// SOURCE PREFIX-LENGTH.
    pub source_prefix: u8,
    /// SCOPE PREFIX-LENGTH (0 in queries).
    pub scope_prefix: u8,
    /// The address, bits past the source prefix zero.
    pub address: IpAddr,
}

/// The client's EDNS(0) OPT record.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Edns {
    /// The UDP payload size the client advertised, raw.
    pub requested_payload_size: u16,
    /// What we may send over UDP: the client's size, at least 512, at most our maximum.
    pub udp_payload_size: u16,
    /// EDNS version (only 0 is processed; others get BADVERS).
    pub version: u8,
    /// The DO bit (RFC 3225).
    pub dnssec_ok: bool,
    /// Client Subnet, if present and well-formed.
    pub client_subnet: Option<ClientSubnet>,
    /// A well-formed cookie option was present.
    pub has_cookie: bool,
    /// The client's server cookie verified (RFC 7873 §5.2.4, RFC 9018 §4.3): set by the
    /// pipeline ([`crate::cookie::ServerCookies::answer`]), never by the parser. Such a client
    /// has shown it receives our answers at its address: it is exempt from the rate limits
    /// ([`crate::ratelimit`]).
    pub cookie_valid: bool,
    /// The cookie option's bytes (client cookie, then the server cookie if any).
    pub cookie: Option<CookieOption>,
    /// The client signalled support for structured DNS errors (empty EDE option or the
    /// configured signal option).
    pub wants_structured_errors: bool,
    /// The query carried a Padding option (RFC 7830): over an encrypted transport its
    /// response is padded (RFC 8467).
    pub padding: bool,
}

/// A cookie option as received (RFC 7873 §4): an 8-byte client cookie, optionally followed
/// by an 8- to 32-byte server cookie. Held inline (no allocation).
#[derive(Clone, Copy, PartialEq, Eq)]
pub struct CookieOption {
    bytes: [u8; 40],
    len: u8,
}

impl CookieOption {
    /// The option from its data, if its length is one RFC 7873 §5.2.2 allows (8, or 16 to 40).
    pub fn new(data: &[u8]) -> Option<Self> {
        if !(data.len() == 8 || (16..=40).contains(&data.len())) {
            return None;
        }
        let mut bytes = [0u8; 40];
        bytes[..data.len()].copy_from_slice(data);
        Some(Self {
            bytes,
            // At most 40: fits in u8.
            len: data.len() as u8,
        })
    }

    /// The client cookie.
    pub fn client(&self) -> [u8; 8] {
        let mut client = [0u8; 8];
        client.copy_from_slice(&self.bytes[..8]);
        client
    }

    /// The server cookie, if the client sent one.
    pub fn server(&self) -> Option<&[u8]> {
        self.bytes
            .get(8..usize::from(self.len))
            .filter(|s| !s.is_empty())
    }
}

impl std::fmt::Debug for CookieOption {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("CookieOption(")?;
        for b in &self.bytes[..usize::from(self.len)] {
            write!(f, "{b:02x}")?;
        }
        f.write_str(")")
    }
}

/// A well-formed query.
#[derive(Debug, Clone, Copy)]
pub struct Query<'a> {
    /// Message ID.
    pub id: u16,
    /// The header flags as sent.
    pub flags: u16,
    /// Query type.
    pub qtype: u16,
    /// Query class.
    pub qclass: u16,
    /// EDNS(0), if the query had an OPT record.
    pub edns: Option<Edns>,
    name: NameBuf,
    question: &'a [u8],
}

impl<'a> Query<'a> {
    /// The query name, lower-cased, uncompressed wire form.
    pub fn name(&self) -> &[u8] {
        self.name.as_slice()
    }

    /// The lower-cased name, copied (for queries that go async).
    pub(crate) fn name_buf(&self) -> NameBuf {
        self.name
    }

    /// The query name as the client spelled it (same length as [`Query::name`]).
    pub fn client_name(&self) -> &'a [u8] {
        &self.question[..self.question.len() - 4]
    }

    /// The whole question (client's spelling, type, class) as bytes, to echo.
    pub fn question(&self) -> &'a [u8] {
        self.question
    }

    /// DO bit (false without EDNS).
    pub fn dnssec_ok(&self) -> bool {
        self.edns.is_some_and(|e| e.dnssec_ok)
    }

    /// CD bit.
    pub fn checking_disabled(&self) -> bool {
        self.flags & flags::CD != 0
    }

    /// The borrowed cache key for this query.
    pub fn cache_key(&self) -> CacheKeyRef<'_> {
        CacheKeyRef {
            name: self.name(),
            qtype: self.qtype,
            qclass: self.qclass,
            dnssec_ok: self.dnssec_ok(),
        }
    }

    /// Largest UDP response this client accepts: 512 without EDNS.
    pub fn udp_limit(&self) -> usize {
        self.edns.map_or(512, |e| e.udp_payload_size as usize)
    }
}

/// A query that must not be processed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ParseError<'a> {
    /// Do not answer (not a query, or too broken to answer).
    Drop(&'static str),
    /// Answer with this error instead.
    Respond(ErrorReply<'a>),
}

/// An error answer decided by the parser.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ErrorReply<'a> {
    /// Message ID.
    pub id: u16,
    /// The query's header flags.
    pub flags: u16,
    /// The RCODE, possibly extended (BADVERS).
    pub rcode: Rcode,
    /// The question to echo, when it was readable and the error is past it.
    pub question: Option<&'a [u8]>,
    /// The client's OPT record as far as it was read (an OPT goes into the reply).
    pub edns: Option<Edns>,
    /// Why, for logs and tests.
    pub reason: &'static str,
}

/// Parses one query message. Never panics, never allocates.
pub fn parse_query<'a>(
    packet: &'a [u8],
    config: &ParseConfig,
) -> Result<Query<'a>, ParseError<'a>> {
    if packet.len() < HEADER_LEN {
        return Err(ParseError::Drop("shorter than a DNS header"));
    }
    if packet.len() > u16::MAX as usize {
        return Err(ParseError::Drop("longer than a DNS message"));
    }
    let id = be16(packet, 0);
    let header_flags = be16(packet, 2);
    if header_flags & flags::QR != 0 {
        return Err(ParseError::Drop("QR set: a response, not a query"));
    }
    let header_error = |rcode, reason| {
        Err(ParseError::Respond(ErrorReply {
            id,
            flags: header_flags,
            rcode,
            question: None,
            edns: None,
            reason,
        }))
    };
    if header_flags & flags::TC != 0 {
        return header_error(Rcode::FORMERR, "TC set in a query");
    }
    if header_flags & flags::OPCODE != 0 {
        return header_error(Rcode::NOTIMP, "opcode other than QUERY");
    }
    if be16(packet, 4) != 1 {
        return header_error(Rcode::FORMERR, "QDCOUNT is not 1");
    }
    if be16(packet, 6) != 0 {
        return header_error(Rcode::FORMERR, "ANCOUNT is not 0");
    }
    if be16(packet, 8) != 0 {
        return header_error(Rcode::FORMERR, "NSCOUNT is not 0");
    }
    let arcount = be16(packet, 10);
    if arcount > 1 {
        return header_error(Rcode::FORMERR, "ARCOUNT above 1");
    }

    let mut name = NameBuf {
        bytes: [0; MAX_NAME_LEN],
        len: 0,
    };
    let Some(name_end) = read_question_name(packet, &mut name) else {
        return header_error(Rcode::FORMERR, "malformed question name");
    };
    let question_end = name_end + 4;
    let Some(question) = packet.get(HEADER_LEN..question_end) else {
        return header_error(Rcode::FORMERR, "question runs past the end");
    };
    let qtype = be16(packet, name_end);
    let qclass = be16(packet, name_end + 2);

    let question_error = |rcode, edns, reason| {
        Err(ParseError::Respond(ErrorReply {
            id,
            flags: header_flags,
            rcode,
            question: Some(question),
            edns,
            reason,
        }))
    };

    let mut edns = None;
    let mut pos = question_end;
    if arcount == 1 {
        match parse_opt(packet, pos, config) {
            Ok((parsed, end)) => {
                if parsed.version != 0 {
                    return question_error(Rcode::BADVERS, Some(parsed), "EDNS version not 0");
                }
                edns = Some(parsed);
                pos = end;
            }
            Err((partial, reason)) => return question_error(Rcode::FORMERR, partial, reason),
        }
    }
    if pos != packet.len() {
        return question_error(Rcode::FORMERR, edns, "bytes after the last record");
    }
    Ok(Query {
        id,
        flags: header_flags,
        qtype,
        qclass,
        edns,
        name,
        question,
    })
}

#[inline]
fn be16(packet: &[u8], at: usize) -> u16 {
    match packet.get(at..at + 2) {
        Some(b) => u16::from_be_bytes([b[0], b[1]]),
        None => 0,
    }
}

/// The opcode of NOTIFY (RFC 1996).
pub const OPCODE_NOTIFY: u16 = 4;

/// A NOTIFY request (RFC 1996: QR=0, opcode NOTIFY, one question): its message ID, header
/// flags and question (name, type, class) as received. `None` for anything else.
pub fn parse_notify(packet: &[u8]) -> Option<(u16, u16, &[u8])> {
    if packet.len() < HEADER_LEN || packet.len() > u16::MAX as usize {
        return None;
    }
    let header_flags = be16(packet, 2);
    if header_flags & flags::QR != 0
        || (header_flags & flags::OPCODE) >> 11 != OPCODE_NOTIFY
        || be16(packet, 4) != 1
    {
        return None;
    }
    let mut name = NameBuf {
        bytes: [0; MAX_NAME_LEN],
        len: 0,
    };
    let end = read_question_name(packet, &mut name)? + 4;
    Some((be16(packet, 0), header_flags, packet.get(HEADER_LEN..end)?))
}

/// Reads the uncompressed question name at offset 12, lower-casing it into `out`. Returns the
/// offset just past the name.
fn read_question_name(packet: &[u8], out: &mut NameBuf) -> Option<usize> {
    // Find the end first (label lengths only), then copy and lower-case the name in one go:
    // length bytes are at most 63, below b'A', so lower-casing every byte leaves them alone.
    let mut pos = HEADER_LEN;
    loop {
        let len = *packet.get(pos)? as usize;
        if len > 63 {
            // Compression pointers (0xC0) and extended label types (0x40, 0x80).
            return None;
        }
        pos += 1 + len;
        if pos - HEADER_LEN > MAX_NAME_LEN {
            return None;
        }
        if len == 0 {
            break;
        }
    }
    let name = packet.get(HEADER_LEN..pos)?;
    let copy = out.bytes.get_mut(..name.len())?;
    copy.copy_from_slice(name);
    copy.make_ascii_lowercase();
    // At most MAX_NAME_LEN (255): fits in u8.
    out.len = name.len() as u8;
    Some(pos)
}

type OptError = (Option<Edns>, &'static str);

/// Parses the OPT record at `pos`; returns it and the offset past it.
fn parse_opt(packet: &[u8], pos: usize, config: &ParseConfig) -> Result<(Edns, usize), OptError> {
    // Owner must be the root name; then TYPE, CLASS (payload size), TTL, RDLENGTH.
    let fixed = packet
        .get(pos..pos + 11)
        .ok_or((None, "additional record runs past the end"))?;
    if fixed[0] != 0 {
        return Err((None, "additional record is not OPT with a root owner"));
    }
    if u16::from_be_bytes([fixed[1], fixed[2]]) != OPT {
        return Err((None, "additional record other than OPT"));
    }
    let requested = u16::from_be_bytes([fixed[3], fixed[4]]);
    let version = fixed[6];
    let edns_flags = u16::from_be_bytes([fixed[7], fixed[8]]);
    let rdlen = u16::from_be_bytes([fixed[9], fixed[10]]) as usize;
    let mut edns = Edns {
        requested_payload_size: requested,
        udp_payload_size: requested.clamp(512, config.max_udp_payload.max(512)),
        version,
        dnssec_ok: edns_flags & 0x8000 != 0,
        client_subnet: None,
        has_cookie: false,
        cookie_valid: false,
        cookie: None,
        wants_structured_errors: false,
        padding: false,
    };
    let rdata_start = pos + 11;
    let Some(mut options) = packet.get(rdata_start..rdata_start + rdlen) else {
        return Err((Some(edns), "OPT RDATA runs past the end"));
    };
    if version != 0 {
        // RFC 6891 §6.1.3: options of an unknown version are not interpreted.
        return Ok((edns, rdata_start + rdlen));
    }
    let mut seen_subnet = false;
    let mut seen_cookie = false;
    while !options.is_empty() {
        let [c0, c1, l0, l1, rest @ ..] = options else {
            return Err((Some(edns), "truncated EDNS option header"));
        };
        let code = u16::from_be_bytes([*c0, *c1]);
        let len = u16::from_be_bytes([*l0, *l1]) as usize;
        let Some(data) = rest.get(..len) else {
            return Err((Some(edns), "EDNS option runs past the OPT RDATA"));
        };
        options = &rest[len..];
        match code {
            option_code::CLIENT_SUBNET => {
                if seen_subnet {
                    return Err((Some(edns), "more than one Client Subnet option"));
                }
                seen_subnet = true;
                edns.client_subnet =
                    Some(parse_client_subnet(data).map_err(|reason| (Some(edns), reason))?);
            }
            option_code::COOKIE => {
                // RFC 7873 §5.2.2: client cookie 8 bytes, server cookie 8 to 32 bytes.
                if seen_cookie || !(len == 8 || (16..=40).contains(&len)) {
                    return Err((Some(edns), "malformed cookie option"));
                }
                seen_cookie = true;
                edns.has_cookie = true;
                edns.cookie = CookieOption::new(data);
            }
            option_code::PADDING => edns.padding = true,
            option_code::EXTENDED_ERROR if len == 0 => edns.wants_structured_errors = true,
            _ if Some(code) == config.structured_error_option_code => {
                edns.wants_structured_errors = true
            }
            _ => {}
        }
    }
    Ok((edns, rdata_start + rdlen))
}

/// RFC 7871 §6 and §7.1.1: FAMILY, SOURCE PREFIX-LENGTH, SCOPE PREFIX-LENGTH (0 in queries),
/// ADDRESS in exactly ceil(source/8) bytes with no bits set past the prefix.
fn parse_client_subnet(data: &[u8]) -> Result<ClientSubnet, &'static str> {
    let [f0, f1, source_prefix, scope_prefix, address @ ..] = data else {
        return Err("Client Subnet option too short");
    };
    let family = u16::from_be_bytes([*f0, *f1]);
    let (source_prefix, scope_prefix) = (*source_prefix, *scope_prefix);
    let max_prefix = match family {
        1 => 32,
        2 => 128,
        _ => return Err("Client Subnet family unknown"),
    };
    if source_prefix > max_prefix {
        return Err("Client Subnet source prefix too long");
    }
    if scope_prefix != 0 {
        return Err("Client Subnet scope prefix set in a query");
    }
    if address.len() != (source_prefix as usize).div_ceil(8) {
        return Err("Client Subnet address length does not match the prefix");
    }
    let spare_bits = (8 - source_prefix % 8) % 8;
    if let Some(&last) = address.last() {
        if spare_bits != 0 && last & ((1u8 << spare_bits) - 1) != 0 {
            return Err("Client Subnet address has bits past the prefix");
        }
    }
    let address = if family == 1 {
        let mut bytes = [0u8; 4];
        bytes[..address.len()].copy_from_slice(address);
        IpAddr::V4(Ipv4Addr::from(bytes))
    } else {
        let mut bytes = [0u8; 16];
        bytes[..address.len()].copy_from_slice(address);
        IpAddr::V6(Ipv6Addr::from(bytes))
    };
    Ok(ClientSubnet {
        family,
        source_prefix,
        scope_prefix,
        address,
    })
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used, reason = "test code")]
mod tests {
    use super::*;

    fn query(name: &[u8], qtype: u16, opt: Option<&[u8]>) -> Vec<u8> {
        let mut m = vec![
            0xAB,
            0xCD,
            0x01,
            0x00,
            0,
            1,
            0,
            0,
            0,
            0,
            0,
            opt.is_some() as u8,
        ];
        m.extend_from_slice(name);
        m.extend_from_slice(&qtype.to_be_bytes());
        m.extend_from_slice(&[0, 1]);
        if let Some(opt) = opt {
            m.extend_from_slice(opt);
        }
        m
    }

    fn opt(payload: u16, dnssec_ok: bool, version: u8, options: &[u8]) -> Vec<u8> {
        let mut o = vec![0, 0, 41];
        o.extend_from_slice(&payload.to_be_bytes());
        o.extend_from_slice(&[0, version, if dnssec_ok { 0x80 } else { 0 }, 0]);
        o.extend_from_slice(&(options.len() as u16).to_be_bytes());
        o.extend_from_slice(options);
        o
    }

    fn option(code: u16, data: &[u8]) -> Vec<u8> {
        let mut o = code.to_be_bytes().to_vec();
        o.extend_from_slice(&(data.len() as u16).to_be_bytes());
        o.extend_from_slice(data);
        o
    }

    const NAME: &[u8] = b"\x03WwW\x07ExAmple\x03COM\x00";
    const CONFIG: ParseConfig = ParseConfig {
        max_udp_payload: 1232,
        structured_error_option_code: Some(65001),
    };

    fn rcode_of(result: Result<Query<'_>, ParseError<'_>>) -> Option<Rcode> {
        match result {
            Err(ParseError::Respond(reply)) => Some(reply.rcode),
            _ => None,
        }
    }

    #[test]
    fn plain_query() {
        let packet = query(NAME, 1, None);
        let q = parse_query(&packet, &CONFIG).unwrap();
        assert_eq!(q.id, 0xABCD);
        assert_eq!(q.name(), b"\x03www\x07example\x03com\x00");
        assert_eq!(q.client_name(), NAME);
        assert_eq!(q.qtype, 1);
        assert_eq!(q.qclass, 1);
        assert!(q.edns.is_none());
        assert_eq!(q.udp_limit(), 512);
        assert_eq!(q.question().len(), NAME.len() + 4);
        assert!(!q.dnssec_ok());
    }

    #[test]
    fn root_name_query() {
        let packet = query(b"\x00", 2, None);
        let q = parse_query(&packet, &CONFIG).unwrap();
        assert_eq!(q.name(), b"\x00");
    }

    #[test]
    fn edns_payload_clamped_and_do() {
        let packet = query(NAME, 1, Some(&opt(100, true, 0, &[])));
        let q = parse_query(&packet, &CONFIG).unwrap();
        let edns = q.edns.unwrap();
        assert_eq!(edns.udp_payload_size, 512);
        assert_eq!(edns.requested_payload_size, 100);
        assert!(q.dnssec_ok());
        let packet = query(NAME, 1, Some(&opt(4096, false, 0, &[])));
        let q = parse_query(&packet, &CONFIG).unwrap();
        assert_eq!(q.udp_limit(), 1232);
        assert!(!q.dnssec_ok());
    }

    #[test]
    fn badvers_keeps_question_and_edns() {
        let packet = query(NAME, 1, Some(&opt(1232, true, 1, &[])));
        match parse_query(&packet, &CONFIG) {
            Err(ParseError::Respond(reply)) => {
                assert_eq!(reply.rcode, Rcode::BADVERS);
                assert!(reply.question.is_some());
                assert!(reply.edns.unwrap().dnssec_ok);
            }
            other => panic!("expected BADVERS, got {other:?}"),
        }
    }

    #[test]
    fn client_subnet_parsed() {
        let ecs = option(8, &[0, 1, 24, 0, 192, 0, 2]);
        let packet = query(NAME, 1, Some(&opt(1232, false, 0, &ecs)));
        let subnet = parse_query(&packet, &CONFIG)
            .unwrap()
            .edns
            .unwrap()
            .client_subnet
            .unwrap();
        assert_eq!(subnet.family, 1);
        assert_eq!(subnet.source_prefix, 24);
        assert_eq!(subnet.address, IpAddr::V4(Ipv4Addr::new(192, 0, 2, 0)));

        let ecs6 = option(8, &[0, 2, 56, 0, 0x20, 0x01, 0x0d, 0xb8, 0, 0, 0x01]);
        let packet = query(NAME, 1, Some(&opt(1232, false, 0, &ecs6)));
        let subnet = parse_query(&packet, &CONFIG)
            .unwrap()
            .edns
            .unwrap()
            .client_subnet
            .unwrap();
        assert_eq!(
            subnet.address,
            "2001:db8:0:100::".parse::<IpAddr>().unwrap()
        );
    }

    #[test]
    fn client_subnet_malformed_is_formerr() {
        for data in [
            &[0, 1, 24, 0, 192, 0][..],        // too few address bytes
            &[0, 1, 24, 0, 192, 0, 2, 1][..],  // too many
            &[0, 1, 23, 0, 192, 0, 3][..],     // bits past the prefix
            &[0, 1, 33, 0, 1, 2, 3, 4, 5][..], // prefix too long
            &[0, 3, 0, 0][..],                 // unknown family
            &[0, 1, 24, 8, 192, 0, 2][..],     // scope set
            &[0, 1, 24][..],                   // short
        ] {
            let ecs = option(8, data);
            let packet = query(NAME, 1, Some(&opt(1232, false, 0, &ecs)));
            assert_eq!(
                rcode_of(parse_query(&packet, &CONFIG)),
                Some(Rcode::FORMERR),
                "{data:?}"
            );
        }
        let mut two = option(8, &[0, 1, 0, 0]);
        two.extend(option(8, &[0, 1, 0, 0]));
        let packet = query(NAME, 1, Some(&opt(1232, false, 0, &two)));
        assert_eq!(
            rcode_of(parse_query(&packet, &CONFIG)),
            Some(Rcode::FORMERR)
        );
    }

    #[test]
    fn structured_error_signals() {
        let empty_ede = option(15, &[]);
        let packet = query(NAME, 1, Some(&opt(1232, false, 0, &empty_ede)));
        assert!(
            parse_query(&packet, &CONFIG)
                .unwrap()
                .edns
                .unwrap()
                .wants_structured_errors
        );

        let signal = option(65001, &[]);
        let packet = query(NAME, 1, Some(&opt(1232, false, 0, &signal)));
        assert!(
            parse_query(&packet, &CONFIG)
                .unwrap()
                .edns
                .unwrap()
                .wants_structured_errors
        );

        let off = ParseConfig {
            structured_error_option_code: None,
            ..CONFIG
        };
        assert!(
            !parse_query(&packet, &off)
                .unwrap()
                .edns
                .unwrap()
                .wants_structured_errors
        );

        let nonempty_ede = option(15, &[0, 3]);
        let packet = query(NAME, 1, Some(&opt(1232, false, 0, &nonempty_ede)));
        assert!(
            !parse_query(&packet, &CONFIG)
                .unwrap()
                .edns
                .unwrap()
                .wants_structured_errors
        );
    }

    #[test]
    fn cookies() {
        let good = option(10, &[1; 8]);
        let packet = query(NAME, 1, Some(&opt(1232, false, 0, &good)));
        let edns = parse_query(&packet, &CONFIG).unwrap().edns.unwrap();
        assert!(edns.has_cookie);
        assert!(!edns.cookie_valid, "the parser never verifies");
        let cookie = edns.cookie.unwrap();
        assert_eq!(cookie.client(), [1; 8]);
        assert_eq!(cookie.server(), None);
        let mut both = vec![2u8; 8];
        both.extend_from_slice(&[3; 16]);
        let packet = query(NAME, 1, Some(&opt(1232, false, 0, &option(10, &both))));
        let cookie = parse_query(&packet, &CONFIG)
            .unwrap()
            .edns
            .unwrap()
            .cookie
            .unwrap();
        assert_eq!(cookie.client(), [2; 8]);
        assert_eq!(cookie.server(), Some(&[3u8; 16][..]));
        for len in [0usize, 7, 9, 15, 41] {
            let bad = option(10, &vec![1; len]);
            let packet = query(NAME, 1, Some(&opt(1232, false, 0, &bad)));
            assert_eq!(
                rcode_of(parse_query(&packet, &CONFIG)),
                Some(Rcode::FORMERR),
                "{len}"
            );
        }
    }

    #[test]
    fn header_level_errors() {
        let base = query(NAME, 1, None);
        let mut response = base.clone();
        response[2] |= 0x80;
        assert!(matches!(
            parse_query(&response, &CONFIG),
            Err(ParseError::Drop(_))
        ));

        let mut notify = base.clone();
        notify[2] |= 4 << 3;
        assert_eq!(rcode_of(parse_query(&notify, &CONFIG)), Some(Rcode::NOTIMP));

        let mut tc = base.clone();
        tc[2] |= 0x02;
        assert_eq!(rcode_of(parse_query(&tc, &CONFIG)), Some(Rcode::FORMERR));

        for (at, value) in [(5, 0u8), (5, 2), (7, 1), (9, 1), (11, 2)] {
            let mut bad = base.clone();
            bad[at] = value;
            match parse_query(&bad, &CONFIG) {
                Err(ParseError::Respond(reply)) => {
                    assert_eq!(reply.rcode, Rcode::FORMERR);
                    assert!(reply.question.is_none());
                }
                other => panic!("byte {at}={value}: {other:?}"),
            }
        }
        assert!(matches!(
            parse_query(&base[..11], &CONFIG),
            Err(ParseError::Drop(_))
        ));
    }

    #[test]
    fn malformed_names_and_records() {
        // Compression pointer in the question name.
        let packet = query(&[0xC0, 12], 1, None);
        assert_eq!(
            rcode_of(parse_query(&packet, &CONFIG)),
            Some(Rcode::FORMERR)
        );
        // Pointer loop inside the OPT owner: owner must be root.
        let mut packet = query(NAME, 1, None);
        packet[11] = 1;
        packet.extend_from_slice(&[0xC0, 12, 0, 41, 4, 0, 0, 0, 0, 0, 0, 0]);
        assert_eq!(
            rcode_of(parse_query(&packet, &CONFIG)),
            Some(Rcode::FORMERR)
        );
        // Label longer than 63.
        let mut long = vec![64u8];
        long.extend_from_slice(&[b'a'; 64]);
        long.push(0);
        assert_eq!(
            rcode_of(parse_query(&query(&long, 1, None), &CONFIG)),
            Some(Rcode::FORMERR)
        );
        // Name longer than 255.
        let mut huge = Vec::new();
        for _ in 0..5 {
            huge.push(60);
            huge.extend_from_slice(&[b'a'; 60]);
        }
        huge.push(0);
        assert_eq!(
            rcode_of(parse_query(&query(&huge, 1, None), &CONFIG)),
            Some(Rcode::FORMERR)
        );
        // Exactly 255 is fine: 3×(1+63) + (1+61) + root = 255.
        let mut max = Vec::new();
        for _ in 0..3 {
            max.push(63);
            max.extend_from_slice(&[b'b'; 63]);
        }
        max.push(61);
        max.extend_from_slice(&[b'b'; 61]);
        max.push(0);
        assert_eq!(max.len(), 255);
        assert_eq!(
            parse_query(&query(&max, 1, None), &CONFIG)
                .unwrap()
                .name()
                .len(),
            255
        );
        // Trailing garbage.
        let mut trailing = query(NAME, 1, None);
        trailing.push(0);
        assert_eq!(
            rcode_of(parse_query(&trailing, &CONFIG)),
            Some(Rcode::FORMERR)
        );
        // OPT RDATA length lies.
        let mut lying = query(NAME, 1, Some(&opt(1232, false, 0, &option(12, &[0; 4]))));
        let at = lying.len() - 8 - 2;
        lying[at + 1] += 1;
        assert_eq!(rcode_of(parse_query(&lying, &CONFIG)), Some(Rcode::FORMERR));
        // Option length runs past the RDATA.
        let mut inner = option(12, &[0; 4]);
        inner[3] = 9;
        let packet = query(NAME, 1, Some(&opt(1232, false, 0, &inner)));
        assert_eq!(
            rcode_of(parse_query(&packet, &CONFIG)),
            Some(Rcode::FORMERR)
        );
        // Non-OPT additional.
        let mut packet = query(NAME, 1, Some(&opt(1232, false, 0, &[])));
        let at = NAME.len() + 12 + 4 + 2;
        packet[at] = 1;
        assert_eq!(
            rcode_of(parse_query(&packet, &CONFIG)),
            Some(Rcode::FORMERR)
        );
    }

    #[test]
    fn truncation_at_every_byte_never_panics_nor_accepts() {
        let ecs = option(8, &[0, 1, 24, 0, 192, 0, 2]);
        let mut options = ecs;
        options.extend(option(10, &[7; 8]));
        options.extend(option(15, &[]));
        let full = query(NAME, 28, Some(&opt(4096, true, 0, &options)));
        assert!(parse_query(&full, &CONFIG).is_ok());
        for cut in 0..full.len() {
            let result = parse_query(&full[..cut], &CONFIG);
            assert!(result.is_err(), "truncated at {cut} accepted");
            if cut < 12 {
                assert!(matches!(result, Err(ParseError::Drop(_))));
            } else {
                assert_eq!(rcode_of(result), Some(Rcode::FORMERR), "cut {cut}");
            }
        }
    }

    #[test]
    fn every_single_byte_mutation_never_panics() {
        let options = option(8, &[0, 2, 48, 0, 0x20, 1, 0xd, 0xb8, 0, 0]);
        let full = query(NAME, 1, Some(&opt(1232, true, 0, &options)));
        for at in 0..full.len() {
            for value in 0..=255u8 {
                let mut mutated = full.clone();
                mutated[at] = value;
                if let Ok(q) = parse_query(&mutated, &CONFIG) {
                    assert_eq!(q.name().len(), q.client_name().len());
                    assert!(q.udp_limit() >= 512 && q.udp_limit() <= 1232);
                }
            }
        }
    }

    #[test]
    fn fuzz_seed_corpus_is_valid_queries() {
        let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/../../fuzz/corpus/parse_query");
        let mut seen = 0;
        for entry in std::fs::read_dir(dir).unwrap() {
            let path = entry.unwrap().path();
            // The hand-written seeds, not the inputs libFuzzer's merge added (named by their
            // SHA-1): those are whatever reached new code, valid or not.
            let name = path.file_name().unwrap().to_string_lossy().into_owned();
            if name.len() == 40 && name.bytes().all(|b| b.is_ascii_hexdigit()) {
                continue;
            }
            let bytes = std::fs::read(&path).unwrap();
            assert!(parse_query(&bytes, &CONFIG).is_ok(), "{name}: {bytes:?}");
            seen += 1;
        }
        assert!(seen >= 5);
    }

    #[test]
    fn oversize_is_dropped() {
        let big = vec![0u8; 70_000];
        assert!(matches!(
            parse_query(&big, &CONFIG),
            Err(ParseError::Drop(_))
        ));
    }

    mod properties {
        use super::*;
        use proptest::prelude::*;

        fn valid_query() -> Vec<u8> {
            let mut options = option(8, &[0, 1, 24, 0, 192, 0, 2]);
            options.extend(option(10, &[7; 8]));
            options.extend(option(15, &[]));
            query(NAME, 1, Some(&opt(1232, true, 0, &options)))
        }

        proptest! {
            #[test]
            fn arbitrary_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..600)) {
                let _ = parse_query(&bytes, &CONFIG);
            }

            #[test]
            fn mutated_queries_never_panic_and_stay_consistent(
                edits in proptest::collection::vec((any::<prop::sample::Index>(), any::<u8>()), 1..8),
                cut in any::<prop::sample::Index>(),
            ) {
                let mut packet = valid_query();
                for (at, value) in edits {
                    let i = at.index(packet.len());
                    packet[i] = value;
                }
                let len = cut.index(packet.len() + 1);
                packet.truncate(len.max(packet.len() / 2));
                match parse_query(&packet, &CONFIG) {
                    Ok(q) => {
                        prop_assert_eq!(q.name().len(), q.client_name().len());
                        prop_assert!(q.name().eq_ignore_ascii_case(q.client_name()));
                        prop_assert!((512..=1232).contains(&q.udp_limit()));
                    }
                    Err(ParseError::Respond(reply)) => {
                        prop_assert_eq!(reply.id, u16::from_be_bytes([packet[0], packet[1]]));
                    }
                    Err(ParseError::Drop(_)) => {}
                }
            }
        }
    }
}
