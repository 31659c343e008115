//! OTLP metric export: the key figures, read from the service's state at each collection.

use std::time::Duration;

use super::metrics::resident_memory_bytes;
use super::tracing::resource;
use super::{OtlpTarget, ReadState, TelemetryError};
use crate::store::IngestTotals;

/// Which total, under which name, with which description.
type TotalsCounter = (fn(&IngestTotals) -> u64, &'static str, &'static str);

/// Exports the service's key figures as OTLP metrics every `interval`, read from the store at
/// each collection. The returned provider must be shut down to flush the last values.
pub fn export_metrics(
    target: &OtlpTarget,
    read_state: ReadState,
    interval: Duration,
) -> Result<opentelemetry_sdk::metrics::SdkMeterProvider, TelemetryError> {
    use opentelemetry::metrics::MeterProvider as _;

    let builder = target.configure(opentelemetry_otlp::MetricExporter::builder().with_tonic());
    let exporter = builder.build().map_err(|e| TelemetryError::Metrics {
        endpoint: target.endpoint.clone(),
        message: e.to_string(),
    })?;
    let reader = opentelemetry_sdk::metrics::PeriodicReader::builder(
        exporter,
        opentelemetry_sdk::runtime::Tokio,
    )
    .with_interval(interval)
    .build();
    let provider = opentelemetry_sdk::metrics::SdkMeterProvider::builder()
        .with_reader(reader)
        .with_resource(resource())
        .build();
    let meter = provider.meter("integration-health");
    let totals = |pick: fn(&IngestTotals) -> u64, name: &'static str, help: &'static str| {
        let read_state = read_state.clone();
        meter
            .u64_observable_counter(name)
            .with_description(help)
            .with_callback(move |observer| observer.observe(pick(&read_state().totals), &[]))
            .build()
    };
    let counters: [TotalsCounter; 4] = [
        (
            |t| t.accepted,
            "integration_health.events.accepted",
            "Events counted",
        ),
        (
            |t| t.rejected,
            "integration_health.events.rejected",
            "Events sent to the DLQ",
        ),
        (
            |t| t.duplicates,
            "integration_health.events.duplicates",
            "Repeated events ignored",
        ),
        (
            |t| t.late_dropped,
            "integration_health.events.late_dropped",
            "Events older than retention",
        ),
    ];
    for (pick, name, help) in counters {
        let _ = totals(pick, name, help);
    }
    let lag_state = read_state.clone();
    let _ = meter
        .i64_observable_gauge("integration_health.partition.lag")
        .with_description("Messages not yet applied, per partition")
        .with_callback(move |observer| {
            for p in lag_state().partitions {
                let labels = [
                    opentelemetry::KeyValue::new("topic", p.topic.clone()),
                    opentelemetry::KeyValue::new("partition", i64::from(p.partition)),
                ];
                observer.observe(p.lag, &labels);
            }
        })
        .build();
    let groups_state = read_state;
    let _ = meter
        .u64_observable_gauge("integration_health.store.failure_groups")
        .with_description("Failure groups held in memory")
        .with_callback(move |observer| observer.observe(groups_state().cardinality.groups, &[]))
        .build();
    let _ = meter
        .u64_observable_gauge("integration_health.process.resident_memory")
        .with_description("Resident set size in bytes")
        .with_callback(|observer| observer.observe(resident_memory_bytes(), &[]))
        .build();
    Ok(provider)
}
