//! The `kafka-pg-sink` binary: parse arguments, set up logging, load config, run.

use std::io::IsTerminal as _;
use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};
use kafka_pg_sink::config::Config;
use kafka_pg_sink::ops;
use kafka_pg_sink::ops::replay::Filter;
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
    /// Validate the configuration and print it, resolved (defaults, environment), as TOML with
    /// secrets redacted.
    CheckConfig,
    /// Print the CREATE TABLE statements the mappings need (types from `types`, keys as primary
    /// keys), to review and run yourself; nothing is run.
    Ddl,
    /// Check the configuration against the database (tables, columns, types, unique keys,
    /// migrations); exits non-zero with a report of every problem.
    Check,
    /// List or replay records in the dead-letter table.
    #[command(subcommand)]
    DeadLetters(DeadLetterCommand),
    /// Show stored offsets and lag, or set them (dry run by default).
    #[command(subcommand)]
    Offsets(ops::offsets::OffsetsCommand),
}

#[derive(Subcommand)]
enum DeadLetterCommand {
    /// List dead letters, oldest first.
    List {
        #[command(flatten)]
        filter: FilterArgs,
        /// Also list dead letters already replayed.
        #[arg(long)]
        all: bool,
    },
    /// Apply pending dead letters with the current mappings, each exactly once. Dry run unless
    /// --execute.
    Replay {
        #[command(flatten)]
        filter: FilterArgs,
        /// Really apply them.
        #[arg(long)]
        execute: bool,
    },
}

#[derive(clap::Args)]
struct FilterArgs {
    /// Only this topic.
    #[arg(long)]
    topic: Option<String>,
    /// Only this target table (`schema.table`).
    #[arg(long)]
    table: Option<String>,
    /// Only these ids (repeatable).
    #[arg(long = "id")]
    ids: Vec<i64>,
    /// At most this many.
    #[arg(long, default_value_t = 1000)]
    limit: i64,
}

impl FilterArgs {
    fn into_filter(self, include_replayed: bool) -> Filter {
        Filter {
            topic: self.topic,
            table: self.table,
            ids: self.ids,
            include_replayed,
            limit: self.limit,
        }
    }
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
                for line in config.summary() {
                    tracing::info!("{line}");
                }
                tracing::debug!(config = ?config, "Resolved configuration.");
                kafka_pg_sink::app::run(config, token)
                    .await
                    .map(|()| ExitCode::SUCCESS)
            }
            Command::Migrate => ops::migrate(&config).await.map(|()| ExitCode::SUCCESS),
            Command::CheckConfig => {
                print!("{}", config.to_toml());
                Ok(ExitCode::SUCCESS)
            }
            Command::Ddl => {
                print!("{}", ops::create_statements(&config.mappings));
                Ok(ExitCode::SUCCESS)
            }
            Command::Check => ops::check(&config).await,
            Command::DeadLetters(DeadLetterCommand::List { filter, all }) => {
                ops::list_dead_letters(&config, &filter.into_filter(all)).await
            }
            Command::Offsets(command) => ops::offsets::run(&config, command).await,
            Command::DeadLetters(DeadLetterCommand::Replay { filter, execute }) => {
                ops::replay_dead_letters(&config, &filter.into_filter(false), execute).await
            }
        }
    });
    match result {
        Ok(code) => code,
        Err(error) => {
            let message = describe(&error);
            tracing::error!("{message}");
            eprintln!("kafka-pg-sink: {message}");
            ExitCode::FAILURE
        }
    }
}

/// The error and its causes on one line, without a cause its wrapper already quoted (a database
/// error would otherwise read "role x does not exist" three times).
fn describe(error: &anyhow::Error) -> String {
    let mut message = String::new();
    for cause in error.chain() {
        let text = cause.to_string();
        if message.contains(&text) {
            continue;
        }
        if !message.is_empty() {
            message.push_str(": ");
        }
        message.push_str(&text);
    }
    message
}

fn init_tracing(json: bool) {
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info"));
    // Colour only for a person at a terminal: never in a file or a pipe, nor with NO_COLOR.
    let colour = std::io::stderr().is_terminal() && std::env::var_os("NO_COLOR").is_none();
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(colour)
        .with_writer(std::io::stderr);
    if json {
        builder.json().init();
    } else {
        builder.init();
    }
}
