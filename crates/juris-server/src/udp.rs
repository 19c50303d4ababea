//! UDP listeners: `threads` OS threads, each with its own `SO_REUSEPORT` socket on every UDP
//! listen address, receiving and sending in batches.
//!
//! ```text
//!  worker thread = its own current-thread tokio runtime
//!  loop ── recvmmsg ── clock read once ── Pipeline::handle_hot per datagram (the worker's
//!                                           own hot answers first: crate::hot)
//!     │   hit / error ─► response in the batch ─► sendmmsg
//!     │   miss        ─► task on this runtime: Pipeline::resolve_pending, then write_pending
//!     │                   straight into the endpoint's outbox (a second send batch)
//!     ├── outbox sent with one sendmmsg: when the runtime is about to park (its on_thread_park
//!     │   hook: every task that could run in this turn has), at the top of every loop turn,
//!     │   or when it is full
//!     ├── no task alive, one socket: blocking recvmmsg(MSG_WAITFORONE), SO_RCVTIMEO 100 ms
//!     └── otherwise: non-blocking recvmmsg on each socket; something received ─► yield to the
//!         tasks; nothing ─► wait for readiness (epoll, with the tasks' sockets and timers)
//!         at most 100 ms; the shutdown flag is checked every turn
//! ```
//!
//! Cache hits never leave the worker thread, and neither do misses: each worker resolves the
//! misses it receives on its own runtime, as an event loop would, so a miss costs no thread
//! wake-up or context switch (`docs/design/0005-hot-path-tuning.md`). While no resolution is
//! under way (the steady state of a warm cache), a worker with one socket (one listen
//! address) sleeps inside `recvmmsg` itself: one system call per batch, none to wait for
//! readiness. The socket is shared with the tasks: every send passes `MSG_DONTWAIT`, so a
//! full send buffer drops the datagram instead of blocking.
//!
//! The answers to misses are batched too (design 0047): the misses whose upstream answers
//! arrive in the same readiness event complete in the same turn of the runtime, and their
//! responses leave together in one `sendmmsg` before the thread sleeps again, instead of one
//! `sendto` each. Nothing waits for a batch to fill: the outbox is sent as soon as the
//! runtime runs out of tasks to run, or the worker loop runs, whichever comes first. Only a
//! runtime that never runs out of work (and a worker loop not woken) keeps a response back,
//! until the outbox is full (`udp_batch_size` responses).

use std::io;
use std::net::SocketAddr;
use std::os::fd::AsRawFd;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::task::{Context, Poll};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use socket2::{Domain, Protocol, SockAddr, Socket, Type};
use tokio::io::unix::AsyncFd;

use crate::counters::Counters;
use crate::hot::HotAnswers;
use crate::pipeline::{ClientContext, Outcome, Pipeline, Transport};
use crate::sys::{register_readable, Batch, SendBatch};

/// How long a worker waits for a datagram before looking at the shutdown flag again.
const POLL_WAIT: Duration = Duration::from_millis(100);
/// Receive buffer per datagram: queries longer than this are dropped (the kernel truncates
/// them and we see `MSG_TRUNC`).
const MAX_QUERY_SIZE: usize = 4096;

/// One UDP socket of one worker, shared with the tokio tasks that answer its misses.
#[derive(Debug)]
pub(crate) struct UdpEndpoint {
    socket: Arc<Socket>,
    listener: usize,
    /// The responses to misses not sent yet. A mutex only because the runtime's park hook
    /// must be `Sync`: the worker thread alone ever takes it (its tasks, its loop, its hook),
    /// so it is never contended.
    outbox: Mutex<SendBatch>,
    /// Whether the outbox may hold something: the worker loop looks at it every turn (every
    /// receive batch, hits included), so a turn with no miss answered costs one load.
    queued: AtomicBool,
}

impl UdpEndpoint {
    fn new(socket: Socket, listener: usize, slots: usize, max_response: usize) -> Self {
        Self {
            socket: Arc::new(socket),
            listener,
            outbox: Mutex::new(SendBatch::new(slots, max_response)),
            queued: AtomicBool::new(false),
        }
    }

    /// Queues the response to a miss: `write` writes it straight into the outbox (and
    /// returns its length, `None` for no response). A full outbox is sent first.
    fn queue(&self, to: SocketAddr, write: impl FnOnce(&mut [u8]) -> Option<usize>) {
        let mut outbox = self.outbox.lock().unwrap_or_else(PoisonError::into_inner);
        if outbox.is_full() {
            outbox.send(self.socket.as_raw_fd());
        }
        outbox.push(to, write);
        if !outbox.is_empty() {
            self.queued.store(true, Ordering::Relaxed);
        }
    }

    /// Sends the queued responses, if any, in one `sendmmsg` (`MSG_DONTWAIT`: the worker may
    /// have made the socket blocking for its receives; with a full send buffer the responses
    /// are lost, as with any UDP datagram).
    fn flush(&self) {
        // Only the worker thread touches the outbox and this flag, so Relaxed is enough.
        if !self.queued.swap(false, Ordering::Relaxed) {
            return;
        }
        let mut outbox = self.outbox.lock().unwrap_or_else(PoisonError::into_inner);
        if !outbox.is_empty() {
            outbox.send(self.socket.as_raw_fd());
        }
    }
}

/// Sends every endpoint's queued responses.
fn flush_all(endpoints: &[Arc<UdpEndpoint>]) {
    for endpoint in endpoints {
        endpoint.flush();
    }
}

/// Binds one non-blocking `SO_REUSEPORT` UDP socket (IPv6 sockets are v6-only) that sends
/// with don't-fragment set ([`crate::sys::set_dont_fragment`]) and asks for `receive_buffer`
/// bytes of receive buffer (0: the kernel's default).
pub(crate) fn bind(addr: SocketAddr, receive_buffer: usize) -> io::Result<Socket> {
    let socket = Socket::new(Domain::for_address(addr), Type::DGRAM, Some(Protocol::UDP))?;
    if addr.is_ipv6() {
        socket.set_only_v6(true)?;
    }
    socket.set_reuse_port(true)?;
    socket.set_nonblocking(true)?;
    if receive_buffer > 0 {
        // Not fatal either: the kernel caps the size at `net.core.rmem_max` silently.
        if let Err(error) = socket.set_recv_buffer_size(receive_buffer) {
            tracing::warn!(%addr, %error, "cannot set the UDP socket's receive buffer");
        }
    }
    if let Err(error) = crate::sys::set_dont_fragment(&socket, addr.is_ipv6()) {
        // Not fatal: responses are then sent as the kernel's default allows.
        tracing::warn!(%addr, %error, "cannot set don't-fragment on the UDP socket");
    }
    socket.bind(&SockAddr::from(addr))?;
    Ok(socket)
}

/// Registers every endpoint's socket for read readiness (all or none).
fn register_all(
    endpoints: &[Arc<UdpEndpoint>],
    readiness: &mut Vec<AsyncFd<Arc<Socket>>>,
) -> io::Result<()> {
    for endpoint in endpoints {
        match register_readable(Arc::clone(&endpoint.socket)) {
            Ok(registered) => readiness.push(registered),
            Err(error) => {
                readiness.clear();
                return Err(error);
            }
        }
    }
    Ok(())
}

/// Ready when one of the sockets is readable; clears that readiness, since the caller is
/// about to receive until `EAGAIN` (a datagram arriving after the clear sets it again).
fn poll_any_readable(sockets: &[AsyncFd<Arc<Socket>>], cx: &mut Context<'_>) -> Poll<()> {
    for socket in sockets {
        if let Poll::Ready(ready) = socket.poll_read_ready(cx) {
            if let Ok(mut guard) = ready {
                guard.clear_ready();
            }
            return Poll::Ready(());
        }
    }
    Poll::Pending
}

/// Makes a worker's only socket blocking, with a receive timeout so the worker still looks
/// at its shutdown flag every [`POLL_WAIT`].
fn blocking_with_timeout(socket: &Socket) -> io::Result<()> {
    socket.set_read_timeout(Some(POLL_WAIT))?;
    socket.set_nonblocking(false)
}

/// Everything one worker thread needs.
pub(crate) struct Worker {
    pub(crate) index: usize,
    pub(crate) sockets: Vec<(Socket, usize)>,
    pub(crate) pipeline: Arc<Pipeline>,
    pub(crate) counters: Arc<Counters>,
    pub(crate) shutdown: Arc<AtomicBool>,
    pub(crate) batch_size: usize,
    pub(crate) max_response: usize,
    /// Hot-answer slots of this worker (`server.hot_answer_slots`).
    pub(crate) hot_slots: usize,
}

impl Worker {
    /// Starts the worker thread with its own single-threaded runtime, on which the misses it
    /// receives are resolved.
    pub(crate) fn spawn(mut self) -> io::Result<JoinHandle<()>> {
        let endpoints: Arc<[Arc<UdpEndpoint>]> = std::mem::take(&mut self.sockets)
            .into_iter()
            .map(|(socket, listener)| {
                Arc::new(UdpEndpoint::new(
                    socket,
                    listener,
                    self.batch_size,
                    self.max_response,
                ))
            })
            .collect();
        let parked = Arc::clone(&endpoints);
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            // The runtime parks when no task can run: every miss that completed in this turn
            // has queued its response, so the outbox goes out now, in one sendmmsg.
            .on_thread_park(move || flush_all(&parked))
            .build()?;
        std::thread::Builder::new()
            .name(format!("juris-udp-{}", self.index))
            .spawn(move || {
                runtime.block_on(self.run(endpoints));
                // Dropping the runtime cancels the resolutions still under way, as stopping
                // the shared runtime does for TCP.
                drop(runtime);
            })
    }

    async fn run(self, endpoints: Arc<[Arc<UdpEndpoint>]>) {
        // With one socket, the worker can sleep inside recvmmsg whenever no resolution of
        // its own is under way.
        let single = match &endpoints[..] {
            [endpoint] => match blocking_with_timeout(&endpoint.socket) {
                Ok(()) => Some(endpoint),
                Err(error) => {
                    tracing::debug!(%error, "cannot make the UDP socket blocking; polling");
                    None
                }
            },
            _ => None,
        };
        // The sockets' registration with the runtime's epoll, present only while the worker
        // waits through the runtime: a registered socket costs an epoll callback for every
        // datagram that arrives, which the blocking mode has no use for.
        let mut readiness: Vec<AsyncFd<Arc<Socket>>> = Vec::new();
        let metrics = tokio::runtime::Handle::current().metrics();
        let mut batch = Batch::new(self.batch_size, MAX_QUERY_SIZE, self.max_response);
        let mut hot = HotAnswers::with_slots(self.hot_slots, self.max_response);
        while !self.shutdown.load(Ordering::Relaxed) {
            // Responses to misses queued since the last turn (when the runtime did not park
            // in between: it had more to run, or this loop was woken at once).
            flush_all(&endpoints);
            if let Some(endpoint) = single {
                if metrics.num_alive_tasks() == 0 {
                    // Nothing else to run on this thread: block in the kernel.
                    readiness.clear();
                    self.receive_and_answer(&mut batch, &mut hot, endpoint, true);
                    continue;
                }
            }
            if readiness.is_empty() {
                if let Err(error) = register_all(&endpoints, &mut readiness) {
                    tracing::error!(%error, "cannot register a UDP socket; worker stops");
                    return;
                }
            }
            let mut busy = false;
            for endpoint in endpoints.iter() {
                if self.receive_and_answer(&mut batch, &mut hot, endpoint, false) {
                    busy = true;
                }
            }
            if busy {
                // Let the misses just spawned (and resolutions woken by upstream answers)
                // run; the runtime polls its I/O driver before resuming this loop.
                tokio::task::yield_now().await;
            } else {
                // Nothing queued: wait for a datagram while the resolutions progress.
                let ready = std::future::poll_fn(|cx| poll_any_readable(&readiness, cx));
                let _ = tokio::time::timeout(POLL_WAIT, ready).await;
            }
        }
    }

    /// Receives one batch on `endpoint`, answers it, sends the answers; false when nothing
    /// was received.
    fn receive_and_answer(
        &self,
        batch: &mut Batch,
        hot: &mut HotAnswers,
        endpoint: &Arc<UdpEndpoint>,
        wait: bool,
    ) -> bool {
        let received = match batch.recv(endpoint.socket.as_raw_fd(), wait) {
            Ok(n) => n,
            Err(error) => {
                tracing::debug!(%error, "UDP receive failed");
                0
            }
        };
        if received == 0 {
            return false;
        }
        // One clock read per batch: the datagrams of a batch arrived within microseconds.
        // The batch is timed once, receive to send, and that time is every answer's in it.
        let started = Instant::now();
        let now = self.pipeline.now();
        let mut answered = 0u64;
        for i in 0..received {
            answered += u64::from(self.process(batch, hot, i, endpoint, now));
        }
        batch.send(endpoint.socket.as_raw_fd());
        self.counters.hit_latency(started.elapsed(), answered);
        true
    }

    #[inline]
    fn process(
        &self,
        batch: &mut Batch,
        hot: &mut HotAnswers,
        i: usize,
        endpoint: &Arc<UdpEndpoint>,
        now: u64,
    ) -> bool {
        let Some(peer) = batch.peer(i) else {
            return false;
        };
        let (packet, out) = batch.slot(i);
        // PROXY protocol off (the default): this one test is all it costs.
        let (client, packet) = match self.pipeline.proxy() {
            None => (peer, packet),
            Some(trust) => match trust.admit_datagram(peer, packet) {
                Ok(admitted) => admitted,
                Err(error) => {
                    tracing::debug!(%peer, %error, "UDP datagram refused");
                    self.counters.proxy_refused();
                    return false;
                }
            },
        };
        let context = ClientContext {
            client,
            transport: Transport::Udp,
            listener: endpoint.listener,
            client_subnet: None,
        };
        match self
            .pipeline
            .handle_hot(packet, context, out, &self.counters, now, hot)
        {
            Outcome::Respond(len) => {
                batch.set_response(i, len);
                true
            }
            Outcome::Drop => false,
            Outcome::Resolve(pending) => {
                let pipeline = Arc::clone(&self.pipeline);
                let endpoint = Arc::clone(endpoint);
                // On this worker's own runtime: no other thread is woken for a miss.
                tokio::spawn(async move {
                    let resolution = pipeline.resolve_pending(&pending).await;
                    // To the sender (a load balancer's own address under PROXY), written
                    // straight into the outbox, sent with the others of this turn.
                    endpoint.queue(peer, |out| {
                        pipeline.write_pending(&pending, resolution, |_| out)
                    });
                });
                false
            }
        }
    }
}
