//! Bounds on the quiet phases of a connection, on every listener, so that connections which
//! send nothing cannot hold the listener's places: a connection must begin its first request
//! within `first_byte_timeout` of being accepted (for TLS, of its handshake), which bounds a
//! silent client, an unfinished HTTP/2 preface and a silent TLS session alike; and once no
//! request is open, it must begin another within `idle_timeout`. hyper and tonic have no such
//! settings, so `Guarded` (the connection's I/O) ends the read side with `TimedOut` when the
//! deadline passes, and `CountRequests` (a layer over the connection's service) counts the
//! open requests, a request staying open until its response body is done.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll, Waker};
use std::time::Duration;

use http_body::{Body, Frame, SizeHint};
use parking_lot::Mutex;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::time::{Instant, Sleep};

/// How long a connection may stay quiet: before its first request, and between requests.
#[derive(Debug, Clone, Copy)]
pub struct QuietLimits {
    pub first_request: Duration,
    pub idle: Duration,
}

#[derive(Debug)]
struct State {
    open: usize,
    served: bool,
    quiet_since: Instant,
    /// The reader to wake when the last open request ends, so its idle deadline is armed.
    reader: Option<Waker>,
}

/// What one connection is doing: its open requests, and since when it has had none.
#[derive(Debug)]
pub(crate) struct Activity {
    limits: QuietLimits,
    state: Mutex<State>,
}

impl Activity {
    pub(crate) fn new(limits: QuietLimits) -> Arc<Self> {
        Arc::new(Activity {
            limits,
            state: Mutex::new(State {
                open: 0,
                served: false,
                quiet_since: Instant::now(),
                reader: None,
            }),
        })
    }

    /// One more open request, until the guard is dropped.
    pub(crate) fn begin(self: &Arc<Self>) -> RequestGuard {
        let mut state = self.state.lock();
        state.open += 1;
        state.served = true;
        RequestGuard(self.clone())
    }

    /// When the connection is closed unless a request begins; `None` while one is open.
    fn deadline(&self, reader: &Waker) -> Option<Instant> {
        let mut state = self.state.lock();
        if state.open > 0 {
            if !state.reader.as_ref().is_some_and(|w| w.will_wake(reader)) {
                state.reader = Some(reader.clone());
            }
            return None;
        }
        let allowed = match state.served {
            true => self.limits.idle,
            false => self.limits.first_request,
        };
        Some(state.quiet_since + allowed)
    }
}

/// An open request: the connection is not quiet while it lives.
#[derive(Debug)]
pub(crate) struct RequestGuard(Arc<Activity>);

impl Drop for RequestGuard {
    fn drop(&mut self) {
        let mut state = self.0.state.lock();
        state.open -= 1;
        if state.open == 0 {
            state.quiet_since = Instant::now();
            if let Some(reader) = state.reader.take() {
                reader.wake();
            }
        }
    }
}

/// A connection's I/O, closed on the read side once it has been quiet for too long.
pub(crate) struct Guarded<S> {
    inner: S,
    activity: Arc<Activity>,
    timer: Pin<Box<Sleep>>,
}

impl<S> Guarded<S> {
    pub(crate) fn new(inner: S, activity: Arc<Activity>) -> Self {
        Guarded {
            inner,
            activity,
            timer: Box::pin(tokio::time::sleep(Duration::ZERO)),
        }
    }

    pub(crate) fn get_ref(&self) -> &S {
        &self.inner
    }

    pub(crate) fn activity(&self) -> &Arc<Activity> {
        &self.activity
    }
}

impl<S: AsyncRead + Unpin> AsyncRead for Guarded<S> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        let this = self.get_mut();
        if let Poll::Ready(read) = Pin::new(&mut this.inner).poll_read(cx, buf) {
            return Poll::Ready(read);
        }
        let Some(deadline) = this.activity.deadline(cx.waker()) else {
            return Poll::Pending;
        };
        if this.timer.deadline() != deadline {
            this.timer.as_mut().reset(deadline);
        }
        match this.timer.as_mut().poll(cx) {
            Poll::Ready(()) => Poll::Ready(Err(std::io::Error::new(
                std::io::ErrorKind::TimedOut,
                "the connection stayed quiet for too long",
            ))),
            Poll::Pending => Poll::Pending,
        }
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for Guarded<S> {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        Pin::new(&mut self.get_mut().inner).poll_write(cx, buf)
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_shutdown(cx)
    }
}

/// A response body that keeps its request open until it is done or dropped.
pub(crate) struct GuardedBody<B> {
    inner: B,
    /// `None` for a request that came with no activity to count on.
    _open: Option<RequestGuard>,
}

impl<B: Body + Unpin> Body for GuardedBody<B> {
    type Data = B::Data;
    type Error = B::Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Self::Data>, Self::Error>>> {
        Pin::new(&mut self.get_mut().inner).poll_frame(cx)
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

/// Counts a service's requests as open on `activity` from their start to the end of their
/// response body.
#[derive(Clone)]
pub(crate) struct CountRequests<S> {
    inner: S,
    activity: Option<Arc<Activity>>,
}

impl<S> CountRequests<S> {
    /// Counts on `activity`; with `None`, on the `Arc<Activity>` in each request's extensions
    /// (where the gRPC listener's connection info puts it).
    pub(crate) fn new(inner: S, activity: Option<Arc<Activity>>) -> Self {
        CountRequests { inner, activity }
    }
}

impl<S, ReqBody, ResBody> tower::Service<axum::http::Request<ReqBody>> for CountRequests<S>
where
    S: tower::Service<axum::http::Request<ReqBody>, Response = axum::http::Response<ResBody>>,
    S::Future: Send + 'static,
{
    type Response = axum::http::Response<GuardedBody<ResBody>>;
    type Error = S::Error;
    type Future =
        Pin<Box<dyn Future<Output = Result<Self::Response, Self::Error>> + Send + 'static>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: axum::http::Request<ReqBody>) -> Self::Future {
        let activity = self
            .activity
            .clone()
            .or_else(|| request.extensions().get::<Arc<Activity>>().cloned());
        let open = activity.map(|a| a.begin());
        let response = self.inner.call(request);
        Box::pin(async move {
            let response = response.await?;
            Ok(response.map(|inner| GuardedBody { inner, _open: open }))
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::AsyncReadExt;

    const LIMITS: QuietLimits = QuietLimits {
        first_request: Duration::from_millis(200),
        idle: Duration::from_millis(400),
    };

    #[tokio::test(start_paused = true)]
    async fn a_silent_connection_is_closed_after_the_first_request_timeout() {
        let (client, server) = tokio::io::duplex(64);
        let mut guarded = Guarded::new(server, Activity::new(LIMITS));
        let started = Instant::now();
        let mut byte = [0u8; 1];
        let err = guarded.read(&mut byte).await.unwrap_err();
        assert_eq!(err.kind(), std::io::ErrorKind::TimedOut);
        assert_eq!(started.elapsed(), Duration::from_millis(200));
        drop(client);
    }

    #[tokio::test(start_paused = true)]
    async fn an_open_request_holds_the_deadline_and_its_end_starts_the_idle_one() {
        let (_client, server) = tokio::io::duplex(64);
        let activity = Activity::new(LIMITS);
        let mut guarded = Guarded::new(server, activity.clone());
        let open = activity.begin();
        let started = Instant::now();
        let release = tokio::spawn(async move {
            tokio::time::sleep(Duration::from_secs(5)).await;
            drop(open);
        });
        let mut byte = [0u8; 1];
        let err = guarded.read(&mut byte).await.unwrap_err();
        assert_eq!(err.kind(), std::io::ErrorKind::TimedOut);
        // Five seconds open, then the idle timeout.
        assert_eq!(started.elapsed(), Duration::from_millis(5_400));
        release.await.expect("released");
    }
}
