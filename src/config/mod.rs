//! The validated settings the service runs with. The binary fills this from a TOML file,
//! `IH_*` environment variables and flags (flag over env over file over default); the library
//! never reads the environment itself.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use thiserror::Error;

#[derive(Debug, Error)]
pub enum ConfigError {
    #[error("cannot read config file {path}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("config file {path} is not valid")]
    Parse {
        path: PathBuf,
        source: Box<toml::de::Error>,
    },
    #[error("setting `{setting}` {problem}")]
    Invalid {
        setting: &'static str,
        problem: String,
    },
}

pub(crate) fn invalid(setting: &'static str, problem: impl Into<String>) -> ConfigError {
    ConfigError::Invalid {
        setting,
        problem: problem.into(),
    }
}

mod derived;
mod destinations;
mod secrets;
mod tokens;
mod validate;

pub(crate) use validate::is_loopback;

pub use destinations::{check_url, DestinationKind, DestinationSettings, PAGERDUTY_EVENTS_URL};
pub(crate) use secrets::KafkaProperties;
pub use secrets::{ObjectStoreOptions, Secret};
pub use tokens::{check_grants, sha256, TokenGrant};
pub(crate) use tokens::{read_tokens_file, CheckedGrant};

/// How logs are written: for people, or one JSON object a line.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    #[default]
    Pretty,
    Json,
}

#[derive(Debug, Clone, Deserialize, Serialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct Config {
    pub brokers: String,
    pub topic: String,
    pub group: String,
    /// True when every producer keys messages by `tenant_id`. Otherwise (the default) a
    /// repartition stage re-publishes events keyed by tenant to `repartition_topic`, so retries
    /// landing on other partitions are still counted once.
    pub input_keyed_by_tenant: bool,
    /// The repartition stage's output; default `<topic>.by-tenant`.
    pub repartition_topic: Option<String>,
    /// Create the internal topics that are missing through the admin API at start-up.
    pub create_internal_topics: bool,
    /// Replication factor of the topics the service creates; -1 is the broker's default.
    pub internal_topic_replication_factor: i32,
    /// Static group membership (`group.instance.id`), e.g. the pod name in a StatefulSet.
    pub instance_id: Option<String>,
    /// This replica's gRPC address as the other replicas reach it. With it, any replica answers
    /// for every partition, asking the owners of the partitions it does not hold.
    pub advertise_addr: Option<String>,
    /// Where replicas announce their partitions; default `<topic>.members` (compacted).
    pub members_topic: Option<String>,
    /// Token this replica presents to the others (an operator token when tokens are required).
    pub peer_token: Option<Secret>,
    /// How long a replica waits for another's answer.
    pub peer_timeout_ms: u64,
    /// With TLS on: the CA that signed the other replicas' certificates (default
    /// `tls_client_ca`; one of them is required). Replicas present `tls_cert` to each other.
    pub peer_ca: Option<PathBuf>,
    /// How far ahead of this replica's clock an announcement on the members topic may be dated
    /// before it is refused.
    pub member_clock_skew_ms: u64,
    /// How often a replica repeats its announcement, and how old a member's newest one may be
    /// before the others drop it (at least three intervals).
    pub member_announce_interval_ms: u64,
    pub member_ttl_ms: u64,
    /// Dead-letter topic; default `<topic>.dlq`.
    pub dlq_topic: Option<String>,
    pub grpc_addr: SocketAddr,
    /// Prometheus `/metrics`, `/healthz` and `/readyz`.
    pub http_addr: SocketAddr,
    /// With a value, `/healthz`, `/readyz` and `/metrics` move here, served in plain HTTP and
    /// never behind mTLS, so kubelet probes and scrapers need no client certificate.
    pub ops_addr: Option<SocketAddr>,
    /// `/readyz` and gRPC health report ready once every partition is within this lag.
    pub ready_max_lag: i64,
    /// OTLP/gRPC collector, e.g. `http://otel-collector:4317`. Unset: nothing is exported.
    pub otlp_endpoint: Option<String>,
    /// How long a graceful stop (final snapshot, commit, leave the group) may take.
    pub shutdown_grace_ms: u64,
    /// Where snapshots live. Without it (and without `state_url`), state lives only in memory.
    pub state_dir: Option<PathBuf>,
    /// Snapshots in object storage: `s3://bucket/prefix`, `gs://…`, `az://…` or `file:///path`.
    /// Replaces `state_dir`; replicas on different machines hand partitions over through it.
    pub state_url: Option<String>,
    /// Object-store settings (credentials, endpoint): the binary fills them from the standard
    /// `AWS_*`, `GOOGLE_*` and `AZURE_*` variables. Never written out.
    #[serde(skip)]
    pub object_store_options: ObjectStoreOptions,
    pub snapshot_interval_ms: u64,
    /// How often buckets past retention and past the minute window are dropped.
    pub eviction_interval_ms: u64,
    /// Queries that may run at once; more wait for a slot.
    pub max_concurrent_queries: usize,
    /// How long a call may wait for a query slot before it is refused as RESOURCE_EXHAUSTED.
    pub query_queue_ms: u64,
    /// A call running longer than this is cancelled.
    pub request_timeout_ms: u64,
    /// Concurrent HTTP/2 streams one gRPC connection may open.
    pub max_streams_per_connection: u32,
    /// Open watch streams (`WatchTenant`, `WatchAlerts`) in all, and per token (per address
    /// when the API is open); past either, `RESOURCE_EXHAUSTED`.
    pub max_watch_streams: usize,
    /// Connections each HTTP listener (API and ops) holds at once; past it, new ones are
    /// closed at once and counted.
    pub max_http_connections: usize,
    /// Connections the gRPC listener holds at once.
    pub max_grpc_connections: usize,
    /// How long a client may take to send a request's headers.
    pub header_read_timeout_ms: u64,
    /// A connection must begin its first request within this of being accepted (of its TLS
    /// handshake, with TLS), and its next one within `idle_timeout_ms` of the last ending.
    pub first_byte_timeout_ms: u64,
    pub idle_timeout_ms: u64,
    /// Connections one client address may hold on each listener; 0: no cap (behind an
    /// ingress, every client shares its address).
    pub max_connections_per_ip: usize,
    pub max_watch_streams_per_token: usize,
    /// Watch streams one replica (a `peer = true` caller, keyed by its address) holds for its
    /// own callers, one per watched tenant; default `max_watch_streams`.
    pub max_watch_streams_per_peer: Option<usize>,
    /// Calls per second per token (per peer address with an open API); 0 means no limit.
    pub rate_limit_per_token: u32,
    /// How long a tenant's hour buckets are kept (`retention_days` is read as this).
    #[serde(alias = "retention_days")]
    pub hour_retention_days: u32,
    /// How long integrations' and failure groups' hour buckets are kept; unset, as long as
    /// `hour_retention_days`.
    pub detail_hour_retention_days: Option<u32>,
    /// How long day buckets are kept, and how late an event may arrive.
    pub day_retention_days: u32,
    pub minute_window_hours: u32,
    pub max_future_secs: u32,
    pub group_cap_per_tenant: usize,
    /// An issue with no failure for this long is resolved on its own.
    pub auto_resolve_after_hours: u32,
    /// How often alert rules are evaluated.
    pub alert_interval_ms: u64,
    /// Default alert thresholds (see docs/alerts.md).
    pub alert_rate_window_minutes: u32,
    pub alert_rate_threshold: f64,
    pub alert_rate_min_events: u64,
    pub alert_spike_factor: f64,
    pub alert_spike_min_failures: u64,
    pub alert_slo_objective: f64,
    /// The SLO burn pairs' long windows (each short window is a twelfth), and the events the
    /// long window needs.
    pub alert_slo_fast_window_minutes: u32,
    pub alert_slo_slow_window_minutes: u32,
    pub alert_slo_min_events: u64,
    /// Silence: minutes without an event (0: off), and the events the same hours of the
    /// previous 7 days must average for an integration to count as steady.
    pub alert_silence_after_minutes: u32,
    pub alert_silence_min_events: u64,
    /// Per-tenant overrides of the thresholds, TOML; read at start.
    pub alert_rules_file: Option<PathBuf>,
    /// Alert rules set at runtime that one tenant may have.
    pub max_alert_rules_per_tenant: usize,
    /// Integrations one tenant may have per partition; events of further integrations are
    /// counted in one overflow integration per type.
    pub integration_cap_per_tenant: usize,
    /// Tenants one partition may hold; events of further tenants go to the DLQ.
    pub tenant_cap_per_partition: usize,
    /// A tenant stays on probation, and may be evicted at the cap to admit a new one, until it
    /// has more events than this (0: none is ever evicted) ...
    pub tenant_evict_max_events: u64,
    /// ... or has sent events in this many distinct minutes.
    pub tenant_settled_minutes: u32,
    /// Larger messages go to the DLQ as `too_large`.
    pub max_message_bytes: usize,
    pub dedup_capacity: usize,
    pub log_format: LogFormat,
    /// librdkafka properties passed through as-is (SASL, SSL, timeouts, ...).
    pub kafka: KafkaProperties,
    /// A file of `key=value` librdkafka properties (e.g. a mounted Secret), merged over `kafka`.
    pub kafka_properties_file: Option<PathBuf>,
    pub tokens: Vec<TokenGrant>,
    /// A TOML file of `[[tokens]]` (e.g. a mounted Secret), re-read when it changes.
    pub tokens_file: Option<PathBuf>,
    /// Serve gRPC server reflection.
    pub reflection: bool,
    /// PEM certificate chain and key: with both, gRPC and HTTP serve TLS only.
    pub tls_cert: Option<PathBuf>,
    pub tls_key: Option<PathBuf>,
    /// PEM CA: with it, clients must present a certificate it signed (mTLS).
    pub tls_client_ca: Option<PathBuf>,
    /// PEM CA to trust for an `https://` OTLP endpoint, instead of the system's roots.
    pub otlp_ca: Option<PathBuf>,
    /// Allow serving on a non-loopback address without any token.
    pub allow_open_api: bool,
    /// The dashboard's address as people reach it, for links in alert messages.
    pub public_url: Option<String>,
    /// Destinations that a tenant's alerts go to when its rules name none.
    pub alert_default_destinations: Vec<String>,
    /// The first retry's wait; each retry waits up to twice as long, with jitter.
    pub alert_delivery_backoff_ms: u64,
    /// A FIRING read later than this after it was published is not sent.
    pub alert_delivery_max_age_ms: u64,
    /// Where alerts are delivered (see docs/alerts.md).
    pub alert_destinations: Vec<DestinationSettings>,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            brokers: "localhost:9092".into(),
            topic: "integration-events".into(),
            group: "integration-health".into(),
            input_keyed_by_tenant: false,
            repartition_topic: None,
            create_internal_topics: true,
            internal_topic_replication_factor: -1,
            instance_id: None,
            advertise_addr: None,
            members_topic: None,
            peer_token: None,
            peer_timeout_ms: 2_000,
            peer_ca: None,
            member_clock_skew_ms: 60_000,
            member_announce_interval_ms: 10_000,
            member_ttl_ms: 30_000,
            dlq_topic: None,
            grpc_addr: SocketAddr::from(([127, 0, 0, 1], 50051)),
            http_addr: SocketAddr::from(([127, 0, 0, 1], 9464)),
            ops_addr: None,
            ready_max_lag: 1_000,
            shutdown_grace_ms: 10_000,
            otlp_endpoint: None,
            state_dir: None,
            state_url: None,
            object_store_options: ObjectStoreOptions::default(),
            snapshot_interval_ms: 5_000,
            eviction_interval_ms: 60_000,
            max_concurrent_queries: 8,
            query_queue_ms: 250,
            request_timeout_ms: 10_000,
            max_streams_per_connection: 64,
            max_watch_streams: 1_000,
            max_http_connections: 1_024,
            max_grpc_connections: 1_024,
            header_read_timeout_ms: 10_000,
            first_byte_timeout_ms: 10_000,
            idle_timeout_ms: 120_000,
            max_connections_per_ip: 0,
            max_watch_streams_per_token: 50,
            max_watch_streams_per_peer: None,
            rate_limit_per_token: 0,
            hour_retention_days: 62,
            detail_hour_retention_days: None,
            day_retention_days: 400,
            minute_window_hours: 48,
            max_future_secs: 300,
            group_cap_per_tenant: 10_000,
            auto_resolve_after_hours: 24,
            alert_interval_ms: 5_000,
            alert_rate_window_minutes: 15,
            alert_rate_threshold: 0.20,
            alert_rate_min_events: 20,
            alert_spike_factor: 5.0,
            alert_spike_min_failures: 10,
            alert_slo_objective: 0.99,
            alert_slo_fast_window_minutes: 60,
            alert_slo_slow_window_minutes: 360,
            alert_slo_min_events: 20,
            alert_silence_after_minutes: 30,
            alert_silence_min_events: 10,
            alert_rules_file: None,
            max_alert_rules_per_tenant: 200,
            integration_cap_per_tenant: 10_000,
            tenant_cap_per_partition: 50_000,
            tenant_evict_max_events: 10,
            tenant_settled_minutes: 3,
            max_message_bytes: 1 << 20,
            dedup_capacity: 1_000_000,
            log_format: LogFormat::Pretty,
            kafka: KafkaProperties::default(),
            kafka_properties_file: None,
            tokens: Vec::new(),
            tokens_file: None,
            reflection: true,
            tls_cert: None,
            tls_key: None,
            tls_client_ca: None,
            otlp_ca: None,
            allow_open_api: false,
            public_url: None,
            alert_default_destinations: Vec::new(),
            alert_delivery_backoff_ms: 1_000,
            alert_delivery_max_age_ms: 3_600_000,
            alert_destinations: Vec::new(),
        }
    }
}

/// librdkafka properties the service sets itself; overriding them would break its guarantees.
const MANAGED_KAFKA_PROPERTIES: [&str; 6] = [
    "bootstrap.servers",
    "group.id",
    "group.instance.id",
    "enable.auto.commit",
    "enable.auto.offset.store",
    "auto.offset.reset",
];

impl Config {
    pub fn from_file(path: &Path) -> Result<Config, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
            path: path.to_owned(),
            source,
        })?;
        Config::from_toml(&text).map_err(|source| ConfigError::Parse {
            path: path.to_owned(),
            source: Box::new(source),
        })
    }

    pub(crate) fn from_toml(text: &str) -> Result<Config, toml::de::Error> {
        toml::from_str(text)
    }

    /// The effective settings as TOML, with tokens and secret Kafka properties masked.
    pub fn redacted_toml(&self) -> String {
        let mut shown = self.clone();
        if shown.peer_token.is_some() {
            shown.peer_token = Some(Secret::new(secrets::MASK));
        }
        for grant in &mut shown.tokens {
            if grant.token.is_some() {
                grant.token = Some(secrets::MASK.into());
            }
        }
        shown.kafka = shown.kafka.masked();
        toml::to_string_pretty(&shown).unwrap_or_else(|e| format!("# cannot render: {e}"))
    }

    /// How long integrations' and failure groups' hours are kept.
    pub fn detail_hour_days(&self) -> u32 {
        self.detail_hour_retention_days
            .unwrap_or(self.hour_retention_days)
    }

    /// The tiers nest: details' hours within the tenant's hours within the days. Details keep at
    /// least 8 days of hours: the silence rule compares with the same hours of the 7 days
    /// before.
    fn validate_retention(&self) -> Result<(), ConfigError> {
        if !(2..=3650).contains(&self.hour_retention_days) {
            return Err(invalid("hour_retention_days", "must be between 2 and 3650"));
        }
        if !(8..=self.hour_retention_days.max(8)).contains(&self.detail_hour_days()) {
            return Err(invalid(
                "detail_hour_retention_days",
                "must be at least 8 and at most hour_retention_days",
            ));
        }
        if !(self.hour_retention_days..=3650).contains(&self.day_retention_days) {
            return Err(invalid(
                "day_retention_days",
                "must be at least hour_retention_days and at most 3650",
            ));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests;
