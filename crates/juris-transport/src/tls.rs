//! TLS for the three transports: one certificate store (PEM chain + key, swapped atomically
//! on reload) behind three rustls server configurations.
//!
//! ```text
//!  cert.pem + key.pem ─► CertificateStore (ArcSwap<CertifiedKey>) ◄── reload() (SIGHUP)
//!                              │ resolves the certificate for every handshake
//!        ┌─────────────────────┼──────────────────────┐
//!   DoT: TLS 1.3+1.2, "dot"   DoH: TLS 1.3+1.2,       DoQ: TLS 1.3 only, "doq",
//!                              "h2", "http/1.1"        no 0-RTT
//! ```
//! A reload that fails (unreadable file, bad PEM, key not matching the certificate) keeps the
//! certificate in force and returns an error naming the file.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use arc_swap::ArcSwap;
use rustls::crypto::CryptoProvider;
use rustls::server::{ClientHello, ResolvesServerCert};
use rustls::sign::CertifiedKey;
use rustls::ServerConfig;
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};

use crate::config::TlsFiles;

/// ALPN protocol ID of DNS over TLS (RFC 7858 §3.2, IANA).
pub const ALPN_DOT: &[u8] = b"dot";
/// ALPN protocol ID of HTTP/2 (DoH).
pub const ALPN_H2: &[u8] = b"h2";
/// ALPN protocol ID of HTTP/1.1 (DoH for clients without HTTP/2).
pub const ALPN_HTTP11: &[u8] = b"http/1.1";
/// ALPN protocol ID of DNS over QUIC (RFC 9250 §4.1).
pub const ALPN_DOQ: &[u8] = b"doq";

/// Why a certificate or key could not be loaded.
#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    /// The file could not be read.
    #[error("cannot read {}: {source}", path.display())]
    Read {
        /// The file.
        path: PathBuf,
        /// What the OS said.
        #[source]
        source: std::io::Error,
    },
    /// The file is not valid PEM, or holds no item of the expected kind.
    #[error("{}: no usable {what} in PEM: {source}", path.display())]
    Pem {
        /// The file.
        path: PathBuf,
        /// "certificate" or "private key".
        what: &'static str,
        /// What the PEM parser said.
        #[source]
        source: rustls_pki_types::pem::Error,
    },
    /// rustls refused the key (unsupported algorithm) or the pair (key does not match the
    /// certificate).
    #[error("{} with {}: {source}", key.display(), cert.display())]
    Key {
        /// The certificate file.
        cert: PathBuf,
        /// The key file.
        key: PathBuf,
        /// What rustls said.
        #[source]
        source: rustls::Error,
    },
    /// A rustls configuration could not be built (no common protocol version).
    #[error("TLS configuration: {0}")]
    Config(#[source] rustls::Error),
    /// The client CA file holds no usable CA certificate.
    #[error("{}: no usable client CA certificate: {reason}", path.display())]
    ClientCa {
        /// The file.
        path: PathBuf,
        /// What rustls said.
        reason: String,
    },
}

/// The certificate in force, shared by every listener. Reload it with
/// [`CertificateStore::reload`].
#[derive(Debug)]
pub struct CertificateStore {
    files: Option<TlsFiles>,
    current: ArcSwap<CertifiedKey>,
    provider: Arc<CryptoProvider>,
}

impl CertificateStore {
    /// Loads the certificate chain and key from `files`.
    pub fn load(files: &TlsFiles) -> Result<Self, TlsError> {
        let provider = provider();
        let key = load_files(files, &provider)?;
        Ok(Self {
            files: Some(files.clone()),
            current: ArcSwap::from_pointee(key),
            provider,
        })
    }

    /// A store from PEM bytes (no files: [`CertificateStore::reload`] then does nothing).
    pub fn from_pem(cert_pem: &[u8], key_pem: &[u8]) -> Result<Self, TlsError> {
        let provider = provider();
        let memory = Path::new("(memory)");
        let key = certified_key(cert_pem, key_pem, memory, memory, &provider)?;
        Ok(Self {
            files: None,
            current: ArcSwap::from_pointee(key),
            provider,
        })
    }

    /// Reads the files again and puts the new certificate in force for every handshake that
    /// starts afterwards. On error the certificate in force stays.
    pub fn reload(&self) -> Result<(), TlsError> {
        let Some(files) = &self.files else {
            return Ok(());
        };
        let key = load_files(files, &self.provider)?;
        self.current.store(Arc::new(key));
        Ok(())
    }

    /// The leaf certificate in force (DER).
    pub fn leaf(&self) -> Option<CertificateDer<'static>> {
        self.current.load().cert.first().cloned()
    }

    /// The rustls configuration for `protocols` (by ALPN ID), TLS 1.3 and 1.2 or 1.3 only,
    /// without client certificates.
    fn server_config(
        self: &Arc<Self>,
        alpn: &[&[u8]],
        tls12: bool,
    ) -> Result<ServerConfig, TlsError> {
        self.server_config_with(alpn, tls12, None)
    }

    /// [`CertificateStore::server_config`], requiring a client certificate verified by
    /// `clients` when given.
    fn server_config_with(
        self: &Arc<Self>,
        alpn: &[&[u8]],
        tls12: bool,
        clients: Option<Arc<dyn rustls::server::danger::ClientCertVerifier>>,
    ) -> Result<ServerConfig, TlsError> {
        let versions: &[&'static rustls::SupportedProtocolVersion] = if tls12 {
            &[&rustls::version::TLS13, &rustls::version::TLS12]
        } else {
            &[&rustls::version::TLS13]
        };
        let builder = ServerConfig::builder_with_provider(Arc::clone(&self.provider))
            .with_protocol_versions(versions)
            .map_err(TlsError::Config)?;
        let builder = match clients {
            Some(verifier) => builder.with_client_cert_verifier(verifier),
            None => builder.with_no_client_auth(),
        };
        let mut config =
            builder.with_cert_resolver(Arc::clone(self) as Arc<dyn ResolvesServerCert>);
        config.alpn_protocols = alpn.iter().map(|p| p.to_vec()).collect();
        Ok(config)
    }

    /// DoT: TLS 1.3 and 1.2, ALPN `dot` (clients offering no ALPN are accepted).
    pub fn dot_config(self: &Arc<Self>) -> Result<ServerConfig, TlsError> {
        self.server_config(&[ALPN_DOT], true)
    }

    /// DoH: TLS 1.3 and 1.2, ALPN `h2` then `http/1.1`.
    pub fn doh_config(self: &Arc<Self>) -> Result<ServerConfig, TlsError> {
        self.server_config(&[ALPN_H2, ALPN_HTTP11], true)
    }

    /// The admin API (HTTPS): TLS 1.3 and 1.2, ALPN `http/1.1`. With `client_ca` (PEM, one or
    /// more CA certificates), every client must present a certificate issued by one of them.
    pub fn api_config(
        self: &Arc<Self>,
        client_ca: Option<&Path>,
    ) -> Result<ServerConfig, TlsError> {
        let clients = match client_ca {
            None => None,
            Some(path) => Some(self.client_verifier(path)?),
        };
        self.server_config_with(&[ALPN_HTTP11], true, clients)
    }

    /// A verifier of client certificates issued by the CA certificates in `path`.
    fn client_verifier(
        &self,
        path: &Path,
    ) -> Result<Arc<dyn rustls::server::danger::ClientCertVerifier>, TlsError> {
        let pem = std::fs::read(path).map_err(|source| TlsError::Read {
            path: path.to_owned(),
            source,
        })?;
        let mut roots = rustls::RootCertStore::empty();
        for cert in CertificateDer::pem_slice_iter(&pem) {
            let cert = cert.map_err(|source| TlsError::Pem {
                path: path.to_owned(),
                what: "certificate",
                source,
            })?;
            roots.add(cert).map_err(|e| TlsError::ClientCa {
                path: path.to_owned(),
                reason: e.to_string(),
            })?;
        }
        rustls::server::WebPkiClientVerifier::builder_with_provider(
            Arc::new(roots),
            Arc::clone(&self.provider),
        )
        .build()
        .map_err(|e| TlsError::ClientCa {
            path: path.to_owned(),
            reason: e.to_string(),
        })
    }

    /// DoQ: TLS 1.3 only (QUIC requires it), ALPN `doq`, 0-RTT off (a replayed query could
    /// be answered twice; RFC 9250 §4.5 leaves it optional).
    pub fn doq_config(self: &Arc<Self>) -> Result<ServerConfig, TlsError> {
        let mut config = self.server_config(&[ALPN_DOQ], false)?;
        config.max_early_data_size = 0;
        Ok(config)
    }
}

impl ResolvesServerCert for CertificateStore {
    fn resolve(&self, _client_hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        Some(self.current.load_full())
    }
}

/// The one crypto provider: ring.
fn provider() -> Arc<CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

fn load_files(files: &TlsFiles, provider: &CryptoProvider) -> Result<CertifiedKey, TlsError> {
    let read = |path: &Path| {
        std::fs::read(path).map_err(|source| TlsError::Read {
            path: path.to_owned(),
            source,
        })
    };
    let cert_pem = read(&files.cert)?;
    let key_pem = read(&files.key)?;
    certified_key(&cert_pem, &key_pem, &files.cert, &files.key, provider)
}

fn certified_key(
    cert_pem: &[u8],
    key_pem: &[u8],
    cert_path: &Path,
    key_path: &Path,
    provider: &CryptoProvider,
) -> Result<CertifiedKey, TlsError> {
    let chain = CertificateDer::pem_slice_iter(cert_pem)
        .collect::<Result<Vec<_>, _>>()
        .and_then(|chain| {
            if chain.is_empty() {
                Err(rustls_pki_types::pem::Error::NoItemsFound)
            } else {
                Ok(chain)
            }
        })
        .map_err(|source| TlsError::Pem {
            path: cert_path.to_owned(),
            what: "certificate",
            source,
        })?;
    let key = PrivateKeyDer::from_pem_slice(key_pem).map_err(|source| TlsError::Pem {
        path: key_path.to_owned(),
        what: "private key",
        source,
    })?;
    CertifiedKey::from_der(chain, key, provider).map_err(|source| TlsError::Key {
        cert: cert_path.to_owned(),
        key: key_path.to_owned(),
        source,
    })
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used, reason = "test code")]
mod tests {
    use super::*;
    use crate::cert::self_signed;

    fn write(dir: &Path, name: &str, contents: &str) -> PathBuf {
        let path = dir.join(name);
        std::fs::write(&path, contents).unwrap();
        path
    }

    #[test]
    fn reload_swaps_and_a_failed_reload_keeps_the_old_certificate() {
        let dir = tempfile::tempdir().unwrap();
        let first = self_signed("one.test").unwrap();
        let files = TlsFiles {
            cert: write(dir.path(), "cert.pem", &first.cert_pem),
            key: write(dir.path(), "key.pem", &first.key_pem),
        };
        let store = Arc::new(CertificateStore::load(&files).unwrap());
        let before = store.leaf().unwrap();

        // A broken certificate file: error names it, old certificate stays.
        write(dir.path(), "cert.pem", "not pem at all");
        let error = store.reload().unwrap_err();
        assert!(error.to_string().contains("cert.pem"), "{error}");
        assert_eq!(store.leaf().unwrap(), before);

        // A key that does not match the certificate: error names the key file.
        let second = self_signed("two.test").unwrap();
        write(dir.path(), "cert.pem", &first.cert_pem);
        write(dir.path(), "key.pem", &second.key_pem);
        let error = store.reload().unwrap_err();
        assert!(error.to_string().contains("key.pem"), "{error}");
        assert_eq!(store.leaf().unwrap(), before);

        // A missing file.
        std::fs::remove_file(dir.path().join("key.pem")).unwrap();
        let error = store.reload().unwrap_err();
        assert!(matches!(error, TlsError::Read { .. }), "{error}");
        assert!(error.to_string().contains("key.pem"), "{error}");

        // A good new pair is taken.
        write(dir.path(), "cert.pem", &second.cert_pem);
        write(dir.path(), "key.pem", &second.key_pem);
        store.reload().unwrap();
        assert_ne!(store.leaf().unwrap(), before);

        // The three configurations build with the right ALPN.
        assert_eq!(
            store.dot_config().unwrap().alpn_protocols,
            vec![b"dot".to_vec()]
        );
        assert_eq!(
            store.doh_config().unwrap().alpn_protocols,
            vec![b"h2".to_vec(), b"http/1.1".to_vec()]
        );
        assert_eq!(
            store.doq_config().unwrap().alpn_protocols,
            vec![b"doq".to_vec()]
        );
    }
}
