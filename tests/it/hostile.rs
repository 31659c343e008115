//! Hostile and unlucky input through Kafka: messages that used to crash the owner or grow memory
//! without bound. After each, the service is alive, the partition has moved on, the bad message
//! is in the dead-letter topic with its reason, and the counts of the good events are exact.

use crate::common;

use std::collections::HashMap;
use std::path::Path;

use common::harness::TestService;
use common::*;
use integration_health::ingest::{HEADER_ERROR, HEADER_REASON};
use serde_json::json;

const TOPIC: &str = "hostile";
const MAX_MESSAGE_BYTES: usize = 128 * 1024;

fn event(id: &str, tenant: &str, message: Option<String>) -> serde_json::Value {
    let mut value = json!({
        "event_id": id, "tenant_id": tenant, "occurred_at": NOW - HOUR,
        "integration_type": "custom_node", "integration_id": "node-1",
        "integration_name": "Lookup", "outcome": "failure", "status_code": 500
    });
    if let Some(message) = message {
        value["error_message"] = json!(message);
    }
    value
}

fn keyed(tenant: &str, payload: Vec<u8>) -> Message {
    Message {
        key: tenant.into(),
        payload,
    }
}

fn json_message(value: &serde_json::Value) -> Message {
    let tenant = value["tenant_id"].as_str().unwrap_or("acme");
    keyed(tenant, serde_json::to_vec(value).expect("json"))
}

fn snapshot_bytes(state: &Path) -> u64 {
    let dir = state.join(TOPIC).join("0");
    std::fs::read_dir(dir)
        .expect("snapshot dir")
        .filter_map(Result::ok)
        .map(|e| e.metadata().map_or(0, |m| m.len()))
        .max()
        .unwrap_or(0)
}

async fn service(bootstrap: &str, state: &Path) -> TestService {
    let mut config = test_config(bootstrap, TOPIC, "hostile");
    config.max_message_bytes = MAX_MESSAGE_BYTES;
    config.group_cap_per_tenant = 5;
    config.tenant_cap_per_partition = 10;
    // Every tenant settles at its first event, so past the cap new ones are refused
    // (tests/it/tenant_admission.rs has tenants on probation making room).
    config.tenant_evict_max_events = 0;
    config.state_dir = Some(state.to_owned());
    config.snapshot_interval_ms = 100;
    TestService::start_at(&config, NOW).await
}

async fn snapshot_settled(api: &mut Api) {
    let api = api.clone();
    wait_until(
        "snapshot at the last offset",
        std::time::Duration::from_secs(30),
        || {
            let mut api = api.clone();
            async move {
                ingest_status(&mut api)
                    .await
                    .partitions
                    .iter()
                    .all(|p| p.snapshot_next_offset == p.next_offset)
            }
        },
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hostile_messages_are_dead_lettered_and_the_partition_moves_on() {
    let (_kafka, bootstrap) = kafka_with_topic(TOPIC, 1);
    let state = tempfile::tempdir().expect("state dir");
    let running = service(&bootstrap, state.path()).await;
    let mut api = running.api.clone();

    let depth = 60_000;
    let mut deep = br#"{"x":"#.to_vec();
    deep.extend(std::iter::repeat_n(b'[', depth));
    deep.extend(std::iter::repeat_n(b']', depth));
    deep.push(b'}');
    let mut huge = event("huge", "acme", None);
    huge["padding"] = json!("x".repeat(MAX_MESSAGE_BYTES));
    let long_type = {
        let mut value = event("long", "acme", None);
        value["integration_type"] = json!("t".repeat(100_000));
        value
    };
    let escape = event("esc", "acme", Some("\u{1b}[2J\u{1b}]0;owned\u{7}".into()));
    let messages = vec![
        json_message(&event("good-1", "acme", None)),
        keyed("acme", deep),
        json_message(&huge),
        json_message(&long_type),
        json_message(&escape),
        json_message(&event("good-2", "acme", Some("ordinary".into()))),
    ];
    publish(&producer(&bootstrap), TOPIC, &messages).await;
    wait_applied(&api, messages.len() as u64).await;
    let status = ingest_status(&mut api).await;
    assert_eq!((status.accepted, status.rejected), (2, 4));

    let letters = read_dead_letters(&bootstrap, &format!("{TOPIC}.dlq"), |l| l.len() >= 4);
    let reasons: Vec<&str> = letters
        .iter()
        .map(|(_, h)| h[HEADER_REASON].as_str())
        .collect();
    assert_eq!(
        reasons,
        [
            "malformed_json",
            "too_large",
            "invalid_field",
            "invalid_field"
        ]
    );
    for (_, headers) in &letters {
        assert!(
            headers[HEADER_ERROR].len() <= 512,
            "{}",
            headers[HEADER_ERROR]
        );
    }
    running.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unique_messages_past_the_group_cap_do_not_grow_the_state() {
    let (_kafka, bootstrap) = kafka_with_topic(TOPIC, 1);
    let state = tempfile::tempdir().expect("state dir");
    let running = service(&bootstrap, state.path()).await;
    let mut api = running.api.clone();
    let producer = producer(&bootstrap);

    let first: Vec<Message> = (0..100)
        .map(|i| {
            json_message(&event(
                &format!("a{i}"),
                "acme",
                Some(format!("m{}", i % 5)),
            ))
        })
        .collect();
    publish(&producer, TOPIC, &first).await;
    wait_applied(&api, 100).await;
    snapshot_settled(&mut api).await;
    let before = snapshot_bytes(state.path());

    let unique = 3_700;
    let flood: Vec<Message> = (0..unique)
        .map(|i| {
            json_message(&event(
                &format!("u{i}"),
                "acme",
                Some(format!("unique {i} {}", "x".repeat(500))),
            ))
        })
        .collect();
    publish(&producer, TOPIC, &flood).await;
    wait_applied(&api, 100 + unique).await;
    snapshot_settled(&mut api).await;
    let after = snapshot_bytes(state.path());
    println!(
        "snapshot before the flood: {before} bytes; after {unique} unique messages: {after} bytes"
    );
    // Each event still adds its 8-byte dedup key; nothing of its message is kept.
    let allowance = unique * 16 + 16 * 1024;
    assert!(
        after <= before + allowance,
        "snapshot grew from {before} to {after} bytes"
    );
    let table = failures_page(&mut api, "acme").await;
    let total: u64 = table.failures.iter().map(|f| f.total_errors).sum();
    assert_eq!(total, 100 + unique, "overflowed failures are still counted");
    running.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tenants_past_the_partition_cap_go_to_the_dead_letter_topic() {
    let (_kafka, bootstrap) = kafka_with_topic(TOPIC, 1);
    let state = tempfile::tempdir().expect("state dir");
    let running = service(&bootstrap, state.path()).await;
    let mut api = running.api.clone();
    let messages: Vec<Message> = (0..20)
        .map(|i| json_message(&event(&format!("t{i}"), &format!("tenant-{i}"), None)))
        .collect();
    publish(&producer(&bootstrap), TOPIC, &messages).await;
    wait_applied(&api, 20).await;
    let status = ingest_status(&mut api).await;
    assert_eq!((status.accepted, status.rejected), (10, 10));
    let letters = read_dead_letters(&bootstrap, &format!("{TOPIC}.dlq"), |l| l.len() >= 10);
    let mut reasons: HashMap<String, usize> = HashMap::new();
    for (_, headers) in &letters {
        *reasons.entry(headers[HEADER_REASON].clone()).or_default() += 1;
    }
    assert_eq!(reasons.get("tenant_limit"), Some(&10));
    let (_, metrics) = http_get(running.service.http_addr, "/metrics").await;
    assert_eq!(
        metric_sum(
            &metrics,
            "integration_health_events_rejected_total",
            &["reason=\"tenant_limit\""]
        ),
        10.0
    );
    running.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_flood_of_made_up_tenants_does_not_lock_out_a_real_one() {
    let (_kafka, bootstrap) = kafka_with_topic(TOPIC, 1);
    let state = tempfile::tempdir().expect("state dir");
    let mut config = test_config(&bootstrap, TOPIC, "flooded");
    config.tenant_cap_per_partition = 10;
    config.eviction_interval_ms = 200;
    config.state_dir = Some(state.path().to_owned());
    let running = TestService::start_at(&config, NOW).await;
    let mut api = running.api.clone();
    // The flood: one old event for each of ten made-up tenants fills the cap.
    let flood: Vec<Message> = (0..10)
        .map(|i| {
            let mut junk = event(&format!("junk{i}"), &format!("junk-{i}"), None);
            junk["occurred_at"] = json!(NOW - 5 * HOUR);
            json_message(&junk)
        })
        .collect();
    publish(&producer(&bootstrap), TOPIC, &flood).await;
    wait_applied(&api, 10).await;
    // An eviction round picks the idle ones; a real tenant then gets in, event after event.
    tokio::time::sleep(std::time::Duration::from_millis(600)).await;
    let real: Vec<Message> = (0..5)
        .map(|i| json_message(&event(&format!("real{i}"), "real-tenant", None)))
        .collect();
    publish(&producer(&bootstrap), TOPIC, &real).await;
    wait_applied(&api, 15).await;
    let status = ingest_status(&mut api).await;
    assert_eq!((status.accepted, status.rejected), (15, 0));
    let overview = default_overview(&mut api, "real-tenant").await;
    let failed: u64 = overview.types.iter().map(|t| t.failed).sum();
    assert_eq!(failed, 5);
    let (_, metrics) = http_get(running.service.http_addr, "/metrics").await;
    assert_eq!(
        metric_sum(&metrics, "integration_health_tenants_evicted_total", &[]),
        1.0
    );
    running.stop().await;
}
