//! Readable tables, bars and sparklines for people, and JSON for scripts.

use std::fmt::Write as _;

use comfy_table::{presets::UTF8_FULL_CONDENSED, Cell, CellAlignment, Table};
use integration_health::api::convert::type_from_wire;
use integration_health::proto;
use integration_health::proto::Timestamp;
use serde_json::{json, Value};

fn type_name(value: i32) -> &'static str {
    type_from_wire(value).map_or("unknown", |t| t.as_str())
}

pub(super) fn type_label(value: i32) -> &'static str {
    type_from_wire(value).map_or("unknown", |t| t.label())
}

pub(super) fn time_text(t: &Option<Timestamp>) -> String {
    t.as_ref()
        .and_then(|t| chrono::DateTime::from_timestamp(t.seconds, t.nanos as u32))
        .map(|t| t.to_rfc3339_opts(chrono::SecondsFormat::Millis, true))
        .unwrap_or_default()
}

fn range_json(range: &Option<proto::TimeRange>) -> Value {
    match range {
        Some(r) => json!({"start": time_text(&r.start), "end": time_text(&r.end)}),
        None => Value::Null,
    }
}

/// The range an answer served, and how: whole UTC days when it reached back past the hours.
pub(super) fn served(range: &Option<proto::TimeRange>, granularity: i32) -> String {
    match proto::Granularity::try_from(granularity) {
        Ok(proto::Granularity::Day) => format!("{} (whole UTC days)", range_text(range)),
        _ => range_text(range),
    }
}

pub(super) fn granularity_name(granularity: i32) -> &'static str {
    match proto::Granularity::try_from(granularity) {
        Ok(proto::Granularity::Minute) => "minute",
        Ok(proto::Granularity::Hour) => "hour",
        Ok(proto::Granularity::Day) => "day",
        _ => "unspecified",
    }
}

pub(super) fn range_text(range: &Option<proto::TimeRange>) -> String {
    match range {
        Some(r) => format!("{} → {}", time_text(&r.start), time_text(&r.end)),
        None => String::new(),
    }
}

fn pretty(value: Value) -> String {
    serde_json::to_string_pretty(&value).unwrap_or_default()
}

pub(super) fn table(headers: &[&str]) -> Table {
    let mut table = Table::new();
    table
        .load_preset(UTF8_FULL_CONDENSED)
        .set_header(headers.to_vec());
    table
}

fn bar(share: f64, width: usize) -> String {
    let cells = (share * width as f64).round() as usize;
    "█".repeat(cells.min(width))
}

pub fn sparkline(values: &[u64]) -> String {
    const LEVELS: [char; 8] = ['▁', '▂', '▃', '▄', '▅', '▆', '▇', '█'];
    let max = values.iter().copied().max().unwrap_or(0);
    values
        .iter()
        .map(|v| match (*v, max) {
            (0, _) => ' ',
            (_, 0) => ' ',
            (v, max) => LEVELS[((v as f64 / max as f64) * 7.0).round() as usize],
        })
        .collect()
}

pub(super) fn render_overview(response: &proto::GetOverviewResponse, json: bool) -> String {
    if json {
        return pretty(json!({
            "types": response.types.iter().map(|t| json!({
                "integration_type": type_name(t.integration_type), "failed": t.failed, "succeeded": t.succeeded,
            })).collect::<Vec<_>>(),
            "classes": classes_json(&response.classes),
            "effective_range": range_json(&response.effective_range),
            "granularity": granularity_name(response.granularity),
        }));
    }
    let total_failed: u64 = response.types.iter().map(|t| t.failed).sum();
    let mut table = table(&[
        "Integration type",
        "Failed",
        "Share of failures",
        "Succeeded",
    ]);
    for t in &response.types {
        let share = if total_failed == 0 {
            0.0
        } else {
            t.failed as f64 / total_failed as f64
        };
        table.add_row(vec![
            Cell::new(type_label(t.integration_type)),
            Cell::new(t.failed).set_alignment(CellAlignment::Right),
            Cell::new(format!("{:<20} {:>5.1}%", bar(share, 20), share * 100.0)),
            Cell::new(t.succeeded).set_alignment(CellAlignment::Right),
        ]);
    }
    format!(
        "Failures by integration type, {}\n{table}\nTotal failed: {total_failed}\nBy class: {}",
        served(&response.effective_range, response.granularity),
        classes_line(&response.classes)
    )
}

pub(super) fn render_tenants(response: &proto::ListTenantsResponse, json: bool) -> String {
    if json {
        return pretty(json!({
            "tenants": response.tenants.iter().map(|t| json!({
                "tenant_id": t.tenant_id, "failed": t.failed, "succeeded": t.succeeded,
            })).collect::<Vec<_>>(),
            "effective_range": range_json(&response.effective_range),
            "granularity": granularity_name(response.granularity),
        }));
    }
    let mut table = table(&["Tenant", "Failed", "Succeeded"]);
    for t in &response.tenants {
        table.add_row(vec![
            Cell::new(&t.tenant_id),
            Cell::new(t.failed).set_alignment(CellAlignment::Right),
            Cell::new(t.succeeded).set_alignment(CellAlignment::Right),
        ]);
    }
    format!(
        "Tenants with events, {}\n{table}",
        served(&response.effective_range, response.granularity)
    )
}

fn contribution(c: &proto::Contribution) -> Value {
    json!({"key": c.key, "name": c.name, "current": c.current, "previous": c.previous, "change": c.change})
}

fn contributions(list: &[proto::Contribution]) -> Vec<Value> {
    list.iter().map(contribution).collect()
}

fn percent_text(p: Option<f64>) -> String {
    match p {
        Some(p) => format!("{p:+.1}%"),
        None => "n/a (no previous)".into(),
    }
}

pub(super) fn render_change(response: &proto::GetPercentageChangeResponse, json: bool) -> String {
    if json {
        return pretty(json!({
            "types": response.types.iter().map(|t| json!({
                "integration_type": type_name(t.integration_type),
                "failed_current": t.failed_current, "failed_previous": t.failed_previous,
                "failed_change_percent": t.failed_change_percent,
                "succeeded_current": t.succeeded_current, "succeeded_previous": t.succeeded_previous,
                "succeeded_change_percent": t.succeeded_change_percent,
                "integration_drivers": contributions(&t.integration_drivers),
                "other_integrations": t.other_integrations.as_ref().map(contribution),
                "code_drivers": contributions(&t.code_drivers),
                "other_codes": t.other_codes.as_ref().map(contribution),
            })).collect::<Vec<_>>(),
            "current_range": range_json(&response.current_range),
            "previous_range": range_json(&response.previous_range),
        }));
    }
    let mut table = table(&[
        "Integration type",
        "Failed",
        "Previous",
        "Change",
        "Succeeded",
        "Previous",
        "Change",
    ]);
    for t in &response.types {
        table.add_row(vec![
            Cell::new(type_label(t.integration_type)),
            Cell::new(t.failed_current),
            Cell::new(t.failed_previous),
            Cell::new(percent_text(t.failed_change_percent)),
            Cell::new(t.succeeded_current),
            Cell::new(t.succeeded_previous),
            Cell::new(percent_text(t.succeeded_change_percent)),
        ]);
    }
    format!(
        "Current {}\nPrevious {}\n{table}",
        range_text(&response.current_range),
        range_text(&response.previous_range)
    )
}

pub(super) fn render_errors(response: &proto::GetErrorBreakdownResponse, json: bool) -> String {
    if json {
        return pretty(json!({
            "errors": response.errors.iter().map(|e| json!({
                "status_code": e.status_code, "name": e.name, "failed": e.failed,
                "class": class_name(e.class),
            })).collect::<Vec<_>>(),
            "classes": classes_json(&response.classes),
            "effective_range": range_json(&response.effective_range),
            "granularity": granularity_name(response.granularity),
        }));
    }
    let max = response
        .errors
        .iter()
        .map(|e| e.failed)
        .max()
        .unwrap_or(0)
        .max(1);
    let mut table = table(&["Code", "Error", "Class", "Failed", ""]);
    for e in &response.errors {
        table.add_row(vec![
            Cell::new(e.status_code),
            Cell::new(&e.name),
            Cell::new(class_name(e.class)),
            Cell::new(e.failed).set_alignment(CellAlignment::Right),
            Cell::new(bar(e.failed as f64 / max as f64, 30)),
        ]);
    }
    format!(
        "Errors on integrations, {}\nBy class: {}\n{table}",
        served(&response.effective_range, response.granularity),
        classes_line(&response.classes)
    )
}

fn classes_json(classes: &[proto::ClassCount]) -> Vec<serde_json::Value> {
    let class = |c: &proto::ClassCount| json!({"class": class_name(c.class), "failed": c.failed});
    classes.iter().map(class).collect()
}

/// "auth 3, rate_limited 0, ...": failures per class on one line.
fn classes_line(classes: &[proto::ClassCount]) -> String {
    let class = |c: &proto::ClassCount| format!("{} {}", class_name(c.class), c.failed);
    classes.iter().map(class).collect::<Vec<_>>().join(", ")
}

pub(super) fn render_trends(response: &proto::GetTrendsResponse, json: bool) -> String {
    if json {
        return pretty(json!({
            "series": response.series.iter().map(|s| json!({
                "integration_type": type_name(s.integration_type),
                "points": s.points.iter().map(|p| json!({"bucket_start": time_text(&p.bucket_start), "failed": p.failed})).collect::<Vec<_>>(),
            })).collect::<Vec<_>>(),
            "effective_range": range_json(&response.effective_range),
        }));
    }
    let mut table = table(&["Integration type", "Trend", "Total", "Peak"]);
    for s in &response.series {
        let values: Vec<u64> = s.points.iter().map(|p| p.failed).collect();
        table.add_row(vec![
            Cell::new(type_label(s.integration_type)),
            Cell::new(sparkline(&values)),
            Cell::new(values.iter().sum::<u64>()),
            Cell::new(values.iter().max().copied().unwrap_or(0)),
        ]);
    }
    let buckets = response.series.first().map_or(0, |s| s.points.len());
    format!(
        "Failure trends, {buckets} buckets, {}\n{table}",
        range_text(&response.effective_range)
    )
}

fn failure_json(f: &proto::FailureGroup) -> Value {
    json!({
        "failure_id": f.failure_id, "integration_type": type_name(f.integration_type),
        "integration_id": f.integration_id, "integration_name": f.integration_name,
        "failure_description": f.failure_description, "status_code": f.status_code,
        "service_id": f.service_id, "service_name": f.service_name,
        "flow_id": f.flow_id, "flow_name": f.flow_name, "total_errors": f.total_errors,
        "first_seen": time_text(&f.first_seen), "last_seen": time_text(&f.last_seen),
        "issue": f.issue.as_ref().map(|i| json!({
            "state": issue_state_name(i.state), "auto_resolved": i.auto_resolved,
            "actor": i.actor, "actor_grant": i.actor_grant, "note": i.note, "acted_at": time_text(&i.acted_at),
            "snoozed_until": time_text(&i.snoozed_until),
        })),
    })
}

pub(super) fn issue_state_name(state: i32) -> &'static str {
    proto::IssueState::try_from(state).map_or("unknown", |s| s.as_str_name())
}

/// An issue's state in a few words: "ACKNOWLEDGED by ana", "RESOLVED (auto)".
/// "ana (via ui-backend)": who acted as typed, and the grant the service checked.
fn actor_text(issue: &proto::Issue) -> String {
    match issue.actor_grant.as_str() {
        "" => issue.actor.clone(),
        grant => format!("{} (via {grant})", issue.actor),
    }
}

pub(super) fn issue_text(issue: &Option<proto::Issue>) -> String {
    let Some(issue) = issue else {
        return String::new();
    };
    let mut text = issue_state_name(issue.state).to_owned();
    if issue.auto_resolved {
        text.push_str(" (auto)");
    } else if !issue.actor.is_empty() {
        text.push_str(&format!(" by {}", actor_text(issue)));
    }
    if issue.snoozed_until.is_some() && issue.state == proto::IssueState::Snoozed as i32 {
        text.push_str(&format!(" until {}", time_text(&issue.snoozed_until)));
    }
    text
}

/// A message in the proto3 JSON mapping, as the Connect endpoint and `grpcurl` print it.
pub(super) fn proto_json<T: serde::Serialize>(message: &T) -> String {
    serde_json::to_string_pretty(message).unwrap_or_default()
}

/// The line that tells how to ask for the next page, when there is one.
pub(super) fn next_page_hint(token: &str) -> String {
    match token {
        "" => String::new(),
        token => format!("\nNext page: --page-token {token}"),
    }
}

/// The failures table, for `failures` and `issues`.
pub(super) fn failure_table(groups: &[proto::FailureGroup]) -> Table {
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
    for group in groups {
        table.add_row(failure_cells(group));
    }
    table
}

fn failure_cells(f: &proto::FailureGroup) -> Vec<String> {
    vec![
        type_label(f.integration_type).to_owned(),
        f.integration_name.clone(),
        f.failure_description.clone(),
        f.status_code.to_string(),
        f.service_name.clone(),
        f.flow_name.clone(),
        f.total_errors.to_string(),
        time_text(&f.last_seen),
        issue_text(&f.issue),
        f.failure_id.clone(),
    ]
}

pub(super) fn render_failures(
    response: &proto::ListFailuresResponse,
    tenant: &str,
    json: bool,
) -> String {
    if json {
        return pretty(json!({
            "failures": response.failures.iter().map(failure_json).collect::<Vec<_>>(),
            "next_page_token": response.next_page_token,
            "total_groups": response.total_groups,
            "effective_range": range_json(&response.effective_range),
            "granularity": granularity_name(response.granularity),
        }));
    }
    let table = failure_table(&response.failures);
    let mut out = format!(
        "{} failure groups, {}\n{table}",
        response.total_groups,
        served(&response.effective_range, response.granularity)
    );
    if let Some(first) = response.failures.first() {
        let _ = write!(
            out,
            "\nDetails: integration-health query failure {} --tenant {tenant}",
            first.failure_id
        );
    }
    out.push_str(&next_page_hint(&response.next_page_token));
    out
}

pub(super) fn render_details(response: &proto::GetFailureDetailsResponse, json: bool) -> String {
    let failure = response.failure.clone().unwrap_or_default();
    let guidance = response.guidance.clone().unwrap_or_default();
    if json {
        return pretty(json!({
            "failure": failure_json(&failure),
            "integration_id": response.integration_id,
            "service_id": response.service_id,
            "flow_id": response.flow_id,
            "guidance": {"applicable": guidance.applicable, "resolution": guidance.resolution},
            "hourly_trend": response.hourly_trend.iter().map(|p| json!({"bucket_start": time_text(&p.bucket_start), "failed": p.failed})).collect::<Vec<_>>(),
            "recent_samples": response.recent_samples.iter().map(|s| json!({"event_id": s.event_id, "occurred_at": time_text(&s.occurred_at), "error_message": s.error_message})).collect::<Vec<_>>(),
            "effective_range": range_json(&response.effective_range),
            "granularity": granularity_name(response.granularity),
        }));
    }
    let mut table = table(&["Field", "Value"]);
    let rows = [
        (
            "Integration type",
            type_label(failure.integration_type).to_owned(),
        ),
        (
            "Integration",
            format!("{} ({})", failure.integration_name, response.integration_id),
        ),
        ("Failure description", failure.failure_description.clone()),
        ("Status code", failure.status_code.to_string()),
        (
            "Service",
            format!("{} ({})", failure.service_name, response.service_id),
        ),
        (
            "Flow",
            format!("{} ({})", failure.flow_name, response.flow_id),
        ),
        ("Total errors", failure.total_errors.to_string()),
        ("First seen", time_text(&failure.first_seen)),
        ("Last seen", time_text(&failure.last_seen)),
    ];
    for (field, value) in rows {
        table.add_row(vec![field.to_owned(), value]);
    }
    let hourly: Vec<u64> = response.hourly_trend.iter().map(|p| p.failed).collect();
    let recent: Vec<u64> = hourly.iter().rev().take(72).rev().copied().collect();
    let mut out = format!("Failure {}\n{table}\n", failure.failure_id);
    let _ = writeln!(out, "How to fix: {}", guidance.resolution);
    let _ = writeln!(out, "Last 72 hours: {}", sparkline(&recent));
    let _ = writeln!(out, "Recent samples:");
    for s in &response.recent_samples {
        let _ = writeln!(
            out,
            "  {}  {}  {}",
            time_text(&s.occurred_at),
            s.event_id,
            s.error_message
        );
    }
    out
}

pub(super) fn render_catalog(response: &proto::ListCommonErrorsResponse, json: bool) -> String {
    if json {
        return pretty(json!({
            "errors": response.errors.iter().map(|e| json!({
                "status_code": e.status_code, "name": e.name, "description": e.description, "cataloged": e.cataloged,
                "class": class_name(e.class),
                "guidance": e.guidance.iter().map(|g| json!({
                    "integration_type": type_name(g.integration_type), "applicable": g.applicable, "resolution": g.resolution,
                })).collect::<Vec<_>>(),
            })).collect::<Vec<_>>(),
        }));
    }
    let mut table = table(&["Code", "Error", "Class", "Integration type", "Resolution"]);
    for e in &response.errors {
        for g in &e.guidance {
            let resolution = g.resolution.clone();
            table.add_row(vec![
                e.status_code.to_string(),
                e.name.clone(),
                class_name(e.class).to_owned(),
                type_label(g.integration_type).to_owned(),
                resolution,
            ]);
        }
    }
    table.to_string()
}

pub(super) fn render_status(response: &proto::GetIngestStatusResponse, json: bool) -> String {
    if json {
        return pretty(json!({
            "partitions": response.partitions.iter().map(|p| json!({
                "topic": p.topic, "partition": p.partition, "next_offset": p.next_offset,
                "high_watermark": p.high_watermark, "lag": p.lag,
                "snapshot_next_offset": p.snapshot_next_offset, "snapshot_age_seconds": p.snapshot_age_seconds,
                "snapshot_bytes": p.snapshot_bytes, "snapshot_encode_ms": p.snapshot_encode_ms,
                "snapshot_write_ms": p.snapshot_write_ms, "lost_offsets": p.lost_offsets,
            })).collect::<Vec<_>>(),
            "accepted": response.accepted, "rejected": response.rejected,
            "duplicates": response.duplicates, "late_dropped": response.late_dropped,
            "overflowed": response.overflowed, "lost_offsets": response.lost_offsets,
        }));
    }
    let mut table = table(&[
        "Topic",
        "Partition",
        "Next offset",
        "High watermark",
        "Lag",
        "Lost",
    ]);
    for p in response
        .partitions
        .iter()
        .chain(&response.upstream_partitions)
    {
        table.add_row(vec![
            p.topic.clone(),
            p.partition.to_string(),
            p.next_offset.to_string(),
            p.high_watermark.to_string(),
            p.lag.to_string(),
            p.lost_offsets.to_string(),
        ]);
    }
    let mut text = format!(
        "{table}\naccepted {}  rejected {}  duplicates {}  late dropped {}  overflowed {}",
        response.accepted,
        response.rejected,
        response.duplicates,
        response.late_dropped,
        response.overflowed
    );
    if response.lost_offsets > 0 {
        text.push_str(&format!(
            "\nlost offsets {}: events deleted from the log before they were read are not counted",
            response.lost_offsets
        ));
    }
    text
}

/// A class as docs/events.md names it: `auth`, `rate_limited`, …
fn class_name(class: i32) -> &'static str {
    match proto::ErrorClass::try_from(class) {
        Ok(proto::ErrorClass::Auth) => "auth",
        Ok(proto::ErrorClass::RateLimited) => "rate_limited",
        Ok(proto::ErrorClass::ProviderUnavailable) => "provider_unavailable",
        Ok(proto::ErrorClass::Config) => "config",
        Ok(proto::ErrorClass::Client) => "client",
        _ => "unknown",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sparkline_scales_to_the_peak_and_leaves_zeros_blank() {
        assert_eq!(sparkline(&[0, 1, 2, 4]), " ▃▅█");
        assert_eq!(sparkline(&[]), "");
    }
}
