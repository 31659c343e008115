//! The dashboard in a real browser: Debian's Chromium, headless, driven by Playwright
//! (tests/browser/dashboard.py), against the whole service fed through the mock cluster. Every
//! number the page shows is checked against the gRPC answer to the very request the page sent.

use crate::common;
use crate::dashboard_live;

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::time::Duration;

use common::harness::TestService;
use common::*;
use integration_health::clock::ManualClock;
use integration_health::config::TokenGrant;
use integration_health::proto;
use serde::de::DeserializeOwned;
use serde_json::Value;
use tonic::Request;

const TOPIC: &str = "dashboard-events";
pub(crate) const TOKEN: &str = "dashboard-reader";
/// A token that may read acme and nothing more.
const VIEWER: &str = "dashboard-viewer";
const CHROMIUM: &str = "/usr/bin/chromium";

/// The test venv's Python with Playwright in it, and Debian's Chromium, installing either when
/// missing (`.ci/run` installs both first, which keeps this out of the test's time).
fn browser_driver() -> PathBuf {
    if !std::path::Path::new(CHROMIUM).exists() {
        let installed = Command::new("sh")
            .args(["-c", "apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium"])
            .status()
            .expect("apt-get runs");
        assert!(
            installed.success(),
            "cannot install Debian's chromium package (needs root)"
        );
    }
    let venv = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("target/test-venv");
    let python = venv.join("bin/python");
    let has_playwright = python.exists()
        && Command::new(&python)
            .args(["-c", "import playwright.sync_api"])
            .status()
            .is_ok_and(|s| s.success());
    if !has_playwright {
        if !python.exists() {
            let made = Command::new("python3")
                .args(["-m", "venv"])
                .arg(&venv)
                .status()
                .expect("python3 runs");
            assert!(made.success(), "cannot make the test venv");
        }
        let installed = Command::new(venv.join("bin/pip"))
            .args(["install", "--quiet", "playwright==1.49.1"])
            .status()
            .expect("pip runs");
        assert!(installed.success(), "cannot install playwright from PyPI");
    }
    python
}

pub(crate) fn authorized<T>(message: T) -> Request<T> {
    let mut request = Request::new(message);
    let value = format!("Bearer {TOKEN}").parse().expect("header");
    request.metadata_mut().insert("authorization", value);
    request
}

/// A request the page sent, as the message gRPC takes.
pub(crate) fn sent<T: DeserializeOwned>(scrape: &Value, method: &str) -> T {
    let body = scrape["calls"][method]
        .as_str()
        .unwrap_or_else(|| panic!("the page called {method}"));
    serde_json::from_str(body).unwrap_or_else(|err| panic!("{method} body {body}: {err}"))
}

fn type_name(t: i32) -> &'static str {
    proto::IntegrationType::try_from(t)
        .expect("known type")
        .as_str_name()
}

async fn check_overview(api: &mut Api, scrape: &Value) -> u64 {
    let answer = api
        .get_overview(authorized(sent::<proto::GetOverviewRequest>(
            scrape,
            "GetOverview",
        )))
        .await
        .expect("overview")
        .into_inner();
    let total: u64 = answer.types.iter().map(|t| t.failed).sum();
    for t in &answer.types {
        let shown = &scrape["overview"][type_name(t.integration_type)];
        assert_eq!(shown["failed"].as_u64(), Some(t.failed), "{shown}");
        assert_eq!(shown["succeeded"].as_u64(), Some(t.succeeded), "{shown}");
        let share = format!("{:.1}%", t.failed as f64 * 100.0 / total as f64);
        assert_eq!(shown["share"].as_str(), Some(share.as_str()));
    }
    assert_eq!(scrape["overview_total"].as_u64(), Some(total));
    let class_total: u64 = answer.classes.iter().map(|c| c.failed).sum();
    assert_eq!(class_total, total, "each failure in one class");
    for c in &answer.classes {
        let name = class_name(c.class);
        let shown = &scrape["overview_classes"][name];
        assert_eq!(shown["failed"].as_u64(), Some(c.failed), "{name}: {shown}");
        let share = format!("{:.1}%", c.failed as f64 * 100.0 / total as f64);
        assert_eq!(shown["share"].as_str(), Some(share.as_str()), "{name}");
    }
    total
}

fn class_name(class: i32) -> &'static str {
    proto::ErrorClass::try_from(class)
        .expect("known class")
        .as_str_name()
}

/// The failures table kept to one class: the page asked for that class, shows what the API
/// answers to its request, and every row's code is of the class; the class's button beside
/// the donut is pressed exactly when the filter is on.
async fn check_class_filter(api: &mut Api, scrape: &Value, class: Option<proto::ErrorClass>) {
    let request: proto::ListFailuresRequest = sent(scrape, "ListFailures");
    let wanted: Vec<i32> = class.iter().map(|c| *c as i32).collect();
    assert_eq!(request.classes, wanted, "the page asked for the class");
    let name = class.map_or("", |c| c.as_str_name());
    assert_eq!(scrape["failure_class"].as_str(), Some(name));
    for (shown, row) in scrape["overview_classes"].as_object().expect("classes") {
        assert_eq!(row["pressed"].as_bool(), Some(shown == name), "{shown}");
    }
    let answer = api
        .list_failures(authorized(request))
        .await
        .expect("failures")
        .into_inner();
    let shown = scrape["failures"].as_array().expect("rows");
    let ids: Vec<&str> = shown.iter().filter_map(|r| r["id"].as_str()).collect();
    let expected: Vec<&str> = answer
        .failures
        .iter()
        .map(|f| f.failure_id.as_str())
        .collect();
    assert_eq!(ids, expected);
    assert!(!ids.is_empty(), "{name} has failures to show");
    for row in shown.iter().filter(|_| class.is_some()) {
        let code = row["code"].as_u64().expect("a code") as u16;
        assert_eq!(class_by_the_docs(code), name, "{row}");
    }
}

async fn check_change(api: &mut Api, scrape: &Value) -> Vec<u64> {
    let request: proto::GetPercentageChangeRequest = sent(scrape, "GetPercentageChange");
    let answer = api
        .get_percentage_change(authorized(request))
        .await
        .expect("change")
        .into_inner();
    let number = |v: &Value| v.as_str().and_then(|s| s.parse::<f64>().ok());
    for t in &answer.types {
        let shown = &scrape["change"][type_name(t.integration_type)];
        for (field, value) in [
            ("failed_current", t.failed_current),
            ("failed_previous", t.failed_previous),
            ("succeeded_current", t.succeeded_current),
            ("succeeded_previous", t.succeeded_previous),
        ] {
            assert_eq!(
                number(&shown[field]),
                Some(value as f64),
                "{field}: {shown}"
            );
        }
        for (field, percent) in [
            ("failed_change", t.failed_change_percent),
            ("succeeded_change", t.succeeded_change_percent),
        ] {
            assert_eq!(number(&shown[field]), percent, "{field}: {shown}");
        }
    }
    answer.types.iter().map(|t| t.failed_current).collect()
}

async fn check_errors(api: &mut Api, scrape: &Value) -> BTreeMap<String, u64> {
    let answer = api
        .get_error_breakdown(authorized(sent::<proto::GetErrorBreakdownRequest>(
            scrape,
            "GetErrorBreakdown",
        )))
        .await
        .expect("errors")
        .into_inner();
    let expected: BTreeMap<String, u64> = answer
        .errors
        .iter()
        .map(|e| (e.status_code.to_string(), e.failed))
        .collect();
    let shown: BTreeMap<String, u64> =
        serde_json::from_value(scrape["errors"].clone()).expect("codes");
    assert_eq!(shown, expected);
    expected
}

async fn check_trends(api: &mut Api, scrape: &Value, granularity: proto::Granularity) {
    let request: proto::GetTrendsRequest = sent(scrape, "GetTrends");
    assert_eq!(request.granularity, granularity as i32);
    assert_eq!(request.time_zone, "America/New_York", "the browser's zone");
    let answer = api
        .get_trends(authorized(request))
        .await
        .expect("trends")
        .into_inner();
    let mut expected: BTreeMap<String, BTreeMap<String, f64>> = BTreeMap::new();
    for series in &answer.series {
        for point in &series.points {
            let bucket = serde_json::to_value(point).expect("json")["bucketStart"]
                .as_str()
                .expect("bucket")
                .to_owned();
            expected.entry(bucket).or_default().insert(
                type_name(series.integration_type).to_owned(),
                point.failed as f64,
            );
        }
    }
    let shown: BTreeMap<String, BTreeMap<String, f64>> =
        serde_json::from_value(scrape["trends"].clone()).expect("trend table");
    assert_eq!(shown.len(), expected.len(), "one row per bucket");
    assert_eq!(shown, expected);
}

/// A year of overview, errors, trends and integrations and a quarter of change and failures:
/// the API's numbers, served in whole UTC days, and more than a week holds.
async fn check_long_views(api: &mut Api, long: &Value, week_total: u64) {
    let year_total = check_overview(api, long).await;
    assert!(
        year_total > week_total,
        "{year_total} over a year, {week_total} over 7 days"
    );
    check_change(api, long).await;
    check_errors(api, long).await;
    check_trends(api, long, proto::Granularity::Day).await;
    check_integrations(api, long).await;
    check_failures(api, long, &[]).await;
    for section in ["overview", "errors", "integrations"] {
        let text = long["ranges"][section].as_str().unwrap_or_default();
        assert!(text.contains("in whole UTC days"), "{section}: {text}");
    }
    let trends = long["ranges"]["trends"].as_str().unwrap_or_default();
    assert!(
        trends.contains("UTC days"),
        "local days past the hours say so: {trends}"
    );
}

/// An issue's state as the page words it: "Acknowledged by ana (via grant-1)".
pub(crate) fn issue_text(issue: &proto::Issue) -> String {
    let state = proto::IssueState::try_from(issue.state).expect("state");
    let name = state.as_str_name();
    let mut shown = format!("{}{}", &name[..1], name[1..].to_lowercase());
    if issue.auto_resolved {
        shown.push_str(" (auto)");
    } else if !issue.actor.is_empty() {
        shown = format!("{shown} by {} (via {})", issue.actor, issue.actor_grant);
        assert!(!issue.actor_grant.is_empty(), "the grant's name is shown");
    }
    shown
}

/// `acted_on` were acted on after the scrape: their issues are checked on their own.
async fn check_failures(api: &mut Api, scrape: &Value, acted_on: &[&str]) {
    let answer = api
        .list_failures(authorized(sent::<proto::ListFailuresRequest>(
            scrape,
            "ListFailures",
        )))
        .await
        .expect("failures")
        .into_inner();
    let shown = scrape["failures"].as_array().expect("rows");
    assert_eq!(shown.len(), answer.failures.len());
    for (row, failure) in shown.iter().zip(&answer.failures) {
        assert_eq!(row["id"].as_str(), Some(failure.failure_id.as_str()));
        assert_eq!(row["total_errors"].as_u64(), Some(failure.total_errors));
        assert_eq!(
            row["description"].as_str(),
            Some(failure.failure_description.as_str())
        );
        assert!(row["buttons"].as_u64() > Some(0), "a writer may act: {row}");
        let issue = failure.issue.as_ref().expect("the service keeps issues");
        if acted_on.contains(&failure.failure_id.as_str()) {
            continue;
        }
        assert_eq!(row["issue"].as_str(), Some(issue_text(issue).as_str()));
        assert_eq!(
            dashboard_live::shown_ms(&row["acted_at"]),
            dashboard_live::timestamp_ms(&issue.acted_at),
            "{row}"
        );
    }
}

async fn check_integrations(api: &mut Api, scrape: &Value) {
    let answer = api
        .list_integrations(authorized(sent::<proto::ListIntegrationsRequest>(
            scrape,
            "ListIntegrations",
        )))
        .await
        .expect("integrations")
        .into_inner();
    let shown = scrape["integrations"].as_object().expect("rows");
    assert_eq!(shown.len(), answer.integrations.len());
    for row in &answer.integrations {
        let seen = &shown[&row.integration_id];
        assert_eq!(seen["failed"].as_u64(), Some(row.failed));
        assert_eq!(seen["succeeded"].as_u64(), Some(row.succeeded));
        // serde_json reads decimals to within one unit in the last place, not exactly.
        let rate = seen["failure_rate"].as_f64().unwrap_or(f64::NAN);
        assert!(
            (rate - row.failure_rate).abs() <= 1e-12,
            "{rate} {}",
            row.failure_rate
        );
        assert_eq!(seen["retried"].as_u64(), Some(row.retried_failures));
        assert_eq!(seen["recovered"].as_u64(), Some(row.recovered_failures));
    }
}

async fn check_catalog(api: &mut Api, scrape: &Value) {
    let answer = api
        .list_common_errors(authorized(sent::<proto::ListCommonErrorsRequest>(
            scrape,
            "ListCommonErrors",
        )))
        .await
        .expect("catalog")
        .into_inner();
    assert_eq!(answer.errors.len(), 25);
    for error in &answer.errors {
        let shown = &scrape["catalog"][error.status_code.to_string()];
        // The page shows the service's one wording, applicable or not.
        for guidance in &error.guidance {
            assert_eq!(
                shown[type_name(guidance.integration_type)].as_str(),
                Some(guidance.resolution.as_str())
            );
        }
    }
}

async fn check_details(api: &mut Api, report: &Value) {
    let request: proto::GetFailureDetailsRequest =
        serde_json::from_str(report["details"]["request"].as_str().expect("details call"))
            .expect("details body");
    assert_eq!(
        Some(request.failure_id.as_str()),
        report["details_for"].as_str()
    );
    let answer = api
        .get_failure_details(authorized(request))
        .await
        .expect("details")
        .into_inner();
    let guidance = answer.guidance.expect("guidance");
    assert!(guidance.applicable);
    assert_eq!(
        report["details"]["guidance"].as_str(),
        Some(guidance.resolution.as_str())
    );
    let samples: Vec<&str> = answer
        .recent_samples
        .iter()
        .map(|s| s.event_id.as_str())
        .collect();
    let shown: Vec<&str> = report["details"]["samples"]
        .as_array()
        .expect("samples")
        .iter()
        .filter_map(Value::as_str)
        .collect();
    assert_eq!(shown, samples);
    let facts = report["details"]["facts"].as_str().expect("facts");
    for id in [&answer.integration_id, &answer.service_id, &answer.flow_id] {
        assert!(facts.contains(id.as_str()), "{id} in {facts}");
    }
}

/// Waits until every published message is applied, asking with the page's token.
async fn wait_ingested(service: &TestService, total: u64) {
    wait_until("every message applied", Duration::from_secs(60), || {
        let mut api = service.api.clone();
        async move {
            let Ok(status) = api
                .get_ingest_status(authorized(proto::GetIngestStatusRequest {}))
                .await
            else {
                return false;
            };
            let status = status.into_inner();
            seen(&status) == total && status.partitions.iter().all(|p| p.lag == 0)
        }
    })
    .await;
}

/// 30 calls of acme's crm node in the last 10 minutes, half of them failing.
fn burst_of_failures() -> Vec<Message> {
    (0..30)
        .map(|i| {
            let failed = i % 2 == 0;
            let mut event = serde_json::json!({
                "event_id": format!("burst-{i}"), "tenant_id": "acme",
                "occurred_at": NOW - 10 * 60_000 + i * 20_000,
                "integration_type": "custom_node", "integration_id": "dash-crm",
                "integration_name": "CRM lookup", "outcome": if failed { "failure" } else { "success" },
            });
            if failed {
                event["status_code"] = serde_json::json!(503);
            }
            Message {
                key: "acme".into(),
                payload: serde_json::to_vec(&event).expect("json"),
            }
        })
        .collect()
}

/// The browser driver, run with a line protocol: it prints `{"step": NAME}` when it waits for
/// the test, reads one line back, and prints its report as the last line.
struct Driver {
    child: std::process::Child,
    lines: Option<BufReader<std::process::ChildStdout>>,
    log: PathBuf,
}

impl Driver {
    fn start(python: &Path, url: &str, acme_events: usize) -> Driver {
        let screenshot = match std::env::var_os("IH_UPDATE_SCREENSHOT") {
            Some(_) => PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("docs/dashboard.png"),
            None => PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("target/dashboard.png"),
        };
        let script = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/browser/dashboard.py");
        let log = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("target/dashboard-driver.log");
        let stderr = std::fs::File::create(&log).expect("the driver's log");
        let mut child = die_with_parent(&mut Command::new(python))
            .arg(&script)
            .args([
                url,
                TOKEN,
                VIEWER,
                &NOW.to_string(),
                &acme_events.to_string(),
            ])
            .arg(&screenshot)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(stderr)
            .spawn()
            .expect("the driver starts");
        let lines = child.stdout.take().map(BufReader::new);
        Driver { child, lines, log }
    }

    fn failed(&self, what: &str) -> ! {
        let log = std::fs::read_to_string(&self.log).unwrap_or_default();
        panic!("the driver {what}:\n{log}");
    }

    async fn next_line(&mut self) -> String {
        let mut lines = self.lines.take().expect("stdout");
        let (line, lines) = tokio::task::spawn_blocking(move || {
            let mut line = String::new();
            let _ = lines.read_line(&mut line);
            (line, lines)
        })
        .await
        .expect("reader");
        self.lines = Some(lines);
        line
    }

    /// Waits until the driver says it waits at `step`; the next call lets it go on.
    async fn wait_for(&mut self, step: &str) {
        let line = self.next_line().await;
        let said: Value = serde_json::from_str(&line).unwrap_or_default();
        if said != serde_json::json!({ "step": step }) {
            self.failed(&format!("did not reach {step} (it said {line:?})"));
        }
    }

    /// Lets the driver go on, and returns its report once it exits.
    async fn finish(mut self) -> Value {
        let stdin = self.child.stdin.as_mut().expect("stdin");
        stdin.write_all(b"go\n").expect("the driver reads");
        let line = self.next_line().await;
        let status = tokio::task::block_in_place(|| self.child.wait()).expect("the driver exits");
        if !status.success() {
            self.failed("failed");
        }
        serde_json::from_str(&line).expect("the driver's report")
    }
}

/// Before the burst, the page listed the alerts the API had, or said that nothing fires.
fn check_before_burst(report: &Value, listed: &[proto::Alert]) {
    let shown = &report["before_burst"];
    if listed.is_empty() {
        let empty = shown["alerts_empty"].as_str().unwrap_or_default();
        assert!(empty.contains("Nothing is firing"), "{shown}");
        return;
    }
    let mut ids: Vec<&str> = listed.iter().map(|a| a.alert_id.as_str()).collect();
    let mut seen: Vec<&str> = shown["alerts"]
        .as_array()
        .expect("alerts")
        .iter()
        .filter_map(|a| a["id"].as_str())
        .collect();
    ids.sort();
    seen.sort();
    assert_eq!(seen, ids);
}

/// Opened on dash-crm, as an alert's link opens it, the page focused its row and filtered
/// the failures to it, and said so.
fn check_focus(report: &Value) {
    let focused = &report["focused"];
    assert_eq!(focused["focused"], serde_json::json!(["dash-crm"]));
    let filtered = focused["failure_integrations"].as_array().expect("rows");
    assert!(!filtered.is_empty());
    assert!(filtered.iter().all(|i| i == "dash-crm"), "{filtered:?}");
    let note = focused["note"].as_str().unwrap_or_default();
    assert!(
        note.contains("dash-crm (Custom nodes)") && note.contains("whole tenant"),
        "the page says what the link narrowed: {note}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_dashboard_shows_what_the_api_answers() {
    let python = tokio::task::spawn_blocking(browser_driver)
        .await
        .expect("driver");
    let (_kafka, bootstrap) = kafka_with_topic(TOPIC, 3);
    let mut config = test_config(&bootstrap, TOPIC, "dashboard");
    config.tokens = vec![TokenGrant {
        operator: true,
        write: true,
        alerts_admin: true,
        ..TokenGrant::plain(TOKEN, &["*"])
    }];
    config.tokens.push(TokenGrant::plain(VIEWER, &["acme"]));
    config.alert_interval_ms = 100;
    let service = TestService::start(&config, Arc::new(ManualClock::new(NOW))).await;
    let generated = generate(23, 4_000, NOW);
    let messages: Vec<Message> = generated.messages.iter().map(|(_, m)| m.clone()).collect();
    let producer = producer(&bootstrap);
    publish(&producer, TOPIC, &messages).await;
    wait_ingested(&service, messages.len() as u64).await;
    let mut api = service.api.clone();
    let rule = proto::PutAlertRuleRequest {
        rule: Some(proto::AlertRuleSpec {
            scope: Some(proto::AlertRuleScope {
                tenant_id: "acme".into(),
                integration_type: proto::IntegrationType::CustomNode as i32,
                integration_id: "dash-crm".into(),
            }),
            kind: proto::AlertRule::FailureRate as i32,
            rate_threshold: Some(dashboard_live::CRM_THRESHOLD),
            ..Default::default()
        }),
    };
    api.put_alert_rule(authorized(rule)).await.expect("rule");

    // A burst of failures in the last minutes, published while the page is open.
    let burst = burst_of_failures();
    let acme_events = generated.truth.of("acme").count() + burst.len();
    let url = format!("http://{}/?tenant=acme", service.service.http_addr);
    let mut driver = Driver::start(&python, &url, acme_events);
    let before_burst = dashboard_live::list_alerts(&mut api).await;
    driver.wait_for("burst").await;
    let burst_at = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("after 1970")
        .as_secs_f64();
    publish(&producer, TOPIC, &burst).await;
    let report = driver.finish().await;
    check_before_burst(&report, &before_burst);
    let expected = dashboard_live::Expected {
        crm_rates: dashboard_live::burst_rates(
            &burst,
            NOW,
            config.alert_rate_window_minutes,
            config.alert_rate_min_events,
        ),
        rate_min_events: config.alert_rate_min_events,
        grpc: service.service.grpc_addr,
        burst_at,
    };

    let prompt = report["prompt_without_token"].as_str().expect("a prompt");
    assert!(prompt.contains("access token"), "{prompt}");
    assert_eq!(report["blank_without_token"], Value::Bool(false));
    let refused = report["prompt_after_wrong_token"]
        .as_str()
        .expect("a prompt");
    assert!(refused.contains("unknown token"), "{refused}");
    assert_eq!(report["auth_hidden_after_right_token"], Value::Bool(true));

    let initial = &report["initial"];
    for state in initial["states"].as_object().expect("states").values() {
        assert_eq!(
            state, "ready",
            "every section has numbers: {}",
            initial["states"]
        );
    }
    let day_total = check_overview(&mut api, initial).await;
    let day_change = check_change(&mut api, initial).await;
    let month_errors = check_errors(&mut api, initial).await;
    check_trends(&mut api, initial, proto::Granularity::Day).await;
    let acted_on = ["acknowledged", "snoozed"].map(|k| report[k].as_str().unwrap_or_default());
    check_failures(&mut api, initial, &acted_on).await;
    check_integrations(&mut api, initial).await;
    check_catalog(&mut api, initial).await;
    // The page follows WatchTenant: its version is every event counted for the tenant.
    let acme_events = acme_events.to_string();
    assert_eq!(initial["live"]["state"], "live");
    assert_eq!(
        initial["live"]["version"].as_str(),
        Some(acme_events.as_str())
    );
    assert!(day_total > 0, "the seeded day has failures");

    // The period selectors send new requests, and the new numbers are the API's too.
    let week = &report["after_periods"];
    let week_total = check_overview(&mut api, week).await;
    let week_change = check_change(&mut api, week).await;
    let week_errors = check_errors(&mut api, week).await;
    assert!(
        week_total > day_total,
        "{week_total} over 7 days, {day_total} over 1"
    );
    assert_ne!(week_change, day_change);
    assert_ne!(week_errors, month_errors);
    check_trends(&mut api, &report["hourly"], proto::Granularity::Hour).await;
    let rate_limited = Some(proto::ErrorClass::RateLimited);
    check_class_filter(&mut api, &report["class_selected"], rate_limited).await;
    let auth = Some(proto::ErrorClass::Auth);
    check_class_filter(&mut api, &report["class_pressed"], auth).await;
    check_class_filter(&mut api, &report["class_cleared"], None).await;
    check_long_views(&mut api, &report["long"], week_total).await;
    check_details(&mut api, &report).await;
    dashboard_live::check_alerts(&mut api, &report, &expected).await;
    dashboard_live::check_actions(&mut api, &report, &expected).await;
    dashboard_live::check_read_only(&report);
    dashboard_live::check_contrast(&report);
    dashboard_live::check_rules(&mut api, &report).await;
    check_focus(&report);

    let origin = format!("http://{}/", service.service.http_addr);
    for requested in report["requests"].as_array().expect("requests") {
        let requested = requested.as_str().unwrap_or_default();
        assert!(
            requested.starts_with(&origin) || requested.starts_with("data:"),
            "the page asked for {requested}, outside the service"
        );
    }
    assert_eq!(
        report["console_errors"],
        Value::Array(vec![]),
        "no errors in the console"
    );
    service.stop().await;
}
