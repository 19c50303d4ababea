//! # juris-geo: client → jurisdiction
//!
//! Decides, per query, which country's legal orders apply to the client, and records what
//! decided it. The sources are consulted in this order and the first that knows wins:
//!
//! ```text
//!  query ─┬─ listener pinned to a country? ───────────────────────────► Listener
//!         ├─ ECS option AND source is a trusted forwarder?
//!         │     cut to /24 (IPv4) or /56 (IPv6) ─► GeoIP lookup ──────► TrustedEcs
//!         │                                        (not found ───────► Unknown)
//!         ├─ source address (::ffff:a.b.c.d → a.b.c.d) ─► GeoIP lookup ► GeoIp
//!         └─ otherwise ───────────────────────────────────────────────► Unknown
//!                                                     (only global orders apply)
//! ```
//!
//! The GeoIP database is a MaxMind DB file ([`GeoDb`]) read into memory; the path to the
//! two-letter code inside its records is configured or detected among MaxMind
//! `country.iso_code`, ip-location-db `country_code` and IPinfo `country`. The
//! [`Classifier`] holds it behind an atomic pointer, so [`Classifier::reload`] (on SIGHUP)
//! swaps in a new file while queries go on, and a file that fails to load leaves the old one
//! in force. Classification allocates nothing, and client addresses are never stored or logged:
//! a [`Jurisdiction`] holds only the country, the source, and an ECS prefix length.
//!
//! Countries are plain [`CountryCode`]s (two upper-case ASCII letters): this crate depends on
//! nothing else of juris; the server converts them to the policy's type.
//!
//! # Example
//!
//! ```
//! use juris_geo::{Classifier, CountryCode, DecidedBy, GeoConfig};
//! use juris_testkit::mmdb::{MmdbWriter, Shape};
//! # fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let dir = tempfile::tempdir()?;
//! let mmdb = dir.path().join("countries.mmdb");
//! MmdbWriter::new(Shape::CountryCode)
//!     .insert("127.0.0.101/32".parse()?, "IT")
//!     .insert("127.0.0.102/32".parse()?, "DE")
//!     .insert("198.51.100.0/24".parse()?, "DE")
//!     .write_to(&mmdb)?;
//!
//! let classifier = Classifier::new(&GeoConfig {
//!     mmdb: Some(mmdb),
//!     field_path: None, // detected: `country_code`
//!     trusted_ecs_forwarders: vec!["127.0.0.53/32".parse()?],
//! })?;
//!
//! let italian = classifier.classify("127.0.0.101".parse()?, None, None);
//! assert_eq!(italian.country, Some(CountryCode::parse("IT")?));
//! assert_eq!(italian.decided_by, DecidedBy::GeoIp);
//!
//! // A trusted forwarder speaks for a German client through ECS (looked up as a /24).
//! let ecs = Some(("198.51.100.77".parse()?, 32));
//! let german = classifier.classify("127.0.0.53".parse()?, None, ecs);
//! assert_eq!(german.country, Some(CountryCode::parse("DE")?));
//! assert_eq!(german.decided_by, DecidedBy::TrustedEcs);
//! assert_eq!(german.ecs_prefix_len, Some(24));
//!
//! // The same option from anyone else is ignored.
//! let untrusted = classifier.classify("127.0.0.101".parse()?, None, ecs);
//! assert_eq!(untrusted.country, Some(CountryCode::parse("IT")?));
//!
//! // A listener pinned to France decides before anything else.
//! let france = Some(CountryCode::parse("FR")?);
//! let pinned = classifier.classify("127.0.0.101".parse()?, france, None);
//! assert_eq!(pinned.decided_by, DecidedBy::Listener);
//!
//! // Nobody knows 127.0.0.1: only global orders apply to it.
//! let nobody = classifier.classify("127.0.0.1".parse()?, None, None);
//! assert_eq!(nobody.decided_by, DecidedBy::Unknown);
//! # Ok(()) }
//! ```
//!
//! # Limitations
//! - The GeoIP answer is only as good as the database: IPtoASN-style databases place a network
//!   where its autonomous system is registered, so anycast networks read as their home country.
//! - The memo ([`GeoDb::lookup`]) holds only /24 and /56 prefixes that the database maps alike;
//!   clients in finer-grained parts of the database are looked up in the tree every time.

#![forbid(unsafe_code)]

mod classifier;
mod config;
mod country;
mod db;
mod error;
pub mod import;
pub mod writer;

use std::net::IpAddr;

pub use classifier::{
    truncate_ecs, Classifier, DecidedBy, GeoSettings, Jurisdiction, ECS_IPV4_PREFIX_LEN,
    ECS_IPV6_PREFIX_LEN,
};
pub use config::{FieldPath, GeoConfig, MAX_FIELD_PATH_DEPTH};
pub use country::{CountryCode, CountryCodeError};
pub use db::{DatabaseInfo, GeoDb};
pub use error::GeoError;

/// An IPv4-mapped IPv6 address (`::ffff:a.b.c.d`, what a dual-stack socket reports for an IPv4
/// client) as the IPv4 address it is; every other address unchanged.
pub fn normalise_address(address: IpAddr) -> IpAddr {
    match address {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(address, IpAddr::V4),
        IpAddr::V4(_) => address,
    }
}
