//! `bench e2e`: publish through the mock cluster while the service consumes and gRPC clients
//! poll it, then restart the service from its snapshots.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use integration_health::clock::{Clock, SharedClock, SystemClock};
use integration_health::config::Config;
use integration_health::ingest::{send_when_queued, IngestProgress};
use integration_health::proto::{self, integration_health_client::IntegrationHealthClient};
use integration_health::server;
use integration_health::store::Store;
use integration_health::testkit::{generate_lines, EmbeddedKafka};
use serde::Serialize;
use tokio_util::sync::CancellationToken;

use super::{latency, tempfile_dir, tenant_of, BenchError, Latency, Volume};

/// What `bench e2e` runs; also its command-line flags.
#[derive(Debug, Clone, Copy, clap::Args)]
pub struct E2eSpec {
    #[command(flatten)]
    pub volume: Volume,
    /// Events per second to publish; flat out when absent.
    #[arg(long)]
    pub rate: Option<u64>,
    #[arg(long, default_value_t = 6)]
    pub partitions: i32,
    #[arg(long, default_value_t = 4)]
    pub clients: usize,
    /// Dashboard RPCs per second across all clients, the way a fleet of open dashboards polls.
    #[arg(long, default_value_t = 600)]
    pub rpc_rate: u64,
    /// Go through the repartition stage (as for producers that do not key by tenant).
    #[arg(long)]
    pub repartition: bool,
}

#[derive(Debug, Clone, Serialize)]
pub struct E2eReport {
    pub events: u64,
    pub seconds: f64,
    pub events_per_sec: f64,
    /// (seconds since start, total lag in messages)
    pub lag: Vec<(f64, i64)>,
    pub max_lag: i64,
    pub rpc: Vec<Latency>,
    pub rpc_calls: u64,
    pub snapshot_encode_ms_max: f64,
    pub snapshot_write_ms_max: f64,
    pub snapshot_bytes: u64,
    pub restart_to_grpc_ms: f64,
    pub restart_to_restored_ms: f64,
}

/// The most messages the producer may run ahead of the consumer, per partition. The mock
/// cluster keeps only ~5 MB per partition; running further ahead would lose messages.
const E2E_HEADROOM_PER_PARTITION: u64 = 8_000;

fn publish_all(
    bootstrap: &str,
    topic: &str,
    lines: &[Vec<u8>],
    rate: Option<u64>,
    store: &Store,
    headroom: u64,
) -> Result<(), BenchError> {
    use rdkafka::producer::{BaseRecord, DefaultProducerContext, Producer, ThreadedProducer};
    let producer: ThreadedProducer<DefaultProducerContext> = rdkafka::ClientConfig::new()
        .set("bootstrap.servers", bootstrap)
        .set("linger.ms", "5")
        .set("batch.num.messages", "10000")
        .set("queue.buffering.max.messages", "500000")
        .create()?;
    let started = Instant::now();
    for (sent, line) in lines.iter().enumerate() {
        if sent % 1000 == 0 {
            if let Some(rate) = rate {
                let due = Duration::from_secs_f64(sent as f64 / rate as f64);
                if let Some(wait) = due.checked_sub(started.elapsed()) {
                    std::thread::sleep(wait);
                }
            }
            while sent as u64 > store.totals().seen() + headroom {
                std::thread::sleep(Duration::from_millis(1));
            }
        }
        let key = tenant_of(line);
        let record = BaseRecord::to(topic).key(key).payload(line.as_slice());
        send_when_queued(&producer, record)?;
    }
    producer
        .flush(Duration::from_secs(60))
        .map_err(BenchError::Kafka)
}

async fn rpc_load(
    addr: std::net::SocketAddr,
    tenant: String,
    rounds_per_sec: f64,
    stop: tokio_util::sync::CancellationToken,
) -> Vec<(&'static str, f64)> {
    let Ok(channel) = tonic::transport::Channel::from_shared(format!("http://{addr}")) else {
        return Vec::new();
    };
    let Ok(channel) = channel.connect().await else {
        return Vec::new();
    };
    let mut api = IntegrationHealthClient::new(channel);
    let mut samples = Vec::new();
    let mut pace = tokio::time::interval(Duration::from_secs_f64(1.0 / rounds_per_sec.max(0.01)));
    pace.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    while !stop.is_cancelled() {
        pace.tick().await;
        let tenant_id = tenant.clone();
        let overview = proto::GetOverviewRequest {
            tenant_id: tenant_id.clone(),
            ..Default::default()
        };
        let _ = timed(&mut samples, "overview", api.get_overview(overview)).await;
        let change = proto::GetPercentageChangeRequest {
            tenant_id: tenant_id.clone(),
            ..Default::default()
        };
        let _ = timed(&mut samples, "change_1d", api.get_percentage_change(change)).await;
        let errors = proto::GetErrorBreakdownRequest {
            tenant_id: tenant_id.clone(),
            ..Default::default()
        };
        let _ = timed(&mut samples, "errors", api.get_error_breakdown(errors)).await;
        let trends = proto::GetTrendsRequest {
            tenant_id: tenant_id.clone(),
            ..Default::default()
        };
        let _ = timed(&mut samples, "trends_day", api.get_trends(trends)).await;
        let failures = proto::ListFailuresRequest {
            tenant_id: tenant_id.clone(),
            ..Default::default()
        };
        let page = timed(&mut samples, "failures", api.list_failures(failures)).await;
        if let Some(row) = page
            .ok()
            .and_then(|p| p.into_inner().failures.into_iter().next())
        {
            let details = proto::GetFailureDetailsRequest {
                allow_partial: false,
                tenant_id,
                failure_id: row.failure_id,
                range: None,
            };
            let _ = timed(
                &mut samples,
                "failure_details",
                api.get_failure_details(details),
            )
            .await;
        }
    }
    samples
}

/// Awaits one call and records how long it took, in microseconds.
async fn timed<T>(
    samples: &mut Vec<(&'static str, f64)>,
    rpc: &'static str,
    call: impl std::future::Future<Output = T>,
) -> T {
    let started = Instant::now();
    let answer = call.await;
    samples.push((rpc, started.elapsed().as_secs_f64() * 1e6));
    answer
}

fn total_lag(progress: &IngestProgress, store: &Store) -> i64 {
    progress
        .status(store, SystemClock.now_ms())
        .partitions
        .iter()
        .map(|p| p.lag)
        .sum()
}

/// Publishes through the mock cluster while the service consumes and clients query it, then
/// restarts the service from its snapshots.
pub async fn run_e2e(spec: E2eSpec) -> Result<E2eReport, BenchError> {
    let kafka = EmbeddedKafka::start(1)?;
    let topic = "bench-events";
    kafka.create_topic(topic, spec.partitions)?;
    kafka.create_topic("bench-events.by-tenant", spec.partitions)?;
    kafka.create_topic("bench-events.dlq", 1)?;
    let bootstrap = kafka.bootstrap_servers();
    let state_dir = tempfile_dir()?;
    let config = Config {
        brokers: bootstrap.clone(),
        topic: topic.into(),
        group: "bench".into(),
        input_keyed_by_tenant: !spec.repartition,
        grpc_addr: std::net::SocketAddr::from(([127, 0, 0, 1], 0)),
        state_dir: Some(state_dir.clone()),
        snapshot_interval_ms: 1_000,
        kafka: [("fetch.wait.max.ms", "10"), ("session.timeout.ms", "6000")]
            .into_iter()
            .map(|(k, v)| (k.to_owned(), v.to_owned()))
            .collect(),
        ..Config::default()
    };
    let clock: SharedClock = Arc::new(SystemClock);
    let lines = generate_lines(spec.volume.spec(3));
    let stop = CancellationToken::new();
    let service = server::start(&config, clock.clone(), stop.clone()).await?;
    let store = service.store.clone();
    let progress = service.progress.clone();

    let clients_stop = CancellationToken::new();
    let clients: Vec<_> = (0..spec.clients)
        .map(|_| {
            // Each round issues the six dashboard RPCs.
            let rounds_per_sec = spec.rpc_rate as f64 / 6.0 / spec.clients.max(1) as f64;
            tokio::spawn(rpc_load(
                service.grpc_addr,
                "tenant-0000".into(),
                rounds_per_sec,
                clients_stop.clone(),
            ))
        })
        .collect();
    let total = lines.len() as u64;
    let headroom = E2E_HEADROOM_PER_PARTITION * spec.partitions as u64;
    let publisher = {
        let store = store.clone();
        let bootstrap = bootstrap.clone();
        tokio::task::spawn_blocking(move || {
            publish_all(&bootstrap, topic, &lines, spec.rate, &store, headroom)
        })
    };
    // The consumer group's first join takes seconds; the clock starts at the first event.
    while store.totals().seen() == 0 {
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let started = Instant::now();
    let mut lag = Vec::new();
    while store.totals().seen() < total {
        tokio::time::sleep(Duration::from_millis(250)).await;
        lag.push((
            started.elapsed().as_secs_f64(),
            total_lag(&progress, &store),
        ));
        if started.elapsed() > Duration::from_secs(600) {
            return Err(BenchError::Stalled {
                consumed: store.totals().seen(),
                total,
            });
        }
    }
    let seconds = started.elapsed().as_secs_f64();
    publisher.await??;
    clients_stop.cancel();
    let mut by_rpc: BTreeMap<&'static str, Vec<f64>> = BTreeMap::new();
    for client in clients {
        for (rpc, us) in client.await.unwrap_or_default() {
            by_rpc.entry(rpc).or_default().push(us);
        }
    }
    let rpc_calls = by_rpc.values().map(|v| v.len() as u64).sum();
    let rpc = by_rpc
        .into_iter()
        .map(|(name, samples)| latency(name, "tenant-0000", samples))
        .collect();

    // Wait for a snapshot at the final offsets, then restart from the state dir.
    let deadline = Instant::now() + Duration::from_secs(60);
    while !progress
        .status(&store, clock.now_ms())
        .partitions
        .iter()
        .all(|p| p.snapshot.is_some_and(|s| s.next_offset == p.next_offset))
    {
        if Instant::now() > deadline {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let status = progress.status(&store, clock.now_ms());
    let snapshot_encode_ms_max = status
        .partitions
        .iter()
        .filter_map(|p| p.snapshot.map(|s| s.encode_ms))
        .fold(0.0, f64::max);
    let snapshot_write_ms_max = status
        .partitions
        .iter()
        .filter_map(|p| p.snapshot.map(|s| s.write_ms))
        .fold(0.0, f64::max);
    let snapshot_bytes = status
        .partitions
        .iter()
        .filter_map(|p| p.snapshot.map(|s| s.bytes))
        .sum();
    stop.cancel();
    service.wait().await?;

    let restart = Instant::now();
    let stop = CancellationToken::new();
    let service = server::start(&config, clock, stop.clone()).await?;
    let restart_to_grpc_ms = restart.elapsed().as_secs_f64() * 1000.0;
    while service.store.totals().seen() < total {
        if restart.elapsed() > Duration::from_secs(120) {
            return Err(BenchError::RestartStalled);
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let restart_to_restored_ms = restart.elapsed().as_secs_f64() * 1000.0;
    stop.cancel();
    service.wait().await?;
    let _ = std::fs::remove_dir_all(&state_dir);
    drop(kafka);

    Ok(E2eReport {
        events: total,
        seconds,
        events_per_sec: total as f64 / seconds,
        max_lag: lag.iter().map(|(_, l)| *l).max().unwrap_or(0),
        lag,
        rpc,
        rpc_calls,
        snapshot_encode_ms_max,
        snapshot_write_ms_max,
        snapshot_bytes,
        restart_to_grpc_ms,
        restart_to_restored_ms,
    })
}
