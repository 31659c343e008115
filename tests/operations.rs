//! What operators rely on: readiness that tells the truth, and a config check that names the
//! setting at fault.

mod common;

use std::process::Command;
use std::time::Duration;

use common::harness::TestService;
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
    std::fs::write(&good, "[kafka]\n\"sasl.password\" = \"hunter2\"\n[[tokens]]\ntoken = \"s3cret\"\ntenants = [\"*\"]\n").expect("write");
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
