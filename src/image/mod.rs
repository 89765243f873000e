//! Stage 3 (assemble): [`Payload`] -> [`Image`], a raw disk image written
//! through a temp file in the target directory, mode 0600, then persisted.
//!
//! Layout: protective MBR and GPT in the first MiB, the FAT32 EFI partition
//! from 1 MiB, and the backup GPT in the last MiB. Every OS file is streamed
//! once: read, hashed and written in one pass, and checked against os.json.
//! An OS that boots live from a root filesystem image has its initramfs and
//! rootfs read in the same pass for the stamps they must share
//! ([`crate::os::live`]).

pub mod fat;
pub mod gpt;
pub mod grub;
pub mod initrd;

use crate::io::{copy_hashed, ProgressReader, Slice};
use crate::os::{check_digest, live};
use crate::payload::{Payload, Source};
use crate::plan::Plan;
use crate::progress::Progress;
use anyhow::{bail, Context, Result};
use fat::FatLayout;
use std::io::Write;
use std::path::{Path, PathBuf};

const MIB: u64 = 1 << 20;

/// The image as written.
#[derive(Debug, Clone)]
pub struct Image {
    pub path: PathBuf,
    pub size_bytes: u64,
    pub esp: FatLayout,
    pub files: usize,
    pub data_bytes: u64,
}

/// Total image size for an EFI partition of this layout: 1 MiB in front for
/// the GPT, 1 MiB behind for the backup GPT.
pub fn image_size_bytes(esp: FatLayout) -> u64 {
    MIB + esp.size_bytes + MIB
}

/// Refuse an output path that is not a regular file (or a new one), and an
/// existing file unless `force` is set. `-o /dev/sdb` would otherwise
/// replace the device node with an image in RAM and leave the stick as it
/// was.
pub fn check_output(out: &Path, force: bool) -> Result<()> {
    use std::os::unix::fs::FileTypeExt;
    let shown = out.display();
    match std::fs::metadata(out) {
        Ok(meta) if meta.is_dir() => {
            bail!("{shown} is a directory; name an image file with --output")
        }
        Ok(meta) if meta.file_type().is_block_device() => bail!(
            "refusing to write the image over {shown}: it is a device, and --output names an image file; to write a stick, use `mkstick build --flash {shown}` or `mkstick flash IMAGE {shown}`"
        ),
        Ok(meta) if !meta.is_file() => bail!(
            "refusing to write the image over {shown}: it is not a regular file (a device, pipe or socket); name an image file with --output"
        ),
        Ok(_) if !force => bail!(
            "refusing to overwrite {shown}; pass --force to replace it, or choose another --output"
        ),
        Ok(_) => {}
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => return Err(e).with_context(|| format!("reading {shown}")),
    }
    // A new name under /dev is a device that is not there (yet): the image
    // would land in RAM, not on a stick.
    let dir = match out.parent() {
        Some(p) if !p.as_os_str().is_empty() => p,
        _ => Path::new("."),
    };
    if let Ok(dir) = std::fs::canonicalize(dir) {
        if dir.starts_with("/dev") {
            bail!(
                "refusing to write the image to {shown}: /dev holds devices, not files; to write a stick, plug it in and use `mkstick build --flash /dev/sdX` (see `mkstick devices`)"
            );
        }
    }
    Ok(())
}

pub fn assemble(
    plan: &Plan,
    payload: &Payload,
    out: &Path,
    force: bool,
    progress: &Progress,
) -> Result<Image> {
    check_output(out, force)?;
    let sizes: Vec<u64> = payload.files.iter().map(|f| f.size_bytes).collect();
    let dirs = payload.dirs();
    let esp = fat::layout(&sizes, dirs.len());
    let size_bytes = image_size_bytes(esp);

    let parent = match out.parent() {
        Some(p) if !p.as_os_str().is_empty() => p,
        _ => Path::new("."),
    };
    let tmp = crate::io::cleanup::PrivateTemp::new_in(parent)?;
    let file = tmp.file();
    file.set_len(size_bytes)
        .with_context(|| format!("making a {size_bytes}-byte image in {}", parent.display()))?;

    gpt::write(file, plan.ids.disk_guid, plan.ids.esp_guid, esp.size_bytes)?;
    let esp_start = gpt::ESP_FIRST_LBA * gpt::SECTOR_BYTES;
    fat::format(file, esp_start, esp, plan.ids.volume_id)?;

    let head = fat::metadata_bytes(file, esp_start)?;
    let mut disk = Slice::new(file, esp_start, esp.size_bytes).with_head_cache(head)?;
    // fatfs wants a 'static time provider; one small value per build.
    let time: &'static fat::FixedTime =
        Box::leak(Box::new(fat::FixedTime::new(plan.source_date_epoch)?));
    let bar = progress.bar("writing image", payload.total_bytes());
    {
        let fs = fatfs::FileSystem::new(&mut disk, fat::fs_options(time))
            .context("opening the new FAT32 partition")?;
        write_files(&fs, &dirs, plan, payload, &bar)?;
        // Counting the free clusters makes unmount record them in FSInfo.
        fs.stats()
            .context("counting free space on the FAT32 partition")?;
        fs.unmount().context("closing the FAT32 partition")?;
    }
    disk.finish().context("writing the FAT32 tables")?;
    fat::fix_dot_entries(file, esp_start)?;
    bar.finish();
    // No fsync: the image is reproducible from its inputs and appears under
    // its name only through an atomic rename; writing it to a stick
    // (`dd conv=fsync`, later `mkstick flash`) is where durability matters.
    tmp.persist(out, force)?;
    Ok(Image {
        path: out.to_path_buf(),
        size_bytes,
        esp,
        files: payload.files.len(),
        data_bytes: payload.total_bytes(),
    })
}

/// Create the directories, then stream every file in path order. With a
/// rootfs, the initramfs and the rootfs are scanned on the way for the live
/// contract, which is checked once both are written.
fn write_files<T: fatfs::ReadWriteSeek>(
    fs: &fatfs::FileSystem<T>,
    dirs: &[String],
    plan: &Plan,
    payload: &Payload,
    bar: &crate::progress::Bar,
) -> Result<()> {
    let live_boot = plan.rootfs.is_some();
    let mut initramfs_scan = None;
    let mut rootfs_scan = None;
    let root = fs.root_dir();
    for d in dirs {
        root.create_dir(d)
            .with_context(|| format!("creating {d}/ on the stick"))?;
    }
    for f in &payload.files {
        let mut w = root
            .create_file(&f.path)
            .with_context(|| format!("creating {} on the stick", f.path))?;
        match &f.source {
            Source::Bytes(b) => {
                w.write_all(b)
                    .with_context(|| format!("writing {}", f.path))?;
                bar.inc(b.len() as u64);
            }
            Source::Os(path) => {
                let src = std::fs::File::open(path)
                    .with_context(|| format!("opening {}", path.display()))?;
                let (scanner, slot): (Option<live::Scanner>, _) = match f.path.as_str() {
                    grub::INITRAMFS if live_boot => {
                        (Some(live::scan_initramfs), Some(&mut initramfs_scan))
                    }
                    grub::ROOTFS if live_boot => (Some(live::scan_rootfs), Some(&mut rootfs_scan)),
                    _ => (None, None),
                };
                let reader = ProgressReader::new(src, |n| bar.inc(n));
                let ((digest, len), scanned) = live::read_beside(reader, scanner, |r| {
                    copy_hashed(r, &mut w)
                        .with_context(|| format!("copying {} to {}", path.display(), f.path))
                })?;
                if let (Some(slot), Some(scanned)) = (slot, scanned) {
                    *slot = Some((path.as_path(), scanned));
                }
                check_digest(path, f.sha256, digest)?;
                if len != f.size_bytes {
                    bail!(
                        "{} changed size while it was copied; try again",
                        path.display()
                    );
                }
            }
        }
        w.flush().with_context(|| format!("writing {}", f.path))?;
    }
    if let (Some(initramfs), Some(rootfs)) = (initramfs_scan, rootfs_scan) {
        live::check(&plan.os.manifest.name, &plan.os.dir, initramfs, rootfs)?;
    }
    Ok(())
}
