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
use super::registry::Reference;
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

/// kubeadm's images, named by the last part of their repository, in the
/// order of kubeadm's `GetControlPlaneImages` (kubernetes/kubernetes
/// `cmd/kubeadm/app/images/images.go`). kubeadm derives their names from
/// its config: `<imageRepository>/kube-*:v<version>`,
/// `<imageRepository>/pause:<its PauseVersion>`, and CoreDNS and etcd from
/// their own `imageRepository` and `imageTag` (set from the table).
pub const KUBEADM_IMAGES: [&str; 7] = [
    "kube-apiserver",
    "kube-controller-manager",
    "kube-scheduler",
    "kube-proxy",
    "coredns",
    "pause",
    "etcd",
];

/// The four images whose tag is the Kubernetes version itself.
const KUBE_TAGGED: [&str; 4] = [
    "kube-apiserver",
    "kube-controller-manager",
    "kube-scheduler",
    "kube-proxy",
];

/// The images `manifests/` uses, by the last part of their repository,
/// with mkstick's pins; the manifests take their references from here
/// (`{{image_<name>}}`, dashes as underscores). Traefik's digest was checked
/// against Docker Hub, the csi-driver-nfs ones copied from its release's
/// manifests (manifests/RESEARCH.md §1a).
pub const ADDON_IMAGES: [(&str, &str); 6] = [
    ("traefik", "docker.io/library/traefik:v3.7.13@sha256:24841fe2de7304c149343d877d2923b4c8800a38ba015dea9174c23b20e344a0"),
    ("csi-provisioner", "registry.k8s.io/sig-storage/csi-provisioner:v6.3.0@sha256:a4b0b1a37605b7b04a293e136edf7006ec1786a8eb3f4e5a945f81d667dcc371"),
    ("csi-resizer", "registry.k8s.io/sig-storage/csi-resizer:v2.2.0@sha256:a2d40c1c3ccb0c48b467125a6652c4dd5dcbf0d295641c9989581cfc690f6cf3"),
    ("livenessprobe", "registry.k8s.io/sig-storage/livenessprobe:v2.19.0@sha256:06da0d5b8908072f2e4522692aee8dc119fba7247a9658497e1153992cd777e9"),
    ("nfsplugin", "registry.k8s.io/sig-storage/nfsplugin:v4.13.4@sha256:1eb5a85180a4ad0193a31d319b163f35c8c1857794ebaac71d8abcdd5a0516d3"),
    ("csi-node-driver-registrar", "registry.k8s.io/sig-storage/csi-node-driver-registrar:v2.17.0@sha256:f9de845b170155199f2a2a3f9531cf13d78e31235e9db6b6582a8b0db0a50dad"),
];

/// The image of the NFS server container, on an OS that ships no NFS
/// server (Fedora CoreOS; [`crate::os::NfsServer::Container`]), by the
/// last part of its repository. A table may list it, and must when it lists
/// images and the stick is for such an OS, so that a mirror serves it too;
/// without a table, mkstick's own reference is used
/// ([`crate::plan::storage::NFS_CONTAINER_IMAGE`]).
pub const NFS_IMAGE_ROLE: &str = "nfs";

/// kubeadm's images for [`KUBERNETES_VERSION`], pinned by the digest of the
/// index each tag names. The tags are kubeadm 1.36's (`kubeadm config
/// images list`; etcd and pause agree with kubespray @46dbdd39
/// `download.yml`). The digests could not be read from the registry here;
/// each was found pinned by at least two independent public projects
/// (etcd and pause by four or more; kube-proxy by one, plus a `docker
/// images` listing showing its prefix). The build checks every one: the
/// registry's bytes for the tag must hash to it, so a wrong pin fails the
/// build on the builder's machine, never on the server.
pub const KUBEADM_IMAGE_PINS: [&str; 7] = [
    "registry.k8s.io/kube-apiserver:v1.36.4@sha256:cfcdb01653308b975d589b528bfafe54011dfae925d85059177d95963a622748",
    "registry.k8s.io/kube-controller-manager:v1.36.4@sha256:232878d552ad5395562c8a9091a6c963f897ffbcf08f39be8f57ba8776bb3821",
    "registry.k8s.io/kube-scheduler:v1.36.4@sha256:7d84d58f091f16399673c87ccf579de50ac6ede39a2d6b82946c2dd5d7838ffc",
    "registry.k8s.io/kube-proxy:v1.36.4@sha256:b33fcdd8319290736e566f5fc2225ca07d3c2dfc025fb006342791aa31be4603",
    "registry.k8s.io/coredns/coredns:v1.14.2@sha256:e7e6440cfd1e919280958f5b5a6ab2b184d385bba774c12ad2a9e1e4183f90d9",
    "registry.k8s.io/pause:3.10.2@sha256:f548e0e8e3dc1896ca956272154dde3314e8cc4fde0a57577ee9fa1c63f5baf4",
    "registry.k8s.io/etcd:3.6.8-0@sha256:397189418d1a00e500c0605ad18d1baf3b541a1004d768448c367e48071622e5",
];

/// kubeadm 1.36's pause image (kubeadm `constants.PauseVersion`; also
/// containerd's own default since 2.2, `internal/cri/config/config.go`).
/// containerd's sandbox image is set to it when the table carries no
/// images, so the CRI and kubeadm agree on one pause.
pub const DEFAULT_PAUSE_IMAGE: &str = "registry.k8s.io/pause:3.10.2";

/// One pinned image of a table: `NAME:TAG@sha256:DIGEST`.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct TableImage {
    pub reference: Reference,
}

impl TableImage {
    /// The last part of the repository: `kube-apiserver`, `traefik`.
    pub fn role(&self) -> &str {
        image_role(&self.reference)
    }

    /// `NAME:TAG`: the name containerd and kubeadm look the image up by.
    pub fn tagged(&self) -> String {
        format!(
            "{}:{}",
            self.reference.name(),
            self.reference.tag.as_deref().unwrap_or_default()
        )
    }

    /// The repository the image sits under, without its last part:
    /// kubeadm's `imageRepository` for it.
    pub fn repository_prefix(&self) -> String {
        let name = self.reference.name();
        name.rsplit_once('/')
            .map_or(name.clone(), |(p, _)| p.to_string())
    }

    pub fn digest(&self) -> Sha256Digest {
        self.reference.digest.expect("table images are pinned")
    }
}

fn image_role(r: &Reference) -> &str {
    r.repository.rsplit('/').next().unwrap_or_default()
}

/// Check a table's `images`: each pinned by tag and digest, no role twice,
/// kubeadm's and the manifests' every one, the kube-* tags the version,
/// and kube-* and pause under one repository (kubeadm's one
/// `imageRepository`). `at(i, msg)` makes the error for entry `i`.
fn check_images<E>(
    refs: &[String],
    version: KubeVersion,
    at: impl Fn(Option<usize>, String) -> E,
) -> Result<Vec<TableImage>, E> {
    let mut out: Vec<TableImage> = Vec::new();
    for (i, text) in refs.iter().enumerate() {
        let r: Reference = text.parse().map_err(|e| at(Some(i), format!("{e:#}")))?;
        if r.tag.is_none() || r.digest.is_none() {
            return Err(at(
                Some(i),
                format!("`{text}` must name a tag and a digest, as NAME:TAG@sha256:DIGEST; the digest is the sha256 of the manifest or index the tag names (`skopeo inspect --raw docker://NAME:TAG | sha256sum`)"),
            ));
        }
        let image = TableImage { reference: r };
        let role = image.role().to_string();
        if let Some(o) = out.iter().find(|o| o.role() == role) {
            return Err(at(
                Some(i),
                format!(
                    "`{text}` is a second `{role}` image (the first is `{}`); list each once",
                    o.reference
                ),
            ));
        }
        if !KUBEADM_IMAGES.contains(&role.as_str())
            && !ADDON_IMAGES.iter().any(|(n, _)| *n == role)
            && role != NFS_IMAGE_ROLE
        {
            return Err(at(
                Some(i),
                format!(
                    "`{text}` is not an image mkstick uses; the table lists {} and {} (and {NFS_IMAGE_ROLE}, the NFS server's, for Fedora CoreOS)",
                    KUBEADM_IMAGES.join(", "),
                    ADDON_IMAGES.map(|(n, _)| n).join(", ")
                ),
            ));
        }
        if KUBE_TAGGED.contains(&role.as_str())
            && image.reference.tag.as_deref() != Some(&format!("v{version}"))
        {
            return Err(at(
                Some(i),
                format!("`{text}`: kubeadm {version} runs {role} tagged v{version}; use that tag"),
            ));
        }
        out.push(image);
    }
    let missing: Vec<&str> = KUBEADM_IMAGES
        .iter()
        .copied()
        .chain(ADDON_IMAGES.map(|(n, _)| n))
        .filter(|n| !out.iter().any(|o| o.role() == *n))
        .collect();
    if !missing.is_empty() {
        return Err(at(
            None,
            format!("`images` lacks {}; a table that lists images lists every one mkstick uses, so that no built-in pin is mixed in", missing.join(", ")),
        ));
    }
    let find = |role: &str| {
        out.iter()
            .find(|o| o.role() == role)
            .expect("checked above")
    };
    let repo = find("kube-apiserver").repository_prefix();
    for role in [
        "kube-controller-manager",
        "kube-scheduler",
        "kube-proxy",
        "pause",
    ] {
        let other = find(role);
        if other.repository_prefix() != repo {
            let i = out.iter().position(|o| o.role() == role);
            return Err(at(
                i,
                format!("`{}` is not under {repo}, where kube-apiserver is: kubeadm takes the control plane's images and pause from one imageRepository", other.reference),
            ));
        }
    }
    out.sort();
    Ok(out)
}

/// One release's files for one architecture: what goes onto the stick.
#[derive(Debug, Clone, PartialEq)]
pub struct Table {
    pub kubernetes: KubeVersion,
    pub arch: String,
    /// In [`NAMES`] order.
    pub files: Vec<TableFile>,
    /// Every image the stick may carry, sorted; empty when the table lists
    /// none (the first boot then pulls them from their registries).
    pub images: Vec<TableImage>,
    /// The file the table came from; `None` for mkstick's own.
    pub source: Option<std::path::PathBuf>,
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
        let mut table = Self::from_static(BINARIES, arch, m).map_err(|e| format!("{e:#}"))?;
        let refs: Vec<String> = KUBEADM_IMAGE_PINS
            .iter()
            .copied()
            .chain(ADDON_IMAGES.map(|(_, r)| r))
            .map(str::to_string)
            .collect();
        table.images = check_images(&refs, pinned, |_, msg| {
            format!("mkstick's own image pins: {msg}")
        })?;
        Ok(table)
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
            images: Vec::new(),
            source: None,
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
            images: Option<Spanned<Vec<Spanned<String>>>>,
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
        let images = match &f.images {
            None => Vec::new(),
            Some(list) => {
                let refs: Vec<String> =
                    list.get_ref().iter().map(|s| s.get_ref().clone()).collect();
                check_images(&refs, f.kubernetes, |i, msg| {
                    let span = i.map_or(list.span(), |i| list.get_ref()[i].span());
                    at(span, msg)
                })?
            }
        };
        Ok(Table {
            kubernetes: f.kubernetes,
            arch: f.arch.into_inner(),
            files,
            images,
            source: Some(path.to_path_buf()),
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
    fn the_builtin_table_pins_every_image_by_tag_and_digest() {
        let v = KUBERNETES_VERSION.parse().unwrap();
        let t = Table::builtin(v, "amd64", &Mirrors::default()).unwrap();
        assert_eq!(t.images.len(), KUBEADM_IMAGES.len() + ADDON_IMAGES.len());
        let mut sorted = t.images.clone();
        sorted.sort();
        assert_eq!(sorted, t.images, "sorted");
        for i in &t.images {
            assert!(i.reference.tag.is_some() && i.reference.digest.is_some());
        }
    }

    fn table_with_images(images: &[&str]) -> String {
        let entry = |n: &str| {
            format!(
                "[{n}]\nurl = \"http://127.0.0.1:1/{n}\"\nsha256 = \"{}\"\n",
                "ab".repeat(32)
            )
        };
        let list: Vec<String> = images.iter().map(|i| format!("  \"{i}\",\n")).collect();
        format!(
            "kubernetes = \"1.37.0\"\narch = \"amd64\"\nimages = [\n{}]\n{}",
            list.concat(),
            NAMES.map(entry).concat()
        )
    }

    fn mirror_images() -> Vec<String> {
        let d = "cd".repeat(32);
        KUBEADM_IMAGES
            .iter()
            .map(|n| match *n {
                "coredns" => format!("127.0.0.1:5000/k8s/coredns/coredns:v1.14.2@sha256:{d}"),
                "etcd" => format!("127.0.0.1:5000/k8s/etcd:3.6.8-0@sha256:{d}"),
                "pause" => format!("127.0.0.1:5000/k8s/pause:3.10.2@sha256:{d}"),
                n => format!("127.0.0.1:5000/k8s/{n}:v1.37.0@sha256:{d}"),
            })
            .chain(
                ADDON_IMAGES
                    .iter()
                    .map(|(n, _)| format!("127.0.0.1:5000/addons/{n}:v1@sha256:{d}")),
            )
            .collect()
    }

    #[test]
    fn a_tables_images_are_checked_and_mistakes_point_at_the_entry() {
        let path = Path::new("k8s.toml");
        let good = mirror_images();
        let refs: Vec<&str> = good.iter().map(String::as_str).collect();
        let t = Table::parse(path, &table_with_images(&refs)).unwrap();
        assert_eq!(t.images.len(), refs.len());
        assert_eq!(t.source.as_deref(), Some(path));

        let err = |images: Vec<String>| {
            let refs: Vec<&str> = images.iter().map(String::as_str).collect();
            Table::parse(path, &table_with_images(&refs))
                .unwrap_err()
                .to_string()
        };
        // Line 4 is the first entry (kube-apiserver).
        let mut tag_only = good.clone();
        tag_only[0] = "127.0.0.1:5000/k8s/kube-apiserver:v1.37.0".into();
        let e = err(tag_only);
        assert!(
            e.contains("k8s.toml:4") && e.contains("NAME:TAG@sha256:DIGEST"),
            "{e}"
        );

        let mut wrong_tag = good.clone();
        wrong_tag[1] = wrong_tag[1].replace("v1.37.0", "v1.36.4");
        let e = err(wrong_tag);
        assert!(
            e.contains("k8s.toml:5") && e.contains("tagged v1.37.0"),
            "{e}"
        );

        let mut missing = good.clone();
        missing.retain(|i| !i.contains("/etcd:"));
        let e = err(missing);
        assert!(e.contains("lacks etcd"), "{e}");

        let mut twice = good.clone();
        twice.push(good[0].replace("/k8s/", "/other/"));
        let e = err(twice);
        assert!(e.contains("second `kube-apiserver`"), "{e}");

        let mut elsewhere = good.clone();
        elsewhere[5] = elsewhere[5].replace("/k8s/pause", "/other/pause");
        let e = err(elsewhere);
        assert!(e.contains("one imageRepository"), "{e}");

        let mut unknown = good.clone();
        unknown.push(format!(
            "127.0.0.1:5000/x/busybox:1@sha256:{}",
            "cd".repeat(32)
        ));
        let e = err(unknown);
        assert!(e.contains("not an image mkstick uses"), "{e}");
    }

    #[test]
    fn crictl_matches_the_kubernetes_minor() {
        let minor = |v: &str| v.split('.').take(2).collect::<Vec<_>>().join(".");
        assert_eq!(minor(CRICTL_VERSION), minor(KUBERNETES_VERSION));
    }
}
