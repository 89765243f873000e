//! The files the Kubernetes plan places into the booted OS:
//! `overlays/kubernetes/` rendered with its values, the kubeadm config,
//! and `manifests/` rendered with a few typed values.

use super::{KubernetesPlan, NFS_SERVER, STORAGE_CLASS_FILE};
use crate::k8s::kubeadm::{KubeadmArgs, KubeadmConfig};
use crate::overlays::{
    render_overlay, render_template, EmbeddedFile, OverlayFile, MANIFESTS, OVERLAYS,
};
use crate::plan::storage::StoragePlan;
use crate::systemd::device_unit;
use anyhow::{bail, Context, Result};
use std::collections::BTreeMap;

impl KubernetesPlan {
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
