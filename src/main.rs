//! The `integration-health` binary: parse arguments, build a `Config`, call the library.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;

use clap::{Parser, Subcommand};
use integration_health::cli::{self, QueryArgs};
use integration_health::clock::SystemClock;
use integration_health::config::{Config, LogFormat};
use integration_health::embedded::{self, DemoOptions};
use integration_health::{bench, server, telemetry};
use tokio_util::sync::CancellationToken;

#[derive(Debug, Parser)]
#[command(
    name = "integration-health",
    version,
    about = "Health of third-party integrations, counted from Kafka and served over gRPC"
)]
struct Cli {
    /// Log filter, e.g. `info` or `info,integration_health=debug`.
    #[arg(long, env = "IH_LOG", default_value = "info", global = true)]
    log: String,
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
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
    Query(QueryArgs),
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
enum ConfigCommand {
    /// Validate the settings `serve` would run with, and print them with secrets masked.
    Check {
        /// The TOML file to check (same as --config).
        file: Option<PathBuf>,
        #[command(flatten)]
        args: ServeArgs,
    },
}

#[derive(Debug, Subcommand)]
enum BenchCommand {
    /// Write deterministic NDJSON events (SPEC §2), skewed across tenants, integrations and codes.
    Gen {
        #[arg(long, default_value_t = 1_000_000)]
        events: u64,
        #[arg(long, default_value_t = 100)]
        tenants: u32,
        #[arg(long, default_value_t = 60)]
        days: u32,
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
        #[arg(long, default_value_t = 1_000_000)]
        events: u64,
        #[arg(long, default_value_t = 100)]
        tenants: u32,
        #[arg(long, default_value_t = 60)]
        days: u32,
        /// Runs of each query.
        #[arg(long, default_value_t = 200)]
        rounds: usize,
        /// Stream `--input` through one thread instead of loading it, so RSS reflects the state.
        #[arg(long, requires = "input")]
        stream: bool,
        #[arg(long)]
        json: bool,
    },
    /// Publish through the in-process mock cluster while the service consumes and gRPC clients
    /// query it; then restart the service from its snapshots.
    E2e {
        #[command(flatten)]
        spec: bench::E2eSpec,
        #[arg(long)]
        json: bool,
    },
}

#[derive(Debug, clap::Args)]
struct ServeArgs {
    /// TOML config file; flags and IH_* variables override it.
    #[arg(long, env = "IH_CONFIG")]
    config: Option<PathBuf>,
    #[arg(long, env = "IH_BROKERS")]
    brokers: Option<String>,
    #[arg(long, env = "IH_TOPIC")]
    topic: Option<String>,
    #[arg(long, env = "IH_GROUP")]
    group: Option<String>,
    #[arg(long, env = "IH_GRPC_ADDR")]
    grpc_addr: Option<SocketAddr>,
    /// Address for /metrics, /healthz and /readyz.
    #[arg(long, env = "IH_HTTP_ADDR")]
    http_addr: Option<SocketAddr>,
    /// Directory for snapshots (a persistent volume in production).
    #[arg(long, env = "IH_STATE_DIR")]
    state_dir: Option<PathBuf>,
    #[arg(long, env = "IH_SNAPSHOT_INTERVAL_MS")]
    snapshot_interval_ms: Option<u64>,
    /// A librdkafka property, `key=value`; repeatable (SASL, SSL, timeouts ...).
    #[arg(
        long = "kafka-property",
        env = "IH_KAFKA_PROPERTIES",
        value_delimiter = ','
    )]
    kafka_properties: Vec<String>,
    #[arg(long, env = "IH_LOG_FORMAT", value_parser = ["pretty", "json"])]
    log_format: Option<String>,
    /// OTLP/gRPC collector for traces and metrics, e.g. http://otel-collector:4317.
    #[arg(long, env = "IH_OTLP_ENDPOINT")]
    otlp_endpoint: Option<String>,
}

impl ServeArgs {
    fn into_config(self) -> anyhow::Result<Config> {
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
        if let Some(addr) = self.grpc_addr {
            config.grpc_addr = addr;
        }
        if let Some(endpoint) = self.otlp_endpoint {
            config.otlp_endpoint = Some(endpoint);
        }
        if let Some(addr) = self.http_addr {
            config.http_addr = addr;
        }
        if let Some(dir) = self.state_dir {
            config.state_dir = Some(dir);
        }
        if let Some(interval) = self.snapshot_interval_ms {
            config.snapshot_interval_ms = interval;
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

/// Cancelled on ctrl-c or SIGTERM.
fn shutdown_on_signal() -> CancellationToken {
    let token = CancellationToken::new();
    let trigger = token.clone();
    tokio::spawn(async move {
        let ctrl_c = tokio::signal::ctrl_c();
        #[cfg(unix)]
        {
            let mut term =
                match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
                    Ok(term) => term,
                    Err(_) => {
                        let _ = ctrl_c.await;
                        trigger.cancel();
                        return;
                    }
                };
            tokio::select! {
                _ = ctrl_c => {}
                _ = term.recv() => {}
            }
        }
        #[cfg(not(unix))]
        let _ = ctrl_c.await;
        trigger.cancel();
    });
    token
}

async fn run(cli: Cli) -> anyhow::Result<()> {
    match cli.command {
        Command::Serve(args) => {
            let config = args.into_config()?;
            let _telemetry =
                telemetry::init(config.log_format, &cli.log, config.otlp_endpoint.as_deref())?;
            server::run(&config, Arc::new(SystemClock), shutdown_on_signal()).await?;
        }
        Command::Demo {
            grpc_addr,
            http_addr,
            backfill_days,
        } => {
            // The demo prints its own progress; keep the log to problems.
            let filter = if cli.log == "info" {
                "warn,librdkafka=error"
            } else {
                cli.log.as_str()
            };
            let _telemetry = telemetry::init(LogFormat::Pretty, filter, None)?;
            let options = DemoOptions {
                grpc_addr,
                http_addr,
                backfill_days,
                ..DemoOptions::default()
            };
            embedded::run_demo(options, shutdown_on_signal()).await?;
        }
        Command::Query(args) => {
            println!("{}", cli::run(args).await?);
        }
        Command::Bench(command) => run_bench(command).await?,
        Command::Config(ConfigCommand::Check { file, mut args }) => {
            if file.is_some() {
                args.config = file;
            }
            let config = args.into_config()?;
            println!("{}", config.redacted_toml());
            eprintln!("config is valid");
        }
        Command::Simulate {
            brokers,
            topic,
            backfill_days,
        } => {
            let _telemetry = telemetry::init(LogFormat::Pretty, &cli.log, None)?;
            embedded::run_simulator(&brokers, &topic, backfill_days, shutdown_on_signal()).await?;
        }
    }
    Ok(())
}

async fn run_bench(command: BenchCommand) -> anyhow::Result<()> {
    let now_ms = chrono::Utc::now().timestamp_millis();
    match command {
        BenchCommand::Gen {
            events,
            tenants,
            days,
            seed,
            out,
        } => {
            let spec = bench::GenSpec {
                events,
                tenants,
                days,
                seed,
                end_ms: now_ms,
            };
            let bytes = bench::generate_file(spec, &out)?;
            println!(
                "wrote {events} events ({:.1} MB) to {}",
                bytes as f64 / 1e6,
                out.display()
            );
        }
        BenchCommand::Ingest {
            input,
            events,
            tenants,
            days,
            rounds,
            stream,
            json,
        } => {
            let threads = std::thread::available_parallelism().map_or(1, |n| n.get());
            let report = match (input, stream) {
                (Some(path), true) => bench::run_ingest_stream(&path, rounds, 6)?,
                (Some(path), false) => {
                    bench::run_ingest(&bench::read_lines(&path)?, rounds, threads)?
                }
                (None, _) => {
                    let spec = bench::GenSpec {
                        events,
                        tenants,
                        days,
                        seed: 1,
                        end_ms: now_ms,
                    };
                    bench::run_ingest(&bench::generate_lines(spec), rounds, threads)?
                }
            };
            if json {
                println!("{}", serde_json::to_string_pretty(&report)?);
            } else {
                print!("{}", bench::render_ingest(&report));
            }
        }
        BenchCommand::E2e { spec, json } => {
            let report = bench::run_e2e(spec).await?;
            if json {
                println!("{}", serde_json::to_string_pretty(&report)?);
            } else {
                print!("{}", bench::render_e2e(&report));
            }
        }
    }
    Ok(())
}

#[tokio::main]
async fn main() -> ExitCode {
    let cli = Cli::parse();
    match run(cli).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            eprintln!("error: {err:#}");
            ExitCode::FAILURE
        }
    }
}
