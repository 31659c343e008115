//! The tenant's counts: `GetOverview`, `GetPercentageChange`, `GetErrorBreakdown`, `GetTrends`.

// Handlers must return `tonic::Status`.
#![allow(clippy::result_large_err)]

use tonic::{Request, Response, Status};
use tracing::instrument;

use super::convert::{
    bounded, classes_from_wire, duration_to_ms, optional_range, timestamp_to_ms, types_from_wire,
};
use super::service::ApiClient;
use super::IntegrationHealthApi;
use crate::proto;
use crate::query::{Granularity, QueryEngine};

type Answer<T> = Result<Response<T>, Status>;

impl IntegrationHealthApi {
    #[instrument(name = "get_overview", skip_all, fields(rpc = "GetOverview", tenant = tracing::field::Empty))]
    pub(super) async fn overview_call(
        &self,
        request: Request<proto::GetOverviewRequest>,
    ) -> Answer<proto::GetOverviewResponse> {
        let forward = |mut owner: ApiClient, r| async move { owner.get_overview(r).await };
        self.tenant_call("GetOverview", request, forward, |req| {
            let tenant = req.tenant_id.clone();
            let range = optional_range(req.range.as_ref())?;
            let types = types_from_wire(&req.integration_types)?;
            Ok(move |engine: &QueryEngine| engine.overview(&tenant, range, types))
        })
        .await
    }

    #[instrument(name = "get_percentage_change", skip_all, fields(rpc = "GetPercentageChange", tenant = tracing::field::Empty))]
    pub(super) async fn change_call(
        &self,
        request: Request<proto::GetPercentageChangeRequest>,
    ) -> Answer<proto::GetPercentageChangeResponse> {
        let forward = |mut owner: ApiClient, r| async move { owner.get_percentage_change(r).await };
        self.tenant_call("GetPercentageChange", request, forward, |req| {
            let tenant = req.tenant_id.clone();
            let period = req.period.as_ref();
            let period = period.map(|d| duration_to_ms("period", d)).transpose()?;
            let end = req.end.as_ref().map(|t| timestamp_to_ms("end", t));
            let end = end.transpose()?;
            let types = types_from_wire(&req.integration_types)?;
            let drivers = req.include_drivers;
            Ok(move |engine: &QueryEngine| {
                engine.percentage_change(&tenant, period, end, types, drivers)
            })
        })
        .await
    }

    #[instrument(name = "get_error_breakdown", skip_all, fields(rpc = "GetErrorBreakdown", tenant = tracing::field::Empty))]
    pub(super) async fn errors_call(
        &self,
        request: Request<proto::GetErrorBreakdownRequest>,
    ) -> Answer<proto::GetErrorBreakdownResponse> {
        let forward = |mut owner: ApiClient, r| async move { owner.get_error_breakdown(r).await };
        self.tenant_call("GetErrorBreakdown", request, forward, |req| {
            let tenant = req.tenant_id.clone();
            let range = optional_range(req.range.as_ref())?;
            let types = types_from_wire(&req.integration_types)?;
            Ok(move |engine: &QueryEngine| engine.error_breakdown(&tenant, range, types))
        })
        .await
    }

    #[instrument(name = "get_trends", skip_all, fields(rpc = "GetTrends", tenant = tracing::field::Empty))]
    pub(super) async fn trends_call(
        &self,
        request: Request<proto::GetTrendsRequest>,
    ) -> Answer<proto::GetTrendsResponse> {
        let forward = |mut owner: ApiClient, r| async move { owner.get_trends(r).await };
        self.tenant_call("GetTrends", request, forward, |req| {
            let tenant = req.tenant_id.clone();
            let granularity = Granularity::try_from(req.granularity)?;
            let range = optional_range(req.range.as_ref())?;
            let types = types_from_wire(&req.integration_types)?;
            let classes = classes_from_wire(&req.classes)?;
            let zone = bounded("time_zone", &req.time_zone, 64)?.to_owned();
            Ok(move |engine: &QueryEngine| {
                engine.trends(&tenant, range, types, classes, granularity, &zone)
            })
        })
        .await
    }
}
