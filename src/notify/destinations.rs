//! Destinations ready to send to: settings with their secret files read (and read again when
//! they change, so a rotation needs no restart), a rate limit each.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use parking_lot::{Mutex, RwLock};

use super::send::RetryPolicy;
use super::webhook::SigningKey;
use super::NotifyError;
use crate::config::{check_url, DestinationKind, DestinationSettings};
use crate::file_digest::{digest, FileDigest};

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

/// What a destination's secret files held when they were last read.
#[derive(Debug)]
pub(crate) struct Secrets {
    pub(crate) url: url::Url,
    pub(crate) credential: Credential,
}

#[derive(Debug)]
pub(crate) struct Destination {
    pub(crate) name: String,
    pub(crate) kind: DestinationKind,
    settings: DestinationSettings,
    pub(crate) timeout: Duration,
    secrets: RwLock<Arc<Secrets>>,
    /// The digests of `url_file` and `secret_file` as they were when `secrets` was read.
    read_from: Mutex<Vec<FileDigest>>,
    pacing: Pacing,
}

impl Destination {
    pub(crate) fn load(settings: &DestinationSettings) -> Result<Self, NotifyError> {
        // Taken before the files are read, so a rewrite in between is seen as a change.
        let digests = secret_files(settings).map(digest).collect();
        let secrets = read_secrets(settings)?;
        Ok(Destination {
            name: settings.name.clone(),
            kind: settings.kind,
            settings: settings.clone(),
            timeout: Duration::from_millis(settings.timeout_ms),
            secrets: RwLock::new(Arc::new(secrets)),
            read_from: Mutex::new(digests),
            pacing: Pacing::new(settings.rate_limit_per_s),
        })
    }

    /// The URL and credential in force.
    pub(crate) fn secrets(&self) -> Arc<Secrets> {
        self.secrets.read().clone()
    }

    /// Reads the secret files again when their bytes changed. `Ok(true)`: new secrets are in
    /// force. An error keeps the old ones (a half-written Secret never stops deliveries) and
    /// is reported once: the files are read again when they next change.
    pub(crate) fn reload_if_changed(&self) -> Result<bool, NotifyError> {
        let now: Vec<FileDigest> = secret_files(&self.settings).map(digest).collect();
        let mut read_from = self.read_from.lock();
        if *read_from == now {
            return Ok(false);
        }
        *read_from = now;
        let secrets = read_secrets(&self.settings)?;
        *self.secrets.write() = Arc::new(secrets);
        Ok(true)
    }

    /// Whether alerts of `tenant` may be sent here.
    pub(crate) fn allows(&self, tenant: &str) -> bool {
        self.settings.takes(tenant)
    }

    /// How often and how patiently a request here is retried.
    pub(crate) fn policy(&self, first_backoff: Duration) -> RetryPolicy {
        RetryPolicy {
            attempts: self.settings.max_attempts.max(1),
            first_backoff,
            max_backoff: Duration::from_millis(self.settings.max_backoff_ms),
        }
    }

    /// Waits until one more request keeps within the destination's rate.
    pub(crate) async fn wait_turn(&self) {
        let at = self.pacing.reserve(Instant::now());
        tokio::time::sleep_until(tokio::time::Instant::from_std(at)).await;
    }
}

fn secret_files(settings: &DestinationSettings) -> impl Iterator<Item = &Path> {
    [&settings.url_file, &settings.secret_file]
        .into_iter()
        .flatten()
        .map(PathBuf::as_path)
}

fn read_secrets(settings: &DestinationSettings) -> Result<Secrets, NotifyError> {
    let name = &settings.name;
    let url_text = match (&settings.url_file, settings.fixed_url()) {
        (Some(path), _) => read_secret(name, path)?,
        (None, Some(url)) => url.to_owned(),
        (None, None) => return Err(NotifyError::Settings(name.clone(), "no URL".into())),
    };
    let url = check_url(url_text.trim()).map_err(|why| NotifyError::Settings(name.clone(), why))?;
    let secret = match &settings.secret_file {
        Some(path) => Some(read_secret(name, path)?),
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
                name.clone(),
                "the secret file is empty".into(),
            ))
        }
    };
    Ok(Secrets { url, credential })
}

fn read_secret(name: &str, path: &Path) -> Result<String, NotifyError> {
    std::fs::read_to_string(path).map_err(|source| NotifyError::SecretFile {
        destination: name.to_owned(),
        path: path.to_owned(),
        source,
    })
}

/// Spaces requests evenly, one every `1 s / rate_limit_per_s`, after a burst of up to one
/// second's allowance.
#[derive(Debug)]
struct Pacing {
    interval: Duration,
    burst: u32,
    next: Mutex<Option<Instant>>,
}

impl Pacing {
    fn new(per_second: u32) -> Self {
        let per_second = per_second.max(1);
        Pacing {
            interval: Duration::from_secs(1) / per_second,
            burst: per_second,
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

    pub(crate) fn iter(&self) -> impl Iterator<Item = &Destination> {
        self.by_name.values()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pacing_allows_a_burst_then_spaces_requests() {
        let pacing = Pacing::new(10);
        let start = Instant::now();
        let slots: Vec<Duration> = (0..15).map(|_| pacing.reserve(start) - start).collect();
        // A burst of 10, then one every 100 ms.
        assert!(
            slots[..10].iter().all(|s| *s == Duration::ZERO),
            "{slots:?}"
        );
        assert_eq!(slots[10], Duration::from_millis(100));
        assert_eq!(slots[14], Duration::from_millis(500));
    }

    #[test]
    fn a_changed_secret_file_is_read_again_and_a_broken_one_keeps_the_old() {
        let dir = tempfile::tempdir().expect("dir");
        let path = dir.path().join("pager.key");
        std::fs::write(&path, "first-key").expect("key");
        let settings = DestinationSettings {
            secret_file: Some(path.clone()),
            ..DestinationSettings::new("pager", DestinationKind::Pagerduty)
        };
        let destination = Destination::load(&settings).expect("loads");
        let key = |d: &Destination| match &d.secrets().credential {
            Credential::RoutingKey(key) => key.clone(),
            other => panic!("{other:?}"),
        };
        assert!(!destination.reload_if_changed().expect("unchanged"));
        std::fs::write(&path, "other-key").expect("rotated");
        assert!(destination.reload_if_changed().expect("reloads"));
        assert_eq!(key(&destination), "other-key");
        std::fs::write(&path, "  \n").expect("emptied");
        assert!(destination.reload_if_changed().is_err());
        assert_eq!(key(&destination), "other-key", "the old key stays");
        assert!(!destination.reload_if_changed().expect("reported once"));
        std::fs::write(&path, "third-key").expect("fixed");
        assert!(destination.reload_if_changed().expect("reloads"));
        assert_eq!(key(&destination), "third-key");
    }
}
