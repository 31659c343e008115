//! With an OTLP endpoint configured, spans for gRPC calls and consumed batches, and the key
//! metrics, reach a collector. The collector here is a real OTLP/gRPC server on port 0.

use crate::common;

use std::sync::Arc;
use std::time::Duration;

use common::harness::TestService;
use common::*;
use integration_health::config::LogFormat;
use integration_health::{ops, proto};
use opentelemetry_proto::tonic::collector::metrics::v1::metrics_service_server::{
    MetricsService, MetricsServiceServer,
};
use opentelemetry_proto::tonic::collector::metrics::v1::{
    ExportMetricsServiceRequest, ExportMetricsServiceResponse,
};
use opentelemetry_proto::tonic::collector::trace::v1::trace_service_server::{
    TraceService, TraceServiceServer,
};
use opentelemetry_proto::tonic::collector::trace::v1::{
    ExportTraceServiceRequest, ExportTraceServiceResponse,
};
use parking_lot::Mutex;

/// A received span: its name and attribute keys.
type SpanSeen = (String, Vec<String>);

#[derive(Clone, Default)]
struct Collector {
    spans: Arc<Mutex<Vec<SpanSeen>>>,
    metrics: Arc<Mutex<Vec<String>>>,
}

#[tonic::async_trait]
impl TraceService for Collector {
    async fn export(
        &self,
        request: tonic::Request<ExportTraceServiceRequest>,
    ) -> Result<tonic::Response<ExportTraceServiceResponse>, tonic::Status> {
        let mut spans = self.spans.lock();
        for resource in request.into_inner().resource_spans {
            for scope in resource.scope_spans {
                for span in scope.spans {
                    let keys = span.attributes.iter().map(|a| a.key.clone()).collect();
                    spans.push((span.name, keys));
                }
            }
        }
        Ok(tonic::Response::new(ExportTraceServiceResponse::default()))
    }
}

#[tonic::async_trait]
impl MetricsService for Collector {
    async fn export(
        &self,
        request: tonic::Request<ExportMetricsServiceRequest>,
    ) -> Result<tonic::Response<ExportMetricsServiceResponse>, tonic::Status> {
        let mut names = self.metrics.lock();
        for resource in request.into_inner().resource_metrics {
            for scope in resource.scope_metrics {
                names.extend(scope.metrics.into_iter().map(|m| m.name));
            }
        }
        Ok(tonic::Response::new(ExportMetricsServiceResponse::default()))
    }
}

/// Waits until the collector has received the accepted-events counter.
async fn metrics_arrive(collector: &Collector) {
    wait_until("metrics exported", Duration::from_secs(20), || {
        let metrics = collector.metrics.clone();
        async move {
            metrics
                .lock()
                .iter()
                .any(|m| m == "integration_health.events.accepted")
        }
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn spans_and_metrics_reach_an_otlp_collector() {
    let collector = Collector::default();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let endpoint = format!("http://{}", listener.local_addr().expect("addr"));
    let serving = {
        let collector = collector.clone();
        tokio::spawn(
            tonic::transport::Server::builder()
                .add_service(TraceServiceServer::new(collector.clone()))
                .add_service(MetricsServiceServer::new(collector))
                .serve_with_incoming(tokio_stream::wrappers::TcpListenerStream::new(listener)),
        )
    };
    let guard = ops::init(
        LogFormat::Pretty,
        "info,librdkafka=off",
        Some(&ops::OtlpTarget::plain(&endpoint)),
    )
    .expect("telemetry");

    let (kafka, bootstrap) = kafka_with_topic("traced", 1);
    let generated = generate(9, 500, NOW);
    let messages: Vec<Message> = generated.messages.iter().map(|(_, m)| m.clone()).collect();
    publish(&producer(&bootstrap), "traced", &messages).await;
    let mut config = test_config(&bootstrap, "traced", "traced");
    config.otlp_endpoint = Some(endpoint);
    let running = TestService::start_at(&config, NOW).await;
    let mut api = running.api.clone();
    let total = messages.len() as u64;
    wait_applied(&api, total).await;
    api.get_overview(proto::GetOverviewRequest {
        tenant_id: "acme".into(),
        ..Default::default()
    })
    .await
    .expect("overview");
    running.stop().await;
    // Shutting the provider down flushes every span still batched.
    drop(guard);

    wait_until("spans exported", Duration::from_secs(20), || {
        let spans = collector.spans.clone();
        async move {
            let spans = spans.lock();
            let overview = spans
                .iter()
                .any(|(name, keys)| name == "get_overview" && keys.iter().any(|k| k == "tenant"));
            let batch = spans.iter().any(|(name, keys)| {
                name == "apply_batch" && keys.iter().any(|k| k == "batch_size")
            });
            overview && batch
        }
    })
    .await;
    metrics_arrive(&collector).await;
    serving.abort();
    drop(kafka);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metrics_reach_an_https_collector_trusting_the_configured_ca() {
    let ca_key = rcgen::KeyPair::generate().expect("key");
    let mut ca_params = rcgen::CertificateParams::new(Vec::<String>::new()).expect("params");
    ca_params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
    let ca = ca_params.self_signed(&ca_key).expect("ca");
    let server_key = rcgen::KeyPair::generate().expect("key");
    let server = rcgen::CertificateParams::new(vec!["localhost".to_owned()])
        .expect("params")
        .signed_by(&server_key, &ca, &ca_key)
        .expect("signed");
    let identity = tonic::transport::Identity::from_pem(server.pem(), server_key.serialize_pem());

    let collector = Collector::default();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let port = listener.local_addr().expect("addr").port();
    let serving = tokio::spawn(
        tonic::transport::Server::builder()
            .tls_config(tonic::transport::ServerTlsConfig::new().identity(identity))
            .expect("tls")
            .add_service(MetricsServiceServer::new(collector.clone()))
            .serve_with_incoming(tokio_stream::wrappers::TcpListenerStream::new(listener)),
    );
    let target = ops::OtlpTarget {
        endpoint: format!("https://localhost:{port}"),
        ca_pem: Some(ca.pem().into_bytes()),
    };
    let read_state: ops::ReadState = Arc::new(ops::StateReading::default);
    let provider =
        ops::export_metrics(&target, read_state, Duration::from_millis(200)).expect("exporter");
    metrics_arrive(&collector).await;
    let _ = provider.shutdown();
    serving.abort();
}
