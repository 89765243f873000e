//! A downloaded OS boots (--features boot-tests): the Debian test OS is
//! published on a 127.0.0.1 server the way Fedora CoreOS publishes a release
//! (stream document, signed live kernel, initramfs and rootfs, and a live ISO
//! whose efiboot.img holds the EFI boot chain). mkstick fetches and verifies
//! it with the throwaway key, builds a stick from the OS directory it made,
//! and that stick boots under OVMF with the real Ignition applying the config.

use crate::boot::{boot_vm, test_os};
use crate::common::*;
use crate::fetch::{downloader, fcos_release, publish_fcos_files, signer, test_keys};
use crate::http::Server;
use mkstick::os::cache::Cache;
use mkstick::os::download::SignaturePolicy;

#[test]
fn a_fetched_release_builds_a_stick_that_boots() {
    let os = test_os();
    let read = |name: &str| std::fs::read(os.join(name)).unwrap();
    let efi: Vec<(String, Vec<u8>)> = mkstick::os::OsDir::load(&os)
        .unwrap()
        .efi_files()
        .unwrap()
        .into_iter()
        .map(|f| (f.esp_path, f.contents))
        .collect();
    let efi_refs: Vec<(&str, &[u8])> = efi.iter().map(|(p, b)| (p.as_str(), &b[..])).collect();
    let server = Server::start();
    let rel = publish_fcos_files(
        &server,
        "43.20261116.3.0",
        signer(),
        [read("vmlinuz"), read("initramfs.img"), read("rootfs.img")],
        &fat_image(&efi_refs),
    );
    let s = Scratch::new(&minimal_config());
    let cache = Cache::open(Some(&s.path("cache"))).unwrap();
    let dl = downloader(&cache, SignaturePolicy::Require);
    let dir =
        mkstick::os::fcos::fetch(&fcos_release(&server, None), &dl, &test_keys().fedora).unwrap();
    assert_eq!(dl.summary().fetched.len(), 4);

    let check = "#!/bin/sh\n\
        if grep -q \"^OS_ID='fedora-coreos'$\" /etc/mkstick/release && \
        test -z \"$(systemctl list-units --failed --plain --no-legend)\"; then \
        echo MKSTICK-BOOT-OK > /dev/ttyS0; else \
        systemctl list-units --failed --plain --no-legend > /dev/ttyS0 2>&1; \
        echo MKSTICK-BOOT-FAIL > /dev/ttyS0; fi\nsystemctl poweroff --force\n";
    let data = |t: &str| mkstick::ignition::data_url(t.as_bytes());
    let unit = "[Unit]\nAfter=multi-user.target\n[Service]\nType=oneshot\n\
        ExecStart=/usr/local/bin/check\n[Install]\nWantedBy=multi-user.target\n";
    let fragment = serde_json::json!({
        "ignition": {"version": "3.3.0"},
        "storage": {"files": [{"path": "/usr/local/bin/check", "mode": 0o755,
            "overwrite": true, "contents": {"source": data(check)}}]},
        "systemd": {"units": [{"name": "check.service", "enabled": true, "contents": unit}]}
    });
    s.write("check.ign", &fragment.to_string());
    s.write(
        "mkstick.toml",
        &format!(
            "[node]\nhostname = \"fetched\"\nssh-authorized-keys = [\"{KEY}\"]\n\n[boot]\nconsole = \"serial\"\n\n\
             [extra]\nignition = [\"check.ign\"]\n"
        ),
    );
    ok(s.run(&["build", "--os-dir", dir.to_str().unwrap()]));
    let console = boot_vm(&s, "mkstick.img", &[], "fetched-release");
    assert!(
        console.contains(&format!("Fedora CoreOS {}", rel.version)),
        "GRUB names the fetched release"
    );
}
