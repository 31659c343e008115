//! Held connections cannot lock anyone out, against the built binary: a silent TCP
//! connection, an HTTP/2 connection silent after its preface and SETTINGS, and a TLS
//! connection silent after its handshake are each closed within `first_byte_timeout_ms`; a
//! connection whose requests are done is closed after `idle_timeout_ms`; with more silent
//! connections than the caps, `/healthz` and a gRPC call still answer; a cap per client
//! address refuses and counts; and the open-files limit is raised at start, or caps that cannot
//! fit under it are refused.

use crate::common;
use common::certs::Authority;
use common::*;

use std::io::Read;
use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use integration_health::proto;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

const FIRST_BYTE_MS: u64 = 600;
const IDLE_MS: u64 = 1_200;
/// Closed within this of the timeout (the service checks at the deadline; the rest is
/// scheduling on a busy two-core machine).
const SLACK: Duration = Duration::from_millis(1_500);

struct Served {
    _process: Process,
    grpc: SocketAddr,
    http: SocketAddr,
    _dir: tempfile::TempDir,
}

/// The binary on the mock cluster with short quiet timeouts, caps of 8 connections on each
/// listener, and `extra` settings.
async fn serve(topic: &str, extra: &str) -> (Served, integration_health::testkit::EmbeddedKafka) {
    let (kafka, bootstrap) = kafka_with_topic(topic, 1);
    let dir = tempfile::tempdir().expect("dir");
    let grpc: SocketAddr = format!("127.0.0.1:{}", free_port()).parse().expect("addr");
    let http: SocketAddr = format!("127.0.0.1:{}", free_port()).parse().expect("addr");
    let config = dir.path().join("service.toml");
    std::fs::write(
        &config,
        format!(
            "brokers = \"{bootstrap}\"\ntopic = \"{topic}\"\ngroup = \"{topic}\"\n\
             grpc_addr = \"{grpc}\"\nhttp_addr = \"{http}\"\n\
             first_byte_timeout_ms = {FIRST_BYTE_MS}\nidle_timeout_ms = {IDLE_MS}\n\
             max_grpc_connections = 8\nmax_http_connections = 8\n{extra}"
        ),
    )
    .expect("config");
    let args = vec!["--config".to_owned(), config.display().to_string()];
    let process = serve_binary(&args, &[], &dir.path().join("service.log"));
    let served = Served {
        _process: process,
        grpc,
        http,
        _dir: dir,
    };
    wait_until(
        "the service listens",
        Duration::from_secs(30),
        || async move {
            tokio::net::TcpStream::connect(http).await.is_ok()
                && tokio::net::TcpStream::connect(grpc).await.is_ok()
        },
    )
    .await;
    (served, kafka)
}

/// How long until the server closes `stream`, which sends nothing more.
async fn closed_after(mut stream: tokio::net::TcpStream, since: Instant) -> Duration {
    let mut buffer = [0u8; 4096];
    loop {
        let read = tokio::time::timeout(Duration::from_secs(20), stream.read(&mut buffer))
            .await
            .expect("the server never closed the connection");
        if matches!(read, Ok(0) | Err(_)) {
            return since.elapsed();
        }
    }
}

fn within_the_timeout(took: Duration, timeout_ms: u64, what: &str) {
    let timeout = Duration::from_millis(timeout_ms);
    assert!(
        took + Duration::from_millis(50) >= timeout && took <= timeout + SLACK,
        "{what}: closed after {took:?}, the timeout is {timeout:?}"
    );
}

/// HTTP/2's connection preface and an empty SETTINGS frame: what a client sends first.
const H2_PREFACE_AND_SETTINGS: &[u8] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n\0\0\0\x04\0\0\0\0\0";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn quiet_connections_are_closed_within_their_timeouts() {
    let (served, _kafka) = serve("held-quiet", "").await;
    for (addr, listener) in [(served.grpc, "gRPC"), (served.http, "HTTP")] {
        let silent = tokio::net::TcpStream::connect(addr).await.expect("connect");
        let took = closed_after(silent, Instant::now()).await;
        within_the_timeout(took, FIRST_BYTE_MS, &format!("silent TCP on {listener}"));

        let mut h2 = tokio::net::TcpStream::connect(addr).await.expect("connect");
        let since = Instant::now();
        h2.write_all(H2_PREFACE_AND_SETTINGS)
            .await
            .expect("preface");
        let took = closed_after(h2, since).await;
        within_the_timeout(took, FIRST_BYTE_MS, &format!("HTTP/2 idle on {listener}"));
    }

    // A client's gRPC connection, its call done, is closed once idle: the open-connections
    // gauge of the gRPC listener falls back to 0.
    let mut api = client(served.grpc).await;
    api.list_common_errors(proto::ListCommonErrorsRequest::default())
        .await
        .expect("a call");
    let done = Instant::now();
    let open = |exposition: &str| {
        metric_sum(
            exposition,
            "integration_health_connections_open",
            &["listener=\"grpc\""],
        )
    };
    let (_, exposition) = http_get(served.http, "/metrics").await;
    assert_eq!(open(&exposition), 1.0, "the client's connection");
    let http = served.http;
    wait_until(
        "the idle connection closes",
        Duration::from_secs(10),
        || async move {
            let (_, exposition) = http_get(http, "/metrics").await;
            open(&exposition) == 0.0
        },
    )
    .await;
    assert!(
        done.elapsed() >= Duration::from_millis(IDLE_MS),
        "closed only once idle"
    );
}

/// `GET /healthz`'s status, or `None` when the connection was refused or cut.
async fn healthz(addr: SocketAddr) -> Option<u16> {
    let mut stream = tokio::net::TcpStream::connect(addr).await.ok()?;
    let request = "GET /healthz HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n";
    stream.write_all(request.as_bytes()).await.ok()?;
    let mut answer = Vec::new();
    stream.read_to_end(&mut answer).await.ok()?;
    let answer = String::from_utf8_lossy(&answer);
    answer.split_whitespace().nth(1)?.parse().ok()
}

/// Waits until no connection is open on the gRPC listener (the readiness checks' are gone).
async fn settled(http: SocketAddr) {
    wait_until(
        "no gRPC connection open",
        Duration::from_secs(10),
        || async move {
            let (_, exposition) = http_get(http, "/metrics").await;
            metric_sum(
                &exposition,
                "integration_health_connections_open",
                &["listener=\"grpc\""],
            ) == 0.0
        },
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn more_held_connections_than_the_caps_lock_no_one_out() {
    let (served, _kafka) = serve("held-flood", "").await;
    // Twenty silent connections on each listener: eight held, twelve refused at once.
    let mut held = Vec::new();
    for addr in [served.grpc, served.http] {
        for _ in 0..20 {
            held.push(tokio::net::TcpStream::connect(addr).await.expect("connect"));
        }
    }
    let flooded = Instant::now();
    // The probe and a call get through as soon as the held connections time out, though the
    // twenty stay open on the client's side.
    let http = served.http;
    wait_until("/healthz answers", Duration::from_secs(10), || async move {
        let probe = tokio::time::timeout(Duration::from_secs(1), healthz(http));
        matches!(probe.await, Ok(Some(200)))
    })
    .await;
    let grpc = served.grpc;
    wait_until(
        "a gRPC call answers",
        Duration::from_secs(10),
        || async move {
            let call = async {
                let mut api = client(grpc).await;
                api.list_common_errors(proto::ListCommonErrorsRequest::default())
                    .await
                    .is_ok()
            };
            tokio::time::timeout(Duration::from_secs(1), call)
                .await
                .unwrap_or(false)
        },
    )
    .await;
    assert!(
        flooded.elapsed() <= Duration::from_millis(FIRST_BYTE_MS) + SLACK + Duration::from_secs(1),
        "answered {:?} after the flood",
        flooded.elapsed()
    );
    let (_, exposition) = http_get(served.http, "/metrics").await;
    for listener in ["grpc", "http"] {
        let refused = metric_sum(
            &exposition,
            "integration_health_connections_refused_total",
            &[&format!("listener=\"{listener}\"")],
        );
        assert!(refused >= 12.0, "{listener}: {refused} refused");
    }
    drop(held);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cap_per_address_refuses_and_counts() {
    let (served, _kafka) = serve("held-per-ip", "max_connections_per_ip = 3\n").await;
    settled(served.http).await;
    let mut held = Vec::new();
    for _ in 0..3 {
        held.push(
            tokio::net::TcpStream::connect(served.grpc)
                .await
                .expect("connect"),
        );
    }
    let fourth = tokio::net::TcpStream::connect(served.grpc)
        .await
        .expect("connect");
    let took = closed_after(fourth, Instant::now()).await;
    assert!(
        took < Duration::from_millis(FIRST_BYTE_MS),
        "refused at once: {took:?}"
    );
    let (_, exposition) = http_get(served.http, "/metrics").await;
    let refused = metric_sum(
        &exposition,
        "integration_health_connections_refused_per_ip_total",
        &["listener=\"grpc\""],
    );
    assert_eq!(refused, 1.0);
    drop(held);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_tls_connection_silent_after_its_handshake_is_closed() {
    let ca = Authority::new("held CA");
    let (cert, key) = ca.issue("server");
    let dir = tempfile::tempdir().expect("dir");
    let write = |name: &str, text: &str| {
        let path = dir.path().join(name);
        std::fs::write(&path, text).expect("pem");
        path.display().to_string()
    };
    let extra = format!(
        "tls_cert = \"{}\"\ntls_key = \"{}\"\n",
        write("server.crt", &cert),
        write("server.key", &key)
    );
    let (served, _kafka) = serve("held-tls", &extra).await;
    for addr in [served.grpc, served.http] {
        let ca_pem = ca.pem();
        let took = tokio::task::spawn_blocking(move || silent_after_handshake(addr, &ca_pem))
            .await
            .expect("client");
        within_the_timeout(took, FIRST_BYTE_MS, &format!("TLS then silent on {addr}"));
    }
}

/// Completes a TLS handshake with `addr`, then sends nothing: how long until it is closed.
fn silent_after_handshake(addr: SocketAddr, ca_pem: &str) -> Duration {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut roots = rustls::RootCertStore::empty();
    let ca = rustls_pemfile::certs(&mut ca_pem.as_bytes())
        .next()
        .expect("a cert")
        .expect("pem");
    roots.add(ca).expect("root");
    let config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .expect("versions")
        .with_root_certificates(roots)
        .with_no_client_auth();
    let name = rustls::pki_types::ServerName::try_from("localhost").expect("name");
    let mut connection = rustls::ClientConnection::new(Arc::new(config), name).expect("client");
    let mut socket = std::net::TcpStream::connect(addr).expect("connect");
    while connection.is_handshaking() {
        connection.complete_io(&mut socket).expect("handshake");
    }
    let since = Instant::now();
    socket
        .set_read_timeout(Some(Duration::from_secs(20)))
        .expect("timeout");
    let mut stream = rustls::Stream::new(&mut connection, &mut socket);
    let mut buffer = [0u8; 1024];
    loop {
        match stream.read(&mut buffer) {
            Ok(0) => return since.elapsed(),
            Ok(_) => continue,
            Err(err) if err.kind() == std::io::ErrorKind::WouldBlock => {
                panic!("not closed within 20 s")
            }
            Err(_) => return since.elapsed(),
        }
    }
}

/// `serve` under `prlimit --nofile=SOFT:HARD`: (exited with a failure, its log).
fn serve_with_open_files(config: &Path, soft: u64, hard: u64) -> (Option<bool>, String, u32) {
    let log = config.with_extension("log");
    let child = die_with_parent(&mut std::process::Command::new("prlimit"))
        .arg(format!("--nofile={soft}:{hard}"))
        .arg("--")
        .arg(env!("CARGO_BIN_EXE_integration-health"))
        .args(["serve", "--config"])
        .arg(config)
        .stdout(std::process::Stdio::null())
        .stderr(std::fs::File::create(&log).expect("log"))
        .spawn()
        .expect("prlimit runs the service");
    let pid = child.id();
    let mut child = Process(child);
    let deadline = Instant::now() + Duration::from_secs(5);
    let failed = loop {
        if let Some(status) = child.0.try_wait().expect("wait") {
            break Some(!status.success());
        }
        if Instant::now() > deadline {
            break None;
        }
        std::thread::sleep(Duration::from_millis(100));
    };
    let soft_now = std::fs::read_to_string(format!("/proc/{pid}/limits"))
        .unwrap_or_default()
        .lines()
        .find(|l| l.starts_with("Max open files"))
        .and_then(|l| l.split_whitespace().nth(3).map(str::to_owned))
        .and_then(|n| n.parse().ok())
        .unwrap_or(0);
    drop(child);
    (
        failed,
        std::fs::read_to_string(&log).unwrap_or_default(),
        soft_now,
    )
}

#[test]
fn the_open_files_limit_is_raised_or_the_caps_refused() {
    let (_kafka, bootstrap) = kafka_with_topic("held-files", 1);
    let dir = tempfile::tempdir().expect("dir");
    let config = dir.path().join("service.toml");
    std::fs::write(
        &config,
        format!(
            "brokers = \"{bootstrap}\"\ntopic = \"held-files\"\ngroup = \"held-files\"\n\
             grpc_addr = \"127.0.0.1:{}\"\nhttp_addr = \"127.0.0.1:0\"\n",
            free_port()
        ),
    )
    .expect("config");
    // The default caps, 1,024 per listener, cannot fit under 256 open files.
    let (failed, log, _) = serve_with_open_files(&config, 256, 256);
    assert_eq!(failed, Some(true), "{log}");
    for named in ["max_grpc_connections", "max_http_connections", "256"] {
        assert!(log.contains(named), "the refusal names {named}: {log}");
    }
    // With room under the hard limit, the soft one is raised to it and the service runs.
    let (failed, log, soft) = serve_with_open_files(&config, 256, 4_096);
    assert_eq!(failed, None, "still serving: {log}");
    assert_eq!(soft, 4_096, "{log}");
}
