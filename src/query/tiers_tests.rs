//! Tiers answer as if nothing had been rolled up: every query over a range gives, from a store
//! that rolls hours into days and drops old hours, what a store that kept every hour gives for
//! the same effective range, which is as fine as the range allows.

use std::borrow::Cow;
use std::sync::Arc;

use proptest::prelude::*;

use super::*;
use crate::catalog::ErrorClass;
use crate::clock::ManualClock;
use crate::event::{Event, IntegrationType, Outcome};
use crate::store::{PartitionKey, Store, StoreLimits, DAY_MS, HOUR_MS, MINUTE_MS};

/// Not on a day boundary, so today's hours are not rolled yet.
const NOW: i64 = 1_767_225_600_000 + 7 * HOUR_MS + 30 * MINUTE_MS;
const PARTITIONS: i32 = 2;

/// (partition, integration, type, failed?, code, minutes ago, latency, arrives late?)
type Spec = (i32, u8, u8, bool, u8, i64, u16, bool);

fn event(n: usize, spec: &Spec) -> Event<'static> {
    let (_, integration, kind, failed, code, ago, latency, _) = *spec;
    let outcome = match failed {
        true => Outcome::Failure,
        false => Outcome::Success,
    };
    let kind = IntegrationType::ALL[usize::from(kind) % IntegrationType::COUNT];
    let id = format!("int-{integration}");
    Event {
        status_code: failed.then_some([400, 429, 500, 503][usize::from(code) % 4]),
        integration_name: Cow::Owned(format!("Integration {integration}")),
        latency_ms: (latency > 0).then_some(f64::from(latency)),
        ..Event::bare(
            format!("e{n}"),
            "acme",
            kind,
            id,
            outcome,
            NOW - ago * MINUTE_MS,
        )
    }
}

/// The limits under test: hours of integrations and groups for two weeks only.
fn tiered_limits() -> StoreLimits {
    StoreLimits {
        detail_hour_retention_ms: 14 * DAY_MS,
        ..StoreLimits::default()
    }
}

/// A store with tiers, upkept twice while events arrive, and one that keeps
/// every hour and is never upkept, so it reads hours alone.
fn engines(specs: &[Spec]) -> (QueryEngine, QueryEngine) {
    let tiered = Arc::new(Store::new(tiered_limits()));
    let full = Arc::new(Store::new(StoreLimits::keeping(401 * DAY_MS)));
    // Some events before the first upkeep, some between the two, some after the last: late
    // ones land in hours already rolled, or inside kept windows.
    let phase = |n: usize, spec: &Spec| if spec.7 { 1 + n % 2 } else { 0 };
    for round in [0, 1, 2] {
        let batch = specs
            .iter()
            .enumerate()
            .filter(|(n, s)| phase(*n, s) == round);
        for (n, spec) in batch {
            for store in [&tiered, &full] {
                let partition = store.get_or_create(&PartitionKey::new("t", spec.0));
                let _ = partition
                    .write()
                    .apply(&event(n, spec), store.limits(), NOW);
            }
        }
        if round < 2 {
            tiered.evict(NOW);
        }
    }
    let clock = Arc::new(ManualClock::new(NOW));
    (
        QueryEngine::new(tiered, clock.clone()),
        QueryEngine::new(full, clock),
    )
}

fn spec() -> impl Strategy<Value = Spec> {
    (
        0..PARTITIONS,
        0_u8..4,
        0_u8..2,
        any::<bool>(),
        0_u8..4,
        // Up to 398 days back: inside the day tier, with room for a day-aligned start.
        0_i64..(398 * 24 * 60),
        0_u16..400,
        any::<bool>(),
    )
}

fn range(start_hours_ago: i64, hours: i64) -> Option<TimeRange> {
    let start_ms = NOW - start_hours_ago * HOUR_MS;
    Some(TimeRange {
        start_ms,
        end_ms: start_ms + hours.max(1) * HOUR_MS,
    })
}

/// Events in `range`, counted from the specs alone: (failed, succeeded).
fn counted(specs: &[Spec], range: TimeRange) -> (u64, u64) {
    let inside = |s: &&Spec| (range.start_ms..range.end_ms).contains(&(NOW - s.5 * MINUTE_MS));
    let failed = specs.iter().filter(inside).filter(|s| s.3).count() as u64;
    let all = specs.iter().filter(inside).count() as u64;
    (failed, all - failed)
}

/// Failures in `range` per class, counted from the specs alone: 400 is the request's, 429 a
/// rate limit, 500 and 503 the provider's.
fn counted_classes(specs: &[Spec], range: TimeRange) -> [(ErrorClass, u64); 5] {
    let mut classes = ErrorClass::ALL.map(|c| (c, 0));
    let inside = |s: &&Spec| (range.start_ms..range.end_ms).contains(&(NOW - s.5 * MINUTE_MS));
    for spec in specs.iter().filter(inside).filter(|s| s.3) {
        let class = match spec.4 % 4 {
            0 => ErrorClass::Client,
            1 => ErrorClass::RateLimited,
            _ => ErrorClass::ProviderUnavailable,
        };
        classes[ErrorClass::ALL
            .iter()
            .position(|c| *c == class)
            .unwrap_or(0)]
        .1 += 1;
    }
    classes
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(128))]

    #[test]
    fn tiers_answer_like_every_hour_kept(
        specs in proptest::collection::vec(spec(), 1..150),
        (start, hours) in (0_i64..(400 * 24), 1_i64..(400 * 24)),
        period_days in 1_i64..200,
    ) {
        let (tiered, full) = engines(&specs);
        let asked = range(start, hours);
        let all = TypeFilter::all();
        let every_class = ClassFilter::all();

        let overview = tiered.overview("acme", asked, all).map_err(fail)?;
        let served = Some(overview.effective_range);
        let mut expected = upto(&full, served).overview("acme", served, all).map_err(fail)?;
        expected.resolution = overview.resolution;
        prop_assert_eq!(&overview, &expected);
        let failed: u64 = overview.types.iter().map(|t| t.failed).sum();
        let succeeded: u64 = overview.types.iter().map(|t| t.succeeded).sum();
        prop_assert_eq!((failed, succeeded), counted(&specs, overview.effective_range));
        prop_assert_eq!(overview.classes, counted_classes(&specs, overview.effective_range));

        let errors = tiered.error_breakdown("acme", asked, all).map_err(fail)?;
        let served = Some(errors.effective_range);
        prop_assert_eq!(errors.errors, upto(&full, served).error_breakdown("acme", served, all).map_err(fail)?.errors);

        for granularity in [Granularity::Day, Granularity::Hour] {
            let trend = tiered.trends("acme", asked, all, every_class, granularity, "").map_err(fail)?;
            // Each class's trend counts its own failures: together, every failure once.
            let mut summed = trend.series.clone();
            summed.iter_mut().flat_map(|s| &mut s.points).for_each(|p| p.1 = 0);
            for class in ErrorClass::ALL {
                let only = ClassFilter::from_classes(&[class]);
                let part = tiered.trends("acme", asked, all, only, granularity, "").map_err(fail)?;
                prop_assert_eq!(part.effective_range, trend.effective_range);
                for (sum, series) in summed.iter_mut().zip(&part.series) {
                    for (slot, point) in sum.points.iter_mut().zip(&series.points) {
                        slot.1 += point.1;
                    }
                }
            }
            prop_assert_eq!(&summed, &trend.series);
            let served = trend.effective_range;
            if served.start_ms == served.end_ms {
                // An hourly series of a range wholly before the hour tier has no points.
                prop_assert!(trend.series.iter().all(|s| s.points.is_empty()));
                continue;
            }
            let served = Some(served);
            let full = upto(&full, served);
            let expected = full.trends("acme", served, all, every_class, granularity, "").map_err(fail)?;
            prop_assert_eq!(trend.series, expected.series);
        }

        let request = |range| ListIntegrationsRequest {
            tenant_id: "acme".into(),
            classes: Default::default(),
            range,
            types: all,
            order: IntegrationOrder::NameAsc,
            page_size: 1000,
            page_token: None,
        };
        // The asked range, and the default one, which the kept latency windows serve.
        for asked in [asked, None] {
            let integrations = tiered.list_integrations(&request(asked)).map_err(fail)?;
            let served = Some(integrations.effective_range);
            let full = upto(&full, served);
            let expected = full.list_integrations(&request(served)).map_err(fail)?;
            prop_assert_eq!(&integrations.integrations, &expected.integrations);
            let provider = ClassFilter::from_classes(&[ErrorClass::ProviderUnavailable]);
            let by_class = ListIntegrationsRequest { classes: provider, ..request(asked) };
            let listed = tiered.list_integrations(&by_class).map_err(fail)?;
            let by_class = ListIntegrationsRequest { classes: provider, ..request(served) };
            prop_assert_eq!(listed.integrations, full.list_integrations(&by_class).map_err(fail)?.integrations);
            // One integration's series, codes and top groups by UTC day, sketches included.
            for row in integrations.integrations.iter().take(3) {
                let health = |engine: &QueryEngine, range| {
                    let (t, id) = (Some(row.integration_type), &row.integration_id);
                    engine.integration_health("acme", t, id, range, Granularity::Day, "UTC")
                };
                let answer = health(&tiered, asked).map_err(fail)?;
                let served = Some(answer.effective_range);
                let mut expected = health(&upto(&full, served), served).map_err(fail)?;
                expected.resolution = answer.resolution;
                prop_assert_eq!(answer, expected);
            }
        }

        let failures = |engine: &QueryEngine, range| {
            engine.list_failures(&ListFailuresRequest {
                range,
                ..ListFailuresRequest::first_page("acme", 1000)
            })
        };
        let table = failures(&tiered, asked).map_err(fail)?;
        let served = Some(table.effective_range);
        let expected = failures(&upto(&full, served), served).map_err(fail)?;
        prop_assert_eq!(&table.failures, &expected.failures);
        for row in &table.failures {
            let details = tiered.failure_details("acme", &row.failure_id, served).map_err(fail)?;
            let full = upto(&full, served);
            let expected = full.failure_details("acme", &row.failure_id, served).map_err(fail)?;
            prop_assert_eq!(&details.trend, &coarser(&expected.trend, &details.trend));
        }

        let period = Some(period_days * DAY_MS);
        let change = tiered.percentage_change("acme", period, None, all, true).map_err(fail)?;
        let current = change.current_range;
        let length = Some(current.end_ms - current.start_ms);
        let full = upto(&full, Some(current));
        let end = Some(current.end_ms);
        let mut expected = full.percentage_change("acme", length, end, all, true).map_err(fail)?;
        expected.resolution = change.resolution;
        prop_assert_eq!(change, expected);
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]

    /// Inside the minute window the overview reads minutes at either end of the range and whole
    /// hours between; its classes count the same events as its totals.
    #[test]
    fn overview_classes_count_every_minute_of_a_recent_range(
        specs in proptest::collection::vec(
            spec().prop_map(|mut s| { s.5 %= 47 * 60; s }),
            1..150,
        ),
        (start, minutes) in (1_i64..(47 * 60), 1_i64..(47 * 60)),
    ) {
        let (tiered, _) = engines(&specs);
        let start_ms = NOW - start * MINUTE_MS;
        let asked = Some(TimeRange::new(start_ms, start_ms + minutes * MINUTE_MS));
        let overview = tiered.overview("acme", asked, TypeFilter::all()).map_err(fail)?;
        prop_assert_eq!(overview.resolution, Resolution::Minute);
        prop_assert_eq!(overview.classes, counted_classes(&specs, overview.effective_range));
    }
}

/// The keep-everything engine at a time that lets it serve all of `served`: a range rounded to
/// whole days may end past the near future an engine clamps to.
fn upto(full: &QueryEngine, served: Option<TimeRange>) -> QueryEngine {
    let end = served.map_or(NOW, |r| r.end_ms - FUTURE_MARGIN_MS);
    full.at(end.max(NOW))
}

/// `fine` summed into the buckets that start at `coarse`'s instants.
fn coarser(fine: &[(i64, u64)], coarse: &[(i64, u64)]) -> Vec<(i64, u64)> {
    let starts: Vec<i64> = coarse.iter().map(|(at, _)| *at).collect();
    let mut summed: Vec<(i64, u64)> = starts.iter().map(|at| (*at, 0)).collect();
    for (at, n) in fine {
        let slot = starts.partition_point(|s| s <= at);
        if slot > 0 {
            summed[slot - 1].1 += n;
        }
    }
    summed
}

fn fail(err: QueryError) -> TestCaseError {
    TestCaseError::fail(err.to_string())
}
