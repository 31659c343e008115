//! The questions the queries answer and the shapes of their answers, free of protobuf.

use serde::{Deserialize, Serialize};

use crate::event::{IntegrationType, PerType};

/// Half-open `[start_ms, end_ms)`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct TimeRange {
    pub start_ms: i64,
    pub end_ms: i64,
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

    pub fn includes(&self, t: IntegrationType) -> bool {
        self.0[t]
    }

    pub fn types(&self) -> impl Iterator<Item = IntegrationType> + '_ {
        IntegrationType::ALL
            .into_iter()
            .filter(|t| self.includes(*t))
    }
}

/// Everything counted for a tenant so far: what `WatchTenant` compares.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct TenantCounters {
    pub events: u64,
    pub failures: u64,
}

/// One tenant's events over a range, all types together.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TenantEvents {
    pub tenant_id: String,
    pub failed: u64,
    pub succeeded: u64,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TypeTotals {
    pub integration_type: IntegrationType,
    pub failed: u64,
    pub succeeded: u64,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Overview {
    pub types: Vec<TypeTotals>,
    pub effective_range: TimeRange,
}

#[derive(Debug, Clone, PartialEq)]
pub struct TypeChange {
    pub integration_type: IntegrationType,
    pub failed_current: u64,
    pub failed_previous: u64,
    pub failed_change_percent: Option<f64>,
    pub succeeded_current: u64,
    pub succeeded_previous: u64,
    pub succeeded_change_percent: Option<f64>,
    /// What moved the type's failures between the two periods, when asked for.
    pub drivers: Option<Drivers>,
}

/// One integration's or one code's failures in the current and the previous period.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Contribution {
    /// The integration id, or the status code as text; empty for "other".
    pub key: String,
    pub name: String,
    pub current: u64,
    pub previous: u64,
}

impl Contribution {
    /// Its share of the type's change: current − previous.
    pub fn change(&self) -> i64 {
        self.current as i64 - self.previous as i64
    }
}

/// The integrations and codes that moved a type's failures most; with the "other" rows,
/// their changes add up to the type's change.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Drivers {
    pub integrations: Vec<Contribution>,
    pub other_integrations: Contribution,
    pub codes: Vec<Contribution>,
    pub other_codes: Contribution,
}

#[derive(Debug, Clone, PartialEq)]
pub struct PercentageChange {
    pub types: Vec<TypeChange>,
    pub current_range: TimeRange,
    pub previous_range: TimeRange,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ErrorCount {
    pub status_code: u16,
    pub name: &'static str,
    pub failed: u64,
}

#[derive(Debug, Clone, PartialEq)]
pub struct ErrorBreakdown {
    pub errors: Vec<ErrorCount>,
    pub effective_range: TimeRange,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Granularity {
    Hour,
    Day,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TrendSeries {
    pub integration_type: IntegrationType,
    /// (bucket start in epoch ms, failures); empty buckets are present with 0.
    pub points: Vec<(i64, u64)>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Trends {
    pub series: Vec<TrendSeries>,
    pub effective_range: TimeRange,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum FailureOrder {
    #[default]
    TotalErrorsDesc,
    LastSeenDesc,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct FailureFilter {
    pub integration_id: Option<String>,
    pub status_code: Option<u16>,
    pub flow_id: Option<String>,
    pub service_id: Option<String>,
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
pub struct SampleRow {
    pub event_id: String,
    pub occurred_at_ms: i64,
    pub error_message: String,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FailureRow {
    pub failure_id: String,
    pub integration_type: IntegrationType,
    pub integration_id: String,
    pub integration_name: String,
    pub failure_description: String,
    pub status_code: u16,
    pub service_id: String,
    pub service_name: String,
    pub flow_id: String,
    pub flow_name: String,
    pub total_errors: u64,
    pub first_seen_ms: i64,
    pub last_seen_ms: i64,
    /// When issues are kept.
    pub issue: Option<crate::issues::IssueStatus>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct FailurePage {
    pub failures: Vec<FailureRow>,
    pub next_page_token: Option<String>,
    pub total_groups: u64,
    pub effective_range: TimeRange,
}

pub use crate::catalog::Guidance;

#[derive(Debug, Clone, PartialEq)]
pub struct FailureDetails {
    pub failure: FailureRow,
    pub guidance: Guidance,
    pub hourly_trend: Vec<(i64, u64)>,
    pub recent_samples: Vec<SampleRow>,
    pub effective_range: TimeRange,
}
