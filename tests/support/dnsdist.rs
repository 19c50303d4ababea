//! PowerDNS's `dnsdist` as a real load balancer in front of juris, forwarding with the PROXY
//! protocol v2 (`useProxyProtocol=true`) over UDP and TCP from a source address the test
//! chooses (the one juris is told to trust).
//!
//! ```no_run
//! use juris_testkit::dnsdist::Dnsdist;
//! # let (listen, source) = ("127.0.0.1".parse().unwrap(), "127.0.0.2".parse().unwrap());
//! # let juris: std::net::SocketAddr = "127.0.0.3:53".parse().unwrap();
//! let balancer = Dnsdist::start(listen, source, juris);
//! let front = balancer.address(); // ask here with dig
//! ```

use std::fs;
use std::net::{Ipv4Addr, SocketAddr};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::{Mutex, PoisonError};
use std::time::{Duration, Instant};

use hickory_proto::rr::RecordType;

use crate::juris::free_port;
use crate::{process, raw, tools};

const START_TIMEOUT: Duration = Duration::from_secs(20);
const STOP_TIMEOUT: Duration = Duration::from_secs(5);

/// A running `dnsdist --supervised` with one backend; stopped on drop.
#[derive(Debug)]
pub struct Dnsdist {
    address: SocketAddr,
    child: Mutex<Option<Child>>,
    log: PathBuf,
    _directory: tempfile::TempDir,
}

impl Dnsdist {
    /// Starts dnsdist on a free port of `listen`, forwarding everything to `backend` from
    /// `source` with a PROXY v2 header, and waits until it relays a query (the backend must be
    /// up and answer queries from `source` carrying a header).
    ///
    /// # Panics
    /// When dnsdist is not installed (`apt-get install dnsdist`), or does not start or relay.
    #[must_use]
    pub fn start(listen: Ipv4Addr, source: Ipv4Addr, backend: SocketAddr) -> Self {
        let binary = tools::require("dnsdist");
        let address = free_port(listen);
        let directory = tempfile::Builder::new()
            .prefix("juris-dnsdist-")
            .tempdir()
            .unwrap_or_else(|error| panic!("cannot create a temporary directory: {error}"));
        let config = directory.path().join("dnsdist.conf");
        // No security polling (it would query the Internet); the backend forced up (its
        // health checks are not what is tested); every loopback client allowed.
        let text = format!(
            r#"-- Written by juris-testkit: a PROXY protocol v2 sender in front of juris.
setSecurityPollSuffix("")
setLocal("{address}")
setACL({{"127.0.0.0/8"}})
newServer{{address="{backend}", source="{source}", useProxyProtocol=true, name="juris"}}
getServer(0):setUp()
"#
        );
        fs::write(&config, text)
            .unwrap_or_else(|error| panic!("cannot write {}: {error}", config.display()));
        let log = directory.path().join("dnsdist.log");
        let output = fs::File::create(&log)
            .unwrap_or_else(|error| panic!("cannot create {}: {error}", log.display()));
        let mut command = Command::new(binary);
        command
            .args(["--supervised", "--disable-syslog", "-C"])
            .arg(&config)
            .stdin(Stdio::null())
            .stdout(Stdio::from(output.try_clone().unwrap_or_else(|error| {
                panic!("cannot duplicate a file: {error}")
            })))
            .stderr(Stdio::from(output));
        let child =
            process::spawn(command).unwrap_or_else(|error| panic!("cannot start dnsdist: {error}"));
        let dnsdist = Self {
            address,
            child: Mutex::new(Some(child)),
            log,
            _directory: directory,
        };
        let probe = raw::query("juris-testkit-probe.invalid.", RecordType::A, 0x7e58, false);
        let deadline = Instant::now() + START_TIMEOUT;
        while raw::udp_exchange(address, &probe, Duration::from_millis(300)).is_none() {
            assert!(
                Instant::now() < deadline,
                "dnsdist does not relay to {backend}:\n{}",
                dnsdist.log()
            );
        }
        dnsdist
    }

    /// Where clients ask (UDP and TCP).
    #[must_use]
    pub fn address(&self) -> SocketAddr {
        self.address
    }

    /// What dnsdist wrote so far.
    #[must_use]
    pub fn log(&self) -> String {
        fs::read_to_string(&self.log).unwrap_or_default()
    }
}

impl Drop for Dnsdist {
    fn drop(&mut self) {
        let child = self
            .child
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .take();
        if let Some(child) = child {
            process::terminate(child, STOP_TIMEOUT, "dnsdist");
        }
        if std::thread::panicking() {
            eprintln!("--- dnsdist output ---\n{}", self.log());
        }
    }
}
