//! Configuration in two layers (conventions §4):
//!
//! ```text
//! TOML file ──serde(deny_unknown_fields)──► RawConfig ──┐
//! command-line flags (Overrides) ───────────────────────┼─► Settings (validated: ranges
//!                                                        │   checked, paths resolved, root
//! embedded defaults (RawConfig::default) ────────────────┘   hints loaded)
//! ```
//!
//! Every key is documented in `docs/configuration.md`; every example in `examples/` is parsed
//! by a test.

use std::net::{IpAddr, SocketAddr};
use std::path::{Path, PathBuf};
use std::time::Duration;

use ipnet::IpNet;
use juris_geo::CountryCode;
use serde::Deserialize;

/// A configuration problem, naming the key and the reason.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The file could not be read.
    #[error("{path}: {source}")]
    Read {
        /// The file.
        path: PathBuf,
        /// The I/O error.
        source: std::io::Error,
    },
    /// TOML syntax, an unknown key, or a wrong type (the message names the key and line).
    #[error("{path}: {message}")]
    Parse {
        /// The file.
        path: String,
        /// What toml reported.
        message: String,
    },
    /// A value that parsed but makes no sense.
    #[error("{key}: {reason}")]
    Invalid {
        /// Dotted key path, e.g. `cache.size`.
        key: String,
        /// Why it is wrong.
        reason: String,
    },
}

/// `[server.cookies]`, checked: secrets of exactly 32 hex digits, rotation 0 or ≥ 1 h.
fn cookie_config(raw: &RawCookies) -> Result<juris_server::CookieConfig, ConfigError> {
    let secret = |key: &str, value: &Option<String>| -> Result<Option<[u8; 16]>, ConfigError> {
        let Some(text) = value else {
            return Ok(None);
        };
        let text = text.trim();
        if text.len() != 32 || !text.bytes().all(|b| b.is_ascii_hexdigit()) {
            return Err(invalid(key, "must be 32 hex digits (128 bits)"));
        }
        let mut bytes = [0u8; 16];
        for (i, byte) in bytes.iter_mut().enumerate() {
            *byte = u8::from_str_radix(&text[2 * i..2 * i + 2], 16)
                .map_err(|_| invalid(key, "must be 32 hex digits (128 bits)"))?;
        }
        Ok(Some(bytes))
    };
    let config = juris_server::CookieConfig {
        enabled: raw.enabled,
        secret: secret("server.cookies.secret", &raw.secret)?,
        previous_secret: secret("server.cookies.previous_secret", &raw.previous_secret)?,
        rotation: Duration::from_secs(raw.rotation_secs),
    };
    config
        .validate()
        .map_err(|_| invalid("server.cookies.rotation_secs", "must be 0 or at least 3600"))?;
    if config.previous_secret.is_some() && config.secret.is_none() {
        return Err(invalid(
            "server.cookies.previous_secret",
            "needs server.cookies.secret (the new secret)",
        ));
    }
    Ok(config)
}

fn invalid(key: impl Into<String>, reason: impl Into<String>) -> ConfigError {
    ConfigError::Invalid {
        key: key.into(),
        reason: reason.into(),
    }
}

// ---------------------------------------------------------------------------------------------
// Raw layer: exactly what the file says. Every field has a default (see docs/configuration.md).
// ---------------------------------------------------------------------------------------------

/// The whole file.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RawConfig {
    /// `[server]`: listeners, threads, access control, TCP limits.
    pub server: RawServer,
    /// `[resolver]`: recursion or forwarding.
    pub resolver: RawResolver,
    /// `[cache]`: size and TTL policy.
    pub cache: RawCache,
    /// `[log]`.
    pub log: RawLog,
    /// `[policy]`: where the orders come from and how blocked answers look.
    pub policy: RawPolicy,
    /// `[geoip]`: how clients are placed in jurisdictions (the GeoIP database, trusted ECS
    /// forwarders). Strict like the rest; see `juris_geo::GeoConfig`.
    pub geoip: juris_geo::GeoConfig,
    /// `[tls]`: certificate, key and limits of the encrypted listeners (DoT, DoH, DoQ).
    pub tls: RawTls,
    /// `[control]`: the control plane (admin API, four-eyes rule, protected list). Strict like
    /// the rest; see `juris_control::ControlConfig`.
    pub control: juris_control::ControlConfig,
    /// `[dnssec]`: validation, trust anchors, negative trust anchors, limits.
    pub dnssec: RawDnssec,
    /// `[candidates]`: mirror candidates mined from resolved names (`docs/candidates.md`).
    pub candidates: juris_control::candidates::CandidatesConfig,
    /// `[fleet]`: publishing the policy as zones (a primary), following a primary (an edge).
    pub fleet: RawFleet,
    /// `[querylog]`: one JSON line per answered query (off by default).
    pub querylog: RawQueryLog,
    /// `[dnstap]`: dnstap messages to a collector's Unix socket (off by default).
    pub dnstap: RawDnstap,
}

/// `[querylog]` (docs/operations.md, "Logs").
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RawQueryLog {
    /// Write the query log. Default false.
    pub enabled: bool,
    /// A file appended to; unset or `"-"`: stderr.
    pub path: Option<PathBuf>,
    /// `omit` (default), `truncate` (/24, /48) or `full`.
    pub client: String,
    /// Lines waiting to be written at most (default 65536); beyond, answers are dropped.
    pub queue: usize,
}

impl Default for RawQueryLog {
    fn default() -> Self {
        Self {
            enabled: false,
            path: None,
            client: "omit".into(),
            queue: 65_536,
        }
    }
}

/// `[dnstap]` (docs/operations.md, "dnstap").
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RawDnstap {
    /// The collector's Unix socket (Frame Streams); unset: dnstap is off.
    pub socket: Option<PathBuf>,
    /// `omit` (default), `truncate` (/24, /48) or `full`: the client address in messages.
    pub client: String,
    /// Messages waiting to be sent at most (default 65536); beyond, they are dropped.
    pub queue: usize,
    /// The `identity` field of every message; unset: none.
    pub identity: Option<String>,
    /// Also send RESOLVER_QUERY/RESOLVER_RESPONSE (juris's own queries upstream). Default true.
    pub resolver_messages: bool,
}

impl Default for RawDnstap {
    fn default() -> Self {
        Self {
            socket: None,
            client: "omit".into(),
            queue: 65_536,
            identity: None,
            resolver_messages: true,
        }
    }
}

/// `omit`, `truncate` or `full` for `key`.
fn client_address(
    key: &str,
    value: &str,
) -> Result<juris_server::telemetry::ClientAddress, ConfigError> {
    use juris_server::telemetry::ClientAddress;
    match value {
        "omit" => Ok(ClientAddress::Omit),
        "truncate" => Ok(ClientAddress::Truncate),
        "full" => Ok(ClientAddress::Full),
        other => Err(invalid(
            key,
            format!("{other:?}: expected \"omit\", \"truncate\" or \"full\""),
        )),
    }
}

/// The queue size for `key`: 1 ..= 16 Mi.
fn queue(key: &str, value: usize) -> Result<usize, ConfigError> {
    if (1..=1 << 24).contains(&value) {
        Ok(value)
    } else {
        Err(invalid(key, "between 1 and 16777216"))
    }
}

/// `[fleet]` (docs/fleet.md).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RawFleet {
    /// `ADDR:PORT` of the XFR service (TCP and UDP); unset: this node publishes nothing.
    pub xfr_listen: Option<String>,
    /// The zones' suffix: `<cc>.<suffix>`, `global.<suffix>`, `orders.<suffix>`.
    pub zone_suffix: String,
    /// `ADDR:PORT` of followers told of every change (NOTIFY).
    pub notify: Vec<String>,
    /// Source prefixes allowed to transfer with TSIG. Default: loopback.
    pub allow_transfer: Vec<String>,
    /// Source prefixes allowed to transfer WITHOUT TSIG (consumers that cannot sign, such as
    /// Unbound's `rpz:`). Default: none.
    pub allow_unsigned: Vec<String>,
    /// TSIG keys.
    pub tsig_keys: Vec<RawTsigKey>,
    /// `ADDR:PORT` of the primary this edge follows.
    pub follow: Option<String>,
    /// A primary's followers, by name (provable enforcement): who must have an order in
    /// force before its `comply_by` is met. Default: one per `notify` address.
    pub followers: Vec<RawFollower>,
    /// `[[fleet.rpz_feed]]`: third-party RPZ zones followed over AXFR/IXFR, each mapped onto
    /// one order (design 0030).
    pub rpz_feed: Vec<RawRpzFeed>,
}

/// One `[[fleet.followers]]`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawFollower {
    /// Its name (status, orders).
    pub name: String,
    /// The name of the TSIG key it signs with (one key per follower identifies it).
    #[serde(default)]
    pub key: Option<String>,
    /// Its source address (identifies it when it has no key of its own).
    #[serde(default)]
    pub address: Option<String>,
    /// `ADDR:PORT` to NOTIFY (added to `notify`).
    #[serde(default)]
    pub notify: Option<String>,
}

/// One `[[fleet.rpz_feed]]` (docs/fleet.md, "Consuming third-party RPZ zones").
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawRpzFeed {
    /// The feed's name (logs, status, the targets' `added_by`).
    pub name: String,
    /// `ADDR:PORT` of the server the zone is transferred from.
    pub primary: String,
    /// The RPZ zone's name.
    pub zone: String,
    /// TSIG key of the transfers (none: unsigned).
    #[serde(default)]
    pub tsig_key: Option<RawTsigKey>,
    /// Seconds between serial checks without a NOTIFY. Default: 60.
    #[serde(default)]
    pub refresh_seconds: Option<u64>,
    /// The order the zone's triggers become the targets of: an order document without
    /// `targets` (`docs/orders.md`).
    pub order: juris_policy::Order,
}

impl Default for RawFleet {
    fn default() -> Self {
        Self {
            xfr_listen: None,
            zone_suffix: crate::fleet::DEFAULT_ZONE_SUFFIX.to_owned(),
            notify: Vec::new(),
            allow_transfer: vec!["127.0.0.0/8".into(), "::1/128".into()],
            allow_unsigned: Vec::new(),
            tsig_keys: Vec::new(),
            follow: None,
            followers: Vec::new(),
            rpz_feed: Vec::new(),
        }
    }
}

/// One `[[fleet.tsig_keys]]`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawTsigKey {
    /// Key name.
    pub name: String,
    /// `hmac-sha256` (default), `hmac-sha1`, `hmac-sha384`, `hmac-sha512`.
    #[serde(default)]
    pub algorithm: String,
    /// The secret, base64.
    pub secret: String,
}

fn fleet_settings(raw: &RawFleet) -> Result<crate::fleet::FleetSettings, ConfigError> {
    let address = |key: String, text: &str| {
        text.trim()
            .parse::<SocketAddr>()
            .map_err(|_| invalid(key, format!("{text:?} is not ADDR:PORT")))
    };
    let prefixes = |key: &str, list: &[String]| {
        list.iter()
            .enumerate()
            .map(|(i, text)| {
                parse_prefix(text.trim()).ok_or_else(|| {
                    invalid(format!("{key}[{i}]"), format!("{text:?} is not a prefix"))
                })
            })
            .collect::<Result<Vec<_>, _>>()
    };
    let zone_suffix = crate::fleet::normal_suffix(&raw.zone_suffix).ok_or_else(|| {
        invalid(
            "fleet.zone_suffix",
            format!("{:?} is not a domain name", raw.zone_suffix),
        )
    })?;
    let mut tsig_keys = Vec::new();
    for (i, key) in raw.tsig_keys.iter().enumerate() {
        tsig_keys.push(
            crate::fleet::TsigKey::new(&key.name, &key.algorithm, &key.secret)
                .map_err(|reason| invalid(format!("fleet.tsig_keys[{i}]"), reason))?,
        );
    }
    let mut followers = Vec::new();
    let mut follower_notify = Vec::new();
    for (i, raw) in raw.followers.iter().enumerate() {
        let key = format!("fleet.followers[{i}]");
        let name = raw.name.trim();
        if name.is_empty()
            || followers
                .iter()
                .any(|f: &crate::fleet::proof::FollowerSpec| f.name == name)
        {
            return Err(invalid(
                key,
                format!("name {name:?} is empty or not unique"),
            ));
        }
        let key_name = raw.key.as_deref().map(crate::fleet::proof::normal_key_name);
        if let Some(key_name) = &key_name {
            if !tsig_keys
                .iter()
                .any(|k: &crate::fleet::TsigKey| &k.name == key_name)
            {
                return Err(invalid(
                    key,
                    format!("key {key_name:?} is not one of fleet.tsig_keys"),
                ));
            }
        }
        let ip = raw
            .address
            .as_deref()
            .map(|a| {
                a.trim().parse::<std::net::IpAddr>().map_err(|_| {
                    invalid(format!("{key}.address"), format!("{a:?} is not an address"))
                })
            })
            .transpose()?;
        let notify = raw
            .notify
            .as_deref()
            .map(|a| address(format!("{key}.notify"), a))
            .transpose()?;
        follower_notify.extend(notify);
        // Without a key it is recognised by its address (by default its NOTIFY address's).
        let source = ip.or(notify.map(|a| a.ip()));
        if key_name.is_none() && source.is_none() {
            return Err(invalid(
                key,
                "a follower needs a key, an address or a notify address to be recognised",
            ));
        }
        followers.push(crate::fleet::proof::FollowerSpec {
            name: name.to_owned(),
            key: key_name,
            address: source,
        });
    }
    let settings = crate::fleet::FleetSettings {
        xfr_listen: raw
            .xfr_listen
            .as_deref()
            .map(|a| address("fleet.xfr_listen".into(), a))
            .transpose()?,
        zone_suffix,
        notify: raw
            .notify
            .iter()
            .enumerate()
            .map(|(i, a)| address(format!("fleet.notify[{i}]"), a))
            .chain(follower_notify.into_iter().map(Ok))
            .collect::<Result<_, _>>()?,
        allow_transfer: prefixes("fleet.allow_transfer", &raw.allow_transfer)?,
        allow_unsigned: prefixes("fleet.allow_unsigned", &raw.allow_unsigned)?,
        tsig_keys,
        follow: raw
            .follow
            .as_deref()
            .map(|a| address("fleet.follow".into(), a))
            .transpose()?,
        followers,
    };
    if settings.xfr_listen.is_some()
        && settings.tsig_keys.is_empty()
        && settings.allow_unsigned.is_empty()
    {
        return Err(invalid(
            "fleet.tsig_keys",
            "fleet.xfr_listen needs a TSIG key (--tsig-key NAME:ALGORITHM:BASE64SECRET; `juris tsig generate NAME` makes one) or fleet.allow_unsigned",
        ));
    }
    if settings.follow.is_some() && settings.xfr_listen.is_some() {
        return Err(invalid(
            "fleet.follow",
            "a node either publishes (fleet.xfr_listen) or follows (fleet.follow), not both",
        ));
    }
    Ok(settings)
}

/// The validated `[[fleet.rpz_feed]]` tables.
fn rpz_feeds(
    raw: &[RawRpzFeed],
) -> Result<Vec<crate::fleet::rpz_feed::RpzFeedSettings>, ConfigError> {
    let mut feeds: Vec<crate::fleet::rpz_feed::RpzFeedSettings> = Vec::new();
    for (i, feed) in raw.iter().enumerate() {
        let key = |field: &str| format!("fleet.rpz_feed[{i}].{field}");
        let name = feed.name.trim();
        if name.is_empty()
            || !name
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'))
        {
            return Err(invalid(
                key("name"),
                format!("{name:?}: letters, digits, '-', '_' and '.' only"),
            ));
        }
        if feeds.iter().any(|f| f.name == name) {
            return Err(invalid(key("name"), format!("{name:?} is used twice")));
        }
        let primary = feed.primary.trim().parse::<SocketAddr>().map_err(|_| {
            invalid(
                key("primary"),
                format!("{:?} is not ADDR:PORT", feed.primary),
            )
        })?;
        let zone = crate::fleet::normal_suffix(&feed.zone)
            .ok_or_else(|| invalid(key("zone"), format!("{:?} is not a domain name", feed.zone)))?;
        let tsig_key = feed
            .tsig_key
            .as_ref()
            .map(|k| crate::fleet::TsigKey::new(&k.name, &k.algorithm, &k.secret))
            .transpose()
            .map_err(|reason| invalid(key("tsig_key"), reason))?;
        let refresh = match feed.refresh_seconds {
            None => Duration::from_secs(u64::from(crate::fleet::zone::REFRESH)),
            Some(0) => return Err(invalid(key("refresh_seconds"), "must be at least 1")),
            Some(seconds) => Duration::from_secs(seconds),
        };
        if !feed.order.targets.is_empty() {
            return Err(invalid(
                key("order.targets"),
                "the targets of a feed's order are the zone's triggers: leave them out",
            ));
        }
        if feeds.iter().any(|f| f.order.id == feed.order.id) {
            return Err(invalid(
                key("order.id"),
                format!("{:?} is the order of another feed", feed.order.id),
            ));
        }
        feeds.push(crate::fleet::rpz_feed::RpzFeedSettings {
            name: name.to_owned(),
            primary,
            zone,
            tsig_key,
            refresh,
            order: feed.order.clone(),
        });
    }
    Ok(feeds)
}

/// `[dnssec]` (see `juris_resolver::dnssec::ValidatorConfig`).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RawDnssec {
    /// Validate answers. Default true.
    pub enabled: bool,
    /// Trust anchor files (DS or DNSKEY lines); default: the built-in IANA root KSKs.
    pub trust_anchors: Vec<PathBuf>,
    /// Add the built-in IANA root KSKs when no anchor file has one for `.`. Default true.
    pub builtin_root_anchor: bool,
    /// Validate DSA signatures (algorithms 3, 6; RFC 8624 says MUST NOT). Default false.
    pub validate_dsa: bool,
    /// Domains treated as insecure (RFC 7646).
    pub negative_trust_anchors: Vec<String>,
    /// NSEC3 iterations above this make a denial insecure (RFC 9276). Default 150.
    pub nsec3_max_iterations: u16,
    /// Seconds a bogus result is remembered. Default 60.
    pub bogus_ttl: u64,
    /// Forwarders (`ADDR` or `ADDR:PORT`, as in `resolver.forward`) that strip DNSSEC data:
    /// their answers are not validated.
    pub forwarders_without_dnssec: Vec<String>,
    /// Answer NXDOMAIN/NODATA from validated cached NSEC ranges (RFC 8198). Default true.
    pub aggressive_nsec: bool,
    /// RFC 8509 root-key-sentinel (secure answers to sentinel names SERVFAIL when the key
    /// tag contradicts the root trust anchors). Default true.
    pub root_key_sentinel: bool,
}

impl Default for RawDnssec {
    fn default() -> Self {
        let d = juris_resolver::dnssec::ValidatorConfig::default();
        Self {
            enabled: d.enabled,
            trust_anchors: d.trust_anchor_files,
            builtin_root_anchor: d.builtin_root_anchor,
            validate_dsa: d.validate_dsa,
            negative_trust_anchors: d.negative_trust_anchors,
            nsec3_max_iterations: d.nsec3_max_iterations,
            bogus_ttl: d.bogus_ttl.as_secs(),
            forwarders_without_dnssec: Vec::new(),
            aggressive_nsec: d.aggressive_nsec,
            root_key_sentinel: d.root_key_sentinel,
        }
    }
}

/// `[dnssec]`, validated: names parse, anchor files load (so `check-config` reports them).
fn dnssec_config(raw: &RawDnssec) -> Result<juris_resolver::dnssec::ValidatorConfig, ConfigError> {
    for (i, name) in raw.negative_trust_anchors.iter().enumerate() {
        juris_resolver::dnssec::parse_domain(name)
            .map_err(|e| invalid(format!("dnssec.negative_trust_anchors[{i}]"), e))?;
    }
    if raw.bogus_ttl > 86_400 {
        return Err(invalid("dnssec.bogus_ttl", "must be at most 86400 seconds"));
    }
    let forwarders_without_dnssec = raw
        .forwarders_without_dnssec
        .iter()
        .enumerate()
        .map(|(i, f)| {
            parse_upstream(f).ok_or_else(|| {
                invalid(
                    format!("dnssec.forwarders_without_dnssec[{i}]"),
                    format!("{f:?} is not ADDR or ADDR:PORT"),
                )
            })
        })
        .collect::<Result<Vec<_>, _>>()?;
    let config = juris_resolver::dnssec::ValidatorConfig {
        forwarders_without_dnssec,
        enabled: raw.enabled,
        trust_anchor_files: raw.trust_anchors.clone(),
        builtin_root_anchor: raw.builtin_root_anchor,
        validate_dsa: raw.validate_dsa,
        negative_trust_anchors: raw.negative_trust_anchors.clone(),
        nsec3_max_iterations: raw.nsec3_max_iterations,
        bogus_ttl: Duration::from_secs(raw.bogus_ttl),
        aggressive_nsec: raw.aggressive_nsec,
        root_key_sentinel: raw.root_key_sentinel,
    };
    if config.enabled {
        config
            .load_anchors()
            .map_err(|e| invalid("dnssec.trust_anchors", e.to_string()))?;
    }
    Ok(config)
}

/// `[tls]`: what the encrypted listeners (`server.listen_tls`, `listen_https`,
/// `listen_quic`) share.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RawTls {
    /// Certificate chain, PEM, leaf first. Default: none (no encrypted listener can start).
    pub cert: Option<PathBuf>,
    /// Private key, PEM. Default: none.
    pub key: Option<PathBuf>,
    /// Reverse proxies (addresses or prefixes) whose `Forwarded` / `X-Forwarded-For` headers
    /// name the DoH client. Default: none.
    pub trusted_proxies: Vec<String>,
    /// Open connections per transport. Default 1000.
    pub max_connections: usize,
    /// Queries in flight per connection (DoT pipelining, HTTP/2 streams, QUIC streams).
    /// Default 100.
    pub max_streams: u32,
    /// Close a connection without queries after this many milliseconds. Default 10000.
    pub idle_timeout_ms: u64,
    /// The TLS/QUIC handshake must finish within this many milliseconds. Default 5000.
    pub handshake_timeout_ms: u64,
    /// A begun request must arrive whole within this many milliseconds. Default 5000.
    pub request_timeout_ms: u64,
    /// Largest query accepted, in bytes. Default 4096.
    pub max_request_size: usize,
}

impl Default for RawTls {
    fn default() -> Self {
        let limits = juris_transport::Limits::default();
        Self {
            cert: None,
            key: None,
            trusted_proxies: Vec::new(),
            max_connections: limits.max_connections,
            max_streams: limits.max_streams,
            idle_timeout_ms: limits.idle_timeout.as_millis() as u64,
            handshake_timeout_ms: limits.handshake_timeout.as_millis() as u64,
            request_timeout_ms: limits.request_timeout.as_millis() as u64,
            max_request_size: limits.max_request_size,
        }
    }
}

/// `[policy]`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RawPolicy {
    /// Order documents: one JSON file, or a directory of `*.json` files (one order each).
    /// Watched: changes are enforced without a restart. Default: none (no orders).
    pub orders: Option<PathBuf>,
    /// How often the orders path is checked for changes, milliseconds. Default 200.
    pub watch_interval_ms: u64,
    /// TTL (and SOA MINIMUM) of blocked answers, seconds. Default 30.
    pub block_ttl: u32,
    /// Jurisdictions where service is withdrawn (REFUSED + EDE 18). Default none.
    pub withdraw: Vec<String>,
    /// MNAME of the synthesised SOA. Default `blocked.juris.invalid.`.
    pub soa_mname: String,
    /// RNAME of the synthesised SOA. Default `hostmaster.juris.invalid.`.
    pub soa_rname: String,
    /// EDNS option code signalling structured DNS errors; 0 = only an empty EDE option
    /// signals. Default 65001.
    pub structured_error_option_code: u16,
}

impl Default for RawPolicy {
    fn default() -> Self {
        let defaults = juris_server::PolicySettings::default();
        Self {
            orders: None,
            watch_interval_ms: 200,
            block_ttl: defaults.block_ttl,
            withdraw: Vec::new(),
            soa_mname: defaults.soa_mname,
            soa_rname: defaults.soa_rname,
            structured_error_option_code: 65001,
        }
    }
}

/// A listener: `"127.0.0.1:53"` or `{ address = "127.0.0.1:53", country = "IT" }`.
#[derive(Debug, Clone, Deserialize, PartialEq, Eq)]
#[serde(untagged)]
pub enum RawListener {
    /// Plain `ADDR:PORT`, UDP and TCP.
    Address(String),
    /// A table with options.
    Table(RawListenerTable),
}

/// Listener options.
#[derive(Debug, Clone, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct RawListenerTable {
    /// `ADDR:PORT`.
    pub address: String,
    /// Serve UDP on it (default true).
    #[serde(default = "yes")]
    pub udp: bool,
    /// Serve TCP on it (default true).
    #[serde(default = "yes")]
    pub tcp: bool,
    /// Pin every client of this listener to a jurisdiction (ISO 3166-1 alpha-2).
    #[serde(default)]
    pub country: Option<String>,
}

fn yes() -> bool {
    true
}

/// `[server]`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RawServer {
    /// Listen addresses (UDP and TCP). Default `127.0.0.1:5353` and `[::1]:5353`.
    pub listen: Vec<RawListener>,
    /// UDP worker threads; 0 = one per CPU. Default 1.
    pub threads: usize,
    /// Client prefixes allowed to query. Default: loopback and private ranges.
    pub allow: Vec<String>,
    /// Load balancers (prefixes) whose PROXY protocol v1/v2 headers are believed on UDP, TCP,
    /// DoT and DoH: they must send one, and the client address in it is the one classified,
    /// checked against `allow` and counted; a header from anyone else is refused. Default:
    /// empty (off).
    pub proxy_protocol_from: Vec<String>,
    /// Largest UDP response we send (EDNS payload size we advertise). Default 1232.
    pub max_udp_payload: u16,
    /// Close idle TCP connections after this many milliseconds. Default 10000.
    pub tcp_idle_timeout_ms: u64,
    /// Most concurrent TCP connections. Default 1000.
    pub tcp_max_connections: usize,
    /// `SO_RCVBUF` of every UDP listener socket, in bytes (the kernel caps it at
    /// `net.core.rmem_max`); 0 keeps the kernel's default. Default 4194304 (4 MiB).
    pub udp_receive_buffer: usize,
    /// Hot-answer slots per UDP worker (a power of two, 2..=1048576). Default 8192.
    pub hot_answer_slots: usize,
    /// Queries one TCP connection may have in flight (pipelining). Default 64.
    pub tcp_max_in_flight: usize,
    /// Directory for state (the order store, status). Default `./juris-data` (relative to
    /// the working directory; a path written in a file is relative to the file).
    pub data_dir: Option<PathBuf>,
    /// DNS over TLS listen addresses (RFC 7858; `[tls]` needs a certificate). Default none.
    pub listen_tls: Vec<String>,
    /// DNS over HTTPS listen addresses (RFC 8484, `/dns-query`). Default none.
    pub listen_https: Vec<String>,
    /// DNS over QUIC listen addresses (RFC 9250). Default none.
    pub listen_quic: Vec<String>,
    /// At shutdown, how long TCP, DoT and DoH connections may take to answer the queries they
    /// have read, milliseconds. Default 5000.
    pub drain_timeout_ms: u64,
    /// `[server.rate_limit]`: UDP rate limits per client prefix. Default: off.
    pub rate_limit: RawRateLimit,
    /// `[server.cookies]`: DNS cookies as a server (RFC 7873, RFC 9018).
    pub cookies: RawCookies,
}

/// `[server.rate_limit]`: per-client query rate limit and response-rate limiting (RRL, as
/// BIND's) over UDP. Rates are per second per client prefix; 0 = unlimited (every rate 0,
/// the default, switches limiting off).
#[derive(Debug, Clone, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields, default)]
pub struct RawRateLimit {
    /// Queries. Default 0.
    pub queries_per_second: u32,
    /// NOERROR responses up to `large_response_size`. Default 0.
    pub responses_per_second: u32,
    /// NOERROR responses longer than `large_response_size`. Default 0.
    pub large_per_second: u32,
    /// NXDOMAIN responses. Default 0.
    pub nxdomains_per_second: u32,
    /// REFUSED responses. Default 0.
    pub refused_per_second: u32,
    /// Other error responses (SERVFAIL, FORMERR, NOTIMP, ...). Default 0.
    pub errors_per_second: u32,
    /// Queries that miss the cache and would be resolved (random-subdomain floods), checked
    /// before any upstream work. Default 0.
    pub misses_per_second: u32,
    /// Every `slip`-th limited response is sent truncated (TC=1) instead of dropped; 0 drops
    /// all. Default 2.
    pub slip: u32,
    /// `slip` for the limited cache misses alone (`misses_per_second`), 0..=10: 0 drops
    /// every one, so a random-subdomain flood costs no answer. Default: `slip`.
    pub misses_slip: Option<u32>,
    /// Seconds over which a flood is remembered (the most debt an account can have, in
    /// seconds of its rate). Default 15.
    pub window: u32,
    /// IPv4 clients share an account per prefix of this length. Default 24.
    pub ipv4_prefix_len: u8,
    /// IPv6 clients share an account per prefix of this length. Default 56.
    pub ipv6_prefix_len: u8,
    /// NOERROR responses longer than this many bytes count as large. Default 1024.
    pub large_response_size: u16,
    /// Accounts in the fixed table (32 bytes each; rounded up to a power of two).
    /// Default 65536 (2 MiB).
    pub table_size: usize,
    /// A prefix with this many queries (or responses) of one class limited within one
    /// second is dropped by the kernel (a socket filter) for `kernel_drop_seconds`: none of
    /// its UDP queries reach juris then, except those carrying a server cookie. 0 (the
    /// default): never (design 0050).
    pub kernel_drop_after: u32,
    /// How long a prefix stays dropped in the kernel, 1..=3600 seconds. Default 10.
    pub kernel_drop_seconds: u32,
    /// The most prefixes dropped in the kernel at once, 1..=256. Default 64.
    pub kernel_drop_max_prefixes: usize,
    /// Prefixes never limited. Default none.
    pub exempt: Vec<String>,
    /// `[[server.rate_limit.prefix]]`: other rates for the clients of a prefix (the longest
    /// matching prefix wins; a rate not given is the global one).
    pub prefix: Vec<RawPrefixRates>,
}

impl Default for RawRateLimit {
    fn default() -> Self {
        let d = juris_server::RateLimitConfig::default();
        Self {
            queries_per_second: 0,
            responses_per_second: 0,
            large_per_second: 0,
            nxdomains_per_second: 0,
            refused_per_second: 0,
            errors_per_second: 0,
            misses_per_second: 0,
            slip: d.slip,
            misses_slip: None,
            window: d.window,
            ipv4_prefix_len: d.ipv4_prefix_len,
            ipv6_prefix_len: d.ipv6_prefix_len,
            large_response_size: d.large_response_size,
            table_size: d.table_size,
            kernel_drop_after: d.kernel_drop.after,
            kernel_drop_seconds: d.kernel_drop.seconds,
            kernel_drop_max_prefixes: d.kernel_drop.max_prefixes,
            exempt: Vec::new(),
            prefix: Vec::new(),
        }
    }
}

/// `[[server.rate_limit.prefix]]`.
#[derive(Debug, Clone, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct RawPrefixRates {
    /// The clients (an address or prefix).
    pub prefix: String,
    /// See `[server.rate_limit]`; absent: the global value.
    pub queries_per_second: Option<u32>,
    /// See `[server.rate_limit]`; absent: the global value.
    pub responses_per_second: Option<u32>,
    /// See `[server.rate_limit]`; absent: the global value.
    pub large_per_second: Option<u32>,
    /// See `[server.rate_limit]`; absent: the global value.
    pub nxdomains_per_second: Option<u32>,
    /// See `[server.rate_limit]`; absent: the global value.
    pub refused_per_second: Option<u32>,
    /// See `[server.rate_limit]`; absent: the global value.
    pub errors_per_second: Option<u32>,
    /// See `[server.rate_limit]`; absent: the global value.
    pub misses_per_second: Option<u32>,
}

/// `[server.rate_limit]`, validated; errors name the key.
pub fn rate_limit_config(raw: &RawRateLimit) -> Result<juris_server::RateLimitConfig, ConfigError> {
    use juris_server::{PrefixRates, RateClass, RateLimitConfig, Rates};
    let classes = |r: [u32; 7]| {
        let mut rates = Rates::default();
        for (class, rate) in RateClass::ALL.into_iter().zip(r) {
            rates.set(class, rate);
        }
        rates
    };
    let global = [
        raw.queries_per_second,
        raw.responses_per_second,
        raw.large_per_second,
        raw.nxdomains_per_second,
        raw.refused_per_second,
        raw.errors_per_second,
        raw.misses_per_second,
    ];
    let mut prefixes: Vec<PrefixRates> = prefixes("server.rate_limit.exempt", &raw.exempt)?
        .into_iter()
        .map(|prefix| PrefixRates {
            prefix,
            rates: Rates::default(),
        })
        .collect();
    for (i, p) in raw.prefix.iter().enumerate() {
        let key = format!("server.rate_limit.prefix[{i}]");
        let prefix = parse_prefix(&p.prefix).ok_or_else(|| {
            invalid(
                format!("{key}.prefix"),
                format!("{:?} is not an address or prefix", p.prefix),
            )
        })?;
        let own = [
            p.queries_per_second,
            p.responses_per_second,
            p.large_per_second,
            p.nxdomains_per_second,
            p.refused_per_second,
            p.errors_per_second,
            p.misses_per_second,
        ];
        let mut rates = global;
        for (rate, own) in rates.iter_mut().zip(own) {
            if let Some(own) = own {
                *rate = own;
            }
        }
        prefixes.push(PrefixRates {
            prefix,
            rates: classes(rates),
        });
    }
    if raw
        .misses_slip
        .is_some_and(|slip| slip > juris_server::ratelimit::MAX_SLIP)
    {
        return Err(invalid(
            "server.rate_limit.misses_slip",
            "must be between 0 and 10",
        ));
    }
    // Checked here to name the key; `RateLimitConfig::validate` checks the same again.
    if !(1..=juris_server::kdrop::MAX_SECONDS).contains(&raw.kernel_drop_seconds) {
        return Err(invalid(
            "server.rate_limit.kernel_drop_seconds",
            "must be between 1 and 3600",
        ));
    }
    if !(1..=juris_server::kdrop::MAX_PREFIXES).contains(&raw.kernel_drop_max_prefixes) {
        return Err(invalid(
            "server.rate_limit.kernel_drop_max_prefixes",
            "must be between 1 and 256",
        ));
    }
    let config = RateLimitConfig {
        rates: classes(global),
        prefixes,
        slip: raw.slip,
        misses_slip: raw.misses_slip,
        window: raw.window,
        ipv4_prefix_len: raw.ipv4_prefix_len,
        ipv6_prefix_len: raw.ipv6_prefix_len,
        large_response_size: raw.large_response_size,
        table_size: raw.table_size,
        kernel_drop: juris_server::kdrop::KernelDropConfig {
            after: raw.kernel_drop_after,
            seconds: raw.kernel_drop_seconds,
            max_prefixes: raw.kernel_drop_max_prefixes,
        },
    };
    config
        .validate()
        .map_err(|reason| invalid("server.rate_limit", reason))?;
    Ok(config)
}

/// `[server.cookies]`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RawCookies {
    /// Answer DNS cookies (a server cookie for every client cookie; BADCOOKIE over UDP for a
    /// server cookie that does not verify). Default true.
    pub enabled: bool,
    /// The 128-bit secret server cookies are made with, as 32 hex digits. Every server of a
    /// fleet with the same secret (and a synchronised clock) accepts the others' cookies.
    /// Default: a random secret per process.
    pub secret: Option<String>,
    /// A secret still accepted, never used for new cookies, while a new `secret` rolls out
    /// over a fleet (RFC 7873 §7.1). Default none.
    pub previous_secret: Option<String>,
    /// Derive a new key from `secret` every this many seconds (0 = use `secret` itself; at
    /// least 3600 otherwise). Default 86400.
    pub rotation_secs: u64,
}

impl Default for RawCookies {
    fn default() -> Self {
        Self {
            enabled: true,
            secret: None,
            previous_secret: None,
            rotation_secs: 86_400,
        }
    }
}

impl Default for RawServer {
    fn default() -> Self {
        Self {
            listen: vec![
                RawListener::Address("127.0.0.1:5353".into()),
                RawListener::Address("[::1]:5353".into()),
            ],
            threads: 1,
            allow: [
                "127.0.0.0/8",
                "::1/128",
                "10.0.0.0/8",
                "172.16.0.0/12",
                "192.168.0.0/16",
                "fc00::/7",
                "fe80::/10",
            ]
            .into_iter()
            .map(String::from)
            .collect(),
            proxy_protocol_from: Vec::new(),
            max_udp_payload: 1232,
            tcp_idle_timeout_ms: 10_000,
            tcp_max_connections: 1_000,
            udp_receive_buffer: 4 << 20,
            hot_answer_slots: juris_server::hot::HOT_SLOTS,
            tcp_max_in_flight: 64,
            data_dir: None,
            listen_tls: Vec::new(),
            listen_https: Vec::new(),
            listen_quic: Vec::new(),
            drain_timeout_ms: 5_000,
            rate_limit: RawRateLimit::default(),
            cookies: RawCookies::default(),
        }
    }
}

/// `[resolver]`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RawResolver {
    /// Root hints file (named.root format). Default: the IANA root hints built in.
    pub root_hints: Option<PathBuf>,
    /// Upstream resolvers (`ADDR` or `ADDR:PORT`); non-empty switches to forwarding.
    pub forward: Vec<String>,
    /// QNAME minimisation (RFC 9156). Default true.
    pub qname_minimisation: bool,
    /// Root priming (RFC 8109): ask the hints for the root NS set first. Default true.
    pub root_priming: bool,
    /// EDNS(0) UDP payload size advertised upstream. Default 1232.
    pub edns_buffer_size: u16,
    /// Timeout of one upstream query in milliseconds. Default 800.
    pub query_timeout_ms: u64,
    /// Total time for one client query in milliseconds. Default 10000.
    pub resolution_deadline_ms: u64,
    /// Use IPv4 upstreams. Default true.
    pub ipv4: bool,
    /// Use IPv6 upstreams. Default true.
    pub ipv6: bool,
    /// Allow upstreams on loopback/local addresses. Default false, but implied when the root
    /// hints or the forwarders are themselves on loopback.
    pub allow_loopback_upstreams: bool,
    /// `[resolver.limits]`: read straight into the resolver's own type (its fields are the
    /// keys, `juris_resolver::Limits`; checked by `Limits::validate`).
    pub limits: juris_resolver::Limits,
}

impl Default for RawResolver {
    fn default() -> Self {
        Self {
            root_hints: None,
            forward: Vec::new(),
            qname_minimisation: true,
            root_priming: true,
            edns_buffer_size: 1232,
            query_timeout_ms: 800,
            resolution_deadline_ms: 10_000,
            ipv4: true,
            ipv6: true,
            allow_loopback_upstreams: false,
            limits: juris_resolver::Limits::default(),
        }
    }
}

/// `[cache]`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RawCache {
    /// Memory bound: bytes, or with a suffix K, M, G (powers of 1024). Default `64M`.
    pub size: RawSize,
    /// Lowest TTL for positive answers, seconds. Default 0.
    pub min_ttl: u32,
    /// Highest TTL for positive answers, seconds. Default 86400.
    pub max_ttl: u32,
    /// Highest TTL for negative answers, seconds. Default 3600.
    pub max_negative_ttl: u32,
    /// How long a resolution failure is remembered, seconds. Default 5.
    pub servfail_ttl: u32,
    /// Serve stale answers when resolution fails (RFC 8767). Default false.
    pub serve_stale: bool,
    /// How long past expiry a stale answer may be served, seconds. Default 86400.
    pub stale_window: u32,
    /// TTL of stale answers, seconds. Default 30.
    pub stale_answer_ttl: u32,
    /// Refresh popular answers in the background near their expiry (Unbound's `prefetch`).
    /// Default false.
    pub prefetch: bool,
}

impl Default for RawCache {
    fn default() -> Self {
        Self {
            size: RawSize::Text("64M".into()),
            min_ttl: 0,
            max_ttl: 86_400,
            max_negative_ttl: 3_600,
            servfail_ttl: 5,
            serve_stale: false,
            stale_window: 86_400,
            stale_answer_ttl: 30,
            prefetch: false,
        }
    }
}

/// A size: an integer of bytes or a string such as `"64M"`.
#[derive(Debug, Clone, Deserialize, PartialEq, Eq)]
#[serde(untagged)]
pub enum RawSize {
    /// Bytes.
    Bytes(u64),
    /// With a suffix.
    Text(String),
}

/// `[log]`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RawLog {
    /// A tracing filter (`info`, `juris=debug,warn`, ...). `RUST_LOG` overrides it. Default `info`.
    pub level: String,
    /// `text` (the default: one human-readable line per event) or `json` (one JSON object
    /// per line, for log shippers). Needs a restart.
    pub format: LogFormat,
}

/// `log.format`.
#[derive(Debug, Clone, Copy, Default, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    /// One human-readable line per event (tracing's default format).
    #[default]
    Text,
    /// One JSON object per line: `timestamp`, `level`, `fields` (with `message`), `target`,
    /// `spans`.
    Json,
}

impl Default for RawLog {
    fn default() -> Self {
        Self {
            level: "info".into(),
            format: LogFormat::Text,
        }
    }
}

/// Command-line flags that override the file.
#[derive(Debug, Clone, Default)]
pub struct Overrides {
    /// `--listen` (replaces `server.listen` when given).
    pub listen: Vec<String>,
    /// `--root-hints`.
    pub root_hints: Option<PathBuf>,
    /// `--forward` (replaces `resolver.forward` when given).
    pub forward: Vec<String>,
    /// `--data-dir`.
    pub data_dir: Option<PathBuf>,
    /// `--threads`.
    pub threads: Option<usize>,
    /// `--orders` (replaces `policy.orders`).
    pub orders: Option<PathBuf>,
    /// `--geoip` (replaces `geoip.mmdb`).
    pub geoip: Option<PathBuf>,
    /// `--listen-tls` (replaces `server.listen_tls` when given).
    pub listen_tls: Vec<String>,
    /// `--listen-https` (replaces `server.listen_https` when given).
    pub listen_https: Vec<String>,
    /// `--listen-quic` (replaces `server.listen_quic` when given).
    pub listen_quic: Vec<String>,
    /// `--tls-cert`.
    pub tls_cert: Option<PathBuf>,
    /// `--tls-key`.
    pub tls_key: Option<PathBuf>,
    /// `--api-listen` (replaces `control.api_listen`).
    pub api_listen: Option<String>,
    /// `--trust-anchor` (replaces `dnssec.trust_anchors` when given).
    pub trust_anchors: Vec<PathBuf>,
    /// `--negative-trust-anchor` (added to `dnssec.negative_trust_anchors`).
    pub negative_trust_anchors: Vec<String>,
    /// `--no-dnssec` (sets `dnssec.enabled = false`).
    pub no_dnssec: bool,
    /// `--xfr-listen` (replaces `fleet.xfr_listen`).
    pub xfr_listen: Option<String>,
    /// `--tsig-key NAME:ALGORITHM:BASE64SECRET` (replaces `fleet.tsig_keys` when given).
    pub tsig_keys: Vec<String>,
    /// `--notify` (replaces `fleet.notify` when given).
    pub notify: Vec<String>,
    /// `--follow` (replaces `fleet.follow`).
    pub follow: Option<String>,
}

impl RawConfig {
    /// Reads and parses a file (strict: unknown keys are errors).
    pub fn from_file(path: &Path) -> Result<Self, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
            path: path.to_owned(),
            source,
        })?;
        let mut raw = Self::from_toml(&text, &path.display().to_string())?;
        // Relative paths in a file are relative to the file, not to the working directory.
        if let Some(base) = path.parent() {
            if let Some(hints) = raw.resolver.root_hints.as_mut() {
                if hints.is_relative() {
                    *hints = base.join(&*hints);
                }
            }
            for path in raw.dnssec.trust_anchors.iter_mut() {
                if path.is_relative() {
                    *path = base.join(&*path);
                }
            }
            for path in [
                raw.server.data_dir.as_mut(),
                raw.policy.orders.as_mut(),
                raw.geoip.mmdb.as_mut(),
                raw.tls.cert.as_mut(),
                raw.tls.key.as_mut(),
                raw.control.tls_cert.as_mut(),
                raw.control.tls_key.as_mut(),
                raw.control.tls_client_ca.as_mut(),
            ]
            .into_iter()
            .flatten()
            {
                if path.is_relative() {
                    *path = base.join(&*path);
                }
            }
        }
        Ok(raw)
    }

    /// Parses TOML text; `origin` names it in errors.
    pub fn from_toml(text: &str, origin: &str) -> Result<Self, ConfigError> {
        toml::from_str(text).map_err(|e| ConfigError::Parse {
            path: origin.to_owned(),
            message: e.to_string(),
        })
    }

    /// Applies command-line overrides.
    pub fn apply(&mut self, overrides: &Overrides) {
        if !overrides.listen.is_empty() {
            self.server.listen = overrides
                .listen
                .iter()
                .cloned()
                .map(RawListener::Address)
                .collect();
        }
        if let Some(hints) = &overrides.root_hints {
            self.resolver.root_hints = Some(hints.clone());
        }
        if !overrides.forward.is_empty() {
            self.resolver.forward = overrides.forward.clone();
        }
        if let Some(dir) = &overrides.data_dir {
            self.server.data_dir = Some(dir.clone());
        }
        if let Some(threads) = overrides.threads {
            self.server.threads = threads;
        }
        if let Some(orders) = &overrides.orders {
            self.policy.orders = Some(orders.clone());
        }
        if let Some(mmdb) = &overrides.geoip {
            self.geoip.mmdb = Some(mmdb.clone());
        }
        for (flag, key) in [
            (&overrides.listen_tls, &mut self.server.listen_tls),
            (&overrides.listen_https, &mut self.server.listen_https),
            (&overrides.listen_quic, &mut self.server.listen_quic),
        ] {
            if !flag.is_empty() {
                key.clone_from(flag);
            }
        }
        if let Some(cert) = &overrides.tls_cert {
            self.tls.cert = Some(cert.clone());
        }
        if let Some(key) = &overrides.tls_key {
            self.tls.key = Some(key.clone());
        }
        if let Some(listen) = &overrides.api_listen {
            self.control.api_listen = listen.clone();
        }
        if !overrides.trust_anchors.is_empty() {
            self.dnssec
                .trust_anchors
                .clone_from(&overrides.trust_anchors);
        }
        self.dnssec
            .negative_trust_anchors
            .extend(overrides.negative_trust_anchors.iter().cloned());
        if overrides.no_dnssec {
            self.dnssec.enabled = false;
        }
        if let Some(listen) = &overrides.xfr_listen {
            self.fleet.xfr_listen = Some(listen.clone());
        }
        if let Some(primary) = &overrides.follow {
            self.fleet.follow = Some(primary.clone());
        }
        if !overrides.notify.is_empty() {
            self.fleet.notify.clone_from(&overrides.notify);
        }
        if !overrides.tsig_keys.is_empty() {
            self.fleet.tsig_keys = overrides
                .tsig_keys
                .iter()
                .map(|flag| {
                    // Checked again (with the error naming the flag) by `Settings::from_raw`.
                    let mut parts = flag.splitn(3, ':');
                    RawTsigKey {
                        name: parts.next().unwrap_or_default().to_owned(),
                        algorithm: parts.next().unwrap_or_default().to_owned(),
                        secret: parts.next().unwrap_or_default().to_owned(),
                    }
                })
                .collect();
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Validated layer.
// ---------------------------------------------------------------------------------------------

/// One validated listener.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Listener {
    /// Where to bind.
    pub addr: SocketAddr,
    /// Serve UDP.
    pub udp: bool,
    /// Serve TCP.
    pub tcp: bool,
    /// Jurisdiction pin (upper-case ISO 3166-1 alpha-2).
    pub country: Option<CountryCode>,
}

/// A list of addresses or prefixes under `key`; an error names the element (`key[i]`).
fn prefixes(key: &str, values: &[String]) -> Result<Vec<IpNet>, ConfigError> {
    values
        .iter()
        .enumerate()
        .map(|(i, a)| {
            parse_prefix(a).ok_or_else(|| {
                invalid(
                    format!("{key}[{i}]"),
                    format!("{a:?} is not an address or prefix"),
                )
            })
        })
        .collect()
}

/// `server.data_dir` when not configured (relative to the working directory).
pub const DEFAULT_DATA_DIR: &str = "juris-data";

/// Everything `juris serve` needs, checked.
#[derive(Debug, Clone)]
pub struct Settings {
    /// Listeners.
    pub listeners: Vec<Listener>,
    /// Whether the listeners are the built-in defaults (then an unavailable IPv6 loopback is
    /// skipped with a warning instead of failing).
    pub default_listeners: bool,
    /// UDP worker threads (resolved: never 0).
    pub threads: usize,
    /// Allowed client prefixes.
    pub allow: Vec<IpNet>,
    /// Trusted PROXY protocol senders (empty: off).
    pub proxy_protocol_from: Vec<IpNet>,
    /// Largest UDP response.
    pub max_udp_payload: u16,
    /// TCP idle timeout.
    pub tcp_idle_timeout: Duration,
    /// TCP connection limit.
    pub tcp_max_connections: usize,
    /// `SO_RCVBUF` of the UDP listener sockets (0: the kernel's default).
    pub udp_receive_buffer: usize,
    /// Hot-answer slots per UDP worker.
    pub hot_answer_slots: usize,
    /// Queries in flight per TCP connection.
    pub tcp_max_in_flight: usize,
    /// How long shutdown lets TCP, DoT and DoH connections finish.
    pub drain_timeout: Duration,
    /// `[server.rate_limit]`, validated.
    pub rate_limit: juris_server::RateLimitConfig,
    /// State directory.
    pub data_dir: PathBuf,
    /// DNS cookies as a server.
    pub cookies: juris_server::CookieConfig,
    /// Resolver settings.
    pub resolver: juris_resolver::ResolverConfig,
    /// Cache settings.
    pub cache: juris_resolver::cache::CacheConfig,
    /// Log filter.
    pub log_level: String,
    /// Log line format.
    pub log_format: LogFormat,
    /// The query log, when enabled.
    pub querylog: Option<crate::querylog::QueryLogSettings>,
    /// dnstap output, when a socket is configured.
    pub dnstap: Option<crate::dnstap::DnstapSettings>,
    /// Blocked-answer settings and withdrawn jurisdictions.
    pub policy: juris_server::PolicySettings,
    /// The order documents (file or directory), if any.
    pub orders: Option<PathBuf>,
    /// How often `orders` is checked for changes.
    pub watch_interval: Duration,
    /// Structured-error signal option (`None`: only the empty EDE option).
    pub structured_error_option_code: Option<u16>,
    /// GeoIP database, field path and trusted ECS forwarders, validated (the database file is
    /// read when the classifier is built).
    pub geo: juris_geo::GeoSettings,
    /// Encrypted listeners (DoT, DoH, DoQ), certificate and limits; `None` without any.
    pub transports: Option<juris_transport::TransportConfig>,
    /// The control plane's settings (four-eyes, protected list as written).
    pub control: juris_control::ControlConfig,
    /// The protected list `control.protected` asks for, parsed (no published list).
    pub protected_configured: juris_control::ProtectedList,
    /// The protected list in force: the same for store orders (held as `needs_review`), file
    /// orders (held by the loader) and candidate mining, one cell shared by all. Holds
    /// [`Settings::protected_configured`] until [`Settings::load_protected`] adds the
    /// published lists of the data directory (at start, and again on SIGHUP).
    pub protected: juris_control::SharedProtected,
    /// Where the admin API listens; `None` with `control.api_listen = "none"`.
    pub api_listen: Option<SocketAddr>,
    /// Where the public transparency page listens too (`control.public_listen`), if anywhere.
    pub public_listen: Option<SocketAddr>,
    /// HTTPS for the admin API and the public listener (`control.tls_cert`, `tls_key`,
    /// `tls_client_ca`); `None`: plain HTTP.
    pub api_tls: Option<ApiTls>,
    /// Mirror candidates (checked).
    pub candidates: juris_control::candidates::CandidatesConfig,
    /// `[fleet]`: publishing and following.
    pub fleet: crate::fleet::FleetSettings,
    /// `[[fleet.rpz_feed]]`: third-party RPZ zones mapped onto orders.
    pub rpz_feeds: Vec<crate::fleet::rpz_feed::RpzFeedSettings>,
}

/// The admin API's certificate and, optionally, the CA its clients' certificates must chain to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ApiTls {
    /// Certificate chain and key (`control.tls_cert`, `control.tls_key`).
    pub files: juris_transport::TlsFiles,
    /// Client CA certificates (PEM, `control.tls_client_ca`); `None`: no client certificate is
    /// asked for.
    pub client_ca: Option<PathBuf>,
}

/// `[control]`'s TLS keys, checked: both of `tls_cert` and `tls_key` or neither; a client CA
/// only with them; plain HTTP beyond loopback only with `danger_api_without_tls`.
fn api_tls(
    control: &juris_control::ControlConfig,
    listen: Option<SocketAddr>,
) -> Result<Option<ApiTls>, ConfigError> {
    let tls = match (&control.tls_cert, &control.tls_key) {
        (Some(cert), Some(key)) => Some(ApiTls {
            files: juris_transport::TlsFiles {
                cert: cert.clone(),
                key: key.clone(),
            },
            client_ca: control.tls_client_ca.clone(),
        }),
        (Some(_), None) => return Err(invalid("control.tls_key", "is needed with tls_cert")),
        (None, Some(_)) => return Err(invalid("control.tls_cert", "is needed with tls_key")),
        (None, None) if control.tls_client_ca.is_some() => {
            return Err(invalid(
                "control.tls_client_ca",
                "needs control.tls_cert and control.tls_key",
            ))
        }
        (None, None) => None,
    };
    if let Some(address) = listen {
        if tls.is_none() && !address.ip().is_loopback() && !control.danger_api_without_tls {
            return Err(invalid(
                "control.api_listen",
                format!(
                    "{address} is beyond loopback and the admin API has no TLS (tokens would \
                     cross the network in clear): set control.tls_cert and control.tls_key, or \
                     control.danger_api_without_tls = true to serve plain HTTP anyway"
                ),
            ));
        }
    }
    Ok(tls)
}

impl Settings {
    /// Puts in force the configured protected list plus every published list of the data
    /// directory (`juris safeguards update`), read now: at start and on SIGHUP. Returns whether
    /// the list in force changed. An unreadable list changes nothing; the error names it.
    pub fn load_protected(&self) -> Result<bool, ConfigError> {
        let mut list = self.protected_configured.clone();
        crate::safeguards::add_all(&mut list, &self.data_dir)
            .map_err(|e| invalid("control.protected", format!("{e:#}")))?;
        Ok(self.protected.replace(list))
    }

    /// Validates a raw configuration: every error names its key.
    pub fn from_raw(raw: &RawConfig) -> Result<Self, ConfigError> {
        let default_listeners = raw.server.listen == RawServer::default().listen;
        let mut listeners = Vec::new();
        for (i, listener) in raw.server.listen.iter().enumerate() {
            let key = format!("server.listen[{i}]");
            let (address, udp, tcp, country) = match listener {
                RawListener::Address(a) => (a.as_str(), true, true, None),
                RawListener::Table(t) => (t.address.as_str(), t.udp, t.tcp, t.country.as_deref()),
            };
            let addr: SocketAddr = address.parse().map_err(|_| {
                invalid(
                    &key,
                    format!("{address:?} is not ADDR:PORT (IPv6 as [::1]:5353)"),
                )
            })?;
            if !udp && !tcp {
                return Err(invalid(&key, "neither udp nor tcp is enabled"));
            }
            let country = country
                .map(|c| {
                    parse_jurisdiction(c).ok_or_else(|| {
                        invalid(
                            format!("{key}.country"),
                            format!("{c:?} is not an ISO 3166-1 alpha-2 code"),
                        )
                    })
                })
                .transpose()?;
            listeners.push(Listener {
                addr,
                udp,
                tcp,
                country,
            });
        }
        if listeners.is_empty() {
            return Err(invalid("server.listen", "at least one listener is needed"));
        }
        let threads = match raw.server.threads {
            0 => std::thread::available_parallelism().map_or(1, |n| n.get()),
            n if n > 1024 => return Err(invalid("server.threads", "more than 1024 threads")),
            n => n,
        };
        let allow = prefixes("server.allow", &raw.server.allow)?;
        let proxy_protocol_from = prefixes(
            "server.proxy_protocol_from",
            &raw.server.proxy_protocol_from,
        )?;
        if !(512..=65_535).contains(&raw.server.max_udp_payload) {
            return Err(invalid(
                "server.max_udp_payload",
                "must be between 512 and 65535",
            ));
        }
        if raw.server.tcp_idle_timeout_ms == 0 {
            return Err(invalid("server.tcp_idle_timeout_ms", "must be above 0"));
        }
        if raw.server.tcp_max_connections == 0 {
            return Err(invalid("server.tcp_max_connections", "must be above 0"));
        }
        if raw.server.udp_receive_buffer > 1 << 30 {
            return Err(invalid(
                "server.udp_receive_buffer",
                "must be at most 1073741824 (1 GiB)",
            ));
        }
        let slots = raw.server.hot_answer_slots;
        if !slots.is_power_of_two() || !(2..=juris_server::hot::MAX_HOT_SLOTS).contains(&slots) {
            return Err(invalid(
                "server.hot_answer_slots",
                "must be a power of two from 2 to 1048576",
            ));
        }
        if !(1..=65_535).contains(&raw.server.tcp_max_in_flight) {
            return Err(invalid(
                "server.tcp_max_in_flight",
                "must be between 1 and 65535",
            ));
        }
        if raw.server.drain_timeout_ms > 600_000 {
            return Err(invalid(
                "server.drain_timeout_ms",
                "must be at most 600000 (ten minutes)",
            ));
        }

        let cookies = cookie_config(&raw.server.cookies)?;
        let mut resolver = resolver_config(&raw.resolver)?;
        resolver.dnssec = dnssec_config(&raw.dnssec)?;
        let cache = cache_config(&raw.cache)?;
        if raw.log.level.trim().is_empty() {
            return Err(invalid("log.level", "is empty"));
        }
        let policy = policy_settings(&raw.policy)?;
        if raw.policy.watch_interval_ms == 0 || raw.policy.watch_interval_ms > 60_000 {
            return Err(invalid(
                "policy.watch_interval_ms",
                "must be between 1 and 60000",
            ));
        }
        let geo = juris_geo::GeoSettings::from_config(&raw.geoip)
            .map_err(|e| invalid("geoip.field_path", e.to_string()))?;
        let transports = transport_config(&raw.server, &raw.tls)?;
        let api_listen = match raw.control.api_listen.trim() {
            "none" => None,
            address => Some(address.parse::<SocketAddr>().map_err(|_| {
                invalid(
                    "control.api_listen",
                    format!("{address:?} is not ADDR:PORT (or \"none\")"),
                )
            })?),
        };
        let public_listen = match raw.control.public_listen.as_deref().map(str::trim) {
            None | Some("none") => None,
            Some(address) => Some(address.parse::<SocketAddr>().map_err(|_| {
                invalid(
                    "control.public_listen",
                    format!("{address:?} is not ADDR:PORT (or \"none\")"),
                )
            })?),
        };
        if raw.control.stats_flush_seconds == 0 {
            return Err(invalid(
                "control.stats_flush_seconds",
                "must be at least 1 (seconds between flushes of the per-day counters)",
            ));
        }
        if raw.control.stats_retention_days == 0 {
            return Err(invalid(
                "control.stats_retention_days",
                "must be at least 1 (days of per-day counters kept)",
            ));
        }
        let api_tls = api_tls(&raw.control, api_listen)?;
        // The operators' published lists are read by `load_protected`, not here: parsing the
        // configuration (every CLI command, each SIGHUP) reads no data directory.
        let protected_configured =
            juris_control::ProtectedList::from_config(&raw.control.protected)
                .map_err(|e| invalid(e.field(), e.reason()))?;
        let data_dir = raw
            .server
            .data_dir
            .clone()
            .unwrap_or_else(|| PathBuf::from(DEFAULT_DATA_DIR));
        raw.candidates
            .validate()
            .map_err(|(key, reason)| invalid(key, reason))?;
        let fleet = fleet_settings(&raw.fleet)?;
        let rpz_feeds = rpz_feeds(&raw.fleet.rpz_feed)?;
        Ok(Self {
            listeners,
            default_listeners,
            threads,
            allow,
            proxy_protocol_from,
            max_udp_payload: raw.server.max_udp_payload,
            tcp_idle_timeout: Duration::from_millis(raw.server.tcp_idle_timeout_ms),
            tcp_max_connections: raw.server.tcp_max_connections,
            udp_receive_buffer: raw.server.udp_receive_buffer,
            hot_answer_slots: raw.server.hot_answer_slots,
            tcp_max_in_flight: raw.server.tcp_max_in_flight,
            drain_timeout: Duration::from_millis(raw.server.drain_timeout_ms),
            rate_limit: rate_limit_config(&raw.server.rate_limit)?,
            data_dir,
            cookies,
            resolver,
            cache,
            log_level: raw.log.level.clone(),
            log_format: raw.log.format,
            querylog: match &raw.querylog {
                q if !q.enabled => None,
                q => Some(crate::querylog::QueryLogSettings {
                    path: q.path.clone().filter(|p| p.as_os_str() != "-"),
                    client: client_address("querylog.client", &q.client)?,
                    queue: queue("querylog.queue", q.queue)?,
                }),
            },
            dnstap: match &raw.dnstap.socket {
                None => None,
                Some(socket) => Some(crate::dnstap::DnstapSettings {
                    socket: socket.clone(),
                    client: client_address("dnstap.client", &raw.dnstap.client)?,
                    queue: queue("dnstap.queue", raw.dnstap.queue)?,
                    identity: raw.dnstap.identity.clone(),
                    resolver_messages: raw.dnstap.resolver_messages,
                }),
            },
            policy,
            orders: raw.policy.orders.clone(),
            watch_interval: Duration::from_millis(raw.policy.watch_interval_ms),
            structured_error_option_code: match raw.policy.structured_error_option_code {
                0 => None,
                code => Some(code),
            },
            geo,
            transports,
            control: raw.control.clone(),
            protected: juris_control::SharedProtected::new(protected_configured.clone()),
            protected_configured,
            api_listen,
            public_listen,
            api_tls,
            candidates: raw.candidates.clone(),
            fleet,
            rpz_feeds,
        })
    }
}

/// Where the encrypted listeners go when a certificate is configured but no listener is:
/// DoT and DoQ on 127.0.0.1:8853, DoH on 127.0.0.1:8443 (loopback, unprivileged ports, as
/// the plain defaults on 5353), so `juris cert self-signed` then `--tls-cert/--tls-key` is
/// enough to try them.
pub const DEFAULT_TLS_LISTEN: &str = "127.0.0.1:8853";
/// See [`DEFAULT_TLS_LISTEN`].
pub const DEFAULT_HTTPS_LISTEN: &str = "127.0.0.1:8443";
/// See [`DEFAULT_TLS_LISTEN`].
pub const DEFAULT_QUIC_LISTEN: &str = "127.0.0.1:8853";

/// `[tls]` and the encrypted listen lists, validated; the certificate and key are loaded
/// once here so that `check-config` reports a bad file.
fn transport_config(
    server: &RawServer,
    raw: &RawTls,
) -> Result<Option<juris_transport::TransportConfig>, ConfigError> {
    use juris_transport::{EncryptedListener, Protocol};
    let none_configured = server.listen_tls.is_empty()
        && server.listen_https.is_empty()
        && server.listen_quic.is_empty();
    let (cert, key) = match (&raw.cert, &raw.key) {
        (None, None) if none_configured => return Ok(None),
        (Some(cert), Some(key)) => (cert.clone(), key.clone()),
        (None, _) => {
            return Err(invalid(
                "tls.cert",
                "the encrypted listeners need a certificate (--tls-cert FILE; try `juris cert self-signed --name localhost`)",
            ))
        }
        (Some(_), None) => return Err(invalid("tls.key", "a certificate needs its key (--tls-key FILE)")),
    };
    let defaults = [
        (
            &server.listen_tls,
            "server.listen_tls",
            Protocol::Tls,
            DEFAULT_TLS_LISTEN,
        ),
        (
            &server.listen_https,
            "server.listen_https",
            Protocol::Https,
            DEFAULT_HTTPS_LISTEN,
        ),
        (
            &server.listen_quic,
            "server.listen_quic",
            Protocol::Quic,
            DEFAULT_QUIC_LISTEN,
        ),
    ];
    let mut listeners = Vec::new();
    for (addresses, key_name, protocol, default) in defaults {
        if none_configured {
            if let Ok(addr) = default.parse() {
                listeners.push(EncryptedListener::new(protocol, addr));
            }
            continue;
        }
        for (i, address) in addresses.iter().enumerate() {
            let addr: SocketAddr = address.parse().map_err(|_| {
                invalid(
                    format!("{key_name}[{i}]"),
                    format!("{address:?} is not ADDR:PORT (IPv6 as [::1]:853)"),
                )
            })?;
            listeners.push(EncryptedListener::new(protocol, addr));
        }
    }
    let trusted_proxies = prefixes("tls.trusted_proxies", &raw.trusted_proxies)?;
    let config = juris_transport::TransportConfig {
        listeners,
        tls: juris_transport::TlsFiles { cert, key },
        limits: juris_transport::Limits {
            max_connections: raw.max_connections,
            max_streams: raw.max_streams,
            idle_timeout: Duration::from_millis(raw.idle_timeout_ms),
            handshake_timeout: Duration::from_millis(raw.handshake_timeout_ms),
            request_timeout: Duration::from_millis(raw.request_timeout_ms),
            max_request_size: raw.max_request_size,
        },
        trusted_proxies,
    };
    config.validate().map_err(|reason| invalid("tls", reason))?;
    juris_transport::CertificateStore::load(&config.tls)
        .map_err(|e| invalid("tls", e.to_string()))?;
    Ok(Some(config))
}

fn policy_settings(raw: &RawPolicy) -> Result<juris_server::PolicySettings, ConfigError> {
    if raw.block_ttl > 86_400 {
        return Err(invalid("policy.block_ttl", "must be at most 86400"));
    }
    let withdrawn = raw
        .withdraw
        .iter()
        .enumerate()
        .map(|(i, code)| {
            parse_jurisdiction(code).ok_or_else(|| {
                invalid(
                    format!("policy.withdraw[{i}]"),
                    format!("{code:?} is not an ISO 3166-1 alpha-2 code"),
                )
            })
        })
        .collect::<Result<Vec<_>, _>>()?;
    for (key, name) in [
        ("policy.soa_mname", &raw.soa_mname),
        ("policy.soa_rname", &raw.soa_rname),
    ] {
        if juris_server::block::name_to_wire(name).is_none() {
            return Err(invalid(key, format!("{name:?} is not a domain name")));
        }
    }
    Ok(juris_server::PolicySettings {
        block_ttl: raw.block_ttl,
        withdrawn,
        soa_mname: raw.soa_mname.clone(),
        soa_rname: raw.soa_rname.clone(),
    })
}

fn resolver_config(raw: &RawResolver) -> Result<juris_resolver::ResolverConfig, ConfigError> {
    use juris_resolver::{Mode, ResolverConfig};

    let mode = if raw.forward.is_empty() {
        let root_hints = match &raw.root_hints {
            Some(path) => {
                let text = std::fs::read_to_string(path).map_err(|e| {
                    invalid("resolver.root_hints", format!("{}: {e}", path.display()))
                })?;
                juris_resolver::parse_root_hints(&text).map_err(|e| {
                    invalid("resolver.root_hints", format!("{}: {e}", path.display()))
                })?
            }
            None => juris_resolver::builtin_root_hints(),
        };
        if root_hints.is_empty() {
            return Err(invalid(
                "resolver.root_hints",
                "no root server addresses in the file",
            ));
        }
        Mode::Recursive { root_hints }
    } else {
        let upstreams = raw
            .forward
            .iter()
            .enumerate()
            .map(|(i, f)| {
                parse_upstream(f).ok_or_else(|| {
                    invalid(
                        format!("resolver.forward[{i}]"),
                        format!("{f:?} is not ADDR or ADDR:PORT"),
                    )
                })
            })
            .collect::<Result<Vec<_>, _>>()?;
        Mode::Forward { upstreams }
    };
    if !raw.ipv4 && !raw.ipv6 {
        return Err(invalid("resolver.ipv4", "ipv4 and ipv6 are both off"));
    }
    if raw.edns_buffer_size < 512 {
        return Err(invalid("resolver.edns_buffer_size", "must be at least 512"));
    }
    if raw.query_timeout_ms == 0 {
        return Err(invalid("resolver.query_timeout_ms", "must be above 0"));
    }
    if raw.resolution_deadline_ms < raw.query_timeout_ms {
        return Err(invalid(
            "resolver.resolution_deadline_ms",
            "must be at least resolver.query_timeout_ms",
        ));
    }
    const LIMITS: &str = "resolver.limits.";
    raw.limits
        .validate()
        .map_err(|e| invalid(format!("{LIMITS}{}", e.field), e.reason(LIMITS)))?;
    // An operator who points the hints or forwarders at loopback means it.
    let upstreams_on_loopback = match &mode {
        Mode::Recursive { root_hints } => root_hints.iter().all(|(_, a)| a.is_loopback()),
        Mode::Forward { upstreams } => upstreams.iter().all(|a| a.ip().is_loopback()),
    };
    Ok(ResolverConfig {
        mode,
        qname_minimisation: raw.qname_minimisation,
        root_priming: raw.root_priming,
        edns_buffer_size: raw.edns_buffer_size,
        query_timeout: Duration::from_millis(raw.query_timeout_ms),
        resolution_deadline: Duration::from_millis(raw.resolution_deadline_ms),
        limits: raw.limits.clone(),
        ipv4: raw.ipv4,
        ipv6: raw.ipv6,
        allow_loopback_upstreams: raw.allow_loopback_upstreams || upstreams_on_loopback,
        ..ResolverConfig::default()
    })
}

fn cache_config(raw: &RawCache) -> Result<juris_resolver::cache::CacheConfig, ConfigError> {
    let max_bytes = match &raw.size {
        RawSize::Bytes(b) => *b,
        RawSize::Text(t) => parse_size(t).ok_or_else(|| {
            invalid(
                "cache.size",
                format!("{t:?} is not a size (e.g. 65536, \"64M\", \"1G\")"),
            )
        })?,
    };
    if max_bytes < 64 * 1024 {
        return Err(invalid("cache.size", "must be at least 64K"));
    }
    if raw.min_ttl > raw.max_ttl {
        return Err(invalid("cache.min_ttl", "is above cache.max_ttl"));
    }
    if raw.servfail_ttl == 0 || raw.servfail_ttl > 300 {
        return Err(invalid(
            "cache.servfail_ttl",
            "must be between 1 and 300 (RFC 9520)",
        ));
    }
    Ok(juris_resolver::cache::CacheConfig {
        max_bytes,
        min_ttl: raw.min_ttl,
        max_ttl: raw.max_ttl,
        max_negative_ttl: raw.max_negative_ttl,
        servfail_ttl: raw.servfail_ttl,
        stale_window: raw.serve_stale.then_some(raw.stale_window),
        stale_answer_ttl: raw.stale_answer_ttl,
        prefetch: raw.prefetch,
    })
}

/// `64M` → 67108864 (the resolver's parser, shared with `resolver.limits.aggressive_nsec_bytes`).
pub use juris_resolver::parse_size;

/// `it` → `IT`: two letters that ISO 3166-1 assigns as a country code.
pub fn parse_jurisdiction(text: &str) -> Option<CountryCode> {
    let code = CountryCode::parse(text).ok()?;
    let assigned = juris_policy::Country::from_ascii(&code.as_bytes())
        .is_ok_and(|country| country.is_assigned());
    assigned.then_some(code)
}

/// `10.0.0.0/8` or a bare address (as a host prefix).
pub fn parse_prefix(text: &str) -> Option<IpNet> {
    text.parse::<IpNet>()
        .ok()
        .or_else(|| text.parse::<IpAddr>().ok().map(IpNet::from))
        .map(|n| n.trunc())
}

/// `192.0.2.1`, `192.0.2.1:5300`, `2001:db8::1`, `[2001:db8::1]:5300`.
pub fn parse_upstream(text: &str) -> Option<SocketAddr> {
    text.parse::<SocketAddr>().ok().or_else(|| {
        text.parse::<IpAddr>()
            .ok()
            .map(|ip| SocketAddr::new(ip, 53))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_validate() {
        let settings = Settings::from_raw(&RawConfig::default()).unwrap();
        assert_eq!(settings.listeners.len(), 2);
        assert!(settings.default_listeners);
        assert_eq!(
            settings.listeners[0].addr,
            "127.0.0.1:5353".parse().unwrap()
        );
        assert!(matches!(
            settings.resolver.mode,
            juris_resolver::Mode::Recursive { .. }
        ));
        assert!(!settings.resolver.allow_loopback_upstreams);
        assert_eq!(settings.cache.max_bytes, 64 << 20);
    }

    #[test]
    fn dnssec_section_and_flags() {
        let settings = Settings::from_raw(&RawConfig::default()).unwrap();
        assert_eq!(
            settings.resolver.dnssec,
            juris_resolver::dnssec::ValidatorConfig::default()
        );
        let dir = tempfile::tempdir().unwrap();
        let anchors = dir.path().join("test.key");
        std::fs::write(&anchors, "test. IN DS 1 13 2 00ff\nbroken line\n").unwrap();
        let file = dir.path().join("juris.toml");
        std::fs::write(
            &file,
            "[dnssec]\nenabled = true\ntrust_anchors = [\"test.key\"]\n\
             negative_trust_anchors = [\"example.org\"]\nnsec3_max_iterations = 50\nbogus_ttl = 30\n\
             aggressive_nsec = false\nroot_key_sentinel = false\n",
        )
        .unwrap();
        let mut raw = RawConfig::from_file(&file).unwrap();
        assert_eq!(raw.dnssec.trust_anchors, [anchors.clone()]);
        let err = Settings::from_raw(&raw).unwrap_err().to_string();
        assert!(err.contains("test.key:2"), "{err}");
        std::fs::write(&anchors, "test. IN DS 1 13 2 00ff\n").unwrap();
        let settings = Settings::from_raw(&raw).unwrap();
        assert_eq!(settings.resolver.dnssec.nsec3_max_iterations, 50);
        assert!(!settings.resolver.dnssec.aggressive_nsec);
        assert!(!settings.resolver.dnssec.root_key_sentinel);
        assert_eq!(settings.resolver.dnssec.bogus_ttl, Duration::from_secs(30));
        raw.apply(&Overrides {
            negative_trust_anchors: vec!["example.net".into()],
            no_dnssec: true,
            ..Overrides::default()
        });
        let settings = Settings::from_raw(&raw).unwrap();
        assert!(!settings.resolver.dnssec.enabled);
        assert_eq!(
            settings.resolver.dnssec.negative_trust_anchors,
            ["example.org", "example.net"]
        );
    }

    #[test]
    fn table_bounds_are_read_and_checked_by_name() {
        let raw = RawConfig::from_toml(
            "[resolver.limits]\ninfra_servers = 500\ndelegation_entries = 600\nredirect_entries = 700\n\
             referral_ds_zones = 800\nvalidated_zones = 900\naggressive_nsec_zones = 100\n\
             remembered_failures = 200\n",
            "t.toml",
        )
        .unwrap();
        let l = Settings::from_raw(&raw).unwrap().resolver.limits;
        assert_eq!(
            [
                l.infra_servers,
                l.delegation_entries,
                l.redirect_entries,
                l.referral_ds_zones,
                l.validated_zones,
                l.aggressive_nsec_zones,
                l.remembered_failures
            ],
            [500, 600, 700, 800, 900, 100, 200]
        );
        let raw = RawConfig::from_toml("[resolver.limits]\nvalidated_zones = -1\n", "t.toml");
        assert!(raw.is_err(), "a negative bound does not read");
        let raw = RawConfig::from_toml("[resolver.limits]\ninfra_server = 5\n", "t.toml");
        assert!(raw.unwrap_err().to_string().contains("infra_server"));
    }

    #[test]
    fn the_udp_receive_buffer_is_read_defaulted_and_checked_by_name() {
        let settings = Settings::from_raw(&RawConfig::default()).unwrap();
        assert_eq!(settings.udp_receive_buffer, 4 << 20);
        assert_eq!(
            crate::serve::server_config(&settings).udp_receive_buffer,
            4 << 20
        );
        let raw = RawConfig::from_toml("[server]\nudp_receive_buffer = 0\n", "t.toml").unwrap();
        assert_eq!(Settings::from_raw(&raw).unwrap().udp_receive_buffer, 0);
        let raw =
            RawConfig::from_toml("[server]\nudp_receive_buffer = 2000000000\n", "t.toml").unwrap();
        let error = Settings::from_raw(&raw).unwrap_err().to_string();
        assert!(error.contains("server.udp_receive_buffer"), "{error}");
    }

    /// Design 0048: the bounds that were constants are keys, defaulted as before and refused
    /// by name when out of range.
    #[test]
    fn memory_bound_keys_are_read_defaulted_and_checked_by_name() {
        let settings = Settings::from_raw(&RawConfig::default()).unwrap();
        let server = crate::serve::server_config(&settings);
        assert_eq!(server.hot_answer_slots, 8192);
        assert_eq!(server.tcp_max_in_flight, 64);
        assert_eq!(settings.resolver.limits.aggressive_nsec_ranges, 256);
        assert_eq!(settings.resolver.limits.aggressive_nsec_wildcards, 32);
        let raw = RawConfig::from_toml(
            "[server]\nhot_answer_slots = 1024\ntcp_max_in_flight = 8\n\
             [resolver.limits]\naggressive_nsec_ranges = 16\naggressive_nsec_wildcards = 4\n",
            "t.toml",
        )
        .unwrap();
        let settings = Settings::from_raw(&raw).unwrap();
        let server = crate::serve::server_config(&settings);
        assert_eq!(
            (server.hot_answer_slots, server.tcp_max_in_flight),
            (1024, 8)
        );
        assert!(server.validate().is_ok());
        let limits = &settings.resolver.limits;
        assert_eq!(
            (
                limits.aggressive_nsec_ranges,
                limits.aggressive_nsec_wildcards
            ),
            (16, 4)
        );
        for (text, key) in [
            (
                "[server]\nhot_answer_slots = 1000\n",
                "server.hot_answer_slots",
            ),
            (
                "[server]\nhot_answer_slots = 1\n",
                "server.hot_answer_slots",
            ),
            (
                "[server]\nhot_answer_slots = 2097152\n",
                "server.hot_answer_slots",
            ),
            (
                "[server]\ntcp_max_in_flight = 0\n",
                "server.tcp_max_in_flight",
            ),
            (
                "[resolver.limits]\naggressive_nsec_ranges = 0\n",
                "resolver.limits.aggressive_nsec_ranges",
            ),
            (
                "[resolver.limits]\naggressive_nsec_wildcards = 0\n",
                "resolver.limits.aggressive_nsec_wildcards",
            ),
            (
                "[resolver.limits]\naggressive_nsec_bytes = 65535\n",
                "resolver.limits.aggressive_nsec_bytes",
            ),
            (
                "[resolver.limits]\naggressive_nsec_bytes = \"1K\"\n",
                "resolver.limits.aggressive_nsec_bytes",
            ),
        ] {
            let raw = RawConfig::from_toml(text, "t.toml").unwrap();
            let error = Settings::from_raw(&raw).unwrap_err().to_string();
            assert!(error.contains(key), "{text}: {error}");
        }
    }

    /// Design 0052: the aggressive NSEC store's byte budget is a size like `cache.size`
    /// (bytes or `"32M"`), 32 MiB by default, refused by name when it is no size or under 64K.
    #[test]
    fn the_aggressive_nsec_byte_budget_is_a_size_read_and_checked_by_name() {
        let settings = Settings::from_raw(&RawConfig::default()).unwrap();
        assert_eq!(settings.resolver.limits.aggressive_nsec_bytes, 32 << 20);
        for (value, bytes) in [
            ("\"16M\"", 16 << 20),
            ("\"512KiB\"", 512 << 10),
            ("\"1G\"", 1 << 30),
            ("65536", 65536),
        ] {
            let raw = RawConfig::from_toml(
                &format!("[resolver.limits]\naggressive_nsec_bytes = {value}\n"),
                "t.toml",
            )
            .unwrap();
            let limits = Settings::from_raw(&raw).unwrap().resolver.limits;
            assert_eq!(limits.aggressive_nsec_bytes, bytes, "{value}");
        }
        let raw = RawConfig::from_toml(
            "[resolver.limits]\naggressive_nsec_bytes = \"1K\"\n",
            "t.toml",
        )
        .unwrap();
        let error = Settings::from_raw(&raw).unwrap_err().to_string();
        assert!(
            error.contains("resolver.limits.aggressive_nsec_bytes") && error.contains("64K"),
            "{error}"
        );
        for value in ["\"lots\"", "\"12X\"", "-1"] {
            let error = RawConfig::from_toml(
                &format!("[resolver.limits]\naggressive_nsec_bytes = {value}\n"),
                "t.toml",
            )
            .unwrap_err()
            .to_string();
            assert!(error.contains("aggressive_nsec_bytes"), "{value}: {error}");
        }
    }

    /// Design 0051: the NS names kept per zone cut and the addresses kept per name server
    /// are keys, defaulted (13, 8) and refused by name at 0.
    #[test]
    fn zone_cut_caps_are_read_defaulted_and_checked_by_name() {
        let settings = Settings::from_raw(&RawConfig::default()).unwrap();
        let limits = &settings.resolver.limits;
        assert_eq!(
            (limits.max_ns_per_zone_cut, limits.max_addresses_per_ns),
            (13, 8)
        );
        let raw = RawConfig::from_toml(
            "[resolver.limits]\nmax_ns_per_zone_cut = 4\nmax_addresses_per_ns = 2\n",
            "t.toml",
        )
        .unwrap();
        let limits = Settings::from_raw(&raw).unwrap().resolver.limits;
        assert_eq!(
            (limits.max_ns_per_zone_cut, limits.max_addresses_per_ns),
            (4, 2)
        );
        for key in ["max_ns_per_zone_cut", "max_addresses_per_ns"] {
            let raw =
                RawConfig::from_toml(&format!("[resolver.limits]\n{key} = 0\n"), "t.toml").unwrap();
            let error = Settings::from_raw(&raw).unwrap_err().to_string();
            assert!(
                error.contains(&format!("resolver.limits.{key}")) && error.contains("above 0"),
                "{key}: {error}"
            );
        }
        // A negative or misspelt value is refused when the file is read.
        assert!(
            RawConfig::from_toml("[resolver.limits]\nmax_ns_per_zone_cut = -1\n", "t.toml")
                .is_err()
        );
        assert!(
            RawConfig::from_toml("[resolver.limits]\nmax_ns_per_zone_cuts = 5\n", "t.toml")
                .is_err()
        );
    }

    #[test]
    fn upstream_tcp_limits_are_read_and_checked_by_name() {
        let settings = Settings::from_raw(&RawConfig::default()).unwrap();
        assert_eq!(settings.resolver.limits, juris_resolver::Limits::default());
        let raw = RawConfig::from_toml(
            "[resolver.limits]
tcp_connections_per_server = 4
tcp_connections = 64
             tcp_queries_per_connection = 8
tcp_idle_ms = 2000
",
            "t.toml",
        )
        .unwrap();
        let limits = Settings::from_raw(&raw).unwrap().resolver.limits;
        assert_eq!(
            (
                limits.tcp_connections_per_server,
                limits.tcp_connections,
                limits.tcp_queries_per_connection,
                limits.tcp_idle_ms
            ),
            (4, 64, 8, 2000)
        );
        for (text, key) in [
            (
                "tcp_queries_per_connection = 0",
                "resolver.limits.tcp_queries_per_connection",
            ),
            ("tcp_connections = 0", "resolver.limits.tcp_connections"),
            ("tcp_idle_ms = 0", "resolver.limits.tcp_idle_ms"),
            ("infra_servers = 0", "resolver.limits.infra_servers"),
            (
                "remembered_failures = 0",
                "resolver.limits.remembered_failures",
            ),
            (
                "tcp_connections_per_server = 9\ntcp_connections = 8",
                "resolver.limits.tcp_connections_per_server",
            ),
        ] {
            let raw =
                RawConfig::from_toml(&format!("[resolver.limits]\n{text}\n"), "t.toml").unwrap();
            let error = Settings::from_raw(&raw).unwrap_err().to_string();
            assert!(error.contains(key), "{text}: {error}");
        }
    }

    #[test]
    fn rate_limits_with_exempt_and_stricter_prefixes() {
        use juris_server::RateClass;
        let raw = RawConfig::from_toml(
            "[server.rate_limit]\nqueries_per_second = 100\nnxdomains_per_second = 10\n\
             exempt = [\"192.0.2.0/24\"]\n\
             misses_per_second = 50\n\
             [[server.rate_limit.prefix]]\nprefix = \"198.51.100.0/24\"\nqueries_per_second = 5\n\
             misses_per_second = 0\n",
            "t.toml",
        )
        .unwrap();
        let limits = Settings::from_raw(&raw).unwrap().rate_limit;
        assert!(limits.is_enabled());
        assert_eq!(limits.rates.of(RateClass::Queries), 100);
        assert_eq!(limits.rates.of(RateClass::NxDomain), 10);
        assert_eq!(limits.rates.of(RateClass::Answers), 0);
        assert!(limits.prefixes[0].rates.is_unlimited(), "exempt");
        let stricter = &limits.prefixes[1].rates;
        assert_eq!(stricter.of(RateClass::Queries), 5);
        assert_eq!(stricter.of(RateClass::NxDomain), 10, "inherited");
        assert_eq!(limits.rates.of(RateClass::Misses), 50);
        assert_eq!(
            stricter.of(RateClass::Misses),
            0,
            "misses exempt for that prefix"
        );
        assert!(!Settings::from_raw(&RawConfig::default())
            .unwrap()
            .rate_limit
            .is_enabled());
    }

    #[test]
    fn the_misses_slip_defaults_to_slip_and_is_checked_by_name() {
        use juris_server::RateClass;
        let read = |text: &str| {
            let raw =
                RawConfig::from_toml(&format!("[server.rate_limit]\n{text}\n"), "t.toml").unwrap();
            Settings::from_raw(&raw).map(|s| {
                let limits = s.rate_limit;
                (limits.slip, limits.slip_of(RateClass::Misses))
            })
        };
        assert_eq!(read("").unwrap(), (2, 2));
        assert_eq!(read("slip = 3").unwrap(), (3, 3), "slip's value by default");
        assert_eq!(read("misses_slip = 0").unwrap(), (2, 0));
        assert_eq!(read("slip = 1\nmisses_slip = 10").unwrap(), (1, 10));
        let error = read("misses_slip = 11").unwrap_err().to_string();
        assert!(error.contains("server.rate_limit.misses_slip"), "{error}");
    }

    #[test]
    fn kernel_drop_keys_are_read_and_checked_by_name() {
        let read = |text: &str| {
            let raw = RawConfig::from_toml(
                &format!(
                    "[server.rate_limit]
{text}
"
                ),
                "t.toml",
            )
            .unwrap();
            Settings::from_raw(&raw).map(|s| s.rate_limit.kernel_drop)
        };
        let default = read("").unwrap();
        assert_eq!(
            (default.after, default.seconds, default.max_prefixes),
            (0, 10, 64)
        );
        let set = read(
            "misses_per_second = 100\nkernel_drop_after = 500\nkernel_drop_seconds = 30\n\
             kernel_drop_max_prefixes = 256",
        )
        .unwrap();
        assert_eq!((set.after, set.seconds, set.max_prefixes), (500, 30, 256));
        for (text, key) in [
            (
                "kernel_drop_seconds = 0",
                "server.rate_limit.kernel_drop_seconds",
            ),
            (
                "kernel_drop_seconds = 3601",
                "server.rate_limit.kernel_drop_seconds",
            ),
            (
                "kernel_drop_max_prefixes = 0",
                "server.rate_limit.kernel_drop_max_prefixes",
            ),
            (
                "kernel_drop_max_prefixes = 257",
                "server.rate_limit.kernel_drop_max_prefixes",
            ),
        ] {
            let error = read(text).unwrap_err().to_string();
            assert!(error.contains(key), "{text}: {error}");
        }
    }

    #[test]
    fn unknown_key_is_named() {
        let err = RawConfig::from_toml("[cache]\nsise = \"1M\"\n", "t.toml").unwrap_err();
        let text = err.to_string();
        assert!(text.contains("sise"), "{text}");
    }

    #[test]
    fn bad_values_name_their_key() {
        let cases = [
            ("[cache]\nsize = \"12X\"", "cache.size"),
            ("[server]\nlisten = [\"nonsense\"]", "server.listen[0]"),
            ("[server]\nallow = [\"10.0.0.0/33\"]", "server.allow[0]"),
            (
                "[server.rate_limit]\nexempt = [\"10.0.0.0/8\", \"x\"]",
                "server.rate_limit.exempt[1]",
            ),
            ("[server.rate_limit]\nwindow = 0", "server.rate_limit"),
            (
                "[[server.rate_limit.prefix]]\nprefix = \"nope\"",
                "server.rate_limit.prefix[0].prefix",
            ),
            (
                "[server]\nproxy_protocol_from = [\"10.0.0.1\", \"lb\"]",
                "server.proxy_protocol_from[1]",
            ),
            ("[resolver]\nforward = [\"x\"]", "resolver.forward[0]"),
            ("[cache]\nmin_ttl = 10\nmax_ttl = 5", "cache.min_ttl"),
            (
                "[server]\nlisten = [{ address = \"127.0.0.1:53\", country = \"Italy\" }]",
                "server.listen[0].country",
            ),
            ("[policy]\nwithdraw = [\"XX\"]", "policy.withdraw[0]"),
            ("[policy]\nblock_ttl = 100000", "policy.block_ttl"),
            ("[policy]\nsoa_mname = \"a..b\"", "policy.soa_mname"),
            (
                "[policy]\nwatch_interval_ms = 0",
                "policy.watch_interval_ms",
            ),
            ("[geoip]\nfield_path = \"a..b\"", "geoip.field_path"),
            (
                "[dnssec]\nnegative_trust_anchors = [\"a..b\"]",
                "dnssec.negative_trust_anchors[0]",
            ),
            (
                "[dnssec]\ntrust_anchors = [\"/nonexistent/root.key\"]",
                "dnssec.trust_anchors",
            ),
            ("[dnssec]\nbogus_ttl = 100000", "dnssec.bogus_ttl"),
            (
                "[dnssec]\nforwarders_without_dnssec = [\"x\"]",
                "dnssec.forwarders_without_dnssec[0]",
            ),
        ];
        for (text, key) in cases {
            let raw = RawConfig::from_toml(text, "t.toml").unwrap();
            let err = Settings::from_raw(&raw).unwrap_err().to_string();
            assert!(err.starts_with(key), "{text:?} gave {err:?}");
        }
    }

    #[test]
    fn overrides_replace_file_values() {
        let mut raw = RawConfig::from_toml(
            "[server]\nlisten = [\"127.0.0.1:53\"]\nthreads = 4\n",
            "t.toml",
        )
        .unwrap();
        raw.apply(&Overrides {
            listen: vec!["127.0.0.9:5399".into()],
            forward: vec!["127.0.0.53".into()],
            threads: Some(2),
            ..Overrides::default()
        });
        let s = Settings::from_raw(&raw).unwrap();
        assert_eq!(s.listeners[0].addr, "127.0.0.9:5399".parse().unwrap());
        assert_eq!(s.threads, 2);
        match s.resolver.mode {
            juris_resolver::Mode::Forward { upstreams } => {
                assert_eq!(upstreams, vec!["127.0.0.53:53".parse().unwrap()])
            }
            other => panic!("{other:?}"),
        }
        assert!(
            s.resolver.allow_loopback_upstreams,
            "loopback forwarders imply it"
        );
    }

    #[test]
    fn tls_keys_and_encrypted_listeners() {
        let dir = tempfile::tempdir().unwrap();
        let pair = juris_transport::cert::self_signed("localhost").unwrap();
        std::fs::write(dir.path().join("cert.pem"), &pair.cert_pem).unwrap();
        std::fs::write(dir.path().join("key.pem"), &pair.key_pem).unwrap();
        let file = dir.path().join("juris.toml");
        std::fs::write(
            &file,
            r#"
            [server]
            listen_tls = ["127.0.0.1:853"]
            listen_https = ["127.0.0.1:443", "[::1]:443"]
            listen_quic = ["127.0.0.1:853"]
            [tls]
            cert = "cert.pem"
            key = "key.pem"
            trusted_proxies = ["10.0.0.0/8"]
            max_streams = 7
            idle_timeout_ms = 1500
            "#,
        )
        .unwrap();
        let s = Settings::from_raw(&RawConfig::from_file(&file).unwrap()).unwrap();
        let t = s.transports.unwrap();
        assert_eq!(t.listeners.len(), 4);
        assert_eq!(
            t.tls.cert,
            dir.path().join("cert.pem"),
            "relative to the file"
        );
        assert_eq!(t.limits.max_streams, 7);
        assert_eq!(t.limits.idle_timeout, Duration::from_millis(1500));
        assert_eq!(t.trusted_proxies.len(), 1);

        // No listener and no certificate: nothing; a certificate alone: loopback defaults.
        assert!(Settings::from_raw(&RawConfig::default())
            .unwrap()
            .transports
            .is_none());
        let mut raw = RawConfig::default();
        raw.apply(&Overrides {
            tls_cert: Some(dir.path().join("cert.pem")),
            tls_key: Some(dir.path().join("key.pem")),
            ..Overrides::default()
        });
        let t = Settings::from_raw(&raw).unwrap().transports.unwrap();
        let addrs: Vec<String> = t.listeners.iter().map(|l| l.addr.to_string()).collect();
        assert_eq!(
            addrs,
            ["127.0.0.1:8853", "127.0.0.1:8443", "127.0.0.1:8853"]
        );

        // A listener without a certificate, a bad address, a broken key: named.
        let mut raw = RawConfig::default();
        raw.apply(&Overrides {
            listen_tls: vec!["127.0.0.1:853".into()],
            ..Overrides::default()
        });
        let error = Settings::from_raw(&raw).unwrap_err().to_string();
        assert!(error.starts_with("tls.cert"), "{error}");
        raw.apply(&Overrides {
            listen_quic: vec!["nonsense".into()],
            tls_cert: Some(dir.path().join("cert.pem")),
            tls_key: Some(dir.path().join("key.pem")),
            ..Overrides::default()
        });
        let error = Settings::from_raw(&raw).unwrap_err().to_string();
        assert!(error.starts_with("server.listen_quic[0]"), "{error}");
        std::fs::write(dir.path().join("key.pem"), "broken").unwrap();
        raw.server.listen_quic.clear();
        let error = Settings::from_raw(&raw).unwrap_err().to_string();
        assert!(error.contains("key.pem"), "{error}");
    }

    #[test]
    fn rpz_feeds_are_validated_and_every_error_names_its_key() {
        let feed = |extra: &str, order_extra: &str| {
            format!(
                "[[fleet.rpz_feed]]\nname = \"vendor\"\nprimary = \"127.0.0.1:53\"\n\
                 zone = \"RPZ.Vendor.Example\"\n{extra}\n[fleet.rpz_feed.order]\nid = \"V-1\"\n\
                 kind = \"feed_ticket\"\nauthority = \"Vendor\"\njurisdictions = [\"IT\"]\n\
                 action = \"nxdomain\"\nstate = \"active\"\n{order_extra}\n"
            )
        };
        let parse = |text: &str| {
            let raw: RawConfig = toml::from_str(text).map_err(|e| e.to_string())?;
            Settings::from_raw(&raw).map_err(|e| e.to_string())
        };
        let settings = parse(&feed("refresh_seconds = 5", "")).unwrap();
        let [one] = settings.rpz_feeds.as_slice() else {
            panic!("{:?}", settings.rpz_feeds)
        };
        assert_eq!(one.zone, "rpz.vendor.example.");
        assert_eq!(one.refresh, Duration::from_secs(5));
        assert!(one.tsig_key.is_none());
        assert_eq!(one.order.jurisdictions, ["IT"]);
        for (extra, order_extra, key) in [
            ("primary = \"x\"", "", "fleet.rpz_feed[0].primary"),
            (
                "refresh_seconds = 0",
                "",
                "fleet.rpz_feed[0].refresh_seconds",
            ),
            (
                "tsig_key = { name = \"k\", secret = \"***\" }",
                "",
                "fleet.rpz_feed[0].tsig_key",
            ),
            (
                "",
                "targets = [{ type = \"domain\", value = \"a.example\" }]",
                "fleet.rpz_feed[0].order.targets",
            ),
        ] {
            let text = feed(extra, order_extra).replace("primary = \"127.0.0.1:53\"\n", "");
            let text = if extra.starts_with("primary") {
                text
            } else {
                text.replace("zone =", "primary = \"127.0.0.1:53\"\nzone =")
            };
            let error = parse(&text).unwrap_err();
            assert!(error.starts_with(key), "{key}: {error}");
        }
        let twice = format!("{}{}", feed("", ""), feed("", ""));
        let error = parse(&twice).unwrap_err();
        assert!(error.contains("fleet.rpz_feed[1].name"), "{error}");
        assert!(parse(&feed("unknown = 1", "")).is_err());
    }

    #[test]
    fn server_cookie_keys() {
        let settings = Settings::from_raw(&RawConfig::default()).unwrap();
        assert!(settings.cookies.enabled);
        assert_eq!(settings.cookies.secret, None);
        assert_eq!(settings.cookies.rotation, Duration::from_secs(86_400));
        let raw = RawConfig::from_toml(
            r#"
            [server.cookies]
            secret = "e5e973e5a6b2a43f48e7dc849e37bfcf"
            previous_secret = "DD3BDF9344B678B185A6F5CB60FCA715"
            rotation_secs = 0
            "#,
            "test",
        )
        .unwrap();
        let cookies = Settings::from_raw(&raw).unwrap().cookies;
        assert_eq!(cookies.secret.unwrap()[..2], [0xe5, 0xe9]);
        assert_eq!(cookies.previous_secret.unwrap()[15], 0x15);
        assert!(cookies.rotation.is_zero());
        for (toml, key) in [
            ("secret = \"e5e973\"", "server.cookies.secret"),
            (
                "secret = \"g5e973e5a6b2a43f48e7dc849e37bfcf\"",
                "server.cookies.secret",
            ),
            ("rotation_secs = 60", "server.cookies.rotation_secs"),
            (
                "previous_secret = \"e5e973e5a6b2a43f48e7dc849e37bfcf\"",
                "server.cookies.previous_secret",
            ),
        ] {
            let raw = RawConfig::from_toml(&format!("[server.cookies]\n{toml}\n"), "test").unwrap();
            let error = Settings::from_raw(&raw).unwrap_err().to_string();
            assert!(error.starts_with(key), "{toml}: {error}");
        }
        assert!(RawConfig::from_toml("[server.cookies]\nsecrets = \"x\"\n", "test").is_err());
    }

    #[test]
    fn policy_and_geoip_keys() {
        let raw = RawConfig::from_toml(
            r#"
            [server]
            listen = [{ address = "127.0.0.1:5354", country = "it" }]
            [policy]
            orders = "/etc/juris/orders"
            block_ttl = 60
            withdraw = ["FR"]
            structured_error_option_code = 0
            [geoip]
            mmdb = "/var/lib/juris/countries.mmdb"
            field_path = "country.iso_code"
            trusted_ecs_forwarders = ["192.0.2.0/24"]
            "#,
            "t.toml",
        )
        .unwrap();
        let s = Settings::from_raw(&raw).unwrap();
        assert_eq!(
            s.listeners[0].country,
            Some(CountryCode::parse("IT").unwrap())
        );
        assert_eq!(s.policy.block_ttl, 60);
        assert_eq!(s.policy.withdrawn, vec![CountryCode::parse("FR").unwrap()]);
        assert_eq!(s.orders, Some(PathBuf::from("/etc/juris/orders")));
        assert_eq!(s.structured_error_option_code, None);
        assert_eq!(s.geo.trusted_ecs_forwarders.len(), 1);
        assert!(RawConfig::from_toml("[geoip]\nmmdbb = \"x\"", "t").is_err());
        assert!(RawConfig::from_toml("[policy]\norder = \"x\"", "t").is_err());

        let mut raw = RawConfig::default();
        raw.apply(&Overrides {
            orders: Some("/o".into()),
            geoip: Some("/g.mmdb".into()),
            ..Overrides::default()
        });
        let s = Settings::from_raw(&raw).unwrap();
        assert_eq!(s.orders, Some(PathBuf::from("/o")));
        assert_eq!(s.geo.mmdb, Some(PathBuf::from("/g.mmdb")));
        assert_eq!(s.policy, juris_server::PolicySettings::default());
        assert_eq!(s.structured_error_option_code, Some(65001));
    }

    #[test]
    fn sizes_parse() {
        assert_eq!(parse_size("64M"), Some(64 << 20));
        assert_eq!(parse_size("1g"), Some(1 << 30));
        assert_eq!(parse_size("512KiB"), Some(512 << 10));
        assert_eq!(parse_size("100"), Some(100));
        assert_eq!(parse_size("M"), None);
        assert_eq!(parse_size(""), None);
    }

    #[test]
    fn every_example_config_parses_and_validates() {
        let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../examples");
        let mut seen = 0;
        for entry in std::fs::read_dir(&dir).unwrap() {
            let path = entry.unwrap().path();
            if path.extension().is_some_and(|e| e == "toml") {
                let raw = RawConfig::from_file(&path).unwrap();
                Settings::from_raw(&raw).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
                seen += 1;
            }
        }
        assert!(seen >= 2, "expected example configs in {}", dir.display());
    }

    /// The Debian package's /etc/juris/juris.toml: valid, and what the unit expects (the state
    /// directory the unit makes writable, a drain bound below TimeoutStopSec).
    #[test]
    fn the_packaged_config_validates() {
        let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("debian/juris.toml");
        let raw = RawConfig::from_file(&path).unwrap();
        let settings = Settings::from_raw(&raw).unwrap();
        assert_eq!(settings.data_dir, Path::new("/var/lib/juris"));
        assert!(settings.drain_timeout < Duration::from_secs(30));
        assert_eq!(settings.listeners[0].addr.port(), 53);
    }

    #[test]
    fn drain_timeout_is_bounded() {
        let raw = RawConfig::from_toml("[server]\ndrain_timeout_ms = 600001\n", "t").unwrap();
        let error = Settings::from_raw(&raw).unwrap_err().to_string();
        assert!(error.contains("server.drain_timeout_ms"), "{error}");
    }

    /// Issue 16: whether `server.data_dir` was relative to the file was decided by looking for
    /// the text "data_dir" anywhere in the file, so a comment moved the data directory.
    #[test]
    fn a_comment_does_not_move_the_data_directory() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("juris.toml");
        std::fs::write(
            &file,
            "# server.data_dir is left at its default here\n[server]\nthreads = 1\n",
        )
        .unwrap();
        let s = Settings::from_raw(&RawConfig::from_file(&file).unwrap()).unwrap();
        assert_eq!(s.data_dir, PathBuf::from(DEFAULT_DATA_DIR));

        // Written in the file: relative to the file.
        std::fs::write(&file, "[server]\ndata_dir = \"state\"\n").unwrap();
        let s = Settings::from_raw(&RawConfig::from_file(&file).unwrap()).unwrap();
        assert_eq!(s.data_dir, dir.path().join("state"));
    }

    /// Issue 16: values that were validated and thrown away are held typed by `Settings`.
    #[test]
    fn settings_hold_the_parsed_field_path_and_protected_list() {
        let raw = RawConfig::from_toml(
            "[geoip]\nfield_path = \"country.iso_code\"\n\
             [control.protected]\ndefaults = false\nnames = [\"Intranet.Example\"]\n",
            "test",
        )
        .unwrap();
        let s = Settings::from_raw(&raw).unwrap();
        assert_eq!(
            s.geo.field_path,
            Some(juris_geo::FieldPath::parse("country.iso_code").unwrap())
        );
        let protected = s.protected.get();
        let entries = protected.entries();
        assert_eq!(entries.len(), 1, "{entries:?}");
        assert_eq!(
            entries[0].value,
            juris_control::safeguards::Protected::Name("intranet.example".into())
        );
    }

    #[test]
    fn fleet_followers_are_named_recognised_by_key_or_address_and_notified() {
        let parse = |fleet: &str| {
            let text = format!(
                "[fleet]\nxfr_listen = \"127.0.0.1:5300\"\n\
                 tsig_keys = [{{ name = \"edge-1\", secret = \"AAAA\" }}]\n{fleet}"
            );
            Settings::from_raw(&RawConfig::from_toml(&text, "test").unwrap())
        };
        let settings = parse(
            "followers = [{ name = \"milano-1\", key = \"edge-1\" }, \
             { name = \"roma\", notify = \"192.0.2.20:53\" }]\n",
        )
        .unwrap();
        let followers = &settings.fleet.followers;
        assert_eq!(followers[0].key.as_deref(), Some("edge-1."));
        assert_eq!(followers[1].address, Some("192.0.2.20".parse().unwrap()));
        assert_eq!(settings.fleet.notify, ["192.0.2.20:53".parse().unwrap()]);
        for (fleet, want) in [
            ("followers = [{ name = \"a\", key = \"nope\" }]\n", "fleet.followers[0]"),
            ("followers = [{ name = \"a\" }]\n", "to be recognised"),
            (
                "followers = [{ name = \"a\", key = \"edge-1\" }, { name = \"a\", address = \"192.0.2.1\" }]\n",
                "not unique",
            ),
            ("followers = [{ name = \"a\", address = \"x\" }]\n", "fleet.followers[0].address"),
        ] {
            let error = parse(fleet).unwrap_err().to_string();
            assert!(error.contains(want), "{fleet}: {error}");
        }
    }

    #[test]
    fn querylog_and_dnstap_are_off_by_default_and_validated() {
        let settings = Settings::from_raw(&RawConfig::default()).unwrap();
        assert!(settings.querylog.is_none() && settings.dnstap.is_none());
        assert_eq!(settings.log_format, LogFormat::Text);
        let raw = RawConfig::from_toml(
            "[log]\nformat = \"json\"\n[querylog]\nenabled = true\npath = \"-\"\nclient = \"truncate\"\n\
             [dnstap]\nsocket = \"/run/tap.sock\"\n",
            "t.toml",
        )
        .unwrap();
        let settings = Settings::from_raw(&raw).unwrap();
        assert_eq!(settings.log_format, LogFormat::Json);
        let querylog = settings.querylog.unwrap();
        assert_eq!(querylog.path, None, "\"-\" is stderr");
        assert_eq!(
            querylog.client,
            juris_server::telemetry::ClientAddress::Truncate
        );
        let dnstap = settings.dnstap.unwrap();
        assert_eq!(dnstap.client, juris_server::telemetry::ClientAddress::Omit);
        assert!(dnstap.resolver_messages);
        for (text, key) in [
            (
                "[querylog]\nenabled = true\nclient = \"all\"\n",
                "querylog.client",
            ),
            ("[querylog]\nenabled = true\nqueue = 0\n", "querylog.queue"),
            (
                "[dnstap]\nsocket = \"/s\"\nclient = \"yes\"\n",
                "dnstap.client",
            ),
        ] {
            let raw = RawConfig::from_toml(text, "t.toml").unwrap();
            let error = Settings::from_raw(&raw).unwrap_err().to_string();
            assert!(error.starts_with(key), "{error}");
        }
        assert!(RawConfig::from_toml("[log]\nformat = \"xml\"\n", "t.toml").is_err());
    }
}
