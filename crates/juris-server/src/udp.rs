//! UDP listeners: `threads` OS threads, each with its own `SO_REUSEPORT` socket on every UDP
//! listen address, receiving and sending in batches.
//!
//! ```text
//!  worker thread ── recvmmsg (non-blocking, per socket) ── Pipeline::handle per datagram
//!     │   hit / error ─► response in the batch ─► sendmmsg
//!     │   miss        ─► tokio task: Pipeline::answer_pending ─► send_to on the same socket
//!     └── nothing waiting on any socket ─► poll(100 ms) ─► check the shutdown flag
//! ```

use std::io;
use std::net::SocketAddr;
use std::os::fd::AsRawFd;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;

use socket2::{Domain, Protocol, SockAddr, Socket, Type};

use crate::counters::Counters;
use crate::pipeline::{ClientContext, Outcome, Pipeline, Transport};
use crate::sys::{Batch, PollSet};

/// How long a worker sleeps in `poll` before looking at the shutdown flag again.
const POLL_TIMEOUT_MS: i32 = 100;
/// Receive buffer per datagram: queries longer than this are dropped (the kernel truncates
/// them and we see `MSG_TRUNC`).
const MAX_QUERY_SIZE: usize = 4096;

/// One UDP socket of one worker, shared with the tokio tasks that answer its misses.
#[derive(Debug)]
pub(crate) struct UdpEndpoint {
    socket: Socket,
    listener: usize,
}

impl UdpEndpoint {
    fn send_to(&self, message: &[u8], to: SocketAddr) {
        // Non-blocking socket: if the send buffer is full the response is lost, as with any
        // UDP datagram.
        let _ = self.socket.send_to(message, &SockAddr::from(to));
    }
}

/// Binds one non-blocking `SO_REUSEPORT` UDP socket (IPv6 sockets are v6-only).
pub(crate) fn bind(addr: SocketAddr) -> io::Result<Socket> {
    let socket = Socket::new(Domain::for_address(addr), Type::DGRAM, Some(Protocol::UDP))?;
    if addr.is_ipv6() {
        socket.set_only_v6(true)?;
    }
    socket.set_reuse_port(true)?;
    socket.set_nonblocking(true)?;
    socket.bind(&SockAddr::from(addr))?;
    Ok(socket)
}

/// Everything one worker thread needs.
pub(crate) struct Worker {
    pub(crate) index: usize,
    pub(crate) sockets: Vec<(Socket, usize)>,
    pub(crate) pipeline: Arc<Pipeline>,
    pub(crate) runtime: tokio::runtime::Handle,
    pub(crate) counters: Arc<Counters>,
    pub(crate) shutdown: Arc<AtomicBool>,
    pub(crate) batch_size: usize,
    pub(crate) max_response: usize,
}

impl Worker {
    /// Starts the worker thread.
    pub(crate) fn spawn(self) -> io::Result<JoinHandle<()>> {
        std::thread::Builder::new()
            .name(format!("juris-udp-{}", self.index))
            .spawn(move || self.run())
    }

    fn run(mut self) {
        let endpoints: Vec<Arc<UdpEndpoint>> = std::mem::take(&mut self.sockets)
            .into_iter()
            .map(|(socket, listener)| Arc::new(UdpEndpoint { socket, listener }))
            .collect();
        let fds: Vec<_> = endpoints.iter().map(|e| e.socket.as_raw_fd()).collect();
        let mut poll = PollSet::new(&fds);
        let mut batch = Batch::new(self.batch_size, MAX_QUERY_SIZE, self.max_response);
        while !self.shutdown.load(Ordering::Relaxed) {
            let mut busy = false;
            for endpoint in &endpoints {
                let received = match batch.recv(endpoint.socket.as_raw_fd()) {
                    Ok(n) => n,
                    Err(error) => {
                        tracing::debug!(%error, "UDP receive failed");
                        0
                    }
                };
                if received == 0 {
                    continue;
                }
                busy = true;
                for i in 0..received {
                    self.process(&mut batch, i, endpoint);
                }
                batch.send(endpoint.socket.as_raw_fd());
            }
            if !busy {
                poll.wait(POLL_TIMEOUT_MS);
            }
        }
    }

    #[inline]
    fn process(&self, batch: &mut Batch, i: usize, endpoint: &Arc<UdpEndpoint>) {
        let Some(client) = batch.peer(i) else {
            return;
        };
        let context = ClientContext {
            client,
            transport: Transport::Udp,
            listener: endpoint.listener,
            client_subnet: None,
        };
        let (packet, out) = batch.slot(i);
        match self.pipeline.handle(packet, context, out, &self.counters) {
            Outcome::Respond(len) => batch.set_response(i, len),
            Outcome::Drop => {}
            Outcome::Resolve(pending) => {
                let pipeline = Arc::clone(&self.pipeline);
                let endpoint = Arc::clone(endpoint);
                self.runtime.spawn(async move {
                    if let Some(response) = pipeline.answer_pending(*pending, 0).await {
                        endpoint.send_to(&response, client);
                    }
                });
            }
        }
    }
}
