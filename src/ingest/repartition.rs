//! The repartition stage, for producers that do not key by tenant: it reads the input topic,
//! validates each message, and re-publishes every valid one, byte for byte, to an internal topic
//! keyed by `tenant_id`, so that all of a tenant's events (and every retry of one) meet in one
//! partition, where the dedup window sees them. Aggregation reads the internal topic.
//!
//! Publishing is at-least-once: offsets are committed only after everything before them is
//! acknowledged, so a crash re-publishes the uncommitted tail, and the dedup window downstream
//! counts each event once. A rejected message goes to the dead-letter topic here, naming its
//! input position, and a marker (an empty message with the `ih-rejected` header) goes on so the
//! rejection is counted, exactly once, with the partition state downstream.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use parking_lot::Mutex;
use rdkafka::consumer::{BaseConsumer, CommitMode, Consumer, ConsumerContext, Rebalance};
use rdkafka::message::{Header, Headers, Message, OwnedHeaders};
use rdkafka::producer::DefaultProducerContext;
use rdkafka::producer::{BaseRecord, Producer, ThreadedProducer};
use rdkafka::statistics::Statistics;
use rdkafka::{ClientContext, Offset, TopicPartitionList};
use serde::{Deserialize, Serialize};
use tokio_util::sync::CancellationToken;
use tracing::{error, info, warn};

use super::dead_letters::{send_when_queued, DeadLetterSink, DeadLetters};
use super::log_start::{KafkaLogStarts, LogStarts};
use super::progress::IngestProgress;
use super::{client_config, IngestConfig, IngestError};
use crate::clock::SharedClock;
use crate::event::{decode, DecodeLimits};
use crate::ops::Metrics;
use crate::store::{lost_ranges, PartitionKey};

/// Header of the marker that stands for a message rejected by the repartition stage.
pub(crate) const HEADER_REJECTED: &str = "ih-rejected";

const POLL_TIMEOUT: Duration = Duration::from_millis(100);
/// How often everything published so far is flushed and the input offsets committed: this
/// bounds what a crash re-publishes.
const COMMIT_INTERVAL: Duration = Duration::from_millis(500);
const COMMITTED_TIMEOUT: Duration = Duration::from_secs(10);
const METADATA_TIMEOUT: Duration = Duration::from_secs(10);

/// Header of the marker that tells every output partition that the stage never read a range
/// of its input; the payload says which (`UpstreamLoss` as JSON).
pub(crate) const HEADER_LOST: &str = "ih-lost";

/// A range of an input partition the stage never read, `[from, to)`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct UpstreamLoss {
    pub(crate) topic: String,
    pub(crate) partition: i32,
    pub(crate) from: i64,
    pub(crate) to: i64,
}

/// The loss a marker reports, if `message` is one.
pub(crate) fn loss_marker(message: &impl Message) -> Option<UpstreamLoss> {
    let headers = message.headers()?;
    if !headers.iter().any(|h| h.key == HEADER_LOST) {
        return None;
    }
    match serde_json::from_slice(message.payload().unwrap_or_default()) {
        Ok(loss) => Some(loss),
        Err(err) => {
            warn!(error = %err, "a loss marker that does not say what was lost");
            None
        }
    }
}

/// True for the marker of a message the repartition stage rejected.
pub(crate) fn is_rejection_marker(message: &impl Message) -> bool {
    message
        .headers()
        .is_some_and(|headers| headers.iter().any(|h| h.key == HEADER_REJECTED))
}

/// Reports how far the stage has read, from librdkafka's statistics, for the input partitions
/// the group has given it. Statistics go on naming a partition after it is revoked, so only
/// the current assignment is reported, and a revoked partition leaves the progress at once.
struct StageContext {
    progress: Arc<IngestProgress>,
    assigned: Mutex<HashSet<PartitionKey>>,
    /// Per assigned input partition, the offset the stage reads next: where reading resumes
    /// (the committed offset, or 0 for a group that never committed), then one past each
    /// message. A message beyond it is a gap, looked into for loss.
    expected: Mutex<HashMap<PartitionKey, i64>>,
}

impl ClientContext for StageContext {
    fn stats(&self, statistics: Statistics) {
        let assigned = self.assigned.lock();
        for (topic, details) in statistics.topics {
            for (partition, stats) in details.partitions {
                let key = PartitionKey::new(&topic, partition);
                if partition < 0 || stats.hi_offset < 0 || !assigned.contains(&key) {
                    continue;
                }
                let next = [stats.stored_offset, stats.committed_offset, stats.lo_offset]
                    .into_iter()
                    .find(|offset| *offset >= 0)
                    .unwrap_or(0);
                self.progress.set_upstream(key, next, stats.hi_offset);
            }
        }
    }
}

impl StageContext {
    /// Reading resumes at each partition's committed offset (or, never committed, at 0).
    fn expect_committed(&self, consumer: &BaseConsumer<Self>, list: &TopicPartitionList) {
        let committed = match consumer.committed_offsets(list.clone(), COMMITTED_TIMEOUT) {
            Ok(committed) => committed,
            Err(err) => {
                warn!(error = %err, "cannot read the committed input offsets; the first gap after them is not checked");
                return;
            }
        };
        let mut expected = self.expected.lock();
        for element in committed.elements() {
            let start = match element.offset() {
                Offset::Offset(offset) => offset,
                _ => 0,
            };
            expected.insert(
                PartitionKey::new(element.topic(), element.partition()),
                start,
            );
        }
    }

    /// Moves `key`'s expected offset past `offset` and returns the gap before it, if any.
    fn gap_before(&self, key: &PartitionKey, offset: i64) -> Option<(i64, i64)> {
        let mut expected = self.expected.lock();
        let next = expected.insert(key.clone(), offset + 1)?;
        (offset > next).then_some((next, offset))
    }
}

impl ConsumerContext for StageContext {
    fn post_rebalance(&self, consumer: &BaseConsumer<Self>, rebalance: &Rebalance<'_>) {
        let mut assigned = self.assigned.lock();
        match rebalance {
            Rebalance::Assign(list) => {
                let keys: Vec<PartitionKey> = list
                    .elements()
                    .iter()
                    .map(|e| PartitionKey::new(e.topic(), e.partition()))
                    .collect();
                assigned.extend(keys.iter().cloned());
                self.expect_committed(consumer, list);
                self.progress.assign_upstream(keys);
            }
            Rebalance::Revoke(list) => {
                for element in list.elements() {
                    let key = PartitionKey::new(element.topic(), element.partition());
                    info!(topic = %key.topic, partition = key.partition, "repartition input revoked");
                    assigned.remove(&key);
                    self.expected.lock().remove(&key);
                    self.progress.forget_upstream(&key);
                }
            }
            Rebalance::Error(err) => warn!(error = %err, "repartition rebalance failed"),
        }
    }
}

struct Stage {
    producer: ThreadedProducer<DefaultProducerContext>,
    dead_letters: DeadLetters,
    output: String,
    clock: SharedClock,
    max_future_ms: i64,
    max_message_bytes: usize,
    metrics: Arc<Metrics>,
    /// Where each input partition's log starts, to tell lost offsets from other gaps.
    log_starts: KafkaLogStarts,
}

/// Starts the stage on its own thread, reading `config.input_topic` and writing
/// `config.topic`.
pub(crate) fn start(
    config: &IngestConfig,
    input_topic: &str,
    clock: SharedClock,
    metrics: Arc<Metrics>,
    progress: Arc<IngestProgress>,
    shutdown: CancellationToken,
) -> Result<JoinHandle<()>, IngestError> {
    let defaults = [
        ("session.timeout.ms", "10000"),
        ("statistics.interval.ms", "1000"),
    ];
    let mut client = client_config(config, &defaults);
    client
        .set("group.id", format!("{}.repartition", config.group))
        .set("enable.auto.commit", "false")
        .set("enable.auto.offset.store", "false")
        .set("auto.offset.reset", "earliest");
    progress.mark_repartitioning();
    let consumer: BaseConsumer<StageContext> = client
        .create_with_context(StageContext {
            progress,
            assigned: Mutex::new(HashSet::new()),
            expected: Mutex::new(HashMap::new()),
        })
        .map_err(IngestError::Client)?;
    consumer
        .subscribe(&[input_topic])
        .map_err(|source| IngestError::Subscribe {
            topic: input_topic.to_owned(),
            source,
        })?;
    // The `consistent` partitioner (CRC-32 of the key) is what replicas assume to find a
    // tenant's one partition (`cluster::tenant_partition`).
    let producer = client_config(
        config,
        &[("enable.idempotence", "true"), ("linger.ms", "5")],
    )
    .set("partitioner", "consistent")
    .create()
    .map_err(IngestError::Client)?;
    let stage = Stage {
        producer,
        dead_letters: DeadLetters::new(config, metrics.clone())?,
        output: config.topic.clone(),
        clock,
        max_future_ms: config.max_future_ms,
        max_message_bytes: config.max_message_bytes,
        metrics,
        log_starts: KafkaLogStarts::new(config)?,
    };
    std::thread::Builder::new()
        .name("ih-repartition".into())
        .spawn(move || stage.run(consumer, shutdown))
        .map_err(IngestError::Thread)
}

impl Stage {
    fn run(mut self, consumer: BaseConsumer<StageContext>, shutdown: CancellationToken) {
        info!(output = %self.output, "repartition stage started");
        let mut last_commit = Instant::now();
        while !shutdown.is_cancelled() {
            if let Some(result) = consumer.poll(POLL_TIMEOUT) {
                match result {
                    Ok(message) => {
                        self.check_gap(&consumer, &message);
                        self.forward(&message);
                        if let Err(err) = consumer.store_offset_from_message(&message) {
                            warn!(error = %err, "cannot store a repartition offset");
                        }
                    }
                    Err(err) => warn!(error = %err, "repartition consumer error"),
                }
            }
            if last_commit.elapsed() >= COMMIT_INTERVAL {
                self.commit(&consumer);
                last_commit = Instant::now();
            }
        }
        self.commit(&consumer);
        consumer.unsubscribe();
        info!("repartition stage stopped");
    }

    /// Re-publishes a valid message keyed by its tenant, or dead-letters it and sends its marker.
    fn forward(&mut self, message: &rdkafka::message::BorrowedMessage<'_>) {
        let payload = message.payload().unwrap_or_default();
        let limits = DecodeLimits {
            now_ms: self.clock.now_ms(),
            max_future_ms: self.max_future_ms,
            max_bytes: self.max_message_bytes,
        };
        let sent = match decode(payload, limits) {
            Ok(event) => {
                let record = BaseRecord::to(&self.output)
                    .key(event.tenant_id.as_bytes())
                    .payload(payload);
                send_when_queued(&self.producer, record)
            }
            Err(reason) => {
                self.metrics.rejected(reason.reason_code());
                self.dead_letters.send(&message.detach(), &reason);
                let headers = OwnedHeaders::new().insert(Header {
                    key: HEADER_REJECTED,
                    value: Some(reason.reason_code()),
                });
                let key = message.key().unwrap_or_default();
                let record = BaseRecord::to(&self.output)
                    .key(key)
                    .payload(&[][..])
                    .headers(headers);
                send_when_queued(&self.producer, record)
            }
        };
        if let Err(err) = sent {
            error!(error = %err, "cannot re-publish an event; it is retried after a restart");
        }
    }

    /// A message past the offset expected next is looked into: offsets the log start had
    /// already passed were never read, and every output partition is told.
    fn check_gap(
        &mut self,
        consumer: &BaseConsumer<StageContext>,
        message: &rdkafka::message::BorrowedMessage<'_>,
    ) {
        let key = PartitionKey::new(message.topic(), message.partition());
        let Some(gap) = consumer.context().gap_before(&key, message.offset()) else {
            return;
        };
        let Some(log_start) = self.log_starts.log_start(&key) else {
            return;
        };
        for (from, to) in lost_ranges(&[gap], log_start) {
            let loss = UpstreamLoss {
                topic: key.topic.to_string(),
                partition: key.partition,
                from,
                to,
            };
            let count = u64::try_from(to - from).unwrap_or(0);
            error!(topic = %loss.topic, partition = loss.partition, from, to, lost = count, "input offsets were deleted before the repartition stage read them: their events are not counted, and every tenant of the output partitions is flagged incomplete (docs/operating.md: Lost offsets)");
            self.metrics
                .offsets_lost(&loss.topic, loss.partition, count);
            consumer.context().progress.add_upstream_lost(&key, count);
            self.tell_every_output(&loss);
        }
    }

    /// Sends the loss marker to each output partition: the lost events could have belonged to
    /// any tenant.
    fn tell_every_output(&mut self, loss: &UpstreamLoss) {
        let partitions = match self
            .producer
            .client()
            .fetch_metadata(Some(&self.output), METADATA_TIMEOUT)
        {
            Ok(metadata) => metadata
                .topics()
                .first()
                .map_or(0, |t| t.partitions().len() as i32),
            Err(err) => {
                error!(error = %err, "cannot list the output partitions to flag a loss");
                return;
            }
        };
        let payload = serde_json::to_vec(loss).unwrap_or_default();
        for partition in 0..partitions {
            let headers = OwnedHeaders::new().insert(Header {
                key: HEADER_LOST,
                value: Some(&b"1"[..]),
            });
            let record = BaseRecord::to(&self.output)
                .partition(partition)
                .payload(&payload[..])
                .key(&[][..])
                .headers(headers);
            if let Err(err) = send_when_queued(&self.producer, record) {
                error!(error = %err, partition, "cannot flag a loss on an output partition");
            }
        }
    }

    /// Everything published is acknowledged before the input offsets move past it.
    fn commit(&mut self, consumer: &BaseConsumer<StageContext>) {
        if let Err(err) = self.producer.flush(Duration::from_secs(30)) {
            error!(error = %err, "re-published events not acknowledged; offsets stay");
            return;
        }
        self.dead_letters.flush();
        if let Err(err) = consumer.commit_consumer_state(CommitMode::Sync) {
            if !matches!(
                err,
                rdkafka::error::KafkaError::ConsumerCommit(
                    rdkafka::types::RDKafkaErrorCode::NoOffset
                )
            ) {
                warn!(error = %err, "repartition offsets not committed; the tail is re-published");
            }
        }
    }
}
