//! The replica-to-replica service: a tenant's state in the partitions this replica owns, and
//! this replica's own ingest status. Same TLS and tokens as the public API; operator only.

// Handlers must return `tonic::Status`.
#![allow(clippy::result_large_err)]

use std::sync::Arc;

use tonic::{Request, Response, Status};

use super::auth::{Access, SharedAuth};
use super::status::status_response;
use crate::clock::SharedClock;
use crate::ingest::IngestProgress;
use crate::proto;
use crate::proto::integration_health_peer_server::IntegrationHealthPeer;
use crate::snapshot;
use crate::store::Store;

pub struct PeerApi {
    pub store: Arc<Store>,
    pub progress: Arc<IngestProgress>,
    pub clock: SharedClock,
    pub auth: SharedAuth,
    /// This replica's address, as the others reach it.
    pub advertise_addr: String,
}

#[tonic::async_trait]
impl IntegrationHealthPeer for PeerApi {
    async fn get_tenant_slices(
        &self,
        request: Request<proto::TenantSlicesRequest>,
    ) -> Result<Response<proto::TenantSlicesResponse>, Status> {
        self.auth
            .current()
            .check(request.metadata(), Access::Operator)?;
        let req = request.into_inner();
        let store = self.store.clone();
        let slices = tokio::task::spawn_blocking(move || {
            store
                .partitions()
                .into_iter()
                .filter(|(key, _)| req.partitions.contains(&key.partition))
                .filter_map(|(key, shared)| {
                    let slice = shared.read().tenant_slice(&req.tenant_id);
                    let state = snapshot::encode(&slice).ok()?;
                    Some(proto::TenantSlice {
                        partition: key.partition,
                        state,
                    })
                })
                .collect()
        })
        .await
        .map_err(|_| Status::internal("slicing did not complete"))?;
        Ok(Response::new(proto::TenantSlicesResponse { slices }))
    }

    async fn get_local_ingest_status(
        &self,
        request: Request<proto::GetIngestStatusRequest>,
    ) -> Result<Response<proto::GetIngestStatusResponse>, Status> {
        self.auth
            .current()
            .check(request.metadata(), Access::Operator)?;
        let status = self.progress.status(&self.store, self.clock.now_ms());
        Ok(Response::new(status_response(status, &self.advertise_addr)))
    }
}
