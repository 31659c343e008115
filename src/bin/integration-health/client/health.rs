//! `query integrations`, `query integration <id>` and `query watch`: integration health in
//! tables with sparklines and percentiles, or as JSON in the proto3 mapping.

use comfy_table::{Cell, CellAlignment};
use integration_health::proto;
use integration_health::proto::integration_health_client::IntegrationHealthClient;
use tokio_stream::StreamExt;
use tonic::transport::Channel;

use super::render::{next_page_hint, proto_json, served, sparkline, table, time_text, type_label};
use super::{escape_controls, CliError};

fn latency_text(latency: &Option<proto::Latency>) -> [String; 3] {
    match latency {
        Some(l) => [l.p50_ms, l.p95_ms, l.p99_ms].map(|ms| format!("{ms:.0} ms")),
        None => ["—".into(), "—".into(), "—".into()],
    }
}

pub(super) fn render_integrations(
    response: &proto::ListIntegrationsResponse,
    json: bool,
) -> String {
    if json {
        return proto_json(response);
    }
    let mut table = table(&[
        "Type",
        "Integration",
        "Failed",
        "Retried",
        "Recovered",
        "Succeeded",
        "Failure rate",
        "p50",
        "p95",
        "p99",
        "Top code",
        "Last failure",
        "Daily failures",
    ]);
    for row in &response.integrations {
        let [p50, p95, p99] = latency_text(&row.latency);
        let daily: Vec<u64> = row.daily_failures.iter().map(|d| d.failed).collect();
        table.add_row(vec![
            Cell::new(type_label(row.integration_type)),
            Cell::new(format!("{} ({})", row.integration_name, row.integration_id)),
            Cell::new(failed_text(row)).set_alignment(CellAlignment::Right),
            Cell::new(row.retried_failures).set_alignment(CellAlignment::Right),
            Cell::new(row.recovered_failures).set_alignment(CellAlignment::Right),
            Cell::new(row.succeeded).set_alignment(CellAlignment::Right),
            Cell::new(format!("{:.2}%", row.failure_rate * 100.0))
                .set_alignment(CellAlignment::Right),
            Cell::new(p50).set_alignment(CellAlignment::Right),
            Cell::new(p95).set_alignment(CellAlignment::Right),
            Cell::new(p99).set_alignment(CellAlignment::Right),
            Cell::new(match row.top_error_code {
                0 => "—".to_owned(),
                code => code.to_string(),
            }),
            Cell::new(
                row.last_failure
                    .as_ref()
                    .map_or("—".into(), |t| time_text(&Some(*t))),
            ),
            Cell::new(sparkline(&daily)),
        ]);
    }
    let next = next_page_hint(&response.next_page_token);
    format!(
        "{} integrations, {}\n{table}{next}",
        response.total_integrations,
        served(&response.effective_range, response.granularity)
    )
}

/// The row's failures; with a class filter, those of the classes out of all of them.
fn failed_text(row: &proto::IntegrationSummary) -> String {
    match row.class_failures {
        Some(of_classes) => format!("{of_classes} of {}", row.failed),
        None => row.failed.to_string(),
    }
}

pub(super) fn render_integration(
    response: &proto::GetIntegrationHealthResponse,
    json: bool,
) -> String {
    if json {
        return proto_json(response);
    }
    let Some(summary) = &response.integration else {
        return String::new();
    };
    let [p50, p95, p99] = latency_text(&summary.latency);
    let failed: Vec<u64> = response.series.iter().map(|p| p.failed).collect();
    let volume: Vec<u64> = response
        .series
        .iter()
        .map(|p| p.failed + p.succeeded)
        .collect();
    let p99_series: Vec<u64> = response
        .series
        .iter()
        .map(|p| p.latency.as_ref().map_or(0, |l| l.p99_ms.round() as u64))
        .collect();
    let mut codes = table(&["Code", "Error", "Failed"]);
    for code in &response.error_codes {
        codes.add_row(vec![
            Cell::new(code.status_code),
            Cell::new(&code.name),
            Cell::new(code.failed).set_alignment(CellAlignment::Right),
        ]);
    }
    let mut groups = table(&["Failure id", "Description", "Code", "Errors", "Last seen"]);
    for group in &response.top_failures {
        groups.add_row(vec![
            Cell::new(&group.failure_id),
            Cell::new(&group.failure_description),
            Cell::new(group.status_code),
            Cell::new(group.total_errors).set_alignment(CellAlignment::Right),
            Cell::new(time_text(&group.last_seen)),
        ]);
    }
    format!(
        "{} ({}), {}, {}\n\
         {} failed, {} succeeded, failure rate {:.2}%; latency p50 {p50}, p95 {p95}, p99 {p99}\n\
         volume   {}\nfailures {}\np99      {}\n\nError codes\n{codes}\n\nTop failure groups (query failure <id>)\n{groups}",
        summary.integration_name,
        summary.integration_id,
        type_label(summary.integration_type),
        served(&response.effective_range, response.granularity),
        summary.failed,
        summary.succeeded,
        summary.failure_rate * 100.0,
        sparkline(&volume),
        sparkline(&failed),
        sparkline(&p99_series),
    )
}

/// What drove each type's change in failures, when the answer carries it.
pub(super) fn render_drivers(response: &proto::GetPercentageChangeResponse) -> String {
    let mut out = String::new();
    for t in response
        .types
        .iter()
        .filter(|t| t.other_integrations.is_some())
    {
        let mut table = table(&["Driver", "Now", "Before", "Change"]);
        let rows = t
            .integration_drivers
            .iter()
            .map(|d| (format!("integration {} ({})", d.name, d.key), d))
            .chain(
                t.other_integrations
                    .iter()
                    .map(|d| ("other integrations".to_owned(), d)),
            )
            .chain(
                t.code_drivers
                    .iter()
                    .map(|d| (format!("code {} {}", d.key, d.name), d)),
            )
            .chain(t.other_codes.iter().map(|d| ("other codes".to_owned(), d)));
        for (label, d) in rows {
            table.add_row(vec![
                Cell::new(label),
                Cell::new(d.current).set_alignment(CellAlignment::Right),
                Cell::new(d.previous).set_alignment(CellAlignment::Right),
                Cell::new(format!("{:+}", d.change)).set_alignment(CellAlignment::Right),
            ]);
        }
        out.push_str(&format!(
            "\n\nWhat drove {} failures ({:+})\n{table}",
            type_label(t.integration_type),
            t.failed_current as i64 - t.failed_previous as i64
        ));
    }
    out
}

/// Prints each update as it arrives, until the stream ends or ctrl-c.
pub(super) async fn watch(
    client: &mut IntegrationHealthClient<Channel>,
    request: tonic::Request<proto::WatchTenantRequest>,
    json: bool,
) -> Result<String, CliError> {
    let mut updates = client.watch_tenant(request).await?.into_inner();
    while let Some(update) = updates.next().await {
        let update = update?;
        let line = if json {
            serde_json::to_string(&update).unwrap_or_default()
        } else {
            escape_controls(&format!(
                "version {}: {} events, {} failures; changed: {}",
                update.version,
                update.events,
                update.failures,
                update.changed_sections.join(", ")
            ))
        };
        println!("{line}");
    }
    Ok("the service ended the watch".to_owned())
}
