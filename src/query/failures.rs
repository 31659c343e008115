//! The failures table and a failure's details. A group can be spread over several partitions;
//! `GroupSummary::merge` is the one rule that combines its parts.

use std::collections::BTreeMap;

use rustc_hash::FxHashMap;

use super::engine::guidance_for;
use super::paging::{query_fingerprint, PageToken};
use super::types::*;
use super::{
    QueryEngine, QueryError, DEFAULT_PAGE_SIZE, DEFAULT_RANGE_MS, MAX_PAGE_SIZE, MAX_TREND_POINTS,
};
use crate::catalog;
use crate::issues::{derive_state, Activity, IssueState, IssueStatus};
use crate::store::{
    format_failure_id, parse_failure_id, sample_order, GroupKey, GroupState, PartitionKey,
    PartitionState, SharedPartition, Sym, TenantState, CANDIDATES, HOUR_MS, SAMPLES_PER_GROUP,
};

/// One group's numbers within a range. Parts merge by one rule: totals add, first seen is the
/// earliest, last seen the latest, and the strings come from the partition that saw the newest
/// event (so a rename shows up).
#[derive(Debug, Clone, Copy)]
struct GroupSummary {
    failure_id: u128,
    total: u64,
    first_ms: i64,
    last_ms: i64,
    names_at_ms: i64,
    /// Where to read the strings: the partition's index and the group's key there.
    source: (usize, GroupKey),
}

impl GroupSummary {
    fn of(index: usize, key: &GroupKey, group: &GroupState, range: TimeRange) -> Self {
        GroupSummary {
            failure_id: group.failure_id,
            total: group.total_in(range.start_ms, range.end_ms),
            first_ms: group.first_seen_ms().unwrap_or(0),
            last_ms: group.last_seen_ms().unwrap_or(0),
            names_at_ms: group.names_at_ms,
            source: (index, *key),
        }
    }

    fn merge(&mut self, part: GroupSummary) {
        debug_assert_eq!(self.failure_id, part.failure_id);
        self.total += part.total;
        self.first_ms = self.first_ms.min(part.first_ms);
        self.last_ms = self.last_ms.max(part.last_ms);
        if part.names_at_ms > self.names_at_ms {
            self.names_at_ms = part.names_at_ms;
            self.source = part.source;
        }
    }

    /// Position in the requested order; smaller sorts first. Ties break on failure id.
    fn sort_key(&self, order: FailureOrder) -> (i64, u128) {
        let primary = match order {
            FailureOrder::TotalErrorsDesc => -(self.total as i64),
            FailureOrder::LastSeenDesc => -self.last_ms,
        };
        (primary, self.failure_id)
    }

    fn row(
        &self,
        engine: &QueryEngine,
        tenant_id: &str,
        partitions: &[(PartitionKey, SharedPartition)],
    ) -> Option<FailureRow> {
        let (index, key) = self.source;
        let guard = partitions.get(index)?.1.read();
        let group = guard.tenant(tenant_id)?.groups.get(&key)?;
        let issue = engine.issue_status(tenant_id, self, group);
        Some(failure_row(&guard, &key, group, self, issue))
    }

    /// The group's issue state, read from the partition that holds its newest event. With
    /// tenant-affine partitions a group lives in one partition, so this is its whole history.
    fn issue_status(
        &self,
        engine: &QueryEngine,
        tenant_id: &str,
        partitions: &[(PartitionKey, SharedPartition)],
    ) -> Option<IssueStatus> {
        let (index, key) = self.source;
        let guard = partitions.get(index)?.1.read();
        let group = guard.tenant(tenant_id)?.groups.get(&key)?;
        engine.issue_status(tenant_id, self, group)
    }
}

/// Binds a page token to the states asked for, so a token is not used with other states.
fn states_fingerprint(states: &[IssueState]) -> u64 {
    if states.is_empty() {
        return 0;
    }
    xxhash_rust::xxh3::xxh3_64(format!("{states:?}").as_bytes())
}

fn description_text(partition: &PartitionState, description: Sym, status_code: u16) -> String {
    catalog::visible_description(partition.interner.resolve(description), status_code).to_owned()
}

fn failure_row(
    partition: &PartitionState,
    key: &GroupKey,
    group: &GroupState,
    numbers: &GroupSummary,
    issue: Option<IssueStatus>,
) -> FailureRow {
    let text = |sym| partition.interner.resolve(sym).to_owned();
    FailureRow {
        failure_id: format_failure_id(group.failure_id),
        integration_type: key.integration_type,
        integration_id: text(key.integration_id),
        integration_name: text(group.integration_name),
        failure_description: description_text(partition, key.description, key.status_code),
        status_code: key.status_code,
        service_id: text(key.service_id),
        service_name: text(group.service_name),
        flow_id: text(key.flow_id),
        flow_name: text(group.flow_name),
        total_errors: numbers.total,
        first_seen_ms: numbers.first_ms,
        last_seen_ms: numbers.last_ms,
        issue,
    }
}

/// The start of the newest failure that followed a quiet spell of at least `gap_ms`.
fn latest_return(group: &GroupState, gap_ms: i64) -> Option<i64> {
    let mut previous_last: Option<i64> = None;
    let mut latest = None;
    for stat in group.hours.values() {
        if previous_last.is_some_and(|last| stat.first_ms - last >= gap_ms) {
            latest = Some(stat.first_ms);
        }
        previous_last = Some(stat.last_ms);
    }
    latest
}

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

/// Every group that matches the request, reduced to the numbers that rank it and merged across
/// partitions. No strings are built here. A tenant normally lives in one partition, and then
/// nothing needs merging.
fn rank_groups(
    partitions: &[(PartitionKey, SharedPartition)],
    request: &ListFailuresRequest,
    range: TimeRange,
) -> Vec<GroupSummary> {
    let mut parts: Vec<Vec<GroupSummary>> = partitions
        .iter()
        .enumerate()
        .filter_map(|(index, (_, partition))| {
            let guard = partition.read();
            let tenant = guard.tenant(&request.tenant_id)?;
            Some(partition_groups(index, &guard, tenant, request, range))
        })
        .collect();
    if parts.len() == 1 {
        let mut only = parts.pop().unwrap_or_default();
        only.retain(|r| r.total > 0);
        return only;
    }
    let mut merged: FxHashMap<u128, GroupSummary> = FxHashMap::default();
    for part in parts.into_iter().flatten() {
        merge_part(&mut merged, part);
    }
    merged.into_values().filter(|r| r.total > 0).collect()
}

/// The numbers of one partition's groups of the tenant that match the request.
fn partition_groups(
    index: usize,
    partition: &PartitionState,
    tenant: &TenantState,
    request: &ListFailuresRequest,
    range: TimeRange,
) -> Vec<GroupSummary> {
    let integration = resolve_filter(partition, &request.filter.integration_id);
    let flow = resolve_filter(partition, &request.filter.flow_id);
    let service = resolve_filter(partition, &request.filter.service_id);
    tenant
        .groups
        .iter()
        .filter(|(key, _)| {
            request.types.includes(key.integration_type)
                && request
                    .filter
                    .status_code
                    .is_none_or(|c| c == key.status_code)
                && sym_matches(integration, key.integration_id)
                && sym_matches(flow, key.flow_id)
                && sym_matches(service, key.service_id)
        })
        .map(|(key, group)| GroupSummary::of(index, key, group, range))
        .collect()
}

/// The first page's contenders when the tenant's `Ranking` can answer: one partition holds
/// the tenant, the range is the default one, nothing is filtered and the page fits the
/// candidates. With them, the count of groups that have failures in the range.
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
    let (index, (_, partition)) = holders.next()?;
    if holders.next().is_some() {
        return None;
    }
    let guard = partition.read();
    let tenant = guard.tenant(&request.tenant_id)?;
    let ranking = tenant.ranking.as_ref()?;
    if ranking.start_ms != range.start_ms || ranking.newest_hour >= range.end_ms {
        return None;
    }
    let keys = match order {
        FailureOrder::TotalErrorsDesc => &ranking.by_total.keys,
        FailureOrder::LastSeenDesc => &ranking.by_last_seen.keys,
    };
    let summaries = keys
        .iter()
        .filter_map(|key| Some(GroupSummary::of(index, key, tenant.groups.get(key)?, range)))
        .filter(|s| s.total > 0)
        .collect();
    Some((summaries, ranking.groups_with_failures))
}

fn merge_part(merged: &mut FxHashMap<u128, GroupSummary>, part: GroupSummary) {
    merged
        .entry(part.failure_id)
        .and_modify(|existing| existing.merge(part))
        .or_insert(part);
}

impl QueryEngine {
    fn issue_status(
        &self,
        tenant_id: &str,
        numbers: &GroupSummary,
        group: &GroupState,
    ) -> Option<IssueStatus> {
        let context = self.issues.as_ref()?;
        let activity = Activity {
            first_ms: numbers.first_ms,
            last_ms: numbers.last_ms,
            latest_return_ms: latest_return(group, context.auto_resolve_ms),
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

    /// The failures table: every group with failures in the range.
    pub fn list_failures(&self, request: &ListFailuresRequest) -> Result<FailurePage, QueryError> {
        self.list_groups(request, &[])
    }

    /// The issues: the failures table kept to the groups whose issue is in one of `states`
    /// (any state when empty).
    pub fn list_issues(
        &self,
        request: &ListFailuresRequest,
        states: &[IssueState],
    ) -> Result<FailurePage, QueryError> {
        self.list_groups(request, states)
    }

    /// Two passes: rank every matching group by numbers alone (no strings, no allocation per
    /// group), then build rows only for the page being served.
    fn list_groups(
        &self,
        request: &ListFailuresRequest,
        states: &[IssueState],
    ) -> Result<FailurePage, QueryError> {
        let page_size = match request.page_size {
            0 => DEFAULT_PAGE_SIZE,
            n if n > MAX_PAGE_SIZE => {
                return Err(QueryError::PageSizeTooLarge { max: MAX_PAGE_SIZE })
            }
            n => n,
        };
        let fingerprint = query_fingerprint(request) ^ states_fingerprint(states);
        let after = match &request.page_token {
            Some(token) => Some(PageToken::decode(token, fingerprint)?),
            None => None,
        };
        let now = self.now_ms();
        let effective_range = self.effective(request.range, DEFAULT_RANGE_MS, now, HOUR_MS)?;
        let partitions = self.store().partitions();
        let candidates = match (states.is_empty() && after.is_none(), request.order) {
            (true, order) => ranked_candidates(&partitions, request, effective_range, order),
            _ => None,
        };
        // Candidates come with the count of all the tenant's groups in the range; otherwise
        // every matching group is at hand and counted once filtered by state.
        let (mut ranked, counted) = match candidates {
            Some((found, count)) => (found, Some(count)),
            None => (rank_groups(&partitions, request, effective_range), None),
        };
        if !states.is_empty() {
            ranked.retain(|c| {
                c.issue_status(self, &request.tenant_id, &partitions)
                    .is_some_and(|status| states.contains(&status.state))
            });
        }
        let total_groups = counted.unwrap_or(ranked.len() as u64);
        let order = request.order;
        if let Some(after) = after {
            ranked.retain(|c| c.sort_key(order) > after.position);
        }
        // Only the page and one more row need ordering: select them, then sort those.
        if ranked.len() > page_size + 1 {
            ranked.select_nth_unstable_by_key(page_size, |c| c.sort_key(order));
            ranked.truncate(page_size + 1);
        }
        ranked.sort_unstable_by_key(|c| c.sort_key(order));
        let next_page_token = (ranked.len() > page_size).then(|| {
            PageToken {
                fingerprint,
                position: ranked[page_size - 1].sort_key(order),
            }
            .encode()
        });
        ranked.truncate(page_size);
        let failures = ranked
            .iter()
            .filter_map(|c| c.row(self, &request.tenant_id, &partitions))
            .collect();
        Ok(FailurePage {
            failures,
            next_page_token,
            total_groups,
            effective_range,
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
        let effective_range = self.effective(range, DEFAULT_RANGE_MS, now, HOUR_MS)?;
        let points = ((effective_range.end_ms - effective_range.start_ms) / HOUR_MS) as usize;
        if points > MAX_TREND_POINTS {
            return Err(QueryError::TooManyPoints {
                requested: points,
                max: MAX_TREND_POINTS,
            });
        }
        let partitions = self.store().partitions();
        let mut summary: Option<GroupSummary> = None;
        let mut hours: BTreeMap<i64, u64> = BTreeMap::new();
        let mut samples: Vec<SampleRow> = Vec::new();
        for (index, (_, partition)) in partitions.iter().enumerate() {
            let guard = partition.read();
            let Some(tenant) = guard.tenant(tenant_id) else {
                continue;
            };
            let indexed = tenant.ranking.as_ref().map(|r| r.ids.get(&id));
            let found = match indexed {
                Some(key) => key.and_then(|k| Some((k, tenant.groups.get(k)?))),
                None => tenant.groups.iter().find(|(_, g)| g.failure_id == id),
            };
            let Some((key, group)) = found else {
                continue;
            };
            let part = GroupSummary::of(index, key, group, effective_range);
            match &mut summary {
                Some(existing) => existing.merge(part),
                None => summary = Some(part),
            }
            let in_range = group
                .hours
                .range(effective_range.start_ms..effective_range.end_ms);
            for (hour, stat) in in_range {
                *hours.entry(*hour).or_insert(0) += stat.count;
            }
            samples.extend(group.samples.iter().map(|s| SampleRow {
                event_id: s.event_id.to_string(),
                occurred_at_ms: s.occurred_at_ms,
                error_message: description_text(&guard, key.description, key.status_code),
            }));
        }
        let not_found = || QueryError::FailureNotFound {
            tenant_id: tenant_id.to_owned(),
            failure_id: failure_id.to_owned(),
        };
        let summary = summary.ok_or_else(not_found)?;
        let failure = summary
            .row(self, tenant_id, &partitions)
            .ok_or_else(not_found)?;
        samples.sort_by(|a, b| {
            sample_order(a.occurred_at_ms, &a.event_id, b.occurred_at_ms, &b.event_id)
        });
        samples.truncate(SAMPLES_PER_GROUP);
        let hourly_trend = (effective_range.start_ms..effective_range.end_ms)
            .step_by(HOUR_MS as usize)
            .map(|hour| (hour, hours.get(&hour).copied().unwrap_or(0)))
            .collect();
        let entry = catalog::lookup(failure.status_code);
        Ok(FailureDetails {
            guidance: guidance_for(&entry, failure.integration_type),
            failure,
            hourly_trend,
            recent_samples: samples,
            effective_range,
        })
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::*;
    use crate::clock::ManualClock;
    use crate::store::{Store, StoreLimits, DAY_MS};

    #[test]
    fn a_details_series_longer_than_the_cap_is_refused() {
        let limits = StoreLimits {
            retention_ms: 3_650 * DAY_MS,
            ..StoreLimits::default()
        };
        let now = 1_767_225_600_000;
        let engine = QueryEngine::new(
            Arc::new(Store::new(limits)),
            Arc::new(ManualClock::new(now)),
        );
        let range = TimeRange {
            start_ms: now - 1_000 * DAY_MS,
            end_ms: now,
        };
        let answer = engine.failure_details("acme", &format!("{:032x}", 7), Some(range));
        assert!(
            matches!(answer, Err(QueryError::TooManyPoints { .. })),
            "{answer:?}"
        );
    }

    /// A failure of `integration` with `code` at `at_ms`, as the decoder would produce it.
    fn failure(n: usize, integration: &str, code: u16, at_ms: i64) -> crate::event::Event<'static> {
        use std::borrow::Cow;
        crate::event::Event {
            event_id: Cow::Owned(format!("e{n}")),
            tenant_id: Cow::Borrowed("acme"),
            occurred_at_ms: at_ms,
            integration_type: crate::event::IntegrationType::OutboundWebhook,
            integration_id: Cow::Owned(integration.to_owned()),
            integration_name: Cow::Borrowed("hook"),
            outcome: crate::event::Outcome::Failure,
            status_code: Some(code),
            error_message: None,
            flow_id: None,
            flow_name: None,
            service_id: None,
            service_name: None,
            latency_ms: None,
        }
    }

    /// The first page in an order, recounted from the events: (integration, code, total, last).
    fn recount(
        events: &[(String, u16, i64)],
        range: TimeRange,
        order: FailureOrder,
        page: usize,
    ) -> (Vec<(String, u16, u64, i64)>, u64) {
        let mut groups: BTreeMap<(String, u16), (u64, i64)> = BTreeMap::new();
        for (integration, code, at) in events {
            let entry = groups
                .entry((integration.clone(), *code))
                .or_insert((0, i64::MIN));
            entry.0 += u64::from((range.start_ms..range.end_ms).contains(at));
            entry.1 = entry.1.max(*at);
        }
        let mut rows: Vec<_> = groups
            .into_iter()
            .filter(|(_, (total, _))| *total > 0)
            .map(|((i, c), (total, last))| (i, c, total, last))
            .collect();
        let count = rows.len() as u64;
        match order {
            FailureOrder::TotalErrorsDesc => rows.sort_by_key(|r| std::cmp::Reverse(r.2)),
            FailureOrder::LastSeenDesc => rows.sort_by_key(|r| std::cmp::Reverse(r.3)),
        }
        rows.truncate(page);
        (rows, count)
    }

    proptest::proptest! {
        /// The first page, served from the ranking's candidates after an eviction round and the
        /// failures since, has the numbers a recount of the events gives.
        #[test]
        fn first_pages_from_candidates_match_a_recount(
            before in proptest::collection::vec((0_usize..400, 0_u16..3, 0_i64..(45 * DAY_MS)), 1..600),
            after in proptest::collection::vec((0_usize..400, 0_u16..3, 0_i64..(2 * DAY_MS)), 0..300),
        ) {
            let now = 1_767_225_600_000;
            let store = Arc::new(Store::new(StoreLimits::default()));
            let shared = store.get_or_create(&PartitionKey::new("t", 0));
            let mut events = Vec::new();
            let apply = |batch: &[(usize, u16, i64)], at_now: i64, events: &mut Vec<_>| {
                let limits = StoreLimits::default();
                for (integration, code, ago) in batch {
                    let id = format!("int-{integration}");
                    let at = at_now - ago;
                    let event = failure(events.len(), &id, 500 + code, at);
                    if shared.write().apply(&event, &limits, at_now).is_ok() {
                        events.push((id, 500 + code, at));
                    }
                }
            };
            let engine = QueryEngine::new(store.clone(), Arc::new(ManualClock::new(now)));
            apply(&before, now, &mut events);
            // Checked before any eviction round (the tenant's ranking as made with it) and
            // after one, with failures since.
            check_first_pages(&engine, &events)?;
            store.evict(now);
            apply(&after, now, &mut events);
            check_first_pages(&engine, &events)?;
        }
    }

    fn check_first_pages(
        engine: &QueryEngine,
        events: &[(String, u16, i64)],
    ) -> Result<(), proptest::test_runner::TestCaseError> {
        {
            for order in [FailureOrder::TotalErrorsDesc, FailureOrder::LastSeenDesc] {
                let request = ListFailuresRequest {
                    order,
                    ..ListFailuresRequest::first_page("acme", 20)
                };
                let page = engine
                    .list_failures(&request)
                    .map_err(|e| proptest::test_runner::TestCaseError::fail(e.to_string()))?;
                let (expected, count) = recount(events, page.effective_range, order, 20);
                let got: Vec<_> = page
                    .failures
                    .iter()
                    .map(|r| {
                        (
                            r.integration_id.clone(),
                            r.status_code,
                            r.total_errors,
                            r.last_seen_ms,
                        )
                    })
                    .collect();
                // Ties are ordered by failure id, which the recount does not know: compare the
                // measure column in order and the rows as sets.
                let measure = |rows: &[(String, u16, u64, i64)]| -> Vec<i64> {
                    rows.iter()
                        .map(|r| match order {
                            FailureOrder::TotalErrorsDesc => r.2 as i64,
                            FailureOrder::LastSeenDesc => r.3,
                        })
                        .collect()
                };
                proptest::prop_assert_eq!(measure(&got), measure(&expected));
                proptest::prop_assert_eq!(page.total_groups, count);
                let all_rows = recount(events, page.effective_range, order, usize::MAX).0;
                for row in &got {
                    proptest::prop_assert!(
                        all_rows.contains(row),
                        "{:?} is not in the recount",
                        row
                    );
                }
                // Groups made since the eviction round are found by id too.
                for row in &page.failures {
                    let details = engine
                        .failure_details("acme", &row.failure_id, None)
                        .map_err(|e| proptest::test_runner::TestCaseError::fail(e.to_string()))?;
                    proptest::prop_assert_eq!(details.failure.total_errors, row.total_errors);
                }
            }
        }
        Ok(())
    }
}
