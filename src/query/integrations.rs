//! Integration health: one row per integration (counts, failure rate, latency percentiles, last
//! failure, top code, a daily sparkline), one integration's series, and what drove a type's
//! change in failures. Everything is summed from the per-integration cube, merged across
//! partitions by the integration's id.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use super::calendar::{day_boundaries, hour_boundaries, parse_time_zone};
use super::paging;
use super::parts::Part;
use super::types::{ErrorCount, Granularity, TimeRange, TypeFilter};
use super::{QueryEngine, QueryError, DEFAULT_RANGE_MS};
use crate::catalog;
use crate::event::IntegrationType;
use crate::store::{sum_hours, IntegrationHour, LatencySketch, SketchSum, DAY_MS, HOUR_MS};

/// Percentiles every latency answer carries.
const QUANTILES: [f64; 3] = [0.50, 0.95, 0.99];
/// How many failure groups `GetIntegrationHealth` lists.
const TOP_GROUPS: usize = 5;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Hash)]
pub enum IntegrationOrder {
    #[default]
    FailuresDesc,
    FailureRateDesc,
    P99Desc,
    NameAsc,
}

#[derive(Debug, Clone)]
pub struct ListIntegrationsRequest {
    pub tenant_id: String,
    pub range: Option<TimeRange>,
    pub types: TypeFilter,
    pub order: IntegrationOrder,
    pub page_size: usize,
    pub page_token: Option<String>,
}

/// p50, p95 and p99 in milliseconds; `None` when no event in the span carried a latency.
pub type Percentiles = Option<[f64; 3]>;

#[derive(Debug, Clone, PartialEq)]
pub struct IntegrationRow {
    pub integration_type: IntegrationType,
    pub integration_id: String,
    pub integration_name: String,
    pub succeeded: u64,
    pub failed: u64,
    /// failed / (failed + succeeded); every listed integration has events in the range.
    pub failure_rate: f64,
    pub latency: Percentiles,
    /// Events that carried a latency.
    pub latency_count: u64,
    pub last_failure_ms: Option<i64>,
    pub top_error_code: Option<u16>,
    /// (UTC day start, failures) for each day of the range.
    pub daily_failures: Vec<(i64, u64)>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct IntegrationPage {
    pub integrations: Vec<IntegrationRow>,
    pub next_page_token: Option<String>,
    pub total_integrations: u64,
    pub effective_range: TimeRange,
}

#[derive(Debug, Clone, PartialEq)]
pub struct IntegrationPoint {
    pub bucket_start_ms: i64,
    pub succeeded: u64,
    pub failed: u64,
    pub latency: Percentiles,
    pub latency_count: u64,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct GroupSummary {
    pub failure_id: String,
    pub failure_description: String,
    pub status_code: u16,
    pub integration_type: IntegrationType,
    pub total_errors: u64,
    pub last_seen_ms: i64,
}

#[derive(Debug, Clone, PartialEq)]
pub struct IntegrationHealth {
    pub summary: IntegrationRow,
    pub series: Vec<IntegrationPoint>,
    pub error_codes: Vec<ErrorCount>,
    pub top_failures: Vec<GroupSummary>,
    pub effective_range: TimeRange,
}

/// One integration's totals over a range, summed over the partitions that hold it without
/// copying its hours: what a row needs.
#[derive(Default)]
struct Totals {
    name: Name,
    succeeded: u64,
    failed: u64,
    last_failure_ms: Option<i64>,
    latency: SketchSum,
    /// UTC day start → failures.
    daily: BTreeMap<i64, u64>,
}

impl Totals {
    fn add<'a>(&mut self, hours: impl Iterator<Item = (&'a i64, &'a IntegrationHour)>) {
        for (hour, counts) in hours {
            self.succeeded += u64::from(counts.succeeded);
            self.failed += u64::from(counts.failed);
            self.last_failure_ms = self.last_failure_ms.max(counts.last_failure_ms());
            self.latency.add(&counts.latency);
            *self
                .daily
                .entry(hour.div_euclid(DAY_MS) * DAY_MS)
                .or_default() += u64::from(counts.failed);
        }
    }

    pub(super) fn into_part(self) -> TotalsPart {
        TotalsPart {
            name: self.name,
            succeeded: self.succeeded,
            failed: self.failed,
            last_failure_ms: self.last_failure_ms,
            latency: self.latency.finish(),
            daily: self.daily,
        }
    }
}

/// An integration's totals over some partitions, in a form that merges and travels.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct TotalsPart {
    name: Name,
    succeeded: u64,
    failed: u64,
    last_failure_ms: Option<i64>,
    latency: LatencySketch,
    daily: BTreeMap<i64, u64>,
}

impl TotalsPart {
    pub(super) fn merge(&mut self, other: TotalsPart) {
        self.name.merge(other.name);
        self.succeeded += other.succeeded;
        self.failed += other.failed;
        self.last_failure_ms = self.last_failure_ms.max(other.last_failure_ms);
        self.latency.merge(&other.latency);
        for (day, failed) in other.daily {
            *self.daily.entry(day).or_default() += failed;
        }
    }
}

/// An integration's name and when it was seen. The newest wins, whichever partition or replica
/// saw it; at the same instant the greater name, so the order of merging never matters.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
struct Name {
    text: String,
    at_ms: i64,
}

impl Name {
    fn offer(&mut self, text: &str, at_ms: i64) {
        if self.text.is_empty() || (at_ms, text) > (self.at_ms, self.text.as_str()) {
            self.text = text.to_owned();
            self.at_ms = at_ms;
        }
    }

    fn merge(&mut self, other: Name) {
        if self.text.is_empty() || (other.at_ms, &other.text) > (self.at_ms, &self.text) {
            *self = other;
        }
    }
}

/// One integration, summed over the partitions that hold it.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct Merged {
    name: Name,
    hours: BTreeMap<i64, IntegrationHour>,
}

impl Merged {
    pub(super) fn merge(&mut self, other: Merged) {
        self.name.merge(other.name);
        for (hour, counts) in other.hours {
            self.hours.entry(hour).or_default().add(&counts);
        }
    }
}

/// An integration's type and id.
pub type Id = (IntegrationType, String);

fn integration_matches(
    wanted_type: Option<IntegrationType>,
    wanted_id: &str,
    t: IntegrationType,
    id: &str,
) -> bool {
    id == wanted_id && wanted_type.is_none_or(|w| w == t)
}

impl QueryEngine {
    /// The local integrations with `integration_id` (of `integration_type`, when given) that
    /// have events in `range`, with their hours in `range`.
    pub(super) fn local_integration(
        &self,
        tenant_id: &str,
        range: TimeRange,
        integration_type: Option<IntegrationType>,
        integration_id: &str,
    ) -> BTreeMap<Id, Merged> {
        let mut merged: BTreeMap<Id, Merged> = BTreeMap::new();
        self.for_tenant(tenant_id, |partition, tenant| {
            for (key, state) in &tenant.integrations {
                let id = partition.interner.resolve(key.integration_id);
                if !integration_matches(integration_type, integration_id, key.integration_type, id)
                {
                    continue;
                }
                let mut hours = state.hours.range(range.start_ms..range.end_ms).peekable();
                if hours.peek().is_none() {
                    continue;
                }
                let slot = merged
                    .entry((key.integration_type, id.to_owned()))
                    .or_default();
                for (hour, counts) in hours {
                    slot.hours.entry(*hour).or_default().add(counts);
                }
                slot.name
                    .offer(partition.interner.resolve(state.name), state.name_at_ms);
            }
        });
        merged
    }

    /// Every local integration of the tenant with events in `range` whose type `wanted`
    /// accepts.
    pub(super) fn local_integration_totals(
        &self,
        tenant_id: &str,
        range: TimeRange,
        wanted: impl Fn(IntegrationType) -> bool,
    ) -> BTreeMap<Id, TotalsPart> {
        let mut totals: BTreeMap<Id, Totals> = BTreeMap::new();
        self.for_tenant(tenant_id, |partition, tenant| {
            for (key, state) in &tenant.integrations {
                let mut hours = state.hours.range(range.start_ms..range.end_ms).peekable();
                if !wanted(key.integration_type) || hours.peek().is_none() {
                    continue;
                }
                let id = partition.interner.resolve(key.integration_id).to_owned();
                let slot = totals.entry((key.integration_type, id)).or_default();
                slot.add(hours);
                slot.name
                    .offer(partition.interner.resolve(state.name), state.name_at_ms);
            }
        });
        totals
            .into_iter()
            .map(|(id, totals)| (id, totals.into_part()))
            .collect()
    }

    /// Failures per code of each local integration in `range`, from its failure groups.
    pub(super) fn local_codes_by_integration(
        &self,
        tenant_id: &str,
        range: TimeRange,
    ) -> BTreeMap<Id, BTreeMap<u16, u64>> {
        let mut codes: BTreeMap<Id, BTreeMap<u16, u64>> = BTreeMap::new();
        self.for_tenant(tenant_id, |partition, tenant| {
            for (key, group) in &tenant.groups {
                let total = group.total_in(range.start_ms, range.end_ms);
                if total == 0 {
                    continue;
                }
                let id = partition.interner.resolve(key.integration_id).to_owned();
                *codes
                    .entry((key.integration_type, id))
                    .or_default()
                    .entry(key.status_code)
                    .or_default() += total;
            }
        });
        codes
    }

    fn codes_by_integration(
        &self,
        tenant_id: &str,
        range: TimeRange,
    ) -> Result<BTreeMap<Id, BTreeMap<u16, u64>>, QueryError> {
        let local = self.local_codes_by_integration(tenant_id, range);
        self.gathered(Part::IntegrationCodes { range }, local)
    }

    pub fn list_integrations(
        &self,
        request: &ListIntegrationsRequest,
    ) -> Result<IntegrationPage, QueryError> {
        let page_size = paging::page_size(request.page_size)?;
        let fingerprint = paging::fingerprint(&(&request.tenant_id, request.types, request.order));
        let after: Option<Position> = match &request.page_token {
            Some(token) => Some(paging::decode_token(token, fingerprint)?),
            None => None,
        };
        let range = self.effective(request.range, DEFAULT_RANGE_MS, self.now_ms(), HOUR_MS)?;
        let types = request.types;
        let local = self.local_integration_totals(&request.tenant_id, range, |t| types.includes(t));
        let totals = self.gathered(Part::IntegrationTotals { range, types }, local)?;
        let codes = self.codes_by_integration(&request.tenant_id, range)?;
        let rows: Vec<IntegrationRow> = totals
            .into_iter()
            .map(|(id, totals)| row(&id, totals, codes.get(&id), range))
            .collect();
        let total_integrations = rows.len() as u64;
        let order = request.order;
        let (rows, next) =
            paging::take_page(rows, after.as_ref(), page_size, |r| sort_key(r, order));
        let next_page_token = next.map(|position| paging::encode_token(fingerprint, &position));
        Ok(IntegrationPage {
            integrations: rows,
            next_page_token,
            total_integrations,
            effective_range: range,
        })
    }

    pub fn integration_health(
        &self,
        tenant_id: &str,
        integration_type: Option<IntegrationType>,
        integration_id: &str,
        range: Option<TimeRange>,
        granularity: Granularity,
        time_zone: &str,
    ) -> Result<IntegrationHealth, QueryError> {
        let tz = parse_time_zone(time_zone)?;
        let hours = self.effective(range, DEFAULT_RANGE_MS, self.now_ms(), HOUR_MS)?;
        let boundaries = match granularity {
            Granularity::Hour => hour_boundaries(hours)?,
            Granularity::Day => day_boundaries(tz, hours)?,
        };
        let (Some(&first), Some(&last)) = (boundaries.first(), boundaries.last()) else {
            return Err(QueryError::EmptyRange);
        };
        let range = TimeRange {
            start_ms: first,
            end_ms: last,
        };
        // Every part is read before anything is decided from one, so that a first pass over
        // the local partitions notes them all.
        let local = self.local_integration(tenant_id, range, integration_type, integration_id);
        let merged = self.gathered(
            Part::Integration {
                range,
                integration_type,
                integration_id: integration_id.to_owned(),
            },
            local,
        )?;
        let codes = self.codes_by_integration(tenant_id, range)?;
        let groups = self.integration_groups(tenant_id, range, integration_type, integration_id)?;
        let mut found = merged.into_iter();
        let (id, integration) = match (found.next(), found.next()) {
            (Some(one), None) => one,
            (None, _) => {
                return Err(QueryError::IntegrationNotFound {
                    tenant_id: tenant_id.to_owned(),
                    integration_id: integration_id.to_owned(),
                })
            }
            (Some(_), Some(_)) => return Err(QueryError::AmbiguousIntegration),
        };
        let mut totals = Totals::default();
        totals.add(integration.hours.iter());
        totals.name = integration.name.clone();
        let summary = row(&id, totals.into_part(), codes.get(&id), range);
        let series = boundaries
            .windows(2)
            .map(|w| {
                let total = sum_hours(integration.hours.range(w[0]..w[1]).map(|(_, h)| h));
                IntegrationPoint {
                    bucket_start_ms: w[0],
                    succeeded: u64::from(total.succeeded),
                    failed: u64::from(total.failed),
                    latency: percentiles(&total),
                    latency_count: total.latency.count(),
                }
            })
            .collect();
        let mut error_codes: Vec<ErrorCount> = codes
            .get(&id)
            .into_iter()
            .flatten()
            .map(|(code, failed)| ErrorCount {
                status_code: *code,
                name: catalog::name_of(*code),
                failed: *failed,
            })
            .collect();
        error_codes.sort_by(|a, b| {
            b.failed
                .cmp(&a.failed)
                .then(a.status_code.cmp(&b.status_code))
        });
        Ok(IntegrationHealth {
            summary,
            series,
            error_codes,
            top_failures: top_groups(groups, id.0),
            effective_range: range,
        })
    }
}

/// The integration's failure groups with the most failures.
fn top_groups(groups: Vec<GroupSummary>, integration_type: IntegrationType) -> Vec<GroupSummary> {
    let mut groups: Vec<GroupSummary> = groups
        .into_iter()
        .filter(|g| g.integration_type == integration_type && g.total_errors > 0)
        .collect();
    groups.sort_by(|a, b| {
        b.total_errors
            .cmp(&a.total_errors)
            .then_with(|| a.failure_id.cmp(&b.failure_id))
    });
    groups.truncate(TOP_GROUPS);
    groups
}

fn percentiles(hour: &IntegrationHour) -> Percentiles {
    latency_percentiles(&hour.latency)
}

fn latency_percentiles(sketch: &LatencySketch) -> Percentiles {
    let mut out = [0.0; 3];
    for (slot, q) in out.iter_mut().zip(QUANTILES) {
        *slot = sketch.quantile(q)?;
    }
    Some(out)
}

fn row(
    id: &Id,
    totals: TotalsPart,
    codes: Option<&BTreeMap<u16, u64>>,
    range: TimeRange,
) -> IntegrationRow {
    let latency = totals.latency;
    let events = (totals.succeeded + totals.failed).max(1);
    let first_day = range.start_ms.div_euclid(DAY_MS) * DAY_MS;
    let daily_failures = (first_day..range.end_ms)
        .step_by(DAY_MS as usize)
        .map(|day| (day, totals.daily.get(&day).copied().unwrap_or(0)))
        .collect();
    let top_error_code = codes.and_then(|codes| {
        codes
            .iter()
            .max_by(|a, b| a.1.cmp(b.1).then(b.0.cmp(a.0)))
            .map(|(code, _)| *code)
    });
    IntegrationRow {
        integration_type: id.0,
        integration_id: id.1.clone(),
        integration_name: totals.name.text,
        succeeded: totals.succeeded,
        failed: totals.failed,
        failure_rate: totals.failed as f64 / events as f64,
        latency: latency_percentiles(&latency),
        latency_count: latency.count(),
        last_failure_ms: totals.last_failure_ms,
        top_error_code,
        daily_failures,
    }
}

/// Where a row sorts: a number (smaller first), then the name and id that break ties.
type Position = (i64, String, IntegrationType, String);

fn sort_key(row: &IntegrationRow, order: IntegrationOrder) -> Position {
    let primary = match order {
        IntegrationOrder::FailuresDesc => -(row.failed.min(i64::MAX as u64) as i64),
        // Parts per billion keep the order exact enough and the token an integer.
        IntegrationOrder::FailureRateDesc => -((row.failure_rate * 1e9).round() as i64),
        IntegrationOrder::P99Desc => row
            .latency
            .map_or(i64::MAX, |p| -((p[2] * 1e3).round() as i64)),
        IntegrationOrder::NameAsc => 0,
    };
    (
        primary,
        row.integration_name.clone(),
        row.integration_type,
        row.integration_id.clone(),
    )
}
