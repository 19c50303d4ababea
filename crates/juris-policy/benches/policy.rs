//! Criterion benchmarks of the policy engine at 1M and 10M blocked names (performance.md W3/W4).
//!
//! Sizes: `JURIS_POLICY_BENCH_SIZES` (comma-separated name counts; default `1000000,10000000`).
//! Names are synthetic and deterministic (splitmix64): 6–14 random letters and digits under 24
//! TLDs, a fifth of them with one more label, half `subtree` and half `domain` targets, spread over
//! three orders for IT, DE and FR. Besides the criterion groups this prints, once per size:
//! validation and compile time (one run each for 10M), `memory_bytes()` per name, and the time
//! from a one-name change to a blocked answer.

use std::hint::black_box;
use std::time::{Duration, Instant};

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use jiff::Timestamp;
use juris_policy::{
    name_to_wire, CompileOptions, CompiledPolicy, Country, Order, OrderKind, OrderState,
    OrderUpdate, PolicyChange, Target, TargetKind, ValidatedOrder, ValidationOptions,
};

const TLDS: [&str; 24] = [
    "com", "net", "org", "to", "io", "it", "de", "fr", "pro", "info", "xyz", "cc", "ru", "co",
    "me", "tv", "biz", "online", "site", "club", "top", "ws", "eu", "ch",
];

struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    fn label(&mut self) -> String {
        const ALPHABET: &[u8] = b"abcdefghijklmnopqrstuvwxyz0123456789";
        let len = 6 + (self.next() % 9) as usize;
        (0..len)
            .map(|i| {
                // Mostly letters, digits only after the first byte.
                let n = self.next() as usize;
                let range = if i == 0 { 26 } else { ALPHABET.len() };
                char::from(ALPHABET[n % range])
            })
            .collect()
    }

    fn name(&mut self) -> String {
        let tld = TLDS[(self.next() % TLDS.len() as u64) as usize];
        let mut name = format!("{}.{tld}", self.label());
        if self.next().is_multiple_of(5) {
            name = format!("{}.{name}", self.label());
        }
        name
    }
}

fn now() -> Timestamp {
    Timestamp::from_second(1_717_243_200).unwrap_or(Timestamp::UNIX_EPOCH)
}

fn raw_order(id: &str, country: &str, targets: Vec<Target>) -> Order {
    Order {
        id: id.into(),
        kind: OrderKind::FeedTicket,
        authority: "Bench".into(),
        reference: id.into(),
        legal_basis: String::new(),
        requested_by: vec![],
        jurisdictions: vec![country.into()],
        targets,
        action: juris_policy::Action::Nxdomain,
        block_addresses: false,
        state: OrderState::Active,
        effective_from: None,
        comply_by: None,
        expires_at: None,
        windows: vec![],
        notice: Default::default(),
        parent: None,
        overrides: vec![],
        transparency: None,
    }
}

struct Fixture {
    policy: CompiledPolicy,
    orders: Vec<ValidatedOrder>,
    hits: Vec<Vec<u8>>,
    misses: Vec<Vec<u8>>,
}

fn fixture(size: usize) -> Fixture {
    let mut rng = Rng(size as u64);
    let countries = ["IT", "DE", "FR"];
    let mut targets: Vec<Vec<Target>> = (0..3).map(|_| Vec::with_capacity(size / 3 + 1)).collect();
    let mut hits = Vec::new();
    for i in 0..size {
        let name = rng.name();
        let kind = if i % 2 == 0 {
            TargetKind::Subtree
        } else {
            TargetKind::Domain
        };
        if i % (size / 4096).max(1) == 0 && hits.len() < 4096 && i % 3 == 0 {
            // Orders are by i % 3; keep hits in order 0 (IT) and query them from IT.
            let query = if kind == TargetKind::Subtree {
                format!("www.{name}")
            } else {
                name.clone()
            };
            hits.push(name_to_wire(&query).unwrap_or_default());
        }
        targets[i % 3].push(Target::new(kind, name));
    }
    let mut miss_rng = Rng(0xdead_beef);
    let misses: Vec<Vec<u8>> = (0..4096)
        .map(|_| name_to_wire(&format!("www.{}", miss_rng.name())).unwrap_or_default())
        .collect();

    let options = ValidationOptions {
        max_targets: size,
        ..ValidationOptions::default()
    };
    let started = Instant::now();
    let orders: Vec<ValidatedOrder> = targets
        .into_iter()
        .enumerate()
        .map(|(i, t)| {
            raw_order(&format!("BENCH-{i}"), countries[i], t)
                .validate(&options)
                .unwrap_or_else(|e| panic!("{e}"))
        })
        .collect();
    let validated = started.elapsed();
    let started = Instant::now();
    let policy = CompiledPolicy::compile(&orders, &CompileOptions::default())
        .unwrap_or_else(|e| panic!("{e}"));
    let compiled = started.elapsed();
    let stats = policy.stats();
    println!(
        "[juris-policy] {size} names: validate {:.2} s, compile {:.2} s (one run), {} distinct names, \
         memory_bytes {} = {:.1} B/name",
        validated.as_secs_f64(),
        compiled.as_secs_f64(),
        stats.base_names,
        stats.memory_bytes,
        stats.memory_bytes as f64 / size as f64,
    );
    Fixture {
        policy,
        orders,
        hits,
        misses,
    }
}

fn sizes() -> Vec<usize> {
    std::env::var("JURIS_POLICY_BENCH_SIZES")
        .unwrap_or_else(|_| "1000000,10000000".into())
        .split(',')
        .filter_map(|s| s.trim().parse().ok())
        .collect()
}

fn label(size: usize) -> String {
    if size.is_multiple_of(1_000_000) {
        format!("{}M", size / 1_000_000)
    } else {
        size.to_string()
    }
}

fn benches(c: &mut Criterion) {
    let it: Country = "IT".parse().unwrap_or_else(|e| panic!("{e}"));
    let de: Country = "DE".parse().unwrap_or_else(|e| panic!("{e}"));
    let now = now();
    for size in sizes() {
        let f = fixture(size);
        let name = label(size);
        assert!(f
            .hits
            .iter()
            .all(|h| f.policy.check_name(h, Some(it), now).is_block()));
        assert!(f
            .misses
            .iter()
            .all(|m| !f.policy.check_name(m, Some(it), now).is_block()));

        let mut group = c.benchmark_group(format!("check_name/{name}"));
        group.throughput(Throughput::Elements(1));
        let mut i = 0usize;
        group.bench_function("miss", |b| {
            b.iter(|| {
                i = (i + 1) & 4095;
                black_box(f.policy.check_name(black_box(&f.misses[i]), Some(it), now))
            })
        });
        let mut i = 0usize;
        group.bench_function("hit_block", |b| {
            b.iter(|| {
                i = (i + 1) % f.hits.len();
                black_box(f.policy.check_name(black_box(&f.hits[i]), Some(it), now))
            })
        });
        let mut i = 0usize;
        group.bench_function("hit_other_jurisdiction", |b| {
            b.iter(|| {
                i = (i + 1) % f.hits.len();
                black_box(f.policy.check_name(black_box(&f.hits[i]), Some(de), now))
            })
        });
        group.finish();

        // One added name: with_changes on the big policy, then the first blocked answer.
        let new_name = "future-domain-of-the-site.to";
        let new_wire = name_to_wire(new_name).unwrap_or_default();
        let target_order = &f.orders[0];
        let validated_one = juris_policy::Order {
            targets: vec![Target::new(TargetKind::Subtree, new_name)],
            ..raw_order("BENCH-0", "IT", vec![])
        }
        .validate(&ValidationOptions::default())
        .unwrap_or_else(|e| panic!("{e}"));
        let change = vec![PolicyChange::Update(OrderUpdate {
            order: target_order.info().clone(),
            added: validated_one.targets().to_vec(),
            removed: vec![],
        })];
        let started = Instant::now();
        let next = f
            .policy
            .with_changes(&change)
            .unwrap_or_else(|e| panic!("{e}"));
        let blocked = next.check_name(&new_wire, Some(it), now).is_block();
        println!(
            "[juris-policy] {size} names: one added name blocked {:.1} µs after the change (with_changes + check), blocked={blocked}",
            started.elapsed().as_secs_f64() * 1e6
        );
        let mut group = c.benchmark_group(format!("change/{name}"));
        group.bench_function("add_one_name", |b| {
            b.iter(|| black_box(f.policy.with_changes(black_box(&change))))
        });
        group.finish();

        if size <= 1_000_000 {
            let mut group = c.benchmark_group(format!("compile/{name}"));
            group.sample_size(10);
            group.measurement_time(Duration::from_secs(10));
            group.bench_function(BenchmarkId::from_parameter(&name), |b| {
                b.iter(|| CompiledPolicy::compile(black_box(&f.orders), &CompileOptions::default()))
            });
            group.finish();
        }
    }
}

criterion_group!(policy, benches);
criterion_main!(policy);
