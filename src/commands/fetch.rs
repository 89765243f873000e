//! `mkstick fetch` and `mkstick cache`.

use super::acquire_os;
use crate::cli::{self, ConfigArgs};
use crate::progress::Progress;
use crate::{config, os, plan};
use anyhow::Result;
use std::io::Write;
use std::process::ExitCode;

pub fn fetch(a: &ConfigArgs, progress: &Progress, out: &mut impl Write) -> Result<ExitCode> {
    let loaded = config::load(&a.config)?;
    // Checked before anything is downloaded.
    let checked = plan::check_config(&loaded)?;
    let got = acquire_os(&loaded, &checked, a, true, progress)?;
    let dir = got.dir;
    let os = os::OsDir::load(&dir)?;
    if let Some(s) = got.summary {
        writeln!(out, "{s}")?;
    }
    writeln!(
        out,
        "{} {} is ready in {}",
        os.manifest.name,
        os.manifest.version,
        dir.display()
    )?;
    Ok(ExitCode::SUCCESS)
}

pub fn cache(c: &cli::CacheCommand, progress: &Progress, out: &mut impl Write) -> Result<ExitCode> {
    match c {
        cli::CacheCommand::Ls(a) => {
            let cache = os::cache::Cache::open(a.cache_dir.as_deref())?;
            write!(out, "{}", os::cache::describe(&cache)?)?;
        }
        cli::CacheCommand::Prune(a) => {
            let cache = os::cache::Cache::open(a.cache.cache_dir.as_deref())?;
            let _lock = cache.lock(progress)?;
            writeln!(out, "{}", cache.prune(a.keep)?)?;
        }
    }
    Ok(ExitCode::SUCCESS)
}
