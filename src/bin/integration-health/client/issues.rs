//! `query issues` and `query issue <action>`: failure groups with their lifecycle.

use integration_health::proto;

use super::render::{failure_cells, issue_text, range_text, table};

fn as_json<T: serde::Serialize>(message: &T) -> String {
    serde_json::to_string_pretty(message).unwrap_or_default()
}

pub(super) fn render_issues(response: &proto::ListIssuesResponse, json: bool) -> String {
    if json {
        return as_json(response);
    }
    let mut table = table(&[
        "Type",
        "Integration",
        "Failure description",
        "Code",
        "Service",
        "Flow",
        "Errors",
        "Last seen",
        "Issue",
        "Failure id",
    ]);
    for issue in &response.issues {
        table.add_row(failure_cells(issue));
    }
    let next = match response.next_page_token.as_str() {
        "" => String::new(),
        token => format!("\nNext page: --page-token {token}"),
    };
    format!(
        "{} issues, {}\n{table}{next}",
        response.total_issues,
        range_text(&response.effective_range)
    )
}

pub(super) fn render_update(response: &proto::UpdateIssueResponse, json: bool) -> String {
    if json {
        return as_json(response);
    }
    match &response.issue {
        Some(group) => format!(
            "{}: {}\n{}",
            group.failure_id,
            issue_text(&group.issue),
            group.failure_description
        ),
        None => String::new(),
    }
}
