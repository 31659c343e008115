//! Offsets the service never read: a range of a partition's log that was gone (deleted by
//! retention, trimmed) before it was consumed. Kept with the partition's state, in its
//! snapshots, so that answers depending on it say they are incomplete for as long as the lost
//! events could still have counted, and a restart does not forget it.

use serde::{Deserialize, Serialize};

/// One range of offsets that was never read, in `[from, to)`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct LostOffsets {
    pub(crate) topic: String,
    pub(crate) partition: i32,
    pub(crate) from: i64,
    pub(crate) to: i64,
    pub(crate) detected_at_ms: i64,
    /// Lost by the repartition stage on its input, so any tenant's events may be among them,
    /// not by this partition's own consumer.
    pub(crate) upstream: bool,
}

/// A partition's lost offsets, and whether it holds the tenant an answer is about: what the
/// rule in `losses_for_tenant` reads, from this replica's partitions or another's.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub(crate) struct PartitionLosses {
    pub(crate) partition: i32,
    pub(crate) holds_tenant: bool,
    pub(crate) losses: Vec<LostOffsets>,
}

/// The lost offsets an answer about a tenant depends on: those of the partitions that hold the
/// tenant, or of every partition when none does (its events may all have been in what was
/// lost). An upstream loss is recorded in every partition; it is listed once.
pub(crate) fn losses_for_tenant(partitions: Vec<PartitionLosses>) -> Vec<LostOffsets> {
    let any_holds = partitions.iter().any(|p| p.holds_tenant);
    let mut all: Vec<LostOffsets> = partitions
        .into_iter()
        .filter(|p| p.holds_tenant || !any_holds)
        .flat_map(|p| p.losses)
        .collect();
    distinct(&mut all);
    all
}

/// Sorted, each range once.
pub(crate) fn distinct(all: &mut Vec<LostOffsets>) {
    all.sort_by(|a, b| {
        (&a.topic, a.partition, a.from, a.to).cmp(&(&b.topic, b.partition, b.from, b.to))
    });
    all.dedup_by(|a, b| {
        (&a.topic, a.partition, a.from, a.to) == (&b.topic, b.partition, b.from, b.to)
    });
}

impl LostOffsets {
    pub(crate) fn count(&self) -> u64 {
        u64::try_from(self.to - self.from).unwrap_or(0)
    }
}

/// The ranges lost by a consumer that expected offset `expected` next and was handed the
/// offsets after each gap in `gaps` (pairs of expected, received), given the partition's log
/// start `log_start`. Only what the log start skipped is lost: a gap below it is compaction or
/// a transaction marker, which the log still accounts for.
pub(crate) fn lost_ranges(gaps: &[(i64, i64)], log_start: i64) -> Vec<(i64, i64)> {
    gaps.iter()
        .filter_map(|&(expected, received)| {
            let end = received.min(log_start);
            (end > expected).then_some((expected, end))
        })
        .collect()
}

/// Where a batch of offsets skips ahead of `next` (the next offset expected): each gap as
/// (expected, received).
pub(crate) fn gaps(next: i64, offsets: impl IntoIterator<Item = i64>) -> Vec<(i64, i64)> {
    let mut expected = next;
    let mut found = Vec::new();
    for offset in offsets {
        if offset > expected {
            found.push((expected, offset));
        }
        expected = expected.max(offset + 1);
    }
    found
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    #[test]
    fn only_what_the_log_start_skipped_is_lost() {
        // Expected 10, got 40; the log starts at 25: 10..25 was deleted, 25..40 compacted.
        assert_eq!(lost_ranges(&[(10, 40)], 25), [(10, 25)]);
        // A transaction marker at 10 with the log start far below: nothing lost.
        assert_eq!(lost_ranges(&[(10, 11)], 0), []);
        // The log start moved past what was received: only up to it is lost.
        assert_eq!(lost_ranges(&[(10, 40)], 90), [(10, 40)]);
    }

    proptest! {
        /// Every offset is either received, lost (below the log start and never received) or
        /// skipped for another reason (at or above the log start), and none twice.
        #[test]
        fn received_lost_and_skipped_partition_the_offsets(
            next in 0_i64..50,
            mut received in proptest::collection::btree_set(0_i64..200, 0..60),
            log_start in 0_i64..200,
        ) {
            received.retain(|o| *o >= log_start.max(next));
            let found = gaps(next, received.iter().copied());
            let lost = lost_ranges(&found, log_start);
            let end = received.iter().next_back().map_or(next, |o| o + 1);
            for offset in next..end {
                let is_lost = lost.iter().any(|(a, b)| (*a..*b).contains(&offset));
                let got = received.contains(&offset);
                prop_assert!(!(is_lost && got));
                prop_assert_eq!(is_lost, !got && offset < log_start, "offset {}", offset);
            }
        }
    }
}
