//! `cpio`: the newc cpio reader (plain or gzip-compressed) that `inspect`
//! uses on `mkstick/ignition.img`, then the Ignition config it finds, as
//! `inspect` parses it.

use crate::Seed;
use anyhow::Result;
use mkstick::image::initrd;
use std::path::Path;

pub fn run(data: &[u8]) {
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
    Ok(out)
}
