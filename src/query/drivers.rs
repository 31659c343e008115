//! What drove a type's change in failures: the integrations and the codes whose failures moved
//! most between the previous period and the current one. Counted at the change's own
//! resolution (minutes inside the minute window, hours otherwise) from the same events as the
//! type's totals, so the contributions and "other" add up to the type's change exactly.

use std::collections::{BTreeMap, HashMap};

use super::classes::hours_and_minutes;
use super::parts::Part;
use super::types::{Contribution, Drivers, TimeRange};
use super::{QueryEngine, QueryError};
use crate::event::IntegrationType;
use crate::store::{IntegrationKey, PartitionState, TenantState};
use serde::{Deserialize, Serialize};

/// How many integrations and codes are named per type; the rest is "other".
pub(crate) const DRIVERS_PER_TYPE: usize = 5;

/// Failures per (type, key) in one period; the key is an integration id or a status code.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub(crate) struct Tally {
    integrations: BTreeMap<(IntegrationType, String), Named>,
    codes: BTreeMap<(IntegrationType, u16), u64>,
}

/// An integration's failures, and its newest name with when that was seen.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
struct Named {
    count: u64,
    name: String,
    name_at_ms: i64,
}

impl Named {
    /// Counts add; the name seen last wins, whichever side saw it (ties go to the greater
    /// name, so the order of merging never matters).
    fn add(&mut self, count: u64, name: &str, name_at_ms: i64) {
        self.count += count;
        if (name_at_ms, name) > (self.name_at_ms, self.name.as_str()) {
            self.name = name.to_owned();
            self.name_at_ms = name_at_ms;
        }
    }
}

impl Tally {
    fn add_integration(&mut self, t: IntegrationType, id: &str, named: (&str, i64), count: u64) {
        self.integrations
            .entry((t, id.to_owned()))
            .or_default()
            .add(count, named.0, named.1);
    }

    /// Two tallies of the same period over different partitions.
    pub(super) fn merge(&mut self, other: Tally) {
        for ((t, id), named) in other.integrations {
            self.add_integration(t, &id, (&named.name, named.name_at_ms), named.count);
        }
        for (key, count) in other.codes {
            *self.codes.entry(key).or_default() += count;
        }
    }
}

impl QueryEngine {
    /// The drivers of every type in `types`, between `previous` and `current`.
    pub(super) fn drivers(
        &self,
        tenant_id: &str,
        current: TimeRange,
        previous: TimeRange,
        by_minute: bool,
        types: impl Iterator<Item = IntegrationType>,
    ) -> Result<Vec<(IntegrationType, Drivers)>, QueryError> {
        let now_tally = self.tally(tenant_id, current, by_minute)?;
        let then_tally = self.tally(tenant_id, previous, by_minute)?;
        Ok(types
            .map(|t| (t, drivers_of(t, &now_tally, &then_tally)))
            .collect())
    }

    fn tally(
        &self,
        tenant_id: &str,
        range: TimeRange,
        by_minute: bool,
    ) -> Result<Tally, QueryError> {
        let local = self.local_tally(tenant_id, range, by_minute);
        self.gathered(Part::Tally { range, by_minute }, local)
    }

    pub(super) fn local_tally(&self, tenant_id: &str, range: TimeRange, by_minute: bool) -> Tally {
        let mut tally = Tally::default();
        self.for_tenant(tenant_id, |partition, tenant| {
            for (span, minutes) in hours_and_minutes(range, by_minute) {
                match minutes {
                    true => tally_minutes(partition, tenant, span, &mut tally),
                    false => tally_hours(partition, tenant, span, &mut tally),
                }
            }
        });
        tally
    }
}

/// Adds one partition's failures per integration, counted by symbol first so each
/// integration's id and name are copied once per partition, not once per bucket.
fn add_partition(
    partition: &PartitionState,
    tenant: &TenantState,
    per_integration: HashMap<IntegrationKey, u64>,
    tally: &mut Tally,
) {
    for (key, count) in per_integration {
        let named = tenant.integrations.get(&key).map_or(("", i64::MIN), |i| {
            (partition.interner.resolve(i.name), i.name_at_ms)
        });
        let id = partition.interner.resolve(key.integration_id);
        tally.add_integration(key.integration_type, id, named, count);
    }
}

fn tally_minutes(
    partition: &PartitionState,
    tenant: &TenantState,
    range: TimeRange,
    tally: &mut Tally,
) {
    let mut per_integration: HashMap<IntegrationKey, u64> = HashMap::new();
    let minutes = tenant.minute_failures.range(range.start_ms..range.end_ms);
    for failure in minutes.flat_map(|(_, f)| f) {
        let count = u64::from(failure.count);
        *per_integration.entry(failure.integration).or_default() += count;
        *tally
            .codes
            .entry((failure.integration.integration_type, failure.status_code))
            .or_default() += count;
    }
    add_partition(partition, tenant, per_integration, tally);
}

fn tally_hours(
    partition: &PartitionState,
    tenant: &TenantState,
    range: TimeRange,
    tally: &mut Tally,
) {
    let (start, end, rolled) = (range.start_ms, range.end_ms, partition.rolled_until);
    let per_integration = tenant
        .integrations
        .iter()
        .map(|(key, integration)| (*key, integration.failed_in(start, end, rolled)))
        .filter(|(_, failed)| *failed > 0)
        .collect();
    add_partition(partition, tenant, per_integration, tally);
    tenant.for_each_code_in(start, end, rolled, |key, count| {
        *tally.codes.entry(key).or_default() += count;
    });
}

fn drivers_of(t: IntegrationType, now: &Tally, then: &Tally) -> Drivers {
    let mut integrations: BTreeMap<&str, Contribution> = BTreeMap::new();
    for (tally, is_now) in [(now, true), (then, false)] {
        for ((_, id), named) in tally
            .integrations
            .range((t, String::new())..)
            .take_while(|((kind, _), _)| *kind == t)
        {
            let slot = integrations
                .entry(id.as_str())
                .or_insert_with(|| Contribution {
                    key: id.clone(),
                    name: named.name.clone(),
                    ..Contribution::default()
                });
            add(slot, named.count, is_now);
        }
    }
    let mut codes: BTreeMap<u16, Contribution> = BTreeMap::new();
    for (tally, is_now) in [(now, true), (then, false)] {
        for ((_, code), count) in tally.codes.range((t, 0)..=(t, u16::MAX)) {
            let slot = codes.entry(*code).or_insert_with(|| Contribution {
                key: code.to_string(),
                name: crate::catalog::name_of(*code).to_owned(),
                ..Contribution::default()
            });
            add(slot, *count, is_now);
        }
    }
    let (integrations, other_integrations) = top(integrations.into_values().collect());
    let (codes, other_codes) = top(codes.into_values().collect());
    Drivers {
        integrations,
        other_integrations,
        codes,
        other_codes,
    }
}

fn add(slot: &mut Contribution, count: u64, is_now: bool) {
    if is_now {
        slot.current += count;
    } else {
        slot.previous += count;
    }
}

/// The contributions that moved most (ties by key), and the rest summed as "other".
fn top(mut all: Vec<Contribution>) -> (Vec<Contribution>, Contribution) {
    all.sort_by(|a, b| {
        b.change()
            .unsigned_abs()
            .cmp(&a.change().unsigned_abs())
            .then_with(|| a.key.cmp(&b.key))
    });
    let rest = all.split_off(all.len().min(DRIVERS_PER_TYPE));
    let mut other = Contribution {
        key: String::new(),
        name: "other".to_owned(),
        ..Contribution::default()
    };
    for c in rest {
        other.current += c.current;
        other.previous += c.previous;
    }
    (all, other)
}
