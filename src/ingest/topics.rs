//! The internal topics the service writes and reads besides its input: made sure of at
//! start-up, created through the admin API where the broker allows it, and otherwise reported
//! as what readiness waits for. Most production clusters do not create topics on first use,
//! and a topic created that way would get the broker's defaults (no compaction, the wrong
//! partition count), so relying on auto-creation is never enough.

use std::collections::HashMap;
use std::time::Duration;

use parking_lot::Mutex;
use rdkafka::admin::{
    AdminClient, AdminOptions, ConfigResource, NewTopic, ResourceSpecifier, TopicReplication,
};
use rdkafka::client::DefaultClientContext;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::types::RDKafkaErrorCode;
use rdkafka::ClientConfig;
use thiserror::Error;
use tokio_util::sync::CancellationToken;
use tracing::{error, info, warn};

use crate::config::Config;

const METADATA_TIMEOUT: Duration = Duration::from_secs(10);
const ADMIN_TIMEOUT: Duration = Duration::from_secs(15);

#[derive(Debug, Error)]
pub(crate) enum TopicError {
    #[error("kafka admin client could not be created")]
    Client(#[source] rdkafka::error::KafkaError),
    #[error("cannot read the cluster's topics")]
    Metadata(#[source] rdkafka::error::KafkaError),
}

/// How many partitions a topic must have.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Partitions {
    /// Exactly as many as this other topic (the repartition stage's output and its input).
    SameAs(String),
    /// Any count; created with this many.
    AtLeastOne(i32),
}

/// One topic the service needs, with the settings it must have.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct TopicSpec {
    pub(crate) name: String,
    /// What the topic is for, in the words of an operator's checklist.
    pub(crate) purpose: &'static str,
    pub(crate) partitions: Partitions,
    /// `cleanup.policy=compact`: the topic is read whole as a table.
    pub(crate) compacted: bool,
    /// `min.compaction.lag.ms`: how long a record stays before compaction may replace it.
    pub(crate) min_compaction_lag_ms: Option<u64>,
}

impl TopicSpec {
    /// The settings an operator must give the topic, for messages that name it.
    pub(crate) fn needs(&self, partition_counts: &HashMap<String, i32>) -> String {
        let partitions = match &self.partitions {
            Partitions::SameAs(other) => match partition_counts.get(other) {
                Some(count) => format!("{count} partitions (as many as {other})"),
                None => format!("as many partitions as {other}"),
            },
            Partitions::AtLeastOne(count) => format!("{count} or more partitions"),
        };
        let compaction = match (self.compacted, self.min_compaction_lag_ms) {
            (false, _) => String::new(),
            (true, None) => ", cleanup.policy=compact".to_owned(),
            (true, Some(lag)) => format!(", cleanup.policy=compact, min.compaction.lag.ms={lag}"),
        };
        format!("{partitions}{compaction}")
    }
}

/// Whether the service may create what is missing, and with what replication factor (-1: the
/// broker's default).
#[derive(Debug, Clone, Copy)]
pub(crate) struct TopicPolicy {
    pub(crate) create: bool,
    pub(crate) replication_factor: i32,
}

/// What the check found: topics it created, what the broker could not tell it (warnings,
/// which do not hold readiness back), and problems that do.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub(crate) struct TopicReport {
    pub(crate) created: Vec<String>,
    pub(crate) warnings: Vec<String>,
    pub(crate) problems: Vec<String>,
}

/// Makes sure every topic in `specs` exists with its settings, creating the missing ones when
/// `policy` allows it.
pub(crate) async fn ensure(
    client: &ClientConfig,
    specs: &[TopicSpec],
    policy: TopicPolicy,
) -> Result<TopicReport, TopicError> {
    let mut report = TopicReport::default();
    let ClusterView { counts, broker } = cluster_view(client).await?;
    let admin: AdminClient<DefaultClientContext> = client.create().map_err(TopicError::Client)?;
    // Sent to a broker the metadata named rather than to the controller: a broker that lacks
    // the request then says so at once, where waiting for a controller it never names (the
    // mock cluster) would take the whole timeout. Brokers since Kafka 2.7 forward CreateTopics
    // to the controller; an older one answers NotController, and the request is sent again
    // to the controller.
    let options = AdminOptions::new()
        .request_timeout(Some(ADMIN_TIMEOUT))
        .broker_id(broker);
    let mut missing = Vec::new();
    for spec in specs {
        match counts.get(&spec.name) {
            Some(count) => check_partitions(spec, *count, &counts, &mut report),
            None => missing.push(spec),
        }
    }
    create_missing(&admin, &options, &missing, &counts, policy, &mut report).await;
    check_compaction(&admin, &options, specs, &counts, &mut report).await;
    Ok(report)
}

/// What the cluster's metadata says: every topic with its partition count, and a broker to send
/// admin requests to.
struct ClusterView {
    counts: HashMap<String, i32>,
    broker: Option<i32>,
}

/// Asks for all topics, rather than by name, so a broker that creates topics on first use does
/// not create them here with its defaults.
async fn cluster_view(client: &ClientConfig) -> Result<ClusterView, TopicError> {
    let consumer: BaseConsumer = client.create().map_err(TopicError::Client)?;
    let fetched = tokio::task::spawn_blocking(move || {
        consumer
            .fetch_metadata(None, METADATA_TIMEOUT)
            .map(|m| ClusterView {
                counts: m
                    .topics()
                    .iter()
                    .filter(|t| t.error().is_none())
                    .map(|t| (t.name().to_owned(), t.partitions().len() as i32))
                    .collect(),
                broker: m.brokers().first().map(|b| b.id()),
            })
    })
    .await
    .map_err(|_| {
        TopicError::Metadata(rdkafka::error::KafkaError::MetadataFetch(
            RDKafkaErrorCode::Fail,
        ))
    })?;
    fetched.map_err(TopicError::Metadata)
}

fn check_partitions(
    spec: &TopicSpec,
    count: i32,
    counts: &HashMap<String, i32>,
    report: &mut TopicReport,
) {
    if let Partitions::SameAs(other) = &spec.partitions {
        if let Some(wanted) = counts.get(other) {
            if *wanted != count {
                report.problems.push(format!(
                    "topic {} has {count} partitions but needs {} ({}): tenants would be looked \
                     for in the wrong partitions. Recreate it with {wanted} partitions",
                    spec.name,
                    spec.needs(counts),
                    spec.purpose,
                ));
            }
        }
    }
}

async fn create_missing(
    admin: &AdminClient<DefaultClientContext>,
    options: &AdminOptions,
    missing: &[&TopicSpec],
    counts: &HashMap<String, i32>,
    policy: TopicPolicy,
    report: &mut TopicReport,
) {
    let mut creatable = Vec::new();
    for spec in missing {
        let partitions = match &spec.partitions {
            Partitions::SameAs(other) => match counts.get(other) {
                Some(count) => *count,
                None => {
                    report.problems.push(format!(
                        "topic {} cannot be sized: {other}, whose partition count it must \
                         match, does not exist",
                        spec.name
                    ));
                    continue;
                }
            },
            Partitions::AtLeastOne(count) => *count,
        };
        if !policy.create {
            report.problems.push(missing_message(
                spec,
                counts,
                "create_internal_topics is off",
            ));
            continue;
        }
        creatable.push((*spec, partitions));
    }
    if creatable.is_empty() {
        return;
    }
    let lags: Vec<Option<String>> = creatable
        .iter()
        .map(|(spec, _)| spec.min_compaction_lag_ms.map(|lag| lag.to_string()))
        .collect();
    let new_topics: Vec<NewTopic<'_>> = creatable
        .iter()
        .enumerate()
        .map(|(i, (spec, partitions))| {
            let topic = NewTopic::new(
                &spec.name,
                *partitions,
                TopicReplication::Fixed(policy.replication_factor),
            );
            match (spec.compacted, &lags[i]) {
                (false, _) => topic,
                (true, None) => topic.set("cleanup.policy", "compact"),
                (true, Some(lag)) => topic
                    .set("cleanup.policy", "compact")
                    .set("min.compaction.lag.ms", lag),
            }
        })
        .collect();
    let mut results = admin.create_topics(new_topics.iter(), options).await;
    let not_controller = |r: &Result<Vec<_>, _>| {
        r.as_ref()
            .is_ok_and(|all: &Vec<rdkafka::admin::TopicResult>| {
                all.iter()
                    .any(|t| matches!(t, Err((_, RDKafkaErrorCode::NotController))))
            })
    };
    if not_controller(&results) {
        let to_controller = AdminOptions::new().request_timeout(Some(ADMIN_TIMEOUT));
        results = admin.create_topics(new_topics.iter(), &to_controller).await;
    }
    let results = match results {
        Ok(results) => results,
        Err(err) => {
            let names: Vec<&str> = creatable.iter().map(|(s, _)| s.name.as_str()).collect();
            report.warnings.push(format!(
                "the broker did not create {} ({}); they are left to its auto-creation",
                names.join(", "),
                admin_error_text(&err)
            ));
            return;
        }
    };
    for result in results {
        match result {
            Ok(name) => report.created.push(name),
            Err((_, RDKafkaErrorCode::TopicAlreadyExists)) => {}
            Err((name, code)) if unsupported(code) => report.warnings.push(format!(
                "the broker does not create topics through the admin API ({code}); {name} is \
                 left to the broker's auto-creation"
            )),
            Err((name, code)) => {
                let spec = creatable.iter().find(|(s, _)| s.name == name);
                let why = format!("creating it failed: {code}");
                match spec {
                    Some((spec, _)) => report.problems.push(missing_message(spec, counts, &why)),
                    None => report.problems.push(format!("topic {name}: {why}")),
                }
            }
        }
    }
}

fn missing_message(spec: &TopicSpec, counts: &HashMap<String, i32>, why: &str) -> String {
    format!(
        "topic {} does not exist ({why}); create it with {} ({})",
        spec.name,
        spec.needs(counts),
        spec.purpose
    )
}

/// A request the broker does not implement, or never answers (the mock cluster): the check
/// cannot be made here, which is a warning, not a reason to stay unready.
fn unsupported(code: RDKafkaErrorCode) -> bool {
    matches!(
        code,
        RDKafkaErrorCode::UnsupportedVersion
            | RDKafkaErrorCode::InvalidRequest
            | RDKafkaErrorCode::UnsupportedFeature
            | RDKafkaErrorCode::RequestTimedOut
            | RDKafkaErrorCode::OperationTimedOut
    )
}

fn admin_error_text(err: &rdkafka::error::KafkaError) -> String {
    match err {
        rdkafka::error::KafkaError::AdminOp(code) => code.to_string(),
        other => other.to_string(),
    }
}

async fn check_compaction(
    admin: &AdminClient<DefaultClientContext>,
    options: &AdminOptions,
    specs: &[TopicSpec],
    counts: &HashMap<String, i32>,
    report: &mut TopicReport,
) {
    let compacted: Vec<&TopicSpec> = specs
        .iter()
        .filter(|s| s.compacted && counts.contains_key(&s.name))
        .collect();
    if compacted.is_empty() {
        return;
    }
    let resources: Vec<ResourceSpecifier<'_>> = compacted
        .iter()
        .map(|s| ResourceSpecifier::Topic(&s.name))
        .collect();
    let results = match admin.describe_configs(resources.iter(), options).await {
        Ok(results) => results,
        Err(err) => {
            report.warnings.push(format!(
                "the broker did not describe the compacted topics' settings ({}), so their \
                 compaction is not checked",
                admin_error_text(&err)
            ));
            return;
        }
    };
    for (spec, result) in compacted.iter().zip(results) {
        match result {
            Ok(resource) => {
                if !is_compacted(&resource) {
                    report.problems.push(format!(
                        "topic {} is not compacted; set cleanup.policy=compact ({}): without \
                         it, records older than the topic's retention are lost",
                        spec.name, spec.purpose
                    ));
                }
                check_compaction_lag(spec, &resource, report);
            }
            Err(code) if unsupported(code) => report.warnings.push(format!(
                "the broker did not describe topic {} ({code}), so its compaction is not checked",
                spec.name
            )),
            Err(code) => report.warnings.push(format!(
                "cannot read the settings of topic {}: {code}",
                spec.name
            )),
        }
    }
}

/// A compaction lag below the spec's is a problem; one the broker does not report, a warning.
fn check_compaction_lag(spec: &TopicSpec, resource: &ConfigResource, report: &mut TopicReport) {
    let Some(wanted) = spec.min_compaction_lag_ms else {
        return;
    };
    let set = resource
        .get("min.compaction.lag.ms")
        .and_then(|entry| entry.value.as_deref())
        .and_then(|value| value.trim().parse::<u64>().ok());
    match set {
        Some(lag) if lag >= wanted => {}
        Some(lag) => report.problems.push(format!(
            "topic {} keeps records {lag} ms before compaction may replace them; set \
             min.compaction.lag.ms={wanted} ({}): a notifier further behind than that would miss \
             a FIRING replaced by its RESOLVED",
            spec.name, spec.purpose
        )),
        None => report.warnings.push(format!(
            "the broker did not report min.compaction.lag.ms of topic {}, so it is not checked",
            spec.name
        )),
    }
}

fn is_compacted(resource: &ConfigResource) -> bool {
    resource
        .get("cleanup.policy")
        .and_then(|entry| entry.value.as_deref())
        .is_some_and(|policy| policy.split(',').any(|p| p.trim() == "compact"))
}

/// How long an alert record stays on `<topic>.alerts` before compaction may replace it.
pub(crate) const ALERTS_MIN_COMPACTION_LAG_MS: u64 = 7 * 24 * 3_600_000;

/// The topics this configuration needs besides its input. The list is open: a feature that
/// adds a topic adds it here, and start-up makes sure of it.
pub(crate) fn internal_topics(config: &Config) -> Vec<TopicSpec> {
    let mut specs = Vec::new();
    if !config.input_keyed_by_tenant {
        specs.push(TopicSpec {
            name: config.aggregated_topic(),
            purpose: "the repartition stage's output, events keyed by tenant",
            partitions: Partitions::SameAs(config.topic.clone()),
            compacted: false,
            min_compaction_lag_ms: None,
        });
    }
    specs.push(TopicSpec {
        name: config.dlq_topic(),
        purpose: "rejected events, byte for byte, with the reason",
        partitions: Partitions::AtLeastOne(1),
        compacted: false,
        min_compaction_lag_ms: None,
    });
    if config.advertise_addr.is_some() {
        specs.push(TopicSpec {
            name: config.members_topic(),
            purpose: "which replica owns which partition",
            partitions: Partitions::AtLeastOne(1),
            compacted: true,
            min_compaction_lag_ms: None,
        });
    }
    specs.push(TopicSpec {
        name: config.issues_topic(),
        purpose: "users' issue actions, read whole by every replica",
        partitions: Partitions::AtLeastOne(1),
        compacted: true,
        min_compaction_lag_ms: None,
    });
    specs.push(TopicSpec {
        name: config.alerts_topic(),
        purpose: "published alerts, read whole by every replica",
        partitions: Partitions::AtLeastOne(1),
        compacted: true,
        // A notifier less than this behind never misses a FIRING that its RESOLVED replaced.
        min_compaction_lag_ms: Some(ALERTS_MIN_COMPACTION_LAG_MS),
    });
    specs.push(TopicSpec {
        name: config.rules_topic(),
        purpose: "alert rules set at runtime, read whole by every replica",
        partitions: Partitions::AtLeastOne(1),
        compacted: true,
        min_compaction_lag_ms: None,
    });
    if !config.alert_destinations.is_empty() {
        specs.push(TopicSpec {
            name: config.alert_dead_letters_topic(),
            purpose: "alerts the notifier could not deliver, with the reason",
            partitions: Partitions::AtLeastOne(1),
            compacted: false,
            min_compaction_lag_ms: None,
        });
    }
    specs
}

/// What readiness knows of the internal topics: the problems of the newest check.
#[derive(Debug, Default)]
pub(crate) struct TopicStatus {
    problems: Mutex<Vec<String>>,
}

impl TopicStatus {
    pub(crate) fn readiness(&self) -> Result<(), String> {
        let problems = self.problems.lock();
        match problems.is_empty() {
            true => Ok(()),
            false => Err(problems.join("; ")),
        }
    }

    fn set(&self, problems: Vec<String>) {
        *self.problems.lock() = problems;
    }
}

/// Runs the check once, logs what it found and records the problems for readiness. Returns
/// true when nothing holds readiness back.
pub(crate) async fn check_topics(
    client: &ClientConfig,
    specs: &[TopicSpec],
    policy: TopicPolicy,
    status: &TopicStatus,
) -> bool {
    let report = match ensure(client, specs, policy).await {
        Ok(report) => report,
        Err(err) => TopicReport {
            problems: vec![format!("{err}: {}", error_chain(&err))],
            ..TopicReport::default()
        },
    };
    for name in &report.created {
        info!(topic = %name, "internal topic created");
    }
    for warning in &report.warnings {
        warn!("{warning}");
    }
    for problem in &report.problems {
        error!("{problem}");
    }
    let fine = report.problems.is_empty();
    status.set(report.problems);
    fine
}

fn error_chain(err: &TopicError) -> String {
    std::error::Error::source(err).map_or_else(String::new, |s| s.to_string())
}

/// Checks again every `interval` until no problem is left, so topics an operator creates by
/// hand are noticed without a restart.
pub(crate) async fn recheck_until_fine(
    client: ClientConfig,
    specs: Vec<TopicSpec>,
    policy: TopicPolicy,
    status: std::sync::Arc<TopicStatus>,
    interval: Duration,
    shutdown: CancellationToken,
) {
    loop {
        tokio::select! {
            _ = shutdown.cancelled() => return,
            _ = tokio::time::sleep(interval) => {}
        }
        if check_topics(&client, &specs, policy, &status).await {
            info!("internal topics are in order");
            return;
        }
    }
}

#[cfg(test)]
#[path = "topics_tests.rs"]
mod tests;
