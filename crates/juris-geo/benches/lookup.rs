//! GeoIP lookup cost per query, against the real database in `../shared/data/geoip/` when it
//! is there (skipped otherwise), and a small written one.
//!
//! `cargo bench -p juris-geo --bench lookup`
//!
//! Measured on the shared 2-core development box (bench profile, other builds running, so
//! ±10%), per lookup, IPtoASN country database (5 MB, `country_code` records):
//!
//! | case                                   | tree walk + decode | with the /24 memo |
//! |----------------------------------------|--------------------|-------------------|
//! | 4096 addresses in ~4096 distinct /24s  | ~105 ns            | ~70 ns            |
//! | 4096 addresses in 1000 /24s            | ~96 ns             | ~23 ns            |
//! | `Classifier::classify`, 1000 /24s      |                    | ~37 ns            |
//!
//! and for a written 10k-network database in MaxMind's nested `country.iso_code` shape (where
//! decoding skips sibling maps): ~150–180 ns without the memo, ~55 ns with it (1000 /24s).
//! So the memo pays off: it is kept.

// Benchmarks: a panic is how a setup failure is reported.
#![allow(clippy::unwrap_used, clippy::expect_used, reason = "test code")]

use std::hint::black_box;
use std::net::IpAddr;
use std::path::Path;

use criterion::{criterion_group, criterion_main, BatchSize, Criterion};
use juris_geo::{Classifier, GeoConfig, GeoDb};

const REAL_DATABASE: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/../../../shared/data/geoip/iptoasn-country.mmdb"
);

/// A deterministic spread of addresses (xorshift), `distinct_prefixes` distinct /24s.
fn addresses(count: usize, distinct_prefixes: u32) -> Vec<IpAddr> {
    let mut state: u64 = 0x2545_F491_4F6C_DD1D;
    let mut next = || {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        state
    };
    let prefixes: Vec<u32> = (0..distinct_prefixes)
        .map(|_| (next() as u32) & 0xffff_ff00)
        .collect();
    (0..count)
        .map(|index| {
            let prefix = prefixes[index % prefixes.len()];
            IpAddr::V4((prefix | (next() as u32 & 0xff)).into())
        })
        .collect()
}

fn bench_database(c: &mut Criterion, name: &str, database: &GeoDb) {
    let mut group = c.benchmark_group(name);
    // 4096 addresses in ~4096 distinct /24s (the 4096-slot memo partly collides) and in 1000.
    for (label, distinct) in [("4096-prefixes", 1_000_000), ("1000-prefixes", 1_000)] {
        let addresses = addresses(4096, distinct);
        group.bench_function(format!("lookup_uncached/{label}"), |b| {
            b.iter_batched_ref(
                || addresses.clone(),
                |addresses| {
                    for &address in addresses.iter() {
                        black_box(database.lookup_uncached(address));
                    }
                },
                BatchSize::LargeInput,
            )
        });
        group.bench_function(format!("lookup_memo/{label}"), |b| {
            b.iter_batched_ref(
                || addresses.clone(),
                |addresses| {
                    for &address in addresses.iter() {
                        black_box(database.lookup(address));
                    }
                },
                BatchSize::LargeInput,
            )
        });
    }
    group.finish();
}

fn lookups(c: &mut Criterion) {
    if Path::new(REAL_DATABASE).exists() {
        let database = GeoDb::open(Path::new(REAL_DATABASE), None).unwrap();
        bench_database(c, "iptoasn-country (4096 lookups)", &database);

        let classifier = Classifier::new(&GeoConfig {
            mmdb: Some(REAL_DATABASE.into()),
            field_path: None,
            trusted_ecs_forwarders: vec!["127.0.0.53/32".parse().unwrap()],
        })
        .unwrap();
        let addresses = addresses(4096, 1_000);
        c.bench_function("classify/geoip 1000-prefixes (4096 queries)", |b| {
            b.iter(|| {
                for &address in &addresses {
                    black_box(classifier.classify(address, None, None));
                }
            })
        });
    } else {
        eprintln!("{REAL_DATABASE} is absent: skipping the real-database benchmarks");
    }

    let mut writer =
        juris_testkit::mmdb::MmdbWriter::new(juris_testkit::mmdb::Shape::CountryIsoCode);
    for (index, address) in addresses(10_000, 10_000).into_iter().enumerate() {
        let country = ["IT", "DE", "FR", "ES"][index % 4];
        writer.insert(ipnet::IpNet::new(address, 24).unwrap().trunc(), country);
    }
    let database = GeoDb::from_bytes(writer.to_bytes().unwrap(), "written", None).unwrap();
    bench_database(c, "written 10k /24 maxmind-shape (4096 lookups)", &database);
}

criterion_group!(benches, lookups);
criterion_main!(benches);
