//! Where alerts are delivered: `[[alert_destinations]]` entries, checked here without reading
//! any secret file (the server's wiring reads those).

use std::collections::HashSet;
use std::net::IpAddr;
use std::path::PathBuf;

use serde::{Deserialize, Serialize};

use super::{invalid, ConfigError};

/// What a destination speaks.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum DestinationKind {
    /// A POST of the alert event, signed per Standard Webhooks.
    Webhook,
    /// A Slack incoming webhook: a readable message.
    Slack,
    /// PagerDuty Events API v2: trigger and resolve.
    Pagerduty,
}

/// PagerDuty's Events API v2 endpoint, used when a PagerDuty destination names no `url`.
pub const PAGERDUTY_EVENTS_URL: &str = "https://events.pagerduty.com/v2/enqueue";

/// One `[[alert_destinations]]` entry.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DestinationSettings {
    /// How rules name it.
    pub name: String,
    pub kind: DestinationKind,
    /// A webhook's URL; a PagerDuty endpoint other than the public one. Not for Slack, whose
    /// URL is a secret (`url_file`).
    pub url: Option<String>,
    /// A file holding the URL (Slack).
    pub url_file: Option<PathBuf>,
    /// A webhook's signing secret(s), `whsec_…`, one per line (two during a rotation); a
    /// PagerDuty service's routing key.
    pub secret_file: Option<PathBuf>,
    /// The only tenants whose alerts may go here; empty means any tenant.
    #[serde(default)]
    pub tenants: Vec<String>,
    /// How long one attempt may take.
    #[serde(default = "default_timeout_ms")]
    pub timeout_ms: u64,
    /// Attempts per state change before it goes to the dead letters.
    #[serde(default = "default_max_attempts")]
    pub max_attempts: u32,
    /// The longest wait between two attempts, and the most of a `Retry-After` honoured.
    #[serde(default = "default_max_backoff_ms")]
    pub max_backoff_ms: u64,
    /// Requests per second this destination is sent at most; more wait their turn.
    #[serde(default = "default_rate_limit_per_s")]
    pub rate_limit_per_s: u32,
}

fn default_timeout_ms() -> u64 {
    10_000
}

fn default_max_attempts() -> u32 {
    8
}

fn default_max_backoff_ms() -> u64 {
    600_000
}

fn default_rate_limit_per_s() -> u32 {
    10
}

impl DestinationSettings {
    /// A destination of `kind` with the default timeout, retries and rate, and nothing else set.
    pub fn new(name: &str, kind: DestinationKind) -> Self {
        DestinationSettings {
            name: name.to_owned(),
            kind,
            url: None,
            url_file: None,
            secret_file: None,
            tenants: Vec::new(),
            timeout_ms: default_timeout_ms(),
            max_attempts: default_max_attempts(),
            max_backoff_ms: default_max_backoff_ms(),
            rate_limit_per_s: default_rate_limit_per_s(),
        }
    }

    /// Whether alerts of `tenant` may be sent here.
    pub fn takes(&self, tenant: &str) -> bool {
        self.tenants.is_empty() || self.tenants.iter().any(|t| t == tenant)
    }

    /// The URL requests go to, unless it is read from `url_file`.
    pub fn fixed_url(&self) -> Option<&str> {
        match (self.kind, &self.url) {
            (_, Some(url)) => Some(url),
            (DestinationKind::Pagerduty, None) => Some(PAGERDUTY_EVENTS_URL),
            _ => None,
        }
    }

    fn check(&self) -> Result<(), ConfigError> {
        let name = &self.name;
        let problem = |what: &str| invalid("alert_destinations", format!("`{name}`: {what}"));
        if name.is_empty()
            || name.len() > 64
            || !name
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
        {
            return Err(invalid(
                "alert_destinations",
                format!("name `{name}` must be 1 to 64 letters, digits, '-', '_' or '.'"),
            ));
        }
        match self.kind {
            DestinationKind::Webhook if self.url.is_none() => return Err(problem("needs `url`")),
            DestinationKind::Slack if self.url.is_some() => {
                return Err(problem(
                    "a Slack URL is a secret: put it in a file named by `url_file`",
                ))
            }
            DestinationKind::Slack if self.url_file.is_none() => {
                return Err(problem("needs `url_file`"))
            }
            DestinationKind::Webhook | DestinationKind::Pagerduty if self.url_file.is_some() => {
                return Err(problem("`url_file` is for Slack; give `url`"))
            }
            _ => {}
        }
        let needs_secret = self.kind != DestinationKind::Slack;
        if needs_secret && self.secret_file.is_none() {
            return Err(problem(match self.kind {
                DestinationKind::Pagerduty => "needs `secret_file` (the routing key)",
                _ => "needs `secret_file` (the whsec_ signing secret)",
            }));
        }
        if !needs_secret && self.secret_file.is_some() {
            return Err(problem("a Slack destination takes no `secret_file`"));
        }
        if let Some(url) = &self.url {
            check_url(url).map_err(|why| problem(&why))?;
        }
        if !(100..=120_000).contains(&self.timeout_ms) {
            return Err(problem("`timeout_ms` must be between 100 and 120000"));
        }
        if !(1..=50).contains(&self.max_attempts) {
            return Err(problem("`max_attempts` must be between 1 and 50"));
        }
        if !(10..=86_400_000).contains(&self.max_backoff_ms) {
            return Err(problem(
                "`max_backoff_ms` must be between 10 and 86400000 (a day)",
            ));
        }
        if !(1..=1_000).contains(&self.rate_limit_per_s) {
            return Err(problem("`rate_limit_per_s` must be between 1 and 1000"));
        }
        Ok(())
    }
}

/// A destination URL must be https, except to a loopback host (a local relay or a test).
pub fn check_url(text: &str) -> Result<url::Url, String> {
    let url = url::Url::parse(text).map_err(|e| format!("URL is not valid ({e})"))?;
    let loopback = is_loopback(&url);
    match url.scheme() {
        "https" => {}
        "http" if loopback => {}
        "http" => return Err("URL must be https (plain http only to a loopback host)".into()),
        other => return Err(format!("URL scheme `{other}` is not http(s)")),
    }
    if url.host().is_none() {
        return Err("URL has no host".into());
    }
    if !url.username().is_empty() || url.password().is_some() {
        return Err("URL must not carry credentials".into());
    }
    Ok(url)
}

fn is_loopback(url: &url::Url) -> bool {
    match url.host() {
        Some(url::Host::Domain(name)) => name.eq_ignore_ascii_case("localhost"),
        Some(url::Host::Ipv4(ip)) => IpAddr::V4(ip).is_loopback(),
        Some(url::Host::Ipv6(ip)) => IpAddr::V6(ip).is_loopback(),
        None => false,
    }
}

/// Every destination valid, names unique, and the default list naming only destinations.
pub(crate) fn check_destinations(
    destinations: &[DestinationSettings],
    defaults: &[String],
    public_url: Option<&str>,
) -> Result<(), ConfigError> {
    let mut names = HashSet::new();
    for destination in destinations {
        destination.check()?;
        if !names.insert(destination.name.as_str()) {
            return Err(invalid(
                "alert_destinations",
                format!("the name `{}` is used twice", destination.name),
            ));
        }
    }
    if let Some(unknown) = defaults.iter().find(|d| !names.contains(d.as_str())) {
        return Err(invalid(
            "alert_default_destinations",
            format!("names `{unknown}`, which no [[alert_destinations]] entry defines"),
        ));
    }
    if let Some(url) = public_url {
        match url::Url::parse(url) {
            Ok(parsed) if matches!(parsed.scheme(), "http" | "https") => {}
            _ => return Err(invalid("public_url", "must be an http(s) URL")),
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn webhook(url: &str) -> DestinationSettings {
        DestinationSettings {
            url: Some(url.into()),
            secret_file: Some("/run/secrets/ops".into()),
            ..DestinationSettings::new("ops", DestinationKind::Webhook)
        }
    }

    #[test]
    fn plain_http_only_to_loopback() {
        for fine in [
            "https://hooks.example.com/x",
            "http://127.0.0.1:8080/x",
            "http://[::1]:9/x",
            "http://localhost/x",
        ] {
            assert!(webhook(fine).check().is_ok(), "{fine}");
        }
        for refused in [
            "http://hooks.example.com/x",
            "ftp://127.0.0.1/x",
            "https://user:pw@example.com/",
            "not a url",
        ] {
            assert!(webhook(refused).check().is_err(), "{refused}");
        }
    }

    #[test]
    fn each_kind_needs_its_own_settings() {
        let mut slack = webhook("https://hooks.slack.com/services/x");
        slack.kind = DestinationKind::Slack;
        let err = slack.check().unwrap_err().to_string();
        assert!(err.contains("url_file"), "{err}");
        slack.url = None;
        slack.secret_file = None;
        slack.url_file = Some("/run/secrets/slack".into());
        assert!(slack.check().is_ok());
        let mut pagerduty = webhook("https://x.example.com");
        pagerduty.kind = DestinationKind::Pagerduty;
        pagerduty.url = None;
        assert_eq!(pagerduty.fixed_url(), Some(PAGERDUTY_EVENTS_URL));
        pagerduty.secret_file = None;
        assert!(pagerduty
            .check()
            .unwrap_err()
            .to_string()
            .contains("routing key"));
    }

    #[test]
    fn names_are_unique_and_defaults_must_exist() {
        let both = [
            webhook("https://a.example.com"),
            webhook("https://b.example.com"),
        ];
        assert!(check_destinations(&both, &[], None).is_err());
        let one = [webhook("https://a.example.com")];
        assert!(check_destinations(&one, &["ops".into()], None).is_ok());
        let err = check_destinations(&one, &["pager".into()], None).unwrap_err();
        assert!(err.to_string().contains("pager"), "{err}");
        assert!(check_destinations(&one, &[], Some("ftp://x")).is_err());
    }
}
