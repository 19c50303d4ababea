//! `juris geoip import FILE.csv --out countries.mmdb`: a country database from the free CSV
//! formats (docs/design/0033).
//!
//! ```text
//!  rows, one per line, commas (or tabs) between fields, read as a stream:
//!    start,end,country     1.0.0.0,1.0.0.255,AU        ip-location-db, DB-IP lite, iptoasn
//!    prefix,country        2001:db8::/32,FR            prefix lists
//!  ─► ranges split into CIDR blocks ─► identical blocks with two countries: error (both lines)
//!  ─► MmdbWriter (Shape::CountryCode: {"country_code": "AU"}) ─► OUT.tmp ─► rename to OUT
//! ```
//!
//! Empty lines and `#` comments are skipped, and a first line that is not an address (a
//! header such as `start,end,country`). Country `ZZ` (ISO's "unknown") and `None` (iptoasn's
//! "not routed") leave the range out: juris then classifies it as unknown, as it would with
//! `ZZ`'s absence. Nested networks: the more specific one wins, as in a routing table.

use std::io::BufRead;
use std::net::IpAddr;

use ipnet::IpNet;

use crate::writer::{MmdbWriteError, MmdbWriter, Shape};
use crate::CountryCode;

/// Why an import failed; row errors name the line (1-based) and the field.
#[derive(Debug, thiserror::Error)]
pub enum ImportError {
    /// The input could not be read.
    #[error("line {line}: cannot read: {source}")]
    Read {
        /// The line being read.
        line: u64,
        /// What the OS said.
        #[source]
        source: std::io::Error,
    },
    /// A row is malformed.
    #[error("line {line}: {field}: {reason}")]
    Row {
        /// The line.
        line: u64,
        /// `start`, `end`, `prefix`, `country` or `row`.
        field: &'static str,
        /// What is wrong, with the text found.
        reason: String,
    },
    /// Two rows give the same network two countries.
    #[error(
        "line {line}: {network} is {country} here but {earlier_country} on line {earlier_line}"
    )]
    Conflict {
        /// The later row.
        line: u64,
        /// The network both cover.
        network: IpNet,
        /// The later row's country.
        country: String,
        /// The earlier row.
        earlier_line: u64,
        /// The earlier row's country.
        earlier_country: String,
    },
    /// Nothing to write.
    #[error("no rows with a country in the input")]
    Empty,
    /// The database could not be built or written.
    #[error(transparent)]
    Write(#[from] MmdbWriteError),
}

/// What an import read and wrote.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ImportReport {
    /// Rows with a country (not counting headers, comments, empty lines).
    pub rows: u64,
    /// Rows left out for `ZZ` or `None`.
    pub unknown: u64,
    /// CIDR blocks written.
    pub networks: u64,
    /// Distinct countries.
    pub countries: usize,
}

/// A parsed row: the CIDR blocks it covers and its country (`None`: left out).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Row {
    /// The blocks, in address order.
    pub networks: Vec<IpNet>,
    /// The country; `None` for `ZZ` and `None`.
    pub country: Option<CountryCode>,
}

/// Reads rows from `input` and builds the database. `progress(rows)` is called every `every`
/// lines read (0: never).
pub fn import_csv(
    input: impl BufRead,
    every: u64,
    progress: &mut dyn FnMut(u64),
) -> Result<(MmdbWriter, ImportReport), ImportError> {
    let mut report = ImportReport::default();
    // (block, country, line): kept to find two rows that give one block two countries.
    let mut blocks: Vec<(IpNet, CountryCode, u64)> = Vec::new();
    let mut number = 0_u64;
    let mut seen_row = false;
    for line in input.lines() {
        number += 1;
        let line = line.map_err(|source| ImportError::Read {
            line: number,
            source,
        })?;
        if every > 0 && number.is_multiple_of(every) {
            progress(number);
        }
        let text = line.trim();
        if text.is_empty() || text.starts_with('#') {
            continue;
        }
        let row = match parse_row(text) {
            Ok(row) => row,
            // A header: the first line, not starting with an address.
            Err((field, _)) if !seen_row && number == 1 && is_header(text, field) => continue,
            Err((field, reason)) => {
                return Err(ImportError::Row {
                    line: number,
                    field,
                    reason,
                })
            }
        };
        seen_row = true;
        match row.country {
            None => report.unknown += 1,
            Some(country) => {
                report.rows += 1;
                blocks.extend(row.networks.into_iter().map(|n| (n, country, number)));
            }
        }
    }
    if blocks.is_empty() {
        return Err(ImportError::Empty);
    }
    // Stable: for one block, rows stay in file order.
    blocks.sort_by_key(|&(network, _, _)| network);
    for pair in blocks.windows(2) {
        let [(a, a_country, a_line), (b, b_country, b_line)] = pair else {
            continue;
        };
        if a == b && a_country != b_country {
            return Err(ImportError::Conflict {
                line: *b_line,
                network: *b,
                country: b_country.to_string(),
                earlier_line: *a_line,
                earlier_country: a_country.to_string(),
            });
        }
    }
    blocks.dedup_by_key(|&mut (network, _, _)| network);
    let mut writer = MmdbWriter::new(Shape::CountryCode);
    writer
        .database_type("juris-country")
        .description("juris geoip import");
    let mut countries = std::collections::HashSet::new();
    for (network, country, _) in &blocks {
        countries.insert(*country);
        writer.insert(*network, country.as_str());
    }
    report.networks = blocks.len() as u64;
    report.countries = countries.len();
    Ok((writer, report))
}

/// A rejected first line is a header when its first field does not look like an address.
fn is_header(text: &str, field: &'static str) -> bool {
    let first = fields(text).next().unwrap_or("");
    (field == "start" || field == "prefix" || field == "row") && !first.contains([':', '.', '/'])
}

/// The fields of a row: commas, or tabs when there is no comma; blanks and double quotes
/// around each field dropped.
fn fields(text: &str) -> impl Iterator<Item = &str> {
    let separator = if text.contains(',') { ',' } else { '\t' };
    text.split(separator)
        .map(|f| f.trim().trim_matches('"').trim())
}

/// Parses one row; an error is (field, reason).
pub fn parse_row(text: &str) -> Result<Row, (&'static str, String)> {
    let fields: Vec<&str> = fields(text).collect();
    let (networks, country) = match fields[..] {
        [prefix, country] => {
            let network: IpNet = prefix.parse().map_err(|_| {
                (
                    "prefix",
                    format!("{prefix:?} is not a network such as 192.0.2.0/24 or 2001:db8::/32"),
                )
            })?;
            if network.trunc() != network {
                return Err((
                    "prefix",
                    format!(
                        "{prefix} has bits set past its length (did you mean {}?)",
                        network.trunc()
                    ),
                ));
            }
            if let IpNet::V6(v6) = network {
                if v6.prefix_len() == 0 {
                    return Err((
                        "prefix",
                        "::/0 (all of IPv6) cannot be stored in a MaxMind DB".to_owned(),
                    ));
                }
            }
            (vec![network], country)
        }
        [start, end, country] => (range_row(start, end)?, country),
        _ => {
            return Err((
                "row",
                format!(
                    "{} fields; expected start,end,country or prefix,country",
                    fields.len()
                ),
            ))
        }
    };
    let country = match country {
        "ZZ" | "zz" | "None" | "none" => None,
        code => Some(CountryCode::parse(code).map_err(|e| ("country", e.to_string()))?),
    };
    Ok(Row { networks, country })
}

fn range_row(start: &str, end: &str) -> Result<Vec<IpNet>, (&'static str, String)> {
    let address = |text: &str, field: &'static str| {
        text.parse::<IpAddr>()
            .map_err(|_| (field, format!("{text:?} is not an IPv4 or IPv6 address")))
    };
    let (first, last) = (address(start, "start")?, address(end, "end")?);
    let blocks = match (first, last) {
        (IpAddr::V4(a), IpAddr::V4(b)) if a <= b => {
            cidr_blocks(u128::from(u32::from(a)), u128::from(u32::from(b)), 32)
        }
        (IpAddr::V6(a), IpAddr::V6(b)) if a <= b => cidr_blocks(u128::from(a), u128::from(b), 128),
        (IpAddr::V4(_), IpAddr::V4(_)) | (IpAddr::V6(_), IpAddr::V6(_)) => {
            return Err(("end", format!("{end} is before the start {start}")))
        }
        _ => {
            return Err((
                "end",
                format!("{end} is not of the same address family as the start {start}"),
            ))
        }
    };
    blocks
        .into_iter()
        .map(|(bits, prefix_len)| {
            let network = if first.is_ipv4() {
                // `bits` < 2^32 for IPv4 (from the range), so the conversion cannot fail.
                let v4 = u32::try_from(bits).unwrap_or(u32::MAX);
                ipnet::Ipv4Net::new(v4.into(), prefix_len).map(IpNet::V4)
            } else {
                ipnet::Ipv6Net::new(bits.into(), prefix_len).map(IpNet::V6)
            };
            network.map_err(|e| ("end", e.to_string()))
        })
        .collect::<Result<Vec<_>, _>>()
        .and_then(|blocks| {
            if blocks
                .iter()
                .any(|n| matches!(n, IpNet::V6(v6) if v6.prefix_len() == 0))
            {
                Err((
                    "end",
                    "the range is all of IPv6 (::/0), which a MaxMind DB cannot store".to_owned(),
                ))
            } else {
                Ok(blocks)
            }
        })
}

/// The CIDR blocks (network bits, prefix length) that cover exactly `first..=last` in an
/// address space of `width` bits (32 or 128), fewest blocks, in address order.
pub fn cidr_blocks(first: u128, last: u128, width: u32) -> Vec<(u128, u8)> {
    let mut blocks = Vec::new();
    let mut start = first;
    loop {
        // The largest block aligned at `start` that does not pass `last`.
        let mut size_bits = if start == 0 {
            width
        } else {
            start.trailing_zeros().min(width)
        };
        let block_last = |bits: u32| {
            if bits >= 128 {
                u128::MAX
            } else {
                start | ((1_u128 << bits) - 1)
            }
        };
        while size_bits > 0 && block_last(size_bits) > last {
            size_bits -= 1;
        }
        // width ≤ 128 and size_bits ≤ width: the length fits a u8.
        blocks.push((start, (width - size_bits) as u8));
        let end = block_last(size_bits);
        if end >= last {
            return blocks;
        }
        start = end + 1;
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used, reason = "test code")]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use std::net::{Ipv4Addr, Ipv6Addr};

    fn import(text: &str) -> Result<(MmdbWriter, ImportReport), ImportError> {
        import_csv(text.as_bytes(), 0, &mut |_| {})
    }

    fn country_of(bytes: &[u8], address: IpAddr) -> Option<String> {
        crate::writer::read_country(bytes, Shape::CountryCode, address).unwrap()
    }

    #[test]
    fn ranges_and_prefixes_with_header_comments_and_unknown() {
        let text = "start,end,country\n\
                    # a comment\n\
                    \n\
                    1.0.0.0,1.0.0.255,AU\n\
                    \"1.0.1.0\",\"1.0.3.255\",\"cn\"\n\
                    2001:db8::,2001:db8::ffff,FR\n\
                    198.51.100.0/24,IT\n\
                    203.0.113.0\t203.0.113.255\tZZ\n\
                    10.0.0.0/8,None\n";
        let (writer, report) = import(text).unwrap();
        assert_eq!(
            report,
            ImportReport {
                rows: 4,
                unknown: 2,
                networks: 1 + 2 + 1 + 1,
                countries: 4
            }
        );
        let bytes = writer.to_bytes().unwrap();
        let at = |a: &str| country_of(&bytes, a.parse().unwrap());
        assert_eq!(at("1.0.0.7").as_deref(), Some("AU"));
        assert_eq!(at("1.0.2.9").as_deref(), Some("CN"));
        assert_eq!(at("1.0.4.0"), None);
        assert_eq!(at("2001:db8::abcd").as_deref(), Some("FR"));
        assert_eq!(at("2001:db8::1:0"), None);
        assert_eq!(at("198.51.100.200").as_deref(), Some("IT"));
        assert_eq!(at("203.0.113.1"), None);
        assert_eq!(at("10.1.1.1"), None);
        // juris's own loader detects the field and agrees.
        let db = crate::GeoDb::from_bytes(bytes, "t.mmdb", None).unwrap();
        assert_eq!(db.info().field_path, "country_code");
        assert_eq!(
            db.lookup("1.0.0.7".parse().unwrap()).map(|c| c.to_string()),
            Some("AU".into())
        );
    }

    #[test]
    fn errors_name_the_line_and_the_field() {
        for (text, expected) in [
            ("1.0.0.0,1.0.0.255,AU\n1.0.1.0,1.0.0.255,AU\n", "line 2: end: 1.0.0.255 is before"),
            ("1.0.0.0,1.0.0.x,AU\n", "line 1: end: \"1.0.0.x\" is not an IPv4"),
            ("1.0.0.0,2001:db8::,AU\n", "line 1: end: 2001:db8:: is not of the same address family"),
            ("1.0.0.0,1.0.0.255,AUS\n", "line 1: country: not an ISO 3166-1"),
            ("1.0.0.0/24,A1\n", "line 1: country"),
            ("1.0.0.1/24,AU\n", "line 1: prefix: 1.0.0.1/24 has bits set past its length (did you mean 1.0.0.0/24?)"),
            ("1.0.0.0/24,AU\nfoo,AU\n", "line 2: prefix: \"foo\" is not a network"),
            ("1.0.0.0/24,AU,x,y\n", "line 1: row: 4 fields"),
            ("::/0,AU\n", "line 1: prefix: ::/0"),
            ("::,ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff,AU\n", "line 1: end: the range is all of IPv6"),
            ("# nothing\n", "no rows with a country"),
            ("1.0.0.0/24,AU\n1.0.0.0,1.0.0.255,NZ\n", "line 2: 1.0.0.0/24 is NZ here but AU on line 1"),
        ] {
            let error = import(text).err().expect(text).to_string();
            assert!(error.starts_with(expected), "{text:?}: {error}");
        }
        // The same block twice with the same country is fine.
        assert!(import("1.0.0.0/24,AU\n1.0.0.0,1.0.0.255,AU\n").is_ok());
    }

    #[test]
    fn nested_prefixes_the_more_specific_wins() {
        let (writer, _) = import("10.0.0.0/8,DE\n10.1.0.0/16,AT\n").unwrap();
        let bytes = writer.to_bytes().unwrap();
        assert_eq!(
            country_of(&bytes, "10.1.2.3".parse().unwrap()).as_deref(),
            Some("AT")
        );
        assert_eq!(
            country_of(&bytes, "10.2.2.3".parse().unwrap()).as_deref(),
            Some("DE")
        );
    }

    #[test]
    fn progress_every_n_lines() {
        let text: String = (0..25).map(|i| format!("10.0.{i}.0/24,IT\n")).collect();
        let mut calls = Vec::new();
        import_csv(text.as_bytes(), 10, &mut |n| calls.push(n)).unwrap();
        assert_eq!(calls, [10, 20]);
    }

    #[test]
    fn cidr_blocks_at_the_edges() {
        assert_eq!(cidr_blocks(0, u128::from(u32::MAX), 32), [(0, 0)]);
        assert_eq!(cidr_blocks(0, u128::MAX, 128), [(0, 0)]);
        assert_eq!(cidr_blocks(u128::MAX, u128::MAX, 128), [(u128::MAX, 128)]);
        assert_eq!(cidr_blocks(5, 5, 32), [(5, 32)]);
        // 1.0.1.0-1.0.3.255 = 1.0.1.0/24 + 1.0.2.0/23
        assert_eq!(
            cidr_blocks(0x0100_0100, 0x0100_03ff, 32),
            [(0x0100_0100, 24), (0x0100_0200, 23)]
        );
    }

    /// Checks that `blocks` are aligned, in order, adjacent, and cover exactly first..=last.
    fn covers_exactly(blocks: &[(u128, u8)], first: u128, last: u128, width: u32) {
        let mut next = first;
        for (i, &(start, len)) in blocks.iter().enumerate() {
            assert_eq!(start, next, "block {i} starts where the previous ended");
            let host_bits = width - u32::from(len);
            let end = if host_bits >= 128 {
                u128::MAX
            } else {
                start | ((1 << host_bits) - 1)
            };
            if host_bits < 128 {
                assert_eq!(start & ((1 << host_bits) - 1), 0, "block {i} aligned");
            }
            assert!(end <= last, "block {i} stays in the range");
            if i + 1 == blocks.len() {
                assert_eq!(end, last, "the last block ends the range");
            } else {
                next = end + 1;
            }
        }
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(64))]

        /// Every address of a small IPv4 range maps to its country in the written database;
        /// the neighbours on both sides do not.
        #[test]
        fn every_address_of_a_range_maps_to_its_country(start in 1_u32..u32::MAX - 5000, len in 0_u32..3000) {
            let end = start + len;
            let (a, b) = (Ipv4Addr::from(start), Ipv4Addr::from(end));
            let (writer, _) = import(&format!("{a},{b},IT\n")).unwrap();
            let bytes = writer.to_bytes().unwrap();
            let reader = maxminddb::Reader::from_source(&bytes[..]).unwrap();
            let country = |n: u32| {
                reader.lookup(IpAddr::V4(Ipv4Addr::from(n))).unwrap()
                    .decode_path::<String>(&[maxminddb::PathElement::Key("country_code")]).unwrap()
            };
            for n in start..=end {
                prop_assert_eq!(country(n), Some("IT".to_owned()), "{}", Ipv4Addr::from(n));
            }
            prop_assert_eq!(country(start - 1), None);
            prop_assert_eq!(country(end + 1), None);
        }

        /// Any IPv4 or IPv6 range splits into aligned, adjacent blocks covering exactly it;
        /// the ends and the neighbours are checked in the written database.
        #[test]
        fn any_range_splits_exactly(a in any::<u128>(), b in any::<u128>(), v4 in any::<bool>()) {
            let (width, mask) = if v4 { (32, u128::from(u32::MAX)) } else { (128, u128::MAX) };
            let (first, last) = if (a & mask) <= (b & mask) { (a & mask, b & mask) } else { (b & mask, a & mask) };
            let blocks = cidr_blocks(first, last, width);
            covers_exactly(&blocks, first, last, width);
            let address = |n: u128| if v4 {
                IpAddr::V4(Ipv4Addr::from(u32::try_from(n).unwrap()))
            } else {
                IpAddr::V6(Ipv6Addr::from(n))
            };
            if !v4 && first == 0 && last == u128::MAX {
                return Ok(());
            }
            let (writer, report) = import(&format!("{},{},FR\n", address(first), address(last))).unwrap();
            prop_assert_eq!(report.networks, blocks.len() as u64);
            let bytes = writer.to_bytes().unwrap();
            for n in [first, last, first + (last - first) / 2] {
                prop_assert_eq!(country_of(&bytes, address(n)), Some("FR".to_owned()));
            }
            if first > 0 {
                prop_assert_eq!(country_of(&bytes, address(first - 1)), None);
            }
            if last < mask {
                prop_assert_eq!(country_of(&bytes, address(last + 1)), None);
            }
        }
    }
}
