//! One tenant's pre-aggregated buckets within one partition.

use rustc_hash::FxHashMap as HashMap;

use serde::{Deserialize, Serialize};

use super::compact::{hours_within, Compact, Entry};
use super::groups::{GroupKey, GroupState};
use super::integrations::{IntegrationKey, IntegrationState, MinuteFailures};
use super::probation::Probation;
use super::ranking::Ranking;
use super::series::Series;
use super::tiers::RollsInto;
use super::time::{floor_to, HOUR_MS};
use crate::event::{IntegrationType, Outcome, PerType};

/// Failed and succeeded counts per integration type.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct TypeCounts {
    pub(crate) failed: PerType<u64>,
    pub(crate) succeeded: PerType<u64>,
}

impl TypeCounts {
    pub(crate) fn add(&mut self, other: &TypeCounts) {
        for t in IntegrationType::ALL {
            self.failed[t] += other.failed[t];
            self.succeeded[t] += other.succeeded[t];
        }
    }

    /// Adds one stored bucket.
    pub(crate) fn add_bucket(&mut self, bucket: &BucketCounts) {
        for t in IntegrationType::ALL {
            self.failed[t] += u64::from(bucket.failed[t]);
            self.succeeded[t] += u64::from(bucket.succeeded[t]);
        }
    }
}

/// One minute's or hour's counts per type, as stored: 40 bytes where 64-bit counts took 80.
/// One partition's owner applies about a million events a second at most, so an hour stays
/// below 4.3 billion; sums over buckets are `TypeCounts`.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct BucketCounts {
    pub(crate) failed: PerType<u32>,
    pub(crate) succeeded: PerType<u32>,
}

impl BucketCounts {
    /// Failed and succeeded events over every type.
    pub(crate) fn total(&self) -> u64 {
        self.failed
            .values()
            .chain(self.succeeded.values())
            .map(|n| u64::from(*n))
            .sum()
    }

    pub(super) fn record(&mut self, integration_type: IntegrationType, outcome: Outcome) {
        let slot = match outcome {
            Outcome::Failure => &mut self.failed[integration_type],
            Outcome::Success => &mut self.succeeded[integration_type],
        };
        *slot = slot.saturating_add(1);
    }
}

/// A day's counts are 64-bit: a busy tenant's day can pass 4.3 billion.
impl RollsInto<TypeCounts> for BucketCounts {
    fn roll_into(&self, day: &mut TypeCounts) {
        day.add_bucket(self);
    }
}

impl TypeCounts {
    pub(super) fn record(&mut self, integration_type: IntegrationType, outcome: Outcome) {
        match outcome {
            Outcome::Failure => self.failed[integration_type] += 1,
            Outcome::Success => self.succeeded[integration_type] += 1,
        }
    }

    pub(crate) fn total(&self) -> u64 {
        self.failed.values().chain(self.succeeded.values()).sum()
    }
}

/// Failures per (integration type, status code) in one bucket, sorted by that pair: a bucket
/// holds a few dozen codes at most, so a sorted vector beats a hash table on size and speed.
#[derive(Debug, Default, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct CodeCounts(Vec<((IntegrationType, u16), u64)>);

impl CodeCounts {
    pub(crate) fn add(&mut self, key: (IntegrationType, u16), count: u64) {
        match self.0.binary_search_by_key(&key, |(k, _)| *k) {
            Ok(at) => self.0[at].1 += count,
            Err(at) => self.0.insert(at, (key, count)),
        }
    }

    pub(crate) fn get(&self, key: &(IntegrationType, u16)) -> Option<&u64> {
        self.0
            .binary_search_by_key(key, |(k, _)| *k)
            .ok()
            .map(|at| &self.0[at].1)
    }

    pub(crate) fn iter(&self) -> impl Iterator<Item = (&(IntegrationType, u16), &u64)> {
        self.0.iter().map(|(k, v)| (k, v))
    }

    pub(crate) fn heap_bytes(&self) -> usize {
        self.0.capacity() * std::mem::size_of::<((IntegrationType, u16), u64)>()
    }
}

impl RollsInto<CodeCounts> for CodeCounts {
    fn roll_into(&self, day: &mut CodeCounts) {
        for (key, count) in self {
            day.add(*key, *count);
        }
    }
}

impl<'a> IntoIterator for &'a CodeCounts {
    type Item = (&'a (IntegrationType, u16), &'a u64);
    type IntoIter = std::iter::Map<
        std::slice::Iter<'a, ((IntegrationType, u16), u64)>,
        fn(&'a ((IntegrationType, u16), u64)) -> (&'a (IntegrationType, u16), &'a u64),
    >;

    fn into_iter(self) -> Self::IntoIter {
        self.0.iter().map(|(k, v)| (k, v))
    }
}

/// The hour of an event as a quiet tenant keeps it: hours since the epoch, so an event is 8
/// bytes. Reaches past the year 200,000 either way; an hour beyond is kept in buckets.
fn hour_index(at_ms: i64) -> Option<i32> {
    i32::try_from(at_ms.div_euclid(HOUR_MS)).ok()
}

/// One event of a quiet tenant, as its counts per type keep it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct CountEvent {
    hour: i32,
    integration_type: IntegrationType,
    failed: bool,
}

impl CountEvent {
    fn outcome(&self) -> Outcome {
        match self.failed {
            true => Outcome::Failure,
            false => Outcome::Success,
        }
    }
}

impl Entry<BucketCounts, TypeCounts> for CountEvent {
    /// 8 KiB at most, where a tenant with an event or two an hour pays about 30 bytes an event
    /// in buckets.
    const QUIET_CAP: usize = 1024;

    fn at_ms(&self) -> i64 {
        i64::from(self.hour) * HOUR_MS
    }

    fn count_in_hour(&self, hour: &mut BucketCounts) {
        hour.record(self.integration_type, self.outcome());
    }

    fn count_in_day(&self, day: &mut TypeCounts) {
        day.record(self.integration_type, self.outcome());
    }
}

/// One failure of a quiet tenant, as its failures per code keep it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct CodeEvent {
    hour: i32,
    integration_type: IntegrationType,
    code: u16,
}

impl Entry<CodeCounts, CodeCounts> for CodeEvent {
    const QUIET_CAP: usize = 1024;

    fn at_ms(&self) -> i64 {
        i64::from(self.hour) * HOUR_MS
    }

    fn count_in_hour(&self, hour: &mut CodeCounts) {
        hour.add((self.integration_type, self.code), 1);
    }

    fn count_in_day(&self, day: &mut CodeCounts) {
        day.add((self.integration_type, self.code), 1);
    }
}

/// A tenant's counts per type: its events while quiet, else hour and day buckets.
pub(crate) type TenantCounts = Compact<CountEvent, BucketCounts, TypeCounts>;
/// A tenant's failures per (type, code): its failures while quiet, else hour and day buckets.
pub(crate) type TenantCodes = Compact<CodeEvent, CodeCounts, CodeCounts>;

crate::store::compact::written_as_buckets!(TenantCounts, BucketCounts, TypeCounts);
crate::store::compact::written_as_buckets!(TenantCodes, CodeCounts, CodeCounts);

#[derive(Debug, Default, Clone, Serialize, Deserialize)]
pub(crate) struct TenantState {
    pub(crate) minutes: Series<BucketCounts>,
    /// Failed and succeeded per type, per hour and per day.
    pub(crate) counts: TenantCounts,
    /// Failures per (type, code), per hour and per day.
    pub(crate) codes: TenantCodes,
    pub(crate) groups: HashMap<GroupKey, GroupState>,
    /// Per integration, per hour and per day: counts, last failure and a latency sketch.
    pub(crate) integrations: HashMap<IntegrationKey, IntegrationState>,
    /// Inside the minute window: failures per (integration, code) per minute.
    pub(crate) minute_failures: Series<Vec<MinuteFailures>>,
    /// Events and failures counted since the tenant first appeared: `WatchTenant`'s version.
    pub(crate) events: u64,
    pub(crate) failures: u64,
    /// Failures that went to an overflow group because the group cap was reached.
    pub(crate) overflowed: u64,
    /// Candidates for the failures table's first page; rebuilt by eviction, not stored.
    #[serde(skip)]
    pub(crate) ranking: Option<Ranking>,
    /// While the tenant may still be evicted at the tenant cap; the snapshot keeps it in a
    /// section of its own.
    #[serde(skip)]
    pub(crate) probation: Option<Box<Probation>>,
}

impl TenantState {
    /// A tenant seen for the first time: with no groups yet, its ranking starts empty and
    /// complete, so its queries take the fast paths at once rather than after the next
    /// eviction round.
    pub(crate) fn new(window_start_ms: i64) -> Self {
        TenantState {
            ranking: Some(Ranking::build(&mut HashMap::default(), window_start_ms)),
            probation: Some(Box::new(Probation::new())),
            ..TenantState::default()
        }
    }

    pub(crate) fn is_empty(&self) -> bool {
        self.counts.is_empty() && self.groups.is_empty()
    }

    /// Counts one event in its hour, and in its day once that hour was rolled.
    pub(crate) fn record(
        &mut self,
        at_ms: i64,
        kind: IntegrationType,
        outcome: Outcome,
        code: u16,
        rolled: i64,
    ) {
        let failed = outcome == Outcome::Failure;
        match hour_index(at_ms) {
            Some(hour) => {
                let event = CountEvent {
                    hour,
                    integration_type: kind,
                    failed,
                };
                self.counts.record(event, rolled);
                if failed {
                    let failure = CodeEvent {
                        hour,
                        integration_type: kind,
                        code,
                    };
                    self.codes.record(failure, rolled);
                }
            }
            None => {
                let hour = floor_to(at_ms, HOUR_MS);
                let counts = self.counts.tiered_mut(rolled);
                counts.record(
                    hour,
                    rolled,
                    |h| h.record(kind, outcome),
                    |d| d.record(kind, outcome),
                );
                if failed {
                    let key = (kind, code);
                    let codes = self.codes.tiered_mut(rolled);
                    codes.record(hour, rolled, |h| h.add(key, 1), |d| d.add(key, 1));
                }
            }
        }
    }

    /// Calls `on` with each (type, code) and its failures in a bucket of `[start_ms, end_ms)`.
    pub(crate) fn for_each_code_in(
        &self,
        start_ms: i64,
        end_ms: i64,
        rolled_until: i64,
        mut on: impl FnMut((IntegrationType, u16), u64),
    ) {
        match &self.codes {
            Compact::Quiet(failures) => hours_within(failures, start_ms, end_ms)
                .iter()
                .for_each(|f| on((f.integration_type, f.code), 1)),
            Compact::Tiered(tiered) => {
                let (hours, days) = tiered.read(start_ms, end_ms, rolled_until);
                for (_, codes) in hours.chain(days) {
                    codes.iter().for_each(|(key, count)| on(*key, *count));
                }
            }
        }
    }

    /// Calls `on` with each (type, code) and its failures in a minute of `[start_ms, end_ms)`,
    /// inside the minute window.
    pub(crate) fn for_each_minute_code_in(
        &self,
        start_ms: i64,
        end_ms: i64,
        mut on: impl FnMut((IntegrationType, u16), u64),
    ) {
        let minutes = self.minute_failures.range(start_ms..end_ms);
        for failure in minutes.flat_map(|(_, failures)| failures) {
            let key = (failure.integration.integration_type, failure.status_code);
            on(key, u64::from(failure.count));
        }
    }

    /// Failures per (type, code) in the hour starting at `hour`, if it had any.
    pub(crate) fn codes_at(&self, hour: i64) -> Option<CodeCounts> {
        let mut found = None;
        self.codes
            .for_each_hour_in(hour, hour + 1, |codes| found = Some(codes.clone()));
        found
    }

    /// Sums counts over `[start_ms, end_ms)` from minute buckets, or from hours and days.
    pub(crate) fn counts_in(
        &self,
        start_ms: i64,
        end_ms: i64,
        by_minute: bool,
        rolled_until: i64,
    ) -> TypeCounts {
        let mut total = TypeCounts::default();
        if by_minute {
            for (_, counts) in self.minutes.range(start_ms..end_ms) {
                total.add_bucket(counts);
            }
            return total;
        }
        let tiered = match &self.counts {
            Compact::Quiet(events) => {
                for event in hours_within(events, start_ms, end_ms) {
                    total.record(event.integration_type, event.outcome());
                }
                return total;
            }
            Compact::Tiered(tiered) => tiered,
        };
        let (hours, days) = tiered.read(start_ms, end_ms, rolled_until);
        for (_, counts) in hours {
            total.add_bucket(counts);
        }
        for (_, counts) in days {
            total.add(counts);
        }
        total
    }

    /// Heap bytes of the quiet events, of the hours and of the days, codes included.
    pub(crate) fn bucket_bytes(&self) -> (usize, usize, usize) {
        let code_bins = |series: &Series<CodeCounts>| {
            series.heap_bytes() + series.values().map(CodeCounts::heap_bytes).sum::<usize>()
        };
        let counts = self
            .counts
            .heap_bytes(Series::heap_bytes, Series::heap_bytes);
        let codes = self.codes.heap_bytes(code_bins, code_bins);
        (counts.0 + codes.0, counts.1 + codes.1, counts.2 + codes.2)
    }

    /// Every event kept, each counted once.
    pub(crate) fn events_kept(&self) -> u64 {
        match &self.counts {
            Compact::Quiet(events) => events.len() as u64,
            Compact::Tiered(tiered) => {
                let (days, hours) = tiered.finest();
                days.map(|(_, c)| c.total()).sum::<u64>()
                    + hours.map(|(_, c)| c.total()).sum::<u64>()
            }
        }
    }

    /// The newest hour with an event, or the start of the newest day when only days are kept.
    pub(crate) fn newest_bucket(&self) -> Option<i64> {
        match &self.counts {
            Compact::Quiet(events) => events.last().map(|e| e.at_ms()),
            Compact::Tiered(tiered) => {
                let hour = tiered.hours.last_key_value().map(|(h, _)| *h);
                let day = tiered.days.last_key_value().map(|(d, _)| *d);
                hour.max(day)
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use proptest::prelude::*;

    use super::*;
    use crate::store::tiers::{Bucket, SeriesRead, Tiered};
    use crate::store::time::{ceil_to, DAY_MS};

    const CAP: usize = <CountEvent as Entry<BucketCounts, TypeCounts>>::QUIET_CAP;

    fn read(
        tenant: &TenantState,
        start: i64,
        end: i64,
        how: SeriesRead,
        rolled: i64,
    ) -> BTreeMap<i64, TypeCounts> {
        let mut seen: BTreeMap<i64, TypeCounts> = BTreeMap::new();
        tenant.counts.each(start, end, how, rolled, |at, bucket| {
            let slot = seen.entry(at).or_default();
            match bucket {
                Bucket::Hour(h) => slot.add_bucket(h),
                Bucket::Day(d) => slot.add(d),
            }
        });
        seen
    }

    fn codes(
        tenant: &TenantState,
        start: i64,
        end: i64,
        rolled: i64,
    ) -> BTreeMap<(IntegrationType, u16), u64> {
        let mut seen = BTreeMap::new();
        tenant.for_each_code_in(start, end, rolled, |key, n| {
            *seen.entry(key).or_default() += n
        });
        seen
    }

    proptest! {
        /// A quiet tenant's events answer as its buckets do: counts per type over a range and
        /// by hour, UTC and local day, failures per code, the events kept and the failures of
        /// an hour; with both forms recorded in any order, rolled, and old hours dropped.
        #[test]
        fn events_answer_as_buckets_do(
            events in proptest::collection::vec(
                (0_i64..(30 * DAY_MS), 0_usize..5, any::<bool>(), 0_u16..3),
                0..(CAP + 200),
            ),
            keep_days in 1_i64..30,
            last_roll in 0_i64..32,
            (start, end) in (0_i64..(30 * 24), 0_i64..(31 * 24)),
        ) {
            let mut quiet = TenantState::default();
            let mut tiered = TenantState {
                counts: Compact::Tiered(Tiered::default()),
                codes: Compact::Tiered(Tiered::default()),
                ..TenantState::default()
            };
            let mut rolled = i64::MIN;
            for (i, (at, kind, failed, code)) in events.iter().enumerate() {
                if i % 64 == 63 {
                    let to = floor_to(*at, DAY_MS).max(rolled);
                    for t in [&mut quiet, &mut tiered] {
                        t.counts.roll(rolled, to);
                        t.codes.roll(rolled, to);
                    }
                    rolled = to;
                }
                let outcome = if *failed { Outcome::Failure } else { Outcome::Success };
                for t in [&mut quiet, &mut tiered] {
                    t.record(*at, IntegrationType::ALL[*kind], outcome, *code, rolled);
                }
            }
            let to = (last_roll * DAY_MS).max(rolled);
            let hour_floor = ((31 - keep_days) * DAY_MS).min(to);
            for t in [&mut quiet, &mut tiered] {
                t.counts.roll(rolled, to);
                t.codes.roll(rolled, to);
                t.counts.drop_before(hour_floor, i64::MIN);
                t.codes.drop_before(hour_floor, i64::MIN);
            }
            rolled = to;
            prop_assert_eq!(quiet.counts.events().is_some(), events.len() <= CAP);

            let (mut start, mut end) = (start.min(end) * HOUR_MS, start.max(end) * HOUR_MS);
            if start < hour_floor {
                (start, end) = (floor_to(start, DAY_MS), ceil_to(end, DAY_MS));
            }
            let mut truth = TypeCounts::default();
            for (_, kind, failed, _) in events.iter().filter(|e| (start..end).contains(&e.0)) {
                let outcome = if *failed { Outcome::Failure } else { Outcome::Success };
                truth.record(IntegrationType::ALL[*kind], outcome);
            }
            prop_assert_eq!(quiet.counts_in(start, end, false, rolled), truth);
            prop_assert_eq!(tiered.counts_in(start, end, false, rolled), truth);
            prop_assert_eq!(codes(&quiet, start, end, rolled), codes(&tiered, start, end, rolled));
            for how in crate::store::compact::reads_of(start, hour_floor) {
                prop_assert_eq!(read(&quiet, start, end, how, rolled), read(&tiered, start, end, how, rolled));
            }
            if start >= hour_floor {
                prop_assert_eq!(quiet.codes_at(start), tiered.codes_at(start));
            }
            prop_assert_eq!(quiet.events_kept(), events.len() as u64);
        }
    }
}
