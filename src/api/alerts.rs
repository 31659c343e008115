//! The alert calls: `ListAlerts` and `WatchAlerts`, read from the alerts topic's book,
//! `TestAlertDestination`, sent by the notifier, and `ListAlertDeadLetters`, read from the
//! dead letters' book.

// Handlers must return `tonic::Status`.
#![allow(clippy::result_large_err)]

use std::pin::Pin;
use std::sync::Arc;

use futures::{Stream, StreamExt};
use tokio_stream::wrappers::BroadcastStream;
use tonic::{Request, Response, Status};
use tracing::instrument;

use super::auth::Access;
use super::callers::Caller;
use super::convert::{duration_to_ms, ms_to_timestamp, timestamp_to_ms};
use super::rules::severity_to_wire;
use super::service::validate_tenant;
use super::IntegrationHealthApi;
use crate::alerts::{AlertBook, AlertEvent, AlertState};
use crate::event::IntegrationType;
use crate::notify::{NotifyError, DEAD_LETTERS_PER_TENANT, TEST_TENANT};
use crate::proto;
use crate::store::DAY_MS;

/// How far back `ListAlertDeadLetters` looks when the request says nothing.
const DEAD_LETTERS_DEFAULT_WITHIN_MS: i64 = 7 * DAY_MS;

pub(crate) type AlertStream = Pin<Box<dyn Stream<Item = Result<proto::Alert, Status>> + Send>>;

impl From<AlertEvent> for proto::Alert {
    fn from(e: AlertEvent) -> Self {
        let rule = super::rules::kind_to_wire(e.rule);
        let state = match e.state {
            AlertState::Firing => proto::AlertState::AlertFiring,
            AlertState::Resolved => proto::AlertState::AlertResolved,
        };
        let integration_type = IntegrationType::parse(&e.integration_type)
            .map_or(0, |t| proto::IntegrationType::from(t) as i32);
        proto::Alert {
            alert_id: e.alert_id,
            state: state as i32,
            tenant_id: e.tenant_id,
            rule: rule as i32,
            integration_type,
            integration_id: e.integration_id,
            integration_name: e.integration_name,
            status_code: u32::from(e.status_code),
            value: e.value,
            threshold: e.threshold,
            measure: e.measure,
            first_failure: e.first_failure_ms.map(ms_to_timestamp),
            last_failure: e.last_failure_ms.map(ms_to_timestamp),
            sample_message: e.sample_message,
            guidance: e.guidance,
            fired_at: Some(ms_to_timestamp(e.fired_at_ms)),
            at: Some(ms_to_timestamp(e.at_ms)),
            severity: severity_to_wire(e.severity) as i32,
            min_volume: e.min_volume,
        }
    }
}

impl IntegrationHealthApi {
    /// The tenant a call is about (checked), or `None` for every tenant (operator only).
    fn alert_scope<T>(
        &self,
        request: &Request<T>,
        tenant_id: &str,
    ) -> Result<(Option<String>, Caller), Status> {
        if tenant_id.is_empty() {
            let caller = self.caller(request, Access::Operator)?;
            return Ok((None, caller));
        }
        let caller = self.tenant(request, tenant_id)?;
        Ok((Some(tenant_id.to_owned()), caller))
    }

    fn alert_book(&self) -> Result<&Arc<AlertBook>, Status> {
        self.alerts
            .as_ref()
            .ok_or_else(|| Status::failed_precondition("this service does not evaluate alerts"))
    }

    #[instrument(name = "list_alerts", skip_all, fields(rpc = "ListAlerts"))]
    pub(super) async fn list_alerts_call(
        &self,
        request: Request<proto::ListAlertsRequest>,
    ) -> Result<Response<proto::ListAlertsResponse>, Status> {
        self.timed("ListAlerts", async {
            let req = request.get_ref();
            let (scope, _) = self.alert_scope(&request, &req.tenant_id)?;
            let within = match &req.resolved_within {
                Some(d) => duration_to_ms("resolved_within", d)?,
                None => DAY_MS,
            };
            let since = self.clock.now_ms() - within.max(0);
            let alerts = self
                .alert_book()?
                .list(scope.as_deref(), since)
                .into_iter()
                .map(Into::into)
                .collect();
            Ok(Response::new(proto::ListAlertsResponse { alerts }))
        })
        .await
    }

    #[instrument(
        name = "test_alert_destination",
        skip_all,
        fields(rpc = "TestAlertDestination")
    )]
    pub(super) async fn test_alert_destination_call(
        &self,
        request: Request<proto::TestAlertDestinationRequest>,
    ) -> Result<Response<proto::TestAlertDestinationResponse>, Status> {
        self.timed("TestAlertDestination", async {
            self.caller(&request, Access::Operator)?;
            let req = request.get_ref();
            let tenant = match req.tenant_id.as_str() {
                "" => TEST_TENANT,
                tenant => {
                    validate_tenant(tenant)?;
                    tenant
                }
            };
            let notifier = self.notifier.as_ref().ok_or_else(|| {
                Status::failed_precondition("no alert destinations are configured")
            })?;
            let sent =
                notifier
                    .send_test(&req.destination, tenant)
                    .await
                    .map_err(|err| match err {
                        NotifyError::UnknownDestination(_) => Status::not_found(err.to_string()),
                        _ => Status::failed_precondition(err.to_string()),
                    })?;
            Ok(Response::new(proto::TestAlertDestinationResponse {
                delivered: sent.error.is_none(),
                message_id: sent.message_id,
                error: sent.error.unwrap_or_default(),
            }))
        })
        .await
    }

    #[instrument(
        name = "list_alert_dead_letters",
        skip_all,
        fields(rpc = "ListAlertDeadLetters")
    )]
    pub(super) async fn list_alert_dead_letters_call(
        &self,
        request: Request<proto::ListAlertDeadLettersRequest>,
    ) -> Result<Response<proto::ListAlertDeadLettersResponse>, Status> {
        self.timed("ListAlertDeadLetters", async {
            let req = request.get_ref();
            self.tenant(&request, &req.tenant_id)?;
            let since = match &req.since {
                Some(t) => timestamp_to_ms("since", t)?,
                None => self.clock.now_ms() - DEAD_LETTERS_DEFAULT_WITHIN_MS,
            };
            let limit = match req.limit {
                0 => DEAD_LETTERS_PER_TENANT,
                n => (n as usize).min(DEAD_LETTERS_PER_TENANT),
            };
            let book = self.dead_letters.as_ref().ok_or_else(|| {
                Status::failed_precondition("no alert destinations are configured")
            })?;
            if !book.caught_up() {
                return Err(Status::unavailable(
                    "still reading the dead letters; try again shortly",
                ));
            }
            let dead_letters = book
                .list(&req.tenant_id, since, limit)
                .into_iter()
                .map(|letter| proto::AlertDeadLetter {
                    destination: letter.destination,
                    message_id: letter.webhook_id,
                    attempts: letter.attempts,
                    error: letter.error,
                    at: Some(ms_to_timestamp(letter.at_ms)),
                    alert: Some(letter.alert.into()),
                })
                .collect();
            Ok(Response::new(proto::ListAlertDeadLettersResponse {
                dead_letters,
            }))
        })
        .await
    }

    #[instrument(name = "watch_alerts", skip_all, fields(rpc = "WatchAlerts"))]
    pub(super) async fn watch_alerts_call(
        &self,
        request: Request<proto::WatchAlertsRequest>,
    ) -> Result<Response<AlertStream>, Status> {
        self.timed("WatchAlerts", async {
            let (scope, caller) = self.alert_scope(&request, &request.get_ref().tenant_id)?;
            let permit = self.watches.open(caller)?;
            let changes = BroadcastStream::new(self.alert_book()?.subscribe());
            // A watcher too slow for the channel misses changes rather than holding them all;
            // ListAlerts gives the current state.
            let stream = changes
                .filter_map(move |change| {
                    // The stream holds its permit until it is dropped.
                    let _held = &permit;
                    let keep = change
                        .ok()
                        .filter(|e| scope.as_deref().is_none_or(|t| e.tenant_id == t));
                    futures::future::ready(keep.map(|e| Ok(proto::Alert::from(e))))
                })
                .take_until(self.shutdown.clone().cancelled_owned());
            Ok(Response::new(Box::pin(stream) as AlertStream))
        })
        .await
    }
}
