//! The issue calls: `ListIssues` and `UpdateIssue`.

// Handlers must return `tonic::Status`.
#![allow(clippy::result_large_err)]

use std::sync::Arc;

use tonic::{Request, Response, Status};
use tracing::instrument;

use super::auth::Access;
use super::convert::{
    bounded, optional_range, status_code_filter, timestamp_to_ms, types_from_wire,
};
use super::coverage::respond;
use super::grpc::non_empty;
use super::IntegrationHealthApi;
use crate::changelog::ChangelogWriter;
use crate::event::is_bidi_control;
use crate::issues::{ActionKind, IssueAction, IssueBook, IssueState};
use crate::proto;
use crate::query::{self, FailureOrder, TimeRange};
use crate::store::{format_failure_id, parse_failure_id};

const MAX_ACTOR_CHARS: usize = 128;
const MAX_NOTE_CHARS: usize = 1024;

/// Where actions go and where they are read back from.
pub struct IssueKeeping {
    pub writer: Arc<ChangelogWriter>,
    pub book: Arc<IssueBook>,
}

fn not_kept() -> Status {
    Status::failed_precondition("this service does not keep issues")
}

fn states_from_wire(states: &[i32]) -> Result<Vec<IssueState>, Status> {
    states
        .iter()
        .map(|s| match proto::IssueState::try_from(*s) {
            Ok(proto::IssueState::Open) => Ok(IssueState::Open),
            Ok(proto::IssueState::Acknowledged) => Ok(IssueState::Acknowledged),
            Ok(proto::IssueState::Resolved) => Ok(IssueState::Resolved),
            Ok(proto::IssueState::Snoozed) => Ok(IssueState::Snoozed),
            Ok(proto::IssueState::Reopened) => Ok(IssueState::Reopened),
            _ => Err(Status::invalid_argument(format!(
                "states: {s} is not a state"
            ))),
        })
        .collect()
}

fn action_from_wire(action: i32) -> Result<ActionKind, Status> {
    match proto::IssueAction::try_from(action) {
        Ok(proto::IssueAction::Acknowledge) => Ok(ActionKind::Acknowledge),
        Ok(proto::IssueAction::Resolve) => Ok(ActionKind::Resolve),
        Ok(proto::IssueAction::Snooze) => Ok(ActionKind::Snooze),
        Ok(proto::IssueAction::Reopen) => Ok(ActionKind::Reopen),
        _ => Err(Status::invalid_argument(
            "action must be ACKNOWLEDGE, RESOLVE, SNOOZE or REOPEN",
        )),
    }
}

/// Text a person typed: at most `max` characters, and no control characters but newlines.
fn typed<'a>(field: &'static str, text: &'a str, max: usize) -> Result<&'a str, Status> {
    if text.chars().count() > max {
        return Err(Status::invalid_argument(format!(
            "{field} may be at most {max} characters"
        )));
    }
    if text.chars().any(|c| c.is_control() && c != '\n') {
        return Err(Status::invalid_argument(format!(
            "{field} may not hold control characters"
        )));
    }
    if text.chars().any(is_bidi_control) {
        return Err(Status::invalid_argument(format!(
            "{field} may not hold bidirectional controls, which show text other than what is stored"
        )));
    }
    Ok(text)
}

impl IntegrationHealthApi {
    #[instrument(skip(self, request), fields(rpc = "ListIssues", tenant = tracing::field::Empty))]
    pub(super) async fn list_issues_call(
        &self,
        request: Request<proto::ListIssuesRequest>,
    ) -> Result<Response<proto::ListIssuesResponse>, Status> {
        self.timed("ListIssues", async {
            let req = request.get_ref();
            self.tenant(&request, &req.tenant_id)?;
            if let Some(owner) = self.forward_to(&request, &req.tenant_id) {
                return self
                    .forward(&owner, request, |mut owner, request| async move {
                        owner.list_issues(request).await
                    })
                    .await;
            }
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
                    ..query::FailureFilter::default()
                },
                page_size: req.page_size as usize,
                page_token: non_empty(bounded("page_token", &req.page_token, 256)?),
                order: FailureOrder::try_from(req.order_by)?,
            };
            let (page, coverage) = self
                .tenant_query(
                    request.metadata(),
                    req.allow_partial,
                    &req.tenant_id,
                    move |engine| engine.list_issues(&list, &states),
                )
                .await?;
            Ok(respond(
                &coverage,
                proto::ListIssuesResponse {
                    issues: page.failures.into_iter().map(Into::into).collect(),
                    next_page_token: page.next_page_token.unwrap_or_default(),
                    total_issues: page.total_groups,
                    effective_range: Some(page.effective_range.into()),
                    ..Default::default()
                },
            ))
        })
        .await
    }

    #[instrument(skip(self, request), fields(rpc = "UpdateIssue", tenant = tracing::field::Empty))]
    pub(super) async fn update_issue_call(
        &self,
        request: Request<proto::UpdateIssueRequest>,
    ) -> Result<Response<proto::UpdateIssueResponse>, Status> {
        self.timed("UpdateIssue", async {
            let req = request.get_ref();
            self.tenant(&request, &req.tenant_id)?;
            let grant = self
                .auth
                .current()
                .check(request.metadata(), Access::Write(&req.tenant_id))?;
            let keeping = self.issues.as_ref().ok_or_else(not_kept)?;
            let mut action = self.action_of(req)?;
            action.token = grant
                .map(|digest| hex::encode(&digest[..8]))
                .unwrap_or_default();
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
        let failure_id =
            parse_failure_id(bounded("failure_id", &req.failure_id, 64)?).ok_or_else(|| {
                Status::invalid_argument("failure_id must be 32 hexadecimal characters")
            })?;
        let kind = action_from_wire(req.action)?;
        let now = self.clock.now_ms();
        let until_ms = match (kind, &req.snooze_until) {
            (ActionKind::Snooze, None) => {
                return Err(Status::invalid_argument(
                    "snooze_until is required to snooze",
                ))
            }
            (ActionKind::Snooze, Some(until)) => {
                let until = timestamp_to_ms("snooze_until", until)?;
                if until <= now {
                    return Err(Status::invalid_argument(
                        "snooze_until must be in the future",
                    ));
                }
                Some(until)
            }
            (_, Some(_)) => {
                return Err(Status::invalid_argument("snooze_until is only for SNOOZE"))
            }
            (_, None) => None,
        };
        Ok(IssueAction {
            tenant_id: req.tenant_id.clone(),
            failure_id: format_failure_id(failure_id),
            action: kind,
            actor: typed("actor", &req.actor, MAX_ACTOR_CHARS)?.to_owned(),
            token: String::new(),
            at_ms: now,
            note: typed("note", &req.note, MAX_NOTE_CHARS)?.to_owned(),
            until_ms,
        })
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
