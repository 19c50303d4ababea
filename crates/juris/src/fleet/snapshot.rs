//! The snapshot of a transferred zone in the data directory (the edge's
//! `fleet-snapshot.json`, each RPZ feed's `rpz-feed-NAME.json`): written after every applied
//! transfer (a temporary file, then renamed), read at start when the primary is unreachable,
//! so a restart during an outage still enforces what was in force.

use std::net::SocketAddr;
use std::path::Path;

use serde::{Deserialize, Serialize};

use super::unix_now;
use super::zone::{Records, Rr};

/// The file.
#[derive(Debug, Serialize, Deserialize)]
struct Snapshot {
    primary: String,
    zone: String,
    serial: u32,
    written_at: u64,
    /// (owner, type, data in hex).
    records: Vec<(String, u16, String)>,
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
    let snapshot = Snapshot {
        primary: primary.to_string(),
        zone: zone.to_owned(),
        serial,
        written_at: unix_now(),
        records: records.iter().map(rr_text).collect(),
    };
    let temporary = path.with_extension("json.tmp");
    serde_json::to_vec(&snapshot)
        .map_err(std::io::Error::other)
        .and_then(|bytes| std::fs::write(&temporary, bytes))
        .and_then(|()| std::fs::rename(&temporary, path))
        .map_err(|e| {
            let _ = std::fs::remove_file(&temporary);
            format!("{}: {e}", path.display())
        })
}

/// Reads the snapshot of `zone` at `path`; `Ok(None)`: there is none.
pub fn read(path: &Path, zone: &str) -> Result<Option<Loaded>, String> {
    let bytes = match std::fs::read(path) {
        Ok(bytes) => bytes,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(format!("{}: {e}", path.display())),
    };
    let snapshot: Snapshot = serde_json::from_slice(&bytes)
        .map_err(|e| format!("{}: not a snapshot: {e}", path.display()))?;
    if snapshot.zone != zone {
        return Err(format!(
            "{}: a snapshot of {}, not of {zone}",
            path.display(),
            snapshot.zone
        ));
    }
    let mut records = Records::new();
    for text in snapshot.records {
        let owner = text.0.clone();
        let rr =
            rr_from(text).ok_or_else(|| format!("{}: record {owner}: bad data", path.display()))?;
        records.insert(rr);
    }
    Ok(Some(Loaded {
        serial: snapshot.serial,
        records,
        written_at: snapshot.written_at,
    }))
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
