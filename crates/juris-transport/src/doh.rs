//! DNS over HTTPS (RFC 8484) at `/dns-query`: GET with a `dns` parameter (base64url, no
//! padding) and POST with an `application/dns-message` body, over HTTP/2 (ALPN `h2`) and
//! HTTP/1.1.
//!
//! ```text
//!  accept ─► access list (or trusted proxy)? ─► permit? ─► TLS handshake (timeout)
//!   ─► hyper (h2: max_concurrent_streams; h1: header read timeout)
//!        over ResponseRecords (h2: one TLS record per response, for dnsperf-like clients)
//!        each request: path? method? content type? size? ─► 404/405/415/413/400
//!                      client = peer, or the Forwarded hop if the peer is a trusted proxy
//!                      Pipeline::handle ─► hit/block now, miss: answer_pending
//!                      200 application/dns-message, Cache-Control: max-age=<min TTL>, private
//!   no request in flight for idle_timeout ─► GOAWAY / close
//! ```
//! `Cache-Control` is `private`: an answer depends on the client's jurisdiction, so a shared
//! HTTP cache must not hand it to someone else. Blocked, refused and failed answers get
//! `max-age=0`.
//!
//! Responses to queries with an EDNS(0) Padding option are padded to 468-byte blocks by the
//! pipeline (RFC 8467), as on DoT and DoQ.
//!
//! # Limitations
//! - The `Accept` header is not checked (the answer is always `application/dns-message`).
//! - HTTP/3 is not served.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, PoisonError};

use base64::Engine as _;
use bytes::Bytes;
use http::{header, HeaderValue, Method, Request, Response, StatusCode};
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto;
use juris_resolver::wire;
use juris_server::codes::{ede, option_code};
use juris_server::{ClientContext, Outcome};
use tokio::net::TcpListener;
use tokio::sync::{watch, Semaphore};
use tokio::time::Instant;
use tokio_rustls::TlsAcceptor;

use crate::accept::accept_tls;
use crate::config::Protocol;
use crate::forwarded::{self, ClientSource};
use crate::records::ResponseRecords;
use crate::server::Shared;

/// The DoH path (RFC 8484 §3 leaves it to the server; `/dns-query` is the usual one).
pub const DOH_PATH: &str = "/dns-query";
/// The DoH media type (RFC 8484 §6).
pub const DOH_MEDIA_TYPE: &str = "application/dns-message";

thread_local! {
    /// Where `Pipeline::handle` writes a response, one per runtime thread: room for the
    /// largest DNS message without allocating and zeroing 64 KiB per request (that memset
    /// was 14% of the listener's CPU under dnsperf); the answer is copied out at its size.
    static RESPONSE_BUFFER: std::cell::RefCell<Vec<u8>> =
        std::cell::RefCell::new(vec![0u8; usize::from(u16::MAX)]);
}

/// Largest HTTP header block accepted (h2 header list, h1 buffer): a GET query of the
/// largest accepted size in base64 fits easily.
const MAX_HEADER_BYTES: usize = 16 * 1024;

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
            let shared = Arc::clone(&shared);
            let shutdown = shutdown.clone();
            serve_connection(stream, peer, permit, listener_index, shared, shutdown)
        }
    };
    // A trusted proxy may be outside the access list: its clients are checked per request.
    let admit = |shared: &Shared, ip: std::net::IpAddr| {
        shared
            .trusted_proxies
            .iter()
            .any(|net| net.contains(&ip.to_canonical()))
            || shared.pipeline.allows(ip)
    };
    accept_tls(
        listener,
        acceptor,
        shared,
        connections,
        shutdown,
        Protocol::Https,
        admit,
        on_connection,
    )
    .await;
}

/// Serves HTTP/2 (or HTTP/1.1) on one established TLS connection until it closes, idles out or
/// the server shuts down.
async fn serve_connection(
    stream: tokio_rustls::server::TlsStream<tokio::net::TcpStream>,
    peer: SocketAddr,
    permit: tokio::sync::OwnedSemaphorePermit,
    listener_index: usize,
    shared: Arc<Shared>,
    mut shutdown: watch::Receiver<bool>,
) {
    let _permit = permit;
    let limits = shared.limits;
    let h2 = stream.get_ref().1.alpn_protocol() == Some(crate::tls::ALPN_H2);
    let connection = Arc::new(ConnectionState {
        shared: Arc::clone(&shared),
        peer,
        listener_index,
        activity: Activity::new(),
    });
    let service = {
        let connection = Arc::clone(&connection);
        hyper::service::service_fn(move |request| {
            let connection = Arc::clone(&connection);
            async move { Ok::<_, std::convert::Infallible>(connection.respond(request).await) }
        })
    };
    let mut builder = auto::Builder::new(TokioExecutor::new());
    builder
        .http1()
        .timer(TokioTimer::new())
        .header_read_timeout(limits.request_timeout)
        .max_buf_size(MAX_HEADER_BYTES.max(8192))
        .keep_alive(true);
    builder
        .http2()
        .timer(TokioTimer::new())
        .max_concurrent_streams(limits.max_streams)
        .max_header_list_size(MAX_HEADER_BYTES as u32)
        .max_pending_accept_reset_streams(Some(limits.max_streams as usize))
        .keep_alive_interval(None);
    let builder = if h2 {
        builder.http2_only()
    } else {
        builder.http1_only()
    };
    // HTTP/2: each response in TLS records of its own (records.rs, docs/design/0008).
    let stream = ResponseRecords::new(stream, h2);
    let serving = builder.serve_connection(TokioIo::new(stream), service);
    tokio::pin!(serving);
    let idle = limits.idle_timeout;
    let mut check = Instant::now() + idle;
    let closing = loop {
        tokio::select! {
            _ = serving.as_mut() => return,
            _ = shutdown.changed() => break false,
            _ = tokio::time::sleep_until(check) => {
                match connection.activity.idle_deadline(idle) {
                    Some(deadline) if deadline <= Instant::now() => break true,
                    Some(deadline) => check = deadline,
                    None => check = Instant::now() + idle,
                }
            }
        }
    };
    if closing {
        shared.counters.of(Protocol::Https).idle_closed();
    }
    // GOAWAY (h2) or close after the current response (h1), bounded.
    serving.as_mut().graceful_shutdown();
    let _ = tokio::time::timeout(limits.request_timeout, serving).await;
}

/// Requests in flight on one connection and when the last one ended.
#[derive(Debug)]
struct Activity {
    in_flight: AtomicUsize,
    last: Mutex<Instant>,
}

/// Marks one request in flight until dropped.
struct ActiveRequest<'a>(&'a Activity);

impl Activity {
    fn new() -> Self {
        Self {
            in_flight: AtomicUsize::new(0),
            last: Mutex::new(Instant::now()),
        }
    }

    fn begin(&self) -> ActiveRequest<'_> {
        self.in_flight.fetch_add(1, Ordering::AcqRel);
        ActiveRequest(self)
    }

    /// When the connection becomes idle-expired, or `None` while a request is in flight.
    fn idle_deadline(&self, idle: std::time::Duration) -> Option<Instant> {
        if self.in_flight.load(Ordering::Acquire) > 0 {
            return None;
        }
        let last = *self.last.lock().unwrap_or_else(PoisonError::into_inner);
        Some(last + idle)
    }
}

impl Drop for ActiveRequest<'_> {
    fn drop(&mut self) {
        *self.0.last.lock().unwrap_or_else(PoisonError::into_inner) = Instant::now();
        self.0.in_flight.fetch_sub(1, Ordering::AcqRel);
    }
}

#[derive(Debug)]
struct ConnectionState {
    shared: Arc<Shared>,
    peer: SocketAddr,
    listener_index: usize,
    activity: Activity,
}

/// Why a request gets no DNS answer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Refusal {
    NotFound,
    Method,
    MissingParameter,
    BadBase64,
    BadMessage,
    TooLarge,
    MediaType,
    Timeout,
    Internal,
}

impl Refusal {
    fn status(self) -> StatusCode {
        match self {
            Refusal::NotFound => StatusCode::NOT_FOUND,
            Refusal::Method => StatusCode::METHOD_NOT_ALLOWED,
            Refusal::MissingParameter | Refusal::BadBase64 | Refusal::BadMessage => {
                StatusCode::BAD_REQUEST
            }
            Refusal::TooLarge => StatusCode::PAYLOAD_TOO_LARGE,
            Refusal::MediaType => StatusCode::UNSUPPORTED_MEDIA_TYPE,
            Refusal::Timeout => StatusCode::REQUEST_TIMEOUT,
            Refusal::Internal => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }

    fn text(self) -> &'static str {
        match self {
            Refusal::NotFound => "not found: DNS queries go to /dns-query\n",
            Refusal::Method => "method not allowed: use GET or POST\n",
            Refusal::MissingParameter => "missing the dns parameter\n",
            Refusal::BadBase64 => "the dns parameter is not base64url\n",
            Refusal::BadMessage => "not a DNS query message\n",
            Refusal::TooLarge => "DNS message too large\n",
            Refusal::MediaType => "content type must be application/dns-message\n",
            Refusal::Timeout => "request body too slow\n",
            Refusal::Internal => "internal error\n",
        }
    }
}

impl ConnectionState {
    async fn respond(&self, request: Request<Incoming>) -> Response<Full<Bytes>> {
        let _active = self.activity.begin();
        let (parts, body) = request.into_parts();
        let mut body = Some(body);
        match self.answer(&parts, &mut body).await {
            Ok(response) => response,
            Err(refusal) => {
                if refusal != Refusal::Internal {
                    self.shared.counters.of(Protocol::Https).bad_request();
                }
                // Read what the client is still sending (bounded) before refusing: a response
                // while the request body is unread makes HTTP/2 reset the stream, and clients
                // then report a stream error instead of our status.
                if let Some(body) = body {
                    drain(body, self.shared.limits.request_timeout).await;
                }
                refusal_response(refusal)
            }
        }
    }

    async fn answer(
        &self,
        request: &http::request::Parts,
        body: &mut Option<Incoming>,
    ) -> Result<Response<Full<Bytes>>, Refusal> {
        if request.uri.path() != DOH_PATH {
            return Err(Refusal::NotFound);
        }
        let limits = self.shared.limits;
        let (client, source) =
            forwarded::client_address(self.peer, &request.headers, &self.shared.trusted_proxies);
        if source == ClientSource::Forwarded {
            self.shared.counters.of(Protocol::Https).forwarded_client();
        }
        let message: Bytes = match request.method {
            Method::GET => {
                let encoded = request
                    .uri
                    .query()
                    .and_then(dns_parameter)
                    .ok_or(Refusal::MissingParameter)?;
                // base64 grows 3 bytes to 4: refuse before decoding anything oversized.
                if encoded.len() > limits.max_request_size.div_ceil(3) * 4 {
                    return Err(Refusal::TooLarge);
                }
                let engine = base64::engine::GeneralPurpose::new(
                    &base64::alphabet::URL_SAFE,
                    base64::engine::GeneralPurposeConfig::new()
                        .with_encode_padding(false)
                        .with_decode_padding_mode(base64::engine::DecodePaddingMode::Indifferent),
                );
                let decoded = engine.decode(encoded).map_err(|_| Refusal::BadBase64)?;
                if decoded.len() > limits.max_request_size {
                    return Err(Refusal::TooLarge);
                }
                Bytes::from(decoded)
            }
            Method::POST => {
                let media_type = request
                    .headers
                    .get(header::CONTENT_TYPE)
                    .and_then(|v| v.to_str().ok())
                    .and_then(|v| v.split(';').next())
                    .map(str::trim);
                if !media_type.is_some_and(|t| t.eq_ignore_ascii_case(DOH_MEDIA_TYPE)) {
                    return Err(Refusal::MediaType);
                }
                let declared = request
                    .headers
                    .get(header::CONTENT_LENGTH)
                    .and_then(|v| v.to_str().ok())
                    .and_then(|v| v.parse::<u64>().ok());
                if declared.is_some_and(|len| len > limits.max_request_size as u64) {
                    return Err(Refusal::TooLarge);
                }
                let Some(incoming) = body.take() else {
                    return Err(Refusal::Internal);
                };
                read_body(incoming, limits.max_request_size, limits.request_timeout).await?
            }
            _ => return Err(Refusal::Method),
        };
        if message.len() < wire::HEADER_LEN {
            return Err(Refusal::BadMessage);
        }
        let context = ClientContext {
            client,
            transport: crate::server::pipeline_transport(Protocol::Https),
            listener: self.listener_index,
            client_subnet: None,
        };
        let pipeline = &self.shared.pipeline;
        // `handle` is synchronous: the thread's buffer is never held across an await.
        let (now, pending) = RESPONSE_BUFFER.with_borrow_mut(|out| {
            match pipeline.handle(&message, context, out, pipeline.async_counters()) {
                Outcome::Respond(len) => (out.get(..len).map(<[u8]>::to_vec), None),
                Outcome::Drop => (None, None),
                Outcome::Resolve(pending) => (None, Some(pending)),
            }
        });
        let response = match (now, pending) {
            (Some(response), _) => response,
            (None, Some(pending)) => pipeline
                .answer_pending(*pending, 0)
                .await
                .ok_or(Refusal::Internal)?,
            (None, None) => return Err(Refusal::BadMessage),
        };
        let max_age = cache_max_age(&response);
        let mut reply = Response::new(Full::new(Bytes::from(response)));
        let headers = reply.headers_mut();
        headers.insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static(DOH_MEDIA_TYPE),
        );
        if let Ok(value) = HeaderValue::from_str(&format!("max-age={max_age}, private")) {
            headers.insert(header::CACHE_CONTROL, value);
        }
        Ok(reply)
    }
}

/// Reads a POST body of at most `max` bytes within `timeout`. A longer one is read on (and
/// discarded, up to [`DRAIN_BUDGET`]) so the 413 reaches the client instead of a stream reset.
async fn read_body(
    mut body: Incoming,
    max: usize,
    timeout: std::time::Duration,
) -> Result<Bytes, Refusal> {
    let read = async move {
        let mut message = Vec::new();
        let mut seen = 0usize;
        while let Some(frame) = body.frame().await {
            let frame = frame.map_err(|_| Refusal::BadMessage)?;
            let Some(data) = frame.data_ref() else {
                continue;
            };
            seen += data.len();
            if seen <= max {
                message.extend_from_slice(data);
            } else if seen > DRAIN_BUDGET {
                break;
            }
        }
        if seen > max {
            return Err(Refusal::TooLarge);
        }
        Ok(Bytes::from(message))
    };
    tokio::time::timeout(timeout, read)
        .await
        .unwrap_or(Err(Refusal::Timeout))
}

/// How much of a refused request's body is read and discarded at most.
const DRAIN_BUDGET: usize = 64 * 1024;

/// Reads and discards a request body, up to [`DRAIN_BUDGET`] bytes and `timeout`.
async fn drain(mut body: Incoming, timeout: std::time::Duration) {
    use hyper::body::Body as _;
    if body.is_end_stream() {
        return;
    }
    let _ = tokio::time::timeout(timeout, async move {
        let mut seen = 0usize;
        while let Some(Ok(frame)) = body.frame().await {
            if let Some(data) = frame.data_ref() {
                seen += data.len();
                if seen > DRAIN_BUDGET {
                    break;
                }
            }
        }
    })
    .await;
}

fn refusal_response(refusal: Refusal) -> Response<Full<Bytes>> {
    let mut response = Response::new(Full::new(Bytes::from_static(refusal.text().as_bytes())));
    *response.status_mut() = refusal.status();
    let headers = response.headers_mut();
    headers.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    if refusal == Refusal::Method {
        headers.insert(header::ALLOW, HeaderValue::from_static("GET, POST"));
    }
    response
}

/// The value of the `dns` parameter in a query string.
fn dns_parameter(query: &str) -> Option<&str> {
    query
        .split('&')
        .find_map(|pair| pair.strip_prefix("dns="))
        .filter(|value| !value.is_empty())
}

/// EDE info codes that mean a policy decision (RFC 8914: 15 Blocked, 16 Censored,
/// 17 Filtered, 18 Prohibited): such answers are not to be kept by HTTP caches.
const POLICY_EDE: [u16; 4] = [ede::BLOCKED, ede::CENSORED, ede::FILTERED, ede::PROHIBITED];

/// The HTTP freshness lifetime for a DNS response (RFC 8484 §5.1): the smallest TTL in the
/// answer and authority sections; 0 for responses other than NOERROR/NXDOMAIN, for responses
/// without records, for policy decisions (EDE 15–18), and for anything malformed.
pub fn cache_max_age(message: &[u8]) -> u32 {
    max_age(message).unwrap_or(0)
}

fn max_age(message: &[u8]) -> Option<u32> {
    let counts = wire::counts(message).ok()?;
    let rcode = message.get(3)? & 0x0F;
    if rcode != 0 && rcode != 3 {
        return None;
    }
    let mut pos = wire::skip_questions(message, counts.question).ok()?;
    let mut smallest: Option<u32> = None;
    for _ in 0..u32::from(counts.answer) + u32::from(counts.authority) {
        let record = wire::record_at(message, pos).ok()?;
        if record.rtype != 41 {
            let ttl = wire::u32_at(message, record.ttl_at).ok()?;
            smallest = Some(smallest.map_or(ttl, |s| s.min(ttl)));
        }
        pos = record.end();
    }
    for _ in 0..counts.additional {
        let record = wire::record_at(message, pos).ok()?;
        if record.rtype == 41 && has_policy_ede(message.get(record.rdata..record.end())?) {
            return None;
        }
        pos = record.end();
    }
    smallest
}

fn has_policy_ede(mut options: &[u8]) -> bool {
    while let [code_high, code_low, len_high, len_low, rest @ ..] = options {
        let code = u16::from_be_bytes([*code_high, *code_low]);
        let len = usize::from(u16::from_be_bytes([*len_high, *len_low]));
        let Some(data) = rest.get(..len) else {
            return false;
        };
        if code == option_code::EXTENDED_ERROR {
            if let [high, low, ..] = data {
                if POLICY_EDE.contains(&u16::from_be_bytes([*high, *low])) {
                    return true;
                }
            }
        }
        // In bounds: `rest.get(..len)` succeeded above.
        options = &rest[len..];
    }
    false
}

#[cfg(test)]
#[allow(
    clippy::unwrap_used,
    clippy::expect_used,
    reason = "tests fail loudly by design"
)]
mod tests {
    use super::*;

    fn response(rcode: u8, ttls: &[u32], ede: Option<u16>) -> Vec<u8> {
        let mut m = vec![0, 0, 0x81, 0x80 | rcode, 0, 1];
        m.extend_from_slice(&(ttls.len() as u16).to_be_bytes());
        m.extend_from_slice(&[0, 0, 0, u8::from(ede.is_some())]);
        m.extend_from_slice(b"\x01a\x00\x00\x01\x00\x01");
        for ttl in ttls {
            m.extend_from_slice(&[0xC0, 12, 0, 1, 0, 1]);
            m.extend_from_slice(&ttl.to_be_bytes());
            m.extend_from_slice(&[0, 4, 192, 0, 2, 1]);
        }
        if let Some(code) = ede {
            m.extend_from_slice(&[0, 0, 41, 4, 0xD0, 0, 0, 0, 0, 0, 6, 0, 15, 0, 2]);
            m.extend_from_slice(&code.to_be_bytes());
        }
        m
    }

    #[test]
    fn max_age_is_the_smallest_ttl() {
        assert_eq!(cache_max_age(&response(0, &[300, 60, 900], None)), 60);
        assert_eq!(
            cache_max_age(&response(0, &[300], Some(3))),
            300,
            "stale EDE is not policy"
        );
    }

    #[test]
    fn max_age_is_zero_for_blocks_errors_and_garbage() {
        assert_eq!(cache_max_age(&response(0, &[300], Some(16))), 0);
        assert_eq!(cache_max_age(&response(3, &[30], Some(15))), 0);
        assert_eq!(cache_max_age(&response(2, &[300], None)), 0, "SERVFAIL");
        assert_eq!(cache_max_age(&response(0, &[], None)), 0, "no records");
        assert_eq!(cache_max_age(&[1, 2, 3]), 0);
        let mut cut = response(0, &[300], None);
        cut.truncate(cut.len() - 3);
        assert_eq!(cache_max_age(&cut), 0);
    }

    #[test]
    fn dns_parameter_is_found_among_others() {
        assert_eq!(dns_parameter("ct=x&dns=AAAB"), Some("AAAB"));
        assert_eq!(dns_parameter("dns="), None);
        assert_eq!(dns_parameter("dnsx=1"), None);
    }
}
