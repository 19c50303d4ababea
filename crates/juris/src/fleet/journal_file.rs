//! The primary's journal on disk (`DATA_DIR/fleet-journal.jsonl`), so that a restarted
//! primary keeps its serial and serves its followers IXFR deltas from before the restart
//! instead of the whole zone.
//!
//! ```text
//!  every publish ─► one line appended: the serial, the zones' digests, the deltas
//!  start ─► read the lines (a torn last line is ignored) ─► the first publish: zones built
//!           from the orders in force have the digests of the last serial? ─► that serial
//!           and the journal stay; otherwise the serial moves on and the journal starts over
//!           (followers behind get the whole zone); the file is rewritten (compacted)
//! ```
//!
//! Durability: every appended line is `fdatasync`ed before the publish is served; a rewrite
//! goes to a temporary file, synced, renamed over the file, the directory synced. A line cut
//! by a crash (or a torn write) fails to parse: it and everything after it are ignored.
//!
//! A zone's digest is the XOR of SHA-256 of each record: updated per delta (O(change),
//! not O(zone)) and independent of the records' order. It tells our own zones apart; it is
//! not a defence against someone who can write the data directory.

use std::collections::{BTreeMap, VecDeque};
use std::io::{BufRead, Write};
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use sha2::{Digest as _, Sha256};
use tracing::warn;

use super::snapshot::{decode_hex as unhex, hex, rr_from, rr_text};
use super::zone::Rr;

/// The file's name in the data directory.
pub const FILE: &str = "fleet-journal.jsonl";

/// A zone's digest (see the module's documentation).
pub type ZoneDigest = [u8; 32];

/// One zone's change from `from` to the line's serial.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Step {
    /// The serial before.
    pub from: u32,
    /// The serial after.
    pub to: u32,
    /// Records gone.
    pub removed: Vec<Rr>,
    /// Records new.
    pub added: Vec<Rr>,
}

/// (owner, type, data in hex).
type RrText = (String, u16, String);

#[derive(Debug, Serialize, Deserialize)]
struct DeltaText {
    from: u32,
    removed: Vec<RrText>,
    added: Vec<RrText>,
}

/// One line.
#[derive(Debug, Serialize, Deserialize)]
struct Line {
    serial: u32,
    /// Per zone, its digest in hex after this serial.
    digests: BTreeMap<String, String>,
    /// Per zone that changed, its delta to this serial (none in a base line).
    #[serde(default)]
    deltas: BTreeMap<String, DeltaText>,
}

/// What the file held.
#[derive(Debug, Default)]
pub struct Restored {
    /// The last serial published.
    pub serial: u32,
    /// Its zones' digests.
    pub digests: BTreeMap<String, ZoneDigest>,
    /// Per zone, the last `depth` deltas.
    pub journal: BTreeMap<String, VecDeque<Step>>,
}

/// The digest of a whole zone (its records in any order).
pub fn digest<'a>(records: impl IntoIterator<Item = &'a Rr>) -> ZoneDigest {
    let mut digest = [0; 32];
    for rr in records {
        toggle(&mut digest, rr);
    }
    digest
}

/// Adds or removes `rr` from `digest` (the same operation).
pub fn toggle(digest: &mut ZoneDigest, rr: &Rr) {
    let mut hash = Sha256::new();
    hash.update((rr.owner.len() as u64).to_be_bytes());
    hash.update(rr.owner.as_bytes());
    hash.update(rr.rtype.to_be_bytes());
    hash.update(&rr.rdata);
    for (byte, h) in digest.iter_mut().zip(hash.finalize()) {
        *byte ^= h;
    }
}

fn digests_text(digests: &BTreeMap<String, ZoneDigest>) -> BTreeMap<String, String> {
    digests.iter().map(|(k, v)| (k.clone(), hex(v))).collect()
}

/// One line of the file: `serial`, the digests after it, the deltas to it; with its newline.
fn line_text(
    serial: u32,
    digests: &BTreeMap<String, ZoneDigest>,
    deltas: &BTreeMap<String, &Step>,
) -> std::io::Result<String> {
    let line = Line {
        serial,
        digests: digests_text(digests),
        deltas: deltas
            .iter()
            .map(|(apex, step)| {
                let text = DeltaText {
                    from: step.from,
                    removed: step.removed.iter().map(rr_text).collect(),
                    added: step.added.iter().map(rr_text).collect(),
                };
                (apex.clone(), text)
            })
            .collect(),
    };
    let mut text = serde_json::to_string(&line).map_err(std::io::Error::other)?;
    text.push('\n');
    Ok(text)
}

/// The journal file of one primary.
#[derive(Debug)]
pub struct JournalFile {
    path: PathBuf,
    /// Lines in the file (compacted when it holds more than twice the journal's depth).
    lines: usize,
    depth: usize,
}

impl JournalFile {
    /// The file in `data_dir`, keeping `depth` deltas per zone.
    pub fn new(data_dir: &Path, depth: usize) -> JournalFile {
        JournalFile {
            path: data_dir.join(FILE),
            lines: 0,
            depth,
        }
    }

    /// What the file holds (`None`: no file, or nothing usable in it).
    pub fn read(&self) -> Option<Restored> {
        let file = match std::fs::File::open(&self.path) {
            Ok(file) => file,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return None,
            Err(e) => {
                warn!(path = %self.path.display(), "fleet: the journal cannot be read (followers behind get the whole zone): {e}");
                return None;
            }
        };
        let mut restored: Option<Restored> = None;
        for (number, line) in std::io::BufReader::new(file).lines().enumerate() {
            let parsed = line
                .map_err(|e| e.to_string())
                .and_then(|l| serde_json::from_str::<Line>(&l).map_err(|e| e.to_string()))
                .and_then(|l| self.take(restored.get_or_insert_with(Restored::default), l));
            if let Err(e) = parsed {
                // A line cut by a crash ends what can be trusted.
                warn!(path = %self.path.display(), line = number + 1, "fleet: the journal ends with an unusable line, ignored from there: {e}");
                break;
            }
        }
        restored.filter(|r| !r.digests.is_empty())
    }

    fn take(&self, restored: &mut Restored, line: Line) -> Result<(), String> {
        let mut digests = BTreeMap::new();
        for (apex, text) in line.digests {
            let digest: ZoneDigest = unhex(&text)
                .and_then(|bytes| bytes.try_into().ok())
                .ok_or_else(|| format!("bad digest of {apex}"))?;
            digests.insert(apex, digest);
        }
        for (apex, delta) in line.deltas {
            let convert = |list: Vec<RrText>| {
                list.into_iter()
                    .map(rr_from)
                    .collect::<Option<Vec<Rr>>>()
                    .ok_or_else(|| format!("bad record in the delta of {apex}"))
            };
            let step = Step {
                from: delta.from,
                to: line.serial,
                removed: convert(delta.removed)?,
                added: convert(delta.added)?,
            };
            let journal = restored.journal.entry(apex.clone()).or_default();
            journal.push_back(step);
            while journal.len() > self.depth {
                journal.pop_front();
            }
        }
        restored.serial = line.serial;
        restored.digests = digests;
        Ok(())
    }

    /// Appends one publish: `serial`, the digests after it, the deltas to it.
    pub fn append(
        &mut self,
        serial: u32,
        digests: &BTreeMap<String, ZoneDigest>,
        deltas: &BTreeMap<String, &Step>,
    ) -> std::io::Result<()> {
        let text = line_text(serial, digests, deltas)?;
        let mut file = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.path)?;
        file.write_all(text.as_bytes())?;
        // Durable before the serial is served (the publisher holds its lock meanwhile): a
        // restarted primary never goes back behind a serial its followers have.
        file.sync_data()?;
        self.lines += 1;
        Ok(())
    }

    /// Whether the file should be [`rewrite`](Self::rewrite)n.
    pub fn wants_compaction(&self) -> bool {
        self.lines > 2 * self.depth + 1
    }

    /// Rewrites the file (a temporary, synced, renamed, the directory synced) with what the
    /// journal holds: one line per serial of the deltas, the last with the digests after
    /// `serial`.
    pub fn rewrite(
        &mut self,
        serial: u32,
        digests: &BTreeMap<String, ZoneDigest>,
        journal: &BTreeMap<String, VecDeque<Step>>,
    ) -> std::io::Result<()> {
        let mut by_serial: BTreeMap<(u32, u32), BTreeMap<String, &Step>> = BTreeMap::new();
        for (apex, steps) in journal {
            for step in steps {
                // Ordered by (from, to): serials move on (RFC 1982 wrap aside).
                by_serial
                    .entry((step.from, step.to))
                    .or_default()
                    .insert(apex.clone(), step);
            }
        }
        let temporary = self.path.with_extension("jsonl.tmp");
        let mut out = std::io::BufWriter::new(std::fs::File::create(&temporary)?);
        let empty = BTreeMap::new();
        for ((_, to), deltas) in &by_serial {
            // Intermediate lines carry no digests of their own (only the last one counts).
            out.write_all(line_text(*to, &empty, deltas)?.as_bytes())?;
        }
        out.write_all(line_text(serial, digests, &BTreeMap::new())?.as_bytes())?;
        out.into_inner()
            .map_err(std::io::IntoInnerError::into_error)?
            .sync_all()?;
        super::snapshot::replace(&temporary, &self.path)?;
        self.lines = by_serial.len() + 1;
        Ok(())
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, reason = "test code")]
mod tests {
    use super::*;
    use crate::fleet::zone::Records;

    fn rr(owner: &str) -> Rr {
        Rr {
            owner: owner.into(),
            rtype: 5,
            rdata: vec![0],
        }
    }

    #[test]
    fn the_digest_follows_deltas_and_ignores_order() {
        let a: Records = [rr("a."), rr("b.")].into_iter().collect();
        let mut d = digest(&Records::new());
        toggle(&mut d, &rr("b."));
        toggle(&mut d, &rr("c."));
        toggle(&mut d, &rr("a."));
        toggle(&mut d, &rr("c."));
        assert_eq!(d, digest(&a));
        assert_ne!(digest(&a), digest(&[rr("a.")]));
    }

    #[test]
    fn lines_read_back_and_a_torn_last_line_is_ignored() {
        let dir = tempfile::tempdir().unwrap();
        let mut file = JournalFile::new(dir.path(), 2);
        let d1: BTreeMap<String, ZoneDigest> = [("z.".to_owned(), [1; 32])].into();
        let d2: BTreeMap<String, ZoneDigest> = [("z.".to_owned(), [2; 32])].into();
        file.append(10, &d1, &BTreeMap::new()).unwrap();
        let step = Step {
            from: 10,
            to: 11,
            removed: vec![rr("a.")],
            added: vec![rr("b.")],
        };
        file.append(11, &d2, &[("z.".to_owned(), &step)].into())
            .unwrap();
        let restored = file.read().unwrap();
        assert_eq!(restored.serial, 11);
        assert_eq!(restored.digests, d2);
        assert_eq!(restored.journal["z."], std::slice::from_ref(&step));

        std::fs::OpenOptions::new()
            .append(true)
            .open(dir.path().join(FILE))
            .unwrap()
            .write_all(b"{\"serial\": 12, \"dig")
            .unwrap();
        let restored = file.read().unwrap();
        assert_eq!(restored.serial, 11);

        file.rewrite(11, &d2, &restored.journal).unwrap();
        let again = file.read().unwrap();
        assert_eq!((again.serial, again.digests), (11, d2));
        assert_eq!(again.journal["z."], [step]);
    }

    /// A torn write (the file cut at any byte): what is read back is the lines before the cut,
    /// never a part of one.
    #[test]
    fn a_journal_cut_at_any_byte_reads_back_the_whole_lines_before_the_cut() {
        let dir = tempfile::tempdir().unwrap();
        let mut file = JournalFile::new(dir.path(), 8);
        let digests =
            |n: u32| -> BTreeMap<String, ZoneDigest> { [("z.".to_owned(), [n as u8; 32])].into() };
        file.rewrite(10, &digests(10), &BTreeMap::new()).unwrap();
        for serial in 11..14 {
            let step = Step {
                from: serial - 1,
                to: serial,
                removed: vec![rr("a.")],
                added: vec![rr("b.")],
            };
            file.append(serial, &digests(serial), &[("z.".to_owned(), &step)].into())
                .unwrap();
        }
        assert!(!dir.path().join("fleet-journal.jsonl.tmp").exists());
        let path = dir.path().join(FILE);
        let whole = std::fs::read(&path).unwrap();
        // Where each line's JSON ends (before its newline).
        let ends: Vec<usize> = (0..whole.len()).filter(|i| whole[*i] == b'\n').collect();
        assert_eq!(ends.len(), 4);
        for cut in 0..=whole.len() {
            std::fs::write(&path, &whole[..cut]).unwrap();
            let lines = ends.iter().filter(|end| **end <= cut).count() as u32;
            match file.read() {
                None => assert_eq!(lines, 0, "cut at {cut}"),
                Some(restored) => {
                    assert_eq!(restored.serial, 9 + lines, "cut at {cut}");
                    assert_eq!(restored.digests, digests(9 + lines));
                    assert_eq!(
                        restored.journal.get("z.").map_or(0, |j| j.len()),
                        lines as usize - 1
                    );
                }
            }
        }
    }
}
