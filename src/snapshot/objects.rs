//! Snapshots in object storage (S3, GCS, Azure Blob, or `file://`), so a partition can move to a
//! replica on another machine. Layout and naming match the local directory:
//! `<prefix>/<topic>/<partition>/<next_offset, 20 digits>.snap`, one object per snapshot,
//! written with a single PUT (atomic on every backend). Fencing: a writer refuses to add a
//! snapshot below the newest one present, and restore always takes the highest valid offset,
//! so an owner that lost a partition can never roll it back.

use std::sync::Arc;

use super::format::{check_header, HEADER_LEN};
use super::{SnapshotError, SnapshotFile, Written};
use crate::store::PartitionKey;
use object_store::path::Path as ObjectPath;
use object_store::{ObjectStore, PutPayload};
use tokio_stream::StreamExt;

/// A bucket (or other object store) and the prefix the snapshots live under.
#[derive(Clone)]
pub struct SnapshotObjects {
    store: Arc<dyn ObjectStore>,
    prefix: ObjectPath,
    /// Object stores are async; this runtime runs their calls for the sync callers (the owner
    /// and the snapshot writer threads).
    runtime: Arc<IoRuntime>,
}

/// A runtime that may be dropped anywhere, async contexts included: it shuts down in the
/// background instead of blocking.
struct IoRuntime(Option<tokio::runtime::Runtime>);

impl IoRuntime {
    fn handle(&self) -> tokio::runtime::Handle {
        match &self.0 {
            Some(runtime) => runtime.handle().clone(),
            None => unreachable!("the runtime is only taken when dropped"),
        }
    }
}

impl Drop for IoRuntime {
    fn drop(&mut self) {
        if let Some(runtime) = self.0.take() {
            runtime.shutdown_background();
        }
    }
}

impl std::fmt::Debug for SnapshotObjects {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "SnapshotObjects({} under {})", self.store, self.prefix)
    }
}

fn object_error(location: &str) -> impl FnOnce(object_store::Error) -> SnapshotError + '_ {
    move |source| SnapshotError::Object {
        location: location.to_owned(),
        source: Box::new(source),
    }
}

impl SnapshotObjects {
    /// Opens `url` (`s3://bucket/prefix`, `gs://…`, `az://…`, `file:///path`) with the given
    /// backend options (e.g. `aws_endpoint_url`, `aws_access_key_id`, `aws_allow_http`).
    pub(crate) fn open<'a>(
        url: &str,
        options: impl IntoIterator<Item = (&'a String, &'a String)>,
    ) -> Result<SnapshotObjects, SnapshotError> {
        let bad = |problem: String| SnapshotError::Url {
            url: url.to_owned(),
            problem,
        };
        let parsed = url::Url::parse(url).map_err(|e| bad(e.to_string()))?;
        let (store, prefix) = object_store::parse_url_opts(
            &parsed,
            options.into_iter().map(|(k, v)| (k.as_str(), v.clone())),
        )
        .map_err(|e| bad(e.to_string()))?;
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .thread_name("ih-objects")
            .enable_all()
            .build()
            .map_err(|e| bad(format!("cannot start its I/O runtime: {e}")))?;
        Ok(SnapshotObjects {
            store: Arc::from(store),
            prefix,
            runtime: Arc::new(IoRuntime(Some(runtime))),
        })
    }

    fn partition_prefix(&self, key: &PartitionKey) -> ObjectPath {
        self.prefix
            .child(key.topic.as_ref())
            .child(key.partition.to_string())
    }

    /// Runs `work` to completion, from a plain thread or from inside another runtime.
    fn run<T: Send + 'static>(
        &self,
        work: impl std::future::Future<Output = T> + Send + 'static,
    ) -> T {
        let handle = self.runtime.handle();
        match tokio::runtime::Handle::try_current() {
            Err(_) => handle.block_on(work),
            // `block_on` may not nest inside a runtime; a scoped thread may.
            Ok(_) => std::thread::scope(|scope| {
                scope
                    .spawn(move || handle.block_on(work))
                    .join()
                    .unwrap_or_else(|panic| std::panic::resume_unwind(panic))
            }),
        }
    }

    /// The partition's snapshots, newest first.
    pub(crate) fn list(&self, key: &PartitionKey) -> Result<Vec<SnapshotFile>, SnapshotError> {
        let prefix = self.partition_prefix(key);
        let store = self.store.clone();
        let location = prefix.to_string();
        let objects = self.run(async move {
            let mut listing = store.list(Some(&prefix));
            let mut found = Vec::new();
            while let Some(meta) = listing.next().await {
                found.push(meta?.location);
            }
            Ok::<_, object_store::Error>(found)
        });
        let mut files: Vec<SnapshotFile> = objects
            .map_err(object_error(&location))?
            .into_iter()
            .filter_map(|path| {
                let name = path.filename()?;
                let next_offset = name.strip_suffix(".snap")?.parse().ok()?;
                Some(SnapshotFile {
                    path: path.to_string().into(),
                    next_offset,
                })
            })
            .collect();
        files.sort_by_key(|f| std::cmp::Reverse(f.next_offset));
        Ok(files)
    }

    pub(super) fn get(&self, file: &SnapshotFile) -> Result<Vec<u8>, SnapshotError> {
        let location = file.path.to_string_lossy().into_owned();
        let store = self.store.clone();
        let path = ObjectPath::from(location.as_str());
        self.run(async move { store.get(&path).await?.bytes().await })
            .map(|bytes| bytes.to_vec())
            .map_err(object_error(&location))
    }

    /// One PUT: atomic on every backend.
    pub(super) fn put(&self, key: &PartitionKey, next_offset: i64, image: &[u8]) -> Written {
        let path = self
            .partition_prefix(key)
            .child(format!("{next_offset:020}.snap"));
        let location = path.to_string();
        let store = self.store.clone();
        let payload = PutPayload::from(image.to_vec());
        self.run(async move { store.put(&path, payload).await })
            .map_err(object_error(&location))?;
        Ok(SnapshotFile {
            path: location.into(),
            next_offset,
        })
    }

    pub(super) fn delete(&self, file: &SnapshotFile) -> Result<(), SnapshotError> {
        let location = file.path.to_string_lossy().into_owned();
        let store = self.store.clone();
        let path = ObjectPath::from(location.as_str());
        self.run(async move { store.delete(&path).await })
            .map_err(object_error(&location))
    }

    /// Checks the format version of every snapshot under the prefix, reading only headers.
    pub(crate) fn check_versions(&self) -> Result<(), SnapshotError> {
        let store = self.store.clone();
        let prefix = self.prefix.clone();
        let location = prefix.to_string();
        let headers = self.run(async move {
            let mut listing = store.list(Some(&prefix));
            let mut headers = Vec::new();
            while let Some(meta) = listing.next().await {
                let meta = meta?;
                if !meta.location.as_ref().ends_with(".snap") || meta.size < HEADER_LEN as u64 {
                    continue;
                }
                // Another replica prunes old snapshots as it writes new ones, so one listed a
                // moment ago may be gone: that is not a reason to refuse to start.
                match store.get_range(&meta.location, 0..HEADER_LEN as u64).await {
                    Ok(header) => headers.push((meta.location.to_string(), header.to_vec())),
                    Err(object_store::Error::NotFound { .. }) => continue,
                    Err(err) => return Err(err),
                }
            }
            Ok::<_, object_store::Error>(headers)
        });
        for (name, header) in headers.map_err(object_error(&location))? {
            if let Err(err @ SnapshotError::UnsupportedVersion { .. }) =
                check_header(std::path::Path::new(&name), &header)
            {
                return Err(err);
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::snapshot::{encode, Snapshots};
    use crate::store::{PartitionState, StoreLimits};

    fn state_at(offset: i64) -> PartitionState {
        let mut state = PartitionState::new(&StoreLimits::default());
        state.skip_to(offset);
        state
    }

    #[test]
    fn a_stale_writer_cannot_replace_a_newer_snapshot() {
        let dir = tempfile::tempdir().unwrap();
        let url = format!("file://{}", dir.path().display());
        let objects = Snapshots::Objects(SnapshotObjects::open(&url, std::iter::empty()).unwrap());
        let key = PartitionKey::new("events", 0);
        for offset in [100, 200, 300] {
            objects
                .write(&key, offset, &encode(&state_at(offset)).unwrap())
                .unwrap();
        }
        let stale = objects.write(&key, 150, &encode(&state_at(150)).unwrap());
        assert!(
            matches!(stale, Err(SnapshotError::Fenced { newest: 300, .. })),
            "{stale:?}"
        );
        let offsets: Vec<i64> = objects
            .list(&key)
            .unwrap()
            .iter()
            .map(|f| f.next_offset)
            .collect();
        assert_eq!(offsets, [300, 200], "newest two kept");
        let (state, _) = objects
            .load_newest(&key, &StoreLimits::default())
            .unwrap()
            .unwrap();
        assert_eq!(state.next_offset(), Some(300));
        objects.check_versions().unwrap();
    }
}
