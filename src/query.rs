//! Domain queries over the store. Knows nothing of protobuf; `api` converts.
//!
//! Ranges are half-open `[start, end)` in epoch milliseconds and are rounded outward to the
//! resolution that serves them: minute buckets while the whole range lies inside the minute
//! window, hour buckets otherwise. The rounded, retention-clamped range is returned as the
//! effective range.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use chrono::{NaiveDate, TimeZone};
use chrono_tz::Tz;
use thiserror::Error;

use crate::catalog::{self, CatalogEntry};
use crate::clock::SharedClock;
use crate::event::IntegrationType;
use crate::store::{
    ceil_to, floor_to, format_failure_id, parse_failure_id, sample_order, GroupKey, GroupState,
    IngestTotals, PartitionState, SnapshotStatus, Store, TenantState, DAY_MS, HOUR_MS, MINUTE_MS,
};

pub const DEFAULT_RANGE_MS: i64 = 30 * DAY_MS;
pub const DEFAULT_PERIOD_MS: i64 = DAY_MS;
pub const DEFAULT_PAGE_SIZE: usize = 50;
pub const MAX_PAGE_SIZE: usize = 1000;
/// Largest number of points a trend series may have; more is refused as too large.
pub const MAX_TREND_POINTS: usize = 10_000;

#[derive(Debug, Error, PartialEq)]
pub enum QueryError {
    #[error("{0}")]
    InvalidArgument(String),
    #[error("{0}")]
    NotFound(String),
    #[error("{0}")]
    TooLarge(String),
}

fn invalid(message: impl Into<String>) -> QueryError {
    QueryError::InvalidArgument(message.into())
}

/// Half-open `[start_ms, end_ms)`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TimeRange {
    pub start_ms: i64,
    pub end_ms: i64,
}

/// Which integration types to include. Empty means all five.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TypeFilter([bool; 5]);

impl TypeFilter {
    pub fn all() -> Self {
        TypeFilter([true; 5])
    }

    pub fn from_types(types: &[IntegrationType]) -> Self {
        if types.is_empty() {
            return Self::all();
        }
        let mut wanted = [false; 5];
        for t in types {
            wanted[t.index()] = true;
        }
        TypeFilter(wanted)
    }

    pub fn includes(&self, t: IntegrationType) -> bool {
        self.0[t.index()]
    }

    pub fn types(&self) -> impl Iterator<Item = IntegrationType> + '_ {
        IntegrationType::ALL
            .into_iter()
            .filter(|t| self.includes(*t))
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TypeTotals {
    pub integration_type: IntegrationType,
    pub failed: u64,
    pub succeeded: u64,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Overview {
    pub types: Vec<TypeTotals>,
    pub effective_range: TimeRange,
}

#[derive(Debug, Clone, PartialEq)]
pub struct TypeChange {
    pub integration_type: IntegrationType,
    pub failed_current: u64,
    pub failed_previous: u64,
    pub failed_change_percent: Option<f64>,
    pub succeeded_current: u64,
    pub succeeded_previous: u64,
    pub succeeded_change_percent: Option<f64>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct PercentageChange {
    pub types: Vec<TypeChange>,
    pub current_range: TimeRange,
    pub previous_range: TimeRange,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ErrorCount {
    pub status_code: u16,
    pub name: &'static str,
    pub failed: u64,
}

#[derive(Debug, Clone, PartialEq)]
pub struct ErrorBreakdown {
    pub errors: Vec<ErrorCount>,
    pub effective_range: TimeRange,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Granularity {
    Hour,
    Day,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TrendSeries {
    pub integration_type: IntegrationType,
    /// (bucket start in epoch ms, failures); empty buckets are present with 0.
    pub points: Vec<(i64, u64)>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Trends {
    pub series: Vec<TrendSeries>,
    pub effective_range: TimeRange,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum FailureOrder {
    #[default]
    TotalErrorsDesc,
    LastSeenDesc,
}

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct FailureFilter {
    pub integration_id: Option<String>,
    pub status_code: Option<u16>,
    pub flow_id: Option<String>,
    pub service_id: Option<String>,
}

#[derive(Debug, Clone)]
pub struct ListFailuresRequest {
    pub tenant_id: String,
    pub range: Option<TimeRange>,
    pub types: TypeFilter,
    pub filter: FailureFilter,
    pub page_size: usize,
    pub page_token: Option<String>,
    pub order: FailureOrder,
}

impl ListFailuresRequest {
    /// The first page of a tenant's whole table in the default order and range.
    pub fn first_page(tenant_id: &str, page_size: usize) -> Self {
        ListFailuresRequest {
            tenant_id: tenant_id.to_owned(),
            range: None,
            types: TypeFilter::all(),
            filter: FailureFilter::default(),
            page_size,
            page_token: None,
            order: FailureOrder::TotalErrorsDesc,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SampleRow {
    pub event_id: String,
    pub occurred_at_ms: i64,
    pub error_message: String,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FailureRow {
    pub failure_id: String,
    pub integration_type: IntegrationType,
    pub integration_id: String,
    pub integration_name: String,
    pub failure_description: String,
    pub status_code: u16,
    pub service_id: String,
    pub service_name: String,
    pub flow_id: String,
    pub flow_name: String,
    pub total_errors: u64,
    pub first_seen_ms: i64,
    pub last_seen_ms: i64,
}

#[derive(Debug, Clone, PartialEq)]
pub struct FailurePage {
    pub failures: Vec<FailureRow>,
    pub next_page_token: Option<String>,
    pub total_groups: u64,
    pub effective_range: TimeRange,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Guidance {
    pub applicable: bool,
    pub resolution: String,
}

#[derive(Debug, Clone, PartialEq)]
pub struct FailureDetails {
    pub failure: FailureRow,
    pub guidance: Guidance,
    pub hourly_trend: Vec<(i64, u64)>,
    pub recent_samples: Vec<SampleRow>,
    pub effective_range: TimeRange,
}

#[derive(Debug, Clone, PartialEq)]
pub struct PartitionStatus {
    pub topic: String,
    pub partition: i32,
    /// -1 when nothing has been applied yet.
    pub next_offset: i64,
    /// -1 when not yet known.
    pub high_watermark: i64,
    pub lag: i64,
    pub snapshot: Option<SnapshotStatus>,
    /// Milliseconds since the snapshot was written; -1 without one.
    pub snapshot_age_ms: i64,
}

#[derive(Debug, Clone, PartialEq)]
pub struct IngestStatus {
    pub partitions: Vec<PartitionStatus>,
    pub totals: IngestTotals,
}

/// A group merged across partitions, with what details need beyond the table row.
struct MergedGroup {
    row: FailureRow,
    names_at_ms: i64,
    hours: BTreeMap<i64, u64>,
    samples: Vec<SampleRow>,
}

/// Answers the dashboard's questions from the store. Cheap to clone.
#[derive(Clone)]
pub struct QueryEngine {
    store: Arc<Store>,
    clock: SharedClock,
}

impl QueryEngine {
    pub fn new(store: Arc<Store>, clock: SharedClock) -> Self {
        QueryEngine { store, clock }
    }

    pub fn store(&self) -> &Arc<Store> {
        &self.store
    }

    fn now_ms(&self) -> i64 {
        self.clock.now_ms()
    }

    /// Rounds a requested (or default) range outward to `width_ms` and clamps it to retention.
    fn effective(
        &self,
        requested: Option<TimeRange>,
        default_ms: i64,
        now_ms: i64,
        width_ms: i64,
    ) -> Result<TimeRange, QueryError> {
        let range = requested.unwrap_or(TimeRange {
            start_ms: now_ms - default_ms,
            end_ms: now_ms,
        });
        if range.start_ms >= range.end_ms {
            return Err(invalid("range.start must be before range.end"));
        }
        let end_ms = ceil_to(range.end_ms, width_ms);
        let start_ms = floor_to(range.start_ms, width_ms)
            .max(self.store.limits().retention_floor(now_ms))
            .min(end_ms);
        Ok(TimeRange { start_ms, end_ms })
    }

    fn serve_by_minute(&self, start_ms: i64, now_ms: i64) -> bool {
        floor_to(start_ms, MINUTE_MS) >= self.store.limits().minute_floor(now_ms)
    }

    /// Calls `visit` with the tenant's state in every partition that has it.
    fn for_tenant(&self, tenant_id: &str, mut visit: impl FnMut(&PartitionState, &TenantState)) {
        for (_, partition) in self.store.partitions() {
            let guard = partition.read();
            if let Some(tenant) = guard.tenant(tenant_id) {
                visit(&guard, tenant);
            }
        }
    }

    pub fn overview(
        &self,
        tenant_id: &str,
        range: Option<TimeRange>,
        types: TypeFilter,
    ) -> Result<Overview, QueryError> {
        let now = self.now_ms();
        let start = range.map_or(now - DEFAULT_RANGE_MS, |r| r.start_ms);
        let by_minute = self.serve_by_minute(start, now);
        let width = if by_minute { MINUTE_MS } else { HOUR_MS };
        let effective_range = self.effective(range, DEFAULT_RANGE_MS, now, width)?;
        let mut counts = crate::store::TypeCounts::default();
        self.for_tenant(tenant_id, |_, tenant| {
            counts.add(&tenant.counts_in(
                effective_range.start_ms,
                effective_range.end_ms,
                by_minute,
            ));
        });
        let types = types
            .types()
            .map(|t| TypeTotals {
                integration_type: t,
                failed: counts.failed[t.index()],
                succeeded: counts.succeeded[t.index()],
            })
            .collect();
        Ok(Overview {
            types,
            effective_range,
        })
    }

    pub fn percentage_change(
        &self,
        tenant_id: &str,
        period_ms: Option<i64>,
        end_ms: Option<i64>,
        types: TypeFilter,
    ) -> Result<PercentageChange, QueryError> {
        let now = self.now_ms();
        let period = period_ms.unwrap_or(DEFAULT_PERIOD_MS);
        let longest = self.store.limits().retention_ms / 2;
        if period < MINUTE_MS {
            return Err(invalid("period must be at least one minute"));
        }
        if period > longest {
            return Err(invalid(format!(
                "period may be at most {} hours, half the retention, so the previous period is complete",
                longest / HOUR_MS
            )));
        }
        let end = end_ms.unwrap_or(now);
        let by_minute = self.serve_by_minute(end - 2 * period, now);
        let width = if by_minute { MINUTE_MS } else { HOUR_MS };
        let end = ceil_to(end, width);
        let period = ceil_to(period, width);
        let current_range = TimeRange {
            start_ms: end - period,
            end_ms: end,
        };
        let previous_range = TimeRange {
            start_ms: end - 2 * period,
            end_ms: end - period,
        };
        let mut current = crate::store::TypeCounts::default();
        let mut previous = crate::store::TypeCounts::default();
        self.for_tenant(tenant_id, |_, tenant| {
            current.add(&tenant.counts_in(current_range.start_ms, current_range.end_ms, by_minute));
            previous.add(&tenant.counts_in(
                previous_range.start_ms,
                previous_range.end_ms,
                by_minute,
            ));
        });
        let types = types
            .types()
            .map(|t| {
                let i = t.index();
                TypeChange {
                    integration_type: t,
                    failed_current: current.failed[i],
                    failed_previous: previous.failed[i],
                    failed_change_percent: change_percent(current.failed[i], previous.failed[i]),
                    succeeded_current: current.succeeded[i],
                    succeeded_previous: previous.succeeded[i],
                    succeeded_change_percent: change_percent(
                        current.succeeded[i],
                        previous.succeeded[i],
                    ),
                }
            })
            .collect();
        Ok(PercentageChange {
            types,
            current_range,
            previous_range,
        })
    }

    pub fn error_breakdown(
        &self,
        tenant_id: &str,
        range: Option<TimeRange>,
        types: TypeFilter,
    ) -> Result<ErrorBreakdown, QueryError> {
        let now = self.now_ms();
        let effective_range = self.effective(range, DEFAULT_RANGE_MS, now, HOUR_MS)?;
        let mut by_code: HashMap<u16, u64> = HashMap::new();
        self.for_tenant(tenant_id, |_, tenant| {
            for (_, codes) in tenant
                .codes
                .range(effective_range.start_ms..effective_range.end_ms)
            {
                for ((t, code), count) in codes {
                    if types.includes(*t) {
                        *by_code.entry(*code).or_insert(0) += count;
                    }
                }
            }
        });
        let mut errors: Vec<ErrorCount> = by_code
            .into_iter()
            .map(|(status_code, failed)| ErrorCount {
                status_code,
                name: catalog::name_of(status_code),
                failed,
            })
            .collect();
        errors.sort_by(|a, b| {
            b.failed
                .cmp(&a.failed)
                .then(a.status_code.cmp(&b.status_code))
        });
        Ok(ErrorBreakdown {
            errors,
            effective_range,
        })
    }

    pub fn trends(
        &self,
        tenant_id: &str,
        range: Option<TimeRange>,
        types: TypeFilter,
        granularity: Granularity,
        time_zone: &str,
    ) -> Result<Trends, QueryError> {
        let tz = parse_time_zone(time_zone)?;
        let now = self.now_ms();
        let hours = self.effective(range, DEFAULT_RANGE_MS, now, HOUR_MS)?;
        let boundaries = match granularity {
            Granularity::Hour => hour_boundaries(hours)?,
            Granularity::Day => day_boundaries(tz, hours)?,
        };
        let (Some(&first), Some(&last)) = (boundaries.first(), boundaries.last()) else {
            return Err(invalid("range is empty"));
        };
        let mut per_hour: BTreeMap<i64, [u64; 5]> = BTreeMap::new();
        self.for_tenant(tenant_id, |_, tenant| {
            for (hour, counts) in tenant.hours.range(first..last) {
                let slot = per_hour.entry(*hour).or_default();
                for (i, failed) in counts.failed.iter().enumerate() {
                    slot[i] += failed;
                }
            }
        });
        let series = types
            .types()
            .map(|t| TrendSeries {
                integration_type: t,
                points: boundaries
                    .windows(2)
                    .map(|w| {
                        let failed = per_hour.range(w[0]..w[1]).map(|(_, c)| c[t.index()]).sum();
                        (w[0], failed)
                    })
                    .collect(),
            })
            .collect();
        Ok(Trends {
            series,
            effective_range: TimeRange {
                start_ms: first,
                end_ms: last,
            },
        })
    }

    fn merged_groups(
        &self,
        tenant_id: &str,
        range: TimeRange,
        mut wanted: impl FnMut(&PartitionState, &GroupKey, &GroupState) -> bool,
    ) -> HashMap<u128, MergedGroup> {
        let mut merged: HashMap<u128, MergedGroup> = HashMap::new();
        self.for_tenant(tenant_id, |partition, tenant| {
            for (key, group) in &tenant.groups {
                if !wanted(partition, key, group) {
                    continue;
                }
                let part = merged_part(partition, key, group, range);
                match merged.get_mut(&group.failure_id) {
                    Some(existing) => merge_into(existing, part),
                    None => {
                        merged.insert(group.failure_id, part);
                    }
                }
            }
        });
        merged
    }

    /// Two passes: rank every matching group by numbers alone (no strings, no allocation per
    /// group), then build rows only for the page being served.
    pub fn list_failures(&self, request: &ListFailuresRequest) -> Result<FailurePage, QueryError> {
        let page_size = match request.page_size {
            0 => DEFAULT_PAGE_SIZE,
            n if n > MAX_PAGE_SIZE => {
                return Err(invalid(format!("page_size may be at most {MAX_PAGE_SIZE}")))
            }
            n => n,
        };
        let fingerprint = query_fingerprint(request);
        let after = match &request.page_token {
            Some(token) => Some(PageToken::decode(token, fingerprint)?),
            None => None,
        };
        let now = self.now_ms();
        let effective_range = self.effective(request.range, DEFAULT_RANGE_MS, now, HOUR_MS)?;
        let partitions = self.store.partitions();
        let mut ranked = rank_groups(&partitions, request, effective_range);
        let total_groups = ranked.len() as u64;
        let order = request.order;
        ranked.sort_unstable_by_key(|c| c.sort_key(order));
        if let Some(after) = after {
            let cut = ranked.partition_point(|c| c.sort_key(order) <= after.position);
            ranked.drain(..cut);
        }
        let next_page_token = (ranked.len() > page_size).then(|| {
            PageToken {
                fingerprint,
                position: ranked[page_size - 1].sort_key(order),
            }
            .encode()
        });
        ranked.truncate(page_size);
        let failures = ranked
            .iter()
            .filter_map(|c| c.row(&request.tenant_id, &partitions))
            .collect();
        Ok(FailurePage {
            failures,
            next_page_token,
            total_groups,
            effective_range,
        })
    }

    pub fn failure_details(
        &self,
        tenant_id: &str,
        failure_id: &str,
        range: Option<TimeRange>,
    ) -> Result<FailureDetails, QueryError> {
        let id = parse_failure_id(failure_id)
            .ok_or_else(|| invalid("failure_id must be 32 hexadecimal characters"))?;
        let now = self.now_ms();
        let effective_range = self.effective(range, DEFAULT_RANGE_MS, now, HOUR_MS)?;
        let mut merged =
            self.merged_groups(tenant_id, effective_range, |_, _, g| g.failure_id == id);
        let group = merged.remove(&id).ok_or_else(|| {
            QueryError::NotFound(format!("no failure {failure_id} for tenant {tenant_id}"))
        })?;
        let entry = catalog::lookup(group.row.status_code);
        let hourly_trend = (effective_range.start_ms..effective_range.end_ms)
            .step_by(HOUR_MS as usize)
            .map(|hour| (hour, group.hours.get(&hour).copied().unwrap_or(0)))
            .collect();
        Ok(FailureDetails {
            guidance: guidance_for(&entry, group.row.integration_type),
            failure: group.row,
            hourly_trend,
            recent_samples: group.samples,
            effective_range,
        })
    }

    pub fn common_errors(
        &self,
        integration_type: Option<IntegrationType>,
        status_code: Option<u16>,
    ) -> Vec<(CatalogEntry, Vec<(IntegrationType, Guidance)>)> {
        let entries: Vec<CatalogEntry> = match status_code {
            Some(code) => vec![catalog::lookup(code)],
            None => catalog::CATALOG.to_vec(),
        };
        let types: Vec<IntegrationType> = match integration_type {
            Some(t) => vec![t],
            None => IntegrationType::ALL.to_vec(),
        };
        entries
            .into_iter()
            .map(|entry| {
                let guidance = types
                    .iter()
                    .map(|t| (*t, guidance_for(&entry, *t)))
                    .collect();
                (entry, guidance)
            })
            .collect()
    }

    pub fn ingest_status(&self) -> IngestStatus {
        let now = self.now_ms();
        let mut totals = IngestTotals::default();
        let mut partitions = Vec::new();
        for (key, partition) in self.store.partitions() {
            let (next, part_totals) = {
                let guard = partition.read();
                (guard.next_offset, guard.totals)
            };
            totals.add(&part_totals);
            // Statistics arrive once a second; a consumed offset proves the mark is past it.
            let high_watermark = match (self.store.high_watermark(&key), next) {
                (Some(hw), Some(next)) => hw.max(next),
                (Some(hw), None) => hw,
                (None, Some(next)) => next,
                (None, None) => -1,
            };
            let lag = match (next, high_watermark) {
                (_, hw) if hw < 0 => 0,
                (Some(next), hw) => (hw - next).max(0),
                (None, hw) => hw,
            };
            partitions.push(PartitionStatus {
                topic: key.topic.to_string(),
                partition: key.partition,
                next_offset: next.unwrap_or(-1),
                high_watermark,
                lag,
                snapshot: self.store.snapshot_status(&key),
                snapshot_age_ms: self
                    .store
                    .snapshot_status(&key)
                    .map_or(-1, |s| (now - s.written_at_ms).max(0)),
            });
        }
        IngestStatus { partitions, totals }
    }
}

/// `None` when there is nothing to compare against: never infinity, NaN or a fake 0.
pub fn change_percent(current: u64, previous: u64) -> Option<f64> {
    if previous == 0 {
        return None;
    }
    Some((current as f64 - previous as f64) / previous as f64 * 100.0)
}

fn guidance_for(entry: &CatalogEntry, integration_type: IntegrationType) -> Guidance {
    match entry.guidance_for(integration_type) {
        Some(text) => Guidance {
            applicable: true,
            resolution: text.to_owned(),
        },
        None => Guidance {
            applicable: false,
            resolution: format!(
                "Not applicable: {} is not expected for {}.",
                entry.status_code,
                integration_type.label()
            ),
        },
    }
}

pub fn parse_time_zone(name: &str) -> Result<Tz, QueryError> {
    if name.is_empty() {
        return Ok(Tz::UTC);
    }
    name.parse::<Tz>()
        .map_err(|_| invalid(format!("time_zone {name:?} is not an IANA time zone name")))
}

fn hour_boundaries(range: TimeRange) -> Result<Vec<i64>, QueryError> {
    let count = ((range.end_ms - range.start_ms) / HOUR_MS) as usize;
    if count > MAX_TREND_POINTS {
        return Err(QueryError::TooLarge(format!(
            "{count} hourly points requested; at most {MAX_TREND_POINTS} per series"
        )));
    }
    Ok((0..=count as i64)
        .map(|i| range.start_ms + i * HOUR_MS)
        .collect())
}

/// The first instant of a local calendar day. Midnight can fall in a DST gap (some zones switch
/// at 00:00), in which case the day starts at the first local time that exists.
pub fn local_day_start(tz: Tz, date: NaiveDate) -> Option<i64> {
    let midnight = date.and_hms_opt(0, 0, 0)?;
    (0..=24 * 4).find_map(|quarter| {
        let local = midnight + chrono::Duration::minutes(15 * quarter);
        tz.from_local_datetime(&local)
            .earliest()
            .map(|t| t.timestamp_millis())
    })
}

/// Local-midnight boundaries covering `range`. Buckets are summed from hour buckets, so a
/// boundary that is not on a UTC hour (zones such as Asia/Kolkata, +05:30) is snapped down to
/// the start of its UTC hour. Whole-hour zones, and their 23- and 25-hour DST days, are exact.
pub fn day_boundaries(tz: Tz, range: TimeRange) -> Result<Vec<i64>, QueryError> {
    let day_of = |ms: i64| -> Result<NaiveDate, QueryError> {
        tz.timestamp_millis_opt(ms)
            .single()
            .map(|t| t.date_naive())
            .ok_or_else(|| invalid("range is outside the supported calendar"))
    };
    let mut date = day_of(range.start_ms)?;
    let mut boundaries = Vec::new();
    loop {
        let start = local_day_start(tz, date)
            .map(|ms| floor_to(ms, HOUR_MS))
            .ok_or_else(|| invalid("range is outside the supported calendar"))?;
        boundaries.push(start);
        if start >= range.end_ms {
            break;
        }
        if boundaries.len() > MAX_TREND_POINTS {
            return Err(QueryError::TooLarge(format!(
                "more than {MAX_TREND_POINTS} daily points requested"
            )));
        }
        date = date
            .succ_opt()
            .ok_or_else(|| invalid("range is outside the supported calendar"))?;
    }
    Ok(boundaries)
}

/// A table row from a group's strings and the given (total, first seen, last seen).
fn failure_row(
    partition: &PartitionState,
    key: &GroupKey,
    group: &GroupState,
    numbers: (u64, i64, i64),
) -> FailureRow {
    let text = |sym| partition.interner.resolve(sym).to_owned();
    let (total_errors, first_seen_ms, last_seen_ms) = numbers;
    FailureRow {
        failure_id: format_failure_id(group.failure_id),
        integration_type: key.integration_type,
        integration_id: text(key.integration_id),
        integration_name: text(group.integration_name),
        failure_description: text(key.description),
        status_code: key.status_code,
        service_id: text(key.service_id),
        service_name: text(group.service_name),
        flow_id: text(key.flow_id),
        flow_name: text(group.flow_name),
        total_errors,
        first_seen_ms,
        last_seen_ms,
    }
}

fn merged_part(
    partition: &PartitionState,
    key: &GroupKey,
    group: &GroupState,
    range: TimeRange,
) -> MergedGroup {
    let text = |sym| partition.interner.resolve(sym).to_owned();
    let hours: BTreeMap<i64, u64> = group
        .hours
        .range(range.start_ms..range.end_ms)
        .map(|(h, s)| (*h, s.count))
        .collect();
    MergedGroup {
        row: failure_row(
            partition,
            key,
            group,
            (
                hours.values().sum(),
                group.first_seen_ms().unwrap_or(0),
                group.last_seen_ms().unwrap_or(0),
            ),
        ),
        names_at_ms: group.names_at_ms,
        hours,
        samples: group
            .samples
            .iter()
            .map(|s| SampleRow {
                event_id: s.event_id.to_string(),
                occurred_at_ms: s.occurred_at_ms,
                error_message: text(s.message),
            })
            .collect(),
    }
}

fn merge_into(existing: &mut MergedGroup, part: MergedGroup) {
    let row = &mut existing.row;
    row.total_errors += part.row.total_errors;
    row.first_seen_ms = row.first_seen_ms.min(part.row.first_seen_ms);
    row.last_seen_ms = row.last_seen_ms.max(part.row.last_seen_ms);
    if part.names_at_ms > existing.names_at_ms {
        existing.names_at_ms = part.names_at_ms;
        row.integration_name = part.row.integration_name;
        row.service_name = part.row.service_name;
        row.flow_name = part.row.flow_name;
    }
    for (hour, count) in part.hours {
        *existing.hours.entry(hour).or_insert(0) += count;
    }
    existing.samples.extend(part.samples);
    existing
        .samples
        .sort_by(|a, b| sample_order(a.occurred_at_ms, &a.event_id, b.occurred_at_ms, &b.event_id));
    existing.samples.truncate(crate::store::SAMPLES_PER_GROUP);
}

/// A matching group reduced to the numbers that rank it, merged across partitions.
struct Ranked {
    failure_id: u128,
    total: u64,
    first_ms: i64,
    last_ms: i64,
    /// Where to read the strings: the partition holding the newest names.
    names_at_ms: i64,
    source: (usize, GroupKey),
}

impl Ranked {
    /// Position in the requested order; smaller sorts first. Ties break on failure id.
    fn sort_key(&self, order: FailureOrder) -> (i64, u128) {
        let primary = match order {
            FailureOrder::TotalErrorsDesc => -(self.total as i64),
            FailureOrder::LastSeenDesc => -self.last_ms,
        };
        (primary, self.failure_id)
    }

    fn row(
        &self,
        tenant_id: &str,
        partitions: &[(crate::store::PartitionKey, crate::store::SharedPartition)],
    ) -> Option<FailureRow> {
        let (index, key) = self.source;
        let guard = partitions.get(index)?.1.read();
        let group = guard.tenant(tenant_id)?.groups.get(&key)?;
        Some(failure_row(
            &guard,
            &key,
            group,
            (self.total, self.first_ms, self.last_ms),
        ))
    }
}

/// A text filter resolved against one partition's interner: `None` matches anything,
/// `Some(None)` matches nothing (the string never occurred there).
fn resolve_filter(partition: &PartitionState, wanted: &Option<String>) -> Option<Option<u32>> {
    wanted.as_ref().map(|w| partition.interner.get(w))
}

fn sym_matches(filter: Option<Option<u32>>, actual: u32) -> bool {
    match filter {
        None => true,
        Some(wanted) => wanted == Some(actual),
    }
}

fn rank_groups(
    partitions: &[(crate::store::PartitionKey, crate::store::SharedPartition)],
    request: &ListFailuresRequest,
    range: TimeRange,
) -> Vec<Ranked> {
    let mut merged: rustc_hash::FxHashMap<u128, Ranked> = rustc_hash::FxHashMap::default();
    for (index, (_, partition)) in partitions.iter().enumerate() {
        let guard = partition.read();
        let Some(tenant) = guard.tenant(&request.tenant_id) else {
            continue;
        };
        let integration = resolve_filter(&guard, &request.filter.integration_id);
        let flow = resolve_filter(&guard, &request.filter.flow_id);
        let service = resolve_filter(&guard, &request.filter.service_id);
        for (key, group) in &tenant.groups {
            let wanted = request.types.includes(key.integration_type)
                && request
                    .filter
                    .status_code
                    .is_none_or(|c| c == key.status_code)
                && sym_matches(integration, key.integration_id)
                && sym_matches(flow, key.flow_id)
                && sym_matches(service, key.service_id);
            if !wanted {
                continue;
            }
            let part = Ranked {
                failure_id: group.failure_id,
                total: group.total_in(range.start_ms, range.end_ms),
                first_ms: group.first_seen_ms().unwrap_or(0),
                last_ms: group.last_seen_ms().unwrap_or(0),
                names_at_ms: group.names_at_ms,
                source: (index, *key),
            };
            match merged.get_mut(&group.failure_id) {
                None => {
                    merged.insert(group.failure_id, part);
                }
                Some(existing) => {
                    existing.total += part.total;
                    existing.first_ms = existing.first_ms.min(part.first_ms);
                    existing.last_ms = existing.last_ms.max(part.last_ms);
                    if part.names_at_ms > existing.names_at_ms {
                        existing.names_at_ms = part.names_at_ms;
                        existing.source = part.source;
                    }
                }
            }
        }
    }
    merged.into_values().filter(|r| r.total > 0).collect()
}

fn query_fingerprint(request: &ListFailuresRequest) -> u64 {
    let text = format!(
        "{}|{:?}|{:?}|{:?}",
        request.tenant_id, request.types, request.filter, request.order
    );
    xxhash_rust::xxh3::xxh3_64(text.as_bytes())
}

/// Keyset page token: the sort position of the last row served, bound to the query it came from.
struct PageToken {
    fingerprint: u64,
    position: (i64, u128),
}

impl PageToken {
    fn encode(&self) -> String {
        let text = format!(
            "v1.{:016x}.{}.{}",
            self.fingerprint,
            self.position.0,
            format_failure_id(self.position.1)
        );
        URL_SAFE_NO_PAD.encode(text)
    }

    fn decode(token: &str, fingerprint: u64) -> Result<PageToken, QueryError> {
        let bad = || invalid("page_token is not a token this service issued");
        let bytes = URL_SAFE_NO_PAD.decode(token).map_err(|_| bad())?;
        let text = String::from_utf8(bytes).map_err(|_| bad())?;
        let mut parts = text.splitn(4, '.');
        if parts.next() != Some("v1") {
            return Err(bad());
        }
        let token_fingerprint = parts
            .next()
            .and_then(|p| u64::from_str_radix(p, 16).ok())
            .ok_or_else(bad)?;
        let primary = parts
            .next()
            .and_then(|p| p.parse::<i64>().ok())
            .ok_or_else(bad)?;
        let failure_id = parts.next().and_then(parse_failure_id).ok_or_else(bad)?;
        if token_fingerprint != fingerprint {
            return Err(invalid(
                "page_token belongs to a different query (tenant, filters or order changed)",
            ));
        }
        Ok(PageToken {
            fingerprint,
            position: (primary, failure_id),
        })
    }
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    fn utc(y: i32, m: u32, d: u32, h: u32) -> i64 {
        chrono::Utc
            .with_ymd_and_hms(y, m, d, h, 0, 0)
            .single()
            .map(|t| t.timestamp_millis())
            .unwrap_or_default()
    }

    #[test]
    fn change_percent_is_absent_without_a_previous_count() {
        assert_eq!(change_percent(5, 0), None);
        assert_eq!(change_percent(0, 0), None);
        assert_eq!(change_percent(15, 10), Some(50.0));
        assert_eq!(change_percent(0, 10), Some(-100.0));
    }

    #[test]
    fn dst_days_last_23_and_25_hours() {
        let tz: Tz = "Europe/Berlin".parse().unwrap();
        let spring = day_boundaries(
            tz,
            TimeRange {
                start_ms: utc(2026, 3, 28, 12),
                end_ms: utc(2026, 3, 30, 0),
            },
        )
        .unwrap();
        assert_eq!(spring[0], utc(2026, 3, 27, 23), "local midnight in CET");
        assert_eq!(spring[2] - spring[1], 23 * HOUR_MS);
        let autumn = day_boundaries(
            tz,
            TimeRange {
                start_ms: utc(2026, 10, 25, 0),
                end_ms: utc(2026, 10, 26, 0),
            },
        )
        .unwrap();
        assert_eq!(autumn[1] - autumn[0], 25 * HOUR_MS);
    }

    #[test]
    fn half_hour_zones_snap_to_the_utc_hour() {
        let tz: Tz = "Asia/Kolkata".parse().unwrap();
        let days = day_boundaries(
            tz,
            TimeRange {
                start_ms: utc(2026, 1, 10, 0),
                end_ms: utc(2026, 1, 11, 0),
            },
        )
        .unwrap();
        // Local midnight of Jan 10 is 18:30 UTC on Jan 9, snapped to 18:00.
        assert_eq!(days[0], utc(2026, 1, 9, 18));
    }

    #[test]
    fn midnight_in_a_dst_gap_starts_the_day_at_the_first_valid_time() {
        // America/Santiago springs forward at 00:00 local on 2026-09-06.
        let tz: Tz = "America/Santiago".parse().unwrap();
        let date = NaiveDate::from_ymd_opt(2026, 9, 6).unwrap();
        let start = local_day_start(tz, date).unwrap();
        let local = tz.timestamp_millis_opt(start).single().unwrap();
        assert_eq!(local.date_naive(), date);
        assert_eq!(
            local.time(),
            chrono::NaiveTime::from_hms_opt(1, 0, 0).unwrap()
        );
    }

    #[test]
    fn bad_time_zone_is_an_invalid_argument() {
        assert!(matches!(
            parse_time_zone("Mars/Olympus"),
            Err(QueryError::InvalidArgument(_))
        ));
        assert_eq!(parse_time_zone("").unwrap(), Tz::UTC);
    }

    #[test]
    fn page_tokens_round_trip_and_are_bound_to_the_query() {
        let token = PageToken {
            fingerprint: 7,
            position: (-42, 9),
        }
        .encode();
        let decoded = PageToken::decode(&token, 7).unwrap();
        assert_eq!(decoded.position, (-42, 9));
        assert!(PageToken::decode(&token, 8).is_err());
        assert!(PageToken::decode("garbage!", 7).is_err());
        assert!(PageToken::decode(&URL_SAFE_NO_PAD.encode("v1.zz.1.2"), 7).is_err());
    }

    proptest! {
        #[test]
        fn day_boundaries_are_increasing_local_days(
            zone in prop::sample::select(vec!["UTC", "Europe/Berlin", "America/New_York", "Australia/Lord_Howe", "Asia/Kathmandu", "America/Santiago", "Pacific/Chatham"]),
            start in 1_600_000_000_000_i64..1_900_000_000_000_i64,
            days in 1_i64..60,
        ) {
            let tz: Tz = zone.parse().unwrap();
            let range = TimeRange { start_ms: start, end_ms: start + days * DAY_MS };
            let bounds = day_boundaries(tz, range).unwrap();
            prop_assert!(bounds[0] <= start);
            prop_assert!(*bounds.last().unwrap() >= range.end_ms);
            for w in bounds.windows(2) {
                let len = w[1] - w[0];
                // 23 to 25 hours, plus up to one hour of snapping for sub-hour offsets.
                prop_assert!((22 * HOUR_MS..=26 * HOUR_MS).contains(&len), "{} {}", zone, len);
                prop_assert_eq!(w[0].rem_euclid(HOUR_MS), 0);
            }
        }
    }
}
