//! What the service derives from its settings: topic names, limits, and the files and
//! targets the settings point at.

use super::{
    check_grants, invalid, read_tokens_file, CheckedGrant, Config, ConfigError, KafkaProperties,
};
use crate::store::{StoreLimits, DAY_MS, HOUR_MS};

impl Config {
    pub fn dlq_topic(&self) -> String {
        self.dlq_topic
            .clone()
            .unwrap_or_else(|| format!("{}.dlq", self.topic))
    }

    pub fn store_limits(&self) -> StoreLimits {
        StoreLimits {
            retention_ms: i64::from(self.retention_days) * DAY_MS,
            minute_window_ms: i64::from(self.minute_window_hours) * HOUR_MS,
            group_cap_per_tenant: self.group_cap_per_tenant,
            integration_cap_per_tenant: self.integration_cap_per_tenant,
            tenant_cap_per_partition: self.tenant_cap_per_partition,
            tenant_evict_max_events: self.tenant_evict_max_events,
            dedup_capacity: self.dedup_capacity,
        }
    }

    pub fn max_future_ms(&self) -> i64 {
        i64::from(self.max_future_secs) * 1000
    }

    /// repartition stage's output.
    pub fn aggregated_topic(&self) -> String {
        if self.input_keyed_by_tenant {
            return self.topic.clone();
        }
        self.repartition_topic
            .clone()
            .unwrap_or_else(|| format!("{}.by-tenant", self.topic))
    }

    /// Where alert changes are published, keyed by tenant.
    pub fn alerts_topic(&self) -> String {
        format!("{}.alerts", self.topic)
    }

    pub fn alert_defaults(&self) -> crate::alerts::AlertRules {
        crate::alerts::AlertRules {
            enabled: true,
            rate_window_minutes: self.alert_rate_window_minutes,
            rate_threshold: self.alert_rate_threshold,
            rate_min_events: self.alert_rate_min_events,
            spike_factor: self.alert_spike_factor,
            spike_min_failures: self.alert_spike_min_failures,
            slo_objective: self.alert_slo_objective,
        }
    }

    /// The default thresholds with the overrides of `alert_rules_file`.
    pub fn alert_rules(&self) -> Result<crate::alerts::RuleOverrides, ConfigError> {
        let defaults = self.alert_defaults();
        match &self.alert_rules_file {
            None => Ok(crate::alerts::RuleOverrides::new(defaults)),
            Some(path) => crate::alerts::RuleOverrides::load(defaults, path)
                .map_err(|err| invalid("alert_rules_file", err.to_string())),
        }
    }

    /// The compacted topic of users' issue actions.
    pub fn issues_topic(&self) -> String {
        format!("{}.issues", self.topic)
    }

    pub fn auto_resolve_ms(&self) -> i64 {
        i64::from(self.auto_resolve_after_hours) * HOUR_MS
    }

    pub fn members_topic(&self) -> String {
        self.members_topic
            .clone()
            .unwrap_or_else(|| format!("{}.members", self.topic))
    }

    /// Where OTLP goes, with the CA to trust when one is configured.
    pub fn otlp_target(&self) -> Result<Option<crate::ops::OtlpTarget>, ConfigError> {
        let Some(endpoint) = &self.otlp_endpoint else {
            return Ok(None);
        };
        let ca_pem = match &self.otlp_ca {
            Some(path) => Some(std::fs::read(path).map_err(|source| ConfigError::Read {
                path: path.clone(),
                source,
            })?),
            None => None,
        };
        Ok(Some(crate::ops::OtlpTarget {
            endpoint: endpoint.clone(),
            ca_pem,
        }))
    }

    /// Where snapshots go: the object store of `state_url`, the directory `state_dir`, or none.
    pub fn snapshots(
        &self,
    ) -> Result<Option<crate::snapshot::Snapshots>, crate::snapshot::SnapshotError> {
        use crate::snapshot::{SnapshotFiles, SnapshotObjects, Snapshots};
        Ok(match (&self.state_url, &self.state_dir) {
            (Some(url), _) => Some(Snapshots::Objects(SnapshotObjects::open(
                url,
                self.object_store_options.iter(),
            )?)),
            (None, Some(dir)) => Some(Snapshots::Files(SnapshotFiles::new(dir))),
            (None, None) => None,
        })
    }

    /// The certificate files, when TLS is on.
    pub fn tls_files(&self) -> Option<crate::tls::TlsFiles> {
        Some(crate::tls::TlsFiles {
            cert: self.tls_cert.clone()?,
            key: self.tls_key.clone()?,
            client_ca: self.tls_client_ca.clone(),
        })
    }

    /// Every grant, inline and from `tokens_file`, checked. With a tokens file, authentication
    /// is on, and a file that grants nothing (truncated, comments only, an empty Secret key) is
    /// an error rather than an open API.
    pub fn grants(&self) -> Result<Vec<CheckedGrant>, ConfigError> {
        let mut grants = self.tokens.clone();
        if let Some(path) = &self.tokens_file {
            grants.extend(read_tokens_file(path)?);
        }
        let checked = check_grants(&grants)?;
        if checked.is_empty() && self.tokens_file.is_some() {
            return Err(invalid(
                "tokens_file",
                "grants no token; with authentication configured, no grant would leave every \
                 call refused or, worse, the API open. Add a [[tokens]] grant",
            ));
        }
        Ok(checked)
    }

    /// `kafka` with `kafka_properties_file` merged over it.
    pub fn kafka_properties(&self) -> Result<KafkaProperties, ConfigError> {
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
