//! Alerts on failure rate, spikes and SLO burn. Rules are evaluated on the instance that owns a
//! tenant's partition, over that partition's state, on a timer; every change (`FIRING`,
//! `RESOLVED`) is published as a JSON event to `<topic>.alerts`, keyed by tenant.
//!
//! The alerts topic is also the record of what was published: every instance reads it whole
//! into the `AlertBook`, and the evaluator compares against the book, so after a restart or a
//! rebalance nothing already published is sent again.
//!
//! - `rules`: the thresholds, their defaults and per-tenant overrides;
//! - `scoped`: the rules set at runtime, per tenant, integration type or integration;
//! - `effective`: the rule in force for a subject, with where each field comes from;
//! - `evaluate`: what each rule measures, and the transitions it causes;
//! - `run`: the evaluator task and the publisher.

mod effective;
mod evaluate;
mod rules;
mod run;
mod scoped;

use std::collections::HashMap;

use parking_lot::RwLock;
use serde::{Deserialize, Serialize};
use tokio::sync::broadcast;

use crate::changelog::Table;

pub(crate) use effective::effective;
pub(crate) use evaluate::{evaluate, Measured};
pub(crate) use rules::{AlertRules, Resolved, Routes, RuleOverrides, RulesError};
pub(crate) use run::{evaluate_periodically, BehindCheck, Evaluator};
pub use scoped::RuleKeeping;
pub(crate) use scoped::{RuleBook, RuleScope, RuleSpec, ScopedRule};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub(crate) enum Rule {
    FailureRate,
    Spike,
    SloBurn,
    Silence,
}

impl Rule {
    pub(crate) const ALL: [Rule; 4] =
        [Rule::FailureRate, Rule::Spike, Rule::SloBurn, Rule::Silence];

    /// The severity of this kind's alerts when no rule sets one; `fast` for an SLO burn's
    /// fast pair, which pages.
    pub(crate) fn default_severity(self, fast: bool) -> Severity {
        match self {
            Rule::FailureRate => Severity::Error,
            Rule::SloBurn if fast => Severity::Critical,
            Rule::Spike | Rule::SloBurn | Rule::Silence => Severity::Warning,
        }
    }

    pub(crate) fn as_str(self) -> &'static str {
        match self {
            Rule::FailureRate => "failure_rate",
            Rule::Spike => "spike",
            Rule::SloBurn => "slo_burn",
            Rule::Silence => "silence",
        }
    }
}

/// How urgent an alert is, in PagerDuty's words.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub(crate) enum Severity {
    Critical,
    Error,
    #[default]
    Warning,
    Info,
}

impl Severity {
    /// Whether `self` is more urgent than `other`.
    pub(crate) fn outranks(self, other: Severity) -> bool {
        self.urgency() > other.urgency()
    }

    fn urgency(self) -> u8 {
        match self {
            Severity::Critical => 3,
            Severity::Error => 2,
            Severity::Warning => 1,
            Severity::Info => 0,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub(crate) enum AlertState {
    Firing,
    Resolved,
}

/// One published change of an alert: the schema of `<topic>.alerts`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub(crate) struct AlertEvent {
    /// The same for the `FIRING` and the `RESOLVED` of one episode.
    pub(crate) alert_id: String,
    pub(crate) state: AlertState,
    pub(crate) tenant_id: String,
    pub(crate) rule: Rule,
    pub(crate) integration_type: String,
    /// Empty for a spike, which is per (type, code).
    pub(crate) integration_id: String,
    pub(crate) integration_name: String,
    /// The code the alert is about: a spike's own, or the integration's most frequent one.
    pub(crate) status_code: u16,
    /// What was measured, and the threshold it crossed (or fell below, with the hysteresis).
    pub(crate) value: f64,
    pub(crate) threshold: f64,
    /// The minimum volume the rule applied (see `Measured::min_volume`); 0 in events
    /// published before it was recorded.
    #[serde(default)]
    pub(crate) min_volume: u64,
    /// What `value` is, in words: "failure rate over 15 min", "burn rate 1 h / 5 min".
    pub(crate) measure: String,
    pub(crate) first_failure_ms: Option<i64>,
    pub(crate) last_failure_ms: Option<i64>,
    pub(crate) sample_message: String,
    /// The catalog's guidance for the type and code.
    pub(crate) guidance: String,
    pub(crate) fired_at_ms: i64,
    pub(crate) at_ms: i64,
    /// Set when it fires, and kept by its RESOLVED.
    #[serde(default)]
    pub(crate) severity: Severity,
    /// Where the notifier sends it: chosen when it fires, kept by its RESOLVED.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub(crate) destinations: Vec<String>,
    /// A FIRING again within its episode, at a higher severity than before.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub(crate) escalated: bool,
}

impl AlertEvent {
    /// What the alert is about: one per (tenant, rule, subject), whatever the episode.
    pub(crate) fn subject_key(&self) -> String {
        subject_key(
            &self.tenant_id,
            self.rule,
            &self.integration_type,
            &self.integration_id,
            self.status_code,
        )
    }
}

pub(crate) fn subject_key(
    tenant: &str,
    rule: Rule,
    kind: &str,
    integration: &str,
    code: u16,
) -> String {
    match rule {
        Rule::Spike => format!("{tenant}|spike|{kind}|{code}"),
        _ => format!("{tenant}|{rule:?}|{kind}|{integration}"),
    }
}

/// The newest event of every alert subject, as read from the topic.
pub struct AlertBook {
    latest: RwLock<HashMap<String, AlertEvent>>,
    caught_up: std::sync::atomic::AtomicBool,
    changes: broadcast::Sender<AlertEvent>,
}

impl Default for AlertBook {
    fn default() -> Self {
        AlertBook {
            latest: RwLock::new(HashMap::new()),
            caught_up: std::sync::atomic::AtomicBool::new(false),
            changes: broadcast::channel(256).0,
        }
    }
}

impl AlertBook {
    /// Keeps `event` if it is newer than what the book has for its subject, and tells watchers.
    pub(crate) fn record(&self, event: AlertEvent) {
        let key = event.subject_key();
        let mut latest = self.latest.write();
        // An escalation is the same alert and state at a higher severity: news.
        let known = latest.get(&key).is_some_and(|e| {
            e.alert_id == event.alert_id && e.state == event.state && e.severity == event.severity
        });
        if known {
            return;
        }
        latest.insert(key, event.clone());
        drop(latest);
        let _ = self.changes.send(event);
    }

    pub(crate) fn firing(&self, subject_key: &str) -> Option<AlertEvent> {
        self.latest
            .read()
            .get(subject_key)
            .filter(|e| e.state == AlertState::Firing)
            .cloned()
    }

    /// The tenant's firing alerts.
    pub(crate) fn firing_of(&self, tenant: &str) -> Vec<AlertEvent> {
        self.latest
            .read()
            .values()
            .filter(|e| e.tenant_id == tenant && e.state == AlertState::Firing)
            .cloned()
            .collect()
    }

    /// Firing alerts, and those resolved at or after `resolved_since_ms`; of one tenant, or all.
    pub(crate) fn list(&self, tenant: Option<&str>, resolved_since_ms: i64) -> Vec<AlertEvent> {
        let mut list: Vec<AlertEvent> = self
            .latest
            .read()
            .values()
            .filter(|e| tenant.is_none_or(|t| e.tenant_id == t))
            .filter(|e| e.state == AlertState::Firing || e.at_ms >= resolved_since_ms)
            .cloned()
            .collect();
        list.sort_by(|a, b| {
            b.at_ms
                .cmp(&a.at_ms)
                .then_with(|| a.alert_id.cmp(&b.alert_id))
        });
        list
    }

    pub(crate) fn subscribe(&self) -> broadcast::Receiver<AlertEvent> {
        self.changes.subscribe()
    }

    pub(crate) fn caught_up(&self) -> bool {
        self.caught_up.load(std::sync::atomic::Ordering::SeqCst)
    }
}

impl Table for AlertBook {
    fn apply(&self, _key: Option<&[u8]>, payload: Option<&[u8]>) {
        let Some(payload) = payload else {
            return;
        };
        match serde_json::from_slice::<AlertEvent>(payload) {
            Ok(event) => self.record(event),
            Err(err) => {
                tracing::warn!(error = %err, "the alerts topic holds a record that is not an alert")
            }
        }
    }

    fn set_caught_up(&self) {
        self.caught_up
            .store(true, std::sync::atomic::Ordering::SeqCst);
    }
}
