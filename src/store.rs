//! Partition-owned, time-bucketed counters.
//!
//! Each Kafka partition has one `PartitionState`, written only by the ingest owner thread and
//! read by queries. Queries merge across partitions, so a partition's state can move to another
//! instance without any cross-partition bookkeeping. Every query family has its own
//! pre-aggregated map, so no query ever scans raw events:
//! - `minutes` / `hours`: failed and succeeded per type (overview, percentage change);
//! - `hours` also feeds trends;
//! - `codes`: failed per (type, status code) per hour (error breakdown);
//! - `groups`: failure groups with per-hour counts, first/last seen and samples (failures table).

use std::collections::{BTreeMap, VecDeque};
use std::sync::Arc;

use dashmap::DashMap;
use parking_lot::RwLock;
use rustc_hash::{FxHashMap as HashMap, FxHashSet as HashSet};
use serde::{Deserialize, Deserializer, Serialize, Serializer};

use crate::catalog;
use crate::event::{Event, IntegrationType, Outcome};

pub const MINUTE_MS: i64 = 60_000;
pub const HOUR_MS: i64 = 3_600_000;
pub const DAY_MS: i64 = 24 * HOUR_MS;
pub const SAMPLES_PER_GROUP: usize = 5;
/// Description of the catch-all group that takes failures once a tenant's group cap is reached.
pub const OVERFLOW_DESCRIPTION: &str = "(other failures: group limit reached)";

/// Start of the bucket of width `width_ms` that contains `t_ms`.
pub fn floor_to(t_ms: i64, width_ms: i64) -> i64 {
    t_ms.div_euclid(width_ms) * width_ms
}

/// Smallest bucket boundary of width `width_ms` at or after `t_ms`.
pub fn ceil_to(t_ms: i64, width_ms: i64) -> i64 {
    let floor = floor_to(t_ms, width_ms);
    if floor == t_ms {
        floor
    } else {
        floor + width_ms
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct StoreLimits {
    pub retention_ms: i64,
    /// How far back minute buckets are kept.
    pub minute_window_ms: i64,
    pub group_cap_per_tenant: usize,
    /// Distinct (tenant, event_id) keys remembered per partition for dedup.
    pub dedup_capacity: usize,
}

impl Default for StoreLimits {
    fn default() -> Self {
        StoreLimits {
            retention_ms: 62 * DAY_MS,
            minute_window_ms: 48 * HOUR_MS,
            group_cap_per_tenant: 10_000,
            dedup_capacity: 1_000_000,
        }
    }
}

impl StoreLimits {
    /// Oldest minute bucket that is guaranteed complete at `now_ms`.
    pub fn minute_floor(&self, now_ms: i64) -> i64 {
        floor_to(now_ms - self.minute_window_ms, MINUTE_MS)
    }

    /// Oldest hour bucket kept at `now_ms`.
    pub fn retention_floor(&self, now_ms: i64) -> i64 {
        floor_to(now_ms - self.retention_ms, HOUR_MS)
    }
}

pub type Sym = u32;

/// Maps strings to small ids so groups and samples store each distinct string once.
/// It only grows: strings of evicted groups stay, and are snapshotted, until the partition is
/// rebuilt from Kafka. Compaction is not done yet.
#[derive(Debug, Default)]
pub struct Interner {
    ids: HashMap<Arc<str>, Sym>,
    strings: Vec<Arc<str>>,
}

impl Interner {
    fn from_strings(strings: Vec<Arc<str>>) -> Self {
        let ids = strings
            .iter()
            .enumerate()
            .map(|(i, s)| (s.clone(), i as Sym))
            .collect();
        Interner { ids, strings }
    }

    pub fn intern(&mut self, text: &str) -> Sym {
        if let Some(id) = self.ids.get(text) {
            return *id;
        }
        let id = self.strings.len() as Sym;
        let shared: Arc<str> = Arc::from(text);
        self.strings.push(shared.clone());
        self.ids.insert(shared, id);
        id
    }

    pub fn get(&self, text: &str) -> Option<Sym> {
        self.ids.get(text).copied()
    }

    pub fn resolve(&self, id: Sym) -> &str {
        self.strings.get(id as usize).map_or("", |s| s)
    }

    pub fn len(&self) -> usize {
        self.strings.len()
    }

    pub fn is_empty(&self) -> bool {
        self.strings.is_empty()
    }
}

/// Only the strings are stored; the reverse map is rebuilt on load.
impl Serialize for Interner {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        self.strings.serialize(serializer)
    }
}

impl<'de> Deserialize<'de> for Interner {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        Ok(Interner::from_strings(Vec::deserialize(deserializer)?))
    }
}

/// Failed and succeeded counts per integration type.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct TypeCounts {
    pub failed: [u64; 5],
    pub succeeded: [u64; 5],
}

impl TypeCounts {
    pub fn add(&mut self, other: &TypeCounts) {
        for i in 0..5 {
            self.failed[i] += other.failed[i];
            self.succeeded[i] += other.succeeded[i];
        }
    }

    fn record(&mut self, integration_type: IntegrationType, outcome: Outcome) {
        let i = integration_type.index();
        match outcome {
            Outcome::Failure => self.failed[i] += 1,
            Outcome::Success => self.succeeded[i] += 1,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct GroupKey {
    pub integration_type: IntegrationType,
    pub integration_id: Sym,
    pub service_id: Sym,
    pub flow_id: Sym,
    pub status_code: u16,
    pub description: Sym,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct HourStat {
    pub count: u64,
    pub first_ms: i64,
    pub last_ms: i64,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Sample {
    pub event_id: Box<str>,
    pub occurred_at_ms: i64,
    pub message: Sym,
}

/// Newest first; ties broken by event id so every partition and test orders samples the same way.
pub fn sample_order(a_ms: i64, a_id: &str, b_ms: i64, b_id: &str) -> std::cmp::Ordering {
    b_ms.cmp(&a_ms).then_with(|| a_id.cmp(b_id))
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct GroupState {
    pub failure_id: u128,
    pub integration_name: Sym,
    pub service_name: Sym,
    pub flow_name: Sym,
    /// Names come from the newest event seen, so a rename shows up.
    pub names_at_ms: i64,
    pub hours: BTreeMap<i64, HourStat>,
    pub samples: Vec<Sample>,
}

impl GroupState {
    pub fn total_in(&self, start_ms: i64, end_ms: i64) -> u64 {
        self.hours
            .range(start_ms..end_ms)
            .map(|(_, s)| s.count)
            .sum()
    }

    /// Hour buckets are time-ordered, so the first bucket holds the earliest occurrence.
    pub fn first_seen_ms(&self) -> Option<i64> {
        self.hours.first_key_value().map(|(_, s)| s.first_ms)
    }

    pub fn last_seen_ms(&self) -> Option<i64> {
        self.hours.last_key_value().map(|(_, s)| s.last_ms)
    }

    fn record(&mut self, at_ms: i64, event_id: &str, message: Sym) {
        let stat = self
            .hours
            .entry(floor_to(at_ms, HOUR_MS))
            .or_insert(HourStat {
                count: 0,
                first_ms: at_ms,
                last_ms: at_ms,
            });
        stat.count += 1;
        stat.first_ms = stat.first_ms.min(at_ms);
        stat.last_ms = stat.last_ms.max(at_ms);
        self.add_sample(at_ms, event_id, message);
    }

    fn add_sample(&mut self, at_ms: i64, event_id: &str, message: Sym) {
        if let Some(oldest) = self.samples.get(SAMPLES_PER_GROUP - 1) {
            if sample_order(oldest.occurred_at_ms, &oldest.event_id, at_ms, event_id).is_lt() {
                return;
            }
        }
        let position = self.samples.partition_point(|s| {
            sample_order(s.occurred_at_ms, &s.event_id, at_ms, event_id).is_lt()
        });
        if position >= SAMPLES_PER_GROUP {
            return;
        }
        self.samples.insert(
            position,
            Sample {
                event_id: event_id.into(),
                occurred_at_ms: at_ms,
                message,
            },
        );
        self.samples.truncate(SAMPLES_PER_GROUP);
    }
}

/// Stable across partitions, instances and restarts: a hash of the group's identity.
pub fn failure_id(tenant_id: &str, parts: &GroupIdentity<'_>) -> u128 {
    let mut buffer = Vec::with_capacity(128);
    for field in [
        tenant_id,
        parts.integration_type.as_str(),
        parts.integration_id,
        parts.service_id,
        parts.flow_id,
    ] {
        buffer.extend_from_slice(field.as_bytes());
        buffer.push(0x1f);
    }
    buffer.extend_from_slice(&parts.status_code.to_be_bytes());
    buffer.push(0x1f);
    buffer.extend_from_slice(parts.description.as_bytes());
    xxhash_rust::xxh3::xxh3_128(&buffer)
}

pub fn format_failure_id(id: u128) -> String {
    format!("{id:032x}")
}

pub fn parse_failure_id(text: &str) -> Option<u128> {
    if text.len() != 32 {
        return None;
    }
    u128::from_str_radix(text, 16).ok()
}

/// The strings that identify a failure group.
#[derive(Debug, Clone, Copy)]
pub struct GroupIdentity<'a> {
    pub integration_type: IntegrationType,
    pub integration_id: &'a str,
    pub service_id: &'a str,
    pub flow_id: &'a str,
    pub status_code: u16,
    pub description: &'a str,
}

#[derive(Debug, Default, Serialize, Deserialize)]
pub struct TenantState {
    pub minutes: BTreeMap<i64, TypeCounts>,
    pub hours: BTreeMap<i64, TypeCounts>,
    pub codes: BTreeMap<i64, HashMap<(IntegrationType, u16), u64>>,
    pub groups: HashMap<GroupKey, GroupState>,
    /// Failures that went to an overflow group because the group cap was reached.
    pub overflowed: u64,
}

impl TenantState {
    pub fn is_empty(&self) -> bool {
        self.hours.is_empty() && self.groups.is_empty()
    }

    /// Sums counts over `[start_ms, end_ms)` from minute or hour buckets.
    pub fn counts_in(&self, start_ms: i64, end_ms: i64, by_minute: bool) -> TypeCounts {
        let buckets = if by_minute {
            &self.minutes
        } else {
            &self.hours
        };
        let mut total = TypeCounts::default();
        for counts in buckets.range(start_ms..end_ms).map(|(_, c)| c) {
            total.add(counts);
        }
        total
    }
}

/// What happened to one valid event.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Applied {
    Accepted,
    Duplicate,
    LateDropped,
}

#[derive(Debug, Default, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct IngestTotals {
    pub accepted: u64,
    pub rejected: u64,
    pub duplicates: u64,
    pub late_dropped: u64,
    pub overflowed: u64,
}

impl IngestTotals {
    pub fn add(&mut self, other: &IngestTotals) {
        self.accepted += other.accepted;
        self.rejected += other.rejected;
        self.duplicates += other.duplicates;
        self.late_dropped += other.late_dropped;
        self.overflowed += other.overflowed;
    }

    pub fn seen(&self) -> u64 {
        self.accepted + self.rejected + self.duplicates + self.late_dropped
    }
}

/// Remembers the most recent `capacity` (tenant, event_id) keys, oldest forgotten first.
///
/// Producer retries resend a message within `delivery.timeout.ms` (2 minutes by default) and,
/// being the same keyed message, land on the same partition. A window of 1M keys per partition
/// covers more than 3 minutes at 5k events/s per partition, so retries are caught. Keys are
/// 128-bit hashes: a false match needs ~2^64 keys, far beyond any window.
#[derive(Debug)]
pub struct Dedup {
    seen: HashSet<u128>,
    order: VecDeque<u128>,
    capacity: usize,
}

impl Dedup {
    pub fn new(capacity: usize) -> Self {
        Dedup {
            seen: HashSet::default(),
            order: VecDeque::new(),
            capacity: capacity.max(1),
        }
    }

    pub fn key(tenant_id: &str, event_id: &str) -> u128 {
        let mut hasher = xxhash_rust::xxh3::Xxh3::new();
        hasher.update(tenant_id.as_bytes());
        hasher.update(&[0]);
        hasher.update(event_id.as_bytes());
        hasher.digest128()
    }

    /// True when the key is new.
    pub fn insert(&mut self, key: u128) -> bool {
        if !self.seen.insert(key) {
            return false;
        }
        self.order.push_back(key);
        if self.order.len() > self.capacity {
            if let Some(oldest) = self.order.pop_front() {
                self.seen.remove(&oldest);
            }
        }
        true
    }

    pub fn len(&self) -> usize {
        self.order.len()
    }

    pub fn is_empty(&self) -> bool {
        self.order.is_empty()
    }

    /// Applies a (possibly new) capacity, forgetting the oldest keys if it shrank.
    pub fn set_capacity(&mut self, capacity: usize) {
        self.capacity = capacity.max(1);
        while self.order.len() > self.capacity {
            if let Some(oldest) = self.order.pop_front() {
                self.seen.remove(&oldest);
            }
        }
    }
}

/// Stored as the keys in arrival order; the set is rebuilt on load.
impl Serialize for Dedup {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        (self.capacity, &self.order).serialize(serializer)
    }
}

impl<'de> Deserialize<'de> for Dedup {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let (capacity, order): (usize, VecDeque<u128>) = Deserialize::deserialize(deserializer)?;
        let seen = order.iter().copied().collect();
        Ok(Dedup {
            seen,
            order,
            capacity,
        })
    }
}

/// Everything one partition has counted, and where in the partition counting stops.
#[derive(Debug, Serialize, Deserialize)]
pub struct PartitionState {
    /// Exclusive: the offset of the next message to apply. Every message below it has been
    /// applied (or rejected) exactly once. `None` means nothing applied yet: start at earliest.
    pub next_offset: Option<i64>,
    pub interner: Interner,
    pub tenants: HashMap<Sym, TenantState>,
    pub dedup: Dedup,
    pub totals: IngestTotals,
}

impl PartitionState {
    pub fn new(limits: &StoreLimits) -> Self {
        PartitionState {
            next_offset: None,
            interner: Interner::default(),
            tenants: HashMap::default(),
            dedup: Dedup::new(limits.dedup_capacity),
            totals: IngestTotals::default(),
        }
    }

    /// True when the message at `offset` has already been applied (a re-delivery).
    pub fn already_applied(&self, offset: i64) -> bool {
        self.next_offset.is_some_and(|next| offset < next)
    }

    pub fn mark_applied(&mut self, offset: i64) {
        debug_assert!(!self.already_applied(offset), "offsets must move forward");
        self.next_offset = Some(offset + 1);
    }

    pub fn record_rejected(&mut self) {
        self.totals.rejected += 1;
    }

    pub fn tenant(&self, tenant_id: &str) -> Option<&TenantState> {
        self.interner
            .get(tenant_id)
            .and_then(|sym| self.tenants.get(&sym))
    }

    pub fn apply(&mut self, event: &Event<'_>, limits: &StoreLimits, now_ms: i64) -> Applied {
        if event.occurred_at_ms < now_ms - limits.retention_ms {
            self.totals.late_dropped += 1;
            return Applied::LateDropped;
        }
        if !self
            .dedup
            .insert(Dedup::key(&event.tenant_id, &event.event_id))
        {
            self.totals.duplicates += 1;
            return Applied::Duplicate;
        }
        self.totals.accepted += 1;
        let tenant_sym = self.interner.intern(&event.tenant_id);
        let at = event.occurred_at_ms;
        let tenant = self.tenants.entry(tenant_sym).or_default();
        if floor_to(at, MINUTE_MS) >= limits.minute_floor(now_ms) {
            tenant
                .minutes
                .entry(floor_to(at, MINUTE_MS))
                .or_default()
                .record(event.integration_type, event.outcome);
        }
        let hour = floor_to(at, HOUR_MS);
        tenant
            .hours
            .entry(hour)
            .or_default()
            .record(event.integration_type, event.outcome);
        if event.outcome == Outcome::Failure {
            let code = event.status_code.unwrap_or(0);
            *tenant
                .codes
                .entry(hour)
                .or_default()
                .entry((event.integration_type, code))
                .or_insert(0) += 1;
            self.record_failure(tenant_sym, event, code, limits);
        }
        Applied::Accepted
    }

    fn record_failure(
        &mut self,
        tenant_sym: Sym,
        event: &Event<'_>,
        code: u16,
        limits: &StoreLimits,
    ) {
        let description = event
            .error_message
            .as_deref()
            .unwrap_or_else(|| catalog::name_of(code));
        let mut identity = GroupIdentity {
            integration_type: event.integration_type,
            integration_id: &event.integration_id,
            service_id: event.service_id.as_deref().unwrap_or(""),
            flow_id: event.flow_id.as_deref().unwrap_or(""),
            status_code: code,
            description,
        };
        let mut names = [
            event.integration_name.as_ref(),
            event.service_name.as_deref().unwrap_or(""),
            event.flow_name.as_deref().unwrap_or(""),
        ];
        let mut key = self.group_key(&identity);
        let group_count = self.tenants.get(&tenant_sym).map_or(0, |t| t.groups.len());
        let known = self
            .tenants
            .get(&tenant_sym)
            .is_some_and(|t| t.groups.contains_key(&key));
        let overflow = !known && group_count >= limits.group_cap_per_tenant;
        if overflow {
            identity = GroupIdentity {
                integration_id: "",
                service_id: "",
                flow_id: "",
                description: OVERFLOW_DESCRIPTION,
                ..identity
            };
            names = ["(group limit reached)", "", ""];
            key = self.group_key(&identity);
            self.totals.overflowed += 1;
        }
        let message = self.interner.intern(description);
        let name_syms = names.map(|n| self.interner.intern(n));
        let interner = &self.interner;
        let Some(tenant) = self.tenants.get_mut(&tenant_sym) else {
            return;
        };
        if overflow {
            tenant.overflowed += 1;
        }
        let group = tenant.groups.entry(key).or_insert_with(|| GroupState {
            failure_id: failure_id(interner.resolve(tenant_sym), &identity),
            integration_name: name_syms[0],
            service_name: name_syms[1],
            flow_name: name_syms[2],
            names_at_ms: event.occurred_at_ms,
            hours: BTreeMap::new(),
            samples: Vec::new(),
        });
        if event.occurred_at_ms >= group.names_at_ms {
            group.names_at_ms = event.occurred_at_ms;
            [group.integration_name, group.service_name, group.flow_name] = name_syms;
        }
        group.record(event.occurred_at_ms, &event.event_id, message);
    }

    fn group_key(&mut self, identity: &GroupIdentity<'_>) -> GroupKey {
        GroupKey {
            integration_type: identity.integration_type,
            integration_id: self.interner.intern(identity.integration_id),
            service_id: self.interner.intern(identity.service_id),
            flow_id: self.interner.intern(identity.flow_id),
            status_code: identity.status_code,
            description: self.interner.intern(identity.description),
        }
    }

    /// Drops buckets that have left the minute window or retention, and groups left empty.
    pub fn evict(&mut self, limits: &StoreLimits, now_ms: i64) {
        let minute_floor = limits.minute_floor(now_ms);
        let hour_floor = limits.retention_floor(now_ms);
        for tenant in self.tenants.values_mut() {
            tenant.minutes = tenant.minutes.split_off(&minute_floor);
            tenant.hours = tenant.hours.split_off(&hour_floor);
            tenant.codes = tenant.codes.split_off(&hour_floor);
            tenant.groups.retain(|_, group| {
                group.hours = group.hours.split_off(&hour_floor);
                group.samples.retain(|s| s.occurred_at_ms >= hour_floor);
                !group.hours.is_empty()
            });
        }
        self.tenants.retain(|_, tenant| !tenant.is_empty());
    }

    /// A rough count of the heap bytes this state holds: entries times their sizes plus a
    /// per-entry allowance for map overhead. Good for trends and ratios, not for accounting.
    pub fn approx_bytes(&self) -> u64 {
        use std::mem::size_of;
        const MAP_ENTRY_OVERHEAD: usize = 16;
        let counts = size_of::<i64>() + size_of::<TypeCounts>() + MAP_ENTRY_OVERHEAD;
        let strings: usize = self
            .interner
            .strings
            .iter()
            .map(|s| s.len() + 2 * (size_of::<Arc<str>>() + MAP_ENTRY_OVERHEAD))
            .sum();
        let mut total = strings + self.dedup.len() * (2 * size_of::<u128>() + MAP_ENTRY_OVERHEAD);
        for tenant in self.tenants.values() {
            total += (tenant.minutes.len() + tenant.hours.len()) * counts;
            total += tenant
                .codes
                .values()
                .map(|c| MAP_ENTRY_OVERHEAD + c.len() * (16 + MAP_ENTRY_OVERHEAD))
                .sum::<usize>();
            for group in tenant.groups.values() {
                total += size_of::<GroupKey>() + size_of::<GroupState>() + MAP_ENTRY_OVERHEAD;
                total += group.hours.len()
                    * (size_of::<i64>() + size_of::<HourStat>() + MAP_ENTRY_OVERHEAD);
                total += group
                    .samples
                    .iter()
                    .map(|s| size_of::<Sample>() + s.event_id.len())
                    .sum::<usize>();
            }
        }
        total as u64
    }

    pub fn group_count(&self) -> usize {
        self.tenants.values().map(|t| t.groups.len()).sum()
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct PartitionKey {
    pub topic: Arc<str>,
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
pub type SharedPartition = Arc<RwLock<PartitionState>>;

/// The newest durable snapshot of a partition.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct SnapshotStatus {
    /// Exclusive: the first offset the snapshot does not cover.
    pub next_offset: i64,
    pub written_at_ms: i64,
    pub bytes: u64,
    /// Time spent encoding on the owner thread: the pause ingest sees.
    pub encode_ms: f64,
    pub write_ms: f64,
}

/// How much the store holds, for metrics.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Cardinality {
    pub tenants: u64,
    pub groups: u64,
    pub buckets: u64,
}

/// All partitions this instance owns, plus what ingest learned about the brokers.
#[derive(Debug)]
pub struct Store {
    /// Set once the consumer group has given this instance its first assignment.
    assigned: std::sync::atomic::AtomicBool,
    limits: StoreLimits,
    partitions: DashMap<PartitionKey, SharedPartition>,
    high_watermarks: DashMap<PartitionKey, i64>,
    snapshots: DashMap<PartitionKey, SnapshotStatus>,
}

impl Store {
    pub fn new(limits: StoreLimits) -> Self {
        Store {
            assigned: std::sync::atomic::AtomicBool::new(false),
            limits,
            partitions: DashMap::new(),
            high_watermarks: DashMap::new(),
            snapshots: DashMap::new(),
        }
    }

    pub fn limits(&self) -> &StoreLimits {
        &self.limits
    }

    pub fn mark_assigned(&self) {
        self.assigned
            .store(true, std::sync::atomic::Ordering::SeqCst);
    }

    pub fn has_assignment(&self) -> bool {
        self.assigned.load(std::sync::atomic::Ordering::SeqCst)
    }

    pub fn cardinality(&self) -> Cardinality {
        let mut total = Cardinality::default();
        for (_, partition) in self.partitions() {
            let state = partition.read();
            total.tenants += state.tenants.len() as u64;
            for tenant in state.tenants.values() {
                total.groups += tenant.groups.len() as u64;
                total.buckets +=
                    (tenant.minutes.len() + tenant.hours.len() + tenant.codes.len()) as u64;
            }
        }
        total
    }

    pub fn partition(&self, key: &PartitionKey) -> Option<SharedPartition> {
        self.partitions.get(key).map(|p| p.clone())
    }

    pub fn attach(&self, key: PartitionKey, shared: SharedPartition) {
        self.partitions.insert(key, shared);
    }

    pub fn get_or_create(&self, key: &PartitionKey) -> SharedPartition {
        self.partitions
            .entry(key.clone())
            .or_insert_with(|| Arc::new(RwLock::new(PartitionState::new(&self.limits))))
            .clone()
    }

    pub fn remove_partition(&self, key: &PartitionKey) -> Option<SharedPartition> {
        self.high_watermarks.remove(key);
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

    pub fn set_high_watermark(&self, key: PartitionKey, offset: i64) {
        self.high_watermarks.insert(key, offset);
    }

    pub fn set_snapshot_status(&self, key: PartitionKey, status: SnapshotStatus) {
        self.snapshots.insert(key, status);
    }

    pub fn snapshot_status(&self, key: &PartitionKey) -> Option<SnapshotStatus> {
        self.snapshots.get(key).map(|s| *s)
    }

    pub fn high_watermark(&self, key: &PartitionKey) -> Option<i64> {
        self.high_watermarks.get(key).map(|v| *v)
    }

    pub fn totals(&self) -> IngestTotals {
        let mut totals = IngestTotals::default();
        for (_, partition) in self.partitions() {
            totals.add(&partition.read().totals);
        }
        totals
    }

    pub fn evict(&self, now_ms: i64) {
        for (_, partition) in self.partitions() {
            partition.write().evict(&self.limits, now_ms);
        }
    }
}

#[cfg(test)]
mod tests {
    use std::borrow::Cow;

    use proptest::prelude::*;

    use super::*;

    const NOW: i64 = 1_767_225_600_000;

    fn failure(id: &str, at: i64, code: u16) -> Event<'static> {
        Event {
            event_id: Cow::Owned(id.to_owned()),
            tenant_id: Cow::Borrowed("t1"),
            occurred_at_ms: at,
            integration_type: IntegrationType::CustomNode,
            integration_id: Cow::Borrowed("node-1"),
            integration_name: Cow::Borrowed("CRM lookup"),
            outcome: Outcome::Failure,
            status_code: Some(code),
            error_message: None,
            flow_id: Some(Cow::Borrowed("f1")),
            flow_name: None,
            service_id: None,
            service_name: None,
            latency_ms: None,
        }
    }

    #[test]
    fn floor_and_ceil_handle_negative_times() {
        assert_eq!(floor_to(-1, HOUR_MS), -HOUR_MS);
        assert_eq!(ceil_to(-1, HOUR_MS), 0);
        assert_eq!(ceil_to(HOUR_MS, HOUR_MS), HOUR_MS);
    }

    #[test]
    fn dedup_counts_a_repeat_once_and_forgets_beyond_capacity() {
        let mut dedup = Dedup::new(2);
        assert!(dedup.insert(1));
        assert!(!dedup.insert(1));
        assert!(dedup.insert(2));
        assert!(dedup.insert(3));
        assert!(dedup.insert(1), "1 fell out of the window");
    }

    #[test]
    fn groups_keep_exact_first_last_and_five_newest_samples() {
        let limits = StoreLimits::default();
        let mut state = PartitionState::new(&limits);
        for i in 0..8 {
            let at = NOW - 10 * HOUR_MS + i * 7_777;
            assert_eq!(
                state.apply(&failure(&format!("e{i}"), at, 404), &limits, NOW),
                Applied::Accepted
            );
        }
        let tenant = state.tenant("t1").unwrap();
        let group = tenant.groups.values().next().unwrap();
        assert_eq!(group.first_seen_ms(), Some(NOW - 10 * HOUR_MS));
        assert_eq!(group.last_seen_ms(), Some(NOW - 10 * HOUR_MS + 7 * 7_777));
        let ids: Vec<&str> = group.samples.iter().map(|s| &*s.event_id).collect();
        assert_eq!(ids, ["e7", "e6", "e5", "e4", "e3"]);
        assert_eq!(
            state.interner.resolve(group.samples[0].message),
            "Not Found"
        );
    }

    #[test]
    fn group_cap_overflows_into_a_counted_catch_all() {
        let limits = StoreLimits {
            group_cap_per_tenant: 2,
            ..StoreLimits::default()
        };
        let mut state = PartitionState::new(&limits);
        for (i, code) in [400u16, 401, 403, 404, 404].into_iter().enumerate() {
            state.apply(
                &failure(&format!("e{i}"), NOW - HOUR_MS, code),
                &limits,
                NOW,
            );
        }
        let tenant = state.tenant("t1").unwrap();
        assert_eq!(
            tenant.groups.len(),
            4,
            "two real groups plus two overflow groups (403, 404)"
        );
        assert_eq!(tenant.overflowed, 3);
        let total: u64 = tenant
            .groups
            .values()
            .map(|g| g.total_in(i64::MIN, i64::MAX))
            .sum();
        assert_eq!(total, 5, "nothing is lost");
    }

    #[test]
    fn late_events_are_dropped_and_eviction_honours_retention() {
        let limits = StoreLimits::default();
        let mut state = PartitionState::new(&limits);
        let too_old = NOW - limits.retention_ms - 1;
        assert_eq!(
            state.apply(&failure("old", too_old, 500), &limits, NOW),
            Applied::LateDropped
        );
        state.apply(&failure("a", NOW - 3 * DAY_MS, 500), &limits, NOW);
        state.apply(&failure("b", NOW - HOUR_MS, 500), &limits, NOW);
        state.evict(&limits, NOW + 60 * DAY_MS);
        let tenant = state.tenant("t1").unwrap();
        assert_eq!(tenant.hours.len(), 1);
        assert!(tenant.minutes.is_empty());
        assert_eq!(state.totals.late_dropped, 1);
    }

    proptest! {
        #[test]
        fn floor_and_ceil_bracket_the_time(t in -10_i64.pow(15)..10_i64.pow(15), width in 1_i64..10_i64.pow(8)) {
            let f = floor_to(t, width);
            let c = ceil_to(t, width);
            prop_assert!(f <= t && t < f + width);
            prop_assert!(c >= t && c - t < width);
            prop_assert_eq!(f.rem_euclid(width), 0);
            prop_assert_eq!(c.rem_euclid(width), 0);
        }

        #[test]
        fn minute_and_hour_buckets_agree(offsets in proptest::collection::vec(0_i64..(47 * HOUR_MS), 1..200)) {
            let limits = StoreLimits::default();
            let mut state = PartitionState::new(&limits);
            for (i, off) in offsets.iter().enumerate() {
                state.apply(&failure(&format!("e{i}"), NOW - off, 503), &limits, NOW);
            }
            let tenant = state.tenant("t1").unwrap();
            let start = floor_to(NOW - 47 * HOUR_MS, HOUR_MS);
            let end = ceil_to(NOW + 1, HOUR_MS);
            prop_assert_eq!(tenant.counts_in(start, end, true), tenant.counts_in(start, end, false));
            let total: u64 = tenant.counts_in(start, end, false).failed.iter().sum();
            prop_assert_eq!(total, offsets.len() as u64);
        }
    }
}
