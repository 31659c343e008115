//! The thin gRPC adapter: check the caller, convert protobuf to domain types, run the query off
//! the async workers, convert back. Domain errors become gRPC statuses in `status_from`, and
//! nowhere else.
//!
//! - `auth`: bearer tokens and their tenants;
//! - `convert`: proto ↔ domain conversions, shared with the `query` client;
//! - `grpc`: the `IntegrationHealth` service;
//! - `peer`: the replica-to-replica service.

mod auth;
pub mod convert;
mod grpc;
mod peer;

use tonic::Status;

pub use auth::{Access, Auth, SharedAuth};
pub use grpc::{
    ApiLimits, IntegrationHealthApi, ALLOW_PARTIAL, COVERED_PARTITIONS, MISSING_PARTITIONS,
};
pub use peer::PeerApi;

use crate::query::QueryError;

pub fn status_from(error: QueryError) -> Status {
    match error {
        QueryError::FailureNotFound { .. } => Status::not_found(error.to_string()),
        QueryError::TooManyPoints { .. } => Status::resource_exhausted(error.to_string()),
        QueryError::StartNotBeforeEnd
        | QueryError::EmptyRange
        | QueryError::OutsideCalendar
        | QueryError::PeriodTooShort
        | QueryError::PeriodTooLong { .. }
        | QueryError::UnknownTimeZone(_)
        | QueryError::PageSizeTooLarge { .. }
        | QueryError::BadPageToken
        | QueryError::PageTokenForAnotherQuery
        | QueryError::BadFailureId => Status::invalid_argument(error.to_string()),
    }
}
