//! The built binary is killed with SIGKILL at random moments while events flow, and restarted
//! on the same state dir each time. Afterwards every RPC equals the truth and the DLQ holds
//! every bad event.

use crate::common;

use std::path::Path;
use std::process::Command;
use std::time::Duration;

use common::*;
use integration_health::clock::{Clock, SystemClock};
use rand::rngs::SmallRng;
use rand::{Rng, SeedableRng};

const TOPIC: &str = "crashy";
const TENANTS: [&str; 3] = ["acme", "globex", "initech"];

fn spawn(bootstrap: &str, port: u16, state: &Path, log: &Path) -> Process {
    let flags = format!(
        "--brokers {bootstrap} --topic {TOPIC} --group crashers --grpc-addr 127.0.0.1:{port} \
         --http-addr 127.0.0.1:0 --snapshot-interval-ms 300 --state-dir {}",
        state.display()
    );
    let args: Vec<String> = flags.split_whitespace().map(str::to_owned).collect();
    serve_binary(&args, &[], log)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigkill_at_random_moments_neither_loses_nor_doubles_an_event() {
    let (kafka, bootstrap) = kafka_with_topic(TOPIC, 3);
    let dir = tempfile::tempdir().expect("temp dir");
    let state = dir.path().join("state");
    let log = dir.path().join("service.log");
    let port = free_port();
    let now = SystemClock.now_ms();

    let mut service = spawn(&bootstrap, port, &state, &log);
    let producer = producer(&bootstrap);
    let mut rng = SmallRng::seed_from_u64(99);
    let mut truth = Truth::default();
    let mut produced = 0u64;
    let mut kills = 0;
    for round in 0..8u64 {
        let batch = generate_tagged(70 + round, 700, now, &format!("k{round}"));
        let batch_messages: Vec<Message> = batch.messages.iter().map(|(_, m)| m.clone()).collect();
        produced += batch_messages.len() as u64;
        truth.extend(batch.truth);
        let publishing = {
            let producer = producer.clone();
            tokio::spawn(async move { publish(&producer, TOPIC, &batch_messages).await })
        };
        if round >= 2 {
            // A random moment while this batch is being published and consumed.
            tokio::time::sleep(Duration::from_millis(rng.gen_range(50..1_500))).await;
            service.0.kill().expect("SIGKILL");
            service.0.wait().expect("reaped");
            kills += 1;
            service = spawn(&bootstrap, port, &state, &log);
        }
        publishing.await.expect("published");
    }
    assert!(kills >= 5);

    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    let mut api = loop {
        if let Some(api) = client_if_up(port).await {
            break api;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "service did not come back"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    wait_for_status(
        &api,
        "every message applied once",
        Duration::from_secs(120),
        move |s| s.partitions.len() == 3 && seen(s) == produced,
    )
    .await;
    assert_matches_truth(&mut api, &truth, &TENANTS).await;

    // Dead letters are acknowledged before a snapshot covers them, so a crash can repeat one
    // but never lose one.
    let letters = read_dead_letters(&bootstrap, &format!("{TOPIC}.dlq"), |l: &[DeadLetter]| {
        let distinct: std::collections::HashSet<&Vec<u8>> = l.iter().map(|(p, _)| p).collect();
        distinct.len() >= truth.distinct_dead_letters().len()
    });
    let published: std::collections::HashSet<Vec<u8>> =
        letters.into_iter().map(|(p, _)| p).collect();
    assert_eq!(published, truth.distinct_dead_letters());

    // A graceful stop leaves a final snapshot at exactly the consumed offsets.
    let consumed: Vec<(i32, i64)> = ingest_status(&mut api)
        .await
        .partitions
        .iter()
        .map(|p| (p.partition, p.next_offset))
        .collect();
    let pid = service.0.id().to_string();
    let stopping = std::time::Instant::now();
    let signalled = Command::new("kill")
        .args(["-TERM", &pid])
        .status()
        .expect("kill");
    assert!(signalled.success());
    let status = service.0.wait().expect("exit status");
    assert!(status.success(), "graceful stop after SIGTERM: {status}");
    assert!(
        stopping.elapsed() < Duration::from_secs(10),
        "stopped within the grace period"
    );
    for (partition, next_offset) in consumed {
        let dir = state.join(TOPIC).join(partition.to_string());
        let newest = std::fs::read_dir(&dir)
            .expect("snapshot dir")
            .filter_map(Result::ok)
            .filter_map(|e| {
                e.file_name()
                    .to_str()?
                    .strip_suffix(".snap")?
                    .parse::<i64>()
                    .ok()
            })
            .max();
        assert_eq!(
            newest,
            Some(next_offset),
            "partition {partition}: final snapshot offset"
        );
    }
    drop(kafka);
}

async fn client_if_up(port: u16) -> Option<Api> {
    let channel = tonic::transport::Channel::from_shared(format!("http://127.0.0.1:{port}"))
        .ok()?
        .connect()
        .await
        .ok()?;
    Some(common::api_over(channel, None))
}
