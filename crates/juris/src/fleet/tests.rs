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
