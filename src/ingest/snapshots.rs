//! When to snapshot, and the writer thread that makes snapshots durable. The owner encodes (the
//! only pause ingest sees); the writer thread does the file work and then queues the offsets
//! for an advisory commit to Kafka.

use std::collections::HashMap;
use std::sync::mpsc::{sync_channel, Receiver, SyncSender};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use tracing::{debug, error};

use super::consumer::PendingCommits;
use super::progress::{IngestProgress, SnapshotStatus};
use super::IngestError;
use crate::clock::SharedClock;
use crate::ops::Metrics;
use crate::snapshot::{self, Snapshots};
use crate::store::{PartitionKey, SharedPartition};

struct WriteJob {
    key: PartitionKey,
    next_offset: i64,
    image: Vec<u8>,
    encode_ms: f64,
}

/// Snapshots taken together, written in parallel; `done` is told when all are durable.
struct WriteBatch {
    jobs: Vec<WriteJob>,
    done: Option<SyncSender<()>>,
}

/// Decides when snapshots are due, encodes them on the owner thread (the only pause ingest
/// sees) and hands the bytes to a writer thread for the file work.
pub(crate) struct SnapshotSchedule {
    pub(crate) target: Snapshots,
    interval: Duration,
    /// `None` once `finish` has closed the channel.
    writer: Option<SyncSender<WriteBatch>>,
    thread: Option<JoinHandle<()>>,
    /// When each owned partition was last snapshotted (or tried), and at which offset.
    last: HashMap<PartitionKey, (Instant, Option<i64>)>,
    /// Which offsets are durable, and which writes failed.
    progress: Arc<IngestProgress>,
}

impl SnapshotSchedule {
    pub(crate) fn start(
        target: Snapshots,
        interval: Duration,
        written: Written,
    ) -> Result<Self, IngestError> {
        let (writer, jobs) = sync_channel::<WriteBatch>(4);
        let thread_target = target.clone();
        let progress = written.progress.clone();
        let thread = std::thread::Builder::new()
            .name("ih-snapshots".into())
            .spawn(move || write_snapshots(thread_target, jobs, written))
            .map_err(IngestError::Thread)?;
        Ok(SnapshotSchedule {
            target,
            interval,
            writer: Some(writer),
            thread: Some(thread),
            last: HashMap::new(),
            progress,
        })
    }

    /// Closes the writer's channel and waits until every queued snapshot is written.
    pub(crate) fn finish(&mut self) {
        self.writer = None;
        if let Some(thread) = self.thread.take() {
            if thread.join().is_err() {
                error!("snapshot writer thread panicked");
            }
        }
    }

    pub(crate) fn restored(&mut self, key: &PartitionKey, shared: &SharedPartition) {
        self.last
            .insert(key.clone(), (Instant::now(), shared.read().next_offset()));
    }

    pub(crate) fn due(
        &self,
        owned: &[(PartitionKey, SharedPartition)],
    ) -> Vec<(PartitionKey, SharedPartition)> {
        owned
            .iter()
            .filter(|(key, shared)| match self.last.get(key) {
                Some((at, offset)) => {
                    let failing = self.progress.snapshot_failing(key);
                    // A failed write is tried again even while the partition is quiet, less
                    // often each time it fails again (up to 64 intervals apart).
                    let wait = self.interval * 2u32.pow(failing.map_or(0, |(_, n)| n.min(6)));
                    let moved = *offset != shared.read().next_offset();
                    at.elapsed() >= wait && (moved || failing.is_some())
                }
                None => true,
            })
            .cloned()
            .collect()
    }

    /// Encodes each partition now; with `wait`, also blocks until every file is durable.
    pub(crate) fn take(&mut self, partitions: Vec<(PartitionKey, SharedPartition)>, wait: bool) {
        let mut jobs = Vec::new();
        for (key, shared) in partitions {
            let started = Instant::now();
            let (image, next_offset) = {
                let state = shared.read();
                (snapshot::encode(&state), state.next_offset())
            };
            self.last.insert(key.clone(), (Instant::now(), next_offset));
            let Some(next_offset) = next_offset else {
                continue;
            };
            match image {
                Ok(image) => jobs.push(WriteJob {
                    key,
                    next_offset,
                    image,
                    encode_ms: started.elapsed().as_secs_f64() * 1000.0,
                }),
                Err(err) => error!(error = %err, "snapshot not taken"),
            }
        }
        if jobs.is_empty() {
            return;
        }
        let (done, finished) = sync_channel(1);
        let batch = WriteBatch {
            jobs,
            done: wait.then_some(done),
        };
        let Some(writer) = &self.writer else {
            error!("snapshot writer already finished");
            return;
        };
        if writer.send(batch).is_err() {
            error!("snapshot writer is gone");
            return;
        }
        if wait {
            let _ = finished.recv();
        }
    }
}

/// Where the writer thread reports durable snapshots.
pub(crate) struct Written {
    pub(crate) progress: Arc<IngestProgress>,
    pub(crate) clock: SharedClock,
    pub(crate) commits: PendingCommits,
    pub(crate) metrics: Arc<Metrics>,
}

fn write_snapshots(store: Snapshots, batches: Receiver<WriteBatch>, written: Written) {
    let Written {
        progress,
        clock,
        commits,
        metrics,
    } = written;
    for batch in batches {
        let started = Instant::now();
        let files: Vec<_> = batch
            .jobs
            .iter()
            .map(|job| (&job.key, job.next_offset, job.image.as_slice()))
            .collect();
        let results = store.write_many(&files);
        let write_ms = started.elapsed().as_secs_f64() * 1000.0;
        for (job, result) in batch.jobs.into_iter().zip(results) {
            match result {
                Ok(file) => {
                    metrics.snapshot(
                        Duration::from_secs_f64(job.encode_ms / 1000.0),
                        started.elapsed(),
                    );
                    debug!(path = %file.path.display(), bytes = job.image.len(), encode_ms = job.encode_ms, write_ms, "snapshot written");
                    progress.set_snapshot_status(
                        job.key.clone(),
                        SnapshotStatus {
                            next_offset: job.next_offset,
                            written_at_ms: clock.now_ms(),
                            bytes: job.image.len() as u64,
                            encode_ms: job.encode_ms,
                            write_ms,
                        },
                    );
                    commits.lock().push((job.key, job.next_offset));
                }
                Err(err) => {
                    metrics.snapshot_failed();
                    progress.snapshot_failed(job.key.clone(), clock.now_ms());
                    error!(topic = %job.key.topic, partition = job.key.partition, error = %err, "snapshot write failed; the previous snapshot stays in force and the write is tried again")
                }
            }
        }
        if let Some(done) = batch.done {
            let _ = done.send(());
        }
    }
}
