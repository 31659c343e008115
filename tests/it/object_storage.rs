//! Snapshots in object storage, against a real S3-API server (moto's, from PyPI, installed into
//! `target/test-venv` on first use): replicas of the built binary share nothing but Kafka and a
//! bucket. A replica killed with SIGKILL hands its partitions to the others through the bucket,
//! a replacement on an empty disk takes partitions back, and every count stays exact.

use crate::common;

use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use common::*;
use integration_health::clock::{Clock, SystemClock};

const TOPIC: &str = "bucketed";
const BUCKET: &str = "ih-state";
const TENANTS: [&str; 3] = ["acme", "globex", "initech"];

/// moto's server, installed into the test venv if it is not there yet.
fn moto_server() -> PathBuf {
    static INSTALL: Mutex<()> = Mutex::new(());
    let _once = INSTALL.lock().unwrap_or_else(|e| e.into_inner());
    let venv = Path::new(env!("CARGO_MANIFEST_DIR")).join("target/test-venv");
    let server = venv.join("bin/moto_server");
    if server.exists() {
        return server;
    }
    let made = Command::new("python3")
        .args(["-m", "venv"])
        .arg(&venv)
        .status()
        .expect("python3 runs");
    assert!(made.success(), "cannot create {}", venv.display());
    let installed = Command::new(venv.join("bin/pip"))
        .args(["install", "--quiet", "moto[server]==5.2.5"])
        .status()
        .expect("pip runs");
    assert!(installed.success(), "cannot install moto from PyPI");
    server
}

/// One HTTP/1.1 request without a body; returns the status line.
fn http(port: u16, method: &str, path: &str) -> Option<String> {
    let mut stream = std::net::TcpStream::connect(("127.0.0.1", port)).ok()?;
    let request = format!("{method} {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Length: 0\r\nConnection: close\r\n\r\n");
    stream.write_all(request.as_bytes()).ok()?;
    let mut answer = String::new();
    stream.read_to_string(&mut answer).ok()?;
    answer.lines().next().map(str::to_owned)
}

/// A running moto S3 server with the bucket created.
fn s3() -> (Process, u16) {
    let port = free_port();
    let child = die_with_parent(&mut Command::new(moto_server()))
        .args(["-H", "127.0.0.1", "-p", &port.to_string()])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("moto starts");
    let process = Process(child);
    let started = Instant::now();
    while http(port, "GET", "/").is_none() {
        assert!(
            started.elapsed() < Duration::from_secs(30),
            "moto did not start"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    let created = http(port, "PUT", &format!("/{BUCKET}")).expect("bucket request");
    assert!(created.contains(" 200"), "{created}");
    (process, port)
}

fn replica(bootstrap: &str, s3_port: u16, grpc_port: u16, log: &Path) -> Process {
    let flags = format!(
        "--brokers {bootstrap} --topic {TOPIC} --group bucketed --grpc-addr 127.0.0.1:{grpc_port} \
         --http-addr 127.0.0.1:0 --snapshot-interval-ms 300 --state-url s3://{BUCKET}/snapshots \
         --advertise-addr 127.0.0.1:{grpc_port} --tokens-file {}",
        replica_tokens_file(log.parent().expect("the log's folder")).display()
    );
    let args: Vec<String> = flags.split_whitespace().map(str::to_owned).collect();
    let env = [
        ("AWS_ENDPOINT_URL", format!("http://127.0.0.1:{s3_port}")),
        ("AWS_ALLOW_HTTP", "true".to_owned()),
        ("AWS_ACCESS_KEY_ID", "test".to_owned()),
        ("AWS_SECRET_ACCESS_KEY", "test".to_owned()),
        ("AWS_REGION", "us-east-1".to_owned()),
        ("IH_PEER_TOKEN", PEER_TOKEN.to_owned()),
    ];
    serve_binary(&args, &env, log)
}

async fn wait_up(port: u16, log: &Path) -> Api {
    let started = Instant::now();
    loop {
        let channel = tonic::transport::Channel::from_shared(format!("http://127.0.0.1:{port}"))
            .expect("uri")
            .connect()
            .await;
        if let Ok(channel) = channel {
            return api_over(channel, Some(READER_TOKEN));
        }
        assert!(
            started.elapsed() < Duration::from_secs(30),
            "replica on {port} did not start; its log:\n{}",
            std::fs::read_to_string(log).unwrap_or_default()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Waits until `api` reports all 4 partitions applied up to `total`, owned by `owners` replicas.
async fn all_owned_by(api: &Client, total: u64, owners: usize) {
    wait_for_status(
        api,
        "partitions owned and applied",
        Duration::from_secs(90),
        move |s| {
            let distinct: std::collections::BTreeSet<&String> =
                s.partitions.iter().map(|p| &p.owner).collect();
            let all_owned = s.partitions.iter().all(|p| !p.owner.is_empty());
            s.partitions.len() == 4 && all_owned && distinct.len() == owners && seen(s) == total
        },
    )
    .await;
}

type Client = Api;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_killed_replicas_partitions_move_through_the_bucket_and_stay_exact() {
    // On this thread, which outlives moto: it dies with the thread that started it.
    let (_moto, s3_port) = s3();
    let (_kafka, bootstrap) = kafka_with_topic(TOPIC, 4);
    let logs = tempfile::tempdir().expect("log dir");
    let now = SystemClock.now_ms();
    let producer = producer(&bootstrap);
    let mut truth = Truth::default();
    let mut produced = 0;

    let ports = [free_port(), free_port(), free_port()];
    let mut first = Some(replica(
        &bootstrap,
        s3_port,
        ports[0],
        &logs.path().join("a.log"),
    ));
    let _second = replica(&bootstrap, s3_port, ports[1], &logs.path().join("b.log"));
    let apis = [
        wait_up(ports[0], &logs.path().join("a.log")).await,
        wait_up(ports[1], &logs.path().join("b.log")).await,
    ];
    let batch = generate_tagged(51, 1_500, now, "a");
    let batch_messages: Vec<Message> = batch.messages.iter().map(|(_, m)| m.clone()).collect();
    publish(&producer, TOPIC, &batch_messages).await;
    produced += batch_messages.len() as u64;
    truth.extend(batch.truth);
    all_owned_by(&apis[0], produced, 2).await;
    // Let a snapshot round cover what was consumed, then kill the first replica outright.
    tokio::time::sleep(Duration::from_secs(2)).await;
    drop(first.take());

    let batch = generate_tagged(52, 1_500, now, "b");
    let batch_messages: Vec<Message> = batch.messages.iter().map(|(_, m)| m.clone()).collect();
    publish(&producer, TOPIC, &batch_messages).await;
    produced += batch_messages.len() as u64;
    truth.extend(batch.truth);
    let mut survivor = apis[1].clone();
    all_owned_by(&survivor, produced, 1).await;
    assert_matches_truth(&mut survivor, &truth, &TENANTS).await;

    // A replacement with nothing on its disk takes partitions back from the bucket.
    let _third = replica(&bootstrap, s3_port, ports[2], &logs.path().join("c.log"));
    let both = vec![
        apis[1].clone(),
        wait_up(ports[2], &logs.path().join("c.log")).await,
    ];
    // Every replica answers for every partition, its own and the other's, exactly, once it
    // has read the other's announcement.
    for mut api in both {
        all_owned_by(&api, produced, 2).await;
        assert_matches_truth(&mut api, &truth, &TENANTS).await;
    }
}
