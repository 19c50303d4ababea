//! juris-geo end to end: MMDB files written by `juris_testkit::mmdb`, read through the public
//! API only.

// Tests: a panic is how a failure is reported.
#![allow(clippy::unwrap_used, clippy::expect_used, reason = "test code")]
// The allocation counter below must implement `GlobalAlloc`, which is an unsafe trait; it
// only forwards to the system allocator.
#![allow(
    unsafe_code,
    reason = "the allocation counter implements GlobalAlloc, an unsafe trait; it only forwards to the system allocator"
)]

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;
use std::net::IpAddr;
use std::path::{Path, PathBuf};

use juris_geo::{
    Classifier, CountryCode, DecidedBy, FieldPath, GeoConfig, GeoDb, GeoError, Jurisdiction,
};
use juris_testkit::mmdb::{MmdbWriter, Shape, Value};
use proptest::prelude::*;

fn cc(code: &str) -> CountryCode {
    CountryCode::parse(code).unwrap()
}

fn ip(text: &str) -> IpAddr {
    text.parse().unwrap()
}

/// The standard test database: 127.0.0.101 → IT, 127.0.0.102 → DE, 2001:db8::/32 → FR, plus a
/// /24 with a different /32 inside (for ECS truncation) and the same in IPv6 at /56 and /64.
fn standard(shape: Shape) -> MmdbWriter {
    let mut writer = MmdbWriter::new(shape);
    writer
        .insert("127.0.0.101/32".parse().unwrap(), "IT")
        .insert("127.0.0.102/32".parse().unwrap(), "DE")
        .insert("2001:db8::/32".parse().unwrap(), "FR")
        .insert("192.0.2.0/24".parse().unwrap(), "DE")
        .insert("192.0.2.77/32".parse().unwrap(), "IT")
        .insert("2001:db8:1:2300::/56".parse().unwrap(), "AT")
        .insert("2001:db8:1:23ff::/64".parse().unwrap(), "IT")
        .insert("127.0.0.53/32".parse().unwrap(), "ES");
    writer
}

fn write(dir: &Path, name: &str, writer: &MmdbWriter) -> PathBuf {
    let path = dir.join(name);
    writer.write_to(&path).unwrap();
    path
}

fn classifier(mmdb: &Path, trusted: &[&str]) -> Classifier {
    Classifier::new(&GeoConfig {
        mmdb: Some(mmdb.to_owned()),
        field_path: None,
        trusted_ecs_forwarders: trusted.iter().map(|net| net.parse().unwrap()).collect(),
    })
    .unwrap()
}

fn standard_classifier() -> (tempfile::TempDir, Classifier) {
    let dir = tempfile::tempdir().unwrap();
    let path = write(dir.path(), "geo.mmdb", &standard(Shape::CountryCode));
    let classifier = classifier(&path, &["127.0.0.53/32", "2001:db8:ffff::/48"]);
    (dir, classifier)
}

#[test]
fn listener_pin_beats_ecs_beats_geoip_beats_unknown() {
    let (_dir, classifier) = standard_classifier();
    let forwarder = ip("127.0.0.53");
    let ecs = Some((ip("192.0.2.1"), 24));

    let pinned = classifier.classify(forwarder, Some(cc("FR")), ecs);
    assert_eq!(
        pinned,
        Jurisdiction {
            country: Some(cc("FR")),
            decided_by: DecidedBy::Listener,
            ecs_prefix_len: None
        }
    );

    let by_ecs = classifier.classify(forwarder, None, ecs);
    assert_eq!(
        by_ecs,
        Jurisdiction {
            country: Some(cc("DE")),
            decided_by: DecidedBy::TrustedEcs,
            ecs_prefix_len: Some(24)
        }
    );

    let by_source = classifier.classify(forwarder, None, None);
    assert_eq!(
        by_source,
        Jurisdiction {
            country: Some(cc("ES")),
            decided_by: DecidedBy::GeoIp,
            ecs_prefix_len: None
        }
    );

    assert_eq!(
        classifier.classify(ip("127.0.0.1"), None, None),
        Jurisdiction::UNKNOWN
    );
    assert_eq!(
        classifier.classify(ip("2001:db9::1"), None, None),
        Jurisdiction::UNKNOWN
    );
    assert_eq!(
        classifier.classify(ip("2001:db8:5::1"), None, None).country,
        Some(cc("FR"))
    );
}

#[test]
fn ecs_is_ignored_from_untrusted_sources() {
    let (_dir, classifier) = standard_classifier();
    let ecs = Some((ip("192.0.2.1"), 24));
    let italian = classifier.classify(ip("127.0.0.101"), None, ecs);
    assert_eq!(italian.country, Some(cc("IT")));
    assert_eq!(italian.decided_by, DecidedBy::GeoIp);
    assert_eq!(italian.ecs_prefix_len, None);
    // An untrusted client outside the database stays unknown whatever its ECS says.
    assert_eq!(
        classifier.classify(ip("127.0.0.1"), None, ecs),
        Jurisdiction::UNKNOWN
    );
    // The trusted list is by prefix: 2001:db8:ffff::/48 covers this forwarder, not the next.
    let ecs_v6 = Some((ip("2001:db8:1:2300::1"), 56));
    assert_eq!(
        classifier
            .classify(ip("2001:db8:ffff:1::53"), None, ecs_v6)
            .decided_by,
        DecidedBy::TrustedEcs
    );
    let outside = classifier.classify(ip("2001:db8:fffe::53"), None, ecs_v6);
    assert_eq!(outside.decided_by, DecidedBy::GeoIp);
    assert_eq!(outside.country, Some(cc("FR")));
}

#[test]
fn ecs_is_truncated_to_24_and_56_before_lookup() {
    let (_dir, classifier) = standard_classifier();
    let database = classifier.database().unwrap();
    // The database itself separates the /32 from its /24 …
    assert_eq!(database.lookup(ip("192.0.2.77")), Some(cc("IT")));
    assert_eq!(database.lookup(ip("192.0.2.0")), Some(cc("DE")));
    assert_eq!(database.lookup(ip("2001:db8:1:23ff::1")), Some(cc("IT")));
    assert_eq!(database.lookup(ip("2001:db8:1:2300::")), Some(cc("AT")));

    // … but a /32 ECS is looked up as its /24, and a /128 as its /56.
    let forwarder = ip("127.0.0.53");
    let v4 = classifier.classify(forwarder, None, Some((ip("192.0.2.77"), 32)));
    assert_eq!(v4.country, Some(cc("DE")));
    assert_eq!(v4.ecs_prefix_len, Some(24));
    let v6 = classifier.classify(forwarder, None, Some((ip("2001:db8:1:23ff::1"), 128)));
    assert_eq!(v6.country, Some(cc("AT")));
    assert_eq!(v6.ecs_prefix_len, Some(56));
    // Shorter prefixes are kept as sent.
    let short = classifier.classify(forwarder, None, Some((ip("2001:db8:1:23ff::1"), 40)));
    assert_eq!(short.country, Some(cc("FR")));
    assert_eq!(short.ecs_prefix_len, Some(40));
}

#[test]
fn trusted_ecs_outside_the_database_is_unknown_not_the_forwarder() {
    let (_dir, classifier) = standard_classifier();
    let forwarder = ip("127.0.0.53"); // itself in the database (ES)
    let unknown = classifier.classify(forwarder, None, Some((ip("203.0.113.9"), 32)));
    assert_eq!(unknown.country, None);
    assert_eq!(unknown.decided_by, DecidedBy::Unknown);
    assert_eq!(unknown.ecs_prefix_len, Some(24));
    // SOURCE PREFIX-LENGTH 0 (the client opted out) counts as no option: the forwarder's
    // address decides.
    let opted_out = classifier.classify(forwarder, None, Some((ip("203.0.113.9"), 0)));
    assert_eq!(opted_out.country, Some(cc("ES")));
    assert_eq!(opted_out.decided_by, DecidedBy::GeoIp);
}

#[test]
fn ipv4_mapped_ipv6_is_normalised() {
    let (_dir, classifier) = standard_classifier();
    // The database has no ::ffff:0:0/96 alias, so only normalisation can find these.
    let mapped = classifier.classify(ip("::ffff:127.0.0.101"), None, None);
    assert_eq!(mapped.country, Some(cc("IT")));
    assert_eq!(mapped.decided_by, DecidedBy::GeoIp);
    // A mapped forwarder is trusted by its IPv4 entry, and a mapped ECS address is cut as IPv4.
    let via_mapped_forwarder = classifier.classify(
        ip("::ffff:127.0.0.53"),
        None,
        Some((ip("::ffff:192.0.2.77"), 128)),
    );
    assert_eq!(via_mapped_forwarder.country, Some(cc("DE")));
    assert_eq!(via_mapped_forwarder.ecs_prefix_len, Some(24));
    let database = classifier.database().unwrap();
    assert_eq!(
        database.lookup_uncached(ip("::ffff:127.0.0.102")),
        Some(cc("DE"))
    );
}

#[test]
fn each_record_shape_is_detected() {
    let dir = tempfile::tempdir().unwrap();
    for shape in [Shape::CountryIsoCode, Shape::CountryCode, Shape::Country] {
        let path = write(dir.path(), "shape.mmdb", &standard(shape));
        let classifier = classifier(&path, &[]);
        let info = classifier.database().unwrap().info().clone();
        assert_eq!(info.field_path, shape.field_path(), "{shape:?}");
        assert!(info.field_path_detected);
        assert_eq!(info.database_type, "juris-test");
        assert_eq!(
            classifier.classify(ip("127.0.0.101"), None, None).country,
            Some(cc("IT")),
            "{shape:?}"
        );
    }
}

#[test]
fn ipinfo_lite_records_use_country_code_not_the_country_name() {
    let dir = tempfile::tempdir().unwrap();
    let mut writer = MmdbWriter::new(Shape::Country);
    writer.insert_value(
        "127.0.0.101/32".parse().unwrap(),
        Value::Map(vec![
            ("country".into(), Value::String("Italy".into())),
            ("country_code".into(), Value::String("IT".into())),
        ]),
    );
    let path = write(dir.path(), "lite.mmdb", &writer);
    let classifier = classifier(&path, &[]);
    assert_eq!(
        classifier.database().unwrap().field_path().as_str(),
        "country_code"
    );
    assert_eq!(
        classifier.classify(ip("127.0.0.101"), None, None).country,
        Some(cc("IT"))
    );
}

#[test]
fn configured_field_paths() {
    let dir = tempfile::tempdir().unwrap();
    let mut writer = MmdbWriter::new(Shape::Country);
    writer.insert_value(
        "127.0.0.101/32".parse().unwrap(),
        Value::Map(vec![(
            "places".into(),
            Value::Array(vec![Value::Map(vec![(
                "cc".into(),
                Value::String("it".into()),
            )])]),
        )]),
    );
    let path = write(dir.path(), "custom.mmdb", &writer);
    let config = |field_path: Option<&str>| GeoConfig {
        mmdb: Some(path.clone()),
        field_path: field_path.map(str::to_owned),
        trusted_ecs_forwarders: Vec::new(),
    };
    let classifier = Classifier::new(&config(Some("places.0.cc"))).unwrap();
    assert!(!classifier.database().unwrap().info().field_path_detected);
    assert_eq!(
        classifier.classify(ip("127.0.0.101"), None, None).country,
        Some(cc("IT"))
    );
    let error = Classifier::new(&config(None)).unwrap_err();
    assert!(
        matches!(error, GeoError::UnknownRecordShape { .. }),
        "{error}"
    );
    assert!(error.to_string().contains("custom.mmdb"), "{error}");
    let error = Classifier::new(&config(Some("country.iso_code"))).unwrap_err();
    assert!(matches!(error, GeoError::FieldNotFound { .. }), "{error}");
    let error = Classifier::new(&config(Some("places..cc"))).unwrap_err();
    assert!(
        matches!(error, GeoError::InvalidFieldPath { .. }),
        "{error}"
    );
}

#[test]
fn values_that_are_not_country_codes_place_nobody() {
    let dir = tempfile::tempdir().unwrap();
    let mut writer = standard(Shape::CountryCode);
    writer
        .insert_value(
            "127.0.1.1/32".parse().unwrap(),
            Value::Map(vec![("country_code".into(), Value::Uint32(39))]),
        )
        .insert_value(
            "127.0.1.2/32".parse().unwrap(),
            Value::Map(vec![("country_code".into(), Value::String("ITA".into()))]),
        )
        .insert_value("127.0.1.3/32".parse().unwrap(), Value::String("IT".into()));
    let path = write(dir.path(), "odd.mmdb", &writer);
    let classifier = classifier(&path, &[]);
    for address in ["127.0.1.1", "127.0.1.2", "127.0.1.3"] {
        assert_eq!(
            classifier.classify(ip(address), None, None),
            Jurisdiction::UNKNOWN,
            "{address}"
        );
    }
}

#[test]
fn reload_swaps_data_and_a_failed_reload_keeps_the_old() {
    let dir = tempfile::tempdir().unwrap();
    let path = write(dir.path(), "geo.mmdb", &standard(Shape::CountryCode));
    let classifier = classifier(&path, &[]);
    let client = ip("127.0.0.101");
    assert_eq!(
        classifier.classify(client, None, None).country,
        Some(cc("IT"))
    );

    // A new file (another shape even) is in force after reload.
    let mut moved = MmdbWriter::new(Shape::CountryIsoCode);
    moved.insert("127.0.0.0/24".parse().unwrap(), "DE");
    moved.write_to(&path).unwrap();
    assert_eq!(
        classifier.classify(client, None, None).country,
        Some(cc("IT")),
        "nothing changes before reload"
    );
    let info = classifier.reload().unwrap().unwrap();
    assert_eq!(info.field_path, "country.iso_code");
    assert_eq!(
        classifier.classify(client, None, None).country,
        Some(cc("DE"))
    );

    // A corrupt file: the error names the file and the old data stays.
    std::fs::write(&path, b"this is not a MaxMind DB").unwrap();
    let error = classifier.reload().unwrap_err();
    assert!(matches!(error, GeoError::Open { .. }), "{error}");
    let message = error.to_string();
    assert!(message.contains(&path.display().to_string()), "{message}");
    assert_eq!(
        classifier.classify(client, None, None).country,
        Some(cc("DE"))
    );

    // A truncated copy of a valid file, and a missing file, fail the same way.
    let bytes = standard(Shape::CountryCode).to_bytes().unwrap();
    std::fs::write(&path, &bytes[..bytes.len() / 2]).unwrap();
    assert!(classifier.reload().is_err());
    std::fs::remove_file(&path).unwrap();
    let error = classifier.reload().unwrap_err();
    assert!(error.to_string().contains("geo.mmdb"), "{error}");
    assert_eq!(
        classifier.classify(client, None, None).country,
        Some(cc("DE"))
    );
}

#[test]
fn reload_while_classifying_from_other_threads() {
    let dir = tempfile::tempdir().unwrap();
    let it = write(dir.path(), "it.mmdb", &standard(Shape::CountryCode));
    let mut german = MmdbWriter::new(Shape::CountryCode);
    german.insert("127.0.0.0/24".parse().unwrap(), "DE");
    let de_bytes = german.to_bytes().unwrap();
    let it_bytes = std::fs::read(&it).unwrap();
    let classifier = classifier(&it, &[]);
    std::thread::scope(|scope| {
        for _ in 0..2 {
            scope.spawn(|| {
                for _ in 0..20_000 {
                    let country = classifier.classify(ip("127.0.0.101"), None, None).country;
                    assert!(country == Some(cc("IT")) || country == Some(cc("DE")));
                }
            });
        }
        for round in 0..50 {
            let bytes = if round % 2 == 0 { &de_bytes } else { &it_bytes };
            std::fs::write(&it, bytes).unwrap();
            classifier.reload().unwrap();
        }
    });
}

#[test]
fn no_database_means_unknown_unless_pinned() {
    let classifier = Classifier::new(&GeoConfig {
        mmdb: None,
        field_path: None,
        trusted_ecs_forwarders: vec!["127.0.0.53/32".parse().unwrap()],
    })
    .unwrap();
    assert!(classifier.reload().unwrap().is_none());
    assert_eq!(
        classifier.classify(ip("127.0.0.101"), None, None),
        Jurisdiction::UNKNOWN
    );
    let via_ecs = classifier.classify(ip("127.0.0.53"), None, Some((ip("192.0.2.1"), 24)));
    assert_eq!(via_ecs.decided_by, DecidedBy::Unknown);
    assert_eq!(
        classifier
            .classify(ip("127.0.0.101"), Some(cc("IT")), None)
            .decided_by,
        DecidedBy::Listener
    );
}

#[test]
fn geo_db_from_bytes() {
    let bytes = standard(Shape::Country).to_bytes().unwrap();
    let field_path = FieldPath::parse("country").unwrap();
    let database = GeoDb::from_bytes(bytes, "memory", Some(&field_path)).unwrap();
    assert_eq!(database.lookup(ip("127.0.0.102")), Some(cc("DE")));
    assert_eq!(database.info().path, PathBuf::from("memory"));
    let error = GeoDb::from_bytes(vec![0; 64], "garbage", None).unwrap_err();
    assert!(error.to_string().contains("garbage"), "{error}");
}

// ---- allocation-free classification ----

struct CountingAllocator;

thread_local! {
    static ALLOCATIONS: Cell<u64> = const { Cell::new(0) };
}

// SAFETY: every method forwards to `System` with the caller's arguments unchanged; counting
// touches only a const-initialised thread-local `Cell` (no allocation, no reentrancy).
unsafe impl GlobalAlloc for CountingAllocator {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        let _ = ALLOCATIONS.try_with(|count| count.set(count.get() + 1));
        // SAFETY: forwarded from our caller, who upholds `GlobalAlloc::alloc`'s contract.
        unsafe { System.alloc(layout) }
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: `ptr` came from `System.alloc` above with this `layout`.
        unsafe { System.dealloc(ptr, layout) }
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        let _ = ALLOCATIONS.try_with(|count| count.set(count.get() + 1));
        // SAFETY: as for `dealloc`, and the caller upholds `realloc`'s contract.
        unsafe { System.realloc(ptr, layout, new_size) }
    }
}

#[global_allocator]
static ALLOCATOR: CountingAllocator = CountingAllocator;

fn allocations() -> u64 {
    ALLOCATIONS.with(Cell::get)
}

#[test]
fn classify_does_not_allocate() {
    let before = allocations();
    drop(std::hint::black_box(vec![1u8]));
    assert!(allocations() > before, "the counter counts");
    for shape in [Shape::CountryIsoCode, Shape::CountryCode, Shape::Country] {
        let dir = tempfile::tempdir().unwrap();
        let path = write(dir.path(), "geo.mmdb", &standard(shape));
        let classifier = classifier(&path, &["127.0.0.53/32"]);
        let queries = [
            (ip("127.0.0.101"), None, None),
            (ip("::ffff:127.0.0.102"), None, None),
            (ip("2001:db8::1"), None, None),
            (ip("203.0.113.1"), None, None),
            (ip("127.0.0.53"), None, Some((ip("192.0.2.77"), 32))),
            (
                ip("127.0.0.53"),
                None,
                Some((ip("2001:db8:1:23ff::1"), 128)),
            ),
            (ip("127.0.0.1"), Some(cc("IT")), None),
        ];
        // Warm up (arc-swap registers this thread once; the memo fills).
        for &(client, pin, ecs) in &queries {
            classifier.classify(client, pin, ecs);
        }
        let database = classifier.database().unwrap();
        let before = allocations();
        for _ in 0..10 {
            for &(client, pin, ecs) in &queries {
                std::hint::black_box(classifier.classify(client, pin, ecs));
                std::hint::black_box(database.lookup_uncached(client));
            }
        }
        assert_eq!(allocations() - before, 0, "{shape:?}");
    }
}

// ---- properties ----

fn any_address() -> impl Strategy<Value = IpAddr> {
    prop_oneof![
        any::<u32>().prop_map(|bits| IpAddr::V4(bits.into())),
        any::<u128>().prop_map(|bits| IpAddr::V6(bits.into())),
        any::<u32>().prop_map(|bits| IpAddr::V6(std::net::Ipv4Addr::from(bits).to_ipv6_mapped())),
        // Near the networks in the database.
        (0u8..=255).prop_map(|last| IpAddr::V4([127, 0, 0, last].into())),
        (0u8..=255).prop_map(|last| IpAddr::V4([192, 0, 2, last].into())),
        any::<u64>().prop_map(|low| IpAddr::V6(
            (0x2001_0db8_0001_2300_u128 << 64 | u128::from(low)).into()
        )),
    ]
}

fn in_standard_database(address: IpAddr) -> bool {
    let networks = [
        "127.0.0.101/32",
        "127.0.0.102/32",
        "127.0.0.53/32",
        "192.0.2.0/24",
        "2001:db8::/32",
    ];
    let address = juris_geo::normalise_address(address);
    networks
        .iter()
        .any(|network| network.parse::<ipnet::IpNet>().unwrap().contains(&address))
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 2000, ..ProptestConfig::default() })]

    #[test]
    fn classify_never_panics_and_unplaced_addresses_are_unknown(
        client in any_address(),
        pin in proptest::option::of("[A-Z]{2}"),
        ecs in proptest::option::of((any_address(), any::<u8>())),
    ) {
        let (_dir, classifier) = standard_classifier();
        let pin = pin.map(|code| cc(&code));
        let decided = classifier.classify(client, pin, ecs);
        prop_assert_eq!(decided.country.is_some(), decided.decided_by != DecidedBy::Unknown);
        if pin.is_some() {
            prop_assert_eq!(decided.decided_by, DecidedBy::Listener);
        }
        if pin.is_none() && !classifier.is_trusted_forwarder(client) {
            prop_assert_eq!(decided.ecs_prefix_len, None);
            if !in_standard_database(client) {
                prop_assert_eq!(decided, Jurisdiction::UNKNOWN);
            } else {
                prop_assert_eq!(decided.decided_by, DecidedBy::GeoIp);
            }
        }
        if let Some(prefix_len) = decided.ecs_prefix_len {
            prop_assert!(prefix_len <= 56);
            let ecs_address = ecs.map(|(address, _)| juris_geo::normalise_address(address));
            if ecs_address.is_some_and(|address| address.is_ipv4()) {
                prop_assert!(prefix_len <= 24);
            }
        }
    }

    /// The per-prefix memo never changes an answer, in a database that mixes /8, /24, /32,
    /// /56 and /64 networks.
    #[test]
    fn memo_agrees_with_the_tree(addresses in proptest::collection::vec(any_address(), 1..64)) {
        let mut writer = standard(Shape::CountryCode);
        writer
            .insert("127.0.0.0/8".parse().unwrap(), "US")
            .insert("192.0.0.0/8".parse().unwrap(), "NL")
            .insert("2001:db8:1:2300::/57".parse().unwrap(), "SE");
        let database = GeoDb::from_bytes(writer.to_bytes().unwrap(), "memo", None).unwrap();
        for _ in 0..2 {
            for &address in &addresses {
                prop_assert_eq!(database.lookup(address), database.lookup_uncached(address));
            }
        }
    }
}

#[test]
fn repeated_lookups_in_a_split_slash_24_stay_exact() {
    let (_dir, classifier) = standard_classifier();
    let database = classifier.database().unwrap();
    // 127.0.0.101 and .102 are single addresses in one /24: each is remembered on its own,
    // so asking again (from the memo) never gives a neighbour's country.
    for _ in 0..3 {
        assert_eq!(database.lookup(ip("127.0.0.101")), Some(cc("IT")));
        assert_eq!(database.lookup(ip("127.0.0.102")), Some(cc("DE")));
        assert_eq!(database.lookup(ip("127.0.0.103")), None);
        assert_eq!(database.lookup(ip("192.0.2.77")), Some(cc("IT")));
        assert_eq!(database.lookup(ip("192.0.2.78")), Some(cc("DE")));
    }
}

#[test]
fn ecs_scope_is_the_database_network_cut_to_the_truncated_prefix() {
    let (_dir, classifier) = standard_classifier();
    // 192.0.2.0/24 is split inside (the /32 of 192.0.2.77): only the truncated /24 was looked
    // at, so the answer holds for the /24.
    assert_eq!(classifier.ecs_scope(ip("192.0.2.77"), 32), 24);
    assert_eq!(classifier.ecs_scope(ip("::ffff:192.0.2.77"), 128), 120);
    assert_eq!(classifier.ecs_scope(ip("2001:db8:1:23ff::1"), 128), 56);
    // A coarse network of the database gives a shorter scope: the whole network answers alike.
    let wide = classifier.ecs_scope(ip("203.0.113.9"), 32);
    assert!(wide < 24, "{wide}");
    let database = classifier.database().unwrap();
    assert_eq!(
        database.network_prefix_len(ip("203.0.113.9")),
        Some(wide),
        "the network that holds the subnet"
    );
    // Never longer than what the client sent, 0 for an opted-out client.
    assert!(classifier.ecs_scope(ip("192.0.2.0"), 20) <= 20);
    assert_eq!(classifier.ecs_scope(ip("192.0.2.77"), 0), 0);
    // Without a database every subnet is unknown alike.
    let bare = Classifier::new(&GeoConfig {
        mmdb: None,
        field_path: None,
        trusted_ecs_forwarders: vec!["127.0.0.53/32".parse().unwrap()],
    })
    .unwrap();
    assert_eq!(bare.ecs_scope(ip("192.0.2.77"), 32), 0);
}
