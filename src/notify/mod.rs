//! Alert delivery. The notifier follows `<topic>.alerts` in a consumer group of its own, so it
//! keeps no state and runs in every replica with one sender per alert; it sends every FIRING
//! and RESOLVED to the destinations the alert names (webhooks signed per Standard Webhooks,
//! Slack, PagerDuty), each destination on its own, retrying with backoff, and records what it
//! could not deliver on `<topic>.alerts.dlq`. docs/alerts.md describes the settings and the
//! guarantee.
//!
//! - `destinations`: the settings with their secrets read (again when they change), and the
//!   routing rule;
//! - `messages`: what each kind is sent; `webhook`: the signatures;
//! - `send`: one state change to one destination, with retries;
//! - `follow`: the consumer thread, and `progress`: which offset it may commit;
//! - `dead_letters`: the dead letters' schema, and the book every replica keeps of them.

mod dead_letters;
mod destinations;
mod follow;
mod messages;
mod progress;
mod send;
mod webhook;

use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use thiserror::Error;
use tracing::{info, warn};

use crate::alerts::{AlertEvent, AlertState};
use crate::changelog::ChangelogWriter;
use crate::clock::SharedClock;
use crate::config::DestinationKind;
use crate::ops::Metrics;

pub use dead_letters::DeadLetterBook;
pub(crate) use dead_letters::{DeadLetter, DEAD_LETTERS_PER_TENANT};
pub(crate) use destinations::Destinations;
use destinations::{Credential, Destination, Secrets};
pub(crate) use follow::deliver_alerts;
use send::{Attempt, Outcome, Request};
pub use webhook::verify as verify_webhook;

#[derive(Debug, Error)]
pub enum NotifyError {
    #[error("alert destination `{0}`: {1}")]
    Settings(String, String),
    #[error("alert destination `{destination}`: cannot read {path}: {source}")]
    SecretFile {
        destination: String,
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{0}")]
    Secret(&'static str),
    #[error("cannot make the HTTP client that delivers alerts")]
    Client(#[source] reqwest::Error),
    #[error("kafka client for the alert notifier")]
    Kafka(#[source] rdkafka::error::KafkaError),
    #[error("cannot start the alert notifier")]
    Thread(#[source] std::io::Error),
    #[error("no alert destination is named `{0}`")]
    UnknownDestination(String),
    #[error("alert destination `{destination}` takes no alerts of tenant {tenant:?}")]
    NotForTenant { destination: String, tenant: String },
}

/// The tenant a test alert names when the caller names none.
pub(crate) const TEST_TENANT: &str = "integration-health-test";

/// How a test send ended.
#[derive(Debug)]
pub(crate) struct TestSent {
    /// What the destination was sent as the message's id (`webhook-id` for a webhook).
    pub(crate) message_id: String,
    /// Why it was not delivered; `None` when the destination answered 2xx.
    pub(crate) error: Option<String>,
}

/// Sends alert state changes to their destinations.
pub struct Notifier {
    pub(crate) destinations: Arc<Destinations>,
    pub(crate) client: reqwest::Client,
    /// The first retry's wait; each later one waits up to twice as long.
    pub(crate) first_backoff: Duration,
    pub(crate) public_url: Option<url::Url>,
    /// A FIRING older than this when it is read is not sent (a new notifier group catching up).
    pub(crate) max_age_ms: i64,
    pub(crate) clock: SharedClock,
    pub(crate) metrics: Arc<Metrics>,
    pub(crate) dead_letters: Arc<ChangelogWriter>,
}

/// How long to wait before writing a dead letter again when Kafka refused it.
const DEAD_LETTER_RETRY: Duration = Duration::from_secs(1);

impl Notifier {
    pub(crate) fn http_client() -> Result<reqwest::Client, NotifyError> {
        send::client().map_err(NotifyError::Client)
    }

    /// Whether `event` is a FIRING too old to page anyone about; counted as stale if so.
    pub(crate) fn is_stale(&self, event: &AlertEvent) -> bool {
        let age_ms = self.clock.now_ms() - event.at_ms;
        // A RESOLVED is always sent: one the receiver never saw open does no harm, and a lost
        // one leaves an incident open.
        if event.state == AlertState::Firing && age_ms > self.max_age_ms {
            info!(alert = %event.alert_id, age_ms, "alert too old to send");
            for name in &event.destinations {
                self.metrics.alert_delivery(name, "stale");
            }
            return true;
        }
        false
    }

    /// Delivers `event` to the destination `name`: returns once it was taken or its dead
    /// letter was written.
    pub(crate) async fn deliver_to(&self, name: &str, event: &AlertEvent) {
        let outcome = match self.destinations.get(name) {
            None => Outcome::Failed {
                attempts: 0,
                error: "no destination has this name now".into(),
            },
            Some(d) if !d.allows(&event.tenant_id) => Outcome::Failed {
                attempts: 0,
                error: "the destination does not take this tenant's alerts".into(),
            },
            Some(destination) => {
                let metrics = &self.metrics;
                let build = |secrets: &Secrets| self.request(destination, secrets, event);
                let policy = destination.policy(self.first_backoff);
                send::send(&self.client, destination, build, policy, |attempt, took| {
                    metrics.alert_delivery_time(name, took);
                    for outcome in attempt_outcomes(attempt) {
                        metrics.alert_delivery(name, outcome);
                    }
                })
                .await
            }
        };
        if let Outcome::Failed { attempts, error } = outcome {
            warn!(destination = name, alert = %event.alert_id, attempts, %error, "alert not delivered; written to the dead letters");
            self.write_dead_letter(name, event, attempts, &error).await;
            self.metrics.alert_delivery(name, "dead_lettered");
        }
    }

    /// Sends a test alert about `tenant_id` to the destination `name`, signed and shaped as a
    /// real one, once: neither retried nor written to the dead letters, so an operator sees at
    /// once how the receiver answers (`query alerts test`).
    pub(crate) async fn send_test(
        &self,
        name: &str,
        tenant_id: &str,
    ) -> Result<TestSent, NotifyError> {
        let destination = self
            .destinations
            .get(name)
            .ok_or_else(|| NotifyError::UnknownDestination(name.to_owned()))?;
        if !destination.allows(tenant_id) {
            return Err(NotifyError::NotForTenant {
                destination: name.to_owned(),
                tenant: tenant_id.to_owned(),
            });
        }
        let event = messages::test_event(name, tenant_id, self.clock.now_ms());
        let build = |secrets: &Secrets| self.request(destination, secrets, &event);
        let once = send::RetryPolicy {
            attempts: 1,
            ..destination.policy(self.first_backoff)
        };
        let outcome = send::send(&self.client, destination, build, once, |_, _| {}).await;
        info!(
            destination = name,
            tenant = tenant_id,
            ?outcome,
            "test alert sent"
        );
        Ok(TestSent {
            message_id: messages::message_id(&event),
            error: match outcome {
                Outcome::Sent { .. } => None,
                Outcome::Failed { error, .. } => Some(error),
            },
        })
    }

    /// Re-reads every destination's secret files that changed since they were read.
    pub(crate) fn reload_secrets(&self) {
        for destination in self.destinations.iter() {
            match destination.reload_if_changed() {
                Ok(true) => info!(destination = %destination.name, "destination secrets reloaded"),
                Ok(false) => {}
                Err(err) => {
                    warn!(error = %err, "destination secrets changed but do not load; the previous ones stay in force")
                }
            }
        }
    }

    /// The request for one attempt: a webhook's carries the same `webhook-id` every time, with
    /// the attempt's own timestamp and signature.
    fn request(&self, destination: &Destination, secrets: &Secrets, event: &AlertEvent) -> Request {
        let link = messages::dashboard_link(self.public_url.as_ref(), event);
        let body = match (&secrets.credential, destination.kind) {
            (Credential::RoutingKey(key), _) => {
                serde_json::to_vec(&messages::pagerduty(event, key, link.as_deref()))
            }
            (Credential::InUrl, _) | (_, DestinationKind::Slack) => {
                serde_json::to_vec(&messages::slack(event, link.as_deref()))
            }
            // The event as published, its fields in the documented order.
            (Credential::Signing(_), _) => serde_json::to_vec(event),
        }
        .unwrap_or_default();
        let headers = match &secrets.credential {
            Credential::Signing(keys) => {
                let id = messages::message_id(event);
                let timestamp = unix_seconds();
                let signature = webhook::signature(keys, &id, timestamp, &body);
                vec![
                    ("webhook-id", id),
                    ("webhook-timestamp", timestamp.to_string()),
                    ("webhook-signature", signature),
                ]
            }
            _ => Vec::new(),
        };
        Request { body, headers }
    }

    /// Writes the dead letter, again and again while Kafka refuses it: the delivery is not
    /// done, and its offset not committed, until it is written.
    async fn write_dead_letter(&self, name: &str, event: &AlertEvent, attempts: u32, error: &str) {
        let record = DeadLetter {
            destination: name.to_owned(),
            webhook_id: messages::message_id(event),
            attempts,
            error: error.to_owned(),
            at_ms: self.clock.now_ms(),
            alert: event.clone(),
        };
        let payload = serde_json::to_vec(&record).unwrap_or_default();
        while let Err(err) = self.dead_letters.write(&event.tenant_id, &payload).await {
            warn!(error = %err, destination = name, alert = %event.alert_id, "cannot write a dead letter; trying again");
            tokio::time::sleep(DEAD_LETTER_RETRY).await;
        }
    }
}

/// What an attempt counts as: `failed` is every attempt not taken, `retried` those followed
/// by another.
fn attempt_outcomes(attempt: Attempt) -> &'static [&'static str] {
    match attempt {
        Attempt::Taken => &["sent"],
        Attempt::Retried => &["failed", "retried"],
        Attempt::Failed => &["failed"],
    }
}

/// Standard Webhooks timestamps are wall-clock seconds: receivers compare them with their own
/// clocks to refuse replays.
fn unix_seconds() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs() as i64)
}
