//! The pinned Kubernetes binaries -> verified files in the download cache.
//!
//! One table, the only place versions and hashes live. The sha256 values are
//! the ones published next to each file: `dl.k8s.io/release/v<ver>/bin/
//! linux/<arch>/<name>.sha256`, `crictl-v<ver>-linux-<arch>.tar.gz.sha256`
//! on the kubernetes-sigs/cri-tools release, and `cni-plugins-linux-<arch>-
//! v<ver>.tgz.sha256` on the containernetworking/plugins release. They were
//! copied from kubernetes-sigs/kubespray
//! `roles/kubespray_defaults/vars/main/checksums.yml` (commit 46dbdd39,
//! 2026-08-21), whose updater reads those same `.sha256` files; kubectl,
//! crictl and the CNI values were cross-checked against other public
//! repositories pinning them. Kubernetes publishes no OpenPGP signatures
//! (its binaries are signed with sigstore), so the sha256 is the check.

use crate::os::cache::{write_atomic, Cache};
use crate::os::download::{Artifact, Downloader};
use crate::os::verify::Digest;
use anyhow::{anyhow, bail, Context, Result};
use std::collections::BTreeMap;

pub const KUBERNETES_VERSION: &str = "1.36.4";
pub const CRICTL_VERSION: &str = "1.36.0";
pub const CNI_PLUGINS_VERSION: &str = "1.9.1";
/// The architectures the table covers; every binary has a hash for each.
pub const ARCHES: &[&str] = &["amd64", "arm64"];

/// Where the files come from; tests point both at 127.0.0.1.
#[derive(Debug, Clone)]
pub struct Mirrors {
    /// `https://dl.k8s.io`
    pub k8s: String,
    /// `https://github.com`
    pub github: String,
}

impl Default for Mirrors {
    fn default() -> Self {
        Mirrors {
            k8s: "https://dl.k8s.io".to_string(),
            github: "https://github.com".to_string(),
        }
    }
}

pub struct Binary {
    pub name: &'static str,
    /// `{k8s}`, `{github}`, `{version}` and `{arch}` are filled in.
    pub url: &'static str,
    pub version: &'static str,
    pub sha256: &'static [(&'static str, &'static str)],
}

pub const BINARIES: &[Binary] = &[
    Binary {
        name: "kubeadm",
        url: "{k8s}/release/v{version}/bin/linux/{arch}/kubeadm",
        version: KUBERNETES_VERSION,
        sha256: &[
            ("amd64", "10d054585907f2c8bb823c84f6a66b3bd2a474c3d795475f04e9a44f78650fe6"),
            ("arm64", "6a849c07d3e1c708f5c40f1ac8be03a56124204dfc7e1931e4113634019c0dad"),
        ],
    },
    Binary {
        name: "kubelet",
        url: "{k8s}/release/v{version}/bin/linux/{arch}/kubelet",
        version: KUBERNETES_VERSION,
        sha256: &[
            ("amd64", "cf2562db46c48ab84cc3791540778ee7fb1a0a008529adbb434723dd02ed8b4b"),
            ("arm64", "fd53ea3fcbd077844f50a3c67e9b52f62972a563674956bab0c0f4fb7ea37d50"),
        ],
    },
    Binary {
        name: "kubectl",
        url: "{k8s}/release/v{version}/bin/linux/{arch}/kubectl",
        version: KUBERNETES_VERSION,
        sha256: &[
            ("amd64", "8b8f088da2dab964f853b38464033b1be15ede2839eca751482357c45abdd05a"),
            ("arm64", "0ecf44450ee6063bf19dd166a103ee6df4a9034455c2abce626e6eea657d73fb"),
        ],
    },
    Binary {
        name: "crictl",
        url: "{github}/kubernetes-sigs/cri-tools/releases/download/v{version}/crictl-v{version}-linux-{arch}.tar.gz",
        version: CRICTL_VERSION,
        sha256: &[
            ("amd64", "83855e114566a8a8c44c548d515670f51de3a5e1da8b2effb59870e2f10c25a3"),
            ("arm64", "68328594ccf780a80ae2b092d9f6ce484eec7cf540c275242e8fd954bfd95332"),
        ],
    },
    Binary {
        name: "cni-plugins",
        url: "{github}/containernetworking/plugins/releases/download/v{version}/cni-plugins-linux-{arch}-v{version}.tgz",
        version: CNI_PLUGINS_VERSION,
        sha256: &[
            ("amd64", "b98f74a0f8522f0a83867178729c1aa70f2158f90c45a2ca8fa791db1c76b303"),
            ("arm64", "56171987d3947707c3563db2f4001bccaf50fd63468611b9f3cbecb1375ee7ec"),
        ],
    },
];

impl Binary {
    pub fn artifact(&self, arch: &str, m: &Mirrors) -> Result<Artifact> {
        let hex = self
            .sha256
            .iter()
            .find(|(a, _)| *a == arch)
            .map(|(_, h)| *h)
            .ok_or_else(|| {
                anyhow!(
                    "no {} for {arch}; mkstick has {}",
                    self.name,
                    ARCHES.join(", ")
                )
            })?;
        let digest = Digest::parse_hex(hex)?;
        if !matches!(digest, Digest::Sha256(_)) {
            bail!("the table's {} hash for {arch} is not a sha256", self.name);
        }
        Ok(Artifact {
            name: format!("{} {}", self.name, self.version),
            url: self
                .url
                .replace("{k8s}", m.k8s.trim_end_matches('/'))
                .replace("{github}", m.github.trim_end_matches('/'))
                .replace("{version}", self.version)
                .replace("{arch}", arch),
            digest,
            signature_url: None,
        })
    }
}

/// Where a Kubernetes release's record sits in the cache.
pub fn record_path(cache: &Cache, arch: &str) -> std::path::PathBuf {
    cache
        .root
        .join("k8s")
        .join(format!("{KUBERNETES_VERSION}-{arch}.json"))
}

/// Fetch every binary for `arch` into the cache, and record which blobs they
/// are (`k8s/<version>-<arch>.json`, name -> sha256). Returns that map.
pub fn fetch(dl: &Downloader, arch: &str, m: &Mirrors) -> Result<BTreeMap<String, String>> {
    fetch_table(dl, BINARIES, arch, m)
}

/// [`fetch`] for any table (tests use one whose hashes match their files).
pub fn fetch_table(
    dl: &Downloader,
    table: &[Binary],
    arch: &str,
    m: &Mirrors,
) -> Result<BTreeMap<String, String>> {
    let mut record = BTreeMap::new();
    for b in table {
        let got = dl.fetch(&b.artifact(arch, m)?, None)?;
        record.insert(b.name.to_string(), got.sha256.to_string());
    }
    let path = record_path(dl.cache, arch);
    let mut json = serde_json::to_vec_pretty(&record).context("writing the Kubernetes record")?;
    json.push(b'\n');
    write_atomic(&path, &json)?;
    Ok(record)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_binary_has_one_sha256_for_every_listed_arch() {
        let m = Mirrors::default();
        let mut urls = std::collections::BTreeSet::new();
        for b in BINARIES {
            assert_eq!(
                b.sha256.len(),
                ARCHES.len(),
                "{}: one hash per arch",
                b.name
            );
            for arch in ARCHES {
                let a = b.artifact(arch, &m).unwrap();
                assert!(matches!(a.digest, Digest::Sha256(_)), "{}", b.name);
                assert!(a.url.starts_with("https://"), "{}", a.url);
                assert!(
                    a.url.contains(arch) && a.url.contains(b.version),
                    "{}",
                    a.url
                );
                assert!(!a.url.contains('{'), "unfilled template: {}", a.url);
                assert!(urls.insert(a.url.clone()), "two binaries share {}", a.url);
            }
        }
        let hashes: std::collections::BTreeSet<_> = BINARIES
            .iter()
            .flat_map(|b| b.sha256.iter().map(|(_, h)| h))
            .collect();
        assert_eq!(
            hashes.len(),
            BINARIES.len() * ARCHES.len(),
            "no hash is repeated"
        );
        assert!(BINARIES[0].artifact("riscv64", &m).is_err());
    }

    #[test]
    fn crictl_matches_the_kubernetes_minor() {
        let minor = |v: &str| v.split('.').take(2).collect::<Vec<_>>().join(".");
        assert_eq!(minor(CRICTL_VERSION), minor(KUBERNETES_VERSION));
    }
}
