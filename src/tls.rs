//! TLS for the gRPC and HTTP listeners, with rustls: the server certificate and key, an optional
//! client CA that makes client certificates mandatory (mTLS), and reloading when the files
//! change, so a certificate rotated by cert-manager is served without a restart.

use std::io::BufReader;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use parking_lot::{Mutex, RwLock};
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::server::WebPkiClientVerifier;
use rustls::{RootCertStore, ServerConfig};
use thiserror::Error;
use tokio::net::TcpStream;
use tokio_rustls::server::TlsStream;
use tokio_rustls::TlsAcceptor;
use tokio_util::sync::CancellationToken;
use tracing::{debug, info, warn};

use crate::file_digest::{digest, FileDigest};

/// How long a client has to finish the handshake.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

#[derive(Debug, Error)]
pub enum TlsError {
    #[error("cannot read {path}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{path} holds no {what}")]
    Missing { path: PathBuf, what: &'static str },
    #[error("the certificate and key do not make a TLS configuration")]
    Config(#[from] rustls::Error),
    #[error("the client CA does not make a client-certificate verifier")]
    Verifier(#[from] rustls::server::VerifierBuilderError),
}

/// Where the PEM files are.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TlsFiles {
    pub cert: PathBuf,
    pub key: PathBuf,
    /// With it, clients must present a certificate this CA signed.
    pub client_ca: Option<PathBuf>,
}

impl TlsFiles {
    fn paths(&self) -> impl Iterator<Item = &Path> {
        [Some(&self.cert), Some(&self.key), self.client_ca.as_ref()]
            .into_iter()
            .flatten()
            .map(PathBuf::as_path)
    }

    /// Digests of the files' bytes: what tells a rotated file from the one loaded.
    fn stamp(&self) -> Vec<FileDigest> {
        self.paths().map(digest).collect()
    }
}

fn read(path: &Path) -> Result<Vec<u8>, TlsError> {
    std::fs::read(path).map_err(|source| TlsError::Read {
        path: path.to_owned(),
        source,
    })
}

fn certificates(path: &Path) -> Result<Vec<CertificateDer<'static>>, TlsError> {
    let pem = read(path)?;
    let certs: Vec<_> = rustls_pemfile::certs(&mut BufReader::new(pem.as_slice()))
        .filter_map(Result::ok)
        .collect();
    if certs.is_empty() {
        return Err(TlsError::Missing {
            path: path.to_owned(),
            what: "PEM certificate",
        });
    }
    Ok(certs)
}

fn private_key(path: &Path) -> Result<PrivateKeyDer<'static>, TlsError> {
    let pem = read(path)?;
    rustls_pemfile::private_key(&mut BufReader::new(pem.as_slice()))
        .ok()
        .flatten()
        .ok_or_else(|| TlsError::Missing {
            path: path.to_owned(),
            what: "PEM private key",
        })
}

/// A server configuration from the files, offering `alpn` protocols.
fn server_config(files: &TlsFiles, alpn: &[&[u8]]) -> Result<Arc<ServerConfig>, TlsError> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let builder = ServerConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()?;
    let builder = match &files.client_ca {
        Some(ca) => {
            let mut roots = RootCertStore::empty();
            for cert in certificates(ca)? {
                roots.add(cert)?;
            }
            let verifier =
                WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider).build()?;
            builder.with_client_cert_verifier(verifier)
        }
        None => builder.with_no_client_auth(),
    };
    let mut config =
        builder.with_single_cert(certificates(&files.cert)?, private_key(&files.key)?)?;
    config.alpn_protocols = alpn.iter().map(|p| p.to_vec()).collect();
    Ok(Arc::new(config))
}

/// How long before its expiry a served certificate is warned about.
const EXPIRY_WARNING: Duration = Duration::from_secs(7 * 24 * 3600);

/// What to say about the served certificate's validity at `now_secs` (Unix time): nothing
/// while it is valid for more than a week. An expired or not-yet-valid certificate is still
/// served (the clients decide), but it is said loudly.
pub(crate) fn validity_problem(cert: &CertificateDer<'_>, now_secs: i64) -> Option<String> {
    let (_, parsed) = x509_parser::parse_x509_certificate(cert.as_ref()).ok()?;
    let validity = parsed.validity();
    let (not_before, not_after) = (
        validity.not_before.timestamp(),
        validity.not_after.timestamp(),
    );
    if now_secs > not_after {
        return Some(format!(
            "the served certificate expired {} days ago; clients will refuse it",
            (now_secs - not_after) / 86_400
        ));
    }
    if now_secs < not_before {
        return Some("the served certificate is not valid yet; clients will refuse it".into());
    }
    let left = not_after - now_secs;
    (left < EXPIRY_WARNING.as_secs() as i64)
        .then(|| format!("the served certificate expires in {} hours", left / 3600))
}

/// Logs what `validity_problem` finds in the first certificate of `files`.
fn check_validity(files: &TlsFiles) {
    let Ok(certs) = certificates(&files.cert) else {
        return;
    };
    let now = SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs() as i64);
    if let Some(problem) = certs.first().and_then(|c| validity_problem(c, now)) {
        warn!(path = %files.cert.display(), "{problem}");
    }
}

/// The TLS configurations in force for gRPC (HTTP/2 only) and HTTP (HTTP/2 or 1.1), replaced
/// when the files change.
pub struct ReloadingTls {
    files: TlsFiles,
    grpc: RwLock<Arc<ServerConfig>>,
    http: RwLock<Arc<ServerConfig>>,
    loaded: Mutex<Vec<FileDigest>>,
}

impl ReloadingTls {
    pub fn load(files: TlsFiles) -> Result<Arc<ReloadingTls>, TlsError> {
        let loaded = files.stamp();
        check_validity(&files);
        Ok(Arc::new(ReloadingTls {
            grpc: RwLock::new(server_config(&files, &[b"h2"])?),
            http: RwLock::new(server_config(&files, &[b"h2", b"http/1.1"])?),
            loaded: Mutex::new(loaded),
            files,
        }))
    }

    pub(crate) fn grpc(&self) -> Arc<ServerConfig> {
        self.grpc.read().clone()
    }

    pub(crate) fn http(&self) -> Arc<ServerConfig> {
        self.http.read().clone()
    }

    /// Reloads when a file changed. A broken new set is reported and the old one kept, so a
    /// half-written rotation never takes the listener down.
    pub fn reload_if_changed(&self) -> Result<bool, TlsError> {
        let stamp = self.files.stamp();
        if *self.loaded.lock() == stamp {
            return Ok(false);
        }
        let grpc = server_config(&self.files, &[b"h2"])?;
        let http = server_config(&self.files, &[b"h2", b"http/1.1"])?;
        *self.grpc.write() = grpc;
        *self.http.write() = http;
        *self.loaded.lock() = stamp;
        check_validity(&self.files);
        Ok(true)
    }
}

/// Checks the files every `every` until `shutdown`, reloading what changed.
pub(crate) async fn watch(tls: Arc<ReloadingTls>, every: Duration, shutdown: CancellationToken) {
    let mut tick = tokio::time::interval(every);
    loop {
        tokio::select! {
            _ = shutdown.cancelled() => return,
            _ = tick.tick() => {}
        }
        match tls.reload_if_changed() {
            Ok(true) => info!("TLS certificates reloaded"),
            Ok(false) => {}
            Err(err) => {
                warn!(error = %err, "TLS files changed but do not load; the previous certificates stay in force")
            }
        }
    }
}

/// The TLS handshake of one accepted connection, bounded in time; `None` when it fails or is
/// too slow.
pub(crate) async fn handshake(
    stream: TcpStream,
    config: Arc<ServerConfig>,
    peer: std::net::SocketAddr,
) -> Option<TlsStream<TcpStream>> {
    match tokio::time::timeout(HANDSHAKE_TIMEOUT, TlsAcceptor::from(config).accept(stream)).await {
        Ok(Ok(tls)) => Some(tls),
        Ok(Err(err)) => {
            debug!(%peer, error = %err, "TLS handshake refused");
            None
        }
        Err(_) => {
            debug!(%peer, "TLS handshake timed out");
            None
        }
    }
}

#[cfg(test)]
mod validity_tests {
    use super::*;

    fn certificate(from: (i32, u8, u8), until: (i32, u8, u8)) -> CertificateDer<'static> {
        let mut params =
            rcgen::CertificateParams::new(vec!["localhost".to_owned()]).expect("params");
        params.not_before = rcgen::date_time_ymd(from.0, from.1, from.2);
        params.not_after = rcgen::date_time_ymd(until.0, until.1, until.2);
        let key = rcgen::KeyPair::generate().expect("key");
        params.self_signed(&key).expect("certificate").der().clone()
    }

    /// 2026-11-29T00:00:00Z.
    const NOW: i64 = 1_795_910_400;

    #[test]
    fn an_expired_or_expiring_certificate_is_said_and_a_valid_one_is_not() {
        let expired = certificate((2020, 1, 1), (2021, 1, 1));
        let problem = validity_problem(&expired, NOW).expect("expired");
        assert!(problem.contains("expired"), "{problem}");
        let soon = certificate((2026, 1, 1), (2026, 12, 1));
        let problem = validity_problem(&soon, NOW).expect("expiring");
        assert!(problem.contains("expires in"), "{problem}");
        let early = certificate((2027, 1, 1), (2028, 1, 1));
        assert!(validity_problem(&early, NOW)
            .expect("not yet")
            .contains("not valid yet"));
        let fine = certificate((2026, 1, 1), (2027, 6, 1));
        assert_eq!(validity_problem(&fine, NOW), None);
    }
}
