//! The effective rule of a subject, field by field, with where each value comes from: the
//! settings, the rules file's tenant table, or the runtime rule of the tenant, the integration
//! type or the integration. It lays the same layers in the same order as
//! `RuleOverrides::resolve`, and a test holds the two to the same answers.

use serde_json::Value;

use super::scoped::{RuleBook, RuleScope, RuleSpec, COMMON_FIELDS};
use super::{Rule, RuleOverrides, Severity};
use crate::event::IntegrationType;

/// Where a field's value was set.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Origin {
    Settings,
    RulesFile,
    Tenant,
    IntegrationType,
    Integration,
}

impl Origin {
    pub(crate) fn as_str(self) -> &'static str {
        match self {
            Origin::Settings => "settings",
            Origin::RulesFile => "rules_file",
            Origin::Tenant => "tenant",
            Origin::IntegrationType => "integration_type",
            Origin::Integration => "integration",
        }
    }

    fn of_scope(scope: &RuleScope) -> Origin {
        match scope.depth() {
            0 => Origin::Tenant,
            1 => Origin::IntegrationType,
            _ => Origin::Integration,
        }
    }
}

/// One field of an effective rule.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct EffectiveField {
    pub(crate) name: &'static str,
    pub(crate) value: Value,
    pub(crate) origin: Origin,
}

/// The rule of `kind` in force for a subject, every field of the kind with its origin.
pub(crate) fn effective(
    overrides: &RuleOverrides,
    book: &RuleBook,
    tenant: &str,
    kind: Rule,
    integration_type: Option<IntegrationType>,
    integration_id: Option<&str>,
) -> Vec<EffectiveField> {
    let mut fields: Vec<EffectiveField> = settings_layer(overrides, kind)
        .into_iter()
        .map(|(name, value)| EffectiveField {
            name,
            value,
            origin: Origin::Settings,
        })
        .collect();
    let file = overrides
        .file_table(tenant)
        .map(|spec| (Origin::RulesFile, spec.clone()));
    let runtime = book
        .chain(kind, tenant, integration_type, integration_id)
        .into_iter()
        .map(|rule| (Origin::of_scope(&rule.scope), rule.spec));
    for (origin, spec) in file.into_iter().chain(runtime) {
        for (name, value) in layer(&spec, kind) {
            if let Some(field) = fields.iter_mut().find(|f| f.name == name) {
                *field = EffectiveField {
                    name: field.name,
                    value,
                    origin,
                };
            }
        }
    }
    // Only the destinations that take the tenant's alerts are used, whoever named them.
    if let Some(field) = fields.iter_mut().find(|f| f.name == "destinations") {
        let named: Vec<String> = serde_json::from_value(field.value.clone()).unwrap_or_default();
        field.value = Value::from(overrides.routes().route(tenant, Some(&named)));
    }
    fields
}

/// Every field of `kind` as the settings give it: the default thresholds, each kind's own
/// severity, and the default destinations.
fn settings_layer(overrides: &RuleOverrides, kind: Rule) -> Vec<(&'static str, Value)> {
    let defaults = serde_json::to_value(overrides.defaults()).unwrap_or_default();
    COMMON_FIELDS
        .iter()
        .chain(kind.fields())
        .map(|name| {
            let value = match *name {
                "destinations" => Value::from(overrides.routes().defaults().to_vec()),
                "severity" => severity(kind.default_severity(false)),
                "severity_fast" => severity(kind.default_severity(true)),
                "severity_slow" => severity(kind.default_severity(false)),
                _ => defaults.get(name).cloned().unwrap_or_default(),
            };
            (*name, value)
        })
        .collect()
}

/// What one layer sets of `kind`'s fields; a rules file's `severity` and `severities` count
/// as the kind's own severity fields.
fn layer(spec: &RuleSpec, kind: Rule) -> Vec<(String, Value)> {
    let mut fields: Vec<(String, Value)> = spec
        .set_fields()
        .into_iter()
        .filter(|(name, _)| kind.has_field(name) && !name.starts_with("severit"))
        .collect();
    if let (Rule::Silence, Some(on)) = (kind, spec.silence_enabled) {
        fields.push(("enabled".to_owned(), Value::Bool(on)));
    }
    let set = spec.severities_set();
    let severities = match kind {
        Rule::SloBurn => vec![
            ("severity_fast", set.slo_burn_fast),
            ("severity_slow", set.slo_burn_slow),
        ],
        _ => vec![("severity", set.of(kind, false))],
    };
    for (name, chosen) in severities {
        if let Some(chosen) = chosen {
            fields.push((name.to_owned(), severity(chosen)));
        }
    }
    fields
}

fn severity(severity: Severity) -> Value {
    serde_json::to_value(severity).unwrap_or_default()
}

#[cfg(test)]
#[path = "effective_tests.rs"]
mod tests;
