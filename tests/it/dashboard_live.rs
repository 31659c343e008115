//! The dashboard's live parts, as the browser driver (tests/browser/dashboard.py) saw them:
//! alerts that appear and resolve while the page is open, issue actions taken from it and
//! followed by other open pages and by `query`, a read-only token's page, and the rules in
//! force. Every expectation comes from the API or from the test's own events, never from the
//! page.

use std::collections::BTreeMap;
use std::net::SocketAddr;

use crate::common::*;
use crate::dashboard::{authorized, issue_text, sent, TOKEN};
use integration_health::proto;
use serde_json::Value;

/// The failure-rate threshold the test's rule sets for dash-crm.
pub(crate) const CRM_THRESHOLD: f64 = 0.25;
/// How long the driver snoozes its second row for.
const SNOOZE_MS: i64 = 4 * 3_600_000;

/// What the test knows without asking the service: its burst and its settings.
pub(crate) struct Expected {
    /// The failure rates the burst's alert may fire at, counted from its events: one per
    /// prefix of the burst that reaches the rule's minimum volume, since the evaluator may run
    /// while the burst is still arriving.
    pub(crate) crm_rates: Vec<f64>,
    pub(crate) rate_min_events: u64,
    pub(crate) grpc: SocketAddr,
    /// When the test began publishing the burst, in Unix seconds.
    pub(crate) burst_at: f64,
}

/// The failure rate of each prefix of the burst (in publish order, one partition) with at
/// least `min_events` events inside `[now - window, now)`.
pub(crate) fn burst_rates(
    burst: &[Message],
    now: i64,
    window_minutes: u32,
    min_events: u64,
) -> Vec<f64> {
    let start = now - i64::from(window_minutes) * 60_000;
    let (mut failed, mut total) = (0u32, 0u32);
    let mut rates = Vec::new();
    for message in burst {
        let event: Value = serde_json::from_slice(&message.payload).expect("json");
        let at = event["occurred_at"].as_i64().expect("a time");
        if at >= start && at < now {
            total += 1;
            failed += u32::from(event["outcome"] == "failure");
            if u64::from(total) >= min_events {
                rates.push(f64::from(failed) / f64::from(total));
            }
        }
    }
    rates
}

pub(crate) async fn list_alerts(api: &mut Api) -> Vec<proto::Alert> {
    let request = proto::ListAlertsRequest {
        tenant_id: "acme".into(),
        resolved_within: None,
    };
    let answer = api.list_alerts(authorized(request)).await.expect("alerts");
    answer.into_inner().alerts
}

pub(crate) fn timestamp_ms(at: &Option<proto::Timestamp>) -> Option<i64> {
    at.is_some().then(|| ts(at))
}

/// A time as the page holds it (the API's JSON), in ms; `None` for an empty one.
pub(crate) fn shown_ms(shown: &Value) -> Option<i64> {
    let text = shown.as_str().filter(|s| !s.is_empty())?;
    let at = chrono::DateTime::parse_from_rfc3339(text).expect("an RFC 3339 time");
    Some(at.timestamp_millis())
}

async fn issue_of(api: &mut Api, failure_id: &str) -> proto::Issue {
    let details = api
        .get_failure_details(authorized(proto::GetFailureDetailsRequest {
            tenant_id: "acme".into(),
            failure_id: failure_id.into(),
            ..Default::default()
        }))
        .await
        .expect("details")
        .into_inner();
    details.failure.and_then(|f| f.issue).expect("an issue")
}

/// The burst's alert appeared on the open page as the API lists it, measured as the test
/// computes it, with a link that opens the page on dash-crm; after the rules turned the
/// tenant's alerts off, the page showed every alert resolved without a reload.
pub(crate) async fn check_alerts(api: &mut Api, report: &Value, expected: &Expected) {
    let seen_at = report["alert_seen_at"].as_f64().expect("timed");
    let seconds = seen_at - expected.burst_at;
    eprintln!("the burst's alert showed on the page {seconds:.1} s after its publishing began");
    assert!(
        seconds < 20.0,
        "within seconds of the burst: {seconds:.1} s"
    );
    let shown = report["initial"]["alerts"].as_array().expect("alerts");
    let crm = shown
        .iter()
        .find(|a| a["integration"] == "dash-crm" && a["state"] == "ALERT_FIRING")
        .expect("dash-crm's alert, firing");
    let value = crm["value"].as_f64().expect("a value");
    assert!(
        expected.crm_rates.contains(&value),
        "{value} is none of {:?}",
        expected.crm_rates
    );
    assert_eq!(crm["threshold"].as_f64(), Some(CRM_THRESHOLD));
    assert_eq!(crm["min_volume"].as_u64(), Some(expected.rate_min_events));
    assert_eq!(
        crm["link"].as_str(),
        Some("?tenant=acme&integration=custom_node%3Adash-crm")
    );

    let now = list_alerts(api).await;
    assert!(now
        .iter()
        .all(|a| a.state == proto::AlertState::AlertResolved as i32));
    let on_wire: BTreeMap<String, (String, String)> = now
        .iter()
        .map(|a| {
            let state = proto::AlertState::try_from(a.state).expect("state");
            let severity = proto::AlertSeverity::try_from(a.severity).expect("severity");
            (
                a.alert_id.clone(),
                (
                    state.as_str_name().to_owned(),
                    severity.as_str_name().to_owned(),
                ),
            )
        })
        .collect();
    let on_page: BTreeMap<String, (String, String)> = report["after_rule"]["alerts"]
        .as_array()
        .expect("alerts")
        .iter()
        .map(|a| {
            let text = |field: &str| a[field].as_str().unwrap_or_default().to_owned();
            (text("id"), (text("state"), text("severity")))
        })
        .collect();
    assert_eq!(on_page, on_wire);
    let crm_id = crm["id"].as_str().expect("an id");
    assert!(on_wire.contains_key(crm_id), "the FIRING one resolved");
    assert!(
        report["after_rule"]["calls"].get("WatchAlerts").is_some(),
        "the page follows WatchAlerts"
    );
}

/// The acknowledge and the 4-hour snooze taken on the first page are the API's, and the
/// second page and the read-only one showed both, who acted and when, without a reload.
pub(crate) async fn check_actions(api: &mut Api, report: &Value, expected: &Expected) {
    let acknowledged = report["acknowledged"].as_str().expect("a failure id");
    let snoozed = report["snoozed"].as_str().expect("a failure id");
    let ack = issue_of(api, acknowledged).await;
    assert_eq!(ack.state, proto::IssueState::Acknowledged as i32);
    assert_eq!(ack.actor, "dashboard");
    let snooze = issue_of(api, snoozed).await;
    assert_eq!(snooze.state, proto::IssueState::Snoozed as i32);
    assert_eq!(timestamp_ms(&snooze.snoozed_until), Some(NOW + SNOOZE_MS));

    for page in ["second", "viewer"] {
        for (id, issue) in [(acknowledged, &ack), (snoozed, &snooze)] {
            let shown = &report["followed"][page][id];
            assert_eq!(shown["state"].as_str(), Some(issue_text(issue).as_str()));
            assert_eq!(shown_ms(&shown["acted_at"]), timestamp_ms(&issue.acted_at));
        }
    }
    assert!(report["followed"]["second"]["buttons"].as_u64() > Some(0));
    assert_eq!(report["followed"]["viewer"]["buttons"].as_u64(), Some(0));

    let cli = |state: &str| {
        let args = ["issues", "--tenant", "acme", "--state", state, "--json"];
        let (ok, stdout, stderr) = crate::alert_rules::query(expected.grpc, TOKEN, &args);
        assert!(ok, "query issues --state {state}: {stderr}");
        stdout
    };
    let listed = cli("acknowledged");
    assert!(listed.contains(acknowledged), "{listed}");
    assert!(!listed.contains(snoozed), "{listed}");
    assert!(cli("snoozed").contains(snoozed));
}

/// A read-only token's page says so, offers no action anywhere, and the service refuses the
/// action it tries through the API.
pub(crate) fn check_read_only(report: &Value) {
    let viewer = &report["viewer"];
    assert_eq!(viewer["may_write"].as_str(), Some("false"));
    let caller = viewer["caller"].as_str().unwrap_or_default();
    assert!(caller.contains("read only"), "{caller}");
    assert_eq!(viewer["table_buttons"].as_u64(), Some(0));
    assert_eq!(viewer["details_buttons"].as_u64(), Some(0));
    let state = viewer["details_state"].as_str().unwrap_or_default();
    assert!(state.starts_with("Issue: "), "the state is shown: {state}");
    assert_eq!(viewer["update"]["status"].as_u64(), Some(403));
    assert_eq!(viewer["update"]["body"]["code"], "permission_denied");
    let after = &viewer["after"];
    assert_eq!(after["caller"]["may_write"].as_str(), Some("false"));
    let rows = after["failures"].as_array().expect("rows");
    assert!(!rows.is_empty());
    assert!(rows.iter().all(|r| r["buttons"].as_u64() == Some(0)));

    let writer = &report["initial"]["caller"];
    assert_eq!(writer["may_write"].as_str(), Some("true"));
    assert!(report["details"]["buttons"].as_u64() > Some(0));
}

/// Opened on dash-crm, the page listed the rules in force for it, each field with its value
/// and origin as `ListAlertRules` answers the request the page sent, and the rules set.
pub(crate) async fn check_rules(api: &mut Api, report: &Value) {
    let focused = &report["focused"];
    let request: proto::ListAlertRulesRequest = sent(focused, "ListAlertRules");
    assert!(request.effective);
    assert_eq!(request.integration_id, "dash-crm");
    let answer = api
        .list_alert_rules(authorized(request))
        .await
        .expect("rules")
        .into_inner();
    let expected: Vec<Value> = answer
        .effective
        .iter()
        .map(|rule| {
            let kind = proto::AlertRule::try_from(rule.kind).expect("kind");
            let fields: Vec<Value> = rule
                .fields
                .iter()
                .map(|f| serde_json::json!([f.name, f.value_json, f.origin]))
                .collect();
            serde_json::json!({"kind": kind.as_str_name(), "fields": fields})
        })
        .collect();
    assert_eq!(expected.len(), 4, "one rule in force per kind");
    assert_eq!(focused["effective"], Value::Array(expected));
    let threshold = focused["effective"]
        .as_array()
        .expect("rules")
        .iter()
        .find(|r| r["kind"] == "FAILURE_RATE")
        .and_then(|r| r["fields"].as_array())
        .and_then(|fields| fields.iter().find(|f| f[0] == "rate_threshold"))
        .cloned();
    assert_eq!(
        threshold,
        Some(serde_json::json!(["rate_threshold", "0.25", "integration"]))
    );
    // The driver's four rules, one per kind, beside dash-crm's.
    assert_eq!(answer.rules.len(), 5);
    assert_eq!(
        focused["rules"].as_array().map(Vec::len),
        Some(answer.rules.len())
    );
}

/// Every new part's text keeps WCAG's 4.5:1 against the background it is drawn on, as
/// Chromium computed both after the issue actions (alerts firing, states with their times).
pub(crate) fn check_contrast(report: &Value) {
    let ratios = report["contrast"].as_object().expect("contrast ratios");
    assert!(!ratios.is_empty());
    for (selector, ratio) in ratios {
        let ratio = ratio
            .as_f64()
            .unwrap_or_else(|| panic!("nothing on the page matches {selector}"));
        assert!(ratio >= 4.5, "{selector}: {ratio:.2}:1");
    }
}
