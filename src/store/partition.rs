//! Everything one Kafka partition has counted, and the offset where counting stops.

use rustc_hash::FxHashMap as HashMap;
use serde::{Deserialize, Serialize};

use super::dedup::Dedup;
use super::group_buckets::GroupBuckets;
use super::groups::{
    failure_id, GroupIdentity, GroupKey, GroupState, Rekey, OVERFLOW_DESCRIPTION, OVERFLOW_NAME,
};
use super::integrations::{
    record_minute_failure, IntegrationKey, IntegrationState, OVERFLOW_INTEGRATION_NAME, RECENT_MS,
};
use super::interner::{Interner, Sym};
use super::losses::LostOffsets;
use super::probation::ProbationQueue;
use super::retries::{Retries, RetryKey};
use super::tenant::TenantState;
use super::time::{floor_to, StoreLimits, HOUR_MS, MINUTE_MS};
use crate::catalog;
use crate::event::{Event, EventError, Outcome};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Applied {
    Accepted,
    Duplicate,
    LateDropped,
}

#[derive(Debug, Default, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct IngestTotals {
    pub(crate) accepted: u64,
    pub(crate) rejected: u64,
    pub(crate) duplicates: u64,
    pub(crate) late_dropped: u64,
    pub(crate) overflowed: u64,
}

impl IngestTotals {
    pub(crate) fn add(&mut self, other: &IngestTotals) {
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

/// How many events ahead of the one being applied `PartitionState::prefetch_ahead` asks the
/// memory for a dedup slot (measured in docs/performance.md).
const EVENT_AHEAD: usize = 8;

/// An event and its dedup key, computed once for both `PartitionState::prefetch_ahead` and
/// `PartitionState::apply_keyed`.
pub struct KeyedEvent<'e, 'a> {
    event: &'e Event<'a>,
    key: u64,
}

impl<'e, 'a> KeyedEvent<'e, 'a> {
    pub fn new(event: &'e Event<'a>) -> Self {
        KeyedEvent {
            event,
            key: Dedup::key(&event.tenant_id, &event.event_id),
        }
    }

    /// Each decoded event of a chunk with its key; the errors stay as they are.
    pub fn chunk(events: &'e [Result<Event<'a>, EventError>]) -> Vec<Result<Self, &'e EventError>> {
        events
            .iter()
            .map(|event| event.as_ref().map(KeyedEvent::new))
            .collect()
    }

    pub fn event(&self) -> &'e Event<'a> {
        self.event
    }
}

#[derive(Debug, Serialize, Deserialize)]
pub struct PartitionState {
    /// Exclusive: the offset of the next message to apply. Every message below it has been
    /// applied (or rejected) exactly once. `None` means nothing applied yet: start at earliest.
    next_offset: Option<i64>,
    pub(crate) interner: Interner,
    pub(crate) tenants: HashMap<Sym, TenantState>,
    pub(crate) dedup: Dedup,
    pub(crate) totals: IngestTotals,
    /// Interner size right after the last compaction (0: never compacted).
    #[serde(default)]
    interned_after_compaction: usize,
    /// Offsets never read, kept for the retention after they were found. Snapshot formats
    /// before 6 end where this begins.
    pub(crate) losses: Vec<LostOffsets>,
    /// Retried outcomes, per integration whose events tell retries. Serialized last: snapshot
    /// formats before 7 end where this begins.
    pub(crate) retries: HashMap<RetryKey, Retries>,
    /// Every hour before this (the start of a UTC day) is counted in its day too; the snapshot's
    /// day section carries it with the days.
    #[serde(skip)]
    pub(crate) rolled_until: i64,
    /// The thread that applies events, checked in debug builds: one writer per partition.
    #[serde(skip)]
    writer: std::sync::OnceLock<std::thread::ThreadId>,
    /// Ids that a migration on restore changed, until their issue actions are moved.
    #[serde(skip)]
    pub(crate) rekeys: Vec<Rekey>,
    /// Tenants on probation, which may be evicted to admit a new one at the cap, longest idle
    /// first; rebuilt by eviction rounds and on restore.
    #[serde(skip)]
    pub(super) probation: ProbationQueue,
    /// Tenants evicted since the owner last looked, with their event counts, to report.
    #[serde(skip)]
    pub(crate) evicted: Vec<(String, u64)>,
}

impl PartitionState {
    pub fn new(limits: &StoreLimits) -> Self {
        PartitionState {
            next_offset: None,
            interner: Interner::default(),
            tenants: HashMap::default(),
            dedup: Dedup::new(limits.dedup_capacity),
            totals: IngestTotals::default(),
            interned_after_compaction: 0,
            writer: std::sync::OnceLock::new(),
            rekeys: Vec::new(),
            losses: Vec::new(),
            retries: HashMap::default(),
            rolled_until: i64::MIN,
            probation: ProbationQueue::default(),
            evicted: Vec::new(),
        }
    }

    fn debug_assert_single_writer(&self) {
        if cfg!(debug_assertions) {
            let current = std::thread::current().id();
            debug_assert_eq!(
                *self.writer.get_or_init(|| current),
                current,
                "one writer per partition"
            );
        }
    }

    /// True when the message at `offset` has already been applied (a re-delivery).
    pub(crate) fn already_applied(&self, offset: i64) -> bool {
        self.next_offset.is_some_and(|next| offset < next)
    }

    pub fn mark_applied(&mut self, offset: i64) {
        debug_assert!(!self.already_applied(offset), "offsets must move forward");
        self.next_offset = Some(offset + 1);
    }

    /// The offset to read next; `None` before anything was read.
    pub fn next_offset(&self) -> Option<i64> {
        self.next_offset
    }

    /// Resumes reading at `offset` (past a gap the log no longer holds). Offsets only move
    /// forward: an earlier `offset` changes nothing.
    pub(crate) fn skip_to(&mut self, offset: i64) {
        if self.next_offset.is_none_or(|next| offset > next) {
            self.next_offset = Some(offset);
        }
    }

    pub fn record_rejected(&mut self) {
        self.totals.rejected += 1;
    }

    pub(crate) fn tenant(&self, tenant_id: &str) -> Option<&TenantState> {
        self.interner
            .get(tenant_id)
            .and_then(|sym| self.tenants.get(&sym))
    }

    /// Called before applying the `i`th event of `chunk`: hints that an event a few places on
    /// will be applied soon, so the memory it will touch is fetched while the ones before it
    /// are applied.
    pub fn prefetch_ahead(&self, chunk: &[Result<KeyedEvent<'_, '_>, &EventError>], i: usize) {
        if let Some(Ok(ahead)) = chunk.get(i + EVENT_AHEAD) {
            self.dedup.prefetch(ahead.key);
        }
    }

    /// Counts one valid event. Refuses, without counting anything, the first event of a new
    /// tenant once the partition holds `tenant_cap_per_partition` tenants.
    pub fn apply(
        &mut self,
        event: &Event<'_>,
        limits: &StoreLimits,
        now_ms: i64,
    ) -> Result<Applied, EventError> {
        self.apply_keyed(&KeyedEvent::new(event), limits, now_ms)
    }

    /// `apply` for an event whose dedup key was computed already, for `prefetch_ahead`.
    pub fn apply_keyed(
        &mut self,
        keyed: &KeyedEvent<'_, '_>,
        limits: &StoreLimits,
        now_ms: i64,
    ) -> Result<Applied, EventError> {
        let event = keyed.event;
        self.debug_assert_single_writer();
        if event.occurred_at_ms < now_ms - limits.day_retention_ms {
            self.totals.late_dropped += 1;
            return Ok(Applied::LateDropped);
        }
        let interned = self.interner.get(&event.tenant_id);
        let known_tenant = interned.is_some_and(|sym| self.tenants.contains_key(&sym));
        if !known_tenant
            && self.tenants.len() >= limits.tenant_cap_per_partition
            && !self.make_room()
        {
            return Err(EventError::TenantLimit {
                tenant: event.tenant_id.to_string(),
                cap: limits.tenant_cap_per_partition,
            });
        }
        if !self.dedup.insert(keyed.key) {
            self.totals.duplicates += 1;
            return Ok(Applied::Duplicate);
        }
        self.totals.accepted += 1;
        let tenant_sym = match interned {
            Some(sym) => sym,
            None => self.interner.intern(&event.tenant_id),
        };
        let at = event.occurred_at_ms;
        let tenant = self
            .tenants
            .entry(tenant_sym)
            .or_insert_with(|| TenantState::new(limits.window_start(now_ms)));
        if floor_to(at, MINUTE_MS) >= limits.minute_floor(now_ms) {
            tenant
                .minutes
                .slot(floor_to(at, MINUTE_MS))
                .record(event.integration_type, event.outcome);
        }
        let (kind, outcome, code) = (
            event.integration_type,
            event.outcome,
            event.status_code.unwrap_or(0),
        );
        tenant.record(at, kind, outcome, code, self.rolled_until);
        // `record_integration` counts this event in `tenant.events` below.
        let events = tenant.events + 1;
        self.probation
            .note(tenant_sym, tenant, events, now_ms, limits);
        self.record_integration(tenant_sym, event, limits, now_ms);
        if event.outcome == Outcome::Failure {
            let code = event.status_code.unwrap_or(0);
            self.record_failure(tenant_sym, event, code, limits);
        }
        Ok(Applied::Accepted)
    }

    /// Counts the event in its integration's hour and, for a failure inside the minute window,
    /// in its minute's failures.
    fn record_integration(
        &mut self,
        tenant_sym: Sym,
        event: &Event<'_>,
        limits: &StoreLimits,
        now_ms: i64,
    ) {
        let key = match self.known_integration(tenant_sym, event) {
            Some(key) => key,
            None => self.new_integration_key(tenant_sym, event, limits),
        };
        // The name is interned only when it is new or has changed.
        let stored_name = self
            .tenants
            .get(&tenant_sym)
            .and_then(|t| t.integrations.get(&key))
            .map(|i| (i.name, i.name_at_ms));
        let wanted = if self.interner.resolve(key.integration_id).is_empty() {
            OVERFLOW_INTEGRATION_NAME
        } else {
            event.integration_name.as_ref()
        };
        let name = match stored_name {
            Some((sym, _)) if self.interner.resolve(sym) == wanted => sym,
            // An older event does not rename the integration.
            Some((sym, at)) if event.occurred_at_ms < at => sym,
            _ => self.interner.intern(wanted),
        };
        let Some(tenant) = self.tenants.get_mut(&tenant_sym) else {
            return;
        };
        let at = event.occurred_at_ms;
        let failed = event.outcome == Outcome::Failure;
        tenant.events += 1;
        tenant.failures += u64::from(failed);
        let integration = tenant
            .integrations
            .entry(key)
            .or_insert_with(|| IntegrationState::new(name, at));
        if at >= integration.name_at_ms {
            integration.name = name;
            integration.name_at_ms = at;
        }
        let rolled = self.rolled_until;
        integration.record(floor_to(at, HOUR_MS), rolled, at, failed, event.latency_ms);
        let minute = floor_to(at, MINUTE_MS);
        if minute >= now_ms - RECENT_MS {
            integration.minutes.record(minute, failed);
        }
        if failed && minute >= limits.minute_floor(now_ms) {
            let list = tenant.minute_failures.slot(minute);
            record_minute_failure(list, key, event.status_code.unwrap_or(0));
        }
        if event.tells_retries() {
            let retry_key = RetryKey {
                tenant_id: event.tenant_id.to_string(),
                integration_type: key.integration_type,
                integration_id: self.interner.resolve(key.integration_id).to_owned(),
            };
            let retries = self.retries.entry(retry_key).or_default();
            retries.record(event, now_ms - RECENT_MS, rolled);
        }
    }

    /// The key of the event's integration when the tenant already has it.
    fn known_integration(&self, tenant_sym: Sym, event: &Event<'_>) -> Option<IntegrationKey> {
        let key = IntegrationKey {
            integration_type: event.integration_type,
            integration_id: self.interner.get(&event.integration_id)?,
        };
        let tenant = self.tenants.get(&tenant_sym)?;
        tenant.integrations.contains_key(&key).then_some(key)
    }

    /// The key for an integration the tenant does not have yet: its own, or, past the cap, the
    /// overflow integration of its type, whose id is empty (no event's id can be) so nothing of
    /// the event is interned.
    fn new_integration_key(
        &mut self,
        tenant_sym: Sym,
        event: &Event<'_>,
        limits: &StoreLimits,
    ) -> IntegrationKey {
        let count = self
            .tenants
            .get(&tenant_sym)
            .map_or(0, |t| t.integrations.len());
        let id = if count < limits.integration_cap_per_tenant {
            event.integration_id.as_ref()
        } else {
            ""
        };
        IntegrationKey {
            integration_type: event.integration_type,
            integration_id: self.interner.intern(id),
        }
    }

    /// Counts a failure in its group. Whether the group exists, or must overflow because the
    /// tenant is at its cap, is decided before anything is interned, so an overflowing failure
    /// stores no new string.
    fn record_failure(
        &mut self,
        tenant_sym: Sym,
        event: &Event<'_>,
        code: u16,
        limits: &StoreLimits,
    ) {
        let description = catalog::stored_description(event.error_message.as_deref(), code);
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
        let tenant = self.tenants.get(&tenant_sym);
        let known = self
            .existing_key(&identity)
            .is_some_and(|key| tenant.is_some_and(|t| t.groups.contains_key(&key)));
        let group_count = tenant.map_or(0, |t| t.groups.len());
        let overflow = !known && group_count >= limits.group_cap_per_tenant;
        if overflow {
            identity = GroupIdentity {
                integration_id: "",
                service_id: "",
                flow_id: "",
                description: OVERFLOW_DESCRIPTION,
                ..identity
            };
            names = [OVERFLOW_NAME, "", ""];
            self.totals.overflowed += 1;
        }
        let key = self.group_key(&identity);
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
            buckets: GroupBuckets::default(),
            samples: Vec::new(),
            window: None,
        });
        if event.occurred_at_ms >= group.names_at_ms {
            group.names_at_ms = event.occurred_at_ms;
            [group.integration_name, group.service_name, group.flow_name] = name_syms;
        }
        if let Some(ranking) = &mut tenant.ranking {
            if group.window.is_none() {
                group.window = Some(ranking.admit(key, group.failure_id));
            }
        }
        group.record(event.occurred_at_ms, &event.event_id, self.rolled_until);
        if let (Some(ranking), Some(window)) = (&mut tenant.ranking, &mut group.window) {
            let hour = floor_to(event.occurred_at_ms, HOUR_MS);
            ranking.note(key, window, hour);
            if ranking.needs_choosing_again() {
                ranking.choose_again(&mut tenant.groups);
            }
        }
    }

    /// The key of `identity` if every one of its strings is already interned; else no group
    /// with that identity can exist.
    fn existing_key(&self, identity: &GroupIdentity<'_>) -> Option<GroupKey> {
        Some(GroupKey {
            integration_type: identity.integration_type,
            integration_id: self.interner.get(identity.integration_id)?,
            service_id: self.interner.get(identity.service_id)?,
            flow_id: self.interner.get(identity.flow_id)?,
            status_code: identity.status_code,
            description: self.interner.get(identity.description)?,
        })
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

    /// Rebuilds the interner with only the strings still referenced, renumbering every symbol.
    /// Strings of evicted groups and displaced samples are otherwise kept (and snapshotted)
    /// forever. Runs when the interner has doubled since the last compaction, so its cost is
    /// amortised over the strings added.
    pub(crate) fn compact_if_grown(&mut self) {
        if self.interner.len() <= 2 * self.interned_after_compaction.max(1024) {
            return;
        }
        self.compact_interner();
    }

    pub(crate) fn compact_interner(&mut self) {
        let old = std::mem::take(&mut self.interner);
        let mut fresh = Interner::default();
        let mut keep = |sym: Sym| fresh.intern(old.resolve(sym));
        let tenants = std::mem::take(&mut self.tenants);
        for (tenant_sym, mut tenant) in tenants {
            // The candidates are group keys, which change here; the next eviction rebuilds them.
            tenant.ranking = None;
            let groups = std::mem::take(&mut tenant.groups);
            for (key, mut group) in groups {
                let key = GroupKey {
                    integration_id: keep(key.integration_id),
                    service_id: keep(key.service_id),
                    flow_id: keep(key.flow_id),
                    description: keep(key.description),
                    ..key
                };
                group.integration_name = keep(group.integration_name);
                group.service_name = keep(group.service_name);
                group.flow_name = keep(group.flow_name);
                tenant.groups.insert(key, group);
            }
            let integrations = std::mem::take(&mut tenant.integrations);
            for (key, mut integration) in integrations {
                let key = IntegrationKey {
                    integration_id: keep(key.integration_id),
                    ..key
                };
                integration.name = keep(integration.name);
                tenant.integrations.insert(key, integration);
            }
            for failures in tenant.minute_failures.values_mut() {
                for failure in failures.iter_mut() {
                    failure.integration.integration_id = keep(failure.integration.integration_id);
                }
            }
            self.tenants.insert(keep(tenant_sym), tenant);
        }
        self.interner = fresh;
        self.interned_after_compaction = self.interner.len();
        // Its keys are the old symbols.
        self.probation = ProbationQueue::of(&self.tenants);
    }

    /// The retried outcomes of a tenant's integration, if its events told any.
    pub(crate) fn retries_of(&self, tenant_id: &str, key: &IntegrationKey) -> Option<&Retries> {
        if self.retries.is_empty() {
            return None;
        }
        self.retries.get(&RetryKey {
            tenant_id: tenant_id.to_owned(),
            integration_type: key.integration_type,
            integration_id: self.interner.resolve(key.integration_id).to_owned(),
        })
    }

    /// Evicts the tenant on probation that has been idle longest, to admit a new one; false
    /// when every tenant has settled. A flood of made-up tenant ids fills the cap with tenants
    /// on probation, and without this a real tenant arriving later would be refused for the
    /// whole retention.
    fn make_room(&mut self) -> bool {
        while let Some(sym) = self.probation.pop_longest_idle() {
            if let Some(tenant) = self.tenants.remove(&sym) {
                let id = self.interner.resolve(sym).to_owned();
                self.evicted.push((id, tenant.events));
                return true;
            }
        }
        false
    }

    /// Offsets of this partition itself that were never read, among the losses still kept.
    pub(crate) fn lost_here(&self) -> u64 {
        self.losses
            .iter()
            .filter(|l| !l.upstream)
            .map(LostOffsets::count)
            .sum()
    }

    #[cfg(test)]
    pub(crate) fn group_count(&self) -> usize {
        self.tenants.values().map(|t| t.groups.len()).sum()
    }
}

#[cfg(test)]
#[path = "partition_tests.rs"]
mod tests;
