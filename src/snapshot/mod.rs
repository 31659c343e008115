//! Per-partition snapshots: the counters together with the partition's next offset, written
//! atomically, so that restoring a snapshot and consuming from its offset counts every event
//! exactly once. `format` is the file image, `files` the directory of snapshots.

mod files;
mod format;
mod objects;

use std::path::PathBuf;

use thiserror::Error;

pub use files::{SnapshotFile, SnapshotFiles, SNAPSHOTS_KEPT};
pub use objects::SnapshotObjects;

use crate::store::{PartitionKey, PartitionState, StoreLimits};
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
    #[error("object storage at {location}")]
    Object {
        location: String,
        source: Box<object_store::Error>,
    },
    #[error("state_url {url:?} cannot be used: {problem}")]
    Url { url: String, problem: String },
    #[error(
        "{partition}: a snapshot at offset {newest} exists, so one at {attempted} is refused \
         (this instance no longer owns the partition)"
    )]
    Fenced {
        partition: String,
        newest: i64,
        attempted: i64,
    },
}

/// Where snapshots live: a local directory, or object storage shared by every replica.
#[derive(Debug, Clone)]
pub enum Snapshots {
    Files(SnapshotFiles),
    Objects(SnapshotObjects),
}

impl Snapshots {
    pub fn write(
        &self,
        key: &PartitionKey,
        next_offset: i64,
        image: &[u8],
    ) -> Result<SnapshotFile, SnapshotError> {
        match self {
            Snapshots::Files(files) => files.write(key, next_offset, image),
            Snapshots::Objects(objects) => objects.write(key, next_offset, image),
        }
    }

    /// Writes several partitions' snapshots at once, a thread each. Results come back in input
    /// order.
    pub fn write_many(
        &self,
        jobs: &[(&PartitionKey, i64, &[u8])],
    ) -> Vec<Result<SnapshotFile, SnapshotError>> {
        std::thread::scope(|scope| {
            let handles: Vec<_> = jobs
                .iter()
                .map(|(key, next_offset, image)| {
                    scope.spawn(move || self.write(key, *next_offset, image))
                })
                .collect();
            handles
                .into_iter()
                .map(|handle| {
                    handle.join().unwrap_or_else(|_| {
                        Err(SnapshotError::Encode(
                            "snapshot writer thread panicked".into(),
                        ))
                    })
                })
                .collect()
        })
    }

    pub fn load_newest(
        &self,
        key: &PartitionKey,
        limits: &StoreLimits,
    ) -> Result<Option<(PartitionState, SnapshotFile)>, SnapshotError> {
        match self {
            Snapshots::Files(files) => files.load_newest(key, limits),
            Snapshots::Objects(objects) => objects.load_newest(key, limits),
        }
    }

    pub fn check_versions(&self) -> Result<(), SnapshotError> {
        match self {
            Snapshots::Files(files) => files.check_versions(),
            Snapshots::Objects(objects) => objects.check_versions(),
        }
    }
}
