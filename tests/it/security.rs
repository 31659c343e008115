//! TLS, mTLS and credentials as clients meet them: certificates generated here with rcgen, a
//! good client, a plaintext one, one without a certificate, one with a certificate from another
//! CA, a certificate rotated while serving, and a tokens file rewritten while serving.

use crate::common;

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use common::certs::Authority;
use common::harness::{ApiOnly, TestService};
use common::*;
use integration_health::config::{sha256, TokenGrant};
use integration_health::proto::{self, integration_health_client::IntegrationHealthClient};
use integration_health::tls::{ReloadingTls, TlsFiles};
use tonic::transport::{Certificate, Channel, ClientTlsConfig, Identity};
use tonic::Code;

struct Files {
    _dir: tempfile::TempDir,
    cert: PathBuf,
    key: PathBuf,
    client_ca: PathBuf,
}

fn write_server_files(
    dir: &Path,
    server: &Authority,
    clients: &Authority,
) -> (PathBuf, PathBuf, PathBuf) {
    let (cert, key) = server.issue("integration-health");
    let paths = (
        dir.join("tls.crt"),
        dir.join("tls.key"),
        dir.join("client-ca.crt"),
    );
    std::fs::write(&paths.0, cert).expect("cert");
    std::fs::write(&paths.1, key).expect("key");
    std::fs::write(&paths.2, clients.pem()).expect("ca");
    paths
}

fn files(server: &Authority, clients: &Authority) -> Files {
    let dir = tempfile::tempdir().expect("dir");
    let (cert, key, client_ca) = write_server_files(dir.path(), server, clients);
    Files {
        _dir: dir,
        cert,
        key,
        client_ca,
    }
}

async fn tls_client(
    addr: std::net::SocketAddr,
    trust: &Authority,
    identity: Option<(String, String)>,
) -> Result<Api, tonic::transport::Error> {
    let mut tls = ClientTlsConfig::new()
        .ca_certificate(Certificate::from_pem(trust.pem()))
        .domain_name("localhost");
    if let Some((cert, key)) = identity {
        tls = tls.identity(Identity::from_pem(cert, key));
    }
    let channel = Channel::from_shared(format!("https://{addr}"))
        .expect("uri")
        .tls_config(tls)?
        .connect()
        .await?;
    Ok(api_over(channel, None))
}

async fn answers(client: Result<Api, tonic::transport::Error>) -> bool {
    let Ok(mut client) = client else {
        return false;
    };
    client
        .list_common_errors(proto::ListCommonErrorsRequest::default())
        .await
        .is_ok()
}

async fn serve_mtls(
    server: &Authority,
    clients: &Authority,
) -> (ApiOnly, Files, Arc<ReloadingTls>) {
    let files = files(server, clients);
    let tls = ReloadingTls::load(TlsFiles {
        cert: files.cert.clone(),
        key: files.key.clone(),
        client_ca: Some(files.client_ca.clone()),
    })
    .expect("tls loads");
    let served = ApiOnly::start_with(Vec::new(), NOW, Some(tls.clone())).await;
    (served, files, tls)
}

#[tokio::test]
async fn a_client_with_a_certificate_from_the_trusted_ca_is_served() {
    let (server_ca, client_ca) = (Authority::new("server CA"), Authority::new("client CA"));
    let (served, _files, _tls) = serve_mtls(&server_ca, &client_ca).await;
    let identity = client_ca.issue("dashboard");
    assert!(answers(tls_client(served.addr, &server_ca, Some(identity)).await).await);
    // The operations endpoints are behind the same TLS.
    let (status, _) = https_get(served.http_addr, &server_ca, Some(client_ca.issue("probe")));
    assert_eq!(status, "HTTP/1.1 200 OK");
}

#[tokio::test]
async fn a_plaintext_client_is_refused() {
    let (server_ca, client_ca) = (Authority::new("server CA"), Authority::new("client CA"));
    let (served, _files, _tls) = serve_mtls(&server_ca, &client_ca).await;
    let plain = Channel::from_shared(format!("http://{}", served.addr))
        .expect("uri")
        .connect()
        .await;
    let refused = match plain {
        Err(_) => true,
        Ok(channel) => IntegrationHealthClient::new(channel)
            .list_common_errors(proto::ListCommonErrorsRequest::default())
            .await
            .is_err(),
    };
    assert!(refused);
}

#[tokio::test]
async fn a_client_without_a_certificate_or_with_another_cas_is_refused() {
    let (server_ca, client_ca) = (Authority::new("server CA"), Authority::new("client CA"));
    let (served, _files, _tls) = serve_mtls(&server_ca, &client_ca).await;
    assert!(!answers(tls_client(served.addr, &server_ca, None).await).await);
    let stranger = Authority::new("another CA").issue("intruder");
    assert!(!answers(tls_client(served.addr, &server_ca, Some(stranger)).await).await);
}

#[tokio::test]
async fn a_rotated_certificate_is_served_without_a_restart() {
    let (server_ca, client_ca) = (Authority::new("server CA"), Authority::new("client CA"));
    let (served, files, tls) = serve_mtls(&server_ca, &client_ca).await;
    let next_ca = Authority::new("next server CA");
    let dir = files.cert.parent().expect("dir").to_owned();
    let (cert_time, key_time) = (modified(&files.cert), modified(&files.key));
    write_server_files(&dir, &next_ca, &client_ca);
    // The same times as before: the change is told by the files' bytes.
    set_modified(&files.cert, cert_time);
    set_modified(&files.key, key_time);
    assert!(
        tls.reload_if_changed().expect("reloads"),
        "the change is seen"
    );
    let identity = client_ca.issue("dashboard");
    assert!(answers(tls_client(served.addr, &next_ca, Some(identity.clone())).await).await);
    assert!(!answers(tls_client(served.addr, &server_ca, Some(identity)).await).await);
}

#[tokio::test]
async fn a_half_written_certificate_keeps_the_previous_one_in_force() {
    let (server_ca, client_ca) = (Authority::new("server CA"), Authority::new("client CA"));
    let (served, files, tls) = serve_mtls(&server_ca, &client_ca).await;
    std::fs::write(&files.cert, "-----BEGIN CERTIFICATE-----\ntruncated").expect("write");
    assert!(tls.reload_if_changed().is_err());
    let identity = client_ca.issue("dashboard");
    assert!(answers(tls_client(served.addr, &server_ca, Some(identity)).await).await);
}

/// `GET /healthz` over TLS by hand; returns the status line and the body.
fn https_get(
    addr: std::net::SocketAddr,
    trust: &Authority,
    identity: Option<(String, String)>,
) -> (String, String) {
    use std::io::{Read, Write};

    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut roots = rustls::RootCertStore::empty();
    let ca = rustls_pemfile::certs(&mut trust.pem().as_bytes())
        .next()
        .expect("a cert")
        .expect("pem");
    roots.add(ca).expect("root");
    let builder = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .expect("versions")
        .with_root_certificates(roots);
    let config = match identity {
        Some((cert, key)) => {
            let certs = rustls_pemfile::certs(&mut cert.as_bytes())
                .collect::<Result<Vec<_>, _>>()
                .expect("certs");
            let key = rustls_pemfile::private_key(&mut key.as_bytes())
                .expect("key pem")
                .expect("a key");
            builder
                .with_client_auth_cert(certs, key)
                .expect("client auth")
        }
        None => builder.with_no_client_auth(),
    };
    let name = rustls::pki_types::ServerName::try_from("localhost").expect("name");
    let mut connection = rustls::ClientConnection::new(Arc::new(config), name).expect("client");
    let mut socket = std::net::TcpStream::connect(addr).expect("connect");
    let mut stream = rustls::Stream::new(&mut connection, &mut socket);
    stream
        .write_all(b"GET /healthz HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n")
        .expect("request");
    let mut answer = String::new();
    let _ = stream.read_to_string(&mut answer);
    let status = answer.lines().next().unwrap_or_default().to_owned();
    (status, answer)
}

fn modified(path: &Path) -> std::time::SystemTime {
    std::fs::metadata(path)
        .and_then(|m| m.modified())
        .expect("modification time")
}

fn set_modified(path: &Path, time: std::time::SystemTime) {
    std::fs::File::options()
        .write(true)
        .open(path)
        .and_then(|f| f.set_modified(time))
        .expect("modification time set");
}

fn tokens_file(path: &Path, token: &str) {
    let text = format!(
        "[[tokens]]\nname = \"t7\"\ntoken_sha256 = \"{}\"\ntenants = [\"acme\"]\n",
        hex::encode(sha256(token))
    );
    std::fs::write(path, text).expect("tokens file");
}

fn overview_with(token: &str) -> tonic::Request<proto::GetOverviewRequest> {
    let mut request = tonic::Request::new(proto::GetOverviewRequest {
        tenant_id: "acme".into(),
        ..Default::default()
    });
    let value = format!("Bearer {token}").parse().expect("header");
    request.metadata_mut().insert("authorization", value);
    request
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rewritten_tokens_file_takes_effect_while_serving() {
    let dir = tempfile::tempdir().expect("dir");
    let path = dir.path().join("tokens.toml");
    tokens_file(&path, "first-token");
    let (_kafka, bootstrap) = kafka_with_topic("secured", 1);
    let mut config = test_config(&bootstrap, "secured", "secured");
    config.tokens_file = Some(path.clone());
    config.tokens = vec![TokenGrant::plain("inline", &["*"])];
    let running = TestService::start_at(&config, NOW).await;
    let mut api = running.api.clone();
    assert!(api.get_overview(overview_with("first-token")).await.is_ok());
    assert!(api.get_overview(overview_with("inline")).await.is_ok());

    // A token of the same length, and the file's time set back to the first one's: a
    // rotation within the filesystem's timestamp granularity, told apart only by the bytes.
    let first_written = modified(&path);
    tokens_file(&path, "second-token");
    set_modified(&path, first_written);
    wait_until("the new token is accepted", Duration::from_secs(10), || {
        let mut api = api.clone();
        async move {
            api.get_overview(overview_with("second-token"))
                .await
                .is_ok()
        }
    })
    .await;
    let old = api
        .get_overview(overview_with("first-token"))
        .await
        .unwrap_err();
    assert_eq!(old.code(), Code::Unauthenticated);

    std::fs::write(
        &path,
        "[[tokens]]\nname = \"t8\"\ntoken_sha256 = \"not hex\"\n",
    )
    .expect("broken file");
    tokio::time::sleep(Duration::from_millis(2_500)).await;
    assert!(
        api.get_overview(overview_with("second-token"))
            .await
            .is_ok(),
        "a broken file leaves the tokens in force"
    );
    running.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_query_client_speaks_mtls() {
    let (server_ca, client_ca) = (Authority::new("server CA"), Authority::new("client CA"));
    let (served, files, _tls) = serve_mtls(&server_ca, &client_ca).await;
    let dir = files.cert.parent().expect("dir").to_owned();
    let (cert, key) = client_ca.issue("cli");
    let ca_path = dir.join("server-ca.crt");
    std::fs::write(&ca_path, server_ca.pem()).expect("ca");
    std::fs::write(dir.join("client.crt"), cert).expect("cert");
    std::fs::write(dir.join("client.key"), key).expect("key");
    let addr = format!("https://localhost:{}", served.addr.port());
    let output = tokio::task::spawn_blocking(move || {
        std::process::Command::new(env!("CARGO_BIN_EXE_integration-health"))
            .args(["query", "--json", "--addr", &addr, "--tls-ca"])
            .arg(&ca_path)
            .arg("--tls-cert")
            .arg(dir.join("client.crt"))
            .arg("--tls-key")
            .arg(dir.join("client.key"))
            .args(["catalog", "--code", "503"])
            .output()
            .expect("runs")
    })
    .await
    .expect("joined");
    assert!(succeeded(&output).contains("Service Unavailable"));
}

#[test]
fn a_tokens_file_without_tokens_or_with_a_scoped_operator_is_refused() {
    let dir = tempfile::tempdir().expect("dir");
    let tokens = dir.path().join("tokens.toml");
    let settings = dir.path().join("settings.toml");
    std::fs::write(
        &settings,
        format!(
            "grpc_addr = \"0.0.0.0:50051\"\ntokens_file = {:?}\n",
            tokens
        ),
    )
    .expect("settings");
    for granting_nothing in ["", "# every grant commented out\n"] {
        std::fs::write(&tokens, granting_nothing).expect("tokens");
        let (ok, stderr) = config_check(&settings);
        assert!(!ok, "{granting_nothing:?} must not pass");
        assert!(
            stderr.contains("grants no token") && stderr.contains("tokens = []"),
            "{stderr}"
        );
    }
    // An explicit empty list is a deliberate revocation: valid, and never an open API.
    std::fs::write(&tokens, "tokens = []\n").expect("tokens");
    let (ok, stderr) = config_check(&settings);
    assert!(ok, "{stderr}");
    std::fs::write(
        &tokens,
        "[[tokens]]\nname = \"t9\"\ntoken_sha256 = \"00000000000000000000000000000000000000000000000000000000000000aa\"\ntenants = [\"acme-retail\"]\noperator = true\n",
    )
    .expect("tokens");
    let (ok, stderr) = config_check(&settings);
    assert!(!ok);
    assert!(
        stderr.contains("operator grant must cover every tenant"),
        "{stderr}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_tokens_file_emptied_while_serving_keeps_the_previous_grants() {
    let dir = tempfile::tempdir().expect("dir");
    let path = dir.path().join("tokens.toml");
    tokens_file(&path, "kept-token");
    let (_kafka, bootstrap) = kafka_with_topic("emptied", 1);
    let mut config = test_config(&bootstrap, "emptied", "emptied");
    config.tokens_file = Some(path.clone());
    let running = TestService::start_at(&config, NOW).await;
    let mut api = running.api.clone();
    assert!(api.get_overview(overview_with("kept-token")).await.is_ok());

    std::fs::write(&path, "# truncated by a bad rollout\n").expect("emptied");
    tokio::time::sleep(Duration::from_millis(2_500)).await;
    let anonymous = api
        .get_overview(proto::GetOverviewRequest {
            tenant_id: "acme".into(),
            ..Default::default()
        })
        .await
        .unwrap_err();
    assert_eq!(anonymous.code(), Code::Unauthenticated, "never opened");
    assert!(
        api.get_overview(overview_with("kept-token")).await.is_ok(),
        "the previous grants stay in force"
    );
    running.stop().await;
}

#[tokio::test]
async fn a_loopback_listener_refuses_pages_addressed_to_another_name() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let served = ApiOnly::start(Vec::new(), NOW).await;
    let ask = |host: &'static str| async move {
        let mut stream = tokio::net::TcpStream::connect(served.http_addr)
            .await
            .expect("connect");
        let request = format!("GET /healthz HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n");
        stream.write_all(request.as_bytes()).await.expect("write");
        let mut answer = String::new();
        let _ = stream.read_to_string(&mut answer).await;
        answer.lines().next().unwrap_or_default().to_owned()
    };
    // A DNS name pointed at 127.0.0.1 by another site (DNS rebinding) is not served.
    assert!(ask("rebound.example:9464").await.contains("421"));
    assert!(ask("localhost:9464").await.contains("200"));
    assert!(ask("127.0.0.1").await.contains("200"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_mtls_probes_and_metrics_answer_in_plain_http_on_their_own_listener() {
    let (server_ca, client_ca) = (Authority::new("server CA"), Authority::new("client CA"));
    let files = files(&server_ca, &client_ca);
    let (_kafka, bootstrap) = kafka_with_topic("probed", 1);
    let mut config = test_config(&bootstrap, "probed", "probed");
    config.tls_cert = Some(files.cert.clone());
    config.tls_key = Some(files.key.clone());
    config.tls_client_ca = Some(files.client_ca.clone());
    let ops_port = free_port();
    config.ops_addr = Some(format!("127.0.0.1:{ops_port}").parse().expect("addr"));
    let running = TestService::start_at(&config, NOW).await;
    let ops = running.service.ops_addr.expect("an ops listener");
    // A kubelet has no client certificate: liveness, readiness and metrics still answer.
    assert_eq!(http_get(ops, "/healthz").await.0, 200);
    assert!(matches!(http_get(ops, "/readyz").await.0, 200 | 503));
    let (status, metrics) = http_get(ops, "/metrics").await;
    assert_eq!(status, 200);
    assert!(metrics.contains("integration_health_events_total") || metrics.contains("# EOF"));
    // The API listeners still demand a client certificate.
    assert!(!answers(tls_client(running.service.grpc_addr, &server_ca, None).await).await);
    running.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slow_clients_cannot_exhaust_the_http_listener() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let (_kafka, bootstrap) = kafka_with_topic("slow", 1);
    let mut config = test_config(&bootstrap, "slow", "slow");
    config.max_http_connections = 20;
    config.header_read_timeout_ms = 500;
    let ops_port = free_port();
    config.ops_addr = Some(format!("127.0.0.1:{ops_port}").parse().expect("addr"));
    let running = TestService::start_at(&config, NOW).await;
    let http = running.service.http_addr;
    // Thirty clients start a request and never finish its headers.
    let mut slow = Vec::new();
    for _ in 0..30 {
        let mut stream = tokio::net::TcpStream::connect(http).await.expect("connect");
        stream
            .write_all(b"GET /integration_health.v1 HTTP/1.1\r\nHost: localhost\r\nX-Slow: ")
            .await
            .expect("partial headers");
        slow.push(stream);
    }
    // Past the cap they are closed at once; the probes on their own listener answer at once.
    let started = std::time::Instant::now();
    assert_eq!(
        http_get(running.service.ops_addr.expect("ops"), "/healthz")
            .await
            .0,
        200
    );
    assert!(started.elapsed() < std::time::Duration::from_millis(500));
    // Within the header timeout every slow client has been let go.
    tokio::time::sleep(std::time::Duration::from_millis(1_500)).await;
    for stream in &mut slow {
        let mut rest = Vec::new();
        let read = tokio::time::timeout(
            std::time::Duration::from_secs(2),
            stream.read_to_end(&mut rest),
        )
        .await;
        assert!(read.is_ok(), "a slow client is disconnected");
    }
    let (_, metrics) = http_get(running.service.ops_addr.expect("ops"), "/metrics").await;
    assert!(
        metric_sum(
            &metrics,
            "integration_health_connections_refused_total",
            &["listener=\"http\""]
        ) >= 10.0,
        "{metrics}"
    );
    // And the listener serves again.
    assert_eq!(
        http_get(http, "/integration_health.v1.IntegrationHealth/GetOverview")
            .await
            .0
            / 100,
        4
    );
    running.stop().await;
}

#[tokio::test]
async fn the_grpc_listener_holds_a_bounded_number_of_connections() {
    use tokio::io::AsyncReadExt;
    let limits = integration_health::api::ApiLimits {
        max_connections: 5,
        ..Default::default()
    };
    let served = ApiOnly::serve(Vec::new(), NOW, None, limits).await;
    // The harness's own client holds one place; four idle connections take the rest.
    let mut idle = Vec::new();
    for _ in 0..4 {
        idle.push(
            tokio::net::TcpStream::connect(served.addr)
                .await
                .expect("connect"),
        );
    }
    tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    let mut refused = tokio::net::TcpStream::connect(served.addr)
        .await
        .expect("connect");
    let mut byte = [0u8; 1];
    let read = tokio::time::timeout(std::time::Duration::from_secs(2), refused.read(&mut byte))
        .await
        .expect("closed at once, not left hanging");
    assert!(matches!(read, Ok(0) | Err(_)), "past the cap: closed");
    // A place given back is a place for the next client.
    idle.pop();
    tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    let mut api = client(served.addr).await;
    assert!(api
        .list_common_errors(proto::ListCommonErrorsRequest::default())
        .await
        .is_ok());
}
