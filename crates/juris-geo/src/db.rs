//! [`GeoDb`]: one loaded MaxMind DB file, looked up per query, with a per-prefix memo.
//!
//! The file is **read into memory**, not memory-mapped: a mapped file that an operator
//! overwrites in place (`cp new.mmdb current.mmdb`) is undefined behaviour and in practice a
//! SIGBUS that kills the resolver, while a country database is small (5 MB for IPtoASN, 10 MB
//! for GeoLite2-Country). Reading also keeps this crate free of `unsafe` (`Reader::open_mmap`
//! is an `unsafe fn`) and makes a reload a plain value swap.
//!
//! The memo: a tree walk plus decode costs ~100 ns on the real 5 MB IPtoASN database (~170 ns
//! for MaxMind's nested records); a memo hit costs ~23 ns (`benches/lookup.rs`). Client
//! traffic is dominated by a limited set of networks, so each database carries a 4096-slot,
//! 32 KiB direct-mapped memo keyed by /24 (IPv4) or /56 (IPv6), filled only when the
//! database maps that whole prefix alike, so it can never change an answer.

use std::fmt;
use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

use maxminddb::{PathElement, Reader, WithinOptions};

use crate::config::{FieldPath, Segment, MAX_FIELD_PATH_DEPTH};
use crate::country::CountryCode;
use crate::error::GeoError;

/// How many records with data are sampled to detect (or check) the field path.
const SAMPLED_RECORDS: usize = 64;

/// A loaded GeoIP database and the field path that leads to the country code in its records.
pub struct GeoDb {
    reader: Reader<Vec<u8>>,
    info: DatabaseInfo,
    field_path: FieldPath,
    memo: PrefixMemo,
}

/// What explain and status show about the database in force (no client data).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DatabaseInfo {
    /// The file it was loaded from (or the name given to [`GeoDb::from_bytes`]).
    pub path: PathBuf,
    /// The metadata `database_type`, e.g. `GeoLite2-Country`.
    pub database_type: String,
    /// The metadata `build_epoch` (seconds since the Unix epoch).
    pub build_epoch: u64,
    /// The field path in use, e.g. `country.iso_code`.
    pub field_path: String,
    /// Whether the field path was detected (true) or configured (false).
    pub field_path_detected: bool,
}

impl GeoDb {
    /// Reads the database at `path`. With `field_path` `None` the path to the country code is
    /// detected (see [`FieldPath::AUTO_DETECTED`]); a configured path is checked against the
    /// first records so that a mismatch fails now, not silently per query.
    pub fn open(path: &Path, field_path: Option<&FieldPath>) -> Result<Self, GeoError> {
        let bytes = std::fs::read(path).map_err(|error| GeoError::Open {
            path: path.to_owned(),
            source: maxminddb::MaxMindDbError::Io(error),
        })?;
        Self::from_bytes(bytes, path, field_path)
    }

    /// Like [`open`](Self::open), from bytes already read; `path` names them in errors and
    /// in [`DatabaseInfo`].
    pub fn from_bytes(
        bytes: Vec<u8>,
        path: impl Into<PathBuf>,
        field_path: Option<&FieldPath>,
    ) -> Result<Self, GeoError> {
        let path = path.into();
        let reader = Reader::from_source(bytes).map_err(|source| GeoError::Open {
            path: path.clone(),
            source,
        })?;
        let (field_path, detected) = match field_path {
            Some(configured) => {
                if !fits(&reader, configured) {
                    return Err(GeoError::FieldNotFound {
                        path,
                        field_path: configured.to_string(),
                    });
                }
                (configured.clone(), false)
            }
            None => (detect(&reader, &path)?, true),
        };
        let metadata = reader.metadata();
        let info = DatabaseInfo {
            path,
            database_type: metadata.database_type.clone(),
            build_epoch: metadata.build_epoch,
            field_path: field_path.to_string(),
            field_path_detected: detected,
        };
        Ok(GeoDb {
            reader,
            info,
            field_path,
            memo: PrefixMemo::new(),
        })
    }

    /// The country of `address`, or `None` when the database does not place it. IPv4-mapped
    /// IPv6 addresses (`::ffff:a.b.c.d`) are looked up as IPv4. Allocation-free; repeated
    /// lookups in the same /24 (IPv4) or /56 (IPv6) are answered from a memo when the database
    /// maps that whole prefix alike.
    pub fn lookup(&self, address: IpAddr) -> Option<CountryCode> {
        let address = crate::normalise_address(address);
        let key = MemoKey::of(address);
        if let Some(hit) = self.memo.get(key) {
            return hit;
        }
        // An IPv4 address in a prefix the database splits finer than /24 is remembered alone.
        let exact = MemoKey::exact(address);
        if let Some(hit) = exact.and_then(|exact| self.memo.get(exact)) {
            return hit;
        }
        let (country, uniform) = self.lookup_in_tree(address, key.prefix_len());
        match (uniform, exact) {
            (true, _) => self.memo.put(key, country),
            (false, Some(exact)) => self.memo.put(exact, country),
            (false, None) => {}
        }
        country
    }

    /// The prefix length of the database network that holds `address` (placed or not), in
    /// the address's family; 0 when the match lies above the IPv4 subtree of an IPv6 database
    /// (every IPv4 address alike). `None` if the tree cannot be read there. Not memoised: for
    /// the ECS scope of answers some order can touch (RFC 7871 §7.2.1), not for every query.
    pub fn network_prefix_len(&self, address: IpAddr) -> Option<u8> {
        let address = crate::normalise_address(address);
        let network = self.reader.lookup(address).ok()?.network().ok()?;
        Some(if network.is_ipv4() == address.is_ipv4() {
            network.prefix()
        } else {
            0
        })
    }

    /// [`lookup`](Self::lookup) without the memo (for benchmarks and checks).
    pub fn lookup_uncached(&self, address: IpAddr) -> Option<CountryCode> {
        self.lookup_in_tree(crate::normalise_address(address), 0).0
    }

    /// Where the database came from and how it is read.
    pub fn info(&self) -> &DatabaseInfo {
        &self.info
    }

    /// The field path in use.
    pub fn field_path(&self) -> &FieldPath {
        &self.field_path
    }

    /// The country, and whether every address in the surrounding `/memo_prefix_len` (of the
    /// address's family) gets the same answer.
    fn lookup_in_tree(&self, address: IpAddr, memo_prefix_len: u8) -> (Option<CountryCode>, bool) {
        let Ok(result) = self.reader.lookup(address) else {
            // An IPv6 address in an IPv4-only database, or a corrupt pointer: not placed.
            return (None, false);
        };
        let uniform = match result.network() {
            Ok(network) => {
                network.is_ipv4() != address.is_ipv4() || network.prefix() <= memo_prefix_len
            }
            Err(_) => false,
        };
        (country_at(&result, &self.field_path), uniform)
    }
}

impl fmt::Debug for GeoDb {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("GeoDb")
            .field("info", &self.info)
            .finish_non_exhaustive()
    }
}

/// The two-letter code at `field_path` in the record of `result`, if any. Allocation-free: the
/// path is built on the stack and the string is borrowed from the database.
fn country_at<S: AsRef<[u8]>>(
    result: &maxminddb::LookupResult<'_, S>,
    field_path: &FieldPath,
) -> Option<CountryCode> {
    if !result.has_data() {
        return None;
    }
    let segments = field_path.segments();
    let elements: [PathElement<'_>; MAX_FIELD_PATH_DEPTH] =
        std::array::from_fn(|index| match segments.get(index) {
            Some(Segment::Key(key)) => PathElement::Key(key),
            Some(Segment::Index(position)) => PathElement::Index(*position),
            None => PathElement::Index(0),
        });
    // `FieldPath::parse` caps the depth at MAX_FIELD_PATH_DEPTH, so the slice is in bounds;
    // `get` keeps that a non-panicking fact.
    let path = elements.get(..segments.len())?;
    match result.decode_path::<&str>(path) {
        Ok(Some(code)) => CountryCode::from_bytes(code.as_bytes()),
        // Missing, not a string, or corrupt: the database does not place this address.
        Ok(None) | Err(_) => None,
    }
}

/// Whether `field_path` yields a country code in any of the first records.
fn fits(reader: &Reader<Vec<u8>>, field_path: &FieldPath) -> bool {
    let Ok(networks) = reader.networks(WithinOptions::default()) else {
        return false;
    };
    networks
        .filter_map(Result::ok)
        .take(SAMPLED_RECORDS)
        .any(|result| country_at(&result, field_path).is_some())
}

fn detect(reader: &Reader<Vec<u8>>, path: &Path) -> Result<FieldPath, GeoError> {
    for candidate in FieldPath::AUTO_DETECTED {
        let field_path = FieldPath::parse(candidate)?;
        if fits(reader, &field_path) {
            return Ok(field_path);
        }
    }
    Err(GeoError::UnknownRecordShape {
        path: path.to_owned(),
    })
}

/// A direct-mapped, lock-free memo from /24 (IPv4) or /56 (IPv6) prefixes to the answer, for
/// prefixes the database maps alike. One `AtomicU64` per slot, so readers never see a torn
/// entry and the memo never allocates after construction. A collision simply overwrites.
///
/// Slot layout: bit 63 valid, bit 62 IPv6, bit 61 a single IPv4 address, bits 10..61 the key's tag (`key >> SLOT_BITS`),
/// bits 0..10 the country (`0` none, `1 + CountryCode::index`). The slot index is the key's
/// low bits mixed with a hash of the tag, so tag and slot index together determine the key.
struct PrefixMemo {
    slots: Box<[AtomicU64]>,
}

const SLOT_BITS: u32 = 12;
const SLOTS: usize = 1 << SLOT_BITS;
const VALID: u64 = 1 << 63;
const IPV6: u64 = 1 << 62;
const EXACT: u64 = 1 << 61;
const COUNTRY_BITS: u32 = 10;
const COUNTRY_MASK: u64 = (1 << COUNTRY_BITS) - 1;

#[derive(Debug, Clone, Copy)]
struct MemoKey {
    /// The /24 (24 bits) or /56 (56 bits) prefix, or a whole IPv4 address (`exact`).
    prefix: u64,
    ipv6: bool,
    /// A single IPv4 address (its /24 is not uniform in the database).
    exact: bool,
}

impl MemoKey {
    fn of(address: IpAddr) -> Self {
        match address {
            IpAddr::V4(v4) => MemoKey {
                prefix: u64::from(u32::from(v4) >> 8),
                ipv6: false,
                exact: false,
            },
            IpAddr::V6(v6) => MemoKey {
                // The top 56 bits of 128: fits in u64.
                prefix: (u128::from(v6) >> 72) as u64,
                ipv6: true,
                exact: false,
            },
        }
    }

    /// The key of one IPv4 address; IPv6 addresses do not fit a slot.
    fn exact(address: IpAddr) -> Option<Self> {
        match address {
            IpAddr::V4(v4) => Some(MemoKey {
                prefix: u64::from(u32::from(v4)),
                ipv6: false,
                exact: true,
            }),
            IpAddr::V6(_) => None,
        }
    }

    fn prefix_len(self) -> u8 {
        if self.ipv6 {
            56
        } else {
            24
        }
    }

    fn tag(self) -> u64 {
        self.prefix >> SLOT_BITS
    }

    fn slot(self) -> usize {
        let mixed = self.prefix ^ (self.tag().wrapping_mul(0x9E37_79B9_7F4A_7C15) >> 40);
        // Masked to SLOT_BITS bits: fits in usize.
        (mixed & (SLOTS as u64 - 1)) as usize
    }

    fn entry(self, country: Option<CountryCode>) -> u64 {
        let family = if self.ipv6 { IPV6 } else { 0 } | if self.exact { EXACT } else { 0 };
        let country = country.map_or(0, |code| 1 + u64::from(code.index()));
        VALID | family | self.tag() << COUNTRY_BITS | country
    }

    fn matches(self, entry: u64) -> bool {
        entry & !COUNTRY_MASK == self.entry(None) & !COUNTRY_MASK
    }
}

impl PrefixMemo {
    fn new() -> Self {
        PrefixMemo {
            slots: (0..SLOTS).map(|_| AtomicU64::new(0)).collect(),
        }
    }

    /// `Some(answer)` on a hit.
    fn get(&self, key: MemoKey) -> Option<Option<CountryCode>> {
        let entry = self.slots.get(key.slot())?.load(Ordering::Relaxed);
        if !key.matches(entry) {
            return None;
        }
        Some(match entry & COUNTRY_MASK {
            0 => None,
            // 1..=676 by construction; anything else reads as a miss-free "none".
            code => CountryCode::from_index(code as u16 - 1),
        })
    }

    fn put(&self, key: MemoKey, country: Option<CountryCode>) {
        if let Some(slot) = self.slots.get(key.slot()) {
            slot.store(key.entry(country), Ordering::Relaxed);
        }
    }
}

#[cfg(test)]
// Tests: a panic is how a failure is reported.
#[allow(clippy::unwrap_used, clippy::expect_used, reason = "test code")]
mod tests {
    use super::*;
    use std::net::Ipv4Addr;

    #[test]
    fn memo_keys_never_alias() {
        let memo = PrefixMemo::new();
        let it = CountryCode::parse("IT").ok();
        let keys = [
            MemoKey::of("192.0.2.1".parse().unwrap()),
            MemoKey::of("::c000:201".parse().unwrap()),
            MemoKey::of("2001:db8::".parse().unwrap()),
            MemoKey::of("ffff:ffff:ffff:ff00::".parse().unwrap()),
            MemoKey::of("255.255.255.255".parse().unwrap()),
        ];
        for key in keys {
            assert_eq!(memo.get(key), None);
            memo.put(key, it);
            assert_eq!(memo.get(key), Some(it));
            memo.put(key, None);
            assert_eq!(memo.get(key), Some(None));
        }
        // A single address and the /24 it starts never share an entry.
        let whole = MemoKey::of("172.16.2.3".parse().unwrap());
        let single = MemoKey::exact("172.16.2.0".parse().unwrap()).unwrap();
        memo.put(whole, it);
        memo.put(single, None);
        assert_eq!(memo.get(whole), Some(it));
        assert_eq!(memo.get(single), Some(None));
        assert_eq!(
            MemoKey::exact("2001:db8::1".parse().unwrap()).map(|k| k.prefix),
            None
        );
        // Same slot, different key: a miss, never a wrong answer.
        let a = MemoKey::of("10.0.0.1".parse().unwrap());
        memo.put(a, it);
        for third in 0..=255u8 {
            for second in 0..=255u8 {
                let b = MemoKey::of(IpAddr::V4(Ipv4Addr::new(10, second, third, 1)));
                if (second, third) != (0, 0) {
                    assert_ne!(memo.get(b), Some(it), "{b:?}");
                }
            }
        }
    }
}
