//! An in-process fake authoritative server for resolver tests: UDP and TCP on one
//! 127.0.0.x address, answering from canned zones (referrals with whatever glue the zone
//! holds, CNAME/DNAME chasing inside the zone, NXDOMAIN/NODATA with SOA, TC=1 when the answer
//! exceeds the client's UDP size), and recording every query it receives.
#![allow(dead_code, reason = "each test uses a different part of the helper")]
#![allow(clippy::unwrap_used, clippy::expect_used, reason = "test code")]

use std::net::{IpAddr, SocketAddr};
use std::str::FromStr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use domain::base::iana::{Class, Rcode};
use domain::base::name::FlattenInto;
use domain::base::{Message, MessageBuilder, Name, ParsedName, Record, Rtype, Serial, ToName, Ttl};
use domain::rdata::{Aaaa, AllRecordData, Cname, Dname, Ns, Soa, Txt, A};
use juris_resolver::cache::{AnswerCache, CacheConfig};
use juris_resolver::clock::ManualClock;
use juris_resolver::{parse_root_hints, Mode, Question, Resolver, ResolverConfig};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, UdpSocket};
use tokio::task::JoinHandle;

pub type Rr = Record<Name<Bytes>, AllRecordData<Bytes, Name<Bytes>>>;

pub fn name(s: &str) -> Name<Bytes> {
    Name::bytes_from_str(s).unwrap()
}

/// The fake clock's start (Unix seconds).
pub const NOW: u64 = 1_700_000_000;

/// A question of class IN, DO=0, CD=0.
pub fn question(qname: &str, qtype: Rtype) -> Question {
    Question {
        name: name(qname),
        qtype,
        qclass: Class::IN,
        dnssec_ok: false,
        checking_disabled: false,
    }
}

/// Recursive mode from the root `ns.root.` on 127.0.0.2, every server on `port`.
pub fn recursive_config(port: u16) -> ResolverConfig {
    ResolverConfig {
        mode: Mode::Recursive {
            root_hints: parse_root_hints(". 3600000 NS ns.root.\nns.root. 3600000 A 127.0.0.2\n")
                .unwrap(),
        },
        query_timeout: Duration::from_millis(300),
        resolution_deadline: Duration::from_secs(8),
        allow_loopback_upstreams: true,
        upstream_port: port,
        // Most tests count the queries each server gets: priming has tests of its own.
        root_priming: false,
        // The fake authorities sign nothing and the built-in root anchor cannot apply.
        dnssec: juris_resolver::dnssec::ValidatorConfig {
            enabled: false,
            ..Default::default()
        },
        ..ResolverConfig::default()
    }
}

/// A resolver with an empty cache and a manual clock at [`NOW`].
pub fn resolver(config: ResolverConfig) -> (Resolver, Arc<ManualClock>) {
    let clock = Arc::new(ManualClock::new(NOW));
    let cache = Arc::new(AnswerCache::new(CacheConfig::default()));
    (Resolver::new(config, cache, clock.clone()).unwrap(), clock)
}

/// Parses `owner ttl TYPE data...` (A, AAAA, NS, CNAME, DNAME, TXT, SOA, RRSIG, NSEC). `TXT big:N` makes a
/// TXT record of N bytes.
pub fn rr(line: &str) -> Rr {
    let mut t = line.split_whitespace();
    let owner = name(t.next().unwrap());
    let ttl = Ttl::from_secs(t.next().unwrap().parse().unwrap());
    let rtype = t.next().unwrap();
    let rest: Vec<&str> = t.collect();
    let data = match rtype {
        "A" => AllRecordData::A(A::new(rest[0].parse().unwrap())),
        "AAAA" => AllRecordData::Aaaa(Aaaa::new(rest[0].parse().unwrap())),
        "NS" => AllRecordData::Ns(Ns::new(name(rest[0]))),
        "CNAME" => AllRecordData::Cname(Cname::new(name(rest[0]))),
        "DNAME" => AllRecordData::Dname(Dname::new(name(rest[0]))),
        "TXT" => {
            let text = match rest[0].strip_prefix("big:") {
                Some(n) => "x".repeat(n.parse().unwrap()),
                None => rest[0].to_string(),
            };
            AllRecordData::Txt(Txt::build_from_slice(text.as_bytes()).unwrap())
        }
        "SOA" => AllRecordData::Soa(Soa::new(
            name(rest[0]),
            name(rest[1]),
            Serial(rest[2].parse().unwrap()),
            Ttl::from_secs(rest[3].parse().unwrap()),
            Ttl::from_secs(rest[4].parse().unwrap()),
            Ttl::from_secs(rest[5].parse().unwrap()),
            Ttl::from_secs(rest[6].parse().unwrap()),
        )),
        // `NSEC NEXT TYPE...`
        "NSEC" => {
            let mut types = domain::rdata::dnssec::RtypeBitmap::<Bytes>::builder();
            for rtype in &rest[1..] {
                types.add(Rtype::from_str(rtype).unwrap()).unwrap();
            }
            AllRecordData::Nsec(domain::rdata::Nsec::new(name(rest[0]), types.finalize()))
        }
        // `RRSIG COVERED SIGNER`: a signature-shaped record (nothing verifies it here).
        "RRSIG" => AllRecordData::Rrsig(
            domain::rdata::Rrsig::new(
                Rtype::from_str(rest[0]).unwrap(),
                domain::base::iana::SecurityAlgorithm::RSASHA256,
                u8::try_from(owner.label_count() - 1).unwrap(),
                ttl,
                domain::rdata::dnssec::Timestamp::from(2_000_000_000),
                domain::rdata::dnssec::Timestamp::from(1_600_000_000),
                1,
                name(rest[1]),
                Bytes::from_static(&[0; 4]),
            )
            .unwrap(),
        ),
        other => panic!("unsupported type {other}"),
    };
    Record::new(owner, Class::IN, ttl, data)
}

/// A zone: its apex and records (one per line). A SOA is added if none is given.
#[derive(Clone)]
pub struct Zone {
    pub apex: Name<Bytes>,
    pub records: Vec<Rr>,
}

pub fn zone(apex: &str, lines: &[&str]) -> Zone {
    let mut records: Vec<Rr> = lines.iter().map(|l| rr(l)).collect();
    if !records.iter().any(|r| r.rtype() == Rtype::SOA) {
        let host = if apex == "." { "root" } else { apex };
        records.push(rr(&format!(
            "{apex} 3600 SOA ns.{host} hostmaster.{host} 1 3600 600 86400 300"
        )));
    }
    Zone {
        apex: name(apex),
        records,
    }
}

/// One query a fake server received.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Seen {
    /// Lower-cased name with trailing dot.
    pub qname: String,
    pub qtype: Rtype,
    pub tcp: bool,
    pub rd: bool,
    /// The query carried an OPT record (EDNS).
    pub edns: bool,
    /// The query's COOKIE option data (client cookie, then server cookie), if any.
    pub cookie: Option<Vec<u8>>,
}

/// A scripted reply: what a misbehaving server says (see [`FakeAuthority::scripted`]).
#[derive(Clone)]
pub struct Canned {
    pub rcode: Rcode,
    pub aa: bool,
    pub answer: Vec<Rr>,
    pub authority: Vec<Rr>,
    pub additional: Vec<Rr>,
}

impl Canned {
    pub fn new(rcode: Rcode, aa: bool) -> Self {
        Self {
            rcode,
            aa,
            answer: Vec::new(),
            authority: Vec::new(),
            additional: Vec::new(),
        }
    }

    pub fn answer(mut self, lines: &[&str]) -> Self {
        self.answer.extend(lines.iter().map(|l| rr(l)));
        self
    }

    pub fn authority(mut self, lines: &[&str]) -> Self {
        self.authority.extend(lines.iter().map(|l| rr(l)));
        self
    }

    pub fn additional(mut self, lines: &[&str]) -> Self {
        self.additional.extend(lines.iter().map(|l| rr(l)));
        self
    }
}

/// The script of a scripted server: (lower-cased qname with trailing dot, qtype) → reply,
/// `None` for no reply at all.
pub type Script = Arc<dyn Fn(&str, Rtype) -> Option<Canned> + Send + Sync>;

/// How a server that does not speak EDNS reacts to a query with an OPT record.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum EdnsReject {
    /// FORMERR without an OPT record (RFC 6891 §7).
    Formerr,
    /// NOTIMP without an OPT record.
    Notimp,
    /// A few bytes that are no DNS message.
    Garbage,
    /// No answer at all.
    Drop,
}

#[derive(Clone)]
enum Behaviour {
    Serve(Arc<Vec<Zone>>),
    Blackhole,
    Fail(Rcode),
    Scripted(Script),
    /// Serves the zones to queries without EDNS only.
    NoEdns(Arc<Vec<Zone>>, EdnsReject),
    /// Serves the zones after a delay.
    Slow(Arc<Vec<Zone>>, Duration),
    /// Serves the zones doing DNS cookies (RFC 7873 §5.2), see [`FakeAuthority::with_cookies`].
    Cookies(Arc<Vec<Zone>>, Arc<std::sync::atomic::AtomicU8>),
    /// Serves the zones, each answer preceded by a forgery echoing another client cookie.
    SpoofedCookies(Arc<Vec<Zone>>),
}

/// A running fake server; stops when dropped.
pub struct FakeAuthority {
    pub addr: SocketAddr,
    log: Arc<Mutex<Vec<Seen>>>,
    tasks: Vec<JoinHandle<()>>,
    /// The secret generation of a server made by [`FakeAuthority::with_cookies`].
    cookie_generation: Option<Arc<std::sync::atomic::AtomicU8>>,
    tcp_connections: Arc<std::sync::atomic::AtomicUsize>,
}

impl Drop for FakeAuthority {
    fn drop(&mut self) {
        for task in &self.tasks {
            task.abort();
        }
    }
}

impl FakeAuthority {
    /// Serves `zones` on `ip:port` (UDP and TCP).
    pub async fn serve(ip: &str, port: u16, zones: Vec<Zone>) -> Self {
        Self::start(ip, port, Behaviour::Serve(Arc::new(zones))).await
    }

    /// Records queries, never answers.
    pub async fn blackhole(ip: &str, port: u16) -> Self {
        Self::start(ip, port, Behaviour::Blackhole).await
    }

    /// Answers every query with `rcode`.
    pub async fn failing(ip: &str, port: u16, rcode: Rcode) -> Self {
        Self::start(ip, port, Behaviour::Fail(rcode)).await
    }

    /// Answers as `script` says (servers that misbehave in ways a zone cannot express).
    pub async fn scripted(
        ip: &str,
        port: u16,
        script: impl Fn(&str, Rtype) -> Option<Canned> + Send + Sync + 'static,
    ) -> Self {
        Self::start(ip, port, Behaviour::Scripted(Arc::new(script))).await
    }

    /// Serves `zones` to queries without EDNS; queries with an OPT record get `reject`.
    pub async fn without_edns(ip: &str, port: u16, zones: Vec<Zone>, reject: EdnsReject) -> Self {
        Self::start(ip, port, Behaviour::NoEdns(Arc::new(zones), reject)).await
    }

    /// Serves `zones`, each answer sent `delay` after the query came (UDP; TCP at once).
    pub async fn slow(ip: &str, port: u16, zones: Vec<Zone>, delay: Duration) -> Self {
        Self::start(ip, port, Behaviour::Slow(Arc::new(zones), delay)).await
    }

    /// Serves `zones` doing cookies as RFC 7873 §5.2 says: a client cookie alone gets a server
    /// cookie (the client cookie followed by 8 bytes of the current secret generation); a
    /// matching server cookie is answered; any other gets BADCOOKIE with the current one.
    /// Queries without a cookie are answered without one.
    pub async fn with_cookies(ip: &str, port: u16, zones: Vec<Zone>) -> Self {
        let generation = Arc::new(std::sync::atomic::AtomicU8::new(1));
        let mut server = Self::start(
            ip,
            port,
            Behaviour::Cookies(Arc::new(zones), Arc::clone(&generation)),
        )
        .await;
        server.cookie_generation = Some(generation);
        server
    }

    /// Serves `zones`, but sends before each UDP answer a forged one (answer records
    /// replaced by `192.0.2.66`) whose COOKIE echoes a client cookie that is not the query's.
    pub async fn spoofing_cookies(ip: &str, port: u16, zones: Vec<Zone>) -> Self {
        Self::start(ip, port, Behaviour::SpoofedCookies(Arc::new(zones))).await
    }

    /// A server of [`FakeAuthority::with_cookies`] changes its secret: cookies it gave out
    /// before no longer match.
    pub fn rotate_cookie_secret(&self) {
        if let Some(generation) = &self.cookie_generation {
            generation.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        }
    }

    async fn start(ip: &str, port: u16, behaviour: Behaviour) -> Self {
        let addr = SocketAddr::new(IpAddr::from_str(ip).unwrap(), port);
        let log = Arc::new(Mutex::new(Vec::new()));
        let udp = Arc::new(UdpSocket::bind(addr).await.expect("bind fake UDP"));
        let tcp = TcpListener::bind(addr).await.expect("bind fake TCP");
        let mut tasks = Vec::new();
        {
            let log = log.clone();
            let behaviour = behaviour.clone();
            tasks.push(tokio::spawn(async move {
                let mut buf = vec![0u8; 65535];
                loop {
                    let Ok((len, from)) = udp.recv_from(&mut buf).await else {
                        continue;
                    };
                    if let Behaviour::SpoofedCookies(_) = &behaviour {
                        if let Some(forged) = forged_cookie_answer(&buf[..len]) {
                            let _ = udp.send_to(&forged, from).await;
                        }
                    }
                    let Some(reply) = handle(&behaviour, &log, &buf[..len], false) else {
                        continue;
                    };
                    if let Behaviour::Slow(_, delay) = &behaviour {
                        let (udp, delay) = (udp.clone(), *delay);
                        tokio::spawn(async move {
                            tokio::time::sleep(delay).await;
                            let _ = udp.send_to(&reply, from).await;
                        });
                    } else {
                        let _ = udp.send_to(&reply, from).await;
                    }
                }
            }));
        }
        let tcp_connections = Arc::new(std::sync::atomic::AtomicUsize::new(0));
        {
            let log = log.clone();
            let connections = tcp_connections.clone();
            tasks.push(tokio::spawn(async move {
                loop {
                    let Ok((mut stream, _)) = tcp.accept().await else {
                        continue;
                    };
                    let log = log.clone();
                    let behaviour = behaviour.clone();
                    connections.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                    // Every query of the connection, in turn, until the client closes it
                    // (RFC 7766 §6.2.1: connections are reused).
                    tokio::spawn(async move {
                        loop {
                            let mut len = [0u8; 2];
                            if stream.read_exact(&mut len).await.is_err() {
                                return;
                            }
                            let mut query = vec![0u8; u16::from_be_bytes(len) as usize];
                            if stream.read_exact(&mut query).await.is_err() {
                                return;
                            }
                            if let Some(reply) = handle(&behaviour, &log, &query, true) {
                                let mut framed = (reply.len() as u16).to_be_bytes().to_vec();
                                framed.extend_from_slice(&reply);
                                if stream.write_all(&framed).await.is_err() {
                                    return;
                                }
                            }
                        }
                    });
                }
            }));
        }
        Self {
            addr,
            log,
            tasks,
            cookie_generation: None,
            tcp_connections,
        }
    }

    /// TCP connections accepted so far.
    pub fn tcp_connections(&self) -> usize {
        self.tcp_connections
            .load(std::sync::atomic::Ordering::SeqCst)
    }

    /// Every query received so far.
    pub fn queries(&self) -> Vec<Seen> {
        self.log.lock().unwrap().clone()
    }

    /// Number of queries received so far.
    pub fn count(&self) -> usize {
        self.log.lock().unwrap().len()
    }

    /// Number of queries received for `qname` (any type).
    pub fn count_for(&self, qname: &str) -> usize {
        self.queries().iter().filter(|q| q.qname == qname).count()
    }
}

fn handle(
    behaviour: &Behaviour,
    log: &Mutex<Vec<Seen>>,
    query: &[u8],
    tcp: bool,
) -> Option<Vec<u8>> {
    let message = Message::from_octets(Bytes::copy_from_slice(query)).ok()?;
    let question = message.sole_question().ok()?;
    let qname: Name<Bytes> = question.qname().clone().flatten_into();
    let qtype = question.qtype();
    let mut text = qname.to_string().to_ascii_lowercase();
    if !text.ends_with('.') {
        text.push('.');
    }
    let edns = message.opt().is_some();
    let cookie = query_cookie(&message);
    log.lock().unwrap().push(Seen {
        qname: text.clone(),
        qtype,
        tcp,
        rd: message.header().rd(),
        edns,
        cookie: cookie.clone(),
    });
    if let Behaviour::Cookies(zones, generation) = behaviour {
        let Some(cookie) = cookie else {
            return serve(zones, &message, &qname, qtype, tcp);
        };
        let mut current = cookie[..8].to_vec();
        current.extend_from_slice(&[generation.load(std::sync::atomic::Ordering::SeqCst); 8]);
        if cookie.len() > 8 && cookie[8..] != current[8..] {
            // BADCOOKIE = 23: 7 in the header, 1 in the OPT's extended RCODE.
            let refused = reply(&message, Rcode::YXRRSET, false, &[], &[], &[], tcp);
            return Some(with_cookie_option(refused, &current, 1));
        }
        let answer = serve(zones, &message, &qname, qtype, tcp)?;
        return Some(with_cookie_option(answer, &current, 0));
    }
    let zones = match behaviour {
        Behaviour::NoEdns(_, reject) if edns => {
            return match reject {
                EdnsReject::Formerr => {
                    Some(reply(&message, Rcode::FORMERR, false, &[], &[], &[], tcp))
                }
                EdnsReject::Notimp => {
                    Some(reply(&message, Rcode::NOTIMP, false, &[], &[], &[], tcp))
                }
                EdnsReject::Garbage => {
                    // The query's header and question with QR=1, then three answer
                    // records that are junk: it matches the query, and does not parse.
                    let question_end = 12 + qname.as_slice().len() + 4;
                    let mut junk = message.as_slice()[..question_end].to_vec();
                    junk[2] |= 0x80;
                    junk[6..12].copy_from_slice(&[0, 3, 0, 0, 0, 0]);
                    junk.extend_from_slice(&[0xff; 7]);
                    Some(junk)
                }
                EdnsReject::Drop => None,
            };
        }
        Behaviour::NoEdns(zones, _)
        | Behaviour::Slow(zones, _)
        | Behaviour::Cookies(zones, _)
        | Behaviour::SpoofedCookies(zones) => zones,
        Behaviour::Blackhole => return None,
        Behaviour::Fail(rcode) => return Some(reply(&message, *rcode, false, &[], &[], &[], tcp)),
        Behaviour::Scripted(script) => {
            let canned = script(&text, qtype)?;
            return Some(reply(
                &message,
                canned.rcode,
                canned.aa,
                &canned.answer,
                &canned.authority,
                &canned.additional,
                tcp,
            ));
        }
        Behaviour::Serve(zones) => zones,
    };
    serve(zones, &message, &qname, qtype, tcp)
}

/// The answer from `zones` (REFUSED outside them).
fn serve(
    zones: &[Zone],
    message: &Message<Bytes>,
    qname: &Name<Bytes>,
    qtype: Rtype,
    tcp: bool,
) -> Option<Vec<u8>> {
    let Some(zone) = zones
        .iter()
        .filter(|z| qname.ends_with(&z.apex))
        .max_by_key(|z| z.apex.label_count())
    else {
        return Some(reply(message, Rcode::REFUSED, false, &[], &[], &[], tcp));
    };
    let (rcode, aa, answer, authority, additional) = lookup(zone, qname, qtype);
    Some(reply(
        message,
        rcode,
        aa,
        &answer,
        &authority,
        &additional,
        tcp,
    ))
}

/// The COOKIE option data of a query, if any.
fn query_cookie(message: &Message<Bytes>) -> Option<Vec<u8>> {
    let opt = message.opt()?;
    let cookie = opt.opt().cookie()?;
    let mut data = cookie.client().into_octets().to_vec();
    if let Some(server) = cookie.server() {
        data.extend_from_slice(server.as_ref());
    }
    Some(data)
}

/// `wire` (whose last record is an OPT without options, as [`reply`] writes it) with a
/// COOKIE option holding `cookie` and `extended_rcode` in the OPT TTL.
fn with_cookie_option(mut wire: Vec<u8>, cookie: &[u8], extended_rcode: u8) -> Vec<u8> {
    let opt = wire.len() - 11;
    assert_eq!(
        wire[opt..opt + 3],
        [0, 0, 41],
        "an OPT record ends the reply"
    );
    wire[opt + 5] = extended_rcode;
    wire[opt + 9..].copy_from_slice(&(4 + cookie.len() as u16).to_be_bytes());
    wire.extend_from_slice(&10u16.to_be_bytes());
    wire.extend_from_slice(&(cookie.len() as u16).to_be_bytes());
    wire.extend_from_slice(cookie);
    wire
}

/// A forged answer to `query`: `192.0.2.66` for its name, with a COOKIE option whose
/// client cookie is the query's with its first byte flipped (`None` without a cookie).
fn forged_cookie_answer(query: &[u8]) -> Option<Vec<u8>> {
    let message = Message::from_octets(Bytes::copy_from_slice(query)).ok()?;
    let mut cookie = query_cookie(&message)?;
    cookie[0] ^= 0xff;
    let question = message.sole_question().ok()?;
    let qname: Name<Bytes> = question.qname().clone().flatten_into();
    let mut owner = qname.to_string();
    if !owner.ends_with('.') {
        owner.push('.');
    }
    let forged = rr(&format!("{owner} 300 A 192.0.2.66"));
    let wire = reply(&message, Rcode::NOERROR, true, &[forged], &[], &[], false);
    Some(with_cookie_option(wire, &cookie, 0))
}

type Sections = (Rcode, bool, Vec<Rr>, Vec<Rr>, Vec<Rr>);

fn lookup(zone: &Zone, qname: &Name<Bytes>, qtype: Rtype) -> Sections {
    let records = &zone.records;
    let at = |n: &Name<Bytes>| -> Vec<Rr> {
        records
            .iter()
            .filter(|r| r.owner().name_eq(n))
            .cloned()
            .collect()
    };
    let soa: Vec<Rr> = records
        .iter()
        .filter(|r| r.rtype() == Rtype::SOA)
        .cloned()
        .collect();
    // Zone cuts between the apex (exclusive) and the name (inclusive): referral.
    for labels in zone.apex.label_count() + 1..=qname.label_count() {
        let cut = qname
            .iter_suffixes()
            .find(|s| s.label_count() == labels)
            .unwrap();
        let ns: Vec<Rr> = at(&cut)
            .into_iter()
            .filter(|r| r.rtype() == Rtype::NS)
            .collect();
        if !ns.is_empty() {
            let glue = records
                .iter()
                .filter(|r| matches!(r.rtype(), Rtype::A | Rtype::AAAA))
                .filter(|r| {
                    ns.iter().any(|n| match n.data() {
                        AllRecordData::Ns(ns) => ns.nsdname().name_eq(r.owner()),
                        _ => false,
                    })
                })
                .cloned()
                .collect();
            return (Rcode::NOERROR, false, Vec::new(), ns, glue);
        }
    }
    let mut answer: Vec<Rr> = Vec::new();
    let mut current = qname.clone();
    for _ in 0..8 {
        let here = at(&current);
        let matching: Vec<Rr> = here
            .iter()
            .filter(|r| r.rtype() == qtype)
            .cloned()
            .collect();
        if !matching.is_empty() {
            answer.extend(matching);
            return (Rcode::NOERROR, true, answer, Vec::new(), Vec::new());
        }
        if qtype != Rtype::CNAME {
            if let Some(cname) = here.iter().find(|r| r.rtype() == Rtype::CNAME) {
                answer.push(cname.clone());
                let AllRecordData::Cname(c) = cname.data() else {
                    unreachable!()
                };
                current = c.cname().clone();
                // Out-of-zone targets end the chase unless the zone data (sloppily) holds
                // records for them: tests use that to offer out-of-bailiwick answers.
                if !current.ends_with(&zone.apex) && at(&current).is_empty() {
                    return (Rcode::NOERROR, true, answer, Vec::new(), Vec::new());
                }
                continue;
            }
        }
        let dname = records.iter().find(|r| {
            r.rtype() == Rtype::DNAME
                && current.ends_with(r.owner())
                && current.label_count() > r.owner().label_count()
        });
        if let Some(dname) = dname {
            let AllRecordData::Dname(d) = dname.data() else {
                unreachable!()
            };
            let keep = current.as_slice().len() - dname.owner().as_slice().len();
            let mut bytes = current.as_slice()[..keep].to_vec();
            bytes.extend_from_slice(d.dname().as_slice());
            let target = Name::from_octets(Bytes::from(bytes)).unwrap();
            answer.push(dname.clone());
            answer.push(Record::new(
                current.clone(),
                Class::IN,
                dname.ttl(),
                AllRecordData::Cname(Cname::new(target.clone())),
            ));
            current = target;
            if !current.ends_with(&zone.apex) {
                return (Rcode::NOERROR, true, answer, Vec::new(), Vec::new());
            }
            continue;
        }
        let exists = records.iter().any(|r| r.owner().ends_with(&current));
        let rcode = if exists {
            Rcode::NOERROR
        } else {
            Rcode::NXDOMAIN
        };
        return (rcode, true, answer, soa, Vec::new());
    }
    (Rcode::NOERROR, true, answer, Vec::new(), Vec::new())
}

fn reply(
    query: &Message<Bytes>,
    rcode: Rcode,
    aa: bool,
    answer: &[Rr],
    authority: &[Rr],
    additional: &[Rr],
    tcp: bool,
) -> Vec<u8> {
    let udp_limit = query
        .opt()
        .map(|opt| opt.udp_payload_size().max(512))
        .unwrap_or(512) as usize;
    let build = |with_records: bool| -> Vec<u8> {
        let builder = MessageBuilder::new_vec();
        let mut builder = builder.start_answer(query, rcode).unwrap();
        builder.header_mut().set_aa(aa);
        if with_records {
            for r in answer {
                builder.push(r).unwrap();
            }
        } else {
            builder.header_mut().set_tc(true);
        }
        let mut builder = builder.authority();
        if with_records {
            for r in authority {
                builder.push(r).unwrap();
            }
        }
        let mut builder = builder.additional();
        if with_records {
            for r in additional {
                builder.push(r).unwrap();
            }
        }
        if query.opt().is_some() && !matches!(rcode, Rcode::FORMERR | Rcode::NOTIMP) {
            builder
                .opt(|opt| {
                    opt.set_udp_payload_size(1232);
                    Ok(())
                })
                .unwrap();
        }
        builder.finish()
    };
    let full = build(true);
    if !tcp && full.len() > udp_limit {
        return build(false);
    }
    full
}

/// Parsed view of a cached answer: (rcode, answer lines, authority lines), each line
/// `owner TYPE data` with the owner lower-cased and dot-terminated.
pub fn sections(wire: &[u8]) -> (Rcode, Vec<String>, Vec<String>) {
    let message = Message::from_octets(Bytes::copy_from_slice(wire)).unwrap();
    let render = |section: domain::base::message::RecordSection<'_, Bytes>| -> Vec<String> {
        section
            .map(|r| {
                let r = r
                    .unwrap()
                    .to_any_record::<AllRecordData<Bytes, ParsedName<Bytes>>>()
                    .unwrap();
                let mut owner = r.owner().to_string().to_ascii_lowercase();
                if !owner.ends_with('.') {
                    owner.push('.');
                }
                format!("{owner} {} {}", r.rtype(), r.data())
            })
            .collect()
    };
    let answer = render(message.answer().unwrap());
    let authority = render(message.authority().unwrap());
    (message.header().rcode(), answer, authority)
}
