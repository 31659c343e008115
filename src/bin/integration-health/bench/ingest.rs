//! `bench ingest`: decode, validate, dedup and aggregate in-process on one and on all threads,
//! snapshot and restore the state, then time every dashboard query.

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::sync::Arc;
use std::time::Instant;

use integration_health::clock::ManualClock;
use integration_health::event::{decode, decode_batch, DecodeLimits};
use integration_health::ingest::LOCK_CHUNK;
use integration_health::ops::resident_memory_bytes;
use integration_health::query::{
    ClassFilter, Granularity, ListFailuresRequest, QueryEngine, TimeRange, TypeFilter,
};
use integration_health::snapshot::{self, SnapshotFiles, Snapshots};
use integration_health::store::{
    KeyedEvent, PartitionKey, PartitionState, StateBytes, Store, StoreLimits, DAY_MS, MINUTE_MS,
};
use serde::Serialize;

use super::{
    after_key, io, latency, tempfile_dir, tenant_of, throughput, time_us, BenchError, Latency,
    Throughput,
};

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
    let last = lines.last().ok_or(BenchError::NoEvents)?;
    let limits = DecodeLimits::at(i64::MAX);
    let event = decode(last, limits).map_err(BenchError::LastEvent)?;
    Ok(event.occurred_at_ms + MINUTE_MS)
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
    pub state_bytes: StateBytes,
    pub groups: u64,
    pub snapshot_bytes: u64,
    pub snapshot_write_ms: f64,
    pub snapshot_restore_ms: f64,
    pub queries: Vec<Latency>,
}

/// Decodes and counts one line, or counts it as rejected, as the owner thread does.
fn apply_line(state: &mut PartitionState, line: &[u8], decode: DecodeLimits, limits: &StoreLimits) {
    let applied = integration_health::event::decode(line, decode)
        .and_then(|event| state.apply(&event, limits, decode.now_ms));
    if applied.is_err() {
        state.record_rejected();
    }
}

/// Applies every line to a partition state, as the owner thread does: a chunk is decoded, then
/// applied.
fn apply_all(lines: &[&[u8]], limits: &StoreLimits, now_ms: i64) -> PartitionState {
    let mut state = PartitionState::new(limits);
    let decode_limits = DecodeLimits::at(now_ms);
    let mut offset = 0;
    for chunk in lines.chunks(LOCK_CHUNK) {
        let events = decode_batch(chunk, decode_limits);
        let keyed = KeyedEvent::chunk(&events);
        for (i, event) in keyed.iter().enumerate() {
            state.prefetch_ahead(&keyed, i);
            let applied = match event {
                Ok(event) => state.apply_keyed(event, limits, now_ms).is_ok(),
                Err(_) => false,
            };
            if !applied {
                state.record_rejected();
            }
            state.mark_applied(offset);
            offset += 1;
        }
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

/// The dashboard's queries, each run `rounds` times for one tenant.
pub fn query_latencies(
    engine: &QueryEngine,
    tenant: &str,
    rounds: usize,
    now_ms: i64,
) -> Vec<Latency> {
    type Query<'a> = (&'static str, Box<dyn Fn() + 'a>);
    let all = TypeFilter::all();
    let every_class = ClassFilter::all();
    let top_failure = engine
        .list_failures(&ListFailuresRequest::first_page(tenant, 1))
        .ok()
        .and_then(|p| p.failures.into_iter().next())
        .map(|row| row.failure_id);
    let integrations = integration_health::query::ListIntegrationsRequest {
        tenant_id: tenant.to_owned(),
        classes: Default::default(),
        range: None,
        types: all,
        order: integration_health::query::IntegrationOrder::FailuresDesc,
        page_size: 50,
        page_token: None,
    };
    let top_integration = engine
        .list_integrations(&integrations)
        .ok()
        .and_then(|p| p.ids().next().map(|(kind, id)| (kind, id.to_owned())));
    let queries: Vec<Query<'_>> = vec![
        (
            "overview",
            Box::new(|| drop(engine.overview(tenant, None, all))),
        ),
        (
            "change_1d",
            Box::new(|| drop(engine.percentage_change(tenant, Some(DAY_MS), None, all, false))),
        ),
        (
            "change_30d",
            Box::new(|| {
                drop(engine.percentage_change(tenant, Some(30 * DAY_MS), None, all, false))
            }),
        ),
        (
            "drivers_1d",
            Box::new(|| drop(engine.percentage_change(tenant, Some(DAY_MS), None, all, true))),
        ),
        (
            "drivers_30d",
            Box::new(|| drop(engine.percentage_change(tenant, Some(30 * DAY_MS), None, all, true))),
        ),
        (
            "integrations",
            Box::new(|| drop(engine.list_integrations(&integrations))),
        ),
        (
            "integration_health",
            Box::new(move || {
                if let Some((kind, id)) = &top_integration {
                    let day = Granularity::Day;
                    drop(engine.integration_health(tenant, Some(*kind), id, None, day, "UTC"))
                }
            }),
        ),
        (
            "errors",
            Box::new(|| drop(engine.error_breakdown(tenant, None, all))),
        ),
        (
            "trends_day",
            Box::new(|| {
                drop(engine.trends(
                    tenant,
                    None,
                    all,
                    every_class,
                    Granularity::Day,
                    "Europe/Berlin",
                ))
            }),
        ),
        (
            "trends_year",
            Box::new(|| {
                let year = TimeRange::new(now_ms - 365 * DAY_MS, now_ms);
                drop(engine.trends(
                    tenant,
                    Some(year),
                    all,
                    every_class,
                    Granularity::Day,
                    "UTC",
                ))
            }),
        ),
        (
            "trends_hour",
            Box::new(|| {
                drop(engine.trends(tenant, None, all, every_class, Granularity::Hour, "UTC"))
            }),
        ),
        (
            "failures",
            Box::new(|| drop(engine.list_failures(&ListFailuresRequest::first_page(tenant, 50)))),
        ),
        (
            "failures_last_seen",
            Box::new(|| {
                let request = ListFailuresRequest {
                    order: integration_health::query::FailureOrder::LastSeenDesc,
                    ..ListFailuresRequest::first_page(tenant, 50)
                };
                drop(engine.list_failures(&request))
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
    let sizes = store.events_by_tenant();
    let mut ordered: Vec<(String, u64)> = sizes.into_iter().collect();
    ordered.sort_by(|a, b| b.1.cmp(&a.1).then(a.0.cmp(&b.0)));
    ordered.into_iter().map(|(t, _)| t).collect()
}

pub fn run_ingest(
    lines: &[Vec<u8>],
    rounds: usize,
    threads: usize,
    limits: StoreLimits,
) -> Result<IngestReport, BenchError> {
    let now_ms = clock_for(lines)?;
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

    let ingested = Ingested {
        events,
        bytes,
        single_thread,
        all_threads: Some(all_threads),
    };
    finish_report(states, limits, now_ms, rounds, ingested)
}

/// Streams a file through one thread into one state per partition (split by tenant, as a
/// tenant-keyed topic would), holding only the state in memory: the figure for RSS.
pub fn run_ingest_stream(
    path: &Path,
    rounds: usize,
    partitions: usize,
    limits: StoreLimits,
) -> Result<IngestReport, BenchError> {
    let now_ms = clock_for(&[last_line(path)?])?;
    let decode_limits = DecodeLimits::at(now_ms);
    let mut states: Vec<PartitionState> = (0..partitions.max(1))
        .map(|_| PartitionState::new(&limits))
        .collect();
    let file = std::fs::File::open(path).map_err(io(path))?;
    let mut reader = BufReader::with_capacity(1 << 20, file);
    let mut line = Vec::with_capacity(1024);
    let (mut events, mut bytes) = (0u64, 0u64);
    // Event time stands in for the clock of upkeep: the service rolls each finished day and
    // drops what left its tier as time passes, so the state measured is the one it keeps.
    let mut next_upkeep: Option<i64> = None;
    let started = Instant::now();
    loop {
        line.clear();
        let read = reader.read_until(b'\n', &mut line).map_err(io(path))?;
        if read == 0 {
            break;
        }
        bytes += read as u64;
        let payload = line.strip_suffix(b"\n").unwrap_or(&line);
        if let Some(at) = occurred_at(payload) {
            let due = *next_upkeep.get_or_insert(at + DAY_MS);
            if at >= due {
                states.iter_mut().for_each(|s| s.evict(&limits, at));
                next_upkeep = Some(at + DAY_MS);
            }
        }
        let share = (xxhash_rust::xxh3::xxh3_64(tenant_of(payload)) % states.len() as u64) as usize;
        let state = &mut states[share];
        apply_line(state, payload, decode_limits, &limits);
        let offset = state.next_offset().unwrap_or(0);
        state.mark_applied(offset);
        events += 1;
    }
    states.iter_mut().for_each(|s| s.evict(&limits, now_ms));
    let single_thread = throughput(1, events, bytes, started.elapsed());
    let ingested = Ingested {
        events,
        bytes,
        single_thread,
        all_threads: None,
    };
    finish_report(states, limits, now_ms, rounds, ingested)
}

/// The `occurred_at` of a generated line (epoch milliseconds), without decoding the rest.
fn occurred_at(line: &[u8]) -> Option<i64> {
    let rest = after_key(line, b"\"occurred_at\":")?;
    let digits = rest.iter().take_while(|b| b.is_ascii_digit()).count();
    std::str::from_utf8(&rest[..digits]).ok()?.parse().ok()
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

/// What the ingest part of a run measured.
struct Ingested {
    events: u64,
    bytes: u64,
    single_thread: Throughput,
    all_threads: Option<Throughput>,
}

fn finish_report(
    states: Vec<PartitionState>,
    limits: StoreLimits,
    now_ms: i64,
    rounds: usize,
    ingested: Ingested,
) -> Result<IngestReport, BenchError> {
    let Ingested {
        events,
        bytes,
        single_thread,
        all_threads,
    } = ingested;
    // Measured before snapshot images come and go, so it reflects the counted state.
    let rss_bytes = resident_memory_bytes();
    let state_dir = tempfile_dir()?;
    let snapshots = Snapshots::Files(SnapshotFiles::new(&state_dir));
    let store = Store::new(limits);
    let keys: Vec<PartitionKey> = (0..states.len())
        .map(|p| PartitionKey::new("bench", p as i32))
        .collect();
    let mut state_bytes = StateBytes::default();
    for state in &states {
        state_bytes.add(&state.approx_bytes());
    }
    let state_bytes_estimate = state_bytes.total();
    let groups = state_bytes.group_count;

    // As the service does on revoke and shutdown: encode each partition, write all in parallel.
    let started = Instant::now();
    let images = states
        .iter()
        .map(snapshot::encode)
        .collect::<Result<Vec<_>, _>>()?;
    let jobs: Vec<_> = keys
        .iter()
        .zip(&states)
        .zip(&images)
        .map(|((key, state), image)| (key, state.next_offset().unwrap_or(0), image.as_slice()))
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
            .ok_or(BenchError::SnapshotVanished)?;
        store.attach(key, Arc::new(parking_lot::RwLock::new(restored)));
    }
    let snapshot_restore_ms = started.elapsed().as_secs_f64() * 1000.0;
    // The service runs an eviction round at start and every minute after.
    store.evict(now_ms);
    let _ = std::fs::remove_dir_all(&state_dir);

    let engine = QueryEngine::new(Arc::new(store), Arc::new(ManualClock::new(now_ms)));
    let tenants = tenants_by_size(engine.store());
    let mut queries = Vec::new();
    for tenant in [tenants.first(), tenants.last()].into_iter().flatten() {
        queries.extend(query_latencies(&engine, tenant, rounds, now_ms));
    }
    Ok(IngestReport {
        events,
        input_bytes: bytes,
        single_thread,
        all_threads,
        rss_bytes,
        state_bytes_estimate,
        state_bytes,
        groups,
        snapshot_bytes,
        snapshot_write_ms,
        snapshot_restore_ms,
        queries,
    })
}
