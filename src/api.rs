//! The thin gRPC adapter: check the caller, convert protobuf to domain types, call `query`,
//! convert back. Domain errors become gRPC statuses in `status_from`, and nowhere else.

// Handlers must return `tonic::Status`; boxing it in the helpers would only add conversions.
#![allow(clippy::result_large_err)]

use std::collections::{HashMap, HashSet};
use std::future::Future;
use std::sync::Arc;
use std::time::Instant;

use prost_types::{Duration as ProtoDuration, Timestamp};
use tonic::metadata::MetadataMap;
use tonic::{Request, Response, Status};
use tracing::instrument;

use crate::catalog::CatalogEntry;
use crate::event::{is_tenant_char, IntegrationType, MAX_TENANT_ID_CHARS};
use crate::proto;
use crate::proto::integration_health_server::IntegrationHealth;
use crate::query::{self, QueryEngine, QueryError, TimeRange, TypeFilter};
use crate::telemetry::Metrics;

/// Which tenants each bearer token may read. With no tokens configured the API is open,
/// which suits the demo and a private network; production configs should set tokens.
#[derive(Debug, Clone, Default)]
pub struct Auth {
    grants: HashMap<String, TenantGrant>,
}

#[derive(Debug, Clone)]
enum TenantGrant {
    All,
    Only(HashSet<String>),
}

impl Auth {
    pub fn open() -> Self {
        Auth::default()
    }

    /// `tenants` containing `"*"` grants every tenant.
    pub fn with_tokens<'a>(grants: impl IntoIterator<Item = (&'a str, &'a [String])>) -> Self {
        let grants = grants
            .into_iter()
            .map(|(token, tenants)| {
                let grant = if tenants.iter().any(|t| t == "*") {
                    TenantGrant::All
                } else {
                    TenantGrant::Only(tenants.iter().cloned().collect())
                };
                (token.to_owned(), grant)
            })
            .collect();
        Auth { grants }
    }

    /// Checks the caller's token, and its right to `tenant_id` when the call names one.
    pub fn check(&self, metadata: &MetadataMap, tenant_id: Option<&str>) -> Result<(), Status> {
        if self.grants.is_empty() {
            return Ok(());
        }
        let header = metadata
            .get("authorization")
            .ok_or_else(|| Status::unauthenticated("missing authorization: Bearer <token>"))?;
        let token = header
            .to_str()
            .ok()
            .and_then(|v| v.strip_prefix("Bearer "))
            .ok_or_else(|| Status::unauthenticated("authorization must be \"Bearer <token>\""))?;
        let grant = self
            .grants
            .get(token.trim())
            .ok_or_else(|| Status::unauthenticated("unknown token"))?;
        match (grant, tenant_id) {
            (TenantGrant::Only(allowed), Some(tenant)) if !allowed.contains(tenant) => Err(
                Status::permission_denied(format!("this token may not read tenant {tenant:?}")),
            ),
            _ => Ok(()),
        }
    }
}

pub struct IntegrationHealthApi {
    engine: QueryEngine,
    auth: Auth,
    metrics: Arc<Metrics>,
}

impl IntegrationHealthApi {
    pub fn new(engine: QueryEngine, auth: Auth, metrics: Arc<Metrics>) -> Self {
        IntegrationHealthApi {
            engine,
            auth,
            metrics,
        }
    }

    /// Runs one call and records its status and latency.
    async fn timed<T>(
        &self,
        rpc: &'static str,
        call: impl Future<Output = Result<Response<T>, Status>>,
    ) -> Result<Response<T>, Status> {
        let started = Instant::now();
        let result = call.await;
        let code = result
            .as_ref()
            .map_or_else(Status::code, |_| tonic::Code::Ok);
        self.metrics.rpc(rpc, code, started.elapsed());
        result
    }

    fn tenant<T>(&self, request: &Request<T>, tenant_id: &str) -> Result<(), Status> {
        validate_tenant(tenant_id)?;
        self.auth.check(request.metadata(), Some(tenant_id))
    }
}

pub fn status_from(error: QueryError) -> Status {
    match error {
        QueryError::InvalidArgument(m) => Status::invalid_argument(m),
        QueryError::NotFound(m) => Status::not_found(m),
        QueryError::TooLarge(m) => Status::resource_exhausted(m),
    }
}

fn validate_tenant(tenant_id: &str) -> Result<(), Status> {
    let valid_chars = tenant_id.chars().all(is_tenant_char);
    if tenant_id.is_empty() || tenant_id.len() > MAX_TENANT_ID_CHARS || !valid_chars {
        return Err(Status::invalid_argument(
            "tenant_id must be 1..64 characters of A-Z a-z 0-9 . _ : -",
        ));
    }
    Ok(())
}

pub fn timestamp_to_ms(field: &str, t: &Timestamp) -> Result<i64, Status> {
    if !(0..1_000_000_000).contains(&t.nanos) {
        return Err(Status::invalid_argument(format!(
            "{field}.nanos must be in 0..1e9"
        )));
    }
    t.seconds
        .checked_mul(1000)
        .and_then(|ms| ms.checked_add(i64::from(t.nanos / 1_000_000)))
        .filter(|ms| chrono::DateTime::from_timestamp_millis(*ms).is_some())
        .ok_or_else(|| Status::invalid_argument(format!("{field} is out of range")))
}

pub fn ms_to_timestamp(ms: i64) -> Timestamp {
    Timestamp {
        seconds: ms.div_euclid(1000),
        nanos: (ms.rem_euclid(1000) * 1_000_000) as i32,
    }
}

fn duration_to_ms(field: &str, d: &ProtoDuration) -> Result<i64, Status> {
    d.seconds
        .checked_mul(1000)
        .and_then(|ms| ms.checked_add(i64::from(d.nanos / 1_000_000)))
        .filter(|ms| *ms > 0)
        .ok_or_else(|| Status::invalid_argument(format!("{field} must be a positive duration")))
}

fn range_from(range: Option<&proto::TimeRange>) -> Result<Option<TimeRange>, Status> {
    let Some(range) = range else {
        return Ok(None);
    };
    let (Some(start), Some(end)) = (&range.start, &range.end) else {
        return Err(Status::invalid_argument(
            "range needs both start and end; omit range for the default",
        ));
    };
    Ok(Some(TimeRange {
        start_ms: timestamp_to_ms("range.start", start)?,
        end_ms: timestamp_to_ms("range.end", end)?,
    }))
}

fn range_to(range: TimeRange) -> proto::TimeRange {
    proto::TimeRange {
        start: Some(ms_to_timestamp(range.start_ms)),
        end: Some(ms_to_timestamp(range.end_ms)),
    }
}

pub fn type_from(value: i32) -> Result<IntegrationType, Status> {
    match proto::IntegrationType::try_from(value) {
        Ok(proto::IntegrationType::InboundWebhook) => Ok(IntegrationType::InboundWebhook),
        Ok(proto::IntegrationType::OutboundWebhook) => Ok(IntegrationType::OutboundWebhook),
        Ok(proto::IntegrationType::PrebuiltIntegration) => Ok(IntegrationType::PrebuiltIntegration),
        Ok(proto::IntegrationType::CustomNode) => Ok(IntegrationType::CustomNode),
        Ok(proto::IntegrationType::CustomEvent) => Ok(IntegrationType::CustomEvent),
        _ => Err(Status::invalid_argument(format!(
            "integration type {value} is not one of 1..=5"
        ))),
    }
}

pub fn type_to(t: IntegrationType) -> i32 {
    let proto_type = match t {
        IntegrationType::InboundWebhook => proto::IntegrationType::InboundWebhook,
        IntegrationType::OutboundWebhook => proto::IntegrationType::OutboundWebhook,
        IntegrationType::PrebuiltIntegration => proto::IntegrationType::PrebuiltIntegration,
        IntegrationType::CustomNode => proto::IntegrationType::CustomNode,
        IntegrationType::CustomEvent => proto::IntegrationType::CustomEvent,
    };
    proto_type as i32
}

fn types_from(values: &[i32]) -> Result<TypeFilter, Status> {
    let types = values
        .iter()
        .map(|v| type_from(*v))
        .collect::<Result<Vec<_>, _>>()?;
    Ok(TypeFilter::from_types(&types))
}

fn non_empty(text: &str) -> Option<String> {
    (!text.is_empty()).then(|| text.to_owned())
}

fn failure_to(row: query::FailureRow) -> proto::FailureGroup {
    proto::FailureGroup {
        failure_id: row.failure_id,
        integration_type: type_to(row.integration_type),
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
    }
}

fn common_error_to(
    entry: CatalogEntry,
    guidance: Vec<(IntegrationType, query::Guidance)>,
) -> proto::CommonError {
    proto::CommonError {
        status_code: u32::from(entry.status_code),
        name: entry.name.to_owned(),
        description: entry.description.to_owned(),
        guidance: guidance
            .into_iter()
            .map(|(t, g)| proto::TypeGuidance {
                integration_type: type_to(t),
                applicable: g.applicable,
                resolution: g.resolution,
            })
            .collect(),
        cataloged: entry.cataloged,
    }
}

#[tonic::async_trait]
impl IntegrationHealth for IntegrationHealthApi {
    #[instrument(skip(self, request), fields(rpc = "GetOverview", tenant = %request.get_ref().tenant_id))]
    async fn get_overview(
        &self,
        request: Request<proto::GetOverviewRequest>,
    ) -> Result<Response<proto::GetOverviewResponse>, Status> {
        self.timed("GetOverview", async {
            let req = request.get_ref();
            self.tenant(&request, &req.tenant_id)?;
            let overview = self
                .engine
                .overview(
                    &req.tenant_id,
                    range_from(req.range.as_ref())?,
                    types_from(&req.integration_types)?,
                )
                .map_err(status_from)?;
            Ok(Response::new(proto::GetOverviewResponse {
                types: overview
                    .types
                    .into_iter()
                    .map(|t| proto::TypeCounts {
                        integration_type: type_to(t.integration_type),
                        failed: t.failed,
                        succeeded: t.succeeded,
                    })
                    .collect(),
                effective_range: Some(range_to(overview.effective_range)),
            }))
        })
        .await
    }

    #[instrument(skip(self, request), fields(rpc = "GetPercentageChange", tenant = %request.get_ref().tenant_id))]
    async fn get_percentage_change(
        &self,
        request: Request<proto::GetPercentageChangeRequest>,
    ) -> Result<Response<proto::GetPercentageChangeResponse>, Status> {
        self.timed("GetPercentageChange", async {
            let req = request.get_ref();
            self.tenant(&request, &req.tenant_id)?;
            let period = req
                .period
                .as_ref()
                .map(|d| duration_to_ms("period", d))
                .transpose()?;
            let end = req
                .end
                .as_ref()
                .map(|t| timestamp_to_ms("end", t))
                .transpose()?;
            let change = self
                .engine
                .percentage_change(
                    &req.tenant_id,
                    period,
                    end,
                    types_from(&req.integration_types)?,
                )
                .map_err(status_from)?;
            Ok(Response::new(proto::GetPercentageChangeResponse {
                types: change
                    .types
                    .into_iter()
                    .map(|c| proto::TypeChange {
                        integration_type: type_to(c.integration_type),
                        failed_current: c.failed_current,
                        failed_previous: c.failed_previous,
                        failed_change_percent: c.failed_change_percent,
                        succeeded_current: c.succeeded_current,
                        succeeded_previous: c.succeeded_previous,
                        succeeded_change_percent: c.succeeded_change_percent,
                    })
                    .collect(),
                current_range: Some(range_to(change.current_range)),
                previous_range: Some(range_to(change.previous_range)),
            }))
        })
        .await
    }

    #[instrument(skip(self, request), fields(rpc = "GetErrorBreakdown", tenant = %request.get_ref().tenant_id))]
    async fn get_error_breakdown(
        &self,
        request: Request<proto::GetErrorBreakdownRequest>,
    ) -> Result<Response<proto::GetErrorBreakdownResponse>, Status> {
        self.timed("GetErrorBreakdown", async {
            let req = request.get_ref();
            self.tenant(&request, &req.tenant_id)?;
            let breakdown = self
                .engine
                .error_breakdown(
                    &req.tenant_id,
                    range_from(req.range.as_ref())?,
                    types_from(&req.integration_types)?,
                )
                .map_err(status_from)?;
            Ok(Response::new(proto::GetErrorBreakdownResponse {
                errors: breakdown
                    .errors
                    .into_iter()
                    .map(|e| proto::ErrorCount {
                        status_code: u32::from(e.status_code),
                        name: e.name.to_owned(),
                        failed: e.failed,
                    })
                    .collect(),
                effective_range: Some(range_to(breakdown.effective_range)),
            }))
        })
        .await
    }

    #[instrument(skip(self, request), fields(rpc = "GetTrends", tenant = %request.get_ref().tenant_id))]
    async fn get_trends(
        &self,
        request: Request<proto::GetTrendsRequest>,
    ) -> Result<Response<proto::GetTrendsResponse>, Status> {
        self.timed("GetTrends", async {
            let req = request.get_ref();
            self.tenant(&request, &req.tenant_id)?;
            let granularity = match proto::Granularity::try_from(req.granularity) {
                Ok(proto::Granularity::Hour) => query::Granularity::Hour,
                Ok(proto::Granularity::Day | proto::Granularity::Unspecified) => {
                    query::Granularity::Day
                }
                Err(_) => return Err(Status::invalid_argument("granularity must be HOUR or DAY")),
            };
            let trends = self
                .engine
                .trends(
                    &req.tenant_id,
                    range_from(req.range.as_ref())?,
                    types_from(&req.integration_types)?,
                    granularity,
                    &req.time_zone,
                )
                .map_err(status_from)?;
            Ok(Response::new(proto::GetTrendsResponse {
                series: trends
                    .series
                    .into_iter()
                    .map(|s| proto::TrendSeries {
                        integration_type: type_to(s.integration_type),
                        points: s
                            .points
                            .into_iter()
                            .map(|(start, failed)| proto::TrendPoint {
                                bucket_start: Some(ms_to_timestamp(start)),
                                failed,
                            })
                            .collect(),
                    })
                    .collect(),
                effective_range: Some(range_to(trends.effective_range)),
            }))
        })
        .await
    }

    #[instrument(skip(self, request), fields(rpc = "ListFailures", tenant = %request.get_ref().tenant_id))]
    async fn list_failures(
        &self,
        request: Request<proto::ListFailuresRequest>,
    ) -> Result<Response<proto::ListFailuresResponse>, Status> {
        self.timed("ListFailures", async {
            let req = request.get_ref();
            self.tenant(&request, &req.tenant_id)?;
            let status_code = match req.status_code {
                0 => None,
                code @ 100..=999 => Some(code as u16),
                _ => {
                    return Err(Status::invalid_argument(
                        "status_code must be 0 (any) or 100..=999",
                    ))
                }
            };
            let order = match proto::FailureOrder::try_from(req.order_by) {
                Ok(proto::FailureOrder::LastSeenDesc) => query::FailureOrder::LastSeenDesc,
                Ok(_) => query::FailureOrder::TotalErrorsDesc,
                Err(_) => return Err(Status::invalid_argument("order_by is not a known order")),
            };
            let page = self
                .engine
                .list_failures(&query::ListFailuresRequest {
                    tenant_id: req.tenant_id.clone(),
                    range: range_from(req.range.as_ref())?,
                    types: types_from(&req.integration_types)?,
                    filter: query::FailureFilter {
                        integration_id: non_empty(&req.integration_id),
                        status_code,
                        flow_id: non_empty(&req.flow_id),
                        service_id: non_empty(&req.service_id),
                    },
                    page_size: req.page_size as usize,
                    page_token: non_empty(&req.page_token),
                    order,
                })
                .map_err(status_from)?;
            Ok(Response::new(proto::ListFailuresResponse {
                failures: page.failures.into_iter().map(failure_to).collect(),
                next_page_token: page.next_page_token.unwrap_or_default(),
                total_groups: page.total_groups,
                effective_range: Some(range_to(page.effective_range)),
            }))
        })
        .await
    }

    #[instrument(skip(self, request), fields(rpc = "GetFailureDetails", tenant = %request.get_ref().tenant_id))]
    async fn get_failure_details(
        &self,
        request: Request<proto::GetFailureDetailsRequest>,
    ) -> Result<Response<proto::GetFailureDetailsResponse>, Status> {
        self.timed("GetFailureDetails", async {
            let req = request.get_ref();
            self.tenant(&request, &req.tenant_id)?;
            let details = self
                .engine
                .failure_details(
                    &req.tenant_id,
                    &req.failure_id,
                    range_from(req.range.as_ref())?,
                )
                .map_err(status_from)?;
            let failure = failure_to(details.failure);
            Ok(Response::new(proto::GetFailureDetailsResponse {
                integration_id: failure.integration_id.clone(),
                service_id: failure.service_id.clone(),
                flow_id: failure.flow_id.clone(),
                failure: Some(failure),
                guidance: Some(proto::Guidance {
                    applicable: details.guidance.applicable,
                    resolution: details.guidance.resolution,
                }),
                hourly_trend: details
                    .hourly_trend
                    .into_iter()
                    .map(|(start, failed)| proto::HourlyPoint {
                        bucket_start: Some(ms_to_timestamp(start)),
                        failed,
                    })
                    .collect(),
                recent_samples: details
                    .recent_samples
                    .into_iter()
                    .map(|s| proto::SampleEvent {
                        event_id: s.event_id,
                        occurred_at: Some(ms_to_timestamp(s.occurred_at_ms)),
                        error_message: s.error_message,
                    })
                    .collect(),
                effective_range: Some(range_to(details.effective_range)),
            }))
        })
        .await
    }

    #[instrument(skip(self, request), fields(rpc = "ListCommonErrors"))]
    async fn list_common_errors(
        &self,
        request: Request<proto::ListCommonErrorsRequest>,
    ) -> Result<Response<proto::ListCommonErrorsResponse>, Status> {
        self.timed("ListCommonErrors", async {
            self.auth.check(request.metadata(), None)?;
            let req = request.get_ref();
            let integration_type = match req.integration_type {
                0 => None,
                t => Some(type_from(t)?),
            };
            let status_code = match req.status_code {
                0 => None,
                code @ 100..=999 => Some(code as u16),
                _ => {
                    return Err(Status::invalid_argument(
                        "status_code must be 0 (all) or 100..=999",
                    ))
                }
            };
            let errors = self
                .engine
                .common_errors(integration_type, status_code)
                .into_iter()
                .map(|(entry, guidance)| common_error_to(entry, guidance))
                .collect();
            Ok(Response::new(proto::ListCommonErrorsResponse { errors }))
        })
        .await
    }

    #[instrument(skip(self, request), fields(rpc = "GetIngestStatus"))]
    async fn get_ingest_status(
        &self,
        request: Request<proto::GetIngestStatusRequest>,
    ) -> Result<Response<proto::GetIngestStatusResponse>, Status> {
        self.timed("GetIngestStatus", async {
            self.auth.check(request.metadata(), None)?;
            let status = self.engine.ingest_status();
            Ok(Response::new(proto::GetIngestStatusResponse {
                partitions: status
                    .partitions
                    .into_iter()
                    .map(|p| proto::PartitionStatus {
                        topic: p.topic,
                        partition: p.partition,
                        next_offset: p.next_offset,
                        high_watermark: p.high_watermark,
                        lag: p.lag,
                        snapshot_next_offset: p.snapshot.map_or(-1, |s| s.next_offset),
                        snapshot_age_seconds: if p.snapshot_age_ms < 0 {
                            -1.0
                        } else {
                            p.snapshot_age_ms as f64 / 1000.0
                        },
                        snapshot_bytes: p.snapshot.map_or(0, |s| s.bytes),
                        snapshot_encode_ms: p.snapshot.map_or(0.0, |s| s.encode_ms),
                        snapshot_write_ms: p.snapshot.map_or(0.0, |s| s.write_ms),
                    })
                    .collect(),
                accepted: status.totals.accepted,
                rejected: status.totals.rejected,
                duplicates: status.totals.duplicates,
                late_dropped: status.totals.late_dropped,
                overflowed: status.totals.overflowed,
            }))
        })
        .await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn timestamps_round_trip_including_negative_millis() {
        for ms in [-1_500, -1, 0, 1, 1_767_225_600_123] {
            assert_eq!(timestamp_to_ms("t", &ms_to_timestamp(ms)).unwrap(), ms);
        }
        let bad = Timestamp {
            seconds: 0,
            nanos: -5,
        };
        assert_eq!(
            timestamp_to_ms("t", &bad).unwrap_err().code(),
            tonic::Code::InvalidArgument
        );
        let huge = Timestamp {
            seconds: i64::MAX,
            nanos: 0,
        };
        assert_eq!(
            timestamp_to_ms("t", &huge).unwrap_err().code(),
            tonic::Code::InvalidArgument
        );
    }

    #[test]
    fn auth_distinguishes_unknown_callers_from_forbidden_tenants() {
        let tenants = vec!["acme".to_owned()];
        let auth = Auth::with_tokens([("s3cret", tenants.as_slice())]);
        let mut metadata = MetadataMap::new();
        assert_eq!(
            auth.check(&metadata, Some("acme")).unwrap_err().code(),
            tonic::Code::Unauthenticated
        );
        metadata.insert("authorization", "Bearer s3cret".parse().unwrap());
        assert!(auth.check(&metadata, Some("acme")).is_ok());
        assert_eq!(
            auth.check(&metadata, Some("globex")).unwrap_err().code(),
            tonic::Code::PermissionDenied
        );
        metadata.insert("authorization", "Bearer nope".parse().unwrap());
        assert_eq!(
            auth.check(&metadata, None).unwrap_err().code(),
            tonic::Code::Unauthenticated
        );
    }

    #[test]
    fn unknown_integration_types_are_invalid() {
        assert!(type_from(0).is_err());
        assert!(type_from(6).is_err());
        assert_eq!(
            type_from(type_to(IntegrationType::CustomEvent)).unwrap(),
            IntegrationType::CustomEvent
        );
    }
}
