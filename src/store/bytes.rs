//! Where a partition's memory goes: estimates for `bench ingest` and the sizing table.

use std::sync::Arc;

use serde::Serialize;

use super::groups::{GroupKey, GroupState};
use super::integrations::{IntegrationKey, IntegrationState, MinuteFailures};
use super::partition::PartitionState;
use super::series::Series;
use super::tenant::TenantState;

/// Rough bytes per entry of a hash table beyond the entry itself (control bytes, spare room).
pub(super) const HASH_ENTRY_OVERHEAD: usize = 8;

/// Where a partition's memory goes, from `PartitionState::approx_bytes`.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct StateBytes {
    pub dedup: u64,
    pub strings: u64,
    /// Per-tenant minute, hour and code buckets.
    pub buckets: u64,
    pub groups: u64,
    pub integrations: u64,
    pub tenants: u64,
    pub group_count: u64,
    pub integration_count: u64,
    pub dedup_keys: u64,
    /// The buckets among the parts above by tier: minutes, hours, days and quiet series'
    /// events (the rest is keys, names, samples and table overhead).
    pub minute_tier: u64,
    pub hour_tier: u64,
    pub day_tier: u64,
    /// The events of quiet groups and integrations, kept instead of hours and days.
    pub quiet_tier: u64,
}

impl StateBytes {
    pub fn total(&self) -> u64 {
        self.dedup + self.strings + self.buckets + self.groups + self.integrations
    }

    pub fn add(&mut self, other: &StateBytes) {
        self.dedup += other.dedup;
        self.strings += other.strings;
        self.buckets += other.buckets;
        self.groups += other.groups;
        self.integrations += other.integrations;
        self.tenants += other.tenants;
        self.group_count += other.group_count;
        self.integration_count += other.integration_count;
        self.dedup_keys += other.dedup_keys;
        self.minute_tier += other.minute_tier;
        self.hour_tier += other.hour_tier;
        self.day_tier += other.day_tier;
        self.quiet_tier += other.quiet_tier;
    }

    /// Counts `bytes` of buckets in `tier`, and returns them for the part's sum.
    fn tier(&mut self, tier: Tier, bytes: usize) -> u64 {
        let bytes = bytes as u64;
        match tier {
            Tier::Minute => self.minute_tier += bytes,
            Tier::Hour => self.hour_tier += bytes,
            Tier::Day => self.day_tier += bytes,
            Tier::Quiet => self.quiet_tier += bytes,
        }
        bytes
    }

    pub(super) fn add_tenant(&mut self, tenant: &TenantState) {
        use std::mem::size_of;
        let entry = |key: usize, value: usize| (key + value + HASH_ENTRY_OVERHEAD) as u64;
        let minute_failures: usize = tenant
            .minute_failures
            .values()
            .map(|f| f.capacity() * size_of::<MinuteFailures>())
            .sum();
        let minutes =
            tenant.minutes.heap_bytes() + tenant.minute_failures.heap_bytes() + minute_failures;
        let (quiet, hours, days) = tenant.bucket_bytes();
        self.buckets += self.tier(Tier::Minute, minutes)
            + self.tier(Tier::Quiet, quiet)
            + self.tier(Tier::Hour, hours)
            + self.tier(Tier::Day, days);
        self.group_count += tenant.groups.len() as u64;
        self.groups +=
            tenant.groups.capacity() as u64 * entry(size_of::<GroupKey>(), size_of::<GroupState>());
        for group in tenant.groups.values() {
            let (times, hours, days) = group
                .buckets
                .heap_bytes(Series::heap_bytes, Series::heap_bytes);
            self.groups += group.sample_bytes() as u64
                + self.tier(Tier::Quiet, times)
                + self.tier(Tier::Hour, hours)
                + self.tier(Tier::Day, days);
        }
        self.integration_count += tenant.integrations.len() as u64;
        self.integrations += tenant.integrations.capacity() as u64
            * entry(size_of::<IntegrationKey>(), size_of::<IntegrationState>());
        for integration in tenant.integrations.values() {
            let (events, hours, days) = integration.bucket_bytes();
            self.integrations += self.tier(Tier::Minute, integration.minutes.0.heap_bytes())
                + self.tier(Tier::Quiet, events)
                + self.tier(Tier::Hour, hours)
                + self.tier(Tier::Day, days);
        }
    }
}

#[derive(Clone, Copy)]
enum Tier {
    Minute,
    Hour,
    Day,
    Quiet,
}

impl PartitionState {
    /// Heap bytes this state holds, by structure: sizes of what is stored plus an allowance for
    /// hash-table overhead. Good for trends and ratios, not for accounting.
    pub fn approx_bytes(&self) -> StateBytes {
        use std::mem::size_of;
        let strings = self
            .interner
            .strings()
            .map(|s| s.len() + 16 + 2 * (size_of::<Arc<str>>() + HASH_ENTRY_OVERHEAD))
            .sum::<usize>();
        let mut bytes = StateBytes {
            dedup: self.dedup.heap_bytes() as u64,
            strings: strings as u64,
            dedup_keys: self.dedup.len() as u64,
            tenants: self.tenants.len() as u64,
            ..StateBytes::default()
        };
        for tenant in self.tenants.values() {
            bytes.add_tenant(tenant);
        }
        for (key, retries) in &self.retries {
            let ids = key.tenant_id.len() + key.integration_id.len();
            bytes.integrations += (ids + retries.heap_bytes() + HASH_ENTRY_OVERHEAD) as u64;
        }
        bytes
    }
}
