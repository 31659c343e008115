//! Every integration test in one binary, so the test build links rdkafka, tonic and
//! object_store once rather than once per file. Each module drives the built service the way
//! its users do: a Kafka producer on one side (librdkafka's mock cluster, or tansu), gRPC,
//! Connect or HTTP clients on the other; `common` holds the harness and the independent
//! recount (`common::truth`) the answers are checked against.

mod common;

mod alert_rules;
mod alerts;
mod api;
mod clock;
mod connect;
mod crash;
mod dashboard;
mod dashboard_live;
mod delivery;
mod demo_smoke;
mod end_to_end;
mod held;
mod hostile;
mod hostile_corpus;
mod integration_health;
mod issues;
mod load;
mod membership;
mod notify;
mod object_storage;
mod operations;
mod otlp;
mod peers;
mod recovery;
mod replicas;
mod retries;
mod revoke;
mod security;
mod severity;
mod silence;
mod tenant_admission;
mod unkeyed;
