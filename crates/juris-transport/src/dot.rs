//! DNS over TLS (RFC 7858): RFC 7766 framing inside TLS, pipelining with answers in
//! completion order.
//!
//! ```text
//!  accept ─► access list? ─► connection permit? ─► task: TLS handshake (timeout)
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

use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::TcpListener;
use tokio::sync::{mpsc, watch, OwnedSemaphorePermit, Semaphore};
use tokio::time::Instant;
use tokio_rustls::TlsAcceptor;

use juris_server::{ClientContext, Outcome};

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
    async fn run<S>(mut self, stream: S)
    where
        S: AsyncRead + AsyncWrite + Send + Unpin + 'static,
    {
        let (mut reader, mut writer) = tokio::io::split(stream);
        let pipeline = Arc::clone(&self.shared.pipeline);
        let counters = Arc::clone(pipeline.async_counters());
        let limits = self.shared.limits;
        let max_in_flight = limits.max_streams as usize;
        let max_query = limits.max_request_size;
        let (done_tx, mut done_rx) = mpsc::channel::<Option<Vec<u8>>>(max_in_flight);
        // Room for two maximal frames, so a complete frame always fits behind a partial one.
        let mut input = vec![0u8; 2 * (2 + max_query)];
        let mut filled = 0usize;
        let mut out = vec![0u8; 2 + usize::from(u16::MAX)];
        let mut in_flight = 0usize;
        let mut reading = true;
        // Idle: no frame started and nothing in flight. A started frame must complete within
        // the request timeout (a client trickling bytes cannot hold the connection).
        let idle = tokio::time::sleep(limits.idle_timeout);
        tokio::pin!(idle);
        let mut partial_since: Option<Instant> = None;

        'connection: loop {
            while in_flight < max_in_flight && filled >= 2 {
                let len = usize::from(u16::from_be_bytes([input[0], input[1]]));
                if len == 0 || len > max_query {
                    self.shared.counters.of(Protocol::Tls).bad_request();
                    break 'connection;
                }
                if filled < 2 + len {
                    break;
                }
                let context = ClientContext {
                    client: self.peer,
                    transport: crate::server::pipeline_transport(Protocol::Tls),
                    listener: self.listener_index,
                    client_subnet: None,
                };
                match pipeline.handle(&input[2..2 + len], context, &mut out[2..], &counters) {
                    Outcome::Respond(n) => {
                        let Ok(prefix) = u16::try_from(n) else {
                            break 'connection;
                        };
                        out[..2].copy_from_slice(&prefix.to_be_bytes());
                        if writer.write_all(&out[..2 + n]).await.is_err()
                            || writer.flush().await.is_err()
                        {
                            break 'connection;
                        }
                    }
                    Outcome::Drop => {}
                    Outcome::Resolve(pending) => {
                        in_flight += 1;
                        let pipeline = Arc::clone(&pipeline);
                        let done = done_tx.clone();
                        tokio::spawn(async move {
                            let response = pipeline.answer_pending(*pending, 2).await;
                            let _ = done.send(response).await;
                        });
                    }
                }
                input.copy_within(2 + len..filled, 0);
                filled -= 2 + len;
                idle.as_mut().reset(Instant::now() + limits.idle_timeout);
            }
            if !reading && in_flight == 0 {
                break;
            }
            // A frame the client has begun but not finished starts the request timer (not one
            // that waits only because the in-flight limit is reached); otherwise the idle timer.
            let head = if filled >= 2 {
                usize::from(u16::from_be_bytes([input[0], input[1]]))
            } else {
                0
            };
            let incomplete = filled > 0 && (filled < 2 || filled < 2 + head);
            match (incomplete, partial_since) {
                (true, None) => {
                    let started = Instant::now();
                    partial_since = Some(started);
                    idle.as_mut().reset(started + limits.request_timeout);
                }
                (false, Some(_)) => partial_since = None,
                _ => {}
            }
            let can_read = reading && in_flight < max_in_flight && filled < input.len();
            tokio::select! {
                _ = self.shutdown.changed() => break,
                done = done_rx.recv(), if in_flight > 0 => {
                    in_flight -= 1;
                    if let Some(Some(mut response)) = done {
                        let len = response.len().saturating_sub(2);
                        if let Ok(prefix) = u16::try_from(len) {
                            response[..2].copy_from_slice(&prefix.to_be_bytes());
                            if writer.write_all(&response).await.is_err()
                                || writer.flush().await.is_err()
                            {
                                break;
                            }
                        }
                    }
                    if partial_since.is_none() {
                        idle.as_mut().reset(Instant::now() + limits.idle_timeout);
                    }
                }
                read = reader.read(&mut input[filled..]), if can_read => {
                    match read {
                        Ok(0) | Err(_) => reading = false,
                        Ok(n) => filled += n,
                    }
                }
                _ = &mut idle, if in_flight == 0 || partial_since.is_some() => {
                    self.shared.counters.of(Protocol::Tls).idle_closed();
                    break;
                }
            }
        }
        // close_notify, bounded: a client that does not read cannot hold us here.
        let _ = tokio::time::timeout(limits.request_timeout, writer.shutdown()).await;
    }
}
