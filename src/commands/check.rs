//! `mkstick check`: the config and the OS files, without building.

use super::plan_and_render;
use crate::cli::ConfigArgs;
use crate::plan::SeedChoice;
use crate::progress::Progress;
use anyhow::Result;
use std::io::Write;
use std::process::ExitCode;

pub fn check(a: &ConfigArgs, progress: &Progress, out: &mut impl Write) -> Result<ExitCode> {
    let (plan, payload, _lock) = plan_and_render(a, SeedChoice::Derived, progress)?;
    let total = plan.kernel.size_bytes
        + plan.initramfs.size_bytes
        + plan.rootfs.as_ref().map_or(0, |r| r.size_bytes);
    let bar = progress.bar("checking OS", total);
    plan.os.verify(|n| bar.inc(n))?;
    bar.finish();
    writeln!(
        out,
        "{} is valid: {} on {} {}, {} files on the stick; the OS files match os.json",
        a.config.display(),
        plan.node.hostname,
        plan.os.manifest.name,
        plan.os.manifest.version,
        payload.files.len()
    )?;
    Ok(ExitCode::SUCCESS)
}
