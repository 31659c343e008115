//! The notifier's thread: a consumer of `<topic>.alerts` in a group of its own, so each
//! partition of the topic has one sender among the replicas. Each record is delivered to all
//! its destinations (each ends sent or recorded as undelivered) and only then is its offset
//! committed, synchronously, before the next poll: a rebalance happens only inside a poll, so
//! it never moves a partition between a delivery and its commit.

use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Duration;

use rdkafka::consumer::{BaseConsumer, CommitMode, Consumer};
use rdkafka::{ClientConfig, Message};
use tokio_util::sync::CancellationToken;
use tracing::{info, warn};

use super::{Notifier, NotifyError};
use crate::alerts::AlertEvent;

/// Follows `topic` with `client` (its group set) and delivers every alert until `shutdown`.
pub(crate) fn deliver_alerts(
    mut client: ClientConfig,
    topic: String,
    notifier: Arc<Notifier>,
    shutdown: CancellationToken,
) -> Result<JoinHandle<()>, NotifyError> {
    client
        .set("enable.auto.commit", "false")
        .set("enable.auto.offset.store", "false")
        // A new group starts from the beginning; `alert_delivery_max_age_ms` keeps it from
        // paging anyone about old episodes.
        .set("auto.offset.reset", "earliest");
    let consumer: BaseConsumer = client.create().map_err(NotifyError::Kafka)?;
    consumer.subscribe(&[&topic]).map_err(NotifyError::Kafka)?;
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(NotifyError::Thread)?;
    std::thread::Builder::new()
        .name("ih-notifier".into())
        .spawn(move || {
            info!(%topic, "alert notifier started");
            while !shutdown.is_cancelled() {
                let message = match consumer.poll(Duration::from_millis(100)) {
                    Some(Ok(message)) => message,
                    Some(Err(err)) => {
                        warn!(error = %err, "reading alerts to deliver failed");
                        continue;
                    }
                    None => continue,
                };
                let delivered = match message.payload().map(serde_json::from_slice::<AlertEvent>) {
                    Some(Ok(event)) => runtime.block_on(async {
                        tokio::select! {
                            _ = notifier.deliver(&event) => true,
                            _ = shutdown.cancelled() => false,
                        }
                    }),
                    Some(Err(err)) => {
                        warn!(error = %err, offset = message.offset(), "an alerts record is not an alert; skipped");
                        true
                    }
                    None => true,
                };
                // Interrupted by shutdown: not committed, so the next owner delivers it.
                if !delivered {
                    break;
                }
                if let Err(err) = consumer.commit_message(&message, CommitMode::Sync) {
                    warn!(error = %err, offset = message.offset(), "delivered, but the commit failed; it may be sent again");
                }
            }
            info!("alert notifier stopped");
        })
        .map_err(NotifyError::Thread)
}
