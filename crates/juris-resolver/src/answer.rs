//! Assembles the one response message a resolution produces and turns it into a cache entry.
//!
//! Header QR=1, RA=1, RD=1 (the cache echoes the client's RD), the RCODE; the question with
//! the lower-cased name; the answer (CNAME/DNAME chain then the final RRset); the authority
//! (SOA and, for DO=1, NSEC/NSEC3 and RRSIGs) for negative answers; no OPT (the server adds
//! the client's). DNSSEC records go only into DO=1 answers, unless asked for by type.

use domain::base::iana::Rcode;
use domain::base::message_builder::StaticCompressor;
use domain::base::MessageBuilder;

use crate::cache::{CacheConfig, CachedAnswer};
use crate::names::{is_dnssec_type, lower, Rr};
use crate::recursor::Outcome;
use crate::resolver::{Question, ResolveError};

/// Builds the response for `question` from `outcome`, ready for the cache.
pub(crate) fn build(
    question: &Question,
    outcome: &Outcome,
    now: u64,
    config: &CacheConfig,
) -> Result<CachedAnswer, ResolveError> {
    let wire = render(question, outcome.rcode, &outcome.answer, &outcome.authority)?;
    CachedAnswer::from_message(&wire, now, config)
        .map_err(|e| ResolveError::Internal(format!("assembled answer rejected: {e}")))
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
#[allow(clippy::unwrap_used)] // reason: test code.
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
}
