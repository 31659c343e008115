//! The per-integration cube: for each of a tenant's integrations, per hour, succeeded and failed
//! counts, the time of the last failure and a latency sketch; and, inside the minute window,
//! failures per (integration, code) per minute, so what drove a change can be told at the same
//! resolution as the change itself.

use serde::{Deserialize, Serialize};

use super::interner::Sym;
use super::series::Series;
use super::sketch::{LatencySketch, SketchSum};
use crate::event::IntegrationType;

/// The name of the integration that counts a tenant's integrations past its cap.
pub const OVERFLOW_INTEGRATION_NAME: &str = "(integration limit reached)";

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct IntegrationKey {
    pub integration_type: IntegrationType,
    pub integration_id: Sym,
}

/// Stands for "no failure" in `IntegrationHour::last_failure`, which saves `Option`'s 8 bytes
/// on each of the millions of hours a big state holds.
const NO_FAILURE: i64 = i64::MIN;

/// One integration's hour: 32 bytes. Counts are 32-bit: one partition's owner applies about a
/// million events a second at most, so an hour of one integration stays below 4.3 billion.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct IntegrationHour {
    pub succeeded: u32,
    pub failed: u32,
    /// Exact time of the newest failure in the hour, or `NO_FAILURE`.
    last_failure: i64,
    /// Latencies of the hour's events that carried one.
    pub latency: LatencySketch,
}

impl Default for IntegrationHour {
    fn default() -> Self {
        IntegrationHour {
            succeeded: 0,
            failed: 0,
            last_failure: NO_FAILURE,
            latency: LatencySketch::default(),
        }
    }
}

impl IntegrationHour {
    pub fn add(&mut self, other: &IntegrationHour) {
        self.succeeded = self.succeeded.saturating_add(other.succeeded);
        self.failed = self.failed.saturating_add(other.failed);
        self.last_failure = self.last_failure.max(other.last_failure);
        self.latency.merge(&other.latency);
    }

    /// Exact time of the newest failure counted.
    pub fn last_failure_ms(&self) -> Option<i64> {
        (self.last_failure != NO_FAILURE).then_some(self.last_failure)
    }
}

/// Hours summed into one, their sketches through a dense sum.
pub fn sum_hours<'a>(hours: impl Iterator<Item = &'a IntegrationHour>) -> IntegrationHour {
    let mut total = IntegrationHour::default();
    let mut latency = SketchSum::default();
    for hour in hours {
        total.succeeded = total.succeeded.saturating_add(hour.succeeded);
        total.failed = total.failed.saturating_add(hour.failed);
        total.last_failure = total.last_failure.max(hour.last_failure);
        latency.add(&hour.latency);
    }
    total.latency = latency.finish();
    total
}

/// How far back per-minute counts of each integration are kept: the longest alert window.
pub const RECENT_MS: i64 = 6 * 3_600_000;

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct IntegrationState {
    /// From the newest event seen, so a rename shows up.
    pub name: Sym,
    pub name_at_ms: i64,
    pub hours: Series<IntegrationHour>,
    /// The last `RECENT_MS`: (succeeded, failed) per minute, for alerts on rates.
    pub minutes: Series<(u32, u32)>,
}

impl IntegrationState {
    pub fn new(name: Sym, at_ms: i64) -> Self {
        IntegrationState {
            name,
            name_at_ms: at_ms,
            hours: Series::new(),
            minutes: Series::new(),
        }
    }

    /// Counts one recent event in its minute.
    pub fn record_minute(&mut self, minute: i64, failed: bool) {
        let slot = self.minutes.slot(minute);
        match failed {
            true => slot.1 += 1,
            false => slot.0 += 1,
        }
    }

    /// (succeeded, failed) in `[start_ms, end_ms)`, from the recent minutes.
    pub fn recent_in(&self, start_ms: i64, end_ms: i64) -> (u64, u64) {
        self.minutes
            .range(start_ms..end_ms)
            .fold((0, 0), |(s, f), (_, (ms, mf))| {
                (s + u64::from(*ms), f + u64::from(*mf))
            })
    }

    /// Counts one event in its hour.
    pub fn record(&mut self, hour: i64, at_ms: i64, failed: bool, latency_ms: Option<f64>) {
        let slot = self.hours.slot(hour);
        if failed {
            slot.failed += 1;
            slot.last_failure = slot.last_failure.max(at_ms);
        } else {
            slot.succeeded += 1;
        }
        if let Some(ms) = latency_ms {
            slot.latency.add(ms);
        }
    }

    /// Everything in `[start_ms, end_ms)` summed into one hour-shaped total.
    pub fn total_in(&self, start_ms: i64, end_ms: i64) -> IntegrationHour {
        sum_hours(self.hours.range(start_ms..end_ms).map(|(_, h)| h))
    }

    /// Failures in `[start_ms, end_ms)`, without touching the latency sketches.
    pub fn failed_in(&self, start_ms: i64, end_ms: i64) -> u64 {
        self.hours
            .range(start_ms..end_ms)
            .map(|(_, h)| u64::from(h.failed))
            .sum()
    }

    /// Heap bytes of the hours, their sketches' bins and the recent minutes.
    pub fn heap_bytes(&self) -> usize {
        self.hours.heap_bytes()
            + self
                .hours
                .values()
                .map(|h| h.latency.heap_bytes())
                .sum::<usize>()
            + self.minutes.heap_bytes()
    }
}

/// Failures of one (integration, code) in one minute.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct MinuteFailures {
    pub integration: IntegrationKey,
    pub status_code: u16,
    pub count: u32,
}

/// Counts one failure in its minute's list.
pub fn record_minute_failure(
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
