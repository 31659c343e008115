//! Conversions between protobuf messages and domain types, used by the server and by the `query`
//! client alike. A conversion that can fail names the request field at fault.

use crate::proto::{Duration as ProtoDuration, Timestamp};
use thiserror::Error;
use tonic::Status;

use crate::catalog::{self, CatalogEntry};
use crate::event::IntegrationType;
use crate::issues::{ActionKind, IssueState, IssueStatus};
use crate::proto;
use crate::query::{
    self, ClassFilter, Contribution, FailureOrder, Granularity, GroupSummary, IntegrationOrder,
    IntegrationPoint, IntegrationRow, Percentiles, Resolution, TenantEvents, TimeRange, TypeChange,
    TypeFilter,
};

/// A request field that does not convert to a domain value.
#[derive(Debug, Error, Clone, PartialEq, Eq)]
pub enum ConvertError {
    #[error("{field}.nanos must be in 0..1e9")]
    Nanos { field: &'static str },
    #[error("{field} must lie in the years 1970 to 9999")]
    OutOfRange { field: &'static str },
    #[error("{field} is longer than {max} characters")]
    TooLong { field: &'static str, max: usize },
    #[error("{field} must be a positive duration")]
    NotPositive { field: &'static str },
    #[error("range needs both start and end; omit range for the default")]
    HalfRange,
    #[error("integration type {0} is not one of 1..=5")]
    UnknownType(i32),
    #[error("granularity must be HOUR or DAY")]
    UnknownGranularity,
    #[error("order_by is not a known order")]
    UnknownOrder,
    #[error("status_code must be 0 (any) or 100..=999")]
    StatusCode,
    #[error("states: {0} is not a state")]
    UnknownState(i32),
    #[error("action must be ACKNOWLEDGE, RESOLVE, SNOOZE or REOPEN")]
    UnknownAction,
    #[error("classes: {0} is not an error class (1..=5)")]
    UnknownClass(i32),
}

impl From<ConvertError> for Status {
    fn from(error: ConvertError) -> Self {
        Status::invalid_argument(error.to_string())
    }
}

/// An optional request string: empty means absent.
pub(crate) fn non_empty(text: &str) -> Option<String> {
    (!text.is_empty()).then(|| text.to_owned())
}

/// The first millisecond of 10000-01-01: timestamps must come before it.
const END_OF_YEAR_9999_MS: i64 = 253_402_300_800_000;

pub fn timestamp_to_ms(field: &'static str, t: &Timestamp) -> Result<i64, ConvertError> {
    if !(0..1_000_000_000).contains(&t.nanos) {
        return Err(ConvertError::Nanos { field });
    }
    t.seconds
        .checked_mul(1000)
        .and_then(|ms| ms.checked_add(i64::from(t.nanos / 1_000_000)))
        .filter(|ms| (0..END_OF_YEAR_9999_MS).contains(ms))
        .ok_or(ConvertError::OutOfRange { field })
}

/// Refuses a request string longer than `max` bytes, naming the field.
pub(crate) fn bounded<'a>(
    field: &'static str,
    text: &'a str,
    max: usize,
) -> Result<&'a str, ConvertError> {
    if text.len() > max {
        return Err(ConvertError::TooLong { field, max });
    }
    Ok(text)
}

pub fn ms_to_timestamp(ms: i64) -> Timestamp {
    Timestamp {
        seconds: ms.div_euclid(1000),
        nanos: (ms.rem_euclid(1000) * 1_000_000) as i32,
    }
}

pub(crate) fn duration_to_ms(field: &'static str, d: &ProtoDuration) -> Result<i64, ConvertError> {
    d.seconds
        .checked_mul(1000)
        .and_then(|ms| ms.checked_add(i64::from(d.nanos / 1_000_000)))
        .filter(|ms| *ms > 0)
        .ok_or(ConvertError::NotPositive { field })
}

pub fn ms_to_duration(ms: i64) -> ProtoDuration {
    ProtoDuration {
        seconds: ms.div_euclid(1000),
        nanos: (ms.rem_euclid(1000) * 1_000_000) as i32,
    }
}

impl TryFrom<&proto::TimeRange> for TimeRange {
    type Error = ConvertError;

    fn try_from(range: &proto::TimeRange) -> Result<Self, ConvertError> {
        let (Some(start), Some(end)) = (&range.start, &range.end) else {
            return Err(ConvertError::HalfRange);
        };
        Ok(TimeRange {
            start_ms: timestamp_to_ms("range.start", start)?,
            end_ms: timestamp_to_ms("range.end", end)?,
        })
    }
}

impl From<TimeRange> for proto::TimeRange {
    fn from(range: TimeRange) -> Self {
        proto::TimeRange {
            start: Some(ms_to_timestamp(range.start_ms)),
            end: Some(ms_to_timestamp(range.end_ms)),
        }
    }
}

impl From<TenantEvents> for proto::TenantSummary {
    fn from(row: TenantEvents) -> Self {
        proto::TenantSummary {
            tenant_id: row.tenant_id,
            failed: row.failed,
            succeeded: row.succeeded,
        }
    }
}

/// An absent range means the call's default.
pub(crate) fn optional_range(
    range: Option<&proto::TimeRange>,
) -> Result<Option<TimeRange>, ConvertError> {
    range.map(TimeRange::try_from).transpose()
}

impl From<IntegrationType> for proto::IntegrationType {
    fn from(t: IntegrationType) -> Self {
        match t {
            IntegrationType::InboundWebhook => proto::IntegrationType::InboundWebhook,
            IntegrationType::OutboundWebhook => proto::IntegrationType::OutboundWebhook,
            IntegrationType::PrebuiltIntegration => proto::IntegrationType::PrebuiltIntegration,
            IntegrationType::CustomNode => proto::IntegrationType::CustomNode,
            IntegrationType::CustomEvent => proto::IntegrationType::CustomEvent,
        }
    }
}

impl TryFrom<proto::IntegrationType> for IntegrationType {
    type Error = ConvertError;

    fn try_from(t: proto::IntegrationType) -> Result<Self, ConvertError> {
        match t {
            proto::IntegrationType::InboundWebhook => Ok(IntegrationType::InboundWebhook),
            proto::IntegrationType::OutboundWebhook => Ok(IntegrationType::OutboundWebhook),
            proto::IntegrationType::PrebuiltIntegration => Ok(IntegrationType::PrebuiltIntegration),
            proto::IntegrationType::CustomNode => Ok(IntegrationType::CustomNode),
            proto::IntegrationType::CustomEvent => Ok(IntegrationType::CustomEvent),
            proto::IntegrationType::Unspecified => Err(ConvertError::UnknownType(t as i32)),
        }
    }
}

/// The wire form of an integration type: an `i32` that must name one of the five.
pub fn type_from_wire(value: i32) -> Result<IntegrationType, ConvertError> {
    proto::IntegrationType::try_from(value)
        .map_err(|_| ConvertError::UnknownType(value))
        .and_then(IntegrationType::try_from)
}

pub fn type_to_wire(t: IntegrationType) -> i32 {
    proto::IntegrationType::from(t) as i32
}

pub(crate) fn types_from_wire(values: &[i32]) -> Result<TypeFilter, ConvertError> {
    let types = values
        .iter()
        .map(|v| type_from_wire(*v))
        .collect::<Result<Vec<_>, _>>()?;
    Ok(TypeFilter::from_types(&types))
}

/// 0 means "any"; otherwise a real status code.
pub(crate) fn status_code_filter(code: u32) -> Result<Option<u16>, ConvertError> {
    match code {
        0 => Ok(None),
        100..=999 => Ok(Some(code as u16)),
        _ => Err(ConvertError::StatusCode),
    }
}

impl TryFrom<i32> for Granularity {
    type Error = ConvertError;

    fn try_from(value: i32) -> Result<Self, ConvertError> {
        match proto::Granularity::try_from(value) {
            Ok(proto::Granularity::Hour) => Ok(Granularity::Hour),
            Ok(proto::Granularity::Day | proto::Granularity::Unspecified) => Ok(Granularity::Day),
            Ok(proto::Granularity::Minute) | Err(_) => Err(ConvertError::UnknownGranularity),
        }
    }
}

impl TryFrom<i32> for FailureOrder {
    type Error = ConvertError;

    fn try_from(value: i32) -> Result<Self, ConvertError> {
        match proto::FailureOrder::try_from(value) {
            Ok(proto::FailureOrder::LastSeenDesc) => Ok(FailureOrder::LastSeenDesc),
            Ok(_) => Ok(FailureOrder::TotalErrorsDesc),
            Err(_) => Err(ConvertError::UnknownOrder),
        }
    }
}

impl TryFrom<i32> for IntegrationOrder {
    type Error = ConvertError;

    fn try_from(value: i32) -> Result<Self, ConvertError> {
        match proto::IntegrationOrder::try_from(value) {
            Ok(proto::IntegrationOrder::FailureRateDesc) => Ok(IntegrationOrder::FailureRateDesc),
            Ok(proto::IntegrationOrder::P99Desc) => Ok(IntegrationOrder::P99Desc),
            Ok(proto::IntegrationOrder::NameAsc) => Ok(IntegrationOrder::NameAsc),
            Ok(_) => Ok(IntegrationOrder::FailuresDesc),
            Err(_) => Err(ConvertError::UnknownOrder),
        }
    }
}

impl From<query::ErrorCount> for proto::ErrorCount {
    fn from(e: query::ErrorCount) -> Self {
        proto::ErrorCount {
            status_code: u32::from(e.status_code),
            name: e.name.to_owned(),
            failed: e.failed,
            class: class_to_wire(catalog::class_of(e.status_code)),
        }
    }
}

impl From<TypeChange> for proto::TypeChange {
    fn from(c: TypeChange) -> Self {
        let mut change = proto::TypeChange {
            integration_type: type_to_wire(c.integration_type),
            failed_current: c.failed_current,
            failed_previous: c.failed_previous,
            failed_change_percent: c.failed_change_percent,
            succeeded_current: c.succeeded_current,
            succeeded_previous: c.succeeded_previous,
            succeeded_change_percent: c.succeeded_change_percent,
            ..Default::default()
        };
        if let Some(drivers) = c.drivers {
            change.integration_drivers = drivers.integrations.into_iter().map(Into::into).collect();
            change.other_integrations = Some(drivers.other_integrations.into());
            change.code_drivers = drivers.codes.into_iter().map(Into::into).collect();
            change.other_codes = Some(drivers.other_codes.into());
        }
        change
    }
}

impl From<Contribution> for proto::Contribution {
    fn from(c: Contribution) -> Self {
        proto::Contribution {
            change: c.change(),
            key: c.key,
            name: c.name,
            current: c.current,
            previous: c.previous,
        }
    }
}

fn latency(percentiles: Percentiles, count: u64) -> Option<proto::Latency> {
    percentiles.map(|[p50, p95, p99]| proto::Latency {
        p50_ms: p50,
        p95_ms: p95,
        p99_ms: p99,
        count,
    })
}

impl From<IntegrationRow> for proto::IntegrationSummary {
    fn from(row: IntegrationRow) -> Self {
        proto::IntegrationSummary {
            integration_type: type_to_wire(row.integration_type),
            latency: latency(row.latency, row.latency_count),
            integration_id: row.integration_id,
            integration_name: row.integration_name,
            succeeded: row.succeeded,
            failed: row.failed,
            failure_rate: row.failure_rate,
            last_failure: row.last_failure_ms.map(ms_to_timestamp),
            top_error_code: row.top_error_code.map_or(0, u32::from),
            retried_failures: row.retried_failures,
            recovered_failures: row.recovered_failures,
            class_failures: row.class_failures,
            daily_failures: row
                .daily_failures
                .into_iter()
                .map(|(day, failed)| proto::DailyCount {
                    day_start: Some(ms_to_timestamp(day)),
                    failed,
                })
                .collect(),
        }
    }
}

impl From<IntegrationPoint> for proto::HealthPoint {
    fn from(point: IntegrationPoint) -> Self {
        let events = point.succeeded + point.failed;
        proto::HealthPoint {
            bucket_start: Some(ms_to_timestamp(point.bucket_start_ms)),
            succeeded: point.succeeded,
            failed: point.failed,
            failure_rate: (events > 0).then(|| point.failed as f64 / events as f64),
            latency: latency(point.latency, point.latency_count),
        }
    }
}

impl From<GroupSummary> for proto::FailureGroupSummary {
    fn from(group: GroupSummary) -> Self {
        proto::FailureGroupSummary {
            failure_id: group.failure_id,
            failure_description: group.failure_description,
            status_code: u32::from(group.status_code),
            total_errors: group.total_errors,
            last_seen: Some(ms_to_timestamp(group.last_seen_ms)),
        }
    }
}

impl From<FailureOrder> for proto::FailureOrder {
    fn from(order: FailureOrder) -> Self {
        match order {
            FailureOrder::TotalErrorsDesc => proto::FailureOrder::TotalErrorsDesc,
            FailureOrder::LastSeenDesc => proto::FailureOrder::LastSeenDesc,
        }
    }
}

impl From<Resolution> for proto::Granularity {
    fn from(resolution: Resolution) -> Self {
        match resolution {
            Resolution::Minute => proto::Granularity::Minute,
            Resolution::Hour => proto::Granularity::Hour,
            Resolution::Day => proto::Granularity::Day,
        }
    }
}

/// The wire value of an answer's resolution.
pub(super) fn resolution_to_wire(resolution: Resolution) -> i32 {
    proto::Granularity::from(resolution) as i32
}

impl From<Granularity> for proto::Granularity {
    fn from(granularity: Granularity) -> Self {
        match granularity {
            Granularity::Hour => proto::Granularity::Hour,
            Granularity::Day => proto::Granularity::Day,
        }
    }
}

impl From<query::FailureRow> for proto::FailureGroup {
    fn from(row: query::FailureRow) -> Self {
        proto::FailureGroup {
            failure_id: row.failure_id,
            integration_type: type_to_wire(row.integration_type),
            integration_id: row.integration_id,
            integration_name: row.integration_name,
            failure_description: row.failure_description,
            status_code: u32::from(row.status_code),
            service_id: row.service_id,
            service_name: row.service_name,
            flow_id: row.flow_id,
            flow_name: row.flow_name,
            total_errors: row.total_errors,
            first_seen: Some(ms_to_timestamp(row.first_seen_ms)),
            last_seen: Some(ms_to_timestamp(row.last_seen_ms)),
            issue: row.issue.map(Into::into),
        }
    }
}

impl From<IssueStatus> for proto::Issue {
    fn from(status: IssueStatus) -> Self {
        let state = match status.state {
            IssueState::Open => proto::IssueState::Open,
            IssueState::Acknowledged => proto::IssueState::Acknowledged,
            IssueState::Resolved => proto::IssueState::Resolved,
            IssueState::Snoozed => proto::IssueState::Snoozed,
            IssueState::Reopened => proto::IssueState::Reopened,
        };
        let mut issue = proto::Issue {
            state: state as i32,
            auto_resolved: status.auto_resolved,
            ..Default::default()
        };
        if let Some(action) = status.action {
            issue.last_action = match action.action {
                ActionKind::Acknowledge => proto::IssueAction::Acknowledge,
                ActionKind::Resolve => proto::IssueAction::Resolve,
                ActionKind::Snooze => proto::IssueAction::Snooze,
                ActionKind::Reopen => proto::IssueAction::Reopen,
            } as i32;
            issue.actor = action.actor;
            issue.actor_grant = action.grant;
            issue.acted_at = Some(ms_to_timestamp(action.at_ms));
            issue.note = action.note;
            issue.snoozed_until = action.until_ms.map(ms_to_timestamp);
        }
        issue
    }
}

impl From<(CatalogEntry, Vec<(IntegrationType, query::Guidance)>)> for proto::CommonError {
    fn from((entry, guidance): (CatalogEntry, Vec<(IntegrationType, query::Guidance)>)) -> Self {
        proto::CommonError {
            status_code: u32::from(entry.status_code),
            name: entry.name.to_owned(),
            description: entry.description.to_owned(),
            guidance: guidance
                .into_iter()
                .map(|(t, g)| proto::TypeGuidance {
                    integration_type: type_to_wire(t),
                    applicable: g.applicable,
                    resolution: g.resolution,
                })
                .collect(),
            cataloged: entry.cataloged,
            class: class_to_wire(catalog::class_of(entry.status_code)),
        }
    }
}

pub(crate) fn states_from_wire(states: &[i32]) -> Result<Vec<IssueState>, ConvertError> {
    states
        .iter()
        .map(|s| match proto::IssueState::try_from(*s) {
            Ok(proto::IssueState::Open) => Ok(IssueState::Open),
            Ok(proto::IssueState::Acknowledged) => Ok(IssueState::Acknowledged),
            Ok(proto::IssueState::Resolved) => Ok(IssueState::Resolved),
            Ok(proto::IssueState::Snoozed) => Ok(IssueState::Snoozed),
            Ok(proto::IssueState::Reopened) => Ok(IssueState::Reopened),
            _ => Err(ConvertError::UnknownState(*s)),
        })
        .collect()
}

pub(crate) fn action_from_wire(action: i32) -> Result<ActionKind, ConvertError> {
    match proto::IssueAction::try_from(action) {
        Ok(proto::IssueAction::Acknowledge) => Ok(ActionKind::Acknowledge),
        Ok(proto::IssueAction::Resolve) => Ok(ActionKind::Resolve),
        Ok(proto::IssueAction::Snooze) => Ok(ActionKind::Snooze),
        Ok(proto::IssueAction::Reopen) => Ok(ActionKind::Reopen),
        _ => Err(ConvertError::UnknownAction),
    }
}

/// The classes a request keeps; none means every class.
pub(crate) fn classes_from_wire(values: &[i32]) -> Result<ClassFilter, ConvertError> {
    let classes = values
        .iter()
        .map(|v| class_from_wire(*v))
        .collect::<Result<Vec<_>, _>>()?;
    Ok(ClassFilter::from_classes(&classes))
}

pub(crate) fn class_from_wire(value: i32) -> Result<catalog::ErrorClass, ConvertError> {
    match proto::ErrorClass::try_from(value) {
        Ok(proto::ErrorClass::Auth) => Ok(catalog::ErrorClass::Auth),
        Ok(proto::ErrorClass::RateLimited) => Ok(catalog::ErrorClass::RateLimited),
        Ok(proto::ErrorClass::ProviderUnavailable) => Ok(catalog::ErrorClass::ProviderUnavailable),
        Ok(proto::ErrorClass::Config) => Ok(catalog::ErrorClass::Config),
        Ok(proto::ErrorClass::Client) => Ok(catalog::ErrorClass::Client),
        _ => Err(ConvertError::UnknownClass(value)),
    }
}

pub(crate) fn class_to_wire(class: catalog::ErrorClass) -> i32 {
    let wire = match class {
        catalog::ErrorClass::Auth => proto::ErrorClass::Auth,
        catalog::ErrorClass::RateLimited => proto::ErrorClass::RateLimited,
        catalog::ErrorClass::ProviderUnavailable => proto::ErrorClass::ProviderUnavailable,
        catalog::ErrorClass::Config => proto::ErrorClass::Config,
        catalog::ErrorClass::Client => proto::ErrorClass::Client,
    };
    wire as i32
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn timestamps_round_trip_and_stay_within_years_1970_to_9999() {
        for ms in [0, 1, 1_767_225_600_123, END_OF_YEAR_9999_MS - 1] {
            assert_eq!(timestamp_to_ms("t", &ms_to_timestamp(ms)).unwrap(), ms);
        }
        let bad = Timestamp {
            seconds: 0,
            nanos: -5,
        };
        assert_eq!(
            timestamp_to_ms("t", &bad),
            Err(ConvertError::Nanos { field: "t" })
        );
        for seconds in [i64::MAX, -1, END_OF_YEAR_9999_MS / 1000, 8_210_266_876_799] {
            let outside = Timestamp { seconds, nanos: 0 };
            assert_eq!(
                timestamp_to_ms("t", &outside),
                Err(ConvertError::OutOfRange { field: "t" })
            );
        }
    }

    #[test]
    fn unknown_integration_types_are_invalid() {
        assert!(type_from_wire(0).is_err());
        assert!(type_from_wire(6).is_err());
        for t in IntegrationType::ALL {
            assert_eq!(type_from_wire(type_to_wire(t)), Ok(t));
        }
    }

    #[test]
    fn classes_round_trip_and_unknown_ones_are_invalid() {
        for value in [0, 6, -1] {
            let status = Status::from(classes_from_wire(&[value]).unwrap_err());
            assert_eq!(status.code(), tonic::Code::InvalidArgument);
        }
        for class in catalog::ErrorClass::ALL {
            assert_eq!(class_from_wire(class_to_wire(class)), Ok(class));
        }
        assert_eq!(classes_from_wire(&[]), Ok(ClassFilter::all()));
    }

    #[test]
    fn orders_and_granularities_round_trip() {
        for order in [FailureOrder::TotalErrorsDesc, FailureOrder::LastSeenDesc] {
            let wire = proto::FailureOrder::from(order) as i32;
            assert_eq!(FailureOrder::try_from(wire), Ok(order));
        }
        for granularity in [Granularity::Hour, Granularity::Day] {
            let wire = proto::Granularity::from(granularity) as i32;
            assert_eq!(Granularity::try_from(wire), Ok(granularity));
        }
        assert_eq!(status_code_filter(1000), Err(ConvertError::StatusCode));
    }
}
