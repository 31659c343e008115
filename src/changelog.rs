//! Topics every instance reads whole, from the beginning, as a table: the users' issue actions
//! and the alerts published. A thread follows each; a writer appends a record and waits for the
//! broker to keep it.

use std::collections::HashMap;
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::producer::{FutureProducer, FutureRecord};
use rdkafka::{ClientConfig, Message, Offset, TopicPartitionList};
use thiserror::Error;
use tokio_util::sync::CancellationToken;
use tracing::{debug, warn};

const METADATA_REFRESH: Duration = Duration::from_secs(5);
const DELIVERY_TIMEOUT: Duration = Duration::from_secs(10);

#[derive(Debug, Error)]
pub enum ChangelogError {
    #[error("kafka client for {0}")]
    Kafka(String, #[source] rdkafka::error::KafkaError),
    #[error("cannot start the thread that reads {0}")]
    Thread(String, #[source] std::io::Error),
    #[error("{0} did not take the record")]
    NotWritten(String, #[source] rdkafka::error::KafkaError),
}

/// Appends records to one topic.
pub(crate) struct ChangelogWriter {
    producer: FutureProducer,
    topic: String,
}

impl ChangelogWriter {
    pub(crate) fn new(client: &ClientConfig, topic: &str) -> Result<Self, ChangelogError> {
        let mut client = client.clone();
        client.set("enable.idempotence", "true");
        Ok(ChangelogWriter {
            producer: client
                .create()
                .map_err(|err| ChangelogError::Kafka(topic.to_owned(), err))?,
            topic: topic.to_owned(),
        })
    }

    /// Returns once the broker has the record, so every instance will read it.
    pub(crate) async fn write(&self, key: &str, payload: &[u8]) -> Result<(), ChangelogError> {
        let record = FutureRecord::to(&self.topic).key(key).payload(payload);
        self.producer
            .send(record, DELIVERY_TIMEOUT)
            .await
            .map(|_| ())
            .map_err(|(err, _)| ChangelogError::NotWritten(self.topic.clone(), err))
    }

    /// Appends a record with no payload: compaction then drops every record under `key`.
    pub(crate) async fn tombstone(&self, key: &str) -> Result<(), ChangelogError> {
        let record: FutureRecord<'_, str, [u8]> = FutureRecord::to(&self.topic).key(key);
        self.producer
            .send(record, DELIVERY_TIMEOUT)
            .await
            .map(|_| ())
            .map_err(|(err, _)| ChangelogError::NotWritten(self.topic.clone(), err))
    }
}

/// What a follower does with the topic: take each record (key, payload; no payload is a
/// tombstone), and learn when it has read everything the topic held when reading began.
pub(crate) trait Table: Send + Sync + 'static {
    fn apply(&self, key: Option<&[u8]>, payload: Option<&[u8]>);
    fn set_caught_up(&self);
}

/// Reads `topic` from its beginning into `table` until `shutdown`, with `client`'s settings.
/// Each instance reads the whole topic and commits nothing: the group, `ih-<reader>-<pid>`,
/// only names the reader (operators grant Read on the `ih-<reader>-` prefix).
pub(crate) fn follow(
    client: &ClientConfig,
    reader: &str,
    topic: String,
    table: Arc<dyn Table>,
    shutdown: CancellationToken,
) -> Result<JoinHandle<()>, ChangelogError> {
    let consumer: BaseConsumer = client
        .clone()
        .set("group.id", format!("ih-{reader}-{}", std::process::id()))
        .set("enable.auto.commit", "false")
        .create()
        .map_err(|err| ChangelogError::Kafka(topic.clone(), err))?;
    let thread_topic = topic.clone();
    std::thread::Builder::new()
        .name(format!("ih-{}", short_name(&topic)))
        .spawn(move || {
            let topic = thread_topic;
            let mut assigned = 0;
            let mut ends: Option<HashMap<i32, i64>> = None;
            let mut refreshed = Instant::now() - METADATA_REFRESH;
            while !shutdown.is_cancelled() {
                if refreshed.elapsed() >= METADATA_REFRESH {
                    refreshed = Instant::now();
                    if let Some(now_assigned) = assign_new(&consumer, &topic, assigned) {
                        assigned = now_assigned;
                        // A topic with no partitions yet has nothing to catch up with.
                        ends.get_or_insert_with(|| high_watermarks(&consumer, &topic, assigned));
                    }
                }
                match consumer.poll(Duration::from_millis(100)) {
                    Some(Ok(message)) => {
                        table.apply(message.key(), message.payload());
                        if let Some(ends) = &mut ends {
                            if ends.get(&message.partition()) <= Some(&(message.offset() + 1)) {
                                ends.remove(&message.partition());
                            }
                        }
                    }
                    Some(Err(err)) => debug!(error = %err, %topic, "read failed"),
                    None => {}
                }
                if ends.as_ref().is_some_and(HashMap::is_empty) {
                    table.set_caught_up();
                }
            }
        })
        .map_err(|err| ChangelogError::Thread(topic, err))
}

/// The last part of a topic's name, for a thread name: "issues", "alerts".
fn short_name(topic: &str) -> &str {
    topic.rsplit('.').next().unwrap_or(topic)
}

/// Partitions still to read to: each non-empty partition's end when reading began.
fn high_watermarks(consumer: &BaseConsumer, topic: &str, partitions: usize) -> HashMap<i32, i64> {
    (0..partitions as i32)
        .filter_map(|p| {
            let (low, high) = consumer
                .fetch_watermarks(topic, p, Duration::from_secs(2))
                .ok()?;
            (high > low).then_some((p, high))
        })
        .collect()
}

/// Assigns any partitions of the topic not yet assigned, from their beginning. Returns how
/// many are assigned, or `None` when the broker could not say.
fn assign_new(consumer: &BaseConsumer, topic: &str, assigned: usize) -> Option<usize> {
    let metadata = consumer
        .fetch_metadata(Some(topic), Duration::from_secs(2))
        .ok()?;
    let partitions = metadata
        .topics()
        .first()
        .map_or(0, |t| t.partitions().len());
    if partitions <= assigned {
        return Some(assigned);
    }
    let mut list = TopicPartitionList::new();
    for partition in 0..partitions as i32 {
        let _ = list.add_partition_offset(topic, partition, Offset::Beginning);
    }
    match consumer.assign(&list) {
        Ok(()) => Some(partitions),
        Err(err) => {
            warn!(error = %err, %topic, "cannot assign the topic");
            None
        }
    }
}
