//! Destinations ready to send to: settings with their secret files read, a rate limit each.

use std::collections::HashMap;
use std::time::Duration;

use parking_lot::Mutex;
use std::time::Instant;

use super::webhook::SigningKey;
use super::NotifyError;
use crate::config::{check_url, DestinationKind, DestinationSettings};

/// What a destination authenticates with.
#[derive(Debug)]
pub(crate) enum Credential {
    /// A webhook's signing secrets.
    Signing(Vec<SigningKey>),
    /// A PagerDuty routing key.
    RoutingKey(String),
    /// A Slack URL carries its own secret.
    InUrl,
}

#[derive(Debug)]
pub(crate) struct Destination {
    pub(crate) name: String,
    pub(crate) kind: DestinationKind,
    pub(crate) url: url::Url,
    pub(crate) credential: Credential,
    settings: DestinationSettings,
    pub(crate) timeout: Duration,
    pacing: Pacing,
}

impl Destination {
    pub(crate) fn load(settings: &DestinationSettings) -> Result<Self, NotifyError> {
        let name = settings.name.clone();
        let url_text = match (&settings.url_file, settings.fixed_url()) {
            (Some(path), _) => read_secret(&name, path)?,
            (None, Some(url)) => url.to_owned(),
            (None, None) => return Err(NotifyError::Settings(name, "no URL".into())),
        };
        let url =
            check_url(url_text.trim()).map_err(|why| NotifyError::Settings(name.clone(), why))?;
        let secret = match &settings.secret_file {
            Some(path) => Some(read_secret(&name, path)?),
            None => None,
        };
        let credential = match (settings.kind, secret) {
            (DestinationKind::Webhook, Some(text)) => Credential::Signing(
                SigningKey::parse_all(&text)
                    .map_err(|e| NotifyError::Settings(name.clone(), e.to_string()))?,
            ),
            (DestinationKind::Pagerduty, Some(text)) if !text.trim().is_empty() => {
                Credential::RoutingKey(text.trim().to_owned())
            }
            (DestinationKind::Slack, None) => Credential::InUrl,
            _ => {
                return Err(NotifyError::Settings(
                    name,
                    "the secret file is empty".into(),
                ))
            }
        };
        Ok(Destination {
            name,
            kind: settings.kind,
            url,
            credential,
            settings: settings.clone(),
            timeout: Duration::from_millis(settings.timeout_ms),
            pacing: Pacing::new(settings.max_per_minute),
        })
    }

    /// Whether alerts of `tenant` may be sent here.
    pub(crate) fn allows(&self, tenant: &str) -> bool {
        self.settings.takes(tenant)
    }

    /// Waits until one more request keeps within the destination's rate.
    pub(crate) async fn wait_turn(&self) {
        let at = self.pacing.reserve(Instant::now());
        tokio::time::sleep_until(tokio::time::Instant::from_std(at)).await;
    }
}

fn read_secret(name: &str, path: &std::path::Path) -> Result<String, NotifyError> {
    std::fs::read_to_string(path).map_err(|source| NotifyError::SecretFile {
        destination: name.to_owned(),
        path: path.to_owned(),
        source,
    })
}

/// Spaces requests evenly: one every `60 s / max_per_minute`, with a burst of up to a tenth
/// of a minute's allowance.
#[derive(Debug)]
struct Pacing {
    interval: Duration,
    burst: u32,
    next: Mutex<Option<Instant>>,
}

impl Pacing {
    fn new(max_per_minute: u32) -> Self {
        let per_minute = max_per_minute.max(1);
        Pacing {
            interval: Duration::from_secs(60) / per_minute,
            burst: (per_minute / 10).max(1),
            next: Mutex::new(None),
        }
    }

    /// The instant this request may go; each request moves the next slot one interval on.
    fn reserve(&self, now: Instant) -> Instant {
        let mut next = self.next.lock();
        let earliest = now
            .checked_sub(self.interval * (self.burst - 1))
            .unwrap_or(now);
        let slot = next.map_or(earliest, |n| n.max(earliest));
        *next = Some(slot + self.interval);
        slot.max(now)
    }
}

/// Every destination by name.
#[derive(Debug, Default)]
pub(crate) struct Destinations {
    by_name: HashMap<String, Destination>,
}

impl Destinations {
    /// Reads each destination's secret files.
    pub(crate) fn load(settings: &[DestinationSettings]) -> Result<Self, NotifyError> {
        let by_name = settings
            .iter()
            .map(|s| Destination::load(s).map(|d| (d.name.clone(), d)))
            .collect::<Result<HashMap<_, _>, _>>()?;
        Ok(Destinations { by_name })
    }

    pub(crate) fn get(&self, name: &str) -> Option<&Destination> {
        self.by_name.get(name)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pacing_allows_a_burst_then_spaces_requests() {
        let pacing = Pacing::new(600);
        let start = Instant::now();
        let slots: Vec<Duration> = (0..70).map(|_| pacing.reserve(start) - start).collect();
        // A burst of 60, then one every 100 ms.
        assert!(
            slots[..60].iter().all(|s| *s == Duration::ZERO),
            "{slots:?}"
        );
        assert_eq!(slots[60], Duration::from_millis(100));
        assert_eq!(slots[69], Duration::from_millis(1_000));
    }
}
