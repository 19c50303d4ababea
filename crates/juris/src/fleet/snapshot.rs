//! The snapshot of a transferred zone in the data directory (the edge's
//! `fleet-snapshot.json`, each RPZ feed's `rpz-feed-NAME.json`; the names are kept from the
//! first, JSON, format): written after applied transfers (a temporary file, then renamed), read
//! at start when the primary is unreachable, so a restart during an outage still enforces what
//! was in force.
//!
//! Format 2: `JURIS-FLEET-SNAPSHOT 2`, a JSON header line ([`Header`]), then the zone's
//! records, binary: owner length (u8), owner, type (u16), data length (u16), data
//! (big-endian). Written and read in one pass, without text conversion: a follower restarting
//! with millions of names starts enforcing them soon. The first format (one JSON document,
//! data in hex) is still read.

use std::io::Write;
use std::net::SocketAddr;
use std::path::Path;

use serde::{Deserialize, Serialize};

use super::unix_now;
use super::zone::{Records, Rr};

const MAGIC: &[u8] = b"JURIS-FLEET-SNAPSHOT 2\n";

/// What the file says of itself (its first line after the magic, JSON).
#[derive(Debug, Serialize, Deserialize)]
struct Header {
    primary: String,
    zone: String,
    serial: u32,
    written_at: u64,
    /// How many records follow.
    records: usize,
}

/// What a snapshot holds.
#[derive(Debug)]
pub struct Loaded {
    /// The serial of the zone.
    pub serial: u32,
    /// Its records.
    pub records: Records,
    /// Unix time it was written.
    pub written_at: u64,
}

/// Writes `records` at `serial` of `zone` from `primary` to `path`; the error names the path.
pub fn write(
    path: &Path,
    primary: SocketAddr,
    zone: &str,
    serial: u32,
    records: &Records,
) -> Result<(), String> {
    let header = Header {
        primary: primary.to_string(),
        zone: zone.to_owned(),
        serial,
        written_at: unix_now(),
        records: records.len(),
    };
    let temporary = path.with_extension("json.tmp");
    std::fs::File::create(&temporary)
        .and_then(|file| {
            let mut out = std::io::BufWriter::with_capacity(1 << 20, file);
            write_to(&mut out, &header, records)?;
            out.into_inner()
                .map_err(std::io::IntoInnerError::into_error)
        })
        .and_then(|_| std::fs::rename(&temporary, path))
        .map_err(|e| {
            let _ = std::fs::remove_file(&temporary);
            format!("{}: {e}", path.display())
        })
}

fn write_to(out: &mut impl Write, header: &Header, records: &Records) -> std::io::Result<()> {
    out.write_all(MAGIC)?;
    serde_json::to_writer(&mut *out, header).map_err(std::io::Error::other)?;
    out.write_all(b"\n")?;
    for rr in records {
        let owner = u8::try_from(rr.owner.len()).map_err(std::io::Error::other)?;
        let data = u16::try_from(rr.rdata.len()).map_err(std::io::Error::other)?;
        out.write_all(&[owner])?;
        out.write_all(rr.owner.as_bytes())?;
        out.write_all(&rr.rtype.to_be_bytes())?;
        out.write_all(&data.to_be_bytes())?;
        out.write_all(&rr.rdata)?;
    }
    Ok(())
}

/// Reads the snapshot of `zone` at `path`; `Ok(None)`: there is none.
pub fn read(path: &Path, zone: &str) -> Result<Option<Loaded>, String> {
    let bytes = match std::fs::read(path) {
        Ok(bytes) => bytes,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(format!("{}: {e}", path.display())),
    };
    let (header, records) =
        parse(&bytes).map_err(|e| format!("{}: not a snapshot: {e}", path.display()))?;
    drop(bytes);
    if header.zone != zone {
        return Err(format!(
            "{}: a snapshot of {}, not of {zone}",
            path.display(),
            header.zone
        ));
    }
    Ok(Some(Loaded {
        serial: header.serial,
        records,
        written_at: header.written_at,
    }))
}

fn parse(bytes: &[u8]) -> Result<(Header, Records), String> {
    let Some(rest) = bytes.strip_prefix(MAGIC) else {
        return parse_v1(bytes);
    };
    let line = rest
        .iter()
        .position(|b| *b == b'\n')
        .ok_or("no header line")?;
    let header: Header = serde_json::from_slice(&rest[..line]).map_err(|e| e.to_string())?;
    let mut rest = &rest[line + 1..];
    let truncated = || "truncated".to_owned();
    let take = |n: usize, rest: &mut &[u8]| -> Result<Vec<u8>, String> {
        let (head, tail) = rest.split_at_checked(n).ok_or_else(truncated)?;
        *rest = tail;
        Ok(head.to_vec())
    };
    // Sorted already (written from a set): the set is built in one pass.
    let mut records = Vec::with_capacity(header.records.min(bytes.len()));
    while !rest.is_empty() {
        let owner = usize::from(take(1, &mut rest)?[0]);
        let owner = String::from_utf8(take(owner, &mut rest)?)
            .map_err(|_| "an owner name that is not text".to_owned())?;
        let fixed = take(4, &mut rest)?;
        let rtype = u16::from_be_bytes([fixed[0], fixed[1]]);
        let data = usize::from(u16::from_be_bytes([fixed[2], fixed[3]]));
        let rdata = take(data, &mut rest)?;
        records.push(Rr {
            owner,
            rtype,
            rdata,
        });
    }
    if records.len() != header.records {
        return Err(format!(
            "{} records, the header says {}",
            records.len(),
            header.records
        ));
    }
    Ok((header, records.into_iter().collect()))
}

/// The first format: one JSON document, records as (owner, type, data in hex).
fn parse_v1(bytes: &[u8]) -> Result<(Header, Records), String> {
    #[derive(Deserialize)]
    struct V1 {
        primary: String,
        zone: String,
        serial: u32,
        written_at: u64,
        records: Vec<(String, u16, String)>,
    }
    let v1: V1 = serde_json::from_slice(bytes).map_err(|e| e.to_string())?;
    let mut records = Records::new();
    for text in v1.records {
        let owner = text.0.clone();
        records.insert(rr_from(text).ok_or_else(|| format!("record {owner}: bad data"))?);
    }
    let header = Header {
        primary: v1.primary,
        zone: v1.zone,
        serial: v1.serial,
        written_at: v1.written_at,
        records: records.len(),
    };
    Ok((header, records))
}

/// A record as (owner, type, data in hex).
pub(super) fn rr_text(rr: &Rr) -> (String, u16, String) {
    (rr.owner.clone(), rr.rtype, hex(&rr.rdata))
}

/// Back from [`rr_text`]; `None` when the data is not hex.
pub(super) fn rr_from((owner, rtype, data): (String, u16, String)) -> Option<Rr> {
    Some(Rr {
        owner,
        rtype,
        rdata: decode_hex(&data)?,
    })
}

/// Lower-case hex.
pub(super) fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// Back from [`hex`].
pub(super) fn decode_hex(text: &str) -> Option<Vec<u8>> {
    if !text.len().is_multiple_of(2) {
        return None;
    }
    (0..text.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(text.get(i..i + 2)?, 16).ok())
        .collect()
}
