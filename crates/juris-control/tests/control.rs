//! Integration tests of the control plane: store, audit chain, lifecycle, safeguards, feeds,
//! RPZ, and the HTTP API (through `tower::ServiceExt::oneshot`, no sockets).

#![allow(clippy::unwrap_used, clippy::expect_used, reason = "test code")]

use std::sync::{Arc, Mutex};

use axum::body::Body;
use axum::http::{Request, StatusCode};
use http_body_util::BodyExt;
use juris_control::api::{routes, NoServer, OPENAPI};
use juris_control::feeds::{list_checksum, CumulativeFeed, FeedChecksums};
use juris_control::{
    router, Actor, ApiState, Clock, Control, ControlConfig, ControlError, ExplainRequest,
    ExplainView, OrderFilter, Role, ServerSnapshot, ServerView, Store, TargetStatus,
};
use juris_policy::{Order, OrderKind, OrderState, Target, TargetKind, Timestamp};
use serde_json::{json, Value};
use tower::ServiceExt;

#[derive(Debug)]
struct FixedClock(Mutex<Timestamp>);

impl Clock for FixedClock {
    fn unix_seconds(&self) -> u64 {
        self.now().as_second().try_into().unwrap()
    }
    fn now(&self) -> Timestamp {
        *self.0.lock().unwrap()
    }
}

fn clock() -> Arc<FixedClock> {
    Arc::new(FixedClock(Mutex::new(
        "2024-06-01T12:00:00Z".parse().unwrap(),
    )))
}

fn control_with(store: Store, four_eyes: bool) -> Control {
    let config = ControlConfig {
        four_eyes,
        ..ControlConfig::default()
    };
    Control::new(store, &config, clock()).unwrap()
}

fn memory() -> Control {
    control_with(Store::open_in_memory().unwrap(), false)
}

fn actor(name: &str, role: Role) -> Actor {
    Actor {
        name: name.into(),
        role,
    }
}

fn admin() -> Actor {
    actor("root", Role::Admin)
}

fn order(id: &str, state: &str, targets: Value) -> Order {
    serde_json::from_value(json!({
        "id": id, "kind": "court_order", "authority": "Tribunale di Milano",
        "reference": "RG 1/2024", "jurisdictions": ["IT"], "action": "nxdomain",
        "state": state, "comply_by": "2024-06-02T00:00:00Z", "targets": targets
    }))
    .unwrap()
}

/// Everything that must not change when an operation is refused.
fn snapshot(control: &Control) -> (usize, Vec<String>, Value) {
    let audit = control.audit_log(0, 100_000).unwrap().len();
    let orders = control
        .orders(&Default::default())
        .unwrap()
        .into_iter()
        .map(|o| format!("{} {} {}", o.id, o.state, o.targets))
        .collect();
    let feeds = serde_json::to_value(control.feeds().unwrap()).unwrap();
    (audit, orders, feeds)
}

fn feed(fqdn: &[&str], ipv4: &[&str], ipv6: &[&str]) -> CumulativeFeed {
    let own = |items: &[&str]| items.iter().map(|s| s.to_string()).collect::<Vec<_>>();
    CumulativeFeed {
        generated_at: None,
        sha256: FeedChecksums {
            fqdn: list_checksum(&own(fqdn)),
            ipv4: list_checksum(&own(ipv4)),
            ipv6: list_checksum(&own(ipv6)),
        },
        fqdn: own(fqdn),
        ipv4: own(ipv4),
        ipv6: own(ipv6),
    }
}

fn feed_order(control: &Control) {
    let mut ticket = order("PS-IT", "active", json!([]));
    ticket.kind = juris_policy::OrderKind::FeedTicket;
    ticket.authority = "AGCOM".into();
    ticket.block_addresses = true;
    control
        .apply_order(&admin(), ticket, true, true, "Piracy Shield feed")
        .unwrap();
}

fn enforced_values(control: &Control) -> Vec<String> {
    let mut values: Vec<String> = control
        .enforceable_orders()
        .unwrap()
        .iter()
        .flat_map(|o| o.targets.iter().map(|t| t.value.clone()))
        .collect();
    values.sort();
    values
}

// ---- store, lifecycle, audit ---------------------------------------------------------------------

#[test]
fn every_change_is_audited_and_the_chain_verifies() {
    let control = memory();
    let mut changes = control.subscribe();
    let view = control
        .apply_order(
            &admin(),
            order(
                "IT-1",
                "draft",
                json!([{"type": "subtree", "value": "Kickass.TO"}]),
            ),
            true,
            true,
            "received",
        )
        .unwrap();
    assert_eq!(view.order.state, OrderState::Draft);
    assert_eq!(view.targets[0].value, "kickass.to");
    assert_eq!(view.targets[0].added_by, "root");
    assert!(changes.has_changed().unwrap());
    changes.mark_unchanged();
    // Drafts are not handed to the resolver.
    assert!(control.enforceable_orders().unwrap().is_empty());
    control
        .transition(&admin(), "IT-1", OrderState::Shadow, "dry run")
        .unwrap();
    control
        .transition(&admin(), "IT-1", OrderState::Active, "go")
        .unwrap();
    assert!(changes.has_changed().unwrap());
    let extension = vec![Target {
        evidence: Some("https://evidence.example/1".into()),
        ..Target::new(TargetKind::Domain, "kickass2.to")
    }];
    let report = control
        .add_targets(&admin(), "IT-1", extension, "future domain")
        .unwrap();
    assert_eq!(report.added.len(), 1);
    assert_eq!(enforced_values(&control), ["kickass.to", "kickass2.to"]);
    let enforced = control.enforceable_orders().unwrap();
    assert_eq!(
        enforced[0].state,
        OrderState::Active,
        "the stored state, not the document's"
    );
    control
        .remove_targets(
            &admin(),
            "IT-1",
            &[(TargetKind::Domain, "KICKASS2.to".into())],
            "mistake",
        )
        .unwrap();
    control
        .transition(&admin(), "IT-1", OrderState::Lifted, "appeal")
        .unwrap();
    assert!(control.enforceable_orders().unwrap().is_empty());
    let error = control
        .transition(&admin(), "IT-1", OrderState::Active, "again")
        .unwrap_err();
    assert!(matches!(error, ControlError::Conflict { .. }), "{error}");

    let actions: Vec<String> = control
        .audit_log(0, 100)
        .unwrap()
        .into_iter()
        .map(|e| e.action)
        .collect();
    assert_eq!(
        actions,
        [
            "order.create",
            "order.shadow",
            "order.activate",
            "target.add",
            "target.remove",
            "order.lift"
        ]
    );
    let view = control.order("IT-1").unwrap();
    let states: Vec<&str> = view.transitions.iter().map(|t| t.to.as_str()).collect();
    assert_eq!(states, ["draft", "shadow", "active", "lifted"]);
    let report = control.audit_verify().unwrap();
    assert!(report.ok && report.entries == 6, "{report:?}");
}

#[test]
fn apply_with_state_makes_the_transition_and_update_keeps_provenance() {
    let control = memory();
    control
        .apply_order(
            &admin(),
            order(
                "IT-2",
                "active",
                json!([{"type": "domain", "value": "a.example"}]),
            ),
            true,
            false,
            "",
        )
        .unwrap();
    let first = control.order("IT-2").unwrap();
    assert_eq!(first.order.state, OrderState::Active);
    // Re-apply without a state: keeps active, replaces the targets, keeps a.example's provenance.
    let again = order(
        "IT-2",
        "draft",
        json!([{"type": "domain", "value": "a.example"}, {"type": "domain", "value": "b.example"}]),
    );
    let view = control
        .apply_order(&actor("other", Role::Editor), again, false, false, "")
        .unwrap();
    assert_eq!(view.order.state, OrderState::Active);
    assert_eq!(view.targets.len(), 2);
    let a = view
        .targets
        .iter()
        .find(|t| t.value == "a.example")
        .unwrap();
    assert_eq!(a.added_by, "root");
    let b = view
        .targets
        .iter()
        .find(|t| t.value == "b.example")
        .unwrap();
    assert_eq!(b.added_by, "other");
    // An editor cannot activate through apply.
    let error = control
        .apply_order(
            &actor("ed", Role::Editor),
            order("IT-3", "active", json!([])),
            true,
            true,
            "",
        )
        .unwrap_err();
    assert!(matches!(error, ControlError::Forbidden(_)), "{error}");
    assert!(control.order("IT-3").is_err(), "nothing half-applied");
}

#[test]
fn four_eyes_rule() {
    let control = control_with(Store::open_in_memory().unwrap(), true);
    let alice = actor("alice", Role::Approver);
    let bob = actor("bob", Role::Approver);
    control
        .apply_order(&alice, order("IT-4", "draft", json!([])), true, true, "")
        .unwrap();
    let error = control
        .transition(&alice, "IT-4", OrderState::Active, "")
        .unwrap_err();
    assert!(
        matches!(error, ControlError::Forbidden(ref r) if r.contains("four-eyes")),
        "{error}"
    );
    assert_eq!(
        control.order("IT-4").unwrap().order.state,
        OrderState::Draft
    );
    // Nor through apply with a state.
    let error = control
        .apply_order(&alice, order("IT-4", "active", json!([])), true, false, "")
        .unwrap_err();
    assert!(matches!(error, ControlError::Forbidden(_)));
    control
        .transition(&bob, "IT-4", OrderState::Active, "second pair of eyes")
        .unwrap();
    assert_eq!(
        control.order("IT-4").unwrap().order.state,
        OrderState::Active
    );
    // Without the rule the creator may activate.
    let relaxed = memory();
    relaxed
        .apply_order(&alice, order("IT-5", "draft", json!([])), true, true, "")
        .unwrap();
    relaxed
        .transition(&alice, "IT-5", OrderState::Active, "")
        .unwrap();
}

#[test]
fn kill_switch_suspends_everything_in_one_call() {
    let control = memory();
    for (id, state) in [
        ("A", "active"),
        ("B", "shadow"),
        ("C", "draft"),
        ("D", "active"),
    ] {
        control
            .apply_order(
                &admin(),
                order(
                    id,
                    state,
                    json!([{"type": "domain", "value": format!("{id}.example")}]),
                ),
                true,
                true,
                "",
            )
            .unwrap();
    }
    let before = control.audit_log(0, 1000).unwrap().len();
    let error = control
        .suspend_all(&actor("ed", Role::Editor), "")
        .unwrap_err();
    assert!(matches!(error, ControlError::Forbidden(_)));
    let suspended = control
        .suspend_all(&actor("op", Role::Approver), "incident 42")
        .unwrap();
    assert_eq!(suspended, ["A", "B", "D"]);
    let log = control.audit_log(0, 1000).unwrap();
    assert_eq!(log.len(), before + 1);
    assert_eq!(log.last().unwrap().action, "orders.suspend_all");
    assert_eq!(log.last().unwrap().reason, "incident 42");
    for id in ["A", "B", "D"] {
        assert_eq!(
            control.order(id).unwrap().order.state,
            OrderState::Suspended
        );
    }
    assert_eq!(control.order("C").unwrap().order.state, OrderState::Draft);
}

// ---- bad input -------------------------------------------------------------------------------------

#[test]
fn bad_input_names_the_field_and_leaves_the_store_untouched() {
    let control = memory();
    control
        .apply_order(
            &admin(),
            order(
                "IT-1",
                "active",
                json!([{"type": "domain", "value": "ok.example"}]),
            ),
            true,
            true,
            "",
        )
        .unwrap();
    feed_order(&control);
    control
        .import_feed(
            &admin(),
            "ps",
            Some("PS-IT"),
            &feed(&["x.example"], &[], &[]),
            "",
        )
        .unwrap();
    let before = snapshot(&control);

    let mut unknown_jurisdiction = order("IT-9", "draft", json!([]));
    unknown_jurisdiction.jurisdictions = vec!["XX".into()];
    let error = control
        .apply_order(&admin(), unknown_jurisdiction, true, true, "")
        .unwrap_err();
    assert_eq!(error.field(), "jurisdictions[0]");

    let error = control
        .apply_order(
            &admin(),
            order(
                "IT-1",
                "active",
                json!([{"type": "domain", "value": "a..b"}]),
            ),
            true,
            false,
            "",
        )
        .unwrap_err();
    assert_eq!(error.field(), "targets[0].value");

    for suffix in ["co.uk", "com", "github.io"] {
        let error = control
            .add_targets(
                &admin(),
                "IT-1",
                vec![Target::new(TargetKind::Subtree, suffix)],
                "",
            )
            .unwrap_err();
        assert_eq!(error.field(), "targets[0].value", "{suffix}");
        assert!(
            error.reason().contains("public suffix") || error.reason().contains("top-level"),
            "{error}"
        );
    }

    let mut wrong = feed(&["x.example", "y.example"], &[], &[]);
    wrong.sha256.fqdn = list_checksum(&["x.example".into()]);
    let error = control
        .import_feed(&admin(), "ps", None, &wrong, "")
        .unwrap_err();
    assert_eq!(error.field(), "sha256.fqdn");
    assert!(error.reason().contains("checksum mismatch"), "{error}");

    let error = CumulativeFeed::from_json(br#"{"fqdn": [], "ipv4": [], "ipv6": [], "sha256": {"fqdn": "", "ipv4": "", "ipv6": ""}, "extra": 1}"#).unwrap_err();
    assert_eq!(error.field(), "extra");
    let error =
        CumulativeFeed::from_json(br#"{"fqdn": "x", "ipv4": [], "ipv6": [], "sha256": {}}"#)
            .unwrap_err();
    assert_eq!(error.field(), "fqdn");
    let error = juris_control::parse_json::<Order>(
        br#"{"id":"a","kind":"court_order","authority":"x","jurisdictions":["IT"],"action":"nxdomain","targets":[{"type":"domain","value":"a.b","why":1}]}"#,
    )
    .unwrap_err();
    assert_eq!(error.field(), "targets[0].why");

    let error = control
        .import_list(
            &admin(),
            "IT-1",
            "good.example\n# comment\n\nbad..example\n",
            TargetKind::Domain,
            "",
        )
        .unwrap_err();
    assert_eq!(error.field(), "line 4");
    let error = control
        .import_rpz(
            &admin(),
            "IT-1",
            "$ORIGIN z.\nok2.example CNAME .\nx.example A 1.2.3.4\n",
            "",
        )
        .unwrap_err();
    assert_eq!(error.field(), "line 3");
    let error = control
        .import_rpz(&admin(), "IT-1", "$ORIGIN z.\nok2.example CNAME *.\n", "")
        .unwrap_err();
    assert_eq!(error.field(), "line 2", "NODATA into an NXDOMAIN order");

    assert_eq!(snapshot(&control), before);
    assert!(control.audit_verify().unwrap().ok);
}

// ---- safeguards and feeds ------------------------------------------------------------------------

#[test]
fn the_2024_accidents_replayed_as_a_feed_ticket_are_held_not_enforced() {
    let control = memory();
    feed_order(&control);
    let ticket = feed(
        &["drive.usercontent.google.com", "piracy.example"],
        &["188.114.97.7"],
        &[],
    );
    let ack = control
        .import_feed(
            &admin(),
            "piracy-shield",
            Some("PS-IT"),
            &ticket,
            "ticket 2024-02-24",
        )
        .unwrap();
    let by_item = |item: &str| ack.items.iter().find(|i| i.item == item).unwrap().clone();
    for item in ["drive.usercontent.google.com", "188.114.97.7"] {
        let ack = by_item(item);
        assert_eq!(ack.status, "unprocessed", "{item}");
        assert_eq!(serde_json::to_value(ack.reason).unwrap(), "UNKNOWN");
        assert!(ack.detail.unwrap().contains("held for review"));
    }
    assert_eq!(by_item("piracy.example").status, "processed");
    // Not in what the resolver gets.
    assert_eq!(enforced_values(&control), ["piracy.example"]);
    let view = control.order("PS-IT").unwrap();
    let mut held: Vec<&str> = view
        .targets
        .iter()
        .filter(|t| t.status == TargetStatus::NeedsReview)
        .map(|t| t.value.as_str())
        .collect();
    held.sort();
    assert_eq!(held, ["188.114.97.7/32", "drive.usercontent.google.com"]);
    let ip = view
        .targets
        .iter()
        .find(|t| t.value == "188.114.97.7/32")
        .unwrap();
    assert!(ip
        .review_reason
        .as_deref()
        .unwrap()
        .contains("188.114.96.0/20"));
    assert_eq!(ip.added_by, "feed:piracy-shield");
    assert_eq!(control.status().unwrap().needs_review, 2);

    // Only an admin can release a held target, with a reason; it is audited.
    let error = control
        .override_target(
            &actor("op", Role::Approver),
            "PS-IT",
            TargetKind::Ip,
            "188.114.97.7",
            "sure",
        )
        .unwrap_err();
    assert!(matches!(error, ControlError::Forbidden(_)));
    let error = control
        .override_target(&admin(), "PS-IT", TargetKind::Ip, "188.114.97.7", " ")
        .unwrap_err();
    assert_eq!(error.field(), "reason");
    let released = control
        .override_target(
            &admin(),
            "PS-IT",
            TargetKind::Ip,
            "188.114.97.7",
            "verified dedicated address",
        )
        .unwrap();
    assert_eq!(released.status, TargetStatus::Overridden);
    assert_eq!(
        enforced_values(&control),
        ["188.114.97.7/32", "piracy.example"]
    );
    assert_eq!(
        control.audit_log(0, 100).unwrap().last().unwrap().action,
        "target.override"
    );
    // The same names entered by hand are held too.
    let view = control
        .apply_order(&admin(), order("IT-H", "active", json!([{"type": "subtree", "value": "google.com"}, {"type": "ip", "value": "104.16.0.0/13"}])), true, true, "")
        .unwrap();
    assert!(view
        .targets
        .iter()
        .all(|t| t.status == TargetStatus::NeedsReview));
}

#[test]
fn cumulative_feed_diff_lifts_vanished_items_and_acks_every_item() {
    let control = memory();
    feed_order(&control);
    // Another order already blocks y.example.
    control
        .apply_order(
            &admin(),
            order(
                "IT-Y",
                "active",
                json!([{"type": "domain", "value": "y.example"}]),
            ),
            true,
            true,
            "",
        )
        .unwrap();
    let first = feed(
        &["a.example", "b.example", "y.example", "co.uk", "a.example"],
        &["203.0.113.7"],
        &["2001:db8::1"],
    );
    let ack = control
        .import_feed(&admin(), "ps", Some("PS-IT"), &first, "")
        .unwrap();
    assert_eq!((ack.added, ack.lifted, ack.unchanged), (5, 0, 0));
    let status = |item: &str| {
        let found: Vec<_> = ack.items.iter().filter(|i| i.item == item).collect();
        found
            .iter()
            .map(|i| {
                format!(
                    "{} {}",
                    i.status,
                    i.reason
                        .map(|r| serde_json::to_value(r)
                            .unwrap()
                            .as_str()
                            .unwrap()
                            .to_owned())
                        .unwrap_or_default()
                )
            })
            .collect::<Vec<_>>()
    };
    assert_eq!(
        status("a.example"),
        ["processed ", "unprocessed ALREADY_BLOCKED"]
    );
    assert_eq!(status("y.example"), ["unprocessed ALREADY_BLOCKED"]);
    assert_eq!(status("co.uk"), ["unprocessed UNDEFINED"]);
    assert_eq!(status("2001:db8::1"), ["processed "]);
    assert_eq!(
        enforced_values(&control),
        [
            "2001:db8::1/128",
            "203.0.113.7/32",
            "a.example",
            "b.example",
            "y.example",
            "y.example"
        ]
    );

    // b.example and the IPv4 address leave the feed: they are lifted.
    let second = feed(
        &["a.example", "y.example", "c.example"],
        &[],
        &["2001:db8::1"],
    );
    let ack = control
        .import_feed(&admin(), "ps", None, &second, "")
        .unwrap();
    assert_eq!((ack.added, ack.lifted, ack.unchanged), (1, 2, 3));
    let lifted: Vec<&str> = ack
        .items
        .iter()
        .filter(|i| i.status == "lifted")
        .map(|i| i.item.as_str())
        .collect();
    assert_eq!(lifted, ["b.example", "203.0.113.7"]);
    assert_eq!(
        enforced_values(&control),
        [
            "2001:db8::1/128",
            "a.example",
            "c.example",
            "y.example",
            "y.example"
        ]
    );
    // The acknowledgement is stored and exportable; the first import's too.
    assert_eq!(control.feed_ack("ps", None).unwrap(), ack);
    assert_eq!(
        control
            .feed_ack("ps", Some(ack.import_id - 1))
            .unwrap()
            .added,
        5
    );
    // Bound to its order.
    let error = control
        .import_feed(&admin(), "ps", Some("IT-Y"), &second, "")
        .unwrap_err();
    assert_eq!(error.field(), "order");
    assert!(control.audit_verify().unwrap().ok);
}

// ---- RPZ and reports ---------------------------------------------------------------------------------

#[test]
fn rpz_import_export_round_trip() {
    let control = memory();
    let mut blocking = order("IT-R", "active", json!([]));
    blocking.block_addresses = true;
    control
        .apply_order(&admin(), blocking, true, true, "")
        .unwrap();
    let zone = "$ORIGIN feed.rpz.\n$TTL 60\n@ SOA ns. host. 1 3600 600 86400 30\n@ NS ns.\n\
                bad.to CNAME .\n*.bad.to CNAME .\nexact.example CNAME .\n32.7.113.0.203.rpz-ip CNAME .\n";
    let report = control
        .import_rpz(&admin(), "IT-R", zone, "legacy list")
        .unwrap();
    assert_eq!(report.report.added.len(), 3);
    let exported = control.export_rpz("IT", None).unwrap();
    assert!(
        exported.starts_with("$ORIGIN it.rpz.invalid.\n"),
        "{exported}"
    );
    let parsed = juris_control::rpz::parse(&exported).unwrap();
    let mut got: Vec<(TargetKind, String)> = parsed
        .records
        .into_iter()
        .map(|r| (r.kind, r.value))
        .collect();
    got.sort();
    assert_eq!(
        got,
        [
            (TargetKind::Subtree, "bad.to".to_string()),
            (TargetKind::Domain, "exact.example".to_string()),
            (TargetKind::Ip, "203.0.113.7/32".to_string()),
        ]
    );
    // Importing the export again adds nothing.
    let again = control.import_rpz(&admin(), "IT-R", &exported, "").unwrap();
    assert!(again.report.added.is_empty());
    assert_eq!(again.report.existing.len(), 3);
    // Germany gets an empty zone.
    assert!(
        juris_control::rpz::parse(&control.export_rpz("DE", None).unwrap())
            .unwrap()
            .records
            .is_empty()
    );
    assert_eq!(
        control.export_rpz("XX", None).unwrap_err().field(),
        "jurisdiction"
    );
}

#[test]
fn transparency_report_and_deadlines() {
    let control = memory();
    control
        .apply_order(&admin(), order("IT-T", "active", json!([{"type": "domain", "value": "a.example"}, {"type": "domain", "value": "drive.usercontent.google.com"}])), true, true, "")
        .unwrap();
    control
        .apply_order(&admin(), order("IT-D", "shadow", json!([])), true, true, "")
        .unwrap();
    let rows = control.transparency(Some("IT")).unwrap();
    assert_eq!(rows.len(), 2);
    let t = rows.iter().find(|r| r.order_id == "IT-T").unwrap();
    assert_eq!(t.issuing_authority, "Tribunale di Milano");
    assert_eq!(t.case_reference, "RG 1/2024");
    assert_eq!(
        t.targets_count, 1,
        "held targets are not counted as blocked"
    );
    assert_eq!(t.action_taken, "blocked (nxdomain)");
    assert!(t.date_enforced.is_some());
    assert!(control.transparency(Some("DE")).unwrap().is_empty());
    let csv = juris_control::export::transparency_csv(&rows);
    assert!(
        csv.lines()
            .nth(1)
            .unwrap()
            .contains("\"Tribunale di Milano\"")
            || csv.contains("Tribunale di Milano,")
    );
    // IT-D is due within the warning window and not active.
    let status = control.status().unwrap();
    assert_eq!(status.deadlines.len(), 1);
    assert_eq!(status.deadlines[0].order, "IT-D");
    assert!(!status.deadlines[0].overdue);
}

/// A fleet primary whose follower `edge-2` has not taken order `IT-T` yet.
#[derive(Debug)]
struct HalfFleet;

impl juris_control::FleetProof for HalfFleet {
    fn order(&self, id: &str) -> Option<juris_control::OrderFleet> {
        let node = |name: &str, in_force: bool| juris_control::OrderNode {
            name: name.into(),
            configured: true,
            in_force,
            since: in_force.then(|| "2024-06-01T11:00:00Z".parse().unwrap()),
            serial: Some(if in_force { 7 } else { 6 }),
            last_seen: Some("2024-06-01T11:59:00Z".parse().unwrap()),
        };
        let missing: Vec<String> = if id == "IT-T" {
            vec!["edge-2".into()]
        } else {
            Vec::new()
        };
        Some(juris_control::OrderFleet {
            serial: Some(7),
            published_at: Some("2024-06-01T10:59:00Z".parse().unwrap()),
            in_force_everywhere: missing.is_empty(),
            nodes: vec![node("edge-1", true), node("edge-2", missing.is_empty())],
            missing,
        })
    }
}

#[test]
fn on_a_fleet_primary_a_deadline_is_met_only_when_every_follower_has_the_order() {
    let control = memory();
    for id in ["IT-T", "IT-U"] {
        control
            .apply_order(
                &admin(),
                order(
                    id,
                    "active",
                    json!([{"type": "domain", "value": "a.example"}]),
                ),
                true,
                true,
                "",
            )
            .unwrap();
    }
    // Without a fleet, active orders meet their deadline.
    assert!(control.status().unwrap().deadlines.is_empty());
    assert!(control.order("IT-T").unwrap().fleet.is_none());

    control.set_fleet(Arc::new(HalfFleet));
    let status = control.status().unwrap();
    assert_eq!(status.deadlines.len(), 1, "{:?}", status.deadlines);
    assert_eq!(status.deadlines[0].order, "IT-T");
    assert_eq!(status.deadlines[0].followers_missing, ["edge-2"]);
    let shown = serde_json::to_value(control.order("IT-T").unwrap()).unwrap();
    assert_eq!(shown["fleet"]["missing"], json!(["edge-2"]));
    assert_eq!(shown["fleet"]["nodes"][0]["name"], "edge-1");
    assert_eq!(shown["fleet"]["nodes"][0]["since"], "2024-06-01T11:00:00Z");
    assert_eq!(shown["order"]["id"], "IT-T", "the existing fields stay");
}

// ---- audit tampering -------------------------------------------------------------------------------

fn tampered(edit: &str) -> juris_control::audit::VerifyReport {
    let dir = tempfile::tempdir().unwrap();
    {
        let control = control_with(Store::open(dir.path()).unwrap(), false);
        for i in 0..5 {
            control
                .apply_order(
                    &admin(),
                    order(&format!("O-{i}"), "draft", json!([])),
                    true,
                    true,
                    "",
                )
                .unwrap();
        }
        assert!(control.audit_verify().unwrap().ok);
    }
    let conn =
        rusqlite::Connection::open(dir.path().join(juris_control::store::STORE_FILE)).unwrap();
    // The triggers refuse edits; an attacker with the file drops them first.
    assert!(conn
        .execute("UPDATE audit SET actor = 'x' WHERE seq = 2", [])
        .is_err());
    assert!(conn.execute("DELETE FROM audit WHERE seq = 2", []).is_err());
    conn.execute_batch("DROP TRIGGER audit_no_update; DROP TRIGGER audit_no_delete;")
        .unwrap();
    conn.execute_batch(edit).unwrap();
    drop(conn);
    let control = control_with(Store::open(dir.path()).unwrap(), false);
    control.audit_verify().unwrap()
}

#[test]
fn audit_verify_catches_edits_removals_and_reordering() {
    let report = tampered("UPDATE audit SET actor = 'mallory' WHERE seq = 3");
    assert_eq!(report.first_bad.as_ref().unwrap().seq, 3, "{report:?}");
    assert!(report.first_bad.unwrap().problem.contains("altered"));

    let report = tampered("UPDATE audit SET after = replace(after, 'O-1', 'O-X') WHERE seq = 2");
    assert_eq!(report.first_bad.unwrap().seq, 2);

    let report = tampered("DELETE FROM audit WHERE seq = 3");
    assert_eq!(report.first_bad.as_ref().unwrap().seq, 3, "{report:?}");
    assert!(report.first_bad.unwrap().problem.contains("missing"));

    // Removal hidden by renumbering the later entries.
    let report =
        tampered("DELETE FROM audit WHERE seq = 3; UPDATE audit SET seq = seq - 1 WHERE seq > 3;");
    assert_eq!(report.first_bad.unwrap().seq, 3);

    // Two entries swap places (content moved, hashes moved with it).
    let report = tampered(
        "UPDATE audit SET seq = 100 WHERE seq = 2; UPDATE audit SET seq = 2 WHERE seq = 4; UPDATE audit SET seq = 4 WHERE seq = 100;",
    );
    assert_eq!(report.first_bad.unwrap().seq, 2);

    assert!(tampered("SELECT 1").ok);
}

#[test]
fn offline_tokens_are_stored_as_hashes_only() {
    let dir = tempfile::tempdir().unwrap();
    let control = control_with(Store::open(dir.path()).unwrap(), false);
    let token = control
        .create_token("local", Role::Admin, "first-admin")
        .unwrap();
    assert!(token.starts_with("juris_") && token.len() == 70, "{token}");
    assert_eq!(
        control.authenticate(&token).unwrap(),
        actor("first-admin", Role::Admin)
    );
    assert!(control.authenticate("juris_wrong").is_err());
    let stored: Vec<String> = {
        let conn =
            rusqlite::Connection::open(dir.path().join(juris_control::store::STORE_FILE)).unwrap();
        let mut s = conn.prepare("SELECT hash FROM tokens").unwrap();
        s.query_map([], |r| r.get(0))
            .unwrap()
            .map(|r| r.unwrap())
            .collect()
    };
    assert_eq!(stored, [juris_control::token_hash(&token)]);
    assert!(control.audit_verify().unwrap().ok);
}

// ---- HTTP API ------------------------------------------------------------------------------------------

struct FakeServer;

impl ServerView for FakeServer {
    fn explain(&self, request: &ExplainRequest) -> Result<ExplainView, ControlError> {
        Ok(ExplainView {
            name: request.name.clone(),
            verdict: "allow".into(),
            ..ExplainView::default()
        })
    }
    fn snapshot(&self) -> ServerSnapshot {
        ServerSnapshot {
            policy_generation: 7,
            cache_hits: 3,
            queries: vec![juris_control::api::QueryCount {
                transport: "udp".into(),
                rcode: "NXDOMAIN".into(),
                count: 2,
            }],
            blocks: vec![juris_control::api::BlockCount {
                order: "IT-1".into(),
                jurisdiction: "IT".into(),
                count: 2,
            }],
            ..ServerSnapshot::default()
        }
    }
}

struct Api {
    router: axum::Router,
    tokens: Vec<(Role, String)>,
    control: Arc<Control>,
}

fn api() -> Api {
    let control = Arc::new(memory());
    let tokens = [Role::Viewer, Role::Editor, Role::Approver, Role::Admin]
        .into_iter()
        .map(|role| {
            (
                role,
                control
                    .create_token("test", role, juris_control::role_str(role))
                    .unwrap(),
            )
        })
        .collect();
    let router = router(ApiState {
        control: control.clone(),
        server: Arc::new(FakeServer),
    });
    Api {
        router,
        tokens,
        control,
    }
}

impl Api {
    fn token(&self, role: Role) -> &str {
        &self.tokens.iter().find(|(r, _)| *r == role).unwrap().1
    }

    async fn call(
        &self,
        method: &str,
        path: &str,
        token: Option<&str>,
        body: &str,
    ) -> (StatusCode, Value, String) {
        let mut request = Request::builder().method(method).uri(path);
        if let Some(token) = token {
            request = request.header("Authorization", format!("Bearer {token}"));
        }
        let response = self
            .router
            .clone()
            .oneshot(request.body(Body::from(body.to_owned())).unwrap())
            .await
            .unwrap();
        let status = response.status();
        let bytes = response.into_body().collect().await.unwrap().to_bytes();
        let text = String::from_utf8_lossy(&bytes).into_owned();
        (
            status,
            serde_json::from_str(&text).unwrap_or(Value::Null),
            text,
        )
    }
}

fn concrete(path: &str) -> String {
    path.replace("{id}", "IT-1").replace("{name}", "ps")
}

#[tokio::test]
async fn every_route_refuses_missing_wrong_and_too_weak_tokens() {
    let api = api();
    let all = routes();
    assert!(all.len() >= 25);
    for route in &all {
        let path = concrete(route.path);
        let Some(role) = route.role else {
            let (status, _, _) = api.call(route.method, &path, None, "").await;
            // Public; /readyz answers 503 here: no resolver is attached to this API.
            let expected = if route.path == "/readyz" {
                StatusCode::SERVICE_UNAVAILABLE
            } else {
                StatusCode::OK
            };
            assert_eq!(status, expected, "{route:?} is public");
            continue;
        };
        let (status, body, _) = api.call(route.method, &path, None, "").await;
        assert_eq!(
            status,
            StatusCode::UNAUTHORIZED,
            "{route:?} without a token"
        );
        assert_eq!(body["error"]["field"], "authorization", "{route:?}");
        let (status, _, _) = api.call(route.method, &path, Some("juris_0000"), "").await;
        assert_eq!(
            status,
            StatusCode::UNAUTHORIZED,
            "{route:?} with a wrong token"
        );
        for (weaker, token) in &api.tokens {
            let (status, body, _) = api.call(route.method, &path, Some(token), "").await;
            if *weaker < role {
                assert_eq!(
                    status,
                    StatusCode::FORBIDDEN,
                    "{route:?} with role {weaker:?}"
                );
                assert_eq!(body["error"]["field"], "authorization");
            } else {
                assert!(
                    status != StatusCode::UNAUTHORIZED && status != StatusCode::FORBIDDEN,
                    "{route:?} with role {weaker:?}: {status} {body}"
                );
            }
        }
    }
}

#[test]
fn openapi_document_lists_every_route() {
    let document: Value = serde_json::from_str(OPENAPI).unwrap();
    let mut documented = 0;
    for (_, item) in document["paths"].as_object().unwrap() {
        documented += item.as_object().unwrap().len();
    }
    for route in routes() {
        let operation = &document["paths"][route.path][route.method.to_ascii_lowercase()];
        assert!(
            operation.is_object(),
            "{route:?} is not in docs/api/openapi.json"
        );
        let described = operation["description"].as_str().unwrap();
        match route.role {
            Some(role) => assert!(
                described.contains(&format!("**{}**", juris_control::role_str(role))),
                "{route:?}: {described}"
            ),
            None => assert!(described.contains("Public")),
        }
    }
    assert_eq!(
        documented,
        routes().len(),
        "documented operations that are not routed"
    );
}

#[tokio::test]
async fn api_lifecycle_errors_and_views() {
    let api = api();
    let editor = api.token(Role::Editor);
    let approver = api.token(Role::Approver);
    let viewer = api.token(Role::Viewer);
    let document = json!({"id": "IT-1", "kind": "court_order", "authority": "Court", "jurisdictions": ["IT"],
                          "action": "nxdomain", "targets": [{"type": "subtree", "value": "bad.example"}]});
    let (status, body, _) = api
        .call(
            "POST",
            "/v1/orders?reason=received",
            Some(editor),
            &document.to_string(),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    assert_eq!(body["order"]["state"], "draft");
    let (status, body, _) = api
        .call("POST", "/v1/orders", Some(editor), &document.to_string())
        .await;
    assert_eq!(status, StatusCode::CONFLICT, "{body}");
    assert_eq!(body["error"]["field"], "id");
    // Unknown field, unknown jurisdiction, invalid name: 400 naming the field.
    let mut bad = document.clone();
    bad["colour"] = json!("red");
    let (status, body, _) = api
        .call("PUT", "/v1/orders/IT-1", Some(editor), &bad.to_string())
        .await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert_eq!(body["error"]["field"], "colour");
    let mut bad = document.clone();
    bad["jurisdictions"] = json!(["IT", "QQ"]);
    let (_, body, _) = api
        .call("PUT", "/v1/orders/IT-1", Some(editor), &bad.to_string())
        .await;
    assert_eq!(body["error"]["field"], "jurisdictions[1]", "{body}");
    let (status, body, _) = api
        .call(
            "POST",
            "/v1/orders/IT-1/targets",
            Some(editor),
            r#"{"targets":[{"type":"domain","value":"co.uk"}]}"#,
        )
        .await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert_eq!(body["error"]["field"], "targets[0].value");
    // An editor cannot activate; an approver can.
    let (status, _, _) = api
        .call("POST", "/v1/orders/IT-1/activate", Some(editor), "")
        .await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    let (status, body, _) = api
        .call(
            "POST",
            "/v1/orders/IT-1/activate?reason=go",
            Some(approver),
            "",
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["effective_state"], "active");
    let (status, body, _) = api
        .call(
            "POST",
            "/v1/orders/IT-1/targets",
            Some(editor),
            r#"{"targets":[{"type":"domain","value":"drive.usercontent.google.com"}]}"#,
        )
        .await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(body["held"][0]["status"], "needs_review");
    let (_, body, _) = api
        .call(
            "GET",
            "/v1/orders?state=active&jurisdiction=IT",
            Some(viewer),
            "",
        )
        .await;
    assert_eq!(body["orders"][0]["needs_review"], 1);
    let (_, body, _) = api
        .call("GET", "/v1/orders?jurisdiction=DE", Some(viewer), "")
        .await;
    assert_eq!(body["orders"], json!([]));
    let (status, body, _) = api
        .call("GET", "/v1/orders?colour=red", Some(viewer), "")
        .await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
    let (status, _, _) = api.call("GET", "/v1/orders/NOPE", Some(viewer), "").await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    // Explain, status and metrics come through the server view.
    let (_, body, _) = api
        .call(
            "GET",
            "/v1/explain?name=bad.example&country=IT",
            Some(viewer),
            "",
        )
        .await;
    assert_eq!(body["name"], "bad.example");
    let (_, body, _) = api.call("GET", "/v1/status", Some(viewer), "").await;
    assert_eq!(body["policy_generation"], 7);
    assert_eq!(body["store"]["orders"]["active"], 1);
    assert_eq!(body["store"]["needs_review"], 1);
    let (_, _, text) = api.call("GET", "/metrics", Some(viewer), "").await;
    assert!(
        text.contains("juris_queries_total{transport=\"udp\",rcode=\"NXDOMAIN\"} 2"),
        "{text}"
    );
    assert!(text.contains("juris_blocks_total{order=\"IT-1\",jurisdiction=\"IT\"} 2"));
    assert!(text.contains("juris_policy_generation 7"));
    assert!(text.contains("juris_control_store_errors_total 0"));
    assert!(text.contains("juris_control_orders{state=\"active\"} 1"));
    // Feeds through the API, a bad checksum refused.
    let ticket = feed(&["x.example"], &[], &[]);
    let mut wrong = serde_json::to_value(&ticket).unwrap();
    wrong["sha256"]["fqdn"] = json!("00");
    let (status, body, _) = api
        .call(
            "POST",
            "/v1/feeds/ps?order=IT-1",
            Some(editor),
            &wrong.to_string(),
        )
        .await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert_eq!(body["error"]["field"], "sha256.fqdn");
    let (status, body, _) = api
        .call(
            "POST",
            "/v1/feeds/ps?order=IT-1",
            Some(editor),
            &serde_json::to_string(&ticket).unwrap(),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["items"][0]["status"], "processed");
    let (_, body, _) = api.call("GET", "/v1/feeds/ps/ack", Some(viewer), "").await;
    assert_eq!(body["items"][0]["item"], "x.example");
    let (_, _, text) = api
        .call("GET", "/v1/export/rpz?jurisdiction=IT", Some(viewer), "")
        .await;
    assert!(text.contains("*.bad.example CNAME ."), "{text}");
    assert!(!text.contains("drive.usercontent"));
    let (_, _, text) = api
        .call(
            "GET",
            "/v1/export/transparency?format=csv",
            Some(viewer),
            "",
        )
        .await;
    assert!(text.starts_with("order_id,kind,issuing_authority,jurisdictions,case_reference"));
    // Kill switch, audit.
    let (_, body, _) = api
        .call(
            "POST",
            "/v1/suspend-all?reason=incident",
            Some(approver),
            "",
        )
        .await;
    assert_eq!(body["suspended"], json!(["IT-1"]));
    let (_, body, _) = api.call("GET", "/v1/audit/verify", Some(viewer), "").await;
    assert_eq!(body["ok"], true);
    let (_, body, _) = api.call("GET", "/v1/audit?after=4", Some(viewer), "").await;
    assert_eq!(body["entries"][0]["seq"], 5);
    // Tokens through the API (admin).
    let (status, body, _) = api
        .call(
            "POST",
            "/v1/tokens",
            Some(api.token(Role::Admin)),
            r#"{"role":"viewer","name":"auditor"}"#,
        )
        .await;
    assert_eq!(status, StatusCode::CREATED);
    let token = body["token"].as_str().unwrap();
    assert_eq!(api.control.authenticate(token).unwrap().role, Role::Viewer);
    // No resolver attached: explain fails cleanly.
    let bare = router(ApiState {
        control: api.control.clone(),
        server: Arc::new(NoServer),
    });
    let response = bare
        .oneshot(
            Request::get("/v1/explain?name=a.example")
                .header("Authorization", format!("Bearer {viewer}"))
                .body(Body::empty())
                .unwrap(),
        )
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::INTERNAL_SERVER_ERROR);
}

#[test]
fn an_extension_shows_whether_its_parent_is_in_force() {
    let control = memory();
    let parent = order(
        "IT-P",
        "active",
        json!([{"type": "subtree", "value": "kickasstorrents.to"}]),
    );
    control
        .apply_order(&admin(), parent, true, false, "")
        .unwrap();
    let mut extension = order(
        "IT-P-EXT",
        "active",
        json!([{"type": "subtree", "value": "kickasstorrents2.to"}]),
    );
    extension.kind = OrderKind::Extension;
    extension.parent = Some("IT-P".into());
    control
        .apply_order(&admin(), extension, true, false, "")
        .unwrap();
    let status = |control: &Control| {
        let view = control.order("IT-P-EXT").unwrap().parent_status;
        let listed = control
            .orders(&OrderFilter::default())
            .unwrap()
            .into_iter()
            .find(|o| o.id == "IT-P-EXT")
            .unwrap()
            .parent_status;
        assert_eq!(view, listed);
        view
    };
    assert_eq!(status(&control).as_deref(), Some("in force"));
    assert_eq!(control.order("IT-P").unwrap().parent_status, None);
    control
        .transition(&admin(), "IT-P", OrderState::Suspended, "appeal pending")
        .unwrap();
    assert_eq!(
        status(&control).as_deref(),
        Some("its parent order is suspended")
    );
}

// ---- per-day counters ---------------------------------------------------------------------------

fn delta(
    order: &str,
    jurisdiction: &str,
    blocked: u64,
    shadow: u64,
) -> juris_control::stats::CountDelta {
    juris_control::stats::CountDelta {
        order: order.into(),
        jurisdiction: jurisdiction.into(),
        blocked,
        shadow,
    }
}

#[test]
fn daily_counters_add_per_day_and_are_pruned_after_the_retention() {
    let clock = clock();
    let config = ControlConfig {
        stats_retention_days: 3,
        ..ControlConfig::default()
    };
    let control = Control::new(Store::open_in_memory().unwrap(), &config, clock.clone()).unwrap();
    let next_day = || {
        let mut now = clock.0.lock().unwrap();
        *now = now
            .checked_add(jiff::SignedDuration::from_hours(24))
            .unwrap();
    };
    // 2024-06-01
    control
        .record_daily(&[delta("IT-1", "IT", 2, 0), delta("IT-1", "unknown", 1, 0)])
        .unwrap();
    control.record_daily(&[delta("IT-1", "IT", 3, 0)]).unwrap();
    next_day(); // 2024-06-02
    control
        .record_daily(&[delta("IT-1", "IT", 7, 0), delta("SH-1", "FR", 0, 4)])
        .unwrap();
    let stats = control.order_stats("IT-1", 3).unwrap();
    assert_eq!(
        (stats.from.as_str(), stats.to.as_str()),
        ("2024-05-31", "2024-06-02")
    );
    let rows: Vec<(&str, &str, u64)> = stats
        .counts
        .iter()
        .map(|c| (c.day.as_str(), c.jurisdiction.as_str(), c.blocked))
        .collect();
    assert_eq!(
        rows,
        [
            ("2024-06-01", "IT", 5),
            ("2024-06-01", "unknown", 1),
            ("2024-06-02", "IT", 7)
        ]
    );
    assert_eq!(stats.blocked, 13);
    assert_eq!(
        control.order_stats("IT-1", 1).unwrap().blocked,
        7,
        "today only"
    );
    assert_eq!(control.order_stats("SH-1", 3).unwrap().shadow, 4);
    let daily = control.daily_stats(3).unwrap();
    let totals: Vec<(&str, u64, u64)> = daily
        .totals
        .iter()
        .map(|t| (t.day.as_str(), t.blocked, t.shadow))
        .collect();
    assert_eq!(
        totals,
        [
            ("2024-05-31", 0, 0),
            ("2024-06-01", 6, 0),
            ("2024-06-02", 7, 4)
        ],
        "every day of the window, zero when nothing was counted"
    );
    // Beyond the retention: refused, not silently cut.
    let error = control.order_stats("IT-1", 4).unwrap_err();
    assert_eq!(error.field(), "days");
    assert_eq!(control.daily_stats(0).unwrap_err().field(), "days");
    // Three days later, 2024-06-01 and 06-02 fall out of the three days kept.
    for _ in 0..3 {
        next_day();
    }
    control.record_daily(&[delta("IT-1", "IT", 1, 0)]).unwrap();
    let stats = control.order_stats("IT-1", 3).unwrap();
    assert_eq!(stats.blocked, 1, "{stats:?}");
    assert_eq!(stats.counts.len(), 1);
}

#[tokio::test]
async fn api_serves_per_day_counters() {
    let api = api();
    api.control
        .record_daily(&[delta("IT-1", "IT", 2, 0), delta("IT-1", "DE", 0, 5)])
        .unwrap();
    let viewer = api.token(Role::Viewer).to_owned();
    let (status, body, text) = api
        .call("GET", "/v1/orders/IT-1/stats?days=7", Some(&viewer), "")
        .await;
    assert_eq!(status, StatusCode::OK, "{text}");
    assert_eq!(body["order"], "IT-1");
    assert_eq!(body["days"], 7);
    assert_eq!(body["blocked"], 2);
    assert_eq!(body["shadow"], 5);
    assert_eq!(body["counts"][0]["jurisdiction"], "DE");
    assert_eq!(body["counts"][0]["day"], "2024-06-01");
    let (status, body, _) = api.call("GET", "/v1/stats/daily", Some(&viewer), "").await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(body["days"], 30);
    assert_eq!(body["totals"].as_array().unwrap().len(), 30);
    assert_eq!(body["totals"][29]["blocked"], 2);
    let (status, body, _) = api
        .call("GET", "/v1/stats/daily?days=9999", Some(&viewer), "")
        .await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert_eq!(body["error"]["field"], "days");
    let (status, body, _) = api
        .call("GET", "/v1/stats/daily?days=x", Some(&viewer), "")
        .await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
}

#[test]
fn the_recent_audit_check_verifies_new_entries_and_rechecks_all_when_its_last_entry_changed() {
    let dir = tempfile::tempdir().unwrap();
    let control = control_with(Store::open(dir.path()).unwrap(), false);
    for id in ["O-1", "O-2"] {
        control
            .apply_order(&admin(), order(id, "draft", json!([])), true, true, "")
            .unwrap();
    }
    let (report, _) = control.audit_verify_recent().unwrap();
    assert!(report.ok && report.entries == 2, "{report:?}");
    control
        .apply_order(&admin(), order("O-3", "draft", json!([])), true, true, "")
        .unwrap();
    let conn =
        rusqlite::Connection::open(dir.path().join(juris_control::store::STORE_FILE)).unwrap();
    conn.execute_batch("DROP TRIGGER audit_no_update;").unwrap();
    // Edits the file behind the control plane's back, then runs the recent check.
    let edit_then_check = |sql: &str| {
        conn.execute_batch(sql).unwrap();
        control.audit_verify_recent().unwrap().0
    };
    // An entry appended after the last check, altered: found by the recent check.
    let report = edit_then_check("UPDATE audit SET actor = 'mallory' WHERE seq = 3");
    assert_eq!(report.first_bad.unwrap().seq, 3);
    let report = edit_then_check("UPDATE audit SET actor = 'root' WHERE seq = 3");
    assert!(report.ok && report.entries == 3, "{report:?}");
    // The entry the last check ended with, altered: found too.
    let report = edit_then_check("UPDATE audit SET reason = 'x' WHERE seq = 3");
    assert_eq!(report.first_bad.unwrap().seq, 3);
    // An older entry, altered: the full check finds it (the recent check is not meant to).
    edit_then_check(
        "UPDATE audit SET reason = '' WHERE seq = 3; UPDATE audit SET actor = 'mallory' WHERE seq = 1",
    );
    assert_eq!(control.audit_verify().unwrap().first_bad.unwrap().seq, 1);
}

#[test]
fn target_counts_kept_by_the_store_match_the_targets() {
    let control = memory();
    feed_order(&control);
    let targets = json!([{"type": "subtree", "value": "a.example"},
                         {"type": "domain", "value": "drive.usercontent.google.com"}]);
    let it = order("IT-1", "active", targets);
    control.apply_order(&admin(), it, true, true, "").unwrap();
    control
        .import_feed(
            &admin(),
            "ps",
            Some("PS-IT"),
            &feed(&["x.example", "y.example"], &["192.0.2.1"], &[]),
            "",
        )
        .unwrap();
    control
        .import_feed(&admin(), "ps", None, &feed(&["y.example"], &[], &[]), "")
        .unwrap();
    control
        .override_target(
            &admin(),
            "IT-1",
            TargetKind::Domain,
            "drive.usercontent.google.com",
            "checked",
        )
        .unwrap();
    control
        .remove_targets(
            &admin(),
            "IT-1",
            &[(TargetKind::Subtree, "a.example".into())],
            "",
        )
        .unwrap();
    let truth: Vec<(String, u64, u64)> = control
        .export_orders()
        .unwrap()
        .iter()
        .map(|v| {
            let held = v
                .targets
                .iter()
                .filter(|t| t.status == TargetStatus::NeedsReview)
                .count();
            (v.order.id.clone(), v.targets.len() as u64, held as u64)
        })
        .collect();
    let listed: Vec<(String, u64, u64)> = control
        .orders(&OrderFilter::default())
        .unwrap()
        .into_iter()
        .map(|o| (o.id, o.targets, o.needs_review))
        .collect();
    assert_eq!(listed, truth);
    assert_eq!(
        listed,
        [("IT-1".to_owned(), 1, 0), ("PS-IT".to_owned(), 1, 0)]
    );
    let status = control.status().unwrap();
    assert_eq!((status.targets, status.needs_review), (2, 0));
    let (preview, total) = control.order_preview("PS-IT", 0).unwrap();
    assert_eq!((preview.targets.len(), total), (0, 1));
}

#[test]
fn a_primarys_followers_are_gauges_labelled_with_their_names() {
    let server = juris_control::ServerSnapshot {
        fleet: Some(json!({
            "role": "primary", "serial": 7, "followers_behind": 1,
            "followers": [
                {"name": "edge-1", "serial": 7, "in_sync": 1, "seen_seconds_ago": 2, "key": "edge-1"},
                {"name": "edge-2", "serial": null, "in_sync": 0, "seen_seconds_ago": null}
            ]
        })),
        ..Default::default()
    };
    let status = memory().status().unwrap();
    let text = juris_control::api::render_metrics(&server, &status);
    for line in [
        "juris_fleet_followers_behind{role=\"primary\"} 1",
        "juris_fleet_follower_in_sync{name=\"edge-1\"} 1",
        "juris_fleet_follower_in_sync{name=\"edge-2\"} 0",
        "juris_fleet_follower_serial{name=\"edge-1\"} 7",
        "juris_fleet_follower_seen_seconds_ago{name=\"edge-1\"} 2",
    ] {
        assert!(text.contains(line), "{line} missing from\n{text}");
    }
    assert!(!text.contains("juris_fleet_follower_serial{name=\"edge-2\"}"));
}

/// The dashboard's aggregates and the list's counts as computed from every order in full.
fn aggregates_by_brute_force(control: &Control) -> (Vec<(String, u64, u64)>, u64, u64) {
    let now: Timestamp = control.now();
    let mut in_force: std::collections::BTreeMap<String, (u64, u64)> = Default::default();
    let (mut targets, mut expired) = (0, 0);
    for view in control.export_orders().unwrap() {
        targets += view.targets.len() as u64;
        let order = &view.order;
        let live = matches!(
            order.state,
            OrderState::Active | OrderState::Shadow | OrderState::Suspended
        );
        let is_expired = order.expires_at.is_some_and(|t| now >= t);
        expired += u64::from(live && is_expired);
        if order.state != OrderState::Active || is_expired {
            continue;
        }
        let codes: std::collections::BTreeSet<String> = order
            .jurisdictions
            .iter()
            .map(|c| c.trim().to_uppercase())
            .collect();
        for code in codes {
            let entry = in_force.entry(code).or_default();
            entry.0 += 1;
            entry.1 += view.targets.len() as u64;
        }
    }
    let in_force = in_force
        .into_iter()
        .map(|(code, (orders, targets))| (code, orders, targets))
        .collect();
    (in_force, targets, expired)
}

fn assert_aggregates_true(control: &Control) {
    let (in_force, targets, expired) = aggregates_by_brute_force(control);
    let overview = control.overview(100).unwrap();
    let kept: Vec<(String, u64, u64)> = overview
        .in_force
        .iter()
        .map(|j| (j.code.clone(), j.orders, j.targets))
        .collect();
    assert_eq!(kept, in_force);
    let status = control.status().unwrap();
    assert_eq!((status.targets, status.expired), (targets, expired));
    let mut by_state: std::collections::BTreeMap<String, u64> = Default::default();
    for o in control.orders(&OrderFilter::default()).unwrap() {
        *by_state.entry(o.state).or_default() += 1;
    }
    assert_eq!(status.orders, by_state);
}

fn page_ids(control: &Control, query: juris_control::OrderQuery) -> (Vec<String>, u64) {
    let page = control.order_page(&query).unwrap();
    (page.orders.into_iter().map(|o| o.id).collect(), page.total)
}

#[test]
fn the_order_list_and_the_dashboard_read_indexes_that_stay_true_through_changes() {
    use juris_control::OrderQuery;
    let control = memory();
    let make = |id: &str, authority: &str, reference: &str, jurisdictions: Value, extra: Value| {
        let mut document = json!({
            "id": id, "kind": "court_order", "authority": authority, "reference": reference,
            "jurisdictions": jurisdictions, "action": "nxdomain", "state": "active",
            "targets": [{"type": "subtree", "value": format!("{}.example", id.to_lowercase())}]
        });
        for (key, value) in extra.as_object().unwrap() {
            document[key] = value.clone();
        }
        let order: Order = serde_json::from_value(document).unwrap();
        control
            .apply_order(&admin(), order, true, true, "")
            .unwrap();
        assert_aggregates_true(&control);
    };
    // id, authority, reference, jurisdictions, other fields.
    let orders = json!([
        ["IT-1", "Tribunale di Milano", "RG 1/2024", ["it"], {}],
        ["EU-1", "AGCOM", "Delibera 2", ["EU"], {"expires_at": "2024-05-01T00:00:00Z"}],
        ["ALL-1", "Operator", "Sec 1", ["*"], {"state": "shadow"}],
        ["FR-1", "Tribunal judiciaire de Paris", "RG 3", ["FR", "DE"], {}],
        ["IT-2", "Tribunale di Roma", "Ünïcode ÄBC", ["IT"], {"state": "draft"}]
    ]);
    for o in orders.as_array().unwrap() {
        let text = |i: usize| o[i].as_str().unwrap();
        make(text(0), text(1), text(2), o[3].clone(), o[4].clone());
    }

    // Targets added, an order edited (other jurisdictions), lifted, activated.
    control
        .add_targets(
            &admin(),
            "IT-1",
            vec![Target::new(TargetKind::Domain, "b.example")],
            "",
        )
        .unwrap();
    assert_aggregates_true(&control);
    let mut edited = control.order("FR-1").unwrap().order;
    edited.jurisdictions = vec!["ES".into()];
    control
        .apply_order(&admin(), edited, false, false, "")
        .unwrap();
    assert_aggregates_true(&control);
    control
        .transition(&admin(), "IT-1", OrderState::Lifted, "")
        .unwrap();
    assert_aggregates_true(&control);
    control
        .transition(&admin(), "IT-2", OrderState::Active, "")
        .unwrap();
    control
        .remove_targets(
            &admin(),
            "IT-2",
            &[(TargetKind::Subtree, "it-2.example".into())],
            "",
        )
        .unwrap();
    assert_aggregates_true(&control);
    let overview = control.overview(100).unwrap();
    let codes: Vec<&str> = overview.in_force.iter().map(|j| j.code.as_str()).collect();
    assert_eq!(
        codes,
        ["ES", "IT"],
        "EU-1 expired, IT-1 lifted, ALL-1 shadow"
    );

    // Filters, search, counts and pages.
    let query = |filter: OrderFilter, authority: Option<&str>, text: Option<&str>| OrderQuery {
        filter,
        authority: authority.map(str::to_owned),
        text: text.map(str::to_owned),
        ..OrderQuery::default()
    };
    let by = |code: &str| OrderFilter {
        jurisdiction: Some(code.into()),
        ..OrderFilter::default()
    };
    assert_eq!(
        page_ids(&control, query(by("fr"), None, None)).0,
        ["ALL-1", "EU-1"],
        "France: the EU order and the global one (FR-1 now binds Spain)"
    );
    assert_eq!(page_ids(&control, query(by("*"), None, None)).0, ["ALL-1"]);
    assert_eq!(
        page_ids(&control, query(by("IT"), None, None)).0,
        ["ALL-1", "EU-1", "IT-1", "IT-2"]
    );
    assert!(control.order_page(&query(by("ITA"), None, None)).is_err());
    let state = |s: &str| OrderFilter {
        state: Some(s.into()),
        ..OrderFilter::default()
    };
    assert_eq!(
        page_ids(&control, query(state("expired"), None, None)).0,
        ["EU-1"]
    );
    assert_eq!(
        page_ids(&control, query(state("active"), None, None)).0,
        ["EU-1", "FR-1", "IT-2"],
        "the stored state matches too"
    );
    let all = OrderFilter::default;
    assert_eq!(
        page_ids(&control, query(all(), None, Some("MILANO"))).0,
        ["IT-1"]
    );
    assert_eq!(
        page_ids(&control, query(all(), None, Some("äbc"))).0,
        ["IT-2"]
    );
    assert_eq!(
        page_ids(&control, query(all(), None, Some("it-"))).0,
        ["IT-1", "IT-2"]
    );
    assert_eq!(
        page_ids(&control, query(all(), None, Some("rg"))).0,
        ["FR-1", "IT-1"],
        "two letters: looked up without the trigram index"
    );
    assert_eq!(
        page_ids(&control, query(all(), None, Some("%"))).0,
        Vec::<String>::new()
    );
    assert_eq!(
        page_ids(&control, query(all(), Some("tribunal"), None)).0,
        ["FR-1", "IT-1", "IT-2"]
    );
    assert_eq!(
        page_ids(&control, query(all(), Some("tribunal"), Some("roma"))).0,
        ["IT-2"]
    );
    assert_eq!(
        page_ids(&control, query(all(), Some("rg 1"), None)).0,
        Vec::<String>::new(),
        "the authority filter does not look at the reference"
    );
    let paged = OrderQuery {
        offset: 2,
        limit: Some(2),
        ..OrderQuery::default()
    };
    assert_eq!(
        page_ids(&control, paged),
        (vec!["FR-1".into(), "IT-1".into()], 5)
    );
}

/// (event, count) pairs as the snapshot's labelled counts.
fn events(counts: &[(&str, u64)]) -> Vec<juris_control::api::LimitHitCount> {
    counts
        .iter()
        .map(|(event, count)| juris_control::api::LimitHitCount {
            limit: (*event).into(),
            count: *count,
        })
        .collect()
}

#[test]
fn upstream_tcp_counters_are_rendered_by_event() {
    let server = juris_control::ServerSnapshot {
        upstream_tcp: events(&[("opened", 2), ("reused", 5), ("pipelined", 3)]),
        ..Default::default()
    };
    let status = memory().status().unwrap();
    let text = juris_control::api::render_metrics(&server, &status);
    assert!(
        text.contains("# TYPE juris_upstream_tcp_total counter"),
        "{text}"
    );
    for line in [
        "juris_upstream_tcp_total{event=\"opened\"} 2",
        "juris_upstream_tcp_total{event=\"reused\"} 5",
        "juris_upstream_tcp_total{event=\"pipelined\"} 3",
    ] {
        assert!(text.contains(line), "{line} missing from\n{text}");
    }
}

#[test]
fn kernel_drop_counts_are_rendered() {
    let server = juris_control::ServerSnapshot {
        kernel_drop_prefixes: 3,
        kernel_drop: events(&[("added", 7), ("refused", 1)]),
        ..Default::default()
    };
    let status = memory().status().unwrap();
    let text = juris_control::api::render_metrics(&server, &status);
    for line in [
        "# TYPE juris_kernel_drop_prefixes gauge",
        "juris_kernel_drop_prefixes 3",
        "# TYPE juris_kernel_drop_total counter",
        "juris_kernel_drop_total{event=\"added\"} 7",
        "juris_kernel_drop_total{event=\"refused\"} 1",
    ] {
        assert!(text.contains(line), "{line} missing from\n{text}");
    }
}
