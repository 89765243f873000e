//! `mkstick completions SHELL` and `mkstick man`: generated from the clap
//! definitions.

use crate::cli::{self, Cli};
use anyhow::{Context, Result};
use std::io::Write;
use std::process::ExitCode;

/// A completion script for `shell`, generated from the clap definitions.
pub fn completions(shell: clap_complete::Shell, out: &mut impl Write) -> Result<ExitCode> {
    let mut cmd = <Cli as clap::CommandFactory>::command();
    clap_complete::generate(shell, &mut cmd, "mkstick", out);
    Ok(ExitCode::SUCCESS)
}

/// The manual page, roff, generated from the clap definitions: mkstick(1)
/// on stdout, or with `--dir` that page and one per command, as files.
pub fn man(a: &cli::ManArgs, out: &mut impl Write) -> Result<ExitCode> {
    let cmd = <Cli as clap::CommandFactory>::command();
    match &a.dir {
        None => clap_mangen::Man::new(cmd)
            .render(out)
            .context("writing the manual page")?,
        Some(dir) => clap_mangen::generate_to(cmd, dir)
            .with_context(|| format!("writing manual pages into {}", dir.display()))?,
    }
    Ok(ExitCode::SUCCESS)
}
