//! The alert-rule calls: `PutAlertRule`, `ListAlertRules` and `DeleteAlertRule`. Rules live on
//! `<topic>.rules`, which every replica reads; a call is still forwarded to the replica that
//! owns the tenant, so one instance orders a tenant's changes (and counts them against
//! `max_alert_rules_per_tenant`), and a list after a put reads what the put wrote.

// Handlers must return `tonic::Status`.
#![allow(clippy::result_large_err)]

use tonic::{Request, Response, Status};
use tracing::instrument;

use super::auth::Access;
use super::callers::Caller;
use super::convert::{bounded, ms_to_timestamp, type_from_wire, type_to_wire};
use super::service::ApiClient;
use super::IntegrationHealthApi;
use crate::alerts::{
    effective, Rule, RuleKeeping, RuleScope, RuleSpec, RulesError, ScopedRule, Severity,
};
use crate::proto;

fn not_kept() -> Status {
    Status::failed_precondition("this service does not keep alert rules")
}

impl IntegrationHealthApi {
    fn rules(&self) -> Result<&RuleKeeping, Status> {
        self.rules.as_deref().ok_or_else(not_kept)
    }

    #[instrument(name = "put_alert_rule", skip_all, fields(rpc = "PutAlertRule", tenant = tracing::field::Empty))]
    pub(super) async fn put_alert_rule_call(
        &self,
        mut request: Request<proto::PutAlertRuleRequest>,
    ) -> Result<Response<proto::PutAlertRuleResponse>, Status> {
        self.timed("PutAlertRule", async {
            let wire = request.get_ref().rule.clone().unwrap_or_default();
            let scope = scope_from_wire(wire.scope.as_ref())?;
            let kind = kind_from_wire(wire.kind)?;
            let (caller, grant) = self.admin(&request, &scope.tenant_id)?;
            let keeping = self.rules()?;
            if let Some(owner) = self.forward_to(&caller, &scope.tenant_id) {
                // The owner trusts a replica's word for who set the rule.
                if let Some(rule) = request.get_mut().rule.as_mut() {
                    rule.updated_by = grant;
                }
                let put = |mut owner: ApiClient, r| async move { owner.put_alert_rule(r).await };
                return self.forward(&owner, request, put).await;
            }
            let rule = ScopedRule {
                scope,
                kind,
                spec: spec_from_wire(&wire)?,
                updated_at_ms: self.clock.now_ms(),
                updated_by: match caller {
                    Caller::Replica(_) => wire.updated_by.clone(),
                    _ => grant,
                },
            };
            keeping.check(&rule).map_err(refused)?;
            let payload = serde_json::to_vec(&rule).unwrap_or_default();
            keeping
                .writer
                .write(&rule.key(), &payload)
                .await
                .map_err(|err| Status::unavailable(format!("{err}; retry")))?;
            keeping.book.record(rule.clone());
            Ok(Response::new(proto::PutAlertRuleResponse {
                rule: Some(rule.into()),
            }))
        })
        .await
    }

    #[instrument(name = "list_alert_rules", skip_all, fields(rpc = "ListAlertRules", tenant = tracing::field::Empty))]
    pub(super) async fn list_alert_rules_call(
        &self,
        request: Request<proto::ListAlertRulesRequest>,
    ) -> Result<Response<proto::ListAlertRulesResponse>, Status> {
        self.timed("ListAlertRules", async {
            let req = request.get_ref();
            let caller = self.tenant(&request, &req.tenant_id)?;
            let keeping = self.rules()?;
            let scope = scope_from_wire(Some(&proto::AlertRuleScope {
                tenant_id: req.tenant_id.clone(),
                integration_type: req.integration_type,
                integration_id: req.integration_id.clone(),
            }))?;
            check_scope(&scope)?;
            if let Some(owner) = self.forward_to(&caller, &req.tenant_id) {
                let list = |mut owner: ApiClient, r| async move { owner.list_alert_rules(r).await };
                return self.forward(&owner, request, list).await;
            }
            let rules = keeping.book.of_tenant(&req.tenant_id);
            let effective = match req.effective {
                true => effective_rules(keeping, &scope),
                false => Vec::new(),
            };
            Ok(Response::new(proto::ListAlertRulesResponse {
                rules: rules.into_iter().map(Into::into).collect(),
                effective,
            }))
        })
        .await
    }

    #[instrument(name = "delete_alert_rule", skip_all, fields(rpc = "DeleteAlertRule", tenant = tracing::field::Empty))]
    pub(super) async fn delete_alert_rule_call(
        &self,
        request: Request<proto::DeleteAlertRuleRequest>,
    ) -> Result<Response<proto::DeleteAlertRuleResponse>, Status> {
        self.timed("DeleteAlertRule", async {
            let scope = scope_from_wire(request.get_ref().scope.as_ref())?;
            let kind = kind_from_wire(request.get_ref().kind)?;
            let (caller, _) = self.admin(&request, &scope.tenant_id)?;
            let keeping = self.rules()?;
            if let Some(owner) = self.forward_to(&caller, &scope.tenant_id) {
                let delete =
                    |mut owner: ApiClient, r| async move { owner.delete_alert_rule(r).await };
                return self.forward(&owner, request, delete).await;
            }
            if keeping.book.get(&scope, kind).is_none() {
                return Err(Status::not_found("no rule of this kind has this scope"));
            }
            keeping
                .writer
                .tombstone(&scope.key(kind))
                .await
                .map_err(|err| Status::unavailable(format!("{err}; retry")))?;
            keeping.book.remove(&scope, kind);
            Ok(Response::new(proto::DeleteAlertRuleResponse {}))
        })
        .await
    }

    /// Checks the tenant id and the caller's `alerts_admin` right to it; returns the caller
    /// and its grant's name. A replica forwarding the call checked the right already.
    fn admin<T>(&self, request: &Request<T>, tenant: &str) -> Result<(Caller, String), Status> {
        let caller = self.tenant(request, tenant)?;
        if matches!(caller, Caller::Replica(_)) {
            return Ok((caller, String::new()));
        }
        let auth = self.auth.current();
        auth.check(request.metadata(), Access::AlertsAdmin(tenant))?;
        let grant = auth.grant_name(request.metadata()).unwrap_or_default();
        Ok((caller, grant))
    }
}

fn refused(err: RulesError) -> Status {
    match err {
        RulesError::TooMany { .. } => Status::resource_exhausted(err.to_string()),
        _ => Status::invalid_argument(err.to_string()),
    }
}

/// The rules in force for `scope`, one per kind; a spike's at the type (or tenant) level.
fn effective_rules(keeping: &RuleKeeping, scope: &RuleScope) -> Vec<proto::EffectiveRule> {
    Rule::ALL
        .into_iter()
        .map(|kind| {
            let id = match kind {
                Rule::Spike => None,
                _ => scope.integration_id.as_deref(),
            };
            let fields = effective(
                &keeping.overrides,
                &keeping.book,
                &scope.tenant_id,
                kind,
                scope.integration_type,
                id,
            );
            proto::EffectiveRule {
                kind: kind_to_wire(kind) as i32,
                fields: fields
                    .into_iter()
                    .map(|f| proto::EffectiveRuleField {
                        name: f.name.to_owned(),
                        value_json: f.value.to_string(),
                        origin: f.origin.as_str().to_owned(),
                    })
                    .collect(),
            }
        })
        .collect()
}

fn scope_from_wire(scope: Option<&proto::AlertRuleScope>) -> Result<RuleScope, Status> {
    let scope = scope.ok_or_else(|| Status::invalid_argument("scope is required"))?;
    let integration_type = match scope.integration_type {
        0 => None,
        value => Some(type_from_wire(value).map_err(|_| {
            Status::invalid_argument(format!(
                "scope.integration_type: {value} is not an integration type"
            ))
        })?),
    };
    let integration_id = bounded("scope.integration_id", &scope.integration_id, 256)?;
    Ok(RuleScope {
        tenant_id: scope.tenant_id.clone(),
        integration_type,
        integration_id: (!integration_id.is_empty()).then(|| integration_id.to_owned()),
    })
}

fn check_scope(scope: &RuleScope) -> Result<(), Status> {
    if scope.integration_id.is_some() && scope.integration_type.is_none() {
        return Err(Status::invalid_argument(
            "integration_type: one integration is named with its type",
        ));
    }
    Ok(())
}

fn kind_from_wire(value: i32) -> Result<Rule, Status> {
    match proto::AlertRule::try_from(value) {
        Ok(proto::AlertRule::FailureRate) => Ok(Rule::FailureRate),
        Ok(proto::AlertRule::Spike) => Ok(Rule::Spike),
        Ok(proto::AlertRule::SloBurn) => Ok(Rule::SloBurn),
        Ok(proto::AlertRule::Silence) => Ok(Rule::Silence),
        _ => Err(Status::invalid_argument(
            "kind: must be failure_rate, spike, slo_burn or silence",
        )),
    }
}

pub(super) fn kind_to_wire(kind: Rule) -> proto::AlertRule {
    match kind {
        Rule::FailureRate => proto::AlertRule::FailureRate,
        Rule::Spike => proto::AlertRule::Spike,
        Rule::SloBurn => proto::AlertRule::SloBurn,
        Rule::Silence => proto::AlertRule::Silence,
    }
}

fn spec_from_wire(rule: &proto::AlertRuleSpec) -> Result<RuleSpec, Status> {
    let destinations = match &rule.destinations {
        Some(list) if list.names.len() > 20 => {
            return Err(Status::invalid_argument(
                "destinations: a rule names at most 20",
            ))
        }
        Some(list) => Some(list.names.clone()),
        None => None,
    };
    Ok(RuleSpec {
        enabled: rule.enabled,
        rate_window_minutes: rule.rate_window_minutes,
        rate_threshold: rule.rate_threshold,
        rate_min_events: rule.rate_min_events,
        spike_factor: rule.spike_factor,
        spike_min_failures: rule.spike_min_failures,
        slo_objective: rule.slo_objective,
        slo_fast_window_minutes: rule.slo_fast_window_minutes,
        slo_slow_window_minutes: rule.slo_slow_window_minutes,
        slo_min_events: rule.slo_min_events,
        silence_after_minutes: rule.silence_after_minutes,
        silence_min_events: rule.silence_min_events,
        silence_enabled: None,
        destinations,
        severity: severity_from_wire("severity", rule.severity)?,
        severity_fast: severity_from_wire("severity_fast", rule.severity_fast)?,
        severity_slow: severity_from_wire("severity_slow", rule.severity_slow)?,
        // Per-kind severities in one table come only from the rules file.
        severities: None,
    })
}

fn severity_from_wire(field: &str, value: i32) -> Result<Option<Severity>, Status> {
    match proto::AlertSeverity::try_from(value) {
        Ok(proto::AlertSeverity::Unspecified) => Ok(None),
        Ok(proto::AlertSeverity::Critical) => Ok(Some(Severity::Critical)),
        Ok(proto::AlertSeverity::Error) => Ok(Some(Severity::Error)),
        Ok(proto::AlertSeverity::Warning) => Ok(Some(Severity::Warning)),
        Ok(proto::AlertSeverity::Info) => Ok(Some(Severity::Info)),
        Err(_) => Err(Status::invalid_argument(format!(
            "{field}: unknown severity {value}"
        ))),
    }
}

pub(super) fn severity_to_wire(severity: Severity) -> proto::AlertSeverity {
    match severity {
        Severity::Critical => proto::AlertSeverity::Critical,
        Severity::Error => proto::AlertSeverity::Error,
        Severity::Warning => proto::AlertSeverity::Warning,
        Severity::Info => proto::AlertSeverity::Info,
    }
}

fn optional_severity(severity: Option<Severity>) -> i32 {
    severity.map_or(0, |s| severity_to_wire(s) as i32)
}

impl From<ScopedRule> for proto::AlertRuleSpec {
    fn from(rule: ScopedRule) -> Self {
        let spec = rule.spec;
        proto::AlertRuleSpec {
            scope: Some(proto::AlertRuleScope {
                tenant_id: rule.scope.tenant_id,
                integration_type: rule.scope.integration_type.map_or(0, type_to_wire),
                integration_id: rule.scope.integration_id.unwrap_or_default(),
            }),
            kind: kind_to_wire(rule.kind) as i32,
            enabled: spec.enabled,
            rate_window_minutes: spec.rate_window_minutes,
            rate_threshold: spec.rate_threshold,
            rate_min_events: spec.rate_min_events,
            spike_factor: spec.spike_factor,
            spike_min_failures: spec.spike_min_failures,
            slo_objective: spec.slo_objective,
            slo_fast_window_minutes: spec.slo_fast_window_minutes,
            slo_slow_window_minutes: spec.slo_slow_window_minutes,
            slo_min_events: spec.slo_min_events,
            silence_after_minutes: spec.silence_after_minutes,
            silence_min_events: spec.silence_min_events,
            destinations: spec
                .destinations
                .map(|names| proto::AlertDestinations { names }),
            severity: optional_severity(spec.severity),
            severity_fast: optional_severity(spec.severity_fast),
            severity_slow: optional_severity(spec.severity_slow),
            updated_at: Some(ms_to_timestamp(rule.updated_at_ms)),
            updated_by: rule.updated_by,
        }
    }
}
