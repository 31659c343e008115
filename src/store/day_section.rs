//! The day tier in a snapshot: written after the rest of the partition's state, so everything
//! before it keeps the layout of the format without tiers, and a snapshot of that format is read
//! as one whose days are still to be rolled from its hours. Quiet integrations' and tenants'
//! events (`compact`) come last (format 9); a format 8 section is read as one with none.

use std::borrow::Cow;

use serde::{Deserialize, Serialize};

use super::compact::Compact;
use super::group_buckets::GroupDays;
use super::groups::{GroupKey, HourStat};
use super::integrations::{IntegrationDay, IntegrationEvent, IntegrationKey};
use super::interner::Sym;
use super::partition::PartitionState;
use super::retries::{RetryKey, RetrySum};
use super::series::Series;
use super::tenant::{CodeCounts, CodeEvent, CountEvent, TenantState, TypeCounts};

/// A series' days, or none for a quiet series.
fn days_or_none<T: Clone>(days: Option<&Series<T>>) -> Cow<'_, Series<T>> {
    days.map_or_else(|| Cow::Owned(Series::new()), Cow::Borrowed)
}

/// The days of a partition, borrowed for writing.
#[derive(Serialize)]
pub(crate) struct DaysOf<'a> {
    rolled_until: i64,
    tenants: Vec<TenantDaysOf<'a>>,
    retries: Vec<(&'a RetryKey, &'a Series<RetrySum>)>,
    quiet_integrations: Vec<(Sym, &'a IntegrationKey, &'a [IntegrationEvent])>,
    quiet_counts: Vec<(Sym, &'a [CountEvent])>,
    quiet_codes: Vec<(Sym, &'a [CodeEvent])>,
}

#[derive(Serialize)]
struct TenantDaysOf<'a> {
    tenant: Sym,
    counts: Cow<'a, Series<TypeCounts>>,
    codes: Cow<'a, Series<CodeCounts>>,
    integrations: Vec<(&'a IntegrationKey, &'a Series<IntegrationDay>)>,
    groups: Vec<(&'a GroupKey, GroupDays<'a>)>,
}

/// The days of a partition, as read back: the same fields in the same order as `DaysOf`.
#[derive(Deserialize)]
pub(crate) struct Days {
    rolled_until: i64,
    tenants: Vec<TenantDays>,
    retries: Vec<(RetryKey, Series<RetrySum>)>,
    quiet_integrations: Vec<(Sym, IntegrationKey, Vec<IntegrationEvent>)>,
    quiet_counts: Vec<(Sym, Vec<CountEvent>)>,
    quiet_codes: Vec<(Sym, Vec<CodeEvent>)>,
}

#[derive(Deserialize)]
struct TenantDays {
    tenant: Sym,
    counts: Series<TypeCounts>,
    codes: Series<CodeCounts>,
    integrations: Vec<(IntegrationKey, Series<IntegrationDay>)>,
    groups: Vec<(GroupKey, Series<HourStat>)>,
}

/// Each tenant's events of the series `pick` chooses, where that series is quiet.
fn quiet_tenants<'a, E>(
    state: &'a PartitionState,
    pick: fn(&'a TenantState) -> Option<&'a [E]>,
) -> Vec<(Sym, &'a [E])> {
    let tenants = state.tenants.iter();
    tenants
        .filter_map(|(sym, tenant)| Some((*sym, pick(tenant)?)))
        .collect()
}

impl<'a> DaysOf<'a> {
    pub(crate) fn of(state: &'a PartitionState) -> Self {
        let tenants = state
            .tenants
            .iter()
            .map(|(sym, tenant)| TenantDaysOf {
                tenant: *sym,
                counts: days_or_none(tenant.counts.bucket_days()),
                codes: days_or_none(tenant.codes.bucket_days()),
                integrations: tenant
                    .integrations
                    .iter()
                    .filter_map(|(key, i)| Some((key, i.buckets.bucket_days()?)))
                    .filter(|(_, days)| !days.is_empty())
                    .collect(),
                groups: tenant
                    .groups
                    .iter()
                    .map(|(key, g)| (key, g.buckets.days(state.rolled_until)))
                    .filter(|(_, days)| !days.is_empty())
                    .collect(),
            })
            .collect();
        let retries = state
            .retries
            .iter()
            .filter(|(_, r)| !r.buckets.days.is_empty())
            .map(|(key, r)| (key, &r.buckets.days))
            .collect();
        let quiet_integrations = state
            .tenants
            .iter()
            .flat_map(|(sym, tenant)| {
                tenant
                    .integrations
                    .iter()
                    .filter_map(move |(key, i)| Some((*sym, key, i.buckets.events()?)))
            })
            .collect();
        DaysOf {
            rolled_until: state.rolled_until,
            tenants,
            retries,
            quiet_integrations,
            quiet_counts: quiet_tenants(state, |t| t.counts.events()),
            quiet_codes: quiet_tenants(state, |t| t.codes.events()),
        }
    }
}

impl Days {
    /// Puts the days back where they were taken from. A key the rest of the state lacks cannot
    /// come from one consistent snapshot; its days are dropped rather than invented a home.
    pub(crate) fn restore(self, state: &mut PartitionState) {
        state.rolled_until = self.rolled_until;
        for days in self.tenants {
            let Some(tenant) = state.tenants.get_mut(&days.tenant) else {
                continue;
            };
            tenant.counts.tiered_mut(i64::MIN).days = days.counts;
            tenant.codes.tiered_mut(i64::MIN).days = days.codes;
            for (key, series) in days.integrations {
                if let Some(integration) = tenant.integrations.get_mut(&key) {
                    integration.buckets.tiered_mut(i64::MIN).days = series;
                }
            }
            for (key, series) in days.groups {
                if let Some(group) = tenant.groups.get_mut(&key) {
                    group.buckets.restore_days(series);
                }
            }
        }
        for (key, series) in self.retries {
            if let Some(retries) = state.retries.get_mut(&key) {
                retries.buckets.days = series;
            }
        }
        for (tenant, events) in self.quiet_counts {
            if let Some(tenant) = state.tenants.get_mut(&tenant) {
                tenant.counts = Compact::Quiet(events);
            }
        }
        for (tenant, failures) in self.quiet_codes {
            if let Some(tenant) = state.tenants.get_mut(&tenant) {
                tenant.codes = Compact::Quiet(failures);
            }
        }
        for (tenant, key, events) in self.quiet_integrations {
            let integration = state
                .tenants
                .get_mut(&tenant)
                .and_then(|t| t.integrations.get_mut(&key));
            if let Some(integration) = integration {
                integration.buckets = Compact::Quiet(events);
            }
        }
    }
}
