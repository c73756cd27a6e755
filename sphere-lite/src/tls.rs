//! Native TLS for `serve` (`--tls-cert`/`--tls-key`): the PEM certificate chain and private key
//! loaded into a rustls server configuration, and the handshake of each accepted connection.
//!
//! Why this module exists: warp 0.4 has no TLS and its acceptor trait is sealed. The accept
//! loop every listener shares ([`crate::door::accept`]) calls [`ServerTls::handshake`] after
//! accepting, then serves the `tokio_rustls` stream exactly as a plain one: the same routes,
//! limits and shutdown semantics. rustls with the ring provider, as minio and ureq use it: no
//! OpenSSL, no aws-lc. A reverse proxy that terminates TLS stays the alternative (README,
//! Operations).
//!
//! Decisions:
//!
//! * ALPN offers `http/1.1` only. Over HTTP/2 browsers send `:authority` instead of a `Host`
//!   header, and the dashboard's same-origin check compares `Origin` with `Host`; HTTP/1.1 is
//!   also what the plain listener speaks to browsers.
//! * A failed handshake (a plain-HTTP client, a scanner, garbage) ends that connection only and
//!   is logged at debug; a handshake is bounded by [`HANDSHAKE_TIMEOUT`] so a client that stalls
//!   cannot hold a task forever.
//! * Requests that arrived over TLS carry a [`TlsConnection`] extension: the dashboard reads it
//!   to mark its session cookie `Secure`, as it does behind a proxy that says
//!   `X-Forwarded-Proto: https`.
//! * Certificates are read once at start: replacing them needs a restart.

use std::io::Read as _;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use rustls_pki_types::pem::{self, PemObject};
use rustls_pki_types::{CertificateDer, PrivateKeyDer};
use tokio::net::TcpStream;
use tokio_rustls::TlsAcceptor;

/// How long a client may take for the TLS handshake before its connection is dropped.
pub const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

/// Largest certificate or key file read (PEM chains are a few KiB; this only stops a wrong path
/// such as a disk image from being read into memory).
pub const MAX_PEM_BYTES: u64 = 1024 * 1024;

/// The ALPN protocols offered (see the module docs for why not `h2`).
const ALPN: &[&[u8]] = &[b"http/1.1"];

/// Request extension set on every request that arrived over a native TLS connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TlsConnection {
    /// The client's address (warp's `addr::remote` is only filled by warp's own server loop).
    pub peer: SocketAddr,
}

/// A certificate or key that cannot be used; every message names the file and the fix.
#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    /// The file could not be opened or read.
    #[error("TLS {what} {}: cannot read it: {source}. Fix: check the path and its permissions", file.display())]
    Read {
        /// `certificate` or `key`.
        what: &'static str,
        /// The file.
        file: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// The file is empty.
    #[error("TLS {what} {}: the file is empty. Fix: point to the PEM file of the {what}", file.display())]
    Empty {
        /// `certificate` or `key`.
        what: &'static str,
        /// The file.
        file: PathBuf,
    },
    /// The file is larger than [`MAX_PEM_BYTES`].
    #[error("TLS {what} {}: larger than {MAX_PEM_BYTES} bytes, not a PEM file. Fix: point to the PEM file of the {what}", file.display())]
    TooLarge {
        /// `certificate` or `key`.
        what: &'static str,
        /// The file.
        file: PathBuf,
    },
    /// The file is not valid PEM.
    #[error("TLS {what} {}: not valid PEM ({message}). Fix: point to the PEM file of the {what}", file.display())]
    Pem {
        /// `certificate` or `key`.
        what: &'static str,
        /// The file.
        file: PathBuf,
        /// What the parser said.
        message: String,
    },
    /// The certificate file holds no `CERTIFICATE` section.
    #[error("TLS certificate {}: no `BEGIN CERTIFICATE` section. Fix: give the PEM certificate chain, server certificate first", file.display())]
    NoCertificate {
        /// The file.
        file: PathBuf,
    },
    /// The key file holds no private key section.
    #[error("TLS key {}: no private key (PKCS#8 `BEGIN PRIVATE KEY`, RSA `BEGIN RSA PRIVATE KEY` or SEC1 `BEGIN EC PRIVATE KEY`). Fix: give the PEM private key of the certificate", file.display())]
    NoKey {
        /// The file.
        file: PathBuf,
    },
    /// rustls refused the pair: the key does not belong to the certificate, or it is of an
    /// unsupported kind.
    #[error("TLS key {} does not fit certificate {}: {message}. Fix: give the private key that belongs to the first certificate of the chain", key.display(), cert.display())]
    Rejected {
        /// The certificate file.
        cert: PathBuf,
        /// The key file.
        key: PathBuf,
        /// What rustls said.
        message: String,
    },
}

/// A loaded TLS server configuration, ready to serve (cheap to clone).
#[derive(Clone)]
pub struct ServerTls {
    acceptor: TlsAcceptor,
}

impl std::fmt::Debug for ServerTls {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ServerTls").finish_non_exhaustive()
    }
}

impl ServerTls {
    /// Load the PEM certificate chain `cert` (server certificate first) and the PEM private key
    /// `key` (PKCS#8, RSA or SEC1); rustls checks that the key belongs to the certificate.
    pub fn load(cert: &Path, key: &Path) -> Result<Self, TlsError> {
        let chain = read_chain(cert)?;
        let private_key = read_key(key)?;
        let rejected = |e: rustls::Error| TlsError::Rejected {
            cert: cert.to_owned(),
            key: key.to_owned(),
            message: match e {
                rustls::Error::InconsistentKeys(rustls::InconsistentKeys::KeyMismatch) => {
                    "the key's public key is not the certificate's".to_owned()
                }
                e => e.to_string(),
            },
        };
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let mut config = rustls::ServerConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .map_err(rejected)?
            .with_no_client_auth()
            .with_single_cert(chain, private_key)
            .map_err(rejected)?;
        config.alpn_protocols = ALPN.iter().map(|p| p.to_vec()).collect();
        Ok(ServerTls {
            acceptor: TlsAcceptor::from(Arc::new(config)),
        })
    }

    /// The TLS handshake with `peer`, bounded by [`HANDSHAKE_TIMEOUT`]; `None` (logged at
    /// debug) when it fails: a failed handshake is the client's problem, never the server's.
    pub async fn handshake(
        &self,
        tcp: TcpStream,
        peer: SocketAddr,
    ) -> Option<tokio_rustls::server::TlsStream<TcpStream>> {
        handshake(&self.acceptor, tcp, peer).await
    }
}

/// The TLS handshake with `peer`, bounded by [`HANDSHAKE_TIMEOUT`]; `None` (logged at debug)
/// when it fails: a failed handshake is the client's problem, never the server's.
async fn handshake(
    acceptor: &TlsAcceptor,
    tcp: TcpStream,
    peer: SocketAddr,
) -> Option<tokio_rustls::server::TlsStream<TcpStream>> {
    match tokio::time::timeout(HANDSHAKE_TIMEOUT, acceptor.accept(tcp)).await {
        Ok(Ok(stream)) => Some(stream),
        Ok(Err(e)) => {
            tracing::debug!(%peer, error = %e, "TLS handshake failed");
            None
        }
        Err(_) => {
            tracing::debug!(%peer, "TLS handshake timed out");
            None
        }
    }
}

/// The bytes of `file`, refused when unreadable, empty or larger than [`MAX_PEM_BYTES`].
fn read_pem_file(what: &'static str, file: &Path) -> Result<Vec<u8>, TlsError> {
    let read_error = |source| TlsError::Read {
        what,
        file: file.to_owned(),
        source,
    };
    let mut bytes = Vec::new();
    std::fs::File::open(file)
        .and_then(|f| f.take(MAX_PEM_BYTES + 1).read_to_end(&mut bytes))
        .map_err(read_error)?;
    let file = file.to_owned();
    if bytes.len() as u64 > MAX_PEM_BYTES {
        return Err(TlsError::TooLarge { what, file });
    }
    if bytes.iter().all(u8::is_ascii_whitespace) {
        return Err(TlsError::Empty { what, file });
    }
    Ok(bytes)
}

fn pem_error(what: &'static str, file: &Path, e: pem::Error) -> TlsError {
    TlsError::Pem {
        what,
        file: file.to_owned(),
        message: e.to_string(),
    }
}

/// Every `CERTIFICATE` section of `file`, in order; at least one.
fn read_chain(file: &Path) -> Result<Vec<CertificateDer<'static>>, TlsError> {
    let bytes = read_pem_file("certificate", file)?;
    let chain = CertificateDer::pem_slice_iter(&bytes)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| pem_error("certificate", file, e))?;
    if chain.is_empty() {
        return Err(TlsError::NoCertificate {
            file: file.to_owned(),
        });
    }
    Ok(chain)
}

/// The first private key of `file` (PKCS#8, RSA or SEC1).
fn read_key(file: &Path) -> Result<PrivateKeyDer<'static>, TlsError> {
    let bytes = read_pem_file("key", file)?;
    PrivateKeyDer::from_pem_slice(&bytes).map_err(|e| match e {
        pem::Error::NoItemsFound => TlsError::NoKey {
            file: file.to_owned(),
        },
        e => pem_error("key", file, e),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    struct Pair {
        cert: String,
        key: String,
    }

    fn self_signed() -> Pair {
        let key = rcgen::KeyPair::generate().unwrap();
        let params = rcgen::CertificateParams::new(vec!["localhost".to_owned()]).unwrap();
        let cert = params.self_signed(&key).unwrap();
        Pair {
            cert: cert.pem(),
            key: key.serialize_pem(),
        }
    }

    fn write(dir: &Path, name: &str, text: &str) -> PathBuf {
        let path = dir.join(name);
        std::fs::write(&path, text).unwrap();
        path
    }

    #[test]
    fn a_matching_pair_loads() {
        let dir = tempfile::tempdir().unwrap();
        let pair = self_signed();
        let cert = write(dir.path(), "cert.pem", &pair.cert);
        let key = write(dir.path(), "key.pem", &pair.key);
        ServerTls::load(&cert, &key).unwrap();
        // A chain: the server certificate and whatever follows are all read.
        let other = self_signed();
        let chain = write(
            dir.path(),
            "chain.pem",
            &format!("{}{}", pair.cert, other.cert),
        );
        assert_eq!(read_chain(&chain).unwrap().len(), 2);
        ServerTls::load(&chain, &key).unwrap();
    }

    #[test]
    fn a_key_of_another_certificate_is_refused_naming_both_files() {
        let dir = tempfile::tempdir().unwrap();
        let cert = write(dir.path(), "cert.pem", &self_signed().cert);
        let key = write(dir.path(), "other-key.pem", &self_signed().key);
        let err = ServerTls::load(&cert, &key).unwrap_err();
        assert!(matches!(err, TlsError::Rejected { .. }), "{err:?}");
        let text = err.to_string();
        assert!(text.contains("not the certificate's"), "{text}");
        assert!(
            text.contains("cert.pem") && text.contains("other-key.pem") && text.contains("Fix"),
            "{text}"
        );
    }

    #[test]
    fn missing_empty_and_wrong_files_are_named() {
        let dir = tempfile::tempdir().unwrap();
        let pair = self_signed();
        let cert = write(dir.path(), "cert.pem", &pair.cert);
        let key = write(dir.path(), "key.pem", &pair.key);
        let empty = write(dir.path(), "empty.pem", "\n");
        let garbage = write(
            dir.path(),
            "garbage.pem",
            "-----BEGIN CERTIFICATE-----\n!!!\n",
        );
        let missing = dir.path().join("missing.pem");

        // The error, after checking that its message names `file` and gives a fix.
        let refused = |cert: &Path, key: &Path, file: &str| {
            let err = ServerTls::load(cert, key).unwrap_err();
            let text = err.to_string();
            assert!(text.contains(file) && text.contains("Fix"), "{text}");
            err
        };
        let err = refused(&missing, &key, "missing.pem");
        assert!(
            matches!(
                err,
                TlsError::Read {
                    what: "certificate",
                    ..
                }
            ),
            "{err:?}"
        );
        let err = refused(&cert, &missing, "missing.pem");
        assert!(matches!(err, TlsError::Read { what: "key", .. }), "{err:?}");
        let err = refused(&empty, &key, "empty.pem");
        assert!(
            matches!(
                err,
                TlsError::Empty {
                    what: "certificate",
                    ..
                }
            ),
            "{err:?}"
        );
        let err = refused(&cert, &empty, "empty.pem");
        assert!(
            matches!(err, TlsError::Empty { what: "key", .. }),
            "{err:?}"
        );
        // Key and certificate swapped: the certificate file holds no certificate.
        let err = refused(&key, &cert, "key.pem");
        assert!(matches!(err, TlsError::NoCertificate { .. }), "{err:?}");
        let err = refused(&garbage, &key, "garbage.pem");
        assert!(matches!(err, TlsError::Pem { .. }), "{err:?}");
        let err = read_key(&cert).unwrap_err();
        assert!(matches!(err, TlsError::NoKey { .. }), "{err:?}");
    }

    #[test]
    fn a_huge_file_is_not_read() {
        let dir = tempfile::tempdir().unwrap();
        let big = dir.path().join("disk.img");
        let file = std::fs::File::create(&big).unwrap();
        file.set_len(MAX_PEM_BYTES + 1).unwrap();
        let err = read_chain(&big).unwrap_err();
        assert!(matches!(err, TlsError::TooLarge { .. }), "{err:?}");
    }
}
