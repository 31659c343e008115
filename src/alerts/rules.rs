//! Alert thresholds: defaults from the service's settings, and per-tenant overrides from a TOML
//! file (`alert_rules_file`), read at start; and where each tenant's alerts are delivered:
//!
//! ```toml
//! [tenants."acme-retail"]
//! rate_threshold = 0.10
//! spike_factor = 3.0
//! slo_objective = 0.995
//! destinations = ["acme-oncall"]
//!
//! silence_enabled = false              # mutes silence alone; `enabled` mutes every kind
//!
//! [tenants."acme-retail".severities]   # per rule kind; `severity = "…"` sets them all
//! failure_rate = "critical"
//! slo_burn_slow = "error"
//! ```

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use thiserror::Error;

use super::scoped::{RuleBook, RuleSpec, SeverityByRule};
use super::Rule;
use crate::config::DestinationSettings;
use crate::event::IntegrationType;

#[derive(Debug, Error)]
pub(crate) enum RulesError {
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
    /// A runtime rule refused; the text starts with the field at fault.
    #[error("{0}")]
    Field(String),
    #[error("a tenant may have at most {limit} alert rules (max_alert_rules_per_tenant); delete one first")]
    TooMany { limit: usize },
}

/// The thresholds one tenant's alerts use.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct AlertRules {
    pub(crate) enabled: bool,
    /// Failure rate: over the last `rate_window_minutes`, at or above `rate_threshold` with at
    /// least `rate_min_events` events.
    pub(crate) rate_window_minutes: u32,
    pub(crate) rate_threshold: f64,
    pub(crate) rate_min_events: u64,
    /// Spike: the last complete hour's failures of a (type, code) at or above `spike_factor`
    /// times that hour's mean over the previous 7 days, and at least `spike_min_failures`.
    pub(crate) spike_factor: f64,
    pub(crate) spike_min_failures: u64,
    /// SLO: the success-rate objective over 30 days, checked with two pairs of burn-rate
    /// windows: the fast pair's long window (its short one is a twelfth of it) and the slow
    /// pair's, each with at least `slo_min_events` events in its long window.
    pub(crate) slo_objective: f64,
    pub(crate) slo_fast_window_minutes: u32,
    pub(crate) slo_slow_window_minutes: u32,
    pub(crate) slo_min_events: u64,
    /// Silence: nothing from a steady integration for `silence_after_minutes`; steady means at
    /// least `silence_min_events` in the clock hours the silence covers, on at least 5 of the
    /// previous 7 days.
    pub(crate) silence_after_minutes: u32,
    pub(crate) silence_min_events: u64,
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
            slo_fast_window_minutes: 60,
            slo_slow_window_minutes: 360,
            slo_min_events: 20,
            silence_after_minutes: 30,
            silence_min_events: 10,
        }
    }
}

impl AlertRules {
    pub(crate) fn check(&self, tenant: &str) -> Result<(), RulesError> {
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
            return invalid("slo_objective must be above 0 and below 1 (100% leaves no budget)");
        }
        for (name, minutes) in [
            ("slo_fast_window_minutes", self.slo_fast_window_minutes),
            ("slo_slow_window_minutes", self.slo_slow_window_minutes),
        ] {
            if !(12..=1440).contains(&minutes) {
                return invalid(&format!("{name} must be 12 to 1440"));
            }
        }
        if self.slo_fast_window_minutes >= self.slo_slow_window_minutes {
            return invalid("slo_fast_window_minutes must be below slo_slow_window_minutes");
        }
        if !(1..=24 * 60).contains(&self.silence_after_minutes) {
            return invalid("silence_after_minutes must be 1 to 1440 (enabled = false mutes it)");
        }
        if self.silence_min_events == 0 {
            return invalid("silence_min_events must be at least 1");
        }
        Ok(())
    }
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RulesFile {
    #[serde(default)]
    tenants: HashMap<String, RuleSpec>,
}

/// Which destinations may take which tenant's alerts, and the defaults.
#[derive(Debug, Clone, Default)]
pub(crate) struct Routes {
    destinations: Vec<DestinationSettings>,
    defaults: Vec<String>,
}

impl Routes {
    pub(crate) fn new(destinations: &[DestinationSettings], defaults: &[String]) -> Self {
        Routes {
            destinations: destinations.to_vec(),
            defaults: defaults.to_vec(),
        }
    }

    pub(super) fn takes(&self, name: &str, tenant: &str) -> bool {
        self.destinations
            .iter()
            .any(|d| d.name == name && d.takes(tenant))
    }

    /// `named` when a rule names destinations, else the defaults; only those that take the
    /// tenant's alerts.
    pub(super) fn route(&self, tenant: &str, named: Option<&[String]>) -> Vec<String> {
        named
            .unwrap_or(&self.defaults)
            .iter()
            .filter(|name| self.takes(name, tenant))
            .cloned()
            .collect()
    }

    pub(crate) fn defaults(&self) -> &[String] {
        &self.defaults
    }

    /// Why a rule of `tenant` may not name `names`, if it may not.
    pub(super) fn check(&self, tenant: &str, names: &[String]) -> Result<(), String> {
        match names.iter().find(|n| !self.takes(n, tenant)) {
            Some(name) => Err(format!(
                "destinations: no destination named `{name}` takes this tenant's alerts"
            )),
            None => Ok(()),
        }
    }
}

/// What one subject's alerts use: thresholds, destinations and the severities rules set.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Resolved {
    pub(crate) rules: AlertRules,
    pub(crate) destinations: Vec<String>,
    pub(crate) severities: SeverityByRule,
}

/// The defaults, every tenant's table from the rules file, and the destinations.
#[derive(Debug, Clone, Default)]
pub(crate) struct RuleOverrides {
    defaults: AlertRules,
    tenants: HashMap<String, RuleSpec>,
    routes: Routes,
}

impl RuleOverrides {
    pub(crate) fn new(defaults: AlertRules, routes: Routes) -> Self {
        RuleOverrides {
            defaults,
            tenants: HashMap::new(),
            routes,
        }
    }

    /// The defaults, with the tenant tables of `path` on top.
    pub(crate) fn load(
        defaults: AlertRules,
        routes: Routes,
        path: &Path,
    ) -> Result<Self, RulesError> {
        let text = std::fs::read_to_string(path).map_err(|source| RulesError::Read {
            path: path.to_owned(),
            source,
        })?;
        let file: RulesFile = toml::from_str(&text).map_err(|source| RulesError::Parse {
            path: path.to_owned(),
            source,
        })?;
        let overrides = RuleOverrides {
            defaults,
            tenants: HashMap::new(),
            routes,
        };
        for (tenant, spec) in &file.tenants {
            overrides
                .check(tenant, spec, defaults)
                .map_err(|why| RulesError::Invalid {
                    tenant: tenant.clone(),
                    why,
                })?;
        }
        Ok(RuleOverrides {
            tenants: file.tenants,
            ..overrides
        })
    }

    /// Whether `spec`, laid over `parent` (what its scope would inherit), is a valid rule of
    /// `tenant`.
    pub(crate) fn check(
        &self,
        tenant: &str,
        spec: &RuleSpec,
        parent: AlertRules,
    ) -> Result<(), String> {
        spec.over(parent).check(tenant).map_err(|e| match e {
            RulesError::Invalid { why, .. } => why,
            other => other.to_string(),
        })?;
        match &spec.destinations {
            Some(names) => self.routes.check(tenant, names),
            None => Ok(()),
        }
    }

    /// The defaults with the tenant's table from the rules file.
    pub(crate) fn for_tenant(&self, tenant: &str) -> AlertRules {
        match self.tenants.get(tenant) {
            Some(spec) => spec.over(self.defaults),
            None => self.defaults,
        }
    }

    pub(crate) fn routes(&self) -> &Routes {
        &self.routes
    }

    pub(crate) fn defaults(&self) -> AlertRules {
        self.defaults
    }

    /// The tenant's table from the rules file, if it has one.
    pub(crate) fn file_table(&self, tenant: &str) -> Option<&RuleSpec> {
        self.tenants.get(tenant)
    }

    /// What a subject's alerts of `kind` use: the defaults, the tenant's table from the file,
    /// then the runtime rules of `kind` in `book` from the tenant's down to the subject's own
    /// scope.
    pub(crate) fn resolve(
        &self,
        book: &RuleBook,
        tenant: &str,
        kind: Rule,
        integration_type: Option<IntegrationType>,
        integration_id: Option<&str>,
    ) -> Resolved {
        let mut rules = self.defaults;
        let mut destinations: Option<&[String]> = None;
        let mut severities = SeverityByRule::default();
        let runtime = book.chain(kind, tenant, integration_type, integration_id);
        let specs = runtime.iter().map(|rule| &rule.spec);
        for spec in self.tenants.get(tenant).into_iter().chain(specs) {
            rules = spec.over(rules);
            if kind == Rule::Silence {
                rules.enabled = spec.silence_enabled.unwrap_or(rules.enabled);
            }
            destinations = spec.destinations.as_deref().or(destinations);
            severities = spec.severities_set().over(severities);
        }
        Resolved {
            rules,
            destinations: self.routes.route(tenant, destinations),
            severities,
        }
    }
}

#[cfg(test)]
#[path = "rules_tests.rs"]
mod tests;
