//! The consumer thread: polls librdkafka, forwards batches to the owner over a bounded channel
//! (backpressure), turns rebalance callbacks into `Assigned` / `Revoked` messages to the owner,
//! and commits the offsets of durable snapshots (advisory, for lag dashboards).

use std::sync::mpsc::{sync_channel, SyncSender};
use std::sync::Arc;
use std::time::{Duration, Instant};

use parking_lot::Mutex;
use rdkafka::consumer::{BaseConsumer, CommitMode, Consumer, ConsumerContext, RebalanceProtocol};
use rdkafka::error::RDKafkaErrorCode;
use rdkafka::statistics::Statistics;
use rdkafka::types::RDKafkaRespErr;
use rdkafka::{ClientContext, Offset, TopicPartitionList};
use tokio_util::sync::CancellationToken;
use tracing::{debug, error, info, warn};

use super::progress::IngestProgress;
use super::{client_config, Command, IngestConfig, IngestError};
use crate::store::PartitionKey;

const MAX_BATCH: usize = 2_000;
const POLL_TIMEOUT: Duration = Duration::from_millis(100);

pub(super) fn new_consumer(
    config: &IngestConfig,
    commands: SyncSender<Command>,
    progress: Arc<IngestProgress>,
) -> Result<BaseConsumer<IngestContext>, IngestError> {
    // A dead instance holds its partitions until its session times out; 10 s (librdkafka's
    // default is 45 s) bounds that, and stays above brokers' 6 s minimum. Processing never
    // blocks the poll loop for long, so the 5-minute poll interval only catches a wedged owner.
    let defaults = [
        ("statistics.interval.ms", "1000"),
        ("session.timeout.ms", "10000"),
        ("heartbeat.interval.ms", "3000"),
        ("max.poll.interval.ms", "300000"),
    ];
    let mut client = client_config(config, &defaults);
    if let Some(instance) = &config.instance_id {
        client.set("group.instance.id", instance);
    }
    client
        .set("group.id", &config.group)
        .set("enable.auto.commit", "false")
        .set("enable.auto.offset.store", "false")
        .set("auto.offset.reset", "earliest");
    client
        .create_with_context(IngestContext { commands, progress })
        .map_err(IngestError::Client)
}

/// Offsets covered by durable snapshots, waiting to be committed to Kafka by the consumer thread.
pub(crate) type PendingCommits = Arc<Mutex<Vec<(PartitionKey, i64)>>>;

/// Kafka commits are advisory, for lag dashboards; the snapshot's offset is the truth.
fn commit_pending(
    consumer: &BaseConsumer<IngestContext>,
    commits: &PendingCommits,
    mode: CommitMode,
) {
    let pending = std::mem::take(&mut *commits.lock());
    if pending.is_empty() {
        return;
    }
    let mut offsets = TopicPartitionList::new();
    for (key, next_offset) in pending {
        let _ =
            offsets.add_partition_offset(&key.topic, key.partition, Offset::Offset(next_offset));
    }
    if let Err(err) = consumer.commit(&offsets, mode) {
        debug!(error = %err, "advisory offset commit failed");
    }
}

pub(super) fn consume(
    consumer: BaseConsumer<IngestContext>,
    commands: SyncSender<Command>,
    commits: PendingCommits,
    shutdown: CancellationToken,
) {
    info!("consumer started");
    while !shutdown.is_cancelled() {
        commit_pending(&consumer, &commits, CommitMode::Async);
        let Some(first) = consumer.poll(POLL_TIMEOUT) else {
            continue;
        };
        let mut batch = Vec::new();
        let mut next = Some(first);
        while let Some(result) = next {
            match result {
                Ok(message) => batch.push(message.detach()),
                Err(err) => warn!(error = %err, "kafka consumer error"),
            }
            if batch.len() >= MAX_BATCH {
                break;
            }
            next = consumer.poll(Duration::ZERO);
        }
        if !batch.is_empty() && commands.send(Command::Batch(batch)).is_err() {
            error!("owner thread is gone; consumer stops");
            return;
        }
    }
    leave_group(consumer, &commits);
}

/// A graceful exit: unsubscribing revokes every partition through the owner, which writes the
/// final snapshots; their offsets are committed; then the consumer closes and leaves the group.
/// Messages polled after the unsubscribe were never applied and are left for the next owner.
fn leave_group(consumer: BaseConsumer<IngestContext>, commits: &PendingCommits) {
    info!("consumer leaving the group");
    consumer.unsubscribe();
    let deadline = Instant::now() + Duration::from_secs(5);
    while Instant::now() < deadline {
        let _ = consumer.poll(Duration::from_millis(50));
        if consumer.assignment().map_or(true, |a| a.count() == 0) {
            break;
        }
    }
    commit_pending(&consumer, commits, CommitMode::Sync);
    drop(consumer);
}

pub(super) struct IngestContext {
    commands: SyncSender<Command>,
    progress: Arc<IngestProgress>,
}

impl ClientContext for IngestContext {
    fn stats(&self, statistics: Statistics) {
        for (topic, details) in statistics.topics {
            for (partition, stats) in details.partitions {
                if partition >= 0 && stats.hi_offset >= 0 {
                    self.progress.report_high_watermark(
                        PartitionKey::new(&topic, partition),
                        stats.hi_offset,
                    );
                }
            }
        }
    }
}

fn partition_keys(tpl: &TopicPartitionList) -> Vec<PartitionKey> {
    tpl.elements()
        .iter()
        .map(|e| PartitionKey::new(e.topic(), e.partition()))
        .collect()
}

impl IngestContext {
    fn assign(&self, consumer: &BaseConsumer<Self>, tpl: &TopicPartitionList) {
        let (reply, answer) = sync_channel(1);
        let keys = partition_keys(tpl);
        let offsets = match self.commands.send(Command::Assigned(keys, reply)) {
            Ok(()) => answer.recv().unwrap_or_default(),
            Err(_) => Vec::new(),
        };
        let mut assignment = TopicPartitionList::new();
        for (key, offset) in offsets {
            if let Err(err) = assignment.add_partition_offset(&key.topic, key.partition, offset) {
                error!(topic = %key.topic, partition = key.partition, error = %err, "cannot build assignment");
            }
        }
        let result = match consumer.rebalance_protocol() {
            RebalanceProtocol::Cooperative => consumer.incremental_assign(&assignment),
            _ => consumer.assign(&assignment),
        };
        if let Err(err) = result {
            error!(error = %err, "assign failed");
        }
    }

    fn revoke(&self, consumer: &BaseConsumer<Self>, tpl: &TopicPartitionList) {
        let (reply, answer) = sync_channel(1);
        if self
            .commands
            .send(Command::Revoked(partition_keys(tpl), reply))
            .is_ok()
        {
            let _ = answer.recv();
        }
        let result = match consumer.rebalance_protocol() {
            RebalanceProtocol::Cooperative => consumer.incremental_unassign(tpl),
            _ => consumer.unassign(),
        };
        if let Err(err) = result {
            error!(error = %err, "unassign failed");
        }
    }
}

impl ConsumerContext for IngestContext {
    fn rebalance(
        &self,
        consumer: &BaseConsumer<Self>,
        err: RDKafkaRespErr,
        tpl: &mut TopicPartitionList,
    ) {
        match err {
            RDKafkaRespErr::RD_KAFKA_RESP_ERR__ASSIGN_PARTITIONS => self.assign(consumer, tpl),
            RDKafkaRespErr::RD_KAFKA_RESP_ERR__REVOKE_PARTITIONS => self.revoke(consumer, tpl),
            other => {
                error!(error = %RDKafkaErrorCode::from(other), "rebalance failed; dropping assignment");
                self.revoke(consumer, tpl);
            }
        }
    }
}
