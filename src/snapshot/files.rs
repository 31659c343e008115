//! The snapshot directory: `<state_dir>/<topic>/<partition>/<next_offset, 20 digits>.snap`.
//! The offset in the name is exclusive: the snapshot covers every message *below* it. A file is
//! written to a temp file, fsynced, renamed into place, and the directory is fsynced, so a crash
//! leaves either the old set of files or the new one.

use std::fs::{self, File, OpenOptions};
use std::io::Write;
use std::path::{Path, PathBuf};

use tracing::warn;

use super::format::{check_header, HEADER_LEN};
use super::{SnapshotError, SnapshotFile, Written};
use crate::store::PartitionKey;

fn io(path: &Path) -> impl FnOnce(std::io::Error) -> SnapshotError + '_ {
    move |source| SnapshotError::Io {
        path: path.to_owned(),
        source,
    }
}

/// The snapshot directory of one state dir.
#[derive(Debug, Clone)]
pub struct SnapshotFiles {
    root: PathBuf,
}

impl SnapshotFiles {
    pub fn new(root: impl Into<PathBuf>) -> Self {
        SnapshotFiles { root: root.into() }
    }

    pub(crate) fn partition_dir(&self, key: &PartitionKey) -> PathBuf {
        self.root.join(&*key.topic).join(key.partition.to_string())
    }

    /// Snapshots of a partition, newest first.
    pub(crate) fn list(&self, key: &PartitionKey) -> Result<Vec<SnapshotFile>, SnapshotError> {
        let dir = self.partition_dir(key);
        let entries = match fs::read_dir(&dir) {
            Ok(entries) => entries,
            Err(err) if err.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
            Err(err) => return Err(io(&dir)(err)),
        };
        let mut files: Vec<SnapshotFile> = entries
            .filter_map(Result::ok)
            .filter_map(|entry| {
                let path = entry.path();
                let name = path.file_name()?.to_str()?;
                let next_offset = name.strip_suffix(".snap")?.parse::<i64>().ok()?;
                Some(SnapshotFile { path, next_offset })
            })
            .collect();
        files.sort_by_key(|f| std::cmp::Reverse(f.next_offset));
        Ok(files)
    }

    /// Writes one image atomically: temp file, fsync, rename, fsync of the directory.
    pub(super) fn put(&self, key: &PartitionKey, next_offset: i64, image: &[u8]) -> Written {
        let dir = self.partition_dir(key);
        private_dirs(&self.root, &dir)?;
        let path = dir.join(format!("{next_offset:020}.snap"));
        let temp = dir.join(format!(".{next_offset:020}.snap.tmp"));
        let written = write_synced(&temp, image).and_then(|()| {
            fs::rename(&temp, &path).map_err(io(&path))?;
            sync_dir(&dir)
        });
        if written.is_err() {
            // A partial temp file on a full disk would keep it full after space is freed.
            let _ = fs::remove_file(&temp);
        }
        written?;
        Ok(SnapshotFile { path, next_offset })
    }

    pub(super) fn get(&self, file: &SnapshotFile) -> Result<Vec<u8>, SnapshotError> {
        fs::read(&file.path).map_err(io(&file.path))
    }

    pub(super) fn delete(&self, file: &SnapshotFile) -> Result<(), SnapshotError> {
        fs::remove_file(&file.path).map_err(io(&file.path))
    }

    /// Checks every snapshot's format version, so an incompatible state dir stops start-up
    /// before anything is consumed, and removes temp files a crash or a failed write left.
    pub(crate) fn check_versions(&self) -> Result<(), SnapshotError> {
        let Ok(topics) = fs::read_dir(&self.root) else {
            return Ok(());
        };
        for topic in topics.filter_map(Result::ok) {
            let Ok(partitions) = fs::read_dir(topic.path()) else {
                continue;
            };
            for partition in partitions.filter_map(Result::ok) {
                let Ok(files) = fs::read_dir(partition.path()) else {
                    continue;
                };
                for file in files.filter_map(Result::ok) {
                    let path = file.path();
                    if path.to_string_lossy().ends_with(".snap.tmp") {
                        match fs::remove_file(&path) {
                            Ok(()) => {
                                warn!(path = %path.display(), "removed a snapshot temp file left by a crash or a failed write")
                            }
                            Err(err) => {
                                warn!(path = %path.display(), error = %err, "cannot remove a stale snapshot temp file")
                            }
                        }
                        continue;
                    }
                    if path.extension().and_then(|e| e.to_str()) != Some("snap") {
                        continue;
                    }
                    let mut header = vec![0u8; HEADER_LEN];
                    let read = File::open(&path)
                        .and_then(|mut f| std::io::Read::read_exact(&mut f, &mut header));
                    if read.is_err() {
                        warn!(path = %path.display(), "snapshot too short to check; it will be skipped if damaged");
                        continue;
                    }
                    match check_header(&path, &header) {
                        Err(err @ SnapshotError::UnsupportedVersion { .. }) => return Err(err),
                        _ => continue,
                    }
                }
            }
        }
        Ok(())
    }
}

fn write_synced(path: &Path, image: &[u8]) -> Result<(), SnapshotError> {
    let mut file = private_file(path)?;
    file.write_all(image).map_err(io(path))?;
    file.sync_all().map_err(io(path))
}

/// Creates `dir` and every folder from `root` down to it readable by this user only: snapshots
/// hold every tenant's error messages.
fn private_dirs(root: &Path, dir: &Path) -> Result<(), SnapshotError> {
    use std::os::unix::fs::{DirBuilderExt, PermissionsExt};
    fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(dir)
        .map_err(io(dir))?;
    for folder in dir.ancestors().take_while(|a| a.starts_with(root)) {
        fs::set_permissions(folder, fs::Permissions::from_mode(0o700)).map_err(io(folder))?;
    }
    Ok(())
}

/// A new file only this user may read or write.
fn private_file(path: &Path) -> Result<File, SnapshotError> {
    use std::os::unix::fs::OpenOptionsExt;
    OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(path)
        .map_err(io(path))
}

fn sync_dir(dir: &Path) -> Result<(), SnapshotError> {
    let handle = OpenOptions::new().read(true).open(dir).map_err(io(dir))?;
    handle.sync_all().map_err(io(dir))
}

#[cfg(test)]
mod tests {
    use std::borrow::Cow;

    use super::*;
    use crate::event::{Event, IntegrationType, Outcome};
    use crate::snapshot::{decode, encode, Snapshots, FORMAT_VERSION};
    use crate::store::{PartitionState, StoreLimits};

    fn state_with_events(n: usize) -> PartitionState {
        let limits = StoreLimits::default();
        let mut state = PartitionState::new(&limits);
        let now = 1_767_225_600_000;
        for i in 0..n {
            let outcome = match i % 3 {
                0 => Outcome::Failure,
                _ => Outcome::Success,
            };
            let event = Event {
                integration_name: Cow::Borrowed("n"),
                status_code: Some(500 + (i % 4) as u16),
                ..Event::bare(
                    format!("e{i}"),
                    "t",
                    IntegrationType::ALL[i % 5],
                    "i".into(),
                    outcome,
                    now - (i as i64) * 61_000,
                )
            };
            state.apply(&event, &limits, now).expect("counted");
            state.mark_applied(i as i64);
        }
        state
    }

    fn fingerprint(state: &PartitionState) -> Vec<u8> {
        // Re-encoding is deterministic for the ordered maps; compare the parts that matter.
        let tenant = state.tenant("t").expect("tenant");
        let groups: u64 = tenant
            .groups
            .values()
            .map(|g| g.total_in(i64::MIN, i64::MAX, state.rolled_until))
            .sum();
        format!(
            "{:?}|{:?}|{:?}|{:?}|{}|{}",
            state.next_offset(),
            state.totals,
            tenant.counts,
            tenant.minutes,
            groups,
            state.dedup.len()
        )
        .into_bytes()
    }

    #[test]
    fn snapshots_round_trip() {
        let state = state_with_events(500);
        let image = encode(&state).unwrap();
        let restored = decode(Path::new("x"), &image, &StoreLimits::default()).unwrap();
        assert_eq!(fingerprint(&restored), fingerprint(&state));
        let mut restored = restored;
        assert!(
            !restored.dedup.insert(crate::store::Dedup::key("t", "e7")),
            "dedup window survives"
        );
    }

    #[test]
    fn damage_is_detected() {
        let image = encode(&state_with_events(50)).unwrap();
        let limits = StoreLimits::default();
        let mut flipped = image.clone();
        let last = flipped.len() - 3;
        flipped[last] ^= 0x40;
        assert!(matches!(
            decode(Path::new("x"), &flipped, &limits),
            Err(SnapshotError::Corrupt { .. })
        ));
        let truncated = &image[..image.len() - 10];
        assert!(matches!(
            decode(Path::new("x"), truncated, &limits),
            Err(SnapshotError::Corrupt { .. })
        ));
        let mut future = image.clone();
        let next = FORMAT_VERSION + 1;
        future[8..12].copy_from_slice(&next.to_le_bytes());
        assert!(matches!(
            decode(Path::new("x"), &future, &limits),
            Err(SnapshotError::UnsupportedVersion { found, .. }) if found == next
        ));
    }

    #[test]
    fn newest_valid_snapshot_wins_and_only_two_are_kept() {
        let dir = tempfile::tempdir().unwrap();
        let store = Snapshots::Files(SnapshotFiles::new(dir.path()));
        let key = PartitionKey::new("events", 3);
        for n in [10usize, 20, 30] {
            let state = state_with_events(n);
            store
                .write(&key, n as i64, &encode(&state).unwrap())
                .unwrap();
        }
        let files = store.list(&key).unwrap();
        assert_eq!(
            files.iter().map(|f| f.next_offset).collect::<Vec<_>>(),
            [30, 20]
        );
        let limits = StoreLimits::default();
        let (_, file) = store.load_newest(&key, &limits).unwrap().unwrap();
        assert_eq!(file.next_offset, 30);

        let mut bytes = fs::read(&files[0].path).unwrap();
        let middle = bytes.len() / 2;
        bytes[middle] ^= 0xff;
        fs::write(&files[0].path, bytes).unwrap();
        let (state, file) = store.load_newest(&key, &limits).unwrap().unwrap();
        assert_eq!((file.next_offset, state.next_offset()), (20, Some(20)));
    }

    #[test]
    fn snapshots_are_readable_by_their_owner_only() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().join("state");
        let files = SnapshotFiles::new(&root);
        let store = Snapshots::Files(files.clone());
        let key = PartitionKey::new("events", 3);
        let file = store
            .write(&key, 5, &encode(&state_with_events(5)).unwrap())
            .unwrap();
        let mode = |p: &Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode(&file.path), 0o600);
        assert_eq!(mode(&root), 0o700);
        assert_eq!(mode(&files.partition_dir(&key)), 0o700);
    }

    #[test]
    fn a_version_1_snapshot_stops_start_up_with_what_to_do() {
        let dir = tempfile::tempdir().unwrap();
        let store = Snapshots::Files(SnapshotFiles::new(dir.path()));
        let key = PartitionKey::new("events", 0);
        let mut image = encode(&state_with_events(5)).unwrap();
        image[8..12].copy_from_slice(&1u32.to_le_bytes());
        store.write(&key, 5, &image).unwrap();
        let err = store.check_versions().unwrap_err();
        assert!(err.to_string().contains("format version 1"), "{err}");
        assert!(err.to_string().contains("rebuild"), "{err}");
        assert_ne!(FORMAT_VERSION, 1);
        assert!(store.load_newest(&key, &StoreLimits::default()).is_err());
    }
}
