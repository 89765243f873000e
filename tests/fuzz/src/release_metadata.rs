//! `release_metadata`: what mkstick reads from publishers and OS
//! directories before it trusts a download. The first byte picks:
//! 0 `os.json` (an OS directory), 1 Fedora CoreOS stream metadata,
//! 2 `release.json`, 3 a Flatcar `.DIGESTS` file, 4 Flatcar's
//! `version.txt`, 5 a Kubernetes binaries table.

use crate::{with_selector, Seed};
use anyhow::{Context, Result};
use mkstick::os::{fcos, flatcar};
use std::path::Path;
use std::sync::OnceLock;

pub fn run(data: &[u8]) {
    let Some((&selector, rest)) = data.split_first() else {
        return;
    };
    match selector % 6 {
        0 => os_json(rest),
        1 => {
            if let Ok(live) = fcos::parse_stream(rest, "stream.json") {
                artifacts(&live);
            }
        }
        2 => {
            if let Ok(live) = fcos::parse_release(rest, "release.json") {
                artifacts(&live);
            }
        }
        3 => {
            let text = String::from_utf8_lossy(rest);
            let _ = flatcar::parse_digests(&text, flatcar::KERNEL_FILE);
            let _ = flatcar::parse_digests(&text, flatcar::IMAGE_FILE);
        }
        4 => {
            let _ = flatcar::parse_version_txt(&String::from_utf8_lossy(rest));
        }
        _ => {
            if let Ok(text) = std::str::from_utf8(rest) {
                if let Ok(t) = mkstick::os::kubernetes::Table::parse(Path::new("k8s.toml"), text) {
                    for f in &t.files {
                        let _ = f.artifact();
                        let _ = f.stick_path();
                    }
                }
            }
        }
    }
}

/// Every download the metadata describes, as `fetch` would check it.
fn artifacts(live: &fcos::LiveRelease) {
    for a in [&live.kernel, &live.initramfs, &live.rootfs, &live.iso] {
        if let Ok(art) = fcos::artifact("kernel", &live.version, a) {
            let _ = art.file_name();
        }
    }
}

/// `OsDir::load` on a directory holding this `os.json` and nothing else,
/// then what `plan` asks of it.
fn os_json(bytes: &[u8]) {
    static DIR: OnceLock<std::path::PathBuf> = OnceLock::new();
    let dir = DIR.get_or_init(|| {
        let d = crate::scratch().join("os");
        std::fs::create_dir_all(&d).expect("creating the OS directory");
        d
    });
    std::fs::write(dir.join(mkstick::os::MANIFEST_NAME), bytes).expect("writing os.json");
    if let Ok(os) = mkstick::os::OsDir::load(dir) {
        let _ = os.kernel();
        let _ = os.initramfs();
        let _ = os.rootfs();
        let _ = os.efi_files();
        let _ = serde_json::to_vec(&os.manifest);
    }
}

pub fn seeds(repo: &Path) -> Result<Vec<Seed>> {
    let mut out = Vec::new();
    // os.json: the Debian test OS's (when built), a fake one, and the ones
    // `fetch` writes for Fedora CoreOS and Flatcar.
    let test_os = repo.join("target/test-os/os.json");
    if let Ok(b) = std::fs::read(&test_os) {
        out.push(("0-test-os.json".into(), with_selector(0, &b)));
    }
    let tmp = tempfile::tempdir()?;
    crate::config::fake_os_dir(tmp.path())?;
    out.push((
        "0-fake-os.json".into(),
        with_selector(0, &std::fs::read(tmp.path().join("os.json"))?),
    ));
    let sha = "d6bddcc1cc8f2642b11f38ca4602573211171814a53ab57c2655853008167407";
    let fcos_manifest = serde_json::json!({
        "format": 1, "id": "fedora-coreos", "name": "Fedora CoreOS",
        "version": "43.20261116.3.0",
        "kernel": {"path": "kernel", "sha256": sha},
        "initramfs": {"path": "initramfs.img", "sha256": sha},
        "rootfs": {"path": "rootfs.img", "sha256": sha},
        "efi": {"fat-image": {"path": "efiboot.img", "sha256": sha}},
        "grub-cfg": ["EFI/fedora/grub.cfg", "EFI/BOOT/grub.cfg"],
        "kernel-args": ["mitigations=auto,nosmt", "ignition.firstboot", "ignition.platform.id=metal"],
        "ignition-config-path": "config.ign",
        "nfs-server": "container",
    });
    out.push((
        "0-fcos-os.json".into(),
        with_selector(0, &serde_json::to_vec_pretty(&fcos_manifest)?),
    ));
    let flatcar_manifest = serde_json::json!({
        "format": 1, "id": "flatcar", "name": "Flatcar Container Linux",
        "version": "4459.2.1",
        "kernel": {"path": flatcar::KERNEL_FILE, "sha256": sha},
        "initramfs": {"path": flatcar::IMAGE_FILE, "sha256": sha},
        "efi": {"fat-image": {"path": "efiboot.img", "sha256": sha}},
        "grub-cfg": ["EFI/BOOT/grub.cfg"],
        "kernel-args": ["flatcar.first_boot=1"],
        "ignition-config-path": flatcar::CONFIG_PATH,
    });
    out.push((
        "0-flatcar-os.json".into(),
        with_selector(0, &serde_json::to_vec_pretty(&flatcar_manifest)?),
    ));

    // Stream metadata from the fixtures, and release.json made from each.
    let mut streams = crate::files_under(&repo.join("tests/fixtures/streams"), &[".json"]);
    streams.extend(crate::files_under(
        &repo.join("../shared/fixtures"),
        &[".json"],
    ));
    for p in streams {
        let bytes = std::fs::read(&p).with_context(|| format!("reading {}", p.display()))?;
        out.push((crate::seed_name("1-", repo, &p), with_selector(1, &bytes)));
        let doc: serde_json::Value = serde_json::from_slice(&bytes)?;
        let metal = &doc["architectures"]["x86_64"]["artifacts"]["metal"];
        let release = serde_json::json!({
            "release": metal["release"],
            "stream": doc["stream"],
            "architectures": {"x86_64": {"media": {"metal": {"artifacts": metal["formats"]}}}},
        });
        out.push((
            crate::seed_name("2-", repo, &p),
            with_selector(2, &serde_json::to_vec(&release)?),
        ));
    }

    // A Flatcar DIGESTS file, as flatcar/scripts writes them.
    for name in [flatcar::KERNEL_FILE, flatcar::IMAGE_FILE] {
        let digests = format!(
            "# MD5 HASH\n{}  {name}\n# SHA1 HASH\n{}  {name}\n# SHA512 HASH\n{}  {name}\n{}  {name}.sig\n",
            "0".repeat(32),
            "1".repeat(40),
            "ab".repeat(64),
            "CD".repeat(64),
        );
        out.push((
            format!("3-{name}.DIGESTS"),
            with_selector(3, digests.as_bytes()),
        ));
    }
    out.push((
        "4-version.txt".into(),
        with_selector(
            4,
            b"FLATCAR_BUILD=4459\nFLATCAR_BRANCH=2\nFLATCAR_PATCH=1\nFLATCAR_VERSION=4459.2.1\nFLATCAR_VERSION_ID=4459.2.1\nFLATCAR_BUILD_ID=\"2025-10-01-0000\"\nFLATCAR_SDK_VERSION=4459.0.0\n",
        ),
    ));
    out.push((
        "5-k8s.toml".into(),
        with_selector(5, crate::config::binaries_table("1.37.0").as_bytes()),
    ));
    Ok(out)
}
