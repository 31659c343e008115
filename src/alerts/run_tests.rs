//! The silence rule through `changes`, over a store filled event by event: what fires, what
//! holds while the state cannot be trusted, and what resolves it.

use super::*;
use crate::alerts::{AlertRules, Routes, Rule};
use crate::event::{Event, IntegrationType, Outcome};
use crate::store::{LostOffsets, PartitionKey, StoreLimits, HOUR_MS, MINUTE_MS};

/// Midnight UTC, so the hours below are easy to read.
const NOW: i64 = 1_767_225_600_000;

fn success(id: String, integration: &'static str, at: i64) -> Event<'static> {
    let kind = IntegrationType::PrebuiltIntegration;
    Event::bare(id, "acme", kind, integration.into(), Outcome::Success, at)
}

/// `erp` sends 12 events in the half hour before midnight on each of the previous 7 days, and
/// last 45 minutes before `NOW`; `nightly` sends only at 06:00, so it is quiet at midnight
/// every day.
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
        }
    }
    apply(success("last".into(), "erp", NOW - 45 * MINUTE_MS));
    drop(partition);
    store
}

/// `changes` under the default rules and no runtime ones.
fn changes_at(store: &Store, book: &AlertBook, now_ms: i64, caught_up: bool) -> Vec<AlertEvent> {
    let rules = RuleOverrides::new(AlertRules::default(), Routes::default());
    changes(
        store,
        (&rules, &RuleBook::default()),
        book,
        now_ms,
        caught_up,
    )
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
    assert!(
        alert.measure.contains("12.0 on average, on 7"),
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
    assert!(silences(&changes_at(&store, &book, NOW, false)).is_empty());
    store.partitions()[0].1.write().losses.push(LostOffsets {
        topic: "events".into(),
        partition: 0,
        from: 10,
        to: 20,
        detected_at_ms: NOW - HOUR_MS,
        upstream: false,
    });
    assert!(silences(&changes_at(&store, &book, NOW, true)).is_empty());
    // A day later the loss is older than a day, and the silence (a day long now, against a
    // baseline of 6 days of 12 and the 23:00 hour of the last day) is claimed.
    let later = changes_at(&store, &book, NOW + DAY_MS, true);
    assert_eq!(silences(&later).len(), 1);
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
