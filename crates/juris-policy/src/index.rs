//! The two lookup structures: names (a hash index over reversed-label keys, behind a Bloom
//! filter) and address prefixes.
//!
//! ```text
//!  key  com\0example\0www\0 ──KeyHasher──▶ hash ──▶ Bloom block (one cache line): maybe?
//!                                            │ maybe
//!                                            ▼
//!  starts[bucket(hash)] .. starts[bucket + 1]  ──▶ records: [len][key bytes][value varint] …
//!                                                  compared byte for byte (no false match)
//! ```

use std::collections::HashMap;
use std::net::IpAddr;

use ipnet::IpNet;

use crate::name::SEPARATOR;
use crate::policy::CompileError;

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
/// the labels so far (the value the Bloom filters and the buckets of a [`NameIndex`] use).
#[derive(Clone, Copy)]
pub(crate) struct KeyHasher(u64);

const K: u64 = 0x9e37_79b9_7f4a_7c15;

/// The secret starting state of every [`KeyHasher`] in this process: drawn once, from the
/// standard library's randomly keyed `RandomState` (the operating system's random source), so
/// whoever writes orders cannot choose names that crowd one bucket of the index or one block
/// of its Bloom filters. Every index of the process is built and probed with it; nothing
/// stores a hash across processes.
#[inline]
pub(crate) fn hash_seed() -> u64 {
    static SEED: std::sync::OnceLock<u64> = std::sync::OnceLock::new();
    *SEED.get_or_init(|| {
        use std::hash::{BuildHasher, Hasher};
        let mut hasher = std::collections::hash_map::RandomState::new().build_hasher();
        hasher.write_u64(0x243f_6a88_85a3_08d3);
        // Never 0, so that a zeroed state can never be the seed.
        hasher.finish() | 1
    })
}

impl KeyHasher {
    #[inline]
    pub(crate) fn new() -> KeyHasher {
        KeyHasher(hash_seed())
    }

    /// Adds one label (without its length byte or separator).
    #[cfg(test)]
    pub(crate) fn label(&mut self, label: &[u8]) {
        self.label_at(label, 0, label.len());
    }

    /// Adds the label `buf[start..start + len]` and tells whether it holds a zero byte (the
    /// [`SEPARATOR`]: such a wire label can match nothing). Reads whole words from `buf`, also
    /// past either end of the label (those bytes are masked off): the same hash as
    /// [`label`](Self::label) without assembling the label's tail byte by byte in a stack word,
    /// which stalls the load that follows (store forwarding) on the hot path. Bytes outside
    /// `buf` count as missing, never as a panic.
    #[inline]
    pub(crate) fn label_at(&mut self, buf: &[u8], start: usize, len: usize) -> bool {
        const ONES: u64 = 0x0101_0101_0101_0101;
        let mut h = self.0;
        let end = start + len;
        let mut at = start;
        let mut zero = 0u64;
        while at < end {
            let take = (end - at).min(8);
            // The label's bytes in the low `take` bytes of `word`, zeros above.
            let keep = if take == 8 {
                u64::MAX
            } else {
                (1u64 << (8 * take)) - 1
            };
            let word = if let Some(word) = buf.get(at..).and_then(|rest| rest.first_chunk::<8>()) {
                u64::from_le_bytes(*word) & keep
            } else if let Some(word) = end
                .checked_sub(8)
                .and_then(|from| buf.get(from..end))
                .and_then(|bytes| bytes.first_chunk::<8>())
            {
                // The eight bytes that end with the label: drop the ones before `at`.
                u64::from_le_bytes(*word) >> (8 * (8 - take))
            } else {
                let mut word = 0u64;
                for (i, byte) in buf.get(at..end).unwrap_or(&[]).iter().enumerate() {
                    word |= u64::from(*byte) << (8 * i);
                }
                word
            };
            // A zero byte of the label (the padding above it made non-zero).
            let probe = word | !keep;
            zero |= probe.wrapping_sub(ONES) & !probe & (0x80 * ONES);
            h = (h.rotate_left(29) ^ lower(word)).wrapping_mul(K);
            at += 8;
        }
        // The length ends the label, so that zero padding cannot be confused with content.
        self.0 = (h.rotate_left(29) ^ (0x100 | len as u64)).wrapping_mul(K);
        zero != 0
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
        let mut start = 0;
        for (i, byte) in key.iter().enumerate() {
            if *byte == SEPARATOR {
                if i > start {
                    hasher.label_at(key, start, i - start);
                }
                start = i + 1;
            }
        }
        if key.len() > start {
            hasher.label_at(key, start, key.len() - start);
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
/// key, 6 bits set, 16 bits per key. It lets a name that matches nothing skip the buckets:
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
        let Some(block) = self.blocks.get(self.block(hash)) else {
            return false;
        };
        Bloom::bits(hash).all(|bit| block[bit / 64] & (1 << (bit % 64)) != 0)
    }

    fn memory_bytes(&self) -> usize {
        self.blocks.capacity() * 64
    }
}

/// Marks a value that points into the side table instead of holding one rule.
const MULTI: u64 = 1;

/// Keys per bucket, on average. A bucket costs 4 bytes; a lookup scans its bucket's records
/// (about 2 × 19 bytes with the benchmark's names: one or two cache lines).
const KEYS_PER_BUCKET: usize = 2;

/// Builds a [`NameIndex`] from unique keys, in any order (fastest in increasing hash order, as
/// `build_index` in `policy.rs` feeds them: then nothing is sorted or copied again).
pub(crate) struct NameIndexBuilder {
    /// Records `[key length][key][value as LEB128]`, in insertion order.
    records: Vec<u8>,
    /// Per record: its key's hash and its offset in `records`.
    slots: Vec<(u64, u32)>,
    multi: Vec<u32>,
    min_labels: usize,
    sorted: bool,
}

impl NameIndexBuilder {
    /// `keys`: how many keys will be inserted (a hint for the allocation).
    pub(crate) fn new(keys: usize) -> NameIndexBuilder {
        NameIndexBuilder {
            records: Vec::with_capacity(keys.saturating_mul(20)),
            slots: Vec::with_capacity(keys),
            multi: Vec::new(),
            min_labels: usize::MAX,
            sorted: true,
        }
    }

    /// Adds a key not inserted before, with its sorted, unique rules (none: nothing is added).
    pub(crate) fn insert(&mut self, key: &[u8], rules: &[Rule]) -> Result<(), CompileError> {
        self.insert_hashed(key, KeyHasher::key(key), rules)
    }

    /// [`insert`](Self::insert) with the key's hash ([`KeyHasher::key`]) already computed.
    pub(crate) fn insert_hashed(
        &mut self,
        key: &[u8],
        hash: u64,
        rules: &[Rule],
    ) -> Result<(), CompileError> {
        let value = match rules {
            [] => return Ok(()),
            [one] => u64::from(*one) << 1,
            many => {
                let offset = self.multi.len() as u64;
                // A key holds at most one rule per (order, kind): far below u32::MAX.
                self.multi.push(many.len() as u32);
                self.multi.extend_from_slice(many);
                offset << 1 | MULTI
            }
        };
        // Keys of validated names are ≤ 254 bytes; longer ones cannot be stored with a one-byte
        // length, and no query could match them.
        let len = u8::try_from(key.len()).map_err(|_| CompileError::TooManyNames)?;
        let offset = u32::try_from(self.records.len()).map_err(|_| CompileError::TooManyNames)?;
        if self.records.len() + key.len() + 11 > u32::MAX as usize {
            return Err(CompileError::TooManyNames);
        }
        if self.slots.last().is_some_and(|(last, _)| *last > hash) {
            self.sorted = false;
        }
        self.slots.push((hash, offset));
        self.records.push(len);
        self.records.extend_from_slice(key);
        push_varint(&mut self.records, value);
        let labels = key.iter().filter(|b| **b == SEPARATOR).count();
        self.min_labels = self.min_labels.min(labels);
        Ok(())
    }

    pub(crate) fn finish(self) -> Result<NameIndex, CompileError> {
        let NameIndexBuilder {
            mut records,
            mut slots,
            mut multi,
            min_labels,
            sorted,
        } = self;
        if !sorted {
            // Lay the records out again in hash order.
            slots.sort_unstable();
            let mut ordered = Vec::with_capacity(records.len());
            for (_, offset) in &mut slots {
                let at = *offset as usize;
                // Every slot points at a record written by `insert`.
                let Some(end) = record_end(&records, at) else {
                    return Err(CompileError::TooManyNames);
                };
                // `ordered` holds no more bytes than `records`, which fit u32 (checked in insert).
                *offset = ordered.len() as u32;
                ordered.extend_from_slice(&records[at..end]);
            }
            records = ordered;
        }
        records.shrink_to_fit();
        multi.shrink_to_fit();
        let keys = slots.len();
        let buckets = if keys == 0 {
            0
        } else {
            keys.div_ceil(KEYS_PER_BUCKET)
        };
        // starts[b]: the offset of the first record in bucket b or after (records are in hash
        // order, and `bucket` is monotonic in the hash); starts[buckets] = the end.
        let mut starts = Vec::with_capacity(buckets + 1);
        let mut bloom = Bloom::with_keys(keys);
        for (hash, offset) in &slots {
            let bucket = bucket_of(*hash, buckets);
            while starts.len() <= bucket {
                starts.push(*offset);
            }
            bloom.insert(*hash);
        }
        // `records.len()` fits u32 (checked in insert).
        let end = records.len() as u32;
        while starts.len() <= buckets {
            starts.push(end);
        }
        Ok(NameIndex {
            records,
            starts,
            multi,
            bloom,
            len: keys,
            min_labels,
        })
    }
}

/// The bucket of a hash among `buckets`: multiply-shift range reduction, monotonic in the hash.
#[inline]
fn bucket_of(hash: u64, buckets: usize) -> usize {
    ((u128::from(hash) * buckets as u128) >> 64) as usize
}

fn push_varint(out: &mut Vec<u8>, mut value: u64) {
    while value >= 0x80 {
        out.push(value as u8 | 0x80);
        value >>= 7;
    }
    out.push(value as u8);
}

/// Reads a LEB128 value; `None` if `bytes` ends first or it is longer than a `u64`.
#[inline]
fn read_varint(bytes: &[u8]) -> Option<(u64, &[u8])> {
    let mut value = 0u64;
    for (i, byte) in bytes.iter().enumerate().take(10) {
        value |= u64::from(byte & 0x7f) << (7 * i);
        if byte & 0x80 == 0 {
            return Some((value, &bytes[i + 1..]));
        }
    }
    None
}

/// The end of the record starting at `at`.
fn record_end(records: &[u8], at: usize) -> Option<usize> {
    let len = usize::from(*records.get(at)?);
    let value = records.get(at + 1 + len..)?;
    let (_, rest) = read_varint(value)?;
    Some(records.len() - rest.len())
}

/// Names → rules. Keys are reversed labels each ended by [`SEPARATOR`], stored in records
/// `[key length][key][value]` grouped by the bucket of their hash; a value is either one rule
/// (`rule << 1`) or (with [`MULTI`]) the offset in `multi` of `[count, rule, rule, ...]`.
///
/// A lookup hashes the key (label by label, so a walk down a name costs one pass), asks the
/// Bloom filter, and only on "maybe" compares the key with each record of its bucket: a match is
/// always exact, whatever the hash function does.
pub(crate) struct NameIndex {
    records: Vec<u8>,
    /// `buckets + 1` offsets into `records` (empty when there are no keys).
    starts: Vec<u32>,
    multi: Vec<u32>,
    bloom: Bloom,
    len: usize,
    /// Fewest labels of any key: shorter prefixes of a name need no probe.
    min_labels: usize,
}

impl std::fmt::Debug for NameIndex {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("NameIndex")
            .field("names", &self.len)
            .field("bytes", &self.memory_bytes())
            .finish()
    }
}

impl NameIndex {
    pub(crate) fn empty() -> NameIndex {
        NameIndex {
            records: Vec::new(),
            starts: Vec::new(),
            multi: Vec::new(),
            bloom: Bloom::default(),
            len: 0,
            min_labels: usize::MAX,
        }
    }

    pub(crate) fn len(&self) -> usize {
        self.len
    }

    pub(crate) fn is_empty(&self) -> bool {
        self.len == 0
    }

    pub(crate) fn memory_bytes(&self) -> usize {
        self.records.capacity()
            + self.starts.capacity() * 4
            + self.multi.capacity() * 4
            + self.bloom.memory_bytes()
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
        let offset = (value >> 1) as usize;
        let count = self.multi.get(offset).copied().unwrap_or(0) as usize;
        self.multi
            .get(offset + 1..offset + 1 + count)
            .unwrap_or(&[])
    }

    /// Calls `visit` with each rule of a value.
    #[inline]
    fn visit_value(&self, value: u64, mut visit: impl FnMut(Rule)) {
        if value & MULTI == 0 {
            // Values without MULTI were built from one `u32` rule.
            visit((value >> 1) as Rule);
        } else {
            for rule in self.rules(value) {
                visit(*rule);
            }
        }
    }

    /// The value stored for `key` (whose hash is `hash`), comparing the key with every record
    /// of its bucket.
    #[inline]
    fn find(&self, key: &[u8], hash: u64) -> Option<u64> {
        let buckets = self.starts.len().checked_sub(1)?;
        let bucket = bucket_of(hash, buckets);
        let start = *self.starts.get(bucket)? as usize;
        let end = *self.starts.get(bucket + 1)? as usize;
        let mut records = self.records.get(start..end)?;
        while let Some((&len, rest)) = records.split_first() {
            let (stored, rest) = rest.split_at_checked(usize::from(len))?;
            let (value, rest) = read_varint(rest)?;
            if stored == key {
                return Some(value);
            }
            records = rest;
        }
        None
    }

    /// The rules stored for exactly `key`.
    pub(crate) fn get(&self, key: &[u8]) -> Vec<Rule> {
        let mut rules = Vec::new();
        if let Some(value) = self.find(key, KeyHasher::key(key)) {
            self.visit_value(value, |rule| rules.push(rule));
        }
        rules
    }

    /// Calls `visit(key_len, rule)` for every rule stored at a label boundary of `key`, i.e. for
    /// the name itself and each of its ancestors that the index holds, shortest first. One pass
    /// over the key (the hash of each prefix extends the previous one); a prefix costs a Bloom
    /// probe, and a bucket scan only when the filter says "maybe". No allocation.
    #[inline]
    pub(crate) fn walk(&self, key: &[u8], mut visit: impl FnMut(usize, Rule)) {
        if self.len == 0 {
            return;
        }
        let mut hasher = KeyHasher::new();
        let mut start = 0;
        let mut depth = 0;
        for (i, byte) in key.iter().enumerate() {
            if *byte != SEPARATOR {
                continue;
            }
            if i == start {
                // An empty label (never in a stored key): skipped, as `KeyHasher::key` does.
                start = i + 1;
                continue;
            }
            hasher.label_at(key, start, i - start);
            start = i + 1;
            depth += 1;
            if depth < self.min_labels {
                continue;
            }
            let hash = hasher.finish();
            if !self.bloom.may_contain(hash) {
                continue;
            }
            if let Some(value) = self.find(&key[..=i], hash) {
                self.visit_value(value, |rule| visit(i + 1, rule));
            }
        }
    }

    /// Every key and its rules, in storage (hash) order (for folding the overlay into a new
    /// base, which sorts again).
    pub(crate) fn for_each(&self, mut f: impl FnMut(&[u8], &[Rule])) {
        let mut records = self.records.as_slice();
        while let Some((&len, rest)) = records.split_first() {
            let Some((key, rest)) = rest.split_at_checked(usize::from(len)) else {
                return;
            };
            let Some((value, rest)) = read_varint(rest) else {
                return;
            };
            if value & MULTI == 0 {
                // Values without MULTI were built from one `u32` rule.
                f(key, &[(value >> 1) as Rule]);
            } else {
                f(key, self.rules(value));
            }
            records = rest;
        }
    }
}

/// Removes `rule` from the rules of `key` (and the key when none is left); whether it was there.
pub(crate) fn remove_rule<K: std::hash::Hash + Eq>(
    map: &mut HashMap<K, Vec<Rule>>,
    key: &K,
    rule: Rule,
) -> bool {
    let Some(rules) = map.get_mut(key) else {
        return false;
    };
    let before = rules.len();
    rules.retain(|r| *r != rule);
    let removed = rules.len() != before;
    if rules.is_empty() {
        map.remove(key);
    }
    removed
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
        remove_rule(&mut self.map, &prefix_key(net), rule)
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
#[allow(clippy::unwrap_used, clippy::expect_used, reason = "test code")]
mod tests {
    use super::*;

    #[test]
    fn the_hash_starts_from_the_process_seed() {
        // The seed is drawn at random once per process: the same in every hasher of this
        // process, and not the fixed constant the hash once started from.
        assert_eq!(hash_seed(), hash_seed());
        assert_eq!(KeyHasher::new().0, hash_seed());
        let fixed = |key: &[u8]| {
            let mut hasher = KeyHasher(0x243f_6a88_85a3_08d3);
            hasher.label_at(key, 0, key.len());
            hasher.finish()
        };
        let seeded = |key: &[u8]| {
            let mut hasher = KeyHasher::new();
            hasher.label_at(key, 0, key.len());
            hasher.finish()
        };
        // Different starting states give different hashes (the per-word step is a bijection
        // of the state, so equal hashes would need equal seeds).
        assert_ne!(seeded(b"kickasstorrents"), fixed(b"kickasstorrents"));
    }

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
    fn hashing_in_place_reads_only_the_label() {
        // Every length, at the start, middle and end of a buffer, with junk around it.
        for len in 1..=20usize {
            let label: Vec<u8> = (0..len).map(|i| b'a' + (i % 26) as u8).collect();
            let mut reference = KeyHasher::new();
            reference.label(&label);
            let expected = reference.finish();
            for (before, after) in [(0, 0), (3, 0), (0, 3), (9, 9), (1, 20)] {
                let mut buf = vec![0xffu8; before];
                buf.extend_from_slice(&label);
                buf.extend(std::iter::repeat_n(0xeeu8, after));
                let mut hasher = KeyHasher::new();
                assert!(!hasher.label_at(&buf, before, len));
                assert_eq!(hasher.finish(), expected, "len {len} at {before}+{after}");
            }
            // A zero byte anywhere in the label is reported; zero bytes around it are not.
            for at in 0..len {
                let mut buf = vec![0u8; 4];
                buf.extend_from_slice(&label);
                buf[4 + at] = 0;
                buf.extend_from_slice(&[0; 4]);
                assert!(
                    KeyHasher::new().label_at(&buf, 4, len),
                    "len {len} zero at {at}"
                );
            }
            let mut buf = vec![0u8; 9];
            buf.extend_from_slice(&label);
            buf.extend_from_slice(&[0; 9]);
            assert!(!KeyHasher::new().label_at(&buf, 9, len));
        }
    }

    #[test]
    fn many_keys_in_any_order() {
        let keys: Vec<Vec<u8>> = (0..3000u32)
            .map(|i| format!("to\0n{}\0{}", i % 97, "x".repeat(i as usize % 13)).into_bytes())
            .map(|mut k| {
                if k.last() != Some(&0) {
                    k.push(0);
                }
                k
            })
            .collect::<std::collections::BTreeSet<_>>()
            .into_iter()
            .collect();
        // Reverse key order: not hash order, so `finish` lays the records out again.
        let mut builder = NameIndexBuilder::new(keys.len());
        for (i, key) in keys.iter().enumerate().rev() {
            let rules: Vec<Rule> = if i % 7 == 0 {
                vec![rule(i as u32, false), rule(i as u32 + 1, true)]
            } else {
                vec![rule(i as u32, i % 2 == 0)]
            };
            builder.insert(key, &rules).unwrap();
        }
        let index = builder.finish().unwrap();
        assert_eq!(index.len(), keys.len());
        for (i, key) in keys.iter().enumerate() {
            let rules = index.get(key);
            assert_eq!(
                rules[0],
                rule(i as u32, i % 7 != 0 && i % 2 == 0),
                "{key:?}"
            );
            assert_eq!(rules.len(), if i % 7 == 0 { 2 } else { 1 });
            // Not the key without its last separator, nor with one more byte.
            assert!(index.get(&key[..key.len() - 1]).is_empty());
            let mut longer = key.clone();
            longer.extend_from_slice(b"q\0");
            assert!(index.get(&longer).is_empty());
        }
        let mut seen = 0;
        index.for_each(|key, rules| {
            assert_eq!(index.get(key), rules);
            seen += 1;
        });
        assert_eq!(seen, keys.len());
        assert!(NameIndex::empty().get(b"to\0").is_empty());
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
