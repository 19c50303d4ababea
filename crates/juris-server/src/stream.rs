//! RFC 7766 framing over any byte stream, shared by DNS over TCP ([`crate::tcp`]) and DNS over
//! TLS (`juris-transport`'s `dot`): 2-byte length prefixes, pipelining with answers in
//! completion order, an in-flight limit, an idle timeout and (for DoT) a timeout for a frame
//! that does not arrive whole.
//!
//! ```text
//!  read frames ─► Pipeline::handle ─► hit: write now
//!                                  └► miss: spawn answer_pending ─► channel ─► write
//!  idle (nothing in flight) for idle_timeout, or a frame begun but not finished within
//!  request_timeout (when set) ─► close; a frame of length 0 or over max_query_size ─► close
//! ```

use std::sync::Arc;
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::sync::{mpsc, watch};
use tokio::time::Instant;

use crate::pipeline::{ClientContext, Outcome, Pipeline};

/// Per-connection limits of a framed stream.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FrameLimits {
    /// Close after this long with nothing in flight and no frame begun.
    pub idle_timeout: Duration,
    /// A frame begun must arrive whole within this (`None`: only the idle timeout applies);
    /// also bounds the closing handshake.
    pub request_timeout: Option<Duration>,
    /// Queries being resolved at once; reading pauses at the limit.
    pub max_in_flight: usize,
    /// Largest query accepted; a larger length prefix closes the connection.
    pub max_query_size: usize,
}

/// What a transport counts about its framed connections (nothing by default).
pub trait FrameEvents {
    /// A frame of length 0 or over the limit closed the connection.
    fn bad_frame(&self) {}
    /// The idle or request timer closed the connection.
    fn timed_out(&self) {}
}

/// Counts nothing.
impl FrameEvents for () {}

/// Serves one connection until the client closes it, a timer fires, a frame is bad or a write
/// fails. When `shutdown` changes it drains: reads no more, answers the queries already read
/// (resolving them if need be), then closes; the caller bounds how long that may take. `context` says who the client is (its `client_subnet` is filled
/// in per query by the pipeline).
pub async fn serve_framed<R, W>(
    mut reader: R,
    mut writer: W,
    pipeline: Arc<Pipeline>,
    context: ClientContext,
    limits: FrameLimits,
    mut shutdown: watch::Receiver<bool>,
    events: &impl FrameEvents,
) where
    R: AsyncRead + Unpin,
    W: AsyncWrite + Unpin,
{
    let counters = Arc::clone(pipeline.async_counters());
    let max_in_flight = limits.max_in_flight.max(1);
    let max_query = limits.max_query_size;
    let (done_tx, mut done_rx) = mpsc::channel::<Option<Vec<u8>>>(max_in_flight);
    // Room for two maximal frames, so a complete frame always fits behind a partial one.
    let mut input = vec![0u8; 2 * (2 + max_query)];
    let mut filled = 0usize;
    let mut out = vec![0u8; 2 + usize::from(u16::MAX)];
    let mut in_flight = 0usize;
    let mut reading = true;
    // Idle: no frame started and nothing in flight. A started frame must complete within the
    // request timeout, if there is one (a client trickling bytes cannot hold the connection).
    let idle = tokio::time::sleep(limits.idle_timeout);
    tokio::pin!(idle);
    let mut partial_since: Option<Instant> = None;

    'connection: loop {
        // Answer every complete frame in the buffer (up to the in-flight limit).
        while in_flight < max_in_flight && filled >= 2 {
            let len = usize::from(u16::from_be_bytes([input[0], input[1]]));
            if len == 0 || len > max_query {
                events.bad_frame();
                break 'connection;
            }
            if filled < 2 + len {
                break;
            }
            match pipeline.handle(&input[2..2 + len], context, &mut out[2..], &counters) {
                Outcome::Respond(n) => {
                    let Ok(prefix) = u16::try_from(n) else {
                        break 'connection;
                    };
                    out[..2].copy_from_slice(&prefix.to_be_bytes());
                    if write(&mut writer, &out[..2 + n]).await.is_err() {
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
        if let Some(request_timeout) = limits.request_timeout {
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
                    idle.as_mut().reset(started + request_timeout);
                }
                (false, Some(_)) => partial_since = None,
                _ => {}
            }
        }
        let can_read = reading && in_flight < max_in_flight && filled < input.len();
        tokio::select! {
            // Shutdown drains: no more reading; what was read is answered, then we close.
            _ = shutdown.changed(), if reading => reading = false,
            done = done_rx.recv(), if in_flight > 0 => {
                in_flight -= 1;
                if let Some(Some(mut response)) = done {
                    let len = response.len().saturating_sub(2);
                    if let Ok(prefix) = u16::try_from(len) {
                        response[..2].copy_from_slice(&prefix.to_be_bytes());
                        if write(&mut writer, &response).await.is_err() {
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
                events.timed_out();
                break;
            }
        }
    }
    // Close (for TLS: close_notify), bounded when there is a request timeout: a client that
    // does not read cannot hold us here.
    match limits.request_timeout {
        Some(timeout) => {
            let _ = tokio::time::timeout(timeout, writer.shutdown()).await;
        }
        None => {
            let _ = writer.shutdown().await;
        }
    }
}

/// Writes one frame and flushes it (a no-op on a plain TCP socket; TLS needs it).
async fn write<W: AsyncWrite + Unpin>(writer: &mut W, frame: &[u8]) -> std::io::Result<()> {
    writer.write_all(frame).await?;
    writer.flush().await
}
