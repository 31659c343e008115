//! `integration-health query`: a gRPC client for people (tables, bars, sparklines) and scripts
//! (`--json`).

use std::fmt::Write as _;

use clap::{Args, Subcommand, ValueEnum};
use comfy_table::{presets::UTF8_FULL_CONDENSED, Cell, CellAlignment, Table};
use prost_types::{Duration as ProtoDuration, Timestamp};
use serde_json::{json, Value};
use thiserror::Error;
use tonic::transport::Channel;
use tonic::Request;

use crate::api::{ms_to_timestamp, type_from, type_to};
use crate::event::IntegrationType;
use crate::proto;
use crate::proto::integration_health_client::IntegrationHealthClient;

#[derive(Debug, Error)]
pub enum CliError {
    #[error("cannot reach integration-health at {addr}: {source}. Is the service running (try `integration-health demo`)?")]
    Connect {
        addr: String,
        source: tonic::transport::Error,
    },
    #[error("the server answered {code:?}: {message}")]
    Status { code: tonic::Code, message: String },
    #[error("{0}")]
    Usage(String),
}

impl From<tonic::Status> for CliError {
    fn from(status: tonic::Status) -> Self {
        CliError::Status {
            code: status.code(),
            message: status.message().to_owned(),
        }
    }
}

#[derive(Debug, Args)]
pub struct QueryArgs {
    /// Address of the gRPC server.
    #[arg(
        long,
        env = "IH_ADDR",
        default_value = "http://127.0.0.1:50051",
        global = true
    )]
    pub addr: String,
    /// Bearer token, when the server requires one.
    #[arg(long, env = "IH_TOKEN", global = true, hide_env_values = true)]
    pub token: Option<String>,
    /// Print JSON instead of tables.
    #[arg(long, global = true)]
    pub json: bool,
    #[command(subcommand)]
    pub command: QueryCommand,
}

#[derive(Debug, Clone, Copy, ValueEnum)]
pub enum TypeArg {
    InboundWebhook,
    OutboundWebhook,
    PrebuiltIntegration,
    CustomNode,
    CustomEvent,
}

impl From<TypeArg> for IntegrationType {
    fn from(t: TypeArg) -> Self {
        match t {
            TypeArg::InboundWebhook => IntegrationType::InboundWebhook,
            TypeArg::OutboundWebhook => IntegrationType::OutboundWebhook,
            TypeArg::PrebuiltIntegration => IntegrationType::PrebuiltIntegration,
            TypeArg::CustomNode => IntegrationType::CustomNode,
            TypeArg::CustomEvent => IntegrationType::CustomEvent,
        }
    }
}

#[derive(Debug, Args)]
pub struct Scope {
    #[arg(long)]
    pub tenant: String,
    /// Start of the range (RFC 3339), or how far back from now: 90m, 24h, 7d.
    #[arg(long)]
    pub since: Option<String>,
    /// End of the range (RFC 3339); default now.
    #[arg(long)]
    pub until: Option<String>,
    /// Only these integration types (comma-separated).
    #[arg(long, value_delimiter = ',')]
    pub types: Vec<TypeArg>,
}

#[derive(Debug, Clone, Copy, ValueEnum)]
pub enum GranularityArg {
    Hour,
    Day,
}

#[derive(Debug, Clone, Copy, ValueEnum)]
pub enum OrderArg {
    Total,
    LastSeen,
}

#[derive(Debug, Subcommand)]
pub enum QueryCommand {
    /// Failed and successful transactions per integration type (the donut).
    Overview(Scope),
    /// Counts for a period against the period before it.
    Change {
        #[arg(long)]
        tenant: String,
        /// Period length: 1d, 7d, 30d, 12h ...
        #[arg(long, default_value = "1d")]
        period: String,
        /// End of the current period (RFC 3339); default now.
        #[arg(long)]
        end: Option<String>,
        #[arg(long, value_delimiter = ',')]
        types: Vec<TypeArg>,
    },
    /// Failures per status code.
    Errors(Scope),
    /// Failures per type per hour or day.
    Trends {
        #[command(flatten)]
        scope: Scope,
        #[arg(long, value_enum, default_value = "day")]
        granularity: GranularityArg,
        /// IANA time zone for day buckets.
        #[arg(long, default_value = "UTC")]
        tz: String,
    },
    /// The failures table.
    Failures {
        #[command(flatten)]
        scope: Scope,
        #[arg(long)]
        integration: Option<String>,
        #[arg(long)]
        code: Option<u32>,
        #[arg(long)]
        flow: Option<String>,
        #[arg(long)]
        service: Option<String>,
        #[arg(long, default_value_t = 20)]
        page_size: u32,
        #[arg(long)]
        page_token: Option<String>,
        #[arg(long, value_enum, default_value = "total")]
        order: OrderArg,
    },
    /// One failure group: guidance, hourly trend, recent samples.
    Failure {
        failure_id: String,
        #[arg(long)]
        tenant: String,
        #[arg(long)]
        since: Option<String>,
    },
    /// The catalog of common errors and their fixes.
    Catalog {
        #[arg(long = "type", value_enum)]
        integration_type: Option<TypeArg>,
        #[arg(long)]
        code: Option<u32>,
    },
    /// Consumer positions, lag and event totals.
    Status,
}

/// Parses `90m`, `24h`, `7d`, `2w` or plain seconds into milliseconds.
pub fn parse_span_ms(text: &str) -> Result<i64, CliError> {
    let bad = || CliError::Usage(format!("{text:?} is not a duration like 90m, 24h or 7d"));
    let text = text.trim();
    let split = text
        .find(|c: char| !c.is_ascii_digit())
        .unwrap_or(text.len());
    let (digits, unit) = text.split_at(split);
    let amount: i64 = digits.parse().map_err(|_| bad())?;
    let unit_ms = match unit {
        "" | "s" => 1_000,
        "m" => 60_000,
        "h" => 3_600_000,
        "d" => 86_400_000,
        "w" => 7 * 86_400_000,
        _ => return Err(bad()),
    };
    amount
        .checked_mul(unit_ms)
        .filter(|ms| *ms > 0)
        .ok_or_else(bad)
}

fn parse_instant(text: &str, now_ms: i64) -> Result<i64, CliError> {
    if let Ok(t) = chrono::DateTime::parse_from_rfc3339(text) {
        return Ok(t.timestamp_millis());
    }
    parse_span_ms(text)
        .map(|span| now_ms - span)
        .map_err(|_| CliError::Usage(format!("{text:?} is neither RFC 3339 nor a span like 7d")))
}

fn now_ms() -> i64 {
    chrono::Utc::now().timestamp_millis()
}

fn range_of(
    since: &Option<String>,
    until: &Option<String>,
) -> Result<Option<proto::TimeRange>, CliError> {
    let now = now_ms();
    let end = until
        .as_deref()
        .map(|u| parse_instant(u, now))
        .transpose()?;
    let start = since
        .as_deref()
        .map(|s| parse_instant(s, now))
        .transpose()?;
    Ok(match (start, end) {
        (None, None) => None,
        (start, end) => {
            let end = end.unwrap_or(now);
            let start = start.unwrap_or(end - 30 * 86_400_000);
            Some(proto::TimeRange {
                start: Some(ms_to_timestamp(start)),
                end: Some(ms_to_timestamp(end)),
            })
        }
    })
}

fn types_of(types: &[TypeArg]) -> Vec<i32> {
    types.iter().map(|t| type_to((*t).into())).collect()
}

fn request<T>(message: T, token: &Option<String>) -> Result<Request<T>, CliError> {
    let mut request = Request::new(message);
    if let Some(token) = token {
        let value = format!("Bearer {token}").parse().map_err(|_| {
            CliError::Usage("token contains characters not allowed in a header".into())
        })?;
        request.metadata_mut().insert("authorization", value);
    }
    Ok(request)
}

pub async fn run(args: QueryArgs) -> Result<String, CliError> {
    let channel = Channel::from_shared(args.addr.clone())
        .map_err(|_| {
            CliError::Usage(format!(
                "{:?} is not a URL like http://127.0.0.1:50051",
                args.addr
            ))
        })?
        .connect()
        .await
        .map_err(|source| CliError::Connect {
            addr: args.addr.clone(),
            source,
        })?;
    let mut client = IntegrationHealthClient::new(channel);
    let token = &args.token;
    let json = args.json;
    match args.command {
        QueryCommand::Overview(scope) => {
            let message = proto::GetOverviewRequest {
                tenant_id: scope.tenant.clone(),
                range: range_of(&scope.since, &scope.until)?,
                integration_types: types_of(&scope.types),
            };
            let response = client
                .get_overview(request(message, token)?)
                .await?
                .into_inner();
            Ok(render_overview(&response, json))
        }
        QueryCommand::Change {
            tenant,
            period,
            end,
            types,
        } => {
            let period_ms = parse_span_ms(&period)?;
            let message = proto::GetPercentageChangeRequest {
                tenant_id: tenant,
                period: Some(ProtoDuration {
                    seconds: period_ms / 1000,
                    nanos: ((period_ms % 1000) * 1_000_000) as i32,
                }),
                end: end
                    .map(|e| parse_instant(&e, now_ms()).map(ms_to_timestamp))
                    .transpose()?,
                integration_types: types_of(&types),
            };
            let response = client
                .get_percentage_change(request(message, token)?)
                .await?
                .into_inner();
            Ok(render_change(&response, json))
        }
        QueryCommand::Errors(scope) => {
            let message = proto::GetErrorBreakdownRequest {
                tenant_id: scope.tenant.clone(),
                range: range_of(&scope.since, &scope.until)?,
                integration_types: types_of(&scope.types),
            };
            let response = client
                .get_error_breakdown(request(message, token)?)
                .await?
                .into_inner();
            Ok(render_errors(&response, json))
        }
        QueryCommand::Trends {
            scope,
            granularity,
            tz,
        } => {
            let message = proto::GetTrendsRequest {
                tenant_id: scope.tenant.clone(),
                range: range_of(&scope.since, &scope.until)?,
                integration_types: types_of(&scope.types),
                granularity: match granularity {
                    GranularityArg::Hour => proto::Granularity::Hour as i32,
                    GranularityArg::Day => proto::Granularity::Day as i32,
                },
                time_zone: tz,
            };
            let response = client
                .get_trends(request(message, token)?)
                .await?
                .into_inner();
            Ok(render_trends(&response, json))
        }
        QueryCommand::Failures {
            scope,
            integration,
            code,
            flow,
            service,
            page_size,
            page_token,
            order,
        } => {
            let message = proto::ListFailuresRequest {
                tenant_id: scope.tenant.clone(),
                range: range_of(&scope.since, &scope.until)?,
                integration_types: types_of(&scope.types),
                integration_id: integration.unwrap_or_default(),
                status_code: code.unwrap_or(0),
                flow_id: flow.unwrap_or_default(),
                service_id: service.unwrap_or_default(),
                page_size,
                page_token: page_token.unwrap_or_default(),
                order_by: match order {
                    OrderArg::Total => proto::FailureOrder::TotalErrorsDesc as i32,
                    OrderArg::LastSeen => proto::FailureOrder::LastSeenDesc as i32,
                },
            };
            let response = client
                .list_failures(request(message, token)?)
                .await?
                .into_inner();
            Ok(render_failures(&response, &scope.tenant, json))
        }
        QueryCommand::Failure {
            failure_id,
            tenant,
            since,
        } => {
            let message = proto::GetFailureDetailsRequest {
                tenant_id: tenant,
                failure_id,
                range: range_of(&since, &None)?,
            };
            let response = client
                .get_failure_details(request(message, token)?)
                .await?
                .into_inner();
            Ok(render_details(&response, json))
        }
        QueryCommand::Catalog {
            integration_type,
            code,
        } => {
            let message = proto::ListCommonErrorsRequest {
                integration_type: integration_type.map_or(0, |t| type_to(t.into())),
                status_code: code.unwrap_or(0),
            };
            let response = client
                .list_common_errors(request(message, token)?)
                .await?
                .into_inner();
            Ok(render_catalog(&response, json))
        }
        QueryCommand::Status => {
            let message = proto::GetIngestStatusRequest {};
            let response = client
                .get_ingest_status(request(message, token)?)
                .await?
                .into_inner();
            Ok(render_status(&response, json))
        }
    }
}

fn type_name(value: i32) -> &'static str {
    type_from(value).map_or("unknown", |t| t.as_str())
}

fn type_label(value: i32) -> &'static str {
    type_from(value).map_or("unknown", |t| t.label())
}

fn time_text(t: &Option<Timestamp>) -> String {
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

fn range_text(range: &Option<proto::TimeRange>) -> String {
    match range {
        Some(r) => format!("{} → {}", time_text(&r.start), time_text(&r.end)),
        None => String::new(),
    }
}

fn pretty(value: Value) -> String {
    serde_json::to_string_pretty(&value).unwrap_or_default()
}

fn table(headers: &[&str]) -> Table {
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

fn render_overview(response: &proto::GetOverviewResponse, json: bool) -> String {
    if json {
        return pretty(json!({
            "types": response.types.iter().map(|t| json!({
                "integration_type": type_name(t.integration_type), "failed": t.failed, "succeeded": t.succeeded,
            })).collect::<Vec<_>>(),
            "effective_range": range_json(&response.effective_range),
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
        "Failures by integration type, {}\n{table}\nTotal failed: {total_failed}",
        range_text(&response.effective_range)
    )
}

fn percent_text(p: Option<f64>) -> String {
    match p {
        Some(p) => format!("{p:+.1}%"),
        None => "n/a (no previous)".into(),
    }
}

fn render_change(response: &proto::GetPercentageChangeResponse, json: bool) -> String {
    if json {
        return pretty(json!({
            "types": response.types.iter().map(|t| json!({
                "integration_type": type_name(t.integration_type),
                "failed_current": t.failed_current, "failed_previous": t.failed_previous,
                "failed_change_percent": t.failed_change_percent,
                "succeeded_current": t.succeeded_current, "succeeded_previous": t.succeeded_previous,
                "succeeded_change_percent": t.succeeded_change_percent,
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

fn render_errors(response: &proto::GetErrorBreakdownResponse, json: bool) -> String {
    if json {
        return pretty(json!({
            "errors": response.errors.iter().map(|e| json!({
                "status_code": e.status_code, "name": e.name, "failed": e.failed,
            })).collect::<Vec<_>>(),
            "effective_range": range_json(&response.effective_range),
        }));
    }
    let max = response
        .errors
        .iter()
        .map(|e| e.failed)
        .max()
        .unwrap_or(0)
        .max(1);
    let mut table = table(&["Code", "Error", "Failed", ""]);
    for e in &response.errors {
        table.add_row(vec![
            Cell::new(e.status_code),
            Cell::new(&e.name),
            Cell::new(e.failed).set_alignment(CellAlignment::Right),
            Cell::new(bar(e.failed as f64 / max as f64, 30)),
        ]);
    }
    format!(
        "Errors on integrations, {}\n{table}",
        range_text(&response.effective_range)
    )
}

fn render_trends(response: &proto::GetTrendsResponse, json: bool) -> String {
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
    })
}

fn render_failures(response: &proto::ListFailuresResponse, tenant: &str, json: bool) -> String {
    if json {
        return pretty(json!({
            "failures": response.failures.iter().map(failure_json).collect::<Vec<_>>(),
            "next_page_token": response.next_page_token,
            "total_groups": response.total_groups,
            "effective_range": range_json(&response.effective_range),
        }));
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
        "Failure id",
    ]);
    for f in &response.failures {
        table.add_row(vec![
            type_label(f.integration_type).to_owned(),
            f.integration_name.clone(),
            f.failure_description.clone(),
            f.status_code.to_string(),
            f.service_name.clone(),
            f.flow_name.clone(),
            f.total_errors.to_string(),
            time_text(&f.last_seen),
            f.failure_id.clone(),
        ]);
    }
    let mut out = format!(
        "{} failure groups, {}\n{table}",
        response.total_groups,
        range_text(&response.effective_range)
    );
    if let Some(first) = response.failures.first() {
        let _ = write!(
            out,
            "\nDetails: integration-health query failure {} --tenant {tenant}",
            first.failure_id
        );
    }
    if !response.next_page_token.is_empty() {
        let _ = write!(
            out,
            "\nNext page: --page-token {}",
            response.next_page_token
        );
    }
    out
}

fn render_details(response: &proto::GetFailureDetailsResponse, json: bool) -> String {
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
    let _ = writeln!(
        out,
        "How to fix{}: {}",
        if guidance.applicable {
            ""
        } else {
            " (not applicable per catalog)"
        },
        guidance.resolution
    );
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

fn render_catalog(response: &proto::ListCommonErrorsResponse, json: bool) -> String {
    if json {
        return pretty(json!({
            "errors": response.errors.iter().map(|e| json!({
                "status_code": e.status_code, "name": e.name, "description": e.description, "cataloged": e.cataloged,
                "guidance": e.guidance.iter().map(|g| json!({
                    "integration_type": type_name(g.integration_type), "applicable": g.applicable, "resolution": g.resolution,
                })).collect::<Vec<_>>(),
            })).collect::<Vec<_>>(),
        }));
    }
    let mut table = table(&["Code", "Error", "Integration type", "Resolution"]);
    for e in &response.errors {
        for g in &e.guidance {
            let resolution = if g.applicable {
                g.resolution.clone()
            } else {
                "Not applicable".to_owned()
            };
            table.add_row(vec![
                e.status_code.to_string(),
                e.name.clone(),
                type_label(g.integration_type).to_owned(),
                resolution,
            ]);
        }
    }
    table.to_string()
}

fn render_status(response: &proto::GetIngestStatusResponse, json: bool) -> String {
    if json {
        return pretty(json!({
            "partitions": response.partitions.iter().map(|p| json!({
                "topic": p.topic, "partition": p.partition, "next_offset": p.next_offset,
                "high_watermark": p.high_watermark, "lag": p.lag,
                "snapshot_next_offset": p.snapshot_next_offset, "snapshot_age_seconds": p.snapshot_age_seconds,
                "snapshot_bytes": p.snapshot_bytes, "snapshot_encode_ms": p.snapshot_encode_ms,
                "snapshot_write_ms": p.snapshot_write_ms,
            })).collect::<Vec<_>>(),
            "accepted": response.accepted, "rejected": response.rejected,
            "duplicates": response.duplicates, "late_dropped": response.late_dropped,
            "overflowed": response.overflowed,
        }));
    }
    let mut table = table(&["Topic", "Partition", "Next offset", "High watermark", "Lag"]);
    for p in &response.partitions {
        table.add_row(vec![
            p.topic.clone(),
            p.partition.to_string(),
            p.next_offset.to_string(),
            p.high_watermark.to_string(),
            p.lag.to_string(),
        ]);
    }
    format!(
        "{table}\naccepted {}  rejected {}  duplicates {}  late dropped {}  overflowed {}",
        response.accepted,
        response.rejected,
        response.duplicates,
        response.late_dropped,
        response.overflowed
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn spans_parse_with_units() {
        assert_eq!(parse_span_ms("90m").unwrap(), 90 * 60_000);
        assert_eq!(parse_span_ms("7d").unwrap(), 7 * 86_400_000);
        assert_eq!(parse_span_ms("30").unwrap(), 30_000);
        assert!(parse_span_ms("7x").is_err());
        assert!(parse_span_ms("d").is_err());
        assert!(parse_span_ms("0h").is_err());
        assert!(parse_span_ms("99999999999999999d").is_err());
    }

    #[test]
    fn sparkline_scales_to_the_peak_and_leaves_zeros_blank() {
        assert_eq!(sparkline(&[0, 1, 2, 4]), " ▃▅█");
        assert_eq!(sparkline(&[]), "");
    }
}
