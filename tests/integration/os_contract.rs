//! What the real OSes' boot chains must look like before mkstick puts them
//! on a stick (fixture-driven; nothing boots here).

use crate::common::*;

/// Replace the fake OS's efiboot.img with one holding `files`.
fn with_efiboot(s: &Scratch, files: &[(&str, &[u8])]) {
    let old = file_sha256(s.path("os/efiboot.img"));
    let img = fat_image(files);
    std::fs::write(s.path("os/efiboot.img"), &img).unwrap();
    let json = std::fs::read_to_string(s.path("os/os.json")).unwrap();
    std::fs::write(s.path("os/os.json"), json.replace(&old, &sha256_hex(&img))).unwrap();
}

#[test]
fn a_boot_chain_with_shims_fallback_is_refused_before_anything_is_written() {
    let boot = filler(4096, 4);
    let grub = filler(4096, 5);
    for (extra, want) in [
        (
            "EFI/BOOT/fbx64.efi",
            "EFI/BOOT/fbx64.efi is shim's fallback loader, which writes boot entries into the server's firmware",
        ),
        (
            "EFI/fedora/BOOTX64.CSV",
            "EFI/fedora/BOOTX64.CSV tells shim's fallback loader which boot entries to write",
        ),
    ] {
        let s = Scratch::with_efi(&minimal_config(), Efi::FatImage);
        with_efiboot(
            &s,
            &[
                ("EFI/BOOT/BOOTX64.EFI", &boot),
                ("EFI/BOOT/grubx64.efi", &grub),
                (extra, b"x"),
            ],
        );
        for cmd in ["check", "build"] {
            let e = fails(s.run(&[cmd]));
            assert!(e.contains("the EFI boot files of") && e.contains(want), "{cmd}: {e}");
        }
        assert!(!s.path("mkstick.img").exists());
    }
    // No removable-media loader at all.
    let s = Scratch::with_efi(&minimal_config(), Efi::FatImage);
    with_efiboot(&s, &[("EFI/fedora/shimx64.efi", &boot)]);
    let e = fails(s.run(&["build"]));
    assert!(e.contains("there is no EFI/BOOT/BOOTX64.EFI"), "{e}");
}

/// flatcar/Flatcar#2023: those releases boot a stick with no users.
#[test]
fn a_flatcar_release_that_drops_the_config_is_refused_at_its_line() {
    let server = crate::http::Server::start();
    let s = Scratch::new(&format!(
        "[node]\nhostname = \"kube1\"\nssh-authorized-keys = [\"{KEY}\"]\n\n[os]\ndistro = \"flatcar\"\nchannel = \"alpha\"\nversion = \"4600.0.0\"\nrelease-url = \"{}/alpha\"\nstream-url = \"{}/fcos.json\"\n",
        server.base, server.base
    ));
    for cmd in ["check", "build", "fetch"] {
        let e = fails(s.run(&[cmd]));
        assert!(
            e.contains("mkstick.toml:8:11: Flatcar 4600.0.0 drops the config a stick carries")
                && e.contains("flatcar/Flatcar#2023")
                && e.contains("alpha 4669.0.0 or later"),
            "{cmd}: {e}"
        );
    }
    assert_eq!(server.requests(), vec![], "nothing was fetched");
}

/// The OS's stated RAM reaches `plan` and the node's release file.
#[test]
fn the_ram_an_os_states_is_planned_and_checked_at_boot() {
    let s = Scratch::new(&minimal_config());
    let json = std::fs::read_to_string(s.path("os/os.json")).unwrap();
    let plan = ok(s.run(&["plan"]));
    assert!(
        plan.contains("  RAM: this OS states no minimum.\n"),
        "{plan}"
    );
    std::fs::write(
        s.path("os/os.json"),
        json.replacen(
            "\"format\": 1,",
            "\"format\": 1,\n  \"min-ram-mib\": 4096,",
            1,
        ),
    )
    .unwrap();
    let plan = ok(s.run(&["plan"]));
    assert!(
        plan.contains("  RAM: at least 4 GiB for the OS in RAM; the console warns at boot\n  when the server has less.\n"),
        "{plan}"
    );
    ok(s.run(&["build"]));
    let config: mkstick::ignition::Config =
        serde_json::from_slice(&embedded_ignition(&s.path("mkstick.img"))).unwrap();
    let release = crate::kubernetes::ignition_file(&config, "/etc/mkstick/release").unwrap();
    assert!(release.contains("MIN_RAM_MIB='4096'\n"), "{release}");
}

/// Ignition fails the boot on a file under a read-only tree: `/usr` on
/// both real OSes, where only Fedora CoreOS links `/usr/local` into `/var`.
#[test]
fn files_under_a_read_only_tree_are_refused_naming_the_file_and_the_os() {
    let s = Scratch::new(&format!(
        "{}\n[extra]\nignition = [\"x.ign\"]\n",
        minimal_config()
    ));
    let fragment = |kind: &str, path: &str| {
        format!(
            r#"{{"ignition": {{"version": "3.3.0"}}, "storage": {{"{kind}": [{{"path": "{path}"}}]}}}}"#
        )
    };
    // The fake OS states nothing: the Fedora CoreOS layout is assumed.
    s.write("x.ign", &fragment("files", "/usr/local/bin/tool"));
    ok(s.run(&["check"]));
    for (kind, path) in [
        ("files", "/usr/lib/systemd/system/x.service"),
        ("directories", "/usr/share/x"),
        ("links", "/usr/bin/x"),
    ] {
        s.write("x.ign", &fragment(kind, path));
        let e = fails(s.run(&["build"]));
        assert!(
            e.contains(&format!("[extra] ignition x.ign: {path} is under /usr, which Fake OS mounts read-only, so Ignition would fail the boot")),
            "{e}"
        );
        assert!(!s.path("mkstick.img").exists());
    }
    // An OS without the /usr/local link (Flatcar's layout).
    let json = std::fs::read_to_string(s.path("os/os.json")).unwrap();
    std::fs::write(
        s.path("os/os.json"),
        json.replacen(
            "\"format\": 1,",
            "\"format\": 1,\n  \"bin-dir\": \"/opt/bin\",\n  \"writable-links\": [],",
            1,
        ),
    )
    .unwrap();
    s.write("x.ign", &fragment("files", "/usr/local/bin/tool"));
    let e = fails(s.run(&["check"]));
    assert!(e.contains("/usr/local/bin/tool is under /usr"), "{e}");
    // mkstick's own scripts follow bin-dir.
    s.write("x.ign", &fragment("files", "/opt/bin/tool"));
    ok(s.run(&["build"]));
    let config: mkstick::ignition::Config =
        serde_json::from_slice(&embedded_ignition(&s.path("mkstick.img"))).unwrap();
    assert!(config
        .storage
        .files
        .iter()
        .any(|f| f.path == "/opt/bin/mkstick-banner"));
}

/// The fake OS directory's build leaves neither an image nor a temp file.
fn nothing_left(s: &Scratch) {
    assert!(!s.path("mkstick.img").exists(), "no image");
    let left: Vec<_> = std::fs::read_dir(s.dir.path())
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| n.starts_with(".mkstick-"))
        .collect();
    assert!(left.is_empty(), "temp files left: {left:?}");
}

/// coreos-livepxe-rootfs.sh (fedora-coreos-config 35coreos-live) stops the
/// boot on these; the build stops instead, while it copies the files.
#[test]
fn the_live_stamps_of_initramfs_and_rootfs_must_match_at_build() {
    // Matching stamps, in both root image formats, build.
    for root in ["root.squashfs", "root.erofs"] {
        let s = Scratch::new(&minimal_config());
        replace_os_file(
            &s,
            "initramfs.img",
            &fake_initramfs(300_000, 7, Some("42.20250901.3.0\n")),
        );
        replace_os_file(
            &s,
            "rootfs.img",
            &fake_rootfs(root, 600_000, 8, Some("42.20250901.3.0\n")),
        );
        ok(s.run(&["build", "-q"]));
    }

    // An OS directory that mixes two releases.
    let s = Scratch::new(&minimal_config());
    replace_os_file(
        &s,
        "rootfs.img",
        &fake_rootfs("root.squashfs", 600_000, 8, Some("41.20250801.3.0\n")),
    );
    for cmd in ["check", "build"] {
        let e = fails(s.run(&[cmd]));
        assert!(
            e.contains("error: ./os/rootfs.img is Fake OS 41.20250801.3.0 but ./os/initramfs.img is Fake OS 1.0: ./os mixes two releases, and the initramfs would stop the boot (\"Found initramfs version 1.0 but rootfs version 41.20250801.3.0\"); fetch the OS again with `mkstick fetch`, or rebuild the OS directory"),
            "{cmd}: {e}"
        );
    }
    nothing_left(&s);
}

#[test]
fn a_rootfs_that_does_not_start_with_the_root_image_is_refused() {
    let s = Scratch::new(&minimal_config());
    replace_os_file(
        &s,
        "rootfs.img",
        &fake_rootfs("usr.squashfs", 600_000, 8, Some(FAKE_OS_STAMP)),
    );
    for cmd in ["check", "build"] {
        let e = fails(s.run(&[cmd]));
        assert!(
            e.contains("rootfs.img starts with `usr.squashfs`, but the live initramfs mounts the root filesystem from root.squashfs or root.erofs, the archive's first member"),
            "{cmd}: {e}"
        );
    }
    nothing_left(&s);
    // Not a cpio archive at all (a rootfs.img of old, a bare squashfs).
    let s = Scratch::new(&minimal_config());
    replace_os_file(&s, "rootfs.img", &filler(600_000, 8));
    for cmd in ["check", "build"] {
        let e = fails(s.run(&[cmd]));
        assert!(
            e.contains("rootfs.img, the OS's root filesystem image: it is not an uncompressed newc cpio archive"),
            "{cmd}: {e}"
        );
    }
    nothing_left(&s);
}

#[test]
fn missing_live_stamps_are_refused() {
    let s = Scratch::new(&minimal_config());
    replace_os_file(
        &s,
        "rootfs.img",
        &fake_rootfs("root.squashfs", 600_000, 8, None),
    );
    for cmd in ["check", "build"] {
        let e = fails(s.run(&[cmd]));
        assert!(
            e.contains("rootfs.img has no etc/coreos-live-rootfs, so the initramfs would stop the boot with \"No rootfs image found\""),
            "{cmd}: {e}"
        );
    }
    nothing_left(&s);

    let s = Scratch::new(&minimal_config());
    replace_os_file(&s, "initramfs.img", &fake_initramfs(300_000, 7, None));
    for cmd in ["check", "build"] {
        let e = fails(s.run(&[cmd]));
        assert!(
            e.contains(
                "initramfs.img has no etc/coreos-live-initramfs, so it is no live initramfs"
            ),
            "{cmd}: {e}"
        );
    }
    nothing_left(&s);
}

/// Flatcar boots from its initramfs alone: no rootfs, no stamps to check.
#[test]
fn an_os_without_a_rootfs_has_no_stamps_to_check() {
    let s = Scratch::new(&minimal_config());
    replace_os_file(&s, "initramfs.img", &filler(300_000, 7));
    let json = std::fs::read_to_string(s.path("os/os.json")).unwrap();
    let json: String = json
        .lines()
        .filter(|l| !l.contains("\"rootfs\""))
        .map(|l| format!("{l}\n"))
        .collect();
    std::fs::write(s.path("os/os.json"), json).unwrap();
    ok(s.run(&["build", "-q"]));
}
