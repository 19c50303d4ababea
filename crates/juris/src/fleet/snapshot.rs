//! The snapshot of a transferred zone in the data directory (the edge's
//! `fleet-snapshot.json`, each RPZ feed's `rpz-feed-NAME.json`; the names are kept from the
//! first, JSON, format): written after applied transfers (a temporary file, `fsync`ed, renamed,
//! the directory `fsync`ed), read at start when the primary is unreachable, so a restart
//! during an outage still enforces what was in force.
//!
//! Format 3 (design 0043):
//!
//! ```text
//!  "JURIS-FLEET-SNAPSHOT 3\n" │ validated orders (optional) │ zone records │ footer JSON
//!                            │ footer length (u32) │ "\nJURIS-END3\n"
//! ```
//!
//! - validated orders (an edge): per order, sorted by id: content hash (u64), the document
//!   without targets (u32 length, JSON), the targets as validated (u32 count; per target kind
//!   u8, length u8, the normalised name or prefix as text);
//! - zone records: owner length (u8), owner, type (u16), data length (u16), data;
//! - the footer ([`Footer`]): primary, zone, serial, written_at, the record count, each
//!   section's offset, length and SHA-256, and the digest of the validation rules.
//!
//! Integers are big-endian. The footer comes last so that the sections stream to disk and are
//! hashed on the way; a file cut anywhere has no valid footer. Formats 2 (magic, JSON header
//! line, records) and 1 (one JSON document, data in hex) are still read (records only).

use std::io::{Read, Seek, SeekFrom, Write};
use std::net::SocketAddr;
use std::path::Path;
use std::sync::OnceLock;

use juris_policy::{TargetKind, TargetValue, ValidatedOrder, ValidatedTarget};
use serde::{Deserialize, Serialize};
use sha2::{Digest as _, Sha256};

use super::unix_now;
use super::zone::{Records, Rr};

const MAGIC: &[u8] = b"JURIS-FLEET-SNAPSHOT 3\n";
const MAGIC_2: &[u8] = b"JURIS-FLEET-SNAPSHOT 2\n";
const END: &[u8] = b"\nJURIS-END3\n";

/// One section of a format-3 file.
#[derive(Debug, Clone, Serialize, Deserialize)]
struct Section {
    offset: u64,
    length: u64,
    /// SHA-256 of its bytes, hex.
    sha256: String,
}

/// The validated orders' section: where, and what the validation depended on.
#[derive(Debug, Clone, Serialize, Deserialize)]
struct PolicySection {
    #[serde(flatten)]
    section: Section,
    /// [`rules`] when it was written.
    rules: String,
    /// How many orders it holds.
    orders: usize,
}

/// What a format-3 file says of itself (last, before its length and the end mark).
#[derive(Debug, Serialize, Deserialize)]
struct Footer {
    primary: String,
    zone: String,
    serial: u32,
    written_at: u64,
    /// How many records the records section holds.
    records: usize,
    validated: Option<PolicySection>,
    zone_records: Section,
}

/// The format 2 header line (and what format 1 says of itself).
#[derive(Debug, Deserialize)]
struct Header {
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
    /// The validated orders' section (format 3, checksum verified), if any; its rules are
    /// not checked here.
    pub validated: Option<Vec<u8>>,
}

/// The validated orders of a snapshot, read without its records.
#[derive(Debug)]
pub struct Validated {
    /// The primary it was transferred from.
    pub primary: String,
    /// The serial.
    pub serial: u32,
    /// Unix time it was written.
    pub written_at: u64,
    /// The section's bytes (checksum verified, rules those of this binary): read with
    /// [`entries`].
    pub section: Vec<u8>,
}

/// The digest of what validating a fleet order depends on (design 0043): the Public Suffix
/// List, the IDNA tables and the validation code, all compiled into the executable, so a digest
/// of this scheme and of the executable's bytes. `None` when the executable cannot be read
/// (then no validated orders are written or trusted).
pub fn rules() -> Option<&'static str> {
    static RULES: OnceLock<Option<String>> = OnceLock::new();
    RULES
        .get_or_init(|| {
            // The running image, even when its file was replaced since (an upgrade).
            let mut file = std::fs::File::open("/proc/self/exe")
                .or_else(|_| std::fs::File::open(std::env::current_exe()?))
                .ok()?;
            let mut hash = Sha256::new();
            hash.update(b"juris fleet validated orders 1: the executable\n");
            std::io::copy(&mut file, &mut hash).ok()?;
            Some(hex(&hash.finalize()))
        })
        .as_deref()
}

/// Writes through to `inner`, hashing and counting.
struct Hashing<'a, W> {
    inner: &'a mut W,
    hash: Sha256,
    length: u64,
}

impl<'a, W: Write> Hashing<'a, W> {
    fn new(inner: &'a mut W) -> Self {
        Hashing {
            inner,
            hash: Sha256::new(),
            length: 0,
        }
    }

    fn section(self, offset: u64) -> Section {
        Section {
            offset,
            length: self.length,
            sha256: hex(&self.hash.finalize()),
        }
    }
}

impl<W: Write> Write for Hashing<'_, W> {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        let n = self.inner.write(buf)?;
        self.hash.update(&buf[..n]);
        self.length += n as u64;
        Ok(n)
    }
    fn flush(&mut self) -> std::io::Result<()> {
        self.inner.flush()
    }
}

/// The validated orders to write: the [`rules`] they were validated with and one entry per
/// order ([`entry`]), sorted by id.
#[derive(Debug)]
pub struct Orders<'a> {
    /// [`rules`].
    pub rules: &'a str,
    /// The entries.
    pub entries: Vec<&'a [u8]>,
}

/// One order's entry in the validated section: its content hash, its document without
/// targets (`header`, JSON) and its validated targets. `None`: a target too long to encode
/// (cannot happen for a validated one).
pub fn entry(content: u64, header: &[u8], order: &ValidatedOrder) -> Option<Vec<u8>> {
    let targets = order.targets();
    let mut out = Vec::with_capacity(16 + header.len() + targets.len() * 24);
    out.extend_from_slice(&content.to_be_bytes());
    out.extend_from_slice(&u32::try_from(header.len()).ok()?.to_be_bytes());
    out.extend_from_slice(header);
    out.extend_from_slice(&u32::try_from(targets.len()).ok()?.to_be_bytes());
    for target in targets {
        let prefix;
        let value: &str = match target.value() {
            TargetValue::Name(name) => name,
            TargetValue::Prefix(net) => {
                prefix = net.to_string();
                &prefix
            }
        };
        out.push(kind_code(target.kind()));
        out.push(u8::try_from(value.len()).ok()?);
        out.extend_from_slice(value.as_bytes());
    }
    Some(out)
}

fn kind_code(kind: TargetKind) -> u8 {
    match kind {
        TargetKind::Subtree => 0,
        TargetKind::Domain => 1,
        TargetKind::Ip => 2,
        TargetKind::Nsdname => 3,
        TargetKind::Nsip => 4,
    }
}

fn kind_of(code: u8) -> Option<TargetKind> {
    Some(match code {
        0 => TargetKind::Subtree,
        1 => TargetKind::Domain,
        2 => TargetKind::Ip,
        3 => TargetKind::Nsdname,
        4 => TargetKind::Nsip,
        _ => return None,
    })
}

/// One entry of the validated section, not decoded yet.
#[derive(Debug, Clone, Copy)]
pub struct RawEntry<'a> {
    /// The order's content hash.
    pub content: u64,
    /// Its document without targets (JSON).
    pub header: &'a [u8],
    /// The whole entry (to write it again unchanged).
    pub bytes: &'a [u8],
    /// Its target count and targets.
    targets: &'a [u8],
}

impl RawEntry<'_> {
    /// The validated targets; `Err` names what is malformed.
    pub fn targets(&self) -> Result<Vec<ValidatedTarget>, String> {
        let mut rest = self.targets;
        let count = u32::from_be_bytes(take_array(&mut rest)?) as usize;
        // Each target takes at least 2 bytes: the count cannot ask for more than is there.
        let mut targets = Vec::with_capacity(count.min(rest.len() / 2));
        for _ in 0..count {
            let [code, length] = take_array(&mut rest)?;
            let kind = kind_of(code).ok_or_else(|| format!("unknown target kind {code}"))?;
            let value = take(&mut rest, usize::from(length))?;
            let value = std::str::from_utf8(value).map_err(|_| "a target that is not text")?;
            targets.push(
                ValidatedTarget::from_normal(kind, value)
                    .ok_or_else(|| format!("target {value:?} is not in normal form"))?,
            );
        }
        if !rest.is_empty() {
            return Err("bytes after the last target".into());
        }
        Ok(targets)
    }
}

fn take<'a>(rest: &mut &'a [u8], n: usize) -> Result<&'a [u8], String> {
    let (head, tail) = rest.split_at_checked(n).ok_or("truncated")?;
    *rest = tail;
    Ok(head)
}

fn take_array<const N: usize>(rest: &mut &[u8]) -> Result<[u8; N], String> {
    let head = take(rest, N)?;
    head.try_into().map_err(|_| "truncated".to_owned())
}

/// The entries of a validated section, in the file's order.
pub fn entries(section: &[u8]) -> Result<Vec<RawEntry<'_>>, String> {
    let mut rest = section;
    let mut entries = Vec::new();
    while !rest.is_empty() {
        let whole = rest;
        let content = u64::from_be_bytes(take_array(&mut rest)?);
        let header_length = u32::from_be_bytes(take_array(&mut rest)?) as usize;
        let header = take(&mut rest, header_length)?;
        let targets_start = rest;
        let count = u32::from_be_bytes(take_array(&mut rest)?) as usize;
        for _ in 0..count {
            let [_, length] = take_array(&mut rest)?;
            take(&mut rest, usize::from(length))?;
        }
        let targets_length = targets_start.len() - rest.len();
        let entry_length = whole.len() - rest.len();
        entries.push(RawEntry {
            content,
            header,
            bytes: &whole[..entry_length],
            targets: &targets_start[..targets_length],
        });
    }
    Ok(entries)
}

/// Writes `records` at `serial` of `zone` from `primary` to `path`, with the validated
/// `orders` when given: a temporary file beside it, `fsync`ed, renamed over it, the directory
/// `fsync`ed. The error names the path.
pub fn write(
    path: &Path,
    primary: SocketAddr,
    zone: &str,
    serial: u32,
    records: &Records,
    orders: Option<&Orders<'_>>,
) -> Result<(), String> {
    let temporary = path.with_extension("json.tmp");
    let written = std::fs::File::create(&temporary).and_then(|file| {
        let mut out = std::io::BufWriter::with_capacity(1 << 20, file);
        write_to(&mut out, primary, zone, serial, records, orders)?;
        let file = out
            .into_inner()
            .map_err(std::io::IntoInnerError::into_error)?;
        file.sync_all()
    });
    written
        .and_then(|()| replace(&temporary, path))
        .map_err(|e| {
            let _ = std::fs::remove_file(&temporary);
            format!("{}: {e}", path.display())
        })
}

/// Renames `temporary` over `path` and makes the rename durable (`fsync` of the directory).
pub fn replace(temporary: &Path, path: &Path) -> std::io::Result<()> {
    std::fs::rename(temporary, path)?;
    let directory = match path.parent() {
        Some(parent) if !parent.as_os_str().is_empty() => parent,
        _ => Path::new("."),
    };
    std::fs::File::open(directory)?.sync_all()
}

fn write_to(
    out: &mut impl Write,
    primary: SocketAddr,
    zone: &str,
    serial: u32,
    records: &Records,
    orders: Option<&Orders<'_>>,
) -> std::io::Result<()> {
    out.write_all(MAGIC)?;
    let mut offset = MAGIC.len() as u64;
    let validated = match orders {
        Some(orders) => {
            let mut section = Hashing::new(&mut *out);
            for entry in &orders.entries {
                section.write_all(entry)?;
            }
            let section = section.section(offset);
            offset += section.length;
            Some(PolicySection {
                section,
                rules: orders.rules.to_owned(),
                orders: orders.entries.len(),
            })
        }
        None => None,
    };
    let mut section = Hashing::new(&mut *out);
    for rr in records {
        let owner = u8::try_from(rr.owner.len()).map_err(std::io::Error::other)?;
        let data = u16::try_from(rr.rdata.len()).map_err(std::io::Error::other)?;
        section.write_all(&[owner])?;
        section.write_all(rr.owner.as_bytes())?;
        section.write_all(&rr.rtype.to_be_bytes())?;
        section.write_all(&data.to_be_bytes())?;
        section.write_all(&rr.rdata)?;
    }
    let zone_records = section.section(offset);
    let footer = Footer {
        primary: primary.to_string(),
        zone: zone.to_owned(),
        serial,
        written_at: unix_now(),
        records: records.len(),
        validated,
        zone_records,
    };
    let footer = serde_json::to_vec(&footer).map_err(std::io::Error::other)?;
    out.write_all(&footer)?;
    let length = u32::try_from(footer.len()).map_err(std::io::Error::other)?;
    out.write_all(&length.to_be_bytes())?;
    out.write_all(END)?;
    out.flush()
}

/// An open format-3 file and its footer.
struct Opened {
    file: std::fs::File,
    footer: Footer,
    /// Where the footer starts (sections end before it).
    footer_at: u64,
}

/// Opens `path`: `Ok(None)` when there is no file, `Ok(Some(Err(bytes)))` for an older format
/// (the whole file), `Ok(Some(Ok(opened)))` for format 3.
fn open(path: &Path) -> Result<Option<Result<Opened, Vec<u8>>>, String> {
    let mut file = match std::fs::File::open(path) {
        Ok(file) => file,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(e.to_string()),
    };
    let mut magic = vec![0; MAGIC.len()];
    let got = read_up_to(&mut file, &mut magic).map_err(|e| e.to_string())?;
    if got < MAGIC.len() || magic != MAGIC {
        let mut bytes = magic[..got].to_vec();
        file.read_to_end(&mut bytes).map_err(|e| e.to_string())?;
        return Ok(Some(Err(bytes)));
    }
    let size = file.metadata().map_err(|e| e.to_string())?.len();
    let tail = (END.len() + 4) as u64;
    let not = |what: &str| format!("not a snapshot: {what}");
    if size < MAGIC.len() as u64 + tail {
        return Err(not("truncated"));
    }
    let mut end = vec![0; END.len() + 4];
    read_at(&mut file, size - tail, &mut end).map_err(|e| e.to_string())?;
    if &end[4..] != END {
        return Err(not("truncated (no end mark)"));
    }
    let length = u64::from(u32::from_be_bytes([end[0], end[1], end[2], end[3]]));
    let footer_at = (size - tail)
        .checked_sub(length)
        .filter(|at| *at >= MAGIC.len() as u64)
        .ok_or_else(|| not("the footer's length is wrong"))?;
    let mut footer = vec![0; length as usize];
    read_at(&mut file, footer_at, &mut footer).map_err(|e| e.to_string())?;
    let footer: Footer =
        serde_json::from_slice(&footer).map_err(|e| not(&format!("footer: {e}")))?;
    Ok(Some(Ok(Opened {
        file,
        footer,
        footer_at,
    })))
}

fn read_up_to(file: &mut std::fs::File, buf: &mut [u8]) -> std::io::Result<usize> {
    let mut got = 0;
    while got < buf.len() {
        match file.read(&mut buf[got..])? {
            0 => break,
            n => got += n,
        }
    }
    Ok(got)
}

fn read_at(file: &mut std::fs::File, at: u64, buf: &mut [u8]) -> std::io::Result<()> {
    file.seek(SeekFrom::Start(at))?;
    file.read_exact(buf)
}

impl Opened {
    /// The bytes of `section`, checked against its SHA-256; `what` names it in errors.
    fn section(&mut self, section: &Section, what: &str) -> Result<Vec<u8>, String> {
        let inside = section
            .offset
            .checked_add(section.length)
            .is_some_and(|end| section.offset >= MAGIC.len() as u64 && end <= self.footer_at);
        if !inside {
            return Err(format!(
                "not a snapshot: the {what} section is out of bounds"
            ));
        }
        let length = usize::try_from(section.length).map_err(|e| e.to_string())?;
        let mut bytes = vec![0; length];
        read_at(&mut self.file, section.offset, &mut bytes).map_err(|e| e.to_string())?;
        if hex(&Sha256::digest(&bytes)) != section.sha256 {
            return Err(format!(
                "not a snapshot: the {what} section fails its checksum (a torn or damaged file)"
            ));
        }
        Ok(bytes)
    }

    fn check_zone(&self, zone: &str) -> Result<(), String> {
        if self.footer.zone != zone {
            return Err(format!("a snapshot of {}, not of {zone}", self.footer.zone));
        }
        Ok(())
    }
}

/// Reads the validated orders of the snapshot of `zone` at `path`, without its records.
/// `Ok(None)`: there is no file. `Err`: why they cannot be used (an older format, none written,
/// other rules, a failed checksum...), naming the path.
pub fn read_validated(path: &Path, zone: &str) -> Result<Option<Validated>, String> {
    let named = |e: String| format!("{}: {e}", path.display());
    let mut opened = match open(path).map_err(named)? {
        None => return Ok(None),
        Some(Err(_)) => return Err(named("an older format, without validated orders".into())),
        Some(Ok(opened)) => opened,
    };
    opened.check_zone(zone).map_err(named)?;
    let policy = opened
        .footer
        .validated
        .clone()
        .ok_or_else(|| named("no validated orders in it".into()))?;
    match rules() {
        Some(ours) if ours == policy.rules => {}
        Some(_) => {
            return Err(named(
                "validated by another build of juris (the Public Suffix List and the validation rules may differ)".into(),
            ))
        }
        None => return Err(named("this executable cannot be read to check the rules".into())),
    }
    let section = opened
        .section(&policy.section, "validated orders")
        .map_err(named)?;
    Ok(Some(Validated {
        primary: opened.footer.primary,
        serial: opened.footer.serial,
        written_at: opened.footer.written_at,
        section,
    }))
}

/// Reads the snapshot of `zone` at `path`; `Ok(None)`: there is none.
pub fn read(path: &Path, zone: &str) -> Result<Option<Loaded>, String> {
    let named = |e: String| format!("{}: {e}", path.display());
    let mut opened = match open(path).map_err(named)? {
        None => return Ok(None),
        Some(Err(bytes)) => {
            let (header, records) =
                parse(&bytes).map_err(|e| named(format!("not a snapshot: {e}")))?;
            if header.zone != zone {
                return Err(named(format!(
                    "a snapshot of {}, not of {zone}",
                    header.zone
                )));
            }
            return Ok(Some(Loaded {
                serial: header.serial,
                records,
                written_at: header.written_at,
                validated: None,
            }));
        }
        Some(Ok(opened)) => opened,
    };
    opened.check_zone(zone).map_err(named)?;
    let records_section = opened.footer.zone_records.clone();
    let bytes = opened.section(&records_section, "records").map_err(named)?;
    let records = parse_records(&bytes, opened.footer.records)
        .map_err(|e| named(format!("not a snapshot: {e}")))?;
    drop(bytes);
    // The records stand on their own: damaged validated orders only leave them out.
    let validated = match opened.footer.validated.clone() {
        Some(policy) => opened.section(&policy.section, "validated orders").ok(),
        None => None,
    };
    Ok(Some(Loaded {
        serial: opened.footer.serial,
        records,
        written_at: opened.footer.written_at,
        validated,
    }))
}

/// Format 2: a JSON header line, then the records.
fn parse(bytes: &[u8]) -> Result<(Header, Records), String> {
    let Some(rest) = bytes.strip_prefix(MAGIC_2) else {
        return parse_v1(bytes);
    };
    let line = rest
        .iter()
        .position(|b| *b == b'\n')
        .ok_or("no header line")?;
    let header: Header = serde_json::from_slice(&rest[..line]).map_err(|e| e.to_string())?;
    let records = parse_records(&rest[line + 1..], header.records)?;
    Ok((header, records))
}

/// The binary records (formats 2 and 3); `count`: how many the file says there are.
fn parse_records(mut rest: &[u8], count: usize) -> Result<Records, String> {
    let total = rest.len();
    // Sorted already (written from a set): the set is built in one pass.
    let mut records = Vec::with_capacity(count.min(total / 5));
    while !rest.is_empty() {
        let [owner] = take_array(&mut rest)?;
        let owner = String::from_utf8(take(&mut rest, usize::from(owner))?.to_vec())
            .map_err(|_| "an owner name that is not text".to_owned())?;
        let [t0, t1, d0, d1] = take_array(&mut rest)?;
        let rtype = u16::from_be_bytes([t0, t1]);
        let rdata = take(&mut rest, usize::from(u16::from_be_bytes([d0, d1])))?.to_vec();
        records.push(Rr {
            owner,
            rtype,
            rdata,
        });
    }
    if records.len() != count {
        return Err(format!(
            "{} records, the header says {count}",
            records.len()
        ));
    }
    Ok(records.into_iter().collect())
}

/// The first format: one JSON document, records as (owner, type, data in hex).
fn parse_v1(bytes: &[u8]) -> Result<(Header, Records), String> {
    #[derive(Deserialize)]
    struct V1 {
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
