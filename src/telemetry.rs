//! Logs, Prometheus metrics, and the HTTP endpoints operators probe: `/metrics`, `/healthz`
//! and `/readyz`.

use std::net::SocketAddr;
use std::sync::atomic::AtomicU64;
use std::sync::Arc;
use std::time::Duration;

use axum::extract::State;
use axum::http::{header, StatusCode};
use axum::response::IntoResponse;
use axum::routing::get;
use axum::Router;
use prometheus_client::encoding::text::encode;
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{exponential_buckets, Histogram};
use prometheus_client::registry::Registry;
use tracing_subscriber::EnvFilter;

use crate::config::LogFormat;
use crate::event::IntegrationType;
use crate::query::QueryEngine;
use crate::store::Applied;

#[derive(Debug, thiserror::Error)]
pub enum TelemetryError {
    #[error("cannot set up OTLP trace export to {endpoint}: {message}")]
    Traces { endpoint: String, message: String },
    #[error("cannot set up OTLP metric export to {endpoint}: {message}")]
    Metrics { endpoint: String, message: String },
}

/// Flushes and stops the OTLP exporters when dropped.
#[derive(Default)]
pub struct TelemetryGuard {
    tracer_provider: Option<opentelemetry_sdk::trace::TracerProvider>,
}

impl Drop for TelemetryGuard {
    fn drop(&mut self) {
        if let Some(provider) = self.tracer_provider.take() {
            let _ = provider.shutdown();
        }
    }
}

fn resource() -> opentelemetry_sdk::Resource {
    opentelemetry_sdk::Resource::new([opentelemetry::KeyValue::new(
        "service.name",
        "integration-health",
    )])
}

/// Logs to stderr (pretty or JSON lines) and, when `otlp_endpoint` is set, exports spans
/// through OTLP/gRPC. Without an endpoint nothing is exported. Must run inside the runtime.
pub fn init(
    format: LogFormat,
    filter: &str,
    otlp_endpoint: Option<&str>,
) -> Result<TelemetryGuard, TelemetryError> {
    use opentelemetry::trace::TracerProvider as _;
    use tracing_subscriber::layer::SubscriberExt;
    use tracing_subscriber::util::SubscriberInitExt;
    use tracing_subscriber::Layer;

    let filter = EnvFilter::try_new(filter).unwrap_or_else(|_| EnvFilter::new("info"));
    let logs = match format {
        LogFormat::Pretty => tracing_subscriber::fmt::layer()
            .with_writer(std::io::stderr)
            .boxed(),
        LogFormat::Json => tracing_subscriber::fmt::layer()
            .json()
            .with_writer(std::io::stderr)
            .boxed(),
    };
    let mut guard = TelemetryGuard::default();
    let traces = match otlp_endpoint {
        Some(endpoint) => {
            use opentelemetry_otlp::WithExportConfig;
            let exporter = opentelemetry_otlp::SpanExporter::builder()
                .with_tonic()
                .with_endpoint(endpoint)
                .build()
                .map_err(|e| TelemetryError::Traces {
                    endpoint: endpoint.to_owned(),
                    message: e.to_string(),
                })?;
            let provider = opentelemetry_sdk::trace::TracerProvider::builder()
                .with_batch_exporter(exporter, opentelemetry_sdk::runtime::Tokio)
                .with_resource(resource())
                .build();
            let tracer = provider.tracer("integration-health");
            guard.tracer_provider = Some(provider);
            Some(tracing_opentelemetry::layer().with_tracer(tracer))
        }
        None => None,
    };
    // A second init (tests) is harmless; the first subscriber stays.
    let _ = tracing_subscriber::registry()
        .with(filter)
        .with(logs)
        .with(traces)
        .try_init();
    Ok(guard)
}

/// Exports the service's key figures as OTLP metrics every `interval`, read from the store at
/// each collection. The returned provider must be shut down to flush the last values.
pub fn export_metrics(
    endpoint: &str,
    engine: QueryEngine,
    interval: Duration,
) -> Result<opentelemetry_sdk::metrics::SdkMeterProvider, TelemetryError> {
    use opentelemetry::metrics::MeterProvider as _;
    use opentelemetry_otlp::WithExportConfig;

    let exporter = opentelemetry_otlp::MetricExporter::builder()
        .with_tonic()
        .with_endpoint(endpoint)
        .build()
        .map_err(|e| TelemetryError::Metrics {
            endpoint: endpoint.to_owned(),
            message: e.to_string(),
        })?;
    let reader = opentelemetry_sdk::metrics::PeriodicReader::builder(
        exporter,
        opentelemetry_sdk::runtime::Tokio,
    )
    .with_interval(interval)
    .build();
    let provider = opentelemetry_sdk::metrics::SdkMeterProvider::builder()
        .with_reader(reader)
        .with_resource(resource())
        .build();
    let meter = provider.meter("integration-health");
    let totals = |pick: fn(&crate::store::IngestTotals) -> u64,
                  name: &'static str,
                  help: &'static str| {
        let engine = engine.clone();
        meter
            .u64_observable_counter(name)
            .with_description(help)
            .with_callback(move |observer| observer.observe(pick(&engine.store().totals()), &[]))
            .build()
    };
    let _ = totals(
        |t| t.accepted,
        "integration_health.events.accepted",
        "Events counted",
    );
    let _ = totals(
        |t| t.rejected,
        "integration_health.events.rejected",
        "Events sent to the DLQ",
    );
    let _ = totals(
        |t| t.duplicates,
        "integration_health.events.duplicates",
        "Repeated events ignored",
    );
    let _ = totals(
        |t| t.late_dropped,
        "integration_health.events.late_dropped",
        "Events older than retention",
    );
    let lag_engine = engine.clone();
    let _ = meter
        .i64_observable_gauge("integration_health.partition.lag")
        .with_description("Messages not yet applied, per partition")
        .with_callback(move |observer| {
            for p in lag_engine.ingest_status().partitions {
                let labels = [
                    opentelemetry::KeyValue::new("topic", p.topic.clone()),
                    opentelemetry::KeyValue::new("partition", i64::from(p.partition)),
                ];
                observer.observe(p.lag, &labels);
            }
        })
        .build();
    let groups_engine = engine;
    let _ = meter
        .u64_observable_gauge("integration_health.store.failure_groups")
        .with_description("Failure groups held in memory")
        .with_callback(move |observer| {
            observer.observe(groups_engine.store().cardinality().groups, &[])
        })
        .build();
    let _ = meter
        .u64_observable_gauge("integration_health.process.resident_memory")
        .with_description("Resident set size in bytes")
        .with_callback(|observer| observer.observe(resident_memory_bytes(), &[]))
        .build();
    Ok(provider)
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct EventLabels {
    outcome: &'static str,
    integration_type: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ReasonLabels {
    reason: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct RpcLabels {
    rpc: &'static str,
    code: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct RpcNameLabels {
    rpc: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct PartitionLabels {
    topic: String,
    partition: String,
}

/// Every series the service exports. Counters are bumped where things happen; gauges that
/// describe state (offsets, lag, cardinality, memory) are read from the store at scrape time.
pub struct Metrics {
    registry: Registry,
    events: Family<EventLabels, Counter>,
    rejected: Family<ReasonLabels, Counter>,
    pub dlq_failures: Counter<u64, AtomicU64>,
    rpc_requests: Family<RpcLabels, Counter>,
    rpc_seconds: Family<RpcNameLabels, Histogram>,
    snapshot_write_seconds: Histogram,
    snapshot_pause_seconds: Histogram,
    next_offset: Family<PartitionLabels, Gauge>,
    high_watermark: Family<PartitionLabels, Gauge>,
    lag: Family<PartitionLabels, Gauge>,
    snapshot_age_seconds: Family<PartitionLabels, Gauge<f64, std::sync::atomic::AtomicU64>>,
    snapshot_bytes: Family<PartitionLabels, Gauge>,
    tenants: Gauge,
    failure_groups: Gauge,
    buckets: Gauge,
    overflowed: Gauge,
    resident_memory: Gauge,
}

fn latency_histogram() -> Histogram {
    // 50 µs .. ~3 s.
    Histogram::new(exponential_buckets(0.000_05, 2.0, 17))
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

impl Metrics {
    pub fn new() -> Self {
        let mut registry = Registry::with_prefix("integration_health");
        let metrics = Metrics {
            events: Family::default(),
            rejected: Family::default(),
            dlq_failures: Counter::default(),
            rpc_requests: Family::default(),
            rpc_seconds: Family::new_with_constructor(latency_histogram),
            snapshot_write_seconds: Histogram::new(exponential_buckets(0.001, 2.0, 14)),
            snapshot_pause_seconds: Histogram::new(exponential_buckets(0.0005, 2.0, 14)),
            next_offset: Family::default(),
            high_watermark: Family::default(),
            lag: Family::default(),
            snapshot_age_seconds: Family::default(),
            snapshot_bytes: Family::default(),
            tenants: Gauge::default(),
            failure_groups: Gauge::default(),
            buckets: Gauge::default(),
            overflowed: Gauge::default(),
            resident_memory: Gauge::default(),
            registry: Registry::default(),
        };
        registry.register(
            "events",
            "Valid events by what became of them",
            metrics.events.clone(),
        );
        registry.register(
            "events_rejected",
            "Events sent to the dead-letter topic, by reason",
            metrics.rejected.clone(),
        );
        registry.register(
            "dlq_delivery_failures",
            "Dead letters the broker did not acknowledge",
            metrics.dlq_failures.clone(),
        );
        registry.register(
            "grpc_requests",
            "gRPC requests by method and status code",
            metrics.rpc_requests.clone(),
        );
        registry.register(
            "grpc_request_duration_seconds",
            "gRPC request latency by method",
            metrics.rpc_seconds.clone(),
        );
        registry.register(
            "snapshot_write_duration_seconds",
            "Time to write a snapshot file durably",
            metrics.snapshot_write_seconds.clone(),
        );
        registry.register(
            "snapshot_pause_duration_seconds",
            "Time ingest paused to encode a snapshot",
            metrics.snapshot_pause_seconds.clone(),
        );
        registry.register(
            "partition_next_offset",
            "Next offset to apply, per partition",
            metrics.next_offset.clone(),
        );
        registry.register(
            "partition_high_watermark",
            "Broker high watermark, per partition",
            metrics.high_watermark.clone(),
        );
        registry.register(
            "partition_lag",
            "Messages not yet applied, per partition",
            metrics.lag.clone(),
        );
        registry.register(
            "snapshot_age_seconds",
            "Age of the newest durable snapshot, per partition",
            metrics.snapshot_age_seconds.clone(),
        );
        registry.register(
            "snapshot_size_bytes",
            "Size of the newest snapshot, per partition",
            metrics.snapshot_bytes.clone(),
        );
        registry.register(
            "store_tenants",
            "Tenants held in memory (summed over partitions)",
            metrics.tenants.clone(),
        );
        registry.register(
            "store_failure_groups",
            "Failure groups held in memory",
            metrics.failure_groups.clone(),
        );
        registry.register(
            "store_buckets",
            "Time buckets held in memory",
            metrics.buckets.clone(),
        );
        registry.register(
            "store_overflowed_events",
            "Failures that landed in an overflow group (group cap reached)",
            metrics.overflowed.clone(),
        );
        registry.register(
            "process_resident_memory_bytes",
            "Resident set size of the process",
            metrics.resident_memory.clone(),
        );
        Metrics {
            registry,
            ..metrics
        }
    }

    pub fn applied(&self, integration_type: IntegrationType, applied: Applied, count: u64) {
        let outcome = match applied {
            Applied::Accepted => "accepted",
            Applied::Duplicate => "duplicate",
            Applied::LateDropped => "late_dropped",
        };
        self.events
            .get_or_create(&EventLabels {
                outcome,
                integration_type: integration_type.as_str(),
            })
            .inc_by(count);
    }

    pub fn rejected(&self, reason: &'static str) {
        self.rejected.get_or_create(&ReasonLabels { reason }).inc();
    }

    pub fn rpc(&self, rpc: &'static str, code: tonic::Code, elapsed: Duration) {
        self.rpc_requests
            .get_or_create(&RpcLabels {
                rpc,
                code: format!("{code:?}"),
            })
            .inc();
        self.rpc_seconds
            .get_or_create(&RpcNameLabels { rpc })
            .observe(elapsed.as_secs_f64());
    }

    pub fn snapshot(&self, pause: Duration, write: Duration) {
        self.snapshot_pause_seconds.observe(pause.as_secs_f64());
        self.snapshot_write_seconds.observe(write.as_secs_f64());
    }

    /// Refreshes the state gauges from the store and renders the text exposition format.
    pub fn render(&self, engine: &QueryEngine) -> String {
        let status = engine.ingest_status();
        for family in [
            &self.next_offset,
            &self.high_watermark,
            &self.lag,
            &self.snapshot_bytes,
        ] {
            family.clear();
        }
        self.snapshot_age_seconds.clear();
        for p in &status.partitions {
            let labels = PartitionLabels {
                topic: p.topic.clone(),
                partition: p.partition.to_string(),
            };
            self.next_offset.get_or_create(&labels).set(p.next_offset);
            self.high_watermark
                .get_or_create(&labels)
                .set(p.high_watermark);
            self.lag.get_or_create(&labels).set(p.lag);
            if let Some(snapshot) = p.snapshot {
                self.snapshot_age_seconds
                    .get_or_create(&labels)
                    .set(p.snapshot_age_ms as f64 / 1000.0);
                self.snapshot_bytes
                    .get_or_create(&labels)
                    .set(snapshot.bytes as i64);
            }
        }
        let cardinality = engine.store().cardinality();
        self.tenants.set(cardinality.tenants as i64);
        self.failure_groups.set(cardinality.groups as i64);
        self.buckets.set(cardinality.buckets as i64);
        self.overflowed.set(status.totals.overflowed as i64);
        self.resident_memory.set(resident_memory_bytes() as i64);
        let mut text = String::new();
        let _ = encode(&mut text, &self.registry);
        text
    }
}

pub fn resident_memory_bytes() -> u64 {
    let Ok(status) = std::fs::read_to_string("/proc/self/status") else {
        return 0;
    };
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
        .map_or(0, |kb| kb * 1024)
}

/// Ready once ingest has received its assignment and every assigned partition has been
/// restored and is within `max_lag` messages of the broker's high watermark.
pub fn is_ready(engine: &QueryEngine, max_lag: i64) -> Result<(), String> {
    if !engine.store().has_assignment() {
        return Err("waiting for the consumer group to assign partitions".into());
    }
    // Lag only means something once the broker has reported the partition's high watermark.
    let store = engine.store();
    if let Some((key, _)) = store
        .partitions()
        .into_iter()
        .find(|(key, _)| store.high_watermark(key).is_none())
    {
        return Err(format!(
            "{}[{}]: high watermark not reported yet",
            key.topic, key.partition
        ));
    }
    let status = engine.ingest_status();
    if let Some(p) = status.partitions.iter().find(|p| p.lag > max_lag) {
        return Err(format!(
            "{}[{}]: lag {} above {max_lag}",
            p.topic, p.partition, p.lag
        ));
    }
    Ok(())
}

#[derive(Clone)]
struct HttpState {
    engine: QueryEngine,
    metrics: Arc<Metrics>,
    max_lag: i64,
}

async fn metrics_page(State(state): State<HttpState>) -> impl IntoResponse {
    (
        [(
            header::CONTENT_TYPE,
            "application/openmetrics-text; version=1.0.0; charset=utf-8",
        )],
        state.metrics.render(&state.engine),
    )
}

async fn healthz() -> impl IntoResponse {
    (StatusCode::OK, "ok\n")
}

async fn readyz(State(state): State<HttpState>) -> impl IntoResponse {
    match is_ready(&state.engine, state.max_lag) {
        Ok(()) => (StatusCode::OK, "ready\n".to_owned()),
        Err(why) => (
            StatusCode::SERVICE_UNAVAILABLE,
            format!("not ready: {why}\n"),
        ),
    }
}

pub fn http_router(engine: QueryEngine, metrics: Arc<Metrics>, max_lag: i64) -> Router {
    Router::new()
        .route("/metrics", get(metrics_page))
        .route("/healthz", get(healthz))
        .route("/readyz", get(readyz))
        .with_state(HttpState {
            engine,
            metrics,
            max_lag,
        })
}

/// Binds the operations HTTP port; returns the bound address and the listener to serve.
pub async fn bind_http(addr: SocketAddr) -> std::io::Result<(SocketAddr, tokio::net::TcpListener)> {
    let listener = tokio::net::TcpListener::bind(addr).await?;
    Ok((listener.local_addr()?, listener))
}
