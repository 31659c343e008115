//! Three replicas, and any of them answers for the whole topic: each asks the owners of the
//! partitions it does not hold and merges their state with its own, so every RPC on every
//! replica equals the independent recount. A partition whose owner does not answer makes the
//! call UNAVAILABLE, or, when the caller accepts it, a partial answer that names it.

mod common;

use std::time::Duration;

use common::harness::TestService;
use common::*;
use integration_health::api::{ALLOW_PARTIAL, MISSING_PARTITIONS};
use integration_health::proto;
use serde_json::json;
use tonic::Code;

const TOPIC: &str = "replicated";
const PARTITIONS: i32 = 6;

async fn replica(bootstrap: &str) -> (TestService, String) {
    let port = free_port();
    let addr = format!("127.0.0.1:{port}");
    let mut config = test_config(bootstrap, TOPIC, "replicas");
    config.grpc_addr = addr.parse().expect("addr");
    config.advertise_addr = Some(addr.clone());
    (TestService::start_at(&config, NOW).await, addr)
}

/// Waits until one replica reports every partition, each with an owner, all applied.
async fn all_owned_and_applied(
    api: &integration_health::proto::integration_health_client::IntegrationHealthClient<
        tonic::transport::Channel,
    >,
    total: u64,
) {
    wait_until(
        "every partition owned and applied",
        Duration::from_secs(90),
        || {
            let mut api = api.clone();
            async move {
                let s = ingest_status(&mut api).await;
                let owned = s.partitions.len() == PARTITIONS as usize
                    && s.partitions
                        .iter()
                        .all(|p| !p.owner.is_empty() && p.lag == 0);
                owned && seen(&s) == total
            }
        },
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_replica_answers_for_every_partition_exactly() {
    let (_kafka, bootstrap) = kafka_with_topic(TOPIC, PARTITIONS);
    let mut replicas = Vec::new();
    for _ in 0..3 {
        replicas.push(replica(&bootstrap).await);
    }
    let generated = generate(61, 3_000, NOW);
    let messages: Vec<Message> = generated.messages.iter().map(|(_, m)| m.clone()).collect();
    publish(&producer(&bootstrap), TOPIC, &messages).await;
    all_owned_and_applied(&replicas[0].0.api, messages.len() as u64).await;
    for (service, addr) in &replicas {
        let mut api = service.api.clone();
        let local = service.service.store.partitions().len();
        assert!(
            local < PARTITIONS as usize,
            "{addr} holds only some partitions"
        );
        assert_matches_truth(&mut api, &generated.truth, &["acme", "globex", "initech"]).await;
    }

    // A partition claimed by a replica that does not answer.
    let (service, _) = &replicas[0];
    let orphan = (0..PARTITIONS)
        .find(|p| {
            service
                .service
                .store
                .partitions()
                .iter()
                .all(|(k, _)| k.partition != *p)
        })
        .expect("a partition this replica does not own");
    let claim = json!({"addr": "127.0.0.1:1", "partitions": [orphan], "at_ms": i64::MAX / 2});
    let record = Message {
        key: "127.0.0.1:1".into(),
        payload: serde_json::to_vec(&claim).expect("json"),
    };
    publish(
        &producer(&bootstrap),
        &format!("{TOPIC}.members"),
        &[record],
    )
    .await;
    let mut api = service.api.clone();
    let overview = || proto::GetOverviewRequest {
        tenant_id: "acme".into(),
        ..Default::default()
    };
    wait_until("the claim is seen", Duration::from_secs(30), || {
        let mut api = api.clone();
        async move { api.get_overview(overview()).await.is_err() }
    })
    .await;
    let refused = api.get_overview(overview()).await.unwrap_err();
    assert_eq!(refused.code(), Code::Unavailable);
    assert!(
        refused.message().contains(&format!("[{orphan}]")),
        "{}",
        refused.message()
    );
    let mut partial = tonic::Request::new(overview());
    partial
        .metadata_mut()
        .insert(ALLOW_PARTIAL, "true".parse().expect("header"));
    let answer = api.get_overview(partial).await.expect("a partial answer");
    let missing = answer
        .metadata()
        .get(MISSING_PARTITIONS)
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned);
    assert_eq!(missing, Some(orphan.to_string()));

    for (service, _) in replicas {
        service.stop().await;
    }
}
