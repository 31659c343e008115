//! The service's background loops: re-reading the tokens file, reporting readiness, and
//! evicting expired state.

use std::sync::Arc;
use std::time::Duration;

use tokio_util::sync::CancellationToken;
use tracing::{info, warn};

use super::READINESS_INTERVAL;
use crate::api::{Auth, IntegrationHealthApi, SharedAuth};
use crate::clock::SharedClock;
use crate::config::Config;
use crate::file_digest::{digest, FileDigest};
use crate::ops::CheckReady;
use crate::proto::integration_health_server::IntegrationHealthServer;
use crate::store::Store;

/// How often the tokens file and the TLS files are checked for changes.
pub(super) const FILE_CHECK_INTERVAL: Duration = Duration::from_secs(1);

/// Re-reads the tokens file when its bytes change (`loaded`: their digest taken before the
/// grants in force were read). A file that does not load is reported, once, and the grants in
/// force stay, so a half-written Secret update never locks every caller out; `tokens = []`
/// is a deliberate revocation of every token.
pub(super) async fn reload_tokens(
    config: Config,
    path: std::path::PathBuf,
    mut loaded: FileDigest,
    auth: SharedAuth,
    shutdown: CancellationToken,
) {
    let mut tick = tokio::time::interval(FILE_CHECK_INTERVAL);
    loop {
        tokio::select! {
            _ = shutdown.cancelled() => return,
            _ = tick.tick() => {}
        }
        let now = digest(&path);
        if now == loaded {
            continue;
        }
        // Reported once per change: the file is read again only when it changes again.
        loaded = now;
        match config.grants() {
            Ok(grants) if grants.is_empty() => {
                auth.replace(Auth::authenticating(grants));
                warn!(path = %path.display(), "tokens file grants none: every token is revoked");
            }
            Ok(grants) => {
                auth.replace(Auth::authenticating(grants));
                info!(path = %path.display(), "tokens reloaded");
            }
            Err(err) => {
                warn!(error = %err, "tokens file changed but does not load; the previous tokens stay in force")
            }
        }
    }
}

/// Keeps gRPC health in step with `/readyz`: SERVING only when ready.
pub(super) async fn report_readiness(
    mut health: tonic_health::server::HealthReporter,
    check_ready: CheckReady,
    shutdown: CancellationToken,
) {
    let mut tick = tokio::time::interval(READINESS_INTERVAL);
    let mut was_ready = None;
    loop {
        tokio::select! {
            _ = shutdown.cancelled() => {
                health.set_not_serving::<IntegrationHealthServer<IntegrationHealthApi>>().await;
                return;
            }
            _ = tick.tick() => {}
        }
        let ready = check_ready().is_ok();
        if was_ready == Some(ready) {
            continue;
        }
        was_ready = Some(ready);
        let status = if ready {
            tonic_health::ServingStatus::Serving
        } else {
            tonic_health::ServingStatus::NotServing
        };
        health.set_service_status("", status).await;
        health
            .set_service_status(
                <IntegrationHealthServer<IntegrationHealthApi> as tonic::server::NamedService>::NAME,
                status,
            )
            .await;
    }
}

/// Drops buckets past retention and the minute window, on the injected clock.
pub(super) async fn evict_periodically(
    store: Arc<Store>,
    clock: SharedClock,
    interval: Duration,
    shutdown: CancellationToken,
) {
    let mut tick = tokio::time::interval(interval);
    loop {
        tokio::select! {
            _ = shutdown.cancelled() => return,
            _ = tick.tick() => {}
        }
        let store = store.clone();
        let now_ms = clock.now_ms();
        // Eviction takes each partition's write lock in turn; keep it off the async workers.
        let _ = tokio::task::spawn_blocking(move || store.evict(now_ms)).await;
    }
}
