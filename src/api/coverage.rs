//! How complete an answer is: which partitions it covers when replicas answer together (in the
//! message's `covered_partitions`/`missing_partitions` fields and in response headers), and
//! which offsets it depends on were never read (`incomplete`, `lost_offsets`).

use std::collections::BTreeSet;

use tonic::Response;

use super::convert::ms_to_timestamp;
use crate::cluster::Coverage;
use crate::proto;
use crate::store::LostOffsets;

/// Marks a call forwarded by another replica, so it is never forwarded again.
pub(crate) const FORWARDED: &str = "ih-forwarded";
/// On a forwarded call: who the forwarding replica authorized (their grant's digest, shortened,
/// or their address), for the owner's logs.
pub(crate) const ON_BEHALF_OF: &str = "ih-on-behalf-of";
/// Request header: accept an answer that lacks unreachable partitions.
pub const ALLOW_PARTIAL: &str = "ih-allow-partial";
/// Response headers, with replicas: the partitions counted, and those that could not be.
pub const COVERED_PARTITIONS: &str = "ih-covered-partitions";
pub const MISSING_PARTITIONS: &str = "ih-missing-partitions";

pub(super) fn partition_list(partitions: &BTreeSet<i32>) -> String {
    let names: Vec<String> = partitions.iter().map(i32::to_string).collect();
    names.join(",")
}

/// What an answer rests on: the partitions it covers, with replicas, and the offsets lost in
/// the partitions it depends on.
#[derive(Debug, Default)]
pub(super) struct Answered {
    pub(crate) coverage: Option<Coverage>,
    pub(crate) lost: Vec<LostOffsets>,
}

/// The answer, with its completeness in the message and, with replicas, the partitions it
/// covers in its headers.
pub(super) fn respond<T: Covered>(answered: &Answered, mut message: T) -> Response<T> {
    let Answered { coverage, lost } = answered;
    if let Some(coverage) = coverage {
        message.set_coverage(
            coverage.covered.iter().copied().collect(),
            coverage.missing.iter().copied().collect(),
        );
    }
    message.set_lost(lost.iter().map(lost_to_wire).collect());
    let mut response = Response::new(message);
    if let Some(coverage) = coverage {
        for (header, partitions) in [
            (COVERED_PARTITIONS, &coverage.covered),
            (MISSING_PARTITIONS, &coverage.missing),
        ] {
            if let Ok(value) = partition_list(partitions).parse() {
                response.metadata_mut().insert(header, value);
            }
        }
    }
    response
}

fn lost_to_wire(lost: &LostOffsets) -> proto::LostOffsets {
    proto::LostOffsets {
        topic: lost.topic.clone(),
        partition: lost.partition,
        from_offset: lost.from,
        to_offset: lost.to,
        detected_at: Some(ms_to_timestamp(lost.detected_at_ms)),
        upstream: lost.upstream,
    }
}

/// An answer that says which partitions it covers and what it lacks.
pub(super) trait Covered {
    fn set_coverage(&mut self, covered: Vec<i32>, missing: Vec<i32>);
    fn set_lost(&mut self, lost: Vec<proto::LostOffsets>);
}

macro_rules! covered {
    ($($response:ty),*) => {$(
        impl Covered for $response {
            fn set_coverage(&mut self, covered: Vec<i32>, missing: Vec<i32>) {
                self.covered_partitions = covered;
                self.missing_partitions = missing;
            }

            fn set_lost(&mut self, lost: Vec<proto::LostOffsets>) {
                self.incomplete = !lost.is_empty();
                self.lost_offsets = lost;
            }
        }
    )*};
}

covered!(
    proto::GetOverviewResponse,
    proto::GetPercentageChangeResponse,
    proto::GetErrorBreakdownResponse,
    proto::GetTrendsResponse,
    proto::ListFailuresResponse,
    proto::GetFailureDetailsResponse,
    proto::ListTenantsResponse,
    proto::ListIntegrationsResponse,
    proto::GetIntegrationHealthResponse,
    proto::ListIssuesResponse
);
