//! The only code that opens block devices: `mkstick devices` and
//! `mkstick flash` (also `build --flash`). Checks, confirmation, writing
//! and verification; see `write` for the order of writes.

pub mod drives;
mod ioctl;
pub mod validate;
pub mod write;

use crate::progress::Progress;
use anyhow::{bail, Context, Result};
pub use drives::Drive;
use drives::{ImageFacts, SystemView, LARGE_DRIVE_BYTES};
use std::io::Write;
use std::os::unix::fs::{FileTypeExt, MetadataExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::ExitCode;

/// What `flash` may do to the target, and how.
#[derive(Debug, Clone, Default)]
pub struct FlashOptions {
    /// Allow a disk that is neither removable nor on USB.
    pub allow_fixed: bool,
    /// The target is a file (created if missing, mode 0600), not a device.
    pub to_file: bool,
    /// Skip reading the written bytes back.
    pub no_verify: bool,
    /// Write every byte the image holds, without comparing first.
    pub full: bool,
}

/// List the drives: removable and USB ones, or `all`; as JSON with `json`.
pub fn devices(all: bool, json: bool, out: &mut impl Write) -> Result<ExitCode> {
    let view = SystemView::live();
    let drives = drives::list(&view).context("listing drives from /sys/block")?;
    let shown: Vec<&Drive> = drives
        .iter()
        .filter(|d| all || d.looks_removable())
        .collect();
    if json {
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
    /// A `--to-file` target that does not exist yet: create it, mode 0600.
    create: bool,
    rdev: u64,
    serial: Option<String>,
}

/// The image, opened once: checked completely before anything else happens,
/// and then the very file that is written.
struct OpenImage {
    file: std::fs::File,
    table: validate::ImageGpt,
    facts: ImageFacts,
    /// `st_dev` and `st_ino`: a target with the same pair is the image itself.
    identity: (u64, u64),
}

fn open_image(image: &Path) -> Result<OpenImage> {
    let shown = image.display();
    let file = std::fs::File::open(image).with_context(|| format!("opening {shown}"))?;
    let meta = file
        .metadata()
        .with_context(|| format!("reading {shown}"))?;
    if !meta.is_file() {
        bail!("{shown} is not an image file");
    }
    let table = validate::image(&file).map_err(|e| {
        anyhow::anyhow!(
            "refusing to flash {shown}: {e:#}; nothing was written (make an image with `mkstick build`)"
        )
    })?;
    let dev = meta.dev();
    Ok(OpenImage {
        facts: ImageFacts {
            size_bytes: table.size_bytes(),
            holder_dev: Some((nix::sys::stat::major(dev), nix::sys::stat::minor(dev))),
        },
        identity: (dev, meta.ino()),
        file,
        table,
    })
}

/// Refuse a `--to-file` target that is the image itself (the same file, a
/// symbolic link to it, or a hard link: the same device and inode).
fn refuse_same_file(shown: &str, meta: &std::fs::Metadata, image: &OpenImage) -> Result<()> {
    if (meta.dev(), meta.ino()) == image.identity {
        bail!("refusing to write {shown}: it is the image file itself (the same file, or a link to it); name another file");
    }
    Ok(())
}

/// A loop device's backing file, if it is the image itself.
fn loop_backs_image(view: &SystemView, name: &str, image: &OpenImage) -> Option<String> {
    let path = view.sys.join("block").join(name).join("loop/backing_file");
    let backing = std::fs::read_to_string(path).ok()?;
    let backing = backing.trim_end_matches('\n');
    let meta = std::fs::metadata(backing).ok()?;
    ((meta.dev(), meta.ino()) == image.identity).then(|| backing.to_string())
}

/// Decide whether `target` may take the image, and show what will be lost.
fn check_target(
    device: &Path,
    opts: &FlashOptions,
    image: &OpenImage,
    confirm: &mut dyn FnMut(&Drive) -> Result<()>,
    progress: &Progress,
) -> Result<Checked> {
    let shown = device.display().to_string();
    let path = match std::fs::canonicalize(device) {
        Ok(p) => p,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound && opts.to_file => {
            return new_file_target(device, &shown, image);
        }
        Err(e) => {
            return Err(e).with_context(|| {
                format!("{shown} does not exist; list drives with `mkstick devices`")
            })
        }
    };
    let meta = std::fs::metadata(&path).with_context(|| format!("reading {}", path.display()))?;
    if meta.is_dir() {
        bail!(
            "refusing to write {shown}: it is a directory; name {}",
            if opts.to_file {
                "a file"
            } else {
                "a whole disk such as /dev/sdb"
            }
        );
    }
    if meta.is_file() {
        if !opts.to_file {
            bail!("refusing to write {shown}: it is a regular file, not a device; pass --to-file to write an image copy into it");
        }
        refuse_same_file(&shown, &meta, image)?;
        return Ok(Checked {
            size_bytes: meta.len().max(image.facts.size_bytes),
            path,
            is_block: false,
            create: false,
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
    if let Some(backing) = loop_backs_image(&view, &name, image) {
        bail!("refusing to write {shown}: it is a loop device over the image file itself ({backing}); pick another device");
    }
    let drive = drives::read_drive(&view, &name)?;
    let refusals = drive.refusals(&image.facts, opts.allow_fixed);
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
    confirm(&drive)?;
    Ok(Checked {
        path,
        size_bytes: drive.size_bytes,
        is_block: true,
        create: false,
        rdev: meta.rdev(),
        serial: drive.serial.clone(),
    })
}

/// A `--to-file` target that does not exist yet, in a directory that does.
fn new_file_target(device: &Path, shown: &str, image: &OpenImage) -> Result<Checked> {
    if std::fs::symlink_metadata(device).is_ok() {
        // O_CREAT would create the link's target, wherever it points.
        bail!("refusing to write {shown}: it is a symbolic link to a file that does not exist; name the file itself");
    }
    let name = device
        .file_name()
        .with_context(|| format!("refusing to write {shown}: it names no file"))?;
    let parent = match device.parent() {
        Some(p) if !p.as_os_str().is_empty() => p,
        _ => Path::new("."),
    };
    let dir = std::fs::canonicalize(parent).with_context(|| {
        format!(
            "refusing to write {shown}: its directory {} does not exist; create it first",
            parent.display()
        )
    })?;
    Ok(Checked {
        path: dir.join(name),
        size_bytes: image.facts.size_bytes,
        is_block: false,
        create: true,
        rdev: 0,
        serial: None,
    })
}

/// Write the image at `image_path` to `device` (a whole disk, or a file
/// with `to_file`), verified unless `no_verify`. The image is checked
/// first, then the target; a device that may take the image is handed to
/// `confirm`, which shows it and may refuse (an error writes nothing).
/// Progress goes to `progress`, the summary to `out`.
pub fn flash(
    image_path: &Path,
    device: &Path,
    opts: &FlashOptions,
    confirm: &mut dyn FnMut(&Drive) -> Result<()>,
    progress: &Progress,
    out: &mut impl Write,
) -> Result<ExitCode> {
    // The image first: a bad one is refused before the target is looked at
    // or anything is asked.
    let image = open_image(image_path)?;
    let checked = check_target(device, opts, &image, confirm, progress)?;

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
    } else if checked.create {
        // The copy holds the server's keys: nobody else may read it.
        options.create_new(true).mode(0o600);
    }
    let file = options.open(&checked.path).map_err(|e| {
        if e.raw_os_error() == Some(nix::libc::EBUSY) {
            anyhow::anyhow!("refusing to write {}: it is busy (mounted or held by another program); nothing was written", checked.path.display())
        } else {
            anyhow::Error::new(e).context(format!("opening {}", checked.path.display()))
        }
    })?;
    if !checked.is_block {
        // What was opened, not what the name meant a moment ago.
        let meta = file
            .metadata()
            .with_context(|| format!("reading {}", checked.path.display()))?;
        if !meta.is_file() {
            bail!(
                "refusing to write {}: it is no longer a regular file; nothing was written",
                checked.path.display()
            );
        }
        refuse_same_file(&checked.path.display().to_string(), &meta, &image)?;
        file.set_permissions(std::fs::Permissions::from_mode(0o600))
            .with_context(|| {
                format!(
                    "making {} private (mode 0600) before writing keys into it",
                    checked.path.display()
                )
            })?;
    }
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
    let image_bytes = image.facts.size_bytes;
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
        if file.metadata()?.len() < image_bytes {
            file.set_len(image_bytes)?;
        }
        checked.size_bytes
    };

    // Ctrl-C, SIGTERM and SIGHUP stop the write cleanly: the partition
    // table is cleared so the stick cannot boot half-written.
    let interrupted = crate::io::cleanup::interrupt_flag();
    let mut target = write::DeviceTarget::new(file, &checked.path, size_bytes, checked.is_block);
    // A file just created holds nothing to compare with.
    let full = opts.full || checked.create;
    let cbar = progress.bar("comparing", if full { 0 } else { image_bytes });
    let wbar = progress.bar(if full { "writing" } else { "rewriting" }, image_bytes);
    let vbar = progress.bar("verifying", if opts.no_verify { 0 } else { image_bytes });
    let report = write::write_image(
        &image.file,
        &image.table,
        &mut target,
        &write::WriteOptions {
            verify: !opts.no_verify,
            full,
            interrupted: &interrupted,
            on_compared: &|n| cbar.inc(n),
            on_written: &|n| wbar.inc(n),
            on_verified: &|n| vbar.inc(n),
            before_partition_table: &|| test_hang_before_partition_table(&interrupted),
        },
    )
    .with_context(|| {
        format!(
            "writing {} to {}",
            image_path.display(),
            checked.path.display()
        )
    })?;
    cbar.finish();
    wbar.finish();
    vbar.finish();
    if report.unchanged {
        writeln!(
            out,
            "{} already holds {}: nothing written; its {} of data and its partition table were read from the device through O_DIRECT and match the image (verified), {:.1} s",
            checked.path.display(),
            image_path.display(),
            crate::io::human_bytes(report.bytes_compared),
            report.verify_seconds.unwrap_or(0.0),
        )?;
        writeln!(out, "the stick holds the server's keys: keep it safe")?;
        return Ok(ExitCode::SUCCESS);
    }
    if checked.is_block {
        // Best effort: tell the kernel about the new partition table.
        let _ = ioctl::reread_partitions(write::Target::file(&target));
    }
    let compared = if full {
        String::new()
    } else {
        format!(
            " ({} compared, {} of it rewritten)",
            crate::io::human_bytes(report.bytes_compared),
            crate::io::human_bytes(report.bytes_rewritten)
        )
    };
    writeln!(
        out,
        "wrote {} to {}: {} written{compared}, {} skipped (empty in the image), {:.1} s{}",
        image_path.display(),
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

/// Test-only: with `MKSTICK_TEST_HANG_BEFORE_PARTITION_TABLE=<file>` set,
/// a flash creates `<file>` once its data is written and verified and then
/// waits, before the partition table is written, until it is interrupted or
/// killed, so the tests can kill it at exactly that point. Not for users.
fn test_hang_before_partition_table(interrupted: &std::sync::atomic::AtomicBool) {
    let Some(marker) = std::env::var_os("MKSTICK_TEST_HANG_BEFORE_PARTITION_TABLE") else {
        return;
    };
    if std::fs::write(&marker, b"").is_err() {
        return;
    }
    while !interrupted.load(std::sync::atomic::Ordering::Relaxed) {
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
}
