//! A DNS hierarchy served by real NSD processes on loopback.
//!
//! ```text
//!            root "."  ns1.root-servers. 127.A.B.1          (hints file points here)
//!           /                  \
//!   "test." 127.A.B.2      "example." 127.A.B.3             NS + glue in the root zone
//!      |                        |
//! "alpha.test." 127.A.B.4  "beta.example." NS ns.provider.test.  (glueless: the
//!                                                            address lives in test.)
//! ```
//!
//! Every name server of every zone gets its own address in the hierarchy's
//! [`AddressBlock`] and its own `nsd -d` process on port 53. Parents get NS records for
//! each child and glue for in-bailiwick name servers; a glueless name server's address
//! record goes into the zone that contains its name instead. Each server records what it
//! receives through dnstap ([`crate::dnstap`]).
//!
//! ```no_run
//! use juris_testkit::hierarchy::{Hierarchy, Zone};
//! let hierarchy = Hierarchy::builder()
//!     .zone(Zone::new("test."))
//!     .zone(Zone::new("alpha.test.").records("www A 192.0.2.1\nwww AAAA 2001:db8::1"))
//!     .zone(Zone::new("example."))
//!     .zone(Zone::new("beta.example.").glueless_name_server("ns.provider.test."))
//!     .start();
//! let hints = hierarchy.root_hints(); // pass to `juris serve --root-hints`
//! hierarchy.stop_zone("alpha.test.");  // kill its servers, e.g. to test the cache
//! ```

use std::fmt::Write as _;
use std::fs;
use std::net::{Ipv4Addr, SocketAddr, TcpListener, UdpSocket};
use std::path::{Path, PathBuf};
use std::process::{Child, Stdio};
use std::sync::{Mutex, PoisonError};
use std::thread;
use std::time::{Duration, Instant};

use hickory_proto::op::{Message, MessageType, OpCode, Query};
use hickory_proto::rr::{Name, RecordType};

use crate::addresses::AddressBlock;
use crate::dnssec::{self, Signing};
use crate::dnstap::{self, QueryLog, ReceivedQuery};
use crate::{process, tools};

/// How long a server may take to start answering.
const START_TIMEOUT: Duration = Duration::from_secs(15);
/// How long NSD may take to exit on SIGTERM before it is killed.
const STOP_TIMEOUT: Duration = Duration::from_secs(5);
/// Host number the harness sends its readiness probes from (never a server).
const PROBE_HOST: u8 = 253;
/// Name of the root's name server.
const ROOT_NAME_SERVER: &str = "ns1.root-servers.";

/// One zone of the hierarchy.
#[derive(Debug, Clone)]
pub struct Zone {
    name: String,
    records: String,
    ttl: u32,
    negative_ttl: u32,
    name_servers: Vec<NameServer>,
    signing: Option<Signing>,
}

/// One name server of a zone.
#[derive(Debug, Clone, PartialEq, Eq)]
enum NameServer {
    /// NSD serves the zone on this name's address; glue goes in the parent when the
    /// name is inside the zone (in bailiwick).
    Served { name: String },
    /// NSD serves the zone; the name's address record lives in another zone (no glue).
    Glueless { name: String },
    /// Listed in NS + glue, but its address answers nothing: `silent` binds the port and
    /// never replies (timeouts), otherwise nothing listens (ICMP port unreachable).
    Unreachable { name: String, silent: bool },
    /// NSD serves a tampered copy of the signed zone: the signatures of the RRsets owned
    /// by `corrupt` (names relative to the zone) are wrong.
    Tampered { name: String, corrupt: Vec<String> },
}

impl NameServer {
    fn name(&self) -> &str {
        match self {
            Self::Served { name }
            | Self::Glueless { name }
            | Self::Unreachable { name, .. }
            | Self::Tampered { name, .. } => name,
        }
    }
}

impl Zone {
    /// A zone named `name` (absolute, e.g. `"alpha.test."`; `"."` for the root, which
    /// every hierarchy has anyway) with one name server, `ns1.<name>`, and no records.
    #[must_use]
    pub fn new(name: &str) -> Self {
        let name = absolute(name);
        let first = if name == "." {
            ROOT_NAME_SERVER.to_owned()
        } else {
            format!("ns1.{name}")
        };
        Self {
            name,
            records: String::new(),
            ttl: 300,
            negative_ttl: 300,
            name_servers: vec![NameServer::Served { name: first }],
            signing: None,
        }
    }

    /// Signs the zone with `ldns-signzone` as `signing` says (see [`crate::dnssec`]); its
    /// parent gets the DS records. A signed root makes [`Hierarchy::trust_anchor`].
    #[must_use]
    pub fn signed(mut self, signing: Signing) -> Self {
        self.signing = Some(signing);
        self
    }

    /// Zone-file text for the zone's own data, with `$ORIGIN` set to the zone and `$TTL`
    /// to [`Zone::ttl`]: `www A 192.0.2.1`, `alias CNAME www.beta.example.`, … Appended
    /// to earlier calls. SOA, NS, glue and delegations are written by the harness.
    #[must_use]
    pub fn records(mut self, text: &str) -> Self {
        self.records.push_str(text);
        self.records.push('\n');
        self
    }

    /// Default TTL of the zone's records (300 s unless set).
    #[must_use]
    pub fn ttl(mut self, seconds: u32) -> Self {
        self.ttl = seconds;
        self
    }

    /// The SOA minimum, i.e. the negative-caching TTL (300 s unless set).
    #[must_use]
    pub fn negative_ttl(mut self, seconds: u32) -> Self {
        self.negative_ttl = seconds;
        self
    }

    /// Serves the zone from `count` in-bailiwick name servers `ns1.<zone>` … each with its
    /// own address and NSD process (replaces the name server list).
    #[must_use]
    pub fn name_servers(mut self, count: usize) -> Self {
        self.name_servers
            .retain(|server| !matches!(server, NameServer::Served { .. }));
        for index in (1..=count).rev() {
            let name = if self.name == "." {
                format!("ns{index}.root-servers.")
            } else {
                format!("ns{index}.{}", self.name)
            };
            self.name_servers.insert(0, NameServer::Served { name });
        }
        self
    }

    /// Serves the zone from `name_server` only, a name in *another* zone of the hierarchy:
    /// the parent gets no glue, a resolver must look the address up first. The address
    /// record goes into the deepest zone of the hierarchy containing `name_server`; if
    /// that is the parent itself, NSD would hand it out as additional data, so pick a
    /// name in a sibling or unrelated zone.
    #[must_use]
    pub fn glueless_name_server(mut self, name_server: &str) -> Self {
        self.name_servers
            .retain(|server| !matches!(server, NameServer::Served { .. }));
        self.name_servers.insert(
            0,
            NameServer::Glueless {
                name: absolute(name_server),
            },
        );
        self
    }

    /// Adds an in-bailiwick name server (with glue) whose address has a socket bound that
    /// never answers: queries to it time out.
    #[must_use]
    pub fn silent_name_server(self) -> Self {
        self.unreachable(true)
    }

    /// Adds an in-bailiwick name server (with glue) where nothing listens: queries to it
    /// get an ICMP port unreachable.
    #[must_use]
    pub fn refusing_name_server(self) -> Self {
        self.unreachable(false)
    }

    /// Adds an in-bailiwick name server (with glue) `bad<N>.<zone>` serving a copy of the
    /// signed zone whose signatures of the RRsets owned by `corrupt` (names relative to the
    /// zone, e.g. `"www"`, `"*.wild"`) are wrong: bogus data from one server of several.
    #[must_use]
    pub fn tampered_name_server(mut self, corrupt: &[&str]) -> Self {
        let index = self.name_servers.len() + 1;
        let name = format!("bad{index}.{}", self.name);
        let corrupt = corrupt.iter().map(|name| (*name).to_owned()).collect();
        self.name_servers
            .push(NameServer::Tampered { name, corrupt });
        self
    }

    fn unreachable(mut self, silent: bool) -> Self {
        let index = self.name_servers.len() + 1;
        let name = if self.name == "." {
            format!("down{index}.root-servers.")
        } else {
            format!("down{index}.{}", self.name)
        };
        self.name_servers
            .push(NameServer::Unreachable { name, silent });
        self
    }
}

/// Builds a [`Hierarchy`]; see the module docs.
#[derive(Debug, Default)]
pub struct HierarchyBuilder {
    zones: Vec<Zone>,
}

impl HierarchyBuilder {
    /// Adds a zone (a second `.` replaces the default root).
    #[must_use]
    pub fn zone(mut self, zone: Zone) -> Self {
        self.zones.retain(|existing| existing.name != zone.name);
        self.zones.push(zone);
        self
    }

    /// Writes the configuration, starts every NSD and waits until each answers its SOA.
    ///
    /// # Panics
    /// When NSD is not installed, a zone is inconsistent (glueless name server outside the
    /// hierarchy) or a server does not start; the panic carries NSD's log.
    #[must_use]
    pub fn start(self) -> Hierarchy {
        let nsd = tools::require("nsd");
        let mut zones = self.zones;
        if !zones.iter().any(|zone| zone.name == ".") {
            zones.insert(0, Zone::new("."));
        }
        // Parents before children, so that the root is always index 0.
        zones.sort_by_key(|zone| label_count(&zone.name));

        let block = AddressBlock::allocate();
        let directory = tempfile::Builder::new()
            .prefix("juris-nsd-")
            .tempdir()
            .unwrap_or_else(|error| panic!("cannot create a temporary directory: {error}"));

        // Addresses: one per name server, in zone order.
        let mut next_host = 1u8;
        let mut addresses: Vec<Vec<Ipv4Addr>> = Vec::new();
        for zone in &zones {
            let mut list = Vec::new();
            for _ in &zone.name_servers {
                assert!(
                    next_host < PROBE_HOST,
                    "too many name servers for one hierarchy"
                );
                list.push(block.address(next_host));
                next_host += 1;
            }
            addresses.push(list);
        }

        let texts = zone_texts(&zones, &addresses);
        let signed_directory = directory.path().join("signing");
        let (texts, trust_anchors) = sign_zones(&zones, texts, &signed_directory);
        let mut servers = Vec::new();
        let mut silent = Vec::new();
        for (index, zone) in zones.iter().enumerate() {
            for (name_server, &address) in zone.name_servers.iter().zip(&addresses[index]) {
                match name_server {
                    NameServer::Unreachable { silent: true, .. } => {
                        silent.push(SilentServer::bind(address));
                    }
                    NameServer::Unreachable { silent: false, .. } => {}
                    NameServer::Served { .. }
                    | NameServer::Glueless { .. }
                    | NameServer::Tampered { .. } => {
                        let text = match name_server {
                            NameServer::Tampered { corrupt, .. } => {
                                dnssec::tamper(&texts[index], &zone.name, corrupt)
                            }
                            _ => texts[index].clone(),
                        };
                        let server_directory = directory.path().join(format!(
                            "{}-{}",
                            servers.len(),
                            file_stem(&zone.name)
                        ));
                        servers.push(NsdServer::launch(
                            &nsd,
                            &server_directory,
                            &zone.name,
                            &text,
                            address,
                        ));
                    }
                }
            }
        }

        let probe_from = block.address(PROBE_HOST);
        for server in &servers {
            server.wait_until_answering(probe_from);
        }

        let root = &addresses[0];
        let mut hints = String::new();
        for (name_server, address) in zones[0].name_servers.iter().zip(root) {
            let _ = writeln!(hints, ".\t3600000\tIN\tNS\t{}", name_server.name());
            let _ = writeln!(hints, "{}\t3600000\tIN\tA\t{address}", name_server.name());
        }
        let root_hints = directory.path().join("root.hints");
        fs::write(&root_hints, hints)
            .unwrap_or_else(|error| panic!("cannot write the root hints: {error}"));

        Hierarchy {
            servers,
            _silent: silent,
            root_hints,
            probe_from,
            zone_addresses: zones
                .iter()
                .map(|zone| zone.name.clone())
                .zip(addresses)
                .collect(),
            trust_anchors,
            _block: block,
            directory,
        }
    }
}

/// Signs the zones that ask for it, children first, each parent with its children's DS
/// records; unsigned zones get their delegations as they are. Returns every zone's text
/// and, when the root is signed, its trust anchor files (DS, DNSKEY).
fn sign_zones(
    zones: &[Zone],
    mut texts: Vec<ZoneText>,
    directory: &Path,
) -> (Vec<String>, Option<(PathBuf, PathBuf)>) {
    let mut order: Vec<usize> = (0..zones.len()).collect();
    order.sort_by_key(|&index| std::cmp::Reverse(label_count(&zones[index].name)));
    let mut done: Vec<Option<String>> = vec![None; zones.len()];
    let mut anchors = None;
    for index in order {
        let zone = &zones[index];
        let text = &texts[index];
        let Some(signing) = &zone.signing else {
            done[index] = Some(text.all());
            continue;
        };
        // Opt-out: delegations to children without DS stay out of the NSEC3 chain.
        let (signed_part, unsigned_part) = text.split_delegations(|child| {
            signing.is_opt_out()
                && zones
                    .iter()
                    .find(|candidate| candidate.name == child)
                    .is_none_or(|candidate| {
                        candidate.signing.as_ref().is_none_or(|child_signing| {
                            child_signing.parent_ds() == dnssec::ParentDs::None
                        })
                    })
        });
        let zone_directory = directory.join(file_stem(&zone.name));
        fs::create_dir_all(&zone_directory)
            .unwrap_or_else(|error| panic!("cannot create {}: {error}", zone_directory.display()));
        let signed = dnssec::sign(&zone.name, &signed_part, signing, &zone_directory);
        done[index] = Some(format!("{}{unsigned_part}", signed.text));
        if index == 0 {
            anchors = Some(dnssec::write_trust_anchors(directory, &signed));
        } else if !signed.ds.is_empty() {
            let parent = deepest_zone(&zones[..index], &zone.name)
                .unwrap_or_else(|| panic!("no parent zone for {}", zone.name));
            let ds: String = signed.ds.iter().map(|line| format!("{line}\n")).collect();
            texts[parent].own.push_str(&ds);
        }
    }
    let texts = done.into_iter().map(Option::unwrap_or_default).collect();
    (texts, anchors)
}

/// A running hierarchy; every NSD is stopped on drop.
#[derive(Debug)]
pub struct Hierarchy {
    servers: Vec<NsdServer>,
    _silent: Vec<SilentServer>,
    root_hints: PathBuf,
    probe_from: Ipv4Addr,
    zone_addresses: Vec<(String, Vec<Ipv4Addr>)>,
    trust_anchors: Option<(PathBuf, PathBuf)>,
    _block: AddressBlock,
    directory: tempfile::TempDir,
}

impl Hierarchy {
    /// The Milan order's world, started: `kickasstorrents.to.` (apex and `www` at
    /// 192.0.2.10) and `mirror.test.` (`www` 192.0.2.50, `other` 192.0.2.51).
    #[must_use]
    pub fn milan() -> Hierarchy {
        Hierarchy::builder()
            .zone(Zone::new("to."))
            .zone(Zone::new("kickasstorrents.to.").records("@ A 192.0.2.10\nwww A 192.0.2.10"))
            .zone(Zone::new("test."))
            .zone(Zone::new("mirror.test.").records("www A 192.0.2.50\nother A 192.0.2.51"))
            .start()
    }

    /// Starts describing a hierarchy.
    #[must_use]
    pub fn builder() -> HierarchyBuilder {
        HierarchyBuilder::default()
    }

    /// A root hints file (zone-file syntax: `. NS ns1.root-servers.` + its A record).
    #[must_use]
    pub fn root_hints(&self) -> &Path {
        &self.root_hints
    }

    /// A file with the signed root's DS record (`. IN DS tag 13 2 …`), the trust anchor
    /// to pass to a validating resolver.
    ///
    /// # Panics
    /// When the root zone is not signed.
    #[must_use]
    pub fn trust_anchor(&self) -> &Path {
        &self.anchors().0
    }

    /// The same trust anchor as the root's key-signing DNSKEY record.
    ///
    /// # Panics
    /// When the root zone is not signed.
    #[must_use]
    pub fn trust_anchor_dnskey(&self) -> &Path {
        &self.anchors().1
    }

    fn anchors(&self) -> &(PathBuf, PathBuf) {
        self.trust_anchors
            .as_ref()
            .unwrap_or_else(|| panic!("the root zone of this hierarchy is not signed"))
    }

    /// The temporary directory holding every server's configuration and log.
    #[must_use]
    pub fn directory(&self) -> &Path {
        self.directory.path()
    }

    /// The NSD servers of `zone` (absolute name), in name server order.
    ///
    /// # Panics
    /// When the zone is not in the hierarchy.
    #[must_use]
    pub fn servers(&self, zone: &str) -> Vec<&NsdServer> {
        let zone = absolute(zone);
        let found: Vec<_> = self
            .servers
            .iter()
            .filter(|server| server.zone == zone)
            .collect();
        assert!(!found.is_empty(), "no NSD server for zone {zone}");
        found
    }

    /// The first NSD server of `zone`.
    #[must_use]
    pub fn server(&self, zone: &str) -> &NsdServer {
        self.servers(zone)[0]
    }

    /// Every address listed for `zone`'s name servers, unreachable ones included.
    #[must_use]
    pub fn addresses(&self, zone: &str) -> Vec<Ipv4Addr> {
        let zone = absolute(zone);
        self.zone_addresses
            .iter()
            .find(|(name, _)| *name == zone)
            .map(|(_, addresses)| addresses.clone())
            .unwrap_or_default()
    }

    /// Stops every server of `zone` and waits until its port is free.
    pub fn stop_zone(&self, zone: &str) {
        for server in self.servers(zone) {
            server.stop();
        }
    }

    /// Queries the servers of `zone` received from anything but the harness's own probes.
    #[must_use]
    pub fn received(&self, zone: &str) -> Vec<ReceivedQuery> {
        self.servers(zone)
            .iter()
            .flat_map(|server| server.received())
            .filter(|query| !self.is_probe(query))
            .collect()
    }

    /// Waits until one of `zone`'s servers received a query (not a harness probe)
    /// satisfying `predicate`.
    pub fn wait_for_query(
        &self,
        zone: &str,
        timeout: Duration,
        mut predicate: impl FnMut(&ReceivedQuery) -> bool,
    ) -> Option<ReceivedQuery> {
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(found) = self
                .received(zone)
                .into_iter()
                .find(|query| predicate(query))
            {
                return Some(found);
            }
            if Instant::now() >= deadline {
                return None;
            }
            thread::sleep(Duration::from_millis(20));
        }
    }

    /// Waits until every running server's dnstap stream has delivered everything it
    /// received so far (NSD flushes its stream about once a second). Call it before
    /// asserting that a server did *not* receive something.
    ///
    /// # Panics
    /// When a stream does not catch up within 10 s.
    pub fn flush_query_logs(&self) {
        thread::scope(|scope| {
            for server in self.servers.iter().filter(|server| server.is_running()) {
                scope.spawn(|| server.flush_query_log(self.probe_from));
            }
        });
    }

    /// Every server's NSD log, for failure messages.
    #[must_use]
    pub fn logs(&self) -> String {
        self.servers
            .iter()
            .map(|server| {
                format!(
                    "--- {} ({}) ---\n{}",
                    server.zone,
                    server.address,
                    server.log()
                )
            })
            .collect()
    }

    /// Replaces `from` with `to` in the zone file of every server of `zone`, has NSD read it
    /// again (SIGHUP), and waits until each server answers `name` A with `address`. For
    /// unsigned zones (a signed zone's signatures would not cover the change).
    pub fn edit_zone(&self, zone: &str, from: &str, to: &str, name: &str, address: Ipv4Addr) {
        let zone = absolute(zone);
        let servers = self.servers(&zone);
        assert!(!servers.is_empty(), "no server for {zone}");
        for server in servers {
            server.edit_zone_file(from, to);
            server.reload_until(self.probe_from, name, address);
        }
    }

    fn is_probe(&self, query: &ReceivedQuery) -> bool {
        query
            .client
            .is_some_and(|client| client.ip() == std::net::IpAddr::V4(self.probe_from))
    }
}

/// One `nsd -d` process serving one zone on one address, port 53.
#[derive(Debug)]
pub struct NsdServer {
    zone: String,
    address: Ipv4Addr,
    directory: PathBuf,
    child: Mutex<Option<Child>>,
    log: QueryLog,
}

impl NsdServer {
    /// The zone it serves.
    #[must_use]
    pub fn zone(&self) -> &str {
        &self.zone
    }

    /// Its address (port 53, UDP and TCP).
    #[must_use]
    pub fn address(&self) -> Ipv4Addr {
        self.address
    }

    /// Everything it received, harness probes included (see [`Hierarchy::received`]).
    #[must_use]
    pub fn received(&self) -> Vec<ReceivedQuery> {
        self.log.all()
    }

    /// Its query log, to wait on.
    #[must_use]
    pub fn query_log(&self) -> &QueryLog {
        &self.log
    }

    /// NSD's own log file.
    #[must_use]
    pub fn log(&self) -> String {
        fs::read_to_string(self.directory.join("nsd.log")).unwrap_or_default()
    }

    /// Whether the process is still running.
    #[must_use]
    pub fn is_running(&self) -> bool {
        let mut child = self.child.lock().unwrap_or_else(PoisonError::into_inner);
        child
            .as_mut()
            .is_some_and(|child| matches!(child.try_wait(), Ok(None)))
    }

    /// SIGTERM (then SIGKILL), and waits until port 53 on its address is free again.
    /// Stopping twice is harmless.
    pub fn stop(&self) {
        let Some(mut child) = self
            .child
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .take()
        else {
            return;
        };
        process::signal_group(&child, libc::SIGTERM);
        let deadline = Instant::now() + STOP_TIMEOUT;
        while matches!(child.try_wait(), Ok(None)) && Instant::now() < deadline {
            thread::sleep(Duration::from_millis(10));
        }
        // Whatever is left of the group (xfrd, server, dnstap processes) goes too.
        process::signal_group(&child, libc::SIGKILL);
        let _ = child.wait();
        let deadline = Instant::now() + STOP_TIMEOUT;
        while UdpSocket::bind((self.address, 53)).is_err() && Instant::now() < deadline {
            thread::sleep(Duration::from_millis(10));
        }
    }

    fn launch(
        nsd: &Path,
        directory: &Path,
        zone: &str,
        zone_text: &str,
        address: Ipv4Addr,
    ) -> Self {
        fs::create_dir_all(directory)
            .unwrap_or_else(|error| panic!("cannot create {}: {error}", directory.display()));
        let zone_file = directory.join("zone");
        fs::write(&zone_file, zone_text)
            .unwrap_or_else(|error| panic!("cannot write {}: {error}", zone_file.display()));
        let socket = directory.join("dnstap.sock");
        let log = dnstap::listen(&socket)
            .unwrap_or_else(|error| panic!("cannot listen on {}: {error}", socket.display()));
        let config = directory.join("nsd.conf");
        fs::write(&config, nsd_config(directory, zone, address))
            .unwrap_or_else(|error| panic!("cannot write {}: {error}", config.display()));

        let child = process::spawn_foreground(nsd, &config, stderr_file(directory))
            .unwrap_or_else(|error| panic!("cannot start {}: {error}", nsd.display()));
        Self {
            zone: zone.to_owned(),
            address,
            directory: directory.to_owned(),
            child: Mutex::new(Some(child)),
            log,
        }
    }

    /// Sends a marker query from the probe address and waits until the dnstap stream shows
    /// it: the stream is ordered, so everything received before is in the log then.
    fn flush_query_log(&self, probe_from: Ipv4Addr) {
        static MARKERS: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
        let number = MARKERS.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let marker = format!(
            "testkit-flush-{number}.{}",
            self.zone.trim_start_matches('.')
        );
        let marker = absolute(&marker);
        let query = soa_query(&marker);
        let socket = UdpSocket::bind((probe_from, 0))
            .unwrap_or_else(|error| panic!("cannot bind a probe socket: {error}"));
        let deadline = Instant::now() + Duration::from_secs(10);
        while Instant::now() < deadline {
            let _ = socket.send_to(&query, (self.address, 53));
            if self
                .log
                .wait_for(Duration::from_millis(500), |q| q.name == marker)
                .is_some()
            {
                return;
            }
        }
        panic!(
            "the dnstap stream of {} on {} did not catch up",
            self.zone, self.address
        );
    }

    fn edit_zone_file(&self, from: &str, to: &str) {
        let path = self.directory.join("zone");
        let text = fs::read_to_string(&path)
            .unwrap_or_else(|error| panic!("cannot read {}: {error}", path.display()));
        assert!(
            text.contains(from),
            "{from:?} is not in the zone {}",
            self.zone
        );
        let modified = fs::metadata(&path).and_then(|m| m.modified()).ok();
        fs::write(&path, text.replace(from, to))
            .unwrap_or_else(|error| panic!("cannot write {}: {error}", path.display()));
        // NSD reloads a zone file whose mtime changed: make sure it did, even within the
        // file system's time granularity.
        if let Some(modified) = modified {
            let later = modified + Duration::from_secs(5);
            if let Ok(file) = fs::File::options().write(true).open(&path) {
                let _ = file.set_modified(later);
            }
        }
    }

    /// SIGHUP (NSD reads changed zone files) until the server answers `name` A with `address`.
    fn reload_until(&self, probe_from: Ipv4Addr, name: &str, address: Ipv4Addr) {
        let socket = UdpSocket::bind((probe_from, 0))
            .unwrap_or_else(|error| panic!("cannot bind a probe socket: {error}"));
        let _ = socket.set_read_timeout(Some(Duration::from_millis(100)));
        let mut message = Message::new();
        message
            .set_id(0x5e12)
            .set_message_type(MessageType::Query)
            .set_op_code(OpCode::Query);
        if let Ok(name) = Name::from_ascii(absolute(name)) {
            message.add_query(Query::query(name, RecordType::A));
        }
        let query = message.to_vec().unwrap_or_default();
        let deadline = Instant::now() + START_TIMEOUT;
        while Instant::now() < deadline {
            if let Some(child) = self
                .child
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .as_ref()
            {
                process::signal(child, libc::SIGHUP);
            }
            for _ in 0..10 {
                let _ = socket.send_to(&query, (self.address, 53));
                let mut buffer = [0; 4096];
                if let Ok((length, _)) = socket.recv_from(&mut buffer) {
                    let answered = Message::from_vec(&buffer[..length]).is_ok_and(|answer| {
                        answer
                            .answers()
                            .iter()
                            .any(|record| record.data().as_a().is_some_and(|a| a.0 == address))
                    });
                    if answered {
                        return;
                    }
                }
            }
        }
        panic!(
            "NSD for {} on {} did not take the edited zone\n{}",
            self.zone,
            self.address,
            self.log()
        );
    }

    fn wait_until_answering(&self, probe_from: Ipv4Addr) {
        let deadline = Instant::now() + START_TIMEOUT;
        let fail = |why: &str| -> ! {
            panic!(
                "NSD for {} on {} {why}\n--- nsd.log ---\n{}\n--- stderr ---\n{}",
                self.zone,
                self.address,
                self.log(),
                fs::read_to_string(self.directory.join("stderr")).unwrap_or_default()
            )
        };
        let socket = UdpSocket::bind((probe_from, 0))
            .unwrap_or_else(|error| panic!("cannot bind a probe socket: {error}"));
        let _ = socket.set_read_timeout(Some(Duration::from_millis(100)));
        let probe = soa_query(&self.zone);
        loop {
            if !self.is_running() {
                fail("exited during startup");
            }
            if Instant::now() >= deadline {
                fail("did not answer its SOA in time");
            }
            let _ = socket.send_to(&probe, (self.address, 53));
            let mut buffer = [0; 4096];
            if let Ok((length, _)) = socket.recv_from(&mut buffer) {
                if let Ok(answer) = Message::from_vec(&buffer[..length]) {
                    if !answer.answers().is_empty() {
                        break;
                    }
                }
            }
        }
        if !self.log.wait_started(START_TIMEOUT) {
            fail("never connected its dnstap stream");
        }
    }
}

impl Drop for NsdServer {
    fn drop(&mut self) {
        self.stop();
    }
}

/// A bound UDP socket and TCP listener that never answer.
#[derive(Debug)]
struct SilentServer {
    _udp: UdpSocket,
    _tcp: TcpListener,
}

impl SilentServer {
    fn bind(address: Ipv4Addr) -> Self {
        let at = SocketAddr::from((address, 53));
        Self {
            _udp: UdpSocket::bind(at).unwrap_or_else(|error| panic!("cannot bind {at}: {error}")),
            _tcp: TcpListener::bind(at).unwrap_or_else(|error| panic!("cannot bind {at}: {error}")),
        }
    }
}

/// The `server:` clause of an NSD for a test: in the foreground's terms (no user, no chroot,
/// no database), everything in `directory` (log `nsd.log`), one server process, on
/// `address` (IPv4). Add more `server:` lines (4 spaces) and clauses after it.
#[must_use]
pub fn nsd_server_clause(address: SocketAddr, directory: &Path) -> String {
    let d = directory.display();
    format!(
        r#"server:
    ip-address: {ip}
    port: {port}
    do-ip4: yes
    do-ip6: no
    username: ""
    chroot: ""
    zonesdir: "{d}"
    pidfile: "{d}/nsd.pid"
    database: ""
    zonelistfile: "{d}/zone.list"
    xfrdfile: "{d}/xfrd.state"
    logfile: "{d}/nsd.log"
    server-count: 1
    reuseport: no
    verbosity: 2
"#,
        ip = address.ip(),
        port = address.port(),
    )
}

fn nsd_config(directory: &Path, zone: &str, address: Ipv4Addr) -> String {
    let d = directory.display();
    let server = nsd_server_clause(SocketAddr::from((address, 53)), directory);
    format!(
        r#"# Written by juris-testkit for one test server.
{server}    hide-version: yes
    rrl-ratelimit: 0
    rrl-whitelist-ratelimit: 0
    zonefiles-write: 0

remote-control:
    control-enable: no

dnstap:
    dnstap-enable: yes
    dnstap-socket-path: "{d}/dnstap.sock"
    dnstap-log-auth-query-messages: yes
    dnstap-log-auth-response-messages: no

zone:
    name: "{zone}"
    zonefile: "{d}/zone"
"#
    )
}

/// A zone's file before signing: its own data, and the delegations to its children.
#[derive(Debug, Default)]
struct ZoneText {
    own: String,
    /// (child zone, NS + glue lines).
    delegations: Vec<(String, String)>,
}

impl ZoneText {
    fn all(&self) -> String {
        let mut text = self.own.clone();
        for (_, delegation) in &self.delegations {
            text.push_str(delegation);
        }
        text
    }

    /// (text with the delegations `leave_out` rejects, the left-out delegations).
    fn split_delegations(&self, mut leave_out: impl FnMut(&str) -> bool) -> (String, String) {
        let mut kept = self.own.clone();
        let mut left_out = String::new();
        for (child, delegation) in &self.delegations {
            if leave_out(child) {
                left_out.push_str(delegation);
            } else {
                kept.push_str(delegation);
            }
        }
        (kept, left_out)
    }
}

/// The zone file text of every zone: SOA, NS, own name server addresses, the user's
/// records, delegations with glue, and address records of glueless name servers.
fn zone_texts(zones: &[Zone], addresses: &[Vec<Ipv4Addr>]) -> Vec<ZoneText> {
    let mut texts: Vec<ZoneText> = zones
        .iter()
        .map(|zone| {
            let primary = zone.name_servers[0].name();
            let mut text = format!(
                "$ORIGIN {name}\n$TTL {ttl}\n@ IN SOA {primary} hostmaster.{host} 1 3600 600 86400 {negative}\n",
                name = zone.name,
                ttl = zone.ttl,
                host = zone.name.trim_start_matches('.'),
                negative = zone.negative_ttl,
            );
            for name_server in &zone.name_servers {
                let _ = writeln!(text, "@ IN NS {}", name_server.name());
            }
            ZoneText {
                own: text,
                delegations: Vec::new(),
            }
        })
        .collect();

    for (index, zone) in zones.iter().enumerate() {
        for (name_server, address) in zone.name_servers.iter().zip(&addresses[index]) {
            let name = name_server.name();
            let record = format!("{name} {} IN A {address}\n", zone.ttl);
            // The address record lives in the deepest zone containing the name.
            let home = deepest_zone(zones, name);
            if let NameServer::Glueless { .. } = name_server {
                assert!(
                    home != Some(index) && !is_within(name, &zone.name),
                    "glueless name server {name} of {} must be outside the zone",
                    zone.name
                );
            }
            let home = home.unwrap_or_else(|| panic!("no zone in the hierarchy holds {name}"));
            texts[home].own.push_str(&record);
        }

        texts[index].own.push_str(";; Zone data\n");
        texts[index].own.push_str(&zone.records);

        if index == 0 {
            continue;
        }
        // Delegation from the parent: NS, plus glue for in-bailiwick name servers.
        let parent = deepest_zone(&zones[..index], &zone.name)
            .unwrap_or_else(|| panic!("no parent zone for {}", zone.name));
        let mut delegation = format!(";; Delegation of {}\n", zone.name);
        for (name_server, address) in zone.name_servers.iter().zip(&addresses[index]) {
            let name = name_server.name();
            let _ = writeln!(delegation, "{} {} IN NS {name}", zone.name, zone.ttl);
            if is_within(name, &zone.name) {
                let _ = writeln!(delegation, "{name} {} IN A {address}", zone.ttl);
            }
        }
        texts[parent]
            .delegations
            .push((zone.name.clone(), delegation));
    }
    texts
}

/// Index of the zone with the most labels that contains `name`.
fn deepest_zone(zones: &[Zone], name: &str) -> Option<usize> {
    zones
        .iter()
        .enumerate()
        .filter(|(_, zone)| is_within(name, &zone.name))
        .max_by_key(|(_, zone)| label_count(&zone.name))
        .map(|(index, _)| index)
}

fn is_within(name: &str, zone: &str) -> bool {
    let name = name.to_ascii_lowercase();
    zone == "." || name == zone || name.ends_with(&format!(".{zone}"))
}

fn label_count(name: &str) -> usize {
    name.split('.').filter(|label| !label.is_empty()).count()
}

fn absolute(name: &str) -> String {
    let name = name.to_ascii_lowercase();
    if name.ends_with('.') {
        name
    } else {
        format!("{name}.")
    }
}

fn file_stem(zone: &str) -> String {
    if zone == "." {
        "root".to_owned()
    } else {
        zone.trim_end_matches('.').replace('.', "_")
    }
}

fn stderr_file(directory: &Path) -> Stdio {
    fs::File::create(directory.join("stderr")).map_or_else(|_| Stdio::null(), Stdio::from)
}

fn soa_query(zone: &str) -> Vec<u8> {
    let mut message = Message::new();
    message
        .set_id(0x5e11)
        .set_message_type(MessageType::Query)
        .set_op_code(OpCode::Query);
    if let Ok(name) = Name::from_ascii(zone) {
        message.add_query(Query::query(name, RecordType::SOA));
    }
    message.to_vec().unwrap_or_default()
}

#[cfg(test)]
#[allow(clippy::expect_used, clippy::unwrap_used, reason = "tests fail loudly")]
mod tests {
    use super::*;
    use crate::dig::Lookup;
    use crate::dnstap::Transport;

    fn at(address: Ipv4Addr) -> SocketAddr {
        SocketAddr::from((address, 53))
    }

    fn hierarchy() -> Hierarchy {
        Hierarchy::builder()
            .zone(Zone::new("test."))
            .zone(Zone::new("alpha.test.").records("www A 192.0.2.1\nwww AAAA 2001:db8::1"))
            .zone(Zone::new("example."))
            .zone(
                Zone::new("beta.example.")
                    .glueless_name_server("ns.provider.test.")
                    .records("www A 192.0.2.2"),
            )
            .zone(
                Zone::new("multi.test.")
                    .name_servers(2)
                    .silent_name_server()
                    .records("www A 192.0.2.3"),
            )
            .start()
    }

    #[test]
    fn the_hierarchy_delegates_with_and_without_glue() {
        let h = hierarchy();
        let root = h.server(".").address();
        let referral = Lookup::dig(at(root), "www.alpha.test.", "A")
            .arg("+norecurse")
            .run()
            .expect("root answers");
        assert_eq!(referral.status, "NOERROR", "{}", referral.output);
        assert!(
            referral.answer.is_empty() && !referral.has_flag("aa"),
            "{}",
            referral.output
        );
        assert_eq!(
            referral.authority[0].data, "ns1.test.",
            "{}",
            referral.output
        );
        assert_eq!(
            referral
                .additional
                .iter()
                .find(|r| r.record_type == "A")
                .map(|r| r.data.clone()),
            Some(h.server("test.").address().to_string()),
            "glue for ns1.test.: {}",
            referral.output
        );

        let tld = h.server("test.").address();
        let referral = Lookup::dig(at(tld), "www.alpha.test.", "A")
            .arg("+norecurse")
            .run()
            .expect("test. answers");
        assert_eq!(
            referral.authority[0].data, "ns1.alpha.test.",
            "{}",
            referral.output
        );

        let glueless = Lookup::dig(at(h.server("example.").address()), "www.beta.example.", "A")
            .arg("+norecurse")
            .run()
            .expect("example. answers");
        assert_eq!(
            glueless.authority[0].data, "ns.provider.test.",
            "{}",
            glueless.output
        );
        assert!(
            glueless.additional.iter().all(|r| r.record_type == "OPT"),
            "no glue: {}",
            glueless.output
        );
        let provider = Lookup::dig(at(tld), "ns.provider.test.", "A")
            .arg("+norecurse")
            .run()
            .expect("test. answers");
        assert_eq!(
            provider.answer_data("A"),
            [h.server("beta.example.").address().to_string()],
            "the glueless name server's address lives in test.: {}",
            provider.output
        );

        let sld = h.server("alpha.test.").address();
        let answer = Lookup::kdig(at(sld), "www.alpha.test.", "AAAA")
            .tcp()
            .run()
            .expect("answer");
        assert!(answer.has_flag("aa"), "{}", answer.output);
        assert_eq!(answer.answer_data("AAAA"), ["2001:db8::1"]);

        let multi = h.addresses("multi.test.");
        assert_eq!(multi.len(), 3);
        assert_eq!(h.servers("multi.test.").len(), 2, "the third one is silent");
        assert!(Lookup::dig(at(multi[2]), "www.multi.test.", "A")
            .timeout_seconds(1)
            .run()
            .is_err());
        for address in &multi[..2] {
            let answer = Lookup::dig(at(*address), "www.multi.test.", "A")
                .run()
                .expect("answer");
            assert_eq!(answer.answer_data("A"), ["192.0.2.3"]);
        }

        let hints = fs::read_to_string(h.root_hints()).unwrap();
        assert!(
            hints.contains(&format!("ns1.root-servers.\t3600000\tIN\tA\t{root}")),
            "{hints}"
        );
    }

    #[test]
    fn dnstap_records_what_each_server_received() {
        let h = hierarchy();
        let sld = h.server("alpha.test.");
        Lookup::dig(at(sld.address()), "WwW.Alpha.Test.", "A")
            .run()
            .expect("answer");
        Lookup::dig(at(sld.address()), "www.alpha.test.", "AAAA")
            .tcp()
            .run()
            .expect("answer");
        let started = Instant::now();
        let udp = h.wait_for_query("alpha.test.", Duration::from_secs(5), |q| {
            q.name == "www.alpha.test." && q.record_type == RecordType::A
        });
        let udp = udp.unwrap_or_else(|| panic!("not logged: {:?}", h.received("alpha.test.")));
        assert_eq!(udp.transport, Transport::Udp);
        assert!(udp.client.is_some_and(|c| c.ip().is_loopback()));
        let tcp = h
            .wait_for_query("alpha.test.", Duration::from_secs(5), |q| {
                q.record_type == RecordType::AAAA
            })
            .expect("TCP query logged");
        assert_eq!(tcp.transport, Transport::Tcp);
        eprintln!("dnstap delivered both within {:?}", started.elapsed());
        h.flush_query_logs();
        assert!(
            h.received(".").is_empty(),
            "the root got nothing but probes: {:?}",
            h.received(".")
        );
    }

    #[test]
    fn a_stopped_zone_no_longer_answers() {
        let h = hierarchy();
        let sld = h.server("alpha.test.");
        assert!(sld.is_running());
        h.stop_zone("alpha.test.");
        assert!(!sld.is_running());
        let lookup = Lookup::dig(at(sld.address()), "www.alpha.test.", "A").timeout_seconds(1);
        assert!(lookup.run().is_err());
        // The others still answer.
        Lookup::dig(at(h.server("test.").address()), "test.", "SOA")
            .run()
            .expect("answer");
    }
}
