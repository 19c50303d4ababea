//! Hot answers: a small direct-mapped table per UDP worker in front of the shared cache.
//!
//! ```text
//!  query ─► slot pair = hash(lower-cased name, type, class, DO) & mask (two-way)
//!        ─► same key, fresh, policy-clean for the policy in force? ─► copy the pre-rendered
//!           response (TTLs of this second), patch ID, RD/CD and the client's case, add OPT
//!        ─► otherwise the full pipeline; a fresh hit of the shared cache refills the slot
//! ```
//!
//! What it saves on a cache hit (`docs/design/0007-hot-answers.md`): the shared cache's shard
//! lock, second hash and `Arc` clone; the TTL rewrite (done once per second per slot, not per
//! query); and, when no order can apply to the name or the answer, the client's classification
//! and every policy lookup. "Clean" is decided with [`CompiledPolicy::may_apply_to_name`] and
//! [`CompiledPolicy::may_apply_to_address`], whose "no" is exact for every jurisdiction and
//! time, and is remembered together with the verdict epoch ([`crate::PolicyHandle::epoch`]) it
//! was decided under: any published change, and any cache flush, makes every remembered
//! verdict void at once. A slot also notes the shared cache's flush generation it took its
//! answer at; once a flush has moved the generation on, the answer is not served from the slot
//! again (`docs/design/0017-cache-control.md`).
//!
//! The table belongs to one worker thread (`&mut`, no locks, no atomics). It only ever holds
//! answers the shared cache handed out, and only serves them while fresh and unflushed, so it
//! can never serve what the shared cache would not have served this second (an entry evicted
//! from the shared cache may still be served here until its TTL runs out, as a client's own
//! cache would; a flushed one is not).

use std::sync::Arc;

use juris_policy::{CompiledPolicy, Country, CountrySet};
use juris_resolver::cache::{CacheKeyRef, CachedAnswer};

/// Slots per worker by default (4096 pairs; `server.hot_answer_slots`). A power of two; a
/// slot costs [`HotAnswers::slot_bytes`] at most (design 0048).
pub const HOT_SLOTS: usize = 8192;
/// Most slots a table may have (`server.hot_answer_slots`): 2^20, about 4.3 GiB per worker at
/// the default `max_udp_payload` if every slot held the largest answer.
pub const MAX_HOT_SLOTS: usize = 1 << 20;
/// Largest answer kept by default (the default `server.max_udp_payload`).
const DEFAULT_MAX_ANSWER: usize = 1232;

/// The per-worker table: owned by one thread and passed to [`crate::Pipeline::handle_hot`].
#[derive(Debug)]
pub struct HotAnswers {
    slots: Box<[Slot]>,
    /// Answers longer than this (in wire bytes) are never kept: no UDP response is longer
    /// (`server.max_udp_payload`), and a slot holds its answer even after the shared cache
    /// evicted it, so an unbounded answer here would be memory outside `cache.size`.
    max_answer: usize,
}

/// What a slot's contents were decided under: the verdict epoch
/// ([`crate::PolicyHandle::epoch`], read before the policy was loaded) and the shared cache's
/// flush generation ([`juris_resolver::cache::AnswerCache::generation`], read before the
/// lookup that found the answer).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(crate) struct Stamp {
    pub(crate) epoch: u64,
    pub(crate) generation: u64,
}

/// One remembered answer.
#[derive(Debug, Default)]
pub struct Slot {
    hash: u64,
    name: Vec<u8>,
    qtype: u16,
    qclass: u16,
    dnssec_ok: bool,
    answer: Option<Arc<CachedAnswer>>,
    /// The response as stored, with TTLs for `rendered_at` (ID 0, RD/CD clear).
    rendered: Vec<u8>,
    rendered_at: u64,
    /// The verdict epoch `clean` was decided under (0: never decided).
    judged_for: u64,
    /// The shared cache's flush generation when the answer was taken from it.
    generation: u64,
    /// No order of policy `judged_for` applies to the name, its CNAME targets, addresses or
    /// name servers.
    clean: bool,
    /// When not clean: the jurisdictions of every order of policy `judged_for` that matches
    /// the name, its CNAME targets, addresses or name servers (any state, any time). A client
    /// outside them is answered as if clean (the per-country hot verdict).
    reach: Option<Box<CountrySet>>,
}

impl Default for HotAnswers {
    fn default() -> Self {
        Self::new()
    }
}

impl HotAnswers {
    /// An empty table of [`HOT_SLOTS`] slots keeping answers up to 1232 bytes.
    pub fn new() -> Self {
        Self::with_slots(HOT_SLOTS, DEFAULT_MAX_ANSWER)
    }

    /// An empty table of `slots` slots (rounded up to a power of two, 2 to [`MAX_HOT_SLOTS`])
    /// keeping answers of at most `max_answer` bytes (the largest UDP response sent).
    pub fn with_slots(slots: usize, max_answer: usize) -> Self {
        let slots = slots.clamp(2, MAX_HOT_SLOTS).next_power_of_two();
        Self {
            slots: (0..slots).map(|_| Slot::default()).collect(),
            max_answer,
        }
    }

    /// Slots in the table.
    pub fn slots(&self) -> usize {
        self.slots.len()
    }

    /// Slots holding an answer (for the bound tests and the memory inventory, design 0048).
    pub fn occupied(&self) -> usize {
        self.slots.iter().filter(|s| s.answer.is_some()).count()
    }

    /// Heap and inline bytes the table holds now: the slots, their name and rendered copies,
    /// and the answers they keep alive (counted in full, as if the shared cache had evicted
    /// them all). What design 0048's worst case is made of.
    pub fn bytes(&self) -> usize {
        self.slots
            .iter()
            .map(|s| {
                std::mem::size_of::<Slot>()
                    + s.name.capacity()
                    + s.rendered.capacity()
                    + s.reach
                        .as_ref()
                        .map_or(0, |_| std::mem::size_of::<CountrySet>())
                    + s.answer.as_ref().map_or(0, |a| a.weight() as usize)
            })
            .sum()
    }

    /// About the most one slot holds for answers of at most `max_answer` wire bytes: the
    /// slot, a 255-byte name, the rendered copy, the policy reach and the answer it keeps
    /// alive, estimated as its struct plus twice its wire length (the wire form and what is
    /// derived from it: TTL offsets, CNAME targets, addresses). An answer's list of name
    /// servers is not in its wire form and is not counted here (the cache weighs it).
    pub fn slot_bytes(max_answer: usize) -> usize {
        std::mem::size_of::<Slot>()
            + 255
            + max_answer
            + std::mem::size_of::<CountrySet>()
            + std::mem::size_of::<CachedAnswer>()
            + 64
            + 2 * max_answer
    }

    /// The slot pair and hash for `key` (the table is two-way set-associative: a key lives
    /// in slot `index` or `index + 1`).
    #[inline]
    pub(crate) fn locate(&self, key: &CacheKeyRef<'_>) -> (usize, u64) {
        let hash = key_hash(key);
        // Masked to the slot count (a power of two), even: the first slot of a pair.
        ((hash >> 32) as usize & (self.slots.len() - 2), hash)
    }

    /// The slot of the pair at `index` holding `key`'s answer, if that answer is fresh at `now`.
    #[inline]
    pub(crate) fn fresh(
        &mut self,
        index: usize,
        hash: u64,
        key: &CacheKeyRef<'_>,
        now: u64,
    ) -> Option<&mut Slot> {
        let pair = self.slots.get_mut(index..index + 2)?;
        let way = pair.iter().position(|slot| slot.holds(hash, key))?;
        let slot = &mut pair[way];
        (now < slot.answer.as_ref()?.hot_until()).then_some(slot)
    }

    /// Remembers `answer` for `key` in the pair at `index`, with its policy verdict under
    /// `policy`: in the slot already holding `key`, else an empty or expired one, else the one
    /// whose answer expires first.
    #[allow(
        clippy::too_many_arguments,
        reason = "the per-query facts, kept unbundled on the hot path"
    )]
    pub(crate) fn insert(
        &mut self,
        index: usize,
        hash: u64,
        key: &CacheKeyRef<'_>,
        answer: &Arc<CachedAnswer>,
        policy: &CompiledPolicy,
        stamp: Stamp,
        now: u64,
    ) {
        // A bogus answer is never hot (CD=0 queries must get SERVFAIL for it), nor one that
        // carries an informational EDE (unsupported DNSSEC algorithm).
        if answer.security().bogus().is_some() || answer.security().unsupported().is_some() {
            return;
        }
        // Longer than any UDP response we send: the full path renders (truncates) it anyway.
        if answer.len() > self.max_answer {
            return;
        }
        let Some(pair) = self.slots.get_mut(index..index + 2) else {
            return;
        };
        let expiry = |slot: &Slot| slot.answer.as_ref().map_or(0, |a| a.expires_at());
        let way = pair
            .iter()
            .position(|slot| slot.holds(hash, key))
            .or_else(|| pair.iter().position(|slot| expiry(slot) <= now))
            .unwrap_or(usize::from(expiry(&pair[1]) < expiry(&pair[0])));
        let slot = &mut pair[way];
        slot.hash = hash;
        slot.name.clear();
        slot.name.extend_from_slice(key.name);
        slot.qtype = key.qtype;
        slot.qclass = key.qclass;
        slot.dnssec_ok = key.dnssec_ok;
        slot.answer = Some(Arc::clone(answer));
        slot.rendered.clear();
        slot.rendered_at = 0;
        slot.judged_for = 0;
        slot.generation = stamp.generation;
        slot.judge(key.name, policy, stamp.epoch);
    }
}

impl Slot {
    #[inline]
    fn holds(&self, hash: u64, key: &CacheKeyRef<'_>) -> bool {
        self.hash == hash
            && self.answer.is_some()
            && self.qtype == key.qtype
            && self.qclass == key.qclass
            && self.dnssec_ok == key.dnssec_ok
            && self.name == key.name
    }

    /// The answer this slot holds.
    #[inline]
    pub(crate) fn answer(&self) -> Option<&Arc<CachedAnswer>> {
        self.answer.as_ref()
    }

    /// Whether no order can apply to this answer, as decided under verdict `epoch` (the one
    /// in force: then neither the policy changed nor the cache was flushed since).
    #[inline]
    pub(crate) fn is_clean_for(&self, epoch: u64) -> bool {
        self.clean && self.judged_for == epoch && epoch != 0
    }

    /// Whether no order of the policy of verdict `epoch` (the one in force) can apply to this
    /// answer for a client in `country` (`None`: unknown): clean, or every order that matches
    /// binds other jurisdictions only. Exact at any time until the epoch moves on.
    #[inline]
    pub(crate) fn spares(&self, epoch: u64, country: Option<Country>) -> bool {
        self.judged_for == epoch
            && epoch != 0
            && (self.clean
                || self
                    .reach
                    .as_ref()
                    .is_some_and(|reach| !reach.applies_to(country)))
    }

    /// Whether the verdict must be decided under `epoch` (it was under another one).
    #[inline]
    pub(crate) fn needs_judging(&self, epoch: u64) -> bool {
        self.judged_for != epoch
    }

    /// Whether the answer was taken from the shared cache at flush `generation` (otherwise a
    /// flush may have removed it there: it must not be served from here either).
    #[inline]
    pub(crate) fn taken_at(&self, generation: u64) -> bool {
        self.generation == generation
    }

    /// Decides (again) whether `policy` leaves the name and the answer alone, under verdict
    /// `epoch` (read before `policy` was loaded).
    pub(crate) fn judge(&mut self, name: &[u8], policy: &CompiledPolicy, epoch: u64) {
        let Some(answer) = &self.answer else {
            return;
        };
        self.clean = untouchable(policy, name, answer);
        self.reach = (!self.clean).then(|| Box::new(reach(policy, name, answer)));
        self.judged_for = epoch;
    }

    /// The stored response with TTLs for `now` (rendered at most once per second), ID 0,
    /// RD/CD clear and AD as stored (set on secure data: the query decides whether it stays,
    /// see `pipeline::render_hot`); `None` if the answer cannot be rendered.
    #[inline]
    pub(crate) fn rendered(&mut self, now: u64) -> Option<&[u8]> {
        let answer = self.answer.as_ref()?;
        if self.rendered.is_empty() || self.rendered_at != now {
            self.rendered.resize(answer.len(), 0);
            // Flags as for a query with AD=1: the stored AD bit is kept.
            answer.write_response(
                &mut self.rendered,
                0,
                crate::codes::flags::AD,
                &[],
                now,
                None,
            )?;
            self.rendered_at = now;
        }
        Some(&self.rendered)
    }
}

/// Whether no order of `policy` can apply to `name`, `answer`'s CNAME targets or its
/// addresses, for any jurisdiction at any time (exact "no": Bloom filters without an entry).
/// What a hot slot remembers, and what makes a trusted forwarder's ECS scope 0.
/// No order of `policy` can touch `name`, its CNAME targets, addresses or name servers.
pub(crate) fn untouchable(policy: &CompiledPolicy, name: &[u8], answer: &CachedAnswer) -> bool {
    !policy.may_apply_to_name(name)
        && !answer
            .cname_targets()
            .iter()
            .any(|target| policy.may_apply_to_name(target))
        && !answer
            .addresses()
            .iter()
            .any(|address| policy.may_apply_to_address(*address))
        && !name_servers_may_match(answer, policy)
}

/// The jurisdictions of every order of `policy` matching `name`, `answer`'s CNAME targets,
/// addresses or name servers (see [`CompiledPolicy::reach_of_name`]).
fn reach(policy: &CompiledPolicy, name: &[u8], answer: &CachedAnswer) -> CountrySet {
    let mut reach = CountrySet::empty();
    policy.reach_of_name(name, &mut reach);
    for target in answer.cname_targets() {
        policy.reach_of_name(target, &mut reach);
    }
    for address in answer.addresses() {
        policy.reach_of_address(*address, &mut reach);
    }
    if policy.has_name_server_triggers() {
        let servers = answer.name_servers();
        for server in servers.names() {
            policy.reach_of_name_server(server, &mut reach);
        }
        for address in servers.addresses() {
            policy.reach_of_name_server_address(*address, &mut reach);
        }
    }
    reach
}

/// A fast hash of the key: multiply-rotate over 8-byte words (the rotation carries each
/// product's high bits, which depend on the whole word, back into the low ones) and a full
/// 64-bit finaliser (MurmurHash3's `fmix64`). The slot compares the key itself, so a collision
/// costs a miss, never a wrong answer.
#[inline]
fn key_hash(key: &CacheKeyRef<'_>) -> u64 {
    const K: u64 = 0xf135_7aea_2e62_a9c5;
    let mut hash = u64::from(key.qtype) << 17 ^ u64::from(key.qclass) << 1 ^ key.dnssec_ok as u64;
    let mut chunks = key.name.chunks_exact(8);
    for chunk in &mut chunks {
        let mut word = [0u8; 8];
        word.copy_from_slice(chunk);
        hash = (hash ^ u64::from_le_bytes(word))
            .wrapping_mul(K)
            .rotate_left(26);
    }
    let rest = chunks.remainder();
    let mut word = [0u8; 8];
    word[..rest.len()].copy_from_slice(rest);
    hash ^= u64::from_le_bytes(word) ^ (rest.len() as u64) << 59;
    hash = (hash ^ hash >> 33).wrapping_mul(0xff51_afd7_ed55_8ccd);
    hash = (hash ^ hash >> 33).wrapping_mul(0xc4ce_b9fe_1a85_ec53);
    hash ^ hash >> 33
}

/// Whether an `nsdname`/`nsip` target of `policy` may apply to the authoritative servers that
/// answered (`false` is exact): a name delegated to a listed server is never clean.
#[inline]
fn name_servers_may_match(answer: &CachedAnswer, policy: &CompiledPolicy) -> bool {
    if !policy.has_name_server_triggers() {
        return false;
    }
    let servers = answer.name_servers();
    servers
        .names()
        .iter()
        .any(|name| policy.may_apply_to_name_server(name))
        || servers
            .addresses()
            .iter()
            .any(|address| policy.may_apply_to_name_server_address(*address))
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used, reason = "test code")]
mod tests {
    use super::*;
    use juris_policy::{
        Action, CompileOptions, Notice, Order, OrderKind, OrderState, Target, TargetKind,
        ValidationOptions,
    };
    use juris_resolver::cache::CacheConfig;

    const STAMP: Stamp = Stamp {
        epoch: 1,
        generation: 0,
    };

    fn answer(name: &[u8], address: [u8; 4], ttl: u32, now: u64) -> Arc<CachedAnswer> {
        let mut m = vec![0, 0, 0x81, 0x80, 0, 1, 0, 1, 0, 0, 0, 0];
        m.extend_from_slice(name);
        m.extend_from_slice(&[0, 1, 0, 1, 0xC0, 12, 0, 1, 0, 1]);
        m.extend_from_slice(&ttl.to_be_bytes());
        m.extend_from_slice(&[0, 4]);
        m.extend_from_slice(&address);
        Arc::new(CachedAnswer::from_message(&m, now, &CacheConfig::default()).unwrap())
    }

    fn key(name: &[u8]) -> CacheKeyRef<'_> {
        CacheKeyRef {
            name,
            qtype: 1,
            qclass: 1,
            dnssec_ok: false,
        }
    }

    fn policy_blocking(target: &str) -> CompiledPolicy {
        let order = Order {
            id: "IT-1".into(),
            kind: OrderKind::CourtOrder,
            authority: "Court".into(),
            reference: "ref".into(),
            legal_basis: String::new(),
            requested_by: vec![],
            jurisdictions: vec!["IT".into()],
            targets: vec![Target::new(TargetKind::Subtree, target)],
            action: Action::Nxdomain,
            block_addresses: true,
            state: OrderState::Active,
            effective_from: None,
            comply_by: None,
            expires_at: None,
            windows: vec![],
            notice: Notice::default(),
            parent: None,
            overrides: vec![],
            transparency: None,
        }
        .validate(&ValidationOptions::default())
        .unwrap();
        CompiledPolicy::compile(&[order], &CompileOptions::default()).unwrap()
    }

    #[test]
    fn serves_only_the_same_key_while_fresh() {
        let mut hot = HotAnswers::new();
        let name = b"\x03www\x07example\x03com\x00";
        let k = key(name);
        let (index, hash) = hot.locate(&k);
        let policy = CompiledPolicy::empty();
        hot.insert(
            index,
            hash,
            &k,
            &answer(name, [192, 0, 2, 1], 60, 100),
            &policy,
            STAMP,
            100,
        );
        assert!(hot.fresh(index, hash, &k, 159).is_some());
        assert!(hot.fresh(index, hash, &k, 160).is_none(), "expired");
        let other = CacheKeyRef { qtype: 28, ..k };
        let (other_index, other_hash) = hot.locate(&other);
        assert_ne!(other_hash, hash);
        assert!(hot.fresh(index, other_hash, &other, 120).is_none());
        if other_index != index {
            assert!(hot.fresh(other_index, other_hash, &other, 120).is_none());
        }
        let with_do = CacheKeyRef {
            dnssec_ok: true,
            ..k
        };
        assert!(hot.fresh(index, hash, &with_do, 120).is_none());
    }

    #[test]
    fn two_keys_of_one_pair_both_stay() {
        let mut hot = HotAnswers::new();
        let policy = CompiledPolicy::empty();
        let (a, b) = (b"\x01a\x00", b"\x01b\x00");
        let (index, hash_a) = hot.locate(&key(a));
        let (_, hash_b) = hot.locate(&key(b));
        // Put b in a's pair on purpose: two keys that collide both stay.
        hot.insert(
            index,
            hash_a,
            &key(a),
            &answer(a, [192, 0, 2, 1], 60, 100),
            &policy,
            STAMP,
            100,
        );
        hot.insert(
            index,
            hash_b,
            &key(b),
            &answer(b, [192, 0, 2, 2], 30, 100),
            &policy,
            STAMP,
            100,
        );
        assert!(hot.fresh(index, hash_a, &key(a), 110).is_some());
        assert!(hot.fresh(index, hash_b, &key(b), 110).is_some());
        // A third key replaces the one that expires first (b).
        let c = b"\x01c\x00";
        let (_, hash_c) = hot.locate(&key(c));
        hot.insert(
            index,
            hash_c,
            &key(c),
            &answer(c, [192, 0, 2, 3], 60, 100),
            &policy,
            STAMP,
            110,
        );
        assert!(hot.fresh(index, hash_b, &key(b), 110).is_none());
        assert!(hot.fresh(index, hash_a, &key(a), 110).is_some());
        assert!(hot.fresh(index, hash_c, &key(c), 110).is_some());
    }

    #[test]
    fn similar_names_spread_over_the_slots() {
        let hot = HotAnswers::new();
        // Names that differ only in a digit or two (as generated and real-world ones do).
        let mut used = std::collections::HashSet::new();
        for i in 0..1000 {
            let mut wire = Vec::new();
            for label in format!("name{i}.zone{}.com", i % 24).split('.') {
                wire.push(label.len() as u8);
                wire.extend_from_slice(label.as_bytes());
            }
            wire.push(0);
            used.insert(hot.locate(&key(&wire)).0);
        }
        // 1000 random picks of 4096 pairs leave ~890 distinct; far fewer means a weak hash.
        assert!(used.len() > 850, "{} distinct pairs", used.len());
    }

    #[test]
    fn renders_ttls_for_the_current_second() {
        let mut hot = HotAnswers::new();
        let name = b"\x01a\x00";
        let k = key(name);
        let (index, hash) = hot.locate(&k);
        let stored = answer(name, [192, 0, 2, 1], 60, 100);
        hot.insert(
            index,
            hash,
            &k,
            &stored,
            &CompiledPolicy::empty(),
            STAMP,
            100,
        );
        let ttl_at = stored.len() - 10;
        let slot = hot.fresh(index, hash, &k, 110).unwrap();
        let rendered = slot.rendered(110).unwrap().to_vec();
        assert_eq!(&rendered[ttl_at..ttl_at + 4], &50u32.to_be_bytes());
        let rendered = slot.rendered(130).unwrap().to_vec();
        assert_eq!(&rendered[ttl_at..ttl_at + 4], &30u32.to_be_bytes());
        // Byte for byte what the shared cache renders (ID 0, no RD/CD).
        let mut direct = vec![0u8; stored.len()];
        stored
            .write_response(&mut direct, 0, 0, &[], 130, None)
            .unwrap();
        assert_eq!(rendered, direct);
    }

    #[test]
    fn clean_only_when_no_order_can_apply_and_only_for_that_policy() {
        let mut hot = HotAnswers::new();
        let blocked = b"\x03www\x07example\x03com\x00";
        let free = b"\x03www\x07example\x03org\x00";
        let policy = policy_blocking("example.com");
        for (name, clean) in [(&blocked[..], false), (&free[..], true)] {
            let k = key(name);
            let (index, hash) = hot.locate(&k);
            hot.insert(
                index,
                hash,
                &k,
                &answer(name, [192, 0, 2, 1], 60, 100),
                &policy,
                STAMP,
                100,
            );
            let slot = hot.fresh(index, hash, &k, 100).unwrap();
            assert_eq!(slot.is_clean_for(STAMP.epoch), clean);
            // Any other epoch (a publish, even of the same orders, or a flush) voids it.
            let again = policy_blocking("example.com");
            assert!(!slot.is_clean_for(STAMP.epoch + 1));
            slot.judge(name, &again, STAMP.epoch + 1);
            assert_eq!(slot.is_clean_for(STAMP.epoch + 1), clean);
            assert!(slot.taken_at(STAMP.generation));
            assert!(!slot.taken_at(STAMP.generation + 1));
        }
    }

    /// A wire name `n<i>.example.` (distinct per `i`).
    fn numbered(i: usize) -> Vec<u8> {
        let label = format!("n{i}");
        let mut wire = vec![label.len() as u8];
        wire.extend_from_slice(label.as_bytes());
        wire.extend_from_slice(b"\x07example\x00");
        wire
    }

    /// Design 0048: a client asking more names than there are slots never grows the table:
    /// the occupied slots stay at `server.hot_answer_slots`, the bytes the table holds at
    /// most that many times [`HotAnswers::slot_bytes`], and an answer longer than the largest
    /// UDP response is never kept (it would be memory outside `cache.size`).
    #[test]
    fn more_names_than_slots_stay_within_the_slots_and_their_bytes() {
        let policy = CompiledPolicy::empty();
        let mut hot = HotAnswers::with_slots(64, 512);
        assert_eq!(hot.slots(), 64);
        for i in 0..10_000 {
            let name = numbered(i);
            let k = key(&name);
            let (index, hash) = hot.locate(&k);
            hot.insert(
                index,
                hash,
                &k,
                &answer(&name, [192, 0, 2, 1], 60, 100),
                &policy,
                STAMP,
                100,
            );
            if let Some(slot) = hot.fresh(index, hash, &k, 100) {
                slot.rendered(100).unwrap();
            }
        }
        assert_eq!(hot.occupied(), 64);
        assert!(
            hot.bytes() <= 64 * HotAnswers::slot_bytes(512),
            "{} > {}",
            hot.bytes(),
            64 * HotAnswers::slot_bytes(512)
        );
        // A slot count that is not a power of two is rounded up; the bounds are kept.
        assert_eq!(HotAnswers::with_slots(100, 512).slots(), 128);
        assert_eq!(HotAnswers::with_slots(0, 512).slots(), 2);
        assert_eq!(
            HotAnswers::with_slots(usize::MAX, 512).slots(),
            MAX_HOT_SLOTS
        );
        // An answer above `max_answer` bytes is not kept.
        let mut small = HotAnswers::with_slots(2, 20);
        let name = numbered(1);
        let k = key(&name);
        let (index, hash) = small.locate(&k);
        let long = answer(&name, [192, 0, 2, 1], 60, 100);
        assert!(long.len() > 20);
        small.insert(index, hash, &k, &long, &policy, STAMP, 100);
        assert_eq!(small.occupied(), 0);
    }
}
