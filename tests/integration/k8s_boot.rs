//! QEMU boot tests of first-boot Kubernetes (--features boot-tests): the
//! units and the script mkstick generates run in the test OS's real systemd
//! with real containerd (Debian's), on a data drive that outlives each boot.
//!
//! kubeadm, kubelet and kubectl are TEST DOUBLES (tests/fixtures/
//! k8s-doubles/): bash scripts carried on the stick exactly as the real
//! binaries would be, downloaded from a 127.0.0.1 server, checked and
//! installed by mkstick's unit, that record their calls on the data drive
//! and create the files real kubeadm creates. The real ones need
//! registry.k8s.io. So this proves mkstick's control flow, not Kubernetes:
//!   0. first boot, with a pool made after the mount gave up waiting for it
//!      and an init that fails: mkstick-storage starts the Kubernetes units
//!      again once the pool exists; init runs once, then `kubeadm reset`;
//!   1. binaries installed from the stick and checked; `kubeadm init
//!      --config /etc/mkstick/kubeadm.yaml` exactly once, with the kept
//!      paths already bind-mounted from the pool and containerd running
//!      mkstick's config; then every manifest applied in order, after the
//!      CNI config; certificates the double made to expire in 10 days are
//!      renewed by mkstick-certs.timer while the node runs;
//!   2. a reboot with the same stick: no init, the kubelet starts, the
//!      manifests are applied again, nothing is renewed;
//!   3. a stick with the next minor (1.37.0) whose kubeadm double fails
//!      `upgrade apply` halfway (manifests, certificates and etcd's data
//!      changed): the read-only btrfs snapshot taken before it is put back
//!      byte for byte, and the kept kubelet 1.36.4 runs again;
//!   4. a stick with the next minor (1.37.0): one more api-server-sans name
//!      makes the API server's certificate again, another pod-cidr is
//!      refused loudly (the CNI config keeps the cluster's); the kept
//!      kubelet 1.36.4 runs the control plane, `kubeadm upgrade apply
//!      v1.37.0 --yes`, then the kubelet 1.37.0; its changed [nfs]
//!      reclaim-policy makes the (double's, immutable) StorageClass refuse
//!      the apply, so it is deleted and made again;
//!   5. the previous stick (1.36.4): a downgrade; nothing runs, the refusal
//!      is on the console and at the login prompt, the cluster files are
//!      untouched, and it offers the way back: the snapshot taken before
//!      the upgrade, and the command that asks for it, which the check runs;
//!   6. the same stick again: the snapshot is restored (the state as it
//!      was, byte for byte; the state before kept in a snapshot), then
//!      1.36.4 starts;
//!   7. a new DHCP lease from another range: the cluster, bound to
//!      10.0.2.15, is not started; the refusal names both addresses.
//!
//! On the flatcar-like test OS (binaries in /opt/bin, /usr/local read-only)
//! only the main boot runs, init and the manifests on a blank drive
//! (step 1 without step 0), to keep the boot time modest; there [network]
//! gives the node a static address, which systemd-networkd applies.
//!
//! Every boot is on an isolated network (`mkstick boot --network
//! isolated`): a DHCP address, no router, nothing reachable. Each
//! stick carries its 13 images (hello TEST images, tests/integration/
//! images.rs, pushed to a real Debian `docker-registry` on 127.0.0.1 and
//! named as a mirror would name them), and the kubeadm double checks, as
//! kubeadm's ImagePull preflight check does, that every image its config
//! names is in containerd, failing when one is missing and its registry
//! cannot be resolved. Boot 0 imports them; boots 1 and 2 find them kept on the drive
//! and import nothing; boot 3's 1.37.0 images are imported before the
//! upgrade, and boot 4 finds them kept. Boot 1 also checks each pinned digest in `ctr images ls`,
//! containerd's sandbox image, and runs one image with `ctr run`.
//!
//! Not proven here (real hardware only): that the real kubeadm, kubelet and
//! images bring up a Ready node, that Traefik answers, that a PVC binds.

use crate::boot::{boot_vm_with, container_nfs_os, Flavour};
use crate::common::*;
use crate::http::Server;
use crate::images::{TestImage, TestRegistry, HELLO_MESSAGE};
use crate::kubernetes::{doubles, publish_carrying, publish_images, APP};

/// Every boot here is on an isolated network (`mkstick boot --network
/// isolated`, QEMU's user network with restrict=on), as a server on a LAN
/// with no router: DHCP gives it 10.0.2.15 but no gateway and no DNS server
/// (libslirp's bootp.c leaves both out when restricted), and it can reach
/// nothing beyond, so the images come from the stick or not at all. With no
/// default route kubeadm cannot choose an address, so the config names
/// the lease's as `advertise-address` (a DHCP reservation, as the README
/// advises).
/// (Without it, mkstick refuses the init after 90 s: node_logic.rs.)
fn boot_vm(s: &Scratch, image: &str, disks: &[&str], log: &str) -> String {
    boot_vm_with(s, image, disks, &["--network", "isolated"], log)
}

const PRELUDE: &str = r#"boot=$(head -c 8 /proc/sys/kernel/random/boot_id)
failed_units() { systemctl list-units --failed --plain --no-legend | awk '{print $1}' | sort | paste -sd' '; }
apiserver_at() { grep -q "image: .*/k8s/kube-apiserver:v$1\$" /etc/kubernetes/manifests/kube-apiserver.yaml; }
# Each image of IMAGES is in containerd, by tag and by digest, at its pin.
images_at_pins() {
    local ref tagged name digest listing
    listing=$(ctr -n k8s.io images ls) || return 1
    . /etc/mkstick/kubernetes.env
    [ -n "$IMAGES" ] || return 1
    for ref in $IMAGES; do
        tagged=${ref%@*} name=${ref%:*@*} digest=${ref#*@}
        for n in "$tagged" "$name@$digest"; do
            echo "$listing" | awk -v n="$n" -v d="$digest" '$1 == n && $3 == d { found = 1 } END { exit !found }' || { echo "missing: $n at $digest"; return 1; }
        done
    done
}
pause_ref() { (. /etc/mkstick/kubernetes.env; for r in $IMAGES; do case $r in */k8s/pause:*) echo "${r%@*}";; esac; done); }
first_image() { (. /etc/mkstick/kubernetes.env; set -- $IMAGES; echo "${1%@*}"); }
# The cluster's paths (what a rollback restores; not the kubelet's runtime)
# hold exactly what they hold in the snapshot $1: names, types, modes,
# owners, link targets and bytes.
RUNTIME="pods plugins plugins_registry pod-resources device-plugins checkpoints"
tree_of() {
    local prune="" n
    for n in $RUNTIME; do prune="$prune -path ./$n -prune -o"; done
    (cd "$1" && find . $prune -printf '%p %y %m %U %G %l\n' | LC_ALL=C sort && find . $prune -type f -exec sha256sum {} + | LC_ALL=C sort)
}
same_as_snapshot() {
    local p
    [ -d "$1" ] || return 1
    for p in /etc/kubernetes /var/lib/etcd /var/lib/kubelet; do
        [ "$(tree_of "$1$p")" = "$(tree_of "$p")" ] || { say "differs from $1: $p"; diff <(tree_of "$1$p") <(tree_of "$p") > /dev/ttyS0; return 1; }
    done
}
# The newest snapshot taken before an upgrade from $1 to $2.
snapshot_before() { ls -d /var/mnt/data/snapshots/*Z-kubernetes-$1-before-$2 2>/dev/null | tail -n 1; }
finish() {
    grep "^boot=$boot " /var/mnt/data/mkstick-test/calls.log 2>/dev/null | sed "s/^boot=$boot /MKSTICK-CALL /" > /dev/ttyS0
    say "--- failed units: $(failed_units)"
    if [ -z "$fail" ]; then say "MKSTICK-BOOT-OK"; else say "MKSTICK-BOOT-FAIL:$fail"; fi
    systemctl poweroff --force
}
"#;

fn fragment(bin_dir: &str, script: &str) -> String {
    crate::boot::check_fragment(
        bin_dir,
        "mkstick Kubernetes boot test: check",
        "mkstick-kubeadm.service mkstick-addons.service mkstick-nfs-image.service",
        script,
    )
}

/// Build a stick carrying Kubernetes `version` (doubles), with `checks`.
/// `nfs` goes into the config, `kubernetes` into [kubernetes], and
/// `network` as its [network] table;
/// `files` (path, contents) are written by Ignition for the tests:
/// [`FAIL_INIT`] makes the kubeadm double's init fail (as when images
/// cannot be pulled), [`CERTS_DUE`] makes certificates that expire soon.
#[allow(clippy::too_many_arguments)]
fn build(
    s: &Scratch,
    flavour: Flavour,
    (server, reg): (&Server, &TestRegistry),
    version: &str,
    (kubernetes, nfs): (&str, &str),
    network: &str,
    files: &[(&str, &str)],
    checks: &str,
) {
    // On the coreos flavour, the OS runs its NFS server in a container, as
    // Fedora CoreOS does: the table pins that image too, and the stick
    // carries it for podman.
    let mut images = publish_images(reg, version);
    let os = match flavour {
        Flavour::Coreos => {
            images.push(reg.push(
                "coreos-assembler/nfs",
                "test",
                &TestImage::hello_multi_arch("coreos-assembler/nfs"),
            ));
            container_nfs_os(&flavour.os(), &s.path("os-container-nfs"))
        }
        Flavour::Flatcar => flavour.os(),
    };
    s.write(
        &format!("k8s-{version}.toml"),
        &publish_carrying(server, version, &doubles(version), &images),
    );
    // A device timeout shorter than mkfs: on the first boot the mount gives
    // up before the pool exists, so the Kubernetes units fail their
    // dependencies and must be started again by mkstick-storage.
    s.write(
        "mkstick.toml",
        &format!(
            "[node]\nhostname = \"kube-test\"\nssh-authorized-keys = [\"{KEY}\"]\n\n\
[os]\npath = \"{}\"\n\n[boot]\nconsole = \"serial\"\n\n[storage]\ndrives = [\"/dev/disk/by-id/virtio-d0\"]\n\
device-timeout-secs = 3\n\n[kubernetes]\nbinaries = \"k8s-{version}.toml\"\nadvertise-address = \"10.0.2.15\"\n{kubernetes}\n\n\
[nfs]\n{nfs}\n\n[network]\n{network}\n\n[extra]\nignition = [\"check.ign\"]\nmanifests = [\"hello.yaml\"]\n",
            os.display()
        ),
    );
    s.write("hello.yaml", APP);
    let mut fragment: serde_json::Value = serde_json::from_str(&fragment(
        &flavour.bin_dir(),
        &format!("{PRELUDE}{checks}finish\n")
            .replace("@HELLO@", HELLO_MESSAGE)
            .replace("@PORT@", server_port(server)),
    ))
    .unwrap();
    for (path, contents) in files {
        fragment["storage"]["files"].as_array_mut().unwrap().push(serde_json::json!(
            {"path": path, "mode": 0o644, "contents": {"source": mkstick::ignition::data_url(contents.as_bytes())}}
        ));
    }
    s.write("check.ign", &fragment.to_string());
    let cache = s.path("cache");
    ok(s.run_env(
        &["build", "-q", "--force"],
        &[("XDG_CACHE_HOME", cache.to_str().unwrap())],
    ));
    ignition_validate(&embedded_ignition(&s.path("mkstick.img")));
}

/// The port of the test server on the host's 127.0.0.1, which QEMU's user
/// network shows the guest as 10.0.2.2, unless isolated.
fn server_port(server: &Server) -> &str {
    let url = server.url("");
    let port = url.rsplit(':').next().unwrap().trim_end_matches('/');
    Box::leak(port.to_string().into_boxed_str())
}

/// The kubeadm double's init fails.
const FAIL_INIT: &[(&str, &str)] = &[("/etc/mkstick-test/fail-init", "")];

/// The kubeadm double's upgrade apply fails halfway: the control plane's
/// manifests, its certificates and etcd's data are changed already.
const FAIL_UPGRADE: &[(&str, &str)] = &[("/etc/mkstick-test/fail-upgrade", "")];

/// The kubeadm double's init makes certificates that expire in 10 days, and
/// mkstick-certs.timer first fires 20 s after the cluster started instead
/// of 15 minutes: the renewal happens while the node runs.
const CERTS_DUE: &[(&str, &str)] = &[
    ("/etc/mkstick-test/cert-days", "10\n"),
    (
        "/etc/systemd/system/mkstick-certs.timer.d/50-test.conf",
        "[Timer]\nOnActiveSec=\nOnActiveSec=20s\n",
    ),
];

/// The checks of the certificate timer: it ran after the kubelet started,
/// succeeded, and the login prompt shows an expiry at least 300 days away.
const CERT_CHECKS: &str = r#"
i=0
while [ $i -lt 240 ] && [ "$(systemctl show -P ExecMainExitTimestampMonotonic mkstick-certs.service)" = 0 ]; do sleep 1; i=$((i + 1)); done
cert_date_ahead() {
    local d
    d=$(sed -n 's/^mkstick: the Kubernetes certificates expire on \([0-9-]*\); mkstick renews them 30 days before[.]$/\1/p' /etc/issue.d/45-mkstick-certs.issue)
    [ -n "$d" ] && [ "$(date -u -d "$d" +%s)" -gt $(($(date +%s) + 300 * 86400)) ]
}
check certs-ran test "$(systemctl show -P Result mkstick-certs.service)" = success
check certs-by-timer-while-running test "$(systemctl show -P ExecMainStartTimestampMonotonic mkstick-certs.service)" -gt "$(systemctl show -P ActiveEnterTimestampMonotonic kubelet.service)"
check certs-date-shown cert_date_ahead
check static-pods-back sh -c 'test ! -e /etc/kubernetes/manifests.mkstick-paused && test -s /etc/kubernetes/manifests/etcd.yaml && test -s /etc/kubernetes/manifests/kube-apiserver.yaml'
"#;

/// The calls without the certificate renewals (the timer's, which may come
/// at any point), and those.
fn split_certs(calls: Vec<String>) -> (Vec<String>, Vec<String>) {
    calls
        .into_iter()
        .partition(|c| !c.starts_with("kubeadm certs"))
}

/// The calls the doubles recorded in this boot, without the boot tag.
fn calls(console: &str) -> Vec<String> {
    console
        .lines()
        .filter_map(|l| {
            l.split_once("MKSTICK-CALL ")
                .map(|(_, c)| c.trim_end().to_string())
        })
        .collect()
}

/// Boot 1's checks: init succeeded, then the manifests.
/// Boot 0 imported the same images into the containerd the drive keeps.
const KEPT_IMAGES: &str = r#"
check images-kept journalctl -b -o cat -u mkstick-images.service --grep "all 13 images are already in containerd; nothing imported"
"#;

/// The import on a data drive whose containerd holds none of the images.
const IMPORTED: &str = r#"
check images-imported journalctl -b -o cat -u mkstick-images.service --grep "imported 13 images from the stick into containerd"
"#;

/// The NFS server's image (coreos flavour): loaded from the stick into
/// podman's store, which is in RAM, so at every boot, with no registry,
/// at its pinned digest; no unit failed (Debian's podman has no quadlet
/// generator, so the NFS container itself does not run).
const NFS_IMAGE_CHECKS: &str = r#"
image_id() { podman image inspect "$1" | jq -r '.[0].Id'; }
# NAME@DIGEST (what the quadlet's Image= names) and NAME:TAG are one image.
nfs_image_at_pin() {
    local tagged by_digest
    . /etc/mkstick/nfs-image.env
    tagged=$(image_id "${NFS_IMAGE%@*}") && by_digest=$(image_id "${NFS_IMAGE%:*@*}@${NFS_IMAGE##*@}") &&
        [ -n "$tagged" ] && [ "$tagged" = "$by_digest" ]
}
nfs_image_not_in_containerd() { local refs; refs=$(ctr -n k8s.io images ls -q) && [ -n "$refs" ] && ! echo "$refs" | grep -q coreos-assembler/nfs; }
check nfs-image-loaded-from-stick journalctl -b -o cat -u mkstick-nfs-image.service --grep "from the stick into podman's store, digest sha256:.* checked"
check nfs-image-at-pin nfs_image_at_pin
check nfs-image-not-in-containerd nfs_image_not_in_containerd
check podman-units-off not systemctl is-enabled --quiet podman-auto-update.service
check nfs-quadlet-by-digest grep -qx "Image=.*/coreos-assembler/nfs@sha256:[0-9a-f]*" /etc/containers/systemd/mkstick-nfs.container
check nfs-stick-unmounted not findmnt /run/mkstick/nfs-image-stick
"#;

const INIT_CHECKS: &str = r#"
check binaries-installed test "$(/opt/bin/kubeadm version)" = v1.36.4
check crictl-installed test -x /opt/bin/crictl
check cni-installed test -x /opt/cni/bin/bridge -a -x /opt/cni/bin/portmap
check install-checked-hashes journalctl -b -o cat -u mkstick-kubernetes-install.service --grep "checked against mkstick/manifest.json"
check stick-unmounted not findmnt /run/mkstick/stick
check stage-emptied test -z "$(ls -A /run/mkstick/k8s)"
check containerd-cri-ok test "$(ctr plugins ls | awk '$1 == "io.containerd.grpc.v1" && $2 == "cri" { print $NF }')" = ok
check containerd-systemd-cgroup sh -c 'containerd config dump | grep -q "SystemdCgroup = true"'
check cni-config test -s /etc/cni/net.d/10-mkstick.conflist
check apiserver-1.36.4 apiserver_at 1.36.4
check kubelet-kept test "$(cat /var/lib/kubelet/mkstick/version)" = 1.36.4
check state-is-a-subvolume btrfs subvolume show /var/mnt/data/state
check etcd-state-mode test "$(stat -c %a /var/mnt/data/state/var/lib/etcd)" = 700
check kubelet-active systemctl is-active --quiet kubelet
check addons-done journalctl -b -o cat -u mkstick-addons.service --grep "all manifests are applied"
check whoami-example grep -q ReadWriteMany /etc/mkstick/examples/whoami.yaml
check has-a-lease test -n "$(ip -o -4 addr show scope global)"
check isolated not bash -c 'exec 3<>/dev/tcp/10.0.2.2/@PORT@'
check isolated-from-registries not getent ahosts registry.k8s.io
check apiserver-at-lease grep -qx '    kubeadm.kubernetes.io/kube-apiserver.advertise-address.endpoint: 10.0.2.15:6443' /etc/kubernetes/manifests/kube-apiserver.yaml
check etcd-at-lease grep -qx '    - --listen-peer-urls=https://10.0.2.15:2380' /etc/kubernetes/manifests/etcd.yaml
check images-at-pins images_at_pins
check sandbox-image-carried sh -c "containerd config dump | grep -qF 'sandbox_image = \"$(pause_ref)\"'"
check image-runs-offline sh -c "ctr -n k8s.io run --rm $(first_image) mkstick-hello | grep -qx '@HELLO@'"
check no-failed-units test -z "$(failed_units)"
"#;

/// The kubeadm double's ImagePull check found all seven of its images.
const PRESENT: &str = "kubeadm images present: 7";

const KUBECTL: &str = "kubectl --kubeconfig /etc/kubernetes/admin.conf";
const APPLY: &str =
    "apply --server-side --force-conflicts --field-manager=mkstick -f /etc/mkstick/manifests";
const KEPT: &str = " bound:/etc/kubernetes bound:/var/lib/etcd bound:/var/lib/kubelet bound:/var/lib/containerd containerd:active";

/// The addons' calls: every manifest in order, after the CNI config.
/// `class_changed`: the StorageClass is refused, deleted and made again.
fn applies(class_changed: bool) -> Vec<String> {
    let apply = |f: &str| format!("{KUBECTL} {APPLY}/{f} |cni:yes");
    let mut v = vec![
        apply("20-ingress-traefik.yaml"),
        apply("30-nfs-csi-driver-nfs.yaml"),
        format!("{KUBECTL} delete storageclass -l app.kubernetes.io/managed-by=mkstick --field-selector metadata.name!=nfs --ignore-not-found"),
    ];
    if class_changed {
        v.push(format!(
            "{} refused:immutable",
            apply("31-nfs-storageclass.yaml")
        ));
        v.push(format!("{KUBECTL} delete -f /etc/mkstick/manifests/31-nfs-storageclass.yaml --ignore-not-found"));
    }
    v.push(apply("31-nfs-storageclass.yaml"));
    v.push(apply("50-extra-0001-hello.yaml"));
    v
}

/// A blank 512 MiB data drive in the scratch dir, as `--data-disk` names it.
fn blank_drive(s: &Scratch, serial: &str) -> String {
    let path = s.path(&format!("{serial}.img"));
    std::fs::File::create(&path)
        .unwrap()
        .set_len(512 << 20)
        .unwrap();
    format!("{},serial={serial}", path.display())
}

fn with(first: &[String], rest: Vec<String>) -> Vec<String> {
    first.iter().cloned().chain(rest).collect()
}

#[test]
fn kubeadm_inits_once_keeps_upgrades_one_minor_rolls_back_and_goes_back() {
    let server = Server::start();
    let reg = TestRegistry::start().expect("docker-registry and skopeo (scripts/setup)");
    let s = Scratch::new("");
    let d0 = blank_drive(&s, "d0");
    let init = format!("kubeadm init --config /etc/mkstick/kubeadm.yaml |{KEPT}");
    // A stick with Kubernetes `version`, the config's defaults and `files`.
    let stick = |version: &str, files: &[(&str, &str)], checks: &str| {
        build(
            &s,
            Flavour::Coreos,
            (&server, &reg),
            version,
            ("", ""),
            "",
            files,
            checks,
        )
    };

    // 0. First boot, the pool made late and init failing: re-queued after
    //    the pool, init once, then kubeadm reset; nothing is applied.
    stick(
        "1.36.4",
        FAIL_INIT,
        r#"
check requeued-after-late-pool journalctl -b -o cat --grep "Dependency failed for mkstick-kubeadm.service"
check reset-cleared not test -e /etc/kubernetes/admin.conf -o -e /var/lib/etcd/member
check kubelet-not-started not systemctl is-active --quiet kubelet
check only-kubeadm-failed test "$(failed_units)" = mkstick-kubeadm.service
check images-imported journalctl -b -o cat -u mkstick-images.service --grep "imported 13 images from the stick into containerd"
"#,
    );
    let c0 = boot_vm(&s, "mkstick.img", &[&d0], "k8s-0-init-fails");
    assert_eq!(
        calls(&c0),
        [
            init.clone(),
            PRESENT.to_string(),
            "kubeadm reset --force".to_string()
        ],
        "boot 0: init once, every image already imported, then reset"
    );
    // The guest checked that the unit gave up once while the pool was made
    // (requeued-after-late-pool); it ran after all, as the calls show:
    // mkstick-storage started it again.
    assert!(c0.contains("kubeadm init failed; undoing its partial work (kubeadm reset)"));
    assert!(c0.contains("then reboot or run: sudo systemctl restart mkstick-addons"));

    // 1. Init succeeds, then the manifests.
    stick(
        "1.36.4",
        CERTS_DUE,
        &format!("{INIT_CHECKS}{KEPT_IMAGES}{CERT_CHECKS}{NFS_IMAGE_CHECKS}"),
    );
    let c1 = boot_vm(&s, "mkstick.img", &[&d0], "k8s-1-init");
    let kubelet = |v: &str| format!("kubelet version={v} config=yes");
    let (c1_calls, renewed) = split_certs(calls(&c1));
    assert_eq!(
        c1_calls,
        with(
            &[init, PRESENT.to_string(), kubelet("1.36.4")],
            applies(false)
        ),
        "boot 1: init once, with every image present, then every manifest in order"
    );
    // Certificates made to expire in 10 days are renewed by the timer, with
    // the kubelet running, and the control plane restarted.
    assert_eq!(
        renewed,
        ["kubeadm certs renew all --config /etc/mkstick/kubeadm.yaml |kubelet:active"],
        "boot 1: one renewal by the timer"
    );
    assert!(
        c1.contains("within 30 days: kubeadm certs renew all")
            && c1.contains("stopped the control plane's static pods for 25s")
            && c1.contains("renewed: the control plane runs on certificates that expire on"),
        "boot 1: the renewal is on the console"
    );

    // 2. Reboot, same stick: no init, nothing to renew.
    let c2 = boot_vm(&s, "mkstick.img", &[&d0], "k8s-2-reboot");
    assert_eq!(
        calls(&c2),
        with(&[kubelet("1.36.4")], applies(false)),
        "boot 2: the kept cluster starts; no init, no renewal"
    );
    assert!(
        c2.contains("mkstick-kubernetes: the Kubernetes certificates expire on")
            && c2.contains("; they are renewed 30 days before"),
        "boot 2: the console says when the certificates expire"
    );
    assert!(c2.contains("runs Kubernetes 1.36.4, as this stick does: starting the kubelet"));
    assert!(
        c2.contains("all 13 images are already in containerd; nothing imported"),
        "boot 2: nothing imported anew"
    );
    // podman's store is in RAM: the NFS server's image is loaded from the
    // stick again, at every boot, with no registry (NFS_IMAGE_CHECKS ran
    // in the guest again too).
    for (boot, console) in [(1, &c1), (2, &c2)] {
        assert!(
            console.contains("mkstick-nfs-image: loaded ")
                && console.contains("from the stick into podman's store, digest sha256:"),
            "boot {boot}: the NFS server's image is loaded from the stick"
        );
    }
    // The test OS states 1024 MiB, Kubernetes adds 2048; the boots get 1024.
    assert!(
        c2.contains("mkstick: WARNING: this server has")
            && c2.contains("MiB of RAM, and this stick needs at least 3072 MiB"),
        "the banner warns about RAM"
    );

    // 3. The next minor, and kubeadm upgrade apply fails halfway: the
    //    snapshot taken before it is put back, byte for byte, and the
    //    kept kubelet 1.36.4 runs the cluster again.
    stick(
        "1.37.0",
        FAIL_UPGRADE,
        r#"
snap=$(snapshot_before 1.36.4 1.37.0)
check snapshot-taken test -n "$snap"
check snapshot-read-only test "$(btrfs property get -ts "$snap" ro)" = ro=true
check state-as-in-snapshot same_as_snapshot "$snap"
check halfway-undone test ! -e /var/lib/etcd/member/upgrade-halfway
check apiserver-back-at-1.36.4 apiserver_at 1.36.4
check kubelet-kept-1.36.4 test "$(cat /var/lib/kubelet/mkstick/version)" = 1.36.4
check kubelet-binary-old sh -c '/opt/bin/kubelet --version | grep -qx "Kubernetes v1.36.4"'
check kubelet-active systemctl is-active --quiet kubelet
check rollback-at-login grep -qF "UPGRADE ROLLED BACK: kubeadm upgrade apply v1.37.0 failed" /etc/issue.d/50-mkstick-kubernetes.issue
check no-failed-units test -z "$(failed_units)"
"#,
    );
    let c3 = boot_vm(&s, "mkstick.img", &[&d0], "k8s-3-upgrade-fails");
    assert!(
        c3.contains("imported 13 images from the stick into containerd"),
        "boot 3: the 1.37.0 stick's images are imported, with no way out"
    );
    assert_eq!(
        calls(&c3),
        with(
            &[
                kubelet("1.36.4"),
                format!("kubeadm upgrade apply v1.37.0 --yes |{KEPT}"),
                PRESENT.to_string(),
                kubelet("1.36.4"),
            ],
            applies(false)
        ),
        "boot 3: the upgrade on the old kubelet fails; the old kubelet runs again"
    );
    assert!(
        c3.contains("took the read-only snapshot /var/mnt/data/snapshots/")
            && c3.contains("rolling the cluster's state back to the snapshot")
            && c3.contains("mkstick: UPGRADE ROLLED BACK: kubeadm upgrade apply v1.37.0 failed")
            && c3.contains("and Kubernetes 1.36.4 runs again"),
        "boot 3: the rollback is on the console"
    );

    // 4. The next minor: upgrade, old kubelet first. [nfs] changed too: the
    //    StorageClass is made again. One more name for the API server: its
    //    certificate is made again first. And another pod-cidr, which an
    //    existing cluster cannot take: not applied, loudly; the rest goes on.
    build(
        &s,
        Flavour::Coreos,
        (&server, &reg),
        "1.37.0",
        (
            "api-server-sans = [\"kube.lan\"]\npod-cidr = \"10.245.0.0/16\"",
            "reclaim-policy = \"retain\"",
        ),
        "",
        &[],
        r#"
check cert-names-new grep -qx kube.lan /etc/kubernetes/pki/apiserver.crt
check names-recorded grep -qx 'CERT_SANS="kube-test 10.0.2.15 kube.lan"' /var/lib/kubelet/mkstick/settings
check pods-keep-the-cluster-range grep -qF '"subnet": "10.244.0.0/16"' /etc/cni/net.d/10-mkstick.conflist
check pod-cidr-not-applied grep -qF 'SETTINGS NOT APPLIED: pod-cidr is 10.245.0.0/16 in mkstick.toml, but the cluster was made with pod-cidr = "10.244.0.0/16"' /etc/issue.d/55-mkstick-settings.issue
check apiserver-1.37.0 apiserver_at 1.37.0
check kubelet-kept test "$(cat /var/lib/kubelet/mkstick/version)" = 1.37.0
check kubelet-binary-new sh -c '/opt/bin/kubelet --version | grep -qx "Kubernetes v1.37.0"'
check class-retains grep -q 'reclaimPolicy: "Retain"' /var/mnt/data/mkstick-test/storageclass.yaml
check retry-snapshot-replaces-the-first test "$(ls /var/mnt/data/snapshots | grep -c 'Z-kubernetes-1.36.4-before-1.37.0$')" = 1
check no-failed-units test -z "$(failed_units)"
"#,
    );
    let c4 = boot_vm(&s, "mkstick.img", &[&d0], "k8s-4-upgrade");
    assert!(
        c4.contains("all 13 images are already in containerd; nothing imported"),
        "boot 4: the 1.37.0 images boot 3 imported are kept (a rollback leaves containerd as it is)"
    );
    assert_eq!(
        calls(&c4),
        with(
            &[
                "kubeadm init phase certs apiserver --config /etc/mkstick/kubeadm.yaml".to_string(),
                kubelet("1.36.4"),
                format!("kubeadm upgrade apply v1.37.0 --yes |{KEPT}"),
                PRESENT.to_string(),
                kubelet("1.37.0"),
            ],
            applies(true)
        ),
        "boot 4: the certificate made again, then the upgrade on the old kubelet, then the new one"
    );
    assert!(
        c4.contains("mkstick: SETTINGS NOT APPLIED: pod-cidr is 10.245.0.0/16 in mkstick.toml"),
        "boot 4: the refused setting is on the console"
    );

    // 5. The previous stick (1.36.4) after the upgrade: a downgrade, which
    //    kubeadm cannot do. Refused, nothing touched; the refusal offers
    //    the way back, the snapshot taken before the upgrade, and the
    //    command. The user runs it, as printed.
    stick(
        "1.36.4",
        &[],
        r#"
check apiserver-still-1.37.0 apiserver_at 1.37.0
check kubelet-not-started not systemctl is-active --quiet kubelet
check refusal-at-login grep -q "KUBERNETES NOT STARTED: this stick carries Kubernetes 1.36.4, but the cluster on the data drives runs 1.37.0" /etc/issue.d/50-mkstick-kubernetes.issue
check only-kubeadm-failed test "$(failed_units)" = mkstick-kubeadm.service
way_back=$(sed -n 's/.* run  \(echo [^ ]* | sudo tee [^ ]*\)  and reboot with this stick.*/\1/p' /etc/issue.d/50-mkstick-kubernetes.issue)
check way-back-offered test -n "$way_back"
check way-back-names-the-snapshot test "$(echo "$way_back" | cut -d' ' -f2)" = "$(basename "$(snapshot_before 1.36.4 1.37.0)")"
# As root: sudo is left out (the test OS has none).
sh -c "${way_back/sudo /}" > /dev/null
check restore-asked test -s /var/mnt/data/snapshots/restore
"#,
    );
    let c5 = boot_vm(&s, "mkstick.img", &[&d0], "k8s-5-downgrade-refused");
    assert_eq!(calls(&c5), Vec::<String>::new(), "boot 5: nothing ran");
    assert!(
        c5.contains("mkstick: KUBERNETES NOT STARTED: this stick carries Kubernetes 1.36.4, but the cluster on the data drives runs 1.37.0")
            && c5.contains("Or go back to the cluster as it was before its upgrade from 1.36.4, in the snapshot"),
        "boot 5: the refusal and the way back are on the console"
    );

    // 6. The same stick again, the restore asked for: the cluster's state
    //    is the pre-upgrade snapshot's, byte for byte, Kubernetes 1.36.4
    //    runs, and the state it had is kept in a snapshot of its own.
    stick(
        "1.36.4",
        &[],
        r#"
snap=$(snapshot_before 1.36.4 1.37.0)
check restored-at-login grep -qF "CLUSTER RESTORED: as /var/mnt/data/snapshots/restore asked, the cluster's state was put back from the snapshot $(basename "$snap") (Kubernetes 1.36.4)" /etc/issue.d/50-mkstick-kubernetes.issue
check request-done test ! -e /var/mnt/data/snapshots/restore
check state-as-in-snapshot same_as_snapshot "$snap"
check undo-kept test -n "$(ls -d /var/mnt/data/snapshots/*Z-kubernetes-1.37.0-before-restore)"
check apiserver-1.36.4 apiserver_at 1.36.4
check kubelet-active systemctl is-active --quiet kubelet
check no-failed-units test -z "$(failed_units)"
"#,
    );
    let c6 = boot_vm(&s, "mkstick.img", &[&d0], "k8s-6-restore");
    assert_eq!(
        calls(&c6),
        with(&[kubelet("1.36.4")], applies(true)),
        "boot 6: restored, then the kept cluster starts at 1.36.4"
    );
    assert!(
        c6.contains("mkstick: CLUSTER RESTORED: as /var/mnt/data/snapshots/restore asked"),
        "boot 6: the restore is on the console"
    );

    // 7. The router gives the server another address (a new DHCP lease
    //    from another range): the cluster, bound to 10.0.2.15, is not
    //    started; the console and the login prompt name both addresses
    //    and the fixes; the state on the pool is untouched.
    stick(
        "1.36.4",
        &[],
        r#"
check new-lease test -n "$(ip -o -4 addr show scope global | grep -F 'inet 10.0.3.15/24')"
check refusal-at-login grep -qF "KUBERNETES NOT STARTED: THIS SERVER'S ADDRESS CHANGED. The cluster on the data drives was made at 10.0.2.15, but the server now has 10.0.3.15" /etc/issue.d/50-mkstick-kubernetes.issue
check fix-named grep -qF 'reserve 10.0.2.15 for MAC 52:54:00:12:34:56' /etc/issue.d/50-mkstick-kubernetes.issue
check pool-untouched grep -qx '    kubeadm.kubernetes.io/kube-apiserver.advertise-address.endpoint: 10.0.2.15:6443' /var/mnt/data/state/etc/kubernetes/manifests/kube-apiserver.yaml
check apiserver-still-1.36.4 apiserver_at 1.36.4
check kubelet-not-started not systemctl is-active --quiet kubelet
check only-kubeadm-failed test "$(failed_units)" = mkstick-kubeadm.service
"#,
    );
    let c7 = boot_vm_with(
        &s,
        "mkstick.img",
        &[&d0],
        &["--network", "isolated", "--subnet", "10.0.3.0/24"],
        "k8s-7-new-address",
    );
    assert_eq!(calls(&c7), Vec::<String>::new(), "boot 7: nothing ran");
    assert!(
        c7.contains("mkstick: KUBERNETES NOT STARTED: THIS SERVER'S ADDRESS CHANGED. The cluster on the data drives was made at 10.0.2.15, but the server now has 10.0.3.15")
            && c7.contains("[network] address = \"10.0.2.15/24\" with mac = \"52:54:00:12:34:56\""),
        "boot 7: the refusal is on the console"
    );
}

/// The main boot on the flatcar-like test OS: a first boot on a blank drive
/// inits the cluster and applies the manifests, with mkstick's scripts and
/// the Kubernetes binaries in /opt/bin and nothing under the read-only
/// /usr/local.
#[test]
fn kubeadm_inits_and_applies_the_manifests_on_flatcar() {
    let flavour = Flavour::Flatcar;
    let server = Server::start();
    let reg = TestRegistry::start().expect("docker-registry and skopeo (scripts/setup)");
    let s = Scratch::new("");
    let d0 = blank_drive(&s, "d0");
    let bin_dir = flavour.bin_dir();
    assert_eq!(bin_dir, "/opt/bin");
    build(
        &s,
        flavour,
        (&server, &reg),
        "1.36.4",
        ("", ""),
        // The address DHCP would give, set statically: systemd-networkd
        // applies mkstick's unit, not the test OS's DHCP catch-all (an
        // address without `dynamic`, a route with `proto static`), and the
        // cluster is made at it.
        "mac = \"52:54:00:12:34:56\"\naddress = \"10.0.2.15/24\"\ngateway = \"10.0.2.2\"",
        &[],
        &format!(
            "{INIT_CHECKS}{IMPORTED}check scripts-in-opt-bin test -x {bin_dir}/mkstick-kubernetes -a -x {bin_dir}/mkstick-storage\n\
check no-script-in-usr-local test -z \"$(ls -A /usr/local/bin)\"\n\
check usr-local-read-only sh -c '! touch /usr/local/bin/mkstick-probe'\n\
check static-unit test -s /etc/systemd/network/00-mkstick-static.network\n\
check static-address sh -c 'ip -o -4 addr show scope global | grep -F \"inet 10.0.2.15/24\" | grep -vq dynamic'\n\
check no-dhcp-address not sh -c 'ip -o -4 addr show scope global | grep -q dynamic'\n\
check static-route sh -c 'ip route show default | grep -F \"via 10.0.2.2\" | grep -q \"proto static\"'\n\
check advertised-static grep -qx 'ADVERTISE_ADDRESS=10.0.2.15' /etc/mkstick/kubernetes.env\n"
        ),
    );
    let c1 = boot_vm(&s, "mkstick.img", &[&d0], &flavour.log("k8s-1-init"));
    let init = format!("kubeadm init --config /etc/mkstick/kubeadm.yaml |{KEPT}");
    assert_eq!(
        calls(&c1),
        with(
            &[
                init,
                PRESENT.to_string(),
                "kubelet version=1.36.4 config=yes".to_string(),
            ],
            applies(false)
        ),
        "init once, then every manifest in order"
    );
}
