//! One tenant's pre-aggregated buckets within one partition.

use rustc_hash::FxHashMap as HashMap;

use super::time::{ceil_to, floor_to, DAY_MS};
use serde::{Deserialize, Serialize};

use super::groups::{GroupKey, GroupState};
use super::integrations::{IntegrationKey, IntegrationState, MinuteFailures};
use super::ranking::Ranking;
use super::series::Series;
use crate::event::{IntegrationType, Outcome, PerType};

/// Failed and succeeded counts per integration type.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct TypeCounts {
    pub failed: PerType<u64>,
    pub succeeded: PerType<u64>,
}

impl TypeCounts {
    pub fn add(&mut self, other: &TypeCounts) {
        for t in IntegrationType::ALL {
            self.failed[t] += other.failed[t];
            self.succeeded[t] += other.succeeded[t];
        }
    }

    /// Adds one stored bucket.
    pub fn add_bucket(&mut self, bucket: &BucketCounts) {
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
pub struct BucketCounts {
    pub failed: PerType<u32>,
    pub succeeded: PerType<u32>,
}

impl BucketCounts {
    pub(super) fn record(&mut self, integration_type: IntegrationType, outcome: Outcome) {
        let slot = match outcome {
            Outcome::Failure => &mut self.failed[integration_type],
            Outcome::Success => &mut self.succeeded[integration_type],
        };
        *slot = slot.saturating_add(1);
    }
}

/// Failures per (integration type, status code) in one bucket, sorted by that pair: a bucket
/// holds a few dozen codes at most, so a sorted vector beats a hash table on size and speed.
#[derive(Debug, Default, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CodeCounts(Vec<((IntegrationType, u16), u64)>);

impl CodeCounts {
    pub fn add(&mut self, key: (IntegrationType, u16), count: u64) {
        match self.0.binary_search_by_key(&key, |(k, _)| *k) {
            Ok(at) => self.0[at].1 += count,
            Err(at) => self.0.insert(at, (key, count)),
        }
    }

    pub fn get(&self, key: &(IntegrationType, u16)) -> Option<&u64> {
        self.0
            .binary_search_by_key(key, |(k, _)| *k)
            .ok()
            .map(|at| &self.0[at].1)
    }

    pub fn iter(&self) -> impl Iterator<Item = (&(IntegrationType, u16), &u64)> {
        self.0.iter().map(|(k, v)| (k, v))
    }

    pub fn heap_bytes(&self) -> usize {
        self.0.capacity() * std::mem::size_of::<((IntegrationType, u16), u64)>()
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

#[derive(Debug, Default, Clone, Serialize, Deserialize)]
pub struct TenantState {
    pub minutes: Series<BucketCounts>,
    pub hours: Series<BucketCounts>,
    pub codes: Series<CodeCounts>,
    /// `codes` summed per UTC day, so a month's breakdown reads 30 days instead of 720 hours.
    /// Built from `codes` by the first eviction round after a restore, then kept on ingest;
    /// not stored.
    #[serde(skip)]
    pub code_days: Option<Series<CodeCounts>>,
    pub groups: HashMap<GroupKey, GroupState>,
    /// Per integration, per hour: counts, last failure and a latency sketch.
    pub integrations: HashMap<IntegrationKey, IntegrationState>,
    /// Inside the minute window: failures per (integration, code) per minute.
    pub minute_failures: Series<Vec<MinuteFailures>>,
    /// Events and failures counted since the tenant first appeared: `WatchTenant`'s version.
    pub events: u64,
    pub failures: u64,
    /// Failures that went to an overflow group because the group cap was reached.
    pub overflowed: u64,
    /// Candidates for the failures table's first page; rebuilt by eviction, not stored.
    #[serde(skip)]
    pub ranking: Option<Ranking>,
}

impl TenantState {
    /// A tenant seen for the first time: with no groups and no codes yet, its ranking and day
    /// sums start empty and complete, so its queries take the fast paths at once rather than
    /// after the next eviction round.
    pub fn new(window_start_ms: i64) -> Self {
        TenantState {
            ranking: Some(Ranking::build(&mut HashMap::default(), window_start_ms)),
            code_days: Some(Series::new()),
            ..TenantState::default()
        }
    }

    pub fn is_empty(&self) -> bool {
        self.hours.is_empty() && self.groups.is_empty()
    }

    /// Counts one failure of `key` in `hour`, and in its day when the days are kept.
    pub(super) fn count_code(&mut self, hour: i64, key: (IntegrationType, u16)) {
        self.codes.slot(hour).add(key, 1);
        if let Some(days) = &mut self.code_days {
            days.slot(floor_to(hour, DAY_MS)).add(key, 1);
        }
    }

    /// Builds the day sums from the hours when they are not kept yet, and forgets days that lie
    /// wholly before `hour_floor`.
    pub(super) fn keep_code_days(&mut self, hour_floor: i64) {
        let days = self.code_days.get_or_insert_with(|| {
            let mut days: Series<CodeCounts> = Series::new();
            for (hour, counts) in self.codes.iter() {
                let day = days.slot(floor_to(*hour, DAY_MS));
                for (key, count) in counts {
                    day.add(*key, *count);
                }
            }
            days
        });
        days.drop_before(floor_to(hour_floor, DAY_MS));
    }

    /// Failures per (type, code) over `[start_ms, end_ms)` (hour-aligned): whole UTC days from
    /// the day sums when they are kept, the hours at either end from the hour buckets.
    pub fn codes_in(&self, start_ms: i64, end_ms: i64) -> impl Iterator<Item = &CodeCounts> {
        let first_day = ceil_to(start_ms, DAY_MS);
        let last_day = floor_to(end_ms, DAY_MS).max(first_day);
        let days = self.code_days.as_ref().filter(|_| first_day < last_day);
        let (head_end, tail_start) = match days {
            Some(_) => (first_day, last_day),
            None => (end_ms, end_ms),
        };
        self.codes
            .range(start_ms..head_end)
            .chain(
                days.into_iter()
                    .flat_map(move |d| d.range(first_day..last_day)),
            )
            .chain(self.codes.range(tail_start..end_ms))
            .map(|(_, counts)| counts)
    }

    /// Sums counts over `[start_ms, end_ms)` from minute or hour buckets.
    pub fn counts_in(&self, start_ms: i64, end_ms: i64, by_minute: bool) -> TypeCounts {
        let buckets = if by_minute {
            &self.minutes
        } else {
            &self.hours
        };
        let mut total = TypeCounts::default();
        for counts in buckets.range(start_ms..end_ms).map(|(_, c)| c) {
            total.add_bucket(counts);
        }
        total
    }
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;
    use crate::store::HOUR_MS;

    fn summed<'a>(
        buckets: impl Iterator<Item = &'a CodeCounts>,
    ) -> Vec<((IntegrationType, u16), u64)> {
        let mut total = CodeCounts::default();
        for counts in buckets {
            for (key, count) in counts {
                total.add(*key, *count);
            }
        }
        total.0
    }

    proptest! {
        /// Day sums plus the hours at either end give what the hours alone give, whether the
        /// days were built from the hours or kept while counting, and after old days go.
        #[test]
        fn day_sums_agree_with_hours(
            before in proptest::collection::vec((0_i64..(40 * 24), 0_u16..4), 0..300),
            after in proptest::collection::vec((0_i64..(40 * 24), 0_u16..4), 0..300),
            floor_hours in 0_i64..(10 * 24),
            (start, end) in (0_i64..(40 * 24), 0_i64..(40 * 24)),
        ) {
            let mut tenant = TenantState::default();
            let key = |code: u16| (IntegrationType::CustomEvent, 500 + code);
            for (hour, code) in &before {
                tenant.count_code(hour * HOUR_MS, key(*code));
            }
            tenant.codes.drop_before(floor_hours * HOUR_MS);
            tenant.keep_code_days(floor_hours * HOUR_MS);
            for (hour, code) in &after {
                tenant.count_code(hour * HOUR_MS, key(*code));
            }
            let (start, end) = ((start.max(floor_hours)) * HOUR_MS, end * HOUR_MS);
            let direct = summed(tenant.codes.range(start..end).map(|(_, c)| c));
            prop_assert_eq!(summed(tenant.codes_in(start, end)), direct);
        }
    }
}
