//! The accept loop shared by the TLS-over-TCP listeners (DoT and DoH): admission (access list,
//! connection limit), TCP options, the PROXY protocol header of a trusted load balancer (read
//! before the handshake; `juris_server::proxy`), and the TLS handshake bounded by the
//! handshake timeout.
//! Each listener supplies only what it does with an established TLS connection.

use std::future::Future;
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;

use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{watch, OwnedSemaphorePermit, Semaphore};
use tokio_rustls::server::TlsStream;
use tokio_rustls::TlsAcceptor;

use juris_server::proxy::connection_client;

use crate::config::Protocol;
use crate::server::Shared;

/// Accepts connections until `shutdown` changes. A peer for which `admit` is false, or one
/// beyond the connection limit, is closed at once and counted as rejected; a failed or slow
/// handshake is counted as a handshake failure. `serve_connection` gets the TLS stream, the
/// peer and the connection-limit permit (to hold for the connection's lifetime).
#[allow(
    clippy::too_many_arguments,
    reason = "one listener's fixed parts, passed once at start-up"
)]
pub(crate) async fn accept_tls<S, F>(
    listener: TcpListener,
    acceptor: TlsAcceptor,
    shared: Arc<Shared>,
    connections: Arc<Semaphore>,
    mut shutdown: watch::Receiver<bool>,
    protocol: Protocol,
    admit: fn(&Shared, IpAddr) -> bool,
    serve_connection: S,
) where
    S: Fn(TlsStream<TcpStream>, SocketAddr, OwnedSemaphorePermit) -> F + Clone + Send + 'static,
    F: Future<Output = ()> + Send + 'static,
{
    let counters = shared.counters.of(protocol);
    loop {
        let accepted = tokio::select! {
            _ = shutdown.changed() => break,
            accepted = listener.accept() => accepted,
        };
        let (stream, peer) = match accepted {
            Ok(accepted) => accepted,
            Err(error) => {
                tracing::debug!(%error, ?protocol, "accept failed");
                tokio::time::sleep(std::time::Duration::from_millis(10)).await;
                continue;
            }
        };
        // A trusted load balancer's clients are admitted once its PROXY header is read.
        let proxied = shared
            .pipeline
            .proxy()
            .is_some_and(|trust| trust.trusts(peer.ip()));
        if !proxied && !admit(&shared, peer.ip()) {
            counters.rejected();
            continue;
        }
        let Ok(permit) = Arc::clone(&connections).try_acquire_owned() else {
            counters.rejected();
            continue;
        };
        counters.connection();
        let _ = stream.set_nodelay(true);
        let acceptor = acceptor.clone();
        let shared = Arc::clone(&shared);
        let handshake_timeout = shared.limits.handshake_timeout;
        let serve_connection = serve_connection.clone();
        tokio::spawn(async move {
            let mut stream = stream;
            // The PROXY header comes before the TLS handshake, in clear.
            let Some(peer) = connection_client(
                &shared.pipeline,
                &mut stream,
                peer,
                handshake_timeout,
                |client| admit(&shared, client),
            )
            .await
            else {
                return;
            };
            match tokio::time::timeout(handshake_timeout, acceptor.accept(stream)).await {
                Ok(Ok(stream)) => serve_connection(stream, peer, permit).await,
                Ok(Err(error)) => {
                    tracing::debug!(%peer, %error, ?protocol, "TLS handshake failed");
                    shared.counters.of(protocol).handshake_failure();
                }
                Err(_) => {
                    tracing::debug!(%peer, ?protocol, "TLS handshake timed out");
                    shared.counters.of(protocol).handshake_failure();
                }
            }
        });
    }
}
