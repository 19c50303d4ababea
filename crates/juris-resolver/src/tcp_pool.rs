//! Upstream TCP connections: reused and pipelined per server (RFC 7766 §6.2.1.1, §7).
//!
//! A query that must go over TCP (a truncated UDP answer) is handed to a connection to its
//! server: an open one with room if there is one (reuse), else a new one. A connection
//! carries up to [`TcpLimits::queries_per_connection`] queries at once (pipelining); their
//! answers are matched by message ID and question, in whatever order they come (RFC 7766
//! §7: servers may answer out of order). At most [`TcpLimits::per_server`] connections per
//! server and [`TcpLimits::total`] in all; when every place is taken the query fails at once
//! with [`PoolError::Busy`] (the engines try another server), and an idle connection of
//! another server is closed to make room for a new one.
//!
//! Each connection is one task on a dedicated single-thread runtime (`juris-upstream-tcp`):
//! queries arrive on a channel, are written as they come, and the task reads answers and
//! hands each to its asker. A UDP worker's runtime never holds a connection's task, so a
//! worker with a warm cache still blocks in `recvmmsg` (design 0005) — TCP is the rare path,
//! one thread hop per query is cheap beside a TCP round trip.
//!
//! A connection ends when it has had nothing to answer for its idle time
//! ([`TcpLimits::idle`], shortened by the server's edns-tcp-keepalive, RFC 7828 §3.2.2; a
//! keepalive of 0 stops new queries on it), when the server closes it, when a read or write
//! fails, or when the server sends a message that answers none of its queries (garbage):
//! the queries still waiting on it then fail with [`PoolError::Lost`] and are asked again,
//! once, by the caller. A connection whose queries go unanswered while the server keeps it
//! open is retired by the caller ([`Conn::retire`]): no new query is given to it.
//!
//! The pool ([`TcpPool`]) belongs to one resolver (its engine), so each resolver of a process
//! keeps its own connections and limits; the connections' runtime thread and the counters
//! (`juris_upstream_tcp_total`) are the process's, shared by every pool.

use std::io;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;

use bytes::{Buf, Bytes, BytesMut};
use domain::base::{Message, Name, Rtype, ToName};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::sync::{mpsc, oneshot};
use tokio::time::Instant;

/// Bounds of the upstream TCP connections (`resolver.limits.tcp_*`, [`crate::Limits`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct TcpLimits {
    /// Connections per server.
    pub per_server: usize,
    /// Connections in all.
    pub total: usize,
    /// Queries outstanding at once on one connection.
    pub queries_per_connection: usize,
    /// How long a connection with nothing to answer is kept open.
    pub idle: Duration,
}

impl From<&crate::Limits> for TcpLimits {
    fn from(limits: &crate::Limits) -> Self {
        let count = crate::resolver::table_bound;
        Self {
            per_server: count(limits.tcp_connections_per_server),
            total: count(limits.tcp_connections),
            queries_per_connection: count(limits.tcp_queries_per_connection),
            idle: Duration::from_millis(limits.tcp_idle_ms),
        }
    }
}

/// How long a new connection may take to be established.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);

/// Why a query given to the pool got no answer bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum PoolError {
    /// Every connection place is taken (per server or in all).
    Busy,
    /// The connection could not be established (or the TCP runtime could not start).
    Connect(io::ErrorKind),
    /// The connection ended (closed by the server, garbage, a failed read or write) before
    /// the answer came: worth asking again on another connection.
    Lost,
}

/// Counters of the upstream TCP connections (`/metrics` `juris_upstream_tcp_total`).
#[derive(Debug, Default)]
struct Counters {
    opened: AtomicU64,
    reused: AtomicU64,
    pipelined: AtomicU64,
    lost: AtomicU64,
    retried: AtomicU64,
    busy: AtomicU64,
}

static COUNTERS: Counters = Counters {
    opened: AtomicU64::new(0),
    reused: AtomicU64::new(0),
    pipelined: AtomicU64::new(0),
    lost: AtomicU64::new(0),
    retried: AtomicU64::new(0),
    busy: AtomicU64::new(0),
};

/// The counters as (event, count): `opened` connections, queries given to a `reused`
/// connection (one opened for an earlier query), queries `pipelined` (sent while another
/// was outstanding on the same connection), queries whose connection was `lost` before the
/// answer, queries `retried` on another connection, queries refused as `busy` (no place).
pub fn upstream_tcp_counters() -> Vec<(&'static str, u64)> {
    let c = &COUNTERS;
    [
        ("opened", &c.opened),
        ("reused", &c.reused),
        ("pipelined", &c.pipelined),
        ("lost", &c.lost),
        ("retried", &c.retried),
        ("busy", &c.busy),
    ]
    .into_iter()
    .map(|(event, counter)| (event, counter.load(Ordering::Relaxed)))
    .collect()
}

/// Counts a query asked again after [`PoolError::Lost`] or a retired connection.
pub(crate) fn count_retry() {
    COUNTERS.retried.fetch_add(1, Ordering::Relaxed);
}

/// The upstream TCP connections of one resolver and their limits: each engine (recursor or
/// forwarder) owns one, built from its `resolver.limits.tcp_*`, and every resolution task of
/// that resolver shares it. Two resolvers in one process (tests, a forwarder beside a
/// recursor) so keep their own connections and limits. Dropping the pool lets every
/// connection close as soon as no caller holds it (its queue's sender is gone).
#[derive(Debug)]
pub(crate) struct TcpPool {
    pool: Mutex<Pool>,
}

impl TcpPool {
    /// An empty pool with `limits`.
    pub(crate) fn new(limits: TcpLimits) -> Self {
        Self {
            pool: Mutex::new(Pool {
                limits,
                conns: Vec::new(),
            }),
        }
    }

    /// [`acquire_in`] this pool.
    pub(crate) fn acquire(&self, server: SocketAddr) -> Result<(Arc<Conn>, bool), PoolError> {
        acquire_in(&mut crate::resolver::lock(&self.pool), server)
    }

    /// The limits in force.
    #[cfg(test)]
    pub(crate) fn limits(&self) -> TcpLimits {
        crate::resolver::lock(&self.pool).limits
    }
}

/// The open connections and the limits in force.
#[derive(Debug)]
struct Pool {
    limits: TcpLimits,
    conns: Vec<Arc<Conn>>,
}

/// One connection to one server, shared by the askers and its task.
#[derive(Debug)]
pub(crate) struct Conn {
    server: SocketAddr,
    /// Queries to write; the task takes them while it has room.
    requests: mpsc::Sender<Request>,
    /// Queries given to this connection and not yet answered or failed.
    outstanding: AtomicUsize,
    /// No new queries (the task ended, the server asked, or a caller gave up on it).
    retired: AtomicBool,
}

impl Conn {
    /// No new query goes to this connection; it closes once its queries are done.
    pub(crate) fn retire(&self) {
        self.retired.store(true, Ordering::Relaxed);
    }

    fn usable(&self) -> bool {
        !self.retired.load(Ordering::Relaxed) && !self.requests.is_closed()
    }

    /// Sends `framed` (length prefix included) and waits for the message that answers
    /// `id` + question.
    pub(crate) async fn ask(
        &self,
        framed: Vec<u8>,
        id: u16,
        qname: &Name<Bytes>,
        qtype: Rtype,
    ) -> Result<Bytes, PoolError> {
        let (reply, answer) = oneshot::channel();
        let request = Request {
            framed,
            id,
            qname: qname.clone(),
            qtype,
            reply,
        };
        if self.requests.try_send(request).is_err() {
            self.outstanding.fetch_sub(1, Ordering::Relaxed);
            COUNTERS.lost.fetch_add(1, Ordering::Relaxed);
            return Err(PoolError::Lost);
        }
        answer.await.unwrap_or(Err(PoolError::Lost))
    }
}

/// One query for a connection's task.
struct Request {
    framed: Vec<u8>,
    id: u16,
    qname: Name<Bytes>,
    qtype: Rtype,
    reply: oneshot::Sender<Result<Bytes, PoolError>>,
}

/// A connection for one more query to `server`, and whether it is a reuse: an open one
/// with room (the first in the pool's order: queries are packed onto the oldest connection
/// before another is opened), else a new one if the limits allow.
fn acquire_in(pool: &mut Pool, server: SocketAddr) -> Result<(Arc<Conn>, bool), PoolError> {
    pool.conns.retain(|c| !c.requests.is_closed());
    let limits = pool.limits;
    let room = pool.conns.iter().find(|c| {
        c.server == server
            && c.usable()
            && c.outstanding.load(Ordering::Relaxed) < limits.queries_per_connection.max(1)
    });
    if let Some(conn) = room {
        let before = conn.outstanding.fetch_add(1, Ordering::Relaxed);
        COUNTERS.reused.fetch_add(1, Ordering::Relaxed);
        if before > 0 {
            COUNTERS.pipelined.fetch_add(1, Ordering::Relaxed);
        }
        return Ok((conn.clone(), true));
    }
    let busy = || {
        COUNTERS.busy.fetch_add(1, Ordering::Relaxed);
        Err(PoolError::Busy)
    };
    // Retired connections still hold their place until their queries are done.
    if pool.conns.iter().filter(|c| c.server == server).count() >= limits.per_server.max(1) {
        return busy();
    }
    if pool.conns.len() >= limits.total.max(1) {
        // Make room by closing the connection idle the longest (the first idle one: the
        // pool is in order of opening).
        match pool
            .conns
            .iter()
            .position(|c| c.outstanding.load(Ordering::Relaxed) == 0)
        {
            Some(at) => {
                let evicted = pool.conns.remove(at);
                evicted.retire();
                // Dropping its sender ends the task once no caller holds the connection.
            }
            None => return busy(),
        }
    }
    let handle = match runtime() {
        Ok(handle) => handle,
        Err(kind) => return Err(PoolError::Connect(kind)),
    };
    let capacity = limits.queries_per_connection.max(1);
    let (requests, receiver) = mpsc::channel(capacity);
    let conn = Arc::new(Conn {
        server,
        requests,
        outstanding: AtomicUsize::new(1),
        retired: AtomicBool::new(false),
    });
    pool.conns.push(conn.clone());
    COUNTERS.opened.fetch_add(1, Ordering::Relaxed);
    handle.spawn(run(Arc::downgrade(&conn), server, receiver, limits.idle));
    Ok((conn, false))
}

/// The dedicated runtime of the connections' tasks, started on first use.
fn runtime() -> Result<&'static tokio::runtime::Handle, io::ErrorKind> {
    static RUNTIME: OnceLock<Result<tokio::runtime::Handle, io::ErrorKind>> = OnceLock::new();
    RUNTIME
        .get_or_init(|| {
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .map_err(|e| e.kind())?;
            let handle = runtime.handle().clone();
            std::thread::Builder::new()
                .name("juris-upstream-tcp".into())
                .spawn(move || runtime.block_on(std::future::pending::<()>()))
                .map_err(|e| e.kind())?;
            Ok(handle)
        })
        .as_ref()
        .map_err(|kind| *kind)
}

/// A query written on the connection, waiting for its answer.
struct Pending {
    id: u16,
    qname: Name<Bytes>,
    qtype: Rtype,
    reply: oneshot::Sender<Result<Bytes, PoolError>>,
}

/// The task of one connection: connects, writes the queries as they come, reads the
/// answers and hands each to its asker, until the connection ends (module docs).
async fn run(
    conn: std::sync::Weak<Conn>,
    server: SocketAddr,
    mut requests: mpsc::Receiver<Request>,
    mut idle: Duration,
) {
    let stream = match tokio::time::timeout(CONNECT_TIMEOUT, TcpStream::connect(server)).await {
        Ok(Ok(stream)) => stream,
        Ok(Err(e)) => {
            tracing::debug!(%server, error = %e, "upstream tcp connect failed");
            fail_all(
                &conn,
                &mut requests,
                Vec::new(),
                PoolError::Connect(e.kind()),
            );
            return;
        }
        Err(_) => {
            tracing::debug!(%server, "upstream tcp connect timed out");
            let timeout = PoolError::Connect(io::ErrorKind::TimedOut);
            fail_all(&conn, &mut requests, Vec::new(), timeout);
            return;
        }
    };
    let (mut reader, mut writer) = stream.into_split();
    let mut pending: Vec<Pending> = Vec::new();
    let mut buffer = BytesMut::with_capacity(4096);
    let mut accepting = true;
    // Nothing to answer since this instant (the idle timer), or answers awaited since.
    let mut quiet_since = Instant::now();
    loop {
        let check_at = quiet_since + idle;
        tokio::select! {
            request = requests.recv(), if accepting => {
                let Some(request) = request else {
                    // The pool dropped this connection: finish what is pending.
                    accepting = false;
                    if pending.is_empty() {
                        break;
                    }
                    continue;
                };
                if request.reply.is_closed() {
                    done(&conn);
                    continue;
                }
                if let Err(e) = writer.write_all(&request.framed).await {
                    tracing::debug!(%server, error = %e, "upstream tcp write failed");
                    let _ = request.reply.send(Err(PoolError::Lost));
                    done(&conn);
                    break;
                }
                if pending.is_empty() {
                    quiet_since = Instant::now();
                }
                pending.push(Pending {
                    id: request.id,
                    qname: request.qname,
                    qtype: request.qtype,
                    reply: request.reply,
                });
            }
            read = reader.read_buf(&mut buffer) => {
                match read {
                    Ok(0) => {
                        tracing::debug!(%server, waiting = pending.len(), "upstream tcp connection closed by the server");
                        break;
                    }
                    Err(e) => {
                        tracing::debug!(%server, error = %e, "upstream tcp read failed");
                        break;
                    }
                    Ok(_) => {}
                }
                match answer_frames(&mut buffer, &mut pending, &conn) {
                    Ok(keepalive) => {
                        if let Some(keepalive) = keepalive {
                            idle = idle.min(keepalive);
                        }
                        quiet_since = Instant::now();
                    }
                    Err(()) => {
                        tracing::debug!(%server, "upstream tcp message answers no query: dropping the connection");
                        break;
                    }
                }
                // Done with the last query of a connection that takes no more (the pool let
                // it go, the server's keepalive said 0, or an asker retired it): close now,
                // which also frees its place.
                let retired = conn.upgrade().is_none_or(|c| c.retired.load(Ordering::Relaxed));
                if pending.is_empty() && requests.is_empty() && (!accepting || retired) {
                    break;
                }
            }
            () = tokio::time::sleep_until(check_at) => {
                // Idle for its time, or nothing answered for that long: close. Askers
                // still waiting get `Lost` (theirs will have timed out by then).
                break;
            }
        }
    }
    if let Some(conn) = conn.upgrade() {
        conn.retire();
    }
    fail_all(&conn, &mut requests, pending, PoolError::Lost);
}

/// One query of the connection is done (answered or failed).
fn done(conn: &std::sync::Weak<Conn>) {
    if let Some(conn) = conn.upgrade() {
        conn.outstanding.fetch_sub(1, Ordering::Relaxed);
    }
}

/// Fails the `pending` queries and those still queued with `error`, and stops the queue.
fn fail_all(
    conn: &std::sync::Weak<Conn>,
    requests: &mut mpsc::Receiver<Request>,
    pending: Vec<Pending>,
    error: PoolError,
) {
    requests.close();
    let queued = std::iter::from_fn(|| requests.try_recv().ok()).map(|r| r.reply);
    for reply in pending.into_iter().map(|p| p.reply).chain(queued) {
        if error == PoolError::Lost && !reply.is_closed() {
            COUNTERS.lost.fetch_add(1, Ordering::Relaxed);
        }
        let _ = reply.send(Err(error));
        done(conn);
    }
}

/// Hands every complete message in `buffer` to the pending query it answers (ID and
/// question). `Err` when a message answers none (garbage, or a stray answer). `Ok` with the
/// shortest edns-tcp-keepalive timeout the messages carried, if any.
fn answer_frames(
    buffer: &mut BytesMut,
    pending: &mut Vec<Pending>,
    conn: &std::sync::Weak<Conn>,
) -> Result<Option<Duration>, ()> {
    let mut keepalive: Option<Duration> = None;
    while buffer.len() >= 2 {
        let len = usize::from(u16::from_be_bytes([buffer[0], buffer[1]]));
        if buffer.len() < 2 + len {
            break;
        }
        buffer.advance(2);
        let message = buffer.split_to(len).freeze();
        let Some(at) = pending.iter().position(|p| answers(&message, p)) else {
            return Err(());
        };
        if let Some(timeout) = tcp_keepalive(&message) {
            keepalive = Some(keepalive.map_or(timeout, |k| k.min(timeout)));
            // Before the asker hears back, so that its next query already avoids it.
            if let Some(conn) = conn.upgrade().filter(|_| timeout.is_zero()) {
                conn.retire();
            }
        }
        let asked = pending.swap_remove(at);
        let _ = asked.reply.send(Ok(message));
        done(conn);
    }
    Ok(keepalive)
}

/// Whether `message` is a response with the ID and question of `query` (name compared
/// case-insensitively). The full check (cookie, sections) is the asker's.
fn answers(message: &Bytes, query: &Pending) -> bool {
    let Ok(parsed) = Message::from_octets(message.clone()) else {
        return false;
    };
    let header = parsed.header();
    if header.id() != query.id || !header.qr() {
        return false;
    }
    match parsed.sole_question() {
        Ok(question) => question.qtype() == query.qtype && question.qname().name_eq(&query.qname),
        // Error answers may omit the question (as `upstream::check_and_parse` accepts).
        Err(_) => parsed.header_counts().qdcount() == 0,
    }
}

/// The edns-tcp-keepalive timeout a response carries (RFC 7828 §3.2.2), if any.
fn tcp_keepalive(message: &Bytes) -> Option<Duration> {
    let parsed = Message::from_octets(message.clone()).ok()?;
    let opt = parsed.opt()?;
    let timeout = opt.opt().tcp_keepalive()?.timeout()?;
    Some(Duration::from(timeout))
}

/// Reads one length-prefixed message from `stream` (tests' fake authorities).
#[cfg(test)]
pub(crate) async fn read_frame(stream: &mut TcpStream) -> Option<Vec<u8>> {
    let mut prefix = [0u8; 2];
    stream.read_exact(&mut prefix).await.ok()?;
    let mut message = vec![0u8; usize::from(u16::from_be_bytes(prefix))];
    stream.read_exact(&mut message).await.ok()?;
    Some(message)
}

#[cfg(test)]
#[allow(clippy::unwrap_used, reason = "test code")]
mod tests {
    use super::*;

    #[test]
    fn each_resolver_keeps_the_tcp_limits_it_was_built_with() {
        use crate::{Mode, Resolver, ResolverConfig};
        let build = |mode: Mode, limits: crate::Limits| {
            let config = ResolverConfig {
                mode,
                limits,
                ..ResolverConfig::default()
            };
            let cache = Arc::new(crate::cache::AnswerCache::new(
                crate::cache::CacheConfig::default(),
            ));
            Resolver::new(config, cache, Arc::new(crate::clock::SystemClock)).unwrap()
        };
        let own = crate::Limits {
            tcp_connections_per_server: 1,
            tcp_connections: 3,
            tcp_queries_per_connection: 1,
            tcp_idle_ms: 500,
            ..crate::Limits::default()
        };
        let recursor = build(
            Mode::Recursive {
                root_hints: crate::builtin_root_hints(),
            },
            own.clone(),
        );
        // Built after it, with the defaults: before, the last resolver set every pool's limits.
        let forwarder = build(
            Mode::Forward {
                upstreams: vec!["192.0.2.1:53".parse().unwrap()],
            },
            crate::Limits::default(),
        );
        assert_eq!(recursor.tcp_pool().limits(), TcpLimits::from(&own));
        assert_eq!(
            forwarder.tcp_pool().limits(),
            TcpLimits::from(&crate::Limits::default())
        );
        assert!(!std::ptr::eq(recursor.tcp_pool(), forwarder.tcp_pool()));
    }

    #[tokio::test]
    async fn connections_are_capped_per_server_and_in_all() {
        // A listener that accepts and never answers: connections stay open.
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let a = listener.local_addr().unwrap();
        let other = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let b = other.local_addr().unwrap();
        let mut pool = Pool {
            limits: TcpLimits {
                per_server: 2,
                total: 2,
                queries_per_connection: 2,
                idle: Duration::from_secs(10),
            },
            conns: Vec::new(),
        };
        let (first, reused) = acquire_in(&mut pool, a).unwrap();
        assert!(!reused);
        // The second query shares the first connection (pipelined), the third opens another.
        let (second, reused) = acquire_in(&mut pool, a).unwrap();
        assert!(reused && Arc::ptr_eq(&first, &second));
        let (third, reused) = acquire_in(&mut pool, a).unwrap();
        assert!(!reused && !Arc::ptr_eq(&first, &third));
        acquire_in(&mut pool, a).unwrap();
        // Both connections full, and two per server: busy.
        assert_eq!(acquire_in(&mut pool, a).unwrap_err(), PoolError::Busy);
        // Two in all, none idle: another server finds no place either...
        assert_eq!(acquire_in(&mut pool, b).unwrap_err(), PoolError::Busy);
        // ...until one of them is idle: it is closed to make room.
        third.outstanding.store(0, Ordering::Relaxed);
        let (fourth, reused) = acquire_in(&mut pool, b).unwrap();
        assert!(!reused);
        assert!(third.retired.load(Ordering::Relaxed));
        assert_eq!(pool.conns.len(), 2);
        assert!(pool.conns.iter().any(|c| Arc::ptr_eq(c, &fourth)));
        // A retired connection takes no new query, even with room.
        first.outstanding.store(1, Ordering::Relaxed);
        first.retire();
        assert_eq!(acquire_in(&mut pool, a).unwrap_err(), PoolError::Busy);
    }
}
