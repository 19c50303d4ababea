//! Per-client query rate limit and response-rate limiting (RRL, as BIND's), for UDP.
//!
//! ```text
//!  UDP query, parsed ─► exempt? (TCP/DoT/DoH/DoQ, a valid server cookie, an exempt prefix) ─► on
//!        │
//!        ├─ queries of the client's prefix (/24, /56) over their rate? ─► drop, or every
//!        │   `slip`-th one a truncated (TC=1) answer so that a real client retries over TCP
//!        ├─ a cache miss (the query would be resolved) and the prefix's misses over their
//!        │   rate? ─► drop / slip as above, before any upstream work (random-subdomain floods)
//!        └─ answered ─► the response's class (answer, large, NXDOMAIN, REFUSED, error) of
//!                       that prefix over its rate? ─► drop / slip as above
//! ```
//!
//! The accounts live in one fixed-size table shared by every UDP worker ([`RateTable`]):
//! entries addressed by a seeded hash of (prefix, class), two candidate slots per key, the
//! older one replaced when neither holds the key. Checking a query is one hash and one
//! compare-and-swap on an atomic; nothing is allocated and the table never grows.
//!
//! The account of a key is a credit balance (a token bucket that may go into debt): every
//! second adds `rate` credits, up to `rate`; every response takes one; a response taken when
//! the balance is below zero is limited. The debt is floored at `window × rate`, so a client
//! that flooded has to slow below the rate for up to `window` seconds before it is answered
//! again (BIND's `window`).
//!
//! # Limitations
//! - Only UDP is limited: a TCP, DoT, DoH or DoQ client proved its address in a handshake and
//!   is bounded by the connection limits instead.
//! - Two prefixes whose keys share both candidate slots evict each other; a flood from many
//!   prefixes (spoofed sources) can so reset a limited client's account. The table size
//!   bounds memory, not accuracy.
//! - The clock is the pipeline's Unix second: rates are per whole second.

use std::hash::BuildHasher;
use std::net::IpAddr;
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};

use ipnet::IpNet;

/// What a response (or a query) counts as: each class of a prefix has its own account.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum RateClass {
    /// Queries received (the per-client query rate limit).
    Queries,
    /// NOERROR responses up to [`RateLimitConfig::large_response_size`] bytes.
    Answers,
    /// NOERROR responses longer than that (amplification).
    Large,
    /// NXDOMAIN responses (random-subdomain floods).
    NxDomain,
    /// REFUSED responses.
    Refused,
    /// Every other RCODE (SERVFAIL, FORMERR, NOTIMP, ...).
    Errors,
    /// Queries that miss the cache and would be resolved: what a random-subdomain flood costs
    /// (checked before the resolution starts, so a client over it costs no upstream work;
    /// cache hits never count here).
    Misses,
}

impl RateClass {
    /// Every class, in the order of [`Rates`] and of the counters.
    pub const ALL: [RateClass; 7] = [
        RateClass::Queries,
        RateClass::Answers,
        RateClass::Large,
        RateClass::NxDomain,
        RateClass::Refused,
        RateClass::Errors,
        RateClass::Misses,
    ];

    /// The label in `/metrics` (`juris_rate_limited_total{class=...}`).
    pub fn label(self) -> &'static str {
        match self {
            RateClass::Queries => "queries",
            RateClass::Answers => "answers",
            RateClass::Large => "large",
            RateClass::NxDomain => "nxdomain",
            RateClass::Refused => "refused",
            RateClass::Errors => "errors",
            RateClass::Misses => "misses",
        }
    }

    pub(crate) fn index(self) -> usize {
        self as usize
    }

    /// The class of a response of `len` bytes whose header is at the start of `response`.
    #[inline]
    pub fn of_response(response: &[u8], large_size: usize) -> RateClass {
        let rcode = response.get(3).map_or(0, |b| b & 0x0f);
        match rcode {
            0 if response.len() > large_size => RateClass::Large,
            0 => RateClass::Answers,
            3 => RateClass::NxDomain,
            5 => RateClass::Refused,
            _ => RateClass::Errors,
        }
    }
}

/// Per-second rates per client prefix, one per [`RateClass`]; 0 means unlimited.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Rates {
    /// Indexed by [`RateClass::ALL`]'s order.
    pub per_class: [u32; 7],
}

impl Rates {
    /// The rate of `class` (0: unlimited).
    pub fn of(&self, class: RateClass) -> u32 {
        self.per_class[class.index()]
    }

    /// Sets the rate of `class`.
    pub fn set(&mut self, class: RateClass, rate: u32) {
        self.per_class[class.index()] = rate;
    }

    /// No class is limited.
    pub fn is_unlimited(&self) -> bool {
        self.per_class.iter().all(|&r| r == 0)
    }
}

/// Rates for the clients of one prefix instead of the global ones (an exempt prefix has every
/// rate 0).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PrefixRates {
    /// The clients it applies to.
    pub prefix: IpNet,
    /// Their rates.
    pub rates: Rates,
}

/// `[server.rate_limit]`, validated. Every rate 0 (the default) switches limiting off.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RateLimitConfig {
    /// Rates for every client not in [`RateLimitConfig::prefixes`].
    pub rates: Rates,
    /// Per-prefix rates (exempt or stricter); the longest matching prefix wins.
    pub prefixes: Vec<PrefixRates>,
    /// Every `slip`-th limited response is sent truncated (TC=1, no records) instead of
    /// dropped; 0 drops all, 1 truncates all. Default 2 (BIND's).
    pub slip: u32,
    /// [`RateLimitConfig::slip`] for the [`RateClass::Misses`] class alone (a flood of cache
    /// misses: 0 drops them all, so that the flood costs no answer). Default `None`: `slip`.
    pub misses_slip: Option<u32>,
    /// Seconds a client's debt can reach: how long a flood is remembered. Default 15 (BIND's).
    pub window: u32,
    /// IPv4 clients are grouped by this prefix length. Default 24.
    pub ipv4_prefix_len: u8,
    /// IPv6 clients are grouped by this prefix length. Default 56.
    pub ipv6_prefix_len: u8,
    /// NOERROR responses longer than this are in the [`RateClass::Large`] class. Default 1024.
    pub large_response_size: u16,
    /// Accounts in the table (rounded up to a power of two; 32 bytes each). Default 65536.
    pub table_size: usize,
    /// Prefixes over their rate by far dropped in the kernel (`kernel_drop_after`,
    /// `kernel_drop_seconds`, `kernel_drop_max_prefixes`; design 0050). Default off.
    pub kernel_drop: crate::kdrop::KernelDropConfig,
}

impl Default for RateLimitConfig {
    fn default() -> Self {
        Self {
            rates: Rates::default(),
            prefixes: Vec::new(),
            slip: 2,
            misses_slip: None,
            window: 15,
            ipv4_prefix_len: 24,
            ipv6_prefix_len: 56,
            large_response_size: 1024,
            table_size: 65_536,
            kernel_drop: crate::kdrop::KernelDropConfig::default(),
        }
    }
}

/// The most a rate may be (with `window` ≤ 3600, the debt fits an `i64` comfortably; the
/// balance is kept in 32 bits, so `window × rate` must stay below 2^31).
pub const MAX_RATE: u32 = 1_000_000;
/// The longest window, seconds.
pub const MAX_WINDOW: u32 = 600;
/// The largest table.
pub const MAX_TABLE_SIZE: usize = 1 << 24;
/// The largest `misses_slip` a configuration file may give (BIND RRL's `slip` range,
/// 0..=10; `slip` itself is not bounded, as before).
pub const MAX_SLIP: u32 = 10;

impl RateLimitConfig {
    /// Every how many limited responses of `class` one is sent truncated (0: none).
    #[inline]
    pub fn slip_of(&self, class: RateClass) -> u32 {
        match (class, self.misses_slip) {
            (RateClass::Misses, Some(slip)) => slip,
            _ => self.slip,
        }
    }

    /// Whether any client is limited at all.
    pub fn is_enabled(&self) -> bool {
        !self.rates.is_unlimited() || self.prefixes.iter().any(|p| !p.rates.is_unlimited())
    }

    /// Checks ranges.
    pub fn validate(&self) -> Result<(), &'static str> {
        let all = std::iter::once(&self.rates).chain(self.prefixes.iter().map(|p| &p.rates));
        for rates in all {
            if rates.per_class.iter().any(|&r| r > MAX_RATE) {
                return Err("rate_limit: a rate is above 1000000 per second");
            }
        }
        if self.window == 0 || self.window > MAX_WINDOW {
            return Err("rate_limit.window must be between 1 and 600 seconds");
        }
        if self.ipv4_prefix_len == 0 || self.ipv4_prefix_len > 32 {
            return Err("rate_limit.ipv4_prefix_len must be between 1 and 32");
        }
        if self.ipv6_prefix_len == 0 || self.ipv6_prefix_len > 128 {
            return Err("rate_limit.ipv6_prefix_len must be between 1 and 128");
        }
        if self.table_size == 0 || self.table_size > MAX_TABLE_SIZE {
            return Err("rate_limit.table_size must be between 1 and 16777216");
        }
        if self.large_response_size < 512 {
            return Err("rate_limit.large_response_size must be at least 512");
        }
        self.kernel_drop.validate()
    }
}

/// What the limiter says about one query or response.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    /// Within the rate (or not limited).
    Pass,
    /// Over the rate: send nothing.
    Drop,
    /// Over the rate: send a truncated response (TC=1) instead.
    Slip,
}

/// The rate limiter of a running server: its settings and its table. Replaced whole when a
/// SIGHUP brings new settings (the accounts start afresh then).
#[derive(Debug)]
pub struct RateLimiter {
    config: RateLimitConfig,
    /// Per-prefix rates, longest prefix first.
    prefixes: Vec<PrefixRates>,
    table: RateTable,
    /// Where a prefix over `kernel_drop.after` limited per second goes (design 0050).
    kernel_drop: Option<std::sync::Arc<crate::kdrop::KernelDrop>>,
}

impl RateLimiter {
    /// A limiter with `config` (validated by the caller: [`RateLimitConfig::validate`]).
    pub fn new(config: RateLimitConfig) -> Self {
        let mut prefixes = config.prefixes.clone();
        prefixes.sort_by_key(|p| std::cmp::Reverse(p.prefix.prefix_len()));
        let table = RateTable::new(config.table_size);
        Self {
            config,
            prefixes,
            table,
            kernel_drop: None,
        }
    }

    /// A limiter that lists a prefix in `kernel_drop` when one of its accounts has
    /// `config.kernel_drop.after` queries or responses limited within one second.
    pub fn with_kernel_drop(
        config: RateLimitConfig,
        kernel_drop: std::sync::Arc<crate::kdrop::KernelDrop>,
    ) -> Self {
        Self {
            kernel_drop: Some(kernel_drop),
            ..Self::new(config)
        }
    }

    /// The settings in force.
    pub fn config(&self) -> &RateLimitConfig {
        &self.config
    }

    /// The rates that apply to `client`.
    #[inline]
    fn rates_for(&self, client: IpAddr) -> &Rates {
        if self.prefixes.is_empty() {
            return &self.config.rates;
        }
        let client = canonical(client);
        self.prefixes
            .iter()
            .find(|p| p.prefix.contains(&client))
            .map_or(&self.config.rates, |p| &p.rates)
    }

    /// Counts one query or response of `class` from `client` at Unix second `now`; `Pass`
    /// when it is within the client prefix's rate. Allocation-free, lock-free.
    #[inline]
    pub fn check(&self, client: IpAddr, class: RateClass, now: u64) -> Verdict {
        let rate = self.rates_for(client).of(class);
        if rate == 0 {
            return Verdict::Pass;
        }
        let prefix = self.prefix_of(client);
        let key = self.table.key(prefix, class);
        let after = self.config.kernel_drop.after;
        match self
            .table
            .debit(key, rate, self.config.window, now, after != 0)
        {
            None => Verdict::Pass,
            Some((limited, this_second)) => {
                if after != 0 && this_second == after {
                    self.escalate(client, this_second);
                }
                let slip = self.config.slip_of(class);
                if slip != 0 && limited % slip == 0 {
                    Verdict::Slip
                } else {
                    Verdict::Drop
                }
            }
        }
    }

    /// `client`'s prefix reached `kernel_drop.after` limited in one second: list it.
    #[cold]
    fn escalate(&self, client: IpAddr, count: u32) {
        if let Some(list) = &self.kernel_drop {
            let prefix = crate::kdrop::prefix_net(
                canonical(client),
                self.config.ipv4_prefix_len,
                self.config.ipv6_prefix_len,
            );
            list.request(prefix, count);
        }
    }

    /// The response class of `response` (the bytes about to be sent).
    #[inline]
    pub fn class_of(&self, response: &[u8]) -> RateClass {
        RateClass::of_response(response, usize::from(self.config.large_response_size))
    }

    /// Whether responses to `client` can be limited at all (some response class has a rate).
    #[inline]
    pub fn limits_responses(&self, client: IpAddr) -> bool {
        let rates = self.rates_for(client);
        [
            RateClass::Answers,
            RateClass::Large,
            RateClass::NxDomain,
            RateClass::Refused,
            RateClass::Errors,
        ]
        .into_iter()
        .any(|class| rates.of(class) != 0)
    }

    /// The table's memory, bytes (fixed at construction).
    pub fn table_bytes(&self) -> usize {
        self.table.slots.len() * std::mem::size_of::<Slot>()
    }

    /// `client`'s prefix as 128 bits (IPv4 as IPv4-mapped), host bits cleared.
    #[inline]
    fn prefix_of(&self, client: IpAddr) -> u128 {
        match canonical(client) {
            IpAddr::V4(a) => {
                let bits = u32::from(a) & mask32(self.config.ipv4_prefix_len);
                u128::from(bits) | (0xffff << 32)
            }
            IpAddr::V6(a) => u128::from(a) & mask128(self.config.ipv6_prefix_len),
        }
    }
}

/// An IPv4-mapped IPv6 address as IPv4 (as the access list sees it).
#[inline]
fn canonical(client: IpAddr) -> IpAddr {
    match client {
        IpAddr::V6(a) => a.to_ipv4_mapped().map_or(client, IpAddr::V4),
        v4 => v4,
    }
}

fn mask32(len: u8) -> u32 {
    u32::MAX
        .checked_shl(32 - u32::from(len.min(32)))
        .unwrap_or(0)
}

fn mask128(len: u8) -> u128 {
    u128::MAX
        .checked_shl(128 - u32::from(len.min(128)))
        .unwrap_or(0)
}

/// One account: the key it holds (0: none) and its state, the Unix second of the last update
/// (high 32 bits) and the balance (low 32 bits, signed), and how many of its responses were
/// limited (for `slip`), and how many were limited in the last second that had one (high 32
/// bits: the second, low: the count; for `kernel_drop`).
#[derive(Debug, Default)]
#[repr(align(32))]
struct Slot {
    key: AtomicU64,
    state: AtomicU64,
    limited: AtomicU32,
    burst: AtomicU64,
}

/// The fixed-size table of accounts, shared by the UDP workers.
#[derive(Debug)]
pub(crate) struct RateTable {
    slots: Box<[Slot]>,
    mask: usize,
    hasher: foldhash::fast::RandomState,
}

impl RateTable {
    fn new(size: usize) -> Self {
        let size = size.clamp(2, MAX_TABLE_SIZE).next_power_of_two();
        Self {
            slots: (0..size).map(|_| Slot::default()).collect(),
            mask: size - 1,
            hasher: foldhash::fast::RandomState::default(),
        }
    }

    /// The key of (prefix, class): a seeded hash, never 0.
    #[inline]
    fn key(&self, prefix: u128, class: RateClass) -> u64 {
        self.hasher.hash_one((prefix, class as u8)) | 1
    }

    /// Takes one credit from `key`'s account at second `now`. `None` when the balance covered
    /// it; otherwise how many responses of the account were limited, this one included, and
    /// (with `per_second`, else 0) how many in second `now`.
    #[inline]
    fn debit(
        &self,
        key: u64,
        rate: u32,
        window: u32,
        now: u64,
        per_second: bool,
    ) -> Option<(u32, u32)> {
        let first = (key as usize) & self.mask;
        let second = first ^ 1;
        let slot = if self.slots[first].key.load(Ordering::Relaxed) == key {
            &self.slots[first]
        } else if self.slots[second].key.load(Ordering::Relaxed) == key {
            &self.slots[second]
        } else {
            // Neither holds it: take the one updated longer ago, with a full balance.
            let age = |s: &Slot| s.state.load(Ordering::Relaxed) >> 32;
            let slot = if age(&self.slots[second]) < age(&self.slots[first]) {
                &self.slots[second]
            } else {
                &self.slots[first]
            };
            slot.key.store(key, Ordering::Relaxed);
            slot.state
                .store(pack(now, i64::from(rate)), Ordering::Relaxed);
            slot.limited.store(0, Ordering::Relaxed);
            slot.burst.store(0, Ordering::Relaxed);
            slot
        };
        let rate = i64::from(rate);
        let floor = -(rate * i64::from(window));
        let mut current = slot.state.load(Ordering::Relaxed);
        loop {
            let (then, balance) = unpack(current);
            let elapsed = now.saturating_sub(then).min(u64::from(MAX_WINDOW) + 1);
            let refilled = (balance + rate * elapsed as i64).min(rate);
            let after = (refilled - 1).max(floor);
            let next = pack(now.max(then), after);
            match slot.state.compare_exchange_weak(
                current,
                next,
                Ordering::Relaxed,
                Ordering::Relaxed,
            ) {
                Ok(_) if refilled > 0 => return None,
                Ok(_) => {
                    let limited = slot.limited.fetch_add(1, Ordering::Relaxed) + 1;
                    let this_second = if per_second {
                        count_in_second(&slot.burst, now)
                    } else {
                        0
                    };
                    return Some((limited, this_second));
                }
                Err(seen) => current = seen,
            }
        }
    }
}

/// Counts one more in `burst` (second | count) for second `now`; the count in `now`.
fn count_in_second(burst: &AtomicU64, now: u64) -> u32 {
    let second = (now & 0xffff_ffff) << 32;
    let mut current = burst.load(Ordering::Relaxed);
    loop {
        let next = if current & !0xffff_ffff == second {
            current.saturating_add(1).min(second | 0xffff_ffff)
        } else {
            second | 1
        };
        match burst.compare_exchange_weak(current, next, Ordering::Relaxed, Ordering::Relaxed) {
            Ok(_) => return next as u32,
            Err(seen) => current = seen,
        }
    }
}

#[inline]
fn pack(second: u64, balance: i64) -> u64 {
    // The balance lies in [-(MAX_RATE × MAX_WINDOW), MAX_RATE]: it fits 32 bits signed.
    ((second & 0xffff_ffff) << 32) | u64::from(balance as i32 as u32)
}

#[inline]
fn unpack(state: u64) -> (u64, i64) {
    (state >> 32, i64::from(state as u32 as i32))
}

/// Makes `response` (`len` bytes) a truncated one in place: the header (TC=1, no records)
/// and the question it echoes. `None` if the response holds no readable question.
pub(crate) fn truncate_response(response: &mut [u8], len: usize) -> Option<usize> {
    let message = response.get(..len)?;
    let qdcount = u16::from_be_bytes([*message.get(4)?, *message.get(5)?]);
    let mut end = 12;
    if qdcount == 1 {
        loop {
            let label = usize::from(*message.get(end)?);
            if label > 63 {
                return None;
            }
            end += 1 + label;
            if label == 0 {
                break;
            }
        }
        end += 4;
        if end > len {
            return None;
        }
    }
    response[2] |= 0x02;
    response[6..12].fill(0);
    Some(end)
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used, reason = "test code")]
mod tests {
    use super::*;

    fn limiter(queries: u32, slip: u32) -> RateLimiter {
        let mut rates = Rates::default();
        rates.set(RateClass::Queries, queries);
        rates.set(RateClass::NxDomain, 2);
        RateLimiter::new(RateLimitConfig {
            rates,
            slip,
            window: 3,
            ..RateLimitConfig::default()
        })
    }

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    fn count(
        limiter: &RateLimiter,
        client: &str,
        class: RateClass,
        n: usize,
        now: u64,
    ) -> [usize; 3] {
        let mut seen = [0; 3];
        for _ in 0..n {
            match limiter.check(ip(client), class, now) {
                Verdict::Pass => seen[0] += 1,
                Verdict::Drop => seen[1] += 1,
                Verdict::Slip => seen[2] += 1,
            }
        }
        seen
    }

    /// One class limited to `rate`, limited queries all dropped.
    fn only(class: RateClass, rate: u32) -> RateLimitConfig {
        let mut rates = Rates::default();
        rates.set(class, rate);
        RateLimitConfig {
            rates,
            slip: 0,
            ..RateLimitConfig::default()
        }
    }

    #[test]
    fn misses_have_their_own_account_and_limit_no_response() {
        let l = RateLimiter::new(only(RateClass::Misses, 5));
        assert!(l.config().is_enabled());
        assert!(!l.limits_responses(ip("192.0.2.1")));
        for (client, class, n, want) in [
            ("192.0.2.1", RateClass::Misses, 8, [5, 3, 0]),
            // Its queries and responses are not limited; another /24 has its own misses.
            ("192.0.2.1", RateClass::Queries, 8, [8, 0, 0]),
            ("192.0.2.9", RateClass::NxDomain, 8, [8, 0, 0]),
            ("198.51.100.1", RateClass::Misses, 5, [5, 0, 0]),
        ] {
            assert_eq!(count(&l, client, class, n, 100), want, "{client} {class:?}");
        }
    }

    #[test]
    fn the_misses_class_has_its_own_slip() {
        let mut config = only(RateClass::Misses, 2);
        config.rates.set(RateClass::Queries, 2);
        config.slip = 1;
        config.misses_slip = Some(0);
        let l = RateLimiter::new(config);
        // Limited misses all dropped; limited queries all truncated (slip 1).
        assert_eq!(count(&l, "192.0.2.1", RateClass::Misses, 6, 100), [2, 4, 0]);
        assert_eq!(
            count(&l, "192.0.2.1", RateClass::Queries, 6, 100),
            [2, 0, 4]
        );
    }

    #[test]
    fn a_prefix_is_handed_to_the_kernel_drop_once_per_second_at_the_threshold() {
        use crate::kdrop::{KernelDrop, KernelDropConfig};
        use std::sync::Arc;
        let mut config = only(RateClass::Misses, 2);
        config.kernel_drop = KernelDropConfig {
            after: 5,
            ..KernelDropConfig::default()
        };
        let list = Arc::new(KernelDrop::new(config.kernel_drop));
        let l = RateLimiter::with_kernel_drop(config.clone(), Arc::clone(&list));
        let wait_added = |n: u64| {
            let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
            while list.stats().added < n && std::time::Instant::now() < deadline {
                std::thread::sleep(std::time::Duration::from_millis(5));
            }
            list.stats().added
        };
        // 2 pass, 4 limited in second 100: below the threshold, nothing listed.
        count(&l, "192.0.2.1", RateClass::Misses, 6, 100);
        std::thread::sleep(std::time::Duration::from_millis(50));
        assert_eq!(list.stats().added, 0);
        // Second 101: the account is in debt, so all 10 are limited; the 5th lists the /24.
        count(&l, "192.0.2.9", RateClass::Misses, 10, 101);
        assert_eq!(wait_added(1), 1);
        assert_eq!(list.listed()[0].0.to_string(), "192.0.2.0/24");
        // Another /24 at the threshold in the same second is listed too.
        count(&l, "198.51.100.7", RateClass::Misses, 7, 101);
        assert_eq!(wait_added(2), 2);
        list.stop();
        // Off: the same traffic lists nothing.
        let off = Arc::new(KernelDrop::new(KernelDropConfig::default()));
        config.kernel_drop = KernelDropConfig::default();
        let l = RateLimiter::with_kernel_drop(config, Arc::clone(&off));
        count(&l, "192.0.2.1", RateClass::Misses, 50, 100);
        std::thread::sleep(std::time::Duration::from_millis(50));
        assert_eq!(off.stats().added, 0);
    }

    #[test]
    fn a_client_over_its_rate_is_dropped_and_slipped_others_are_not() {
        let l = limiter(10, 2);
        assert_eq!(
            count(&l, "192.0.2.1", RateClass::Queries, 30, 100),
            [10, 10, 10]
        );
        // The same /24 shares the account; another /24 has its own.
        assert_eq!(
            count(&l, "192.0.2.200", RateClass::Queries, 4, 100),
            [0, 2, 2]
        );
        assert_eq!(
            count(&l, "198.51.100.7", RateClass::Queries, 10, 100),
            [10, 0, 0]
        );
        // Another class of the same prefix has its own account.
        assert_eq!(count(&l, "192.0.2.1", RateClass::NxDomain, 2, 100)[0], 2);
        // An unlimited class is never counted.
        assert_eq!(
            count(&l, "192.0.2.1", RateClass::Answers, 1000, 100)[0],
            1000
        );
    }

    #[test]
    fn debt_is_repaid_over_the_window() {
        let l = limiter(10, 0);
        // A flood: the debt reaches its floor, 3 s × 10.
        assert_eq!(count(&l, "192.0.2.1", RateClass::Queries, 100, 100)[0], 10);
        // One second later the balance is -30 + 10: still nothing passes.
        assert_eq!(count(&l, "192.0.2.1", RateClass::Queries, 1, 101)[0], 0);
        // Quiet for the window: the account is full again.
        assert_eq!(count(&l, "192.0.2.1", RateClass::Queries, 10, 105)[0], 10);
    }

    #[test]
    fn a_client_at_its_rate_is_never_limited() {
        let l = limiter(10, 2);
        for second in 100..120 {
            assert_eq!(
                count(&l, "2001:db8::1", RateClass::Queries, 10, second),
                [10, 0, 0]
            );
        }
        // IPv6 clients share a /56.
        assert_eq!(
            count(&l, "2001:db8:0:ff::2", RateClass::Queries, 1, 119)[0],
            0
        );
        assert_eq!(
            count(&l, "2001:db8:0:100::2", RateClass::Queries, 1, 119)[0],
            1
        );
    }

    #[test]
    fn prefixes_can_be_exempt_or_stricter() {
        let mut stricter = Rates::default();
        stricter.set(RateClass::Queries, 1);
        let mut rates = Rates::default();
        rates.set(RateClass::Queries, 5);
        let l = RateLimiter::new(RateLimitConfig {
            rates,
            prefixes: vec![
                PrefixRates {
                    prefix: "10.0.0.0/8".parse().unwrap(),
                    rates: Rates::default(),
                },
                PrefixRates {
                    prefix: "10.1.0.0/16".parse().unwrap(),
                    rates: stricter,
                },
            ],
            slip: 0,
            ..RateLimitConfig::default()
        });
        assert_eq!(
            count(&l, "10.2.3.4", RateClass::Queries, 100, 1)[0],
            100,
            "exempt"
        );
        assert_eq!(
            count(&l, "10.1.3.4", RateClass::Queries, 100, 1)[0],
            1,
            "longest prefix"
        );
        assert_eq!(
            count(&l, "::ffff:10.1.3.4", RateClass::Queries, 1, 1)[0],
            0,
            "mapped"
        );
        assert_eq!(count(&l, "192.0.2.1", RateClass::Queries, 100, 1)[0], 5);
    }

    #[test]
    fn a_tiny_table_stays_bounded_and_keeps_working() {
        let l = RateLimiter::new(RateLimitConfig {
            table_size: 2,
            ..only(RateClass::Queries, 1)
        });
        assert_eq!(l.table_bytes(), 2 * 32);
        for i in 0..=255u8 {
            let _ = l.check(IpAddr::from([10, i, 0, 1]), RateClass::Queries, 1);
        }
        // Two accounts in the table: the last prefix seen is there, limited.
        assert_eq!(count(&l, "10.255.0.1", RateClass::Queries, 1, 1)[0], 0);
    }

    #[test]
    fn response_classes() {
        let mut noerror = vec![0u8; 40];
        assert_eq!(RateClass::of_response(&noerror, 1024), RateClass::Answers);
        noerror.resize(2000, 0);
        assert_eq!(RateClass::of_response(&noerror, 1024), RateClass::Large);
        for (rcode, class) in [
            (3, RateClass::NxDomain),
            (5, RateClass::Refused),
            (2, RateClass::Errors),
            (1, RateClass::Errors),
        ] {
            let mut m = vec![0u8; 40];
            m[3] = rcode;
            assert_eq!(RateClass::of_response(&m, 1024), class);
        }
    }

    #[test]
    fn truncation_keeps_header_and_question() {
        let mut m = vec![0, 7, 0x81, 0x83, 0, 1, 0, 1, 0, 1, 0, 1];
        m.extend_from_slice(b"\x01a\x00\x00\x01\x00\x01");
        m.extend_from_slice(&[0xc0, 12, 0, 1, 0, 1, 0, 0, 0, 60, 0, 4, 192, 0, 2, 1]);
        let len = m.len();
        let short = truncate_response(&mut m, len).unwrap();
        assert_eq!(short, 12 + 7);
        assert_eq!(m[2] & 0x02, 0x02, "TC");
        assert_eq!(m[3] & 0x0f, 3, "RCODE kept");
        assert_eq!(&m[4..12], &[0, 1, 0, 0, 0, 0, 0, 0]);
        let mut garbage = vec![0, 7, 0x81, 0x83, 0, 1, 0, 0, 0, 0, 0, 0, 70];
        assert_eq!(truncate_response(&mut garbage, 13), None);
    }

    #[test]
    fn validation_names_the_bad_value() {
        assert!(RateLimitConfig::default().validate().is_ok());
        assert!(!RateLimitConfig::default().is_enabled());
        let bad = RateLimitConfig {
            window: 0,
            ..RateLimitConfig::default()
        };
        assert!(bad.validate().unwrap_err().contains("window"));
        let mut rates = Rates::default();
        rates.set(RateClass::Large, MAX_RATE + 1);
        let bad = RateLimitConfig {
            rates,
            ..RateLimitConfig::default()
        };
        assert!(bad.validate().is_err());
    }
}
