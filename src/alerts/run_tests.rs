//! The silence rule through `changes`, over a store filled event by event: what fires, what
//! holds while the state cannot be trusted, and what resolves it.

use super::*;
use crate::alerts::{AlertRules, Routes, Rule};
use crate::event::{Event, IntegrationType, Outcome};
use crate::store::{LostOffsets, PartitionKey, StoreLimits, DAY_MS, HOUR_MS, MINUTE_MS};

/// Midnight UTC, so the hours below are easy to read.
const NOW: i64 = 1_767_225_600_000;

fn success(id: String, integration: &'static str, at: i64) -> Event<'static> {
    let kind = IntegrationType::PrebuiltIntegration;
    Event::bare(id, "acme", kind, integration.into(), Outcome::Success, at)
}

/// `erp` sends 12 events in the half hour before midnight on each of the previous 7 days, and
/// last 45 minutes before `NOW`; `weekly` does the same on only 4 of the 7 days, one short of
/// steady; `nightly` sends only at 06:00, so it is quiet at midnight every day.
fn store() -> Store {
    let store = Store::new(StoreLimits::default());
    let shared = store.get_or_create(&PartitionKey::new("events", 0));
    let mut partition = shared.write();
    let limits = StoreLimits::default();
    let mut apply = |event: Event<'static>| {
        partition.apply(&event, &limits, NOW).expect("applied");
    };
    for day in 1..=7 {
        for i in 0..12 {
            apply(success(
                format!("e{day}-{i}"),
                "erp",
                NOW - day * DAY_MS - 30 * MINUTE_MS + i * MINUTE_MS,
            ));
            apply(success(
                format!("n{day}-{i}"),
                "nightly",
                NOW - day * DAY_MS + 6 * HOUR_MS + i,
            ));
            if day <= 4 {
                apply(success(
                    format!("w{day}-{i}"),
                    "weekly",
                    NOW - day * DAY_MS - 30 * MINUTE_MS + i * MINUTE_MS,
                ));
            }
        }
    }
    apply(success("last".into(), "erp", NOW - 45 * MINUTE_MS));
    apply(success("last-w".into(), "weekly", NOW - 45 * MINUTE_MS));
    drop(partition);
    store
}

/// `changes` under the default rules and no runtime ones, the partition `behind` or not.
fn round_at(store: &Store, book: &AlertBook, now_ms: i64, behind: Option<&'static str>) -> Round {
    let rules = RuleOverrides::new(AlertRules::default(), Routes::default());
    let behind: Behind = behind
        .map(|reason| (PartitionKey::new("events", 0), reason))
        .into_iter()
        .collect();
    changes(store, (&rules, &RuleBook::default()), book, now_ms, &behind)
}

fn changes_at(store: &Store, book: &AlertBook, now_ms: i64, caught_up: bool) -> Vec<AlertEvent> {
    let behind = (!caught_up).then_some("lagging");
    round_at(store, book, now_ms, behind).events
}

fn silences(events: &[AlertEvent]) -> Vec<&AlertEvent> {
    events.iter().filter(|e| e.rule == Rule::Silence).collect()
}

#[test]
fn a_steady_integration_gone_quiet_fires_and_its_next_event_resolves_it() {
    let store = store();
    let book = AlertBook::default();
    let fired = changes_at(&store, &book, NOW, true);
    let fired = silences(&fired);
    assert_eq!(fired.len(), 1, "{fired:?}");
    let alert = fired[0].clone();
    assert_eq!(alert.integration_id, "erp");
    assert_eq!(alert.state, AlertState::Firing);
    // The minute of the last event counts as heard: silent from its end, 44 minutes.
    assert_eq!((alert.value, alert.threshold), (44.0, 30.0));
    assert_eq!(alert.min_volume, 10, "the events a steady day's hours hold");
    assert!(
        alert
            .measure
            .contains("at least 10 events on 7 of the previous 7 days"),
        "{}",
        alert.measure
    );
    book.record(alert.clone());

    let shared = store.partitions()[0].1.clone();
    shared
        .write()
        .apply(
            &success("back".into(), "erp", NOW + MINUTE_MS),
            &StoreLimits::default(),
            NOW,
        )
        .expect("applied");
    let held = changes_at(&store, &book, NOW + 2 * MINUTE_MS, false);
    assert!(
        silences(&held).is_empty(),
        "an untrusted state ends no silence"
    );
    let resolved = changes_at(&store, &book, NOW + 2 * MINUTE_MS, true);
    let resolved = silences(&resolved);
    assert_eq!(resolved.len(), 1);
    assert_eq!(resolved[0].state, AlertState::Resolved);
    assert_eq!(resolved[0].alert_id, alert.alert_id);
}

#[test]
fn no_silence_is_claimed_while_behind_or_after_lost_offsets() {
    let store = store();
    let book = AlertBook::default();
    for reason in ["lagging", "unassigned"] {
        let round = round_at(&store, &book, NOW, Some(reason));
        assert!(silences(&round.events).is_empty());
        // One silence evaluation per integration (erp, nightly, weekly), each skipped.
        assert_eq!(round.skipped, [reason; 3]);
    }
    store.partitions()[0].1.write().losses.push(LostOffsets {
        topic: "events".into(),
        partition: 0,
        from: 10,
        to: 20,
        detected_at_ms: NOW - 59 * MINUTE_MS,
        upstream: false,
    });
    let round = round_at(&store, &book, NOW, None);
    assert!(silences(&round.events).is_empty());
    assert_eq!(round.skipped, ["lost_offsets"; 3]);
    // Two minutes on, the loss is older than twice the 30-minute silence, and erp's silence
    // (46 minutes now, in hours it was steady in) is claimed.
    let later = round_at(&store, &book, NOW + 2 * MINUTE_MS, None);
    assert_eq!(silences(&later.events).len(), 1);
    assert!(later.skipped.is_empty());
}

#[test]
fn silent_past_its_baseline_it_resolves() {
    let store = store();
    let book = AlertBook::default();
    let fired = changes_at(&store, &book, NOW, true);
    book.record(silences(&fired)[0].clone());
    // Eight days on, the previous 7 days hold nothing at this hour: no baseline, resolved.
    let later = changes_at(&store, &book, NOW + 8 * DAY_MS, true);
    let later = silences(&later);
    assert_eq!(later.len(), 1);
    assert_eq!(later[0].state, AlertState::Resolved);
}
