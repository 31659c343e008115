//! The issues topic: a thread that reads it whole into the `IssueBook`, and the writer that
//! appends a user's action and waits for the broker to keep it.

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

use super::{IssueAction, IssueBook};

const METADATA_REFRESH: Duration = Duration::from_secs(5);
const DELIVERY_TIMEOUT: Duration = Duration::from_secs(10);

#[derive(Debug, Error)]
pub enum IssuesError {
    #[error("kafka client for the issues topic")]
    Kafka(#[source] rdkafka::error::KafkaError),
    #[error("cannot start the issues thread")]
    Thread(#[source] std::io::Error),
    #[error("the issues topic did not take the action")]
    NotWritten(#[source] rdkafka::error::KafkaError),
}

/// Appends actions to the issues topic.
pub struct IssueWriter {
    producer: FutureProducer,
    topic: String,
}

impl IssueWriter {
    pub fn new(client: &ClientConfig, topic: &str) -> Result<Self, IssuesError> {
        let mut client = client.clone();
        client.set("enable.idempotence", "true");
        Ok(IssueWriter {
            producer: client.create().map_err(IssuesError::Kafka)?,
            topic: topic.to_owned(),
        })
    }

    /// Returns once the broker has the action, so every replica will read it.
    pub async fn write(&self, action: &IssueAction) -> Result<(), IssuesError> {
        let payload = serde_json::to_vec(action).unwrap_or_default();
        let key = action.key();
        let record = FutureRecord::to(&self.topic).key(&key).payload(&payload);
        self.producer
            .send(record, DELIVERY_TIMEOUT)
            .await
            .map(|_| ())
            .map_err(|(err, _)| IssuesError::NotWritten(err))
    }
}

/// Reads the issues topic from its beginning into `book` until `shutdown`, and marks the book
/// caught up once it has read everything the topic held when reading began.
pub fn follow(
    client: ClientConfig,
    topic: String,
    book: Arc<IssueBook>,
    shutdown: CancellationToken,
) -> Result<JoinHandle<()>, IssuesError> {
    let consumer: BaseConsumer = client.create().map_err(IssuesError::Kafka)?;
    std::thread::Builder::new()
        .name("ih-issues".into())
        .spawn(move || {
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
                        apply(&book, &message);
                        if let Some(ends) = &mut ends {
                            if ends.get(&message.partition()) <= Some(&(message.offset() + 1)) {
                                ends.remove(&message.partition());
                            }
                        }
                    }
                    Some(Err(err)) => debug!(error = %err, "issues topic read failed"),
                    None => {}
                }
                if ends.as_ref().is_some_and(HashMap::is_empty) {
                    book.set_caught_up();
                }
            }
        })
        .map_err(IssuesError::Thread)
}

fn apply(book: &IssueBook, message: &rdkafka::message::BorrowedMessage<'_>) {
    let key = message.key().map(String::from_utf8_lossy);
    match (message.payload(), key) {
        (None, Some(key)) => book.forget(&key),
        (Some(payload), _) => match serde_json::from_slice::<IssueAction>(payload) {
            Ok(action) => book.record(action),
            Err(err) => warn!(error = %err, "issues topic holds a record that is not an action"),
        },
        (None, None) => {}
    }
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
            warn!(error = %err, "cannot read the issues topic");
            None
        }
    }
}
