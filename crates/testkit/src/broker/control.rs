//! The mock broker host's command channel: the host prints `BOOTSTRAP=host:port`, then answers
//! each command line on its stdin with `ok` or `error: …` ([`super::host`] lists the commands).

use std::io::{BufRead, BufReader, Write};
use std::process::{ChildStdin, ChildStdout};

use anyhow::{bail, Context, Result};

/// The mock broker's command channel.
pub struct Control {
    stdin: ChildStdin,
    stdout: BufReader<ChildStdout>,
}

impl Control {
    /// Reads the broker's first line; returns the channel and the bootstrap address.
    pub fn open(stdin: ChildStdin, stdout: ChildStdout) -> Result<(Self, String)> {
        let mut control = Self {
            stdin,
            stdout: BufReader::new(stdout),
        };
        let line = control.read_line()?;
        let bootstrap = line
            .strip_prefix("BOOTSTRAP=")
            .with_context(|| format!("the mock broker printed `{line}`"))?
            .to_owned();
        Ok((control, bootstrap))
    }

    /// Sends one command and requires `ok`.
    pub fn send(&mut self, command: &str) -> Result<()> {
        writeln!(self.stdin, "{command}")?;
        self.stdin.flush()?;
        let answer = self.read_line()?;
        if answer != "ok" {
            bail!("mock broker: `{command}` answered `{answer}`");
        }
        Ok(())
    }

    fn read_line(&mut self) -> Result<String> {
        let mut line = String::new();
        self.stdout.read_line(&mut line)?;
        Ok(line.trim().to_owned())
    }
}
