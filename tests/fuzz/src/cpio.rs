//! `cpio`: the newc cpio reader (plain or gzip-compressed) that `inspect`
//! uses on `mkstick/ignition.img`, then the Ignition config it finds, as
//! `inspect` parses it; and the streaming readers `build` runs over an OS's
//! initramfs and rootfs.img for their live stamps (`mkstick::os::live`).

use crate::Seed;
use anyhow::Result;
use mkstick::formats::initrd;
use mkstick::os::live;
use std::path::Path;

pub fn run(data: &[u8]) {
    let _ = live::scan_initramfs(&mut std::io::Cursor::new(data));
    let _ = live::scan_rootfs(&mut std::io::Cursor::new(data));
    let Ok(members) = initrd::read(data) else {
        return;
    };
    if let Some(m) = members.iter().find(|m| m.mode & 0o170000 == 0o100000) {
        let _ = serde_json::from_slice::<mkstick::ignition::Config>(&m.data);
    }
}

pub fn seeds(repo: &Path) -> Result<Vec<Seed>> {
    let mut out = Vec::new();
    let ign = std::fs::read(repo.join("tests/golden/minimal/ignition.json"))
        .unwrap_or_else(|_| br#"{"ignition":{"version":"3.3.0"}}"#.to_vec());
    out.push((
        "config.cpio".into(),
        initrd::newc("config.ign", 0o600, &ign),
    ));
    out.push(("config.cpio.gz".into(), initrd::wrap("config.ign", &ign)));
    out.push((
        "flatcar-oem.cpio".into(),
        initrd::newc(
            mkstick::os::flatcar::CONFIG_PATH,
            0o600,
            br#"{"ignition":{"version":"3.3.0"}}"#,
        ),
    ));
    out.push(("empty-file.cpio".into(), initrd::newc("a", 0o644, b"")));
    // Shaped like Fedora CoreOS's live initramfs (an early cpio, then the
    // stamp's gzip cpio) and rootfs.img.
    let mut initramfs = initrd::newc("early_cpio", 0o644, b"1\n");
    initramfs.extend(initrd::gzip(&initrd::newc(
        live::INITRAMFS_STAMP,
        0o644,
        b"42.20250901.3.0\n",
    )));
    out.push(("live-initramfs.img".into(), initramfs));
    out.push((
        "live-rootfs.img".into(),
        initrd::newc_members(&[
            ("root.squashfs", 0o100644, b"hsqs and the rest"),
            ("etc", 0o040755, b""),
            (live::ROOTFS_STAMP, 0o100644, b"42.20250901.3.0\n"),
        ]),
    ));
    Ok(out)
}
