//! mkstick: one mkstick.toml -> a USB stick image that boots a server live.
//!
//! ```text
//! stage      makes                  in
//! parse      StickConfig            config/
//! acquire    OS dir, binaries       os/
//! plan       Plan                   plan/
//! render     Payload                ignition/, payload/
//! assemble   Image                  image.rs
//! flash      the stick              device/
//! ```
//!
//! Each stage uses only earlier stages and the shared modules ([`io`],
//! [`progress`], [`formats`], [`systemd`], [`k8s`], [`overlays`]); the
//! integration test `layout` fails on an import cycle between modules.
//!
//! The subcommands live in [`commands`], one module each; this file holds
//! the module list and the dispatch only.

pub mod boot;
pub mod cli;
pub mod commands;
pub mod config;
pub mod describe;
pub mod device;
pub mod formats;
pub mod ignition;
pub mod image;
pub mod inspect;
pub mod io;
pub mod k8s;
pub mod os;
pub mod overlays;
pub mod payload;
pub mod plan;
pub mod progress;
pub mod systemd;

use anyhow::Result;
use cli::{Cli, Command};
use progress::Progress;
use std::process::ExitCode;

/// Run one command. Output goes to stdout; progress and notes to stderr.
pub fn run(cli: Cli, progress: &Progress) -> Result<ExitCode> {
    let out = || std::io::stdout().lock();
    match cli.command {
        Command::Init(a) => commands::init::init(&a, &mut out()),
        Command::Check(a) => commands::check::check(&a, progress, &mut out()),
        Command::Plan(a) => commands::plan::plan(&a, progress, &mut out()),
        Command::Build(a) => commands::build::build(&a, progress, &mut out()),
        Command::Fetch(a) => commands::fetch::fetch(&a, progress, &mut out()),
        Command::Cache(c) => commands::fetch::cache(&c, progress, &mut out()),
        Command::Inspect(a) => inspect::run(&a, progress, &mut out()),
        // `boot` copies the guest's console to stdout from a thread of its
        // own, so this thread must not hold the stdout lock meanwhile.
        Command::Boot(a) => boot::run(&a, progress),
        Command::Devices(a) => commands::flash::devices(&a, &mut out()),
        Command::Flash(a) => commands::flash::flash(&a, progress, &mut out()),
        Command::Completions(a) => commands::shell::completions(a.shell, &mut out()),
        Command::Man(a) => commands::shell::man(&a, &mut out()),
    }
}
