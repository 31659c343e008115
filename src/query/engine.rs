//! The engine and the counting queries: overview, percentage change, error breakdown, trends,
//! and the catalog. Each sums pre-aggregated buckets across partitions.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

use chrono_tz::Tz;

use super::calendar::{day_boundaries, hour_boundaries, parse_time_zone};
use super::parts::{Part, Remote};
use super::types::*;
use super::{QueryError, DEFAULT_PERIOD_MS, DEFAULT_RANGE_MS, FUTURE_MARGIN_MS};
use crate::catalog::{self, CatalogEntry};
use crate::clock::{ManualClock, SharedClock};
use crate::event::{IntegrationType, PerType};
use crate::issues::IssueBook;
use crate::store::{
    ceil_to, floor_to, Bucket, HourTier, PartitionState, SeriesRead, Store, TenantState,
    TypeCounts, DAY_MS, HOUR_MS, MINUTE_MS,
};

/// Answers the dashboard's questions from the store. Cheap to clone.
#[derive(Clone)]
pub struct QueryEngine {
    pub(super) store: Arc<Store>,
    clock: SharedClock,
    /// When issues are kept: the users' actions and how long a quiet group stays open.
    pub(super) issues: Option<IssueContext>,
    /// The partitions other replicas own, when a tenant is spread over several owners.
    pub(super) remote: Option<Arc<Remote>>,
}

/// What the queries need to tell an issue's state.
#[derive(Clone)]
pub(crate) struct IssueContext {
    pub(crate) book: Arc<IssueBook>,
    pub(crate) auto_resolve_ms: i64,
}

impl QueryEngine {
    pub fn new(store: Arc<Store>, clock: SharedClock) -> Self {
        QueryEngine {
            store,
            clock,
            issues: None,
            remote: None,
        }
    }

    /// Rows of failure groups carry their issue state.
    pub(crate) fn with_issues(mut self, issues: Option<IssueContext>) -> Self {
        self.issues = issues;
        self
    }

    /// The same engine with its clock stopped at `now_ms`, so that two passes of a query and
    /// the other owners' parts all see one time.
    pub(crate) fn at(&self, now_ms: i64) -> Self {
        QueryEngine {
            clock: Arc::new(ManualClock::new(now_ms)),
            ..self.clone()
        }
    }

    /// The same engine, merging `remote`'s parts into its own (or noting them, when planning).
    pub(crate) fn with_remote(&self, remote: Arc<Remote>) -> Self {
        QueryEngine {
            remote: Some(remote),
            ..self.clone()
        }
    }

    pub(super) fn has_remote(&self) -> bool {
        self.remote.is_some()
    }

    pub fn store(&self) -> &Arc<Store> {
        &self.store
    }

    pub(super) fn now_ms(&self) -> i64 {
        self.clock.now_ms()
    }

    /// Rounds a requested (or default) range outward to `width_ms`, or to UTC days when it
    /// reaches below `tier`'s hours, and clamps it to what is kept.
    pub(super) fn effective(
        &self,
        requested: Option<TimeRange>,
        default_ms: i64,
        now_ms: i64,
        width_ms: i64,
        tier: HourTier,
    ) -> Result<TimeRange, QueryError> {
        let range = asked(requested, default_ms, now_ms)?;
        // Nothing is stored outside retention or beyond the near future, so the range is
        // clamped to that span: every answer, and every series in it, stays bounded.
        let limits = self.store.limits();
        let start_ms = limits.align_start(range.start_ms, tier, now_ms);
        let width_ms = match start_ms < limits.hour_floor(tier, now_ms) {
            true => DAY_MS,
            false => width_ms,
        };
        let end_ms = ceil_to(range.end_ms.min(now_ms + FUTURE_MARGIN_MS), width_ms);
        let start_ms = floor_to(start_ms, width_ms).min(end_ms);
        Ok(TimeRange { start_ms, end_ms })
    }

    /// The resolution of the buckets that answer `range` (from `effective`).
    pub(super) fn resolution(
        &self,
        range: TimeRange,
        tier: HourTier,
        by_minute: bool,
    ) -> Resolution {
        let now = self.now_ms();
        match by_minute {
            true => Resolution::Minute,
            false if range.start_ms < self.store.limits().hour_floor(tier, now) => Resolution::Day,
            false => Resolution::Hour,
        }
    }

    /// The range of an hour-by-hour series: the requested one (or the default) without what
    /// lies before `tier`'s hours, rounded outward to hours and clamped like `effective`.
    pub(super) fn hourly_range(
        &self,
        requested: Option<TimeRange>,
        tier: HourTier,
    ) -> Result<TimeRange, QueryError> {
        let now = self.now_ms();
        let floor = self.store.limits().hour_floor(tier, now);
        let range = asked(requested, DEFAULT_RANGE_MS, now)?;
        let end_ms = ceil_to(range.end_ms.min(now + FUTURE_MARGIN_MS), HOUR_MS).max(floor);
        let start_ms = floor_to(range.start_ms, HOUR_MS).clamp(floor, end_ms);
        Ok(TimeRange { start_ms, end_ms })
    }

    /// How a series of `granularity` in `tz` is read: hours; UTC days; or, for another
    /// calendar, hours for as long as `tier` keeps them and UTC days before.
    pub(super) fn series_read(
        &self,
        granularity: Granularity,
        tz: Tz,
        tier: HourTier,
    ) -> SeriesRead {
        match granularity {
            Granularity::Hour => SeriesRead::Hours,
            Granularity::Day if tz == Tz::UTC => SeriesRead::UtcDays,
            Granularity::Day => SeriesRead::LocalDays {
                hours_from: self.store.limits().hour_floor(tier, self.now_ms()),
            },
        }
    }

    fn serve_by_minute(&self, start_ms: i64, now_ms: i64) -> bool {
        floor_to(start_ms, MINUTE_MS) >= self.store.limits().minute_floor(now_ms)
    }

    /// Calls `visit` with the tenant's state in every partition that has it.
    pub(super) fn for_tenant(
        &self,
        tenant_id: &str,
        mut visit: impl FnMut(&PartitionState, &TenantState),
    ) {
        for (_, partition) in self.store.partitions() {
            let guard = partition.read();
            if let Some(tenant) = guard.tenant(tenant_id) {
                visit(&guard, tenant);
            }
        }
    }

    /// The tenant's failed and succeeded counts per type over `range`, from every partition.
    fn counts(
        &self,
        tenant_id: &str,
        range: TimeRange,
        by_minute: bool,
    ) -> Result<TypeCounts, QueryError> {
        let local = self.local_counts(tenant_id, range, by_minute);
        self.gathered(Part::Counts { range, by_minute }, local)
    }

    pub(super) fn local_counts(
        &self,
        tenant_id: &str,
        range: TimeRange,
        by_minute: bool,
    ) -> TypeCounts {
        let mut counts = TypeCounts::default();
        self.for_tenant(tenant_id, |partition, tenant| {
            let rolled = partition.rolled_until;
            counts.add(&tenant.counts_in(range.start_ms, range.end_ms, by_minute, rolled));
        });
        counts
    }

    /// The tenant's failures per (type, code) over `range`.
    pub(super) fn local_codes(
        &self,
        tenant_id: &str,
        range: TimeRange,
    ) -> BTreeMap<(IntegrationType, u16), u64> {
        let mut by_code = BTreeMap::new();
        self.for_tenant(tenant_id, |partition, tenant| {
            let rolled = partition.rolled_until;
            tenant.for_each_code_in(range.start_ms, range.end_ms, rolled, |key, count| {
                *by_code.entry(key).or_insert(0) += count;
            });
        });
        by_code
    }

    /// Failures per type in `[first, last)` read as `how`, bucket by bucket, partition by
    /// partition, each at the instant the bucket is placed at. With classes, from the failures
    /// per code, keeping the codes of those classes.
    pub(super) fn local_trend(
        &self,
        tenant_id: &str,
        first: i64,
        last: i64,
        how: SeriesRead,
        classes: ClassFilter,
    ) -> Vec<(i64, PerType<u64>)> {
        let mut points = Vec::new();
        self.for_tenant(tenant_id, |partition, tenant| {
            let rolled = partition.rolled_until;
            if classes == ClassFilter::all() {
                tenant.counts.each(first, last, how, rolled, |at, bucket| {
                    let failed = match bucket {
                        Bucket::Hour(hour) => hour.failed.map(u64::from),
                        Bucket::Day(day) => day.failed,
                    };
                    points.push((at, failed));
                });
                return;
            }
            tenant.codes.each(first, last, how, rolled, |at, bucket| {
                let (Bucket::Hour(codes) | Bucket::Day(codes)) = bucket;
                let mut failed = PerType::<u64>::default();
                for (&(t, code), &count) in codes {
                    if classes.includes_code(code) {
                        failed[t] += count;
                    }
                }
                points.push((at, failed));
            });
        });
        points
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
        let tier = HourTier::Tenant;
        let effective_range = self.effective(range, DEFAULT_RANGE_MS, now, width, tier)?;
        let counts = self.counts(tenant_id, effective_range, by_minute)?;
        let local = self.local_classes(tenant_id, effective_range, by_minute, types);
        let part = Part::Classes {
            range: effective_range,
            by_minute,
            types,
        };
        let classes = self.gathered(part, local)?.named();
        let types = types.types().map(|t| TypeTotals::of(t, &counts)).collect();
        Ok(Overview {
            types,
            classes,
            effective_range,
            resolution: self.resolution(effective_range, tier, by_minute),
        })
    }

    pub fn percentage_change(
        &self,
        tenant_id: &str,
        period_ms: Option<i64>,
        end_ms: Option<i64>,
        types: TypeFilter,
        with_drivers: bool,
    ) -> Result<PercentageChange, QueryError> {
        let now = self.now_ms();
        let period = period_ms.unwrap_or(DEFAULT_PERIOD_MS);
        let limits = self.store.limits();
        let longest = limits.day_retention_ms / 2;
        if period < MINUTE_MS {
            return Err(QueryError::PeriodTooShort);
        }
        if period > longest {
            return Err(QueryError::PeriodTooLong {
                max_hours: longest / HOUR_MS,
            });
        }
        // The drivers read integrations, whose hours may be kept for less long.
        let tier = match with_drivers {
            true => HourTier::Detail,
            false => HourTier::Tenant,
        };
        let end = end_ms.unwrap_or(now).min(now + FUTURE_MARGIN_MS);
        let by_minute = self.serve_by_minute(end - 2 * period, now);
        let width = match by_minute {
            true => MINUTE_MS,
            false if end - 2 * period < limits.hour_floor(tier, now) => DAY_MS,
            false => HOUR_MS,
        };
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
        let current = self.counts(tenant_id, current_range, by_minute)?;
        let previous = self.counts(tenant_id, previous_range, by_minute)?;
        let mut drivers = match with_drivers {
            true => self.drivers(
                tenant_id,
                current_range,
                previous_range,
                by_minute,
                types.types(),
            )?,
            false => Vec::new(),
        }
        .into_iter();
        let types = types
            .types()
            .map(|t| TypeChange {
                drivers: drivers.next().map(|(_, d)| d),
                ..TypeChange::between(t, &current, &previous)
            })
            .collect();
        Ok(PercentageChange {
            types,
            current_range,
            previous_range,
            resolution: self.resolution(previous_range, tier, by_minute),
        })
    }

    pub fn error_breakdown(
        &self,
        tenant_id: &str,
        range: Option<TimeRange>,
        types: TypeFilter,
    ) -> Result<ErrorBreakdown, QueryError> {
        let now = self.now_ms();
        let tier = HourTier::Tenant;
        let effective_range = self.effective(range, DEFAULT_RANGE_MS, now, HOUR_MS, tier)?;
        let local = self.local_codes(tenant_id, effective_range);
        let codes = self.gathered(
            Part::Codes {
                range: effective_range,
            },
            local,
        )?;
        let mut by_code: HashMap<u16, u64> = HashMap::new();
        for ((t, code), count) in codes {
            if types.includes(t) {
                *by_code.entry(code).or_insert(0) += count;
            }
        }
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
            resolution: self.resolution(effective_range, tier, false),
        })
    }

    pub fn trends(
        &self,
        tenant_id: &str,
        range: Option<TimeRange>,
        types: TypeFilter,
        classes: ClassFilter,
        granularity: Granularity,
        time_zone: &str,
    ) -> Result<Trends, QueryError> {
        let tz = parse_time_zone(time_zone)?;
        let now = self.now_ms();
        let tier = HourTier::Tenant;
        let how = self.series_read(granularity, tz, tier);
        let boundaries = match granularity {
            Granularity::Hour => hour_boundaries(self.hourly_range(range, tier)?)?,
            Granularity::Day => day_boundaries(
                tz,
                self.effective(range, DEFAULT_RANGE_MS, now, HOUR_MS, tier)?,
            )?,
        };
        let (Some(&first), Some(&last)) = (boundaries.first(), boundaries.last()) else {
            return Err(QueryError::EmptyRange);
        };
        let local = self.local_trend(tenant_id, first, last, how, classes);
        let part = Part::Trend {
            first,
            last,
            how,
            classes,
        };
        let mut points = self.gathered(part, local)?;
        // Partitions each give their buckets in order; one sort interleaves them.
        points.sort_by_key(|(at, _)| *at);
        let series = types
            .types()
            .map(|t| TrendSeries {
                integration_type: t,
                points: sum_between(&boundaries, &points, t),
            })
            .collect();
        let effective_range = TimeRange {
            start_ms: first,
            end_ms: last,
        };
        Ok(Trends {
            series,
            effective_range,
            utc_days_until_ms: utc_days_until(how, effective_range),
        })
    }

    pub(crate) fn common_errors(
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
                let guidance = types.iter().map(|t| (*t, entry.guidance(*t))).collect();
                (entry, guidance)
            })
            .collect()
    }
}

/// The requested range, or the `default_ms` up to `now_ms`; refused when it is empty or reversed.
fn asked(
    requested: Option<TimeRange>,
    default_ms: i64,
    now_ms: i64,
) -> Result<TimeRange, QueryError> {
    let range = requested.unwrap_or(TimeRange {
        start_ms: now_ms - default_ms,
        end_ms: now_ms,
    });
    if range.start_ms >= range.end_ms {
        return Err(QueryError::StartNotBeforeEnd);
    }
    Ok(range)
}

/// Where a local-calendar series read as `how` over `range` stops standing in UTC days for
/// local ones; `None` when every point is exact.
pub(super) fn utc_days_until(how: SeriesRead, range: TimeRange) -> Option<i64> {
    match how {
        SeriesRead::LocalDays { hours_from } if hours_from > range.start_ms => {
            Some(hours_from.min(range.end_ms))
        }
        _ => None,
    }
}

/// Failures of type `t` between each pair of neighbouring boundaries, in one walk over buckets
/// sorted by the instant they are placed at.
fn sum_between(
    boundaries: &[i64],
    points: &[(i64, PerType<u64>)],
    t: IntegrationType,
) -> Vec<(i64, u64)> {
    let mut buckets = points.iter().peekable();
    boundaries
        .windows(2)
        .map(|w| {
            let mut failed = 0;
            while let Some((_, counts)) = buckets.next_if(|(at, _)| *at < w[1]) {
                failed += counts[t];
            }
            (w[0], failed)
        })
        .collect()
}

impl TypeTotals {
    fn of(integration_type: IntegrationType, counts: &TypeCounts) -> Self {
        TypeTotals {
            integration_type,
            failed: counts.failed[integration_type],
            succeeded: counts.succeeded[integration_type],
        }
    }
}

impl TypeChange {
    fn between(t: IntegrationType, current: &TypeCounts, previous: &TypeCounts) -> Self {
        TypeChange {
            integration_type: t,
            failed_current: current.failed[t],
            failed_previous: previous.failed[t],
            failed_change_percent: change_percent(current.failed[t], previous.failed[t]),
            succeeded_current: current.succeeded[t],
            succeeded_previous: previous.succeeded[t],
            succeeded_change_percent: change_percent(current.succeeded[t], previous.succeeded[t]),
            drivers: None,
        }
    }
}

/// `None` when there is nothing to compare against: never infinity, NaN or a fake 0.
pub(crate) fn change_percent(current: u64, previous: u64) -> Option<f64> {
    if previous == 0 {
        return None;
    }
    Some((current as f64 - previous as f64) / previous as f64 * 100.0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn change_percent_is_absent_without_a_previous_count() {
        assert_eq!(change_percent(5, 0), None);
        assert_eq!(change_percent(0, 0), None);
        assert_eq!(change_percent(15, 10), Some(50.0));
        assert_eq!(change_percent(0, 10), Some(-100.0));
    }
}
