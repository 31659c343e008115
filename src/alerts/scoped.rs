//! Alert rules changed at runtime: a rule per (scope, kind), where the scope is a tenant, a
//! tenant's integration type or one integration, and the kind is one of the alert rules. Rules
//! are kept on the compacted `<topic>.rules` topic under that key and read whole by every
//! instance. A field a rule leaves unset inherits from the less specific scope's rule of the
//! same kind, then from the rules file's tenant table, then from the settings.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use parking_lot::RwLock;
use serde::{Deserialize, Serialize};

use super::rules::{AlertRules, Routes, RuleOverrides, RulesError};
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

    /// The record key on the rules topic of this scope's rule of `kind`.
    pub(crate) fn key(&self, kind: Rule) -> String {
        format!(
            "{}|{}|{}|{}",
            self.tenant_id,
            self.integration_type.map_or("", IntegrationType::as_str),
            self.integration_id.as_deref().unwrap_or(""),
            kind.as_str()
        )
    }

    /// 0 for a tenant, 1 for an integration type, 2 for one integration.
    pub(crate) fn depth(&self) -> usize {
        usize::from(self.integration_type.is_some()) + usize::from(self.integration_id.is_some())
    }

    /// This scope and the less specific ones above it, least specific first.
    pub(crate) fn chain(
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
    pub(crate) slo_fast_window_minutes: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(crate) slo_slow_window_minutes: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(crate) slo_min_events: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(crate) silence_after_minutes: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(crate) silence_min_events: Option<u64>,
    /// A rules file's switch for silence alone, over `enabled`; a runtime silence rule uses
    /// `enabled`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(crate) silence_enabled: Option<bool>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(crate) destinations: Option<Vec<String>>,
    /// In a rules file, the severity of every rule kind; in a runtime rule, of its kind (an
    /// SLO burn's pairs take `severity_fast` and `severity_slow`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(crate) severity: Option<Severity>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(crate) severity_fast: Option<Severity>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(crate) severity_slow: Option<Severity>,
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

/// The fields every rule kind has.
pub(crate) const COMMON_FIELDS: [&str; 2] = ["enabled", "destinations"];

impl Rule {
    /// The settings a rule of this kind has, besides `COMMON_FIELDS`.
    pub(crate) fn fields(self) -> &'static [&'static str] {
        match self {
            Rule::FailureRate => &[
                "rate_window_minutes",
                "rate_threshold",
                "rate_min_events",
                "severity",
            ],
            Rule::Spike => &["spike_factor", "spike_min_failures", "severity"],
            Rule::SloBurn => &[
                "slo_objective",
                "slo_fast_window_minutes",
                "slo_slow_window_minutes",
                "slo_min_events",
                "severity_fast",
                "severity_slow",
            ],
            Rule::Silence => &["silence_after_minutes", "silence_min_events", "severity"],
        }
    }

    pub(crate) fn has_field(self, name: &str) -> bool {
        COMMON_FIELDS.contains(&name) || self.fields().contains(&name)
    }
}

impl RuleSpec {
    /// The fields this spec sets, by name, with their values.
    pub(crate) fn set_fields(&self) -> serde_json::Map<String, serde_json::Value> {
        match serde_json::to_value(self) {
            Ok(serde_json::Value::Object(fields)) => fields,
            _ => serde_json::Map::new(),
        }
    }

    /// The severities this spec sets, per kind: `severity` for all, then `severities`, then
    /// an SLO burn's `severity_fast` and `severity_slow`.
    pub(crate) fn severities_set(&self) -> SeverityByRule {
        let all = self
            .severity
            .map_or_else(SeverityByRule::default, SeverityByRule::all);
        let by_kind = self.severities.unwrap_or_default().over(all);
        SeverityByRule {
            slo_burn_fast: self.severity_fast.or(by_kind.slo_burn_fast),
            slo_burn_slow: self.severity_slow.or(by_kind.slo_burn_slow),
            ..by_kind
        }
    }

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
            slo_fast_window_minutes: self
                .slo_fast_window_minutes
                .unwrap_or(rules.slo_fast_window_minutes),
            slo_slow_window_minutes: self
                .slo_slow_window_minutes
                .unwrap_or(rules.slo_slow_window_minutes),
            slo_min_events: self.slo_min_events.unwrap_or(rules.slo_min_events),
            silence_after_minutes: self
                .silence_after_minutes
                .unwrap_or(rules.silence_after_minutes),
            silence_min_events: self.silence_min_events.unwrap_or(rules.silence_min_events),
        }
    }
}

/// A rule as stored: its scope and kind, its settings, and who set it when.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub(crate) struct ScopedRule {
    pub(crate) scope: RuleScope,
    pub(crate) kind: Rule,
    pub(crate) spec: RuleSpec,
    pub(crate) updated_at_ms: i64,
    /// The name of the grant that set it; empty on an open API.
    #[serde(default)]
    pub(crate) updated_by: String,
}

impl ScopedRule {
    pub(crate) fn key(&self) -> String {
        self.scope.key(self.kind)
    }
}

/// Every rule on the rules topic, by key.
#[derive(Debug, Default)]
pub(crate) struct RuleBook {
    rules: RwLock<BTreeMap<String, ScopedRule>>,
    caught_up: AtomicBool,
    /// The destinations configured now, which a stored rule may no longer match.
    routes: Routes,
}

impl RuleBook {
    pub(crate) fn new(routes: Routes) -> Self {
        RuleBook {
            routes,
            ..RuleBook::default()
        }
    }

    /// Keeps `rule`. A rule stored before its destinations were removed from the settings (or
    /// stopped taking the tenant) is kept without them, so it inherits where to deliver.
    pub(crate) fn record(&self, mut rule: ScopedRule) {
        if let Some(names) = &rule.spec.destinations {
            if let Err(why) = self.routes.check(&rule.scope.tenant_id, names) {
                tracing::warn!(
                    rule = %rule.key(),
                    "a stored alert rule names destinations not configured now ({why}); its \
                     alerts go where it would inherit"
                );
                rule.spec.destinations = None;
            }
        }
        self.rules.write().insert(rule.key(), rule);
    }

    pub(crate) fn remove(&self, scope: &RuleScope, kind: Rule) -> Option<ScopedRule> {
        self.rules.write().remove(&scope.key(kind))
    }

    pub(crate) fn get(&self, scope: &RuleScope, kind: Rule) -> Option<ScopedRule> {
        self.rules.read().get(&scope.key(kind)).cloned()
    }

    /// How many rules `tenant_id` has.
    pub(crate) fn count(&self, tenant_id: &str) -> usize {
        self.rules
            .read()
            .values()
            .filter(|r| r.scope.tenant_id == tenant_id)
            .count()
    }

    /// A tenant's rules, least specific scope first.
    pub(crate) fn of_tenant(&self, tenant_id: &str) -> Vec<ScopedRule> {
        let mut rules: Vec<ScopedRule> = self
            .rules
            .read()
            .values()
            .filter(|r| r.scope.tenant_id == tenant_id)
            .cloned()
            .collect();
        rules.sort_by(|a, b| {
            (a.scope.depth(), &a.scope, a.kind.as_str()).cmp(&(
                b.scope.depth(),
                &b.scope,
                b.kind.as_str(),
            ))
        });
        rules
    }

    /// The rules of `kind` that apply to a subject, least specific first.
    pub(crate) fn chain(
        &self,
        kind: Rule,
        tenant_id: &str,
        integration_type: Option<IntegrationType>,
        integration_id: Option<&str>,
    ) -> Vec<ScopedRule> {
        let rules = self.rules.read();
        // The evaluator asks for every integration on every round; most books are empty.
        if rules.is_empty() {
            return Vec::new();
        }
        RuleScope::chain(tenant_id, integration_type, integration_id)
            .iter()
            .filter_map(|scope| rules.get(&scope.key(kind)).cloned())
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

/// What the rule calls need: the writer of the rules topic, the book it fills, the rules from
/// the settings and file that every scope inherits from, and how many rules a tenant may have.
pub struct RuleKeeping {
    pub(crate) writer: Arc<ChangelogWriter>,
    pub(crate) book: Arc<RuleBook>,
    pub(crate) overrides: Arc<RuleOverrides>,
    pub(crate) max_per_tenant: usize,
}

impl RuleKeeping {
    /// Why `rule` cannot be stored, if it cannot: a bad scope, a field its kind does not have,
    /// a setting out of range, a destination that does not take the tenant's alerts, or one
    /// rule more than the tenant may have.
    pub(crate) fn check(&self, rule: &ScopedRule) -> Result<(), RulesError> {
        let field = |why: String| RulesError::Field(why);
        let scope = &rule.scope;
        if scope.integration_id.is_some() && scope.integration_type.is_none() {
            return Err(field(
                "scope.integration_type: a rule for one integration needs its type too".into(),
            ));
        }
        if rule.kind == Rule::Spike && scope.integration_id.is_some() {
            return Err(field(
                "scope.integration_id: spikes are counted per integration type and code, so a \
                 spike rule is set for a tenant or a type"
                    .into(),
            ));
        }
        if let Some(name) = rule
            .spec
            .set_fields()
            .keys()
            .find(|name| !rule.kind.has_field(name))
        {
            return Err(field(format!(
                "{name}: a {} rule has no such setting",
                rule.kind.as_str()
            )));
        }
        let tenant = &scope.tenant_id;
        let parent = match (scope.integration_type, &scope.integration_id) {
            (None, _) => None,
            (Some(_), None) => Some((None, None)),
            (Some(kind), Some(_)) => Some((Some(kind), None)),
        };
        // What the scope would inherit without this rule.
        let inherited = match parent {
            None => self.overrides.for_tenant(tenant),
            Some((kind, id)) => {
                self.overrides
                    .resolve(&self.book, tenant, rule.kind, kind, id)
                    .rules
            }
        };
        self.overrides
            .check(tenant, &rule.spec, inherited)
            .map_err(field)?;
        let count = self.book.count(tenant);
        if self.book.get(scope, rule.kind).is_none() && count >= self.max_per_tenant {
            return Err(RulesError::TooMany {
                limit: self.max_per_tenant,
            });
        }
        Ok(())
    }
}
