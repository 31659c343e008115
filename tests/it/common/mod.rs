//! Helpers shared by the Kafka tests: an in-process broker, a producer, waiting on conditions,
//! and `Truth`, a deliberately simple second computation of every number the API serves.

#![allow(dead_code)]

pub mod certs;
mod classes;
pub mod harness;
pub mod receiver;
pub mod tansu;
mod truth;

pub use classes::*;
pub use truth::*;

use std::collections::HashMap;
use std::future::Future;
use std::time::{Duration, Instant};

use integration_health::proto;
use integration_health::proto::integration_health_client::IntegrationHealthClient;
pub use integration_health::testkit::die_with_parent;
use integration_health::testkit::EmbeddedKafka;
use rdkafka::config::ClientConfig;
use rdkafka::producer::{FutureProducer, FutureRecord, Producer};
use tonic::service::interceptor::InterceptedService;
use tonic::transport::Channel;

pub const HOUR: i64 = 3_600_000;
pub const DAY: i64 = 24 * HOUR;
/// 2026-06-15T12:34:56.789Z: not on any bucket boundary, on purpose.
pub const NOW: i64 = 1_781_526_896_789;
pub const TYPES: [&str; 5] = [
    "inbound_webhook",
    "outbound_webhook",
    "prebuilt_integration",
    "custom_node",
    "custom_event",
];

/// A service config for tests: ephemeral gRPC port, short consumer-group timeouts.
pub fn test_config(
    bootstrap: &str,
    topic: &str,
    group: &str,
) -> integration_health::config::Config {
    integration_health::config::Config {
        brokers: bootstrap.to_owned(),
        topic: topic.into(),
        group: group.into(),
        // The tests' producers key by tenant; tests/it/unkeyed.rs covers the repartition stage.
        input_keyed_by_tenant: true,
        grpc_addr: "127.0.0.1:0".parse().expect("addr"),
        http_addr: "127.0.0.1:0".parse().expect("addr"),
        kafka: [("session.timeout.ms", "6000"), ("fetch.wait.max.ms", "10")]
            .into_iter()
            .map(|(k, v)| (k.to_owned(), v.to_owned()))
            .collect(),
        ..integration_health::config::Config::default()
    }
}

/// A one-broker mock cluster with `topic` (of `partitions`) and its dead-letter topic, and the
/// bootstrap address.
pub fn kafka_with_topic(topic: &str, partitions: i32) -> (EmbeddedKafka, String) {
    let kafka = EmbeddedKafka::start(1).expect("mock cluster");
    kafka.create_topic(topic, partitions).expect("topic");
    kafka
        .create_topic(&format!("{topic}.dlq"), 1)
        .expect("dead-letter topic");
    let bootstrap = kafka.bootstrap_servers();
    (kafka, bootstrap)
}

/// Polls `condition` until it holds or `limit` passes.
pub async fn wait_until<F, Fut>(what: &str, limit: Duration, mut condition: F)
where
    F: FnMut() -> Fut,
    Fut: Future<Output = bool>,
{
    let started = Instant::now();
    while !condition().await {
        assert!(
            started.elapsed() < limit,
            "timed out after {limit:?} waiting for {what}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// A plaintext gRPC channel to `addr`.
pub async fn channel(addr: std::net::SocketAddr) -> Channel {
    Channel::from_shared(format!("http://{addr}"))
        .expect("valid uri")
        .connect()
        .await
        .expect("grpc connects")
}

pub async fn client(addr: std::net::SocketAddr) -> Api {
    api_over(channel(addr).await, None)
}

/// A client that sends `authorization: Bearer <token>` with every call.
pub async fn client_as(addr: std::net::SocketAddr, token: &str) -> Api {
    api_over(channel(addr).await, Some(token))
}

/// The gRPC client the tests use: with a bearer token on every call, or none.
pub type Api = IntegrationHealthClient<InterceptedService<Channel, Bearer>>;

pub fn api_over(channel: Channel, token: Option<&str>) -> Api {
    let header = token.map(|t| format!("Bearer {t}").parse().expect("a header value"));
    IntegrationHealthClient::with_interceptor(channel, Bearer(header))
}

/// Adds the token, unless the request carries an `authorization` of its own.
#[derive(Clone)]
pub struct Bearer(Option<tonic::metadata::MetadataValue<tonic::metadata::Ascii>>);

impl tonic::service::Interceptor for Bearer {
    fn call(
        &mut self,
        mut request: tonic::Request<()>,
    ) -> Result<tonic::Request<()>, tonic::Status> {
        if let Some(value) = &self.0 {
            if !request.metadata().contains_key("authorization") {
                request
                    .metadata_mut()
                    .insert("authorization", value.clone());
            }
        }
        Ok(request)
    }
}

/// The token a replica presents to the others (`peer = true`), and the one the tests read with.
pub const PEER_TOKEN: &str = "test-replica-peer-token";
pub const READER_TOKEN: &str = "test-reader-token";

/// A tokens file in `dir` with `as_replica`'s two grants, by digest, for replicas of the built
/// binary (which take the peer token from `IH_PEER_TOKEN`).
pub fn replica_tokens_file(dir: &std::path::Path) -> std::path::PathBuf {
    let text = integration_health::testkit::replica_tokens_toml(PEER_TOKEN, READER_TOKEN);
    let path = dir.join("tokens.toml");
    std::fs::write(&path, text).expect("tokens file");
    path
}

/// Makes `config` a replica reachable at `addr`: its peer token granted as a replica's, and a
/// reader's grant (every tenant, operator) for the test's own client, since replicas never
/// serve an open API.
pub fn as_replica(config: &mut integration_health::config::Config, addr: &str) {
    use integration_health::config::{Secret, TokenGrant};
    config.advertise_addr = Some(addr.to_owned());
    config.peer_token = Some(Secret::new(PEER_TOKEN));
    config.tokens.push(TokenGrant {
        peer: true,
        ..TokenGrant::plain(PEER_TOKEN, &["*"])
    });
    config.tokens.push(TokenGrant {
        operator: true,
        ..TokenGrant::plain(READER_TOKEN, &["*"])
    });
}

/// The stdout of a finished command, after checking that it succeeded.
pub fn succeeded(output: &std::process::Output) -> String {
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8_lossy(&output.stdout).into_owned()
}

pub fn producer(bootstrap: &str) -> FutureProducer {
    ClientConfig::new()
        .set("bootstrap.servers", bootstrap)
        .set("enable.idempotence", "true")
        .set("linger.ms", "2")
        .create()
        .expect("producer")
}

pub async fn publish(producer: &FutureProducer, topic: &str, messages: &[Message]) {
    for message in messages {
        let record = FutureRecord::to(topic)
            .key(&message.key)
            .payload(&message.payload);
        producer
            .send(record, Duration::from_secs(30))
            .await
            .expect("broker acknowledged");
    }
    producer.flush(Duration::from_secs(30)).expect("flushed");
}

pub type DeadLetter = (Vec<u8>, HashMap<String, String>);

/// Reads a dead-letter topic from the beginning until `enough` says so or 30 s passed.
/// Returns each message's payload with its headers.
pub fn read_dead_letters(
    bootstrap: &str,
    topic: &str,
    enough: impl Fn(&[DeadLetter]) -> bool,
) -> Vec<DeadLetter> {
    use rdkafka::message::{Headers, Message as _};
    read_topic(bootstrap, topic, enough, |message| {
        let headers = message
            .headers()
            .map(|h| {
                h.iter()
                    .map(|h| {
                        (
                            h.key.to_owned(),
                            String::from_utf8_lossy(h.value.unwrap_or_default()).into_owned(),
                        )
                    })
                    .collect()
            })
            .unwrap_or_default();
        (message.payload().unwrap_or_default().to_vec(), headers)
    })
}

/// A record's key and payload.
pub type Keyed = (Vec<u8>, Vec<u8>);

/// Reads partition 0 of `topic` from the beginning, keys and payloads, like
/// `read_dead_letters`.
pub fn read_keyed(bootstrap: &str, topic: &str, enough: impl Fn(&[Keyed]) -> bool) -> Vec<Keyed> {
    use rdkafka::message::Message as _;
    read_topic(bootstrap, topic, enough, |message| {
        let key = message.key().unwrap_or_default().to_vec();
        (key, message.payload().unwrap_or_default().to_vec())
    })
}

/// Every record of partition 0 of `topic`, keys and payloads, up to its high watermark now.
pub fn read_all_keyed(bootstrap: &str, topic: &str) -> Vec<Keyed> {
    use rdkafka::consumer::{BaseConsumer, Consumer};
    let consumer: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", bootstrap)
        .create()
        .expect("consumer");
    let (_, high) = consumer
        .fetch_watermarks(topic, 0, Duration::from_secs(10))
        .expect("watermarks");
    read_keyed(bootstrap, topic, |records| records.len() as i64 >= high)
}

fn read_topic<T>(
    bootstrap: &str,
    topic: &str,
    enough: impl Fn(&[T]) -> bool,
    read: impl Fn(&rdkafka::message::BorrowedMessage<'_>) -> T,
) -> Vec<T> {
    use rdkafka::consumer::{BaseConsumer, Consumer};

    let consumer: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", bootstrap)
        .set("group.id", "dlq-reader")
        .create()
        .expect("dlq consumer");
    let mut assignment = rdkafka::TopicPartitionList::new();
    assignment
        .add_partition_offset(topic, 0, rdkafka::Offset::Beginning)
        .expect("partition");
    consumer.assign(&assignment).expect("assign");
    let mut letters = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(30);
    while !enough(&letters) && Instant::now() < deadline {
        let Some(message) = consumer.poll(Duration::from_millis(200)) else {
            continue;
        };
        letters.push(read(&message.expect("a message")));
    }
    letters
}

/// A port that was free a moment ago, for a child process to bind.
///
/// Taken below Linux's ephemeral range (32768 and up), so a port the kernel hands out for a
/// connection or a `:0` listener in the meantime can never be the one chosen here.
pub fn free_port() -> u16 {
    use std::sync::atomic::{AtomicU16, Ordering};
    static NEXT: AtomicU16 = AtomicU16::new(0);
    let base = 20_000 + (std::process::id() % 500) as u16 * 20;
    for _ in 0..12_000 {
        let port = 20_000 + (base - 20_000 + NEXT.fetch_add(1, Ordering::SeqCst)) % 12_000;
        if std::net::TcpListener::bind(("127.0.0.1", port)).is_ok() {
            return port;
        }
    }
    panic!("no free port below the ephemeral range");
}

/// A bare HTTP/1.0 GET, enough for the operations endpoints: (status code, body).
pub async fn http_get(addr: std::net::SocketAddr, path: &str) -> (u16, String) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut stream = tokio::net::TcpStream::connect(addr)
        .await
        .expect("http connect");
    let request = format!("GET {path} HTTP/1.0\r\nHost: localhost\r\n\r\n");
    stream
        .write_all(request.as_bytes())
        .await
        .expect("http write");
    let mut response = Vec::new();
    stream.read_to_end(&mut response).await.expect("http read");
    let text = String::from_utf8_lossy(&response).into_owned();
    let status = text
        .split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or(0);
    let body = text
        .split_once("\r\n\r\n")
        .map(|(_, b)| b.to_owned())
        .unwrap_or_default();
    (status, body)
}

/// Sums a Prometheus series over the samples whose labels contain every `label` given.
pub fn metric_sum(exposition: &str, name: &str, labels: &[&str]) -> f64 {
    exposition
        .lines()
        .filter(|line| !line.starts_with('#'))
        .filter(|line| line.starts_with(name) && line[name.len()..].starts_with(['{', ' ']))
        .filter(|line| labels.iter().all(|l| line.contains(l)))
        .filter_map(|line| line.rsplit(' ').next().and_then(|v| v.parse::<f64>().ok()))
        .sum()
}

/// The identity of a failure group as the truth keys it.
pub fn group_id(tenant: &str, row: &proto::FailureGroup) -> GroupId {
    (
        tenant.to_owned(),
        TYPES[(row.integration_type - 1) as usize],
        row.integration_id.clone(),
        row.service_id.clone(),
        row.flow_id.clone(),
        row.status_code as u16,
        row.failure_description.clone(),
    )
}

/// Waits until the instance has applied `total` messages with nothing left to consume.
pub async fn wait_applied(api: &Api, total: u64) {
    wait_until("every message applied", Duration::from_secs(60), || {
        let mut api = api.clone();
        async move {
            let s = ingest_status(&mut api).await;
            let seen = seen(&s);
            seen == total
                && s.partitions
                    .iter()
                    .all(|p| p.high_watermark >= 0 && p.lag == 0)
        }
    })
    .await;
}

/// Every row of a tenant's failures table, page by page, with the effective range (start, end)
/// and the `total_groups` the last page reported.
pub async fn all_failures(
    api: &mut Api,
    tenant: &str,
    page_size: u32,
) -> (Vec<proto::FailureGroup>, (i64, i64), u64) {
    all_failures_of(api, tenant, page_size, &[]).await
}

/// Every page of the failures table, kept to groups of `classes` (all when empty).
pub async fn all_failures_of(
    api: &mut Api,
    tenant: &str,
    page_size: u32,
    classes: &[proto::ErrorClass],
) -> (Vec<proto::FailureGroup>, (i64, i64), u64) {
    let mut rows = Vec::new();
    let mut token = String::new();
    loop {
        let page = api
            .list_failures(proto::ListFailuresRequest {
                allow_partial: false,
                tenant_id: tenant.into(),
                page_size,
                page_token: token.clone(),
                classes: classes.iter().map(|c| *c as i32).collect(),
                ..Default::default()
            })
            .await
            .expect("failures")
            .into_inner();
        rows.extend(page.failures);
        if page.next_page_token.is_empty() {
            return (rows, bounds(&page.effective_range), page.total_groups);
        }
        token = page.next_page_token;
    }
}

pub async fn ingest_status(api: &mut Api) -> proto::GetIngestStatusResponse {
    api.get_ingest_status(proto::GetIngestStatusRequest {})
        .await
        .expect("status")
        .into_inner()
}

/// Every message an instance has applied, whatever became of it.
pub fn seen(status: &proto::GetIngestStatusResponse) -> u64 {
    status.accepted + status.rejected + status.duplicates + status.late_dropped
}

/// The overview over the default range, with every type.
pub async fn default_overview(api: &mut Api, tenant: &str) -> proto::GetOverviewResponse {
    api.get_overview(proto::GetOverviewRequest {
        allow_partial: false,
        tenant_id: tenant.into(),
        range: None,
        integration_types: vec![],
    })
    .await
    .expect("overview")
    .into_inner()
}

/// Waits until the instances together have applied `total` messages and own every partition once.
pub async fn wait_consumed(apis: &[Api], total: u64, partitions: i32) {
    wait_until("instances caught up", Duration::from_secs(90), || {
        let mut apis = apis.to_vec();
        async move {
            let mut sum = 0;
            let mut owned = Vec::new();
            for api in apis.iter_mut() {
                let s = ingest_status(api).await;
                sum += seen(&s);
                owned.extend(s.partitions.iter().map(|p| p.partition));
            }
            owned.sort_unstable();
            sum == total && owned == (0..partitions).collect::<Vec<_>>()
        }
    })
    .await;
}

/// A child process, killed (SIGKILL) and reaped when dropped.
pub struct Process(pub std::process::Child);

impl Drop for Process {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// `integration-health serve` with `args` and `env`, its log appended to `log`.
pub fn serve_binary(args: &[String], env: &[(&str, String)], log: &std::path::Path) -> Process {
    let log = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(log)
        .expect("log file");
    let child = die_with_parent(&mut std::process::Command::new(env!(
        "CARGO_BIN_EXE_integration-health"
    )))
    .arg("serve")
    .args(args)
    .args(["--kafka-property", "session.timeout.ms=6000"])
    .args(["--kafka-property", "fetch.wait.max.ms=10"])
    .args(["--input-keyed-by-tenant", "true"])
    .envs(env.iter().map(|(k, v)| (*k, v.as_str())))
    .env("IH_LOG", "info,librdkafka=warn")
    .stdout(std::process::Stdio::null())
    .stderr(std::process::Stdio::from(log))
    .spawn()
    .expect("service starts");
    Process(child)
}

/// The first page of a tenant's failures table, default range and order.
pub async fn failures_page(api: &mut Api, tenant: &str) -> proto::ListFailuresResponse {
    api.list_failures(proto::ListFailuresRequest {
        allow_partial: false,
        tenant_id: tenant.into(),
        ..Default::default()
    })
    .await
    .expect("failures table")
    .into_inner()
}

/// Waits until `api`'s ingest status satisfies `ready` (a failed call counts as not yet).
pub async fn wait_for_status(
    api: &Api,
    what: &str,
    limit: Duration,
    ready: impl Fn(&proto::GetIngestStatusResponse) -> bool + Clone,
) {
    wait_until(what, limit, || {
        let mut api = api.clone();
        let ready = ready.clone();
        async move {
            match api
                .get_ingest_status(proto::GetIngestStatusRequest {})
                .await
            {
                Ok(status) => ready(&status.into_inner()),
                Err(_) => false,
            }
        }
    })
    .await;
}

/// An HTTP answer: status, headers (names lower-cased) and body.
pub struct HttpAnswer {
    pub status: u16,
    pub headers: HashMap<String, String>,
    pub body: Vec<u8>,
}

/// A bare HTTP/1.0 request with `headers` and `body`, for the Connect endpoint.
pub async fn http_request(
    addr: std::net::SocketAddr,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: &[u8],
) -> HttpAnswer {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut stream = tokio::net::TcpStream::connect(addr)
        .await
        .expect("http connect");
    let mut head = format!(
        "{method} {path} HTTP/1.0\r\nHost: localhost\r\nContent-Length: {}\r\n",
        body.len()
    );
    for (name, value) in headers {
        head.push_str(&format!("{name}: {value}\r\n"));
    }
    head.push_str("\r\n");
    stream.write_all(head.as_bytes()).await.expect("http write");
    stream.write_all(body).await.expect("http write");
    let mut response = Vec::new();
    stream.read_to_end(&mut response).await.expect("http read");
    let split = response
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .expect("a complete response");
    let head = String::from_utf8_lossy(&response[..split]).into_owned();
    let mut lines = head.lines();
    let status = lines
        .next()
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|c| c.parse().ok())
        .expect("status line");
    let headers = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(k, v)| (k.trim().to_ascii_lowercase(), v.trim().to_owned()))
        .collect();
    HttpAnswer {
        status,
        headers,
        body: response[split + 4..].to_vec(),
    }
}

/// `config check` of the built binary on `settings`: (succeeded, stderr).
pub fn config_check(settings: &std::path::Path) -> (bool, String) {
    let output = std::process::Command::new(env!("CARGO_BIN_EXE_integration-health"))
        .args(["config", "check", "--config"])
        .arg(settings)
        .output()
        .expect("runs");
    let stderr = String::from_utf8_lossy(&output.stderr).into_owned();
    (output.status.success(), stderr)
}
