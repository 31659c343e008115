//! Domain queries over the store. Knows nothing of protobuf; `api` converts.
//!
//! Ranges are half-open `[start, end)` in epoch milliseconds and are rounded outward to the
//! resolution that serves them: minute buckets while the whole range lies inside the minute
//! window, hour buckets otherwise. The rounded, retention-clamped range is returned as the
//! effective range.
//!
//! - `engine`: the engine and the counting queries (overview, change, errors, trends, catalog);
//! - `failures`: the failures table and a failure's details; `groups`: a group's parts and the
//!   one rule that merges them across partitions and replicas;
//! - `calendar`: hour and local-day boundaries;
//! - `integrations`: per-integration rows and one integration's series (`integration_rows`:
//!   a row's numbers, its sort key, an integration's top failure groups);
//! - `drivers`: the integrations and codes that drove a type's change in failures;
//! - `paging`: keyset page tokens;
//! - `tenants`: the tenants with events in a range, for the dashboard's picker.

mod calendar;
mod classes;
mod drivers;
mod engine;
mod failures;
mod groups;
mod integration_failures;
mod integration_rows;
mod integrations;
mod paging;
mod parts;
mod tenants;
#[cfg(test)]
mod tiers_tests;
mod types;

use thiserror::Error;

pub(crate) use engine::IssueContext;
pub use engine::QueryEngine;
pub(crate) use integrations::{
    GroupSummary, IntegrationHealth, IntegrationPage, IntegrationPoint, IntegrationRow, Percentiles,
};
pub use integrations::{IntegrationOrder, ListIntegrationsRequest};
pub(crate) use parts::{
    decode as decode_parts, encode as encode_parts, Answer, Part, PartsError, Remote,
    MAX_PARTS_PER_QUERY, PARTS_VERSION,
};
pub(crate) use tenants::merge_tenants;
pub use types::*;

use crate::store::DAY_MS;

pub(crate) const DEFAULT_RANGE_MS: i64 = crate::store::DEFAULT_WINDOW_MS;
pub(crate) const DEFAULT_PERIOD_MS: i64 = DAY_MS;
pub(crate) const DEFAULT_PAGE_SIZE: usize = 50;
pub(crate) const MAX_PAGE_SIZE: usize = 1000;
/// How far past now a range may reach; later ends are clamped. Events more than 5 minutes
/// ahead are refused at ingest, so nothing is stored beyond this.
pub(crate) const FUTURE_MARGIN_MS: i64 = crate::store::HOUR_MS;
/// Largest number of points a trend series may have; more is refused as too large.
pub(crate) const MAX_TREND_POINTS: usize = 10_000;

/// Why a query cannot be answered. `api` maps each variant to a gRPC status.
#[derive(Debug, Error, PartialEq)]
pub enum QueryError {
    #[error("range.start must be before range.end")]
    StartNotBeforeEnd,
    #[error("range is empty")]
    EmptyRange,
    #[error("range is outside the supported calendar")]
    OutsideCalendar,
    #[error("period must be at least one minute")]
    PeriodTooShort,
    #[error(
        "period may be at most {max_hours} hours, half the retention, so the previous period is complete"
    )]
    PeriodTooLong { max_hours: i64 },
    #[error("time_zone {:?} is not an IANA time zone name", crate::event::echo(.0))]
    UnknownTimeZone(String),
    #[error("page_size may be at most {max}")]
    PageSizeTooLarge { max: usize },
    #[error("page_token is not a token this service issued")]
    BadPageToken,
    #[error("page_token belongs to a different query (tenant, filters or order changed)")]
    PageTokenForAnotherQuery,
    #[error("failure_id must be 32 hexadecimal characters")]
    BadFailureId,
    #[error("no failure {failure_id} for tenant {tenant_id}")]
    FailureNotFound {
        tenant_id: String,
        failure_id: String,
    },
    #[error("no integration {integration_id:?} for tenant {tenant_id}")]
    IntegrationNotFound {
        tenant_id: String,
        integration_id: String,
    },
    #[error("integration_id is used by more than one integration type; give integration_type")]
    AmbiguousIntegration,
    #[error("{requested} points requested; at most {max} per series")]
    TooManyPoints { requested: usize, max: usize },
    /// A second pass read a part its first pass did not note: the query's reads depend on
    /// something other than its parameters (a bug), so no answer is given rather than one
    /// missing the other replicas' counts.
    #[error("the query read a part of another replica's partitions that it had not asked for")]
    UnplannedPart,
}
