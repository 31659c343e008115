//! Only a replica is treated as one: the forwarding headers from any other caller change
//! nothing (gRPC and Connect, operator and tenant tokens), replicas refuse to start without a
//! peer grant, and the peer service refuses what no query would ask.

use crate::common;

use std::num::NonZeroU32;

use common::harness::{ApiOnly, TestService};
use common::*;
use integration_health::api::{ApiLimits, WatchLimits};
use integration_health::config::TokenGrant;
use integration_health::proto;
use integration_health::proto::integration_health_peer_client::IntegrationHealthPeerClient;
use integration_health::testkit::overview_parts;
use tonic::{Code, Request};

const FORWARDED: &str = "ih-forwarded";
const ON_BEHALF_OF: &str = "ih-on-behalf-of";
const CALLS: usize = 20;
const RATE: u32 = 5;

fn grants() -> Vec<TokenGrant> {
    vec![
        TokenGrant {
            operator: true,
            ..TokenGrant::plain("sre", &["*"])
        },
        TokenGrant::plain("acme-only", &["acme"]),
        TokenGrant {
            peer: true,
            ..TokenGrant::plain("replica", &["*"])
        },
    ]
}

/// The API with a rate of `RATE` calls a second per caller and two watch streams per caller.
async fn limited() -> ApiOnly {
    let limits = ApiLimits {
        rate_per_caller: NonZeroU32::new(RATE),
        watches: WatchLimits {
            total: 100,
            per_caller: 2,
            per_peer: 100,
        },
        ..Default::default()
    };
    ApiOnly::serve(grants(), NOW, None, limits).await
}

/// A request from `token` that claims to have been forwarded by a replica.
fn claiming_forwarded<T>(message: T, token: &str) -> Request<T> {
    let mut request = Request::new(message);
    let metadata = request.metadata_mut();
    let bearer = format!("Bearer {token}").parse().expect("header");
    metadata.insert("authorization", bearer);
    metadata.insert(FORWARDED, "1".parse().expect("header"));
    metadata.insert(ON_BEHALF_OF, "grant:forged".parse().expect("header"));
    request
}

fn overview() -> proto::GetOverviewRequest {
    proto::GetOverviewRequest {
        tenant_id: "acme".into(),
        ..Default::default()
    }
}

/// How many of `CALLS` overviews in a burst `token` gets answered over gRPC.
async fn grpc_answered(served: &ApiOnly, token: &str) -> usize {
    let mut api = served.api.clone();
    let mut answered = 0;
    for _ in 0..CALLS {
        let result = api
            .get_overview(claiming_forwarded(overview(), token))
            .await;
        match result {
            Ok(_) => answered += 1,
            Err(status) => assert_eq!(status.code(), Code::ResourceExhausted, "{status:?}"),
        }
    }
    answered
}

/// How many of `CALLS` overviews in a burst `token` gets answered over Connect/JSON.
async fn connect_answered(served: &ApiOnly, token: &str) -> usize {
    let bearer = format!("Bearer {token}");
    let headers = [
        ("Content-Type", "application/json"),
        ("Connect-Protocol-Version", "1"),
        ("Authorization", bearer.as_str()),
        (FORWARDED, "1"),
        (ON_BEHALF_OF, "grant:forged"),
    ];
    let path = "/integration_health.v1.IntegrationHealth/GetOverview";
    let mut answered = 0;
    for _ in 0..CALLS {
        let body = br#"{"tenantId":"acme"}"#;
        let answer = http_request(served.http_addr, "POST", path, &headers, body).await;
        match answer.status {
            200 => answered += 1,
            status => assert_eq!(status, 429, "{}", String::from_utf8_lossy(&answer.body)),
        }
    }
    answered
}

/// A burst can take the bucket's `RATE` and what refills while it runs, never all of it.
fn limited_burst(answered: usize) -> bool {
    answered >= 1 && answered <= RATE as usize + 2
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_that_claims_to_be_a_replica_is_rate_limited_like_any_caller() {
    for token in ["sre", "acme-only"] {
        let served = limited().await;
        let answered = grpc_answered(&served, token).await;
        assert!(
            limited_burst(answered),
            "gRPC, {token}: {answered} of {CALLS}"
        );
        let served = limited().await;
        let answered = connect_answered(&served, token).await;
        assert!(
            limited_burst(answered),
            "Connect, {token}: {answered} of {CALLS}"
        );
    }
    // The replicas' own grant is what the headers need: its forwarded calls were limited at
    // the replica they came through.
    let served = limited().await;
    assert_eq!(grpc_answered(&served, "replica").await, CALLS);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_that_claims_to_be_a_replica_is_held_to_its_watch_cap() {
    let watch = || proto::WatchTenantRequest {
        tenant_id: "acme".into(),
        ..Default::default()
    };
    for token in ["sre", "acme-only"] {
        let served = limited().await;
        let mut api = served.api.clone();
        let mut open = Vec::new();
        for _ in 0..2 {
            let stream = api.watch_tenant(claiming_forwarded(watch(), token)).await;
            open.push(stream.expect("within the cap"));
        }
        let third = api
            .watch_tenant(claiming_forwarded(watch(), token))
            .await
            .unwrap_err();
        assert_eq!(third.code(), Code::ResourceExhausted, "{token}: {third:?}");
    }
}

#[test]
fn replicas_without_a_peer_grant_do_not_start() {
    let dir = tempfile::tempdir().expect("dir");
    let settings = dir.path().join("settings.toml");
    let tokens = dir.path().join("tokens.toml");
    let digest = hex::encode(integration_health::config::sha256("peer-secret"));
    let replica = "advertise_addr = \"10.0.0.7:50051\"\n";
    let check = |text: String| {
        std::fs::write(&settings, text).expect("settings");
        config_check(&settings)
    };

    let (passed, stderr) = check(replica.to_owned());
    assert!(!passed, "an open API with replicas");
    assert!(stderr.contains("peer_token"), "{stderr}");

    let with_tokens = format!(
        "{replica}peer_token = \"peer-secret\"\ntokens_file = {:?}\n",
        tokens
    );
    let operator =
        format!("[[tokens]]\nname = \"t2\"\ntoken_sha256 = \"{digest}\"\ntenants = [\"*\"]\noperator = true\n");
    std::fs::write(&tokens, operator).expect("tokens");
    let (passed, stderr) = check(with_tokens.clone());
    assert!(!passed, "a peer token granted as an operator only");
    assert!(stderr.contains("lacks peer = true"), "{stderr}");
    assert!(
        stderr.contains(&digest) && stderr.contains("peer = true"),
        "the grant to add: {stderr}"
    );

    let someone_else =
        "[[tokens]]\nname = \"t3\"\ntoken = \"another\"\ntenants = [\"*\"]\npeer = true\n";
    std::fs::write(&tokens, someone_else).expect("tokens");
    let (passed, stderr) = check(with_tokens.clone());
    assert!(!passed, "a peer token no grant names");
    assert!(stderr.contains("no grant names it"), "{stderr}");

    let scoped =
        format!("[[tokens]]\nname = \"t4\"\ntoken_sha256 = \"{digest}\"\ntenants = [\"acme\"]\npeer = true\n");
    std::fs::write(&tokens, scoped).expect("tokens");
    let (passed, stderr) = check(with_tokens.clone());
    assert!(!passed, "a peer grant scoped to one tenant");
    assert!(stderr.contains("every tenant"), "{stderr}");

    let peer = format!(
        "[[tokens]]\nname = \"t5\"\ntoken_sha256 = \"{digest}\"\ntenants = [\"*\"]\npeer = true\n"
    );
    std::fs::write(&tokens, peer).expect("tokens");
    let (passed, stderr) = check(with_tokens.clone());
    assert!(!passed, "the peer token in clear text off loopback");
    assert!(stderr.contains("tls_cert"), "{stderr}");
    let (passed, stderr) = check(with_tokens.replace("10.0.0.7", "127.0.0.1"));
    assert!(passed, "{stderr}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_peer_service_refuses_a_bad_tenant_and_more_parts_than_a_query_plans() {
    let (_kafka, bootstrap) = kafka_with_topic("peered", 2);
    let mut config = test_config(&bootstrap, "peered", "peered");
    let port = free_port();
    let addr = format!("127.0.0.1:{port}");
    config.grpc_addr = addr.parse().expect("addr");
    as_replica(&mut config, &addr);
    let running = TestService::start_at(&config, NOW).await;
    let http = running.service.http_addr;
    wait_until("ready", std::time::Duration::from_secs(60), || async move {
        http_get(http, "/readyz").await.0 == 200
    })
    .await;
    let channel = tonic::transport::Channel::from_shared(format!("http://{addr}"))
        .expect("uri")
        .connect()
        .await
        .expect("connects");
    let mut peer = IntegrationHealthPeerClient::new(channel);
    let ask = |tenant: &str, parts: usize| {
        let (version, parts) = overview_parts(parts, NOW);
        let mut request = Request::new(proto::TenantPartsRequest {
            version,
            tenant_id: tenant.into(),
            partitions: vec![0, 1],
            parts,
        });
        let bearer = format!("Bearer {PEER_TOKEN}").parse().expect("header");
        request.metadata_mut().insert("authorization", bearer);
        request
    };

    let answer = peer
        .get_tenant_parts(ask("acme", 2))
        .await
        .expect("answered");
    assert_eq!(answer.into_inner().partitions.len(), 2);
    let refused = peer.get_tenant_parts(ask("acme", 17)).await.unwrap_err();
    assert_eq!(refused.code(), Code::InvalidArgument, "{refused:?}");
    assert!(
        refused.message().contains("at most 16"),
        "{}",
        refused.message()
    );
    for bad in ["../../x\n", "", &"t".repeat(65)] {
        let refused = peer.get_tenant_parts(ask(bad, 1)).await.unwrap_err();
        assert_eq!(
            refused.code(),
            Code::InvalidArgument,
            "{bad:?}: {refused:?}"
        );
    }
    running.stop().await;
}
