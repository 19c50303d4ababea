//! HTTPS for the admin API and the public transparency listener (`[control] tls_cert`,
//! `tls_key`, optional `tls_client_ca`; docs/design/0033).
//!
//! ```text
//!  tls_cert + tls_key ─► CertificateStore (juris_transport, the DoT/DoH one) ◄── reload (SIGHUP)
//!  tls_client_ca ─────► WebPkiClientVerifier (admin listener only)          ◄── re-read (SIGHUP)
//!                              │
//!  TcpListener ─► accept loop ─► handshake task per connection (bounded by a timeout)
//!                                 └─► channel ─► TlsListener::accept ─► axum::serve
//! ```
//! A slow or failed handshake delays nobody: each runs in a task of its own and only finished
//! ones reach axum. A reload that fails keeps what is in force and says why.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::{Arc, PoisonError, RwLock};
use std::time::Duration;

use anyhow::Context;
use juris_transport::CertificateStore;
use tokio::net::{TcpListener, TcpStream};
use tokio_rustls::server::TlsStream;
use tokio_rustls::TlsAcceptor;

use crate::config::ApiTls;

/// How long an HTTPS client has to finish its TLS handshake.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);
/// Finished handshakes waiting for axum to take them.
const READY_QUEUE: usize = 64;

/// The certificate and the two acceptors: the admin API's (client certificates when
/// `tls_client_ca` is set) and the public listener's (never asks for one).
pub struct HttpsConfig {
    store: Arc<CertificateStore>,
    client_ca: Option<PathBuf>,
    admin: RwLock<TlsAcceptor>,
    public: TlsAcceptor,
}

impl std::fmt::Debug for HttpsConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("HttpsConfig")
            .field("store", &self.store)
            .field("client_ca", &self.client_ca)
            .finish_non_exhaustive()
    }
}

impl HttpsConfig {
    /// Loads the certificate, its key and the client CA; errors name the key.
    pub fn load(tls: &ApiTls) -> anyhow::Result<Arc<Self>> {
        let store = Arc::new(
            CertificateStore::load(&tls.files).context("control.tls_cert / control.tls_key")?,
        );
        let admin = admin_acceptor(&store, tls.client_ca.as_ref())?;
        let public = store
            .api_config(None)
            .context("control.tls_cert / control.tls_key")?;
        Ok(Arc::new(Self {
            store,
            client_ca: tls.client_ca.clone(),
            admin: RwLock::new(admin),
            public: TlsAcceptor::from(Arc::new(public)),
        }))
    }

    /// Reads the certificate, key and client CA again (SIGHUP); new handshakes use them. On
    /// error what is in force stays.
    pub fn reload(&self) -> anyhow::Result<()> {
        let admin = admin_acceptor(&self.store, self.client_ca.as_ref())?;
        self.store
            .reload()
            .context("control.tls_cert / control.tls_key")?;
        *self.admin.write().unwrap_or_else(PoisonError::into_inner) = admin;
        Ok(())
    }

    /// The acceptor of the admin API (`public = false`) or of the public listener.
    fn acceptor(&self, public: bool) -> TlsAcceptor {
        if public {
            self.public.clone()
        } else {
            self.admin
                .read()
                .unwrap_or_else(PoisonError::into_inner)
                .clone()
        }
    }
}

fn admin_acceptor(
    store: &Arc<CertificateStore>,
    client_ca: Option<&PathBuf>,
) -> anyhow::Result<TlsAcceptor> {
    let config = store
        .api_config(client_ca.map(PathBuf::as_path))
        .context("control.tls_client_ca")?;
    Ok(TlsAcceptor::from(Arc::new(config)))
}

/// HTTPS connections for `axum::serve`: TCP connections are accepted and their handshakes run
/// in tasks of their own; finished ones arrive through a channel.
#[derive(Debug)]
pub struct TlsListener {
    ready: tokio::sync::mpsc::Receiver<(TlsStream<TcpStream>, SocketAddr)>,
    local: SocketAddr,
}

impl TlsListener {
    /// Starts accepting on `listener` (on the current runtime). `public`: the public
    /// listener's acceptor (no client certificates), else the admin API's.
    pub fn spawn(
        listener: TcpListener,
        local: SocketAddr,
        config: Arc<HttpsConfig>,
        public: bool,
    ) -> Self {
        let (sender, ready) = tokio::sync::mpsc::channel(READY_QUEUE);
        tokio::spawn(async move {
            loop {
                let (stream, peer) = tokio::select! {
                    // axum is gone (shut down): so is this loop.
                    () = sender.closed() => return,
                    accepted = listener.accept() => match accepted {
                        Ok(accepted) => accepted,
                        Err(error) => {
                            // Out of file descriptors and the like: wait, as axum does.
                            tracing::debug!(%error, "admin API: accept failed");
                            tokio::time::sleep(Duration::from_millis(50)).await;
                            continue;
                        }
                    },
                };
                let (acceptor, sender) = (config.acceptor(public), sender.clone());
                tokio::spawn(async move {
                    match tokio::time::timeout(HANDSHAKE_TIMEOUT, acceptor.accept(stream)).await {
                        Ok(Ok(stream)) => {
                            let _ = sender.send((stream, peer)).await;
                        }
                        Ok(Err(error)) => {
                            tracing::info!(%peer, %error, "HTTPS: TLS handshake failed")
                        }
                        Err(_) => tracing::info!(%peer, "HTTPS: TLS handshake timed out"),
                    }
                });
            }
        });
        Self { ready, local }
    }
}

impl axum::serve::Listener for TlsListener {
    type Io = TlsStream<TcpStream>;
    type Addr = SocketAddr;

    async fn accept(&mut self) -> (Self::Io, Self::Addr) {
        match self.ready.recv().await {
            Some(connection) => connection,
            // The accept loop is gone (the runtime is shutting down): nothing more will come.
            None => std::future::pending().await,
        }
    }

    fn local_addr(&self) -> std::io::Result<SocketAddr> {
        Ok(self.local)
    }
}
