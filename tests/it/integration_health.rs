//! Integration health through the mock cluster: per-integration rows, one integration's series,
//! what drove a change and live updates, each against a recount of the events sent, with
//! latencies drawn from known distributions. A tenant's events are spread over three
//! partitions, so every answer is a merge.

use crate::common;

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use common::harness::{ApiOnly, TestService};
use common::*;
use integration_health::api::convert::ms_to_timestamp;
use integration_health::proto;
use integration_health::query::{
    Granularity, IntegrationOrder, ListIntegrationsRequest, QueryEngine, TypeFilter,
};
use integration_health::store::{Store, StoreLimits, RELATIVE_ACCURACY};
use integration_health::testkit::EmbeddedKafka;
use rand::rngs::SmallRng;
use rand::{Rng, SeedableRng};
use serde_json::json;
use tokio_stream::StreamExt;

const TOPIC: &str = "health-events";
const TENANT: &str = "acme";

/// One event as sent, for the recount.
#[derive(Debug, Clone)]
struct Sent {
    kind: &'static str,
    integration: String,
    at: i64,
    failed: bool,
    code: u16,
    latency: Option<f64>,
}

/// Integrations with their type, failure probability and latency distribution (ms).
const INTEGRATIONS: [(&str, &str, f64); 5] = [
    ("crm", "custom_node", 0.10),
    ("billing", "outbound_webhook", 0.30),
    ("shop", "inbound_webhook", 0.02),
    ("ledger", "prebuilt_integration", 0.50),
    ("quiet", "custom_event", 0.20),
];

fn latency(rng: &mut SmallRng, integration: &str) -> Option<f64> {
    match integration {
        "crm" => Some(rng.gen_range(20.0..80.0)),
        // Log-uniform over three decades: a long tail.
        "billing" => Some(10f64.powf(rng.gen_range(0.0..3.0))),
        "shop" => Some(if rng.gen_bool(0.9) {
            rng.gen_range(1.0..5.0)
        } else {
            rng.gen_range(500.0..2000.0)
        }),
        "ledger" => rng.gen_bool(0.5).then(|| rng.gen_range(100.0..110.0)),
        _ => None,
    }
}

/// `count` events over the last `days` days, more of them recent.
fn events(seed: u64, count: usize, days: i64, tag: &str) -> (Vec<Message>, Vec<Sent>) {
    let mut rng = SmallRng::seed_from_u64(seed);
    let codes = [400u16, 404, 500, 503, 882];
    let mut messages = Vec::new();
    let mut sent = Vec::new();
    for i in 0..count {
        let (integration, kind, failure_rate) = INTEGRATIONS[rng.gen_range(0..INTEGRATIONS.len())];
        let back = if rng.gen_bool(0.5) {
            rng.gen_range(0..2 * DAY)
        } else {
            rng.gen_range(0..days * DAY)
        };
        let at = NOW - back;
        let failed = rng.gen_bool(failure_rate);
        let code = codes[rng.gen_range(0..codes.len())];
        let latency = latency(&mut rng, integration);
        let mut event = json!({
            "event_id": format!("{tag}{i}"), "tenant_id": TENANT, "occurred_at": at,
            "integration_type": kind, "integration_id": integration,
            "integration_name": format!("{integration} service"),
            "outcome": if failed { "failure" } else { "success" },
        });
        if failed {
            event["status_code"] = json!(code);
        }
        if let Some(ms) = latency {
            event["latency_ms"] = json!(ms);
        }
        messages.push(Message {
            // Keyed by event so one tenant's events spread over every partition.
            key: format!("{tag}{i}"),
            payload: serde_json::to_vec(&event).expect("json"),
        });
        sent.push(Sent {
            kind,
            integration: integration.to_owned(),
            at,
            failed,
            code,
            latency,
        });
    }
    (messages, sent)
}

fn exact_quantile(values: &mut [f64], q: f64) -> f64 {
    values.sort_by(f64::total_cmp);
    values[(q * (values.len() - 1) as f64).floor() as usize]
}

fn within(estimate: f64, truth: f64) -> bool {
    (estimate - truth).abs() <= RELATIVE_ACCURACY * truth + 1e-9
}

fn in_range(sent: &[Sent], start: i64, end: i64) -> impl Iterator<Item = &Sent> {
    sent.iter().filter(move |e| e.at >= start && e.at < end)
}

async fn started(partitions: i32) -> (EmbeddedKafka, TestService, String) {
    let (kafka, bootstrap) = kafka_with_topic(TOPIC, partitions);
    let config = test_config(&bootstrap, TOPIC, "health");
    let service = TestService::start_at(&config, NOW).await;
    (kafka, service, bootstrap)
}

fn check_row(row: &proto::IntegrationSummary, sent: &[Sent], start: i64, end: i64) {
    let mine: Vec<&Sent> = in_range(sent, start, end)
        .filter(|e| e.integration == row.integration_id)
        .collect();
    let failed = mine.iter().filter(|e| e.failed).count() as u64;
    let succeeded = mine.len() as u64 - failed;
    assert_eq!(
        (row.failed, row.succeeded),
        (failed, succeeded),
        "{}",
        row.integration_id
    );
    assert!((row.failure_rate - failed as f64 / mine.len() as f64).abs() < 1e-12);
    let mut latencies: Vec<f64> = mine.iter().filter_map(|e| e.latency).collect();
    match &row.latency {
        None => assert!(latencies.is_empty(), "{} has latencies", row.integration_id),
        Some(l) => {
            assert_eq!(l.count, latencies.len() as u64);
            for (q, estimate) in [(0.5, l.p50_ms), (0.95, l.p95_ms), (0.99, l.p99_ms)] {
                let truth = exact_quantile(&mut latencies, q);
                assert!(
                    within(estimate, truth),
                    "{} q{q}: {estimate} vs {truth}",
                    row.integration_id
                );
            }
        }
    }
    let last_failure = mine.iter().filter(|e| e.failed).map(|e| e.at).max();
    assert_eq!(
        row.last_failure.as_ref().map(|t| ts(&Some(*t))),
        last_failure
    );
    let mut codes: BTreeMap<u16, u64> = BTreeMap::new();
    for e in mine.iter().filter(|e| e.failed) {
        *codes.entry(e.code).or_default() += 1;
    }
    let top = codes
        .iter()
        .max_by(|a, b| a.1.cmp(b.1).then(b.0.cmp(a.0)))
        .map_or(0, |(c, _)| u32::from(*c));
    assert_eq!(row.top_error_code, top, "{}", row.integration_id);
    for day in &row.daily_failures {
        let day_start = ts(&day.day_start);
        let expected = mine
            .iter()
            .filter(|e| e.failed && e.at >= day_start && e.at < day_start + DAY)
            .count();
        assert_eq!(
            day.failed, expected as u64,
            "{} on {day_start}",
            row.integration_id
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn integrations_match_a_recount_and_page_in_every_order() {
    let (_kafka, service, bootstrap) = started(3).await;
    let (messages, sent) = events(7, 4_000, 20, "a");
    publish(&producer(&bootstrap), TOPIC, &messages).await;
    wait_applied(&service.api, messages.len() as u64).await;
    let mut api = service.api.clone();
    for order in [
        proto::IntegrationOrder::FailuresDesc,
        proto::IntegrationOrder::FailureRateDesc,
        proto::IntegrationOrder::P99Desc,
        proto::IntegrationOrder::NameAsc,
    ] {
        let mut rows = Vec::new();
        let mut token = String::new();
        loop {
            let page = api
                .list_integrations(proto::ListIntegrationsRequest {
                    tenant_id: TENANT.into(),
                    classes: Default::default(),
                    order_by: order as i32,
                    page_size: 2,
                    page_token: token.clone(),
                    ..Default::default()
                })
                .await
                .expect("page")
                .into_inner();
            assert_eq!(page.total_integrations, INTEGRATIONS.len() as u64);
            let (start, end) = bounds(&page.effective_range);
            for row in &page.integrations {
                check_row(row, &sent, start, end);
            }
            rows.extend(page.integrations);
            token = page.next_page_token;
            if token.is_empty() {
                break;
            }
        }
        let ids: Vec<&str> = rows.iter().map(|r| r.integration_id.as_str()).collect();
        assert_eq!(
            ids.len(),
            INTEGRATIONS.len(),
            "{order:?}: every integration once"
        );
        let sorted = rows.windows(2).all(|w| match order {
            proto::IntegrationOrder::FailuresDesc => w[0].failed >= w[1].failed,
            proto::IntegrationOrder::FailureRateDesc => w[0].failure_rate >= w[1].failure_rate,
            proto::IntegrationOrder::P99Desc => {
                let p99 =
                    |r: &proto::IntegrationSummary| r.latency.as_ref().map_or(-1.0, |l| l.p99_ms);
                p99(&w[0]) >= p99(&w[1])
            }
            _ => w[0].integration_name <= w[1].integration_name,
        });
        assert!(sorted, "{order:?}: {ids:?}");
    }
    let custom_nodes = api
        .list_integrations(proto::ListIntegrationsRequest {
            tenant_id: TENANT.into(),
            classes: Default::default(),
            integration_types: vec![proto::IntegrationType::CustomNode as i32],
            ..Default::default()
        })
        .await
        .expect("filtered")
        .into_inner();
    let ids: Vec<&str> = custom_nodes
        .integrations
        .iter()
        .map(|r| r.integration_id.as_str())
        .collect();
    assert_eq!(ids, ["crm"]);
    service.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_integrations_series_codes_and_groups_match_a_recount() {
    let (_kafka, service, bootstrap) = started(3).await;
    let (messages, sent) = events(8, 3_000, 10, "b");
    publish(&producer(&bootstrap), TOPIC, &messages).await;
    wait_applied(&service.api, messages.len() as u64).await;
    let mut api = service.api.clone();
    let health = api
        .get_integration_health(proto::GetIntegrationHealthRequest {
            tenant_id: TENANT.into(),
            integration_id: "billing".into(),
            granularity: proto::Granularity::Hour as i32,
            range: Some(proto::TimeRange {
                start: Some(ms_to_timestamp(NOW - 3 * DAY)),
                end: Some(ms_to_timestamp(NOW)),
            }),
            ..Default::default()
        })
        .await
        .expect("health")
        .into_inner();
    let (start, end) = bounds(&health.effective_range);
    check_row(
        health.integration.as_ref().expect("summary"),
        &sent,
        start,
        end,
    );
    let billing: Vec<&Sent> = sent.iter().filter(|e| e.integration == "billing").collect();
    assert_eq!(health.series.len() as i64, (end - start) / HOUR);
    for point in &health.series {
        let hour = ts(&point.bucket_start);
        let mine: Vec<&&Sent> = billing
            .iter()
            .filter(|e| e.at >= hour && e.at < hour + HOUR)
            .collect();
        let failed = mine.iter().filter(|e| e.failed).count() as u64;
        assert_eq!(
            (point.failed, point.succeeded),
            (failed, mine.len() as u64 - failed)
        );
        let mut latencies: Vec<f64> = mine.iter().filter_map(|e| e.latency).collect();
        match &point.latency {
            None => assert!(latencies.is_empty()),
            Some(l) => assert!(within(l.p95_ms, exact_quantile(&mut latencies, 0.95))),
        }
    }
    let mut codes: BTreeMap<u32, u64> = BTreeMap::new();
    for e in billing
        .iter()
        .filter(|e| e.failed && e.at >= start && e.at < end)
    {
        *codes.entry(u32::from(e.code)).or_default() += 1;
    }
    let shown: BTreeMap<u32, u64> = health
        .error_codes
        .iter()
        .map(|c| (c.status_code, c.failed))
        .collect();
    assert_eq!(shown, codes);
    assert!(!health.top_failures.is_empty() && health.top_failures.len() <= 5);
    let top = &health.top_failures[0];
    let details = api
        .get_failure_details(proto::GetFailureDetailsRequest {
            tenant_id: TENANT.into(),
            failure_id: top.failure_id.clone(),
            range: health.effective_range,
            ..Default::default()
        })
        .await
        .expect("a top group opens in GetFailureDetails")
        .into_inner();
    assert_eq!(
        details.failure.expect("group").total_errors,
        top.total_errors
    );
    let unknown = api
        .get_integration_health(proto::GetIntegrationHealthRequest {
            tenant_id: TENANT.into(),
            integration_id: "nope".into(),
            ..Default::default()
        })
        .await
        .expect_err("unknown integration");
    assert_eq!(unknown.code(), tonic::Code::NotFound);
    service.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn change_drivers_add_up_to_each_types_change() {
    let (_kafka, service, bootstrap) = started(3).await;
    let (messages, sent) = events(9, 4_000, 20, "c");
    publish(&producer(&bootstrap), TOPIC, &messages).await;
    wait_applied(&service.api, messages.len() as u64).await;
    let mut api = service.api.clone();
    // One day is served by minute buckets, seven by hour buckets.
    for days in [1, 7] {
        let change = api
            .get_percentage_change(proto::GetPercentageChangeRequest {
                tenant_id: TENANT.into(),
                period: Some(proto::Duration {
                    seconds: days * 86_400,
                    nanos: 0,
                }),
                include_drivers: true,
                ..Default::default()
            })
            .await
            .expect("change")
            .into_inner();
        let (now_start, now_end) = bounds(&change.current_range);
        let (then_start, then_end) = bounds(&change.previous_range);
        for t in &change.types {
            let kind = TYPES[(t.integration_type - 1) as usize];
            let type_change = t.failed_current as i64 - t.failed_previous as i64;
            for (drivers, other) in [
                (&t.integration_drivers, &t.other_integrations),
                (&t.code_drivers, &t.other_codes),
            ] {
                assert!(drivers.len() <= 5);
                let other = other.as_ref().expect("other");
                let sum: i64 = drivers.iter().map(|d| d.change).sum::<i64>() + other.change;
                assert_eq!(sum, type_change, "{kind}, {days} days");
                assert_eq!(other.change, other.current as i64 - other.previous as i64);
            }
            let failures = |start, end, pick: &dyn Fn(&Sent) -> bool| {
                in_range(&sent, start, end)
                    .filter(|e| e.kind == kind && e.failed && pick(e))
                    .count() as u64
            };
            for d in &t.integration_drivers {
                let mine = |e: &Sent| e.integration == d.key;
                assert_eq!(d.current, failures(now_start, now_end, &mine), "{}", d.key);
                assert_eq!(
                    d.previous,
                    failures(then_start, then_end, &mine),
                    "{}",
                    d.key
                );
            }
            for d in &t.code_drivers {
                let mine = |e: &Sent| e.code.to_string() == d.key;
                assert_eq!(
                    d.current,
                    failures(now_start, now_end, &mine),
                    "code {}",
                    d.key
                );
                assert_eq!(
                    d.previous,
                    failures(then_start, then_end, &mine),
                    "code {}",
                    d.key
                );
            }
        }
    }
    service.stop().await;
}

/// The next update within `wait`, if any.
async fn next(
    updates: &mut tonic::Streaming<proto::TenantUpdate>,
    wait: Duration,
) -> Option<proto::TenantUpdate> {
    let update = tokio::time::timeout(wait, updates.next())
        .await
        .ok()
        .flatten()?;
    Some(update.expect("an update, not an error"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn watch_sends_an_update_when_events_arrive_and_none_while_idle() {
    let (_kafka, service, bootstrap) = started(2).await;
    let (first, _) = events(10, 50, 2, "d");
    let producer = producer(&bootstrap);
    publish(&producer, TOPIC, &first).await;
    wait_applied(&service.api, first.len() as u64).await;
    let mut updates = service
        .api
        .clone()
        .watch_tenant(proto::WatchTenantRequest {
            tenant_id: TENANT.into(),
            min_interval: Some(proto::Duration {
                seconds: 0,
                nanos: 200_000_000,
            }),
        })
        .await
        .expect("watch")
        .into_inner();
    let initial = next(&mut updates, Duration::from_secs(5))
        .await
        .expect("the current state first");
    assert_eq!(initial.version, 50);
    assert!(
        next(&mut updates, Duration::from_secs(1)).await.is_none(),
        "nothing while idle"
    );
    let (second, _) = events(11, 7, 2, "e");
    publish(&producer, TOPIC, &second).await;
    let moved = next(&mut updates, Duration::from_secs(10))
        .await
        .expect("an update after events");
    let moved = if moved.version < 57 {
        next(&mut updates, Duration::from_secs(10))
            .await
            .expect("the rest of the batch")
    } else {
        moved
    };
    assert_eq!(moved.version, 57);
    assert!(moved.changed_sections.iter().any(|s| s == "overview"));
    service.stop().await;
}

#[tokio::test]
async fn a_slow_watcher_gets_the_newest_state_not_a_backlog() {
    let served = ApiOnly::start(Vec::new(), NOW).await;
    let event = |i: usize| {
        json!({
            "event_id": format!("w{i}"), "tenant_id": TENANT, "occurred_at": NOW - HOUR,
            "integration_type": "custom_node", "integration_id": "crm", "integration_name": "CRM",
            "outcome": "success",
        })
    };
    served.apply(0, &[event(0)]);
    let mut updates = served
        .api
        .clone()
        .watch_tenant(proto::WatchTenantRequest {
            tenant_id: TENANT.into(),
            min_interval: Some(proto::Duration {
                seconds: 0,
                nanos: 100_000_000,
            }),
        })
        .await
        .expect("watch")
        .into_inner();
    let first = updates.next().await.expect("first").expect("update");
    assert_eq!(first.version, 1);
    // 500 events in 5 rounds while the client reads nothing.
    for round in 0..5 {
        let batch: Vec<_> = (1 + round * 100..1 + (round + 1) * 100)
            .map(event)
            .collect();
        served.apply(0, &batch);
        tokio::time::sleep(Duration::from_millis(150)).await;
    }
    let mut received = Vec::new();
    while let Ok(Some(update)) =
        tokio::time::timeout(Duration::from_millis(400), updates.next()).await
    {
        received.push(update.expect("update").version);
    }
    assert!(
        received.len() <= 5,
        "at most one update per change, not one per event: {received:?}"
    );
    assert_eq!(
        received.last(),
        Some(&501),
        "the newest state: {received:?}"
    );
}

#[tokio::test]
async fn snapshot_and_restore_keep_the_cube_exactly() {
    let served = ApiOnly::start(Vec::new(), NOW).await;
    let (messages, _) = events(12, 2_000, 20, "s");
    let payloads: Vec<serde_json::Value> = messages
        .iter()
        .map(|m| serde_json::from_slice(&m.payload).expect("json"))
        .collect();
    served.apply(0, &payloads);
    let clock = Arc::new(integration_health::clock::ManualClock::new(NOW));
    let before = QueryEngine::new(served.store.clone(), clock.clone());
    let restored = Store::new(StoreLimits::default());
    for (key, shared) in served.store.partitions() {
        let bytes = integration_health::snapshot::encode(&shared.read()).expect("encode");
        let state = integration_health::snapshot::decode(
            std::path::Path::new("memory"),
            &bytes,
            &StoreLimits::default(),
        )
        .expect("decode");
        restored.attach(key, Arc::new(parking_lot::RwLock::new(state)));
    }
    let after = QueryEngine::new(Arc::new(restored), clock);
    let list = ListIntegrationsRequest {
        tenant_id: TENANT.into(),
        classes: Default::default(),
        range: None,
        types: TypeFilter::all(),
        order: IntegrationOrder::P99Desc,
        page_size: 50,
        page_token: None,
    };
    assert_eq!(
        before.list_integrations(&list),
        after.list_integrations(&list)
    );
    for id in ["crm", "billing", "ledger"] {
        let health = |engine: &QueryEngine| {
            engine.integration_health(TENANT, None, id, None, Granularity::Hour, "UTC")
        };
        assert_eq!(health(&before), health(&after), "{id}");
    }
    let change = |engine: &QueryEngine| {
        engine.percentage_change(TENANT, None, None, TypeFilter::all(), true)
    };
    assert_eq!(change(&before), change(&after));
}
