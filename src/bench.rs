//! `integration-health bench`: a deterministic event generator, an in-process ingest and query
//! benchmark, and an end-to-end run through the mock cluster. Reports print as text or JSON.

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader, BufWriter, Write};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use rand::rngs::SmallRng;
use rand::{Rng, SeedableRng};
use serde::Serialize;
use thiserror::Error;

use crate::checkpoint::{self, SnapshotStore};
use crate::clock::ManualClock;
use crate::event::{decode, DecodeLimits, IntegrationType};
use crate::query::{Granularity, ListFailuresRequest, QueryEngine, TypeFilter};
use crate::store::{PartitionKey, PartitionState, Store, StoreLimits, DAY_MS, MINUTE_MS};

#[derive(Debug, Error)]
pub enum BenchError {
    #[error("cannot use {path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{0}")]
    Invalid(String),
    #[error(transparent)]
    Checkpoint(#[from] checkpoint::CheckpointError),
}

fn io(path: &Path) -> impl FnOnce(std::io::Error) -> BenchError + '_ {
    move |source| BenchError::Io {
        path: path.to_owned(),
        source,
    }
}

#[derive(Debug, Clone, Copy)]
pub struct GenSpec {
    pub events: u64,
    pub tenants: u32,
    pub days: u32,
    pub seed: u64,
    /// The newest event's time; events run up to it in time order.
    pub end_ms: i64,
}

const CODES: [u16; 12] = [503, 401, 404, 500, 429, 400, 504, 882, 408, 502, 403, 816];

/// Cumulative weights, so a skewed pick is a binary search rather than a loop.
struct Skew(Vec<f64>);

impl Skew {
    fn new(n: u32) -> Self {
        let mut total = 0.0;
        Skew(
            (1..=n.max(1))
                .map(|k| {
                    total += 1.0 / k as f64;
                    total
                })
                .collect(),
        )
    }

    fn pick(&self, rng: &mut SmallRng) -> u32 {
        let total = self.0.last().copied().unwrap_or(1.0);
        let target = rng.gen::<f64>() * total;
        self.0
            .partition_point(|c| *c < target)
            .min(self.0.len() - 1) as u32
    }
}

/// Writes events in time order as NDJSON lines (~350 bytes each) to `out`.
pub fn generate(spec: GenSpec, out: &mut impl Write) -> std::io::Result<u64> {
    let mut rng = SmallRng::seed_from_u64(spec.seed);
    let tenants = Skew::new(spec.tenants);
    let integrations = Skew::new(40);
    let codes = Skew::new(CODES.len() as u32);
    let span = i64::from(spec.days) * DAY_MS;
    let start = spec.end_ms - span;
    let step = span as f64 / spec.events.max(1) as f64;
    let mut line = String::with_capacity(512);
    let mut bytes = 0;
    for i in 0..spec.events {
        let at = start + (i as f64 * step) as i64;
        let tenant = tenants.pick(&mut rng);
        let integration = integrations.pick(&mut rng);
        let kind = IntegrationType::ALL[(integration % 5) as usize];
        let failed = rng.gen_bool(0.12);
        line.clear();
        use std::fmt::Write as _;
        let _ = write!(
            line,
            r#"{{"event_id":"ev-{seed}-{i:012}","tenant_id":"tenant-{tenant:04}","occurred_at":{at},"integration_type":"{kind}","integration_id":"int-{integration:03}","integration_name":"Integration number {integration} for the tenant","outcome":"{outcome}""#,
            seed = spec.seed,
            kind = kind.as_str(),
            outcome = if failed { "failure" } else { "success" },
        );
        if failed {
            let code = CODES[codes.pick(&mut rng) as usize];
            let _ = write!(
                line,
                r#","status_code":{code},"error_message":"Upstream answered {code} for request","#
            );
        } else {
            line.push(',');
        }
        let flow = rng.gen_range(0..6);
        let service = rng.gen_range(0..4);
        let _ = writeln!(
            line,
            r#""flow_id":"flow-{flow}","flow_name":"Customer journey {flow}","service_id":"svc-{service}","service_name":"Service {service}","latency_ms":{}}}"#,
            rng.gen_range(5..2_000)
        );
        out.write_all(line.as_bytes())?;
        bytes += line.len() as u64;
    }
    Ok(bytes)
}

pub fn generate_file(spec: GenSpec, path: &Path) -> Result<u64, BenchError> {
    let file = std::fs::File::create(path).map_err(io(path))?;
    let mut out = BufWriter::with_capacity(1 << 20, file);
    let bytes = generate(spec, &mut out).map_err(io(path))?;
    out.flush().map_err(io(path))?;
    Ok(bytes)
}

pub fn generate_lines(spec: GenSpec) -> Vec<Vec<u8>> {
    let mut buffer = Vec::new();
    let _ = generate(spec, &mut buffer);
    buffer
        .split(|b| *b == b'\n')
        .filter(|l| !l.is_empty())
        .map(<[u8]>::to_vec)
        .collect()
}

pub fn read_lines(path: &Path) -> Result<Vec<Vec<u8>>, BenchError> {
    let file = std::fs::File::open(path).map_err(io(path))?;
    let mut lines = Vec::new();
    for line in BufReader::with_capacity(1 << 20, file).split(b'\n') {
        let line = line.map_err(io(path))?;
        if !line.is_empty() {
            lines.push(line);
        }
    }
    Ok(lines)
}

/// The clock the events were generated against: a minute after the newest event.
fn clock_for(lines: &[Vec<u8>]) -> Result<i64, BenchError> {
    let last = lines
        .last()
        .ok_or_else(|| BenchError::Invalid("no events".into()))?;
    let limits = DecodeLimits {
        now_ms: i64::MAX,
        max_future_ms: 0,
    };
    let event =
        decode(last, limits).map_err(|e| BenchError::Invalid(format!("last event: {e}")))?;
    Ok(event.occurred_at_ms + MINUTE_MS)
}

#[derive(Debug, Clone, Serialize)]
pub struct Throughput {
    pub threads: usize,
    pub events: u64,
    pub seconds: f64,
    pub events_per_sec: f64,
    pub mb_per_sec: f64,
}

#[derive(Debug, Clone, Serialize)]
pub struct Latency {
    pub query: String,
    pub tenant: String,
    pub p50_us: f64,
    pub p99_us: f64,
    pub max_us: f64,
}

#[derive(Debug, Clone, Serialize)]
pub struct IngestReport {
    pub events: u64,
    pub input_bytes: u64,
    pub single_thread: Throughput,
    /// Absent for the streaming run, which uses one thread.
    pub all_threads: Option<Throughput>,
    pub rss_bytes: u64,
    pub state_bytes_estimate: u64,
    pub groups: u64,
    pub snapshot_bytes: u64,
    pub snapshot_write_ms: f64,
    pub snapshot_restore_ms: f64,
    pub queries: Vec<Latency>,
}

/// Applies every line to a partition state, as the owner thread does.
fn apply_all(lines: &[&[u8]], limits: &StoreLimits, now_ms: i64) -> PartitionState {
    let mut state = PartitionState::new(limits);
    let decode_limits = DecodeLimits {
        now_ms,
        max_future_ms: 5 * MINUTE_MS,
    };
    for (offset, line) in lines.iter().enumerate() {
        match decode(line, decode_limits) {
            Ok(event) => {
                state.apply(&event, limits, now_ms);
            }
            Err(_) => state.record_rejected(),
        }
        state.mark_applied(offset as i64);
    }
    state
}

/// Splits lines by tenant the way a tenant-keyed topic would, one share per partition.
fn partition_lines(lines: &[Vec<u8>], partitions: usize) -> Vec<Vec<&[u8]>> {
    let mut shares = vec![Vec::new(); partitions];
    for line in lines {
        let tenant = tenant_of(line);
        let share = (xxhash_rust::xxh3::xxh3_64(tenant) % partitions as u64) as usize;
        shares[share].push(line.as_slice());
    }
    shares
}

fn tenant_of(line: &[u8]) -> &[u8] {
    const KEY: &[u8] = b"\"tenant_id\":\"";
    line.windows(KEY.len())
        .position(|w| w == KEY)
        .map(|at| {
            let rest = &line[at + KEY.len()..];
            let end = rest.iter().position(|b| *b == b'"').unwrap_or(rest.len());
            &rest[..end]
        })
        .unwrap_or_default()
}

fn throughput(threads: usize, events: u64, bytes: u64, elapsed: Duration) -> Throughput {
    let seconds = elapsed.as_secs_f64().max(1e-9);
    Throughput {
        threads,
        events,
        seconds,
        events_per_sec: events as f64 / seconds,
        mb_per_sec: bytes as f64 / seconds / 1e6,
    }
}

fn percentile(sorted: &[f64], p: f64) -> f64 {
    if sorted.is_empty() {
        return 0.0;
    }
    let rank = ((sorted.len() - 1) as f64 * p).round() as usize;
    sorted[rank]
}

pub fn latency(query: &str, tenant: &str, mut samples_us: Vec<f64>) -> Latency {
    samples_us.sort_by(f64::total_cmp);
    Latency {
        query: query.to_owned(),
        tenant: tenant.to_owned(),
        p50_us: percentile(&samples_us, 0.5),
        p99_us: percentile(&samples_us, 0.99),
        max_us: samples_us.last().copied().unwrap_or(0.0),
    }
}

fn time_us(run: impl FnOnce()) -> f64 {
    let started = Instant::now();
    run();
    started.elapsed().as_secs_f64() * 1e6
}

/// The dashboard's queries, each run `rounds` times for one tenant.
pub fn query_latencies(engine: &QueryEngine, tenant: &str, rounds: usize) -> Vec<Latency> {
    type Query<'a> = (&'static str, Box<dyn Fn() + 'a>);
    let all = TypeFilter::all();
    let top_failure = engine
        .list_failures(&ListFailuresRequest::first_page(tenant, 1))
        .ok()
        .and_then(|p| p.failures.into_iter().next())
        .map(|row| row.failure_id);
    let queries: Vec<Query<'_>> = vec![
        (
            "overview",
            Box::new(|| drop(engine.overview(tenant, None, all))),
        ),
        (
            "change_1d",
            Box::new(|| drop(engine.percentage_change(tenant, Some(DAY_MS), None, all))),
        ),
        (
            "change_30d",
            Box::new(|| drop(engine.percentage_change(tenant, Some(30 * DAY_MS), None, all))),
        ),
        (
            "errors",
            Box::new(|| drop(engine.error_breakdown(tenant, None, all))),
        ),
        (
            "trends_day",
            Box::new(|| drop(engine.trends(tenant, None, all, Granularity::Day, "Europe/Berlin"))),
        ),
        (
            "trends_hour",
            Box::new(|| drop(engine.trends(tenant, None, all, Granularity::Hour, "UTC"))),
        ),
        (
            "failures",
            Box::new(|| drop(engine.list_failures(&ListFailuresRequest::first_page(tenant, 50)))),
        ),
        (
            "failure_details",
            Box::new(move || {
                if let Some(id) = &top_failure {
                    drop(engine.failure_details(tenant, id, None));
                }
            }),
        ),
    ];
    queries
        .into_iter()
        .map(|(name, run)| {
            let samples = (0..rounds).map(|_| time_us(&run)).collect();
            latency(name, tenant, samples)
        })
        .collect()
}

/// Tenants by accepted events, biggest first.
fn tenants_by_size(store: &Store) -> Vec<String> {
    let mut sizes: BTreeMap<String, u64> = BTreeMap::new();
    for (_, partition) in store.partitions() {
        let state = partition.read();
        for (sym, tenant) in &state.tenants {
            let events: u64 = tenant
                .hours
                .values()
                .map(|c| c.failed.iter().chain(&c.succeeded).sum::<u64>())
                .sum();
            *sizes
                .entry(state.interner.resolve(*sym).to_owned())
                .or_insert(0) += events;
        }
    }
    let mut ordered: Vec<(String, u64)> = sizes.into_iter().collect();
    ordered.sort_by(|a, b| b.1.cmp(&a.1).then(a.0.cmp(&b.0)));
    ordered.into_iter().map(|(t, _)| t).collect()
}

pub fn run_ingest(
    lines: &[Vec<u8>],
    rounds: usize,
    threads: usize,
) -> Result<IngestReport, BenchError> {
    let now_ms = clock_for(lines)?;
    let limits = StoreLimits::default();
    let bytes: u64 = lines.iter().map(|l| l.len() as u64 + 1).sum();
    let events = lines.len() as u64;

    let single: Vec<&[u8]> = lines.iter().map(Vec::as_slice).collect();
    let started = Instant::now();
    let state = apply_all(&single, &limits, now_ms);
    let single_thread = throughput(1, events, bytes, started.elapsed());
    drop(state);

    let shares = partition_lines(lines, threads.max(1));
    let started = Instant::now();
    let states: Vec<PartitionState> = std::thread::scope(|scope| {
        let handles: Vec<_> = shares
            .iter()
            .map(|share| scope.spawn(|| apply_all(share, &limits, now_ms)))
            .collect();
        handles.into_iter().filter_map(|h| h.join().ok()).collect()
    });
    let all_threads = throughput(threads.max(1), events, bytes, started.elapsed());

    finish_report(
        states,
        now_ms,
        rounds,
        events,
        bytes,
        single_thread,
        Some(all_threads),
    )
}

/// Streams a file through one thread into one state per partition (split by tenant, as a
/// tenant-keyed topic would), holding only the state in memory: the figure for RSS.
pub fn run_ingest_stream(
    path: &Path,
    rounds: usize,
    partitions: usize,
) -> Result<IngestReport, BenchError> {
    let now_ms = clock_for(&[last_line(path)?])?;
    let limits = StoreLimits::default();
    let decode_limits = DecodeLimits {
        now_ms,
        max_future_ms: 5 * MINUTE_MS,
    };
    let mut states: Vec<PartitionState> = (0..partitions.max(1))
        .map(|_| PartitionState::new(&limits))
        .collect();
    let file = std::fs::File::open(path).map_err(io(path))?;
    let mut reader = BufReader::with_capacity(1 << 20, file);
    let mut line = Vec::with_capacity(1024);
    let (mut events, mut bytes) = (0u64, 0u64);
    let started = Instant::now();
    loop {
        line.clear();
        let read = reader.read_until(b'\n', &mut line).map_err(io(path))?;
        if read == 0 {
            break;
        }
        bytes += read as u64;
        let payload = line.strip_suffix(b"\n").unwrap_or(&line);
        let share = (xxhash_rust::xxh3::xxh3_64(tenant_of(payload)) % states.len() as u64) as usize;
        let state = &mut states[share];
        match decode(payload, decode_limits) {
            Ok(event) => {
                state.apply(&event, &limits, now_ms);
            }
            Err(_) => state.record_rejected(),
        }
        let offset = state.next_offset.unwrap_or(0);
        state.mark_applied(offset);
        events += 1;
    }
    let single_thread = throughput(1, events, bytes, started.elapsed());
    finish_report(states, now_ms, rounds, events, bytes, single_thread, None)
}

fn last_line(path: &Path) -> Result<Vec<u8>, BenchError> {
    use std::io::{Read, Seek, SeekFrom};
    let mut file = std::fs::File::open(path).map_err(io(path))?;
    let length = file.metadata().map_err(io(path))?.len();
    file.seek(SeekFrom::Start(length.saturating_sub(4096)))
        .map_err(io(path))?;
    let mut tail = Vec::new();
    file.read_to_end(&mut tail).map_err(io(path))?;
    let text = tail.strip_suffix(b"\n").unwrap_or(&tail);
    let start = text.iter().rposition(|b| *b == b'\n').map_or(0, |i| i + 1);
    Ok(text[start..].to_vec())
}

fn finish_report(
    states: Vec<PartitionState>,
    now_ms: i64,
    rounds: usize,
    events: u64,
    bytes: u64,
    single_thread: Throughput,
    all_threads: Option<Throughput>,
) -> Result<IngestReport, BenchError> {
    let limits = StoreLimits::default();
    // Measured before snapshot images come and go, so it reflects the counted state.
    let rss_bytes = crate::telemetry::resident_memory_bytes();
    let state_dir = tempfile_dir()?;
    let snapshots = SnapshotStore::new(&state_dir);
    let store = Store::new(limits);
    let keys: Vec<PartitionKey> = (0..states.len())
        .map(|p| PartitionKey::new("bench", p as i32))
        .collect();
    let state_bytes_estimate = states.iter().map(PartitionState::approx_bytes).sum();
    let groups = states.iter().map(|s| s.group_count() as u64).sum();

    // As the service does on revoke and shutdown: encode each partition, write all in parallel.
    let started = Instant::now();
    let images = states
        .iter()
        .map(checkpoint::encode)
        .collect::<Result<Vec<_>, _>>()?;
    let jobs: Vec<_> = keys
        .iter()
        .zip(&states)
        .zip(&images)
        .map(|((key, state), image)| (key, state.next_offset.unwrap_or(0), image.as_slice()))
        .collect();
    for result in snapshots.write_many(&jobs) {
        result?;
    }
    let snapshot_write_ms = started.elapsed().as_secs_f64() * 1000.0;
    let snapshot_bytes = images.iter().map(|i| i.len() as u64).sum();
    drop(jobs);
    drop(images);
    drop(states);

    // As the service does on assignment: one partition after another.
    let started = Instant::now();
    for key in keys {
        let (restored, _) = snapshots
            .load_newest(&key, &limits)?
            .ok_or_else(|| BenchError::Invalid("snapshot vanished".into()))?;
        store.attach(key, Arc::new(parking_lot::RwLock::new(restored)));
    }
    let snapshot_restore_ms = started.elapsed().as_secs_f64() * 1000.0;
    let _ = std::fs::remove_dir_all(&state_dir);

    let engine = QueryEngine::new(Arc::new(store), Arc::new(ManualClock::new(now_ms)));
    let tenants = tenants_by_size(engine.store());
    let mut queries = Vec::new();
    for tenant in [tenants.first(), tenants.last()].into_iter().flatten() {
        queries.extend(query_latencies(&engine, tenant, rounds));
    }
    Ok(IngestReport {
        events,
        input_bytes: bytes,
        single_thread,
        all_threads,
        rss_bytes,
        state_bytes_estimate,
        groups,
        snapshot_bytes,
        snapshot_write_ms,
        snapshot_restore_ms,
        queries,
    })
}

fn tempfile_dir() -> Result<PathBuf, BenchError> {
    let dir = std::env::temp_dir().join(format!("ih-bench-{}", std::process::id()));
    std::fs::create_dir_all(&dir).map_err(io(&dir))?;
    Ok(dir)
}

fn fmt_us(us: f64) -> String {
    if us >= 1000.0 {
        format!("{:.2} ms", us / 1000.0)
    } else {
        format!("{us:.0} µs")
    }
}

pub fn render_ingest(report: &IngestReport) -> String {
    let mut out = String::new();
    use std::fmt::Write as _;
    let _ = writeln!(
        out,
        "events: {} ({:.1} MB)",
        report.events,
        report.input_bytes as f64 / 1e6
    );
    for t in std::iter::once(&report.single_thread).chain(&report.all_threads) {
        let _ = writeln!(
            out,
            "decode+validate+dedup+aggregate, {} thread(s): {:.0} events/s, {:.0} MB/s ({:.2} s)",
            t.threads, t.events_per_sec, t.mb_per_sec, t.seconds
        );
    }
    let _ = writeln!(
        out,
        "rss: {:.0} MiB; state estimate: {:.0} MiB; failure groups: {}",
        report.rss_bytes as f64 / 1048576.0,
        report.state_bytes_estimate as f64 / 1048576.0,
        report.groups
    );
    let _ = writeln!(
        out,
        "snapshot: {:.1} MiB, write {:.0} ms, restore {:.0} ms",
        report.snapshot_bytes as f64 / 1048576.0,
        report.snapshot_write_ms,
        report.snapshot_restore_ms
    );
    let _ = writeln!(
        out,
        "{:<16} {:<12} {:>10} {:>10} {:>10}",
        "query", "tenant", "p50", "p99", "max"
    );
    for q in &report.queries {
        let _ = writeln!(
            out,
            "{:<16} {:<12} {:>10} {:>10} {:>10}",
            q.query,
            q.tenant,
            fmt_us(q.p50_us),
            fmt_us(q.p99_us),
            fmt_us(q.max_us)
        );
    }
    out
}

/// What `bench e2e` runs; also its command-line flags.
#[derive(Debug, Clone, Copy, clap::Args)]
pub struct E2eSpec {
    #[arg(long, default_value_t = 1_000_000)]
    pub events: u64,
    #[arg(long, default_value_t = 100)]
    pub tenants: u32,
    #[arg(long, default_value_t = 60)]
    pub days: u32,
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
        .create()
        .map_err(|e| BenchError::Invalid(format!("producer: {e}")))?;
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
        let mut record = BaseRecord::to(topic).key(key).payload(line.as_slice());
        loop {
            match producer.send(record) {
                Ok(()) => break,
                Err((_, back)) => {
                    record = back;
                    std::thread::sleep(Duration::from_millis(1));
                }
            }
        }
    }
    producer
        .flush(Duration::from_secs(60))
        .map_err(|e| BenchError::Invalid(format!("flush: {e}")))
}

async fn rpc_load(
    addr: std::net::SocketAddr,
    tenant: String,
    rounds_per_sec: f64,
    stop: tokio_util::sync::CancellationToken,
) -> Vec<(&'static str, f64)> {
    use crate::proto::{self, integration_health_client::IntegrationHealthClient};
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
        let started = Instant::now();
        let _ = api
            .get_overview(proto::GetOverviewRequest {
                tenant_id: tenant_id.clone(),
                ..Default::default()
            })
            .await;
        samples.push(("overview", started.elapsed().as_secs_f64() * 1e6));
        let started = Instant::now();
        let _ = api
            .get_percentage_change(proto::GetPercentageChangeRequest {
                tenant_id: tenant_id.clone(),
                ..Default::default()
            })
            .await;
        samples.push(("change_1d", started.elapsed().as_secs_f64() * 1e6));
        let started = Instant::now();
        let _ = api
            .get_error_breakdown(proto::GetErrorBreakdownRequest {
                tenant_id: tenant_id.clone(),
                ..Default::default()
            })
            .await;
        samples.push(("errors", started.elapsed().as_secs_f64() * 1e6));
        let started = Instant::now();
        let _ = api
            .get_trends(proto::GetTrendsRequest {
                tenant_id: tenant_id.clone(),
                ..Default::default()
            })
            .await;
        samples.push(("trends_day", started.elapsed().as_secs_f64() * 1e6));
        let started = Instant::now();
        let page = api
            .list_failures(proto::ListFailuresRequest {
                tenant_id: tenant_id.clone(),
                ..Default::default()
            })
            .await;
        samples.push(("failures", started.elapsed().as_secs_f64() * 1e6));
        if let Some(row) = page
            .ok()
            .and_then(|p| p.into_inner().failures.into_iter().next())
        {
            let started = Instant::now();
            let _ = api
                .get_failure_details(proto::GetFailureDetailsRequest {
                    tenant_id,
                    failure_id: row.failure_id,
                    range: None,
                })
                .await;
            samples.push(("failure_details", started.elapsed().as_secs_f64() * 1e6));
        }
    }
    samples
}

fn total_lag(engine: &QueryEngine) -> i64 {
    engine
        .ingest_status()
        .partitions
        .iter()
        .map(|p| p.lag)
        .sum()
}

/// Publishes through the mock cluster while the service consumes and clients query it, then
/// restarts the service from its snapshots.
pub async fn run_e2e(spec: E2eSpec) -> Result<E2eReport, BenchError> {
    use crate::clock::{Clock, SystemClock};
    use crate::config::Config;
    use crate::embedded::EmbeddedKafka;
    use tokio_util::sync::CancellationToken;

    let kafka = EmbeddedKafka::start(1).map_err(|e| BenchError::Invalid(e.to_string()))?;
    let topic = "bench-events";
    kafka
        .create_topic(topic, spec.partitions)
        .map_err(|e| BenchError::Invalid(e.to_string()))?;
    kafka
        .create_topic("bench-events.dlq", 1)
        .map_err(|e| BenchError::Invalid(e.to_string()))?;
    let bootstrap = kafka.bootstrap_servers();
    let state_dir = tempfile_dir()?;
    let config = Config {
        brokers: bootstrap.clone(),
        topic: topic.into(),
        group: "bench".into(),
        grpc_addr: std::net::SocketAddr::from(([127, 0, 0, 1], 0)),
        state_dir: Some(state_dir.clone()),
        snapshot_interval_ms: 1_000,
        kafka: [("fetch.wait.max.ms", "10"), ("session.timeout.ms", "6000")]
            .into_iter()
            .map(|(k, v)| (k.to_owned(), v.to_owned()))
            .collect(),
        ..Config::default()
    };
    let clock: crate::clock::SharedClock = Arc::new(SystemClock);
    let lines = generate_lines(GenSpec {
        events: spec.events,
        tenants: spec.tenants,
        days: spec.days,
        seed: 3,
        end_ms: SystemClock.now_ms(),
    });
    let stop = CancellationToken::new();
    let service = crate::server::start(&config, clock.clone(), stop.clone())
        .await
        .map_err(|e| BenchError::Invalid(e.to_string()))?;
    let store = service.store.clone();
    let engine = service.engine.clone();

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
        lag.push((started.elapsed().as_secs_f64(), total_lag(&engine)));
        if started.elapsed() > Duration::from_secs(600) {
            return Err(BenchError::Invalid(format!(
                "only {} of {total} events consumed after 10 minutes",
                store.totals().seen()
            )));
        }
    }
    let seconds = started.elapsed().as_secs_f64();
    publisher
        .await
        .map_err(|e| BenchError::Invalid(e.to_string()))??;
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
    while !engine
        .ingest_status()
        .partitions
        .iter()
        .all(|p| p.snapshot.is_some_and(|s| s.next_offset == p.next_offset))
    {
        if Instant::now() > deadline {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let status = engine.ingest_status();
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
    service
        .wait()
        .await
        .map_err(|e| BenchError::Invalid(e.to_string()))?;

    let restart = Instant::now();
    let stop = CancellationToken::new();
    let service = crate::server::start(&config, clock, stop.clone())
        .await
        .map_err(|e| BenchError::Invalid(e.to_string()))?;
    let restart_to_grpc_ms = restart.elapsed().as_secs_f64() * 1000.0;
    while service.store.totals().seen() < total {
        if restart.elapsed() > Duration::from_secs(120) {
            return Err(BenchError::Invalid(
                "restart did not restore all partitions".into(),
            ));
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let restart_to_restored_ms = restart.elapsed().as_secs_f64() * 1000.0;
    stop.cancel();
    service
        .wait()
        .await
        .map_err(|e| BenchError::Invalid(e.to_string()))?;
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

pub fn render_e2e(report: &E2eReport) -> String {
    use std::fmt::Write as _;
    let mut out = String::new();
    let _ = writeln!(
        out,
        "consumed {} events in {:.2} s: {:.0} events/s sustained",
        report.events, report.seconds, report.events_per_sec
    );
    let lag: Vec<String> = report
        .lag
        .iter()
        .step_by((report.lag.len() / 12).max(1))
        .map(|(t, l)| format!("{t:.1}s:{l}"))
        .collect();
    let _ = writeln!(
        out,
        "lag (messages) over time: {}; max {}",
        lag.join(" "),
        report.max_lag
    );
    let _ = writeln!(
        out,
        "{} RPCs under load over gRPC loopback:",
        report.rpc_calls
    );
    let _ = writeln!(
        out,
        "{:<16} {:>10} {:>10} {:>10}",
        "rpc", "p50", "p99", "max"
    );
    for q in &report.rpc {
        let _ = writeln!(
            out,
            "{:<16} {:>10} {:>10} {:>10}",
            q.query,
            fmt_us(q.p50_us),
            fmt_us(q.p99_us),
            fmt_us(q.max_us)
        );
    }
    let _ = writeln!(
        out,
        "snapshots: {:.1} MiB total; slowest encode (ingest pause) {:.1} ms, slowest write {:.1} ms",
        report.snapshot_bytes as f64 / 1048576.0,
        report.snapshot_encode_ms_max,
        report.snapshot_write_ms_max
    );
    let _ = writeln!(
        out,
        "restart: gRPC serving after {:.0} ms; all partitions restored and caught up after {:.0} ms",
        report.restart_to_grpc_ms, report.restart_to_restored_ms
    );
    out
}
