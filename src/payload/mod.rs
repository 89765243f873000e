//! Stage 2 (render): [`Plan`] -> [`Payload`], every file of the EFI
//! partition with its size and sha256, in path order. Small files are
//! rendered into memory; the OS's big files stay on disk until `assemble`
//! streams them.

pub mod grub;
pub mod images;

use crate::formats::initrd;
use crate::ignition;
use crate::io::Sha256Digest;
use crate::plan::{Plan, MKSTICK_VERSION};
use anyhow::{bail, Result};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::path::PathBuf;

/// Where the stick keeps its manifest, config copy and config initrd.
pub const MANIFEST_PATH: &str = "mkstick/manifest.json";
pub const CONFIG_COPY_PATH: &str = "mkstick/config.toml";
pub const README_PATH: &str = "README.txt";

#[derive(Debug, Clone)]
pub struct Payload {
    pub ignition: ignition::Config,
    pub ignition_json: Vec<u8>,
    /// Every file, sorted by path, `mkstick/manifest.json` included.
    pub files: Vec<EspFile>,
}

#[derive(Debug, Clone)]
pub struct EspFile {
    /// `/`-separated path on the EFI partition, no leading slash.
    pub path: String,
    pub size_bytes: u64,
    pub sha256: Sha256Digest,
    pub source: Source,
    pub region: Region,
}

/// Which part of the FAT a file goes to ([`crate::image`] places them): the
/// files that come with the OS, large and changed only by a new OS or
/// Kubernetes release, or the small files a config change rewrites.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Region {
    Os,
    Config,
}

#[derive(Debug, Clone)]
pub enum Source {
    Bytes(Vec<u8>),
    /// A file of the OS directory; its sha256 is checked while it is copied.
    Os(PathBuf),
}

/// `mkstick/manifest.json`: what is on the stick, so it can be verified.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case", deny_unknown_fields)]
pub struct StickManifest {
    pub mkstick_version: String,
    pub os: ManifestOs,
    pub seed: String,
    pub files: BTreeMap<String, ManifestFile>,
    /// The container images under `mkstick/images/` (containerd's) and
    /// `mkstick/nfs-image/` (podman's), each with the digest
    /// it was pulled at, and whether a pin named that digest (a tag alone
    /// in a user's manifest is resolved at build time).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub images: Vec<ManifestImage>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case", deny_unknown_fields)]
pub struct ManifestImage {
    /// `NAME:TAG@sha256:DIGEST`.
    pub reference: String,
    pub pinned: bool,
    /// The binaries table, or the manifest and line that names it.
    pub named_in: String,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case", deny_unknown_fields)]
pub struct ManifestOs {
    pub id: String,
    pub name: String,
    pub version: String,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case", deny_unknown_fields)]
pub struct ManifestFile {
    pub size_bytes: u64,
    pub sha256: Sha256Digest,
}

pub(crate) fn bytes_file(path: &str, bytes: Vec<u8>, region: Region) -> EspFile {
    EspFile {
        path: path.to_string(),
        size_bytes: bytes.len() as u64,
        sha256: Sha256Digest::of(&bytes),
        source: Source::Bytes(bytes),
        region,
    }
}

/// Ignition fails the boot on a file, directory or link under a tree the
/// OS mounts read-only (`/usr` on Fedora CoreOS and Flatcar, where only
/// Fedora CoreOS links `/usr/local` to `/var`): refuse it now, naming it
/// and the OS. Covers mkstick's own files and those of `[extra] ignition`
/// fragments (merged by Ignition on the server, so read here).
fn check_writable(plan: &Plan, config: &ignition::Config) -> Result<()> {
    let m = &plan.os.manifest;
    let st = &config.storage;
    let own = st
        .files
        .iter()
        .map(|f| &f.path)
        .chain(st.directories.iter().map(|d| &d.path))
        .chain(st.links.iter().map(|l| &l.path))
        .map(|p| (p.clone(), "mkstick".to_string()));
    let mut paths: Vec<(String, String)> = own.collect();
    for x in &plan.extra_ignition {
        let fragment: serde_json::Value = serde_json::from_slice(&x.contents).unwrap_or_default();
        for kind in ["files", "directories", "links"] {
            let entries = fragment
                .pointer(&format!("/storage/{kind}"))
                .and_then(|v| v.as_array());
            for e in entries.into_iter().flatten() {
                if let Some(p) = e.get("path").and_then(|p| p.as_str()) {
                    paths.push((p.to_string(), format!("[extra] ignition {}", x.name)));
                }
            }
        }
    }
    for (path, from) in paths {
        if let Some(tree) = m.read_only_tree(&path) {
            bail!(
                "{from}: {path} is under {tree}, which {} mounts read-only, so Ignition would fail the boot; put it under /etc, /var or /opt (programs: {})",
                m.name,
                m.bin_dir
            );
        }
    }
    Ok(())
}

pub fn render(plan: &Plan) -> Result<Payload> {
    let config = ignition::render(plan);
    check_writable(plan, &config)?;
    let ignition_json = ignition::to_json(&config);
    let m = &plan.os.manifest;

    let mut files: BTreeMap<String, EspFile> = BTreeMap::new();
    for f in &plan.efi_files {
        files.insert(
            f.esp_path.clone(),
            bytes_file(&f.esp_path, f.contents.clone(), Region::Os),
        );
    }
    // Our grub.cfg replaces any the OS ships (FCOS's efiboot.img has one for its ISO).
    let title = format!("{} {}", m.name, m.version);
    let grub_cfg = grub::config(&grub::GrubArgs {
        title: &title,
        volume_id: plan.ids.volume_id,
        serial_console: plan.serial_console,
        kernel_args: &plan.kernel_args,
        rootfs: plan.rootfs.is_some(),
        secure_boot_unsupported: m.secure_boot_unsupported.as_deref(),
    });
    for p in &m.grub_cfg {
        files.insert(
            p.clone(),
            bytes_file(p, grub_cfg.clone().into_bytes(), Region::Config),
        );
    }
    let mut own = vec![
        bytes_file(
            grub::CONFIG_INITRD,
            initrd::wrap(&m.ignition_config_path, &ignition_json),
            Region::Config,
        ),
        bytes_file(
            CONFIG_COPY_PATH,
            plan.redacted_config.clone().into_bytes(),
            Region::Config,
        ),
        bytes_file(README_PATH, readme(plan).into_bytes(), Region::Config),
    ];
    let os_files = [
        (grub::KERNEL, Some(&plan.kernel)),
        (grub::INITRAMFS, Some(&plan.initramfs)),
        (grub::ROOTFS, plan.rootfs.as_ref()),
    ];
    // The Kubernetes binaries, installed from the stick at every boot.
    for b in &plan.kubernetes_binaries {
        own.push(EspFile {
            path: crate::os::kubernetes::stick_path(&b.name),
            size_bytes: b.size_bytes,
            sha256: b.sha256,
            source: Source::Os(b.path.clone()),
            region: Region::Os,
        });
    }
    // The container images, imported into containerd at boot, and the NFS
    // server's, loaded into podman.
    own.extend(images::layout(&plan.images));
    own.extend(images::nfs_layout(plan.nfs_image.as_ref().map(|(_, p)| p)));
    for (path, f) in os_files
        .into_iter()
        .filter_map(|(path, f)| f.map(|f| (path, f)))
    {
        own.push(EspFile {
            path: path.to_string(),
            size_bytes: f.size_bytes,
            sha256: f.sha256,
            source: Source::Os(f.path.clone()),
            region: Region::Os,
        });
    }
    for f in own {
        if files.contains_key(&f.path) {
            bail!(
                "the OS's EFI files include {}, which mkstick writes itself; remove it from os.json",
                f.path
            );
        }
        files.insert(f.path.clone(), f);
    }

    let manifest = StickManifest {
        mkstick_version: MKSTICK_VERSION.to_string(),
        os: ManifestOs {
            id: m.id.clone(),
            name: m.name.clone(),
            version: m.version.clone(),
        },
        seed: plan.ids.seed_hex(),
        files: files
            .values()
            .map(|f| {
                (
                    f.path.clone(),
                    ManifestFile {
                        size_bytes: f.size_bytes,
                        sha256: f.sha256,
                    },
                )
            })
            .collect(),
        images: plan
            .carried_images()
            .into_iter()
            .chain(plan.nfs_image.as_ref().map(|(w, p)| (w.clone(), p)))
            .map(|(w, p)| ManifestImage {
                reference: p.reference.to_string(),
                pinned: w.pinned,
                named_in: w.named_in,
            })
            .collect(),
    };
    let mut manifest_json = serde_json::to_vec_pretty(&manifest)?;
    manifest_json.push(b'\n');
    files.insert(
        MANIFEST_PATH.to_string(),
        bytes_file(MANIFEST_PATH, manifest_json, Region::Config),
    );

    Ok(Payload {
        ignition: config,
        ignition_json,
        files: files.into_values().collect(),
    })
}

impl Payload {
    pub fn ignition_sha256(&self) -> Sha256Digest {
        Sha256Digest::of(&self.ignition_json)
    }

    pub fn total_bytes(&self) -> u64 {
        self.files.iter().map(|f| f.size_bytes).sum()
    }

    /// Every directory that holds a file, parents before children.
    pub fn dirs(&self) -> Vec<String> {
        let mut dirs = std::collections::BTreeSet::new();
        for f in &self.files {
            let parts: Vec<&str> = f.path.split('/').collect();
            for i in 1..parts.len() {
                dirs.insert(parts[..i].join("/"));
            }
        }
        dirs.into_iter().collect()
    }
}

fn readme(plan: &Plan) -> String {
    let m = &plan.os.manifest;
    format!(
        "This USB stick boots the server {host} into {name} {version}.\n\
\n\
The OS runs live, from RAM: /etc and /var start fresh at every boot, and\n\
Ignition applies the server's settings again each time. To change them,\n\
edit mkstick.toml, rebuild the stick and boot from it again.\n\
\n\
To use it, plug it into the server and boot from USB in UEFI mode.\n\
\n\
What is on it:\n\
  EFI/                  the boot loader\n\
  os/                   the kernel, the initramfs and the root filesystem\n\
  mkstick/ignition.img  the server's Ignition config: it holds the SSH keys\n\
                        and any password hash, so keep the stick as safe as\n\
                        a key to the server\n\
  mkstick/config.toml   the mkstick.toml it was built from, secrets removed\n\
  mkstick/manifest.json the sha256 of every file; `mkstick inspect --verify`\n\
                        checks them\n\
{k8s}\
\n\
Made by mkstick {MKSTICK_VERSION}.\n",
        host = plan.node.hostname,
        k8s = match &plan.kubernetes {
            Some(k) => format!(
                "  k8s/                  Kubernetes {} (kubeadm, kubelet, kubectl, crictl,\n\
                        CNI plugins): the server installs them from here at\n\
                        every boot, so leave the stick plugged in\n",
                k.version
            ),
            None => String::new(),
        },
        name = m.name,
        version = m.version,
    )
}
