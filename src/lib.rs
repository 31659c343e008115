//! integration-health: per-tenant health of third-party integrations.
//!
//! The data's path, and the order of the modules: a Kafka message → [`event`] (decode,
//! validate) → [`store`] (partition-owned buckets) → [`ingest`] (consumer, owner, dedup, DLQ,
//! [`snapshot`]s) and [`query`] (domain answers, merged across partitions) → [`cluster`]
//! (answers across replicas) → [`api`] (gRPC, and the Connect/JSON form the [`dashboard`]
//! reads) → [`server`] (wiring). Beside the path, [`issues`] and [`alerts`] keep their state on
//! topics every instance reads whole ([`changelog`]). [`ops`] is the sink every stage reports
//! to; [`catalog`], [`config`], [`tls`] and [`clock`] are leaves. DESIGN.md in the repository
//! explains the invariants and decisions.

pub mod alerts;
pub mod api;
pub mod catalog;
pub mod changelog;
pub mod clock;
pub mod cluster;
pub mod config;
pub mod connections;
pub mod dashboard;
pub mod event;
pub mod ingest;
pub mod issues;
pub mod ops;
pub mod query;
pub mod server;
pub mod snapshot;
pub mod store;
pub mod tls;

/// Shared by the demo, benchmarks and tests; not part of the service.
#[cfg(feature = "testkit")]
#[doc(hidden)]
pub mod testkit;

pub mod proto {
    tonic::include_proto!("integration_health.v1");
    include!(concat!(env!("OUT_DIR"), "/integration_health.v1.serde.rs"));

    mod timestamp;

    /// The well-known types the messages use, with their proto3 JSON forms.
    pub use pbjson_types::Duration;
    pub use timestamp::Timestamp;

    pub const FILE_DESCRIPTOR_SET: &[u8] =
        tonic::include_file_descriptor_set!("integration_health_descriptor");
}
