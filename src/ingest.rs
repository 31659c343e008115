//! Kafka ingest: a consumer thread, an owner thread, and the dead-letter producer.
//!
//! The consumer thread polls librdkafka and forwards messages in batches over a bounded channel
//! (backpressure). The owner thread is the single writer of partition state: it decodes,
//! deduplicates and applies each batch. Rebalance callbacks run on the consumer thread; they
//! send `Assigned` / `Revoked` to the owner and wait for its reply, so by the time a revoke
//! returns every message polled before it has been applied, and an assignment starts at the
//! exact offset the owner's state ends at. Auto-commit is off: the offset lives with the state.

use std::collections::{BTreeMap, HashMap};
use std::path::PathBuf;
use std::sync::mpsc::{sync_channel, Receiver, RecvTimeoutError, SyncSender};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use parking_lot::Mutex;

use rdkafka::config::ClientConfig;
use rdkafka::config::RDKafkaLogLevel;
use rdkafka::consumer::{BaseConsumer, CommitMode, Consumer, ConsumerContext, RebalanceProtocol};
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::message::{Header, Message, OwnedHeaders, OwnedMessage};
use rdkafka::producer::{BaseRecord, DeliveryResult, Producer, ProducerContext, ThreadedProducer};
use rdkafka::statistics::Statistics;
use rdkafka::types::RDKafkaRespErr;
use rdkafka::{ClientContext, Offset, TopicPartitionList};
use thiserror::Error;
use tokio_util::sync::CancellationToken;
use tracing::{debug, error, info, warn};

use crate::checkpoint::{self, CheckpointError, SnapshotStore};
use crate::clock::SharedClock;
use crate::event::{decode, DecodeLimits, EventError};
use crate::store::{
    Applied, PartitionKey, PartitionState, SharedPartition, SnapshotStatus, Store, StoreLimits,
};
use crate::telemetry::Metrics;

/// Headers every dead-lettered message carries.
pub const HEADER_REASON: &str = "ih-reason";
pub const HEADER_ERROR: &str = "ih-error";
pub const HEADER_SOURCE_TOPIC: &str = "ih-source-topic";
pub const HEADER_SOURCE_PARTITION: &str = "ih-source-partition";
pub const HEADER_SOURCE_OFFSET: &str = "ih-source-offset";

const MAX_BATCH: usize = 2_000;
/// Messages applied per write-lock hold (about 0.3 ms of work).
const LOCK_CHUNK: usize = 256;
const POLL_TIMEOUT: Duration = Duration::from_millis(100);
/// How often an idle owner wakes up to check whether a snapshot is due.
const OWNER_TICK: Duration = Duration::from_millis(200);

#[derive(Debug, Error)]
pub enum IngestError {
    #[error("kafka client could not be created: {0}")]
    Client(#[source] KafkaError),
    #[error("cannot subscribe to topic {topic}")]
    Subscribe { topic: String, source: KafkaError },
    #[error("cannot start ingest thread: {0}")]
    Thread(#[source] std::io::Error),
}

#[derive(Debug, Clone)]
pub struct IngestConfig {
    pub brokers: String,
    pub topic: String,
    pub group: String,
    pub dlq_topic: String,
    pub max_future_ms: i64,
    /// librdkafka properties passed through to both consumer and DLQ producer.
    pub kafka: BTreeMap<String, String>,
    /// Where snapshots live; `None` keeps state in memory only.
    pub state_dir: Option<PathBuf>,
    pub snapshot_interval: Duration,
}

enum Command {
    Batch(Vec<OwnedMessage>),
    Assigned(Vec<PartitionKey>, SyncSender<Vec<(PartitionKey, Offset)>>),
    Revoked(Vec<PartitionKey>, SyncSender<()>),
}

/// Running ingest; `join` waits for both threads after shutdown was signalled.
pub struct IngestHandle {
    consumer: JoinHandle<()>,
    owner: JoinHandle<()>,
}

impl IngestHandle {
    pub fn join(self) {
        if self.consumer.join().is_err() {
            error!("consumer thread panicked");
        }
        if self.owner.join().is_err() {
            error!("owner thread panicked");
        }
    }
}

pub fn start(
    config: IngestConfig,
    store: Arc<Store>,
    clock: SharedClock,
    shutdown: CancellationToken,
    metrics: Arc<Metrics>,
) -> Result<IngestHandle, IngestError> {
    let (commands, inbox) = sync_channel::<Command>(16);
    let dead_letters = DeadLetters::new(&config, metrics.clone())?;
    let commits: PendingCommits = Arc::new(Mutex::new(Vec::new()));
    let snapshots = match &config.state_dir {
        Some(dir) => Some(Snapshotter::start(
            SnapshotStore::new(dir),
            config.snapshot_interval,
            store.clone(),
            clock.clone(),
            commits.clone(),
            metrics.clone(),
        )?),
        None => None,
    };
    let consumer = new_consumer(&config, commands.clone(), store.clone())?;
    consumer
        .subscribe(&[config.topic.as_str()])
        .map_err(|source| IngestError::Subscribe {
            topic: config.topic.clone(),
            source,
        })?;
    let owner = Owner {
        limits: *store.limits(),
        store,
        clock,
        max_future_ms: config.max_future_ms,
        dead_letters,
        parked: HashMap::new(),
        snapshots,
        shutdown: shutdown.clone(),
        metrics,
    };
    let owner = std::thread::Builder::new()
        .name("ih-owner".into())
        .spawn(move || owner.run(inbox))
        .map_err(IngestError::Thread)?;
    let consumer = std::thread::Builder::new()
        .name("ih-consumer".into())
        .spawn(move || consume(consumer, commands, commits, shutdown))
        .map_err(IngestError::Thread)?;
    Ok(IngestHandle { consumer, owner })
}

/// Defaults first, so a passed-through property can override them.
fn client_config(config: &IngestConfig, defaults: &[(&str, &str)]) -> ClientConfig {
    let mut client = ClientConfig::new();
    for (key, value) in defaults {
        client.set(*key, *value);
    }
    client.set("bootstrap.servers", &config.brokers);
    for (key, value) in &config.kafka {
        client.set(key, value);
    }
    client
}

fn new_consumer(
    config: &IngestConfig,
    commands: SyncSender<Command>,
    store: Arc<Store>,
) -> Result<BaseConsumer<IngestContext>, IngestError> {
    let mut client = client_config(config, &[("statistics.interval.ms", "1000")]);
    client
        .set("group.id", &config.group)
        .set("enable.auto.commit", "false")
        .set("enable.auto.offset.store", "false")
        .set("auto.offset.reset", "earliest");
    client
        .create_with_context(IngestContext { commands, store })
        .map_err(IngestError::Client)
}

/// Offsets covered by durable snapshots, waiting to be committed to Kafka by the consumer thread.
type PendingCommits = Arc<Mutex<Vec<(PartitionKey, i64)>>>;

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

fn consume(
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

struct IngestContext {
    commands: SyncSender<Command>,
    store: Arc<Store>,
}

impl ClientContext for IngestContext {
    fn stats(&self, statistics: Statistics) {
        for (topic, details) in statistics.topics {
            for (partition, stats) in details.partitions {
                if partition >= 0 && stats.hi_offset >= 0 {
                    self.store
                        .set_high_watermark(PartitionKey::new(&topic, partition), stats.hi_offset);
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

/// The single writer of partition state.
struct Owner {
    store: Arc<Store>,
    limits: StoreLimits,
    clock: SharedClock,
    max_future_ms: i64,
    dead_letters: DeadLetters,
    /// Without a state dir: partitions revoked from this instance. Their state and offset stay
    /// consistent, so if a partition comes back, consumption resumes at its offset.
    parked: HashMap<PartitionKey, SharedPartition>,
    snapshots: Option<Snapshotter>,
    shutdown: CancellationToken,
    metrics: Arc<Metrics>,
}

impl Owner {
    fn run(mut self, inbox: Receiver<Command>) {
        loop {
            match inbox.recv_timeout(OWNER_TICK) {
                Ok(Command::Batch(messages)) => self.apply_batch(messages),
                Ok(Command::Assigned(keys, reply)) => {
                    let offsets = self.assigned(keys);
                    let _ = reply.send(offsets);
                }
                Ok(Command::Revoked(keys, reply)) => {
                    self.revoked(keys);
                    let _ = reply.send(());
                }
                Err(RecvTimeoutError::Timeout) => {}
                Err(RecvTimeoutError::Disconnected) => break,
            }
            self.snapshot_due();
        }
        self.dead_letters.flush();
        info!("owner stopped");
    }

    /// Takes periodic snapshots. Dead letters are flushed first, so every rejected event a
    /// snapshot covers is already acknowledged by the broker.
    fn snapshot_due(&mut self) {
        let Some(snapshots) = &mut self.snapshots else {
            return;
        };
        let due = snapshots.due(&self.store.partitions());
        if due.is_empty() {
            return;
        }
        self.dead_letters.flush();
        snapshots.take(due, false);
    }

    fn restore(&self, key: &PartitionKey) -> Option<SharedPartition> {
        let Some(snapshots) = &self.snapshots else {
            return Some(
                self.parked
                    .get(key)
                    .cloned()
                    .unwrap_or_else(|| self.fresh()),
            );
        };
        match snapshots.store.load_newest(key, &self.limits) {
            Ok(Some((state, file))) => {
                info!(topic = %key.topic, partition = key.partition, next_offset = file.next_offset, "restored snapshot");
                Some(Arc::new(parking_lot::RwLock::new(state)))
            }
            Ok(None) => Some(self.fresh()),
            Err(err) => {
                error!(error = %err, "cannot restore partition; stopping rather than serving wrong numbers");
                self.shutdown.cancel();
                None
            }
        }
    }

    fn fresh(&self) -> SharedPartition {
        Arc::new(parking_lot::RwLock::new(PartitionState::new(&self.limits)))
    }

    fn assigned(&mut self, keys: Vec<PartitionKey>) -> Vec<(PartitionKey, Offset)> {
        self.store.mark_assigned();
        let mut offsets = Vec::new();
        for key in keys {
            let Some(shared) = self.restore(&key) else {
                continue;
            };
            self.parked.remove(&key);
            let offset = shared
                .read()
                .next_offset
                .map_or(Offset::Beginning, Offset::Offset);
            info!(topic = %key.topic, partition = key.partition, ?offset, "partition assigned");
            if let Some(snapshots) = &mut self.snapshots {
                snapshots.restored(&key, &shared);
            }
            self.store.attach(key.clone(), shared);
            offsets.push((key, offset));
        }
        offsets
    }

    /// With a state dir, a revoked partition is snapshotted before the callback returns, so the
    /// instance that gains it restores exactly where this one stopped.
    fn revoked(&mut self, keys: Vec<PartitionKey>) {
        self.dead_letters.flush();
        let mut leaving = Vec::new();
        for key in keys {
            info!(topic = %key.topic, partition = key.partition, "partition revoked");
            if let Some(shared) = self.store.remove_partition(&key) {
                leaving.push((key, shared));
            }
        }
        match &mut self.snapshots {
            Some(snapshots) => snapshots.take(leaving, true),
            None => self.parked.extend(leaving),
        }
    }

    /// Metrics are counted per batch, not per event, to keep the hot loop free of them.
    fn count(&self, outcomes: &[[u64; 3]; 5]) {
        let kinds = [Applied::Accepted, Applied::Duplicate, Applied::LateDropped];
        for (index, per_kind) in outcomes.iter().enumerate() {
            let Some(integration_type) = crate::event::IntegrationType::from_index(index) else {
                continue;
            };
            for (kind, count) in kinds.iter().zip(per_kind) {
                if *count > 0 {
                    self.metrics.applied(integration_type, *kind, *count);
                }
            }
        }
    }

    fn apply_batch(&mut self, messages: Vec<OwnedMessage>) {
        let now_ms = self.clock.now_ms();
        let limits = DecodeLimits {
            now_ms,
            max_future_ms: self.max_future_ms,
        };
        let mut by_partition: BTreeMap<PartitionKey, Vec<OwnedMessage>> = BTreeMap::new();
        for message in messages {
            by_partition
                .entry(PartitionKey::new(message.topic(), message.partition()))
                .or_default()
                .push(message);
        }
        for (key, messages) in by_partition {
            let Some(shared) = self.store.partition(&key) else {
                debug!(topic = %key.topic, partition = key.partition, "message for a partition not owned; skipped");
                continue;
            };
            let span = tracing::info_span!(
                "apply_batch",
                topic = %key.topic,
                partition = key.partition,
                batch_size = messages.len()
            );
            let _entered = span.enter();
            let mut rejected = Vec::new();
            let mut outcomes = [[0u64; 3]; 5];
            // Short write-lock holds keep query latency flat while a big batch is applied.
            for chunk in messages.chunks(LOCK_CHUNK) {
                let mut state = shared.write();
                for message in chunk {
                    if state.already_applied(message.offset()) {
                        continue;
                    }
                    match decode(message.payload().unwrap_or_default(), limits) {
                        Ok(event) => {
                            let applied = state.apply(&event, &self.limits, now_ms);
                            outcomes[event.integration_type.index()][applied as usize] += 1;
                        }
                        Err(reason) => {
                            state.record_rejected();
                            rejected.push((message, reason));
                        }
                    }
                    state.mark_applied(message.offset());
                }
            }
            self.count(&outcomes);
            for (message, reason) in rejected {
                self.metrics.rejected(reason.reason_code());
                self.dead_letters.send(message, &reason);
            }
        }
    }
}

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
struct Snapshotter {
    store: SnapshotStore,
    interval: Duration,
    writer: SyncSender<WriteBatch>,
    /// When each owned partition was last snapshotted, and at which offset.
    last: HashMap<PartitionKey, (Instant, Option<i64>)>,
}

impl Snapshotter {
    fn start(
        store: SnapshotStore,
        interval: Duration,
        counters: Arc<Store>,
        clock: SharedClock,
        commits: PendingCommits,
        metrics: Arc<Metrics>,
    ) -> Result<Self, IngestError> {
        let (writer, jobs) = sync_channel::<WriteBatch>(4);
        let files = store.clone();
        std::thread::Builder::new()
            .name("ih-snapshots".into())
            .spawn(move || write_snapshots(files, jobs, counters, clock, commits, metrics))
            .map_err(IngestError::Thread)?;
        Ok(Snapshotter {
            store,
            interval,
            writer,
            last: HashMap::new(),
        })
    }

    fn restored(&mut self, key: &PartitionKey, shared: &SharedPartition) {
        self.last
            .insert(key.clone(), (Instant::now(), shared.read().next_offset));
    }

    fn due(
        &self,
        owned: &[(PartitionKey, SharedPartition)],
    ) -> Vec<(PartitionKey, SharedPartition)> {
        owned
            .iter()
            .filter(|(key, shared)| match self.last.get(key) {
                Some((at, offset)) => {
                    at.elapsed() >= self.interval && *offset != shared.read().next_offset
                }
                None => true,
            })
            .cloned()
            .collect()
    }

    /// Encodes each partition now; with `wait`, also blocks until every file is durable.
    fn take(&mut self, partitions: Vec<(PartitionKey, SharedPartition)>, wait: bool) {
        let mut jobs = Vec::new();
        for (key, shared) in partitions {
            let started = Instant::now();
            let (image, next_offset) = {
                let state = shared.read();
                (checkpoint::encode(&state), state.next_offset)
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
        if self.writer.send(batch).is_err() {
            error!("snapshot writer is gone");
            return;
        }
        if wait {
            let _ = finished.recv();
        }
    }
}

fn write_snapshots(
    store: SnapshotStore,
    batches: Receiver<WriteBatch>,
    counters: Arc<Store>,
    clock: SharedClock,
    commits: PendingCommits,
    metrics: Arc<Metrics>,
) {
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
                    counters.set_snapshot_status(
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
                    error!(error = %err, "snapshot write failed; the previous snapshot stays in force")
                }
            }
        }
        if let Some(done) = batch.done {
            let _ = done.send(());
        }
    }
}

pub fn check_state_dir(dir: &std::path::Path) -> Result<(), CheckpointError> {
    SnapshotStore::new(dir).check_versions()
}

struct DlqContext {
    metrics: Arc<Metrics>,
}

impl ClientContext for DlqContext {
    fn log(&self, level: RDKafkaLogLevel, facility: &str, message: &str) {
        // The producer gets the same pass-through properties as the consumer, so librdkafka's
        // "consumer property ignored by this producer" warnings are expected noise here.
        if facility == "CONFWARN" {
            return;
        }
        match level {
            RDKafkaLogLevel::Emerg
            | RDKafkaLogLevel::Alert
            | RDKafkaLogLevel::Critical
            | RDKafkaLogLevel::Error => {
                error!(target: "librdkafka", "dlq producer: {facility} {message}")
            }
            RDKafkaLogLevel::Warning => {
                warn!(target: "librdkafka", "dlq producer: {facility} {message}")
            }
            _ => debug!(target: "librdkafka", "dlq producer: {facility} {message}"),
        }
    }
}

impl ProducerContext for DlqContext {
    type DeliveryOpaque = ();

    fn delivery(&self, result: &DeliveryResult<'_>, _: Self::DeliveryOpaque) {
        if let Err((err, message)) = result {
            self.metrics.dlq_failures.inc();
            error!(error = %err, partition = message.partition(), "dead letter was not delivered");
        }
    }
}

/// Publishes rejected events, byte for byte, with the reason and source position in headers.
struct DeadLetters {
    producer: ThreadedProducer<DlqContext>,
    topic: String,
}

impl DeadLetters {
    fn new(config: &IngestConfig, metrics: Arc<Metrics>) -> Result<Self, IngestError> {
        let client = client_config(
            config,
            &[("enable.idempotence", "true"), ("linger.ms", "5")],
        );
        let producer = client
            .create_with_context(DlqContext { metrics })
            .map_err(IngestError::Client)?;
        Ok(DeadLetters {
            producer,
            topic: config.dlq_topic.clone(),
        })
    }

    fn send(&self, message: &OwnedMessage, reason: &EventError) {
        let error_text = reason.to_string();
        let partition = message.partition().to_string();
        let offset = message.offset().to_string();
        let headers = OwnedHeaders::new()
            .insert(header(HEADER_REASON, reason.reason_code()))
            .insert(header(HEADER_ERROR, &error_text))
            .insert(header(HEADER_SOURCE_TOPIC, message.topic()))
            .insert(header(HEADER_SOURCE_PARTITION, &partition))
            .insert(header(HEADER_SOURCE_OFFSET, &offset));
        let payload = message.payload().unwrap_or_default();
        let mut record: BaseRecord<'_, [u8], [u8]> = BaseRecord::to(&self.topic)
            .payload(payload)
            .headers(headers);
        if let Some(key) = message.key() {
            record = record.key(key);
        }
        loop {
            match self.producer.send(record) {
                Ok(()) => return,
                Err((KafkaError::MessageProduction(RDKafkaErrorCode::QueueFull), back)) => {
                    record = back;
                    std::thread::sleep(Duration::from_millis(10));
                }
                Err((err, _)) => {
                    error!(error = %err, "cannot queue dead letter");
                    return;
                }
            }
        }
    }

    fn flush(&self) {
        if let Err(err) = self.producer.flush(Duration::from_secs(30)) {
            error!(error = %err, "dead letters not flushed");
        }
    }
}

fn header<'a>(key: &'a str, value: &'a str) -> Header<'a, &'a str> {
    Header {
        key,
        value: Some(value),
    }
}
