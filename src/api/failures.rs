//! The failures table and its drill-down: `ListFailures`, `GetFailureDetails`.

// Handlers must return `tonic::Status`.
#![allow(clippy::result_large_err)]

use tonic::{Request, Response, Status};
use tracing::instrument;

use super::convert::{
    bounded, classes_from_wire, non_empty, optional_range, status_code_filter, types_from_wire,
};
use super::service::ApiClient;
use super::IntegrationHealthApi;
use crate::event::{MAX_INTEGRATION_ID_CHARS, MAX_NAME_CHARS};
use crate::proto;
use crate::query::{self, FailureOrder, QueryEngine};

impl IntegrationHealthApi {
    #[instrument(name = "list_failures", skip_all, fields(rpc = "ListFailures", tenant = tracing::field::Empty))]
    pub(super) async fn failures_call(
        &self,
        request: Request<proto::ListFailuresRequest>,
    ) -> Result<Response<proto::ListFailuresResponse>, Status> {
        let forward = |mut owner: ApiClient, r| async move { owner.list_failures(r).await };
        self.tenant_call("ListFailures", request, forward, |req| {
            let list = failures_request(req)?;
            Ok(move |engine: &QueryEngine| engine.list_failures(&list))
        })
        .await
    }

    #[instrument(name = "get_failure_details", skip_all, fields(rpc = "GetFailureDetails", tenant = tracing::field::Empty))]
    pub(super) async fn details_call(
        &self,
        request: Request<proto::GetFailureDetailsRequest>,
    ) -> Result<Response<proto::GetFailureDetailsResponse>, Status> {
        let forward = |mut owner: ApiClient, r| async move { owner.get_failure_details(r).await };
        self.tenant_call("GetFailureDetails", request, forward, |req| {
            let tenant = req.tenant_id.clone();
            let failure_id = bounded("failure_id", &req.failure_id, 64)?.to_owned();
            let range = optional_range(req.range.as_ref())?;
            Ok(move |engine: &QueryEngine| engine.failure_details(&tenant, &failure_id, range))
        })
        .await
    }
}

fn failures_request(
    req: &proto::ListFailuresRequest,
) -> Result<query::ListFailuresRequest, Status> {
    let text = |field, value, max| -> Result<Option<String>, Status> {
        Ok(non_empty(bounded(field, value, max)?))
    };
    Ok(query::ListFailuresRequest {
        tenant_id: req.tenant_id.clone(),
        range: optional_range(req.range.as_ref())?,
        types: types_from_wire(&req.integration_types)?,
        filter: query::FailureFilter {
            integration_id: text(
                "integration_id",
                &req.integration_id,
                MAX_INTEGRATION_ID_CHARS * 4,
            )?,
            status_code: status_code_filter(req.status_code)?,
            flow_id: text("flow_id", &req.flow_id, MAX_NAME_CHARS * 4)?,
            service_id: text("service_id", &req.service_id, MAX_NAME_CHARS * 4)?,
            classes: classes_from_wire(&req.classes)?,
        },
        page_size: req.page_size as usize,
        page_token: text("page_token", &req.page_token, 256)?,
        order: FailureOrder::try_from(req.order_by)?,
    })
}
