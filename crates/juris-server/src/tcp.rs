//! DNS over TCP (RFC 7766) in tokio: 2-byte length framing, pipelining with answers in
//! completion order, idle timeout, connection limit, query size limit.
//!
//! ```text
//!  accept ─► access list? ─► connection permit? ─► one task per connection:
//!     read frames ─► Pipeline::handle ─► hit: write now
//!                                     └► miss: spawn answer_pending ─► channel ─► write
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
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{mpsc, watch, OwnedSemaphorePermit, Semaphore};
use tokio::time::Instant;

use crate::pipeline::{ClientContext, Outcome, Pipeline, Transport};

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
        if !pipeline.allows(peer.ip()) {
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
    async fn run(mut self, stream: TcpStream) {
        let _ = stream.set_nodelay(true);
        let (mut reader, mut writer) = stream.into_split();
        let counters = Arc::clone(self.pipeline.async_counters());
        let settings = self.settings;
        let (done_tx, mut done_rx) = mpsc::channel::<Option<Vec<u8>>>(settings.max_in_flight);
        // Room for two maximal frames, so a complete frame always fits behind a partial one.
        let mut input = vec![0u8; 2 * (2 + settings.max_query_size)];
        let mut filled = 0usize;
        let mut out = vec![0u8; 2 + u16::MAX as usize];
        let mut in_flight = 0usize;
        let mut reading = true;
        let idle = tokio::time::sleep(settings.idle_timeout);
        tokio::pin!(idle);

        'connection: loop {
            // Answer every complete frame in the buffer (up to the in-flight limit).
            while in_flight < settings.max_in_flight && filled >= 2 {
                let len = u16::from_be_bytes([input[0], input[1]]) as usize;
                if len == 0 || len > settings.max_query_size {
                    break 'connection;
                }
                if filled < 2 + len {
                    break;
                }
                let context = ClientContext {
                    client: self.peer,
                    transport: Transport::Tcp,
                    listener: self.listener_index,
                    client_subnet: None,
                };
                let outcome =
                    self.pipeline
                        .handle(&input[2..2 + len], context, &mut out[2..], &counters);
                match outcome {
                    Outcome::Respond(n) => {
                        if write_frame(&mut writer, &mut out, n).await.is_err() {
                            break 'connection;
                        }
                    }
                    Outcome::Drop => {}
                    Outcome::Resolve(pending) => {
                        in_flight += 1;
                        let pipeline = Arc::clone(&self.pipeline);
                        let done = done_tx.clone();
                        tokio::spawn(async move {
                            let response = pipeline.answer_pending(*pending, 2).await;
                            let _ = done.send(response).await;
                        });
                    }
                }
                input.copy_within(2 + len..filled, 0);
                filled -= 2 + len;
                idle.as_mut().reset(Instant::now() + settings.idle_timeout);
            }
            if !reading && in_flight == 0 {
                break;
            }
            let can_read = reading && in_flight < settings.max_in_flight && filled < input.len();
            tokio::select! {
                _ = self.shutdown.changed() => break,
                done = done_rx.recv(), if in_flight > 0 => {
                    in_flight -= 1;
                    if let Some(Some(mut response)) = done {
                        let len = response.len().saturating_sub(2);
                        if let Ok(prefix) = u16::try_from(len) {
                            response[..2].copy_from_slice(&prefix.to_be_bytes());
                            if writer.write_all(&response).await.is_err() {
                                break;
                            }
                        }
                    }
                    idle.as_mut().reset(Instant::now() + settings.idle_timeout);
                }
                read = reader.read(&mut input[filled..]), if can_read => {
                    match read {
                        Ok(0) | Err(_) => reading = false,
                        Ok(n) => filled += n,
                    }
                }
                _ = &mut idle, if in_flight == 0 => break,
            }
        }
        let _ = writer.shutdown().await;
    }
}

async fn write_frame(
    writer: &mut tokio::net::tcp::OwnedWriteHalf,
    out: &mut [u8],
    len: usize,
) -> io::Result<()> {
    let prefix = u16::try_from(len).map_err(|_| io::Error::other("response over 65535 bytes"))?;
    out[..2].copy_from_slice(&prefix.to_be_bytes());
    writer.write_all(&out[..2 + len]).await
}
