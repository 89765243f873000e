//! QEMU boot tests of the data drives (--features boot-tests): the units and
//! the script mkstick generates run in the test OS's real systemd userspace,
//! with data disks that are files on the host and survive from boot to boot.
//!
//! One test walks a pool through its life, because each boot starts from the
//! disks the previous one left:
//!   1. two blank drives, raid1: the pool is created and mounted, the kept
//!      paths are bind-mounted, a marker and a kept file are written, and a
//!      file written through NFS over loopback lands on the btrfs volume;
//!   2. the same drives, a fresh RAM state: no mkfs, everything is still there;
//!   3. a third blank drive, an ext4 drive and a drive with only a partition
//!      table are added to the config and the stick rebuilt: the blank one
//!      joins and the pool is balanced to raid1; the other two are left alone
//!      (byte for byte, checked on the host) with loud errors, and the pool
//!      keeps working;
//!   4. a drive of the raid1 pool is detached: the boot goes on, the status
//!      line names the missing drive, and nothing is mounted degraded.
//!
//! Each boot checks inside the guest and ends in MKSTICK-BOOT-OK or
//! MKSTICK-BOOT-FAIL with the names of the failed checks. The whole walk runs
//! on both flavours of the test OS; on the flatcar-like one the scripts live
//! in /opt/bin, and each boot also checks that.

use crate::boot::{boot_vm, Flavour};
use crate::common::*;
use std::path::Path;
use std::process::Command;

const MOUNT: &str = "/var/mnt/data";
const KEPT: &str = "/var/lib/mkstick-test";

/// The start of every check script, after `check_fragment`'s helpers:
/// `finish` reports on the serial console and powers off.
const PRELUDE: &str = r#"created_in_journal() { journalctl -b -o cat -u mkstick-storage.service | grep -q "creating it (raid1 on 2 drives)"; }
status_in_journal() { journalctl -b -o cat -u mkstick-storage-status.service | grep -q 'mkstick storage: pool "data" healthy'; }
finish() {
    say "--- btrfs filesystem show"; btrfs filesystem show > /dev/ttyS0 2>&1
    say "--- btrfs filesystem usage"; btrfs filesystem usage -T /var/mnt/data > /dev/ttyS0 2>&1
    say "--- status"; cat /etc/issue.d/50-mkstick-storage.issue > /dev/ttyS0 2>&1
    say "--- failed units"; systemctl list-units --failed --plain --no-legend > /dev/ttyS0 2>&1
    if [ -z "$fail" ]; then say "MKSTICK-BOOT-OK"; else say "MKSTICK-BOOT-FAIL:$fail"; fi
    systemctl poweroff --force
}
mounted() { findmnt --mountpoint /var/mnt/data --types btrfs; }
is_subvolume() { test "$(stat -c %i "$1")" = 256 && btrfs subvolume show "$1" >/dev/null; }
# What state holds: each entry's mode, owner, link count, link target and
# size, and each file's sha256 (the same command runs on the host).
state_manifest() { say "MKSTICK-STATE-BEGIN"; (cd /var/mnt/data/state && STATE_MANIFEST) > /dev/ttyS0; say "MKSTICK-STATE-END"; }
bound() { findmnt --mountpoint "$1" -n -o SOURCE | grep -qF "[/state$1]"; }
no_failed_units() { test -z "$(systemctl list-units --failed --plain --no-legend)"; }
only_failed() { test "$(systemctl list-units --failed --plain --no-legend | awk '{print $1}' | sort | paste -sd' ')" = "$1"; }
profiles_are() { test "$(btrfs filesystem df /var/mnt/data | awk -F'[,:]' '$1 ~ /^(Data|Metadata|System)$/ { gsub(/ /, "", $2); print tolower($2) }' | sort -u | paste -sd' ')" = "$1"; }
devices_are() { test "$(btrfs filesystem show /var/mnt/data | grep -c ' path ')" = "$1"; }
say "MKSTICK-POOL-UUID=$(findmnt --mountpoint /var/mnt/data -n -o UUID)"
"#;

fn config(os: &Path, drives: &[&str]) -> String {
    let drives: Vec<String> = drives
        .iter()
        .map(|d| format!("\"/dev/disk/by-id/virtio-{d}\""))
        .collect();
    format!(
        "[node]\nhostname = \"pool-test\"\nssh-authorized-keys = [\"{KEY}\"]\n\n\
[os]\npath = \"{}\"\n\n[boot]\nconsole = \"serial\"\n\n[storage]\ndrives = [{}]\nprofile = \"raid1\"\n\
persist = [\"{KEPT}\"]\ndevice-timeout-secs = 20\n\n\
[extra]\nignition = [\"check.ign\"]\n",
        os.display(),
        drives.join(", ")
    )
}

/// The check runs after the storage units have finished.
fn fragment(bin_dir: &str, script: &str) -> String {
    crate::boot::check_fragment(
        bin_dir,
        "mkstick storage boot test: check the pool",
        "mkstick-storage.service mkstick-storage-grow.service mkstick-storage-status.service \
mkstick-state.service nfs-server.service var-mnt-data.mount",
        script,
    )
}

/// What every boot checks of the OS's layout: mkstick's storage script is
/// in the OS's bin dir (on the flatcar-like OS, never under /usr/local).
fn layout_checks(flavour: Flavour, bin_dir: &str) -> String {
    let mut c = format!("check storage-script-in-bin-dir test -x {bin_dir}/mkstick-storage\n");
    if flavour == Flavour::Flatcar {
        c.push_str(
            "check no-script-in-usr-local test ! -e /usr/local/bin/mkstick-storage -a ! -e /usr/local/bin/mkstick-boot-check\n\
check usr-local-read-only sh -c '! touch /usr/local/bin/mkstick-probe'\n",
        );
    }
    c
}

fn build(s: &Scratch, flavour: Flavour, drives: &[&str], checks: &str) {
    let bin_dir = flavour.bin_dir();
    s.write("mkstick.toml", &config(&flavour.os(), drives));
    let layout = layout_checks(flavour, &bin_dir);
    s.write(
        "check.ign",
        &fragment(
            &bin_dir,
            &format!("{PRELUDE}{layout}{checks}finish\n").replace("STATE_MANIFEST", TREE_MANIFEST),
        ),
    );
    ok(s.run(&["build", "-q", "--force"]));
    ignition_validate(&embedded_ignition(&s.path("mkstick.img")));
}

fn disk(s: &Scratch, serial: &str) -> String {
    format!(
        "{},serial={serial}",
        s.path(&format!("{serial}.img")).display()
    )
}

/// Run a host tool that prepares a test disk; it must succeed.
fn succeed(cmd: &mut Command) {
    let o = cmd.output().unwrap();
    assert!(
        o.status.success(),
        "{cmd:?}: {}",
        String::from_utf8_lossy(&o.stderr)
    );
}

fn sparse(path: &Path, bytes: u64) {
    std::fs::File::create(path).unwrap().set_len(bytes).unwrap();
}

/// The lines of `console` between the lines holding `begin` and `end`.
fn between(console: &str, begin: &str, end: &str) -> String {
    let text = console.replace('\r', "");
    let from = text.find(begin).map(|i| i + begin.len());
    let to = text.rfind(end);
    match (from, to) {
        (Some(f), Some(t)) if f <= t => {
            let inner = &text[f..t];
            let inner = inner.split_once('\n').map_or("", |(_, rest)| rest);
            // Only the manifest's lines: find's (from ".") and sha256sum's
            // (64 hex digits); the console may carry other messages.
            let ours = |l: &&str| {
                l.starts_with('.')
                    || (l.len() > 66 && l[..64].bytes().all(|b| b.is_ascii_hexdigit()))
            };
            inner.lines().filter(ours).collect::<Vec<_>>().join("\n")
        }
        _ => String::new(),
    }
}

/// Gives the raid1 pool on d0 and d1 the layout of pools made before
/// mkstick kept snapshots (state a plain directory, its files copied, not
/// shared), adds a hard link, a symlink and a file with odd mode and owner,
/// and returns the state's manifest. On the host: loop devices, `btrfs
/// device scan` (no udev here) and a btrfs mount.
fn to_plain_state(s: &Scratch) -> String {
    let loops: Vec<String> = ["d0", "d1"]
        .iter()
        .map(|d| {
            let o = Command::new("losetup")
                .args(["-f", "--show"])
                .arg(s.path(&format!("{d}.img")))
                .output()
                .unwrap();
            assert!(
                o.status.success(),
                "losetup: {}",
                String::from_utf8_lossy(&o.stderr)
            );
            String::from_utf8_lossy(&o.stdout).trim().to_string()
        })
        .collect();
    let mnt = s.path("pool-on-host");
    std::fs::create_dir_all(&mnt).unwrap();
    let script = format!(
        r#"set -e
btrfs device scan {l0} {l1} >/dev/null
mount -t btrfs {l0} "$1"
cd "$1"
test "$(stat -c %i state)" = 256
btrfs subvolume snapshot state .old-state >/dev/null
btrfs subvolume delete state >/dev/null
mkdir state
cp -a --reflink=never .old-state/. state/
chmod --reference=.old-state state
btrfs subvolume delete .old-state >/dev/null
test "$(stat -c %i state)" != 256
k=state{KEPT}
printf 'odd\n' > $k/odd && chmod 0640 $k/odd && chown 1234:5678 $k/odd
ln $k/kept.txt $k/kept-hardlink
ln -s kept.txt $k/kept-symlink
mkdir -m 0700 $k/private && head -c 3000000 /dev/urandom > $k/private/blob
cd state && {TREE_MANIFEST}
cd / && umount "$1"
"#,
        l0 = loops[0],
        l1 = loops[1],
    );
    let o = Command::new("sh")
        .args(["-c", &script, "sh"])
        .arg(&mnt)
        .output()
        .unwrap();
    if !o.status.success() {
        let _ = Command::new("umount").arg(&mnt).status();
    }
    for l in &loops {
        let _ = Command::new("losetup").args(["-d", l]).status();
    }
    assert!(
        o.status.success(),
        "making the plain state layout on the host: {}",
        String::from_utf8_lossy(&o.stderr)
    );
    String::from_utf8_lossy(&o.stdout).trim().to_string()
}

fn pool_uuid(console: &str) -> String {
    console
        .lines()
        .find_map(|l| l.split_once("MKSTICK-POOL-UUID=").map(|(_, u)| u))
        .and_then(|u| u.split_whitespace().next())
        .map(str::to_string)
        .unwrap_or_default()
}

#[test]
fn data_pool_is_created_kept_grown_and_never_touches_foreign_drives() {
    data_pool_walk(Flavour::Coreos);
}

#[test]
fn data_pool_is_created_kept_grown_and_never_touches_foreign_drives_on_flatcar() {
    data_pool_walk(Flavour::Flatcar);
}

fn data_pool_walk(flavour: Flavour) {
    let (Some(mkfs_ext4), Some(sgdisk)) = (tool("mkfs.ext4"), tool("sgdisk")) else {
        return;
    };
    let s = Scratch::new("");
    for d in ["d0", "d1", "d2"] {
        sparse(&s.path(&format!("{d}.img")), 320 << 20);
    }
    // A drive that holds someone's data: ext4 with a file on it.
    let content = s.path("ext4-content");
    std::fs::create_dir(&content).unwrap();
    std::fs::write(content.join("precious.txt"), "do not format me\n").unwrap();
    let ext4 = s.path("d3.img");
    sparse(&ext4, 64 << 20);
    succeed(
        Command::new(mkfs_ext4)
            .args(["-q", "-F", "-L", "precious", "-d"])
            .arg(&content)
            .arg(&ext4),
    );
    let ext4_before = file_sha256(&ext4);
    // A drive with a partition table and no filesystem at all.
    let parted = s.path("d4.img");
    sparse(&parted, 32 << 20);
    succeed(
        Command::new(sgdisk)
            .args(["-n", "1:0:0", "-t", "1:8300"])
            .arg(&parted),
    );
    let parted_before = file_sha256(&parted);
    let token = format!(
        "marker-{}",
        &sha256_hex(s.dir.path().to_string_lossy().as_bytes())[..16]
    );

    // Boot 1: two blank drives become a raid1 pool.
    build(
        &s,
        flavour,
        &["d0", "d1"],
        &format!(
            r#"
check mounted mounted
check label test "$(findmnt --mountpoint {MOUNT} -n -o LABEL)" = data
check created created_in_journal
check two-devices devices_are 2
check raid1 profiles_are raid1
check options sh -c 'findmnt --mountpoint {MOUNT} -n -o OPTIONS | grep -q "compress=zstd" && findmnt --mountpoint {MOUNT} -n -o OPTIONS | grep -q noatime'
check "bound {KEPT}" bound {KEPT}
# Without [kubernetes], nothing of Kubernetes is kept (each feature states its needs).
for p in /etc/kubernetes /var/lib/containerd /var/lib/etcd /var/lib/kubelet; do check "not-bound $p" not findmnt --mountpoint $p; done
echo "{token}" > {MOUNT}/marker && sync
echo "kept {token}" > {KEPT}/kept.txt && sync
check kept-on-pool test -f {MOUNT}/state{KEPT}/kept.txt
check state-is-subvolume is_subvolume {MOUNT}/state
check status-healthy grep -q 'pool "data" healthy: raid1 on 2 drives (virtio-d0 virtio-d1)' /etc/issue.d/50-mkstick-storage.issue
check status-in-journal status_in_journal
# NFS over loopback, from the OS's own server, onto the pool.
check nfs-server systemctl is-active nfs-server.service
mkdir -p /mnt/nfs
say "--- exportfs -v"; exportfs -v > /dev/ttyS0 2>&1
timeout 120 mount -v -t nfs -o vers=4.2,proto=tcp 127.0.0.1:/ /mnt/nfs > /dev/ttyS0 2>&1
check nfs-mount findmnt --mountpoint /mnt/nfs
check nfs-type test "$(findmnt --mountpoint /mnt/nfs -n -o FSTYPE)" = nfs4
echo "through nfs {token}" > /mnt/nfs/via-nfs.txt
sync; umount /mnt/nfs
check nfs-landed-on-pool test "$(cat {MOUNT}/exports/via-nfs.txt)" = "through nfs {token}"
check nfs-dir-is-btrfs test "$(stat -f -c %T {MOUNT}/exports)" = btrfs
check no-failed-units no_failed_units
"#
        ),
    );
    let c1 = boot_vm(
        &s,
        "mkstick.img",
        &[&disk(&s, "d0"), &disk(&s, "d1")],
        &flavour.log("storage-1-create"),
    );
    let uuid = pool_uuid(&c1);
    assert!(uuid.len() == 36, "boot 1 printed the pool's UUID: {uuid:?}");
    assert!(
        c1.contains("every listed drive is blank and no pool \"data\" exists: creating it"),
        "the console said the pool was created"
    );

    // Between boots, on the host: the pool gets the layout pools made
    // before mkstick kept snapshots have, state a plain directory, with a
    // hard link, a symlink and odd modes and owners in it.
    let before = to_plain_state(&s);
    assert!(
        before.contains("/kept-hardlink 644 0 0 2 ") && before.contains("/odd 640 1234 5678 1 "),
        "the host's manifest of the plain state: {before}"
    );

    // Boot 2: the same drives and a fresh RAM state (the stick is rebuilt
    // with boot 2's checks, as an upgrade by reflashing would do); the
    // plain state directory is converted into a subvolume in place.
    build(
        &s,
        flavour,
        &["d0", "d1"],
        &format!(
            r#"
check mounted mounted
check no-mkfs not created_in_journal
check no-created-flag not test -e /run/mkstick/storage/created
check marker test "$(cat {MOUNT}/marker)" = "{token}"
check kept-file test "$(cat {KEPT}/kept.txt)" = "kept {token}"
check nfs-file test "$(cat {MOUNT}/exports/via-nfs.txt)" = "through nfs {token}"
check "bound {KEPT}" bound {KEPT}
check raid1 profiles_are raid1
check state-converted is_subvolume {MOUNT}/state
check conversion-said journalctl -b -o cat -u mkstick-state.service --grep "is a btrfs subvolume now, with everything it held"
check nothing-left-over test -z "$(ls -A {MOUNT} | grep -F .state.mkstick)"
check no-failed-units no_failed_units
state_manifest
"#
        ),
    );
    let c2 = boot_vm(
        &s,
        "mkstick.img",
        &[&disk(&s, "d0"), &disk(&s, "d1")],
        &flavour.log("storage-2-reboot"),
    );
    assert_eq!(pool_uuid(&c2), uuid, "the same pool after a reboot");
    assert!(!c2.contains("creating it"), "no mkfs on a reboot");
    assert_eq!(
        between(&c2, "MKSTICK-STATE-BEGIN", "MKSTICK-STATE-END"),
        before,
        "boot 2: the converted state holds exactly what the plain directory held"
    );

    // Boot 3: a third blank drive and a drive holding ext4 are listed.
    build(
        &s,
        flavour,
        &["d0", "d1", "d2", "d3", "d4"],
        &format!(
            r#"
check mounted mounted
check three-devices devices_are 3
check d2-joined sh -c 'btrfs filesystem show {MOUNT} | grep -q "$(readlink -f /dev/disk/by-id/virtio-d2)"'
check balanced-raid1 profiles_are raid1
check usage-raid1 sh -c 'btrfs filesystem usage {MOUNT} | grep -q "^Data,RAID1" && btrfs filesystem usage {MOUNT} | grep -q "^Metadata,RAID1" && btrfs filesystem usage {MOUNT} | grep -q "^System,RAID1" && ! btrfs filesystem usage {MOUNT} | grep -Eq "^(Data|Metadata|System),(single|DUP)"'
check marker test "$(cat {MOUNT}/marker)" = "{token}"
check kept-file test "$(cat {KEPT}/kept.txt)" = "kept {token}"
check d3-still-ext4 test "$(blkid -p -o value -s TYPE /dev/disk/by-id/virtio-d3)" = ext4
check loud-error grep -q "virtio-d3 holds ext4" /etc/issue.d/50-mkstick-storage.issue
check loud-error-gpt grep -q "virtio-d4 holds gpt" /etc/issue.d/50-mkstick-storage.issue
check d4-not-joined not sh -c 'btrfs filesystem show {MOUNT} | grep -q "$(readlink -f /dev/disk/by-id/virtio-d4)"'
check pool-writable sh -c 'echo grown > {MOUNT}/after-grow && sync'
check only-prepare-failed only_failed mkstick-storage.service
"#
        ),
    );
    let c3 = boot_vm(
        &s,
        "mkstick.img",
        &[
            &disk(&s, "d0"),
            &disk(&s, "d1"),
            &disk(&s, "d2"),
            &disk(&s, "d3"),
            &disk(&s, "d4"),
        ],
        &flavour.log("storage-3-grow"),
    );
    assert_eq!(pool_uuid(&c3), uuid, "the pool grew; it was not recreated");
    assert!(
        c3.contains("ERROR: /dev/disk/by-id/virtio-d3 holds ext4")
            && c3.contains("wipefs --all /dev/disk/by-id/virtio-d3"),
        "the loud error, with the way out, is on the console"
    );
    assert_eq!(
        file_sha256(&ext4),
        ext4_before,
        "the ext4 drive is byte-for-byte unchanged"
    );
    assert!(
        c3.contains("ERROR: /dev/disk/by-id/virtio-d4 holds gpt"),
        "the partitioned drive is reported too"
    );
    assert_eq!(
        file_sha256(&parted),
        parted_before,
        "the partitioned drive is byte-for-byte unchanged"
    );

    // Boot 4: d2 is detached from the raid1 pool.
    build(
        &s,
        flavour,
        &["d0", "d1", "d2", "d3", "d4"],
        r#"
check not-mounted not mounted
check never-degraded not grep -q degraded /proc/mounts
check status-missing grep -q 'pool "data" DEGRADED and NOT MOUNTED: virtio-d2 missing' /etc/issue.d/50-mkstick-storage.issue
check loud-missing grep -q "virtio-d2 is missing" /etc/issue.d/50-mkstick-storage.issue
check kept-paths-not-faked not findmnt --mountpoint /etc/kubernetes
"#,
    );
    let c4 = boot_vm(
        &s,
        "mkstick.img",
        &[
            &disk(&s, "d0"),
            &disk(&s, "d1"),
            &disk(&s, "d3"),
            &disk(&s, "d4"),
        ],
        &flavour.log("storage-4-missing"),
    );
    assert!(
        c4.contains("ERROR: /dev/disk/by-id/virtio-d2 is missing"),
        "the missing drive is reported on the console"
    );
    assert!(
        c4.contains("DEGRADED and NOT MOUNTED"),
        "the status line is on the console"
    );
    assert_eq!(
        file_sha256(&ext4),
        ext4_before,
        "the ext4 drive is still unchanged"
    );
}
