//! The node scripts' decisions in seconds: `mkstick-storage` (prepare, grow,
//! status) and `mkstick-kubernetes kubeadm` and `images`, as mkstick renders them for a
//! real config, run under `MKSTICK_ROOT` with the TEST DOUBLES of
//! `tests/fixtures/node-doubles/` first on PATH. The doubles answer from
//! files each case writes and record every call, so a case asserts what
//! ran: above all, on which drives `mkfs.btrfs` ran, or that it did not.
//! The QEMU boots (storage_boot.rs, k8s_boot.rs) remain the end-to-end proof.

use crate::common::{KEY, TREE_MANIFEST};
use mkstick::plan::OverlayFile;
use std::path::{Path, PathBuf};
use std::process::Command;

const BIN_DIR: &str = "/usr/local/bin";
/// What a rollback restores (mkstick-kubernetes CLUSTER_PATHS).
const CLUSTER_PATHS: [&str; 3] = ["/etc/kubernetes", "/var/lib/etcd", "/var/lib/kubelet"];
const D0: &str = "/dev/disk/by-id/virtio-d0";
const D1: &str = "/dev/disk/by-id/virtio-d1";
const D2: &str = "/dev/disk/by-id/virtio-d2";
const POOL_UUID: &str = "11111111-1111-4111-8111-111111111111";
const OTHER_UUID: &str = "22222222-2222-4222-8222-222222222222";

/// Three drives at raid1, label "data", a 1 s device timeout (a missing
/// drive is waited for that long), and Kubernetes at mkstick's default.
fn config() -> String {
    format!(
        "[node]\nhostname = \"kube1\"\nssh-authorized-keys = [\"{KEY}\"]\n\n\
[storage]\ndrives = [\"{D0}\", \"{D1}\", \"{D2}\"]\nprofile = \"raid1\"\ndevice-timeout-secs = 1\n\n\
[kubernetes]\n"
    )
}

/// What mkstick places into the booted OS for [`config`], rendered through
/// the library as `plan` does.
fn rendered() -> Vec<OverlayFile> {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("mkstick.toml");
    std::fs::write(&path, config()).unwrap();
    let loaded = mkstick::config::load(&path).unwrap();
    let checked = mkstick::plan::check_config(&loaded).unwrap();
    let storage = checked.storage.as_ref().unwrap();
    let k8s = checked.kubernetes.as_ref().unwrap();
    let mut files = storage.overlay(BIN_DIR).unwrap();
    files.extend(
        k8s.overlay("kube1", storage, "MKSTICK", BIN_DIR, &[])
            .unwrap(),
    );
    files
}

/// One node: its root (MKSTICK_ROOT) holding the rendered files, and the
/// doubles' state directory.
struct Node {
    _dir: tempfile::TempDir,
    root: PathBuf,
    state: PathBuf,
}

struct Run {
    ok: bool,
    stdout: String,
    stderr: String,
    /// The doubles' calls, one per line.
    calls: Vec<String>,
    journal: String,
}

impl Run {
    fn ran(&self, prefix: &str) -> Vec<&String> {
        self.calls
            .iter()
            .filter(|c| c.starts_with(prefix))
            .collect()
    }
    fn context(&self) -> String {
        format!(
            "stdout:\n{}\nstderr:\n{}\ncalls:\n{}",
            self.stdout,
            self.stderr,
            self.calls.join("\n")
        )
    }
}

impl Node {
    fn new() -> Node {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().join("root");
        let state = dir.path().join("doubles");
        for f in rendered() {
            let OverlayFile::File {
                path,
                mode,
                contents,
            } = f
            else {
                continue;
            };
            let p = root.join(path.trim_start_matches('/'));
            std::fs::create_dir_all(p.parent().unwrap()).unwrap();
            std::fs::write(&p, contents).unwrap();
            set_mode(&p, mode);
        }
        for d in ["devices", "btrfs", "fail"] {
            std::fs::create_dir_all(state.join(d)).unwrap();
        }
        // Written by plan from the OS; the script reads it for the stick id.
        write(&root.join("etc/mkstick/release"), "STICK_ID=0123456789ab\n");
        // On the node the cluster's paths are bind mounts of the pool's
        // state subvolume; here, symlinks into it (the btrfs double knows
        // the subvolume).
        let pool_state = root.join("var/mnt/data/state");
        for p in CLUSTER_PATHS {
            let p = p.trim_start_matches('/');
            std::fs::create_dir_all(pool_state.join(p)).unwrap();
            std::fs::create_dir_all(root.join(p).parent().unwrap()).unwrap();
            std::os::unix::fs::symlink(pool_state.join(p), root.join(p)).unwrap();
        }
        write(
            &state.join("subvolumes"),
            &format!("{}\n", pool_state.display()),
        );
        Node {
            _dir: dir,
            root,
            state,
        }
    }

    /// A drive the tools see: `present` puts its node there (a plain file
    /// under MKSTICK_ROOT), `state` says what is on it.
    fn drive(&self, path: &str, present: bool, state: Drive) {
        if present {
            write(&self.root.join(path.trim_start_matches('/')), "");
        }
        let dir = self.state.join("devices").join(short(path));
        std::fs::create_dir_all(&dir).unwrap();
        write(&dir.join("path"), path);
        let sig = |text: &str| write(&dir.join("signatures"), text);
        let pool = |uuid: &str| {
            sig("btrfs 0x10040");
            write(&dir.join("TYPE"), "btrfs");
            write(&dir.join("LABEL"), "data");
            write(&dir.join("UUID"), uuid);
        };
        match state {
            Drive::Blank => {}
            Drive::Pool => pool(POOL_UUID),
            Drive::OtherPool => pool(OTHER_UUID),
            Drive::Ext4 => {
                sig("ext4 0x438");
                write(&dir.join("TYPE"), "ext4");
            }
            Drive::PartitionTable => sig("gpt 0x200\nPMBR 0x1fe"),
            Drive::BlkidOnly => write(&dir.join("blkid-only"), ""),
            Drive::Unreadable => write(&dir.join("unreadable"), ""),
        }
    }

    fn set(&self, name: &str, text: &str) {
        let p = self.state.join(name);
        std::fs::create_dir_all(p.parent().unwrap()).unwrap();
        write(&p, text);
    }

    /// Change one setting line of the rendered kubernetes.env, which must
    /// hold `from` as it is.
    fn set_env(&self, from: &str, to: &str) {
        let path = self.rootfile("/etc/mkstick/kubernetes.env");
        let env = std::fs::read_to_string(&path).unwrap();
        let (from, to) = (format!("\n{from}\n"), format!("\n{to}\n"));
        assert!(env.contains(&from), "{from:?} in {env}");
        write(&path, &env.replace(&from, &to));
    }

    fn rootfile(&self, path: &str) -> PathBuf {
        self.root.join(path.trim_start_matches('/'))
    }

    fn run(&self, script: &str, args: &[&str]) -> Run {
        let _ = std::fs::remove_file(self.state.join("calls"));
        let _ = std::fs::remove_file(self.state.join("journal"));
        let doubles = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/node-doubles");
        let path = format!(
            "{}:{}",
            doubles.display(),
            std::env::var("PATH").unwrap_or_default()
        );
        let out = Command::new("bash")
            .arg(self.rootfile(&format!("{BIN_DIR}/{script}")))
            .args(args)
            .env("MKSTICK_ROOT", &self.root)
            .env("NODE_DOUBLES", &self.state)
            .env("PATH", path)
            .env_remove("MKSTICK_KUBERNETES_ENV")
            .output()
            .unwrap();
        let read = |name: &str| std::fs::read_to_string(self.state.join(name)).unwrap_or_default();
        Run {
            ok: out.status.success(),
            stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
            calls: read("calls").lines().map(str::to_string).collect(),
            journal: read("journal"),
        }
    }
}

#[derive(Clone, Copy, Debug)]
enum Drive {
    Blank,
    /// A member of the pool "data" (one UUID).
    Pool,
    /// A member of another btrfs labelled "data" (a second UUID).
    OtherPool,
    /// A foreign filesystem.
    Ext4,
    /// Only a partition table, no filesystem.
    PartitionTable,
    /// A signature that only blkid knows, wipefs not.
    BlkidOnly,
    /// Reading it fails (an I/O error).
    Unreadable,
}

fn short(path: &str) -> &str {
    path.rsplit('/').next().unwrap()
}

fn write(p: &Path, text: &str) {
    std::fs::create_dir_all(p.parent().unwrap()).unwrap();
    std::fs::write(p, text).unwrap();
}

fn set_mode(p: &Path, mode: u32) {
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(p, std::fs::Permissions::from_mode(mode)).unwrap();
}

/// The rendered env files carry the values the scripts use, computed by
/// mkstick's own rules.
#[test]
fn the_env_files_carry_the_rust_rules() {
    let node = Node::new();
    let storage = std::fs::read_to_string(node.rootfile("/etc/mkstick/storage.env")).unwrap();
    assert!(storage.contains("\nMKSTICK_PROFILE='raid1'\n"), "{storage}");
    assert!(storage.contains("\nMKSTICK_MIN_DRIVES=2\n"), "{storage}");
    let k8s = std::fs::read_to_string(node.rootfile("/etc/mkstick/kubernetes.env")).unwrap();
    assert!(k8s.contains("\nKUBERNETES_VERSION=1.36.4\n"), "{k8s}");
    assert!(k8s.contains("\nKUBERNETES_UPGRADE_FROM=1.35.0\n"), "{k8s}");
    assert!(
        k8s.contains("\nK8S_FILES=\"kubeadm kubelet kubectl crictl.tar.gz cni-plugins.tgz\"\n"),
        "{k8s}"
    );
}

/// What `prepare` must do for each set of drive states.
struct PrepareCase {
    name: &'static str,
    /// Each listed drive: present, and what is on it.
    drives: [(bool, Drive); 3],
    /// A drive [storage] does not list that holds the pool.
    unlisted_pool: bool,
    /// mkfs.btrfs fails.
    mkfs_fails: bool,
    /// The drives mkfs.btrfs runs on, or None: mkfs must not run at all.
    mkfs: Option<&'static [&'static str]>,
    /// The drives left to join the pool once it is mounted.
    to_add: &'static [&'static str],
    /// Whether the pool's mount and its users are started.
    starts_mount: bool,
    ok: bool,
    /// Lines that must reach the console (the script's stdout).
    says: &'static [&'static str],
}

const PREPARE: &[PrepareCase] = {
    use Drive::*;
    const ALL_BLANK: [(bool, Drive); 3] = [(true, Blank), (true, Blank), (true, Blank)];
    &[
        PrepareCase {
            name: "every drive blank: the pool is made on all three",
            drives: ALL_BLANK,
            unlisted_pool: false,
            mkfs_fails: false,
            mkfs: Some(&[D0, D1, D2]),
            to_add: &[],
            starts_mount: true,
            ok: true,
            says: &["creating it (raid1 on 3 drives)", "created the pool \"data\""],
        },
        PrepareCase {
            name: "every drive in the pool: nothing is written",
            drives: [(true, Pool), (true, Pool), (true, Pool)],
            unlisted_pool: false,
            mkfs_fails: false,
            mkfs: None,
            to_add: &[],
            starts_mount: true,
            ok: true,
            says: &["pool \"data\" found on: virtio-d0 virtio-d1 virtio-d2"],
        },
        PrepareCase {
            name: "a blank drive beside the pool joins it later",
            drives: [(true, Pool), (true, Pool), (true, Blank)],
            unlisted_pool: false,
            mkfs_fails: false,
            mkfs: None,
            to_add: &[D2],
            starts_mount: true,
            ok: true,
            says: &["virtio-d2 is blank: it joins the pool once the pool is mounted"],
        },
        PrepareCase {
            name: "a foreign filesystem: no mkfs anywhere",
            drives: [(true, Blank), (true, Ext4), (true, Blank)],
            unlisted_pool: false,
            mkfs_fails: false,
            mkfs: None,
            to_add: &[],
            starts_mount: false,
            ok: false,
            says: &[
                "ERROR: /dev/disk/by-id/virtio-d1 holds ext4 at offset 0x438, not the pool \"data\"",
                "not creating the pool \"data\": mkstick creates it only when every listed drive is present and blank",
            ],
        },
        PrepareCase {
            name: "a partition table only: no mkfs anywhere",
            drives: [(true, Blank), (true, Blank), (true, PartitionTable)],
            unlisted_pool: false,
            mkfs_fails: false,
            mkfs: None,
            to_add: &[],
            starts_mount: false,
            ok: false,
            says: &["virtio-d2 holds gpt at offset 0x200; PMBR at offset 0x1fe, not the pool"],
        },
        PrepareCase {
            name: "a signature only blkid sees: no mkfs anywhere",
            drives: [(true, BlkidOnly), (true, Blank), (true, Blank)],
            unlisted_pool: false,
            mkfs_fails: false,
            mkfs: None,
            to_add: &[],
            starts_mount: false,
            ok: false,
            says: &["virtio-d0 holds a signature blkid recognizes"],
        },
        PrepareCase {
            name: "an unreadable drive: no mkfs anywhere",
            drives: [(true, Blank), (true, Unreadable), (true, Blank)],
            unlisted_pool: false,
            mkfs_fails: false,
            mkfs: None,
            to_add: &[],
            starts_mount: false,
            ok: false,
            says: &["virtio-d1 cannot be read, so mkstick leaves it alone"],
        },
        PrepareCase {
            name: "a missing drive: no mkfs anywhere",
            drives: [(true, Blank), (true, Blank), (false, Blank)],
            unlisted_pool: false,
            mkfs_fails: false,
            mkfs: None,
            to_add: &[],
            starts_mount: false,
            ok: false,
            says: &["virtio-d2 is missing: no such drive after 1s"],
        },
        PrepareCase {
            name: "a pool member missing: the pool is not mounted degraded",
            drives: [(true, Pool), (false, Pool), (true, Pool)],
            unlisted_pool: false,
            mkfs_fails: false,
            mkfs: None,
            to_add: &[],
            starts_mount: false,
            ok: false,
            says: &["virtio-d1 is missing"],
        },
        PrepareCase {
            name: "two pools claim the label: loud, nothing written",
            drives: [(true, Pool), (true, OtherPool), (true, Blank)],
            unlisted_pool: false,
            mkfs_fails: false,
            mkfs: None,
            to_add: &[D2],
            starts_mount: true,
            ok: false,
            says: &["the listed drives hold 2 different btrfs filesystems labelled \"data\""],
        },
        PrepareCase {
            name: "the pool on a drive not listed: no new pool over it",
            drives: ALL_BLANK,
            unlisted_pool: true,
            mkfs_fails: false,
            mkfs: None,
            to_add: &[D0, D1, D2],
            starts_mount: true,
            ok: true,
            says: &["the pool \"data\" is on /dev/sdz, which [storage] drives does not list"],
        },
        PrepareCase {
            name: "mkfs.btrfs fails: said, and nothing started",
            drives: ALL_BLANK,
            unlisted_pool: false,
            mkfs_fails: true,
            mkfs: Some(&[D0, D1, D2]),
            to_add: &[],
            starts_mount: false,
            ok: false,
            says: &["ERROR: mkfs.btrfs failed; nothing was created"],
        },
    ]
};

#[test]
fn prepare_writes_only_to_blank_drives() {
    for case in PREPARE {
        let node = Node::new();
        for (path, (present, state)) in [D0, D1, D2].into_iter().zip(case.drives) {
            node.drive(path, present, state);
        }
        if case.unlisted_pool {
            node.drive("/dev/sdz", true, Drive::Pool);
        }
        if case.mkfs_fails {
            node.set("fail/mkfs.btrfs", "");
        }
        let run = node.run("mkstick-storage", &["prepare"]);
        let ctx = format!("{}\n{}", case.name, run.context());
        assert_eq!(run.ok, case.ok, "exit status: {ctx}");
        let mkfs = run.ran("mkfs.btrfs");
        match case.mkfs {
            None => assert!(mkfs.is_empty(), "mkfs must not run: {ctx}"),
            Some(drives) => assert_eq!(
                mkfs,
                [&format!(
                    "mkfs.btrfs --label data --data raid1 --metadata raid1 {}",
                    drives.join(" ")
                )],
                "{ctx}"
            ),
        }
        for c in &run.calls {
            assert!(
                !c.starts_with("btrfs device add") && !c.starts_with("btrfs balance"),
                "prepare only reads and makes a pool: {ctx}"
            );
        }
        let to_add = std::fs::read_to_string(node.rootfile("/run/mkstick/storage/to-add"))
            .unwrap_or_default();
        assert_eq!(to_add.lines().collect::<Vec<_>>(), case.to_add, "{ctx}");
        let started = run
            .ran("systemctl start --no-block var-mnt-data.mount")
            .len();
        assert_eq!(started == 1, case.starts_mount, "{ctx}");
        if case.starts_mount {
            // The pool's devices are announced again before its mount is
            // started: its device job may have timed out before udev saw them.
            let at = |prefix: &str| run.calls.iter().position(|c| c.starts_with(prefix));
            let trigger = at("udevadm trigger --settle --action=change --subsystem-match=block");
            let start = at("systemctl start --no-block var-mnt-data.mount");
            assert!(
                trigger.is_some() && trigger < start,
                "no change event before the mount starts: {ctx}"
            );
            // One change event, after a new pool's members are scanned: a
            // second one only makes udev re-run every block device's rules.
            assert_eq!(run.ran("udevadm trigger").len(), 1, "{ctx}");
            if case.mkfs.is_some() {
                let scan = at("btrfs device scan");
                assert!(
                    scan.is_some() && scan < trigger,
                    "scan after the change event: {ctx}"
                );
            }
        }
        for line in case.says {
            assert!(run.stdout.contains(line), "{line:?} missing: {ctx}");
        }
        // The tools' output goes to the journal, not to the console.
        assert!(!run.stdout.contains("TEST DOUBLE chatter"), "{ctx}");
        if case.mkfs.is_some() {
            assert!(
                run.journal
                    .contains("mkfs.btrfs TEST DOUBLE chatter line 30"),
                "mkfs's output belongs in the journal: {ctx}"
            );
            assert!(run.ran("systemd-cat").len() == 1, "{ctx}");
        }
    }
}

/// The script reads the minimum number of drives from storage.env. A valid
/// config cannot list fewer drives than its profile needs (mkstick refuses
/// it), so this case raises the value in the rendered file.
#[test]
fn prepare_takes_the_minimum_from_storage_env() {
    let node = Node::new();
    for d in [D0, D1, D2] {
        node.drive(d, true, Drive::Blank);
    }
    let env = node.rootfile("/etc/mkstick/storage.env");
    let text = std::fs::read_to_string(&env).unwrap();
    write(
        &env,
        &text.replace("MKSTICK_MIN_DRIVES=2\n", "MKSTICK_MIN_DRIVES=4\n"),
    );
    let run = node.run("mkstick-storage", &["prepare"]);
    assert!(!run.ok, "{}", run.context());
    assert!(run.ran("mkfs.btrfs").is_empty(), "{}", run.context());
    assert!(
        run.stdout.contains("raid1 needs 4 drives and 3 are listed"),
        "{}",
        run.context()
    );
}

const DF_RAID1: &str = "Data, RAID1: total=1.00GiB, used=0.00B\nSystem, RAID1: total=8.00MiB, used=16.00KiB\nMetadata, RAID1: total=256.00MiB, used=128.00KiB\n";
const DF_SINGLE: &str = "Data, single: total=1.00GiB, used=0.00B\nSystem, single: total=8.00MiB, used=16.00KiB\nMetadata, single: total=256.00MiB, used=128.00KiB\n";
const USAGE: &str = "Overall:\n    Free (estimated):          1073741824      (min: 1073741824)\n";

fn show(paths: &[&str], missing: bool) -> String {
    let mut s = format!(
        "Label: 'data'  uuid: {POOL_UUID}\n\tTotal devices {} FS bytes used 144.00KiB\n",
        paths.len()
    );
    for (i, p) in paths.iter().enumerate() {
        s.push_str(&format!(
            "\tdevid    {} size 1.00GiB used 0.00B path {p}\n",
            i + 1
        ));
    }
    if missing {
        s.push_str("\t*** Some devices missing\n");
    }
    s
}

struct GrowCase {
    name: &'static str,
    mounted: bool,
    /// prepare's list of blank drives to add, and the state each is in now.
    to_add: &'static [(&'static str, Drive)],
    df: &'static str,
    /// The btrfs calls that must run, in order (device add, balance).
    writes: &'static [&'static str],
    says: &'static [&'static str],
}

const GROW: &[GrowCase] = &[
    GrowCase {
        name: "not mounted: nothing is added",
        mounted: false,
        to_add: &[(D2, Drive::Blank)],
        df: DF_RAID1,
        writes: &[],
        says: &["the pool is not mounted; no drive is added"],
    },
    GrowCase {
        name: "a blank drive joins, then the pool is balanced",
        mounted: true,
        to_add: &[(D2, Drive::Blank)],
        df: DF_RAID1,
        writes: &[
            "btrfs device add /dev/disk/by-id/virtio-d2 /var/mnt/data",
            "btrfs balance start -dconvert=raid1 -mconvert=raid1 /var/mnt/data",
        ],
        says: &["adding /dev/disk/by-id/virtio-d2 to the pool \"data\""],
    },
    GrowCase {
        name: "a drive written to since prepare is not added",
        mounted: true,
        to_add: &[(D2, Drive::Ext4)],
        df: DF_RAID1,
        writes: &[],
        says: &["ERROR: /dev/disk/by-id/virtio-d2 is no longer blank (ext4 at offset 0x438); not adding it"],
    },
    GrowCase {
        name: "an unreadable drive is not added",
        mounted: true,
        to_add: &[(D2, Drive::Unreadable)],
        df: DF_RAID1,
        writes: &[],
        says: &["virtio-d2 is no longer blank (unreadable)"],
    },
    GrowCase {
        name: "the profile changed: converted softly",
        mounted: true,
        to_add: &[],
        df: DF_SINGLE,
        writes: &["btrfs balance start -dconvert=raid1,soft -mconvert=raid1,soft /var/mnt/data"],
        says: &["the pool is at single; converting it to raid1"],
    },
    GrowCase {
        name: "at the profile already: nothing is written",
        mounted: true,
        to_add: &[],
        df: DF_RAID1,
        writes: &[],
        says: &["mkstick storage: pool \"data\" healthy"],
    },
];

#[test]
fn grow_adds_only_drives_still_blank() {
    for case in GROW {
        let node = Node::new();
        node.drive(D0, true, Drive::Pool);
        node.drive(D1, true, Drive::Pool);
        let mut to_add = String::new();
        for (d, state) in case.to_add {
            node.drive(d, true, *state);
            to_add.push_str(&format!("{d}\n"));
        }
        if case.to_add.is_empty() {
            node.drive(D2, true, Drive::Pool);
        }
        write(&node.rootfile("/run/mkstick/storage/to-add"), &to_add);
        if case.mounted {
            node.set("mounted", "");
        }
        node.set("btrfs/df", case.df);
        node.set("btrfs/show", &show(&[D0, D1, D2], false));
        node.set("btrfs/usage", USAGE);
        let run = node.run("mkstick-storage", &["grow"]);
        let ctx = format!("{}\n{}", case.name, run.context());
        let writes: Vec<&String> = run
            .calls
            .iter()
            .filter(|c| c.starts_with("btrfs device add") || c.starts_with("btrfs balance"))
            .collect();
        assert_eq!(writes, case.writes, "{ctx}");
        assert!(run.ran("mkfs.btrfs").is_empty(), "{ctx}");
        for line in case.says {
            assert!(run.stdout.contains(line), "{line:?} missing: {ctx}");
        }
        assert!(!run.stdout.contains("TEST DOUBLE chatter"), "{ctx}");
        if !case.writes.is_empty() {
            assert!(run.journal.contains("TEST DOUBLE chatter"), "{ctx}");
        }
    }
}

struct StatusCase {
    name: &'static str,
    mounted: bool,
    /// Which listed drives are there.
    present: [bool; 3],
    /// Whether any drive carries the label.
    labelled: bool,
    show_missing: bool,
    line: &'static str,
    /// `<5>` (notice) for a healthy pool, `<3>` (error) otherwise.
    priority: &'static str,
}

const STATUS: &[StatusCase] = &[
    StatusCase {
        name: "healthy",
        mounted: true,
        present: [true, true, true],
        labelled: true,
        show_missing: false,
        line: "pool \"data\" healthy: raid1 on 3 drives (virtio-d0 virtio-d1 virtio-d2), 1.0GiB free, mounted at /var/mnt/data",
        priority: "<5>",
    },
    StatusCase {
        name: "mounted, a drive missing",
        mounted: true,
        present: [true, true, false],
        labelled: true,
        show_missing: true,
        line: "pool \"data\" DEGRADED: raid1 on 3 drives",
        priority: "<3>",
    },
    StatusCase {
        name: "no pool anywhere",
        mounted: false,
        present: [true, true, true],
        labelled: false,
        show_missing: false,
        line: "pool \"data\" MISSING: no drive holds it and it was not created",
        priority: "<3>",
    },
    StatusCase {
        name: "not mounted, a drive missing",
        mounted: false,
        present: [true, false, true],
        labelled: true,
        show_missing: false,
        line: "pool \"data\" DEGRADED and NOT MOUNTED: virtio-d1 missing",
        priority: "<3>",
    },
    StatusCase {
        name: "not mounted, every drive there",
        mounted: false,
        present: [true, true, true],
        labelled: true,
        show_missing: false,
        line: "pool \"data\" NOT MOUNTED: its drives are present, but mounting it failed; see: journalctl -b -u var-mnt-data.mount",
        priority: "<3>",
    },
];

#[test]
fn status_says_one_line_on_the_console_and_at_the_login_prompt() {
    for case in STATUS {
        let node = Node::new();
        let state = if case.labelled {
            Drive::Pool
        } else {
            Drive::Blank
        };
        for (d, present) in [D0, D1, D2].into_iter().zip(case.present) {
            node.drive(d, present, state);
        }
        if case.mounted {
            node.set("mounted", "");
        }
        node.set("btrfs/df", DF_RAID1);
        node.set("btrfs/show", &show(&[D0, D1, D2], case.show_missing));
        node.set("btrfs/usage", USAGE);
        let run = node.run("mkstick-storage", &["status"]);
        let ctx = format!("{}\n{}", case.name, run.context());
        assert!(run.ok, "{ctx}");
        let want = format!("{}mkstick storage: {}", case.priority, case.line);
        assert!(run.stdout.starts_with(&want), "{want:?}: {ctx}");
        let issue = std::fs::read_to_string(node.rootfile("/etc/issue.d/50-mkstick-storage.issue"))
            .unwrap();
        assert!(issue.contains(case.line), "{issue}\n{ctx}");
        assert!(
            run.calls.iter().all(|c| !c.starts_with("mkfs.btrfs")
                && !c.starts_with("btrfs device add")
                && !c.starts_with("btrfs balance")),
            "{ctx}"
        );
    }
}

/// The cluster the data drives hold before `mkstick-kubernetes kubeadm`.
#[derive(Clone, Copy)]
enum Cluster {
    /// Nothing: a first boot.
    None,
    /// A cluster at this version (its API server's image), with its kept
    /// kubelet.
    At(&'static str),
    /// etcd data, but no admin.conf.
    EtcdOnly,
    /// An init cut short: admin.conf, no kept kubelet version.
    HalfInit { etcd: bool },
    /// A cluster whose API server manifest names no version.
    Unreadable,
}

#[derive(Debug, PartialEq)]
enum Outcome {
    Init,
    Keep,
    Upgrade,
    Refuse,
    /// kubeadm init failed and was undone.
    InitFailed,
}

struct KubeCase {
    cluster: Cluster,
    init_fails: bool,
    outcome: Outcome,
    /// Words the refusal (stderr and the login prompt) must hold.
    says: &'static str,
}

const KUBE: &[KubeCase] = &[
    KubeCase {
        cluster: Cluster::None,
        init_fails: false,
        outcome: Outcome::Init,
        says: "",
    },
    KubeCase {
        cluster: Cluster::None,
        init_fails: true,
        outcome: Outcome::InitFailed,
        says: "kubeadm init failed",
    },
    KubeCase {
        cluster: Cluster::HalfInit { etcd: false },
        init_fails: false,
        outcome: Outcome::Init,
        says: "",
    },
    KubeCase {
        cluster: Cluster::HalfInit { etcd: true },
        init_fails: false,
        outcome: Outcome::Refuse,
        says: "an earlier kubeadm init did not finish",
    },
    KubeCase {
        cluster: Cluster::EtcdOnly,
        init_fails: false,
        outcome: Outcome::Refuse,
        says: "hold a cluster's etcd data (/var/lib/etcd) but no /etc/kubernetes/admin.conf",
    },
    KubeCase {
        cluster: Cluster::Unreadable,
        init_fails: false,
        outcome: Outcome::Refuse,
        says: "names no kube-apiserver image",
    },
    // Every step from a kept cluster to this stick's 1.36.4.
    KubeCase {
        cluster: Cluster::At("1.36.4"),
        init_fails: false,
        outcome: Outcome::Keep,
        says: "",
    },
    KubeCase {
        cluster: Cluster::At("1.36.3"),
        init_fails: false,
        outcome: Outcome::Upgrade,
        says: "",
    },
    KubeCase {
        cluster: Cluster::At("1.36.0"),
        init_fails: false,
        outcome: Outcome::Upgrade,
        says: "",
    },
    KubeCase {
        cluster: Cluster::At("1.35.9"),
        init_fails: false,
        outcome: Outcome::Upgrade,
        says: "",
    },
    KubeCase {
        cluster: Cluster::At("1.35.0"),
        init_fails: false,
        outcome: Outcome::Upgrade,
        says: "",
    },
    KubeCase {
        cluster: Cluster::At("1.34.9"),
        init_fails: false,
        outcome: Outcome::Refuse,
        says: "the cluster on the data drives runs 1.34.9",
    },
    KubeCase {
        cluster: Cluster::At("1.36.5"),
        init_fails: false,
        outcome: Outcome::Refuse,
        says: "runs 1.36.5. kubeadm upgrades one minor version at a time and never downgrades",
    },
    KubeCase {
        cluster: Cluster::At("1.36.10"),
        init_fails: false,
        outcome: Outcome::Refuse,
        says: "runs 1.36.10",
    },
    KubeCase {
        cluster: Cluster::At("1.37.0"),
        init_fails: false,
        outcome: Outcome::Refuse,
        says: "runs 1.37.0",
    },
    KubeCase {
        cluster: Cluster::At("0.36.4"),
        init_fails: false,
        outcome: Outcome::Refuse,
        says: "runs 0.36.4",
    },
    KubeCase {
        cluster: Cluster::At("2.36.4"),
        init_fails: false,
        outcome: Outcome::Refuse,
        says: "runs 2.36.4",
    },
];

fn apiserver(version: Option<&str>) -> String {
    let image = version.map_or("registry.k8s.io/kube-apiserver".to_string(), |v| {
        format!("registry.k8s.io/kube-apiserver:v{v}")
    });
    // The annotation real kubeadm writes (cmd/kubeadm/app/phases/
    // controlplane/manifests.go), at the ip double's default address.
    format!("apiVersion: v1\nkind: Pod\nmetadata:\n  annotations:\n    kubeadm.kubernetes.io/kube-apiserver.advertise-address.endpoint: 10.0.2.15:6443\nspec:\n  containers:\n  - name: kube-apiserver\n    image: {image}\n")
}

#[test]
fn kubeadm_inits_keeps_upgrades_or_refuses() {
    for case in KUBE {
        let node = Node::new();
        write(&node.rootfile("/opt/bin/kubelet"), "kubelet 1.36.4\n");
        set_mode(&node.rootfile("/opt/bin/kubelet"), 0o755);
        let admin = node.rootfile("/etc/kubernetes/admin.conf");
        let kept = node.rootfile("/var/lib/kubelet/mkstick");
        let etcd = node.rootfile("/var/lib/etcd/member");
        let manifest = node.rootfile("/etc/kubernetes/manifests/kube-apiserver.yaml");
        let name = match case.cluster {
            Cluster::None => "no cluster".to_string(),
            Cluster::At(v) => {
                write(&admin, "admin");
                write(&manifest, &apiserver(Some(v)));
                write(&kept.join("kubelet"), &format!("kubelet {v}\n"));
                set_mode(&kept.join("kubelet"), 0o755);
                write(&kept.join("version"), &format!("{v}\n"));
                std::fs::create_dir_all(&etcd).unwrap();
                format!("a cluster at {v}")
            }
            Cluster::EtcdOnly => {
                std::fs::create_dir_all(&etcd).unwrap();
                "etcd data only".into()
            }
            Cluster::HalfInit { etcd: with_etcd } => {
                write(&admin, "admin");
                if with_etcd {
                    std::fs::create_dir_all(&etcd).unwrap();
                }
                format!("an init cut short, etcd data: {with_etcd}")
            }
            Cluster::Unreadable => {
                write(&admin, "admin");
                write(&manifest, &apiserver(None));
                write(&kept.join("version"), "1.36.4\n");
                std::fs::create_dir_all(&etcd).unwrap();
                "a manifest without a version".into()
            }
        };
        if case.init_fails {
            node.set("fail/kubeadm-init", "");
        }
        let run = node.run("mkstick-kubernetes", &["kubeadm"]);
        let ctx = format!("{name}\n{}", run.context());
        // Reading the certificates' expiry changes nothing.
        let kubeadm: Vec<&str> = run
            .ran("kubeadm")
            .iter()
            .map(|s| s.as_str())
            .filter(|c| !c.starts_with("kubeadm certs check-expiration"))
            .collect();
        let started = run.ran("systemctl start kubelet.service").len();
        let refusal = node.rootfile("/etc/issue.d/50-mkstick-kubernetes.issue");
        let kept_version = std::fs::read_to_string(kept.join("version")).unwrap_or_default();
        let init = "kubeadm init --config /etc/mkstick/kubeadm.yaml";
        match case.outcome {
            Outcome::Init => {
                assert!(run.ok, "{ctx}");
                let want: &[&str] = match case.cluster {
                    Cluster::HalfInit { .. } => &["kubeadm reset --force", init],
                    _ => &[init],
                };
                assert_eq!(kubeadm, want, "{ctx}");
                assert_eq!(started, 1, "{ctx}");
                assert_eq!(kept_version.trim(), "1.36.4", "{ctx}");
            }
            Outcome::InitFailed => {
                assert!(!run.ok, "{ctx}");
                assert_eq!(kubeadm, [init, "kubeadm reset --force"], "{ctx}");
                assert_eq!(started, 0, "{ctx}");
                assert!(run.stderr.contains(case.says), "{ctx}");
            }
            Outcome::Keep => {
                assert!(run.ok, "{ctx}");
                assert!(kubeadm.is_empty(), "{ctx}");
                assert_eq!(started, 1, "{ctx}");
                assert!(!refusal.exists(), "{ctx}");
            }
            Outcome::Upgrade => {
                let Cluster::At(from) = case.cluster else {
                    unreachable!()
                };
                assert!(run.ok, "{ctx}");
                assert_eq!(kubeadm, ["kubeadm upgrade apply v1.36.4 --yes"], "{ctx}");
                // The node was seen Ready first.
                let at = |prefix: &str| run.calls.iter().position(|c| c.starts_with(prefix));
                let ready = at("kubectl --kubeconfig /etc/kubernetes/admin.conf get node kube1 -o");
                assert!(
                    matches!((ready, at("kubeadm upgrade")), (Some(r), Some(u)) if r < u),
                    "{ctx}"
                );
                assert!(
                    run.stdout
                        .contains(&format!("running the kept kubelet {from}")),
                    "{ctx}"
                );
                assert_eq!(started, 1, "{ctx}");
                assert_eq!(
                    run.ran("systemctl restart kubelet.service").len(),
                    1,
                    "{ctx}"
                );
                assert_eq!(kept_version.trim(), "1.36.4", "{ctx}");
                assert_eq!(
                    std::fs::read_to_string(node.rootfile("/opt/bin/kubelet")).unwrap(),
                    "kubelet 1.36.4\n",
                    "{ctx}"
                );
            }
            Outcome::Refuse => {
                assert!(!run.ok, "{ctx}");
                assert!(kubeadm.is_empty(), "{ctx}");
                assert_eq!(started, 0, "{ctx}");
                assert!(run.stderr.contains("KUBERNETES NOT STARTED"), "{ctx}");
                assert!(run.stderr.contains(case.says), "{:?}: {ctx}", case.says);
                let issue = std::fs::read_to_string(&refusal).unwrap();
                assert!(issue.contains(case.says), "{issue}\n{ctx}");
                if let Cluster::At(v) = case.cluster {
                    assert_eq!(kept_version.trim(), v, "the kept state is untouched: {ctx}");
                }
            }
        }
    }
}

/// Two pinned images: (IMAGES entry, the `ctr images ls` lines of both its
/// names at its digest).
fn two_images() -> Vec<(String, String)> {
    [("k8s/pause", "3.10.2", 'a'), ("addons/traefik", "v3", 'b')]
        .iter()
        .map(|(repo, tag, c)| {
            let digest = format!("sha256:{}", c.to_string().repeat(64));
            let name = format!("127.0.0.1:5000/{repo}");
            (
                format!("{name}:{tag}@{digest}"),
                format!(
                    "{name}:{tag} application/vnd.oci.image.manifest.v1+json {digest} 1.0 KiB linux/amd64 -\n\
{name}@{digest} application/vnd.oci.image.manifest.v1+json {digest} 1.0 KiB linux/amd64 -\n"
                ),
            )
        })
        .collect()
}

/// A node whose kubernetes.env lists `images`, with a stick (its device
/// node, and the files the mount double shows) whose manifest.json names
/// `seed` and index.json's sha256 (`index_sha256`, or the real one).
fn images_node(images: &[String], seed: &str, index_sha256: Option<&str>) -> Node {
    let node = Node::new();
    node.set_env("IMAGES=\"\"", &format!("IMAGES=\"{}\"", images.join(" ")));
    write(&node.rootfile("/dev/disk/by-partlabel/MKSTICK"), "");
    let stick = node.state.join("stick/mkstick");
    let index = "{\"schemaVersion\":2,\"manifests\":[]}\n";
    write(&stick.join("images/index.json"), index);
    write(
        &stick.join("images/oci-layout"),
        "{\"imageLayoutVersion\":\"1.0.0\"}\n",
    );
    write(&stick.join("images/blobs/sha256/aaaa"), "blob");
    let sha = index_sha256.map_or(crate::common::sha256_hex(index.as_bytes()), str::to_string);
    write(
        &stick.join("manifest.json"),
        &format!("{{\"seed\":\"{seed}\",\"files\":{{\"mkstick/images/index.json\":{{\"sha256\":\"{sha}\"}}}}}}"),
    );
    node
}

#[test]
fn images_are_imported_from_the_checked_stick_once() {
    let images = two_images();
    let refs: Vec<String> = images.iter().map(|(r, _)| r.clone()).collect();
    let all: String = images.iter().map(|(_, l)| l.as_str()).collect();
    const SEED: &str = "0123456789abcdef";
    const IMPORT: &str = "ctr -n k8s.io images import - blobs/ blobs/sha256/ blobs/sha256/aaaa index.json oci-layout";

    // Nothing in containerd: the stick is mounted, checked, streamed in.
    let node = images_node(&refs, SEED, None);
    node.set("ctr-import", &all);
    let r = node.run("mkstick-kubernetes", &["images"]);
    assert!(r.ok, "{}", r.context());
    assert!(
        r.stdout.contains(
            "imported 2 images from the stick into containerd (k8s.io), each digest checked"
        ),
        "{}",
        r.context()
    );
    assert_eq!(
        r.ran("ctr -n k8s.io images import"),
        [IMPORT],
        "{}",
        r.context()
    );
    assert_eq!(r.ran("mount -t vfat").len(), 1, "{}", r.context());
    assert_eq!(
        r.ran("umount").len(),
        1,
        "unmounted when done: {}",
        r.context()
    );

    // The next boot: all there, nothing mounted or imported.
    let r = node.run("mkstick-kubernetes", &["images"]);
    assert!(r.ok, "{}", r.context());
    assert!(r
        .stdout
        .contains("all 2 images are already in containerd; nothing imported"));
    assert!(r.ran("mount").is_empty() && r.ran("ctr -n k8s.io images import").is_empty());

    // One name lost (only the digest name of the first is listed): imported again.
    let lines: Vec<&str> = all.lines().collect();
    node.set("ctr-images", &format!("{}\n", lines[1..].join("\n")));
    let r = node.run("mkstick-kubernetes", &["images"]);
    assert!(
        r.ok && r.ran("ctr -n k8s.io images import").len() == 1,
        "{}",
        r.context()
    );

    // An import that leaves one out: refused, naming it.
    let node = images_node(&refs, SEED, None);
    node.set("ctr-import", images[0].1.as_str());
    let r = node.run("mkstick-kubernetes", &["images"]);
    assert!(!r.ok, "{}", r.context());
    let traefik = refs[1].split_once('@').unwrap().0;
    assert!(
        r.stderr
            .contains("lacks these images at their pinned digests")
            && r.stderr.contains(traefik),
        "{}",
        r.context()
    );

    // A damaged index.json: refused before anything is imported.
    let node = images_node(&refs, SEED, Some(&"0".repeat(64)));
    let r = node.run("mkstick-kubernetes", &["images"]);
    assert!(!r.ok, "{}", r.context());
    assert!(
        r.stderr.contains(&format!(
            "but mkstick/manifest.json says {}",
            "0".repeat(64)
        )) && r.stderr.contains("write it again (mkstick flash)"),
        "{}",
        r.context()
    );
    assert!(r.ran("ctr -n k8s.io images import").is_empty());

    // Another mkstick stick: refused, nothing imported.
    let node = images_node(&refs, "fedcba9876543210", None);
    let r = node.run("mkstick-kubernetes", &["images"]);
    assert!(
        !r.ok
            && r.stderr
                .contains("is not the one this server booted from (id 0123456789ab)"),
        "{}",
        r.context()
    );
    assert!(r.ran("ctr -n k8s.io images import").is_empty());

    // A stick that carries none: nothing to do.
    let node = images_node(&[], SEED, None);
    let r = node.run("mkstick-kubernetes", &["images"]);
    assert!(
        r.ok && r.stdout.contains("carries no container images"),
        "{}",
        r.context()
    );
    assert!(r.calls.is_empty(), "{}", r.context());
}

/// A node that stays NotReady: the upgrade is not started, and the wait
/// is bounded.
#[test]
fn an_upgrade_waits_for_the_node_and_gives_up_when_it_stays_not_ready() {
    let node = kept_cluster_node_at("1.35.2");
    node.set_env("NODE_READY_WAIT_SECS=600", "NODE_READY_WAIT_SECS=1");
    node.set("not-ready", "");
    let started = std::time::Instant::now();
    let run = node.run("mkstick-kubernetes", &["kubeadm"]);
    assert!(!run.ok, "{}", run.context());
    assert!(
        run.stderr
            .contains("the node kube1 did not report Ready within 1s")
            && run.stderr.contains("nothing was upgraded")
            && run.stderr.contains("describe node kube1"),
        "{}",
        run.context()
    );
    assert!(run.ran("kubeadm upgrade").is_empty(), "{}", run.context());
    assert!(started.elapsed() < std::time::Duration::from_secs(30));
}

/// A node with a kept cluster at this stick's version, made at 10.0.2.15.
fn kept_cluster_node() -> Node {
    kept_cluster_node_at("1.36.4")
}

/// A node with this stick (Kubernetes 1.36.4) and a kept cluster at
/// `version`, made at 10.0.2.15, its kubelet kept beside it.
fn kept_cluster_node_at(version: &str) -> Node {
    let node = Node::new();
    node.set_env("ADDRESS_WAIT_SECS=90", "ADDRESS_WAIT_SECS=3");
    write(&node.rootfile("/opt/bin/kubelet"), "kubelet 1.36.4\n");
    set_mode(&node.rootfile("/opt/bin/kubelet"), 0o755);
    write(&node.rootfile("/etc/kubernetes/admin.conf"), "admin");
    write(
        &node.rootfile("/etc/kubernetes/manifests/kube-apiserver.yaml"),
        &apiserver(Some(version)),
    );
    let kept = node.rootfile("/var/lib/kubelet/mkstick");
    write(&kept.join("kubelet"), &format!("kubelet {version}\n"));
    set_mode(&kept.join("kubelet"), 0o755);
    write(&kept.join("version"), &format!("{version}\n"));
    std::fs::create_dir_all(node.rootfile("/var/lib/etcd/member")).unwrap();
    node
}

#[test]
fn a_kept_cluster_starts_only_at_the_address_it_was_made_with() {
    // The lease comes late (DHCP under way): the node waits for it.
    let node = kept_cluster_node();
    node.set("ip-addr-after", "1");
    let run = node.run("mkstick-kubernetes", &["kubeadm"]);
    assert!(run.ok, "{}", run.context());
    assert!(
        run.stdout
            .contains("the node has the cluster's address 10.0.2.15"),
        "{}",
        run.context()
    );
    // The daily certificate check starts with the cluster.
    let at = |p: &str| run.calls.iter().position(|c| c.starts_with(p));
    assert!(
        matches!((at("systemctl start kubelet.service"), at("systemctl start mkstick-certs.timer")), (Some(k), Some(t)) if k < t),
        "{}",
        run.context()
    );
    assert_eq!(
        run.ran("systemctl start kubelet.service").len(),
        1,
        "{}",
        run.context()
    );

    // A new lease: refused, loudly, naming both addresses and both fixes;
    // nothing started, nothing changed.
    let node = kept_cluster_node();
    node.set(
        "ip-addr",
        "2: ens3    inet 10.0.3.15/24 brd 10.0.3.255 scope global dynamic ens3\\       valid_lft 86313sec\n",
    );
    let manifest = node.rootfile("/etc/kubernetes/manifests/kube-apiserver.yaml");
    let before = std::fs::read(&manifest).unwrap();
    let started = std::time::Instant::now();
    let run = node.run("mkstick-kubernetes", &["kubeadm"]);
    assert!(!run.ok, "{}", run.context());
    let issue =
        std::fs::read_to_string(node.rootfile("/etc/issue.d/50-mkstick-kubernetes.issue")).unwrap();
    for says in [
        "KUBERNETES NOT STARTED: THIS SERVER'S ADDRESS CHANGED",
        "made at 10.0.2.15, but the server now has 10.0.3.15 (waited 3s; interfaces: 52:54:00:12:34:56 on ens3)",
        "reserve 10.0.2.15 for MAC 52:54:00:12:34:56 in your router's DHCP settings",
        "[network] address = \"10.0.2.15/24\" with mac = \"52:54:00:12:34:56\"",
    ] {
        assert!(run.stderr.contains(says) && issue.contains(says), "{says:?}\n{}", run.context());
    }
    assert!(
        run.ran("systemctl start").is_empty() && run.ran("kubeadm").is_empty(),
        "{}",
        run.context()
    );
    assert_eq!(std::fs::read(&manifest).unwrap(), before);
    assert!(started.elapsed() < std::time::Duration::from_secs(30));

    // No address at all (no cable): refused the same way.
    let node = kept_cluster_node();
    node.set("ip-addr", "");
    let run = node.run("mkstick-kubernetes", &["kubeadm"]);
    assert!(
        !run.ok
            && run
                .stderr
                .contains("the server now has no IPv4 address (waited 3s; interfaces: none)"),
        "{}",
        run.context()
    );
}

#[test]
fn init_waits_for_the_configured_address() {
    let node = Node::new();
    node.set_env("ADDRESS_WAIT_SECS=90", "ADDRESS_WAIT_SECS=2");
    node.set_env("ADVERTISE_ADDRESS=", "ADVERTISE_ADDRESS=192.168.1.10");
    write(&node.rootfile("/opt/bin/kubelet"), "kubelet 1.36.4\n");
    set_mode(&node.rootfile("/opt/bin/kubelet"), 0o755);
    let run = node.run("mkstick-kubernetes", &["kubeadm"]);
    assert!(!run.ok, "{}", run.context());
    assert!(
        run.stderr.contains("the cluster is to be made at 192.168.1.10 (mkstick.toml), but this server has 10.0.2.15")
            && run.ran("kubeadm").is_empty(),
        "{}",
        run.context()
    );
    node.set(
        "ip-addr",
        "2: ens3    inet 192.168.1.10/24 brd 192.168.1.255 scope global ens3\n",
    );
    let run = node.run("mkstick-kubernetes", &["kubeadm"]);
    assert!(
        run.ok && run.ran("kubeadm init").len() == 1,
        "{}",
        run.context()
    );
}

#[test]
fn init_on_dhcp_waits_for_a_default_route() {
    let node = Node::new();
    node.set_env("ADDRESS_WAIT_SECS=90", "ADDRESS_WAIT_SECS=2");
    write(&node.rootfile("/opt/bin/kubelet"), "kubelet 1.36.4\n");
    set_mode(&node.rootfile("/opt/bin/kubelet"), 0o755);
    node.set("ip-route", "");
    let run = node.run("mkstick-kubernetes", &["kubeadm"]);
    assert!(!run.ok, "{}", run.context());
    assert!(
        run.stderr
            .contains("this server has no default route (no DHCP lease?) after 2s")
            && run.ran("kubeadm").is_empty(),
        "{}",
        run.context()
    );
    std::fs::remove_file(node.state.join("ip-route")).unwrap();
    let run = node.run("mkstick-kubernetes", &["kubeadm"]);
    assert!(
        run.ok && run.ran("kubeadm init").len() == 1,
        "{}",
        run.context()
    );
}

/// The date `days` from now, as the certs action prints it.
fn days_from_now(days: i64) -> String {
    let out = Command::new("date")
        .args([
            "-u",
            "-d",
            &format!("@{}", now_secs() + days * 86400),
            "+%Y-%m-%d",
        ])
        .output()
        .unwrap();
    String::from_utf8(out.stdout).unwrap().trim().to_string()
}

fn now_secs() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64
}

/// A running cluster's node with its static pods' manifests, certificates
/// expiring in `days`, and no pause between stopping and starting them.
fn certs_node(days: i64) -> Node {
    let node = kept_cluster_node();
    node.set_env("STATIC_POD_PAUSE_SECS=25", "STATIC_POD_PAUSE_SECS=0");
    node.set("certs-left", &(days * 86400).to_string());
    for m in ["etcd", "kube-controller-manager", "kube-scheduler"] {
        write(
            &node.rootfile(&format!("/etc/kubernetes/manifests/{m}.yaml")),
            m,
        );
    }
    node
}

fn manifests(node: &Node) -> Vec<String> {
    let mut v: Vec<String> = std::fs::read_dir(node.rootfile("/etc/kubernetes/manifests"))
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    v.sort();
    v
}

const ALL_FOUR: [&str; 4] = [
    "etcd.yaml",
    "kube-apiserver.yaml",
    "kube-controller-manager.yaml",
    "kube-scheduler.yaml",
];

#[test]
fn certificates_are_renewed_30_days_before_they_expire_and_the_control_plane_restarts() {
    let issue = "/etc/issue.d/45-mkstick-certs.issue";
    let renew = "kubeadm certs renew all --config /etc/mkstick/kubeadm.yaml";
    // Far from expiry (the CA, near its own, is not kubeadm's to renew):
    // nothing renewed; the login prompt shows the date.
    let node = certs_node(31);
    let run = node.run("mkstick-kubernetes", &["certs"]);
    assert!(run.ok, "{}", run.context());
    assert!(
        run.ran("kubeadm certs renew").is_empty(),
        "{}",
        run.context()
    );
    let shown = std::fs::read_to_string(node.rootfile(issue)).unwrap();
    assert_eq!(
        shown,
        format!("mkstick: the Kubernetes certificates expire on {}; mkstick renews them 30 days before.\n", days_from_now(31))
    );

    // Within 30 days: renewed, and every static pod stopped and started
    // again; the new date shows.
    let node = certs_node(29);
    let run = node.run("mkstick-kubernetes", &["certs"]);
    assert!(run.ok, "{}", run.context());
    assert_eq!(run.ran("kubeadm certs renew"), [renew], "{}", run.context());
    assert!(
        run.stdout
            .contains("stopped the control plane's static pods for 0s"),
        "{}",
        run.context()
    );
    assert!(
        run.stdout
            .contains("the control plane's static pods are back"),
        "{}",
        run.context()
    );
    assert_eq!(manifests(&node), ALL_FOUR);
    assert!(!node
        .rootfile("/etc/kubernetes/manifests.mkstick-paused")
        .exists());
    let shown = std::fs::read_to_string(node.rootfile(issue)).unwrap();
    assert!(
        shown.contains(&format!("expire on {};", days_from_now(365))),
        "{shown}"
    );
    assert!(
        run.stdout
            .contains("/etc/kubernetes/admin.conf was renewed too"),
        "{}",
        run.context()
    );

    // A failed renewal is loud, and the control plane is left running.
    for (fail, says) in [
        ("kubeadm-certs-renew", "kubeadm certs renew all failed (its output is above). The certificate apiserver expires on"),
        ("kubeadm-certs-stale", "after kubeadm certs renew all, the certificate apiserver still expires on"),
        ("kubeadm-certs-check", "cannot read when they expire"),
    ] {
        let node = certs_node(29);
        node.set(&format!("fail/{fail}"), "");
        let run = node.run("mkstick-kubernetes", &["certs"]);
        let shown = std::fs::read_to_string(node.rootfile(issue)).unwrap();
        let loud = format!("mkstick: KUBERNETES CERTIFICATES NOT RENEWED: {says}");
        assert!(!run.ok && run.stderr.contains(&loud) && shown.contains(&loud), "{fail}: {shown}\n{}", run.context());
        assert_eq!(manifests(&node), ALL_FOUR, "{fail}");
    }
}

#[test]
fn a_cut_short_restart_is_finished_and_due_certificates_renewed_at_boot() {
    let node = certs_node(10);
    // A power cut while the static pods were stopped.
    let paused = node.rootfile("/etc/kubernetes/manifests.mkstick-paused");
    std::fs::create_dir_all(&paused).unwrap();
    for m in ["etcd.yaml", "kube-scheduler.yaml"] {
        std::fs::rename(
            node.rootfile(&format!("/etc/kubernetes/manifests/{m}")),
            paused.join(m),
        )
        .unwrap();
    }
    let run = node.run("mkstick-kubernetes", &["kubeadm"]);
    assert!(run.ok, "{}", run.context());
    assert_eq!(manifests(&node), ALL_FOUR);
    assert!(!paused.exists());
    // Due certificates are renewed before the kubelet starts, and the
    // console and login prompt say when the new ones expire.
    let at = |p: &str| run.calls.iter().position(|c| c.starts_with(p));
    assert!(
        matches!((at("kubeadm certs renew all"), at("systemctl start kubelet.service")), (Some(r), Some(k)) if r < k),
        "{}",
        run.context()
    );
    let expiry = format!(
        "the Kubernetes certificates expire on {};",
        days_from_now(365)
    );
    let shown =
        std::fs::read_to_string(node.rootfile("/etc/issue.d/45-mkstick-certs.issue")).unwrap();
    assert!(
        shown.contains(&expiry) && run.stdout.contains(&expiry),
        "{shown}\n{}",
        run.context()
    );
    // Not due: shown, not renewed.
    let node = certs_node(200);
    let run = node.run("mkstick-kubernetes", &["kubeadm"]);
    assert!(
        run.ok && run.ran("kubeadm certs renew").is_empty(),
        "{}",
        run.context()
    );
    assert!(
        run.stdout.contains(&format!(
            "the Kubernetes certificates expire on {};",
            days_from_now(200)
        )),
        "{}",
        run.context()
    );
}

/// The kubernetes.env value of `key` (a quoted one without its quotes).
fn env_value(node: &Node, key: &str) -> String {
    let env = std::fs::read_to_string(node.rootfile("/etc/mkstick/kubernetes.env")).unwrap();
    let line = env
        .lines()
        .find_map(|l| l.strip_prefix(&format!("{key}=")))
        .unwrap_or_else(|| panic!("{key} in {env}"));
    line.trim_matches('"').to_string()
}

#[test]
fn settings_fixed_at_init_are_not_applied_and_new_names_remake_the_certificate() {
    let settings = "/var/lib/kubelet/mkstick/settings";
    let issue = "/etc/issue.d/55-mkstick-settings.issue";
    let crt = "/etc/kubernetes/pki/apiserver.crt";
    let node = kept_cluster_node();
    let fixed = env_value(&node, "FIXED_SETTINGS");
    assert_eq!(
        fixed,
        "pod-cidr=10.244.0.0/16 service-cidr=10.96.0.0/12 cluster-name=mkstick"
    );
    assert_eq!(env_value(&node, "CERT_SANS"), "kube1");

    // A cluster an older mkstick made: its settings are recorded, nothing
    // is compared.
    let run = node.run("mkstick-kubernetes", &["kubeadm"]);
    assert!(
        run.ok && run.stdout.contains("no record of the settings"),
        "{}",
        run.context()
    );
    assert_eq!(
        std::fs::read_to_string(node.rootfile(settings)).unwrap(),
        format!("FIXED_SETTINGS=\"{fixed}\"\nCERT_SANS=\"kube1\"\n")
    );

    // Made with another pod-cidr and cluster-name, and one more name: the
    // fixed ones are refused, loudly, and the cluster runs as it was; the
    // certificate is made again, before the kubelet starts.
    let made = "FIXED_SETTINGS=\"pod-cidr=10.245.0.0/16 service-cidr=10.96.0.0/12 cluster-name=home\"\nCERT_SANS=\"kube1 old.lan\"\n";
    write(&node.rootfile(settings), made);
    write(&node.rootfile(crt), "old certificate");
    write(
        &node.rootfile("/etc/kubernetes/pki/apiserver.key"),
        "old key",
    );
    let run = node.run("mkstick-kubernetes", &["kubeadm"]);
    assert!(run.ok, "{}", run.context());
    let refused = "mkstick: SETTINGS NOT APPLIED: pod-cidr is 10.244.0.0/16 in mkstick.toml, but the cluster was made with pod-cidr = \"10.245.0.0/16\"; cluster-name is mkstick in mkstick.toml, but the cluster was made with cluster-name = \"home\". These are fixed when a cluster is made, so the cluster runs as it was.";
    let shown = std::fs::read_to_string(node.rootfile(issue)).unwrap();
    assert!(
        run.stderr.contains(refused) && shown.contains(refused),
        "{shown}\n{}",
        run.context()
    );
    let at = |p: &str| run.calls.iter().position(|c| c.starts_with(p));
    assert!(
        matches!((at("kubeadm init phase certs apiserver --config /etc/mkstick/kubeadm.yaml"), at("systemctl start kubelet.service")), (Some(c), Some(k)) if c < k),
        "{}",
        run.context()
    );
    assert_eq!(
        std::fs::read_to_string(node.rootfile(crt)).unwrap(),
        "apiserver certificate by the kubeadm TEST DOUBLE\n"
    );
    assert!(!node
        .rootfile("/etc/kubernetes/pki/apiserver.crt.mkstick-old")
        .exists());
    // Pods keep getting addresses from the cluster's pod network.
    let cni = std::fs::read_to_string(node.rootfile("/etc/cni/net.d/10-mkstick.conflist")).unwrap();
    assert!(
        cni.contains("\"subnet\": \"10.245.0.0/16\"") && !cni.contains("10.244."),
        "{cni}"
    );
    // The record keeps what the cluster was made with, and the new names.
    assert_eq!(
        std::fs::read_to_string(node.rootfile(settings)).unwrap(),
        made.replace("kube1 old.lan", "kube1")
    );

    // The next boot: the names match now; the fixed settings are still
    // refused.
    let run = node.run("mkstick-kubernetes", &["kubeadm"]);
    assert!(
        run.ok && run.stderr.contains(refused) && at_none(&run, "kubeadm init phase"),
        "{}",
        run.context()
    );

    // Making the certificate fails: the old one is put back, loudly (a key
    // that was not there is not made up).
    write(&node.rootfile(settings), made);
    write(&node.rootfile(crt), "old certificate");
    std::fs::remove_file(node.rootfile("/etc/kubernetes/pki/apiserver.key")).unwrap();
    node.set("fail/kubeadm-phase", "");
    let run = node.run("mkstick-kubernetes", &["kubeadm"]);
    assert!(run.ok, "{}", run.context());
    assert!(
        run.stderr
            .contains("making the API server's certificate with the names kube1 failed"),
        "{}",
        run.context()
    );
    assert_eq!(
        std::fs::read_to_string(node.rootfile(crt)).unwrap(),
        "old certificate"
    );
    assert_eq!(
        std::fs::read_to_string(node.rootfile(settings)).unwrap(),
        made
    );
    assert_eq!(run.ran("systemctl start kubelet.service").len(), 1);
}

fn at_none(run: &Run, prefix: &str) -> bool {
    run.ran(prefix).is_empty()
}

/// Every file, directory and symlink under `dir`, with its mode and
/// contents (or link target), by path.
fn tree(dir: &Path) -> std::collections::BTreeMap<String, (u32, Vec<u8>)> {
    use std::os::unix::fs::PermissionsExt;
    let mut out = std::collections::BTreeMap::new();
    let mut todo = vec![dir.to_path_buf()];
    while let Some(d) = todo.pop() {
        for e in std::fs::read_dir(&d).unwrap() {
            let p = e.unwrap().path();
            let meta = std::fs::symlink_metadata(&p).unwrap();
            let rel = p.strip_prefix(dir).unwrap().display().to_string();
            let body = if meta.file_type().is_symlink() {
                std::fs::read_link(&p)
                    .unwrap()
                    .into_os_string()
                    .into_encoded_bytes()
            } else if meta.is_dir() {
                todo.push(p.clone());
                Vec::new()
            } else {
                std::fs::read(&p).unwrap()
            };
            out.insert(rel, (meta.permissions().mode(), body));
        }
    }
    out
}

/// The cluster's paths on the pool, as `tree` reads them.
fn cluster_state(node: &Node) -> Vec<std::collections::BTreeMap<String, (u32, Vec<u8>)>> {
    CLUSTER_PATHS
        .iter()
        .map(|p| tree(&node.rootfile(&format!("/var/mnt/data/state{p}"))))
        .collect()
}

/// The snapshots in /var/mnt/data/snapshots, oldest first.
fn snapshots(node: &Node) -> Vec<String> {
    let mut v: Vec<String> = std::fs::read_dir(node.rootfile("/var/mnt/data/snapshots"))
        .map(|d| {
            d.map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
                .filter(|n| n != "restore")
                .collect()
        })
        .unwrap_or_default();
    v.sort();
    v
}

/// A snapshot `name` as the btrfs double keeps one: a copy of the state.
fn old_snapshot(node: &Node, name: &str) {
    let dst = node.rootfile(&format!("/var/mnt/data/snapshots/{name}"));
    std::fs::create_dir_all(dst.parent().unwrap()).unwrap();
    let o = Command::new("cp")
        .arg("-a")
        .arg(node.rootfile("/var/mnt/data/state"))
        .arg(&dst)
        .output()
        .unwrap();
    assert!(o.status.success());
    let list = node.state.join("subvolumes");
    let mut text = std::fs::read_to_string(&list).unwrap();
    text.push_str(&format!("{}\n", dst.display()));
    write(&list, &text);
}

#[test]
fn an_upgrade_takes_a_snapshot_first_and_keeps_the_last_three() {
    let node = kept_cluster_node_at("1.35.2");
    // An earlier attempt at the same upgrade, and one from a boot whose
    // clock was years ahead.
    for n in [
        "20250101T000000Z-kubernetes-1.34.1-before-1.35.0",
        "20250601T000000Z-kubernetes-1.35.0-before-1.35.2",
        "20251101T000000Z-kubernetes-1.35.2-before-1.36.4",
        "20990101T000000Z-kubernetes-1.35.0-before-1.35.1",
    ] {
        old_snapshot(&node, n);
    }
    let before = cluster_state(&node);
    let run = node.run("mkstick-kubernetes", &["kubeadm"]);
    assert!(run.ok, "{}", run.context());
    let root = node.root.display().to_string();
    let calls: Vec<String> = run.calls.iter().map(|c| c.replace(&root, "")).collect();
    let at = |p: &str| calls.iter().position(|c| c.starts_with(p));
    let snap = at("btrfs subvolume snapshot -r /var/mnt/data/state /var/mnt/data/snapshots/");
    assert!(
        matches!((snap, at("systemctl start kubelet.service"), at("kubeadm upgrade apply")), (Some(s), Some(k), Some(u)) if s < k && k < u),
        "the snapshot is taken before the kubelet starts: {}",
        run.context()
    );
    // The earlier attempt is replaced, the oldest other one pruned, and the
    // new one kept although the future-dated name sorts after it.
    let mut names = snapshots(&node);
    assert_eq!(names.len(), 3, "{names:?}");
    assert_eq!(
        [&names[0], &names[2]],
        [
            "20250601T000000Z-kubernetes-1.35.0-before-1.35.2",
            "20990101T000000Z-kubernetes-1.35.0-before-1.35.1"
        ]
    );
    assert!(
        names[1].ends_with("Z-kubernetes-1.35.2-before-1.36.4")
            && !names[1].starts_with("20251101"),
        "{names:?}"
    );
    for gone in [
        "20250101T000000Z-kubernetes-1.34.1-before-1.35.0",
        "20251101T000000Z-kubernetes-1.35.2-before-1.36.4",
    ] {
        assert!(
            calls.contains(&format!(
                "btrfs subvolume delete /var/mnt/data/snapshots/{gone}"
            )),
            "{}",
            run.context()
        );
    }
    names.swap(1, 2); // the new one last, as below
                      // The upgrade ran with the snapshot marked to be put back if it were cut
                      // short, and the mark is gone once it succeeded.
    assert_eq!(
        std::fs::read_to_string(node.state.join("upgrade-saw-marker"))
            .unwrap_or_default()
            .trim(),
        names[2],
        "{}",
        run.context()
    );
    assert!(!node
        .rootfile("/var/mnt/data/state/.mkstick-restoring")
        .exists());
    // The snapshot holds the cluster as it was before the upgrade.
    let snap_dir = node.rootfile(&format!("/var/mnt/data/snapshots/{}", names[2]));
    let in_snap: Vec<_> = CLUSTER_PATHS
        .iter()
        .map(|p| tree(&snap_dir.join(p.trim_start_matches('/'))))
        .collect();
    assert_eq!(in_snap, before);

    // No snapshot, no upgrade.
    let node = kept_cluster_node_at("1.35.2");
    node.set("fail/btrfs-snapshot", "");
    let run = node.run("mkstick-kubernetes", &["kubeadm"]);
    assert!(!run.ok, "{}", run.context());
    assert!(
        run.stderr.contains(
            "KUBERNETES NOT STARTED: the upgrade from 1.35.2 to 1.36.4 starts with a snapshot"
        ),
        "{}",
        run.context()
    );
    assert!(
        run.ran("kubeadm upgrade").is_empty() && run.ran("systemctl start kubelet").is_empty(),
        "{}",
        run.context()
    );
}

#[test]
fn a_failed_upgrade_is_rolled_back_to_the_snapshot_and_the_old_kubelet_runs() {
    let node = kept_cluster_node_at("1.35.2");
    node.set_env("STATIC_POD_PAUSE_SECS=25", "STATIC_POD_PAUSE_SECS=0");
    write(&node.rootfile("/var/lib/etcd/member/db"), "etcd before");
    write(
        &node.rootfile("/var/lib/kubelet/config.yaml"),
        "kubelet config before",
    );
    node.set("fail/kubeadm-upgrade", "");
    let before = cluster_state(&node);
    let run = node.run("mkstick-kubernetes", &["kubeadm"]);
    assert!(run.ok, "the cluster runs again: {}", run.context());
    assert_eq!(
        cluster_state(&node),
        before,
        "byte for byte as before: {}",
        run.context()
    );
    assert_eq!(
        std::fs::read_to_string(node.rootfile("/opt/bin/kubelet")).unwrap(),
        "kubelet 1.35.2\n",
        "the old kubelet runs: {}",
        run.context()
    );
    let at = |p: &str| run.calls.iter().rposition(|c| c.starts_with(p));
    assert!(
        matches!((at("kubeadm upgrade apply"), at("systemctl stop kubelet.service"), at("systemctl start kubelet.service")), (Some(u), Some(s), Some(k)) if u < s && s < k),
        "{}",
        run.context()
    );
    let issue =
        std::fs::read_to_string(node.rootfile("/etc/issue.d/50-mkstick-kubernetes.issue")).unwrap();
    assert!(
        issue.contains("UPGRADE ROLLED BACK: kubeadm upgrade apply v1.36.4 failed")
            && issue.contains("Kubernetes 1.35.2 runs again"),
        "{issue}"
    );
    assert!(
        run.stderr.contains("UPGRADE ROLLED BACK"),
        "{}",
        run.context()
    );
    assert!(!node
        .rootfile("/var/mnt/data/state/.mkstick-restoring")
        .exists());
}

#[test]
fn the_way_back_restores_a_snapshot_only_when_asked() {
    // The cluster was upgraded from 1.36.4 (this stick) to 1.37.0.
    let node = kept_cluster_node_at("1.36.4");
    write(&node.rootfile("/var/lib/etcd/member/db"), "etcd at 1.36.4");
    assert!(
        node.run("mkstick-kubernetes", &["kubeadm"]).ok,
        "it ran at 1.36.4"
    );
    let old = "20260101T000000Z-kubernetes-1.36.4-before-1.37.0";
    old_snapshot(&node, old);
    let at_old = cluster_state(&node);
    write(
        &node.rootfile("/etc/kubernetes/manifests/kube-apiserver.yaml"),
        &apiserver(Some("1.37.0")),
    );
    write(
        &node.rootfile("/var/lib/kubelet/mkstick/version"),
        "1.37.0\n",
    );
    write(&node.rootfile("/var/lib/etcd/member/db"), "etcd at 1.37.0");
    let at_new = cluster_state(&node);
    // Two later snapshots: the one asked for is the oldest of three, and
    // must survive the pruning when the state before the restore is kept.
    let later = [
        "20260201T000000Z-kubernetes-1.37.0-before-1.37.1",
        "20260301T000000Z-kubernetes-1.37.0-before-1.37.2",
    ];
    for n in later {
        old_snapshot(&node, n);
    }

    // Not asked: refused, and the refusal names the snapshot and the way.
    let run = node.run("mkstick-kubernetes", &["kubeadm"]);
    assert!(!run.ok);
    let how = format!("echo {old} | sudo tee /var/mnt/data/snapshots/restore");
    assert!(
        run.stderr.contains(&how) && run.stderr.contains("never downgrades"),
        "{}",
        run.context()
    );
    assert_eq!(cluster_state(&node), at_new);

    // Asked for a snapshot that is not there: refused, nothing changed.
    write(
        &node.rootfile("/var/mnt/data/snapshots/restore"),
        "20260101T000000Z-kubernetes-1.36.4-before-1.37.1\n",
    );
    let run = node.run("mkstick-kubernetes", &["kubeadm"]);
    assert!(
        !run.ok && run.stderr.contains("which is not one of the snapshots"),
        "{}",
        run.context()
    );
    assert_eq!(cluster_state(&node), at_new);

    // Asked as the refusal says: restored, the state before kept in a new
    // snapshot, the request gone, the kubelet started.
    let out = Command::new("sh")
        .arg("-c")
        .arg(
            how.replace("sudo ", "")
                .replace("/var/mnt", &format!("{}/var/mnt", node.root.display())),
        )
        .output()
        .unwrap();
    assert!(out.status.success());
    let run = node.run("mkstick-kubernetes", &["kubeadm"]);
    assert!(run.ok, "{}", run.context());
    assert_eq!(cluster_state(&node), at_old, "{}", run.context());
    assert!(!node.rootfile("/var/mnt/data/snapshots/restore").exists());
    assert!(run.stderr.contains(&format!("CLUSTER RESTORED: as /var/mnt/data/snapshots/restore asked, the cluster's state was put back from the snapshot {old}")), "{}", run.context());
    let names = snapshots(&node);
    assert!(
        names.len() == 3
            && names[0] == old
            && names[1] == later[1]
            && names[2].ends_with("-kubernetes-1.37.0-before-restore"),
        "the restored snapshot is kept, the oldest other one deleted: {names:?}"
    );
    let undo = node.rootfile(&format!("/var/mnt/data/snapshots/{}", names[2]));
    let in_undo: Vec<_> = CLUSTER_PATHS
        .iter()
        .map(|p| tree(&undo.join(p.trim_start_matches('/'))))
        .collect();
    assert_eq!(in_undo, at_new, "the restore can be undone");
    assert_eq!(
        run.ran("systemctl start kubelet.service").len(),
        1,
        "{}",
        run.context()
    );
}

/// `mkstick-storage state` on a real btrfs (a loop mount on the host) with
/// the real btrfs tool: only findmnt and systemd-cat are doubles. Each case
/// leaves the pool as a boot would find it; afterwards state is a
/// subvolume holding exactly what the plain directory held (the kept path
/// /var/lib/rancher of this config; the script adds the others), a
/// no-copy-on-write file (as journald makes) among it, and nothing of a
/// conversion is left over.
#[test]
fn state_becomes_a_subvolume_in_place_and_a_conversion_cut_short_is_finished() {
    let required = std::env::var("MKSTICK_REQUIRE_TOOLS").as_deref() == Ok("1");
    let Some(mkfs) = crate::common::tool("mkfs.btrfs") else {
        assert!(!required, "mkfs.btrfs is required here");
        return;
    };
    // What a boot finds on the pool: state plain, or a conversion cut short
    // at each point.
    let cases: &[(&str, &str)] = &[
        ("a plain state directory", ""),
        (
            "cut short while copying",
            "btrfs -q subvolume create .state.mkstick-new && echo partial > .state.mkstick-new/half",
        ),
        (
            "cut short between the renames",
            "btrfs -q subvolume create .state.mkstick-new && cp -a --reflink=auto state/. .state.mkstick-new/ && mv state .state.mkstick-old",
        ),
        (
            "cut short before the old directory was removed",
            "btrfs -q subvolume create .state.mkstick-new && cp -a --reflink=auto state/. .state.mkstick-new/ && mv state .state.mkstick-old && mv .state.mkstick-new state",
        ),
    ];
    for (name, cut) in cases {
        let node = Node::new();
        let img = node.state.join("pool.img");
        std::fs::File::create(&img)
            .unwrap()
            .set_len(256 << 20)
            .unwrap();
        let o = Command::new(&mkfs)
            .args(["-q", "-L", "data"])
            .arg(&img)
            .output()
            .unwrap();
        assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
        let pool = node.rootfile("/var/mnt/data");
        std::fs::create_dir_all(&pool).unwrap();
        let o = Command::new("mount")
            .args(["-o", "loop"])
            .arg(&img)
            .arg(&pool)
            .output()
            .unwrap();
        if !o.status.success() {
            assert!(
                !required,
                "mount -o loop: {}",
                String::from_utf8_lossy(&o.stderr)
            );
            eprintln!("SKIPPED: cannot loop-mount a btrfs here; run as root");
            return;
        }
        // The old layout, with a hard link, a symlink, odd modes and owners.
        let setup = format!(
            "set -e; cd \"$1\"; mkdir -p state/var/lib/rancher/sub; chmod 0750 state
printf kept > state/var/lib/rancher/kept; ln state/var/lib/rancher/kept state/var/lib/rancher/hard
ln -s kept state/var/lib/rancher/sym; printf odd > state/var/lib/rancher/sub/odd
chmod 0640 state/var/lib/rancher/sub/odd; chown 1234:5678 state/var/lib/rancher/sub/odd
head -c 1000000 /dev/urandom > state/var/lib/rancher/blob
mkdir state/var/lib/rancher/nocow; chattr +C state/var/lib/rancher/nocow
head -c 100000 /dev/urandom > state/var/lib/rancher/nocow/journal
(cd state && stat -c '%a %u %g' . && cd var/lib/rancher && {TREE_MANIFEST}) > ../before
{cut}"
        );
        let o = Command::new("sh")
            .args(["-c", &setup, "sh"])
            .arg(&pool)
            .output()
            .unwrap();
        let fail = |what: &str| {
            let _ = Command::new("umount").arg(&pool).status();
            panic!("{name}: {what}");
        };
        if !o.status.success() {
            fail(&String::from_utf8_lossy(&o.stderr));
        }
        node.set("mounted", "");
        // Only findmnt and systemd-cat are doubles; btrfs, cp and mv are real.
        let doubles = node.state.join("bin");
        std::fs::create_dir_all(&doubles).unwrap();
        let from = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/node-doubles");
        for d in ["findmnt", "systemd-cat", "common.sh"] {
            std::os::unix::fs::symlink(from.join(d), doubles.join(d)).unwrap();
        }
        let out = Command::new("bash")
            .arg(node.rootfile(&format!("{BIN_DIR}/mkstick-storage")))
            .arg("state")
            .env("MKSTICK_ROOT", &node.root)
            .env("NODE_DOUBLES", &node.state)
            .env(
                "PATH",
                format!(
                    "{}:{}",
                    doubles.display(),
                    std::env::var("PATH").unwrap_or_default()
                ),
            )
            .output()
            .unwrap();
        let check = format!("cd \"$1\"; test \"$(stat -c %i state)\" = 256 && btrfs subvolume show state >/dev/null && test -z \"$(ls -A | grep -F .state.mkstick)\" && (cd state && stat -c '%a %u %g' . && cd var/lib/rancher && {TREE_MANIFEST}) | diff ../before - >&2 && echo SAME");
        let after = Command::new("sh")
            .args(["-c", &check, "sh"])
            .arg(&pool)
            .output()
            .unwrap();
        let _ = Command::new("umount").arg(&pool).status();
        let log = format!(
            "{name}\nstdout:\n{}\nstderr:\n{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        assert!(out.status.success(), "{log}");
        assert_eq!(
            String::from_utf8_lossy(&after.stdout).trim(),
            "SAME",
            "{log}"
        );
    }
}

#[test]
fn an_upgrade_cut_short_is_put_back_to_its_snapshot_at_the_next_boot() {
    // The upgrade from 1.35.2 was under way when the power went: the
    // snapshot is marked, and the state is half upgraded.
    let node = kept_cluster_node_at("1.35.2");
    write(&node.rootfile("/var/lib/etcd/member/db"), "etcd at 1.35.2");
    let snap = "20260101T000000Z-kubernetes-1.35.2-before-1.36.4";
    old_snapshot(&node, snap);
    let before = cluster_state(&node);
    write(
        &node.rootfile("/var/lib/etcd/member/db"),
        "etcd half upgraded",
    );
    write(
        &node.rootfile("/etc/kubernetes/manifests/kube-apiserver.yaml"),
        &apiserver(Some("1.36.4")),
    );
    write(
        &node.rootfile("/var/mnt/data/state/.mkstick-restoring"),
        &format!("{snap}\n"),
    );
    node.set("fail/kubeadm-upgrade", ""); // this boot's try fails too: rolled back
    node.set_env("STATIC_POD_PAUSE_SECS=25", "STATIC_POD_PAUSE_SECS=0");
    let run = node.run("mkstick-kubernetes", &["kubeadm"]);
    assert!(run.ok, "{}", run.context());
    assert!(
        run.stdout.contains(&format!("an upgrade or a restore was cut short: putting the cluster's state back from the snapshot /var/mnt/data/snapshots/{snap}")),
        "{}",
        run.context()
    );
    // Put back first, so this boot upgrades from 1.35.2 again (not a
    // "keep" of the half-upgraded 1.36.4), fails, and is rolled back.
    assert_eq!(
        run.ran("kubeadm upgrade apply v1.36.4").len(),
        1,
        "{}",
        run.context()
    );
    assert_eq!(cluster_state(&node), before, "{}", run.context());
    assert!(!node
        .rootfile("/var/mnt/data/state/.mkstick-restoring")
        .exists());
}

#[test]
fn nothing_is_restored_from_a_snapshot_that_is_not_there_or_under_running_containers() {
    // The mark names a snapshot that is gone (deleted by hand): nothing is
    // wiped, the boot is refused loudly.
    let node = kept_cluster_node_at("1.36.4");
    write(&node.rootfile("/var/lib/etcd/member/db"), "etcd");
    let before = cluster_state(&node);
    write(
        &node.rootfile("/var/mnt/data/state/.mkstick-restoring"),
        "20260101T000000Z-kubernetes-1.35.2-before-1.36.4\n",
    );
    let run = node.run("mkstick-kubernetes", &["kubeadm"]);
    assert!(!run.ok, "{}", run.context());
    assert!(
        run.stderr.contains("is not there; nothing was restored"),
        "{}",
        run.context()
    );
    assert_eq!(cluster_state(&node), before, "{}", run.context());
    assert!(
        run.ran("systemctl start kubelet").is_empty(),
        "{}",
        run.context()
    );

    // A failed upgrade while a container will not die: the state is not
    // put back under it; the mark stays for the next boot.
    let node = kept_cluster_node_at("1.35.2");
    node.set_env("STATIC_POD_PAUSE_SECS=25", "STATIC_POD_PAUSE_SECS=1");
    node.set("fail/kubeadm-upgrade", "");
    node.set("fail/ctr-kill", "");
    node.set("ctr-tasks", "etcd-1234 1234 RUNNING\n");
    let run = node.run("mkstick-kubernetes", &["kubeadm"]);
    assert!(!run.ok, "{}", run.context());
    assert!(
        run.stderr.contains("containers still run in containerd"),
        "{}",
        run.context()
    );
    assert!(node
        .rootfile("/var/mnt/data/state/.mkstick-restoring")
        .exists());
    assert_eq!(
        run.ran("ctr -n k8s.io tasks kill -a -s SIGKILL etcd-1234")
            .len(),
        1,
        "{}",
        run.context()
    );

    // Killed, it stops: the rollback goes on.
    let node = kept_cluster_node_at("1.35.2");
    node.set_env("STATIC_POD_PAUSE_SECS=25", "STATIC_POD_PAUSE_SECS=1");
    node.set("fail/kubeadm-upgrade", "");
    node.set("ctr-tasks", "etcd-1234 1234 RUNNING\n");
    let run = node.run("mkstick-kubernetes", &["kubeadm"]);
    assert!(
        run.ok && run.stderr.contains("UPGRADE ROLLED BACK"),
        "{}",
        run.context()
    );
}
