//! The compiled policy: an immutable index over every order's targets, and the checks the server
//! runs on its hot path.

use std::cmp::Ordering;
use std::collections::{BTreeMap, HashMap};
use std::net::IpAddr;
use std::sync::Arc;

use jiff::Timestamp;

use crate::country::{Country, CountrySet};
use crate::index::{
    rule, rule_is_subtree, rule_order, AddressIndex, KeyHasher, NameIndex, NameIndexBuilder, Rule,
};
use crate::name::{name_from_key, push_key_from_name, WireKey, WireName};
use crate::nameserver::NameServerRules;
use crate::order::{OrderKind, OrderState, TargetKind};
use crate::validate::{OrderInfo, TargetValue, TimeStatus, ValidatedOrder, ValidatedTarget};
use crate::verdict::{
    Block, ExplainedMatch, Explanation, Match, MatchStatus, MatchedTarget, ParentStatus, Verdict,
};

/// How many extensions of extensions are followed up to the first order that is not one; a
/// longer chain (or a cycle) counts as a missing parent.
const MAX_EXTENSION_DEPTH: usize = 8;

/// The next [`CompiledPolicy::instance`] number.
fn next_instance() -> u64 {
    static NEXT: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(1);
    NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed)
}

/// Options for [`CompiledPolicy::compile`].
#[derive(Debug, Clone, Copy, Default)]
pub struct CompileOptions {
    /// The generation number reported by [`CompiledPolicy::generation`] (status, metrics).
    pub generation: u64,
}

/// Why a policy could not be compiled or changed. The previous policy stays valid: keep
/// enforcing it and report this.
#[derive(Debug, thiserror::Error)]
pub enum CompileError {
    /// Two orders share an id.
    #[error("order {0:?} appears more than once")]
    DuplicateOrder(String),
    /// A change names an order the policy does not hold.
    #[error("order {0:?} is not in the policy")]
    UnknownOrder(String),
    /// More than 2^31 order versions.
    #[error("too many orders: {0} (the limit is 2^31)")]
    TooManyOrders(usize),
    /// More than 4 GiB of name keys.
    #[error("the names take more than 4 GiB")]
    TooManyNames,
}

/// One change to a compiled policy, applied by [`CompiledPolicy::with_changes`].
#[derive(Debug, Clone)]
pub enum PolicyChange {
    /// Adds an order, or replaces the order with the same id, targets included. Costs time in
    /// proportion to the number of targets: for a large order whose targets barely change, use
    /// [`PolicyChange::between`] instead.
    Put(ValidatedOrder),
    /// Removes an order and all its targets.
    Remove(String),
    /// Changes an existing order's metadata (state, jurisdictions, times, notice, ...) and adds
    /// and removes individual targets; cost in proportion to the targets changed.
    Update(OrderUpdate),
}

/// New metadata for an existing order and its target changes.
#[derive(Debug, Clone)]
pub struct OrderUpdate {
    /// The order's new metadata (its `id` picks the order).
    pub order: Arc<OrderInfo>,
    /// Targets to add.
    pub added: Vec<ValidatedTarget>,
    /// Targets to remove.
    pub removed: Vec<ValidatedTarget>,
}

/// Per-order counts for status pages and transparency reports.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct OrderStats {
    /// Distinct enforced targets (`domain`, `subtree`, `ip`, `nsdname`, `nsip`).
    pub targets: usize,
    /// Targets kept but not enforced. Always 0 since `nsdname` and `nsip` are enforced (kept
    /// for the API's shape).
    pub unenforced: usize,
}

/// Sizes, for status and metrics.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PolicyStats {
    /// Orders in the policy.
    pub orders: usize,
    /// Distinct names in the compact base index.
    pub base_names: usize,
    /// Names added since the base was built (the overlay).
    pub overlay_names: usize,
    /// Base (name, order) entries removed since the base was built.
    pub masked_names: usize,
    /// (prefix, order) entries.
    pub address_rules: usize,
    /// `nsdname` (name, order) and `nsip` (prefix, order) entries.
    pub name_server_rules: usize,
    /// See [`CompiledPolicy::memory_bytes`].
    pub memory_bytes: usize,
}

/// Every order's targets compiled into one immutable index. `Send + Sync`; clone it or put it in
/// an `Arc` and publish it atomically (`arc-swap`). Cloning copies only `Arc`s.
///
/// Names live in a compact base (reversed-label keys in hash buckets behind a Bloom filter) plus
/// a small overlay of changes made since ([`with_changes`](Self::with_changes));
/// [`compact`](Self::compact) folds the overlay into a new base in the background.
#[derive(Debug, Clone)]
pub struct CompiledPolicy {
    generation: u64,
    /// Unique per constructed policy in this process ([`instance`](Self::instance)).
    instance: u64,
    /// Indexed by a rule's order index; `None`: removed or replaced since the base was built.
    orders: Arc<Vec<Option<Arc<OrderInfo>>>>,
    ids: Arc<HashMap<String, u32>>,
    stats: Arc<Vec<OrderStats>>,
    base: Arc<NameIndex>,
    overlay: Arc<Overlay>,
    addresses: Arc<AddressIndex>,
    /// `nsdname` and `nsip` targets.
    name_servers: Arc<NameServerRules>,
}

#[derive(Debug)]
struct Overlay {
    /// Built from `added`.
    index: NameIndex,
    added: BTreeMap<Vec<u8>, Vec<Rule>>,
    /// Base rules no longer in force.
    removed: HashMap<Box<[u8]>, Vec<Rule>>,
}

/// One rule that matched and applies (hot path).
#[derive(Clone, Copy)]
struct Hit {
    key_len: usize,
    rule: Rule,
    shadow: bool,
}

/// A name key with its rule, in the sort buffer of the compiler (16 bytes).
#[derive(Clone, Copy, Default)]
struct Entry {
    /// The key's hash ([`KeyHasher::key`]): the index is laid out in this order, and nearly
    /// every comparison of the sort ends here.
    hash: u64,
    offset: u32,
    rule: Rule,
}

impl CompiledPolicy {
    /// A policy without orders: allows everything.
    pub fn empty() -> CompiledPolicy {
        CompiledPolicy {
            instance: next_instance(),
            generation: 0,
            orders: Arc::default(),
            ids: Arc::default(),
            stats: Arc::default(),
            base: Arc::new(NameIndex::empty()),
            overlay: Arc::new(Overlay::empty()),
            addresses: Arc::default(),
            name_servers: Arc::default(),
        }
    }

    /// Compiles validated orders. Startup and full reloads take this path; the result does not
    /// keep the orders' target lists (only the index).
    pub fn compile(
        orders: &[ValidatedOrder],
        options: &CompileOptions,
    ) -> Result<CompiledPolicy, CompileError> {
        if orders.len() >= 1 << 31 {
            return Err(CompileError::TooManyOrders(orders.len()));
        }
        let mut ids = HashMap::with_capacity(orders.len());
        let mut infos = Vec::with_capacity(orders.len());
        let mut stats = vec![OrderStats::default(); orders.len()];
        let mut addresses = AddressIndex::default();
        let mut name_servers = NameServerRules::default();
        let names: usize = orders
            .iter()
            .map(|o| o.targets().iter().filter(|t| is_name_rule(t)).count())
            .sum();
        let mut arena: Vec<u8> = Vec::with_capacity(names * 20);
        let mut entries: Vec<Entry> = Vec::with_capacity(names);
        for (index, order) in orders.iter().enumerate() {
            // index < 2^31, checked above.
            let index32 = index as u32;
            if ids.insert(order.id().to_owned(), index32).is_some() {
                return Err(CompileError::DuplicateOrder(order.id().to_owned()));
            }
            infos.push(Some(Arc::clone(order.info())));
            for target in order.targets() {
                match (target.kind(), target.value()) {
                    (
                        kind @ (TargetKind::Domain | TargetKind::Subtree),
                        TargetValue::Name(name),
                    ) => {
                        let offset =
                            u32::try_from(arena.len()).map_err(|_| CompileError::TooManyNames)?;
                        // Keys of validated names are ≤ 254 bytes: the length fits a byte.
                        arena.push(0);
                        let hash = push_key_from_name(name, &mut arena);
                        arena[offset as usize] = (arena.len() - offset as usize - 1) as u8;
                        entries.push(Entry {
                            hash,
                            offset,
                            rule: rule(index32, kind == TargetKind::Subtree),
                        });
                    }
                    (TargetKind::Ip, TargetValue::Prefix(net)) => {
                        addresses.insert(*net, rule(index32, false));
                    }
                    _ if NameServerRules::holds(target) => {
                        name_servers.add(index32, target);
                    }
                    _ => stats[index].unenforced += 1,
                }
            }
        }
        addresses.refresh();
        name_servers.refresh();
        let base = build_index(arena, entries, &mut stats)?;
        addresses_stats(&addresses, &mut stats);
        name_servers.for_each_rule(|rule| {
            if let Some(s) = stats.get_mut(rule_order(rule)) {
                s.targets += 1;
            }
        });
        Ok(CompiledPolicy {
            instance: next_instance(),
            generation: options.generation,
            orders: Arc::new(infos),
            ids: Arc::new(ids),
            stats: Arc::new(stats),
            base: Arc::new(base),
            overlay: Arc::new(Overlay::empty()),
            addresses: Arc::new(addresses),
            name_servers: Arc::new(name_servers),
        })
    }

    /// A new policy with `changes` applied on top of this one, sharing the base index (no
    /// rebuild of millions of names: the changed names go to a small overlay). The generation is
    /// this one's plus one. On error nothing changes.
    pub fn with_changes(&self, changes: &[PolicyChange]) -> Result<CompiledPolicy, CompileError> {
        let mut orders: Vec<Option<Arc<OrderInfo>>> = (*self.orders).clone();
        let mut ids: HashMap<String, u32> = (*self.ids).clone();
        let mut stats: Vec<OrderStats> = (*self.stats).clone();
        let mut added = self.overlay.added.clone();
        let mut removed = self.overlay.removed.clone();
        let mut addresses = (*self.addresses).clone();
        let mut name_servers = (*self.name_servers).clone();
        let mut dead: Vec<usize> = Vec::new();
        let mut editor = Editor {
            base: &self.base,
            added: &mut added,
            removed: &mut removed,
            addresses: &mut addresses,
            name_servers: &mut name_servers,
        };
        for change in changes {
            match change {
                PolicyChange::Put(order) => {
                    if let Some(old) = ids.get(order.id()) {
                        let old = *old as usize;
                        orders[old] = None;
                        stats[old] = OrderStats::default();
                        dead.push(old);
                        editor.forget_order(old);
                    }
                    let index = orders.len();
                    let index32 = u32::try_from(index)
                        .ok()
                        .filter(|i| *i < 1 << 31)
                        .ok_or(CompileError::TooManyOrders(index))?;
                    orders.push(Some(Arc::clone(order.info())));
                    ids.insert(order.id().to_owned(), index32);
                    stats.push(OrderStats::default());
                    for target in order.targets() {
                        editor.add(index32, target, &mut stats[index]);
                    }
                }
                PolicyChange::Remove(id) => {
                    let index = ids
                        .remove(id)
                        .ok_or_else(|| CompileError::UnknownOrder(id.clone()))?
                        as usize;
                    orders[index] = None;
                    stats[index] = OrderStats::default();
                    dead.push(index);
                    editor.forget_order(index);
                }
                PolicyChange::Update(update) => {
                    let index32 = *ids
                        .get(&update.order.id)
                        .ok_or_else(|| CompileError::UnknownOrder(update.order.id.clone()))?;
                    let index = index32 as usize;
                    orders[index] = Some(Arc::clone(&update.order));
                    for target in &update.removed {
                        editor.remove(index32, target, &mut stats[index]);
                    }
                    for target in &update.added {
                        editor.add(index32, target, &mut stats[index]);
                    }
                }
            }
        }
        if !dead.is_empty() {
            addresses.retain_orders(|order| orders.get(order).is_some_and(Option::is_some));
            name_servers.retain_orders(|order| orders.get(order).is_some_and(Option::is_some));
        }
        addresses.refresh();
        name_servers.refresh();
        let overlay = Overlay::build(added, removed)?;
        Ok(CompiledPolicy {
            instance: next_instance(),
            generation: self.generation.wrapping_add(1),
            orders: Arc::new(orders),
            ids: Arc::new(ids),
            stats: Arc::new(stats),
            base: Arc::clone(&self.base),
            overlay: Arc::new(overlay),
            addresses: Arc::new(addresses),
            name_servers: Arc::new(name_servers),
        })
    }

    /// The same policy with the overlay folded into a new base (a full rebuild of the name
    /// index: run it in the background, then publish the result if no newer generation was
    /// published meanwhile). The generation does not change: the answers are the same.
    pub fn compact(&self) -> Result<CompiledPolicy, CompileError> {
        let mut arena: Vec<u8> = Vec::new();
        let mut entries: Vec<Entry> =
            Vec::with_capacity(self.base.len() + self.overlay.added.len());
        let mut push = |key: &[u8], rule: Rule| -> Result<(), CompileError> {
            let offset = u32::try_from(arena.len()).map_err(|_| CompileError::TooManyNames)?;
            // Keys come from validated names (≤ 254 bytes).
            let len = u8::try_from(key.len()).map_err(|_| CompileError::TooManyNames)?;
            arena.push(len);
            arena.extend_from_slice(key);
            entries.push(Entry {
                hash: KeyHasher::key(key),
                offset,
                rule,
            });
            Ok(())
        };
        let mut result = Ok(());
        self.base.for_each(|key, rules| {
            let masked = self.overlay.removed.get(key);
            for rule in rules {
                let live = self.order(*rule).is_some();
                if live && !masked.is_some_and(|m| m.contains(rule)) && result.is_ok() {
                    result = push(key, *rule);
                }
            }
        });
        result?;
        for (key, rules) in &self.overlay.added {
            for rule in rules {
                if self.order(*rule).is_some() {
                    push(key, *rule)?;
                }
            }
        }
        // The counts do not change; `build_index` recounts into a scratch table.
        let base = build_index(arena, entries, &mut [])?;
        Ok(CompiledPolicy {
            instance: next_instance(),
            generation: self.generation,
            orders: Arc::clone(&self.orders),
            ids: Arc::clone(&self.ids),
            stats: Arc::clone(&self.stats),
            base: Arc::new(base),
            overlay: Arc::new(Overlay::empty()),
            addresses: Arc::clone(&self.addresses),
            name_servers: Arc::clone(&self.name_servers),
        })
    }

    /// The generation number (from [`CompileOptions`], plus one per [`with_changes`](Self::with_changes)).
    pub fn generation(&self) -> u64 {
        self.generation
    }

    /// A number no other policy built in this process carries (clones share it: they answer
    /// alike), for callers that remember a verdict across queries. (The server's per-worker
    /// hot answers key theirs by `PolicyHandle::epoch` instead, which a cache flush moves on
    /// too: `docs/design/0017-cache-control.md`.)
    pub fn instance(&self) -> u64 {
        self.instance
    }

    /// Whether any rule of this policy might apply to `qname` (or one of its parent names), for
    /// any client, at any time, in any state. `false` is exact: then [`check_name`](Self::check_name)
    /// allows `qname` with no shadow match for every jurisdiction and every time. `true` may be a
    /// false positive (a Bloom filter probe). Allocation-free.
    #[inline]
    pub fn may_apply_to_name(&self, qname: &[u8]) -> bool {
        let mut wire = WireName::unparsed(qname);
        if !wire.read() {
            return false;
        }
        let (base, overlay) = (&*self.base, &self.overlay.index);
        let min_labels = base.min_labels().min(overlay.min_labels());
        if min_labels == usize::MAX {
            return false;
        }
        wire.any_prefix_hash(min_labels, |hash| {
            base.may_contain_hash(hash) || overlay.may_contain_hash(hash)
        })
    }

    /// Whether any address rule of this policy covers `addr` (any client, any time, any
    /// state). `false` is exact: then [`check_address`](Self::check_address) allows it with no
    /// shadow match for everyone.
    #[inline]
    pub fn may_apply_to_address(&self, addr: IpAddr) -> bool {
        let mut any = false;
        self.addresses.visit(addr, |_, _| any = true);
        any
    }

    /// Adds to `reach` the jurisdictions of every order with a rule matching `qname` (as
    /// [`check_name`](Self::check_name) matches: subtrees and the exact name), whatever their
    /// state, dates, windows or parents. Exact: a client outside `reach` gets no block and no
    /// shadow match from `qname` under this policy, at any time (an extension is judged by its
    /// own jurisdictions).
    pub fn reach_of_name(&self, qname: &[u8], reach: &mut CountrySet) {
        if !self.may_apply_to_name(qname) {
            return;
        }
        let mut wire = WireName::unparsed(qname);
        if !wire.read() {
            return;
        }
        let key = wire.key();
        self.walk_name(&key, |_, rule| {
            if let Some(order) = self.order(rule) {
                reach.extend(&order.countries);
            }
        });
    }

    /// [`reach_of_name`](Self::reach_of_name) for an answer address (`ip` targets).
    pub fn reach_of_address(&self, addr: IpAddr, reach: &mut CountrySet) {
        self.addresses.visit(addr, |_, rule| {
            if let Some(order) = self.order(rule) {
                reach.extend(&order.countries);
            }
        });
    }

    /// [`reach_of_name`](Self::reach_of_name) for an authoritative server of the answer: its
    /// name (`nsdname`) and its addresses (`nsip`).
    pub fn reach_of_name_server(&self, name: &[u8], reach: &mut CountrySet) {
        self.name_servers.visit_name(name, |rule| {
            if let Some(order) = self.order(rule) {
                reach.extend(&order.countries);
            }
        });
    }

    /// [`reach_of_name_server`](Self::reach_of_name_server) for a server address (`nsip`).
    pub fn reach_of_name_server_address(&self, addr: IpAddr, reach: &mut CountrySet) {
        self.name_servers.addresses().visit(addr, |_, rule| {
            if let Some(order) = self.order(rule) {
                reach.extend(&order.countries);
            }
        });
    }

    /// Checks a query name (or a CNAME target) for a client.
    ///
    /// `qname` is the uncompressed DNS wire format (`\x03www\x07example\x03com\x00`), any case
    /// (it is lower-cased on the stack). A malformed name is allowed (it cannot match). `country`
    /// is the client's jurisdiction, `None` when unknown (then only global orders apply).
    /// Allocation-free unless something matches.
    #[inline]
    pub fn check_name(&self, qname: &[u8], country: Option<Country>, now: Timestamp) -> Verdict {
        let mut wire = WireName::unparsed(qname);
        if !wire.read() {
            return Verdict::allow();
        }
        let (base, overlay) = (&*self.base, &self.overlay.index);
        let min_labels = base.min_labels().min(overlay.min_labels());
        if min_labels == usize::MAX {
            return Verdict::allow();
        }
        let maybe = wire.any_prefix_hash(min_labels, |hash| {
            base.may_contain_hash(hash) || overlay.may_contain_hash(hash)
        });
        if !maybe {
            return Verdict::allow();
        }
        let key = wire.key();
        let mut hits: Vec<Hit> = Vec::new();
        self.walk_name(&key, |key_len, rule| {
            if let Some(order) = self.order(rule) {
                match self.status(order, country, now, false) {
                    MatchStatus::Fired => hits.push(Hit {
                        key_len,
                        rule,
                        shadow: false,
                    }),
                    MatchStatus::Shadow => hits.push(Hit {
                        key_len,
                        rule,
                        shadow: true,
                    }),
                    _ => {}
                }
            }
        });
        if hits.is_empty() {
            return Verdict::allow();
        }
        self.sort_hits(&mut hits);
        let full = key.key();
        self.verdict(&hits, |hit| MatchedTarget::Name {
            kind: if rule_is_subtree(hit.rule) {
                TargetKind::Subtree
            } else {
                TargetKind::Domain
            },
            name: name_from_key(&full[..hit.key_len]),
        })
    }

    /// Checks an address from an answer (A/AAAA) for a client. Only `ip` targets of orders with
    /// `block_addresses: true` block. IPv4-mapped IPv6 addresses are checked as IPv4.
    #[inline]
    pub fn check_address(&self, addr: IpAddr, country: Option<Country>, now: Timestamp) -> Verdict {
        self.check_prefixes(
            &self.addresses,
            addr,
            country,
            now,
            true,
            MatchedTarget::Prefix,
        )
    }

    /// Whether any `nsdname` target of this policy names the name server `name` (wire form, any
    /// case), for any client, at any time, in any state. `false` is exact.
    #[inline]
    pub fn may_apply_to_name_server(&self, name: &[u8]) -> bool {
        let mut any = false;
        self.name_servers.visit_name(name, |_| any = true);
        any
    }

    /// Whether any `nsip` target of this policy covers the name server address `addr` (any
    /// client, any time, any state). `false` is exact.
    #[inline]
    pub fn may_apply_to_name_server_address(&self, addr: IpAddr) -> bool {
        let mut any = false;
        self.name_servers.addresses().visit(addr, |_, _| any = true);
        any
    }

    /// Whether the policy has any `nsdname` or `nsip` target.
    #[inline]
    pub fn has_name_server_triggers(&self) -> bool {
        !self.name_servers.is_empty()
    }

    /// Checks the name of an authoritative server of the answer (an NS name of the zone cut
    /// that answered; wire form, any case) for a client: `nsdname` targets naming exactly
    /// that server (RPZ NSDNAME). Allocation-free unless something matches.
    #[inline]
    pub fn check_name_server(
        &self,
        name: &[u8],
        country: Option<Country>,
        now: Timestamp,
    ) -> Verdict {
        let mut hits: Vec<Hit> = Vec::new();
        self.name_servers.visit_name(name, |rule| {
            if let Some(order) = self.order(rule) {
                let shadow = match self.status(order, country, now, false) {
                    MatchStatus::Fired => false,
                    MatchStatus::Shadow => true,
                    _ => return,
                };
                hits.push(Hit {
                    key_len: name.len(),
                    rule,
                    shadow,
                });
            }
        });
        if hits.is_empty() {
            return Verdict::allow();
        }
        self.sort_hits(&mut hits);
        let text = crate::name::wire_to_text(name);
        self.verdict(&hits, |_| MatchedTarget::NameServer(text.clone()))
    }

    /// Checks an address of an authoritative server of the answer for a client: `nsip`
    /// targets whose prefix covers it (RPZ NSIP), whatever the order's `block_addresses`.
    #[inline]
    pub fn check_name_server_address(
        &self,
        addr: IpAddr,
        country: Option<Country>,
        now: Timestamp,
    ) -> Verdict {
        self.check_prefixes(
            self.name_servers.addresses(),
            addr,
            country,
            now,
            false,
            MatchedTarget::NameServerPrefix,
        )
    }

    /// The verdict of the prefixes of `index` covering `addr`; `address`: the rules are `ip`
    /// targets (enforced only with `block_addresses`).
    #[inline]
    fn check_prefixes(
        &self,
        index: &AddressIndex,
        addr: IpAddr,
        country: Option<Country>,
        now: Timestamp,
        address: bool,
        target: fn(ipnet::IpNet) -> MatchedTarget,
    ) -> Verdict {
        let mut hits: Vec<(ipnet::IpNet, Hit)> = Vec::new();
        index.visit(addr, |net, rule| {
            if let Some(order) = self.order(rule) {
                let shadow = match self.status(order, country, now, address) {
                    MatchStatus::Fired => false,
                    MatchStatus::Shadow => true,
                    _ => return,
                };
                hits.push((
                    net,
                    Hit {
                        key_len: usize::from(net.prefix_len()),
                        rule,
                        shadow,
                    },
                ));
            }
        });
        if hits.is_empty() {
            return Verdict::allow();
        }
        hits.sort_by(|a, b| self.precedence(&a.1, &b.1));
        let nets: HashMap<(usize, Rule), ipnet::IpNet> = hits
            .iter()
            .map(|(net, hit)| ((hit.key_len, hit.rule), *net))
            .collect();
        let plain: Vec<Hit> = hits.into_iter().map(|(_, hit)| hit).collect();
        self.verdict(&plain, |hit| {
            target(
                nets.get(&(hit.key_len, hit.rule))
                    .copied()
                    .unwrap_or_else(|| ipnet::IpNet::from(addr)),
            )
        })
    }

    /// Whether the order applies, for one client at one moment ([`status`]), and for an
    /// `extension`, whether its parent is in force too (state, dates, windows; the
    /// extension's own jurisdictions decide where): an extension of a suspended, lifted,
    /// expired or missing parent never matches; of a shadow parent, it is shadow at most.
    #[inline]
    fn status(
        &self,
        order: &OrderInfo,
        country: Option<Country>,
        now: Timestamp,
        address: bool,
    ) -> MatchStatus {
        let own = status(order, country, now, address);
        if order.kind != OrderKind::Extension
            || !matches!(own, MatchStatus::Fired | MatchStatus::Shadow)
        {
            return own;
        }
        match self.parent_status(order, now) {
            Ok(false) => own,
            Ok(true) => MatchStatus::Shadow,
            Err(why) => MatchStatus::ParentNotInForce(why),
        }
    }

    /// Whether the parents of an `extension` are in force at `now` (`Ok(true)`: one of them is
    /// shadow only), following extensions of extensions up to 8 levels.
    pub fn parent_status(&self, order: &OrderInfo, now: Timestamp) -> Result<bool, ParentStatus> {
        let mut shadow = false;
        let mut current = order;
        for _ in 0..MAX_EXTENSION_DEPTH {
            let (OrderKind::Extension, Some(parent)) = (current.kind, &current.parent) else {
                return Ok(shadow);
            };
            let Some(parent) = self.order_by_id(parent) else {
                return Err(ParentStatus::Missing);
            };
            match parent.state {
                OrderState::Active => {}
                OrderState::Shadow => shadow = true,
                other => return Err(ParentStatus::NotActive(other)),
            }
            match parent.time_status(now) {
                TimeStatus::InForce => {}
                TimeStatus::NotYetEffective => return Err(ParentStatus::NotYetEffective),
                TimeStatus::Expired => return Err(ParentStatus::Expired),
                TimeStatus::OutsideWindows => return Err(ParentStatus::OutsideWindows),
            }
            current = parent;
        }
        Err(ParentStatus::Missing)
    }

    /// Everything that matches a name, whether it applies or not and why, with the verdict
    /// [`check_name`](Self::check_name) gives.
    pub fn explain_name(
        &self,
        qname: &[u8],
        country: Option<Country>,
        now: Timestamp,
    ) -> Explanation {
        let verdict = self.check_name(qname, country, now);
        let Some(key) = WireKey::parse(qname) else {
            return Explanation {
                verdict,
                matches: Vec::new(),
            };
        };
        let mut found: Vec<(Hit, MatchStatus)> = Vec::new();
        self.walk_name(&key, |key_len, rule| {
            if let Some(order) = self.order(rule) {
                let status = self.status(order, country, now, false);
                let hit = Hit {
                    key_len,
                    rule,
                    shadow: status == MatchStatus::Shadow,
                };
                found.push((hit, status));
            }
        });
        let full = key.key();
        self.explanation(verdict, found, |hit| MatchedTarget::Name {
            kind: if rule_is_subtree(hit.rule) {
                TargetKind::Subtree
            } else {
                TargetKind::Domain
            },
            name: name_from_key(&full[..hit.key_len]),
        })
    }

    /// Everything that matches an address, whether it applies or not and why.
    pub fn explain_address(
        &self,
        addr: IpAddr,
        country: Option<Country>,
        now: Timestamp,
    ) -> Explanation {
        let verdict = self.check_address(addr, country, now);
        let mut found: Vec<(Hit, MatchStatus)> = Vec::new();
        let mut nets = HashMap::new();
        self.addresses.visit(addr, |net, rule| {
            if let Some(order) = self.order(rule) {
                let status = self.status(order, country, now, true);
                let key_len = usize::from(net.prefix_len());
                nets.insert((key_len, rule), net);
                let shadow = status == MatchStatus::Shadow;
                found.push((
                    Hit {
                        key_len,
                        rule,
                        shadow,
                    },
                    status,
                ));
            }
        });
        self.explanation(verdict, found, |hit| {
            MatchedTarget::Prefix(
                nets.get(&(hit.key_len, hit.rule))
                    .copied()
                    .unwrap_or_else(|| ipnet::IpNet::from(addr)),
            )
        })
    }

    /// The orders in the policy with their counts.
    pub fn orders(&self) -> impl Iterator<Item = (&Arc<OrderInfo>, OrderStats)> + '_ {
        self.orders
            .iter()
            .zip(self.stats.iter())
            .filter_map(|(order, stats)| order.as_ref().map(|o| (o, *stats)))
    }

    /// One order by id.
    pub fn order_by_id(&self, id: &str) -> Option<&Arc<OrderInfo>> {
        let index = *self.ids.get(id)? as usize;
        self.orders.get(index)?.as_ref()
    }

    /// Heap bytes held by the policy's indexes and order metadata: the name index (key records,
    /// bucket table, Bloom filter) and its side table of keys with several rules, the overlay
    /// (keys, rules, the overlay's own index, and an estimate of 48 bytes of map overhead per
    /// entry), the address map (capacity × entry size) and the order metadata (struct sizes plus
    /// string lengths). Not counted: allocator overhead and slack, and data
    /// shared with other policies through `Arc` is counted in full by each.
    pub fn memory_bytes(&self) -> usize {
        let overlay = &self.overlay;
        let overlay_bytes = overlay.index.memory_bytes()
            + overlay
                .added
                .iter()
                .map(|(k, r)| k.capacity() + r.capacity() * 4 + 48 + 48)
                .sum::<usize>()
            + overlay
                .removed
                .iter()
                .map(|(k, r)| k.len() + r.capacity() * 4 + 48 + 8)
                .sum::<usize>();
        let orders = self
            .orders
            .iter()
            .map(|o| 8 + o.as_deref().map_or(0, order_bytes))
            .sum::<usize>()
            + self.ids.keys().map(|k| k.len() + 48).sum::<usize>()
            + self.stats.len() * std::mem::size_of::<OrderStats>();
        self.base.memory_bytes()
            + overlay_bytes
            + self.addresses.memory_bytes()
            + self.name_servers.memory_bytes()
            + orders
    }

    /// Sizes, for status and metrics.
    pub fn stats(&self) -> PolicyStats {
        PolicyStats {
            orders: self.ids.len(),
            base_names: self.base.len(),
            overlay_names: self.overlay.added.len(),
            masked_names: self.overlay.removed.values().map(Vec::len).sum(),
            address_rules: self.addresses.len(),
            name_server_rules: self.name_servers.len(),
            memory_bytes: self.memory_bytes(),
        }
    }

    #[inline]
    fn order(&self, rule: Rule) -> Option<&OrderInfo> {
        self.orders.get(rule_order(rule))?.as_deref()
    }

    /// Calls `visit(key_len, rule)` for every live rule matching the name: subtree rules at the
    /// name and its ancestors, exact rules at the name itself.
    #[inline]
    fn walk_name(&self, key: &WireKey, mut visit: impl FnMut(usize, Rule)) {
        let full = key.key();
        let whole = if key.is_complete() {
            full.len()
        } else {
            usize::MAX
        };
        let mut filter = |key_len: usize, rule: Rule| {
            if rule_is_subtree(rule) || key_len == whole {
                visit(key_len, rule);
            }
        };
        let overlay = &*self.overlay;
        if overlay.removed.is_empty() {
            self.base.walk(full, &mut filter);
        } else {
            self.base.walk(full, |key_len, rule| {
                if let Some(masked) = overlay.removed.get(&full[..key_len]) {
                    if masked.contains(&rule) {
                        return;
                    }
                }
                filter(key_len, rule);
            });
        }
        if !overlay.index.is_empty() {
            overlay.index.walk(full, &mut filter);
        }
    }

    /// Most specific first (longest name or prefix; exact before subtree), then earliest
    /// effective_from (none = earliest), then order id.
    fn precedence(&self, a: &Hit, b: &Hit) -> Ordering {
        b.key_len
            .cmp(&a.key_len)
            .then_with(|| rule_is_subtree(a.rule).cmp(&rule_is_subtree(b.rule)))
            .then_with(|| match (self.order(a.rule), self.order(b.rule)) {
                (Some(x), Some(y)) => x
                    .effective_from
                    .cmp(&y.effective_from)
                    .then_with(|| x.id.cmp(&y.id)),
                _ => Ordering::Equal,
            })
            .then_with(|| a.rule.cmp(&b.rule))
    }

    fn sort_hits(&self, hits: &mut [Hit]) {
        hits.sort_by(|a, b| self.precedence(a, b));
    }

    fn matched(&self, hit: &Hit, target: &impl Fn(&Hit) -> MatchedTarget) -> Option<Match> {
        let order = self.orders.get(rule_order(hit.rule))?.as_ref()?;
        Some(Match {
            order: Arc::clone(order),
            target: target(hit),
        })
    }

    /// The verdict from applicable hits sorted by precedence.
    fn verdict(&self, hits: &[Hit], target: impl Fn(&Hit) -> MatchedTarget) -> Verdict {
        let mut fired = None;
        let mut others = Vec::new();
        let mut shadow = Vec::new();
        for hit in hits {
            let Some(matched) = self.matched(hit, &target) else {
                continue;
            };
            if hit.shadow {
                shadow.push(matched);
            } else if fired.is_none() {
                fired = Some(matched);
            } else {
                others.push(matched);
            }
        }
        match fired {
            Some(fired) => Verdict::Block(Box::new(Block {
                fired,
                others,
                shadow,
            })),
            None => Verdict::Allow { shadow },
        }
    }

    fn explanation(
        &self,
        verdict: Verdict,
        mut found: Vec<(Hit, MatchStatus)>,
        target: impl Fn(&Hit) -> MatchedTarget,
    ) -> Explanation {
        found.sort_by(|a, b| self.precedence(&a.0, &b.0));
        let mut fired = false;
        let matches = found
            .iter()
            .filter_map(|(hit, status)| {
                let status = match status {
                    MatchStatus::Fired if fired => MatchStatus::Outranked,
                    MatchStatus::Fired => {
                        fired = true;
                        MatchStatus::Fired
                    }
                    other => *other,
                };
                Some(ExplainedMatch {
                    matched: self.matched(hit, &target)?,
                    status,
                })
            })
            .collect();
        Explanation { verdict, matches }
    }
}

impl Default for CompiledPolicy {
    fn default() -> Self {
        CompiledPolicy::empty()
    }
}

impl PolicyChange {
    /// The changes that turn `old` into `new`: one [`PolicyChange::Update`] with the target
    /// difference when both have the same id (cheap to apply whatever the order's size),
    /// otherwise a removal of `old` and a [`PolicyChange::Put`] of `new`.
    pub fn between(old: &ValidatedOrder, new: &ValidatedOrder) -> Vec<PolicyChange> {
        if old.id() != new.id() {
            return vec![
                PolicyChange::Remove(old.id().to_owned()),
                PolicyChange::Put(new.clone()),
            ];
        }
        let before: std::collections::HashSet<&ValidatedTarget> = old.targets().iter().collect();
        let after: std::collections::HashSet<&ValidatedTarget> = new.targets().iter().collect();
        vec![PolicyChange::Update(OrderUpdate {
            order: Arc::clone(new.info()),
            added: new
                .targets()
                .iter()
                .filter(|t| !before.contains(t))
                .cloned()
                .collect(),
            removed: old
                .targets()
                .iter()
                .filter(|t| !after.contains(t))
                .cloned()
                .collect(),
        })]
    }
}

/// Applies target changes to the overlay and the address index.
struct Editor<'a> {
    base: &'a NameIndex,
    added: &'a mut BTreeMap<Vec<u8>, Vec<Rule>>,
    removed: &'a mut HashMap<Box<[u8]>, Vec<Rule>>,
    addresses: &'a mut AddressIndex,
    name_servers: &'a mut NameServerRules,
}

impl Editor<'_> {
    fn add(&mut self, order: u32, target: &ValidatedTarget, stats: &mut OrderStats) {
        match (target.kind(), target.value()) {
            (kind @ (TargetKind::Domain | TargetKind::Subtree), TargetValue::Name(name)) => {
                let key = key_of(name);
                let rule = rule(order, kind == TargetKind::Subtree);
                if let Some(masked) = self.removed.get_mut(key.as_slice()) {
                    if let Some(at) = masked.iter().position(|r| *r == rule) {
                        masked.swap_remove(at);
                        if masked.is_empty() {
                            self.removed.remove(key.as_slice());
                        }
                        stats.targets += 1;
                        return;
                    }
                }
                if self.base.get(&key).contains(&rule) {
                    return;
                }
                let rules = self.added.entry(key).or_default();
                if let Err(at) = rules.binary_search(&rule) {
                    rules.insert(at, rule);
                    stats.targets += 1;
                }
            }
            (TargetKind::Ip, TargetValue::Prefix(net)) => {
                let rule = rule(order, false);
                // `insert` ignores duplicates; count only new ones.
                if !self.addresses.contains(*net, rule) {
                    self.addresses.insert(*net, rule);
                    stats.targets += 1;
                }
            }
            _ if NameServerRules::holds(target) => {
                if self.name_servers.add(order, target) {
                    stats.targets += 1;
                }
            }
            _ => stats.unenforced += 1,
        }
    }

    fn remove(&mut self, order: u32, target: &ValidatedTarget, stats: &mut OrderStats) {
        match (target.kind(), target.value()) {
            (kind @ (TargetKind::Domain | TargetKind::Subtree), TargetValue::Name(name)) => {
                let key = key_of(name);
                let rule = rule(order, kind == TargetKind::Subtree);
                if let Some(rules) = self.added.get_mut(&key) {
                    if let Ok(at) = rules.binary_search(&rule) {
                        rules.remove(at);
                        if rules.is_empty() {
                            self.added.remove(&key);
                        }
                        stats.targets = stats.targets.saturating_sub(1);
                        return;
                    }
                }
                if self.base.get(&key).contains(&rule) {
                    let masked = self.removed.entry(key.into_boxed_slice()).or_default();
                    if !masked.contains(&rule) {
                        masked.push(rule);
                        stats.targets = stats.targets.saturating_sub(1);
                    }
                }
            }
            (TargetKind::Ip, TargetValue::Prefix(net)) => {
                if self.addresses.remove(*net, rule(order, false)) {
                    stats.targets = stats.targets.saturating_sub(1);
                }
            }
            _ if NameServerRules::holds(target) => {
                if self.name_servers.remove(order, target) {
                    stats.targets = stats.targets.saturating_sub(1);
                }
            }
            _ => stats.unenforced = stats.unenforced.saturating_sub(1),
        }
    }

    /// Drops an order's overlay entries (its base entries are skipped from now on because its
    /// slot is `None`).
    fn forget_order(&mut self, order: usize) {
        self.added.retain(|_, rules| {
            rules.retain(|r| rule_order(*r) != order);
            !rules.is_empty()
        });
        self.removed.retain(|_, rules| {
            rules.retain(|r| rule_order(*r) != order);
            !rules.is_empty()
        });
    }
}

impl Overlay {
    fn empty() -> Overlay {
        Overlay {
            index: NameIndex::empty(),
            added: BTreeMap::new(),
            removed: HashMap::new(),
        }
    }

    fn build(
        added: BTreeMap<Vec<u8>, Vec<Rule>>,
        removed: HashMap<Box<[u8]>, Vec<Rule>>,
    ) -> Result<Overlay, CompileError> {
        let mut builder = NameIndexBuilder::new(added.len());
        for (key, rules) in &added {
            builder.insert(key, rules)?;
        }
        Ok(Overlay {
            index: builder.finish()?,
            added,
            removed,
        })
    }
}

/// Whether the order applies, for one client at one moment. `Fired` stands for "applies and
/// blocks" (precedence is decided later), `Shadow` for "applies, shadow only".
#[inline]
fn status(
    order: &OrderInfo,
    country: Option<Country>,
    now: Timestamp,
    address: bool,
) -> MatchStatus {
    let shadow = match order.state {
        OrderState::Active => false,
        OrderState::Shadow => true,
        other => return MatchStatus::NotActive(other),
    };
    if address && !order.block_addresses {
        return MatchStatus::AddressBlockingOff;
    }
    if !order.countries.applies_to(country) {
        return match country {
            Some(_) => MatchStatus::OtherJurisdiction,
            None => MatchStatus::UnknownJurisdiction,
        };
    }
    match order.time_status(now) {
        TimeStatus::InForce if shadow => MatchStatus::Shadow,
        TimeStatus::InForce => MatchStatus::Fired,
        TimeStatus::NotYetEffective => MatchStatus::NotYetEffective,
        TimeStatus::Expired => MatchStatus::Expired,
        TimeStatus::OutsideWindows => MatchStatus::OutsideWindows,
    }
}

fn is_name_rule(target: &ValidatedTarget) -> bool {
    matches!(target.kind(), TargetKind::Domain | TargetKind::Subtree)
}

fn key_of(name: &str) -> Vec<u8> {
    crate::name::key_from_name(name)
}

/// Sorts the entries (by hash, then key, then rule), merges the rules of equal keys, builds the
/// index and counts each order's distinct name targets into `stats` (added to what is there).
/// `arena` holds each entry's key as `[length][key]` at its offset.
///
/// Cache-conscious: a sort of all entries by hash followed by reading their keys in that order
/// would miss the cache (and the TLB) on nearly every key of a 10M-name arena. Instead, one
/// sequential pass scatters entries and keys into partitions by the top bits of the hash (a
/// counting sort: a few hundred write streams, which the caches absorb), and each partition,
/// small enough for L2, is then sorted and written out in hash order.
fn build_index(
    arena: Vec<u8>,
    entries: Vec<Entry>,
    stats: &mut [OrderStats],
) -> Result<NameIndex, CompileError> {
    // About 8192 entries (≈ 300 KB of keys and entries) per partition, at most 1024 partitions.
    let bits = (entries.len() / 8192)
        .next_power_of_two()
        .trailing_zeros()
        .min(10);
    let partition = |hash: u64| match bits {
        0 => 0,
        bits => (hash >> (64 - bits)) as usize,
    };
    // The arena is exactly the concatenation of the entries' records (built together), so the
    // lookups below cannot fail; a failure is reported (as an over-full index) rather than
    // assumed away.
    let record = |arena: &[u8], offset: u32| -> Result<std::ops::Range<usize>, CompileError> {
        let at = offset as usize;
        let Some(len) = arena.get(at) else {
            return Err(CompileError::TooManyNames);
        };
        Ok(at..at + 1 + usize::from(*len))
    };
    // Entries and key bytes per partition, then where each partition starts.
    let mut starts = vec![(0usize, 0usize); (1 << bits) + 1];
    for entry in &entries {
        let range = record(&arena, entry.offset)?;
        let count = &mut starts[partition(entry.hash) + 1];
        count.0 += 1;
        count.1 += range.len();
    }
    for p in 1..starts.len() {
        starts[p].0 += starts[p - 1].0;
        starts[p].1 += starts[p - 1].1;
    }
    let mut cursors = starts.clone();
    let mut keys = vec![0u8; arena.len()];
    let mut spread = vec![Entry::default(); entries.len()];
    for entry in &entries {
        let range = record(&arena, entry.offset)?;
        let cursor = &mut cursors[partition(entry.hash)];
        let to = cursor.1..cursor.1 + range.len();
        let (Some(to_bytes), Some(from_bytes)) = (keys.get_mut(to.clone()), arena.get(range))
        else {
            return Err(CompileError::TooManyNames);
        };
        to_bytes.copy_from_slice(from_bytes);
        spread[cursor.0] = Entry {
            hash: entry.hash,
            // `keys` is as long as `arena`, whose offsets fit u32 (checked when it was built).
            offset: to.start as u32,
            rule: entry.rule,
        };
        *cursor = (cursor.0 + 1, to.end);
    }
    drop(entries);
    drop(arena);

    let key = |e: &Entry| {
        let at = e.offset as usize;
        let len = keys.get(at).map_or(0, |len| usize::from(*len));
        keys.get(at + 1..at + 1 + len).unwrap_or(&[])
    };
    let mut builder = NameIndexBuilder::new(spread.len());
    let mut rules: Vec<Rule> = Vec::new();
    for p in 0..starts.len() - 1 {
        let part = &mut spread[starts[p].0..starts[p + 1].0];
        // Equal keys have equal hashes, so they end up next to each other; different keys with
        // the same hash are told apart by their bytes.
        part.sort_unstable_by(|a, b| {
            a.hash
                .cmp(&b.hash)
                .then_with(|| key(a).cmp(key(b)))
                .then_with(|| a.rule.cmp(&b.rule))
        });
        let mut i = 0;
        while i < part.len() {
            let hash = part[i].hash;
            let current = key(&part[i]);
            rules.clear();
            while i < part.len() && part[i].hash == hash && key(&part[i]) == current {
                let rule = part[i].rule;
                if rules.last() != Some(&rule) {
                    rules.push(rule);
                    if let Some(s) = stats.get_mut(rule_order(rule)) {
                        s.targets += 1;
                    }
                }
                i += 1;
            }
            builder.insert_hashed(current, hash, &rules)?;
        }
    }
    builder.finish()
}

fn addresses_stats(addresses: &AddressIndex, stats: &mut [OrderStats]) {
    addresses.for_each_rule(|rule| {
        if let Some(s) = stats.get_mut(rule_order(rule)) {
            s.targets += 1;
        }
    });
}

fn order_bytes(order: &OrderInfo) -> usize {
    std::mem::size_of::<OrderInfo>()
        + order.id.len()
        + order.authority.len()
        + order.reference.len()
        + order.legal_basis.len()
        + order
            .requested_by
            .iter()
            .map(|s| s.len() + 24)
            .sum::<usize>()
        + order
            .jurisdictions
            .iter()
            .map(|s| s.len() + 24)
            .sum::<usize>()
        + order.windows.len() * std::mem::size_of::<crate::order::Window>()
        + order.notice.text.len()
        + order.notice.lang.len()
        + order.notice.url.len()
        + order
            .overrides
            .iter()
            .map(|o| o.target.len() + o.reason.len() + 80)
            .sum::<usize>()
}
