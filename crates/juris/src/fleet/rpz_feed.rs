//! Third-party RPZ feeds (`[[fleet.rpz_feed]]`): a vendor's or a regulator's RPZ zone,
//! transferred over AXFR/IXFR (TSIG optional) and mapped onto one order with the
//! jurisdictions, kind and notice the operator configures, so that its names get juris's
//! EDE, explanations and counters. The order goes through the same loader path as every
//! other order ([`RpzFeedSource`](crate::orders::RpzFeedSource)).
//!
//! ```text
//!  start: AXFR (bounded wait)           thread juris-rpz-feed-NAME: NOTIFY (the DNS
//!  ─► records ─► RPZ text ─► rpz::parse     listeners) / refresh / retry ─► IXFR from our
//!     (the rules of `juris import rpz`)     serial ─► ... ─► order changed? ─► reload
//!  ─► the configured order + targets
//!  any failure (network, TSIG, a record juris cannot express) ─► ERROR, the last good
//!  order stays in force
//! ```
//!
//! Decisions: `docs/design/0030-fleet-interop-and-rpz-feeds.md`.

use std::fmt::Write as _;
use std::net::SocketAddr;
use std::sync::mpsc;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use juris_policy::{Order, Target};
use tracing::{error, info};

use super::schedule;
use super::zone::{self, rtype, Records};
use super::TsigKey;
use crate::orders::LoaderHandle;

/// Wait after a failed transfer.
const RETRY: Duration = Duration::from_secs(10);

/// One `[[fleet.rpz_feed]]`, validated.
#[derive(Debug, Clone)]
pub struct RpzFeedSettings {
    /// The feed's name (logs, status, the targets' `added_by: rpz-feed:NAME`).
    pub name: String,
    /// The server the zone is transferred from.
    pub primary: SocketAddr,
    /// The RPZ zone: absolute, lower-case, trailing dot.
    pub zone: String,
    /// Signs the requests and checks every response, when set.
    pub tsig_key: Option<TsigKey>,
    /// How often the zone's serial is checked without a NOTIFY.
    pub refresh: Duration,
    /// The order the zone's triggers become the targets of (its own `targets` are empty).
    pub order: Order,
}

#[derive(Debug, Default)]
struct State {
    copy: schedule::ZoneCopy,
    order: Option<Arc<Order>>,
    warnings: Vec<String>,
    /// Where the order in force came from: `transfer`, `snapshot`.
    origin: Option<&'static str>,
}

/// A follower of one third-party RPZ zone.
pub struct RpzFeed {
    settings: RpzFeedSettings,
    origin: schedule::Origin,
    /// `DATA_DIR/rpz-feed-NAME.json`.
    snapshot: std::path::PathBuf,
    state: Mutex<State>,
    wake: schedule::Wakes,
}

impl std::fmt::Debug for RpzFeed {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RpzFeed")
            .field("name", &self.settings.name)
            .field("primary", &self.settings.primary)
            .field("zone", &self.settings.zone)
            .finish_non_exhaustive()
    }
}

impl RpzFeed {
    /// A feed as configured, with its snapshot in `data_dir`.
    pub fn new(settings: RpzFeedSettings, data_dir: &std::path::Path) -> anyhow::Result<RpzFeed> {
        let key = settings
            .tsig_key
            .as_ref()
            .map(TsigKey::key)
            .transpose()
            .map_err(anyhow::Error::msg)?;
        let origin = schedule::Origin {
            primary: settings.primary,
            zone: settings.zone.clone(),
            suffix: settings.zone.clone(),
            key,
        };
        Ok(RpzFeed {
            snapshot: data_dir.join(format!("rpz-feed-{}.json", settings.name)),
            settings,
            origin,
            state: Mutex::new(State::default()),
            wake: schedule::Wakes::default(),
        })
    }

    fn state(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// The feed's name.
    pub fn name(&self) -> &str {
        &self.settings.name
    }

    /// The order with the zone's triggers as targets (`None` before the first transfer).
    pub fn order(&self) -> Option<Arc<Order>> {
        self.state().order.clone()
    }

    /// One transfer (IXFR from our serial, AXFR without one). `Ok(true)` when the order
    /// changed. On `Err` nothing changes: the last good order stays in force.
    pub fn transfer_once(&self) -> Result<bool, String> {
        schedule::attempt(&self.state, &self.origin, |s, r, f| self.apply(s, r, f))
    }

    fn apply(&self, serial: u32, records: Records, full: bool) -> Result<bool, String> {
        let (order, warnings) = feed_order(&self.settings, serial, &records).map_err(|e| {
            format!(
                "RPZ feed {}: serial {serial} of {} from {} is not usable: {e}",
                self.settings.name, self.settings.zone, self.settings.primary
            )
        })?;
        let targets = order.targets.len();
        let changed = {
            let mut state = self.state();
            let changed = state.order.as_deref() != Some(&order);
            state.copy.applied(serial, records, full);
            state.order = Some(Arc::new(order));
            state.warnings = warnings;
            state.origin = Some("transfer");
            changed
        };
        info!(
            feed = %self.settings.name,
            primary = %self.settings.primary,
            zone = %self.settings.zone,
            serial,
            targets,
            kind = if full { "AXFR" } else { "IXFR" },
            "RPZ feed: transfer applied"
        );
        schedule::save_snapshot(&self.state, &self.origin, &self.snapshot);
        Ok(changed)
    }

    /// Starts from the feed's snapshot in the data directory (its primary is unreachable).
    /// `Ok(false)`: there is none.
    pub fn load_snapshot(&self) -> Result<bool, String> {
        let loaded = schedule::load_snapshot(
            &self.state,
            &self.origin,
            &self.snapshot,
            |state, serial, records| {
                let (order, warnings) = feed_order(&self.settings, serial, records)?;
                state.order = Some(Arc::new(order));
                state.warnings = warnings;
                state.origin = Some("snapshot");
                Ok(())
            },
        )?;
        if loaded {
            info!(
                feed = %self.settings.name,
                "RPZ feed: its primary is unreachable; enforcing the order of the snapshot"
            );
        }
        Ok(loaded)
    }

    /// A NOTIFY for `zone` (wire form) from `from`: a transfer is scheduled when it names our
    /// zone and comes from our primary's address (the transfer itself is authenticated).
    pub fn notified(&self, zone: &[u8], from: std::net::IpAddr) -> bool {
        let ours = zone::name_wire(&self.settings.zone).unwrap_or_default();
        if !zone.eq_ignore_ascii_case(&ours) || from != self.settings.primary.ip() {
            return false;
        }
        tracing::debug!(%from, zone = %self.settings.zone, "RPZ feed: NOTIFY received");
        self.wake.wake();
        true
    }

    /// Starts the feed's thread: transfers on NOTIFY, refresh and retry; a change wakes
    /// `loader`.
    pub fn spawn(self: &Arc<Self>, loader: LoaderHandle) -> anyhow::Result<()> {
        let rx = self.wake.receiver();
        let feed = Arc::clone(self);
        std::thread::Builder::new()
            .name(format!("juris-rpz-feed-{}", self.settings.name))
            .spawn(move || feed.run(&rx, &loader))
            .map_err(|e| anyhow::anyhow!("RPZ feed thread: {e}"))?;
        Ok(())
    }

    fn run(&self, wakes: &mpsc::Receiver<schedule::Wake>, loader: &LoaderHandle) {
        let timing = schedule::Timing {
            first: schedule::first_wait(&self.state().copy, self.settings.refresh),
            refresh: self.settings.refresh,
            retry: RETRY,
            // Written by each applied transfer (feeds change seldom).
            snapshot: None,
        };
        let hooks = schedule::Hooks {
            transfer: || self.transfer_once(),
            changed: || loader.reload("zone transfer of an RPZ feed"),
            failed: |e: &str| {
                error!(
                    feed = %self.settings.name,
                    "RPZ feed: transfer FAILED; the last good order stays in force: {e}"
                )
            },
            report: || {},
            snapshot: || {},
        };
        schedule::run(wakes, timing, hooks);
    }

    /// The status: primary, zone, order, serial in force, last transfer, errors.
    pub fn status(&self) -> serde_json::Value {
        let state = self.state();
        state.copy.status(serde_json::json!({
            "name": self.settings.name,
            "primary": self.settings.primary.to_string(),
            "zone": self.settings.zone,
            "order": self.settings.order.id,
            "tsig_key": self.settings.tsig_key.as_ref().map(|k| k.name.clone()),
            "targets": state.order.as_ref().map(|o| o.targets.len()),
            "warnings": state.warnings,
            "origin": state.origin,
        }))
    }
}

/// The configured order with the triggers of `records` as targets: the records are written
/// as an RPZ zone file and read by `juris_control::rpz::parse` (the rules of
/// `juris import rpz`: CNAME `.` / `*.` only, the order's action only). Also the warnings.
pub fn feed_order(
    settings: &RpzFeedSettings,
    serial: u32,
    records: &Records,
) -> Result<(Order, Vec<String>), String> {
    let text = zone_text(&settings.zone, records)?;
    let parsed = juris_control::rpz::parse(&text).map_err(|e| {
        // The line numbers are those of the rendered zone: name the record instead.
        let message = e.to_string();
        let record = message
            .split_whitespace()
            .skip_while(|w| *w != "line")
            .nth(1)
            .and_then(|n| {
                n.trim_matches(|c: char| !c.is_ascii_digit())
                    .parse::<usize>()
                    .ok()
            })
            .and_then(|n| text.lines().nth(n.saturating_sub(1)));
        match record {
            Some(record) => format!("{message} (record: {record})"),
            None => message,
        }
    })?;
    let mut order = settings.order.clone();
    let added_by = format!("rpz-feed:{}", settings.name);
    let evidence = format!(
        "{} serial {serial} from {}",
        settings.zone, settings.primary
    );
    for record in &parsed.records {
        if record.action != order.action {
            return Err(format!(
                "{} {} has the action {}, the order {} has {}",
                record.kind.as_str(),
                record.value,
                juris_control::rpz::action_name(record.action),
                order.id,
                juris_control::rpz::action_name(order.action)
            ));
        }
        let mut target = Target::new(record.kind, record.value.clone());
        target.added_by = Some(added_by.clone());
        target.evidence = Some(evidence.clone());
        order.targets.push(target);
    }
    // The same order whatever the records' order in the transfer.
    order
        .targets
        .sort_by(|a, b| (a.kind.as_str(), &a.value).cmp(&(b.kind.as_str(), &b.value)));
    Ok((order, parsed.warnings))
}

/// `records` as zone-file text: `$ORIGIN`, then one line per record (CNAME data as a name,
/// other types by number, which `rpz::parse` refuses unless at the apex).
fn zone_text(apex: &str, records: &Records) -> Result<String, String> {
    let mut text = format!("$ORIGIN {apex}\n");
    for rr in records {
        if rr.rtype == rtype::CNAME {
            let target = name_text(&rr.rdata)
                .ok_or_else(|| format!("{}: malformed CNAME data", rr.owner))?;
            let _ = writeln!(text, "{} CNAME {target}", rr.owner);
        } else {
            let _ = writeln!(text, "{} TYPE{}", rr.owner, rr.rtype);
        }
    }
    Ok(text)
}

/// The presentation form of an uncompressed wire-form name (`.` for the root); `None` when
/// malformed or when a label holds a byte that zone-file text cannot carry unescaped.
fn name_text(wire: &[u8]) -> Option<String> {
    let mut out = String::new();
    let mut rest = wire;
    loop {
        let (&len, tail) = rest.split_first()?;
        if len == 0 {
            break;
        }
        let label = tail.get(..usize::from(len))?;
        if !label
            .iter()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'*'))
        {
            return None;
        }
        out.push_str(&String::from_utf8_lossy(label).to_ascii_lowercase());
        out.push('.');
        rest = tail.get(usize::from(len)..)?;
    }
    if out.is_empty() {
        out.push('.');
    }
    Some(out)
}

impl schedule::Copied for State {
    fn copy(&mut self) -> &mut schedule::ZoneCopy {
        &mut self.copy
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used, reason = "test code")]
mod tests {
    use super::*;
    use crate::fleet::zone::Rr;

    fn settings(action: &str) -> RpzFeedSettings {
        let order: Order = serde_json::from_str(&format!(
            r#"{{"id": "VENDOR-IT", "kind": "feed_ticket", "authority": "Vendor",
                "jurisdictions": ["IT"], "action": "{action}", "state": "active"}}"#
        ))
        .unwrap();
        RpzFeedSettings {
            name: "vendor".into(),
            primary: "127.0.0.1:53".parse().unwrap(),
            zone: "rpz.vendor.test.".into(),
            tsig_key: None,
            refresh: Duration::from_secs(60),
            order,
        }
    }

    fn cname(owner: &str, target: &str) -> Rr {
        Rr {
            owner: owner.into(),
            rtype: rtype::CNAME,
            rdata: zone::name_wire(target).unwrap(),
        }
    }

    #[test]
    fn triggers_become_the_configured_orders_targets() {
        let records: Records = [
            cname("bad.example.rpz.vendor.test.", "."),
            cname("*.sub.example.rpz.vendor.test.", "."),
            cname("sub.example.rpz.vendor.test.", "."),
            cname("32.7.113.0.203.rpz-ip.rpz.vendor.test.", "."),
            Rr {
                owner: "rpz.vendor.test.".into(),
                rtype: rtype::NS,
                rdata: zone::name_wire("ns.vendor.test.").unwrap(),
            },
        ]
        .into_iter()
        .collect();
        let (order, _) = feed_order(&settings("nxdomain"), 7, &records).unwrap();
        let targets: Vec<(&str, &str)> = order
            .targets
            .iter()
            .map(|t| (t.kind.as_str(), t.value.as_str()))
            .collect();
        assert_eq!(
            targets,
            [
                ("domain", "bad.example"),
                ("ip", "203.0.113.7/32"),
                ("subtree", "sub.example")
            ]
        );
        assert_eq!(order.jurisdictions, ["IT"]);
        assert_eq!(
            order.targets[0].added_by.as_deref(),
            Some("rpz-feed:vendor")
        );
        assert!(order.targets[0]
            .evidence
            .as_deref()
            .is_some_and(|e| e.contains("serial 7")));
    }

    #[test]
    fn a_record_juris_cannot_express_refuses_the_transfer_and_names_it() {
        let records: Records = [
            cname("bad.example.rpz.vendor.test.", "."),
            cname("ok.example.rpz.vendor.test.", "rpz-passthru."),
        ]
        .into_iter()
        .collect();
        let error = feed_order(&settings("nxdomain"), 1, &records).unwrap_err();
        assert!(error.contains("rpz-passthru."), "{error}");
        assert!(error.contains("ok.example.rpz.vendor.test."), "{error}");

        let local: Records = [Rr {
            owner: "x.example.rpz.vendor.test.".into(),
            rtype: 1,
            rdata: vec![192, 0, 2, 1],
        }]
        .into_iter()
        .collect();
        assert!(feed_order(&settings("nxdomain"), 1, &local).is_err());

        let nodata: Records = [cname("bad.example.rpz.vendor.test.", "*.")]
            .into_iter()
            .collect();
        let error = feed_order(&settings("nxdomain"), 1, &nodata).unwrap_err();
        assert!(error.contains("nodata"), "{error}");
        assert!(feed_order(&settings("nodata"), 1, &nodata).is_ok());
    }

    #[test]
    fn names_in_wire_form_read_back_and_odd_bytes_are_refused() {
        assert_eq!(name_text(&[0]).as_deref(), Some("."));
        assert_eq!(name_text(&[1, b'*', 0]).as_deref(), Some("*."));
        assert_eq!(
            name_text(&zone::name_wire("A.Example.").unwrap()).as_deref(),
            Some("a.example.")
        );
        assert_eq!(name_text(&[3, b'a', b' ', b'b', 0]), None);
        assert_eq!(name_text(&[5, b'a']), None);
    }
}
