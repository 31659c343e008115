//! Per-partition snapshots: the counters together with the partition's next offset, written
//! atomically, so that restoring a snapshot and consuming from its offset counts every event
//! exactly once. `format` is the file image, `files` the directory of snapshots.

mod files;
mod format;
mod objects;

use std::path::PathBuf;

use thiserror::Error;
use tracing::{error, warn};

pub use files::SnapshotFiles;
pub(crate) use objects::SnapshotObjects;

use crate::store::{PartitionKey, PartitionState, StoreLimits};
pub use format::decode;
pub use format::encode;
pub(crate) use format::FORMAT_VERSION;

#[derive(Debug, Error)]
pub enum SnapshotError {
    #[error("snapshot i/o on {path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("cannot encode snapshot: {0}")]
    Encode(String),
    #[error("snapshot {path} is damaged: {problem}")]
    Corrupt { path: PathBuf, problem: String },
    #[error(
        "snapshot {path} has format version {found}, but this build reads versions 4 to {FORMAT_VERSION}. \
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

/// What writing a snapshot gives: where it is, or why it is not.
pub(crate) type Written = Result<SnapshotFile, SnapshotError>;

/// Snapshots kept per partition; the older one is the fallback if the newest is damaged.
pub(crate) const SNAPSHOTS_KEPT: usize = 2;

/// A stored snapshot, in a directory or a bucket.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SnapshotFile {
    /// The file, or the object's location in the bucket.
    pub(crate) path: PathBuf,
    /// Exclusive: the first offset *not* covered by this snapshot.
    pub(crate) next_offset: i64,
}

/// Where snapshots live: a local directory, or object storage shared by every replica. Each
/// backend lists, puts, gets and deletes; the rules (fencing, pruning, falling back past a
/// damaged snapshot) are here, once.
#[derive(Debug, Clone)]
pub enum Snapshots {
    Files(SnapshotFiles),
    Objects(SnapshotObjects),
}

impl Snapshots {
    /// The partition's snapshots, newest first.
    pub(crate) fn list(&self, key: &PartitionKey) -> Result<Vec<SnapshotFile>, SnapshotError> {
        match self {
            Snapshots::Files(files) => files.list(key),
            Snapshots::Objects(objects) => objects.list(key),
        }
    }

    fn get(&self, file: &SnapshotFile) -> Result<Vec<u8>, SnapshotError> {
        match self {
            Snapshots::Files(files) => files.get(file),
            Snapshots::Objects(objects) => objects.get(file),
        }
    }

    fn put(
        &self,
        key: &PartitionKey,
        next_offset: i64,
        image: &[u8],
    ) -> Result<SnapshotFile, SnapshotError> {
        match self {
            Snapshots::Files(files) => files.put(key, next_offset, image),
            Snapshots::Objects(objects) => objects.put(key, next_offset, image),
        }
    }

    fn delete(&self, file: &SnapshotFile) -> Result<(), SnapshotError> {
        match self {
            Snapshots::Files(files) => files.delete(file),
            Snapshots::Objects(objects) => objects.delete(file),
        }
    }

    /// Writes one snapshot unless a newer one is present (fenced: this instance lost the
    /// partition), then prunes all but the newest `SNAPSHOTS_KEPT`.
    pub(crate) fn write(
        &self,
        key: &PartitionKey,
        next_offset: i64,
        image: &[u8],
    ) -> Result<SnapshotFile, SnapshotError> {
        let existing = self.list(key)?;
        if let Some(newest) = existing.first() {
            if newest.next_offset > next_offset {
                return Err(SnapshotError::Fenced {
                    partition: format!("{}[{}]", key.topic, key.partition),
                    newest: newest.next_offset,
                    attempted: next_offset,
                });
            }
            if newest.next_offset == next_offset {
                return Ok(newest.clone());
            }
        }
        let written = self.put(key, next_offset, image)?;
        for old in existing.iter().skip(SNAPSHOTS_KEPT - 1) {
            if let Err(err) = self.delete(old) {
                warn!(error = %err, "old snapshot not deleted; it is pruned on the next write");
            }
        }
        Ok(written)
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

    /// Loads the newest snapshot that decodes. A damaged one is logged and skipped in favour of
    /// the one before it; an unknown format version is an error, never skipped, because the
    /// snapshots are probably fine and only this build cannot read them.
    pub fn load_newest(
        &self,
        key: &PartitionKey,
        limits: &StoreLimits,
    ) -> Result<Option<(PartitionState, SnapshotFile)>, SnapshotError> {
        for file in self.list(key)? {
            let image = match self.get(&file) {
                Ok(image) => image,
                Err(err) => {
                    error!(error = %err, "snapshot unreadable; trying the previous one");
                    continue;
                }
            };
            match decode(&file.path, &image, limits) {
                Ok(state) if state.next_offset() == Some(file.next_offset) => {
                    return Ok(Some((state, file)))
                }
                Ok(_) => {
                    error!(path = %file.path.display(), "snapshot offset does not match its name; trying the previous one")
                }
                Err(err @ SnapshotError::UnsupportedVersion { .. }) => return Err(err),
                Err(err) => error!(error = %err, "snapshot damaged; trying the previous one"),
            }
        }
        Ok(None)
    }

    pub(crate) fn check_versions(&self) -> Result<(), SnapshotError> {
        match self {
            Snapshots::Files(files) => files.check_versions(),
            Snapshots::Objects(objects) => objects.check_versions(),
        }
    }
}
