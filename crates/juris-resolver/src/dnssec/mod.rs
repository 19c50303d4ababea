//! DNSSEC validation (RFC 4033–4035, 5155, 6840, 9276, 8624): configuration and trust anchors.
//!
//! ```text
//!   [dnssec] / --trust-anchor ──► ValidatorConfig::load_anchors ──► TrustAnchors (DS/DNSKEY per zone)
//! ```
//!
//! Cryptography comes from `domain` (feature `ring`): see docs/design and docs/dnssec.md.

mod anchors;

use std::path::PathBuf;
use std::time::Duration;

pub use anchors::{AnchorError, TrustAnchor, TrustAnchors, BUILTIN_ROOT_ANCHORS};

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
    /// Domains (and everything below them) treated as insecure (RFC 7646).
    pub negative_trust_anchors: Vec<String>,
    /// NSEC3 records with more additional iterations than this prove nothing: the answer is
    /// insecure (RFC 9276 §3.2).
    pub nsec3_max_iterations: u16,
    /// How long a bogus result is remembered before the data is validated again.
    pub bogus_ttl: Duration,
}

impl Default for ValidatorConfig {
    fn default() -> Self {
        Self {
            enabled: true,
            trust_anchor_files: Vec::new(),
            negative_trust_anchors: Vec::new(),
            nsec3_max_iterations: DEFAULT_NSEC3_MAX_ITERATIONS,
            bogus_ttl: Duration::from_secs(60),
        }
    }
}

impl ValidatorConfig {
    /// The trust anchors in force: the files' anchors, plus the built-in root anchors unless a
    /// file has one for `.`. Errors name the file and line.
    pub fn load_anchors(&self) -> Result<TrustAnchors, AnchorError> {
        let mut anchors = TrustAnchors::default();
        for path in &self.trust_anchor_files {
            anchors.add_file(path)?;
        }
        if !anchors.has_root() {
            anchors.merge(TrustAnchors::builtin());
        }
        Ok(anchors)
    }
}
