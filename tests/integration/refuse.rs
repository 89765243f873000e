//! Nothing is written, downloaded or left behind before the input is
//! checked: `-o` on devices, interrupted builds, config-only mistakes with a
//! counting server, and the mistakes a server would only find at boot.

use crate::common::*;
use crate::http::Server;
use std::os::unix::fs::FileTypeExt;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

fn is_root() -> bool {
    // /proc/self belongs to the process's effective user.
    std::fs::metadata("/proc/self").is_ok_and(|m| m.uid() == 0)
}

#[test]
fn output_refuses_device_nodes_and_dev_paths() {
    let s = Scratch::new(&minimal_config());
    // A new name under /dev is a stick that is not plugged in.
    let e = fails(s.run(&["build", "-o", "/dev/mkstick-no-such-stick"]));
    assert!(
        e.contains("/dev holds devices, not files") && e.contains("--flash"),
        "{e}"
    );
    assert!(!Path::new("/dev/mkstick-no-such-stick").exists());
    if !is_root() {
        eprintln!("SKIPPED: device nodes need root (mknod)");
        return;
    }
    // A character device first, in the scratch directory (a copy of
    // /dev/null's node), so that a regression fails here and never replaces
    // the machine's own /dev/null.
    let null = s.path("null");
    nix::sys::stat::mknod(
        &null,
        nix::sys::stat::SFlag::S_IFCHR,
        nix::sys::stat::Mode::from_bits_truncate(0o666),
        nix::sys::stat::makedev(1, 3),
    )
    .unwrap();
    let e = fails(s.run(&["build", "-o", "null", "--force"]));
    assert!(
        e.contains("refusing to write the image over null: it is not a regular file"),
        "{e}"
    );
    assert!(std::fs::symlink_metadata(&null)
        .unwrap()
        .file_type()
        .is_char_device());
    // /dev/null: mkstick once replaced it with a 133 MiB file and said "built".
    let e = fails(s.run(&["build", "-o", "/dev/null", "--force"]));
    assert!(
        e.contains("refusing to write the image over /dev/null: it is not a regular file"),
        "{e}"
    );
    assert!(std::fs::metadata("/dev/null")
        .unwrap()
        .file_type()
        .is_char_device());
    // A block device node (loop major 7; the node need not be backed).
    let node = s.path("stick");
    nix::sys::stat::mknod(
        &node,
        nix::sys::stat::SFlag::S_IFBLK,
        nix::sys::stat::Mode::from_bits_truncate(0o600),
        nix::sys::stat::makedev(7, 250),
    )
    .unwrap();
    let e = fails(s.run(&["build", "-o", "stick", "--force"]));
    assert!(
        e.contains("it is a device") && e.contains("mkstick build --flash stick"),
        "{e}"
    );
    let meta = std::fs::symlink_metadata(&node).unwrap();
    assert!(meta.file_type().is_block_device(), "the node is untouched");
    assert_eq!(meta.rdev(), nix::sys::stat::makedev(7, 250));
    assert!(!s.path("stick.manifest.json").exists());
}

use std::os::unix::fs::MetadataExt;

/// `.mkstick-*.tmp` files in `dir`.
fn temp_files(dir: &Path) -> Vec<String> {
    std::fs::read_dir(dir)
        .unwrap()
        .filter_map(|e| e.ok())
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|n| n.starts_with(".mkstick-") && n.ends_with(".tmp"))
        .collect()
}

/// A scratch OS whose kernel is big enough for a build to take a few
/// seconds, so that a signal lands while the image is being written.
fn slow_scratch() -> Scratch {
    let s = Scratch::new(&minimal_config());
    let kernel = s.path("os/vmlinuz");
    let bytes = filler(1 << 20, 9).repeat(384);
    std::fs::write(&kernel, &bytes).unwrap();
    let json = std::fs::read_to_string(s.path("os/os.json")).unwrap();
    let old = sha256_hex(&filler(150_000, 1));
    std::fs::write(
        s.path("os/os.json"),
        json.replace(&old, &sha256_hex(&bytes)),
    )
    .unwrap();
    s
}

/// Start `mkstick build` in `s` and wait until its temp file exists.
fn build_until_temp_file(s: &Scratch) -> std::process::Child {
    let mut child = Command::new(env!("CARGO_BIN_EXE_mkstick"))
        .current_dir(s.dir.path())
        .args(["build", "-o", "out.img"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let started = Instant::now();
    while temp_files(s.dir.path()).is_empty() {
        assert!(
            child.try_wait().unwrap().is_none(),
            "the build ended before its temp file was seen"
        );
        assert!(started.elapsed() < Duration::from_secs(120), "no temp file");
        std::thread::sleep(Duration::from_millis(5));
    }
    child
}

#[test]
fn signals_during_build_leave_no_temp_file() {
    use nix::sys::signal::{kill, Signal};
    use std::os::unix::process::ExitStatusExt;
    for sig in [Signal::SIGINT, Signal::SIGTERM, Signal::SIGHUP] {
        let s = slow_scratch();
        let mut child = build_until_temp_file(&s);
        kill(nix::unistd::Pid::from_raw(child.id() as i32), sig).unwrap();
        let status = child.wait().unwrap();
        assert_eq!(status.signal(), Some(sig as i32), "{sig}: {status:?}");
        assert_eq!(temp_files(s.dir.path()), Vec::<String>::new(), "{sig}");
        assert!(!s.path("out.img").exists(), "{sig}");
    }
}

#[test]
fn the_next_build_sweeps_what_a_killed_build_left() {
    use nix::sys::signal::{kill, Signal};
    let s = slow_scratch();
    let mut child = build_until_temp_file(&s);
    kill(
        nix::unistd::Pid::from_raw(child.id() as i32),
        Signal::SIGKILL,
    )
    .unwrap();
    child.wait().unwrap();
    let left = temp_files(s.dir.path());
    assert_eq!(left.len(), 1, "SIGKILL runs no handler: {left:?}");
    let meta = std::fs::metadata(s.path(&left[0])).unwrap();
    assert_eq!(meta.mode() & 0o777, 0o600, "the leftover is private");
    ok(s.run(&["build", "-o", "out.img"]));
    assert_eq!(temp_files(s.dir.path()), Vec::<String>::new());
    assert!(s.path("out.img").is_file());
}

#[test]
fn a_signal_during_boot_leaves_no_data_disk_and_no_qemu() {
    use nix::sys::signal::{kill, Signal};
    if tool("qemu-system-x86_64").is_none() {
        return;
    }
    let s = Scratch::new(&minimal_config());
    ok(s.run(&["build", "-o", "stick.img"]));
    let tmp = s.path("tmp");
    std::fs::create_dir(&tmp).unwrap();
    let mut child = Command::new(env!("CARGO_BIN_EXE_mkstick"))
        .current_dir(s.dir.path())
        .env("TMPDIR", &tmp)
        .args([
            "boot",
            "stick.img",
            "--data-disk",
            "4G",
            "--accel",
            "tcg",
            "--expect",
            "NEVER-PRINTED",
            "--timeout",
            "300",
        ])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    // Wait for the blank data disk, then for QEMU to hold it.
    let started = Instant::now();
    let disk = loop {
        let found = walk_files(&tmp)
            .into_iter()
            .find(|p| p.extension().is_some_and(|e| e == "img"));
        if let Some(d) = found {
            break d;
        }
        assert!(started.elapsed() < Duration::from_secs(60), "no data disk");
        std::thread::sleep(Duration::from_millis(20));
    };
    let qemu = loop {
        if let Some(pid) = children_of(child.id()).first() {
            break *pid;
        }
        assert!(started.elapsed() < Duration::from_secs(60), "no QEMU");
        std::thread::sleep(Duration::from_millis(20));
    };
    kill(
        nix::unistd::Pid::from_raw(child.id() as i32),
        Signal::SIGTERM,
    )
    .unwrap();
    let status = child.wait().unwrap();
    use std::os::unix::process::ExitStatusExt;
    assert_eq!(status.signal(), Some(Signal::SIGTERM as i32), "{status:?}");
    assert!(!disk.exists(), "{} was left behind", disk.display());
    assert_eq!(walk_files(&tmp), Vec::<std::path::PathBuf>::new());
    // QEMU was killed with it (give the kernel a moment to reap).
    let gone = (0..100).any(|_| {
        std::thread::sleep(Duration::from_millis(20));
        !Path::new(&format!("/proc/{qemu}")).exists()
            || std::fs::read_to_string(format!("/proc/{qemu}/stat"))
                .is_ok_and(|st| st.contains(") Z "))
    });
    assert!(gone, "QEMU {qemu} still runs");
}

fn walk_files(dir: &Path) -> Vec<std::path::PathBuf> {
    let mut out = Vec::new();
    for e in std::fs::read_dir(dir).unwrap().flatten() {
        let p = e.path();
        if p.is_dir() {
            out.extend(walk_files(&p));
        } else {
            out.push(p);
        }
    }
    out
}

fn children_of(pid: u32) -> Vec<u32> {
    std::fs::read_to_string(format!("/proc/{pid}/task/{pid}/children"))
        .unwrap_or_default()
        .split_whitespace()
        .filter_map(|p| p.parse().ok())
        .collect()
}

/// A Fedora CoreOS config fetched from `server`: any request is counted.
fn fcos_config(server: &Server, node_extra: &str, rest: &str) -> String {
    format!(
        "[node]\nhostname = \"kube1\"\n{node_extra}\n[os]\ndistro = \"fedora-coreos\"\nstream-url = \"{}/streams/stable.json\"\n{rest}",
        server.base
    )
}

#[test]
fn config_mistakes_cost_no_request_in_any_command() {
    let server = Server::start();
    let s = Scratch::new("");
    let env = [(
        "XDG_CACHE_HOME",
        s.path("cache").to_str().unwrap().to_string(),
    )];
    let env: Vec<(&str, &str)> = env.iter().map(|(k, v)| (*k, v.as_str())).collect();
    // No SSH key and no password: once found only after the download.
    s.write("mkstick.toml", &fcos_config(&server, "", ""));
    for cmd in ["check", "plan", "build", "fetch"] {
        let e = fails(s.run_env(&[cmd], &env));
        assert!(e.contains("nobody could log in"), "{cmd}: {e}");
    }
    // A storage mistake and a missing [extra] ignition file, the same way.
    let key = format!("ssh-authorized-keys = [\"{KEY}\"]");
    for (rest, want) in [
        (
            "[storage]\ndrives = [\"/dev/disk/by-id/virtio-a\"]\nprofile = \"raid1\"\n",
            "mkstick.toml:9:11: profile raid1 keeps 2 copies",
        ),
        (
            "[extra]\nignition = [\"missing.ign\"]\n",
            "cannot read the extra Ignition config",
        ),
    ] {
        s.write("mkstick.toml", &fcos_config(&server, &key, rest));
        for cmd in ["check", "plan", "build", "fetch"] {
            let e = fails(s.run_env(&[cmd], &env));
            assert!(e.contains(want), "{cmd}: {want:?} in {e}");
        }
    }
    assert_eq!(server.requests(), vec![], "nothing was fetched");
    assert!(!s.path("mkstick.img").exists());
}

/// Mistakes that `check` once accepted and the server found at boot.
#[test]
fn check_refuses_what_the_server_would_refuse() {
    let server = Server::start();
    let s = Scratch::new("");
    let key = format!("ssh-authorized-keys = [\"{KEY}\"]");
    let storage = "[storage]\ndrives = [\"/dev/disk/by-id/virtio-a\"]\n";
    let k8s = "[kubernetes]\n[extra]\nmanifests = [\"m.json\"]\n";
    s.write(
        "m.json",
        "{\n  \"apiVersion\": \"v1\",\n  \"kind\": \"Namespace\",\n  \"metadata\": {\"name\": \"a\"},\n}\n",
    );
    s.write(
        "big.yaml",
        &format!(
            "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: big\ndata:\n  blob: {}\n",
            "x".repeat(40 << 20)
        ),
    );
    for (node, rest, want) in [
        (
            "timezone = \"Berlin\"",
            String::new(),
            "mkstick.toml:4:12: `Berlin` is not an IANA time zone name; did you mean `Europe/Berlin`?",
        ),
        (
            "timezone = \"Mars/Olympus_Mons\"",
            String::new(),
            "mkstick.toml:4:12: `Mars/Olympus_Mons` is not an IANA time zone name",
        ),
        (
            "",
            "[storage]\ndrives = [\"/dev/disk/by-id/ata-WDC_WD40EFRX_X-part1\"]\n".to_string(),
            "is partition 1 of a drive, and mkstick pools whole drives; use the drive itself: `/dev/disk/by-id/ata-WDC_WD40EFRX_X`",
        ),
        (
            "",
            format!("{storage}{k8s}"),
            "m.json:5:1: trailing comma",
        ),
        (
            "",
            format!("{storage}{}", k8s.replace("m.json", "big.yaml")),
            "big.yaml:1:1: ConfigMap `big` holds 40.0 MiB of data",
        ),
    ] {
        s.write(
            "mkstick.toml",
            &fcos_config(&server, &format!("{key}\n{node}"), &rest),
        );
        let e = fails(s.run(&["check"]));
        assert!(e.contains(want), "{want:?} in {e}");
    }
    assert_eq!(server.requests(), vec![], "nothing was fetched");
}
