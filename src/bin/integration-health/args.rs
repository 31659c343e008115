//! The command line: subcommands, flags and their `IH_*` environment variables.

use std::net::SocketAddr;
use std::path::PathBuf;

use clap::{Parser, Subcommand};
use integration_health::config::{Config, LogFormat, ObjectStoreOptions};

use crate::bench::Volume;

#[derive(Debug, Parser)]
#[command(
    name = "integration-health",
    version,
    about = "Health of third-party integrations, counted from Kafka and served over gRPC"
)]
pub struct Cli {
    /// Log filter, e.g. `info` or `info,integration_health=debug`.
    #[arg(long, env = "IH_LOG", default_value = "info", global = true)]
    pub log: String,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Consume from real Kafka brokers and serve gRPC.
    Serve(ServeArgs),
    /// Run an in-process Kafka broker, a traffic simulator and the service.
    Demo {
        #[arg(long, env = "IH_GRPC_ADDR", default_value = "127.0.0.1:50051")]
        grpc_addr: SocketAddr,
        #[arg(long, env = "IH_HTTP_ADDR", default_value = "127.0.0.1:9464")]
        http_addr: SocketAddr,
        #[arg(long, default_value_t = 32)]
        backfill_days: i64,
    },
    /// Ask a running service over gRPC.
    Query(crate::client::QueryArgs),
    /// Check settings without starting anything.
    #[command(subcommand)]
    Config(ConfigCommand),
    /// Publish simulated integration traffic (history, then live) to a real cluster.
    Simulate {
        #[arg(long, env = "IH_BROKERS")]
        brokers: String,
        #[arg(long, env = "IH_TOPIC", default_value = "integration-events")]
        topic: String,
        #[arg(long, default_value_t = 7)]
        backfill_days: i64,
    },
    /// Generate events and measure ingest and query speed.
    #[command(subcommand)]
    Bench(BenchCommand),
}

#[derive(Debug, Subcommand)]
pub enum ConfigCommand {
    /// Validate the settings `serve` would run with, and print them with secrets masked.
    Check {
        /// The TOML file to check (same as --config).
        file: Option<PathBuf>,
        #[command(flatten)]
        args: ServeArgs,
    },
}

#[derive(Debug, Subcommand)]
pub enum BenchCommand {
    /// Write deterministic NDJSON outcome events, skewed across tenants, integrations and codes.
    Gen {
        #[command(flatten)]
        volume: Volume,
        #[arg(long, default_value_t = 1)]
        seed: u64,
        #[arg(long)]
        out: PathBuf,
    },
    /// Decode, validate, dedup and aggregate in-process; then time every dashboard query.
    Ingest {
        /// NDJSON file from `bench gen`; without it, events are generated in memory.
        #[arg(long)]
        input: Option<PathBuf>,
        #[command(flatten)]
        volume: Volume,
        /// Runs of each query.
        #[arg(long, default_value_t = 200)]
        rounds: usize,
        /// Stream `--input` through one thread instead of loading it, so RSS reflects the state.
        #[arg(long, requires = "input")]
        stream: bool,
        /// Keep integrations' and failure groups' hours this many days (`detail_hour_retention_days`).
        #[arg(long, default_value_t = 62, value_parser = clap::value_parser!(u32).range(8..=62))]
        detail_hour_days: u32,
        #[arg(long)]
        json: bool,
    },
    /// Publish through the in-process mock cluster while the service consumes and gRPC clients
    /// query it; then restart the service from its snapshots.
    E2e {
        #[command(flatten)]
        spec: crate::bench::E2eSpec,
        #[arg(long)]
        json: bool,
    },
    /// Run replicas of this binary on a tansu broker (installed separately), load a file, and
    /// compare the largest tenant's calls through its owner and through another replica.
    Replicas {
        #[command(flatten)]
        spec: crate::bench::ReplicasSpec,
        #[arg(long)]
        json: bool,
    },
}

#[derive(Debug, clap::Args)]
pub struct ServeArgs {
    /// TOML config file; flags and IH_* variables override it.
    #[arg(long, env = "IH_CONFIG")]
    pub config: Option<PathBuf>,
    #[arg(long, env = "IH_BROKERS")]
    pub brokers: Option<String>,
    #[arg(long, env = "IH_TOPIC")]
    pub topic: Option<String>,
    #[arg(long, env = "IH_GROUP")]
    pub group: Option<String>,
    /// Whether every producer keys messages by tenant_id; without it a repartition stage
    /// re-keys events first, so retries on other partitions still count once.
    #[arg(long, env = "IH_INPUT_KEYED_BY_TENANT")]
    pub input_keyed_by_tenant: Option<bool>,
    /// Static group membership: a stable name per instance (the pod name in a StatefulSet).
    #[arg(long, env = "IH_INSTANCE_ID")]
    pub instance_id: Option<String>,
    /// This replica's gRPC address as the others reach it (host:port): any replica then
    /// answers for every partition.
    #[arg(long, env = "IH_ADVERTISE_ADDR")]
    pub advertise_addr: Option<String>,
    /// Token presented to the other replicas; the tokens file must grant it with peer = true.
    #[arg(long, env = "IH_PEER_TOKEN", hide_env_values = true)]
    pub peer_token: Option<String>,
    #[arg(long, env = "IH_GRPC_ADDR")]
    pub grpc_addr: Option<SocketAddr>,
    /// Address for the dashboard and the Connect/JSON API (and, without --ops-addr, for
    /// /metrics, /healthz and /readyz).
    #[arg(long, env = "IH_HTTP_ADDR")]
    pub http_addr: Option<SocketAddr>,
    /// Address for /metrics, /healthz and /readyz on their own, in plain HTTP and never behind
    /// mTLS (for kubelet probes and scrapers).
    #[arg(long, env = "IH_OPS_ADDR")]
    pub ops_addr: Option<SocketAddr>,
    /// Directory for snapshots (a persistent volume in production).
    #[arg(long, env = "IH_STATE_DIR")]
    pub state_dir: Option<PathBuf>,
    /// Snapshots in object storage: s3://bucket/prefix, gs://…, az://… or file:///path. S3
    /// reads the standard AWS_* variables (AWS_ENDPOINT_URL, AWS_ALLOW_HTTP, ...).
    #[arg(long, env = "IH_STATE_URL")]
    pub state_url: Option<String>,
    #[arg(long, env = "IH_SNAPSHOT_INTERVAL_MS")]
    pub snapshot_interval_ms: Option<u64>,
    /// A librdkafka property, `key=value`; repeatable (SASL, SSL, timeouts ...). The variable
    /// splits on commas: put secrets in --kafka-properties-file instead.
    #[arg(
        long = "kafka-property",
        env = "IH_KAFKA_PROPERTIES",
        value_delimiter = ','
    )]
    pub kafka_properties: Vec<String>,
    #[arg(long, env = "IH_LOG_FORMAT", value_parser = ["pretty", "json"])]
    pub log_format: Option<String>,
    /// A file of `key=value` librdkafka properties, e.g. a mounted Secret with SASL passwords.
    #[arg(long, env = "IH_KAFKA_PROPERTIES_FILE")]
    pub kafka_properties_file: Option<PathBuf>,
    /// OTLP/gRPC collector for traces and metrics, e.g. http://otel-collector:4317.
    #[arg(long, env = "IH_OTLP_ENDPOINT")]
    pub otlp_endpoint: Option<String>,
    /// TOML file of `[[tokens]]` grants, re-read when it changes (see docs/security.md).
    #[arg(long, env = "IH_TOKENS_FILE")]
    pub tokens_file: Option<PathBuf>,
    /// PEM certificate chain: with --tls-key, gRPC and HTTP serve TLS only.
    #[arg(long, env = "IH_TLS_CERT")]
    pub tls_cert: Option<PathBuf>,
    #[arg(long, env = "IH_TLS_KEY")]
    pub tls_key: Option<PathBuf>,
    /// PEM CA: clients must present a certificate it signed (mTLS).
    #[arg(long, env = "IH_TLS_CLIENT_CA")]
    pub tls_client_ca: Option<PathBuf>,
}

impl ServeArgs {
    pub fn into_config(self) -> anyhow::Result<Config> {
        let mut config = match &self.config {
            Some(path) => Config::from_file(path)?,
            None => Config::default(),
        };
        if let Some(brokers) = self.brokers {
            config.brokers = brokers;
        }
        if let Some(topic) = self.topic {
            config.topic = topic;
        }
        if let Some(group) = self.group {
            config.group = group;
        }
        if let Some(keyed) = self.input_keyed_by_tenant {
            config.input_keyed_by_tenant = keyed;
        }
        if let Some(instance) = self.instance_id {
            config.instance_id = Some(instance);
        }
        if let Some(addr) = self.advertise_addr {
            config.advertise_addr = Some(addr);
        }
        if let Some(token) = self.peer_token {
            config.peer_token = Some(integration_health::config::Secret::new(token));
        }
        if let Some(addr) = self.grpc_addr {
            config.grpc_addr = addr;
        }
        if let Some(endpoint) = self.otlp_endpoint {
            config.otlp_endpoint = Some(endpoint);
        }
        if let Some(addr) = self.http_addr {
            config.http_addr = addr;
        }
        if let Some(addr) = self.ops_addr {
            config.ops_addr = Some(addr);
        }
        if let Some(dir) = self.state_dir {
            config.state_dir = Some(dir);
        }
        if let Some(url) = self.state_url {
            config.state_url = Some(url);
        }
        config.object_store_options = object_store_environment();
        if let Some(interval) = self.snapshot_interval_ms {
            config.snapshot_interval_ms = interval;
        }
        let files = [
            (
                &mut config.kafka_properties_file,
                self.kafka_properties_file,
            ),
            (&mut config.tokens_file, self.tokens_file),
            (&mut config.tls_cert, self.tls_cert),
            (&mut config.tls_key, self.tls_key),
            (&mut config.tls_client_ca, self.tls_client_ca),
        ];
        for (setting, flag) in files {
            if flag.is_some() {
                *setting = flag;
            }
        }
        if let Some(format) = self.log_format {
            config.log_format = if format == "json" {
                LogFormat::Json
            } else {
                LogFormat::Pretty
            };
        }
        for property in self.kafka_properties {
            let (key, value) = property.split_once('=').ok_or_else(|| {
                anyhow::anyhow!("--kafka-property {property:?} must be key=value")
            })?;
            config
                .kafka
                .insert(key.trim().to_owned(), value.trim().to_owned());
        }
        config.validate()?;
        Ok(config)
    }
}

/// The object-store settings of the environment, as the cloud SDKs read them: every `AWS_*`,
/// `GOOGLE_*` and `AZURE_*` variable, lowercased (`AWS_ENDPOINT_URL` → `aws_endpoint_url`).
fn object_store_environment() -> ObjectStoreOptions {
    std::env::vars()
        .filter(|(key, _)| {
            ["AWS_", "GOOGLE_", "AZURE_"]
                .iter()
                .any(|prefix| key.starts_with(prefix))
        })
        .map(|(key, value)| (key.to_ascii_lowercase(), value))
        .collect()
}
