//! The integration-health calls: `ListIntegrations`, `GetIntegrationHealth` and `WatchTenant`.

// Handlers must return `tonic::Status`.
#![allow(clippy::result_large_err)]

use tonic::{Request, Response, Status};
use tracing::instrument;

use super::convert::{bounded, optional_range, type_from_wire, types_from_wire};
use super::coverage::respond;
use super::grpc::non_empty;
use super::watch::{watch_interval, Counting, WatchStream, Watched};
use super::{IntegrationHealthApi, FORWARDED};
use crate::event::MAX_INTEGRATION_ID_CHARS;
use crate::proto;
use crate::query::{self, Granularity, IntegrationOrder};

impl IntegrationHealthApi {
    #[instrument(skip(self, request), fields(rpc = "ListIntegrations", tenant = tracing::field::Empty))]
    pub(super) async fn list_integrations_call(
        &self,
        request: Request<proto::ListIntegrationsRequest>,
    ) -> Result<Response<proto::ListIntegrationsResponse>, Status> {
        self.timed("ListIntegrations", async {
            let req = request.get_ref();
            self.tenant(&request, &req.tenant_id)?;
            if let Some(owner) = self.forward_to(&request, &req.tenant_id) {
                return self
                    .forward(&owner, request, |mut owner, request| async move {
                        owner.list_integrations(request).await
                    })
                    .await;
            }
            let list = query::ListIntegrationsRequest {
                tenant_id: req.tenant_id.clone(),
                range: optional_range(req.range.as_ref())?,
                types: types_from_wire(&req.integration_types)?,
                order: IntegrationOrder::try_from(req.order_by)?,
                page_size: req.page_size as usize,
                page_token: non_empty(bounded("page_token", &req.page_token, 1024)?),
            };
            let (page, coverage) = self
                .tenant_query(
                    request.metadata(),
                    req.allow_partial,
                    &req.tenant_id,
                    move |engine| engine.list_integrations(&list),
                )
                .await?;
            Ok(respond(
                &coverage,
                proto::ListIntegrationsResponse {
                    integrations: page.integrations.into_iter().map(Into::into).collect(),
                    next_page_token: page.next_page_token.unwrap_or_default(),
                    total_integrations: page.total_integrations,
                    effective_range: Some(page.effective_range.into()),
                    ..Default::default()
                },
            ))
        })
        .await
    }

    #[instrument(skip(self, request), fields(rpc = "GetIntegrationHealth", tenant = tracing::field::Empty))]
    pub(super) async fn integration_health_call(
        &self,
        request: Request<proto::GetIntegrationHealthRequest>,
    ) -> Result<Response<proto::GetIntegrationHealthResponse>, Status> {
        self.timed("GetIntegrationHealth", async {
            let req = request.get_ref();
            self.tenant(&request, &req.tenant_id)?;
            if let Some(owner) = self.forward_to(&request, &req.tenant_id) {
                return self
                    .forward(&owner, request, |mut owner, request| async move {
                        owner.get_integration_health(request).await
                    })
                    .await;
            }
            let tenant = req.tenant_id.clone();
            let id = bounded(
                "integration_id",
                &req.integration_id,
                MAX_INTEGRATION_ID_CHARS * 4,
            )?;
            if id.is_empty() {
                return Err(Status::invalid_argument("integration_id is required"));
            }
            let id = id.to_owned();
            let integration_type = match req.integration_type {
                0 => None,
                t => Some(type_from_wire(t)?),
            };
            let range = optional_range(req.range.as_ref())?;
            let granularity = Granularity::try_from(req.granularity)?;
            let zone = bounded("time_zone", &req.time_zone, 64)?.to_owned();
            let (health, coverage) = self
                .tenant_query(
                    request.metadata(),
                    req.allow_partial,
                    &req.tenant_id,
                    move |engine| {
                        engine.integration_health(
                            &tenant,
                            integration_type,
                            &id,
                            range,
                            granularity,
                            &zone,
                        )
                    },
                )
                .await?;
            Ok(respond(&coverage, health_response(health)))
        })
        .await
    }

    #[instrument(skip(self, request), fields(rpc = "WatchTenant", tenant = tracing::field::Empty))]
    pub(super) async fn watch_tenant_call(
        &self,
        request: Request<proto::WatchTenantRequest>,
    ) -> Result<Response<WatchStream>, Status> {
        self.timed("WatchTenant", async {
            let req = request.get_ref();
            let caller = self.tenant(&request, &req.tenant_id)?;
            // A replica's feed asks for this replica's partitions alone; anyone else reads the
            // tenant's shared feed.
            let counting = match request.metadata().contains_key(FORWARDED) {
                true => Counting::Here(self.engine.clone(), req.tenant_id.clone()),
                false => Counting::Shared(self.feeds().subscribe(&req.tenant_id)),
            };
            let watched = Watched {
                counting,
                permit: self.watches.open(caller)?,
                interval: watch_interval(req.min_interval.as_ref())?,
                shutdown: self.shutdown.clone(),
            };
            Ok(Response::new(watched.stream()))
        })
        .await
    }
}

fn health_response(health: query::IntegrationHealth) -> proto::GetIntegrationHealthResponse {
    proto::GetIntegrationHealthResponse {
        integration: Some(health.summary.into()),
        series: health.series.into_iter().map(Into::into).collect(),
        error_codes: health.error_codes.into_iter().map(Into::into).collect(),
        top_failures: health.top_failures.into_iter().map(Into::into).collect(),
        effective_range: Some(health.effective_range.into()),
        ..Default::default()
    }
}
