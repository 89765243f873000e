//! Plan stage, storage part: `[storage]` -> [`StoragePlan`], and the
//! `overlays/storage*` templates rendered with its values.
//!
//! Templates are the files of `overlays/storage/` (and of the NFS group the
//! OS needs) with `{{name}}` placeholders in their paths and contents. Each
//! kept path's bind mount is a typed [`MountUnit`].

use crate::config::storage::{
    Compress, DrivePath, NfsClient, PoolLabel, Profile, StatePath, StorageConfig,
};
use crate::config::{LoadedConfig, SourceError};
use crate::os::registry::Reference;
use crate::os::NfsServer;
use crate::overlays::OVERLAYS;
use crate::overlays::{render_overlay, OverlayFile};
use crate::systemd::{device_unit, mount_unit, MountUnit};
use anyhow::{bail, Result};
use std::collections::BTreeMap;

/// The data drives, the pool on them and what is kept there.
#[derive(Debug, Clone, PartialEq)]
pub struct StoragePlan {
    pub drives: Vec<DrivePath>,
    pub label: PoolLabel,
    pub profile: Profile,
    /// Whether `profile` was left to its default.
    pub profile_defaulted: bool,
    pub mount: StatePath,
    pub compress: Compress,
    /// Sorted: what the features need, and the user's `persist`.
    pub persist: Vec<StatePath>,
    pub device_timeout_secs: u32,
    pub nfs: NfsExport,
}

/// What a feature needs of the storage; each feature states its own
/// ([`super::kubernetes::KubernetesPlan::storage_needs`]), and
/// [`StoragePlan::from_config`] takes them with the user's.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct StorageNeeds {
    /// Paths kept on the pool across reboots.
    pub persist: Vec<StatePath>,
    /// Hosts that mount the NFS export.
    pub nfs_clients: Vec<NfsClient>,
}

/// `<mount>/exports`, served over NFS.
#[derive(Debug, Clone, PartialEq)]
pub struct NfsExport {
    pub server: NfsServer,
    /// `[storage] nfs-image`: the container's image as the user pinned it,
    /// with where (`FILE:LINE`).
    pub pinned_image: Option<(Reference, String)>,
    /// With [`NfsServer::Container`]: its image as carried on the stick,
    /// `NAME:TAG@sha256:DIGEST` ([`crate::plan::plan`] sets it).
    pub image: Option<Reference>,
    /// The exported directory on the node.
    pub dir: String,
    pub clients: Vec<NfsClient>,
}

impl NfsExport {
    /// The path an NFSv4 client mounts (`server:/`): the export is the
    /// server's NFSv4 root (`fsid=0`). Without that, NFSv4 would have to
    /// walk from `/` down to the export, and a live OS's root is an overlay
    /// filesystem that nfsd cannot export, so the mount fails with ENOENT.
    pub fn share(&self) -> &str {
        "/"
    }
}

/// Where the kept-path units sit among the storage overlay's files.
const KEPT_UNITS_AT: &str = "etc/systemd/system/{{persist_unit}}";

/// Container image of the NFS server on an OS without one (Fedora CoreOS):
/// the nfs-utils image Fedora CoreOS's own CI runs on Fedora CoreOS
/// (coreos/coreos-assembler, tests/containers/nfs/). Upstream publishes
/// only a moving `latest`, so mkstick resolves it to a digest when the stick
/// is built, carries it, and `plan` says it was not pinned; a binaries
/// table may pin it (its `nfs`). See README.md, "NFS on Fedora CoreOS".
pub const NFS_CONTAINER_REPOSITORY: &str = "quay.io/coreos-assembler/nfs";
pub const NFS_CONTAINER_IMAGE: &str = "quay.io/coreos-assembler/nfs:latest";

/// Paths mkstick itself writes at every boot; a kept directory over (or
/// under) one of them would hide what Ignition wrote.
const MANAGED_PATHS: [&str; 14] = [
    "/etc/hostname",
    "/etc/localtime",
    "/etc/passwd",
    "/etc/shadow",
    "/etc/group",
    "/etc/gshadow",
    "/etc/mkstick",
    "/etc/systemd",
    "/etc/issue.d",
    "/etc/exports.d",
    "/etc/containers",
    "/etc/modules-load.d",
    "/var/home",
    "/var/roothome",
];

impl StoragePlan {
    /// Check `[storage]` and resolve its defaults, with what the features
    /// need. The NFS server is the kernel's until the OS is known
    /// ([`crate::plan::plan`] sets it).
    pub fn from_config(
        loaded: &LoadedConfig,
        cfg: &StorageConfig,
        needs: &StorageNeeds,
    ) -> Result<StoragePlan> {
        let table_at = loaded.table_at("storage").unwrap_or(0);
        let at = |span: std::ops::Range<usize>, msg: String| -> anyhow::Error {
            SourceError::at(&loaded.path, &loaded.text, span.start, msg).into()
        };
        if cfg.drives.is_empty() {
            return Err(at(
                table_at..table_at,
                "[storage] lists no drives; add drives = [\"/dev/disk/by-id/...\"] (run `ls -l /dev/disk/by-id/` on the server), or remove [storage] to keep nothing across reboots".into(),
            ));
        }
        let mut drives: Vec<DrivePath> = Vec::new();
        for (span, d) in cfg.drives.spanned() {
            if drives.contains(d) {
                return Err(at(span, format!("drive `{d}` is listed twice; remove one")));
            }
            drives.push(d.clone());
        }

        let (profile, profile_defaulted) = match &cfg.profile {
            Some(p) => (*p.get_ref(), false),
            None if drives.len() >= 2 => (Profile::Raid1, true),
            None => (Profile::Single, true),
        };
        if drives.len() < profile.min_drives() {
            let span = cfg
                .profile
                .as_ref()
                .map_or(table_at..table_at, |p| p.span());
            return Err(at(
                span,
                format!(
                    "profile {profile} keeps {} copies and needs at least {} drives, but [storage] drives lists {}; add drives or use a profile with fewer copies",
                    profile.min_drives(),
                    profile.min_drives(),
                    drives.len()
                ),
            ));
        }

        let timeout = *cfg.device_timeout_secs.get_ref();
        if !(1..=3600).contains(&timeout) {
            return Err(at(
                cfg.device_timeout_secs.span(),
                format!("device-timeout-secs = {timeout} is out of range; use 1 to 3600 (90 is systemd's usual wait)"),
            ));
        }

        let mount = cfg.mount.get_ref().clone();
        let managed: Vec<StatePath> = MANAGED_PATHS
            .iter()
            .map(|p| StatePath::from_static(p))
            .collect();
        if let Some(m) = managed
            .iter()
            .find(|m| m.contains(&mount) || mount.contains(m))
        {
            return Err(at(
                cfg.mount.span(),
                format!("the data mount {mount} overlaps {m}, which mkstick writes at every boot; pick another place, like /var/mnt/data"),
            ));
        }

        let mut persist: Vec<(std::ops::Range<usize>, StatePath)> =
            needs.persist.iter().map(|p| (0..0, p.clone())).collect();
        for (span, p) in cfg.persist.spanned() {
            if persist.iter().any(|(_, q)| q == p) {
                continue; // a default written out again is fine
            }
            persist.push((span, p.clone()));
        }
        for (span, p) in &persist {
            if let Some(m) = managed.iter().find(|m| m.contains(p) || p.contains(m)) {
                return Err(at(
                    span.clone(),
                    format!("{p} cannot be kept on the pool: it overlaps {m}, which mkstick writes at every boot and a kept copy would hide; keep a directory beside it instead"),
                ));
            }
            if mount.contains(p) || p.contains(&mount) {
                return Err(at(
                    span.clone(),
                    format!("{p} overlaps the data mount {mount}; everything under {mount} is on the pool already, so leave it out"),
                ));
            }
            for (_, q) in &persist {
                if q != p && q.contains(p) {
                    return Err(at(
                        span.clone(),
                        format!("{p} is inside {q}, which is kept already; leave {p} out"),
                    ));
                }
            }
        }
        let mut persist: Vec<StatePath> = persist.into_iter().map(|(_, p)| p).collect();
        persist.sort();

        let pinned_image = match &cfg.nfs_image {
            None => None,
            Some(v) => {
                let how = "`[storage] nfs-image` pins the NFS server container's image (Fedora CoreOS) as NAME:TAG@sha256:DIGEST, the digest being the sha256 of the manifest or index the tag names (`mkstick plan` shows the one it resolves for mkstick's own)";
                let r: Reference = v
                    .get_ref()
                    .parse()
                    .map_err(|e| at(v.span(), format!("{e:#}; {how}")))?;
                if r.digest.is_none() {
                    return Err(at(
                        v.span(),
                        format!("`{}` is not pinned: {how}", v.get_ref()),
                    ));
                }
                if r.tag.is_none() {
                    return Err(at(
                        v.span(),
                        format!(
                            "`{}` names no tag, which podman names the loaded image by: {how}",
                            v.get_ref()
                        ),
                    ));
                }
                let line =
                    SourceError::at(&loaded.path, &loaded.text, v.span().start, String::new()).line;
                Some((r, format!("{}:{line}", loaded.path.display())))
            }
        };
        let mut clients: Vec<NfsClient> = cfg.nfs_clients.iter().cloned().collect();
        for c in &needs.nfs_clients {
            if !clients.contains(c) {
                clients.push(c.clone());
            }
        }

        Ok(StoragePlan {
            drives,
            label: cfg.label.get_ref().clone(),
            profile,
            profile_defaulted,
            nfs: NfsExport {
                server: NfsServer::Kernel,
                pinned_image,
                image: None,
                dir: format!("{mount}/exports"),
                clients,
            },
            mount,
            compress: cfg.compress.clone(),
            persist,
            device_timeout_secs: timeout,
        })
    }

    /// How many drives may fail without losing data.
    pub fn tolerates(&self) -> usize {
        self.profile.tolerates()
    }

    /// The device the data mount waits for and mounts.
    pub fn device(&self) -> String {
        format!("/dev/disk/by-label/{}", self.label)
    }

    pub fn mount_unit(&self) -> String {
        mount_unit(self.mount.as_str())
    }

    /// Where a kept path lives on the pool.
    pub fn state_dir(&self, p: &StatePath) -> String {
        format!("{}{p}", self.state_subvolume())
    }

    /// The btrfs subvolume that holds every kept path (mkstick-storage
    /// state makes it, converting a plain directory in place).
    pub fn state_subvolume(&self) -> String {
        format!("{}/state", self.mount)
    }

    /// Where the node keeps its read-only snapshots of the state.
    pub fn snapshots_dir(&self) -> String {
        format!("{}/snapshots", self.mount)
    }

    pub fn mount_options(&self) -> String {
        let mut o = vec!["noatime".to_string()];
        o.extend(self.compress.mount_option());
        o.push("nofail".into());
        o.push(format!(
            "x-systemd.device-timeout={}s",
            self.device_timeout_secs
        ));
        o.join(",")
    }

    /// The mkfs command line a blank set of drives gets (for `plan`; the
    /// booted system runs the same from `/etc/mkstick/storage.env`).
    pub fn mkfs_command(&self) -> String {
        format!(
            "mkfs.btrfs -L {} -d {p} -m {p} {}",
            self.label,
            self.drives
                .iter()
                .map(|d| d.as_str())
                .collect::<Vec<_>>()
                .join(" "),
            p = self.profile
        )
    }

    /// The placeholder values of the storage templates.
    /// The bind-mount units of the kept paths, space-separated, as unit
    /// files list them (`Requires=`, `After=`).
    pub fn persist_units(&self) -> String {
        self.persist
            .iter()
            .map(|p| mount_unit(p.as_str()))
            .collect::<Vec<_>>()
            .join(" ")
    }

    fn vars(&self) -> BTreeMap<&'static str, String> {
        // One exports(5) client list; the host's server also checks that the
        // pool is mounted (the container's Volume= is that pool already).
        let export_to = |extra: &str| -> Vec<String> {
            self.nfs
                .clients
                .iter()
                .map(|c| format!("{c}(rw,sync,no_subtree_check,no_root_squash,fsid=0{extra})"))
                .collect()
        };
        let clients = export_to(&format!(",mp={}", self.mount));
        let container_clients = export_to("");
        let words = |v: &[String]| v.join(" ");
        BTreeMap::from([
            ("label", self.label.to_string()),
            ("profile", self.profile.to_string()),
            ("min_drives", self.profile.min_drives().to_string()),
            ("mount", self.mount.to_string()),
            ("mount_unit", self.mount_unit()),
            ("mount_options", self.mount_options()),
            ("device", self.device()),
            ("device_unit", device_unit(&self.device())),
            ("device_timeout_secs", self.device_timeout_secs.to_string()),
            (
                "drives",
                words(
                    &self
                        .drives
                        .iter()
                        .map(|d| d.to_string())
                        .collect::<Vec<_>>(),
                ),
            ),
            (
                "persist",
                words(
                    &self
                        .persist
                        .iter()
                        .map(|p| p.to_string())
                        .collect::<Vec<_>>(),
                ),
            ),
            ("persist_units", self.persist_units()),
            ("nfs_dir", self.nfs.dir.clone()),
            ("nfs_export_clients", words(&clients)),
            ("nfs_container_clients", words(&container_clients)),
        ])
    }

    /// The NFS container's image: what the node loads and checks
    /// (`NAME:TAG@sha256:DIGEST`), and what the quadlet runs
    /// (`NAME@sha256:DIGEST`, so podman runs that digest and no other).
    fn nfs_image_vars(&self) -> Result<[(&'static str, String); 4]> {
        let Some(r) = &self.nfs.image else {
            bail!("the NFS server container has no image; acquire it with the plan's images");
        };
        let Some(digest) = r.digest else {
            bail!("the NFS server's image {r} has no digest; acquire it with the plan's images");
        };
        Ok([
            ("nfs_image", r.to_string()),
            ("nfs_image_run", format!("{}@sha256:{digest}", r.name())),
            ("stick_label", crate::formats::gpt::ESP_NAME.to_string()),
            (
                "stick_device_unit",
                device_unit(&format!(
                    "/dev/disk/by-partlabel/{}",
                    crate::formats::gpt::ESP_NAME
                )),
            ),
        ])
    }

    /// The bind mount that keeps `p` on the pool ([`KEPT_UNITS_AT`]).
    pub fn kept_path_unit(&self, p: &StatePath) -> MountUnit {
        let after = vec![self.mount_unit(), "mkstick-state.service".to_string()];
        MountUnit {
            comment: vec![
                format!("{p} lives on the data pool, so it survives reboots and"),
                "reflashing. Generated by mkstick from [storage] persist.".into(),
            ],
            description: format!("mkstick: {p} kept on the data pool"),
            requires: after.clone(),
            after,
            before: [
                "containerd.service",
                "kubelet.service",
                "mkstick-storage-status.service",
            ]
            .map(String::from)
            .to_vec(),
            what: self.state_dir(p),
            where_: p.to_string(),
            fs_type: "none".into(),
            options: vec!["bind".into(), "nofail".into()],
            wanted_by: "multi-user.target".into(),
        }
    }

    /// Every file the storage feature places into the booted OS.
    pub fn overlay(&self, bin_dir: &str) -> Result<Vec<OverlayFile>> {
        let mut vars = self.vars();
        vars.insert("bin_dir", bin_dir.to_string());
        if self.nfs.server == NfsServer::Container {
            vars.extend(self.nfs_image_vars()?);
        }
        let mut groups = vec!["storage"];
        groups.push(match self.nfs.server {
            NfsServer::Kernel => "nfs-kernel",
            NfsServer::Container => "nfs-container",
        });
        let mut out = Vec::new();
        let mut kept = self.persist.iter().map(|p| {
            let u = self.kept_path_unit(p);
            OverlayFile::Unit {
                name: u.name(),
                contents: u.render(),
            }
        });
        for f in OVERLAYS.iter().filter(|f| groups.contains(&f.group)) {
            // The kept-path units take the place in the list (and so in the
            // plan's fingerprint) that their template had.
            if f.path > KEPT_UNITS_AT {
                out.extend(kept.by_ref());
            }
            out.push(render_overlay(f, &vars)?);
        }
        out.extend(kept);
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::Path;

    fn plan_of(storage: &str) -> Result<StoragePlan> {
        plan_with(storage, NfsServer::Kernel)
    }

    fn plan_with(storage: &str, nfs_server: NfsServer) -> Result<StoragePlan> {
        let text = format!("[node]\nhostname = \"kube1\"\n\n[storage]\n{storage}");
        let config = crate::config::parse(Path::new("mkstick.toml"), &text)?;
        let loaded = LoadedConfig {
            path: "mkstick.toml".into(),
            text,
            config,
        };
        let cfg = loaded.config.storage.clone().expect("[storage] given");
        // As on a stick with [kubernetes], which most of these are.
        let needs = super::super::kubernetes::KubernetesPlan::storage_needs();
        let mut plan = StoragePlan::from_config(&loaded, &cfg, &needs)?;
        plan.nfs.server = nfs_server;
        Ok(plan)
    }

    const TWO: &str = "drives = [\"/dev/disk/by-id/virtio-a\", \"/dev/disk/by-id/virtio-b\"]\n";

    /// Each feature states what it needs: a stick with `[storage]` and no
    /// `[kubernetes]` keeps only what the user lists, and its export is open
    /// to the clients the user names; Kubernetes adds its state and 127.0.0.1.
    #[test]
    fn the_features_needs_are_kept_and_served() {
        let text = format!(
            "[node]\nhostname = \"kube1\"\n\n[storage]\n{TWO}persist = [\"/var/lib/myapp\"]\nnfs-clients = [\"192.168.1.20\"]\n"
        );
        let config = crate::config::parse(Path::new("mkstick.toml"), &text).unwrap();
        let loaded = LoadedConfig {
            path: "mkstick.toml".into(),
            text,
            config,
        };
        let cfg = loaded.config.storage.clone().unwrap();
        let alone = StoragePlan::from_config(&loaded, &cfg, &StorageNeeds::default()).unwrap();
        let kept = |p: &StoragePlan| p.persist.iter().map(|p| p.to_string()).collect::<Vec<_>>();
        let clients = |p: &StoragePlan| {
            p.nfs
                .clients
                .iter()
                .map(|c| c.to_string())
                .collect::<Vec<_>>()
        };
        assert_eq!(kept(&alone), ["/var/lib/myapp"]);
        assert_eq!(clients(&alone), ["192.168.1.20"]);
        assert!(
            !alone.persist_units().contains("etcd"),
            "{}",
            alone.persist_units()
        );

        let needs = super::super::kubernetes::KubernetesPlan::storage_needs();
        let k8s = StoragePlan::from_config(&loaded, &cfg, &needs).unwrap();
        assert_eq!(
            kept(&k8s),
            [
                "/etc/kubernetes",
                "/var/lib/containerd",
                "/var/lib/etcd",
                "/var/lib/kubelet",
                "/var/lib/myapp"
            ]
        );
        assert_eq!(clients(&k8s), ["192.168.1.20", "127.0.0.1"]);
    }

    #[test]
    fn defaults_for_two_drives() {
        let p = plan_of(TWO).unwrap();
        assert_eq!(p.profile, Profile::Raid1);
        assert!(p.profile_defaulted);
        assert_eq!(p.mount.as_str(), "/var/mnt/data");
        assert_eq!(p.mount_unit(), "var-mnt-data.mount");
        assert_eq!(p.device(), "/dev/disk/by-label/data");
        assert_eq!(
            p.mount_options(),
            "noatime,compress=zstd,nofail,x-systemd.device-timeout=90s"
        );
        let persist: Vec<&str> = p.persist.iter().map(|p| p.as_str()).collect();
        assert_eq!(persist, super::super::kubernetes::KEPT_PATHS);
        assert_eq!(p.nfs.dir, "/var/mnt/data/exports");
        assert_eq!(
            p.mkfs_command(),
            "mkfs.btrfs -L data -d raid1 -m raid1 /dev/disk/by-id/virtio-a /dev/disk/by-id/virtio-b"
        );
    }

    #[test]
    fn mistakes_are_located_and_explained() {
        let e = plan_of("drives = [\"/dev/disk/by-id/virtio-a\"]\nprofile = \"raid1\"\n")
            .unwrap_err()
            .to_string();
        assert!(
            e.starts_with("mkstick.toml:6:11: profile raid1") && e.contains("lists 1"),
            "{e}"
        );
        let e = plan_of("drives = [\"/dev/disk/by-id/a\", \"/dev/disk/by-id/a\"]\n")
            .unwrap_err()
            .to_string();
        assert!(
            e.starts_with("mkstick.toml:5:32: drive") && e.contains("twice"),
            "{e}"
        );
        let e = plan_of("drives = []\n").unwrap_err().to_string();
        assert!(
            e.starts_with("mkstick.toml:4:1: [storage] lists no drives"),
            "{e}"
        );
        let e = plan_of(&format!("{TWO}persist = [\"/var/lib/kubelet/pods\"]\n"))
            .unwrap_err()
            .to_string();
        assert!(e.contains("inside /var/lib/kubelet"), "{e}");
        let e = plan_of(&format!("{TWO}persist = [\"/etc/systemd/network\"]\n"))
            .unwrap_err()
            .to_string();
        assert!(
            e.starts_with("mkstick.toml:6:12:") && e.contains("hide"),
            "{e}"
        );
        let e = plan_of(&format!("{TWO}mount = \"/var/lib\"\n"))
            .unwrap_err()
            .to_string();
        assert!(e.contains("overlaps the data mount"), "{e}");
        let e = plan_of(&format!("{TWO}device-timeout-secs = 0\n"))
            .unwrap_err()
            .to_string();
        assert!(e.starts_with("mkstick.toml:6:23:"), "{e}");
    }

    #[test]
    fn config_errors_in_storage_lists_point_at_the_item() {
        let e = plan_of("drives = [\"/dev/disk/by-id/a\", \"/dev/sdb\"]\n")
            .unwrap_err()
            .to_string();
        assert!(
            e.starts_with("mkstick.toml:5:32: `/dev/sdb` is a kernel name"),
            "{e}"
        );
        let e = plan_of(&format!("{TWO}profile = \"raid5\"\n"))
            .unwrap_err()
            .to_string();
        assert!(
            e.starts_with("mkstick.toml:6:11:") && e.contains("write hole"),
            "{e}"
        );
    }

    #[test]
    fn overlay_has_one_bind_mount_per_kept_path() {
        let p = plan_of(&format!("{TWO}persist = [\"/var/lib/myapp\"]\n")).unwrap();
        let files = p.overlay("/usr/local/bin").unwrap();
        let units: Vec<&str> = files
            .iter()
            .filter_map(|f| match f {
                OverlayFile::Unit { name, .. } => Some(name.as_str()),
                _ => None,
            })
            .collect();
        for u in [
            "var-mnt-data.mount",
            "etc-kubernetes.mount",
            "var-lib-myapp.mount",
            "mkstick-btrfs-scan.service",
            "mkstick-storage.service",
        ] {
            assert!(units.contains(&u), "{u} in {units:?}");
        }
        let bind = files
            .iter()
            .find_map(|f| match f {
                OverlayFile::Unit { name, contents } if name == "var-lib-myapp.mount" => {
                    Some(contents.as_str())
                }
                _ => None,
            })
            .unwrap();
        assert!(
            bind.contains("What=/var/mnt/data/state/var/lib/myapp\n"),
            "{bind}"
        );
        assert!(bind.contains("Where=/var/lib/myapp\n"), "{bind}");
    }

    #[test]
    fn an_os_without_an_nfs_server_gets_the_container() {
        let mut p = plan_with(
            &format!("{TWO}nfs-clients = [\"10.0.0.0/8\"]\n"),
            NfsServer::Container,
        )
        .unwrap();
        // Without its carried image there is nothing to run.
        let e = p.overlay("/usr/local/bin").unwrap_err();
        assert!(format!("{e:#}").contains("has no image"), "{e:#}");
        let digest = "ab".repeat(32);
        p.nfs.image = Some(
            format!("{NFS_CONTAINER_IMAGE}@sha256:{digest}")
                .parse()
                .unwrap(),
        );
        let files = p.overlay("/usr/local/bin").unwrap();
        let file = |want: &str| {
            files.iter().find_map(|f| match f {
                OverlayFile::File { path, contents, .. } if path == want => {
                    Some(String::from_utf8(contents.clone()).unwrap())
                }
                _ => None,
            })
        };
        let quadlet = file("/etc/containers/systemd/mkstick-nfs.container").unwrap();
        assert!(
            quadlet.contains("Volume=/var/mnt/data/exports:/export\n"),
            "{quadlet}"
        );
        assert!(
            quadlet.contains("RequiresMountsFor=/var/mnt/data/exports\n"),
            "{quadlet}"
        );
        // podman runs the carried image by its digest, never pulling, and
        // only after the loader ran.
        for line in [
            format!("Image={NFS_CONTAINER_REPOSITORY}@sha256:{digest}\n"),
            "Pull=never\n".to_string(),
            "Requires=mkstick-nfs-image.service\nAfter=mkstick-nfs-image.service\n".to_string(),
            "RequiresMountsFor=/var/lib/containers/storage\n".to_string(),
        ] {
            assert!(quadlet.contains(&line), "{line} in {quadlet}");
        }
        let env = file("/etc/mkstick/nfs-image.env").unwrap();
        assert!(
            env.contains(&format!(
                "\nNFS_IMAGE={NFS_CONTAINER_IMAGE}@sha256:{digest}\n"
            )) && env.contains("\nSTICK_LABEL=MKSTICK\n"),
            "{env}"
        );
        assert!(file("/usr/local/bin/mkstick-nfs-image").is_some());
        let unit = files
            .iter()
            .find_map(|f| match f {
                OverlayFile::Unit { name, contents } if name == "mkstick-nfs-image.service" => {
                    Some(contents.clone())
                }
                _ => None,
            })
            .unwrap();
        assert!(
            unit.contains("ExecStart=/usr/local/bin/mkstick-nfs-image\n")
                && unit.contains("Before=mkstick-nfs.service\n")
                && unit.contains("After=dev-disk-by\\x2dpartlabel-MKSTICK.device\n"),
            "{unit}"
        );
        let exports = file("/etc/mkstick/nfs.exports").unwrap();
        assert!(
            exports.contains("/export 10.0.0.0/8(rw,sync,no_subtree_check,no_root_squash,fsid=0)"),
            "{exports}"
        );
        assert!(file("/etc/exports.d/mkstick.exports").is_none());
        assert!(file("/etc/systemd/system/nfs-server.service.d/50-mkstick.conf").is_none());
    }
}
