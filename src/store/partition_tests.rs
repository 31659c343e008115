//! Tests of `partition`, beside it to keep that file to its job.

use std::borrow::Cow;

use proptest::prelude::*;

use super::*;
use crate::event::IntegrationType;
use crate::store::compact::Compact;
use crate::store::{ceil_to, DAY_MS, DEFAULT_WINDOW_MS};

const NOW: i64 = 1_767_225_600_000;

fn failure(id: &str, at: i64, code: u16) -> Event<'static> {
    Event {
        integration_name: Cow::Borrowed("CRM lookup"),
        status_code: Some(code),
        flow_id: Some(Cow::Borrowed("f1")),
        ..Event::bare(
            id.to_owned(),
            "t1",
            IntegrationType::CustomNode,
            "node-1".into(),
            Outcome::Failure,
            at,
        )
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
            Ok(Applied::Accepted)
        );
    }
    let tenant = state.tenant("t1").unwrap();
    let group = tenant.groups.values().next().unwrap();
    assert_eq!(group.first_seen_ms(), Some(NOW - 10 * HOUR_MS));
    assert_eq!(group.last_seen_ms(), Some(NOW - 10 * HOUR_MS + 7 * 7_777));
    let ids: Vec<&str> = group.samples.iter().map(|s| &*s.event_id).collect();
    assert_eq!(ids, ["e7", "e6", "e5", "e4", "e3"]);
    let key = tenant.groups.keys().next().unwrap();
    assert_eq!(
        state.interner.resolve(key.description),
        "",
        "no message: the catalog name is applied when read"
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
        let _ = state.apply(
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
        .map(|g| g.total_in(i64::MIN, i64::MAX, state.rolled_until))
        .sum();
    assert_eq!(total, 5, "nothing is lost");
}

#[test]
fn at_the_tenant_cap_the_longest_idle_tenant_on_probation_makes_room_and_a_settled_one_never() {
    let limits = StoreLimits {
        tenant_cap_per_partition: 3,
        tenant_evict_max_events: 10,
        tenant_settled_minutes: 3,
        ..StoreLimits::default()
    };
    let mut state = PartitionState::new(&limits);
    let mut n = 0;
    let mut send = |state: &mut PartitionState, tenant: &'static str, arrives: i64| {
        n += 1;
        let event = Event {
            tenant_id: Cow::Borrowed(tenant),
            // Dated now whatever the arrival: probation reads the arrival, not occurred_at.
            ..failure(&format!("e{n}"), NOW, 500)
        };
        state.apply(&event, &limits, arrives)
    };
    let minute = |m: i64| NOW + m * MINUTE_MS;
    // Settled: events in three distinct minutes of arrival, four events in all.
    for m in [0, 0, 1, 2] {
        assert_eq!(send(&mut state, "real", minute(m)), Ok(Applied::Accepted));
    }
    // Two junk tenants, four events each, each within one minute.
    for (tenant, m) in [("junk-1", 3), ("junk-2", 4)] {
        for _ in 0..4 {
            assert_eq!(send(&mut state, tenant, minute(m)), Ok(Applied::Accepted));
        }
    }
    // A newcomer takes the place of the longest idle junk, then another of the other.
    assert_eq!(send(&mut state, "new-1", minute(5)), Ok(Applied::Accepted));
    assert_eq!(send(&mut state, "new-2", minute(6)), Ok(Applied::Accepted));
    let evicted: Vec<&str> = state.evicted.iter().map(|(id, _)| id.as_str()).collect();
    assert_eq!(evicted, ["junk-1", "junk-2"]);
    // new-1 stays active; new-2 goes quiet, so it is the one to make room.
    assert_eq!(send(&mut state, "new-1", minute(7)), Ok(Applied::Accepted));
    assert_eq!(send(&mut state, "new-3", minute(8)), Ok(Applied::Accepted));
    assert_eq!(
        state.evicted.last().map(|(id, _)| id.as_str()),
        Some("new-2")
    );
    // Eleven events settle new-1 within one minute: from now on the one tenant on probation
    // is the newest, and each newcomer takes its place.
    for _ in 0..10 {
        assert_eq!(send(&mut state, "new-1", minute(9)), Ok(Applied::Accepted));
    }
    for (tenant, m, replaced) in [("new-4", 10, "new-3"), ("new-5", 11, "new-4")] {
        assert_eq!(send(&mut state, tenant, minute(m)), Ok(Applied::Accepted));
        assert_eq!(
            state.evicted.last().map(|(id, _)| id.as_str()),
            Some(replaced)
        );
    }
    // An eviction round rebuilds the queue from the tenants: the same one is next.
    state.evict(&limits, minute(12));
    assert_eq!(send(&mut state, "new-6", minute(13)), Ok(Applied::Accepted));
    assert_eq!(
        state.evicted.last().map(|(id, _)| id.as_str()),
        Some("new-5")
    );
    for settled in ["real", "new-1"] {
        assert!(
            state.tenant(settled).is_some(),
            "{settled} is never evicted"
        );
    }
}

#[test]
fn with_every_tenant_settled_a_new_one_is_refused() {
    let limits = StoreLimits {
        tenant_cap_per_partition: 2,
        ..StoreLimits::default()
    };
    let mut state = PartitionState::new(&limits);
    for (i, tenant) in ["a", "b"].into_iter().enumerate() {
        for m in 0..3 {
            let event = Event {
                tenant_id: Cow::Borrowed(tenant),
                ..failure(&format!("{tenant}{m}"), NOW, 500)
            };
            let arrives = NOW + (m + 3 * i as i64) * MINUTE_MS;
            assert_eq!(state.apply(&event, &limits, arrives), Ok(Applied::Accepted));
        }
    }
    let newcomer = Event {
        tenant_id: Cow::Borrowed("c"),
        ..failure("c0", NOW, 500)
    };
    let refused = state.apply(&newcomer, &limits, NOW + HOUR_MS);
    assert!(matches!(
        refused,
        Err(EventError::TenantLimit { cap: 2, .. })
    ));
    assert!(state.evicted.is_empty());
}

#[test]
fn late_events_are_dropped_and_eviction_honours_retention() {
    let limits = StoreLimits::default();
    let run = |as_buckets: bool| {
        let mut state = PartitionState::new(&limits);
        let too_old = NOW - limits.day_retention_ms - 1;
        assert_eq!(
            state.apply(&failure("old", too_old, 500), &limits, NOW),
            Ok(Applied::LateDropped)
        );
        let _ = state.apply(&failure("a", NOW - 3 * DAY_MS, 500), &limits, NOW);
        if as_buckets {
            for tenant in state.tenants.values_mut() {
                tenant.counts.tiered_mut(i64::MIN);
            }
        }
        let _ = state.apply(&failure("b", NOW - HOUR_MS, 500), &limits, NOW);
        state
    };
    let (mut state, mut buckets) = (run(false), run(true));
    for state in [&mut state, &mut buckets] {
        state.evict(&limits, NOW + 60 * DAY_MS);
        let tenant = state.tenant("t1").unwrap();
        assert_eq!(tenant.events_kept(), 2);
        assert!(tenant.minutes.is_empty());
        assert_eq!(state.totals.late_dropped, 1);
    }
    let quiet = state.tenant("t1").unwrap();
    assert_eq!(quiet.counts.len(), 2, "a quiet tenant keeps both events");
    let Compact::Tiered(tiered) = &buckets.tenant("t1").unwrap().counts else {
        panic!("made buckets above");
    };
    assert_eq!(tiered.hours.len(), 1, "the older hour left the hour tier");
    assert_eq!(tiered.days.len(), 2, "both days are kept");
}

#[test]
fn an_overflowing_failure_interns_none_of_its_strings() {
    let limits = StoreLimits {
        group_cap_per_tenant: 1,
        integration_cap_per_tenant: 1,
        ..StoreLimits::default()
    };
    let mut state = PartitionState::new(&limits);
    let _ = state.apply(&failure("first", NOW - HOUR_MS, 500), &limits, NOW);
    let _ = state.apply(&failure("second", NOW - HOUR_MS, 501), &limits, NOW);
    let interned = state.interner.len();
    for i in 0..1_000 {
        let mut event = failure(&format!("u{i}"), NOW - HOUR_MS, 501);
        event.error_message = Some(Cow::Owned(format!("unique message {i}")));
        event.integration_id = Cow::Owned(format!("node-{i}"));
        let _ = state.apply(&event, &limits, NOW);
    }
    assert_eq!(
        state.interner.len(),
        interned + 1,
        "nothing but the overflow integration's name, once"
    );
    assert_eq!(state.totals.overflowed, 1_001);
    let integrations = &state.tenant("t1").unwrap().integrations;
    let mut failed = 0;
    for integration in integrations.values() {
        let (start, end) = (i64::MIN, i64::MAX);
        integration
            .buckets
            .for_each_hour_in(start, end, |h| failed += h.failed);
    }
    assert_eq!(
        (integrations.len(), failed),
        (2, 1_002),
        "one real, one overflow"
    );
}

#[test]
fn compaction_keeps_every_answer_and_drops_dead_strings() {
    let limits = StoreLimits::default();
    let mut state = PartitionState::new(&limits);
    for i in 0..50 {
        let mut event = failure(&format!("e{i}"), NOW - (i % 5) * 90 * DAY_MS, 500);
        event.error_message = Some(Cow::Owned(format!("message {}", i % 10)));
        let _ = state.apply(&event, &limits, NOW);
    }
    // The oldest failures leave the day tier, and messages 4 and 9 with them.
    state.evict(&limits, NOW + 60 * DAY_MS);
    let before = fingerprint(&state);
    let strings_before = state.interner.len();
    state.compact_interner();
    assert_eq!(fingerprint(&state), before);
    assert!(state.interner.len() < strings_before);
}

/// Every group as strings and numbers, independent of symbol numbering.
fn fingerprint(state: &PartitionState) -> Vec<String> {
    let text = |sym| state.interner.resolve(sym).to_owned();
    let mut rows: Vec<String> = state
        .tenants
        .iter()
        .flat_map(|(tenant, t)| {
            t.groups.iter().map(move |(key, group)| {
                let samples: Vec<String> = group
                    .samples
                    .iter()
                    .map(|s| format!("{}:{}", s.event_id, text(key.description)))
                    .collect();
                format!(
                    "{} {} {} {} {} {:?} {:?}",
                    text(*tenant),
                    text(key.integration_id),
                    text(key.description),
                    text(group.integration_name),
                    group.failure_id,
                    group.buckets,
                    samples
                )
            })
        })
        .collect();
    rows.sort();
    rows
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

    /// The total kept on ingest over the default range equals a count of the events in it,
    /// before and after the window moves, for events on either side of its start.
    #[test]
    fn kept_window_totals_match_a_recount(
        before in proptest::collection::vec(0_i64..(40 * DAY_MS), 1..60),
        after in proptest::collection::vec(0_i64..(40 * DAY_MS), 0..60),
        step_hours in 0_i64..100,
    ) {
        let limits = StoreLimits::default();
        let mut state = PartitionState::new(&limits);
        let mut all = Vec::new();
        for (i, off) in before.iter().enumerate() {
            all.push(NOW - off);
            let _ = state.apply(&failure(&format!("b{i}"), NOW - off, 503), &limits, NOW);
        }
        let later = NOW + step_hours * HOUR_MS;
        state.evict(&limits, NOW);
        for (i, off) in after.iter().enumerate() {
            all.push(later - off);
            let _ = state.apply(&failure(&format!("a{i}"), later - off, 503), &limits, later);
        }
        for now in [NOW, later] {
            state.evict(&limits, now);
            let start = floor_to(now - DEFAULT_WINDOW_MS, HOUR_MS);
            let end = ceil_to(now, HOUR_MS);
            let group = state.tenant("t1").unwrap().groups.values().next().unwrap();
            prop_assert_eq!(group.window.map(|w| w.start_ms), Some(start));
            prop_assert_eq!(group.first_seen_ms(), all.iter().min().copied());
            prop_assert_eq!(group.last_seen_ms(), all.iter().max().copied());
            let recount = all.iter().filter(|t| (start..end).contains(*t)).count() as u64;
            prop_assert_eq!(group.total_in(start, end, state.rolled_until), recount);
            prop_assert_eq!(group.total_in(start, end - HOUR_MS, state.rolled_until), all.iter().filter(|t| (start..end - HOUR_MS).contains(*t)).count() as u64);
        }
    }

    #[test]
    fn minute_and_hour_buckets_agree(offsets in proptest::collection::vec(0_i64..(47 * HOUR_MS), 1..200)) {
        let limits = StoreLimits::default();
        let mut state = PartitionState::new(&limits);
        for (i, off) in offsets.iter().enumerate() {
            let _ = state.apply(&failure(&format!("e{i}"), NOW - off, 503), &limits, NOW);
        }
        let tenant = state.tenant("t1").unwrap();
        let start = floor_to(NOW - 47 * HOUR_MS, HOUR_MS);
        let end = ceil_to(NOW + 1, HOUR_MS);
        let rolled = state.rolled_until;
        prop_assert_eq!(tenant.counts_in(start, end, true, rolled), tenant.counts_in(start, end, false, rolled));
        let total: u64 = tenant.counts_in(start, end, false, rolled).failed.values().sum();
        prop_assert_eq!(total, offsets.len() as u64);
    }
}

#[test]
fn choosing_candidates_again_keeps_what_a_fresh_ranking_holds() {
    let limits = StoreLimits::default();
    let mut state = PartitionState::new(&limits);
    let groups = 1_500;
    for i in 0..3 * groups {
        let mut event = failure(&format!("e{i}"), NOW - DAY_MS + i as i64 * 1_000, 500);
        event.integration_id = Cow::Owned(format!("node-{}", i % groups));
        state.apply(&event, &limits, NOW).unwrap();
    }
    let sym = state.interner.get("t1").unwrap();
    let tenant = &state.tenants[&sym];
    let kept = tenant.ranking.clone().unwrap();
    assert!(
        kept.by_last_seen.keys.len() < groups,
        "the candidates were chosen again on ingest"
    );
    let fresh = crate::store::ranking::Ranking::build(&mut tenant.groups.clone(), kept.start_ms);
    assert_eq!(kept.ids, fresh.ids);
    assert_eq!(kept.codes, fresh.codes);
    assert_eq!(kept.groups_with_failures, fresh.groups_with_failures);
    assert_eq!(kept.newest_hour, fresh.newest_hour);
}
