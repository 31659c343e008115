//! The gRPC listener's connections: accepted one loop, plain or over TLS, at most a given number
//! open at once. Past the cap a connection is closed at once and counted, so a flood of idle
//! connections cannot take every file descriptor the process has.

use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{mpsc, OwnedSemaphorePermit, Semaphore};
use tokio_rustls::server::TlsStream;
use tokio_util::sync::CancellationToken;
use tonic::transport::server::Connected;
use tracing::warn;

use super::Metrics;
use crate::tls::ReloadingTls;

/// A connection that holds its place under the cap, and leaves the open-connections gauge
/// when it closes.
pub(crate) struct Counted<S> {
    inner: S,
    _place: Place,
}

/// The places under one listener's connection cap, counted in its metrics.
pub(crate) struct Places {
    permits: Arc<Semaphore>,
    metrics: Arc<Metrics>,
    listener: &'static str,
}

impl Places {
    pub(crate) fn new(max: usize, metrics: Arc<Metrics>, listener: &'static str) -> Self {
        Places {
            permits: Arc::new(Semaphore::new(max.max(1))),
            metrics,
            listener,
        }
    }

    /// A place for one more connection, counted as open; `None`, counted as refused, at the cap.
    pub(crate) fn take(&self) -> Option<Place> {
        let Ok(permit) = self.permits.clone().try_acquire_owned() else {
            self.metrics.connection_refused(self.listener);
            return None;
        };
        self.metrics.connection_opened(self.listener, 1);
        Some(Place {
            metrics: self.metrics.clone(),
            listener: self.listener,
            _permit: permit,
        })
    }
}

/// One connection's place: given back, and no longer counted as open, when dropped.
pub(crate) struct Place {
    metrics: Arc<Metrics>,
    listener: &'static str,
    _permit: OwnedSemaphorePermit,
}

impl Drop for Place {
    fn drop(&mut self) {
        self.metrics.connection_opened(self.listener, -1);
    }
}

const LISTENER: &str = "grpc";

/// Accepts on `listener` until `shutdown`, with at most `max` connections open, each over TLS
/// when `tls` is given.
pub(crate) fn grpc_incoming(
    listener: TcpListener,
    tls: Option<Arc<ReloadingTls>>,
    max: usize,
    metrics: Arc<Metrics>,
    shutdown: CancellationToken,
) -> mpsc::Receiver<Result<Counted<Stream>, std::io::Error>> {
    let (ready, streams) = mpsc::channel(64);
    let places = Places::new(max, metrics, LISTENER);
    tokio::spawn(async move {
        while let Some((stream, peer)) = accept(&listener, &shutdown, LISTENER).await {
            let Some(place) = places.take() else {
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
                let _ = ready
                    .send(Ok(Counted {
                        inner: stream,
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

impl Connected for Counted<Stream> {
    type ConnectInfo = tonic::transport::server::TcpConnectInfo;

    fn connect_info(&self) -> Self::ConnectInfo {
        match &self.inner {
            Stream::Plain(stream) => stream.connect_info(),
            Stream::Tls(stream) => stream.get_ref().0.connect_info(),
        }
    }
}

impl AsyncRead for Counted<Stream> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        match &mut self.inner {
            Stream::Plain(stream) => Pin::new(stream).poll_read(cx, buf),
            Stream::Tls(stream) => Pin::new(stream.as_mut()).poll_read(cx, buf),
        }
    }
}

impl AsyncWrite for Counted<Stream> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        match &mut self.inner {
            Stream::Plain(stream) => Pin::new(stream).poll_write(cx, buf),
            Stream::Tls(stream) => Pin::new(stream.as_mut()).poll_write(cx, buf),
        }
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        match &mut self.inner {
            Stream::Plain(stream) => Pin::new(stream).poll_flush(cx),
            Stream::Tls(stream) => Pin::new(stream.as_mut()).poll_flush(cx),
        }
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        match &mut self.inner {
            Stream::Plain(stream) => Pin::new(stream).poll_shutdown(cx),
            Stream::Tls(stream) => Pin::new(stream.as_mut()).poll_shutdown(cx),
        }
    }
}
