//! The same API in the Connect protocol's unary form, for browsers and web backends:
//! `POST /integration_health.v1.IntegrationHealth/<Rpc>` with a body in the proto3 JSON mapping
//! (`application/json`) or binary protobuf (`application/proto`).
//!
//! Each call builds the `tonic::Request` a gRPC client would have sent, with the HTTP headers as
//! its metadata, and runs the gRPC handler itself on the main runtime: the same validation,
//! auth, limits, metrics and queries. Only the envelope differs. Errors use Connect's JSON error
//! body and HTTP status for the code.

// Everything here ends as a `tonic::Status` turned into a response; boxing it would only add
// conversions.
#![allow(clippy::result_large_err)]

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use axum::body::{Body, Bytes};
use axum::extract::{ConnectInfo, Path, State};
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use axum::{Extension, Router};
use prost::Message;
use serde::de::DeserializeOwned;
use serde::Serialize;
use tonic::metadata::MetadataMap;
use tonic::transport::server::TcpConnectInfo;
use tonic::{Code, Status};

use super::coverage::{FORWARDED, ON_BEHALF_OF};
use super::IntegrationHealthApi;

mod stream;
use crate::proto::integration_health_server::IntegrationHealth;

/// Where the service's methods live, as gRPC and Connect name them.
pub(crate) const SERVICE_PATH: &str = "/integration_health.v1.IntegrationHealth";

#[derive(Clone)]
struct ConnectState {
    api: Arc<IntegrationHealthApi>,
    /// The main runtime: handlers run there, beside the gRPC server, not on the HTTP thread.
    runtime: tokio::runtime::Handle,
    request_timeout: Duration,
    max_request_bytes: usize,
}

/// Routes `POST /integration_health.v1.IntegrationHealth/<Rpc>` to `api`. Other methods on
/// those paths get 405.
pub(crate) fn connect_router(
    api: Arc<IntegrationHealthApi>,
    runtime: tokio::runtime::Handle,
    request_timeout: Duration,
    max_request_bytes: usize,
) -> Router {
    Router::new()
        .route(&format!("{SERVICE_PATH}/:method"), post(call))
        .with_state(ConnectState {
            api,
            runtime,
            request_timeout,
            max_request_bytes,
        })
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Codec {
    Json,
    Proto,
}

/// Unary calls send a bare message; streaming calls send enveloped ones.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Framing {
    Unary,
    Stream,
}

impl Codec {
    fn of(headers: &HeaderMap) -> Option<(Codec, Framing)> {
        let content_type = headers.get(header::CONTENT_TYPE)?.to_str().ok()?;
        let essence = content_type.split(';').next()?.trim();
        match essence.to_ascii_lowercase().as_str() {
            "application/json" => Some((Codec::Json, Framing::Unary)),
            "application/proto" => Some((Codec::Proto, Framing::Unary)),
            "application/connect+json" => Some((Codec::Json, Framing::Stream)),
            "application/connect+proto" => Some((Codec::Proto, Framing::Stream)),
            _ => None,
        }
    }

    fn content_type(self, framing: Framing) -> &'static str {
        match (self, framing) {
            (Codec::Json, Framing::Unary) => "application/json",
            (Codec::Proto, Framing::Unary) => "application/proto",
            (Codec::Json, Framing::Stream) => "application/connect+json",
            (Codec::Proto, Framing::Stream) => "application/connect+proto",
        }
    }

    fn decode<T: Message + Default + DeserializeOwned>(self, body: &[u8]) -> Result<T, Status> {
        match self {
            // Connect clients send `{}` for an empty message; an empty body means the same.
            Codec::Json if body.iter().all(u8::is_ascii_whitespace) => Ok(T::default()),
            Codec::Json => serde_json::from_slice(body)
                .map_err(|err| Status::invalid_argument(format!("request body: {err}"))),
            Codec::Proto => T::decode(body)
                .map_err(|err| Status::invalid_argument(format!("request body: {err}"))),
        }
    }

    fn encode<T: Message + Serialize>(self, message: &T) -> Result<Vec<u8>, Status> {
        match self {
            Codec::Json => serde_json::to_vec(message)
                .map_err(|err| Status::internal(format!("encoding the answer: {err}"))),
            Codec::Proto => Ok(message.encode_to_vec()),
        }
    }
}

/// One Connect call, decoded as far as the envelope goes.
struct Call {
    codec: Codec,
    headers: HeaderMap,
    body: Bytes,
    remote: Option<SocketAddr>,
    deadline: Duration,
}

impl Call {
    /// The request a gRPC client would have sent: the headers as metadata, the peer's address
    /// for per-caller limits. Replicas speak gRPC to each other, never Connect, so the
    /// forwarding headers are dropped here whoever sent them.
    fn request<T>(mut self, message: T) -> tonic::Request<T> {
        for replicas_only in [FORWARDED, ON_BEHALF_OF] {
            self.headers.remove(replicas_only);
        }
        let mut extensions = tonic::Extensions::new();
        extensions.insert(TcpConnectInfo {
            local_addr: None,
            remote_addr: self.remote,
        });
        tonic::Request::from_parts(MetadataMap::from_headers(self.headers), extensions, message)
    }

    /// Decodes the request, runs `handler` on the main runtime within the deadline, and
    /// encodes its answer.
    async fn unary<Req, Resp, F, Fut>(self, state: ConnectState, handler: F) -> Response
    where
        Req: Message + Default + DeserializeOwned + Send + 'static,
        Resp: Message + Serialize + Send + 'static,
        F: FnOnce(Arc<IntegrationHealthApi>, tonic::Request<Req>) -> Fut,
        Fut: Future<Output = Result<tonic::Response<Resp>, Status>> + Send + 'static,
    {
        let codec = self.codec;
        let deadline = self.deadline;
        // A caller that allowed no time has already given up; a fast query must not race it.
        if deadline.is_zero() {
            return error_response(&Status::deadline_exceeded(
                "the call's deadline had passed when it arrived",
            ));
        }
        let message = match codec.decode::<Req>(&self.body) {
            Ok(message) => message,
            Err(status) => return error_response(&status),
        };
        let request = self.request(message);
        let task = state.runtime.spawn(handler(state.api.clone(), request));
        let abort = task.abort_handle();
        let answer = match tokio::time::timeout(deadline, task).await {
            Ok(Ok(answer)) => answer,
            Ok(Err(_)) => Err(Status::internal("the call did not complete")),
            Err(_) => {
                abort.abort();
                Err(Status::deadline_exceeded(
                    "the call took longer than its deadline",
                ))
            }
        };
        match answer.and_then(|response| {
            let (metadata, message, _) = response.into_parts();
            Ok((metadata, codec.encode(&message)?))
        }) {
            Ok((metadata, body)) => {
                let mut response = (
                    [(header::CONTENT_TYPE, codec.content_type(Framing::Unary))],
                    Body::from(body),
                )
                    .into_response();
                response.headers_mut().extend(metadata.into_headers());
                response
            }
            Err(status) => error_response(&status),
        }
    }
}

async fn call(
    State(state): State<ConnectState>,
    Path(method): Path<String>,
    connect_info: Option<Extension<ConnectInfo<SocketAddr>>>,
    headers: HeaderMap,
    body: Body,
) -> Response {
    let Some((codec, framing)) = Codec::of(&headers) else {
        return (
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            [(
                "accept-post",
                "application/json, application/proto, application/connect+json, application/connect+proto",
            )],
        )
            .into_response();
    };
    if let Some(version) = headers.get("connect-protocol-version") {
        if version.as_bytes() != b"1" {
            return error_response(&Status::invalid_argument(
                "connect-protocol-version must be 1",
            ));
        }
    }
    // A client that sends its body slowly holds a connection: it gets the request timeout
    // to finish, like the call itself.
    let read = tokio::time::timeout(
        state.request_timeout,
        axum::body::to_bytes(body, state.max_request_bytes),
    );
    let body = match read.await {
        Ok(Ok(body)) => body,
        Ok(Err(_)) => {
            return error_response(&Status::resource_exhausted(format!(
                "request body is larger than {} bytes, or was cut off",
                state.max_request_bytes
            )))
        }
        Err(_) => {
            return error_response(&Status::deadline_exceeded(
                "the request body did not arrive in time",
            ))
        }
    };
    let deadline =
        connect_timeout(&headers).map_or(state.request_timeout, |t| t.min(state.request_timeout));
    let call = Call {
        codec,
        headers,
        body,
        remote: connect_info.map(|Extension(ConnectInfo(addr))| addr),
        deadline,
    };
    if framing == Framing::Stream {
        return match method.as_str() {
            "WatchTenant" => {
                stream::server_stream(call, state, |api, request| async move {
                    api.watch_tenant(request).await
                })
                .await
            }
            "WatchAlerts" => {
                stream::server_stream(call, state, |api, request| async move {
                    api.watch_alerts(request).await
                })
                .await
            }
            _ => stream::end_with(
                codec,
                &Status::unimplemented(format!(
                    "{:?} is not a streaming method",
                    crate::event::echo(&method)
                )),
            ),
        };
    }
    macro_rules! dispatch {
        ($($name:literal => $method:ident),* $(,)?) => {
            match method.as_str() {
                $($name => {
                    call.unary(state, |api, request| async move { api.$method(request).await })
                        .await
                })*
                _ => error_response(&Status::unimplemented(format!(
                    "integration_health.v1.IntegrationHealth has no method {:?}",
                    crate::event::echo(&method)
                ))),
            }
        };
    }
    dispatch! {
        "GetOverview" => get_overview,
        "GetPercentageChange" => get_percentage_change,
        "GetErrorBreakdown" => get_error_breakdown,
        "GetTrends" => get_trends,
        "ListFailures" => list_failures,
        "GetFailureDetails" => get_failure_details,
        "ListCommonErrors" => list_common_errors,
        "ListIntegrations" => list_integrations,
        "GetIntegrationHealth" => get_integration_health,
        "ListIssues" => list_issues,
        "ListAlerts" => list_alerts,
        "TestAlertDestination" => test_alert_destination,
        "ListAlertDeadLetters" => list_alert_dead_letters,
        "UpdateIssue" => update_issue,
        "PutAlertRule" => put_alert_rule,
        "ListAlertRules" => list_alert_rules,
        "DeleteAlertRule" => delete_alert_rule,
        "ListTenants" => list_tenants,
        "GetIngestStatus" => get_ingest_status,
        "GetCaller" => get_caller,
    }
}

/// `Connect-Timeout-Ms`: at most 10 digits, per the protocol.
fn connect_timeout(headers: &HeaderMap) -> Option<Duration> {
    let text = headers.get("connect-timeout-ms")?.to_str().ok()?;
    if text.is_empty() || text.len() > 10 {
        return None;
    }
    text.parse::<u64>().ok().map(Duration::from_millis)
}

/// Connect's name for a gRPC code, and the HTTP status it travels with.
pub(crate) fn connect_code(code: Code) -> (&'static str, StatusCode) {
    match code {
        Code::Ok => ("ok", StatusCode::OK),
        Code::Cancelled => (
            "canceled",
            StatusCode::from_u16(499).unwrap_or(StatusCode::BAD_REQUEST),
        ),
        Code::Unknown => ("unknown", StatusCode::INTERNAL_SERVER_ERROR),
        Code::InvalidArgument => ("invalid_argument", StatusCode::BAD_REQUEST),
        Code::DeadlineExceeded => ("deadline_exceeded", StatusCode::GATEWAY_TIMEOUT),
        Code::NotFound => ("not_found", StatusCode::NOT_FOUND),
        Code::AlreadyExists => ("already_exists", StatusCode::CONFLICT),
        Code::PermissionDenied => ("permission_denied", StatusCode::FORBIDDEN),
        Code::ResourceExhausted => ("resource_exhausted", StatusCode::TOO_MANY_REQUESTS),
        Code::FailedPrecondition => ("failed_precondition", StatusCode::BAD_REQUEST),
        Code::Aborted => ("aborted", StatusCode::CONFLICT),
        Code::OutOfRange => ("out_of_range", StatusCode::BAD_REQUEST),
        Code::Unimplemented => ("unimplemented", StatusCode::NOT_IMPLEMENTED),
        Code::Internal => ("internal", StatusCode::INTERNAL_SERVER_ERROR),
        Code::Unavailable => ("unavailable", StatusCode::SERVICE_UNAVAILABLE),
        Code::DataLoss => ("data_loss", StatusCode::INTERNAL_SERVER_ERROR),
        Code::Unauthenticated => ("unauthenticated", StatusCode::UNAUTHORIZED),
    }
}

fn error_response(status: &Status) -> Response {
    let (code, http_status) = connect_code(status.code());
    let body = serde_json::json!({ "code": code, "message": status.message() });
    let mut response = (
        http_status,
        [(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/json"),
        )],
        body.to_string(),
    )
        .into_response();
    response
        .headers_mut()
        .extend(status.metadata().clone().into_headers());
    response
}
