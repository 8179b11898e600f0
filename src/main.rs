//! The `kafka-pg-sink` binary: parse arguments, set up logging, load config, run.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};
use kafka_pg_sink::config::Config;
use tokio_util::sync::CancellationToken;
use tracing_subscriber::EnvFilter;

/// Kafka → PostgreSQL with exactly-once effect.
#[derive(Parser)]
#[command(version, about)]
struct Cli {
    /// Configuration file (TOML); `KAFKA_PG_SINK__SECTION__KEY` variables override it.
    #[arg(
        long,
        short,
        env = "KAFKA_PG_SINK_CONFIG",
        default_value = "config/kafka-pg-sink.toml"
    )]
    config: PathBuf,
    /// Log as JSON lines instead of human-readable text. The level filter is `RUST_LOG`.
    #[arg(long, env = "KAFKA_PG_SINK_LOG_JSON")]
    log_json: bool,
    #[command(subcommand)]
    command: Option<Command>,
}

#[derive(Subcommand)]
enum Command {
    /// Consume and write (the default).
    Run,
    /// Apply the connector's own migrations and exit.
    Migrate,
    /// Validate the configuration and print it with secrets redacted.
    CheckConfig,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    init_tracing(cli.log_json);
    let config = match Config::load(&cli.config) {
        Ok(config) => config,
        Err(error) => {
            eprintln!("kafka-pg-sink: {error}");
            return ExitCode::from(2);
        }
    };
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(error) => {
            eprintln!("kafka-pg-sink: cannot start the async runtime: {error}");
            return ExitCode::FAILURE;
        }
    };
    let result = runtime.block_on(async {
        match cli.command.unwrap_or(Command::Run) {
            Command::Run => {
                let token = CancellationToken::new();
                kafka_pg_sink::shutdown::install(token.clone())?;
                tracing::info!(config = ?config, "Configuration loaded.");
                kafka_pg_sink::app::run(config, token).await
            }
            Command::Migrate => kafka_pg_sink::app::migrate_only(&config).await,
            Command::CheckConfig => {
                println!("{config:#?}");
                Ok(())
            }
        }
    });
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            tracing::error!("{error:#}");
            eprintln!("kafka-pg-sink: {error:#}");
            ExitCode::FAILURE
        }
    }
}

fn init_tracing(json: bool) {
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    if json {
        builder.json().init();
    } else {
        builder.init();
    }
}
