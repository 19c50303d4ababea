//! Mirror candidates (issue #14 item 3): names juris resolved that are under no order but share
//! something with a blocked target, for a person to review. Never enforced automatically.
//!
//! Pure: the binary feeds [`Miner::observe`] from a bounded channel filled on the resolver's
//! miss path (dropped when full), and gives [`Miner::candidates`] the name targets of the
//! orders in force with what it learnt about each ([`Reference`]). No client address is ever
//! seen here: an [`Observation`] is a name and what its answer held.
//!
//! Signals, per order whose target the candidate resembles:
//! - `similar_name`: the registrable label (the label left of the public suffix) is the same
//!   under another suffix, or the same once hyphens are removed, or one contains the other with
//!   a few characters more, or they are one edit apart ([`similar_label`], tuned on
//!   `tests/data/mirror-rotations.txt`);
//! - `same_name_servers`: the same non-empty set of NS names (none of them protected);
//! - `same_address`: a shared A/AAAA address outside the protected list (CDN and shared hosting
//!   ranges). It never makes a candidate on its own, it only corroborates;
//! - `cname_into_blocked`: a CNAME/DNAME target at or below the blocked target.

use std::collections::{BTreeSet, HashMap};
use std::net::IpAddr;

use serde::{Deserialize, Serialize};

use crate::safeguards::{is_at_or_below, ProtectedList};

/// `[candidates]` in the configuration.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct CandidatesConfig {
    /// Mine the names the resolver resolves for mirror candidates. Default true.
    pub enabled: bool,
    /// Registrable domains remembered at most (the least recently seen goes first). Default
    /// 20000.
    pub max_domains: usize,
    /// Resolved names waiting for the miner at most; more are dropped (counted). Default 4096.
    pub queue: usize,
    /// Seconds between two rounds of looking up the blocked targets' name servers and
    /// addresses (through the resolver). Default 300.
    pub profile_interval: u64,
    /// Blocked targets looked up per round at most. Default 64.
    pub profiles_per_round: usize,
    /// Name targets compared at most (the first ones by order id): a listing compares every
    /// remembered domain with each. Default 10000.
    pub max_targets: usize,
}

impl Default for CandidatesConfig {
    fn default() -> Self {
        Self {
            enabled: true,
            max_domains: 20_000,
            queue: 4096,
            profile_interval: 300,
            profiles_per_round: 64,
            max_targets: 10_000,
        }
    }
}

impl CandidatesConfig {
    /// Checks the ranges; the error names the key.
    pub fn validate(&self) -> Result<(), (&'static str, &'static str)> {
        if self.max_domains == 0 || self.max_domains > 10_000_000 {
            return Err(("candidates.max_domains", "must be 1..=10000000"));
        }
        if self.queue == 0 || self.queue > 1_000_000 {
            return Err(("candidates.queue", "must be 1..=1000000"));
        }
        if self.profile_interval == 0 {
            return Err(("candidates.profile_interval", "must be at least 1 second"));
        }
        if self.profiles_per_round == 0 {
            return Err(("candidates.profiles_per_round", "must be at least 1"));
        }
        if self.max_targets == 0 || self.max_targets > 1_000_000 {
            return Err(("candidates.max_targets", "must be 1..=1000000"));
        }
        Ok(())
    }
}

/// One resolved name: what its answer held. Names are lower-case, without the trailing dot.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Observation {
    /// The query name.
    pub name: String,
    /// CNAME/DNAME targets of the answer.
    pub cname_targets: Vec<String>,
    /// A/AAAA addresses of the answer.
    pub addresses: Vec<IpAddr>,
    /// NS names of the zone that answered.
    pub name_servers: Vec<String>,
    /// When (Unix seconds).
    pub at: i64,
    /// Names of the same registrable domain resolved since the last observation of it and not
    /// observed (held back by the miss path's seen-filter): added to its count.
    pub repeats: u64,
}

/// A name target of an order in force, with its name servers and addresses when looked up.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Reference {
    /// The order.
    pub order: String,
    /// The target name (lower-case, no trailing dot).
    pub name: String,
    /// NS names of its zone (empty: not looked up yet).
    pub name_servers: Vec<String>,
    /// Its addresses (empty: not looked up yet).
    pub addresses: Vec<IpAddr>,
}

const MAX_EXAMPLES: usize = 4;
const MAX_ADDRESSES: usize = 16;
const MAX_SERVERS: usize = 8;

#[derive(Debug, Clone)]
struct Seen {
    count: u64,
    first_seen: i64,
    last_seen: i64,
    names: BTreeSet<String>,
    name_servers: BTreeSet<String>,
    addresses: BTreeSet<IpAddr>,
    cname_targets: BTreeSet<String>,
}

/// The names seen, by registrable domain, bounded.
#[derive(Debug)]
pub struct Miner {
    max_domains: usize,
    seen: HashMap<String, Seen>,
    evicted: u64,
}

/// One signal that fired.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SignalView {
    /// `similar_name`, `same_name_servers`, `same_address`, `cname_into_blocked`.
    pub signal: String,
    /// What matched, e.g. `kickasstorrents2 ~ kickasstorrents (contains)`.
    pub detail: String,
}

/// The signals that fired for one order.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CandidateMatch {
    /// The order.
    pub order: String,
    /// Its target the candidate resembles.
    pub target: String,
    /// What fired (at least one that is not `same_address`).
    pub signals: Vec<SignalView>,
}

/// A registrable domain under no order that resembles blocked targets.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CandidateView {
    /// The registrable domain, e.g. `kickasstorrents2.to`.
    pub name: String,
    /// Resolutions seen of names at or below it.
    pub count: u64,
    /// First and last seen (RFC 3339).
    pub first_seen: String,
    /// Last seen (RFC 3339).
    pub last_seen: String,
    /// Some of the names resolved (at most 4).
    pub names: Vec<String>,
    /// Per order, the signals that fired.
    pub matches: Vec<CandidateMatch>,
}

/// `GET /v1/candidates`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct CandidateList {
    /// Whether mining is on (`candidates.enabled`).
    pub enabled: bool,
    /// Registrable domains remembered now.
    pub domains: usize,
    /// Resolved names dropped because the miner's queue was full.
    pub dropped: u64,
    /// Domains forgotten to stay within `candidates.max_domains`.
    pub evicted: u64,
    /// Resolved names only counted, not mined: another name of their registrable domain had
    /// been mined in the same 10-second window (design 0042).
    #[serde(default)]
    pub held_back: u64,
    /// The candidates, dismissed ones left out.
    pub candidates: Vec<CandidateView>,
}

/// `POST /v1/candidates/{name}/accept` and `/dismiss` body.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CandidateDecision {
    /// The order the candidate is accepted for or dismissed from.
    pub order: String,
    /// Accept only: the extension order to add it to (default: an active extension of
    /// `order` in the store, else a new one, `<order>-ext`).
    #[serde(default)]
    pub extension: Option<String>,
    /// Why (recorded in the audit log).
    #[serde(default)]
    pub reason: String,
}

/// What an accept or a dismissal did.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CandidateOutcome {
    /// The candidate.
    pub name: String,
    /// The order.
    pub order: String,
    /// `accepted` or `dismissed`.
    pub decision: String,
    /// Accept: the extension the target went to.
    #[serde(default)]
    pub extension: Option<String>,
    /// Accept: the extension's state (a new extension under the four-eyes rule waits in
    /// `shadow` for another approver).
    #[serde(default)]
    pub extension_state: Option<String>,
    /// Accept: the target is held for review (protected list) instead of enforced.
    #[serde(default)]
    pub held: bool,
    /// The audit entry.
    pub audit_seq: i64,
}

/// The registrable domain of `name` and its label left of the public suffix:
/// `www.kickasstorrents2.to` → (`kickasstorrents2.to`, `kickasstorrents2`). `None` for a
/// public suffix itself or a name the list does not know.
pub fn registrable(name: &str) -> Option<(&str, &str)> {
    let name = name.strip_suffix('.').unwrap_or(name);
    let domain = psl::domain_str(name)?;
    let suffix = psl::suffix_str(domain)?;
    let label = domain.strip_suffix(suffix)?.strip_suffix('.')?;
    (!label.is_empty() && !label.contains('.')).then_some((domain, label))
}

/// A hash of the registrable domain of `wire` (a name in wire form), computed without
/// allocating or copying: the key of the miss path's seen-filter (design 0042). The same
/// domain as [`registrable`] for ordinary names; `None` for a name without one, or with a
/// label holding a dot or a byte that is not printable ASCII (such names are never filtered).
///
/// The Public Suffix List is asked with the wire name's own labels (right to left), and the
/// hash covers the registrable domain's wire bytes, a suffix of `wire` (design 0047: no copy
/// into dotted text). The miss path's names are lower-case already; a name with an upper-case
/// byte is lower-cased into a stack copy first, so both spellings give the same key.
pub fn registrable_key(wire: &[u8], hasher: &impl std::hash::BuildHasher) -> Option<u64> {
    use psl::Psl;
    // Where each label starts (a name of at most 255 bytes has at most 127 labels).
    let mut starts = [0u8; 128];
    let mut count = 0;
    let mut at = 0;
    let mut upper = false;
    loop {
        let size = usize::from(*wire.get(at)?);
        if size == 0 {
            break;
        }
        let label = wire.get(at + 1..at + 1 + size)?;
        if count == starts.len() || at + 1 + size >= 255 {
            return None;
        }
        for &byte in label {
            if byte == b'.' || !byte.is_ascii_graphic() {
                return None;
            }
            upper |= byte.is_ascii_uppercase();
        }
        starts[count] = at as u8;
        count += 1;
        at += 1 + size;
    }
    if upper {
        let mut lower = [0u8; 256];
        let name = lower.get_mut(..=at)?;
        name.copy_from_slice(wire.get(..=at)?);
        // Length bytes are at most 63, below b'A': lower-casing leaves them alone.
        name.make_ascii_lowercase();
        return registrable_key(name, hasher);
    }
    let starts = &starts[..count];
    let label = |i: usize| {
        let start = usize::from(starts[i]);
        &wire[start + 1..start + 1 + usize::from(wire[start])]
    };
    // The public suffix's length in dotted form, then the labels it covers.
    let suffix = psl::List.find((0..count).rev().map(label)).len;
    let (mut dotted, mut labels) = (0, 0);
    while dotted < suffix && labels < count {
        dotted += label(count - 1 - labels).len() + usize::from(labels > 0);
        labels += 1;
    }
    if suffix == 0 || dotted != suffix || labels >= count {
        return None;
    }
    // The registrable domain: the suffix and one more label.
    let domain = usize::from(starts[count - 1 - labels]);
    Some(hasher.hash_one(&wire[domain..=at]))
}

/// The seen-filter's keys ([`registrable_key`]) with a per-process random seed, so names
/// cannot be crafted to hide a domain behind another's slot: the same seeded hash family
/// (foldhash) as the answer cache, whose keys clients choose outright (design 0047; it was
/// SipHash).
#[derive(Debug, Clone, Default)]
pub struct DomainKeys(foldhash::fast::RandomState);

impl DomainKeys {
    /// Keys with a fresh random seed.
    pub fn new() -> Self {
        Self::default()
    }

    /// The key of `wire`'s registrable domain; `None` as [`registrable_key`].
    pub fn key(&self, wire: &[u8]) -> Option<u64> {
        registrable_key(wire, &self.0)
    }
}

/// Whether two registrable labels look like one site's (a mirror's) and how. Tuned on
/// `tests/data/mirror-rotations.txt`: same label; same without hyphens; one contained in the
/// other (the shorter at least 5 characters, at most 6 more); one edit apart (both at least 7).
pub fn similar_label(a: &str, b: &str) -> Option<&'static str> {
    if a == b {
        return (a.len() >= 3).then_some("same label");
    }
    // Every rule below needs the lengths without hyphens within 6 of each other: most pairs
    // of a listing stop here, without allocating.
    let bare = |label: &str| label.bytes().filter(|c| *c != b'-').count();
    if bare(a).abs_diff(bare(b)) > 6 {
        return None;
    }
    let na: String = a.chars().filter(|c| *c != '-').collect();
    let nb: String = b.chars().filter(|c| *c != '-').collect();
    if na == nb {
        return (na.len() >= 4).then_some("same label without hyphens");
    }
    let (short, long) = if na.len() <= nb.len() {
        (&na, &nb)
    } else {
        (&nb, &na)
    };
    if short.len() >= 5 && long.len() - short.len() <= 6 && long.contains(short.as_str()) {
        return Some("contains");
    }
    if short.len() >= 7 && edit_distance_at_most_one(short.as_bytes(), long.as_bytes()) {
        return Some("one edit apart");
    }
    None
}

/// Levenshtein distance ≤ 1, or one transposition of neighbours.
fn edit_distance_at_most_one(a: &[u8], b: &[u8]) -> bool {
    let (short, long) = if a.len() <= b.len() { (a, b) } else { (b, a) };
    if long.len() - short.len() > 1 {
        return false;
    }
    let prefix = short.iter().zip(long).take_while(|(x, y)| x == y).count();
    if short.len() == long.len() {
        let rest = prefix + 1;
        // One substitution, or a swap of neighbours.
        short.get(rest..) == long.get(rest..)
            || (rest < short.len()
                && short[prefix] == long[rest]
                && short[rest] == long[prefix]
                && short.get(rest + 1..) == long.get(rest + 1..))
    } else {
        // One insertion into `short`.
        short.get(prefix..) == long.get(prefix + 1..)
    }
}

impl Miner {
    /// A miner remembering at most `max_domains` registrable domains.
    pub fn new(max_domains: usize) -> Self {
        Self {
            max_domains: max_domains.max(1),
            seen: HashMap::new(),
            evicted: 0,
        }
    }

    /// Domains remembered.
    pub fn len(&self) -> usize {
        self.seen.len()
    }

    /// Whether nothing is remembered.
    pub fn is_empty(&self) -> bool {
        self.seen.is_empty()
    }

    /// Domains forgotten so far to stay within the bound.
    pub fn evicted(&self) -> u64 {
        self.evicted
    }

    /// Remembers one resolved name (names without a registrable domain are ignored).
    pub fn observe(&mut self, observation: Observation) {
        let name = observation.name.to_ascii_lowercase();
        let Some((domain, _)) = registrable(&name) else {
            return;
        };
        if !self.seen.contains_key(domain) {
            if self.seen.len() >= self.max_domains {
                self.evict();
            }
            self.seen.insert(
                domain.to_owned(),
                Seen {
                    count: 0,
                    first_seen: observation.at,
                    last_seen: observation.at,
                    names: BTreeSet::new(),
                    name_servers: BTreeSet::new(),
                    addresses: BTreeSet::new(),
                    cname_targets: BTreeSet::new(),
                },
            );
        }
        let Some(seen) = self.seen.get_mut(domain) else {
            return;
        };
        seen.count += 1 + observation.repeats;
        seen.first_seen = seen.first_seen.min(observation.at);
        seen.last_seen = seen.last_seen.max(observation.at);
        add_bounded(&mut seen.names, name, MAX_EXAMPLES);
        if !observation.name_servers.is_empty() {
            // The latest delegation wins: a set, not a history.
            seen.name_servers = observation
                .name_servers
                .into_iter()
                .map(|n| n.to_ascii_lowercase())
                .take(MAX_SERVERS)
                .collect();
        }
        for address in observation.addresses {
            add_bounded(&mut seen.addresses, address, MAX_ADDRESSES);
        }
        for target in observation.cname_targets {
            add_bounded(
                &mut seen.cname_targets,
                target.to_ascii_lowercase(),
                MAX_EXAMPLES,
            );
        }
    }

    /// Forgets the least recently seen of a sample (a full scan would make one observation
    /// cost the whole table).
    fn evict(&mut self) {
        let oldest = self
            .seen
            .iter()
            .take(64)
            .min_by_key(|(_, seen)| seen.last_seen)
            .map(|(domain, _)| domain.clone());
        if let Some(domain) = oldest {
            self.seen.remove(&domain);
            self.evicted += 1;
        }
    }

    /// The candidates among the domains seen, against `references` (the name targets of the
    /// orders in force); addresses and name servers on `protected` say nothing. Sorted by
    /// name. A domain at or below a reference (already under an order) is never a candidate.
    pub fn candidates(
        &self,
        references: &[Reference],
        protected: &ProtectedList,
    ) -> Vec<CandidateView> {
        let labelled: Vec<(&Reference, Option<(&str, &str)>)> = references
            .iter()
            .map(|r| (r, registrable(&r.name)))
            .collect();
        let mut out = Vec::new();
        for (domain, seen) in &self.seen {
            let covered = references.iter().any(|r| {
                is_at_or_below(domain, &r.name)
                    || seen.names.iter().any(|n| is_at_or_below(n, &r.name))
            });
            if covered {
                continue;
            }
            let Some((_, label)) = registrable(domain) else {
                continue;
            };
            let mut matches: Vec<CandidateMatch> = Vec::new();
            for (reference, registered) in &labelled {
                let signals = signals(seen, label, reference, *registered, protected);
                // An address alone never makes a candidate.
                if signals.iter().all(|s| s.signal == "same_address") {
                    continue;
                }
                match matches.iter_mut().find(|m| m.order == reference.order) {
                    Some(existing) if existing.signals.len() >= signals.len() => {}
                    Some(existing) => {
                        existing.target = reference.name.clone();
                        existing.signals = signals;
                    }
                    None => matches.push(CandidateMatch {
                        order: reference.order.clone(),
                        target: reference.name.clone(),
                        signals,
                    }),
                }
            }
            if matches.is_empty() {
                continue;
            }
            matches.sort_by(|a, b| a.order.cmp(&b.order));
            out.push(CandidateView {
                name: domain.clone(),
                count: seen.count,
                first_seen: rfc3339(seen.first_seen),
                last_seen: rfc3339(seen.last_seen),
                names: seen.names.iter().cloned().collect(),
                matches,
            });
        }
        out.sort_by(|a, b| a.name.cmp(&b.name));
        out
    }
}

fn signals(
    seen: &Seen,
    label: &str,
    reference: &Reference,
    registered: Option<(&str, &str)>,
    protected: &ProtectedList,
) -> Vec<SignalView> {
    let mut signals = Vec::new();
    if let Some((_, reference_label)) = registered {
        if let Some(how) = similar_label(label, reference_label) {
            signals.push(SignalView {
                signal: "similar_name".into(),
                detail: format!("{label} ~ {reference_label} ({how})"),
            });
        }
    }
    if !reference.name_servers.is_empty() && !seen.name_servers.is_empty() {
        let theirs: BTreeSet<String> = reference
            .name_servers
            .iter()
            .map(|n| n.to_ascii_lowercase())
            .collect();
        if theirs == seen.name_servers && !theirs.iter().any(|n| protected.covers_name(n)) {
            signals.push(SignalView {
                signal: "same_name_servers".into(),
                detail: theirs.into_iter().collect::<Vec<_>>().join(" "),
            });
        }
    }
    let shared: Vec<String> = reference
        .addresses
        .iter()
        .filter(|a| seen.addresses.contains(a) && !protected.covers_address(**a))
        .map(ToString::to_string)
        .collect();
    if !shared.is_empty() {
        signals.push(SignalView {
            signal: "same_address".into(),
            detail: shared.join(" "),
        });
    }
    if let Some(target) = seen
        .cname_targets
        .iter()
        .find(|t| is_at_or_below(t, &reference.name))
    {
        signals.push(SignalView {
            signal: "cname_into_blocked".into(),
            detail: target.clone(),
        });
    }
    signals
}

fn add_bounded<T: Ord>(set: &mut BTreeSet<T>, value: T, max: usize) {
    if set.len() < max || set.contains(&value) {
        set.insert(value);
    }
}

fn rfc3339(seconds: i64) -> String {
    jiff::Timestamp::from_second(seconds)
        .map(|t| t.to_string())
        .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    const ROTATIONS: &str = include_str!("../tests/data/mirror-rotations.txt");

    fn pairs(section: &str) -> Vec<(&'static str, &'static str)> {
        let mut in_section = false;
        let mut out = Vec::new();
        for line in ROTATIONS.lines() {
            let line = line.trim();
            if let Some(name) = line.strip_prefix("[").and_then(|l| l.strip_suffix("]")) {
                in_section = name == section;
                continue;
            }
            if !in_section || line.is_empty() || line.starts_with('#') {
                continue;
            }
            let mut words = line.split_whitespace();
            out.push((words.next().unwrap(), words.next().unwrap()));
        }
        out
    }

    fn label(name: &str) -> &str {
        registrable(name).unwrap_or_else(|| panic!("{name}")).1
    }

    #[test]
    fn the_real_rotations_are_similar() {
        let rotations = pairs("rotations");
        assert!(rotations.len() >= 20, "{}", rotations.len());
        for (from, to) in rotations {
            assert!(
                similar_label(label(from), label(to)).is_some(),
                "{from} → {to} not flagged"
            );
        }
    }

    #[test]
    fn unrelated_names_are_not_similar() {
        let unrelated = pairs("unrelated");
        assert!(unrelated.len() >= 10);
        for (a, b) in unrelated {
            assert!(
                similar_label(label(a), label(b)).is_none(),
                "{a} and {b} flagged: {:?}",
                similar_label(label(a), label(b))
            );
        }
    }

    #[test]
    fn the_missed_rotations_stay_documented() {
        for (from, to) in pairs("missed") {
            assert!(
                similar_label(label(from), label(to)).is_none(),
                "{from} → {to} is caught now: move it to [rotations]"
            );
        }
    }

    #[test]
    fn registrable_labels_follow_the_public_suffix_list() {
        assert_eq!(
            registrable("www.kickasstorrents2.to"),
            Some(("kickasstorrents2.to", "kickasstorrents2"))
        );
        assert_eq!(
            registrable("a.b.example.co.uk."),
            Some(("example.co.uk", "example"))
        );
        assert_eq!(registrable("co.uk"), None);
    }

    #[test]
    fn the_filter_key_is_the_registrable_domain_of_the_wire_name() {
        let state = std::collections::hash_map::RandomState::new();
        let key = |name: &str| registrable_key(&juris_policy::name_to_wire(name).unwrap(), &state);
        let domain = key("kickasstorrents2.to").unwrap();
        assert_eq!(key("www.KickassTorrents2.to"), Some(domain));
        assert_eq!(key("a.b.kickasstorrents2.to."), Some(domain));
        assert_ne!(key("kickasstorrents.to"), Some(domain));
        assert_eq!(key("x.example.co.uk"), key("example.co.uk"));
        assert_ne!(key("example.co.uk"), key("other.co.uk"));
        // No registrable domain, or names the filter leaves alone.
        assert_eq!(key("co.uk"), None);
        assert_eq!(key("."), None);
        assert_eq!(registrable_key(b"\x03a.b\x02to\x00", &state), None);
        assert_eq!(registrable_key(b"\x05short", &state), None);
        assert_eq!(registrable_key(&[], &state), None);
    }

    #[test]
    fn the_filter_key_hashes_the_wire_form_of_the_public_suffix_lists_registrable_domain() {
        use std::hash::BuildHasher;
        let keys = DomainKeys::new();
        let state = foldhash::fast::RandomState::default();
        for name in [
            "www.example.com",
            "a.b.c.example.co.uk",
            "example.co.uk",
            "x.y.city.kawasaki.jp",
            "www.city.kawasaki.jp",
            "h1.zone7.com",
            "deep.er.name.on.an.unknown.tld-that-is-not-listed",
            "s3.amazonaws.com",
            "bucket.s3.amazonaws.com",
            "a.blogspot.com",
        ] {
            let wire = juris_policy::name_to_wire(name).unwrap();
            let expected = psl::domain_str(name)
                .map(|domain| state.hash_one(&juris_policy::name_to_wire(domain).unwrap()[..]));
            assert_eq!(registrable_key(&wire, &state), expected, "{name}");
            // Upper case: the same key.
            let shouted = wire.to_ascii_uppercase();
            assert_ne!(shouted, wire);
            assert_eq!(keys.key(&shouted), keys.key(&wire), "{name} in upper case");
        }
    }

    #[test]
    fn held_back_names_count_for_their_domain() {
        let mut miner = Miner::new(10);
        miner.observe(observed("a.kickasstorrents2.to", &[], &[], &[]));
        miner.observe(Observation {
            repeats: 41,
            ..observed("b.kickasstorrents2.to", &[], &[], &[])
        });
        assert_eq!(miner.seen["kickasstorrents2.to"].count, 43);
    }

    fn observed(name: &str, addresses: &[&str], servers: &[&str], cnames: &[&str]) -> Observation {
        Observation {
            name: name.into(),
            cname_targets: cnames.iter().map(|s| s.to_string()).collect(),
            addresses: addresses.iter().map(|a| a.parse().unwrap()).collect(),
            name_servers: servers.iter().map(|s| s.to_string()).collect(),
            at: 1_700_000_000,
            repeats: 0,
        }
    }

    fn milan() -> Vec<Reference> {
        vec![Reference {
            order: "IT-MI".into(),
            name: "kickasstorrents.to".into(),
            name_servers: vec!["ns1.kat-dns.net".into(), "ns2.kat-dns.net".into()],
            addresses: vec![
                "198.51.100.7".parse().unwrap(),
                "104.16.0.1".parse().unwrap(),
            ],
        }]
    }

    fn protected() -> ProtectedList {
        ProtectedList::defaults()
    }

    fn signal_names(candidate: &CandidateView) -> Vec<&str> {
        candidate.matches[0]
            .signals
            .iter()
            .map(|s| s.signal.as_str())
            .collect()
    }

    #[test]
    fn each_signal_fires_for_its_order() {
        let mut miner = Miner::new(100);
        miner.observe(observed(
            "www.kickasstorrents2.to",
            &["198.51.100.7"],
            &[],
            &[],
        ));
        miner.observe(observed(
            "files.elsewhere.example",
            &[],
            &["ns2.kat-dns.net", "NS1.kat-dns.net"],
            &[],
        ));
        miner.observe(observed(
            "go.shortener.example",
            &[],
            &[],
            &["cdn.kickasstorrents.to"],
        ));
        let list = miner.candidates(&milan(), &protected());
        let names: Vec<&str> = list.iter().map(|c| c.name.as_str()).collect();
        assert_eq!(
            names,
            [
                "elsewhere.example",
                "kickasstorrents2.to",
                "shortener.example"
            ]
        );
        assert_eq!(signal_names(&list[0]), ["same_name_servers"]);
        assert_eq!(signal_names(&list[1]), ["similar_name", "same_address"]);
        assert_eq!(signal_names(&list[2]), ["cname_into_blocked"]);
        assert_eq!(list[1].matches[0].order, "IT-MI");
        assert_eq!(list[1].names, ["www.kickasstorrents2.to"]);
    }

    #[test]
    fn a_shared_address_alone_is_never_a_candidate() {
        let mut miner = Miner::new(100);
        // Outside any protected range, but nothing else in common.
        miner.observe(observed("innocent.example", &["198.51.100.7"], &[], &[]));
        // Inside a CDN range (protected): not even corroboration.
        miner.observe(observed("kickasstorrents.cc", &["104.16.0.1"], &[], &[]));
        let list = miner.candidates(&milan(), &protected());
        assert_eq!(list.len(), 1, "{list:?}");
        assert_eq!(list[0].name, "kickasstorrents.cc");
        assert_eq!(signal_names(&list[0]), ["similar_name"]);
    }

    #[test]
    fn names_under_an_order_are_not_candidates_and_memory_is_bounded() {
        let mut miner = Miner::new(2);
        miner.observe(observed("www.kickasstorrents.to", &[], &[], &[]));
        assert!(miner.candidates(&milan(), &protected()).is_empty());
        for (i, name) in ["a1.example", "b2.example", "c3.example"]
            .iter()
            .enumerate()
        {
            let mut o = observed(name, &[], &[], &[]);
            o.at += i as i64;
            miner.observe(o);
        }
        assert_eq!(miner.len(), 2);
        assert_eq!(miner.evicted(), 2);
    }

    #[test]
    fn one_edit_apart_needs_seven_characters() {
        assert_eq!(
            similar_label("extratorrent", "extratorrnet"),
            Some("one edit apart")
        );
        assert_eq!(similar_label("rarbgx", "rarbgz"), None);
        assert!(edit_distance_at_most_one(b"abcdefg", b"abcdef"));
        assert!(!edit_distance_at_most_one(b"abcdefg", b"abcdxyg"));
    }
}
