//! Where the CoreOS comes from: an OS directory with `os.json` -> [`OsDir`].
//! This is the acquire stage: the OS and the Kubernetes release
//! ([`kubernetes`]) are downloaded, verified and cached here.
//!
//! Local OS directories and downloaded ones ([`fetch`]) share this format. Every
//! file named in `os.json` carries a sha256; the big files are checked while
//! they are copied onto the stick, the small EFI files when they are read.

pub mod cache;
pub mod download;
pub mod fcos;
pub mod fetch;
pub mod flatcar;
pub mod iso9660;
pub mod kubernetes;
pub mod live;
pub mod registry;
pub mod release;
pub mod source;
pub mod verify;

use crate::config::types::KernelArg;
use crate::config::SourceError;
use crate::io::{self, Sha256Digest};
use anyhow::{bail, Context, Result};
use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};

pub const MANIFEST_NAME: &str = "os.json";
pub const FORMAT: u32 = 1;

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct OsManifest {
    pub format: u32,
    /// A short machine name: `fedora-coreos`, `flatcar`, `debian-test-os`.
    pub id: String,
    pub name: String,
    pub version: String,
    pub kernel: FileRef,
    pub initramfs: FileRef,
    /// A newc cpio holding `root.squashfs`, loaded as a second initrd
    /// (Fedora CoreOS). Flatcar has none: its `/usr` image is the initramfs.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rootfs: Option<FileRef>,
    pub efi: EfiSource,
    /// Where on the EFI partition GRUB looks for `grub.cfg`.
    pub grub_cfg: Vec<String>,
    pub kernel_args: Vec<KernelArg>,
    /// Where in the initramfs the Ignition config belongs (`config.ign` for FCOS).
    pub ignition_config_path: String,
    /// How this OS can serve NFS: `kernel` when it ships the kernel NFS
    /// server's tools (Flatcar, Debian), `container` when it does not
    /// (Fedora CoreOS). Older OS directories without it mean `kernel`.
    #[serde(default, skip_serializing_if = "NfsServer::is_default")]
    pub nfs_server: NfsServer,
    /// What configures the network: NetworkManager (Fedora CoreOS) or
    /// systemd-networkd (Flatcar, the Debian test OS). Older OS
    /// directories without it cannot take a static address.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub network: Option<NetworkStack>,
    /// Why this OS's kernel cannot boot under Secure Boot through the EFI
    /// chain on the stick (Flatcar: "Flatcar's kernel is not signed by
    /// Fedora's shim"). GRUB then says so and halts when Secure Boot is on,
    /// instead of failing to load the kernel.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub secure_boot_unsupported: Option<String>,
    /// The RAM the OS documents for running live with its root filesystem
    /// in RAM, in MiB (Fedora CoreOS 4096, Flatcar 3072).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub min_ram_mib: Option<u64>,
    /// Where mkstick's node scripts go: a directory Ignition can write and
    /// systemd can run from. Fedora CoreOS: `/usr/local/bin` (a link into
    /// `/var/usrlocal`, labelled for binaries); Flatcar: `/opt/bin`
    /// (flatcar/baselayout `tmpfiles.d/baselayout.conf`).
    #[serde(
        default = "default_bin_dir",
        skip_serializing_if = "is_default_bin_dir"
    )]
    pub bin_dir: String,
    /// Trees the booted OS mounts read-only: Ignition fails on any file
    /// under them. Both Fedora CoreOS and Flatcar mount `/usr` read-only.
    #[serde(
        default = "default_read_only",
        skip_serializing_if = "is_default_read_only"
    )]
    pub read_only: Vec<String>,
    /// Links inside those trees to writable places, which Ignition follows
    /// (ignition `internal/exec/util/util.go` JoinPath, docs/operator-notes
    /// "Path Traversal and Following Symlinks"): Fedora CoreOS's
    /// `/usr/local -> ../var/usrlocal`. Flatcar has none.
    #[serde(
        default = "default_writable_links",
        skip_serializing_if = "is_default_writable_links"
    )]
    pub writable_links: Vec<String>,
}

fn default_bin_dir() -> String {
    "/usr/local/bin".into()
}
fn is_default_bin_dir(d: &String) -> bool {
    *d == default_bin_dir()
}
fn default_read_only() -> Vec<String> {
    vec!["/usr".into()]
}
fn is_default_read_only(v: &Vec<String>) -> bool {
    *v == default_read_only()
}
fn default_writable_links() -> Vec<String> {
    vec!["/usr/local".into()]
}
fn is_default_writable_links(v: &Vec<String>) -> bool {
    *v == default_writable_links()
}

impl OsManifest {
    /// The read-only tree `path` lies in, if Ignition cannot write it on
    /// this OS.
    pub fn read_only_tree(&self, path: &str) -> Option<&str> {
        let under = |tree: &str| {
            path == tree || path.starts_with(&format!("{}/", tree.trim_end_matches('/')))
        };
        if self.writable_links.iter().any(|w| under(w)) {
            return None;
        }
        self.read_only.iter().find(|t| under(t)).map(String::as_str)
    }
}

/// What configures the network on an OS, and so what a static address is
/// written for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum NetworkStack {
    /// NetworkManager keyfiles (Fedora CoreOS).
    NetworkManager,
    /// systemd-networkd units (Flatcar).
    Networkd,
}

/// Where the NFS server of the data export comes from.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum NfsServer {
    /// The OS's own `nfs-server.service` (nfs-utils).
    #[default]
    Kernel,
    /// The kernel's nfsd driven from a podman container (quadlet).
    Container,
}

impl NfsServer {
    fn is_default(&self) -> bool {
        *self == NfsServer::Kernel
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FileRef {
    pub path: String,
    pub sha256: Sha256Digest,
    /// The file name its publisher signed it as, for a fetched OS: the cache
    /// trusts the file as that one only ([`cache::SignedRecord::trusted`]).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub signed_as: Option<String>,
}

/// The OS's EFI boot chain: a directory tree, or a FAT image (FCOS's `efiboot.img`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum EfiSource {
    Dir(EfiDir),
    FatImage(FileRef),
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EfiDir {
    pub path: String,
    pub files: Vec<FileRef>,
}

/// A loaded OS directory whose files were all found.
#[derive(Debug, Clone)]
pub struct OsDir {
    pub dir: PathBuf,
    pub manifest: OsManifest,
}

/// One file of the OS, as found on disk.
#[derive(Debug, Clone, PartialEq)]
pub struct OsFile {
    pub path: PathBuf,
    pub size_bytes: u64,
    pub sha256: Sha256Digest,
}

/// One file of the EFI boot chain, read and checked.
#[derive(Debug, Clone, PartialEq)]
pub struct EfiFile {
    /// Path on the EFI partition, `/`-separated, no leading slash.
    pub esp_path: String,
    pub contents: Vec<u8>,
}

/// The publisher's kernel arguments, parsed ([`KernelArg`] refuses quotes).
pub fn kernel_args(args: &[&str]) -> Result<Vec<KernelArg>> {
    args.iter()
        .map(|a| a.parse::<KernelArg>().map_err(|e| anyhow::anyhow!(e)))
        .collect()
}

/// The EFI boot chain of a downloaded OS: Fedora's efiboot.img, as
/// `efiboot.img` in the OS directory.
pub fn efiboot_image(sha256: Sha256Digest, signed_as: String) -> EfiSource {
    EfiSource::FatImage(FileRef {
        path: "efiboot.img".to_string(),
        sha256,
        signed_as: Some(signed_as),
    })
}

/// A relative path that stays inside its directory.
fn check_rel_path(what: &str, p: &str) -> Result<()> {
    let bad = p.is_empty()
        || p.starts_with('/')
        || p.contains('\\')
        || p.split('/').any(|c| c.is_empty() || c == "." || c == "..");
    if bad {
        bail!("{what} `{p}` must be a relative path inside the directory, without `.` or `..`");
    }
    Ok(())
}

impl OsDir {
    /// Read `dir/os.json` and check that the files it names exist.
    pub fn load(dir: &Path) -> Result<OsDir> {
        let manifest_path = dir.join(MANIFEST_NAME);
        let text = std::fs::read_to_string(&manifest_path).with_context(|| {
            format!(
                "reading {}; an OS directory holds os.json (see README.md, \"The OS directory\")",
                manifest_path.display()
            )
        })?;
        let manifest: OsManifest = serde_json::from_str(&text).map_err(|e| {
            SourceError::json(
                &manifest_path,
                &text,
                &e,
                "fix os.json or rebuild the OS directory",
            )
        })?;
        if manifest.format != FORMAT {
            bail!(
                "{}: format {} is not one this mkstick reads (it reads format {FORMAT}); use a matching mkstick or rebuild the OS directory",
                manifest_path.display(),
                manifest.format
            );
        }
        let os = OsDir {
            dir: dir.to_path_buf(),
            manifest,
        };
        os.check_paths()
            .with_context(|| format!("checking {}", manifest_path.display()))?;
        Ok(os)
    }

    fn check_paths(&self) -> Result<()> {
        let m = &self.manifest;
        for (what, f) in self.main_refs() {
            check_rel_path(what, &f.path)?;
        }
        match &m.efi {
            EfiSource::Dir(d) => {
                check_rel_path("efi.dir.path", &d.path)?;
                if d.files.is_empty() {
                    bail!("efi.dir.files is empty; list the EFI boot files with their sha256");
                }
                for f in &d.files {
                    check_rel_path("an EFI file", &f.path)?;
                }
            }
            EfiSource::FatImage(f) => check_rel_path("efi.fat-image.path", &f.path)?,
        }
        if m.grub_cfg.is_empty() {
            bail!("grub-cfg is empty; name where GRUB reads grub.cfg, e.g. \"EFI/BOOT/grub.cfg\"");
        }
        for g in &m.grub_cfg {
            check_rel_path("grub-cfg", g)?;
        }
        check_rel_path("ignition-config-path", &m.ignition_config_path)?;
        if let Some(a) = m
            .kernel_args
            .iter()
            .find(|a| a.as_str().starts_with("console="))
        {
            bail!("kernel-args holds `{a}`; leave console= out, mkstick sets it from [boot] serial-console");
        }
        Ok(())
    }

    fn main_refs(&self) -> Vec<(&'static str, &FileRef)> {
        let m = &self.manifest;
        let mut refs = vec![("kernel", &m.kernel), ("initramfs", &m.initramfs)];
        if let Some(r) = &m.rootfs {
            refs.push(("rootfs", r));
        }
        refs
    }

    /// Stat one referenced file.
    fn stat(&self, what: &str, f: &FileRef) -> Result<OsFile> {
        let path = self.dir.join(&f.path);
        let meta = std::fs::metadata(&path).with_context(|| {
            format!(
                "the OS's {what} {} is missing; os.json names it, so the OS directory is incomplete: rebuild or re-download it",
                path.display()
            )
        })?;
        if !meta.is_file() {
            bail!("the OS's {what} {} is not a regular file", path.display());
        }
        Ok(OsFile {
            path,
            size_bytes: meta.len(),
            sha256: f.sha256,
        })
    }

    pub fn kernel(&self) -> Result<OsFile> {
        self.stat("kernel", &self.manifest.kernel)
    }

    pub fn initramfs(&self) -> Result<OsFile> {
        self.stat("initramfs", &self.manifest.initramfs)
    }

    pub fn rootfs(&self) -> Result<Option<OsFile>> {
        self.manifest
            .rootfs
            .as_ref()
            .map(|r| self.stat("rootfs", r))
            .transpose()
    }

    /// Read the EFI boot files and check each one's sha256.
    pub fn efi_files(&self) -> Result<Vec<EfiFile>> {
        let mut out = Vec::new();
        match &self.manifest.efi {
            EfiSource::Dir(d) => {
                for f in &d.files {
                    let file = self.stat(
                        "EFI file",
                        &FileRef {
                            path: format!("{}/{}", d.path, f.path),
                            sha256: f.sha256,
                            signed_as: None,
                        },
                    )?;
                    let contents = std::fs::read(&file.path)
                        .with_context(|| format!("reading {}", file.path.display()))?;
                    check_digest(&file.path, f.sha256, Sha256Digest::of(&contents))?;
                    out.push(EfiFile {
                        esp_path: f.path.clone(),
                        contents,
                    });
                }
            }
            EfiSource::FatImage(f) => {
                let file = self.stat("EFI image", f)?;
                let bytes = std::fs::read(&file.path)
                    .with_context(|| format!("reading {}", file.path.display()))?;
                check_digest(&file.path, f.sha256, Sha256Digest::of(&bytes))?;
                out = crate::formats::fat::read_tree(&bytes)
                    .with_context(|| format!("reading the FAT image {}", file.path.display()))?
                    .into_iter()
                    .map(|(esp_path, contents)| EfiFile { esp_path, contents })
                    .collect();
            }
        }
        out.sort_by(|a, b| a.esp_path.cmp(&b.esp_path));
        check_efi_layout(&out).with_context(|| {
            format!(
                "the EFI boot files of {} cannot go on a stick",
                self.dir.display()
            )
        })?;
        Ok(out)
    }

    /// Read every big file once and compare its sha256 with os.json; with
    /// a rootfs, check the [`live`] contract in the same pass.
    pub fn verify(&self, mut on_read: impl FnMut(u64)) -> Result<()> {
        let live_boot = self.manifest.rootfs.is_some();
        let mut scans = Vec::new();
        for (what, f) in self.main_refs() {
            let file = self.stat(what, f)?;
            let reader = std::fs::File::open(&file.path)
                .with_context(|| format!("opening {}", file.path.display()))?;
            let reader = io::ProgressReader::new(reader, &mut on_read);
            let scanner: Option<live::Scanner> = match what {
                "initramfs" if live_boot => Some(live::scan_initramfs),
                "rootfs" => Some(live::scan_rootfs),
                _ => None,
            };
            let ((got, _), scanned) = live::read_beside(reader, scanner, |r| {
                io::sha256_reader(r).with_context(|| format!("reading {}", file.path.display()))
            })?;
            if let Some(scanned) = scanned {
                scans.push((file.path.clone(), scanned));
            }
            check_digest(&file.path, f.sha256, got)?;
        }
        // main_refs: the initramfs, then the rootfs.
        let mut scans = scans.into_iter();
        if let (Some((initramfs, i)), Some((rootfs, r))) = (scans.next(), scans.next()) {
            live::check(
                &self.manifest.name,
                &self.dir,
                (&initramfs, i),
                (&rootfs, r),
            )?;
        }
        self.efi_files()?;
        Ok(())
    }
}

/// The firmware's removable-media path (UEFI 2.10, 3.5.1.1): what a stick
/// boots through. On a shim chain it is shim, with GRUB beside it.
pub const REMOVABLE_LOADER: &str = "EFI/BOOT/BOOTX64.EFI";

/// A boot chain a stick can carry: it boots through [`REMOVABLE_LOADER`],
/// and it holds no shim fallback. When shim finds `fbx64.efi` beside it,
/// it runs it, and the fallback reads every `BOOT*.CSV` under `\EFI\` and
/// writes boot entries into the firmware's NVRAM (rhboot/shim
/// `README.fallback`, `fallback.c`): a stick must never change the server's
/// boot order. Fedora CoreOS's `efiboot.img` carries neither (osbuild
/// `osbuild/util/makeefi.py`).
pub fn check_efi_layout(files: &[EfiFile]) -> Result<()> {
    if !files
        .iter()
        .any(|f| f.esp_path.eq_ignore_ascii_case(REMOVABLE_LOADER))
    {
        bail!("there is no {REMOVABLE_LOADER}, the loader a firmware boots a stick through");
    }
    for f in files {
        let name = f
            .esp_path
            .rsplit('/')
            .next()
            .unwrap_or_default()
            .to_ascii_lowercase();
        if name == "fbx64.efi" {
            bail!(
                "{} is shim's fallback loader, which writes boot entries into the server's firmware; use a boot chain without it",
                f.esp_path
            );
        }
        if name.starts_with("boot") && name.ends_with(".csv") {
            bail!(
                "{} tells shim's fallback loader which boot entries to write into the server's firmware; use a boot chain without it",
                f.esp_path
            );
        }
    }
    Ok(())
}

/// The error every sha256 mismatch of an OS file gives.
pub fn check_digest(path: &Path, want: Sha256Digest, got: Sha256Digest) -> Result<()> {
    if want != got {
        bail!(
            "sha256 mismatch for {}: os.json says {want}, the file has {got}; the OS directory is damaged or was changed after os.json was written: rebuild or re-download it",
            path.display()
        );
    }
    Ok(())
}

#[cfg(test)]
mod efi_layout_tests {
    use super::*;

    fn files(paths: &[&str]) -> Vec<EfiFile> {
        paths
            .iter()
            .map(|p| EfiFile {
                esp_path: p.to_string(),
                contents: Vec::new(),
            })
            .collect()
    }

    #[test]
    fn a_stick_boots_through_the_removable_path_without_shims_fallback() {
        // Fedora CoreOS's efiboot.img layout.
        let fcos = [
            "EFI/BOOT/BOOTX64.EFI",
            "EFI/BOOT/grub.cfg",
            "EFI/BOOT/grubx64.efi",
            "EFI/BOOT/mmx64.efi",
            "EFI/fedora/grub.cfg",
        ];
        check_efi_layout(&files(&fcos)).unwrap();
        for (extra, want) in [
            ("EFI/BOOT/fbx64.efi", "shim's fallback loader"),
            ("EFI/BOOT/FBX64.EFI", "shim's fallback loader"),
            ("EFI/fedora/BOOTX64.CSV", "boot entries"),
            ("EFI/debian/BOOT.CSV", "boot entries"),
        ] {
            let mut with = fcos.to_vec();
            with.push(extra);
            let e = check_efi_layout(&files(&with)).unwrap_err().to_string();
            assert!(e.starts_with(extra) && e.contains(want), "{e}");
        }
        let e = check_efi_layout(&files(&["EFI/fedora/shimx64.efi"]))
            .unwrap_err()
            .to_string();
        assert!(e.contains("no EFI/BOOT/BOOTX64.EFI"), "{e}");
    }
}
