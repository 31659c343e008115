//! The replica-to-replica service: a tenant's state in the partitions this replica owns, and
//! this replica's own ingest status. Same TLS and tokens as the public API; operator only.

// Handlers must return `tonic::Status`.
#![allow(clippy::result_large_err)]

use std::collections::HashSet;
use std::sync::Arc;

use tonic::{Request, Response, Status};

use super::auth::{Access, SharedAuth};
use super::status::status_response;
use crate::clock::SharedClock;
use crate::ingest::IngestProgress;
use crate::proto;
use crate::proto::integration_health_peer_server::IntegrationHealthPeer;
use crate::query::{QueryEngine, TimeRange};
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

    async fn get_local_tenants(
        &self,
        request: Request<proto::LocalTenantsRequest>,
    ) -> Result<Response<proto::LocalTenantsResponse>, Status> {
        self.auth
            .current()
            .check(request.metadata(), Access::Operator)?;
        let req = request.into_inner();
        let range = TimeRange::try_from(req.range.as_ref().unwrap_or(&proto::TimeRange::default()))
            .map_err(|err| Status::invalid_argument(err.to_string()))?;
        let wanted: HashSet<i32> = req.partitions.into_iter().collect();
        let engine = QueryEngine::new(self.store.clone(), self.clock.clone());
        let partitions = tokio::task::spawn_blocking(move || {
            engine
                .tenants_by_partition(range, Some(&wanted))
                .into_iter()
                .map(|(partition, tenants)| proto::PartitionTenants {
                    partition,
                    tenants: tenants.into_iter().map(Into::into).collect(),
                })
                .collect()
        })
        .await
        .map_err(|_| Status::internal("counting tenants did not complete"))?;
        Ok(Response::new(proto::LocalTenantsResponse { partitions }))
    }
}
