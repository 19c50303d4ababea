//! [`Classifier`]: the per-query decision client → [`Jurisdiction`], and reload.

use std::fmt;
use std::net::IpAddr;
use std::path::PathBuf;
use std::sync::Arc;

use arc_swap::ArcSwapOption;
use ipnet::IpNet;

use crate::config::{FieldPath, GeoConfig};
use crate::country::CountryCode;
use crate::db::{DatabaseInfo, GeoDb};
use crate::error::GeoError;

/// ECS source prefixes are cut to this length (IPv4) before lookup (brief, requirement 6).
pub const ECS_IPV4_PREFIX_LEN: u8 = 24;
/// ECS source prefixes are cut to this length (IPv6) before lookup.
pub const ECS_IPV6_PREFIX_LEN: u8 = 56;

/// The client's jurisdiction for one query, and what decided it. Holds no client address.
///
/// Invariant: `country` is `Some` exactly when `decided_by` is not [`DecidedBy::Unknown`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize)]
pub struct Jurisdiction {
    /// The country, or `None`: then only global orders apply.
    pub country: Option<CountryCode>,
    /// Which source decided.
    pub decided_by: DecidedBy,
    /// When a trusted forwarder's ECS was used: the prefix length looked up after truncation
    /// (at most 24 for IPv4, 56 for IPv6). Set even when the database did not place that
    /// subnet (then `decided_by` is `Unknown`: the forwarder's own address says nothing about
    /// the client, so it is not looked up).
    pub ecs_prefix_len: Option<u8>,
}

/// The source of a [`Jurisdiction`], in the order they are consulted.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize)]
pub enum DecidedBy {
    /// The listener the query arrived on is pinned to a country.
    #[serde(rename = "listener")]
    Listener,
    /// The EDNS Client Subnet of a trusted forwarder, truncated, looked up in the database.
    #[serde(rename = "trusted-ecs")]
    TrustedEcs,
    /// The source address looked up in the database.
    #[serde(rename = "geoip")]
    GeoIp,
    /// Nothing placed the client: only global orders apply.
    #[serde(rename = "unknown")]
    Unknown,
}

/// Places clients in jurisdictions. Shared by all workers (`Send + Sync`); the database is
/// swapped atomically by [`reload`](Self::reload) while queries keep being classified.
pub struct Classifier {
    mmdb: Option<PathBuf>,
    field_path: Option<FieldPath>,
    trusted_ecs_forwarders: Vec<IpNet>,
    database: ArcSwapOption<GeoDb>,
}

/// [`GeoConfig`] validated: what a [`Classifier`] is built from.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct GeoSettings {
    /// The GeoIP database, if any.
    pub mmdb: Option<PathBuf>,
    /// The path to the country code, if configured (else detected when the database opens).
    pub field_path: Option<FieldPath>,
    /// Forwarders whose ECS option is believed, normalised.
    pub trusted_ecs_forwarders: Vec<IpNet>,
}

impl GeoSettings {
    /// Validates `config` (the field path); reads no file.
    pub fn from_config(config: &GeoConfig) -> Result<Self, GeoError> {
        Ok(GeoSettings {
            mmdb: config.mmdb.clone(),
            field_path: config
                .field_path
                .as_deref()
                .map(FieldPath::parse)
                .transpose()?,
            trusted_ecs_forwarders: config
                .trusted_ecs_forwarders
                .iter()
                .map(normalise_network)
                .collect(),
        })
    }
}

impl Classifier {
    /// Validates `config` and loads its database, if any.
    pub fn new(config: &GeoConfig) -> Result<Self, GeoError> {
        Self::from_settings(&GeoSettings::from_config(config)?)
    }

    /// Loads the database of `settings`, if any.
    pub fn from_settings(settings: &GeoSettings) -> Result<Self, GeoError> {
        let database = match &settings.mmdb {
            Some(path) => Some(Arc::new(GeoDb::open(path, settings.field_path.as_ref())?)),
            None => None,
        };
        Ok(Classifier {
            mmdb: settings.mmdb.clone(),
            field_path: settings.field_path.clone(),
            trusted_ecs_forwarders: settings.trusted_ecs_forwarders.clone(),
            database: ArcSwapOption::new(database),
        })
    }

    /// Re-reads the configured database file and swaps it in atomically (on SIGHUP). On
    /// failure the database in force stays and the error names the file and the reason.
    /// Returns what is now in force (`None` when no database is configured).
    pub fn reload(&self) -> Result<Option<DatabaseInfo>, GeoError> {
        let Some(path) = &self.mmdb else {
            return Ok(None);
        };
        let database = GeoDb::open(path, self.field_path.as_ref())?;
        let info = database.info().clone();
        self.database.store(Some(Arc::new(database)));
        Ok(Some(info))
    }

    /// Puts `database` in force (e.g. one read from elsewhere); `None` removes it.
    pub fn replace_database(&self, database: Option<GeoDb>) {
        self.database.store(database.map(Arc::new));
    }

    /// The database in force.
    pub fn database(&self) -> Option<Arc<GeoDb>> {
        self.database.load_full()
    }

    /// Whether `address` is a trusted ECS forwarder.
    pub fn is_trusted_forwarder(&self, address: IpAddr) -> bool {
        let address = crate::normalise_address(address);
        self.trusted_ecs_forwarders
            .iter()
            .any(|network| network.contains(&address))
    }

    /// The SCOPE PREFIX-LENGTH (RFC 7871 §7.2.1) of an answer that depends on the
    /// jurisdiction a trusted forwarder's ECS (`address`, `source_prefix_len`) decided: the
    /// prefix of the database network holding the truncated subnet, at most the truncated
    /// length (the bits past it were never looked at). 0 without a database (every subnet is
    /// unknown alike) or for a source prefix of 0. In the option's own family: an
    /// IPv4-mapped IPv6 address gets its IPv4 scope plus 96.
    pub fn ecs_scope(&self, address: IpAddr, source_prefix_len: u8) -> u8 {
        if source_prefix_len == 0 {
            return 0;
        }
        let (subnet, prefix_len) = truncate_ecs(address, source_prefix_len);
        let Some(database) = self.database.load_full() else {
            return 0;
        };
        let scope = database
            .network_prefix_len(subnet)
            .map_or(prefix_len, |network| network.min(prefix_len));
        let mapped = matches!(address, IpAddr::V6(v6) if v6.to_ipv4_mapped().is_some());
        if mapped {
            scope + 96
        } else {
            scope
        }
    }

    /// Decides the jurisdiction of one query. Allocation-free; never fails.
    ///
    /// - `client`: the query's source address (only used during this call).
    /// - `listener_pin`: the country the receiving listener is pinned to, if any.
    /// - `ecs`: the EDNS Client Subnet option (address, SOURCE PREFIX-LENGTH), if any. It is
    ///   ignored unless `client` is a trusted forwarder; a source prefix of 0 (the client asked
    ///   for its address not to be used) counts as no option.
    pub fn classify(
        &self,
        client: IpAddr,
        listener_pin: Option<CountryCode>,
        ecs: Option<(IpAddr, u8)>,
    ) -> Jurisdiction {
        if let Some(country) = listener_pin {
            return Jurisdiction::decided(country, DecidedBy::Listener, None);
        }
        let database = self.database.load();
        let lookup = |address| {
            database
                .as_ref()
                .and_then(|database| database.lookup(address))
        };
        if let Some((address, source_prefix_len)) = ecs {
            if source_prefix_len > 0 && self.is_trusted_forwarder(client) {
                let (subnet, prefix_len) = truncate_ecs(address, source_prefix_len);
                return match lookup(subnet) {
                    Some(country) => {
                        Jurisdiction::decided(country, DecidedBy::TrustedEcs, Some(prefix_len))
                    }
                    None => Jurisdiction {
                        ecs_prefix_len: Some(prefix_len),
                        ..Jurisdiction::UNKNOWN
                    },
                };
            }
        }
        match lookup(client) {
            Some(country) => Jurisdiction::decided(country, DecidedBy::GeoIp, None),
            None => Jurisdiction::UNKNOWN,
        }
    }
}

impl fmt::Debug for Classifier {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Classifier")
            .field("mmdb", &self.mmdb)
            .field("field_path", &self.field_path)
            .field("trusted_ecs_forwarders", &self.trusted_ecs_forwarders)
            .field(
                "database",
                &self.database.load().as_ref().map(|db| db.info()),
            )
            .finish()
    }
}

impl Jurisdiction {
    /// No source placed the client.
    pub const UNKNOWN: Jurisdiction = Jurisdiction {
        country: None,
        decided_by: DecidedBy::Unknown,
        ecs_prefix_len: None,
    };

    fn decided(country: CountryCode, decided_by: DecidedBy, ecs_prefix_len: Option<u8>) -> Self {
        Jurisdiction {
            country: Some(country),
            decided_by,
            ecs_prefix_len,
        }
    }
}

impl fmt::Display for Jurisdiction {
    /// E.g. `IT (trusted-ecs /24)`, `unknown`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.country {
            Some(country) => write!(f, "{country} ({}", self.decided_by)?,
            None => write!(f, "unknown (")?,
        }
        match self.ecs_prefix_len {
            Some(prefix_len) if self.country.is_some() => write!(f, " /{prefix_len})"),
            Some(prefix_len) => write!(f, "trusted ECS /{prefix_len} not in the database)"),
            None if self.country.is_some() => write!(f, ")"),
            None => write!(f, "no source placed the client)"),
        }
    }
}

impl fmt::Display for DecidedBy {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            DecidedBy::Listener => "listener",
            DecidedBy::TrustedEcs => "trusted-ecs",
            DecidedBy::GeoIp => "geoip",
            DecidedBy::Unknown => "unknown",
        })
    }
}

/// The network address of the ECS subnet cut to /24 (IPv4) or /56 (IPv6), and that length.
/// Longer source prefixes than the family allows are cut the same way.
pub fn truncate_ecs(address: IpAddr, source_prefix_len: u8) -> (IpAddr, u8) {
    let (address, source_prefix_len) = match address {
        IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => (IpAddr::V4(v4), source_prefix_len.saturating_sub(96)),
            None => (address, source_prefix_len),
        },
        IpAddr::V4(_) => (address, source_prefix_len),
    };
    match address {
        IpAddr::V4(v4) => {
            let prefix_len = source_prefix_len.min(ECS_IPV4_PREFIX_LEN);
            let mask = u32::MAX
                .checked_shl(32 - u32::from(prefix_len))
                .unwrap_or(0);
            (IpAddr::V4((u32::from(v4) & mask).into()), prefix_len)
        }
        IpAddr::V6(v6) => {
            let prefix_len = source_prefix_len.min(ECS_IPV6_PREFIX_LEN);
            let mask = u128::MAX
                .checked_shl(128 - u32::from(prefix_len))
                .unwrap_or(0);
            (IpAddr::V6((u128::from(v6) & mask).into()), prefix_len)
        }
    }
}

/// A trusted-forwarder entry written as `::ffff:a.b.c.d/n` (n ≥ 96) becomes `a.b.c.d/(n-96)`,
/// since client addresses are normalised the same way.
fn normalise_network(network: &IpNet) -> IpNet {
    match network {
        IpNet::V6(v6) if v6.prefix_len() >= 96 => match v6.network().to_ipv4_mapped() {
            Some(v4) => ipnet::Ipv4Net::new(v4, v6.prefix_len() - 96)
                .map(IpNet::V4)
                .unwrap_or(*network),
            None => network.trunc(),
        },
        _ => network.trunc(),
    }
}

#[cfg(test)]
// Tests: a panic is how a failure is reported.
#[allow(clippy::unwrap_used, clippy::expect_used, reason = "test code")]
mod tests {
    use super::*;

    #[test]
    fn ecs_truncation() {
        let cut = |address: &str, len| {
            let (address, len) = truncate_ecs(address.parse().unwrap(), len);
            format!("{address}/{len}")
        };
        assert_eq!(cut("192.0.2.77", 32), "192.0.2.0/24");
        assert_eq!(cut("192.0.2.77", 20), "192.0.0.0/20");
        assert_eq!(cut("192.0.2.77", 200), "192.0.2.0/24");
        assert_eq!(cut("2001:db8:1:2345::1", 128), "2001:db8:1:2300::/56");
        assert_eq!(cut("2001:db8:1:2:3::1", 48), "2001:db8:1::/48");
        assert_eq!(cut("::ffff:192.0.2.77", 128), "192.0.2.0/24");
        assert_eq!(cut("::ffff:192.0.2.77", 100), "192.0.0.0/4");
        assert_eq!(cut("192.0.2.77", 0), "0.0.0.0/0");
    }

    #[test]
    fn mapped_forwarder_prefixes_are_normalised() {
        let network: IpNet = "::ffff:192.0.2.0/120".parse().unwrap();
        assert_eq!(normalise_network(&network).to_string(), "192.0.2.0/24");
        let network: IpNet = "2001:db8::1/32".parse().unwrap();
        assert_eq!(normalise_network(&network).to_string(), "2001:db8::/32");
    }

    #[test]
    fn display() {
        let it = CountryCode::parse("IT").unwrap();
        assert_eq!(
            Jurisdiction::decided(it, DecidedBy::TrustedEcs, Some(24)).to_string(),
            "IT (trusted-ecs /24)"
        );
        assert_eq!(
            Jurisdiction::decided(it, DecidedBy::GeoIp, None).to_string(),
            "IT (geoip)"
        );
        assert_eq!(
            Jurisdiction::UNKNOWN.to_string(),
            "unknown (no source placed the client)"
        );
    }
}
