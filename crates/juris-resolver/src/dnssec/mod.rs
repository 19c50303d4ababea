//! DNSSEC validation (RFC 4033–4035, 5155, 6840, 9276, 8624): configuration and trust anchors.
//!
//! ```text
//!   [dnssec] / --trust-anchor ──► ValidatorConfig::load_anchors ──► TrustAnchors (DS/DNSKEY per zone)
//! ```
//!
//! Cryptography comes from `domain` (feature `ring`): see docs/design and docs/dnssec.md.

pub(crate) mod aggressive;
mod anchors;
mod canonical;
mod denial;
mod legacy;
mod sentinel;
pub(crate) mod validator;
mod verify;

use std::path::PathBuf;
use std::time::Duration;

pub use anchors::{parse_domain, AnchorError, TrustAnchor, TrustAnchors, BUILTIN_ROOT_ANCHORS};
pub(crate) use canonical::rrsig_labels;
pub(crate) use denial::dname_at;
pub(crate) use validator::{BoxFuture, Fetcher, Validator};
pub(crate) use verify::Budget;

/// Why an answer is bogus, in the terms of RFC 8914's DNSSEC cases. The validator says *what*
/// failed; `juris_server::error_map` alone turns it into an EDE number.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum BogusReason {
    /// Bogus for any other reason (also: a validation work limit, KeyTrap).
    Bogus,
    /// Every candidate signature has expired.
    SignatureExpired,
    /// Every candidate signature is not yet valid.
    SignatureNotYetValid,
    /// No DNSKEY matches the DS set or the RRSIG.
    DnskeyMissing,
    /// A signed zone's RRset came without RRSIGs.
    RrsigsMissing,
    /// A denial from a signed zone came without its NSEC/NSEC3 proof.
    NsecMissing,
    /// Not bogus data: a secure answer refused by the RFC 8509 root-key-sentinel rule (the
    /// query's sentinel label contradicts the root trust anchors). Kept as a bogus state so
    /// that CD=1 still gets the data and the hot cache never serves it.
    RootKeySentinel,
}

/// Why a signed zone is treated as insecure (RFC 8624): what juris does not implement.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Unsupported {
    /// Only DNSKEY algorithms juris cannot verify.
    DnskeyAlgorithm,
    /// Only DS digest types juris cannot compute.
    DsDigestType,
}

/// The validation state of an answer (RFC 4033 §5), kept with its cache entry.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub enum Security {
    /// Not validated: validation is off.
    #[default]
    Unchecked,
    /// Every RRset and denial proven from a trust anchor: answered with AD.
    Secure,
    /// Proven unsigned (insecure delegation, NSEC3 opt-out or iterations, unsupported
    /// algorithms, a negative trust anchor): answered without AD.
    Insecure,
    /// Insecure only because the zone uses algorithms (EDE 1) or DS digest types (EDE 2) that
    /// juris does not implement (RFC 8624): answered without AD, with that EDE as information.
    Unsupported(Unsupported),
    /// No trust anchor covers the name: answered without AD.
    Indeterminate,
    /// Signed but failing validation: SERVFAIL with the EDE, unless the client set CD.
    Bogus(Box<Bogus>),
}

impl Security {
    /// The failure, when bogus.
    pub fn bogus(&self) -> Option<&Bogus> {
        match self {
            Security::Bogus(b) => Some(b),
            _ => None,
        }
    }

    /// What made an insecure answer insecure, when it is an unsupported algorithm or digest
    /// (informational EDE 1 or 2).
    pub fn unsupported(&self) -> Option<Unsupported> {
        match self {
            Security::Unsupported(what) => Some(*what),
            _ => None,
        }
    }

    /// A short name for logs and `explain`.
    pub fn as_str(&self) -> &'static str {
        match self {
            Security::Unchecked => "unchecked",
            Security::Secure => "secure",
            Security::Insecure | Security::Unsupported(_) => "insecure",
            Security::Indeterminate => "indeterminate",
            Security::Bogus(_) => "bogus",
        }
    }
}

/// Why an answer is bogus, and the EXTRA-TEXT that names the zone.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Bogus {
    /// What failed (the server maps it to an RFC 8914 INFO-CODE).
    pub reason: BogusReason,
    /// EXTRA-TEXT, e.g. `signature expired (zone example.test.)`.
    pub text: String,
}

/// A validation failure before it is tied to a zone.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Failure {
    pub kind: BogusReason,
    pub reason: &'static str,
}

impl Failure {
    pub(crate) fn bogus(kind: BogusReason, reason: &'static str) -> Self {
        Self { kind, reason }
    }

    /// A work limit (KeyTrap): DNSSEC Bogus with a text saying so.
    pub(crate) fn limit(reason: &'static str) -> Self {
        Self {
            kind: BogusReason::Bogus,
            reason,
        }
    }

    /// How specific the failure is (a specific EDE beats plain "bogus").
    pub(crate) fn rank(&self) -> u8 {
        u8::from(self.kind != BogusReason::Bogus)
    }

    pub(crate) fn in_zone(&self, zone: &impl std::fmt::Display) -> Bogus {
        Bogus {
            reason: self.kind,
            text: format!("{} (zone {zone})", self.reason),
        }
    }
}

/// Default cap on NSEC3 additional iterations (RFC 9276 §3.2; Unbound and BIND use 150).
pub const DEFAULT_NSEC3_MAX_ITERATIONS: u16 = 150;

/// Validation settings (validated; the raw TOML layer lives in the binary).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ValidatorConfig {
    /// Validate answers (default `true`).
    pub enabled: bool,
    /// Files of DS or DNSKEY lines in zone-file syntax. Empty: the built-in IANA root KSKs
    /// (key tags 20326 and 38696). A file with an anchor for `.` replaces the built-in one;
    /// anchors for other names are added to it.
    pub trust_anchor_files: Vec<PathBuf>,
    /// Add the built-in IANA root KSKs when no file has an anchor for `.` (default `true`).
    /// `false` leaves only the files' anchors: islands of trust (RFC 4033 §3.1) without the
    /// root, as Unbound has them when it is given only those.
    pub builtin_root_anchor: bool,
    /// Validate DSA signatures (algorithms 3 and 6), as Unbound and BIND do. Default `false`:
    /// RFC 8624 §3.1 says validators MUST NOT, so DSA-only zones are insecure (EDE 1).
    pub validate_dsa: bool,
    /// Domains (and everything below them) treated as insecure (RFC 7646).
    pub negative_trust_anchors: Vec<String>,
    /// NSEC3 records with more additional iterations than this prove nothing: the answer is
    /// insecure (RFC 9276 §3.2).
    pub nsec3_max_iterations: u16,
    /// How long a bogus result is remembered before the data is validated again.
    pub bogus_ttl: Duration,
    /// Forward mode: upstreams known to strip DNSSEC records. Their answers are not
    /// validated (insecure: no AD, never bogus) and they get the client's CD bit.
    pub forwarders_without_dnssec: Vec<std::net::SocketAddr>,
    /// Answer NXDOMAIN and NODATA from validated cached NSEC ranges without asking (RFC 8198;
    /// Unbound's `aggressive-nsec`). NSEC only; NSEC3 ranges are not used. Default `true`.
    pub aggressive_nsec: bool,
    /// RFC 8509 root-key-sentinel: secure A/AAAA answers to `root-key-sentinel-is-ta-<tag>` /
    /// `root-key-sentinel-not-ta-<tag>` names become SERVFAIL when the tag is not / is a root
    /// trust anchor (Unbound's `trust-anchor-signaling`, always on there). Default `true`.
    pub root_key_sentinel: bool,
}

impl Default for ValidatorConfig {
    fn default() -> Self {
        Self {
            enabled: true,
            trust_anchor_files: Vec::new(),
            builtin_root_anchor: true,
            validate_dsa: false,
            negative_trust_anchors: Vec::new(),
            nsec3_max_iterations: DEFAULT_NSEC3_MAX_ITERATIONS,
            bogus_ttl: Duration::from_secs(60),
            forwarders_without_dnssec: Vec::new(),
            aggressive_nsec: true,
            root_key_sentinel: true,
        }
    }
}

impl ValidatorConfig {
    /// The trust anchors in force: the files' anchors, plus the built-in root anchors unless a
    /// file has one for `.` or `builtin_root_anchor` is off. Errors name the file and line.
    pub fn load_anchors(&self) -> Result<TrustAnchors, AnchorError> {
        let mut anchors = TrustAnchors::default();
        for path in &self.trust_anchor_files {
            anchors.add_file(path)?;
        }
        if self.builtin_root_anchor && !anchors.has_root() {
            anchors.merge(TrustAnchors::builtin());
        }
        Ok(anchors)
    }
}
