use super::*;

#[test]
fn overrides_replace_only_what_they_name() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("rules.toml");
    std::fs::write(&path, "[tenants.acme]\nrate_threshold = 0.05\n").unwrap();
    let rules = RuleOverrides::load(AlertRules::default(), Routes::default(), &path).unwrap();
    assert_eq!(rules.for_tenant("acme").rate_threshold, 0.05);
    assert_eq!(rules.for_tenant("acme").spike_factor, 5.0);
    assert_eq!(rules.for_tenant("globex"), AlertRules::default());
}

#[test]
fn a_bad_override_is_refused_with_the_tenant_named() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("rules.toml");
    std::fs::write(&path, "[tenants.acme]\nslo_objective = 1.5\n").unwrap();
    let err = RuleOverrides::load(AlertRules::default(), Routes::default(), &path).unwrap_err();
    assert!(err.to_string().contains("acme"), "{err}");
    std::fs::write(&path, "[tenants.acme]\ncolour = 1\n").unwrap();
    assert!(RuleOverrides::load(AlertRules::default(), Routes::default(), &path).is_err());
}

fn destination(name: &str, tenants: &[&str]) -> DestinationSettings {
    DestinationSettings {
        url: Some("https://hooks.example.com".into()),
        secret_file: Some("/secret".into()),
        tenants: tenants.iter().map(|t| t.to_string()).collect(),
        ..DestinationSettings::new(name, crate::config::DestinationKind::Webhook)
    }
}

#[test]
fn a_tenant_routes_only_to_destinations_that_take_it() {
    let destinations = [
        destination("shared", &[]),
        destination("acme-only", &["acme"]),
    ];
    let routes = Routes::new(&destinations, &["shared".into(), "acme-only".into()]);
    let book = RuleBook::default();
    let route = |rules: &RuleOverrides, tenant| {
        rules
            .resolve(&book, tenant, Rule::FailureRate, None, None)
            .destinations
    };
    let rules = RuleOverrides::new(AlertRules::default(), routes.clone());
    assert_eq!(route(&rules, "acme"), ["shared", "acme-only"]);
    assert_eq!(route(&rules, "globex"), ["shared"]);
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("rules.toml");
    std::fs::write(&path, "[tenants.acme]\ndestinations = [\"acme-only\"]\n").unwrap();
    let rules = RuleOverrides::load(AlertRules::default(), routes.clone(), &path).unwrap();
    assert_eq!(route(&rules, "acme"), ["acme-only"]);
    assert_eq!(route(&rules, "globex"), ["shared"]);
    std::fs::write(&path, "[tenants.globex]\ndestinations = [\"acme-only\"]\n").unwrap();
    let err = RuleOverrides::load(AlertRules::default(), routes, &path).unwrap_err();
    assert!(err.to_string().contains("globex"), "{err}");
}

#[test]
fn a_tenant_table_sets_severity_per_rule_kind() {
    use crate::alerts::{Rule, Severity};
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("rules.toml");
    std::fs::write(
        &path,
        "[tenants.acme]\nseverity = \"info\"\n\n[tenants.acme.severities]\n\
         failure_rate = \"critical\"\nslo_burn_slow = \"error\"\n",
    )
    .unwrap();
    let rules = RuleOverrides::load(AlertRules::default(), Routes::default(), &path).unwrap();
    let acme = rules
        .resolve(&RuleBook::default(), "acme", Rule::SloBurn, None, None)
        .severities;
    assert_eq!(acme.of(Rule::FailureRate, false), Some(Severity::Critical));
    assert_eq!(acme.of(Rule::SloBurn, false), Some(Severity::Error));
    assert_eq!(
        acme.of(Rule::SloBurn, true),
        Some(Severity::Info),
        "from severity"
    );
    assert_eq!(acme.of(Rule::Spike, false), Some(Severity::Info));
    let globex = rules.resolve(
        &RuleBook::default(),
        "globex",
        Rule::FailureRate,
        None,
        None,
    );
    assert_eq!(globex.severities.of(Rule::FailureRate, false), None);
    std::fs::write(&path, "[tenants.acme.severities]\nburn = \"info\"\n").unwrap();
    assert!(RuleOverrides::load(AlertRules::default(), Routes::default(), &path).is_err());
}

#[test]
fn the_most_specific_scope_wins_field_by_field_within_a_kind() {
    use crate::alerts::{RuleScope, ScopedRule, Severity};
    use crate::event::IntegrationType::{CustomNode, InboundWebhook};
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("rules.toml");
    std::fs::write(
        &path,
        "[tenants.acme]\nrate_threshold = 0.3\nspike_factor = 4.0\n",
    )
    .unwrap();
    let routes = Routes::new(&[destination("ops", &[])], &[]);
    let rules = RuleOverrides::load(AlertRules::default(), routes.clone(), &path).unwrap();
    let book = RuleBook::new(routes);
    let put = |scope: RuleScope, kind: Rule, spec: RuleSpec| {
        book.record(ScopedRule {
            scope,
            kind,
            spec,
            updated_at_ms: 0,
            updated_by: String::new(),
        })
    };
    let tenant = RuleScope::tenant("acme");
    let nodes = RuleScope {
        integration_type: Some(CustomNode),
        ..tenant.clone()
    };
    let crm = RuleScope {
        integration_id: Some("crm".into()),
        ..nodes.clone()
    };
    put(
        tenant.clone(),
        Rule::FailureRate,
        RuleSpec {
            rate_threshold: Some(0.4),
            ..RuleSpec::default()
        },
    );
    put(
        tenant,
        Rule::SloBurn,
        RuleSpec {
            slo_objective: Some(0.95),
            ..RuleSpec::default()
        },
    );
    put(
        nodes,
        Rule::FailureRate,
        RuleSpec {
            rate_threshold: Some(0.5),
            severity: Some(Severity::Info),
            ..RuleSpec::default()
        },
    );
    put(
        crm.clone(),
        Rule::FailureRate,
        RuleSpec {
            rate_threshold: Some(0.6),
            destinations: Some(vec!["ops".into()]),
            ..RuleSpec::default()
        },
    );
    put(
        crm,
        Rule::Silence,
        RuleSpec {
            enabled: Some(false),
            ..RuleSpec::default()
        },
    );

    let resolve =
        |kind, integration_type, id| rules.resolve(&book, "acme", kind, Some(integration_type), id);
    let crm = resolve(Rule::FailureRate, CustomNode, Some("crm"));
    assert_eq!(crm.rules.rate_threshold, 0.6);
    assert_eq!(crm.rules.rate_min_events, 20, "from the defaults");
    assert_eq!(
        crm.severities.of(Rule::FailureRate, false),
        Some(Severity::Info),
        "from the type rule"
    );
    assert_eq!(crm.destinations, ["ops"]);
    assert!(
        !resolve(Rule::Silence, CustomNode, Some("crm"))
            .rules
            .enabled
    );
    assert!(
        crm.rules.enabled,
        "muting silence leaves the other kinds on"
    );
    let slo = resolve(Rule::SloBurn, CustomNode, Some("crm"));
    assert_eq!(slo.rules.slo_objective, 0.95, "from the tenant's SLO rule");
    assert_eq!(
        slo.rules.rate_threshold, 0.3,
        "a failure-rate rule is not an SLO rule"
    );
    assert!(slo.destinations.is_empty());
    let spike = resolve(Rule::Spike, CustomNode, None);
    assert_eq!(spike.rules.spike_factor, 4.0, "from the rules file");
    let other_node = resolve(Rule::FailureRate, CustomNode, Some("erp"));
    assert_eq!(other_node.rules.rate_threshold, 0.5);
    assert!(
        resolve(Rule::Silence, CustomNode, Some("erp"))
            .rules
            .enabled
    );
    let webhook = resolve(Rule::FailureRate, InboundWebhook, Some("x"));
    assert_eq!(webhook.rules.rate_threshold, 0.4);
    assert_eq!(webhook.severities, SeverityByRule::default());
    let globex = rules.resolve(
        &book,
        "globex",
        Rule::FailureRate,
        Some(CustomNode),
        Some("crm"),
    );
    assert_eq!(globex.rules, AlertRules::default());
}

#[test]
fn silence_enabled_mutes_silence_alone_and_a_runtime_rule_can_unmute_it() {
    use crate::alerts::{RuleScope, ScopedRule};
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("rules.toml");
    std::fs::write(&path, "[tenants.acme]\nsilence_enabled = false\n").unwrap();
    let rules = RuleOverrides::load(AlertRules::default(), Routes::default(), &path).unwrap();
    let book = RuleBook::default();
    let on = |kind| rules.resolve(&book, "acme", kind, None, None).rules.enabled;
    assert!(!on(Rule::Silence));
    assert!(on(Rule::FailureRate) && on(Rule::Spike) && on(Rule::SloBurn));
    book.record(ScopedRule {
        scope: RuleScope::tenant("acme"),
        kind: Rule::Silence,
        spec: RuleSpec {
            enabled: Some(true),
            ..RuleSpec::default()
        },
        updated_at_ms: 0,
        updated_by: String::new(),
    });
    assert!(on(Rule::Silence));
}

#[test]
fn a_stored_rule_naming_a_removed_destination_inherits_where_to_deliver() {
    use crate::alerts::{RuleScope, ScopedRule};
    let routes = Routes::new(&[destination("ops", &[])], &["ops".into()]);
    let rules = RuleOverrides::new(AlertRules::default(), routes.clone());
    let book = RuleBook::new(routes);
    book.record(ScopedRule {
        scope: RuleScope::tenant("acme"),
        kind: Rule::FailureRate,
        spec: RuleSpec {
            rate_threshold: Some(0.5),
            destinations: Some(vec!["gone".into()]),
            ..RuleSpec::default()
        },
        updated_at_ms: 0,
        updated_by: String::new(),
    });
    let resolved = rules.resolve(&book, "acme", Rule::FailureRate, None, None);
    assert_eq!(resolved.destinations, ["ops"]);
    assert_eq!(
        resolved.rules.rate_threshold, 0.5,
        "the rest of the rule holds"
    );
}
