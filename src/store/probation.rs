//! Which tenants may be evicted to admit a new one at `tenant_cap_per_partition`.
//!
//! A new tenant is on probation until it has sent events in `tenant_settled_minutes` distinct
//! minutes, or more than `tenant_evict_max_events` events; then it is settled, and a settled
//! tenant is never evicted. At the cap, the tenant on probation that has been idle longest
//! makes room for the new one. Minutes and idleness are read on the service's clock as events
//! arrive, not from `occurred_at`, which the producer chooses: a flood cannot settle its
//! tenants by dating their events minutes apart, nor keep them by dating them now.

use std::collections::BTreeSet;

use rustc_hash::FxHashMap as HashMap;
use serde::{Deserialize, Serialize};

use super::interner::Sym;
use super::partition::PartitionState;
use super::tenant::TenantState;
use super::time::{floor_to, StoreLimits, MINUTE_MS};

/// One tenant on probation: the distinct minutes it has sent events in, and when its last
/// event arrived (service clock, epoch ms).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct Probation {
    minutes: Vec<i64>,
    last_seen_ms: i64,
}

impl Probation {
    /// A tenant seen for the first time.
    pub(crate) fn new() -> Self {
        Probation {
            minutes: Vec::new(),
            last_seen_ms: i64::MIN,
        }
    }

    /// Notes an event arriving at `now_ms`, the tenant's `events`-th; true once it has settled.
    fn note(&mut self, now_ms: i64, events: u64, limits: &StoreLimits) -> bool {
        self.last_seen_ms = self.last_seen_ms.max(now_ms);
        let minute = floor_to(now_ms, MINUTE_MS);
        if !self.minutes.contains(&minute) {
            self.minutes.push(minute);
        }
        self.minutes.len() >= limits.tenant_settled_minutes as usize
            || events > limits.tenant_evict_max_events
    }
}

/// The partition's tenants on probation, longest idle first: the order eviction takes them in.
#[derive(Debug, Default)]
pub(crate) struct ProbationQueue {
    by_last_seen: BTreeSet<(i64, Sym)>,
}

impl ProbationQueue {
    /// The queue of the tenants on probation among `tenants`.
    pub(crate) fn of(tenants: &HashMap<Sym, TenantState>) -> Self {
        let by_last_seen = tenants
            .iter()
            .filter_map(|(sym, tenant)| Some((tenant.probation.as_ref()?.last_seen_ms, *sym)))
            .collect();
        ProbationQueue { by_last_seen }
    }

    /// Notes an accepted event of `tenant`, its `events`-th, arriving at `now_ms`: it stays on
    /// probation, idle from now, or settles and leaves the queue for good.
    pub(crate) fn note(
        &mut self,
        sym: Sym,
        tenant: &mut TenantState,
        events: u64,
        now_ms: i64,
        limits: &StoreLimits,
    ) {
        let Some(probation) = tenant.probation.as_mut() else {
            return;
        };
        self.by_last_seen.remove(&(probation.last_seen_ms, sym));
        if probation.note(now_ms, events, limits) {
            tenant.probation = None;
        } else {
            self.by_last_seen.insert((probation.last_seen_ms, sym));
        }
    }

    /// Takes the tenant on probation that has been idle longest out of the queue.
    pub(crate) fn pop_longest_idle(&mut self) -> Option<Sym> {
        self.by_last_seen.pop_first().map(|(_, sym)| sym)
    }
}

/// The snapshot's section of tenants on probation (format 11 and later).
pub(crate) type ProbationSection = Vec<(Sym, Probation)>;

/// Each tenant on probation with its record, for the snapshot.
pub(crate) fn section_of(tenants: &HashMap<Sym, TenantState>) -> Vec<(Sym, &Probation)> {
    tenants
        .iter()
        .filter_map(|(sym, tenant)| Some((*sym, tenant.probation.as_ref()?.as_ref())))
        .collect()
}

/// Puts the snapshot's records back. A snapshot written before probation (format 10 and
/// older) has none: its tenants with at most `tenant_evict_max_events` events go back on
/// probation, idle since before any other, and the others are settled.
pub(crate) fn restore(
    state: &mut PartitionState,
    section: Option<ProbationSection>,
    limits: &StoreLimits,
) {
    let tenants = &mut state.tenants;
    match section {
        Some(section) => {
            for (sym, probation) in section {
                if let Some(tenant) = tenants.get_mut(&sym) {
                    tenant.probation = Some(Box::new(probation));
                }
            }
        }
        None => {
            for tenant in tenants.values_mut() {
                if tenant.events <= limits.tenant_evict_max_events {
                    tenant.probation = Some(Box::new(Probation::new()));
                }
            }
        }
    }
    state.probation = ProbationQueue::of(&state.tenants);
}

#[cfg(test)]
mod tests {
    use super::*;

    fn limits() -> StoreLimits {
        StoreLimits {
            tenant_settled_minutes: 3,
            tenant_evict_max_events: 10,
            ..StoreLimits::default()
        }
    }

    #[test]
    fn a_tenant_settles_after_three_distinct_minutes_or_eleven_events() {
        let limits = limits();
        let mut slow = Probation::new();
        let minute = |m: i64| 1_800_000_000_000 + m * MINUTE_MS + 7;
        assert!(!slow.note(minute(0), 1, &limits));
        assert!(!slow.note(minute(0) + 30_000, 2, &limits), "same minute");
        assert!(!slow.note(minute(5), 3, &limits));
        assert!(!slow.note(minute(0), 4, &limits), "an earlier minute again");
        assert!(slow.note(minute(9), 5, &limits));
        assert_eq!(slow.last_seen_ms, minute(9));

        let mut burst = Probation::new();
        for events in 1..=10 {
            assert!(!burst.note(minute(0), events, &limits));
        }
        assert!(burst.note(minute(0), 11, &limits));
    }
}
