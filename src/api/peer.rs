//! The replica-to-replica service: a tenant's partial answers over the partitions this replica
//! owns, and this replica's own ingest status and tenants. Same TLS, tokens and query slots as
//! the public API; operator only.

// Handlers must return `tonic::Status`.
#![allow(clippy::result_large_err)]

use std::collections::HashSet;
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::Semaphore;

use tonic::{Request, Response, Status};

use super::asker::query_slot;
use super::auth::{Access, SharedAuth};
use super::service::validate_tenant;
use super::status::status_response;
use crate::clock::SharedClock;
use crate::ingest::IngestProgress;
use crate::proto;
use crate::proto::integration_health_peer_server::IntegrationHealthPeer;
use crate::query::{
    decode_parts, encode_parts, Answer, Part, PartsError, QueryEngine, TimeRange,
    MAX_PARTS_PER_QUERY, PARTS_VERSION,
};
use crate::store::Store;

pub(crate) struct PeerApi {
    pub(crate) store: Arc<Store>,
    pub(crate) progress: Arc<IngestProgress>,
    pub(crate) clock: SharedClock,
    pub(crate) auth: SharedAuth,
    /// This replica's address, as the others reach it.
    pub(crate) advertise_addr: String,
    /// The public API's query slots: a peer's question waits for one like any other call.
    pub(crate) slots: Arc<Semaphore>,
    pub(crate) queue_wait: Duration,
}

impl PeerApi {
    /// The tenant's answers to `parts` over the asked partitions this replica holds, with
    /// which those are and their losses.
    fn answer_parts(
        store: &Store,
        clock: SharedClock,
        request: proto::TenantPartsRequest,
        parts: Vec<Part>,
    ) -> Result<proto::TenantPartsResponse, Status> {
        let view = Arc::new(Store::new(*store.limits()));
        let mut partitions = Vec::new();
        for (key, shared) in store.partitions() {
            if request.partitions.contains(&key.partition) {
                partitions.push(key.partition);
                view.attach(key, shared);
            }
        }
        let engine = QueryEngine::new(view.clone(), clock);
        let answers: Vec<Answer> = parts
            .iter()
            .map(|part| engine.part(&request.tenant_id, part))
            .collect();
        let losses = view.partition_losses(&request.tenant_id, None);
        let encode_failed = |err: PartsError| Status::internal(err.to_string());
        Ok(proto::TenantPartsResponse {
            partitions,
            answers: encode_parts(&answers).map_err(encode_failed)?,
            losses: encode_parts(&losses).map_err(encode_failed)?,
        })
    }
}

#[tonic::async_trait]
impl IntegrationHealthPeer for PeerApi {
    async fn get_tenant_parts(
        &self,
        request: Request<proto::TenantPartsRequest>,
    ) -> Result<Response<proto::TenantPartsResponse>, Status> {
        self.auth
            .current()
            .check(request.metadata(), Access::Operator)?;
        let req = request.into_inner();
        if req.version != PARTS_VERSION {
            return Err(Status::failed_precondition(format!(
                "parts version {} asked; this replica speaks {PARTS_VERSION}",
                req.version
            )));
        }
        validate_tenant(&req.tenant_id)?;
        let parts: Vec<Part> =
            decode_parts(&req.parts).map_err(|err| Status::invalid_argument(err.to_string()))?;
        if parts.len() > MAX_PARTS_PER_QUERY {
            return Err(Status::invalid_argument(format!(
                "{} parts asked; a query plans at most {MAX_PARTS_PER_QUERY}",
                parts.len()
            )));
        }
        let _slot = query_slot(&self.slots, self.queue_wait).await?;
        let store = self.store.clone();
        let clock = self.clock.clone();
        let answer =
            tokio::task::spawn_blocking(move || Self::answer_parts(&store, clock, req, parts))
                .await
                .map_err(|_| Status::internal("answering parts did not complete"))??;
        Ok(Response::new(answer))
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
        let _slot = query_slot(&self.slots, self.queue_wait).await?;
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
