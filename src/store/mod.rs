//! Partition-owned, time-bucketed counters.
//!
//! Each Kafka partition has one `PartitionState`, written only by the ingest owner thread and
//! read by queries. Queries merge across partitions, so a partition's state can move to another
//! instance without any cross-partition bookkeeping. Every query family has its own
//! pre-aggregated map, so no query ever scans raw events:
//! - `minutes` / `counts`: failed and succeeded per type (overview, percentage change, trends);
//! - `codes`: failed per (type, status code) (error breakdown);
//! - `groups`: failure groups with counts, first/last seen and samples (failures table);
//! - `integrations`: per integration, counts, last failure and a latency `sketch` (integration
//!   health), and failures per (integration, code) per minute in the minute window (what drove
//!   a change).
//!
//! Each cube but the minutes is `tiers::Tiered`: hours for the recent past, UTC days for the
//! whole retention, each tier kept as long as `StoreLimits` says.

mod bytes;
mod compact;
mod day_section;
mod dedup;
#[cfg(test)]
pub(crate) mod description_tests;
mod group_buckets;
mod groups;
mod integrations;
mod interner;
mod losses;
mod migrate;
mod partition;
pub(crate) mod probation;
mod ranking;
mod retries;
mod series;
mod sketch;
mod sketch_bins;
mod tenant;
mod tiers;
mod time;
mod upkeep;

use std::collections::BTreeMap;
use std::sync::Arc;

use dashmap::DashMap;
use parking_lot::RwLock;

pub use bytes::StateBytes;
pub(crate) use day_section::{Days, DaysOf};
pub use dedup::Dedup;
pub(crate) use dedup::MAX_DEDUP_CAPACITY;
pub use groups::{failure_id, format_failure_id, GroupIdentity};
pub(crate) use groups::{
    parse_failure_id, sample_order, GroupKey, GroupState, Rekey, SAMPLES_PER_GROUP,
};
pub(crate) use integrations::{IntegrationDay, IntegrationKey, IntegrationState, IntegrationSum};
pub(crate) use interner::Sym;
pub(crate) use losses::{gaps, losses_for_tenant, lost_ranges, LostOffsets, PartitionLosses};
pub(crate) use partition::{Applied, IngestTotals};
pub use partition::{KeyedEvent, PartitionState};
pub(crate) use probation::ProbationSection;
pub(crate) use ranking::{CodesByIntegration, CANDIDATES};
#[cfg(test)]
pub(crate) use retries::tests as retries_tests;
#[cfg(test)]
pub(crate) use retries::RetryKey;
pub(crate) use retries::{Retries, RetrySum};
pub(crate) use sketch::LatencySketch;
pub use sketch::RELATIVE_ACCURACY;
pub(crate) use tenant::{TenantState, TypeCounts};
pub use tiers::SeriesRead;
pub(crate) use tiers::{Bucket, RollsInto};
pub(crate) use time::{ceil_to, HourTier, DEFAULT_WINDOW_MS};
pub use time::{floor_to, StoreLimits, DAY_MS, HOUR_MS, MINUTE_MS};

#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct PartitionKey {
    pub(crate) topic: Arc<str>,
    pub partition: i32,
}

impl PartitionKey {
    pub fn new(topic: &str, partition: i32) -> Self {
        PartitionKey {
            topic: Arc::from(topic),
            partition,
        }
    }
}

/// A partition's state behind its lock. The lock is a parking_lot `RwLock` because the single
/// writer holds it for one poll batch (well under a millisecond) and queries only read; no
/// guard is ever held across an `.await`.
pub(crate) type SharedPartition = Arc<RwLock<PartitionState>>;

/// How much the store holds, for metrics.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Cardinality {
    pub(crate) tenants: u64,
    pub groups: u64,
    pub buckets: u64,
    /// The minute buckets among `buckets` (they leave after the minute window).
    pub minute_buckets: u64,
}

/// The partitions this instance owns. Ingest attaches and removes them; queries read them.
#[derive(Debug)]
pub struct Store {
    limits: StoreLimits,
    partitions: DashMap<PartitionKey, SharedPartition>,
    /// Failure ids changed by restoring older snapshots, until their issue actions move.
    rekeys: parking_lot::Mutex<Vec<Rekey>>,
}

impl Store {
    pub fn new(limits: StoreLimits) -> Self {
        Store {
            limits,
            partitions: DashMap::new(),
            rekeys: parking_lot::Mutex::new(Vec::new()),
        }
    }

    pub fn limits(&self) -> &StoreLimits {
        &self.limits
    }

    pub fn cardinality(&self) -> Cardinality {
        let mut total = Cardinality::default();
        for (_, partition) in self.partitions() {
            let state = partition.read();
            total.tenants += state.tenants.len() as u64;
            for tenant in state.tenants.values() {
                total.groups += tenant.groups.len() as u64;
                total.minute_buckets += tenant.minutes.len() as u64;
                total.buckets +=
                    (tenant.minutes.len() + tenant.counts.len() + tenant.codes.len()) as u64;
            }
        }
        total
    }

    pub(crate) fn partition(&self, key: &PartitionKey) -> Option<SharedPartition> {
        self.partitions.get(key).map(|p| p.clone())
    }

    /// Makes `shared` the state of `key`. A partition has one owner, so attaching over a
    /// different state would mean two writers.
    pub fn attach(&self, key: PartitionKey, shared: SharedPartition) {
        let previous = self.partitions.insert(key, shared.clone());
        debug_assert!(
            previous.is_none_or(|p| Arc::ptr_eq(&p, &shared)),
            "a partition was attached twice: two writers"
        );
    }

    pub fn get_or_create(&self, key: &PartitionKey) -> SharedPartition {
        self.partitions
            .entry(key.clone())
            .or_insert_with(|| Arc::new(RwLock::new(PartitionState::new(&self.limits))))
            .clone()
    }

    pub(crate) fn remove_partition(&self, key: &PartitionKey) -> Option<SharedPartition> {
        self.partitions.remove(key).map(|(_, p)| p)
    }

    /// Clones the handles out, so no map guard is held while a query reads them.
    pub fn partitions(&self) -> Vec<(PartitionKey, SharedPartition)> {
        let mut all: Vec<_> = self
            .partitions
            .iter()
            .map(|e| (e.key().clone(), e.value().clone()))
            .collect();
        all.sort_by(|a, b| a.0.cmp(&b.0));
        all
    }

    pub fn totals(&self) -> IngestTotals {
        let mut totals = IngestTotals::default();
        for (_, partition) in self.partitions() {
            totals.add(&partition.read().totals);
        }
        totals
    }

    /// Events counted per tenant over every partition and bucket kept, by tenant id.
    pub fn events_by_tenant(&self) -> BTreeMap<String, u64> {
        let mut sizes = BTreeMap::new();
        for (_, partition) in self.partitions() {
            let state = partition.read();
            for (sym, tenant) in &state.tenants {
                let events = tenant.events_kept();
                *sizes
                    .entry(state.interner.resolve(*sym).to_owned())
                    .or_insert(0) += events;
            }
        }
        sizes
    }

    /// The lost offsets an answer about `tenant_id` depends on (`losses_for_tenant`'s rule).
    pub(crate) fn losses_for(&self, tenant_id: &str) -> Vec<LostOffsets> {
        losses::losses_for_tenant(self.partition_losses(tenant_id, None))
    }

    /// Each partition's lost offsets and whether it holds `tenant_id`; only `wanted`, when
    /// given.
    pub(crate) fn partition_losses(
        &self,
        tenant_id: &str,
        wanted: Option<&[i32]>,
    ) -> Vec<PartitionLosses> {
        self.partitions()
            .into_iter()
            .filter(|(key, _)| wanted.is_none_or(|w| w.contains(&key.partition)))
            .map(|(key, shared)| {
                let guard = shared.read();
                PartitionLosses {
                    partition: key.partition,
                    holds_tenant: guard.tenant(tenant_id).is_some(),
                    losses: guard.losses.clone(),
                }
            })
            .collect()
    }

    /// Every lost offset range this store knows of.
    pub(crate) fn all_losses(&self) -> Vec<LostOffsets> {
        let mut all: Vec<LostOffsets> = self
            .partitions()
            .iter()
            .flat_map(|(_, p)| p.read().losses.clone())
            .collect();
        losses::distinct(&mut all);
        all
    }

    pub(crate) fn note_rekeys(&self, rekeys: Vec<Rekey>) {
        if !rekeys.is_empty() {
            self.rekeys.lock().extend(rekeys);
        }
    }

    pub(crate) fn take_rekeys(&self) -> Vec<Rekey> {
        std::mem::take(&mut *self.rekeys.lock())
    }

    pub fn evict(&self, now_ms: i64) {
        for (_, partition) in self.partitions() {
            partition.write().evict(&self.limits, now_ms);
        }
    }
}
