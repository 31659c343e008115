//! Which offset of `<topic>.alerts` the notifier may commit. Records are delivered out of
//! order (a destination that keeps failing holds its record while later ones are sent), so a
//! partition's committable offset is its oldest record still being delivered, or the offset
//! after the last record read when none is. A crash then repeats only what was read after
//! that point.
//!
//! Each partition's deliveries run under a generation: when the partition is revoked, its
//! deliveries are cancelled and anything they report afterwards is ignored, so a partition
//! assigned again starts afresh from the committed offset.

use std::collections::{BTreeMap, HashMap};

use tokio_util::sync::CancellationToken;

/// Which partition and generation a delivery belongs to, and its record's offset.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Ticket {
    pub(crate) partition: i32,
    pub(crate) generation: u64,
    pub(crate) offset: i64,
}

#[derive(Debug)]
struct PartitionProgress {
    generation: u64,
    /// Records read and not yet delivered everywhere: offset → deliveries left.
    pending: BTreeMap<i64, usize>,
    /// The offset after the last record read.
    read_to: i64,
    /// The offset last committed (or found committed).
    committed: Option<i64>,
    cancel: CancellationToken,
}

impl PartitionProgress {
    fn committable(&self) -> i64 {
        self.pending
            .first_key_value()
            .map_or(self.read_to, |(offset, _)| *offset)
    }
}

#[derive(Debug, Default)]
pub(crate) struct Progress {
    partitions: HashMap<i32, PartitionProgress>,
    generations: u64,
}

impl Progress {
    /// Records that the record at `offset` was read and waits for `deliveries` deliveries
    /// (none: it is done at once). Returns its ticket and the token that cancels them.
    pub(crate) fn read(
        &mut self,
        partition: i32,
        offset: i64,
        deliveries: usize,
        parent: &CancellationToken,
    ) -> (Ticket, CancellationToken) {
        let generations = &mut self.generations;
        let progress = self.partitions.entry(partition).or_insert_with(|| {
            *generations += 1;
            PartitionProgress {
                generation: *generations,
                pending: BTreeMap::new(),
                read_to: offset,
                committed: None,
                cancel: parent.child_token(),
            }
        });
        progress.read_to = progress.read_to.max(offset + 1);
        if deliveries > 0 {
            progress.pending.insert(offset, deliveries);
        }
        let ticket = Ticket {
            partition,
            generation: progress.generation,
            offset,
        };
        (ticket, progress.cancel.clone())
    }

    /// One delivery of the ticket's record ended (taken, or written to the dead letters).
    pub(crate) fn delivered(&mut self, ticket: Ticket) {
        let Some(progress) = self.partitions.get_mut(&ticket.partition) else {
            return;
        };
        if progress.generation != ticket.generation {
            return;
        }
        if let Some(left) = progress.pending.get_mut(&ticket.offset) {
            *left = left.saturating_sub(1);
            if *left == 0 {
                progress.pending.remove(&ticket.offset);
            }
        }
    }

    /// The partitions whose committable offset moved past what was committed, with that
    /// offset; each is taken as committed.
    pub(crate) fn take_commits(&mut self) -> Vec<(i32, i64)> {
        let mut moved = Vec::new();
        for (partition, progress) in &mut self.partitions {
            let offset = progress.committable();
            if progress.committed.is_none_or(|c| c < offset) {
                progress.committed = Some(offset);
                moved.push((*partition, offset));
            }
        }
        moved.sort_unstable();
        moved
    }

    /// The committable offset of `partition`, when a record of it was read.
    pub(crate) fn committable(&self, partition: i32) -> Option<i64> {
        self.partitions.get(&partition).map(|p| p.committable())
    }

    /// Forgets `partition` and cancels its deliveries: it now belongs to another notifier.
    pub(crate) fn revoke(&mut self, partition: i32) {
        if let Some(progress) = self.partitions.remove(&partition) {
            progress.cancel.cancel();
        }
    }

    /// Records read and not yet delivered everywhere.
    pub(crate) fn pending_records(&self) -> usize {
        self.partitions.values().map(|p| p.pending.len()).sum()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn a_record_held_back_holds_the_commit_and_a_revoked_partition_forgets() {
        let root = CancellationToken::new();
        let mut progress = Progress::default();
        let (held, cancel) = progress.read(0, 10, 2, &root);
        let (next, _) = progress.read(0, 11, 1, &root);
        progress.delivered(next);
        progress.delivered(held);
        assert_eq!(
            progress.take_commits(),
            vec![(0, 10)],
            "where reading began"
        );
        assert_eq!(progress.committable(0), Some(10));
        assert_eq!(progress.take_commits(), vec![], "held back by offset 10");
        progress.delivered(held);
        assert_eq!(progress.take_commits(), vec![(0, 12)]);
        assert_eq!(progress.take_commits(), vec![], "already committed");

        let (late, _) = progress.read(0, 12, 1, &root);
        progress.revoke(0);
        assert!(cancel.is_cancelled());
        let (fresh, _) = progress.read(0, 12, 1, &root);
        progress.delivered(late);
        assert_eq!(
            progress.committable(0),
            Some(12),
            "the old generation is ignored"
        );
        progress.delivered(fresh);
        assert_eq!(progress.take_commits(), vec![(0, 13)]);
    }

    proptest! {
        /// Against a recount: the committable offset is the smallest offset read and not
        /// delivered everywhere, or the offset after the last one read.
        #[test]
        fn the_commit_never_passes_a_record_still_being_delivered(
            records in prop::collection::vec(0usize..4, 1..60),
            order in prop::collection::vec(any::<prop::sample::Index>(), 0..200),
        ) {
            let root = CancellationToken::new();
            let mut progress = Progress::default();
            let mut left: Vec<usize> = Vec::new();
            let mut tickets = Vec::new();
            for (offset, deliveries) in records.iter().enumerate() {
                let (ticket, _) = progress.read(3, offset as i64, *deliveries, &root);
                tickets.push(ticket);
                left.push(*deliveries);
            }
            let mut committed = 0;
            for index in order {
                let which = index.index(tickets.len());
                if left[which] > 0 {
                    left[which] -= 1;
                    progress.delivered(tickets[which]);
                }
                let expected = left.iter().position(|l| *l > 0).unwrap_or(left.len()) as i64;
                prop_assert_eq!(progress.committable(3), Some(expected));
                for (_, offset) in progress.take_commits() {
                    prop_assert!(offset > committed || (committed == 0 && offset == 0));
                    committed = offset;
                }
                prop_assert_eq!(committed, expected);
            }
            let pending = left.iter().filter(|l| **l > 0).count();
            prop_assert_eq!(progress.pending_records(), pending);
        }
    }
}
