//! The Prometheus registry: counters bumped where things happen, gauges set from a
//! `StateReading` at scrape time.

use std::collections::HashMap;
use std::sync::atomic::AtomicU64;
use std::time::{Duration, Instant};

use prometheus_client::encoding::text::encode;
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{exponential_buckets, Histogram};
use prometheus_client::registry::Registry;

use super::StateReading;
use crate::event::IntegrationType;
use crate::store::Applied;

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
struct PeerBytesLabels {
    rpc: &'static str,
    direction: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ListenerLabels {
    listener: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct DeliveryLabels {
    destination: String,
    outcome: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct DestinationLabels {
    destination: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct PartitionLabels {
    topic: String,
    partition: String,
}

/// Every series the service exports. Counters are bumped where things happen; gauges that
/// describe state (offsets, lag, cardinality, memory) are read from a `StateReading` at scrape time.
pub struct Metrics {
    registry: Registry,
    events: Family<EventLabels, Counter>,
    rejected: Family<ReasonLabels, Counter>,
    pub(crate) dlq_failures: Counter<u64, AtomicU64>,
    tenants_split: Counter<u64, AtomicU64>,
    tenants_evicted: Family<PartitionLabels, Counter>,
    tenants_refused: Family<PartitionLabels, Counter>,
    tenant_cap_full: Family<PartitionLabels, Gauge>,
    /// When each partition last refused a new tenant, for `tenant_cap_full`.
    last_refusal: parking_lot::Mutex<HashMap<PartitionLabels, Instant>>,
    connections_open: Family<ListenerLabels, Gauge>,
    connections_refused: Family<ListenerLabels, Counter>,
    connections_refused_per_ip: Family<ListenerLabels, Counter>,
    offsets_lost: Family<PartitionLabels, Counter>,
    peer_bytes: Family<PeerBytesLabels, Counter>,
    rpc_requests: Family<RpcLabels, Counter>,
    rpc_seconds: Family<RpcNameLabels, Histogram>,
    alert_deliveries: Family<DeliveryLabels, Counter>,
    alert_delivery_seconds: Family<DestinationLabels, Histogram>,
    alert_notifier_lag: Gauge,
    silence_skipped: Family<ReasonLabels, Counter>,
    snapshot_write_seconds: Histogram,
    snapshot_pause_seconds: Histogram,
    next_offset: Family<PartitionLabels, Gauge>,
    high_watermark: Family<PartitionLabels, Gauge>,
    lag: Family<PartitionLabels, Gauge>,
    snapshot_age_seconds: Family<PartitionLabels, Gauge<f64, std::sync::atomic::AtomicU64>>,
    snapshot_bytes: Family<PartitionLabels, Gauge>,
    snapshot_failing_seconds: Family<PartitionLabels, Gauge<f64, std::sync::atomic::AtomicU64>>,
    snapshot_write_failures: Counter<u64, AtomicU64>,
    tenants: Gauge,
    failure_groups: Gauge,
    buckets: Gauge,
    overflowed: Gauge,
    resident_memory: Gauge,
}

fn delivery_histogram() -> Histogram {
    // 5 ms .. ~80 s.
    Histogram::new(exponential_buckets(0.005, 2.0, 15))
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
            tenants_split: Counter::default(),
            tenants_evicted: Family::default(),
            tenants_refused: Family::default(),
            tenant_cap_full: Family::default(),
            last_refusal: parking_lot::Mutex::default(),
            connections_open: Family::default(),
            connections_refused: Family::default(),
            connections_refused_per_ip: Family::default(),
            offsets_lost: Family::default(),
            peer_bytes: Family::default(),
            rpc_requests: Family::default(),
            rpc_seconds: Family::new_with_constructor(latency_histogram),
            alert_deliveries: Family::default(),
            alert_delivery_seconds: Family::new_with_constructor(delivery_histogram),
            alert_notifier_lag: Gauge::default(),
            silence_skipped: Family::default(),
            snapshot_write_seconds: Histogram::new(exponential_buckets(0.001, 2.0, 14)),
            snapshot_pause_seconds: Histogram::new(exponential_buckets(0.0005, 2.0, 14)),
            next_offset: Family::default(),
            high_watermark: Family::default(),
            lag: Family::default(),
            snapshot_age_seconds: Family::default(),
            snapshot_bytes: Family::default(),
            snapshot_failing_seconds: Family::default(),
            snapshot_write_failures: Counter::default(),
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
            "tenants_split",
            "Tenants whose events arrived on a second partition while input_keyed_by_tenant is set",
            metrics.tenants_split.clone(),
        );
        registry.register(
            "snapshot_failing_seconds",
            "Seconds since a partition's snapshot writes began to fail (0 while they succeed)",
            metrics.snapshot_failing_seconds.clone(),
        );
        registry.register(
            "snapshot_write_failures",
            "Snapshot writes that failed (full disk, object store errors)",
            metrics.snapshot_write_failures.clone(),
        );
        registry.register(
            "connections_open",
            "Open connections, per listener",
            metrics.connections_open.clone(),
        );
        registry.register(
            "connections_refused",
            "Connections closed at once because the listener was at its connection cap",
            metrics.connections_refused.clone(),
        );
        registry.register(
            "connections_refused_per_ip",
            "Connections closed at once because their client address held max_connections_per_ip",
            metrics.connections_refused_per_ip.clone(),
        );
        registry.register(
            "tenants_evicted",
            "Tenants on probation evicted at tenant_cap_per_partition to admit a new one, per partition",
            metrics.tenants_evicted.clone(),
        );
        registry.register(
            "tenants_refused",
            "First events of new tenants refused (tenant_limit) because every tenant of the partition had settled",
            metrics.tenants_refused.clone(),
        );
        registry.register(
            "tenant_cap_full",
            "1 while a partition refuses new tenants (a refusal within the last minute), else 0",
            metrics.tenant_cap_full.clone(),
        );
        registry.register(
            "offsets_lost",
            "Offsets deleted from a partition's log before the service read them (their events are not counted)",
            metrics.offsets_lost.clone(),
        );
        registry.register(
            "peer_bytes",
            "Message bytes this replica sent to and received from the others for its callers, by call",
            metrics.peer_bytes.clone(),
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
            "alert_deliveries",
            "Alert deliveries per destination: attempts sent (taken), failed and retried; state changes dead_lettered after their last attempt, or stale (too old to send)",
            metrics.alert_deliveries.clone(),
        );
        registry.register(
            "alert_notifier_lag",
            "Records of <topic>.alerts in this replica's notifier partitions not yet delivered everywhere",
            metrics.alert_notifier_lag.clone(),
        );
        registry.register(
            "alert_silence_skipped",
            "Silence evaluations not judged, per reason: lagging or unassigned (the partition is behind) or lost_offsets (offsets lost within twice the silence's window)",
            metrics.silence_skipped.clone(),
        );
        registry.register(
            "alert_delivery_seconds",
            "Time of each attempt to deliver an alert, per destination",
            metrics.alert_delivery_seconds.clone(),
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
            "Time buckets held in memory, a quiet series' kept events counted as its entries",
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

    pub(crate) fn applied(&self, integration_type: IntegrationType, applied: Applied, count: u64) {
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

    pub(crate) fn connection_opened(&self, listener: &'static str, change: i64) {
        self.connections_open
            .get_or_create(&ListenerLabels { listener })
            .inc_by(change);
    }

    pub(crate) fn connection_refused(&self, listener: &'static str) {
        self.connections_refused
            .get_or_create(&ListenerLabels { listener })
            .inc();
    }

    pub(crate) fn connection_refused_per_ip(&self, listener: &'static str) {
        self.connections_refused_per_ip
            .get_or_create(&ListenerLabels { listener })
            .inc();
    }

    pub(crate) fn tenant_evicted(&self, topic: &str, partition: i32) {
        self.tenants_evicted
            .get_or_create(&partition_labels(topic, partition))
            .inc();
    }

    pub(crate) fn tenant_refused(&self, topic: &str, partition: i32) {
        let labels = partition_labels(topic, partition);
        self.tenants_refused.get_or_create(&labels).inc();
        self.last_refusal.lock().insert(labels, Instant::now());
    }

    pub(crate) fn tenant_split(&self) {
        self.tenants_split.inc();
    }

    pub(crate) fn offsets_lost(&self, topic: &str, partition: i32, count: u64) {
        self.offsets_lost
            .get_or_create(&PartitionLabels {
                topic: topic.to_owned(),
                partition: partition.to_string(),
            })
            .inc_by(count);
    }

    pub(crate) fn rejected(&self, reason: &'static str) {
        self.rejected.get_or_create(&ReasonLabels { reason }).inc();
    }

    /// Bytes of protobuf messages exchanged with another replica on a caller's behalf.
    pub(crate) fn peer_bytes(&self, rpc: &'static str, sent: usize, received: usize) {
        for (direction, bytes) in [("sent", sent), ("received", received)] {
            self.peer_bytes
                .get_or_create(&PeerBytesLabels { rpc, direction })
                .inc_by(bytes as u64);
        }
    }

    pub(crate) fn rpc(&self, rpc: &'static str, code: tonic::Code, elapsed: Duration) {
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

    pub(crate) fn alert_delivery(&self, destination: &str, outcome: &'static str) {
        self.alert_deliveries
            .get_or_create(&DeliveryLabels {
                destination: destination.to_owned(),
                outcome,
            })
            .inc();
    }

    pub(crate) fn silence_skipped(&self, reason: &'static str) {
        self.silence_skipped
            .get_or_create(&ReasonLabels { reason })
            .inc();
    }

    pub(crate) fn set_notifier_lag(&self, records: i64) {
        self.alert_notifier_lag.set(records);
    }

    pub(crate) fn alert_delivery_time(&self, destination: &str, took: Duration) {
        self.alert_delivery_seconds
            .get_or_create(&DestinationLabels {
                destination: destination.to_owned(),
            })
            .observe(took.as_secs_f64());
    }

    pub(crate) fn snapshot_failed(&self) {
        self.snapshot_write_failures.inc();
    }

    pub(crate) fn snapshot(&self, pause: Duration, write: Duration) {
        self.snapshot_pause_seconds.observe(pause.as_secs_f64());
        self.snapshot_write_seconds.observe(write.as_secs_f64());
    }

    /// Refreshes the state gauges from `state` and renders the text exposition format.
    pub(crate) fn render(&self, state: &StateReading) -> String {
        for family in [
            &self.next_offset,
            &self.high_watermark,
            &self.lag,
            &self.snapshot_bytes,
        ] {
            family.clear();
        }
        self.snapshot_age_seconds.clear();
        self.snapshot_failing_seconds.clear();
        for p in &state.partitions {
            let labels = PartitionLabels {
                topic: p.topic.clone(),
                partition: p.partition.to_string(),
            };
            self.next_offset.get_or_create(&labels).set(p.next_offset);
            self.high_watermark
                .get_or_create(&labels)
                .set(p.high_watermark);
            self.lag.get_or_create(&labels).set(p.lag);
            if let Some(age) = p.snapshot_age_seconds {
                self.snapshot_age_seconds.get_or_create(&labels).set(age);
            }
            if let Some(bytes) = p.snapshot_bytes {
                self.snapshot_bytes.get_or_create(&labels).set(bytes as i64);
            }
            self.snapshot_failing_seconds
                .get_or_create(&labels)
                .set(p.snapshot_failing_seconds);
        }
        for (labels, at) in self.last_refusal.lock().iter() {
            let full = cap_full(at.elapsed());
            self.tenant_cap_full.get_or_create(labels).set(full);
        }
        let cardinality = state.cardinality;
        self.tenants.set(cardinality.tenants as i64);
        self.failure_groups.set(cardinality.groups as i64);
        self.buckets.set(cardinality.buckets as i64);
        self.overflowed.set(state.totals.overflowed as i64);
        self.resident_memory.set(resident_memory_bytes() as i64);
        let mut text = String::new();
        let _ = encode(&mut text, &self.registry);
        text
    }
}

fn partition_labels(topic: &str, partition: i32) -> PartitionLabels {
    PartitionLabels {
        topic: topic.to_owned(),
        partition: partition.to_string(),
    }
}

/// How long after its last refusal a partition still counts as full: long enough that a
/// scrape every 15 to 30 seconds sees it, and an alert's `for` spans several refusals.
const CAP_FULL_FOR: Duration = Duration::from_secs(60);

/// `tenant_cap_full`'s value, `since` the partition's last refusal.
fn cap_full(since: Duration) -> i64 {
    i64::from(since < CAP_FULL_FOR)
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
