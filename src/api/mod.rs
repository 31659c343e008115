//! The thin gRPC adapter: check the caller, convert protobuf to domain types, run the query off
//! the async workers, convert back. Domain errors become gRPC statuses in `status_from`, and
//! nowhere else.
//!
//! - `alerts`: `ListAlerts` and `WatchAlerts`;
//! - `asker`: a tenant's query over this replica's partitions and the other owners' parts;
//! - `auth`: bearer tokens and their tenants;
//! - `callers`: per-caller rate limits and watch-stream permits;
//! - `codec`: protobuf on the wire, with malformed requests the caller's error;
//! - `connect`: the same service in the Connect protocol's unary JSON form, for browsers;
//! - `convert`: proto ↔ domain conversions, shared with the `query` client;
//! - `coverage`: which partitions an answer covers, when replicas answer together;
//! - `feeds`: one count of a watched tenant shared by its local watchers;
//! - `grpc`: the `IntegrationHealth` service;
//! - `health`: its integration-health calls; `issues`: its issue calls;
//! - `peer`: the replica-to-replica service;
//! - `status`: ingest status on the wire, merged across replicas;
//! - `watch`: `WatchTenant`'s updates.

mod alerts;
mod asker;
mod auth;
mod callers;
pub mod codec;
mod connect;
pub mod convert;
mod coverage;
mod feeds;
mod grpc;
mod health;
mod issues;
mod peer;
mod status;
mod watch;

use tonic::Status;

pub use auth::{Access, Auth, SharedAuth};
pub use callers::WatchLimits;
pub use connect::{connect_code, connect_router, SERVICE_PATH};
pub use coverage::{ALLOW_PARTIAL, COVERED_PARTITIONS, MISSING_PARTITIONS};
pub use grpc::{ApiLimits, IntegrationHealthApi, FORWARDED};
pub use issues::IssueKeeping;
pub use peer::PeerApi;

use crate::query::QueryError;

pub fn status_from(error: QueryError) -> Status {
    match error {
        QueryError::FailureNotFound { .. } | QueryError::IntegrationNotFound { .. } => {
            Status::not_found(error.to_string())
        }
        QueryError::TooManyPoints { .. } => Status::resource_exhausted(error.to_string()),
        QueryError::UnplannedPart => Status::internal(error.to_string()),
        QueryError::StartNotBeforeEnd
        | QueryError::EmptyRange
        | QueryError::OutsideCalendar
        | QueryError::PeriodTooShort
        | QueryError::PeriodTooLong { .. }
        | QueryError::UnknownTimeZone(_)
        | QueryError::PageSizeTooLarge { .. }
        | QueryError::BadPageToken
        | QueryError::PageTokenForAnotherQuery
        | QueryError::BadFailureId
        | QueryError::AmbiguousIntegration => Status::invalid_argument(error.to_string()),
    }
}
