use super::*;
use crate::alerts::{AlertRules, Routes, ScopedRule};
use crate::config::{DestinationKind, DestinationSettings};
use crate::event::IntegrationType::{CustomNode, InboundWebhook};

fn destination(name: &str) -> DestinationSettings {
    DestinationSettings {
        url: Some("https://hooks.example.com".into()),
        secret_file: Some("/secret".into()),
        ..DestinationSettings::new(name, DestinationKind::Webhook)
    }
}

/// acme: a rules file table, a tenant rule and a rule for its crm node, of failure rate and
/// SLO burn.
fn layered() -> (RuleOverrides, RuleBook) {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("rules.toml");
    std::fs::write(
        &path,
        "[tenants.acme]\nrate_threshold = 0.3\nslo_objective = 0.995\nseverity = \"info\"\n",
    )
    .unwrap();
    let routes = Routes::new(
        &[destination("ops"), destination("crm-oncall")],
        &["ops".into()],
    );
    let overrides = RuleOverrides::load(AlertRules::default(), routes.clone(), &path).unwrap();
    let book = RuleBook::new(routes);
    let put = |scope: RuleScope, kind, spec| {
        book.record(ScopedRule {
            scope,
            kind,
            spec,
            updated_at_ms: 0,
            updated_by: String::new(),
        })
    };
    let crm = RuleScope {
        integration_type: Some(CustomNode),
        integration_id: Some("crm".into()),
        ..RuleScope::tenant("acme")
    };
    put(
        RuleScope::tenant("acme"),
        Rule::FailureRate,
        RuleSpec {
            rate_min_events: Some(5),
            severity: Some(Severity::Critical),
            ..RuleSpec::default()
        },
    );
    put(
        crm.clone(),
        Rule::FailureRate,
        RuleSpec {
            rate_threshold: Some(0.6),
            destinations: Some(vec!["crm-oncall".into()]),
            ..RuleSpec::default()
        },
    );
    put(
        crm,
        Rule::SloBurn,
        RuleSpec {
            slo_fast_window_minutes: Some(30),
            severity_slow: Some(Severity::Error),
            ..RuleSpec::default()
        },
    );
    (overrides, book)
}

fn field<'a>(fields: &'a [EffectiveField], name: &str) -> (&'a Value, Origin) {
    let f = fields.iter().find(|f| f.name == name).unwrap();
    (&f.value, f.origin)
}

#[test]
fn each_field_names_the_layer_that_set_it() {
    let (overrides, book) = layered();
    let rate = effective(
        &overrides,
        &book,
        "acme",
        Rule::FailureRate,
        Some(CustomNode),
        Some("crm"),
    );
    assert_eq!(
        field(&rate, "rate_threshold"),
        (&Value::from(0.6), Origin::Integration)
    );
    assert_eq!(
        field(&rate, "rate_min_events"),
        (&Value::from(5), Origin::Tenant)
    );
    assert_eq!(
        field(&rate, "severity"),
        (&Value::from("critical"), Origin::Tenant)
    );
    assert_eq!(
        field(&rate, "rate_window_minutes"),
        (&Value::from(15), Origin::Settings)
    );
    assert_eq!(
        field(&rate, "destinations"),
        (&Value::from(vec!["crm-oncall"]), Origin::Integration)
    );
    let names: Vec<&str> = rate.iter().map(|f| f.name).collect();
    assert_eq!(
        names,
        [
            "enabled",
            "destinations",
            "rate_window_minutes",
            "rate_threshold",
            "rate_min_events",
            "severity"
        ]
    );
    let slo = effective(
        &overrides,
        &book,
        "acme",
        Rule::SloBurn,
        Some(CustomNode),
        Some("crm"),
    );
    assert_eq!(
        field(&slo, "slo_objective"),
        (&Value::from(0.995), Origin::RulesFile)
    );
    assert_eq!(
        field(&slo, "slo_fast_window_minutes"),
        (&Value::from(30), Origin::Integration)
    );
    assert_eq!(
        field(&slo, "severity_fast"),
        (&Value::from("info"), Origin::RulesFile)
    );
    assert_eq!(
        field(&slo, "severity_slow"),
        (&Value::from("error"), Origin::Integration)
    );
    assert_eq!(
        field(&slo, "destinations"),
        (&Value::from(vec!["ops"]), Origin::Settings)
    );
    let spike = effective(
        &overrides,
        &book,
        "globex",
        Rule::Spike,
        Some(InboundWebhook),
        None,
    );
    assert!(spike.iter().all(|f| f.origin == Origin::Settings));
}

/// The explanation and the evaluator's resolution agree on every field, for every kind and
/// subject of the layered rules.
#[test]
fn the_effective_rule_is_what_the_evaluator_uses() {
    let (overrides, book) = layered();
    let subjects = [
        (Some(CustomNode), Some("crm")),
        (Some(CustomNode), Some("erp")),
        (Some(InboundWebhook), None),
        (None, None),
    ];
    for kind in Rule::ALL {
        for (integration_type, id) in subjects {
            let fields = effective(&overrides, &book, "acme", kind, integration_type, id);
            let resolved = overrides.resolve(&book, "acme", kind, integration_type, id);
            let rules = serde_json::to_value(resolved.rules).unwrap();
            for f in &fields {
                let expected = match f.name {
                    "destinations" => Value::from(resolved.destinations.clone()),
                    "severity" => severity(
                        resolved
                            .severities
                            .of(kind, false)
                            .unwrap_or(kind.default_severity(false)),
                    ),
                    "severity_fast" => severity(
                        resolved
                            .severities
                            .of(kind, true)
                            .unwrap_or(kind.default_severity(true)),
                    ),
                    "severity_slow" => severity(
                        resolved
                            .severities
                            .of(kind, false)
                            .unwrap_or(kind.default_severity(false)),
                    ),
                    name => rules[name].clone(),
                };
                assert_eq!(
                    f.value, expected,
                    "{kind:?} {integration_type:?} {id:?} {}",
                    f.name
                );
            }
        }
    }
}
