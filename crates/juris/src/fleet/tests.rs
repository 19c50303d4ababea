//! A publisher and followers on loopback, in process: AXFR, IXFR, the journal gap, TSIG
//! failures, a corrupt transfer, the snapshot.
#![allow(clippy::unwrap_used, clippy::expect_used, reason = "test code")]

use std::net::SocketAddr;
use std::sync::Arc;

use juris_policy::Order;

use super::follower::Follower;
use super::publisher::Publisher;
use super::zone::{self, rtype, Rr};
use super::{FleetSettings, TsigKey, DEFAULT_ZONE_SUFFIX};

fn order(id: &str, names: &[&str]) -> Arc<Order> {
    let targets: Vec<String> = names
        .iter()
        .map(|n| format!(r#"{{"type": "subtree", "value": "{n}"}}"#))
        .collect();
    let json = format!(
        r#"{{"id": "{id}", "kind": "court_order", "authority": "Tribunale di Milano",
        "jurisdictions": ["IT"], "action": "nxdomain", "state": "active",
        "targets": [{}]}}"#,
        targets.join(",")
    );
    Arc::new(Order::from_json(json.as_bytes()).unwrap())
}

fn settings(keys: Vec<TsigKey>) -> FleetSettings {
    FleetSettings {
        xfr_listen: Some("127.0.0.1:0".parse().unwrap()),
        zone_suffix: DEFAULT_ZONE_SUFFIX.to_owned(),
        notify: Vec::new(),
        allow_transfer: vec!["127.0.0.0/8".parse().unwrap()],
        allow_unsigned: Vec::new(),
        tsig_keys: keys,
        follow: None,
        followers: Vec::new(),
    }
}

struct Fixture {
    publisher: Arc<Publisher>,
    address: SocketAddr,
    key: TsigKey,
    data: tempfile::TempDir,
}

impl Fixture {
    fn new() -> Fixture {
        let key = TsigKey::generate("fleet-test", "").unwrap();
        let publisher = Arc::new(Publisher::new(&settings(vec![key.clone()])).unwrap());
        publisher.publish(vec![order("IT-1", &["kickasstorrents.to"])]);
        let address = publisher.start("127.0.0.1:0".parse().unwrap()).unwrap();
        Fixture {
            publisher,
            address,
            key,
            data: tempfile::tempdir().unwrap(),
        }
    }

    fn follower(&self, key: Option<TsigKey>) -> Follower {
        let mut settings = settings(key.into_iter().collect());
        settings.xfr_listen = None;
        settings.follow = Some(self.address);
        Follower::new(&settings, self.data.path()).unwrap()
    }

    fn ids(follower: &Follower) -> Vec<(String, usize)> {
        follower
            .orders()
            .unwrap_or_default()
            .iter()
            .map(|o| (o.id.clone(), o.targets.len()))
            .collect()
    }
}

#[test]
fn axfr_then_ixfr_then_a_journal_gap_falls_back_to_the_whole_zone() {
    let f = Fixture::new();
    let follower = f.follower(Some(f.key.clone()));
    assert!(
        follower.transfer_once().unwrap(),
        "the first transfer brings the order"
    );
    assert_eq!(Fixture::ids(&follower), [("IT-1".to_owned(), 1)]);
    assert_eq!(follower.status()["full_transfers"], 1);
    // Nothing new: up to date, nothing changes.
    assert!(!follower.transfer_once().unwrap());

    // One more name: an IXFR.
    let serial = f
        .publisher
        .publish(vec![order("IT-1", &["kickasstorrents.to", "mirror.test"])]);
    assert!(follower.transfer_once().unwrap());
    assert_eq!(Fixture::ids(&follower), [("IT-1".to_owned(), 2)]);
    let status = follower.status();
    assert_eq!(status["serial"], serial);
    assert_eq!(status["full_transfers"], 1, "{status}");
    assert_eq!(status["transfers"], 2, "{status}");

    // The journal no longer reaches back: the whole zone, in AXFR form.
    f.publisher.publish(vec![
        order("IT-1", &["kickasstorrents.to", "mirror.test"]),
        order("IT-2", &["other.test"]),
    ]);
    f.publisher.forget_journal();
    assert!(follower.transfer_once().unwrap());
    assert_eq!(
        Fixture::ids(&follower),
        [("IT-1".to_owned(), 2), ("IT-2".to_owned(), 1)]
    );
    assert_eq!(follower.status()["full_transfers"], 2);

    // The snapshot holds what is in force: a new follower starts from it.
    let restarted = f.follower(Some(f.key.clone()));
    assert!(restarted.load_snapshot().unwrap());
    assert_eq!(Fixture::ids(&restarted), Fixture::ids(&follower));
}

#[test]
fn a_wrong_key_and_an_unsigned_request_are_refused() {
    let f = Fixture::new();
    let wrong = TsigKey::new(
        "fleet-test",
        "hmac-sha256",
        &TsigKey::generate("x", "").unwrap().secret_base64(),
    )
    .unwrap();
    let error = f.follower(Some(wrong)).transfer_once().unwrap_err();
    assert!(
        error.contains("NOTAUTH") || error.contains("TSIG"),
        "{error}"
    );
    let unknown = TsigKey::generate("other-key", "").unwrap();
    let error = f.follower(Some(unknown)).transfer_once().unwrap_err();
    assert!(
        error.contains("NOTAUTH") || error.contains("TSIG"),
        "{error}"
    );
    let unsigned = f.follower(None);
    let error = unsigned.transfer_once().unwrap_err();
    assert!(error.contains("REFUSED"), "{error}");
    assert!(unsigned.orders().is_none());
}

#[test]
fn an_unsigned_transfer_is_served_only_to_an_allowed_prefix() {
    let mut open = settings(Vec::new());
    open.allow_unsigned = vec!["127.0.0.0/8".parse().unwrap()];
    let publisher = Arc::new(Publisher::new(&open).unwrap());
    publisher.publish(vec![order("IT-1", &["kickasstorrents.to"])]);
    let address = publisher.start("127.0.0.1:0".parse().unwrap()).unwrap();
    let data = tempfile::tempdir().unwrap();
    let mut edge = settings(Vec::new());
    edge.xfr_listen = None;
    edge.follow = Some(address);
    let follower = Follower::new(&edge, data.path()).unwrap();
    assert!(follower.transfer_once().unwrap());

    let mut closed = settings(Vec::new());
    closed.allow_unsigned = vec!["10.0.0.0/8".parse().unwrap()];
    let publisher = Arc::new(Publisher::new(&closed).unwrap());
    publisher.publish(vec![order("IT-1", &["kickasstorrents.to"])]);
    edge.follow = Some(publisher.start("127.0.0.1:0".parse().unwrap()).unwrap());
    let follower = Follower::new(&edge, data.path()).unwrap();
    assert!(follower.transfer_once().unwrap_err().contains("REFUSED"));
}

#[test]
fn a_corrupt_transfer_keeps_the_last_good_orders() {
    let f = Fixture::new();
    let follower = f.follower(Some(f.key.clone()));
    assert!(follower.transfer_once().unwrap());
    let apex = zone::orders_apex(DEFAULT_ZONE_SUFFIX);
    // A record that is not an order document, published like any change.
    f.publisher.inject(
        &apex,
        Rr {
            owner: format!("{}.{apex}", zone::order_label("IT-9")),
            rtype: rtype::TXT,
            rdata: [&[13u8][..], zone::ORDER_TAG, &[5], b"{oops"].concat(),
        },
    );
    let error = follower.transfer_once().unwrap_err();
    assert!(error.contains("corrupt transfer"), "{error}");
    assert_eq!(Fixture::ids(&follower), [("IT-1".to_owned(), 1)]);
    assert!(follower.status()["last_error"]
        .as_str()
        .unwrap()
        .contains("corrupt"));
}

// ---- provable enforcement ---------------------------------------------------------------

fn proof(publisher: &Publisher, id: &str) -> juris_control::OrderFleet {
    juris_control::FleetProof::order(publisher, id).unwrap()
}

/// What `juris serve` does on an edge after a transfer: the loader reads the orders, puts
/// them in force and the follower reports the serial.
fn enforce(follower: &Follower) {
    assert!(follower.hand_over().is_some());
    follower.loaded(true);
    follower.report().unwrap();
}

#[test]
fn the_primary_learns_which_serial_each_follower_enforces_and_where_each_order_is_in_force() {
    let (k1, k2) = (
        TsigKey::generate("edge-1", "").unwrap(),
        TsigKey::generate("edge-2", "").unwrap(),
    );
    let mut primary = settings(vec![k1.clone(), k2.clone()]);
    primary.followers = ["edge-1", "edge-2"]
        .iter()
        .map(|name| super::proof::FollowerSpec {
            name: format!("{name}-node"),
            key: Some(format!("{name}.")),
            address: None,
        })
        .collect();
    let publisher = Arc::new(Publisher::new(&primary).unwrap());
    let first = publisher.publish(vec![order("IT-1", &["kickasstorrents.to"])]);
    let address = publisher.start("127.0.0.1:0".parse().unwrap()).unwrap();
    let data = tempfile::tempdir().unwrap();
    let edge = |key: &TsigKey| {
        let mut settings = settings(vec![key.clone()]);
        settings.xfr_listen = None;
        settings.follow = Some(address);
        Follower::new(&settings, data.path()).unwrap()
    };
    let (edge1, edge2) = (edge(&k1), edge(&k2));

    let nobody = proof(&publisher, "IT-1");
    assert_eq!(nobody.serial, Some(first));
    assert_eq!(nobody.missing, ["edge-1-node", "edge-2-node"]);
    assert!(!nobody.in_force_everywhere);

    // edge-1 transfers (AXFR: no serial in force yet), enforces and reports. Not ready
    // (/readyz) until the loader has put a transfer in force.
    assert!(!edge1.readiness().0);
    assert!(edge1.transfer_once().unwrap());
    assert!(!edge1.readiness().0);
    assert_eq!(
        proof(&publisher, "IT-1").missing.len(),
        2,
        "a transfer is not enforcement"
    );
    enforce(&edge1);
    assert!(edge1.readiness().0, "{}", edge1.readiness().1);
    let one = proof(&publisher, "IT-1");
    assert_eq!(one.missing, ["edge-2-node"]);
    let node = one.nodes.iter().find(|n| n.name == "edge-1-node").unwrap();
    assert!(node.in_force && node.configured);
    assert_eq!(node.serial, Some(first));
    assert!(node.since.is_some() && node.last_seen.is_some());
    assert_eq!(edge1.status()["reports"], 1);

    assert!(edge2.transfer_once().unwrap());
    enforce(&edge2);
    assert!(proof(&publisher, "IT-1").in_force_everywhere);
    let status = publisher.status();
    assert_eq!(status["followers_behind"], 0, "{status}");
    assert_eq!(status["followers"][0]["in_sync"], 1, "{status}");

    // A new version of IT-1 is in force nowhere until each follower reports it; IT-2
    // (unchanged) stays in force where it was.
    publisher.publish(vec![
        order("IT-1", &["kickasstorrents.to", "mirror.test"]),
        order("IT-2", &["other.test"]),
    ]);
    let second = publisher.publish(vec![
        order("IT-1", &["kickasstorrents.to", "mirror.test", "third.test"]),
        order("IT-2", &["other.test"]),
    ]);
    assert_eq!(proof(&publisher, "IT-1").serial, Some(second));
    assert!(proof(&publisher, "IT-2").serial < Some(second));
    assert_eq!(proof(&publisher, "IT-1").missing.len(), 2);
    assert_eq!(publisher.status()["followers_behind"], 2);
    assert!(edge1.transfer_once().unwrap(), "IXFR");
    enforce(&edge1);
    let now = proof(&publisher, "IT-1");
    assert_eq!(now.missing, ["edge-2-node"]);
    // An unknown order: published nowhere.
    assert_eq!(proof(&publisher, "NOPE").serial, None);
    assert_eq!(proof(&publisher, "NOPE").missing.len(), 2);
}

/// The TSIG error of a response (RFC 8945 §4.2: after the MAC and the original ID).
fn tsig_error(response: &[u8]) -> Option<u16> {
    let message = domain::base::Message::from_octets(response.to_vec()).ok()?;
    let rdata = super::wire::tsig_rdata(&message)?;
    let mut at = 0;
    while *rdata.get(at)? != 0 {
        at += usize::from(rdata[at]) + 1;
    }
    at += 1 + 6 + 2;
    let mac = usize::from(u16::from_be_bytes([*rdata.get(at)?, *rdata.get(at + 1)?]));
    at += 2 + mac + 2;
    Some(u16::from_be_bytes([*rdata.get(at)?, *rdata.get(at + 1)?]))
}

fn rcode(response: &[u8]) -> u8 {
    response[3] & 0x0f
}

#[test]
fn a_request_signed_outside_the_fudge_gets_badtime_and_an_identical_replay_is_refused() {
    let f = Fixture::new();
    let key = f.key.key().unwrap();
    let apex = zone::orders_apex(DEFAULT_ZONE_SUFFIX);
    let loopback = "127.0.0.1".parse().unwrap();
    let at = |seconds: u64| {
        super::wire::request_at(
            &apex,
            Some(1),
            Some(&key),
            DEFAULT_ZONE_SUFFIX,
            domain::rdata::tsig::Time48::from_u64(seconds),
        )
        .unwrap()
        .0
    };
    // 1000 s off: outside the 300 s fudge.
    let stale = f
        .publisher
        .answer(at(super::unix_now() - 1000), loopback, true);
    assert_eq!(rcode(&stale[0]), 9, "NOTAUTH");
    assert_eq!(tsig_error(&stale[0]), Some(18), "BADTIME");

    // Within the fudge: served once; the identical request again is refused, also with
    // another message ID (the MAC covers the original ID, not the header's).
    let fresh = at(super::unix_now() - 100);
    let served = f.publisher.answer(fresh.clone(), loopback, true);
    assert_eq!(rcode(&served[0]), 0);
    assert!(served.len() == 1 && tsig_error(&served[0]) == Some(0));
    let replayed = f.publisher.answer(fresh.clone(), loopback, true);
    assert_eq!(rcode(&replayed[0]), 5, "REFUSED");
    let mut other_id = fresh;
    other_id[0] ^= 0xff;
    assert_eq!(rcode(&f.publisher.answer(other_id, loopback, true)[0]), 5);
    // A replay is not a sighting of the follower.
    assert_eq!(f.publisher.status()["followers"][0]["serial"], 1);
}

// ---- faults -----------------------------------------------------------------------------

/// A primary that dies mid-transfer: relays the real primary's answer, cut after the first
/// message (first connection), in the middle of a message (second), whole afterwards.
fn cutting_proxy(primary: SocketAddr) -> SocketAddr {
    use std::io::Write;
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let address = listener.local_addr().unwrap();
    std::thread::spawn(move || {
        for (n, client) in listener.incoming().enumerate() {
            let mut client = client.unwrap();
            let request = super::wire::read_framed(&mut client).unwrap();
            let mut upstream = std::net::TcpStream::connect(primary).unwrap();
            super::wire::write_framed(&mut upstream, &request).unwrap();
            let first = super::wire::read_framed(&mut upstream).unwrap();
            match n {
                0 => super::wire::write_framed(&mut client, &first).unwrap(),
                1 => {
                    let len = u16::try_from(first.len()).unwrap().to_be_bytes();
                    client.write_all(&len).unwrap();
                    client.write_all(&first[..first.len() / 2]).unwrap();
                }
                _ => {
                    // Both ways until the follower hangs up.
                    super::wire::write_framed(&mut client, &first).unwrap();
                    let (mut down, mut to_client) =
                        (upstream.try_clone().unwrap(), client.try_clone().unwrap());
                    std::thread::spawn(move || std::io::copy(&mut down, &mut to_client));
                    let _ = std::io::copy(&mut client, &mut upstream);
                    let _ = upstream.shutdown(std::net::Shutdown::Both);
                }
            }
            // Dropped: the connection closes.
        }
    });
    address
}

#[test]
fn a_primary_killed_during_a_transfer_leaves_the_last_good_orders_and_the_next_ixfr_resumes() {
    let f = Fixture::new();
    let mut settings = settings(vec![f.key.clone()]);
    settings.xfr_listen = None;
    settings.follow = Some(cutting_proxy(f.address));
    // The first transfer goes straight to the primary (small: one message).
    let direct = f.follower(Some(f.key.clone()));
    assert!(direct.transfer_once().unwrap());
    drop(direct);
    let follower = Follower::new(&settings, f.data.path()).unwrap();
    assert!(follower.load_snapshot().unwrap());
    let before = Fixture::ids(&follower);

    // A change big enough for an IXFR of several messages.
    let names: Vec<String> = (0..600).map(|i| format!("mirror-{i:04}.example")).collect();
    let names: Vec<&str> = names.iter().map(String::as_str).collect();
    let serial = f.publisher.publish(vec![order("IT-1", &names)]);
    for cut in ["after the first message", "in the middle of a message"] {
        let error = follower.transfer_once().unwrap_err();
        assert!(error.contains("cut short"), "{cut}: {error}");
        assert_eq!(
            Fixture::ids(&follower),
            before,
            "{cut}: the last good orders stay"
        );
        assert_ne!(follower.status()["serial"], serial);
    }
    // The primary is back: the transfer resumes from the serial in force, by IXFR.
    assert!(follower.transfer_once().unwrap());
    assert_eq!(Fixture::ids(&follower), [("IT-1".to_owned(), 600)]);
    let status = follower.status();
    assert_eq!(status["serial"], serial);
    assert_eq!(status["full_transfers"], 0, "resumed by IXFR: {status}");
}

#[test]
fn a_full_disk_when_writing_the_snapshot_keeps_the_policy_and_says_so() {
    let f = Fixture::new();
    // The snapshot's temporary file leads to /dev/full: every write fails with ENOSPC.
    let temporary = f
        .data
        .path()
        .join(super::follower::SNAPSHOT_FILE)
        .with_extension("json.tmp");
    std::os::unix::fs::symlink("/dev/full", &temporary).unwrap();
    let follower = f.follower(Some(f.key.clone()));
    assert!(follower.transfer_once().unwrap(), "the transfer is applied");
    assert_eq!(Fixture::ids(&follower), [("IT-1".to_owned(), 1)]);
    let status = follower.status();
    let error = status["snapshot_error"].as_str().unwrap_or_default();
    assert!(error.contains("No space left on device"), "{status}");
    assert_eq!(status["snapshot_ok"], 0);
    assert!(status["last_error"].is_null(), "{status}");
    assert!(!f.data.path().join(super::follower::SNAPSHOT_FILE).exists());
    // Space again: the next transfer writes it.
    f.publisher
        .publish(vec![order("IT-1", &["kickasstorrents.to", "mirror.test"])]);
    assert!(follower.transfer_once().unwrap());
    assert_eq!(follower.status()["snapshot_ok"], 1);
    assert!(f.data.path().join(super::follower::SNAPSHOT_FILE).exists());
}

#[test]
fn a_restarted_primary_keeps_its_serial_and_serves_deltas_from_before_the_restart() {
    let key = TsigKey::generate("fleet-test", "").unwrap();
    let data = tempfile::tempdir().unwrap();
    let primary = |orders: Vec<Arc<Order>>| {
        let publisher = Arc::new(Publisher::new(&settings(vec![key.clone()])).unwrap());
        publisher.persist_to(data.path());
        let serial = publisher.publish(orders);
        (publisher, serial)
    };
    let (first, s1) = primary(vec![order("IT-1", &["kickasstorrents.to"])]);
    let address = first.start("127.0.0.1:0".parse().unwrap()).unwrap();
    let mut follow = settings(vec![key.clone()]);
    follow.xfr_listen = None;
    follow.follow = Some(address);
    let follower_data = tempfile::tempdir().unwrap();
    let follower = Follower::new(&follow, follower_data.path()).unwrap();
    assert!(follower.transfer_once().unwrap());
    assert_eq!(follower.status()["serial"], s1);
    let s2 = first.publish(vec![order("IT-1", &["kickasstorrents.to", "mirror.test"])]);
    assert_ne!(s1, s2);
    drop(first);

    // The same orders after a restart: the same serial, and the journal reaches back to s1.
    let (second, again) = primary(vec![order("IT-1", &["kickasstorrents.to", "mirror.test"])]);
    assert_eq!(again, s2);
    let address = second.start("127.0.0.1:0".parse().unwrap()).unwrap();
    follow.follow = Some(address);
    let behind = Follower::new(&follow, follower_data.path()).unwrap();
    assert!(behind.load_snapshot().unwrap());
    assert!(behind.transfer_once().unwrap());
    assert_eq!(Fixture::ids(&behind), [("IT-1".to_owned(), 2)]);
    let status = behind.status();
    assert_eq!(status["serial"], s2);
    assert_eq!(status["full_transfers"], 0, "an IXFR: {status}");
    drop(second);

    // Other orders after a restart: the serial moves on past the journal's.
    let (third, s3) = primary(vec![order("IT-1", &["other.test"])]);
    assert!(
        s3 != s2 && super::proof::serial_ge(s3, s2),
        "{s3} after {s2}"
    );
    drop(third);
}

/// An order of `names` for `countries` (`windows`: a JSON list, or empty).
fn order_for(id: &str, countries: &str, names: &[&str], extra: &str) -> Arc<Order> {
    let targets: Vec<String> = names
        .iter()
        .map(|n| format!(r#"{{"type": "domain", "value": "{n}"}}"#))
        .collect();
    let json = format!(
        r#"{{"id": "{id}", "kind": "court_order", "authority": "T",
        "jurisdictions": {countries}, "action": "nxdomain", "state": "active"{extra},
        "targets": [{}]}}"#,
        targets.join(",")
    );
    Arc::new(Order::from_json(json.as_bytes()).unwrap())
}

/// Publishes that exercise the incremental publisher: shared names, new/changed/gone orders,
/// global, expired, lifted, an extension without its parent, back to nothing.
fn incremental_steps() -> Vec<Vec<Arc<Order>>> {
    let shared = ["shared.test", "a.test"];
    vec![
        // Two orders share a name: it stays while either has it.
        vec![
            order_for("IT-1", r#"["IT"]"#, &shared, ""),
            order_for("IT-2", r#"["IT", "DE"]"#, &["shared.test", "b.test"], ""),
        ],
        // One name more (one order changes), one order's name gone.
        vec![
            order_for(
                "IT-1",
                r#"["IT"]"#,
                &["shared.test", "a.test", "c.test"],
                "",
            ),
            order_for("IT-2", r#"["IT", "DE"]"#, &["b.test"], ""),
        ],
        // An order gone; a global one, an expired one, a lifted one.
        vec![
            order_for("IT-1", r#"["IT"]"#, &["shared.test", "c.test"], ""),
            order_for("ALL-1", r#"["*"]"#, &["g.test", "shared.test"], ""),
            order_for(
                "OLD-1",
                r#"["IT"]"#,
                &["old.test"],
                r#", "expires_at": "2001-01-01T00:00:00Z""#,
            ),
            {
                let mut lifted = Order::clone(&order_for("IT-3", r#"["IT"]"#, &["l.test"], ""));
                lifted.state = juris_policy::OrderState::Lifted;
                Arc::new(lifted)
            },
            // An extension of an order not in force: not in the RPZ zones.
            order_for(
                "EXT-1",
                r#"["IT"]"#,
                &["ext.test"],
                r#", "parent": "OLD-1""#,
            ),
        ],
        // Back to nothing.
        vec![],
    ]
}

/// The publisher's zones, changed order by order, are the zones a whole build makes of the
/// same orders, after every publish; a follower applying the IXFRs in place holds the same
/// orders as one decoding the whole zone.
#[test]
fn incremental_publishes_make_the_zones_of_a_whole_build_and_ixfr_applies_in_place() {
    let f = Fixture::new();
    let follower = f.follower(Some(f.key.clone()));
    assert!(follower.transfer_once().unwrap());
    for orders in incremental_steps() {
        let serial = f.publisher.publish(orders.clone());
        let now = jiff::Timestamp::now();
        let keep: std::collections::BTreeSet<String> = f
            .publisher
            .zone_names()
            .into_iter()
            .filter(|apex| !apex.starts_with("orders."))
            .collect();
        let whole = zone::rpz_zones(DEFAULT_ZONE_SUFFIX, &orders, now, &keep);
        for (apex, records) in &whole {
            assert_eq!(f.publisher.records(apex).as_ref(), Some(records), "{apex}");
        }
        let (metadata, _) = zone::orders_zone(DEFAULT_ZONE_SUFFIX, &orders);
        let apex = zone::orders_apex(DEFAULT_ZONE_SUFFIX);
        assert_eq!(f.publisher.records(&apex), Some(metadata.clone()));
        assert_eq!(f.publisher.zone_names().len(), whole.len() + 1);
        // The follower, by IXFR, decodes what a whole decode gives.
        follower.transfer_once().unwrap();
        let status = follower.status();
        assert_eq!(status["serial"], serial);
        assert_eq!(status["full_transfers"], 1, "IXFR each time: {status}");
        let want: Vec<Order> = zone::decode_orders(&apex, &metadata).unwrap();
        let got: Vec<Order> = follower
            .orders()
            .unwrap()
            .iter()
            .map(|o| Order::clone(o))
            .collect();
        assert_eq!(got, want);
    }
}

/// A snapshot of the first version (JSON, data in hex) is still read.
#[test]
fn a_snapshot_of_the_first_version_is_still_read() {
    let f = Fixture::new();
    let (records, _) = zone::orders_zone(DEFAULT_ZONE_SUFFIX, &[order("IT-1", &["old.test"])]);
    let records: Vec<(String, u16, String)> = records
        .iter()
        .map(|rr| {
            let hex: String = rr.rdata.iter().map(|b| format!("{b:02x}")).collect();
            (rr.owner.clone(), rr.rtype, hex)
        })
        .collect();
    let v1 = serde_json::json!({
        "primary": f.address.to_string(),
        "zone": zone::orders_apex(DEFAULT_ZONE_SUFFIX),
        "serial": 7,
        "written_at": 1,
        "records": records,
    });
    std::fs::write(
        f.data.path().join(super::follower::SNAPSHOT_FILE),
        v1.to_string(),
    )
    .unwrap();
    let follower = f.follower(Some(f.key.clone()));
    assert!(follower.load_snapshot().unwrap());
    assert_eq!(Fixture::ids(&follower), [("IT-1".to_owned(), 1)]);
    assert_eq!(follower.status()["serial"], 7);
    // A truncated snapshot of the current version is refused, naming the file.
    follower.transfer_once().unwrap();
    let path = f.data.path().join(super::follower::SNAPSHOT_FILE);
    let bytes = std::fs::read(&path).unwrap();
    std::fs::write(&path, &bytes[..bytes.len() - 3]).unwrap();
    let error = f.follower(Some(f.key.clone())).load_snapshot().unwrap_err();
    assert!(
        error.contains("not a snapshot") && error.contains("truncated"),
        "{error}"
    );
}

/// The incremental publisher keeps the journal file's zone digests per changed record: after
/// every publish they are those of the whole zones, and a restart with the same orders keeps
/// the serial.
#[test]
fn incremental_publishes_keep_the_zone_digests_of_the_journal_file() {
    let key = TsigKey::generate("fleet-test", "").unwrap();
    let data = tempfile::tempdir().unwrap();
    let primary = || {
        let publisher = Publisher::new(&settings(vec![key.clone()])).unwrap();
        publisher.persist_to(data.path());
        publisher
    };
    let publisher = primary();
    publisher.publish(vec![order("IT-1", &["kickasstorrents.to"])]);
    let mut last = (0, Vec::new());
    for orders in incremental_steps() {
        let serial = publisher.publish(orders.clone());
        let digests = publisher.digests();
        assert_eq!(
            digests.keys().collect::<Vec<_>>(),
            publisher.zone_names().iter().collect::<Vec<_>>()
        );
        for (apex, digest) in &digests {
            let records = publisher.records(apex).unwrap();
            assert_eq!(*digest, super::journal_file::digest(&records), "{apex}");
        }
        last = (serial, orders);
    }
    drop(publisher);
    let restarted = primary();
    assert_eq!(restarted.publish(last.1), last.0);
}

/// An order with every kind of target (names, prefixes, name servers).
fn every_kind(id: &str, names: &[&str]) -> Arc<Order> {
    let mut targets: Vec<String> = names
        .iter()
        .map(|n| format!(r#"{{"type": "subtree", "value": "{n}"}}"#))
        .collect();
    targets.extend([
        r#"{"type": "domain", "value": "WWW.Bücher.example", "evidence": "report 7"}"#.to_owned(),
        r#"{"type": "ip", "value": "192.0.2.0/24"}"#.to_owned(),
        r#"{"type": "ip", "value": "2001:db8::1"}"#.to_owned(),
        r#"{"type": "nsdname", "value": "ns1.bad-dns.example"}"#.to_owned(),
        r#"{"type": "nsip", "value": "198.51.100.7"}"#.to_owned(),
    ]);
    let json = format!(
        r#"{{"id": "{id}", "kind": "court_order", "authority": "Tribunale di Milano",
        "jurisdictions": ["IT"], "action": "nxdomain", "state": "active", "block_addresses": true,
        "targets": [{}]}}"#,
        targets.join(",")
    );
    Arc::new(Order::from_json(json.as_bytes()).unwrap())
}

/// An edge's loader reading `follower`, and the handle it publishes to.
fn edge_loader(
    follower: &Arc<Follower>,
) -> (crate::orders::OrderLoader, Arc<juris_server::PolicyHandle>) {
    let handle = Arc::new(juris_server::PolicyHandle::new(
        juris_policy::CompiledPolicy::empty(),
    ));
    let loader = crate::orders::OrderLoader::new(
        vec![Box::new(crate::orders::FleetSource::new(Arc::clone(
            follower,
        )))],
        crate::orders::Safeguards::new(juris_control::ProtectedList::defaults()),
        Arc::clone(&handle),
    );
    (loader, handle)
}

fn blocked(handle: &juris_server::PolicyHandle, name: &str) -> bool {
    let wire = juris_policy::name_to_wire(name).unwrap();
    let italy = "IT".parse().unwrap();
    handle
        .current()
        .check_name(&wire, Some(italy), juris_policy::Timestamp::now())
        .is_block()
}

/// Design 0043: a restart reads the snapshot's validated orders (the same as validating the
/// transferred documents), compiles them without validating again, then reads the records on
/// the follower's side and resumes by IXFR from the snapshot's serial.
#[test]
fn a_restart_from_the_snapshots_validated_orders_enforces_the_transferred_policy_and_resumes_by_ixfr(
) {
    let f = Fixture::new();
    let s1 = f.publisher.publish(vec![
        every_kind("IT-1", &["kickasstorrents.to"]),
        order("IT-2", &["other.test"]),
    ]);
    let first = Arc::new(f.follower(Some(f.key.clone())));
    assert!(first.transfer_once().unwrap());
    let (mut loader, _) = edge_loader(&first);
    assert!(loader.load(super::unix_now()).unwrap().rejected.is_empty());
    let transferred: Vec<Arc<Order>> = first.orders().unwrap().to_vec();
    drop(loader);
    drop(first);

    // The round trip: what the snapshot hands over is what validating the transfer gives.
    let probe = f.follower(Some(f.key.clone()));
    assert!(probe.start_from_snapshot().unwrap());
    let Some(super::follower::Handed::Validated(validated)) = probe.hand_over() else {
        panic!("the validated orders are handed over first")
    };
    let expected: Vec<(u64, juris_policy::ValidatedOrder)> = transferred
        .iter()
        .map(|doc| {
            let id = crate::orders::SourceId::Fleet {
                order: doc.id.clone(),
            };
            let content = crate::orders::document_hash(doc).unwrap();
            let valid = crate::orders::Safeguards::validate_document(&id, doc).unwrap();
            (content, valid)
        })
        .collect();
    assert_eq!(validated, expected);
    assert!(matches!(
        probe.hand_over(),
        Some(super::follower::Handed::Unchanged(ids)) if ids == ["IT-1", "IT-2"]
    ));

    // The restarted edge enforces it, nothing validated again, the records not read yet.
    let edge = Arc::new(f.follower(Some(f.key.clone())));
    assert!(edge.start_from_snapshot().unwrap());
    let (mut loader, handle) = edge_loader(&edge);
    let loaded = loader.load(super::unix_now()).unwrap();
    assert!(loaded.published && loaded.rejected.is_empty());
    assert_eq!(loaded.validated, 0, "taken as validated");
    assert!(blocked(&handle, "www.kickasstorrents.to"));
    assert!(blocked(&handle, "www.xn--bcher-kva.example"));
    assert!(blocked(&handle, "other.test"));
    assert!(!blocked(&handle, "elsewhere.test"));
    let status = edge.status();
    assert_eq!(status["serial"], s1);
    assert_eq!(status["origin"], "snapshot");
    assert!(edge.orders().is_none(), "the documents are decoded later");
    // A load before the records are read keeps the orders (told unchanged).
    let again = loader.load(super::unix_now()).unwrap();
    assert!(!again.published && again.rejected.is_empty(), "{again:?}");
    assert!(blocked(&handle, "www.kickasstorrents.to"));

    // A change on the primary: the edge reads its records, then an IXFR from s1.
    let s2 = f.publisher.publish(vec![
        every_kind("IT-1", &["kickasstorrents.to", "mirror.test"]),
        order("IT-2", &["other.test"]),
    ]);
    assert!(edge.transfer_once().unwrap());
    let status = edge.status();
    assert_eq!(status["serial"], s2);
    assert_eq!(status["full_transfers"], 0, "resumed by IXFR: {status}");
    let loaded = loader.load(super::unix_now()).unwrap();
    assert!(loaded.published && loaded.rejected.is_empty());
    assert_eq!(loaded.validated, 1, "only the changed order is validated");
    assert!(blocked(&handle, "mirror.test"));
    assert!(blocked(&handle, "other.test"));

    // The snapshot now holds s2, validated orders included.
    let next = f.follower(Some(f.key.clone()));
    assert!(next.start_from_snapshot().unwrap());
    assert_eq!(next.status()["serial"], s2);
}

/// The snapshot's bytes as written, and where its footer starts.
fn snapshot_bytes(f: &Fixture) -> (Vec<u8>, usize) {
    let bytes = std::fs::read(f.data.path().join(super::follower::SNAPSHOT_FILE)).unwrap();
    let tail = b"\nJURIS-END3\n".len() + 4;
    let at = bytes.len() - tail;
    let length = u32::from_be_bytes(bytes[at..at + 4].try_into().unwrap()) as usize;
    (bytes, at - length)
}

/// Design 0043: a damaged, cut, older or foreign snapshot's validated orders are refused with
/// the reason; the records (when they are sound) or the primary serve instead; a cut file is
/// refused whole.
#[test]
fn a_corrupt_truncated_old_or_foreign_snapshot_is_refused_with_its_reason_and_the_edge_still_starts(
) {
    let f = Fixture::new();
    let writer = f.follower(Some(f.key.clone()));
    assert!(writer.transfer_once().unwrap());
    let path = f.data.path().join(super::follower::SNAPSHOT_FILE);
    let (good, footer_at) = snapshot_bytes(&f);
    let refused = |bytes: &[u8], why: &str| -> Follower {
        std::fs::write(&path, bytes).unwrap();
        let follower = f.follower(Some(f.key.clone()));
        let error = follower.start_from_snapshot().unwrap_err();
        assert!(error.contains(why), "{why}: {error}");
        assert!(error.contains(super::follower::SNAPSHOT_FILE), "{error}");
        follower
    };

    // A byte of the validated orders changed: refused; the records still serve.
    let mut flipped = good.clone();
    flipped[b"JURIS-FLEET-SNAPSHOT 3\n".len() + 12] ^= 0x20;
    let follower = refused(&flipped, "fails its checksum");
    assert!(follower.load_snapshot().unwrap());
    assert_eq!(Fixture::ids(&follower), [("IT-1".to_owned(), 1)]);

    // Cut anywhere (a torn write): refused whole; the primary serves.
    for cut in [good.len() - 1, footer_at + 3, good.len() / 2, 40, 30] {
        let follower = refused(&good[..cut], "truncated");
        let error = follower.load_snapshot().unwrap_err();
        assert!(error.contains("truncated"), "{cut}: {error}");
        assert!(follower.transfer_once().unwrap());
        assert_eq!(follower.status()["full_transfers"], 1);
    }

    // Every cut, byte by byte: neither the validated orders nor the records are taken.
    for cut in 0..good.len() {
        std::fs::write(&path, &good[..cut]).unwrap();
        let follower = f.follower(Some(f.key.clone()));
        assert!(follower.start_from_snapshot().is_err(), "cut at {cut}");
        assert!(follower.load_snapshot().is_err(), "cut at {cut}");
    }

    // The previous format (records only): no validated orders, its records serve.
    let (records, _) = zone::orders_zone(DEFAULT_ZONE_SUFFIX, &[order("IT-1", &["old.test"])]);
    let mut v2 = b"JURIS-FLEET-SNAPSHOT 2\n".to_vec();
    let header = serde_json::json!({"primary": f.address.to_string(),
        "zone": zone::orders_apex(DEFAULT_ZONE_SUFFIX), "serial": 7, "written_at": 1,
        "records": records.len()});
    v2.extend_from_slice(format!("{header}\n").as_bytes());
    for rr in &records {
        v2.push(rr.owner.len() as u8);
        v2.extend_from_slice(rr.owner.as_bytes());
        v2.extend_from_slice(&rr.rtype.to_be_bytes());
        v2.extend_from_slice(&(rr.rdata.len() as u16).to_be_bytes());
        v2.extend_from_slice(&rr.rdata);
    }
    let follower = refused(&v2, "older format");
    assert!(follower.load_snapshot().unwrap());
    assert_eq!(follower.status()["serial"], 7);

    // Validated by another build, or written for another primary: refused.
    let apex = zone::orders_apex(DEFAULT_ZONE_SUFFIX);
    let other = super::snapshot::Orders {
        rules: "another build",
        entries: Vec::new(),
    };
    super::snapshot::write(&path, f.address, &apex, 8, &records, Some(&other)).unwrap();
    refused(&std::fs::read(&path).unwrap(), "another build of juris");
    let rules = super::snapshot::Orders {
        rules: super::snapshot::rules().unwrap(),
        entries: Vec::new(),
    };
    let elsewhere: SocketAddr = "127.0.0.1:9".parse().unwrap();
    super::snapshot::write(&path, elsewhere, &apex, 8, &records, Some(&rules)).unwrap();
    refused(
        &std::fs::read(&path).unwrap(),
        "written for the primary 127.0.0.1:9",
    );

    // The records damaged, the validated orders sound: the start uses the validated orders;
    // the records are found unusable before the first transfer, which is then a whole zone.
    let mut damaged = good.clone();
    damaged[footer_at - 3] ^= 0x20;
    std::fs::write(&path, &damaged).unwrap();
    let follower = f.follower(Some(f.key.clone()));
    assert!(follower.start_from_snapshot().unwrap());
    assert!(follower.transfer_once().unwrap());
    let status = follower.status();
    assert_eq!(status["full_transfers"], 1, "{status}");
    assert_eq!(Fixture::ids(&follower), [("IT-1".to_owned(), 1)]);
    // And it wrote a sound snapshot again.
    assert!(f
        .follower(Some(f.key.clone()))
        .start_from_snapshot()
        .unwrap());
}

/// Design 0043: the proof of enforcement is kept on disk (`fleet-followers.json`): a
/// restarted primary (same data directory, same orders) shows per order the nodes where it
/// is in force, their serial and since when, before any follower asks again.
#[test]
fn a_restarted_primary_still_shows_where_each_order_is_in_force_and_since_when() {
    let key = TsigKey::generate("edge-1", "").unwrap();
    let mut primary = settings(vec![key.clone()]);
    primary.followers = vec![super::proof::FollowerSpec {
        name: "edge-1-node".into(),
        key: Some("edge-1.".into()),
        address: None,
    }];
    let data = tempfile::tempdir().unwrap();
    let start = |orders: Vec<Arc<Order>>| {
        let publisher = Arc::new(Publisher::new(&primary).unwrap());
        publisher.persist_to(data.path());
        publisher.publish(orders);
        publisher
    };
    let first = start(vec![
        order("IT-1", &["kickasstorrents.to"]),
        order("IT-2", &["other.test"]),
    ]);
    let address = first.start("127.0.0.1:0".parse().unwrap()).unwrap();
    let edge_data = tempfile::tempdir().unwrap();
    let mut follow = settings(vec![key.clone()]);
    follow.xfr_listen = None;
    follow.follow = Some(address);
    let edge = Follower::new(&follow, edge_data.path()).unwrap();
    assert!(edge.transfer_once().unwrap());
    enforce(&edge);
    let before = proof(&first, "IT-1");
    assert!(before.in_force_everywhere, "{before:?}");
    assert!(before.nodes[0].since.is_some());
    // The proof's thread writes the change (polled: it runs beside this test).
    let file = super::proof::ProofFile::new(data.path());
    let written = || {
        file.read().is_some_and(|saved| {
            saved.orders.contains_key("IT-1")
                && saved.nodes.get("edge-1-node").is_some_and(|n| {
                    serde_json::to_value(n).unwrap()["history"]
                        .as_array()
                        .is_some_and(|h| !h.is_empty())
                })
        })
    };
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    while !written() {
        assert!(
            std::time::Instant::now() < deadline,
            "the proof was not written"
        );
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    drop(first);

    // Restarted with the same orders; nobody has asked it anything yet.
    let second = start(vec![
        order("IT-1", &["kickasstorrents.to"]),
        order("IT-2", &["other.test"]),
    ]);
    assert_eq!(proof(&second, "IT-1"), before);
    assert!(proof(&second, "IT-2").in_force_everywhere);
    let status = second.status();
    assert_eq!(status["followers"][0]["name"], "edge-1-node", "{status}");
    assert_eq!(status["followers"][0]["in_sync"], 1, "{status}");

    // A new version of IT-1 after the restart is in force nowhere until reported; IT-2
    // keeps its serial and nodes.
    second.publish(vec![
        order("IT-1", &["kickasstorrents.to", "mirror.test"]),
        order("IT-2", &["other.test"]),
    ]);
    assert_eq!(proof(&second, "IT-1").missing, ["edge-1-node"]);
    assert!(proof(&second, "IT-2").in_force_everywhere);
}
