//! Starting and stopping the encrypted listeners on a tokio runtime.

use std::io;
use std::net::SocketAddr;
use std::sync::Arc;

use ipnet::IpNet;
use juris_server::{Pipeline, Transport};
use socket2::{Domain, Protocol as SocketProtocol, SockAddr, Socket, Type};
use tokio::runtime::Handle;
use tokio::sync::{watch, Semaphore};
use tokio_rustls::TlsAcceptor;

use crate::config::{Limits, Protocol, TransportConfig};
use crate::stats::{Counters, TransportStats};
use crate::tls::{CertificateStore, TlsError};
use crate::{doh, doq, dot};

/// Why the encrypted listeners could not start.
#[derive(Debug, thiserror::Error)]
pub enum TransportError {
    /// A setting is out of range.
    #[error("invalid encrypted transport configuration: {0}")]
    Config(&'static str),
    /// The certificate or key could not be loaded.
    #[error(transparent)]
    Tls(#[from] TlsError),
    /// A listen address could not be bound.
    #[error("cannot listen for {protocol} on {addr}: {source}")]
    Bind {
        /// The address as configured.
        addr: SocketAddr,
        /// DoT, DoH or DoQ.
        protocol: Protocol,
        /// What the OS said.
        #[source]
        source: io::Error,
    },
    /// The QUIC TLS configuration was refused (no TLS 1.3 cipher suite usable by QUIC).
    #[error("cannot configure QUIC: {0}")]
    Quic(String),
}

/// A listener as bound (with the real port when 0 was configured).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BoundEncrypted {
    /// The bound address.
    pub addr: SocketAddr,
    /// What is served there.
    pub protocol: Protocol,
}

/// What every listener task shares.
#[derive(Debug)]
pub(crate) struct Shared {
    pub(crate) pipeline: Arc<Pipeline>,
    pub(crate) limits: Limits,
    pub(crate) counters: Counters,
    pub(crate) trusted_proxies: Vec<IpNet>,
}

/// The transport the pipeline is told about (counted per transport; all three are
/// stream-like for the pipeline: responses up to 65535 bytes, never truncated).
pub(crate) fn pipeline_transport(protocol: Protocol) -> Transport {
    match protocol {
        Protocol::Tls => Transport::Dot,
        Protocol::Https => Transport::Doh,
        Protocol::Quic => Transport::Doq,
    }
}

/// The running encrypted listeners. Dropping it stops them too.
#[derive(Debug)]
pub struct EncryptedServer {
    listeners: Vec<BoundEncrypted>,
    certificates: Arc<CertificateStore>,
    shared: Arc<Shared>,
    stop: watch::Sender<bool>,
    endpoints: Vec<quinn::Endpoint>,
    /// The DoT and DoH connection limits: every permit back means no connection is open.
    stream_connections: Vec<Arc<Semaphore>>,
    max_connections: usize,
}

/// Loads the certificate, binds every listener in `config` (reporting the first failure with
/// its address) and serves them on `runtime` through `pipeline`, the same pipeline the UDP and
/// TCP listeners use. Returns once everything is bound.
pub fn start(
    config: &TransportConfig,
    pipeline: Arc<Pipeline>,
    runtime: &Handle,
) -> Result<EncryptedServer, TransportError> {
    config.validate().map_err(TransportError::Config)?;
    let certificates = Arc::new(CertificateStore::load(&config.tls)?);
    let dot_acceptor = TlsAcceptor::from(Arc::new(certificates.dot_config()?));
    let doh_acceptor = TlsAcceptor::from(Arc::new(certificates.doh_config()?));
    let doq_crypto = doq::crypto(&certificates)?;
    let shared = Arc::new(Shared {
        pipeline,
        limits: config.limits,
        counters: Counters::default(),
        trusted_proxies: config.trusted_proxies.clone(),
    });
    let (stop, stop_rx) = watch::channel(false);
    let connections = |_: Protocol| Arc::new(Semaphore::new(config.limits.max_connections));
    let (dot_connections, doh_connections, doq_connections) = (
        connections(Protocol::Tls),
        connections(Protocol::Https),
        connections(Protocol::Quic),
    );
    let _context = runtime.enter();
    let mut server = EncryptedServer {
        listeners: Vec::new(),
        certificates,
        shared: Arc::clone(&shared),
        stop,
        endpoints: Vec::new(),
        stream_connections: vec![Arc::clone(&dot_connections), Arc::clone(&doh_connections)],
        max_connections: config.limits.max_connections,
    };
    for listener in &config.listeners {
        let bind_error = |source| TransportError::Bind {
            addr: listener.addr,
            protocol: listener.protocol,
            source,
        };
        let addr = match listener.protocol {
            Protocol::Tls | Protocol::Https => {
                let std_listener = bind_tcp(listener.addr).map_err(bind_error)?;
                let addr = std_listener.local_addr().map_err(bind_error)?;
                let tcp = tokio::net::TcpListener::from_std(std_listener).map_err(bind_error)?;
                if listener.protocol == Protocol::Tls {
                    runtime.spawn(dot::serve(
                        tcp,
                        listener.listener,
                        dot_acceptor.clone(),
                        Arc::clone(&shared),
                        Arc::clone(&dot_connections),
                        stop_rx.clone(),
                    ));
                } else {
                    runtime.spawn(doh::serve(
                        tcp,
                        listener.listener,
                        doh_acceptor.clone(),
                        Arc::clone(&shared),
                        Arc::clone(&doh_connections),
                        stop_rx.clone(),
                    ));
                }
                addr
            }
            Protocol::Quic => {
                let endpoint = doq::endpoint(listener.addr, &doq_crypto, &config.limits)
                    .map_err(bind_error)?;
                let addr = endpoint.local_addr().map_err(bind_error)?;
                server.endpoints.push(endpoint.clone());
                runtime.spawn(doq::serve(
                    endpoint,
                    listener.listener,
                    Arc::clone(&shared),
                    Arc::clone(&doq_connections),
                    stop_rx.clone(),
                ));
                addr
            }
        };
        server.listeners.push(BoundEncrypted {
            addr,
            protocol: listener.protocol,
        });
    }
    tracing::info!(listeners = ?server.listeners, "encrypted listeners started");
    Ok(server)
}

impl EncryptedServer {
    /// The bound listeners, in configuration order.
    pub fn listeners(&self) -> &[BoundEncrypted] {
        &self.listeners
    }

    /// The certificate store; [`CertificateStore::reload`] on it is what
    /// [`EncryptedServer::reload_certificates`] does (usable from a signal thread).
    pub fn certificates(&self) -> &Arc<CertificateStore> {
        &self.certificates
    }

    /// Reads the certificate and key files again; new handshakes use them. On error the old
    /// certificate stays in force and the error names the file.
    pub fn reload_certificates(&self) -> Result<(), TlsError> {
        self.certificates.reload()
    }

    /// Connection-level counters per transport.
    pub fn stats(&self) -> TransportStats {
        self.shared.counters.snapshot()
    }

    /// Waits until every DoT and DoH connection has closed after [`EncryptedServer::shutdown`]
    /// (DoT answers the queries it has read, DoH sends GOAWAY and finishes its streams), or
    /// until `deadline`; returns the connections still open.
    pub fn wait_drained(&self, deadline: std::time::Instant) -> usize {
        let limits: Vec<&Semaphore> = self.stream_connections.iter().map(|s| &**s).collect();
        juris_server::wait_for_permits(&limits, self.max_connections, deadline)
    }

    /// Stops accepting; DoT and DoH connections drain (see [`EncryptedServer::wait_drained`]),
    /// QUIC connections close (`DOQ_NO_ERROR`). Returns at once.
    pub fn shutdown(&self) {
        let _ = self.stop.send(true);
        for endpoint in &self.endpoints {
            endpoint.close(doq::DOQ_NO_ERROR.into(), b"shutting down");
        }
    }
}

impl Drop for EncryptedServer {
    fn drop(&mut self) {
        self.shutdown();
    }
}

/// Binds a TCP listener (`SO_REUSEADDR`; IPv6 sockets are v6-only), as the TCP listener does.
fn bind_tcp(addr: SocketAddr) -> io::Result<std::net::TcpListener> {
    let socket = Socket::new(
        Domain::for_address(addr),
        Type::STREAM,
        Some(SocketProtocol::TCP),
    )?;
    if addr.is_ipv6() {
        socket.set_only_v6(true)?;
    }
    socket.set_reuse_address(true)?;
    socket.set_nonblocking(true)?;
    socket.bind(&SockAddr::from(addr))?;
    socket.listen(1024)?;
    Ok(socket.into())
}

/// Binds a UDP socket for QUIC (IPv6 sockets are v6-only).
pub(crate) fn bind_udp(addr: SocketAddr) -> io::Result<std::net::UdpSocket> {
    let socket = Socket::new(
        Domain::for_address(addr),
        Type::DGRAM,
        Some(SocketProtocol::UDP),
    )?;
    if addr.is_ipv6() {
        socket.set_only_v6(true)?;
    }
    socket.set_nonblocking(true)?;
    socket.bind(&SockAddr::from(addr))?;
    Ok(socket.into())
}
