//! Operations: the metrics every stage writes to, the HTTP endpoints operators probe
//! (`/metrics`, `/healthz`, `/readyz`), logs and OTLP export, and the connection limits every
//! listener shares (`connections`). Nothing here reads the store or the
//! query engine directly: the server hands in closures that read the service's state.

pub(crate) mod connections;
pub(crate) mod guard;
mod http;
mod metrics;
mod otlp;
mod tracing;

use std::sync::Arc;

pub use self::guard::QuietLimits;
pub use self::http::{http_router, serve_http_apart, ConnectionLimits, HttpState};
pub(crate) use self::http::{KEEP_ALIVE_INTERVAL, KEEP_ALIVE_TIMEOUT};
pub use self::metrics::resident_memory_bytes;
pub use self::metrics::Metrics;
pub use self::otlp::export_metrics;
pub use self::tracing::init;
pub(crate) use self::tracing::TelemetryError;

use crate::store::{Cardinality, IngestTotals};

/// Where OTLP goes, and the CA to trust there when it is `https://`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OtlpTarget {
    pub endpoint: String,
    /// PEM; without it an `https://` endpoint is checked against the system's roots.
    pub ca_pem: Option<Vec<u8>>,
}

impl OtlpTarget {
    pub fn plain(endpoint: &str) -> Self {
        OtlpTarget {
            endpoint: endpoint.to_owned(),
            ca_pem: None,
        }
    }

    /// Points an OTLP exporter builder at this target, over TLS for an `https://` endpoint.
    fn configure<B>(&self, builder: B) -> B
    where
        B: opentelemetry_otlp::WithExportConfig + opentelemetry_otlp::WithTonicConfig,
    {
        let builder = builder.with_endpoint(self.endpoint.as_str());
        match self.tls() {
            Some(tls) => builder.with_tls_config(tls),
            None => builder,
        }
    }

    /// TLS settings for an `https://` endpoint; `None` for plaintext.
    fn tls(&self) -> Option<tonic::transport::ClientTlsConfig> {
        if !self.endpoint.starts_with("https://") {
            return None;
        }
        let tls = tonic::transport::ClientTlsConfig::new();
        Some(match &self.ca_pem {
            Some(pem) => tls.ca_certificate(tonic::transport::Certificate::from_pem(pem)),
            None => tls.with_native_roots(),
        })
    }
}

/// One partition's position, as the gauges show it.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct PartitionGauge {
    pub(crate) topic: String,
    pub(crate) partition: i32,
    pub(crate) next_offset: i64,
    pub(crate) high_watermark: i64,
    pub(crate) lag: i64,
    pub(crate) snapshot_age_seconds: Option<f64>,
    pub(crate) snapshot_bytes: Option<u64>,
    /// Seconds since the partition's snapshot writes began to fail; 0 while they succeed.
    pub(crate) snapshot_failing_seconds: f64,
}

/// The state the gauges describe, read at scrape or export time.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct StateReading {
    pub(crate) partitions: Vec<PartitionGauge>,
    pub(crate) cardinality: Cardinality,
    pub(crate) totals: IngestTotals,
}

/// Reads the service's state for the gauges.
pub type ReadState = Arc<dyn Fn() -> StateReading + Send + Sync>;
/// `Ok` when ready to serve, else why not.
pub(crate) type CheckReady = Arc<dyn Fn() -> Result<(), String> + Send + Sync>;
