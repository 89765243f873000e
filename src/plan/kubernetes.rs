//! Plan stage, Kubernetes part: `[kubernetes]`, `[ingress]`, `[nfs]` and
//! `[extra] manifests` -> [`KubernetesPlan`], every value checked. The
//! files it places into the booted OS are rendered in [`files`]; the user's
//! manifests are checked in [`manifests`].
//!
//! [`KubernetesPlan::from_config`] runs before anything is downloaded, so a
//! wrong port or CIDR is reported at once. The plan is whole then: its
//! [`Table`] names the binaries, which the acquire stage fetches and the
//! [`super::Plan`] then carries beside the OS.

mod files;
mod manifests;

use super::storage::StorageNeeds;
use crate::config::kubernetes::KubeVersion;
use crate::config::kubernetes::{
    Cidr, ClassName, IngressConfig, KubernetesConfig, NodeAddress, Reclaim,
};
use crate::config::storage::StatePath;
use crate::config::{LoadedConfig, SourceError};
use crate::os::kubernetes::{Mirrors, Table};
use anyhow::Result;
use manifests::user_manifests;
pub use manifests::{
    check_manifest, manifest_containers, manifest_images, UserManifest, MAX_DATA_BYTES,
    MAX_OBJECT_BYTES,
};
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

/// How many read-only snapshots of the cluster's state the node keeps: one
/// is taken before each Kubernetes version change (and before a restore).
pub const KEEP_SNAPSHOTS: usize = 3;

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

impl KubernetesPlan {
    /// Check the Kubernetes tables. `None` when `[kubernetes]` is absent.
    /// `network` is `[network]`'s plan: its static address is the
    /// advertise address unless `advertise-address` is given.
    pub fn from_config(
        loaded: &LoadedConfig,
        network: &super::network::NetworkPlan,
    ) -> Result<Option<KubernetesPlan>> {
        let cfg = &loaded.config;
        let e = Errors(loaded);
        let Some(k) = &cfg.kubernetes else {
            for (name, present) in [
                ("ingress", cfg.ingress.is_some()),
                ("nfs", cfg.nfs.is_some()),
            ] {
                if present {
                    return Err(e.at(
                        e.table_at(name),
                        format!("[{name}] configures the Kubernetes cluster, but there is no [kubernetes] table; add [kubernetes] (an empty table takes the defaults) or remove [{name}]"),
                    ));
                }
            }
            if let Some(m) = cfg.extra.manifests.first() {
                return Err(e.spanned(
                    m.span(),
                    "[extra] manifests are applied to the Kubernetes cluster, but there is no [kubernetes] table; add [kubernetes] or remove them".into(),
                ));
            }
            return Ok(None);
        };
        if cfg.storage.is_none() {
            return Err(e.at(
                e.table_at("kubernetes"),
                "[kubernetes] keeps the cluster's state on the data drives, but there is no [storage] table; add [storage] with drives = [\"/dev/disk/by-id/...\"] (run `ls -l /dev/disk/by-id/` on the server), or remove [kubernetes]".into(),
            ));
        }

        let table = binaries_table(&e, k)?;

        let static_ip = network.static_address.as_ref().map(|s| s.address.ip);
        let (pod_cidr, service_cidr, advertise_address) = networks(&e, k, static_ip)?;

        let hostname = cfg.node.hostname.to_string();
        let mut cert_sans = vec![hostname];
        cert_sans.extend(advertise_address.map(|a| a.to_string()));
        for s in k.api_server_sans.iter() {
            if !cert_sans.contains(&s.to_string()) {
                cert_sans.push(s.to_string());
            }
        }

        let ingress = ingress(&e, &cfg.ingress.clone().unwrap_or_default())?;

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

    /// The address `plan` prints for the node: the fixed one, or its name.
    pub fn host(&self, hostname: &str) -> String {
        match self.advertise_address {
            Some(NodeAddress(std::net::IpAddr::V6(a))) => format!("[{a}]"),
            Some(a) => a.to_string(),
            None => hostname.to_string(),
        }
    }
}

/// Errors that point into the config file.
struct Errors<'a>(&'a LoadedConfig);

impl Errors<'_> {
    /// Where `[name]` starts, for errors about a whole table.
    fn table_at(&self, name: &str) -> usize {
        self.0.table_at(name).unwrap_or(self.0.text.len())
    }

    fn at(&self, at: usize, msg: String) -> anyhow::Error {
        SourceError::at(&self.0.path, &self.0.text, at, msg).into()
    }

    fn spanned(&self, span: Range<usize>, msg: String) -> anyhow::Error {
        self.at(span.start, msg)
    }
}

/// The version and its binaries: the built-in table for a pinned release,
/// or the user's `binaries` table, checked against `version`.
fn binaries_table(e: &Errors, k: &KubernetesConfig) -> Result<Table> {
    let loaded = e.0;
    Ok(match &k.binaries {
        Some(p) => {
            let path = loaded.resolve(p.get_ref());
            let text = std::fs::read_to_string(&path).map_err(|io| {
                e.spanned(
                    p.span(),
                    format!(
                        "cannot read the binaries table {}: {io}; fix the path or remove `binaries`",
                        path.display()
                    ),
                )
            })?;
            let t = Table::parse(&path, &text)?;
            if t.arch != ARCH {
                return Err(e.spanned(
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
                    return Err(e.spanned(
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
                    .map_or(e.table_at("kubernetes"), |v| v.span().start);
                e.at(at, m)
            })?
        }
    })
}

/// The pod and service networks, checked against kubeadm's limits, each
/// other and the node's address; and that address: `advertise-address`,
/// else `[network]`'s static address (`static_ip`), which an
/// `advertise-address` must equal.
fn networks(
    e: &Errors,
    k: &KubernetesConfig,
    static_ip: Option<std::net::Ipv4Addr>,
) -> Result<(Cidr, Cidr, Option<NodeAddress>)> {
    let pod_cidr = value_or(&k.pod_cidr, DEFAULT_POD_CIDR);
    let service_cidr = value_or(&k.service_cidr, DEFAULT_SERVICE_CIDR);
    let pod_at = span_or(&k.pod_cidr, e.table_at("kubernetes"));
    let service_at = span_or(&k.service_cidr, e.table_at("kubernetes"));
    // kubeadm's limits: a pod network between /8 and the node's /24, a
    // service network of at most 2^20 addresses (/12).
    check_network("pod-cidr", &pod_cidr, 8..=24, "10.244.0.0/16").map_err(|m| e.at(pod_at, m))?;
    check_network("service-cidr", &service_cidr, 12..=28, "10.96.0.0/12")
        .map_err(|m| e.at(service_at, m))?;
    if pod_cidr.0.contains(&service_cidr.0.network())
        || service_cidr.0.contains(&pod_cidr.0.network())
    {
        return Err(e.at(
            service_at,
            format!("service-cidr {service_cidr} overlaps pod-cidr {pod_cidr}; pods and services need separate ranges, like the defaults {DEFAULT_POD_CIDR} and {DEFAULT_SERVICE_CIDR}"),
        ));
    }
    // The node's address must not be routed to pods or Services. `whose`
    // names it, `table` where the CIDRs are when the error is elsewhere.
    let outside_cidrs = |a: NodeAddress, at: usize, whose: &str, table: &str| -> Result<()> {
        for (name, net) in [("pod-cidr", pod_cidr), ("service-cidr", service_cidr)] {
            if net.0.contains(&a.0) {
                return Err(e.at(
                    at,
                    format!("{whose} {a} is inside {table}{name} {net}: traffic to the node would be routed to pods; change {name} to a range your LAN does not use"),
                ));
            }
        }
        Ok(())
    };
    let static_address = static_ip.map(|ip| NodeAddress(std::net::IpAddr::V4(ip)));
    let Some(s) = &k.advertise_address else {
        if let Some(a) = static_address {
            outside_cidrs(
                a,
                e.table_at("network"),
                "the server's static address",
                "[kubernetes] ",
            )?;
        }
        return Ok((pod_cidr, service_cidr, static_address));
    };
    let a = *s.get_ref();
    if a.0.is_ipv6() {
        return Err(e.spanned(
            s.span(),
            format!("{a} is an IPv6 address; mkstick sets up an IPv4 cluster, so write the server's IPv4 address, like \"192.168.1.10\""),
        ));
    }
    outside_cidrs(a, s.span().start, "the node's address", "")?;
    if let Some(ip) = static_address.filter(|ip| *ip != a) {
        return Err(e.spanned(
            s.span(),
            format!("advertise-address {a} is not the server's static address {ip} from [network], so the API server would advertise an address the server does not have; remove advertise-address (the static address is used)"),
        ));
    }
    Ok((pod_cidr, service_cidr, Some(a)))
}

/// `[ingress]`: the controller and its two ports.
fn ingress(e: &Errors, ing: &IngressConfig) -> Result<Option<IngressPlan>> {
    let controller = match ing.controller.as_ref().map(|c| (c.get_ref().as_str(), c.span())) {
        None | Some(("traefik", _)) => Some("traefik"),
        Some(("none", _)) => None,
        Some((c @ ("ingress-nginx" | "nginx"), span)) => {
            return Err(e.spanned(
                span,
                format!("controller = \"{c}\": ingress-nginx is retired (Kubernetes SIG Network ended its maintenance in March 2026) and gets no security fixes; use \"traefik\" (the default), or \"none\" and bring your own in [extra] manifests"),
            ))
        }
        Some((c, span)) => {
            return Err(e.spanned(
                span,
                format!("unknown ingress controller `{c}`; mkstick installs \"traefik\" (the default), or \"none\" to install none"),
            ))
        }
    };
    Ok(match controller {
        Some(controller) => {
            let http_port = port(&ing.http_port, 80).map_err(|(s, m)| e.spanned(s, m))?;
            let https_port = port(&ing.https_port, 443).map_err(|(s, m)| e.spanned(s, m))?;
            if http_port == https_port {
                let span = ing
                    .https_port
                    .as_ref()
                    .or(ing.http_port.as_ref())
                    .map_or(e.table_at("ingress")..0, |p| p.span());
                return Err(e.spanned(
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
                return Err(e.spanned(
                    p.span(),
                    "ports are set, but controller = \"none\" installs no ingress controller to listen on them; remove the ports or the controller line".into(),
                ));
            }
            None
        }
    })
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::overlays::{render_template, OVERLAYS};
    use std::collections::BTreeMap;
    use std::path::Path;

    const BASE: &str =
        "[node]\nhostname = \"kube1\"\n\n[storage]\ndrives = [\"/dev/disk/by-id/virtio-a\"]\n\n";

    fn plan_of(rest: &str) -> Result<Option<KubernetesPlan>> {
        let text = format!("{BASE}{rest}");
        let config = crate::config::parse(Path::new("mkstick.toml"), &text)?;
        let loaded = LoadedConfig {
            path: "mkstick.toml".into(),
            text,
            config,
        };
        let network = crate::plan::network::NetworkPlan::from_config(&loaded)?;
        KubernetesPlan::from_config(&loaded, &network)
    }

    #[test]
    fn the_static_address_is_the_advertise_address() {
        let net = "[network]\nmac = \"52:54:00:12:34:56\"\naddress = \"192.168.1.10/24\"\n\n[kubernetes]\n";
        let p = plan_of(net).unwrap().unwrap();
        assert_eq!(
            p.advertise_address.map(|a| a.to_string()).as_deref(),
            Some("192.168.1.10")
        );
        assert!(
            p.cert_sans.iter().any(|s| s == "192.168.1.10"),
            "{:?}",
            p.cert_sans
        );
        assert!(plan_of(&format!("{net}advertise-address = \"192.168.1.10\"\n")).is_ok());
        let e = error(&format!("{net}advertise-address = \"192.168.1.11\"\n"));
        assert!(
            e.starts_with("mkstick.toml:12:21: advertise-address 192.168.1.11 is not the server's static address 192.168.1.10"),
            "{e}"
        );
        let e = error("[network]\nmac = \"52:54:00:12:34:56\"\naddress = \"10.244.1.10/24\"\n\n[kubernetes]\n");
        assert!(
            e.contains("static address 10.244.1.10 is inside [kubernetes] pod-cidr"),
            "{e}"
        );
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
        let e = KubernetesPlan::from_config(
            &LoadedConfig {
                path: "m.toml".into(),
                text: text.into(),
                config,
            },
            &Default::default(),
        )
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
                ("images", String::new()),
                ("node_name", "kube1".to_string()),
                ("advertise_address", String::new()),
                ("fixed_settings", String::new()),
                ("cert_sans", String::new()),
                ("stick_label", "mkstick".to_string()),
                ("state_dir", "/var/mnt/data/state".to_string()),
                ("snapshot_dir", "/var/mnt/data/snapshots".to_string()),
                ("keep_snapshots", KEEP_SNAPSHOTS.to_string()),
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
