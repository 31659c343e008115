//! The checks of the settings that need nothing beyond them; `server::wiring::check` adds
//! those that need the other stages' rules.

use super::{destinations, invalid, tokens, Config, ConfigError, MANAGED_KAFKA_PROPERTIES};

impl Config {
    pub fn validate(&self) -> Result<(), ConfigError> {
        if self.brokers.trim().is_empty() {
            return Err(invalid("brokers", "must list at least one host:port"));
        }
        check_topic("topic", &self.topic)?;
        if let Some(dlq) = &self.dlq_topic {
            check_topic("dlq_topic", dlq)?;
        }
        if let Some(topic) = &self.repartition_topic {
            check_topic("repartition_topic", topic)?;
        }
        if self.dlq_topic() == self.topic {
            return Err(invalid("dlq_topic", "must differ from topic"));
        }
        destinations::check_destinations(
            &self.alert_destinations,
            &self.alert_default_destinations,
            self.public_url.as_deref(),
        )?;
        if !(10..=60_000).contains(&self.alert_delivery_backoff_ms) {
            return Err(invalid(
                "alert_delivery_backoff_ms",
                "must be between 10 and 60000",
            ));
        }
        if self.alert_delivery_max_age_ms < 60_000 {
            return Err(invalid(
                "alert_delivery_max_age_ms",
                "must be at least 60000",
            ));
        }
        if self.group.trim().is_empty() {
            return Err(invalid("group", "must not be empty"));
        }
        self.validate_retention()?;
        if self.minute_window_hours == 0 || self.minute_window_hours > self.hour_retention_days * 24
        {
            return Err(invalid(
                "minute_window_hours",
                "must be at least 1 and no longer than hour_retention_days",
            ));
        }
        if !(100..=3_600_000).contains(&self.snapshot_interval_ms) {
            return Err(invalid(
                "snapshot_interval_ms",
                "must be between 100 and 3600000",
            ));
        }
        if self
            .state_dir
            .as_ref()
            .is_some_and(|d| d.as_os_str().is_empty())
        {
            return Err(invalid("state_dir", "must not be empty"));
        }
        if let Some(endpoint) = &self.otlp_endpoint {
            if !(endpoint.starts_with("http://") || endpoint.starts_with("https://")) {
                return Err(invalid(
                    "otlp_endpoint",
                    format!("{endpoint:?} must start with http:// or https://"),
                ));
            }
        }
        if self.internal_topic_replication_factor == 0
            || self.internal_topic_replication_factor < -1
        {
            return Err(invalid(
                "internal_topic_replication_factor",
                "must be -1 (the broker's default) or at least 1",
            ));
        }
        let tls_on = self.tls_cert.is_some();
        let peer_ca_known = self.peer_ca.is_some() || self.tls_client_ca.is_some();
        if self.advertise_addr.is_some() && tls_on && !peer_ca_known {
            return Err(invalid(
                "peer_ca",
                "replicas with TLS need peer_ca (or tls_client_ca): under the public roots, \
                 anyone with a certificate for some name could pose as a replica",
            ));
        }
        if self.member_announce_interval_ms < 100
            || self.member_ttl_ms < 3 * self.member_announce_interval_ms
        {
            return Err(invalid(
                "member_ttl_ms",
                "member_announce_interval_ms must be at least 100, and member_ttl_ms at least \
                 three times it",
            ));
        }
        if self.ready_max_lag < 0 {
            return Err(invalid("ready_max_lag", "must not be negative"));
        }
        if self
            .instance_id
            .as_ref()
            .is_some_and(|id| id.is_empty() || id.len() > 249)
        {
            return Err(invalid("instance_id", "must be 1..249 characters"));
        }
        if !(100..=600_000).contains(&self.shutdown_grace_ms) {
            return Err(invalid(
                "shutdown_grace_ms",
                "must be between 100 and 600000",
            ));
        }
        if self.grpc_addr.port() != 0 && self.grpc_addr == self.http_addr {
            return Err(invalid("http_addr", "must differ from grpc_addr"));
        }
        if let Some(ops) = self.ops_addr.filter(|a| a.port() != 0) {
            if ops == self.grpc_addr || ops == self.http_addr {
                return Err(invalid(
                    "ops_addr",
                    "must differ from grpc_addr and http_addr",
                ));
            }
        }
        if self.group_cap_per_tenant == 0 {
            return Err(invalid("group_cap_per_tenant", "must be at least 1"));
        }
        if self.max_alert_rules_per_tenant == 0 {
            return Err(invalid("max_alert_rules_per_tenant", "must be at least 1"));
        }
        if self.alert_interval_ms == 0 {
            return Err(invalid("alert_interval_ms", "must be at least 1"));
        }
        if self.auto_resolve_after_hours == 0 {
            return Err(invalid("auto_resolve_after_hours", "must be at least 1"));
        }
        if self.integration_cap_per_tenant == 0 {
            return Err(invalid("integration_cap_per_tenant", "must be at least 1"));
        }
        if self.tenant_cap_per_partition == 0 {
            return Err(invalid("tenant_cap_per_partition", "must be at least 1"));
        }
        if !(1..=1440).contains(&self.tenant_settled_minutes) {
            return Err(invalid(
                "tenant_settled_minutes",
                "must be between 1 and 1440",
            ));
        }
        if !(1024..=64 << 20).contains(&self.max_message_bytes) {
            return Err(invalid(
                "max_message_bytes",
                "must be between 1 KiB and 64 MiB",
            ));
        }
        if self.dedup_capacity == 0 {
            return Err(invalid("dedup_capacity", "must be at least 1"));
        }
        if self.eviction_interval_ms == 0 {
            return Err(invalid("eviction_interval_ms", "must be at least 1"));
        }
        if self.max_concurrent_queries == 0 {
            return Err(invalid("max_concurrent_queries", "must be at least 1"));
        }
        if self.max_http_connections == 0
            || self.max_grpc_connections == 0
            || self.header_read_timeout_ms == 0
            || self.first_byte_timeout_ms == 0
            || self.idle_timeout_ms == 0
        {
            return Err(invalid(
                "max_http_connections",
                "max_http_connections, max_grpc_connections, header_read_timeout_ms, \
                 first_byte_timeout_ms and idle_timeout_ms must be at least 1",
            ));
        }
        if self.max_watch_streams == 0
            || self.max_watch_streams_per_token == 0
            || self.max_watch_streams_per_peer == Some(0)
        {
            return Err(invalid(
                "max_watch_streams",
                "max_watch_streams, max_watch_streams_per_token and max_watch_streams_per_peer \
                 must be at least 1",
            ));
        }
        if self.request_timeout_ms == 0 || self.max_streams_per_connection == 0 {
            return Err(invalid(
                "request_timeout_ms",
                "and max_streams_per_connection must be at least 1",
            ));
        }
        if let Some(key) = self
            .kafka
            .keys()
            .find(|k| MANAGED_KAFKA_PROPERTIES.contains(&k.as_str()))
        {
            return Err(invalid(
                "kafka",
                format!("may not set `{key}`: the service manages it (use brokers/group settings instead)"),
            ));
        }
        if self.state_url.is_some() && self.state_dir.is_some() {
            return Err(invalid("state_url", "replaces state_dir; set only one"));
        }
        let grants = self.grants()?;
        tokens::check_peer_grant(
            self.advertise_addr.is_some(),
            self.peer_token.as_ref(),
            &grants,
        )?;
        let exposed_peer = self
            .advertise_addr
            .as_deref()
            .is_some_and(|addr| !is_loopback(addr));
        if exposed_peer && self.peer_token.is_some() && !tls_on {
            return Err(invalid(
                "tls_cert",
                "replicas at a non-loopback advertise_addr send the peer token to each other, \
                 never in clear text: set tls_cert, tls_key and peer_ca",
            ));
        }
        if self.tls_cert.is_some() != self.tls_key.is_some() {
            return Err(invalid("tls_cert", "and tls_key must be set together"));
        }
        if self.tls_client_ca.is_some() && self.tls_cert.is_none() {
            return Err(invalid("tls_client_ca", "needs tls_cert and tls_key"));
        }
        let open = self.tokens.is_empty() && self.tokens_file.is_none();
        let exposed = !self.grpc_addr.ip().is_loopback() || !self.http_addr.ip().is_loopback();
        if open && exposed && !self.allow_open_api {
            return Err(invalid(
                "tokens",
                "are required to serve on a non-loopback address; set tokens_file (or tokens), or allow_open_api = true",
            ));
        }
        Ok(())
    }
}

fn check_topic(setting: &'static str, topic: &str) -> Result<(), ConfigError> {
    let legal = topic
        .chars()
        .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-'));
    let reserved = topic == "." || topic == "..";
    if topic.is_empty() || topic.len() > 249 || !legal || reserved {
        return Err(invalid(
            setting,
            format!("{topic:?} is not a legal Kafka topic name"),
        ));
    }
    Ok(())
}

/// Whether `addr` (`host:port`) names this machine: a loopback IP or `localhost`.
pub(crate) fn is_loopback(addr: &str) -> bool {
    let host = addr.rsplit_once(':').map_or(addr, |(host, _)| host);
    let host = host.trim_start_matches('[').trim_end_matches(']');
    host.eq_ignore_ascii_case("localhost")
        || host
            .parse::<std::net::IpAddr>()
            .is_ok_and(|ip| ip.is_loopback())
}
