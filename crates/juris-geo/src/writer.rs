//! Writes MaxMind DB (MMDB v2) files from the format specification
//! (<https://maxmind.github.io/MaxMind-DB/>): `juris geoip import` builds its country database
//! with it, and tests (through `juris_testkit::mmdb`) make theirs, so that nothing depends on a
//! downloaded database. No crate on crates.io was both established and kept up when this was
//! chosen (docs/design/0033); the file is read back by the `maxminddb` crate in every test.
//!
//! ```text
//!  ┌──────────────────────────┐  binary search tree over 128 address bits (IPv6 tree);
//!  │ search tree              │  IPv4 networks live under ::/96 (a.b.c.d → ::a.b.c.d),
//!  │ node_count × 2 records   │  as MaxMind's own databases do, so IPv4 lookups work
//!  ├──────────────────────────┤
//!  │ 16 zero bytes            │  data section separator
//!  ├──────────────────────────┤
//!  │ data section             │  one record per distinct value (map / utf8 string / uint …)
//!  ├──────────────────────────┤
//!  │ \xAB\xCD\xEFMaxMind.com  │  metadata marker
//!  │ metadata map             │  node_count, record_size, ip_version 6, database_type, …
//!  └──────────────────────────┘
//! ```
//!
//! ```no_run
//! use juris_geo::writer::{MmdbWriter, Shape};
//! # fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let dir = std::env::temp_dir();
//! MmdbWriter::new(Shape::CountryCode)
//!     .insert("127.0.0.101/32".parse()?, "IT")
//!     .insert("127.0.0.102/32".parse()?, "DE")
//!     .insert("2001:db8::/32".parse()?, "FR")
//!     .write_to(dir.join("test.mmdb"))?;
//! # Ok(()) }
//! ```
//!
//! More specific networks win over less specific ones whatever the insertion order; inserting
//! the same network twice keeps the last value.
//!
//! # Limitations
//! - No pointers or data-cache containers are written (the spec allows but does not require
//!   them); equal records are still stored once.
//! - Types written: map, utf8 string, uint16, uint32, uint64, array, boolean. Not written:
//!   double, bytes, int32, uint128, float.
//! - `::/0` cannot be a record (the root of the tree is a node), so it is rejected; `0.0.0.0/0`
//!   is fine (it becomes `::/96`).

use std::collections::HashMap;
use std::io;
use std::net::{IpAddr, Ipv6Addr};
use std::path::{Path, PathBuf};
use std::time::{SystemTime, UNIX_EPOCH};

use ipnet::IpNet;

/// The layout of the record stored for each network.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Shape {
    /// ip-location-db style: `{ "country_code": "IT" }`.
    CountryCode,
    /// MaxMind GeoIP2/GeoLite2 style: `{ "country": { "iso_code": "IT", "names": { "en": … } },
    /// "registered_country": { "iso_code": "IT" } }` (the field path `country.iso_code`).
    CountryIsoCode,
    /// IPinfo country style: `{ "country": "IT", "country_name": … }`.
    Country,
}

/// Search-tree record size in bits (the spec allows 24, 28 and 32).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RecordSize {
    /// 24 bits: 6 bytes per node, at most 2^24 - 1 - 16 - data length values.
    Bits24,
    /// 28 bits: 7 bytes per node (the middle byte holds the high nibbles).
    Bits28,
    /// 32 bits: 8 bytes per node.
    Bits32,
}

/// A value in the data section.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Value {
    /// Type 2: UTF-8 string.
    String(String),
    /// Type 5: unsigned 16-bit integer.
    Uint16(u16),
    /// Type 6: unsigned 32-bit integer.
    Uint32(u32),
    /// Type 9: unsigned 64-bit integer.
    Uint64(u64),
    /// Type 7: map, keys are UTF-8 strings, order kept as given.
    Map(Vec<(String, Value)>),
    /// Type 11: array.
    Array(Vec<Value>),
    /// Type 14: boolean.
    Bool(bool),
}

/// Why a database could not be written.
#[derive(Debug, thiserror::Error)]
pub enum MmdbWriteError {
    /// `::/0` would make the root of the tree a record.
    #[error("the network {0} cannot be stored: the root of the search tree must be a node")]
    ZeroPrefix(IpNet),
    /// The tree and data do not fit in the chosen record size.
    #[error(
        "the database needs record values up to {needed}, more than {record_bits}-bit records hold"
    )]
    TooLarge {
        /// The largest record value needed.
        needed: u64,
        /// The record size chosen.
        record_bits: u32,
    },
    /// Writing the file failed.
    #[error("cannot write {path}: {source}")]
    Io {
        /// The file being written.
        path: PathBuf,
        /// The underlying error.
        #[source]
        source: io::Error,
    },
}

/// Builds a MaxMind DB file in memory and writes it out.
#[derive(Debug, Clone)]
pub struct MmdbWriter {
    shape: Shape,
    record_size: RecordSize,
    database_type: String,
    description: String,
    build_epoch: u64,
    alias_ipv4_mapped: bool,
    /// Networks and the index of their record in `values`.
    entries: Vec<(IpNet, u32)>,
    /// Each distinct record once (a country database has a few hundred for millions of
    /// networks).
    values: Vec<Value>,
    interned: HashMap<Value, u32>,
}

impl MmdbWriter {
    /// A writer for records of `shape`, 24-bit records, database type `juris-test`.
    pub fn new(shape: Shape) -> Self {
        let build_epoch = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |elapsed| elapsed.as_secs());
        MmdbWriter {
            shape,
            record_size: RecordSize::Bits24,
            database_type: "juris-test".to_owned(),
            description: "juris test database".to_owned(),
            build_epoch,
            alias_ipv4_mapped: false,
            entries: Vec::new(),
            values: Vec::new(),
            interned: HashMap::new(),
        }
    }

    /// Maps `network` to `country` in this writer's [`Shape`].
    pub fn insert(&mut self, network: IpNet, country: &str) -> &mut Self {
        let value = self.shape.record(country);
        self.insert_value(network, value)
    }

    /// Maps `network` to an arbitrary record (for custom field paths and malformed data).
    pub fn insert_value(&mut self, network: IpNet, value: Value) -> &mut Self {
        let index = match self.interned.get(&value) {
            Some(&index) => index,
            None => {
                // More than 2^32 distinct records would not fit any record size anyway.
                let index = u32::try_from(self.values.len()).unwrap_or(u32::MAX);
                self.values.push(value.clone());
                self.interned.insert(value, index);
                index
            }
        };
        self.entries.push((network.trunc(), index));
        self
    }

    /// How many networks were inserted.
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// Whether no network was inserted.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// Chooses the search-tree record size (default 24 bits).
    pub fn record_size(&mut self, record_size: RecordSize) -> &mut Self {
        self.record_size = record_size;
        self
    }

    /// Sets the metadata `database_type` (default `juris-test`).
    pub fn database_type(&mut self, database_type: &str) -> &mut Self {
        database_type.clone_into(&mut self.database_type);
        self
    }

    /// Sets the English metadata description.
    pub fn description(&mut self, description: &str) -> &mut Self {
        description.clone_into(&mut self.description);
        self
    }

    /// Sets the metadata `build_epoch` (default: now), for reproducible files.
    pub fn build_epoch(&mut self, build_epoch: u64) -> &mut Self {
        self.build_epoch = build_epoch;
        self
    }

    /// Also makes `::ffff:0:0/96` lead to the IPv4 subtree, as MaxMind's GeoIP2 databases do
    /// (default off: many third-party databases do not, and readers must normalise mapped
    /// addresses themselves).
    pub fn alias_ipv4_mapped(&mut self, alias: bool) -> &mut Self {
        self.alias_ipv4_mapped = alias;
        self
    }

    /// The complete database file.
    pub fn to_bytes(&self) -> Result<Vec<u8>, MmdbWriteError> {
        // Most specific last, so that it overwrites what a broader network left on its path;
        // the sort is stable, so equal networks keep insertion order (last wins).
        let mut entries: Vec<(u128, u8, u32)> = Vec::with_capacity(self.entries.len());
        for &(network, value) in &self.entries {
            let (bits, prefix_len) = tree_position(&network);
            if prefix_len == 0 {
                return Err(MmdbWriteError::ZeroPrefix(network));
            }
            entries.push((bits, prefix_len, value));
        }
        entries.sort_by_key(|&(_, prefix_len, _)| prefix_len);

        // Data section: one encoding per distinct value.
        let mut data = Vec::new();
        let mut offsets = Vec::with_capacity(self.values.len());
        for value in &self.values {
            offsets.push(data.len() as u64);
            encode(value, &mut data);
        }
        let mut tree = Tree::new();
        for &(bits, prefix_len, value) in &entries {
            tree.insert(bits, prefix_len, Slot::Data(offsets[value as usize]));
        }
        if self.alias_ipv4_mapped {
            tree.alias(u128::from(Ipv6Addr::new(0, 0, 0, 0, 0, 0xffff, 0, 0)), 96);
        }

        let node_count = tree.nodes.len() as u64;
        let record_bits = match self.record_size {
            RecordSize::Bits24 => 24,
            RecordSize::Bits28 => 28,
            RecordSize::Bits32 => 32,
        };
        let needed = node_count + 16 + data.len() as u64;
        if needed >= 1u64 << record_bits {
            return Err(MmdbWriteError::TooLarge {
                needed,
                record_bits,
            });
        }
        let record_value = |slot: Slot| -> u64 {
            match slot {
                Slot::Empty => node_count,
                Slot::Node(index) => index as u64,
                Slot::Data(offset) => node_count + 16 + offset,
            }
        };

        let mut out = Vec::with_capacity(tree.nodes.len() * 8 + 16 + data.len() + 256);
        for node in &tree.nodes {
            let left = record_value(node[0]);
            let right = record_value(node[1]);
            match self.record_size {
                RecordSize::Bits24 => {
                    out.extend_from_slice(&left.to_be_bytes()[5..]);
                    out.extend_from_slice(&right.to_be_bytes()[5..]);
                }
                RecordSize::Bits28 => {
                    out.extend_from_slice(&left.to_be_bytes()[5..]);
                    out.push((((left >> 24) & 0x0f) << 4 | ((right >> 24) & 0x0f)) as u8);
                    out.extend_from_slice(&right.to_be_bytes()[5..]);
                }
                RecordSize::Bits32 => {
                    out.extend_from_slice(&left.to_be_bytes()[4..]);
                    out.extend_from_slice(&right.to_be_bytes()[4..]);
                }
            }
        }
        out.extend_from_slice(&[0u8; 16]);
        out.extend_from_slice(&data);
        out.extend_from_slice(b"\xAB\xCD\xEFMaxMind.com");
        let metadata = Value::Map(vec![
            ("binary_format_major_version".into(), Value::Uint16(2)),
            ("binary_format_minor_version".into(), Value::Uint16(0)),
            ("build_epoch".into(), Value::Uint64(self.build_epoch)),
            (
                "database_type".into(),
                Value::String(self.database_type.clone()),
            ),
            (
                "description".into(),
                Value::Map(vec![("en".into(), Value::String(self.description.clone()))]),
            ),
            ("ip_version".into(), Value::Uint16(6)),
            (
                "languages".into(),
                Value::Array(vec![Value::String("en".into())]),
            ),
            // `needed` < 2^32 was checked above, and node_count < needed.
            ("node_count".into(), Value::Uint32(node_count as u32)),
            ("record_size".into(), Value::Uint16(record_bits as u16)),
        ]);
        encode(&metadata, &mut out);
        Ok(out)
    }

    /// Writes the database to `path` (replacing the file).
    pub fn write_to(&self, path: impl AsRef<Path>) -> Result<(), MmdbWriteError> {
        let path = path.as_ref();
        let bytes = self.to_bytes()?;
        std::fs::write(path, bytes).map_err(|source| MmdbWriteError::Io {
            path: path.to_owned(),
            source,
        })
    }
}

impl Shape {
    /// The record this shape stores for `country`.
    pub fn record(self, country: &str) -> Value {
        let code = || Value::String(country.to_owned());
        match self {
            Shape::CountryCode => Value::Map(vec![("country_code".into(), code())]),
            Shape::CountryIsoCode => Value::Map(vec![
                (
                    "continent".into(),
                    Value::Map(vec![("geoname_id".into(), Value::Uint32(6_255_148))]),
                ),
                (
                    "country".into(),
                    Value::Map(vec![
                        ("geoname_id".into(), Value::Uint32(3_175_395)),
                        ("iso_code".into(), code()),
                        (
                            "names".into(),
                            Value::Map(vec![(
                                "en".into(),
                                Value::String(format!("Country {country}")),
                            )]),
                        ),
                    ]),
                ),
                (
                    "registered_country".into(),
                    Value::Map(vec![("iso_code".into(), code())]),
                ),
            ]),
            Shape::Country => Value::Map(vec![
                ("country".into(), code()),
                (
                    "country_name".into(),
                    Value::String(format!("Country {country}")),
                ),
            ]),
        }
    }

    /// The field path that reaches the country code in this shape.
    pub fn field_path(self) -> &'static str {
        match self {
            Shape::CountryCode => "country_code",
            Shape::CountryIsoCode => "country.iso_code",
            Shape::Country => "country",
        }
    }
}

/// Where a network sits in the 128-bit tree: IPv4 `a.b.c.d/n` is `::a.b.c.d/(96 + n)`.
fn tree_position(network: &IpNet) -> (u128, u8) {
    match network {
        IpNet::V4(v4) => (u128::from(u32::from(v4.network())), 96 + v4.prefix_len()),
        IpNet::V6(v6) => (u128::from(v6.network()), v6.prefix_len()),
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Slot {
    Empty,
    Node(usize),
    Data(u64),
}

#[derive(Debug)]
struct Tree {
    nodes: Vec<[Slot; 2]>,
}

impl Tree {
    fn new() -> Self {
        Tree {
            nodes: vec![[Slot::Empty; 2]],
        }
    }

    /// Sets the record for the first `prefix_len` (≥ 1) bits of `bits` to `slot`, splitting
    /// any broader data record found on the way so that its other half keeps its value.
    fn insert(&mut self, bits: u128, prefix_len: u8, slot: Slot) {
        let mut node = 0;
        for depth in 0..prefix_len {
            let bit = ((bits >> (127 - depth)) & 1) as usize;
            if depth + 1 == prefix_len {
                self.nodes[node][bit] = slot;
                return;
            }
            node = match self.nodes[node][bit] {
                Slot::Node(child) => child,
                inherited @ (Slot::Empty | Slot::Data(_)) => {
                    let child = self.nodes.len();
                    self.nodes.push([inherited; 2]);
                    self.nodes[node][bit] = Slot::Node(child);
                    child
                }
            };
        }
    }

    /// Points the record for `bits/prefix_len` at the IPv4 subtree (`::/96`).
    fn alias(&mut self, bits: u128, prefix_len: u8) {
        let mut node = 0;
        for _ in 0..96 {
            match self.nodes[node][0] {
                Slot::Node(child) => node = child,
                // No IPv4 networks: nothing to alias.
                _ => return,
            }
        }
        self.insert(bits, prefix_len, Slot::Node(node));
    }
}

const TYPE_POINTER_EXTENDED: u8 = 0;
const TYPE_STRING: u8 = 2;
const TYPE_UINT16: u8 = 5;
const TYPE_UINT32: u8 = 6;
const TYPE_MAP: u8 = 7;
const TYPE_UINT64: u8 = 9;
const TYPE_ARRAY: u8 = 11;
const TYPE_BOOL: u8 = 14;

fn encode(value: &Value, out: &mut Vec<u8>) {
    match value {
        Value::String(text) => {
            control(TYPE_STRING, text.len(), out);
            out.extend_from_slice(text.as_bytes());
        }
        Value::Uint16(number) => uint(TYPE_UINT16, u64::from(*number), out),
        Value::Uint32(number) => uint(TYPE_UINT32, u64::from(*number), out),
        Value::Uint64(number) => uint(TYPE_UINT64, *number, out),
        Value::Map(pairs) => {
            control(TYPE_MAP, pairs.len(), out);
            for (key, value) in pairs {
                control(TYPE_STRING, key.len(), out);
                out.extend_from_slice(key.as_bytes());
                encode(value, out);
            }
        }
        Value::Array(items) => {
            control(TYPE_ARRAY, items.len(), out);
            for item in items {
                encode(item, out);
            }
        }
        // A boolean's value is its size field.
        Value::Bool(flag) => control(TYPE_BOOL, usize::from(*flag), out),
    }
}

/// Unsigned integers are big-endian with leading zero bytes dropped (0 has size 0).
fn uint(type_number: u8, number: u64, out: &mut Vec<u8>) {
    let bytes = number.to_be_bytes();
    let skip = bytes.iter().take_while(|&&byte| byte == 0).count();
    control(type_number, bytes.len() - skip, out);
    out.extend_from_slice(&bytes[skip..]);
}

/// The control byte (type in the top 3 bits, or 0 and an extended type byte for types > 7)
/// and the size (in the low 5 bits, or 29/30/31 and 1/2/3 more bytes).
fn control(type_number: u8, size: usize, out: &mut Vec<u8>) {
    // (size field, how many size bytes follow, the value they hold)
    let (size_bits, extra_len, extra) = match size {
        0..=28 => (size as u8, 0, 0),
        29..=284 => (29, 1, size - 29),
        285..=65_820 => (30, 2, size - 285),
        _ => (31, 3, size - 65_821),
    };
    if type_number <= 7 {
        out.push(type_number << 5 | size_bits);
    } else {
        out.push(TYPE_POINTER_EXTENDED << 5 | size_bits);
        out.push(type_number - 7);
    }
    let extra = (extra as u32).to_be_bytes();
    out.extend_from_slice(&extra[4 - extra_len..]);
}

/// The country code stored for `address` by databases of any [`Shape`], read back with the
/// `maxminddb` crate (an independent reader), for tests of this writer and quick checks.
pub fn read_country(
    database: &[u8],
    shape: Shape,
    address: IpAddr,
) -> Result<Option<String>, maxminddb::MaxMindDbError> {
    let reader = maxminddb::Reader::from_source(database)?;
    let result = reader.lookup(address)?;
    let path: Vec<maxminddb::PathElement<'_>> = shape
        .field_path()
        .split('.')
        .map(maxminddb::PathElement::Key)
        .collect();
    result.decode_path::<String>(&path)
}

#[cfg(test)]
// Tests: a panic is how a failure is reported.
#[allow(clippy::unwrap_used, clippy::expect_used, reason = "test code")]
mod tests {
    use super::*;

    fn writer(shape: Shape) -> MmdbWriter {
        let mut writer = MmdbWriter::new(shape);
        writer
            .insert("127.0.0.101/32".parse().unwrap(), "IT")
            .insert("127.0.0.102/32".parse().unwrap(), "DE")
            .insert("2001:db8::/32".parse().unwrap(), "FR")
            .insert("10.0.0.0/8".parse().unwrap(), "ES")
            .insert("10.1.2.0/24".parse().unwrap(), "BE")
            .build_epoch(1_700_000_000);
        writer
    }

    fn country(bytes: &[u8], shape: Shape, address: &str) -> Option<String> {
        read_country(bytes, shape, address.parse().unwrap()).unwrap()
    }

    #[test]
    fn every_shape_and_record_size_reads_back() {
        for shape in [Shape::CountryCode, Shape::CountryIsoCode, Shape::Country] {
            for size in [RecordSize::Bits24, RecordSize::Bits28, RecordSize::Bits32] {
                let bytes = writer(shape).record_size(size).to_bytes().unwrap();
                let reader = maxminddb::Reader::from_source(&bytes[..]).unwrap();
                reader.verify().unwrap();
                let check = |address: &str, expected: Option<&str>| {
                    assert_eq!(
                        country(&bytes, shape, address).as_deref(),
                        expected,
                        "{address} with {shape:?} {size:?}"
                    );
                };
                check("127.0.0.101", Some("IT"));
                check("127.0.0.102", Some("DE"));
                check("127.0.0.103", None);
                check("2001:db8::1", Some("FR"));
                check("2001:db8:ffff::1", Some("FR"));
                check("2001:db9::1", None);
                check("10.200.0.1", Some("ES"));
                check("10.1.2.3", Some("BE"));
                check("10.1.3.3", Some("ES"));
                check("11.0.0.1", None);
            }
        }
    }

    #[test]
    fn metadata_follows_the_spec() {
        let bytes = writer(Shape::CountryCode)
            .record_size(RecordSize::Bits28)
            .database_type("Juris-Test-Country")
            .description("hello")
            .to_bytes()
            .unwrap();
        let reader = maxminddb::Reader::from_source(&bytes[..]).unwrap();
        let metadata = reader.metadata();
        assert_eq!(metadata.binary_format_major_version, 2);
        assert_eq!(metadata.binary_format_minor_version, 0);
        assert_eq!(metadata.ip_version, 6);
        assert_eq!(metadata.record_size, 28);
        assert_eq!(metadata.build_epoch, 1_700_000_000);
        assert_eq!(metadata.database_type, "Juris-Test-Country");
        assert_eq!(metadata.languages, vec!["en".to_owned()]);
        assert_eq!(metadata.description["en"], "hello");
        let tree_bytes = metadata.node_count as usize * 7;
        assert_eq!(&bytes[tree_bytes..tree_bytes + 16], &[0u8; 16]);
    }

    #[test]
    fn more_specific_wins_whatever_the_order() {
        let mut writer = MmdbWriter::new(Shape::CountryCode);
        writer
            .insert("192.0.2.7/32".parse().unwrap(), "IT")
            .insert("192.0.2.0/24".parse().unwrap(), "DE")
            .insert("192.0.2.0/24".parse().unwrap(), "AT");
        let bytes = writer.to_bytes().unwrap();
        assert_eq!(
            country(&bytes, Shape::CountryCode, "192.0.2.7").as_deref(),
            Some("IT")
        );
        assert_eq!(
            country(&bytes, Shape::CountryCode, "192.0.2.8").as_deref(),
            Some("AT")
        );
    }

    #[test]
    fn ipv4_mapped_alias_is_optional() {
        let plain = writer(Shape::CountryCode).to_bytes().unwrap();
        assert_eq!(
            country(&plain, Shape::CountryCode, "::ffff:127.0.0.101"),
            None
        );
        let aliased = writer(Shape::CountryCode)
            .alias_ipv4_mapped(true)
            .to_bytes()
            .unwrap();
        assert_eq!(
            country(&aliased, Shape::CountryCode, "::ffff:127.0.0.101").as_deref(),
            Some("IT")
        );
        maxminddb::Reader::from_source(&aliased[..])
            .unwrap()
            .verify()
            .unwrap();
    }

    #[test]
    fn long_strings_and_big_numbers_round_trip() {
        let long = "x".repeat(70_000);
        let medium = "y".repeat(300);
        let record = Value::Map(vec![
            ("long".into(), Value::String(long.clone())),
            ("medium".into(), Value::String(medium.clone())),
            ("short".into(), Value::String("z".repeat(29))),
            ("zero".into(), Value::Uint32(0)),
            ("big".into(), Value::Uint64(u64::MAX)),
            ("flag".into(), Value::Bool(true)),
            (
                "list".into(),
                Value::Array(vec![Value::Uint16(7), Value::Uint16(300)]),
            ),
        ]);
        let mut writer = MmdbWriter::new(Shape::CountryCode);
        writer.insert_value("198.51.100.0/24".parse().unwrap(), record);
        let bytes = writer.to_bytes().unwrap();
        let reader = maxminddb::Reader::from_source(&bytes[..]).unwrap();
        reader.verify().unwrap();
        let result = reader.lookup("198.51.100.1".parse().unwrap()).unwrap();
        let get = |key: &str| -> Option<String> {
            result
                .decode_path(&[maxminddb::PathElement::Key(key)])
                .unwrap()
        };
        assert_eq!(get("long"), Some(long));
        assert_eq!(get("medium"), Some(medium));
        assert_eq!(get("short"), Some("z".repeat(29)));
        let number = |key: &str| -> Option<u64> {
            result
                .decode_path(&[maxminddb::PathElement::Key(key)])
                .unwrap()
        };
        let zero: Option<u32> = result
            .decode_path(&[maxminddb::PathElement::Key("zero")])
            .unwrap();
        assert_eq!(zero, Some(0));
        assert_eq!(number("big"), Some(u64::MAX));
        let flag: Option<bool> = result
            .decode_path(&[maxminddb::PathElement::Key("flag")])
            .unwrap();
        assert_eq!(flag, Some(true));
        let second: Option<u16> = result
            .decode_path(&[
                maxminddb::PathElement::Key("list"),
                maxminddb::PathElement::Index(1),
            ])
            .unwrap();
        assert_eq!(second, Some(300));
    }

    #[test]
    fn whole_ipv4_space_and_zero_prefix() {
        let mut writer = MmdbWriter::new(Shape::Country);
        writer.insert("0.0.0.0/0".parse().unwrap(), "US");
        let bytes = writer.to_bytes().unwrap();
        assert_eq!(
            country(&bytes, Shape::Country, "203.0.113.9").as_deref(),
            Some("US")
        );
        assert_eq!(country(&bytes, Shape::Country, "2001:db8::1"), None);
        let mut writer = MmdbWriter::new(Shape::Country);
        writer.insert("::/0".parse().unwrap(), "US");
        assert!(matches!(
            writer.to_bytes(),
            Err(MmdbWriteError::ZeroPrefix(_))
        ));
    }

    #[test]
    fn write_to_a_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("t.mmdb");
        writer(Shape::CountryIsoCode).write_to(&path).unwrap();
        let reader = maxminddb::Reader::open_readfile(&path).unwrap();
        let iso: Option<String> = reader
            .lookup("127.0.0.102".parse().unwrap())
            .unwrap()
            .decode_path(&[
                maxminddb::PathElement::Key("country"),
                maxminddb::PathElement::Key("iso_code"),
            ])
            .unwrap();
        assert_eq!(iso.as_deref(), Some("DE"));
    }
}
