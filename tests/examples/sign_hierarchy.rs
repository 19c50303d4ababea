//! Signs the benchmark's generated hierarchy (`bench/lib/gen.py hierarchy --signed`) with the
//! test kit's signer ([`juris_testkit::dnssec::sign`]: `ldns-keygen`, `ldns-signzone`,
//! `ldns-key2ds`), so the benchmark and the DNSSEC tests share one way of signing.
//!
//! ```text
//! cargo run -p juris-testkit --example sign_hierarchy -- ZONES.tsv ANCHOR.ds
//! ```
//!
//! `ZONES.tsv`: one zone a line, `name<TAB>zone file<TAB>algorithm<TAB>denial<TAB>window` with
//! algorithm `rsasha256` or `ecdsap256`, denial `nsec` or `nsec3`, window `valid` or `expired`.
//! Each zone file is read from `FILE.unsigned` and its signed text written to `FILE`. Zones are
//! signed children first; each child's DS lines are appended to its parent before the parent
//! is signed. The root's DS lines (the hierarchy's trust anchor) go to `ANCHOR.ds`.

use std::collections::BTreeMap;
use std::fs;
use std::process::ExitCode;

use juris_testkit::dnssec::{sign, Algorithm, Signing};

struct Entry {
    zone: String,
    file: String,
    signing: Signing,
}

fn parse(line: &str) -> Result<Entry, String> {
    let fields: Vec<&str> = line.split('\t').collect();
    let [zone, file, algorithm, denial, window] = fields[..] else {
        return Err(format!("expected 5 tab-separated fields: {line:?}"));
    };
    let mut signing = match algorithm {
        "rsasha256" => Signing::rsa_sha256(),
        "ecdsap256" => Signing::new().algorithm(Algorithm::EcdsaP256Sha256),
        other => return Err(format!("unknown algorithm {other:?} in {line:?}")),
    };
    signing = match denial {
        "nsec" => signing,
        "nsec3" => signing.nsec3(),
        other => return Err(format!("unknown denial {other:?} in {line:?}")),
    };
    signing = match window {
        "valid" => signing,
        "expired" => signing.expired(),
        other => return Err(format!("unknown window {other:?} in {line:?}")),
    };
    Ok(Entry {
        zone: zone.to_ascii_lowercase(),
        file: file.to_owned(),
        signing,
    })
}

/// The parent zone's name of `zone` among `zones` (the longest proper suffix that is a zone).
fn parent_of<'a>(zone: &str, zones: impl Iterator<Item = &'a str>) -> Option<&'a str> {
    zones
        .filter(|candidate| {
            *candidate != zone && (*candidate == "." || zone.ends_with(&format!(".{candidate}")))
        })
        .max_by_key(|candidate| candidate.len())
}

fn labels(zone: &str) -> usize {
    zone.trim_end_matches('.')
        .split('.')
        .filter(|l| !l.is_empty())
        .count()
}

fn run(zones_file: &str, anchor_file: &str) -> Result<(), String> {
    let text = fs::read_to_string(zones_file).map_err(|e| format!("{zones_file}: {e}"))?;
    let mut entries = text
        .lines()
        .filter(|line| !line.trim().is_empty() && !line.starts_with('#'))
        .map(parse)
        .collect::<Result<Vec<_>, _>>()?;
    // Deepest zones first: a parent is signed after every child has given it its DS.
    entries.sort_by_key(|entry| std::cmp::Reverse(labels(&entry.zone)));
    let names: Vec<String> = entries.iter().map(|entry| entry.zone.clone()).collect();
    let mut extra: BTreeMap<String, Vec<String>> = BTreeMap::new();
    let scratch = tempfile::Builder::new()
        .prefix("juris-bench-sign-")
        .tempdir()
        .map_err(|e| format!("temporary directory: {e}"))?;
    for (index, entry) in entries.iter().enumerate() {
        let source = format!("{}.unsigned", entry.file);
        let mut zone_text = fs::read_to_string(&source).map_err(|e| format!("{source}: {e}"))?;
        for ds in extra.remove(&entry.zone).unwrap_or_default() {
            zone_text.push_str(&ds);
            zone_text.push('\n');
        }
        let directory = scratch.path().join(index.to_string());
        fs::create_dir_all(&directory).map_err(|e| format!("{}: {e}", directory.display()))?;
        let signed = sign(&entry.zone, &zone_text, &entry.signing, &directory);
        fs::write(&entry.file, &signed.text).map_err(|e| format!("{}: {e}", entry.file))?;
        if entry.zone == "." {
            let anchor: String = signed.ds.iter().map(|ds| format!("{ds}\n")).collect();
            fs::write(anchor_file, anchor).map_err(|e| format!("{anchor_file}: {e}"))?;
        } else if let Some(parent) = parent_of(&entry.zone, names.iter().map(String::as_str)) {
            extra
                .entry(parent.to_owned())
                .or_default()
                .extend(signed.ds);
        }
    }
    if !extra.is_empty() {
        return Err(format!(
            "DS lines for zones not in the list: {:?}",
            extra.keys()
        ));
    }
    Ok(())
}

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let [zones_file, anchor_file] = &args[..] else {
        eprintln!("usage: sign_hierarchy ZONES.tsv ANCHOR.ds");
        return ExitCode::from(2);
    };
    match run(zones_file, anchor_file) {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("sign_hierarchy: {error}");
            ExitCode::FAILURE
        }
    }
}
