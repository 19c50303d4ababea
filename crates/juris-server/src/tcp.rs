//! DNS over TCP (RFC 7766) in tokio: 2-byte length framing, pipelining with answers in
//! completion order, idle timeout, connection limit, query size limit.
//!
//! ```text
//!  accept ─► access list? ─► connection permit? ─► one task per connection:
//!     crate::stream::serve_framed (the framing loop DoT shares): read frames ─►
//!     Pipeline::handle ─► hit: write now
//!                     └► miss: spawn answer_pending ─► channel ─► write
//! ```
//!
//! # Limitations
//! - No EDNS TCP keepalive option (RFC 7828); the idle timeout is not advertised.
//! - Responses are written one `write_all` each (no coalescing of pipelined answers yet).

use std::io;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use socket2::{Domain, Protocol, SockAddr, Socket, Type};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{watch, OwnedSemaphorePermit, Semaphore};

use crate::pipeline::{ClientContext, Pipeline, Transport};
use crate::stream::{serve_framed, FrameLimits};

/// Per-connection limits.
#[derive(Debug, Clone, Copy)]
pub(crate) struct TcpSettings {
    pub(crate) idle_timeout: Duration,
    pub(crate) max_in_flight: usize,
    pub(crate) max_query_size: usize,
}

/// Binds a TCP listener (`SO_REUSEADDR`; IPv6 sockets are v6-only).
pub(crate) fn bind(addr: SocketAddr) -> io::Result<std::net::TcpListener> {
    let socket = Socket::new(Domain::for_address(addr), Type::STREAM, Some(Protocol::TCP))?;
    if addr.is_ipv6() {
        socket.set_only_v6(true)?;
    }
    socket.set_reuse_address(true)?;
    socket.set_nonblocking(true)?;
    socket.bind(&SockAddr::from(addr))?;
    socket.listen(1024)?;
    Ok(socket.into())
}

/// Accepts connections until shutdown.
pub(crate) async fn serve(
    listener: TcpListener,
    listener_index: usize,
    pipeline: Arc<Pipeline>,
    connections: Arc<Semaphore>,
    settings: TcpSettings,
    mut shutdown: watch::Receiver<bool>,
) {
    let counters = Arc::clone(pipeline.async_counters());
    loop {
        let accepted = tokio::select! {
            _ = shutdown.changed() => break,
            accepted = listener.accept() => accepted,
        };
        let (stream, peer) = match accepted {
            Ok(accepted) => accepted,
            Err(error) => {
                // Out of file descriptors and the like: back off briefly.
                tracing::debug!(%error, "TCP accept failed");
                tokio::time::sleep(Duration::from_millis(10)).await;
                continue;
            }
        };
        // A trusted load balancer's clients are checked once its PROXY header is read.
        let proxied = pipeline
            .proxy()
            .is_some_and(|trust| trust.trusts(peer.ip()));
        if !proxied && !pipeline.allows(peer.ip()) {
            counters.refused_by_acl();
            drop(stream);
            continue;
        }
        let Ok(permit) = Arc::clone(&connections).try_acquire_owned() else {
            counters.tcp_connection_rejected();
            drop(stream);
            continue;
        };
        counters.tcp_connection();
        let connection = Connection {
            peer,
            listener_index,
            pipeline: Arc::clone(&pipeline),
            settings,
            shutdown: shutdown.clone(),
            _permit: permit,
        };
        tokio::spawn(connection.run(stream));
    }
}

struct Connection {
    peer: SocketAddr,
    listener_index: usize,
    pipeline: Arc<Pipeline>,
    settings: TcpSettings,
    shutdown: watch::Receiver<bool>,
    _permit: OwnedSemaphorePermit,
}

impl Connection {
    async fn run(self, mut stream: TcpStream) {
        let _ = stream.set_nodelay(true);
        let Some(client) = crate::proxy::connection_client(
            &self.pipeline,
            &mut stream,
            self.peer,
            self.settings.idle_timeout,
            |client| self.pipeline.allows(client),
        )
        .await
        else {
            return;
        };
        let (reader, writer) = stream.into_split();
        let context = ClientContext {
            client,
            transport: Transport::Tcp,
            listener: self.listener_index,
            client_subnet: None,
        };
        let limits = FrameLimits {
            idle_timeout: self.settings.idle_timeout,
            request_timeout: None,
            max_in_flight: self.settings.max_in_flight,
            max_query_size: self.settings.max_query_size,
        };
        serve_framed(
            reader,
            writer,
            self.pipeline,
            context,
            limits,
            self.shutdown,
            &(),
        )
        .await;
    }
}
