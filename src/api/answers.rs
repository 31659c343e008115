//! Every answer's message, built from the query's domain answer. The coverage fields are
//! filled afterwards by `coverage::respond`.

use super::convert::{class_to_wire, ms_to_timestamp, resolution_to_wire, type_to_wire};
use crate::catalog::ErrorClass;
use crate::proto;
use crate::query::{
    ErrorBreakdown, FailureDetails, FailurePage, IntegrationHealth, IntegrationPage, Overview,
    PercentageChange, Trends,
};

impl From<Overview> for proto::GetOverviewResponse {
    fn from(overview: Overview) -> Self {
        let types = overview.types.into_iter().map(|t| proto::TypeCounts {
            integration_type: type_to_wire(t.integration_type),
            failed: t.failed,
            succeeded: t.succeeded,
        });
        proto::GetOverviewResponse {
            types: types.collect(),
            classes: classes_to_wire(overview.classes),
            effective_range: Some(overview.effective_range.into()),
            granularity: resolution_to_wire(overview.resolution),
            ..Default::default()
        }
    }
}

fn classes_to_wire(classes: [(ErrorClass, u64); ErrorClass::ALL.len()]) -> Vec<proto::ClassCount> {
    let count = |(class, failed)| proto::ClassCount {
        class: class_to_wire(class),
        failed,
    };
    classes.into_iter().map(count).collect()
}

impl From<PercentageChange> for proto::GetPercentageChangeResponse {
    fn from(change: PercentageChange) -> Self {
        proto::GetPercentageChangeResponse {
            types: change.types.into_iter().map(Into::into).collect(),
            current_range: Some(change.current_range.into()),
            previous_range: Some(change.previous_range.into()),
            granularity: resolution_to_wire(change.resolution),
            ..Default::default()
        }
    }
}

impl From<ErrorBreakdown> for proto::GetErrorBreakdownResponse {
    fn from(breakdown: ErrorBreakdown) -> Self {
        let classes = classes_to_wire(breakdown.classes());
        proto::GetErrorBreakdownResponse {
            classes,
            errors: breakdown.errors.into_iter().map(Into::into).collect(),
            effective_range: Some(breakdown.effective_range.into()),
            granularity: resolution_to_wire(breakdown.resolution),
            ..Default::default()
        }
    }
}

impl From<Trends> for proto::GetTrendsResponse {
    fn from(trends: Trends) -> Self {
        let series = trends.series.into_iter().map(|s| proto::TrendSeries {
            integration_type: type_to_wire(s.integration_type),
            points: s
                .points
                .into_iter()
                .map(|(start, failed)| proto::TrendPoint {
                    bucket_start: Some(ms_to_timestamp(start)),
                    failed,
                })
                .collect(),
        });
        proto::GetTrendsResponse {
            series: series.collect(),
            effective_range: Some(trends.effective_range.into()),
            utc_days_until: trends.utc_days_until_ms.map(ms_to_timestamp),
            ..Default::default()
        }
    }
}

impl From<FailurePage> for proto::ListFailuresResponse {
    fn from(page: FailurePage) -> Self {
        proto::ListFailuresResponse {
            failures: page.failures.into_iter().map(Into::into).collect(),
            next_page_token: page.next_page_token.unwrap_or_default(),
            total_groups: page.total_groups,
            effective_range: Some(page.effective_range.into()),
            granularity: resolution_to_wire(page.resolution),
            ..Default::default()
        }
    }
}

impl From<FailurePage> for proto::ListIssuesResponse {
    fn from(page: FailurePage) -> Self {
        proto::ListIssuesResponse {
            issues: page.failures.into_iter().map(Into::into).collect(),
            next_page_token: page.next_page_token.unwrap_or_default(),
            total_issues: page.total_groups,
            effective_range: Some(page.effective_range.into()),
            granularity: resolution_to_wire(page.resolution),
            ..Default::default()
        }
    }
}

impl From<FailureDetails> for proto::GetFailureDetailsResponse {
    fn from(details: FailureDetails) -> Self {
        let failure = proto::FailureGroup::from(details.failure);
        let hourly_trend = details
            .trend
            .into_iter()
            .map(|(start, failed)| proto::HourlyPoint {
                bucket_start: Some(ms_to_timestamp(start)),
                failed,
            });
        let recent_samples = details
            .recent_samples
            .into_iter()
            .map(|s| proto::SampleEvent {
                event_id: s.event_id,
                occurred_at: Some(ms_to_timestamp(s.occurred_at_ms)),
                error_message: s.error_message,
            });
        proto::GetFailureDetailsResponse {
            integration_id: failure.integration_id.clone(),
            service_id: failure.service_id.clone(),
            flow_id: failure.flow_id.clone(),
            failure: Some(failure),
            guidance: Some(proto::Guidance {
                applicable: details.guidance.applicable,
                resolution: details.guidance.resolution,
            }),
            hourly_trend: hourly_trend.collect(),
            recent_samples: recent_samples.collect(),
            effective_range: Some(details.effective_range.into()),
            granularity: resolution_to_wire(details.resolution),
            ..Default::default()
        }
    }
}

impl From<IntegrationPage> for proto::ListIntegrationsResponse {
    fn from(page: IntegrationPage) -> Self {
        proto::ListIntegrationsResponse {
            integrations: page.integrations.into_iter().map(Into::into).collect(),
            next_page_token: page.next_page_token.unwrap_or_default(),
            total_integrations: page.total_integrations,
            effective_range: Some(page.effective_range.into()),
            granularity: resolution_to_wire(page.resolution),
            ..Default::default()
        }
    }
}

impl From<IntegrationHealth> for proto::GetIntegrationHealthResponse {
    fn from(health: IntegrationHealth) -> Self {
        proto::GetIntegrationHealthResponse {
            integration: Some(health.summary.into()),
            series: health.series.into_iter().map(Into::into).collect(),
            error_codes: health.error_codes.into_iter().map(Into::into).collect(),
            top_failures: health.top_failures.into_iter().map(Into::into).collect(),
            effective_range: Some(health.effective_range.into()),
            granularity: resolution_to_wire(health.resolution),
            utc_days_until: health.utc_days_until_ms.map(ms_to_timestamp),
            ..Default::default()
        }
    }
}
