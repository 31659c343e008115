//! The `IntegrationHealth` service: each method hands its call to the family that serves it
//! (`counts`, `failures`, `health`, `issues`, `alerts`, `global`), which translates the request
//! and delegates to the shared pipeline in `service`.

use tonic::{Request, Response, Status};

use super::alerts::AlertStream;
use super::watch::WatchStream;
use super::IntegrationHealthApi;
use crate::proto;
use crate::proto::integration_health_server::IntegrationHealth;

type Answer<T> = Result<Response<T>, Status>;

#[tonic::async_trait]
impl IntegrationHealth for IntegrationHealthApi {
    async fn get_overview(
        &self,
        request: Request<proto::GetOverviewRequest>,
    ) -> Answer<proto::GetOverviewResponse> {
        self.overview_call(request).await
    }

    async fn get_percentage_change(
        &self,
        request: Request<proto::GetPercentageChangeRequest>,
    ) -> Answer<proto::GetPercentageChangeResponse> {
        self.change_call(request).await
    }

    async fn get_error_breakdown(
        &self,
        request: Request<proto::GetErrorBreakdownRequest>,
    ) -> Answer<proto::GetErrorBreakdownResponse> {
        self.errors_call(request).await
    }

    async fn get_trends(
        &self,
        request: Request<proto::GetTrendsRequest>,
    ) -> Answer<proto::GetTrendsResponse> {
        self.trends_call(request).await
    }

    async fn list_failures(
        &self,
        request: Request<proto::ListFailuresRequest>,
    ) -> Answer<proto::ListFailuresResponse> {
        self.failures_call(request).await
    }

    async fn get_failure_details(
        &self,
        request: Request<proto::GetFailureDetailsRequest>,
    ) -> Answer<proto::GetFailureDetailsResponse> {
        self.details_call(request).await
    }

    async fn list_common_errors(
        &self,
        request: Request<proto::ListCommonErrorsRequest>,
    ) -> Answer<proto::ListCommonErrorsResponse> {
        self.common_errors_call(request).await
    }

    async fn list_integrations(
        &self,
        request: Request<proto::ListIntegrationsRequest>,
    ) -> Answer<proto::ListIntegrationsResponse> {
        self.integrations_call(request).await
    }

    async fn get_integration_health(
        &self,
        request: Request<proto::GetIntegrationHealthRequest>,
    ) -> Answer<proto::GetIntegrationHealthResponse> {
        self.integration_health_call(request).await
    }

    type WatchTenantStream = WatchStream;

    async fn watch_tenant(
        &self,
        request: Request<proto::WatchTenantRequest>,
    ) -> Answer<WatchStream> {
        self.watch_tenant_call(request).await
    }

    async fn list_issues(
        &self,
        request: Request<proto::ListIssuesRequest>,
    ) -> Answer<proto::ListIssuesResponse> {
        self.list_issues_call(request).await
    }

    async fn update_issue(
        &self,
        request: Request<proto::UpdateIssueRequest>,
    ) -> Answer<proto::UpdateIssueResponse> {
        self.update_issue_call(request).await
    }

    async fn list_alerts(
        &self,
        request: Request<proto::ListAlertsRequest>,
    ) -> Answer<proto::ListAlertsResponse> {
        self.list_alerts_call(request).await
    }

    async fn test_alert_destination(
        &self,
        request: Request<proto::TestAlertDestinationRequest>,
    ) -> Answer<proto::TestAlertDestinationResponse> {
        self.test_alert_destination_call(request).await
    }

    async fn list_alert_dead_letters(
        &self,
        request: Request<proto::ListAlertDeadLettersRequest>,
    ) -> Answer<proto::ListAlertDeadLettersResponse> {
        self.list_alert_dead_letters_call(request).await
    }

    type WatchAlertsStream = AlertStream;

    async fn watch_alerts(
        &self,
        request: Request<proto::WatchAlertsRequest>,
    ) -> Answer<AlertStream> {
        self.watch_alerts_call(request).await
    }

    async fn put_alert_rule(
        &self,
        request: Request<proto::PutAlertRuleRequest>,
    ) -> Answer<proto::PutAlertRuleResponse> {
        self.put_alert_rule_call(request).await
    }

    async fn list_alert_rules(
        &self,
        request: Request<proto::ListAlertRulesRequest>,
    ) -> Answer<proto::ListAlertRulesResponse> {
        self.list_alert_rules_call(request).await
    }

    async fn delete_alert_rule(
        &self,
        request: Request<proto::DeleteAlertRuleRequest>,
    ) -> Answer<proto::DeleteAlertRuleResponse> {
        self.delete_alert_rule_call(request).await
    }

    async fn list_tenants(
        &self,
        request: Request<proto::ListTenantsRequest>,
    ) -> Answer<proto::ListTenantsResponse> {
        self.tenants_call(request).await
    }

    async fn get_ingest_status(
        &self,
        request: Request<proto::GetIngestStatusRequest>,
    ) -> Answer<proto::GetIngestStatusResponse> {
        self.ingest_status_call(request).await
    }

    async fn get_caller(
        &self,
        request: Request<proto::GetCallerRequest>,
    ) -> Answer<proto::GetCallerResponse> {
        self.caller_call(request).await
    }
}
