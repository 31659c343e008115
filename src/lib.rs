//! integration-health: per-tenant health of third-party integrations.
//!
//! A Kafka message goes through [`event`] (decode, validate), [`ingest`] (the partition's single
//! writer) into [`store`]; [`query`] answers from it, [`api`] serves the answers, [`server`]
//! wires the parts. DESIGN.md in the repository is the map of every module, with the
//! invariants and decisions.

#![warn(unreachable_pub)]
#![deny(unsafe_code)]

pub mod alerts;
pub mod api;
pub mod catalog;
pub mod changelog;
pub mod clock;
pub mod cluster;
pub mod config;
pub mod dashboard;
pub mod event;
mod file_digest;
pub mod ingest;
pub mod issues;
pub mod notify;
pub mod ops;
mod prefetch;
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
