//! Flooding client prefixes dropped by the kernel (design 0050): a classic BPF program on every
//! plain-UDP listening socket discards their queries before they reach a worker.
//!
//! ```text
//!  limiter: a prefix's limited queries (one class) reach `kernel_drop_after` in one second
//!    ─► KernelDrop::request(prefix) ─► the "juris-kdrop" thread adds it to the list
//!       (at most `kernel_drop_max_prefixes`), compiles one program per address family and
//!       attaches it to every UDP socket (SO_ATTACH_FILTER replaces the previous one)
//!    ─► after `kernel_drop_seconds`: removed, programs rebuilt (no entry: filter detached)
//!
//!  the program, per datagram (offset 0 = UDP header):
//!    source (masked to the account's prefix) listed? ── no ──► accept
//!        └─ yes: ARCOUNT ≠ 0 and the datagram ends with a 24-byte COOKIE option? ── yes ──► accept
//!                                                                               └─ no ──► drop
//! ```
//!
//! A datagram that carries what looks like an RFC 9018 server cookie goes on to user space,
//! which verifies it (classic BPF cannot compute SipHash): clients with a valid server cookie
//! stay exempt from every rate limit.
//!
//! # Limitations
//! - The scan is linear: one compare per listed IPv4 prefix, up to four per IPv6 prefix, for
//!   every UDP datagram while the list is not empty (bounded by `kernel_drop_max_prefixes`).
//! - A listed prefix loses all its UDP queries without a cookie, hits included, until its time
//!   is up; TCP, DoT, DoH and DoQ are not filtered.
//! - A client whose COOKIE is not the last EDNS option is dropped while its prefix is listed.
//! - Linux only: elsewhere requests are counted as refused and nothing is attached.
//! - Off behind PROXY-protocol load balancers (`proxy_protocol_from`): the datagrams' source is
//!   the balancer, the limiter's prefix is the client's.

use std::net::IpAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use ipnet::{IpNet, Ipv4Net, Ipv6Net};
use socket2::Socket;

use crate::cookie::{CLIENT_COOKIE_LEN, SERVER_COOKIE_LEN};

/// The most prefixes the list may hold (keeps an IPv6 program within the kernel's 4096
/// instructions: at most 13 per prefix).
pub const MAX_PREFIXES: usize = 256;
/// The longest time a prefix may stay listed, seconds.
pub const MAX_SECONDS: u32 = 3600;

/// `server.rate_limit.kernel_drop_*` ([`crate::RateLimitConfig`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct KernelDropConfig {
    /// Limited queries (or responses) of one class of one account within one second that
    /// list the account's prefix; 0 (the default) switches kernel drops off.
    pub after: u32,
    /// How long a prefix stays listed, seconds. Default 10.
    pub seconds: u32,
    /// The most prefixes listed at once. Default 64.
    pub max_prefixes: usize,
}

impl Default for KernelDropConfig {
    fn default() -> Self {
        Self {
            after: 0,
            seconds: 10,
            max_prefixes: 64,
        }
    }
}

impl KernelDropConfig {
    /// Checks ranges (messages name the keys).
    pub fn validate(&self) -> Result<(), &'static str> {
        if self.seconds == 0 || self.seconds > MAX_SECONDS {
            return Err("rate_limit.kernel_drop_seconds must be between 1 and 3600");
        }
        if self.max_prefixes == 0 || self.max_prefixes > MAX_PREFIXES {
            return Err("rate_limit.kernel_drop_max_prefixes must be between 1 and 256");
        }
        Ok(())
    }
}

/// Counts of [`KernelDrop`], for `/metrics`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct KernelDropStats {
    /// Prefixes listed now.
    pub listed: u64,
    /// Prefixes added to the list since start.
    pub added: u64,
    /// Requests refused because the list was full (or kernel filters are unsupported).
    pub refused: u64,
}

/// The list of prefixes dropped in the kernel and the sockets it is attached to; one per
/// server, shared by its rate limiters (a SIGHUP replaces the limiter, not the list).
#[derive(Debug, Default)]
pub struct KernelDrop {
    state: Mutex<State>,
    wake: Condvar,
    added: AtomicU64,
    refused: AtomicU64,
    listed: AtomicU64,
}

#[derive(Debug, Default)]
struct State {
    config: KernelDropConfig,
    listed: Vec<(IpNet, Instant)>,
    /// Prefixes asked for, with the count that triggered each (for the log).
    pending: Vec<(IpNet, u32)>,
    /// Duplicates of the UDP listening sockets (same socket, own descriptor), and whether
    /// each is IPv6.
    sockets: Vec<(Socket, bool)>,
    thread: bool,
    stop: bool,
    /// The list changed since the programs were last attached.
    dirty: bool,
}

impl KernelDrop {
    /// An empty list with `config`.
    pub fn new(config: KernelDropConfig) -> Self {
        Self {
            state: Mutex::new(State {
                config,
                ..State::default()
            }),
            ..Self::default()
        }
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        self.state
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Filters `socket` (a plain-UDP listening socket) from now on.
    pub(crate) fn add_socket(&self, socket: &Socket) -> std::io::Result<()> {
        let v6 = socket.local_addr()?.is_ipv6();
        let socket = socket.try_clone()?;
        let mut state = self.lock();
        state.sockets.push((socket, v6));
        state.dirty = true;
        Ok(())
    }

    /// New settings (SIGHUP): turning kernel drops off empties the list at once.
    pub fn configure(&self, config: KernelDropConfig) {
        let mut state = self.lock();
        if state.config == config {
            return;
        }
        state.config = config;
        if config.after == 0 {
            state.listed.clear();
            state.pending.clear();
            self.listed.store(0, Ordering::Relaxed);
            Self::apply(&mut state);
        } else {
            state.listed.truncate(config.max_prefixes);
        }
        state.dirty = true;
        self.wake.notify_one();
    }

    /// The settings in force.
    pub fn config(&self) -> KernelDropConfig {
        self.lock().config
    }

    /// Asks for `prefix` to be listed (the limiter saw it reach `after` in one second). Cheap
    /// and non-blocking apart from a short lock; the work happens on the list's thread.
    pub fn request(self: &Arc<Self>, prefix: IpNet, count: u32) {
        let mut state = self.lock();
        if state.config.after == 0 || state.stop {
            return;
        }
        if state.listed.iter().any(|(p, _)| *p == prefix)
            || state.pending.iter().any(|(p, _)| *p == prefix)
        {
            return;
        }
        state.pending.push((prefix, count));
        if !state.thread {
            let list = Arc::clone(self);
            match std::thread::Builder::new()
                .name("juris-kdrop".into())
                .spawn(move || list.run())
            {
                Ok(_) => state.thread = true,
                Err(error) => {
                    tracing::warn!(%error, "kernel drop: cannot start its thread");
                    state.pending.clear();
                    self.refused.fetch_add(1, Ordering::Relaxed);
                    return;
                }
            }
        }
        self.wake.notify_one();
    }

    /// Stops the thread and detaches every program (server shutdown).
    pub(crate) fn stop(&self) {
        let mut state = self.lock();
        state.stop = true;
        state.listed.clear();
        state.pending.clear();
        Self::apply(&mut state);
        state.sockets.clear();
        self.wake.notify_one();
    }

    /// Counts, and the number of prefixes listed now.
    pub fn stats(&self) -> KernelDropStats {
        KernelDropStats {
            listed: self.listed.load(Ordering::Relaxed),
            added: self.added.load(Ordering::Relaxed),
            refused: self.refused.load(Ordering::Relaxed),
        }
    }

    /// The prefixes listed now, with the time each has left.
    pub fn listed(&self) -> Vec<(IpNet, Duration)> {
        let now = Instant::now();
        self.lock()
            .listed
            .iter()
            .map(|(p, until)| (*p, until.saturating_duration_since(now)))
            .collect()
    }

    /// The list's thread: admits requests, expires entries, reattaches programs on change.
    fn run(self: Arc<Self>) {
        let mut state = self.lock();
        loop {
            if state.stop {
                return;
            }
            let now = Instant::now();
            let before = state.listed.len();
            state.listed.retain(|(prefix, until)| {
                let keep = *until > now;
                if !keep {
                    tracing::info!(%prefix, "kernel drop: time is up, prefix answered again");
                }
                keep
            });
            let mut changed = state.listed.len() != before;
            let seconds = Duration::from_secs(u64::from(state.config.seconds));
            for (prefix, count) in std::mem::take(&mut state.pending) {
                if state.listed.len() >= state.config.max_prefixes || !cfg!(target_os = "linux") {
                    self.refused.fetch_add(1, Ordering::Relaxed);
                    tracing::warn!(%prefix, count,
                        "kernel drop: list full (or no socket filters here), prefix left to the user-space limiter");
                    continue;
                }
                tracing::info!(%prefix, count, seconds = state.config.seconds,
                    "kernel drop: prefix far over its rate, its UDP queries are dropped in the kernel");
                state.listed.push((prefix, now + seconds));
                self.added.fetch_add(1, Ordering::Relaxed);
                changed = true;
            }
            if changed || state.dirty {
                Self::apply(&mut state);
                self.listed
                    .store(state.listed.len() as u64, Ordering::Relaxed);
            }
            let next = state.listed.iter().map(|(_, until)| *until).min();
            let wait = next.map_or(Duration::from_secs(3600), |t| {
                t.saturating_duration_since(Instant::now()) + Duration::from_millis(1)
            });
            state = match self.wake.wait_timeout(state, wait) {
                Ok((state, _)) => state,
                Err(poisoned) => poisoned.into_inner().0,
            };
        }
    }

    /// Attaches the programs for the current list to every socket (detaches them when no
    /// prefix of the socket's family is listed).
    fn apply(state: &mut State) {
        state.dirty = false;
        let prefixes: Vec<IpNet> = state.listed.iter().map(|(p, _)| *p).collect();
        let v4 = program(&prefixes, false);
        let v6 = program(&prefixes, true);
        for (socket, v6_socket) in &state.sockets {
            let program = if *v6_socket { &v6 } else { &v4 };
            let result = match program {
                Some(program) => crate::sys::attach_filter(socket, program),
                None => crate::sys::detach_filter(socket),
            };
            if let Err(error) = result {
                tracing::warn!(%error, "kernel drop: cannot set the UDP socket's filter");
            }
        }
    }
}

/// One classic BPF instruction (`struct sock_filter`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Insn {
    /// Opcode.
    pub code: u16,
    /// Jump offset when true.
    pub jt: u8,
    /// Jump offset when false.
    pub jf: u8,
    /// Operand.
    pub k: u32,
}

// Classic BPF opcodes (linux/filter.h, linux/bpf_common.h): kernel ABI, stable.
const LD_W_ABS: u16 = 0x20; // BPF_LD | BPF_W | BPF_ABS
const LD_H_ABS: u16 = 0x28; // BPF_LD | BPF_H | BPF_ABS
const LD_W_IND: u16 = 0x40; // BPF_LD | BPF_W | BPF_IND
const LD_W_LEN: u16 = 0x80; // BPF_LD | BPF_W | BPF_LEN
const LD_MEM: u16 = 0x60; // BPF_LD | BPF_MEM
const ST: u16 = 0x02; // BPF_ST
const ALU_AND_K: u16 = 0x54; // BPF_ALU | BPF_AND | BPF_K
const ALU_SUB_K: u16 = 0x14; // BPF_ALU | BPF_SUB | BPF_K
const TAX: u16 = 0x07; // BPF_MISC | BPF_TAX
const JA: u16 = 0x05; // BPF_JMP | BPF_JA
const JEQ_K: u16 = 0x15; // BPF_JMP | BPF_JEQ | BPF_K
const JGE_K: u16 = 0x35; // BPF_JMP | BPF_JGE | BPF_K
const RET_K: u16 = 0x06; // BPF_RET | BPF_K
/// `SKF_NET_OFF`: loads relative to the network (IP) header.
const NET: u32 = (-0x0010_0000i32) as u32;

/// UDP header length: a UDP socket's filter sees the datagram from its UDP header.
const UDP: u32 = 8;
/// The COOKIE option of a client that returns juris's server cookie: code 10, length 24.
const COOKIE_TAIL: u32 = (10 << 16) | (CLIENT_COOKIE_LEN + SERVER_COOKIE_LEN) as u32;
/// Bytes from that option's code to the datagram's end.
const COOKIE_TAIL_LEN: u32 = 4 + (CLIENT_COOKIE_LEN + SERVER_COOKIE_LEN) as u32;
/// The shortest query that can carry it: header, root QNAME, QTYPE/QCLASS, the OPT record's
/// fixed part (11 bytes) and the option.
const COOKIE_QUERY_MIN: u32 = UDP + 12 + 1 + 4 + 11 + COOKIE_TAIL_LEN;

fn insn(code: u16, jt: u8, jf: u8, k: u32) -> Insn {
    Insn { code, jt, jf, k }
}

/// The program that drops datagrams from `prefixes` of one family (`v6`), or `None` when no
/// prefix of that family is listed (no filter is needed). All prefixes of a family have the
/// limiter's one prefix length, but any length works.
pub fn program(prefixes: &[IpNet], v6: bool) -> Option<Vec<Insn>> {
    let mut words: Vec<([u32; 4], [u32; 4])> = Vec::new();
    for prefix in prefixes {
        match (prefix, v6) {
            (IpNet::V4(p), false) => words.push(v4_words(p)),
            (IpNet::V6(p), true) => words.push(v6_words(p)),
            _ => {}
        }
    }
    if words.is_empty() {
        return None;
    }
    let nwords = if v6 { 4 } else { 1 };
    let mut code = Vec::new();
    // M[i] = the source address's i-th 32-bit word (IPv4: at 12; IPv6: at 8 of the IP header).
    let source = if v6 { 8 } else { 12 };
    for i in 0..nwords {
        code.push(insn(
            LD_W_ABS,
            0,
            0,
            NET.wrapping_add(source + 4 * i as u32),
        ));
        code.push(insn(ST, 0, 0, i as u32));
    }
    // Each entry: for every word its mask covers, load, mask, compare (a mismatch jumps to
    // the next entry); all equal: jump to MATCH. The jump targets are patched below.
    let mut to_match = Vec::new();
    for (value, mask) in &words {
        let used: Vec<usize> = (0..nwords).filter(|&i| mask[i] != 0).collect();
        let entry_len = used.len() * 3 + 1;
        for (n, &i) in used.iter().enumerate() {
            let rest = entry_len - (n * 3 + 3); // instructions after this compare in the entry
            code.push(insn(LD_MEM, 0, 0, i as u32));
            code.push(insn(ALU_AND_K, 0, 0, mask[i]));
            code.push(insn(JEQ_K, 0, rest as u8, value[i] & mask[i]));
        }
        to_match.push(code.len());
        code.push(insn(JA, 0, 0, 0));
    }
    code.push(insn(RET_K, 0, 0, u32::MAX)); // no entry matched: accept
    let matched = code.len();
    for at in to_match {
        code[at].k = (matched - at - 1) as u32;
    }
    // MATCH: let a datagram that ends with a COOKIE option of juris's length through.
    //   ldh [UDP+10] (ARCOUNT); jeq 0 → drop
    //   ld len; jge COOKIE_QUERY_MIN else drop; sub COOKIE_TAIL_LEN; tax; ld [x]; jeq COOKIE_TAIL → accept
    code.push(insn(LD_H_ABS, 0, 0, UDP + 10));
    code.push(insn(JEQ_K, 6, 0, 0));
    code.push(insn(LD_W_LEN, 0, 0, 0));
    code.push(insn(JGE_K, 0, 4, COOKIE_QUERY_MIN));
    code.push(insn(ALU_SUB_K, 0, 0, COOKIE_TAIL_LEN));
    code.push(insn(TAX, 0, 0, 0));
    code.push(insn(LD_W_IND, 0, 0, 0));
    code.push(insn(JEQ_K, 1, 0, COOKIE_TAIL));
    code.push(insn(RET_K, 0, 0, 0)); // drop
    code.push(insn(RET_K, 0, 0, u32::MAX)); // accept
    Some(code)
}

fn v4_words(p: &Ipv4Net) -> ([u32; 4], [u32; 4]) {
    let mask = u32::from(p.netmask());
    ([u32::from(p.network()), 0, 0, 0], [mask, 0, 0, 0])
}

fn v6_words(p: &Ipv6Net) -> ([u32; 4], [u32; 4]) {
    let split = |x: u128| {
        [
            (x >> 96) as u32,
            (x >> 64) as u32,
            (x >> 32) as u32,
            x as u32,
        ]
    };
    (
        split(u128::from(p.network())),
        split(u128::from(p.netmask())),
    )
}

/// The account prefix of `client` (the limiter's grouping) as a network.
pub(crate) fn prefix_net(client: IpAddr, ipv4_len: u8, ipv6_len: u8) -> IpNet {
    match client {
        IpAddr::V4(a) => IpNet::V4(
            Ipv4Net::new(a, ipv4_len.min(32)).map_or_else(|_| Ipv4Net::from(a), |n| n.trunc()),
        ),
        IpAddr::V6(a) => IpNet::V6(
            Ipv6Net::new(a, ipv6_len.min(128)).map_or_else(|_| Ipv6Net::from(a), |n| n.trunc()),
        ),
    }
}

#[cfg(all(test, target_os = "linux"))]
#[allow(clippy::unwrap_used, clippy::expect_used, reason = "test code")]
mod tests {
    use super::*;
    use std::net::{SocketAddr, UdpSocket};

    fn query(arcount: u16, tail: &[u8]) -> Vec<u8> {
        let mut q = vec![0x12, 0x34, 1, 0, 0, 1, 0, 0, 0, 0];
        q.extend_from_slice(&arcount.to_be_bytes());
        q.extend_from_slice(b"\x07example\x03com\x00\x00\x01\x00\x01");
        if arcount > 0 {
            // OPT: root owner, type 41, class 1232, TTL 0, RDLENGTH, options.
            q.extend_from_slice(&[0, 0, 41, 4, 208, 0, 0, 0, 0]);
            q.extend_from_slice(&(tail.len() as u16).to_be_bytes());
            q.extend_from_slice(tail);
        }
        q
    }

    fn cookie(server_len: usize) -> Vec<u8> {
        let mut o = vec![0, 10];
        o.extend_from_slice(&((8 + server_len) as u16).to_be_bytes());
        o.extend(std::iter::repeat_n(0xab, 8 + server_len));
        o
    }

    /// Sends each (source, datagram) to a socket carrying `prefixes`' program; which arrived.
    fn deliver(prefixes: &[IpNet], sends: &[(IpAddr, Vec<u8>)]) -> Vec<bool> {
        let v6 = sends[0].0.is_ipv6();
        let any: SocketAddr = if v6 { "[::1]:0" } else { "127.0.0.1:0" }.parse().unwrap();
        let receiver = crate::udp::bind(any, 0).unwrap();
        let to = receiver.local_addr().unwrap().as_socket().unwrap();
        let list = KernelDrop::new(KernelDropConfig {
            after: 1,
            ..KernelDropConfig::default()
        });
        list.add_socket(&receiver).unwrap();
        {
            let mut state = list.lock();
            let far = Instant::now() + Duration::from_secs(60);
            state.listed = prefixes.iter().map(|p| (*p, far)).collect();
            KernelDrop::apply(&mut state);
        }
        let receiver: UdpSocket = receiver.into();
        receiver.set_nonblocking(false).unwrap();
        receiver
            .set_read_timeout(Some(Duration::from_millis(300)))
            .unwrap();
        let mut arrived = Vec::new();
        for (from, datagram) in sends {
            let sender = UdpSocket::bind(SocketAddr::new(*from, 0)).unwrap();
            sender.send_to(datagram, to).unwrap();
            let mut buf = [0u8; 600];
            arrived.push(match receiver.recv_from(&mut buf) {
                Ok((n, _)) => {
                    assert_eq!(&buf[..n], &datagram[..], "the datagram arrives whole");
                    true
                }
                Err(_) => false,
            });
        }
        list.stop();
        arrived
    }

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    fn net(s: &str) -> IpNet {
        s.parse().unwrap()
    }

    #[test]
    fn a_listed_ipv4_prefix_is_dropped_and_others_pass() {
        let plain = query(0, &[]);
        let arrived = deliver(
            &[net("127.0.8.0/24"), net("127.0.7.0/24"), net("::1/128")],
            &[
                (ip("127.0.8.1"), plain.clone()),
                (ip("127.0.8.200"), plain.clone()),
                (ip("127.0.7.9"), plain.clone()),
                (ip("127.0.9.1"), plain.clone()),
                (ip("127.0.0.1"), plain),
            ],
        );
        assert_eq!(arrived, [false, false, false, true, true]);
    }

    #[test]
    fn a_listed_client_with_a_server_cookie_still_reaches_user_space() {
        let arrived = deliver(
            &[net("127.0.8.0/24")],
            &[
                (ip("127.0.8.1"), query(1, &cookie(16))),
                // A client cookie alone, an EDNS query without a cookie, other lengths.
                (ip("127.0.8.1"), query(1, &cookie(0))),
                (ip("127.0.8.1"), query(1, &[])),
                (ip("127.0.8.1"), query(1, &cookie(8))),
                // The cookie option not last: dropped (a limitation, see the module doc).
                (
                    ip("127.0.8.1"),
                    query(1, &[cookie(16), vec![0, 3, 0, 0]].concat()),
                ),
                // ARCOUNT 0 with cookie-looking bytes at the end.
                (ip("127.0.8.1"), [query(0, &[]), cookie(16)].concat()),
                // Too short to hold a cookie, and empty.
                (ip("127.0.8.1"), vec![0; 13]),
                (ip("127.0.8.1"), Vec::new()),
            ],
        );
        assert_eq!(
            arrived,
            [true, false, false, false, false, false, false, false]
        );
    }

    #[test]
    fn a_listed_ipv6_prefix_is_dropped() {
        let plain = query(0, &[]);
        assert_eq!(
            deliver(&[net("::1/128")], &[(ip("::1"), plain.clone())]),
            [false]
        );
        assert_eq!(
            deliver(&[net("::/56")], &[(ip("::1"), plain.clone())]),
            [false]
        );
        assert_eq!(
            deliver(
                &[net("2001:db8::/56"), net("::2/128"), net("127.0.0.0/8")],
                &[(ip("::1"), plain.clone())]
            ),
            [true]
        );
        assert_eq!(
            deliver(&[net("::1/128")], &[(ip("::1"), query(1, &cookie(16)))]),
            [true]
        );
    }

    #[test]
    fn the_largest_list_fits_the_kernel_limit() {
        let prefixes: Vec<IpNet> = (0..MAX_PREFIXES as u128)
            .map(|i| {
                IpNet::V6(Ipv6Net::new((0x2001_0db8_u128 << 96 | i << 64).into(), 127).unwrap())
            })
            .collect();
        let code = program(&prefixes, true).unwrap();
        assert!(code.len() <= 4096, "{} instructions", code.len());
        let arrived = deliver(&prefixes, &[(ip("::1"), query(0, &[]))]);
        assert_eq!(
            arrived,
            [true],
            "the kernel accepted the program and ran it"
        );
    }

    #[test]
    fn no_prefix_of_a_family_means_no_program() {
        assert!(program(&[net("127.0.8.0/24")], true).is_none());
        assert!(program(&[], false).is_none());
        assert!(program(&[net("127.0.8.0/24")], false).is_some());
    }

    #[test]
    fn requests_list_and_expire_prefixes_and_off_empties_the_list() {
        let list = Arc::new(KernelDrop::new(KernelDropConfig {
            after: 5,
            seconds: 1,
            max_prefixes: 2,
        }));
        for p in ["10.0.0.0/24", "10.0.1.0/24", "10.0.2.0/24", "10.0.0.0/24"] {
            list.request(net(p), 5);
        }
        let deadline = Instant::now() + Duration::from_secs(10);
        while list.stats().added + list.stats().refused < 3 && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(10));
        }
        assert_eq!(list.stats().added, 2);
        assert_eq!(
            list.stats().refused,
            1,
            "the third prefix found the list full"
        );
        assert_eq!(list.stats().listed, 2);
        while list.stats().listed > 0 && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(20));
        }
        assert_eq!(
            list.stats().listed,
            0,
            "every prefix expired after its second"
        );
        list.request(net("10.0.3.0/24"), 5);
        while list.stats().added < 3 && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(10));
        }
        assert_eq!(list.listed().len(), 1);
        list.configure(KernelDropConfig::default());
        assert!(list.listed().is_empty(), "off empties the list");
        assert_eq!(list.stats().listed, 0);
        list.request(net("10.0.4.0/24"), 5);
        assert_eq!(list.stats().added, 3, "no request is taken while off");
        list.stop();
    }

    #[test]
    fn prefix_net_is_the_accounts_grouping() {
        assert_eq!(prefix_net(ip("192.0.2.77"), 24, 56), net("192.0.2.0/24"));
        assert_eq!(
            prefix_net(ip("2001:db8:1:2ff::9"), 24, 56),
            net("2001:db8:1:200::/56")
        );
    }
}
