//! Upstream UDP sockets kept between queries, each query still on a fresh random source port
//! (`docs/design/0045-cold-answer-cpu.md`).
//!
//! Creating and closing a socket per upstream query (`socket`, `close`, tokio's `epoll_ctl`
//! add and delete) was about a fifth of a cold answer's CPU (design 0037 §2). What the fresh
//! socket buys is a **fresh random source port per query that is closed again once the
//! answer is in**, and Linux gives the same without a new socket:
//!
//! - `connect()` on a UDP socket without a port binds it to a random ephemeral port (the
//!   kernel's autobind: `udp_lib_get_port(sk, 0)`, a random start in
//!   `ip_local_port_range`), exactly as for a new socket;
//! - `connect(AF_UNSPEC)` ("disconnect") on a socket whose port was chosen that way unhashes
//!   it and sets its port back to 0 (`__udp_disconnect`): from then on no datagram reaches it
//!   (a datagram to the old port gets ICMP port unreachable, as after `close`), and the next
//!   `connect()` draws a new random port.
//!
//! So a socket whose exchange ended cleanly is disconnected, its receive queue emptied (a late
//! duplicate or a forgery that arrived before the disconnect), and kept, still registered with
//! the tokio runtime; the next query to a server of the same address family takes it and
//! `connect`s it to its server, which draws its port. The port distribution, the number of
//! ports open at a time (one per query out) and the matching of answers (source address and
//! port, ID, question, cookie) are unchanged.
//!
//! A socket is kept only after a clean exchange (an answer that matched); one that timed out
//! or saw an error is closed. Sockets are kept per thread and per tokio runtime (the
//! registration belongs to the runtime's I/O driver), at most [`KEPT`] per address family.
//! Whether the kernel releases the port on disconnect is checked once per process
//! ([`disconnect_releases_port`]); where it does not, every query gets a new socket, as before.

use std::cell::RefCell;
use std::io;
use std::mem::MaybeUninit;
use std::net::{Ipv4Addr, SocketAddr, SocketAddrV4};
use std::sync::OnceLock;

use socket2::{Domain, Protocol, SockRef, Socket, Type};
use tokio::io::Interest;
use tokio::net::UdpSocket;
use tokio::runtime::{Handle, Id};

/// Sockets kept per thread, runtime and address family: enough for the queries a busy worker
/// has out at once to be answered and replaced without new sockets, small next to the
/// process's file descriptors.
pub(crate) const KEPT: usize = 64;

/// Datagrams read (and thrown away) at most when emptying a socket's receive queue; a socket
/// that still holds more is closed instead.
const MAX_DRAINED: usize = 16;

#[derive(Default)]
struct Kept {
    runtime: Option<Id>,
    v4: Vec<UdpSocket>,
    v6: Vec<UdpSocket>,
}

thread_local! {
    static KEPT_SOCKETS: RefCell<Kept> = RefCell::new(Kept::default());
}

/// A UDP socket connected to `server` on a fresh random ephemeral port, registered with the
/// current tokio runtime, with `query` already sent when the socket took it at once (`false`:
/// the caller sends it through tokio). A kept socket is used when there is one.
pub(crate) fn connected_sent(server: SocketAddr, query: &[u8]) -> io::Result<(UdpSocket, bool)> {
    if let Some(socket) = take(server.is_ipv6()) {
        let raw = SockRef::from(&socket);
        // A kept socket has no port: connect draws one.
        if raw.connect(&server.into()).is_ok() {
            let sent = sent(raw.send(query))?;
            return Ok((socket, sent));
        }
    }
    fresh(server, query)
}

/// A new socket connected to `server`, the query sent before it is registered with tokio (so
/// the send does not wait for the reactor to report the socket writable; the answer cannot
/// be missed, since registering reports the readiness the socket already has).
fn fresh(server: SocketAddr, query: &[u8]) -> io::Result<(UdpSocket, bool)> {
    let domain = match server {
        SocketAddr::V4(_) => Domain::IPV4,
        SocketAddr::V6(_) => Domain::IPV6,
    };
    let socket = Socket::new_raw(
        domain,
        Type::DGRAM.nonblocking().cloexec(),
        Some(Protocol::UDP),
    )?;
    socket.connect(&server.into())?;
    let sent = sent(socket.send(query))?;
    let socket = UdpSocket::from_std(std::net::UdpSocket::from(socket))?;
    Ok((socket, sent))
}

/// Whether a send went out (`false`: the socket would block).
fn sent(result: io::Result<usize>) -> io::Result<bool> {
    match result {
        Ok(_) => Ok(true),
        Err(e) if e.kind() == io::ErrorKind::WouldBlock => Ok(false),
        Err(e) => Err(e),
    }
}

/// The runtime the caller runs on, if any.
fn current_runtime() -> Option<Id> {
    Handle::try_current().ok().map(|handle| handle.id())
}

fn take(v6: bool) -> Option<UdpSocket> {
    if !disconnect_releases_port() {
        return None;
    }
    let runtime = current_runtime()?;
    KEPT_SOCKETS
        .try_with(|kept| {
            let mut kept = kept.try_borrow_mut().ok()?;
            if kept.runtime != Some(runtime) {
                return None;
            }
            if v6 {
                kept.v6.pop()
            } else {
                kept.v4.pop()
            }
        })
        .ok()
        .flatten()
}

/// Gives back the socket of an exchange that ended cleanly: it is disconnected (its port is
/// released and nothing reaches it any more), its receive queue is emptied, and it is kept
/// for the next query of this thread and runtime; or closed when that fails or enough are
/// kept.
pub(crate) fn give_back(socket: UdpSocket, v6: bool) {
    if !disconnect_releases_port() {
        return;
    }
    let Some(runtime) = current_runtime() else {
        return;
    };
    if disconnect_and_drain(&socket).is_err() {
        return;
    }
    let _ = KEPT_SOCKETS.try_with(|kept| {
        let Ok(mut kept) = kept.try_borrow_mut() else {
            return;
        };
        if kept.runtime != Some(runtime) {
            // Sockets of another (earlier) runtime on this thread: their registration is
            // that runtime's.
            kept.v4.clear();
            kept.v6.clear();
            kept.runtime = Some(runtime);
        }
        let list = if v6 { &mut kept.v6 } else { &mut kept.v4 };
        if list.len() < KEPT {
            list.push(socket);
        }
    });
}

/// Disconnects `socket` (port released, no more datagrams delivered), then reads what is
/// left in its receive queue, and a pending socket error, until the kernel says it is
/// empty; the reads go through tokio so that its readiness for the socket is cleared too.
fn disconnect_and_drain(socket: &UdpSocket) -> io::Result<()> {
    rustix::net::connect_unspec(socket)?;
    let mut scratch = [MaybeUninit::<u8>::uninit(); 1];
    for _ in 0..MAX_DRAINED {
        let mut asked = false;
        let read = socket.try_io(Interest::READABLE, || {
            asked = true;
            SockRef::from(socket).recv(&mut scratch)
        });
        match read {
            // The kernel said so: empty, and tokio's readiness is cleared.
            Err(e) if e.kind() == io::ErrorKind::WouldBlock && asked => return Ok(()),
            // tokio knew of no readiness and did not ask: ask the kernel directly.
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                match SockRef::from(socket).recv(&mut scratch) {
                    Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Ok(()),
                    _ => continue,
                }
            }
            // A datagram thrown away, or a pending error (an ICMP report) read and cleared.
            Ok(_) | Err(_) => continue,
        }
    }
    Err(io::Error::other("receive queue not empty"))
}

/// Whether this kernel gives a connected UDP socket's automatically chosen port back on
/// disconnect (Linux does), checked once: a socket connected to a discard address (no
/// datagram is sent) must have a port, and none after `connect(AF_UNSPEC)`.
pub(crate) fn disconnect_releases_port() -> bool {
    static RELEASES: OnceLock<bool> = OnceLock::new();
    *RELEASES.get_or_init(|| probe_disconnect().unwrap_or(false))
}

fn probe_disconnect() -> io::Result<bool> {
    let socket = Socket::new(Domain::IPV4, Type::DGRAM, Some(Protocol::UDP))?;
    socket.connect(&SocketAddr::V4(SocketAddrV4::new(Ipv4Addr::LOCALHOST, 9)).into())?;
    let bound = local_port(&socket)?;
    rustix::net::connect_unspec(&socket)?;
    Ok(bound != 0 && local_port(&socket)? == 0)
}

fn local_port(socket: &Socket) -> io::Result<u16> {
    Ok(socket
        .local_addr()?
        .as_socket()
        .map_or(0, |address| address.port()))
}

/// Sockets kept by this thread for the current runtime: (IPv4, IPv6).
#[cfg(test)]
pub(crate) fn kept_here() -> (usize, usize) {
    let runtime = current_runtime();
    KEPT_SOCKETS.with(|kept| {
        let kept = kept.borrow();
        if kept.runtime.is_some() && kept.runtime == runtime {
            (kept.v4.len(), kept.v6.len())
        } else {
            (0, 0)
        }
    })
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used, reason = "test code")]
mod tests {
    use super::*;
    use std::collections::HashSet;
    use std::os::fd::AsRawFd;

    /// A loopback "server": a plain UDP socket on an ephemeral port.
    fn server() -> std::net::UdpSocket {
        let socket = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
        // A guard against a hung test, not a timing assertion.
        socket
            .set_read_timeout(Some(std::time::Duration::from_secs(30)))
            .unwrap();
        socket
    }

    fn local_port_of(socket: &UdpSocket) -> u16 {
        socket.local_addr().unwrap().port()
    }

    #[test]
    fn this_kernel_releases_the_port_on_disconnect() {
        assert!(disconnect_releases_port());
    }

    #[tokio::test]
    async fn a_kept_socket_is_reused_with_a_new_random_port_each_time() {
        let peer = server();
        let address = peer.local_addr().unwrap();
        let mut ports = HashSet::new();
        let mut fds = HashSet::new();
        for i in 0..8u8 {
            let (socket, sent) = connected_sent(address, &[i]).unwrap();
            assert!(sent);
            let port = local_port_of(&socket);
            assert_ne!(port, 0);
            // The query came from that port.
            let mut buf = [0u8; 4];
            let (len, from) = peer.recv_from(&mut buf).unwrap();
            assert_eq!((len, buf[0], from.port()), (1, i, port));
            ports.insert(port);
            fds.insert(socket.as_raw_fd());
            give_back(socket, false);
            assert_eq!(kept_here(), (1, 0), "the socket is kept");
        }
        assert_eq!(fds.len(), 1, "one socket served every query");
        // Eight draws from ~28k ports: all equal only if the port were not redrawn.
        assert!(ports.len() > 1, "ports were not redrawn: {ports:?}");
    }

    #[tokio::test]
    async fn a_kept_socket_has_no_port_and_hears_nothing_until_it_is_used_again() {
        let peer = server();
        let address = peer.local_addr().unwrap();
        let (socket, _) = connected_sent(address, b"q").unwrap();
        let old_port = local_port_of(&socket);
        let mut buf = [0u8; 8];
        let (_, from) = peer.recv_from(&mut buf).unwrap();
        // The answer, then a late duplicate before the socket is given back.
        peer.send_to(b"answer", from).unwrap();
        peer.send_to(b"late", from).unwrap();
        let mut got = [0u8; 16];
        let len = socket.recv(&mut got).await.unwrap();
        assert_eq!(&got[..len], b"answer");
        // The duplicate is queued before the give-back.
        socket.peek_sender().await.unwrap();
        give_back(socket, false);
        // Port released: a datagram to the old port reaches nobody.
        peer.send_to(b"stray", ("127.0.0.1", old_port)).unwrap();
        let (socket, _) = connected_sent(address, b"q2").unwrap();
        assert_eq!(kept_here(), (0, 0), "taken from the kept ones");
        let (_, from) = peer.recv_from(&mut buf).unwrap();
        assert_eq!(from.port(), local_port_of(&socket));
        // Neither the duplicate nor the stray is there for the next exchange.
        assert_eq!(
            socket.try_recv(&mut got).unwrap_err().kind(),
            io::ErrorKind::WouldBlock
        );
        peer.send_to(b"second answer", from).unwrap();
        let len = socket.recv(&mut got).await.unwrap();
        assert_eq!(&got[..len], b"second answer");
    }

    #[tokio::test]
    async fn at_most_kept_sockets_are_kept_per_family() {
        let peer = server();
        let address = peer.local_addr().unwrap();
        let sockets: Vec<_> = (0..KEPT + 3)
            .map(|_| connected_sent(address, b"q").unwrap().0)
            .collect();
        for socket in sockets {
            give_back(socket, false);
        }
        assert_eq!(kept_here(), (KEPT, 0));
    }

    #[test]
    fn sockets_of_one_runtime_are_not_used_by_another() {
        let peer = server();
        let address = peer.local_addr().unwrap();
        let first = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        let mut buf = [0u8; 4];
        first.block_on(async {
            let (socket, _) = connected_sent(address, b"q").unwrap();
            // Read, so that the peer's next query is the second runtime's.
            peer.recv_from(&mut buf).unwrap();
            give_back(socket, false);
            assert_eq!(kept_here(), (1, 0));
        });
        drop(first);
        let second = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        second.block_on(async {
            assert_eq!(kept_here(), (0, 0));
            // A new socket, registered with this runtime, works and is kept.
            let (socket, sent) = connected_sent(address, b"q").unwrap();
            assert!(sent);
            let (_, from) = peer.recv_from(&mut buf).unwrap();
            assert_eq!(from.port(), local_port_of(&socket));
            peer.send_to(b"a", from).unwrap();
            let len = socket.recv(&mut buf).await.unwrap();
            assert_eq!(len, 1);
            give_back(socket, false);
            assert_eq!(kept_here(), (1, 0));
        });
    }
}
