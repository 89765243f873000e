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

use super::cache::{write_atomic, Cache};
use super::download::{Artifact, Downloader};
use super::verify::Digest;
use crate::config::kubernetes::KubeVersion;
use crate::config::SourceError;
use crate::io::Sha256Digest;
use anyhow::{anyhow, bail, Context, Result};
use serde::Deserialize;
use std::collections::BTreeMap;
use std::path::Path;
use toml::Spanned;

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

/// The names a table must give, in the order they are fetched and listed.
pub const NAMES: [&str; 5] = ["kubeadm", "kubelet", "kubectl", "crictl", "cni-plugins"];

/// One release's files for one architecture: what goes onto the stick.
#[derive(Debug, Clone, PartialEq)]
pub struct Table {
    pub kubernetes: KubeVersion,
    pub arch: String,
    /// In [`NAMES`] order.
    pub files: Vec<TableFile>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct TableFile {
    pub name: String,
    pub version: String,
    pub url: String,
    pub sha256: Sha256Digest,
}

impl TableFile {
    /// Where the file sits on the stick's EFI partition.
    pub fn stick_path(&self) -> String {
        stick_path(&self.name)
    }

    pub fn artifact(&self) -> Artifact {
        Artifact {
            name: format!("{} {}", self.name, self.version),
            url: self.url.clone(),
            digest: Digest::Sha256(self.sha256.0),
            signature_url: None,
        }
    }
}

/// `k8s/kubeadm`, …, `k8s/crictl.tar.gz`, `k8s/cni-plugins.tgz`.
pub fn stick_path(name: &str) -> String {
    match name {
        "crictl" => "k8s/crictl.tar.gz".to_string(),
        "cni-plugins" => "k8s/cni-plugins.tgz".to_string(),
        n => format!("k8s/{n}"),
    }
}

impl Binary {
    pub fn artifact(&self, arch: &str, m: &Mirrors) -> Result<Artifact> {
        Ok(self.table_file(arch, m)?.artifact())
    }

    fn table_file(&self, arch: &str, m: &Mirrors) -> Result<TableFile> {
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
        let Digest::Sha256(sha) = Digest::parse_hex(hex)? else {
            bail!("the table's {} hash for {arch} is not a sha256", self.name);
        };
        Ok(TableFile {
            name: self.name.to_string(),
            version: self.version.to_string(),
            url: self
                .url
                .replace("{k8s}", m.k8s.trim_end_matches('/'))
                .replace("{github}", m.github.trim_end_matches('/'))
                .replace("{version}", self.version)
                .replace("{arch}", arch),
            sha256: Sha256Digest(sha),
        })
    }
}

impl Table {
    /// mkstick's own pinned release, when `version` is it.
    pub fn builtin(version: KubeVersion, arch: &str, m: &Mirrors) -> Result<Table, String> {
        let pinned: KubeVersion = KUBERNETES_VERSION
            .parse()
            .expect("the pinned version parses");
        if version != pinned {
            return Err(format!(
                "mkstick pins the binaries of Kubernetes {pinned} only, not {version}; use version = \"{pinned}\", or name a table of {version}'s binaries (URL and sha256 each) with binaries = \"k8s-{version}.toml\" (see README.md, \"Other Kubernetes versions\")"
            ));
        }
        Self::from_static(BINARIES, arch, m).map_err(|e| format!("{e:#}"))
    }

    /// A table of `&'static` entries (the pinned one, or a test's).
    pub fn from_static(table: &[Binary], arch: &str, m: &Mirrors) -> Result<Table> {
        let kubernetes = table
            .iter()
            .find(|b| b.name == "kubeadm")
            .ok_or_else(|| anyhow!("the table has no kubeadm"))?
            .version
            .parse()
            .map_err(|e: String| anyhow!(e))?;
        Ok(Table {
            kubernetes,
            arch: arch.to_string(),
            files: table
                .iter()
                .map(|b| b.table_file(arch, m))
                .collect::<Result<_>>()?,
        })
    }

    /// A table file the user wrote (`[kubernetes] binaries`); `path` is
    /// only used in error messages.
    pub fn parse(path: &Path, text: &str) -> Result<Table, SourceError> {
        #[derive(Deserialize)]
        #[serde(deny_unknown_fields, rename_all = "kebab-case")]
        struct File {
            kubernetes: KubeVersion,
            arch: Spanned<String>,
            kubeadm: Entry,
            kubelet: Entry,
            kubectl: Entry,
            crictl: Entry,
            cni_plugins: Entry,
        }
        #[derive(Deserialize)]
        #[serde(deny_unknown_fields)]
        struct Entry {
            url: Spanned<String>,
            sha256: Spanned<String>,
            version: Option<String>,
        }
        let f: File = toml::from_str(text).map_err(|e| {
            let at = e.span().map_or(0, |s| s.start);
            SourceError::at(path, text, at, crate::config::explain(e.message()))
        })?;
        let at = |span: std::ops::Range<usize>, msg: String| {
            SourceError::at(path, text, span.start, msg)
        };
        if !ARCHES.contains(&f.arch.get_ref().as_str()) {
            return Err(at(
                f.arch.span(),
                format!(
                    "arch `{}` is not one mkstick builds for; use one of {}",
                    f.arch.get_ref(),
                    ARCHES.join(", ")
                ),
            ));
        }
        let mut files = Vec::new();
        for (name, e) in
            NAMES
                .iter()
                .zip([f.kubeadm, f.kubelet, f.kubectl, f.crictl, f.cni_plugins])
        {
            super::source::check_url(e.url.get_ref()).map_err(|m| at(e.url.span(), m))?;
            let Ok(Digest::Sha256(sha)) = Digest::parse_hex(e.sha256.get_ref()) else {
                return Err(at(
                    e.sha256.span(),
                    format!("{name}'s sha256 must be 64 hex digits, as in the `.sha256` file published next to it"),
                ));
            };
            files.push(TableFile {
                name: name.to_string(),
                version: e.version.unwrap_or_else(|| f.kubernetes.to_string()),
                url: e.url.into_inner(),
                sha256: Sha256Digest(sha),
            });
        }
        Ok(Table {
            kubernetes: f.kubernetes,
            arch: f.arch.into_inner(),
            files,
        })
    }
}

/// Where a Kubernetes release's record sits in the cache.
pub fn record_path(cache: &Cache, table: &Table) -> std::path::PathBuf {
    cache
        .root
        .join("k8s")
        .join(format!("{}-{}.json", table.kubernetes, table.arch))
}

/// A binary in the cache, checked against its table.
#[derive(Debug, Clone, PartialEq)]
pub struct CachedBinary {
    pub name: String,
    pub version: String,
    pub path: std::path::PathBuf,
    pub sha256: Sha256Digest,
    pub size_bytes: u64,
}

/// Fetch every file of `table` into the cache, and record which blobs they
/// are (`k8s/<version>-<arch>.json`, name -> sha256), so `cache prune`
/// keeps them.
pub fn fetch(dl: &Downloader, table: &Table) -> Result<Vec<CachedBinary>> {
    let mut out = Vec::new();
    let mut record = BTreeMap::new();
    for f in &table.files {
        let got = dl.fetch(&f.artifact(), None)?;
        record.insert(f.name.clone(), got.sha256.to_string());
        out.push(CachedBinary {
            name: f.name.clone(),
            version: f.version.clone(),
            path: got.path,
            sha256: got.sha256,
            size_bytes: got.size_bytes,
        });
    }
    let path = record_path(dl.cache, table);
    let mut json = serde_json::to_vec_pretty(&record).context("writing the Kubernetes record")?;
    json.push(b'\n');
    write_atomic(&path, &json)?;
    Ok(out)
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
