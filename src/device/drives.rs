//! What drives a machine has, and which of them are safe to overwrite, read
//! from sysfs, the udev database, mountinfo and swaps. Every path comes from
//! a [`SystemView`], so tests run on recorded fixture trees.

use anyhow::{Context, Result};
use serde::Serialize;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

/// Where the facts about drives are read from.
#[derive(Debug, Clone)]
pub struct SystemView {
    /// `/sys`
    pub sys: PathBuf,
    /// `/run/udev/data`
    pub udev: PathBuf,
    /// `/proc/self/mountinfo`
    pub mountinfo: PathBuf,
    /// `/proc/swaps`
    pub swaps: PathBuf,
    /// Where device nodes live: `/dev`
    pub dev: PathBuf,
}

impl SystemView {
    /// The running machine.
    pub fn live() -> SystemView {
        SystemView::under(Path::new("/"))
    }

    /// A machine whose files are under `root` (a fixture tree).
    pub fn under(root: &Path) -> SystemView {
        SystemView {
            sys: root.join("sys"),
            udev: root.join("run/udev/data"),
            mountinfo: root.join("proc/self/mountinfo"),
            swaps: root.join("proc/swaps"),
            dev: root.join("dev"),
        }
    }
}

/// Above this size a "removable" drive is more likely a USB hard disk than a stick.
pub const LARGE_DRIVE_BYTES: u64 = 128_000_000_000;

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub struct Drive {
    /// Kernel name: `sdb`, `nvme0n1`, `mmcblk0`, `loop3`.
    pub name: String,
    pub path: String,
    pub by_id: Vec<String>,
    pub model: Option<String>,
    pub vendor: Option<String>,
    pub serial: Option<String>,
    pub size_bytes: u64,
    pub logical_sector_bytes: u32,
    pub removable: bool,
    pub read_only: bool,
    /// `usb`, `nvme`, `mmc`, `sata`, `virtio`, `loop` or `other`.
    pub transport: String,
    /// `major:minor`
    pub dev: String,
    pub holders: Vec<String>,
    pub mounts: Vec<String>,
    pub partitions: Vec<Partition>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub struct Partition {
    pub name: String,
    pub path: String,
    pub dev: String,
    pub size_bytes: u64,
    pub label: Option<String>,
    pub fstype: Option<String>,
    pub mounts: Vec<String>,
    pub swap: bool,
    pub holders: Vec<String>,
}

impl Partition {
    /// `/dev/sdb1 29.9 GiB vfat "STICK"`
    pub fn describe(&self) -> String {
        format!(
            "{} {} {}{}",
            self.path,
            crate::io::human_bytes(self.size_bytes),
            self.fstype.as_deref().unwrap_or("-"),
            self.label
                .as_ref()
                .map(|l| format!(" \"{l}\""))
                .unwrap_or_default()
        )
    }
}

/// Why a drive must not be written.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case", tag = "reason")]
pub enum Refusal {
    Mounted {
        device: String,
        mountpoint: String,
    },
    Swap {
        device: String,
    },
    Holders {
        device: String,
        holders: Vec<String>,
    },
    SystemDisk {
        device: String,
        mountpoint: String,
    },
    HoldsImage {
        device: String,
    },
    ReadOnly,
    TooSmall {
        need_bytes: u64,
        have_bytes: u64,
    },
    Fixed {
        transport: String,
    },
    SectorSize {
        bytes: u32,
    },
}

impl Refusal {
    /// What is wrong and what to do, for `refusing to write /dev/X: …`.
    pub fn explain(&self) -> String {
        match self {
            Refusal::Mounted { device, mountpoint } => format!(
                "{device} is mounted on {mountpoint}; unmount it (umount {device}) or pick another device"
            ),
            Refusal::Swap { device } => {
                format!("{device} is in use as swap; run swapoff {device} or pick another device")
            }
            Refusal::Holders { device, holders } => format!(
                "{device} is in use by {} (LVM, RAID or device-mapper); release it first or pick another device",
                holders.join(", ")
            ),
            Refusal::SystemDisk { device, mountpoint } => format!(
                "{device} holds {mountpoint} of this running system; pick another device"
            ),
            Refusal::HoldsImage { device } => format!(
                "{device} holds the image file itself; copy the image elsewhere or pick another device"
            ),
            Refusal::ReadOnly => {
                "the device is read-only (check the stick's lock switch); unlock it or pick another device".to_string()
            }
            Refusal::TooSmall {
                need_bytes,
                have_bytes,
            } => format!(
                "the image needs {} but the device has {}; use a bigger stick",
                crate::io::human_bytes(*need_bytes),
                crate::io::human_bytes(*have_bytes)
            ),
            Refusal::Fixed { transport } => format!(
                "it is a fixed {transport} disk, neither removable nor on USB; if you really mean it, pass --allow-fixed"
            ),
            Refusal::SectorSize { bytes } => format!(
                "its logical sectors are {bytes} bytes and the image is laid out for 512; use another stick"
            ),
        }
    }
}

fn read_trim(p: &Path) -> Option<String> {
    std::fs::read_to_string(p)
        .ok()
        .map(|s| s.trim().to_string())
        .filter(|s| !s.is_empty())
}

fn read_u64(p: &Path) -> Option<u64> {
    read_trim(p)?.parse().ok()
}

/// A size in bytes from a sysfs `size` file, which counts 512-byte sectors
/// whatever the device's sector size (linux/blkdev.h, `SECTOR_SHIFT`).
/// A missing file reads as 0.
fn sectors_as_bytes(p: &Path) -> Result<u64> {
    let sectors = read_u64(p).unwrap_or(0);
    sectors.checked_mul(512).with_context(|| {
        format!(
            "{} says {sectors} sectors, more than any disk has",
            p.display()
        )
    })
}

fn list_dir(p: &Path) -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(p)
        .map(|rd| {
            rd.filter_map(|e| e.ok())
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .collect()
        })
        .unwrap_or_default();
    names.sort();
    names
}

/// The udev database entry of a device: properties and symlinks.
fn udev_data(view: &SystemView, dev: &str) -> (BTreeMap<String, String>, Vec<String>) {
    let mut props = BTreeMap::new();
    let mut links = Vec::new();
    if let Ok(text) = std::fs::read_to_string(view.udev.join(format!("b{dev}"))) {
        for line in text.lines() {
            if let Some(kv) = line.strip_prefix("E:") {
                if let Some((k, v)) = kv.split_once('=') {
                    props.insert(k.to_string(), v.to_string());
                }
            } else if let Some(link) = line.strip_prefix("S:") {
                links.push(link.to_string());
            }
        }
    }
    (props, links)
}

/// Mount points by `major:minor`, from mountinfo.
fn mounts(view: &SystemView) -> BTreeMap<String, Vec<String>> {
    let mut out: BTreeMap<String, Vec<String>> = BTreeMap::new();
    if let Ok(text) = std::fs::read_to_string(&view.mountinfo) {
        for line in text.lines() {
            let f: Vec<&str> = line.split_whitespace().collect();
            if f.len() > 4 {
                // mountinfo escapes spaces as \040.
                out.entry(f[2].to_string())
                    .or_default()
                    .push(f[4].replace("\\040", " "));
            }
        }
    }
    out
}

/// Device names in use as swap, from /proc/swaps.
fn swaps(view: &SystemView) -> Vec<String> {
    std::fs::read_to_string(&view.swaps)
        .unwrap_or_default()
        .lines()
        .skip(1)
        .filter_map(|l| l.split_whitespace().next())
        .filter_map(|p| p.rsplit('/').next().map(str::to_string))
        .collect()
}

fn transport(sys_dev: &Path, name: &str) -> String {
    let real = std::fs::canonicalize(sys_dev)
        .unwrap_or_else(|_| sys_dev.to_path_buf())
        .to_string_lossy()
        .into_owned();
    let t = if real.contains("/usb") {
        "usb"
    } else if name.starts_with("nvme") || real.contains("/nvme") {
        "nvme"
    } else if name.starts_with("mmcblk") || real.contains("/mmc") {
        "mmc"
    } else if real.contains("/ata") {
        "sata"
    } else if name.starts_with("vd") || real.contains("/virtio") {
        "virtio"
    } else if name.starts_with("loop") {
        "loop"
    } else {
        "other"
    };
    t.to_string()
}

/// A serial number: udev's, else the nearest `serial` file up the device path.
fn serial(sys_dev: &Path, props: &BTreeMap<String, String>) -> Option<String> {
    if let Some(s) = props
        .get("ID_SERIAL_SHORT")
        .or_else(|| props.get("ID_SERIAL"))
    {
        return Some(s.clone());
    }
    let mut dir = std::fs::canonicalize(sys_dev).ok()?;
    for _ in 0..12 {
        if let Some(s) =
            read_trim(&dir.join("serial")).or_else(|| read_trim(&dir.join("device/serial")))
        {
            return Some(s);
        }
        dir = dir.parent()?.to_path_buf();
    }
    None
}

/// Read one whole-disk block device.
pub fn read_drive(view: &SystemView, name: &str) -> Result<Drive> {
    let dir = view.sys.join("block").join(name);
    let dev = read_trim(&dir.join("dev")).with_context(|| {
        format!(
            "{name} is not a block device known to {}",
            view.sys.display()
        )
    })?;
    let (props, links) = udev_data(view, &dev);
    let mount_map = mounts(view);
    let swap_names = swaps(view);
    let by_id = links
        .iter()
        .filter_map(|l| l.strip_prefix("disk/by-id/"))
        .map(|l| format!("/dev/disk/by-id/{l}"))
        .collect();
    let mut partitions = Vec::new();
    for sub in list_dir(&dir) {
        let pdir = dir.join(&sub);
        if !pdir.join("partition").exists() {
            continue;
        }
        let pdev = read_trim(&pdir.join("dev")).unwrap_or_default();
        let (pprops, _) = udev_data(view, &pdev);
        partitions.push(Partition {
            path: format!("/dev/{sub}"),
            size_bytes: sectors_as_bytes(&pdir.join("size"))?,
            label: pprops.get("ID_FS_LABEL").cloned(),
            fstype: pprops.get("ID_FS_TYPE").cloned(),
            mounts: mount_map.get(&pdev).cloned().unwrap_or_default(),
            swap: swap_names.contains(&sub),
            holders: list_dir(&pdir.join("holders")),
            dev: pdev,
            name: sub,
        });
    }
    let device = dir.join("device");
    let sector_file = dir.join("queue/logical_block_size");
    let logical_sector_bytes = match read_u64(&sector_file) {
        None => 512,
        Some(n) => u32::try_from(n).with_context(|| {
            format!(
                "{} says sectors of {n} bytes, more than any disk has",
                sector_file.display()
            )
        })?,
    };
    Ok(Drive {
        path: format!("/dev/{name}"),
        by_id,
        model: read_trim(&device.join("model")).or_else(|| read_trim(&device.join("name"))),
        vendor: read_trim(&device.join("vendor")),
        serial: serial(&dir, &props),
        size_bytes: sectors_as_bytes(&dir.join("size"))?,
        logical_sector_bytes,
        removable: read_trim(&dir.join("removable")).as_deref() == Some("1"),
        read_only: read_trim(&dir.join("ro")).as_deref() == Some("1"),
        transport: transport(&dir, name),
        holders: list_dir(&dir.join("holders")),
        mounts: mount_map.get(&dev).cloned().unwrap_or_default(),
        dev,
        name: name.to_string(),
        partitions,
    })
}

/// Every whole-disk block device, except RAM disks, zram and empty loops.
pub fn list(view: &SystemView) -> Result<Vec<Drive>> {
    let names = list_dir(&view.sys.join("block"));
    let mut out = Vec::new();
    for name in names {
        if name.starts_with("ram")
            || name.starts_with("zram")
            || name.starts_with("dm-")
            || name.starts_with("md")
        {
            continue;
        }
        let d = read_drive(view, &name)?;
        if d.size_bytes == 0 {
            continue; // an unused loop device, an empty card reader
        }
        out.push(d);
    }
    Ok(out)
}

/// The facts about the image that decide whether a drive can take it.
#[derive(Debug, Clone, Copy)]
pub struct ImageFacts {
    pub size_bytes: u64,
    /// `st_dev` of the filesystem holding the image, as `major:minor`.
    pub holder_dev: Option<(u64, u64)>,
}

impl Drive {
    /// USB or removable: the kind of drive a stick is.
    pub fn looks_removable(&self) -> bool {
        self.removable || self.transport == "usb" || self.transport == "mmc"
    }

    /// Every reason this drive must not take the image.
    pub fn refusals(&self, image: &ImageFacts, allow_fixed: bool) -> Vec<Refusal> {
        let mut out = Vec::new();
        let system_mounts = ["/", "/boot", "/boot/efi", "/efi", "/var", "/usr", "/home"];
        let whole = std::iter::once((
            self.path.clone(),
            &self.mounts,
            &self.holders,
            false,
            &self.dev,
        ));
        let parts = self
            .partitions
            .iter()
            .map(|p| (p.path.clone(), &p.mounts, &p.holders, p.swap, &p.dev));
        for (device, mounts, holders, swap, dev) in whole.chain(parts) {
            for m in mounts.iter() {
                if system_mounts.contains(&m.as_str()) {
                    out.push(Refusal::SystemDisk {
                        device: device.clone(),
                        mountpoint: m.clone(),
                    });
                } else {
                    out.push(Refusal::Mounted {
                        device: device.clone(),
                        mountpoint: m.clone(),
                    });
                }
            }
            if swap {
                out.push(Refusal::Swap {
                    device: device.clone(),
                });
            }
            if !holders.is_empty() {
                out.push(Refusal::Holders {
                    device: device.clone(),
                    holders: holders.clone(),
                });
            }
            if let Some((maj, min)) = image.holder_dev {
                if *dev == format!("{maj}:{min}") {
                    out.push(Refusal::HoldsImage {
                        device: device.clone(),
                    });
                }
            }
        }
        if self.read_only {
            out.push(Refusal::ReadOnly);
        }
        if self.size_bytes < image.size_bytes {
            out.push(Refusal::TooSmall {
                need_bytes: image.size_bytes,
                have_bytes: self.size_bytes,
            });
        }
        if !allow_fixed && !self.looks_removable() {
            out.push(Refusal::Fixed {
                transport: self.transport.clone(),
            });
        }
        if self.logical_sector_bytes != 512 {
            out.push(Refusal::SectorSize {
                bytes: self.logical_sector_bytes,
            });
        }
        out
    }

    /// A one-line description: model, serial, size, transport.
    pub fn describe(&self) -> String {
        let model = [self.vendor.as_deref(), self.model.as_deref()]
            .iter()
            .flatten()
            .copied()
            .collect::<Vec<_>>()
            .join(" ");
        format!(
            "{} {} ({}, {}{}{})",
            self.path,
            if model.is_empty() {
                "(no model)"
            } else {
                &model
            },
            crate::io::human_bytes(self.size_bytes),
            self.transport,
            if self.removable { ", removable" } else { "" },
            self.serial
                .as_ref()
                .map(|s| format!(", serial {s}"))
                .unwrap_or_default()
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A machine with one disk `sdz` whose sysfs files hold these values.
    fn machine(size: &str, sector: &str) -> (tempfile::TempDir, SystemView) {
        let root = tempfile::tempdir().unwrap();
        let disk = root.path().join("sys/block/sdz");
        std::fs::create_dir_all(disk.join("queue")).unwrap();
        std::fs::write(disk.join("dev"), "8:400\n").unwrap();
        std::fs::write(disk.join("size"), size).unwrap();
        std::fs::write(disk.join("queue/logical_block_size"), sector).unwrap();
        let view = SystemView::under(root.path());
        (root, view)
    }

    #[test]
    fn impossible_sizes_from_sysfs_are_errors_not_wrapped_numbers() {
        let (_root, view) = machine("1000\n", "512\n");
        let d = read_drive(&view, "sdz").unwrap();
        assert_eq!((d.size_bytes, d.logical_sector_bytes), (512_000, 512));
        // 2^63 sectors: the byte count does not fit in 64 bits.
        let (_root, view) = machine("9223372036854775808\n", "512\n");
        let e = format!("{:#}", read_drive(&view, "sdz").unwrap_err());
        assert!(e.contains("more than any disk has"), "{e}");
        // 2^32 + 512 would truncate to 512 as a u32.
        let (_root, view) = machine("1000\n", "4294967808\n");
        let e = format!("{:#}", read_drive(&view, "sdz").unwrap_err());
        assert!(e.contains("sectors of 4294967808 bytes"), "{e}");
    }

    /// Found by scripts/fuzz (target `devices`, input
    /// tests/fixtures/fuzz/devices/disk-size-overflows-bytes): a `size` in
    /// sectors whose byte count does not fit in 64 bits overflowed. It is
    /// now an error naming the file, for the disk and for a partition.
    #[test]
    fn disk_size_that_overflows_bytes_is_an_error() {
        let root = tempfile::tempdir().unwrap();
        let disk = root.path().join("sys/block/sdb");
        let part = disk.join("sdb1");
        std::fs::create_dir_all(&part).unwrap();
        std::fs::write(disk.join("dev"), "2").unwrap();
        std::fs::write(disk.join("size"), "390702968291282222").unwrap();
        std::fs::write(part.join("partition"), "1").unwrap();
        std::fs::write(part.join("size"), "390702968291282222").unwrap();
        let view = SystemView::under(root.path());
        let e = format!("{:#}", read_drive(&view, "sdb").unwrap_err());
        assert!(e.contains("more than any disk has"), "{e}");
        std::fs::write(disk.join("size"), "1000").unwrap();
        let e = format!("{:#}", read_drive(&view, "sdb").unwrap_err());
        assert!(
            e.contains("sdb1/size") && e.contains("more than any disk has"),
            "{e}"
        );
    }
}
