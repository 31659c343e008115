//! Failure issues through Kafka: actions go to the issues topic and come back to every instance,
//! and the state shown follows the lifecycle (acknowledge, resolve, reopen on a new failure,
//! snooze until it expires), the same on every instance and after a restart.

use crate::common;

use std::sync::Arc;
use std::time::Duration;

use common::harness::TestService;
use common::*;
use integration_health::api::convert::ms_to_timestamp;
use integration_health::clock::ManualClock;
use integration_health::config::{Config, TokenGrant};
use integration_health::proto;
use serde_json::json;
use tonic::transport::Channel;
use tonic::{Code, Request};

const TOPIC: &str = "issue-events";
const WRITER: &str = "on-call";
const READER: &str = "viewer";

fn config(bootstrap: &str, group: &str) -> Config {
    let mut config = test_config(bootstrap, TOPIC, group);
    config.tokens = vec![
        TokenGrant {
            operator: true,
            write: true,
            name: Some("ui-backend".into()),
            ..TokenGrant::plain(WRITER, &["*"])
        },
        TokenGrant::plain(READER, &["acme"]),
    ];
    config
}

/// An acknowledgement of `id` for acme.
fn reordering_of(id: &str) -> proto::UpdateIssueRequest {
    proto::UpdateIssueRequest {
        tenant_id: "acme".into(),
        failure_id: id.to_owned(),
        action: proto::IssueAction::Acknowledge as i32,
        ..Default::default()
    }
}

fn authorized<T>(message: T, token: &str) -> Request<T> {
    let mut request = Request::new(message);
    let value = format!("Bearer {token}").parse().expect("header");
    request.metadata_mut().insert("authorization", value);
    request
}

fn failure(id: &str, at: i64) -> Message {
    let event = json!({
        "event_id": id, "tenant_id": "acme", "occurred_at": at,
        "integration_type": "outbound_webhook", "integration_id": "owh-crm",
        "integration_name": "CRM push", "outcome": "failure", "status_code": 503,
        "error_message": "CRM answered 503",
    });
    Message {
        key: "acme".into(),
        payload: serde_json::to_vec(&event).expect("json"),
    }
}

/// The only issue of the tenant, once the instance has `events` applied and is ready.
async fn the_issue(api: &Api) -> proto::FailureGroup {
    let mut api = api.clone();
    let listed = api
        .list_issues(authorized(
            proto::ListIssuesRequest {
                tenant_id: "acme".into(),
                ..Default::default()
            },
            READER,
        ))
        .await
        .expect("issues")
        .into_inner();
    assert_eq!(listed.issues.len(), 1, "one failure group");
    listed.issues[0].clone()
}

fn state_of(group: &proto::FailureGroup) -> proto::IssueState {
    let issue = group.issue.as_ref().expect("the group carries its issue");
    proto::IssueState::try_from(issue.state).expect("a state")
}

async fn act(
    api: &Api,
    failure_id: &str,
    action: proto::IssueAction,
    snooze_until: Option<i64>,
    token: &str,
) -> Result<proto::FailureGroup, tonic::Status> {
    let request = proto::UpdateIssueRequest {
        tenant_id: "acme".into(),
        failure_id: failure_id.to_owned(),
        action: action as i32,
        actor: "ana@example.com".into(),
        note: format!("{action:?} from the test"),
        snooze_until: snooze_until.map(ms_to_timestamp),
    };
    let answer = api.clone().update_issue(authorized(request, token)).await?;
    Ok(answer.into_inner().issue.expect("the issue"))
}

async fn wait_ready(service: &TestService, applied: u64) {
    let http = service.service.http_addr;
    wait_until(
        "ready with the issues topic read",
        Duration::from_secs(60),
        || async move { http_get(http, "/readyz").await.0 == 200 },
    )
    .await;
    wait_until("events applied", Duration::from_secs(60), || {
        let mut api = service.api.clone();
        async move {
            let status = api
                .get_ingest_status(authorized(proto::GetIngestStatusRequest {}, WRITER))
                .await;
            status.is_ok_and(|s| seen(&s.into_inner()) == applied)
        }
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_issue_lives_through_kafka_on_every_instance() {
    let (_kafka, bootstrap) = kafka_with_topic(TOPIC, 2);
    let clock = Arc::new(ManualClock::new(NOW));
    let service = TestService::start(&config(&bootstrap, "issues-a"), clock.clone()).await;
    let producer = producer(&bootstrap);
    publish(
        &producer,
        TOPIC,
        &[failure("f1", NOW - 2 * HOUR), failure("f2", NOW - HOUR)],
    )
    .await;
    wait_ready(&service, 2).await;
    let api = service.api.clone();

    let open = the_issue(&api).await;
    assert_eq!(state_of(&open), proto::IssueState::Open);
    let id = open.failure_id.clone();

    let refused = act(&api, &id, proto::IssueAction::Acknowledge, None, READER).await;
    assert_eq!(
        refused.expect_err("no write grant").code(),
        Code::PermissionDenied
    );

    let acked = act(&api, &id, proto::IssueAction::Acknowledge, None, WRITER)
        .await
        .expect("ack");
    assert_eq!(state_of(&acked), proto::IssueState::Acknowledged);
    let issue = acked.issue.as_ref().expect("issue");
    assert_eq!(
        (issue.actor.as_str(), issue.note.as_str()),
        ("ana@example.com", "Acknowledge from the test")
    );
    // The actor is what the caller typed; the grant that acted, by its name, is what the
    // service vouches for; no bit of the token's hash reaches a reader.
    assert_eq!(issue.actor_grant, "ui-backend");
    assert_eq!(issue.actor_token, "");
    let listed = the_issue(&api).await;
    let seen = listed.issue.as_ref().expect("issue");
    assert_eq!(
        (seen.actor_grant.as_str(), seen.actor_token.as_str()),
        ("ui-backend", "")
    );

    clock.advance(60_000);
    let resolved = act(&api, &id, proto::IssueAction::Resolve, None, WRITER)
        .await
        .expect("resolve");
    assert_eq!(state_of(&resolved), proto::IssueState::Resolved);
    assert!(!resolved.issue.expect("issue").auto_resolved);

    // A failure after the resolve reopens it.
    clock.advance(60_000);
    publish(&producer, TOPIC, &[failure("f3", NOW + 90_000)]).await;
    wait_ready(&service, 3).await;
    assert_eq!(
        state_of(&the_issue(&api).await),
        proto::IssueState::Reopened
    );

    // A snooze holds until it ends; then the issue is back.
    let until = NOW + 3 * HOUR;
    let snoozed = act(&api, &id, proto::IssueAction::Snooze, Some(until), WRITER)
        .await
        .expect("snooze");
    assert_eq!(state_of(&snoozed), proto::IssueState::Snoozed);
    clock.set(until + 60_000);
    assert_eq!(
        state_of(&the_issue(&api).await),
        proto::IssueState::Reopened
    );

    // A day without failures resolves it on its own.
    clock.set(NOW + 90_000 + 25 * HOUR);
    let quiet = the_issue(&api).await;
    assert_eq!(state_of(&quiet), proto::IssueState::Resolved);
    assert!(quiet.issue.expect("issue").auto_resolved);

    // Another instance, and this one restarted, read the same actions from the topic.
    let other = TestService::start(&config(&bootstrap, "issues-b"), clock.clone()).await;
    wait_ready(&other, 3).await;
    assert_eq!(
        the_issue(&other.api).await.issue,
        the_issue(&api).await.issue
    );
    service.stop().await;
    let restarted = TestService::start(&config(&bootstrap, "issues-a"), clock.clone()).await;
    wait_ready(&restarted, 3).await;
    assert_eq!(
        the_issue(&restarted.api).await.issue,
        the_issue(&other.api).await.issue
    );

    // The failures table and the details show the same state.
    let mut api = restarted.api.clone();
    let details = api
        .get_failure_details(authorized(
            proto::GetFailureDetailsRequest {
                tenant_id: "acme".into(),
                failure_id: id.clone(),
                ..Default::default()
            },
            READER,
        ))
        .await
        .expect("details")
        .into_inner();
    assert_eq!(
        details.failure.expect("group").issue,
        the_issue(&api).await.issue
    );
    other.stop().await;
    restarted.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_actions_are_refused_with_the_field_named() {
    let (_kafka, bootstrap) = kafka_with_topic(TOPIC, 1);
    let service = TestService::start_at(&config(&bootstrap, "issues-c"), NOW).await;
    publish(&producer(&bootstrap), TOPIC, &[failure("g1", NOW - HOUR)]).await;
    wait_ready(&service, 1).await;
    let api = service.api.clone();
    let id = the_issue(&api).await.failure_id;
    let past = act(&api, &id, proto::IssueAction::Snooze, Some(NOW - 1), WRITER).await;
    assert!(past
        .expect_err("a snooze into the past")
        .message()
        .contains("snooze_until"));
    let unknown = act(
        &api,
        &"0".repeat(32),
        proto::IssueAction::Resolve,
        None,
        WRITER,
    )
    .await;
    assert_eq!(unknown.expect_err("no such group").code(), Code::NotFound);
    let nothing = act(&api, &id, proto::IssueAction::Unspecified, None, WRITER).await;
    assert_eq!(
        nothing.expect_err("no action").code(),
        Code::InvalidArgument
    );
    let reordering = proto::UpdateIssueRequest {
        tenant_id: "acme".into(),
        failure_id: id.clone(),
        action: proto::IssueAction::Acknowledge as i32,
        actor: "admin\u{202e}moc.elpmaxe@ana".into(),
        ..Default::default()
    };
    let refused = api
        .clone()
        .update_issue(authorized(reordering, WRITER))
        .await
        .expect_err("a bidirectional override in the actor");
    assert_eq!(refused.code(), Code::InvalidArgument);
    assert!(refused.message().contains("actor"), "{}", refused.message());
    // A zero-width space would make "ana" and "a\u{200b}na" two names that look alike.
    let hidden = proto::UpdateIssueRequest {
        actor: "a\u{200b}na".into(),
        ..reordering_of(&id)
    };
    let refused = api
        .clone()
        .update_issue(authorized(hidden, WRITER))
        .await
        .expect_err("a format character in the actor");
    assert_eq!(refused.code(), Code::InvalidArgument);
    assert!(
        refused.message().contains("format"),
        "{}",
        refused.message()
    );
    service.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_action_survives_sigkill_of_the_instance_that_took_it() {
    use integration_health::clock::{Clock, SystemClock};
    let (_kafka, bootstrap) = kafka_with_topic(TOPIC, 2);
    let dir = tempfile::tempdir().expect("temp dir");
    let (grpc, http) = (free_port(), free_port());
    let spawn = || {
        let flags = format!(
            "--brokers {bootstrap} --topic {TOPIC} --group killed --grpc-addr 127.0.0.1:{grpc} \
             --http-addr 127.0.0.1:{http} --state-dir {}",
            dir.path().join("state").display()
        );
        let args: Vec<String> = flags.split_whitespace().map(str::to_owned).collect();
        serve_binary(&args, &[], &dir.path().join("service.log"))
    };
    let now = SystemClock.now_ms();
    publish(
        &producer(&bootstrap),
        TOPIC,
        &[failure("k1", now - HOUR), failure("k2", now - 60_000)],
    )
    .await;
    let mut service = spawn();
    let api = wait_serving(grpc, http).await;
    let id = issue_once_applied(&api).await.failure_id;
    let acked = act(&api, &id, proto::IssueAction::Acknowledge, None, WRITER)
        .await
        .expect("ack on an open API");
    assert_eq!(state_of(&acked), proto::IssueState::Acknowledged);
    service.0.kill().expect("SIGKILL");
    service.0.wait().expect("reaped");

    let _service = spawn();
    let api = wait_serving(grpc, http).await;
    let after = issue_once_applied(&api).await;
    assert_eq!(
        after.issue, acked.issue,
        "the action came back from the topic"
    );
}

/// A client once the binary answers gRPC and `/readyz` (the issues topic read).
async fn wait_serving(grpc: u16, http: u16) -> Api {
    let http_addr: std::net::SocketAddr = format!("127.0.0.1:{http}").parse().expect("addr");
    wait_until(
        "the binary is ready",
        Duration::from_secs(60),
        || async move {
            tokio::net::TcpStream::connect(http_addr).await.is_ok()
                && http_get(http_addr, "/readyz").await.0 == 200
        },
    )
    .await;
    let channel = Channel::from_shared(format!("http://127.0.0.1:{grpc}"))
        .expect("uri")
        .connect()
        .await
        .expect("gRPC up");
    api_over(channel, None)
}

/// The tenant's one issue, once both failures are counted.
async fn issue_once_applied(api: &Api) -> proto::FailureGroup {
    wait_until("both failures applied", Duration::from_secs(60), || {
        let mut api = api.clone();
        async move {
            api.get_ingest_status(proto::GetIngestStatusRequest {})
                .await
                .is_ok_and(|s| seen(&s.into_inner()) >= 2)
        }
    })
    .await;
    the_issue(api).await
}

/// The next update of a watch, within 10 s.
async fn next(updates: &mut tonic::Streaming<proto::TenantUpdate>) -> proto::TenantUpdate {
    tokio::time::timeout(Duration::from_secs(10), updates.message())
        .await
        .expect("an update in time")
        .expect("the stream")
        .expect("an update")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_issue_action_moves_the_tenants_live_feed() {
    let (_kafka, bootstrap) = kafka_with_topic(TOPIC, 1);
    let service = TestService::start_at(&config(&bootstrap, "issues-watch"), NOW).await;
    publish(&producer(&bootstrap), TOPIC, &[failure("w1", NOW - HOUR)]).await;
    wait_ready(&service, 1).await;
    let api = service.api.clone();
    let id = the_issue(&api).await.failure_id;
    let request = proto::WatchTenantRequest {
        tenant_id: "acme".into(),
        min_interval: Some(proto::Duration {
            seconds: 0,
            nanos: 100_000_000,
        }),
    };
    let mut updates = api
        .clone()
        .watch_tenant(authorized(request, READER))
        .await
        .expect("watch")
        .into_inner();
    let first = next(&mut updates).await;
    assert_eq!(first.events, 1);

    // No event arrives; the acknowledgement alone moves the feed, for the failures table.
    act(&api, &id, proto::IssueAction::Acknowledge, None, WRITER)
        .await
        .expect("acknowledged");
    let acted = next(&mut updates).await;
    assert_eq!(acted.changed_sections, ["failures"]);
    assert_eq!((acted.events, acted.version), (first.events, first.version));
    service.stop().await;
}
