//! The thin gRPC adapter: check the caller, convert protobuf to domain types, run the query off
//! the async workers, convert back. Domain errors become gRPC statuses in `status_from`, and
//! nowhere else.
//!
//! - `service`: the call pipeline every handler shares (caller, forwarding, query, coverage);
//! - `grpc`: the `IntegrationHealth` trait, each method handed to its family:
//!   `counts` (overview, change, errors, trends), `failures` (table, details), `health`
//!   (integrations, `WatchTenant`), `issues`, `alerts`, `global` (catalog, tenants, status);
//! - `answers`: every answer message built from the query's answer; `convert`: fields and
//!   enums between protobuf and domain types, shared with the `query` client;
//! - `asker`: a tenant's query over this replica's partitions and the other owners' parts;
//!   `feeds`: one count of a watched tenant shared by its local watchers; `watch`:
//!   `WatchTenant`'s updates; `coverage`: which partitions an answer covers, and the headers
//!   between replicas;
//! - `auth`: bearer tokens and their tenants; `callers`: per-caller rate limits and watch
//!   permits; `codec`: protobuf on the wire, with malformed requests the caller's error;
//! - `connect`: the same service in the Connect protocol's JSON form, for browsers;
//! - `peer`: the replica-to-replica service; `status`: ingest status merged across replicas.

mod alerts;
mod answers;
mod asker;
mod auth;
mod callers;
pub(crate) mod codec;
mod connect;
pub mod convert;
mod counts;
mod coverage;
mod failures;
mod feeds;
mod global;
mod grpc;
mod health;
mod issues;
mod peer;
mod rules;
mod service;
mod status;
mod watch;

use tonic::Status;

pub(crate) use auth::Access;
pub use auth::{Auth, SharedAuth};
pub use callers::WatchLimits;
pub(crate) use connect::connect_router;
pub use coverage::{ALLOW_PARTIAL, COVERED_PARTITIONS, MISSING_PARTITIONS};
pub use service::ApiLimits;
pub(crate) use service::IntegrationHealthApi;

use crate::query::QueryError;

pub(crate) fn status_from(error: QueryError) -> Status {
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
