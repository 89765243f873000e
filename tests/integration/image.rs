//! Built images, reopened with the gpt and fatfs crates and checked with the
//! tools people use on real sticks (sgdisk, fsck.fat, cpio).

use crate::common::*;
use mkstick::payload::StickManifest;
use std::process::Command;

fn built(efi: Efi) -> Scratch {
    let s = Scratch::with_efi(
        &format!(
            "{}\n[extra]\nignition = [\"extra.ign\"]\n",
            minimal_config()
        ),
        efi,
    );
    s.write(
        "extra.ign",
        r#"{"ignition": {"version": "3.2.0"}, "storage": {"files": [{"path": "/etc/extra", "contents": {"source": "data:,x"}}]}}"#,
    );
    ok(s.run(&["build", "-q"]));
    s
}

#[test]
fn round_trip_every_file_matches_the_manifest_and_the_sources() {
    let s = built(Efi::Dir);
    let img = s.path("mkstick.img");
    let files = esp_files(&img);
    let manifest_bytes = &files
        .iter()
        .find(|(p, _)| p == "mkstick/manifest.json")
        .unwrap()
        .1;
    let manifest: StickManifest = serde_json::from_slice(manifest_bytes).unwrap();
    assert_eq!(manifest.os.id, "fake-os");
    let on_stick: Vec<&str> = files
        .iter()
        .map(|(p, _)| p.as_str())
        .filter(|p| *p != "mkstick/manifest.json")
        .collect();
    let listed: Vec<&str> = manifest.files.keys().map(String::as_str).collect();
    assert_eq!(on_stick, listed);
    for (path, data) in &files {
        if let Some(m) = manifest.files.get(path) {
            assert_eq!(m.sha256.to_string(), sha256_hex(data), "{path}");
            assert_eq!(m.size_bytes, data.len() as u64, "{path}");
        }
    }
    for (on_esp, source) in [
        ("os/vmlinuz", "os/vmlinuz"),
        ("os/initramfs.img", "os/initramfs.img"),
        ("os/rootfs.img", "os/rootfs.img"),
        ("EFI/BOOT/BOOTX64.EFI", "os/efi/EFI/BOOT/BOOTX64.EFI"),
    ] {
        assert_eq!(
            esp_file(&img, on_esp),
            std::fs::read(s.path(source)).unwrap(),
            "{on_esp}"
        );
    }
    let grub = String::from_utf8(esp_file(&img, "EFI/BOOT/grub.cfg")).unwrap();
    assert!(
        grub.contains("initrd /os/initramfs.img /os/rootfs.img /mkstick/ignition.img"),
        "{grub}"
    );
    // The image is private: it holds the login keys.
    use std::os::unix::fs::PermissionsExt;
    assert_eq!(
        std::fs::metadata(&img).unwrap().permissions().mode() & 0o777,
        0o600
    );
    // `inspect --verify` agrees, and catches a flipped byte inside a file.
    let out = ok(s.run(&["inspect", "-q", "--verify", "mkstick.img"]));
    assert!(out.contains("verified: all 8 files match"), "{out}");
    write_corrupted_copy(&s);
    let err = fails(s.run(&["inspect", "-q", "--verify", "bad.img"]));
    assert!(
        err.contains("failed verification: os/rootfs.img: sha256"),
        "{err}"
    );
}

#[test]
fn embedded_config_is_valid_ignition_with_our_settings() {
    let s = built(Efi::Dir);
    let cfg = embedded_ignition(&s.path("mkstick.img"));
    ignition_validate(&cfg);
    let c: mkstick::ignition::Config = serde_json::from_slice(&cfg).unwrap();
    assert_eq!(c.ignition.version, "3.3.0");
    assert_eq!(c.passwd.users[0].name, "core");
    assert_eq!(c.passwd.users[0].ssh_authorized_keys, vec![KEY.to_string()]);
    assert_eq!(c.ignition.config.merge.len(), 1);
    let merged = mkstick::ignition::decode_data_url(&c.ignition.config.merge[0].source).unwrap();
    assert_eq!(merged, std::fs::read(s.path("extra.ign")).unwrap());
    let hash = c.ignition.config.merge[0]
        .verification
        .hash
        .clone()
        .unwrap();
    assert!(
        hash.starts_with("sha512-") && hash.len() == 7 + 128,
        "{hash}"
    );
    for f in &c.storage.files {
        assert_eq!(f.overwrite, Some(true), "{}", f.path);
        assert!(f.mode.is_some(), "{}", f.path);
    }
    let hostname = c
        .storage
        .files
        .iter()
        .find(|f| f.path == "/etc/hostname")
        .unwrap();
    let body =
        mkstick::ignition::decode_data_url(&hostname.contents.as_ref().unwrap().source).unwrap();
    assert_eq!(body, b"kube1\n");
}

#[test]
fn external_checkers_accept_the_image() {
    let s = built(Efi::Dir);
    let img = s.path("mkstick.img");
    if let Some(sgdisk) = tool("sgdisk") {
        let o = Command::new(sgdisk).arg("-v").arg(&img).output().unwrap();
        let text = String::from_utf8_lossy(&o.stdout);
        assert!(
            o.status.success() && text.contains("No problems found"),
            "sgdisk -v: {text}"
        );
    }
    if let Some(fsck) = tool("fsck.fat") {
        // fsck.fat has no offset option: check a copy of the partition.
        let f = std::fs::File::open(&img).unwrap();
        let esp = mkstick::formats::gpt::read_esp(&f).unwrap();
        let bytes = std::fs::read(&img).unwrap();
        let part =
            &bytes[esp.start_bytes() as usize..(esp.start_bytes() + esp.size_bytes()) as usize];
        std::fs::write(s.path("esp.img"), part).unwrap();
        let o = Command::new(fsck)
            .arg("-n")
            .arg(s.path("esp.img"))
            .output()
            .unwrap();
        let text = String::from_utf8_lossy(&o.stdout);
        assert!(
            o.status.success(),
            "fsck.fat -n: {text}{}",
            String::from_utf8_lossy(&o.stderr)
        );
        assert!(
            !text.contains("Fixing") && !text.contains("should be"),
            "fsck.fat -n: {text}"
        );
    }
    if let Some(cpio) = tool("cpio") {
        let gz = esp_file(&img, "mkstick/ignition.img");
        let mut raw = Vec::new();
        std::io::Read::read_to_end(&mut flate2::read::GzDecoder::new(&gz[..]), &mut raw).unwrap();
        std::fs::write(s.path("config.cpio"), &raw).unwrap();
        let o = Command::new(cpio)
            .args(["-t", "-v", "-F"])
            .arg(s.path("config.cpio"))
            .output()
            .unwrap();
        let list = String::from_utf8_lossy(&o.stdout);
        assert!(
            o.status.success(),
            "cpio -t: {}",
            String::from_utf8_lossy(&o.stderr)
        );
        assert_eq!(list.lines().count(), 1, "{list}");
        assert!(
            list.starts_with("-rw-------")
                && list.contains(" root ")
                && list.trim_end().ends_with("config.ign"),
            "{list}"
        );
    }
}

#[test]
fn builds_are_reproducible_and_ids_follow_the_seed() {
    let s = built(Efi::Dir);
    ok(s.run(&["build", "-q", "-o", "again.img"]));
    let a = std::fs::read(s.path("mkstick.img")).unwrap();
    assert!(
        a == std::fs::read(s.path("again.img")).unwrap(),
        "two builds differ"
    );
    if let Some(cmp) = tool("cmp") {
        let o = Command::new(cmp)
            .arg(s.path("mkstick.img"))
            .arg(s.path("again.img"))
            .output()
            .unwrap();
        assert!(
            o.status.success(),
            "cmp: {}",
            String::from_utf8_lossy(&o.stdout)
        );
    }
    let guids = |name: &str| {
        let f = std::fs::File::open(s.path(name)).unwrap();
        let e = mkstick::formats::gpt::read_esp(&f).unwrap();
        (e.disk_guid, e.part_guid)
    };
    ok(s.run(&["build", "-q", "--seed", "lab", "-o", "seed1.img"]));
    ok(s.run(&["build", "-q", "--seed", "lab", "-o", "seed2.img"]));
    assert_eq!(guids("seed1.img"), guids("seed2.img"));
    assert_ne!(guids("seed1.img"), guids("mkstick.img"));
    ok(s.run(&["build", "-q", "--random-guids", "-o", "r1.img"]));
    ok(s.run(&["build", "-q", "--random-guids", "-o", "r2.img"]));
    assert_ne!(guids("r1.img"), guids("r2.img"));
}

#[test]
fn source_date_epoch_sets_every_timestamp() {
    let s = Scratch::new(&minimal_config());
    ok(s.run_env(&["build", "-q"], &[("SOURCE_DATE_EPOCH", "1700000000")]));
    ok(s.run_env(
        &["build", "-q", "-o", "b.img"],
        &[("SOURCE_DATE_EPOCH", "1700000000")],
    ));
    assert!(
        std::fs::read(s.path("mkstick.img")).unwrap() == std::fs::read(s.path("b.img")).unwrap()
    );
    let f = std::fs::File::open(s.path("mkstick.img")).unwrap();
    let esp = mkstick::formats::gpt::read_esp(&f).unwrap();
    let mut disk = mkstick::io::Slice::new(&f, esp.start_bytes(), esp.size_bytes());
    let fs = fatfs::FileSystem::new(&mut disk, fatfs::FsOptions::new()).unwrap();
    for e in fs.root_dir().iter() {
        let t = e.unwrap().modified();
        // 2023-11-14 22:13:20 UTC (FAT keeps even seconds).
        assert_eq!((t.date.year, t.date.month, t.date.day), (2023, 11, 14));
        assert_eq!((t.time.hour, t.time.min, t.time.sec), (22, 13, 20));
    }
    let record = std::fs::read_to_string(s.path("mkstick.img.manifest.json")).unwrap();
    assert!(
        record.contains("\"source-date-epoch\": 1700000000"),
        "{record}"
    );
    let err = fails(s.run_env(
        &["build", "-q", "-o", "c.img"],
        &[("SOURCE_DATE_EPOCH", "soon")],
    ));
    assert!(
        err.contains("SOURCE_DATE_EPOCH=\"soon\" is not a number"),
        "{err}"
    );
}

#[test]
fn fat_image_efi_source_is_unpacked_and_its_grub_cfg_replaced() {
    let s = built(Efi::FatImage);
    let img = s.path("mkstick.img");
    assert_eq!(esp_file(&img, "EFI/fedora/grubx64.efi"), filler(30_000, 5));
    for cfg in ["EFI/BOOT/grub.cfg", "EFI/fedora/grub.cfg"] {
        let text = String::from_utf8(esp_file(&img, cfg)).unwrap();
        assert!(text.starts_with("# Written by mkstick"), "{cfg}: {text}");
    }
}

#[test]
fn inspect_json_is_one_document() {
    let s = built(Efi::Dir);
    let out = ok(s.run(&["inspect", "-q", "--json", "--verify", "mkstick.img"]));
    let v: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(v["partition"]["name"], "MKSTICK");
    assert_eq!(v["os"]["id"], "fake-os");
    assert_eq!(v["verify"]["ok"], true);
    assert_eq!(v["config"]["users"][0]["name"], "core");
    assert!(
        v.get("ignition").is_none(),
        "secrets only with --show-config"
    );
    let kargs: Vec<&str> = v["kernel-args"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| a.as_str().unwrap())
        .collect();
    assert_eq!(
        kargs,
        [
            "ignition.firstboot",
            "ignition.platform.id=metal",
            "console=ttyS0,115200n8",
            "console=tty0"
        ]
    );
    let err = fails(s.run(&["inspect", "-q", "mkstick.toml"]));
    assert!(err.contains("not an mkstick image"), "{err}");
}

#[test]
fn inspect_never_panics_on_damaged_images() {
    // Deterministic damage: bytes overwritten in the GPT and the FAT
    // structures. mkstick must answer with an error (exit 1) or a report
    // (exit 0), never a panic (101), and never hang.
    let s = Scratch::new(&minimal_config());
    ok(s.run(&["build", "-q"]));
    let original = std::fs::read(s.path("mkstick.img")).unwrap();
    let mut seed = 0x2545_f491_4f6c_dd1du64;
    let mut next = || {
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        seed
    };
    let mut outcomes = [0usize; 2];
    for round in 0..40 {
        let mut bytes = original.clone();
        let region = if round % 4 == 0 {
            0..34 * 512
        } else {
            (1 << 20)..(3 << 20)
        };
        for _ in 0..[1, 4, 16, 64][round % 4] {
            let at = region.start + (next() as usize) % (region.end - region.start);
            bytes[at] = next() as u8;
        }
        std::fs::write(s.path("damaged.img"), &bytes).unwrap();
        let started = std::time::Instant::now();
        let o = s.run(&["inspect", "-q", "--verify", "damaged.img"]);
        assert!(
            started.elapsed().as_secs() < 20,
            "inspect hung on round {round}"
        );
        match o.status.code() {
            Some(0) => outcomes[0] += 1,
            Some(1) => {
                outcomes[1] += 1;
                assert!(
                    stderr(&o).starts_with("error: "),
                    "round {round}: {}",
                    stderr(&o)
                );
            }
            other => panic!("round {round}: exit {other:?}: {}", stderr(&o)),
        }
    }
    assert!(
        outcomes[1] > 0,
        "damage was detected at least sometimes: {outcomes:?}"
    );
}
