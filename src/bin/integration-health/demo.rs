//! `demo`: librdkafka's in-process mock cluster, the traffic simulator and the service, all in
//! this process. `simulate`: the simulator alone against a real cluster.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use integration_health::clock::{Clock, SystemClock};
use integration_health::config::Config;
use integration_health::server::{self, ServerError};
use integration_health::store::{Store, DAY_MS, HOUR_MS};
use integration_health::testkit::EmbeddedKafka;
use rdkafka::error::KafkaError;
use thiserror::Error;
use tokio_util::sync::CancellationToken;
use tracing::info;

use crate::receiver;
use crate::simulator::{Simulator, TrafficProducer};

#[derive(Debug, Error)]
pub enum DemoError {
    #[error("mock Kafka cluster")]
    Kafka(#[from] KafkaError),
    #[error(transparent)]
    Server(#[from] ServerError),
    #[error("a demo task failed")]
    Task(#[from] tokio::task::JoinError),
    #[error("the demo's alert receiver")]
    Receiver(#[from] std::io::Error),
    #[error("backfill stalled: {consumed} of {produced} events consumed after {waited_secs} s")]
    BackfillStalled {
        produced: u64,
        consumed: u64,
        waited_secs: u64,
    },
}

#[derive(Debug, Clone)]
pub struct DemoOptions {
    pub grpc_addr: SocketAddr,
    pub http_addr: SocketAddr,
    pub topic: String,
    pub partitions: i32,
    pub backfill_days: i64,
    pub seed: u64,
}

impl Default for DemoOptions {
    fn default() -> Self {
        DemoOptions {
            grpc_addr: SocketAddr::from(([127, 0, 0, 1], 50051)),
            http_addr: SocketAddr::from(([127, 0, 0, 1], 9464)),
            topic: "integration-events".into(),
            partitions: 6,
            backfill_days: 32,
            seed: 42,
        }
    }
}

/// The mock cluster keeps only ~5 MB (about 13k of these events) per partition, and the demo's
/// keys put a whole tenant on one partition. So the backfill goes in small steps and waits for
/// the consumer to stay within this many events of the producer.
const BACKFILL_HEADROOM: u64 = 5_000;
const BACKFILL_STEP_MS: i64 = 4 * HOUR_MS;

fn wait_for_consumer(store: &Store, produced: u64, headroom: u64) -> Result<(), DemoError> {
    let started = std::time::Instant::now();
    loop {
        let consumed = store.totals().seen();
        if consumed + headroom >= produced {
            return Ok(());
        }
        if started.elapsed() > Duration::from_secs(120) {
            return Err(DemoError::BackfillStalled {
                produced,
                consumed,
                waited_secs: started.elapsed().as_secs(),
            });
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

fn backfill(
    simulator: &mut Simulator,
    producer: &mut TrafficProducer,
    store: &Store,
    from_ms: i64,
    to_ms: i64,
) -> Result<u64, DemoError> {
    let mut produced = 0;
    let mut step = from_ms;
    while step < to_ms {
        let events = simulator.events_between(step, (step + BACKFILL_STEP_MS).min(to_ms));
        produced += producer.publish(&events);
        wait_for_consumer(store, produced, BACKFILL_HEADROOM)?;
        step += BACKFILL_STEP_MS;
    }
    producer.flush();
    wait_for_consumer(store, produced, 0)?;
    Ok(produced)
}

pub async fn run_demo(options: DemoOptions, shutdown: CancellationToken) -> Result<(), DemoError> {
    let kafka = EmbeddedKafka::start(1)?;
    let bootstrap = kafka.bootstrap_servers();
    let receiver = receiver::start(shutdown.clone()).await?;
    let destinations = receiver.destinations()?;
    let config = Config {
        brokers: bootstrap.clone(),
        topic: options.topic.clone(),
        // The simulator keys every event by its tenant.
        input_keyed_by_tenant: true,
        grpc_addr: options.grpc_addr,
        http_addr: options.http_addr,
        // The backfill waits for the consumer after each step; a long fetch wait would idle it.
        kafka: [("fetch.wait.max.ms".to_owned(), "10".to_owned())]
            .into_iter()
            .collect(),
        // The simulator sends a few events a minute per integration; production traffic would
        // meet the default minimum of 20 in the window.
        alert_rate_min_events: 5,
        alert_slo_min_events: 5,
        alert_interval_ms: 2_000,
        // Alerts go to the receiver above, which prints them.
        alert_default_destinations: destinations.iter().map(|d| d.name.clone()).collect(),
        alert_destinations: destinations,
        public_url: (options.http_addr.port() != 0)
            .then(|| format!("http://{}/", options.http_addr)),
        ..Config::default()
    };
    kafka.create_topic(&config.topic, options.partitions)?;
    kafka.create_topic(&config.dlq_topic(), 1)?;
    println!("Kafka (in-process mock cluster) bootstrap: {bootstrap}");
    println!(
        "  publish your own events: kcat -P -b {bootstrap} -t {} -k <tenant_id>",
        config.topic
    );

    let service = server::start(&config, Arc::new(SystemClock), shutdown.clone()).await?;
    let grpc = service.grpc_addr;
    println!("gRPC: {grpc} (health and reflection enabled)");
    println!(
        "metrics: http://{}/metrics (also /healthz, /readyz)",
        service.http_addr
    );
    let http = service.http_addr;

    let now_ms = SystemClock.now_ms();
    let mut simulator = Simulator::new(options.seed, now_ms);
    let tenant = simulator.tenant_ids()[0];
    let mut producer = TrafficProducer::new(&bootstrap, &config.topic)?;
    let store = service.store.clone();
    let from_ms = now_ms - options.backfill_days * DAY_MS;
    println!(
        "Backfilling {} days of history through Kafka ...",
        options.backfill_days
    );
    let started = std::time::Instant::now();
    let (simulator, producer, produced) = tokio::task::spawn_blocking(move || {
        let produced = backfill(&mut simulator, &mut producer, &store, from_ms, now_ms);
        (simulator, producer, produced)
    })
    .await?;
    let produced = produced?;
    info!(
        produced,
        secs = started.elapsed().as_secs_f64(),
        "backfill done"
    );
    println!(
        "Backfilled {produced} events in {:.1} s. Try:",
        started.elapsed().as_secs_f64()
    );
    // Echo the command the way this binary was started, so the hint can be pasted as is.
    let exe = std::env::args()
        .next()
        .unwrap_or_else(|| "integration-health".to_owned());
    let addr = format!("http://{grpc}");
    println!("  {exe} query --addr {addr} overview --tenant {tenant}");
    println!("  {exe} query --addr {addr} failures --tenant {tenant}");
    println!("  {exe} query --addr {addr} trends --tenant {tenant}");
    println!("  {exe} query --addr {addr} status");
    println!("  grpcurl -plaintext -d '{{\"tenant_id\":\"{tenant}\"}}' {grpc} integration_health.v1.IntegrationHealth/GetOverview");
    println!("  curl -s -H 'Content-Type: application/json' -d '{{\"tenantId\":\"{tenant}\"}}' http://{http}/integration_health.v1.IntegrationHealth/GetOverview");
    println!("Dashboard: http://{http}/?tenant={tenant}");
    println!("  {exe} query --addr {addr} alerts --watch   # the incidents' alerts, live");
    println!(
        "Alerts are delivered to a local receiver at {} (a signed webhook, Slack, PagerDuty), \
         printed below as they arrive; the webhook's secret is in {}",
        receiver.addr,
        receiver.webhook_secret_file().display()
    );
    println!("Live traffic is flowing. Press ctrl-c to stop.");

    let live = tokio::task::spawn_blocking({
        let shutdown = shutdown.clone();
        move || live_traffic(simulator, producer, now_ms, &shutdown)
    });
    let waited = service.wait().await;
    let _ = live.await;
    drop(kafka);
    waited.map_err(DemoError::from)
}

fn live_traffic(
    mut simulator: Simulator,
    mut producer: TrafficProducer,
    mut last_ms: i64,
    shutdown: &CancellationToken,
) {
    while !shutdown.is_cancelled() {
        std::thread::sleep(Duration::from_millis(250));
        let now_ms = SystemClock.now_ms();
        let events = simulator.events_between(last_ms, now_ms);
        producer.publish(&events);
        last_ms = now_ms;
    }
    producer.flush();
}

/// Plays the simulated runtimes against a real cluster: history first, then live traffic
/// until `shutdown`. Used by the docker-compose setup to feed the service.
pub async fn run_simulator(
    bootstrap: &str,
    topic: &str,
    backfill_days: i64,
    shutdown: CancellationToken,
) -> Result<(), DemoError> {
    let now_ms = SystemClock.now_ms();
    let mut simulator = Simulator::new(42, now_ms);
    let mut producer = TrafficProducer::new(bootstrap, topic)?;
    let produced = tokio::task::spawn_blocking(move || {
        let mut produced = 0;
        let mut step = now_ms - backfill_days * DAY_MS;
        while step < now_ms {
            let events = simulator.events_between(step, (step + BACKFILL_STEP_MS).min(now_ms));
            produced += producer.publish(&events);
            step += BACKFILL_STEP_MS;
        }
        producer.flush();
        live_traffic(simulator, producer, now_ms, &shutdown);
        produced
    })
    .await
    .unwrap_or(0);
    info!(backfilled = produced, "simulator stopped");
    Ok(())
}
