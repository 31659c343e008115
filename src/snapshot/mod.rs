//! Per-partition snapshots: the counters together with the partition's next offset, written
//! atomically, so that restoring a snapshot and consuming from its offset counts every event
//! exactly once. `format` is the file image, `files` the directory of snapshots.

mod files;
mod format;

use std::path::PathBuf;

use thiserror::Error;

pub use files::{SnapshotFile, SnapshotFiles, SNAPSHOTS_KEPT};
pub use format::{decode, encode, FORMAT_VERSION};

#[derive(Debug, Error)]
pub enum SnapshotError {
    #[error("snapshot i/o on {path}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("cannot encode snapshot: {0}")]
    Encode(String),
    #[error("snapshot {path} is damaged: {problem}")]
    Corrupt { path: PathBuf, problem: String },
    #[error(
        "snapshot {path} has format version {found}, but this build reads version {FORMAT_VERSION}. \
         Run a build that matches the snapshots, or move the state directory aside to rebuild \
         the counts from Kafka (only exact if the topic still holds the whole retention)"
    )]
    UnsupportedVersion { path: PathBuf, found: u32 },
}
