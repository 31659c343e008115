//! The calls about the whole service rather than one tenant: `ListCommonErrors`,
//! `ListTenants`, `GetIngestStatus` and `GetCaller`.

// Handlers must return `tonic::Status`.
#![allow(clippy::result_large_err)]

use tonic::{Request, Response, Status};
use tracing::instrument;

use super::auth::Access;
use super::convert::{optional_range, resolution_to_wire, status_code_filter, type_from_wire};
use super::coverage::respond;
use super::status::{add_unreported, merge_status, status_response};
use super::status_from;
use super::IntegrationHealthApi;
use crate::proto;
use crate::query;

impl IntegrationHealthApi {
    #[instrument(
        name = "list_common_errors",
        skip_all,
        fields(rpc = "ListCommonErrors")
    )]
    pub(super) async fn common_errors_call(
        &self,
        request: Request<proto::ListCommonErrorsRequest>,
    ) -> Result<Response<proto::ListCommonErrorsResponse>, Status> {
        self.timed("ListCommonErrors", async {
            self.caller(&request, Access::Any)?;
            let req = request.get_ref();
            let integration_type = match req.integration_type {
                0 => None,
                t => Some(type_from_wire(t)?),
            };
            let status_code = status_code_filter(req.status_code)?;
            let errors = self.engine.common_errors(integration_type, status_code);
            let errors = errors.into_iter().map(Into::into).collect();
            Ok(Response::new(proto::ListCommonErrorsResponse { errors }))
        })
        .await
    }

    #[instrument(name = "list_tenants", skip_all, fields(rpc = "ListTenants"))]
    pub(super) async fn tenants_call(
        &self,
        request: Request<proto::ListTenantsRequest>,
    ) -> Result<Response<proto::ListTenantsResponse>, Status> {
        self.timed("ListTenants", async {
            self.caller(&request, Access::Any)?;
            let readable = self.auth.current().readable_tenants(request.metadata())?;
            let req = request.get_ref();
            let range = optional_range(req.range.as_ref())?;
            let range = self.engine.tenants_range(range).map_err(status_from)?;
            let (lists, coverage) = self
                .tenant_lists(range, request.metadata(), req.allow_partial)
                .await?;
            let tenants = query::merge_tenants(lists, readable);
            let answer = proto::ListTenantsResponse {
                tenants: tenants.into_iter().map(Into::into).collect(),
                effective_range: Some(range.into()),
                granularity: resolution_to_wire(self.engine.tenants_resolution(range)),
                ..Default::default()
            };
            Ok(respond(&coverage, answer))
        })
        .await
    }

    #[instrument(name = "get_caller", skip_all, fields(rpc = "GetCaller"))]
    pub(super) async fn caller_call(
        &self,
        request: Request<proto::GetCallerRequest>,
    ) -> Result<Response<proto::GetCallerResponse>, Status> {
        self.timed("GetCaller", async {
            self.caller(&request, Access::Any)?;
            let answer = self.auth.current().describe_caller(request.metadata())?;
            Ok(Response::new(answer))
        })
        .await
    }

    #[instrument(name = "get_ingest_status", skip_all, fields(rpc = "GetIngestStatus"))]
    pub(super) async fn ingest_status_call(
        &self,
        request: Request<proto::GetIngestStatusRequest>,
    ) -> Result<Response<proto::GetIngestStatusResponse>, Status> {
        self.timed("GetIngestStatus", async {
            self.caller(&request, Access::Operator)?;
            let now = self.clock.now_ms();
            let status = self.progress.status(self.engine.store(), now);
            let Some(cluster) = &self.cluster else {
                return Ok(Response::new(status_response(status, "")));
            };
            let mut all = status_response(status, &cluster.config.advertise_addr);
            for (_, peer) in cluster.peer_statuses().await {
                merge_status(&mut all, peer);
            }
            add_unreported(&mut all, cluster);
            Ok(Response::new(all))
        })
        .await
    }
}
