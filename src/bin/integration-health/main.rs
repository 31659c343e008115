//! The `integration-health` binary: parse the command line and hand each subcommand to the
//! library (`serve`) or to a tool beside it (`demo`, `simulate`, `query`, `bench`).

mod args;
mod bench;
mod client;
mod demo;
mod latency;
mod receiver;
mod simulator;

use std::process::ExitCode;
use std::sync::Arc;

use args::{BenchCommand, Cli, Command, ConfigCommand};
use clap::Parser;
use integration_health::clock::SystemClock;
use integration_health::config::LogFormat;
use integration_health::store::StoreLimits;
use integration_health::testkit::{generate_file, generate_lines};
use integration_health::{ops, server};
use tokio_util::sync::CancellationToken;

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
            let _telemetry = ops::init(
                config.log_format,
                &cli.log,
                server::wiring::otlp_target(&config)?.as_ref(),
            )?;
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
            let _telemetry = ops::init(LogFormat::Pretty, filter, None)?;
            let options = demo::DemoOptions {
                grpc_addr,
                http_addr,
                backfill_days,
                ..demo::DemoOptions::default()
            };
            demo::run_demo(options, shutdown_on_signal()).await?;
        }
        Command::Query(args) => println!("{}", client::run(args).await?),
        Command::Bench(command) => run_bench(command).await?,
        Command::Config(ConfigCommand::Check { file, mut args }) => {
            if file.is_some() {
                args.config = file;
            }
            let config = args.into_config()?;
            server::wiring::check(&config)?;
            println!("{}", config.redacted_toml());
            eprintln!("config is valid");
        }
        Command::Simulate {
            brokers,
            topic,
            backfill_days,
        } => {
            let _telemetry = ops::init(LogFormat::Pretty, &cli.log, None)?;
            demo::run_simulator(&brokers, &topic, backfill_days, shutdown_on_signal()).await?;
        }
    }
    Ok(())
}

fn print_report<T: serde::Serialize>(report: &T, json: bool, text: impl FnOnce(&T) -> String) {
    if json {
        println!(
            "{}",
            serde_json::to_string_pretty(report).unwrap_or_default()
        );
    } else {
        print!("{}", text(report));
    }
}

async fn run_bench(command: BenchCommand) -> anyhow::Result<()> {
    match command {
        BenchCommand::Gen { volume, seed, out } => {
            let bytes = generate_file(volume.spec(seed), &out)?;
            println!(
                "wrote {} events ({:.1} MB) to {}",
                volume.events,
                bytes as f64 / 1e6,
                out.display()
            );
        }
        BenchCommand::Ingest {
            input,
            volume,
            rounds,
            stream,
            detail_hour_days,
            json,
        } => {
            let threads = std::thread::available_parallelism().map_or(1, |n| n.get());
            let limits = StoreLimits::default()
                .with_detail_hours(i64::from(detail_hour_days) * integration_health::store::DAY_MS);
            let report = match (input, stream) {
                (Some(path), true) => bench::run_ingest_stream(&path, rounds, 6, limits)?,
                (Some(path), false) => {
                    bench::run_ingest(&bench::read_lines(&path)?, rounds, threads, limits)?
                }
                (None, _) => {
                    let lines = generate_lines(volume.spec(1));
                    bench::run_ingest(&lines, rounds, threads, limits)?
                }
            };
            print_report(&report, json, bench::render_ingest);
        }
        BenchCommand::E2e { spec, json } => {
            let report = bench::run_e2e(spec).await?;
            print_report(&report, json, bench::render_e2e);
        }
        BenchCommand::Replicas { spec, json } => {
            let report = bench::run_replicas(spec).await?;
            print_report(&report, json, bench::render_replicas);
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
