//! Batched UDP I/O (`recvmmsg`/`sendmmsg`) and readiness polling: all of the crate's unsafe
//! code, kept small so it can be read in one sitting.
//!
//! A [`Batch`] owns pre-allocated buffers for `slots` datagrams in and out, and (on Linux)
//! the kernel structures (`mmsghdr`, `iovec`) that point into them, built once: the buffers
//! are never resized, so those pointers live exactly as long as the `Batch`.
//!
//! # Limitations
//! - On systems without `recvmmsg`/`sendmmsg` (anything but Linux and Android) the batch is
//!   filled with one `recvfrom` per datagram and sent with one `sendto` per response.
#![allow(
    unsafe_code,
    reason = "recvmmsg/sendmmsg/poll have no safe wrapper in socket2 or std, and tokio's AsyncFd \
              registration is an unsafe fn (the caller vouches for the descriptor's life)"
)]

use std::io;
use std::mem;
use std::net::{Ipv4Addr, Ipv6Addr, SocketAddr, SocketAddrV4, SocketAddrV6};
use std::os::fd::RawFd;
use std::sync::Arc;

use socket2::Socket;
use tokio::io::unix::AsyncFd;
use tokio::io::Interest;

/// Pre-allocated buffers for one batch of datagrams.
///
/// On Linux the kernel structures are built once, in [`Batch::new`]: every receive header
/// points at its own slot of `recv_buf` and `addrs` for the life of the batch, so a receive
/// only resets the two fields the kernel wrote in the previous call (`msg_namelen`,
/// `msg_flags`) for the entries it filled. Send headers are separate (receiving never has to
/// undo a send), and only the entries of the datagrams to send are written before a send.
/// The pointers stay valid because the vectors they point into are allocated once with their
/// final length and never resized (they move with the `Batch` as heap buffers, not inline).
pub(crate) struct Batch {
    slots: usize,
    recv_size: usize,
    send_size: usize,
    recv_buf: Vec<u8>,
    send_buf: Vec<u8>,
    recv_len: Vec<usize>,
    send_len: Vec<usize>,
    addrs: Vec<libc::sockaddr_storage>,
    addr_lens: Vec<libc::socklen_t>,
    #[cfg(any(target_os = "linux", target_os = "android"))]
    recv_iovecs: Vec<libc::iovec>,
    #[cfg(any(target_os = "linux", target_os = "android"))]
    recv_headers: Vec<libc::mmsghdr>,
    #[cfg(any(target_os = "linux", target_os = "android"))]
    send_iovecs: Vec<libc::iovec>,
    #[cfg(any(target_os = "linux", target_os = "android"))]
    send_headers: Vec<libc::mmsghdr>,
    received: usize,
}

impl std::fmt::Debug for Batch {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Batch")
            .field("slots", &self.slots)
            .field("recv_size", &self.recv_size)
            .field("send_size", &self.send_size)
            .field("received", &self.received)
            .finish()
    }
}

fn zeroed_storage() -> libc::sockaddr_storage {
    // SAFETY: sockaddr_storage is plain old data (integers and byte arrays); all-zero is a
    // valid value (family AF_UNSPEC).
    unsafe { mem::zeroed() }
}

#[cfg(any(target_os = "linux", target_os = "android"))]
fn zeroed_header() -> libc::mmsghdr {
    // SAFETY: mmsghdr is plain old data (pointers, integers); all-zero means null pointers
    // and zero lengths, which `Batch::new` overwrites before any call uses them.
    unsafe { mem::zeroed() }
}

/// `sockaddr_storage`'s size, what the kernel may write into each name buffer.
const STORAGE_LEN: libc::socklen_t = mem::size_of::<libc::sockaddr_storage>() as libc::socklen_t;

impl Batch {
    /// Buffers for `slots` datagrams of up to `recv_size` bytes in and `send_size` out.
    pub(crate) fn new(slots: usize, recv_size: usize, send_size: usize) -> Self {
        let slots = slots.max(1);
        #[allow(unused_mut, reason = "only the Linux build wires the headers up")]
        let mut batch = Self {
            slots,
            recv_size,
            send_size,
            recv_buf: vec![0; slots * recv_size],
            send_buf: vec![0; slots * send_size],
            recv_len: vec![0; slots],
            send_len: vec![0; slots],
            addrs: (0..slots).map(|_| zeroed_storage()).collect(),
            addr_lens: vec![0; slots],
            #[cfg(any(target_os = "linux", target_os = "android"))]
            recv_iovecs: Vec::with_capacity(slots),
            #[cfg(any(target_os = "linux", target_os = "android"))]
            recv_headers: (0..slots).map(|_| zeroed_header()).collect(),
            #[cfg(any(target_os = "linux", target_os = "android"))]
            send_iovecs: (0..slots)
                .map(|_| libc::iovec {
                    iov_base: std::ptr::null_mut(),
                    iov_len: 0,
                })
                .collect(),
            #[cfg(any(target_os = "linux", target_os = "android"))]
            send_headers: (0..slots).map(|_| zeroed_header()).collect(),
            received: 0,
        };
        #[cfg(any(target_os = "linux", target_os = "android"))]
        batch.wire_headers();
        batch
    }

    /// Points every receive header at its slot and every send header at its iovec, once.
    #[cfg(any(target_os = "linux", target_os = "android"))]
    fn wire_headers(&mut self) {
        let base = self.recv_buf.as_mut_ptr();
        for i in 0..self.slots {
            self.recv_iovecs.push(libc::iovec {
                // SAFETY: i * recv_size < slots * recv_size = recv_buf.len(): in bounds (or
                // recv_size is 0 and the offset is 0).
                iov_base: unsafe { base.add(i * self.recv_size) }.cast(),
                iov_len: self.recv_size,
            });
        }
        // `recv_iovecs` now has its final length: from here on it is never resized, so the
        // pointers below stay valid as long as `self` lives.
        for i in 0..self.slots {
            let header = &mut self.recv_headers[i].msg_hdr;
            header.msg_name = (&mut self.addrs[i] as *mut libc::sockaddr_storage).cast();
            header.msg_namelen = STORAGE_LEN;
            header.msg_iov = &mut self.recv_iovecs[i];
            header.msg_iovlen = 1;
            let header = &mut self.send_headers[i].msg_hdr;
            header.msg_iov = &mut self.send_iovecs[i];
            header.msg_iovlen = 1;
        }
    }

    /// The datagram in slot `i` and the output buffer of the same slot.
    pub(crate) fn slot(&mut self, i: usize) -> (&[u8], &mut [u8]) {
        let start = i * self.recv_size;
        let packet = &self.recv_buf[start..start + self.recv_len[i].min(self.recv_size)];
        let out_start = i * self.send_size;
        let out = &mut self.send_buf[out_start..out_start + self.send_size];
        (packet, out)
    }

    /// The sender of the datagram in slot `i`.
    pub(crate) fn peer(&self, i: usize) -> Option<SocketAddr> {
        storage_to_addr(&self.addrs[i], self.addr_lens[i])
    }

    /// Marks slot `i`'s output buffer as a response of `len` bytes to send back.
    pub(crate) fn set_response(&mut self, i: usize, len: usize) {
        self.send_len[i] = len.min(self.send_size);
    }

    /// Receives up to `slots` datagrams; returns how many (0 when none are waiting, or when
    /// the socket's receive timeout passed). Truncated datagrams (larger than `recv_size`)
    /// get length 0.
    ///
    /// With `wait` false the call never blocks (`MSG_DONTWAIT`). With `wait` true it blocks
    /// until the first datagram arrives (or the socket's `SO_RCVTIMEO` passes, on a blocking
    /// socket) and then takes whatever else is already queued without waiting for more
    /// (`MSG_WAITFORONE`): one system call per batch, none to wait for readiness.
    #[cfg(any(target_os = "linux", target_os = "android"))]
    pub(crate) fn recv(&mut self, fd: RawFd, wait: bool) -> io::Result<usize> {
        // Undo what the kernel wrote into the entries of the previous receive; the others
        // are as `wire_headers` left them.
        for i in 0..self.received {
            self.send_len[i] = 0;
            let header = &mut self.recv_headers[i].msg_hdr;
            header.msg_namelen = STORAGE_LEN;
            header.msg_flags = 0;
        }
        self.received = 0;
        let flags = if wait {
            libc::MSG_WAITFORONE
        } else {
            libc::MSG_DONTWAIT
        };
        // SAFETY: `recv_headers` holds `slots` initialised mmsghdr entries whose name and
        // iovec pointers point into `addrs`, `recv_iovecs` and `recv_buf` (set up once by
        // `wire_headers`), all owned by `self`, never resized, alive for the call (we hold
        // `&mut self`), with the lengths given: `msg_namelen` = size of each `addrs` entry,
        // `iov_len` = `recv_size`, the size of each slot.
        let n = unsafe {
            libc::recvmmsg(
                fd,
                self.recv_headers.as_mut_ptr(),
                self.slots as _,
                flags as _,
                std::ptr::null_mut(),
            )
        };
        if n < 0 {
            let error = io::Error::last_os_error();
            return match error.kind() {
                io::ErrorKind::WouldBlock | io::ErrorKind::Interrupted => Ok(0),
                _ => Err(error),
            };
        }
        let n = (n as usize).min(self.slots);
        for i in 0..n {
            let header = &self.recv_headers[i];
            self.addr_lens[i] = header.msg_hdr.msg_namelen;
            self.recv_len[i] = if header.msg_hdr.msg_flags & libc::MSG_TRUNC != 0 {
                0
            } else {
                header.msg_len as usize
            };
        }
        self.received = n;
        Ok(n)
    }

    /// Sends every response set with [`Batch::set_response`] back to its sender. Datagrams
    /// the kernel will not take now (full buffer) are dropped, as UDP allows.
    #[cfg(any(target_os = "linux", target_os = "android"))]
    pub(crate) fn send(&mut self, fd: RawFd) {
        let base = self.send_buf.as_mut_ptr();
        let mut count = 0;
        for i in 0..self.received {
            if self.send_len[i] == 0 {
                continue;
            }
            // Header `count` points at iovec `count` since `wire_headers`; fill both in.
            self.send_iovecs[count] = libc::iovec {
                // SAFETY: i * send_size < slots * send_size = send_buf.len(): in bounds.
                iov_base: unsafe { base.add(i * self.send_size) }.cast(),
                iov_len: self.send_len[i],
            };
            let header = &mut self.send_headers[count].msg_hdr;
            header.msg_name = (&mut self.addrs[i] as *mut libc::sockaddr_storage).cast();
            header.msg_namelen = self.addr_lens[i];
            count += 1;
        }
        // SAFETY: entries 0..count of `send_headers` were filled in above and point into
        // `addrs`, `send_iovecs` and `send_buf`, owned by `self`, never resized and untouched
        // during the call.
        unsafe { send_all(fd, &mut self.send_headers[..count]) };
    }

    /// Portable fallback: one `recvfrom` per datagram.
    #[cfg(not(any(target_os = "linux", target_os = "android")))]
    pub(crate) fn recv(&mut self, fd: RawFd, wait: bool) -> io::Result<usize> {
        self.received = 0;
        for i in 0..self.slots {
            self.send_len[i] = 0;
            // As MSG_WAITFORONE: only the first receive may wait.
            let flags = if wait && i == 0 {
                0
            } else {
                libc::MSG_DONTWAIT
            };
            let mut addr_len = mem::size_of::<libc::sockaddr_storage>() as libc::socklen_t;
            // SAFETY: the buffer slice is in bounds of recv_buf and `addrs[i]` is a valid,
            // writable sockaddr_storage whose size is passed in `addr_len`.
            let n = unsafe {
                libc::recvfrom(
                    fd,
                    self.recv_buf.as_mut_ptr().add(i * self.recv_size).cast(),
                    self.recv_size,
                    flags,
                    (&mut self.addrs[i] as *mut libc::sockaddr_storage).cast(),
                    &mut addr_len,
                )
            };
            if n < 0 {
                let error = io::Error::last_os_error();
                if self.received > 0 {
                    break;
                }
                return match error.kind() {
                    io::ErrorKind::WouldBlock | io::ErrorKind::Interrupted => Ok(0),
                    _ => Err(error),
                };
            }
            self.addr_lens[i] = addr_len;
            self.recv_len[i] = n as usize;
            self.received += 1;
        }
        Ok(self.received)
    }

    /// Portable fallback: one `sendto` per response.
    #[cfg(not(any(target_os = "linux", target_os = "android")))]
    pub(crate) fn send(&mut self, fd: RawFd) {
        for i in 0..self.received {
            if self.send_len[i] == 0 {
                continue;
            }
            // SAFETY: the buffer slice is in bounds of send_buf; `addrs[i]` holds the
            // address the kernel wrote on receive, `addr_lens[i]` its length.
            unsafe {
                libc::sendto(
                    fd,
                    self.send_buf.as_ptr().add(i * self.send_size).cast(),
                    self.send_len[i],
                    libc::MSG_DONTWAIT,
                    (&self.addrs[i] as *const libc::sockaddr_storage).cast(),
                    self.addr_lens[i],
                )
            };
        }
    }
}

/// Sends the datagrams `headers` describe with as few `sendmmsg` calls as the kernel allows,
/// never blocking (`MSG_DONTWAIT`). Datagrams the kernel will not take now (full buffer) are
/// dropped, as UDP allows; one that fails (e.g. unreachable destination) is skipped.
///
/// # Safety
/// Every header's name and iovec pointers must point at live, initialised memory of the
/// lengths the header gives, untouched during the call.
#[cfg(any(target_os = "linux", target_os = "android"))]
unsafe fn send_all(fd: RawFd, headers: &mut [libc::mmsghdr]) {
    let count = headers.len();
    let mut sent = 0;
    while sent < count {
        // SAFETY: entries sent..count are in bounds; the caller vouches for what they point at.
        let n = unsafe {
            libc::sendmmsg(
                fd,
                headers.as_mut_ptr().add(sent),
                (count - sent) as _,
                libc::MSG_DONTWAIT as _,
            )
        };
        if n > 0 {
            sent += n as usize;
            continue;
        }
        match io::Error::last_os_error().kind() {
            io::ErrorKind::Interrupted => {}
            io::ErrorKind::WouldBlock => break,
            // This datagram failed (e.g. unreachable destination): skip it.
            _ => sent += 1,
        }
    }
}

/// Responses queued one at a time and sent together: the UDP worker's answers to its misses,
/// each written by the task that resolved it straight into its slot here (no buffer of its
/// own), then sent with one `sendmmsg` for all the misses that completed in the same turn of
/// the worker's runtime (`crate::udp::Outbox`, design 0047).
///
/// As in [`Batch`], the kernel structures are wired once in [`SendBatch::new`]: header `i`
/// points at iovec `i` and name `i`, iovec `i` at slot `i` of `buf`; queueing a response only
/// writes its length and its destination. The vectors are allocated once with their final
/// length and never resized.
pub(crate) struct SendBatch {
    slots: usize,
    size: usize,
    buf: Vec<u8>,
    lens: Vec<usize>,
    addrs: Vec<libc::sockaddr_storage>,
    addr_lens: Vec<libc::socklen_t>,
    #[cfg(any(target_os = "linux", target_os = "android"))]
    iovecs: Vec<libc::iovec>,
    #[cfg(any(target_os = "linux", target_os = "android"))]
    headers: Vec<libc::mmsghdr>,
    queued: usize,
}

// SAFETY: the raw pointers in `iovecs` and `headers` point only into the batch's own heap
// buffers (`buf`, `addrs`, `iovecs`), which move with it and are freed with it; nothing else
// holds them, so handing the whole batch to another thread (behind the outbox's mutex) is as
// safe as handing over the vectors themselves.
unsafe impl Send for SendBatch {}

impl std::fmt::Debug for SendBatch {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SendBatch")
            .field("slots", &self.slots)
            .field("size", &self.size)
            .field("queued", &self.queued)
            .finish()
    }
}

impl SendBatch {
    /// Room for `slots` responses of up to `size` bytes each.
    pub(crate) fn new(slots: usize, size: usize) -> Self {
        let slots = slots.max(1);
        #[allow(unused_mut, reason = "only the Linux build wires the headers up")]
        let mut batch = Self {
            slots,
            size,
            buf: vec![0; slots * size],
            lens: vec![0; slots],
            addrs: (0..slots).map(|_| zeroed_storage()).collect(),
            addr_lens: vec![0; slots],
            #[cfg(any(target_os = "linux", target_os = "android"))]
            iovecs: Vec::with_capacity(slots),
            #[cfg(any(target_os = "linux", target_os = "android"))]
            headers: (0..slots).map(|_| zeroed_header()).collect(),
            queued: 0,
        };
        #[cfg(any(target_os = "linux", target_os = "android"))]
        {
            let base = batch.buf.as_mut_ptr();
            for i in 0..slots {
                batch.iovecs.push(libc::iovec {
                    // SAFETY: i * size < slots * size = buf.len(): in bounds (or size is 0
                    // and the offset is 0).
                    iov_base: unsafe { base.add(i * size) }.cast(),
                    iov_len: 0,
                });
            }
            // `iovecs` has its final length: never resized from here on.
            for i in 0..slots {
                let header = &mut batch.headers[i].msg_hdr;
                header.msg_name = (&mut batch.addrs[i] as *mut libc::sockaddr_storage).cast();
                header.msg_iov = &mut batch.iovecs[i];
                header.msg_iovlen = 1;
            }
        }
        batch
    }

    /// Whether nothing is queued.
    pub(crate) fn is_empty(&self) -> bool {
        self.queued == 0
    }

    /// Whether every slot is taken (send first).
    pub(crate) fn is_full(&self) -> bool {
        self.queued == self.slots
    }

    /// Queues a response to `to`: `write` writes it into the next free slot (`size` bytes)
    /// and returns its length, or `None` for nothing to send. False when the batch is full
    /// (then `write` is not called).
    pub(crate) fn push(
        &mut self,
        to: SocketAddr,
        write: impl FnOnce(&mut [u8]) -> Option<usize>,
    ) -> bool {
        if self.is_full() {
            return false;
        }
        let i = self.queued;
        let start = i * self.size;
        let Some(len) = write(&mut self.buf[start..start + self.size]) else {
            return true;
        };
        let len = len.min(self.size);
        if len == 0 {
            return true;
        }
        self.lens[i] = len;
        self.addr_lens[i] = addr_to_storage(to, &mut self.addrs[i]);
        #[cfg(any(target_os = "linux", target_os = "android"))]
        {
            self.iovecs[i].iov_len = len;
            self.headers[i].msg_hdr.msg_namelen = self.addr_lens[i];
        }
        self.queued += 1;
        true
    }

    /// The response queued in slot `i` and its destination (tests).
    #[cfg(test)]
    pub(crate) fn queued(&self, i: usize) -> (&[u8], Option<SocketAddr>) {
        let start = i * self.size;
        (
            &self.buf[start..start + self.lens[i]],
            storage_to_addr(&self.addrs[i], self.addr_lens[i]),
        )
    }

    /// Sends everything queued (one `sendmmsg` unless the kernel takes fewer) and empties
    /// the batch.
    #[cfg(any(target_os = "linux", target_os = "android"))]
    pub(crate) fn send(&mut self, fd: RawFd) {
        let count = self.queued;
        self.queued = 0;
        // SAFETY: entries 0..count were queued by `push`: their iovecs point at slots of
        // `buf` with the response's length, their names at `addrs` entries the address was
        // written into, with its length; all owned by `self` and untouched during the call.
        unsafe { send_all(fd, &mut self.headers[..count]) };
    }

    /// Portable fallback: one `sendto` per response.
    #[cfg(not(any(target_os = "linux", target_os = "android")))]
    pub(crate) fn send(&mut self, fd: RawFd) {
        for i in 0..self.queued {
            // SAFETY: the buffer slice is in bounds of `buf`; `addrs[i]` holds the address
            // `push` wrote, `addr_lens[i]` its length.
            unsafe {
                libc::sendto(
                    fd,
                    self.buf.as_ptr().add(i * self.size).cast(),
                    self.lens[i],
                    libc::MSG_DONTWAIT,
                    (&self.addrs[i] as *const libc::sockaddr_storage).cast(),
                    self.addr_lens[i],
                )
            };
        }
        self.queued = 0;
    }
}

/// Writes `addr` into `storage` as the kernel's `sockaddr_in`/`sockaddr_in6` (socket2's
/// conversion); returns its length (the inverse of [`storage_to_addr`]).
fn addr_to_storage(addr: SocketAddr, storage: &mut libc::sockaddr_storage) -> libc::socklen_t {
    let address = socket2::SockAddr::from(addr);
    *storage = zeroed_storage();
    // SAFETY: socket2 holds a sockaddr_in or sockaddr_in6 of `len()` bytes, no more than a
    // sockaddr_storage, which we hold exclusively; both are plain old data.
    unsafe {
        std::ptr::copy_nonoverlapping(
            address.as_ptr().cast::<u8>(),
            (storage as *mut libc::sockaddr_storage).cast::<u8>(),
            address.len() as usize,
        );
    }
    address.len()
}

/// Registers `socket` with the current tokio runtime's I/O driver for read readiness (the
/// worker's wait when its tasks are busy). Must be called inside a runtime.
pub(crate) fn register_readable(socket: Arc<Socket>) -> io::Result<AsyncFd<Arc<Socket>>> {
    // SAFETY: `Socket` owns its descriptor and closes it only when dropped; the `AsyncFd`
    // holds an `Arc` to it, so the descriptor stays open, and refers to the same socket, for
    // the `AsyncFd`'s whole life, and `Socket::as_raw_fd` always returns that descriptor.
    unsafe { AsyncFd::register_with_interest(socket, Interest::READABLE) }.map_err(io::Error::from)
}

/// Sets "don't fragment" on a UDP listening socket, ignoring path-MTU information (Linux
/// `IP_PMTUDISC_PROBE`; `IPV6_PMTUDISC_PROBE` + `IPV6_DONTFRAG`), as BIND does since DNS Flag
/// Day 2020 and RFC 9715 describes: a response never leaves as IP fragments, and forged ICMP
/// "packet too big" messages cannot lower the size we send. A response larger than the
/// interface MTU fails to send instead of being fragmented (keep `max_udp_payload` below the
/// MTU; the default 1232 is). Side effect on IPv4: with DF set the kernel writes IP ID 0
/// instead of hashing a per-destination ID for every datagram.
pub(crate) fn set_dont_fragment(socket: &Socket, ipv6: bool) -> io::Result<()> {
    #[cfg(any(target_os = "linux", target_os = "android"))]
    {
        let set = |level, name, value: libc::c_int| set_option(socket, level, name, &value);
        if ipv6 {
            set(
                libc::IPPROTO_IPV6,
                libc::IPV6_MTU_DISCOVER,
                libc::IPV6_PMTUDISC_PROBE,
            )?;
            set(libc::IPPROTO_IPV6, libc::IPV6_DONTFRAG, 1)
        } else {
            set(
                libc::IPPROTO_IP,
                libc::IP_MTU_DISCOVER,
                libc::IP_PMTUDISC_PROBE,
            )
        }
    }
    #[cfg(not(any(target_os = "linux", target_os = "android")))]
    {
        let _ = (socket, ipv6);
        Ok(())
    }
}

/// `setsockopt(level, name)` with `value`'s bytes: an integer or a plain C struct the option
/// expects (the kernel copies what it keeps during the call).
#[cfg(any(target_os = "linux", target_os = "android"))]
fn set_option<T>(
    socket: &Socket,
    level: libc::c_int,
    name: libc::c_int,
    value: &T,
) -> io::Result<()> {
    use std::os::fd::AsRawFd;
    // SAFETY: `value` is a live `T` for the duration of the call and its exact size is passed;
    // the kernel only reads it; the fd is owned by `socket`.
    let rc = unsafe {
        libc::setsockopt(
            socket.as_raw_fd(),
            level,
            name,
            (value as *const T).cast(),
            mem::size_of::<T>() as libc::socklen_t,
        )
    };
    if rc == 0 {
        Ok(())
    } else {
        Err(io::Error::last_os_error())
    }
}

/// Converts a kernel socket address into a std one; `None` for families other than IPv4/6.
fn storage_to_addr(storage: &libc::sockaddr_storage, len: libc::socklen_t) -> Option<SocketAddr> {
    let len = len as usize;
    match storage.ss_family as libc::c_int {
        libc::AF_INET if len >= mem::size_of::<libc::sockaddr_in>() => {
            // SAFETY: the family is AF_INET and the kernel wrote at least a sockaddr_in;
            // sockaddr_storage is large enough and aligned for every sockaddr type.
            let sin =
                unsafe { &*(storage as *const libc::sockaddr_storage).cast::<libc::sockaddr_in>() };
            let ip = Ipv4Addr::from(u32::from_be(sin.sin_addr.s_addr));
            Some(SocketAddr::V4(SocketAddrV4::new(
                ip,
                u16::from_be(sin.sin_port),
            )))
        }
        libc::AF_INET6 if len >= mem::size_of::<libc::sockaddr_in6>() => {
            // SAFETY: as above, for AF_INET6 and sockaddr_in6.
            let sin6 = unsafe {
                &*(storage as *const libc::sockaddr_storage).cast::<libc::sockaddr_in6>()
            };
            let ip = Ipv6Addr::from(sin6.sin6_addr.s6_addr);
            Some(SocketAddr::V6(SocketAddrV6::new(
                ip,
                u16::from_be(sin6.sin6_port),
                sin6.sin6_flowinfo,
                sin6.sin6_scope_id,
            )))
        }
        _ => None,
    }
}

/// mimalloc's `mi_option_purge_delay` (the 16th entry of `mi_option_e` in its `mimalloc.h`, v3;
/// `libmimalloc-sys` names no constant for it). The test below checks it against the default.
const MI_OPTION_PURGE_DELAY: libmimalloc_sys::mi_option_t = 15;

/// Tunes the `juris` binary's allocator (mimalloc, design 0049) before anything large is
/// allocated: freed pages are purged at once (`purge_delay` 0) instead of after a delay that
/// only a later allocation ends. Without it the order loader's transient memory (≈ 150 MB
/// at 1M names) stayed resident: 44 instead of 31 bytes of RSS per blocked name (W4's target
/// is 32). W2's CPU per answer did not change (design 0049).
pub fn tune_allocator() {
    // SAFETY: mi_option_set takes an option number and a value; mimalloc validates the
    // number and stores the value in its own option table.
    unsafe { libmimalloc_sys::mi_option_set(MI_OPTION_PURGE_DELAY, 0) };
}

/// Gives the heap's free pages back to the kernel after the order loader parsed millions of
/// names, whose freed memory (≈ 150 MB at 1M names) the allocators would otherwise keep,
/// counted in RSS. The `juris` binary allocates with mimalloc (design 0049): `mi_collect(true)`
/// frees its empty pages and returns them at once. glibc's heap, which C code and binaries
/// built without mimalloc use, gets `malloc_trim(0)`. Returns whether glibc released memory.
pub fn release_free_heap_memory() -> bool {
    // SAFETY: mi_collect takes no pointer; it walks mimalloc's own heaps under its own
    // synchronisation and may be called from any thread at any time.
    unsafe { libmimalloc_sys::mi_collect(true) };
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    {
        // SAFETY: malloc_trim takes no pointer and only rearranges the allocator's own free
        // lists under its locks; it is safe to call at any time from any thread.
        unsafe { libc::malloc_trim(0) != 0 }
    }
    #[cfg(not(all(target_os = "linux", target_env = "gnu")))]
    {
        false
    }
}

/// Lowers the calling thread's scheduling priority to `nice` (Linux: `setpriority` on a thread
/// id applies to that thread only), for background work that must not delay answers. Returns
/// whether it took effect; a no-op elsewhere.
pub fn lower_thread_priority(nice: i32) -> bool {
    #[cfg(target_os = "linux")]
    {
        // SAFETY: gettid and setpriority take and return plain integers; no memory is shared.
        unsafe {
            let thread = libc::gettid() as libc::id_t;
            libc::setpriority(libc::PRIO_PROCESS, thread, nice) == 0
        }
    }
    #[cfg(not(target_os = "linux"))]
    {
        let _ = nice;
        false
    }
}

/// Waits until one of `fds` is readable or `timeout_ms` passes (tests; the workers wait
/// through their tokio runtime).
/// Attaches (or replaces) `socket`'s classic BPF filter (`SO_ATTACH_FILTER`, no privilege
/// needed; [`crate::kdrop`]). The kernel checks the program and refuses an invalid one.
pub(crate) fn attach_filter(socket: &Socket, program: &[crate::kdrop::Insn]) -> io::Result<()> {
    #[cfg(target_os = "linux")]
    {
        let mut filter: Vec<libc::sock_filter> = program
            .iter()
            .map(|i| libc::sock_filter {
                code: i.code,
                jt: i.jt,
                jf: i.jf,
                k: i.k,
            })
            .collect();
        let len = u16::try_from(filter.len())
            .map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "BPF program too long"))?;
        // `filter` outlives the call; the kernel copies the `len` instructions it points at.
        let fprog = libc::sock_fprog {
            len,
            filter: filter.as_mut_ptr(),
        };
        set_option(socket, libc::SOL_SOCKET, libc::SO_ATTACH_FILTER, &fprog)
    }
    #[cfg(not(target_os = "linux"))]
    {
        let _ = (socket, program);
        Err(io::Error::new(
            io::ErrorKind::Unsupported,
            "socket filters need Linux",
        ))
    }
}

/// Removes `socket`'s classic BPF filter, if it has one.
pub(crate) fn detach_filter(socket: &Socket) -> io::Result<()> {
    #[cfg(target_os = "linux")]
    {
        // The value is ignored; ENOENT: no filter was attached.
        match set_option(
            socket,
            libc::SOL_SOCKET,
            libc::SO_DETACH_FILTER,
            &0 as &libc::c_int,
        ) {
            Err(error) if error.raw_os_error() != Some(libc::ENOENT) => Err(error),
            _ => Ok(()),
        }
    }
    #[cfg(not(target_os = "linux"))]
    {
        let _ = socket;
        Ok(())
    }
}

#[cfg(test)]
#[derive(Debug)]
pub(crate) struct PollSet {
    fds: Vec<libc::pollfd>,
}

#[cfg(test)]
impl PollSet {
    /// A poll set over `fds`.
    pub(crate) fn new(fds: &[RawFd]) -> Self {
        Self {
            fds: fds
                .iter()
                .map(|&fd| libc::pollfd {
                    fd,
                    events: libc::POLLIN,
                    revents: 0,
                })
                .collect(),
        }
    }

    /// Blocks until readable or timeout; errors (EINTR) count as a wake-up.
    pub(crate) fn wait(&mut self, timeout_ms: i32) {
        for fd in &mut self.fds {
            fd.revents = 0;
        }
        // SAFETY: `fds` is a live, exclusively borrowed array of initialised pollfd of the
        // length passed.
        unsafe {
            libc::poll(
                self.fds.as_mut_ptr(),
                self.fds.len() as libc::nfds_t,
                timeout_ms,
            );
        }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used, reason = "test code")]
mod tests {
    use super::*;
    use std::net::UdpSocket;
    use std::os::fd::AsRawFd;

    #[test]
    fn the_purge_delay_option_number_is_mimallocs() {
        // mimalloc v3's defaults (options.c): purge_delay 1000 ms, its neighbours
        // eager_commit_delay (14, deprecated: 1) and use_numa_nodes (16: 0). A renumbered enum
        // in a later mimalloc fails here instead of setting another option.
        // SAFETY: mi_option_get only reads mimalloc's option table.
        let (before, at, after) = unsafe {
            (
                libmimalloc_sys::mi_option_get(MI_OPTION_PURGE_DELAY - 1),
                libmimalloc_sys::mi_option_get(MI_OPTION_PURGE_DELAY),
                libmimalloc_sys::mi_option_get(MI_OPTION_PURGE_DELAY + 1),
            )
        };
        assert_eq!((before, at, after), (1, 1000, 0));
        tune_allocator();
        // SAFETY: as above.
        assert_eq!(
            unsafe { libmimalloc_sys::mi_option_get(MI_OPTION_PURGE_DELAY) },
            0
        );
    }

    #[cfg(target_os = "linux")]
    #[test]
    fn udp_listener_sockets_get_the_receive_buffer_asked_for() {
        let sysctl = |name: &str| -> usize {
            std::fs::read_to_string(format!("/proc/sys/net/core/{name}"))
                .unwrap()
                .trim()
                .parse()
                .unwrap()
        };
        let asked = 1 << 20;
        let socket = crate::udp::bind("127.0.0.1:0".parse().unwrap(), asked).unwrap();
        // Linux doubles the value (bookkeeping overhead) after capping it at rmem_max.
        assert_eq!(
            socket.recv_buffer_size().unwrap(),
            2 * asked.min(sysctl("rmem_max"))
        );
        let default = crate::udp::bind("127.0.0.1:0".parse().unwrap(), 0).unwrap();
        assert_eq!(default.recv_buffer_size().unwrap(), sysctl("rmem_default"));
    }

    #[test]
    fn listening_sockets_send_with_dont_fragment() {
        let get = |socket: &Socket, level, name| {
            let mut value: libc::c_int = -1;
            let mut len = mem::size_of::<libc::c_int>() as libc::socklen_t;
            // SAFETY: value/len are live and sized for a c_int.
            let rc = unsafe {
                libc::getsockopt(
                    socket.as_raw_fd(),
                    level,
                    name,
                    (&mut value as *mut libc::c_int).cast(),
                    &mut len,
                )
            };
            assert_eq!(rc, 0);
            value
        };
        let v4 = crate::udp::bind("127.0.0.1:0".parse().unwrap(), 0).unwrap();
        assert_eq!(
            get(&v4, libc::IPPROTO_IP, libc::IP_MTU_DISCOVER),
            libc::IP_PMTUDISC_PROBE
        );
        if let Ok(v6) = crate::udp::bind("[::1]:0".parse().unwrap(), 0) {
            assert_eq!(get(&v6, libc::IPPROTO_IPV6, libc::IPV6_DONTFRAG), 1);
            assert_eq!(
                get(&v6, libc::IPPROTO_IPV6, libc::IPV6_MTU_DISCOVER),
                libc::IPV6_PMTUDISC_PROBE
            );
        }
    }

    #[test]
    fn batch_round_trip_over_loopback() {
        let server = UdpSocket::bind("127.0.0.1:0").unwrap();
        server.set_nonblocking(true).unwrap();
        let client = UdpSocket::bind("127.0.0.1:0").unwrap();
        client
            .set_read_timeout(Some(std::time::Duration::from_secs(5)))
            .unwrap();
        let target = server.local_addr().unwrap();
        for n in 0..3u8 {
            client.send_to(&[n; 20], target).unwrap();
        }
        let mut batch = Batch::new(8, 64, 64);
        let mut poll = PollSet::new(&[server.as_raw_fd()]);
        let mut got = Vec::new();
        for _ in 0..50 {
            let n = batch.recv(server.as_raw_fd(), false).unwrap();
            for i in 0..n {
                assert_eq!(batch.peer(i), Some(client.local_addr().unwrap()));
                let (packet, out) = batch.slot(i);
                got.push(packet.to_vec());
                out[..packet.len()].copy_from_slice(packet);
                out[0] ^= 0xFF;
                let len = packet.len();
                batch.set_response(i, len);
            }
            batch.send(server.as_raw_fd());
            if got.len() == 3 {
                break;
            }
            poll.wait(100);
        }
        assert_eq!(got.len(), 3);
        let mut buf = [0u8; 64];
        for _ in 0..3 {
            let (len, _) = client.recv_from(&mut buf).unwrap();
            assert_eq!(len, 20);
            assert_eq!(buf[0] ^ 0xFF, buf[1]);
        }
    }

    #[test]
    fn socket_addresses_survive_the_trip_through_the_kernel_form() {
        let mut storage = zeroed_storage();
        for addr in [
            "192.0.2.7:5353",
            "[2001:db8::1]:53",
            "[fe80::1%3]:853",
            "0.0.0.0:0",
        ] {
            let addr: SocketAddr = addr.parse().unwrap();
            let len = addr_to_storage(addr, &mut storage);
            assert_eq!(storage_to_addr(&storage, len), Some(addr));
        }
    }

    #[test]
    fn a_send_batch_sends_every_queued_response_to_its_own_destination_in_order() {
        let server = UdpSocket::bind("127.0.0.1:0").unwrap();
        let clients: Vec<UdpSocket> = (0..2)
            .map(|_| {
                let client = UdpSocket::bind("127.0.0.1:0").unwrap();
                client
                    .set_read_timeout(Some(std::time::Duration::from_secs(5)))
                    .unwrap();
                client
            })
            .collect();
        let mut batch = SendBatch::new(3, 16);
        assert!(batch.is_empty());
        for round in 0..2u8 {
            for n in 0..3u8 {
                let to = clients[usize::from(n % 2)].local_addr().unwrap();
                assert!(batch.push(to, |out| {
                    out[..4].copy_from_slice(&[round, n, 0xAA, 0xBB]);
                    Some(4 + usize::from(n))
                }));
            }
            assert!(batch.is_full());
            // Full: nothing is written, nothing is queued.
            let to = clients[0].local_addr().unwrap();
            assert!(!batch.push(to, |_| unreachable!("a full batch writes nothing")));
            assert_eq!(batch.queued(1).0.len(), 5);
            batch.send(server.as_raw_fd());
            assert!(batch.is_empty());
            let mut buf = [0u8; 64];
            // In the order queued, each to its own client.
            for (client, expect) in [(&clients[0], &[0u8, 2][..]), (&clients[1], &[1][..])] {
                for &n in expect {
                    let (len, from) = client.recv_from(&mut buf).unwrap();
                    assert_eq!(from, server.local_addr().unwrap());
                    assert_eq!(len, 4 + usize::from(n));
                    assert_eq!(&buf[..4], &[round, n, 0xAA, 0xBB]);
                }
            }
        }
        // A response that writes nothing takes no slot.
        let to = clients[0].local_addr().unwrap();
        assert!(batch.push(to, |_| None));
        assert!(batch.is_empty());
    }

    #[test]
    fn oversize_datagram_is_marked_empty() {
        let server = UdpSocket::bind("127.0.0.1:0").unwrap();
        server.set_nonblocking(true).unwrap();
        let client = UdpSocket::bind("127.0.0.1:0").unwrap();
        client
            .send_to(&[1; 100], server.local_addr().unwrap())
            .unwrap();
        let mut batch = Batch::new(2, 32, 32);
        let mut poll = PollSet::new(&[server.as_raw_fd()]);
        poll.wait(2000);
        let n = batch.recv(server.as_raw_fd(), false).unwrap();
        assert_eq!(n, 1);
        assert!(batch.slot(0).0.is_empty());
    }

    #[test]
    fn waiting_receive_returns_at_the_timeout_and_reuses_headers() {
        let server = UdpSocket::bind("127.0.0.1:0").unwrap();
        server
            .set_read_timeout(Some(std::time::Duration::from_millis(20)))
            .unwrap();
        let mut batch = Batch::new(4, 64, 64);
        // Nothing queued: the receive timeout ends the wait with no datagram.
        assert_eq!(batch.recv(server.as_raw_fd(), true).unwrap(), 0);
        // Several rounds from different senders: each round's headers start clean.
        let target = server.local_addr().unwrap();
        for round in 0..3u8 {
            let client = UdpSocket::bind("127.0.0.1:0").unwrap();
            client.send_to(&[round; 30], target).unwrap();
            client.send_to(&[round; 31], target).unwrap();
            let mut got = 0;
            for _ in 0..250 {
                if got == 2 {
                    break;
                }
                let n = batch.recv(server.as_raw_fd(), true).unwrap();
                for i in 0..n {
                    assert_eq!(batch.peer(i), Some(client.local_addr().unwrap()));
                    let (packet, _) = batch.slot(i);
                    assert!(packet.iter().all(|&b| b == round));
                    assert!(packet.len() == 30 || packet.len() == 31);
                }
                got += n;
            }
            assert_eq!(got, 2);
        }
    }
}
