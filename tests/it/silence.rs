//! The silence rule through Kafka on the manual clock: a steady integration gone quiet raises
//! an alert that reaches a receiver and resolves on its next event, one muted through the rules
//! API does not, one quiet at this hour on most days never does, and nothing is claimed while
//! a loss of offsets may hide the integration's events.

use crate::alert_rules::{deliveries, grants, put, rule, scope, Routing, ADMIN, OPERATOR};
use crate::alerts::{alerts_of, event, let_it_evaluate, state};
use crate::common;
use crate::recovery::trimmed_topic;

use std::sync::Arc;
use std::time::Duration;

use common::harness::TestService;
use common::*;
use integration_health::clock::ManualClock;
use integration_health::config::Config;
use integration_health::proto;

const MINUTE: i64 = 60_000;
const HOUR: i64 = 60 * MINUTE;
const DAY: i64 = 24 * HOUR;

/// `integration` sending every 5 minutes from 2 hours before to 3 hours after this time of
/// day, on `days` of the previous 7 (12 events an hour, above the default minimum of 10), and
/// last 45 minutes ago.
fn steady(integration: &str, days: std::ops::RangeInclusive<i64>) -> Vec<Message> {
    let mut messages = Vec::new();
    for day in days {
        for i in 0..60 {
            let at = NOW - day * DAY - 2 * HOUR + i * 5 * MINUTE;
            let id = format!("{integration}-{day}-{i}");
            messages.push(event(
                &id,
                integration,
                "prebuilt_integration",
                at,
                false,
                0,
            ));
        }
    }
    let last = format!("{integration}-last");
    messages.push(event(
        &last,
        integration,
        "prebuilt_integration",
        NOW - 45 * MINUTE,
        false,
        0,
    ));
    messages
}

/// acme's silence alerts as (integration, state), through the reader's token.
async fn silences(api: &Api) -> Vec<(String, proto::AlertState)> {
    let alerts = alerts_of(api, proto::AlertRule::Silence, |_| true).await;
    let mut found: Vec<_> = alerts
        .iter()
        .map(|a| (a.integration_id.clone(), state(a)))
        .collect();
    found.sort_by(|a, b| a.0.cmp(&b.0));
    found
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_quiet_steady_integration_is_delivered_unless_muted_or_quiet_on_most_days() {
    const INPUT: &str = "silence-events";
    let routing = Routing::start(INPUT).await;
    let config = Config {
        alert_interval_ms: 100,
        alert_delivery_backoff_ms: 20,
        ..routing.config()
    };
    let clock = Arc::new(ManualClock::new(NOW));
    let service = TestService::start(&config, clock.clone()).await;
    let api = service.api.clone();
    let reader = client_as(service.service.grpc_addr, OPERATOR).await;
    // crm is muted through the rules API before anything is sent.
    let crm = scope(proto::IntegrationType::PrebuiltIntegration, "crm");
    put(
        &api,
        rule(crm, proto::AlertRule::Silence, |r| r.enabled = Some(false)),
        ADMIN,
    )
    .await
    .expect("muted");

    // erp and crm are steady; weekly sends at this hour on 4 of the 7 days, one short.
    let mut messages = steady("erp", 1..=7);
    messages.extend(steady("crm", 1..=7));
    messages.extend(steady("weekly", 1..=4));
    publish(&producer(&routing.bootstrap), INPUT, &messages).await;
    wait_applied(&reader, messages.len() as u64).await;
    routing
        .receiver
        .wait_for("/defaults", "erp's silence", |r| !r.is_empty())
        .await;
    let_it_evaluate().await;
    let firing = ("erp".to_owned(), proto::AlertState::AlertFiring);
    assert_eq!(silences(&reader).await, [firing]);
    let delivered = deliveries(&routing.receiver, "/defaults");
    let silence = |state: &str| ("silence".to_owned(), state.to_owned(), "erp".to_owned());
    assert_eq!(delivered, [silence("FIRING")]);
    let body = routing.receiver.received("/defaults")[0].json();
    assert_eq!(body["severity"], "warning");
    // Silent since the end of the last event's minute, against the 30-minute setting.
    assert_eq!(body["value"], 44.0);
    assert_eq!(body["threshold"], 30.0);

    // erp's next event resolves it, and the receiver hears that too.
    clock.advance(MINUTE);
    let back = event("erp-back", "erp", "prebuilt_integration", NOW + 1, false, 0);
    publish(&producer(&routing.bootstrap), INPUT, &[back]).await;
    routing
        .receiver
        .wait_for("/defaults", "the RESOLVED", |r| r.len() == 2)
        .await;
    assert_eq!(
        deliveries(&routing.receiver, "/defaults"),
        [silence("FIRING"), silence("RESOLVED")]
    );
    service.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_silence_is_claimed_while_lost_offsets_may_hide_events() {
    const INPUT: &str = "silence-lost";
    let (kafka, bootstrap) = kafka_with_topic(INPUT, 1);
    for internal in ["alerts", "rules"] {
        kafka
            .create_topic(&format!("{INPUT}.{internal}"), 1)
            .expect("topic");
    }
    // The oldest offsets are gone before the service starts; erp's steady traffic follows.
    let (_, low, high) = trimmed_topic(&bootstrap, INPUT).await;
    let baseline = steady("erp", 1..=7);
    publish(&producer(&bootstrap), INPUT, &baseline).await;
    let config = Config {
        alert_interval_ms: 100,
        tokens: grants(),
        ..test_config(&bootstrap, INPUT, "silence-lost")
    };
    let clock = Arc::new(ManualClock::new(NOW));
    let service = TestService::start(&config, clock.clone()).await;
    let reader = client_as(service.service.grpc_addr, OPERATOR).await;
    wait_applied(&reader, (high - low) as u64 + baseline.len() as u64).await;

    // Lost at NOW: within twice the 30-minute silence, each round skips erp's silence.
    let http = service.service.http_addr;
    wait_until(
        "silences skipped for the loss",
        Duration::from_secs(30),
        || async move {
            let text = http_get(http, "/metrics").await.1;
            let name = "integration_health_alert_silence_skipped_total";
            metric_sum(&text, name, &["reason=\"lost_offsets\""]) >= 3.0
        },
    )
    .await;
    assert!(silences(&reader).await.is_empty());

    // An hour and a minute on, the loss no longer covers it: erp's silence is claimed.
    clock.advance(HOUR + MINUTE);
    let found = alerts_of(&reader, proto::AlertRule::Silence, |a| !a.is_empty()).await;
    assert_eq!(found.len(), 1);
    assert_eq!(found[0].integration_id, "erp");
    assert_eq!(state(&found[0]), proto::AlertState::AlertFiring);
    service.stop().await;
}
