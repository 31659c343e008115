//! A bounded burst of heavy queries while `/healthz` is polled: liveness must stay answered,
//! and calls beyond what the service can queue are shed with RESOURCE_EXHAUSTED rather than
//! piling up. Prints the health latencies it saw.

use crate::common;

use std::time::{Duration, Instant};

use common::harness::ApiOnly;
use common::*;
use integration_health::api::convert::ms_to_timestamp;
use integration_health::proto;
use serde_json::json;
use tonic::Code;

const CLIENTS: usize = 48;
const CALLS_PER_CLIENT: usize = 6;

fn fill(served: &ApiOnly) {
    let events: Vec<serde_json::Value> = (0..40_000)
        .map(|i| {
            json!({
                "event_id": format!("e{i}"), "tenant_id": "big",
                "occurred_at": NOW - (i % (60 * 24)) * HOUR - 1,
                "integration_type": "outbound_webhook",
                "integration_id": format!("wh-{}", i % 400),
                "integration_name": "Hook", "outcome": "failure",
                "status_code": 500 + (i % 7), "error_message": format!("upstream {}", i % 9)
            })
        })
        .collect();
    served.apply(0, &events);
}

async fn heavy_calls(served: &ApiOnly) -> (usize, usize) {
    let mut api = served.api.clone();
    let (mut ok, mut shed) = (0, 0);
    for _ in 0..CALLS_PER_CLIENT {
        let trends = proto::GetTrendsRequest {
            tenant_id: "big".into(),
            granularity: proto::Granularity::Hour as i32,
            range: Some(proto::TimeRange {
                start: Some(ms_to_timestamp(NOW - 62 * DAY)),
                end: Some(ms_to_timestamp(NOW)),
            }),
            ..Default::default()
        };
        let table = proto::ListFailuresRequest {
            tenant_id: "big".into(),
            page_size: 1000,
            ..Default::default()
        };
        for result in [
            api.get_trends(trends).await.map(|_| ()),
            api.list_failures(table).await.map(|_| ()),
        ] {
            match result {
                Ok(()) => ok += 1,
                Err(status) if status.code() == Code::ResourceExhausted => shed += 1,
                Err(status) => panic!("unexpected {status:?}"),
            }
        }
    }
    (ok, shed)
}

/// One blocking `GET /healthz`; returns the status line.
fn probe(addr: std::net::SocketAddr) -> String {
    use std::io::{Read, Write};
    let mut stream = std::net::TcpStream::connect(addr).expect("connect");
    stream
        .write_all(b"GET /healthz HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n")
        .expect("request");
    let mut answer = String::new();
    stream.read_to_string(&mut answer).expect("answer");
    answer.lines().next().unwrap_or_default().to_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn health_answers_quickly_while_the_api_is_saturated() {
    let served = std::sync::Arc::new(ApiOnly::start(Vec::new(), NOW).await);
    fill(&served);
    let burst: Vec<_> = (0..CLIENTS)
        .map(|_| {
            let served = served.clone();
            tokio::spawn(async move { heavy_calls(&served).await })
        })
        .collect();
    // The probe runs on a plain thread, like a kubelet outside the process: what it measures
    // is the service, not this test's own busy runtime.
    let done = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let prober = {
        let done = done.clone();
        let addr = served.http_addr;
        std::thread::spawn(move || {
            let mut latencies = Vec::new();
            while !done.load(std::sync::atomic::Ordering::SeqCst) {
                let started = Instant::now();
                assert!(probe(addr).starts_with("HTTP/1.1 200"));
                latencies.push(started.elapsed());
                std::thread::sleep(Duration::from_millis(10));
            }
            latencies
        })
    };
    let (mut ok, mut shed) = (0, 0);
    for task in burst {
        let (o, s) = task.await.expect("client");
        ok += o;
        shed += s;
    }
    done.store(true, std::sync::atomic::Ordering::SeqCst);
    let mut latencies = prober.join().expect("prober");
    latencies.sort();
    let max = latencies.last().copied().unwrap_or_default();
    let p99 = latencies[(latencies.len() - 1) * 99 / 100];
    println!(
        "healthz under a burst of {} heavy calls ({ok} answered, {shed} shed): {} probes, p50 {:?}, p99 {p99:?}, max {max:?}",
        CLIENTS * CALLS_PER_CLIENT * 2,
        latencies.len(),
        latencies[latencies.len() / 2],
    );
    assert!(ok > 0, "the service answered nothing");
    assert!(p99 < Duration::from_millis(100), "healthz p99 {p99:?}");
    assert!(max < Duration::from_millis(500), "healthz took {max:?}");
}
