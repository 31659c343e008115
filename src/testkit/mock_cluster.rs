//! librdkafka's in-process mock cluster: a real Kafka-protocol broker, reachable over TCP, for
//! the demo, the tests and the end-to-end benchmark.

use rdkafka::error::KafkaError;
use rdkafka::mocking::MockCluster;
use rdkafka::producer::DefaultProducerContext;

/// librdkafka's mock cluster, alive while this value is.
pub struct EmbeddedKafka {
    cluster: MockCluster<'static, DefaultProducerContext>,
}

impl EmbeddedKafka {
    pub fn start(brokers: i32) -> Result<Self, KafkaError> {
        Ok(EmbeddedKafka {
            cluster: MockCluster::new(brokers)?,
        })
    }

    pub fn bootstrap_servers(&self) -> String {
        self.cluster.bootstrap_servers()
    }

    pub fn create_topic(&self, topic: &str, partitions: i32) -> Result<(), KafkaError> {
        self.create_replicated_topic(topic, partitions, 1)
    }

    pub fn create_replicated_topic(
        &self,
        topic: &str,
        partitions: i32,
        replicas: i32,
    ) -> Result<(), KafkaError> {
        self.cluster.create_topic(topic, partitions, replicas)
    }

    pub fn cluster(&self) -> &MockCluster<'static, DefaultProducerContext> {
        &self.cluster
    }
}
