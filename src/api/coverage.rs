//! Which partitions an answer covers, when replicas answer together: in the message's
//! `covered_partitions`/`missing_partitions` fields and in response headers.

use std::collections::BTreeSet;

use tonic::Response;

use crate::cluster::Coverage;
use crate::proto;

/// Request header: accept an answer that lacks unreachable partitions.
pub const ALLOW_PARTIAL: &str = "ih-allow-partial";
/// Response headers, with replicas: the partitions counted, and those that could not be.
pub const COVERED_PARTITIONS: &str = "ih-covered-partitions";
pub const MISSING_PARTITIONS: &str = "ih-missing-partitions";

pub(super) fn partition_list(partitions: &BTreeSet<i32>) -> String {
    let names: Vec<String> = partitions.iter().map(i32::to_string).collect();
    names.join(",")
}

/// The answer, with the partitions it covers in its headers when replicas answer together.
pub(super) fn respond<T: Covered>(coverage: &Option<Coverage>, mut message: T) -> Response<T> {
    if let Some(coverage) = coverage {
        message.set_coverage(
            coverage.covered.iter().copied().collect(),
            coverage.missing.iter().copied().collect(),
        );
    }
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

/// An answer that says which partitions it covers.
pub(super) trait Covered {
    fn set_coverage(&mut self, covered: Vec<i32>, missing: Vec<i32>);
}

macro_rules! covered {
    ($($response:ty),*) => {$(
        impl Covered for $response {
            fn set_coverage(&mut self, covered: Vec<i32>, missing: Vec<i32>) {
                self.covered_partitions = covered;
                self.missing_partitions = missing;
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
