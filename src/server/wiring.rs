//! What the service builds from its settings for the other stages: ingest's and the API's
//! limits, the store's limits, alert rules, the OTLP target, the snapshot store, TLS files, the
//! replicas' TLS, and the readers of the issues and alerts topics. The settings themselves
//! (`config`) know none of these types.

use std::sync::Arc;
use std::time::Duration;

use tokio_util::sync::CancellationToken;

use super::ServerError;
use crate::alerts::{AlertBook, AlertRules, Routes, RuleBook, RuleKeeping, RuleOverrides};
use crate::api::{self, ApiLimits};
use crate::changelog::{self, ChangelogError, ChangelogWriter};
use crate::clock::SharedClock;
use crate::cluster::PeerTls;
use crate::config::{invalid, Config, ConfigError};
use crate::ingest::{self, IngestConfig, IngestProgress};
use crate::issues::{IssueBook, IssueKeeping};
use crate::notify::{self, DeadLetterBook, Destinations, Notifier};
use crate::ops::{CheckReady, OtlpTarget, PartitionGauge, ReadState, StateReading};
use crate::snapshot::{SnapshotError, SnapshotFiles, SnapshotObjects, Snapshots};
use crate::store::{Store, StoreLimits, DAY_MS, HOUR_MS, MAX_DEDUP_CAPACITY};
use crate::tls::TlsFiles;

/// Every check of the settings, the ones that need the other stages' rules included: what
/// `serve` runs first and `config check` prints the result of.
pub fn check(config: &Config) -> Result<(), ConfigError> {
    config.validate()?;
    if let Err(err) = alert_defaults(config).check("the defaults") {
        return Err(invalid("alert_*", err.to_string()));
    }
    if config.dedup_capacity > MAX_DEDUP_CAPACITY {
        return Err(invalid(
            "dedup_capacity",
            format!("must be at most {MAX_DEDUP_CAPACITY}"),
        ));
    }
    alert_rules(config)?;
    Destinations::load(&config.alert_destinations)
        .map_err(|err| invalid("alert_destinations", err.to_string()))?;
    Ok(())
}

pub(crate) fn store_limits(config: &Config) -> StoreLimits {
    StoreLimits {
        hour_retention_ms: i64::from(config.hour_retention_days) * DAY_MS,
        detail_hour_retention_ms: i64::from(config.detail_hour_days()) * DAY_MS,
        day_retention_ms: i64::from(config.day_retention_days) * DAY_MS,
        minute_window_ms: i64::from(config.minute_window_hours) * HOUR_MS,
        group_cap_per_tenant: config.group_cap_per_tenant,
        integration_cap_per_tenant: config.integration_cap_per_tenant,
        tenant_cap_per_partition: config.tenant_cap_per_partition,
        tenant_evict_max_events: config.tenant_evict_max_events,
        tenant_settled_minutes: config.tenant_settled_minutes,
        dedup_capacity: config.dedup_capacity,
    }
}

pub(crate) fn alert_defaults(config: &Config) -> AlertRules {
    AlertRules {
        enabled: true,
        rate_window_minutes: config.alert_rate_window_minutes,
        rate_threshold: config.alert_rate_threshold,
        rate_min_events: config.alert_rate_min_events,
        spike_factor: config.alert_spike_factor,
        spike_min_failures: config.alert_spike_min_failures,
        slo_objective: config.alert_slo_objective,
        slo_fast_window_minutes: config.alert_slo_fast_window_minutes,
        slo_slow_window_minutes: config.alert_slo_slow_window_minutes,
        slo_min_events: config.alert_slo_min_events,
        silence_after_minutes: config.alert_silence_after_minutes,
        silence_min_events: config.alert_silence_min_events,
    }
}

/// The default thresholds with the overrides of `alert_rules_file`.
pub(crate) fn alert_rules(config: &Config) -> Result<RuleOverrides, ConfigError> {
    let defaults = alert_defaults(config);
    let routes = Routes::new(
        &config.alert_destinations,
        &config.alert_default_destinations,
    );
    match &config.alert_rules_file {
        None => Ok(RuleOverrides::new(defaults, routes)),
        Some(path) => RuleOverrides::load(defaults, routes, path)
            .map_err(|err| invalid("alert_rules_file", err.to_string())),
    }
}

/// Where OTLP goes, with the CA to trust when one is configured.
pub fn otlp_target(config: &Config) -> Result<Option<OtlpTarget>, ConfigError> {
    let Some(endpoint) = &config.otlp_endpoint else {
        return Ok(None);
    };
    let ca_pem = match &config.otlp_ca {
        Some(path) => Some(std::fs::read(path).map_err(|source| ConfigError::Read {
            path: path.clone(),
            source,
        })?),
        None => None,
    };
    Ok(Some(OtlpTarget {
        endpoint: endpoint.clone(),
        ca_pem,
    }))
}

/// Where snapshots go: the object store of `state_url`, the directory `state_dir`, or none.
pub(crate) fn snapshots(config: &Config) -> Result<Option<Snapshots>, SnapshotError> {
    Ok(match (&config.state_url, &config.state_dir) {
        (Some(url), _) => Some(Snapshots::Objects(SnapshotObjects::open(
            url,
            config.object_store_options.iter(),
        )?)),
        (None, Some(dir)) => Some(Snapshots::Files(SnapshotFiles::new(dir))),
        (None, None) => None,
    })
}

/// The certificate files, when TLS is on.
pub(crate) fn tls_files(config: &Config) -> Option<TlsFiles> {
    Some(TlsFiles {
        cert: config.tls_cert.clone()?,
        key: config.tls_key.clone()?,
        client_ca: config.tls_client_ca.clone(),
    })
}

pub(crate) fn ingest_config(
    config: &Config,
    snapshots: Option<Snapshots>,
) -> Result<IngestConfig, ServerError> {
    Ok(IngestConfig {
        brokers: config.brokers.clone(),
        topic: config.aggregated_topic(),
        repartition_from: (!config.input_keyed_by_tenant).then(|| config.topic.clone()),
        group: config.group.clone(),
        instance_id: config.instance_id.clone(),
        dlq_topic: config.dlq_topic(),
        max_future_ms: config.max_future_ms(),
        max_message_bytes: config.max_message_bytes,
        kafka: config.kafka_properties()?,
        snapshots,
        snapshot_interval: Duration::from_millis(config.snapshot_interval_ms),
    })
}

/// How replicas reach each other when TLS is on: trusting `peer_ca` (else `tls_client_ca`, else
/// the system's roots) and presenting this replica's own certificate, for mTLS.
pub(super) fn peer_tls(config: &Config) -> Result<Option<PeerTls>, ConfigError> {
    let (Some(cert), Some(key)) = (&config.tls_cert, &config.tls_key) else {
        return Ok(None);
    };
    let read = |path: &std::path::PathBuf| {
        std::fs::read(path).map_err(|source| ConfigError::Read {
            path: path.clone(),
            source,
        })
    };
    let Some(ca) = config.peer_ca.as_ref().or(config.tls_client_ca.as_ref()) else {
        return Err(crate::config::invalid(
            "peer_ca",
            "replicas with TLS need peer_ca (or tls_client_ca)",
        ));
    };
    let ca_pem = read(ca)?;
    Ok(Some(PeerTls {
        ca_pem,
        identity: Some((read(cert)?, read(key)?)),
    }))
}

/// How long any listener's connections may stay quiet.
pub(super) fn quiet_limits(config: &Config) -> crate::ops::QuietLimits {
    crate::ops::QuietLimits {
        first_request: Duration::from_millis(config.first_byte_timeout_ms),
        idle: Duration::from_millis(config.idle_timeout_ms),
    }
}

pub(super) fn api_limits(config: &Config) -> ApiLimits {
    ApiLimits {
        max_concurrent: config.max_concurrent_queries,
        queue_wait: Duration::from_millis(config.query_queue_ms),
        rate_per_caller: std::num::NonZeroU32::new(config.rate_limit_per_token),
        request_timeout: Duration::from_millis(config.request_timeout_ms),
        max_streams_per_connection: config.max_streams_per_connection,
        max_connections: config.max_grpc_connections,
        max_connections_per_ip: config.max_connections_per_ip,
        quiet: quiet_limits(config),
        watches: api::WatchLimits {
            total: config.max_watch_streams,
            per_caller: config.max_watch_streams_per_token,
            per_peer: config
                .max_watch_streams_per_peer
                .unwrap_or(config.max_watch_streams),
        },
    }
}

/// The gauges' view of the service: partition positions, store size and totals.
pub(super) fn state_reader(
    store: Arc<Store>,
    progress: Arc<IngestProgress>,
    clock: SharedClock,
) -> ReadState {
    Arc::new(move || {
        let now_ms = clock.now_ms();
        let status = progress.status(&store, now_ms);
        let failing = |topic: &str, partition: i32| {
            progress
                .snapshot_failing(&crate::store::PartitionKey::new(topic, partition))
                .map_or(0.0, |(since, _)| (now_ms - since).max(0) as f64 / 1000.0)
        };
        StateReading {
            partitions: status
                .partitions
                .iter()
                .map(|p| PartitionGauge {
                    topic: p.topic.clone(),
                    partition: p.partition,
                    next_offset: p.next_offset,
                    high_watermark: p.high_watermark,
                    lag: p.lag,
                    snapshot_age_seconds: p.snapshot.map(|_| p.snapshot_age_ms as f64 / 1000.0),
                    snapshot_bytes: p.snapshot.map(|s| s.bytes),
                    snapshot_failing_seconds: failing(&p.topic, p.partition),
                })
                .collect(),
            cardinality: store.cardinality(),
            totals: status.totals,
        }
    })
}

/// The changelog books that readiness waits for: an instance that has not read them whole
/// would answer with issues missing, or evaluate alerts on rules it has not read.
#[derive(Clone)]
pub(super) struct Changelogs {
    pub(super) issues: Arc<IssueBook>,
    pub(super) rules: Arc<RuleBook>,
}

pub(super) fn readiness_check(
    store: Arc<Store>,
    progress: Arc<IngestProgress>,
    clock: SharedClock,
    max_lag: i64,
    changelogs: Changelogs,
    topics: Arc<ingest::TopicStatus>,
) -> CheckReady {
    Arc::new(move || {
        topics.readiness()?;
        progress.readiness(&store, max_lag, clock.now_ms())?;
        if !changelogs.issues.caught_up() {
            return Err("reading the issues topic".into());
        }
        match changelogs.rules.caught_up() {
            true => Ok(()),
            false => Err("reading the alert rules topic".into()),
        }
    })
}

/// The thread that reads the alerts topic into `book`.
pub(super) fn follow_alerts(
    config: &Config,
    client: &rdkafka::ClientConfig,
    book: &Arc<AlertBook>,
    shutdown: CancellationToken,
) -> Result<std::thread::JoinHandle<()>, ChangelogError> {
    changelog::follow(
        client,
        "alerts",
        config.alerts_topic(),
        book.clone(),
        shutdown,
    )
}

/// What delivers alerts: the thread that follows the alerts topic, the notifier it delivers
/// with (which also sends the API's test alerts), the thread that reads the dead letters and
/// the book it fills.
pub(super) struct Delivering {
    pub(super) thread: std::thread::JoinHandle<()>,
    pub(super) notifier: Arc<Notifier>,
    pub(super) dead_letters_thread: std::thread::JoinHandle<()>,
    pub(super) dead_letters: Arc<DeadLetterBook>,
}

/// Starts delivering alerts, when any destination is configured.
pub(super) fn start_notifier(
    config: &Config,
    client: &rdkafka::ClientConfig,
    clock: SharedClock,
    metrics: Arc<crate::ops::Metrics>,
    shutdown: CancellationToken,
) -> Result<Option<Delivering>, ServerError> {
    if config.alert_destinations.is_empty() {
        return Ok(None);
    }
    let public_url = match &config.public_url {
        Some(url) => Some(
            url::Url::parse(url).map_err(|_| invalid("public_url", "must be an http(s) URL"))?,
        ),
        None => None,
    };
    let dead_letters_topic = config.alert_dead_letters_topic();
    let notifier = Notifier {
        destinations: Arc::new(Destinations::load(&config.alert_destinations)?),
        client: Notifier::http_client()?,
        first_backoff: Duration::from_millis(config.alert_delivery_backoff_ms),
        public_url,
        max_age_ms: config.alert_delivery_max_age_ms as i64,
        clock,
        metrics,
        dead_letters: Arc::new(ChangelogWriter::new(client, &dead_letters_topic)?),
    };
    let mut consumer = client.clone();
    consumer.set("group.id", config.notifier_group());
    let notifier = Arc::new(notifier);
    let thread = notify::deliver_alerts(
        consumer,
        config.alerts_topic(),
        notifier.clone(),
        shutdown.clone(),
    )?;
    let dead_letters = Arc::new(DeadLetterBook::default());
    let dead_letters_thread = changelog::follow(
        client,
        "dead-letters",
        dead_letters_topic,
        dead_letters.clone(),
        shutdown,
    )?;
    Ok(Some(Delivering {
        thread,
        notifier,
        dead_letters_thread,
        dead_letters,
    }))
}

/// The rule book, the thread that fills it from the rules topic, and what the rule calls use.
pub(super) fn start_rules(
    config: &Config,
    client: &rdkafka::ClientConfig,
    overrides: Arc<RuleOverrides>,
    shutdown: CancellationToken,
) -> Result<(Arc<RuleKeeping>, std::thread::JoinHandle<()>), ChangelogError> {
    let book = Arc::new(RuleBook::new(overrides.routes().clone()));
    let follower = changelog::follow(
        client,
        "rules",
        config.rules_topic(),
        book.clone(),
        shutdown,
    )?;
    let keeping = Arc::new(RuleKeeping {
        writer: Arc::new(ChangelogWriter::new(client, &config.rules_topic())?),
        book,
        overrides,
        max_per_tenant: config.max_alert_rules_per_tenant,
    });
    Ok((keeping, follower))
}

/// The issue book, the writer of actions, and the thread that fills the book from the topic.
type IssueParts = (
    Arc<IssueBook>,
    Arc<IssueKeeping>,
    std::thread::JoinHandle<()>,
);

/// The issue book, the thread that fills it from the issues topic, and the writer of actions.
pub(super) fn start_issues(
    config: &Config,
    client: &rdkafka::ClientConfig,
    shutdown: CancellationToken,
) -> Result<IssueParts, ChangelogError> {
    let book = Arc::new(IssueBook::default());
    let follower = changelog::follow(
        client,
        "issues",
        config.issues_topic(),
        book.clone(),
        shutdown,
    )?;
    let keeping = Arc::new(IssueKeeping {
        writer: Arc::new(ChangelogWriter::new(client, &config.issues_topic())?),
        book: book.clone(),
    });
    Ok((book, keeping, follower))
}
