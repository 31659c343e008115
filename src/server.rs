//! Wires the stages together: store, ingest threads, eviction, readiness, the gRPC server and the
//! operations HTTP server. Every task is spawned on one `TaskTracker`, and `wait` joins them all
//! and the ingest threads.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use thiserror::Error;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tracing::{info, warn};

use crate::alerts::{self, AlertBook};
use crate::api::{self, ApiLimits, Auth, IntegrationHealthApi, SharedAuth};
use crate::changelog::{self, ChangelogError, ChangelogWriter};
use crate::clock::{Clock, SharedClock, SystemClock};
use crate::cluster::{Cluster, ClusterConfig, ClusterError, PeerTls};
use crate::config::{Config, ConfigError};
use crate::dashboard;
use crate::ingest::{self, IngestConfig, IngestError, IngestHandle, IngestProgress, IngestShared};
use crate::issues::IssueBook;
use crate::issues::IssueKeeping;
use crate::ops::{self, CheckReady, HttpState, Metrics, PartitionGauge, ReadState, StateReading};
use crate::proto::integration_health_peer_server::IntegrationHealthPeerServer;
use crate::proto::integration_health_server::IntegrationHealthServer;
use crate::query::{IssueContext, QueryEngine};
use crate::snapshot::{SnapshotError, Snapshots};
use crate::store::Store;
use crate::tls::{self, ReloadingTls, TlsError};

const OTLP_METRICS_INTERVAL: Duration = Duration::from_secs(10);
const READINESS_INTERVAL: Duration = Duration::from_millis(250);
/// How often internal topics that were missing or wrong are checked again.
const TOPIC_RECHECK_INTERVAL: Duration = Duration::from_secs(10);
/// How often the tokens file and the TLS files are checked for changes.
const FILE_CHECK_INTERVAL: Duration = Duration::from_secs(1);
/// Every request message is small; anything larger is refused before it is decoded.
const MAX_REQUEST_BYTES: usize = 64 * 1024;
/// The largest answer: a 1,000-row failures page or a full-retention hourly series.
const MAX_RESPONSE_BYTES: usize = 16 * 1024 * 1024;

#[derive(Debug, Error)]
pub enum ServerError {
    #[error(transparent)]
    Config(#[from] ConfigError),
    #[error(transparent)]
    Ingest(#[from] IngestError),
    #[error(transparent)]
    Snapshot(#[from] SnapshotError),
    #[error(transparent)]
    Telemetry(#[from] ops::TelemetryError),
    #[error("cannot listen for gRPC on {addr}")]
    GrpcBind {
        addr: SocketAddr,
        source: std::io::Error,
    },
    #[error("cannot listen for HTTP (metrics and health) on {addr}")]
    HttpBind {
        addr: SocketAddr,
        source: std::io::Error,
    },
    #[error(transparent)]
    Tls(#[from] TlsError),
    #[error(transparent)]
    Cluster(#[from] ClusterError),
    #[error(transparent)]
    Changelog(#[from] ChangelogError),
    #[error("reflection service")]
    Reflection(#[from] tonic_reflection::server::Error),
    #[error("graceful stop took longer than {0:?}")]
    GraceExceeded(Duration),
    #[error("cannot accept gRPC connections")]
    Incoming(#[source] Box<dyn std::error::Error + Send + Sync>),
    #[error("gRPC server failed")]
    Grpc(#[from] tonic::transport::Error),
}

/// A started service. Stop it by cancelling the token given to `start`, then `wait`.
pub struct RunningService {
    pub grpc_addr: SocketAddr,
    pub http_addr: SocketAddr,
    /// Where probes and metrics are served, when they have a listener of their own.
    pub ops_addr: Option<SocketAddr>,
    ops: Option<std::thread::JoinHandle<()>>,
    pub metrics: Arc<Metrics>,
    pub store: Arc<Store>,
    pub progress: Arc<IngestProgress>,
    pub engine: QueryEngine,
    otlp_metrics: Option<opentelemetry_sdk::metrics::SdkMeterProvider>,
    tasks: TaskTracker,
    cluster: Option<Arc<Cluster>>,
    issues: std::thread::JoinHandle<()>,
    alerts: std::thread::JoinHandle<()>,
    http: std::thread::JoinHandle<()>,
    grpc: tokio::task::JoinHandle<Result<(), tonic::transport::Error>>,
    ingest: IngestHandle,
}

impl RunningService {
    /// Waits for every task and thread to finish; call after cancelling the shutdown token.
    pub async fn wait(self) -> Result<(), ServerError> {
        let served = self.grpc.await;
        self.tasks.close();
        self.tasks.wait().await;
        if let Some(provider) = self.otlp_metrics {
            let _ = provider.shutdown();
        }
        let ingest = self.ingest;
        let http = self.http;
        let ops = self.ops;
        let cluster = self.cluster;
        let issues = self.issues;
        let alerts = self.alerts;
        let joined = tokio::task::spawn_blocking(move || {
            ingest.join();
            if let Some(cluster) = cluster {
                cluster.join();
            }
            let ops_stopped = ops.is_none_or(|ops| ops.join().is_ok());
            issues.join().is_ok() && alerts.join().is_ok() && http.join().is_ok() && ops_stopped
        })
        .await;
        if !matches!(joined, Ok(true)) {
            warn!("ingest or HTTP threads did not stop cleanly");
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

pub fn ingest_config(
    config: &Config,
    snapshots: Option<Snapshots>,
) -> Result<IngestConfig, ServerError> {
    Ok(IngestConfig {
        brokers: config.brokers.clone(),
        topic: config.aggregated_topic(),
        repartition_from: (!config.input_keyed_by_tenant).then(|| config.topic.clone()),
        group: config.group.clone(),
        instance_id: config.instance_id.clone(),
        dlq_topic: config.dlq_topic(),
        max_future_ms: config.max_future_ms(),
        max_message_bytes: config.max_message_bytes,
        kafka: config.kafka_properties()?,
        snapshots,
        snapshot_interval: Duration::from_millis(config.snapshot_interval_ms),
    })
}

/// How replicas reach each other when TLS is on: trusting `peer_ca` (else `tls_client_ca`, else
/// the system's roots) and presenting this replica's own certificate, for mTLS.
fn peer_tls(config: &Config) -> Result<Option<PeerTls>, ConfigError> {
    let (Some(cert), Some(key)) = (&config.tls_cert, &config.tls_key) else {
        return Ok(None);
    };
    let read = |path: &std::path::PathBuf| {
        std::fs::read(path).map_err(|source| ConfigError::Read {
            path: path.clone(),
            source,
        })
    };
    let Some(ca) = config.peer_ca.as_ref().or(config.tls_client_ca.as_ref()) else {
        return Err(crate::config::invalid(
            "peer_ca",
            "replicas with TLS need peer_ca (or tls_client_ca)",
        ));
    };
    let ca_pem = read(ca)?;
    Ok(Some(PeerTls {
        ca_pem,
        identity: Some((read(cert)?, read(key)?)),
    }))
}

fn api_limits(config: &Config) -> ApiLimits {
    ApiLimits {
        max_concurrent: config.max_concurrent_queries,
        queue_wait: Duration::from_millis(config.query_queue_ms),
        rate_per_caller: std::num::NonZeroU32::new(config.rate_limit_per_token),
        request_timeout: Duration::from_millis(config.request_timeout_ms),
        max_streams_per_connection: config.max_streams_per_connection,
        max_connections: config.max_grpc_connections,
        watches: api::WatchLimits {
            total: config.max_watch_streams,
            per_caller: config.max_watch_streams_per_token,
        },
    }
}

async fn bind(addr: SocketAddr) -> std::io::Result<(SocketAddr, TcpListener)> {
    let listener = TcpListener::bind(addr).await?;
    Ok((listener.local_addr()?, listener))
}

/// The gauges' view of the service: partition positions, store size and totals.
fn state_reader(store: Arc<Store>, progress: Arc<IngestProgress>, clock: SharedClock) -> ReadState {
    Arc::new(move || {
        let now_ms = clock.now_ms();
        let status = progress.status(&store, now_ms);
        let failing = |topic: &str, partition: i32| {
            progress
                .snapshot_failing(&crate::store::PartitionKey::new(topic, partition))
                .map_or(0.0, |(since, _)| (now_ms - since).max(0) as f64 / 1000.0)
        };
        StateReading {
            partitions: status
                .partitions
                .iter()
                .map(|p| PartitionGauge {
                    topic: p.topic.clone(),
                    partition: p.partition,
                    next_offset: p.next_offset,
                    high_watermark: p.high_watermark,
                    lag: p.lag,
                    snapshot_age_seconds: p.snapshot.map(|_| p.snapshot_age_ms as f64 / 1000.0),
                    snapshot_bytes: p.snapshot.map(|s| s.bytes),
                    snapshot_failing_seconds: failing(&p.topic, p.partition),
                })
                .collect(),
            cardinality: store.cardinality(),
            totals: status.totals,
        }
    })
}

fn readiness_check(
    store: Arc<Store>,
    progress: Arc<IngestProgress>,
    clock: SharedClock,
    max_lag: i64,
    issues: Arc<IssueBook>,
    topics: Arc<ingest::TopicStatus>,
) -> CheckReady {
    Arc::new(move || {
        topics.readiness()?;
        progress.readiness(&store, max_lag, clock.now_ms())?;
        match issues.caught_up() {
            true => Ok(()),
            false => Err("reading the issues topic".into()),
        }
    })
}

/// The thread that reads the alerts topic into `book`.
fn follow_alerts(
    config: &Config,
    client: &rdkafka::ClientConfig,
    book: &Arc<AlertBook>,
    shutdown: CancellationToken,
) -> Result<std::thread::JoinHandle<()>, ChangelogError> {
    let mut reader = client.clone();
    reader
        .set("group.id", format!("ih-alerts-{}", std::process::id()))
        .set("enable.auto.commit", "false");
    changelog::follow(reader, config.alerts_topic(), book.clone(), shutdown)
}

/// The issue book, the writer of actions, and the thread that fills the book from the topic.
type IssueParts = (
    Arc<IssueBook>,
    Arc<IssueKeeping>,
    std::thread::JoinHandle<()>,
);

/// The issue book, the thread that fills it from the issues topic, and the writer of actions.
fn start_issues(
    config: &Config,
    client: &rdkafka::ClientConfig,
    shutdown: CancellationToken,
) -> Result<IssueParts, ChangelogError> {
    let book = Arc::new(IssueBook::default());
    let mut reader = client.clone();
    // Each instance reads the whole topic; the group only names the reader.
    reader
        .set("group.id", format!("ih-issues-{}", std::process::id()))
        .set("enable.auto.commit", "false");
    let follower = changelog::follow(reader, config.issues_topic(), book.clone(), shutdown)?;
    let keeping = Arc::new(IssueKeeping {
        writer: Arc::new(ChangelogWriter::new(client, &config.issues_topic())?),
        book: book.clone(),
    });
    Ok((book, keeping, follower))
}

pub async fn start(
    config: &Config,
    clock: SharedClock,
    shutdown: CancellationToken,
) -> Result<RunningService, ServerError> {
    config.validate()?;
    let snapshots = config.snapshots()?;
    if let Some(snapshots) = &snapshots {
        ingest::check_snapshots(snapshots)?;
    }
    let grpc_bind = |source| ServerError::GrpcBind {
        addr: config.grpc_addr,
        source,
    };
    let (grpc_addr, grpc_listener) = bind(config.grpc_addr).await.map_err(grpc_bind)?;
    let http_bind = |source| ServerError::HttpBind {
        addr: config.http_addr,
        source,
    };
    let http_listener = std::net::TcpListener::bind(config.http_addr).map_err(http_bind)?;
    let http_addr = http_listener.local_addr().map_err(http_bind)?;
    let ops_listener = match config.ops_addr {
        Some(addr) => {
            let ops_bind = |source| ServerError::HttpBind { addr, source };
            let listener = std::net::TcpListener::bind(addr).map_err(ops_bind)?;
            let bound = listener.local_addr().map_err(ops_bind)?;
            Some((listener, bound))
        }
        None => None,
    };
    let store = Arc::new(Store::new(config.store_limits()));
    let progress = Arc::new(IngestProgress::default());
    let metrics = Arc::new(Metrics::new());
    let ingest_config = ingest_config(config, snapshots)?;
    let kafka_client = ingest::client_config(&ingest_config, &[]);
    let cluster = match &config.advertise_addr {
        Some(addr) => Some(Cluster::start(
            ClusterConfig {
                advertise_addr: addr.clone(),
                members_topic: config.members_topic(),
                input_topic: config.aggregated_topic(),
                peer_token: config.peer_token.clone(),
                peer_timeout: Duration::from_millis(config.peer_timeout_ms),
                max_clock_skew: Duration::from_millis(config.member_clock_skew_ms),
                tls: peer_tls(config)?,
                route_by_tenant: !config.input_keyed_by_tenant,
            },
            &ingest::client_config(&ingest_config, &[]),
            shutdown.clone(),
        )?),
        None => None,
    };
    let topic_status = Arc::new(ingest::TopicStatus::default());
    let topic_specs = ingest::internal_topics(config);
    let topic_policy = ingest::TopicPolicy {
        create: config.create_internal_topics,
        replication_factor: config.internal_topic_replication_factor,
    };
    let topics_fine =
        ingest::check_topics(&kafka_client, &topic_specs, topic_policy, &topic_status).await;
    // Announcements are ordered by wall-clock time, whatever clock counts the events.
    let on_assignment: Option<ingest::AssignmentHook> = cluster.clone().map(|cluster| {
        Box::new(move |partitions| cluster.announce(partitions, SystemClock.now_ms()))
            as ingest::AssignmentHook
    });
    let ingest = ingest::start(
        ingest_config,
        IngestShared {
            store: store.clone(),
            progress: progress.clone(),
            clock: clock.clone(),
            metrics: metrics.clone(),
            on_assignment,
        },
        shutdown.clone(),
    )?;
    let tasks = TaskTracker::new();
    if !topics_fine {
        tasks.spawn(ingest::recheck_until_fine(
            kafka_client.clone(),
            topic_specs,
            topic_policy,
            topic_status.clone(),
            TOPIC_RECHECK_INTERVAL,
            shutdown.clone(),
        ));
    }
    let eviction_interval = Duration::from_millis(config.eviction_interval_ms);
    tasks.spawn(evict_periodically(
        store.clone(),
        clock.clone(),
        eviction_interval,
        shutdown.clone(),
    ));
    let read_state = state_reader(store.clone(), progress.clone(), clock.clone());
    let (issue_book, issue_keeping, issues_follower) =
        start_issues(config, &kafka_client, shutdown.clone())?;
    tasks.spawn(crate::issues::rekey::move_periodically(
        store.clone(),
        issue_book.clone(),
        issue_keeping.writer.clone(),
        shutdown.clone(),
    ));
    let alert_book = Arc::new(AlertBook::default());
    let alerts_follower = follow_alerts(config, &kafka_client, &alert_book, shutdown.clone())?;
    tasks.spawn(alerts::evaluate_periodically(
        store.clone(),
        clock.clone(),
        Arc::new(config.alert_rules()?),
        alert_book.clone(),
        Arc::new(ChangelogWriter::new(&kafka_client, &config.alerts_topic())?),
        Duration::from_millis(config.alert_interval_ms),
        shutdown.clone(),
    ));
    let check_ready = readiness_check(
        store.clone(),
        progress.clone(),
        clock.clone(),
        config.ready_max_lag,
        issue_book.clone(),
        topic_status,
    );
    let tls = match config.tls_files() {
        Some(files) => Some(ReloadingTls::load(files)?),
        None => None,
    };
    if let Some(tls) = &tls {
        tasks.spawn(tls::watch(
            tls.clone(),
            FILE_CHECK_INTERVAL,
            shutdown.clone(),
        ));
    }
    let auth = SharedAuth::new(Auth::new(config.grants()?));
    if config.tokens.iter().any(|g| g.token.is_some()) {
        warn!("a token is configured in plain text; prefer token_sha256 in a tokens_file");
    }
    if let Some(path) = config.tokens_file.clone() {
        tasks.spawn(reload_tokens(
            config.clone(),
            path,
            auth.clone(),
            shutdown.clone(),
        ));
    }
    let engine = QueryEngine::new(store.clone(), clock.clone()).with_issues(Some(IssueContext {
        book: issue_book,
        auto_resolve_ms: config.auto_resolve_ms(),
    }));
    let ApiServer {
        health,
        serving: grpc,
        connect,
    } = serve_api(
        grpc_listener,
        ApiParts {
            engine: engine.clone(),
            progress: progress.clone(),
            clock,
            metrics: metrics.clone(),
            auth,
            limits: api_limits(config),
            reflection: config.reflection,
            tls: tls.clone(),
            cluster: cluster.clone(),
            issues: Some(issue_keeping),
            alerts: Some(alert_book.clone()),
        },
        shutdown.clone(),
    )?;
    tasks.spawn(report_readiness(
        health,
        check_ready.clone(),
        shutdown.clone(),
    ));
    let otlp_metrics = match &config.otlp_target()? {
        Some(target) => Some(ops::export_metrics(
            target,
            read_state.clone(),
            OTLP_METRICS_INTERVAL,
        )?),
        None => None,
    };
    let ops_routes = ops::http_router(HttpState {
        metrics: metrics.clone(),
        read_state,
        check_ready,
    });
    let api_routes = connect.merge(dashboard::router());
    let limits = ops::ConnectionLimits {
        max_connections: config.max_http_connections,
        header_read_timeout: Duration::from_millis(config.header_read_timeout_ms),
    };
    let (router, ops, ops_addr) = match ops_listener {
        Some((listener, addr)) => {
            let ops_bind = |source| ServerError::HttpBind { addr, source };
            let counted = (metrics.clone(), "ops");
            let serving = ops::serve_http_apart(
                listener,
                ops_routes,
                None,
                limits,
                counted,
                shutdown.clone(),
            )
            .map_err(ops_bind)?;
            (api_routes, Some(serving), Some(addr))
        }
        None => (ops_routes.merge(api_routes), None, None),
    };
    let counted = (metrics.clone(), "http");
    let http = ops::serve_http_apart(
        http_listener,
        router,
        tls,
        limits,
        counted,
        shutdown.clone(),
    )
    .map_err(http_bind)?;
    info!(%grpc_addr, %http_addr, topic = %config.topic, brokers = %config.brokers, "serving");
    Ok(RunningService {
        grpc_addr,
        http_addr,
        ops_addr,
        ops,
        metrics,
        store,
        progress,
        engine,
        otlp_metrics,
        tasks,
        cluster,
        issues: issues_follower,
        alerts: alerts_follower,
        http,
        grpc: tokio::spawn(grpc),
        ingest,
    })
}

/// The gRPC server, running until shutdown.
pub type GrpcServing = std::pin::Pin<
    Box<dyn std::future::Future<Output = Result<(), tonic::transport::Error>> + Send>,
>;

/// A served API: the health reporter (NOT_SERVING until told otherwise), the gRPC server to
/// spawn, and the Connect/JSON routes that reach the same handlers, for the HTTP listener.
pub struct ApiServer {
    pub health: tonic_health::server::HealthReporter,
    pub serving: GrpcServing,
    pub connect: axum::Router,
}

/// What the gRPC API answers from.
pub struct ApiParts {
    pub engine: QueryEngine,
    pub progress: Arc<IngestProgress>,
    pub clock: SharedClock,
    pub metrics: Arc<Metrics>,
    pub auth: SharedAuth,
    pub limits: ApiLimits,
    pub reflection: bool,
    /// Serve TLS only, with these certificates.
    pub tls: Option<Arc<ReloadingTls>>,
    /// With replicas: answer for every partition, and serve the peer service.
    pub cluster: Option<Arc<Cluster>>,
    /// Serve `ListIssues` and `UpdateIssue` with these.
    pub issues: Option<Arc<IssueKeeping>>,
    /// Serve `ListAlerts` and `WatchAlerts` from this.
    pub alerts: Option<Arc<AlertBook>>,
}

/// Serves `IntegrationHealth`, `grpc.health.v1` and reflection on `listener` until `shutdown`.
/// Tests use it to serve a store filled by hand, without a broker.
// The reflection interceptors must return `tonic::Status`.
#[allow(clippy::result_large_err)]
pub fn serve_api(
    listener: TcpListener,
    parts: ApiParts,
    shutdown: CancellationToken,
) -> Result<ApiServer, ServerError> {
    let (health, health_service) = tonic_health::server::health_reporter();
    let limits = parts.limits;
    let reflection_auth = parts.auth.clone();
    let metrics = parts.metrics.clone();
    let handlers = Arc::new(
        IntegrationHealthApi::new(
            parts.engine,
            parts.progress,
            parts.clock,
            parts.auth,
            parts.metrics,
            parts.limits,
        )
        .with_cluster(parts.cluster)
        .with_shutdown(shutdown.clone())
        .with_issues(parts.issues)
        .with_alerts(parts.alerts),
    );
    let peer = handlers.cluster_addr().map(|addr| {
        IntegrationHealthPeerServer::new(handlers.peer(addr))
            .max_decoding_message_size(MAX_REQUEST_BYTES)
            .max_encoding_message_size(MAX_RESPONSE_BYTES)
    });
    let connect = api::connect_router(
        handlers.clone(),
        tokio::runtime::Handle::current(),
        limits.request_timeout,
        MAX_REQUEST_BYTES,
    );
    let api = IntegrationHealthServer::from_arc(handlers)
        .max_decoding_message_size(MAX_REQUEST_BYTES)
        .max_encoding_message_size(MAX_RESPONSE_BYTES);
    let (reflection, reflection_alpha) = if parts.reflection {
        // Reflection answers callers with a token like any other call, and lists only the
        // services clients use: the replicas' peer service is not theirs to discover.
        let described = || {
            tonic_reflection::server::Builder::configure()
                .register_encoded_file_descriptor_set(crate::proto::FILE_DESCRIPTOR_SET)
                .register_encoded_file_descriptor_set(tonic_health::pb::FILE_DESCRIPTOR_SET)
                .with_service_name("integration_health.v1.IntegrationHealth")
                .with_service_name("grpc.health.v1.Health")
        };
        let auth = reflection_auth.clone();
        let v1 = tonic::service::interceptor::InterceptedService::new(
            described().build_v1()?,
            move |request| authenticated(&auth, request),
        );
        let auth = reflection_auth;
        let v1alpha = tonic::service::interceptor::InterceptedService::new(
            described().build_v1alpha()?,
            move |request| authenticated(&auth, request),
        );
        (Some(v1), Some(v1alpha))
    } else {
        (None, None)
    };
    let router = tonic::transport::Server::builder()
        .timeout(limits.request_timeout)
        .max_concurrent_streams(limits.max_streams_per_connection)
        .add_service(health_service)
        .add_optional_service(reflection)
        .add_optional_service(reflection_alpha)
        .add_optional_service(peer)
        .add_service(api);
    let stop = shutdown.clone().cancelled_owned();
    let streams = crate::connections::grpc_incoming(
        listener,
        parts.tls,
        limits.max_connections,
        metrics,
        shutdown,
    );
    let incoming = tokio_stream::wrappers::ReceiverStream::new(streams);
    let serving: GrpcServing = Box::pin(router.serve_with_incoming_shutdown(incoming, stop));
    Ok(ApiServer {
        health,
        serving,
        connect,
    })
}

/// Lets a call through when its token is valid (or the API is open).
#[allow(clippy::result_large_err)]
fn authenticated(
    auth: &SharedAuth,
    request: tonic::Request<()>,
) -> Result<tonic::Request<()>, tonic::Status> {
    auth.current()
        .check(request.metadata(), api::Access::Any)
        .map(|_| request)
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

/// Re-reads the tokens file when it changes. A file that does not load is reported and the
/// grants in force stay, so a half-written Secret update never locks every caller out.
async fn reload_tokens(
    config: Config,
    path: std::path::PathBuf,
    auth: SharedAuth,
    shutdown: CancellationToken,
) {
    let stamp = |path: &std::path::Path| {
        std::fs::metadata(path)
            .ok()
            .and_then(|m| Some((m.modified().ok()?, m.len())))
    };
    let mut loaded = stamp(&path);
    let mut tick = tokio::time::interval(FILE_CHECK_INTERVAL);
    loop {
        tokio::select! {
            _ = shutdown.cancelled() => return,
            _ = tick.tick() => {}
        }
        let now = stamp(&path);
        if now == loaded {
            continue;
        }
        match config.grants() {
            Ok(grants) => {
                auth.replace(Auth::new(grants));
                loaded = now;
                info!(path = %path.display(), "tokens reloaded");
            }
            Err(err) => {
                warn!(error = %err, "tokens file changed but does not load; the previous tokens stay in force")
            }
        }
    }
}

/// Keeps gRPC health in step with `/readyz`: SERVING only when ready.
async fn report_readiness(
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
async fn evict_periodically(
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
