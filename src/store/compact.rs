//! A tiered series in the smaller of two forms.
//!
//! Most failure groups, and most integrations of a long tail of tenants, see a few events a
//! month, and an hour bucket plus a day bucket for each event cost several times the event. While
//! a series holds at most `Entry::QUIET_CAP` events it keeps the events themselves, oldest first
//! (`Compact::Quiet`); past that, hour and day buckets (`Compact::Tiered`). The events stand for
//! the buckets `Tiered` would hold had it kept every hour: an hour for each, and a day for each
//! before `rolled_until`. The buckets that answer a range (`Tiered::read`) run from the first
//! whole hour at or after its start to the one at its end, hours and days following each other,
//! so the events that answer it are exactly those between the two (`hours_within`).

use super::series::Series;
use super::tiers::{Bucket, RollsInto, SeriesRead, Tiered};
use super::time::{ceil_to, floor_to, HOUR_MS};

/// One event as a quiet series keeps it, and how it is counted into buckets.
pub(crate) trait Entry<H, D>: Copy {
    /// The most events a series keeps before it turns into buckets.
    const QUIET_CAP: usize;

    fn at_ms(&self) -> i64;
    fn count_in_hour(&self, hour: &mut H);
    fn count_in_day(&self, day: &mut D);
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Compact<E, H, D> {
    /// The events, oldest first.
    Quiet(Vec<E>),
    Tiered(Tiered<H, D>),
}

impl<E, H, D> Default for Compact<E, H, D> {
    fn default() -> Self {
        Compact::Quiet(Vec::new())
    }
}

/// Events whose hour starts in `[from, to)`, of events sorted by time.
pub(crate) fn hours_within<E, H, D>(events: &[E], from: i64, to: i64) -> &[E]
where
    E: Entry<H, D>,
{
    let (from, to) = (ceil_to(from, HOUR_MS), ceil_to(to, HOUR_MS));
    let start = events.partition_point(|e| e.at_ms() < from);
    let end = events.partition_point(|e| e.at_ms() < to).max(start);
    &events[start..end]
}

impl<E, H, D> Compact<E, H, D>
where
    E: Entry<H, D>,
    H: Default,
    D: Default,
{
    pub(crate) fn is_empty(&self) -> bool {
        match self {
            Compact::Quiet(events) => events.is_empty(),
            Compact::Tiered(tiered) => tiered.is_empty(),
        }
    }

    /// Events kept, or hour and day buckets.
    pub(crate) fn len(&self) -> usize {
        match self {
            Compact::Quiet(events) => events.len(),
            Compact::Tiered(tiered) => tiered.hours.len() + tiered.days.len(),
        }
    }

    /// The events while quiet.
    pub(crate) fn events(&self) -> Option<&[E]> {
        match self {
            Compact::Quiet(events) => Some(events),
            Compact::Tiered(_) => None,
        }
    }

    /// The days, when the series keeps buckets.
    pub(crate) fn bucket_days(&self) -> Option<&Series<D>> {
        match self {
            Compact::Quiet(_) => None,
            Compact::Tiered(tiered) => Some(&tiered.days),
        }
    }

    /// Heap bytes of the events while quiet, else of the hours and of the days, measured by
    /// `hour_bytes` and `day_bytes` (which add what their buckets hold on the heap).
    pub(crate) fn heap_bytes(
        &self,
        hour_bytes: impl Fn(&Series<H>) -> usize,
        day_bytes: impl Fn(&Series<D>) -> usize,
    ) -> (usize, usize, usize) {
        match self {
            Compact::Quiet(events) => (events.capacity() * size_of::<E>(), 0, 0),
            Compact::Tiered(t) => (0, hour_bytes(&t.hours), day_bytes(&t.days)),
        }
    }

    /// Counts one event; turns into buckets when the events are full.
    pub(crate) fn record(&mut self, event: E, rolled_until: i64) {
        if let Compact::Quiet(events) = self {
            if events.len() < E::QUIET_CAP {
                if events.len() == events.capacity() {
                    // Growth by half, exactly: doubling would leave a quiet series half empty.
                    events.reserve_exact((events.len() / 2).max(1));
                }
                let at = events.partition_point(|e| e.at_ms() <= event.at_ms());
                events.insert(at, event);
                return;
            }
        }
        record_in(self.tiered_mut(rolled_until), event, rolled_until);
    }

    /// The buckets, made from the events first if the series is quiet.
    pub(crate) fn tiered_mut(&mut self, rolled_until: i64) -> &mut Tiered<H, D> {
        if let Compact::Quiet(events) = self {
            *self = Compact::Tiered(as_tiered(events, rolled_until));
        }
        match self {
            Compact::Tiered(tiered) => tiered,
            Compact::Quiet(_) => unreachable!("made tiered above"),
        }
    }

    /// Adds the hours in `[from, to)` into their days; events need nothing.
    pub(crate) fn roll(&mut self, from: i64, to: i64)
    where
        H: RollsInto<D>,
    {
        if let Compact::Tiered(tiered) = self {
            tiered.roll(from, to);
        }
    }

    /// Forgets hours before `hour_floor` and days before `day_floor`; events before the day
    /// floor, as every event stands for a day too.
    pub(crate) fn drop_before(&mut self, hour_floor: i64, day_floor: i64) {
        match self {
            Compact::Quiet(events) => {
                let keep_from = events.partition_point(|e| e.at_ms() < day_floor);
                events.drain(..keep_from);
                if events.capacity() > 2 * events.len() {
                    events.shrink_to_fit();
                }
            }
            Compact::Tiered(tiered) => tiered.drop_before(hour_floor, day_floor),
        }
    }

    /// `Tiered::each` over the buckets, or over the buckets the events stand for.
    pub(crate) fn each(
        &self,
        first: i64,
        last: i64,
        how: SeriesRead,
        rolled_until: i64,
        on: impl FnMut(i64, Bucket<'_, H, D>),
    ) {
        match self {
            Compact::Quiet(events) => {
                as_tiered(events, rolled_until).each(first, last, how, rolled_until, on)
            }
            Compact::Tiered(tiered) => tiered.each(first, last, how, rolled_until, on),
        }
    }

    /// Every hour that starts in `[from, to)`, oldest first.
    pub(crate) fn for_each_hour_in(&self, from: i64, to: i64, mut on: impl FnMut(&H)) {
        match self {
            Compact::Quiet(events) => {
                let events = hours_within(events, from, to);
                let same_hour =
                    |a: &E, b: &E| floor_to(a.at_ms(), HOUR_MS) == floor_to(b.at_ms(), HOUR_MS);
                for run in events.chunk_by(same_hour) {
                    let mut hour = H::default();
                    run.iter().for_each(|e| e.count_in_hour(&mut hour));
                    on(&hour);
                }
            }
            Compact::Tiered(tiered) => tiered.hours.range(from..to).for_each(|(_, h)| on(h)),
        }
    }
}

/// Every way a query reads a series over a range from `start`: by hour only within the hour tier.
#[cfg(test)]
pub(crate) fn reads_of(start: i64, hour_floor: i64) -> Vec<SeriesRead> {
    let days = [
        SeriesRead::UtcDays,
        SeriesRead::LocalDays {
            hours_from: hour_floor,
        },
    ];
    let hours = (start >= hour_floor).then_some(SeriesRead::Hours);
    days.into_iter().chain(hours).collect()
}

/// The buckets `events` stand for: an hour for each, a day for each before `rolled_until`.
pub(crate) fn as_tiered<E, H, D>(events: &[E], rolled_until: i64) -> Tiered<H, D>
where
    E: Entry<H, D>,
    H: Default,
    D: Default,
{
    let mut tiered = Tiered::default();
    for event in events {
        record_in(&mut tiered, *event, rolled_until);
    }
    tiered
}

fn record_in<E, H, D>(tiered: &mut Tiered<H, D>, event: E, rolled_until: i64)
where
    E: Entry<H, D>,
    H: Default,
    D: Default,
{
    let hour = floor_to(event.at_ms(), HOUR_MS);
    tiered.record(
        hour,
        rolled_until,
        |h| event.count_in_hour(h),
        |d| event.count_in_day(d),
    );
}

/// Serde for a quiet series written with no buckets, its events following in the snapshot's
/// day section (`DaysOf`), and read back as buckets for the day section to fill in.
macro_rules! written_as_buckets {
    ($series:ty, $hour:ty, $day:ty) => {
        impl serde::Serialize for $series {
            fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
                use $crate::store::tiers::Tiered;
                match self {
                    Compact::Tiered(tiered) => tiered.serialize(serializer),
                    Compact::Quiet(_) => Tiered::<$hour, $day>::default().serialize(serializer),
                }
            }
        }

        impl<'de> serde::Deserialize<'de> for $series {
            fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
                $crate::store::tiers::Tiered::deserialize(deserializer).map(Compact::Tiered)
            }
        }
    };
}

pub(crate) use written_as_buckets;
