//! A self-signed certificate for trying DoT, DoH and DoQ at once
//! (`juris cert self-signed --name localhost`).

use std::fs::OpenOptions;
use std::io::Write;
use std::path::{Path, PathBuf};

/// A freshly generated certificate and its private key, both PEM.
#[derive(Clone)]
pub struct SelfSigned {
    /// The certificate (one `CERTIFICATE` block).
    pub cert_pem: String,
    /// The private key (PKCS#8, ECDSA P-256).
    pub key_pem: String,
}

impl std::fmt::Debug for SelfSigned {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Never print the private key.
        f.debug_struct("SelfSigned")
            .field("cert_pem", &self.cert_pem)
            .finish_non_exhaustive()
    }
}

/// Why a certificate could not be made or written.
#[derive(Debug, thiserror::Error)]
pub enum CertError {
    /// rcgen refused the name or failed to sign.
    #[error("cannot generate a certificate for {name:?}: {source}")]
    Generate {
        /// The requested name.
        name: String,
        /// What rcgen said.
        #[source]
        source: rcgen::Error,
    },
    /// A file could not be written (an existing file is never overwritten).
    #[error("cannot write {}: {source}", path.display())]
    Write {
        /// The file.
        path: PathBuf,
        /// What the OS said.
        #[source]
        source: std::io::Error,
    },
}

/// A self-signed certificate (ECDSA P-256) for `name`. The name becomes a DNS name in the
/// subject alternative names (an IP address if it parses as one); for `localhost` the
/// loopback addresses 127.0.0.1 and ::1 are added, so clients that verify by address work too.
pub fn self_signed(name: &str) -> Result<SelfSigned, CertError> {
    let mut names = vec![name.to_owned()];
    if name.eq_ignore_ascii_case("localhost") {
        names.push("127.0.0.1".to_owned());
        names.push("::1".to_owned());
    }
    let generated =
        rcgen::generate_simple_self_signed(names).map_err(|source| CertError::Generate {
            name: name.to_owned(),
            source,
        })?;
    Ok(SelfSigned {
        cert_pem: generated.cert.pem(),
        key_pem: generated.signing_key.serialize_pem(),
    })
}

/// Generates [`self_signed`] for `name` and writes `cert.pem` and `key.pem` (mode 0600) into
/// `dir`. Refuses to overwrite either file. Returns the two paths.
pub fn write_self_signed(dir: &Path, name: &str) -> Result<(PathBuf, PathBuf), CertError> {
    let pair = self_signed(name)?;
    let cert = dir.join("cert.pem");
    let key = dir.join("key.pem");
    for path in [&cert, &key] {
        if path.exists() {
            return Err(CertError::Write {
                path: path.clone(),
                source: std::io::Error::new(
                    std::io::ErrorKind::AlreadyExists,
                    "file exists; remove it first",
                ),
            });
        }
    }
    write_new(&key, &pair.key_pem, 0o600)?;
    write_new(&cert, &pair.cert_pem, 0o644)?;
    Ok((cert, key))
}

fn write_new(path: &Path, contents: &str, mode: u32) -> Result<(), CertError> {
    let error = |source| CertError::Write {
        path: path.to_owned(),
        source,
    };
    let mut options = OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        options.mode(mode);
    }
    #[cfg(not(unix))]
    let _ = mode;
    let mut file = options.open(path).map_err(error)?;
    file.write_all(contents.as_bytes()).map_err(error)?;
    file.sync_all().map_err(error)
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used, reason = "test code")]
mod tests {
    use super::*;

    #[test]
    fn self_signed_pem_is_loadable() {
        let pair = self_signed("localhost").unwrap();
        assert!(pair.cert_pem.starts_with("-----BEGIN CERTIFICATE-----"));
        assert!(pair.key_pem.starts_with("-----BEGIN PRIVATE KEY-----"));
        assert!(!format!("{pair:?}").contains("PRIVATE KEY"));
        let key = crate::tls::CertificateStore::from_pem(
            pair.cert_pem.as_bytes(),
            pair.key_pem.as_bytes(),
        );
        assert!(key.is_ok(), "{key:?}");
    }

    #[test]
    fn write_refuses_to_overwrite() {
        let dir = tempfile::tempdir().unwrap();
        let (cert, key) = write_self_signed(dir.path(), "localhost").unwrap();
        assert_eq!(cert, dir.path().join("cert.pem"));
        assert_eq!(key, dir.path().join("key.pem"));
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = std::fs::metadata(&key).unwrap().permissions().mode();
            assert_eq!(mode & 0o777, 0o600);
        }
        let again = write_self_signed(dir.path(), "localhost").unwrap_err();
        assert!(again.to_string().contains("cert.pem"), "{again}");
    }
}
