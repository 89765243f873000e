//! The files the Kubernetes plan places into the booted OS:
//! `overlays/kubernetes/` rendered with its values, the kubeadm config,
//! and `manifests/` rendered with a few typed values.

use super::{KubernetesPlan, NFS_SERVER, STORAGE_CLASS_FILE};
use crate::k8s::kubeadm::{ImageOverride, KubeadmArgs, KubeadmConfig, KubeadmImages};
use crate::os::kubernetes::{TableImage, ADDON_IMAGES, DEFAULT_PAUSE_IMAGE, NFS_IMAGE_ROLE};
use crate::os::registry::{PulledImage, WantedImage};
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
            images: self.kubeadm_images(),
        })
    }

    /// The images the stick carries for containerd, sorted: kubeadm's,
    /// csi-driver-nfs's, and Traefik's when the ingress is on (not the NFS
    /// server's, which podman runs: [`crate::plan::wanted_images`]). Empty
    /// when the table lists no images.
    pub fn images(&self) -> Vec<&TableImage> {
        self.table
            .images
            .iter()
            .filter(|i| i.role() != "traefik" || self.ingress.is_some())
            .filter(|i| i.role() != NFS_IMAGE_ROLE)
            .collect()
    }

    /// The table's NFS server image, when it lists one.
    pub fn nfs_image(&self) -> Option<&TableImage> {
        self.table_image(NFS_IMAGE_ROLE)
    }

    /// Where [`Self::wanted_images`] says an image of the table is named.
    pub fn table_name(&self) -> String {
        self.table.source.as_ref().map_or(
            "mkstick's own table (src/os/kubernetes.rs)".to_string(),
            |p| p.display().to_string(),
        )
    }

    /// Every image the stick carries, sorted: the table's (pinned) and, when
    /// the table carries images, those the user's manifests name (pinned
    /// when they name a digest; a tag alone is resolved at build time).
    /// Empty when the table lists no images.
    pub fn wanted_images(&self) -> Vec<WantedImage> {
        let images = self.images();
        if images.is_empty() {
            return Vec::new();
        }
        let table = self.table_name();
        let mut out: Vec<WantedImage> = images
            .iter()
            .map(|i| WantedImage {
                reference: i.reference.clone(),
                pinned: true,
                named_in: table.clone(),
            })
            .collect();
        for m in &self.extra_manifests {
            for (line, r) in &m.images {
                if !out.iter().any(|w| w.reference.answers(r)) {
                    out.push(WantedImage {
                        reference: r.clone(),
                        pinned: r.digest.is_some(),
                        named_in: format!("{}:{line}", m.name),
                    });
                }
            }
        }
        out.sort_by(|a, b| a.reference.cmp(&b.reference));
        out
    }

    fn table_image(&self, role: &str) -> Option<&TableImage> {
        self.table.images.iter().find(|i| i.role() == role)
    }

    /// Where kubeadm takes its images from: the table's, when it lists them.
    fn kubeadm_images(&self) -> Option<KubeadmImages> {
        let meta = |role: &str| {
            let i = self.table_image(role)?;
            Some(ImageOverride {
                image_repository: i.repository_prefix(),
                image_tag: i.reference.tag.clone()?,
            })
        };
        Some(KubeadmImages {
            repository: self.table_image("kube-apiserver")?.repository_prefix(),
            dns: meta("coredns")?,
            etcd: meta("etcd")?,
        })
    }

    /// containerd's sandbox image: the pause kubeadm uses.
    pub fn sandbox_image(&self) -> String {
        self.table_image("pause")
            .map_or(DEFAULT_PAUSE_IMAGE.to_string(), |i| i.tagged())
    }

    /// `NAME:TAG@sha256:DIGEST` of every carried image, space-separated:
    /// what the node imports and checks.
    pub fn images_env(images: &[PulledImage]) -> String {
        images
            .iter()
            .map(|i| i.reference.to_string())
            .collect::<Vec<_>>()
            .join(" ")
    }

    /// The values `manifests/` templates use.
    fn manifest_vars(&self) -> BTreeMap<&'static str, String> {
        let (http, https) = self
            .ingress
            .as_ref()
            .map_or((0, 0), |i| (i.http_port, i.https_port));
        let mut vars = BTreeMap::from([
            ("pod_cidr", self.pod_cidr.to_string()),
            ("http_port", http.to_string()),
            ("https_port", https.to_string()),
            ("storage_class", self.nfs.storage_class.to_string()),
            ("default_class", self.nfs.default.to_string()),
            ("reclaim_policy", self.nfs.reclaim.policy().to_string()),
            ("on_delete", self.nfs.reclaim.on_delete().to_string()),
            ("nfs_server", NFS_SERVER.to_string()),
        ]);
        // The manifests' images: the table's, or mkstick's pins.
        for (role, pinned) in ADDON_IMAGES {
            let r = self
                .table_image(role)
                .map_or(pinned.to_string(), |i| i.reference.to_string());
            vars.insert(image_var(role), r);
        }
        vars
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
        images: &[PulledImage],
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
            ("images", Self::images_env(images)),
            ("node_name", hostname.to_string()),
            (
                "advertise_address",
                self.advertise_address
                    .map_or(String::new(), |a| a.to_string()),
            ),
            (
                "fixed_settings",
                crate::k8s::drift::fixed_settings_env(
                    &self.pod_cidr.to_string(),
                    &self.service_cidr.to_string(),
                    self.cluster_name.as_str(),
                ),
            ),
            ("cert_sans", self.cert_sans.join(" ")),
            ("sandbox_image", self.sandbox_image()),
            ("stick_label", stick_label.to_string()),
            ("stick_device_unit", device_unit(&stick_device)),
            ("persist_units", storage.persist_units()),
            ("state_dir", storage.state_subvolume()),
            ("snapshot_dir", storage.snapshots_dir()),
            ("keep_snapshots", super::KEEP_SNAPSHOTS.to_string()),
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

/// `image_csi_provisioner`: the template variable of an addon image.
fn image_var(role: &str) -> &'static str {
    match role {
        "traefik" => "image_traefik",
        "csi-provisioner" => "image_csi_provisioner",
        "csi-resizer" => "image_csi_resizer",
        "livenessprobe" => "image_livenessprobe",
        "nfsplugin" => "image_nfsplugin",
        "csi-node-driver-registrar" => "image_csi_node_driver_registrar",
        other => unreachable!("{other} is not in ADDON_IMAGES"),
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
