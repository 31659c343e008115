//! What each kind of destination is sent for one alert state change: the alert event itself
//! (webhooks), a readable Slack message, a PagerDuty Events API v2 event.

use chrono::{SecondsFormat, TimeZone, Utc};
use serde_json::{json, Value};

use crate::alerts::{AlertEvent, AlertState, Rule, Severity};
use crate::catalog;

/// The `webhook-id` of one state change: the same on every attempt and every repeat, and
/// different for an episode's FIRING, each escalation and its RESOLVED.
pub(crate) fn message_id(event: &AlertEvent) -> String {
    match event.escalated {
        true => format!(
            "{}_{}_{}",
            event.alert_id,
            state_name(event.state),
            severity_name(event.severity).to_uppercase()
        ),
        false => format!("{}_{}", event.alert_id, state_name(event.state)),
    }
}

/// A FIRING that says it is a test, for `query alerts test`: its `alert_id` starts `test-`,
/// its integration is named "integration-health test alert", and its measure says who sent it.
pub(crate) fn test_event(destination: &str, tenant_id: &str, now_ms: i64) -> AlertEvent {
    AlertEvent {
        alert_id: format!("test-{now_ms:x}"),
        state: AlertState::Firing,
        tenant_id: tenant_id.to_owned(),
        rule: Rule::FailureRate,
        integration_type: "custom_event".to_owned(),
        integration_id: "integration-health-test".to_owned(),
        integration_name: "integration-health test alert".to_owned(),
        status_code: 0,
        value: 0.0,
        threshold: 0.0,
        min_volume: 0,
        measure: format!("a test of destination {destination}, sent by query alerts test"),
        first_failure_ms: None,
        last_failure_ms: None,
        sample_message: String::new(),
        guidance: "Nothing to fix: this checks that alerts reach this receiver.".to_owned(),
        fired_at_ms: now_ms,
        at_ms: now_ms,
        severity: Severity::Info,
        escalated: false,
        destinations: vec![destination.to_owned()],
    }
}

fn state_name(state: AlertState) -> &'static str {
    match state {
        AlertState::Firing => "FIRING",
        AlertState::Resolved => "RESOLVED",
    }
}

fn rule_name(rule: Rule) -> &'static str {
    match rule {
        Rule::FailureRate => "failure rate",
        Rule::Spike => "spike",
        Rule::SloBurn => "SLO burn",
        Rule::Silence => "silence",
    }
}

/// What the alert is about, for people: the integration's name and id, or a spike's type and
/// code.
fn subject(event: &AlertEvent) -> String {
    if event.integration_id.is_empty() {
        format!("{} {}", event.integration_type, event.status_code)
    } else if event.integration_name.is_empty() {
        event.integration_id.clone()
    } else {
        format!("{} ({})", event.integration_name, event.integration_id)
    }
}

fn rfc3339(ms: i64) -> String {
    Utc.timestamp_millis_opt(ms)
        .single()
        .map(|t| t.to_rfc3339_opts(SecondsFormat::Secs, true))
        .unwrap_or_else(|| ms.to_string())
}

/// One line: "FIRING: failure rate of Returns portal (iwh-returns) for tenant acme".
pub(crate) fn summary(event: &AlertEvent) -> String {
    format!(
        "{}: {} of {} for tenant {}",
        state_name(event.state),
        rule_name(event.rule),
        subject(event),
        event.tenant_id
    )
}

fn measured(event: &AlertEvent) -> String {
    format!(
        "{:.3} against {:.3} ({})",
        event.value, event.threshold, event.measure
    )
}

fn top_error(event: &AlertEvent) -> String {
    let name = catalog::name_of(event.status_code);
    match event.sample_message.is_empty() {
        true => format!("{} {name}", event.status_code),
        false => format!("{} {name}: {}", event.status_code, event.sample_message),
    }
}

/// The dashboard opened on the alert's tenant and integration, when `public_url` is set.
pub(crate) fn dashboard_link(public_url: Option<&url::Url>, event: &AlertEvent) -> Option<String> {
    let mut link = public_url?.clone();
    {
        let mut query = link.query_pairs_mut();
        query.clear().append_pair("tenant", &event.tenant_id);
        if !event.integration_id.is_empty() {
            let integration = format!("{}:{}", event.integration_type, event.integration_id);
            query.append_pair("integration", &integration);
        }
    }
    Some(link.to_string())
}

/// Slack's mrkdwn treats `&`, `<` and `>` as markup; anything from events is escaped.
fn escaped(text: &str) -> String {
    text.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
}

/// A Slack incoming-webhook message: a header, the facts as fields, the guidance and a link.
pub(crate) fn slack(event: &AlertEvent, link: Option<&str>) -> Value {
    let field = |label: &str, text: &str| json!({"type": "mrkdwn", "text": format!("*{label}*\n{}", escaped(text))});
    let mut blocks = vec![
        json!({"type": "header", "text": {"type": "plain_text", "text": truncate(&summary(event), 150)}}),
        json!({"type": "section", "fields": [
            field("Tenant", &event.tenant_id),
            field("Integration", &format!("{} · {}", subject(event), event.integration_type)),
            field("Rule", rule_name(event.rule)),
            field("Value", &measured(event)),
            field("Severity", severity_name(event.severity)),
            since_or_lasted(event),
            field("Top error", &truncate(&top_error(event), 500)),
        ]}),
    ];
    if !event.guidance.is_empty() {
        blocks.push(json!({"type": "section", "text": {"type": "mrkdwn",
            "text": format!("*Guidance*\n{}", escaped(&truncate(&event.guidance, 2_500)))}}));
    }
    if let Some(link) = link {
        blocks.push(json!({"type": "section", "text": {"type": "mrkdwn",
            "text": format!("<{link}|Open in the Integrations dashboard>")}}));
    }
    json!({"text": summary(event), "blocks": blocks})
}

/// Since when a FIRING has been firing; for a RESOLVED, how long the incident lasted.
fn since_or_lasted(event: &AlertEvent) -> Value {
    let text = match event.state {
        AlertState::Firing => format!("*Since*\n{}", rfc3339(event.fired_at_ms)),
        AlertState::Resolved => format!(
            "*Lasted*\n{} (since {})",
            lasted(event.at_ms - event.fired_at_ms),
            rfc3339(event.fired_at_ms)
        ),
    };
    json!({"type": "mrkdwn", "text": text})
}

/// A duration in words: "45 s", "12 min", "3 h 5 min", "2 d 4 h".
fn lasted(ms: i64) -> String {
    let minutes = ms.max(0) / 60_000;
    match (minutes / (24 * 60), minutes / 60 % 24, minutes % 60) {
        _ if minutes == 0 => format!("{} s", ms.max(0) / 1_000),
        (0, 0, m) => format!("{m} min"),
        (0, h, 0) => format!("{h} h"),
        (0, h, m) => format!("{h} h {m} min"),
        (d, 0, _) => format!("{d} d"),
        (d, h, _) => format!("{d} d {h} h"),
    }
}

/// A PagerDuty Events API v2 event: a FIRING triggers and a RESOLVED resolves the incident
/// whose `dedup_key` is the alert's id.
pub(crate) fn pagerduty(event: &AlertEvent, routing_key: &str, link: Option<&str>) -> Value {
    let mut body = json!({
        "routing_key": routing_key,
        "dedup_key": event.alert_id,
        "event_action": match event.state {
            AlertState::Firing => "trigger",
            AlertState::Resolved => "resolve",
        },
    });
    if event.state == AlertState::Firing {
        // A spike is about a (type, code), not an integration.
        let target = match event.integration_id.is_empty() {
            true => format!("{}/{}", event.integration_type, event.status_code),
            false => event.integration_id.clone(),
        };
        body["payload"] = json!({
            "summary": truncate(&summary(event), 1_024),
            "source": format!("integration-health/{}/{target}", event.tenant_id),
            "severity": severity_name(event.severity),
            "timestamp": rfc3339(event.at_ms),
            "component": event.integration_type,
            "group": event.tenant_id,
            "class": rule_name(event.rule),
            "custom_details": {
                "value": event.value,
                "threshold": event.threshold,
                "measure": event.measure,
                "status_code": event.status_code,
                "top_error": top_error(event),
                "guidance": event.guidance,
                "first_failure": event.first_failure_ms.map(rfc3339),
                "last_failure": event.last_failure_ms.map(rfc3339),
            },
        });
        if let Some(link) = link {
            body["links"] = json!([{"href": link, "text": "Integrations dashboard"}]);
        }
    }
    body
}

fn severity_name(severity: Severity) -> &'static str {
    match severity {
        Severity::Critical => "critical",
        Severity::Error => "error",
        Severity::Warning => "warning",
        Severity::Info => "info",
    }
}

/// At most `max` characters, with an ellipsis when cut.
fn truncate(text: &str, max: usize) -> String {
    match text.char_indices().nth(max.saturating_sub(1)) {
        Some((cut, _)) if text.chars().count() > max => format!("{}…", &text[..cut]),
        _ => text.to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn truncation_counts_characters() {
        assert_eq!(truncate("abc", 3), "abc");
        assert_eq!(truncate("abcd", 3), "ab…");
        assert_eq!(truncate("ééééé", 3), "éé…");
    }

    #[test]
    fn durations_read_in_words() {
        assert_eq!(lasted(45_000), "45 s");
        assert_eq!(lasted(12 * 60_000 + 5_000), "12 min");
        assert_eq!(lasted(3 * 3_600_000), "3 h");
        assert_eq!(lasted(3 * 3_600_000 + 5 * 60_000), "3 h 5 min");
        assert_eq!(lasted(2 * 86_400_000 + 4 * 3_600_000 + 60_000), "2 d 4 h");
        assert_eq!(lasted(-5), "0 s");
    }

    #[test]
    fn slack_text_from_events_cannot_inject_markup() {
        assert_eq!(escaped("<!channel> & co"), "&lt;!channel&gt; &amp; co");
    }
}
