//! Criterion benchmarks of one cache hit through the whole pipeline, in user space only (no
//! sockets): parse, classification, policy, cache, rendering. The user-space share of
//! performance.md's W1 and W3; the kernel's part is measured by `bench/run.sh`.
//!
//! Cases: the shared cache (`Pipeline::handle_at`, what TCP and encrypted transports use) and
//! a UDP worker's hot answers (`Pipeline::handle_hot`), each without orders and with
//! `JURIS_HIT_BENCH_NAMES` blocked names (default 1,000,000) in three orders for IT, DE and FR
//! that do not touch the 1,000 hot names; the client is on a listener pinned to IT.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    reason = "a benchmark; setup failures abort"
)]

use std::hint::black_box;
use std::net::SocketAddr;
use std::sync::Arc;

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use juris_geo::{Classifier, CountryCode, GeoConfig};
use juris_policy::{
    Action, CompileOptions, CompiledPolicy, Notice, Order, OrderKind, OrderState, Target,
    TargetKind, ValidationOptions,
};
use juris_resolver::cache::{AnswerCache, CacheConfig, CacheKeyRef, CachedAnswer};
use juris_resolver::clock::{ManualClock, SharedClock};
use juris_resolver::{Mode, Resolver, ResolverConfig};
use juris_server::counters::Counters;
use juris_server::{
    ClientContext, HotAnswers, ListenerConfig, Outcome, Pipeline, PolicyEngine, PolicyHandle,
    RateClass, RateLimitConfig, Rates, ServerConfig, Transport,
};

const NOW: u64 = 1_700_000_000;
const HOT_NAMES: usize = 1000;

fn wire_name(name: &str) -> Vec<u8> {
    let mut wire = Vec::new();
    for label in name.split('.') {
        wire.push(label.len() as u8);
        wire.extend_from_slice(label.as_bytes());
    }
    wire.push(0);
    wire
}

/// A NOERROR answer: `name` A 192.0.2.x, TTL 1 day.
fn a_response(name: &[u8], last: u8) -> Vec<u8> {
    let mut m = vec![0, 0, 0x81, 0x80, 0, 1, 0, 1, 0, 0, 0, 0];
    m.extend_from_slice(name);
    m.extend_from_slice(&[
        0, 1, 0, 1, 0xC0, 12, 0, 1, 0, 1, 0, 1, 0x51, 0x80, 0, 4, 192, 0, 2,
    ]);
    m.push(last);
    m
}

/// A query with EDNS (1232, no DO), as dnsperf sends.
fn query(id: u16, name: &[u8]) -> Vec<u8> {
    let mut m = id.to_be_bytes().to_vec();
    m.extend_from_slice(&[0x01, 0x00, 0, 1, 0, 0, 0, 0, 0, 1]);
    m.extend_from_slice(name);
    m.extend_from_slice(&[0, 1, 0, 1]);
    m.extend_from_slice(&[0, 0, 41, 0x04, 0xD0, 0, 0, 0, 0, 0, 0]);
    m
}

/// [`query`] with a COOKIE option holding `cookie` (client cookie, then any server cookie).
fn query_with_cookie(id: u16, name: &[u8], cookie: &[u8]) -> Vec<u8> {
    let mut m = query(id, name);
    let rdlen = m.len() - 2;
    m[rdlen..].copy_from_slice(&(4 + cookie.len() as u16).to_be_bytes());
    m.extend_from_slice(&10u16.to_be_bytes());
    m.extend_from_slice(&(cookie.len() as u16).to_be_bytes());
    m.extend_from_slice(cookie);
    m
}

/// `count` synthetic names (splitmix64), none under the hot names' zone.
fn blocked_names(count: usize) -> Vec<String> {
    let mut state = 0x5EED_u64;
    let mut next = move || {
        state = state.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = state;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    };
    (0..count)
        .map(|_| {
            let label: String = (0..10)
                .map(|_| char::from(b'a' + (next() % 26) as u8))
                .collect();
            format!("{label}.to")
        })
        .collect()
}

fn policy(names: usize) -> CompiledPolicy {
    if names == 0 {
        return CompiledPolicy::empty();
    }
    let all = blocked_names(names);
    let orders: Vec<_> = ["IT", "DE", "FR"]
        .iter()
        .enumerate()
        .map(|(i, country)| {
            Order {
                id: format!("BENCH-{country}"),
                kind: OrderKind::CourtOrder,
                authority: "Court".into(),
                reference: format!("ref {i}"),
                legal_basis: String::new(),
                requested_by: vec![],
                jurisdictions: vec![(*country).into()],
                targets: all
                    .iter()
                    .skip(i)
                    .step_by(3)
                    .map(|name| Target::new(TargetKind::Domain, name.as_str()))
                    .collect(),
                action: Action::Nxdomain,
                block_addresses: false,
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
            .unwrap()
        })
        .collect();
    CompiledPolicy::compile(&orders, &CompileOptions::default()).unwrap()
}

fn pipeline(policy: CompiledPolicy, names: &[Vec<u8>], rate_limit: RateLimitConfig) -> Pipeline {
    let clock: SharedClock = Arc::new(ManualClock::new(NOW));
    let cache = Arc::new(AnswerCache::new(CacheConfig::default()));
    for (i, name) in names.iter().enumerate() {
        let entry =
            CachedAnswer::from_message(&a_response(name, i as u8), NOW, cache.config()).unwrap();
        let key = CacheKeyRef {
            name,
            qtype: 1,
            qclass: 1,
            dnssec_ok: false,
        };
        assert!(cache.insert(key.to_owned_key(), Arc::new(entry)));
    }
    let resolver = Resolver::new(
        ResolverConfig {
            mode: Mode::Forward {
                upstreams: vec!["127.0.0.1:9".parse().unwrap()],
            },
            ..ResolverConfig::default()
        },
        cache,
        Arc::clone(&clock),
    )
    .unwrap();
    let config = ServerConfig {
        listeners: vec![ListenerConfig {
            country: CountryCode::parse("IT").ok(),
            ..ListenerConfig::udp_and_tcp("127.0.0.1:0".parse().unwrap())
        }],
        rate_limit,
        ..ServerConfig::default()
    };
    let engine = PolicyEngine::new(
        Arc::new(PolicyHandle::new(policy)),
        Arc::new(Classifier::new(&GeoConfig::default()).unwrap()),
    );
    Pipeline::new(&config, resolver, clock, engine).unwrap()
}

fn hits(c: &mut Criterion) {
    let blocked: usize = std::env::var("JURIS_HIT_BENCH_NAMES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(1_000_000);
    let names: Vec<Vec<u8>> = (0..HOT_NAMES)
        .map(|i| wire_name(&format!("name{i}.zone{}.com", i % 24)))
        .collect();
    let queries: Vec<Vec<u8>> = names
        .iter()
        .enumerate()
        .map(|(i, name)| query(i as u16, name))
        .collect();
    let client: SocketAddr = "127.0.0.101:40000".parse().unwrap();
    let context = ClientContext {
        client,
        transport: Transport::Udp,
        listener: 0,
        client_subnet: None,
    };
    let mut group = c.benchmark_group("cache_hit");
    group.throughput(Throughput::Elements(1));
    for size in [0, blocked] {
        let pipeline = pipeline(policy(size), &names, RateLimitConfig::default());
        let counters = Counters::default();
        let mut out = vec![0u8; 1232];
        let mut next = 0usize;
        let label = if size == 0 {
            "no policy".to_owned()
        } else {
            format!("{size} blocked names")
        };
        group.bench_function(format!("shared cache, {label}"), |b| {
            b.iter(|| {
                next = (next + 1) % HOT_NAMES;
                let outcome =
                    pipeline.handle_at(&queries[next], context, &mut out, &counters, NOW + 5);
                assert!(matches!(outcome, Outcome::Respond(_)));
                black_box(&out);
            })
        });
        // DNS cookies (RFC 7873), without orders only: the COOKIE option is added to the OPT
        // of every answer, hot ones included; a client cookie alone costs a fresh server
        // cookie (two SipHash runs), a valid server cookie its verification (two more).
        let (client_only, with_server) = if size == 0 {
            let client_only: Vec<Vec<u8>> = names
                .iter()
                .enumerate()
                .map(|(i, name)| query_with_cookie(i as u16, name, &[7; 8]))
                .collect();
            let with_server = client_only
                .iter()
                .zip(&names)
                .enumerate()
                .map(|(i, (q, name))| {
                    let Outcome::Respond(len) =
                        pipeline.handle_at(q, context, &mut out, &counters, NOW + 5)
                    else {
                        panic!("no answer");
                    };
                    // The COOKIE option closes the response: its last 24 bytes.
                    query_with_cookie(i as u16, name, &out[len - 24..len])
                })
                .collect();
            (client_only, with_server)
        } else {
            (Vec::new(), Vec::new())
        };
        let mut hot = HotAnswers::new();
        for (variant, hot_queries) in [
            (String::new(), &queries),
            (", client cookie".to_owned(), &client_only),
            (", valid server cookie".to_owned(), &with_server),
        ] {
            if hot_queries.is_empty() {
                continue;
            }
            group.bench_function(format!("hot answers, {label}{variant}"), |b| {
                b.iter(|| {
                    next = (next + 1) % HOT_NAMES;
                    let outcome = pipeline.handle_hot(
                        &hot_queries[next],
                        context,
                        &mut out,
                        &counters,
                        NOW + 5,
                        &mut hot,
                    );
                    // NOERROR: a cookie that did not verify would be BADCOOKIE.
                    assert!(matches!(outcome, Outcome::Respond(_)) && out[3] & 0x0f == 0);
                    black_box(&out);
                })
            });
        }
        let stats = counters.snapshot();
        // For instruction counts under callgrind: divide by the queries run.
        eprintln!(
            "{label}: {} queries, {} from hot answers",
            stats.udp_queries, stats.cache_hits_hot
        );
    }
    // The hot path with the rate limits on (query and answer rates per client prefix): what
    // a UDP hit pays for the limiter's two table updates. The clock moves one second every
    // 100,000 queries so the client stays within its rate (1,000,000 per second).
    let mut rates = Rates::default();
    rates.set(RateClass::Queries, juris_server::ratelimit::MAX_RATE);
    rates.set(RateClass::Answers, juris_server::ratelimit::MAX_RATE);
    let limited = pipeline(
        policy(0),
        &names,
        RateLimitConfig {
            rates,
            ..RateLimitConfig::default()
        },
    );
    let counters = Counters::default();
    let mut out = vec![0u8; 1232];
    let mut next = 0usize;
    let mut hot = HotAnswers::new();
    group.bench_function("hot answers, no policy, rate limits on", |b| {
        b.iter(|| {
            next += 1;
            let outcome = limited.handle_hot(
                &queries[next % HOT_NAMES],
                context,
                &mut out,
                &counters,
                NOW + 5 + (next / 100_000) as u64,
                &mut hot,
            );
            assert!(matches!(outcome, Outcome::Respond(_)));
            black_box(&out);
        })
    });
    group.finish();
}

criterion_group!(benches, hits);
criterion_main!(benches);
