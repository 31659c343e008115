//! The gRPC listener's connections: accepted one loop, plain or over TLS, at most a given number
//! open at once (and, when set, per client address). Past a cap a connection is closed at once
//! and counted, so a flood of connections cannot take every file descriptor the process has;
//! and a connection that stays quiet is closed (`guard`), so held connections cannot keep
//! everyone else out.

use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use std::collections::HashMap;
use std::net::IpAddr;

use parking_lot::Mutex;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{mpsc, OwnedSemaphorePermit, Semaphore};
use tokio_rustls::server::TlsStream;
use tokio_util::sync::CancellationToken;
use tonic::transport::server::{Connected, TcpConnectInfo};
use tracing::warn;

use super::guard::{Activity, Guarded, QuietLimits};
use super::Metrics;
use crate::tls::ReloadingTls;

/// A connection that holds its place under the cap, and leaves the open-connections gauge
/// when it closes; closed once it has been quiet too long (`guard`).
pub(crate) struct Counted<S> {
    inner: Guarded<S>,
    _place: Place,
}

/// Connections held per client address.
type ByIp = Arc<Mutex<HashMap<IpAddr, usize>>>;

/// The places under one listener's connection cap (and, with `per_ip`, under a cap per client
/// address), counted in its metrics.
pub(crate) struct Places {
    permits: Arc<Semaphore>,
    per_ip: usize,
    by_ip: ByIp,
    metrics: Arc<Metrics>,
    listener: &'static str,
}

impl Places {
    /// `per_ip` 0: no cap per address.
    pub(crate) fn new(
        max: usize,
        per_ip: usize,
        metrics: Arc<Metrics>,
        listener: &'static str,
    ) -> Self {
        Places {
            permits: Arc::new(Semaphore::new(max.max(1))),
            per_ip,
            by_ip: Arc::default(),
            metrics,
            listener,
        }
    }

    /// A place for one more connection from `ip`, counted as open; `None`, counted as refused,
    /// at either cap.
    pub(crate) fn take(&self, ip: IpAddr) -> Option<Place> {
        let Ok(permit) = self.permits.clone().try_acquire_owned() else {
            self.metrics.connection_refused(self.listener);
            return None;
        };
        if self.per_ip > 0 {
            let mut by_ip = self.by_ip.lock();
            let held = by_ip.entry(ip).or_default();
            if *held >= self.per_ip {
                self.metrics.connection_refused_per_ip(self.listener);
                return None;
            }
            *held += 1;
        }
        self.metrics.connection_opened(self.listener, 1);
        Some(Place {
            metrics: self.metrics.clone(),
            listener: self.listener,
            ip: (self.per_ip > 0).then(|| (ip, self.by_ip.clone())),
            _permit: permit,
        })
    }
}

/// One connection's place: given back, and no longer counted as open, when dropped.
pub(crate) struct Place {
    metrics: Arc<Metrics>,
    listener: &'static str,
    /// Its address's count, when addresses are capped.
    ip: Option<(IpAddr, ByIp)>,
    _permit: OwnedSemaphorePermit,
}

impl Drop for Place {
    fn drop(&mut self) {
        self.metrics.connection_opened(self.listener, -1);
        if let Some((ip, by_ip)) = &self.ip {
            let mut by_ip = by_ip.lock();
            if let Some(held) = by_ip.get_mut(ip) {
                *held -= 1;
                if *held == 0 {
                    by_ip.remove(ip);
                }
            }
        }
    }
}

const LISTENER: &str = "grpc";

/// What bounds the gRPC listener's connections.
#[derive(Debug, Clone, Copy)]
pub(crate) struct GrpcLimits {
    pub(crate) max: usize,
    pub(crate) per_ip: usize,
    pub(crate) quiet: QuietLimits,
}

/// Accepts on `listener` until `shutdown`, within `limits`, each over TLS when `tls` is given.
pub(crate) fn grpc_incoming(
    listener: TcpListener,
    tls: Option<Arc<ReloadingTls>>,
    limits: GrpcLimits,
    metrics: Arc<Metrics>,
    shutdown: CancellationToken,
) -> mpsc::Receiver<Result<Counted<Stream>, std::io::Error>> {
    let (ready, streams) = mpsc::channel(64);
    let places = Places::new(limits.max, limits.per_ip, metrics, LISTENER);
    tokio::spawn(async move {
        while let Some((stream, peer)) = accept(&listener, &shutdown, LISTENER).await {
            let Some(place) = places.take(peer.ip()) else {
                continue;
            };
            // Without TCP_NODELAY, responses wait on delayed ACKs (~40 ms on Linux).
            let _ = stream.set_nodelay(true);
            let ready = ready.clone();
            let tls = tls.clone();
            tokio::spawn(async move {
                let stream = match tls {
                    None => Stream::Plain(stream),
                    Some(tls) => match crate::tls::handshake(stream, tls.grpc(), peer).await {
                        Some(stream) => Stream::Tls(Box::new(stream)),
                        None => return,
                    },
                };
                // Quiet from here: after the TLS handshake, if there is one.
                let activity = Activity::new(limits.quiet);
                let _ = ready
                    .send(Ok(Counted {
                        inner: Guarded::new(stream, activity),
                        _place: place,
                    }))
                    .await;
            });
        }
    });
    streams
}

/// The next connection, or `None` once `shutdown` is cancelled. A failed accept (out of file
/// descriptors, most likely) is logged and tried again after a short pause.
pub(crate) async fn accept(
    listener: &TcpListener,
    shutdown: &CancellationToken,
    name: &'static str,
) -> Option<(TcpStream, std::net::SocketAddr)> {
    loop {
        let accepted = tokio::select! {
            _ = shutdown.cancelled() => return None,
            accepted = listener.accept() => accepted,
        };
        match accepted {
            Ok(accepted) => return Some(accepted),
            Err(err) => {
                warn!(listener = name, error = %err, "cannot accept a connection");
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        }
    }
}

/// A plain or a TLS connection.
pub(crate) enum Stream {
    Plain(TcpStream),
    Tls(Box<TlsStream<TcpStream>>),
}

/// What a gRPC request learns of its connection: the address, and the activity that counts
/// its open requests (`expose_connect_info` hands both on).
#[derive(Clone)]
pub(crate) struct GrpcConnectInfo {
    tcp: TcpConnectInfo,
    activity: Arc<Activity>,
}

impl Connected for Counted<Stream> {
    type ConnectInfo = GrpcConnectInfo;

    fn connect_info(&self) -> Self::ConnectInfo {
        let tcp = match self.inner.get_ref() {
            Stream::Plain(stream) => stream.connect_info(),
            Stream::Tls(stream) => stream.get_ref().0.connect_info(),
        };
        GrpcConnectInfo {
            tcp,
            activity: self.inner.activity().clone(),
        }
    }
}

/// Puts the connection's address where tonic's `remote_addr` finds it, and its activity where
/// `CountRequests` does.
pub(crate) fn expose_connect_info<B>(
    mut request: axum::http::Request<B>,
) -> axum::http::Request<B> {
    if let Some(info) = request.extensions().get::<GrpcConnectInfo>().cloned() {
        request.extensions_mut().insert(info.tcp);
        request.extensions_mut().insert(info.activity);
    }
    request
}

impl AsyncRead for Counted<Stream> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.inner).poll_read(cx, buf)
    }
}

impl AsyncWrite for Counted<Stream> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write(cx, buf)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}

impl AsyncRead for Stream {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        match self.get_mut() {
            Stream::Plain(stream) => Pin::new(stream).poll_read(cx, buf),
            Stream::Tls(stream) => Pin::new(stream.as_mut()).poll_read(cx, buf),
        }
    }
}

impl AsyncWrite for Stream {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        match self.get_mut() {
            Stream::Plain(stream) => Pin::new(stream).poll_write(cx, buf),
            Stream::Tls(stream) => Pin::new(stream.as_mut()).poll_write(cx, buf),
        }
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        match self.get_mut() {
            Stream::Plain(stream) => Pin::new(stream).poll_flush(cx),
            Stream::Tls(stream) => Pin::new(stream.as_mut()).poll_flush(cx),
        }
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        match self.get_mut() {
            Stream::Plain(stream) => Pin::new(stream).poll_shutdown(cx),
            Stream::Tls(stream) => Pin::new(stream.as_mut()).poll_shutdown(cx),
        }
    }
}
