//! Domain names: normalisation of target text (IDNA, UTS 46), the reversed-label keys of the
//! index, and reading the DNS wire format on the hot path.

use idna::uts46::{AsciiDenyList, DnsLength, Hyphens, Uts46};

use crate::index::KeyHasher;

/// The byte that ends every label in an index key. It sorts below every byte a label of a
/// validated target can hold (`a-z`, `0-9`, `-`, `_`), so a name's key is a prefix of the keys of
/// all its descendants and of nothing else.
pub(crate) const SEPARATOR: u8 = 0;

/// Longest name in presentation format without the trailing dot (RFC 1035: 255 octets in wire
/// format).
pub(crate) const MAX_NAME_TEXT: usize = 253;
/// Longest label (RFC 1035).
pub(crate) const MAX_LABEL: usize = 63;
/// Most labels a wire name can hold (excluding the root).
pub(crate) const MAX_LABELS: usize = 127;

/// Why a text is not a usable domain name.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum NameError {
    /// Nothing left after removing a trailing dot.
    #[error("the name is empty")]
    Empty,
    /// A wildcard was written; subtree targets cover every descendant.
    #[error("wildcards are not names; use a target of type subtree instead")]
    Wildcard,
    /// IDNA (UTS 46) processing failed.
    #[error("IDNA processing failed (invalid Unicode or punycode)")]
    Idna,
    /// Two dots in a row, or a leading dot.
    #[error("the name has an empty label")]
    EmptyLabel,
    /// A label longer than 63 bytes.
    #[error("label {label:?} is {len} bytes long (the limit is 63)")]
    LabelTooLong {
        /// The label.
        label: String,
        /// Its length.
        len: usize,
    },
    /// A name longer than 253 bytes in presentation format.
    #[error("the name is {len} bytes long (the limit is 253)")]
    NameTooLong {
        /// Its length.
        len: usize,
    },
    /// A byte other than letters, digits, `-` and `_` after IDNA processing.
    #[error("character {0:?} is not allowed in a host name")]
    Character(char),
}

/// Normalises a name as written by a person or a feed: trailing dot removed, IDNA to punycode
/// (UTS 46 mapping, which also lower-cases), then RFC 1035 limits and the host-name alphabet
/// (letters, digits, `-`, and `_` which real service names use).
///
/// `Bücher.Example.` becomes `xn--bcher-kva.example`.
pub fn normalize_name(text: &str) -> Result<String, NameError> {
    let text = text.trim();
    let text = text.strip_suffix('.').unwrap_or(text);
    if text.is_empty() {
        return Err(NameError::Empty);
    }
    if text.starts_with("*.") || text == "*" {
        return Err(NameError::Wildcard);
    }
    let ascii = Uts46::new()
        .to_ascii(
            text.as_bytes(),
            AsciiDenyList::URL,
            Hyphens::Allow,
            DnsLength::Ignore,
        )
        .map_err(|_| NameError::Idna)?;
    let ascii = ascii.into_owned();
    check_normal(&ascii)?;
    Ok(ascii)
}

/// Whether `name` has the form [`normalize_name`] gives (RFC 1035 limits, lower-case host-name
/// alphabet, no empty label, no trailing dot). It does not apply the IDNA mapping: a name that
/// passes is one `normalize_name` could have produced, not necessarily from this text.
pub(crate) fn check_normal(name: &str) -> Result<(), NameError> {
    if name.is_empty() {
        return Err(NameError::Empty);
    }
    if name.len() > MAX_NAME_TEXT {
        return Err(NameError::NameTooLong { len: name.len() });
    }
    for label in name.split('.') {
        if label.is_empty() {
            return Err(NameError::EmptyLabel);
        }
        if label.len() > MAX_LABEL {
            return Err(NameError::LabelTooLong {
                label: label.to_owned(),
                len: label.len(),
            });
        }
        if let Some(c) = label
            .chars()
            .find(|c| !(c.is_ascii_lowercase() || c.is_ascii_digit() || *c == '-' || *c == '_'))
        {
            return Err(NameError::Character(c));
        }
    }
    Ok(())
}

/// Turns a name in presentation format into the lower-cased, uncompressed wire format that
/// [`CompiledPolicy::check_name`](crate::CompiledPolicy::check_name) takes, normalising it first
/// like a target (IDNA, case). For tools (explain) and tests; the server already holds wire names.
pub fn name_to_wire(text: &str) -> Result<Vec<u8>, NameError> {
    let text = text.trim();
    if text == "." {
        return Ok(vec![0]);
    }
    let name = normalize_name(text)?;
    let mut wire = Vec::with_capacity(name.len() + 2);
    for label in name.split('.') {
        // Labels are ≤ 63 bytes (checked in `normalize_name`), so the length fits a byte.
        wire.push(label.len() as u8);
        wire.extend_from_slice(label.as_bytes());
    }
    wire.push(0);
    Ok(wire)
}

/// The index key of a normalised name: labels from the top down, each followed by
/// [`SEPARATOR`]: `www.example.com` → `com\0example\0www\0`.
pub(crate) fn key_from_name(name: &str) -> Vec<u8> {
    let mut key = Vec::with_capacity(name.len() + 1);
    push_key_from_name(name, &mut key);
    key
}

/// Appends the key of `name` to `out` and returns the key's hash ([`KeyHasher::key`]), computed
/// on the way.
pub(crate) fn push_key_from_name(name: &str, out: &mut Vec<u8>) -> u64 {
    let bytes = name.as_bytes();
    let mut hasher = KeyHasher::new();
    let mut end = bytes.len();
    loop {
        let start = bytes[..end]
            .iter()
            .rposition(|b| *b == b'.')
            .map_or(0, |dot| dot + 1);
        out.extend_from_slice(&bytes[start..end]);
        out.push(SEPARATOR);
        if end > start {
            hasher.label_at(bytes, start, end - start);
        }
        if start == 0 {
            return hasher.finish();
        }
        end = start - 1;
    }
}

/// The name (presentation format, lower case, no trailing dot; `.` for the root) of a wire
/// name. Stops at a compression pointer or the end of the bytes; other bytes are shown lossily.
pub fn wire_to_text(wire: &[u8]) -> String {
    let mut text = String::with_capacity(wire.len());
    let mut at = 0;
    while let Some(&len) = wire.get(at) {
        let len = usize::from(len);
        if len == 0 || len > 63 {
            break;
        }
        let Some(label) = wire.get(at + 1..at + 1 + len) else {
            break;
        };
        if !text.is_empty() {
            text.push('.');
        }
        text.push_str(&String::from_utf8_lossy(label).to_ascii_lowercase());
        at += 1 + len;
    }
    if text.is_empty() {
        text.push('.');
    }
    text
}

/// The name (presentation format, no trailing dot) of an index key.
pub(crate) fn name_from_key(key: &[u8]) -> String {
    let mut labels: Vec<&[u8]> = key
        .split(|b| *b == SEPARATOR)
        .filter(|l| !l.is_empty())
        .collect();
    labels.reverse();
    let mut name = String::with_capacity(key.len());
    for (i, label) in labels.iter().enumerate() {
        if i > 0 {
            name.push('.');
        }
        name.push_str(&String::from_utf8_lossy(label));
    }
    name
}

/// A wire-format name with the positions of its labels: parsed once, then hashed (to probe the
/// Bloom filters) and, only if a probe says "maybe", turned into an index key. No allocation.
pub(crate) struct WireName<'a> {
    wire: &'a [u8],
    starts: [u8; MAX_LABELS],
    count: usize,
}

impl<'a> WireName<'a> {
    /// Reads an uncompressed wire name (any case). `None` if it is malformed (compression pointer,
    /// missing root label, over 255 bytes); bytes after the root label are ignored.
    #[inline]
    pub(crate) fn parse(wire: &'a [u8]) -> Option<WireName<'a>> {
        let mut name = WireName::unparsed(wire);
        name.read().then_some(name)
    }

    /// A name with no labels yet: [`read`](Self::read) fills it in place. The hot path uses this
    /// pair instead of [`parse`](Self::parse), whose `Option` result is moved: the copy of
    /// `starts` reloads bytes just stored one by one (a store-forwarding stall, ~10 % of a
    /// non-matching lookup).
    #[inline]
    pub(crate) fn unparsed(wire: &'a [u8]) -> WireName<'a> {
        WireName {
            wire,
            starts: [0; MAX_LABELS],
            count: 0,
        }
    }

    /// Reads the labels; `false` if the name is malformed (see [`parse`](Self::parse)).
    #[inline]
    pub(crate) fn read(&mut self) -> bool {
        let mut pos = 0usize;
        self.count = 0;
        loop {
            let Some(len) = self.wire.get(pos) else {
                return false;
            };
            let len = usize::from(*len);
            if len == 0 {
                return true;
            }
            if len > MAX_LABEL || self.count == MAX_LABELS || pos + 1 + len >= 255 {
                return false;
            }
            // pos < 255 (checked above), so it fits a byte.
            self.starts[self.count] = pos as u8;
            self.count += 1;
            pos += 1 + len;
        }
    }

    /// The labels from the top down, lower-cased lazily by the callers. A label holding the
    /// separator byte ends the iteration (no target can match it or anything below it).
    #[inline]
    fn labels_from_top(&self) -> impl Iterator<Item = &'a [u8]> + '_ {
        (0..self.count)
            .rev()
            .map(|i| {
                let start = usize::from(self.starts[i]);
                let len = usize::from(self.wire[start]);
                // `parse` checked that every label lies inside `wire`.
                &self.wire[start + 1..start + 1 + len]
            })
            .take_while(|label| !label.contains(&SEPARATOR))
    }

    /// Calls `probe` with the hash of the key of the top `min_labels` labels, then of one more
    /// label, and so on (the hashes the index's Bloom filters hold); stops at the first `true`.
    #[inline]
    pub(crate) fn any_prefix_hash(
        &self,
        min_labels: usize,
        mut probe: impl FnMut(u64) -> bool,
    ) -> bool {
        let mut hasher = KeyHasher::new();
        for depth in 0..self.count {
            let start = usize::from(self.starts[self.count - 1 - depth]) + 1;
            let len = usize::from(self.wire[start - 1]);
            // `parse` checked that every label lies inside `wire`; `label_at` reads it in place.
            if hasher.label_at(self.wire, start, len) {
                // The label holds the separator byte: like `labels_from_top`, nothing at or
                // below it can match.
                return false;
            }
            if depth + 1 >= min_labels && probe(hasher.finish()) {
                return true;
            }
        }
        false
    }

    /// The index key of the name, on the stack.
    pub(crate) fn key(&self) -> WireKey {
        let mut out = WireKey {
            key: [0; 256],
            len: 0,
            complete: true,
        };
        let mut at = 0usize;
        let mut used = 0usize;
        for label in self.labels_from_top() {
            for (dst, src) in out.key[at..at + label.len()].iter_mut().zip(label) {
                *dst = src.to_ascii_lowercase();
            }
            at += label.len();
            out.key[at] = SEPARATOR;
            at += 1;
            used += 1;
        }
        out.complete = used == self.count;
        out.len = at;
        out
    }
}

/// The index key of a wire name (see [`WireName::key`]).
pub(crate) struct WireKey {
    key: [u8; 256],
    len: usize,
    /// Whether every label made it into the key.
    complete: bool,
}

impl WireKey {
    /// Reads a wire name and builds its key (for tests and explain).
    pub(crate) fn parse(wire: &[u8]) -> Option<WireKey> {
        WireName::parse(wire).map(|name| name.key())
    }

    /// The key.
    #[inline]
    pub(crate) fn key(&self) -> &[u8] {
        // len ≤ 255: each label byte and length byte of a ≤ 255-byte name becomes one key byte.
        &self.key[..self.len]
    }

    /// Whether the key stands for the whole name, so that an exact (`domain`) target at its end
    /// matches the name itself.
    #[inline]
    pub(crate) fn is_complete(&self) -> bool {
        self.complete
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used, reason = "test code")]
mod tests {
    use super::*;

    #[test]
    fn idna_normalisation() {
        assert_eq!(
            normalize_name("Bücher.example").unwrap(),
            "xn--bcher-kva.example"
        );
        assert_eq!(
            normalize_name("WWW.Example.COM.").unwrap(),
            "www.example.com"
        );
        assert_eq!(
            normalize_name("xn--bcher-kva.example").unwrap(),
            "xn--bcher-kva.example"
        );
        assert_eq!(normalize_name("_dmarc.example").unwrap(), "_dmarc.example");
        assert_eq!(normalize_name(""), Err(NameError::Empty));
        assert_eq!(normalize_name("*.example.com"), Err(NameError::Wildcard));
        assert_eq!(normalize_name("a..b"), Err(NameError::EmptyLabel));
        assert!(matches!(
            normalize_name("a b.com"),
            Err(NameError::Character(' ')) | Err(NameError::Idna)
        ));
        assert!(matches!(
            normalize_name(&"a".repeat(64)),
            Err(NameError::LabelTooLong { .. })
        ));
        let long = vec!["a".repeat(60); 5].join(".");
        assert!(matches!(
            normalize_name(&long),
            Err(NameError::NameTooLong { .. })
        ));
        assert!(normalize_name("http://x.com").is_err());
    }

    #[test]
    fn keys() {
        assert_eq!(key_from_name("www.example.com"), b"com\0example\0www\0");
        for name in [
            "www.example.com",
            "a.to",
            "a-long-label-over-eight.x.io",
            "b..c",
        ] {
            let mut key = Vec::new();
            let hash = push_key_from_name(name, &mut key);
            assert_eq!(key, key_from_name(name));
            assert_eq!(hash, KeyHasher::key(&key), "{name}");
        }
        assert_eq!(name_from_key(b"com\0example\0www\0"), "www.example.com");
        assert_eq!(
            name_to_wire("WWW.Example.com").unwrap(),
            b"\x03www\x07example\x03com\x00"
        );
    }

    #[test]
    fn wire_keys() {
        let k = WireKey::parse(b"\x03WWW\x07example\x03com\x00").unwrap();
        assert_eq!(k.key(), b"com\0example\0www\0");
        let k = WireKey::parse(b"\x00").unwrap();
        assert_eq!(k.key(), b"");
        // A label holding the separator byte cuts the key above it.
        let k = WireKey::parse(b"\x01a\x03x\x00y\x02to\x00").unwrap();
        assert_eq!(k.key(), b"to\0");
        assert!(!k.is_complete());
        assert!(WireKey::parse(b"\x03www").is_none());
        assert!(WireKey::parse(b"\xc0\x0c").is_none());
        assert!(WireKey::parse(b"").is_none());
    }
}
