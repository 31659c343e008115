//! Wires the parts together: store, ingest threads, eviction task and the gRPC server.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use thiserror::Error;
use tokio::net::TcpListener;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;
use tracing::{info, warn};

use crate::api::{Auth, IntegrationHealthApi};
use crate::checkpoint::CheckpointError;
use crate::clock::SharedClock;
use crate::config::{Config, ConfigError};
use crate::ingest::{self, IngestConfig, IngestError, IngestHandle};
use crate::proto::integration_health_server::IntegrationHealthServer;
use crate::query::QueryEngine;
use crate::store::Store;
use crate::telemetry::{self, Metrics};

const EVICTION_INTERVAL: Duration = Duration::from_secs(60);
const OTLP_METRICS_INTERVAL: Duration = Duration::from_secs(10);

#[derive(Debug, Error)]
pub enum ServerError {
    #[error(transparent)]
    Config(#[from] ConfigError),
    #[error(transparent)]
    Ingest(#[from] IngestError),
    #[error(transparent)]
    Checkpoint(#[from] CheckpointError),
    #[error(transparent)]
    Telemetry(#[from] telemetry::TelemetryError),
    #[error("cannot listen for gRPC on {addr}")]
    Bind {
        addr: SocketAddr,
        source: std::io::Error,
    },
    #[error("reflection service: {0}")]
    Reflection(#[from] tonic_reflection::server::Error),
    #[error("graceful stop took longer than {0:?}")]
    GraceExceeded(Duration),
    #[error("cannot accept gRPC connections: {0}")]
    Incoming(String),
    #[error("gRPC server failed: {0}")]
    Grpc(#[from] tonic::transport::Error),
}

/// A started service. Stop it by cancelling the token given to `start`, then `wait`.
pub struct RunningService {
    pub grpc_addr: SocketAddr,
    pub http_addr: SocketAddr,
    pub metrics: Arc<Metrics>,
    otlp_metrics: Option<opentelemetry_sdk::metrics::SdkMeterProvider>,
    pub store: Arc<Store>,
    pub engine: QueryEngine,
    server: JoinHandle<Result<(), tonic::transport::Error>>,
    http: JoinHandle<std::io::Result<()>>,
    ingest: IngestHandle,
}

impl RunningService {
    pub async fn wait(self) -> Result<(), ServerError> {
        let served = self.server.await;
        if let Ok(Err(err)) = self.http.await {
            warn!(error = %err, "operations HTTP server failed");
        }
        if let Some(provider) = self.otlp_metrics {
            let _ = provider.shutdown();
        }
        let ingest = self.ingest;
        if tokio::task::spawn_blocking(move || ingest.join())
            .await
            .is_err()
        {
            warn!("ingest threads did not stop cleanly");
        }
        match served {
            Ok(result) => result.map_err(ServerError::from),
            Err(join) => {
                warn!(error = %join, "gRPC server task ended abnormally");
                Ok(())
            }
        }
    }
}

pub fn ingest_config(config: &Config) -> IngestConfig {
    IngestConfig {
        brokers: config.brokers.clone(),
        topic: config.topic.clone(),
        group: config.group.clone(),
        dlq_topic: config.dlq_topic(),
        max_future_ms: config.max_future_ms(),
        kafka: config.kafka.clone(),
        state_dir: config.state_dir.clone(),
        snapshot_interval: Duration::from_millis(config.snapshot_interval_ms),
    }
}

pub async fn start(
    config: &Config,
    clock: SharedClock,
    shutdown: CancellationToken,
) -> Result<RunningService, ServerError> {
    config.validate()?;
    if let Some(dir) = &config.state_dir {
        ingest::check_state_dir(dir)?;
    }
    let store = Arc::new(Store::new(config.store_limits()));
    let listener = TcpListener::bind(config.grpc_addr)
        .await
        .map_err(|source| ServerError::Bind {
            addr: config.grpc_addr,
            source,
        })?;
    let grpc_addr = listener.local_addr().map_err(|source| ServerError::Bind {
        addr: config.grpc_addr,
        source,
    })?;
    let (http_addr, http_listener) =
        telemetry::bind_http(config.http_addr)
            .await
            .map_err(|source| ServerError::Bind {
                addr: config.http_addr,
                source,
            })?;
    let metrics = Arc::new(Metrics::new());
    let ingest = ingest::start(
        ingest_config(config),
        store.clone(),
        clock.clone(),
        shutdown.clone(),
        metrics.clone(),
    )?;
    spawn_eviction(store.clone(), clock.clone(), shutdown.clone());

    let engine = QueryEngine::new(store.clone(), clock);
    let auth = Auth::with_tokens(
        config
            .tokens
            .iter()
            .map(|g| (g.token.as_str(), g.tenants.as_slice())),
    );
    let (health, health_service) = tonic_health::server::health_reporter();
    spawn_readiness(
        health,
        engine.clone(),
        config.ready_max_lag,
        shutdown.clone(),
    );
    let reflection = tonic_reflection::server::Builder::configure()
        .register_encoded_file_descriptor_set(crate::proto::FILE_DESCRIPTOR_SET)
        .register_encoded_file_descriptor_set(tonic_health::pb::FILE_DESCRIPTOR_SET)
        .build_v1()?;
    let reflection_alpha = tonic_reflection::server::Builder::configure()
        .register_encoded_file_descriptor_set(crate::proto::FILE_DESCRIPTOR_SET)
        .register_encoded_file_descriptor_set(tonic_health::pb::FILE_DESCRIPTOR_SET)
        .build_v1alpha()?;
    let api = IntegrationHealthServer::new(IntegrationHealthApi::new(
        engine.clone(),
        auth,
        metrics.clone(),
    ));
    // Without TCP_NODELAY, responses wait on delayed ACKs (~40 ms on Linux). The flag must be
    // set on the incoming stream: the builder's own setting only applies to `serve(addr)`.
    let incoming = tonic::transport::server::TcpIncoming::from_listener(listener, true, None)
        .map_err(|source| ServerError::Incoming(source.to_string()))?;
    let server = tonic::transport::Server::builder()
        .add_service(health_service)
        .add_service(reflection)
        .add_service(reflection_alpha)
        .add_service(api)
        .serve_with_incoming_shutdown(incoming, shutdown.clone().cancelled_owned());
    let otlp_metrics = match &config.otlp_endpoint {
        Some(endpoint) => Some(telemetry::export_metrics(
            endpoint,
            engine.clone(),
            OTLP_METRICS_INTERVAL,
        )?),
        None => None,
    };
    let router = telemetry::http_router(engine.clone(), metrics.clone(), config.ready_max_lag);
    let http_shutdown = shutdown.clone();
    let http = tokio::spawn(async move {
        axum::serve(http_listener, router)
            .with_graceful_shutdown(http_shutdown.cancelled_owned())
            .await
    });
    info!(%grpc_addr, %http_addr, topic = %config.topic, brokers = %config.brokers, "serving");
    Ok(RunningService {
        grpc_addr,
        http_addr,
        metrics,
        otlp_metrics,
        http,
        store,
        engine,
        server: tokio::spawn(server),
        ingest,
    })
}

/// Runs until `shutdown` is cancelled, then stops within the configured grace period.
pub async fn run(
    config: &Config,
    clock: SharedClock,
    shutdown: CancellationToken,
) -> Result<(), ServerError> {
    let service = start(config, clock, shutdown.clone()).await?;
    shutdown.cancelled().await;
    info!("stopping: final snapshots, commit, leaving the group");
    let grace = Duration::from_millis(config.shutdown_grace_ms);
    match tokio::time::timeout(grace, service.wait()).await {
        Ok(result) => result,
        Err(_) => Err(ServerError::GraceExceeded(grace)),
    }
}

/// Keeps gRPC health in step with `/readyz`: SERVING only when ready.
fn spawn_readiness(
    mut health: tonic_health::server::HealthReporter,
    engine: QueryEngine,
    max_lag: i64,
    shutdown: CancellationToken,
) {
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(Duration::from_millis(250));
        let mut was_ready = None;
        loop {
            tokio::select! {
                _ = shutdown.cancelled() => {
                    health.set_not_serving::<IntegrationHealthServer<IntegrationHealthApi>>().await;
                    return;
                }
                _ = tick.tick() => {}
            }
            let ready = telemetry::is_ready(&engine, max_lag).is_ok();
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
            if ready {
                health
                    .set_serving::<IntegrationHealthServer<IntegrationHealthApi>>()
                    .await;
            } else {
                health
                    .set_not_serving::<IntegrationHealthServer<IntegrationHealthApi>>()
                    .await;
            }
        }
    });
}

fn spawn_eviction(store: Arc<Store>, clock: SharedClock, shutdown: CancellationToken) {
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(EVICTION_INTERVAL);
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
    });
}
