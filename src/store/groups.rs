//! Failure groups: identity, per-hour and per-day counts with exact first and last seen, newest
//! samples.

use compact_str::CompactString;
use serde::{Deserialize, Serialize};

use super::group_buckets::GroupBuckets;
use super::interner::Sym;
use super::tiers::RollsInto;
use super::time::{floor_to, HOUR_MS};
use crate::event::IntegrationType;

pub(crate) const SAMPLES_PER_GROUP: usize = 5;
/// Description of the catch-all group that takes failures once a tenant's group cap is reached.
pub(crate) const OVERFLOW_DESCRIPTION: &str = "(other failures: group limit reached)";
/// Integration name shown for the overflow group.
pub(crate) const OVERFLOW_NAME: &str = "(group limit reached)";

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub(crate) struct GroupKey {
    pub(crate) integration_type: IntegrationType,
    pub(crate) integration_id: Sym,
    pub(crate) service_id: Sym,
    pub(crate) flow_id: Sym,
    pub(crate) status_code: u16,
    pub(crate) description: Sym,
}

/// One hour's or one day's failures of a group, with the exact first and last.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct HourStat {
    pub(crate) count: u64,
    pub(crate) first_ms: i64,
    pub(crate) last_ms: i64,
}

impl Default for HourStat {
    fn default() -> Self {
        HourStat {
            count: 0,
            first_ms: i64::MAX,
            last_ms: i64::MIN,
        }
    }
}

impl HourStat {
    pub(super) fn record(&mut self, at_ms: i64) {
        self.count += 1;
        self.first_ms = self.first_ms.min(at_ms);
        self.last_ms = self.last_ms.max(at_ms);
    }

    pub(super) fn add(&mut self, other: &HourStat) {
        self.count += other.count;
        self.first_ms = self.first_ms.min(other.first_ms);
        self.last_ms = self.last_ms.max(other.last_ms);
    }
}

impl RollsInto<HourStat> for HourStat {
    fn roll_into(&self, day: &mut HourStat) {
        day.add(self);
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct Sample {
    /// Inline up to 24 bytes, so the usual id costs no allocation of its own.
    pub(crate) event_id: CompactString,
    pub(crate) occurred_at_ms: i64,
}

/// Newest first; ties broken by event id so every partition and test orders samples the same way.
pub(crate) fn sample_order(a_ms: i64, a_id: &str, b_ms: i64, b_id: &str) -> std::cmp::Ordering {
    b_ms.cmp(&a_ms).then_with(|| a_id.cmp(b_id))
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub(crate) struct GroupState {
    pub(crate) failure_id: u128,
    pub(crate) integration_name: Sym,
    pub(crate) service_name: Sym,
    pub(crate) flow_name: Sym,
    /// Names come from the newest event seen, so a rename shows up.
    pub(crate) names_at_ms: i64,
    pub(crate) buckets: GroupBuckets,
    pub(crate) samples: Vec<Sample>,
    /// What ranking needs, kept on ingest so ranking a tenant's groups over the default range
    /// reads this struct alone, not the hours on the heap. Rebuilt by eviction, not stored.
    #[serde(skip)]
    pub(crate) window: Option<Window>,
}

/// A group's numbers as of the last eviction round, updated by every failure since.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Window {
    /// The default range's start at that round.
    pub(crate) start_ms: i64,
    /// Failures in hours from `start_ms` on.
    pub(crate) total: u64,
    pub(crate) first_ms: i64,
    pub(crate) last_ms: i64,
    pub(crate) newest_hour: i64,
    /// Which of the tenant's `Ranking` candidate lists hold the group, as bits.
    pub(crate) ranked: u8,
}

impl Window {
    /// The window of a group that has no failure yet.
    pub(crate) fn empty(start_ms: i64) -> Self {
        Window {
            start_ms,
            total: 0,
            first_ms: i64::MAX,
            last_ms: i64::MIN,
            newest_hour: i64::MIN,
            ranked: 0,
        }
    }
}

impl GroupState {
    pub(crate) fn total_in(&self, start_ms: i64, end_ms: i64, rolled_until: i64) -> u64 {
        match self.window {
            Some(w) if w.start_ms == start_ms && w.newest_hour < end_ms => w.total,
            _ => self.sum_in(start_ms, end_ms, rolled_until),
        }
    }

    fn sum_in(&self, start_ms: i64, end_ms: i64, rolled_until: i64) -> u64 {
        self.buckets.count_in(start_ms, end_ms, rolled_until)
    }

    pub(crate) fn first_seen_ms(&self) -> Option<i64> {
        match self.window {
            Some(w) => Some(w.first_ms),
            None => self.buckets.first_and_last().map(|(first, _)| first),
        }
    }

    pub(crate) fn last_seen_ms(&self) -> Option<i64> {
        match self.window {
            Some(w) => Some(w.last_ms),
            None => self.buckets.first_and_last().map(|(_, last)| last),
        }
    }

    /// Rebuilds the kept numbers for a default range that starts at `start_ms`. Runs before
    /// the upkeep drops hours below `hour_floor`, so the hours from the previous start on are
    /// all there when that start is at or above it.
    pub(super) fn advance_window(&mut self, start_ms: i64, hour_floor: i64, rolled_until: i64) {
        let total = match self.window {
            Some(w) if w.start_ms <= start_ms && w.start_ms >= hour_floor => {
                let left = self.buckets.count_in_hours(w.start_ms, start_ms);
                w.total.saturating_sub(left)
            }
            _ => self.sum_in(start_ms, i64::MAX, rolled_until),
        };
        let (Some((first_ms, last_ms)), Some(newest_hour)) =
            (self.buckets.first_and_last(), self.buckets.newest_hour())
        else {
            self.window = None;
            return;
        };
        self.window = Some(Window {
            start_ms,
            total,
            first_ms,
            last_ms,
            newest_hour,
            ranked: 0,
        });
    }

    /// Heap bytes of the hours and samples.
    /// Heap bytes of the samples; the buckets' are `GroupBuckets::heap_bytes`.
    pub(crate) fn sample_bytes(&self) -> usize {
        self.samples.capacity() * std::mem::size_of::<Sample>()
            + self
                .samples
                .iter()
                .filter(|s| s.event_id.is_heap_allocated())
                .map(|s| s.event_id.capacity())
                .sum::<usize>()
    }

    /// Takes in another group's failures as if they had been recorded here: hours summed with
    /// their first and last, the newest samples of both, the names of whichever saw the newer
    /// event. The kept window is dropped; the next eviction round rebuilds it.
    pub(crate) fn absorb(&mut self, other: GroupState, rolled_until: i64) {
        self.buckets.absorb(&other.buckets, rolled_until);
        for sample in &other.samples {
            self.add_sample(sample.occurred_at_ms, &sample.event_id);
        }
        if other.names_at_ms > self.names_at_ms {
            self.names_at_ms = other.names_at_ms;
            self.integration_name = other.integration_name;
            self.service_name = other.service_name;
            self.flow_name = other.flow_name;
        }
        self.window = None;
    }

    /// Counts a failure. Its message is the group's description, part of the group's key.
    pub(super) fn record(&mut self, at_ms: i64, event_id: &str, rolled_until: i64) {
        let hour = floor_to(at_ms, HOUR_MS);
        debug_assert_eq!(hour.rem_euclid(HOUR_MS), 0, "hour buckets are aligned");
        self.buckets.record(at_ms, rolled_until);
        if let Some(w) = &mut self.window {
            w.total += u64::from(hour >= w.start_ms);
            w.first_ms = w.first_ms.min(at_ms);
            w.last_ms = w.last_ms.max(at_ms);
            w.newest_hour = w.newest_hour.max(hour);
        }
        self.add_sample(at_ms, event_id);
    }

    fn add_sample(&mut self, at_ms: i64, event_id: &str) {
        if let Some(oldest) = self.samples.get(SAMPLES_PER_GROUP - 1) {
            if sample_order(oldest.occurred_at_ms, &oldest.event_id, at_ms, event_id).is_lt() {
                return;
            }
        }
        let position = self.samples.partition_point(|s| {
            sample_order(s.occurred_at_ms, &s.event_id, at_ms, event_id).is_lt()
        });
        if position >= SAMPLES_PER_GROUP {
            return;
        }
        // The oldest makes room first, and growth is exact: doubling would leave room for 8
        // where 5 are kept.
        if self.samples.len() == SAMPLES_PER_GROUP {
            self.samples.pop();
        } else if self.samples.len() == self.samples.capacity() {
            self.samples.reserve_exact(1);
        }
        self.samples.insert(
            position,
            Sample {
                event_id: event_id.into(),
                occurred_at_ms: at_ms,
            },
        );
    }
}

/// A failure group whose id changed when a snapshot was migrated: the issue actions kept under
/// `from` belong to `to` now.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Rekey {
    pub(crate) tenant_id: String,
    pub(crate) from: u128,
    pub(crate) to: u128,
}

/// Stable across partitions, instances and restarts: a hash of the group's identity.
pub fn failure_id(tenant_id: &str, parts: &GroupIdentity<'_>) -> u128 {
    let mut buffer = Vec::with_capacity(128);
    for field in [
        tenant_id,
        parts.integration_type.as_str(),
        parts.integration_id,
        parts.service_id,
        parts.flow_id,
    ] {
        buffer.extend_from_slice(field.as_bytes());
        buffer.push(0x1f);
    }
    buffer.extend_from_slice(&parts.status_code.to_be_bytes());
    buffer.push(0x1f);
    buffer.extend_from_slice(parts.description.as_bytes());
    xxhash_rust::xxh3::xxh3_128(&buffer)
}

pub fn format_failure_id(id: u128) -> String {
    format!("{id:032x}")
}

pub(crate) fn parse_failure_id(text: &str) -> Option<u128> {
    if text.len() != 32 {
        return None;
    }
    u128::from_str_radix(text, 16).ok()
}

/// The strings that identify a failure group, all taken from the event itself. An event without
/// an `error_message` has an empty description: its status code, already part of the identity,
/// stands in, and the catalog name is applied when the group is read. So rewording the catalog
/// never changes a `failure_id`.
#[derive(Debug, Clone, Copy)]
pub struct GroupIdentity<'a> {
    pub integration_type: IntegrationType,
    pub integration_id: &'a str,
    pub service_id: &'a str,
    pub flow_id: &'a str,
    pub status_code: u16,
    pub description: &'a str,
}
