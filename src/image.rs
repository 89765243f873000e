//! Stage 3 (assemble): [`Payload`] -> [`Image`], a raw disk image written
//! through a temp file in the target directory, mode 0600, then persisted.
//!
//! Layout: protective MBR and GPT in the first MiB, the FAT32 EFI partition
//! from 1 MiB, and the backup GPT in the last MiB. Every OS file is streamed
//! once: read, hashed and written in one pass, and checked against os.json.
//! An OS that boots live from a root filesystem image has its initramfs and
//! rootfs read in the same pass for the stamps they must share
//! ([`crate::os::live`]).

use crate::formats::{fat, gpt};
use crate::io::{copy_hashed, ProgressReader, Slice};
use crate::os::{check_digest, live};
use crate::payload::grub;
use crate::payload::{EspFile, Payload, Region, Source};
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

/// The EFI partition for this payload: sized for the OS region's files and
/// the config region's room ([`fat::layout`]).
pub fn esp_layout(payload: &Payload) -> FatLayout {
    let sizes = |region| -> Vec<u64> {
        payload
            .files
            .iter()
            .filter(|f| f.region == region)
            .map(|f| f.size_bytes)
            .collect()
    };
    fat::layout(
        &sizes(Region::Os),
        &sizes(Region::Config),
        payload.dirs().len(),
    )
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
    let dirs = payload.dirs();
    let esp = esp_layout(payload);
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

/// Lay the files out on the FAT so that a config change leaves the OS's
/// clusters where they were, and a reflash rewrites only a few MiB:
/// 1. the directories, then every file's directory entry, empty, in path
///    order, so that no directory grows later between two files' data;
/// 2. the OS region's files, in path order: their clusters follow each
///    other from the start of the data area;
/// 3. the config region's files, in path order, after them, in the room
///    [`fat::layout`] kept for them.
///
/// fatfs allocates each new cluster from the FSInfo hint, the one after the
/// last allocated (fatfs 0.3.6, `FileSystem::alloc_cluster`), so the write
/// order is the cluster order; the unit tests below check the result. `write` fills
/// one file.
pub fn place<'a, T: fatfs::ReadWriteSeek>(
    fs: &fatfs::FileSystem<T>,
    dirs: &[String],
    files: &'a [EspFile],
    mut write: impl FnMut(&'a EspFile, &mut fatfs::File<T>) -> Result<()>,
) -> Result<()> {
    let root = fs.root_dir();
    for d in dirs {
        root.create_dir(d)
            .with_context(|| format!("creating {d}/ on the stick"))?;
    }
    for f in files {
        root.create_file(&f.path)
            .with_context(|| format!("creating {} on the stick", f.path))?;
    }
    for region in [Region::Os, Region::Config] {
        for f in files.iter().filter(|f| f.region == region) {
            let mut w = root
                .open_file(&f.path)
                .with_context(|| format!("opening {} on the stick", f.path))?;
            write(f, &mut w)?;
            w.flush().with_context(|| format!("writing {}", f.path))?;
        }
    }
    Ok(())
}

/// Write every file ([`place`]). With a rootfs, the initramfs and the
/// rootfs are scanned on the way for the live contract, which is checked
/// once both are written.
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
    place(fs, dirs, &payload.files, |f, w| {
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
                    copy_hashed(r, w)
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
        Ok(())
    })?;
    if let (Some(initramfs), Some(rootfs)) = (initramfs_scan, rootfs_scan) {
        live::check(&plan.os.manifest.name, &plan.os.dir, initramfs, rootfs)?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::payload::bytes_file as file;
    use std::os::unix::fs::FileExt;

    /// Bytes no other file holds: a file's data can then be found by
    /// content in the volume.
    fn noise(seed: u64, len: usize) -> Vec<u8> {
        let mut x = seed.wrapping_mul(0x9e37_79b9_7f4a_7c15) | 1;
        (0..len)
            .map(|_| {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                x as u8
            })
            .collect()
    }

    /// The files of a stick, as `payload::render` names and sorts them:
    /// the config initrd sorts before the OS's files.
    fn files(config_initrd_bytes: usize) -> Vec<EspFile> {
        let mut files = vec![
            file("EFI/BOOT/BOOTX64.EFI", noise(1, 900_000), Region::Os),
            file("EFI/BOOT/grub.cfg", noise(2, 3_000), Region::Config),
            file("README.txt", noise(3, 2_000), Region::Config),
            file(
                "mkstick/ignition.img",
                noise(4, config_initrd_bytes),
                Region::Config,
            ),
            file("mkstick/manifest.json", noise(5, 1_500), Region::Config),
            file("os/initramfs.img", noise(6, 3_000_000), Region::Os),
            file("os/rootfs.img", noise(7, 9_000_000), Region::Os),
            file("os/vmlinuz", noise(8, 1_500_000), Region::Os),
        ];
        files.sort_by(|a, b| a.path.cmp(&b.path));
        files
    }

    /// Format and fill an EFI partition as `assemble` does, through
    /// [`place`]; its bytes and layout.
    fn volume(files: &[EspFile]) -> (Vec<u8>, FatLayout) {
        let payload = Payload {
            ignition: Default::default(),
            ignition_json: Vec::new(),
            files: files.to_vec(),
        };
        let dirs = payload.dirs();
        let esp = esp_layout(&payload);
        let f = tempfile::tempfile().unwrap();
        f.set_len(esp.size_bytes).unwrap();
        fat::format(&f, 0, esp, 0x1234_5678).unwrap();
        let mut disk = Slice::new(&f, 0, esp.size_bytes);
        let time: &'static fat::FixedTime = Box::leak(Box::new(fat::FixedTime::new(None).unwrap()));
        {
            let fs = fatfs::FileSystem::new(&mut disk, fat::fs_options(time)).unwrap();
            place(&fs, &dirs, files, |f, w| match &f.source {
                Source::Bytes(b) => Ok(w.write_all(b)?),
                Source::Os(_) => unreachable!("these tests hold bytes only"),
            })
            .unwrap();
            fs.unmount().unwrap();
        }
        disk.finish().unwrap();
        let mut bytes = vec![0u8; esp.size_bytes as usize];
        f.read_exact_at(&mut bytes, 0).unwrap();
        (bytes, esp)
    }

    /// Where `file`'s data starts in `volume` (files start on a sector).
    fn offset_of(volume: &[u8], file: &EspFile) -> usize {
        let Source::Bytes(b) = &file.source else {
            unreachable!()
        };
        let head = &b[..b.len().min(4096)];
        (0..volume.len() - b.len())
            .step_by(512)
            .find(|&at| volume[at..at + head.len()] == *head && volume[at..at + b.len()] == b[..])
            .unwrap_or_else(|| panic!("{} is not in the volume", file.path))
    }

    #[test]
    fn a_config_that_grows_within_its_room_leaves_the_os_files_where_they_were() {
        let (small, small_esp) = volume(&files(20_000));
        // 40 times larger, and still within the 4 MiB room.
        let (large, large_esp) = volume(&files(800_000));
        assert_eq!(small_esp, large_esp, "the volume kept its size");
        for f in files(0).iter().filter(|f| f.region == Region::Os) {
            assert_eq!(
                offset_of(&small, f),
                offset_of(&large, f),
                "{} moved",
                f.path
            );
        }
        // What changed is the tables and the config region, a few MiB at
        // most; the OS region's 14 MB are untouched.
        let changed = small.iter().zip(&large).filter(|(a, b)| a != b).count();
        assert!(changed < 1_000_000, "{changed} bytes changed");
        // Both volumes read back whole.
        let tree = fat::read_tree(&large).unwrap();
        assert_eq!(tree.len(), files(0).len());
    }

    #[test]
    fn the_os_region_comes_first_and_the_config_room_is_kept_after_it() {
        let files = files(20_000);
        let (vol, esp) = volume(&files);
        let end_of_os = files
            .iter()
            .filter(|f| f.region == Region::Os)
            .map(|f| offset_of(&vol, f) + f.size_bytes as usize)
            .max()
            .unwrap();
        for f in files.iter().filter(|f| f.region == Region::Config) {
            assert!(
                offset_of(&vol, f) >= end_of_os,
                "{} is before the OS",
                f.path
            );
        }
        let config: Vec<u64> = files
            .iter()
            .filter(|f| f.region == Region::Config)
            .map(|f| f.size_bytes)
            .collect();
        let room = fat::config_room(&config);
        assert_eq!(room, 4 << 20);
        assert!(
            esp.size_bytes as usize - end_of_os >= room as usize,
            "{} bytes after the OS region, {room} kept",
            esp.size_bytes as usize - end_of_os
        );
        // A config region past its room gets a larger one.
        assert_eq!(fat::config_room(&[3 << 20]), 8 << 20);
    }
}
