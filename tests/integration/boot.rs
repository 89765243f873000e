//! QEMU boot tests (--features boot-tests): an image built by mkstick boots
//! under UEFI (OVMF, TCG) into the Debian test OS (scripts/build-test-os),
//! and the real Ignition applies our config. The proof is effects checked
//! inside the booted system by a unit that an [extra] ignition fragment
//! delivers, so a pass also proves the merge. The test passes only on the
//! positive marker; a failure marker, a timeout or a silent poweroff fails it.
//!
//! Each boot test also runs on the flatcar-like flavour of the test OS
//! (`scripts/build-test-os OUTDIR flatcar`: Flatcar's PXE contract, a tmpfs
//! root, /usr with /usr/local read-only, node scripts in /opt/bin).

use crate::common::*;
use std::io::{BufRead, BufReader, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;

/// One VM at a time: TCG is CPU-bound and the machine has 2 cores.
pub static VM: Mutex<()> = Mutex::new(());

/// The test OS, built (or taken from its cache) once per test run.
pub fn test_os() -> PathBuf {
    static OS: OnceLock<PathBuf> = OnceLock::new();
    OS.get_or_init(|| build_test_os("test-os", &[])).clone()
}

/// The flatcar-like test OS, built (or taken from its cache) once per run.
pub fn test_os_flatcar() -> PathBuf {
    static OS: OnceLock<PathBuf> = OnceLock::new();
    OS.get_or_init(|| build_test_os("test-os-flatcar", &["flatcar"]))
        .clone()
}

/// One build at a time: the flavours share the cached debootstrap tree.
fn build_test_os(dir: &str, flavour: &[&str]) -> PathBuf {
    static BUILD: Mutex<()> = Mutex::new(());
    let _build = BUILD.lock().unwrap_or_else(|e| e.into_inner());
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let out = Path::new(env!("CARGO_TARGET_TMPDIR")).join(dir);
    let status = Command::new(root.join("scripts/build-test-os"))
        .arg(&out)
        .args(flavour)
        .status()
        .expect("running scripts/build-test-os");
    assert!(status.success(), "scripts/build-test-os failed");
    out
}

/// The test OS at `os` as an OS without an NFS server of its own, like
/// Fedora CoreOS (os.json `"nfs-server": "container"`), in `dir`: its files
/// linked, its os.json rewritten. mkstick then carries the NFS server's
/// image and loads it into podman at boot.
pub fn container_nfs_os(os: &Path, dir: &Path) -> PathBuf {
    std::fs::create_dir_all(dir).unwrap();
    for entry in std::fs::read_dir(os).unwrap() {
        let entry = entry.unwrap();
        let to = dir.join(entry.file_name());
        if entry.file_name() == "os.json" || to.exists() {
            continue;
        }
        std::os::unix::fs::symlink(entry.path(), to).unwrap();
    }
    let mut json: serde_json::Value =
        serde_json::from_slice(&std::fs::read(os.join("os.json")).unwrap()).unwrap();
    json["nfs-server"] = serde_json::json!("container");
    std::fs::write(dir.join("os.json"), json.to_string()).unwrap();
    dir.to_path_buf()
}

/// Which flavour of the test OS a boot test runs on.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Flavour {
    /// Fedora CoreOS's live contract: rootfs.img, /usr/local -> ../var/usrlocal.
    Coreos,
    /// Flatcar's PXE contract: /usr.squashfs in the initramfs, /usr/local
    /// read-only, local binaries in /opt/bin.
    Flatcar,
}

impl Flavour {
    pub fn os(self) -> PathBuf {
        match self {
            Flavour::Coreos => test_os(),
            Flavour::Flatcar => test_os_flatcar(),
        }
    }

    /// The OS's os.json, as mkstick reads it.
    pub fn manifest(self) -> mkstick::os::OsManifest {
        mkstick::os::OsDir::load(&self.os())
            .expect("loading the test OS's os.json")
            .manifest
    }

    /// Where node scripts go (os.json bin-dir): the check scripts go there too.
    pub fn bin_dir(self) -> String {
        self.manifest().bin_dir
    }

    /// The name of a console log: the flatcar boots' start with `flatcar-`.
    pub fn log(self, name: &str) -> String {
        match self {
            Flavour::Coreos => name.to_string(),
            Flavour::Flatcar => format!("flatcar-{name}"),
        }
    }
}

const EXTRA_TEXT: &str = "merged fragment says hello";

/// The checks of what only one flavour's layout gives.
fn flavour_checks(flavour: Flavour, bin_dir: &str) -> String {
    match flavour {
        Flavour::Coreos => format!(
            r#"check usr-local-is-var test "$(readlink /usr/local)" = ../var/usrlocal
check usr-local-writable test -x /usr/local/bin/mkstick-boot-check
check check-in-bin-dir test -x {bin_dir}/mkstick-boot-check
"#
        ),
        // Flatcar: /usr/local is part of the read-only /usr; local binaries
        // go to /opt/bin (flatcar/baselayout tmpfiles.d/baselayout.conf);
        // Ignition ran because of flatcar.first_boot=1, on a tmpfs root.
        Flavour::Flatcar => format!(
            r#"check bin-dir-is-opt-bin test {bin_dir} = /opt/bin
check usr-local-not-a-link test ! -L /usr/local
check usr-local-read-only sh -c '! touch /usr/local/bin/mkstick-probe && ! test -e /usr/local/bin/mkstick-probe'
check no-script-in-usr-local test ! -e /usr/local/bin/mkstick-boot-check -a ! -e /usr/local/bin/mkstick-banner
check check-in-opt-bin test -x /opt/bin/mkstick-boot-check
check banner-in-opt-bin test -x /opt/bin/mkstick-banner
check root-is-tmpfs test "$(findmnt -n -o FSTYPE /)" = tmpfs
check usr-is-squashfs test "$(findmnt -n -o FSTYPE /usr)" = squashfs
check etc-is-overlay test "$(findmnt -n -o FSTYPE /etc)" = overlay
check flatcar-first-boot grep -qw flatcar.first_boot=1 /proc/cmdline
check no-ignition-kargs not grep -q 'ignition[.]' /proc/cmdline
check oem-config-in-oem test -s /oem/config.ign
"#
        ),
    }
}

/// The check the booted system runs. Every failed check is named.
fn check_script(flavour: Flavour, issue_sha256: &str) -> String {
    let key_blob = KEY.split_whitespace().nth(1).unwrap();
    let m = flavour.manifest();
    let os_id = m.id;
    let flavour_checks = flavour_checks(flavour, &m.bin_dir);
    format!(
        r#"#!/bin/sh
# Runs inside the booted test OS; reports on the serial console.
fail=""
check() {{ desc="$1"; shift; if ! "$@" >/dev/null 2>&1; then fail="$fail [$desc]"; fi; }}
not() {{ ! "$@"; }}
check hostname test "$(hostname)" = mkstick-boot
check etc-hostname test "$(cat /etc/hostname)" = mkstick-boot
check ssh-key grep -rqF "{key_blob}" /home/core/.ssh
check password-hash test "$(getent shadow core | cut -d: -f2)" = '{HASH}'
check timezone test "$(readlink /etc/localtime)" = ../usr/share/zoneinfo/Europe/Berlin
check overlay-file sh -c 'echo "{issue_sha256}  /etc/issue.d/40-mkstick.issue" | sha256sum -c'
check release-file grep -q "^OS_ID='{os_id}'$" /etc/mkstick/release
check merged-fragment test "$(cat /etc/mkstick-extra.txt)" = "{EXTRA_TEXT}"
check banner-ran test "$(systemctl show -P ExecMainStatus mkstick-banner.service)" = 0
check banner-finished test "$(systemctl show -P ExecMainExitTimestampMonotonic mkstick-banner.service)" != 0
check data-disk-by-id test -b /dev/disk/by-id/virtio-data0
check usr-read-only sh -c '! touch /usr/lib/mkstick-probe && grep -q " /usr [^ ]* ro[, ]" /proc/mounts'
check sshd-running systemctl is-active --quiet ssh.service
check host-keys-made-at-boot test "$(systemctl show -P ExecMainExitTimestampMonotonic mkstick-sshd-keygen.service)" != 0
check host-key-exists test -s /etc/ssh/ssh_host_ed25519_key
# The host reads sshd's banner through the port `mkstick boot` forwards;
# QEMU's user network brings it in from 10.0.2.2. Stay up until sshd has
# logged that connection (at most 2 minutes).
host_came() {{ journalctl -u ssh.service -o cat | grep -q 'by 10[.]0[.]2[.]2 port'; }}
i=0
while [ $i -lt 120 ] && ! host_came; do sleep 1; i=$((i + 1)); done
check host-connected-to-sshd host_came
{flavour_checks}check no-failed-units test -z "$(systemctl list-units --failed --plain --no-legend)"
if [ -z "$fail" ]; then
    echo "MKSTICK-BOOT-OK" > /dev/ttyS0
else
    systemctl list-units --failed --plain --no-legend > /dev/ttyS0 2>&1
    echo "MKSTICK-BOOT-FAIL:$fail" > /dev/ttyS0
fi
systemctl poweroff --force
"#
    )
}

fn fragment(flavour: Flavour, issue_sha256: &str) -> String {
    let data = |s: &str| mkstick::ignition::data_url(s.as_bytes());
    let bin_dir = flavour.bin_dir();
    let unit = format!(
        "[Unit]\nDescription=mkstick boot test: check what Ignition applied\n\
After=mkstick-banner.service multi-user.target\n\n[Service]\nType=oneshot\n\
ExecStart={bin_dir}/mkstick-boot-check\n\n[Install]\nWantedBy=multi-user.target\n"
    );
    serde_json::json!({
        "ignition": {"version": "3.3.0"},
        "storage": {"files": [
            {"path": "/etc/mkstick-extra.txt", "mode": 0o644, "overwrite": true,
             "contents": {"source": data(&format!("{EXTRA_TEXT}\n"))}},
            {"path": format!("{bin_dir}/mkstick-boot-check"), "mode": 0o755, "overwrite": true,
             "contents": {"source": data(&check_script(flavour, issue_sha256))}}
        ]},
        "systemd": {"units": [
            {"name": "mkstick-boot-check.service", "enabled": true, "contents": unit}
        ]}
    })
    .to_string()
}

/// Boot `image` (in the scratch dir) with these `--data-disk`s until the
/// guest prints `MKSTICK-BOOT-OK`; fail on `MKSTICK-BOOT-FAIL`, the test OS's
/// failure marker or a timeout. Returns the serial console, which is also
/// kept as `<CARGO_TARGET_TMPDIR>/<log>-console.log`.
/// The start of a check script: stderr to the serial console, `check NAME
/// COMMAND...` records a failed check by name, `say` writes to the console.
const CHECK_HELPERS: &str = r#"#!/bin/bash
exec 2>/dev/ttyS0
fail=""
check() { desc="$1"; shift; if ! "$@" >/dev/null 2>&1; then fail="$fail [$desc]"; fi; }
say() { echo "$*" > /dev/ttyS0; }
not() { ! "$@"; }
"#;

/// An Ignition fragment that installs `script`, after [`CHECK_HELPERS`], as
/// a oneshot check that runs after `after` (unit names) and multi-user.target.
/// The script goes to the OS's `bin_dir` (os.json), as mkstick's own do: on
/// Flatcar, /usr/local/bin is read-only.
pub fn check_fragment(bin_dir: &str, description: &str, after: &str, script: &str) -> String {
    let script = format!("{CHECK_HELPERS}{script}");
    let unit = format!(
        "[Unit]\nDescription={description}\nAfter=multi-user.target {after}\n\n\
[Service]\nType=oneshot\nExecStart={bin_dir}/mkstick-boot-check\n\n\
[Install]\nWantedBy=multi-user.target\n"
    );
    serde_json::json!({
        "ignition": {"version": "3.3.0"},
        "storage": {"files": [
            {"path": format!("{bin_dir}/mkstick-boot-check"), "mode": 0o755, "overwrite": true,
             "contents": {"source": mkstick::ignition::data_url(script.as_bytes())}}
        ]},
        "systemd": {"units": [
            {"name": "mkstick-boot-check.service", "enabled": true, "contents": unit}
        ]}
    })
    .to_string()
}

/// Run `mkstick boot IMAGE` under TCG with 1024 MiB and 2 CPUs, one VM at a
/// time, failing on the test OS's failure marker, with `extra` arguments.
/// The serial console is returned and kept as
/// `<CARGO_TARGET_TMPDIR>/<log>-console.log`.
pub fn run_vm(s: &Scratch, image: &str, extra: &[&str], log: &str) -> (Output, String) {
    let _vm = VM.lock().unwrap_or_else(|e| e.into_inner());
    run_vm_holding_lock(s, image, extra, log)
}

/// [`run_vm`] for a caller that holds [`VM`] already.
fn run_vm_holding_lock(s: &Scratch, image: &str, extra: &[&str], log: &str) -> (Output, String) {
    let mut args = vec![
        "boot",
        image,
        "--accel",
        "tcg",
        "--memory-mib",
        "1024",
        "--cpus",
        "2",
        "--fail-on",
        "MKSTICK-TEST-OS-FAILURE",
    ];
    args.extend(extra);
    let o = s.run(&args);
    let console = stdout(&o);
    std::fs::write(
        Path::new(env!("CARGO_TARGET_TMPDIR")).join(format!("{log}-console.log")),
        &console,
    )
    .unwrap();
    (o, console)
}

/// The last `n` lines of a console, for a failure message.
pub fn last_lines(console: &str, n: usize) -> String {
    let lines: Vec<&str> = console.lines().collect();
    lines[lines.len().saturating_sub(n)..].join("\n")
}

/// What a boot test waits for: the check's verdict, within 420 s.
pub const EXPECT_BOOT_OK: [&str; 6] = [
    "--expect",
    "MKSTICK-BOOT-OK",
    "--fail-on",
    "MKSTICK-BOOT-FAIL",
    "--timeout",
    "420",
];

pub fn boot_vm(s: &Scratch, image: &str, disks: &[&str], log: &str) -> String {
    boot_vm_with(s, image, disks, &[], log)
}

/// [`boot_vm`] with more `mkstick boot` arguments (`--network isolated`).
pub fn boot_vm_with(s: &Scratch, image: &str, disks: &[&str], extra: &[&str], log: &str) -> String {
    let mut args = EXPECT_BOOT_OK.to_vec();
    for d in disks {
        args.extend(["--data-disk", d]);
    }
    args.extend(extra);
    let (o, console) = run_vm(s, image, &args, log);
    assert!(
        o.status.success(),
        "{log}: the boot failed: {}\nlast console lines:\n{}",
        stderr(&o),
        last_lines(&console, 80)
    );
    console
}

/// A port on 127.0.0.1 that is free now (the kernel's pick for port 0).
fn free_port() -> u16 {
    std::net::TcpListener::bind(("127.0.0.1", 0))
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// Until `stop`, read the first line the server on 127.0.0.1:`port` sends:
/// an SSH server's identification line (RFC 4253 4.2). QEMU accepts on
/// the forwarded port at once and closes when nothing in the guest listens
/// yet, so it tries again every half second. Having read it, it sends its
/// own and hangs up, so sshd logs the connection. It waits up to 110 s for
/// the line: the guest powers off once sshd logs a connection from the
/// host, so giving up on a slow sshd (a TCG guest beside other boots)
/// ended the boot with no line read.
fn read_ssh_identification(
    port: u16,
    stop: Arc<AtomicBool>,
) -> std::thread::JoinHandle<Option<String>> {
    std::thread::spawn(move || {
        while !stop.load(Ordering::Relaxed) {
            if let Ok(mut conn) = TcpStream::connect(("127.0.0.1", port)) {
                conn.set_read_timeout(Some(Duration::from_secs(110)))
                    .unwrap();
                let mut line = String::new();
                let _ = BufReader::new(&conn).read_line(&mut line);
                if line.starts_with("SSH-") {
                    let _ = conn.write_all(b"SSH-2.0-mkstick-boot-test\r\n");
                    std::thread::sleep(Duration::from_secs(1));
                    return Some(line);
                }
            }
            std::thread::sleep(Duration::from_millis(500));
        }
        None
    })
}

#[test]
fn image_boots_and_real_ignition_applies_our_config() {
    boots_and_applies_our_config(Flavour::Coreos);
}

#[test]
fn image_boots_and_real_ignition_applies_our_config_on_flatcar() {
    boots_and_applies_our_config(Flavour::Flatcar);
}

fn boots_and_applies_our_config(flavour: Flavour) {
    let os = flavour.os();
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let issue = std::fs::read(root.join("overlays/base/etc/issue.d/40-mkstick.issue")).unwrap();
    let s = Scratch::new(&format!(
        "[node]\nhostname = \"mkstick-boot\"\nssh-authorized-keys = [\"{KEY}\"]\n\
password-hash = \"{HASH}\"\ntimezone = \"Europe/Berlin\"\n\n[os]\npath = \"{}\"\n\n[boot]\nconsole = \"serial\"\n\n\
[extra]\nignition = [\"check.ign\"]\n",
        os.display()
    ));
    s.write("check.ign", &fragment(flavour, &sha256_hex(&issue)));
    ok(s.run(&["check", "-q"]));
    ok(s.run(&["build", "-q"]));
    let img = s.path("mkstick.img");
    ignition_validate(&embedded_ignition(&img));
    let before = file_sha256(&img);

    // While the guest runs, read sshd's identification line through the
    // port `mkstick boot` forwards to it.
    let log = flavour.log("boot-test");
    let (o, console, ssh_port, identification) = {
        let _vm = VM.lock().unwrap_or_else(|e| e.into_inner());
        let port = free_port();
        let stop = Arc::new(AtomicBool::new(false));
        let reader = read_ssh_identification(port, Arc::clone(&stop));
        let port_arg = port.to_string();
        let mut args = EXPECT_BOOT_OK.to_vec();
        args.extend(["--data-disk", "64M", "--ssh-port", &port_arg]);
        let (o, console) = run_vm_holding_lock(&s, "mkstick.img", &args, &log);
        stop.store(true, Ordering::Relaxed);
        (o, console, port, reader.join().unwrap())
    };
    // Every problem at once, so one failing boot shows them all.
    let mut problems = Vec::new();
    if !o.status.success() {
        problems.push(format!("the boot failed: {}", stderr(&o)));
    }
    if !stderr(&o).contains(&format!(
        "boot: log in with: ssh -p {ssh_port} core@localhost"
    )) {
        problems.push(format!("mkstick boot named no login: {}", stderr(&o)));
    }
    match &identification {
        Some(line) if line.starts_with("SSH-2.0-") => {}
        other => problems.push(format!(
            "no SSH-2.0 identification from the guest's sshd on 127.0.0.1:{ssh_port}: {other:?}"
        )),
    }
    // GRUB's console reaches the serial port through OVMF; a GRUB serial
    // terminal beside it would print each line twice.
    let booting = console.matches("mkstick: booting Debian test OS").count();
    if booting != 1 {
        problems.push(format!(
            "our grub.cfg's `mkstick: booting` line appears {booting} times on the serial console, not once"
        ));
    }
    if !console.contains("mkstick: mkstick-boot is up") {
        problems.push("the overlay's banner unit printed nothing".into());
    }
    // QEMU's user network hands out 10.0.2.15 by DHCP.
    if !console.contains("mkstick: log in with: ssh core@10.0.2.15") {
        problems.push("the banner named no address to log in at".into());
    }
    assert!(
        problems.is_empty(),
        "{log}:\n- {}\nlast console lines:\n{}",
        problems.join("\n- "),
        last_lines(&console, 80)
    );
    // 1024 MiB meets the test OS's stated minimum (os.json min-ram-mib).
    assert!(
        !console.contains("WARNING: this server has"),
        "no RAM warning with enough RAM"
    );
    assert_eq!(file_sha256(&img), before, "booting never changes the image");
}

#[test]
fn bad_config_is_refused_before_any_image_is_built() {
    let os = test_os();
    let s = Scratch::new(&format!(
        "[node]\nhostname = \"mkstick_boot\"\nssh-authorized-keys = [\"{KEY}\"]\n\n[os]\npath = \"{}\"\n",
        os.display()
    ));
    let err = fails(s.run(&["check"]));
    assert!(
        err.contains("mkstick.toml:2:12: hostname `mkstick_boot` contains '_'"),
        "{err}"
    );
    let err = fails(s.run(&["build"]));
    assert!(err.contains("hostname `mkstick_boot`"), "{err}");
    assert!(
        !s.path("mkstick.img").exists(),
        "no image after a refused config"
    );
    let leftovers: Vec<_> = std::fs::read_dir(s.dir.path())
        .unwrap()
        .filter_map(|e| e.ok())
        .filter(|e| e.file_name().to_string_lossy().starts_with(".mkstick-"))
        .collect();
    assert!(leftovers.is_empty());
}
