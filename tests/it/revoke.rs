//! Revoking every token, against the built binary: a tokens file rewritten to `tokens = []`
//! refuses every call within the reload interval, and a rewrite with a grant lets it in
//! again; an empty file is a failed load that keeps the grants in force and is logged once;
//! started with `tokens = []`, the service serves and refuses every call.

use crate::common;
use common::*;

use std::net::SocketAddr;
use std::path::Path;
use std::time::Duration;

use integration_health::config::sha256;
use integration_health::proto;
use tonic::Code;

const TOKEN: &str = "revocable-token";

fn grant(path: &Path) {
    let text = format!(
        "[[tokens]]\nname = \"t6\"\ntoken_sha256 = \"{}\"\ntenants = [\"acme\"]\n",
        hex::encode(sha256(TOKEN))
    );
    std::fs::write(path, text).expect("tokens file");
}

/// The binary on the mock cluster, its tokens from `tokens`; its gRPC address.
async fn serve(
    dir: &Path,
    topic: &str,
) -> (
    Process,
    SocketAddr,
    integration_health::testkit::EmbeddedKafka,
) {
    let (kafka, bootstrap) = kafka_with_topic(topic, 1);
    let grpc: SocketAddr = format!("127.0.0.1:{}", free_port()).parse().expect("addr");
    let config = dir.join("service.toml");
    std::fs::write(
        &config,
        format!(
            "brokers = \"{bootstrap}\"\ntopic = \"{topic}\"\ngroup = \"{topic}\"\n\
             grpc_addr = \"{grpc}\"\nhttp_addr = \"127.0.0.1:0\"\ntokens_file = {:?}\n",
            dir.join("tokens.toml")
        ),
    )
    .expect("config");
    let args = vec!["--config".to_owned(), config.display().to_string()];
    let process = serve_binary(&args, &[], &dir.join("service.log"));
    wait_until(
        "the service listens",
        Duration::from_secs(30),
        || async move { tokio::net::TcpStream::connect(grpc).await.is_ok() },
    )
    .await;
    (process, grpc, kafka)
}

/// How a call with `token` (or none) ends: `Ok` or the status code.
async fn call(grpc: SocketAddr, token: Option<&str>) -> Result<(), Code> {
    let mut api = match token {
        Some(token) => client_as(grpc, token).await,
        None => client(grpc).await,
    };
    let request = proto::GetOverviewRequest {
        tenant_id: "acme".into(),
        ..Default::default()
    };
    api.get_overview(request)
        .await
        .map(|_| ())
        .map_err(|s| s.code())
}

async fn becomes(grpc: SocketAddr, token: Option<&str>, expected: Result<(), Code>, what: &str) {
    let token = token.map(str::to_owned);
    wait_until(what, Duration::from_secs(5), || {
        let token = token.clone();
        async move { call(grpc, token.as_deref()).await == expected }
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_explicit_empty_list_revokes_every_token_and_an_empty_file_does_not() {
    let dir = tempfile::tempdir().expect("dir");
    let tokens = dir.path().join("tokens.toml");
    grant(&tokens);
    let (_service, grpc, _kafka) = serve(dir.path(), "revoke-all").await;
    becomes(grpc, Some(TOKEN), Ok(()), "the grant lets the token in").await;

    // Revoked: the token, and no token at all, are refused; never an open API.
    std::fs::write(&tokens, "tokens = []\n").expect("revoke");
    becomes(
        grpc,
        Some(TOKEN),
        Err(Code::Unauthenticated),
        "the token is revoked",
    )
    .await;
    assert_eq!(call(grpc, None).await, Err(Code::Unauthenticated));

    // Granted again.
    grant(&tokens);
    becomes(grpc, Some(TOKEN), Ok(()), "the token is granted again").await;

    // A truncated file is a failed load: the grant stays, and it is logged once.
    std::fs::write(&tokens, "# truncated\n").expect("truncate");
    tokio::time::sleep(Duration::from_secs(3)).await;
    assert_eq!(call(grpc, Some(TOKEN)).await, Ok(()), "the grant stays");
    assert_eq!(call(grpc, None).await, Err(Code::Unauthenticated));
    let log = std::fs::read_to_string(dir.path().join("service.log")).expect("log");
    let failed_loads = log.matches("does not load").count();
    assert_eq!(failed_loads, 1, "logged once per change:\n{log}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn started_with_an_empty_list_it_serves_and_refuses_every_call() {
    let dir = tempfile::tempdir().expect("dir");
    std::fs::write(dir.path().join("tokens.toml"), "tokens = []\n").expect("tokens");
    let (_service, grpc, _kafka) = serve(dir.path(), "revoke-at-start").await;
    becomes(
        grpc,
        Some(TOKEN),
        Err(Code::Unauthenticated),
        "serving, refusing",
    )
    .await;
    assert_eq!(call(grpc, None).await, Err(Code::Unauthenticated));
    assert_eq!(
        call(grpc, Some("anything")).await,
        Err(Code::Unauthenticated)
    );
}
