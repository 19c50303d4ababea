//! Blocked answers: what a client gets when an order applies to it.
//!
//! ```text
//!  header  QR RD(echoed) RA, RCODE per action: refused → REFUSED, nxdomain → NXDOMAIN,
//!          nodata → NOERROR with no answer
//!  question echoed (client's spelling)
//!  authority (NXDOMAIN / NODATA only): one synthesised SOA
//!          owner  the matched target when the query name matched (kickasstorrents.to. for
//!                 www.kickasstorrents.to.), otherwise the query name itself (a CNAME target
//!                 or an answer address matched): always the query name or an ancestor of it,
//!                 so downstream caches accept it as in bailiwick
//!          MNAME/RNAME from the settings (default blocked.juris.invalid. and
//!          hostmaster.juris.invalid.), SERIAL = policy generation, TTL = MINIMUM = block TTL
//!  OPT (if the client sent one) with RFC 8914 EDE: code per order kind (16 Censored, 15
//!          Blocked, 17 Filtered), EXTRA-TEXT
//!            plain       blocked by order IT-MI-2024-0001 (Tribunale di Milano, RG 12345/2024)
//!            structured  {"c":["https://…"],"j":"…","o":"Tribunale di Milano","l":"en"}
//!                        (draft-ietf-dnsop-structured-dns-error-27; never "s": forbidden
//!                        with Censored, and meaningless without a registry for the others)
//! ```
//! When the answer would exceed the client's limit (its UDP size), EXTRA-TEXT shrinks first:
//! structured JSON loses `j` and `o`; plain text becomes `blocked by order ID`; then the EDE
//! goes, then the SOA. Blocked answers are synthesised per query and never cached, so lifting
//! an order takes effect at once in juris (downstream caches keep them for the block TTL).
//!
//! # Limitations
//! - `c` holds only the order's notice URL; without one `c` is left out (no operator-wide
//!   contact is configured yet).

use juris_policy::{Block, MatchedTarget, OrderInfo};

use crate::config::PolicySettings;
use crate::error_map;
use crate::synth::{write_rcode_response, ExtendedError, Owner, ReplyTo, ResponseBuilder, Section};

/// SOA timers other than MINIMUM (which is the block TTL): refresh 1 h, retry 10 min,
/// expire 1 day. Nobody transfers this zone; the values only have to be plausible.
const SOA_REFRESH: u32 = 3600;
const SOA_RETRY: u32 = 600;
const SOA_EXPIRE: u32 = 86_400;
const TYPE_SOA: u16 = 6;
const CLASS_IN: u16 = 1;

/// [`PolicySettings`] prepared for the hot path (names in wire form).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BlockSettings {
    /// TTL and MINIMUM of the synthesised SOA.
    pub ttl: u32,
    mname: Box<[u8]>,
    rname: Box<[u8]>,
}

/// What matched: decides the SOA owner.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Trigger {
    /// The query name (checked before the cache).
    QueryName,
    /// A CNAME/DNAME target in the answer.
    CnameTarget,
    /// An A/AAAA address in the answer.
    Address,
    /// The name of an authoritative server of the answer (an NS name of the zone cut that
    /// answered: an `nsdname` target).
    NameServer,
    /// An address of an authoritative server of the answer (an `nsip` target).
    NameServerAddress,
}

impl BlockSettings {
    /// Prepares `settings`; `None` when an SOA name is not a domain name
    /// ([`crate::ServerConfig::validate`] rejects those first).
    pub fn new(settings: &PolicySettings) -> Option<Self> {
        Some(Self {
            ttl: settings.block_ttl,
            mname: name_to_wire(&settings.soa_mname)?.into_boxed_slice(),
            rname: name_to_wire(&settings.soa_rname)?.into_boxed_slice(),
        })
    }
}

/// The plain EXTRA-TEXT: `blocked by order ID (AUTHORITY, REFERENCE)`.
pub fn plain_text(order: &OrderInfo) -> String {
    if order.reference.is_empty() {
        format!("blocked by order {} ({})", order.id, order.authority)
    } else {
        format!(
            "blocked by order {} ({}, {})",
            order.id, order.authority, order.reference
        )
    }
}

/// The structured EXTRA-TEXT (minified JSON): `c` the notice URL, `j` the notice text with the
/// order reference (or the plain text when the notice has none), `o` the authority, `l` the
/// notice language. `full = false` leaves out `j` and `o` (for small UDP sizes). Never `s`.
pub fn structured_text(order: &OrderInfo, full: bool) -> String {
    #[derive(serde::Serialize)]
    struct StructuredError<'a> {
        #[serde(skip_serializing_if = "Vec::is_empty")]
        c: Vec<&'a str>,
        #[serde(skip_serializing_if = "Option::is_none")]
        j: Option<String>,
        #[serde(skip_serializing_if = "Option::is_none")]
        o: Option<&'a str>,
        #[serde(skip_serializing_if = "Option::is_none")]
        l: Option<&'a str>,
    }
    let notice = &order.notice;
    let justification = || {
        if notice.text.is_empty() {
            plain_text(order)
        } else if order.reference.is_empty() {
            format!("{} (order {})", notice.text, order.id)
        } else {
            format!("{} (order {}, {})", notice.text, order.id, order.reference)
        }
    };
    let value = StructuredError {
        c: if notice.url.is_empty() {
            Vec::new()
        } else {
            vec![notice.url.as_str()]
        },
        j: full.then(justification),
        o: (full && !order.authority.is_empty()).then_some(order.authority.as_str()),
        l: (!notice.lang.is_empty()).then_some(notice.lang.as_str()),
    };
    // Serialising strings and a vector of strings cannot fail.
    serde_json::to_string(&value).unwrap_or_default()
}

/// Writes the blocked answer for `block` (see the module documentation). `query_name` is the
/// lower-cased wire name of the question; `structured` is the client's structured-error
/// signal; `serial` goes into the SOA. Returns the length, `None` if `out` cannot hold even a
/// header.
#[allow(
    clippy::too_many_arguments,
    reason = "the per-query facts, kept unbundled (no struct to fill per block)"
)]
pub fn write_block(
    out: &mut [u8],
    reply: &ReplyTo<'_>,
    query_name: &[u8],
    block: &Block,
    trigger: Trigger,
    structured: bool,
    settings: &BlockSettings,
    serial: u32,
) -> Option<usize> {
    let answer = error_map::for_block(block.action(), block.meaning());
    let order = block.order();
    let texts: [Option<String>; 3] = if structured {
        [
            Some(structured_text(order, true)),
            Some(structured_text(order, false)),
            None,
        ]
    } else {
        [
            Some(plain_text(order)),
            Some(format!("blocked by order {}", order.id)),
            None,
        ]
    };
    let mut owner_buffer = [0u8; 255];
    let owner = match (trigger, block.target()) {
        (Trigger::QueryName, MatchedTarget::Name { name, .. }) => {
            match name_to_wire_into(name, &mut owner_buffer) {
                Some(len) if query_name.ends_with(&owner_buffer[..len]) => {
                    Owner::Wire(&owner_buffer[..len])
                }
                _ => Owner::QueryName,
            }
        }
        _ => Owner::QueryName,
    };
    let soa = answer.with_soa.then(|| soa_rdata(settings, serial));
    // `reply.limit` is at least 512 for UDP (RFC 1035) and 65535 for TCP.
    let limit = reply.limit.min(out.len());
    for text in &texts {
        let ede = text.as_deref().map(|extra_text| ExtendedError {
            info_code: answer.ede_code,
            extra_text,
        });
        let room = out.get_mut(..limit)?;
        let written = ResponseBuilder::start(room, reply, answer.rcode).and_then(|mut builder| {
            if let Some(rdata) = &soa {
                builder.push_record(
                    Section::Authority,
                    owner,
                    TYPE_SOA,
                    CLASS_IN,
                    settings.ttl,
                    rdata,
                )?;
            }
            builder.finish(ede.as_ref())
        });
        if written.is_some() {
            return written;
        }
    }
    write_rcode_response(out, reply, answer.rcode, None)
}

/// SOA RDATA: MNAME RNAME SERIAL REFRESH RETRY EXPIRE MINIMUM (= the block TTL).
fn soa_rdata(settings: &BlockSettings, serial: u32) -> Vec<u8> {
    let mut rdata = Vec::with_capacity(settings.mname.len() + settings.rname.len() + 20);
    rdata.extend_from_slice(&settings.mname);
    rdata.extend_from_slice(&settings.rname);
    for value in [serial, SOA_REFRESH, SOA_RETRY, SOA_EXPIRE, settings.ttl] {
        rdata.extend_from_slice(&value.to_be_bytes());
    }
    rdata
}

/// A presentation-format name (`blocked.juris.invalid.` or without the final dot) in wire
/// form; `None` if a label is empty or too long, or the name is too long. No escapes.
pub fn name_to_wire(text: &str) -> Option<Vec<u8>> {
    let mut buffer = [0u8; 255];
    let len = name_to_wire_into(text, &mut buffer)?;
    Some(buffer[..len].to_vec())
}

fn name_to_wire_into(text: &str, out: &mut [u8; 255]) -> Option<usize> {
    let text = text.strip_suffix('.').unwrap_or(text);
    let mut pos = 0;
    if !text.is_empty() {
        for label in text.split('.') {
            let len = label.len();
            if len == 0 || len > 63 || pos + 1 + len >= out.len() {
                return None;
            }
            out[pos] = len as u8;
            out[pos + 1..pos + 1 + len].copy_from_slice(label.as_bytes());
            pos += 1 + len;
        }
    }
    out[pos] = 0;
    Some(pos + 1)
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used, reason = "test code")]
mod tests {
    use super::*;
    use crate::synth::OptReply;
    use juris_policy::{
        name_to_wire as policy_wire, CompileOptions, CompiledPolicy, Country, Order,
        ValidationOptions,
    };

    const QNAME: &[u8] = b"\x03www\x0fkickasstorrents\x02to\x00";

    fn order_json(action: &str, kind: &str) -> String {
        format!(
            r#"{{"id": "IT-MI-2024-0001", "kind": "{kind}", "authority": "Tribunale di Milano",
                "reference": "RG 12345/2024", "jurisdictions": ["IT"], "action": "{action}",
                "state": "active",
                "targets": [{{"type": "subtree", "value": "kickasstorrents.to"}}],
                "notice": {{"text": "Blocked by order of the Court of Milan", "lang": "en",
                            "url": "https://lumendatabase.org/notices/0"}}}}"#
        )
    }

    fn block(action: &str, kind: &str) -> Block {
        let order = Order::from_json(order_json(action, kind).as_bytes())
            .unwrap()
            .validate(&ValidationOptions::default())
            .unwrap();
        let policy = CompiledPolicy::compile(&[order], &CompileOptions::default()).unwrap();
        let italy: Country = "IT".parse().unwrap();
        let now = jiff::Timestamp::from_second(1_717_243_200).unwrap();
        let verdict = policy.check_name(
            &policy_wire("www.kickasstorrents.to").unwrap(),
            Some(italy),
            now,
        );
        verdict.block().expect("blocked").clone()
    }

    fn question() -> Vec<u8> {
        let mut q = QNAME.to_vec();
        q.extend_from_slice(&[0, 1, 0, 1]);
        q
    }

    fn reply(question: &[u8], limit: usize) -> ReplyTo<'_> {
        ReplyTo {
            id: 0x4242,
            query_flags: 0x0100,
            question: Some(question),
            opt: Some(OptReply {
                udp_payload_size: 1232,
                dnssec_ok: false,
                padding: false,
                ecs: None,
                cookie: None,
            }),
            limit,
        }
    }

    fn settings() -> BlockSettings {
        BlockSettings::new(&PolicySettings::default()).unwrap()
    }

    /// Decodes with hickory-proto (an independent parser).
    fn decode(bytes: &[u8]) -> hickory_proto::op::Message {
        hickory_proto::op::Message::from_vec(bytes).unwrap()
    }

    fn ede(message: &hickory_proto::op::Message) -> (u16, String) {
        use hickory_proto::rr::rdata::opt::{EdnsCode, EdnsOption};
        let edns = message.extensions().as_ref().expect("OPT");
        match edns.options().get(EdnsCode::Unknown(15)).expect("EDE") {
            EdnsOption::Unknown(15, data) => (
                u16::from_be_bytes([data[0], data[1]]),
                String::from_utf8(data[2..].to_vec()).unwrap(),
            ),
            other => panic!("{other:?}"),
        }
    }

    fn write(block: &Block, structured: bool, limit: usize, trigger: Trigger) -> Vec<u8> {
        let q = question();
        let mut out = vec![0u8; 65535];
        let len = write_block(
            &mut out,
            &reply(&q, limit),
            QNAME,
            block,
            trigger,
            structured,
            &settings(),
            7,
        )
        .unwrap();
        out.truncate(len);
        out
    }

    #[test]
    fn rcode_follows_the_action_and_soa_comes_with_nxdomain_and_nodata() {
        use hickory_proto::op::ResponseCode;
        use hickory_proto::rr::RData;
        for (action, rcode, soa) in [
            ("nxdomain", ResponseCode::NXDomain, true),
            ("nodata", ResponseCode::NoError, true),
            ("refused", ResponseCode::Refused, false),
        ] {
            let message = decode(&write(
                &block(action, "court_order"),
                false,
                1232,
                Trigger::QueryName,
            ));
            assert_eq!(message.response_code(), rcode, "{action}");
            assert_eq!(message.id(), 0x4242);
            assert!(
                message.answers().is_empty(),
                "{action}: never a forged answer"
            );
            assert_eq!(message.queries().len(), 1, "question echoed");
            assert_eq!(message.name_servers().len(), usize::from(soa), "{action}");
            if soa {
                let record = &message.name_servers()[0];
                assert_eq!(
                    record.name().to_ascii(),
                    "kickasstorrents.to.",
                    "the matched target"
                );
                assert_eq!(record.ttl(), 30);
                let RData::SOA(soa) = record.data() else {
                    panic!("{record:?}")
                };
                assert_eq!(soa.minimum(), 30);
                assert_eq!(soa.serial(), 7);
                assert_eq!(soa.mname().to_ascii(), "blocked.juris.invalid.");
            }
            let (code, text) = ede(&message);
            assert_eq!(code, 16);
            assert_eq!(
                text,
                "blocked by order IT-MI-2024-0001 (Tribunale di Milano, RG 12345/2024)"
            );
        }
    }

    #[test]
    fn soa_owner_is_the_query_name_for_answer_triggers() {
        let message = decode(&write(
            &block("nxdomain", "court_order"),
            false,
            1232,
            Trigger::CnameTarget,
        ));
        assert_eq!(
            message.name_servers()[0].name().to_ascii(),
            "www.kickasstorrents.to."
        );
    }

    #[test]
    fn ede_code_follows_the_kind() {
        for (kind, code) in [
            ("court_order", 16),
            ("regulator_order", 16),
            ("feed_ticket", 16),
            ("operator_security", 15),
            ("client_filter", 17),
        ] {
            let message = decode(&write(
                &block("nxdomain", kind),
                false,
                1232,
                Trigger::QueryName,
            ));
            assert_eq!(ede(&message).0, code, "{kind}");
        }
    }

    #[test]
    fn structured_errors_carry_c_j_o_l_and_never_s() {
        let message = decode(&write(
            &block("nxdomain", "court_order"),
            true,
            1232,
            Trigger::QueryName,
        ));
        let (code, text) = ede(&message);
        assert_eq!(code, 16);
        assert!(
            !text.contains('\n') && !text.contains(": "),
            "minified: {text}"
        );
        let json: serde_json::Value = serde_json::from_str(&text).unwrap();
        let object = json.as_object().unwrap();
        assert_eq!(
            json["c"],
            serde_json::json!(["https://lumendatabase.org/notices/0"])
        );
        assert_eq!(
            json["j"],
            "Blocked by order of the Court of Milan (order IT-MI-2024-0001, RG 12345/2024)"
        );
        assert_eq!(json["o"], "Tribunale di Milano");
        assert_eq!(json["l"], "en");
        assert!(!object.contains_key("s"), "s is forbidden with Censored");
        assert_eq!(object.len(), 4);
    }

    #[test]
    fn j_and_o_go_first_when_the_answer_would_not_fit() {
        let block = block("nxdomain", "court_order");
        let full = write(&block, true, 1232, Trigger::QueryName);
        // Room for everything but the full JSON.
        let limit = full.len() - 1;
        let small = write(&block, true, limit, Trigger::QueryName);
        assert!(small.len() <= limit);
        let message = decode(&small);
        let (code, text) = ede(&message);
        assert_eq!(code, 16);
        let json: serde_json::Value = serde_json::from_str(&text).unwrap();
        let object = json.as_object().unwrap();
        assert!(
            !object.contains_key("j") && !object.contains_key("o"),
            "{text}"
        );
        assert!(!object.contains_key("s"), "{text}");
        assert_eq!(
            json["c"],
            serde_json::json!(["https://lumendatabase.org/notices/0"])
        );
        assert_eq!(json["l"], "en");
        assert_eq!(message.name_servers().len(), 1, "the SOA stays");
    }

    #[test]
    fn a_buffer_too_small_gives_none_and_every_answer_written_is_a_whole_message() {
        let block = block("nxdomain", "court_order");
        let q = question();
        let mut first_fit = None;
        for size in 0..600 {
            let mut out = vec![0u8; size];
            let written = write_block(
                &mut out,
                &reply(&q, 512),
                QNAME,
                &block,
                Trigger::QueryName,
                true,
                &settings(),
                1,
            );
            match written {
                None => assert!(first_fit.is_none(), "{size} bytes: none after a fit"),
                Some(len) => {
                    first_fit.get_or_insert(size);
                    assert!(len <= size.min(512), "{len} bytes written into {size}");
                    let message = decode(&out[..len]);
                    assert_eq!(
                        message.response_code(),
                        hickory_proto::op::ResponseCode::NXDomain,
                        "{size}"
                    );
                    assert_eq!(message.id(), 0x4242, "{size}");
                }
            }
        }
        assert!(first_fit.is_some_and(|size| size <= 512), "{first_fit:?}");
    }

    #[test]
    fn names_to_wire() {
        assert_eq!(name_to_wire("a.bc.").unwrap(), b"\x01a\x02bc\x00");
        assert_eq!(name_to_wire("a.bc").unwrap(), b"\x01a\x02bc\x00");
        assert_eq!(name_to_wire(".").unwrap(), b"\x00");
        assert!(name_to_wire("a..b").is_none());
        assert!(name_to_wire(&"x".repeat(64)).is_none());
    }
}
