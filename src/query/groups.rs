//! A failure group's parts, as the failures table, its details and an integration's top groups
//! rank and show them, and `GroupNumbers::merge`, the one rule that combines a group's parts
//! across partitions and replicas.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use super::types::{FailureOrder, FailureRow, SampleRow, TimeRange};
use super::GroupSummary as IntegrationGroup;
use super::QueryEngine;
use crate::catalog;
use crate::event::IntegrationType;
use crate::issues::IssueStatus;
use crate::store::{
    format_failure_id, GroupKey, GroupState, PartitionKey, PartitionState, SharedPartition, Sym,
};

/// One group's numbers within a range. Parts merge by one rule: totals add, first seen is the
/// earliest, last seen the latest, and the strings come from the part that saw the newest
/// event (so a rename shows up; at the same instant, the lower partition's).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub(super) struct GroupNumbers {
    pub(super) failure_id: u128,
    pub(super) total: u64,
    pub(super) first_ms: i64,
    pub(super) last_ms: i64,
    pub(super) names_at_ms: i64,
    /// The partition whose strings these are.
    pub(super) names_partition: i32,
}

impl GroupNumbers {
    pub(super) fn of(
        partition: i32,
        group: &GroupState,
        range: TimeRange,
        rolled_until: i64,
    ) -> Self {
        GroupNumbers {
            failure_id: group.failure_id,
            total: group.total_in(range.start_ms, range.end_ms, rolled_until),
            first_ms: group.first_seen_ms().unwrap_or(0),
            last_ms: group.last_seen_ms().unwrap_or(0),
            names_at_ms: group.names_at_ms,
            names_partition: partition,
        }
    }

    /// Merges `part` in; true when the strings should now come from `part`.
    pub(super) fn merge(&mut self, part: GroupNumbers) -> bool {
        debug_assert_eq!(self.failure_id, part.failure_id);
        self.total += part.total;
        self.first_ms = self.first_ms.min(part.first_ms);
        self.last_ms = self.last_ms.max(part.last_ms);
        let newer =
            (part.names_at_ms, -part.names_partition) > (self.names_at_ms, -self.names_partition);
        if newer {
            self.names_at_ms = part.names_at_ms;
            self.names_partition = part.names_partition;
        }
        newer
    }
}

/// Where a ranked group's strings are read from.
#[derive(Debug, Clone, Copy)]
pub(super) enum Source {
    /// A local partition (its index in the engine's list) and the group's key there.
    Local(usize, GroupKey),
    /// Another replica's part (its index in the list of parts).
    Remote(usize),
}

/// A group's numbers and where to read its strings, for ranking without building strings.
#[derive(Debug, Clone, Copy)]
pub(super) struct GroupSummary {
    pub(super) numbers: GroupNumbers,
    pub(super) source: Source,
}

/// A group as another replica sends it: its numbers over that replica's partitions, its
/// strings, and when it last came back after a quiet spell (for its issue state).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub(crate) struct GroupPart {
    pub(super) numbers: GroupNumbers,
    pub(super) text: GroupText,
    pub(super) latest_return_ms: Option<i64>,
}

impl GroupPart {
    pub(super) fn summary(self) -> IntegrationGroup {
        IntegrationGroup {
            failure_id: format_failure_id(self.numbers.failure_id),
            failure_description: self.text.failure_description,
            status_code: self.text.status_code,
            integration_type: self.text.integration_type,
            total_errors: self.numbers.total,
            last_seen_ms: self.numbers.last_ms,
        }
    }

    pub(super) fn merge(&mut self, other: GroupPart) {
        if self.numbers.merge(other.numbers) {
            self.text = other.text;
            self.latest_return_ms = other.latest_return_ms;
        }
    }
}

/// One failure group's details over some partitions: what `GetFailureDetails` merges.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub(crate) struct GroupDetail {
    pub(super) group: GroupPart,
    /// Failures per bucket: hours, or UTC days and the hours at either end.
    pub(super) buckets: BTreeMap<i64, u64>,
    pub(super) samples: Vec<SampleRow>,
}

impl GroupDetail {
    pub(super) fn merge(&mut self, other: GroupDetail) {
        self.group.merge(other.group);
        for (start, count) in other.buckets {
            *self.buckets.entry(start).or_insert(0) += count;
        }
        self.samples.extend(other.samples);
    }
}

/// The strings a failure row shows, read from the partition that named the group last.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub(super) struct GroupText {
    pub(super) integration_type: IntegrationType,
    pub(super) integration_id: String,
    pub(super) integration_name: String,
    pub(super) failure_description: String,
    pub(super) status_code: u16,
    pub(super) service_id: String,
    pub(super) service_name: String,
    pub(super) flow_id: String,
    pub(super) flow_name: String,
}

impl GroupText {
    pub(super) fn of(partition: &PartitionState, key: &GroupKey, group: &GroupState) -> Self {
        let text = |sym| partition.interner.resolve(sym).to_owned();
        GroupText {
            integration_type: key.integration_type,
            integration_id: text(key.integration_id),
            integration_name: text(group.integration_name),
            failure_description: description_text(partition, key.description, key.status_code),
            status_code: key.status_code,
            service_id: text(key.service_id),
            service_name: text(group.service_name),
            flow_id: text(key.flow_id),
            flow_name: text(group.flow_name),
        }
    }

    pub(super) fn row(self, numbers: &GroupNumbers, issue: Option<IssueStatus>) -> FailureRow {
        FailureRow {
            failure_id: format_failure_id(numbers.failure_id),
            integration_type: self.integration_type,
            integration_id: self.integration_id,
            integration_name: self.integration_name,
            failure_description: self.failure_description,
            status_code: self.status_code,
            service_id: self.service_id,
            service_name: self.service_name,
            flow_id: self.flow_id,
            flow_name: self.flow_name,
            total_errors: numbers.total,
            first_seen_ms: numbers.first_ms,
            last_seen_ms: numbers.last_ms,
            issue,
        }
    }
}

/// The local partitions and the other replicas' parts a ranking points into.
pub(super) struct Sources<'a> {
    pub(super) partitions: &'a [(PartitionKey, SharedPartition)],
    pub(super) remote: &'a [GroupPart],
}

impl GroupSummary {
    pub(super) fn local(
        index: usize,
        partition: i32,
        key: &GroupKey,
        group: &GroupState,
        range: TimeRange,
        rolled_until: i64,
    ) -> Self {
        GroupSummary {
            numbers: GroupNumbers::of(partition, group, range, rolled_until),
            source: Source::Local(index, *key),
        }
    }

    pub(super) fn merge(&mut self, part: GroupSummary) {
        if self.numbers.merge(part.numbers) {
            self.source = part.source;
        }
    }

    /// Position in the requested order; smaller sorts first. Ties break on failure id.
    pub(super) fn sort_key(&self, order: FailureOrder) -> (i64, u128) {
        let primary = match order {
            FailureOrder::TotalErrorsDesc => -(self.numbers.total as i64),
            FailureOrder::LastSeenDesc => -self.numbers.last_ms,
        };
        (primary, self.numbers.failure_id)
    }

    pub(super) fn row(
        &self,
        engine: &QueryEngine,
        tenant_id: &str,
        sources: &Sources,
    ) -> Option<FailureRow> {
        let (text, latest_return_ms) = match self.source {
            Source::Local(index, key) => {
                let guard = sources.partitions.get(index)?.1.read();
                let group = guard.tenant(tenant_id)?.groups.get(&key)?;
                let quiet = engine.quiet_ms();
                (
                    GroupText::of(&guard, &key, group),
                    quiet.and_then(|q| latest_return(group, q)),
                )
            }
            Source::Remote(index) => {
                let part = sources.remote.get(index)?;
                (part.text.clone(), part.latest_return_ms)
            }
        };
        let issue = engine.issue_status(tenant_id, &self.numbers, latest_return_ms);
        Some(text.row(&self.numbers, issue))
    }

    /// The group's issue state, from the part that holds its newest event. With
    /// tenant-affine partitions a group lives in one partition, so this is its whole history.
    pub(super) fn issue_status(
        &self,
        engine: &QueryEngine,
        tenant_id: &str,
        sources: &Sources,
    ) -> Option<IssueStatus> {
        let latest_return_ms = match self.source {
            Source::Local(index, key) => {
                let guard = sources.partitions.get(index)?.1.read();
                let group = guard.tenant(tenant_id)?.groups.get(&key)?;
                engine.quiet_ms().and_then(|q| latest_return(group, q))
            }
            Source::Remote(index) => sources.remote.get(index)?.latest_return_ms,
        };
        engine.issue_status(tenant_id, &self.numbers, latest_return_ms)
    }
}

pub(super) fn description_text(
    partition: &PartitionState,
    description: Sym,
    status_code: u16,
) -> String {
    catalog::visible_description(partition.interner.resolve(description), status_code).to_owned()
}

/// The start of the newest failure that followed a quiet spell of at least `gap_ms`.
pub(super) fn latest_return(group: &GroupState, gap_ms: i64) -> Option<i64> {
    let mut previous_last: Option<i64> = None;
    let mut latest = None;
    group.buckets.for_each_finest(|stat| {
        if previous_last.is_some_and(|last| stat.first_ms - last >= gap_ms) {
            latest = Some(stat.first_ms);
        }
        previous_last = Some(stat.last_ms);
    });
    latest
}
