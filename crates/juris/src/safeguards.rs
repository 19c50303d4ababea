//! `juris safeguards update FILE --source NAME` and `juris safeguards list`: the operators'
//! published lists of shared infrastructure (Cloudflare's `ips-v4`/`ips-v6`, Google's
//! `goog.json`, AWS's `ip-ranges.json`, Fastly's public IP list, Azure's service tags, a list of
//! DNS hosters' name server domains) added to the protected list.
//!
//! ```text
//!  FILE (downloaded by the operator) ─► juris_control::parse_published (format by content,
//!        --service filter) ─► PublishedList { source, url, format, sha256, imported_at, entries }
//!        ─► DATA_DIR/protected/SOURCE.json (written atomically; replaces the same source)
//!  Settings::from_raw ─► every DATA_DIR/protected/*.json ─► ProtectedList::add_published
//!        (names as entries, prefixes as one sorted aggregated set per list: binary search)
//! ```
//! The lists apply from the next start of `juris serve` (and to `juris explain` at once); a
//! file that does not parse is an error naming it, so a bad list never silently drops out.

use std::path::{Path, PathBuf};

use anyhow::{bail, Context};
use juris_control::{ProtectedList, PublishedList};
use sha2::{Digest, Sha256};

/// The directory of the published lists under the data directory.
pub const PUBLISHED_DIR: &str = "protected";

/// Reads `file`, converts it and writes `DATA_DIR/protected/SOURCE.json`; returns the list
/// written.
pub fn update(
    data_dir: &Path,
    file: &Path,
    source: &str,
    service: Option<&str>,
    url: Option<&str>,
) -> anyhow::Result<(PathBuf, PublishedList)> {
    let valid_source = !source.is_empty()
        && source.len() <= 64
        && source
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-' || b == b'_');
    if !valid_source {
        bail!("--source {source:?}: use 1-64 of a-z, 0-9, '-', '_' (it names the list's file)");
    }
    let bytes = std::fs::read(file).with_context(|| format!("{}: cannot read", file.display()))?;
    let parsed = juris_control::parse_published(&bytes, service)
        .map_err(|e| anyhow::anyhow!("{}: {}: {}", file.display(), e.field(), e.reason()))?;
    let list = PublishedList {
        source: source.to_owned(),
        url: url.map(str::to_owned),
        format: parsed.format.to_owned(),
        service: service.map(str::to_owned),
        sha256: Sha256::digest(&bytes)
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect(),
        imported_at: jiff::Timestamp::now()
            .round(jiff::Unit::Second)?
            .to_string(),
        prefixes: parsed.prefixes.iter().map(ToString::to_string).collect(),
        names: parsed.names,
    };
    // What serve will load must load: check it the same way first.
    ProtectedList::default()
        .add_published(&list)
        .map_err(|e| anyhow::anyhow!("{}: {}", e.field(), e.reason()))?;
    let dir = data_dir.join(PUBLISHED_DIR);
    std::fs::create_dir_all(&dir).with_context(|| format!("{}: cannot create", dir.display()))?;
    let path = dir.join(format!("{source}.json"));
    // Written beside, then renamed: a reader sees the old list or the new one, never half.
    let temp = dir.join(format!(".{source}.json.tmp"));
    let mut text = serde_json::to_vec_pretty(&list)?;
    text.push(b'\n');
    std::fs::write(&temp, &text).with_context(|| format!("{}: cannot write", temp.display()))?;
    std::fs::rename(&temp, &path).with_context(|| format!("{}: cannot write", path.display()))?;
    Ok((path, list))
}

/// Every published list in `DATA_DIR/protected/`, sorted by file name; none when the
/// directory does not exist.
pub fn read_all(data_dir: &Path) -> anyhow::Result<Vec<(PathBuf, PublishedList)>> {
    let dir = data_dir.join(PUBLISHED_DIR);
    let entries = match std::fs::read_dir(&dir) {
        Ok(entries) => entries,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(e).with_context(|| format!("{}: cannot read", dir.display())),
    };
    let mut paths: Vec<PathBuf> = entries
        .filter_map(Result::ok)
        .map(|entry| entry.path())
        .filter(|path| path.extension().is_some_and(|ext| ext == "json"))
        .collect();
    paths.sort();
    paths
        .into_iter()
        .map(|path| {
            let text =
                std::fs::read(&path).with_context(|| format!("{}: cannot read", path.display()))?;
            let list: PublishedList = serde_json::from_slice(&text).with_context(|| {
                format!(
                    "{}: not a published list (juris safeguards update)",
                    path.display()
                )
            })?;
            Ok((path, list))
        })
        .collect()
}

/// Adds every published list of `data_dir` to `protected`; an error names the file.
pub fn add_all(protected: &mut ProtectedList, data_dir: &Path) -> anyhow::Result<()> {
    for (path, list) in read_all(data_dir)? {
        protected
            .add_published(&list)
            .map_err(|e| anyhow::anyhow!("{}: {}: {}", path.display(), e.field(), e.reason()))?;
    }
    Ok(())
}

/// `juris safeguards list`: one line per published list.
pub fn render_list(lists: &[(PathBuf, PublishedList)]) -> String {
    if lists.is_empty() {
        return "no published lists (add one with `juris safeguards update FILE --source NAME`); \
                the shipped defaults and [control.protected] apply\n"
            .to_owned();
    }
    lists
        .iter()
        .map(|(_, list)| {
            format!(
                "{}  {} prefixes, {} names  {}{}  imported {}  sha256 {}{}\n",
                list.source,
                list.prefixes.len(),
                list.names.len(),
                list.format,
                list.service
                    .as_deref()
                    .map(|s| format!(" (service {s})"))
                    .unwrap_or_default(),
                list.imported_at,
                list.sha256,
                list.url
                    .as_deref()
                    .map(|u| format!("  from {u}"))
                    .unwrap_or_default(),
            )
        })
        .collect()
}
