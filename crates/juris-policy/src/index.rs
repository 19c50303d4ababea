//! The two lookup structures: names (an `fst` over reversed-label keys) and address prefixes.

use std::collections::HashMap;
use std::net::IpAddr;

use fst::raw::Output;
use ipnet::IpNet;

use crate::name::SEPARATOR;

/// A rule: which order, and whether the target is a subtree. `order_index << 1 | subtree`.
pub(crate) type Rule = u32;

pub(crate) fn rule(order_index: u32, subtree: bool) -> Rule {
    order_index << 1 | u32::from(subtree)
}

pub(crate) fn rule_order(rule: Rule) -> usize {
    (rule >> 1) as usize
}

pub(crate) fn rule_is_subtree(rule: Rule) -> bool {
    rule & 1 == 1
}

/// Hashes a name label by label from the top, eight bytes at a time, lower-casing ASCII on the
/// way; after each label, [`finish`](Self::finish) gives the hash of the key of the name made of
/// the labels so far (the value the Bloom filters hold).
#[derive(Clone, Copy)]
pub(crate) struct KeyHasher(u64);

const K: u64 = 0x9e37_79b9_7f4a_7c15;

impl KeyHasher {
    #[inline]
    pub(crate) fn new() -> KeyHasher {
        KeyHasher(0x243f_6a88_85a3_08d3)
    }

    /// Adds one label (without its length byte or separator).
    #[inline]
    pub(crate) fn label(&mut self, label: &[u8]) {
        let mut h = self.0;
        let mut chunks = label.chunks_exact(8);
        for chunk in &mut chunks {
            let mut word = [0u8; 8];
            word.copy_from_slice(chunk);
            h = (h.rotate_left(29) ^ lower(u64::from_le_bytes(word))).wrapping_mul(K);
        }
        let rest = chunks.remainder();
        if !rest.is_empty() {
            let mut word = [0u8; 8];
            word[..rest.len()].copy_from_slice(rest);
            h = (h.rotate_left(29) ^ lower(u64::from_le_bytes(word))).wrapping_mul(K);
        }
        // The length ends the label, so that zero padding cannot be confused with content.
        self.0 = (h.rotate_left(29) ^ (0x100 | label.len() as u64)).wrapping_mul(K);
    }

    /// The hash of the labels so far.
    #[inline]
    pub(crate) fn finish(self) -> u64 {
        let mut h = self.0;
        h ^= h >> 33;
        h = h.wrapping_mul(0xff51_afd7_ed55_8ccd);
        h ^= h >> 33;
        h = h.wrapping_mul(0xc4ce_b9fe_1a85_ec53);
        h ^ (h >> 33)
    }

    /// The hash of a whole index key.
    pub(crate) fn key(key: &[u8]) -> u64 {
        let mut hasher = KeyHasher::new();
        for label in key.split(|b| *b == SEPARATOR).filter(|l| !l.is_empty()) {
            hasher.label(label);
        }
        hasher.finish()
    }
}

/// ASCII upper case to lower case in eight bytes at once; other bytes unchanged.
#[inline]
fn lower(word: u64) -> u64 {
    const ONES: u64 = 0x0101_0101_0101_0101;
    let heptets = word & (0x7f * ONES);
    let at_least_a = heptets.wrapping_add((0x80 - u64::from(b'A')) * ONES);
    let above_z = heptets.wrapping_add((0x80 - u64::from(b'Z') - 1) * ONES);
    let upper = at_least_a & !above_z & !word & (0x80 * ONES);
    word | (upper >> 2)
}

/// A blocked Bloom filter over the keys of a [`NameIndex`]: one 512-bit block (a cache line) per
/// key, 6 bits set, 16 bits per key. It lets a name that matches nothing skip the `fst` walk:
/// about 1 probe in 500 is a false positive.
#[derive(Clone, Default)]
pub(crate) struct Bloom {
    blocks: Vec<[u64; 8]>,
}

const BLOOM_BITS_PER_KEY: usize = 16;
const BLOOM_PROBES: u32 = 6;

impl Bloom {
    fn with_keys(keys: usize) -> Bloom {
        let blocks = if keys == 0 {
            0
        } else {
            (keys * BLOOM_BITS_PER_KEY).div_ceil(512)
        };
        Bloom {
            blocks: vec![[0; 8]; blocks],
        }
    }

    #[inline]
    fn block(&self, hash: u64) -> usize {
        // Multiply-shift range reduction of the high 32 bits.
        (((hash >> 32) * self.blocks.len() as u64) >> 32) as usize
    }

    #[inline]
    fn bits(hash: u64) -> impl Iterator<Item = usize> {
        let mut h = hash.wrapping_mul(0x9e37_79b9_7f4a_7c15);
        (0..BLOOM_PROBES).map(move |_| {
            let bit = (h & 511) as usize;
            h >>= 9;
            bit
        })
    }

    fn insert(&mut self, hash: u64) {
        if self.blocks.is_empty() {
            return;
        }
        let index = self.block(hash);
        let block = &mut self.blocks[index];
        for bit in Bloom::bits(hash) {
            block[bit / 64] |= 1 << (bit % 64);
        }
    }

    #[inline]
    pub(crate) fn may_contain(&self, hash: u64) -> bool {
        if self.blocks.is_empty() {
            return false;
        }
        let block = &self.blocks[self.block(hash)];
        Bloom::bits(hash).all(|bit| block[bit / 64] & (1 << (bit % 64)) != 0)
    }

    fn memory_bytes(&self) -> usize {
        self.blocks.capacity() * 64
    }
}

/// Builds a [`NameIndex`] from keys in strictly increasing order.
pub(crate) struct NameIndexBuilder {
    builder: fst::MapBuilder<Vec<u8>>,
    multi: Vec<u32>,
    hashes: Vec<u64>,
    min_labels: usize,
}

impl NameIndexBuilder {
    /// `keys`: how many keys will be inserted (a hint for the allocation).
    pub(crate) fn new(keys: usize) -> NameIndexBuilder {
        NameIndexBuilder {
            builder: fst::MapBuilder::memory(),
            multi: Vec::new(),
            hashes: Vec::with_capacity(keys),
            min_labels: usize::MAX,
        }
    }

    /// Adds a key (greater than the previous one) with its sorted, unique, non-empty rules.
    pub(crate) fn insert(&mut self, key: &[u8], rules: &[Rule]) -> Result<(), fst::Error> {
        let value = match rules {
            [] => return Ok(()),
            [one] => u64::from(*one),
            many => {
                let offset = self.multi.len() as u64;
                // A key holds at most one rule per (order, kind): far below u32::MAX.
                self.multi.push(many.len() as u32);
                self.multi.extend_from_slice(many);
                MULTI | offset
            }
        };
        self.hashes.push(KeyHasher::key(key));
        let labels = key.iter().filter(|b| **b == SEPARATOR).count();
        self.min_labels = self.min_labels.min(labels);
        self.builder.insert(key, value)
    }

    pub(crate) fn finish(self) -> Result<NameIndex, fst::Error> {
        let mut multi = self.multi;
        multi.shrink_to_fit();
        let bytes = self.builder.into_inner()?;
        let mut bloom = Bloom::with_keys(self.hashes.len());
        for hash in self.hashes {
            bloom.insert(hash);
        }
        Ok(NameIndex {
            map: fst::Map::new(bytes)?,
            multi,
            bloom,
            min_labels: self.min_labels,
        })
    }
}

/// Marks an fst value that points into the side table instead of holding one rule.
const MULTI: u64 = 1 << 63;

/// Names → rules. Keys are reversed labels each ended by [`SEPARATOR`]; a value is either one
/// rule or (with [`MULTI`]) the offset in `multi` of `[count, rule, rule, ...]`.
pub(crate) struct NameIndex {
    map: fst::Map<Vec<u8>>,
    multi: Vec<u32>,
    bloom: Bloom,
    /// Fewest labels of any key: shorter prefixes of a name need no probe.
    min_labels: usize,
}

impl std::fmt::Debug for NameIndex {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("NameIndex")
            .field("names", &self.map.len())
            .field("bytes", &self.memory_bytes())
            .finish()
    }
}

impl NameIndex {
    pub(crate) fn empty() -> NameIndex {
        NameIndex {
            map: fst::Map::default(),
            multi: Vec::new(),
            bloom: Bloom::default(),
            min_labels: usize::MAX,
        }
    }

    pub(crate) fn len(&self) -> usize {
        self.map.len()
    }

    pub(crate) fn is_empty(&self) -> bool {
        self.map.is_empty()
    }

    pub(crate) fn memory_bytes(&self) -> usize {
        self.map.as_fst().as_bytes().len() + self.multi.capacity() * 4 + self.bloom.memory_bytes()
    }

    /// Whether the index may hold a key with this hash (Bloom filter: no false negatives).
    #[inline]
    pub(crate) fn may_contain_hash(&self, hash: u64) -> bool {
        self.bloom.may_contain(hash)
    }

    /// Whether any label-boundary prefix of `key` may be in the index (Bloom filter: no false
    /// negatives). One pass over the key, no allocation.
    #[cfg(test)]
    pub(crate) fn may_match(&self, key: &[u8]) -> bool {
        let mut hasher = KeyHasher::new();
        key.split(|b| *b == SEPARATOR)
            .filter(|l| !l.is_empty())
            .any(|label| {
                hasher.label(label);
                self.bloom.may_contain(hasher.finish())
            })
    }

    /// Fewest labels of any key (`usize::MAX` when empty).
    #[inline]
    pub(crate) fn min_labels(&self) -> usize {
        self.min_labels
    }

    fn rules(&self, value: u64) -> &[Rule] {
        if value & MULTI == 0 {
            return &[];
        }
        let offset = (value & !MULTI) as usize;
        let count = self.multi.get(offset).copied().unwrap_or(0) as usize;
        self.multi
            .get(offset + 1..offset + 1 + count)
            .unwrap_or(&[])
    }

    /// The rules stored for exactly `key`.
    pub(crate) fn get(&self, key: &[u8]) -> Vec<Rule> {
        match self.map.get(key) {
            Some(value) if value & MULTI == 0 => vec![value as Rule],
            Some(value) => self.rules(value).to_vec(),
            None => Vec::new(),
        }
    }

    /// Walks `key` once from the top label down and calls `visit(key_len, rule)` for every rule
    /// stored at a label boundary, i.e. for the name itself and each of its ancestors that the
    /// index holds. Stops as soon as no stored key continues the path. No allocation.
    #[inline]
    pub(crate) fn walk(&self, key: &[u8], mut visit: impl FnMut(usize, Rule)) {
        let fst = self.map.as_fst();
        let mut node = fst.root();
        let mut out = Output::zero();
        for (i, &byte) in key.iter().enumerate() {
            let Some(t) = node.find_input(byte) else {
                return;
            };
            let transition = node.transition(t);
            out = out.cat(transition.out);
            node = fst.node(transition.addr);
            if byte == SEPARATOR && node.is_final() {
                let value = out.cat(node.final_output()).value();
                if value & MULTI == 0 {
                    // Values without MULTI were built from one `u32` rule.
                    visit(i + 1, value as Rule);
                } else {
                    for rule in self.rules(value) {
                        visit(i + 1, *rule);
                    }
                }
            }
        }
    }

    /// Every key and its rules, in key order (for folding the overlay into a new base).
    pub(crate) fn for_each(&self, mut f: impl FnMut(&[u8], &[Rule])) {
        use fst::Streamer;
        let mut stream = self.map.stream();
        while let Some((key, value)) = stream.next() {
            if value & MULTI == 0 {
                f(key, &[value as Rule]);
            } else {
                f(key, self.rules(value));
            }
        }
    }
}

/// Address prefixes → rules: one hash lookup per prefix length in use.
#[derive(Debug, Clone, Default)]
pub(crate) struct AddressIndex {
    map: HashMap<PrefixKey, Vec<Rule>>,
    v4_lengths: Vec<u8>,
    v6_lengths: Vec<u8>,
}

/// (is IPv6, prefix length, network bits as u128).
type PrefixKey = (bool, u8, u128);

fn prefix_key(net: IpNet) -> PrefixKey {
    match net.trunc() {
        IpNet::V4(v4) => (false, v4.prefix_len(), u128::from(u32::from(v4.network()))),
        IpNet::V6(v6) => (true, v6.prefix_len(), u128::from(v6.network())),
    }
}

fn prefix_of(key: PrefixKey) -> IpNet {
    let (v6, len, bits) = key;
    let addr = if v6 {
        IpAddr::V6(bits.into())
    } else {
        // IPv4 keys were built from a u32.
        IpAddr::V4((bits as u32).into())
    };
    IpNet::new(addr, len).unwrap_or_else(|_| IpNet::from(addr))
}

impl AddressIndex {
    pub(crate) fn insert(&mut self, net: IpNet, rule: Rule) {
        let rules = self.map.entry(prefix_key(net)).or_default();
        if !rules.contains(&rule) {
            rules.push(rule);
            rules.sort_unstable();
        }
    }

    pub(crate) fn contains(&self, net: IpNet, rule: Rule) -> bool {
        self.map
            .get(&prefix_key(net))
            .is_some_and(|rules| rules.contains(&rule))
    }

    pub(crate) fn for_each_rule(&self, mut f: impl FnMut(Rule)) {
        for rules in self.map.values() {
            for rule in rules {
                f(*rule);
            }
        }
    }

    pub(crate) fn remove(&mut self, net: IpNet, rule: Rule) -> bool {
        let key = prefix_key(net);
        let Some(rules) = self.map.get_mut(&key) else {
            return false;
        };
        let before = rules.len();
        rules.retain(|r| *r != rule);
        let removed = rules.len() != before;
        if rules.is_empty() {
            self.map.remove(&key);
        }
        removed
    }

    pub(crate) fn retain_orders(&mut self, keep: impl Fn(usize) -> bool) {
        self.map.retain(|_, rules| {
            rules.retain(|r| keep(rule_order(*r)));
            !rules.is_empty()
        });
    }

    /// Recomputes the prefix lengths in use; call after a batch of inserts and removes.
    pub(crate) fn refresh(&mut self) {
        let mut v4 = [false; 33];
        let mut v6 = [false; 129];
        for (is_v6, len, _) in self.map.keys() {
            if *is_v6 {
                v6[usize::from(*len)] = true;
            } else {
                v4[usize::from(*len)] = true;
            }
        }
        // Indices are ≤ 128.
        self.v4_lengths = (0..=32u8).rev().filter(|l| v4[usize::from(*l)]).collect();
        self.v6_lengths = (0..=128u8).rev().filter(|l| v6[usize::from(*l)]).collect();
    }

    pub(crate) fn len(&self) -> usize {
        self.map.values().map(Vec::len).sum()
    }

    pub(crate) fn memory_bytes(&self) -> usize {
        let entry = std::mem::size_of::<PrefixKey>() + std::mem::size_of::<Vec<Rule>>() + 8;
        self.map.capacity() * entry
            + self.map.values().map(|r| r.capacity() * 4).sum::<usize>()
            + self.v4_lengths.capacity()
            + self.v6_lengths.capacity()
    }

    /// Calls `visit(prefix, rule)` for each rule whose prefix holds `addr`, longest prefix first.
    /// IPv4-mapped IPv6 addresses are looked up as IPv4. No allocation.
    #[inline]
    pub(crate) fn visit(&self, addr: IpAddr, mut visit: impl FnMut(IpNet, Rule)) {
        if self.map.is_empty() {
            return;
        }
        match addr.to_canonical() {
            IpAddr::V4(v4) => {
                let bits = u32::from(v4);
                for len in &self.v4_lengths {
                    let mask = if *len == 0 { 0 } else { u32::MAX << (32 - len) };
                    let key = (false, *len, u128::from(bits & mask));
                    if let Some(rules) = self.map.get(&key) {
                        for rule in rules {
                            visit(prefix_of(key), *rule);
                        }
                    }
                }
            }
            IpAddr::V6(v6) => {
                let bits = u128::from(v6);
                for len in &self.v6_lengths {
                    let mask = if *len == 0 {
                        0
                    } else {
                        u128::MAX << (128 - len)
                    };
                    let key = (true, *len, bits & mask);
                    if let Some(rules) = self.map.get(&key) {
                        for rule in rules {
                            visit(prefix_of(key), *rule);
                        }
                    }
                }
            }
        }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)] // In tests a panic is the failure report.
mod tests {
    use super::*;

    #[test]
    fn hashing_lower_cases_and_matches_keys() {
        let mut a = KeyHasher::new();
        a.label(b"COM");
        a.label(b"ExampleExample");
        assert_eq!(a.finish(), KeyHasher::key(b"com\0exampleexample\0"));
        assert_ne!(KeyHasher::key(b"com\0ab\0"), KeyHasher::key(b"com\0a\0b\0"));
        assert_eq!(
            lower(u64::from_le_bytes(*b"AZaz@[09")),
            u64::from_le_bytes(*b"azaz@[09")
        );
        assert_eq!(
            lower(u64::from_le_bytes(*b"\xc1\xdaMNOPQR")),
            u64::from_le_bytes(*b"\xc1\xdamnopqr")
        );
    }

    #[test]
    fn walk_visits_ancestors_and_self() {
        let entries: Vec<(Vec<u8>, Vec<Rule>)> = vec![
            (b"to\0kickass\0".to_vec(), vec![rule(0, true)]),
            (
                b"to\0kickass\0www\0".to_vec(),
                vec![rule(1, false), rule(2, true)],
            ),
            (b"to\0notkickass\0".to_vec(), vec![rule(3, false)]),
        ];
        let mut builder = NameIndexBuilder::new(3);
        for (k, r) in &entries {
            builder.insert(k, r).unwrap();
        }
        let index = builder.finish().unwrap();
        let mut seen = Vec::new();
        index.walk(b"to\0kickass\0www\0a\0", |len, r| seen.push((len, r)));
        assert_eq!(
            seen,
            [
                (11, rule(0, true)),
                (15, rule(1, false)),
                (15, rule(2, true))
            ]
        );
        seen.clear();
        index.walk(b"to\0kickas\0", |len, r| seen.push((len, r)));
        assert!(seen.is_empty());
        assert_eq!(
            index.get(b"to\0kickass\0www\0"),
            [rule(1, false), rule(2, true)]
        );
        assert!(index.may_match(b"to\0kickass\0www\0a\0"));
        assert!(!index.may_match(b"to\0kickas\0"));
    }

    #[test]
    fn addresses_longest_first() {
        let mut index = AddressIndex::default();
        index.insert("203.0.113.0/24".parse().unwrap(), 2);
        index.insert("203.0.113.7/32".parse().unwrap(), 4);
        index.insert("2001:db8::/32".parse().unwrap(), 6);
        index.refresh();
        let mut seen = Vec::new();
        index.visit("203.0.113.7".parse().unwrap(), |net, r| {
            seen.push((net.to_string(), r))
        });
        assert_eq!(
            seen,
            [
                ("203.0.113.7/32".to_string(), 4),
                ("203.0.113.0/24".to_string(), 2)
            ]
        );
        seen.clear();
        index.visit("::ffff:203.0.113.9".parse().unwrap(), |net, r| {
            seen.push((net.to_string(), r))
        });
        assert_eq!(seen, [("203.0.113.0/24".to_string(), 2)]);
        seen.clear();
        index.visit("2001:db8::1".parse().unwrap(), |net, r| {
            seen.push((net.to_string(), r))
        });
        assert_eq!(seen, [("2001:db8::/32".to_string(), 6)]);
        assert!(index.remove("203.0.113.0/24".parse().unwrap(), 2));
        assert!(!index.remove("203.0.113.0/24".parse().unwrap(), 2));
    }
}
