//! Where a partition's memory goes: estimates for `bench ingest` and the sizing table.

use std::sync::Arc;

use serde::Serialize;

use super::groups::{GroupKey, GroupState};
use super::integrations::{IntegrationKey, IntegrationState, MinuteFailures};
use super::partition::PartitionState;
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
    }

    pub(super) fn add_tenant(&mut self, tenant: &TenantState) {
        use std::mem::size_of;
        let entry = |key: usize, value: usize| (key + value + HASH_ENTRY_OVERHEAD) as u64;
        self.buckets += (tenant.minutes.heap_bytes()
            + tenant.hours.heap_bytes()
            + tenant.codes.heap_bytes()
            + tenant.minute_failures.heap_bytes()) as u64;
        let days = tenant.code_days.iter().flat_map(|d| d.values());
        for codes in tenant.codes.values().chain(days) {
            self.buckets += codes.heap_bytes() as u64;
        }
        if let Some(days) = &tenant.code_days {
            self.buckets += days.heap_bytes() as u64;
        }
        for failures in tenant.minute_failures.values() {
            self.buckets += (failures.capacity() * size_of::<MinuteFailures>()) as u64;
        }
        self.group_count += tenant.groups.len() as u64;
        self.groups +=
            tenant.groups.capacity() as u64 * entry(size_of::<GroupKey>(), size_of::<GroupState>());
        for group in tenant.groups.values() {
            self.groups += group.heap_bytes() as u64;
        }
        self.integration_count += tenant.integrations.len() as u64;
        self.integrations += tenant.integrations.capacity() as u64
            * entry(size_of::<IntegrationKey>(), size_of::<IntegrationState>());
        for integration in tenant.integrations.values() {
            self.integrations += integration.heap_bytes() as u64;
        }
    }
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
        bytes
    }
}
