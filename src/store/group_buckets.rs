//! A failure group's failures over time (`compact`): while quiet, their exact times.
//!
//! In the 100-tenant bench a group sees about fifteen failures in two months, each in an hour
//! of its own, so an hour bucket (32 bytes) and a day bucket (32 more) per failure cost eight
//! times the failure's time. A snapshot stores the buckets the times stand for, so the format is
//! unchanged; a restore turns back into times every group whose buckets say exactly which times
//! they hold.

use serde::ser::{SerializeMap, SerializeStruct};
use serde::{Deserialize, Deserializer, Serialize, Serializer};

use super::compact::{hours_within, Compact, Entry};
use super::groups::HourStat;
use super::series::Series;
use super::tiers::Tiered;
use super::time::{floor_to, DAY_MS, HOUR_MS};

/// A group's failures: their times while quiet (`compact`), else hour and day buckets.
pub(crate) type GroupBuckets = Compact<i64, HourStat, HourStat>;

/// A failure is its time.
impl Entry<HourStat, HourStat> for i64 {
    /// 256 bytes: what four failures' hour and day buckets take.
    const QUIET_CAP: usize = 32;

    fn at_ms(&self) -> i64 {
        *self
    }

    fn count_in_hour(&self, hour: &mut HourStat) {
        hour.record(*self);
    }

    fn count_in_day(&self, day: &mut HourStat) {
        day.record(*self);
    }
}

/// Times before `below`, as one `HourStat` per bucket of `width`, oldest first.
fn stats_by(times: &[i64], width: i64, below: i64) -> impl Iterator<Item = (i64, HourStat)> + '_ {
    let kept = &times[..times.partition_point(|t| *t < below)];
    kept.chunk_by(move |a, b| floor_to(*a, width) == floor_to(*b, width))
        .map(move |run| {
            let first = run[0];
            let stat = HourStat {
                count: run.len() as u64,
                first_ms: first,
                last_ms: run[run.len() - 1],
            };
            (floor_to(first, width), stat)
        })
}

impl GroupBuckets {
    /// Failures in the buckets that answer `[start_ms, end_ms)` (`Tiered::read`).
    pub(crate) fn count_in(&self, start_ms: i64, end_ms: i64, rolled_until: i64) -> u64 {
        match self {
            Compact::Quiet(times) => hours_within(times, start_ms, end_ms).len() as u64,
            Compact::Tiered(tiered) => {
                let (hours, days) = tiered.read(start_ms, end_ms, rolled_until);
                hours.chain(days).map(|(_, s)| s.count).sum()
            }
        }
    }

    /// Failures in the hours that start in `[from, to)`.
    pub(crate) fn count_in_hours(&self, from: i64, to: i64) -> u64 {
        match self {
            Compact::Quiet(times) => hours_within(times, from, to).len() as u64,
            Compact::Tiered(tiered) => tiered.hours.range(from..to).map(|(_, s)| s.count).sum(),
        }
    }

    /// The first and last failure kept. Days hold everything rolled, so the earlier of the two
    /// tiers' firsts is the first.
    pub(crate) fn first_and_last(&self) -> Option<(i64, i64)> {
        match self {
            Compact::Quiet(times) => Some((*times.first()?, *times.last()?)),
            Compact::Tiered(tiered) => {
                let ends = |series: &Series<HourStat>| {
                    let first = series.first_key_value()?.1.first_ms;
                    Some((first, series.last_key_value()?.1.last_ms))
                };
                match (ends(&tiered.hours), ends(&tiered.days)) {
                    (Some(h), Some(d)) => Some((h.0.min(d.0), h.1.max(d.1))),
                    (one, other) => one.or(other),
                }
            }
        }
    }

    /// The hour of the newest failure kept.
    pub(crate) fn newest_hour(&self) -> Option<i64> {
        match self {
            Compact::Quiet(times) => times.last().map(|t| floor_to(*t, HOUR_MS)),
            Compact::Tiered(tiered) => {
                let hour = tiered.hours.last_key_value().map(|(h, _)| *h);
                let last_ms = tiered.days.last_key_value().map(|(_, d)| d.last_ms);
                hour.max(last_ms.map(|ms| floor_to(ms, HOUR_MS)))
            }
        }
    }

    /// Every failure kept once, in buckets oldest first: the finest each instant is kept at.
    pub(crate) fn for_each_finest(&self, mut on: impl FnMut(&HourStat)) {
        match self {
            Compact::Quiet(times) => stats_by(times, HOUR_MS, i64::MAX).for_each(|(_, s)| on(&s)),
            Compact::Tiered(tiered) => {
                let (days, hours) = tiered.finest();
                days.chain(hours).for_each(|(_, s)| on(s));
            }
        }
    }

    /// Adds another group's failures, as if each had been recorded here.
    pub(crate) fn absorb(&mut self, other: &GroupBuckets, rolled_until: i64) {
        match other {
            Compact::Quiet(times) => {
                for at in times {
                    self.record(*at, rolled_until);
                }
            }
            Compact::Tiered(theirs) => {
                let ours = self.tiered_mut(rolled_until);
                for (hour, stat) in theirs.hours.iter() {
                    ours.hours.slot(*hour).add(stat);
                }
                for (day, stat) in theirs.days.iter() {
                    ours.days.slot(*day).add(stat);
                }
            }
        }
    }

    /// Turns buckets back into times when they say exactly which times they hold: at most
    /// `QUIET_CAP` (32) failures, none in a bucket with more than two (a first and a last). Days
    /// below `rolled_until` hold all their failures; hours from it on are in no day.
    pub(crate) fn quieten(&mut self, rolled_until: i64) {
        let Compact::Tiered(tiered) = self else {
            return;
        };
        let days = tiered.days.iter();
        let hours = tiered.hours.range(rolled_until..);
        let mut times = Vec::new();
        for (_, stat) in days.chain(hours) {
            let exact = match stat.count {
                1 => &[stat.first_ms][..],
                2 => &[stat.first_ms, stat.last_ms][..],
                _ => return,
            };
            if times.len() + exact.len() > <i64 as Entry<HourStat, HourStat>>::QUIET_CAP {
                return;
            }
            times.extend_from_slice(exact);
        }
        times.sort_unstable();
        times.shrink_to_fit();
        *self = Compact::Quiet(times);
    }

    /// The days, as a snapshot's day section stores them.
    pub(crate) fn days(&self, rolled_until: i64) -> GroupDays<'_> {
        match self {
            Compact::Quiet(times) => GroupDays::Times(times, rolled_until),
            Compact::Tiered(tiered) => GroupDays::Series(&tiered.days),
        }
    }

    /// Puts back the days a snapshot stored; a group with days was stored as buckets.
    pub(crate) fn restore_days(&mut self, days: Series<HourStat>) {
        self.tiered_mut(i64::MIN).days = days;
    }
}

/// Bucket starts to stats, written the way `Series` writes itself.
struct StatMap<'a> {
    times: &'a [i64],
    width: i64,
    below: i64,
}

impl Serialize for StatMap<'_> {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let stats = || stats_by(self.times, self.width, self.below);
        let mut map = serializer.serialize_map(Some(stats().count()))?;
        for (start, stat) in stats() {
            map.serialize_entry(&start, &stat)?;
        }
        map.end()
    }
}

/// Written as the hours `Tiered` writes (its days go to the day section).
impl Serialize for GroupBuckets {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        match self {
            Compact::Tiered(tiered) => tiered.serialize(serializer),
            Compact::Quiet(times) => {
                let mut tiered = serializer.serialize_struct("Tiered", 1)?;
                let hours = StatMap {
                    times,
                    width: HOUR_MS,
                    below: i64::MAX,
                };
                tiered.serialize_field("hours", &hours)?;
                tiered.end()
            }
        }
    }
}

impl<'de> Deserialize<'de> for GroupBuckets {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        Tiered::deserialize(deserializer).map(Compact::Tiered)
    }
}

/// A group's days for the snapshot's day section: stored, or made from its times.
pub(crate) enum GroupDays<'a> {
    Series(&'a Series<HourStat>),
    Times(&'a [i64], i64),
}

impl GroupDays<'_> {
    pub(crate) fn is_empty(&self) -> bool {
        match self {
            GroupDays::Series(series) => series.is_empty(),
            GroupDays::Times(times, rolled_until) => {
                times.first().is_none_or(|t| t >= rolled_until)
            }
        }
    }
}

impl Serialize for GroupDays<'_> {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        match self {
            GroupDays::Series(series) => series.serialize(serializer),
            GroupDays::Times(times, rolled_until) => StatMap {
                times,
                width: DAY_MS,
                below: *rolled_until,
            }
            .serialize(serializer),
        }
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use proptest::prelude::*;

    use super::*;
    use crate::store::tiers::{Bucket, SeriesRead};
    use crate::store::time::ceil_to;

    const CAP: usize = <i64 as Entry<HourStat, HourStat>>::QUIET_CAP;

    /// Bucket starts and counts, as a query reads them.
    fn read(
        buckets: &GroupBuckets,
        start: i64,
        end: i64,
        how: SeriesRead,
        rolled: i64,
    ) -> BTreeMap<i64, u64> {
        let mut seen = BTreeMap::new();
        buckets.each(start, end, how, rolled, |at, bucket| {
            let (Bucket::Hour(stat) | Bucket::Day(stat)) = bucket;
            *seen.entry(at).or_default() += stat.count;
        });
        seen
    }

    proptest! {
        /// Times and buckets answer alike: failures recorded in any order, days rolled and old
        /// hours dropped on the way, read over ranges the way queries ask (day-aligned below
        /// the hour tier); both agree with a plain list of the failures, and so does a group
        /// read back from its snapshot form.
        #[test]
        fn times_answer_as_buckets_do(
            events in proptest::collection::vec(0_i64..(30 * DAY_MS), 0..(3 * CAP)),
            keep_days in 1_i64..30,
            drop_days in 0_i64..3,
            last_roll in 0_i64..32,
            (start, end) in (0_i64..(30 * 24), 0_i64..(31 * 24)),
        ) {
            let mut quiet = GroupBuckets::default();
            let mut tiered = GroupBuckets::Tiered(Tiered::default());
            let mut rolled = i64::MIN;
            for (i, at) in events.iter().enumerate() {
                if i % 16 == 15 {
                    let to = floor_to(*at, DAY_MS).max(rolled);
                    quiet.roll(rolled, to);
                    tiered.roll(rolled, to);
                    rolled = to;
                }
                quiet.record(*at, rolled);
                tiered.record(*at, rolled);
            }
            let to = (last_roll * DAY_MS).max(rolled);
            quiet.roll(rolled, to);
            tiered.roll(rolled, to);
            rolled = to;
            // As the upkeep does: only rolled hours go, and days are rolled past the day floor.
            let hour_floor = ((31 - keep_days) * DAY_MS).min(rolled);
            let day_floor = (drop_days * DAY_MS).min(rolled);
            quiet.drop_before(hour_floor, day_floor);
            tiered.drop_before(hour_floor, day_floor);
            prop_assert_eq!(matches!(quiet, GroupBuckets::Quiet(_)), events.len() <= CAP);

            let (mut start, mut end) = (start.min(end) * HOUR_MS, start.max(end) * HOUR_MS);
            if start < hour_floor {
                (start, end) = (floor_to(start, DAY_MS), ceil_to(end, DAY_MS));
            }
            let start = start.max(day_floor);
            let kept: Vec<i64> = events.iter().copied().filter(|t| *t >= day_floor).collect();
            let expected = kept.iter().filter(|t| (start..end.max(start)).contains(*t)).count() as u64;
            let mut restored: GroupBuckets =
                bincode::deserialize(&bincode::serialize(&quiet).expect("writes")).expect("reads");
            let days: Series<HourStat> =
                bincode::deserialize(&bincode::serialize(&quiet.days(rolled)).expect("writes")).expect("reads");
            restored.restore_days(days);
            restored.quieten(rolled);
            let mut requietened = tiered.clone();
            requietened.quieten(rolled);
            for form in [&quiet, &tiered, &restored, &requietened] {
                prop_assert_eq!(form.count_in(start, end, rolled), expected);
                let mut finest = 0;
                form.for_each_finest(|s| finest += s.count);
                prop_assert_eq!(finest, kept.len() as u64);
                let ends = kept.iter().min().zip(kept.iter().max()).map(|(a, b)| (*a, *b));
                prop_assert_eq!(form.first_and_last(), ends);
            }
            for how in crate::store::compact::reads_of(start, hour_floor) {
                let want = read(&tiered, start, end, how, rolled);
                prop_assert_eq!(&read(&quiet, start, end, how, rolled), &want);
                prop_assert_eq!(&read(&restored, start, end, how, rolled), &want);
            }
            if start >= hour_floor {
                let mut hours = 0;
                quiet.for_each_hour_in(start, end, |s| hours += s.count);
                prop_assert_eq!(hours, tiered.count_in_hours(start, end));
                prop_assert_eq!(quiet.count_in_hours(start, end), tiered.count_in_hours(start, end));
            }
        }
    }
}
