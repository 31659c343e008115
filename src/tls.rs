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

    /// Modification times and sizes: what tells a rotated file from the one loaded.
    fn stamp(&self) -> Vec<Option<(SystemTime, u64)>> {
        self.paths()
            .map(|p| {
                std::fs::metadata(p)
                    .ok()
                    .and_then(|m| Some((m.modified().ok()?, m.len())))
            })
            .collect()
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

/// The TLS configurations in force for gRPC (HTTP/2 only) and HTTP (HTTP/2 or 1.1), replaced
/// when the files change.
pub struct ReloadingTls {
    files: TlsFiles,
    grpc: RwLock<Arc<ServerConfig>>,
    http: RwLock<Arc<ServerConfig>>,
    loaded: Mutex<Vec<Option<(SystemTime, u64)>>>,
}

impl ReloadingTls {
    pub fn load(files: TlsFiles) -> Result<Arc<ReloadingTls>, TlsError> {
        let loaded = files.stamp();
        Ok(Arc::new(ReloadingTls {
            grpc: RwLock::new(server_config(&files, &[b"h2"])?),
            http: RwLock::new(server_config(&files, &[b"h2", b"http/1.1"])?),
            loaded: Mutex::new(loaded),
            files,
        }))
    }

    pub fn grpc(&self) -> Arc<ServerConfig> {
        self.grpc.read().clone()
    }

    pub fn http(&self) -> Arc<ServerConfig> {
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
        Ok(true)
    }
}

/// Checks the files every `every` until `shutdown`, reloading what changed.
pub async fn watch(tls: Arc<ReloadingTls>, every: Duration, shutdown: CancellationToken) {
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
pub async fn handshake(
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
