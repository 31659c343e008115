//! Alert rules changed at runtime: a rule per scope (a tenant, a tenant's integration type,
//! one integration), kept on the compacted `<topic>.rules` topic keyed by scope and read whole
//! by every instance. A field a rule leaves unset inherits from the less specific scope.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use parking_lot::RwLock;
use serde::{Deserialize, Serialize};

use super::rules::{AlertRules, RuleOverrides};
use super::{Rule, Severity};
use crate::changelog::{ChangelogWriter, Table};
use crate::event::IntegrationType;

/// What a rule applies to. `integration_id` needs `integration_type`.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub(crate) struct RuleScope {
    pub(crate) tenant_id: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(crate) integration_type: Option<IntegrationType>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(crate) integration_id: Option<String>,
}

impl RuleScope {
    pub(crate) fn tenant(tenant_id: &str) -> Self {
        RuleScope {
            tenant_id: tenant_id.to_owned(),
            integration_type: None,
            integration_id: None,
        }
    }

    /// The record key on the rules topic.
    pub(crate) fn key(&self) -> String {
        format!(
            "{}|{}|{}",
            self.tenant_id,
            self.integration_type.map_or("", IntegrationType::as_str),
            self.integration_id.as_deref().unwrap_or("")
        )
    }

    /// This scope and the less specific ones above it, least specific first.
    fn chain(
        tenant_id: &str,
        integration_type: Option<IntegrationType>,
        integration_id: Option<&str>,
    ) -> Vec<RuleScope> {
        let mut chain = vec![RuleScope::tenant(tenant_id)];
        if let Some(kind) = integration_type {
            chain.push(RuleScope {
                integration_type: Some(kind),
                ..RuleScope::tenant(tenant_id)
            });
            if let Some(id) = integration_id {
                chain.push(RuleScope {
                    integration_type: Some(kind),
                    integration_id: Some(id.to_owned()),
                    ..RuleScope::tenant(tenant_id)
                });
            }
        }
        chain
    }
}

/// A rule's settings; every field is optional and inherits when unset. The rules file's
/// tenant tables have the same fields.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RuleSpec {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(crate) enabled: Option<bool>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(crate) rate_window_minutes: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(crate) rate_threshold: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(crate) rate_min_events: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(crate) spike_factor: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(crate) spike_min_failures: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(crate) slo_objective: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(crate) silence_minutes: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(crate) silence_min_events: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(crate) destinations: Option<Vec<String>>,
    /// The severity of every rule kind in the scope.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(crate) severity: Option<Severity>,
    /// Severities per rule kind, over `severity`: a rules file's `[tenants.x.severities]`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(crate) severities: Option<SeverityByRule>,
}

/// A severity per rule kind, each unset one inheriting; an SLO burn's fast pair (which
/// pages) and slow pair are set apart.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct SeverityByRule {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(crate) failure_rate: Option<Severity>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(crate) spike: Option<Severity>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(crate) slo_burn_fast: Option<Severity>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(crate) slo_burn_slow: Option<Severity>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(crate) silence: Option<Severity>,
}

impl SeverityByRule {
    /// `severity` for every kind.
    pub(crate) fn all(severity: Severity) -> Self {
        let set = Some(severity);
        SeverityByRule {
            failure_rate: set,
            spike: set,
            slo_burn_fast: set,
            slo_burn_slow: set,
            silence: set,
        }
    }

    /// What `self` sets, and `under`'s for the rest.
    pub(crate) fn over(self, under: SeverityByRule) -> SeverityByRule {
        SeverityByRule {
            failure_rate: self.failure_rate.or(under.failure_rate),
            spike: self.spike.or(under.spike),
            slo_burn_fast: self.slo_burn_fast.or(under.slo_burn_fast),
            slo_burn_slow: self.slo_burn_slow.or(under.slo_burn_slow),
            silence: self.silence.or(under.silence),
        }
    }

    /// The severity set for `rule` (an SLO burn's by its pair), if any.
    pub(crate) fn of(&self, rule: Rule, fast_burn: bool) -> Option<Severity> {
        match rule {
            Rule::FailureRate => self.failure_rate,
            Rule::Spike => self.spike,
            Rule::SloBurn if fast_burn => self.slo_burn_fast,
            Rule::SloBurn => self.slo_burn_slow,
            Rule::Silence => self.silence,
        }
    }
}

impl RuleSpec {
    /// `rules` with what this spec sets laid over it.
    pub(crate) fn over(&self, rules: AlertRules) -> AlertRules {
        AlertRules {
            enabled: self.enabled.unwrap_or(rules.enabled),
            rate_window_minutes: self
                .rate_window_minutes
                .unwrap_or(rules.rate_window_minutes),
            rate_threshold: self.rate_threshold.unwrap_or(rules.rate_threshold),
            rate_min_events: self.rate_min_events.unwrap_or(rules.rate_min_events),
            spike_factor: self.spike_factor.unwrap_or(rules.spike_factor),
            spike_min_failures: self.spike_min_failures.unwrap_or(rules.spike_min_failures),
            slo_objective: self.slo_objective.unwrap_or(rules.slo_objective),
            silence_minutes: self.silence_minutes.unwrap_or(rules.silence_minutes),
            silence_min_events: self.silence_min_events.unwrap_or(rules.silence_min_events),
        }
    }
}

/// A rule as stored: its scope, its settings, and who set it when.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub(crate) struct ScopedRule {
    pub(crate) scope: RuleScope,
    pub(crate) spec: RuleSpec,
    pub(crate) updated_at_ms: i64,
    /// The first 8 bytes of the setter's token digest, hex; empty on an open API.
    #[serde(default)]
    pub(crate) actor_token: String,
}

/// Every rule on the rules topic, by key.
#[derive(Debug, Default)]
pub(crate) struct RuleBook {
    rules: RwLock<BTreeMap<String, ScopedRule>>,
    caught_up: AtomicBool,
}

impl RuleBook {
    pub(crate) fn record(&self, rule: ScopedRule) {
        self.rules.write().insert(rule.scope.key(), rule);
    }

    pub(crate) fn remove(&self, scope: &RuleScope) -> Option<ScopedRule> {
        self.rules.write().remove(&scope.key())
    }

    pub(crate) fn get(&self, scope: &RuleScope) -> Option<ScopedRule> {
        self.rules.read().get(&scope.key()).cloned()
    }

    /// A tenant's rules, least specific first.
    pub(crate) fn of_tenant(&self, tenant_id: &str) -> Vec<ScopedRule> {
        let mut rules: Vec<ScopedRule> = self
            .rules
            .read()
            .values()
            .filter(|r| r.scope.tenant_id == tenant_id)
            .cloned()
            .collect();
        rules.sort_by(|a, b| {
            let depth = |s: &RuleScope| {
                usize::from(s.integration_type.is_some()) + usize::from(s.integration_id.is_some())
            };
            depth(&a.scope)
                .cmp(&depth(&b.scope))
                .then_with(|| a.scope.cmp(&b.scope))
        });
        rules
    }

    /// The specs that apply to a subject, least specific first.
    pub(crate) fn chain(
        &self,
        tenant_id: &str,
        integration_type: Option<IntegrationType>,
        integration_id: Option<&str>,
    ) -> Vec<RuleSpec> {
        let rules = self.rules.read();
        // The evaluator asks for every integration on every round; most books are empty.
        if rules.is_empty() {
            return Vec::new();
        }
        RuleScope::chain(tenant_id, integration_type, integration_id)
            .iter()
            .filter_map(|scope| rules.get(&scope.key()).map(|r| r.spec.clone()))
            .collect()
    }

    pub(crate) fn caught_up(&self) -> bool {
        self.caught_up.load(Ordering::SeqCst)
    }
}

impl Table for RuleBook {
    fn apply(&self, key: Option<&[u8]>, payload: Option<&[u8]>) {
        match payload {
            Some(payload) => match serde_json::from_slice::<ScopedRule>(payload) {
                Ok(rule) => self.record(rule),
                Err(err) => {
                    tracing::warn!(error = %err, "the rules topic holds a record that is not a rule")
                }
            },
            None => {
                if let Some(key) = key.and_then(|k| std::str::from_utf8(k).ok()) {
                    self.rules.write().remove(key);
                }
            }
        }
    }

    fn set_caught_up(&self) {
        self.caught_up.store(true, Ordering::SeqCst);
    }
}

/// What the rule calls need: the writer of the rules topic, the book it fills, and the rules
/// from the settings and file that every scope inherits from.
pub struct RuleKeeping {
    pub(crate) writer: Arc<ChangelogWriter>,
    pub(crate) book: Arc<RuleBook>,
    pub(crate) overrides: Arc<RuleOverrides>,
}

impl RuleKeeping {
    /// Why `rule` cannot be stored, if it cannot: a bad scope, a setting out of range, or a
    /// destination that does not take the tenant's alerts.
    pub(crate) fn check(&self, rule: &ScopedRule) -> Result<(), String> {
        let scope = &rule.scope;
        if scope.integration_id.is_some() && scope.integration_type.is_none() {
            return Err("a rule for one integration needs its integration_type too".into());
        }
        if scope
            .integration_id
            .as_ref()
            .is_some_and(|id| id.is_empty() || id.len() > 256)
        {
            return Err("integration_id must be 1 to 256 bytes".into());
        }
        // What the scope would inherit without this rule.
        let tenant = &scope.tenant_id;
        let inherited = match (scope.integration_type, &scope.integration_id) {
            (None, _) => self.overrides.for_tenant(tenant),
            (Some(_), None) => self.overrides.resolve(&self.book, tenant, None, None).rules,
            (Some(kind), Some(_)) => {
                self.overrides
                    .resolve(&self.book, tenant, Some(kind), None)
                    .rules
            }
        };
        self.overrides.check(tenant, &rule.spec, inherited)
    }
}
