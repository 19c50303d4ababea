//! Behaviour of the compiled policy: matching semantics, scoping, time, state, precedence, and
//! the overlay against a full recompile (property tests).

#![allow(clippy::unwrap_used, clippy::expect_used, reason = "test code")]

use std::collections::BTreeSet;
use std::net::IpAddr;

use jiff::Timestamp;
use juris_policy::*;
use proptest::prelude::*;

fn ts(s: &str) -> Timestamp {
    s.parse().unwrap()
}

fn now() -> Timestamp {
    ts("2024-06-01T12:00:00Z")
}

fn country(code: &str) -> Option<Country> {
    Some(code.parse().unwrap())
}

fn raw(
    id: &str,
    jurisdictions: &[&str],
    targets: &[(TargetKind, &str)],
    state: OrderState,
) -> Order {
    Order {
        id: id.into(),
        kind: OrderKind::CourtOrder,
        authority: "Court".into(),
        reference: format!("ref {id}"),
        legal_basis: String::new(),
        requested_by: vec![],
        jurisdictions: jurisdictions.iter().map(|s| s.to_string()).collect(),
        targets: targets.iter().map(|(k, v)| Target::new(*k, *v)).collect(),
        action: Action::Nxdomain,
        block_addresses: true,
        state,
        effective_from: Some(ts("2024-05-01T00:00:00Z")),
        comply_by: None,
        expires_at: None,
        windows: vec![],
        notice: Notice::default(),
        parent: None,
        overrides: vec![],
        transparency: None,
    }
}

fn valid(order: Order) -> ValidatedOrder {
    order.validate(&ValidationOptions::default()).unwrap()
}

fn order(id: &str, jurisdictions: &[&str], targets: &[(TargetKind, &str)]) -> ValidatedOrder {
    valid(raw(id, jurisdictions, targets, OrderState::Active))
}

fn compile(orders: &[ValidatedOrder]) -> CompiledPolicy {
    CompiledPolicy::compile(orders, &CompileOptions::default()).unwrap()
}

fn check(policy: &CompiledPolicy, name: &str, who: Option<Country>) -> Verdict {
    policy.check_name(&name_to_wire(name).unwrap(), who, now())
}

fn fired(verdict: &Verdict) -> Option<String> {
    verdict.block().map(|b| b.order().id.clone())
}

use TargetKind::{Domain, Subtree};

#[test]
fn the_milan_example() {
    let json = r#"{
      "id": "IT-MI-2024-0001", "kind": "court_order", "authority": "Tribunale di Milano",
      "reference": "RG 12345/2024", "legal_basis": "L. 633/1941; L. 93/2023",
      "requested_by": ["FIMI", "FPM"], "jurisdictions": ["IT"],
      "targets": [
        {"type": "subtree", "value": "kickasstorrents.to"},
        {"type": "domain",  "value": "limetorrents.pro"},
        {"type": "ip",      "value": "203.0.113.0/24"}
      ],
      "action": "nxdomain", "block_addresses": false, "state": "active",
      "effective_from": "2024-05-01T00:00:00Z", "comply_by": "2024-05-31T00:00:00Z",
      "expires_at": null, "windows": [],
      "notice": {"text": "Blocked by order of the Court of Milan", "lang": "en", "url": "https://lumendatabase.org/notices/0"},
      "parent": null
    }"#;
    let order = valid(Order::from_json(json.as_bytes()).unwrap());
    let policy = compile(&[order]);
    let it = country("IT");
    for name in [
        "kickasstorrents.to",
        "www.kickasstorrents.to",
        "a.b.KICKASSTORRENTS.to",
        "limetorrents.pro",
    ] {
        let verdict = check(&policy, name, it);
        let block = verdict.block().unwrap_or_else(|| panic!("{name}"));
        assert_eq!(block.action(), Action::Nxdomain);
        assert_eq!(block.meaning(), juris_policy::BlockMeaning::Censored);
        assert_eq!(block.order().authority, "Tribunale di Milano");
        assert_eq!(block.order().reference, "RG 12345/2024");
        assert_eq!(block.order().notice.lang, "en");
    }
    let verdict = check(&policy, "www.kickasstorrents.to", it);
    assert_eq!(
        verdict.block().unwrap().target(),
        &MatchedTarget::Name {
            kind: Subtree,
            name: "kickasstorrents.to".into()
        }
    );
    for name in [
        "www.limetorrents.pro",
        "notkickasstorrents.to",
        "to",
        "example.com",
    ] {
        assert!(!check(&policy, name, it).is_block(), "{name}");
    }
    assert!(!check(&policy, "kickasstorrents.to", country("DE")).is_block());
    assert!(!check(&policy, "kickasstorrents.to", None).is_block());
    // block_addresses is false: the ip target is explained but never blocks.
    let addr: IpAddr = "203.0.113.9".parse().unwrap();
    assert!(!policy.check_address(addr, it, now()).is_block());
    let explanation = policy.explain_address(addr, it, now());
    assert_eq!(explanation.matches.len(), 1);
    assert_eq!(
        explanation.matches[0].status,
        MatchStatus::AddressBlockingOff
    );
    assert_eq!(
        policy.orders().next().unwrap().1,
        OrderStats {
            targets: 3,
            unenforced: 0
        }
    );
}

#[test]
fn addresses_block_only_with_block_addresses() {
    let mut o = raw("A", &["IT"], &[], OrderState::Active);
    o.targets = vec![
        Target::new(TargetKind::Ip, "203.0.113.0/24"),
        Target::new(TargetKind::Ip, "2001:db8::/48"),
    ];
    let policy = compile(&[valid(o)]);
    let block = |a: &str| policy.check_address(a.parse().unwrap(), country("IT"), now());
    assert_eq!(
        block("203.0.113.200").block().unwrap().target(),
        &MatchedTarget::Prefix("203.0.113.0/24".parse().unwrap())
    );
    assert!(block("2001:db8::1").is_block());
    assert!(block("::ffff:203.0.113.1").is_block());
    assert!(!block("203.0.114.1").is_block());
    assert!(!policy
        .check_address("203.0.113.1".parse().unwrap(), country("FR"), now())
        .is_block());
}

#[test]
fn precedence_most_specific_then_exact_then_earliest_then_id() {
    let mut early = raw(
        "Z-early",
        &["IT"],
        &[(Subtree, "example.to")],
        OrderState::Active,
    );
    early.effective_from = Some(ts("2024-01-01T00:00:00Z"));
    let policy = compile(&[
        order("B", &["IT"], &[(Subtree, "example.to")]),
        order("A", &["IT"], &[(Subtree, "example.to")]),
        valid(early),
        order("C", &["IT"], &[(Subtree, "www.example.to")]),
        order("D", &["IT"], &[(Domain, "www.example.to")]),
    ]);
    let verdict = check(&policy, "www.example.to", country("IT"));
    let block = verdict.block().unwrap();
    assert_eq!(
        block.order().id,
        "D",
        "exact beats subtree at the same name"
    );
    let others: Vec<_> = block.others.iter().map(|m| m.order.id.as_str()).collect();
    assert_eq!(others, ["C", "Z-early", "A", "B"]);
    assert_eq!(
        fired(&check(&policy, "a.www.example.to", country("IT"))).as_deref(),
        Some("C")
    );
    assert_eq!(
        fired(&check(&policy, "x.example.to", country("IT"))).as_deref(),
        Some("Z-early")
    );
    let explanation = policy.explain_name(
        &name_to_wire("www.example.to").unwrap(),
        country("IT"),
        now(),
    );
    assert_eq!(explanation.verdict, verdict);
    let statuses: Vec<_> = explanation.matches.iter().map(|m| m.status).collect();
    assert_eq!(statuses[0], MatchStatus::Fired);
    assert!(statuses[1..].iter().all(|s| *s == MatchStatus::Outranked));
}

#[test]
fn states_time_and_explain_reasons() {
    let mut expired = raw("expired", &["IT"], &[(Subtree, "x.to")], OrderState::Active);
    expired.expires_at = Some(ts("2024-05-15T00:00:00Z"));
    let mut future = raw("future", &["IT"], &[(Subtree, "x.to")], OrderState::Active);
    future.effective_from = Some(ts("2025-01-01T00:00:00Z"));
    let orders = vec![
        valid(raw(
            "shadow",
            &["IT"],
            &[(Subtree, "x.to")],
            OrderState::Shadow,
        )),
        valid(raw(
            "lifted",
            &["IT"],
            &[(Subtree, "x.to")],
            OrderState::Lifted,
        )),
        valid(raw(
            "draft",
            &["IT"],
            &[(Subtree, "x.to")],
            OrderState::Draft,
        )),
        valid(raw(
            "suspended",
            &["IT"],
            &[(Subtree, "x.to")],
            OrderState::Suspended,
        )),
        valid(expired),
        valid(future),
        order("german", &["DE"], &[(Subtree, "x.to")]),
    ];
    let policy = compile(&orders);
    let verdict = check(&policy, "x.to", country("IT"));
    assert!(!verdict.is_block());
    assert_eq!(verdict.shadow().len(), 1);
    assert_eq!(verdict.shadow()[0].order.id, "shadow");
    let explanation = policy.explain_name(&name_to_wire("x.to").unwrap(), country("IT"), now());
    let reason = |id: &str| {
        explanation
            .matches
            .iter()
            .find(|m| m.matched.order.id == id)
            .unwrap()
            .status
    };
    assert_eq!(reason("shadow"), MatchStatus::Shadow);
    assert_eq!(reason("lifted"), MatchStatus::NotActive(OrderState::Lifted));
    assert_eq!(reason("draft"), MatchStatus::NotActive(OrderState::Draft));
    assert_eq!(
        reason("suspended"),
        MatchStatus::NotActive(OrderState::Suspended)
    );
    assert_eq!(reason("expired"), MatchStatus::Expired);
    assert_eq!(reason("future"), MatchStatus::NotYetEffective);
    assert_eq!(reason("german"), MatchStatus::OtherJurisdiction);
    let unknown = policy.explain_name(&name_to_wire("x.to").unwrap(), None, now());
    assert!(unknown
        .matches
        .iter()
        .any(|m| m.status == MatchStatus::UnknownJurisdiction));
    assert!(reason("german").to_string().contains("jurisdiction"));
}

#[test]
fn global_and_eu_orders() {
    let policy = compile(&[
        order("global", &["*"], &[(Domain, "g.to")]),
        order("eu", &["EU"], &[(Domain, "e.to")]),
    ]);
    assert!(check(&policy, "g.to", None).is_block());
    assert!(check(&policy, "g.to", country("US")).is_block());
    assert!(check(&policy, "e.to", country("FR")).is_block());
    assert!(!check(&policy, "e.to", country("CH")).is_block());
    assert!(!check(&policy, "e.to", None).is_block());
}

/// The per-country hot verdict rests on this: outside an order's reach, no check of the name,
/// in any state, blocks or reports a shadow match.
#[test]
fn the_reach_of_a_name_is_the_jurisdictions_of_every_order_matching_it() {
    let policy = compile(&[
        order("it", &["IT"], &[(Subtree, "kickass.to")]),
        valid(raw(
            "de-shadow",
            &["DE"],
            &[(Domain, "www.kickass.to")],
            OrderState::Shadow,
        )),
        valid(raw(
            "fr-lifted",
            &["FR"],
            &[(Subtree, "kickass.to")],
            OrderState::Lifted,
        )),
        order("global", &["*"], &[(Domain, "g.to")]),
    ]);
    let reach = |name: &str| {
        let mut reach = CountrySet::empty();
        policy.reach_of_name(&name_to_wire(name).unwrap(), &mut reach);
        reach
    };
    let www = reach("www.kickass.to");
    for (code, bound) in [("IT", true), ("DE", true), ("FR", true), ("ES", false)] {
        assert_eq!(www.applies_to(country(code)), bound, "{code}");
    }
    assert!(!www.applies_to(None));
    // The exact-name order does not reach other names below the subtree.
    let other = reach("cdn.kickass.to");
    assert!(other.applies_to(country("IT")) && !other.applies_to(country("DE")));
    assert!(reach("g.to").applies_to(None));
    assert!(!reach("example.org").applies_to(country("IT")));
    // Outside the reach, the verdict is allow without shadow matches.
    let spain = check(&policy, "www.kickass.to", country("ES"));
    assert!(!spain.is_block() && spain.shadow().is_empty());
}

#[test]
fn malformed_and_odd_wire_names_are_allowed() {
    let policy = compile(&[order("A", &["*"], &[(Subtree, "kickass.to")])]);
    for wire in [&b""[..], b"\x07kickass\x02to", b"\xc0\x0c", b"\x40"] {
        assert!(!policy.check_name(wire, None, now()).is_block());
    }
    // Upper case on the wire is fine.
    assert!(policy
        .check_name(b"\x07KICKASS\x02TO\x00", None, now())
        .is_block());
    // A label holding a NUL byte is below kickass.to: still in the subtree.
    assert!(policy
        .check_name(b"\x03a\x00b\x07kickass\x02to\x00", None, now())
        .is_block());
    // ... but it cannot make `kickass.to` look like an exact match of a deeper name.
    let exact = compile(&[order("B", &["*"], &[(Domain, "b.kickass.to")])]);
    assert!(!exact
        .check_name(b"\x03b\x00b\x07kickass\x02to\x00", None, now())
        .is_block());
}

#[test]
fn changes_through_the_overlay() {
    let base = compile(&[
        order("A", &["IT"], &[(Subtree, "a.to"), (Domain, "b.to")]),
        order("B", &["DE"], &[(Subtree, "c.to")]),
    ]);
    // A future domain is added to A; b.to is removed; B is lifted; C is new.
    let new_a = order("A", &["IT"], &[(Subtree, "a.to"), (Subtree, "a2.to")]);
    let mut changes = PolicyChange::between(
        &order("A", &["IT"], &[(Subtree, "a.to"), (Domain, "b.to")]),
        &new_a,
    );
    changes.push(PolicyChange::Put(valid(raw(
        "B",
        &["DE"],
        &[(Subtree, "c.to")],
        OrderState::Lifted,
    ))));
    changes.push(PolicyChange::Put(order("C", &["FR"], &[(Domain, "d.to")])));
    let next = base.with_changes(&changes).unwrap();
    assert_eq!(next.generation(), base.generation() + 1);
    assert!(check(&next, "x.a2.to", country("IT")).is_block());
    assert!(!check(&next, "b.to", country("IT")).is_block());
    assert!(
        check(&base, "b.to", country("IT")).is_block(),
        "the old policy is untouched"
    );
    assert!(!check(&next, "c.to", country("DE")).is_block());
    assert!(check(&next, "d.to", country("FR")).is_block());
    assert_eq!(next.order_by_id("A").unwrap().id, "A");
    let stats: std::collections::HashMap<_, _> = next
        .orders()
        .map(|(o, s)| (o.id.clone(), s.targets))
        .collect();
    assert_eq!(stats["A"], 2);
    assert_eq!(stats["C"], 1);
    // Removing and re-adding a base target.
    let again = next
        .with_changes(&[PolicyChange::Update(OrderUpdate {
            order: new_a.info().clone(),
            added: order("x", &["IT"], &[(Domain, "b.to")]).targets().to_vec(),
            removed: vec![],
        })])
        .unwrap();
    assert!(check(&again, "b.to", country("IT")).is_block());
    assert_eq!(again.stats().masked_names, 0);
    // Compaction gives the same answers with an empty overlay.
    let compacted = again.compact().unwrap();
    assert_eq!(compacted.stats().overlay_names, 0);
    for name in ["a.to", "x.a2.to", "b.to", "c.to", "d.to", "e.to"] {
        for who in [country("IT"), country("DE"), country("FR"), None] {
            assert_eq!(
                check(&compacted, name, who),
                check(&again, name, who),
                "{name}"
            );
        }
    }
    assert!(matches!(
        base.with_changes(&[PolicyChange::Remove("nope".into())]),
        Err(CompileError::UnknownOrder(_))
    ));
    assert!(matches!(
        CompiledPolicy::compile(
            &[order("A", &["IT"], &[]), order("A", &["IT"], &[])],
            &CompileOptions::default()
        ),
        Err(CompileError::DuplicateOrder(_))
    ));
}

/// Enough names for the compiler to sort in several partitions and for the index to hold
/// several keys per bucket: every name matches exactly as written, nothing else does, and
/// duplicates across orders keep both rules.
#[test]
fn large_policy_matches_every_name_and_nothing_else() {
    const NAMES: usize = 40_000;
    let name = |i: usize| format!("n{i}-{}.{}", i % 7, ["to", "com", "it"][i % 3]);
    let kind = |i: usize| {
        if i.is_multiple_of(2) {
            Subtree
        } else {
            Domain
        }
    };
    // Order A holds every name; order B holds every fifth name again, as a subtree.
    let a_targets: Vec<(TargetKind, String)> = (0..NAMES).map(|i| (kind(i), name(i))).collect();
    let b_targets: Vec<(TargetKind, String)> =
        (0..NAMES).step_by(5).map(|i| (Subtree, name(i))).collect();
    let options = ValidationOptions {
        max_targets: NAMES,
        ..ValidationOptions::default()
    };
    let build = |id: &str, who: &str, targets: &[(TargetKind, String)]| {
        let targets: Vec<(TargetKind, &str)> =
            targets.iter().map(|(k, n)| (*k, n.as_str())).collect();
        raw(id, &[who], &targets, OrderState::Active)
            .validate(&options)
            .unwrap()
    };
    let policy = compile(&[build("A", "IT", &a_targets), build("B", "DE", &b_targets)]);
    assert_eq!(policy.stats().base_names, NAMES);
    let targets: std::collections::HashMap<_, _> = policy
        .orders()
        .map(|(o, s)| (o.id.clone(), s.targets))
        .collect();
    assert_eq!(targets["A"], NAMES);
    assert_eq!(targets["B"], NAMES / 5);
    for i in 0..NAMES {
        let n = name(i);
        assert_eq!(
            fired(&check(&policy, &n, country("IT"))).as_deref(),
            Some("A"),
            "{n}"
        );
        let below = check(&policy, &format!("www.{n}"), country("IT"));
        assert_eq!(below.is_block(), kind(i) == Subtree, "www.{n}");
        assert_eq!(
            check(&policy, &format!("www.{n}"), country("DE")).is_block(),
            i % 5 == 0
        );
        // Near misses: another number, a longer or shorter label, another TLD.
        assert!(!check(&policy, &format!("n{i}-{}x.to", i % 7), country("IT")).is_block());
        assert!(!check(
            &policy,
            &format!("n{}-{}.to", i + NAMES, i % 7),
            country("IT")
        )
        .is_block());
        assert!(!check(&policy, &format!("n{i}-{}.org", i % 7), country("IT")).is_block());
    }
    let compacted = policy.compact().unwrap();
    for i in (0..NAMES).step_by(97) {
        let n = format!("www.{}", name(i));
        for who in [country("IT"), country("DE"), None] {
            assert_eq!(check(&compacted, &n, who), check(&policy, &n, who), "{n}");
        }
    }
}

#[test]
fn policy_is_send_and_sync() {
    fn assert_send_sync<T: Send + Sync>() {}
    assert_send_sync::<CompiledPolicy>();
    assert_send_sync::<Verdict>();
}

// ---------------------------------------------------------------------------------------------
// Property tests.

const COUNTRIES: [&str; 4] = ["IT", "DE", "FR", "ES"];

fn label() -> impl Strategy<Value = String> {
    "[a-c]{1,2}"
}

/// Names under `to` with 1 to 3 more labels (so never a TLD).
fn name() -> impl Strategy<Value = String> {
    prop::collection::vec(label(), 1..4).prop_map(|labels| format!("{}.to", labels.join(".")))
}

fn client() -> impl Strategy<Value = Option<Country>> {
    prop_oneof![
        Just(None),
        prop::sample::select(COUNTRIES.to_vec()).prop_map(country)
    ]
}

#[derive(Debug, Clone)]
struct OrderSpec {
    countries: Vec<&'static str>,
    global: bool,
    state: OrderState,
    targets: Vec<(TargetKind, String)>,
}

fn order_spec() -> impl Strategy<Value = OrderSpec> {
    (
        prop::sample::subsequence(COUNTRIES.to_vec(), 1..3),
        prop::bool::weighted(0.15),
        prop::sample::select(vec![
            OrderState::Active,
            OrderState::Active,
            OrderState::Shadow,
            OrderState::Lifted,
        ]),
        prop::collection::vec((prop::sample::select(vec![Domain, Subtree]), name()), 0..5),
    )
        .prop_map(|(countries, global, state, targets)| OrderSpec {
            countries,
            global,
            state,
            targets,
        })
}

fn build(id: usize, spec: &OrderSpec) -> ValidatedOrder {
    let jurisdictions: Vec<&str> = if spec.global {
        vec!["*"]
    } else {
        spec.countries.clone()
    };
    let targets: Vec<(TargetKind, &str)> =
        spec.targets.iter().map(|(k, v)| (*k, v.as_str())).collect();
    valid(raw(
        &format!("O{id:02}"),
        &jurisdictions,
        &targets,
        spec.state,
    ))
}

/// Whether `name` is `target` or below it.
fn is_at_or_below(name: &str, target: &str) -> bool {
    name == target || name.ends_with(&format!(".{target}"))
}

/// A comparable summary of a verdict.
fn summary(verdict: &Verdict) -> (Option<(String, String)>, BTreeSet<String>, BTreeSet<String>) {
    let show = |m: &Match| format!("{} {}", m.order.id, m.target);
    match verdict {
        Verdict::Allow { shadow } => (None, BTreeSet::new(), shadow.iter().map(show).collect()),
        Verdict::Block(b) => (
            Some((b.fired.order.id.clone(), b.fired.target.to_string())),
            b.others.iter().map(show).collect(),
            b.shadow.iter().map(show).collect(),
        ),
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(200))]

    /// A client outside an order's jurisdictions never gets a block (fired or reported) from it;
    /// and every applicable match is reported exactly as a brute-force model says.
    #[test]
    fn scoping_semantics_and_precedence(specs in prop::collection::vec(order_spec(), 1..6),
                                        queries in prop::collection::vec((name(), client()), 1..20)) {
        let orders: Vec<ValidatedOrder> = specs.iter().enumerate().map(|(i, s)| build(i, s)).collect();
        let policy = compile(&orders);
        for (qname, who) in &queries {
            let verdict = check(&policy, qname, *who);
            // Brute force: every (order, target) that matches the name and applies.
            let mut expected_block = BTreeSet::new();
            let mut expected_shadow = BTreeSet::new();
            let mut best: Option<(usize, bool, String)> = None;
            for (i, spec) in specs.iter().enumerate() {
                let in_scope = spec.global || who.is_some_and(|c| spec.countries.contains(&c.as_str()));
                let id = format!("O{i:02}");
                for (kind, target) in &spec.targets {
                    let hit = match kind { Domain => qname == target, _ => is_at_or_below(qname, target) };
                    if !hit || !in_scope { continue; }
                    let shown = format!("{id} {} {target}", kind.as_str());
                    match spec.state {
                        OrderState::Active => {
                            expected_block.insert(shown);
                            let rank = (target.len(), *kind == Domain, id.clone());
                            let better = match &best {
                                None => true,
                                Some(b) => (rank.0, rank.1) > (b.0, b.1) || ((rank.0, rank.1) == (b.0, b.1) && rank.2 < b.2),
                            };
                            if better { best = Some(rank); }
                        }
                        OrderState::Shadow => { expected_shadow.insert(shown); }
                        _ => {}
                    }
                }
            }
            let (fired, others, shadow) = summary(&verdict);
            prop_assert_eq!(&shadow, &expected_shadow);
            match fired {
                None => prop_assert!(expected_block.is_empty()),
                Some((id, target)) => {
                    let mut all = others.clone();
                    all.insert(format!("{id} {target}"));
                    prop_assert_eq!(&all, &expected_block);
                    prop_assert_eq!(Some(id), best.map(|b| b.2));
                }
            }
            // Scoping, stated directly.
            if let Some(block) = verdict.block() {
                for m in std::iter::once(&block.fired).chain(&block.others).chain(&block.shadow) {
                    prop_assert!(m.order.countries.applies_to(*who));
                }
            }
        }
    }

    /// Subtree: the name and all descendants, never siblings with a shared suffix or parents.
    #[test]
    fn subtree_and_exact(target in name(), prefix in prop::collection::vec(label(), 1..3), junk in label()) {
        let policy = compile(&[
            order("S", &["*"], &[(Subtree, &target)]),
        ]);
        let exact = compile(&[order("E", &["*"], &[(Domain, &target)])]);
        let below = format!("{}.{target}", prefix.join("."));
        let sibling = format!("{junk}{target}");
        prop_assert!(check(&policy, &target, None).is_block());
        prop_assert!(check(&policy, &below, None).is_block());
        prop_assert!(!check(&policy, &sibling, None).is_block());
        prop_assert!(check(&exact, &target, None).is_block());
        prop_assert!(!check(&exact, &below, None).is_block());
        prop_assert!(!check(&exact, &sibling, None).is_block());
        if let Some((_, parent)) = target.split_once('.') {
            prop_assert!(!check(&policy, parent, None).is_block());
            prop_assert!(!check(&exact, parent, None).is_block());
        }
    }

    /// Windows: inside → block, outside → allow; expired → allow.
    #[test]
    fn windows(start in 0i64..1_000_000, len in 1i64..100_000, probe in -200_000i64..1_300_000) {
        let base = ts("2024-06-01T00:00:00Z").as_second();
        let at = |s: i64| Timestamp::from_second(base + s).unwrap();
        let mut o = raw("W", &["IT"], &[(Subtree, "match.to")], OrderState::Active);
        o.effective_from = None;
        o.windows = vec![Window { start: at(start), end: at(start + len) }];
        let policy = compile(&[valid(o.clone())]);
        let wire = name_to_wire("www.match.to").unwrap();
        let inside = probe >= start && probe < start + len;
        prop_assert_eq!(policy.check_name(&wire, country("IT"), at(probe)).is_block(), inside);
        o.windows.clear();
        o.expires_at = Some(at(start));
        let policy = compile(&[valid(o)]);
        prop_assert_eq!(policy.check_name(&wire, country("IT"), at(probe)).is_block(), probe < start);
    }

    /// Shadow orders never block, whatever else holds.
    #[test]
    fn shadow_never_blocks(targets in prop::collection::vec(name(), 1..5), q in name(), who in client()) {
        let t: Vec<(TargetKind, &str)> = targets.iter().map(|n| (Subtree, n.as_str())).collect();
        let policy = compile(&[valid(raw("S", &["*"], &t, OrderState::Shadow))]);
        let verdict = check(&policy, &q, who);
        prop_assert!(!verdict.is_block());
        let expected = targets.iter().any(|t| is_at_or_below(&q, t));
        prop_assert_eq!(!verdict.shadow().is_empty(), expected);
    }

    /// The overlay gives the same answers as a full recompile of the same orders, and so does
    /// compacting it.
    #[test]
    fn overlay_equals_recompile(initial in prop::collection::vec(order_spec(), 0..4),
                                steps in prop::collection::vec((0usize..6, prop::option::of(order_spec())), 1..6),
                                queries in prop::collection::vec((name(), client()), 1..15)) {
        let mut current: std::collections::BTreeMap<usize, ValidatedOrder> =
            initial.iter().enumerate().map(|(i, s)| (i, build(i, s))).collect();
        let orders: Vec<_> = current.values().cloned().collect();
        let mut policy = compile(&orders);
        for (slot, spec) in &steps {
            let change = match (current.get(slot), spec) {
                (Some(old), Some(spec)) => {
                    let new = build(*slot, spec);
                    let changes = PolicyChange::between(old, &new);
                    current.insert(*slot, new);
                    changes
                }
                (None, Some(spec)) => {
                    let new = build(*slot, spec);
                    current.insert(*slot, new.clone());
                    vec![PolicyChange::Put(new)]
                }
                (Some(old), None) => {
                    let id = old.id().to_owned();
                    current.remove(slot);
                    vec![PolicyChange::Remove(id)]
                }
                (None, None) => vec![],
            };
            policy = policy.with_changes(&change).unwrap();
        }
        let orders: Vec<_> = current.values().cloned().collect();
        let full = compile(&orders);
        let compacted = policy.compact().unwrap();
        for (q, who) in &queries {
            let expected = summary(&check(&full, q, *who));
            prop_assert_eq!(&summary(&check(&policy, q, *who)), &expected, "{}", q);
            prop_assert_eq!(&summary(&check(&compacted, q, *who)), &expected, "{} (compacted)", q);
        }
        let counts = |p: &CompiledPolicy| p.orders().map(|(o, s)| (o.id.clone(), s)).collect::<std::collections::BTreeMap<_, _>>();
        prop_assert_eq!(counts(&policy), counts(&full));
    }
}

#[test]
fn fuzz_seed_orders_are_valid() {
    let dir =
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../fuzz/corpus/parse_order");
    let Ok(entries) = std::fs::read_dir(&dir) else {
        return; // The fuzz corpus is not part of every checkout of the crate.
    };
    let mut seen = 0;
    for entry in entries {
        let path = entry.unwrap().path();
        // The hand-written seeds, not the inputs libFuzzer's merge added (named by their SHA-1).
        let name = path.file_name().unwrap().to_string_lossy();
        if name.len() == 40 && name.bytes().all(|b| b.is_ascii_hexdigit()) {
            continue;
        }
        let order = Order::from_json(&std::fs::read(&path).unwrap()).unwrap();
        order
            .validate(&ValidationOptions::default())
            .unwrap_or_else(|e| panic!("{}: {e}", path.display()));
        seen += 1;
    }
    assert!(seen >= 3);
}

#[test]
fn may_apply_is_exact_when_it_says_no_and_instances_are_unique() {
    let mut future = raw("F", &["DE"], &[(Subtree, "later.to")], OrderState::Active);
    future.effective_from = Some(ts("2030-01-01T00:00:00Z"));
    let mut shadow = raw("S", &["FR"], &[(Domain, "watch.to")], OrderState::Shadow);
    shadow
        .targets
        .push(Target::new(TargetKind::Ip, "203.0.113.0/24"));
    let policy = compile(&[
        order("A", &["IT"], &[(Subtree, "a.to"), (Domain, "b.to")]),
        valid(future),
        valid(shadow),
    ]);
    for name in [
        "a.to",
        "www.a.to",
        "b.to",
        "later.to",
        "x.later.to",
        "watch.to",
    ] {
        assert!(
            policy.may_apply_to_name(&name_to_wire(name).unwrap()),
            "{name} has a rule"
        );
    }
    let times = [
        now(),
        ts("2031-01-01T00:00:00Z"),
        ts("2000-01-01T00:00:00Z"),
    ];
    for name in ["c.to", "www.b.to", "to", "example.com", "a.to.example"] {
        let wire = name_to_wire(name).unwrap();
        if policy.may_apply_to_name(&wire) {
            continue; // a Bloom false positive is allowed; a false "no" is not
        }
        for who in [country("IT"), country("DE"), country("FR"), None] {
            for at in times {
                let verdict = policy.check_name(&wire, who, at);
                assert!(!verdict.is_block(), "{name}");
                assert!(verdict.shadow().is_empty(), "{name}");
            }
        }
    }
    assert!(policy.may_apply_to_address("203.0.113.9".parse().unwrap()));
    assert!(!policy.may_apply_to_address("198.51.100.1".parse().unwrap()));
    // Every constructed policy has its own instance; a clone shares it.
    let next = policy
        .with_changes(&[PolicyChange::Put(order("C", &["FR"], &[(Domain, "c.to")]))])
        .unwrap();
    assert_ne!(next.instance(), policy.instance());
    assert_eq!(policy.clone().instance(), policy.instance());
    assert_ne!(next.compact().unwrap().instance(), next.instance());
    assert!(next.may_apply_to_name(&name_to_wire("c.to").unwrap()));
}

#[test]
fn the_empty_policy_applies_to_nothing() {
    let empty = CompiledPolicy::empty();
    let small = compile(&[order("A", &["IT"], &[(Subtree, "a.to")])]);
    let mut false_positives = 0;
    for i in 0..1000 {
        let wire = name_to_wire(&format!("name{i}.zone{}.com", i % 24)).unwrap();
        assert!(!empty.may_apply_to_name(&wire));
        false_positives += usize::from(small.may_apply_to_name(&wire));
    }
    assert!(false_positives < 50, "{false_positives} of 1000");
}

#[test]
fn name_server_triggers_match_the_servers_of_the_answer() {
    use TargetKind::{Nsdname, Nsip};
    let policy = compile(&[order(
        "NS-1",
        &["IT"],
        &[
            (Nsdname, "ns1.shady-dns.example"),
            (Nsip, "198.51.100.0/24"),
        ],
    )]);
    let it = country("IT");
    let ns = name_to_wire("NS1.Shady-DNS.example").unwrap();
    let verdict = policy.check_name_server(&ns, it, now());
    let block = verdict.block().expect("an nsdname target blocks in Italy");
    assert_eq!(block.order().id, "NS-1");
    assert_eq!(
        block.target(),
        &MatchedTarget::NameServer("ns1.shady-dns.example".into())
    );
    // Exact, as RPZ NSDNAME: neither a parent nor a child of the server's name.
    for other in [
        "shady-dns.example",
        "x.ns1.shady-dns.example",
        "ns2.shady-dns.example",
    ] {
        let wire = name_to_wire(other).unwrap();
        assert!(
            !policy.check_name_server(&wire, it, now()).is_block(),
            "{other}"
        );
        assert!(!policy.may_apply_to_name_server(&wire), "{other}");
    }
    assert!(policy.may_apply_to_name_server(&ns));
    // Other jurisdictions, and the query-name check, are not touched.
    assert!(!policy
        .check_name_server(&ns, country("DE"), now())
        .is_block());
    assert!(!check(&policy, "ns1.shady-dns.example", it).is_block());
    assert!(!policy.may_apply_to_name(&ns));
    // nsip: a server address in the prefix, whatever block_addresses says.
    let inside: IpAddr = "198.51.100.53".parse().unwrap();
    let outside: IpAddr = "198.51.101.53".parse().unwrap();
    let verdict = policy.check_name_server_address(inside, it, now());
    assert_eq!(
        verdict.block().map(|b| b.target().clone()),
        Some(MatchedTarget::NameServerPrefix(
            "198.51.100.0/24".parse().unwrap()
        ))
    );
    assert!(!policy
        .check_name_server_address(outside, it, now())
        .is_block());
    assert!(!policy
        .check_name_server_address(inside, country("DE"), now())
        .is_block());
    assert!(policy.may_apply_to_name_server_address(inside));
    assert!(!policy.may_apply_to_name_server_address(outside));
    // Answer addresses are not name server addresses.
    assert!(!policy.check_address(inside, it, now()).is_block());
    assert_eq!(policy.orders().next().unwrap().1.targets, 2);
    assert_eq!(policy.orders().next().unwrap().1.unenforced, 0);

    // Through the overlay: removed, then added back to another order; lifted orders drop out.
    let lifted = policy
        .with_changes(&[PolicyChange::Put(valid(raw(
            "NS-1",
            &["IT"],
            &[(Nsdname, "ns1.shady-dns.example")],
            OrderState::Lifted,
        )))])
        .unwrap();
    assert!(!lifted.check_name_server(&ns, it, now()).is_block());
    assert!(!lifted.may_apply_to_name_server_address(inside));
    let gone = policy
        .with_changes(&[PolicyChange::Remove("NS-1".into())])
        .unwrap();
    assert!(!gone.has_name_server_triggers());
    assert!(!gone.may_apply_to_name_server(&ns));
    let added = gone
        .with_changes(&[PolicyChange::Put(order(
            "NS-2",
            &["IT"],
            &[(Nsip, "198.51.100.53")],
        ))])
        .unwrap();
    assert!(added
        .check_name_server_address(inside, it, now())
        .is_block());
    assert!(!added
        .check_name_server_address("198.51.100.54".parse().unwrap(), it, now())
        .is_block());
    assert!(added
        .compact()
        .unwrap()
        .check_name_server_address(inside, it, now())
        .is_block());
}

#[test]
fn name_server_targets_need_overrides_like_names() {
    use TargetKind::{Nsdname, Nsip};
    let psl = |name: &str| name == "co.uk";
    let options = ValidationOptions {
        public_suffixes: &psl,
        ..ValidationOptions::default()
    };
    for (kind, value) in [(Nsdname, "net"), (Nsdname, "co.uk"), (Nsip, "10.0.0.0/7")] {
        let written = raw("NS", &["IT"], &[(kind, value)], OrderState::Active);
        let error = written.validate(&options).unwrap_err();
        assert_eq!(error.errors[0].path, "targets[0].value", "{value}: {error}");
        let mut overridden = written.clone();
        overridden.overrides.push(juris_policy::Override {
            target: value.into(),
            reason: "reviewed".into(),
            recorded_by: None,
        });
        assert!(overridden.validate(&options).is_ok(), "{value}");
    }
}

#[test]
fn extensions_follow_their_parent() {
    let parent = |state: OrderState, expires: Option<&str>| {
        let mut o = raw("P", &["IT"], &[(Subtree, "kickasstorrents.to")], state);
        o.expires_at = expires.map(ts);
        valid(o)
    };
    let extension = {
        let mut o = raw(
            "P-EXT-1",
            &["IT", "FR"],
            &[(Subtree, "kickasstorrents2.to")],
            OrderState::Active,
        );
        o.kind = OrderKind::Extension;
        o.parent = Some("P".into());
        valid(o)
    };
    let it = country("IT");
    let future = "www.kickasstorrents2.to";
    let active = compile(&[parent(OrderState::Active, None), extension.clone()]);
    assert_eq!(
        fired(&check(&active, future, it)).as_deref(),
        Some("P-EXT-1")
    );
    // The extension's own jurisdictions decide where (FR is not in the parent's).
    assert!(check(&active, future, country("FR")).is_block());
    assert!(!check(&active, future, country("DE")).is_block());
    for (state, expires, why) in [
        (
            OrderState::Suspended,
            None,
            ParentStatus::NotActive(OrderState::Suspended),
        ),
        (
            OrderState::Lifted,
            None,
            ParentStatus::NotActive(OrderState::Lifted),
        ),
        (
            OrderState::Active,
            Some("2024-05-20T00:00:00Z"),
            ParentStatus::Expired,
        ),
    ] {
        // One publish changes the parent: the extension stops with it.
        let next = active
            .with_changes(&[PolicyChange::Put(parent(state, expires))])
            .unwrap();
        assert!(!check(&next, future, it).is_block(), "{state:?}");
        let explained = next.explain_name(&name_to_wire(future).unwrap(), it, now());
        assert_eq!(explained.matches.len(), 1);
        assert_eq!(
            explained.matches[0].status,
            MatchStatus::ParentNotInForce(why)
        );
        assert!(check(&next, "kickasstorrents.to", it).block().is_none());
    }
    // A shadow parent makes its extension shadow; a missing parent stops it.
    let shadow = compile(&[parent(OrderState::Shadow, None), extension.clone()]);
    let verdict = check(&shadow, future, it);
    assert!(!verdict.is_block());
    assert_eq!(verdict.shadow().len(), 1);
    let orphan = compile(&[extension]);
    assert!(!check(&orphan, future, it).is_block());
    assert_eq!(
        orphan
            .explain_name(&name_to_wire(future).unwrap(), it, now())
            .matches[0]
            .status,
        MatchStatus::ParentNotInForce(ParentStatus::Missing)
    );
}
