//! Collateral-damage safeguards: the Public Suffix List and the protected list.
//!
//! - [`Psl`] plugs the compiled-in Public Suffix List (the `psl` crate, regenerated from
//!   publicsuffix.org with every list change) into
//!   [`ValidationOptions::public_suffixes`](juris_policy::ValidationOptions): a name target that
//!   *is* a public suffix (`co.uk`, `github.io`) or a TLD is refused unless the order records an
//!   override.
//! - [`ProtectedList`]: names and prefixes of big shared infrastructure (CDN anycast ranges,
//!   cloud storage hosts) plus whatever the configuration adds. A target that touches one is
//!   stored as `needs_review` and is not enforced until an admin overrides it. Where each default
//!   entry comes from is in `docs/protected-defaults.md`.

use ipnet::IpNet;
use juris_policy::{PublicSuffixes, TargetKind, TargetValue, ValidatedTarget};
use serde::{Deserialize, Serialize};

use crate::error::ControlError;

/// The Public Suffix List, ICANN and private sections.
#[derive(Debug, Clone, Copy, Default)]
pub struct Psl;

impl PublicSuffixes for Psl {
    fn is_public_suffix(&self, name: &str) -> bool {
        let name = name.strip_suffix('.').unwrap_or(name);
        match psl::suffix(name.as_bytes()) {
            // The list's implicit `*` rule makes every unknown TLD a suffix; only names the list
            // actually knows are refused here (the policy crate refuses every single label).
            Some(suffix) => suffix.is_known() && suffix.as_bytes() == name.as_bytes(),
            None => false,
        }
    }
}

/// The protected-list part of the `[control]` configuration.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ProtectedConfig {
    /// Whether the shipped defaults (docs/protected-defaults.md) apply. Default: true.
    #[serde(default = "default_true")]
    pub defaults: bool,
    /// More protected names: each protects itself and everything below it. Default: none.
    #[serde(default)]
    pub names: Vec<String>,
    /// More protected addresses or prefixes. Default: none.
    #[serde(default)]
    pub prefixes: Vec<String>,
}

impl Default for ProtectedConfig {
    fn default() -> Self {
        ProtectedConfig {
            defaults: true,
            names: Vec::new(),
            prefixes: Vec::new(),
        }
    }
}

fn default_true() -> bool {
    true
}

/// One protected entry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProtectedEntry {
    /// What is protected.
    pub value: Protected,
    /// Who runs it / where the entry comes from.
    pub source: String,
}

/// A protected name (and its subtree) or prefix.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Protected {
    /// A normalised name; protects the name and every name below it.
    Name(String),
    /// A prefix.
    Prefix(IpNet),
}

/// The protected list.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ProtectedList {
    entries: Vec<ProtectedEntry>,
    /// The prefixes of the operators' published lists (`juris safeguards update`), one sorted,
    /// aggregated set per list: thousands of prefixes, checked by binary search.
    published: Vec<PrefixSet>,
}

/// The protected list in force, shared by everything that checks targets against it (the
/// control plane, the order loader, candidate mining) and replaced live: `juris serve` reads
/// the published lists at start and again on SIGHUP (design 0042). Cheap to clone (one cell).
#[derive(Debug, Clone, Default)]
pub struct SharedProtected {
    cell: std::sync::Arc<std::sync::RwLock<(u64, std::sync::Arc<ProtectedList>)>>,
}

impl SharedProtected {
    /// A cell holding `list` (generation 0).
    pub fn new(list: ProtectedList) -> Self {
        Self {
            cell: std::sync::Arc::new(std::sync::RwLock::new((0, std::sync::Arc::new(list)))),
        }
    }

    /// The list in force now.
    pub fn get(&self) -> std::sync::Arc<ProtectedList> {
        let cell = self
            .cell
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        std::sync::Arc::clone(&cell.1)
    }

    /// How many times the list was replaced by a different one.
    pub fn generation(&self) -> u64 {
        self.cell
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .0
    }

    /// Puts `list` in force; `false` (nothing changes, the generation stays) when it is the
    /// list in force already.
    pub fn replace(&self, list: ProtectedList) -> bool {
        let mut cell = self
            .cell
            .write()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if *cell.1 == list {
            return false;
        }
        *cell = (cell.0 + 1, std::sync::Arc::new(list));
        true
    }
}

impl PartialEq for SharedProtected {
    fn eq(&self, other: &Self) -> bool {
        *self.get() == *other.get()
    }
}

/// A published list's prefixes, aggregated (disjoint) and sorted, with the list's name.
#[derive(Debug, Clone, PartialEq, Eq)]
struct PrefixSet {
    source: String,
    nets: Vec<IpNet>,
}

impl PrefixSet {
    fn new(source: String, nets: &[IpNet]) -> PrefixSet {
        // `aggregate` returns disjoint prefixes in address order (IPv4 before IPv6).
        PrefixSet {
            source,
            nets: IpNet::aggregate(&nets.to_vec()),
        }
    }

    /// A prefix of the set that overlaps `net`. The set is disjoint and sorted, so only two
    /// can: the last one starting at or before `net` (it may contain it) and the first one
    /// starting after it (`net` may contain it).
    fn overlapping(&self, net: &IpNet) -> Option<&IpNet> {
        let index = self.nets.partition_point(|p| p.network() <= net.network());
        let before = index
            .checked_sub(1)
            .and_then(|i| self.nets.get(i))
            .filter(|p| p.contains(&net.network()));
        before.or_else(|| self.nets.get(index).filter(|p| net.contains(&p.network())))
    }

    fn len(&self) -> usize {
        self.nets.len()
    }
}

/// An operator's published list of shared infrastructure, converted by `juris safeguards
/// update FILE --source NAME` and kept as `<data dir>/protected/NAME.json`: what was read,
/// from where, when, and the entries.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PublishedList {
    /// The list's name (`cloudflare`, `google`, `aws-cloudfront`, ...): also its file name.
    pub source: String,
    /// Where the file was published (provenance; not fetched by juris).
    #[serde(default)]
    pub url: Option<String>,
    /// The format recognised: `lines`, `aws-ip-ranges`, `google-ip-ranges`,
    /// `fastly-public-ip-list`, `azure-service-tags`, `cloudflare-api`.
    pub format: String,
    /// The service filter applied (AWS, Google and Azure lists name services).
    #[serde(default)]
    pub service: Option<String>,
    /// SHA-256 of the file read, hex.
    pub sha256: String,
    /// When it was converted (RFC 3339, UTC).
    pub imported_at: String,
    /// The prefixes, as published (not aggregated).
    pub prefixes: Vec<String>,
    /// Names (each protects itself and everything below it), from a `lines` file.
    #[serde(default)]
    pub names: Vec<String>,
}

/// What a published file holds: its format, prefixes and names.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Published {
    /// The format recognised (see [`PublishedList::format`]).
    pub format: &'static str,
    /// Its prefixes.
    pub prefixes: Vec<IpNet>,
    /// Its names (normalised).
    pub names: Vec<String>,
}

/// Reads an operator's published list in one of the formats the operators publish, recognised
/// by its content: JSON from AWS (`ip-ranges.json`: `prefixes[].ip_prefix`,
/// `ipv6_prefixes[].ipv6_prefix`, filtered on `service`), Google (`goog.json` / `cloud.json`:
/// `prefixes[].ipv4Prefix` / `ipv6Prefix`, `cloud.json` filtered on `service`), Fastly
/// (`public-ip-list`: `addresses`, `ipv6_addresses`), Azure service tags (`values[]` whose
/// `name` or `properties.systemService` is the service: `properties.addressPrefixes`), the
/// Cloudflare API (`result.ipv4_cidrs` / `ipv6_cidrs`); otherwise text, one prefix or name per
/// line (Cloudflare's `ips-v4` / `ips-v6`; `#` starts a comment). An entry that is neither a
/// prefix nor a name is an error naming its line or field; an empty result is an error too (a
/// truncated download must not empty the list).
pub fn parse_published(bytes: &[u8], service: Option<&str>) -> Result<Published, ControlError> {
    let text = std::str::from_utf8(bytes)
        .map_err(|e| ControlError::invalid("file", format!("not UTF-8 text: {e}")))?;
    let published = if text.trim_start().starts_with('{') {
        let json: serde_json::Value = serde_json::from_str(text)
            .map_err(|e| ControlError::invalid("file", format!("not valid JSON: {e}")))?;
        published_json(&json, service)?
    } else {
        if service.is_some() {
            return Err(ControlError::invalid(
                "service",
                "a text list names no services".to_owned(),
            ));
        }
        published_lines(text)?
    };
    if published.prefixes.is_empty() && published.names.is_empty() {
        return Err(ControlError::invalid(
            "file",
            format!(
                "no entries found ({} format{})",
                published.format,
                service
                    .map(|s| format!(", service {s:?}"))
                    .unwrap_or_default()
            ),
        ));
    }
    Ok(published)
}

fn published_lines(text: &str) -> Result<Published, ControlError> {
    let mut published = Published {
        format: "lines",
        ..Published::default()
    };
    for (number, line) in text.lines().enumerate() {
        let entry = line.split('#').next().unwrap_or("").trim();
        if entry.is_empty() {
            continue;
        }
        let field = || format!("line {}", number + 1);
        match parse_prefix(entry) {
            Some(net) => published.prefixes.push(net),
            None => published.names.push(
                juris_policy::normalize_name(entry)
                    .map_err(|e| ControlError::invalid(field(), format!("{entry:?}: {e}")))?,
            ),
        }
    }
    Ok(published)
}

fn published_json(
    json: &serde_json::Value,
    service: Option<&str>,
) -> Result<Published, ControlError> {
    use serde_json::Value;
    let strings = |value: &Value, path: &str| -> Result<Vec<IpNet>, ControlError> {
        let Some(items) = value.as_array() else {
            return Ok(Vec::new());
        };
        items
            .iter()
            .enumerate()
            .map(|(i, item)| {
                item.as_str().and_then(parse_prefix).ok_or_else(|| {
                    ControlError::invalid(format!("{path}[{i}]"), format!("{item} is not a prefix"))
                })
            })
            .collect()
    };
    let wanted = |item: &Value, keys: &[&str]| -> bool {
        service.is_none_or(|service| {
            keys.iter().any(|key| {
                let value = key
                    .split('.')
                    .try_fold(item, |value, part| value.get(part))
                    .and_then(Value::as_str);
                value.is_some_and(|v| v.eq_ignore_ascii_case(service))
            })
        })
    };
    // One field per entry of an array of objects, filtered on the service.
    let objects = |array: &Value,
                   path: &str,
                   fields: &[&str],
                   service_keys: &[&str]|
     -> Result<Vec<IpNet>, ControlError> {
        let mut nets = Vec::new();
        for (i, item) in array.as_array().into_iter().flatten().enumerate() {
            if !wanted(item, service_keys) {
                continue;
            }
            let Some((field, text)) = fields
                .iter()
                .find_map(|field| Some((*field, item.get(*field)?.as_str()?)))
            else {
                return Err(ControlError::invalid(
                    format!("{path}[{i}]"),
                    format!("has none of {}", fields.join(", ")),
                ));
            };
            nets.push(parse_prefix(text).ok_or_else(|| {
                ControlError::invalid(
                    format!("{path}[{i}].{field}"),
                    format!("{text:?} is not a prefix"),
                )
            })?);
        }
        Ok(nets)
    };
    let refuse_service = |format: &'static str| -> Result<(), ControlError> {
        match service {
            Some(_) => Err(ControlError::invalid(
                "service",
                format!("the {format} format names no services"),
            )),
            None => Ok(()),
        }
    };
    let (format, prefixes) =
        if json.get("prefixes").is_some() && json.get("ipv6_prefixes").is_some() {
            let mut nets = objects(&json["prefixes"], "prefixes", &["ip_prefix"], &["service"])?;
            nets.extend(objects(
                &json["ipv6_prefixes"],
                "ipv6_prefixes",
                &["ipv6_prefix"],
                &["service"],
            )?);
            ("aws-ip-ranges", nets)
        } else if json.get("prefixes").is_some() {
            let nets = objects(
                &json["prefixes"],
                "prefixes",
                &["ipv4Prefix", "ipv6Prefix"],
                &["service"],
            )?;
            ("google-ip-ranges", nets)
        } else if json.get("addresses").is_some() || json.get("ipv6_addresses").is_some() {
            refuse_service("fastly-public-ip-list")?;
            let mut nets = strings(&json["addresses"], "addresses")?;
            nets.extend(strings(&json["ipv6_addresses"], "ipv6_addresses")?);
            ("fastly-public-ip-list", nets)
        } else if json.get("values").is_some_and(Value::is_array) {
            let mut nets = Vec::new();
            for (i, item) in json["values"].as_array().into_iter().flatten().enumerate() {
                if !wanted(item, &["name", "properties.systemService"]) {
                    continue;
                }
                let path = format!("values[{i}].properties.addressPrefixes");
                nets.extend(strings(&item["properties"]["addressPrefixes"], &path)?);
            }
            ("azure-service-tags", nets)
        } else if let Some(result) = json.get("result").filter(|r| r.get("ipv4_cidrs").is_some()) {
            refuse_service("cloudflare-api")?;
            let mut nets = strings(&result["ipv4_cidrs"], "result.ipv4_cidrs")?;
            nets.extend(strings(&result["ipv6_cidrs"], "result.ipv6_cidrs")?);
            ("cloudflare-api", nets)
        } else {
            return Err(ControlError::invalid(
            "file",
            "JSON in no known published format (AWS ip-ranges.json, Google goog.json/cloud.json, \
             Fastly public-ip-list, Azure service tags, Cloudflare API)"
                .to_owned(),
        ));
        };
    Ok(Published {
        format,
        prefixes,
        names: Vec::new(),
    })
}

/// The shipped defaults: (entry, operator and the published page it comes from).
/// Keep in step with `docs/protected-defaults.md`.
pub const DEFAULT_PROTECTED: &[(&str, &str)] = &[
    // Cloudflare, "IP Ranges" page (cloudflare.com/ips).
    ("173.245.48.0/20", "Cloudflare (IP Ranges)"),
    ("103.21.244.0/22", "Cloudflare (IP Ranges)"),
    ("103.22.200.0/22", "Cloudflare (IP Ranges)"),
    ("103.31.4.0/22", "Cloudflare (IP Ranges)"),
    ("141.101.64.0/18", "Cloudflare (IP Ranges)"),
    ("108.162.192.0/18", "Cloudflare (IP Ranges)"),
    ("190.93.240.0/20", "Cloudflare (IP Ranges)"),
    ("188.114.96.0/20", "Cloudflare (IP Ranges)"),
    ("197.234.240.0/22", "Cloudflare (IP Ranges)"),
    ("198.41.128.0/17", "Cloudflare (IP Ranges)"),
    ("162.158.0.0/15", "Cloudflare (IP Ranges)"),
    ("104.16.0.0/13", "Cloudflare (IP Ranges)"),
    ("104.24.0.0/14", "Cloudflare (IP Ranges)"),
    ("172.64.0.0/13", "Cloudflare (IP Ranges)"),
    ("131.0.72.0/22", "Cloudflare (IP Ranges)"),
    ("2400:cb00::/32", "Cloudflare (IP Ranges)"),
    ("2606:4700::/32", "Cloudflare (IP Ranges)"),
    ("2803:f800::/32", "Cloudflare (IP Ranges)"),
    ("2405:b500::/32", "Cloudflare (IP Ranges)"),
    ("2405:8100::/32", "Cloudflare (IP Ranges)"),
    ("2a06:98c0::/29", "Cloudflare (IP Ranges)"),
    ("2c0f:f248::/32", "Cloudflare (IP Ranges)"),
    // Cloudflare's public resolver 1.1.1.1 (1.1.1.1 documentation, "IP addresses").
    ("1.1.1.0/24", "Cloudflare public resolver (1.1.1.1 docs)"),
    ("1.0.0.0/24", "Cloudflare public resolver (1.1.1.1 docs)"),
    // Google Public DNS (developers.google.com/speed/public-dns, "Get started").
    ("8.8.8.0/24", "Google Public DNS (Get started)"),
    ("8.8.4.0/24", "Google Public DNS (Get started)"),
    // Fastly, "Public IP list" (api.fastly.com/public-ip-list).
    ("151.101.0.0/16", "Fastly (Public IP list)"),
    ("199.232.0.0/16", "Fastly (Public IP list)"),
    // Google user-content and storage hosts (Google Drive download host and user-content domain:
    // Google Workspace "Drive and Sites firewall and proxy settings"; Cloud Storage API endpoints
    // documentation).
    (
        "drive.usercontent.google.com",
        "Google Drive downloads (Drive firewall and proxy settings)",
    ),
    (
        "storage.googleapis.com",
        "Google Cloud Storage (Request endpoints)",
    ),
    (
        "googleusercontent.com",
        "Google user content (Drive firewall and proxy settings)",
    ),
    // Amazon S3 and CloudFront (AWS documentation: S3 endpoints; CloudFront distribution domain
    // names).
    ("s3.amazonaws.com", "Amazon S3 (endpoints)"),
    (
        "cloudfront.net",
        "Amazon CloudFront (distribution domain names)",
    ),
    // Akamai edge hostnames (Akamai documentation, "Edge hostnames").
    ("akamaiedge.net", "Akamai (Edge hostnames)"),
    ("edgekey.net", "Akamai (Edge hostnames)"),
    ("edgesuite.net", "Akamai (Edge hostnames)"),
    ("akamaized.net", "Akamai (Edge hostnames)"),
    // Microsoft Azure Blob Storage (Azure Storage documentation, "Storage account endpoints").
    (
        "blob.core.windows.net",
        "Azure Blob Storage (storage account endpoints)",
    ),
    // GitHub user content (raw files, release downloads): `domains.website` of api.github.com/meta.
    (
        "githubusercontent.com",
        "GitHub user content (api.github.com/meta domains)",
    ),
    // Name servers of big DNS hosters, shared by millions of zones: an `nsdname` target here
    // (or a `subtree` covering them) would block every zone they serve. Checked against stored
    // copies of the hosters' pages where one was found (docs/protected-defaults.md, 2026-12-07):
    // Cloudflare, Azure DNS and NS1; GoDaddy, Namecheap and Google Cloud DNS only against
    // third-party copies.
    (
        "ns.cloudflare.com",
        "Cloudflare DNS name servers (developers.cloudflare.com/dns/nameservers)",
    ),
    (
        "foundationdns.com",
        "Cloudflare Foundation DNS name servers (developers.cloudflare.com/dns/nameservers)",
    ),
    (
        "foundationdns.net",
        "Cloudflare Foundation DNS name servers (developers.cloudflare.com/dns/nameservers)",
    ),
    (
        "foundationdns.org",
        "Cloudflare Foundation DNS name servers (developers.cloudflare.com/dns/nameservers)",
    ),
    (
        "domaincontrol.com",
        "GoDaddy DNS name servers (not checked against GoDaddy's pages)",
    ),
    (
        "registrar-servers.com",
        "Namecheap DNS name servers (not checked against Namecheap's pages)",
    ),
    (
        "azure-dns.com",
        "Azure DNS name servers (Azure DNS documentation)",
    ),
    (
        "azure-dns.net",
        "Azure DNS name servers (Azure DNS documentation)",
    ),
    (
        "azure-dns.org",
        "Azure DNS name servers (Azure DNS documentation)",
    ),
    (
        "azure-dns.info",
        "Azure DNS name servers (Azure DNS documentation)",
    ),
    (
        "googledomains.com",
        "Google Cloud DNS name servers (not checked against Google's pages)",
    ),
    (
        "nsone.net",
        "NS1 name servers (NS1 Connect documentation, nameserver assignments)",
    ),
];

impl ProtectedList {
    /// The shipped defaults only.
    pub fn defaults() -> ProtectedList {
        let mut list = ProtectedList::default();
        for (value, source) in DEFAULT_PROTECTED {
            // The defaults are constants checked by `defaults_parse` below; a bad one is skipped
            // rather than crashing a server.
            if let Ok(entry) = parse_entry(value, source) {
                list.entries.push(entry);
            }
        }
        list
    }

    /// The list a configuration asks for: the defaults (unless switched off) plus its entries.
    pub fn from_config(config: &ProtectedConfig) -> Result<ProtectedList, ControlError> {
        let mut list = if config.defaults {
            ProtectedList::defaults()
        } else {
            ProtectedList::default()
        };
        for (i, name) in config.names.iter().enumerate() {
            let normal = juris_policy::normalize_name(name).map_err(|e| {
                ControlError::invalid(format!("control.protected.names[{i}]"), e.to_string())
            })?;
            list.entries.push(ProtectedEntry {
                value: Protected::Name(normal),
                source: "configuration".into(),
            });
        }
        for (i, prefix) in config.prefixes.iter().enumerate() {
            let net = parse_prefix(prefix).ok_or_else(|| {
                ControlError::invalid(
                    format!("control.protected.prefixes[{i}]"),
                    format!("{prefix:?} is not an IP address or prefix"),
                )
            })?;
            list.entries.push(ProtectedEntry {
                value: Protected::Prefix(net),
                source: "configuration".into(),
            });
        }
        Ok(list)
    }

    /// Adds an operator's published list (`juris safeguards update`): its names as entries,
    /// its prefixes as one indexed set. The field in an error names the list.
    pub fn add_published(&mut self, list: &PublishedList) -> Result<(), ControlError> {
        let source = format!("published list {}", list.source);
        let field = |what: &str, i: usize| format!("{}.{what}[{i}]", list.source);
        let mut nets = Vec::with_capacity(list.prefixes.len());
        for (i, prefix) in list.prefixes.iter().enumerate() {
            nets.push(parse_prefix(prefix).ok_or_else(|| {
                ControlError::invalid(field("prefixes", i), format!("{prefix:?} is not a prefix"))
            })?);
        }
        for (i, name) in list.names.iter().enumerate() {
            let normal = juris_policy::normalize_name(name)
                .map_err(|e| ControlError::invalid(field("names", i), e.to_string()))?;
            self.entries.push(ProtectedEntry {
                value: Protected::Name(normal),
                source: source.clone(),
            });
        }
        self.published.push(PrefixSet::new(source, &nets));
        Ok(())
    }

    /// The entries (the published lists' prefixes are not among them: see
    /// [`ProtectedList::published_prefixes`]).
    pub fn entries(&self) -> &[ProtectedEntry] {
        &self.entries
    }

    /// Per published list: its name and how many (aggregated) prefixes it protects.
    pub fn published_prefixes(&self) -> Vec<(&str, usize)> {
        self.published
            .iter()
            .map(|set| (set.source.as_str(), set.len()))
            .collect()
    }

    /// Why `target` must be reviewed before it is enforced, or `None` if it touches nothing
    /// protected. A name target is held when it is at or below a protected name, or when it is a
    /// subtree that covers one; an address target when its prefix overlaps a protected prefix.
    pub fn check(&self, target: &ValidatedTarget) -> Option<String> {
        match target.value() {
            TargetValue::Name(name) => self.check_name(target.kind(), name),
            TargetValue::Prefix(net) => self.check_prefix(net),
        }
    }

    /// Whether `address` is inside a protected prefix (shared hosting, CDN ranges): such an
    /// address says nothing about who runs a site (candidate mining ignores it).
    pub fn covers_address(&self, address: std::net::IpAddr) -> bool {
        self.entries
            .iter()
            .any(|entry| matches!(&entry.value, Protected::Prefix(net) if net.contains(&address)))
            || self
                .published
                .iter()
                .any(|set| set.overlapping(&IpNet::from(address)).is_some())
    }

    /// Whether `name` (lower-case, no trailing dot) is at or below a protected name.
    pub fn covers_name(&self, name: &str) -> bool {
        self.entries
            .iter()
            .any(|entry| matches!(&entry.value, Protected::Name(p) if is_at_or_below(name, p)))
    }

    fn check_name(&self, kind: TargetKind, name: &str) -> Option<String> {
        for entry in &self.entries {
            let Protected::Name(protected) = &entry.value else {
                continue;
            };
            if is_at_or_below(name, protected) {
                return Some(format!(
                    "{name} is at or below protected name {protected} ({})",
                    entry.source
                ));
            }
            if kind == TargetKind::Subtree && is_at_or_below(protected, name) {
                return Some(format!(
                    "subtree {name} covers protected name {protected} ({})",
                    entry.source
                ));
            }
        }
        None
    }

    fn check_prefix(&self, net: &IpNet) -> Option<String> {
        for entry in &self.entries {
            let Protected::Prefix(protected) = &entry.value else {
                continue;
            };
            if protected.contains(&net.network()) || net.contains(&protected.network()) {
                return Some(format!(
                    "{net} overlaps protected prefix {protected} ({})",
                    entry.source
                ));
            }
        }
        self.published.iter().find_map(|set| {
            let protected = set.overlapping(net)?;
            Some(format!(
                "{net} overlaps protected prefix {protected} ({})",
                set.source
            ))
        })
    }
}

pub(crate) fn is_at_or_below(name: &str, ancestor: &str) -> bool {
    name == ancestor
        || (name.len() > ancestor.len()
            && name.ends_with(ancestor)
            && name.as_bytes()[name.len() - ancestor.len() - 1] == b'.')
}

fn parse_prefix(text: &str) -> Option<IpNet> {
    let text = text.trim();
    text.parse::<IpNet>()
        .ok()
        .or_else(|| text.parse::<std::net::IpAddr>().ok().map(IpNet::from))
        .map(|net| net.trunc())
}

fn parse_entry(value: &str, source: &str) -> Result<ProtectedEntry, ControlError> {
    let value = match parse_prefix(value) {
        Some(net) => Protected::Prefix(net),
        None => Protected::Name(
            juris_policy::normalize_name(value)
                .map_err(|e| ControlError::invalid(value, e.to_string()))?,
        ),
    };
    Ok(ProtectedEntry {
        value,
        source: source.to_owned(),
    })
}

#[cfg(test)]
#[allow(clippy::unwrap_used, reason = "test code")]
mod tests {
    use super::*;
    use juris_policy::{Order, ValidationOptions};

    fn target(kind: &str, value: &str) -> ValidatedTarget {
        let order = Order::from_json(
            format!(
                r#"{{"id":"x","kind":"court_order","authority":"a","jurisdictions":["IT"],
                "action":"nxdomain","targets":[{{"type":"{kind}","value":"{value}"}}]}}"#
            )
            .as_bytes(),
        )
        .unwrap();
        order
            .validate(&ValidationOptions::default())
            .unwrap()
            .targets()[0]
            .clone()
    }

    #[test]
    fn name_server_targets_on_shared_dns_hosting_are_held() {
        let list = ProtectedList::defaults();
        let reason = list
            .check(&target("nsdname", "lara.ns.cloudflare.com"))
            .expect("a Cloudflare name server is held");
        assert!(reason.contains("ns.cloudflare.com"), "{reason}");
        assert!(list
            .check(&target("nsdname", "ns11.domaincontrol.com"))
            .is_some());
        assert!(list.check(&target("nsip", "8.8.8.8")).is_some());
        assert!(list
            .check(&target("nsdname", "ns1.kickass-dns.example"))
            .is_none());
    }

    #[test]
    fn defaults_parse() {
        assert_eq!(
            ProtectedList::defaults().entries().len(),
            DEFAULT_PROTECTED.len()
        );
    }

    #[test]
    fn psl_knows_public_suffixes() {
        assert!(Psl.is_public_suffix("co.uk"));
        assert!(Psl.is_public_suffix("com"));
        assert!(Psl.is_public_suffix("github.io"));
        assert!(!Psl.is_public_suffix("bbc.co.uk"));
        assert!(!Psl.is_public_suffix("kickasstorrents.to"));
        assert!(!Psl.is_public_suffix("example.notatld"));
    }

    #[test]
    fn the_2024_accidents_are_held() {
        let list = ProtectedList::defaults();
        let reason = list.check(&target("ip", "188.114.97.7")).unwrap();
        assert!(reason.contains("188.114.96.0/20"), "{reason}");
        let reason = list
            .check(&target("domain", "drive.usercontent.google.com"))
            .unwrap();
        assert!(reason.contains("drive.usercontent.google.com"), "{reason}");
        assert!(list.check(&target("subtree", "google.com")).is_some());
        assert!(list.check(&target("domain", "google.com")).is_none());
        assert!(list.check(&target("domain", "x.cloudfront.net")).is_some());
        // Cloudflare's Enterprise name servers (its name-server page, checked 2026-12-07).
        assert!(list
            .check(&target("nsdname", "blue.foundationdns.org"))
            .is_some());
        assert!(list.check(&target("domain", "notcloudfront.net")).is_none());
        assert!(
            list.check(&target("ip", "104.0.0.0/8")).is_some(),
            "covers 104.16/13"
        );
        assert!(list.check(&target("ip", "203.0.113.7")).is_none());
        assert!(list
            .check(&target("domain", "kickasstorrents.to"))
            .is_none());
    }

    #[test]
    fn config_adds_and_can_drop_defaults() {
        let config = ProtectedConfig {
            defaults: false,
            names: vec!["Example.ORG".into()],
            prefixes: vec!["192.0.2.0/24".into()],
        };
        let list = ProtectedList::from_config(&config).unwrap();
        assert_eq!(list.entries().len(), 2);
        assert!(list.check(&target("domain", "www.example.org")).is_some());
        assert!(list.check(&target("ip", "188.114.97.7")).is_none());
        let bad = ProtectedConfig {
            prefixes: vec!["nope".into()],
            ..ProtectedConfig::default()
        };
        let error = ProtectedList::from_config(&bad).unwrap_err();
        assert_eq!(error.field(), "control.protected.prefixes[0]");
    }

    fn published(source: &str, bytes: &[u8], service: Option<&str>) -> (ProtectedList, Published) {
        let parsed = parse_published(bytes, service).unwrap();
        let mut list = ProtectedList::default();
        list.add_published(&PublishedList {
            source: source.into(),
            url: None,
            format: parsed.format.into(),
            service: service.map(str::to_owned),
            sha256: String::new(),
            imported_at: String::new(),
            prefixes: parsed.prefixes.iter().map(ToString::to_string).collect(),
            names: parsed.names.clone(),
        })
        .unwrap();
        (list, parsed)
    }

    /// Each operator's published shape (abridged copies of the real files' structure).
    #[test]
    fn published_formats_are_recognised() {
        let cloudflare = b"173.245.48.0/20\n103.21.244.0/22\n# comment\n\n2400:cb00::/32\n";
        let (list, parsed) = published("cloudflare", cloudflare, None);
        assert_eq!((parsed.format, parsed.prefixes.len()), ("lines", 3));
        assert!(list
            .check(&target("ip", "173.245.49.1"))
            .unwrap()
            .contains("published list cloudflare"));
        assert!(list.check(&target("ip", "2400:cb00:1::/48")).is_some());

        let aws = br#"{"syncToken": "1", "createDate": "2026-12-01-00-00-00",
            "prefixes": [{"ip_prefix": "3.5.140.0/22", "region": "ap-northeast-2", "service": "AMAZON", "network_border_group": "x"},
                         {"ip_prefix": "13.32.0.0/15", "region": "GLOBAL", "service": "CLOUDFRONT", "network_border_group": "GLOBAL"}],
            "ipv6_prefixes": [{"ipv6_prefix": "2600:9000::/28", "region": "GLOBAL", "service": "CLOUDFRONT", "network_border_group": "GLOBAL"}]}"#;
        let (list, parsed) = published("aws-cloudfront", aws, Some("CLOUDFRONT"));
        assert_eq!((parsed.format, parsed.prefixes.len()), ("aws-ip-ranges", 2));
        assert!(list.check(&target("ip", "13.33.1.1")).is_some());
        assert!(
            list.check(&target("ip", "3.5.140.1")).is_none(),
            "AMAZON filtered out"
        );
        assert_eq!(parse_published(aws, None).unwrap().prefixes.len(), 3);

        let google = br#"{"syncToken": "1", "creationTime": "2026-12-01T00:00:00",
            "prefixes": [{"ipv4Prefix": "8.8.4.0/24"}, {"ipv4Prefix": "34.0.0.0/15"}, {"ipv6Prefix": "2001:4860::/32"}]}"#;
        let (list, parsed) = published("google", google, None);
        assert_eq!(
            (parsed.format, parsed.prefixes.len()),
            ("google-ip-ranges", 3)
        );
        assert!(list.check(&target("ip", "34.1.2.3")).is_some());

        let fastly = br#"{"addresses": ["23.235.32.0/20", "151.101.0.0/16"], "ipv6_addresses": ["2a04:4e40::/32"]}"#;
        let (_, parsed) = published("fastly", fastly, None);
        assert_eq!(
            (parsed.format, parsed.prefixes.len()),
            ("fastly-public-ip-list", 3)
        );

        let azure = br#"{"changeNumber": 1, "cloud": "Public", "values": [
            {"name": "AzureFrontDoor.Frontend", "id": "AzureFrontDoor.Frontend",
             "properties": {"systemService": "AzureFrontDoor", "addressPrefixes": ["13.107.208.0/24", "2620:1ec:bdf::/48"]}},
            {"name": "Storage", "id": "Storage", "properties": {"systemService": "AzureStorage", "addressPrefixes": ["20.38.96.0/19"]}}]}"#;
        let (_, parsed) = published("azure-frontdoor", azure, Some("AzureFrontDoor.Frontend"));
        assert_eq!(
            (parsed.format, parsed.prefixes.len()),
            ("azure-service-tags", 2)
        );

        let api = br#"{"result": {"ipv4_cidrs": ["173.245.48.0/20"], "ipv6_cidrs": ["2400:cb00::/32"], "etag": "x"}, "success": true}"#;
        assert_eq!(parse_published(api, None).unwrap().format, "cloudflare-api");

        let hosters = b"domaincontrol.com\nns.cloudflare.com.\n";
        let (list, parsed) = published("dns-hosters", hosters, None);
        assert_eq!(parsed.names, ["domaincontrol.com", "ns.cloudflare.com"]);
        assert!(list
            .check(&target("nsdname", "ns01.domaincontrol.com"))
            .is_some());
    }

    #[test]
    fn bad_published_files_are_refused_with_the_place() {
        let error = parse_published(b"173.245.48.0/20\nnot a name!\n", None).unwrap_err();
        assert_eq!(error.field(), "line 2");
        let error = parse_published(br#"{"addresses": ["1.2.3.0/24", "nope"]}"#, None).unwrap_err();
        assert_eq!(error.field(), "addresses[1]");
        let error = parse_published(br#"{"prefixes": [{"ipv4Prefix": "x"}]}"#, None).unwrap_err();
        assert_eq!(error.field(), "prefixes[0].ipv4Prefix");
        // A truncated download or a filter that matches nothing must not empty the list.
        assert_eq!(
            parse_published(b"# nothing\n", None).unwrap_err().field(),
            "file"
        );
        let aws = br#"{"prefixes": [{"ip_prefix": "3.5.140.0/22", "service": "AMAZON"}], "ipv6_prefixes": []}"#;
        assert_eq!(
            parse_published(aws, Some("CLOUDFRONT"))
                .unwrap_err()
                .field(),
            "file"
        );
        assert_eq!(
            parse_published(br#"{"other": 1}"#, None)
                .unwrap_err()
                .field(),
            "file"
        );
        assert_eq!(
            parse_published(b"1.2.3.0/24", Some("X"))
                .unwrap_err()
                .field(),
            "service"
        );
    }

    proptest::proptest! {
        /// The indexed check of a published list finds exactly what a scan of its prefixes
        /// finds.
        #[test]
        fn the_prefix_index_agrees_with_a_scan(
            prefixes in proptest::collection::vec((proptest::prelude::any::<u32>(), 4u8..=32), 1..64),
            probe in (proptest::prelude::any::<u32>(), 0u8..=32),
        ) {
            let nets: Vec<IpNet> = prefixes
                .iter()
                .map(|(a, len)| IpNet::new(std::net::Ipv4Addr::from(*a).into(), *len).unwrap().trunc())
                .collect();
            let probe = IpNet::new(std::net::Ipv4Addr::from(probe.0).into(), probe.1).unwrap().trunc();
            let set = PrefixSet::new("p".into(), &nets);
            let scanned = nets
                .iter()
                .any(|p| p.contains(&probe.network()) || probe.contains(&p.network()));
            proptest::prop_assert_eq!(set.overlapping(&probe).is_some(), scanned);
        }
    }
}
