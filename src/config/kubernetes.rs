//! `[kubernetes]`, `[ingress]` and `[nfs]` as the user wrote them.
//! Values parse at the edge; the checks that relate several values (ports
//! against what the node reserves, CIDRs against each other) live in
//! `plan::kubernetes`.

use super::CheckedList;
use serde::Deserialize;
use std::fmt;
use std::path::PathBuf;
use std::str::FromStr;
use toml::Spanned;

/// A Kubernetes release (`1.36.4`), as `[kubernetes] version` names it.
/// Its upgrade rule is in `k8s::version`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct KubeVersion {
    pub major: u32,
    pub minor: u32,
    pub patch: u32,
}

impl fmt::Display for KubeVersion {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}.{}.{}", self.major, self.minor, self.patch)
    }
}

impl FromStr for KubeVersion {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        let fix = "write a Kubernetes release like \"1.36.4\"";
        let t = s.strip_prefix('v').unwrap_or(s);
        let parts: Vec<&str> = t.split('.').collect();
        let nums: Option<Vec<u32>> = parts
            .iter()
            .map(|p| {
                (!p.is_empty() && p.len() <= 6 && p.bytes().all(|b| b.is_ascii_digit()))
                    .then(|| p.parse().ok())
                    .flatten()
            })
            .collect();
        match nums.as_deref() {
            Some([major, minor, patch]) => Ok(KubeVersion {
                major: *major,
                minor: *minor,
                patch: *patch,
            }),
            Some([_, _]) => Err(format!(
                "`{s}` names a minor version; mkstick pins a release, so add the patch number; {fix}"
            )),
            _ => Err(format!("`{s}` is not a Kubernetes version; {fix}")),
        }
    }
}

impl<'de> serde::Deserialize<'de> for KubeVersion {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        String::deserialize(d)?
            .parse()
            .map_err(serde::de::Error::custom)
    }
}

impl serde::Serialize for KubeVersion {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct KubernetesConfig {
    /// A release mkstick pins binaries for, or the one a `binaries` table names.
    pub version: Option<Spanned<KubeVersion>>,
    /// A table of binaries (URL and sha256 each) for a release mkstick does
    /// not pin, relative to the config file.
    pub binaries: Option<Spanned<PathBuf>>,
    pub pod_cidr: Option<Spanned<Cidr>>,
    pub service_cidr: Option<Spanned<Cidr>>,
    pub cluster_name: Option<Spanned<ClusterName>>,
    /// The node's LAN address, when the router gives it a fixed one. mkstick
    /// does not set up the network; the API server advertises this address.
    pub advertise_address: Option<Spanned<NodeAddress>>,
    /// More names and addresses the API server's certificate carries.
    #[serde(default)]
    pub api_server_sans: CheckedList<San>,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct IngressConfig {
    pub controller: Option<Spanned<String>>,
    pub http_port: Option<Spanned<i64>>,
    pub https_port: Option<Spanned<i64>>,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct NfsClassConfig {
    pub storage_class: Option<Spanned<ClassName>>,
    /// Whether the class is the cluster's default (it is, unless set false).
    pub default: Option<Spanned<bool>>,
    pub reclaim_policy: Option<Spanned<Reclaim>>,
}

/// An IP network in CIDR notation, with no host bits set.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Cidr(pub ipnet::IpNet);

impl FromStr for Cidr {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        let net: ipnet::IpNet = s.parse().map_err(|_| {
            format!("`{s}` is not a network in CIDR notation; write it like \"10.244.0.0/16\"")
        })?;
        if net.trunc() != net {
            return Err(format!(
                "`{s}` has host bits set; the network is {}, so write that",
                net.trunc()
            ));
        }
        Ok(Cidr(net))
    }
}

impl fmt::Display for Cidr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.fmt(f)
    }
}

/// A node address: one IP, not a network.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct NodeAddress(pub std::net::IpAddr);

impl FromStr for NodeAddress {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        if s.contains('/') {
            return Err(format!(
                "`{s}` is a network; write the node's own address without the prefix, like \"192.168.1.10\""
            ));
        }
        let ip: std::net::IpAddr = s
            .parse()
            .map_err(|_| format!("`{s}` is not an IP address; write it like \"192.168.1.10\""))?;
        if ip.is_loopback() || ip.is_unspecified() || ip.is_multicast() {
            return Err(format!(
                "`{s}` cannot be the node's LAN address; write the address other machines reach it at, like \"192.168.1.10\""
            ));
        }
        Ok(NodeAddress(ip))
    }
}

impl fmt::Display for NodeAddress {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.fmt(f)
    }
}

/// A subject alternative name: an IP address or a DNS name.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct San(String);
string_newtype!(San);

impl FromStr for San {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        if s.parse::<std::net::IpAddr>().is_ok() {
            return Ok(San(s.to_string()));
        }
        let name = s.strip_prefix("*.").unwrap_or(s);
        let ok = !name.is_empty()
            && s.len() <= 253
            && name.split('.').all(|l| {
                !l.is_empty()
                    && l.len() <= 63
                    && !l.starts_with('-')
                    && !l.ends_with('-')
                    && l.bytes()
                        .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
            });
        if ok {
            Ok(San(s.to_string()))
        } else {
            Err(format!(
                "`{s}` is neither an IP address nor a DNS name; write it like \"kube1.lab.example\" or \"192.168.1.10\" (lowercase)"
            ))
        }
    }
}

/// A Kubernetes object name (RFC 1123 label): the StorageClass's.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClassName(String);
string_newtype!(ClassName);

impl<'de> Deserialize<'de> for ClassName {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        String::deserialize(d)?
            .parse()
            .map_err(serde::de::Error::custom)
    }
}

impl FromStr for ClassName {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        let ok = !s.is_empty()
            && s.len() <= 63
            && !s.starts_with('-')
            && !s.ends_with('-')
            && s.bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-');
        if ok {
            Ok(ClassName(s.to_string()))
        } else {
            Err(format!(
                "`{s}` is not a Kubernetes name; use at most 63 lowercase letters, digits and hyphens, like \"nfs\""
            ))
        }
    }
}

/// The cluster's name, in kubeconfig files and `kubectl config` contexts.
pub type ClusterName = ClassName;

/// What happens to a volume's data when its claim is deleted.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Reclaim {
    /// The volume and its directory stay; remove them by hand.
    #[serde(alias = "Retain")]
    Retain,
    /// The volume goes; its directory is renamed `archived-…` and kept.
    Archive,
    /// The volume and its directory are deleted.
    #[serde(alias = "Delete")]
    Delete,
}

impl Reclaim {
    /// The StorageClass's `reclaimPolicy`.
    pub fn policy(self) -> &'static str {
        match self {
            Reclaim::Retain => "Retain",
            Reclaim::Archive | Reclaim::Delete => "Delete",
        }
    }

    /// csi-driver-nfs's `onDelete` parameter (what deleting the volume does).
    pub fn on_delete(self) -> &'static str {
        match self {
            Reclaim::Retain => "retain",
            Reclaim::Archive => "archive",
            Reclaim::Delete => "delete",
        }
    }
}

impl fmt::Display for Reclaim {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.on_delete())
    }
}

deserialize_from_str!(Cidr, NodeAddress);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_releases_only() {
        let v = |s: &str| s.parse::<KubeVersion>().unwrap();
        assert_eq!(v("1.36.4").to_string(), "1.36.4");
        assert_eq!(v("v1.36.4"), v("1.36.4"));
        assert!("1.36".parse::<KubeVersion>().unwrap_err().contains("patch"));
        for bad in [
            "",
            "1",
            "1.36.4.1",
            "1.x.4",
            "1.36.-1",
            "1.36.4-rc.0",
            " 1.36.4",
        ] {
            assert!(bad.parse::<KubeVersion>().is_err(), "{bad}");
        }
    }

    #[test]
    fn cidrs_addresses_and_names() {
        assert_eq!(
            "10.244.0.0/16".parse::<Cidr>().unwrap().to_string(),
            "10.244.0.0/16"
        );
        assert!("10.244.1.0/16"
            .parse::<Cidr>()
            .unwrap_err()
            .contains("10.244.0.0/16"));
        assert!("10.244.0.0".parse::<Cidr>().is_err());
        assert!("fd00:10::/56".parse::<Cidr>().is_ok());
        assert!("192.168.1.10".parse::<NodeAddress>().is_ok());
        assert!("192.168.1.10/24"
            .parse::<NodeAddress>()
            .unwrap_err()
            .contains("without the prefix"));
        assert!("127.0.0.1".parse::<NodeAddress>().is_err());
        for ok in [
            "kube1",
            "kube1.lab.example",
            "*.lab.example",
            "10.0.0.5",
            "fd00::5",
        ] {
            assert!(ok.parse::<San>().is_ok(), "{ok}");
        }
        for bad in ["", "Kube1", "a..b", "-a", "a b", "http://x"] {
            assert!(bad.parse::<San>().is_err(), "{bad}");
        }
        assert!("nfs".parse::<ClassName>().is_ok());
        assert!("NFS".parse::<ClassName>().is_err());
        assert_eq!(Reclaim::Archive.policy(), "Delete");
        assert_eq!(Reclaim::Retain.on_delete(), "retain");
    }
}
