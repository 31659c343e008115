//! One tenant's pre-aggregated buckets within one partition.

use rustc_hash::FxHashMap as HashMap;
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

    pub(super) fn record(&mut self, integration_type: IntegrationType, outcome: Outcome) {
        match outcome {
            Outcome::Failure => self.failed[integration_type] += 1,
            Outcome::Success => self.succeeded[integration_type] += 1,
        }
    }
}

#[derive(Debug, Default, Clone, Serialize, Deserialize)]
pub struct TenantState {
    pub minutes: Series<TypeCounts>,
    pub hours: Series<TypeCounts>,
    pub codes: Series<HashMap<(IntegrationType, u16), u64>>,
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
    pub fn is_empty(&self) -> bool {
        self.hours.is_empty() && self.groups.is_empty()
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
            total.add(counts);
        }
        total
    }
}
