//! Exactly-once effect under damaged snapshots, rebalances and broker faults. Every scenario
//! runs through the mock cluster and ends with every RPC compared with the truth.

use crate::common;

use std::path::Path;
use std::time::Duration;

use common::harness::TestService;
use common::*;
use integration_health::testkit::EmbeddedKafka;
use rdkafka::types::{RDKafkaApiKey, RDKafkaRespErr};

const TENANTS: [&str; 3] = ["acme", "globex", "initech"];

pub(crate) async fn start(
    bootstrap: &str,
    topic: &str,
    group: &str,
    state_dir: &Path,
) -> TestService {
    let mut config = test_config(bootstrap, topic, group);
    config.state_dir = Some(state_dir.to_owned());
    config.snapshot_interval_ms = 200;
    TestService::start_at(&config, NOW).await
}

/// Waits until every owned partition has a durable snapshot at its current offset.
pub(crate) async fn wait_snapshotted(api: &mut Api) {
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
    // A dead letter retried through a broker outage may be there twice: wait for every
    // distinct one, not for a count.
    let distinct = truth.distinct_dead_letters().len();
    let letters = read_dead_letters(&bootstrap, "faulty.dlq", |l| {
        l.iter()
            .map(|(p, _)| p)
            .collect::<std::collections::HashSet<_>>()
            .len()
            >= distinct
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

/// `count` valid events of tenant `acme`, each about 1 KB, as (payload, failed).
fn big_events(count: usize) -> Vec<(Vec<u8>, bool)> {
    let padding = "x".repeat(900);
    (0..count)
        .map(|i| {
            let failed = i % 3 == 0;
            let mut event = serde_json::json!({
                "event_id": format!("big-{i}"),
                "tenant_id": "acme",
                "occurred_at": NOW - (i as i64 % 600) * 60_000,
                "integration_type": "outbound_webhook",
                "integration_id": "owh-1",
                "integration_name": "ERP push",
                "outcome": if failed { "failure" } else { "success" },
                "error_message": padding,
            });
            if failed {
                event["status_code"] = serde_json::json!(503);
            }
            (serde_json::to_vec(&event).expect("json"), failed)
        })
        .collect()
}

/// Publishes every payload to partition 0 of `topic`, in order, without waiting for each.
async fn publish_in_order(bootstrap: &str, topic: &str, payloads: &[(Vec<u8>, bool)]) {
    let producer = producer(bootstrap);
    let sends: Vec<_> = payloads
        .iter()
        .map(|(payload, _)| {
            let record = rdkafka::producer::FutureRecord::to(topic)
                .partition(0)
                .key("acme")
                .payload(payload);
            producer.send_result(record).expect("queued")
        })
        .collect();
    for send in sends {
        send.await.expect("delivered").expect("acknowledged");
    }
}

/// More than the mock cluster keeps per partition, published before the service starts: the
/// log start is past 0, so the oldest offsets are gone for good.
pub(crate) async fn trimmed_topic(
    bootstrap: &str,
    topic: &str,
) -> (Vec<(Vec<u8>, bool)>, i64, i64) {
    let events = big_events(9_000);
    publish_in_order(bootstrap, topic, &events).await;
    let watcher: rdkafka::consumer::BaseConsumer = rdkafka::ClientConfig::new()
        .set("bootstrap.servers", bootstrap)
        .create()
        .expect("consumer");
    let (low, high) =
        rdkafka::consumer::Consumer::fetch_watermarks(&watcher, topic, 0, Duration::from_secs(10))
            .expect("watermarks");
    assert!(low > 0, "the mock cluster trimmed the partition");
    assert_eq!(high, events.len() as i64);
    (events, low, high)
}

/// (failed, succeeded) of the events still in the log.
fn kept_counts(events: &[(Vec<u8>, bool)], low: i64) -> (u64, u64) {
    let kept = &events[low as usize..];
    let failed = kept.iter().filter(|(_, f)| *f).count() as u64;
    (failed, kept.len() as u64 - failed)
}

async fn acme_overview(api: &mut Api) -> integration_health::proto::GetOverviewResponse {
    default_overview(api, "acme").await
}

fn totals(overview: &integration_health::proto::GetOverviewResponse) -> (u64, u64) {
    overview
        .types
        .iter()
        .fold((0, 0), |(f, s), t| (f + t.failed, s + t.succeeded))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn offsets_deleted_before_they_were_read_are_lost_counted_and_flagged_across_a_restart() {
    let (_kafka, bootstrap) = kafka_with_topic("trimmed", 1);
    let state = tempfile::tempdir().expect("state dir");
    let (events, low, high) = trimmed_topic(&bootstrap, "trimmed").await;

    let mut instance = start(&bootstrap, "trimmed", "trimmed", state.path()).await;
    wait_applied(&instance.api, (high - low) as u64).await;
    let status = ingest_status(&mut instance.api).await;
    assert_eq!(status.lost_offsets, low as u64);
    assert_eq!(status.partitions[0].lost_offsets, low as u64);
    let overview = acme_overview(&mut instance.api).await;
    assert_eq!(
        totals(&overview),
        kept_counts(&events, low),
        "the rest is counted exactly"
    );
    assert!(overview.incomplete);
    let lost: Vec<_> = overview
        .lost_offsets
        .iter()
        .map(|l| {
            (
                l.topic.as_str(),
                l.partition,
                l.from_offset,
                l.to_offset,
                l.upstream,
            )
        })
        .collect();
    assert_eq!(lost, [("trimmed", 0, 0, low, false)]);
    let (_, metrics) = http_get(instance.service.http_addr, "/metrics").await;
    assert_eq!(
        metric_sum(
            &metrics,
            "integration_health_offsets_lost_total",
            &["topic=\"trimmed\""]
        ),
        low as f64
    );
    wait_snapshotted(&mut instance.api).await;
    instance.stop().await;

    // The flag is part of the partition's state: a restart keeps it, and finds nothing new.
    let mut instance = start(&bootstrap, "trimmed", "trimmed", state.path()).await;
    wait_applied(&instance.api, (high - low) as u64).await;
    let overview = acme_overview(&mut instance.api).await;
    assert!(overview.incomplete);
    assert_eq!(overview.lost_offsets.len(), 1);
    assert_eq!(totals(&overview), kept_counts(&events, low));
    assert_eq!(
        ingest_status(&mut instance.api).await.lost_offsets,
        low as u64
    );
    instance.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn input_offsets_the_repartition_stage_never_read_flag_every_tenant() {
    let (kafka, bootstrap) = kafka_with_topic("trimmed-in", 1);
    kafka
        .create_topic("trimmed-in.by-tenant", 1)
        .expect("output topic");
    let (events, low, high) = trimmed_topic(&bootstrap, "trimmed-in").await;
    let mut config = test_config(&bootstrap, "trimmed-in", "trimmed-in");
    config.input_keyed_by_tenant = false;
    let mut instance = TestService::start_at(&config, NOW).await;
    wait_until("the stage's input is read", Duration::from_secs(60), || {
        let mut api = instance.api.clone();
        async move {
            let s = ingest_status(&mut api).await;
            s.accepted == (high - low) as u64 && s.upstream_partitions.iter().all(|p| p.lag == 0)
        }
    })
    .await;
    let status = ingest_status(&mut instance.api).await;
    assert_eq!(status.upstream_partitions[0].lost_offsets, low as u64);
    assert_eq!(
        status.lost_offsets, low as u64,
        "counted once, where it was lost"
    );
    for tenant in ["acme", "a-tenant-never-seen"] {
        let overview = default_overview(&mut instance.api, tenant).await;
        assert!(overview.incomplete, "{tenant}");
        let lost: Vec<_> = overview
            .lost_offsets
            .iter()
            .map(|l| (l.topic.as_str(), l.from_offset, l.to_offset, l.upstream))
            .collect();
        assert_eq!(lost, [("trimmed-in", 0, low, true)], "{tenant}");
    }
    assert_eq!(
        totals(&acme_overview(&mut instance.api).await),
        kept_counts(&events, low)
    );
    instance.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failing_snapshot_write_is_logged_counted_retried_while_quiet_and_leaves_no_temp_file() {
    let (_kafka, bootstrap) = kafka_with_topic("disk", 2);
    let state = tempfile::tempdir().expect("state dir");
    let producer = producer(&bootstrap);
    let first = generate_tagged(81, 600, NOW, "a");
    let mut produced = messages(&first).len() as u64;
    let mut instance = start(&bootstrap, "disk", "disk", state.path()).await;
    publish(&producer, "disk", &messages(&first)).await;
    wait_consumed(std::slice::from_ref(&instance.api), produced, 2).await;
    wait_snapshotted(&mut instance.api).await;
    instance.stop().await;

    // A temp file a crash left behind is removed at start-up, and restored partitions show
    // the snapshot they came from.
    let dir = |p: i32| state.path().join("disk").join(p.to_string());
    let stale = dir(0).join(".00000000000000000001.snap.tmp");
    std::fs::write(&stale, vec![0u8; 4096]).expect("stale temp file");
    let mut instance = start(&bootstrap, "disk", "disk", state.path()).await;
    wait_consumed(std::slice::from_ref(&instance.api), produced, 2).await;
    assert!(!stale.exists(), "stale temp file removed");
    let status = ingest_status(&mut instance.api).await;
    assert!(
        status
            .partitions
            .iter()
            .all(|p| p.snapshot_next_offset == p.next_offset),
        "{:?}",
        status.partitions
    );

    // Partition 1's folder becomes unusable: its writes fail, are counted and shown.
    std::fs::remove_dir_all(dir(1)).expect("remove");
    std::fs::write(dir(1), b"not a folder").expect("obstacle");
    let second = generate_tagged(82, 600, NOW, "b");
    produced += messages(&second).len() as u64;
    publish(&producer, "disk", &messages(&second)).await;
    wait_consumed(std::slice::from_ref(&instance.api), produced, 2).await;
    let http = instance.service.http_addr;
    wait_until(
        "a failed write is counted",
        Duration::from_secs(30),
        || async move {
            let (_, text) = http_get(http, "/metrics").await;
            metric_sum(
                &text,
                "integration_health_snapshot_write_failures_total",
                &[],
            ) >= 1.0
        },
    )
    .await;
    let status = ingest_status(&mut instance.api).await;
    let stuck = status
        .partitions
        .iter()
        .find(|p| p.partition == 1)
        .expect("partition 1");
    assert!(stuck.snapshot_next_offset < stuck.next_offset);

    // Space comes back while nothing new arrives: the write is tried again and succeeds.
    std::fs::remove_file(dir(1)).expect("obstacle removed");
    wait_snapshotted(&mut instance.api).await;
    let leftovers: Vec<_> = std::fs::read_dir(dir(1))
        .expect("folder")
        .filter_map(Result::ok)
        .filter(|e| e.file_name().to_string_lossy().ends_with(".tmp"))
        .collect();
    assert!(leftovers.is_empty());
    instance.stop().await;
}
