//! The owner thread: the single writer of partition state. It applies batches, answers
//! rebalances with the exact offsets its state ends at, and schedules snapshots.

use std::collections::{BTreeMap, HashMap};
use std::panic::AssertUnwindSafe;
use std::sync::mpsc::{Receiver, RecvTimeoutError};
use std::sync::Arc;
use std::time::Duration;

use parking_lot::RwLock;
use rdkafka::message::{Message, OwnedMessage};
use rdkafka::Offset;
use tokio_util::sync::CancellationToken;
use tracing::{debug, error, info, warn};

use super::dead_letters::DeadLetterSink;
use super::log_start::LogStarts;
use super::progress::{IngestProgress, SnapshotStatus};
use super::snapshots::SnapshotSchedule;
use super::Command;
use crate::clock::SharedClock;
use crate::event::{decode_batch, DecodeLimits, EventError, IntegrationType, PerType};
use crate::ops::Metrics;
use crate::store::{
    gaps, lost_ranges, Applied, KeyedEvent, LostOffsets, PartitionKey, PartitionState,
    SharedPartition, Store, StoreLimits,
};

/// Messages applied per write-lock hold (about 0.3 ms of work).
pub const LOCK_CHUNK: usize = 256;
/// How often an idle owner wakes up to check whether a snapshot is due.
const OWNER_TICK: Duration = Duration::from_millis(200);

/// The single writer of partition state.
pub(super) struct Owner {
    pub(super) store: Arc<Store>,
    pub(super) progress: Arc<IngestProgress>,
    pub(super) clock: SharedClock,
    pub(super) max_future_ms: i64,
    pub(super) max_message_bytes: usize,
    /// No repartition stage: tenants found on two partitions are flagged.
    pub(super) input_keyed_by_tenant: bool,
    pub(super) dead_letters: Box<dyn DeadLetterSink>,
    /// Without a state dir: partitions revoked from this instance. Their state and offset stay
    /// consistent, so if a partition comes back, consumption resumes at its offset.
    pub(super) parked: HashMap<PartitionKey, SharedPartition>,
    pub(super) snapshots: Option<SnapshotSchedule>,
    pub(super) shutdown: CancellationToken,
    pub(super) metrics: Arc<Metrics>,
    /// Told the partitions owned after every assignment change (to announce them to replicas).
    pub(super) on_assignment: Option<AssignmentHook>,
    /// Where each partition's log starts, to tell lost offsets from other gaps.
    pub(super) log_starts: Box<dyn LogStarts>,
}

/// Called with the partitions owned after each rebalance.
pub(crate) type AssignmentHook = Box<dyn Fn(std::collections::BTreeSet<i32>) + Send>;

impl Owner {
    pub(crate) fn run(mut self, inbox: Receiver<Command>) {
        loop {
            match inbox.recv_timeout(OWNER_TICK) {
                Ok(command) => self.handle(command),
                Err(RecvTimeoutError::Timeout) => {}
                Err(RecvTimeoutError::Disconnected) => break,
            }
            self.snapshot_due();
        }
        self.dead_letters.flush();
        if let Some(snapshots) = &mut self.snapshots {
            snapshots.finish();
        }
        info!("owner stopped");
    }

    pub(crate) fn handle(&mut self, command: Command) {
        match command {
            Command::Batch(messages) => self.apply_batch(messages),
            Command::Assigned(keys, reply) => {
                let offsets = self.assigned(keys);
                let _ = reply.send(offsets);
                self.tell_assignment();
            }
            Command::Revoked(keys, reply) => {
                self.revoked(keys);
                let _ = reply.send(());
                self.tell_assignment();
            }
        }
    }

    /// A tenant met in a second partition means a producer does not key by tenant, so its
    /// retries can escape dedup: warned and counted, since the repartition stage is off.
    fn flag_split_tenants(&self, key: &PartitionKey, tenants: &[String]) {
        if tenants.is_empty() {
            return;
        }
        for (other, shared) in self.store.partitions() {
            if other == *key {
                continue;
            }
            let state = shared.read();
            for tenant in tenants.iter().filter(|t| state.tenant(t).is_some()) {
                self.metrics.tenant_split();
                warn!(%tenant, partitions = ?(key.partition, other.partition), "a tenant's events arrive on two partitions: a producer does not key by tenant_id, so retries there may be counted twice; set input_keyed_by_tenant = false");
            }
        }
    }

    fn tell_assignment(&self) {
        if let Some(hook) = &self.on_assignment {
            hook(
                self.store
                    .partitions()
                    .iter()
                    .map(|(key, _)| key.partition)
                    .collect(),
            );
        }
    }

    /// Takes periodic snapshots. Dead letters are flushed first, so every rejected event a
    /// snapshot covers is already acknowledged by the broker.
    fn snapshot_due(&mut self) {
        let Some(snapshots) = &mut self.snapshots else {
            return;
        };
        let due = snapshots.due(&self.store.partitions());
        if due.is_empty() {
            return;
        }
        self.dead_letters.flush();
        snapshots.take(due, false);
    }

    fn restore(&self, key: &PartitionKey) -> Option<SharedPartition> {
        let Some(snapshots) = &self.snapshots else {
            return Some(
                self.parked
                    .get(key)
                    .cloned()
                    .unwrap_or_else(|| self.fresh()),
            );
        };
        match snapshots.target.load_newest(key, self.store.limits()) {
            Ok(Some((mut state, file))) => {
                info!(topic = %key.topic, partition = key.partition, next_offset = file.next_offset, "restored snapshot");
                // The snapshot restored from is durable: status shows it, its age counting
                // from the restore.
                self.progress.set_snapshot_status(
                    key.clone(),
                    SnapshotStatus {
                        next_offset: file.next_offset,
                        written_at_ms: self.clock.now_ms(),
                        bytes: 0,
                        encode_ms: 0.0,
                        write_ms: 0.0,
                    },
                );
                self.store.note_rekeys(std::mem::take(&mut state.rekeys));
                Some(Arc::new(RwLock::new(state)))
            }
            Ok(None) => Some(self.fresh()),
            Err(err) => {
                error!(error = %err, "cannot restore partition; stopping rather than serving wrong numbers");
                self.shutdown.cancel();
                None
            }
        }
    }

    fn fresh(&self) -> SharedPartition {
        Arc::new(RwLock::new(PartitionState::new(self.store.limits())))
    }

    fn assigned(&mut self, keys: Vec<PartitionKey>) -> Vec<(PartitionKey, Offset)> {
        self.progress.mark_assigned();
        self.progress.attaching(keys.len());
        let mut offsets = Vec::new();
        for key in keys {
            let restored = self.restore(&key);
            let Some(shared) = restored else {
                self.progress.attached();
                continue;
            };
            self.parked.remove(&key);
            self.skip_to_log_start(&key, &shared);
            let offset = shared
                .read()
                .next_offset()
                .map_or(Offset::Beginning, Offset::Offset);
            info!(topic = %key.topic, partition = key.partition, ?offset, "partition assigned");
            if let Some(snapshots) = &mut self.snapshots {
                snapshots.restored(&key, &shared);
            }
            self.store.attach(key.clone(), shared);
            self.progress.attached();
            offsets.push((key, offset));
        }
        offsets
    }

    /// A partition resumed below its log start (a snapshot older than the retention, or a
    /// fresh start on a trimmed log) has lost what lies between: it is recorded, and reading
    /// starts at the log start.
    fn skip_to_log_start(&self, key: &PartitionKey, shared: &SharedPartition) {
        let start = shared.read().next_offset().unwrap_or(0);
        let Some((log_start, high_watermark)) = self.log_starts.watermarks(key) else {
            return;
        };
        // Fresh at assignment: the client's statistics may still carry the mark of an earlier
        // assignment of this partition, which would make its lag look small.
        if high_watermark >= 0 {
            self.progress
                .set_high_watermark(key.clone(), high_watermark);
        }
        if log_start <= start {
            return;
        }
        let mut state = shared.write();
        self.record_loss(key, &mut state, (start, log_start), false);
        state.skip_to(log_start);
    }

    fn record_loss(
        &self,
        key: &PartitionKey,
        state: &mut PartitionState,
        (from, to): (i64, i64),
        upstream: bool,
    ) {
        let loss = LostOffsets {
            topic: key.topic.to_string(),
            partition: key.partition,
            from,
            to,
            detected_at_ms: self.clock.now_ms(),
            upstream,
        };
        if upstream {
            // The repartition stage logged and counted it; this partition only keeps the flag.
            info!(topic = %loss.topic, partition = loss.partition, from, to, "the repartition stage lost input offsets; this partition's tenants are flagged incomplete");
        } else {
            error!(topic = %loss.topic, partition = loss.partition, from, to, lost = loss.count(), "offsets were deleted from the log before they were read: their events are not counted, and answers for the partition's tenants say they are incomplete (docs/operating.md: Lost offsets)");
            self.metrics
                .offsets_lost(&loss.topic, loss.partition, loss.count());
        }
        state.losses.push(loss);
    }

    /// The ranges of this batch that the log no longer held when they were fetched. A gap in
    /// the offsets is looked into only when there is one, since most batches have none.
    fn lost_in(
        &self,
        key: &PartitionKey,
        shared: &SharedPartition,
        messages: &[OwnedMessage],
    ) -> Vec<(i64, i64)> {
        let next = shared.read().next_offset().unwrap_or(0);
        let found = gaps(next, messages.iter().map(Message::offset));
        if found.is_empty() {
            return Vec::new();
        }
        match self.log_starts.log_start(key) {
            Some(log_start) => lost_ranges(&found, log_start),
            None => Vec::new(),
        }
    }

    /// With a state dir, a revoked partition is snapshotted before the callback returns, so the
    /// instance that gains it restores exactly where this one stopped.
    fn revoked(&mut self, keys: Vec<PartitionKey>) {
        self.dead_letters.flush();
        let mut leaving = Vec::new();
        for key in keys {
            info!(topic = %key.topic, partition = key.partition, "partition revoked");
            self.progress.forget(&key);
            if let Some(shared) = self.store.remove_partition(&key) {
                leaving.push((key, shared));
            }
        }
        match &mut self.snapshots {
            Some(snapshots) => snapshots.take(leaving, true),
            None => self.parked.extend(leaving),
        }
    }

    /// Metrics are counted per batch, not per event, to keep the hot loop free of them.
    fn count(&self, outcomes: &PerType<[u64; 3]>) {
        let kinds = [Applied::Accepted, Applied::Duplicate, Applied::LateDropped];
        for (integration_type, per_kind) in outcomes.iter() {
            for (kind, count) in kinds.iter().zip(per_kind) {
                if *count > 0 {
                    self.metrics.applied(integration_type, *kind, *count);
                }
            }
        }
    }

    pub(crate) fn apply_batch(&mut self, messages: Vec<OwnedMessage>) {
        let now_ms = self.clock.now_ms();
        let limits = DecodeLimits {
            now_ms,
            max_future_ms: self.max_future_ms,
            max_bytes: self.max_message_bytes,
        };
        let mut by_partition: BTreeMap<PartitionKey, Vec<OwnedMessage>> = BTreeMap::new();
        for message in messages {
            by_partition
                .entry(PartitionKey::new(message.topic(), message.partition()))
                .or_default()
                .push(message);
        }
        for (key, messages) in by_partition {
            let Some(shared) = self.store.partition(&key) else {
                debug!(topic = %key.topic, partition = key.partition, "message for a partition not owned; skipped");
                continue;
            };
            let span = tracing::info_span!(
                "apply_batch",
                topic = %key.topic,
                partition = key.partition,
                batch_size = messages.len()
            );
            let _entered = span.enter();
            let mut rejected = Vec::new();
            let mut evicted = Vec::new();
            let mut new_tenants = Vec::new();
            let mut outcomes = PerType::<[u64; 3]>::default();
            for range in self.lost_in(&key, &shared, &messages) {
                self.record_loss(&key, &mut shared.write(), range, false);
            }
            // Short write-lock holds keep query latency flat while a big batch is applied, and
            // each chunk is decoded before its lock is taken.
            for chunk in messages.chunks(LOCK_CHUNK) {
                let payloads: Vec<&[u8]> = chunk
                    .iter()
                    .map(|m| m.payload().unwrap_or_default())
                    .collect();
                let events = decode_batch(&payloads, limits);
                let keyed = KeyedEvent::chunk(&events);
                let mut state = shared.write();
                for (i, (message, decoded)) in chunk.iter().zip(&keyed).enumerate() {
                    state.prefetch_ahead(&keyed, i);
                    if state.already_applied(message.offset()) {
                        continue;
                    }
                    // Rejected upstream and dead-lettered there; counted here, exactly once.
                    if super::is_rejection_marker(message) {
                        state.record_rejected();
                        state.mark_applied(message.offset());
                        continue;
                    }
                    // Offsets the repartition stage never read: any tenant here may miss events.
                    if let Some(upstream) = super::loss_marker(message) {
                        let range = (upstream.from, upstream.to);
                        let source = PartitionKey::new(&upstream.topic, upstream.partition);
                        self.record_loss(&source, &mut state, range, true);
                        state.mark_applied(message.offset());
                        continue;
                    }
                    let store_limits = self.store.limits();
                    // A bug must not stop the partition for good: the message is set aside like
                    // a malformed one and the partition moves on.
                    let applied = std::panic::catch_unwind(AssertUnwindSafe(|| {
                        apply_one(&mut state, decoded, limits.now_ms, store_limits)
                    }))
                    .unwrap_or(Err(EventError::Internal));
                    match applied {
                        Ok((integration_type, applied, new_tenant)) => {
                            outcomes[integration_type][applied as usize] += 1;
                            new_tenants.extend(new_tenant);
                        }
                        Err(reason) => {
                            if reason == EventError::Internal {
                                error!(topic = %key.topic, partition = key.partition, offset = message.offset(), "decoding or applying a message panicked; it goes to the dead-letter topic");
                            }
                            state.record_rejected();
                            rejected.push((message, reason));
                        }
                    }
                    state.mark_applied(message.offset());
                }
                evicted.append(&mut state.evicted);
            }
            for (tenant, events) in evicted {
                self.metrics.tenant_evicted(&key.topic, key.partition);
                warn!(%tenant, events, topic = %key.topic, partition = key.partition, "the partition is at tenant_cap_per_partition: the tenant on probation idle longest was evicted to admit a new one (docs/operating.md: Sizing)");
            }
            self.count(&outcomes);
            if self.input_keyed_by_tenant {
                self.flag_split_tenants(&key, &new_tenants);
            }
            for (message, reason) in rejected {
                self.metrics.rejected(reason.reason_code());
                if matches!(reason, EventError::TenantLimit { .. }) {
                    self.metrics.tenant_refused(&key.topic, key.partition);
                }
                self.dead_letters.send(message, &reason);
            }
        }
    }
}

/// Counts one decoded message: what it was counted as, or why it is rejected.
/// The tenant is returned when the event was its first in this partition.
fn apply_one(
    state: &mut PartitionState,
    decoded: &Result<KeyedEvent<'_, '_>, &EventError>,
    now_ms: i64,
    store_limits: &StoreLimits,
) -> Result<(IntegrationType, Applied, Option<String>), EventError> {
    let keyed = decoded.as_ref().map_err(|e| (*e).clone())?;
    let event = keyed.event();
    #[cfg(test)]
    if event.event_id == tests::PANIC_EVENT_ID {
        panic!("injected by a test");
    }
    let tenants_before = state.tenants.len();
    let applied = state.apply_keyed(keyed, store_limits, now_ms)?;
    let new_tenant = (state.tenants.len() > tenants_before).then(|| event.tenant_id.to_string());
    Ok((event.integration_type, applied, new_tenant))
}

#[cfg(test)]
#[path = "owner_tests.rs"]
mod tests;
