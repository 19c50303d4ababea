//! Assembles the one response message a resolution produces and turns it into a cache entry.
//!
//! Header QR=1, RA=1, RD=1 (the cache echoes the client's RD), the RCODE; the question with
//! the lower-cased name; the answer (CNAME/DNAME chain then the final RRset); the authority
//! (SOA and, for DO=1, NSEC/NSEC3 and RRSIGs) for negative answers; no OPT (the server adds
//! the client's). DNSSEC records go only into DO=1 answers, unless asked for by type.

use domain::base::iana::{Class, Rcode};
use domain::base::message_builder::StaticCompressor;
use domain::base::{MessageBuilder, Rtype};

use crate::cache::{CacheConfig, CachedAnswer};
use crate::names::{is_dnssec_type, lower, Rr};
use crate::recursor::Outcome;
use crate::resolver::{Question, ResolveError};
use crate::wire;

/// Builds the response for `question` from `outcome`, ready for the cache.
pub(crate) fn build(
    question: &Question,
    outcome: &Outcome,
    now: u64,
    config: &CacheConfig,
) -> Result<CachedAnswer, ResolveError> {
    if let Some(wire) = outcome
        .verbatim
        .as_deref()
        .and_then(|upstream| verbatim(question, outcome, upstream))
    {
        if let Ok(mut entry) = CachedAnswer::from_vec(wire, now, config) {
            entry.set_dnssec_ok(question.dnssec_ok);
            return Ok(entry);
        }
    }
    let wire = render(question, outcome.rcode, &outcome.answer, &outcome.authority)?;
    let mut entry = CachedAnswer::from_message(&wire, now, config)
        .map_err(|e| ResolveError::Internal(format!("assembled answer rejected: {e}")))?;
    entry.set_dnssec_ok(question.dnssec_ok);
    Ok(entry)
}

/// The response for `question` copied from the upstream message `upstream` the outcome was
/// taken from, when that gives exactly what [`render`] would (same records; the names may be
/// compressed differently): the outcome holds the whole answer section and either the whole
/// authority section or none of it, every record is of a type whose names are known (A, AAAA,
/// SOA), and every name in them reads only bytes that are kept (compression pointers point
/// backwards). `None` otherwise (then the response is composed by [`render`]).
///
/// The copy is the header (rewritten: ID 0, QR, RD, RA, the RCODE, our counts) followed by
/// the question, answer and, if kept, authority sections as received; what follows them
/// (additional section, OPT) is cut off.
fn verbatim(question: &Question, outcome: &Outcome, upstream: &[u8]) -> Option<Vec<u8>> {
    let rcode = outcome.rcode;
    if rcode != Rcode::NOERROR && rcode != Rcode::NXDOMAIN {
        return None;
    }
    let counts = wire::counts(upstream).ok()?;
    if counts.question != 1 || usize::from(counts.answer) != outcome.answer.len() {
        return None;
    }
    let authority = if outcome.authority.is_empty() {
        0
    } else if usize::from(counts.authority) == outcome.authority.len() {
        counts.authority
    } else {
        return None;
    };
    // The question must be ours (it was checked on receipt; checked again here because this
    // copy depends on it).
    let question_end = wire::skip_questions(upstream, 1).ok()?;
    let mut name = [0u8; 255];
    let (_, name_len) = wire::read_name_lower(upstream, wire::HEADER_LEN, &mut name).ok()?;
    if !name[..name_len].eq_ignore_ascii_case(question.name.as_slice())
        || wire::u16_at(upstream, question_end - 4).ok()? != question.qtype.to_int()
        || wire::u16_at(upstream, question_end - 2).ok()? != question.qclass.to_int()
    {
        return None;
    }
    // Every name of a kept record (and the question's) must read only bytes that are kept.
    let mut reach = name_reach(upstream, wire::HEADER_LEN)?;
    let mut pos = question_end;
    for _ in 0..usize::from(counts.answer) + usize::from(authority) {
        let record = wire::record_at(upstream, pos).ok()?;
        let rtype = Rtype::from_int(record.rtype);
        let rdata_ok = match rtype {
            Rtype::A => record.rdlen == 4,
            Rtype::AAAA => record.rdlen == 16,
            Rtype::SOA => {
                let rname = wire::skip_name(upstream, record.rdata).ok()?;
                reach = reach
                    .max(name_reach(upstream, record.rdata)?)
                    .max(name_reach(upstream, rname)?);
                true
            }
            _ => false,
        };
        if !rdata_ok
            || record.class != Class::IN.to_int()
            || (!question.dnssec_ok && is_dnssec_type(rtype) && rtype != question.qtype)
        {
            return None;
        }
        reach = reach.max(name_reach(upstream, record.owner)?);
        pos = record.end();
    }
    let end = pos;
    if reach > end {
        return None;
    }
    let mut message = Vec::with_capacity(end);
    message.extend_from_slice(&[0, 0]);
    // QR=1, opcode QUERY, RD=1; RA=1, the RCODE.
    message.push(0x81);
    message.push(0x80 | (rcode.to_int() & 0x0F));
    message.extend_from_slice(&[0, 1]);
    message.extend_from_slice(&counts.answer.to_be_bytes());
    message.extend_from_slice(&authority.to_be_bytes());
    message.extend_from_slice(&[0, 0]);
    message.extend_from_slice(&upstream[wire::HEADER_LEN..end]);
    Some(message)
}

/// How far the name at `pos` reads: the offset just past the last byte it takes, provided
/// every compression pointer points backwards, past the header, and there are few of them
/// (no loops).
fn name_reach(msg: &[u8], mut pos: usize) -> Option<usize> {
    let mut reach = pos;
    let mut pointers = 0;
    loop {
        let len = *msg.get(pos)?;
        match len & 0xC0 {
            0x00 if len == 0 => return Some(reach.max(pos + 1)),
            0x00 => pos += 1 + usize::from(len),
            0xC0 => {
                let low = *msg.get(pos + 1)?;
                reach = reach.max(pos + 2);
                let target = usize::from(len & 0x3F) << 8 | usize::from(low);
                pointers += 1;
                // Never into the header: the copy has a header of its own.
                if target >= pos || target < wire::HEADER_LEN || pointers > 32 {
                    return None;
                }
                pos = target;
            }
            _ => return None,
        }
    }
}

fn render(
    question: &Question,
    rcode: Rcode,
    answer: &[Rr],
    authority: &[Rr],
) -> Result<Vec<u8>, ResolveError> {
    let overflow = |_| ResolveError::Internal("answer does not fit in a DNS message".into());
    let keep = |record: &&Rr| {
        question.dnssec_ok || !is_dnssec_type(record.rtype()) || record.rtype() == question.qtype
    };
    let mut builder = MessageBuilder::from_target(StaticCompressor::new(Vec::new()))
        .map_err(|_| ResolveError::Internal("message buffer".into()))?;
    {
        let header = builder.header_mut();
        header.set_qr(true);
        header.set_ra(true);
        header.set_rd(true);
        header.set_rcode(rcode);
    }
    let mut section = builder.question();
    section
        .push((lower(&question.name), question.qtype, question.qclass))
        .map_err(overflow)?;
    let mut section = section.answer();
    for record in answer.iter().filter(keep) {
        section.push(record).map_err(overflow)?;
    }
    let mut section = section.authority();
    for record in authority.iter().filter(keep) {
        section.push(record).map_err(overflow)?;
    }
    Ok(section.finish().into_target())
}

#[cfg(test)]
#[allow(clippy::unwrap_used, reason = "test code")]
mod tests {
    use bytes::Bytes;
    use domain::base::iana::{Class, SecurityAlgorithm};
    use domain::base::{Name, Record, Rtype, Ttl};
    use domain::rdata::dnssec::Timestamp;
    use domain::rdata::{AllRecordData, Rrsig, A};

    use super::*;
    use crate::cache::AnswerKind;

    fn outcome() -> Outcome {
        let owner = Name::<Bytes>::bytes_from_str("www.example.test.").unwrap();
        let a = Record::new(
            owner.clone(),
            Class::IN,
            Ttl::from_secs(300),
            AllRecordData::A(A::new("192.0.2.1".parse().unwrap())),
        );
        let sig = Rrsig::new(
            Rtype::A,
            SecurityAlgorithm::ECDSAP256SHA256,
            3,
            Ttl::from_secs(300),
            Timestamp::from(2_000_000_000),
            Timestamp::from(1_600_000_000),
            12345,
            Name::<Bytes>::bytes_from_str("example.test.").unwrap(),
            Bytes::from_static(&[1, 2, 3, 4]),
        )
        .unwrap();
        let sig = Record::new(
            owner,
            Class::IN,
            Ttl::from_secs(300),
            AllRecordData::Rrsig(sig),
        );
        Outcome {
            rcode: Rcode::NOERROR,
            answer: vec![a, sig],
            authority: Vec::new(),
            verbatim: None,
        }
    }

    fn question(dnssec_ok: bool) -> Question {
        Question {
            name: Name::bytes_from_str("WWW.example.test.").unwrap(),
            qtype: Rtype::A,
            qclass: Class::IN,
            dnssec_ok,
            checking_disabled: false,
        }
    }

    #[test]
    fn rrsigs_only_for_do_clients() {
        let config = CacheConfig::default();
        let plain = build(&question(false), &outcome(), 0, &config).unwrap();
        let signed = build(&question(true), &outcome(), 0, &config).unwrap();
        assert_eq!(&plain.wire()[6..8], &[0, 1], "ANCOUNT without RRSIG");
        assert_eq!(&signed.wire()[6..8], &[0, 2], "ANCOUNT with RRSIG");
        assert_eq!(plain.kind(), AnswerKind::Positive);
        assert_eq!(&plain.wire()[13..16], b"www", "question lower-cased");
        assert_eq!(plain.wire()[2] & 0x80, 0x80, "QR");
        assert_eq!(plain.wire()[3] & 0x80, 0x80, "RA");
        assert_eq!(&plain.wire()[10..12], &[0, 0], "no OPT");
    }

    /// An upstream response as NSD sends it: compressed names, the zone's NS in the
    /// authority section, glue and OPT in the additional section.
    fn upstream_response(rcode: Rcode, answers: &[&str]) -> Bytes {
        use domain::base::iana::Opcode;
        use domain::rdata::{Ns, Soa};
        let zone = Name::<Bytes>::bytes_from_str("example.test.").unwrap();
        let ns = Name::<Bytes>::bytes_from_str("ns.example.test.").unwrap();
        let mut builder = MessageBuilder::from_target(StaticCompressor::new(Vec::new())).unwrap();
        {
            let header = builder.header_mut();
            header.set_id(7);
            header.set_qr(true);
            header.set_aa(true);
            header.set_opcode(Opcode::QUERY);
            header.set_rcode(rcode);
        }
        let mut question = builder.question();
        question
            .push((&question_name(), Rtype::A, Class::IN))
            .unwrap();
        let mut answer = question.answer();
        for address in answers {
            let data: A = A::new(address.parse().unwrap());
            answer
                .push((question_name(), Class::IN, Ttl::from_secs(300), data))
                .unwrap();
        }
        let mut authority = answer.authority();
        if answers.is_empty() {
            let soa = Soa::new(
                ns.clone(),
                Name::<Bytes>::bytes_from_str("hostmaster.example.test.").unwrap(),
                1.into(),
                Ttl::from_secs(3600),
                Ttl::from_secs(900),
                Ttl::from_secs(604_800),
                Ttl::from_secs(60),
            );
            authority
                .push((zone.clone(), Class::IN, Ttl::from_secs(3600), soa))
                .unwrap();
        } else {
            authority
                .push((
                    zone.clone(),
                    Class::IN,
                    Ttl::from_secs(3600),
                    Ns::new(ns.clone()),
                ))
                .unwrap();
        }
        let mut additional = authority.additional();
        if !answers.is_empty() {
            let glue: A = A::new("192.0.2.53".parse().unwrap());
            additional
                .push((ns, Class::IN, Ttl::from_secs(3600), glue))
                .unwrap();
        }
        additional
            .opt(|opt| {
                opt.set_udp_payload_size(1232);
                Ok(())
            })
            .unwrap();
        Bytes::from(additional.finish().into_target())
    }

    fn question_name() -> Name<Bytes> {
        Name::bytes_from_str("www.example.test.").unwrap()
    }

    /// Header and every record (as text) of a cached answer.
    fn contents(entry: &CachedAnswer) -> (Vec<u8>, Vec<String>) {
        use domain::base::{Message, ParsedName};
        let message = Message::from_octets(entry.wire().to_vec()).unwrap();
        let mut lines = Vec::new();
        for record in message
            .answer()
            .unwrap()
            .chain(message.authority().unwrap())
        {
            let record = record.unwrap();
            let record = record
                .to_any_record::<AllRecordData<_, ParsedName<_>>>()
                .unwrap();
            lines.push(record.to_string());
        }
        (entry.wire()[..12].to_vec(), lines)
    }

    fn both_ways(wire: &Bytes, outcome: Outcome) -> (CachedAnswer, CachedAnswer) {
        let config = CacheConfig::default();
        let question = Question {
            name: question_name(),
            ..question(false)
        };
        assert!(
            verbatim(&question, &outcome, wire).is_some(),
            "the fast path applies"
        );
        let copied = build(&question, &outcome, 0, &config).unwrap();
        let composed = build(
            &question,
            &Outcome {
                verbatim: None,
                ..outcome
            },
            0,
            &config,
        )
        .unwrap();
        (copied, composed)
    }

    #[test]
    fn copied_answer_equals_composed_answer() {
        use crate::upstream::check_and_parse;
        let wire = upstream_response(Rcode::NOERROR, &["192.0.2.1", "192.0.2.2"]);
        let response = check_and_parse(wire.clone(), 7, &question_name(), Rtype::A, false)
            .unwrap()
            .unwrap();
        let outcome = Outcome {
            rcode: Rcode::NOERROR,
            answer: response.answer.clone(),
            authority: Vec::new(),
            verbatim: Some(response.wire.clone()),
        };
        let (copied, composed) = both_ways(&wire, outcome);
        assert_eq!(contents(&copied), contents(&composed));
        assert_eq!(contents(&copied).1.len(), 2, "glue, NS and OPT are cut off");
        assert_eq!(copied.kind(), AnswerKind::Positive);
        assert_eq!(copied.expires_at(), composed.expires_at());
        assert_eq!(copied.addresses(), composed.addresses());
        assert_eq!(copied.wire()[..2], [0, 0], "ID zeroed");
    }

    #[test]
    fn copied_negative_answer_equals_composed_answer() {
        use crate::upstream::check_and_parse;
        let wire = upstream_response(Rcode::NXDOMAIN, &[]);
        let response = check_and_parse(wire.clone(), 7, &question_name(), Rtype::A, false)
            .unwrap()
            .unwrap();
        let outcome = Outcome {
            rcode: Rcode::NXDOMAIN,
            answer: Vec::new(),
            authority: response.authority.clone(),
            verbatim: Some(response.wire.clone()),
        };
        let (copied, composed) = both_ways(&wire, outcome);
        assert_eq!(contents(&copied), contents(&composed));
        assert_eq!(copied.kind(), AnswerKind::NxDomain);
        assert_eq!(copied.expires_at(), composed.expires_at());
    }

    #[test]
    fn no_copy_when_names_would_read_cut_bytes() {
        let name = question_name();
        let question = Question {
            name: name.clone(),
            ..question(false)
        };
        let header = [0, 7, 0x84, 0, 0, 1, 0, 1, 0, 0, 0, 0];
        let mut wire = header.to_vec();
        wire.extend_from_slice(name.as_slice());
        wire.extend_from_slice(&[0, 1, 0, 1]);
        let record_at = wire.len();
        // Owner: a pointer forward, past the answer section.
        wire.extend_from_slice(&[0xC0, 0]);
        wire.extend_from_slice(&[0, 1, 0, 1, 0, 0, 1, 44, 0, 4, 192, 0, 2, 1]);
        let forward = u8::try_from(wire.len()).unwrap();
        wire[record_at + 1] = forward;
        wire.extend_from_slice(name.as_slice());
        let owner = Record::new(
            name.clone(),
            Class::IN,
            Ttl::from_secs(300),
            AllRecordData::A(A::new("192.0.2.1".parse().unwrap())),
        );
        let outcome = Outcome {
            rcode: Rcode::NOERROR,
            answer: vec![owner.clone()],
            authority: Vec::new(),
            verbatim: Some(Bytes::from(wire.clone())),
        };
        assert!(verbatim(&question, &outcome, &wire).is_none());
        // A pointer into the header is refused too.
        wire[record_at + 1] = 2;
        assert!(verbatim(&question, &outcome, &wire).is_none());
        // A pointer back to the question is what servers send: accepted.
        wire[record_at + 1] = 12;
        assert!(verbatim(&question, &outcome, &wire).is_some());
        // Not when the outcome does not hold the whole answer section.
        let partial = Outcome {
            answer: Vec::new(),
            ..outcome
        };
        assert!(verbatim(&question, &partial, &wire).is_none());
    }
}
