//! Criterion benches for the hot path: decode, decode + aggregate, and each dashboard query.
//! Run with `cargo bench`; quote medians, the machine is noisy.

use std::sync::Arc;

use criterion::{black_box, criterion_group, criterion_main, BatchSize, Criterion, Throughput};
use integration_health::clock::ManualClock;
use integration_health::event::IntegrationType;
use integration_health::event::{decode, DecodeLimits};
use integration_health::query::{
    ClassFilter, FailureOrder, Granularity, ListFailuresRequest, QueryEngine, TypeFilter,
};
use integration_health::store::{Dedup, PartitionKey, PartitionState, Store, StoreLimits, DAY_MS};
use integration_health::testkit::{generate_lines, GenSpec};
use parking_lot::RwLock;

const END_MS: i64 = 1_781_526_896_789;

fn lines(events: u64) -> Vec<Vec<u8>> {
    generate_lines(GenSpec {
        events,
        tenants: 100,
        days: 60,
        seed: 7,
        end_ms: END_MS,
    })
}

fn limits() -> DecodeLimits {
    DecodeLimits::at(END_MS + 60_000)
}

fn ingest(lines: &[Vec<u8>]) -> PartitionState {
    let store_limits = StoreLimits::default();
    let mut state = PartitionState::new(&store_limits);
    for (offset, line) in lines.iter().enumerate() {
        if let Ok(event) = decode(line, limits()) {
            let _ = state.apply(&event, &store_limits, END_MS + 60_000);
        }
        state.mark_applied(offset as i64);
    }
    state
}

fn bench_ingest(c: &mut Criterion) {
    let events = lines(20_000);
    let mut group = c.benchmark_group("ingest");
    group.throughput(Throughput::Elements(events.len() as u64));
    group.bench_function("decode", |b| {
        b.iter(|| {
            for line in &events {
                black_box(decode(line, limits()).is_ok());
            }
        })
    });
    group.bench_function("decode_and_aggregate", |b| {
        b.iter_batched(
            || (),
            |_| black_box(ingest(&events)),
            BatchSize::PerIteration,
        )
    });
    group.finish();
}

fn bench_queries(c: &mut Criterion) {
    let store = Store::new(StoreLimits::default());
    store.attach(
        PartitionKey::new("bench", 0),
        Arc::new(RwLock::new(ingest(&lines(300_000)))),
    );
    let engine = QueryEngine::new(Arc::new(store), Arc::new(ManualClock::new(END_MS + 60_000)));
    let tenant = "tenant-0000";
    let all = TypeFilter::all();
    let failures = ListFailuresRequest::first_page(tenant, 50);
    let top = engine
        .list_failures(&failures)
        .ok()
        .and_then(|p| p.failures.into_iter().next());
    let mut group = c.benchmark_group("query_largest_tenant");
    group.bench_function("overview", |b| {
        b.iter(|| black_box(engine.overview(tenant, None, all)))
    });
    group.bench_function("percentage_change_1d", |b| {
        b.iter(|| black_box(engine.percentage_change(tenant, Some(DAY_MS), None, all, false)))
    });
    group.bench_function("error_breakdown", |b| {
        b.iter(|| black_box(engine.error_breakdown(tenant, None, all)))
    });
    group.bench_function("trends_day_berlin", |b| {
        b.iter(|| {
            black_box(engine.trends(
                tenant,
                None,
                all,
                ClassFilter::all(),
                Granularity::Day,
                "Europe/Berlin",
            ))
        })
    });
    group.bench_function("list_failures", |b| {
        b.iter(|| black_box(engine.list_failures(&failures)))
    });
    let by_last_seen = ListFailuresRequest {
        order: FailureOrder::LastSeenDesc,
        ..failures.clone()
    };
    group.bench_function("list_failures_last_seen", |b| {
        b.iter(|| black_box(engine.list_failures(&by_last_seen)))
    });
    // A type filter takes the full ranking rather than the kept candidates.
    let one_type = ListFailuresRequest {
        types: TypeFilter::from_types(&[IntegrationType::OutboundWebhook]),
        ..failures.clone()
    };
    group.bench_function("list_failures_one_type", |b| {
        b.iter(|| black_box(engine.list_failures(&one_type)))
    });
    if let Some(top) = top {
        group.bench_function("failure_details", |b| {
            b.iter(|| black_box(engine.failure_details(tenant, &top.failure_id, None)))
        });
    }
    group.finish();
}

/// Inserting into a full window of 1M keys: every insert also forgets the oldest key.
fn bench_dedup(c: &mut Criterion) {
    let mut dedup = Dedup::new(1_000_000);
    let mut next = 0_u64;
    let mut key = || {
        next += 1;
        xxhash_rust::xxh3::xxh3_64(&next.to_le_bytes())
    };
    for _ in 0..1_000_000 {
        dedup.insert(key());
    }
    let mut group = c.benchmark_group("dedup");
    group.throughput(Throughput::Elements(10_000));
    group.bench_function("insert_full_window_1m", |b| {
        b.iter(|| {
            for _ in 0..10_000 {
                black_box(dedup.insert(key()));
            }
        })
    });
    group.finish();
}

criterion_group!(benches, bench_ingest, bench_queries, bench_dedup);
criterion_main!(benches);
