//! The questions the queries answer and the shapes of their answers, free of protobuf.

use serde::{Deserialize, Serialize};

use crate::catalog::{self, ErrorClass};
use crate::event::{IntegrationType, PerType};

/// Half-open `[start_ms, end_ms)`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct TimeRange {
    pub(crate) start_ms: i64,
    pub(crate) end_ms: i64,
}

impl TimeRange {
    /// `[start_ms, end_ms)`, in epoch milliseconds.
    pub fn new(start_ms: i64, end_ms: i64) -> Self {
        TimeRange { start_ms, end_ms }
    }
}

/// Which integration types to include. Empty means all of them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct TypeFilter(PerType<bool>);

impl TypeFilter {
    pub fn all() -> Self {
        TypeFilter(PerType([true; IntegrationType::COUNT]))
    }

    pub fn from_types(types: &[IntegrationType]) -> Self {
        if types.is_empty() {
            return Self::all();
        }
        let mut wanted = PerType::<bool>::default();
        for t in types {
            wanted[*t] = true;
        }
        TypeFilter(wanted)
    }

    pub(crate) fn includes(&self, t: IntegrationType) -> bool {
        self.0[t]
    }

    pub(crate) fn types(&self) -> impl Iterator<Item = IntegrationType> + '_ {
        IntegrationType::ALL
            .into_iter()
            .filter(|t| self.includes(*t))
    }
}

/// Which error classes to include, by the class of each failure's code. Empty means all.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct ClassFilter([bool; ErrorClass::ALL.len()]);

impl Default for ClassFilter {
    fn default() -> Self {
        Self::all()
    }
}

impl ClassFilter {
    pub fn all() -> Self {
        ClassFilter([true; ErrorClass::ALL.len()])
    }

    pub fn from_classes(classes: &[ErrorClass]) -> Self {
        if classes.is_empty() {
            return Self::all();
        }
        let mut wanted = [false; ErrorClass::ALL.len()];
        for class in classes {
            wanted[class.index()] = true;
        }
        ClassFilter(wanted)
    }

    pub(crate) fn includes(&self, class: ErrorClass) -> bool {
        self.0[class.index()]
    }

    pub(crate) fn includes_code(&self, status_code: u16) -> bool {
        self.includes(catalog::class_of(status_code))
    }
}

/// Failures per class, in `ErrorClass::ALL`'s order.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct PerClass(pub(crate) [u64; ErrorClass::ALL.len()]);

impl PerClass {
    /// Sums failures per code by class.
    pub(crate) fn of_codes(codes: impl IntoIterator<Item = (u16, u64)>) -> Self {
        let mut sums = PerClass::default();
        for (code, failed) in codes {
            sums.0[catalog::class_of(code).index()] += failed;
        }
        sums
    }

    /// Each class with its failures.
    pub(crate) fn named(self) -> [(ErrorClass, u64); ErrorClass::ALL.len()] {
        std::array::from_fn(|i| (ErrorClass::ALL[i], self.0[i]))
    }
}

/// Everything counted for a tenant so far: what `WatchTenant` compares.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct TenantCounters {
    pub(crate) events: u64,
    pub(crate) failures: u64,
}

/// One tenant's events over a range, all types together.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct TenantEvents {
    pub(crate) tenant_id: String,
    pub(crate) failed: u64,
    pub(crate) succeeded: u64,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct TypeTotals {
    pub(crate) integration_type: IntegrationType,
    pub(crate) failed: u64,
    pub(crate) succeeded: u64,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Overview {
    pub(crate) types: Vec<TypeTotals>,
    /// The failures of those types by class.
    pub(crate) classes: [(ErrorClass, u64); ErrorClass::ALL.len()],
    pub(crate) effective_range: TimeRange,
    pub(crate) resolution: Resolution,
}

#[derive(Debug, Clone, PartialEq)]
pub(crate) struct TypeChange {
    pub(crate) integration_type: IntegrationType,
    pub(crate) failed_current: u64,
    pub(crate) failed_previous: u64,
    pub(crate) failed_change_percent: Option<f64>,
    pub(crate) succeeded_current: u64,
    pub(crate) succeeded_previous: u64,
    pub(crate) succeeded_change_percent: Option<f64>,
    /// What moved the type's failures between the two periods, when asked for.
    pub(crate) drivers: Option<Drivers>,
}

/// One integration's or one code's failures in the current and the previous period.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct Contribution {
    /// The integration id, or the status code as text; empty for "other".
    pub(crate) key: String,
    pub(crate) name: String,
    pub(crate) current: u64,
    pub(crate) previous: u64,
}

impl Contribution {
    /// Its share of the type's change: current − previous.
    pub(crate) fn change(&self) -> i64 {
        self.current as i64 - self.previous as i64
    }
}

/// The integrations and codes that moved a type's failures most; with the "other" rows,
/// their changes add up to the type's change.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct Drivers {
    pub(crate) integrations: Vec<Contribution>,
    pub(crate) other_integrations: Contribution,
    pub(crate) codes: Vec<Contribution>,
    pub(crate) other_codes: Contribution,
}

#[derive(Debug, Clone, PartialEq)]
pub struct PercentageChange {
    pub(crate) types: Vec<TypeChange>,
    pub(crate) current_range: TimeRange,
    pub(crate) previous_range: TimeRange,
    pub(crate) resolution: Resolution,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct ErrorCount {
    pub(crate) status_code: u16,
    pub(crate) name: &'static str,
    pub(crate) failed: u64,
}

#[derive(Debug, Clone, PartialEq)]
pub struct ErrorBreakdown {
    pub(crate) errors: Vec<ErrorCount>,
    pub(crate) effective_range: TimeRange,
    pub(crate) resolution: Resolution,
}

impl ErrorBreakdown {
    /// The failures summed by class, from the counts per code.
    pub(crate) fn classes(&self) -> [(ErrorClass, u64); ErrorClass::ALL.len()] {
        PerClass::of_codes(self.errors.iter().map(|e| (e.status_code, e.failed))).named()
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Granularity {
    Hour,
    Day,
}

/// The width of the buckets an answer was summed from: minutes inside the minute window, hours
/// inside the hour tier, UTC days before it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Resolution {
    Minute,
    Hour,
    Day,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct TrendSeries {
    pub(crate) integration_type: IntegrationType,
    /// (bucket start in epoch ms, failures); empty buckets are present with 0.
    pub(crate) points: Vec<(i64, u64)>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Trends {
    pub(crate) series: Vec<TrendSeries>,
    pub(crate) effective_range: TimeRange,
    /// For a local calendar past the hour tier: the points before this instant are UTC days,
    /// each counted in the local day it mostly overlaps.
    pub(crate) utc_days_until_ms: Option<i64>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum FailureOrder {
    #[default]
    TotalErrorsDesc,
    LastSeenDesc,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct FailureFilter {
    pub(crate) integration_id: Option<String>,
    pub(crate) status_code: Option<u16>,
    pub(crate) flow_id: Option<String>,
    pub(crate) service_id: Option<String>,
    pub(crate) classes: ClassFilter,
}

#[derive(Debug, Clone)]
pub struct ListFailuresRequest {
    pub tenant_id: String,
    pub range: Option<TimeRange>,
    pub types: TypeFilter,
    pub filter: FailureFilter,
    pub page_size: usize,
    pub page_token: Option<String>,
    pub order: FailureOrder,
}

impl ListFailuresRequest {
    /// The first page of a tenant's whole table in the default order and range.
    pub fn first_page(tenant_id: &str, page_size: usize) -> Self {
        ListFailuresRequest {
            tenant_id: tenant_id.to_owned(),
            range: None,
            types: TypeFilter::all(),
            filter: FailureFilter::default(),
            page_size,
            page_token: None,
            order: FailureOrder::TotalErrorsDesc,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct SampleRow {
    pub(crate) event_id: String,
    pub(crate) occurred_at_ms: i64,
    pub(crate) error_message: String,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FailureRow {
    pub failure_id: String,
    pub(crate) integration_type: IntegrationType,
    pub(crate) integration_id: String,
    pub(crate) integration_name: String,
    pub(crate) failure_description: String,
    pub(crate) status_code: u16,
    pub(crate) service_id: String,
    pub(crate) service_name: String,
    pub(crate) flow_id: String,
    pub(crate) flow_name: String,
    pub(crate) total_errors: u64,
    pub(crate) first_seen_ms: i64,
    pub(crate) last_seen_ms: i64,
    /// When issues are kept.
    pub(crate) issue: Option<crate::issues::IssueStatus>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct FailurePage {
    pub failures: Vec<FailureRow>,
    pub(crate) next_page_token: Option<String>,
    pub(crate) total_groups: u64,
    pub(crate) effective_range: TimeRange,
    pub(crate) resolution: Resolution,
}

pub(crate) use crate::catalog::Guidance;

#[derive(Debug, Clone, PartialEq)]
pub struct FailureDetails {
    pub(crate) failure: FailureRow,
    pub(crate) guidance: Guidance,
    /// One point per hour, or per UTC day when the range reaches below the hour tier.
    pub(crate) trend: Vec<(i64, u64)>,
    pub(crate) recent_samples: Vec<SampleRow>,
    pub(crate) effective_range: TimeRange,
    pub(crate) resolution: Resolution,
}
