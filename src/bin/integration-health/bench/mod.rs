//! `integration-health bench`: the event generator, an in-process ingest and query benchmark,
//! an end-to-end run through the mock cluster, and replicas answering for each other on tansu.
//! Reports print as text or JSON.

mod e2e;
mod ingest;
mod probe;
mod replicas;
mod report;

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use integration_health::event::EventError;
use integration_health::server::ServerError;
use integration_health::snapshot::SnapshotError;
use integration_health::testkit::GenSpec;
use rdkafka::error::KafkaError;
use serde::Serialize;
use thiserror::Error;

pub use e2e::{run_e2e, E2eReport, E2eSpec};
pub use ingest::{read_lines, run_ingest, run_ingest_stream, IngestReport};
pub use replicas::{run_replicas, ReplicasSpec};
pub use report::{render_e2e, render_ingest, render_replicas};

#[derive(Debug, Error)]
pub enum BenchError {
    #[error("cannot use {path}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("there are no events to measure")]
    NoEvents,
    #[error("the last event does not decode")]
    LastEvent(#[source] EventError),
    #[error(transparent)]
    Snapshot(#[from] SnapshotError),
    #[error("a snapshot just written could not be found")]
    SnapshotVanished,
    #[error("mock Kafka cluster or producer")]
    Kafka(#[from] KafkaError),
    #[error(transparent)]
    Server(#[from] ServerError),
    #[error("a benchmark task failed")]
    Task(#[from] tokio::task::JoinError),
    #[error("only {consumed} of {total} events consumed after 10 minutes")]
    Stalled { consumed: u64, total: u64 },
    #[error("the restarted service did not restore every partition within 2 minutes")]
    RestartStalled,
}

/// How many generated events, over how many tenants and days.
#[derive(Debug, Clone, Copy, clap::Args)]
pub struct Volume {
    #[arg(long, default_value_t = 1_000_000)]
    pub events: u64,
    #[arg(long, default_value_t = 100)]
    pub tenants: u32,
    #[arg(long, default_value_t = 60)]
    pub days: u32,
}

impl Volume {
    /// Generator settings for these events, ending now so they fall inside retention.
    pub fn spec(self, seed: u64) -> GenSpec {
        GenSpec {
            events: self.events,
            tenants: self.tenants,
            days: self.days,
            seed,
            end_ms: chrono::Utc::now().timestamp_millis(),
        }
    }
}

pub fn io(path: &Path) -> impl FnOnce(std::io::Error) -> BenchError + '_ {
    move |source| BenchError::Io {
        path: path.to_owned(),
        source,
    }
}

pub fn throughput(threads: usize, events: u64, bytes: u64, elapsed: Duration) -> Throughput {
    let seconds = elapsed.as_secs_f64().max(1e-9);
    Throughput {
        threads,
        events,
        seconds,
        events_per_sec: events as f64 / seconds,
        mb_per_sec: bytes as f64 / seconds / 1e6,
    }
}

#[derive(Debug, Clone, Serialize)]
pub struct Throughput {
    pub threads: usize,
    pub events: u64,
    pub seconds: f64,
    pub events_per_sec: f64,
    pub mb_per_sec: f64,
}

#[derive(Debug, Clone, Serialize)]
pub struct Latency {
    pub query: String,
    pub tenant: String,
    pub p50_us: f64,
    pub p99_us: f64,
    pub max_us: f64,
}

/// What follows the first `key` in a generated line, without decoding it.
pub fn after_key<'a>(line: &'a [u8], key: &[u8]) -> Option<&'a [u8]> {
    let at = line.windows(key.len()).position(|w| w == key)?;
    Some(&line[at + key.len()..])
}

pub fn tenant_of(line: &[u8]) -> &[u8] {
    after_key(line, b"\"tenant_id\":\"")
        .map(|rest| {
            let end = rest.iter().position(|b| *b == b'"').unwrap_or(rest.len());
            &rest[..end]
        })
        .unwrap_or_default()
}

pub fn percentile(sorted: &[f64], p: f64) -> f64 {
    if sorted.is_empty() {
        return 0.0;
    }
    let rank = ((sorted.len() - 1) as f64 * p).round() as usize;
    sorted[rank]
}

pub fn latency(query: &str, tenant: &str, mut samples_us: Vec<f64>) -> Latency {
    samples_us.sort_by(f64::total_cmp);
    Latency {
        query: query.to_owned(),
        tenant: tenant.to_owned(),
        p50_us: percentile(&samples_us, 0.5),
        p99_us: percentile(&samples_us, 0.99),
        max_us: samples_us.last().copied().unwrap_or(0.0),
    }
}

pub fn time_us(run: impl FnOnce()) -> f64 {
    let started = Instant::now();
    run();
    started.elapsed().as_secs_f64() * 1e6
}

pub fn tempfile_dir() -> Result<PathBuf, BenchError> {
    let dir = std::env::temp_dir().join(format!("ih-bench-{}", std::process::id()));
    std::fs::create_dir_all(&dir).map_err(io(&dir))?;
    Ok(dir)
}
