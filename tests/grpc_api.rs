//! The gRPC surface on port 0: each kind of bad request gets its status, tokens limit tenants,
//! and reflection lets generic clients discover the service.

mod common;

use std::sync::Arc;
use std::time::Duration;

use common::*;
use integration_health::api::ms_to_timestamp;
use integration_health::clock::ManualClock;
use integration_health::config::TokenGrant;
use integration_health::embedded::EmbeddedKafka;
use integration_health::proto::{self, integration_health_client::IntegrationHealthClient};
use integration_health::server;
use tokio_stream::StreamExt;
use tokio_util::sync::CancellationToken;
use tonic::transport::Channel;
use tonic::{Code, Request};
use tonic_reflection::pb::v1::server_reflection_client::ServerReflectionClient;
use tonic_reflection::pb::v1::server_reflection_request::MessageRequest;
use tonic_reflection::pb::v1::server_reflection_response::MessageResponse;
use tonic_reflection::pb::v1::ServerReflectionRequest;

const TOPIC: &str = "api-events";

fn with_token<T>(message: T, token: &str) -> Request<T> {
    let mut request = Request::new(message);
    let value = format!("Bearer {token}").parse().expect("header value");
    request.metadata_mut().insert("authorization", value);
    request
}

fn overview(tenant: &str) -> proto::GetOverviewRequest {
    proto::GetOverviewRequest {
        tenant_id: tenant.into(),
        ..Default::default()
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_requests_get_the_right_status_and_tokens_limit_tenants() {
    let kafka = EmbeddedKafka::start(1).expect("mock cluster");
    kafka.create_topic(TOPIC, 1).expect("topic");
    let bootstrap = kafka.bootstrap_servers();
    let mut config = test_config(&bootstrap, TOPIC, "api");
    config.tokens = vec![
        TokenGrant {
            token: "acme-only".into(),
            tenants: vec!["acme".into()],
        },
        TokenGrant {
            token: "sre".into(),
            tenants: vec!["*".into()],
        },
    ];
    let shutdown = CancellationToken::new();
    let service = server::start(&config, Arc::new(ManualClock::new(NOW)), shutdown.clone())
        .await
        .expect("service starts");
    let mut api = client(service.grpc_addr).await;

    check_auth(&mut api).await;
    check_invalid_arguments(&mut api).await;
    check_not_found_and_too_large(&mut api).await;
    check_reflection(service.grpc_addr).await;

    shutdown.cancel();
    tokio::time::timeout(Duration::from_secs(30), service.wait())
        .await
        .expect("stops in time")
        .expect("clean stop");
    drop(kafka);
}

async fn check_auth(api: &mut IntegrationHealthClient<Channel>) {
    let no_token = api.get_overview(overview("acme")).await.unwrap_err();
    assert_eq!(no_token.code(), Code::Unauthenticated);
    let wrong_token = api
        .get_overview(with_token(overview("acme"), "guess"))
        .await
        .unwrap_err();
    assert_eq!(wrong_token.code(), Code::Unauthenticated);
    let other_tenant = api
        .get_overview(with_token(overview("globex"), "acme-only"))
        .await
        .unwrap_err();
    assert_eq!(other_tenant.code(), Code::PermissionDenied);
    assert!(other_tenant.message().contains("globex"));
    assert!(api
        .get_overview(with_token(overview("acme"), "acme-only"))
        .await
        .is_ok());
    assert!(api
        .get_overview(with_token(overview("globex"), "sre"))
        .await
        .is_ok());
    let status = api
        .get_ingest_status(proto::GetIngestStatusRequest {})
        .await
        .unwrap_err();
    assert_eq!(status.code(), Code::Unauthenticated);
}

async fn expect_invalid<T: std::fmt::Debug>(
    result: Result<tonic::Response<T>, tonic::Status>,
    mentions: &str,
) {
    let status = result.expect_err("request should be refused");
    assert_eq!(status.code(), Code::InvalidArgument, "{}", status.message());
    assert!(
        status.message().contains(mentions),
        "{:?} should mention {mentions:?}",
        status.message()
    );
}

async fn check_invalid_arguments(api: &mut IntegrationHealthClient<Channel>) {
    let token = "sre";
    expect_invalid(
        api.get_overview(with_token(overview("has space"), token))
            .await,
        "tenant_id",
    )
    .await;
    expect_invalid(
        api.get_overview(with_token(overview(""), token)).await,
        "tenant_id",
    )
    .await;
    let inverted = proto::GetOverviewRequest {
        tenant_id: "acme".into(),
        range: Some(proto::TimeRange {
            start: Some(ms_to_timestamp(NOW)),
            end: Some(ms_to_timestamp(NOW - HOUR)),
        }),
        ..Default::default()
    };
    expect_invalid(api.get_overview(with_token(inverted, token)).await, "range").await;
    let half_range = proto::GetOverviewRequest {
        tenant_id: "acme".into(),
        range: Some(proto::TimeRange {
            start: Some(ms_to_timestamp(NOW)),
            end: None,
        }),
        ..Default::default()
    };
    expect_invalid(
        api.get_overview(with_token(half_range, token)).await,
        "range",
    )
    .await;
    let bad_type = proto::GetOverviewRequest {
        tenant_id: "acme".into(),
        integration_types: vec![9],
        ..Default::default()
    };
    expect_invalid(
        api.get_overview(with_token(bad_type, token)).await,
        "integration type",
    )
    .await;
    let zero_period = proto::GetPercentageChangeRequest {
        tenant_id: "acme".into(),
        period: Some(prost_types::Duration {
            seconds: 0,
            nanos: 0,
        }),
        ..Default::default()
    };
    expect_invalid(
        api.get_percentage_change(with_token(zero_period, token))
            .await,
        "period",
    )
    .await;
    let long_period = proto::GetPercentageChangeRequest {
        tenant_id: "acme".into(),
        period: Some(prost_types::Duration {
            seconds: 40 * 86_400,
            nanos: 0,
        }),
        ..Default::default()
    };
    expect_invalid(
        api.get_percentage_change(with_token(long_period, token))
            .await,
        "period",
    )
    .await;
    let bad_zone = proto::GetTrendsRequest {
        tenant_id: "acme".into(),
        time_zone: "Mars/Olympus".into(),
        ..Default::default()
    };
    expect_invalid(
        api.get_trends(with_token(bad_zone, token)).await,
        "time_zone",
    )
    .await;
    let big_page = proto::ListFailuresRequest {
        tenant_id: "acme".into(),
        page_size: 5000,
        ..Default::default()
    };
    expect_invalid(
        api.list_failures(with_token(big_page, token)).await,
        "page_size",
    )
    .await;
    let bad_token = proto::ListFailuresRequest {
        tenant_id: "acme".into(),
        page_token: "not-a-token".into(),
        ..Default::default()
    };
    expect_invalid(
        api.list_failures(with_token(bad_token, token)).await,
        "page_token",
    )
    .await;
    let bad_code = proto::ListFailuresRequest {
        tenant_id: "acme".into(),
        status_code: 42,
        ..Default::default()
    };
    expect_invalid(
        api.list_failures(with_token(bad_code, token)).await,
        "status_code",
    )
    .await;
    let bad_id = proto::GetFailureDetailsRequest {
        tenant_id: "acme".into(),
        failure_id: "xyz".into(),
        ..Default::default()
    };
    expect_invalid(
        api.get_failure_details(with_token(bad_id, token)).await,
        "failure_id",
    )
    .await;
}

async fn check_not_found_and_too_large(api: &mut IntegrationHealthClient<Channel>) {
    let unknown = proto::GetFailureDetailsRequest {
        tenant_id: "acme".into(),
        failure_id: "0123456789abcdef0123456789abcdef".into(),
        ..Default::default()
    };
    let status = api
        .get_failure_details(with_token(unknown, "sre"))
        .await
        .unwrap_err();
    assert_eq!(status.code(), Code::NotFound);
    let huge = proto::GetTrendsRequest {
        tenant_id: "acme".into(),
        granularity: proto::Granularity::Hour as i32,
        range: Some(proto::TimeRange {
            start: Some(ms_to_timestamp(NOW - 3 * 365 * DAY)),
            end: Some(ms_to_timestamp(NOW + 3 * 365 * DAY)),
        }),
        ..Default::default()
    };
    let status = api.get_trends(with_token(huge, "sre")).await.unwrap_err();
    assert_eq!(status.code(), Code::ResourceExhausted);
}

async fn check_reflection(addr: std::net::SocketAddr) {
    let channel = Channel::from_shared(format!("http://{addr}"))
        .expect("uri")
        .connect()
        .await
        .expect("connect");
    let mut reflection = ServerReflectionClient::new(channel);
    let request = ServerReflectionRequest {
        host: String::new(),
        message_request: Some(MessageRequest::ListServices(String::new())),
    };
    let mut answers = reflection
        .server_reflection_info(tokio_stream::iter(vec![request]))
        .await
        .expect("reflection")
        .into_inner();
    let answer = answers
        .next()
        .await
        .expect("one answer")
        .expect("ok answer");
    let Some(MessageResponse::ListServicesResponse(list)) = answer.message_response else {
        panic!("expected a service list");
    };
    let names: Vec<String> = list.service.into_iter().map(|s| s.name).collect();
    assert!(
        names.contains(&"integration_health.v1.IntegrationHealth".to_owned()),
        "{names:?}"
    );
    assert!(
        names.contains(&"grpc.health.v1.Health".to_owned()),
        "{names:?}"
    );
}
