//! `query rules` and `query rule`: a tenant's alert rules and the rules in force for a scope,
//! and setting or deleting one scope's rule of one kind.

use integration_health::api::convert::type_to_wire;
use integration_health::proto;
use integration_health::proto::integration_health_client::IntegrationHealthClient;
use tonic::transport::Channel;

use super::render::{proto_json, table, time_text, type_label};
use super::{escape_controls, request, CliError, TypeArg};

#[derive(Debug, Clone, Copy, clap::ValueEnum)]
pub enum SeverityArg {
    Critical,
    Error,
    Warning,
    Info,
}

#[derive(Debug, Clone, Copy, clap::ValueEnum)]
pub enum KindArg {
    FailureRate,
    Spike,
    SloBurn,
    Silence,
}

impl KindArg {
    fn wire(self) -> i32 {
        let kind = match self {
            KindArg::FailureRate => proto::AlertRule::FailureRate,
            KindArg::Spike => proto::AlertRule::Spike,
            KindArg::SloBurn => proto::AlertRule::SloBurn,
            KindArg::Silence => proto::AlertRule::Silence,
        };
        kind as i32
    }
}

#[derive(Debug, clap::Args)]
pub struct RulesArgs {
    #[arg(long)]
    tenant: String,
    /// Also show the rules in force, per kind, with each field's origin.
    #[arg(long)]
    effective: bool,
    /// With --effective: for this integration type.
    #[arg(long = "type", value_enum)]
    integration_type: Option<TypeArg>,
    /// With --effective: for this integration (needs --type).
    #[arg(long)]
    integration: Option<String>,
}

/// One scope's rule of one kind: flags left out inherit from the less specific scope.
#[derive(Debug, clap::Args)]
pub struct RuleArgs {
    #[arg(long)]
    tenant: String,
    #[arg(long, value_enum)]
    kind: KindArg,
    /// The integration type the rule covers.
    #[arg(long = "type", value_enum)]
    integration_type: Option<TypeArg>,
    /// One integration (needs --type; not for a spike rule).
    #[arg(long)]
    integration: Option<String>,
    /// Remove the scope's rule of this kind instead, so it inherits again.
    #[arg(long)]
    delete: bool,
    #[arg(long)]
    enabled: Option<bool>,
    #[arg(long)]
    rate_window_minutes: Option<u32>,
    #[arg(long)]
    rate_threshold: Option<f64>,
    #[arg(long)]
    rate_min_events: Option<u64>,
    #[arg(long)]
    spike_factor: Option<f64>,
    #[arg(long)]
    spike_min_failures: Option<u64>,
    #[arg(long)]
    slo_objective: Option<f64>,
    /// The fast burn-rate pair's long window (its short one is a twelfth).
    #[arg(long)]
    slo_fast_window_minutes: Option<u32>,
    #[arg(long)]
    slo_slow_window_minutes: Option<u32>,
    #[arg(long)]
    slo_min_events: Option<u64>,
    /// Minutes without events before a silence alert; 0 mutes silence for the scope.
    #[arg(long)]
    silence_after_minutes: Option<u32>,
    #[arg(long)]
    silence_min_events: Option<u64>,
    /// Destination names, comma-separated; an empty value sends nowhere.
    #[arg(long, value_delimiter = ',', num_args = 0..)]
    destinations: Option<Vec<String>>,
    #[arg(long, value_enum)]
    severity: Option<SeverityArg>,
    /// An SLO burn's fast pair's severity.
    #[arg(long, value_enum)]
    severity_fast: Option<SeverityArg>,
    #[arg(long, value_enum)]
    severity_slow: Option<SeverityArg>,
}

fn severity_wire(severity: Option<SeverityArg>) -> i32 {
    let severity = severity.map_or(proto::AlertSeverity::Unspecified, |s| match s {
        SeverityArg::Critical => proto::AlertSeverity::Critical,
        SeverityArg::Error => proto::AlertSeverity::Error,
        SeverityArg::Warning => proto::AlertSeverity::Warning,
        SeverityArg::Info => proto::AlertSeverity::Info,
    });
    severity as i32
}

impl RuleArgs {
    fn scope(&self) -> proto::AlertRuleScope {
        proto::AlertRuleScope {
            tenant_id: self.tenant.clone(),
            integration_type: self.integration_type.map_or(0, |t| type_to_wire(t.into())),
            integration_id: self.integration.clone().unwrap_or_default(),
        }
    }

    fn spec(&self) -> proto::AlertRuleSpec {
        proto::AlertRuleSpec {
            scope: Some(self.scope()),
            kind: self.kind.wire(),
            enabled: self.enabled,
            rate_window_minutes: self.rate_window_minutes,
            rate_threshold: self.rate_threshold,
            rate_min_events: self.rate_min_events,
            spike_factor: self.spike_factor,
            spike_min_failures: self.spike_min_failures,
            slo_objective: self.slo_objective,
            slo_fast_window_minutes: self.slo_fast_window_minutes,
            slo_slow_window_minutes: self.slo_slow_window_minutes,
            slo_min_events: self.slo_min_events,
            silence_after_minutes: self.silence_after_minutes,
            silence_min_events: self.silence_min_events,
            destinations: self
                .destinations
                .clone()
                .map(|names| proto::AlertDestinations {
                    names: names.into_iter().filter(|n| !n.is_empty()).collect(),
                }),
            severity: severity_wire(self.severity),
            severity_fast: severity_wire(self.severity_fast),
            severity_slow: severity_wire(self.severity_slow),
            updated_at: None,
            updated_by: String::new(),
        }
    }
}

pub(super) async fn list(
    client: &mut IntegrationHealthClient<Channel>,
    args: RulesArgs,
    token: &Option<String>,
    json: bool,
) -> Result<String, CliError> {
    let message = proto::ListAlertRulesRequest {
        tenant_id: args.tenant,
        effective: args.effective,
        integration_type: args.integration_type.map_or(0, |t| type_to_wire(t.into())),
        integration_id: args.integration.unwrap_or_default(),
    };
    let response = client
        .list_alert_rules(request(message, token)?)
        .await?
        .into_inner();
    if json {
        return Ok(proto_json(&response));
    }
    let mut rules = table(&["scope", "kind", "settings", "set by", "at"]);
    for rule in &response.rules {
        rules.add_row(vec![
            scope_text(rule.scope.as_ref()),
            kind_text(rule.kind),
            settings_text(rule),
            escape_controls(&rule.updated_by),
            time_text(&rule.updated_at),
        ]);
    }
    let mut text = format!("{} alert rules\n{rules}", response.rules.len());
    if !response.effective.is_empty() {
        let mut effective = table(&["kind", "field", "value", "from"]);
        for rule in &response.effective {
            for field in &rule.fields {
                effective.add_row(vec![
                    kind_text(rule.kind),
                    field.name.clone(),
                    escape_controls(&field.value_json),
                    field.origin.clone(),
                ]);
            }
        }
        text += &format!("\nin force\n{effective}");
    }
    Ok(text)
}

fn kind_text(kind: i32) -> String {
    proto::AlertRule::try_from(kind)
        .map_or_else(|_| kind.to_string(), |k| k.as_str_name().to_lowercase())
}

pub(super) async fn set(
    client: &mut IntegrationHealthClient<Channel>,
    args: RuleArgs,
    token: &Option<String>,
    json: bool,
) -> Result<String, CliError> {
    if args.delete {
        let message = proto::DeleteAlertRuleRequest {
            scope: Some(args.scope()),
            kind: args.kind.wire(),
        };
        client.delete_alert_rule(request(message, token)?).await?;
        return Ok(format!(
            "deleted the {} rule of {}",
            kind_text(args.kind.wire()),
            scope_text(Some(&args.scope()))
        ));
    }
    let message = proto::PutAlertRuleRequest {
        rule: Some(args.spec()),
    };
    let response = client
        .put_alert_rule(request(message, token)?)
        .await?
        .into_inner();
    if json {
        return Ok(proto_json(&response));
    }
    let rule = response.rule.unwrap_or_default();
    Ok(format!(
        "{} {}: {}",
        scope_text(rule.scope.as_ref()),
        kind_text(rule.kind),
        settings_text(&rule)
    ))
}

fn scope_text(scope: Option<&proto::AlertRuleScope>) -> String {
    let Some(scope) = scope else {
        return String::new();
    };
    let mut text = escape_controls(&scope.tenant_id);
    if scope.integration_type != 0 {
        text += &format!(" / {}", type_label(scope.integration_type));
    }
    if !scope.integration_id.is_empty() {
        text += &format!(" / {}", escape_controls(&scope.integration_id));
    }
    text
}

fn settings_text(rule: &proto::AlertRuleSpec) -> String {
    let mut set = Vec::new();
    let mut add = |name: &str, value: Option<String>| {
        if let Some(value) = value {
            set.push(format!("{name}={value}"));
        }
    };
    add("enabled", rule.enabled.map(|v| v.to_string()));
    add(
        "rate_window_minutes",
        rule.rate_window_minutes.map(|v| v.to_string()),
    );
    add("rate_threshold", rule.rate_threshold.map(|v| v.to_string()));
    add(
        "rate_min_events",
        rule.rate_min_events.map(|v| v.to_string()),
    );
    add("spike_factor", rule.spike_factor.map(|v| v.to_string()));
    add(
        "spike_min_failures",
        rule.spike_min_failures.map(|v| v.to_string()),
    );
    add("slo_objective", rule.slo_objective.map(|v| v.to_string()));
    add(
        "slo_fast_window_minutes",
        rule.slo_fast_window_minutes.map(|v| v.to_string()),
    );
    add(
        "slo_slow_window_minutes",
        rule.slo_slow_window_minutes.map(|v| v.to_string()),
    );
    add("slo_min_events", rule.slo_min_events.map(|v| v.to_string()));
    add(
        "silence_after_minutes",
        rule.silence_after_minutes.map(|v| v.to_string()),
    );
    add(
        "silence_min_events",
        rule.silence_min_events.map(|v| v.to_string()),
    );
    add(
        "destinations",
        rule.destinations
            .as_ref()
            .map(|d| format!("[{}]", escape_controls(&d.names.join(",")))),
    );
    let severity = |value: i32| {
        proto::AlertSeverity::try_from(value)
            .ok()
            .filter(|s| *s != proto::AlertSeverity::Unspecified)
            .map(|s| s.as_str_name().to_lowercase())
    };
    add("severity", severity(rule.severity));
    add("severity_fast", severity(rule.severity_fast));
    add("severity_slow", severity(rule.severity_slow));
    match set.is_empty() {
        true => "(inherits everything)".into(),
        false => set.join(" "),
    }
}
