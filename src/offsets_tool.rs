//! The `offsets` subcommand. (Being written.)

use std::process::ExitCode;

use crate::config::Config;

/// `offsets` subcommands.
#[derive(clap::Subcommand, Debug)]
pub enum OffsetsCommand {
    /// Show stored offsets with the broker's log start/end and the lag per partition.
    Show {
        #[arg(long)]
        topic: Option<String>,
    },
}

/// Runs an `offsets` subcommand.
pub async fn run(_config: &Config, _command: OffsetsCommand) -> anyhow::Result<ExitCode> {
    anyhow::bail!("not implemented yet")
}
