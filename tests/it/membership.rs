//! Membership that heals itself, with two built replicas announcing every 300 ms and dropping
//! a member after 1.5 s without one: a forged record stops routing calls once its author
//! stops, a forged tombstone of a live replica is undone by its next announcement, and a
//! replica killed with SIGKILL is dropped while the other takes its partitions.

use crate::common;

use std::path::Path;
use std::time::{Duration, Instant};

use common::*;
use integration_health::clock::{Clock, SystemClock};
use integration_health::proto;
use rdkafka::producer::{FutureProducer, FutureRecord};
use tonic::Code;

const TOPIC: &str = "heal-events";
const MEMBERS: &str = "heal-events.members";
/// Announcements every 300 ms, a member dropped after 1.5 s, records dated up to 3 s ahead.
const SETTINGS: &str = "member_announce_interval_ms = 300\nmember_ttl_ms = 1500\n\
                        member_clock_skew_ms = 3000\n";

fn replica(bootstrap: &str, port: u16, dir: &Path) -> Process {
    let settings = dir.join(format!("settings-{port}.toml"));
    std::fs::write(&settings, SETTINGS).expect("settings");
    let flags = format!(
        "--config {} --brokers {bootstrap} --topic {TOPIC} --group heal \
         --grpc-addr 127.0.0.1:{port} --http-addr 127.0.0.1:0 \
         --advertise-addr 127.0.0.1:{port} --tokens-file {}",
        settings.display(),
        replica_tokens_file(dir).display()
    );
    let args: Vec<String> = flags.split_whitespace().map(str::to_owned).collect();
    let env = [("IH_PEER_TOKEN", PEER_TOKEN.to_owned())];
    serve_binary(&args, &env, &log_of(dir, port))
}

fn log_of(dir: &Path, port: u16) -> std::path::PathBuf {
    dir.join(format!("replica-{port}.log"))
}

async fn client_of(port: u16) -> Api {
    let started = Instant::now();
    loop {
        let uri = format!("http://127.0.0.1:{port}");
        if let Ok(channel) = tonic::transport::Channel::from_shared(uri)
            .expect("uri")
            .connect()
            .await
        {
            return api_over(channel, Some(READER_TOKEN));
        }
        assert!(
            started.elapsed() < Duration::from_secs(30),
            "replica {port} did not start"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Each partition's owner in `api`'s view; none when the status does not answer.
async fn owners(api: &Api) -> Vec<proto::PartitionStatus> {
    let mut api = api.clone();
    let status = api
        .get_ingest_status(proto::GetIngestStatusRequest::default())
        .await;
    status.map_or_else(|_| Vec::new(), |s| s.into_inner().partitions)
}

/// Whether every partition has an owner in `api`'s view, none of them `not`, and acme's
/// overview, which needs every partition, answers.
async fn all_answer(api: &Api, not: &str) -> bool {
    let mut api = api.clone();
    let owned = owners(&api).await;
    let all_owned = owned.len() == 2 && owned.iter().all(|p| !p.owner.is_empty() && p.owner != not);
    all_owned
        && api
            .get_overview(proto::GetOverviewRequest {
                tenant_id: "acme".into(),
                ..Default::default()
            })
            .await
            .is_ok()
}

/// The mock cluster, its address, and two replicas serving a two-partition topic with acme's
/// events in both, once each owns one.
type Replicas = (
    integration_health::testkit::EmbeddedKafka,
    String,
    [(u16, Process, Api); 2],
);

async fn two_replicas(dir: &Path) -> Replicas {
    let (kafka, bootstrap) = kafka_with_topic(TOPIC, 2);
    kafka.create_topic(MEMBERS, 1).expect("members topic");
    let producer = producer(&bootstrap);
    for partition in 0..2 {
        let payload = serde_json::json!({
            "event_id": format!("e{partition}"), "tenant_id": "acme",
            "occurred_at": SystemClock.now_ms() - 60_000, "integration_type": "custom_node",
            "integration_id": "crm", "outcome": "success",
        })
        .to_string();
        let record = FutureRecord::to(TOPIC)
            .partition(partition)
            .key("acme")
            .payload(&payload);
        producer
            .send(record, Duration::from_secs(5))
            .await
            .expect("sent");
    }
    let mut replicas = Vec::new();
    for _ in 0..2 {
        let port = free_port();
        let process = replica(&bootstrap, port, dir);
        replicas.push((port, process, client_of(port).await));
    }
    for (_, _, api) in &replicas {
        let api = api.clone();
        wait_until(
            "both replicas own a partition",
            Duration::from_secs(90),
            || {
                let api = api.clone();
                async move {
                    let distinct: std::collections::BTreeSet<String> =
                        owners(&api).await.into_iter().map(|p| p.owner).collect();
                    distinct.len() == 2 && !distinct.contains("")
                }
            },
        )
        .await;
        wait_all_answer(&api, "", "every partition answers", Duration::from_secs(30)).await;
    }
    let replicas: [(u16, Process, Api); 2] = replicas.try_into().ok().expect("two");
    (kafka, bootstrap, replicas)
}

/// Writes a record to the members topic: an announcement under its own key, or a tombstone.
async fn forge(bootstrap: &str, addr: &str, announcement: Option<serde_json::Value>) {
    let producer: FutureProducer = rdkafka::ClientConfig::new()
        .set("bootstrap.servers", bootstrap)
        .create()
        .expect("producer");
    let payload = announcement.map(|a| a.to_string());
    let mut record: FutureRecord<str, str> = FutureRecord::to(MEMBERS).key(addr);
    if let Some(payload) = &payload {
        record = record.payload(payload);
    }
    producer
        .send(record, Duration::from_secs(5))
        .await
        .expect("forged record sent");
}

/// Waits until the log of the replica at `port` has a line with `text` about `addr`.
async fn wait_logged(dir: &Path, port: u16, text: &str, addr: &str) {
    let (path, text, addr) = (log_of(dir, port), text.to_owned(), addr.to_owned());
    wait_until(&text.clone(), Duration::from_secs(10), || {
        let (path, text, addr) = (path.clone(), text.clone(), addr.clone());
        async move {
            let log = std::fs::read_to_string(path).unwrap_or_default();
            log.lines().any(|l| l.contains(&text) && l.contains(&addr))
        }
    })
    .await;
}

/// Waits until `all_answer` holds for `api`.
async fn wait_all_answer(api: &Api, not: &str, what: &str, limit: Duration) {
    wait_until(what, limit, || {
        let (api, not) = (api.clone(), not.to_owned());
        async move { all_answer(&api, &not).await }
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_forged_member_expires_and_a_forged_tombstone_is_undone() {
    let dir = tempfile::tempdir().expect("dir");
    let (_kafka, bootstrap, [(port_a, _a, api_a), (port_b, _b, api_b)]) =
        two_replicas(dir.path()).await;

    // A member nobody runs claims both partitions, dated 2.5 s ahead (within the skew), and
    // its author stops there.
    let forged = format!("127.0.0.1:{}", free_port());
    let at_ms = SystemClock.now_ms() + 2_500;
    let claim = serde_json::json!({"addr": forged, "partitions": [0, 1], "at_ms": at_ms});
    forge(&bootstrap, &forged, Some(claim)).await;
    let seen_down = Instant::now();
    let mut refused = None;
    while refused.is_none() && seen_down.elapsed() < Duration::from_secs(3) {
        let answer = api_a
            .clone()
            .get_overview(proto::GetOverviewRequest {
                tenant_id: "acme".into(),
                ..Default::default()
            })
            .await;
        refused = answer.err().map(|s| s.code());
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(
        refused,
        Some(Code::Unavailable),
        "the forged owner was taken"
    );
    // Outranked by the real members' next announcements and dropped after the TTL: within
    // the skew and the TTL, every partition answers again through both replicas.
    for api in [&api_a, &api_b] {
        let api = api.clone();
        let forged = forged.clone();
        wait_until(
            "the forged member expires",
            Duration::from_secs(3 + 2 + 5),
            || {
                let (api, forged) = (api.clone(), forged.clone());
                async move { all_answer(&api, &forged).await }
            },
        )
        .await;
    }

    // A tombstone of replica a, written by someone else: b forgets a, and a's next
    // announcement, within 300 ms, brings it back.
    let addr_a = format!("127.0.0.1:{port_a}");
    forge(&bootstrap, &addr_a, None).await;
    wait_logged(
        dir.path(),
        port_b,
        "a tombstone on the members topic",
        &addr_a,
    )
    .await;
    wait_all_answer(&api_b, "", "a announces again", Duration::from_secs(5)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_replica_killed_with_sigkill_is_dropped_and_the_other_serves_its_partitions() {
    let dir = tempfile::tempdir().expect("dir");
    let (_kafka, _, [(port_a, a, _), (port_b, _b, api_b)]) = two_replicas(dir.path()).await;
    let addr_a = format!("127.0.0.1:{port_a}");
    // Dropping the process handle sends SIGKILL: no tombstone, no leaving the group.
    drop(a);
    wait_logged(
        dir.path(),
        port_b,
        "replica dropped from the members",
        &addr_a,
    )
    .await;
    // The group's session timeout (6 s) moves a's partition to b, which announces it.
    let limit = Duration::from_secs(30);
    wait_all_answer(&api_b, &addr_a, "b serves every partition", limit).await;
}
