//! A small decoder for the responses `juris explain` shows: header, sections (owner, type,
//! TTL, SOA fields), and the OPT record's Extended DNS Errors. Names may be compressed.
//! Only what explain prints is decoded; other RDATA is shown as its length.

use juris_server::codes::{ede, flags, option_code, rtype, Rcode};
use serde::Serialize;

/// A decoded response.
#[derive(Debug, Clone, Serialize)]
pub struct Decoded {
    /// RCODE mnemonic (`NOERROR`, `NXDOMAIN`, `REFUSED`, ...), extended bits included.
    pub rcode: String,
    /// Header flags set (`qr`, `aa`, `tc`, `rd`, `ra`, `ad`, `cd`).
    pub flags: Vec<String>,
    /// Answer records.
    pub answer: Vec<RecordText>,
    /// Authority records.
    pub authority: Vec<RecordText>,
    /// Extended DNS Errors in the OPT record.
    pub extended_errors: Vec<ExtendedErrorText>,
    /// Message size in bytes.
    pub size: usize,
}

/// One record.
#[derive(Debug, Clone, Serialize)]
pub struct RecordText {
    /// Owner, absolute.
    pub name: String,
    /// Type mnemonic.
    pub record_type: String,
    /// TTL.
    pub ttl: u32,
    /// RDATA in presentation format (SOA, A, AAAA, CNAME) or `\# LEN`.
    pub data: String,
}

/// One EDE option.
#[derive(Debug, Clone, Serialize)]
pub struct ExtendedErrorText {
    /// INFO-CODE.
    pub code: u16,
    /// Its RFC 8914 name.
    pub purpose: String,
    /// EXTRA-TEXT.
    pub text: String,
}

/// Why a message could not be decoded.
#[derive(Debug, thiserror::Error)]
#[error("malformed DNS message at offset {0}")]
pub struct DecodeError(usize);

/// Decodes `message`.
pub fn decode(message: &[u8]) -> Result<Decoded, DecodeError> {
    let u16_at = |at: usize| -> Result<u16, DecodeError> {
        Ok(u16::from_be_bytes([
            *message.get(at).ok_or(DecodeError(at))?,
            *message.get(at + 1).ok_or(DecodeError(at))?,
        ]))
    };
    let u32_at = |at: usize| -> Result<u32, DecodeError> {
        Ok((u32::from(u16_at(at)?) << 16) | u32::from(u16_at(at + 2)?))
    };
    let flags_word = u16_at(2)?;
    let counts = [u16_at(4)?, u16_at(6)?, u16_at(8)?, u16_at(10)?];
    let mut pos = 12;
    for _ in 0..counts[0] {
        let (_, end) = read_name(message, pos)?;
        pos = end + 4;
    }
    let mut sections: [Vec<RecordText>; 2] = [Vec::new(), Vec::new()];
    let mut extended_errors = Vec::new();
    let mut extended_rcode = 0u16;
    for (index, count) in counts[1..].iter().enumerate() {
        for _ in 0..*count {
            let (name, end) = read_name(message, pos)?;
            let rtype = u16_at(end)?;
            let ttl = u32_at(end + 4)?;
            let rdlen = usize::from(u16_at(end + 8)?);
            let rdata_at = end + 10;
            let rdata = message
                .get(rdata_at..rdata_at + rdlen)
                .ok_or(DecodeError(rdata_at))?;
            pos = rdata_at + rdlen;
            if rtype == rtype::OPT {
                extended_rcode = u16::from(message[end + 4]) << 4;
                let mut at = 0;
                while at + 4 <= rdata.len() {
                    let code = u16::from_be_bytes([rdata[at], rdata[at + 1]]);
                    let len = usize::from(u16::from_be_bytes([rdata[at + 2], rdata[at + 3]]));
                    let value = rdata
                        .get(at + 4..at + 4 + len)
                        .ok_or(DecodeError(rdata_at + at))?;
                    if code == option_code::EXTENDED_ERROR && value.len() >= 2 {
                        let info = u16::from_be_bytes([value[0], value[1]]);
                        extended_errors.push(ExtendedErrorText {
                            code: info,
                            purpose: ede::purpose(info).unwrap_or("unknown").to_owned(),
                            text: String::from_utf8_lossy(&value[2..]).into_owned(),
                        });
                    }
                    at += 4 + len;
                }
                continue;
            }
            if index < 2 {
                sections[index].push(RecordText {
                    name,
                    record_type: rtype::name(rtype),
                    ttl,
                    data: rdata_text(message, rtype, rdata_at, rdata)?,
                });
            }
        }
    }
    let [answer, authority] = sections;
    Ok(Decoded {
        rcode: Rcode(extended_rcode | (flags_word & 0x000F)).to_string(),
        flags: flags::NAMES
            .iter()
            .filter(|(bit, _)| flags_word & bit != 0)
            .map(|(_, name)| (*name).to_owned())
            .collect(),
        answer,
        authority,
        extended_errors,
        size: message.len(),
    })
}

impl Decoded {
    /// dig-like text.
    pub fn render(&self) -> String {
        use std::fmt::Write;
        let mut out = String::new();
        let _ = writeln!(
            out,
            "status: {}, flags: {}, {} bytes",
            self.rcode,
            self.flags.join(" "),
            self.size
        );
        for (title, records) in [("ANSWER", &self.answer), ("AUTHORITY", &self.authority)] {
            if records.is_empty() {
                continue;
            }
            let _ = writeln!(out, "{title}:");
            for r in records {
                let _ = writeln!(
                    out,
                    "  {} {} IN {} {}",
                    r.name, r.ttl, r.record_type, r.data
                );
            }
        }
        for e in &self.extended_errors {
            let _ = writeln!(out, "EDE: {} ({}): {}", e.code, e.purpose, e.text);
        }
        out
    }
}

/// Reads a possibly compressed name at `pos`: (presentation text, offset after it in place).
fn read_name(message: &[u8], mut pos: usize) -> Result<(String, usize), DecodeError> {
    let mut text = String::new();
    let mut end = None;
    for _ in 0..128 {
        let len = *message.get(pos).ok_or(DecodeError(pos))?;
        match len {
            0 => {
                if text.is_empty() {
                    text.push('.');
                }
                return Ok((text, end.unwrap_or(pos + 1)));
            }
            l if l & 0xC0 == 0xC0 => {
                let low = *message.get(pos + 1).ok_or(DecodeError(pos))?;
                end.get_or_insert(pos + 2);
                pos = (usize::from(l & 0x3F) << 8) | usize::from(low);
            }
            l if l < 64 => {
                let label = message
                    .get(pos + 1..pos + 1 + usize::from(l))
                    .ok_or(DecodeError(pos))?;
                for &b in label {
                    if b.is_ascii_graphic() && b != b'.' && b != b'\\' {
                        text.push(char::from(b));
                    } else {
                        text.push_str(&format!("\\{b:03}"));
                    }
                }
                text.push('.');
                pos += 1 + usize::from(l);
            }
            _ => return Err(DecodeError(pos)),
        }
    }
    Err(DecodeError(pos))
}

fn rdata_text(message: &[u8], rtype: u16, at: usize, rdata: &[u8]) -> Result<String, DecodeError> {
    Ok(match rtype {
        rtype::A if rdata.len() == 4 => {
            std::net::Ipv4Addr::new(rdata[0], rdata[1], rdata[2], rdata[3]).to_string()
        }
        rtype::AAAA if rdata.len() == 16 => {
            let mut octets = [0u8; 16];
            octets.copy_from_slice(rdata);
            std::net::Ipv6Addr::from(octets).to_string()
        }
        rtype::NS | rtype::CNAME | rtype::PTR => read_name(message, at)?.0,
        rtype::SOA => {
            let (mname, after) = read_name(message, at)?;
            let (rname, after) = read_name(message, after)?;
            let field = |i: usize| -> Result<u32, DecodeError> {
                let b = message
                    .get(after + 4 * i..after + 4 * i + 4)
                    .ok_or(DecodeError(after))?;
                Ok(u32::from_be_bytes([b[0], b[1], b[2], b[3]]))
            };
            format!(
                "{mname} {rname} {} {} {} {} {}",
                field(0)?,
                field(1)?,
                field(2)?,
                field(3)?,
                field(4)?
            )
        }
        _ => format!("\\# {}", rdata.len()),
    })
}
