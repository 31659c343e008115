//! Answering a question about one tenant: over this replica's partitions alone, or, where other
//! replicas own some of the tenant's partitions, in two passes with their parts merged in
//! (`query::Part`): the first notes the parts the query reads, the owners answer them, and the
//! second merges their answers into this replica's own.

// Handlers must return `tonic::Status`.
#![allow(clippy::result_large_err)]

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::{Semaphore, SemaphorePermit};
use tonic::metadata::MetadataMap;
use tonic::Status;

use super::coverage::{partition_list, Answered, ALLOW_PARTIAL};
use super::status_from;
use crate::clock::SharedClock;
use crate::cluster::{Cluster, Coverage};
use crate::ops::Metrics;
use crate::query::{QueryEngine, QueryError, Remote};
use crate::store::losses_for_tenant;

/// What runs a tenant's query: the engine, the query slots, and the other replicas.
#[derive(Clone)]
pub(super) struct Asker {
    pub(crate) engine: QueryEngine,
    pub(crate) cluster: Option<Arc<Cluster>>,
    /// Query slots, shared with the peer service and the watches.
    pub(crate) slots: Arc<Semaphore>,
    /// How long a call waits for a slot before it is shed.
    pub(crate) queue_wait: Duration,
    pub(crate) clock: SharedClock,
    pub(crate) metrics: Arc<Metrics>,
}

impl Asker {
    /// `work` over every partition that holds the tenant. Partitions that cannot be reached
    /// make the call UNAVAILABLE, unless `accept_partial`.
    pub(crate) async fn tenant<T, W>(
        &self,
        tenant_id: &str,
        accept_partial: bool,
        work: W,
    ) -> Result<(T, Answered), Status>
    where
        T: Send + 'static,
        W: Fn(&QueryEngine) -> Result<T, QueryError> + Send + Sync + 'static,
    {
        let Some(cluster) = &self.cluster else {
            let lost = self.engine.store().losses_for(tenant_id);
            let answer = self.run(self.engine.clone(), work).await?;
            return Ok((
                answer,
                Answered {
                    coverage: None,
                    lost,
                },
            ));
        };
        let store = self.engine.store();
        let (mut coverage, wanted) = cluster.tenant_owners(store, tenant_id);
        let held: Vec<i32> = coverage.covered.iter().copied().collect();
        let mut losses = store.partition_losses(tenant_id, Some(&held));
        if wanted.is_empty() {
            check_coverage(&coverage, accept_partial)?;
            let answer = self.run(self.engine.clone(), work).await?;
            let lost = losses_for_tenant(losses);
            let coverage = Some(coverage);
            return Ok((answer, Answered { coverage, lost }));
        }
        // One time for both passes and every owner, so all count the same ranges.
        let engine = self.engine.at(self.clock.now_ms());
        let work = Arc::new(work);
        let planning = Arc::new(Remote::planning());
        let first = {
            let (engine, work) = (engine.with_remote(planning.clone()), work.clone());
            self.run(engine, move |e| work(e)).await
        };
        let parts = planning.planned();
        if parts.is_empty() {
            // Refused before reading anything (a bad argument): no owner needs asking.
            return first.map(|answer| (answer, Answered::default()));
        }
        let remote = cluster
            .ask_parts(tenant_id, wanted, &parts, &mut coverage)
            .await;
        self.metrics
            .peer_bytes("GetTenantParts", remote.sent_bytes, remote.received_bytes);
        check_coverage(&coverage, accept_partial)?;
        let answered = Remote::Answered(parts.into_iter().zip(remote.answers).collect());
        let engine = engine.with_remote(Arc::new(answered));
        let answer = self.run(engine, move |e| work(e)).await?;
        losses.extend(remote.losses);
        let lost = losses_for_tenant(losses);
        let coverage = Some(coverage);
        Ok((answer, Answered { coverage, lost }))
    }

    /// Runs `work` on the blocking pool once a query slot is free.
    pub(crate) async fn run<T: Send + 'static>(
        &self,
        engine: QueryEngine,
        work: impl FnOnce(&QueryEngine) -> Result<T, QueryError> + Send + 'static,
    ) -> Result<T, Status> {
        let _slot = query_slot(&self.slots, self.queue_wait).await?;
        tokio::task::spawn_blocking(move || work(&engine))
            .await
            .map_err(|_| Status::internal("the query did not complete"))?
            .map_err(status_from)
    }
}

/// One of the query slots, waited for at most `queue_wait`: past it the call is shed rather
/// than queued without bound. The public API and the peer service share the slots.
pub(super) async fn query_slot(
    slots: &Semaphore,
    queue_wait: Duration,
) -> Result<SemaphorePermit<'_>, Status> {
    tokio::time::timeout(queue_wait, slots.acquire())
        .await
        .map_err(|_| Status::resource_exhausted("the service is busy; retry shortly"))?
        .map_err(|_| Status::unavailable("the service is stopping"))
}

/// Whether the caller accepts an answer that lacks unreachable partitions: in the request, or
/// with the `ih-allow-partial: true` header.
pub(super) fn accepts_partial(metadata: &MetadataMap, allow_partial: bool) -> bool {
    allow_partial
        || metadata
            .get(ALLOW_PARTIAL)
            .is_some_and(|v| v.as_bytes().eq_ignore_ascii_case(b"true"))
}

/// Refuses an answer that lacks partitions unless the caller accepts a partial one.
pub(super) fn check_coverage(coverage: &Coverage, accept_partial: bool) -> Result<(), Status> {
    if !coverage.missing.is_empty() && !accept_partial {
        return Err(Status::unavailable(format!(
            "partitions [{}] have no owner or their owner did not answer; send {ALLOW_PARTIAL}: true for a partial answer",
            partition_list(&coverage.missing)
        )));
    }
    Ok(())
}
