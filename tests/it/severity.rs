//! Severity and what PagerDuty and Slack are told, against local receivers: a slow SLO burn
//! triggers a `warning`, the same burn turning fast re-triggers the same incident as
//! `critical` (a webhook sees it under its own `webhook-id`), and the failure rate beside it
//! is an `error`; every expectation is worked out here from the events sent and the burn-rate
//! windows docs/alerts.md gives. The built binary never writes a Slack URL or a routing key to
//! its log, even when the destinations refuse.

use crate::alerts::event;
use crate::common;
use crate::notify::{kafka_with_alert_topics, spawn_notifying, verified, SECRET_A};

use std::sync::Arc;
use std::time::Duration;

use common::harness::TestService;
use common::receiver::{Received, Receiver};
use common::*;
use integration_health::clock::ManualClock;
use integration_health::config::{Config, DestinationKind, DestinationSettings};
use serde_json::{json, Value};

const MINUTE: i64 = 60_000;
const ROUTING_KEY: &str = "R0UT1NGKEYSEVERITY00000000000000";

/// `count` calls of acme's crm node from `start`, one a second, the first `failing` of them
/// 503s.
fn crm_calls(prefix: &str, start: i64, count: i64, failing: i64) -> Vec<Message> {
    (0..count)
        .map(|i| {
            let id = format!("{prefix}{i}");
            event(
                &id,
                "crm",
                "custom_node",
                start + i * 1_000,
                i < failing,
                503,
            )
        })
        .collect()
}

/// The burn rate of `failed` of `total` against a 0.99 objective (a 1% budget).
fn burn(failed: f64, total: f64) -> f64 {
    failed / total / 0.01
}

fn triggers(received: &[Received], class: &str) -> Vec<Value> {
    received
        .iter()
        .map(Received::json)
        .filter(|e| e["event_action"] == "trigger" && e["payload"]["class"] == class)
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_slow_burn_turning_fast_retriggers_the_same_incident_as_critical() {
    const TOPIC: &str = "severity-escalation";
    let (_kafka, bootstrap) = kafka_with_alert_topics(TOPIC);
    let receiver = Receiver::start().await;
    let dir = tempfile::tempdir().expect("temp dir");
    let key = dir.path().join("pager.key");
    std::fs::write(&key, ROUTING_KEY).expect("key");
    let secret = dir.path().join("hook.secret");
    std::fs::write(&secret, SECRET_A).expect("secret");
    let destinations = vec![
        DestinationSettings {
            url: Some(receiver.url("/pd")),
            secret_file: Some(key),
            ..DestinationSettings::new("pager", DestinationKind::Pagerduty)
        },
        DestinationSettings {
            url: Some(receiver.url("/hook")),
            secret_file: Some(secret),
            ..DestinationSettings::new("hook", DestinationKind::Webhook)
        },
    ];
    let config = Config {
        alert_interval_ms: 100,
        alert_delivery_backoff_ms: 20,
        alert_default_destinations: vec!["pager".into(), "hook".into()],
        alert_destinations: destinations,
        ..test_config(&bootstrap, TOPIC, "severity")
    };
    let clock = Arc::new(ManualClock::new(NOW));
    let service = TestService::start(&config, clock.clone()).await;
    let producer = producer(&bootstrap);

    // 100 calls 25 to 20 minutes ago, 8 failing: 8% burns the budget 8 times over 6 h and
    // over 30 min (the slow pair fires at 6), but only 8 times over 1 h and not at all over
    // 5 min (the fast pair needs 14.4 on both). Nothing is in the failure rate's 15 minutes.
    let slow = crm_calls("s", NOW - 25 * MINUTE, 100, 8);
    assert!(burn(8.0, 100.0) >= 6.0 && burn(8.0, 100.0) < 14.4);
    publish(&producer, TOPIC, &slow).await;
    let first = receiver
        .wait_for("/pd", "the slow burn's trigger", |r| {
            !triggers(r, "SLO burn").is_empty()
        })
        .await;
    let warning = triggers(&first, "SLO burn")[0].clone();
    let dedup_key = warning["dedup_key"].as_str().expect("key").to_owned();
    assert_eq!(warning["payload"]["severity"], json!("warning"));
    assert_eq!(warning["routing_key"], json!(ROUTING_KEY));
    assert!(warning.get("links").is_none(), "no public_url, no link");
    assert_eq!(
        warning["payload"]["source"],
        json!("integration-health/acme/crm")
    );

    // A minute on, 30 calls in the last minute, 15 failing: over the last hour 23 of 130
    // (17.7%, a burn of 17.7) and over 5 minutes 15 of 30 (a burn of 50), both above 14.4.
    clock.advance(MINUTE);
    assert!(burn(23.0, 130.0) >= 14.4 && burn(15.0, 30.0) >= 14.4);
    publish(&producer, TOPIC, &crm_calls("f", NOW, 30, 15)).await;
    let both = receiver
        .wait_for("/pd", "the escalation", |r| {
            triggers(r, "SLO burn").len() >= 2
        })
        .await;
    let burns = triggers(&both, "SLO burn");
    let critical = &burns[1];
    assert_eq!(critical["dedup_key"], json!(dedup_key), "the same incident");
    assert_eq!(critical["payload"]["severity"], json!("critical"));
    // The failure rate beside it (15 of 30 in its 15 minutes) is an error.
    let rate = receiver
        .wait_for("/pd", "the failure rate", |r| {
            !triggers(r, "failure rate").is_empty()
        })
        .await;
    let rate = &triggers(&rate, "failure rate")[0];
    assert_eq!(rate["payload"]["severity"], json!("error"));
    assert_ne!(rate["dedup_key"], json!(dedup_key));

    // A webhook hears both FIRINGs of the burn, each under its own id, the second marked as
    // an escalation; neither is a repeat a receiver would drop.
    let hook = receiver
        .wait_for("/hook", "both burn FIRINGs", |r| {
            r.iter()
                .filter(|r| r.json()["alert_id"] == json!(dedup_key))
                .count()
                >= 2
        })
        .await;
    let burn_changes: Vec<&Received> = hook
        .iter()
        .filter(|r| r.json()["alert_id"] == json!(dedup_key))
        .collect();
    let ids: Vec<&str> = burn_changes
        .iter()
        .map(|r| r.header("webhook-id"))
        .collect();
    assert_eq!(
        ids,
        [
            format!("{dedup_key}_FIRING"),
            format!("{dedup_key}_FIRING_CRITICAL")
        ]
    );
    let escalation = burn_changes[1].json();
    assert_eq!(escalation["severity"], json!("critical"));
    assert_eq!(escalation["escalated"], json!(true));
    assert_eq!(escalation["state"], json!("FIRING"));
    assert!(burn_changes[0].json().get("escalated").is_none());
    assert!(verified(burn_changes[1], SECRET_A));

    // The API lists the burn once, at its new severity.
    let listed = crate::alerts::alerts_of(
        &service.api,
        integration_health::proto::AlertRule::SloBurn,
        |a| {
            a.first().is_some_and(|a| {
                a.severity == integration_health::proto::AlertSeverity::Critical as i32
            })
        },
    )
    .await;
    assert_eq!(listed.len(), 1);
    assert_eq!(listed[0].alert_id, dedup_key);
    service.stop().await;
}

/// A PagerDuty destination at `receiver`'s `/pd`, with `dir`'s routing key file, and the
/// service's settings that deliver every alert to it.
fn paging_config(
    bootstrap: &str,
    topic: &str,
    receiver: &Receiver,
    dir: &std::path::Path,
) -> Config {
    let key = dir.join("pager.key");
    std::fs::write(&key, ROUTING_KEY).expect("key");
    Config {
        alert_interval_ms: 100,
        alert_delivery_backoff_ms: 20,
        alert_default_destinations: vec!["pager".into()],
        alert_destinations: vec![DestinationSettings {
            url: Some(receiver.url("/pd")),
            secret_file: Some(key),
            ..DestinationSettings::new("pager", DestinationKind::Pagerduty)
        }],
        ..test_config(bootstrap, topic, topic)
    }
}

/// A spike is about a (type, code), so PagerDuty's source names those; it is a warning.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_spike_pages_as_a_warning_from_its_type_and_code() {
    const TOPIC: &str = "severity-spike";
    const HOUR: i64 = 60 * MINUTE;
    let (_kafka, bootstrap) = kafka_with_alert_topics(TOPIC);
    let receiver = Receiver::start().await;
    let dir = tempfile::tempdir().expect("temp dir");
    let now = (NOW / HOUR) * HOUR + 2 * MINUTE;
    let config = paging_config(&bootstrap, TOPIC, &receiver, dir.path());
    let service = TestService::start(&config, Arc::new(ManualClock::new(now))).await;
    // One 884 of custom events in the last complete hour on each of the previous 7 days,
    // twelve in that hour today: twelve against a threshold of max(5 × 1, 10).
    let last_hour = (now / HOUR) * HOUR - HOUR;
    let mut messages: Vec<Message> = (1..=7)
        .map(|day| {
            let at = last_hour - day * 24 * HOUR + 10 * MINUTE;
            event(&format!("d{day}"), "cart", "custom_event", at, true, 884)
        })
        .collect();
    messages.extend((0..12).map(|i| {
        let integration = ["cart", "promo", "loyalty"][i % 3];
        let at = last_hour + 5 * MINUTE + i as i64 * MINUTE;
        event(&format!("s{i}"), integration, "custom_event", at, true, 884)
    }));
    publish(&producer(&bootstrap), TOPIC, &messages).await;
    let paged = receiver
        .wait_for("/pd", "the spike's trigger", |r| {
            !triggers(r, "spike").is_empty()
        })
        .await;
    let spike = &triggers(&paged, "spike")[0];
    assert_eq!(
        spike["payload"]["source"],
        json!("integration-health/acme/custom_event/884")
    );
    assert_eq!(spike["payload"]["severity"], json!("warning"));
    assert_eq!(
        spike["payload"]["custom_details"]["status_code"],
        json!(884)
    );
    assert_eq!(spike["payload"]["custom_details"]["threshold"], json!(10.0));
    service.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_log_never_holds_a_slack_url_or_a_routing_key() {
    const TOPIC: &str = "severity-secrets";
    const SLACK_PATH: &str = "/services/T0SECRET/B0SECRET/XXSLACKSECRETXX";
    let (_kafka, bootstrap) = kafka_with_alert_topics(TOPIC);
    let receiver = Receiver::start().await;
    // Both refuse, so each failure is logged with what the service knows of the destination.
    receiver.always(SLACK_PATH, 500);
    receiver.always("/pd", 400);
    let dir = tempfile::tempdir().expect("temp dir");
    let slack_url = receiver.url(SLACK_PATH);
    std::fs::write(dir.path().join("slack.url"), &slack_url).expect("url");
    std::fs::write(dir.path().join("pager.key"), ROUTING_KEY).expect("key");
    let config = dir.path().join("service.toml");
    let settings = format!(
        "brokers = \"{bootstrap}\"\ntopic = \"{TOPIC}\"\ngroup = \"secrets\"\n\
         grpc_addr = \"127.0.0.1:{}\"\nhttp_addr = \"127.0.0.1:0\"\n\
         alert_interval_ms = 200\nalert_delivery_backoff_ms = 20\n\
         alert_default_destinations = [\"slack\", \"pager\"]\n\n\
         [[alert_destinations]]\nname = \"slack\"\nkind = \"slack\"\nurl_file = \"{}\"\n\
         max_attempts = 2\n\n\
         [[alert_destinations]]\nname = \"pager\"\nkind = \"pagerduty\"\nurl = \"{}\"\n\
         secret_file = \"{}\"\n",
        free_port(),
        dir.path().join("slack.url").display(),
        receiver.url("/pd"),
        dir.path().join("pager.key").display(),
    );
    std::fs::write(&config, settings).expect("config");
    let log = dir.path().join("service.log");
    let _service = spawn_notifying(&config, &log);
    let now = integration_health::clock::Clock::now_ms(&integration_health::clock::SystemClock);
    publish(
        &producer(&bootstrap),
        TOPIC,
        &crm_calls("a", now - MINUTE, 30, 9),
    )
    .await;

    // Both destinations were tried and gave up: the log has said so by then.
    wait_until("both destinations give up", Duration::from_secs(60), || {
        let given_up = std::fs::read_to_string(&log)
            .unwrap_or_default()
            .lines()
            .filter(|l| l.contains("written to the dead letters"))
            .map(|l| (l.contains("slack"), l.contains("pager")))
            .fold((false, false), |(s, p), (ls, lp)| (s || ls, p || lp));
        async move { given_up == (true, true) }
    })
    .await;
    assert!(receiver.arrived(SLACK_PATH) >= 2 && receiver.arrived("/pd") >= 1);
    let written = std::fs::read_to_string(&log).expect("log");
    for secret in [
        slack_url.as_str(),
        "XXSLACKSECRETXX",
        "T0SECRET",
        ROUTING_KEY,
    ] {
        assert!(!written.contains(secret), "the log holds {secret}");
    }
}
