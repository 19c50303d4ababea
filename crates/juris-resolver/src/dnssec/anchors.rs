//! Trust anchors: DS or DNSKEY records in zone-file syntax, per domain.
//!
//! Accepted: one record per entry, `OWNER [TTL] [CLASS] DS|DNSKEY RDATA`, in any order of TTL
//! and class (as in zone files), `;` comments, records spread over lines with parentheses
//! (BIND style), `$TTL` lines (ignored). Owner names are absolute whether or not they end in a
//! dot. This reads the files of Unbound's `trust-anchor-file`, Knot Resolver's
//! `trust_anchors.add_file` (without RFC 5011 state) and `/usr/share/dns/root.ds`.

use std::path::{Path, PathBuf};
use std::str::FromStr;

use base64::Engine as _;
use bytes::Bytes;
use domain::base::iana::{DigestAlgorithm, SecurityAlgorithm};
use domain::base::{Name, ToName};
use domain::rdata::{Dnskey, Ds};

/// The IANA root zone KSKs (root-anchors.xml): KSK-2017 (20326) and KSK-2024 (38696).
pub const BUILTIN_ROOT_ANCHORS: &str = "\
. IN DS 20326 8 2 E06D44B80B8F1D39A95C0B0D7C65D08458E880409BBC683457104237C7F8EC8D
. IN DS 38696 8 2 683D2D0ACB8C9B712A1948B27F741219298D0A450D612C483AF444A4C0FB2B16
";

/// A trust anchor file that cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum AnchorError {
    /// The file could not be read.
    #[error("{}: {source}", path.display())]
    Read {
        /// The file.
        path: PathBuf,
        /// The I/O error.
        source: std::io::Error,
    },
    /// A line that is not a DS or DNSKEY record.
    #[error("{}:{line}: {reason}", path.display())]
    Syntax {
        /// The file.
        path: PathBuf,
        /// 1-based line number (where the record starts).
        line: usize,
        /// What is wrong.
        reason: String,
    },
    /// A file without any anchor.
    #[error("{}: no DS or DNSKEY record in the file", path.display())]
    Empty {
        /// The file.
        path: PathBuf,
    },
}

/// The anchors of one domain.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TrustAnchor {
    /// The anchored domain (lower-cased).
    pub zone: Name<Bytes>,
    /// DS records: the zone's DNSKEY set must hold a key matching one of them.
    pub ds: Vec<Ds<Bytes>>,
    /// DNSKEY records: trusted as they are.
    pub dnskeys: Vec<Dnskey<Bytes>>,
}

/// Every configured trust anchor, by domain.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TrustAnchors {
    anchors: Vec<TrustAnchor>,
}

impl TrustAnchors {
    /// The built-in IANA root anchors.
    pub fn builtin() -> Self {
        let mut anchors = Self::default();
        // The built-in text is a constant checked by a unit test.
        let _ = anchors.add_text(BUILTIN_ROOT_ANCHORS, Path::new("<built-in>"));
        anchors
    }

    /// Parses anchors from text; `origin` names the source in errors.
    pub fn parse(text: &str, origin: &Path) -> Result<Self, AnchorError> {
        let mut anchors = Self::default();
        if anchors.add_text(text, origin)? == 0 {
            return Err(AnchorError::Empty {
                path: origin.to_owned(),
            });
        }
        Ok(anchors)
    }

    /// Reads one file and adds its anchors.
    pub fn add_file(&mut self, path: &Path) -> Result<(), AnchorError> {
        let text = std::fs::read_to_string(path).map_err(|source| AnchorError::Read {
            path: path.to_owned(),
            source,
        })?;
        if self.add_text(&text, path)? == 0 {
            return Err(AnchorError::Empty {
                path: path.to_owned(),
            });
        }
        Ok(())
    }

    /// Adds every anchor of `other`.
    pub fn merge(&mut self, other: TrustAnchors) {
        for anchor in other.anchors {
            let entry = self.entry(anchor.zone);
            entry.ds.extend(anchor.ds);
            entry.dnskeys.extend(anchor.dnskeys);
        }
    }

    /// Whether there is an anchor for the root.
    pub fn has_root(&self) -> bool {
        self.anchors.iter().any(|a| a.zone.is_root())
    }

    /// Whether there is no anchor at all.
    pub fn is_empty(&self) -> bool {
        self.anchors.is_empty()
    }

    /// Every anchored domain.
    pub fn iter(&self) -> impl Iterator<Item = &TrustAnchor> {
        self.anchors.iter()
    }

    /// The anchor of the closest anchored domain at or above `name`.
    pub fn closest(&self, name: &Name<Bytes>) -> Option<&TrustAnchor> {
        self.anchors
            .iter()
            .filter(|a| name.ends_with(&a.zone))
            .max_by_key(|a| a.zone.label_count())
    }

    /// The anchor of exactly `zone`.
    pub fn get(&self, zone: &Name<Bytes>) -> Option<&TrustAnchor> {
        self.anchors.iter().find(|a| a.zone.name_eq(zone))
    }

    fn entry(&mut self, zone: Name<Bytes>) -> &mut TrustAnchor {
        let at = match self.anchors.iter().position(|a| a.zone.name_eq(&zone)) {
            Some(at) => at,
            None => {
                self.anchors.push(TrustAnchor {
                    zone,
                    ds: Vec::new(),
                    dnskeys: Vec::new(),
                });
                self.anchors.len() - 1
            }
        };
        &mut self.anchors[at]
    }

    /// Adds the records of `text`; returns how many.
    fn add_text(&mut self, text: &str, origin: &Path) -> Result<usize, AnchorError> {
        let mut added = 0;
        for (line, tokens) in entries(text) {
            let syntax = |reason: String| AnchorError::Syntax {
                path: origin.to_owned(),
                line,
                reason,
            };
            let record = parse_record(&tokens).map_err(syntax)?;
            match record {
                Parsed::Directive => {}
                Parsed::Ds(zone, ds) => {
                    self.entry(zone).ds.push(ds);
                    added += 1;
                }
                Parsed::Dnskey(zone, key) => {
                    self.entry(zone).dnskeys.push(key);
                    added += 1;
                }
            }
        }
        Ok(added)
    }
}

enum Parsed {
    Directive,
    Ds(Name<Bytes>, Ds<Bytes>),
    Dnskey(Name<Bytes>, Dnskey<Bytes>),
}

/// Splits zone-file text into entries (line where each starts, tokens): comments removed,
/// parenthesised groups joined.
fn entries(text: &str) -> Vec<(usize, Vec<String>)> {
    let mut entries = Vec::new();
    let mut current: Vec<String> = Vec::new();
    let mut start = 0;
    let mut depth = 0usize;
    for (index, raw) in text.lines().enumerate() {
        let content = raw.split(';').next().unwrap_or("");
        if current.is_empty() {
            start = index + 1;
        }
        for piece in content.split_whitespace() {
            let mut token = String::new();
            for c in piece.chars() {
                match c {
                    '(' => depth += 1,
                    ')' => depth = depth.saturating_sub(1),
                    c => token.push(c),
                }
            }
            if !token.is_empty() {
                current.push(token);
            }
        }
        if depth == 0 && !current.is_empty() {
            entries.push((start, std::mem::take(&mut current)));
        }
    }
    if !current.is_empty() {
        entries.push((start, current));
    }
    entries
}

fn parse_record(tokens: &[String]) -> Result<Parsed, String> {
    let Some(owner) = tokens.first() else {
        return Err("empty record".into());
    };
    if owner.starts_with('$') {
        return match owner.to_ascii_uppercase().as_str() {
            "$TTL" => Ok(Parsed::Directive),
            other => Err(format!(
                "directive {other} is not supported in anchor files"
            )),
        };
    }
    let zone = parse_owner(owner)?;
    // TTL and class, in either order, both optional.
    let mut rest = &tokens[1..];
    for _ in 0..2 {
        match rest.first() {
            Some(t) if t.bytes().all(|b| b.is_ascii_digit()) => rest = &rest[1..],
            Some(t) if t.eq_ignore_ascii_case("IN") => rest = &rest[1..],
            Some(t) if matches!(t.to_ascii_uppercase().as_str(), "CH" | "HS" | "CS") => {
                return Err(format!("class {t} (only IN anchors are used)"))
            }
            _ => break,
        }
    }
    let Some(rtype) = rest.first() else {
        return Err("missing record type (DS or DNSKEY)".into());
    };
    let fields = &rest[1..];
    match rtype.to_ascii_uppercase().as_str() {
        "DS" => {
            if fields.len() < 4 {
                return Err("DS needs key tag, algorithm, digest type and digest".into());
            }
            let key_tag = number::<u16>(&fields[0], "key tag")?;
            let algorithm = algorithm(&fields[1])?;
            let digest_type = DigestAlgorithm::from_int(number::<u8>(&fields[2], "digest type")?);
            let digest = hex(&fields[3..].concat())?;
            let ds = Ds::new(key_tag, algorithm, digest_type, Bytes::from(digest))
                .map_err(|_| "DS digest too long".to_string())?;
            Ok(Parsed::Ds(zone, ds))
        }
        "DNSKEY" => {
            if fields.len() < 4 {
                return Err("DNSKEY needs flags, protocol, algorithm and public key".into());
            }
            let flags = number::<u16>(&fields[0], "flags")?;
            let protocol = number::<u8>(&fields[1], "protocol")?;
            let algorithm = algorithm(&fields[2])?;
            if protocol != 3 {
                return Err(format!("DNSKEY protocol {protocol} (must be 3)"));
            }
            let key = base64::engine::general_purpose::STANDARD
                .decode(fields[3..].concat())
                .map_err(|e| format!("DNSKEY public key is not base64: {e}"))?;
            let key = Dnskey::new(flags, protocol, algorithm, Bytes::from(key))
                .map_err(|_| "DNSKEY public key too long".to_string())?;
            if !key.is_zone_key() {
                return Err("DNSKEY without the zone key flag (256) cannot be an anchor".into());
            }
            if key.is_revoked() {
                return Err("DNSKEY has the REVOKE flag".into());
            }
            Ok(Parsed::Dnskey(zone, key))
        }
        other => Err(format!(
            "record type {other}: an anchor is a DS or DNSKEY record"
        )),
    }
}

/// A domain name as written in configuration (trailing dot optional), lower-cased.
pub fn parse_domain(text: &str) -> Result<Name<Bytes>, String> {
    if text.is_empty() {
        return Err("empty domain name".into());
    }
    parse_owner(text)
}

fn parse_owner(text: &str) -> Result<Name<Bytes>, String> {
    let absolute = if text.ends_with('.') {
        text.to_owned()
    } else {
        format!("{text}.")
    };
    let name = Name::<Bytes>::from_str(&absolute)
        .map_err(|e| format!("owner {text:?} is not a domain name: {e}"))?;
    Ok(crate::names::lower(&name.to_bytes()))
}

/// An algorithm by number or mnemonic (`8`, `RSASHA256`).
fn algorithm(text: &str) -> Result<SecurityAlgorithm, String> {
    match text.parse::<u8>() {
        Ok(n) => Ok(SecurityAlgorithm::from_int(n)),
        Err(_) => SecurityAlgorithm::from_mnemonic(text.to_ascii_uppercase().as_bytes())
            .ok_or_else(|| format!("algorithm {text:?} is not a number or a known mnemonic")),
    }
}

fn number<T: FromStr>(text: &str, what: &str) -> Result<T, String> {
    text.parse()
        .map_err(|_| format!("{what} {text:?} is not a number in range"))
}

fn hex(text: &str) -> Result<Vec<u8>, String> {
    if !text.len().is_multiple_of(2) {
        return Err("DS digest has an odd number of hex digits".into());
    }
    (0..text.len())
        .step_by(2)
        .map(|i| {
            text.get(i..i + 2)
                .and_then(|pair| u8::from_str_radix(pair, 16).ok())
                .ok_or_else(|| format!("DS digest {text:?} is not hexadecimal"))
        })
        .collect()
}

#[cfg(test)]
#[allow(clippy::unwrap_used)] // reason: test code.
mod tests {
    use super::*;

    #[test]
    fn builtin_has_both_root_keys() {
        let anchors = TrustAnchors::parse(BUILTIN_ROOT_ANCHORS, Path::new("b")).unwrap();
        assert_eq!(anchors, TrustAnchors::builtin());
        let root = anchors.get(&Name::root_bytes()).unwrap();
        let tags: Vec<u16> = root.ds.iter().map(|d| d.key_tag()).collect();
        assert_eq!(tags, [20326, 38696]);
        assert!(root.ds.iter().all(|d| d.digest().len() == 32));
    }

    #[test]
    fn reads_unbound_and_bind_styles() {
        let text = "; autotrust trust anchor file\n\
            $TTL 3600\n\
            Example.COM. 172800 IN DNSKEY 257 3 13 mdsswUyr3DPW132mOi8V9xESWE8jTo0d xCjjnopKl+GqJxpVXckHAeF+KkxLbxIL fDLUT0rAK9iUzy1L53eKGQ== ;{id = 2371 (ksk)}\n\
            net IN DS ( 35886 RSASHA256 2\n  7862B27F5F516EBE19680444D4CE5E762981931842C465F00236401D8BD973EE )\n";
        let anchors = TrustAnchors::parse(text, Path::new("t")).unwrap();
        let com = anchors
            .get(&Name::bytes_from_str("example.com.").unwrap())
            .unwrap();
        assert_eq!(com.dnskeys.len(), 1);
        assert_eq!(com.dnskeys[0].key_tag(), 2371);
        let net = anchors
            .closest(&Name::bytes_from_str("www.net.").unwrap())
            .unwrap();
        assert_eq!(net.ds[0].key_tag(), 35886);
        assert!(!anchors.has_root());
    }

    #[test]
    fn errors_name_the_line() {
        let text = ". IN DS 20326 8 2 E06D44\n\nexample. IN A 192.0.2.1\n";
        let error = TrustAnchors::parse(text, Path::new("a.keys")).unwrap_err();
        let shown = error.to_string();
        assert!(shown.starts_with("a.keys:3: record type A"), "{shown}");
        for bad in [
            ". IN DS 20326 8 2 XYZ",
            ". IN DS 70000 8 2 00",
            ". IN DNSKEY 257 3 8 !!!",
            ". IN DNSKEY 1 3 8 AAAA",
            ". IN DS 1 8",
            "$ORIGIN example.",
        ] {
            let error = TrustAnchors::parse(bad, Path::new("f")).unwrap_err();
            assert!(error.to_string().starts_with("f:1: "), "{bad}: {error}");
        }
        assert!(matches!(
            TrustAnchors::parse("; nothing\n", Path::new("f")),
            Err(AnchorError::Empty { .. })
        ));
    }

    #[test]
    fn file_root_anchor_replaces_builtin() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().join("root.key");
        std::fs::write(&root, ". DS 1 13 2 00112233\n").unwrap();
        let other = dir.path().join("test.key");
        std::fs::write(&other, "test. DS 2 13 2 0011\n").unwrap();
        let config = super::super::ValidatorConfig {
            trust_anchor_files: vec![other.clone()],
            ..Default::default()
        };
        let anchors = config.load_anchors().unwrap();
        assert_eq!(anchors.get(&Name::root_bytes()).unwrap().ds.len(), 2);
        assert!(anchors
            .get(&Name::bytes_from_str("test.").unwrap())
            .is_some());
        let config = super::super::ValidatorConfig {
            trust_anchor_files: vec![root, other.clone()],
            ..Default::default()
        };
        let anchors = config.load_anchors().unwrap();
        let root = anchors.get(&Name::root_bytes()).unwrap();
        assert_eq!(root.ds.len(), 1);
        assert_eq!(root.ds[0].key_tag(), 1);
        let island = super::super::ValidatorConfig {
            trust_anchor_files: vec![other.clone()],
            builtin_root_anchor: false,
            ..Default::default()
        };
        let anchors = island.load_anchors().unwrap();
        assert!(!anchors.has_root(), "only the island's anchor");
        assert!(anchors
            .get(&Name::bytes_from_str("test.").unwrap())
            .is_some());
        let missing = super::super::ValidatorConfig {
            trust_anchor_files: vec![dir.path().join("nope")],
            ..Default::default()
        };
        assert!(missing
            .load_anchors()
            .unwrap_err()
            .to_string()
            .contains("nope"));
    }
}
