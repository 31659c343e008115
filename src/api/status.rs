//! Ingest status on the wire: one replica's status, merged with its peers', with the
//! partitions nobody reported listed as gaps.

use std::collections::BTreeSet;

use crate::cluster::Cluster;
use crate::ingest::{IngestStatus, PartitionStatus};
use crate::proto;

/// The wire form of ingest status, each partition marked with `owner`.
pub(crate) fn status_response(status: IngestStatus, owner: &str) -> proto::GetIngestStatusResponse {
    let wire = |partitions: Vec<PartitionStatus>| -> Vec<proto::PartitionStatus> {
        partitions
            .into_iter()
            .map(|p| proto::PartitionStatus {
                topic: p.topic,
                partition: p.partition,
                next_offset: p.next_offset,
                high_watermark: p.high_watermark,
                lag: p.lag,
                snapshot_next_offset: p.snapshot.map_or(-1, |s| s.next_offset),
                snapshot_age_seconds: if p.snapshot_age_ms < 0 {
                    -1.0
                } else {
                    p.snapshot_age_ms as f64 / 1000.0
                },
                snapshot_bytes: p.snapshot.map_or(0, |s| s.bytes),
                snapshot_encode_ms: p.snapshot.map_or(0.0, |s| s.encode_ms),
                snapshot_write_ms: p.snapshot.map_or(0.0, |s| s.write_ms),
                owner: owner.to_owned(),
                lost_offsets: p.lost_offsets,
            })
            .collect()
    };
    let lost_offsets = status
        .partitions
        .iter()
        .chain(&status.upstream)
        .map(|p| p.lost_offsets)
        .sum();
    proto::GetIngestStatusResponse {
        lost_offsets,
        partitions: wire(status.partitions),
        upstream_partitions: wire(status.upstream),
        accepted: status.totals.accepted,
        rejected: status.totals.rejected,
        duplicates: status.totals.duplicates,
        late_dropped: status.totals.late_dropped,
        overflowed: status.totals.overflowed,
    }
}

/// Adds another replica's partitions and totals to `into`.
pub(super) fn merge_status(
    into: &mut proto::GetIngestStatusResponse,
    other: proto::GetIngestStatusResponse,
) {
    into.partitions.extend(other.partitions);
    into.upstream_partitions.extend(other.upstream_partitions);
    into.upstream_partitions.sort_by_key(|p| p.partition);
    into.partitions.sort_by_key(|p| p.partition);
    into.accepted += other.accepted;
    into.rejected += other.rejected;
    into.duplicates += other.duplicates;
    into.late_dropped += other.late_dropped;
    into.overflowed += other.overflowed;
    into.lost_offsets += other.lost_offsets;
}

/// Lists, with an empty owner and unknown positions, every partition of the topic that no
/// replica reported, so a gap shows instead of silently smaller totals.
pub(super) fn add_unreported(status: &mut proto::GetIngestStatusResponse, cluster: &Cluster) {
    let reported: BTreeSet<i32> = status.partitions.iter().map(|p| p.partition).collect();
    let count = cluster.directory.partition_count() as i32;
    for partition in (0..count).filter(|p| !reported.contains(p)) {
        status.partitions.push(proto::PartitionStatus {
            topic: cluster.config.input_topic.clone(),
            partition,
            next_offset: -1,
            high_watermark: -1,
            lag: -1,
            snapshot_next_offset: -1,
            snapshot_age_seconds: -1.0,
            ..Default::default()
        });
    }
    status.partitions.sort_by_key(|p| p.partition);
}
