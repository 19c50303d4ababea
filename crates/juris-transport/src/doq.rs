//! DNS over QUIC (RFC 9250) with quinn: one query per client-initiated bidirectional stream,
//! each message behind a 2-byte length, message ID 0.
//!
//! ```text
//!  Incoming ─► access list? permit? (else refused) ─► handshake (timeout) ─► connection:
//!     accept_bi (at most max_streams at once: QUIC stream credit) ─► task per stream:
//!        read length + query (request timeout) ─► ID ≠ 0 / FIN too early / length < 12
//!              ─► CONNECTION_CLOSE DOQ_PROTOCOL_ERROR
//!        Pipeline::handle ─► hit/block now, miss: answer_pending ─► write length + answer, FIN
//!     no traffic for idle_timeout ─► QUIC idle close
//! ```
//!
//! # Limitations
//! - No 0-RTT (RFC 9250 §4.5 makes it optional; a replayed query would be answered twice).
//! - No EDNS(0) padding (RFC 9250 §5.4 recommends it) of responses yet.
//! - A query carrying the EDNS TCP keepalive option is answered instead of being treated as
//!   a protocol error (RFC 9250 §5.5.2).
//! - A query longer than the size limit resets its stream with `DOQ_PROTOCOL_ERROR` (the RFC
//!   names no code for it); a message the pipeline drops does the same.

use std::net::SocketAddr;
use std::sync::Arc;

use juris_resolver::wire;
use juris_server::{ClientContext, Outcome};
use quinn::crypto::rustls::QuicServerConfig;
use quinn::{Connection, Endpoint, EndpointConfig, RecvStream, SendStream, VarInt};
use tokio::sync::{watch, Semaphore};

use crate::config::{Limits, Protocol};
use crate::server::{Shared, TransportError};
use crate::tls::CertificateStore;

/// No error: used when the connection is closed normally.
pub const DOQ_NO_ERROR: u32 = 0x0;
/// The server had an internal error.
pub const DOQ_INTERNAL_ERROR: u32 = 0x1;
/// The peer broke the protocol (message ID ≠ 0, short stream, …).
pub const DOQ_PROTOCOL_ERROR: u32 = 0x2;
/// A request was cancelled (here: it did not arrive within the request timeout).
pub const DOQ_REQUEST_CANCELLED: u32 = 0x3;
/// The server is overloaded.
pub const DOQ_EXCESSIVE_LOAD: u32 = 0x4;

/// The QUIC crypto configuration: TLS 1.3, ALPN `doq`, the shared certificate store.
pub(crate) fn crypto(
    store: &Arc<CertificateStore>,
) -> Result<Arc<QuicServerConfig>, TransportError> {
    let tls = store.doq_config()?;
    QuicServerConfig::try_from(tls)
        .map(Arc::new)
        .map_err(|error| TransportError::Quic(error.to_string()))
}

/// Binds a QUIC endpoint (must be called inside the tokio runtime).
pub(crate) fn endpoint(
    addr: SocketAddr,
    crypto: &Arc<QuicServerConfig>,
    limits: &Limits,
) -> std::io::Result<Endpoint> {
    let mut server = quinn::ServerConfig::with_crypto(Arc::clone(crypto) as _);
    let mut transport = quinn::TransportConfig::default();
    transport
        .max_concurrent_bidi_streams(VarInt::from_u32(limits.max_streams))
        .max_concurrent_uni_streams(VarInt::from_u32(0))
        .max_idle_timeout(quinn::IdleTimeout::try_from(limits.idle_timeout).ok())
        .keep_alive_interval(None);
    server.transport_config(Arc::new(transport));
    let socket = crate::server::bind_udp(addr)?;
    Endpoint::new(
        EndpointConfig::default(),
        Some(server),
        socket,
        Arc::new(quinn::TokioRuntime),
    )
}

/// Accepts connections until shutdown.
pub(crate) async fn serve(
    endpoint: Endpoint,
    listener_index: usize,
    shared: Arc<Shared>,
    connections: Arc<Semaphore>,
    mut shutdown: watch::Receiver<bool>,
) {
    let counters = shared.counters.of(Protocol::Quic);
    loop {
        let incoming = tokio::select! {
            _ = shutdown.changed() => break,
            incoming = endpoint.accept() => incoming,
        };
        let Some(incoming) = incoming else {
            break;
        };
        if !shared.pipeline.allows(incoming.remote_address().ip()) {
            counters.rejected();
            incoming.refuse();
            continue;
        }
        let Ok(permit) = Arc::clone(&connections).try_acquire_owned() else {
            counters.rejected();
            incoming.refuse();
            continue;
        };
        counters.connection();
        let shared = Arc::clone(&shared);
        let mut shutdown = shutdown.clone();
        tokio::spawn(async move {
            let _permit = permit;
            let limits = shared.limits;
            let connecting = match incoming.accept() {
                Ok(connecting) => connecting,
                Err(_) => {
                    shared.counters.of(Protocol::Quic).handshake_failure();
                    return;
                }
            };
            let connection = match tokio::time::timeout(limits.handshake_timeout, connecting).await
            {
                Ok(Ok(connection)) => connection,
                Ok(Err(_)) | Err(_) => {
                    shared.counters.of(Protocol::Quic).handshake_failure();
                    return;
                }
            };
            loop {
                let stream = tokio::select! {
                    _ = shutdown.changed() => {
                        connection.close(DOQ_NO_ERROR.into(), b"shutting down");
                        break;
                    }
                    stream = connection.accept_bi() => stream,
                };
                match stream {
                    Ok((send, recv)) => {
                        tokio::spawn(answer_stream(
                            Arc::clone(&shared),
                            connection.clone(),
                            listener_index,
                            send,
                            recv,
                        ));
                    }
                    Err(quinn::ConnectionError::TimedOut) => {
                        shared.counters.of(Protocol::Quic).idle_closed();
                        break;
                    }
                    Err(_) => break,
                }
            }
        });
    }
    endpoint.close(DOQ_NO_ERROR.into(), b"shutting down");
}

/// What went wrong reading a query.
enum ReadFailure {
    /// A protocol error: the whole connection is closed.
    Protocol(&'static str),
    /// Too large: this stream is reset.
    TooLarge,
    /// The stream or connection went away: nothing to do.
    Gone,
}

async fn read_query(recv: &mut RecvStream, max: usize) -> Result<Vec<u8>, ReadFailure> {
    let mut prefix = [0u8; 2];
    recv.read_exact(&mut prefix).await.map_err(read_failure)?;
    let len = usize::from(u16::from_be_bytes(prefix));
    if len < wire::HEADER_LEN {
        return Err(ReadFailure::Protocol("message shorter than a DNS header"));
    }
    if len > max {
        return Err(ReadFailure::TooLarge);
    }
    let mut message = vec![0u8; len];
    recv.read_exact(&mut message).await.map_err(read_failure)?;
    if message[..2] != [0, 0] {
        return Err(ReadFailure::Protocol("message ID must be 0"));
    }
    Ok(message)
}

fn read_failure(error: quinn::ReadExactError) -> ReadFailure {
    match error {
        // RFC 9250 §4.3.3: a FIN before the whole message is a protocol error.
        quinn::ReadExactError::FinishedEarly(_) => {
            ReadFailure::Protocol("stream ended inside a message")
        }
        quinn::ReadExactError::ReadError(_) => ReadFailure::Gone,
    }
}

async fn answer_stream(
    shared: Arc<Shared>,
    connection: Connection,
    listener_index: usize,
    mut send: SendStream,
    mut recv: RecvStream,
) {
    let limits = shared.limits;
    let counters = shared.counters.of(Protocol::Quic);
    let read = tokio::time::timeout(
        limits.request_timeout,
        read_query(&mut recv, limits.max_request_size),
    )
    .await;
    let query = match read {
        Ok(Ok(query)) => query,
        Ok(Err(ReadFailure::Protocol(reason))) => {
            counters.bad_request();
            connection.close(DOQ_PROTOCOL_ERROR.into(), reason.as_bytes());
            return;
        }
        Ok(Err(ReadFailure::TooLarge)) => {
            counters.bad_request();
            let _ = recv.stop(DOQ_PROTOCOL_ERROR.into());
            let _ = send.reset(DOQ_PROTOCOL_ERROR.into());
            return;
        }
        Ok(Err(ReadFailure::Gone)) => return,
        Err(_) => {
            counters.idle_closed();
            let _ = recv.stop(DOQ_REQUEST_CANCELLED.into());
            let _ = send.reset(DOQ_REQUEST_CANCELLED.into());
            return;
        }
    };
    let context = ClientContext {
        client: connection.remote_address(),
        transport: crate::server::pipeline_transport(Protocol::Quic),
        listener: listener_index,
        client_subnet: None,
    };
    let pipeline = &shared.pipeline;
    let mut out = vec![0u8; 2 + usize::from(u16::MAX)];
    let response = match pipeline.handle(&query, context, &mut out[2..], pipeline.async_counters())
    {
        Outcome::Respond(len) => {
            out.truncate(2 + len);
            Some(out)
        }
        Outcome::Drop => None,
        Outcome::Resolve(pending) => pipeline.answer_pending(*pending, 2).await,
    };
    let Some(mut response) = response else {
        let _ = send.reset(DOQ_PROTOCOL_ERROR.into());
        return;
    };
    // Both paths leave the 2 reserved bytes in front of the message.
    let Ok(len) = u16::try_from(response.len().saturating_sub(2)) else {
        let _ = send.reset(DOQ_INTERNAL_ERROR.into());
        return;
    };
    response[..2].copy_from_slice(&len.to_be_bytes());
    if send.write_all(&response).await.is_ok() {
        let _ = send.finish();
    }
}
