//! The alert-rule calls: `PutAlertRule`, `ListAlertRules` and `DeleteAlertRule`. Rules live on
//! `<topic>.rules`, which every replica reads, so any replica takes them: nothing is forwarded.

// Handlers must return `tonic::Status`.
#![allow(clippy::result_large_err)]

use tonic::{Request, Response, Status};
use tracing::instrument;

use super::auth::Access;
use super::convert::{bounded, ms_to_timestamp, type_from_wire, type_to_wire};
use super::IntegrationHealthApi;
use crate::alerts::{RuleKeeping, RuleScope, RuleSpec, ScopedRule, Severity};
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
        request: Request<proto::PutAlertRuleRequest>,
    ) -> Result<Response<proto::PutAlertRuleResponse>, Status> {
        self.timed("PutAlertRule", async {
            let wire = request.get_ref().rule.clone().unwrap_or_default();
            let scope = scope_from_wire(wire.scope.as_ref())?;
            let grant = self.admin(&request, &scope.tenant_id)?;
            let keeping = self.rules()?;
            let rule = ScopedRule {
                scope,
                spec: spec_from_wire(&wire)?,
                updated_at_ms: self.clock.now_ms(),
                actor_token: grant.map(|d| hex::encode(&d[..8])).unwrap_or_default(),
            };
            keeping.check(&rule).map_err(Status::invalid_argument)?;
            let payload = serde_json::to_vec(&rule).unwrap_or_default();
            keeping
                .writer
                .write(&rule.scope.key(), &payload)
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
            let tenant = request.get_ref().tenant_id.clone();
            self.tenant(&request, &tenant)?;
            let rules = self.rules()?.book.of_tenant(&tenant);
            Ok(Response::new(proto::ListAlertRulesResponse {
                rules: rules.into_iter().map(Into::into).collect(),
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
            self.admin(&request, &scope.tenant_id)?;
            let keeping = self.rules()?;
            if keeping.book.get(&scope).is_none() {
                return Err(Status::not_found("no rule has this scope"));
            }
            keeping
                .writer
                .tombstone(&scope.key())
                .await
                .map_err(|err| Status::unavailable(format!("{err}; retry")))?;
            keeping.book.remove(&scope);
            Ok(Response::new(proto::DeleteAlertRuleResponse {}))
        })
        .await
    }

    /// Checks the tenant id and the caller's `alerts_admin` right to it.
    fn admin<T>(&self, request: &Request<T>, tenant: &str) -> Result<Option<[u8; 32]>, Status> {
        self.tenant(request, tenant)?;
        self.auth
            .current()
            .check(request.metadata(), Access::AlertsAdmin(tenant))
    }
}

fn scope_from_wire(scope: Option<&proto::AlertRuleScope>) -> Result<RuleScope, Status> {
    let scope = scope.ok_or_else(|| Status::invalid_argument("scope is required"))?;
    let integration_type = match scope.integration_type {
        0 => None,
        value => Some(type_from_wire(value)?),
    };
    let integration_id = bounded("integration_id", &scope.integration_id, 256)?;
    Ok(RuleScope {
        tenant_id: scope.tenant_id.clone(),
        integration_type,
        integration_id: (!integration_id.is_empty()).then(|| integration_id.to_owned()),
    })
}

fn spec_from_wire(rule: &proto::AlertRuleSpec) -> Result<RuleSpec, Status> {
    let destinations = match &rule.destinations {
        Some(list) if list.names.len() > 20 => {
            return Err(Status::invalid_argument("at most 20 destinations"))
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
        silence_minutes: rule.silence_minutes,
        silence_min_events: rule.silence_min_events,
        destinations,
        severity: severity_from_wire(rule.severity)?,
        // Per-kind severities come only from the rules file.
        severities: None,
    })
}

fn severity_from_wire(value: i32) -> Result<Option<Severity>, Status> {
    match proto::AlertSeverity::try_from(value) {
        Ok(proto::AlertSeverity::Unspecified) => Ok(None),
        Ok(proto::AlertSeverity::Critical) => Ok(Some(Severity::Critical)),
        Ok(proto::AlertSeverity::Error) => Ok(Some(Severity::Error)),
        Ok(proto::AlertSeverity::Warning) => Ok(Some(Severity::Warning)),
        Ok(proto::AlertSeverity::Info) => Ok(Some(Severity::Info)),
        Err(_) => Err(Status::invalid_argument(format!(
            "unknown severity {value}"
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

impl From<ScopedRule> for proto::AlertRuleSpec {
    fn from(rule: ScopedRule) -> Self {
        let spec = rule.spec;
        proto::AlertRuleSpec {
            scope: Some(proto::AlertRuleScope {
                tenant_id: rule.scope.tenant_id,
                integration_type: rule.scope.integration_type.map_or(0, type_to_wire),
                integration_id: rule.scope.integration_id.unwrap_or_default(),
            }),
            enabled: spec.enabled,
            rate_window_minutes: spec.rate_window_minutes,
            rate_threshold: spec.rate_threshold,
            rate_min_events: spec.rate_min_events,
            spike_factor: spec.spike_factor,
            spike_min_failures: spec.spike_min_failures,
            slo_objective: spec.slo_objective,
            silence_minutes: spec.silence_minutes,
            silence_min_events: spec.silence_min_events,
            destinations: spec
                .destinations
                .map(|names| proto::AlertDestinations { names }),
            severity: spec.severity.map_or(0, |s| severity_to_wire(s) as i32),
            updated_at: Some(ms_to_timestamp(rule.updated_at_ms)),
        }
    }
}
