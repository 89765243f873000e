//! Plan stage, Kubernetes part: `[kubernetes]`, `[ingress]`, `[nfs]` and
//! `[extra] manifests` -> [`KubernetesPlan`], and the files it places into
//! the booted OS: `overlays/kubernetes/` rendered with its values, the
//! kubeadm config, and `manifests/` rendered with a few typed values.
//!
//! [`KubernetesPlan::from_config`] runs before anything is downloaded, so a
//! wrong port or CIDR is reported at once. The plan is whole then: its
//! [`Table`] names the binaries, which the acquire stage fetches and the
//! [`super::Plan`] then carries beside the OS.

use super::storage::{StorageNeeds, StoragePlan};
use super::OverlayFile;
use crate::config::kubernetes::KubeVersion;
use crate::config::kubernetes::{Cidr, ClassName, NodeAddress, Reclaim};
use crate::config::storage::StatePath;
use crate::config::{LoadedConfig, SourceError};
use crate::k8s::kubeadm::{KubeadmArgs, KubeadmConfig};
use crate::os::kubernetes::{Mirrors, Table};
use crate::overlays::{render_overlay, render_template};
use crate::overlays::{EmbeddedFile, MANIFESTS, OVERLAYS};
use crate::systemd::device_unit;
use anyhow::{bail, Context, Result};
use std::collections::BTreeMap;
use std::ops::Range;
use toml::Spanned;

pub const DEFAULT_POD_CIDR: &str = "10.244.0.0/16";
pub const DEFAULT_SERVICE_CIDR: &str = "10.96.0.0/12";
pub const DEFAULT_CLUSTER_NAME: &str = "mkstick";
pub const DEFAULT_STORAGE_CLASS: &str = "nfs";
pub const API_PORT: u16 = 6443;
/// The architecture of the binaries; mkstick builds x86_64 sticks.
pub const ARCH: &str = "amd64";
/// The NFS server the provisioner mounts: the node itself. Its pods run on
/// the host network, and the export always admits 127.0.0.1.
pub const NFS_SERVER: &str = "127.0.0.1";
/// What Kubernetes keeps across reboots: its config and certificates,
/// etcd's data, the kubelet's state and the container images.
pub const KEPT_PATHS: [&str; 4] = [
    "/etc/kubernetes",
    "/var/lib/containerd",
    "/var/lib/etcd",
    "/var/lib/kubelet",
];

/// The StorageClass's manifest on the node; the addons unit recreates the
/// class when an apply is refused (its fields are immutable).
pub const STORAGE_CLASS_FILE: &str = "31-nfs-storageclass.yaml";

/// Ports a hostPort on the node must not take, with what holds each.
pub const RESERVED_PORTS: &[(u16, u16, &str)] = &[
    (22, 22, "SSH"),
    (111, 111, "rpcbind (NFS)"),
    (2049, 2049, "the NFS server"),
    (2379, 2380, "etcd"),
    (6443, 6443, "the Kubernetes API server"),
    (10248, 10248, "the kubelet's health check"),
    (10249, 10249, "kube-proxy's metrics"),
    (10250, 10250, "the kubelet's API"),
    (10256, 10256, "kube-proxy's health check"),
    (10257, 10257, "kube-controller-manager"),
    (10259, 10259, "kube-scheduler"),
    (20048, 20048, "mountd (NFS)"),
    (29652, 29653, "csi-driver-nfs's health checks"),
    (30000, 32767, "Kubernetes' NodePort range"),
];

#[derive(Debug, Clone, PartialEq)]
pub struct KubernetesPlan {
    pub version: KubeVersion,
    /// The files to fetch and carry on the stick.
    pub table: Table,
    pub cluster_name: ClassName,
    pub pod_cidr: Cidr,
    pub service_cidr: Cidr,
    pub advertise_address: Option<NodeAddress>,
    /// The hostname, the address and `api-server-sans`, deduplicated.
    pub cert_sans: Vec<String>,
    /// `None` with `controller = "none"`.
    pub ingress: Option<IngressPlan>,
    pub nfs: NfsClassPlan,
    pub extra_manifests: Vec<UserManifest>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct IngressPlan {
    pub controller: &'static str,
    pub http_port: u16,
    pub https_port: u16,
}

#[derive(Debug, Clone, PartialEq)]
pub struct NfsClassPlan {
    pub storage_class: ClassName,
    pub default: bool,
    pub reclaim: Reclaim,
}

/// One of the user's manifest files, checked to be Kubernetes YAML.
#[derive(Debug, Clone, PartialEq)]
pub struct UserManifest {
    /// The file's path as given or found, for messages.
    pub name: String,
    /// `/etc/mkstick/manifests/50-extra-NN-<file>.yaml` on the node.
    pub node_path: String,
    pub contents: String,
    pub documents: usize,
}

impl KubernetesPlan {
    /// Check the Kubernetes tables. `None` when `[kubernetes]` is absent.
    pub fn from_config(loaded: &LoadedConfig) -> Result<Option<KubernetesPlan>> {
        let cfg = &loaded.config;
        let table_at = |name: &str| -> usize {
            loaded
                .text
                .find(&format!("[{name}]"))
                .unwrap_or(loaded.text.len())
        };
        let err = |at: usize, msg: String| -> anyhow::Error {
            SourceError::at(&loaded.path, &loaded.text, at, msg).into()
        };
        let spanned_err = |span: Range<usize>, msg: String| err(span.start, msg);
        let Some(k) = &cfg.kubernetes else {
            for (name, present) in [
                ("ingress", cfg.ingress.is_some()),
                ("nfs", cfg.nfs.is_some()),
            ] {
                if present {
                    return Err(err(
                        table_at(name),
                        format!("[{name}] configures the Kubernetes cluster, but there is no [kubernetes] table; add [kubernetes] (an empty table takes the defaults) or remove [{name}]"),
                    ));
                }
            }
            if let Some(m) = cfg.extra.manifests.first() {
                return Err(spanned_err(
                    m.span(),
                    "[extra] manifests are applied to the Kubernetes cluster, but there is no [kubernetes] table; add [kubernetes] or remove them".into(),
                ));
            }
            return Ok(None);
        };
        if cfg.storage.is_none() {
            return Err(err(
                table_at("kubernetes"),
                "[kubernetes] keeps the cluster's state on the data drives, but there is no [storage] table; add [storage] with drives = [\"/dev/disk/by-id/...\"] (run `ls -l /dev/disk/by-id/` on the server), or remove [kubernetes]".into(),
            ));
        }

        // The version and its binaries.
        let table = match &k.binaries {
            Some(p) => {
                let path = loaded.resolve(p.get_ref());
                let text = std::fs::read_to_string(&path).map_err(|e| {
                    spanned_err(
                        p.span(),
                        format!("cannot read the binaries table {}: {e}; fix the path or remove `binaries`", path.display()),
                    )
                })?;
                let t = Table::parse(&path, &text)?;
                if t.arch != ARCH {
                    return Err(spanned_err(
                        p.span(),
                        format!(
                            "{} lists {} binaries, but the stick boots {ARCH}",
                            path.display(),
                            t.arch
                        ),
                    ));
                }
                if let Some(v) = &k.version {
                    if *v.get_ref() != t.kubernetes {
                        return Err(spanned_err(
                            v.span(),
                            format!("version = \"{}\", but the binaries table {} is for {}; make them agree", v.get_ref(), path.display(), t.kubernetes),
                        ));
                    }
                }
                t
            }
            None => {
                let pinned: KubeVersion = crate::os::kubernetes::KUBERNETES_VERSION
                    .parse()
                    .expect("the pinned version parses");
                let v = k.version.as_ref().map_or(pinned, |v| *v.get_ref());
                Table::builtin(v, ARCH, &Mirrors::default()).map_err(|m| {
                    let at = k
                        .version
                        .as_ref()
                        .map_or(table_at("kubernetes"), |v| v.span().start);
                    err(at, m)
                })?
            }
        };

        // Networks.
        let pod_cidr = value_or(&k.pod_cidr, DEFAULT_POD_CIDR);
        let service_cidr = value_or(&k.service_cidr, DEFAULT_SERVICE_CIDR);
        let pod_at = span_or(&k.pod_cidr, table_at("kubernetes"));
        let service_at = span_or(&k.service_cidr, table_at("kubernetes"));
        // kubeadm's limits: a pod network between /8 and the node's /24, a
        // service network of at most 2^20 addresses (/12).
        check_network("pod-cidr", &pod_cidr, 8..=24, "10.244.0.0/16")
            .map_err(|m| err(pod_at, m))?;
        check_network("service-cidr", &service_cidr, 12..=28, "10.96.0.0/12")
            .map_err(|m| err(service_at, m))?;
        if pod_cidr.0.contains(&service_cidr.0.network())
            || service_cidr.0.contains(&pod_cidr.0.network())
        {
            return Err(err(
                service_at,
                format!("service-cidr {service_cidr} overlaps pod-cidr {pod_cidr}; pods and services need separate ranges, like the defaults {DEFAULT_POD_CIDR} and {DEFAULT_SERVICE_CIDR}"),
            ));
        }
        let advertise_address = k.advertise_address.as_ref().map(|a| *a.get_ref());
        if let (Some(a), Some(s)) = (advertise_address, &k.advertise_address) {
            if a.0.is_ipv6() {
                return Err(spanned_err(
                    s.span(),
                    format!("{a} is an IPv6 address; mkstick sets up an IPv4 cluster, so write the server's IPv4 address, like \"192.168.1.10\""),
                ));
            }
            for (name, net) in [("pod-cidr", pod_cidr), ("service-cidr", service_cidr)] {
                if net.0.contains(&a.0) {
                    return Err(spanned_err(
                        s.span(),
                        format!("the node's address {a} is inside {name} {net}: traffic to the node would be routed to pods; change {name} to a range your LAN does not use"),
                    ));
                }
            }
        }

        let hostname = cfg.node.hostname.to_string();
        let mut cert_sans = vec![hostname];
        cert_sans.extend(advertise_address.map(|a| a.to_string()));
        for s in k.api_server_sans.iter() {
            if !cert_sans.contains(&s.to_string()) {
                cert_sans.push(s.to_string());
            }
        }

        // Ingress.
        let ing = cfg.ingress.clone().unwrap_or_default();
        let controller = match ing.controller.as_ref().map(|c| (c.get_ref().as_str(), c.span())) {
            None | Some(("traefik", _)) => Some("traefik"),
            Some(("none", _)) => None,
            Some((c @ ("ingress-nginx" | "nginx"), span)) => {
                return Err(spanned_err(
                    span,
                    format!("controller = \"{c}\": ingress-nginx is retired (Kubernetes SIG Network ended its maintenance in March 2026) and gets no security fixes; use \"traefik\" (the default), or \"none\" and bring your own in [extra] manifests"),
                ))
            }
            Some((c, span)) => {
                return Err(spanned_err(
                    span,
                    format!("unknown ingress controller `{c}`; mkstick installs \"traefik\" (the default), or \"none\" to install none"),
                ))
            }
        };
        let ingress = match controller {
            Some(controller) => {
                let http_port = port(&ing.http_port, 80).map_err(|(s, m)| spanned_err(s, m))?;
                let https_port = port(&ing.https_port, 443).map_err(|(s, m)| spanned_err(s, m))?;
                if http_port == https_port {
                    let span = ing
                        .https_port
                        .as_ref()
                        .or(ing.http_port.as_ref())
                        .map_or(table_at("ingress")..0, |p| p.span());
                    return Err(spanned_err(
                        span,
                        format!("http-port and https-port are both {http_port}; give them different ports, like 80 and 443"),
                    ));
                }
                Some(IngressPlan {
                    controller,
                    http_port,
                    https_port,
                })
            }
            None => {
                if let Some(p) = ing.http_port.as_ref().or(ing.https_port.as_ref()) {
                    return Err(spanned_err(
                        p.span(),
                        "ports are set, but controller = \"none\" installs no ingress controller to listen on them; remove the ports or the controller line".into(),
                    ));
                }
                None
            }
        };

        // The NFS StorageClass.
        let nfs_cfg = cfg.nfs.clone().unwrap_or_default();
        let nfs = NfsClassPlan {
            storage_class: nfs_cfg
                .storage_class
                .map(|c| c.into_inner())
                .unwrap_or_else(|| DEFAULT_STORAGE_CLASS.parse().expect("a valid name")),
            default: nfs_cfg.default.is_none_or(|d| *d.get_ref()),
            reclaim: nfs_cfg
                .reclaim_policy
                .map_or(Reclaim::Archive, |r| *r.get_ref()),
        };

        let extra_manifests = user_manifests(loaded)?;

        Ok(Some(KubernetesPlan {
            version: table.kubernetes,
            table,
            cluster_name: k
                .cluster_name
                .as_ref()
                .map(|c| c.get_ref().clone())
                .unwrap_or_else(|| DEFAULT_CLUSTER_NAME.parse().expect("a valid name")),
            pod_cidr,
            service_cidr,
            advertise_address,
            cert_sans,
            ingress,
            nfs,
            extra_manifests,
        }))
    }

    /// What the cluster needs of `[storage]`: its state kept on the pool
    /// ([`KEPT_PATHS`]), and the NFS export open to the node itself, which
    /// the provisioner mounts ([`NFS_SERVER`]).
    pub fn storage_needs() -> StorageNeeds {
        StorageNeeds {
            persist: KEPT_PATHS
                .iter()
                .map(|p| StatePath::from_static(p))
                .collect(),
            nfs_clients: vec![NFS_SERVER.parse().expect("a valid NFS client")],
        }
    }

    pub fn kubeadm_config(&self, hostname: &str) -> KubeadmConfig {
        let addr = self.advertise_address.map(|a| a.to_string());
        KubeadmConfig::new(&KubeadmArgs {
            node_name: hostname,
            version: self.version,
            cluster_name: self.cluster_name.as_str(),
            pod_cidr: &self.pod_cidr.to_string(),
            service_cidr: &self.service_cidr.to_string(),
            advertise_address: addr.as_deref(),
            cert_sans: self.cert_sans.clone(),
        })
    }

    /// The address `plan` prints for the node: the fixed one, or its name.
    pub fn host(&self, hostname: &str) -> String {
        match self.advertise_address {
            Some(NodeAddress(std::net::IpAddr::V6(a))) => format!("[{a}]"),
            Some(a) => a.to_string(),
            None => hostname.to_string(),
        }
    }

    /// The values `manifests/` templates use.
    fn manifest_vars(&self) -> BTreeMap<&'static str, String> {
        let (http, https) = self
            .ingress
            .as_ref()
            .map_or((0, 0), |i| (i.http_port, i.https_port));
        BTreeMap::from([
            ("pod_cidr", self.pod_cidr.to_string()),
            ("http_port", http.to_string()),
            ("https_port", https.to_string()),
            ("storage_class", self.nfs.storage_class.to_string()),
            ("default_class", self.nfs.default.to_string()),
            ("reclaim_policy", self.nfs.reclaim.policy().to_string()),
            ("on_delete", self.nfs.reclaim.on_delete().to_string()),
            ("nfs_server", NFS_SERVER.to_string()),
        ])
    }

    /// mkstick's manifests in the order the addons unit applies them, as
    /// (path on the node, contents); the CNI config comes first.
    pub fn manifests(&self, nfs_share: &str) -> Result<Vec<(String, String)>> {
        let mut vars = self.manifest_vars();
        vars.insert("nfs_share", nfs_share.to_string());
        let render = |group: &str, name: &str| -> Result<String> {
            let f = embedded(MANIFESTS, group, name)?;
            let text = std::str::from_utf8(f.contents)
                .with_context(|| format!("manifests/{group}/{name} is not UTF-8"))?;
            render_template(text, &vars)
                .with_context(|| format!("rendering manifests/{group}/{name}"))
        };
        let mut out = vec![(
            "/etc/mkstick/cni/10-mkstick.conflist".to_string(),
            render("cni", "bridge.conflist")?,
        )];
        if self.ingress.is_some() {
            out.push((
                "/etc/mkstick/manifests/20-ingress-traefik.yaml".to_string(),
                render("ingress", "traefik.yaml")?,
            ));
        }
        out.push((
            "/etc/mkstick/manifests/30-nfs-csi-driver-nfs.yaml".to_string(),
            render("nfs", "csi-driver-nfs.yaml")?,
        ));
        out.push((
            format!("/etc/mkstick/manifests/{STORAGE_CLASS_FILE}"),
            render("nfs", "storageclass.yaml")?,
        ));
        for m in &self.extra_manifests {
            out.push((m.node_path.clone(), m.contents.clone()));
        }
        out.push((
            "/etc/mkstick/examples/whoami.yaml".to_string(),
            render("examples", "whoami.yaml")?,
        ));
        Ok(out)
    }

    /// The table's files under `k8s/` on the stick, space-separated in
    /// table order: what the node installs and checks.
    pub fn stick_files(&self) -> String {
        self.table
            .files
            .iter()
            .map(|f| {
                let path = f.stick_path();
                path.strip_prefix("k8s/").unwrap_or(&path).to_string()
            })
            .collect::<Vec<_>>()
            .join(" ")
    }

    /// Every file the Kubernetes feature places into the booted OS.
    pub fn overlay(
        &self,
        hostname: &str,
        storage: &StoragePlan,
        stick_label: &str,
        bin_dir: &str,
    ) -> Result<Vec<OverlayFile>> {
        let stick_device = format!("/dev/disk/by-partlabel/{stick_label}");
        let vars = BTreeMap::from([
            ("bin_dir", bin_dir.to_string()),
            ("version", self.version.to_string()),
            (
                "upgrades_from",
                crate::k8s::version::upgrades_from(self.version).to_string(),
            ),
            ("k8s_files", self.stick_files()),
            ("stick_label", stick_label.to_string()),
            ("stick_device_unit", device_unit(&stick_device)),
            ("persist_units", storage.persist_units()),
            ("storage_class", self.nfs.storage_class.to_string()),
            ("storage_class_file", STORAGE_CLASS_FILE.to_string()),
        ]);
        let mut out = OVERLAYS
            .iter()
            .filter(|f| f.group == "kubernetes")
            .map(|f| render_overlay(f, &vars))
            .collect::<Result<Vec<_>>>()?;
        out.push(OverlayFile::File {
            path: "/etc/mkstick/kubeadm.yaml".into(),
            mode: 0o600,
            contents: self.kubeadm_config(hostname).to_yaml().into_bytes(),
        });
        for (path, contents) in self.manifests(storage.nfs.share())? {
            out.push(OverlayFile::File {
                path,
                mode: 0o644,
                contents: contents.into_bytes(),
            });
        }
        Ok(out)
    }
}

fn embedded(
    table: &'static [EmbeddedFile],
    group: &str,
    path: &str,
) -> Result<&'static EmbeddedFile> {
    match table.iter().find(|f| f.group == group && f.path == path) {
        Some(f) => Ok(f),
        None => bail!("{group}/{path} is missing from mkstick's embedded files"),
    }
}

fn value_or<T: Copy + std::str::FromStr>(v: &Option<Spanned<T>>, default: &str) -> T
where
    T::Err: std::fmt::Debug,
{
    v.as_ref().map_or_else(
        || default.parse().expect("a valid default"),
        |v| *v.get_ref(),
    )
}

fn span_or<T>(v: &Option<Spanned<T>>, default: usize) -> usize {
    v.as_ref().map_or(default, |v| v.span().start)
}

/// A pod or service network: IPv4, a size kubeadm accepts (`prefixes`),
/// and not a range the node needs.
fn check_network(
    name: &str,
    net: &Cidr,
    prefixes: std::ops::RangeInclusive<u8>,
    example: &str,
) -> Result<(), String> {
    let ipnet::IpNet::V4(v4) = net.0 else {
        return Err(format!(
            "{name} {net} is IPv6; mkstick sets up IPv4 pod networking (its bridge CNI routes 0.0.0.0/0), so use an IPv4 range, like \"{example}\""
        ));
    };
    let len = v4.prefix_len();
    if len > *prefixes.end() {
        return Err(format!(
            "{name} {net} holds only {} addresses; use /{} or larger, like \"{example}\"",
            1u64 << (32 - len),
            prefixes.end()
        ));
    }
    if len < *prefixes.start() {
        return Err(format!(
            "{name} {net} is larger than kubeadm accepts; use /{} or smaller, like \"{example}\"",
            prefixes.start()
        ));
    }
    for (range, what) in [
        ("127.0.0.0/8", "loopback"),
        ("169.254.0.0/16", "link-local"),
        ("224.0.0.0/4", "multicast"),
    ] {
        let r: ipnet::IpNet = range.parse().expect("a valid range");
        if r.contains(&net.0.network()) || net.0.contains(&r.network()) {
            return Err(format!(
                "{name} {net} overlaps the {what} range {range}; use a private range, like \"{example}\""
            ));
        }
    }
    Ok(())
}

/// A port from the config: in range and not one the node reserves.
fn port(v: &Option<Spanned<i64>>, default: u16) -> Result<u16, (Range<usize>, String)> {
    let Some(v) = v else { return Ok(default) };
    let n = *v.get_ref();
    let p = u16::try_from(n).ok().filter(|p| *p > 0).ok_or_else(|| {
        (
            v.span(),
            format!("port {n} is out of range; use 1 to 65535, like 80 or 8080"),
        )
    })?;
    if let Some((lo, hi, what)) = RESERVED_PORTS
        .iter()
        .find(|(lo, hi, _)| (*lo..=*hi).contains(&p))
    {
        let range = if lo == hi {
            String::new()
        } else {
            format!(" ({lo}-{hi})")
        };
        return Err((
            v.span(),
            format!("port {p} is taken on the node by {what}{range}; pick another, like 80/443 or 8080/8443"),
        ));
    }
    Ok(p)
}

/// The files of `[extra] manifests`, each checked to hold Kubernetes objects.
fn user_manifests(loaded: &LoadedConfig) -> Result<Vec<UserManifest>> {
    let mut files = Vec::new();
    for entry in &loaded.config.extra.manifests {
        let path = loaded.resolve(entry.get_ref());
        let meta = std::fs::metadata(&path).map_err(|e| {
            loaded.error_at(
                entry,
                format!(
                    "cannot read {}: {e}; fix the path or remove it from [extra] manifests",
                    path.display()
                ),
            )
        })?;
        if meta.is_dir() {
            let mut found: Vec<_> = std::fs::read_dir(&path)
                .with_context(|| format!("listing {}", path.display()))?
                .filter_map(|e| e.ok().map(|e| e.path()))
                .filter(|p| {
                    p.is_file()
                        && matches!(
                            p.extension().and_then(|e| e.to_str()),
                            Some("yaml" | "yml" | "json")
                        )
                })
                .collect();
            found.sort();
            if found.is_empty() {
                return Err(loaded
                    .error_at(
                        entry,
                        format!("{} holds no .yaml, .yml or .json files; add your manifests there or remove it from [extra] manifests", path.display()),
                    )
                    .into());
            }
            files.extend(found);
        } else {
            files.push(path);
        }
    }
    let mut out = Vec::new();
    for (i, path) in files.iter().enumerate() {
        let text = std::fs::read_to_string(path).with_context(|| {
            format!("reading {} (a manifest must be UTF-8 text)", path.display())
        })?;
        let documents = check_manifest(path, &text)?;
        let stem = path
            .file_stem()
            .and_then(|s| s.to_str())
            .unwrap_or("manifest")
            .chars()
            .map(|c| {
                if c.is_ascii_alphanumeric() || c == '-' || c == '_' {
                    c
                } else {
                    '-'
                }
            })
            .collect::<String>();
        out.push(UserManifest {
            name: path.display().to_string(),
            node_path: format!("/etc/mkstick/manifests/50-extra-{:04}-{stem}.yaml", i + 1),
            contents: text,
            documents,
        });
    }
    Ok(out)
}

/// The most an object may weigh when stored: etcd's default request limit
/// (`--max-request-bytes`, 1.5 MiB; etcd `server/embed/config.go`
/// DefaultMaxRequestBytes), which kubeadm's etcd keeps.
pub const MAX_OBJECT_BYTES: usize = 3 << 19;

/// The most data a ConfigMap or Secret may hold: 1 MiB (`MaxSecretSize`,
/// kubernetes `pkg/apis/core/validation/validation.go`, ValidateConfigMap
/// counts keys and values, ValidateSecret the decoded values).
pub const MAX_DATA_BYTES: usize = 1 << 20;

/// Every document of a manifest is a Kubernetes object (it names its
/// apiVersion and kind) or empty, and is small enough for the API server.
/// Returns how many objects it holds.
///
/// Like kubectl (`k8s.io/apimachinery/pkg/util/yaml` NewYAMLOrJSONDecoder,
/// hasJSONPrefix), a text whose first non-space character is `{` is read as
/// a stream of JSON objects, strictly: a trailing comma that YAML would
/// forgive fails `kubectl apply` on the server.
pub fn check_manifest(path: &std::path::Path, text: &str) -> Result<usize> {
    use serde::Deserialize;
    let mut documents: Vec<(usize, serde_json::Value)> = Vec::new();
    if text.trim_start().starts_with('{') {
        let mut stream = serde_json::Deserializer::from_str(text).into_iter::<serde_json::Value>();
        loop {
            let at = text.len() - text[stream.byte_offset()..].trim_start().len();
            match stream.next() {
                None => break,
                Some(Ok(v)) => documents.push((at, v)),
                Some(Err(e)) => {
                    return Err(SourceError::json(
                        path,
                        text,
                        &e,
                        "kubectl reads a manifest that starts with `{` as strict JSON; fix the JSON (no trailing commas or comments)",
                    )
                    .into())
                }
            }
        }
    } else {
        let starts = yaml_document_starts(text);
        for (i, doc) in serde_yaml_ng::Deserializer::from_str(text).enumerate() {
            let value = serde_yaml_ng::Value::deserialize(doc).map_err(|e| {
                let at = e.location().map_or(0, |l| l.index());
                SourceError::at(path, text, at, format!("{e}; fix the YAML"))
            })?;
            let at = starts.get(i).copied().unwrap_or(0);
            let value = serde_json::to_value(&value).map_err(|e| {
                SourceError::at(
                    path,
                    text,
                    at,
                    format!("this document cannot be sent to the API server as JSON ({e}); use string keys"),
                )
            })?;
            documents.push((at, value));
        }
    }
    let mut objects = 0;
    for (at, value) in &documents {
        if value.is_null() {
            continue;
        }
        let field = |k: &str| value.get(k).and_then(|v| v.as_str());
        let (Some(_), Some(kind)) = (field("apiVersion"), field("kind")) else {
            return Err(SourceError::at(
                path,
                text,
                *at,
                format!(
                    "document {} is not a Kubernetes object: it needs `apiVersion` and `kind`",
                    objects + 1
                ),
            )
            .into());
        };
        objects += 1;
        let name = value
            .pointer("/metadata/name")
            .and_then(|v| v.as_str())
            .unwrap_or("(unnamed)");
        let too_big =
            |what: String| -> anyhow::Error { SourceError::at(path, text, *at, what).into() };
        let data = data_bytes(kind, value);
        if data > MAX_DATA_BYTES {
            return Err(too_big(format!(
                "{kind} `{name}` holds {} of data, and the API server refuses more than 1 MiB in a {kind}; keep large files on the NFS storage (a PersistentVolumeClaim) or in a container image",
                crate::io::human_bytes(data as u64)
            )));
        }
        let size = serde_json::to_vec(value).map_or(0, |v| v.len());
        if size > MAX_OBJECT_BYTES {
            return Err(too_big(format!(
                "{kind} `{name}` is {} as JSON, and etcd stores at most 1.5 MiB per object; split it, or keep large data on the NFS storage",
                crate::io::human_bytes(size as u64)
            )));
        }
    }
    if objects == 0 {
        bail!(
            "{}: holds no Kubernetes objects; remove it from [extra] manifests",
            path.display()
        );
    }
    Ok(objects)
}

/// The bytes of data the API server counts against [`MAX_DATA_BYTES`].
fn data_bytes(kind: &str, object: &serde_json::Value) -> usize {
    let map = |key: &str| {
        object
            .get(key)
            .and_then(|m| m.as_object())
            .into_iter()
            .flatten()
    };
    let text_len = |v: &serde_json::Value| v.as_str().map_or(0, str::len);
    // base64 without decoding: 3 bytes per 4 characters, less the padding.
    let decoded_len = |v: &serde_json::Value| {
        v.as_str().map_or(0, |s| {
            let s = s.trim_end_matches('=');
            s.len() / 4 * 3 + (s.len() % 4).saturating_sub(1)
        })
    };
    match kind {
        "ConfigMap" => {
            map("data")
                .map(|(k, v)| k.len() + text_len(v))
                .sum::<usize>()
                + map("binaryData")
                    .map(|(k, v)| k.len() + decoded_len(v))
                    .sum::<usize>()
        }
        "Secret" => {
            map("data").map(|(_, v)| decoded_len(v)).sum::<usize>()
                + map("stringData").map(|(_, v)| text_len(v)).sum::<usize>()
        }
        _ => 0,
    }
}

/// Where each YAML document of `text` starts, in the order a YAML parser
/// yields them: at the top, and at every `---` line.
fn yaml_document_starts(text: &str) -> Vec<usize> {
    let mut starts = Vec::new();
    let mut offset = 0;
    let mut first_content = true;
    for line in text.split_inclusive('\n') {
        let marker =
            line.starts_with("---") && line[3..].chars().next().is_none_or(char::is_whitespace);
        let blank = line.trim().is_empty() || line.trim_start().starts_with('#');
        if marker {
            starts.push(offset);
            first_content = false;
        } else if first_content && !blank {
            // Content before any marker: the first document.
            starts.push(offset);
            first_content = false;
        }
        offset += line.len();
    }
    starts
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::Path;

    const BASE: &str =
        "[node]\nhostname = \"kube1\"\n\n[storage]\ndrives = [\"/dev/disk/by-id/virtio-a\"]\n\n";

    fn plan_of(rest: &str) -> Result<Option<KubernetesPlan>> {
        let text = format!("{BASE}{rest}");
        let config = crate::config::parse(Path::new("mkstick.toml"), &text)?;
        KubernetesPlan::from_config(&LoadedConfig {
            path: "mkstick.toml".into(),
            text,
            config,
        })
    }

    fn error(rest: &str) -> String {
        format!("{:#}", plan_of(rest).unwrap_err())
    }

    #[test]
    fn defaults() {
        let k = plan_of("[kubernetes]\n").unwrap().unwrap();
        assert_eq!(
            k.version.to_string(),
            crate::os::kubernetes::KUBERNETES_VERSION
        );
        assert_eq!(k.pod_cidr.to_string(), DEFAULT_POD_CIDR);
        assert_eq!(k.service_cidr.to_string(), DEFAULT_SERVICE_CIDR);
        assert_eq!(k.cluster_name.as_str(), "mkstick");
        assert_eq!(k.cert_sans, vec!["kube1".to_string()]);
        let i = k.ingress.as_ref().unwrap();
        assert_eq!(
            (i.controller, i.http_port, i.https_port),
            ("traefik", 80, 443)
        );
        assert_eq!(k.nfs.storage_class.as_str(), "nfs");
        assert!(k.nfs.default);
        assert_eq!(k.nfs.reclaim, Reclaim::Archive);
        assert_eq!(k.table.files.len(), 5);
        assert!(plan_of("").unwrap().is_none());
    }

    #[test]
    fn every_reserved_port_is_refused_with_what_holds_it() {
        for (lo, hi, what) in RESERVED_PORTS {
            for p in [*lo, *hi] {
                let e = error(&format!("[kubernetes]\n[ingress]\nhttp-port = {p}\n"));
                assert!(
                    e.starts_with("mkstick.toml:9:13: port") && e.contains(what),
                    "{p}: {e}"
                );
            }
        }
        let e = error("[kubernetes]\n[ingress]\nhttps-port = 31000\n");
        assert!(e.contains("NodePort range (30000-32767)"), "{e}");
        for bad in ["0", "65536", "-1"] {
            let e = error(&format!("[kubernetes]\n[ingress]\nhttp-port = {bad}\n"));
            assert!(e.contains("out of range"), "{e}");
        }
        let e = error("[kubernetes]\n[ingress]\nhttp-port = 8080\nhttps-port = 8080\n");
        assert!(e.contains("both 8080"), "{e}");
        let k = plan_of("[kubernetes]\n[ingress]\nhttp-port = 8080\nhttps-port = 8443\n")
            .unwrap()
            .unwrap();
        let i = k.ingress.unwrap();
        assert_eq!((i.http_port, i.https_port), (8080, 8443));
    }

    #[test]
    fn networks_are_checked_against_each_other_and_the_node() {
        let e = error("[kubernetes]\npod-cidr = \"10.96.0.0/16\"\n");
        assert!(e.contains("overlaps pod-cidr"), "{e}");
        let e = error("[kubernetes]\nservice-cidr = \"10.244.10.0/24\"\n");
        assert!(
            e.starts_with("mkstick.toml:8:16:") && e.contains("overlaps"),
            "{e}"
        );
        let e = error("[kubernetes]\npod-cidr = \"10.244.0.0/26\"\n");
        assert!(e.contains("holds only 64 addresses"), "{e}");
        let e = error("[kubernetes]\npod-cidr = \"127.0.0.0/16\"\n");
        assert!(e.contains("loopback"), "{e}");
        let e = error("[kubernetes]\npod-cidr = \"10.244.0.1/16\"\n");
        assert!(e.contains("host bits"), "{e}");
        let e = error(
            "[kubernetes]\npod-cidr = \"192.168.0.0/16\"\nadvertise-address = \"192.168.1.10\"\n",
        );
        assert!(
            e.starts_with("mkstick.toml:9:21:") && e.contains("inside pod-cidr"),
            "{e}"
        );
        let e = error("[kubernetes]\nservice-cidr = \"fd00:96::/108\"\n");
        assert!(e.contains("is IPv6; mkstick sets up IPv4"), "{e}");
        let e = error("[kubernetes]\nservice-cidr = \"100.64.0.0/10\"\n");
        assert!(e.contains("larger than kubeadm accepts; use /12"), "{e}");
        let e = error("[kubernetes]\npod-cidr = \"10.0.0.0/7\"\n");
        assert!(e.contains("use /8 or smaller"), "{e}");
        let e = error("[kubernetes]\nadvertise-address = \"fd00::10\"\n");
        assert!(e.contains("IPv4 address"), "{e}");
        let k = plan_of(
            "[kubernetes]\nadvertise-address = \"192.168.1.10\"\napi-server-sans = [\"kube1.lab\", \"192.168.1.10\"]\n",
        )
        .unwrap()
        .unwrap();
        assert_eq!(k.cert_sans, ["kube1", "192.168.1.10", "kube1.lab"]);
        assert_eq!(k.host("kube1"), "192.168.1.10");
    }

    #[test]
    fn versions_tables_and_missing_tables_are_explained() {
        let e = error("[kubernetes]\nversion = \"1.35.0\"\n");
        assert!(
            e.starts_with("mkstick.toml:8:11:") && e.contains("binaries = \"k8s-1.35.0.toml\""),
            "{e}"
        );
        let e = error("[kubernetes]\nversion = \"1.36\"\n");
        assert!(e.contains("add the patch number"), "{e}");
        let e = error("[kubernetes]\nbinaries = \"nope.toml\"\n");
        assert!(e.contains("cannot read the binaries table"), "{e}");
        let e = error("[ingress]\nhttp-port = 8080\n");
        assert!(e.starts_with("mkstick.toml:7:1: [ingress]"), "{e}");
        let e = error("[nfs]\nstorage-class = \"x\"\n");
        assert!(e.contains("no [kubernetes] table"), "{e}");
        let e = error("[extra]\nmanifests = [\"m.yaml\"]\n");
        assert!(e.contains("no [kubernetes] table"), "{e}");
        let text = "[node]\nhostname = \"kube1\"\n[kubernetes]\n";
        let config = crate::config::parse(Path::new("m.toml"), text).unwrap();
        let e = KubernetesPlan::from_config(&LoadedConfig {
            path: "m.toml".into(),
            text: text.into(),
            config,
        })
        .unwrap_err()
        .to_string();
        assert!(
            e.starts_with("m.toml:3:1:") && e.contains("add [storage]"),
            "{e}"
        );
        let e = error("[kubernetes]\n[ingress]\ncontroller = \"ingress-nginx\"\n");
        assert!(e.contains("retired") && e.contains("traefik"), "{e}");
        let e = error("[kubernetes]\n[ingress]\ncontroller = \"none\"\nhttp-port = 80\n");
        assert!(e.contains("installs no ingress controller"), "{e}");
        let e = error("[kubernetes]\n[nfs]\nreclaim-policy = \"recycle\"\n");
        assert!(e.starts_with("mkstick.toml:9:18:"), "{e}");
        let e = error("[kubernetes]\napi-server-sans = [\"ok.lab\", \"Bad Name\"]\n");
        assert!(e.starts_with("mkstick.toml:8:30:"), "{e}");
    }

    #[test]
    fn a_binaries_table_is_parsed_and_located() {
        let dir = tempfile::tempdir().unwrap();
        let sha = "ab".repeat(32);
        let entry =
            |n: &str| format!("[{n}]\nurl = \"https://example.org/{n}\"\nsha256 = \"{sha}\"\n");
        let table = format!(
            "kubernetes = \"1.37.0\"\narch = \"amd64\"\n{}{}{}{}{}",
            entry("kubeadm"),
            entry("kubelet"),
            entry("kubectl"),
            entry("crictl"),
            entry("cni-plugins")
        );
        std::fs::write(dir.path().join("t.toml"), &table).unwrap();
        let t = Table::parse(&dir.path().join("t.toml"), &table).unwrap();
        assert_eq!(t.kubernetes.to_string(), "1.37.0");
        assert_eq!(t.files[4].stick_path(), "k8s/cni-plugins.tgz");
        let bad = table.replacen(&sha, "abc", 1);
        let e = Table::parse(Path::new("t.toml"), &bad)
            .unwrap_err()
            .to_string();
        assert!(e.starts_with("t.toml:5:10:") && e.contains("64 hex"), "{e}");
        let bad = table.replacen(
            "https://example.org/kubelet",
            "http://example.org/kubelet",
            1,
        );
        let e = Table::parse(Path::new("t.toml"), &bad)
            .unwrap_err()
            .to_string();
        assert!(e.contains("plain http"), "{e}");
        let bad = table.replace("[cni-plugins]", "[cni_plugins]");
        let e = Table::parse(Path::new("t.toml"), &bad)
            .unwrap_err()
            .to_string();
        assert!(e.contains("did you mean `cni-plugins`"), "{e}");
    }

    #[test]
    fn user_manifests_must_be_kubernetes_objects() {
        let p = Path::new("m.yaml");
        assert_eq!(
            check_manifest(p, "apiVersion: v1\nkind: Namespace\nmetadata: {name: a}\n---\n---\napiVersion: v1\nkind: ConfigMap\n").unwrap(),
            2
        );
        let e = check_manifest(p, "a: [1, 2\n").unwrap_err().to_string();
        assert!(
            e.starts_with("m.yaml:") && e.contains("fix the YAML"),
            "{e}"
        );
        let e = check_manifest(p, "apiVersion: v1\nkind: A\n---\nfoo: bar\n")
            .unwrap_err()
            .to_string();
        assert!(e.contains("document 2 is not a Kubernetes object"), "{e}");
        assert!(check_manifest(p, "# nothing\n").is_err());
    }

    #[test]
    fn json_manifests_are_read_strictly_as_kubectl_reads_them() {
        let p = Path::new("m.json");
        let ok = "{\"apiVersion\": \"v1\", \"kind\": \"Namespace\", \"metadata\": {\"name\": \"a\"}}\n{\"apiVersion\": \"v1\", \"kind\": \"Namespace\", \"metadata\": {\"name\": \"b\"}}\n";
        assert_eq!(check_manifest(p, ok).unwrap(), 2);
        // YAML forgives the trailing comma; kubectl's JSON decoder does not.
        let bad = "{\n  \"apiVersion\": \"v1\",\n  \"kind\": \"Namespace\",\n  \"metadata\": {\"name\": \"a\"},\n}\n";
        assert!(serde_yaml_ng::from_str::<serde_yaml_ng::Value>(bad).is_ok());
        let e = check_manifest(p, bad).unwrap_err().to_string();
        assert!(e.starts_with("m.json:5:1:"), "{e}");
        assert!(e.contains("strict JSON"), "{e}");
    }

    #[test]
    fn objects_the_api_server_would_refuse_for_size_are_refused_at_their_line() {
        let p = Path::new("m.yaml");
        let big = "x".repeat(MAX_DATA_BYTES);
        let text = format!("apiVersion: v1\nkind: Namespace\nmetadata: {{name: a}}\n---\napiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: huge\ndata:\n  blob: {big}\n");
        let e = check_manifest(p, &text).unwrap_err().to_string();
        assert!(e.starts_with("m.yaml:4:1:"), "{e}");
        assert!(e.contains("ConfigMap `huge` holds 1.0 MiB"), "{e}");
        assert!(e.contains("more than 1 MiB"), "{e}");
        // Just under the limit (the key counts too) passes.
        let fits = format!(
            "apiVersion: v1\nkind: ConfigMap\nmetadata: {{name: ok}}\ndata:\n  b: {}\n",
            &big[1..]
        );
        assert_eq!(check_manifest(p, &fits).unwrap(), 1);
        // A Secret counts decoded bytes.
        let b64 = "QUFB".repeat(MAX_DATA_BYTES / 3 + 1);
        let secret =
            format!("apiVersion: v1\nkind: Secret\nmetadata: {{name: s}}\ndata:\n  k: {b64}\n");
        assert!(check_manifest(p, &secret)
            .unwrap_err()
            .to_string()
            .contains("Secret `s`"));
        // Any kind: etcd's 1.5 MiB per object.
        let anno = "y".repeat(MAX_OBJECT_BYTES);
        let obj = format!(
            "apiVersion: v1\nkind: Namespace\nmetadata:\n  name: n\n  annotations: {{a: {anno}}}\n"
        );
        let e = check_manifest(p, &obj).unwrap_err().to_string();
        assert!(e.contains("Namespace `n`") && e.contains("1.5 MiB"), "{e}");
    }

    /// The booted node decides with the script's `step`, from the values
    /// mkstick writes into kubernetes.env; mkstick's plan and docs with
    /// `k8s::version::step`. Both must agree on every case.
    #[test]
    fn the_node_script_and_mkstick_agree_on_upgrades() {
        use crate::k8s::version::{step, upgrades_from, Step};
        let script = OVERLAYS
            .iter()
            .find(|f| f.group == "kubernetes" && f.path == "usr/local/bin/mkstick-kubernetes")
            .unwrap();
        let env = OVERLAYS
            .iter()
            .find(|f| f.group == "kubernetes" && f.path == "etc/mkstick/kubernetes.env")
            .unwrap();
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("mkstick-kubernetes");
        let env_path = dir.path().join("kubernetes.env");
        std::fs::write(&path, script.contents).unwrap();
        let versions = [
            "1.35.9", "1.36.0", "1.36.4", "1.36.10", "1.37.0", "1.37.3", "1.38.0", "2.0.0",
        ];
        for to in versions {
            let v: KubeVersion = to.parse().unwrap();
            let vars = BTreeMap::from([
                ("bin_dir", "/usr/local/bin".to_string()),
                ("version", to.to_string()),
                ("upgrades_from", upgrades_from(v).to_string()),
                ("k8s_files", "kubeadm".to_string()),
                ("stick_label", "mkstick".to_string()),
                ("storage_class", "nfs".to_string()),
                ("storage_class_file", STORAGE_CLASS_FILE.to_string()),
            ]);
            let text = render_template(std::str::from_utf8(env.contents).unwrap(), &vars).unwrap();
            std::fs::write(&env_path, text).unwrap();
            for from in versions {
                let out = std::process::Command::new("bash")
                    .arg(&path)
                    .args(["step", from])
                    .env("MKSTICK_KUBERNETES_ENV", &env_path)
                    .output()
                    .unwrap();
                assert!(
                    out.status.success(),
                    "{}",
                    String::from_utf8_lossy(&out.stderr)
                );
                let said = String::from_utf8(out.stdout).unwrap();
                let want = match step(from.parse().unwrap(), v) {
                    Step::Keep => "keep",
                    Step::Upgrade => "upgrade",
                    Step::Refuse => "refuse",
                };
                assert_eq!(said.trim(), want, "{from} -> {to}");
            }
        }
    }
}
