//! Blocks of loopback addresses that no other test, in this binary or another, uses.
//!
//! A block is `127.A.B.0/24` with `A = 20 + pid % 200` and `B` from a process-wide
//! counter. Two processes whose pids collide modulo 200 could pick the same block, so a
//! block is also *locked*: its owner binds UDP port 53 on `127.A.B.254` and keeps the
//! socket for the block's lifetime; a block whose lock is taken is skipped.
//! Only 127.0.0.0/8 is ever used.

use std::net::{Ipv4Addr, SocketAddr, UdpSocket};
use std::sync::atomic::{AtomicU32, Ordering};

/// The host number whose port 53 locks a block. Never hand it out.
const LOCK_HOST: u8 = 254;

/// A `/24` of loopback addresses owned by one hierarchy or one juris instance.
#[derive(Debug)]
pub struct AddressBlock {
    prefix: [u8; 3],
    _lock: UdpSocket,
}

impl AddressBlock {
    /// Reserves a block nobody else uses.
    ///
    /// # Panics
    /// When 5,000 candidate blocks are all taken (a leak somewhere).
    #[must_use]
    pub fn allocate() -> Self {
        static COUNTER: AtomicU32 = AtomicU32::new(0);
        let pid = std::process::id();
        for _ in 0..5_000 {
            let n = COUNTER.fetch_add(1, Ordering::Relaxed);
            // Low byte cycles 1..=253; past that, move to the next second octet.
            let third = u8::try_from(n % 253 + 1).unwrap_or(1);
            let second = u8::try_from(20 + (pid + n / 253) % 200).unwrap_or(20);
            let prefix = [127, second, third];
            let lock = SocketAddr::from((Ipv4Addr::new(127, second, third, LOCK_HOST), 53));
            if let Ok(socket) = UdpSocket::bind(lock) {
                return Self {
                    prefix,
                    _lock: socket,
                };
            }
        }
        panic!("no free loopback address block (is something leaking NSD servers?)");
    }

    /// `127.A.B.host`. Host 254 is the lock; hosts 1..=253 are free for the owner.
    #[must_use]
    pub fn address(&self, host: u8) -> Ipv4Addr {
        assert!(
            host != 0 && host < LOCK_HOST,
            "host {host} is reserved in an address block"
        );
        let [a, b, c] = self.prefix;
        Ipv4Addr::new(a, b, c, host)
    }

    /// A TCP port free (when asked) on host 1 of the block.
    ///
    /// # Panics
    /// When no port can be bound there.
    #[must_use]
    pub fn free_tcp_port(&self) -> SocketAddr {
        std::net::TcpListener::bind((self.address(1), 0))
            .and_then(|listener| listener.local_addr())
            .unwrap_or_else(|error| panic!("no free TCP port on {}: {error}", self.address(1)))
    }
}
