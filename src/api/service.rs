//! The call pipeline every handler shares: check the caller, forward a tenant's call to the
//! replica that owns the tenant, or run the query on the blocking pool behind a concurrency
//! limit (so the async workers stay free for health checks and I/O) over every partition that
//! holds the tenant, and build the answer with its coverage.

// Handlers must return `tonic::Status`; boxing it in the helpers would only add conversions.
#![allow(clippy::result_large_err)]

use std::future::Future;
use std::num::NonZeroU32;
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

use tokio::sync::Semaphore;
use tokio_util::sync::CancellationToken;
use tonic::metadata::MetadataMap;
use tonic::{Request, Response, Status};

use super::asker::{accepts_partial, check_coverage, Asker};
use super::auth::{Access, SharedAuth};
use super::callers::{Caller, RateLimits, WatchLimits, Watches};
use super::coverage::{respond, Answered, Covered, ALLOW_PARTIAL, FORWARDED, ON_BEHALF_OF};
use super::feeds::Feeds;
use super::peer::PeerApi;
use crate::alerts::{AlertBook, RuleKeeping};
use crate::clock::SharedClock;
use crate::cluster::Cluster;
use crate::event::{is_tenant_char, MAX_TENANT_ID_CHARS};
use crate::ingest::IngestProgress;
use crate::issues::IssueKeeping;
use crate::notify::{DeadLetterBook, Notifier};
use crate::ops::Metrics;
use crate::proto;
use crate::query::{self, QueryEngine, QueryError};

/// A client of another replica's public service, for forwarded calls.
pub(super) type ApiClient =
    crate::proto::integration_health_client::IntegrationHealthClient<tonic::transport::Channel>;

/// A request about one tenant.
pub(super) trait TenantRequest {
    fn tenant_id(&self) -> &str;
    /// Whether the caller accepts an answer that lacks unreachable partitions.
    fn allow_partial(&self) -> bool;
}

macro_rules! tenant_requests {
    ($($request:ty),* $(,)?) => {
        $(impl TenantRequest for $request {
            fn tenant_id(&self) -> &str {
                &self.tenant_id
            }
            fn allow_partial(&self) -> bool {
                self.allow_partial
            }
        })*
    };
}

tenant_requests!(
    proto::GetOverviewRequest,
    proto::GetPercentageChangeRequest,
    proto::GetErrorBreakdownRequest,
    proto::GetTrendsRequest,
    proto::ListFailuresRequest,
    proto::GetFailureDetailsRequest,
    proto::ListIntegrationsRequest,
    proto::GetIntegrationHealthRequest,
    proto::ListIssuesRequest,
);

/// The replica a tenant's calls go to, and the tenant's partition there.
pub(super) struct Owner {
    addr: String,
    partition: i32,
}

impl Owner {
    fn failed(&self, status: &Status) -> Status {
        Status::unavailable(format!(
            "partition {} is owned by {}, which did not answer ({:?}: {})",
            self.partition,
            self.addr,
            status.code(),
            status.message()
        ))
    }
}

/// What keeps the API from being overrun: how many queries run at once, how long a call may
/// wait for a slot before it is shed, and an optional rate per caller.
#[derive(Debug, Clone, Copy)]
pub struct ApiLimits {
    pub max_concurrent: usize,
    pub queue_wait: Duration,
    /// Calls per second per token (per peer address when the API is open); `None`: no limit.
    pub rate_per_caller: Option<NonZeroU32>,
    /// A call still running after this is cancelled with `CANCELLED`/`DEADLINE_EXCEEDED`.
    pub request_timeout: Duration,
    pub max_streams_per_connection: u32,
    /// Connections the gRPC listener holds at once, and per client address (0: no cap); past
    /// either, new ones are closed at once.
    pub max_connections: usize,
    pub max_connections_per_ip: usize,
    /// How long a connection may stay quiet before its first request and between requests.
    pub quiet: crate::ops::QuietLimits,
    /// Open watch streams (`WatchTenant`, `WatchAlerts`), in all and per caller.
    pub watches: WatchLimits,
}

impl Default for ApiLimits {
    fn default() -> Self {
        ApiLimits {
            max_concurrent: 8,
            queue_wait: Duration::from_millis(250),
            rate_per_caller: None,
            request_timeout: Duration::from_secs(10),
            max_streams_per_connection: 64,
            max_connections: 1_024,
            max_connections_per_ip: 0,
            quiet: crate::ops::QuietLimits {
                first_request: Duration::from_secs(10),
                idle: Duration::from_secs(120),
            },
            watches: WatchLimits {
                total: 1_000,
                per_caller: 50,
                per_peer: 1_000,
            },
        }
    }
}

pub(crate) struct IntegrationHealthApi {
    pub(super) engine: QueryEngine,
    pub(super) progress: Arc<IngestProgress>,
    pub(super) clock: SharedClock,
    pub(super) auth: SharedAuth,
    metrics: Arc<Metrics>,
    /// Query slots; watch ticks take one too.
    pub(super) slots: Arc<Semaphore>,
    pub(super) cluster: Option<Arc<Cluster>>,
    queue_wait: Duration,
    rate: Option<RateLimits>,
    /// Open watch streams, capped per caller and in all.
    pub(super) watches: Arc<Watches>,
    /// Ends open watches when the service stops.
    pub(super) shutdown: CancellationToken,
    /// Where users' issue actions go, when issues are kept.
    pub(super) issues: Option<Arc<IssueKeeping>>,
    /// What was published to the alerts topic, when alerts are evaluated.
    pub(super) alerts: Option<Arc<AlertBook>>,
    /// Where alert rules set at runtime go, when alerts are evaluated.
    pub(super) rules: Option<Arc<RuleKeeping>>,
    /// What sends test alerts, when destinations are configured.
    pub(super) notifier: Option<Arc<Notifier>>,
    pub(super) dead_letters: Option<Arc<DeadLetterBook>>,
    /// The watched tenants' shared counts, made on the first watch.
    feeds: OnceLock<Arc<Feeds>>,
}

impl IntegrationHealthApi {
    pub(crate) fn new(
        engine: QueryEngine,
        progress: Arc<IngestProgress>,
        clock: SharedClock,
        auth: SharedAuth,
        metrics: Arc<Metrics>,
        limits: ApiLimits,
    ) -> Self {
        let slots = Arc::new(Semaphore::new(limits.max_concurrent.max(1)));
        IntegrationHealthApi {
            engine,
            progress,
            clock,
            auth,
            metrics,
            slots,
            cluster: None,
            queue_wait: limits.queue_wait,
            rate: limits.rate_per_caller.map(RateLimits::new),
            watches: Watches::new(limits.watches),
            shutdown: CancellationToken::new(),
            issues: None,
            alerts: None,
            rules: None,
            notifier: None,
            dead_letters: None,
            feeds: OnceLock::new(),
        }
    }

    /// Serves `ListAlerts` and `WatchAlerts` from `book`.
    pub(crate) fn with_alerts(mut self, book: Option<Arc<AlertBook>>) -> Self {
        self.alerts = book;
        self
    }

    /// Serves `TestAlertDestination` with the notifier, `ListAlertDeadLetters` with the book.
    pub(crate) fn with_notifier(
        mut self,
        notifier: Option<Arc<Notifier>>,
        dead_letters: Option<Arc<DeadLetterBook>>,
    ) -> Self {
        self.notifier = notifier;
        self.dead_letters = dead_letters;
        self
    }

    /// Serves the alert-rule calls.
    pub(crate) fn with_rules(mut self, rules: Option<Arc<RuleKeeping>>) -> Self {
        self.rules = rules;
        self
    }

    /// Serves `ListIssues` and `UpdateIssue`.
    pub(crate) fn with_issues(mut self, issues: Option<Arc<IssueKeeping>>) -> Self {
        self.issues = issues;
        self
    }

    /// Open watches end when `shutdown` is cancelled.
    pub(crate) fn with_shutdown(mut self, shutdown: CancellationToken) -> Self {
        self.shutdown = shutdown;
        self
    }

    /// Answers for every partition of the topic, asking the other replicas through `cluster`.
    pub(crate) fn with_cluster(mut self, cluster: Option<Arc<Cluster>>) -> Self {
        self.cluster = cluster;
        self
    }

    /// Runs one call and records its status and latency.
    pub(super) async fn timed<T>(
        &self,
        rpc: &'static str,
        call: impl Future<Output = Result<Response<T>, Status>>,
    ) -> Result<Response<T>, Status> {
        let started = Instant::now();
        let result = call.await;
        let code = result
            .as_ref()
            .map_or_else(Status::code, |_| tonic::Code::Ok);
        self.metrics.rpc(rpc, code, started.elapsed());
        result
    }

    /// Checks the tenant id and the caller's right to it; only a valid id reaches the span.
    pub(super) fn tenant<T>(
        &self,
        request: &Request<T>,
        tenant_id: &str,
    ) -> Result<Caller, Status> {
        validate_tenant(tenant_id)?;
        tracing::Span::current().record("tenant", tenant_id);
        self.caller(request, Access::Tenant(tenant_id))
    }

    /// Authenticates the caller, checks its right to `access`, and applies its rate limit.
    /// Returns who the caller is, for the watch limits. A call another replica forwarded (with
    /// its `peer = true` token) was checked and limited there, for the caller it came from, so
    /// it is not limited again here.
    pub(super) fn caller<T>(
        &self,
        request: &Request<T>,
        access: Access<'_>,
    ) -> Result<Caller, Status> {
        let auth = self.auth.current();
        let address = request.remote_addr().map(|addr| addr.ip());
        let caller = match auth.check(request.metadata(), access)? {
            _ if self.forwarded_by_replica(request.metadata()) => Caller::Replica(address),
            Some(digest) => Caller::Grant(digest),
            None => address.map_or(Caller::Unknown, Caller::Address),
        };
        if let (Some(rate), false) = (&self.rate, matches!(caller, Caller::Replica(_))) {
            rate.check(&caller)?;
        }
        Ok(caller)
    }

    /// Whether another replica forwarded the call: it says so (`ih-forwarded`) and its token
    /// is a `peer = true` grant. From any other caller the forwarding headers are ignored, so
    /// a client cannot skip its limits or force the slower path by setting them.
    fn forwarded_by_replica(&self, metadata: &MetadataMap) -> bool {
        if !metadata.contains_key(FORWARDED) {
            return false;
        }
        if !self.auth.current().is_peer(metadata) {
            static IGNORED: std::sync::Once = std::sync::Once::new();
            IGNORED.call_once(|| {
                tracing::debug!("ih-forwarded from a caller without a peer grant is ignored")
            });
            return false;
        }
        let asker = metadata.get(ON_BEHALF_OF).and_then(|v| v.to_str().ok());
        tracing::debug!(
            on_behalf_of = asker.unwrap_or(""),
            "a call forwarded by a replica"
        );
        true
    }

    /// The replica to forward a tenant call to, if another one owns the tenant. A call that a
    /// replica forwarded already is answered where it lands: one hop at most.
    pub(super) fn forward_to(&self, caller: &Caller, tenant_id: &str) -> Option<Owner> {
        if matches!(caller, Caller::Replica(_)) {
            return None;
        }
        let (addr, partition) = self.cluster.as_ref()?.forward_target(tenant_id)?;
        Some(Owner { addr, partition })
    }

    /// Sends the call to `owner` with the replicas' peer token and the caller's deadline and
    /// partial-answer choice, and returns its answer as is. The caller's right to the tenant
    /// and its rate limit were checked here, so the owner, seeing a replica, checks neither.
    pub(super) async fn forward<Req, Resp, F, Fut>(
        &self,
        owner: &Owner,
        request: Request<Req>,
        call: F,
    ) -> Result<Response<Resp>, Status>
    where
        F: FnOnce(ApiClient, Request<Req>) -> Fut,
        Fut: Future<Output = Result<Response<Resp>, Status>>,
        Req: prost::Message,
        Resp: prost::Message,
    {
        let cluster = self
            .cluster
            .as_ref()
            .ok_or_else(|| Status::internal("forwarding without replicas"))?;
        let client = cluster
            .api_client(&owner.addr)
            .ok_or_else(|| owner.failed(&Status::unavailable("its address is not valid")))?;
        let incoming = request.metadata().clone();
        let on_behalf_of = self.caller_name(&request);
        // With the replicas' peer token: the owner leaves the caller's limits to this replica,
        // which applied them.
        let message = request.into_inner();
        let sent = message.encoded_len();
        let mut outgoing = cluster.peer_request(message);
        for header in [ALLOW_PARTIAL, "grpc-timeout"] {
            if let Some(value) = incoming.get(header) {
                outgoing.metadata_mut().insert(header, value.clone());
            }
        }
        let marks = outgoing.metadata_mut();
        marks.insert(FORWARDED, tonic::metadata::MetadataValue::from_static("1"));
        if let Ok(value) = on_behalf_of.parse() {
            marks.insert(ON_BEHALF_OF, value);
        }
        let answer = call(client, outgoing).await.map_err(|status| {
            tracing::warn!(owner = %owner.addr, partition = owner.partition, code = ?status.code(), message = %status.message(), "a forwarded call failed");
            match status.code() {
                // The owner could not be reached or broke: say which partition is missing.
                tonic::Code::Unavailable | tonic::Code::Unknown | tonic::Code::Internal => {
                    owner.failed(&status)
                }
                // The owner's own answer about the call (a bad argument, not found, busy).
                _ => status,
            }
        })?;
        self.metrics
            .peer_bytes("forwarded", sent, answer.get_ref().encoded_len());
        Ok(answer)
    }

    /// Who a call comes from, for logs: the first bytes of its grant's digest, or its address.
    fn caller_name<T>(&self, request: &Request<T>) -> String {
        match self.auth.current().check(request.metadata(), Access::Any) {
            Ok(Some(digest)) => format!("grant:{}", hex::encode(&digest[..6])),
            _ => request.remote_addr().map_or_else(
                || "unknown".to_owned(),
                |addr| format!("addr:{}", addr.ip()),
            ),
        }
    }

    /// This replica's address as the others reach it, when it runs with replicas.
    pub(crate) fn cluster_addr(&self) -> Option<String> {
        Some(self.cluster.as_ref()?.config.advertise_addr.clone())
    }

    /// The replica-to-replica service, sharing this API's store, tokens and query slots.
    pub(crate) fn peer(&self, advertise_addr: String) -> PeerApi {
        PeerApi {
            store: self.engine.store().clone(),
            progress: self.progress.clone(),
            clock: self.clock.clone(),
            auth: self.auth.clone(),
            advertise_addr,
            slots: self.slots.clone(),
            queue_wait: self.queue_wait,
        }
    }

    /// The watched tenants' shared counts.
    pub(super) fn feeds(&self) -> &Arc<Feeds> {
        self.feeds
            .get_or_init(|| Feeds::new(self.asker(), self.shutdown.clone()))
    }

    /// What runs a tenant's queries, over the other replicas' partitions too.
    pub(super) fn asker(&self) -> Asker {
        Asker {
            engine: self.engine.clone(),
            cluster: self.cluster.clone(),
            slots: self.slots.clone(),
            queue_wait: self.queue_wait,
            clock: self.clock.clone(),
            metrics: self.metrics.clone(),
        }
    }

    /// Answers a tenant's question over every partition that holds the tenant (`Asker`).
    /// Partitions that cannot be reached make the call UNAVAILABLE, unless the caller accepts
    /// a partial answer with the `ih-allow-partial: true` header or the request's field.
    pub(super) async fn tenant_query<T, W>(
        &self,
        metadata: &MetadataMap,
        allow_partial: bool,
        tenant_id: &str,
        work: W,
    ) -> Result<(T, Answered), Status>
    where
        T: Send + 'static,
        W: Fn(&QueryEngine) -> Result<T, QueryError> + Send + Sync + 'static,
    {
        let accept_partial = accepts_partial(metadata, allow_partial);
        self.asker().tenant(tenant_id, accept_partial, work).await
    }

    /// The whole pipeline of a call about one tenant: time it, check the caller's right to the
    /// tenant, forward it to the owner when another replica owns the tenant (`forward` names
    /// the RPC on the owner's client), or else turn the request into a query (`prepare`), run
    /// it over every partition that holds the tenant and build the answer with its coverage.
    pub(super) async fn tenant_call<Req, Resp, T, W, F, Fut>(
        &self,
        rpc: &'static str,
        request: Request<Req>,
        forward: F,
        prepare: impl FnOnce(&Req) -> Result<W, Status>,
    ) -> Result<Response<Resp>, Status>
    where
        Req: TenantRequest + prost::Message,
        Resp: From<T> + Covered + prost::Message,
        T: Send + 'static,
        W: Fn(&QueryEngine) -> Result<T, QueryError> + Send + Sync + 'static,
        F: FnOnce(ApiClient, Request<Req>) -> Fut,
        Fut: Future<Output = Result<Response<Resp>, Status>>,
    {
        self.timed(rpc, async {
            let req = request.get_ref();
            let caller = self.tenant(&request, req.tenant_id())?;
            if let Some(owner) = self.forward_to(&caller, req.tenant_id()) {
                return self.forward(&owner, request, forward).await;
            }
            let work = prepare(req)?;
            let (answer, answered) = self
                .tenant_query(
                    request.metadata(),
                    req.allow_partial(),
                    req.tenant_id(),
                    work,
                )
                .await?;
            Ok(respond(&answered, Resp::from(answer)))
        })
        .await
    }

    /// Per partition, each tenant's totals over `range`: this replica's partitions and, with
    /// replicas, every other partition from its owner.
    pub(super) async fn tenant_lists(
        &self,
        range: query::TimeRange,
        metadata: &MetadataMap,
        allow_partial: bool,
    ) -> Result<(Vec<Vec<query::TenantEvents>>, Answered), Status> {
        let local = self
            .run(self.engine.clone(), move |engine| {
                Ok(engine.tenants_by_partition(range, None))
            })
            .await?;
        let lost = self.engine.store().all_losses();
        let Some(cluster) = &self.cluster else {
            let lists = local.into_iter().map(|(_, rows)| rows).collect();
            return Ok((
                lists,
                Answered {
                    coverage: None,
                    lost,
                },
            ));
        };
        let held = local.iter().map(|(partition, _)| *partition).collect();
        let (remote, coverage) = cluster.remote_tenants(&held, range).await;
        check_coverage(&coverage, accepts_partial(metadata, allow_partial))?;
        let mut lists: Vec<_> = local.into_iter().map(|(_, rows)| rows).collect();
        lists.extend(remote);
        let answered = Answered {
            coverage: Some(coverage),
            lost,
        };
        Ok((lists, answered))
    }

    async fn run<T: Send + 'static>(
        &self,
        engine: QueryEngine,
        work: impl FnOnce(&QueryEngine) -> Result<T, QueryError> + Send + 'static,
    ) -> Result<T, Status> {
        self.asker().run(engine, work).await
    }
}

pub(super) fn validate_tenant(tenant_id: &str) -> Result<(), Status> {
    let valid_chars = tenant_id.chars().all(is_tenant_char);
    if tenant_id.is_empty() || tenant_id.len() > MAX_TENANT_ID_CHARS || !valid_chars {
        return Err(Status::invalid_argument(
            "tenant_id must be 1..64 characters of A-Z a-z 0-9 . _ : -",
        ));
    }
    Ok(())
}
