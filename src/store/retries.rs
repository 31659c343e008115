//! Outcomes that were not their transaction's last. Runtimes that retry send `attempt` and
//! `final`; the failure-rate and SLO rules count only final outcomes, and the integrations
//! table shows the failures that were retried and the transactions a retry recovered. Kept apart
//! from the integration cube, per integration, and only for integrations whose events say
//! anything about retries.

use serde::{Deserialize, Serialize};

use super::integrations::MinuteOutcomes;
use super::tiers::{RollsInto, Tiered};
use super::time::{floor_to, HOUR_MS, MINUTE_MS};
use crate::event::{Event, IntegrationType, Outcome};

/// Whose retries: a tenant's integration, by its ids (strings, so interner compaction never
/// has to rewrite them).
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub(crate) struct RetryKey {
    pub(crate) tenant_id: String,
    pub(crate) integration_type: IntegrationType,
    pub(crate) integration_id: String,
}

/// One hour of an integration's retries.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct RetryHour {
    /// Failures another attempt followed (`final: false`).
    pub(crate) retried: u32,
    /// Transactions a retry made good: final successes with `attempt > 1`.
    pub(crate) recovered: u32,
}

/// Retries summed over days or a range: 64-bit.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct RetrySum {
    pub(crate) retried: u64,
    pub(crate) recovered: u64,
}

impl RetrySum {
    pub(crate) fn add(&mut self, other: &RetrySum) {
        self.retried += other.retried;
        self.recovered += other.recovered;
    }
}

impl RollsInto<RetrySum> for RetryHour {
    fn roll_into(&self, day: &mut RetrySum) {
        day.retried += u64::from(self.retried);
        day.recovered += u64::from(self.recovered);
    }
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct Retries {
    pub(crate) buckets: Tiered<RetryHour, RetrySum>,
    /// Outcomes that were not final, (succeeded, failed) per minute, for the alert rules.
    minutes: MinuteOutcomes,
}

impl Retries {
    /// Counts `event`; its minute only when it is at or after `recent_floor`.
    pub(crate) fn record(&mut self, event: &Event<'_>, recent_floor: i64, rolled_until: i64) {
        let at = event.occurred_at_ms;
        let failed = event.outcome == Outcome::Failure;
        let (retried, recovered) = match (event.is_final(), failed) {
            (true, false) => (0, u32::from(event.attempt.unwrap_or(1) > 1)),
            (true, true) => (0, 0),
            (false, failed) => (u32::from(failed), 0),
        };
        if retried > 0 || recovered > 0 {
            self.buckets.record(
                floor_to(at, HOUR_MS),
                rolled_until,
                |h| {
                    h.retried = h.retried.saturating_add(retried);
                    h.recovered = h.recovered.saturating_add(recovered);
                },
                |d| {
                    d.retried += u64::from(retried);
                    d.recovered += u64::from(recovered);
                },
            );
        }
        if event.is_final() {
            return;
        }
        let minute = floor_to(at, MINUTE_MS);
        if minute >= recent_floor {
            self.minutes.record(minute, failed);
        }
    }

    /// Clears the recovered counts: snapshot formats 7 to 9 counted a recovered transaction's
    /// failed attempts, which do not add to the transactions counted since.
    pub(crate) fn forget_recovered(&mut self) {
        for hour in self.buckets.hours.values_mut() {
            hour.recovered = 0;
        }
        for day in self.buckets.days.values_mut() {
            day.recovered = 0;
        }
    }

    /// Outcomes in `[start_ms, end_ms)` that were not final: (succeeded, failed).
    pub(crate) fn not_final_in(&self, start_ms: i64, end_ms: i64) -> (u64, u64) {
        self.minutes.sum_in(start_ms, end_ms)
    }

    /// The retries in `[start_ms, end_ms)`, summed.
    pub(crate) fn sum_in(&self, start_ms: i64, end_ms: i64, rolled_until: i64) -> RetrySum {
        let mut total = RetrySum::default();
        let (hours, days) = self.buckets.read(start_ms, end_ms, rolled_until);
        for (_, hour) in hours {
            hour.roll_into(&mut total);
        }
        for (_, day) in days {
            total.add(day);
        }
        total
    }

    pub(crate) fn drop_before(&mut self, hour_floor: i64, day_floor: i64, recent_floor: i64) {
        self.buckets.drop_before(hour_floor, day_floor);
        self.minutes.0.drop_before(recent_floor);
    }

    pub(crate) fn is_empty(&self) -> bool {
        self.buckets.is_empty() && self.minutes.0.is_empty()
    }

    pub(crate) fn heap_bytes(&self) -> usize {
        self.buckets.heap_bytes() + self.minutes.0.heap_bytes()
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    pub(crate) fn attempt(n: u32, last: Option<bool>, failed: bool, at: i64) -> Event<'static> {
        let outcome = match failed {
            true => Outcome::Failure,
            false => Outcome::Success,
        };
        let kind = IntegrationType::OutboundWebhook;
        Event {
            attempt: Some(n),
            final_attempt: last,
            status_code: failed.then_some(503),
            ..Event::bare(format!("e{n}-{at}"), "t", kind, "hook".into(), outcome, at)
        }
    }

    impl Retries {
        pub(crate) fn record_now(&mut self, event: &Event<'_>, recent_floor: i64) {
            self.record(event, recent_floor, i64::MIN);
        }
    }

    #[test]
    fn two_retried_failures_and_a_final_success_recover_one_transaction() {
        let mut retries = Retries::default();
        let at = 10 * HOUR_MS;
        retries.record_now(&attempt(1, Some(false), true, at), 0);
        retries.record_now(&attempt(2, Some(false), true, at + 1_000), 0);
        retries.record_now(&attempt(3, None, false, at + 2_000), 0);
        // A transaction that gave up: two retries, then a final failure.
        retries.record_now(&attempt(1, Some(false), true, at + MINUTE_MS), 0);
        retries.record_now(&attempt(2, Some(false), true, at + MINUTE_MS), 0);
        retries.record_now(&attempt(3, Some(true), true, at + MINUTE_MS), 0);
        let hour = retries.sum_in(at, at + HOUR_MS, i64::MIN);
        assert_eq!((hour.retried, hour.recovered), (4, 1));
        assert_eq!(retries.not_final_in(at, at + HOUR_MS), (0, 4));
        assert_eq!(retries.not_final_in(at, at + MINUTE_MS), (0, 2));
    }
}
