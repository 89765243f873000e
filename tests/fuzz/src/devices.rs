//! `devices`: what `mkstick devices` and `flash` read about drives (sysfs
//! attributes, the udev database, mountinfo, swaps), on a machine tree
//! the input describes: one disk with one partition, laid out as the
//! kernel lays them out. The input is [`FIELDS`] separated by NUL bytes;
//! an empty field leaves its file out.

use crate::Seed;
use anyhow::{Context, Result};
use mkstick::device::drives::{self, ImageFacts, SystemView};
use std::path::{Path, PathBuf};

/// What each NUL-separated field of an input is.
pub const FIELDS: [&str; 19] = [
    "disk name",
    "device path under /sys/devices",
    "disk dev (major:minor)",
    "disk size (sectors)",
    "removable",
    "ro",
    "queue/logical_block_size",
    "device/model",
    "device/vendor",
    "device/serial",
    "udev data of the disk",
    "partition name",
    "partition dev",
    "partition size",
    "udev data of the partition",
    "partition holders (one a line)",
    "disk holders (one a line)",
    "mountinfo",
    "swaps",
];

const DEFAULT_DEVPATH: &str = "pci0000:00/0000:00:14.0/usb2/2-1/2-1:1.0/host6/target6:0:0/6:0:0:0";

/// A name that is one path component, or `None`.
fn component(b: &[u8]) -> Option<String> {
    let s = std::str::from_utf8(b).ok()?.trim();
    (!s.is_empty() && s.len() <= 64 && !s.contains('/') && s != "." && s != "..")
        .then(|| s.to_string())
}

/// Write one file of the machine tree. Names from the input may collide
/// (a partition called `size`): what cannot be made is left out.
fn write(path: &Path, b: &[u8]) {
    if b.is_empty() {
        return;
    }
    if let Some(p) = path.parent() {
        let _ = std::fs::create_dir_all(p);
    }
    let _ = std::fs::write(path, b);
}

fn holders(dir: &Path, b: &[u8]) {
    for line in b.split(|&c| c == b'\n') {
        if let Some(name) = component(line) {
            let _ = std::fs::create_dir_all(dir.join(name));
        }
    }
}

pub fn run(data: &[u8]) {
    let mut f: Vec<&[u8]> = data.splitn(FIELDS.len(), |&b| b == 0).collect();
    f.resize(FIELDS.len(), b"");
    let root = crate::scratch().join("machine");
    let _ = std::fs::remove_dir_all(&root);
    let name = component(f[0]).unwrap_or_else(|| "sdb".into());
    let devpath: Vec<String> = f[1]
        .split(|&c| c == b'/')
        .filter_map(component)
        .take(12)
        .collect();
    let devpath = if devpath.is_empty() {
        DEFAULT_DEVPATH.to_string()
    } else {
        devpath.join("/")
    };
    let disk = root
        .join("sys/devices")
        .join(&devpath)
        .join("block")
        .join(&name);
    std::fs::create_dir_all(&disk).expect("creating the disk's directory");
    std::fs::create_dir_all(root.join("sys/block")).expect("creating /sys/block");
    std::os::unix::fs::symlink(
        format!("../devices/{devpath}/block/{name}"),
        root.join("sys/block").join(&name),
    )
    .expect("linking /sys/block/NAME");
    for (i, file) in [
        (2, "dev"),
        (3, "size"),
        (4, "removable"),
        (5, "ro"),
        (6, "queue/logical_block_size"),
        (7, "device/model"),
        (8, "device/vendor"),
        (9, "device/serial"),
    ] {
        write(&disk.join(file), f[i]);
    }
    holders(&disk.join("holders"), f[16]);
    let udev = root.join("run/udev/data");
    std::fs::create_dir_all(&udev).expect("creating the udev database");
    for (dev, data) in [(f[2], f[10]), (f[12], f[14])] {
        if let Some(dev) = component(dev) {
            write(&udev.join(format!("b{dev}")), data);
        }
    }
    if let Some(part) = component(f[11]) {
        let p = disk.join(part);
        write(&p.join("partition"), b"1\n");
        write(&p.join("dev"), f[12]);
        write(&p.join("size"), f[13]);
        holders(&p.join("holders"), f[15]);
    }
    write(&root.join("proc/self/mountinfo"), f[17]);
    write(&root.join("proc/swaps"), f[18]);

    // What `devices` (text and --json) and `flash`'s checks do with it.
    let view = SystemView::under(&root);
    let Ok(list) = drives::list(&view) else {
        return;
    };
    for d in &list {
        let _ = d.describe();
        for p in &d.partitions {
            let _ = p.describe();
        }
        for (image, allow_fixed) in [
            (
                ImageFacts {
                    size_bytes: 0,
                    holder_dev: None,
                },
                false,
            ),
            (
                ImageFacts {
                    size_bytes: 1 << 30,
                    holder_dev: Some((8, 17)),
                },
                true,
            ),
        ] {
            for r in d.refusals(&image, allow_fixed) {
                let _ = r.explain();
            }
        }
    }
    let _ = serde_json::to_vec(&list);
    let _ = drives::read_drive(&view, &name);
}

/// A field's bytes from a file, or nothing when it is absent.
fn read(p: &Path) -> Vec<u8> {
    std::fs::read(p).unwrap_or_default()
}

fn names(dir: &Path) -> Vec<u8> {
    let mut v: Vec<String> = std::fs::read_dir(dir)
        .map(|rd| {
            rd.flatten()
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .collect()
        })
        .unwrap_or_default();
    v.sort();
    v.join("\n").into_bytes()
}

/// One input per disk of every machine in tests/fixtures/devices.
pub fn seeds(repo: &Path) -> Result<Vec<Seed>> {
    let mut out = Vec::new();
    let cases = repo.join("tests/fixtures/devices");
    let mut machines: Vec<PathBuf> = std::fs::read_dir(&cases)
        .with_context(|| format!("listing {}", cases.display()))?
        .flatten()
        .map(|e| e.path())
        .collect();
    machines.sort();
    for m in machines {
        let block = m.join("sys/block");
        let Ok(disks) = std::fs::read_dir(&block) else {
            continue;
        };
        for disk in disks.flatten() {
            let name = disk.file_name().to_string_lossy().into_owned();
            let link = std::fs::read_link(disk.path()).unwrap_or_default();
            let link = link.to_string_lossy();
            let devpath = link
                .trim_start_matches("../devices/")
                .trim_end_matches(&format!("/block/{name}"))
                .to_string();
            let dir = std::fs::canonicalize(disk.path())?;
            let udev_of = |dev: &[u8]| -> Vec<u8> {
                read(
                    &m.join("run/udev/data")
                        .join(format!("b{}", String::from_utf8_lossy(dev).trim())),
                )
            };
            let dev = read(&dir.join("dev"));
            let mut parts: Vec<PathBuf> = std::fs::read_dir(&dir)?
                .flatten()
                .map(|e| e.path())
                .filter(|p| p.join("partition").exists())
                .collect();
            parts.sort();
            let (pname, pdev, psize, pudev, pholders) = match parts.last() {
                Some(p) => {
                    let pdev = read(&p.join("dev"));
                    (
                        p.file_name()
                            .unwrap_or_default()
                            .to_string_lossy()
                            .into_owned()
                            .into_bytes(),
                        pdev.clone(),
                        read(&p.join("size")),
                        udev_of(&pdev),
                        names(&p.join("holders")),
                    )
                }
                None => Default::default(),
            };
            let fields: Vec<Vec<u8>> = vec![
                name.clone().into_bytes(),
                devpath.into_bytes(),
                dev.clone(),
                read(&dir.join("size")),
                read(&dir.join("removable")),
                read(&dir.join("ro")),
                read(&dir.join("queue/logical_block_size")),
                read(&dir.join("device/model")),
                read(&dir.join("device/vendor")),
                read(&dir.join("device/serial")),
                udev_of(&dev),
                pname,
                pdev,
                psize,
                pudev,
                pholders,
                names(&dir.join("holders")),
                read(&m.join("proc/self/mountinfo")),
                read(&m.join("proc/swaps")),
            ];
            let machine = m.file_name().unwrap_or_default().to_string_lossy();
            out.push((format!("{machine}-{name}"), fields.join(&0u8)));
        }
    }
    // The inputs earlier runs crashed on (the regression tests' inputs).
    for p in crate::files_under(&repo.join("tests/fixtures/fuzz/devices"), &[""]) {
        out.push((crate::seed_name("", repo, &p), std::fs::read(&p)?));
    }
    Ok(out)
}
