//! Drive classification from recorded machines (tests/fixtures/devices/),
//! and `mkstick flash` on real loop devices where this machine allows it.

use crate::common::*;
use mkstick::device::drives::{self, ImageFacts, Refusal, SystemView};
use mkstick::device::validate;
use mkstick::device::write::{self, Target, WriteOptions, MIB};
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::atomic::AtomicBool;

fn view(case: &str) -> SystemView {
    SystemView::under(
        &Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("tests/fixtures/devices")
            .join(case),
    )
}

fn refusals(case: &str, name: &str, image_bytes: u64) -> Vec<String> {
    let d = drives::read_drive(&view(case), name).unwrap();
    d.refusals(
        &ImageFacts {
            size_bytes: image_bytes,
            holder_dev: None,
        },
        false,
    )
    .iter()
    .map(Refusal::explain)
    .collect()
}

#[test]
fn usb_stick_is_classified_and_safe() {
    let d = drives::read_drive(&view("usb-stick"), "sdb").unwrap();
    assert_eq!(d.transport, "usb");
    assert!(d.removable && d.looks_removable());
    assert_eq!(d.size_bytes, 62652416 * 512);
    assert_eq!(d.serial.as_deref(), Some("4C530001230101112233"));
    assert_eq!(
        d.by_id,
        ["/dev/disk/by-id/usb-SanDisk_Ultra_Fit_4C530001230101112233-0:0"]
    );
    assert_eq!(d.model.as_deref(), Some("Ultra Fit"));
    assert_eq!(d.partitions.len(), 1);
    assert_eq!(d.partitions[0].label.as_deref(), Some("STICK"));
    assert_eq!(d.partitions[0].fstype.as_deref(), Some("vfat"));
    assert!(refusals("usb-stick", "sdb", 1 << 30).is_empty());
    assert_eq!(
        refusals("usb-stick", "sdb", 64 << 30),
        ["the image needs 64.0 GiB but the device has 29.9 GiB; use a bigger stick"]
    );
    let all = drives::list(&view("usb-stick")).unwrap();
    assert_eq!(all.len(), 1);
}

#[test]
fn sd_card_in_a_built_in_reader_counts_as_removable() {
    let d = drives::read_drive(&view("sd-card"), "mmcblk0").unwrap();
    assert_eq!(d.transport, "mmc");
    assert!(!d.removable && d.looks_removable());
    assert_eq!(d.partitions[0].label.as_deref(), Some("CAMERA"));
    assert!(refusals("sd-card", "mmcblk0", 1 << 30).is_empty());
}

#[test]
fn nvme_system_disk_is_refused_for_every_reason() {
    let d = drives::read_drive(&view("nvme-system"), "nvme0n1").unwrap();
    assert_eq!(d.transport, "nvme");
    assert_eq!(d.partitions.len(), 3);
    assert!(d.partitions[2].swap);
    assert_eq!(
        refusals("nvme-system", "nvme0n1", 1 << 30),
        [
            "/dev/nvme0n1p1 holds /boot/efi of this running system; pick another device",
            "/dev/nvme0n1p2 holds / of this running system; pick another device",
            "/dev/nvme0n1p3 is in use as swap; run swapoff /dev/nvme0n1p3 or pick another device",
            "it is a fixed nvme disk, neither removable nor on USB; if you really mean it, pass --allow-fixed",
        ]
    );
    // --allow-fixed does not make a system disk writable.
    let allowed = d.refusals(
        &ImageFacts {
            size_bytes: 1 << 30,
            holder_dev: None,
        },
        true,
    );
    assert_eq!(allowed.len(), 3);
}

#[test]
fn usb_hard_disk_looks_like_a_stick_but_is_large() {
    let d = drives::read_drive(&view("usb-hdd"), "sdc").unwrap();
    assert_eq!(d.transport, "usb");
    assert!(!d.removable && d.looks_removable());
    assert!(
        d.size_bytes > drives::LARGE_DRIVE_BYTES,
        "flash warns above 128 GB"
    );
    assert!(refusals("usb-hdd", "sdc", 1 << 30).is_empty());
    assert!(
        d.describe()
            .contains("WD Elements 25A3 (3.6 TiB, usb, serial 575836314131)"),
        "{}",
        d.describe()
    );
}

#[test]
fn lvm_holder_is_refused() {
    assert_eq!(
        refusals("lvm-holder", "sdd", 1 << 30),
        [
            "/dev/sdd1 is in use by dm-0 (LVM, RAID or device-mapper); release it first or pick another device",
            "it is a fixed sata disk, neither removable nor on USB; if you really mean it, pass --allow-fixed",
        ]
    );
}

#[test]
fn mounted_stick_is_refused_with_the_unmount_command() {
    assert_eq!(
        refusals("mounted-stick", "sde", 1 << 30),
        ["/dev/sde1 is mounted on /media/alice/PHOTOS; unmount it (umount /dev/sde1) or pick another device"]
    );
}

#[test]
fn a_stick_holding_the_image_is_refused() {
    let d = drives::read_drive(&view("mounted-stick"), "sde").unwrap();
    let r = d.refusals(
        &ImageFacts {
            size_bytes: 1 << 20,
            holder_dev: Some((8, 65)),
        },
        false,
    );
    assert!(
        r.contains(&Refusal::HoldsImage {
            device: "/dev/sde1".into()
        }),
        "{r:?}"
    );
}

// ---- fault injection through the library (no root needed) ----

/// A file as a flash target. The test doubles below wrap it; a real stick
/// cannot fail on demand here (no device-mapper on this machine).
struct FileTarget {
    file: std::fs::File,
    /// Test double: the write call with this number fails once (EIO).
    fail_write: Option<usize>,
    writes: usize,
    /// Test double: flip one byte read back from this offset.
    corrupt_read_at: Option<u64>,
}

impl FileTarget {
    fn new(size: u64) -> FileTarget {
        let file = tempfile::tempfile().unwrap();
        file.set_len(size).unwrap();
        FileTarget {
            file,
            fail_write: None,
            writes: 0,
            corrupt_read_at: None,
        }
    }
}

impl Target for FileTarget {
    fn size_bytes(&self) -> u64 {
        self.file.metadata().unwrap().len()
    }
    fn write_at(&mut self, buf: &[u8], offset: u64) -> std::io::Result<()> {
        self.writes += 1;
        if self.fail_write == Some(self.writes) {
            return Err(std::io::Error::from_raw_os_error(5)); // EIO
        }
        self.file.write_all_at(buf, offset)
    }
    fn sync(&mut self) -> std::io::Result<()> {
        Ok(())
    }
    fn read_back(&mut self, buf: &mut [u8], offset: u64) -> std::io::Result<()> {
        self.file.read_exact_at(buf, offset)?;
        if let Some(at) = self.corrupt_read_at {
            if (offset..offset + buf.len() as u64).contains(&at) {
                buf[(at - offset) as usize] ^= 0x40;
            }
        }
        Ok(())
    }
    fn file(&self) -> &std::fs::File {
        &self.file
    }
}

pub(crate) fn built_image() -> (Scratch, std::fs::File) {
    let s = Scratch::new(&minimal_config());
    ok(s.run(&["build", "-q"]));
    let f = std::fs::File::open(s.path("mkstick.img")).unwrap();
    (s, f)
}

fn first_mib_is_zero(f: &std::fs::File) -> bool {
    let mut b = vec![0u8; MIB as usize];
    f.read_exact_at(&mut b, 0).unwrap();
    b.iter().all(|&x| x == 0)
}

fn options(stop: &AtomicBool) -> WriteOptions<'_> {
    WriteOptions {
        verify: true,
        full: false,
        interrupted: stop,
        on_compared: &|_| {},
        on_written: &|_| {},
        on_verified: &|_| {},
        before_partition_table: &|| {},
    }
}

#[test]
fn a_failing_write_clears_the_partition_table() {
    let (_s, img) = built_image();
    let mut t = FileTarget::new(64 * MIB);
    t.fail_write = Some(10);
    let never = AtomicBool::new(false);
    let table = validate::image(&img).unwrap();
    let e = write::write_image(&img, &table, &mut t, &options(&never)).unwrap_err();
    let msg = format!("{e:#}");
    assert!(
        msg.contains("the stick's partition table was cleared"),
        "{msg}"
    );
    assert!(msg.contains("Input/output error"), "{msg}");
    assert!(first_mib_is_zero(&t.file));
    assert!(mkstick::formats::gpt::read_esp(&t.file).is_err());
}

#[test]
fn a_read_back_mismatch_fails_and_clears_the_partition_table() {
    let (_s, img) = built_image();
    let mut t = FileTarget::new(64 * MIB);
    t.corrupt_read_at = Some(MIB + 4096 * 3);
    let never = AtomicBool::new(false);
    let table = validate::image(&img).unwrap();
    let e = write::write_image(&img, &table, &mut t, &options(&never)).unwrap_err();
    let msg = format!("{e:#}");
    assert!(msg.contains("verification failed: bytes"), "{msg}");
    assert!(msg.contains("the stick may be faulty or fake"), "{msg}");
    assert!(first_mib_is_zero(&t.file));
    // Without the fault the same write verifies.
    t.corrupt_read_at = None;
    let r = write::write_image(&img, &table, &mut t, &options(&never)).unwrap();
    assert!(r.verify_seconds.is_some() && r.gpt_moved);
    let mapped: u64 = write::mapped_ranges(&img, img.metadata().unwrap().len())
        .iter()
        .map(|r| r.len)
        .sum();
    assert!(
        r.bytes_written <= mapped + 4 * MIB,
        "writes only mapped ranges: {} > {mapped}",
        r.bytes_written
    );
}

// ---- real block devices ----

/// A loop device over a sparse file, detached on drop.
pub(crate) struct Loop {
    pub(crate) dev: PathBuf,
    pub(crate) backing: PathBuf,
    _dir: tempfile::TempDir,
}

impl Drop for Loop {
    fn drop(&mut self) {
        let _ = Command::new("losetup").arg("-d").arg(&self.dev).status();
    }
}

/// A loop device of `size` bytes, or None (with a message) where this
/// machine cannot make one. CI (MKSTICK_REQUIRE_TOOLS=1, root) requires it.
pub(crate) fn loop_device(size: u64, prepare: impl FnOnce(&Path)) -> Option<Loop> {
    let required = std::env::var("MKSTICK_REQUIRE_TOOLS").as_deref() == Ok("1");
    let dir = tempfile::tempdir().unwrap();
    let backing = dir.path().join("stick.raw");
    std::fs::File::create(&backing)
        .unwrap()
        .set_len(size)
        .unwrap();
    prepare(&backing);
    let o = Command::new("losetup")
        .args(["-f", "--show", "-P"])
        .arg(&backing)
        .output();
    match o {
        Ok(o) if o.status.success() => {
            let dev = PathBuf::from(String::from_utf8_lossy(&o.stdout).trim());
            Some(Loop {
                dev,
                backing,
                _dir: dir,
            })
        }
        other => {
            let why = match other {
                Ok(o) => String::from_utf8_lossy(&o.stderr).into_owned(),
                Err(e) => e.to_string(),
            };
            assert!(!required, "losetup is required here but failed: {why}");
            eprintln!("SKIPPED: cannot create a loop device here ({why}); run as root");
            None
        }
    }
}

pub(crate) fn run_flash(s: &Scratch, dev: &Path, extra: &[&str]) -> std::process::Output {
    let mut args = vec![
        "flash",
        "mkstick.img",
        dev.to_str().unwrap(),
        "--yes",
        "--allow-fixed",
    ];
    args.extend_from_slice(extra);
    s.run(&args)
}

#[test]
fn flash_to_a_loop_device_verifies_and_moves_the_backup_gpt() {
    let Some(lp) = loop_device(256 * MIB, |_| {}) else {
        return;
    };
    let (s, _) = built_image();
    let out = ok(run_flash(&s, &lp.dev, &[]));
    assert!(
        out.contains("verified by reading back from the device"),
        "{out}"
    );
    assert!(
        out.contains("moved the backup GPT to the end of the device"),
        "{out}"
    );
    if let Some(sgdisk) = tool("sgdisk") {
        let o = Command::new(sgdisk)
            .arg("-v")
            .arg(&lp.dev)
            .output()
            .unwrap();
        let text = String::from_utf8_lossy(&o.stdout);
        assert!(text.contains("No problems found"), "sgdisk -v: {text}");
    }
    let f = std::fs::File::open(&lp.dev).unwrap();
    assert_eq!(mkstick::io::len_of(&f).unwrap(), 256 * MIB);
    let verified = ok(s.run(&["inspect", "-q", "--verify", lp.dev.to_str().unwrap()]));
    assert!(
        verified.contains("verified: all 8 files match"),
        "{verified}"
    );
    // Without --allow-fixed a loop device (neither removable nor USB) is refused.
    let err = fails(s.run(&["flash", "mkstick.img", lp.dev.to_str().unwrap(), "--yes"]));
    assert!(
        err.contains("neither removable nor on USB; if you really mean it, pass --allow-fixed"),
        "{err}"
    );
}

#[test]
fn a_device_smaller_than_the_image_is_refused() {
    let Some(lp) = loop_device(8 * MIB, |_| {}) else {
        return;
    };
    let (s, _) = built_image();
    let before = file_sha256(&lp.backing);
    let err = fails(run_flash(&s, &lp.dev, &[]));
    assert!(
        err.contains("the image needs 35.0 MiB but the device has 8.0 MiB; use a bigger stick"),
        "{err}"
    );
    assert_eq!(file_sha256(&lp.backing), before, "nothing written");
}

#[test]
fn a_device_with_a_mounted_partition_is_refused_and_untouched() {
    if tool("sgdisk").is_none() || tool("mkfs.ext4").is_none() || tool("partx").is_none() {
        return;
    }
    let Some(lp) = loop_device(64 * MIB, |p| {
        let o = Command::new("sgdisk")
            .args(["-n", "1:2048:+32M", "-t", "1:8300"])
            .arg(p)
            .output()
            .unwrap();
        assert!(o.status.success());
    }) else {
        return;
    };
    let name = lp.dev.file_name().unwrap().to_str().unwrap().to_string();
    let _ = Command::new("partx").arg("-u").arg(&lp.dev).status();
    let part = PathBuf::from(format!("/dev/{name}p1"));
    if !part.exists() {
        // No udev here: make the node from sysfs.
        let dev = std::fs::read_to_string(format!("/sys/block/{name}/{name}p1/dev")).unwrap();
        let (maj, min) = dev.trim().split_once(':').unwrap();
        assert!(Command::new("mknod")
            .arg(&part)
            .args(["b", maj, min])
            .status()
            .unwrap()
            .success());
    }
    assert!(Command::new("mkfs.ext4")
        .args(["-q", "-F"])
        .arg(&part)
        .status()
        .unwrap()
        .success());
    let mnt = tempfile::tempdir().unwrap();
    assert!(Command::new("mount")
        .arg(&part)
        .arg(mnt.path())
        .status()
        .unwrap()
        .success());
    let (s, _) = built_image();
    // Hash while mounted (unmounting writes ext4 metadata), after a sync.
    assert!(Command::new("sync").status().unwrap().success());
    let before = file_sha256(&lp.backing);
    let err = fails(run_flash(&s, &lp.dev, &[]));
    let after = file_sha256(&lp.backing);
    let _ = Command::new("umount").arg(mnt.path()).status();
    assert!(
        err.contains(&format!(
            "/dev/{name}p1 is mounted on {}; unmount it (umount /dev/{name}p1)",
            mnt.path().display()
        )),
        "{err}"
    );
    assert_eq!(after, before, "nothing written");
}

#[test]
fn a_killed_flash_leaves_no_bootable_gpt_and_a_rerun_succeeds() {
    let Some(lp) = loop_device(512 * MIB, |_| {}) else {
        return;
    };
    // A rootfs big enough that writing takes a while.
    let s = Scratch::new(&minimal_config());
    let rootfs = fake_rootfs("root.squashfs", 300 * MIB as usize, 1, Some(FAKE_OS_STAMP));
    replace_os_file(&s, "rootfs.img", &rootfs);
    drop(rootfs);
    ok(s.run(&["build", "-q"]));
    ok(run_flash(&s, &lp.dev, &["--no-verify"]));
    assert!(mkstick::formats::gpt::read_esp(&std::fs::File::open(&lp.dev).unwrap()).is_ok());

    // Ctrl-C (SIGINT) mid-write: a clear error, and the table is cleared.
    let (code, err) = interrupt_flash(&s, &lp.dev, nix::sys::signal::Signal::SIGINT);
    assert_eq!(code, Some(1), "{err}");
    assert!(
        err.contains("interrupted") && err.contains("the stick's partition table was cleared"),
        "{err}"
    );
    assert!(mkstick::formats::gpt::read_esp(&std::fs::File::open(&lp.dev).unwrap()).is_err());
    ok(run_flash(&s, &lp.dev, &["--no-verify"]));

    // SIGKILL cannot be handled: the write order alone must keep the stick
    // from carrying a valid GPT.
    let (code, _) = interrupt_flash(&s, &lp.dev, nix::sys::signal::Signal::SIGKILL);
    assert_eq!(code, None, "killed by the signal");
    let fresh = std::fs::File::open(&lp.dev).unwrap();
    assert!(
        mkstick::formats::gpt::read_esp(&fresh).is_err(),
        "a killed flash must not leave a valid GPT"
    );
    let out = ok(run_flash(&s, &lp.dev, &[]));
    assert!(out.contains("verified by reading back"), "{out}");
}

/// Start a full flash (`--full`: the stick already holds the image, which a
/// diff flash would leave as it is), send `signal` once the old partition
/// table is gone, and return the exit code and stderr.
fn interrupt_flash(
    s: &Scratch,
    dev: &Path,
    signal: nix::sys::signal::Signal,
) -> (Option<i32>, String) {
    let mut child = Command::new(env!("CARGO_BIN_EXE_mkstick"))
        .current_dir(s.dir.path())
        .args([
            "flash",
            "-q",
            "mkstick.img",
            dev.to_str().unwrap(),
            "--yes",
            "--allow-fixed",
            "--full",
        ])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let dev = std::fs::File::open(dev).unwrap();
    let started = std::time::Instant::now();
    loop {
        let mut sig = [0u8; 8];
        dev.read_exact_at(&mut sig, 512).unwrap();
        if &sig != b"EFI PART" || started.elapsed().as_secs() > 20 {
            break;
        }
    }
    std::thread::sleep(std::time::Duration::from_millis(50));
    let finished_early = child.try_wait().unwrap().is_some();
    nix::sys::signal::kill(nix::unistd::Pid::from_raw(child.id() as i32), signal).unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(
        !finished_early,
        "the flash ended before the signal; the test proves nothing"
    );
    (
        out.status.code(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn build_flash_writes_a_file_target_and_refuses_plain_files_without_to_file() {
    let s = Scratch::new(&minimal_config());
    s.write("copy.raw", "");
    let err = fails(s.run(&["flash", "mkstick.img", "copy.raw", "--yes"]));
    assert!(err.contains("mkstick.img"), "no image yet: {err}");
    ok(s.run(&["build", "-q"]));
    let err = fails(s.run(&["flash", "mkstick.img", "copy.raw", "--yes"]));
    assert!(
        err.contains("it is a regular file, not a device; pass --to-file"),
        "{err}"
    );
    std::fs::File::create(s.path("copy.raw"))
        .unwrap()
        .set_len(64 * MIB)
        .unwrap();
    let out = ok(s.run(&[
        "build",
        "-q",
        "-o",
        "second.img",
        "--flash",
        "copy.raw",
        "--to-file",
        "--yes",
    ]));
    assert!(out.contains("verified by reading back"), "{out}");
    let verified = ok(s.run(&["inspect", "-q", "--verify", "copy.raw"]));
    assert!(
        verified.contains("verified: all 8 files match"),
        "{verified}"
    );
    let f = std::fs::File::open(s.path("copy.raw")).unwrap();
    let esp = mkstick::formats::gpt::read_esp(&f).unwrap();
    let img = std::fs::File::open(s.path("second.img")).unwrap();
    assert_eq!(
        esp,
        mkstick::formats::gpt::read_esp(&img).unwrap(),
        "same partition, backup GPT moved"
    );
}

#[test]
fn confirmation_needs_the_device_name_typed_at_a_terminal() {
    let Some(lp) = loop_device(128 * MIB, |_| {}) else {
        return;
    };
    let Some(script) = tool("script") else { return };
    let (s, _) = built_image();
    let dev = lp.dev.to_str().unwrap();
    let name = lp.dev.file_name().unwrap().to_str().unwrap();
    // No terminal and no --yes: refused.
    let err = fails(s.run(&["flash", "mkstick.img", dev, "--allow-fixed"]));
    assert!(err.contains("without confirmation; pass --yes"), "{err}");
    let before = file_sha256(&lp.backing);
    // At a terminal (script(1) gives one), the wrong name is refused...
    let bin = env!("CARGO_BIN_EXE_mkstick");
    let at_tty = |answer: &str| {
        let mut child = Command::new(&script)
            .current_dir(s.dir.path())
            .args([
                "-qec",
                &format!("{bin} flash -q mkstick.img {dev} --allow-fixed"),
                "/dev/null",
            ])
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .spawn()
            .unwrap();
        std::io::Write::write_all(
            child.stdin.as_mut().unwrap(),
            format!("{answer}\n").as_bytes(),
        )
        .unwrap();
        let o = child.wait_with_output().unwrap();
        (
            o.status.success(),
            String::from_utf8_lossy(&o.stdout).into_owned(),
        )
    };
    let (ok_wrong, out) = at_tty("sda");
    assert!(
        !ok_wrong && out.contains(&format!("type the device name ({name})")),
        "{out}"
    );
    assert!(out.contains("nothing was written"), "{out}");
    assert_eq!(file_sha256(&lp.backing), before);
    // ...and the right one goes ahead.
    let (ok_right, out) = at_tty(name);
    assert!(
        ok_right && out.contains("verified by reading back"),
        "{out}"
    );
}
