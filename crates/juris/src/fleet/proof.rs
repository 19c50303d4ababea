//! Provable enforcement (issue #12 item 3): which serial each follower has in force, and so
//! where each order is in force and since when.
//!
//! ```text
//!  XFR request (TCP or UDP), authenticated (TSIG, or an allow_unsigned source)
//!    ─► identify: a configured follower by its TSIG key name, else by its source address;
//!       otherwise an unconfigured node named after its key (or address)
//!    ─► IXFR: the serial in its SOA is what it has in force (a juris edge also sends one,
//!       over UDP, after every load that put a transfer in force: its report)
//!       AXFR, SOA: last seen only
//!  order X, its version first published at serial S: in force on a node whose serial ≥ S,
//!  since the first report of the run of reports ≥ S that continues to the last one
//!  kept on disk (DATA_DIR/fleet-followers.json, design 0043): each node's serials with when
//!  each was first seen, and each order's first serial with its document's hash; written
//!  when a node's serial changes and after a publish that changed an order, read at start
//! ```

use std::collections::{BTreeMap, VecDeque};
use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::sync::{Mutex, PoisonError};

use juris_control::{OrderFleet, OrderNode};
use serde::{Deserialize, Serialize};

use super::FleetSettings;

/// Serials remembered per node (for "since when").
const HISTORY: usize = 256;
/// Unconfigured nodes remembered at most.
const MAX_NODES: usize = 1024;

/// One `[fleet] followers` entry (or one `notify` address when there is no such list).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FollowerSpec {
    /// Shown in the status and the orders.
    pub name: String,
    /// The TSIG key it signs with (lower-case, absolute), which identifies it.
    pub key: Option<String>,
    /// Its source address, which identifies it when it has no key of its own.
    pub address: Option<IpAddr>,
}

/// A TSIG key name as compared here: lower-case, absolute.
pub fn normal_key_name(name: &str) -> String {
    let name = name.trim().to_ascii_lowercase();
    if name.ends_with('.') {
        name
    } else {
        format!("{name}.")
    }
}

#[derive(Debug, Default)]
struct Node {
    configured: bool,
    address: Option<IpAddr>,
    key: Option<String>,
    last_seen: Option<u64>,
    /// (serial, first seen at), oldest first; one entry per change of serial.
    history: VecDeque<(u32, u64)>,
}

impl Node {
    fn serial(&self) -> Option<(u32, u64)> {
        self.history.back().copied()
    }

    /// Whether serial `published` is in force here, and since when.
    fn has(&self, published: u32) -> (bool, Option<u64>) {
        let mut since = None;
        for &(serial, at) in self.history.iter().rev() {
            if !serial_ge(serial, published) {
                break;
            }
            since = Some(at);
        }
        (since.is_some(), since)
    }
}

/// RFC 1982 serial number arithmetic: `a` is `b` or later.
pub fn serial_ge(a: u32, b: u32) -> bool {
    a.wrapping_sub(b) < 0x8000_0000
}

/// The followers a primary knows of.
#[derive(Debug)]
pub struct Tracker {
    configured: Vec<FollowerSpec>,
    nodes: Mutex<BTreeMap<String, Node>>,
}

impl Tracker {
    /// The configured followers: `settings.followers`, else one per `notify` address.
    pub fn new(settings: &FleetSettings) -> Tracker {
        let configured: Vec<FollowerSpec> = if settings.followers.is_empty() {
            settings
                .notify
                .iter()
                .map(|address| FollowerSpec {
                    name: address.to_string(),
                    key: None,
                    address: Some(address.ip()),
                })
                .collect()
        } else {
            settings.followers.clone()
        };
        let nodes = configured
            .iter()
            .map(|spec| {
                let node = Node {
                    configured: true,
                    address: spec.address,
                    key: spec.key.clone(),
                    ..Node::default()
                };
                (spec.name.clone(), node)
            })
            .collect();
        Tracker {
            configured,
            nodes: Mutex::new(nodes),
        }
    }

    fn nodes(&self) -> std::sync::MutexGuard<'_, BTreeMap<String, Node>> {
        self.nodes.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// The node's name: the configured follower with this key (or, among those without a
    /// key, with this address); else the key's name, else the address.
    fn identify(&self, key: Option<&str>, source: IpAddr) -> (String, bool) {
        let by_key = key.and_then(|key| {
            self.configured
                .iter()
                .find(|spec| spec.key.as_deref() == Some(key))
        });
        let by_address = || {
            self.configured
                .iter()
                .find(|spec| spec.key.is_none() && spec.address == Some(source))
        };
        match by_key.or_else(by_address) {
            Some(spec) => (spec.name.clone(), true),
            None => (
                key.map_or_else(
                    || source.to_string(),
                    |k| k.trim_end_matches('.').to_owned(),
                ),
                false,
            ),
        }
    }

    /// An authenticated request from `source` signed with `key` (normalised name), with the
    /// serial it has in force when it says (IXFR), at `now` (Unix seconds). `true`: what is
    /// kept on disk changed (a new node, or a node's serial).
    pub fn seen(&self, key: Option<&str>, source: IpAddr, serial: Option<u32>, now: u64) -> bool {
        let (name, configured) = self.identify(key, source);
        let mut nodes = self.nodes();
        if !configured && !nodes.contains_key(&name) && nodes.len() >= MAX_NODES {
            return false;
        }
        let mut changed = !nodes.contains_key(&name);
        let node = nodes.entry(name).or_default();
        node.configured = configured;
        node.address = Some(source);
        if key.is_some() {
            node.key = key.map(ToOwned::to_owned);
        }
        node.last_seen = Some(now);
        if let Some(serial) = serial {
            if node.serial().map(|(s, _)| s) != Some(serial) {
                node.history.push_back((serial, now));
                while node.history.len() > HISTORY {
                    node.history.pop_front();
                }
                changed = true;
            }
        }
        changed
    }

    /// The nodes as kept on disk.
    pub fn saved(&self) -> BTreeMap<String, SavedNode> {
        self.nodes()
            .iter()
            .map(|(name, node)| {
                let saved = SavedNode {
                    address: node.address,
                    key: node.key.clone(),
                    last_seen: node.last_seen,
                    history: node.history.iter().copied().collect(),
                };
                (name.clone(), saved)
            })
            .collect()
    }

    /// Takes back what a previous run kept (at start): a configured follower gets its
    /// serials back under its configured name; a node no longer configured is shown as
    /// unconfigured (at most [`MAX_NODES`] of them).
    pub fn restore(&self, saved: BTreeMap<String, SavedNode>) {
        let mut nodes = self.nodes();
        for (name, saved) in saved {
            let configured = nodes.get(&name).is_some_and(|n| n.configured);
            if !configured && nodes.len() >= MAX_NODES {
                continue;
            }
            let node = nodes.entry(name).or_default();
            node.address = node.address.or(saved.address);
            node.key = node.key.take().or(saved.key);
            node.last_seen = saved.last_seen;
            node.history = saved
                .history
                .into_iter()
                .rev()
                .take(HISTORY)
                .rev()
                .collect();
        }
    }

    /// Every node for `/v1/status` (`fleet.followers`): name, serial in force and since when,
    /// last seen, whether it is at `current`.
    pub fn status(&self, current: u32, now: u64) -> Vec<serde_json::Value> {
        self.nodes()
            .iter()
            .map(|(name, node)| {
                let serial = node.serial();
                serde_json::json!({
                    "name": name,
                    "configured": u8::from(node.configured),
                    "key": node.key.as_deref().map(|k| k.trim_end_matches('.')),
                    "address": node.address.map(|a| a.to_string()),
                    "serial": serial.map(|(s, _)| s),
                    "serial_since": serial.map(|(_, t)| t),
                    "last_seen": node.last_seen,
                    "seen_seconds_ago": node.last_seen.map(|t| now.saturating_sub(t)),
                    "in_sync": u8::from(serial.is_some_and(|(s, _)| serial_ge(s, current))),
                })
            })
            .collect()
    }

    /// Configured followers not at `current` (not seen, or at an older serial).
    pub fn behind(&self, current: u32) -> usize {
        self.nodes()
            .values()
            .filter(|node| node.configured)
            .filter(|node| !node.serial().is_some_and(|(s, _)| serial_ge(s, current)))
            .count()
    }

    /// Where a version first published at `published` (serial, Unix time) is in force;
    /// `None`: not published (then no follower has it).
    pub fn order(&self, published: Option<(u32, u64)>) -> OrderFleet {
        let nodes = self.nodes();
        let mut missing = Vec::new();
        let mut out = Vec::new();
        for (name, node) in nodes.iter() {
            let (in_force, since) = match published {
                Some((serial, _)) => node.has(serial),
                None => (false, None),
            };
            if node.configured && !in_force {
                missing.push(name.clone());
            }
            out.push(OrderNode {
                name: name.clone(),
                configured: node.configured,
                in_force,
                since: since.and_then(timestamp),
                serial: node.serial().map(|(s, _)| s),
                last_seen: node.last_seen.and_then(timestamp),
            });
        }
        OrderFleet {
            serial: published.map(|(s, _)| s),
            published_at: published.and_then(|(_, t)| timestamp(t)),
            in_force_everywhere: missing.is_empty(),
            missing,
            nodes: out,
        }
    }
}

/// A node as kept on disk.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SavedNode {
    address: Option<IpAddr>,
    key: Option<String>,
    last_seen: Option<u64>,
    /// (serial, first seen at), oldest first.
    history: Vec<(u32, u64)>,
}

/// An order's first serial as kept on disk, with its document's content hash (a restart
/// keeps it for the same version only).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct SavedOrder {
    /// The content hash of the document (`orders::document_hash`).
    pub hash: u64,
    /// The serial that first carried this version.
    pub serial: u32,
    /// When (Unix seconds).
    pub published_at: u64,
}

/// What `fleet-followers.json` holds.
#[derive(Debug, Default, Serialize, Deserialize)]
pub struct Saved {
    /// By node name.
    #[serde(default)]
    pub nodes: BTreeMap<String, SavedNode>,
    /// By order id.
    #[serde(default)]
    pub orders: BTreeMap<String, SavedOrder>,
}

/// The proof of enforcement on disk: `DATA_DIR/fleet-followers.json`, so that a restarted
/// primary still shows which follower has which order in force, and since when.
#[derive(Debug)]
pub struct ProofFile {
    path: PathBuf,
}

/// The file's name in the data directory.
pub const PROOF_FILE: &str = "fleet-followers.json";

impl ProofFile {
    /// The file in `data_dir`.
    pub fn new(data_dir: &Path) -> ProofFile {
        ProofFile {
            path: data_dir.join(PROOF_FILE),
        }
    }

    /// What it holds; `None` when there is none or it is unusable (said at WARN: the
    /// followers are learnt again from their next requests).
    pub fn read(&self) -> Option<Saved> {
        let bytes = match std::fs::read(&self.path) {
            Ok(bytes) => bytes,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return None,
            Err(e) => {
                tracing::warn!(path = %self.path.display(), "fleet: the followers' state cannot be read (learnt again from their next requests): {e}");
                return None;
            }
        };
        match serde_json::from_slice(&bytes) {
            Ok(saved) => Some(saved),
            Err(e) => {
                tracing::warn!(path = %self.path.display(), "fleet: the followers' state is unusable, ignored (learnt again from their next requests): {e}");
                None
            }
        }
    }

    /// Writes `saved`: a temporary file, synced, renamed over the file, the directory synced.
    /// The caller runs one at a time.
    pub fn write(&self, saved: &Saved) -> std::io::Result<()> {
        use std::io::Write as _;
        let temporary = self.path.with_extension("json.tmp");
        let bytes = serde_json::to_vec(saved).map_err(std::io::Error::other)?;
        let mut file = std::fs::File::create(&temporary)?;
        file.write_all(&bytes)?;
        file.sync_all()?;
        drop(file);
        super::snapshot::replace(&temporary, &self.path)
    }
}

fn timestamp(unix: u64) -> Option<jiff::Timestamp> {
    jiff::Timestamp::from_second(i64::try_from(unix).ok()?).ok()
}

#[cfg(test)]
#[allow(clippy::unwrap_used, reason = "test code")]
mod tests {
    use super::*;

    fn settings(followers: Vec<FollowerSpec>) -> FleetSettings {
        FleetSettings {
            xfr_listen: None,
            zone_suffix: super::super::DEFAULT_ZONE_SUFFIX.to_owned(),
            notify: vec!["192.0.2.9:53".parse().unwrap()],
            allow_transfer: Vec::new(),
            allow_unsigned: Vec::new(),
            tsig_keys: Vec::new(),
            follow: None,
            followers,
        }
    }

    #[test]
    fn an_order_is_in_force_on_a_node_from_the_first_serial_that_carries_it() {
        let tracker = Tracker::new(&settings(vec![
            FollowerSpec {
                name: "edge-1".into(),
                key: Some("edge-1.".into()),
                address: None,
            },
            FollowerSpec {
                name: "edge-2".into(),
                key: None,
                address: Some("192.0.2.12".parse().unwrap()),
            },
        ]));
        let loopback: IpAddr = "127.0.0.1".parse().unwrap();
        tracker.seen(Some("edge-1."), loopback, Some(100), 1_000);
        tracker.seen(Some("edge-1."), loopback, Some(105), 1_005);
        tracker.seen(Some("edge-1."), loopback, Some(105), 1_009);
        tracker.seen(None, "192.0.2.12".parse().unwrap(), Some(104), 1_006);
        // Unconfigured: named after its key, not counted as missing.
        tracker.seen(Some("stranger."), loopback, Some(90), 1_007);

        let order = tracker.order(Some((103, 1_003)));
        assert_eq!(order.missing, Vec::<String>::new());
        assert!(order.in_force_everywhere);
        let edge1 = order.nodes.iter().find(|n| n.name == "edge-1").unwrap();
        assert!(edge1.in_force);
        assert_eq!(edge1.since, timestamp(1_005));
        assert_eq!(edge1.serial, Some(105));
        let stranger = order.nodes.iter().find(|n| n.name == "stranger").unwrap();
        assert!(!stranger.configured && !stranger.in_force);

        let newer = tracker.order(Some((105, 1_004)));
        assert_eq!(newer.missing, ["edge-2"]);
        assert!(!newer.in_force_everywhere);
        assert_eq!(tracker.behind(105), 1);

        // A node back at an older serial (restarted from an old snapshot) no longer has it.
        tracker.seen(Some("edge-1."), loopback, Some(101), 1_010);
        assert_eq!(tracker.order(Some((103, 1_003))).missing, ["edge-1"]);
        tracker.seen(Some("edge-1."), loopback, Some(106), 1_020);
        let again = tracker.order(Some((103, 1_003)));
        let edge1 = again.nodes.iter().find(|n| n.name == "edge-1").unwrap();
        assert_eq!(edge1.since, timestamp(1_020));

        // Not published: nobody has it.
        assert_eq!(tracker.order(None).missing, ["edge-1", "edge-2"]);
    }

    #[test]
    fn without_a_followers_list_the_notify_addresses_are_the_followers() {
        let tracker = Tracker::new(&settings(Vec::new()));
        assert_eq!(tracker.order(None).missing, ["192.0.2.9:53"]);
        tracker.seen(None, "192.0.2.9".parse().unwrap(), Some(7), 1);
        assert!(tracker.order(Some((7, 1))).in_force_everywhere);
        assert!(serial_ge(2, u32::MAX), "serial arithmetic wraps");
    }

    /// The state on disk reads back as written, a restored tracker gives the same per-order
    /// view, and a cut file (a torn write) is ignored, never half read.
    #[test]
    fn the_saved_state_reads_back_and_a_cut_file_is_ignored() {
        let spec = FollowerSpec {
            name: "edge-1".into(),
            key: Some("edge-1.".into()),
            address: None,
        };
        let tracker = Tracker::new(&settings(vec![spec.clone()]));
        let loopback: IpAddr = "127.0.0.1".parse().unwrap();
        assert!(tracker.seen(Some("edge-1."), loopback, Some(100), 1_000));
        assert!(!tracker.seen(Some("edge-1."), loopback, Some(100), 1_001));
        assert!(tracker.seen(Some("edge-1."), loopback, Some(105), 1_005));
        let dir = tempfile::tempdir().unwrap();
        let file = ProofFile::new(dir.path());
        assert!(file.read().is_none());
        let order = SavedOrder {
            hash: 7,
            serial: 100,
            published_at: 990,
        };
        let saved = Saved {
            nodes: tracker.saved(),
            orders: [("IT-1".to_owned(), order)].into(),
        };
        file.write(&saved).unwrap();
        let back = file.read().unwrap();
        assert_eq!((&back.nodes, &back.orders), (&saved.nodes, &saved.orders));
        let restarted = Tracker::new(&settings(vec![spec]));
        restarted.restore(back.nodes);
        assert_eq!(
            restarted.order(Some((100, 990))),
            tracker.order(Some((100, 990)))
        );
        assert_eq!(restarted.behind(105), 0);

        let path = dir.path().join(PROOF_FILE);
        let bytes = std::fs::read(&path).unwrap();
        for cut in 0..bytes.len() {
            std::fs::write(&path, &bytes[..cut]).unwrap();
            assert!(file.read().is_none(), "cut at {cut}");
        }
    }
}
