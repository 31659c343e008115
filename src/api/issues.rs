//! The issue calls: `ListIssues` and `UpdateIssue`.

// Handlers must return `tonic::Status`.
#![allow(clippy::result_large_err)]

use tonic::{Request, Response, Status};
use tracing::instrument;

use super::auth::Access;
use super::convert::{
    action_from_wire, bounded, classes_from_wire, non_empty, optional_range, states_from_wire,
    status_code_filter, timestamp_to_ms, types_from_wire,
};
use super::service::ApiClient;
use super::IntegrationHealthApi;
use crate::issues::{ActionRequest, IssueAction};
use crate::proto;
use crate::query::{self, FailureOrder, QueryEngine, TimeRange};
use crate::store::parse_failure_id;

fn not_kept() -> Status {
    Status::failed_precondition("this service does not keep issues")
}

impl IntegrationHealthApi {
    #[instrument(name = "list_issues", skip_all, fields(rpc = "ListIssues", tenant = tracing::field::Empty))]
    pub(super) async fn list_issues_call(
        &self,
        request: Request<proto::ListIssuesRequest>,
    ) -> Result<Response<proto::ListIssuesResponse>, Status> {
        let forward = |mut owner: ApiClient, r| async move { owner.list_issues(r).await };
        self.tenant_call("ListIssues", request, forward, |req| {
            if self.issues.is_none() {
                return Err(not_kept());
            }
            let states = states_from_wire(&req.states)?;
            let list = query::ListFailuresRequest {
                tenant_id: req.tenant_id.clone(),
                range: optional_range(req.range.as_ref())?,
                types: types_from_wire(&req.integration_types)?,
                filter: query::FailureFilter {
                    status_code: status_code_filter(req.status_code)?,
                    classes: classes_from_wire(&req.classes)?,
                    ..query::FailureFilter::default()
                },
                page_size: req.page_size as usize,
                page_token: non_empty(bounded("page_token", &req.page_token, 256)?),
                order: FailureOrder::try_from(req.order_by)?,
            };
            Ok(move |engine: &QueryEngine| engine.list_issues(&list, &states))
        })
        .await
    }

    #[instrument(name = "update_issue", skip_all, fields(rpc = "UpdateIssue", tenant = tracing::field::Empty))]
    pub(super) async fn update_issue_call(
        &self,
        request: Request<proto::UpdateIssueRequest>,
    ) -> Result<Response<proto::UpdateIssueResponse>, Status> {
        self.timed("UpdateIssue", async {
            let req = request.get_ref();
            self.tenant(&request, &req.tenant_id)?;
            let auth = self.auth.current();
            auth.check(request.metadata(), Access::Write(&req.tenant_id))?;
            let keeping = self.issues.as_ref().ok_or_else(not_kept)?;
            let mut action = self.action_of(req)?;
            action.grant = auth.grant_name(request.metadata()).unwrap_or_default();
            // Only a group the service knows can become an issue.
            self.group_now(&request, &action).await?;
            let payload = serde_json::to_vec(&action).unwrap_or_default();
            keeping
                .writer
                .write(&action.key(), &payload)
                .await
                .map_err(|err| Status::unavailable(format!("{err}; retry")))?;
            keeping.book.record(action.clone());
            let group = self.group_now(&request, &action).await?;
            Ok(Response::new(proto::UpdateIssueResponse {
                issue: Some(group.into()),
            }))
        })
        .await
    }

    fn action_of(&self, req: &proto::UpdateIssueRequest) -> Result<IssueAction, Status> {
        let failure_id = bounded("failure_id", &req.failure_id, 64)?;
        let failure_id = parse_failure_id(failure_id).ok_or_else(|| {
            Status::invalid_argument("failure_id must be 32 hexadecimal characters")
        })?;
        let until = req.snooze_until.as_ref();
        let asked = ActionRequest {
            tenant_id: &req.tenant_id,
            failure_id,
            kind: action_from_wire(req.action)?,
            snooze_until_ms: until
                .map(|t| timestamp_to_ms("snooze_until", t))
                .transpose()?,
            actor: &req.actor,
            note: &req.note,
        };
        IssueAction::checked(asked, self.clock.now_ms())
            .map_err(|err| Status::invalid_argument(err.to_string()))
    }

    /// The group the action is about, over all of retention, with its issue as it stands.
    async fn group_now(
        &self,
        request: &Request<proto::UpdateIssueRequest>,
        action: &IssueAction,
    ) -> Result<query::FailureRow, Status> {
        let tenant = action.tenant_id.clone();
        let failure_id = action.failure_id.clone();
        let everything = TimeRange {
            start_ms: 0,
            end_ms: self.clock.now_ms() + 1,
        };
        let (details, _) = self
            .tenant_query(
                request.metadata(),
                false,
                &action.tenant_id,
                move |engine| engine.failure_details(&tenant, &failure_id, Some(everything)),
            )
            .await?;
        Ok(details.failure)
    }
}
