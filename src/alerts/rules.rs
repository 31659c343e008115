//! Alert thresholds: defaults from the service's settings, and per-tenant overrides from a TOML
//! file (`alert_rules_file`), read at start:
//!
//! ```toml
//! [tenants."acme-retail"]
//! rate_threshold = 0.10
//! spike_factor = 3.0
//! slo_objective = 0.995
//! ```

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use serde::Deserialize;
use thiserror::Error;

#[derive(Debug, Error)]
pub enum RulesError {
    #[error("cannot read the alert rules file {path}")]
    Read {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("the alert rules file {path} is not valid")]
    Parse {
        path: PathBuf,
        #[source]
        source: toml::de::Error,
    },
    #[error("alert rules for {tenant}: {why}")]
    Invalid { tenant: String, why: String },
}

/// The thresholds one tenant's alerts use.
#[derive(Debug, Clone, Copy, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AlertRules {
    pub enabled: bool,
    /// Failure rate: over the last `rate_window_minutes`, at or above `rate_threshold` with at
    /// least `rate_min_events` events.
    pub rate_window_minutes: u32,
    pub rate_threshold: f64,
    pub rate_min_events: u64,
    /// Spike: the last complete hour's failures of a (type, code) at or above `spike_factor`
    /// times that hour's mean over the previous 7 days, and at least `spike_min_failures`.
    pub spike_factor: f64,
    pub spike_min_failures: u64,
    /// SLO: the success-rate objective over 30 days, checked with burn-rate windows.
    pub slo_objective: f64,
}

impl Default for AlertRules {
    fn default() -> Self {
        AlertRules {
            enabled: true,
            rate_window_minutes: 15,
            rate_threshold: 0.20,
            rate_min_events: 20,
            spike_factor: 5.0,
            spike_min_failures: 10,
            slo_objective: 0.99,
        }
    }
}

impl AlertRules {
    pub fn check(&self, tenant: &str) -> Result<(), RulesError> {
        let invalid = |why: &str| {
            Err(RulesError::Invalid {
                tenant: tenant.to_owned(),
                why: why.to_owned(),
            })
        };
        if !(1..=360).contains(&self.rate_window_minutes) {
            return invalid("rate_window_minutes must be 1 to 360");
        }
        if !(self.rate_threshold > 0.0 && self.rate_threshold <= 1.0) {
            return invalid("rate_threshold must be above 0 and at most 1");
        }
        if !(self.spike_factor >= 1.0 && self.spike_factor.is_finite()) {
            return invalid("spike_factor must be at least 1");
        }
        if !(self.slo_objective > 0.0 && self.slo_objective < 1.0) {
            return invalid("slo_objective must be between 0 and 1");
        }
        Ok(())
    }
}

/// A tenant's overrides: any threshold left out keeps the default.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct Partial {
    enabled: Option<bool>,
    rate_window_minutes: Option<u32>,
    rate_threshold: Option<f64>,
    rate_min_events: Option<u64>,
    spike_factor: Option<f64>,
    spike_min_failures: Option<u64>,
    slo_objective: Option<f64>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RulesFile {
    #[serde(default)]
    tenants: HashMap<String, Partial>,
}

/// The defaults and every tenant's overrides.
#[derive(Debug, Clone, Default)]
pub struct RuleOverrides {
    defaults: AlertRules,
    tenants: HashMap<String, AlertRules>,
}

impl RuleOverrides {
    pub fn new(defaults: AlertRules) -> Self {
        RuleOverrides {
            defaults,
            tenants: HashMap::new(),
        }
    }

    /// The defaults, with the overrides of `path` on top.
    pub fn load(defaults: AlertRules, path: &Path) -> Result<Self, RulesError> {
        let text = std::fs::read_to_string(path).map_err(|source| RulesError::Read {
            path: path.to_owned(),
            source,
        })?;
        let file: RulesFile = toml::from_str(&text).map_err(|source| RulesError::Parse {
            path: path.to_owned(),
            source,
        })?;
        let mut tenants = HashMap::new();
        for (tenant, partial) in file.tenants {
            let d = defaults;
            let rules = AlertRules {
                enabled: partial.enabled.unwrap_or(d.enabled),
                rate_window_minutes: partial.rate_window_minutes.unwrap_or(d.rate_window_minutes),
                rate_threshold: partial.rate_threshold.unwrap_or(d.rate_threshold),
                rate_min_events: partial.rate_min_events.unwrap_or(d.rate_min_events),
                spike_factor: partial.spike_factor.unwrap_or(d.spike_factor),
                spike_min_failures: partial.spike_min_failures.unwrap_or(d.spike_min_failures),
                slo_objective: partial.slo_objective.unwrap_or(d.slo_objective),
            };
            rules.check(&tenant)?;
            tenants.insert(tenant, rules);
        }
        Ok(RuleOverrides { defaults, tenants })
    }

    pub fn for_tenant(&self, tenant: &str) -> AlertRules {
        self.tenants.get(tenant).copied().unwrap_or(self.defaults)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn overrides_replace_only_what_they_name() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("rules.toml");
        std::fs::write(&path, "[tenants.acme]\nrate_threshold = 0.05\n").unwrap();
        let rules = RuleOverrides::load(AlertRules::default(), &path).unwrap();
        assert_eq!(rules.for_tenant("acme").rate_threshold, 0.05);
        assert_eq!(rules.for_tenant("acme").spike_factor, 5.0);
        assert_eq!(rules.for_tenant("globex"), AlertRules::default());
    }

    #[test]
    fn a_bad_override_is_refused_with_the_tenant_named() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("rules.toml");
        std::fs::write(&path, "[tenants.acme]\nslo_objective = 1.5\n").unwrap();
        let err = RuleOverrides::load(AlertRules::default(), &path).unwrap_err();
        assert!(err.to_string().contains("acme"), "{err}");
        std::fs::write(&path, "[tenants.acme]\ncolour = 1\n").unwrap();
        assert!(RuleOverrides::load(AlertRules::default(), &path).is_err());
    }
}
