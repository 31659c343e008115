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
use crate::query::{
    FailureFilter, FailureOrder, Granularity, ListFailuresRequest, QueryEngine, TypeFilter,
};
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
    pub all_threads: Throughput,
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

pub fn rss_bytes() -> u64 {
    let Ok(status) = std::fs::read_to_string("/proc/self/status") else {
        return 0;
    };
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
        .map_or(0, |kb| kb * 1024)
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
        .list_failures(&ListFailuresRequest {
            tenant_id: tenant.to_owned(),
            range: None,
            types: all,
            filter: FailureFilter::default(),
            page_size: 1,
            page_token: None,
            order: FailureOrder::TotalErrorsDesc,
        })
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
            Box::new(|| {
                drop(engine.list_failures(&ListFailuresRequest {
                    tenant_id: tenant.to_owned(),
                    range: None,
                    types: all,
                    filter: FailureFilter::default(),
                    page_size: 50,
                    page_token: None,
                    order: FailureOrder::TotalErrorsDesc,
                }))
            }),
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

    let state_dir = tempfile_dir()?;
    let snapshots = SnapshotStore::new(&state_dir);
    let store = Store::new(limits);
    let mut snapshot_bytes = 0;
    let mut write_ms = 0.0;
    let mut restore_ms = 0.0;
    let mut state_bytes_estimate = 0;
    let mut groups = 0;
    for (partition, state) in states.into_iter().enumerate() {
        let key = PartitionKey::new("bench", partition as i32);
        let started = Instant::now();
        let image = checkpoint::encode(&state)?;
        snapshots.write(&key, state.next_offset.unwrap_or(0), &image)?;
        write_ms += started.elapsed().as_secs_f64() * 1000.0;
        snapshot_bytes += image.len() as u64;
        state_bytes_estimate += state.approx_bytes();
        groups += state.group_count() as u64;
        drop(state);
        let started = Instant::now();
        let (restored, _) = snapshots
            .load_newest(&key, &limits)?
            .ok_or_else(|| BenchError::Invalid("snapshot vanished".into()))?;
        restore_ms += started.elapsed().as_secs_f64() * 1000.0;
        store.attach(key, Arc::new(parking_lot::RwLock::new(restored)));
    }
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
        rss_bytes: rss_bytes(),
        state_bytes_estimate,
        groups,
        snapshot_bytes,
        snapshot_write_ms: write_ms,
        snapshot_restore_ms: restore_ms,
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
    for t in [&report.single_thread, &report.all_threads] {
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
