//! The one place where failures become RCODEs and Extended DNS Errors (RFC 8914).
//!
//! | failure                                   | RCODE    | EDE                          |
//! |-------------------------------------------|----------|------------------------------|
//! | `ResolveError::NoReachableAuthority`      | SERVFAIL | 22 No Reachable Authority    |
//! | `ResolveError::Timeout`                   | SERVFAIL | 22 No Reachable Authority    |
//! | `ResolveError::InvalidData`               | SERVFAIL | 23 Network Error             |
//! | `ResolveError::LimitExceeded`             | SERVFAIL | 0 Other                      |
//! | ... upstream queries outstanding (zone, total) | SERVFAIL (or stale) | 0 Other, "too many upstream queries outstanding" |
//! | `ResolveError::Internal`, task failure    | SERVFAIL | 0 Other                      |
//! | DNSSEC bogus answer, query with CD=0      | SERVFAIL | the validator's: 6 Bogus, 7 Signature Expired, 8 Not Yet Valid, 9 DNSKEY Missing, 10 RRSIGs Missing, 12 NSEC Missing (text names the zone) |
//! | stale entry served after a failure        | (cached) | 3 Stale Answer / 19 Stale NXDOMAIN Answer |
//! | AXFR, IXFR (any transport, as Unbound)    | REFUSED  | 21 Not Supported (with EDNS) |
//! | meta types OPT, TSIG, TKEY, MAILA/B, 128–248 | FORMERR | –                          |
//! | class other than IN                       | REFUSED  | 21 Not Supported (with EDNS) |
//! | client in a withdrawn jurisdiction        | REFUSED  | 18 Prohibited                |
//! | order with `action: refused`              | REFUSED  | per meaning: censored 16 / blocked 15 / filtered 17 (text: [`crate::block`]) |
//! | order with `action: nxdomain`             | NXDOMAIN + SOA | per meaning           |
//! | order with `action: nodata`               | NOERROR, no answer, + SOA | per meaning |
//!
//! EXTRA-TEXT is short and fixed: it never repeats the query name or upstream details.
//! Parser errors (FORMERR, NOTIMP, BADVERS) are decided by [`crate::query`] and carry no EDE.

use juris_policy::{Action, BlockMeaning};
use juris_resolver::cache::AnswerKind;
use juris_resolver::dnssec::{Bogus, BogusReason, Unsupported};
use juris_resolver::{Limit, ResolveError};

use crate::codes::{ede, rtype, Rcode};
use crate::synth::ExtendedError;

/// An error answer: RCODE plus an optional EDE.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ErrorAnswer {
    /// RCODE.
    pub rcode: Rcode,
    /// EDE to attach (only sent when the client used EDNS).
    pub ede: Option<ExtendedError<'static>>,
}

/// What a failed resolution gets.
pub fn for_resolve_error(error: &ResolveError) -> ErrorAnswer {
    let (info_code, extra_text) = match error {
        ResolveError::NoReachableAuthority(_) => {
            (ede::NO_REACHABLE_AUTHORITY, "no reachable authority")
        }
        ResolveError::Timeout => (ede::NO_REACHABLE_AUTHORITY, "resolution timed out"),
        ResolveError::InvalidData(_) => (ede::NETWORK_ERROR, "unusable upstream answers"),
        ResolveError::LimitExceeded(Limit::OutstandingPerZone | Limit::OutstandingTotal) => {
            (ede::OTHER, "too many upstream queries outstanding")
        }
        ResolveError::LimitExceeded(_) => (ede::OTHER, "resolution work limit reached"),
        ResolveError::Internal(_) => (ede::OTHER, "internal error"),
    };
    servfail(info_code, extra_text)
}

/// The EDE of a bogus answer (sent with SERVFAIL): the code for what the validator found
/// (RFC 8914 §4.7–4.13) and its text, which names the zone.
pub fn for_bogus(bogus: &Bogus) -> ExtendedError<'_> {
    let info_code = match bogus.reason {
        BogusReason::Bogus => ede::DNSSEC_BOGUS,
        BogusReason::SignatureExpired => ede::SIGNATURE_EXPIRED,
        BogusReason::SignatureNotYetValid => ede::SIGNATURE_NOT_YET_VALID,
        BogusReason::DnskeyMissing => ede::DNSKEY_MISSING,
        BogusReason::RrsigsMissing => ede::RRSIGS_MISSING,
        BogusReason::NsecMissing => ede::NSEC_MISSING,
        // RFC 8509 names no code: the data is fine, the text says why it is refused.
        BogusReason::RootKeySentinel => ede::OTHER,
    };
    ExtendedError {
        info_code,
        extra_text: &bogus.text,
    }
}

/// The informational EDE of an answer that is insecure only because juris does not implement
/// the zone's algorithms (EDE 1) or DS digest types (EDE 2), RFC 8624.
pub fn for_unsupported(what: Unsupported) -> ExtendedError<'static> {
    let info_code = match what {
        Unsupported::DnskeyAlgorithm => ede::UNSUPPORTED_DNSKEY_ALGORITHM,
        Unsupported::DsDigestType => ede::UNSUPPORTED_DS_DIGEST_TYPE,
    };
    ExtendedError {
        info_code,
        extra_text: "",
    }
}

/// What a query gets when the resolution task itself failed (panicked or was cancelled).
pub fn for_task_failure() -> ErrorAnswer {
    servfail(ede::OTHER, "internal error")
}

/// The EDE attached to a stale answer served because fresh resolution failed or was slow.
pub fn for_stale(kind: AnswerKind) -> ExtendedError<'static> {
    match kind {
        AnswerKind::NxDomain => ExtendedError {
            info_code: ede::STALE_NXDOMAIN_ANSWER,
            extra_text: "stale answer",
        },
        _ => ExtendedError {
            info_code: ede::STALE_ANSWER,
            extra_text: "stale answer",
        },
    }
}

/// How a blocked answer looks: RCODE, EDE code, and whether an SOA goes into the authority
/// section (the EXTRA-TEXT names the order and is written by [`crate::block`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BlockAnswer {
    /// RCODE.
    pub rcode: Rcode,
    /// EDE INFO-CODE ([`for_meaning`]: 16 Censored, 15 Blocked, 17 Filtered).
    pub ede_code: u16,
    /// NXDOMAIN and NODATA carry a synthesised SOA (RFC 2308).
    pub with_soa: bool,
}

/// The EDE INFO-CODE of what a block means.
pub fn for_meaning(meaning: BlockMeaning) -> u16 {
    match meaning {
        BlockMeaning::Censored => ede::CENSORED,
        BlockMeaning::Blocked => ede::BLOCKED,
        BlockMeaning::Filtered => ede::FILTERED,
    }
}

/// The answer to a query blocked by an order with `action` whose block means `meaning`.
pub fn for_block(action: Action, meaning: BlockMeaning) -> BlockAnswer {
    let ede_code = for_meaning(meaning);
    let (rcode, with_soa) = match action {
        Action::Refused => (Rcode::REFUSED, false),
        Action::Nxdomain => (Rcode::NXDOMAIN, true),
        Action::Nodata => (Rcode::NOERROR, true),
    };
    BlockAnswer {
        rcode,
        ede_code,
        with_soa,
    }
}

/// What every query from a client in a withdrawn jurisdiction gets.
pub fn for_withdrawn() -> ErrorAnswer {
    ErrorAnswer {
        rcode: Rcode::REFUSED,
        ede: Some(ExtendedError {
            info_code: ede::PROHIBITED,
            extra_text: "service is withdrawn in this jurisdiction",
        }),
    }
}

/// What a query with RD=0 gets when the cache has no fresh answer: it is answered from the
/// cache only (RFC 1034 §4.3.1), so nothing is resolved; REFUSED with EDE 20, Not
/// Authoritative (RFC 8914 §4.21). `docs/design/0017-cache-control.md` says why not a referral.
pub fn for_not_recursive() -> ErrorAnswer {
    ErrorAnswer {
        rcode: Rcode::REFUSED,
        ede: Some(ExtendedError {
            info_code: ede::NOT_AUTHORITATIVE,
            extra_text: "recursion not desired and no answer in the cache",
        }),
    }
}

/// Questions a resolver does not process, decided before the cache (Unbound's
/// `worker_handle_request` checks): `None` lets the query through.
pub fn for_question(qtype: u16, qclass: u16) -> Option<ErrorAnswer> {
    match qtype {
        rtype::IXFR | rtype::AXFR => Some(ErrorAnswer {
            rcode: Rcode::REFUSED,
            ede: Some(ExtendedError {
                info_code: ede::NOT_SUPPORTED,
                extra_text: "zone transfers are not served",
            }),
        }),
        rtype::OPT
        | rtype::TKEY
        | rtype::TSIG
        | rtype::MAILB
        | rtype::MAILA
        | rtype::META_FIRST..=rtype::META_LAST => Some(ErrorAnswer {
            rcode: Rcode::FORMERR,
            ede: None,
        }),
        _ if qclass != rtype::CLASS_IN => Some(ErrorAnswer {
            rcode: Rcode::REFUSED,
            ede: Some(ExtendedError {
                info_code: ede::NOT_SUPPORTED,
                extra_text: "only class IN is served",
            }),
        }),
        _ => None,
    }
}

fn servfail(info_code: u16, extra_text: &'static str) -> ErrorAnswer {
    ErrorAnswer {
        rcode: Rcode::SERVFAIL,
        ede: Some(ExtendedError {
            info_code,
            extra_text,
        }),
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used, reason = "test code")]
mod tests {
    use super::*;

    #[test]
    fn resolve_errors_map_to_servfail_with_ede() {
        let cases = [
            (ResolveError::NoReachableAuthority("x".into()), 22),
            (ResolveError::Timeout, 22),
            (ResolveError::InvalidData("x".into()), 23),
            (
                ResolveError::LimitExceeded(juris_resolver::Limit::Referrals),
                0,
            ),
            (ResolveError::Internal("x".into()), 0),
        ];
        for (error, code) in cases {
            let answer = for_resolve_error(&error);
            assert_eq!(answer.rcode, Rcode::SERVFAIL);
            assert_eq!(answer.ede.unwrap().info_code, code, "{error}");
        }
    }

    #[test]
    fn question_screening() {
        assert_eq!(for_question(252, 1).unwrap().rcode, Rcode::REFUSED);
        assert_eq!(for_question(251, 1).unwrap().rcode, Rcode::REFUSED);
        assert_eq!(for_question(250, 1).unwrap().rcode, Rcode::FORMERR);
        assert_eq!(for_question(41, 1).unwrap().rcode, Rcode::FORMERR);
        assert_eq!(for_question(1, 3).unwrap().rcode, Rcode::REFUSED);
        assert!(for_question(1, 1).is_none());
        assert!(for_question(255, 1).is_none(), "ANY is answered (RFC 8482)");
        assert!(for_question(65, 1).is_none());
    }

    #[test]
    fn meanings_map_to_their_ede_codes() {
        assert_eq!(for_meaning(BlockMeaning::Censored), 16);
        assert_eq!(for_meaning(BlockMeaning::Blocked), 15);
        assert_eq!(for_meaning(BlockMeaning::Filtered), 17);
        let answer = for_block(Action::Nxdomain, BlockMeaning::Filtered);
        assert_eq!(
            (answer.rcode, answer.ede_code, answer.with_soa),
            (Rcode::NXDOMAIN, 17, true)
        );
    }

    #[test]
    fn stale_nxdomain_has_its_own_code() {
        assert_eq!(for_stale(AnswerKind::NxDomain).info_code, 19);
        assert_eq!(for_stale(AnswerKind::Positive).info_code, 3);
    }
}
