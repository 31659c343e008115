//! The running service on a manual clock: minute buckets hand over to hour buckets once a range
//! leaves the minute window, and retention evicts old groups and drops late events.

use crate::common;

use std::time::Duration;

use common::harness::TestService;
use common::*;
use integration_health::api::convert::ms_to_timestamp;
use integration_health::clock::ManualClock;
use integration_health::proto::{self};
use serde_json::json;

const TOPIC: &str = "clocked";
const MINUTE: i64 = 60_000;

fn failure(id: &str, at: i64, code: u16) -> Message {
    let payload = json!({
        "event_id": id, "tenant_id": "acme", "occurred_at": at,
        "integration_type": "outbound_webhook", "integration_id": "wh-1",
        "integration_name": "Order push", "outcome": "failure", "status_code": code
    });
    Message {
        key: "acme".into(),
        payload: serde_json::to_vec(&payload).expect("json"),
    }
}

/// Failed outbound webhooks in `[start, end)` and the span the service says it counted.
async fn failed_in(api: &mut Api, start: i64, end: i64) -> (u64, i64, i64) {
    let answer = api
        .get_overview(proto::GetOverviewRequest {
            allow_partial: false,
            tenant_id: "acme".into(),
            range: Some(proto::TimeRange {
                start: Some(ms_to_timestamp(start)),
                end: Some(ms_to_timestamp(end)),
            }),
            integration_types: vec![proto::IntegrationType::OutboundWebhook as i32],
        })
        .await
        .expect("overview")
        .into_inner();
    let range = answer.effective_range.expect("effective range");
    let bound = |t: Option<integration_health::proto::Timestamp>| t.map_or(0, |t| t.seconds * 1000);
    (answer.types[0].failed, bound(range.start), bound(range.end))
}

/// `[start, end)` widened to whole buckets of `width` (`end` is never on a boundary here).
fn rounded_out(start: i64, end: i64, width: i64) -> (i64, i64) {
    (
        start - start.rem_euclid(width),
        end - end.rem_euclid(width) + width,
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn minute_buckets_hand_over_to_hours_and_retention_evicts() {
    let (kafka, bootstrap) = kafka_with_topic(TOPIC, 1);
    let clock = ManualClock::new(NOW);
    let mut config = test_config(&bootstrap, TOPIC, "clocked");
    config.eviction_interval_ms = 50;
    let running = TestService::start(&config, std::sync::Arc::new(clock.clone())).await;
    let mut api = running.api.clone();
    let recent = NOW - 30 * MINUTE;
    publish(
        &producer(&bootstrap),
        TOPIC,
        &[
            failure("recent", recent, 503),
            failure("old", NOW - 3 * DAY, 404),
        ],
    )
    .await;
    wait_applied(&api, 2).await;

    // Inside the minute window the range is rounded to minutes.
    let start = NOW - HOUR;
    let (failed, from, to) = failed_in(&mut api, start, NOW).await;
    assert_eq!(failed, 1);
    assert_eq!((from, to), rounded_out(start, NOW, MINUTE));

    // 49 hours on, the same range has left the minute window: hour buckets answer, still exact.
    clock.advance(49 * HOUR);
    let (failed, from, to) = failed_in(&mut api, start, NOW).await;
    assert_eq!(failed, 1);
    assert_eq!((from, to), rounded_out(start, NOW, HOUR));
    let store = running.service.store.clone();
    wait_until("minute buckets evicted", Duration::from_secs(10), || {
        let store = store.clone();
        async move { store.cardinality().minute_buckets == 0 }
    })
    .await;

    // Past the hour tier the hours are rolled into days and dropped: a range over them is
    // served in whole UTC days, still exact, before and after the upkeep has run.
    clock.set(NOW + 63 * DAY);
    let start = NOW - 4 * DAY;
    let (failed, from, to) = failed_in(&mut api, start, NOW).await;
    assert_eq!(failed, 2);
    assert_eq!((from, to), rounded_out(start, NOW, DAY));
    let rolled = store.clone();
    // Left: two days of counts per type and two of failures per code.
    wait_until("hours rolled and dropped", Duration::from_secs(10), || {
        let store = rolled.clone();
        async move { store.cardinality().buckets == 4 }
    })
    .await;
    let (failed, ..) = failed_in(&mut api, start, NOW).await;
    assert_eq!(failed, 2);

    // Past the day tier every group is evicted, and a late event is dropped and counted.
    let failure_id = api
        .list_failures(proto::ListFailuresRequest {
            tenant_id: "acme".into(),
            range: Some(proto::TimeRange {
                start: Some(ms_to_timestamp(NOW - 4 * DAY)),
                end: Some(ms_to_timestamp(NOW)),
            }),
            ..Default::default()
        })
        .await
        .expect("table")
        .into_inner()
        .failures[0]
        .failure_id
        .clone();
    clock.set(NOW + 401 * DAY);
    let evicted = store.clone();
    wait_until("groups evicted", Duration::from_secs(10), || {
        let store = evicted.clone();
        async move { store.cardinality().groups == 0 }
    })
    .await;
    let gone = api
        .get_failure_details(proto::GetFailureDetailsRequest {
            tenant_id: "acme".into(),
            failure_id,
            ..Default::default()
        })
        .await
        .expect_err("evicted");
    assert_eq!(gone.code(), tonic::Code::NotFound);
    publish(
        &producer(&bootstrap),
        TOPIC,
        &[failure("late", recent, 503)],
    )
    .await;
    wait_applied(&api, 3).await;
    let status = ingest_status(&mut api).await;
    assert_eq!((status.accepted, status.late_dropped), (2, 1));

    running.stop().await;
    drop(kafka);
}
