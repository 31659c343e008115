//! Producers that do not key by tenant, and whose retries land on other partitions: the
//! repartition stage re-keys every event by tenant before counting, so every RPC still equals
//! the recount, duplicates included, and every rejected event is in the dead-letter topic.

use crate::common;

use std::time::Duration;

use common::harness::TestService;
use common::*;
use integration_health::testkit::EmbeddedKafka;
use rand::rngs::SmallRng;
use rand::{Rng, SeedableRng};

const TOPIC: &str = "unkeyed";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn retries_on_other_partitions_are_counted_once() {
    let kafka = EmbeddedKafka::start(1).expect("mock cluster");
    kafka.create_topic(TOPIC, 3).expect("input topic");
    kafka
        .create_topic(&format!("{TOPIC}.by-tenant"), 3)
        .expect("repartition topic");
    kafka
        .create_topic(&format!("{TOPIC}.dlq"), 1)
        .expect("dead-letter topic");
    let bootstrap = kafka.bootstrap_servers();
    let mut config = test_config(&bootstrap, TOPIC, "unkeyed");
    config.input_keyed_by_tenant = false;
    // As a replica: a tenant's questions then go to the one partition that holds it.
    let port = free_port();
    config.grpc_addr = format!("127.0.0.1:{port}").parse().expect("addr");
    as_replica(&mut config, &format!("127.0.0.1:{port}"));
    let running = TestService::start_at(&config, NOW).await;

    // Random keys: a tenant's events, and the two copies of a retried one, scatter.
    let generated = generate(71, 3_000, NOW);
    let mut rng = SmallRng::seed_from_u64(71);
    let messages: Vec<Message> = generated
        .messages
        .iter()
        .map(|(_, m)| Message {
            key: format!("k{}", rng.gen_range(0..1_000)),
            payload: m.payload.clone(),
        })
        .collect();
    assert!(
        generated.truth.duplicates > 0,
        "the batch has retried events"
    );
    publish(&producer(&bootstrap), TOPIC, &messages).await;

    let mut api = running.api.clone();
    wait_applied(&api, messages.len() as u64).await;
    // The stage reports how far it has read the input: all of it.
    wait_for_status(
        &api,
        "the stage has read its input",
        Duration::from_secs(20),
        |s| s.upstream_partitions.len() == 3 && s.upstream_partitions.iter().all(|p| p.lag == 0),
    )
    .await;
    assert_matches_truth(&mut api, &generated.truth, &["acme", "globex", "initech"]).await;
    let letters = read_dead_letters(&bootstrap, &format!("{TOPIC}.dlq"), |l| {
        l.len() >= generated.truth.dead_letters.len()
    });
    assert_eq!(letters.len(), generated.truth.dead_letters.len());

    // Each tenant sits in the one partition the consistent partitioner gives its id, and a
    // question about it is answered from that partition alone, exactly.
    for tenant in ["acme", "globex", "initech"] {
        let answer = api
            .get_overview(integration_health::proto::GetOverviewRequest {
                tenant_id: tenant.into(),
                ..Default::default()
            })
            .await
            .expect("overview");
        let covered = answer
            .metadata()
            .get(integration_health::api::COVERED_PARTITIONS)
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned);
        let expected = integration_health::cluster::tenant_partition(tenant, 3);
        assert_eq!(covered, Some(expected.to_string()), "{tenant}");
    }
    running.stop().await;
    drop(kafka);
}

/// The partitions a status lists, counting and upstream, each as (topic, partition).
fn listed(status: &integration_health::proto::GetIngestStatusResponse) -> (Vec<i32>, Vec<i32>) {
    let partitions = status.partitions.iter().map(|p| p.partition).collect();
    let upstream = status
        .upstream_partitions
        .iter()
        .map(|p| p.partition)
        .collect();
    (partitions, upstream)
}

async fn ready(addr: std::net::SocketAddr) -> bool {
    http_get(addr, "/readyz").await.0 == 200
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn status_and_readiness_follow_ownership_when_both_stages_rebalance() {
    const MOVING: &str = "moving-in";
    let kafka = EmbeddedKafka::start(1).expect("mock cluster");
    kafka.create_topic(MOVING, 4).expect("input topic");
    kafka
        .create_topic(&format!("{MOVING}.by-tenant"), 4)
        .expect("repartition topic");
    let bootstrap = kafka.bootstrap_servers();
    let mut config = test_config(&bootstrap, MOVING, "movers");
    config.input_keyed_by_tenant = false;
    let first = TestService::start_at(&config, NOW).await;
    let generated = generate(72, 1_000, NOW);
    let messages: Vec<Message> = generated.messages.iter().map(|(_, m)| m.clone()).collect();
    publish(&producer(&bootstrap), MOVING, &messages).await;
    wait_for_status(
        &first.api,
        "the first holds all",
        Duration::from_secs(30),
        |s| {
            let (partitions, upstream) = listed(s);
            partitions.len() == 4
                && upstream.len() == 4
                && s.upstream_partitions.iter().all(|p| p.lag == 0)
        },
    )
    .await;

    // A second instance joins: both groups (the stage's and the counters') rebalance, and
    // each partition is then listed by exactly one instance, and both are ready.
    let second = TestService::start_at(&config, NOW).await;
    let all = vec![0, 1, 2, 3];
    wait_until(
        "each partition listed once",
        Duration::from_secs(60),
        || {
            let (mut a, mut b) = (first.api.clone(), second.api.clone());
            let all = all.clone();
            async move {
                let (pa, ua) = listed(&ingest_status(&mut a).await);
                let (pb, ub) = listed(&ingest_status(&mut b).await);
                let split = |x: &Vec<i32>, y: &Vec<i32>| {
                    let mut both: Vec<i32> = x.iter().chain(y).copied().collect();
                    both.sort_unstable();
                    !x.is_empty() && !y.is_empty() && both == all
                };
                split(&pa, &pb) && split(&ua, &ub)
            }
        },
    )
    .await;
    for service in [&first, &second] {
        let addr = service.service.http_addr;
        wait_until("ready after the rebalance", Duration::from_secs(30), || {
            ready(addr)
        })
        .await;
    }

    // The second leaves: the first takes every partition of both stages back, and is ready.
    second.stop().await;
    wait_for_status(
        &first.api,
        "the first holds all again",
        Duration::from_secs(60),
        |s| {
            let (partitions, upstream) = listed(s);
            partitions.len() == 4 && upstream.len() == 4
        },
    )
    .await;
    let addr = first.service.http_addr;
    wait_until("ready alone", Duration::from_secs(30), || ready(addr)).await;
    // Re-published tails after the hand-overs may add duplicates; what is accepted is exact.
    let accepted = generated.truth.accepted();
    wait_for_status(
        &first.api,
        "every event counted",
        Duration::from_secs(60),
        move |s| s.accepted == accepted && s.partitions.iter().all(|p| p.lag == 0),
    )
    .await;
    let mut apis = [first.api.clone()];
    let tenants = ["acme", "globex", "initech"];
    assert_eq!(
        reported(&mut apis, &tenants).await.overview,
        expected_overview(&generated.truth, &tenants, NOW)
    );
    first.stop().await;
}
