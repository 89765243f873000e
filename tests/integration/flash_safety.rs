//! `mkstick flash` refuses a bad image, and a `--to-file` target that is the
//! image itself, before a byte is written; a `--to-file` copy is private.

use crate::common::*;
use crate::devices::{built_image, loop_device, run_flash};
use mkstick::device::write::MIB;
use std::os::unix::fs::{FileExt, PermissionsExt};
use std::path::Path;
use std::process::Command;

/// The GPT's CRC-32 (IEEE 802.3, reflected, as in zlib).
fn crc32(bytes: &[u8]) -> u32 {
    let mut crc = !0u32;
    for &b in bytes {
        crc ^= u32::from(b);
        for _ in 0..8 {
            crc = if crc & 1 != 0 {
                (crc >> 1) ^ 0xEDB8_8320
            } else {
                crc >> 1
            };
        }
    }
    !crc
}

fn le64(b: &[u8], at: usize) -> u64 {
    u64::from_le_bytes(b[at..at + 8].try_into().unwrap())
}

fn le32(b: &[u8], at: usize) -> u32 {
    u32::from_le_bytes(b[at..at + 4].try_into().unwrap())
}

/// Make the image's first partition end at `last_lba`, in both GPT copies,
/// with every CRC correct: only the bounds are wrong.
fn set_first_partition_end(image: &Path, last_lba: u64) {
    let f = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open(image)
        .unwrap();
    let mut primary = [0u8; 92];
    f.read_exact_at(&mut primary, 512).unwrap();
    for header_lba in [1, le64(&primary, 32)] {
        let mut h = [0u8; 92];
        f.read_exact_at(&mut h, header_lba * 512).unwrap();
        assert_eq!(&h[..8], b"EFI PART");
        let entries_at = le64(&h, 72) * 512;
        let mut entries = vec![0u8; (le32(&h, 80) * le32(&h, 84)) as usize];
        f.read_exact_at(&mut entries, entries_at).unwrap();
        entries[40..48].copy_from_slice(&last_lba.to_le_bytes());
        f.write_all_at(&entries, entries_at).unwrap();
        h[88..92].copy_from_slice(&crc32(&entries).to_le_bytes());
        h[16..20].copy_from_slice(&[0; 4]);
        let crc = crc32(&h);
        h[16..20].copy_from_slice(&crc.to_le_bytes());
        f.write_all_at(&h, header_lba * 512).unwrap();
    }
}

/// Every way an image can be bad, as `(name, error text)`: each is written
/// into `mkstick.img` of `s` by `make_bad_image`.
const BAD_IMAGES: [(&str, &str); 3] = [
    (
        "truncated",
        "refusing to flash mkstick.img: it is cut short: its GPT says the disk is",
    ),
    (
        "random",
        "refusing to flash mkstick.img: it has no valid GPT",
    ),
    (
        "partition-past-end",
        "refusing to flash mkstick.img: its partition 1 (MKSTICK) runs past the end of the file",
    ),
];

/// Turn the built `mkstick.img` of `s` into the bad image `kind`.
fn make_bad_image(s: &Scratch, kind: &str) {
    let img = s.path("mkstick.img");
    let len = std::fs::metadata(&img).unwrap().len();
    match kind {
        // Cut at 20 MiB, in the middle of the EFI partition (as an
        // interrupted copy leaves it).
        "truncated" => std::fs::OpenOptions::new()
            .write(true)
            .open(&img)
            .unwrap()
            .set_len(20 * MIB)
            .unwrap(),
        "random" => std::fs::write(&img, filler(8 * MIB as usize, 77)).unwrap(),
        "partition-past-end" => set_first_partition_end(&img, len / 512 + 2048),
        other => panic!("no bad image {other}"),
    }
}

/// The old contents of a used stick: data in its first and last MiB (where
/// a partition table would be cleared) and in its middle (where a body
/// would be written).
fn used_stick(p: &Path) {
    let f = std::fs::OpenOptions::new().write(true).open(p).unwrap();
    let len = f.metadata().unwrap().len();
    for at in [0, len / 2, len - 2 * MIB] {
        f.write_all_at(&filler(2 * MIB as usize, 9), at).unwrap();
    }
}

#[test]
fn bad_images_are_refused_with_no_byte_written_to_a_loop_device() {
    let Some(lp) = loop_device(128 * MIB, used_stick) else {
        return;
    };
    for (kind, want) in BAD_IMAGES {
        let (s, _) = built_image();
        make_bad_image(&s, kind);
        let before = file_sha256(&lp.backing);
        let o = run_flash(&s, &lp.dev, &[]);
        let err = stderr(&o);
        assert!(!err.contains("panicked"), "{kind}: {err}");
        let err = fails(o);
        assert!(err.contains(want), "{kind}: {err}");
        assert!(
            err.contains("nothing was written (make an image with `mkstick build`)"),
            "{kind}: {err}"
        );
        assert!(!err.contains("writing"), "{kind}: {err}");
        assert_eq!(
            file_sha256(&lp.backing),
            before,
            "{kind}: no byte written to the stick"
        );
    }
}

#[test]
fn the_image_is_checked_before_the_confirmation_prompt() {
    let Some(lp) = loop_device(128 * MIB, used_stick) else {
        return;
    };
    let (s, _) = built_image();
    make_bad_image(&s, "random");
    let before = file_sha256(&lp.backing);
    // No --yes and no terminal: the image's error, not the prompt's.
    let err = fails(s.run(&[
        "flash",
        "mkstick.img",
        lp.dev.to_str().unwrap(),
        "--allow-fixed",
    ]));
    assert!(
        err.contains("refusing to flash mkstick.img: it has no valid GPT"),
        "{err}"
    );
    assert!(!err.contains("confirmation"), "{err}");
    assert!(!err.contains("about to overwrite"), "{err}");
    assert_eq!(file_sha256(&lp.backing), before);
}

#[test]
fn a_loop_device_over_the_image_itself_is_refused() {
    let (s, _) = built_image();
    let img = s.path("mkstick.img");
    let o = Command::new("losetup")
        .args(["-f", "--show"])
        .arg(&img)
        .output();
    let dev = match o {
        Ok(o) if o.status.success() => String::from_utf8_lossy(&o.stdout).trim().to_string(),
        _ => {
            eprintln!("SKIPPED: cannot create a loop device here; run as root");
            return;
        }
    };
    struct Detach<'a>(&'a str);
    impl Drop for Detach<'_> {
        fn drop(&mut self) {
            let _ = Command::new("losetup").args(["-d", self.0]).status();
        }
    }
    let _detach = Detach(&dev);
    let before = file_sha256(&img);
    let err = fails(run_flash(&s, Path::new(&dev), &[]));
    assert!(
        err.contains(&format!(
            "refusing to write {dev}: it is a loop device over the image file itself"
        )),
        "{err}"
    );
    assert_eq!(file_sha256(&img), before);
}

fn mode(p: &Path) -> u32 {
    std::fs::metadata(p).unwrap().permissions().mode() & 0o7777
}

fn to_file(s: &Scratch, target: &str) -> std::process::Output {
    s.run(&["flash", "mkstick.img", target, "--to-file", "--yes"])
}

#[test]
fn to_file_creates_a_missing_file_with_mode_0600() {
    let (s, _) = built_image();
    let out = ok(to_file(&s, "new.raw"));
    assert!(out.contains("verified by reading back"), "{out}");
    assert_eq!(mode(&s.path("new.raw")), 0o600);
    let verified = ok(s.run(&["inspect", "-q", "--verify", "new.raw"]));
    assert!(
        verified.contains("verified: all 8 files match"),
        "{verified}"
    );
    // The same through a path into a directory that exists...
    std::fs::create_dir(s.path("copies")).unwrap();
    ok(to_file(&s, "copies/stick.raw"));
    assert_eq!(mode(&s.path("copies/stick.raw")), 0o600);
    // ...and not into one that does not.
    let err = fails(to_file(&s, "missing/stick.raw"));
    assert!(
        err.contains("its directory missing does not exist; create it first"),
        "{err}"
    );
    assert!(!s.path("missing").exists());
}

#[test]
fn to_file_makes_an_existing_0644_file_0600() {
    let (s, _) = built_image();
    let target = s.path("copy.raw");
    std::fs::write(&target, filler(3 * MIB as usize, 5)).unwrap();
    std::fs::set_permissions(&target, std::fs::Permissions::from_mode(0o644)).unwrap();
    ok(to_file(&s, "copy.raw"));
    assert_eq!(mode(&target), 0o600);
    ok(s.run(&["inspect", "-q", "--verify", "copy.raw"]));
}

#[test]
fn to_file_refuses_the_image_itself_and_writes_nothing() {
    let (s, _) = built_image();
    let img = s.path("mkstick.img");
    std::os::unix::fs::symlink("mkstick.img", s.path("link.img")).unwrap();
    std::fs::hard_link(&img, s.path("hard.img")).unwrap();
    let before = file_sha256(&img);
    for target in ["mkstick.img", "./mkstick.img", "link.img", "hard.img"] {
        let err = fails(to_file(&s, target));
        assert!(
            err.contains(&format!(
                "refusing to write {target}: it is the image file itself"
            )),
            "{target}: {err}"
        );
        assert_eq!(
            file_sha256(&img),
            before,
            "{target}: the image is unchanged"
        );
    }
    // A directory is no target either.
    std::fs::create_dir(s.path("dir")).unwrap();
    let err = fails(to_file(&s, "dir"));
    assert!(
        err.contains("refusing to write dir: it is a directory; name a file"),
        "{err}"
    );
    assert_eq!(std::fs::read_dir(s.path("dir")).unwrap().count(), 0);
}

#[test]
fn to_file_refusing_a_bad_image_leaves_the_target_as_it_was() {
    let (s, _) = built_image();
    let target = s.path("copy.raw");
    std::fs::write(&target, filler(4 * MIB as usize, 6)).unwrap();
    std::fs::set_permissions(&target, std::fs::Permissions::from_mode(0o644)).unwrap();
    for (kind, want) in BAD_IMAGES {
        let (bad, _) = built_image();
        make_bad_image(&bad, kind);
        std::fs::copy(bad.path("mkstick.img"), s.path("mkstick.img")).unwrap();
        let before = file_sha256(&target);
        let err = fails(to_file(&s, "copy.raw"));
        assert!(err.contains(want), "{kind}: {err}");
        assert_eq!(file_sha256(&target), before, "{kind}: nothing written");
        assert_eq!(std::fs::metadata(&target).unwrap().len(), 4 * MIB);
        // A new file is not even created.
        let err = fails(to_file(&s, "new.raw"));
        assert!(err.contains(want), "{kind}: {err}");
        assert!(!s.path("new.raw").exists(), "{kind}");
    }
}
