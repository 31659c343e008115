//! The failures table and a failure's details, ranked and merged from the group parts in
//! `groups`.

use std::collections::BTreeMap;

use rustc_hash::FxHashMap;

use super::groups::{
    description_text, latest_return, GroupDetail, GroupNumbers, GroupPart, GroupSummary, GroupText,
    Source, Sources,
};
use super::paging;
use super::parts::Part;
use super::types::*;
use super::{QueryEngine, QueryError, DEFAULT_PAGE_SIZE, DEFAULT_RANGE_MS, MAX_TREND_POINTS};
use crate::catalog;
use crate::issues::{derive_state, Activity, IssueState, IssueStatus};
use crate::store::{
    format_failure_id, parse_failure_id, sample_order, Bucket, HourTier, PartitionKey,
    PartitionState, SeriesRead, SharedPartition, Sym, TenantState, CANDIDATES, DAY_MS, HOUR_MS,
    SAMPLES_PER_GROUP,
};

/// A text filter resolved against one partition's interner: `None` matches anything,
/// `Some(None)` matches nothing (the string never occurred there).
fn resolve_filter(partition: &PartitionState, wanted: &Option<String>) -> Option<Option<Sym>> {
    wanted.as_ref().map(|w| partition.interner.get(w))
}

fn sym_matches(filter: Option<Option<Sym>>, actual: Sym) -> bool {
    match filter {
        None => true,
        Some(wanted) => wanted == Some(actual),
    }
}

/// Every local group of the tenant that matches, reduced to the numbers that rank it and
/// merged across partitions, groups without failures in the range included (their strings or
/// first and last seen may still decide a merged group's). No strings are built here.
pub(super) fn local_groups(
    partitions: &[(PartitionKey, SharedPartition)],
    tenant_id: &str,
    types: TypeFilter,
    filter: &FailureFilter,
    range: TimeRange,
) -> Vec<GroupSummary> {
    let mut parts: Vec<Vec<GroupSummary>> = partitions
        .iter()
        .enumerate()
        .filter_map(|(index, (key, partition))| {
            let guard = partition.read();
            let tenant = guard.tenant(tenant_id)?;
            let found =
                partition_groups(index, key.partition, &guard, tenant, types, filter, range);
            Some(found)
        })
        .collect();
    // A tenant normally lives in one partition, and then nothing needs merging.
    if parts.len() == 1 {
        return parts.pop().unwrap_or_default();
    }
    let mut merged: FxHashMap<u128, GroupSummary> = FxHashMap::default();
    for part in parts.into_iter().flatten() {
        merge_part(&mut merged, part);
    }
    merged.into_values().collect()
}

/// The numbers of one partition's groups of the tenant that match.
fn partition_groups(
    index: usize,
    partition_id: i32,
    partition: &PartitionState,
    tenant: &TenantState,
    types: TypeFilter,
    filter: &FailureFilter,
    range: TimeRange,
) -> Vec<GroupSummary> {
    let integration = resolve_filter(partition, &filter.integration_id);
    let flow = resolve_filter(partition, &filter.flow_id);
    let service = resolve_filter(partition, &filter.service_id);
    // Checked once: a code's class is a branch per group that most tables do not need.
    let every_class = filter.classes == ClassFilter::all();
    tenant
        .groups
        .iter()
        .filter(|(key, _)| {
            types.includes(key.integration_type)
                && filter.status_code.is_none_or(|c| c == key.status_code)
                && sym_matches(integration, key.integration_id)
                && sym_matches(flow, key.flow_id)
                && sym_matches(service, key.service_id)
                && (every_class || filter.classes.includes_code(key.status_code))
        })
        .map(|(key, group)| {
            GroupSummary::local(
                index,
                partition_id,
                key,
                group,
                range,
                partition.rolled_until,
            )
        })
        .collect()
}

/// The first page's contenders when the tenant's `Ranking` can answer: one local partition
/// holds the tenant and no other replica's does, the range is the default one, nothing is
/// filtered and the page fits the candidates. With them, the count of groups that have
/// failures in the range.
fn ranked_candidates(
    partitions: &[(PartitionKey, SharedPartition)],
    request: &ListFailuresRequest,
    range: TimeRange,
    order: FailureOrder,
) -> Option<(Vec<GroupSummary>, u64)> {
    let unfiltered =
        request.types == TypeFilter::all() && request.filter == FailureFilter::default();
    if !unfiltered || request.page_size.max(DEFAULT_PAGE_SIZE) >= CANDIDATES {
        return None;
    }
    let mut holders = partitions
        .iter()
        .enumerate()
        .filter(|(_, (_, p))| p.read().tenant(&request.tenant_id).is_some());
    let (index, (key, partition)) = holders.next()?;
    if holders.next().is_some() {
        return None;
    }
    let guard = partition.read();
    let tenant = guard.tenant(&request.tenant_id)?;
    let ranking = tenant.ranking.as_ref()?;
    if !ranking.answers(range.start_ms, range.end_ms) {
        return None;
    }
    let keys = match order {
        FailureOrder::TotalErrorsDesc => ranking.by_total(),
        FailureOrder::LastSeenDesc => ranking.by_last_seen(),
    };
    let summaries = keys
        .iter()
        .filter_map(|k| {
            let group = tenant.groups.get(k)?;
            let rolled = guard.rolled_until;
            Some(GroupSummary::local(
                index,
                key.partition,
                k,
                group,
                range,
                rolled,
            ))
        })
        .filter(|s| s.numbers.total > 0)
        .collect();
    Some((summaries, ranking.groups_with_failures()))
}

fn merge_part(merged: &mut FxHashMap<u128, GroupSummary>, part: GroupSummary) {
    merged
        .entry(part.numbers.failure_id)
        .and_modify(|existing| existing.merge(part))
        .or_insert(part);
}

/// One group found in the local partitions: its numbers, where its strings are, and its
/// hours and samples in the range.
struct LocalGroup {
    summary: GroupSummary,
    buckets: BTreeMap<i64, u64>,
    samples: Vec<SampleRow>,
}

impl QueryEngine {
    /// How long a group must be quiet before its return reopens an issue, when issues are kept.
    pub(super) fn quiet_ms(&self) -> Option<i64> {
        self.issues.as_ref().map(|c| c.auto_resolve_ms)
    }

    pub(super) fn issue_status(
        &self,
        tenant_id: &str,
        numbers: &GroupNumbers,
        latest_return_ms: Option<i64>,
    ) -> Option<IssueStatus> {
        let context = self.issues.as_ref()?;
        let activity = Activity {
            first_ms: numbers.first_ms,
            last_ms: numbers.last_ms,
            latest_return_ms,
        };
        let newest = context
            .book
            .newest(tenant_id, &format_failure_id(numbers.failure_id));
        Some(derive_state(
            newest.as_ref(),
            activity,
            self.now_ms(),
            context.auto_resolve_ms,
        ))
    }

    /// Every group of the tenant in the local partitions that matches, with its strings: what
    /// another replica merges into its ranking.
    pub(super) fn group_parts(
        &self,
        tenant_id: &str,
        types: TypeFilter,
        filter: &FailureFilter,
        range: TimeRange,
        quiet_ms: Option<i64>,
    ) -> Vec<GroupPart> {
        let partitions = self.store().partitions();
        local_groups(&partitions, tenant_id, types, filter, range)
            .into_iter()
            .filter_map(|summary| {
                let Source::Local(index, key) = summary.source else {
                    return None;
                };
                let guard = partitions.get(index)?.1.read();
                let group = guard.tenant(tenant_id)?.groups.get(&key)?;
                Some(GroupPart {
                    numbers: summary.numbers,
                    text: GroupText::of(&guard, &key, group),
                    latest_return_ms: quiet_ms.and_then(|q| latest_return(group, q)),
                })
            })
            .collect()
    }

    /// The failures table: every group with failures in the range.
    pub fn list_failures(&self, request: &ListFailuresRequest) -> Result<FailurePage, QueryError> {
        self.list_groups(request, &[])
    }

    /// The issues: the failures table kept to the groups whose issue is in one of `states`
    /// (any state when empty).
    pub(crate) fn list_issues(
        &self,
        request: &ListFailuresRequest,
        states: &[IssueState],
    ) -> Result<FailurePage, QueryError> {
        self.list_groups(request, states)
    }

    /// Every matching group with failures in the range, ranked by numbers alone: the local
    /// partitions' merged with the other replicas' parts (`remote`, which the rows' sources
    /// point into).
    fn ranked_groups(
        &self,
        partitions: &[(PartitionKey, SharedPartition)],
        request: &ListFailuresRequest,
        range: TimeRange,
    ) -> Result<(Vec<GroupSummary>, Vec<GroupPart>), QueryError> {
        let local = local_groups(
            partitions,
            &request.tenant_id,
            request.types,
            &request.filter,
            range,
        );
        let part = Part::Groups {
            types: request.types,
            filter: request.filter.clone(),
            range,
            quiet_ms: self.quiet_ms(),
        };
        let remote = self.gathered(part, Vec::new())?;
        if remote.is_empty() {
            let mut ranked = local;
            ranked.retain(|r| r.numbers.total > 0);
            return Ok((ranked, remote));
        }
        let mut merged: FxHashMap<u128, GroupSummary> = FxHashMap::default();
        for part in local {
            merge_part(&mut merged, part);
        }
        for (index, part) in remote.iter().enumerate() {
            let summary = GroupSummary {
                numbers: part.numbers,
                source: Source::Remote(index),
            };
            merge_part(&mut merged, summary);
        }
        let ranked = merged
            .into_values()
            .filter(|r| r.numbers.total > 0)
            .collect();
        Ok((ranked, remote))
    }

    /// Two passes: rank every matching group by numbers alone (no strings, no allocation per
    /// group), then build rows only for the page being served.
    fn list_groups(
        &self,
        request: &ListFailuresRequest,
        states: &[IssueState],
    ) -> Result<FailurePage, QueryError> {
        let page_size = paging::page_size(request.page_size)?;
        let fingerprint = paging::fingerprint(&(
            &request.tenant_id,
            request.types,
            &request.filter,
            request.order,
            states,
        ));
        let after: Option<(i64, u128)> = match &request.page_token {
            Some(token) => Some(paging::decode_token(token, fingerprint)?),
            None => None,
        };
        let now = self.now_ms();
        let tier = HourTier::Detail;
        let effective_range =
            self.effective(request.range, DEFAULT_RANGE_MS, now, HOUR_MS, tier)?;
        let partitions = self.store().partitions();
        let candidates = match (
            states.is_empty() && after.is_none() && !self.has_remote(),
            request.order,
        ) {
            (true, order) => ranked_candidates(&partitions, request, effective_range, order),
            _ => None,
        };
        // Candidates come with the count of all the tenant's groups in the range; otherwise
        // every matching group is at hand and counted once filtered by state.
        let (mut ranked, remote, counted) = match candidates {
            Some((found, count)) => (found, Vec::new(), Some(count)),
            None => {
                let (ranked, remote) = self.ranked_groups(&partitions, request, effective_range)?;
                (ranked, remote, None)
            }
        };
        let sources = Sources {
            partitions: &partitions,
            remote: &remote,
        };
        if !states.is_empty() {
            ranked.retain(|c| {
                c.issue_status(self, &request.tenant_id, &sources)
                    .is_some_and(|status| states.contains(&status.state))
            });
        }
        let total_groups = counted.unwrap_or(ranked.len() as u64);
        let order = request.order;
        let (page, next) =
            paging::take_page(ranked, after.as_ref(), page_size, |c| c.sort_key(order));
        let next_page_token = next.map(|position| paging::encode_token(fingerprint, &position));
        let failures = page
            .iter()
            .filter_map(|c| c.row(self, &request.tenant_id, &sources))
            .collect();
        Ok(FailurePage {
            failures,
            next_page_token,
            total_groups,
            effective_range,
            resolution: self.resolution(effective_range, tier, false),
        })
    }

    /// One group in the local partitions, found by id, with its buckets in `range` read as
    /// `how`, its samples, its strings and its issue timing: what `GetFailureDetails` merges
    /// across replicas.
    pub(super) fn local_group(
        &self,
        tenant_id: &str,
        id: u128,
        range: TimeRange,
        how: SeriesRead,
        quiet_ms: Option<i64>,
    ) -> Option<GroupDetail> {
        let partitions = self.store().partitions();
        let mut found_any: Option<LocalGroup> = None;
        for (index, (partition_key, partition)) in partitions.iter().enumerate() {
            let guard = partition.read();
            let Some(tenant) = guard.tenant(tenant_id) else {
                continue;
            };
            let indexed = tenant.ranking.as_ref().map(|r| r.group_with_id(id));
            let found = match indexed {
                Some(key) => key.and_then(|k| Some((k, tenant.groups.get(k)?))),
                None => tenant.groups.iter().find(|(_, g)| g.failure_id == id),
            };
            let Some((key, group)) = found else {
                continue;
            };
            let rolled = guard.rolled_until;
            let part =
                GroupSummary::local(index, partition_key.partition, key, group, range, rolled);
            let slot = match &mut found_any {
                Some(slot) => {
                    slot.summary.merge(part);
                    slot
                }
                None => found_any.insert(LocalGroup {
                    summary: part,
                    buckets: BTreeMap::new(),
                    samples: Vec::new(),
                }),
            };
            let (start, end) = (range.start_ms, range.end_ms);
            group.buckets.each(start, end, how, rolled, |at, bucket| {
                let (Bucket::Hour(stat) | Bucket::Day(stat)) = bucket;
                *slot.buckets.entry(at).or_insert(0) += stat.count;
            });
            slot.samples.extend(group.samples.iter().map(|s| SampleRow {
                event_id: s.event_id.to_string(),
                occurred_at_ms: s.occurred_at_ms,
                error_message: description_text(&guard, key.description, key.status_code),
            }));
        }
        let found = found_any?;
        let Source::Local(index, key) = found.summary.source else {
            return None;
        };
        let guard = partitions.get(index)?.1.read();
        let group = guard.tenant(tenant_id)?.groups.get(&key)?;
        Some(GroupDetail {
            group: GroupPart {
                numbers: found.summary.numbers,
                text: GroupText::of(&guard, &key, group),
                latest_return_ms: quiet_ms.and_then(|q| latest_return(group, q)),
            },
            buckets: found.buckets,
            samples: found.samples,
        })
    }

    pub fn failure_details(
        &self,
        tenant_id: &str,
        failure_id: &str,
        range: Option<TimeRange>,
    ) -> Result<FailureDetails, QueryError> {
        let id = parse_failure_id(failure_id).ok_or(QueryError::BadFailureId)?;
        let now = self.now_ms();
        let tier = HourTier::Detail;
        let effective_range = self.effective(range, DEFAULT_RANGE_MS, now, HOUR_MS, tier)?;
        let resolution = self.resolution(effective_range, tier, false);
        let (how, step) = match resolution {
            Resolution::Day => (SeriesRead::UtcDays, DAY_MS),
            _ => (SeriesRead::Hours, HOUR_MS),
        };
        let points = ((effective_range.end_ms - effective_range.start_ms) / step) as usize;
        if points > MAX_TREND_POINTS {
            return Err(QueryError::TooManyPoints {
                requested: points,
                max: MAX_TREND_POINTS,
            });
        }
        let quiet_ms = self.quiet_ms();
        let local = self.local_group(tenant_id, id, effective_range, how, quiet_ms);
        let part = Part::Group {
            failure_id: id,
            range: effective_range,
            how,
            quiet_ms,
        };
        let detail = self
            .gathered(part, local)?
            .ok_or_else(|| QueryError::FailureNotFound {
                tenant_id: tenant_id.to_owned(),
                failure_id: failure_id.to_owned(),
            })?;
        let GroupDetail {
            group,
            buckets,
            mut samples,
        } = detail;
        let issue = self.issue_status(tenant_id, &group.numbers, group.latest_return_ms);
        let failure = group.text.row(&group.numbers, issue);
        samples.sort_by(|a, b| {
            sample_order(a.occurred_at_ms, &a.event_id, b.occurred_at_ms, &b.event_id)
        });
        samples.truncate(SAMPLES_PER_GROUP);
        // Days read as UTC days may end in hours not rolled yet: each point sums its span.
        let trend = (effective_range.start_ms..effective_range.end_ms)
            .step_by(step as usize)
            .map(|at| (at, buckets.range(at..at + step).map(|(_, n)| n).sum()))
            .collect();
        let entry = catalog::lookup(failure.status_code);
        Ok(FailureDetails {
            guidance: entry.guidance(failure.integration_type),
            failure,
            trend,
            recent_samples: samples,
            effective_range,
            resolution,
        })
    }
}

#[cfg(test)]
#[path = "failures_tests.rs"]
mod tests;
