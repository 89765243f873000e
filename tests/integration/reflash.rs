//! `mkstick flash` onto a stick that already holds an image: only the chunks
//! that differ are written, in the same order (old GPTs zeroed first, the
//! new table last), every byte is verified, and `--full` writes everything.
//! Bytes physically written are counted by the loop device's own statistics.

use crate::common::*;
use crate::devices::{loop_device, run_flash, Loop};
use mkstick::device::write::MIB;
use std::os::unix::fs::FileExt;
use std::process::Command;

/// The target in these tests: bigger than the image, so the backup GPT moves.
const STICK_BYTES: u64 = 256 * MIB;
/// The two 1 MiB areas zeroed before any write.
const GPT_AREAS_BYTES: u64 = 2 * MIB;

/// A scratch directory with an image built for `hostname`: the fake OS with
/// a 48 MiB rootfs, so a full write is far more than a diff write.
fn built(hostname: &str) -> Scratch {
    let s = Scratch::new(&minimal_config().replace("\"kube1\"", &format!("\"{hostname}\"")));
    let rootfs = fake_rootfs("root.squashfs", 48 * MIB as usize, 1, Some(FAKE_OS_STAMP));
    replace_os_file(&s, "rootfs.img", &rootfs);
    ok(s.run(&["build", "-q"]));
    s
}

/// Sectors written to the loop device so far (/sys/block/loopN/stat, field 7).
fn sectors_written(lp: &Loop) -> u64 {
    let name = lp.dev.file_name().unwrap().to_str().unwrap();
    let stat = std::fs::read_to_string(format!("/sys/block/{name}/stat")).unwrap();
    stat.split_whitespace().nth(6).unwrap().parse().unwrap()
}

/// Flash `s`'s image onto `lp` with `extra` arguments; its stdout and the
/// bytes physically written.
fn flash_counted(s: &Scratch, lp: &Loop, extra: &[&str]) -> (String, u64) {
    counted(lp, || run_flash(s, &lp.dev, extra))
}

/// Run a command that must succeed; its stdout and the bytes it physically
/// wrote to `lp`.
fn counted(lp: &Loop, run: impl FnOnce() -> std::process::Output) -> (String, u64) {
    let before = sectors_written(lp);
    let out = ok(run());
    (out, (sectors_written(lp) - before) * 512)
}

/// The device holds the image byte for byte over the image's length, but for
/// the partition table (sized for the device: the protective MBR, and the
/// backup GPT moved to the device's end), which must hold the same disk and
/// partitions and pass `sgdisk -v`.
fn assert_holds(lp: &Loop, s: &Scratch) {
    let image = std::fs::read(s.path("mkstick.img")).unwrap();
    let len = image.len();
    let mut dev = vec![0u8; len];
    // Through O_DIRECT would need alignment; a fresh descriptor after
    // dropping the device's caches reads the medium.
    assert!(Command::new("blockdev")
        .arg("--flushbufs")
        .arg(&lp.dev)
        .status()
        .unwrap()
        .success());
    std::fs::File::open(&lp.dev)
        .unwrap()
        .read_exact_at(&mut dev, 0)
        .unwrap();
    let (head, tail) = (34 * 512, len - 33 * 512);
    if let Some(at) = (head..tail).find(|&i| dev[i] != image[i]) {
        panic!(
            "the device differs from the image at byte {at} (of {len}): {} instead of {}",
            dev[at], image[at]
        );
    }
    let f = std::fs::File::open(&lp.dev).unwrap();
    let img = std::fs::File::open(s.path("mkstick.img")).unwrap();
    assert_eq!(
        mkstick::formats::gpt::read_esp(&f).unwrap(),
        mkstick::formats::gpt::read_esp(&img).unwrap()
    );
    if let Some((found, clean, text)) = sgdisk_verify(lp) {
        assert!(found && clean, "sgdisk -v: {text}");
    }
}

/// `sgdisk -v` on the device: whether it found a GPT (on a blank disk it
/// makes one up in memory), whether it found no problems, and its output.
/// None when sgdisk is missing (CI requires it: MKSTICK_REQUIRE_TOOLS).
fn sgdisk_verify(lp: &Loop) -> Option<(bool, bool, String)> {
    let sgdisk = tool("sgdisk")?;
    let o = Command::new(sgdisk)
        .arg("-v")
        .arg(&lp.dev)
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&o.stdout).into_owned();
    Some((
        !text.contains("Creating new GPT entries in memory"),
        text.contains("No problems found"),
        text,
    ))
}

/// The GPT headers the device holds: the primary (LBA 1) and the backup
/// (last LBA) signatures.
fn gpt_signatures(lp: &Loop) -> ([u8; 8], [u8; 8]) {
    let f = std::fs::File::open(&lp.dev).unwrap();
    let (mut primary, mut backup) = ([0u8; 8], [0u8; 8]);
    f.read_exact_at(&mut primary, 512).unwrap();
    f.read_exact_at(&mut backup, STICK_BYTES - 512).unwrap();
    (primary, backup)
}

#[test]
fn a_hostname_change_writes_a_few_mib_and_the_stick_matches() {
    let Some(lp) = loop_device(STICK_BYTES, |_| {}) else {
        return;
    };
    let (a, b) = (built("kube1"), built("kube2"));
    let image_bytes = std::fs::metadata(a.path("mkstick.img")).unwrap().len();
    assert_eq!(
        image_bytes,
        std::fs::metadata(b.path("mkstick.img")).unwrap().len()
    );
    let (_, first) = flash_counted(&a, &lp, &[]);
    assert_holds(&lp, &a);
    let (out, written) = flash_counted(&b, &lp, &[]);
    eprintln!(
        "first flash: {first} bytes written; reflash with a new hostname: {written} bytes; {out}"
    );
    assert!(
        written <= GPT_AREAS_BYTES + 4 * MIB,
        "a hostname change wrote {written} bytes (the first flash wrote {first}): {out}"
    );
    assert!(
        out.contains("compared") && out.contains("rewritten"),
        "{out}"
    );
    assert!(out.contains("verified by reading back"), "{out}");
    assert_holds(&lp, &b);
}

/// A config that grows by far more than a FAT cluster, within its room: an
/// `[extra] ignition` fragment carrying 600 KB of incompressible data, so
/// the config initrd grows by about as much. The OS's files keep their
/// clusters (the layout in `image::place`), so the reflash writes the
/// config region and the tables, not the 48 MiB rootfs behind them.
#[test]
fn a_config_that_grows_writes_a_few_mib_not_the_os() {
    let Some(lp) = loop_device(STICK_BYTES, |_| {}) else {
        return;
    };
    let a = built("kube1");
    let b = built("kube1");
    let noise = filler(600_000, 9);
    let fragment = serde_json::json!({
        "ignition": {"version": "3.3.0"},
        "storage": {"files": [{
            "path": "/etc/mkstick-large.bin", "mode": 0o644, "overwrite": true,
            "contents": {"source": mkstick::ignition::data_url(&noise)}
        }]}
    });
    std::fs::write(b.path("large.ign"), fragment.to_string()).unwrap();
    let config = std::fs::read_to_string(b.path("mkstick.toml")).unwrap();
    std::fs::write(
        b.path("mkstick.toml"),
        format!("{config}\n[extra]\nignition = [\"large.ign\"]\n"),
    )
    .unwrap();
    ok(b.run(&["build", "-q", "--force"]));
    let initrd_bytes = |s: &Scratch| esp_file(&s.path("mkstick.img"), "mkstick/ignition.img").len();
    let grown = initrd_bytes(&b) - initrd_bytes(&a);
    assert!(
        grown > 400_000,
        "the config initrd grew by {grown} bytes only"
    );
    ok(run_flash(&a, &lp.dev, &[]));
    let (out, written) = flash_counted(&b, &lp, &[]);
    eprintln!("reflash with a config {grown} bytes larger: {written} bytes written; {out}");
    assert!(
        written <= GPT_AREAS_BYTES + 4 * MIB,
        "a config {grown} bytes larger wrote {written} bytes: {out}"
    );
    assert_holds(&lp, &b);
}

#[test]
fn flashing_the_same_image_twice_writes_nothing_the_second_time() {
    let Some(lp) = loop_device(STICK_BYTES, |_| {}) else {
        return;
    };
    let a = built("kube1");
    ok(run_flash(&a, &lp.dev, &[]));
    let (out, written) = flash_counted(&a, &lp, &[]);
    assert_eq!(written, 0, "the second flash wrote {written} bytes: {out}");
    assert!(
        out.contains("already holds mkstick.img: nothing written"),
        "{out}"
    );
    assert_holds(&lp, &a);
}

/// `build --flash` flashes through the same code: a rebuild of an unchanged
/// config onto the stick that holds it writes nothing, and one with a new
/// hostname writes a few MiB.
#[test]
fn build_flash_writes_only_what_changed_too() {
    let Some(lp) = loop_device(STICK_BYTES, |_| {}) else {
        return;
    };
    let s = built("kube1");
    ok(run_flash(&s, &lp.dev, &[]));
    let dev = lp.dev.to_str().unwrap();
    let build_flash = |s: &Scratch| {
        counted(&lp, || {
            s.run(&[
                "build",
                "-q",
                "--force",
                "--flash",
                dev,
                "--yes",
                "--allow-fixed",
            ])
        })
    };
    let (out, written) = build_flash(&s);
    assert_eq!(
        written, 0,
        "an unchanged rebuild wrote {written} bytes: {out}"
    );
    assert!(out.contains("nothing written"), "{out}");
    let config = std::fs::read_to_string(s.path("mkstick.toml")).unwrap();
    s.write("mkstick.toml", &config.replace("\"kube1\"", "\"kube2\""));
    let (out, written) = build_flash(&s);
    assert!(
        written > 0 && written <= GPT_AREAS_BYTES + 4 * MIB,
        "a new hostname wrote {written} bytes: {out}"
    );
    assert_holds(&lp, &s);
}

#[test]
fn full_writes_every_mapped_byte_again() {
    let Some(lp) = loop_device(STICK_BYTES, |_| {}) else {
        return;
    };
    let a = built("kube1");
    ok(run_flash(&a, &lp.dev, &[]));
    let img = std::fs::File::open(a.path("mkstick.img")).unwrap();
    let len = img.metadata().unwrap().len();
    let mapped: u64 = mkstick::device::write::mapped_ranges(&img, len)
        .iter()
        .map(|r| r.len)
        .sum();
    let (out, written) = flash_counted(&a, &lp, &["--full"]);
    // Every mapped byte but the image's own GPT (rewritten for the device,
    // within the zeroed areas): at least the mapped bytes less 2 MiB.
    assert!(
        written + GPT_AREAS_BYTES >= mapped,
        "--full wrote {written} bytes of {mapped} mapped: {out}"
    );
    assert!(
        !out.contains("nothing written") && !out.contains("compared"),
        "{out}"
    );
    assert_holds(&lp, &a);
}

#[test]
fn a_chunk_corrupted_on_the_stick_is_found_and_rewritten() {
    let Some(lp) = loop_device(STICK_BYTES, |_| {}) else {
        return;
    };
    let a = built("kube1");
    ok(run_flash(&a, &lp.dev, &[]));
    // The middle data byte of the image, well clear of both GPT areas.
    let image = std::fs::read(a.path("mkstick.img")).unwrap();
    let data: Vec<usize> = (2 * MIB as usize..image.len() - 2 * MIB as usize)
        .filter(|&i| image[i] != 0)
        .collect();
    let at = data[data.len() / 2];
    let dev = std::fs::OpenOptions::new()
        .write(true)
        .open(&lp.dev)
        .unwrap();
    dev.write_all_at(&[!image[at]], at as u64).unwrap();
    dev.sync_all().unwrap();
    drop(dev);
    let (out, written) = flash_counted(&a, &lp, &[]);
    assert!(
        !out.contains("nothing written"),
        "the corruption was missed: {out}"
    );
    assert!(
        written <= GPT_AREAS_BYTES + MIB,
        "one corrupted chunk cost {written} bytes: {out}"
    );
    assert_holds(&lp, &a);
}

#[test]
fn a_diff_flash_killed_before_its_partition_table_leaves_no_gpt_and_a_rerun_succeeds() {
    let Some(lp) = loop_device(STICK_BYTES, |_| {}) else {
        return;
    };
    let (a, b) = (built("kube1"), built("kube2"));
    ok(run_flash(&a, &lp.dev, &[]));
    assert_eq!(gpt_signatures(&lp), (*b"EFI PART", *b"EFI PART"));

    // The test-only hook stops the flash after its data is written and
    // verified, just before the partition table: kill it there.
    let marker = b.path("hanging");
    let before = sectors_written(&lp);
    let child = Command::new(env!("CARGO_BIN_EXE_mkstick"))
        .current_dir(b.dir.path())
        .args(["flash", "-q", "mkstick.img"])
        .arg(&lp.dev)
        .args(["--yes", "--allow-fixed"])
        .env("MKSTICK_TEST_HANG_BEFORE_PARTITION_TABLE", &marker)
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    // A failed assertion must not leave the flash waiting at the hook.
    struct KillOnDrop(std::process::Child);
    impl Drop for KillOnDrop {
        fn drop(&mut self) {
            let _ = self.0.kill();
            let _ = self.0.wait();
        }
    }
    let mut child = KillOnDrop(child);
    let started = std::time::Instant::now();
    while !marker.exists() {
        if let Some(status) = child.0.try_wait().unwrap() {
            let mut err = String::new();
            if let Some(mut e) = child.0.stderr.take() {
                let _ = std::io::Read::read_to_string(&mut e, &mut err);
            }
            panic!("the flash ended ({status}) before the hook: {err}");
        }
        assert!(
            started.elapsed().as_secs() < 120,
            "the hook was never reached"
        );
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    let data_written = (sectors_written(&lp) - before) * 512;
    assert!(data_written > 0, "the flash wrote nothing before the hook");
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(child.0.id() as i32),
        nix::sys::signal::Signal::SIGKILL,
    )
    .unwrap();
    let status = child.0.wait().unwrap();
    assert_eq!(status.code(), None, "killed by SIGKILL");

    // Both headers are zero, so nothing boots from (or trusts) the stick.
    assert_eq!(
        gpt_signatures(&lp),
        ([0; 8], [0; 8]),
        "a killed diff flash left GPT headers (primary, backup)"
    );
    let f = std::fs::File::open(&lp.dev).unwrap();
    assert!(mkstick::formats::gpt::read_esp(&f).is_err(), "no valid GPT");
    if let Some((found, _, text)) = sgdisk_verify(&lp) {
        assert!(!found, "sgdisk -v finds no GPT: {text}");
    }

    // A rerun finds most chunks written already and completes the stick.
    let (out, written) = flash_counted(&b, &lp, &[]);
    assert!(out.contains("verified by reading back"), "{out}");
    assert!(written <= GPT_AREAS_BYTES + 4 * MIB, "{written}: {out}");
    assert_holds(&lp, &b);
}
