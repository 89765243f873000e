//! The kubeadm config (`kubeadm.k8s.io/v1beta4` InitConfiguration and
//! ClusterConfiguration, `kubelet.config.k8s.io/v1beta1`
//! KubeletConfiguration) as typed structs that serialize to the YAML
//! `kubeadm init --config` reads, and parse back to the same values.
//!
//! Field names and shapes follow the v1beta4 reference
//! (kubernetes.io/docs/reference/config-api/kubeadm-config.v1beta4/): in
//! v1beta4 `extraArgs` and `kubeletExtraArgs` are lists of name/value pairs,
//! and `taints: []` (unlike a missing key) means "no taints", which lets
//! workloads schedule on the single control-plane node.

use serde::{Deserialize, Serialize};

pub const KUBEADM_API: &str = "kubeadm.k8s.io/v1beta4";
pub const KUBELET_API: &str = "kubelet.config.k8s.io/v1beta1";
/// containerd's CRI socket, the same on Fedora CoreOS and Flatcar.
pub const CRI_SOCKET: &str = "unix:///run/containerd/containerd.sock";
/// Where kubelet and kube-controller-manager look for FlexVolume plugins.
/// Their default, `/usr/libexec/kubernetes/kubelet-plugins/volume/exec`, is
/// on the read-only `/usr` of both OSes, where kubeadm's hostPath for the
/// controller manager cannot be created.
pub const VOLUME_PLUGIN_DIR: &str = "/var/lib/kubelet/volumeplugins";

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct InitConfiguration {
    pub api_version: String,
    pub kind: String,
    #[serde(rename = "localAPIEndpoint", skip_serializing_if = "Option::is_none")]
    pub local_api_endpoint: Option<ApiEndpoint>,
    pub node_registration: NodeRegistration,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ApiEndpoint {
    pub advertise_address: String,
    pub bind_port: u16,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct NodeRegistration {
    pub name: String,
    pub cri_socket: String,
    /// Always serialized, also when empty: `[]` removes the control-plane taint.
    pub taints: Vec<Taint>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub kubelet_extra_args: Vec<Arg>,
    /// `IfNotPresent` (v1beta4's default, written out): kubeadm's ImagePull
    /// preflight check then pulls only what containerd lacks, so a stick's
    /// imported images are used as they are. `Never` would skip the check
    /// and hide a missing image until the kubelet fails to start it
    /// (kubernetes `cmd/kubeadm/app/preflight/checks.go` ImagePullCheck).
    pub image_pull_policy: String,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Taint {
    pub key: String,
    pub effect: String,
}

/// One `--name=value` flag (v1beta4's list form).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Arg {
    pub name: String,
    pub value: String,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ClusterConfiguration {
    pub api_version: String,
    pub kind: String,
    /// `v1.36.4`
    pub kubernetes_version: String,
    pub cluster_name: String,
    /// Where kubeadm's images come from when the stick carries them: the
    /// names it then looks up in containerd are the carried ones.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub image_repository: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub dns: Option<ImageOverride>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub etcd: Option<Etcd>,
    pub networking: Networking,
    pub api_server: ApiServer,
    pub controller_manager: ControlPlaneComponent,
}

/// `dns` and `etcd.local`: an image's repository and tag (v1beta4
/// `ImageMeta`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ImageOverride {
    pub image_repository: String,
    pub image_tag: String,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Etcd {
    pub local: ImageOverride,
}

/// The images of kubeadm's config, from the stick's table: kube-* and
/// pause under `repository`, CoreDNS and etcd each from its own.
#[derive(Debug, Clone, PartialEq)]
pub struct KubeadmImages {
    pub repository: String,
    pub dns: ImageOverride,
    pub etcd: ImageOverride,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Networking {
    pub pod_subnet: String,
    pub service_subnet: String,
    pub dns_domain: String,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ApiServer {
    #[serde(rename = "certSANs")]
    pub cert_sans: Vec<String>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ControlPlaneComponent {
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub extra_args: Vec<Arg>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct KubeletConfiguration {
    pub api_version: String,
    pub kind: String,
    /// systemd: the driver containerd is configured with, and the one
    /// systemd-managed hosts need so that two managers do not share cgroups.
    pub cgroup_driver: String,
    pub container_runtime_endpoint: String,
    pub volume_plugin_dir: String,
    /// Gives pods time to stop (and NFS to unmount) when the server shuts down.
    pub shutdown_grace_period: String,
    pub shutdown_grace_period_critical_pods: String,
}

/// The three documents, in the order kubeadm's docs list them.
#[derive(Debug, Clone, PartialEq)]
pub struct KubeadmConfig {
    pub init: InitConfiguration,
    pub cluster: ClusterConfiguration,
    pub kubelet: KubeletConfiguration,
}

/// The typed inputs, from the plan.
pub struct KubeadmArgs<'a> {
    pub node_name: &'a str,
    pub version: crate::config::kubernetes::KubeVersion,
    pub cluster_name: &'a str,
    pub pod_cidr: &'a str,
    pub service_cidr: &'a str,
    pub advertise_address: Option<&'a str>,
    /// The hostname, the address and the user's extra names, deduplicated.
    pub cert_sans: Vec<String>,
    /// `None`: kubeadm's defaults (registry.k8s.io), pulled at first boot.
    pub images: Option<KubeadmImages>,
}

impl KubeadmConfig {
    pub fn new(a: &KubeadmArgs) -> KubeadmConfig {
        let plugin_dir = Arg {
            name: "flex-volume-plugin-dir".into(),
            value: VOLUME_PLUGIN_DIR.into(),
        };
        KubeadmConfig {
            init: InitConfiguration {
                api_version: KUBEADM_API.into(),
                kind: "InitConfiguration".into(),
                local_api_endpoint: a.advertise_address.map(|addr| ApiEndpoint {
                    advertise_address: addr.to_string(),
                    bind_port: 6443,
                }),
                node_registration: NodeRegistration {
                    name: a.node_name.to_string(),
                    cri_socket: CRI_SOCKET.into(),
                    taints: Vec::new(),
                    kubelet_extra_args: a
                        .advertise_address
                        .map(|addr| Arg {
                            name: "node-ip".into(),
                            value: addr.to_string(),
                        })
                        .into_iter()
                        .collect(),
                    image_pull_policy: "IfNotPresent".into(),
                },
            },
            cluster: ClusterConfiguration {
                api_version: KUBEADM_API.into(),
                kind: "ClusterConfiguration".into(),
                kubernetes_version: format!("v{}", a.version),
                cluster_name: a.cluster_name.to_string(),
                image_repository: a.images.as_ref().map(|i| i.repository.clone()),
                dns: a.images.as_ref().map(|i| i.dns.clone()),
                etcd: a.images.as_ref().map(|i| Etcd {
                    local: i.etcd.clone(),
                }),
                networking: Networking {
                    pod_subnet: a.pod_cidr.to_string(),
                    service_subnet: a.service_cidr.to_string(),
                    dns_domain: "cluster.local".into(),
                },
                api_server: ApiServer {
                    cert_sans: a.cert_sans.clone(),
                },
                controller_manager: ControlPlaneComponent {
                    extra_args: vec![plugin_dir],
                },
            },
            kubelet: KubeletConfiguration {
                api_version: KUBELET_API.into(),
                kind: "KubeletConfiguration".into(),
                cgroup_driver: "systemd".into(),
                container_runtime_endpoint: CRI_SOCKET.into(),
                volume_plugin_dir: VOLUME_PLUGIN_DIR.into(),
                shutdown_grace_period: "60s".into(),
                shutdown_grace_period_critical_pods: "20s".into(),
            },
        }
    }

    /// The YAML file: three documents separated by `---`.
    pub fn to_yaml(&self) -> String {
        let doc = |v: serde_yaml_ng::Result<String>| v.expect("plain structs serialize to YAML");
        format!(
            "# kubeadm config rendered by mkstick; `kubeadm init --config` reads it.\n{}---\n{}---\n{}",
            doc(serde_yaml_ng::to_string(&self.init)),
            doc(serde_yaml_ng::to_string(&self.cluster)),
            doc(serde_yaml_ng::to_string(&self.kubelet)),
        )
    }

    /// Parse the YAML [`to_yaml`](Self::to_yaml) writes.
    pub fn from_yaml(text: &str) -> anyhow::Result<KubeadmConfig> {
        let mut docs = serde_yaml_ng::Deserializer::from_str(text);
        let mut next = || {
            docs.next()
                .ok_or_else(|| anyhow::anyhow!("the kubeadm config has fewer than 3 documents"))
        };
        let init = InitConfiguration::deserialize(next()?)?;
        let cluster = ClusterConfiguration::deserialize(next()?)?;
        let kubelet = KubeletConfiguration::deserialize(next()?)?;
        Ok(KubeadmConfig {
            init,
            cluster,
            kubelet,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args() -> KubeadmArgs<'static> {
        KubeadmArgs {
            node_name: "kube1",
            version: "1.36.4".parse().unwrap(),
            cluster_name: "mkstick",
            pod_cidr: "10.244.0.0/16",
            service_cidr: "10.96.0.0/12",
            advertise_address: Some("192.168.1.10"),
            cert_sans: vec!["kube1".into(), "192.168.1.10".into()],
            images: None,
        }
    }

    #[test]
    fn carried_images_set_the_repositories_kubeadm_derives_its_names_from() {
        let meta = |r: &str, t: &str| ImageOverride {
            image_repository: r.into(),
            image_tag: t.into(),
        };
        let mut a = args();
        a.images = Some(KubeadmImages {
            repository: "127.0.0.1:5000/k8s".into(),
            dns: meta("127.0.0.1:5000/k8s/coredns", "v1.14.2"),
            etcd: meta("127.0.0.1:5000/k8s", "3.6.8-0"),
        });
        let yaml = KubeadmConfig::new(&a).to_yaml();
        for line in [
            "\nimageRepository: 127.0.0.1:5000/k8s\n",
            "\ndns:\n  imageRepository: 127.0.0.1:5000/k8s/coredns\n  imageTag: v1.14.2\n",
            "\netcd:\n  local:\n    imageRepository: 127.0.0.1:5000/k8s\n    imageTag: 3.6.8-0\n",
            "\n  imagePullPolicy: IfNotPresent\n",
        ] {
            assert!(yaml.contains(line), "{line:?} in:\n{yaml}");
        }
        assert_eq!(
            KubeadmConfig::from_yaml(&yaml).unwrap(),
            KubeadmConfig::new(&a)
        );
        let plain = KubeadmConfig::new(&args()).to_yaml();
        assert!(!plain.contains("imageRepository"), "{plain}");
    }

    #[test]
    fn round_trips_and_keeps_the_empty_taint_list() {
        let c = KubeadmConfig::new(&args());
        let yaml = c.to_yaml();
        assert!(yaml.contains("\n  taints: []\n"), "{yaml}");
        assert!(yaml.contains("kubernetesVersion: v1.36.4\n"), "{yaml}");
        assert!(yaml.contains("cgroupDriver: systemd\n"), "{yaml}");
        assert!(yaml.contains("localAPIEndpoint:\n"), "{yaml}");
        assert!(yaml.contains("certSANs:\n"), "{yaml}");
        assert_eq!(KubeadmConfig::from_yaml(&yaml).unwrap(), c);
        let mut no_addr = args();
        no_addr.advertise_address = None;
        let c = KubeadmConfig::new(&no_addr);
        let yaml = c.to_yaml();
        assert!(!yaml.contains("localAPIEndpoint"), "{yaml}");
        assert!(!yaml.contains("kubeletExtraArgs"), "{yaml}");
        assert_eq!(KubeadmConfig::from_yaml(&yaml).unwrap(), c);
    }

    #[test]
    fn unknown_fields_do_not_parse() {
        let yaml = KubeadmConfig::new(&args())
            .to_yaml()
            .replace("cgroupDriver", "cgroupDrivr");
        assert!(KubeadmConfig::from_yaml(&yaml).is_err());
    }
}
