//! The gRPC API as callers see it, without a broker: each malformed request gets the right
//! status naming the field, tokens limit tenants, and reflection lets generic clients discover
//! the service. The store behind the API is filled by hand.

use crate::common;

use std::time::Duration;

use common::harness::ApiOnly;
use common::*;
use integration_health::api::convert::ms_to_timestamp;
use integration_health::catalog;
use integration_health::config::{sha256, TokenGrant};
use integration_health::event::IntegrationType;
use integration_health::proto;
use integration_health::store::{failure_id, format_failure_id, GroupIdentity};
use serde_json::json;
use tokio_stream::StreamExt;
use tonic::{Code, Request};
use tonic_reflection::pb::v1::server_reflection_client::ServerReflectionClient;
use tonic_reflection::pb::v1::server_reflection_request::MessageRequest;
use tonic_reflection::pb::v1::server_reflection_response::MessageResponse;
use tonic_reflection::pb::v1::ServerReflectionRequest;

fn grants() -> Vec<TokenGrant> {
    let operator = TokenGrant {
        operator: true,
        ..TokenGrant::plain("sre", &["*"])
    };
    let hashed = TokenGrant {
        token_sha256: Some(hex::encode(sha256("hashed-token"))),
        tenants: vec!["acme".into()],
        name: Some("hashed".into()),
        ..TokenGrant::default()
    };
    vec![
        TokenGrant::plain("acme-only", &["acme"]),
        TokenGrant::plain("all-tenants", &["*"]),
        operator,
        hashed,
    ]
}

async fn guarded() -> ApiOnly {
    ApiOnly::start(grants(), NOW).await
}

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

#[tokio::test]
async fn a_call_without_a_token_is_unauthenticated() {
    let served = guarded().await;
    let mut api = served.api.clone();
    let no_token = api.get_overview(overview("acme")).await.unwrap_err();
    assert_eq!(no_token.code(), Code::Unauthenticated);
}

#[tokio::test]
async fn an_unknown_token_is_unauthenticated() {
    let served = guarded().await;
    let mut api = served.api.clone();
    let wrong_token = api
        .get_overview(with_token(overview("acme"), "guess"))
        .await
        .unwrap_err();
    assert_eq!(wrong_token.code(), Code::Unauthenticated);
}

#[tokio::test]
async fn a_token_reads_only_its_tenants() {
    let served = guarded().await;
    let mut api = served.api.clone();
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
}

#[tokio::test]
async fn ingest_status_needs_a_token_too() {
    let served = guarded().await;
    let mut api = served.api.clone();
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

#[tokio::test]
async fn a_malformed_tenant_id_is_invalid() {
    let served = guarded().await;
    let mut api = served.api.clone();
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
}

#[tokio::test]
async fn an_inverted_or_half_range_is_invalid() {
    let served = guarded().await;
    let mut api = served.api.clone();
    let token = "sre";
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
}

#[tokio::test]
async fn an_unknown_integration_type_is_invalid() {
    let served = guarded().await;
    let mut api = served.api.clone();
    let token = "sre";
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
}

#[tokio::test]
async fn a_zero_or_overlong_period_is_invalid() {
    let served = guarded().await;
    let mut api = served.api.clone();
    let token = "sre";
    let zero_period = proto::GetPercentageChangeRequest {
        tenant_id: "acme".into(),
        period: Some(integration_health::proto::Duration {
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
        period: Some(integration_health::proto::Duration {
            // Half the day tier's 400 days is the longest period.
            seconds: 201 * 86_400,
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
}

#[tokio::test]
async fn an_unknown_time_zone_is_invalid() {
    let served = guarded().await;
    let mut api = served.api.clone();
    let token = "sre";
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
}

#[tokio::test]
async fn failures_table_paging_and_filters_are_validated() {
    let served = guarded().await;
    let mut api = served.api.clone();
    let token = "sre";
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
}

#[tokio::test]
async fn a_malformed_failure_id_is_invalid() {
    let served = guarded().await;
    let mut api = served.api.clone();
    let token = "sre";
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

#[tokio::test]
async fn an_unknown_failure_is_not_found() {
    let served = guarded().await;
    let mut api = served.api.clone();
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
}

fn failing_event() -> serde_json::Value {
    json!({
        "event_id": "e-1", "tenant_id": "acme", "occurred_at": NOW - HOUR,
        "integration_type": "custom_node", "integration_id": "node-1",
        "integration_name": "CRM lookup", "outcome": "failure", "status_code": 404
    })
}

fn range(start: i64, end: i64) -> Option<proto::TimeRange> {
    Some(proto::TimeRange {
        start: Some(ms_to_timestamp(start)),
        end: Some(ms_to_timestamp(end)),
    })
}

#[tokio::test]
async fn ranges_reaching_far_past_retention_or_now_are_clamped() {
    let served = guarded().await;
    served.apply(0, &[failing_event()]);
    let mut api = served.api.clone();
    let year_9999 = 253_402_300_799_000;
    let trends = proto::GetTrendsRequest {
        tenant_id: "acme".into(),
        granularity: proto::Granularity::Hour as i32,
        range: range(0, year_9999),
        ..Default::default()
    };
    let answer = api
        .get_trends(with_token(trends, "sre"))
        .await
        .expect("clamped, not refused")
        .into_inner();
    // The hour tier starts at the UTC midnight 62 days back; the series ends an hour from now.
    let retention_hours = 63 * 24 + 2;
    assert!(answer
        .series
        .iter()
        .all(|s| s.points.len() <= retention_hours));
    let row = api
        .list_failures(with_token(
            proto::ListFailuresRequest {
                tenant_id: "acme".into(),
                ..Default::default()
            },
            "sre",
        ))
        .await
        .expect("table")
        .into_inner()
        .failures
        .remove(0);
    let details = proto::GetFailureDetailsRequest {
        allow_partial: false,
        tenant_id: "acme".into(),
        failure_id: row.failure_id,
        range: range(NOW - DAY, year_9999),
    };
    let answer = api
        .get_failure_details(with_token(details, "sre"))
        .await
        .expect("clamped, not refused")
        .into_inner();
    assert!(
        answer.hourly_trend.len() <= 26,
        "{}",
        answer.hourly_trend.len()
    );
    assert_eq!(answer.hourly_trend.iter().map(|p| p.failed).sum::<u64>(), 1);
}

#[tokio::test]
async fn day_trends_near_the_end_of_the_calendar_do_not_panic() {
    let served = guarded().await;
    let mut api = served.api.clone();
    let request = proto::GetTrendsRequest {
        tenant_id: "acme".into(),
        granularity: proto::Granularity::Day as i32,
        time_zone: "Asia/Tokyo".into(),
        range: range(253_402_000_000_000, 253_402_300_799_000),
        ..Default::default()
    };
    let answer = api.get_trends(with_token(request, "sre")).await;
    assert!(answer.is_ok(), "{answer:?}");
}

#[tokio::test]
async fn timestamps_outside_years_1970_to_9999_are_invalid() {
    let served = guarded().await;
    let mut api = served.api.clone();
    for (start, end) in [(-DAY, NOW), (NOW, 8_210_266_876_799_000)] {
        let request = proto::GetOverviewRequest {
            tenant_id: "acme".into(),
            range: range(start, end),
            ..Default::default()
        };
        expect_invalid(api.get_overview(with_token(request, "sre")).await, "range").await;
    }
}

#[tokio::test]
async fn an_oversized_string_is_refused_without_echoing_it() {
    let served = guarded().await;
    let mut api = served.api.clone();
    let zone = proto::GetTrendsRequest {
        tenant_id: "acme".into(),
        time_zone: "Z".repeat(60_000),
        ..Default::default()
    };
    let status = api.get_trends(with_token(zone, "sre")).await.unwrap_err();
    assert_eq!(status.code(), Code::InvalidArgument);
    assert!(status.message().contains("time_zone"));
    assert!(status.message().len() < 200, "{}", status.message().len());
    let unknown_zone = proto::GetTrendsRequest {
        tenant_id: "acme".into(),
        time_zone: "Q".repeat(63),
        ..Default::default()
    };
    let status = api
        .get_trends(with_token(unknown_zone, "sre"))
        .await
        .unwrap_err();
    assert!(status.message().len() < 200, "{}", status.message());
}

#[tokio::test]
async fn a_request_larger_than_64_kib_is_refused_and_the_service_still_answers() {
    let served = guarded().await;
    let mut api = served.api.clone();
    let request = overview(&"t".repeat(4 << 20));
    let status = api
        .get_overview(with_token(request, "sre"))
        .await
        .unwrap_err();
    assert_ne!(status.code(), Code::Ok);
    assert!(api
        .get_overview(with_token(overview("acme"), "sre"))
        .await
        .is_ok());
}

#[tokio::test]
async fn reflection_needs_a_token_and_lists_the_service_and_health_only() {
    let served = guarded().await;
    let addr = served.addr;
    let channel = channel(addr).await;
    let mut reflection = ServerReflectionClient::new(channel);
    let request = || ServerReflectionRequest {
        host: String::new(),
        message_request: Some(MessageRequest::ListServices(String::new())),
    };
    let anonymous = reflection
        .server_reflection_info(tokio_stream::iter(vec![request()]))
        .await
        .unwrap_err();
    assert_eq!(anonymous.code(), Code::Unauthenticated);
    let mut answers = reflection
        .server_reflection_info(with_token(tokio_stream::iter(vec![request()]), "sre"))
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
    assert!(
        !names.iter().any(|n| n.contains("Peer")),
        "the replicas' service is not listed: {names:?}"
    );
}

#[tokio::test]
async fn a_failure_without_a_message_is_named_from_the_catalog_and_keyed_by_its_own_fields() {
    let served = ApiOnly::start(Vec::new(), NOW).await;
    let event = json!({
        "event_id": "e-1", "tenant_id": "acme", "occurred_at": NOW - HOUR,
        "integration_type": "custom_node", "integration_id": "node-1",
        "integration_name": "CRM lookup", "outcome": "failure", "status_code": 404,
        "flow_id": "f1"
    });
    served.apply(0, &[event]);
    let mut api = served.api.clone();
    let page = failures_page(&mut api, "acme").await;
    let row = &page.failures[0];
    assert_eq!(row.failure_description, catalog::name_of(404));
    let expected_id = failure_id(
        "acme",
        &GroupIdentity {
            integration_type: IntegrationType::CustomNode,
            integration_id: "node-1",
            service_id: "",
            flow_id: "f1",
            status_code: 404,
            description: "",
        },
    );
    assert_eq!(row.failure_id, format_failure_id(expected_id));
    let details = api
        .get_failure_details(proto::GetFailureDetailsRequest {
            tenant_id: "acme".into(),
            failure_id: row.failure_id.clone(),
            ..Default::default()
        })
        .await
        .expect("details")
        .into_inner();
    assert_eq!(
        details.recent_samples[0].error_message,
        catalog::name_of(404)
    );
}

#[tokio::test]
async fn queries_answer_while_the_api_is_otherwise_idle() {
    let served = ApiOnly::start(Vec::new(), NOW).await;
    let mut api = served.api.clone();
    let answer = tokio::time::timeout(
        Duration::from_secs(5),
        api.get_overview(proto::GetOverviewRequest {
            tenant_id: "nobody".into(),
            ..Default::default()
        }),
    )
    .await
    .expect("answers in time")
    .expect("ok")
    .into_inner();
    assert!(answer
        .types
        .iter()
        .all(|t| t.failed == 0 && t.succeeded == 0));
}

#[tokio::test]
async fn a_hashed_token_is_accepted_for_its_tenants() {
    let served = guarded().await;
    let mut api = served.api.clone();
    assert!(api
        .get_overview(with_token(overview("acme"), "hashed-token"))
        .await
        .is_ok());
    let other = api
        .get_overview(with_token(overview("globex"), "hashed-token"))
        .await
        .unwrap_err();
    assert_eq!(other.code(), Code::PermissionDenied);
}

#[tokio::test]
async fn ingest_status_needs_an_operator_token() {
    let served = guarded().await;
    let mut api = served.api.clone();
    let denied = api
        .get_ingest_status(with_token(proto::GetIngestStatusRequest {}, "all-tenants"))
        .await
        .unwrap_err();
    assert_eq!(denied.code(), Code::PermissionDenied);
    assert!(api
        .get_ingest_status(with_token(proto::GetIngestStatusRequest {}, "sre"))
        .await
        .is_ok());
}

#[tokio::test]
async fn a_caller_over_its_rate_is_told_to_slow_down() {
    let limits = integration_health::api::ApiLimits {
        rate_per_caller: std::num::NonZeroU32::new(2),
        ..Default::default()
    };
    let served = ApiOnly::start_limited(limits, NOW).await;
    let mut api = served.api.clone();
    let mut codes = Vec::new();
    for _ in 0..5 {
        let answer = api.get_overview(overview("acme")).await;
        codes.push(answer.map_or_else(|s| s.code(), |_| Code::Ok));
    }
    assert_eq!(&codes[..2], [Code::Ok, Code::Ok]);
    assert!(codes.contains(&Code::ResourceExhausted), "{codes:?}");
}

#[tokio::test]
async fn padding_the_token_does_not_make_a_new_caller() {
    let limits = integration_health::api::ApiLimits {
        rate_per_caller: std::num::NonZeroU32::new(2),
        ..Default::default()
    };
    let tokens = vec![TokenGrant::plain("tok", &["acme"])];
    let served = ApiOnly::serve(tokens, NOW, None, limits).await;
    let mut api = served.api.clone();
    let mut passed = 0;
    for padding in 0..20 {
        let mut request = tonic::Request::new(overview("acme"));
        let header = format!("Bearer tok{}", " ".repeat(padding));
        request
            .metadata_mut()
            .insert("authorization", header.parse().expect("header"));
        passed += usize::from(api.get_overview(request).await.is_ok());
    }
    assert!(passed <= 3, "{passed} of 20 got through a limit of 2/s");
}

#[tokio::test]
async fn watch_streams_are_capped_per_token_and_in_all() {
    let limits = integration_health::api::ApiLimits {
        watches: integration_health::api::WatchLimits {
            total: 3,
            per_caller: 2,
            per_peer: 3,
        },
        ..Default::default()
    };
    let tokens = vec![
        TokenGrant::plain("first", &["*"]),
        TokenGrant::plain("second", &["*"]),
    ];
    let served = ApiOnly::serve(tokens, NOW, None, limits).await;
    let mut api = served.api.clone();
    let watch = |token: &str| {
        with_token(
            proto::WatchTenantRequest {
                tenant_id: "acme".into(),
                ..Default::default()
            },
            token,
        )
    };
    let first_a = api.watch_tenant(watch("first")).await.expect("1st");
    let _first_b = api.watch_tenant(watch("first")).await.expect("2nd");
    let per_token = api.watch_tenant(watch("first")).await.unwrap_err();
    assert_eq!(per_token.code(), Code::ResourceExhausted);
    let _second_a = api
        .watch_tenant(watch("second"))
        .await
        .expect("another token");
    let in_all = api.watch_tenant(watch("second")).await.unwrap_err();
    assert_eq!(in_all.code(), Code::ResourceExhausted);
    assert!(
        in_all.message().contains("3 watch streams"),
        "{}",
        in_all.message()
    );
    // A closed stream gives its place back.
    drop(first_a);
    wait_until(
        "the closed stream is given back",
        std::time::Duration::from_secs(10),
        || {
            let mut api = api.clone();
            let request = watch("second");
            async move { api.watch_tenant(request).await.is_ok() }
        },
    )
    .await;
}

/// Sends bytes as they are, as a gRPC request body; decodes the answer as raw bytes.
#[derive(Default, Clone, Copy)]
struct RawBytes;

impl tonic::codec::Codec for RawBytes {
    type Encode = Vec<u8>;
    type Decode = Vec<u8>;
    type Encoder = RawBytes;
    type Decoder = RawBytes;

    fn encoder(&mut self) -> Self::Encoder {
        RawBytes
    }

    fn decoder(&mut self) -> Self::Decoder {
        RawBytes
    }
}

impl tonic::codec::Encoder for RawBytes {
    type Item = Vec<u8>;
    type Error = tonic::Status;

    fn encode(
        &mut self,
        item: Vec<u8>,
        buf: &mut tonic::codec::EncodeBuf<'_>,
    ) -> Result<(), tonic::Status> {
        bytes::BufMut::put_slice(buf, &item);
        Ok(())
    }
}

impl tonic::codec::Decoder for RawBytes {
    type Item = Vec<u8>;
    type Error = tonic::Status;

    fn decode(
        &mut self,
        buf: &mut tonic::codec::DecodeBuf<'_>,
    ) -> Result<Option<Vec<u8>>, tonic::Status> {
        let len = bytes::Buf::remaining(buf);
        Ok(Some(bytes::Buf::copy_to_bytes(buf, len).to_vec()))
    }
}

#[tokio::test]
async fn a_body_that_is_not_protobuf_is_the_callers_error() {
    let served = ApiOnly::start(Vec::new(), NOW).await;
    let channel = channel(served.addr).await;
    let mut grpc = tonic::client::Grpc::new(channel);
    grpc.ready().await.expect("ready");
    let path = http::uri::PathAndQuery::from_static(
        "/integration_health.v1.IntegrationHealth/GetOverview",
    );
    // Field 1 claims 100 bytes of string and ends after 2.
    let broken = vec![0x0a, 100, b'a', b'c'];
    let answer = grpc
        .unary(tonic::Request::new(broken), path, RawBytes)
        .await
        .unwrap_err();
    assert_eq!(answer.code(), Code::InvalidArgument, "{}", answer.message());
}
