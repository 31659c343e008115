//! Tests of `failures`, beside it to keep that file to its job.

use std::sync::Arc;

use super::*;
use crate::clock::ManualClock;
use crate::store::{Store, StoreLimits, DAY_MS};

#[test]
fn a_details_series_longer_than_the_cap_is_refused() {
    let limits = StoreLimits::keeping(3_650 * DAY_MS);
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
    use crate::event::{Event, IntegrationType, Outcome};
    Event {
        integration_name: std::borrow::Cow::Borrowed("hook"),
        status_code: Some(code),
        ..Event::bare(
            format!("e{n}"),
            "acme",
            IntegrationType::OutboundWebhook,
            integration.to_owned(),
            Outcome::Failure,
            at_ms,
        )
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
                proptest::prop_assert!(all_rows.contains(row), "{:?} is not in the recount", row);
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
