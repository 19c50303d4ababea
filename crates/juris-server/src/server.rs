//! Starting and stopping the listeners.

use std::io;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::thread::JoinHandle;
use std::time::Duration;

use juris_resolver::clock::SharedClock;
use juris_resolver::Resolver;
use socket2::Socket;
use tokio::sync::{watch, Semaphore};

use crate::config::{ListenerConfig, ServerConfig};
use crate::counters::{Counters, ServerStats};
use crate::pipeline::Pipeline;
use crate::policy::{OrderCount, PolicyEngine, WithdrawnCount};
use crate::{tcp, udp};

/// Why the server could not start.
#[derive(Debug, thiserror::Error)]
pub enum ServerError {
    /// A setting is out of range.
    #[error("invalid server configuration: {0}")]
    Config(&'static str),
    /// A listen address could not be bound.
    #[error("cannot listen on {transport} {addr}: {source}")]
    Bind {
        /// The address as configured.
        addr: SocketAddr,
        /// "UDP" or "TCP".
        transport: &'static str,
        /// What the OS said.
        #[source]
        source: io::Error,
    },
    /// The tokio runtime could not be built.
    #[error("cannot start the async runtime: {0}")]
    Runtime(#[source] io::Error),
    /// A UDP worker thread could not be spawned.
    #[error("cannot start a UDP worker thread: {0}")]
    Thread(#[source] io::Error),
    /// The jurisdiction classifier could not be set up.
    #[error("cannot set up the jurisdiction classifier: {0}")]
    Geo(#[from] juris_geo::GeoError),
}

/// A listener as bound (with the real port when 0 was configured).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BoundListener {
    /// The bound address.
    pub addr: SocketAddr,
    /// UDP is served here.
    pub udp: bool,
    /// TCP is served here.
    pub tcp: bool,
}

/// Asks a running server to stop; cheap to clone, usable from a signal handler thread.
#[derive(Debug, Clone, Default)]
pub struct ShutdownHandle {
    requested: Arc<(Mutex<bool>, Condvar)>,
}

impl ShutdownHandle {
    /// Requests shutdown: [`RunningServer::wait`] returns after stopping everything.
    pub fn trigger(&self) {
        let (lock, condvar) = &*self.requested;
        *lock.lock().unwrap_or_else(|poisoned| poisoned.into_inner()) = true;
        condvar.notify_all();
    }

    fn wait(&self) {
        let (lock, condvar) = &*self.requested;
        let mut requested = lock.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        while !*requested {
            requested = condvar
                .wait(requested)
                .unwrap_or_else(|poisoned| poisoned.into_inner());
        }
    }
}

/// The running listeners. Dropping it stops them too.
#[derive(Debug)]
pub struct RunningServer {
    listeners: Vec<BoundListener>,
    pipeline: Arc<Pipeline>,
    worker_counters: Vec<Arc<Counters>>,
    workers: Vec<JoinHandle<()>>,
    runtime: Option<tokio::runtime::Runtime>,
    stop_workers: Arc<AtomicBool>,
    stop_tasks: watch::Sender<bool>,
    shutdown: ShutdownHandle,
    /// The TCP connection limit: every permit back means no connection is open.
    connections: Arc<Semaphore>,
    max_connections: usize,
}

/// [`start_with_policy`] without orders or GeoIP: every query is answered normally.
pub fn start(
    config: ServerConfig,
    resolver: Resolver,
    clock: SharedClock,
) -> Result<RunningServer, ServerError> {
    start_with_policy(config, resolver, clock, PolicyEngine::allow_all()?)
}

/// Binds every listener (reporting the first failure with its address), starts the UDP
/// worker threads (each resolving its own misses) and the tokio runtime for TCP, and returns. Every query is
/// checked against the policy `engine` holds (publish new policies through
/// [`PolicyEngine::policy`] while the server runs).
///
/// Call it from a plain thread (e.g. `main`), not from inside another tokio runtime's task.
pub fn start_with_policy(
    config: ServerConfig,
    resolver: Resolver,
    clock: SharedClock,
    engine: PolicyEngine,
) -> Result<RunningServer, ServerError> {
    config.validate().map_err(ServerError::Config)?;
    let threads = config.threads;

    let mut listeners = Vec::new();
    let mut udp_sockets: Vec<Vec<(Socket, usize)>> = (0..threads).map(|_| Vec::new()).collect();
    let mut tcp_listeners = Vec::new();
    for (index, listener) in config.listeners.iter().enumerate() {
        let bound = bind_listener(listener, threads, config.udp_receive_buffer)?;
        for (worker, socket) in bound.udp.into_iter().enumerate() {
            udp_sockets[worker].push((socket, index));
        }
        if let Some(tcp) = bound.tcp {
            tcp_listeners.push((tcp, index, bound.addr));
        }
        listeners.push(BoundListener {
            addr: bound.addr,
            udp: listener.udp,
            tcp: listener.tcp,
        });
    }

    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(config.async_threads)
        .thread_name("juris-async")
        .enable_all()
        .build()
        .map_err(ServerError::Runtime)?;
    let pipeline =
        Arc::new(Pipeline::new(&config, resolver, clock, engine).map_err(ServerError::Config)?);
    let (stop_tasks, stop_rx) = watch::channel(false);
    let stop_workers = Arc::new(AtomicBool::new(false));

    let settings = tcp::TcpSettings {
        idle_timeout: config.tcp_idle_timeout,
        max_in_flight: config.tcp_max_in_flight,
        max_query_size: config.tcp_max_query_size as usize,
    };
    let connections = Arc::new(Semaphore::new(config.tcp_max_connections));
    for (listener, index, addr) in tcp_listeners {
        let listener = {
            let _context = runtime.enter();
            tokio::net::TcpListener::from_std(listener).map_err(|source| ServerError::Bind {
                addr,
                transport: "TCP",
                source,
            })?
        };
        runtime.spawn(tcp::serve(
            listener,
            index,
            Arc::clone(&pipeline),
            Arc::clone(&connections),
            settings,
            stop_rx.clone(),
        ));
    }

    let mut server = RunningServer {
        listeners,
        pipeline: Arc::clone(&pipeline),
        worker_counters: Vec::new(),
        workers: Vec::new(),
        runtime: Some(runtime),
        stop_workers: Arc::clone(&stop_workers),
        stop_tasks,
        shutdown: ShutdownHandle::default(),
        connections: Arc::clone(&connections),
        max_connections: config.tcp_max_connections,
    };
    let max_response = config.max_udp_payload as usize;
    for (index, sockets) in udp_sockets.into_iter().enumerate() {
        if sockets.is_empty() {
            continue;
        }
        // A duplicate descriptor per socket, for the kernel drop's filter (design 0050).
        for (socket, listener) in &sockets {
            pipeline
                .kernel_drop()
                .add_socket(socket)
                .map_err(|source| ServerError::Bind {
                    addr: server.listeners[*listener].addr,
                    transport: "UDP",
                    source,
                })?;
        }
        // Written by this worker's thread only (misses count in the pipeline's async set).
        let counters = Arc::new(Counters::single_writer());
        server.worker_counters.push(Arc::clone(&counters));
        let worker = udp::Worker {
            index,
            sockets,
            pipeline: Arc::clone(&pipeline),
            counters,
            shutdown: Arc::clone(&stop_workers),
            batch_size: config.udp_batch_size,
            max_response,
            hot_slots: config.hot_answer_slots,
        };
        // On failure `server` is dropped, which stops the workers already started.
        server
            .workers
            .push(worker.spawn().map_err(ServerError::Thread)?);
    }
    tracing::info!(listeners = ?server.listeners, threads, "juris-server listening");
    Ok(server)
}

impl RunningServer {
    /// The bound listeners, in configuration order.
    pub fn listeners(&self) -> &[BoundListener] {
        &self.listeners
    }

    /// Counters summed over every worker.
    pub fn stats(&self) -> ServerStats {
        let mut stats = ServerStats::default();
        for counters in &self.worker_counters {
            counters.add_to(&mut stats);
        }
        self.pipeline.async_counters().add_to(&mut stats);
        stats
    }

    /// The pipeline every listener answers through (for listeners started elsewhere, e.g.
    /// the encrypted transports of `juris-transport`).
    pub fn pipeline(&self) -> &Arc<Pipeline> {
        &self.pipeline
    }

    /// The runtime that serves TCP and resolves misses, for listeners started elsewhere.
    /// `None` only after shutdown has begun.
    pub fn runtime_handle(&self) -> Option<tokio::runtime::Handle> {
        self.runtime.as_ref().map(|r| r.handle().clone())
    }

    /// The policy engine: the policy in force, the classifier, the counters.
    pub fn engine(&self) -> &PolicyEngine {
        self.pipeline.engine()
    }

    /// Blocks and shadow matches per order × jurisdiction.
    pub fn order_counts(&self) -> Vec<OrderCount> {
        self.pipeline.engine().counters.snapshot()
    }

    /// Queries refused per withdrawn jurisdiction.
    pub fn withdrawn_counts(&self) -> Vec<WithdrawnCount> {
        self.pipeline.engine().counters.withdrawn_snapshot()
    }

    /// A handle that makes [`RunningServer::wait`] return (e.g. from a signal handler).
    pub fn shutdown_handle(&self) -> ShutdownHandle {
        self.shutdown.clone()
    }

    /// Blocks until [`ShutdownHandle::trigger`] is called, then stops everything.
    pub fn wait(self) {
        self.shutdown.wait();
        self.shutdown();
    }

    /// Stops the listeners: UDP workers finish their batch and exit (within ~100 ms), TCP
    /// connections close; resolutions still under way are cancelled (each UDP worker drops its
    /// own runtime, the shared runtime gets 2 s for its blocking threads).
    pub fn shutdown(mut self) {
        self.stop();
    }

    /// Graceful shutdown, first step: TCP listeners stop accepting, and each connection
    /// stops reading, answers the queries it has already read (resolving them if need be),
    /// then closes. Returns at once; [`RunningServer::wait_drained`] waits for the
    /// connections, [`RunningServer::shutdown`] then stops the rest.
    pub fn drain(&self) {
        let _ = self.stop_tasks.send(true);
    }

    /// Waits until every TCP connection has closed after [`RunningServer::drain`], or until
    /// `deadline`; returns the connections still open (they are cut by `shutdown`).
    pub fn wait_drained(&self, deadline: std::time::Instant) -> usize {
        wait_for_permits(&[&self.connections], self.max_connections, deadline)
    }

    fn stop(&mut self) {
        self.pipeline.kernel_drop().stop();
        self.stop_workers.store(true, Ordering::Relaxed);
        let _ = self.stop_tasks.send(true);
        for worker in self.workers.drain(..) {
            let _ = worker.join();
        }
        if let Some(runtime) = self.runtime.take() {
            // Dropping a runtime inside another runtime's context panics; a plain thread is
            // always a safe place.
            let stopper =
                std::thread::spawn(move || runtime.shutdown_timeout(Duration::from_secs(2)));
            let _ = stopper.join();
        }
    }
}

/// Waits until each of `limits` (connection limits of `max` permits, one held per open
/// connection) has every permit back, or until `deadline`; returns the connections still open.
/// For draining at shutdown, from a plain thread (it sleeps).
pub fn wait_for_permits(limits: &[&Semaphore], max: usize, deadline: std::time::Instant) -> usize {
    loop {
        let open: usize = limits
            .iter()
            .map(|limit| max.saturating_sub(limit.available_permits()))
            .sum();
        if open == 0 || std::time::Instant::now() >= deadline {
            return open;
        }
        std::thread::sleep(Duration::from_millis(10));
    }
}

impl Drop for RunningServer {
    fn drop(&mut self) {
        self.stop();
    }
}

struct BoundSockets {
    addr: SocketAddr,
    udp: Vec<Socket>,
    tcp: Option<std::net::TcpListener>,
}

/// Binds one listener: `threads` UDP sockets and one TCP listener on the same port. Port 0
/// is resolved first with an exclusive probe socket, so our `SO_REUSEPORT` sockets never
/// share an ephemeral port picked by the kernel for someone else.
fn bind_listener(
    listener: &ListenerConfig,
    threads: usize,
    receive_buffer: usize,
) -> Result<BoundSockets, ServerError> {
    let attempts = if listener.addr.port() == 0 { 8 } else { 1 };
    let mut last_error = None;
    for _ in 0..attempts {
        match try_bind(listener, threads, receive_buffer) {
            Ok(bound) => return Ok(bound),
            Err(error) => last_error = Some(error),
        }
    }
    Err(last_error.unwrap_or(ServerError::Config("listener could not be bound")))
}

fn try_bind(
    listener: &ListenerConfig,
    threads: usize,
    receive_buffer: usize,
) -> Result<BoundSockets, ServerError> {
    let configured = listener.addr;
    let bind_error = |transport| {
        move |source| ServerError::Bind {
            addr: configured,
            transport,
            source,
        }
    };
    let mut addr = configured;
    if addr.port() == 0 && listener.udp {
        let probe = std::net::UdpSocket::bind(addr).map_err(bind_error("UDP"))?;
        addr = probe.local_addr().map_err(bind_error("UDP"))?;
    }
    let mut udp_sockets = Vec::new();
    if listener.udp {
        for _ in 0..threads {
            udp_sockets.push(udp::bind(addr, receive_buffer).map_err(bind_error("UDP"))?);
        }
    }
    let tcp = if listener.tcp {
        let tcp = tcp::bind(addr).map_err(bind_error("TCP"))?;
        addr = tcp.local_addr().map_err(bind_error("TCP"))?;
        Some(tcp)
    } else {
        None
    };
    Ok(BoundSockets {
        addr,
        udp: udp_sockets,
        tcp,
    })
}
