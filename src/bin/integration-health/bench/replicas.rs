//! `bench replicas`: replicas of this binary (`serve`) on a tansu broker that holds the whole
//! input. For the largest tenant it times every dashboard call through the tenant's owner and
//! through a replica that does not own it, checks that both answer the same, counts the bytes
//! the replicas exchange per call, and measures what watchers on the non-owner cost the owner.

use std::net::{SocketAddr, TcpListener};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use integration_health::cluster::tenant_partition;
use integration_health::ingest::send_when_queued;
use integration_health::proto::{self, integration_health_client::IntegrationHealthClient};
use integration_health::testkit::{
    die_with_parent, find_tansu, generate_lines, replica_tokens_toml, GenSpec, Tansu, TansuError,
};
use prost::Message;
use rdkafka::producer::{BaseRecord, DefaultProducerContext, Producer, ThreadedProducer};
use thiserror::Error;
use tokio_stream::StreamExt;
use tonic::service::interceptor::InterceptedService;
use tonic::transport::Channel;

use super::probe::{cpu_seconds, peer_bytes};
use super::report::{ReplicasReport, RpcComparison, WatchCost};
use super::{percentile, read_lines, tempfile_dir};

#[derive(Debug, Error)]
pub enum ReplicasError {
    #[error(transparent)]
    Tansu(#[from] TansuError),
    #[error(transparent)]
    Bench(#[from] super::BenchError),
    #[error("cannot start a replica")]
    Spawn(#[source] std::io::Error),
    #[error("a replica did not answer on {0}")]
    Unreachable(SocketAddr),
    #[error("{0} did not happen within {1:?}")]
    Timeout(&'static str, Duration),
    #[error("{rpc} through {replica} failed")]
    Call {
        rpc: &'static str,
        replica: &'static str,
        #[source]
        status: Box<tonic::Status>,
    },
    #[error("no tenant has events")]
    NoTenant,
    #[error("kafka producer")]
    Kafka(#[from] rdkafka::error::KafkaError),
    #[error("reading /proc for a replica's CPU time")]
    Cpu(#[source] std::io::Error),
    #[error("cannot read metrics from {0}")]
    Metrics(SocketAddr),
}

/// What `bench replicas` runs; also its command-line flags.
#[derive(Debug, Clone, clap::Args)]
pub struct ReplicasSpec {
    /// NDJSON file from `bench gen`.
    #[arg(long)]
    pub input: PathBuf,
    #[arg(long, default_value_t = 2)]
    pub replicas: usize,
    #[arg(long, default_value_t = 6)]
    pub partitions: i32,
    /// Calls per RPC and replica.
    #[arg(long, default_value_t = 200)]
    pub calls: usize,
    /// Watchers of the tenant opened on the non-owner for the cost measurement.
    #[arg(long, default_value_t = 300)]
    pub watchers: usize,
    /// How long each watch phase is measured.
    #[arg(long, default_value_t = 20)]
    pub watch_seconds: u64,
}

/// A replica process, killed when dropped.
struct Replica {
    child: Child,
    grpc: SocketAddr,
    http: SocketAddr,
}

impl Drop for Replica {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn free_addr() -> Result<SocketAddr, ReplicasError> {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map_err(ReplicasError::Spawn)
}

fn spawn_replica(
    bootstrap: &str,
    topic: &str,
    dir: &Path,
    name: &str,
    watchers: usize,
) -> Result<Replica, ReplicasError> {
    let (grpc, http) = (free_addr()?, free_addr()?);
    // One caller (this benchmark) opens every watcher.
    let config = dir.join(format!("{name}.toml"));
    let settings = format!(
        "max_watch_streams_per_token = {}\ntokens_file = {:?}\n",
        watchers + 10,
        tokens_file(dir)?
    );
    std::fs::write(&config, settings).map_err(ReplicasError::Spawn)?;
    let log =
        std::fs::File::create(dir.join(format!("{name}.log"))).map_err(ReplicasError::Spawn)?;
    let binary = std::env::current_exe().map_err(ReplicasError::Spawn)?;
    let child = die_with_parent(&mut Command::new(binary))
        .arg("serve")
        .arg("--config")
        .arg(&config)
        .args(["--brokers", bootstrap, "--topic", topic, "--group", "bench"])
        .args(["--grpc-addr", &grpc.to_string(), "--advertise-addr"])
        .arg(grpc.to_string())
        .args(["--http-addr", &http.to_string()])
        .args(["--kafka-property", "session.timeout.ms=6000"])
        .env("IH_LOG", "warn,librdkafka=warn")
        .env("IH_PEER_TOKEN", PEER_TOKEN)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::from(log))
        .spawn()
        .map_err(ReplicasError::Spawn)?;
    Ok(Replica { child, grpc, http })
}

/// The benchmark's own token, and the one its replicas present to each other; the tokens file
/// it writes grants both (replicas never serve an open API).
const READER_TOKEN: &str = "bench-replicas-reader";
const PEER_TOKEN: &str = "bench-replicas-peer";

type Bearer = fn(tonic::Request<()>) -> Result<tonic::Request<()>, tonic::Status>;
type Api = IntegrationHealthClient<InterceptedService<Channel, Bearer>>;

// An interceptor's signature is tonic's.
#[allow(clippy::result_large_err)]
fn bearer(mut request: tonic::Request<()>) -> Result<tonic::Request<()>, tonic::Status> {
    let value = tonic::metadata::MetadataValue::from_static("Bearer bench-replicas-reader");
    request.metadata_mut().insert("authorization", value);
    Ok(request)
}

/// The grants of `READER_TOKEN` (every tenant, operator) and `PEER_TOKEN` (a replica's).
fn tokens_file(dir: &Path) -> Result<PathBuf, ReplicasError> {
    let text = replica_tokens_toml(PEER_TOKEN, READER_TOKEN);
    let path = dir.join("tokens.toml");
    std::fs::write(&path, text).map_err(ReplicasError::Spawn)?;
    Ok(path)
}

async fn client(addr: SocketAddr) -> Result<Api, ReplicasError> {
    let started = Instant::now();
    loop {
        if let Ok(channel) = Channel::from_shared(format!("http://{addr}"))
            .map_err(|_| ReplicasError::Unreachable(addr))?
            .connect()
            .await
        {
            let api = IntegrationHealthClient::with_interceptor(channel, bearer as Bearer);
            return Ok(api.max_decoding_message_size(1 << 24));
        }
        if started.elapsed() > Duration::from_secs(30) {
            return Err(ReplicasError::Unreachable(addr));
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

type Publisher = ThreadedProducer<DefaultProducerContext>;

fn publisher(bootstrap: &str) -> Result<Publisher, ReplicasError> {
    Ok(rdkafka::ClientConfig::new()
        .set("bootstrap.servers", bootstrap)
        .set("linger.ms", "20")
        .set("batch.num.messages", "10000")
        .set("queue.buffering.max.messages", "200000")
        .create()?)
}

/// Sends `lines` and waits until the broker has them all.
fn publish(producer: &Publisher, topic: &str, lines: &[Vec<u8>]) -> Result<(), ReplicasError> {
    for line in lines {
        // Unkeyed, as producers that do not key by tenant send: the repartition stage re-keys.
        let record = BaseRecord::<[u8], [u8]>::to(topic).payload(line.as_slice());
        send_when_queued(producer, record)?;
    }
    producer.flush(Duration::from_secs(120))?;
    Ok(())
}

/// Waits until every replica reports every partition owned and read, and `total` messages seen.
async fn settled(apis: &[Api], total: u64) -> Result<(), ReplicasError> {
    let limit = Duration::from_secs(1200);
    let started = Instant::now();
    loop {
        let mut all = true;
        for api in apis {
            let status = api
                .clone()
                .get_ingest_status(proto::GetIngestStatusRequest {})
                .await
                .map(|r| r.into_inner());
            let Ok(s) = status else {
                all = false;
                break;
            };
            let seen = s.accepted + s.rejected + s.duplicates + s.late_dropped;
            let read = s
                .partitions
                .iter()
                .all(|p| !p.owner.is_empty() && p.lag == 0)
                && s.upstream_partitions.iter().all(|p| p.lag == 0);
            all &= read && !s.partitions.is_empty() && seen >= total;
        }
        if all {
            return Ok(());
        }
        if started.elapsed() > limit {
            return Err(ReplicasError::Timeout(
                "every replica owning and reading",
                limit,
            ));
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}

/// The largest tenant by events over the default range, with its event count.
async fn largest_tenant(api: &mut Api) -> Result<(String, u64), ReplicasError> {
    let tenants = api
        .list_tenants(proto::ListTenantsRequest::default())
        .await
        .map_err(|status| ReplicasError::Call {
            rpc: "ListTenants",
            replica: "first",
            status: Box::new(status),
        })?
        .into_inner()
        .tenants;
    tenants
        .into_iter()
        .map(|t| (t.tenant_id, t.failed + t.succeeded))
        .max_by_key(|(_, events)| *events)
        .ok_or(ReplicasError::NoTenant)
}

/// Times `calls` calls of one RPC; returns the latencies and the last answer.
macro_rules! timed_calls {
    ($api:expr, $method:ident, $request:expr, $calls:expr, $rpc:expr, $replica:expr) => {{
        let mut samples = Vec::with_capacity($calls);
        let mut last = None;
        for _ in 0..$calls {
            let started = Instant::now();
            let answer = $api
                .$method($request.clone())
                .await
                .map_err(|status| ReplicasError::Call {
                    rpc: $rpc,
                    replica: $replica,
                    status: Box::new(status),
                })?
                .into_inner();
            samples.push(started.elapsed().as_secs_f64() * 1e6);
            last = Some(answer);
        }
        samples.sort_by(f64::total_cmp);
        (samples, last)
    }};
}

/// One RPC through both replicas, compared.
macro_rules! compare {
    ($bench:expr, $method:ident, $request:expr, $rpc:expr) => {{
        let bench: &mut Comparing = $bench;
        let calls = bench.calls;
        let (owner_samples, owner_answer) =
            timed_calls!(bench.owner, $method, $request, calls, $rpc, "the owner");
        let before = peer_bytes(bench.other_http).await?;
        let (other_samples, other_answer) = timed_calls!(
            bench.other,
            $method,
            $request,
            calls,
            $rpc,
            "the other replica"
        );
        let after = peer_bytes(bench.other_http).await?;
        let answer_bytes = owner_answer.as_ref().map_or(0, |a| a.encoded_len());
        RpcComparison {
            rpc: $rpc,
            owner_p50_us: percentile(&owner_samples, 0.5),
            owner_p99_us: percentile(&owner_samples, 0.99),
            other_p50_us: percentile(&other_samples, 0.5),
            other_p99_us: percentile(&other_samples, 0.99),
            answer_bytes,
            peer_bytes_per_call: (after - before) / calls.max(1) as f64,
            equal: owner_answer == other_answer,
        }
    }};
}

struct Comparing {
    owner: Api,
    other: Api,
    other_http: SocketAddr,
    calls: usize,
}

async fn compare_rpcs(
    bench: &mut Comparing,
    tenant: &str,
) -> Result<Vec<RpcComparison>, ReplicasError> {
    let tenant_id = tenant.to_owned();
    let mut rows = Vec::new();
    let overview = proto::GetOverviewRequest {
        tenant_id: tenant_id.clone(),
        ..Default::default()
    };
    rows.push(compare!(bench, get_overview, overview, "GetOverview"));
    let change = proto::GetPercentageChangeRequest {
        tenant_id: tenant_id.clone(),
        include_drivers: true,
        ..Default::default()
    };
    rows.push(compare!(
        bench,
        get_percentage_change,
        change,
        "GetPercentageChange"
    ));
    let errors = proto::GetErrorBreakdownRequest {
        tenant_id: tenant_id.clone(),
        ..Default::default()
    };
    rows.push(compare!(
        bench,
        get_error_breakdown,
        errors,
        "GetErrorBreakdown"
    ));
    let trends = proto::GetTrendsRequest {
        tenant_id: tenant_id.clone(),
        granularity: proto::Granularity::Day as i32,
        ..Default::default()
    };
    rows.push(compare!(bench, get_trends, trends, "GetTrends"));
    let failures = proto::ListFailuresRequest {
        tenant_id: tenant_id.clone(),
        ..Default::default()
    };
    let first = bench
        .owner
        .list_failures(failures.clone())
        .await
        .ok()
        .and_then(|r| r.into_inner().failures.into_iter().next());
    rows.push(compare!(bench, list_failures, failures, "ListFailures"));
    if let Some(row) = first {
        let details = proto::GetFailureDetailsRequest {
            tenant_id: tenant_id.clone(),
            failure_id: row.failure_id,
            ..Default::default()
        };
        rows.push(compare!(
            bench,
            get_failure_details,
            details,
            "GetFailureDetails"
        ));
    }
    let integrations = proto::ListIntegrationsRequest {
        tenant_id: tenant_id.clone(),
        ..Default::default()
    };
    let top = bench
        .owner
        .list_integrations(integrations.clone())
        .await
        .ok()
        .and_then(|r| r.into_inner().integrations.into_iter().next());
    rows.push(compare!(
        bench,
        list_integrations,
        integrations,
        "ListIntegrations"
    ));
    if let Some(top) = top {
        let health = proto::GetIntegrationHealthRequest {
            tenant_id,
            integration_id: top.integration_id,
            integration_type: top.integration_type,
            ..Default::default()
        };
        rows.push(compare!(
            bench,
            get_integration_health,
            health,
            "GetIntegrationHealth"
        ));
    }
    Ok(rows)
}

/// Opens `count` watchers of `tenant` on the replica at `addr`, each on its own connection as
/// separate dashboards would be, and reads them for `seconds`; returns the updates they received.
async fn watch_for(
    addr: SocketAddr,
    tenant: &str,
    count: usize,
    seconds: u64,
) -> Result<u64, ReplicasError> {
    let mut streams = Vec::with_capacity(count);
    for _ in 0..count {
        let mut api = client(addr).await?;
        let request = proto::WatchTenantRequest {
            tenant_id: tenant.to_owned(),
            min_interval: Some(proto::Duration {
                seconds: 0,
                nanos: 100_000_000,
            }),
        };
        let stream = api
            .watch_tenant(request)
            .await
            .map_err(|status| ReplicasError::Call {
                rpc: "WatchTenant",
                replica: "the other replica",
                status: Box::new(status),
            })?
            .into_inner();
        streams.push(stream);
    }
    let deadline = tokio::time::Instant::now() + Duration::from_secs(seconds);
    let readers = streams.into_iter().map(|mut stream| async move {
        let mut updates = 0_u64;
        while let Ok(Some(Ok(_))) = tokio::time::timeout_at(deadline, stream.next()).await {
            updates += 1;
        }
        updates
    });
    Ok(futures::future::join_all(readers).await.into_iter().sum())
}

/// Publishes new events for `tenant` at about 100 a second for `seconds`, or until `stop`.
fn trickle(
    producer: Publisher,
    topic: String,
    tenant: String,
    seconds: u64,
    stop: tokio_util::sync::CancellationToken,
) {
    std::thread::spawn(move || {
        let spec = GenSpec {
            events: 100 * seconds,
            tenants: 1,
            days: 1,
            seed: 4_242,
            end_ms: chrono::Utc::now().timestamp_millis(),
        };
        let lines = generate_lines(spec);
        let renamed = lines.into_iter().map(|line| {
            let text = String::from_utf8_lossy(&line).into_owned();
            let tenant_of = super::tenant_of(&line).to_vec();
            let from = format!("\"tenant_id\":\"{}\"", String::from_utf8_lossy(&tenant_of));
            text.replacen(&from, &format!("\"tenant_id\":\"{tenant}\""), 1)
                .replacen("\"event_id\":\"", "\"event_id\":\"trickle-", 1)
                .into_bytes()
        });
        for chunk in renamed.collect::<Vec<_>>().chunks(10) {
            if stop.is_cancelled() || publish(&producer, &topic, chunk).is_err() {
                return;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    });
}

pub async fn run_replicas(spec: ReplicasSpec) -> Result<ReplicasReport, ReplicasError> {
    let lines = read_lines(&spec.input)?;
    let total = lines.len() as u64;
    let tansu = Tansu::start(&find_tansu()?)?;
    let topic = "bench-replicas";
    tansu.create_topic(topic, spec.partitions).await?;
    let dir = tempfile_dir()?;
    let mut replicas = Vec::new();
    for i in 0..spec.replicas.max(2) {
        let name = format!("replica-{i}");
        replicas.push(spawn_replica(
            &tansu.bootstrap,
            topic,
            &dir,
            &name,
            spec.watchers,
        )?);
    }
    let mut apis = Vec::new();
    for replica in &replicas {
        apis.push(client(replica.grpc).await?);
    }
    let started = Instant::now();
    let producer = publisher(&tansu.bootstrap)?;
    let publish_topic = topic.to_owned();
    let publishing = tokio::task::spawn_blocking(move || {
        publish(&producer, &publish_topic, &lines)?;
        Ok::<_, ReplicasError>(producer)
    });
    let producer = publishing.await.map_err(super::BenchError::Task)??;
    settled(&apis, total).await?;
    let load_seconds = started.elapsed().as_secs_f64();
    let (tenant, tenant_events) = largest_tenant(&mut apis[0]).await?;
    let partition = tenant_partition(&tenant, spec.partitions);
    let status = apis[0]
        .get_ingest_status(proto::GetIngestStatusRequest {})
        .await
        .map_err(|status| ReplicasError::Call {
            rpc: "GetIngestStatus",
            replica: "first",
            status: Box::new(status),
        })?
        .into_inner();
    let owner_addr = status
        .partitions
        .iter()
        .find(|p| p.partition == partition)
        .map(|p| p.owner.clone())
        .unwrap_or_default();
    let owner_index = replicas
        .iter()
        .position(|r| r.grpc.to_string() == owner_addr)
        .unwrap_or(0);
    let other_index = (owner_index + 1) % replicas.len();
    let mut bench = Comparing {
        owner: apis[owner_index].clone(),
        other: apis[other_index].clone(),
        other_http: replicas[other_index].http,
        calls: spec.calls,
    };
    let rpcs = compare_rpcs(&mut bench, &tenant).await?;

    let stop = tokio_util::sync::CancellationToken::new();
    // Three watch phases, with a little to spare.
    let trickle_seconds = 3 * spec.watch_seconds + 10;
    trickle(
        producer,
        topic.to_owned(),
        tenant.clone(),
        trickle_seconds,
        stop.clone(),
    );
    let owner_pid = replicas[owner_index].child.id();
    let phase = |watchers: usize| {
        let other = replicas[other_index].grpc;
        let tenant = tenant.clone();
        async move {
            let before = cpu_seconds(owner_pid)?;
            let updates = match watchers {
                0 => {
                    tokio::time::sleep(Duration::from_secs(spec.watch_seconds)).await;
                    0
                }
                n => watch_for(other, &tenant, n, spec.watch_seconds).await?,
            };
            Ok::<_, ReplicasError>((cpu_seconds(owner_pid)? - before, updates))
        }
    };
    let (idle, _) = phase(0).await?;
    let (one, _) = phase(1).await?;
    let (many, updates) = phase(spec.watchers).await?;
    stop.cancel();
    drop(replicas);
    drop(tansu);
    Ok(ReplicasReport {
        events: total,
        replicas: spec.replicas.max(2),
        partitions: spec.partitions,
        tenant,
        tenant_events,
        load_seconds,
        rpcs,
        watch: WatchCost {
            seconds: spec.watch_seconds,
            owner_cpu_idle_s: idle,
            owner_cpu_one_watcher_s: one,
            watchers: spec.watchers,
            owner_cpu_many_watchers_s: many,
            updates,
        },
    })
}
