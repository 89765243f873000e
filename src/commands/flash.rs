//! `mkstick devices` and `mkstick flash` (also `build --flash`): clap's
//! arguments to [`device::flash`]'s options, and the confirmation at the
//! terminal.

use crate::cli::{DevicesArgs, FlashSafety};
use crate::device::{self, Drive, FlashOptions};
use crate::progress::Progress;
use anyhow::{bail, Result};
use std::io::{BufRead, IsTerminal, Write};
use std::path::Path;
use std::process::ExitCode;

pub fn devices(a: &DevicesArgs, out: &mut impl Write) -> Result<ExitCode> {
    device::devices(a.all, a.json, out)
}

pub fn flash(
    a: &crate::cli::FlashArgs,
    progress: &Progress,
    out: &mut impl Write,
) -> Result<ExitCode> {
    flash_image(&a.image, &a.device, &a.safety, progress, out)
}

/// Flash `image` to `target` with the command line's safety options; `flash`
/// and `build --flash` both come here.
pub fn flash_image(
    image: &Path,
    target: &Path,
    safety: &FlashSafety,
    progress: &Progress,
    out: &mut impl Write,
) -> Result<ExitCode> {
    let opts = FlashOptions {
        allow_fixed: safety.allow_fixed,
        to_file: safety.to_file,
        no_verify: safety.no_verify,
        full: safety.full,
    };
    device::flash(
        image,
        target,
        &opts,
        &mut |drive| confirm(drive, safety.yes),
        progress,
        out,
    )
}

/// Show the drive and make the user type its name, unless `yes`.
fn confirm(drive: &Drive, yes: bool) -> Result<()> {
    let mut err = std::io::stderr();
    writeln!(err, "about to overwrite {}", drive.describe())?;
    for p in &drive.partitions {
        writeln!(err, "  {}", p.describe())?;
    }
    writeln!(err, "everything on it will be lost")?;
    if yes {
        return Ok(());
    }
    if !std::io::stdin().is_terminal() {
        bail!("refusing to write {} without confirmation; pass --yes (scripts only, with the device named explicitly)", drive.path);
    }
    write!(err, "type the device name ({}) to go on: ", drive.name)?;
    err.flush()?;
    let mut line = String::new();
    std::io::stdin().lock().read_line(&mut line)?;
    let typed = line.trim();
    if typed != drive.name && typed != drive.path {
        bail!(
            "you typed {typed:?}, not {:?}; nothing was written",
            drive.name
        );
    }
    Ok(())
}
