//! Exactly-once effect under damaged snapshots, rebalances and broker faults. Every scenario
//! runs through the mock cluster and ends with every RPC compared with the truth.

mod common;

use std::path::Path;
use std::time::Duration;

use common::harness::TestService;
use common::*;
use integration_health::proto::integration_health_client::IntegrationHealthClient;
use integration_health::testkit::EmbeddedKafka;
use rdkafka::types::{RDKafkaApiKey, RDKafkaRespErr};
use tonic::transport::Channel;

const TENANTS: [&str; 3] = ["acme", "globex", "initech"];

async fn start(bootstrap: &str, topic: &str, group: &str, state_dir: &Path) -> TestService {
    let mut config = test_config(bootstrap, topic, group);
    config.state_dir = Some(state_dir.to_owned());
    config.snapshot_interval_ms = 200;
    TestService::start_at(&config, NOW).await
}

/// Waits until every owned partition has a durable snapshot at its current offset.
async fn wait_snapshotted(api: &mut IntegrationHealthClient<Channel>) {
    wait_until("snapshots caught up", Duration::from_secs(30), || {
        let mut api = api.clone();
        async move {
            let s = ingest_status(&mut api).await;
            s.partitions
                .iter()
                .all(|p| p.next_offset < 0 || p.snapshot_next_offset == p.next_offset)
        }
    })
    .await;
}

fn messages(generated: &Generated) -> Vec<Message> {
    generated.messages.iter().map(|(_, m)| m.clone()).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_damaged_snapshot_falls_back_to_the_previous_one_and_replays_to_the_exact_truth() {
    let (_kafka, bootstrap) = kafka_with_topic("corrupt", 2);
    let state = tempfile::tempdir().expect("state dir");
    let producer = producer(&bootstrap);

    let first = generate_tagged(21, 1_500, NOW, "a");
    let second = generate_tagged(22, 1_500, NOW, "b");
    let mut truth = Truth::default();
    let mut instance = start(&bootstrap, "corrupt", "corrupt", state.path()).await;
    let mut produced = 0;
    for batch in [first, second] {
        let batch_messages = messages(&batch);
        publish(&producer, "corrupt", &batch_messages).await;
        produced += batch_messages.len() as u64;
        truth.extend(batch.truth);
        wait_consumed(std::slice::from_ref(&instance.api), produced, 2).await;
        wait_snapshotted(&mut instance.api).await;
    }
    let ids_before = failure_ids(&mut instance.api, &TENANTS).await;
    instance.stop().await;

    // Flip bytes in the middle of each partition's newest snapshot.
    let mut damaged = 0;
    for partition in 0..2 {
        let dir = state.path().join("corrupt").join(partition.to_string());
        let mut files: Vec<_> = std::fs::read_dir(&dir)
            .expect("snapshot dir")
            .filter_map(Result::ok)
            .map(|e| e.path())
            .collect();
        files.sort();
        assert_eq!(files.len(), 2, "two snapshots kept in {dir:?}");
        let newest = files.last().expect("a snapshot");
        let mut bytes = std::fs::read(newest).expect("read");
        let middle = bytes.len() / 2;
        bytes[middle..middle + 8]
            .iter_mut()
            .for_each(|b| *b ^= 0x5a);
        std::fs::write(newest, bytes).expect("write");
        damaged += 1;
    }
    assert_eq!(damaged, 2);

    let mut instance = start(&bootstrap, "corrupt", "corrupt", state.path()).await;
    wait_consumed(std::slice::from_ref(&instance.api), produced, 2).await;
    assert_matches_truth(&mut instance.api, &truth, &TENANTS).await;
    assert_eq!(
        failure_ids(&mut instance.api, &TENANTS).await,
        ids_before,
        "every failure keeps its id across the restart"
    );
    instance.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn partitions_move_between_two_three_and_one_instances_without_loss_or_double_counting() {
    let (_kafka, bootstrap) = kafka_with_topic("moving", 6);
    let state = tempfile::tempdir().expect("shared state dir");
    let producer = producer(&bootstrap);
    let mut truth = Truth::default();
    let mut produced = 0u64;

    let mut instances = vec![start(&bootstrap, "moving", "movers", state.path()).await];
    instances.push(start(&bootstrap, "moving", "movers", state.path()).await);
    for (round, tag) in ["a", "b", "c"].into_iter().enumerate() {
        if round == 1 {
            instances.push(start(&bootstrap, "moving", "movers", state.path()).await);
        }
        let batch = generate_tagged(30 + round as u64, 1_200, NOW, tag);
        let batch_messages = messages(&batch);
        publish(&producer, "moving", &batch_messages).await;
        produced += batch_messages.len() as u64;
        truth.extend(batch.truth);
        let mut apis: Vec<_> = instances.iter().map(|i| i.api.clone()).collect();
        wait_consumed(&apis, produced, 6).await;
        // Each instance answers for its own partitions; together they must equal the truth.
        let sum = reported(&mut apis, &TENANTS).await;
        assert_eq!(sum.accepted, truth.accepted(), "round {round}");
        assert_eq!(sum.duplicates, truth.duplicates, "round {round}");
        assert_eq!(
            sum.overview,
            expected_overview(&truth, &TENANTS, NOW),
            "round {round}"
        );
    }

    // Two instances leave while events keep flowing; the survivor takes every partition.
    let survivor = instances.pop().expect("three instances");
    let leaving = instances;
    let batch = generate_tagged(40, 1_500, NOW, "d");
    let batch_messages = messages(&batch);
    let publishing = {
        let producer = producer.clone();
        tokio::spawn(async move { publish(&producer, "moving", &batch_messages).await })
    };
    for instance in leaving {
        instance.stop().await;
    }
    publishing.await.expect("published");
    produced += messages(&batch).len() as u64;
    truth.extend(batch.truth);
    let mut api = survivor.api.clone();
    wait_consumed(std::slice::from_ref(&api), produced, 6).await;
    assert_matches_truth(&mut api, &truth, &TENANTS).await;
    survivor.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn broker_outages_and_request_errors_do_not_change_the_counts() {
    let kafka = EmbeddedKafka::start(3).expect("mock cluster");
    kafka
        .create_replicated_topic("faulty", 3, 3)
        .expect("topic");
    kafka
        .create_replicated_topic("faulty.dlq", 1, 3)
        .expect("dlq");
    let bootstrap = kafka.bootstrap_servers();
    let state = tempfile::tempdir().expect("state dir");
    let mut instance = start(&bootstrap, "faulty", "faulty", state.path()).await;
    let producer = producer(&bootstrap);
    let mut truth = Truth::default();
    let mut produced = 0u64;

    for (round, broker) in [1, 2, 3].into_iter().enumerate() {
        let batch = generate_tagged(50 + round as u64, 1_000, NOW, &format!("r{round}"));
        let batch_messages = messages(&batch);
        let publishing = {
            let producer = producer.clone();
            tokio::spawn(async move { publish(&producer, "faulty", &batch_messages).await })
        };
        kafka.cluster().broker_down(broker).expect("broker down");
        kafka.cluster().request_errors(
            RDKafkaApiKey::Fetch,
            &[RDKafkaRespErr::RD_KAFKA_RESP_ERR_NOT_LEADER_FOR_PARTITION; 3],
        );
        kafka.cluster().request_errors(
            RDKafkaApiKey::Produce,
            &[RDKafkaRespErr::RD_KAFKA_RESP_ERR_REQUEST_TIMED_OUT; 2],
        );
        tokio::time::sleep(Duration::from_millis(1_500)).await;
        kafka.cluster().broker_up(broker).expect("broker up");
        publishing.await.expect("published");
        produced += messages(&batch).len() as u64;
        truth.extend(batch.truth);
    }
    wait_consumed(std::slice::from_ref(&instance.api), produced, 3).await;
    assert_matches_truth(&mut instance.api, &truth, &TENANTS).await;
    let letters = read_dead_letters(&bootstrap, "faulty.dlq", |l| {
        l.len() >= truth.dead_letters.len()
    });
    let mut payloads: Vec<Vec<u8>> = letters.into_iter().map(|(p, _)| p).collect();
    payloads.sort();
    payloads.dedup();
    let mut expected = truth.dead_letters.clone();
    expected.sort();
    expected.dedup();
    assert_eq!(payloads, expected);
    instance.stop().await;
}
