//! One integration's failure groups over a range, for `GetIntegrationHealth`: its failures per
//! code and its busiest groups, by the failures table's parts and merge rule.

use std::collections::BTreeMap;

use rustc_hash::FxHashMap;

use super::failures::local_groups;
use super::groups::{GroupNumbers, GroupPart, GroupText, Source};
use super::integrations::TOP_GROUPS;
use super::parts::Part;
use super::types::{FailureFilter, TimeRange, TypeFilter};
use super::GroupSummary as IntegrationGroup;
use super::{QueryEngine, QueryError};
use crate::event::IntegrationType;

/// An integration's failures over a range: per (type, code), and for each type the groups
/// with the most failures.
#[derive(Default)]
pub(super) struct IntegrationFailures {
    pub(super) codes: BTreeMap<(IntegrationType, u16), u64>,
    pub(super) top: Vec<IntegrationGroup>,
}

impl IntegrationFailures {
    fn count(&mut self, t: IntegrationType, code: u16, numbers: &GroupNumbers) {
        *self.codes.entry((t, code)).or_default() += numbers.total;
    }

    /// The failures per code of the integration's groups of type `t`.
    pub(super) fn codes_of(&self, t: IntegrationType) -> BTreeMap<u16, u64> {
        self.codes
            .range((t, 0)..=(t, u16::MAX))
            .map(|((_, code), n)| (*code, *n))
            .collect()
    }
}

/// The `TOP_GROUPS` entries of each type with the most failures (ties by failure id), from
/// (type, failures, failure id, entry).
fn busiest<T>(mut ranked: Vec<(IntegrationType, u64, u128, T)>) -> impl Iterator<Item = T> {
    ranked.sort_by(|a, b| (a.0, b.1, a.2).cmp(&(b.0, a.1, b.2)));
    let mut taken: Option<(IntegrationType, usize)> = None;
    ranked.into_iter().filter_map(move |(t, _, _, entry)| {
        let n = match taken {
            Some((seen, n)) if seen == t => n + 1,
            _ => 1,
        };
        taken = Some((t, n));
        (n <= TOP_GROUPS).then_some(entry)
    })
}

impl QueryEngine {
    /// The failure groups of the integrations with `integration_id` (of `integration_type`,
    /// when given) that have failures in `range`: the failures table's parts and merge rule,
    /// kept to one integration, summed by code, and the busiest groups with their strings.
    pub(super) fn integration_failures(
        &self,
        tenant_id: &str,
        range: TimeRange,
        integration_type: Option<IntegrationType>,
        integration_id: &str,
    ) -> Result<IntegrationFailures, QueryError> {
        let types = match integration_type {
            Some(t) => TypeFilter::from_types(&[t]),
            None => TypeFilter::all(),
        };
        let filter = FailureFilter {
            integration_id: Some(integration_id.to_owned()),
            ..FailureFilter::default()
        };
        if !self.has_remote() {
            return Ok(self.local_integration_failures(tenant_id, types, &filter, range));
        }
        let local = self.group_parts(tenant_id, types, &filter, range, None);
        let part = Part::Groups {
            types,
            filter,
            range,
            quiet_ms: None,
        };
        let mut merged: FxHashMap<u128, GroupPart> = FxHashMap::default();
        for part in self.gathered(part, local)? {
            match merged.get_mut(&part.numbers.failure_id) {
                Some(mine) => mine.merge(part),
                None => {
                    merged.insert(part.numbers.failure_id, part);
                }
            }
        }
        let mut failures = IntegrationFailures::default();
        let mut ranked: Vec<(IntegrationType, u64, u128, GroupPart)> = Vec::new();
        for part in merged.into_values().filter(|p| p.numbers.total > 0) {
            failures.count(
                part.text.integration_type,
                part.text.status_code,
                &part.numbers,
            );
            let n = part.numbers;
            ranked.push((part.text.integration_type, n.total, n.failure_id, part));
        }
        failures.top = busiest(ranked).map(GroupPart::summary).collect();
        Ok(failures)
    }

    /// `integration_failures` without other replicas: every group ranked by its numbers, and
    /// strings built only for the busiest.
    fn local_integration_failures(
        &self,
        tenant_id: &str,
        types: TypeFilter,
        filter: &FailureFilter,
        range: TimeRange,
    ) -> IntegrationFailures {
        let partitions = self.store().partitions();
        let mut failures = IntegrationFailures::default();
        let mut ranked = Vec::new();
        for summary in local_groups(&partitions, tenant_id, types, filter, range) {
            let Source::Local(index, key) = summary.source else {
                continue;
            };
            if summary.numbers.total > 0 {
                failures.count(key.integration_type, key.status_code, &summary.numbers);
                let n = summary.numbers;
                ranked.push((key.integration_type, n.total, n.failure_id, (index, key, n)));
            }
        }
        failures.top = busiest(ranked)
            .filter_map(|(index, key, numbers)| {
                let guard = partitions.get(index)?.1.read();
                let group = guard.tenant(tenant_id)?.groups.get(&key)?;
                let text = GroupText::of(&guard, &key, group);
                let part = GroupPart {
                    numbers,
                    text,
                    latest_return_ms: None,
                };
                Some(part.summary())
            })
            .collect();
        failures
    }
}
