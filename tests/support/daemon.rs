//! Third-party DNS servers (BIND's `named`, Unbound, PowerDNS Recursor) run by a test in the
//! foreground from a configuration the test writes into the daemon's own temporary directory.
//!
//! ```no_run
//! use juris_testkit::daemon::Daemon;
//! let Some(named) = Daemon::find("named", "bind9") else { return }; // prints SKIPPED
//! let prepared = Daemon::prepare_on_localhost("named");
//! let conf = prepared.directory.path().join("named.conf");
//! // write conf, listening on `prepared.address` ...
//! let mut command = std::process::Command::new(named);
//! command.arg("-g").arg("-c").arg(&conf);
//! let server = Daemon::start("named", command, prepared);
//! ```
//!
//! The daemon is polled with a UDP query until it answers anything, its stdout and stderr
//! go to `output` in its directory ([`Daemon::log`] also reads every `*.log` there), and
//! it is stopped (SIGTERM, then SIGKILL) on drop, its log printed if the test panics.

use std::fs;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::{Mutex, PoisonError};
use std::thread;
use std::time::Duration;

use crate::addresses::AddressBlock;
use crate::juris::{free_port, wait_until_answering};
use crate::{process, tools};

const START_TIMEOUT: Duration = Duration::from_secs(30);
const STOP_TIMEOUT: Duration = Duration::from_secs(10);

/// A running third-party server; stopped on drop.
#[derive(Debug)]
pub struct Daemon {
    name: String,
    address: SocketAddr,
    child: Mutex<Option<Child>>,
    directory: tempfile::TempDir,
    _block: AddressBlock,
}

/// A daemon's address and directory before it starts (see [`Daemon::prepare`]).
#[derive(Debug)]
pub struct Prepared {
    /// Its temporary directory: configuration, zone files, logs.
    pub directory: tempfile::TempDir,
    /// Where it must listen (UDP and TCP), on a loopback block of its own.
    pub address: SocketAddr,
    block: AddressBlock,
}

impl Daemon {
    /// The path of `program`, or `None` after printing that the test is SKIPPED because
    /// the Debian package `package` is not installed.
    #[must_use]
    pub fn find(program: &str, package: &str) -> Option<PathBuf> {
        let found = tools::find(program);
        if found.is_none() {
            eprintln!(
                "SKIPPED: `{program}` is not installed (apt-get install {package}; .ci/run installs it)"
            );
        }
        found
    }

    /// A temporary directory and a free address (own loopback block, free port) for a
    /// daemon called `name`, known before it starts (e.g. for a primary's NOTIFY list).
    ///
    /// # Panics
    /// When the directory cannot be created.
    #[must_use]
    pub fn prepare(name: &str) -> Prepared {
        let block = AddressBlock::allocate();
        let address = free_port(block.address(1));
        Self::prepared(name, block, address)
    }

    /// [`Daemon::prepare`] on `127.0.0.1` (a free port): for daemons that listen only on
    /// the addresses of network interfaces (BIND: the other 127.x addresses reach the
    /// loopback interface but are not its addresses).
    #[must_use]
    pub fn prepare_on_localhost(name: &str) -> Prepared {
        let address = free_port(std::net::Ipv4Addr::LOCALHOST);
        Self::prepared(name, AddressBlock::allocate(), address)
    }

    fn prepared(name: &str, block: AddressBlock, address: SocketAddr) -> Prepared {
        let directory = tempfile::Builder::new()
            .prefix(&format!("juris-{name}-"))
            .tempdir()
            .unwrap_or_else(|error| panic!("cannot create a temporary directory: {error}"));
        Prepared {
            directory,
            address,
            block,
        }
    }

    /// Spawns `command` (output to `output` in the directory) and waits until the daemon
    /// answers a query on `prepared.address`.
    ///
    /// # Panics
    /// When it does not start or does not answer in time; the panic carries its log.
    #[must_use]
    pub fn start(name: &str, mut command: Command, prepared: Prepared) -> Daemon {
        let Prepared {
            directory,
            address,
            block,
        } = prepared;
        let output = directory.path().join("output");
        let file = fs::File::create(&output)
            .unwrap_or_else(|error| panic!("cannot create {}: {error}", output.display()));
        let copy = file
            .try_clone()
            .unwrap_or_else(|error| panic!("cannot duplicate a file: {error}"));
        command
            .stdin(Stdio::null())
            .stdout(Stdio::from(copy))
            .stderr(Stdio::from(file));
        let child =
            process::spawn(command).unwrap_or_else(|error| panic!("cannot start {name}: {error}"));
        let daemon = Daemon {
            name: name.to_owned(),
            address,
            child: Mutex::new(Some(child)),
            directory,
            _block: block,
        };
        wait_until_answering(address, START_TIMEOUT, || {
            (!daemon.is_running()).then(|| format!("{name} exited during startup"))
        })
        .unwrap_or_else(|why| panic!("{why}\n--- {name} log ---\n{}", daemon.log()));
        daemon
    }

    /// Writes `files` (name, text) into the daemon's directory and starts `program` with
    /// `args`, in which `{dir}` stands for that directory (e.g. `["-d", "-c",
    /// "{dir}/nsd.conf"]`); see [`Daemon::start`].
    ///
    /// # Panics
    /// When a file cannot be written, or as [`Daemon::start`].
    #[must_use]
    pub fn start_with_files(
        name: &str,
        program: &std::path::Path,
        prepared: Prepared,
        files: &[(&str, &str)],
        args: &[&str],
    ) -> Daemon {
        let directory = prepared.directory.path().to_owned();
        for (file, text) in files {
            let path = directory.join(file);
            fs::write(&path, text)
                .unwrap_or_else(|error| panic!("cannot write {}: {error}", path.display()));
        }
        let mut command = Command::new(program);
        let d = directory.display().to_string();
        command.args(args.iter().map(|arg| arg.replace("{dir}", &d)));
        Self::start(name, command, prepared)
    }

    /// Where it listens (UDP and TCP).
    #[must_use]
    pub fn address(&self) -> SocketAddr {
        self.address
    }

    /// Its directory.
    #[must_use]
    pub fn directory(&self) -> &std::path::Path {
        self.directory.path()
    }

    /// Its output and every `*.log` file in its directory.
    #[must_use]
    pub fn log(&self) -> String {
        let mut text = fs::read_to_string(self.directory.path().join("output")).unwrap_or_default();
        let mut logs: Vec<PathBuf> = fs::read_dir(self.directory.path())
            .into_iter()
            .flatten()
            .flatten()
            .map(|entry| entry.path())
            .filter(|path| path.extension().is_some_and(|e| e == "log"))
            .collect();
        logs.sort();
        for path in logs {
            text.push_str(&format!("--- {} ---\n", path.display()));
            text.push_str(&fs::read_to_string(&path).unwrap_or_default());
        }
        text
    }

    /// Sends `signal` (e.g. `libc::SIGHUP`: NSD reloads its zone files) to the daemon's
    /// main process; nothing if it stopped.
    pub fn signal(&self, signal: libc::c_int) {
        let mut child = self.child.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some(child) = child.as_mut() {
            if matches!(child.try_wait(), Ok(None)) {
                process::signal(child, signal);
            }
        }
    }

    /// Whether the process still runs.
    #[must_use]
    pub fn is_running(&self) -> bool {
        let mut child = self.child.lock().unwrap_or_else(PoisonError::into_inner);
        child
            .as_mut()
            .is_some_and(|child| matches!(child.try_wait(), Ok(None)))
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        let child = self
            .child
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .take();
        if let Some(child) = child {
            process::terminate(child, STOP_TIMEOUT, &self.name);
        }
        if thread::panicking() {
            eprintln!(
                "--- {} log ---\n{}--- end of {} log ---",
                self.name,
                self.log(),
                self.name
            );
        }
    }
}
