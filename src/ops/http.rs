//! The operations HTTP endpoints: `/metrics`, `/healthz` and `/readyz`.

use std::sync::Arc;
use std::thread::JoinHandle;

use axum::extract::{ConnectInfo, State};

use super::guard::{Activity, CountRequests, Guarded, QuietLimits};
use axum::http::{header, StatusCode};
use axum::response::IntoResponse;
use axum::routing::get;
use axum::{Extension, Router};

use tokio_util::sync::CancellationToken;
use tracing::{debug, error};

use super::{CheckReady, Metrics, ReadState};
use crate::tls::ReloadingTls;

/// What the endpoints read: the metrics, the state behind the gauges, and readiness.
#[derive(Clone)]
pub struct HttpState {
    pub metrics: Arc<Metrics>,
    pub read_state: ReadState,
    pub check_ready: CheckReady,
}

async fn metrics_page(State(state): State<HttpState>) -> impl IntoResponse {
    (
        [(
            header::CONTENT_TYPE,
            "application/openmetrics-text; version=1.0.0; charset=utf-8",
        )],
        state.metrics.render(&(state.read_state)()),
    )
}

async fn healthz() -> impl IntoResponse {
    (StatusCode::OK, "ok\n")
}

async fn readyz(State(state): State<HttpState>) -> impl IntoResponse {
    match (state.check_ready)() {
        Ok(()) => (StatusCode::OK, "ready\n".to_owned()),
        Err(why) => (
            StatusCode::SERVICE_UNAVAILABLE,
            format!("not ready: {why}\n"),
        ),
    }
}

pub fn http_router(state: HttpState) -> Router {
    Router::new()
        .route("/metrics", get(metrics_page))
        .route("/healthz", get(healthz))
        .route("/readyz", get(readyz))
        .with_state(state)
}

/// On a loopback listener, answers only requests addressed to a loopback name: a web page on
/// another site that points a DNS name of its own at 127.0.0.1 (DNS rebinding) would
/// otherwise read the dashboard's answers.
async fn loopback_hosts_only(
    request: axum::extract::Request,
    next: axum::middleware::Next,
) -> axum::response::Response {
    let host = request
        .headers()
        .get(axum::http::header::HOST)
        .and_then(|h| h.to_str().ok())
        .unwrap_or("");
    if is_loopback_host(host) {
        return next.run(request).await;
    }
    (
        axum::http::StatusCode::MISDIRECTED_REQUEST,
        "this listener answers requests for localhost, 127.0.0.1 or [::1] only\n",
    )
        .into_response()
}

/// `localhost`, `127.x.x.x` or `[::1]`, with or without a port. An absent Host (HTTP/1.0)
/// cannot come from a browser page and is let through.
fn is_loopback_host(host: &str) -> bool {
    if host.is_empty() {
        return true;
    }
    let name = match host.rsplit_once(':') {
        Some((name, port)) if !name.ends_with(':') && port.bytes().all(|b| b.is_ascii_digit()) => {
            name
        }
        _ => host,
    };
    name.eq_ignore_ascii_case("localhost")
        || name == "[::1]"
        || name
            .parse::<std::net::Ipv4Addr>()
            .is_ok_and(|ip| ip.is_loopback())
}

/// What one listener admits: how many connections at once (and per client address, 0 for no
/// cap), how long a client may take to send a request's headers, and how long a connection
/// may stay quiet. Past a cap a new connection is closed at once and counted.
#[derive(Debug, Clone, Copy)]
pub struct ConnectionLimits {
    pub max_connections: usize,
    pub max_per_ip: usize,
    pub header_read_timeout: std::time::Duration,
    pub quiet: QuietLimits,
}

/// HTTP/2 pings a connection this often, and closes it when a ping is not answered in
/// `KEEP_ALIVE_TIMEOUT`: a peer that vanished without a FIN does not hold its place.
pub(crate) const KEEP_ALIVE_INTERVAL: std::time::Duration = std::time::Duration::from_secs(30);
pub(crate) const KEEP_ALIVE_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(10);

/// Serves `router` on a thread with its own single-threaded runtime, so probes are answered
/// even while the main runtime's workers are busy with gRPC traffic; over TLS only when `tls`
/// is given. Returns when the server stops after `shutdown`; join the handle to wait for it.
pub fn serve_http_apart(
    listener: std::net::TcpListener,
    router: Router,
    tls: Option<Arc<ReloadingTls>>,
    limits: ConnectionLimits,
    counted: (Arc<Metrics>, &'static str),
    shutdown: CancellationToken,
) -> std::io::Result<JoinHandle<()>> {
    listener.set_nonblocking(true)?;
    let router = match listener.local_addr()?.ip().is_loopback() {
        true => router.layer(axum::middleware::from_fn(loopback_hosts_only)),
        false => router,
    };
    std::thread::Builder::new()
        .name(format!("ih-{}", counted.1))
        .spawn(move || {
            let runtime = match tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
            {
                Ok(runtime) => runtime,
                Err(err) => {
                    error!(error = %err, "cannot start the HTTP runtime");
                    return;
                }
            };
            runtime.block_on(async move {
                match tokio::net::TcpListener::from_std(listener) {
                    Ok(listener) => serve(listener, router, tls, limits, counted, shutdown).await,
                    Err(err) => error!(error = %err, "HTTP server failed"),
                }
            });
        })
}

/// HTTP/1.1 or HTTP/2, plain or over TLS, one task per connection, at most
/// `limits.max_connections` at once.
async fn serve(
    listener: tokio::net::TcpListener,
    router: Router,
    tls: Option<Arc<ReloadingTls>>,
    limits: ConnectionLimits,
    (metrics, name): (Arc<Metrics>, &'static str),
    shutdown: CancellationToken,
) {
    let places =
        super::connections::Places::new(limits.max_connections, limits.max_per_ip, metrics, name);
    while let Some((stream, peer)) = super::connections::accept(&listener, &shutdown, name).await {
        let Some(place) = places.take(peer.ip()) else {
            continue;
        };
        let _ = stream.set_nodelay(true);
        let router = router.clone().layer(Extension(ConnectInfo(peer)));
        let tls = tls.clone();
        tokio::spawn(async move {
            let _place = place;
            let mut builder =
                hyper_util::server::conn::auto::Builder::new(hyper_util::rt::TokioExecutor::new());
            builder
                .http1()
                .timer(hyper_util::rt::TokioTimer::new())
                .header_read_timeout(limits.header_read_timeout);
            builder
                .http2()
                .timer(hyper_util::rt::TokioTimer::new())
                .keep_alive_interval(KEEP_ALIVE_INTERVAL)
                .keep_alive_timeout(KEEP_ALIVE_TIMEOUT);
            let stream = match tls {
                None => super::connections::Stream::Plain(stream),
                Some(tls) => match crate::tls::handshake(stream, tls.http(), peer).await {
                    Some(stream) => super::connections::Stream::Tls(Box::new(stream)),
                    None => return,
                },
            };
            // Quiet from here: after the TLS handshake, if there is one.
            let activity = Activity::new(limits.quiet);
            let service = hyper_util::service::TowerToHyperService::new(CountRequests::new(
                router,
                Some(activity.clone()),
            ));
            let io = hyper_util::rt::TokioIo::new(Guarded::new(stream, activity));
            if let Err(err) = builder.serve_connection(io, service).await {
                debug!(listener = name, error = %err, "HTTP connection ended with an error");
            }
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_loopback_names_pass() {
        for host in [
            "localhost",
            "localhost:9464",
            "127.0.0.1:9464",
            "127.1.2.3",
            "[::1]:9464",
            "[::1]",
            "",
        ] {
            assert!(is_loopback_host(host), "{host}");
        }
        for host in [
            "evil.example",
            "evil.example:9464",
            "10.0.0.1:9464",
            "localhost.evil.example",
            "[::2]:80",
        ] {
            assert!(!is_loopback_host(host), "{host}");
        }
    }
}
