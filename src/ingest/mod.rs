//! Kafka ingest: a consumer thread, an owner thread, snapshots and the dead-letter producer.
//!
//! The consumer thread polls librdkafka and forwards messages in batches over a bounded channel
//! (backpressure). The owner thread is the single writer of partition state: it decodes,
//! deduplicates and applies each batch. Rebalance callbacks run on the consumer thread; they
//! send `Assigned` / `Revoked` to the owner and wait for its reply, so by the time a revoke
//! returns every message polled before it has been applied, and an assignment starts at the
//! exact offset the owner's state ends at. Auto-commit is off: the offset lives with the state.

mod consumer;
mod dead_letters;
mod log_start;
mod owner;
mod progress;
mod repartition;
mod snapshots;
mod topics;

use std::collections::HashMap;
use std::sync::mpsc::{sync_channel, SyncSender};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Duration;

use parking_lot::Mutex;
use rdkafka::config::ClientConfig;
use rdkafka::consumer::Consumer;
use rdkafka::error::KafkaError;
use rdkafka::message::OwnedMessage;
use rdkafka::Offset;
use thiserror::Error;
use tokio_util::sync::CancellationToken;
use tracing::error;

use consumer::PendingCommits;
pub use dead_letters::send_when_queued;
pub(crate) use dead_letters::DeadLetters;
pub use dead_letters::{
    HEADER_ERROR, HEADER_REASON, HEADER_SOURCE_OFFSET, HEADER_SOURCE_PARTITION, HEADER_SOURCE_TOPIC,
};
pub(crate) use log_start::KafkaLogStarts;
pub(crate) use owner::AssignmentHook;
use owner::Owner;
pub use owner::LOCK_CHUNK;
pub use progress::IngestProgress;
pub(crate) use progress::{IngestStatus, PartitionStatus};
pub(crate) use repartition::{is_rejection_marker, loss_marker};
use snapshots::{SnapshotSchedule, Written};
pub(crate) use topics::{
    check_topics, internal_topics, recheck_until_fine, TopicPolicy, TopicStatus,
};

use crate::clock::SharedClock;
use crate::config::KafkaProperties;
use crate::ops::Metrics;
use crate::snapshot::{SnapshotError, Snapshots};
use crate::store::{PartitionKey, Store};

#[derive(Debug, Error)]
pub enum IngestError {
    #[error("kafka client could not be created")]
    Client(#[source] KafkaError),
    #[error("cannot subscribe to topic {topic}")]
    Subscribe { topic: String, source: KafkaError },
    #[error("cannot start an ingest thread")]
    Thread(#[source] std::io::Error),
}

#[derive(Debug, Clone)]
pub(crate) struct IngestConfig {
    pub(crate) brokers: String,
    /// The topic aggregation reads: the input, or the repartition stage's output.
    pub(crate) topic: String,
    /// With a value, the repartition stage reads this input topic and writes `topic`, keyed by
    /// tenant.
    pub(crate) repartition_from: Option<String>,
    pub(crate) group: String,
    /// `group.instance.id`: static membership, so a restarted instance takes its partitions
    /// straight back instead of waiting for a group-wide rebalance.
    pub(crate) instance_id: Option<String>,
    pub(crate) dlq_topic: String,
    pub(crate) max_future_ms: i64,
    /// Larger messages are rejected as `too_large`.
    pub(crate) max_message_bytes: usize,
    /// librdkafka properties passed through to both consumer and DLQ producer.
    pub(crate) kafka: KafkaProperties,
    /// Where snapshots live; `None` keeps state in memory only.
    pub(crate) snapshots: Option<Snapshots>,
    pub(crate) snapshot_interval: Duration,
}

/// What the owner thread is told: a batch to apply, or a rebalance to answer.
pub(crate) enum Command {
    Batch(Vec<OwnedMessage>),
    Assigned(Vec<PartitionKey>, SyncSender<Vec<(PartitionKey, Offset)>>),
    Revoked(Vec<PartitionKey>, SyncSender<()>),
}

/// Running ingest; `join` waits for its threads after shutdown was signalled.
pub(crate) struct IngestHandle {
    consumer: JoinHandle<()>,
    owner: JoinHandle<()>,
    repartition: Option<JoinHandle<()>>,
}

impl IngestHandle {
    pub(crate) fn join(self) {
        if let Some(stage) = self.repartition {
            if stage.join().is_err() {
                error!("repartition thread panicked");
            }
        }
        if self.consumer.join().is_err() {
            error!("consumer thread panicked");
        }
        if self.owner.join().is_err() {
            error!("owner thread panicked");
        }
    }
}

/// The parts ingest writes to and reports through.
pub(crate) struct IngestShared {
    pub(crate) store: Arc<Store>,
    pub(crate) progress: Arc<IngestProgress>,
    pub(crate) clock: SharedClock,
    pub(crate) metrics: Arc<Metrics>,
    pub(crate) on_assignment: Option<AssignmentHook>,
}

pub(crate) fn start(
    config: IngestConfig,
    shared: IngestShared,
    shutdown: CancellationToken,
) -> Result<IngestHandle, IngestError> {
    let IngestShared {
        store,
        progress,
        clock,
        metrics,
        on_assignment,
    } = shared;
    let repartition = match &config.repartition_from {
        Some(input) => Some(repartition::start(
            &config,
            input,
            clock.clone(),
            metrics.clone(),
            progress.clone(),
            shutdown.clone(),
        )?),
        None => None,
    };
    let (commands, inbox) = sync_channel::<Command>(16);
    let dead_letters = DeadLetters::new(&config, metrics.clone())?;
    let commits: PendingCommits = Arc::new(Mutex::new(Vec::new()));
    let snapshots = match &config.snapshots {
        Some(target) => Some(SnapshotSchedule::start(
            target.clone(),
            config.snapshot_interval,
            Written {
                progress: progress.clone(),
                clock: clock.clone(),
                commits: commits.clone(),
                metrics: metrics.clone(),
            },
        )?),
        None => None,
    };
    let consumer = consumer::new_consumer(&config, commands.clone(), progress.clone())?;
    consumer
        .subscribe(&[config.topic.as_str()])
        .map_err(|source| IngestError::Subscribe {
            topic: config.topic.clone(),
            source,
        })?;
    let owner = Owner {
        store,
        progress,
        clock,
        max_future_ms: config.max_future_ms,
        max_message_bytes: config.max_message_bytes,
        input_keyed_by_tenant: config.repartition_from.is_none(),
        dead_letters: Box::new(dead_letters),
        parked: HashMap::new(),
        snapshots,
        shutdown: shutdown.clone(),
        metrics,
        on_assignment,
        log_starts: Box::new(KafkaLogStarts::new(&config)?),
    };
    let owner = std::thread::Builder::new()
        .name("ih-owner".into())
        .spawn(move || owner.run(inbox))
        .map_err(IngestError::Thread)?;
    let consumer = std::thread::Builder::new()
        .name("ih-consumer".into())
        .spawn(move || consumer::consume(consumer, commands, commits, shutdown))
        .map_err(IngestError::Thread)?;
    Ok(IngestHandle {
        consumer,
        owner,
        repartition,
    })
}

/// Defaults first, so a passed-through property can override them.
pub(crate) fn client_config(config: &IngestConfig, defaults: &[(&str, &str)]) -> ClientConfig {
    let mut client = ClientConfig::new();
    for (key, value) in defaults {
        client.set(*key, *value);
    }
    client.set("bootstrap.servers", &config.brokers);
    for (key, value) in config.kafka.iter() {
        client.set(key, value);
    }
    client
}

/// Refuses to start on snapshots this build cannot read.
pub(crate) fn check_snapshots(snapshots: &Snapshots) -> Result<(), SnapshotError> {
    snapshots.check_versions()
}
