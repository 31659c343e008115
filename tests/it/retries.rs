//! Retried attempts through Kafka: `attempt` and `final` out of their bounds go to the DLQ with
//! their reason, and `ListIntegrations` shows retried failures and recovered transactions as a
//! recount of what was sent says, through the replica that owns the tenant and the other one.

use crate::alert_rules::settled_replicas;
use crate::alerts::{attempt, event};
use crate::common;
use crate::recovery::{start, wait_snapshotted};
use crate::replicas::owner_and_other;

use std::collections::BTreeMap;

use common::harness::TestService;
use common::*;
use integration_health::ingest::{HEADER_ERROR, HEADER_REASON};
use integration_health::proto;
use rand::rngs::SmallRng;
use rand::{Rng, SeedableRng};
use serde_json::{json, Value};

const MINUTE: i64 = 60_000;

/// `event` with `field` set to `value`.
fn with(id: &str, field: &str, value: Value) -> Message {
    let mut message = event(id, "crm", "outbound_webhook", NOW - MINUTE, true, 503);
    let mut body: Value = serde_json::from_slice(&message.payload).expect("json");
    body[field] = value;
    message.payload = serde_json::to_vec(&body).expect("json");
    message
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn attempt_and_final_out_of_bounds_go_to_the_dlq_with_their_reason() {
    const INPUT: &str = "retry-fields";
    let (_kafka, bootstrap) = kafka_with_topic(INPUT, 1);
    let service = TestService::start_at(&test_config(&bootstrap, INPUT, INPUT), NOW).await;
    let bad = [
        with("zero", "attempt", json!(0)),
        with("too-many", "attempt", json!(1001)),
        with("text", "attempt", json!("2")),
        with("yes", "final", json!("yes")),
        with("one", "final", json!(1)),
    ];
    let good = [
        with("first", "attempt", json!(1)),
        with("last", "attempt", json!(1000)),
    ];
    publish(
        &producer(&bootstrap),
        INPUT,
        &[&bad[..], &good[..]].concat(),
    )
    .await;
    let letters = read_dead_letters(&bootstrap, &format!("{INPUT}.dlq"), |l| l.len() >= 5);
    let mut seen: Vec<(String, String)> = letters
        .iter()
        .map(|(payload, headers)| {
            let body: Value = serde_json::from_slice(payload).expect("the event as sent");
            let id = body["event_id"].as_str().unwrap_or_default().to_owned();
            assert!(
                headers[HEADER_ERROR].contains("attempt")
                    || headers[HEADER_ERROR].contains("final"),
                "{id}: {}",
                headers[HEADER_ERROR]
            );
            (id, headers[HEADER_REASON].clone())
        })
        .collect();
    seen.sort();
    let reason = |id: &str| (id.to_owned(), "invalid_field".to_owned());
    let expected: Vec<_> = ["one", "text", "too-many", "yes", "zero"]
        .map(reason)
        .into();
    assert_eq!(seen, expected);
    // Every message is seen: five dead-lettered, two counted.
    wait_applied(&service.api, 7).await;
    service.stop().await;
}

/// What a recount of the sent attempts says per integration: (failed attempts, retried
/// failures, recovered transactions).
type Recount = BTreeMap<String, (u64, u64, u64)>;

/// Transactions of three outbound webhooks, each retried up to 3 times; a transaction's last
/// attempt says `final: true` or leaves `final` out, and succeeds or fails at random.
fn retried_transactions(seed: u64) -> (Vec<Message>, Recount) {
    let mut rng = SmallRng::seed_from_u64(seed);
    let mut messages = Vec::new();
    let mut recount = Recount::new();
    for integration in ["crm", "erp", "billing"] {
        let counts = recount.entry(integration.to_owned()).or_default();
        for t in 0..40 {
            let at = NOW - 20 * MINUTE + t * 20_000;
            let attempts: u32 = rng.gen_range(1..=4);
            let succeeds = rng.gen_bool(0.6);
            for n in 1..=attempts {
                let last = n == attempts;
                let failed = !(last && succeeds);
                let said = match last {
                    true => rng.gen_bool(0.5).then_some(true),
                    false => Some(false),
                };
                let id = format!("{integration}-{t}-{n}");
                messages.push(attempt(
                    &id,
                    integration,
                    at + i64::from(n),
                    n,
                    said,
                    failed,
                ));
                counts.0 += u64::from(failed);
                counts.1 += u64::from(failed && !last);
                counts.2 += u64::from(last && !failed && n > 1);
            }
        }
    }
    (messages, recount)
}

async fn listed(replica: &TestService) -> Recount {
    let request = proto::ListIntegrationsRequest {
        tenant_id: "acme".into(),
        ..Default::default()
    };
    let rows = replica
        .api
        .clone()
        .list_integrations(request)
        .await
        .expect("integrations")
        .into_inner()
        .integrations;
    rows.into_iter()
        .map(|r| {
            let counts = (r.failed, r.retried_failures, r.recovered_failures);
            (r.integration_id, counts)
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn retried_and_recovered_match_a_recount_through_either_replica() {
    const INPUT: &str = "retried";
    let (_kafka, bootstrap, _, [a, b]) = settled_replicas(INPUT).await;
    let (messages, recount) = retried_transactions(43);
    assert!(recount.values().all(|c| c.1 > 0 && c.2 > 0), "{recount:?}");
    publish(&producer(&bootstrap), INPUT, &messages).await;
    let replicas = [a, b];
    let (owner, other) = owner_and_other(&replicas, "acme", 2);
    wait_applied(&owner.api, messages.len() as u64).await;
    assert_eq!(listed(owner).await, recount);
    assert_eq!(listed(other).await, recount, "forwarded to the owner");
    let [a, b] = replicas;
    a.stop().await;
    b.stop().await;
}

/// Every snapshot file under `dir`, at any depth.
fn snapshot_files(dir: &std::path::Path) -> Vec<std::path::PathBuf> {
    let mut found = Vec::new();
    for entry in std::fs::read_dir(dir).expect("state dir").flatten() {
        let path = entry.path();
        if path.is_dir() {
            found.extend(snapshot_files(&path));
        } else if path.extension().is_some_and(|e| e == "snap") {
            found.push(path);
        }
    }
    found
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_format_9_snapshot_restores_its_retries_and_clears_recovered_attempts() {
    const INPUT: &str = "retried-snapshot";
    let (_kafka, bootstrap) = kafka_with_topic(INPUT, 1);
    let state = tempfile::tempdir().expect("state dir");
    let (messages, recount) = retried_transactions(9);
    let service = start(&bootstrap, INPUT, INPUT, state.path()).await;
    publish(&producer(&bootstrap), INPUT, &messages).await;
    let mut api = service.api.clone();
    wait_applied(&api, messages.len() as u64).await;
    assert_eq!(listed(&service).await, recount);
    wait_snapshotted(&mut api).await;
    service.stop().await;

    // The snapshots as the previous version wrote them: the same layout under version 9 (the
    // checksum covers the payload alone).
    let files = snapshot_files(state.path());
    assert!(!files.is_empty());
    for path in files {
        let mut image = std::fs::read(&path).expect("snapshot");
        image[8..12].copy_from_slice(&9u32.to_le_bytes());
        std::fs::write(&path, image).expect("rewritten");
    }
    let restarted = start(&bootstrap, INPUT, INPUT, state.path()).await;
    wait_applied(&restarted.api, messages.len() as u64).await;
    let cleared: Recount = recount
        .iter()
        .map(|(id, (failed, retried, _))| (id.clone(), (*failed, *retried, 0)))
        .collect();
    assert_eq!(listed(&restarted).await, cleared);
    restarted.stop().await;
}
