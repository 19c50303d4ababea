//! The external programs the end-to-end tests need, and a clear failure when one is missing.

use std::path::{Path, PathBuf};

const INSTALL_HINT: &str = "apt-get install nsd bind9-dnsutils knot-dnsutils";

/// Path of `program` (`nsd`, `dig`, `kdig`), searched in `PATH` and the sbin directories.
///
/// # Panics
/// When it is not installed, with the command that installs it.
#[must_use]
pub fn require(program: &str) -> PathBuf {
    find(program).unwrap_or_else(|| {
        panic!(
            "`{program}` is not installed; the end-to-end tests need NSD, dig and kdig: \
             run `{INSTALL_HINT}` (.ci/run does it)"
        )
    })
}

/// Path of an `ldnsutils` program (`ldns-keygen`, `ldns-signzone`, `ldns-key2ds`).
///
/// # Panics
/// When it is not installed, with the command that installs it.
#[must_use]
pub fn require_ldns(program: &str) -> PathBuf {
    find(program).unwrap_or_else(|| {
        panic!(
            "`{program}` is not installed; the DNSSEC tests sign their zones with ldns: \
             run `apt-get install ldnsutils` (.ci/run does it)"
        )
    })
}

/// Path of `program` if it is installed.
#[must_use]
pub fn find(program: &str) -> Option<PathBuf> {
    let path = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&path)
        .chain(["/usr/sbin", "/usr/local/sbin", "/sbin", "/usr/bin"].map(PathBuf::from))
        .map(|directory| directory.join(program))
        .find(|candidate| is_executable(candidate))
}

fn is_executable(path: &Path) -> bool {
    use std::os::unix::fs::PermissionsExt;
    path.metadata()
        .is_ok_and(|meta| meta.is_file() && meta.permissions().mode() & 0o111 != 0)
}
