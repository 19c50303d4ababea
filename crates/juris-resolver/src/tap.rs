//! A tap on juris's own queries upstream, for dnstap's RESOLVER_QUERY/RESOLVER_RESPONSE.
//!
//! Process-wide and installed at most once (by `juris serve` when `[dnstap]` asks for
//! resolver messages). Not installed, an upstream exchange pays one load of an empty
//! `OnceLock`; installed, it copies the query and hands the exchange to the callback, which
//! must not wait (dnstap offers it to a bounded channel).

use std::net::SocketAddr;
use std::sync::OnceLock;
use std::time::SystemTime;

use bytes::Bytes;

/// One query juris sent to an upstream server, and the response if one came.
#[derive(Debug, Clone)]
pub struct UpstreamExchange {
    /// The server asked.
    pub server: SocketAddr,
    /// Whether the exchange that produced the response was over TCP.
    pub over_tcp: bool,
    /// The query as sent.
    pub query: Vec<u8>,
    /// When it was sent.
    pub query_time: SystemTime,
    /// The response and when it arrived; `None` when none came (timeout, error).
    pub response: Option<(Bytes, SystemTime)>,
}

/// The callback receiving exchanges.
pub type TapFn = Box<dyn Fn(UpstreamExchange) + Send + Sync>;

static TAP: OnceLock<TapFn> = OnceLock::new();

/// Installs the tap; `false` if one already is.
pub fn install(tap: TapFn) -> bool {
    TAP.set(tap).is_ok()
}

/// Whether a tap is installed.
#[inline]
pub(crate) fn installed() -> bool {
    TAP.get().is_some()
}

/// Hands one exchange to the tap, if installed.
pub(crate) fn emit(exchange: UpstreamExchange) {
    if let Some(tap) = TAP.get() {
        tap(exchange);
    }
}
