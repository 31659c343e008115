//! Where a partition's log starts now: what tells a real loss (offsets deleted before they
//! were read) from a gap that compaction or transaction markers leave.

use std::time::Duration;

use rdkafka::consumer::{BaseConsumer, Consumer};
use tracing::warn;

use super::{client_config, IngestConfig, IngestError};
use crate::store::PartitionKey;

const LOOKUP_TIMEOUT: Duration = Duration::from_secs(5);

/// Looks up a partition's first offset still in the log, and its high watermark.
pub(crate) trait LogStarts: Send {
    /// (log start, high watermark); `None` when the broker did not answer in time.
    fn watermarks(&self, key: &PartitionKey) -> Option<(i64, i64)>;

    fn log_start(&self, key: &PartitionKey) -> Option<i64> {
        self.watermarks(key).map(|(low, _)| low)
    }
}

/// Asks the broker (ListOffsets) with a client of its own, outside any group.
pub(crate) struct KafkaLogStarts {
    client: BaseConsumer,
}

impl KafkaLogStarts {
    pub(crate) fn new(config: &IngestConfig) -> Result<Self, IngestError> {
        let client = client_config(config, &[])
            .create()
            .map_err(IngestError::Client)?;
        Ok(KafkaLogStarts { client })
    }
}

impl LogStarts for KafkaLogStarts {
    fn watermarks(&self, key: &PartitionKey) -> Option<(i64, i64)> {
        match self
            .client
            .fetch_watermarks(&key.topic, key.partition, LOOKUP_TIMEOUT)
        {
            Ok(marks) => Some(marks),
            Err(err) => {
                warn!(topic = %key.topic, partition = key.partition, error = %err, "cannot look up where the partition's log starts; a gap there is not checked for loss");
                None
            }
        }
    }
}
