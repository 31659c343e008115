//! The tenant picker's list: every tenant with events in a range, with its totals, counted per
//! partition so that replicas can answer for the partitions they own and the asker can sum.

use std::collections::{BTreeMap, HashSet};

use super::parts::Part;
use super::types::{Resolution, TenantCounters, TenantEvents, TimeRange};
use super::{QueryEngine, QueryError, DEFAULT_RANGE_MS};
use crate::event::IntegrationType;
use crate::store::{HourTier, PartitionState, HOUR_MS};

impl QueryEngine {
    /// The range a tenant list covers: rounded outward to hours (to days before the hour tier)
    /// and clamped to retention, so every replica counts a given range the same way.
    pub(crate) fn tenants_range(
        &self,
        requested: Option<TimeRange>,
    ) -> Result<TimeRange, QueryError> {
        let tier = HourTier::Tenant;
        self.effective(requested, DEFAULT_RANGE_MS, self.now_ms(), HOUR_MS, tier)
    }

    /// The resolution a tenant list over `range` (from `tenants_range`) is counted at.
    pub(crate) fn tenants_resolution(&self, range: TimeRange) -> Resolution {
        self.resolution(range, HourTier::Tenant, false)
    }

    /// The tenant's event and failure counters, summed over partitions.
    pub(crate) fn tenant_counters(&self, tenant_id: &str) -> Result<TenantCounters, QueryError> {
        let local = self.local_tenant_counters(tenant_id);
        self.gathered(Part::Counters, local)
    }

    pub(super) fn local_tenant_counters(&self, tenant_id: &str) -> TenantCounters {
        let mut counters = TenantCounters::default();
        self.for_tenant(tenant_id, |_, tenant| {
            counters.events += tenant.events;
            counters.failures += tenant.failures;
        });
        counters
    }

    /// Per local partition, each tenant's totals over `range` (from `tenants_range`). Only
    /// `partitions` are read when given.
    pub(crate) fn tenants_by_partition(
        &self,
        range: TimeRange,
        partitions: Option<&HashSet<i32>>,
    ) -> Vec<(i32, Vec<TenantEvents>)> {
        self.store
            .partitions()
            .into_iter()
            .filter(|(key, _)| partitions.is_none_or(|wanted| wanted.contains(&key.partition)))
            .map(|(key, shared)| (key.partition, partition_tenants(&shared.read(), range)))
            .collect()
    }
}

fn partition_tenants(state: &PartitionState, range: TimeRange) -> Vec<TenantEvents> {
    state
        .tenants
        .iter()
        .map(|(sym, tenant)| {
            let rolled = state.rolled_until;
            let counts = tenant.counts_in(range.start_ms, range.end_ms, false, rolled);
            TenantEvents {
                tenant_id: state.interner.resolve(*sym).to_owned(),
                failed: IntegrationType::ALL.iter().map(|t| counts.failed[*t]).sum(),
                succeeded: IntegrationType::ALL
                    .iter()
                    .map(|t| counts.succeeded[*t])
                    .sum(),
            }
        })
        .filter(|row| row.failed + row.succeeded > 0)
        .collect()
}

/// Sums per-partition lists into one row per tenant that `readable` accepts, busiest first
/// (ties by name).
pub(crate) fn merge_tenants(
    per_partition: impl IntoIterator<Item = Vec<TenantEvents>>,
    readable: impl Fn(&str) -> bool,
) -> Vec<TenantEvents> {
    let mut sums: BTreeMap<String, (u64, u64)> = BTreeMap::new();
    for row in per_partition.into_iter().flatten() {
        if !readable(&row.tenant_id) {
            continue;
        }
        let sum = sums.entry(row.tenant_id).or_default();
        sum.0 += row.failed;
        sum.1 += row.succeeded;
    }
    let mut rows: Vec<TenantEvents> = sums
        .into_iter()
        .map(|(tenant_id, (failed, succeeded))| TenantEvents {
            tenant_id,
            failed,
            succeeded,
        })
        .collect();
    rows.sort_by(|a, b| {
        (b.failed + b.succeeded)
            .cmp(&(a.failed + a.succeeded))
            .then_with(|| a.tenant_id.cmp(&b.tenant_id))
    });
    rows
}

#[cfg(test)]
mod tests {
    use super::*;

    fn row(tenant: &str, failed: u64, succeeded: u64) -> TenantEvents {
        TenantEvents {
            tenant_id: tenant.to_owned(),
            failed,
            succeeded,
        }
    }

    #[test]
    fn partitions_sum_per_tenant_and_unreadable_tenants_are_left_out() {
        let merged = merge_tenants(
            [
                vec![row("acme", 1, 2), row("globex", 0, 1)],
                vec![row("acme", 3, 0), row("hidden", 50, 50)],
            ],
            |tenant| tenant != "hidden",
        );
        assert_eq!(merged, vec![row("acme", 4, 2), row("globex", 0, 1)]);
    }
}
