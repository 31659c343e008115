//! - `wiring`: what the stages are built from the settings with; `listen`: the API's
//!   listeners; `loops`: tokens reload, readiness and eviction.
//!
//! Wires the stages together: store, ingest threads, eviction, readiness, the gRPC server and the
//! operations HTTP server. Every task is spawned on one `TaskTracker`, and `wait` joins them all
//! and the ingest threads.

mod files;
mod listen;
mod loops;
pub mod wiring;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use thiserror::Error;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tracing::{info, warn};

use crate::alerts::{self, AlertBook};
use crate::api::{Auth, SharedAuth};
use crate::changelog::{ChangelogError, ChangelogWriter};
use crate::clock::{Clock, SharedClock, SystemClock};
use crate::cluster::{Cluster, ClusterConfig, ClusterError};
use crate::config::{Config, ConfigError};
use crate::dashboard;
use crate::file_digest;
use crate::ingest::{self, IngestError, IngestHandle, IngestProgress, IngestShared};
use crate::ops::{self, HttpState, Metrics};
use crate::query::{IssueContext, QueryEngine};
use crate::snapshot::SnapshotError;
use crate::store::Store;
use crate::tls::{self, ReloadingTls, TlsError};

use listen::bind;
pub(crate) use listen::ApiServer;
pub use listen::{serve_api, ApiParts};
use loops::{evict_periodically, reload_tokens, report_readiness, FILE_CHECK_INTERVAL};
pub(crate) use wiring::ingest_config;
use wiring::{api_limits, follow_alerts, peer_tls, readiness_check, start_issues, state_reader};

const OTLP_METRICS_INTERVAL: Duration = Duration::from_secs(10);
pub(super) const READINESS_INTERVAL: Duration = Duration::from_millis(250);
/// How often internal topics that were missing or wrong are checked again.
const TOPIC_RECHECK_INTERVAL: Duration = Duration::from_secs(10);
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
    #[error(transparent)]
    Notify(#[from] crate::notify::NotifyError),
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
    pub store: Arc<Store>,
    pub progress: Arc<IngestProgress>,
    otlp_metrics: Option<opentelemetry_sdk::metrics::SdkMeterProvider>,
    tasks: TaskTracker,
    cluster: Option<Arc<Cluster>>,
    issues: std::thread::JoinHandle<()>,
    alerts: std::thread::JoinHandle<()>,
    rules: std::thread::JoinHandle<()>,
    /// The notifier's thread and its dead letters' reader, when alerts are delivered.
    notifier: Vec<std::thread::JoinHandle<()>>,
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
        let rules = self.rules;
        let notifier = self.notifier;
        let joined = tokio::task::spawn_blocking(move || {
            let notifier_stopped = notifier.into_iter().all(|n| n.join().is_ok());
            ingest.join();
            if let Some(cluster) = cluster {
                cluster.join();
            }
            let ops_stopped = ops.is_none_or(|ops| ops.join().is_ok());
            issues.join().is_ok()
                && alerts.join().is_ok()
                && rules.join().is_ok()
                && http.join().is_ok()
                && ops_stopped
                && notifier_stopped
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

pub async fn start(
    config: &Config,
    clock: SharedClock,
    shutdown: CancellationToken,
) -> Result<RunningService, ServerError> {
    wiring::check(config)?;
    files::fit_open_files(config)?;
    let snapshots = wiring::snapshots(config)?;
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
    let store = Arc::new(Store::new(wiring::store_limits(config)));
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
                announce_interval: Duration::from_millis(config.member_announce_interval_ms),
                member_ttl: Duration::from_millis(config.member_ttl_ms),
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
    let overrides = Arc::new(wiring::alert_rules(config)?);
    let (rule_keeping, rules_follower) =
        wiring::start_rules(config, &kafka_client, overrides.clone(), shutdown.clone())?;
    let changelogs = wiring::Changelogs {
        issues: issue_book.clone(),
        rules: rule_keeping.book.clone(),
    };
    let check_ready = readiness_check(
        store.clone(),
        progress.clone(),
        clock.clone(),
        config.ready_max_lag,
        changelogs,
        topic_status,
    );
    // Silence is claimed only from a partition with nothing left to read: within
    // `ready_max_lag`, the unread messages may be the silent integration's next events.
    let behind: alerts::BehindCheck = {
        let (store, progress, clock) = (store.clone(), progress.clone(), clock.clone());
        Arc::new(move || progress.behind(&store, clock.now_ms()))
    };
    let read_all: ops::CheckReady = {
        let (store, progress, clock) = (store.clone(), progress.clone(), clock.clone());
        Arc::new(move || progress.readiness(&store, 0, clock.now_ms()))
    };
    let alert_book = Arc::new(AlertBook::default());
    let alerts_follower = follow_alerts(config, &kafka_client, &alert_book, shutdown.clone())?;
    let evaluator = alerts::Evaluator {
        store: store.clone(),
        clock: clock.clone(),
        rules: overrides,
        rule_book: rule_keeping.book.clone(),
        book: alert_book.clone(),
        writer: Arc::new(ChangelogWriter::new(&kafka_client, &config.alerts_topic())?),
        interval: Duration::from_millis(config.alert_interval_ms),
        behind,
        metrics: metrics.clone(),
        read_all,
    };
    tasks.spawn(alerts::evaluate_periodically(evaluator, shutdown.clone()));
    let delivering = wiring::start_notifier(
        config,
        &kafka_client,
        clock.clone(),
        metrics.clone(),
        shutdown.clone(),
    )?;
    let (notifier, test_sender, dead_letters) = match delivering {
        Some(d) => (
            vec![d.thread, d.dead_letters_thread],
            Some(d.notifier),
            Some(d.dead_letters),
        ),
        None => (Vec::new(), None, None),
    };
    let tls = match wiring::tls_files(config) {
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
    // Taken before the grants are read, so a rewrite in between is seen as a change.
    let tokens_digest = config.tokens_file.as_deref().and_then(file_digest::digest);
    let auth = SharedAuth::new(auth_of(config, config.grants()?));
    if config.tokens.iter().any(|g| g.token.is_some()) {
        warn!("a token is configured in plain text; prefer token_sha256 in a tokens_file");
    }
    if let Some(path) = config.tokens_file.clone() {
        tasks.spawn(reload_tokens(
            config.clone(),
            path,
            tokens_digest,
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
            rules: Some(rule_keeping),
            notifier: test_sender,
            dead_letters,
        },
        shutdown.clone(),
    )?;
    tasks.spawn(report_readiness(
        health,
        check_ready.clone(),
        shutdown.clone(),
    ));
    let otlp_metrics = match &wiring::otlp_target(config)? {
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
        max_per_ip: config.max_connections_per_ip,
        header_read_timeout: Duration::from_millis(config.header_read_timeout_ms),
        quiet: wiring::quiet_limits(config),
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
        store,
        progress,
        otlp_metrics,
        tasks,
        cluster,
        issues: issues_follower,
        alerts: alerts_follower,
        rules: rules_follower,
        notifier,
        http,
        grpc: tokio::spawn(grpc),
        ingest,
    })
}

/// The grants of `config` in force: open without authentication, closed when a tokens file
/// grants none.
fn auth_of(config: &Config, grants: Vec<crate::config::CheckedGrant>) -> Auth {
    match config.authenticates() {
        true => Auth::authenticating(grants),
        false => Auth::new(grants),
    }
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
