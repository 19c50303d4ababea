//! Response synthesis: RCODE-only answers with the question echoed, records appended after
//! it, and the OPT record (with RFC 8914 Extended DNS Errors). Everything writes into a
//! caller's buffer, never allocates, and returns `None` when the buffer is too small.
//!
//! ```text
//!   ResponseBuilder::start(out, &reply, rcode)   header (QR, RD/CD echoed, RA) + question
//!     .push_record(Section::Answer, Owner::QueryName, HINFO, IN, ttl, rdata)   (optional)
//!     .push_record(Section::Authority, Owner::Wire(zone), SOA, IN, ttl, rdata) (optional)
//!     .finish(Some(ExtendedError { info_code: 16, extra_text: "..." }))  OPT if client had EDNS
//! ```
//! Blocked answers from the policy engine (RCODE + SOA + EDE 16) are meant to be written
//! with this builder too.
//!
//! # Limitations
//! - Owner names are written uncompressed, except [`Owner::QueryName`] (a pointer to the
//!   question).

use crate::cookie::CookieReply;
use crate::pipeline::Transport;
use crate::query::{flags, ClientSubnet, ErrorReply, Query, OPT};
use juris_resolver::wire::HEADER_LEN;

pub use crate::codes::{ede, Rcode};

/// One Extended DNS Error option (RFC 8914).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ExtendedError<'t> {
    /// INFO-CODE.
    pub info_code: u16,
    /// EXTRA-TEXT (UTF-8, may be empty; structured errors put JSON here).
    pub extra_text: &'t str,
}

/// The OPT record we send back: only when the client sent one.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct OptReply {
    /// Our UDP payload size.
    pub udp_payload_size: u16,
    /// DO echoed from the query (RFC 3225 §3).
    pub dnssec_ok: bool,
    /// Pad the response to a multiple of [`RESPONSE_PADDING_BLOCK`] with a Padding option
    /// (RFC 7830, RFC 8467 §4.1): set for padded queries over encrypted transports only.
    pub padding: bool,
    /// A trusted forwarder's Client Subnet, answered with its scope (RFC 7871 §7.2.1).
    pub ecs: Option<EcsReply>,
    /// The COOKIE option answering the client's (RFC 7873 §5.2), when cookies are on.
    pub cookie: Option<CookieReply>,
}

impl OptReply {
    /// Length of the OPT record with `ede`, before padding.
    pub fn len(&self, ede: Option<&ExtendedError<'_>>) -> usize {
        opt_len(ede)
            + self.ecs.map_or(0, |ecs| ecs.option_len())
            + self.cookie.map_or(0, |_| CookieReply::OPTION_LEN)
    }

    /// Whether the record is empty (never: an OPT record has 11 fixed bytes).
    pub fn is_empty(&self) -> bool {
        false
    }
}

/// The Client Subnet option of a response (RFC 7871 §6, §7.2.1): FAMILY, SOURCE
/// PREFIX-LENGTH and ADDRESS as in the query, SCOPE PREFIX-LENGTH as decided for the answer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct EcsReply {
    /// The query's option.
    pub query: ClientSubnet,
    /// How many leading bits of the client's address the answer depends on.
    pub scope_prefix: u8,
}

impl EcsReply {
    /// The query's option, answered with scope 0 until the answer is known to depend on the
    /// client's network.
    pub fn for_query(query: ClientSubnet) -> Self {
        Self {
            query,
            scope_prefix: 0,
        }
    }

    /// The option's length, its 4-byte header included.
    pub fn option_len(&self) -> usize {
        4 + 4 + usize::from(self.query.source_prefix).div_ceil(8)
    }

    /// Writes the option (header included) at the start of `out`; returns its length.
    fn write(&self, out: &mut [u8]) -> Option<usize> {
        let len = self.option_len();
        let out = out.get_mut(..len)?;
        let address = match self.query.address {
            std::net::IpAddr::V4(v4) => v4.to_ipv6_mapped().octets(),
            std::net::IpAddr::V6(v6) => v6.octets(),
        };
        // An IPv4 address sits in the last 4 bytes of its mapped form.
        let bytes = if self.query.family == 1 {
            &address[12..]
        } else {
            &address[..]
        };
        out[0..2].copy_from_slice(&crate::codes::option_code::CLIENT_SUBNET.to_be_bytes());
        out[2..4].copy_from_slice(&u16::try_from(len - 4).ok()?.to_be_bytes());
        out[4..6].copy_from_slice(&self.query.family.to_be_bytes());
        out[6] = self.query.source_prefix;
        out[7] = self.scope_prefix;
        out[8..].copy_from_slice(bytes.get(..len - 8)?);
        Some(len)
    }
}

/// The block length responses are padded to (RFC 8467 §4.1: 468 octets).
pub const RESPONSE_PADDING_BLOCK: usize = 468;

/// Who we are answering: the parts of the query every response needs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ReplyTo<'a> {
    /// Query ID.
    pub id: u16,
    /// Query header flags.
    pub query_flags: u16,
    /// The question to echo (client's spelling), or `None` for a header-only reply.
    pub question: Option<&'a [u8]>,
    /// OPT to include, if the client used EDNS.
    pub opt: Option<OptReply>,
    /// Largest response the client accepts over this transport.
    pub limit: usize,
}

impl<'a> ReplyTo<'a> {
    /// The reply context for a parsed query that came over `transport`: UDP has the client's
    /// UDP limit, the others 65535; padded queries over encrypted transports get padded
    /// responses.
    pub fn for_query(query: &Query<'a>, our_payload_size: u16, transport: Transport) -> Self {
        Self {
            id: query.id,
            query_flags: query.flags,
            question: Some(query.question()),
            opt: query.edns.map(|e| OptReply {
                udp_payload_size: our_payload_size,
                dnssec_ok: e.dnssec_ok,
                padding: e.padding && transport.is_encrypted(),
                ecs: None,
                cookie: None,
            }),
            limit: if transport == Transport::Udp {
                query.udp_limit()
            } else {
                u16::MAX as usize
            },
        }
    }

    /// The reply context for a parser error.
    pub fn for_error(error: &ErrorReply<'a>, our_payload_size: u16) -> Self {
        Self {
            id: error.id,
            query_flags: error.flags,
            question: error.question,
            opt: error.edns.map(|e| OptReply {
                udp_payload_size: our_payload_size,
                dnssec_ok: e.dnssec_ok,
                padding: false,
                ecs: None,
                cookie: None,
            }),
            limit: 512,
        }
    }
}

/// Which section a pushed record goes to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Section {
    /// Answer.
    Answer,
    /// Authority.
    Authority,
    /// Additional (the OPT record is added by [`ResponseBuilder::finish`]).
    Additional,
}

/// The owner name of a pushed record.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Owner<'n> {
    /// The query name (a compression pointer to offset 12).
    QueryName,
    /// An uncompressed wire-format name.
    Wire(&'n [u8]),
}

/// Header flags of a response to a query with `query_flags`: QR=1, opcode, RD and CD echoed,
/// RA=1 (we are a recursive resolver).
pub fn response_flags(query_flags: u16, rcode: Rcode) -> u16 {
    flags::QR
        | (query_flags & (flags::OPCODE | flags::RD | flags::CD))
        | flags::RA
        | rcode.header_bits()
}

/// Writes a header-only response (all counts zero). Returns its length (12).
pub fn write_header_only(out: &mut [u8], id: u16, query_flags: u16, rcode: Rcode) -> Option<usize> {
    let header = out.get_mut(..HEADER_LEN)?;
    header.fill(0);
    header[0..2].copy_from_slice(&id.to_be_bytes());
    header[2..4].copy_from_slice(&response_flags(query_flags, rcode).to_be_bytes());
    Some(HEADER_LEN)
}

/// Length of the OPT record carrying `ede` (without padding).
pub fn opt_len(ede: Option<&ExtendedError<'_>>) -> usize {
    11 + ede.map_or(0, |e| 6 + e.extra_text.len())
}

/// Length of the Padding option (header included) that brings a message of `unpadded` bytes
/// (its OPT included) to the next multiple of [`RESPONSE_PADDING_BLOCK`], shortened to
/// `room`; 0 when not even the option header fits (the response then goes unpadded).
fn padding_len(unpadded: usize, room: usize) -> usize {
    let wanted = (unpadded + 4).next_multiple_of(RESPONSE_PADDING_BLOCK) - unpadded;
    let len = wanted.min(room);
    if len < 4 {
        0
    } else {
        len
    }
}

/// Writes an OPT record (root owner, version 0) at the start of `out`, which follows the
/// `before` bytes of the message; returns its length. With `opt.padding`, a Padding option
/// (zeros) makes the message a multiple of [`RESPONSE_PADDING_BLOCK`] when `out` has room.
pub fn write_opt(
    out: &mut [u8],
    opt: OptReply,
    extended_rcode: u8,
    ede: Option<&ExtendedError<'_>>,
    before: usize,
) -> Option<usize> {
    let unpadded = opt.len(ede);
    let padding = if opt.padding {
        let room = out
            .len()
            .saturating_sub(unpadded)
            .min(usize::from(u16::MAX) - (unpadded - 11));
        padding_len(before + unpadded, room)
    } else {
        0
    };
    let len = unpadded + padding;
    let rdlen = u16::try_from(len - 11).ok()?;
    let out = out.get_mut(..len)?;
    out[0] = 0;
    out[1..3].copy_from_slice(&OPT.to_be_bytes());
    out[3..5].copy_from_slice(&opt.udp_payload_size.to_be_bytes());
    out[5] = extended_rcode;
    out[6] = 0;
    out[7..9].copy_from_slice(&(if opt.dnssec_ok { 0x8000u16 } else { 0 }).to_be_bytes());
    out[9..11].copy_from_slice(&rdlen.to_be_bytes());
    if let Some(e) = ede {
        out[11..13].copy_from_slice(&crate::codes::option_code::EXTENDED_ERROR.to_be_bytes());
        out[13..15].copy_from_slice(&u16::try_from(2 + e.extra_text.len()).ok()?.to_be_bytes());
        out[15..17].copy_from_slice(&e.info_code.to_be_bytes());
        out[17..17 + e.extra_text.len()].copy_from_slice(e.extra_text.as_bytes());
    }
    let mut at = opt_len(ede);
    if let Some(ecs) = &opt.ecs {
        at += ecs.write(out.get_mut(at..unpadded)?)?;
    }
    if let Some(cookie) = &opt.cookie {
        cookie.write(out.get_mut(at..unpadded)?)?;
    }
    if padding > 0 {
        let option = &mut out[unpadded..];
        option[0..2].copy_from_slice(&crate::codes::option_code::PADDING.to_be_bytes());
        option[2..4].copy_from_slice(&u16::try_from(padding - 4).ok()?.to_be_bytes());
        option[4..].fill(0);
    }
    Some(len)
}

/// Writes a response in sections, see the module documentation.
#[derive(Debug)]
pub struct ResponseBuilder<'o> {
    out: &'o mut [u8],
    pos: usize,
    counts: [u16; 3],
    last_section: Section,
    rcode: Rcode,
    opt: Option<OptReply>,
}

impl<'o> ResponseBuilder<'o> {
    /// Writes the header and the echoed question.
    pub fn start(out: &'o mut [u8], reply: &ReplyTo<'_>, rcode: Rcode) -> Option<Self> {
        write_header_only(out, reply.id, reply.query_flags, rcode)?;
        let mut pos = HEADER_LEN;
        if let Some(question) = reply.question {
            out.get_mut(pos..pos + question.len())?
                .copy_from_slice(question);
            pos += question.len();
            out[4..6].copy_from_slice(&1u16.to_be_bytes());
        }
        Some(Self {
            out,
            pos,
            counts: [0; 3],
            last_section: Section::Answer,
            rcode,
            opt: reply.opt,
        })
    }

    /// Sets TC=1.
    pub fn set_truncated(&mut self) {
        self.out[2] |= (flags::TC >> 8) as u8;
    }

    /// Sets AA=1 (for locally authoritative synthesised data).
    pub fn set_authoritative(&mut self) {
        self.out[2] |= (flags::AA >> 8) as u8;
    }

    /// Appends one record. Sections must come in order; returns `None` if out of order or
    /// out of room.
    pub fn push_record(
        &mut self,
        section: Section,
        owner: Owner<'_>,
        rtype: u16,
        class: u16,
        ttl: u32,
        rdata: &[u8],
    ) -> Option<()> {
        if section < self.last_section {
            return None;
        }
        let owner_len = match owner {
            Owner::QueryName => 2,
            Owner::Wire(name) => name.len(),
        };
        let rdlen = u16::try_from(rdata.len()).ok()?;
        let total = owner_len + 10 + rdata.len();
        let record = self.out.get_mut(self.pos..self.pos + total)?;
        match owner {
            Owner::QueryName => record[..2].copy_from_slice(&[0xC0, HEADER_LEN as u8]),
            Owner::Wire(name) => record[..owner_len].copy_from_slice(name),
        }
        let fixed = &mut record[owner_len..owner_len + 10];
        fixed[0..2].copy_from_slice(&rtype.to_be_bytes());
        fixed[2..4].copy_from_slice(&class.to_be_bytes());
        fixed[4..8].copy_from_slice(&ttl.to_be_bytes());
        fixed[8..10].copy_from_slice(&rdlen.to_be_bytes());
        record[owner_len + 10..].copy_from_slice(rdata);
        let index = section as usize;
        self.counts[index] = self.counts[index].checked_add(1)?;
        self.last_section = section;
        self.pos += total;
        Some(())
    }

    /// Writes the counts and, if the client used EDNS, the OPT record with `ede`. Returns the
    /// message length.
    pub fn finish(self, ede: Option<&ExtendedError<'_>>) -> Option<usize> {
        let mut additional = self.counts[2];
        let mut pos = self.pos;
        if let Some(opt) = self.opt {
            pos += write_opt(
                self.out.get_mut(pos..)?,
                opt,
                self.rcode.extended_bits(),
                ede,
                pos,
            )?;
            additional = additional.checked_add(1)?;
        }
        self.out[6..8].copy_from_slice(&self.counts[0].to_be_bytes());
        self.out[8..10].copy_from_slice(&self.counts[1].to_be_bytes());
        self.out[10..12].copy_from_slice(&additional.to_be_bytes());
        Some(pos)
    }
}

/// An RCODE-only response: header, question (if any), OPT with `ede` (if the client used
/// EDNS). Falls back to a header-only response if the question or EDE do not fit the limit.
pub fn write_rcode_response(
    out: &mut [u8],
    reply: &ReplyTo<'_>,
    rcode: Rcode,
    ede: Option<&ExtendedError<'_>>,
) -> Option<usize> {
    let limit = reply.limit.max(512).min(out.len());
    let room = out.get_mut(..limit)?;
    if let Some(len) = ResponseBuilder::start(room, reply, rcode).and_then(|b| b.finish(ede)) {
        return Some(len);
    }
    let room = out.get_mut(..limit)?;
    if let Some(len) = ResponseBuilder::start(room, reply, rcode).and_then(|b| b.finish(None)) {
        return Some(len);
    }
    write_header_only(out, reply.id, reply.query_flags, Rcode(rcode.header_bits()))
}

/// The RFC 8482 §4.2 answer to `ANY`: one synthesised `HINFO "RFC8482" ""` at the query name.
pub fn write_any_answer(out: &mut [u8], reply: &ReplyTo<'_>, ttl: u32) -> Option<usize> {
    const HINFO: u16 = 13;
    const RDATA: &[u8] = b"\x07RFC8482\x00";
    let mut builder = ResponseBuilder::start(out, reply, Rcode::NOERROR)?;
    builder.push_record(Section::Answer, Owner::QueryName, HINFO, 1, ttl, RDATA)?;
    builder.finish(None)
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used, reason = "test code")]
mod tests {
    use super::*;

    fn reply(opt: bool) -> ReplyTo<'static> {
        ReplyTo {
            id: 0x1234,
            query_flags: 0x0110,
            question: Some(b"\x03abc\x00\x00\x01\x00\x01"),
            opt: opt.then_some(OptReply {
                udp_payload_size: 1232,
                dnssec_ok: true,
                padding: false,
                ecs: None,
                cookie: None,
            }),
            limit: 512,
        }
    }

    #[test]
    fn client_subnet_is_echoed_with_its_scope_after_the_ede() {
        let subnet = |family, source_prefix, address: &str| ClientSubnet {
            family,
            source_prefix,
            scope_prefix: 0,
            address: address.parse().unwrap(),
        };
        let ede = ExtendedError {
            info_code: 16,
            extra_text: "x",
        };
        for (query, scope, expected) in [
            (
                subnet(1, 24, "10.20.30.0"),
                16,
                vec![0, 1, 24, 16, 10, 20, 30],
            ),
            (subnet(1, 0, "0.0.0.0"), 0, vec![0, 1, 0, 0]),
            (
                subnet(2, 56, "2001:db8:1:2300::"),
                48,
                vec![0, 2, 56, 48, 0x20, 0x01, 0x0d, 0xb8, 0, 1, 0x23],
            ),
        ] {
            let opt = OptReply {
                udp_payload_size: 1232,
                dnssec_ok: false,
                padding: false,
                ecs: Some(EcsReply {
                    query,
                    scope_prefix: scope,
                }),
                cookie: None,
            };
            let mut out = [0u8; 128];
            let len = write_opt(&mut out, opt, 0, Some(&ede), 0).unwrap();
            assert_eq!(len, opt.len(Some(&ede)));
            assert_eq!(usize::from(u16::from_be_bytes([out[9], out[10]])), len - 11);
            // EDE first (code 15, length 3), then the Client Subnet option (code 8).
            assert_eq!(&out[11..18], &[0, 15, 0, 3, 0, 16, b'x']);
            assert_eq!(&out[18..20], &[0, 8]);
            assert_eq!(
                usize::from(u16::from_be_bytes([out[20], out[21]])),
                expected.len()
            );
            assert_eq!(&out[22..len], &expected[..]);
        }
    }

    #[test]
    fn rcode_response_with_ede() {
        let mut out = [0u8; 512];
        let ede = ExtendedError {
            info_code: ede::NO_REACHABLE_AUTHORITY,
            extra_text: "no reachable authority",
        };
        let len =
            write_rcode_response(&mut out, &reply(true), Rcode::SERVFAIL, Some(&ede)).unwrap();
        let msg = &out[..len];
        assert_eq!(&msg[0..2], &[0x12, 0x34]);
        assert_eq!(msg[2], 0x81, "QR and RD");
        assert_eq!(msg[3], 0x92, "RA, CD echoed, SERVFAIL");
        assert_eq!(&msg[4..12], &[0, 1, 0, 0, 0, 0, 0, 1]);
        let opt_at = 12 + 9;
        assert_eq!(&msg[opt_at..opt_at + 3], &[0, 0, 41]);
        assert_eq!(&msg[opt_at + 3..opt_at + 5], &1232u16.to_be_bytes());
        assert_eq!(msg[opt_at + 7], 0x80, "DO echoed");
        assert_eq!(&msg[opt_at + 11..opt_at + 13], &[0, 15]);
        assert_eq!(&msg[opt_at + 15..opt_at + 17], &[0, 22]);
        assert_eq!(&msg[opt_at + 17..], b"no reachable authority");
        assert_eq!(len, opt_at + opt_len(Some(&ede)));
    }

    #[test]
    fn badvers_goes_into_opt() {
        let mut out = [0u8; 512];
        let len = write_rcode_response(&mut out, &reply(true), Rcode::BADVERS, None).unwrap();
        assert_eq!(out[3] & 0x0F, 0);
        assert_eq!(out[12 + 9 + 5], 1, "extended RCODE bits");
        assert_eq!(len, 12 + 9 + 11);
    }

    #[test]
    fn any_answer_is_hinfo() {
        let mut out = [0u8; 512];
        let len = write_any_answer(&mut out, &reply(false), 3600).unwrap();
        let msg = &out[..len];
        assert_eq!(&msg[6..8], &[0, 1]);
        assert_eq!(&msg[21..23], &[0xC0, 12]);
        assert_eq!(&msg[23..25], &[0, 13]);
        assert!(msg.ends_with(b"\x07RFC8482\x00"));
    }

    #[test]
    fn a_small_buffer_degrades_the_response_step_by_step_and_never_overflows() {
        let ede = ExtendedError {
            info_code: 0,
            extra_text: "x",
        };
        // The three forms, largest first: with the EDE, without it, header only.
        let mut full_bytes = [0u8; 512];
        let full = write_rcode_response(&mut full_bytes, &reply(true), Rcode::SERVFAIL, Some(&ede))
            .unwrap();
        let mut bare_bytes = [0u8; 512];
        let bare =
            write_rcode_response(&mut bare_bytes, &reply(true), Rcode::SERVFAIL, None).unwrap();
        assert!(HEADER_LEN < bare && bare < full, "{bare} {full}");
        let mut any_bytes = [0u8; 512];
        let any_full = write_any_answer(&mut any_bytes, &reply(true), 1).unwrap();
        for size in 0..full.max(any_full) + 16 {
            let mut out = vec![0u8; size];
            let written = write_rcode_response(&mut out, &reply(true), Rcode::SERVFAIL, Some(&ede));
            let expected = match size {
                s if s >= full => Some(&full_bytes[..full]),
                s if s >= bare => Some(&bare_bytes[..bare]),
                s if s >= HEADER_LEN => None,
                _ => {
                    assert_eq!(written, None, "{size} bytes cannot hold a header");
                    continue;
                }
            };
            let len = written.unwrap_or_else(|| panic!("{size} bytes: nothing written"));
            match expected {
                Some(bytes) => assert_eq!(&out[..len], bytes, "{size} bytes"),
                None => {
                    assert_eq!(len, HEADER_LEN, "{size} bytes: header only");
                    assert_eq!(&out[..2], &[0x12, 0x34], "ID");
                    assert_eq!(out[3] & 0x0F, 2, "SERVFAIL");
                    assert_eq!(&out[4..12], &[0; 8], "no sections");
                }
            }

            let written = write_any_answer(&mut out, &reply(true), 1);
            if size < any_full {
                assert_eq!(written, None, "{size} bytes cannot hold {any_full}");
            } else {
                assert_eq!(written, Some(any_full), "{size} bytes");
                assert_eq!(&out[..any_full], &any_bytes[..any_full]);
            }
        }
    }

    /// The OPT record's options of a message whose last record is the OPT at `opt_at`.
    fn options(msg: &[u8], opt_at: usize) -> Vec<(u16, Vec<u8>)> {
        let rdlen = usize::from(u16::from_be_bytes([msg[opt_at + 9], msg[opt_at + 10]]));
        assert_eq!(
            opt_at + 11 + rdlen,
            msg.len(),
            "OPT is last and RDLEN covers the rest"
        );
        let mut rest = &msg[opt_at + 11..];
        let mut found = Vec::new();
        while !rest.is_empty() {
            let code = u16::from_be_bytes([rest[0], rest[1]]);
            let len = usize::from(u16::from_be_bytes([rest[2], rest[3]]));
            found.push((code, rest[4..4 + len].to_vec()));
            rest = &rest[4 + len..];
        }
        found
    }

    #[test]
    fn padded_responses_are_a_multiple_of_468_bytes() {
        let mut padded = reply(true);
        padded.opt = padded.opt.map(|o| OptReply { padding: true, ..o });
        padded.limit = 65535;
        for text in [
            "",
            "x",
            &"y".repeat(400),
            &"z".repeat(460),
            &"w".repeat(1000),
        ] {
            let ede = ExtendedError {
                info_code: ede::CENSORED,
                extra_text: text,
            };
            let mut out = vec![0u8; 4096];
            let len = write_rcode_response(&mut out, &padded, Rcode::NXDOMAIN, Some(&ede)).unwrap();
            assert_eq!(
                len % RESPONSE_PADDING_BLOCK,
                0,
                "EDE text of {}",
                text.len()
            );
            let found = options(&out[..len], 12 + 9);
            assert_eq!(found.len(), 2, "EDE then Padding");
            assert_eq!(found[0].0, 15);
            assert_eq!(&found[0].1[2..], text.as_bytes(), "EDE intact");
            assert_eq!(found[1].0, 12);
            assert!(found[1].1.iter().all(|&b| b == 0), "padding is zeros");
        }
        // Without room for a full block, the response is padded as far as it fits.
        let mut out = vec![0u8; 100];
        let len = write_rcode_response(&mut out, &padded, Rcode::SERVFAIL, None).unwrap();
        assert_eq!(len, 100);
        assert_eq!(options(&out[..len], 12 + 9)[0].0, 12);
        // Not asked for: no padding.
        let mut out = vec![0u8; 4096];
        let len = write_rcode_response(&mut out, &reply(true), Rcode::SERVFAIL, None).unwrap();
        assert_eq!(len, 12 + 9 + 11);
    }

    #[test]
    fn only_padded_queries_over_encrypted_transports_are_padded() {
        use crate::query::{parse_query, ParseConfig};
        let query = |options: &[u8]| {
            let mut m = vec![0, 7, 1, 0, 0, 1, 0, 0, 0, 0, 0, 1];
            m.extend_from_slice(b"\x03abc\x00\x00\x01\x00\x01");
            m.extend_from_slice(&[0, 0, 41, 4, 0xD0, 0, 0, 0, 0]);
            m.extend_from_slice(&(options.len() as u16).to_be_bytes());
            m.extend_from_slice(options);
            m
        };
        let padded = query(&[0, 12, 0, 3, 0, 0, 0]);
        let plain = query(&[]);
        let config = ParseConfig::default();
        for (transport, pads) in [
            (Transport::Udp, false),
            (Transport::Tcp, false),
            (Transport::Dot, true),
            (Transport::Doh, true),
            (Transport::Doq, true),
        ] {
            let q = parse_query(&padded, &config).unwrap();
            let opt = ReplyTo::for_query(&q, 1232, transport).opt.unwrap();
            assert_eq!(opt.padding, pads, "{transport:?}");
            let q = parse_query(&plain, &config).unwrap();
            let opt = ReplyTo::for_query(&q, 1232, transport).opt.unwrap();
            assert!(!opt.padding, "{transport:?} without a Padding option");
        }
    }

    #[test]
    fn sections_in_order_only() {
        let mut out = [0u8; 512];
        let mut b = ResponseBuilder::start(&mut out, &reply(false), Rcode::NXDOMAIN).unwrap();
        b.push_record(Section::Authority, Owner::Wire(b"\x00"), 6, 1, 30, &[0; 22])
            .unwrap();
        assert!(b
            .push_record(Section::Answer, Owner::QueryName, 1, 1, 30, &[0; 4])
            .is_none());
        let len = b.finish(None).unwrap();
        assert_eq!(&out[6..10], &[0, 0, 0, 1]);
        assert_eq!(len, 12 + 9 + 1 + 10 + 22);
    }
}
