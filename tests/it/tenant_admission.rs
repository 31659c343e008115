//! Tenant admission at the cap, through Kafka: a flood of junk tenants cannot keep a real
//! tenant out or evict a settled one, and every refusal is in the dead-letter topic, the
//! counters and the cap-full gauge.

use crate::common;

use std::collections::BTreeMap;
use std::sync::Arc;

use common::harness::TestService;
use common::*;
use integration_health::clock::ManualClock;
use integration_health::ingest::HEADER_REASON;
use serde_json::json;

const TOPIC: &str = "admission";
const DLQ: &str = "admission.dlq";
const CAP: usize = 4;
const MINUTE: i64 = 60_000;

/// One event of `tenant`, a failure every third, dated a little before the test's now.
fn event(tenant: &str, n: usize) -> Message {
    let failed = n % 3 == 0;
    let mut event = json!({
        "event_id": format!("{tenant}-{n}"), "tenant_id": tenant,
        "occurred_at": NOW - 30 * MINUTE + n as i64,
        "integration_type": "outbound_webhook", "integration_id": "hook",
        "integration_name": "Order hook",
        "outcome": if failed { "failure" } else { "success" },
    });
    if failed {
        event["status_code"] = json!(503);
    }
    Message {
        key: tenant.into(),
        payload: serde_json::to_vec(&event).expect("json"),
    }
}

/// Publishes on the service's clock and counts what each tenant sent.
struct Sender {
    service: TestService,
    clock: Arc<ManualClock>,
    producer: rdkafka::producer::FutureProducer,
    sent: BTreeMap<String, usize>,
    total: u64,
}

impl Sender {
    /// `count` more events of each tenant, arriving at `at_ms` on the service's clock, applied
    /// before this returns.
    async fn send(&mut self, tenants: &[&str], count: usize, at_ms: i64) {
        self.clock.set(at_ms);
        let mut messages = Vec::new();
        for tenant in tenants {
            let sent = self.sent.entry((*tenant).to_owned()).or_default();
            messages.extend((*sent..*sent + count).map(|n| event(tenant, n)));
            *sent += count;
        }
        publish(&self.producer, TOPIC, &messages).await;
        self.total += messages.len() as u64;
        wait_applied(&self.service.api, self.total).await;
    }

    /// The tenant's failed and succeeded events over the overview's range, summed over types.
    async fn counted(&self, tenant: &str) -> (u64, u64) {
        let mut api = self.service.api.clone();
        let o = default_overview(&mut api, tenant).await;
        let failed = o.types.iter().map(|t| t.failed).sum();
        (failed, o.types.iter().map(|t| t.succeeded).sum())
    }

    /// What the tenant sent: (failed, succeeded), by the rule `event` follows.
    fn recount(&self, tenant: &str) -> (u64, u64) {
        let sent = self.sent.get(tenant).copied().unwrap_or(0);
        let failed = (0..sent).filter(|n| n % 3 == 0).count() as u64;
        (failed, sent as u64 - failed)
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_flood_of_junk_tenants_neither_keeps_a_real_one_out_nor_evicts_a_settled_one() {
    let (_kafka, bootstrap) = kafka_with_topic(TOPIC, 1);
    let mut config = test_config(&bootstrap, TOPIC, "admission");
    config.tenant_cap_per_partition = CAP;
    let clock = Arc::new(ManualClock::new(NOW));
    let service = TestService::start(&config, clock.clone()).await;
    let mut s = Sender {
        service,
        clock,
        producer: producer(&bootstrap),
        sent: BTreeMap::new(),
        total: 0,
    };

    // A tenant settles: an event in each of three minutes.
    for m in 0..3 {
        s.send(&["steady"], 1, NOW + m * MINUTE).await;
    }
    // The flood: twelve junk tenants of four events each, all in one minute, fill the cap and
    // churn through the slots the settled tenant leaves.
    let junk: Vec<String> = (0..12).map(|i| format!("junk-{i}")).collect();
    let junk: Vec<&str> = junk.iter().map(String::as_str).collect();
    let flood_at = NOW + 4 * MINUTE;
    for tenant in &junk {
        s.send(&[tenant], 4, flood_at).await;
    }
    // A real tenant sends an event a second while the flood goes on, a new junk tenant after
    // each of its events: it is admitted at its first and never evicted.
    let more: Vec<String> = (0..11).map(|i| format!("late-junk-{i}")).collect();
    for (second, tenant) in more.iter().enumerate() {
        let at = flood_at + MINUTE + second as i64 * 1000;
        s.send(&["newcomer"], 1, at).await;
        s.send(&[tenant.as_str()], 4, at + 500).await;
    }
    for tenant in ["steady", "newcomer"] {
        assert_eq!(s.counted(tenant).await, s.recount(tenant), "{tenant}");
    }

    // Two more real tenants settle over three minutes; then every slot is settled and a new
    // tenant is refused.
    for m in 0..3 {
        s.send(&["second", "third"], 1, flood_at + (3 + m) * MINUTE)
            .await;
    }
    s.send(&["refused"], 2, flood_at + 7 * MINUTE).await;
    for tenant in ["steady", "newcomer", "second", "third"] {
        assert_eq!(s.counted(tenant).await, s.recount(tenant), "{tenant}");
    }
    assert_eq!(s.counted("refused").await, (0, 0));

    let letters = read_dead_letters(&bootstrap, DLQ, |l| l.len() >= 2);
    let reasons: Vec<&str> = letters
        .iter()
        .map(|(_, h)| h[HEADER_REASON].as_str())
        .collect();
    assert_eq!(reasons, ["tenant_limit", "tenant_limit"]);
    for (payload, _) in &letters {
        let event: serde_json::Value = serde_json::from_slice(payload).expect("the event");
        assert_eq!(event["tenant_id"], "refused");
    }

    let (status, text) = http_get(s.service.service.http_addr, "/metrics").await;
    assert_eq!(status, 200);
    let partition = ["topic=\"admission\"", "partition=\"0\""];
    // Every junk tenant made room for a later one or for a real one, and nothing else did.
    let evicted = metric_sum(
        &text,
        "integration_health_tenants_evicted_total",
        &partition,
    );
    assert_eq!(evicted, (junk.len() + more.len()) as f64, "{text}");
    for tenant in junk.iter().copied().chain(more.iter().map(String::as_str)) {
        assert_eq!(s.counted(tenant).await, (0, 0), "{tenant} was evicted");
    }
    let refused = metric_sum(
        &text,
        "integration_health_tenants_refused_total",
        &partition,
    );
    assert_eq!(refused, 2.0);
    let full = metric_sum(&text, "integration_health_tenant_cap_full", &partition);
    assert_eq!(full, 1.0, "the gauge the shipped alert rule reads");
    let rules = std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/deploy/prometheus/integration-health.rules.yml"
    ))
    .expect("the shipped rules");
    assert!(rules.contains("integration_health_tenant_cap_full"));
    s.service.stop().await;
}
