//! Alert delivery against local receivers: a failure-rate alert fires and resolves through the
//! mock cluster, and each destination gets what its protocol says, checked field by field
//! against the alert the API lists: a webhook verified with the Standard Webhooks library for
//! both secrets of a rotation, a Slack message, a PagerDuty trigger and resolve under one
//! `dedup_key`. Retries after 503s reuse the `webhook-id`; a 400 is not retried and lands on
//! the dead letters; a destination limited to another tenant hears nothing.

use crate::alerts::{alerts_of, event, state};
use crate::common;

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use common::harness::TestService;
use common::receiver::{Received, Receiver};
use common::*;
use integration_health::catalog;
use integration_health::clock::ManualClock;
use integration_health::config::{Config, DestinationKind, DestinationSettings};
use integration_health::event::IntegrationType;
use integration_health::proto;
use serde_json::{json, Value};

const TOPIC: &str = "notify-events";
const MINUTE: i64 = 60_000;
/// The Standard Webhooks specification's example secret, and a second one for a rotation.
pub(crate) const SECRET_A: &str = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";
pub(crate) const SECRET_B: &str = "whsec_c2Vjb25kIHNlY3JldCBmb3Igcm90YXRpb24=";
const ROUTING_KEY: &str = "R0UT1NGKEY0000000000000000000000";
const DASHBOARD: &str = "https://dash.example.com/";

fn destination(name: &str, kind: DestinationKind) -> DestinationSettings {
    DestinationSettings::new(name, kind)
}

/// hook (signed webhook, two secrets), slack, pager (PagerDuty), broken (a webhook answering
/// 400) and globex-only (a webhook limited to another tenant), all default destinations.
fn destinations(receiver: &Receiver, dir: &Path) -> Vec<DestinationSettings> {
    let write = |name: &str, text: &str| {
        let path = dir.join(name);
        std::fs::write(&path, text).expect("secret file");
        Some(path)
    };
    let hook_secret = write("hook.secret", &format!("{SECRET_A}\n{SECRET_B}\n"));
    let webhook = |name: &str, path: &str| DestinationSettings {
        url: Some(receiver.url(path)),
        secret_file: hook_secret.clone(),
        ..destination(name, DestinationKind::Webhook)
    };
    vec![
        webhook("hook", "/hook"),
        DestinationSettings {
            url_file: write("slack.url", &receiver.url("/slack")),
            ..destination("slack", DestinationKind::Slack)
        },
        DestinationSettings {
            url: Some(receiver.url("/pd")),
            secret_file: write("pager.key", ROUTING_KEY),
            ..destination("pager", DestinationKind::Pagerduty)
        },
        webhook("broken", "/broken"),
        DestinationSettings {
            tenants: vec!["globex".into()],
            ..webhook("globex-only", "/globex")
        },
    ]
}

fn notifying_config(bootstrap: &str, receiver: &Receiver, dir: &Path) -> Config {
    let destinations = destinations(receiver, dir);
    Config {
        alert_interval_ms: 100,
        alert_delivery_backoff_ms: 20,
        public_url: Some(DASHBOARD.into()),
        alert_default_destinations: destinations.iter().map(|d| d.name.clone()).collect(),
        alert_destinations: destinations,
        ..test_config(bootstrap, TOPIC, "notify")
    }
}

/// 30 calls of acme's crm node over the last 10 minutes, 9 of them 503s: a 30% failure rate,
/// which fires the failure-rate alert (and an SLO-burn one).
pub(crate) fn crm_failing_30_percent() -> Vec<Message> {
    (0..30)
        .map(|i| {
            let at = NOW - 10 * MINUTE + i * 20_000;
            event(&format!("a{i}"), "crm", "custom_node", at, i % 10 < 3, 503)
        })
        .collect()
}

/// 40 successes of the crm node a minute after `NOW`: enough to bring its failure rate under
/// the hysteresis band, which resolves the failure-rate alert.
pub(crate) fn crm_recovering() -> Vec<Message> {
    (0..40)
        .map(|i| event(&format!("b{i}"), "crm", "custom_node", NOW + i, false, 0))
        .collect()
}

/// A one-partition mock cluster with `topic`, its alerts topic and its dead letters' topic.
pub(crate) fn kafka_with_alert_topics(
    topic: &str,
) -> (integration_health::testkit::EmbeddedKafka, String) {
    let (kafka, bootstrap) = kafka_with_topic(topic, 1);
    for internal in ["alerts", "alerts.dlq"] {
        kafka
            .create_topic(&format!("{topic}.{internal}"), 1)
            .expect("topic");
    }
    (kafka, bootstrap)
}

/// Verifies a delivery with the Standard Webhooks reference library, under `secret`.
pub(crate) fn verified(received: &Received, secret: &str) -> bool {
    let mut headers = http::HeaderMap::new();
    for name in ["webhook-id", "webhook-timestamp", "webhook-signature"] {
        headers.insert(name, received.header(name).parse().expect("header value"));
    }
    let webhook = standardwebhooks::Webhook::new(secret).expect("secret");
    webhook.verify(&received.body, &headers).is_ok()
}

fn slack_field(message: &Value, label: &str) -> String {
    let prefix = format!("*{label}*\n");
    message["blocks"]
        .as_array()
        .into_iter()
        .flatten()
        .flat_map(|b| b["fields"].as_array().cloned().unwrap_or_default())
        .filter_map(|f| f["text"].as_str().map(str::to_owned))
        .find_map(|t| t.strip_prefix(&prefix).map(str::to_owned))
        .unwrap_or_else(|| panic!("no {label} field in {message}"))
}

/// The deliveries about the failure-rate alert `alert_id`: the 30% failure rate also fires
/// an SLO-burn alert, delivered beside it. A webhook's id or PagerDuty's key names the alert;
/// a Slack message names its rule.
fn about(received: Vec<Received>, alert_id: &str, slack_rule: &str) -> Vec<Received> {
    received
        .into_iter()
        .filter(|r| {
            let body: Value = serde_json::from_slice(&r.body).unwrap_or_default();
            r.header("webhook-id").starts_with(alert_id)
                || body["dedup_key"] == json!(alert_id)
                || body["text"]
                    .as_str()
                    .is_some_and(|t| t.contains(slack_rule))
        })
        .collect()
}

/// How a Slack message names the failure-rate rule.
const RATE: &str = ": failure rate of";

fn rfc3339(ms: i64) -> String {
    chrono::DateTime::from_timestamp_millis(ms)
        .expect("time")
        .to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn alerts_reach_a_signed_webhook_slack_and_pagerduty_and_resolve_under_one_key() {
    let (_kafka, bootstrap) = kafka_with_alert_topics(TOPIC);
    let receiver = Receiver::start().await;
    receiver.fail_next("/hook", &[503, 503]);
    receiver.always("/broken", 400);
    let dir = tempfile::tempdir().expect("temp dir");
    let config = notifying_config(&bootstrap, &receiver, dir.path());
    let clock = Arc::new(ManualClock::new(NOW));
    let service = TestService::start(&config, clock.clone()).await;
    let producer = producer(&bootstrap);

    let messages: Vec<Message> = crm_failing_30_percent();
    publish(&producer, TOPIC, &messages).await;
    wait_applied(&service.api, 30).await;
    let fired = alerts_of(&service.api, proto::AlertRule::FailureRate, |a| {
        !a.is_empty()
    })
    .await;
    let alert = fired[0].clone();
    assert_eq!(state(&alert), proto::AlertState::AlertFiring);

    // The webhook: two 503s, then taken; every attempt the same message, signed under both
    // secrets, its body the alert the API lists. The SLO-burn alert beside it is delivered at
    // the same time, so the two 503s fall on either.
    let id = alert.alert_id.clone();
    let mine = |r: &[Received]| about(r.to_vec(), &id, RATE);
    let hook = mine(
        &receiver
            .wait_for("/hook", "a FIRING", |r| !mine(r).is_empty())
            .await,
    );
    let attempts = mine(&receiver.received("/hook"));
    let answered: Vec<u16> = attempts.iter().map(|r| r.answered).collect();
    let (taken, refused) = answered.split_last().expect("attempts");
    assert!(
        *taken == 200 && refused.iter().all(|s| *s == 503),
        "{answered:?}"
    );
    let every_503 = receiver
        .received("/hook")
        .iter()
        .filter(|r| r.answered == 503)
        .count();
    assert_eq!(every_503, 2, "both scripted 503s were retried");
    for attempt in &attempts {
        assert_eq!(attempt.header("webhook-id"), format!("{id}_FIRING"));
        assert_eq!(attempt.body, hook[0].body);
        assert!(verified(attempt, SECRET_A) && verified(attempt, SECRET_B));
        assert!(!verified(attempt, "whsec_AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA"));
    }
    let body = hook[0].json();
    assert_eq!(body["alert_id"], json!(id));
    assert_eq!(body["state"], json!("FIRING"));
    assert_eq!(body["tenant_id"], json!("acme"));
    assert_eq!(body["rule"], json!("failure_rate"));
    assert_eq!(body["integration_id"], json!("crm"));
    assert_eq!(body["status_code"], json!(503));
    assert_eq!(body["value"], json!(alert.value));
    assert_eq!(body["threshold"], json!(0.2));
    assert_eq!(body["severity"], json!("error"));
    let guidance = catalog::lookup(503)
        .guidance_for(IntegrationType::CustomNode)
        .expect("guidance");
    assert_eq!(body["guidance"], json!(guidance));

    // Slack: the facts as fields, the guidance, and a link to the integration.
    let slack = mine(
        &receiver
            .wait_for("/slack", "a FIRING", |r| !mine(r).is_empty())
            .await,
    );
    let message = slack[0].json();
    assert_eq!(
        message["text"],
        json!("FIRING: failure rate of crm service (crm) for tenant acme")
    );
    assert_eq!(slack_field(&message, "Tenant"), "acme");
    assert_eq!(
        slack_field(&message, "Integration"),
        "crm service (crm) · custom_node"
    );
    assert_eq!(slack_field(&message, "Rule"), "failure rate");
    assert_eq!(
        slack_field(&message, "Value"),
        format!(
            "{:.3} against 0.200 (failure rate over 15 min)",
            alert.value
        )
    );
    assert_eq!(slack_field(&message, "Since"), rfc3339(NOW));
    assert_eq!(
        slack_field(&message, "Top error"),
        format!("503 {}: crm answered 503", catalog::name_of(503))
    );
    let text = message.to_string();
    assert!(
        text.contains(&format!(
            "{DASHBOARD}?tenant=acme&integration=custom_node%3Acrm"
        )),
        "{text}"
    );
    assert!(text.contains("*Guidance*"), "{text}");

    // PagerDuty: a trigger keyed by the alert id.
    let pager = receiver
        .wait_for("/pd", "a trigger", |r| !mine(r).is_empty())
        .await;
    let trigger = mine(&pager)[0].json();
    assert_eq!(trigger["routing_key"], json!(ROUTING_KEY));
    assert_eq!(trigger["event_action"], json!("trigger"));
    assert_eq!(trigger["dedup_key"], json!(id));
    assert_eq!(
        trigger["payload"]["source"],
        json!("integration-health/acme/crm")
    );
    assert_eq!(trigger["payload"]["severity"], json!("error"));
    assert_eq!(trigger["payload"]["summary"], message["text"]);
    assert_eq!(trigger["payload"]["timestamp"], json!(rfc3339(NOW)));
    assert_eq!(
        trigger["links"][0]["href"],
        json!(format!(
            "{DASHBOARD}?tenant=acme&integration=custom_node%3Acrm"
        ))
    );
    assert_eq!(
        trigger["payload"]["custom_details"]["measure"],
        json!(alert.measure)
    );
    assert_eq!(
        trigger["payload"]["custom_details"]["threshold"],
        json!(0.2)
    );
    // The SLO-burn alert beside it burns the budget at 30 times the objective's rate: the
    // fast pair, which pages.
    let burn = receiver
        .wait_for("/pd", "an SLO trigger", |r| r.len() > mine(r).len())
        .await
        .iter()
        .map(Received::json)
        .find(|t| t["dedup_key"] != json!(id))
        .expect("the SLO-burn trigger");
    assert_eq!(burn["payload"]["class"], json!("SLO burn"));
    assert_eq!(burn["payload"]["severity"], json!("critical"));

    // Successes bring the rate under the hysteresis band: it resolves everywhere, under the
    // same keys, after the FIRING.
    clock.advance(MINUTE);
    publish(&producer, TOPIC, &crm_recovering()).await;
    wait_applied(&service.api, 70).await;
    let resolved = alerts_of(&service.api, proto::AlertRule::FailureRate, |a| {
        a.first()
            .is_some_and(|a| state(a) == proto::AlertState::AlertResolved)
    })
    .await;
    assert_eq!(resolved[0].alert_id, id);
    let both = |r: &[Received]| mine(r).len() == 2;
    let hook = mine(&receiver.wait_for("/hook", "a RESOLVED", both).await);
    assert_eq!(hook[1].header("webhook-id"), format!("{id}_RESOLVED"));
    assert_eq!(hook[1].json()["state"], json!("RESOLVED"));
    assert!(verified(&hook[1], SECRET_A));
    let slack = mine(&receiver.wait_for("/slack", "a RESOLVED", both).await);
    let said = |r: &Received| r.json()["text"].as_str().unwrap_or("").to_owned();
    assert!(said(&slack[0]).starts_with("FIRING: ") && said(&slack[1]).starts_with("RESOLVED: "));
    // The RESOLVED says how long it lasted: the clock moved one minute between the two.
    assert_eq!(slack_field(&slack[0].json(), "Severity"), "error");
    assert_eq!(
        slack_field(&slack[1].json(), "Lasted"),
        format!("1 min (since {})", rfc3339(NOW))
    );
    let resolve = mine(&receiver.wait_for("/pd", "a resolve", both).await)[1].json();
    assert_eq!(resolve["event_action"], json!("resolve"));
    assert_eq!(resolve["dedup_key"], json!(id));
    assert_eq!(resolve["routing_key"], json!(ROUTING_KEY));

    // A 400 is not retried: one attempt per state change, each written to the dead letters.
    let of_alert = |payload: &[u8]| String::from_utf8_lossy(payload).contains(&id);
    let dead_letters = read_dead_letters(
        &bootstrap,
        &format!("{TOPIC}.alerts.dlq"),
        |records: &[DeadLetter]| records.iter().filter(|(p, _)| of_alert(p)).count() >= 2,
    );
    let records: Vec<Value> = dead_letters
        .iter()
        .filter(|(payload, _)| of_alert(payload))
        .map(|(payload, _)| serde_json::from_slice(payload).expect("json"))
        .collect();
    assert_eq!(records.len(), 2, "{records:?}");
    for (record, state) in records.iter().zip(["FIRING", "RESOLVED"]) {
        assert_eq!(record["destination"], json!("broken"));
        assert_eq!(record["attempts"], json!(1));
        assert_eq!(record["error"], json!("HTTP 400 Bad Request"));
        assert_eq!(record["webhook_id"], json!(format!("{id}_{state}")));
        assert_eq!(record["alert"]["state"], json!(state));
    }
    let broken = receiver.received("/broken");
    assert_eq!(mine(&broken).len(), 2, "one attempt per state change");
    assert!(
        receiver.received("/globex").is_empty(),
        "another tenant's channel"
    );

    let (_, exposition) = http_get(service.service.http_addr, "/metrics").await;
    let deliveries = |destination: &str, outcome: &str| {
        metric_sum(
            &exposition,
            "integration_health_alert_deliveries_total",
            &[
                &format!("destination=\"{destination}\""),
                &format!("outcome=\"{outcome}\""),
            ],
        )
    };
    let taken = |path: &str| {
        let received = receiver.received(path);
        received.iter().filter(|r| r.answered == 200).count() as f64
    };
    assert_eq!(deliveries("hook", "sent"), taken("/hook"));
    assert_eq!(deliveries("pager", "sent"), taken("/pd"));
    assert_eq!(deliveries("broken", "failed"), broken.len() as f64);
    service.stop().await;
}

const KILLED_TOPIC: &str = "notify-killed";

pub(crate) fn spawn_notifying(config: &Path, log: &Path) -> Process {
    let args = vec!["--config".to_owned(), config.display().to_string()];
    serve_binary(&args, &[], log)
}

async fn wait_for_arrivals(receiver: &Receiver, path: &str, count: usize) {
    wait_until("requests arrive", Duration::from_secs(60), || {
        let arrived = receiver.arrived(path);
        async move { arrived >= count }
    })
    .await;
}

/// The built binary, SIGKILLed once while a delivery waits for the receiver's answer and once
/// after a delivery was committed: every state change on the alerts topic is delivered, the
/// interrupted one again under the same `webhook-id`, and nothing else twice.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigkill_repeats_only_the_delivery_it_interrupted_and_under_the_same_id() {
    let (_kafka, bootstrap) = kafka_with_alert_topics(KILLED_TOPIC);
    let receiver = Receiver::start().await;
    let dir = tempfile::tempdir().expect("temp dir");
    std::fs::write(dir.path().join("hook.secret"), SECRET_A).expect("secret");
    let config = dir.path().join("service.toml");
    let settings = format!(
        "brokers = \"{bootstrap}\"\ntopic = \"{KILLED_TOPIC}\"\ngroup = \"killed\"\n\
         grpc_addr = \"127.0.0.1:{}\"\nhttp_addr = \"127.0.0.1:0\"\nstate_dir = \"{}\"\n\
         snapshot_interval_ms = 300\nalert_interval_ms = 200\nalert_delivery_backoff_ms = 50\n\
         alert_default_destinations = [\"hook\"]\n\n[[alert_destinations]]\nname = \"hook\"\n\
         kind = \"webhook\"\nurl = \"{}\"\nsecret_file = \"{}\"\n",
        free_port(),
        dir.path().join("state").display(),
        receiver.url("/hook"),
        dir.path().join("hook.secret").display(),
    );
    std::fs::write(&config, settings).expect("config");
    let log = dir.path().join("service.log");
    let now = integration_health::clock::Clock::now_ms(&integration_health::clock::SystemClock);
    let producer = producer(&bootstrap);

    // Every answer waits 2 s; the service is killed while the first one waits.
    receiver.delay("/hook", Duration::from_secs(2));
    let mut service = spawn_notifying(&config, &log);
    let failing: Vec<Message> = (0..30)
        .map(|i| {
            event(
                &format!("a{i}"),
                "crm",
                "custom_node",
                now - 60_000 + i,
                i % 10 < 3,
                503,
            )
        })
        .collect();
    publish(&producer, KILLED_TOPIC, &failing).await;
    wait_for_arrivals(&receiver, "/hook", 1).await;
    tokio::time::sleep(Duration::from_millis(700)).await;
    service.0.kill().expect("SIGKILL");
    service.0.wait().expect("reaped");
    receiver.no_delay("/hook");
    let mut service = spawn_notifying(&config, &log);
    let ok = |r: &Received| (200..300).contains(&r.answered);
    let rate_state = |r: &Received, state: &str| {
        let body = r.json();
        body["rule"] == json!("failure_rate") && body["state"] == json!(state)
    };
    receiver
        .wait_for("/hook", "the FIRING after the restart", |r| {
            r.iter().any(|r| rate_state(r, "FIRING"))
        })
        .await;

    // Successes resolve the failure rate; once its RESOLVED is taken and committed, a second
    // SIGKILL must not bring it back.
    let healing: Vec<Message> = (0..40)
        .map(|i| event(&format!("b{i}"), "crm", "custom_node", now + i, false, 0))
        .collect();
    publish(&producer, KILLED_TOPIC, &healing).await;
    receiver
        .wait_for("/hook", "the RESOLVED", |r| {
            r.iter().any(|r| rate_state(r, "RESOLVED"))
        })
        .await;
    tokio::time::sleep(Duration::from_millis(1_500)).await;
    service.0.kill().expect("SIGKILL");
    service.0.wait().expect("reaped");
    let _service = spawn_notifying(&config, &log);
    // Long enough for the group to hand the partition to the new process and for it to send
    // anything it has not delivered.
    tokio::time::sleep(Duration::from_secs(12)).await;

    let published: Vec<String> = read_dead_letters(
        &bootstrap,
        &format!("{KILLED_TOPIC}.alerts"),
        |records: &[DeadLetter]| records.len() >= 3,
    )
    .iter()
    .map(|(payload, _)| {
        let event: Value = serde_json::from_slice(payload).expect("alert json");
        format!(
            "{}_{}",
            event["alert_id"].as_str().expect("id"),
            event["state"].as_str().expect("state")
        )
    })
    .collect();
    let taken: Vec<Received> = receiver.received("/hook").into_iter().filter(ok).collect();
    let ids: Vec<&str> = taken.iter().map(|r| r.header("webhook-id")).collect();
    for change in &published {
        assert!(
            ids.contains(&change.as_str()),
            "{change} never delivered: {ids:?}"
        );
    }
    for (id, delivery) in ids.iter().zip(&taken) {
        assert!(
            published.iter().any(|p| p == id),
            "{id} is not a state change"
        );
        assert!(verified(delivery, SECRET_A));
    }
    let mut distinct = ids.clone();
    distinct.sort();
    distinct.dedup();
    assert!(
        ids.len() - distinct.len() <= 1,
        "only the interrupted delivery may repeat: {ids:?}"
    );
    let resolved_id = published
        .iter()
        .find(|p| p.ends_with("_RESOLVED"))
        .expect("a RESOLVED was published");
    assert_eq!(
        ids.iter().filter(|id| *id == resolved_id).count(),
        1,
        "the committed RESOLVED was sent again"
    );
    let firing_id = resolved_id.replace("_RESOLVED", "_FIRING");
    let first = |id: &str| ids.iter().position(|i| *i == id);
    assert!(
        first(&firing_id) < first(resolved_id),
        "RESOLVED before FIRING: {ids:?}"
    );
}

/// No redirect is followed, to another host (here `localhost` for a destination at
/// `127.0.0.1`) or the same one: each is written to the dead letters, once, with the status.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_redirect_is_never_followed() {
    const TOPIC: &str = "notify-redirects";
    let (_kafka, bootstrap) = kafka_with_alert_topics(TOPIC);
    let receiver = Receiver::start().await;
    let elsewhere = format!("http://localhost:{}/elsewhere", receiver.addr.port());
    receiver.redirect("/away", &elsewhere);
    receiver.redirect("/moved", &receiver.url("/here"));
    let dir = tempfile::tempdir().expect("temp dir");
    let secret = dir.path().join("hook.secret");
    std::fs::write(&secret, SECRET_A).expect("secret");
    let webhook = |name: &str, path: &str| DestinationSettings {
        url: Some(receiver.url(path)),
        secret_file: Some(secret.clone()),
        ..destination(name, DestinationKind::Webhook)
    };
    let destinations = vec![webhook("away", "/away"), webhook("moved", "/moved")];
    let config = Config {
        alert_interval_ms: 100,
        alert_delivery_backoff_ms: 20,
        alert_default_destinations: vec!["away".into(), "moved".into()],
        alert_destinations: destinations,
        ..test_config(&bootstrap, TOPIC, "redirects")
    };
    let service = TestService::start(&config, Arc::new(ManualClock::new(NOW))).await;
    let messages: Vec<Message> = crm_failing_30_percent();
    publish(&producer(&bootstrap), TOPIC, &messages).await;

    // The failure rate's dead letters (an SLO burn fires beside it, with its own).
    let of_rate = |(payload, _): &&DeadLetter| {
        let record: Value = serde_json::from_slice(payload).unwrap_or_default();
        record["alert"]["rule"] == "failure_rate"
    };
    let dead_letters = read_dead_letters(
        &bootstrap,
        &format!("{TOPIC}.alerts.dlq"),
        |records: &[DeadLetter]| records.iter().filter(of_rate).count() >= 2,
    );
    let mut refused: Vec<(String, String, u64)> = dead_letters
        .iter()
        .filter(of_rate)
        .map(|(payload, _)| {
            let record: Value = serde_json::from_slice(payload).expect("json");
            let name = record["destination"]
                .as_str()
                .unwrap_or_default()
                .to_owned();
            let error = record["error"].as_str().unwrap_or_default().to_owned();
            (name, error, record["attempts"].as_u64().unwrap_or_default())
        })
        .collect();
    refused.sort();
    let not_followed =
        "HTTP 307 Temporary Redirect, not followed: configure the final URL".to_owned();
    assert_eq!(
        refused,
        vec![
            ("away".to_owned(), not_followed.clone(), 1),
            ("moved".to_owned(), not_followed, 1),
        ],
        "each redirect fails its delivery once, unretried"
    );
    assert_eq!(
        receiver.arrived("/elsewhere"),
        0,
        "not followed to another host"
    );
    assert_eq!(
        receiver.arrived("/here"),
        0,
        "not followed on the same host"
    );
    service.stop().await;
}

/// `query alerts test` of the built binary against `grpc`; (succeeded, stdout, stderr).
fn alerts_test(grpc: std::net::SocketAddr, args: &[&str]) -> (bool, String, String) {
    let output = std::process::Command::new(env!("CARGO_BIN_EXE_integration-health"))
        .args([
            "query",
            "--addr",
            &format!("http://{grpc}"),
            "alerts",
            "test",
        ])
        .args(args)
        .output()
        .expect("runs");
    (
        output.status.success(),
        String::from_utf8_lossy(&output.stdout).into_owned(),
        String::from_utf8_lossy(&output.stderr).into_owned(),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn query_alerts_test_reaches_the_receiver_signed() {
    const TOPIC: &str = "notify-test-send";
    let (_kafka, bootstrap) = kafka_with_alert_topics(TOPIC);
    let receiver = Receiver::start().await;
    receiver.always("/broken", 503);
    let dir = tempfile::tempdir().expect("temp dir");
    let config = Config {
        topic: TOPIC.into(),
        ..notifying_config(&bootstrap, &receiver, dir.path())
    };
    let service = TestService::start(&config, Arc::new(ManualClock::new(NOW))).await;
    let grpc = service.service.grpc_addr;
    let run = move |args: Vec<&'static str>| {
        tokio::task::spawn_blocking(move || alerts_test(grpc, &args))
    };

    let (ok, stdout, stderr) = run(vec!["--destination", "hook"]).await.expect("ran");
    assert!(ok, "{stderr}");
    let arrived = receiver.received("/hook");
    assert_eq!(arrived.len(), 1, "one request, not retried");
    let id = arrived[0].header("webhook-id").to_owned();
    assert!(id.starts_with("test-") && id.ends_with("_FIRING"), "{id}");
    assert!(stdout.contains(&id), "{stdout}");
    for secret in [SECRET_A, SECRET_B] {
        assert!(verified(&arrived[0], secret), "signed under {secret}");
    }
    let body = arrived[0].json();
    assert_eq!(body["tenant_id"], json!("integration-health-test"));
    assert_eq!(body["state"], json!("FIRING"));

    // A refusal is reported, once, and fails the command.
    let (ok, stdout, stderr) = run(vec!["--destination", "broken"]).await.expect("ran");
    assert!(!ok, "{stdout}");
    assert!(stderr.contains("not delivered (HTTP 503"), "{stderr}");
    assert_eq!(receiver.arrived("/broken"), 1, "a test is sent once");
    // A destination limited to another tenant takes none of acme's, and an unknown name is
    // not found.
    let (ok, _, stderr) = run(vec!["--destination", "globex-only", "--tenant", "acme"])
        .await
        .expect("ran");
    assert!(!ok && stderr.contains("FailedPrecondition"), "{stderr}");
    assert_eq!(receiver.arrived("/globex"), 0);
    let (ok, _, stderr) = run(vec!["--destination", "nowhere"]).await.expect("ran");
    assert!(!ok && stderr.contains("NotFound"), "{stderr}");
    service.stop().await;
}

#[test]
fn config_check_refuses_routes_to_another_tenants_destination_and_plain_http() {
    let dir = tempfile::tempdir().expect("dir");
    let secret = dir.path().join("hook.secret");
    std::fs::write(&secret, SECRET_A).expect("secret");
    let rules = dir.path().join("rules.toml");
    let settings = dir.path().join("settings.toml");
    let check = |url: &str, kind: &str, routed: &str| {
        let text = format!(
            "alert_rules_file = {rules:?}\n\n[[alert_destinations]]\nname = \"globex-hook\"\n\
             kind = \"{kind}\"\nurl = \"{url}\"\nsecret_file = {secret:?}\ntenants = [\"globex\"]\n"
        );
        std::fs::write(&settings, text).expect("settings");
        std::fs::write(
            &rules,
            format!("[tenants.{routed}]\ndestinations = [\"globex-hook\"]\n"),
        )
        .expect("rules");
        config_check(&settings)
    };
    let https = "https://hooks.example.com/ih";
    let (passed, stderr) = check(https, "webhook", "globex");
    assert!(passed, "{stderr}");

    let (passed, stderr) = check(https, "webhook", "acme");
    assert!(!passed, "acme routed to globex's destination");
    assert!(
        stderr.contains("acme") && stderr.contains("globex-hook"),
        "names both: {stderr}"
    );
    let (passed, stderr) = check("http://hooks.example.com/ih", "webhook", "globex");
    assert!(!passed && stderr.contains("https"), "plain http: {stderr}");
    let (passed, stderr) = check(https, "carrier-pigeon", "globex");
    assert!(
        !passed && stderr.contains("webhook"),
        "the valid kinds listed: {stderr}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_documented_python_receiver_verifies_a_delivery() {
    use std::io::{BufRead, BufReader};
    const TOPIC: &str = "notify-python";
    let (_kafka, bootstrap) = kafka_with_alert_topics(TOPIC);
    let port = free_port();
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("docs/examples/receive_alerts.py");
    let mut child = die_with_parent(&mut std::process::Command::new("python3"))
        .arg(&script)
        .arg(port.to_string())
        .env("WEBHOOK_SECRET", SECRET_A)
        .stdout(std::process::Stdio::piped())
        .spawn()
        .expect("python3 runs the receiver");
    let stdout = child.stdout.take().expect("stdout");
    let _receiver = Process(child);
    wait_until(
        "the receiver listens",
        Duration::from_secs(10),
        || async move {
            tokio::net::TcpStream::connect(("127.0.0.1", port))
                .await
                .is_ok()
        },
    )
    .await;
    let dir = tempfile::tempdir().expect("dir");
    let secret = dir.path().join("hook.secret");
    // The second secret alone is the receiver's: a rotation's old and new both sent.
    std::fs::write(&secret, format!("{SECRET_B}\n{SECRET_A}\n")).expect("secret");
    let hook = DestinationSettings {
        url: Some(format!("http://127.0.0.1:{port}/alerts")),
        secret_file: Some(secret),
        ..destination("python", DestinationKind::Webhook)
    };
    let config = Config {
        alert_destinations: vec![hook],
        ..test_config(&bootstrap, TOPIC, "python")
    };
    let service = TestService::start(&config, Arc::new(ManualClock::new(NOW))).await;
    let grpc = service.service.grpc_addr;
    let (ok, stdout_of_query, stderr) =
        tokio::task::spawn_blocking(move || alerts_test(grpc, &["--destination", "python"]))
            .await
            .expect("ran");
    assert!(ok, "{stdout_of_query}{stderr}");
    let line = tokio::task::spawn_blocking(move || {
        BufReader::new(stdout)
            .lines()
            .next()
            .expect("a line")
            .expect("text")
    })
    .await
    .expect("read");
    assert!(line.starts_with("verified test-"), "{line}");
    assert!(line.contains("FIRING integration-health-test"), "{line}");
    service.stop().await;
}
