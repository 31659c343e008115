//! Starting the service the ways the tests need it: the whole service against the mock cluster,
//! or the gRPC API alone over a store filled by hand (no broker).

use std::sync::Arc;
use std::time::Duration;

use integration_health::api::{ApiLimits, Auth, SharedAuth};
use integration_health::clock::{ManualClock, SharedClock};
use integration_health::config::{check_grants, Config, TokenGrant};
use integration_health::event::{decode, DecodeLimits};
use integration_health::ingest::IngestProgress;
use integration_health::ops::{self, HttpState, Metrics, StateReading};
use integration_health::query::QueryEngine;
use integration_health::server::{self, ApiParts, RunningService};
use integration_health::store::{PartitionKey, Store, StoreLimits};
use integration_health::tls::ReloadingTls;
use tokio_util::sync::CancellationToken;
use tonic::transport::Channel;

use super::{api_over, client, Api, READER_TOKEN};

/// The whole service (ingest, API, HTTP) in this process.
pub struct TestService {
    pub service: RunningService,
    pub stop: CancellationToken,
    pub api: Api,
}

impl TestService {
    pub async fn start(config: &Config, clock: SharedClock) -> TestService {
        let stop = CancellationToken::new();
        let service = server::start(config, clock, stop.clone())
            .await
            .expect("service starts");
        // Lazy, so a service that serves TLS only starts too; its tests make their own clients.
        // A replica's own client reads with the reader token `as_replica` granted.
        let reads_with_token = config
            .tokens
            .iter()
            .any(|g| g.token.as_deref() == Some(READER_TOKEN));
        let api = api_over(
            Channel::from_shared(format!("http://{}", service.grpc_addr))
                .expect("uri")
                .connect_lazy(),
            reads_with_token.then_some(READER_TOKEN),
        );
        TestService { service, stop, api }
    }

    pub async fn start_at(config: &Config, now_ms: i64) -> TestService {
        Self::start(config, Arc::new(ManualClock::new(now_ms))).await
    }

    /// Stops the service and checks that it stopped cleanly and in time.
    pub async fn stop(self) {
        self.stop.cancel();
        tokio::time::timeout(Duration::from_secs(60), self.service.wait())
            .await
            .expect("stops in time")
            .expect("clean stop");
    }
}

/// The gRPC API over a store that the test fills directly: no broker, no ingest threads.
pub struct ApiOnly {
    pub store: Arc<Store>,
    pub api: Api,
    pub addr: std::net::SocketAddr,
    /// `/healthz`, `/readyz` and `/metrics`.
    pub http_addr: std::net::SocketAddr,
    pub now_ms: i64,
    stop: CancellationToken,
}

impl ApiOnly {
    pub async fn start(tokens: Vec<TokenGrant>, now_ms: i64) -> ApiOnly {
        Self::start_with(tokens, now_ms, None).await
    }

    /// Like `start`, with these limits.
    pub async fn start_limited(limits: ApiLimits, now_ms: i64) -> ApiOnly {
        Self::serve(Vec::new(), now_ms, None, limits).await
    }

    /// Like `start`, over TLS when `tls` is given (the client here is then not connected).
    pub async fn start_with(
        tokens: Vec<TokenGrant>,
        now_ms: i64,
        tls: Option<Arc<ReloadingTls>>,
    ) -> ApiOnly {
        Self::serve(tokens, now_ms, tls, ApiLimits::default()).await
    }

    pub async fn serve(
        tokens: Vec<TokenGrant>,
        now_ms: i64,
        tls: Option<Arc<ReloadingTls>>,
        limits: ApiLimits,
    ) -> ApiOnly {
        let store = Arc::new(Store::new(StoreLimits::default()));
        let clock: SharedClock = Arc::new(ManualClock::new(now_ms));
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let addr = listener.local_addr().expect("addr");
        let stop = CancellationToken::new();
        let auth = SharedAuth::new(Auth::new(check_grants(&tokens).expect("valid grants")));
        let api_server = server::serve_api(
            listener,
            ApiParts {
                engine: QueryEngine::new(store.clone(), clock.clone()),
                progress: Arc::new(IngestProgress::default()),
                clock,
                metrics: Arc::new(Metrics::new()),
                auth,
                limits,
                reflection: true,
                tls: tls.clone(),
                cluster: None,
                issues: None,
                alerts: None,
                rules: None,
                notifier: None,
                dead_letters: None,
            },
            stop.clone(),
        )
        .expect("api serves");
        tokio::spawn(api_server.serving);
        let http = std::net::TcpListener::bind("127.0.0.1:0").expect("bind http");
        let http_addr = http.local_addr().expect("http addr");
        let router = ops::http_router(HttpState {
            metrics: Arc::new(Metrics::new()),
            read_state: Arc::new(StateReading::default),
            check_ready: Arc::new(|| Ok(())),
        })
        .merge(api_server.connect)
        .merge(integration_health::dashboard::router());
        let connections = ops::ConnectionLimits {
            max_connections: 1_024,
            max_per_ip: 0,
            header_read_timeout: std::time::Duration::from_secs(10),
            quiet: integration_health::api::ApiLimits::default().quiet,
        };
        let counted = (Arc::new(Metrics::new()), "http");
        ops::serve_http_apart(
            http,
            router,
            tls.clone(),
            connections,
            counted,
            stop.clone(),
        )
        .expect("http serves");
        let api = match tls {
            None => client(addr).await,
            // A lazy plaintext channel: TLS tests make their own clients.
            Some(_) => api_over(
                Channel::from_shared(format!("http://{addr}"))
                    .expect("uri")
                    .connect_lazy(),
                None,
            ),
        };
        ApiOnly {
            store,
            api,
            addr,
            http_addr,
            now_ms,
            stop,
        }
    }

    /// Applies JSON events to partition `partition`, as the owner thread would.
    pub fn apply(&self, partition: i32, payloads: &[serde_json::Value]) {
        let shared = self
            .store
            .get_or_create(&PartitionKey::new("events", partition));
        let mut state = shared.write();
        let limits = DecodeLimits::at(self.now_ms);
        for payload in payloads {
            let bytes = serde_json::to_vec(payload).expect("json");
            let event = decode(&bytes, limits).expect("a valid event");
            state
                .apply(&event, self.store.limits(), self.now_ms)
                .expect("counted");
        }
    }
}

impl Drop for ApiOnly {
    fn drop(&mut self) {
        self.stop.cancel();
    }
}
