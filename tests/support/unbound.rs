//! NLnet Labs' Unbound as a reference validating resolver, to prove that a signed test
//! hierarchy ([`crate::dnssec`]) is broken exactly as intended: an independent validator
//! must agree with the outcome each fixture is built for.
//!
//! ```no_run
//! use juris_testkit::unbound::Unbound;
//! # let (hints, anchor) = (std::path::Path::new("root.hints"), std::path::Path::new("ta"));
//! if let Some(unbound) = Unbound::start(hints, anchor) {
//!     let server = unbound.address(); // query it with dig
//! }
//! ```
//!
//! Unbound is optional (CI may not have it): [`Unbound::start`] returns `None` after
//! printing why when it is not installed.

use std::fs;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Stdio};
use std::sync::{Mutex, PoisonError};
use std::time::Duration;

use crate::addresses::AddressBlock;
use crate::juris::{free_port, wait_until_answering};
use crate::{process, tools};

const START_TIMEOUT: Duration = Duration::from_secs(15);
const STOP_TIMEOUT: Duration = Duration::from_secs(5);

/// The start of an Unbound configuration for a test: `server:` in the foreground on
/// `address`, everything in `directory` (log `unbound.log`), one thread, loopback clients,
/// recursion from `root_hints` through name servers on loopback (also under `test.`). Add
/// more `server:` lines (4 spaces) and clauses after it.
#[must_use]
pub fn server_clause(address: SocketAddr, directory: &Path, root_hints: &Path) -> String {
    let d = directory.display();
    format!(
        r#"server:
    interface: {ip}@{port}
    port: {port}
    do-ip6: no
    do-daemonize: no
    chroot: ""
    username: ""
    directory: "{d}"
    pidfile: "{d}/unbound.pid"
    use-syslog: no
    logfile: "{d}/unbound.log"
    verbosity: 1
    num-threads: 1
    so-reuseport: no
    access-control: 127.0.0.0/8 allow
    do-not-query-localhost: no
    local-zone: "test." nodefault
    root-hints: "{hints}"
"#,
        ip = address.ip(),
        port = address.port(),
        hints = root_hints.display(),
    )
}

/// A running `unbound -d`, validating with one trust anchor; stopped on drop.
#[derive(Debug)]
pub struct Unbound {
    address: SocketAddr,
    child: Mutex<Option<Child>>,
    log: PathBuf,
    _directory: tempfile::TempDir,
    _block: AddressBlock,
}

impl Unbound {
    /// Starts Unbound on its own loopback address with `root_hints` and the trust anchor
    /// file `trust_anchor` (DS or DNSKEY lines), `val-log-level: 2` and `ede: yes`.
    /// `None` (with a line on stderr saying so) when Unbound is not installed.
    ///
    /// # Panics
    /// When it is installed but does not start.
    #[must_use]
    pub fn start(root_hints: &Path, trust_anchor: &Path) -> Option<Self> {
        let Some(binary) = tools::find("unbound") else {
            eprintln!(
                "SKIPPED: `unbound` is not installed (apt-get install unbound): no cross-check"
            );
            return None;
        };
        let block = AddressBlock::allocate();
        let address = free_port(block.address(1));
        let directory = tempfile::Builder::new()
            .prefix("juris-unbound-")
            .tempdir()
            .unwrap_or_else(|error| panic!("cannot create a temporary directory: {error}"));
        let log = directory.path().join("unbound.log");
        let config = directory.path().join("unbound.conf");
        let text = format!(
            r#"# Written by juris-testkit: a validating reference resolver on loopback.
{base}    log-servfail: yes
    val-log-level: 2
    ede: yes
    trust-anchor-file: "{anchor}"
    trust-anchor-signaling: no
    root-key-sentinel: no
    module-config: "validator iterator"
    aggressive-nsec: no
    val-bogus-ttl: 1
remote-control:
    control-enable: no
"#,
            base = server_clause(address, directory.path(), root_hints),
            anchor = trust_anchor.display(),
        );
        fs::write(&config, text)
            .unwrap_or_else(|error| panic!("cannot write {}: {error}", config.display()));
        let stderr = fs::File::create(directory.path().join("stderr"))
            .map_or_else(|_| Stdio::null(), Stdio::from);
        let child = process::spawn_foreground(&binary, &config, stderr)
            .unwrap_or_else(|error| panic!("cannot start unbound: {error}"));
        let unbound = Self {
            address,
            child: Mutex::new(Some(child)),
            log,
            _directory: directory,
            _block: block,
        };
        wait_until_answering(address, START_TIMEOUT, || {
            (!unbound.is_running()).then(|| "unbound exited during startup".to_owned())
        })
        .unwrap_or_else(|why| panic!("{why}\n--- unbound log ---\n{}", unbound.log()));
        Some(unbound)
    }

    /// Where it listens (UDP and TCP).
    #[must_use]
    pub fn address(&self) -> SocketAddr {
        self.address
    }

    /// Unbound's log (validation failures at `val-log-level: 2`).
    #[must_use]
    pub fn log(&self) -> String {
        let mut text = fs::read_to_string(&self.log).unwrap_or_default();
        if let Some(directory) = self.log.parent() {
            text.push_str(&fs::read_to_string(directory.join("stderr")).unwrap_or_default());
        }
        text
    }

    fn is_running(&self) -> bool {
        let mut child = self.child.lock().unwrap_or_else(PoisonError::into_inner);
        child
            .as_mut()
            .is_some_and(|child| matches!(child.try_wait(), Ok(None)))
    }
}

impl Drop for Unbound {
    fn drop(&mut self) {
        if let Some(child) = self
            .child
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .take()
        {
            process::terminate(child, STOP_TIMEOUT, "unbound");
        }
    }
}
