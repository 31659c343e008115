//! The snapshot file format: the counters together with the partition's next offset, written
//! atomically, so that restoring a snapshot and consuming from its offset counts every event
//! exactly once.
//!
//! A file is `MAGIC | version u32 | payload length u64 | xxh3-64 of payload u64 | payload
//! (bincode)`, all little-endian.

use std::path::Path;

use super::SnapshotError;
use crate::store::{PartitionState, StoreLimits};

const MAGIC: &[u8; 8] = b"IHSNAP\0\0";
/// Version 6: the state ends with the offsets never read (`PartitionState::losses`); an older
/// payload is read as one with none.
/// Version 5: a message byte-equal to its code's catalog name is stored empty, like an absent
/// one, so both are one failure group. Version 4 has the same layout; it is read and its
/// catalog-named groups are merged (`PartitionState::merge_catalog_named_groups`).
pub const FORMAT_VERSION: u32 = 6;
/// The oldest version this build reads.
const OLDEST_READABLE: u32 = 4;
pub(super) const HEADER_LEN: usize = 8 + 4 + 8 + 8;

/// Encodes a partition's state into a snapshot file image.
pub fn encode(state: &PartitionState) -> Result<Vec<u8>, SnapshotError> {
    let payload = bincode::serialize(state).map_err(|e| SnapshotError::Encode(e.to_string()))?;
    let mut image = Vec::with_capacity(HEADER_LEN + payload.len());
    image.extend_from_slice(MAGIC);
    image.extend_from_slice(&FORMAT_VERSION.to_le_bytes());
    image.extend_from_slice(&(payload.len() as u64).to_le_bytes());
    image.extend_from_slice(&xxhash_rust::xxh3::xxh3_64(&payload).to_le_bytes());
    image.extend_from_slice(&payload);
    Ok(image)
}

fn read_u32(bytes: &[u8], at: usize) -> u32 {
    let mut buf = [0u8; 4];
    buf.copy_from_slice(&bytes[at..at + 4]);
    u32::from_le_bytes(buf)
}

fn read_u64(bytes: &[u8], at: usize) -> u64 {
    let mut buf = [0u8; 8];
    buf.copy_from_slice(&bytes[at..at + 8]);
    u64::from_le_bytes(buf)
}

/// The header fields after the magic: version, payload length and checksum.
pub(super) struct Header {
    pub version: u32,
    pub length: u64,
    pub checksum: u64,
}

/// Checks the header: magic and a version this build reads.
pub(super) fn check_header(path: &Path, image: &[u8]) -> Result<Header, SnapshotError> {
    let corrupt = |problem: &str| SnapshotError::Corrupt {
        path: path.to_owned(),
        problem: problem.to_owned(),
    };
    if image.len() < HEADER_LEN || &image[..8] != MAGIC {
        return Err(corrupt("no snapshot header"));
    }
    let version = read_u32(image, 8);
    if !(OLDEST_READABLE..=FORMAT_VERSION).contains(&version) {
        return Err(SnapshotError::UnsupportedVersion {
            path: path.to_owned(),
            found: version,
        });
    }
    Ok(Header {
        version,
        length: read_u64(image, 12),
        checksum: read_u64(image, 20),
    })
}

/// Decodes a snapshot file image, refusing anything truncated or altered.
pub fn decode(
    path: &Path,
    image: &[u8],
    limits: &StoreLimits,
) -> Result<PartitionState, SnapshotError> {
    let Header {
        version,
        length,
        checksum,
    } = check_header(path, image)?;
    let corrupt = |problem: String| SnapshotError::Corrupt {
        path: path.to_owned(),
        problem,
    };
    let payload = &image[HEADER_LEN..];
    if payload.len() as u64 != length {
        return Err(corrupt(format!(
            "payload is {} bytes, header says {length}",
            payload.len()
        )));
    }
    if xxhash_rust::xxh3::xxh3_64(payload) != checksum {
        return Err(corrupt("checksum mismatch".into()));
    }
    let mut state: PartitionState = match version {
        6.. => bincode::deserialize(payload),
        // An empty list of losses is its length, a zero u64.
        _ => bincode::deserialize(&[payload, &[0u8; 8][..]].concat()),
    }
    .map_err(|e| corrupt(format!("undecodable payload: {e}")))?;
    state.dedup.set_capacity(limits.dedup_capacity);
    if version < 5 {
        state.rekeys = state.merge_catalog_named_groups();
    }
    Ok(state)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::description_tests::{legacy_failures, legacy_state};

    /// A version 4 image of `state`: the layout without the trailing losses, under the older
    /// version number, with its own length and checksum.
    fn version_4_image(state: &PartitionState) -> Vec<u8> {
        assert!(state.losses.is_empty(), "version 4 had no losses");
        let image = encode(state).expect("encodes");
        let payload = &image[HEADER_LEN..image.len() - 8];
        let mut old = Vec::new();
        old.extend_from_slice(MAGIC);
        old.extend_from_slice(&4u32.to_le_bytes());
        old.extend_from_slice(&(payload.len() as u64).to_le_bytes());
        old.extend_from_slice(&xxhash_rust::xxh3::xxh3_64(payload).to_le_bytes());
        old.extend_from_slice(payload);
        old
    }

    #[test]
    fn a_version_4_snapshot_is_read_with_its_catalog_named_groups_merged() {
        let legacy = legacy_state(&legacy_failures());
        let groups_before = legacy.group_count();
        let image = version_4_image(&legacy);
        let limits = StoreLimits::default();
        let state = decode(Path::new("v4"), &image, &limits).expect("version 4 is read");
        assert_eq!(
            state.group_count(),
            groups_before - 1,
            "the catalog-named 404 group joined the one without a message"
        );
        assert_eq!(state.rekeys.len(), 1);
        let tenant = state.tenant("t1").expect("tenant");
        let total: u64 = tenant
            .groups
            .values()
            .map(|g| g.total_in(i64::MIN, i64::MAX))
            .sum();
        assert_eq!(total, 3, "nothing is lost in the merge");
        assert!(tenant
            .groups
            .values()
            .any(|g| g.failure_id == state.rekeys[0].to));
    }

    #[test]
    fn losses_survive_a_round_trip() {
        let mut state = legacy_state(&legacy_failures());
        state.losses.push(crate::store::LostOffsets {
            topic: "events".into(),
            partition: 2,
            from: 10,
            to: 250,
            detected_at_ms: 1_767_225_600_000,
            upstream: false,
        });
        let image = encode(&state).expect("encodes");
        let back = decode(Path::new("v6"), &image, &StoreLimits::default()).expect("reads");
        assert_eq!(back.losses, state.losses);
        assert_eq!(back.lost_here(), 240);
    }

    #[test]
    fn a_current_snapshot_needs_no_migration() {
        let legacy = legacy_state(&legacy_failures());
        let image = encode(&legacy).expect("encodes");
        let state = decode(Path::new("v5"), &image, &StoreLimits::default()).expect("reads");
        assert!(state.rekeys.is_empty());
        assert_eq!(state.group_count(), legacy.group_count());
    }
}
