//! The CLI's main error paths, as the user sees them on stderr.

use crate::common::*;

#[test]
fn unknown_key_names_file_line_and_the_right_key() {
    let s = Scratch::new(&format!(
        "[node]\nhostname = \"kube1\"\nssh-authorised-keys = [\"{KEY}\"]\n[os]\npath = \"os\"\n"
    ));
    let err = fails(s.run(&["check"]));
    assert!(
        err.contains("error: mkstick.toml:3:1: unknown key `ssh-authorised-keys`; did you mean `ssh-authorized-keys`?"),
        "{err}"
    );
}

#[test]
fn bad_ssh_key_points_at_the_key() {
    let s = Scratch::new(&format!(
        "[node]\nhostname = \"kube1\"\nssh-authorized-keys = [\n  \"{KEY}\",\n  \"ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIIiI12\",\n]\n[os]\npath = \"os\"\n"
    ));
    let err = fails(s.run(&["build"]));
    assert!(
        err.contains("mkstick.toml:5:3: the ssh-ed25519 key's data is"),
        "{err}"
    );
    assert!(
        err.contains("paste one line of your ~/.ssh/id_ed25519.pub"),
        "{err}"
    );
    assert!(!s.path("mkstick.img").exists());
}

#[test]
fn invalid_hostname_and_plain_password_are_refused() {
    let s = Scratch::new(&format!(
        "[node]\nhostname = \"My_Server\"\nssh-authorized-keys = [\"{KEY}\"]\n[os]\npath = \"os\"\n"
    ));
    let err = fails(s.run(&["check"]));
    assert!(
        err.contains("mkstick.toml:2:12: hostname `My_Server` contains 'M'"),
        "{err}"
    );
    s.write(
        "mkstick.toml",
        &format!("[node]\nhostname = \"kube1\"\nssh-authorized-keys = [\"{KEY}\"]\npassword-hash = \"hunter2\"\n[os]\npath = \"os\"\n"),
    );
    let err = fails(s.run(&["check"]));
    assert!(
        err.contains("mkstick.toml:4:17: password-hash does not look like a crypt(3) hash"),
        "{err}"
    );
    assert!(err.contains("mkpasswd --method=yescrypt"), "{err}");
}

#[test]
fn nobody_could_log_in() {
    let s = Scratch::new("[node]\nhostname = \"kube1\"\n[os]\npath = \"os\"\n");
    let err = fails(s.run(&["plan"]));
    assert!(
        err.contains("neither ssh-authorized-keys nor password-hash"),
        "{err}"
    );
}

#[test]
fn missing_os_file_is_named() {
    let s = Scratch::new(&minimal_config());
    std::fs::remove_file(s.path("os/rootfs.img")).unwrap();
    let err = fails(s.run(&["build"]));
    assert!(err.contains("the OS's rootfs"), "{err}");
    assert!(err.contains("os/rootfs.img is missing"), "{err}");
    assert!(err.contains("rebuild or re-download it"), "{err}");
}

#[test]
fn sha256_mismatch_fails_and_leaves_nothing_behind() {
    let s = Scratch::new(&minimal_config());
    let mut rootfs = std::fs::read(s.path("os/rootfs.img")).unwrap();
    let want = sha256_hex(&rootfs);
    rootfs[1000] ^= 1;
    let got = sha256_hex(&rootfs);
    std::fs::write(s.path("os/rootfs.img"), &rootfs).unwrap();
    let err = fails(s.run(&["build"]));
    assert!(err.contains("sha256 mismatch for"), "{err}");
    assert!(
        err.contains(&format!("os.json says {want}, the file has {got}")),
        "{err}"
    );
    let left: Vec<_> = std::fs::read_dir(s.dir.path())
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| n.ends_with(".img") || n.starts_with(".mkstick-"))
        .collect();
    assert!(left.is_empty(), "a failed build left {left:?}");
    // `check` reads every OS file and says the same.
    let err = fails(s.run(&["check"]));
    assert!(err.contains("sha256 mismatch for"), "{err}");
}

#[test]
fn damaged_os_json_is_located() {
    let s = Scratch::new(&minimal_config());
    let text = std::fs::read_to_string(s.path("os/os.json")).unwrap();
    std::fs::write(s.path("os/os.json"), text.replace("\"id\"", "\"idd\"")).unwrap();
    let err = fails(s.run(&["plan"]));
    assert!(err.contains("os/os.json:3:7: unknown field `idd`"), "{err}");
}

#[test]
fn refuses_to_overwrite_without_force() {
    let s = Scratch::new(&minimal_config());
    s.write("mkstick.img", "precious");
    let err = fails(s.run(&["build"]));
    assert!(
        err.contains("refusing to overwrite mkstick.img; pass --force"),
        "{err}"
    );
    assert_eq!(std::fs::read(s.path("mkstick.img")).unwrap(), b"precious");
    ok(s.run(&["build", "--force"]));
    assert_ne!(std::fs::read(s.path("mkstick.img")).unwrap(), b"precious");
}

#[test]
fn extra_ignition_errors_are_located_and_explained() {
    let s = Scratch::new(&format!(
        "{}\n[extra]\nignition = [\"extra.ign\"]\n",
        minimal_config()
    ));
    let err = fails(s.run(&["check"]));
    assert!(
        err.contains("mkstick.toml:9:13: cannot read the extra Ignition config"),
        "{err}"
    );
    s.write(
        "extra.ign",
        "{\n  \"ignition\": {\"version\": \"3.3.0\"},\n  oops\n}\n",
    );
    let err = fails(s.run(&["check"]));
    assert!(err.contains("extra.ign:3:3: key must be a string"), "{err}");
    s.write("extra.ign", r#"{"ignition": {"version": "3.4.0"}}"#);
    let err = fails(s.run(&["check"]));
    assert!(
        err.contains("Ignition spec 3.4.0 cannot be merged"),
        "{err}"
    );
}

#[test]
fn usage_errors_exit_2_and_help_exits_0() {
    let s = Scratch::new(&minimal_config());
    let o = s.run(&["build", "--no-such-flag"]);
    assert_eq!(o.status.code(), Some(2));
    let o = s.run(&["--help"]);
    assert_eq!(o.status.code(), Some(0));
    assert!(stdout(&o).contains("mkstick init"));
}

#[test]
fn init_writes_a_config_with_the_users_key() {
    let home = tempfile::tempdir().unwrap();
    std::fs::create_dir(home.path().join(".ssh")).unwrap();
    std::fs::write(home.path().join(".ssh/id_rsa.pub"), "not a key\n").unwrap();
    std::fs::write(home.path().join(".ssh/id_ed25519.pub"), format!("{KEY}\n")).unwrap();
    let s = Scratch::new("");
    std::fs::remove_file(s.path("mkstick.toml")).unwrap();
    let home_s = home.path().to_str().unwrap();
    let out = ok(s.run_env(&["init"], &[("HOME", home_s)]));
    assert!(out.contains("with your key"), "{out}");
    let text = std::fs::read_to_string(s.path("mkstick.toml")).unwrap();
    assert!(text.contains(KEY), "{text}");
    // The starter downloads Fedora CoreOS stable, by default; with a local
    // OS directory instead, it checks out.
    assert!(
        text.contains("\n# distro = \"fedora-coreos\"   # the default\n"),
        "{text}"
    );
    assert!(
        text.contains("\n# stream = \"stable\"          # the default\n"),
        "{text}"
    );
    ok(s.run(&["check", "--os-dir", "os"]));
    // Its own hint: uncommenting `path` makes a config that checks out.
    assert!(text.contains("\n# path = \"os\"\n"), "{text}");
    s.write(
        "mkstick.toml",
        &text.replace("\n# path = \"os\"\n", "\npath = \"os\"\n"),
    );
    let out = ok(s.run(&["check"]));
    assert!(out.contains("mkstick.toml is valid"), "{out}");
    let err = fails(s.run_env(&["init"], &[("HOME", home_s)]));
    assert!(err.contains("refusing to overwrite mkstick.toml"), "{err}");
}

#[test]
fn plan_shows_hashes_never_secrets() {
    let s = Scratch::new(&format!(
        "[node]\nhostname = \"kube1\"\nssh-authorized-keys = [\"{KEY}\"]\npassword-hash = \"{HASH}\"\n[os]\npath = \"os\"\n"
    ));
    let out = ok(s.run(&["plan"]));
    assert!(!out.contains(HASH) && !out.contains("$y$"), "{out}");
    assert!(
        out.contains("let core log in on the console with a password (hash sha256:"),
        "{out}"
    );
    ok(s.run(&["build"]));
    let text = ok(s.run(&["inspect", "mkstick.img"]));
    assert!(!text.contains("$y$"), "{text}");
    assert!(text.contains("password set (hash redacted)"), "{text}");
    let copy = String::from_utf8(esp_file(&s.path("mkstick.img"), "mkstick/config.toml")).unwrap();
    assert!(
        !copy.contains("$y$") && copy.contains("removed: node.password-hash"),
        "{copy}"
    );
    let full = ok(s.run(&["inspect", "mkstick.img", "--show-config"]));
    assert!(full.contains(HASH), "--show-config prints the whole config");
}

#[test]
fn storage_mistakes_are_located_and_nothing_is_built() {
    let base = minimal_config();
    let cases = [
        (
            "[storage]\ndrives = [\"/dev/disk/by-id/ata-A\", \"/dev/sdb\"]\n",
            "mkstick.toml:9:36: `/dev/sdb` is a kernel name, and kernel names change between boots",
        ),
        (
            "[storage]\ndrives = [\"/dev/disk/by-id/ata-A\", \"/dev/disk/by-id/ata-B\"]\nprofile = \"raid5\"\n",
            "mkstick.toml:10:11: profile `raid5` is refused: btrfs raid5 can lose data",
        ),
        (
            "[storage]\ndrives = [\"/dev/disk/by-id/ata-A\", \"/dev/disk/by-id/ata-B\"]\nprofile = \"raid1c3\"\n",
            "mkstick.toml:10:11: profile raid1c3 keeps 3 copies and needs at least 3 drives, but [storage] drives lists 2",
        ),
        (
            "[storage]\ndrives = [\"/dev/disk/by-id/ata-A\"]\npersist = [\"/home/core\"]\n",
            "mkstick.toml:10:12: `/home/core`: on Fedora CoreOS /home is a link into /var",
        ),
        (
            "[storage]\ndrives = [\"/dev/disk/by-id/ata-A\"]\nnfs-clients = [\"*\"]\n",
            "mkstick.toml:10:16: NFS client `*` would let anyone",
        ),
        (
            "[storage]\ndrive = [\"/dev/disk/by-id/ata-A\"]\n",
            "mkstick.toml:9:1: unknown key `drive`; did you mean `drives`?",
        ),
    ];
    for (storage, want) in cases {
        let s = Scratch::new(&format!("{base}\n{storage}"));
        for args in [&["check"][..], &["build"][..]] {
            let err = fails(s.run(args));
            assert!(err.contains(want), "{storage}\n{args:?}: {err}");
        }
        assert!(!s.path("mkstick.img").exists(), "{storage}");
    }
}

/// The kernel makes the last `console=` /dev/console: the screen by default.
#[test]
fn the_main_console_is_the_screen_unless_serial_is_asked_for() {
    let s = Scratch::new(&minimal_config());
    let plan = ok(s.run(&["plan"]));
    assert!(
        plan.contains("console=ttyS0,115200n8 console=tty0\n"),
        "{plan}"
    );
    s.write(
        "mkstick.toml",
        &format!("{}\n[boot]\nconsole = \"serial\"\n", minimal_config()),
    );
    let plan = ok(s.run(&["plan"]));
    assert!(
        plan.contains("console=tty0 console=ttyS0,115200n8\n"),
        "{plan}"
    );
    s.write(
        "mkstick.toml",
        &format!(
            "{}\n[boot]\nserial-console = false\nconsole = \"serial\"\n",
            minimal_config()
        ),
    );
    let e = fails(s.run(&["check"]));
    assert!(
        e.contains("mkstick.toml:10:11: console = \"serial\" makes the serial port the main console, but serial-console = false turns it off"),
        "{e}"
    );
}

#[test]
fn version_names_the_commit_it_was_built_from() {
    let repo = env!("CARGO_MANIFEST_DIR");
    let git = |args: &[&str]| {
        std::process::Command::new("git")
            .arg("-C")
            .arg(repo)
            .args(args)
            .output()
            .ok()
            .filter(|o| o.status.success())
            .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string())
    };
    let dir = tempfile::tempdir().unwrap();
    let version = ok(mkstick(dir.path(), &["--version"], &[]));
    let pkg = env!("CARGO_PKG_VERSION");
    let (Some(commit), Some(date)) = (
        git(&["rev-parse", "--short=12", "HEAD"]),
        git(&["log", "-1", "--format=%cs", "HEAD"]),
    ) else {
        eprintln!("SKIPPED check: not built from a git checkout");
        assert_eq!(version.trim(), format!("mkstick {pkg}"));
        return;
    };
    assert_eq!(version.trim(), format!("mkstick {pkg} ({commit} {date})"));
}

#[test]
fn a_quoted_number_is_asked_for_without_quotes() {
    let s = Scratch::new(&format!(
        "[node]\nhostname = \"kube1\"\nssh-authorized-keys = [\"{KEY}\"]\n[os]\npath = \"os\"\n[ingress]\nhttp-port = \"80\"\n"
    ));
    let err = fails(s.run(&["check"]));
    assert!(
        err.contains("error: mkstick.toml:7:13: expected a number, like 80 (without quotes), not the string \"80\""),
        "{err}"
    );
}

#[test]
fn a_pasted_private_key_is_named_and_not_echoed() {
    let body = "b3BlbnNzaC1rZXktdjEAAAAABG5vbmUAAAAEbm9uZQAAAAAAAAABAAAAMwAAAAtzc2gtZW\nQyNTUxOQAAACCIiNdgDpiYXhOJ24Cbw4XuO6AFfMalr9Xevjb5Ze7HNAAAAJhAdvM0QHbz";
    let s = Scratch::new(&format!(
        "[node]\nhostname = \"kube1\"\nssh-authorized-keys = [\"\"\"\n-----BEGIN OPENSSH PRIVATE KEY-----\n{body}\n-----END OPENSSH PRIVATE KEY-----\n\"\"\"]\n[os]\npath = \"os\"\n"
    ));
    let err = fails(s.run(&["check"]));
    assert!(
        err.contains("mkstick.toml:3:24: this is a PRIVATE key; use the .pub file"),
        "{err}"
    );
    for line in body.lines() {
        assert!(!err.contains(&line[..16]), "the key leaked: {err}");
    }
}

/// With `[storage]`, the `mkstick boot` hint says how the drives map to
/// `--data-disk`: one per drive for QEMU-style names, and why real names
/// cannot appear in QEMU otherwise.
#[test]
fn build_says_how_the_storage_drives_map_to_data_disks() {
    let hint = |drives: &str| {
        boot_hint(&format!(
            "{}\n[storage]\ndrives = [{drives}]\n",
            minimal_config()
        ))
    };
    let virtio = hint("\"/dev/disk/by-id/virtio-d0\", \"/dev/disk/by-id/virtio-d1\"");
    assert!(
        virtio.ends_with(
            "mkstick boot mkstick.img --data-disk 8G,serial=d0 --data-disk 8G,serial=d1"
        ),
        "{virtio}"
    );
    let real = hint("\"/dev/disk/by-id/ata-WDC_A\"");
    assert!(
        real.contains("such as /dev/disk/by-id/ata-WDC_A, which QEMU cannot name")
            && real.contains("--data-disk 8G,serial=data0"),
        "{real}"
    );
    let plain = boot_hint(&minimal_config());
    assert!(
        plain.ends_with("try it:   mkstick boot mkstick.img"),
        "{plain}"
    );
}

/// The `try it:` line `build` prints for `config`.
fn boot_hint(config: &str) -> String {
    let s = Scratch::new(config);
    let out = ok(s.run(&["build"]));
    out.lines()
        .find(|l| l.starts_with("try it:"))
        .unwrap()
        .to_string()
}

#[test]
fn build_recommends_devices_and_flash_before_dd() {
    let s = Scratch::new(&minimal_config());
    let out = ok(s.run(&["build"]));
    let pos = |what: &str| {
        out.find(what)
            .unwrap_or_else(|| panic!("{what:?} missing in:\n{out}"))
    };
    let devices = pos("mkstick devices");
    let flash = pos("sudo mkstick flash mkstick.img /dev/sdX");
    let dd = pos("sudo dd if=mkstick.img of=/dev/sdX");
    assert!(devices < flash && flash < dd, "{out}");
    // dd comes only as the fallback, on the last line.
    assert!(out.lines().last().unwrap().contains("last resort"), "{out}");
    assert_eq!(out.matches("dd if=").count(), 1, "{out}");
}
