//! Alert delivery. The notifier follows `<topic>.alerts` in a consumer group of its own, so it
//! keeps no state and runs in every replica with one sender per alert; it sends every FIRING
//! and RESOLVED to the destinations the alert names (webhooks signed per Standard Webhooks,
//! Slack, PagerDuty), retrying with backoff, and records what it could not deliver on
//! `<topic>.alerts.undelivered`. docs/alerts.md describes the settings and guarantees.
//!
//! - `destinations`: the settings with their secrets read, and the routing rule;
//! - `messages`: what each kind is sent; `webhook`: the signatures;
//! - `send`: one request with retries; `follow`: the consumer thread.

mod destinations;
mod follow;
mod messages;
mod send;
mod webhook;

use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde::Serialize;
use thiserror::Error;
use tracing::{info, warn};

use crate::alerts::{AlertEvent, AlertState};
use crate::changelog::ChangelogWriter;
use crate::clock::SharedClock;
use crate::config::DestinationKind;
use crate::ops::Metrics;

pub(crate) use destinations::Destinations;
use destinations::{Credential, Destination};
pub(crate) use follow::deliver_alerts;
pub(crate) use send::RetryPolicy;
use send::{Outcome, Request};

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

/// A state change that could not be delivered to one destination: the schema of
/// `<topic>.alerts.undelivered`.
#[derive(Debug, Serialize)]
struct Undelivered<'a> {
    destination: &'a str,
    webhook_id: String,
    attempts: u32,
    error: &'a str,
    at_ms: i64,
    alert: &'a AlertEvent,
}

/// Sends alert state changes to their destinations.
pub struct Notifier {
    pub(crate) destinations: Arc<Destinations>,
    pub(crate) client: reqwest::Client,
    pub(crate) policy: RetryPolicy,
    pub(crate) public_url: Option<url::Url>,
    /// A FIRING older than this when it is read is not sent (a new notifier group catching up).
    pub(crate) max_age_ms: i64,
    pub(crate) clock: SharedClock,
    pub(crate) metrics: Arc<Metrics>,
    pub(crate) undelivered: Option<Arc<ChangelogWriter>>,
}

impl Notifier {
    pub(crate) fn http_client() -> Result<reqwest::Client, NotifyError> {
        send::client().map_err(NotifyError::Client)
    }

    /// Delivers `event` to each of its destinations at once; returns when each has been sent
    /// or recorded as undelivered.
    pub(crate) async fn deliver(&self, event: &AlertEvent) {
        let age_ms = self.clock.now_ms() - event.at_ms;
        // A RESOLVED is always sent: one the receiver never saw open does no harm, and a lost
        // one leaves an incident open.
        if event.state == AlertState::Firing && age_ms > self.max_age_ms {
            info!(alert = %event.alert_id, age_ms, "alert too old to send");
            for name in &event.destinations {
                self.metrics.alert_delivery(name, "stale");
            }
            return;
        }
        let sends = event
            .destinations
            .iter()
            .map(|name| self.deliver_to(name, event));
        futures::future::join_all(sends).await;
    }

    async fn deliver_to(&self, name: &str, event: &AlertEvent) {
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
                let request = self.request(destination, event);
                let metrics = &self.metrics;
                send::send(&self.client, destination, &request, self.policy, |took| {
                    metrics.alert_delivery_time(name, took)
                })
                .await
            }
        };
        match outcome {
            Outcome::Sent { .. } => self.metrics.alert_delivery(name, "sent"),
            Outcome::Failed { attempts, error } => {
                self.metrics.alert_delivery(name, "failed");
                warn!(destination = name, alert = %event.alert_id, attempts, %error, "alert not delivered");
                self.record_undelivered(name, event, attempts, &error).await;
            }
        }
    }

    /// Sends a test alert about `tenant_id` to the destination `name`, signed and shaped as a
    /// real one, once: neither retried nor recorded as undelivered, so an operator sees at once
    /// how the receiver answers (`query alerts test`).
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
        let request = self.request(destination, &event);
        let once = RetryPolicy {
            attempts: 1,
            ..self.policy
        };
        let outcome = send::send(&self.client, destination, &request, once, |_| {}).await;
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

    fn request(&self, destination: &Destination, event: &AlertEvent) -> Request {
        let link = messages::dashboard_link(self.public_url.as_ref(), event);
        let body = match (&destination.credential, destination.kind) {
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
        let headers = match &destination.credential {
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

    async fn record_undelivered(&self, name: &str, event: &AlertEvent, attempts: u32, error: &str) {
        let Some(writer) = &self.undelivered else {
            return;
        };
        let record = Undelivered {
            destination: name,
            webhook_id: messages::message_id(event),
            attempts,
            error,
            at_ms: self.clock.now_ms(),
            alert: event,
        };
        let payload = serde_json::to_vec(&record).unwrap_or_default();
        if let Err(err) = writer.write(&event.tenant_id, &payload).await {
            warn!(error = %err, destination = name, alert = %event.alert_id, "cannot record an undelivered alert");
        }
    }
}

/// Standard Webhooks timestamps are wall-clock seconds: receivers compare them with their own
/// clocks to refuse replays.
fn unix_seconds() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs() as i64)
}

/// Retry settings from the service's.
pub(crate) fn retry_policy(attempts: u32, first_backoff_ms: u64) -> RetryPolicy {
    RetryPolicy {
        attempts: attempts.max(1),
        first_backoff: Duration::from_millis(first_backoff_ms),
        max_backoff: Duration::from_secs(60),
    }
}
