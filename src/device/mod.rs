//! The only code that opens block devices: `mkstick devices` and
//! `mkstick flash` (also `build --flash`). Checks, confirmation, writing
//! and verification; see `write` for the order of writes.

pub mod drives;
mod ioctl;
pub mod write;

use crate::cli::{DevicesArgs, FlashArgs};
use crate::progress::Progress;
use anyhow::{bail, Context, Result};
use drives::{Drive, ImageFacts, SystemView, LARGE_DRIVE_BYTES};
use std::io::{BufRead, IsTerminal, Write};
use std::os::unix::fs::{FileTypeExt, MetadataExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::process::ExitCode;

pub fn devices(a: &DevicesArgs, out: &mut impl Write) -> Result<ExitCode> {
    let view = SystemView::live();
    let drives = drives::list(&view).context("listing drives from /sys/block")?;
    let shown: Vec<&Drive> = drives
        .iter()
        .filter(|d| a.all || d.looks_removable())
        .collect();
    if a.json {
        #[derive(serde::Serialize)]
        struct Entry<'d> {
            #[serde(flatten)]
            drive: &'d Drive,
            safe: bool,
            refusals: Vec<String>,
        }
        let entries: Vec<Entry> = shown
            .iter()
            .map(|d| {
                let r = d.refusals(
                    &ImageFacts {
                        size_bytes: 0,
                        holder_dev: None,
                    },
                    false,
                );
                Entry {
                    drive: d,
                    safe: r.is_empty(),
                    refusals: r.iter().map(|r| r.explain()).collect(),
                }
            })
            .collect();
        serde_json::to_writer_pretty(&mut *out, &entries)?;
        writeln!(out)?;
        return Ok(ExitCode::SUCCESS);
    }
    if shown.is_empty() {
        writeln!(
            out,
            "no removable or USB drives found; plug in a stick, or use --all to see every drive"
        )?;
    }
    for d in shown {
        let refusals = d.refusals(
            &ImageFacts {
                size_bytes: 0,
                holder_dev: None,
            },
            false,
        );
        writeln!(out, "{}", d.describe())?;
        for id in &d.by_id {
            writeln!(out, "    {id}")?;
        }
        for p in &d.partitions {
            writeln!(out, "    {}", p.describe())?;
            for m in &p.mounts {
                writeln!(out, "      mounted on {m}")?;
            }
        }
        if refusals.is_empty() {
            writeln!(out, "    can be written")?;
        } else {
            for r in refusals {
                writeln!(out, "    UNSAFE: {}", r.explain())?;
            }
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// The target after every check, ready to open.
struct Checked {
    path: PathBuf,
    size_bytes: u64,
    is_block: bool,
    rdev: u64,
    serial: Option<String>,
}

fn image_facts(image: &Path) -> Result<ImageFacts> {
    let meta = std::fs::metadata(image).with_context(|| format!("reading {}", image.display()))?;
    if !meta.is_file() {
        bail!("{} is not an image file", image.display());
    }
    let dev = meta.dev();
    Ok(ImageFacts {
        size_bytes: meta.len(),
        holder_dev: Some((nix::sys::stat::major(dev), nix::sys::stat::minor(dev))),
    })
}

/// Decide whether `target` may take the image, and show what will be lost.
fn check_target(a: &FlashArgs, image: &ImageFacts, progress: &Progress) -> Result<Checked> {
    let shown = a.device.display().to_string();
    let path = std::fs::canonicalize(&a.device)
        .with_context(|| format!("{shown} does not exist; list drives with `mkstick devices`"))?;
    let meta = std::fs::metadata(&path).with_context(|| format!("reading {}", path.display()))?;
    if meta.is_file() {
        if !a.safety.to_file {
            bail!("refusing to write {shown}: it is a regular file, not a device; pass --to-file to write an image copy into it");
        }
        return Ok(Checked {
            size_bytes: meta.len().max(image.size_bytes),
            path,
            is_block: false,
            rdev: 0,
            serial: None,
        });
    }
    if !meta.file_type().is_block_device() {
        bail!("refusing to write {shown}: it is not a block device; name a whole disk such as /dev/sdb");
    }
    let name = path
        .file_name()
        .and_then(|n| n.to_str())
        .context("the device has no name")?
        .to_string();
    let view = SystemView::live();
    if !view.sys.join("block").join(&name).exists() {
        bail!("refusing to write {shown}: {} is a partition; name the whole disk (see `mkstick devices`)", path.display());
    }
    let drive = drives::read_drive(&view, &name)?;
    let refusals = drive.refusals(image, a.safety.allow_fixed);
    if !refusals.is_empty() {
        let why: Vec<String> = refusals.iter().map(|r| r.explain()).collect();
        bail!("refusing to write {}: {}", drive.path, why.join("; "));
    }
    if drive.size_bytes > LARGE_DRIVE_BYTES {
        progress.note(&format!(
            "warning: {} is {}: that is big for a USB stick; make sure it is not a USB hard disk",
            drive.path,
            crate::io::human_bytes(drive.size_bytes)
        ));
    }
    confirm(a, &drive)?;
    Ok(Checked {
        path,
        size_bytes: drive.size_bytes,
        is_block: true,
        rdev: meta.rdev(),
        serial: drive.serial.clone(),
    })
}

/// Show the drive and make the user type its name, unless --yes.
fn confirm(a: &FlashArgs, drive: &Drive) -> Result<()> {
    let mut err = std::io::stderr();
    writeln!(err, "about to overwrite {}", drive.describe())?;
    for p in &drive.partitions {
        writeln!(err, "  {}", p.describe())?;
    }
    writeln!(err, "everything on it will be lost")?;
    if a.safety.yes {
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

pub fn flash(a: &FlashArgs, progress: &Progress, out: &mut impl Write) -> Result<ExitCode> {
    let image = image_facts(&a.image)?;
    let checked = check_target(a, &image, progress)?;

    // Identity re-check just before opening: the name may now be another disk.
    if checked.is_block {
        let meta = std::fs::metadata(&checked.path)?;
        let name = checked
            .path
            .file_name()
            .and_then(|n| n.to_str())
            .unwrap_or("");
        let now = drives::read_drive(&SystemView::live(), name)?;
        if meta.rdev() != checked.rdev
            || now.size_bytes != checked.size_bytes
            || now.serial != checked.serial
        {
            bail!("{} changed while you confirmed (another disk now has its name); nothing was written, run mkstick flash again", checked.path.display());
        }
    }

    let mut options = std::fs::OpenOptions::new();
    options.read(true).write(true);
    if checked.is_block {
        // O_EXCL on a block device fails with EBUSY if anything holds it.
        options.custom_flags(nix::libc::O_EXCL);
    } else {
        options.create(true);
    }
    let file = options.open(&checked.path).map_err(|e| {
        if e.raw_os_error() == Some(nix::libc::EBUSY) {
            anyhow::anyhow!("refusing to write {}: it is busy (mounted or held by another program); nothing was written", checked.path.display())
        } else {
            anyhow::Error::new(e).context(format!("opening {}", checked.path.display()))
        }
    })?;
    // Keep udev from probing the disk while it is half-written. The lock is
    // held through a second descriptor of the same open file.
    let _lock = nix::fcntl::Flock::lock(
        file.try_clone()?,
        nix::fcntl::FlockArg::LockExclusiveNonblock,
    )
    .map_err(|(_, e)| {
        anyhow::anyhow!(
            "refusing to write {}: another program has it locked ({e})",
            checked.path.display()
        )
    })?;
    let size_bytes = if checked.is_block {
        let sector = ioctl::logical_sector_bytes(&file).context("reading the sector size")?;
        if sector != 512 {
            bail!(
                "refusing to write {}: its logical sectors are {sector} bytes, the image's are 512",
                checked.path.display()
            );
        }
        ioctl::size_bytes(&file).context("reading the device size")?
    } else {
        if file.metadata()?.len() < image.size_bytes {
            file.set_len(image.size_bytes)?;
        }
        checked.size_bytes
    };

    // Ctrl-C, SIGTERM and SIGHUP stop the write cleanly: the partition
    // table is cleared so the stick cannot boot half-written.
    let interrupted = crate::io::cleanup::interrupt_flag();
    let img =
        std::fs::File::open(&a.image).with_context(|| format!("opening {}", a.image.display()))?;
    let mut target = write::DeviceTarget::new(file, &checked.path, size_bytes, checked.is_block);
    let wbar = progress.bar("writing", image.size_bytes);
    let vbar = progress.bar(
        "verifying",
        if a.safety.no_verify {
            0
        } else {
            image.size_bytes
        },
    );
    let report = write::write_image(
        &img,
        &mut target,
        &write::WriteOptions {
            verify: !a.safety.no_verify,
            interrupted: &interrupted,
            on_written: &|n| wbar.inc(n),
            on_verified: &|n| vbar.inc(n),
        },
    )
    .with_context(|| {
        format!(
            "writing {} to {}",
            a.image.display(),
            checked.path.display()
        )
    })?;
    wbar.finish();
    vbar.finish();
    if checked.is_block {
        // Best effort: tell the kernel about the new partition table.
        let _ = ioctl::reread_partitions(write::Target::file(&target));
    }
    writeln!(
        out,
        "wrote {} to {}: {} written, {} skipped (empty in the image), {:.1} s{}",
        a.image.display(),
        checked.path.display(),
        crate::io::human_bytes(report.bytes_written),
        crate::io::human_bytes(report.bytes_skipped),
        report.write_seconds,
        match report.verify_seconds {
            Some(s) => format!(
                "; verified by reading back from the device in {s:.1} s (sha256 {})",
                report.digest
            ),
            None => "; NOT verified (--no-verify)".to_string(),
        }
    )?;
    if report.gpt_moved {
        writeln!(out, "moved the backup GPT to the end of the device")?;
    }
    writeln!(out, "the stick holds the server's keys: keep it safe")?;
    Ok(ExitCode::SUCCESS)
}
