//! A traffic simulator that plays the integration runtimes of a few tenants, incidents
//! included, and the producer that publishes what it plays.

use std::time::Duration;

use integration_health::event::IntegrationType;
use integration_health::ingest::send_when_queued;
use integration_health::store::{floor_to, DAY_MS, HOUR_MS};

use crate::latency::Latency;
use rand::rngs::SmallRng;
use rand::{Rng, SeedableRng};
use rdkafka::config::ClientConfig;
use rdkafka::error::KafkaError;
use rdkafka::producer::{BaseRecord, DefaultProducerContext, Producer, ThreadedProducer};
use serde::Serialize;

/// One outcome event as the runtimes publish it (see docs/events.md).
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct OutcomeEvent {
    pub event_id: String,
    pub tenant_id: String,
    pub occurred_at: String,
    pub integration_type: &'static str,
    pub integration_id: String,
    pub integration_name: String,
    pub outcome: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub status_code: Option<u16>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error_message: Option<String>,
    pub flow_id: String,
    pub flow_name: String,
    pub service_id: String,
    pub service_name: String,
    pub latency_ms: u32,
}

struct Integration {
    id: &'static str,
    name: &'static str,
    kind: IntegrationType,
    service: (&'static str, &'static str),
    flow: (&'static str, &'static str),
}

struct Tenant {
    id: &'static str,
    events_per_hour: f64,
    /// Offset from UTC in hours, for the daily rhythm.
    utc_offset_hours: i64,
    integrations: Vec<Integration>,
}

/// A stretch of time in which one integration mostly fails with the given codes.
struct Incident {
    tenant: &'static str,
    integration: &'static str,
    codes: &'static [u16],
    message: &'static str,
    /// Inclusive start and exclusive end, in ms relative to the simulator's anchor time.
    from_ms: i64,
    to_ms: i64,
    failure_share: f64,
    /// Repeats with this period (ms) inside [from, to) when set: active for `burst_ms` each period.
    repeat: Option<(i64, i64)>,
}

impl Incident {
    fn active(&self, tenant: &str, integration: &str, at_ms: i64, anchor_ms: i64) -> bool {
        let relative = at_ms - anchor_ms;
        if self.tenant != tenant || self.integration != integration {
            return false;
        }
        if relative < self.from_ms || relative >= self.to_ms {
            return false;
        }
        match self.repeat {
            None => true,
            Some((period, burst)) => (relative - self.from_ms).rem_euclid(period) < burst,
        }
    }
}

const fn integration(
    id: &'static str,
    name: &'static str,
    kind: IntegrationType,
    service: (&'static str, &'static str),
    flow: (&'static str, &'static str),
) -> Integration {
    Integration {
        id,
        name,
        kind,
        service,
        flow,
    }
}

fn tenants() -> Vec<Tenant> {
    use IntegrationType::*;
    vec![
        Tenant {
            id: "acme-retail",
            events_per_hour: 300.0,
            utc_offset_hours: -5,
            integrations: vec![
                integration(
                    "iwh-orders",
                    "Storefront orders",
                    InboundWebhook,
                    ("svc-orders", "Order updates"),
                    ("flow-order-confirm", "Order confirmation"),
                ),
                integration(
                    "iwh-returns",
                    "Returns portal",
                    InboundWebhook,
                    ("svc-returns", "Returns"),
                    ("flow-return-label", "Return label"),
                ),
                integration(
                    "owh-erp",
                    "ERP order push",
                    OutboundWebhook,
                    ("svc-orders", "Order updates"),
                    ("flow-order-confirm", "Order confirmation"),
                ),
                integration(
                    "pbi-shopify",
                    "Shopify",
                    PrebuiltIntegration,
                    ("svc-catalog", "Catalog sync"),
                    ("flow-stock-alert", "Back-in-stock alert"),
                ),
                integration(
                    "cn-loyalty",
                    "Loyalty points lookup",
                    CustomNode,
                    ("svc-loyalty", "Loyalty"),
                    ("flow-points", "Points balance"),
                ),
                integration(
                    "ce-cart",
                    "Abandoned cart",
                    CustomEvent,
                    ("svc-marketing", "Marketing"),
                    ("flow-cart-nudge", "Cart reminder"),
                ),
            ],
        },
        Tenant {
            id: "globex-health",
            events_per_hour: 200.0,
            utc_offset_hours: 1,
            integrations: vec![
                integration(
                    "iwh-appointments",
                    "Appointment booked",
                    InboundWebhook,
                    ("svc-scheduling", "Scheduling"),
                    ("flow-reminder", "Appointment reminder"),
                ),
                integration(
                    "owh-ehr",
                    "EHR sync",
                    OutboundWebhook,
                    ("svc-records", "Patient records"),
                    ("flow-visit-summary", "Visit summary"),
                ),
                integration(
                    "pbi-salesforce",
                    "Salesforce Health Cloud",
                    PrebuiltIntegration,
                    ("svc-crm", "CRM"),
                    ("flow-intake", "Patient intake"),
                ),
                integration(
                    "cn-insurance",
                    "Insurance eligibility",
                    CustomNode,
                    ("svc-billing", "Billing"),
                    ("flow-intake", "Patient intake"),
                ),
                integration(
                    "ce-lab",
                    "Lab result ready",
                    CustomEvent,
                    ("svc-records", "Patient records"),
                    ("flow-lab-notify", "Lab notification"),
                ),
            ],
        },
        Tenant {
            id: "initech-bank",
            events_per_hour: 150.0,
            utc_offset_hours: 5,
            integrations: vec![
                integration(
                    "iwh-fraud",
                    "Fraud alerts",
                    InboundWebhook,
                    ("svc-fraud", "Fraud"),
                    ("flow-card-block", "Card block"),
                ),
                integration(
                    "owh-core",
                    "Core banking callback",
                    OutboundWebhook,
                    ("svc-payments", "Payments"),
                    ("flow-transfer", "Transfer receipt"),
                ),
                integration(
                    "pbi-zendesk",
                    "Zendesk",
                    PrebuiltIntegration,
                    ("svc-support", "Support"),
                    ("flow-ticket", "Ticket update"),
                ),
                integration(
                    "cn-kyc",
                    "KYC check",
                    CustomNode,
                    ("svc-onboarding", "Onboarding"),
                    ("flow-kyc", "Account opening"),
                ),
                integration(
                    "ce-otp",
                    "OTP requested",
                    CustomEvent,
                    ("svc-auth", "Authentication"),
                    ("flow-otp", "One-time password"),
                ),
            ],
        },
    ]
}

fn incidents() -> Vec<Incident> {
    vec![
        // An ERP endpoint went down for an afternoon, and keeps flapping now.
        Incident {
            tenant: "acme-retail",
            integration: "owh-erp",
            codes: &[503, 503, 504],
            message: "ERP endpoint did not answer",
            from_ms: -6 * DAY_MS,
            to_ms: -6 * DAY_MS + 3 * HOUR_MS,
            failure_share: 0.9,
            repeat: None,
        },
        Incident {
            tenant: "acme-retail",
            integration: "owh-erp",
            codes: &[503, 504],
            message: "ERP endpoint did not answer",
            from_ms: -2 * HOUR_MS,
            to_ms: 30 * DAY_MS,
            failure_share: 0.8,
            repeat: Some((30 * 60_000, 6 * 60_000)),
        },
        // Someone deleted the returns webhook yesterday; senders still call it.
        Incident {
            tenant: "acme-retail",
            integration: "iwh-returns",
            codes: &[404],
            message: "Inbound webhook iwh-returns no longer exists",
            from_ms: -DAY_MS,
            to_ms: 30 * DAY_MS,
            failure_share: 1.0,
            repeat: None,
        },
        // An OAuth grant expired and was only re-authorised the next morning.
        Incident {
            tenant: "globex-health",
            integration: "owh-ehr",
            codes: &[401],
            message: "Authorization expired for EHR sync",
            from_ms: -3 * DAY_MS,
            to_ms: -3 * DAY_MS + 20 * HOUR_MS,
            failure_share: 1.0,
            repeat: None,
        },
        // Its token keeps expiring: for 6 minutes in every 20, until someone re-authorises.
        Incident {
            tenant: "globex-health",
            integration: "owh-ehr",
            codes: &[401],
            message: "Authorization expired for EHR sync",
            from_ms: -HOUR_MS,
            to_ms: 30 * DAY_MS,
            failure_share: 0.9,
            repeat: Some((20 * 60_000, 6 * 60_000)),
        },
        Incident {
            tenant: "globex-health",
            integration: "pbi-salesforce",
            codes: &[401],
            message: "Salesforce token expired: re-authorize",
            from_ms: -12 * DAY_MS,
            to_ms: -12 * DAY_MS + 9 * HOUR_MS,
            failure_share: 1.0,
            repeat: None,
        },
        // Traffic spikes beyond the tenant's TPS allowance.
        Incident {
            tenant: "initech-bank",
            integration: "iwh-fraud",
            codes: &[882, 882, 883],
            message: "TPS allocated to tenant exceeded",
            from_ms: -10 * DAY_MS,
            to_ms: 30 * DAY_MS,
            failure_share: 0.6,
            repeat: Some((DAY_MS, HOUR_MS)),
        },
        Incident {
            tenant: "initech-bank",
            integration: "cn-kyc",
            codes: &[429],
            message: "KYC provider rate limit reached",
            from_ms: -5 * DAY_MS,
            to_ms: -5 * DAY_MS + 2 * HOUR_MS,
            failure_share: 0.7,
            repeat: None,
        },
    ]
}

/// Codes a healthy integration of each type still sees now and then.
fn background_codes(kind: IntegrationType) -> &'static [u16] {
    match kind {
        IntegrationType::InboundWebhook => &[400, 400, 401, 408, 413, 500, 804, 816],
        IntegrationType::OutboundWebhook => &[400, 404, 408, 500, 502, 503],
        IntegrationType::PrebuiltIntegration => &[400, 403, 409, 429, 500, 502],
        IntegrationType::CustomNode => &[400, 404, 405, 408, 500, 521],
        IntegrationType::CustomEvent => &[400, 401, 811, 852, 884],
    }
}

/// Deterministic for a given seed and anchor time.
pub struct Simulator {
    rng: SmallRng,
    tenants: Vec<Tenant>,
    incidents: Vec<Incident>,
    anchor_ms: i64,
    sequence: u64,
}

impl Simulator {
    pub fn new(seed: u64, anchor_ms: i64) -> Self {
        Simulator {
            rng: SmallRng::seed_from_u64(seed),
            tenants: tenants(),
            incidents: incidents(),
            anchor_ms,
            sequence: 0,
        }
    }

    pub fn tenant_ids(&self) -> Vec<&'static str> {
        self.tenants.iter().map(|t| t.id).collect()
    }

    /// Events that occurred in `[start_ms, end_ms)`, in time order per tenant.
    pub fn events_between(&mut self, start_ms: i64, end_ms: i64) -> Vec<OutcomeEvent> {
        let mut events = Vec::new();
        for tenant_index in 0..self.tenants.len() {
            let mut hour = floor_to(start_ms, HOUR_MS);
            while hour < end_ms {
                let from = hour.max(start_ms);
                let to = (hour + HOUR_MS).min(end_ms);
                let expected =
                    self.expected_events(tenant_index, hour) * (to - from) as f64 / HOUR_MS as f64;
                let count =
                    expected.floor() as u64 + u64::from(self.rng.gen_bool(expected.fract()));
                let mut times: Vec<i64> =
                    (0..count).map(|_| self.rng.gen_range(from..to)).collect();
                times.sort_unstable();
                for at in times {
                    let which = self
                        .rng
                        .gen_range(0..self.tenants[tenant_index].integrations.len());
                    let (event, incident_failure) = self.event(tenant_index, which, at);
                    events.push(event);
                    // Runtimes retry a call that failed during an incident, twice, a few
                    // seconds apart; each retry is a transaction of its own.
                    if incident_failure {
                        for delay_ms in [5_000, 20_000] {
                            events.push(self.event(tenant_index, which, at + delay_ms).0);
                        }
                    }
                }
                hour += HOUR_MS;
            }
        }
        events
    }

    fn expected_events(&self, tenant_index: usize, hour_ms: i64) -> f64 {
        let tenant = &self.tenants[tenant_index];
        let local_hour = (hour_ms / HOUR_MS + tenant.utc_offset_hours).rem_euclid(24) as f64;
        let daytime = ((local_hour - 6.0) / 16.0 * std::f64::consts::PI)
            .sin()
            .max(0.0);
        let weekday = (hour_ms / DAY_MS + 4).rem_euclid(7); // 0 = Monday
        let weekend = if weekday >= 5 { 0.6 } else { 1.0 };
        tenant.events_per_hour * (0.25 + 1.5 * daytime) * weekend
    }

    /// One transaction of integration `which` of the tenant, and whether it failed because of an
    /// incident.
    fn event(&mut self, tenant_index: usize, which: usize, at_ms: i64) -> (OutcomeEvent, bool) {
        let tenant = &self.tenants[tenant_index];
        let integration = &tenant.integrations[which];
        let incident = self
            .incidents
            .iter()
            .find(|i| i.active(tenant.id, integration.id, at_ms, self.anchor_ms));
        let incident_failure = incident.is_some_and(|i| self.rng.gen_bool(i.failure_share));
        let (status_code, error_message) = match incident {
            Some(incident) if incident_failure => {
                let code = incident.codes[self.rng.gen_range(0..incident.codes.len())];
                (Some(code), Some(incident.message.to_owned()))
            }
            _ if self.rng.gen_bool(0.03) => {
                let codes = background_codes(integration.kind);
                let code = codes[self.rng.gen_range(0..codes.len())];
                // About half the runtimes send no message; the catalog name stands in.
                let message = self
                    .rng
                    .gen_bool(0.5)
                    .then(|| format!("{} answered {code}", integration.name));
                (Some(code), message)
            }
            _ => (None, None),
        };
        self.sequence += 1;
        let occurred_at = chrono::DateTime::from_timestamp_millis(at_ms)
            .unwrap_or_default()
            .to_rfc3339_opts(chrono::SecondsFormat::Millis, true);
        let event = OutcomeEvent {
            event_id: format!("{}-{:010}", tenant.id, self.sequence),
            tenant_id: tenant.id.to_owned(),
            occurred_at,
            integration_type: integration.kind.as_str(),
            integration_id: integration.id.to_owned(),
            integration_name: integration.name.to_owned(),
            outcome: if status_code.is_some() {
                "failure"
            } else {
                "success"
            },
            status_code,
            error_message,
            flow_id: integration.flow.0.to_owned(),
            flow_name: integration.flow.1.to_owned(),
            service_id: integration.service.0.to_owned(),
            service_name: integration.service.1.to_owned(),
            latency_ms: Latency::of(integration.id).draw(&mut self.rng, incident.is_some()),
        };
        (event, incident_failure)
    }
}

/// Publishes simulated traffic; now and then it repeats an event (a producer retry) or sends a
/// malformed one, so the demo's status shows duplicates and dead letters too.
pub struct TrafficProducer {
    producer: ThreadedProducer<DefaultProducerContext>,
    topic: String,
    rng: SmallRng,
}

impl TrafficProducer {
    pub fn new(bootstrap: &str, topic: &str) -> Result<Self, KafkaError> {
        let producer = ClientConfig::new()
            .set("bootstrap.servers", bootstrap)
            .set("linger.ms", "5")
            .set("queue.buffering.max.messages", "200000")
            .create()?;
        Ok(TrafficProducer {
            producer,
            topic: topic.to_owned(),
            rng: SmallRng::seed_from_u64(7),
        })
    }

    /// Returns how many messages were queued.
    pub fn publish(&mut self, events: &[OutcomeEvent]) -> u64 {
        let mut sent = 0;
        for event in events {
            let payload = serde_json::to_vec(event).unwrap_or_default();
            let copies = if self.rng.gen_bool(0.002) { 2 } else { 1 };
            for _ in 0..copies {
                self.send(&event.tenant_id, &payload);
                sent += 1;
            }
            if self.rng.gen_bool(0.0005) {
                let broken = format!("{{\"event_id\":\"{}\",\"tenant_id\":", event.event_id);
                self.send(&event.tenant_id, broken.as_bytes());
                sent += 1;
            }
        }
        sent
    }

    fn send(&self, key: &str, payload: &[u8]) {
        let record = BaseRecord::to(&self.topic)
            .key(key.as_bytes())
            .payload(payload);
        if let Err(err) = send_when_queued(&self.producer, record) {
            tracing::warn!(error = %err, "demo producer dropped a message");
        }
    }

    pub fn flush(&self) {
        let _ = self.producer.flush(Duration::from_secs(30));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn simulator_is_deterministic_and_covers_every_type() {
        let anchor = 1_767_225_600_000;
        let a = Simulator::new(1, anchor).events_between(anchor - 3 * DAY_MS, anchor);
        let b = Simulator::new(1, anchor).events_between(anchor - 3 * DAY_MS, anchor);
        assert_eq!(a, b);
        for kind in IntegrationType::ALL {
            for tenant in ["acme-retail", "globex-health", "initech-bank"] {
                let failures = a
                    .iter()
                    .filter(|e| {
                        e.tenant_id == tenant
                            && e.integration_type == kind.as_str()
                            && e.outcome == "failure"
                    })
                    .count();
                assert!(failures > 0, "{tenant} {kind}");
            }
        }
    }

    #[test]
    fn incidents_show_up_as_their_codes() {
        let anchor = 1_767_225_600_000;
        let events = Simulator::new(3, anchor).events_between(anchor - DAY_MS, anchor);
        let deleted_webhook = events
            .iter()
            .filter(|e| e.integration_id == "iwh-returns")
            .all(|e| e.status_code == Some(404));
        assert!(deleted_webhook);
    }
}
