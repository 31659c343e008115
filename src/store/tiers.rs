//! Two resolutions of one series: hour buckets for the recent past and UTC-day buckets for the
//! whole retention.
//!
//! Events are counted in their hour. The owner's upkeep rolls every hour of a finished day into
//! that day (`Tiered::roll`) and moves the partition's `rolled_until` past it; an event that
//! arrives later for an hour already rolled is counted in both. So a day below `rolled_until`
//! always holds exactly the sum of its hours, and hours can be dropped after their retention
//! while the day stays. A read over a range takes every whole, rolled day in it from the day
//! tier and the hours at either end from the hour tier (`Tiered::read`), which is exact as long
//! as a range that reaches below the hour tier is day-aligned (the query side rounds it so).

use serde::{Deserialize, Serialize};

use super::series::Series;
use super::time::{ceil_to, floor_to, DAY_MS};

/// How a series over a range is read.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum SeriesRead {
    /// Hour by hour.
    Hours,
    /// By UTC day: whole rolled days from the day tier, the hours at either end from hours.
    UtcDays,
    /// By local day: hours from `hours_from` (the start of a UTC day) on; before it, UTC days,
    /// each placed at its midday so it falls in the local day it mostly overlaps.
    LocalDays { hours_from: i64 },
}

const HALF_DAY_MS: i64 = DAY_MS / 2;

/// One bucket of a tiered series.
pub(crate) enum Bucket<'a, H, D> {
    Hour(&'a H),
    Day(&'a D),
}

/// An hour bucket that adds itself into its day's bucket.
pub(crate) trait RollsInto<D> {
    fn roll_into(&self, day: &mut D);
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct Tiered<H, D> {
    pub(crate) hours: Series<H>,
    /// Stored in the snapshot's day section, after the rest of the state, so the layout of
    /// everything before it stays that of the format without tiers.
    #[serde(skip)]
    pub(crate) days: Series<D>,
}

impl<H, D> Default for Tiered<H, D> {
    fn default() -> Self {
        Tiered {
            hours: Series::new(),
            days: Series::new(),
        }
    }
}

/// Which buckets answer a range: hours in `head` and `tail`, days in `days`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Plan {
    pub(crate) head: (i64, i64),
    pub(crate) days: (i64, i64),
    pub(crate) tail: (i64, i64),
}

impl Plan {
    /// Every whole day of `[start_ms, end_ms)` below `rolled_until` from days, the rest from
    /// hours.
    pub(crate) fn of(start_ms: i64, end_ms: i64, rolled_until: i64) -> Plan {
        let first_day = ceil_to(start_ms, DAY_MS);
        let last_day = floor_to(end_ms, DAY_MS).min(floor_to(rolled_until, DAY_MS));
        if first_day >= last_day {
            return Plan {
                head: (start_ms, end_ms),
                days: (end_ms, end_ms),
                tail: (end_ms, end_ms),
            };
        }
        Plan {
            head: (start_ms, first_day),
            days: (first_day, last_day),
            tail: (last_day, end_ms),
        }
    }
}

impl<H, D> Tiered<H, D> {
    pub(crate) fn is_empty(&self) -> bool {
        self.hours.is_empty() && self.days.is_empty()
    }

    /// Counts into `hour`'s bucket and, when that hour was rolled already, into its day's.
    pub(crate) fn record(
        &mut self,
        hour: i64,
        rolled_until: i64,
        on_hour: impl FnOnce(&mut H),
        on_day: impl FnOnce(&mut D),
    ) where
        H: Default,
        D: Default,
    {
        on_hour(self.hours.slot(hour));
        if hour < rolled_until {
            on_day(self.days.slot(floor_to(hour, DAY_MS)));
        }
    }

    /// Adds the hours in `[from, to)` (day-aligned) into their days.
    pub(crate) fn roll(&mut self, from: i64, to: i64)
    where
        H: RollsInto<D>,
        D: Default,
    {
        // Days are reached in order, so each slot is the series' newest: one step.
        for (hour, bucket) in self.hours.range(from..to) {
            bucket.roll_into(self.days.slot(floor_to(*hour, DAY_MS)));
        }
    }

    /// Forgets hours before `hour_floor` and days before `day_floor`.
    pub(crate) fn drop_before(&mut self, hour_floor: i64, day_floor: i64) {
        self.hours.drop_before(hour_floor);
        self.days.drop_before(day_floor);
    }

    /// The buckets that answer `[start_ms, end_ms)`: hours, then days, oldest first in each.
    pub(crate) fn read(
        &self,
        start_ms: i64,
        end_ms: i64,
        rolled_until: i64,
    ) -> (
        impl DoubleEndedIterator<Item = (&i64, &H)>,
        impl DoubleEndedIterator<Item = (&i64, &D)>,
    ) {
        let plan = Plan::of(start_ms, end_ms, rolled_until);
        let hours = self
            .hours
            .range(plan.head.0..plan.head.1)
            .chain(self.hours.range(plan.tail.0..plan.tail.1));
        (hours, self.days.range(plan.days.0..plan.days.1))
    }

    /// Whether any bucket answers `[start_ms, end_ms)`.
    pub(crate) fn any_in(&self, start_ms: i64, end_ms: i64, rolled_until: i64) -> bool {
        let (mut hours, mut days) = self.read(start_ms, end_ms, rolled_until);
        hours.next().is_some() || days.next().is_some()
    }

    /// Calls `on` for every bucket that answers `[first, last)` read as `how`, with the instant
    /// the bucket is placed at; oldest first within each tier.
    pub(crate) fn each(
        &self,
        first: i64,
        last: i64,
        how: SeriesRead,
        rolled_until: i64,
        mut on: impl FnMut(i64, Bucket<'_, H, D>),
    ) {
        match how {
            SeriesRead::Hours => self
                .hours
                .range(first..last)
                .for_each(|(at, h)| on(*at, Bucket::Hour(h))),
            SeriesRead::UtcDays => {
                let (hours, days) = self.read(first, last, rolled_until);
                hours.for_each(|(at, h)| on(*at, Bucket::Hour(h)));
                days.for_each(|(at, d)| on(*at, Bucket::Day(d)));
            }
            SeriesRead::LocalDays { hours_from } => {
                // Days only where they are rolled; hours below that are still kept.
                let split = hours_from
                    .min(floor_to(rolled_until, DAY_MS))
                    .clamp(first, last.max(first));
                let days_from = ceil_to(first - HALF_DAY_MS, DAY_MS);
                self.days
                    .range(days_from..floor_to(split, DAY_MS).max(days_from))
                    .for_each(|(at, d)| on(at + HALF_DAY_MS, Bucket::Day(d)));
                self.hours
                    .range(split..last)
                    .for_each(|(at, h)| on(*at, Bucket::Hour(h)));
            }
        }
    }

    /// Days wholly before the first hour kept, then every hour: each instant once, at the
    /// finest resolution kept.
    pub(crate) fn finest(
        &self,
    ) -> (
        impl DoubleEndedIterator<Item = (&i64, &D)>,
        impl DoubleEndedIterator<Item = (&i64, &H)>,
    ) {
        let hours_from = self
            .hours
            .first_key_value()
            .map_or(i64::MAX, |(hour, _)| floor_to(*hour, DAY_MS));
        (self.days.range(..hours_from), self.hours.iter())
    }

    pub(crate) fn heap_bytes(&self) -> usize {
        self.hours.heap_bytes() + self.days.heap_bytes()
    }
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;
    use crate::store::HOUR_MS;

    impl RollsInto<u64> for u32 {
        fn roll_into(&self, day: &mut u64) {
            *day += u64::from(*self);
        }
    }

    fn sum(tiered: &Tiered<u32, u64>, start: i64, end: i64, rolled_until: i64) -> u64 {
        let (hours, days) = tiered.read(start, end, rolled_until);
        hours.map(|(_, n)| u64::from(*n)).sum::<u64>() + days.map(|(_, n)| *n).sum::<u64>()
    }

    proptest! {
        /// Counting, rolling at random days and dropping old hours answers any range the way a
        /// plain list of the events does, for ranges that are day-aligned below the hour tier.
        #[test]
        fn reads_agree_with_the_events(
            events in proptest::collection::vec(0_i64..(30 * 24), 0..300),
            rolls in proptest::collection::vec(0_i64..31, 0..4),
            keep_days in 1_i64..30,
            (start, end) in (0_i64..(30 * 24), 0_i64..(31 * 24)),
        ) {
            let mut tiered: Tiered<u32, u64> = Tiered::default();
            let mut rolled_until = i64::MIN;
            let mut rolls = rolls;
            rolls.sort_unstable();
            let mut rolls = rolls.into_iter().peekable();
            for (i, hour) in events.iter().enumerate() {
                if i % 50 == 0 {
                    if let Some(day) = rolls.next() {
                        let to = (day * DAY_MS).max(rolled_until);
                        tiered.roll(rolled_until, to);
                        rolled_until = to;
                    }
                }
                tiered.record(hour * HOUR_MS, rolled_until, |h| *h += 1, |d| *d += 1);
            }
            let to = (31 * DAY_MS).max(rolled_until);
            tiered.roll(rolled_until, to);
            rolled_until = to;
            let hour_floor = (31 - keep_days) * DAY_MS;
            tiered.drop_before(hour_floor, 0);
            let (mut start, mut end) = (start.min(end) * HOUR_MS, start.max(end) * HOUR_MS);
            if start < hour_floor {
                start = floor_to(start, DAY_MS);
                end = ceil_to(end, DAY_MS);
            }
            let expected = events
                .iter()
                .filter(|h| (start..end).contains(&(*h * HOUR_MS)))
                .count() as u64;
            prop_assert_eq!(sum(&tiered, start, end, rolled_until), expected);
            let (days, hours) = tiered.finest();
            let all = days.map(|(_, n)| *n).sum::<u64>() + hours.map(|(_, n)| u64::from(*n)).sum::<u64>();
            prop_assert_eq!(all, events.len() as u64);
            // A local calendar over everything sees every event once, days placed at midday.
            let mut local = 0;
            let how = SeriesRead::LocalDays { hours_from: hour_floor };
            tiered.each(-DAY_MS / 2, 31 * DAY_MS, how, rolled_until, |at, bucket| {
                local += match bucket {
                    Bucket::Hour(n) => u64::from(*n),
                    Bucket::Day(n) => {
                        assert_eq!(at.rem_euclid(DAY_MS), DAY_MS / 2);
                        *n
                    }
                };
            });
            prop_assert_eq!(local, events.len() as u64);
        }
    }
}
