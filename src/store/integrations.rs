//! The per-integration cube: for each of a tenant's integrations, per hour and per day,
//! succeeded and failed counts, the time of the last failure and a latency sketch; and, inside the minute window,
//! failures per (integration, code) per minute, so what drove a change can be told at the same
//! resolution as the change itself.

use serde::{Deserialize, Serialize};

use super::compact::{hours_within, Compact, Entry};
use super::interner::Sym;
use super::series::Series;
use super::sketch::{LatencySketch, SketchSum};
use super::tiers::RollsInto;
use super::time::{floor_to, HOUR_MS};
use crate::event::IntegrationType;

/// The name of the integration that counts a tenant's integrations past its cap.
pub(crate) const OVERFLOW_INTEGRATION_NAME: &str = "(integration limit reached)";

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub(crate) struct IntegrationKey {
    pub(crate) integration_type: IntegrationType,
    pub(crate) integration_id: Sym,
}

/// Stands for "no failure" in `IntegrationBucket::last_failure`, which saves `Option`'s 8 bytes
/// on each of the millions of hours a big state holds.
const NO_FAILURE: i64 = i64::MIN;

/// A count in a bucket: 32-bit in hours, where one partition's owner (about a million events a
/// second at most) stays below 4.3 billion, and 64-bit in days and sums, where it may not.
pub(crate) trait Count: Copy + Default + Into<u64> {
    fn bump(&mut self);
}

impl Count for u32 {
    fn bump(&mut self) {
        *self = self.saturating_add(1);
    }
}

impl Count for u64 {
    fn bump(&mut self) {
        *self += 1;
    }
}

/// One integration's hour (32 bytes) or day: counts, the newest failure, and a latency sketch.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct IntegrationBucket<C> {
    pub(crate) succeeded: C,
    pub(crate) failed: C,
    /// Exact time of the newest failure in the bucket, or `NO_FAILURE`.
    last_failure: i64,
    /// Latencies of the bucket's events that carried one.
    pub(crate) latency: LatencySketch,
}

pub(crate) type IntegrationHour = IntegrationBucket<u32>;
/// A day, or a sum of hours and days.
pub(crate) type IntegrationDay = IntegrationBucket<u64>;

impl<C: Count> Default for IntegrationBucket<C> {
    fn default() -> Self {
        IntegrationBucket {
            succeeded: C::default(),
            failed: C::default(),
            last_failure: NO_FAILURE,
            latency: LatencySketch::default(),
        }
    }
}

impl<C: Count> IntegrationBucket<C> {
    fn record(&mut self, event: &IntegrationEvent) {
        if event.failed {
            self.failed.bump();
            self.last_failure = self.last_failure.max(event.at_ms);
        } else {
            self.succeeded.bump();
        }
        if let Some(bin) = event.latency_bin {
            self.latency.add_bin(bin);
        }
    }

    /// Exact time of the newest failure counted.
    pub(crate) fn last_failure_ms(&self) -> Option<i64> {
        (self.last_failure != NO_FAILURE).then_some(self.last_failure)
    }
}

impl IntegrationDay {
    /// Adds `other`'s counts and newest failure; the sketch only when `latency` is not summed
    /// elsewhere.
    fn add_counts<C: Count>(&mut self, other: &IntegrationBucket<C>) {
        self.succeeded += other.succeeded.into();
        self.failed += other.failed.into();
        self.last_failure = self.last_failure.max(other.last_failure);
    }

    pub(crate) fn add(&mut self, other: &IntegrationDay) {
        self.add_counts(other);
        self.latency.merge(&other.latency);
    }
}

impl RollsInto<IntegrationDay> for IntegrationHour {
    fn roll_into(&self, day: &mut IntegrationDay) {
        day.add_counts(self);
        day.latency.merge(&self.latency);
    }
}

/// Hours and days summed into one, their sketches through a dense sum.
#[derive(Default)]
pub(crate) struct IntegrationSum {
    total: IntegrationDay,
    latency: SketchSum,
}

impl IntegrationSum {
    pub(crate) fn add<C: Count>(&mut self, bucket: &IntegrationBucket<C>) {
        self.add_counts(bucket);
        self.add_latency(&bucket.latency);
    }

    /// Adds a bucket's counts and newest failure, leaving its latencies to `add_latency`.
    pub(crate) fn add_counts<C: Count>(&mut self, bucket: &IntegrationBucket<C>) {
        self.total.add_counts(bucket);
    }

    pub(crate) fn add_latency(&mut self, latency: &LatencySketch) {
        self.latency.add(latency);
    }

    pub(crate) fn finish(mut self) -> IntegrationDay {
        self.total.latency = self.latency.finish();
        self.total
    }
}

/// One event of an integration as a quiet one keeps it (`compact`): 16 bytes where its hour
/// and day buckets took about 90.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct IntegrationEvent {
    pub(crate) at_ms: i64,
    /// The latency's sketch bin, when the event carried one.
    pub(crate) latency_bin: Option<i16>,
    pub(crate) failed: bool,
}

impl Entry<IntegrationHour, IntegrationDay> for IntegrationEvent {
    /// 2 KiB at most; spread over hours, as a quiet integration's are, its buckets would take
    /// about 90 bytes an event.
    const QUIET_CAP: usize = 128;

    fn at_ms(&self) -> i64 {
        self.at_ms
    }

    fn count_in_hour(&self, hour: &mut IntegrationHour) {
        hour.record(self);
    }

    fn count_in_day(&self, day: &mut IntegrationDay) {
        day.record(self);
    }
}

/// An integration's events while quiet, else its hour and day buckets.
pub(crate) type IntegrationBuckets = Compact<IntegrationEvent, IntegrationHour, IntegrationDay>;

impl IntegrationBuckets {
    /// Whether any bucket answers `[start_ms, end_ms)`.
    pub(crate) fn any_in(&self, start_ms: i64, end_ms: i64, rolled_until: i64) -> bool {
        match self {
            Compact::Quiet(events) => !hours_within(events, start_ms, end_ms).is_empty(),
            Compact::Tiered(tiered) => tiered.any_in(start_ms, end_ms, rolled_until),
        }
    }

    /// The start of the newest hour with an event that starts before `end_ms`.
    pub(crate) fn newest_hour_before(&self, end_ms: i64) -> Option<i64> {
        match self {
            Compact::Quiet(events) => hours_within(events, i64::MIN, end_ms)
                .last()
                .map(|e| floor_to(e.at_ms, HOUR_MS)),
            Compact::Tiered(tiered) => tiered
                .hours
                .range(..end_ms)
                .rev()
                .find(|(_, h)| h.succeeded > 0 || h.failed > 0)
                .map(|(start, _)| *start),
        }
    }
}

crate::store::compact::written_as_buckets!(IntegrationBuckets, IntegrationHour, IntegrationDay);

/// (succeeded, failed) per minute: an integration's recent outcomes, and its outcomes that were
/// not final, for the alert rules. Stored as the series itself.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(transparent)]
pub(crate) struct MinuteOutcomes(pub(crate) Series<(u32, u32)>);

impl MinuteOutcomes {
    pub(crate) fn record(&mut self, minute: i64, failed: bool) {
        let slot = self.0.slot(minute);
        match failed {
            true => slot.1 += 1,
            false => slot.0 += 1,
        }
    }

    /// (succeeded, failed) in `[start_ms, end_ms)`.
    pub(crate) fn sum_in(&self, start_ms: i64, end_ms: i64) -> (u64, u64) {
        self.0
            .range(start_ms..end_ms)
            .fold((0, 0), |(s, f), (_, (ms, mf))| {
                (s + u64::from(*ms), f + u64::from(*mf))
            })
    }
}

/// How far back per-minute counts of each integration are kept: the longest alert window.
pub(crate) const RECENT_MS: i64 = 6 * 3_600_000;

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct IntegrationState {
    /// From the newest event seen, so a rename shows up.
    pub(crate) name: Sym,
    pub(crate) name_at_ms: i64,
    pub(crate) buckets: IntegrationBuckets,
    /// The last `RECENT_MS`: (succeeded, failed) per minute, for alerts on rates.
    pub(crate) minutes: MinuteOutcomes,
    /// The default range's latencies kept summed; built by upkeep, not stored.
    #[serde(skip)]
    pub(crate) window: Option<Box<LatencyWindow>>,
}

/// The latencies of every hour from `start_ms` up to `upto_ms` in one sketch, so the
/// integrations table over the default range reads one sketch and the hour or two since,
/// instead of a month of them. Upkeep moves both ends (the hours leaving subtracted: bins are
/// counts, so that is exact); a late event inside them is added on ingest.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct LatencyWindow {
    pub(crate) start_ms: i64,
    pub(crate) upto_ms: i64,
    pub(crate) latency: LatencySketch,
}

impl IntegrationState {
    pub(crate) fn new(name: Sym, at_ms: i64) -> Self {
        IntegrationState {
            name,
            name_at_ms: at_ms,
            buckets: IntegrationBuckets::default(),
            minutes: MinuteOutcomes::default(),
            window: None,
        }
    }

    /// (succeeded, failed) in `[start_ms, end_ms)`, from the recent minutes.
    pub(crate) fn recent_in(&self, start_ms: i64, end_ms: i64) -> (u64, u64) {
        self.minutes.sum_in(start_ms, end_ms)
    }

    /// Counts one event in its hour, and in its day once that hour was rolled.
    pub(crate) fn record(
        &mut self,
        hour: i64,
        rolled_until: i64,
        at_ms: i64,
        failed: bool,
        latency_ms: Option<f64>,
    ) {
        let event = IntegrationEvent {
            at_ms,
            latency_bin: latency_ms.map(LatencySketch::bin_for),
            failed,
        };
        self.buckets.record(event, rolled_until);
        if let (Some(bin), Some(window)) = (event.latency_bin, self.window.as_deref_mut()) {
            if (window.start_ms..window.upto_ms).contains(&hour) {
                window.latency.add_bin(bin);
            }
        }
    }

    /// Moves the kept latencies to `[start_ms, upto_ms)` (hour-aligned, or day-aligned below
    /// `hour_floor`). Runs before the upkeep drops hours below `hour_floor`, so the hours
    /// leaving are all there when the previous start is at or above it; otherwise, or on the
    /// first round, the sum is made afresh.
    pub(crate) fn advance_window(
        &mut self,
        start_ms: i64,
        upto_ms: i64,
        hour_floor: i64,
        rolled_until: i64,
    ) {
        let buckets = &self.buckets;
        if let Some(window) = self.window.as_deref_mut() {
            let movable = window.start_ms <= start_ms
                && start_ms <= window.upto_ms
                && window.upto_ms <= upto_ms
                && window.start_ms >= hour_floor;
            if movable {
                buckets.for_each_hour_in(window.start_ms, start_ms, |hour| {
                    window.latency.subtract(&hour.latency)
                });
                buckets.for_each_hour_in(window.upto_ms, upto_ms, |hour| {
                    window.latency.merge(&hour.latency)
                });
                (window.start_ms, window.upto_ms) = (start_ms, upto_ms);
                return;
            }
        }
        let latency = match &self.buckets {
            Compact::Quiet(events) => {
                let mut sketch = LatencySketch::default();
                hours_within(events, start_ms, upto_ms)
                    .iter()
                    .filter_map(|e| e.latency_bin)
                    .for_each(|bin| sketch.add_bin(bin));
                sketch
            }
            Compact::Tiered(tiered) => {
                let mut sum = SketchSum::default();
                let (hours, days) = tiered.read(start_ms, upto_ms, rolled_until);
                hours.for_each(|(_, h)| sum.add(&h.latency));
                days.for_each(|(_, d)| sum.add(&d.latency));
                sum.finish()
            }
        };
        self.window = Some(Box::new(LatencyWindow {
            start_ms,
            upto_ms,
            latency,
        }));
    }

    /// A quiet integration's events whose hour starts in `[start_ms, end_ms)`, summed into one
    /// bucket, with `on_failure` told each failure's time: what reading its buckets gives, without
    /// building them. `None` once it keeps buckets.
    pub(crate) fn quiet_sum(
        &self,
        start_ms: i64,
        end_ms: i64,
        mut on_failure: impl FnMut(i64),
    ) -> Option<IntegrationDay> {
        let events = self.buckets.events()?;
        let mut sum = IntegrationDay::default();
        for event in hours_within(events, start_ms, end_ms) {
            sum.record(event);
            if event.failed {
                on_failure(event.at_ms);
            }
        }
        Some(sum)
    }

    /// Failures in `[start_ms, end_ms)`, without touching the latency sketches.
    pub(crate) fn failed_in(&self, start_ms: i64, end_ms: i64, rolled_until: i64) -> u64 {
        match &self.buckets {
            Compact::Quiet(events) => hours_within(events, start_ms, end_ms)
                .iter()
                .filter(|e| e.failed)
                .count() as u64,
            Compact::Tiered(tiered) => {
                let (hours, days) = tiered.read(start_ms, end_ms, rolled_until);
                hours.map(|(_, h)| u64::from(h.failed)).sum::<u64>()
                    + days.map(|(_, d)| d.failed).sum::<u64>()
            }
        }
    }

    /// Heap bytes of the events while quiet, else of the hours and of the days with their
    /// sketches' bins.
    pub(crate) fn bucket_bytes(&self) -> (usize, usize, usize) {
        fn with_bins<C>(series: &Series<IntegrationBucket<C>>) -> usize {
            let bins: usize = series.values().map(|b| b.latency.heap_bytes()).sum();
            series.heap_bytes() + bins
        }
        self.buckets.heap_bytes(with_bins, with_bins)
    }
}

/// Failures of one (integration, code) in one minute.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct MinuteFailures {
    pub(crate) integration: IntegrationKey,
    pub(crate) status_code: u16,
    pub(crate) count: u32,
}

/// Counts one failure in its minute's list.
pub(crate) fn record_minute_failure(
    list: &mut Vec<MinuteFailures>,
    integration: IntegrationKey,
    code: u16,
) {
    match list
        .iter_mut()
        .find(|f| f.integration == integration && f.status_code == code)
    {
        Some(found) => found.count += 1,
        None => list.push(MinuteFailures {
            integration,
            status_code: code,
            count: 1,
        }),
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use proptest::prelude::*;

    use super::*;
    use crate::store::tiers::{Bucket, SeriesRead, Tiered};
    use crate::store::time::{ceil_to, DAY_MS};

    const CAP: usize = <IntegrationEvent as Entry<IntegrationHour, IntegrationDay>>::QUIET_CAP;

    /// What a query reads of each bucket: counts, newest failure, and the latencies' quantiles.
    type Read = BTreeMap<i64, (u64, u64, Option<i64>, u64, Option<f64>)>;

    fn read(state: &IntegrationState, start: i64, end: i64, how: SeriesRead, rolled: i64) -> Read {
        let mut seen = BTreeMap::new();
        state.buckets.each(start, end, how, rolled, |at, bucket| {
            let day = match bucket {
                Bucket::Hour(h) => {
                    let mut day = IntegrationDay::default();
                    day.add_counts(h);
                    day.latency.merge(&h.latency);
                    day
                }
                Bucket::Day(d) => d.clone(),
            };
            let (l, q) = (day.latency.count(), day.latency.quantile(0.9));
            seen.insert(at, (day.succeeded, day.failed, day.last_failure_ms(), l, q));
        });
        seen
    }

    proptest! {
        /// A quiet integration's events answer as its buckets do: counts, newest failures and
        /// latencies by hour, UTC day and local day, failures over a range, the default range's
        /// latencies and the newest hour; rolled, with old hours dropped, recorded in any order.
        #[test]
        fn events_answer_as_buckets_do(
            events in proptest::collection::vec(
                (0_i64..(30 * DAY_MS), any::<bool>(), proptest::option::of(0.0_f64..5_000.0)),
                0..(3 * CAP),
            ),
            keep_days in 1_i64..30,
            last_roll in 0_i64..32,
            (start, end) in (0_i64..(30 * 24), 0_i64..(31 * 24)),
        ) {
            let name = Sym::default();
            let mut quiet = IntegrationState::new(name, 0);
            let mut tiered = IntegrationState::new(name, 0);
            tiered.buckets = Compact::Tiered(Tiered::default());
            let mut rolled = i64::MIN;
            for (i, (at, failed, latency)) in events.iter().enumerate() {
                if i % 16 == 15 {
                    let to = floor_to(*at, DAY_MS).max(rolled);
                    quiet.buckets.roll(rolled, to);
                    tiered.buckets.roll(rolled, to);
                    rolled = to;
                }
                let hour = floor_to(*at, HOUR_MS);
                quiet.record(hour, rolled, *at, *failed, *latency);
                tiered.record(hour, rolled, *at, *failed, *latency);
            }
            let to = (last_roll * DAY_MS).max(rolled);
            quiet.buckets.roll(rolled, to);
            tiered.buckets.roll(rolled, to);
            rolled = to;
            let hour_floor = ((31 - keep_days) * DAY_MS).min(rolled);
            quiet.buckets.drop_before(hour_floor, i64::MIN);
            tiered.buckets.drop_before(hour_floor, i64::MIN);
            prop_assert_eq!(quiet.buckets.events().is_some(), events.len() <= CAP);

            let (mut start, mut end) = (start.min(end) * HOUR_MS, start.max(end) * HOUR_MS);
            if start < hour_floor {
                (start, end) = (floor_to(start, DAY_MS), ceil_to(end, DAY_MS));
            }
            let failed = events
                .iter()
                .filter(|(at, failed, _)| *failed && (start..end).contains(at))
                .count() as u64;
            prop_assert_eq!(quiet.failed_in(start, end, rolled), failed);
            prop_assert_eq!(tiered.failed_in(start, end, rolled), failed);
            for how in crate::store::compact::reads_of(start, hour_floor) {
                prop_assert_eq!(read(&quiet, start, end, how, rolled), read(&tiered, start, end, how, rolled));
            }
            prop_assert_eq!(
                quiet.buckets.any_in(start, end, rolled),
                tiered.buckets.any_in(start, end, rolled)
            );
            // The quiet sum is the buckets' sum by UTC day, failures by day included.
            let mut by_day = BTreeMap::new();
            let summed = quiet.quiet_sum(start, end, |at| {
                *by_day.entry(floor_to(at, DAY_MS)).or_insert(0_u64) += 1;
            });
            if let Some(summed) = summed {
                let (mut sum, mut expected) = (IntegrationSum::default(), BTreeMap::new());
                tiered.buckets.each(start, end, SeriesRead::UtcDays, rolled, |at, bucket| {
                    let failed = match bucket {
                        Bucket::Hour(h) => {
                            sum.add(h);
                            u64::from(h.failed)
                        }
                        Bucket::Day(d) => {
                            sum.add(d);
                            d.failed
                        }
                    };
                    if failed > 0 {
                        *expected.entry(floor_to(at, DAY_MS)).or_insert(0) += failed;
                    }
                });
                prop_assert_eq!(summed, sum.finish());
                prop_assert_eq!(by_day, expected);
            }
            // Buckets forget hours past their tier; events keep them until the day floor.
            let newest = |s: &IntegrationState| {
                s.buckets.newest_hour_before(end).filter(|h| *h >= hour_floor)
            };
            prop_assert_eq!(newest(&quiet), newest(&tiered));
            let upto = end.max(start);
            for state in [&mut quiet, &mut tiered] {
                state.window = None;
                state.advance_window(start, upto, hour_floor, rolled);
            }
            let window = |s: &IntegrationState| {
                s.window.as_deref().map(|w| (w.latency.count(), w.latency.quantile(0.5)))
            };
            prop_assert_eq!(window(&quiet), window(&tiered));
        }
    }
}
