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
/// Version 2: failure identities are built from the event's own fields (an absent message is
/// stored empty and named from the catalog when read). Version 1 stored the catalog name.
pub const FORMAT_VERSION: u32 = 4;
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

/// Checks the header: magic and version. Returns the version-checked header fields.
pub(super) fn check_header(path: &Path, image: &[u8]) -> Result<(u64, u64), SnapshotError> {
    let corrupt = |problem: &str| SnapshotError::Corrupt {
        path: path.to_owned(),
        problem: problem.to_owned(),
    };
    if image.len() < HEADER_LEN || &image[..8] != MAGIC {
        return Err(corrupt("no snapshot header"));
    }
    let version = read_u32(image, 8);
    if version != FORMAT_VERSION {
        return Err(SnapshotError::UnsupportedVersion {
            path: path.to_owned(),
            found: version,
        });
    }
    Ok((read_u64(image, 12), read_u64(image, 20)))
}

/// Decodes a snapshot file image, refusing anything truncated or altered.
pub fn decode(
    path: &Path,
    image: &[u8],
    limits: &StoreLimits,
) -> Result<PartitionState, SnapshotError> {
    let (length, checksum) = check_header(path, image)?;
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
    let mut state: PartitionState =
        bincode::deserialize(payload).map_err(|e| corrupt(format!("undecodable payload: {e}")))?;
    state.dedup.set_capacity(limits.dedup_capacity);
    Ok(state)
}
