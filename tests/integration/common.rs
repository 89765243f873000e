//! Shared helpers: a small fake OS directory, running the built binary, and
//! external checkers that CI requires and a developer machine may lack.

use sha2::{Digest, Sha256};
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

pub const KEY: &str =
    "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIIiI12AOmJheE4nbgJvDhe47oAV8xqWv1169OlfLBIpZ test@mkstick";
pub const HASH: &str = "$y$j9T$abcdefghijklmnop$ABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789abcdefg";

pub fn sha256_hex(bytes: &[u8]) -> String {
    Sha256::digest(bytes)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// The sha256 of a file's contents, in hex.
pub fn file_sha256(path: impl AsRef<Path>) -> String {
    sha256_hex(&std::fs::read(path).unwrap())
}

/// Deterministic filler bytes, so fake OS files (and golden hashes) are stable.
pub fn filler(len: usize, seed: u8) -> Vec<u8> {
    let mut x = (seed as u32).wrapping_mul(0x9e37_79b9) | 1;
    (0..len)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 17;
            x ^= x << 5;
            x as u8
        })
        .collect()
}

/// How the fake OS ships its EFI boot chain.
#[derive(Clone, Copy, PartialEq, Eq)]
pub enum Efi {
    Dir,
    /// A FAT image, like Fedora CoreOS's `efiboot.img`, with its own grub.cfg.
    FatImage,
}

/// Write a fake OS directory: tiny kernel, initramfs and rootfs, an EFI tree
/// and an os.json with correct sha256 values. Nothing here boots.
pub fn fake_os(dir: &Path, efi: Efi) {
    std::fs::create_dir_all(dir.join("efi/EFI/BOOT")).unwrap();
    let files = [
        ("vmlinuz", filler(150_000, 1)),
        (
            "initramfs.img",
            fake_initramfs(700_000, 2, Some(FAKE_OS_STAMP)),
        ),
        (
            "rootfs.img",
            fake_rootfs("root.squashfs", 1_300_000, 3, Some(FAKE_OS_STAMP)),
        ),
    ];
    for (name, bytes) in &files {
        std::fs::write(dir.join(name), bytes).unwrap();
    }
    let boot = filler(40_000, 4);
    let efi_json = match efi {
        Efi::Dir => {
            std::fs::write(dir.join("efi/EFI/BOOT/BOOTX64.EFI"), &boot).unwrap();
            format!(
                r#"{{"dir":{{"path":"efi","files":[{{"path":"EFI/BOOT/BOOTX64.EFI","sha256":"{}"}}]}}}}"#,
                sha256_hex(&boot)
            )
        }
        Efi::FatImage => {
            let img = fat_image(&[
                ("EFI/BOOT/BOOTX64.EFI", &boot),
                ("EFI/fedora/grubx64.efi", &filler(30_000, 5)),
                (
                    "EFI/fedora/grub.cfg",
                    b"# the OS's own grub.cfg, for its ISO\n",
                ),
            ]);
            std::fs::write(dir.join("efiboot.img"), &img).unwrap();
            format!(
                r#"{{"fat-image":{{"path":"efiboot.img","sha256":"{}"}}}}"#,
                sha256_hex(&img)
            )
        }
    };
    let grub_cfg = match efi {
        Efi::Dir => r#"["EFI/BOOT/grub.cfg"]"#,
        Efi::FatImage => r#"["EFI/BOOT/grub.cfg", "EFI/fedora/grub.cfg"]"#,
    };
    let sha = |n: &str| file_sha256(dir.join(n));
    let json = format!(
        r#"{{
  "format": 1,
  "id": "fake-os",
  "name": "Fake OS",
  "version": "1.0",
  "kernel": {{"path": "vmlinuz", "sha256": "{}"}},
  "initramfs": {{"path": "initramfs.img", "sha256": "{}"}},
  "rootfs": {{"path": "rootfs.img", "sha256": "{}"}},
  "efi": {efi_json},
  "grub-cfg": {grub_cfg},
  "kernel-args": ["ignition.firstboot", "ignition.platform.id=metal"],
  "ignition-config-path": "config.ign",
  "network": "networkd"
}}
"#,
        sha("vmlinuz"),
        sha("initramfs.img"),
        sha("rootfs.img")
    );
    std::fs::write(dir.join("os.json"), json).unwrap();
}

/// The release stamp the fake OS's initramfs and rootfs share.
pub const FAKE_OS_STAMP: &str = "1.0\n";

const DIR: u32 = 0o040755;
const FILE: u32 = 0o100644;

/// NUL bytes up to a 4-byte boundary, as osbuild pads an initramfs before
/// appending to it.
fn pad4(mut v: Vec<u8>) -> Vec<u8> {
    v.resize(v.len().next_multiple_of(4), 0);
    v
}

/// A live initramfs of about `len` bytes shaped like Fedora CoreOS's: an
/// uncompressed early cpio (microcode), dracut's zstd cpio, then osbuild's
/// gzip cpio holding etc/coreos-live-initramfs (when `stamp` is given).
pub fn fake_initramfs(len: usize, seed: u8, stamp: Option<&str>) -> Vec<u8> {
    use mkstick::formats::initrd::{gzip, newc_members};
    let microcode = filler(2_000, seed);
    let early = newc_members(&[
        ("kernel", DIR, b""),
        ("kernel/x86", DIR, b""),
        ("kernel/x86/microcode", DIR, b""),
        ("kernel/x86/microcode/GenuineIntel.bin", FILE, &microcode),
        ("early_cpio", FILE, b"1\n"),
    ]);
    let init = filler(len.saturating_sub(3_000), seed.wrapping_add(100));
    let main = newc_members(&[("init", 0o100755, &init), ("etc", DIR, b"")]);
    let mut out = pad4(early);
    out.extend(pad4(ruzstd::encoding::compress_to_vec(
        &main[..],
        ruzstd::encoding::CompressionLevel::Fastest,
    )));
    if let Some(stamp) = stamp {
        let live = newc_members(&[
            ("etc", DIR, b""),
            ("etc/coreos-live-initramfs", FILE, stamp.as_bytes()),
        ]);
        out.extend(pad4(gzip(&live)));
    }
    out
}

/// A root filesystem image of about `len` bytes shaped like Fedora
/// CoreOS's `rootfs.img`: an uncompressed cpio of `root` (with the magic of
/// an EROFS image for `root.erofs`, of a squashfs for any other name),
/// `etc`, etc/coreos-live-rootfs (when `stamp` is given) and an osmet file.
pub fn fake_rootfs(root: &str, len: usize, seed: u8, stamp: Option<&str>) -> Vec<u8> {
    let mut image = if root == "root.erofs" {
        let mut b = vec![0u8; 1024];
        b.extend([0xe2, 0xe1, 0xf5, 0xe0]);
        b
    } else {
        b"hsqs".to_vec()
    };
    image.extend(filler(len.saturating_sub(image.len() + 600), seed));
    let mut members: Vec<(&str, u32, &[u8])> = vec![(root, FILE, &image), ("etc", DIR, b"")];
    if let Some(stamp) = stamp {
        members.push(("etc/coreos-live-rootfs", FILE, stamp.as_bytes()));
    }
    members.push(("fedora-coreos-metal.x86_64.raw.osmet", FILE, b"osmet"));
    mkstick::formats::initrd::newc_members(&members)
}

/// Replace an OS file of a [`Scratch`] (`os/NAME`) and its sha256 in os.json.
pub fn replace_os_file(s: &Scratch, name: &str, bytes: &[u8]) {
    let path = s.path(&format!("os/{name}"));
    let old = file_sha256(&path);
    std::fs::write(&path, bytes).unwrap();
    let json = std::fs::read_to_string(s.path("os/os.json")).unwrap();
    assert!(json.contains(&old), "os.json names {name}");
    std::fs::write(s.path("os/os.json"), json.replace(&old, &sha256_hex(bytes))).unwrap();
}

/// A small FAT image holding `files`, made with the fatfs crate.
pub fn fat_image(files: &[(&str, &[u8])]) -> Vec<u8> {
    // 4 MiB, or room for the files (the test OS's signed chain is ~4 MiB).
    let content: usize = files.iter().map(|(_, b)| b.len()).sum();
    let mut disk = std::io::Cursor::new(vec![0u8; (4 << 20).max(content * 5 / 4 + (1 << 20))]);
    fatfs::format_volume(&mut disk, fatfs::FormatVolumeOptions::new()).unwrap();
    {
        let fs = fatfs::FileSystem::new(&mut disk, fatfs::FsOptions::new()).unwrap();
        for (path, bytes) in files {
            let parts: Vec<&str> = path.split('/').collect();
            for i in 1..parts.len() {
                let _ = fs.root_dir().create_dir(&parts[..i].join("/"));
            }
            let mut f = fs.root_dir().create_file(path).unwrap();
            std::io::Write::write_all(&mut f, bytes).unwrap();
        }
        fs.unmount().unwrap();
    }
    disk.into_inner()
}

/// A scratch directory holding `os/` and a config naming it.
pub struct Scratch {
    pub dir: tempfile::TempDir,
}

impl Scratch {
    pub fn new(config: &str) -> Scratch {
        Self::with_efi(config, Efi::Dir)
    }

    pub fn with_efi(config: &str, efi: Efi) -> Scratch {
        let dir = tempfile::tempdir().unwrap();
        fake_os(&dir.path().join("os"), efi);
        std::fs::write(dir.path().join("mkstick.toml"), config).unwrap();
        Scratch { dir }
    }

    pub fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    pub fn write(&self, name: &str, text: &str) {
        std::fs::write(self.path(name), text).unwrap();
    }

    /// Run mkstick in this directory.
    pub fn run(&self, args: &[&str]) -> Output {
        mkstick(self.dir.path(), args, &[])
    }

    pub fn run_env(&self, args: &[&str], env: &[(&str, &str)]) -> Output {
        mkstick(self.dir.path(), args, env)
    }
}

/// Write `bad.img` in `s`: a copy of `mkstick.img` with one byte flipped
/// inside the rootfs's data (found by content, 500,000 bytes in).
pub fn write_corrupted_copy(s: &Scratch) {
    let mut bytes = std::fs::read(s.path("mkstick.img")).unwrap();
    let rootfs = std::fs::read(s.path("os/rootfs.img")).unwrap();
    let at = bytes
        .windows(64)
        .position(|w| w == &rootfs[500_000..500_064])
        .unwrap();
    bytes[at] ^= 0xff;
    std::fs::write(s.path("bad.img"), &bytes).unwrap();
}

pub fn minimal_config() -> String {
    format!(
        "[node]\nhostname = \"kube1\"\nssh-authorized-keys = [\"{KEY}\"]\n\n[os]\npath = \"os\"\n"
    )
}

pub fn mkstick(cwd: &Path, args: &[&str], env: &[(&str, &str)]) -> Output {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_mkstick"));
    cmd.current_dir(cwd)
        .args(args)
        .env_remove("SOURCE_DATE_EPOCH");
    for (k, v) in env {
        cmd.env(k, v);
    }
    cmd.output().expect("running mkstick")
}

pub fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

pub fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

/// Assert success and return stdout.
pub fn ok(o: Output) -> String {
    assert!(
        o.status.success(),
        "mkstick failed: {}\n{}",
        stderr(&o),
        stdout(&o)
    );
    stdout(&o)
}

/// Assert a failure with exit code 1 and return stderr.
pub fn fails(o: Output) -> String {
    assert_eq!(
        o.status.code(),
        Some(1),
        "expected failure; stdout: {}",
        stdout(&o)
    );
    stderr(&o)
}

/// An external checker. CI sets MKSTICK_REQUIRE_TOOLS=1 and installs them
/// all; elsewhere a missing tool skips the check with a message.
pub fn tool(name: &str) -> Option<PathBuf> {
    let found = std::env::var_os("PATH").and_then(|p| {
        std::env::split_paths(&p)
            .map(|d| d.join(name))
            .find(|p| p.is_file())
    });
    if found.is_none() {
        if std::env::var("MKSTICK_REQUIRE_TOOLS").as_deref() == Ok("1") {
            panic!("{name} is required (MKSTICK_REQUIRE_TOOLS=1) but not installed");
        }
        eprintln!("SKIPPED check: {name} is not installed");
    }
    found
}

/// Every file of an image's EFI partition, read with the gpt and fatfs crates.
pub fn esp_files(image: &Path) -> Vec<(String, Vec<u8>)> {
    let f = std::fs::File::open(image).unwrap();
    let esp = mkstick::formats::gpt::read_esp(&f).unwrap();
    let mut disk = mkstick::io::Slice::new(&f, esp.start_bytes(), esp.size_bytes());
    let fs = fatfs::FileSystem::new(&mut disk, fatfs::FsOptions::new()).unwrap();
    let mut out = Vec::new();
    mkstick::formats::fat::walk(&fs, |p, file| {
        let mut data = Vec::new();
        std::io::Read::read_to_end(file, &mut data)?;
        out.push((p.to_string(), data));
        Ok(())
    })
    .unwrap();
    out
}

pub fn esp_file(image: &Path, path: &str) -> Vec<u8> {
    esp_files(image)
        .into_iter()
        .find(|(p, _)| p == path)
        .unwrap_or_else(|| panic!("{path} is not on the stick"))
        .1
}

/// The Ignition config inside an image's config initrd: `config.ign`
/// (Fedora CoreOS) or `usr/share/oem/config.ign` (Flatcar).
pub fn embedded_ignition(image: &Path) -> Vec<u8> {
    let members = mkstick::formats::initrd::read(&esp_file(image, "mkstick/ignition.img")).unwrap();
    members
        .into_iter()
        .find(|m| m.name == "config.ign" || m.name == "usr/share/oem/config.ign")
        .expect("config.ign in the config initrd")
        .data
}

/// Run an external checker on `bytes` written to a file named `name`, if
/// the checker is installed, and assert that it accepts them.
fn external_check(checker: &str, name: &str, bytes: &[u8]) {
    let Some(tool) = tool(checker) else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join(name);
    std::fs::write(&p, bytes).unwrap();
    let o = Command::new(tool).arg(&p).output().unwrap();
    assert!(
        o.status.success(),
        "{checker} rejected {name}: {}{}\n{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr),
        String::from_utf8_lossy(bytes)
    );
}

/// Run `ignition-validate` on a config, if it is installed.
pub fn ignition_validate(config: &[u8]) {
    external_check("ignition-validate", "config.ign", config);
}

/// Run GRUB's own parser, `grub-script-check`, on a rendered grub.cfg: a
/// syntax error there would only show on the server's screen.
pub fn grub_script_check(cfg: &[u8]) {
    external_check("grub-script-check", "grub.cfg", cfg);
}

/// The manifest of the current directory, run by `sh` on the host and in
/// the guest alike: every entry's path, mode, owner, group, link count,
/// link target and size, then every file's sha256, each sorted.
pub const TREE_MANIFEST: &str = "find . -printf '%p %m %U %G %n %l %s\\n' | LC_ALL=C sort; find . -type f -exec sha256sum {} + | LC_ALL=C sort";
