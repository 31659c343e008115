//! What follows from the settings alone: topic names, times in milliseconds, and the grants.
//! What other stages build from them is `server::wiring`'s.

use super::{check_grants, read_tokens_file, CheckedGrant, Config, ConfigError, KafkaProperties};

impl Config {
    pub fn dlq_topic(&self) -> String {
        self.dlq_topic
            .clone()
            .unwrap_or_else(|| format!("{}.dlq", self.topic))
    }

    pub(crate) fn max_future_ms(&self) -> i64 {
        i64::from(self.max_future_secs) * 1000
    }

    /// repartition stage's output.
    pub(crate) fn aggregated_topic(&self) -> String {
        if self.input_keyed_by_tenant {
            return self.topic.clone();
        }
        self.repartition_topic
            .clone()
            .unwrap_or_else(|| format!("{}.by-tenant", self.topic))
    }

    /// Where alert changes are published, keyed by subject (tenant, rule and what it is
    /// about), so compaction keeps each subject's newest change.
    pub(crate) fn alerts_topic(&self) -> String {
        format!("{}.alerts", self.topic)
    }

    /// The compacted topic of alert rules set at runtime, keyed by scope.
    pub(crate) fn rules_topic(&self) -> String {
        format!("{}.rules", self.topic)
    }

    /// Where the notifier records an alert it could not deliver: its dead letters.
    pub(crate) fn alert_dead_letters_topic(&self) -> String {
        format!("{}.alerts.dlq", self.topic)
    }

    /// The notifier's consumer group: one sender per alerts partition among the replicas.
    pub(crate) fn notifier_group(&self) -> String {
        format!("{}.notifier", self.group)
    }

    /// The compacted topic of users' issue actions.
    pub(crate) fn issues_topic(&self) -> String {
        format!("{}.issues", self.topic)
    }

    pub(crate) fn auto_resolve_ms(&self) -> i64 {
        i64::from(self.auto_resolve_after_hours) * 3_600_000
    }

    pub(crate) fn members_topic(&self) -> String {
        self.members_topic
            .clone()
            .unwrap_or_else(|| format!("{}.members", self.topic))
    }

    /// Every grant, inline and from `tokens_file`, checked. With a tokens file, authentication
    /// is on whatever it holds: a file without `tokens` (truncated, comments only, an empty
    /// Secret key) is an error, and `tokens = []` revokes every token (`Auth` is then closed,
    /// never open).
    pub(crate) fn grants(&self) -> Result<Vec<CheckedGrant>, ConfigError> {
        let mut grants = self.tokens.clone();
        if let Some(path) = &self.tokens_file {
            grants.extend(read_tokens_file(path)?);
        }
        check_grants(&grants)
    }

    /// Whether calls need a token: with any grant configured, or a tokens file whatever it
    /// grants. Otherwise the API is open (the demo, loopback use).
    pub(crate) fn authenticates(&self) -> bool {
        self.tokens_file.is_some() || !self.tokens.is_empty()
    }

    /// `kafka` with `kafka_properties_file` merged over it.
    pub(crate) fn kafka_properties(&self) -> Result<KafkaProperties, ConfigError> {
        let mut properties = self.kafka.clone();
        if let Some(path) = &self.kafka_properties_file {
            properties.extend(
                KafkaProperties::read_file(path)?
                    .iter()
                    .map(|(k, v)| (k.clone(), v.clone())),
            );
        }
        Ok(properties)
    }
}
