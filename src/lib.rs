//! integration-health: per-tenant health of third-party integrations.
//!
//! The data's path: Kafka message → [`event`] (decode, validate) → [`ingest`] (consumer, dedup,
//! DLQ) → [`store`] (partition-owned buckets) → [`query`] (domain answers) → [`api`] (gRPC).

pub mod api;
pub mod bench;
pub mod catalog;
pub mod checkpoint;
pub mod cli;
pub mod clock;
pub mod config;
pub mod embedded;
pub mod event;
pub mod ingest;
pub mod query;
pub mod server;
pub mod store;
pub mod telemetry;

pub mod proto {
    tonic::include_proto!("integration_health.v1");

    pub const FILE_DESCRIPTOR_SET: &[u8] =
        tonic::include_file_descriptor_set!("integration_health_descriptor");
}
