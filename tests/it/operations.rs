//! What operators rely on: readiness that tells the truth, and a config check that names the
//! setting at fault.

use crate::common;

use std::collections::HashMap;
use std::process::Command;
use std::time::Duration;

use common::harness::TestService;
use common::tansu::Tansu;
use common::*;
use tonic_health::pb::health_check_response::ServingStatus;
use tonic_health::pb::health_client::HealthClient;
use tonic_health::pb::HealthCheckRequest;

const BIN: &str = env!("CARGO_BIN_EXE_integration-health");

async fn grpc_health(addr: std::net::SocketAddr) -> i32 {
    let channel = channel(addr).await;
    HealthClient::new(channel)
        .check(HealthCheckRequest {
            service: String::new(),
        })
        .await
        .map(|r| r.into_inner().status)
        .unwrap_or(ServingStatus::Unknown as i32)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn readiness_turns_on_only_after_partitions_are_assigned_and_caught_up() {
    let (kafka, bootstrap) = kafka_with_topic("ready", 2);
    let generated = generate(5, 3_000, NOW);
    let messages: Vec<Message> = generated.messages.iter().map(|(_, m)| m.clone()).collect();
    publish(&producer(&bootstrap), "ready", &messages).await;

    let running = TestService::start_at(&test_config(&bootstrap, "ready", "ready"), NOW).await;
    let service = &running.service;
    let (live, _) = http_get(service.http_addr, "/healthz").await;
    assert_eq!(live, 200, "alive from the start");
    // The group's first join takes seconds, so the service starts out not ready.
    let (status, body) = http_get(service.http_addr, "/readyz").await;
    assert_eq!(status, 503, "{body}");
    assert!(body.contains("not ready"));
    assert_ne!(
        grpc_health(service.grpc_addr).await,
        ServingStatus::Serving as i32
    );

    let addr = service.http_addr;
    wait_until("ready", Duration::from_secs(60), || async move {
        http_get(addr, "/readyz").await.0 == 200
    })
    .await;
    let mut api = client(service.grpc_addr).await;
    let status = ingest_status(&mut api).await;
    let consumed = seen(&status);
    assert!(
        status.partitions.iter().all(|p| p.lag <= 1_000),
        "ready means caught up to within the lag bound"
    );
    assert!(consumed + 2 * 1_000 >= messages.len() as u64);
    let grpc = service.grpc_addr;
    wait_until(
        "gRPC health follows",
        Duration::from_secs(5),
        || async move { grpc_health(grpc).await == ServingStatus::Serving as i32 },
    )
    .await;

    running.stop().await;
    drop(kafka);
}

#[test]
fn config_check_names_the_bad_setting_and_masks_secrets() {
    let dir = tempfile::tempdir().expect("temp dir");
    let bad = dir.path().join("bad.toml");
    std::fs::write(&bad, "retention_days = 1\n").expect("write");
    let output = Command::new(BIN)
        .args(["config", "check"])
        .arg(&bad)
        .output()
        .expect("runs");
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("retention_days"), "{stderr}");

    let unknown = dir.path().join("unknown.toml");
    std::fs::write(&unknown, "retension_days = 30\n").expect("write");
    let output = Command::new(BIN)
        .args(["config", "check", "--config"])
        .arg(&unknown)
        .output()
        .expect("runs");
    assert!(!output.status.success());
    assert!(String::from_utf8_lossy(&output.stderr).contains("retension_days"));

    let good = dir.path().join("good.toml");
    std::fs::write(&good, "[kafka]\n\"sasl.password\" = \"hunter2\"\n[[tokens]]\nname = \"t1\"\ntoken = \"s3cret\"\ntenants = [\"*\"]\n").expect("write");
    let output = Command::new(BIN)
        .args(["config", "check", "--brokers", "k1:9092", "--config"])
        .arg(&good)
        .env("IH_TOPIC", "from-env")
        .output()
        .expect("runs");
    let printed = succeeded(&output);
    assert!(
        printed.contains("brokers = \"k1:9092\""),
        "flag wins: {printed}"
    );
    assert!(
        printed.contains("topic = \"from-env\""),
        "env beats the file's default: {printed}"
    );
    assert!(
        !printed.contains("hunter2") && !printed.contains("s3cret"),
        "{printed}"
    );
}

/// Every topic of the cluster with its partition count and, for those asked, their settings.
async fn topics_of(
    bootstrap: &str,
    policies_of: &[&str],
) -> (
    HashMap<String, usize>,
    HashMap<String, HashMap<String, String>>,
) {
    use rdkafka::admin::{AdminClient, AdminOptions, ResourceSpecifier};
    use rdkafka::consumer::{BaseConsumer, Consumer};
    let config = rdkafka::ClientConfig::new()
        .set("bootstrap.servers", bootstrap)
        .clone();
    let consumer: BaseConsumer = config.create().expect("consumer");
    let metadata = consumer
        .fetch_metadata(None, Duration::from_secs(10))
        .expect("metadata");
    let partitions = metadata
        .topics()
        .iter()
        .map(|t| (t.name().to_owned(), t.partitions().len()))
        .collect();
    if policies_of.is_empty() {
        return (partitions, HashMap::new());
    }
    let admin: AdminClient<rdkafka::client::DefaultClientContext> = config.create().expect("admin");
    let resources: Vec<_> = policies_of
        .iter()
        .map(|t| ResourceSpecifier::Topic(t))
        .collect();
    let described = admin
        .describe_configs(resources.iter(), &AdminOptions::new())
        .await
        .expect("DescribeConfigs answered");
    let mut policies = HashMap::new();
    for (topic, resource) in policies_of.iter().zip(described) {
        let resource = resource.expect("described");
        let settings = resource
            .entries
            .iter()
            .filter_map(|e| Some((e.name.clone(), e.value.clone()?)))
            .collect();
        policies.insert((*topic).to_owned(), settings);
    }
    (partitions, policies)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn internal_topics_are_created_on_a_broker_that_does_not_create_them_on_first_use() {
    let tansu = Tansu::start();
    tansu.create_topic("orders", 3).await;
    let mut config = test_config(&tansu.bootstrap, "orders", "orders");
    config.input_keyed_by_tenant = false;
    let running = TestService::start_at(&config, NOW).await;

    let (partitions, policies) =
        topics_of(&tansu.bootstrap, &["orders.issues", "orders.alerts"]).await;
    assert_eq!(
        partitions.get("orders.by-tenant"),
        Some(&3),
        "{partitions:?}"
    );
    assert!(partitions.contains_key("orders.dlq"), "{partitions:?}");
    for compacted in ["orders.issues", "orders.alerts"] {
        assert_eq!(
            policies[compacted]["cleanup.policy"], "compact",
            "{compacted}"
        );
    }
    // A week before an alert record may be compacted away, so a notifier that far behind
    // still reads every FIRING.
    assert_eq!(
        policies["orders.alerts"]
            .get("min.compaction.lag.ms")
            .map(String::as_str),
        Some("604800000"),
        "{:?}",
        policies["orders.alerts"]
    );

    // Events go through the repartition stage to the counts, and the service becomes ready.
    let generated = generate(9, 1_500, NOW);
    let messages: Vec<Message> = generated.messages.iter().map(|(_, m)| m.clone()).collect();
    publish(&producer(&tansu.bootstrap), "orders", &messages).await;
    let mut api = running.api.clone();
    wait_applied(&api, messages.len() as u64).await;
    assert_matches_truth(&mut api, &generated.truth, &["acme", "globex", "initech"]).await;
    let addr = running.service.http_addr;
    wait_until("ready", Duration::from_secs(60), || async move {
        http_get(addr, "/readyz").await.0 == 200
    })
    .await;
    running.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_missing_or_misshapen_internal_topic_holds_readiness_and_says_what_it_needs() {
    let tansu = Tansu::start();
    tansu.create_topic("shop", 3).await;
    tansu.create_topic("shop.by-tenant", 2).await;
    let mut config = test_config(&tansu.bootstrap, "shop", "shop");
    config.input_keyed_by_tenant = false;
    config.create_internal_topics = false;
    let running = TestService::start_at(&config, NOW).await;
    let addr = running.service.http_addr;
    let (status, body) = http_get(addr, "/readyz").await;
    assert_eq!(status, 503, "{body}");
    for needed in [
        "topic shop.by-tenant has 2 partitions but needs 3 partitions",
        "topic shop.issues does not exist",
        "topic shop.alerts does not exist",
        "cleanup.policy=compact",
    ] {
        assert!(body.contains(needed), "{needed:?} in {body}");
    }
    // Still held back a while later: nothing was created behind the operator's back.
    tokio::time::sleep(Duration::from_secs(1)).await;
    assert_eq!(http_get(addr, "/readyz").await.0, 503);
    let (partitions, _) = topics_of(&tansu.bootstrap, &[]).await;
    assert!(!partitions.contains_key("shop.issues"));
    running.stop().await;
}
