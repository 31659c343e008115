//! Integration health: one row per integration (counts, failure rate, latency percentiles, last
//! failure, top code, a daily sparkline), one integration's series, and what drove a type's
//! change in failures. Everything is summed from the per-integration cube, merged across
//! partitions by the integration's id.

use std::borrow::Cow;
use std::collections::{BTreeMap, HashMap};

use serde::{Deserialize, Serialize};

use super::calendar::{day_boundaries, hour_boundaries, parse_time_zone};
use super::engine::utc_days_until;
use super::integration_rows::Daily;
use super::integration_rows::{
    latency_percentiles, row, sort_key, summed, top_groups, PendingRow, Position,
};
use super::paging;
use super::parts::Part;
use super::types::{ClassFilter, ErrorCount, Granularity, Resolution, TimeRange, TypeFilter};
use super::{QueryEngine, QueryError, DEFAULT_RANGE_MS};

use crate::catalog;
use crate::event::IntegrationType;
use crate::store::{
    floor_to, Bucket, CodesByIntegration, HourTier, IntegrationDay, IntegrationSum, LatencySketch,
    PartitionState, RetrySum, RollsInto, SeriesRead, Sym, TenantState, DAY_MS, HOUR_MS,
};

/// Percentiles every latency answer carries.
pub(super) const QUANTILES: [f64; 3] = [0.50, 0.95, 0.99];
/// How many failure groups `GetIntegrationHealth` lists.
pub(super) const TOP_GROUPS: usize = 5;

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
    /// Only integrations with failures of these classes, and `FailuresDesc` counts those.
    pub classes: ClassFilter,
    pub order: IntegrationOrder,
    pub page_size: usize,
    pub page_token: Option<String>,
}

/// p50, p95 and p99 in milliseconds; `None` when no event in the span carried a latency.
pub(crate) type Percentiles = Option<[f64; 3]>;

#[derive(Debug, Clone, PartialEq)]
pub(crate) struct IntegrationRow {
    pub(crate) integration_type: IntegrationType,
    pub(crate) integration_id: String,
    pub(crate) integration_name: String,
    pub(crate) succeeded: u64,
    pub(crate) failed: u64,
    /// failed / (failed + succeeded); every listed integration has events in the range.
    pub(crate) failure_rate: f64,
    pub(crate) latency: Percentiles,
    /// Events that carried a latency.
    pub(crate) latency_count: u64,
    pub(crate) last_failure_ms: Option<i64>,
    pub(crate) top_error_code: Option<u16>,
    /// (UTC day start, failures) for each day of the range.
    pub(crate) daily_failures: Vec<(i64, u64)>,
    /// Failures that were retried, and transactions a retry recovered.
    pub(crate) retried_failures: u64,
    pub(crate) recovered_failures: u64,
    /// With a class filter: the failures of those classes, from its failure groups.
    pub(crate) class_failures: Option<u64>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct IntegrationPage {
    pub(crate) integrations: Vec<IntegrationRow>,
    pub(crate) next_page_token: Option<String>,
    pub(crate) total_integrations: u64,
    pub(crate) effective_range: TimeRange,
    pub(crate) resolution: Resolution,
}

impl IntegrationPage {
    /// The listed integrations' types and ids, in the page's order.
    pub fn ids(&self) -> impl Iterator<Item = (IntegrationType, &str)> {
        self.integrations
            .iter()
            .map(|r| (r.integration_type, r.integration_id.as_str()))
    }
}

#[derive(Debug, Clone, PartialEq)]
pub(crate) struct IntegrationPoint {
    pub(crate) bucket_start_ms: i64,
    pub(crate) succeeded: u64,
    pub(crate) failed: u64,
    pub(crate) latency: Percentiles,
    pub(crate) latency_count: u64,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct GroupSummary {
    pub(crate) failure_id: String,
    pub(crate) failure_description: String,
    pub(crate) status_code: u16,
    pub(crate) integration_type: IntegrationType,
    pub(crate) total_errors: u64,
    pub(crate) last_seen_ms: i64,
}

#[derive(Debug, Clone, PartialEq)]
pub struct IntegrationHealth {
    pub(crate) summary: IntegrationRow,
    pub(crate) series: Vec<IntegrationPoint>,
    pub(crate) error_codes: Vec<ErrorCount>,
    pub(crate) top_failures: Vec<GroupSummary>,
    pub(crate) effective_range: TimeRange,
    pub(crate) resolution: Resolution,
    /// For a local calendar past the hour tier: the points before this instant are UTC days.
    pub(crate) utc_days_until_ms: Option<i64>,
}

/// One integration's totals over a range, summed over the partitions that hold it without
/// copying its buckets: what a row needs.
#[derive(Default)]
pub(super) struct Totals {
    pub(super) name: Name,
    pub(super) sum: IntegrationSum,
    /// UTC day start → failures.
    pub(super) daily: Daily,
    pub(super) retries: RetrySum,
}

impl Totals {
    /// Counts from every bucket of the range; latencies from the integration's kept window and
    /// the hours since, when the range starts where the window does.
    fn add(&mut self, state: &crate::store::IntegrationState, range: TimeRange, rolled: i64) {
        let (start, end) = (range.start_ms, range.end_ms);
        let daily = &mut self.daily;
        let quiet = state.quiet_sum(start, end, |at| daily.add(floor_to(at, DAY_MS), 1));
        if let Some(sum) = quiet {
            self.sum.add(&sum);
            return;
        }
        let window = state
            .window
            .as_deref()
            .filter(|w| w.start_ms == start && w.upto_ms <= end);
        state
            .buckets
            .each(start, end, SeriesRead::UtcDays, rolled, |at, bucket| {
                let (failed, latency) = match bucket {
                    Bucket::Hour(hour) => {
                        self.sum.add_counts(hour);
                        (u64::from(hour.failed), &hour.latency)
                    }
                    Bucket::Day(day) => {
                        self.sum.add_counts(day);
                        (day.failed, &day.latency)
                    }
                };
                if window.is_none() {
                    self.sum.add_latency(latency);
                }
                self.daily.add(floor_to(at, DAY_MS), failed);
            });
        if let Some(window) = window {
            self.sum.add_latency(&window.latency);
            state.buckets.for_each_hour_in(window.upto_ms, end, |hour| {
                self.sum.add_latency(&hour.latency)
            });
        }
    }

    pub(super) fn into_part(self) -> TotalsPart {
        let total = self.sum.finish();
        TotalsPart {
            name: self.name,
            succeeded: total.succeeded,
            failed: total.failed,
            last_failure_ms: total.last_failure_ms(),
            latency: total.latency,
            daily: self.daily,
            retried: self.retries.retried,
            recovered: self.retries.recovered,
        }
    }
}

/// An integration's totals over some partitions, in a form that merges and travels.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub(crate) struct TotalsPart {
    pub(super) name: Name,
    pub(super) succeeded: u64,
    pub(super) failed: u64,
    pub(super) last_failure_ms: Option<i64>,
    pub(super) latency: LatencySketch,
    pub(super) daily: Daily,
    pub(super) retried: u64,
    pub(super) recovered: u64,
}

impl TotalsPart {
    pub(super) fn merge(&mut self, other: TotalsPart) {
        self.name.merge(other.name);
        self.succeeded += other.succeeded;
        self.failed += other.failed;
        self.last_failure_ms = self.last_failure_ms.max(other.last_failure_ms);
        self.latency.merge(&other.latency);
        self.retried += other.retried;
        self.recovered += other.recovered;
        self.daily.merge(other.daily);
    }
}

/// An integration's name and when it was seen. The newest wins, whichever partition or replica
/// saw it; at the same instant the greater name, so the order of merging never matters.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub(super) struct Name {
    pub(super) text: String,
    pub(super) at_ms: i64,
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

/// One integration, summed over the partitions that hold it: its buckets by the instant each
/// is placed at.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub(crate) struct Merged {
    pub(super) name: Name,
    pub(super) buckets: BTreeMap<i64, IntegrationDay>,
}

impl Merged {
    pub(super) fn merge(&mut self, other: Merged) {
        self.name.merge(other.name);
        for (at, counts) in other.buckets {
            self.buckets.entry(at).or_default().add(&counts);
        }
    }
}

/// An integration's type and id.
pub(crate) type Id = (IntegrationType, String);

/// Failures per (type, integration, code) in `range`, summed over the tenant's groups.
fn summed_codes(
    partition: &PartitionState,
    tenant: &TenantState,
    range: TimeRange,
) -> CodesByIntegration {
    let mut by_symbol = CodesByIntegration::default();
    for (key, group) in &tenant.groups {
        let total = group.total_in(range.start_ms, range.end_ms, partition.rolled_until);
        if total > 0 {
            let slot = (key.integration_type, key.integration_id, key.status_code);
            *by_symbol.entry(slot).or_default() += total;
        }
    }
    by_symbol
}

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
    /// have events in `range`, with their buckets in `range` read as `how`.
    pub(super) fn local_integration(
        &self,
        tenant_id: &str,
        range: TimeRange,
        how: SeriesRead,
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
                let mut buckets: Vec<(i64, IntegrationDay)> = Vec::new();
                let (start, end) = (range.start_ms, range.end_ms);
                state
                    .buckets
                    .each(start, end, how, partition.rolled_until, |at, bucket| {
                        let counts = match bucket {
                            Bucket::Hour(hour) => {
                                let mut day = IntegrationDay::default();
                                hour.roll_into(&mut day);
                                day
                            }
                            Bucket::Day(day) => day.clone(),
                        };
                        buckets.push((at, counts));
                    });
                if buckets.is_empty() {
                    continue;
                }
                let slot = merged
                    .entry((key.integration_type, id.to_owned()))
                    .or_default();
                for (at, counts) in buckets {
                    slot.buckets.entry(at).or_default().add(&counts);
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
            let rolled = partition.rolled_until;
            for (key, state) in &tenant.integrations {
                if !wanted(key.integration_type) {
                    continue;
                }
                if !state.buckets.any_in(range.start_ms, range.end_ms, rolled) {
                    continue;
                }
                let id = partition.interner.resolve(key.integration_id).to_owned();
                let slot = totals.entry((key.integration_type, id)).or_default();
                slot.add(state, range, rolled);
                slot.name
                    .offer(partition.interner.resolve(state.name), state.name_at_ms);
                if let Some(retries) = partition.retries_of(tenant_id, key) {
                    let (start, end) = (range.start_ms, range.end_ms);
                    slot.retries.add(&retries.sum_in(start, end, rolled));
                }
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
            // Over the default range, the ranking keeps the sums of the groups' windows, which
            // are what `GroupState::total_in` answers there.
            let kept = tenant
                .ranking
                .as_ref()
                .filter(|r| r.answers(range.start_ms, range.end_ms));
            let by_symbol = match kept {
                Some(ranking) => Cow::Borrowed(ranking.codes()),
                None => Cow::Owned(summed_codes(partition, tenant, range)),
            };
            // By symbol first, so each integration's id is copied once, not once per code.
            let mut per_integration: HashMap<(IntegrationType, Sym), Vec<(u16, u64)>> =
                HashMap::new();
            for (&(kind, sym, code), &total) in by_symbol.iter() {
                per_integration
                    .entry((kind, sym))
                    .or_default()
                    .push((code, total));
            }
            for ((kind, sym), counts) in per_integration {
                let id = partition.interner.resolve(sym).to_owned();
                let slot = codes.entry((kind, id)).or_default();
                for (code, total) in counts {
                    *slot.entry(code).or_default() += total;
                }
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
        let fingerprint = paging::fingerprint(&(
            &request.tenant_id,
            request.types,
            request.classes,
            request.order,
        ));
        let after: Option<Position> = match &request.page_token {
            Some(token) => Some(paging::decode_token(token, fingerprint)?),
            None => None,
        };
        let tier = HourTier::Detail;
        let now = self.now_ms();
        let range = self.effective(request.range, DEFAULT_RANGE_MS, now, HOUR_MS, tier)?;
        let types = request.types;
        let local = self.local_integration_totals(&request.tenant_id, range, |t| types.includes(t));
        let totals = self.gathered(Part::IntegrationTotals { range, types }, local)?;
        let codes = self.codes_by_integration(&request.tenant_id, range)?;
        let (order, classes) = (request.order, request.classes);
        let rows: Vec<PendingRow> = totals
            .into_iter()
            .filter_map(|(id, totals)| {
                let pending = PendingRow::new(&id, totals, codes.get(&id), range);
                let pending = pending.of_classes(classes, codes.get(&id))?;
                Some(match order {
                    IntegrationOrder::P99Desc => pending.with_percentiles(),
                    _ => pending,
                })
            })
            .collect();
        let total_integrations = rows.len() as u64;
        let (rows, next) =
            paging::take_page(rows, after.as_ref(), page_size, |r| sort_key(&r.row, order));
        let rows = rows.into_iter().map(PendingRow::finish).collect();
        let next_page_token = next.map(|position| paging::encode_token(fingerprint, &position));
        Ok(IntegrationPage {
            integrations: rows,
            next_page_token,
            total_integrations,
            effective_range: range,
            resolution: self.resolution(range, tier, false),
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
        let tier = HourTier::Detail;
        let how = self.series_read(granularity, tz, tier);
        let boundaries = match granularity {
            Granularity::Hour => hour_boundaries(self.hourly_range(range, tier)?)?,
            Granularity::Day => {
                let now = self.now_ms();
                day_boundaries(
                    tz,
                    self.effective(range, DEFAULT_RANGE_MS, now, HOUR_MS, tier)?,
                )?
            }
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
        let local = self.local_integration(tenant_id, range, how, integration_type, integration_id);
        let merged = self.gathered(
            Part::Integration {
                range,
                how,
                integration_type,
                integration_id: integration_id.to_owned(),
            },
            local,
        )?;
        let failures =
            self.integration_failures(tenant_id, range, integration_type, integration_id)?;
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
        let codes = failures.codes_of(id.0);
        let summary = row(&id, summed(&integration), Some(&codes), range);
        let series = boundaries
            .windows(2)
            .map(|w| {
                let mut sum = IntegrationSum::default();
                for (_, counts) in integration.buckets.range(w[0]..w[1]) {
                    sum.add(counts);
                }
                let total = sum.finish();
                IntegrationPoint {
                    bucket_start_ms: w[0],
                    succeeded: total.succeeded,
                    failed: total.failed,
                    latency: latency_percentiles(&total.latency),
                    latency_count: total.latency.count(),
                }
            })
            .collect();
        let mut error_codes: Vec<ErrorCount> = codes
            .iter()
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
            top_failures: top_groups(failures.top, id.0),
            effective_range: range,
            resolution: self.resolution(range, tier, false),
            utc_days_until_ms: utc_days_until(how, range),
        })
    }
}
