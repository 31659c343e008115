//! The dead-letter producer: rejected events, byte for byte, with the reason and the source
//! position in headers.

use std::sync::Arc;
use std::time::Duration;

use rdkafka::config::RDKafkaLogLevel;
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::message::{Header, Message, OwnedHeaders, OwnedMessage};
use rdkafka::producer::{BaseRecord, DeliveryResult, Producer, ProducerContext, ThreadedProducer};
use rdkafka::ClientContext;
use tracing::{debug, error, warn};

use super::{client_config, IngestConfig, IngestError};
use crate::event::EventError;
use crate::ops::Metrics;

/// Headers every dead-lettered message carries.
pub const HEADER_REASON: &str = "ih-reason";
pub const HEADER_ERROR: &str = "ih-error";
pub const HEADER_SOURCE_TOPIC: &str = "ih-source-topic";
pub const HEADER_SOURCE_PARTITION: &str = "ih-source-partition";
pub const HEADER_SOURCE_OFFSET: &str = "ih-source-offset";

/// The `ih-error` header is cut to this many bytes, so a dead letter never outgrows the
/// message it carries by more than a little.
pub(crate) const MAX_ERROR_HEADER_BYTES: usize = 512;

/// The longest prefix of `text` of at most `max` bytes that ends on a character boundary.
fn truncate_utf8(text: &str, max: usize) -> &str {
    let mut end = text.len().min(max);
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    &text[..end]
}

/// Where the owner sends rejected messages. Kafka in the service; a list in the owner's tests.
pub(crate) trait DeadLetterSink: Send {
    fn send(&mut self, message: &OwnedMessage, reason: &EventError);
    /// Returns once every message sent so far is acknowledged (or has failed and been counted).
    fn flush(&mut self);
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

/// Publishes to the dead-letter topic.
pub(crate) struct DeadLetters {
    producer: ThreadedProducer<DlqContext>,
    topic: String,
}

impl DeadLetters {
    pub(crate) fn new(config: &IngestConfig, metrics: Arc<Metrics>) -> Result<Self, IngestError> {
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
}

impl DeadLetterSink for DeadLetters {
    fn send(&mut self, message: &OwnedMessage, reason: &EventError) {
        let error_text = truncate_utf8(&reason.to_string(), MAX_ERROR_HEADER_BYTES).to_owned();
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
        if let Err(err) = send_when_queued(&self.producer, record) {
            error!(error = %err, "cannot queue dead letter");
        }
    }

    fn flush(&mut self) {
        if let Err(err) = self.producer.flush(Duration::from_secs(30)) {
            error!(error = %err, "dead letters not flushed");
        }
    }
}

/// Queues `record`, waiting while librdkafka's local queue is full: the broker applies
/// backpressure, and dropping the message instead would lose it.
pub fn send_when_queued<C: ProducerContext>(
    producer: &ThreadedProducer<C>,
    mut record: BaseRecord<'_, [u8], [u8], C::DeliveryOpaque>,
) -> Result<(), KafkaError> {
    loop {
        match producer.send(record) {
            Ok(()) => return Ok(()),
            Err((KafkaError::MessageProduction(RDKafkaErrorCode::QueueFull), back)) => {
                record = back;
                std::thread::sleep(Duration::from_millis(5));
            }
            Err((err, _)) => return Err(err),
        }
    }
}

fn header<'a>(key: &'a str, value: &'a str) -> Header<'a, &'a str> {
    Header {
        key,
        value: Some(value),
    }
}
