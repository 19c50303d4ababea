//! DNSSEC-signed zones for a [`crate::hierarchy::Hierarchy`]: keys from `ldns-keygen`,
//! signatures from `ldns-signzone`, DS records from `ldns-key2ds` (Debian `ldnsutils`), and
//! zones broken on purpose after signing.
//!
//! ```no_run
//! use juris_testkit::dnssec::Signing;
//! use juris_testkit::hierarchy::{Hierarchy, Zone};
//! let hierarchy = Hierarchy::builder()
//!     .zone(Zone::new(".").signed(Signing::new()))
//!     .zone(Zone::new("test.").signed(Signing::rsa_sha256().nsec3()))
//!     .zone(Zone::new("ok.test.").signed(Signing::new()).records("www A 192.0.2.1"))
//!     .zone(Zone::new("old.test.").signed(Signing::new().expired()).records("www A 192.0.2.2"))
//!     .start();
//! let anchor = hierarchy.trust_anchor(); // ". IN DS …" for `--trust-anchor`
//! ```
//!
//! Zones are signed children first, so that each parent is signed with its children's DS
//! records in it. Every zone has one key (flags 257, a "combined signing key") unless it
//! asks for colliding keys. Keys are generated once per test process and zone name and
//! kept in memory ([`key`]); each hierarchy writes them into its own temporary directory,
//! so no private key outlives the test run. Signature windows are relative to the real
//! clock: valid from a day ago for 30 days, expired 3 days ago, or valid from in 10 days.
//!
//! [`signed_world`] is the hierarchy every DNSSEC test uses, with the outcome a validating
//! resolver must give for each of its names ([`CASES`]).

use std::collections::HashMap;
use std::fmt::Write as _;
use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::{Mutex, OnceLock, PoisonError};
use std::time::{SystemTime, UNIX_EPOCH};

use base64::Engine as _;

use crate::tools;

/// One day in seconds.
const DAY: i64 = 86_400;
/// DS digest type no validator knows (unassigned in the IANA registry).
pub const UNKNOWN_DIGEST_TYPE: u8 = 250;

/// A DNSKEY algorithm `ldns-keygen` can make.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Algorithm {
    /// 8, RSASHA256 (2048-bit keys).
    RsaSha256,
    /// 13, ECDSA P-256 with SHA-256.
    EcdsaP256Sha256,
    /// 16, Ed448 (implementations built on `ring` do not have it).
    Ed448,
    /// 3, DSA with SHA-1 (1024-bit keys; RFC 8624: MUST NOT sign, MUST NOT validate).
    Dsa,
    /// 8, RSASHA256 with a 512-bit key (shorter than `ring` accepts).
    RsaSha256Short,
}

impl Algorithm {
    /// The IANA number.
    #[must_use]
    pub fn number(self) -> u8 {
        match self {
            Self::RsaSha256 | Self::RsaSha256Short => 8,
            Self::EcdsaP256Sha256 => 13,
            Self::Ed448 => 16,
            Self::Dsa => 3,
        }
    }

    fn ldns_name(self) -> &'static str {
        match self {
            Self::RsaSha256 | Self::RsaSha256Short => "RSASHA256",
            Self::EcdsaP256Sha256 => "ECDSAP256SHA256",
            Self::Ed448 => "ED448",
            Self::Dsa => "DSA",
        }
    }
}

/// How the zone proves that names and types do not exist.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Denial {
    Nsec,
    /// NSEC3, SHA-1, no salt, 0 extra iterations (RFC 9276); `opt_out` sets the flag on
    /// every NSEC3 and leaves delegations to unsigned children out of the chain.
    Nsec3 {
        opt_out: bool,
    },
}

/// The RRSIG validity window.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Window {
    /// From a day ago to 30 days ahead.
    Valid,
    /// From 30 days ago to 3 days ago (beyond any validator's clock-skew allowance).
    Expired,
    /// From 10 days ahead to 40 days ahead.
    NotYetValid,
}

/// What the parent publishes for the zone.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ParentDs {
    /// A SHA-256 DS of the zone's key.
    Matching,
    /// No DS: an insecure delegation to a signed zone.
    None,
    /// A DS of a key the zone does not publish (DNSKEY missing).
    MissingKey,
    /// Only a DS with digest type [`UNKNOWN_DIGEST_TYPE`]: insecure for a validator.
    UnknownDigest,
}

/// How one zone is signed and how it is broken afterwards.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Signing {
    algorithm: Algorithm,
    denial: Denial,
    window: Window,
    parent_ds: ParentDs,
    strip_rrsigs: bool,
    strip_denial: bool,
    colliding_keys: usize,
    corrupt: Vec<String>,
}

impl Default for Signing {
    fn default() -> Self {
        Self::new()
    }
}

impl Signing {
    /// ECDSA P-256, NSEC, a valid window, a matching DS at the parent.
    #[must_use]
    pub fn new() -> Self {
        Self {
            algorithm: Algorithm::EcdsaP256Sha256,
            denial: Denial::Nsec,
            window: Window::Valid,
            parent_ds: ParentDs::Matching,
            strip_rrsigs: false,
            strip_denial: false,
            colliding_keys: 0,
            corrupt: Vec::new(),
        }
    }

    /// Like [`Signing::new`] with RSASHA256 (algorithm 8).
    #[must_use]
    pub fn rsa_sha256() -> Self {
        Self::new().algorithm(Algorithm::RsaSha256)
    }

    #[must_use]
    pub fn algorithm(mut self, algorithm: Algorithm) -> Self {
        self.algorithm = algorithm;
        self
    }

    /// NSEC3 instead of NSEC.
    #[must_use]
    pub fn nsec3(mut self) -> Self {
        self.denial = Denial::Nsec3 { opt_out: false };
        self
    }

    /// NSEC3 with opt-out: unsigned children's delegations get no NSEC3 of their own.
    #[must_use]
    pub fn nsec3_opt_out(mut self) -> Self {
        self.denial = Denial::Nsec3 { opt_out: true };
        self
    }

    /// Every signature expired 3 days ago.
    #[must_use]
    pub fn expired(mut self) -> Self {
        self.window = Window::Expired;
        self
    }

    /// Every signature becomes valid in 10 days.
    #[must_use]
    pub fn not_yet_valid(mut self) -> Self {
        self.window = Window::NotYetValid;
        self
    }

    /// The parent publishes no DS (an insecure delegation).
    #[must_use]
    pub fn without_ds(mut self) -> Self {
        self.parent_ds = ParentDs::None;
        self
    }

    /// The parent's DS names a key the zone does not have.
    #[must_use]
    pub fn ds_for_missing_key(mut self) -> Self {
        self.parent_ds = ParentDs::MissingKey;
        self
    }

    /// The parent's only DS has an unknown digest type.
    #[must_use]
    pub fn ds_with_unknown_digest(mut self) -> Self {
        self.parent_ds = ParentDs::UnknownDigest;
        self
    }

    /// After signing, every RRSIG is removed except those over the DNSKEY RRset and the
    /// NSEC/NSEC3 records: the keys validate, the absence of a zone cut can be proven, and
    /// the data has no signatures, so a validator must blame the missing RRSIGs.
    #[must_use]
    pub fn without_rrsigs(mut self) -> Self {
        self.strip_rrsigs = true;
        self
    }

    /// After signing, every NSEC/NSEC3 record and its RRSIG is removed: the zone's
    /// NXDOMAIN and NODATA answers come with no denial proof.
    #[must_use]
    pub fn without_denial(mut self) -> Self {
        self.strip_denial = true;
        self
    }

    /// KeyTrap (CVE-2023-50387): besides its key (flags 257, signs the DNSKEY RRset), the
    /// zone has `count` zone keys that all share one key tag (their reserved flag bits,
    /// which validators ignore, are chosen to make it so), and every other RRset is signed
    /// by all of them. The signatures of the RRsets owned by the names in `corrupt`
    /// (relative to the zone, `"www"`) are made invalid: a validator without limits tries
    /// every key against every signature before it gives up.
    #[must_use]
    pub fn colliding_keys(mut self, count: usize, corrupt: &[&str]) -> Self {
        self.colliding_keys = count;
        self.corrupt = corrupt.iter().map(|name| (*name).to_owned()).collect();
        self
    }

    /// How the parent's DS is made.
    #[must_use]
    pub fn parent_ds(&self) -> ParentDs {
        self.parent_ds
    }

    /// Whether the denial is NSEC3 with opt-out.
    #[must_use]
    pub fn is_opt_out(&self) -> bool {
        self.denial == Denial::Nsec3 { opt_out: true }
    }
}

/// A signed zone: the text NSD serves, and what goes into the parent.
#[derive(Debug, Clone)]
pub struct SignedZone {
    /// The signed (and possibly broken) zone file.
    pub text: String,
    /// DS lines for the parent (absolute owner names), possibly none.
    pub ds: Vec<String>,
    /// The zone's own DNSKEY lines (as in the `.key` files, no comments).
    pub dnskeys: Vec<String>,
}

/// A key as `ldns-keygen` wrote it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Key {
    /// The `.private` file.
    pub private: String,
    /// The DNSKEY line of the `.key` file, without ldns's comment.
    pub public: String,
    /// Its key tag (RFC 4034 appendix B).
    pub tag: u16,
}

/// Signs `text` (a zone file with `$ORIGIN zone`) in `directory` (which must exist).
///
/// # Panics
/// When an ldns tool is missing or fails; the panic carries its output.
#[must_use]
pub fn sign(zone: &str, text: &str, signing: &Signing, directory: &Path) -> SignedZone {
    let ksk = key(zone, signing.algorithm, "ksk");
    let mut keys = vec![ksk.clone()];
    if signing.colliding_keys > 0 {
        keys.extend(colliding_keys(
            zone,
            signing.algorithm,
            signing.colliding_keys,
        ));
    }
    let mut key_files = Vec::new();
    for (index, key) in keys.iter().enumerate() {
        key_files.push(write_key(directory, &format!("key{index}"), key));
    }
    let unsigned = directory.join("zone.unsigned");
    write(&unsigned, text);
    let signed = directory.join("zone.signed");

    let now = unix_now();
    let (inception, expiration) = match signing.window {
        Window::Valid => (now - DAY, now + 30 * DAY),
        Window::Expired => (now - 30 * DAY, now - 3 * DAY),
        Window::NotYetValid => (now + 10 * DAY, now + 40 * DAY),
    };
    let mut command = Command::new(tools::require_ldns("ldns-signzone"));
    command
        .arg("-o")
        .arg(zone)
        .arg("-i")
        .arg(inception.to_string())
        .arg("-e")
        .arg(expiration.to_string())
        .arg("-f")
        .arg(&signed);
    if let Denial::Nsec3 { opt_out } = signing.denial {
        command.args(["-n", "-t", "0"]);
        if opt_out {
            command.arg("-p");
        }
    }
    command.arg(&unsigned).args(&key_files);
    run(&mut command);
    let mut text = read(&signed);

    if signing.strip_rrsigs {
        text = filter_records(&text, |record| {
            record.kind != "RRSIG" || matches!(record.covered(), Some("DNSKEY" | "NSEC" | "NSEC3"))
        });
    }
    if signing.strip_denial {
        text = filter_records(&text, |record| {
            !matches!(record.kind.as_str(), "NSEC" | "NSEC3")
                && !matches!(record.covered(), Some("NSEC" | "NSEC3"))
        });
    }
    if !signing.corrupt.is_empty() {
        let owners: Vec<String> = signing
            .corrupt
            .iter()
            .map(|name| absolute_in(name, zone))
            .collect();
        text = corrupt_signatures(&text, &owners);
    }

    let ds = match signing.parent_ds {
        ParentDs::Matching => vec![ds_of(directory, &key_files[0])],
        ParentDs::None => Vec::new(),
        ParentDs::MissingKey => {
            let absent = key(zone, signing.algorithm, "absent");
            let file = write_key(directory, "absent", &absent);
            vec![ds_of(directory, &file)]
        }
        ParentDs::UnknownDigest => vec![format!(
            "{zone} IN DS {} {} {UNKNOWN_DIGEST_TYPE} {}",
            ksk.tag,
            signing.algorithm.number(),
            "5a".repeat(32)
        )],
    };
    SignedZone {
        text,
        ds,
        dnskeys: keys.iter().map(|key| key.public.clone()).collect(),
    }
}

/// The key `role` (any label: `"ksk"`, `"absent"`, …) of `zone` with `algorithm`,
/// generated on first use in this process (flags 257).
///
/// # Panics
/// When `ldns-keygen` is missing or fails.
#[must_use]
pub fn key(zone: &str, algorithm: Algorithm, role: &str) -> Key {
    let cache_key = format!("{zone}|{}|{role}", algorithm.number());
    if let Some(found) = cache().get(&cache_key) {
        return found.clone();
    }
    let generated = generate(zone, algorithm, true);
    cache().insert(cache_key, generated).clone()
}

/// `count` zone keys of `zone` (flags 256 plus reserved bits) that share one key tag.
fn colliding_keys(zone: &str, algorithm: Algorithm, count: usize) -> Vec<Key> {
    let cache_key = format!("{zone}|{}|colliding", algorithm.number());
    let mut found: Vec<Key> = Vec::new();
    for index in 0.. {
        if found.len() == count {
            break;
        }
        let indexed = format!("{cache_key}|{index}");
        if let Some(cached) = cache().get(&indexed) {
            found.push(cached.clone());
            continue;
        }
        let candidate = generate(zone, algorithm, false);
        let target = found.first().map_or(candidate.tag, |first| first.tag);
        if let Some(adjusted) = with_tag(&candidate, target) {
            found.push(cache().insert(indexed, adjusted).clone());
        }
    }
    found
}

struct KeyCache(&'static Mutex<HashMap<String, Key>>);

impl KeyCache {
    fn get(&self, key: &str) -> Option<Key> {
        self.0
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .get(key)
            .cloned()
    }

    fn insert(&self, key: String, value: Key) -> Key {
        self.0
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .entry(key)
            .or_insert(value)
            .clone()
    }
}

fn cache() -> KeyCache {
    static KEYS: OnceLock<Mutex<HashMap<String, Key>>> = OnceLock::new();
    KeyCache(KEYS.get_or_init(|| Mutex::new(HashMap::new())))
}

/// Runs `ldns-keygen` in a scratch directory and reads the key back.
fn generate(zone: &str, algorithm: Algorithm, sep: bool) -> Key {
    let scratch = tempfile::Builder::new()
        .prefix("juris-keygen-")
        .tempdir()
        .unwrap_or_else(|error| panic!("cannot create a temporary directory: {error}"));
    let mut command = Command::new(tools::require_ldns("ldns-keygen"));
    command
        .current_dir(scratch.path())
        .arg("-a")
        .arg(algorithm.ldns_name());
    match algorithm {
        Algorithm::RsaSha256 => {
            command.args(["-b", "2048"]);
        }
        Algorithm::RsaSha256Short => {
            command.args(["-b", "512"]);
        }
        Algorithm::Dsa => {
            command.args(["-b", "1024"]);
        }
        Algorithm::EcdsaP256Sha256 | Algorithm::Ed448 => {}
    }
    if sep {
        command.arg("-k");
    }
    command.arg(zone);
    let base = run(&mut command).trim().to_owned();
    let private = read(&scratch.path().join(format!("{base}.private")));
    let public = strip_comment(&read(&scratch.path().join(format!("{base}.key"))));
    let tag = key_tag(&public).unwrap_or_else(|| panic!("unreadable DNSKEY: {public}"));
    Key {
        private,
        public,
        tag,
    }
}

/// `key` with reserved flag bits set so that its tag becomes `target`, if any choice of
/// them does (about one key in four).
fn with_tag(key: &Key, target: u16) -> Option<Key> {
    let (flags, protocol, algorithm, public_key) = dnskey_fields(&key.public)?;
    // Bits 0-6 and 8-14 (RFC 4034 2.1.1) are reserved; ZONE (0x0100) and SEP (0x0001) stay.
    let reserved_mask: u16 = 0xFEFE;
    let rest = word_sum(&[&[0, 0, protocol, algorithm], &public_key]);
    let flags = (0..=u16::MAX)
        .filter(|candidate| candidate & !reserved_mask == 0)
        .map(|reserved| (flags & !reserved_mask) | reserved)
        .find(|candidate| fold(rest + u32::from(*candidate)) == target)?;
    let fields: Vec<&str> = key.public.split_whitespace().collect();
    let position = fields.iter().position(|field| *field == "DNSKEY")?;
    let mut changed: Vec<String> = fields.iter().map(|field| (*field).to_owned()).collect();
    changed[position + 1] = flags.to_string();
    let public = changed.join(" ");
    (key_tag(&public) == Some(target)).then(|| Key {
        private: key.private.clone(),
        public,
        tag: target,
    })
}

/// The sum of the big-endian 16-bit words of `parts` (each of even length but the last).
fn word_sum(parts: &[&[u8]]) -> u32 {
    parts
        .concat()
        .chunks(2)
        .map(|pair| (u32::from(pair[0]) << 8) | pair.get(1).map_or(0, |low| u32::from(*low)))
        .sum()
}

/// RFC 4034 appendix B: the carry folded once.
fn fold(sum: u32) -> u16 {
    u16::try_from((sum + ((sum >> 16) & 0xFFFF)) & 0xFFFF).unwrap_or(0)
}

/// The fields of a DNSKEY line (`owner [ttl] [class] DNSKEY flags protocol algorithm key`):
/// flags, protocol, algorithm and the decoded public key.
#[must_use]
pub fn dnskey_fields(dnskey_line: &str) -> Option<(u16, u8, u8, Vec<u8>)> {
    let line = strip_comment(dnskey_line);
    let fields: Vec<&str> = line
        .split_whitespace()
        .skip_while(|field| !field.eq_ignore_ascii_case("DNSKEY"))
        .skip(1)
        .collect();
    let flags: u16 = fields.first()?.parse().ok()?;
    let protocol: u8 = fields.get(1)?.parse().ok()?;
    let algorithm: u8 = fields.get(2)?.parse().ok()?;
    let key = base64::engine::general_purpose::STANDARD
        .decode(fields.get(3..)?.concat())
        .ok()?;
    Some((flags, protocol, algorithm, key))
}

/// The key tag (RFC 4034 appendix B) of a DNSKEY line.
#[must_use]
pub fn key_tag(dnskey_line: &str) -> Option<u16> {
    let (flags, protocol, algorithm, key) = dnskey_fields(dnskey_line)?;
    Some(fold(word_sum(&[
        &flags.to_be_bytes(),
        &[protocol, algorithm],
        &key,
    ])))
}

fn write_key(directory: &Path, base: &str, key: &Key) -> PathBuf {
    let path = directory.join(base);
    write(&directory.join(format!("{base}.private")), &key.private);
    write(
        &directory.join(format!("{base}.key")),
        &format!("{}\n", key.public),
    );
    path
}

/// `ldns-key2ds -n -f -2` of the key at `base` (`base.key`).
fn ds_of(directory: &Path, base: &Path) -> String {
    let mut command = Command::new(tools::require_ldns("ldns-key2ds"));
    command
        .current_dir(directory)
        .args(["-n", "-f", "-2"])
        .arg(base.with_extension("key"));
    let output = run(&mut command);
    output
        .lines()
        .find(|line| line.split_whitespace().any(|field| field == "DS"))
        .map(|line| line.trim().to_owned())
        .unwrap_or_else(|| panic!("ldns-key2ds printed no DS: {output}"))
}

/// One record line of a signed zone file (ldns prints one per line, absolute owners).
struct RecordLine<'a> {
    owner: &'a str,
    kind: String,
    fields: Vec<&'a str>,
}

impl RecordLine<'_> {
    fn parse(line: &str) -> Option<RecordLine<'_>> {
        let fields: Vec<&str> = line.split_whitespace().collect();
        if line.starts_with([';', '$']) || fields.len() < 4 {
            return None;
        }
        // owner ttl class type rdata…
        Some(RecordLine {
            owner: fields[0],
            kind: fields[3].to_ascii_uppercase(),
            fields,
        })
    }

    /// The type an RRSIG covers.
    fn covered(&self) -> Option<&str> {
        (self.kind == "RRSIG").then(|| self.fields.get(4).copied())?
    }
}

fn filter_records(text: &str, mut keep: impl FnMut(&RecordLine<'_>) -> bool) -> String {
    let mut out = String::new();
    for line in text.lines() {
        if RecordLine::parse(line).is_none_or(|record| keep(&record)) {
            out.push_str(line);
            out.push('\n');
        }
    }
    out
}

/// `text` (a signed zone file of `zone`) with wrong signatures on the RRsets owned by
/// `names` (relative to the zone): a tampered copy for one of the zone's servers.
#[must_use]
pub fn tamper(text: &str, zone: &str, names: &[String]) -> String {
    let owners: Vec<String> = names.iter().map(|name| absolute_in(name, zone)).collect();
    corrupt_signatures(text, &owners)
}

/// Replaces the signature of every RRSIG owned by one of `owners` with another valid-looking
/// but wrong one (its bytes reversed).
fn corrupt_signatures(text: &str, owners: &[String]) -> String {
    let mut out = String::new();
    for line in text.lines() {
        let corrupted = RecordLine::parse(line).and_then(|record| {
            if record.kind != "RRSIG"
                || !owners.iter().any(|o| o.eq_ignore_ascii_case(record.owner))
            {
                return None;
            }
            // owner ttl class RRSIG covered alg labels ttl exp inc tag signer signature…
            let signature = record.fields.get(12..)?.concat();
            let mut bytes = base64::engine::general_purpose::STANDARD
                .decode(signature)
                .ok()?;
            bytes.reverse();
            let mut changed: Vec<String> = record.fields[..12]
                .iter()
                .map(|f| (*f).to_owned())
                .collect();
            changed.push(base64::engine::general_purpose::STANDARD.encode(bytes));
            Some(changed.join("\t"))
        });
        out.push_str(corrupted.as_deref().unwrap_or(line));
        out.push('\n');
    }
    out
}

fn strip_comment(line: &str) -> String {
    line.lines()
        .find(|l| !l.trim().is_empty() && !l.trim_start().starts_with(';'))
        .unwrap_or_default()
        .split(';')
        .next()
        .unwrap_or_default()
        .trim()
        .to_owned()
}

fn absolute_in(name: &str, zone: &str) -> String {
    if name.ends_with('.') {
        name.to_ascii_lowercase()
    } else if name == "@" {
        zone.to_owned()
    } else if zone == "." {
        format!("{name}.")
    } else {
        format!("{name}.{zone}")
    }
}

fn unix_now() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |elapsed| i64::try_from(elapsed.as_secs()).unwrap_or(0))
}

fn run(command: &mut Command) -> String {
    let output = command
        .output()
        .unwrap_or_else(|error| panic!("cannot run {command:?}: {error}"));
    let stdout = String::from_utf8_lossy(&output.stdout).into_owned();
    assert!(
        output.status.success(),
        "{command:?} failed ({}):\n{stdout}{}",
        output.status,
        String::from_utf8_lossy(&output.stderr)
    );
    stdout
}

fn write(path: &Path, text: &str) {
    fs::write(path, text)
        .unwrap_or_else(|error| panic!("cannot write {}: {error}", path.display()));
}

fn read(path: &Path) -> String {
    fs::read_to_string(path)
        .unwrap_or_else(|error| panic!("cannot read {}: {error}", path.display()))
}

/// Writes the trust anchor files of a signed root: DS lines and the root's DNSKEY lines.
pub(crate) fn write_trust_anchors(directory: &Path, root: &SignedZone) -> (PathBuf, PathBuf) {
    let ds = directory.join("root-anchor.ds");
    let dnskey = directory.join("root-anchor.dnskey");
    let mut text = String::new();
    for line in &root.ds {
        let _ = writeln!(text, "{line}");
    }
    write(&ds, &text);
    let mut text = String::new();
    let secure_entry_points = root
        .dnskeys
        .iter()
        .filter(|line| dnskey_fields(line).is_some_and(|(flags, ..)| flags & 1 == 1));
    for line in secure_entry_points {
        let _ = writeln!(text, "{line}");
    }
    write(&dnskey, &text);
    (ds, dnskey)
}
