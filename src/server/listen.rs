//! The API's listeners: the gRPC server (the service, health, reflection and, with replicas,
//! the peer service) and the Connect/JSON routes the HTTP listener mounts.

use std::net::SocketAddr;
use std::sync::Arc;

use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

use super::ServerError;
use crate::alerts::{AlertBook, RuleKeeping};
use crate::api::{self, ApiLimits, IntegrationHealthApi, SharedAuth};
use crate::clock::SharedClock;
use crate::cluster::Cluster;
use crate::ingest::IngestProgress;
use crate::issues::IssueKeeping;
use crate::notify::{DeadLetterBook, Notifier};
use crate::ops::Metrics;
use crate::proto::integration_health_peer_server::IntegrationHealthPeerServer;
use crate::proto::integration_health_server::IntegrationHealthServer;
use crate::query::QueryEngine;
use crate::tls::ReloadingTls;

/// Every request message is small; anything larger is refused before it is decoded.
const MAX_REQUEST_BYTES: usize = 64 * 1024;
/// The largest answer: a 1,000-row failures page or a full-retention hourly series.
const MAX_RESPONSE_BYTES: usize = 16 * 1024 * 1024;

pub(super) async fn bind(addr: SocketAddr) -> std::io::Result<(SocketAddr, TcpListener)> {
    let listener = TcpListener::bind(addr).await?;
    Ok((listener.local_addr()?, listener))
}

/// The gRPC server, running until shutdown.
pub(crate) type GrpcServing = std::pin::Pin<
    Box<dyn std::future::Future<Output = Result<(), tonic::transport::Error>> + Send>,
>;

/// A served API: the health reporter (NOT_SERVING until told otherwise), the gRPC server to
/// spawn, and the Connect/JSON routes that reach the same handlers, for the HTTP listener.
pub struct ApiServer {
    pub(crate) health: tonic_health::server::HealthReporter,
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
    /// Serve the alert-rule calls with these.
    pub rules: Option<Arc<RuleKeeping>>,
    /// Send test alerts (`TestAlertDestination`) with this.
    pub notifier: Option<Arc<Notifier>>,
    /// Serve `ListAlertDeadLetters` from this.
    pub dead_letters: Option<Arc<DeadLetterBook>>,
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
        .with_alerts(parts.alerts)
        .with_rules(parts.rules)
        .with_notifier(parts.notifier, parts.dead_letters),
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
        .http2_keepalive_interval(Some(crate::ops::KEEP_ALIVE_INTERVAL))
        .http2_keepalive_timeout(Some(crate::ops::KEEP_ALIVE_TIMEOUT))
        .layer(tower::util::MapRequestLayer::new(
            crate::ops::connections::expose_connect_info,
        ))
        .layer(tower::layer::layer_fn(|inner| {
            crate::ops::guard::CountRequests::new(inner, None)
        }))
        .add_service(health_service)
        .add_optional_service(reflection)
        .add_optional_service(reflection_alpha)
        .add_optional_service(peer)
        .add_service(api);
    let stop = shutdown.clone().cancelled_owned();
    let streams = crate::ops::connections::grpc_incoming(
        listener,
        parts.tls,
        crate::ops::connections::GrpcLimits {
            max: limits.max_connections,
            per_ip: limits.max_connections_per_ip,
            quiet: limits.quiet,
        },
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
