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
//!   1. first boot: binaries installed from the stick and checked; `kubeadm
//!      init --config /etc/mkstick/kubeadm.yaml` exactly once, with the kept
//!      paths already bind-mounted from the pool and containerd running
//!      mkstick's config; then every manifest applied in order, after the
//!      CNI config;
//!   2. a reboot with the same stick: no init, the kubelet starts, the
//!      manifests are applied again;
//!   3. a stick with the next minor (1.37.0): the kept kubelet 1.36.4 runs
//!      the control plane, `kubeadm upgrade apply v1.37.0 --yes`, then the
//!      kubelet 1.37.0;
//!   4. a stick that skips a minor (1.39.0): nothing runs, the refusal is on
//!      the console and at the login prompt, the cluster files are untouched.
//!
//! Not proven here (real hardware only): that the real kubeadm, kubelet and
//! images bring up a Ready node, that Traefik answers, that a PVC binds.

use crate::boot::{boot_vm, test_os};
use crate::common::*;
use crate::http::Server;
use crate::kubernetes::{doubles, publish, APP};

const PRELUDE: &str = r#"#!/bin/bash
exec 2>/dev/ttyS0
fail=""
check() { desc="$1"; shift; if ! "$@" >/dev/null 2>&1; then fail="$fail [$desc]"; fi; }
say() { echo "$*" > /dev/ttyS0; }
not() { ! "$@"; }
boot=$(head -c 8 /proc/sys/kernel/random/boot_id)
failed_units() { systemctl list-units --failed --plain --no-legend | awk '{print $1}' | sort | paste -sd' '; }
apiserver_at() { grep -q "image: registry.k8s.io/kube-apiserver:v$1\$" /etc/kubernetes/manifests/kube-apiserver.yaml; }
finish() {
    grep "^boot=$boot " /var/mnt/data/mkstick-test/calls.log 2>/dev/null | sed "s/^boot=$boot /MKSTICK-CALL /" > /dev/ttyS0
    say "--- failed units: $(failed_units)"
    if [ -z "$fail" ]; then say "MKSTICK-BOOT-OK"; else say "MKSTICK-BOOT-FAIL:$fail"; fi
    systemctl poweroff --force
}
"#;

fn fragment(script: &str) -> String {
    crate::boot::check_fragment(
        "mkstick Kubernetes boot test: check",
        "mkstick-kubeadm.service mkstick-addons.service",
        script,
    )
}

/// Build a stick carrying Kubernetes `version` (doubles), with `checks`.
fn build(s: &Scratch, server: &Server, version: &str, checks: &str) {
    s.write(
        &format!("k8s-{version}.toml"),
        &publish(server, version, &doubles(version)),
    );
    s.write(
        "mkstick.toml",
        &format!(
            "[node]\nhostname = \"kube-test\"\nssh-authorized-keys = [\"{KEY}\"]\n\n\
[os]\npath = \"{}\"\n\n[storage]\ndrives = [\"/dev/disk/by-id/virtio-d0\"]\n\
device-timeout-secs = 20\n\n[kubernetes]\nbinaries = \"k8s-{version}.toml\"\n\n\
[extra]\nignition = [\"check.ign\"]\nmanifests = [\"hello.yaml\"]\n",
            test_os().display()
        ),
    );
    s.write("hello.yaml", APP);
    s.write(
        "check.ign",
        &fragment(&format!("{PRELUDE}{checks}finish\n")),
    );
    let cache = s.path("cache");
    ok(s.run_env(
        &["build", "-q", "--force"],
        &[("XDG_CACHE_HOME", cache.to_str().unwrap())],
    ));
    ignition_validate(&embedded_ignition(&s.path("mkstick.img")));
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

const APPLIES: [&str; 3] = [
    "kubectl --kubeconfig /etc/kubernetes/admin.conf apply --server-side --force-conflicts --field-manager=mkstick -f /etc/mkstick/manifests/20-ingress-traefik.yaml |cni:yes",
    "kubectl --kubeconfig /etc/kubernetes/admin.conf apply --server-side --force-conflicts --field-manager=mkstick -f /etc/mkstick/manifests/30-nfs-csi-driver-nfs.yaml |cni:yes",
    "kubectl --kubeconfig /etc/kubernetes/admin.conf apply --server-side --force-conflicts --field-manager=mkstick -f /etc/mkstick/manifests/50-extra-01-hello.yaml |cni:yes",
];
const KEPT: &str = " bound:/etc/kubernetes bound:/var/lib/etcd bound:/var/lib/kubelet bound:/var/lib/containerd containerd:active";

#[test]
fn kubeadm_inits_once_keeps_upgrades_one_minor_and_refuses_a_skip() {
    let server = Server::start();
    let s = Scratch::new("");
    std::fs::File::create(s.path("d0.img"))
        .unwrap()
        .set_len(512 << 20)
        .unwrap();
    let d0 = format!("{},serial=d0", s.path("d0.img").display());

    // 1. First boot: init, then the manifests.
    build(
        &s,
        &server,
        "1.36.4",
        r#"
check binaries-installed test "$(/opt/bin/kubeadm version)" = v1.36.4
check crictl-installed test -x /opt/bin/crictl
check cni-installed test -x /opt/cni/bin/bridge -a -x /opt/cni/bin/portmap
check install-checked-hashes journalctl -b -o cat -u mkstick-kubernetes-install.service --grep "checked against mkstick/manifest.json"
check stick-unmounted not findmnt /run/mkstick/stick
check containerd-cri-ok test "$(ctr plugins ls | awk '$1 == "io.containerd.grpc.v1" && $2 == "cri" { print $NF }')" = ok
check containerd-systemd-cgroup sh -c 'containerd config dump | grep -q "SystemdCgroup = true"'
check cni-config test -s /etc/cni/net.d/10-mkstick.conflist
check apiserver-1.36.4 apiserver_at 1.36.4
check kubelet-kept test "$(cat /var/lib/kubelet/mkstick/version)" = 1.36.4
check kubelet-active systemctl is-active --quiet kubelet
check addons-done journalctl -b -o cat -u mkstick-addons.service --grep "all manifests are applied"
check whoami-example grep -q ReadWriteMany /etc/mkstick/examples/whoami.yaml
check no-failed-units test -z "$(failed_units)"
"#,
    );
    let c1 = boot_vm(&s, "mkstick.img", &[&d0], "k8s-1-init");
    let mut want = vec![
        format!("kubeadm init --config /etc/mkstick/kubeadm.yaml |{KEPT}"),
        "kubelet version=1.36.4 config=yes".to_string(),
    ];
    want.extend(APPLIES.iter().map(|a| a.to_string()));
    assert_eq!(
        calls(&c1),
        want,
        "boot 1: init once, then every manifest in order"
    );

    // 2. Reboot, same stick: no init.
    let c2 = boot_vm(&s, "mkstick.img", &[&d0], "k8s-2-reboot");
    let mut want = vec!["kubelet version=1.36.4 config=yes".to_string()];
    want.extend(APPLIES.iter().map(|a| a.to_string()));
    assert_eq!(calls(&c2), want, "boot 2: the kept cluster starts; no init");
    assert!(c2.contains("runs Kubernetes 1.36.4, as this stick does: starting the kubelet"));

    // 3. The next minor: upgrade, old kubelet first.
    build(
        &s,
        &server,
        "1.37.0",
        r#"
check apiserver-1.37.0 apiserver_at 1.37.0
check kubelet-kept test "$(cat /var/lib/kubelet/mkstick/version)" = 1.37.0
check kubelet-binary-new sh -c '/opt/bin/kubelet --version | grep -qx "Kubernetes v1.37.0"'
check no-failed-units test -z "$(failed_units)"
"#,
    );
    let c3 = boot_vm(&s, "mkstick.img", &[&d0], "k8s-3-upgrade");
    let mut want = vec![
        "kubelet version=1.36.4 config=yes".to_string(),
        format!("kubeadm upgrade apply v1.37.0 --yes |{KEPT}"),
        "kubelet version=1.37.0 config=yes".to_string(),
    ];
    want.extend(APPLIES.iter().map(|a| a.to_string()));
    assert_eq!(
        calls(&c3),
        want,
        "boot 3: upgrade on the old kubelet, then the new one"
    );

    // 4. Skipping a minor: refused, nothing touched.
    build(
        &s,
        &server,
        "1.39.0",
        r#"
check apiserver-still-1.37.0 apiserver_at 1.37.0
check kubelet-not-started not systemctl is-active --quiet kubelet
check refusal-at-login grep -q "KUBERNETES NOT STARTED: this stick carries Kubernetes 1.39.0, but the cluster on the data drives runs 1.37.0" /etc/issue.d/50-mkstick-kubernetes.issue
check only-kubeadm-failed test "$(failed_units)" = mkstick-kubeadm.service
"#,
    );
    let c4 = boot_vm(&s, "mkstick.img", &[&d0], "k8s-4-refuse");
    assert_eq!(calls(&c4), Vec::<String>::new(), "boot 4: nothing ran");
    assert!(
        c4.contains("mkstick: KUBERNETES NOT STARTED: this stick carries Kubernetes 1.39.0, but the cluster on the data drives runs 1.37.0")
            && c4.contains("Boot a stick built with Kubernetes 1.38.x (or 1.37.0) to go on"),
        "boot 4: the refusal is on the console"
    );
}
