//! Stage 1: [`LoadedConfig`] + OS directory -> immutable [`Plan`].
//!
//! All validation happens here. The Plan holds every resolved input (with
//! its hash), the boot command line and the IDs derived from the seed; later
//! stages never look at the raw config again.

pub mod kubernetes;
pub mod network;
pub mod storage;

use crate::config::types::{KernelArg, PasswordHash};
use crate::config::{LoadedConfig, MainConsole, NodeConfig, SourceError};
use crate::io::{hex, Sha256Digest};
use crate::os::kubernetes::CachedBinary;
use crate::os::registry::{PulledImage, WantedImage};
use crate::os::NfsServer;
use crate::os::{EfiFile, OsDir, OsFile};
pub use crate::overlays::OverlayFile;
use anyhow::{bail, Result};
use sha2::{Digest, Sha256, Sha512};
use std::path::PathBuf;

pub const MKSTICK_VERSION: &str = env!("CARGO_PKG_VERSION");

/// RAM a single-node control plane adds: kubeadm's preflight wants 1700 MB
/// on a control-plane node (kubernetes `cmd/kubeadm/app/constants`
/// ControlPlaneMem, checked by `app/preflight` MemCheck); rounded up.
pub const KUBERNETES_RAM_MIB: u64 = 2048;

/// The newest Ignition spec a merged fragment may use: the one mkstick emits.
const NEWEST_FRAGMENT_SPEC: (u32, u32) = (3, 3);

/// How the IDs of the image are chosen.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub enum SeedChoice {
    /// Derived from the inputs: the same inputs give the same image.
    #[default]
    Derived,
    /// `--seed TEXT`.
    Given(String),
    /// `--random-guids`.
    Random,
}

/// What the command line adds to the config.
#[derive(Debug, Clone, Default)]
pub struct PlanArgs {
    /// The OS directory, local or fetched ([`crate::os::fetch::acquire`]).
    pub os_dir: PathBuf,
    /// The Kubernetes binaries the same call fetched, in the table's order.
    pub kubernetes_binaries: Vec<CachedBinary>,
    /// The images the same call pulled, in [`wanted_images`]' order.
    pub images: Vec<PulledImage>,
    pub seed: SeedChoice,
    /// `SOURCE_DATE_EPOCH`, read by the caller.
    pub source_date_epoch: Option<i64>,
}

/// What the config alone decides. [`check_config`] makes it before anything
/// is downloaded, so that a mistake in the config costs no download.
#[derive(Debug, Clone)]
pub struct ConfigChecked {
    pub node: NodeConfig,
    pub extra_ignition: Vec<ExtraIgnition>,
    /// `[storage]`, served by the OS's NFS server once the OS is known.
    pub storage: Option<storage::StoragePlan>,
    /// `[kubernetes]`, whole: its table names the binaries to fetch.
    pub kubernetes: Option<kubernetes::KubernetesPlan>,
    /// `[network]`: DHCP or a static address.
    pub network: network::NetworkPlan,
}

#[derive(Debug, Clone)]
pub struct Plan {
    pub config_path: PathBuf,
    pub config_sha256: Sha256Digest,
    pub redacted_config: String,
    pub node: NodeConfig,
    pub os: OsDir,
    pub kernel: OsFile,
    pub initramfs: OsFile,
    /// The second initrd holding the root filesystem, where the OS has one.
    pub rootfs: Option<OsFile>,
    pub efi_files: Vec<EfiFile>,
    pub serial_console: bool,
    /// Which console is `/dev/console`.
    pub main_console: MainConsole,
    /// The whole kernel command line: the OS's, the console, the user's.
    pub kernel_args: Vec<KernelArg>,
    pub overlay: Vec<OverlayFile>,
    /// `[storage]`: the data drives; `None` keeps nothing across reboots.
    pub storage: Option<storage::StoragePlan>,
    /// `[kubernetes]`: the cluster the node starts (needs `storage`).
    pub kubernetes: Option<kubernetes::KubernetesPlan>,
    /// `[network]`: DHCP, or the static address's file in `overlay`.
    pub network: network::NetworkPlan,
    /// The files of `kubernetes`'s table, acquired like the OS.
    pub kubernetes_binaries: Vec<CachedBinary>,
    /// The container images on the stick for containerd, each verified, in
    /// the cache.
    pub images: Vec<PulledImage>,
    /// The NFS server's image, for podman, on an OS that runs its NFS
    /// server in a container.
    pub nfs_image: Option<(WantedImage, PulledImage)>,
    pub extra_ignition: Vec<ExtraIgnition>,
    pub ids: Ids,
    pub source_date_epoch: Option<i64>,
}

/// A user Ignition config merged over mkstick's.
#[derive(Debug, Clone)]
pub struct ExtraIgnition {
    /// As written in the config.
    pub name: String,
    pub path: PathBuf,
    pub contents: Vec<u8>,
    pub sha256: Sha256Digest,
    pub sha512_hex: String,
}

/// Every ID in the image, derived from one seed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Ids {
    pub seed: [u8; 32],
    pub disk_guid: uuid::Uuid,
    pub esp_guid: uuid::Uuid,
    pub volume_id: u32,
}

impl Ids {
    /// `sha256(seed ‖ label)`, the first 16 bytes made a version-4 UUID.
    pub fn from_seed(seed: [u8; 32]) -> Ids {
        let derive = |label: &str| -> [u8; 32] {
            let mut h = Sha256::new();
            h.update(seed);
            h.update(label.as_bytes());
            h.finalize().into()
        };
        let uuid = |label: &str| {
            let d = derive(label);
            let mut b = [0u8; 16];
            b.copy_from_slice(&d[..16]);
            uuid::Builder::from_random_bytes(b).into_uuid()
        };
        let v = derive("fat-volume-id");
        Ids {
            seed,
            disk_guid: uuid("disk"),
            esp_guid: uuid("esp"),
            volume_id: u32::from_be_bytes([v[0], v[1], v[2], v[3]]),
        }
    }

    pub fn seed_hex(&self) -> String {
        hex(&self.seed)
    }
}

/// Every check that needs only the config (and the files it names).
pub fn check_config(loaded: &LoadedConfig) -> Result<ConfigChecked> {
    let cfg = &loaded.config;
    let node = cfg.node.clone();
    if node.ssh_authorized_keys.is_empty() && node.password_hash.is_none() {
        bail!(
            "{}: [node] has neither ssh-authorized-keys nor password-hash, so nobody could log in; add ssh-authorized-keys = [\"ssh-ed25519 AAAA... you@laptop\"] (your ~/.ssh/id_ed25519.pub)",
            loaded.path.display()
        );
    }
    if let (false, Some(c)) = (cfg.boot.serial_console, &cfg.boot.console) {
        if *c.get_ref() == MainConsole::Serial {
            return Err(loaded
                .error_at(
                    c,
                    "console = \"serial\" makes the serial port the main console, but serial-console = false turns it off; set serial-console = true, or console = \"screen\"".to_string(),
                )
                .into());
        }
    }
    let network = network::NetworkPlan::from_config(loaded)?;
    let kubernetes = kubernetes::KubernetesPlan::from_config(loaded, &network)?;
    let extra_ignition = cfg
        .extra
        .ignition
        .iter()
        .map(|p| load_fragment(loaded, p))
        .collect::<Result<Vec<_>>>()?;
    // Each feature states what it needs of the storage.
    let needs = match &kubernetes {
        Some(_) => kubernetes::KubernetesPlan::storage_needs(),
        None => storage::StorageNeeds::default(),
    };
    let storage = cfg
        .storage
        .as_ref()
        .map(|s| storage::StoragePlan::from_config(loaded, s, &needs))
        .transpose()?;
    Ok(ConfigChecked {
        node,
        extra_ignition,
        storage,
        kubernetes,
        network,
    })
}

/// Every image the stick carries, in the order they are pulled: the
/// cluster's ([`kubernetes::KubernetesPlan::wanted_images`]), then the NFS
/// server's when the OS runs its NFS server in a container ([`nfs_wanted`]).
/// Known before anything is downloaded.
pub fn wanted_images(
    storage: Option<&storage::StoragePlan>,
    kubernetes: Option<&kubernetes::KubernetesPlan>,
    nfs_server: NfsServer,
) -> Result<Vec<WantedImage>> {
    let mut out = kubernetes.map(|k| k.wanted_images()).unwrap_or_default();
    out.extend(nfs_wanted(storage, kubernetes, nfs_server)?);
    Ok(out)
}

/// The NFS server's image, for [`storage`] on an OS without an NFS server
/// of its own: `[storage] nfs-image` when set, else the one a user's
/// binaries table lists (its `nfs`), else mkstick's own reference, a tag
/// resolved at build time. A user's table that lists images but not this
/// one is refused (unless `nfs-image` pins it), so that a stick built from
/// a mirror takes nothing from elsewhere.
pub fn nfs_wanted(
    storage: Option<&storage::StoragePlan>,
    kubernetes: Option<&kubernetes::KubernetesPlan>,
    nfs_server: NfsServer,
) -> Result<Option<WantedImage>> {
    let Some(storage) = storage else {
        return Ok(None);
    };
    if nfs_server != NfsServer::Container {
        return Ok(None);
    }
    if let Some((reference, named_in)) = &storage.nfs.pinned_image {
        return Ok(Some(WantedImage {
            reference: reference.clone(),
            pinned: true,
            named_in: named_in.clone(),
        }));
    }
    if let Some(k) = kubernetes {
        if let Some(i) = k.nfs_image() {
            return Ok(Some(WantedImage {
                reference: i.reference.clone(),
                pinned: true,
                named_in: k.table_name(),
            }));
        }
        if k.table.source.is_some() && !k.table.images.is_empty() {
            bail!(
                "{}: `images` lists no `{}` image, which this OS needs: it ships no NFS server, so a container runs one (README: \"NFS on Fedora CoreOS\"). Add it, as {}:TAG@sha256:DIGEST or your mirror's copy, or pin it in mkstick.toml as [storage] nfs-image",
                k.table_name(),
                crate::os::kubernetes::NFS_IMAGE_ROLE,
                storage::NFS_CONTAINER_REPOSITORY
            );
        }
    }
    Ok(Some(WantedImage {
        reference: storage::NFS_CONTAINER_IMAGE
            .parse()
            .expect("mkstick's NFS image reference parses"),
        pinned: false,
        named_in:
            "mkstick's own NFS server image (src/plan/storage.rs; pin it with [storage] nfs-image)"
                .to_string(),
    }))
}

/// Resolve everything the stick needs from the checked config and the OS.
pub fn plan(loaded: &LoadedConfig, checked: ConfigChecked, args: &PlanArgs) -> Result<Plan> {
    let cfg = &loaded.config;
    let ConfigChecked {
        node,
        extra_ignition,
        mut storage,
        kubernetes,
        network,
    } = checked;

    let os = OsDir::load(&args.os_dir)?;
    let kernel = os.kernel()?;
    let initramfs = os.initramfs()?;
    let rootfs = os.rootfs()?;
    let efi_files = os.efi_files()?;

    let mut kernel_args = os.manifest.kernel_args.clone();
    // The main console last: the kernel makes it /dev/console.
    let console: &[&str] = match (cfg.boot.serial_console, cfg.boot.main_console()) {
        (false, _) => &["console=tty0"],
        (true, MainConsole::Screen) => &["console=ttyS0,115200n8", "console=tty0"],
        (true, MainConsole::Serial) => &["console=tty0", "console=ttyS0,115200n8"],
    };
    kernel_args.extend(
        console
            .iter()
            .map(|c| c.parse().expect("console args are valid")),
    );
    kernel_args.extend(cfg.boot.kernel_args.iter().cloned());

    if let Some(s) = &mut storage {
        s.nfs.server = os.manifest.nfs_server;
    }
    let kubernetes_binaries = args.kubernetes_binaries.clone();
    let table = kubernetes.as_ref().map_or(&[][..], |k| &k.table.files[..]);
    let pinned = table.iter().map(|f| (&f.name, f.sha256));
    if !kubernetes_binaries
        .iter()
        .map(|b| (&b.name, b.sha256))
        .eq(pinned)
    {
        bail!("the Kubernetes binaries given to the plan are not the ones [kubernetes] pins; acquire them with the same table");
    }
    let mut images = args.images.clone();
    let mut wanted = wanted_images(
        storage.as_ref(),
        kubernetes.as_ref(),
        os.manifest.nfs_server,
    )?;
    if images.len() != wanted.len() || !wanted.iter().zip(&images).all(|(w, p)| w.is(p)) {
        bail!("the images given to the plan are not the ones the table pins; acquire them with the same table");
    }
    let nfs_image = match nfs_wanted(
        storage.as_ref(),
        kubernetes.as_ref(),
        os.manifest.nfs_server,
    )? {
        Some(_) => wanted.pop().zip(images.pop()),
        None => None,
    };
    if let Some(s) = &mut storage {
        s.nfs.image = nfs_image.as_ref().map(|(_, p)| p.reference.clone());
    }
    let bin_dir = os.manifest.bin_dir.as_str();
    let mut overlay = crate::overlays::group_files("base", bin_dir)?;
    if let Some(s) = &network.static_address {
        let Some(stack) = os.manifest.network else {
            bail!(
                "[network] sets the static address {}, but {} does not say what configures its network (no \"network\" in its os.json); rebuild that OS directory with this mkstick (scripts/build-test-os, or `mkstick fetch`), or leave [network] out to use DHCP",
                s.address,
                args.os_dir.join(crate::os::MANIFEST_NAME).display()
            );
        };
        overlay.extend(network.overlay(stack));
    }
    if let Some(s) = &storage {
        overlay.extend(s.overlay(bin_dir)?);
    }
    if let Some(k) = &kubernetes {
        let s = storage
            .as_ref()
            .expect("check_config refuses [kubernetes] without [storage]");
        overlay.extend(k.overlay(
            node.hostname.as_str(),
            s,
            crate::formats::gpt::ESP_NAME,
            bin_dir,
            &images,
        )?);
    }

    let mut plan = Plan {
        config_path: loaded.path.clone(),
        config_sha256: loaded.sha256(),
        redacted_config: loaded.redacted_text()?,
        node,
        os,
        kernel,
        initramfs,
        rootfs,
        efi_files,
        serial_console: cfg.boot.serial_console,
        main_console: cfg.boot.main_console(),
        kernel_args,
        overlay,
        storage,
        kubernetes,
        network,
        kubernetes_binaries,
        images,
        nfs_image,
        extra_ignition,
        ids: Ids::from_seed([0; 32]),
        source_date_epoch: args.source_date_epoch,
    };
    let seed: [u8; 32] = match &args.seed {
        SeedChoice::Derived => plan.fingerprint(),
        SeedChoice::Given(text) => Sha256::digest(text.as_bytes()).into(),
        SeedChoice::Random => {
            let mut s = [0u8; 32];
            s[..16].copy_from_slice(uuid::Uuid::new_v4().as_bytes());
            s[16..].copy_from_slice(uuid::Uuid::new_v4().as_bytes());
            s
        }
    };
    plan.ids = Ids::from_seed(seed);
    Ok(plan)
}

impl Plan {
    /// Each image on the stick with what asked for it.
    pub fn carried_images(&self) -> Vec<(crate::os::registry::WantedImage, &PulledImage)> {
        let wanted = self
            .kubernetes
            .as_ref()
            .map(|k| k.wanted_images())
            .unwrap_or_default();
        wanted.into_iter().zip(&self.images).collect()
    }

    /// The least RAM the server needs, in MiB: the OS's documented minimum
    /// for running from RAM, plus the control plane's. `None` when the OS
    /// states none.
    pub fn min_ram_mib(&self) -> Option<u64> {
        let k8s = if self.kubernetes.is_some() {
            KUBERNETES_RAM_MIB
        } else {
            0
        };
        self.os.manifest.min_ram_mib.map(|os| os + k8s)
    }

    /// A hash of every input that reaches the image: the default seed.
    pub fn fingerprint(&self) -> [u8; 32] {
        let mut h = Sha256::new();
        let mut field = |name: &str, value: &[u8]| {
            h.update((name.len() as u64).to_le_bytes());
            h.update(name.as_bytes());
            h.update((value.len() as u64).to_le_bytes());
            h.update(value);
        };
        field("mkstick", MKSTICK_VERSION.as_bytes());
        field("config", &self.config_sha256.0);
        let os = serde_json::to_vec(&self.os.manifest).expect("the OS manifest serializes");
        field("os", &os);
        for x in &self.extra_ignition {
            field("extra", &x.sha256.0);
        }
        for b in &self.kubernetes_binaries {
            field(&b.name, &b.sha256.0);
        }
        for i in self
            .images
            .iter()
            .chain(self.nfs_image.as_ref().map(|(_, p)| p))
        {
            field(&i.reference.to_string(), &i.manifest.digest.0);
        }
        for o in &self.overlay {
            let (name, bytes) = match o {
                OverlayFile::Unit { name, contents } => (name.as_str(), contents.as_bytes()),
                OverlayFile::File { path, contents, .. } => (path.as_str(), contents.as_slice()),
            };
            field(name, bytes);
        }
        field(
            "source-date-epoch",
            self.source_date_epoch
                .map(|e| e.to_string())
                .unwrap_or_default()
                .as_bytes(),
        );
        h.finalize().into()
    }

    /// `/etc/mkstick/release`: shell-sourceable facts about this stick.
    pub fn release_file(&self) -> String {
        let quote = |s: &str| format!("'{}'", s.replace('\'', r"'\''"));
        let m = &self.os.manifest;
        [
            ("MKSTICK_VERSION", MKSTICK_VERSION),
            ("OS_ID", &m.id),
            ("OS_NAME", &m.name),
            ("OS_VERSION", &m.version),
            ("STICK_ID", &self.ids.seed_hex()[..12]),
        ]
        .iter()
        .map(|(k, v)| format!("{k}={}\n", quote(v)))
        .chain(
            self.min_ram_mib()
                .map(|mib| format!("MIN_RAM_MIB={}\n", quote(&mib.to_string()))),
        )
        .collect()
    }

    pub fn password_hash(&self) -> Option<&PasswordHash> {
        self.node.password_hash.as_ref()
    }
}

/// Read one `[extra] ignition` file and check that Ignition can merge it.
pub fn load_fragment(loaded: &LoadedConfig, p: &toml::Spanned<PathBuf>) -> Result<ExtraIgnition> {
    let path = loaded.resolve(p.get_ref());
    let contents = std::fs::read(&path).map_err(|e| {
        loaded.error_at(
            p,
            format!(
                "cannot read the extra Ignition config {}: {e}; fix the path or remove it from [extra] ignition",
                path.display()
            ),
        )
    })?;
    let text = String::from_utf8_lossy(&contents);
    #[derive(serde::Deserialize)]
    struct Head {
        ignition: Option<HeadIgnition>,
    }
    #[derive(serde::Deserialize)]
    struct HeadIgnition {
        version: Option<String>,
    }
    let head: Head = serde_json::from_slice(&contents).map_err(|e| {
        SourceError::json(
            &path,
            &text,
            &e,
            "an [extra] ignition file must be an Ignition config (JSON), not Butane YAML",
        )
    })?;
    let version = head.ignition.and_then(|i| i.version).ok_or_else(|| {
        anyhow::anyhow!(
            "{}: no ignition.version; an Ignition config starts with {{\"ignition\": {{\"version\": \"3.3.0\"}}}}",
            path.display()
        )
    })?;
    let parsed: Option<(u32, u32)> = version
        .strip_prefix("3.")
        .and_then(|rest| rest.split('.').next())
        .and_then(|minor| minor.parse().ok())
        .map(|minor| (3, minor));
    match parsed {
        Some(v) if v <= NEWEST_FRAGMENT_SPEC && !version.contains("experimental") => {}
        _ => bail!(
            "{}: Ignition spec {version} cannot be merged into mkstick's 3.3.0 config; write it as spec 3.0.0 to 3.3.0 (Butane: variant fcos, version 1.4.0 or 1.5.0)",
            path.display()
        ),
    }
    Ok(ExtraIgnition {
        name: p.get_ref().display().to_string(),
        path,
        sha256: Sha256Digest::of(&contents),
        sha512_hex: hex(&Sha512::digest(&contents)),
        contents,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn checked(text: &str) -> ConfigChecked {
        let config = crate::config::parse(std::path::Path::new("mkstick.toml"), text).unwrap();
        let loaded = LoadedConfig {
            path: "mkstick.toml".into(),
            text: text.to_string(),
            config,
        };
        check_config(&loaded).unwrap()
    }

    #[test]
    fn the_nfs_image_is_wanted_only_where_a_container_serves_nfs() {
        let node = "[node]\nhostname = \"kube1\"\nssh-authorized-keys = [\"ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIIiI12AOmJheE4nbgJvDhe47oAV8xqWv1169OlfLBIpZ test@mkstick\"]\n\n".to_string();
        let pool = format!("{node}[storage]\ndrives = [\"/dev/disk/by-id/virtio-a\"]\n\n");
        let wanted = |text: &str, server: NfsServer| {
            let c = checked(text);
            wanted_images(c.storage.as_ref(), c.kubernetes.as_ref(), server).unwrap()
        };
        // No storage, or an OS with its own NFS server: not carried.
        assert!(wanted(&node, NfsServer::Container).is_empty());
        assert!(wanted(&pool, NfsServer::Kernel).is_empty());
        // Storage alone on Fedora CoreOS: mkstick's own reference, a tag
        // resolved at build time, said to be unpinned.
        let w = wanted(&pool, NfsServer::Container);
        assert_eq!(w.len(), 1);
        assert_eq!(w[0].reference.to_string(), storage::NFS_CONTAINER_IMAGE);
        assert!(!w[0].pinned && w[0].named_in.contains("src/plan/storage.rs"));
        // With the cluster on mkstick's own table: its images, then the
        // NFS server's, last (the plan takes it from the end).
        let k8s = format!("{pool}[kubernetes]\n");
        let kernel = wanted(&k8s, NfsServer::Kernel);
        let container = wanted(&k8s, NfsServer::Container);
        assert!(!kernel.is_empty());
        assert_eq!(container[..kernel.len()], kernel[..]);
        assert_eq!(container.len(), kernel.len() + 1);
        assert_eq!(
            container.last().unwrap().reference.to_string(),
            storage::NFS_CONTAINER_IMAGE
        );
    }

    #[test]
    fn ids_are_fixed_by_the_seed_and_are_v4_uuids() {
        let a = Ids::from_seed([1; 32]);
        assert_eq!(a, Ids::from_seed([1; 32]));
        assert_ne!(a.disk_guid, Ids::from_seed([2; 32]).disk_guid);
        assert_ne!(a.disk_guid, a.esp_guid);
        assert_eq!(a.disk_guid.get_version_num(), 4);
        assert_eq!(a.esp_guid.get_variant(), uuid::Variant::RFC4122);
    }
}
