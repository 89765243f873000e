//! Secure Boot boot tests (--features boot-tests): the test OS's EFI chain is
//! Debian's signed shim (Microsoft's UEFI CA), signed GRUB and signed kernel,
//! as Fedora CoreOS's is Fedora's. `mkstick boot --secure-boot` runs OVMF
//! with Secure Boot enforced and Microsoft's keys enrolled.
//! - A stick boots, and the booted system shows that Secure Boot was on and
//!   that Ignition applied our config.
//! - A stick whose kernel the shim does not trust (unsigned here; Flatcar's
//!   kernel, signed by Flatcar, is the same to Fedora's shim) stops in GRUB
//!   with mkstick's Secure Boot message and powers off; the kernel never
//!   starts.

use crate::boot::{check_fragment, last_lines, run_vm, test_os, EXPECT_BOOT_OK};
use crate::common::*;
use std::path::Path;

/// `mkstick boot mkstick.img --secure-boot` with `extra` arguments: its
/// success, the console and stderr.
fn boot_secure(s: &Scratch, extra: &[&str], log: &str) -> (bool, String, String) {
    let mut args = vec!["--secure-boot"];
    args.extend(extra);
    let (o, console) = run_vm(s, "mkstick.img", &args, log);
    (o.status.success(), console, stderr(&o))
}

fn config(os: &Path, hostname: &str) -> String {
    format!(
        "[node]\nhostname = \"{hostname}\"\nssh-authorized-keys = [\"{KEY}\"]\n\n[os]\npath = \"{}\"\n\n\
[boot]\nconsole = \"serial\"\n\n[extra]\nignition = [\"check.ign\"]\n",
        os.display()
    )
}

#[test]
fn a_stick_boots_under_secure_boot_and_ignition_applies_the_config() {
    let s = Scratch::new(&config(&test_os(), "secure-node"));
    // From inside the booted system: the firmware's SecureBoot variable is 1
    // (4 attribute bytes, then the value), the kernel says so and locked
    // itself down, and Ignition wrote the hostname and this script.
    let script = r#"check secure-boot-variable test "$(od -An -tu1 /sys/firmware/efi/efivars/SecureBoot-8be4df61-93ca-11d2-aa0d-00e098032b8c | awk '{print $NF}')" = 1
check kernel-says-secure-boot sh -c 'journalctl -k -b -o cat | grep -q "secureboot: Secure boot enabled"'
check kernel-locked-down grep -q '\[integrity\]' /sys/kernel/security/lockdown
check ignition-hostname test "$(hostname)" = secure-node
check ignition-banner test "$(systemctl show -P ExecMainStatus mkstick-banner.service)" = 0
check no-failed-units test -z "$(systemctl list-units --failed --plain --no-legend)"
if [ -z "$fail" ]; then say MKSTICK-BOOT-OK; else say "MKSTICK-BOOT-FAIL:$fail"; fi
systemctl poweroff --force
"#;
    s.write(
        "check.ign",
        &check_fragment(
            "/usr/local/bin",
            "mkstick Secure Boot test: check from inside",
            "mkstick-banner.service",
            script,
        ),
    );
    ok(s.run(&["build", "-q"]));
    let (success, console, err) = boot_secure(&s, &EXPECT_BOOT_OK, "secure-boot");
    assert!(success, "{err}\n{}", last_lines(&console, 60));
    assert!(console.contains("EFI stub: UEFI Secure Boot is enabled."));
}

/// The offset of a PE32+ image's certificate table entry (data directory 4).
fn certificate_table_entry(pe: &[u8]) -> usize {
    let at = |o: usize| u32::from_le_bytes(pe[o..o + 4].try_into().unwrap()) as usize;
    let header = at(0x3c);
    assert_eq!(&pe[header..header + 4], b"PE\0\0", "a PE image");
    let optional = header + 24;
    assert_eq!(&pe[optional..optional + 2], &[0x0b, 0x02], "PE32+");
    optional + 112 + 4 * 8
}

/// The kernel without its Authenticode signature: the certificate table is
/// cut off and its directory entry zeroed, as `sbattach --remove` does.
fn unsigned(kernel: &[u8]) -> Vec<u8> {
    let entry = certificate_table_entry(kernel);
    let at = |o: usize| u32::from_le_bytes(kernel[o..o + 4].try_into().unwrap()) as usize;
    let (offset, size) = (at(entry), at(entry + 4));
    assert!(size > 0, "the test OS's kernel is signed");
    assert_eq!(offset + size, kernel.len(), "the signature ends the file");
    let mut out = kernel[..offset].to_vec();
    out[entry..entry + 8].fill(0);
    out
}

#[test]
fn a_kernel_the_shim_does_not_trust_stops_in_grub_with_the_secure_boot_message() {
    let os = test_os();
    let s = Scratch::new("");
    let copy = s.path("os-unsigned");
    std::fs::create_dir(&copy).unwrap();
    let status = std::process::Command::new("cp")
        .args(["-R", "--reflink=auto"])
        .arg(os.join("."))
        .arg(&copy)
        .status()
        .unwrap();
    assert!(status.success());
    let signed = std::fs::read(copy.join("vmlinuz")).unwrap();
    let bare = unsigned(&signed);
    std::fs::write(copy.join("vmlinuz"), &bare).unwrap();
    let json = std::fs::read_to_string(copy.join("os.json")).unwrap();
    let json = json.replace(&sha256_hex(&signed), &sha256_hex(&bare));
    std::fs::write(copy.join("os.json"), json).unwrap();
    s.write("mkstick.toml", &config(&copy, "untrusted"));
    s.write(
        "check.ign",
        &check_fragment("/usr/local/bin", "never runs", "", "say MKSTICK-BOOT-OK\n"),
    );
    ok(s.run(&["build", "-q"]));
    // No marker to wait for: GRUB must print the message and power off, and
    // the kernel must never start.
    let (success, console, err) = boot_secure(
        &s,
        &[
            "--fail-on",
            "EFI stub",
            "--fail-on",
            "Linux version",
            "--fail-on",
            "MKSTICK-BOOT-OK",
            "--timeout",
            "300",
        ],
        "secure-boot-untrusted",
    );
    assert!(
        success,
        "GRUB halts (QEMU exits cleanly): {err}\n{}",
        last_lines(&console, 60)
    );
    assert!(
        console.contains(
            "mkstick: Secure Boot is on, and the shim does not trust the kernel /os/vmlinuz"
        ) && console.contains("mkstick: turn Secure Boot off for this server"),
        "mkstick's Secure Boot message:\n{}",
        last_lines(&console, 60)
    );
    assert!(
        !console.contains("rebuild the stick"),
        "not the broken-stick message"
    );
}
