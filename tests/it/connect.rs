//! The Connect/JSON form of the API on the HTTP listener, without a broker: every RPC answers
//! exactly what gRPC answers for the same request, errors carry Connect's code and HTTP status,
//! and tokens hold the same way.

use crate::common;

use common::harness::ApiOnly;
use common::*;
use integration_health::config::TokenGrant;
use integration_health::proto;
use prost::Message as _;
use serde::de::DeserializeOwned;
use serde::Serialize;
use tonic::Request;

const SERVICE: &str = "/integration_health.v1.IntegrationHealth";

fn grants() -> Vec<TokenGrant> {
    let operator = TokenGrant {
        operator: true,
        ..TokenGrant::plain("sre", &["*"])
    };
    vec![TokenGrant::plain("acme-only", &["acme"]), operator]
}

/// The API over a store holding a seeded mix of three tenants' events in two partitions.
async fn filled() -> ApiOnly {
    let served = ApiOnly::start(grants(), NOW).await;
    let generated = generate(5, 3_000, NOW);
    let valid: Vec<serde_json::Value> = generated
        .messages
        .iter()
        .filter(|(kind, _)| *kind == Kind::Valid)
        .map(|(_, m)| serde_json::from_slice(&m.payload).expect("json"))
        .collect();
    let (even, odd): (Vec<_>, Vec<_>) = valid
        .iter()
        .cloned()
        .enumerate()
        .partition(|(i, _)| i % 2 == 0);
    served.apply(0, &even.into_iter().map(|(_, v)| v).collect::<Vec<_>>());
    served.apply(1, &odd.into_iter().map(|(_, v)| v).collect::<Vec<_>>());
    served
}

fn authorized<T>(message: T, token: &str) -> Request<T> {
    let mut request = Request::new(message);
    let value = format!("Bearer {token}").parse().expect("header");
    request.metadata_mut().insert("authorization", value);
    request
}

async fn post_json(served: &ApiOnly, method: &str, body: &[u8], token: Option<&str>) -> HttpAnswer {
    let bearer = token.map(|t| format!("Bearer {t}"));
    let mut headers = vec![
        ("Content-Type", "application/json"),
        ("Connect-Protocol-Version", "1"),
    ];
    if let Some(bearer) = &bearer {
        headers.push(("Authorization", bearer.as_str()));
    }
    http_request(
        served.http_addr,
        "POST",
        &format!("{SERVICE}/{method}"),
        &headers,
        body,
    )
    .await
}

/// Sends `request` as JSON and decodes the JSON answer into the response message.
async fn json_call<Req: Serialize, Resp: DeserializeOwned>(
    served: &ApiOnly,
    method: &str,
    request: &Req,
) -> Resp {
    let body = serde_json::to_vec(request).expect("request as json");
    let answer = post_json(served, method, &body, Some("sre")).await;
    assert_eq!(
        answer.status,
        200,
        "{method}: {}",
        String::from_utf8_lossy(&answer.body)
    );
    assert_eq!(answer.headers["content-type"], "application/json");
    serde_json::from_slice(&answer.body).expect("answer in the proto3 JSON mapping")
}

fn same_type<T>(_: &T, value: T) -> T {
    value
}

/// Asserts that the JSON call and the gRPC call give the same message, and returns it.
macro_rules! same_answer {
    ($served:expr, $method:literal, $rpc:ident, $request:expr) => {{
        let request = $request;
        let over_grpc = $served
            .api
            .clone()
            .$rpc(authorized(request.clone(), "sre"))
            .await
            .expect($method)
            .into_inner();
        let over_json = json_call(&$served, $method, &request).await;
        let over_json = same_type(&over_grpc, over_json);
        assert_eq!(
            over_json, over_grpc,
            "{} differs between JSON and gRPC",
            $method
        );
        over_grpc
    }};
}

#[tokio::test]
async fn every_rpc_answers_over_json_exactly_as_over_grpc() {
    let served = filled().await;
    let range = proto::TimeRange {
        start: Some(integration_health::api::convert::ms_to_timestamp(
            NOW - 20 * DAY,
        )),
        end: Some(integration_health::api::convert::ms_to_timestamp(
            NOW - 2 * DAY,
        )),
    };
    let overview = same_answer!(
        served,
        "GetOverview",
        get_overview,
        proto::GetOverviewRequest {
            tenant_id: "acme".into(),
            range: Some(range),
            ..Default::default()
        }
    );
    assert!(
        overview.types.iter().any(|t| t.failed > 0),
        "the test has data"
    );
    same_answer!(
        served,
        "GetPercentageChange",
        get_percentage_change,
        proto::GetPercentageChangeRequest {
            tenant_id: "acme".into(),
            period: Some(proto::Duration {
                seconds: 7 * 86_400,
                nanos: 0,
            }),
            integration_types: vec![proto::IntegrationType::CustomNode as i32],
            ..Default::default()
        }
    );
    same_answer!(
        served,
        "GetErrorBreakdown",
        get_error_breakdown,
        proto::GetErrorBreakdownRequest {
            tenant_id: "globex".into(),
            ..Default::default()
        }
    );
    same_answer!(
        served,
        "GetTrends",
        get_trends,
        proto::GetTrendsRequest {
            tenant_id: "acme".into(),
            granularity: proto::Granularity::Day as i32,
            time_zone: "America/New_York".into(),
            ..Default::default()
        }
    );
    let first_page = same_answer!(
        served,
        "ListFailures",
        list_failures,
        proto::ListFailuresRequest {
            tenant_id: "acme".into(),
            page_size: 3,
            order_by: proto::FailureOrder::LastSeenDesc as i32,
            ..Default::default()
        }
    );
    same_answer!(
        served,
        "ListFailures",
        list_failures,
        proto::ListFailuresRequest {
            tenant_id: "acme".into(),
            page_size: 3,
            order_by: proto::FailureOrder::LastSeenDesc as i32,
            page_token: first_page.next_page_token.clone(),
            ..Default::default()
        }
    );
    same_answer!(
        served,
        "GetFailureDetails",
        get_failure_details,
        proto::GetFailureDetailsRequest {
            tenant_id: "acme".into(),
            failure_id: first_page.failures[0].failure_id.clone(),
            ..Default::default()
        }
    );
    same_answer!(
        served,
        "ListCommonErrors",
        list_common_errors,
        proto::ListCommonErrorsRequest {
            integration_type: proto::IntegrationType::InboundWebhook as i32,
            ..Default::default()
        }
    );
    let integrations = same_answer!(
        served,
        "ListIntegrations",
        list_integrations,
        proto::ListIntegrationsRequest {
            tenant_id: "acme".into(),
            order_by: proto::IntegrationOrder::FailureRateDesc as i32,
            page_size: 4,
            ..Default::default()
        }
    );
    same_answer!(
        served,
        "GetIntegrationHealth",
        get_integration_health,
        proto::GetIntegrationHealthRequest {
            tenant_id: "acme".into(),
            integration_id: integrations.integrations[0].integration_id.clone(),
            integration_type: integrations.integrations[0].integration_type,
            granularity: proto::Granularity::Hour as i32,
            ..Default::default()
        }
    );
    let tenants = same_answer!(
        served,
        "ListTenants",
        list_tenants,
        proto::ListTenantsRequest::default()
    );
    assert_eq!(tenants.tenants.len(), 3);
    same_answer!(
        served,
        "GetIngestStatus",
        get_ingest_status,
        proto::GetIngestStatusRequest {}
    );
}

#[tokio::test]
async fn json_uses_the_proto3_mapping_that_grpcurl_prints() {
    let served = filled().await;
    let body = br#"{"tenantId":"acme","integrationTypes":["CUSTOM_NODE"]}"#;
    let answer = post_json(&served, "GetOverview", body, Some("sre")).await;
    assert_eq!(answer.status, 200);
    let json: serde_json::Value = serde_json::from_slice(&answer.body).expect("json");
    let row = &json["types"][0];
    assert_eq!(row["integrationType"], "CUSTOM_NODE");
    // 64-bit integers travel as strings, timestamps as RFC 3339.
    assert!(row["failed"].is_string(), "{row}");
    let start = json["effectiveRange"]["start"]
        .as_str()
        .expect("a timestamp");
    assert!(
        chrono::DateTime::parse_from_rfc3339(start).is_ok(),
        "{start}"
    );
    // Z-normalized, with 0, 3, 6 or 9 fractional digits, in every answer that has times.
    for (method, body) in [
        ("GetOverview", &body[..]),
        ("ListFailures", br#"{"tenantId":"acme"}"#),
        ("GetTrends", br#"{"tenantId":"acme","granularity":"DAY"}"#),
        ("ListIntegrations", br#"{"tenantId":"acme"}"#),
    ] {
        let answer = post_json(&served, method, body, Some("sre")).await;
        let json: serde_json::Value = serde_json::from_slice(&answer.body).expect("json");
        let mut times = Vec::new();
        timestamps_in(&json, &mut times);
        assert!(!times.is_empty(), "{method} has timestamps");
        for time in times {
            assert!(follows_the_timestamp_mapping(&time), "{method}: {time}");
        }
    }
    // The original field names are accepted too, as proto3 JSON parsers must.
    let snake = br#"{"tenant_id":"acme","integration_types":["CUSTOM_NODE"]}"#;
    let again = post_json(&served, "GetOverview", snake, Some("sre")).await;
    assert_eq!(again.body, answer.body);
}

/// Every string in `value` that starts like an RFC 3339 date.
fn timestamps_in(value: &serde_json::Value, into: &mut Vec<String>) {
    match value {
        serde_json::Value::String(text) => {
            let b = text.as_bytes();
            if b.len() > 19
                && b[4] == b'-'
                && b[10] == b'T'
                && b[..4].iter().all(u8::is_ascii_digit)
            {
                into.push(text.clone());
            }
        }
        serde_json::Value::Array(items) => items.iter().for_each(|v| timestamps_in(v, into)),
        serde_json::Value::Object(fields) => fields.values().for_each(|v| timestamps_in(v, into)),
        _ => {}
    }
}

/// The proto3 JSON mapping: "Z"-normalized, with 0, 3, 6 or 9 fractional digits.
fn follows_the_timestamp_mapping(text: &str) -> bool {
    let Some(body) = text.strip_suffix('Z') else {
        return false;
    };
    let fraction = body.split_once('.').map_or("", |(_, f)| f);
    chrono::DateTime::parse_from_rfc3339(text).is_ok()
        && [0, 3, 6, 9].contains(&fraction.len())
        && fraction.bytes().all(|b| b.is_ascii_digit())
}

#[tokio::test]
async fn binary_protobuf_bodies_work_too() {
    let served = filled().await;
    let request = proto::GetOverviewRequest {
        tenant_id: "initech".into(),
        ..Default::default()
    };
    let answer = http_request(
        served.http_addr,
        "POST",
        &format!("{SERVICE}/GetOverview"),
        &[
            ("Content-Type", "application/proto"),
            ("Authorization", "Bearer sre"),
        ],
        &request.encode_to_vec(),
    )
    .await;
    assert_eq!(answer.status, 200);
    assert_eq!(answer.headers["content-type"], "application/proto");
    let decoded = proto::GetOverviewResponse::decode(answer.body.as_slice()).expect("protobuf");
    let over_grpc = served
        .api
        .clone()
        .get_overview(authorized(request, "sre"))
        .await
        .expect("grpc")
        .into_inner();
    assert_eq!(decoded, over_grpc);
}

/// (HTTP status, Connect code) of a JSON call.
async fn refusal(
    served: &ApiOnly,
    method: &str,
    body: &[u8],
    token: Option<&str>,
) -> (u16, String) {
    let answer = post_json(served, method, body, token).await;
    let json: serde_json::Value = serde_json::from_slice(&answer.body).unwrap_or_else(|_| {
        panic!(
            "a Connect error body: {:?}",
            String::from_utf8_lossy(&answer.body)
        )
    });
    assert!(
        json["message"].as_str().is_some_and(|m| !m.is_empty()),
        "{json}"
    );
    (
        answer.status,
        json["code"].as_str().unwrap_or_default().to_owned(),
    )
}

/// Method, body, token, and the HTTP status and Connect code expected.
type Refusal<'a> = (&'a str, &'a [u8], Option<&'a str>, u16, &'a str);

#[tokio::test]
async fn each_error_class_has_its_connect_code_and_http_status() {
    let served = filled().await;
    let acme = br#"{"tenantId":"acme"}"#;
    let cases: Vec<Refusal> = vec![
        ("GetOverview", acme, None, 401, "unauthenticated"),
        ("GetOverview", acme, Some("guess"), 401, "unauthenticated"),
        (
            "GetOverview",
            br#"{"tenantId":"globex"}"#,
            Some("acme-only"),
            403,
            "permission_denied",
        ),
        (
            "GetIngestStatus",
            b"{}",
            Some("acme-only"),
            403,
            "permission_denied",
        ),
        (
            "GetOverview",
            br#"{"tenantId":"no spaces"}"#,
            Some("sre"),
            400,
            "invalid_argument",
        ),
        (
            "GetOverview",
            br#"{"tenantId":"#,
            Some("sre"),
            400,
            "invalid_argument",
        ),
        (
            "GetOverview",
            br#"{"tenantId":"acme","colour":"red"}"#,
            Some("sre"),
            400,
            "invalid_argument",
        ),
        (
            "GetTrends",
            br#"{"tenantId":"acme","timeZone":"Mars/Olympus"}"#,
            Some("sre"),
            400,
            "invalid_argument",
        ),
        (
            "GetFailureDetails",
            br#"{"tenantId":"acme","failureId":"0123456789abcdef0123456789abcdef"}"#,
            Some("sre"),
            404,
            "not_found",
        ),
        ("DropTables", b"{}", Some("sre"), 501, "unimplemented"),
    ];
    for (method, body, token, status, code) in cases {
        let got = refusal(&served, method, body, token).await;
        assert_eq!(
            got,
            (status, code.to_owned()),
            "{method} {}",
            String::from_utf8_lossy(body)
        );
    }
}

#[tokio::test]
async fn requests_outside_the_protocol_are_refused_plainly() {
    let served = filled().await;
    let path = format!("{SERVICE}/GetOverview");
    let text = http_request(
        served.http_addr,
        "POST",
        &path,
        &[("Content-Type", "text/plain")],
        b"acme",
    )
    .await;
    assert_eq!(text.status, 415);
    assert!(text.headers["accept-post"].contains("application/json"));
    let get = http_request(served.http_addr, "GET", &path, &[], b"").await;
    assert_eq!(get.status, 405);
    let huge = vec![b' '; 65 * 1024];
    let (status, code) = refusal(&served, "GetOverview", &huge, Some("sre")).await;
    assert_eq!((status, code.as_str()), (429, "resource_exhausted"));
    let version = http_request(
        served.http_addr,
        "POST",
        &path,
        &[
            ("Content-Type", "application/json"),
            ("Connect-Protocol-Version", "2"),
        ],
        b"{}",
    )
    .await;
    assert_eq!(version.status, 400);
}

#[tokio::test]
async fn a_deadline_from_the_caller_is_kept() {
    let served = filled().await;
    let answer = http_request(
        served.http_addr,
        "POST",
        &format!("{SERVICE}/GetTrends"),
        &[
            ("Content-Type", "application/json"),
            ("Authorization", "Bearer sre"),
            ("Connect-Timeout-Ms", "0"),
        ],
        br#"{"tenantId":"acme","granularity":"HOUR"}"#,
    )
    .await;
    let json: serde_json::Value = serde_json::from_slice(&answer.body).expect("json");
    assert_eq!(
        (answer.status, json["code"].as_str()),
        (504, Some("deadline_exceeded"))
    );
}

#[tokio::test]
async fn a_tenant_token_lists_only_its_own_tenants() {
    let served = filled().await;
    let answer = post_json(&served, "ListTenants", b"{}", Some("acme-only")).await;
    assert_eq!(answer.status, 200);
    let listed: proto::ListTenantsResponse = serde_json::from_slice(&answer.body).expect("json");
    let ids: Vec<&str> = listed
        .tenants
        .iter()
        .map(|t| t.tenant_id.as_str())
        .collect();
    assert_eq!(ids, ["acme"]);
}

#[tokio::test]
async fn tenant_totals_match_a_recount() {
    let served = filled().await;
    let generated = generate(5, 3_000, NOW);
    let listed = served
        .api
        .clone()
        .list_tenants(authorized(proto::ListTenantsRequest::default(), "sre"))
        .await
        .expect("list")
        .into_inner();
    assert_tenants_match(&listed, &generated.truth);
    let busiest: Vec<u64> = listed
        .tenants
        .iter()
        .map(|t| t.failed + t.succeeded)
        .collect();
    assert!(busiest.windows(2).all(|w| w[0] >= w[1]), "busiest first");
}

/// A Connect envelope: flags, big-endian length, message.
fn envelope(flags: u8, message: &[u8]) -> Vec<u8> {
    let mut frame = vec![flags];
    frame.extend_from_slice(&(message.len() as u32).to_be_bytes());
    frame.extend_from_slice(message);
    frame
}

/// Every envelope of a streamed body, as (flags, message).
fn envelopes(mut body: &[u8]) -> Vec<(u8, Vec<u8>)> {
    let mut frames = Vec::new();
    while body.len() >= 5 {
        let length = u32::from_be_bytes([body[1], body[2], body[3], body[4]]) as usize;
        frames.push((body[0], body[5..5 + length].to_vec()));
        body = &body[5 + length..];
    }
    assert!(body.is_empty(), "no bytes outside an envelope");
    frames
}

#[tokio::test]
async fn watch_streams_in_connects_enveloped_form() {
    let served = filled().await;
    let request = envelope(0, br#"{"tenantId":"acme","minInterval":"0.100s"}"#);
    let path = format!("{SERVICE}/WatchTenant");
    let headers = [
        ("Content-Type", "application/connect+json"),
        ("Authorization", "Bearer sre"),
    ];
    // The stream stays open; read what arrives in the first second, then hang up.
    let answer = tokio::time::timeout(
        std::time::Duration::from_secs(1),
        http_request(served.http_addr, "POST", &path, &headers, &request),
    )
    .await;
    assert!(
        answer.is_err(),
        "a watch stays open until the client leaves"
    );
    let mut stream = tokio::net::TcpStream::connect(served.http_addr)
        .await
        .expect("connect");
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let head = format!(
        "POST {path} HTTP/1.1\r\nHost: localhost\r\nContent-Type: application/connect+json\r\nAuthorization: Bearer sre\r\nContent-Length: {}\r\n\r\n",
        request.len()
    );
    stream.write_all(head.as_bytes()).await.expect("write");
    stream.write_all(&request).await.expect("write");
    let mut received = Vec::new();
    let mut buffer = [0u8; 4096];
    while !String::from_utf8_lossy(&received).contains("\"version\"") {
        let read =
            tokio::time::timeout(std::time::Duration::from_secs(5), stream.read(&mut buffer))
                .await
                .expect("the first update in time")
                .expect("read");
        assert!(read > 0, "the stream ended early");
        received.extend_from_slice(&buffer[..read]);
    }
    let text = String::from_utf8_lossy(&received);
    assert!(text.starts_with("HTTP/1.1 200"), "{text}");
    assert!(text.contains("application/connect+json"), "{text}");
    let events = generate(5, 3_000, NOW).truth.of("acme").count().to_string();
    assert!(
        text.contains(&format!("\"version\":\"{events}\"")),
        "{text}"
    );

    // A refused stream ends at once with the error in its end-of-stream envelope.
    let refused = http_request(
        served.http_addr,
        "POST",
        &path,
        &[("Content-Type", "application/connect+json")],
        &envelope(0, br#"{"tenantId":"acme"}"#),
    )
    .await;
    assert_eq!(refused.status, 200);
    let frames = envelopes(&refused.body);
    assert_eq!(frames.len(), 1);
    assert_eq!(frames[0].0, 0x02, "end of stream");
    let end: serde_json::Value = serde_json::from_slice(&frames[0].1).expect("json");
    assert_eq!(end["error"]["code"], "unauthenticated");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn get_caller_says_what_a_token_may_do_and_nothing_secret() {
    let writer = TokenGrant {
        name: Some("acme-desk".into()),
        write: true,
        alerts_admin: true,
        ..TokenGrant::plain("acme-writer", &["globex", "acme"])
    };
    let mut tokens = grants();
    tokens.push(writer);
    let served = ApiOnly::start(tokens, NOW).await;
    let caller = |token: &'static str| {
        let mut api = served.api.clone();
        async move {
            api.get_caller(authorized(proto::GetCallerRequest {}, token))
                .await
                .map(|r| r.into_inner())
        }
    };
    let reader = caller("acme-only").await.expect("a reader");
    assert_eq!(reader.tenants, ["acme"]);
    assert!(!reader.open && !reader.all_tenants);
    assert!(!reader.may_write && !reader.alerts_admin && !reader.operator);
    let desk = caller("acme-writer").await.expect("a writer");
    assert_eq!(desk.grant_name, "acme-desk");
    assert_eq!(desk.tenants, ["acme", "globex"], "sorted");
    assert!(desk.may_write && desk.alerts_admin && !desk.operator);
    let sre = caller("sre").await.expect("an operator");
    assert!(sre.all_tenants && sre.operator && sre.tenants.is_empty());
    let unknown = caller("nobody").await.unwrap_err();
    assert_eq!(unknown.code(), tonic::Code::Unauthenticated);

    // Over Connect, the same answer as JSON, with neither the token nor its hash in it.
    let answer = post_json(&served, "GetCaller", b"{}", Some("acme-writer")).await;
    assert_eq!(answer.status, 200);
    let body = String::from_utf8_lossy(&answer.body).into_owned();
    let json: serde_json::Value = serde_json::from_str(&body).expect("json");
    assert_eq!(json["grantName"], "acme-desk");
    assert_eq!(json["mayWrite"], true);
    let digest = hex::encode(integration_health::config::sha256("acme-writer"));
    assert!(
        !body.contains("acme-writer") && !body.contains(&digest),
        "{body}"
    );

    let open = ApiOnly::start(Vec::new(), NOW).await;
    let mut api = open.api.clone();
    let everything = api
        .get_caller(proto::GetCallerRequest {})
        .await
        .expect("open")
        .into_inner();
    assert!(everything.open && everything.all_tenants && everything.may_write);
}
