//! The evaluator: on a timer, every rule over every tenant of the partitions this instance owns,
//! compared with what the alerts topic says was published; each change is published, and only
//! once the broker has it is it recorded as published.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::time::Duration;

use tokio_util::sync::CancellationToken;
use tracing::warn;

use super::{evaluate, subject_key, AlertBook, AlertEvent, AlertState, Measured, RuleOverrides};
use crate::changelog::ChangelogWriter;
use crate::clock::SharedClock;
use crate::store::Store;

/// Evaluates every `interval` until `shutdown`, once the alerts topic has been read.
pub async fn evaluate_periodically(
    store: Arc<Store>,
    clock: SharedClock,
    rules: Arc<RuleOverrides>,
    book: Arc<AlertBook>,
    writer: Arc<ChangelogWriter>,
    interval: Duration,
    shutdown: CancellationToken,
) {
    loop {
        tokio::select! {
            _ = shutdown.cancelled() => return,
            _ = tokio::time::sleep(interval) => {}
        }
        if !book.caught_up() {
            continue;
        }
        let now_ms = clock.now_ms();
        let changes = {
            let (store, rules, book) = (store.clone(), rules.clone(), book.clone());
            tokio::task::spawn_blocking(move || changes(&store, &rules, &book, now_ms)).await
        };
        for event in changes.unwrap_or_default() {
            let payload = serde_json::to_vec(&event).unwrap_or_default();
            match writer.write(&event.tenant_id, &payload).await {
                Ok(()) => book.record(event),
                // The book is unchanged, so the next round tries again.
                Err(err) => warn!(error = %err, alert = %event.alert_id, "alert not published"),
            }
        }
    }
}

/// The alert events that the current state calls for and the book has not seen. With
/// tenant-affine partitions each tenant is in one partition; otherwise each part is judged on
/// its own, and one change per subject and round is kept.
pub fn changes(
    store: &Store,
    rules: &RuleOverrides,
    book: &AlertBook,
    now_ms: i64,
) -> Vec<AlertEvent> {
    let mut events: Vec<AlertEvent> = Vec::new();
    let mut measured: HashMap<String, HashSet<String>> = HashMap::new();
    for (_, shared) in store.partitions() {
        let partition = shared.read();
        for (sym, tenant) in &partition.tenants {
            let tenant_id = partition.interner.resolve(*sym);
            let tenant_rules = rules.for_tenant(tenant_id);
            if !tenant_rules.enabled {
                continue;
            }
            let keys = measured.entry(tenant_id.to_owned()).or_default();
            for m in evaluate(&partition, tenant, &tenant_rules, now_ms) {
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
                    ..firing
                });
            }
        }
    }
    let mut seen = HashSet::new();
    events.retain(|e| seen.insert(e.subject_key()));
    events
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
    let (state, alert_id, fired_at_ms) = match book.firing(&key) {
        None if m.fires => {
            let id = xxhash_rust::xxh3::xxh3_128(format!("{key}|{now_ms}").as_bytes());
            (AlertState::Firing, format!("{id:032x}"), now_ms)
        }
        Some(firing) if m.clears => (AlertState::Resolved, firing.alert_id, firing.fired_at_ms),
        _ => return None,
    };
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
        measure: m.measure,
        first_failure_ms: m.first_failure_ms,
        last_failure_ms: m.last_failure_ms,
        sample_message: m.sample_message,
        guidance: m.guidance,
        fired_at_ms,
        at_ms: now_ms,
    })
}
