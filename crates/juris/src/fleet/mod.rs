//! The fleet (issue #12): the policy published as zones over AXFR/IXFR with NOTIFY and TSIG,
//! and juris edges that follow a primary.
//!
//! ```text
//!  primary: OrderLoader ──(every load: the orders in force, raw documents)──► Publisher
//!             Publisher: zones (zone.rs) ─ diff ─► serial+1, journal of deltas ─► NOTIFY (notify list)
//!             XFR listener (xfr.rs, TCP + UDP): TSIG / allowed prefix ─► SOA, AXFR, IXFR
//!  edge:    Follower thread: AXFR, then IXFR on NOTIFY (DNS listener) / SOA refresh / retry
//!             orders.<suffix> ─ decode ─► FleetSource (an OrderSource) ─► the same loader path
//!             snapshot: DATA_DIR/fleet-snapshot.json (started from when the primary is down)
//! ```
//!
//! | module | concern |
//! |---|---|
//! | `keys` | TSIG keys: `NAME:ALGORITHM:BASE64SECRET`, generation |
//! | `zone` | records; the RPZ zones and the `orders` metadata zone from orders, and back |
//! | `wire` | DNS messages of the transfers (the `domain` crate's builder, parser and TSIG) |
//! | `publisher` | the primary: serial, journal, NOTIFY sending, the XFR listener |
//! | `snapshot` | a transferred zone in the data directory (edge, RPZ feeds) |
//! | `journal_file` | the primary's journal on disk (a restart keeps the serial and the deltas) |
//! | `proof` | which serial each follower has in force; per order, where and since when |
//! | `follower` | the edge: transfers, snapshot, [`FleetSource`](follower::FleetSource) |
//! | `rpz_feed` | third-party RPZ zones followed over AXFR/IXFR and mapped onto an order |
//!
//! Decisions: `docs/design/0021-fleet-zone-transfers.md`; user docs: `docs/fleet.md`.

use std::net::SocketAddr;

use ipnet::IpNet;

pub mod follower;
mod journal_file;
pub mod keys;
pub mod proof;
pub mod publisher;
pub mod rpz_feed;
mod schedule;
mod snapshot;
#[cfg(test)]
mod tests;
mod wire;
pub mod zone;

pub use keys::TsigKey;

/// The default zone suffix: `it.rpz.juris.invalid.`, `orders.rpz.juris.invalid.`.
pub const DEFAULT_ZONE_SUFFIX: &str = "rpz.juris.invalid.";

/// `[fleet]`, validated.
#[derive(Debug, Clone)]
pub struct FleetSettings {
    /// Where the XFR service listens (TCP and UDP): a primary.
    pub xfr_listen: Option<SocketAddr>,
    /// Absolute, lower-case, with the trailing dot.
    pub zone_suffix: String,
    /// Followers told of every change.
    pub notify: Vec<SocketAddr>,
    /// Source prefixes allowed to transfer (with TSIG).
    pub allow_transfer: Vec<IpNet>,
    /// Source prefixes allowed to transfer without TSIG (consumers without TSIG support,
    /// e.g. Unbound's `rpz:`). Empty by default.
    pub allow_unsigned: Vec<IpNet>,
    /// The TSIG keys: a primary accepts any of them; an edge signs with the first.
    pub tsig_keys: Vec<TsigKey>,
    /// The primary an edge follows.
    pub follow: Option<SocketAddr>,
    /// A primary's followers by name (`[fleet] followers`); empty: the `notify` addresses.
    pub followers: Vec<proof::FollowerSpec>,
}

impl FleetSettings {
    /// The metadata zone's name: `orders.<suffix>`.
    pub fn orders_zone(&self) -> String {
        format!("orders.{}", self.zone_suffix)
    }
}

/// Lower-case, absolute (trailing dot) form of a zone suffix; `None` if it is not a name.
pub fn normal_suffix(text: &str) -> Option<String> {
    let text = text.trim().to_ascii_lowercase();
    let text = if text.ends_with('.') {
        text
    } else {
        format!("{text}.")
    };
    let valid = text.len() > 1
        && text.len() <= 200
        && text.trim_end_matches('.').split('.').all(|label| {
            !label.is_empty()
                && label.len() <= 63
                && label
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
        });
    valid.then_some(text)
}

/// The Unix time now (the fleet's serials, status and TSIG times read the wall clock:
/// TSIG is checked against the peer's wall clock).
pub(crate) fn unix_now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}
