//! `integration-health query`: a gRPC client for people (tables, bars, sparklines) and scripts
//! (`--json`).

use clap::Args;
use integration_health::api::convert::{ms_to_duration, ms_to_timestamp, type_to_wire};
use integration_health::proto;
use integration_health::proto::integration_health_client::IntegrationHealthClient;
use integration_health::query::{FailureOrder, Granularity};
use std::path::PathBuf;
use thiserror::Error;

use tonic::transport::{Certificate, Channel, ClientTlsConfig, Identity};
use tonic::Request;

mod args;
mod render;

pub use args::*;
use render::*;

mod health;
mod issues;
mod rules;

#[derive(Debug, Error)]
pub enum CliError {
    #[error("cannot reach integration-health at {addr}. Is the service running (try `integration-health demo`)?")]
    Connect {
        addr: String,
        source: tonic::transport::Error,
    },
    #[error("the server answered {code:?}: {message}")]
    Status { code: tonic::Code, message: String },
    #[error("{0}")]
    Usage(String),
    #[error("{0}")]
    NotDelivered(String),
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
    /// With replicas: accept an answer that lacks partitions whose owner cannot be reached.
    #[arg(long, global = true)]
    pub allow_partial: bool,
    /// PEM CA that signed the server's certificate (default: the system's roots, for https).
    #[arg(long, env = "IH_TLS_CA", global = true)]
    pub tls_ca: Option<PathBuf>,
    /// PEM client certificate, for a server that requires one (mTLS); with --tls-key.
    #[arg(long, env = "IH_TLS_CLIENT_CERT", global = true, requires = "tls_key")]
    pub tls_cert: Option<PathBuf>,
    #[arg(long, env = "IH_TLS_CLIENT_KEY", global = true, requires = "tls_cert")]
    pub tls_key: Option<PathBuf>,
    #[command(subcommand)]
    pub command: QueryCommand,
}

impl QueryArgs {
    fn uses_tls(&self) -> bool {
        self.addr.starts_with("https://") || self.tls_ca.is_some() || self.tls_cert.is_some()
    }

    fn tls_config(&self) -> Result<ClientTlsConfig, CliError> {
        let read = |path: &PathBuf| {
            std::fs::read(path)
                .map_err(|err| CliError::Usage(format!("cannot read {}: {err}", path.display())))
        };
        let mut tls = ClientTlsConfig::new();
        tls = match &self.tls_ca {
            Some(ca) => tls.ca_certificate(Certificate::from_pem(read(ca)?)),
            None => tls.with_native_roots(),
        };
        if let (Some(cert), Some(key)) = (&self.tls_cert, &self.tls_key) {
            tls = tls.identity(Identity::from_pem(read(cert)?, read(key)?));
        }
        Ok(tls)
    }

    /// A channel to `addr`, over TLS when the address is `https://` or TLS files are given.
    async fn connect(&self) -> Result<Channel, CliError> {
        let addr = if self.uses_tls() {
            self.addr.replacen("http://", "https://", 1)
        } else {
            self.addr.clone()
        };
        let mut endpoint = Channel::from_shared(addr.clone()).map_err(|_| {
            CliError::Usage(format!(
                "{:?} is not a URL like http://127.0.0.1:50051",
                self.addr
            ))
        })?;
        if self.uses_tls() {
            endpoint =
                endpoint
                    .tls_config(self.tls_config()?)
                    .map_err(|source| CliError::Connect {
                        addr: addr.clone(),
                        source,
                    })?;
        }
        endpoint
            .connect()
            .await
            .map_err(|source| CliError::Connect { addr, source })
    }
}

/// A snooze's end: a span from now (4h) or an RFC 3339 time.
fn snooze_until(text: &str) -> Result<i64, CliError> {
    match parse_span_ms(text) {
        Ok(span) => Ok(now_ms() + span),
        Err(_) => parse_instant(text, now_ms()),
    }
}

/// Parses `90m`, `24h`, `7d`, `2w` or plain seconds into milliseconds.
pub fn parse_span_ms(text: &str) -> Result<i64, CliError> {
    let bad = || {
        CliError::Usage(format!(
            "{text:?} is not a duration like 90m, 24h, 7d, 90d or 1y"
        ))
    };
    let text = text.trim();
    let split = text
        .find(|c: char| !c.is_ascii_digit())
        .unwrap_or(text.len());
    let (digits, unit) = text.split_at(split);
    let amount: i64 = digits.parse().map_err(|_| bad())?;
    let unit_ms = match unit {
        "ms" => 1,
        "" | "s" => 1_000,
        "m" => 60_000,
        "h" => 3_600_000,
        "d" => 86_400_000,
        "w" => 7 * 86_400_000,
        "y" => 365 * 86_400_000,
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

/// Runs one query and renders the answer. Tables go to a terminal, so control characters in
/// any value are shown escaped rather than obeyed; JSON escapes them itself.
pub async fn run(args: QueryArgs) -> Result<String, CliError> {
    let json = args.json;
    let rendered = ask(args).await?;
    Ok(if json {
        rendered
    } else {
        escape_controls(&rendered)
    })
}

/// Every control character but the newline, and every bidirectional control, written as an
/// escape.
pub fn escape_controls(text: &str) -> String {
    text.chars()
        .map(|c| match c {
            '\n' => c.to_string(),
            c if c.is_control() || integration_health::event::is_bidi_control(c) => {
                c.escape_default().to_string()
            }
            c => c.to_string(),
        })
        .collect()
}

async fn ask(args: QueryArgs) -> Result<String, CliError> {
    let mut client = IntegrationHealthClient::new(args.connect().await?);
    let allow_partial = args.allow_partial;
    let token = &args.token;
    let json = args.json;
    match args.command {
        QueryCommand::Overview(scope) => {
            let message = proto::GetOverviewRequest {
                allow_partial,
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
            drivers,
        } => {
            let period_ms = parse_span_ms(&period)?;
            let message = proto::GetPercentageChangeRequest {
                allow_partial,
                tenant_id: tenant,
                period: Some(ms_to_duration(period_ms)),
                end: end
                    .map(|e| parse_instant(&e, now_ms()).map(ms_to_timestamp))
                    .transpose()?,
                integration_types: types_of(&types),
                include_drivers: drivers,
            };
            let response = client
                .get_percentage_change(request(message, token)?)
                .await?
                .into_inner();
            if json {
                return Ok(render_change(&response, true));
            }
            Ok(render_change(&response, false) + &health::render_drivers(&response))
        }
        QueryCommand::Errors(scope) => {
            let message = proto::GetErrorBreakdownRequest {
                allow_partial,
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
            classes,
        } => {
            let message = proto::GetTrendsRequest {
                allow_partial,
                tenant_id: scope.tenant.clone(),
                range: range_of(&scope.since, &scope.until)?,
                integration_types: types_of(&scope.types),
                granularity: proto::Granularity::from(Granularity::from(granularity)) as i32,
                time_zone: tz,
                classes: classes.to_wire(),
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
            classes,
            page_size,
            page_token,
            order,
        } => {
            let message = proto::ListFailuresRequest {
                allow_partial,
                tenant_id: scope.tenant.clone(),
                range: range_of(&scope.since, &scope.until)?,
                integration_types: types_of(&scope.types),
                integration_id: integration.unwrap_or_default(),
                status_code: code.unwrap_or(0),
                flow_id: flow.unwrap_or_default(),
                service_id: service.unwrap_or_default(),
                page_size,
                page_token: page_token.unwrap_or_default(),
                order_by: proto::FailureOrder::from(FailureOrder::from(order)) as i32,
                classes: classes.to_wire(),
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
                allow_partial,
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
                integration_type: integration_type.map_or(0, |t| type_to_wire(t.into())),
                status_code: code.unwrap_or(0),
            };
            let response = client
                .list_common_errors(request(message, token)?)
                .await?
                .into_inner();
            Ok(render_catalog(&response, json))
        }
        QueryCommand::Integrations {
            scope,
            classes,
            order,
            page_size,
            page_token,
        } => {
            let message = proto::ListIntegrationsRequest {
                allow_partial,
                tenant_id: scope.tenant.clone(),
                range: range_of(&scope.since, &scope.until)?,
                integration_types: types_of(&scope.types),
                order_by: proto::IntegrationOrder::from(order) as i32,
                page_size,
                page_token: page_token.unwrap_or_default(),
                classes: classes.to_wire(),
            };
            let response = client
                .list_integrations(request(message, token)?)
                .await?
                .into_inner();
            Ok(health::render_integrations(&response, json))
        }
        QueryCommand::Integration {
            integration_id,
            tenant,
            integration_type,
            since,
            granularity,
            tz,
        } => {
            let message = proto::GetIntegrationHealthRequest {
                allow_partial,
                tenant_id: tenant,
                integration_id,
                integration_type: integration_type.map_or(0, |t| type_to_wire(t.into())),
                range: range_of(&since, &None)?,
                granularity: proto::Granularity::from(Granularity::from(granularity)) as i32,
                time_zone: tz,
            };
            let response = client
                .get_integration_health(request(message, token)?)
                .await?
                .into_inner();
            Ok(health::render_integration(&response, json))
        }
        QueryCommand::Watch { tenant, interval } => {
            let message = proto::WatchTenantRequest {
                tenant_id: tenant,
                min_interval: Some(ms_to_duration(parse_span_ms(&interval)?)),
            };
            health::watch(&mut client, request(message, token)?, json).await
        }
        QueryCommand::Issues {
            scope,
            state,
            code,
            classes,
            page_size,
            page_token,
        } => {
            let message = proto::ListIssuesRequest {
                allow_partial,
                tenant_id: scope.tenant.clone(),
                range: range_of(&scope.since, &scope.until)?,
                states: state
                    .into_iter()
                    .map(|s| proto::IssueState::from(s) as i32)
                    .collect(),
                integration_types: types_of(&scope.types),
                status_code: code.unwrap_or(0),
                page_size,
                page_token: page_token.unwrap_or_default(),
                order_by: 0,
                classes: classes.to_wire(),
            };
            let response = client
                .list_issues(request(message, token)?)
                .await?
                .into_inner();
            Ok(issues::render_issues(&response, json))
        }
        QueryCommand::Issue {
            action,
            failure_id,
            tenant,
            actor,
            note,
            snooze,
        } => {
            let message = proto::UpdateIssueRequest {
                tenant_id: tenant,
                failure_id,
                action: proto::IssueAction::from(action) as i32,
                actor,
                note,
                snooze_until: snooze
                    .map(|s| snooze_until(&s).map(ms_to_timestamp))
                    .transpose()?,
            };
            let response = client
                .update_issue(request(message, token)?)
                .await?
                .into_inner();
            Ok(issues::render_update(&response, json))
        }
        QueryCommand::Alerts {
            action:
                Some(AlertsAction::Test {
                    destination,
                    tenant,
                }),
            ..
        } => {
            let message = proto::TestAlertDestinationRequest {
                destination,
                tenant_id: tenant.unwrap_or_default(),
            };
            let response = client
                .test_alert_destination(request(message, token)?)
                .await?
                .into_inner();
            issues::render_test_send(&response, json)
        }
        QueryCommand::Alerts {
            action:
                Some(AlertsAction::DeadLetters {
                    tenant,
                    since,
                    limit,
                }),
            ..
        } => {
            let message = proto::ListAlertDeadLettersRequest {
                tenant_id: tenant,
                since: since
                    .map(|s| parse_instant(&s, now_ms()).map(ms_to_timestamp))
                    .transpose()?,
                limit: limit.unwrap_or_default(),
            };
            let response = client
                .list_alert_dead_letters(request(message, token)?)
                .await?
                .into_inner();
            Ok(issues::render_dead_letters(&response, json))
        }
        QueryCommand::Alerts {
            action: None,
            tenant,
            watch,
        } => {
            let tenant_id = tenant.unwrap_or_default();
            if watch {
                let message = proto::WatchAlertsRequest { tenant_id };
                return issues::watch_alerts(&mut client, request(message, token)?, json).await;
            }
            let message = proto::ListAlertsRequest {
                tenant_id,
                resolved_within: None,
            };
            let response = client
                .list_alerts(request(message, token)?)
                .await?
                .into_inner();
            Ok(issues::render_alerts(&response, json))
        }
        QueryCommand::Rules(args) => rules::list(&mut client, args, token, json).await,
        QueryCommand::Rule(args) => rules::set(&mut client, args, token, json).await,
        QueryCommand::Tenants { since, until } => {
            let message = proto::ListTenantsRequest {
                allow_partial,
                range: range_of(&since, &until)?,
            };
            let response = client
                .list_tenants(request(message, token)?)
                .await?
                .into_inner();
            Ok(render_tenants(&response, json))
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn control_characters_are_shown_escaped() {
        let shown = escape_controls("a\u{1b}[2J b\u{7}\nnext\u{9b}");
        assert_eq!(shown, "a\\u{1b}[2J b\\u{7}\nnext\\u{9b}");
        let reordered = escape_controls("ana\u{202e}txt.exe");
        assert_eq!(reordered, "ana\\u{202e}txt.exe");
    }

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
}
