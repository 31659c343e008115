//! The evaluator: on a timer, every rule over every tenant of the partitions this instance owns,
//! compared with what the alerts topic says was published; each change is published, and only
//! once the broker has it is it recorded as published.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::time::Duration;

use tokio_util::sync::CancellationToken;
use tracing::warn;

use super::evaluate::Trust;
use super::{
    evaluate, subject_key, AlertBook, AlertEvent, AlertState, Measured, RuleBook, RuleOverrides,
};
use crate::changelog::ChangelogWriter;
use crate::clock::SharedClock;
use crate::ops::{CheckReady, Metrics};
use crate::store::{PartitionKey, Store};

/// The partitions the service is behind on, each with why ("lagging", "unassigned"): given by
/// the server, since `alerts` does not know ingest.
pub(crate) type BehindCheck = Arc<dyn Fn() -> Behind + Send + Sync>;
pub(crate) type Behind = HashMap<PartitionKey, &'static str>;

/// What the evaluator reads and writes.
pub(crate) struct Evaluator {
    pub(crate) store: Arc<Store>,
    pub(crate) clock: SharedClock,
    pub(crate) rules: Arc<RuleOverrides>,
    /// The rules set at runtime, from `<topic>.rules`.
    pub(crate) rule_book: Arc<RuleBook>,
    pub(crate) book: Arc<AlertBook>,
    pub(crate) writer: Arc<ChangelogWriter>,
    pub(crate) interval: Duration,
    /// Which partitions the service is behind on: no silence is claimed from them, since the
    /// unread messages may be the silent integration's next events.
    pub(crate) behind: BehindCheck,
    /// Counts the silences not judged, per reason.
    pub(crate) metrics: Arc<Metrics>,
    /// Whether every assigned partition is restored and read to its high watermark. No round
    /// is evaluated before: judged on part of the events (a restart catching up, a partition
    /// just moved here), a firing alert would resolve and fire again under a new id.
    pub(crate) read_all: CheckReady,
}

/// Evaluates every `interval` until `shutdown`, once the alerts topic has been read.
pub(crate) async fn evaluate_periodically(evaluator: Evaluator, shutdown: CancellationToken) {
    let Evaluator {
        store,
        clock,
        rules,
        rule_book,
        book,
        writer,
        interval,
        behind,
        metrics,
        read_all,
    } = evaluator;
    loop {
        tokio::select! {
            _ = shutdown.cancelled() => return,
            _ = tokio::time::sleep(interval) => {}
        }
        if !book.caught_up() || !rule_book.caught_up() || read_all().is_err() {
            continue;
        }
        let now_ms = clock.now_ms();
        let changes = {
            let (store, book, behind) = (store.clone(), book.clone(), behind.clone());
            let rules = (rules.clone(), rule_book.clone());
            tokio::task::spawn_blocking(move || {
                // Before any partition's lock: it reads every partition's status.
                let behind = behind();
                changes(&store, (&rules.0, &rules.1), &book, now_ms, &behind)
            })
            .await
        };
        let Round { events, skipped } = changes.unwrap_or_default();
        for reason in skipped {
            metrics.silence_skipped(reason);
        }
        for event in events {
            let payload = serde_json::to_vec(&event).unwrap_or_default();
            match writer.write(&event.subject_key(), &payload).await {
                Ok(()) => book.record(event),
                // The book is unchanged, so the next round tries again.
                Err(err) => warn!(error = %err, alert = %event.alert_id, "alert not published"),
            }
        }
    }
}

/// What one round calls for: the alert events to publish, and a reason for each silence it
/// could not judge.
#[derive(Debug, Default)]
pub(crate) struct Round {
    pub(crate) events: Vec<AlertEvent>,
    pub(crate) skipped: Vec<&'static str>,
}

/// The alert events that the current state calls for and the book has not seen. With
/// tenant-affine partitions each tenant is in one partition; otherwise each part is judged on
/// its own, and one change per subject and round is kept.
pub(crate) fn changes(
    store: &Store,
    (rules, rule_book): (&RuleOverrides, &RuleBook),
    book: &AlertBook,
    now_ms: i64,
    behind: &Behind,
) -> Round {
    let mut events: Vec<AlertEvent> = Vec::new();
    let mut skipped = Vec::new();
    let mut measured: HashMap<String, HashSet<String>> = HashMap::new();
    for (key, shared) in store.partitions() {
        let partition = shared.read();
        let trust = Trust {
            behind: behind.get(&key).copied(),
            losses: &partition.losses,
        };
        for (sym, tenant) in &partition.tenants {
            let tenant_id = partition.interner.resolve(*sym);
            let resolve = |rule, kind, id: Option<&str>| {
                rules.resolve(rule_book, tenant_id, rule, Some(kind), id)
            };
            let keys = measured.entry(tenant_id.to_owned()).or_default();
            for m in evaluate(&partition, (tenant_id, tenant), &resolve, now_ms, trust) {
                skipped.extend(m.skipped);
                let kind = m.integration_type.as_str();
                keys.insert(subject_key(
                    tenant_id,
                    m.rule,
                    kind,
                    &m.integration_id,
                    m.status_code,
                ));
                if let Some(event) = change(tenant_id, m, book, now_ms, |m| {
                    m.describe(&partition, tenant)
                }) {
                    events.push(event);
                }
            }
        }
    }
    // A firing subject with nothing left to measure (no failures of a spike's code in the last
    // hour, an integration gone from retention) has recovered.
    for (tenant_id, keys) in &measured {
        for firing in book.firing_of(tenant_id) {
            if !keys.contains(&firing.subject_key()) {
                events.push(AlertEvent {
                    state: AlertState::Resolved,
                    value: 0.0,
                    at_ms: now_ms,
                    escalated: false,
                    ..firing
                });
            }
        }
    }
    let mut seen = HashSet::new();
    events.retain(|e| seen.insert(e.subject_key()));
    Round { events, skipped }
}

/// The event `m` calls for, if any; `describe` fills in its context only then.
fn change(
    tenant_id: &str,
    mut m: Measured,
    book: &AlertBook,
    now_ms: i64,
    describe: impl FnOnce(&mut Measured),
) -> Option<AlertEvent> {
    let kind = m.integration_type.as_str();
    let key = subject_key(tenant_id, m.rule, kind, &m.integration_id, m.status_code);
    let (state, alert_id, fired_at_ms, severity, destinations) = match book.firing(&key) {
        None if m.fires => {
            let id = xxhash_rust::xxh3::xxh3_128(format!("{key}|{now_ms}").as_bytes());
            let id = format!("{id:032x}");
            (
                AlertState::Firing,
                id,
                now_ms,
                m.severity,
                m.destinations.clone(),
            )
        }
        // A RESOLVED goes where its FIRING went, with the FIRING's severity.
        Some(firing) if m.clears => (
            AlertState::Resolved,
            firing.alert_id,
            firing.fired_at_ms,
            firing.severity,
            firing.destinations,
        ),
        // Within an episode, severity only rises: a slow burn turning fast pages again, under
        // the same alert id (one PagerDuty incident), and never goes back down.
        Some(firing) if m.fires && m.severity.outranks(firing.severity) => (
            AlertState::Firing,
            firing.alert_id,
            firing.fired_at_ms,
            m.severity,
            firing.destinations,
        ),
        _ => return None,
    };
    let escalated = state == AlertState::Firing && fired_at_ms != now_ms;
    describe(&mut m);
    Some(AlertEvent {
        alert_id,
        state,
        tenant_id: tenant_id.to_owned(),
        rule: m.rule,
        integration_type: kind.to_owned(),
        integration_id: m.integration_id,
        integration_name: m.integration_name,
        status_code: m.status_code,
        value: m.value,
        threshold: m.threshold,
        min_volume: m.min_volume,
        measure: m.measure,
        first_failure_ms: m.first_failure_ms,
        last_failure_ms: m.last_failure_ms,
        sample_message: m.sample_message,
        guidance: m.guidance,
        fired_at_ms,
        at_ms: now_ms,
        severity,
        destinations,
        escalated,
    })
}

#[cfg(test)]
#[path = "run_tests.rs"]
mod tests;
