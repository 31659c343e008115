//! Logs to stderr (pretty or JSON lines) and, with an OTLP endpoint, spans to a collector.

use super::OtlpTarget;
use tracing_subscriber::EnvFilter;

pub(crate) use crate::config::LogFormat;

#[derive(Debug, thiserror::Error)]
pub enum TelemetryError {
    #[error("cannot set up OTLP trace export to {endpoint}: {message}")]
    Traces { endpoint: String, message: String },
    #[error("cannot set up OTLP metric export to {endpoint}: {message}")]
    Metrics { endpoint: String, message: String },
}

/// Flushes and stops the OTLP exporters when dropped.
#[derive(Default)]
pub struct TelemetryGuard {
    tracer_provider: Option<opentelemetry_sdk::trace::TracerProvider>,
}

impl Drop for TelemetryGuard {
    fn drop(&mut self) {
        if let Some(provider) = self.tracer_provider.take() {
            let _ = provider.shutdown();
        }
    }
}

pub(super) fn resource() -> opentelemetry_sdk::Resource {
    opentelemetry_sdk::Resource::new([opentelemetry::KeyValue::new(
        "service.name",
        "integration-health",
    )])
}

/// Logs to stderr (pretty or JSON lines) and, when `otlp_endpoint` is set, exports spans
/// through OTLP/gRPC. Without an endpoint nothing is exported. Must run inside the runtime.
pub fn init(
    format: LogFormat,
    filter: &str,
    otlp: Option<&OtlpTarget>,
) -> Result<TelemetryGuard, TelemetryError> {
    use opentelemetry::trace::TracerProvider as _;
    use tracing_subscriber::layer::SubscriberExt;
    use tracing_subscriber::util::SubscriberInitExt;
    use tracing_subscriber::Layer;

    let filter = EnvFilter::try_new(filter).unwrap_or_else(|_| EnvFilter::new("info"));
    let logs = match format {
        LogFormat::Pretty => tracing_subscriber::fmt::layer()
            .with_writer(std::io::stderr)
            .boxed(),
        LogFormat::Json => tracing_subscriber::fmt::layer()
            .json()
            .with_writer(std::io::stderr)
            .boxed(),
    };
    let mut guard = TelemetryGuard::default();
    let traces = match otlp {
        Some(target) => {
            let builder =
                target.configure(opentelemetry_otlp::SpanExporter::builder().with_tonic());
            let exporter = builder.build().map_err(|e| TelemetryError::Traces {
                endpoint: target.endpoint.clone(),
                message: e.to_string(),
            })?;
            let provider = opentelemetry_sdk::trace::TracerProvider::builder()
                .with_batch_exporter(exporter, opentelemetry_sdk::runtime::Tokio)
                .with_resource(resource())
                .build();
            let tracer = provider.tracer("integration-health");
            guard.tracer_provider = Some(provider);
            Some(tracing_opentelemetry::layer().with_tracer(tracer))
        }
        None => None,
    };
    // A second init (tests) is harmless; the first subscriber stays.
    let _ = tracing_subscriber::registry()
        .with(filter)
        .with(logs)
        .with(traces)
        .try_init();
    Ok(guard)
}
