//! DNS over TLS (RFC 7858): RFC 7766 framing inside TLS, pipelining with answers in
//! completion order.
//!
//! ```text
//!  accept ─► access list? ─► connection permit? ─► task: TLS handshake (timeout)
//!     juris_server::stream::serve_framed (the framing loop TCP shares):
//!     read frames ─► Pipeline::handle ─► hit: write now
//!                                     └► miss: spawn answer_pending ─► channel ─► write
//!     idle (nothing in flight) for idle_timeout, or a frame that does not arrive whole
//!     within request_timeout ─► close
//! ```
//!
//! # Limitations
//! - No EDNS(0) padding (RFC 7830/8467) of responses yet.
//! - No EDNS TCP keepalive option (RFC 7828); the idle timeout is not advertised.

use std::net::SocketAddr;
use std::sync::Arc;

use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::TcpListener;
use tokio::sync::{watch, OwnedSemaphorePermit, Semaphore};
use tokio_rustls::TlsAcceptor;

use juris_server::stream::{serve_framed, FrameEvents, FrameLimits};
use juris_server::ClientContext;

use crate::accept::accept_tls;
use crate::config::Protocol;
use crate::server::Shared;

/// Accepts connections until shutdown.
pub(crate) async fn serve(
    listener: TcpListener,
    listener_index: usize,
    acceptor: TlsAcceptor,
    shared: Arc<Shared>,
    connections: Arc<Semaphore>,
    shutdown: watch::Receiver<bool>,
) {
    let on_connection = {
        let shared = Arc::clone(&shared);
        let shutdown = shutdown.clone();
        move |stream, peer, permit| {
            let connection = Connection {
                peer,
                listener_index,
                shared: Arc::clone(&shared),
                shutdown: shutdown.clone(),
                _permit: permit,
            };
            connection.run(stream)
        }
    };
    accept_tls(
        listener,
        acceptor,
        shared,
        connections,
        shutdown,
        Protocol::Tls,
        |shared, ip| shared.pipeline.allows(ip),
        on_connection,
    )
    .await;
}

struct Connection {
    peer: SocketAddr,
    listener_index: usize,
    shared: Arc<Shared>,
    shutdown: watch::Receiver<bool>,
    _permit: OwnedSemaphorePermit,
}

impl Connection {
    async fn run<S>(self, stream: S)
    where
        S: AsyncRead + AsyncWrite + Send + Unpin + 'static,
    {
        let (reader, writer) = tokio::io::split(stream);
        let limits = self.shared.limits;
        let context = ClientContext {
            client: self.peer,
            transport: crate::server::pipeline_transport(Protocol::Tls),
            listener: self.listener_index,
            client_subnet: None,
        };
        let frame_limits = FrameLimits {
            idle_timeout: limits.idle_timeout,
            request_timeout: Some(limits.request_timeout),
            max_in_flight: limits.max_streams as usize,
            max_query_size: limits.max_request_size,
        };
        let events = Events(&self.shared);
        serve_framed(
            reader,
            writer,
            Arc::clone(&self.shared.pipeline),
            context,
            frame_limits,
            self.shutdown,
            &events,
        )
        .await;
    }
}

/// DoT's counters for what the framing loop reports.
struct Events<'a>(&'a Shared);

impl FrameEvents for Events<'_> {
    fn bad_frame(&self) {
        self.0.counters.of(Protocol::Tls).bad_request();
    }

    fn timed_out(&self) {
        self.0.counters.of(Protocol::Tls).idle_closed();
    }
}
