//! Failures per error class, and the split of a range into minute ends and whole hours that
//! the classes and the change's drivers both read.

use super::types::{PerClass, TimeRange, TypeFilter};
use super::QueryEngine;
use crate::catalog;
use crate::event::IntegrationType;
use crate::store::{ceil_to, floor_to, HOUR_MS};

impl QueryEngine {
    /// The tenant's failures per class over `range` of the types `types` takes, from minute
    /// lists inside the minute window (`by_minute`) or from hour and day buckets. Summed by
    /// class as read, which costs the overview a few microseconds where a map per code cost
    /// it tens.
    pub(super) fn local_classes(
        &self,
        tenant_id: &str,
        range: TimeRange,
        by_minute: bool,
        types: TypeFilter,
    ) -> PerClass {
        let mut sums = PerClass::default();
        self.for_tenant(tenant_id, |partition, tenant| {
            let rolled = partition.rolled_until;
            let mut add = |(t, code): (IntegrationType, u16), count| {
                if types.includes(t) {
                    sums.0[catalog::class_of(code).index()] += count;
                }
            };
            for (span, minutes) in hours_and_minutes(range, by_minute) {
                let (start, end) = (span.start_ms, span.end_ms);
                match minutes {
                    true => tenant.for_each_minute_code_in(start, end, &mut add),
                    false => tenant.for_each_code_in(start, end, rolled, &mut add),
                }
            }
        });
        sums
    }
}

/// `range` in the spans to read: whole hours from hour buckets, and with `by_minute` the
/// minutes at either end from minute lists (`true`). Inside the minute window both hold the
/// same events, and a day reads 24 hours instead of 1,440 minutes.
pub(super) fn hours_and_minutes(range: TimeRange, by_minute: bool) -> Vec<(TimeRange, bool)> {
    if !by_minute {
        return vec![(range, false)];
    }
    let first_hour = ceil_to(range.start_ms, HOUR_MS).min(range.end_ms);
    let last_hour = floor_to(range.end_ms, HOUR_MS).max(first_hour);
    let spans = [
        (TimeRange::new(range.start_ms, first_hour), true),
        (TimeRange::new(first_hour, last_hour), false),
        (TimeRange::new(last_hour, range.end_ms), true),
    ];
    spans
        .into_iter()
        .filter(|(span, _)| span.start_ms < span.end_ms)
        .collect()
}
