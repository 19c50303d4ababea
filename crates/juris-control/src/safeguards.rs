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
use serde::Deserialize;

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
    // Google user-content and storage hosts (Google Drive download host; Cloud Storage API
    // endpoints documentation; user-content domain).
    ("drive.usercontent.google.com", "Google Drive downloads"),
    (
        "storage.googleapis.com",
        "Google Cloud Storage (Request endpoints)",
    ),
    ("googleusercontent.com", "Google user content"),
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
    // GitHub user content (raw files, release downloads).
    ("githubusercontent.com", "GitHub user content"),
    // Name servers of big DNS hosters, shared by millions of zones: an `nsdname` target here
    // (or a `subtree` covering them) would block every zone they serve. The names are the
    // hosters' well-known name server domains; NOT yet checked against each hoster's published
    // documentation (issue 14, item 7).
    (
        "ns.cloudflare.com",
        "Cloudflare DNS name servers (unverified)",
    ),
    ("domaincontrol.com", "GoDaddy DNS name servers (unverified)"),
    (
        "registrar-servers.com",
        "Namecheap DNS name servers (unverified)",
    ),
    ("azure-dns.com", "Azure DNS name servers (unverified)"),
    ("azure-dns.net", "Azure DNS name servers (unverified)"),
    ("azure-dns.org", "Azure DNS name servers (unverified)"),
    ("azure-dns.info", "Azure DNS name servers (unverified)"),
    (
        "googledomains.com",
        "Google Cloud DNS name servers (unverified)",
    ),
    ("nsone.net", "NS1 name servers (unverified)"),
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

    /// The entries.
    pub fn entries(&self) -> &[ProtectedEntry] {
        &self.entries
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
        None
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
}
