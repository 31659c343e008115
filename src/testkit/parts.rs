//! Requests for the replicas' peer service, as another replica would encode them.

use crate::query::{encode_parts, Part, TimeRange, PARTS_VERSION};

/// The parts version this build speaks, and `count` copies of the part an overview plans (the
/// tenant's counts over the last day), encoded as a `GetTenantParts` request carries them.
pub fn overview_parts(count: usize, now_ms: i64) -> (u32, Vec<u8>) {
    let part = Part::Counts {
        range: TimeRange::new(now_ms - 24 * 3_600_000, now_ms),
        by_minute: false,
    };
    let parts = vec![part; count];
    // Parts built here, not from input: they always encode.
    let encoded = encode_parts(&parts).expect("parts encode");
    (PARTS_VERSION, encoded)
}
