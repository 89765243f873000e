//! `config`: a `mkstick.toml` through what `mkstick check --os-dir DIR`
//! does with it, without the network: load and parse (TOML and every
//! newtype), the Kubernetes checks, `[os]`, the plan (storage, extra
//! Ignition, manifests), the payload, the plan's description and the OS
//! files' hashes. The Kubernetes binaries count as fetched: the table's
//! entries point at one small file.
//!
//! The config sits in a directory holding the files the seeds name
//! (`demo.ign`, `motd.ign`, `k8s.toml`, `apps/`, `os/`), so relative paths
//! in it resolve to real files.

use crate::Seed;
use anyhow::{Context, Result};
use mkstick::os::kubernetes::CachedBinary;
use mkstick::plan::{PlanArgs, SeedChoice};
use std::path::{Path, PathBuf};
use std::sync::OnceLock;

struct Env {
    config: PathBuf,
    os_dir: PathBuf,
    binary: PathBuf,
}

fn env() -> &'static Env {
    static ENV: OnceLock<Env> = OnceLock::new();
    ENV.get_or_init(|| setup().expect("setting up the config target's directory"))
}

fn setup() -> Result<Env> {
    let dir = crate::scratch().join("config");
    std::fs::create_dir_all(dir.join("apps"))?;
    let repo = crate::repo_root();
    // The files the seed configs name, next to the config.
    for src in [
        "scripts/demo.d/demo.ign",
        "tests/golden/full/input/motd.ign",
    ] {
        let p = repo.join(src);
        if let Ok(bytes) = std::fs::read(&p) {
            std::fs::write(dir.join(p.file_name().expect("a file name")), bytes)?;
        }
    }
    std::fs::write(dir.join("apps/app.yaml"), APP)?;
    std::fs::write(dir.join("k8s.toml"), binaries_table("1.37.0"))?;
    let os_dir = dir.join("os");
    fake_os_dir(&os_dir)?;
    let binary = dir.join("binary");
    std::fs::write(&binary, b"#!/bin/sh\n")?;
    Ok(Env {
        config: dir.join("mkstick.toml"),
        os_dir,
        binary,
    })
}

/// A small OS directory shaped like the Debian test OS's.
pub fn fake_os_dir(dir: &Path) -> Result<()> {
    std::fs::create_dir_all(dir.join("efi/EFI/BOOT"))?;
    let sha = |b: &[u8]| mkstick::io::Sha256Digest::of(b).to_string();
    let files: [(&str, &[u8]); 4] = [
        ("vmlinuz", b"kernel"),
        ("initramfs.img", b"initramfs"),
        ("rootfs.img", b"rootfs"),
        ("efi/EFI/BOOT/BOOTX64.EFI", b"MZ shim"),
    ];
    for (p, b) in files {
        std::fs::write(dir.join(p), b)?;
    }
    let json = serde_json::json!({
        "format": 1,
        "id": "debian-test-os",
        "name": "Fake OS",
        "version": "1.0",
        "kernel": {"path": "vmlinuz", "sha256": sha(b"kernel")},
        "initramfs": {"path": "initramfs.img", "sha256": sha(b"initramfs")},
        "rootfs": {"path": "rootfs.img", "sha256": sha(b"rootfs")},
        "efi": {"dir": {"path": "efi", "files": [
            {"path": "EFI/BOOT/BOOTX64.EFI", "sha256": sha(b"MZ shim")}
        ]}},
        "grub-cfg": ["EFI/BOOT/grub.cfg"],
        "kernel-args": ["ignition.firstboot", "ignition.platform.id=metal"],
        "ignition-config-path": "config.ign",
    });
    std::fs::write(dir.join("os.json"), serde_json::to_vec_pretty(&json)?)?;
    Ok(())
}

pub fn run(data: &[u8]) {
    let Ok(text) = std::str::from_utf8(data) else {
        return; // `mkstick check` refuses a config that is not UTF-8 on reading it
    };
    let env = env();
    std::fs::write(&env.config, text).expect("writing the config into the scratch directory");
    let _ = check(env);
}

/// What [`run`] makes of one config: `Ok` when `mkstick check` would pass.
pub fn check_text(text: &str) -> Result<()> {
    let env = env();
    std::fs::write(&env.config, text)?;
    check(env)
}

/// `mkstick check`, as `lib.rs` runs it, with `--os-dir` and no downloads.
fn check(env: &Env) -> Result<()> {
    let loaded = mkstick::config::load(&env.config)?;
    let mut checked = mkstick::plan::check_config(&loaded)?;
    // No registry here: the images are left out (as a table without
    // `images` does), so the rest of a Kubernetes plan is still rendered.
    if let Some(k) = checked.kubernetes.as_mut() {
        k.table.images.clear();
    }
    // `--os-dir` skips `[os]`; check it anyway, as a run without it would.
    let _ = mkstick::os::source::OsSource::from_config(&loaded, None);
    let kubernetes_binaries = match &checked.kubernetes {
        None => Vec::new(),
        Some(k) => k
            .table
            .files
            .iter()
            .map(|f| CachedBinary {
                name: f.name.clone(),
                version: f.version.clone(),
                path: env.binary.clone(),
                sha256: f.sha256,
                size_bytes: 10,
            })
            .collect(),
    };
    let plan = mkstick::plan::plan(
        &loaded,
        checked,
        &PlanArgs {
            os_dir: env.os_dir.clone(),
            kubernetes_binaries,
            images: Vec::new(),
            seed: SeedChoice::Derived,
            source_date_epoch: None,
        },
    )?;
    let payload = mkstick::payload::render(&plan)?;
    let _ = mkstick::describe::describe(&plan, &payload);
    plan.os.verify(|_| {})?;
    Ok(())
}

pub const APP: &str = "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: hello\n  namespace: default\ndata:\n  greeting: hi\n";

/// A binaries table (`[kubernetes] binaries`) for `version`.
pub fn binaries_table(version: &str) -> String {
    let mut t = format!("kubernetes = \"{version}\"\narch = \"amd64\"\n");
    for (i, name) in ["kubeadm", "kubelet", "kubectl", "crictl", "cni-plugins"]
        .iter()
        .enumerate()
    {
        t.push_str(&format!(
            "\n[{name}]\nurl = \"https://example.org/v{version}/{name}\"\nsha256 = \"{}\"\n",
            format!("{i:x}{i:x}").repeat(32)
        ));
    }
    t
}

pub fn seeds(repo: &Path) -> Result<Vec<Seed>> {
    let mut out = Vec::new();
    let mut configs = crate::files_under(&repo.join("tests/golden"), &["mkstick.toml"]);
    configs.extend(crate::files_under(
        &repo.join("scripts/demo.d"),
        &["mkstick.toml"],
    ));
    for p in configs {
        let bytes = std::fs::read(&p).with_context(|| format!("reading {}", p.display()))?;
        out.push((crate::seed_name("", repo, &p), bytes));
    }
    let key = crate::SSH_KEY;
    out.push((
        "starter-with-key.toml".into(),
        mkstick::config::starter_config(Some(key)).into_bytes(),
    ));
    out.push((
        "starter-without-key.toml".into(),
        mkstick::config::starter_config(None).into_bytes(),
    ));
    let base = format!("[node]\nhostname = \"kube1\"\nssh-authorized-keys = [\"{key}\"]\n\n");
    out.push((
        "kubernetes.toml".into(),
        format!(
            "{base}[os]\npath = \"os\"\n\n\
[storage]\ndrives = [\"/dev/disk/by-id/virtio-d0\"]\n\n\
[kubernetes]\nbinaries = \"k8s.toml\"\nadvertise-address = \"192.168.1.10\"\napi-server-sans = [\"kube1.lab\", \"10.0.0.5\"]\n\n\
[ingress]\nhttp-port = 8080\nhttps-port = 8443\n\n\
[nfs]\nstorage-class = \"shared\"\n\n\
[extra]\nmanifests = [\"apps\"]\n"
        )
        .into_bytes(),
    ));
    out.push((
        "kubernetes-pinned.toml".into(),
        format!(
            "{base}[storage]\ndrives = [\"/dev/disk/by-id/virtio-d0\", \"/dev/disk/by-id/virtio-d1\"]\n\n\
[kubernetes]\nversion = \"{}\"\npod-cidr = \"10.244.0.0/16\"\nservice-cidr = \"10.96.0.0/12\"\ncluster-name = \"home\"\n\n\
[ingress]\ncontroller = \"none\"\n\n[nfs]\ndefault = false\nreclaim-policy = \"Retain\"\n",
            mkstick::os::kubernetes::KUBERNETES_VERSION
        )
        .into_bytes(),
    ));
    out.push((
        "flatcar.toml".into(),
        format!(
            "{base}[os]\ndistro = \"flatcar\"\nchannel = \"beta\"\nversion = \"4459.2.1\"\nrelease-url = \"https://beta.release.flatcar-linux.net/amd64-usr\"\nstream-url = \"https://builds.coreos.fedoraproject.org/streams/stable.json\"\n\n\
[boot]\nkernel-args = [\"quiet\", \"loglevel=3\"]\nserial-console = false\n"
        )
        .into_bytes(),
    ));
    out.push((
        "password.toml".into(),
        "[node]\nhostname = \"nas-01.lab\"\npassword-hash = \"$y$j9T$abcdefghijklmnopqrstuvwxyz\"\ntimezone = \"Europe/Berlin\"\n\n[extra]\nignition = [\"motd.ign\"]\n"
            .to_string()
            .into_bytes(),
    ));
    Ok(out)
}
