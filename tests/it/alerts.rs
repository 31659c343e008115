//! Alerts through the mock cluster with a manual clock: each rule fires and resolves when an
//! independent evaluation over the same events says it should, hysteresis keeps a dip from
//! resolving, and the events on `<topic>.alerts` are read back with a real consumer and checked
//! field by field.

use crate::common;

use std::sync::Arc;
use std::time::Duration;

use common::harness::TestService;
use common::*;
use integration_health::catalog;
use integration_health::clock::ManualClock;
use integration_health::event::IntegrationType;
use integration_health::proto;
use serde_json::{json, Value};

const TOPIC: &str = "alert-events";
const MINUTE: i64 = 60_000;

struct Sent {
    at: i64,
    failed: bool,
}

pub(crate) fn event(
    id: &str,
    integration: &str,
    kind: &str,
    at: i64,
    failed: bool,
    code: u16,
) -> Message {
    let mut event = json!({
        "event_id": id, "tenant_id": "acme", "occurred_at": at,
        "integration_type": kind, "integration_id": integration,
        "integration_name": format!("{integration} service"),
        "outcome": if failed { "failure" } else { "success" },
    });
    if failed {
        event["status_code"] = json!(code);
        event["error_message"] = json!(format!("{integration} answered {code}"));
    }
    Message {
        key: "acme".into(),
        payload: serde_json::to_vec(&event).expect("json"),
    }
}

async fn started(
    clock: Arc<ManualClock>,
) -> (
    integration_health::testkit::EmbeddedKafka,
    TestService,
    String,
) {
    let (kafka, bootstrap) = kafka_with_topic(TOPIC, 1);
    kafka
        .create_topic(&format!("{TOPIC}.alerts"), 1)
        .expect("alerts topic");
    let mut config = test_config(&bootstrap, TOPIC, "alerts");
    config.alert_interval_ms = 100;
    let service = TestService::start(&config, clock).await;
    (kafka, service, bootstrap)
}

/// The tenant's alerts of `rule`, once `count` of them are listed (firing or resolved).
/// acme's alerts as `ListAlerts` gives them: firing, or resolved within a day.
pub(crate) async fn acme_alerts(api: &Api) -> Vec<proto::Alert> {
    api.clone()
        .list_alerts(proto::ListAlertsRequest {
            tenant_id: "acme".into(),
            resolved_within: None,
        })
        .await
        .expect("alerts")
        .into_inner()
        .alerts
}

pub(crate) async fn alerts_of(
    api: &Api,
    rule: proto::AlertRule,
    want: impl Fn(&[proto::Alert]) -> bool,
) -> Vec<proto::Alert> {
    let mut found = Vec::new();
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    while std::time::Instant::now() < deadline {
        found = acme_alerts(api)
            .await
            .into_iter()
            .filter(|a| a.rule == rule as i32)
            .collect();
        if want(&found) {
            return found;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("alerts never became as expected: {found:?}");
}

/// Rounds of the evaluator that see the current state, with nothing expected to change.
pub(crate) async fn let_it_evaluate() {
    tokio::time::sleep(Duration::from_millis(600)).await;
}

pub(crate) fn state(alert: &proto::Alert) -> proto::AlertState {
    proto::AlertState::try_from(alert.state).expect("state")
}

/// The failure rate of the events whose minute starts in `[start, end)`: windows are whole
/// minutes, as docs/alerts.md says.
fn rate_in(sent: &[Sent], start: i64, end: i64) -> (f64, usize) {
    let minute = |at: i64| at.div_euclid(MINUTE) * MINUTE;
    let window: Vec<&Sent> = sent
        .iter()
        .filter(|e| minute(e.at) >= start && minute(e.at) < end)
        .collect();
    let failed = window.iter().filter(|e| e.failed).count();
    (failed as f64 / window.len().max(1) as f64, window.len())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failure_rate_fires_holds_through_a_dip_and_resolves_once() {
    let clock = Arc::new(ManualClock::new(NOW));
    let (_kafka, service, bootstrap) = started(clock.clone()).await;
    let producer = producer(&bootstrap);
    let api = service.api.clone();
    let mut sent = Vec::new();
    let mut messages = Vec::new();
    // 30 events over the last 10 minutes, 9 of them failures: 30%.
    for i in 0..30 {
        let at = NOW - 10 * MINUTE + i * 20_000;
        let failed = i % 10 < 3;
        messages.push(event(
            &format!("a{i}"),
            "crm",
            "custom_node",
            at,
            failed,
            503,
        ));
        sent.push(Sent { at, failed });
    }
    publish(&producer, TOPIC, &messages).await;
    wait_applied(&service.api, 30).await;
    let fired = alerts_of(&api, proto::AlertRule::FailureRate, |a| !a.is_empty()).await;
    let (rate, events) = rate_in(&sent, NOW - 15 * MINUTE, NOW);
    assert_eq!((events, rate, fired.len()), (30, 0.3, 1));
    let alert = &fired[0];
    assert_eq!(state(alert), proto::AlertState::AlertFiring);
    // The evaluator may run while the batch is still being applied, in order: it fires at the
    // first prefix of 20 or more events whose rate reaches 20%, or any later one.
    // (rate, first failure, last failure) of each prefix that could have fired.
    let prefixes: Vec<(f64, Option<i64>, Option<i64>)> = (20..=30)
        .map(|n| {
            let prefix = &sent[..n];
            let failures = prefix.iter().filter(|e| e.failed);
            let failed = failures.clone().count();
            let first = failures.clone().map(|e| e.at).min();
            (
                failed as f64 / n as f64,
                first,
                failures.map(|e| e.at).max(),
            )
        })
        .filter(|(rate, _, _)| *rate >= 0.2)
        .collect();
    assert!(
        prefixes.iter().any(|(rate, _, _)| *rate == alert.value),
        "{}",
        alert.value
    );
    assert_eq!(alert.threshold, 0.2);
    assert_eq!(
        alert.min_volume, 20,
        "the settings' minimum events in the window"
    );
    assert_eq!(alert.integration_id, "crm");
    assert_eq!(alert.status_code, 503);
    let guidance = catalog::lookup(503)
        .guidance_for(IntegrationType::CustomNode)
        .unwrap_or_default();
    assert_eq!(alert.guidance, guidance);

    // Successes dilute the rate to 18.75%: under the threshold, above the hysteresis band.
    clock.advance(MINUTE);
    let dip: Vec<Message> = (0..18)
        .map(|i| {
            sent.push(Sent {
                at: NOW + i,
                failed: false,
            });
            event(&format!("b{i}"), "crm", "custom_node", NOW + i, false, 0)
        })
        .collect();
    publish(&producer, TOPIC, &dip).await;
    wait_applied(&service.api, 48).await;
    let (rate, _) = rate_in(&sent, NOW + MINUTE - 15 * MINUTE, NOW + MINUTE);
    assert!((0.15..0.2).contains(&rate), "{rate}");
    let_it_evaluate().await;
    let still = alerts_of(&api, proto::AlertRule::FailureRate, |a| a.len() == 1).await;
    assert_eq!(
        state(&still[0]),
        proto::AlertState::AlertFiring,
        "a dip does not resolve"
    );

    // Enough successes to fall under the band: it resolves, under the same id.
    let more: Vec<Message> = (0..20)
        .map(|i| {
            sent.push(Sent {
                at: NOW + 100 + i,
                failed: false,
            });
            event(
                &format!("c{i}"),
                "crm",
                "custom_node",
                NOW + 100 + i,
                false,
                0,
            )
        })
        .collect();
    publish(&producer, TOPIC, &more).await;
    wait_applied(&service.api, 68).await;
    let resolved = alerts_of(&api, proto::AlertRule::FailureRate, |a| {
        a.first()
            .is_some_and(|a| state(a) == proto::AlertState::AlertResolved)
    })
    .await;
    // The evaluator may run while the batch is being applied: it resolves as soon as the rate
    // is under 15%, which the 61st event of the window already brings (9 / 61).
    let (final_rate, events) = rate_in(&sent, NOW + MINUTE - 15 * MINUTE, NOW + MINUTE);
    assert_eq!((events, final_rate), (68, 9.0 / 68.0));
    let value = resolved[0].value;
    assert!(
        (61..=68).any(|n| value == 9.0 / f64::from(n)),
        "resolved at {value}, not the rate of 61 to 68 events with 9 failures"
    );
    assert_eq!(resolved[0].alert_id, fired[0].alert_id);

    // On the topic: one FIRING, then one RESOLVED, nothing else for this rule.
    let records = read_dead_letters(
        &bootstrap,
        &format!("{TOPIC}.alerts"),
        |records: &[DeadLetter]| {
            records
                .iter()
                .filter(|(p, _)| String::from_utf8_lossy(p).contains("\"failure_rate\""))
                .count()
                >= 2
        },
    );
    let published: Vec<Value> = records
        .iter()
        .map(|(p, _)| serde_json::from_slice(p).expect("an alert event is JSON"))
        .filter(|e: &Value| e["rule"] == "failure_rate")
        .collect();
    let states: Vec<&str> = published
        .iter()
        .filter_map(|e| e["state"].as_str())
        .collect();
    assert_eq!(states, ["FIRING", "RESOLVED"]);
    let firing = &published[0];
    assert_eq!(firing["alert_id"], json!(fired[0].alert_id));
    assert_eq!(firing["tenant_id"], "acme");
    assert_eq!(firing["integration_type"], "custom_node");
    assert_eq!(firing["integration_id"], "crm");
    assert_eq!(firing["integration_name"], "crm service");
    assert_eq!(firing["status_code"], 503);
    assert_eq!(firing["value"], json!(alert.value));
    assert_eq!(firing["threshold"], json!(0.2));
    assert_eq!(firing["sample_message"], "crm answered 503");
    assert_eq!(firing["guidance"], guidance);
    let published = (
        alert.value,
        firing["first_failure_ms"].as_i64(),
        firing["last_failure_ms"].as_i64(),
    );
    assert!(
        prefixes.contains(&published),
        "{published:?} is no prefix's: {prefixes:?}"
    );

    assert_eq!(firing["fired_at_ms"], json!(NOW));
    service.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_spike_against_the_same_hour_of_the_last_week_fires() {
    // Two minutes into an hour, so the last complete hour is the one before.
    let now = (NOW / HOUR) * HOUR + 2 * MINUTE;
    let clock = Arc::new(ManualClock::new(now));
    let (_kafka, service, bootstrap) = started(clock.clone()).await;
    let last_hour = (now / HOUR) * HOUR - HOUR;
    let mut messages = Vec::new();
    // One failure in that hour on each of the previous 7 days: a mean of 1.
    for day in 1..=7 {
        let at = last_hour - day * DAY + 10 * MINUTE;
        messages.push(event(
            &format!("d{day}"),
            "cart",
            "custom_event",
            at,
            true,
            884,
        ));
    }
    // Twelve in the last hour, spread over several integrations of the type.
    for i in 0..12 {
        let integration = ["cart", "promo", "loyalty"][i % 3];
        let at = last_hour + 5 * MINUTE + i as i64 * MINUTE;
        messages.push(event(
            &format!("s{i}"),
            integration,
            "custom_event",
            at,
            true,
            884,
        ));
    }
    publish(&producer(&bootstrap), TOPIC, &messages).await;
    wait_applied(&service.api, 19).await;
    let spikes = alerts_of(&service.api, proto::AlertRule::Spike, |a| !a.is_empty()).await;
    let spike = &spikes[0];
    assert_eq!(state(spike), proto::AlertState::AlertFiring);
    // It may fire while the last hour's events are still being applied: at the 10th (the
    // minimum) or any later one.
    assert!([10.0, 11.0, 12.0].contains(&spike.value), "{}", spike.value);
    // Five times a baseline of one is five, under the minimum of ten: ten is what it is
    // compared with, and what it shows.
    assert_eq!(spike.threshold, 10.0);
    assert_eq!(
        spike.min_volume, 10,
        "the settings' minimum failures in the hour"
    );
    assert_eq!(
        (spike.status_code, spike.integration_id.as_str()),
        (884, "")
    );
    // An hour later the last complete hour holds no failure: the spike resolves.
    clock.advance(HOUR);
    let resolved = alerts_of(&service.api, proto::AlertRule::Spike, |a| {
        a.first()
            .is_some_and(|a| state(a) == proto::AlertState::AlertResolved)
    })
    .await;
    assert_eq!(resolved[0].value, 0.0);
    assert_eq!(resolved[0].alert_id, spike.alert_id);
    service.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_slo_burn_fires_on_both_windows_of_a_pair() {
    let clock = Arc::new(ManualClock::new(NOW));
    let (_kafka, service, bootstrap) = started(clock.clone()).await;
    let mut sent = Vec::new();
    let mut messages = Vec::new();
    // 120 events over the last hour, one in six failing (16.7% > 14.4% of a 1% budget).
    for i in 0..120 {
        let at = NOW - HOUR + i * 30_000;
        let failed = i % 6 == 0;
        messages.push(event(
            &format!("e{i}"),
            "erp",
            "outbound_webhook",
            at,
            failed,
            502,
        ));
        sent.push(Sent { at, failed });
    }
    publish(&producer(&bootstrap), TOPIC, &messages).await;
    wait_applied(&service.api, 120).await;
    let burns = alerts_of(&service.api, proto::AlertRule::SloBurn, |a| !a.is_empty()).await;
    // Independently: each pair's strength is the smaller burn of its windows over its rate,
    // over the events applied so far; the evaluator may run before the batch is all in.
    let expected = |applied: &[Sent]| {
        let burn = |window: i64| rate_in(applied, NOW - window, NOW).0 / 0.01;
        let volume = rate_in(applied, NOW - 6 * HOUR, NOW).1;
        let fast = burn(HOUR).min(burn(5 * MINUTE)) / 14.4;
        let slow = burn(6 * HOUR).min(burn(30 * MINUTE)) / 6.0;
        let (strength, threshold) = if fast >= slow {
            (fast, 14.4)
        } else {
            (slow, 6.0)
        };
        (strength >= 1.0 && volume >= 20).then_some((strength * threshold, threshold))
    };
    assert!(
        expected(&sent).is_some(),
        "the whole batch burns the budget"
    );
    let alert = &burns[0];
    assert_eq!(state(alert), proto::AlertState::AlertFiring);
    let matches =
        (20..=sent.len())
            .filter_map(|n| expected(&sent[..n]))
            .any(|(value, threshold)| {
                (alert.value - value).abs() < 1e-9 && alert.threshold == threshold
            });
    assert!(
        matches,
        "{} / {} is no prefix's burn",
        alert.value, alert.threshold
    );
    // Seven hours on, every window is empty: too little to judge, so it resolves.
    clock.advance(7 * HOUR);
    let resolved = alerts_of(&service.api, proto::AlertRule::SloBurn, |a| {
        a.first()
            .is_some_and(|a| state(a) == proto::AlertState::AlertResolved)
    })
    .await;
    assert_eq!(resolved[0].alert_id, alert.alert_id);
    service.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_firing_alert_is_not_published_again_after_sigkill() {
    use integration_health::clock::{Clock, SystemClock};
    let (kafka, bootstrap) = kafka_with_topic(TOPIC, 1);
    let alerts_topic = format!("{TOPIC}.alerts");
    kafka.create_topic(&alerts_topic, 1).expect("alerts topic");
    let dir = tempfile::tempdir().expect("temp dir");
    let config = dir.path().join("service.toml");
    std::fs::write(&config, "alert_interval_ms = 200\n").expect("config");
    let (grpc, http) = (free_port(), free_port());
    let spawn = || {
        let flags = format!(
            "--config {} --brokers {bootstrap} --topic {TOPIC} --group killed \
             --grpc-addr 127.0.0.1:{grpc} --http-addr 127.0.0.1:{http} --state-dir {}",
            config.display(),
            dir.path().join("state").display()
        );
        let args: Vec<String> = flags.split_whitespace().map(str::to_owned).collect();
        serve_binary(&args, &[], &dir.path().join("service.log"))
    };
    let now = SystemClock.now_ms();
    let burst: Vec<Message> = (0..30)
        .map(|i| {
            event(
                &format!("k{i}"),
                "crm",
                "custom_node",
                now - 5 * MINUTE + i * 1_000,
                i % 2 == 0,
                503,
            )
        })
        .collect();
    publish(&producer(&bootstrap), TOPIC, &burst).await;
    let firing = |records: &[DeadLetter]| {
        records
            .iter()
            .filter(|(p, _)| {
                let text = String::from_utf8_lossy(p);
                text.contains("\"failure_rate\"") && text.contains("\"FIRING\"")
            })
            .count()
    };
    let mut service = spawn();
    let first = tokio::task::spawn_blocking({
        let (bootstrap, topic) = (bootstrap.clone(), alerts_topic.clone());
        move || read_dead_letters(&bootstrap, &topic, |r| firing(r) >= 1)
    })
    .await
    .expect("reader");
    assert_eq!(firing(&first), 1, "the burst fires once");
    service.0.kill().expect("SIGKILL");
    service.0.wait().expect("reaped");

    // The restarted instance reads what it published, so it does not fire the alert again.
    let _service = spawn();
    let http_addr: std::net::SocketAddr = format!("127.0.0.1:{http}").parse().expect("addr");
    wait_until(
        "the restarted binary is ready",
        Duration::from_secs(60),
        || async move {
            tokio::net::TcpStream::connect(http_addr).await.is_ok()
                && http_get(http_addr, "/readyz").await.0 == 200
        },
    )
    .await;
    // Many evaluation rounds, each of which would have published a second FIRING.
    tokio::time::sleep(Duration::from_secs(3)).await;
    let after = tokio::task::spawn_blocking(move || {
        read_dead_letters(&bootstrap, &alerts_topic, |r| r.len() >= 100)
    })
    .await
    .expect("reader");
    assert_eq!(firing(&after), 1, "still one FIRING after the restart");
}

/// erp's steady traffic: 12 events in the half hour before this time of day, on each of the
/// previous 7 days.
fn steady_erp_baseline() -> Vec<Message> {
    let mut messages = Vec::new();
    for day in 1..=7 {
        for i in 0..12 {
            let at = NOW - day * DAY - 30 * MINUTE + i * MINUTE;
            let id = format!("s{day}-{i}");
            messages.push(event(&id, "erp", "prebuilt_integration", at, false, 0));
        }
    }
    messages
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_steady_integration_gone_quiet_raises_silence_and_its_next_event_resolves_it() {
    let clock = Arc::new(ManualClock::new(NOW));
    let (_kafka, service, bootstrap) = started(clock.clone()).await;
    let producer = producer(&bootstrap);
    let api = service.api.clone();
    // 12 events in the half hour before this time of day on each of the previous 7 days, the
    // last one 45 minutes ago; and a nightly job that never runs at this hour.
    let mut messages = steady_erp_baseline();
    for day in 1..=7 {
        for i in 0..12 {
            let nightly = NOW - day * DAY + 6 * HOUR + i;
            messages.push(event(
                &format!("n{day}-{i}"),
                "nightly",
                "custom_event",
                nightly,
                false,
                0,
            ));
        }
    }
    let last = NOW - 45 * MINUTE;
    messages.push(event("last", "erp", "prebuilt_integration", last, false, 0));
    publish(&producer, TOPIC, &messages).await;
    wait_applied(&service.api, messages.len() as u64).await;

    let fired = alerts_of(&api, proto::AlertRule::Silence, |a| !a.is_empty()).await;
    assert_eq!(fired.len(), 1, "only the steady integration: {fired:?}");
    let alert = &fired[0];
    assert_eq!(alert.integration_id, "erp");
    assert_eq!(state(alert), proto::AlertState::AlertFiring);
    // Silent since the end of the last event's minute, in whole minutes.
    let heard_until = last.div_euclid(MINUTE) * MINUTE + MINUTE;
    assert_eq!(alert.value, ((NOW - heard_until) / MINUTE) as f64);
    assert_eq!(alert.threshold, 30.0);

    clock.advance(MINUTE);
    publish(
        &producer,
        TOPIC,
        &[event(
            "back",
            "erp",
            "prebuilt_integration",
            NOW + 1,
            false,
            0,
        )],
    )
    .await;
    let resolved = alerts_of(&api, proto::AlertRule::Silence, |a| {
        a.first()
            .is_some_and(|a| state(a) == proto::AlertState::AlertResolved)
    })
    .await;
    assert_eq!(resolved[0].alert_id, alert.alert_id);
    service.stop().await;
}

/// One attempt of a transaction: `last` is the `final` field, absent when `None`.
pub(crate) fn attempt(
    id: &str,
    integration: &str,
    at: i64,
    n: u32,
    last: Option<bool>,
    failed: bool,
) -> Message {
    let mut message = event(id, integration, "outbound_webhook", at, failed, 503);
    let mut body: Value = serde_json::from_slice(&message.payload).expect("json");
    body["attempt"] = json!(n);
    if let Some(last) = last {
        body["final"] = json!(last);
    }
    message.payload = serde_json::to_vec(&body).expect("json");
    message
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn retried_attempts_count_once_in_the_rules_and_show_as_retried_and_recovered() {
    let clock = Arc::new(ManualClock::new(NOW));
    let (_kafka, service, bootstrap) = started(clock).await;
    let producer = producer(&bootstrap);
    // 20 transactions each: billing fails twice and then succeeds; ledger fails three times,
    // the last attempt final.
    let mut messages = Vec::new();
    let mut sent: Vec<(&str, u32, bool, bool)> = Vec::new();
    for (integration, last_fails) in [("billing", false), ("ledger", true)] {
        for t in 0..20 {
            let at = NOW - 10 * MINUTE + t * 20_000;
            for n in 1..=3u32 {
                let (last, failed) = match n {
                    3 => (last_fails.then_some(true), last_fails),
                    _ => (Some(false), true),
                };
                let id = format!("{integration}-{t}-{n}");
                messages.push(attempt(
                    &id,
                    integration,
                    at + i64::from(n),
                    n,
                    last,
                    failed,
                ));
                sent.push((integration, n, last != Some(false), failed));
            }
        }
    }
    publish(&producer, TOPIC, &messages).await;
    wait_applied(&service.api, messages.len() as u64).await;

    // Recounted from what was sent: the final outcomes' failure rate, retried failures and
    // transactions a retry recovered (final successes after the first attempt).
    let expect = |integration: &str| {
        let mine = sent.iter().filter(|s| s.0 == integration);
        let finals: Vec<_> = mine.clone().filter(|s| s.2).collect();
        let rate = finals.iter().filter(|s| s.3).count() as f64 / finals.len() as f64;
        let retried = mine.clone().filter(|s| !s.2 && s.3).count() as u64;
        let recovered = finals.iter().filter(|s| !s.3 && s.1 > 1).count() as u64;
        let failed = mine.filter(|s| s.3).count() as u64;
        (rate, retried, recovered, failed)
    };
    assert_eq!(expect("billing"), (0.0, 40, 20, 40));
    assert_eq!(expect("ledger"), (1.0, 40, 0, 60));

    let fired = alerts_of(&service.api, proto::AlertRule::FailureRate, |a| {
        !a.is_empty()
    })
    .await;
    let_it_evaluate().await;
    let fired = alerts_of(&service.api, proto::AlertRule::FailureRate, |a| {
        a.len() >= fired.len()
    })
    .await;
    let ids: Vec<&str> = fired.iter().map(|a| a.integration_id.as_str()).collect();
    assert_eq!(ids, ["ledger"], "billing's final outcomes all succeeded");
    assert_eq!(fired[0].value, expect("ledger").0);

    let rows = service
        .api
        .clone()
        .list_integrations(proto::ListIntegrationsRequest {
            tenant_id: "acme".into(),
            ..Default::default()
        })
        .await
        .expect("integrations")
        .into_inner()
        .integrations;
    for row in rows {
        let (_, retried, recovered, failed) = expect(&row.integration_id);
        assert_eq!(
            (row.retried_failures, row.recovered_failures, row.failed),
            (retried, recovered, failed),
            "{}",
            row.integration_id
        );
    }
    service.stop().await;
}

/// A service started behind its topic reads, in order, erp's steady baseline, thousands of
/// other events, then erp's event of a minute ago. Until it has caught up, erp looks silent
/// for a day; no silence may be claimed from that state, so none is ever published.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_silence_is_claimed_while_the_service_is_behind() {
    const BEHIND: &str = "behind-events";
    let (kafka, bootstrap) = kafka_with_topic(BEHIND, 1);
    kafka
        .create_topic(&format!("{BEHIND}.alerts"), 1)
        .expect("alerts topic");
    let mut messages = steady_erp_baseline();
    for i in 0..9_000 {
        let at = NOW - 2 * HOUR + i;
        messages.push(event(
            &format!("f{i}"),
            "other",
            "custom_event",
            at,
            false,
            0,
        ));
    }
    messages.push(event(
        "now",
        "erp",
        "prebuilt_integration",
        NOW - MINUTE,
        false,
        0,
    ));
    publish(&producer(&bootstrap), BEHIND, &messages).await;

    let mut config = test_config(&bootstrap, BEHIND, "behind");
    config.alert_interval_ms = 20;
    // Ready from the start, with every message still to read: readiness tolerates lag, and
    // erp's newest event is the last message, so only "nothing left to read" may judge it.
    config.ready_max_lag = messages.len() as i64;
    let service = TestService::start(&config, Arc::new(ManualClock::new(NOW))).await;
    wait_applied(&service.api, messages.len() as u64).await;
    let_it_evaluate().await;
    // A silence fired and resolved would still be listed, resolved, for 24 hours.
    let silences = alerts_of(&service.api, proto::AlertRule::Silence, |_| true).await;
    assert!(silences.is_empty(), "claimed while behind: {silences:?}");
    service.stop().await;
}

/// Three integrations of acme failing at once: crm with 503s, erp with 404s and billing with
/// 500s, a third of their calls over the last 10 minutes, so each fires its own alerts.
fn three_failing_integrations() -> Vec<Message> {
    let mut messages = Vec::new();
    for (integration, code) in [("crm", 503), ("erp", 404), ("billing", 500)] {
        for i in 0..30 {
            let id = format!("{integration}-{i}");
            let at = NOW - 10 * MINUTE + i * 20_000;
            messages.push(event(&id, integration, "custom_node", at, i % 3 == 0, code));
        }
    }
    messages
}

/// The service on a fresh mock cluster holding `events` and, on `<TOPIC>.alerts`, `alerts`.
async fn serving_with_alerts(
    events: &[Message],
    alerts: &[Keyed],
) -> (
    integration_health::testkit::EmbeddedKafka,
    TestService,
    String,
) {
    let (kafka, bootstrap) = kafka_with_topic(TOPIC, 1);
    let alerts_topic = format!("{TOPIC}.alerts");
    kafka.create_topic(&alerts_topic, 1).expect("alerts topic");
    let copied: Vec<Message> = alerts
        .iter()
        .map(|(key, payload)| Message {
            key: String::from_utf8_lossy(key).into_owned(),
            payload: payload.clone(),
        })
        .collect();
    publish(&producer(&bootstrap), &alerts_topic, &copied).await;
    publish(&producer(&bootstrap), TOPIC, events).await;
    let mut config = test_config(&bootstrap, TOPIC, "compacted");
    config.alert_interval_ms = 50;
    let service = TestService::start(&config, Arc::new(ManualClock::new(NOW))).await;
    wait_applied(&service.api, events.len() as u64).await;
    (kafka, service, bootstrap)
}

/// What compaction leaves of a topic: the newest record of each key, in offset order.
fn compacted(records: &[Keyed]) -> Vec<Keyed> {
    let newest: std::collections::HashMap<&[u8], usize> = records
        .iter()
        .enumerate()
        .map(|(offset, (key, _))| (key.as_slice(), offset))
        .collect();
    let mut kept: Vec<usize> = newest.into_values().collect();
    kept.sort_unstable();
    kept.into_iter()
        .map(|offset| records[offset].clone())
        .collect()
}

/// A subject as docs/alerts.md defines it, read from the record itself.
fn subject_of(payload: &[u8]) -> (String, String, String, String, u64) {
    let alert: Value = serde_json::from_slice(payload).expect("an alert record");
    let text = |field: &str| alert[field].as_str().unwrap_or_default().to_owned();
    let code = alert["status_code"].as_u64().unwrap_or_default();
    let integration = text("integration_id");
    // A spike is per (type, code); every other rule per integration.
    let code = if integration.is_empty() { code } else { 0 };
    (
        text("tenant_id"),
        text("rule"),
        text("integration_type"),
        integration,
        code,
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn after_compaction_and_a_restart_no_firing_subject_fires_again() {
    let events = three_failing_integrations();
    let (_first_kafka, first, bootstrap) = serving_with_alerts(&events, &[]).await;
    let alerts_topic = format!("{TOPIC}.alerts");
    let firing_subjects = |records: &[Keyed]| -> std::collections::BTreeSet<_> {
        records
            .iter()
            .map(|(_, payload)| subject_of(payload))
            .collect()
    };
    // Every integration's failure-rate alert has fired; then a few rounds more.
    read_keyed(&bootstrap, &alerts_topic, |records| {
        let rules: std::collections::BTreeSet<_> = firing_subjects(records)
            .into_iter()
            .filter(|s| s.1 == "failure_rate")
            .collect();
        rules.len() == 3
    });
    let_it_evaluate().await;
    first.stop().await;
    let published = read_all_keyed(&bootstrap, &alerts_topic);
    let subjects = firing_subjects(&published);
    assert!(
        subjects.len() >= 3,
        "several subjects for one tenant: {subjects:?}"
    );

    // One record key per subject, so compaction keeps every subject's newest change.
    let kept = compacted(&published);
    assert_eq!(
        kept.len(),
        subjects.len(),
        "one key per subject: {:?}",
        kept.iter()
            .map(|(k, _)| String::from_utf8_lossy(k))
            .collect::<Vec<_>>()
    );

    // A new instance on the compacted topic knows every subject is firing: it publishes
    // nothing more.
    let (_second_kafka, second, bootstrap) = serving_with_alerts(&events, &kept).await;
    let_it_evaluate().await;
    let after = read_all_keyed(&bootstrap, &alerts_topic);
    assert_eq!(
        after.len(),
        kept.len(),
        "fired again: {:?}",
        after[kept.len()..]
            .iter()
            .map(|(_, p)| subject_of(p))
            .collect::<Vec<_>>()
    );
    second.stop().await;
}
