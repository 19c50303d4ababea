//! Criterion benchmarks of what candidate mining (issue #14 item 3, design 0042) costs per
//! resolved name, in user space: the miss path's offer to the miner's queue and the miner's own
//! work. W2-like names: many hosts under a few hundred registrable domains.
//!
//! - `offer_unfiltered`: the miss path before design 0042 (a name copy and a `try_send` for every
//!   name; the miner then mined each, `miner_observe` below);
//! - `offer_held_back`: the miss path now, for a name whose registrable domain was let through
//!   in this window (the common case): the filter key (registrable domain, no allocation) and an
//!   atomic load and add;
//! - `registrable_key`: the key alone;
//! - `miner_observe`: the miner's work for one mined name (registrable domain, maps, sets).

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    reason = "a benchmark; setup failures abort"
)]

use std::collections::hash_map::RandomState;
use std::hint::black_box;
use std::sync::Arc;

use criterion::{criterion_group, criterion_main, Criterion};
use juris_control::candidates::{registrable_key, Miner, Observation};
use juris_resolver::cache::{CacheConfig, CachedAnswer};
use juris_server::observe::{NameKey, ResolvedSink};

const DOMAINS: usize = 300;
const NAMES: usize = 3000;

fn names() -> Vec<(String, Vec<u8>)> {
    (0..NAMES)
        .map(|i| {
            let name = format!("h{i}.zone{}.com", i % DOMAINS);
            let wire = juris_policy::name_to_wire(&name).unwrap();
            (name, wire)
        })
        .collect()
}

fn answer(name: &[u8]) -> Arc<CachedAnswer> {
    let mut m = vec![0, 0, 0x81, 0x80, 0, 1, 0, 1, 0, 0, 0, 0];
    m.extend_from_slice(name);
    m.extend_from_slice(&[
        0, 1, 0, 1, 0xC0, 12, 0, 1, 0, 1, 0, 0, 0, 60, 0, 4, 198, 51, 100, 1,
    ]);
    Arc::new(CachedAnswer::from_message(&m, 100, &CacheConfig::default()).unwrap())
}

fn mining(c: &mut Criterion) {
    let names = names();
    let answers: Vec<Arc<CachedAnswer>> = names.iter().map(|(_, w)| answer(w)).collect();
    let seed = RandomState::new();
    let mut group = c.benchmark_group("mining_per_name");

    group.bench_function("offer_unfiltered", |b| {
        let (sink, mut receiver) = ResolvedSink::channel(NAMES);
        let mut i = 0;
        b.iter(|| {
            sink.offer(&names[i].1, &answers[i]);
            i = (i + 1) % NAMES;
            if i == 0 {
                while receiver.try_recv().is_ok() {}
            }
        });
    });

    group.bench_function("offer_held_back", |b| {
        let key_seed = seed.clone();
        let key: NameKey = Arc::new(move |wire: &[u8]| registrable_key(wire, &key_seed));
        let (sink, mut receiver) = ResolvedSink::filtered(NAMES, 16_384, key);
        for (i, (_, wire)) in names.iter().enumerate() {
            sink.offer(wire, &answers[i]);
        }
        while receiver.try_recv().is_ok() {}
        let mut i = 0;
        b.iter(|| {
            sink.offer(&names[i].1, &answers[i]);
            i = (i + 1) % NAMES;
        });
        assert_eq!(receiver.try_recv().ok().map(|r| r.name), None);
    });

    group.bench_function("registrable_key", |b| {
        let mut i = 0;
        b.iter(|| {
            let key = registrable_key(black_box(&names[i].1), &seed);
            i = (i + 1) % NAMES;
            key
        });
    });

    group.bench_function("miner_observe", |b| {
        let mut miner = Miner::new(20_000);
        let observations: Vec<Observation> = names
            .iter()
            .map(|(name, _)| Observation {
                name: name.clone(),
                addresses: vec!["198.51.100.1".parse().unwrap()],
                name_servers: vec![format!("ns1.{}", name.split_once('.').unwrap().1)],
                at: 1_700_000_000,
                ..Observation::default()
            })
            .collect();
        let mut i = 0;
        b.iter(|| {
            miner.observe(observations[i].clone());
            i = (i + 1) % NAMES;
        });
    });
    group.finish();
}

criterion_group!(benches, mining);
criterion_main!(benches);
