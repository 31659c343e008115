//! The integrations table's rows: the numbers of one row from its merged sums, the order rows
//! sort in, and an integration's top failure groups.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use super::integrations::{
    GroupSummary, Id, IntegrationOrder, IntegrationRow, Merged, Percentiles, Totals, TotalsPart,
    QUANTILES, TOP_GROUPS,
};
use super::types::{ClassFilter, TimeRange};
use crate::event::IntegrationType;
use crate::store::{floor_to, IntegrationSum, LatencySketch, RetrySum, DAY_MS};

/// The integration's failure groups with the most failures.
pub(super) fn top_groups(
    groups: Vec<GroupSummary>,
    integration_type: IntegrationType,
) -> Vec<GroupSummary> {
    let mut groups: Vec<GroupSummary> = groups
        .into_iter()
        .filter(|g| g.integration_type == integration_type && g.total_errors > 0)
        .collect();
    groups.sort_by(|a, b| {
        b.total_errors
            .cmp(&a.total_errors)
            .then_with(|| a.failure_id.cmp(&b.failure_id))
    });
    groups.truncate(TOP_GROUPS);
    groups
}

/// An integration's row numbers from its merged buckets; its daily failures by UTC day, a
/// bucket placed at a local day's midday counted in the UTC day of that instant.
pub(super) fn summed(integration: &Merged) -> TotalsPart {
    let mut sum = IntegrationSum::default();
    let mut daily = Daily::default();
    for (at, counts) in &integration.buckets {
        sum.add(counts);
        daily.add(floor_to(*at, DAY_MS), counts.failed);
    }
    Totals {
        name: integration.name.clone(),
        sum,
        daily,
        retries: RetrySum::default(),
    }
    .into_part()
}

pub(super) fn latency_percentiles(sketch: &LatencySketch) -> Percentiles {
    sketch.quantiles(QUANTILES)
}

pub(super) fn row(
    id: &Id,
    totals: TotalsPart,
    codes: Option<&BTreeMap<u16, u64>>,
    range: TimeRange,
) -> IntegrationRow {
    PendingRow::new(id, totals, codes, range).finish()
}

/// A row whose latency percentiles and daily failures are worked out only once it is known to
/// be served (or sorted by its p99): most rows of a big tenant fall off the page.
pub(super) struct PendingRow {
    pub(super) row: IntegrationRow,
    latency: Option<LatencySketch>,
    daily: Option<(Daily, TimeRange)>,
}

impl PendingRow {
    pub(super) fn new(
        id: &Id,
        totals: TotalsPart,
        codes: Option<&BTreeMap<u16, u64>>,
        range: TimeRange,
    ) -> PendingRow {
        let events = (totals.succeeded + totals.failed).max(1);
        let top_error_code = codes.and_then(|codes| {
            codes
                .iter()
                .max_by(|a, b| a.1.cmp(b.1).then(b.0.cmp(a.0)))
                .map(|(code, _)| *code)
        });
        let row = IntegrationRow {
            integration_type: id.0,
            integration_id: id.1.clone(),
            integration_name: totals.name.text,
            succeeded: totals.succeeded,
            failed: totals.failed,
            failure_rate: totals.failed as f64 / events as f64,
            latency: None,
            latency_count: totals.latency.count(),
            last_failure_ms: totals.last_failure_ms,
            top_error_code,
            daily_failures: Vec::new(),
            retried_failures: totals.retried,
            recovered_failures: totals.recovered,
            class_failures: None,
        };
        PendingRow {
            row,
            latency: Some(totals.latency),
            daily: Some((totals.daily, range)),
        }
    }

    /// With a class filter, the row's failures of those classes, or no row when it has none.
    pub(super) fn of_classes(
        mut self,
        classes: ClassFilter,
        codes: Option<&BTreeMap<u16, u64>>,
    ) -> Option<PendingRow> {
        if classes == ClassFilter::all() {
            return Some(self);
        }
        let codes = codes.into_iter().flatten();
        let failed: u64 = codes
            .filter(|(code, _)| classes.includes_code(**code))
            .map(|(_, count)| count)
            .sum();
        self.row.class_failures = Some(failed);
        (failed > 0).then_some(self)
    }

    /// Works out the percentiles, which ordering by p99 needs before the page is known.
    pub(super) fn with_percentiles(mut self) -> PendingRow {
        if let Some(sketch) = self.latency.take() {
            self.row.latency = latency_percentiles(&sketch);
        }
        self
    }

    pub(super) fn finish(self) -> IntegrationRow {
        let mut done = self.with_percentiles();
        if let Some((daily, range)) = done.daily.take() {
            let first_day = range.start_ms.div_euclid(DAY_MS) * DAY_MS;
            done.row.daily_failures = (first_day..range.end_ms)
                .step_by(DAY_MS as usize)
                .map(|day| (day, daily.get(day)))
                .collect();
        }
        done.row
    }
}

/// Where a row sorts: a number (smaller first), then the name and id that break ties.
pub(super) type Position = (i64, String, IntegrationType, String);

pub(super) fn sort_key(row: &IntegrationRow, order: IntegrationOrder) -> Position {
    let primary = match order {
        IntegrationOrder::FailuresDesc => {
            let failed = row.class_failures.unwrap_or(row.failed);
            -(failed.min(i64::MAX as u64) as i64)
        }
        // Parts per billion keep the order exact enough and the token an integer.
        IntegrationOrder::FailureRateDesc => -((row.failure_rate * 1e9).round() as i64),
        IntegrationOrder::P99Desc => row
            .latency
            .map_or(i64::MAX, |p| -((p[2] * 1e3).round() as i64)),
        IntegrationOrder::NameAsc => 0,
    };
    (
        primary,
        row.integration_name.clone(),
        row.integration_type,
        row.integration_id.clone(),
    )
}

/// Failures per UTC day, sorted by day: a month is a few dozen entries, which a sorted vector
/// holds in one allocation. Between replicas it travels as the map it replaced did (bincode
/// writes a map and a sequence of pairs alike).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(transparent)]
pub(crate) struct Daily(Vec<(i64, u64)>);

impl Daily {
    pub(super) fn add(&mut self, day: i64, failed: u64) {
        if let Some((last, n)) = self.0.last_mut() {
            if *last == day {
                *n += failed;
                return;
            }
        }
        match self.0.binary_search_by_key(&day, |(d, _)| *d) {
            Ok(at) => self.0[at].1 += failed,
            Err(at) => self.0.insert(at, (day, failed)),
        }
    }

    pub(super) fn merge(&mut self, other: Daily) {
        for (day, failed) in other.0 {
            self.add(day, failed);
        }
    }

    pub(super) fn get(&self, day: i64) -> u64 {
        self.0
            .binary_search_by_key(&day, |(d, _)| *d)
            .map_or(0, |at| self.0[at].1)
    }
}
