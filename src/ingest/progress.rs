//! What ingest knows about its progress: whether the group has assigned partitions, the broker's
//! high watermarks, and the newest durable snapshot of each partition. Readiness and
//! `GetIngestStatus` are answered from here together with the store's offsets.

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};

use dashmap::DashMap;

use crate::store::{IngestTotals, PartitionKey, Store};

/// The newest durable snapshot of a partition.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct SnapshotStatus {
    /// Exclusive: the first offset the snapshot does not cover.
    pub next_offset: i64,
    pub(crate) written_at_ms: i64,
    pub bytes: u64,
    /// Time spent encoding on the owner thread: the pause ingest sees.
    pub encode_ms: f64,
    pub write_ms: f64,
}

#[derive(Debug, Clone, PartialEq)]
pub struct PartitionStatus {
    pub(crate) topic: String,
    pub(crate) partition: i32,
    /// -1 when nothing has been applied yet.
    pub next_offset: i64,
    /// -1 when not yet known.
    pub(crate) high_watermark: i64,
    pub lag: i64,
    /// Offsets deleted from the log before they were read (kept for the retention).
    pub(crate) lost_offsets: u64,
    pub snapshot: Option<SnapshotStatus>,
    /// Milliseconds since the snapshot was written; -1 without one.
    pub(crate) snapshot_age_ms: i64,
}

#[derive(Debug, Clone, PartialEq)]
pub struct IngestStatus {
    pub partitions: Vec<PartitionStatus>,
    /// The repartition stage's input partitions, when the stage runs: how far it has read.
    pub(crate) upstream: Vec<PartitionStatus>,
    pub(crate) totals: IngestTotals,
}

/// Written by the consumer (watermarks, assignment) and the snapshot writer; read by readiness,
/// metrics and the API. Each map is a `DashMap` because writers and readers are different
/// threads and no entry is ever held across an `.await`.
#[derive(Debug, Default)]
pub struct IngestProgress {
    /// Set once the consumer group has given this instance its first assignment.
    assigned: AtomicBool,
    /// Partitions handed to the owner but not yet restored and attached to the store.
    attaching: AtomicUsize,
    high_watermarks: DashMap<PartitionKey, i64>,
    snapshots: DashMap<PartitionKey, SnapshotStatus>,
    /// Since when each partition's snapshot writes have failed, and how many times in a row.
    snapshot_failures: DashMap<PartitionKey, (i64, u32)>,
    /// Set when the repartition stage runs; readiness then also waits for it.
    repartitioning: AtomicBool,
    /// Set once the stage's group has given it an assignment, possibly empty.
    upstream_assigned: AtomicBool,
    /// The repartition stage's input partitions: (next offset to read, high watermark).
    upstream: DashMap<PartitionKey, (i64, i64)>,
    /// Input offsets the stage found deleted before it read them, while it held the partition.
    upstream_lost: DashMap<PartitionKey, u64>,
}

impl IngestProgress {
    pub(crate) fn mark_assigned(&self) {
        self.assigned.store(true, Ordering::SeqCst);
    }

    /// `count` partitions are being restored; readiness waits for them.
    pub(crate) fn attaching(&self, count: usize) {
        self.attaching.fetch_add(count, Ordering::SeqCst);
    }

    /// One partition of an assignment is attached (or given up).
    pub(crate) fn attached(&self) {
        let _ = self
            .attaching
            .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| n.checked_sub(1));
    }

    pub(crate) fn has_assignment(&self) -> bool {
        self.assigned.load(Ordering::SeqCst)
    }

    /// The partition's high watermark at assignment, looked up from the broker.
    pub(crate) fn set_high_watermark(&self, key: PartitionKey, offset: i64) {
        self.high_watermarks.insert(key, offset);
    }

    /// A watermark from the client's statistics. They keep reporting a partition after it
    /// was revoked, with the mark it had then, so a report never lowers a known mark (a
    /// partition's high watermark only grows).
    pub(crate) fn report_high_watermark(&self, key: PartitionKey, offset: i64) {
        self.high_watermarks
            .entry(key)
            .and_modify(|known| *known = (*known).max(offset))
            .or_insert(offset);
    }

    pub(crate) fn high_watermark(&self, key: &PartitionKey) -> Option<i64> {
        self.high_watermarks.get(key).map(|v| *v)
    }

    /// A partition left this instance: its watermark is no longer ours to report.
    pub(crate) fn forget(&self, key: &PartitionKey) {
        self.high_watermarks.remove(key);
    }

    pub(crate) fn mark_repartitioning(&self) {
        self.repartitioning.store(true, Ordering::SeqCst);
    }

    pub(crate) fn set_upstream(&self, key: PartitionKey, next_offset: i64, high_watermark: i64) {
        self.upstream.insert(key, (next_offset, high_watermark));
    }

    /// The repartition stage's group gave it `keys` (maybe none): each is listed, with no
    /// position yet, until statistics report it.
    pub(crate) fn assign_upstream(&self, keys: impl IntoIterator<Item = PartitionKey>) {
        for key in keys {
            self.upstream.entry(key).or_insert((-1, -1));
        }
        self.upstream_assigned.store(true, Ordering::SeqCst);
    }

    /// An input partition the repartition stage no longer reads: its position is not ours.
    pub(crate) fn forget_upstream(&self, key: &PartitionKey) {
        self.upstream.remove(key);
        self.upstream_lost.remove(key);
    }

    pub(crate) fn add_upstream_lost(&self, key: &PartitionKey, count: u64) {
        *self.upstream_lost.entry(key.clone()).or_insert(0) += count;
    }

    fn upstream_status(&self) -> Vec<PartitionStatus> {
        let mut upstream: Vec<PartitionStatus> = self
            .upstream
            .iter()
            .map(|entry| {
                let (next, hw) = *entry.value();
                PartitionStatus {
                    topic: entry.key().topic.to_string(),
                    partition: entry.key().partition,
                    next_offset: next,
                    high_watermark: hw,
                    lag: if hw < 0 { 0 } else { (hw - next.max(0)).max(0) },
                    lost_offsets: self.upstream_lost.get(entry.key()).map_or(0, |l| *l),
                    snapshot: None,
                    snapshot_age_ms: -1,
                }
            })
            .collect();
        upstream.sort_by(|a, b| (&a.topic, a.partition).cmp(&(&b.topic, b.partition)));
        upstream
    }

    pub(crate) fn set_snapshot_status(&self, key: PartitionKey, status: SnapshotStatus) {
        self.snapshot_failures.remove(&key);
        self.snapshots.insert(key, status);
    }

    /// A snapshot write failed at `now_ms`.
    pub(crate) fn snapshot_failed(&self, key: PartitionKey, now_ms: i64) {
        let mut entry = self.snapshot_failures.entry(key).or_insert((now_ms, 0));
        entry.1 = entry.1.saturating_add(1);
    }

    /// Since when, and how many times in a row, the partition's snapshot writes have failed.
    pub(crate) fn snapshot_failing(&self, key: &PartitionKey) -> Option<(i64, u32)> {
        self.snapshot_failures.get(key).map(|f| *f)
    }

    pub(crate) fn snapshot_status(&self, key: &PartitionKey) -> Option<SnapshotStatus> {
        self.snapshots.get(key).map(|s| *s)
    }

    /// Offsets, watermarks, lag and snapshots of every owned partition, with the ingest totals.
    pub fn status(&self, store: &Store, now_ms: i64) -> IngestStatus {
        let mut totals = IngestTotals::default();
        let mut partitions = Vec::new();
        for (key, partition) in store.partitions() {
            let (next, part_totals, lost_offsets) = {
                let guard = partition.read();
                (guard.next_offset(), guard.totals, guard.lost_here())
            };
            totals.add(&part_totals);
            let high_watermark = known_high_watermark(self.high_watermark(&key), next);
            let lag = match (next, high_watermark) {
                (_, hw) if hw < 0 => 0,
                (Some(next), hw) => (hw - next).max(0),
                (None, hw) => hw,
            };
            let snapshot = self.snapshot_status(&key);
            partitions.push(PartitionStatus {
                topic: key.topic.to_string(),
                partition: key.partition,
                next_offset: next.unwrap_or(-1),
                high_watermark,
                lag,
                lost_offsets,
                snapshot,
                snapshot_age_ms: snapshot.map_or(-1, |s| (now_ms - s.written_at_ms).max(0)),
            });
        }
        IngestStatus {
            partitions,
            upstream: self.upstream_status(),
            totals,
        }
    }

    /// The store's partitions the service is behind on, each with why: "unassigned" while the
    /// group has not assigned it (or a partition is being restored, or its high watermark is
    /// unknown), "lagging" while messages of it, or of the repartition stage's input, are
    /// unread. One status for every partition.
    pub(crate) fn behind(
        &self,
        store: &Store,
        now_ms: i64,
    ) -> std::collections::HashMap<PartitionKey, &'static str> {
        let restoring = self.attaching.load(Ordering::SeqCst) > 0;
        let status = self.status(store, now_ms);
        let upstream_lags = status
            .upstream
            .iter()
            .any(|p| p.lag > 0 || p.high_watermark < 0);
        let lags = |key: &PartitionKey| {
            upstream_lags
                || status.partitions.iter().any(|p| {
                    *p.topic == *key.topic
                        && p.partition == key.partition
                        && (p.lag > 0 || p.high_watermark < 0)
                })
        };
        let mut behind = std::collections::HashMap::new();
        for (key, _) in store.partitions() {
            let unassigned =
                !self.has_assignment() || restoring || self.high_watermark(&key).is_none();
            let reason = match () {
                _ if unassigned => "unassigned",
                _ if lags(&key) => "lagging",
                _ => continue,
            };
            behind.insert(key, reason);
        }
        behind
    }

    /// Ready once ingest has its assignment and every assigned partition is restored, has a
    /// reported high watermark, and is within `max_lag` messages of it.
    pub(crate) fn readiness(&self, store: &Store, max_lag: i64, now_ms: i64) -> Result<(), String> {
        if !self.has_assignment() {
            return Err("waiting for the consumer group to assign partitions".into());
        }
        // A partition being restored is not in the store yet; judging the others alone would
        // call the service ready while it still has a whole partition to read.
        let attaching = self.attaching.load(Ordering::SeqCst);
        if attaching > 0 {
            return Err(format!("restoring {attaching} assigned partitions"));
        }
        if let Some((key, _)) = store
            .partitions()
            .into_iter()
            .find(|(key, _)| self.high_watermark(key).is_none())
        {
            return Err(format!(
                "{}[{}]: high watermark not reported yet",
                key.topic, key.partition
            ));
        }
        let status = self.status(store, now_ms);
        if self.repartitioning.load(Ordering::SeqCst) {
            if !self.upstream_assigned.load(Ordering::SeqCst) {
                return Err(
                    "waiting for the repartition stage's group to assign partitions".into(),
                );
            }
            if let Some(p) = status.upstream.iter().find(|p| p.high_watermark < 0) {
                return Err(format!(
                    "{}[{}]: the repartition stage has not reported its position yet",
                    p.topic, p.partition
                ));
            }
        }
        let behind = status.partitions.iter().chain(&status.upstream);
        if let Some(p) = behind.into_iter().find(|p| p.lag > max_lag) {
            return Err(format!(
                "{}[{}]: lag {} above {max_lag}",
                p.topic, p.partition, p.lag
            ));
        }
        Ok(())
    }
}

/// Statistics arrive once a second, so a consumed offset can be ahead of the last reported
/// watermark; it proves the mark is at least there. -1 when neither is known.
fn known_high_watermark(reported: Option<i64>, next: Option<i64>) -> i64 {
    match (reported, next) {
        (Some(hw), Some(next)) => hw.max(next),
        (Some(hw), None) => hw,
        (None, Some(next)) => next,
        (None, None) => -1,
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use parking_lot::RwLock;

    use super::*;
    use crate::store::{PartitionState, StoreLimits};

    #[test]
    fn readiness_waits_for_assignment_watermarks_and_lag() {
        let store = Store::new(StoreLimits::default());
        let progress = IngestProgress::default();
        assert!(progress.readiness(&store, 10, 0).is_err());
        progress.mark_assigned();
        // Two partitions assigned, one attached: not ready on the strength of that one alone.
        progress.attaching(2);
        progress.attached();
        let restoring = progress.readiness(&store, 10, 0).unwrap_err();
        assert!(restoring.contains("restoring 1"), "{restoring}");
        progress.attached();
        let key = PartitionKey::new("events", 0);
        let mut state = PartitionState::new(store.limits());
        state.skip_to(100);
        store.attach(key.clone(), Arc::new(RwLock::new(state)));
        let waiting = progress.readiness(&store, 10, 0).unwrap_err();
        assert!(waiting.contains("high watermark"), "{waiting}");
        progress.set_high_watermark(key.clone(), 200);
        let behind = progress.readiness(&store, 10, 0).unwrap_err();
        assert!(behind.contains("lag 100"), "{behind}");
        progress.set_high_watermark(key, 105);
        assert_eq!(progress.readiness(&store, 10, 0), Ok(()));
    }

    #[test]
    fn with_the_repartition_stage_readiness_also_waits_for_its_input() {
        let store = Store::new(StoreLimits::default());
        let progress = IngestProgress::default();
        progress.mark_assigned();
        progress.mark_repartitioning();
        let waiting = progress.readiness(&store, 10, 0).unwrap_err();
        assert!(waiting.contains("assign"), "{waiting}");
        progress.assign_upstream([PartitionKey::new("input", 0)]);
        let waiting = progress.readiness(&store, 10, 0).unwrap_err();
        assert!(waiting.contains("not reported"), "{waiting}");
        progress.set_upstream(PartitionKey::new("input", 0), 5, 500);
        let behind = progress.readiness(&store, 10, 0).unwrap_err();
        assert!(behind.contains("lag 495"), "{behind}");
        progress.set_upstream(PartitionKey::new("input", 0), 498, 500);
        assert_eq!(progress.readiness(&store, 10, 0), Ok(()));
    }

    #[test]
    fn a_revoked_input_partition_leaves_status_and_readiness() {
        let store = Store::new(StoreLimits::default());
        let progress = IngestProgress::default();
        progress.mark_assigned();
        progress.mark_repartitioning();
        let (kept, lost) = (PartitionKey::new("input", 0), PartitionKey::new("input", 1));
        progress.assign_upstream([kept.clone(), lost.clone()]);
        progress.set_upstream(kept.clone(), 500, 500);
        progress.set_upstream(lost.clone(), 5, 126_847);
        assert!(progress.readiness(&store, 10, 0).is_err());
        progress.forget_upstream(&lost);
        assert_eq!(progress.readiness(&store, 10, 0), Ok(()));
        let listed: Vec<i32> = progress
            .status(&store, 0)
            .upstream
            .iter()
            .map(|p| p.partition)
            .collect();
        assert_eq!(listed, [0]);
        // A replica left with no input partition at all is ready, not waiting for one.
        progress.forget_upstream(&kept);
        progress.assign_upstream([]);
        assert_eq!(progress.readiness(&store, 10, 0), Ok(()));
    }

    #[test]
    fn a_consumed_offset_beyond_the_reported_watermark_means_no_lag() {
        assert_eq!(known_high_watermark(Some(5), Some(9)), 9);
        assert_eq!(known_high_watermark(None, None), -1);
        assert_eq!(known_high_watermark(Some(7), None), 7);
    }
}
