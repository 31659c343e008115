//! `query issues`, `query issue <action>` and `query alerts [--watch | test | dead-letters]`:
//! failure groups with their lifecycle, the alerts raised on them, and their delivery.

use integration_health::proto;
use integration_health::proto::integration_health_client::IntegrationHealthClient;
use tokio_stream::StreamExt;
use tonic::transport::Channel;

use super::render::{
    failure_table, issue_text, next_page_hint, proto_json, served, table, time_text, type_label,
};
use super::{escape_controls, CliError};

pub(super) fn render_issues(response: &proto::ListIssuesResponse, json: bool) -> String {
    if json {
        return proto_json(response);
    }
    let table = failure_table(&response.issues);
    let next = next_page_hint(&response.next_page_token);
    format!(
        "{} issues, {}\n{table}{next}",
        response.total_issues,
        served(&response.effective_range, response.granularity)
    )
}

/// How a test alert went: the text, or `NotDelivered` with it, so the command fails.
pub(super) fn render_test_send(
    response: &proto::TestAlertDestinationResponse,
    json: bool,
) -> Result<String, super::CliError> {
    let text = match (json, response.delivered) {
        (true, _) => proto_json(response),
        (false, true) => format!("delivered, as {}", response.message_id),
        (false, false) => format!(
            "not delivered ({}), as {}",
            response.error, response.message_id
        ),
    };
    match response.delivered {
        true => Ok(text),
        false => Err(super::CliError::NotDelivered(text)),
    }
}

pub(super) fn render_update(response: &proto::UpdateIssueResponse, json: bool) -> String {
    if json {
        return proto_json(response);
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

fn state_and_rule(alert: &proto::Alert) -> (&'static str, &'static str) {
    (
        proto::AlertState::try_from(alert.state).map_or("?", |s| s.as_str_name()),
        proto::AlertRule::try_from(alert.rule).map_or("?", |r| r.as_str_name()),
    )
}

fn alert_line(alert: &proto::Alert) -> String {
    let (state, rule) = state_and_rule(alert);
    let subject = match alert.integration_id.as_str() {
        "" => format!(
            "{} code {}",
            type_label(alert.integration_type),
            alert.status_code
        ),
        id => format!(
            "{} ({id}), code {}",
            alert.integration_name, alert.status_code
        ),
    };
    format!(
        "{} {state} {rule} {} {subject}: {:.3} against {:.3} ({}) [{}]",
        time_text(&alert.at),
        alert.tenant_id,
        alert.value,
        alert.threshold,
        alert.measure,
        alert.alert_id
    )
}

pub(super) fn render_alerts(response: &proto::ListAlertsResponse, json: bool) -> String {
    if json {
        return proto_json(response);
    }
    let mut table = table(&[
        "When",
        "State",
        "Rule",
        "Tenant",
        "About",
        "Value",
        "Threshold",
        "Alert id",
    ]);
    for alert in &response.alerts {
        let (state, rule) = state_and_rule(alert);
        let about = match alert.integration_id.as_str() {
            "" => format!(
                "{} code {}",
                type_label(alert.integration_type),
                alert.status_code
            ),
            _ => format!("{} ({})", alert.integration_name, alert.integration_id),
        };
        table.add_row(vec![
            time_text(&alert.at),
            state.to_owned(),
            rule.to_owned(),
            alert.tenant_id.clone(),
            about,
            format!("{:.3}", alert.value),
            format!("{:.3}", alert.threshold),
            alert.alert_id.clone(),
        ]);
    }
    format!(
        "{} alerts (firing, or resolved in the last 24 h)\n{table}",
        response.alerts.len()
    )
}

pub(super) fn render_dead_letters(
    response: &proto::ListAlertDeadLettersResponse,
    json: bool,
) -> String {
    if json {
        return proto_json(response);
    }
    let mut table = table(&[
        "When",
        "Destination",
        "Message id",
        "Attempts",
        "Last error",
    ]);
    for letter in &response.dead_letters {
        table.add_row(vec![
            time_text(&letter.at),
            letter.destination.clone(),
            letter.message_id.clone(),
            letter.attempts.to_string(),
            escape_controls(&letter.error),
        ]);
    }
    format!(
        "{} dead letters, newest first\n{table}",
        response.dead_letters.len()
    )
}

/// Prints each alert change as it is published, until the stream ends or ctrl-c.
pub(super) async fn watch_alerts(
    client: &mut IntegrationHealthClient<Channel>,
    request: tonic::Request<proto::WatchAlertsRequest>,
    json: bool,
) -> Result<String, CliError> {
    let mut alerts = client.watch_alerts(request).await?.into_inner();
    while let Some(alert) = alerts.next().await {
        let alert = alert?;
        let line = match json {
            true => serde_json::to_string(&alert).unwrap_or_default(),
            false => escape_controls(&alert_line(&alert)),
        };
        println!("{line}");
    }
    Ok("the service ended the watch".to_owned())
}
