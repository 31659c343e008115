//! The integration-health calls: `ListIntegrations`, `GetIntegrationHealth` and `WatchTenant`.

// Handlers must return `tonic::Status`.
#![allow(clippy::result_large_err)]

use tonic::{Request, Response, Status};
use tracing::instrument;

use super::callers::Caller;
use super::convert::{
    bounded, classes_from_wire, non_empty, optional_range, type_from_wire, types_from_wire,
};
use super::service::ApiClient;
use super::watch::{watch_interval, Counting, WatchStream, Watched};
use super::IntegrationHealthApi;
use crate::event::MAX_INTEGRATION_ID_CHARS;
use crate::proto;
use crate::query::{self, Granularity, IntegrationOrder, QueryEngine};

impl IntegrationHealthApi {
    #[instrument(name = "list_integrations", skip_all, fields(rpc = "ListIntegrations", tenant = tracing::field::Empty))]
    pub(super) async fn integrations_call(
        &self,
        request: Request<proto::ListIntegrationsRequest>,
    ) -> Result<Response<proto::ListIntegrationsResponse>, Status> {
        let forward = |mut owner: ApiClient, r| async move { owner.list_integrations(r).await };
        self.tenant_call("ListIntegrations", request, forward, |req| {
            let list = query::ListIntegrationsRequest {
                tenant_id: req.tenant_id.clone(),
                range: optional_range(req.range.as_ref())?,
                types: types_from_wire(&req.integration_types)?,
                classes: classes_from_wire(&req.classes)?,
                order: IntegrationOrder::try_from(req.order_by)?,
                page_size: req.page_size as usize,
                page_token: non_empty(bounded("page_token", &req.page_token, 1024)?),
            };
            Ok(move |engine: &QueryEngine| engine.list_integrations(&list))
        })
        .await
    }

    #[instrument(name = "get_integration_health", skip_all, fields(rpc = "GetIntegrationHealth", tenant = tracing::field::Empty))]
    pub(super) async fn integration_health_call(
        &self,
        request: Request<proto::GetIntegrationHealthRequest>,
    ) -> Result<Response<proto::GetIntegrationHealthResponse>, Status> {
        let forward =
            |mut owner: ApiClient, r| async move { owner.get_integration_health(r).await };
        self.tenant_call("GetIntegrationHealth", request, forward, |req| {
            let tenant = req.tenant_id.clone();
            let max = MAX_INTEGRATION_ID_CHARS * 4;
            let id = bounded("integration_id", &req.integration_id, max)?.to_owned();
            if id.is_empty() {
                return Err(Status::invalid_argument("integration_id is required"));
            }
            let integration_type = match req.integration_type {
                0 => None,
                t => Some(type_from_wire(t)?),
            };
            let range = optional_range(req.range.as_ref())?;
            let granularity = Granularity::try_from(req.granularity)?;
            let zone = bounded("time_zone", &req.time_zone, 64)?.to_owned();
            Ok(move |engine: &QueryEngine| {
                engine.integration_health(&tenant, integration_type, &id, range, granularity, &zone)
            })
        })
        .await
    }

    #[instrument(name = "watch_tenant", skip_all, fields(rpc = "WatchTenant", tenant = tracing::field::Empty))]
    pub(super) async fn watch_tenant_call(
        &self,
        request: Request<proto::WatchTenantRequest>,
    ) -> Result<Response<WatchStream>, Status> {
        self.timed("WatchTenant", async {
            let req = request.get_ref();
            let caller = self.tenant(&request, &req.tenant_id)?;
            // A replica's feed asks for this replica's partitions alone; anyone else reads the
            // tenant's shared feed.
            let counting = match caller {
                Caller::Replica(_) => Counting::Here(self.engine.clone(), req.tenant_id.clone()),
                _ => Counting::Shared(self.feeds().subscribe(&req.tenant_id)),
            };
            let book = self.issues.as_ref().map(|keeping| keeping.book.clone());
            let tenant = req.tenant_id.clone();
            let watched = Watched {
                counting,
                permit: self.watches.open(caller)?,
                interval: watch_interval(req.min_interval.as_ref())?,
                shutdown: self.shutdown.clone(),
                actions: Box::new(move || book.as_ref().map_or(0, |b| b.actions_read(&tenant))),
            };
            Ok(Response::new(watched.stream()))
        })
        .await
    }
}
