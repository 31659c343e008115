//! The operations HTTP endpoints: `/metrics`, `/healthz` and `/readyz`.

use std::sync::Arc;
use std::thread::JoinHandle;

use axum::extract::State;
use axum::http::{header, StatusCode};
use axum::response::IntoResponse;
use axum::routing::get;
use axum::Router;

use tokio_util::sync::CancellationToken;
use tracing::error;

use super::{CheckReady, Metrics, ReadState};

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

/// Serves `router` on a thread with its own single-threaded runtime, so probes are answered
/// even while the main runtime's workers are busy with gRPC traffic. Returns when the server
/// stops after `shutdown`; join the handle to wait for it.
pub fn serve_http_apart(
    listener: std::net::TcpListener,
    router: Router,
    shutdown: CancellationToken,
) -> std::io::Result<JoinHandle<()>> {
    listener.set_nonblocking(true)?;
    std::thread::Builder::new()
        .name("ih-http".into())
        .spawn(move || {
            let runtime = match tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
            {
                Ok(runtime) => runtime,
                Err(err) => {
                    error!(error = %err, "cannot start the operations HTTP runtime");
                    return;
                }
            };
            runtime.block_on(async move {
                let served = match tokio::net::TcpListener::from_std(listener) {
                    Ok(listener) => {
                        axum::serve(listener, router)
                            .with_graceful_shutdown(shutdown.cancelled_owned())
                            .await
                    }
                    Err(err) => Err(err),
                };
                if let Err(err) = served {
                    error!(error = %err, "operations HTTP server failed");
                }
            });
        })
}
