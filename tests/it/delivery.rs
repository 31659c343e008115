//! Delivery that survives receivers and crashes: retries as each answer asks (503, 429 with
//! `Retry-After`, capped by `max_backoff_ms`), none after a 400, dead letters after the last
//! attempt and listed by `query alerts dead-letters`; a receiver that is down delays no other;
//! five SIGKILLs in a row lose nothing and repeat only under the same `webhook-id`; a rotated
//! secret signs the next delivery without a restart. Every expectation is computed from what
//! the receivers recorded and what the test published, not from the service's own counts.

use crate::alerts::{acme_alerts, event};
use crate::common;
use crate::notify::{
    crm_failing_30_percent, crm_recovering, kafka_with_alert_topics, spawn_notifying, verified,
    SECRET_A, SECRET_B,
};

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use common::harness::TestService;
use common::receiver::{Received, Receiver};
use common::*;
use integration_health::clock::ManualClock;
use integration_health::config::{Config, DestinationKind, DestinationSettings};
use integration_health::proto;
use serde_json::Value;

fn webhook(receiver: &Receiver, name: &str, secret: &Path) -> DestinationSettings {
    DestinationSettings {
        url: Some(receiver.url(&format!("/{name}"))),
        secret_file: Some(secret.to_owned()),
        ..DestinationSettings::new(name, DestinationKind::Webhook)
    }
}

fn config_with(bootstrap: &str, topic: &str, destinations: Vec<DestinationSettings>) -> Config {
    Config {
        alert_interval_ms: 100,
        alert_delivery_backoff_ms: 20,
        alert_default_destinations: destinations.iter().map(|d| d.name.clone()).collect(),
        alert_destinations: destinations,
        ..test_config(bootstrap, topic, topic)
    }
}

/// The `webhook-id`s of acme's alert changes so far, as the API lists them.
async fn change_ids(api: &Api) -> BTreeSet<String> {
    let mut ids = BTreeSet::new();
    for alert in acme_alerts(api).await {
        ids.insert(format!("{}_FIRING", alert.alert_id));
        if alert.state == proto::AlertState::AlertResolved as i32 {
            ids.insert(format!("{}_RESOLVED", alert.alert_id));
        }
    }
    ids
}

/// Each `webhook-id`'s requests at `path`, in arrival order.
fn by_id(receiver: &Receiver, path: &str) -> BTreeMap<String, Vec<Received>> {
    let mut ids: BTreeMap<String, Vec<Received>> = BTreeMap::new();
    for request in receiver.received(path) {
        ids.entry(request.header("webhook-id").to_owned())
            .or_default()
            .push(request);
    }
    ids
}

/// The `alert_id` of the failure-rate FIRING taken at `path` (an SLO burn fires beside it,
/// and resolves later than the failure rate).
async fn failure_rate_firing(receiver: &Receiver, path: &str) -> String {
    let is_rate = |r: &Received| r.json()["rule"] == "failure_rate";
    let taken = receiver
        .wait_for(path, "the failure-rate FIRING", |r| r.iter().any(is_rate))
        .await;
    let firing = taken.into_iter().find(is_rate).expect("found");
    firing.json()["alert_id"].as_str().expect("id").to_owned()
}

fn statuses(requests: &[Received]) -> Vec<u16> {
    requests.iter().map(|r| r.answered).collect()
}

/// `query --json alerts dead-letters --tenant T` of the built binary: (destination,
/// message id, attempts, error) of each, sorted.
fn dead_letters_listed(
    grpc: std::net::SocketAddr,
    tenant: &str,
) -> Vec<(String, String, u64, String)> {
    let output = std::process::Command::new(env!("CARGO_BIN_EXE_integration-health"))
        .args(["query", "--json", "--addr", &format!("http://{grpc}")])
        .args(["alerts", "dead-letters", "--tenant", tenant])
        .output()
        .expect("runs");
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(
        output.status.success(),
        "{stdout}{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let listed: Value = serde_json::from_str(&stdout).expect("json");
    let mut letters: Vec<(String, String, u64, String)> = listed["deadLetters"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|l| {
            let text = |field: &str| l[field].as_str().unwrap_or_default().to_owned();
            (
                text("destination"),
                text("messageId"),
                l["attempts"].as_u64().unwrap_or(0),
                text("error"),
            )
        })
        .collect();
    letters.sort();
    letters
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn retries_follow_each_answer_and_the_last_error_becomes_a_dead_letter() {
    const TOPIC: &str = "delivery-retries";
    let (_kafka, bootstrap) = kafka_with_alert_topics(TOPIC);
    let receiver = Receiver::start().await;
    receiver.fail_first_of_each("/flaky", 503, None);
    receiver.fail_first_of_each("/throttled", 429, Some("1"));
    receiver.fail_first_of_each("/capped", 429, Some("3600"));
    receiver.always("/refusing", 400);
    receiver.always("/down", 503);
    let dir = tempfile::tempdir().expect("temp dir");
    let secret = dir.path().join("hook.secret");
    std::fs::write(&secret, SECRET_A).expect("secret");
    let destinations = vec![
        webhook(&receiver, "flaky", &secret),
        webhook(&receiver, "throttled", &secret),
        DestinationSettings {
            max_backoff_ms: 300,
            ..webhook(&receiver, "capped", &secret)
        },
        webhook(&receiver, "refusing", &secret),
        DestinationSettings {
            max_attempts: 3,
            ..webhook(&receiver, "down", &secret)
        },
    ];
    let config = config_with(&bootstrap, TOPIC, destinations);
    let service = TestService::start(&config, Arc::new(ManualClock::new(NOW))).await;
    publish(&producer(&bootstrap), TOPIC, &crm_failing_30_percent()).await;

    // Every change listed reaches each destination's end: taken, or its attempts spent.
    let done = |ids: &BTreeSet<String>| {
        let taken = |path: &str| {
            let seen = by_id(&receiver, path);
            ids.iter().all(|id| {
                seen.get(id)
                    .is_some_and(|r| r.iter().any(|r| r.answered == 200))
            })
        };
        let spent = |path: &str, attempts: usize| {
            let seen = by_id(&receiver, path);
            ids.iter()
                .all(|id| seen.get(id).is_some_and(|r| r.len() >= attempts))
        };
        !ids.is_empty()
            && taken("/flaky")
            && taken("/throttled")
            && taken("/capped")
            && spent("/refusing", 1)
            && spent("/down", 3)
    };
    let deadline = Instant::now() + Duration::from_secs(60);
    let ids = loop {
        let ids = change_ids(&service.api).await;
        if done(&ids) {
            break ids;
        }
        assert!(Instant::now() < deadline, "deliveries never ended: {ids:?}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    // Fired alerts stay listed, so nothing else can have been published meanwhile.
    assert!(ids.len() >= 2, "a failure rate and an SLO burn: {ids:?}");

    for id in &ids {
        let one = |path: &str| by_id(&receiver, path).remove(id).unwrap_or_default();
        assert_eq!(statuses(&one("/flaky")), [503, 200], "{id}");
        assert_eq!(
            statuses(&one("/refusing")),
            [400],
            "{id}: a 400 is not retried"
        );
        assert_eq!(
            statuses(&one("/down")),
            [503, 503, 503],
            "{id}: max_attempts"
        );

        // A 429 with Retry-After: 1 s waited, though the backoff would be 20 ms; the retry
        // keeps the id, carries a later timestamp, and its signature verifies.
        let throttled = one("/throttled");
        assert_eq!(statuses(&throttled), [429, 200], "{id}");
        let waited = throttled[1].arrived_at - throttled[0].answered_at;
        assert!(
            waited >= Duration::from_millis(900),
            "{id}: waited {waited:?}"
        );
        let stamp = |r: &Received| r.header("webhook-timestamp").parse::<i64>().expect("stamp");
        assert!(
            stamp(&throttled[1]) > stamp(&throttled[0]),
            "{id}: same timestamp"
        );
        for attempt in &throttled {
            assert_eq!(attempt.header("webhook-id"), id);
            assert!(
                verified(attempt, SECRET_A),
                "{id}: signature of {}",
                attempt.header("webhook-timestamp")
            );
        }
        assert_ne!(
            throttled[0].header("webhook-signature"),
            throttled[1].header("webhook-signature")
        );

        // Retry-After: 3600 is honoured only up to max_backoff_ms (300 ms).
        let capped = one("/capped");
        assert_eq!(statuses(&capped), [429, 200], "{id}");
        let waited = capped[1].arrived_at - capped[0].answered_at;
        assert!(waited < Duration::from_secs(5), "{id}: waited {waited:?}");
    }

    // The dead letters: one per change for each destination that never took it, with the
    // last error, on the topic and through the CLI, to acme's token only.
    let mut expected: Vec<(String, String, u64, String)> = ids
        .iter()
        .flat_map(|id| {
            [
                (
                    "down".to_owned(),
                    id.clone(),
                    3,
                    "HTTP 503 Service Unavailable".to_owned(),
                ),
                (
                    "refusing".to_owned(),
                    id.clone(),
                    1,
                    "HTTP 400 Bad Request".to_owned(),
                ),
            ]
        })
        .collect();
    expected.sort();
    let on_topic = read_dead_letters(
        &bootstrap,
        &format!("{TOPIC}.alerts.dlq"),
        |r: &[DeadLetter]| r.len() >= expected.len(),
    );
    let mut written: Vec<(String, String, u64, String)> = on_topic
        .iter()
        .map(|(payload, _)| {
            let letter: Value = serde_json::from_slice(payload).expect("json");
            let text = |field: &str| letter[field].as_str().unwrap_or_default().to_owned();
            assert_eq!(letter["alert"]["tenant_id"], "acme");
            (
                text("destination"),
                text("webhook_id"),
                letter["attempts"].as_u64().unwrap_or(0),
                text("error"),
            )
        })
        .collect();
    written.sort();
    assert_eq!(written, expected);
    let grpc = service.service.grpc_addr;
    let listed = tokio::task::spawn_blocking(move || {
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            let listed = dead_letters_listed(grpc, "acme");
            if listed.len() >= 2 * 2 || Instant::now() > deadline {
                return listed;
            }
            std::thread::sleep(Duration::from_millis(200));
        }
    })
    .await
    .expect("listed");
    assert_eq!(listed, expected);
    let other = tokio::task::spawn_blocking(move || dead_letters_listed(grpc, "globex"))
        .await
        .expect("listed");
    assert!(other.is_empty(), "another tenant's dead letters: {other:?}");

    // The metrics agree with what the receivers recorded.
    let (_, exposition) = http_get(service.service.http_addr, "/metrics").await;
    let count = |destination: &str, outcome: &str| {
        metric_sum(
            &exposition,
            "integration_health_alert_deliveries_total",
            &[
                &format!("destination=\"{destination}\""),
                &format!("outcome=\"{outcome}\""),
            ],
        ) as usize
    };
    for (name, retried_each, dead_each) in [
        ("flaky", 1, 0),
        ("throttled", 1, 0),
        ("capped", 1, 0),
        ("refusing", 0, 1),
        ("down", 2, 1),
    ] {
        let requests = receiver.received(&format!("/{name}"));
        let failed = requests.iter().filter(|r| r.answered != 200).count();
        let sent = requests.len() - failed;
        assert_eq!(count(name, "sent"), sent, "{name} sent");
        assert_eq!(count(name, "failed"), failed, "{name} failed");
        assert_eq!(
            count(name, "retried"),
            retried_each * ids.len(),
            "{name} retried"
        );
        assert_eq!(
            count(name, "dead_lettered"),
            dead_each * ids.len(),
            "{name} dead letters"
        );
    }
    service.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_receiver_that_is_down_delays_no_other_receiver() {
    const TOPIC: &str = "delivery-independent";
    let (_kafka, bootstrap) = kafka_with_alert_topics(TOPIC);
    let receiver = Receiver::start().await;
    receiver.always("/down", 503);
    let dir = tempfile::tempdir().expect("temp dir");
    let secret = dir.path().join("hook.secret");
    std::fs::write(&secret, SECRET_A).expect("secret");
    let config = Config {
        // Eight attempts from 1 s, doubling: the down receiver's changes stay pending for
        // minutes, far longer than this test.
        alert_delivery_backoff_ms: 1_000,
        ..config_with(
            &bootstrap,
            TOPIC,
            vec![
                webhook(&receiver, "down", &secret),
                webhook(&receiver, "up", &secret),
            ],
        )
    };
    let clock = Arc::new(ManualClock::new(NOW));
    let service = TestService::start(&config, clock.clone()).await;
    let producer = producer(&bootstrap);
    publish(&producer, TOPIC, &crm_failing_30_percent()).await;
    let alert_id = failure_rate_firing(&receiver, "/up").await;

    // The next change, behind the pending ones in the same partition, reaches the receiver
    // that is up while the one that is down still waits for its retries.
    clock.advance(60_000);
    publish(&producer, TOPIC, &crm_recovering()).await;
    let resolved = format!("{alert_id}_RESOLVED");
    let started = Instant::now();
    receiver
        .wait_for("/up", "the RESOLVED", |r| {
            r.iter().any(|r| r.header("webhook-id") == resolved)
        })
        .await;
    let down = by_id(&receiver, "/down");
    let firing = down.get(&format!("{alert_id}_FIRING")).map_or(0, Vec::len);
    assert!(
        (1..8).contains(&firing),
        "the FIRING is still being retried: {firing} attempts"
    );
    assert!(started.elapsed() < Duration::from_secs(30));

    // Held back by the receiver that is down, the notifier reports a lag.
    let http = service.service.http_addr;
    wait_until(
        "the notifier lag shows",
        Duration::from_secs(10),
        || async move {
            let (_, exposition) = http_get(http, "/metrics").await;
            metric_sum(&exposition, "integration_health_alert_notifier_lag", &[]) >= 1.0
        },
    )
    .await;
    service.stop().await;
}

const KILLED_TOPIC: &str = "delivery-five-kills";
const KILLS: usize = 5;

/// The binary's settings: one webhook, and a 6 s session so a killed notifier's partition
/// moves on quickly.
fn killed_settings(dir: &Path, bootstrap: &str, receiver: &Receiver) -> std::path::PathBuf {
    std::fs::write(dir.join("hook.secret"), SECRET_A).expect("secret");
    let config = dir.join("service.toml");
    let settings = format!(
        "brokers = \"{bootstrap}\"\ntopic = \"{KILLED_TOPIC}\"\ngroup = \"five-kills\"\n\
         grpc_addr = \"127.0.0.1:{}\"\nhttp_addr = \"127.0.0.1:0\"\nstate_dir = \"{}\"\n\
         snapshot_interval_ms = 300\nalert_interval_ms = 200\nalert_delivery_backoff_ms = 50\n\
         alert_default_destinations = [\"hook\"]\n\n[kafka]\n\"session.timeout.ms\" = \"6000\"\n\
         \"heartbeat.interval.ms\" = \"1000\"\n\n[[alert_destinations]]\nname = \"hook\"\n\
         kind = \"webhook\"\nurl = \"{}\"\nsecret_file = \"{}\"\n",
        free_port(),
        dir.join("state").display(),
        receiver.url("/hook"),
        dir.join("hook.secret").display(),
    );
    std::fs::write(&config, settings).expect("config");
    config
}

/// 30 calls of `integration`, 30% failing, or 40 that succeed, around `at`.
fn calls(integration: &str, at: i64, failing: bool) -> Vec<Message> {
    let count = if failing { 30 } else { 40 };
    (0..count)
        .map(|i| {
            let failed = failing && i % 10 < 3;
            let id = format!("{integration}-{}-{i}", if failing { "f" } else { "s" });
            event(&id, integration, "custom_node", at + i, failed, 503)
        })
        .collect()
}

/// `{alert_id}_{state}` of every change on the alerts topic.
fn published_ids(bootstrap: &str, topic: &str) -> BTreeSet<String> {
    read_all_keyed(bootstrap, topic)
        .iter()
        .map(|(_, payload)| {
            let change: Value = serde_json::from_slice(payload).expect("alert json");
            format!(
                "{}_{}",
                change["alert_id"].as_str().expect("id"),
                change["state"].as_str().expect("state")
            )
        })
        .collect()
}

/// Five SIGKILLs in a row, each while deliveries are pending: every state change on the
/// alerts topic is taken, exactly one FIRING and one RESOLVED per integration that the test
/// made fail, and a change taken twice is one that a kill interrupted (taken within moments
/// before the kill, or in flight), under the same `webhook-id`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn five_sigkills_lose_no_delivery_and_repeat_only_under_the_same_id() {
    let (_kafka, bootstrap) = kafka_with_alert_topics(KILLED_TOPIC);
    let receiver = Receiver::start().await;
    // Every answer takes a second, so deliveries are pending whenever the service dies.
    receiver.delay("/hook", Duration::from_secs(1));
    let dir = tempfile::tempdir().expect("temp dir");
    let config = killed_settings(dir.path(), &bootstrap, &receiver);
    let log = dir.path().join("service.log");
    let now = integration_health::clock::Clock::now_ms(&integration_health::clock::SystemClock);
    let producer = producer(&bootstrap);
    let integrations: Vec<String> = (0..KILLS).map(|k| format!("crm{k}")).collect();

    let mut service = spawn_notifying(&config, &log);
    let mut kills = Vec::new();
    for (k, integration) in integrations.iter().enumerate() {
        let before = receiver.arrived("/hook");
        publish(
            &producer,
            KILLED_TOPIC,
            &calls(integration, now - 60_000, true),
        )
        .await;
        wait_until("a delivery is pending", Duration::from_secs(60), || {
            let arrived = receiver.arrived("/hook");
            async move { arrived > before }
        })
        .await;
        tokio::time::sleep(Duration::from_millis(150 * k as u64)).await;
        service.0.kill().expect("SIGKILL");
        kills.push(Instant::now());
        service.0.wait().expect("reaped");
        service = spawn_notifying(&config, &log);
    }
    // Each integration's failure rate has fired (the last one perhaps only once the last
    // restarted process caught up) before the successes that resolve it are sent.
    let alerts_topic = format!("{KILLED_TOPIC}.alerts");
    let rate_firings = |records: &[Keyed]| {
        records
            .iter()
            .filter(|(_, p)| {
                let text = String::from_utf8_lossy(p);
                text.contains("\"failure_rate\"") && text.contains("\"FIRING\"")
            })
            .count()
    };
    read_keyed(&bootstrap, &alerts_topic, |r: &[Keyed]| {
        rate_firings(r) >= KILLS
    });
    for integration in &integrations {
        publish(&producer, KILLED_TOPIC, &calls(integration, now, false)).await;
    }

    // What was published on the alerts topic: a FIRING and a RESOLVED of the failure rate of
    // each integration (and whatever SLO burns fired); read until every change on it was
    // taken and nothing new came for two seconds.
    let rate_changes = |records: &[Keyed]| {
        records
            .iter()
            .filter(|(_, p)| String::from_utf8_lossy(p).contains("\"failure_rate\""))
            .count()
    };
    read_keyed(&bootstrap, &alerts_topic, |r: &[Keyed]| {
        rate_changes(r) >= 2 * KILLS
    });
    let mut ids: BTreeSet<String> = BTreeSet::new();
    loop {
        let now_ids = published_ids(&bootstrap, &alerts_topic);
        if now_ids == ids {
            break;
        }
        ids = now_ids;
        let taken_all = |r: &[Received]| {
            let seen: BTreeSet<&str> = r.iter().map(|r| r.header("webhook-id")).collect();
            ids.iter().all(|id| seen.contains(id.as_str()))
        };
        receiver.wait_for("/hook", "every change", taken_all).await;
        tokio::time::sleep(Duration::from_secs(2)).await;
    }
    drop(service);
    let changes: Vec<Value> = read_all_keyed(&bootstrap, &alerts_topic)
        .iter()
        .map(|(_, payload)| serde_json::from_slice(payload).expect("alert json"))
        .collect();
    for integration in &integrations {
        for state in ["FIRING", "RESOLVED"] {
            let of_it = changes
                .iter()
                .filter(|c| {
                    c["rule"] == "failure_rate" && c["integration_id"] == integration.as_str()
                })
                .filter(|c| c["state"] == state)
                .count();
            assert_eq!(
                of_it, 1,
                "{integration}: one {state} published, none under a new id"
            );
        }
    }
    let ids = published_ids(&bootstrap, &alerts_topic);

    // Each is taken; nothing else is.
    let taken: Vec<Received> = receiver
        .received("/hook")
        .into_iter()
        .filter(|r| r.answered == 200)
        .collect();
    for id in &ids {
        assert!(
            taken.iter().any(|r| r.header("webhook-id") == id),
            "{id} never taken"
        );
    }
    let mut deliveries: BTreeMap<&str, Vec<&Received>> = BTreeMap::new();
    for delivery in &taken {
        let id = delivery.header("webhook-id");
        assert!(ids.contains(id), "{id} is not a published change");
        assert!(verified(delivery, SECRET_A));
        deliveries.entry(id).or_default().push(delivery);
    }
    let close_to_a_kill = |d: &Received| {
        kills
            .iter()
            .any(|k| d.arrived_at < *k && d.answered_at + Duration::from_secs(3) > *k)
    };
    let mut repeats = 0;
    for (id, each) in &deliveries {
        for (first, _) in each.iter().zip(each.iter().skip(1)) {
            repeats += 1;
            assert!(
                close_to_a_kill(first),
                "{id} sent again though no kill interrupted it"
            );
        }
    }
    assert!(repeats <= KILLS * 2, "{repeats} repeats for {KILLS} kills");
    // A RESOLVED is never taken before its FIRING.
    for id in ids.iter().filter(|id| id.ends_with("_RESOLVED")) {
        let firing = id.replace("_RESOLVED", "_FIRING");
        let first = |id: &str| taken.iter().position(|r| r.header("webhook-id") == id);
        assert!(first(&firing) < first(id), "{id} before its FIRING");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rotated_secret_signs_the_next_delivery_without_a_restart() {
    const TOPIC: &str = "delivery-rotation";
    let (_kafka, bootstrap) = kafka_with_alert_topics(TOPIC);
    let receiver = Receiver::start().await;
    let dir = tempfile::tempdir().expect("temp dir");
    let secret = dir.path().join("hook.secret");
    std::fs::write(&secret, SECRET_A).expect("secret");
    let config = config_with(&bootstrap, TOPIC, vec![webhook(&receiver, "hook", &secret)]);
    let clock = Arc::new(ManualClock::new(NOW));
    let service = TestService::start(&config, clock.clone()).await;
    let producer = producer(&bootstrap);
    publish(&producer, TOPIC, &crm_failing_30_percent()).await;
    let alert_id = failure_rate_firing(&receiver, "/hook").await;
    for firing in receiver.received("/hook") {
        assert!(verified(&firing, SECRET_A) && !verified(&firing, SECRET_B));
    }

    // The Secret is rotated in place; the file is checked every second.
    std::fs::write(&secret, SECRET_B).expect("rotated");
    tokio::time::sleep(Duration::from_millis(2_500)).await;
    clock.advance(60_000);
    publish(&producer, TOPIC, &crm_recovering()).await;
    let resolved = format!("{alert_id}_RESOLVED");
    let taken = receiver
        .wait_for("/hook", "the RESOLVED", |r| {
            r.iter().any(|r| r.header("webhook-id") == resolved)
        })
        .await;
    let after = taken
        .iter()
        .find(|r| r.header("webhook-id") == resolved)
        .expect("the RESOLVED");
    assert!(verified(after, SECRET_B), "signed with the new secret");
    assert!(
        !verified(after, SECRET_A),
        "the old secret is no longer used"
    );
    service.stop().await;
}
