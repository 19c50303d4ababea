//! Runs the juris binary for a test.
//!
//! ```no_run
//! use juris_testkit::juris::Juris;
//! # let hints = std::path::Path::new("root.hints");
//! let juris = Juris::builder(env!("CARGO_MANIFEST_DIR")) // really env!("CARGO_BIN_EXE_juris")
//!     .root_hints(hints)
//!     .args(["--threads", "2"])
//!     .start();
//! let server = juris.address(); // UDP and TCP
//! ```
//!
//! The instance listens on a loopback address of its own ([`AddressBlock`]) and a free
//! port, is polled with a UDP query until it answers anything at all, writes its stderr to
//! a file (printed when the test panics), and gets SIGTERM when dropped.

use std::ffi::{OsStr, OsString};
use std::fs;
use std::net::{SocketAddr, TcpListener, UdpSocket};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::{Mutex, PoisonError};
use std::thread;
use std::time::{Duration, Instant};

use hickory_proto::rr::RecordType;

use crate::addresses::AddressBlock;
use crate::{process, raw};

/// How long juris may take to answer its first query.
const START_TIMEOUT: Duration = Duration::from_secs(30);
/// How long juris may take to exit after SIGTERM.
const STOP_TIMEOUT: Duration = Duration::from_secs(10);

/// How to start juris.
#[derive(Debug, Clone)]
pub struct JurisBuilder {
    binary: PathBuf,
    arguments: Vec<OsString>,
    environment: Vec<(OsString, OsString)>,
    listen: bool,
}

impl JurisBuilder {
    /// `--root-hints FILE`.
    #[must_use]
    pub fn root_hints(self, file: &Path) -> Self {
        self.arg("--root-hints").arg(file)
    }

    /// One more argument after `serve --listen ADDR` (`--data-dir` is a fresh temporary
    /// directory unless given here).
    #[must_use]
    pub fn arg(mut self, argument: impl AsRef<OsStr>) -> Self {
        self.arguments.push(argument.as_ref().to_owned());
        self
    }

    /// More arguments.
    #[must_use]
    pub fn args<I: IntoIterator<Item = S>, S: AsRef<OsStr>>(mut self, arguments: I) -> Self {
        self.arguments.extend(
            arguments
                .into_iter()
                .map(|argument| argument.as_ref().to_owned()),
        );
        self
    }

    /// An environment variable (`RUST_LOG` is `info` unless set here).
    #[must_use]
    pub fn env(mut self, key: impl AsRef<OsStr>, value: impl AsRef<OsStr>) -> Self {
        self.environment
            .push((key.as_ref().to_owned(), value.as_ref().to_owned()));
        self
    }

    /// Do not pass `--listen`: the caller's arguments or config decide where juris listens,
    /// and [`Juris::address`] is then only a guess the caller should not use.
    #[must_use]
    pub fn without_listen(mut self) -> Self {
        self.listen = false;
        self
    }

    /// Starts juris and waits until it answers a query (any RCODE).
    ///
    /// # Panics
    /// When it cannot start or does not answer in time; the panic carries its stderr.
    #[must_use]
    pub fn start(self) -> Juris {
        let block = AddressBlock::allocate();
        let ip = block.address(1);
        let address = free_port(ip);
        let directory = tempfile::Builder::new()
            .prefix("juris-run-")
            .tempdir()
            .unwrap_or_else(|error| panic!("cannot create a temporary directory: {error}"));
        let stderr_path = directory.path().join("stderr");
        let stderr = fs::File::create(&stderr_path)
            .unwrap_or_else(|error| panic!("cannot create {}: {error}", stderr_path.display()));

        let data_directory = directory.path().join("data");
        fs::create_dir_all(&data_directory)
            .unwrap_or_else(|error| panic!("cannot create {}: {error}", data_directory.display()));
        let mut command = Command::new(&self.binary);
        command.arg("serve");
        if self.listen {
            command.arg("--listen").arg(address.to_string());
        }
        if !self
            .arguments
            .iter()
            .any(|argument| argument == "--data-dir")
        {
            command.arg("--data-dir").arg(&data_directory);
        }
        // The test hierarchies are unsigned unless a test gives their trust anchor: the
        // built-in IANA root anchor cannot validate them, so validation is off unless the
        // test decides (a flag, or a `[dnssec]` table in its config file).
        let decided = |flag: &str| self.arguments.iter().any(|argument| argument == flag);
        let config_decides = self
            .arguments
            .windows(2)
            .filter(|pair| pair[0] == "--config")
            .any(|pair| fs::read_to_string(&pair[1]).is_ok_and(|text| text.contains("[dnssec]")));
        if !decided("--trust-anchor") && !decided("--no-dnssec") && !config_decides {
            command.arg("--no-dnssec");
        }
        command
            .args(&self.arguments)
            .env("RUST_LOG", "info")
            .env("NO_COLOR", "1")
            .envs(self.environment.iter().map(|(k, v)| (k, v)))
            .stdin(Stdio::null())
            .stdout(Stdio::from(stderr.try_clone().unwrap_or_else(|error| {
                panic!("cannot duplicate a file: {error}")
            })))
            .stderr(Stdio::from(stderr));
        let command_line = format!("{command:?}");
        let child = process::spawn(command)
            .unwrap_or_else(|error| panic!("cannot start {}: {error}", self.binary.display()));
        let juris = Juris {
            address,
            child: Mutex::new(Some(child)),
            stderr_path,
            command_line,
            _directory: directory,
            _block: block,
        };
        if self.listen {
            juris.wait_until_answering();
        }
        juris
    }
}

/// A running juris; SIGTERM on drop, and its stderr printed if the test is panicking.
#[derive(Debug)]
pub struct Juris {
    address: SocketAddr,
    child: Mutex<Option<Child>>,
    stderr_path: PathBuf,
    command_line: String,
    _directory: tempfile::TempDir,
    _block: AddressBlock,
}

impl Juris {
    /// Describes a juris run; `binary` is `env!("CARGO_BIN_EXE_juris")` in the test.
    #[must_use]
    pub fn builder(binary: impl AsRef<Path>) -> JurisBuilder {
        JurisBuilder {
            binary: binary.as_ref().to_owned(),
            arguments: Vec::new(),
            environment: Vec::new(),
            listen: true,
        }
    }

    /// Where it listens (UDP and TCP).
    #[must_use]
    pub fn address(&self) -> SocketAddr {
        self.address
    }

    /// Everything it wrote to stdout and stderr so far.
    #[must_use]
    pub fn stderr(&self) -> String {
        fs::read_to_string(&self.stderr_path).unwrap_or_default()
    }

    /// Waits until its output holds `text` (polling every 20 ms).
    ///
    /// # Panics
    /// After `patience` without it (a failure bound only), with its output.
    pub fn wait_for_log(&self, text: &str, patience: std::time::Duration) {
        let step = std::time::Duration::from_millis(20);
        let mut waited = std::time::Duration::ZERO;
        while !self.stderr().contains(text) {
            assert!(
                waited < patience,
                "juris never logged {text:?}:\n{}",
                self.stderr()
            );
            std::thread::sleep(step);
            waited += step;
        }
    }

    /// Whether the process is still running.
    #[must_use]
    pub fn is_running(&self) -> bool {
        let mut child = self.child.lock().unwrap_or_else(PoisonError::into_inner);
        child
            .as_mut()
            .is_some_and(|child| matches!(child.try_wait(), Ok(None)))
    }

    /// The process id, while it runs.
    #[must_use]
    pub fn pid(&self) -> Option<u32> {
        let mut child = self.child.lock().unwrap_or_else(PoisonError::into_inner);
        let child = child.as_mut()?;
        matches!(child.try_wait(), Ok(None)).then(|| child.id())
    }

    /// Sends `signal` (e.g. `libc::SIGHUP`) to the process (group); nothing if it stopped.
    pub fn signal(&self, signal: libc::c_int) {
        let mut child = self.child.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some(child) = child.as_mut() {
            if matches!(child.try_wait(), Ok(None)) {
                process::signal_group(child, signal);
            }
        }
    }

    /// Sends SIGTERM and waits for the exit (SIGKILL after 10 s); `None` if already stopped.
    pub fn stop(&self) -> Option<ExitStatus> {
        let child = self
            .child
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .take()?;
        process::terminate(child, STOP_TIMEOUT, "juris")
    }

    fn wait_until_answering(&self) {
        wait_until_answering(self.address, START_TIMEOUT, || {
            (!self.is_running())
                .then(|| format!("juris exited during startup: {}", self.command_line))
        })
        .unwrap_or_else(|why| panic!("{why}\n--- juris output ---\n{}", self.stderr()));
    }
}

/// Polls `address` with a UDP query until anything answers; `Err` with the reason when
/// `exited` reports the server gone (its message) or `timeout` passes.
pub(crate) fn wait_until_answering(
    address: SocketAddr,
    timeout: Duration,
    exited: impl Fn() -> Option<String>,
) -> Result<(), String> {
    let deadline = Instant::now() + timeout;
    let probe = raw::query("juris-testkit-probe.invalid.", RecordType::A, 0x7e57, false);
    loop {
        if let Some(why) = exited() {
            return Err(why);
        }
        if Instant::now() >= deadline {
            return Err(format!(
                "{address} did not answer a query within {timeout:?}"
            ));
        }
        if raw::udp_exchange(address, &probe, Duration::from_millis(200)).is_some() {
            return Ok(());
        }
    }
}

impl Drop for Juris {
    fn drop(&mut self) {
        let status = self.stop();
        if thread::panicking() {
            eprintln!(
                "--- juris output ({}; exit {status:?}) ---\n{}--- end of juris output ---",
                self.command_line,
                self.stderr()
            );
        }
    }
}

/// A port free for both UDP and TCP on `ip` (juris listens on both).
pub fn free_port(ip: std::net::Ipv4Addr) -> SocketAddr {
    for _ in 0..100 {
        let Ok(udp) = UdpSocket::bind((ip, 0)) else {
            continue;
        };
        let Ok(address) = udp.local_addr() else {
            continue;
        };
        if TcpListener::bind(address).is_ok() {
            return address;
        }
    }
    panic!("no free port on {ip}");
}

/// One HTTP/1.1 GET without a token (`/readyz`, `/healthz`): the status code and the body
/// (30 s read timeout).
pub fn http_get(address: SocketAddr, path: &str) -> (u16, String) {
    use std::io::{Read, Write};
    let mut stream = std::net::TcpStream::connect(address).unwrap();
    stream
        .set_read_timeout(Some(Duration::from_secs(30)))
        .unwrap();
    write!(
        stream,
        "GET {path} HTTP/1.1\r\nHost: juris\r\nConnection: close\r\n\r\n"
    )
    .unwrap();
    let mut response = String::new();
    stream.read_to_string(&mut response).unwrap();
    let code = response
        .split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or(0);
    let body = response
        .split_once("\r\n\r\n")
        .map_or("", |(_, body)| body)
        .to_owned();
    (code, body)
}

/// `juris token create --role ROLE --name NAME --data-dir DATA` offline (before the server
/// runs), with `binary`: the token.
///
/// # Panics
/// When the command fails.
#[must_use]
pub fn create_token(binary: &Path, data_dir: &Path, role: &str, name: &str) -> String {
    let output = Command::new(binary)
        .args([
            "token",
            "create",
            "--role",
            role,
            "--name",
            name,
            "--data-dir",
        ])
        .arg(data_dir)
        .env_remove("JURIS_TOKEN")
        .env_remove("JURIS_API")
        .output()
        .unwrap_or_else(|error| panic!("cannot run {}: {error}", binary.display()));
    assert!(
        output.status.success(),
        "juris token create: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8_lossy(&output.stdout).trim().to_owned()
}
