//! juris-transport: DNS over TLS (RFC 7858), over HTTPS (RFC 8484) and over QUIC (RFC 9250),
//! answered by the same [`juris_server::Pipeline`] (and so the same policy) as UDP and TCP.
//!
//! ```text
//!  DoT  TCP ─► TLS 1.3/1.2 "dot" ─► 2-byte frames, pipelined ──┐
//!  DoH  TCP ─► TLS "h2"/"http/1.1" ─► hyper: GET ?dns= / POST ──┼─► Pipeline::handle
//!         (client address from Forwarded / X-Forwarded-For     │     hit/block: respond
//!          only when the peer is a trusted proxy)               │     miss: answer_pending
//!  DoQ  UDP ─► QUIC (quinn) "doq" ─► one query per stream ─────┘
//!             (2-byte length, message ID 0)
//!
//!  CertificateStore (cert.pem + key.pem) ◄── reload() on SIGHUP; a failed reload keeps the old
//! ```
//! The TLS, HTTP and QUIC stacks live here, not in `juris-server`, so the UDP/TCP hot path
//! builds and benchmarks without them (docs/design/0004-encrypted-transports.md).
//!
//! # Example
//! ```no_run
//! # fn example(pipeline: std::sync::Arc<juris_server::Pipeline>, runtime: tokio::runtime::Handle) {
//! use juris_transport::{start, EncryptedListener, Limits, Protocol, TlsFiles, TransportConfig};
//!
//! let config = TransportConfig {
//!     listeners: vec![
//!         EncryptedListener::new(Protocol::Tls, "127.0.0.1:853".parse().unwrap()),
//!         EncryptedListener::new(Protocol::Https, "127.0.0.1:443".parse().unwrap()),
//!         EncryptedListener::new(Protocol::Quic, "127.0.0.1:853".parse().unwrap()),
//!     ],
//!     tls: TlsFiles { cert: "cert.pem".into(), key: "key.pem".into() },
//!     limits: Limits::default(),
//!     trusted_proxies: Vec::new(),
//! };
//! let server = start(&config, pipeline, &runtime).unwrap();
//! // On SIGHUP:
//! if let Err(error) = server.reload_certificates() {
//!     eprintln!("keeping the old certificate: {error}");
//! }
//! # }
//! ```
#![forbid(unsafe_code)]

mod accept;
pub mod cert;
mod config;
mod doh;
mod doq;
mod dot;
pub mod forwarded;
mod records;
mod server;
mod stats;
pub mod tls;

pub use config::{EncryptedListener, Limits, Protocol, TlsFiles, TransportConfig, NO_PIN};
pub use doh::{cache_max_age, DOH_MEDIA_TYPE, DOH_PATH};
pub use doq::{
    DOQ_EXCESSIVE_LOAD, DOQ_INTERNAL_ERROR, DOQ_NO_ERROR, DOQ_PROTOCOL_ERROR, DOQ_REQUEST_CANCELLED,
};
pub use server::{start, BoundEncrypted, EncryptedServer, TransportError};
pub use stats::{ProtocolStats, TransportStats};
pub use tls::{CertificateStore, TlsError};
