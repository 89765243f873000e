//! Flatcar Container Linux: a channel's release files -> verified PXE
//! artifacts -> an OS directory.
//!
//! Sources (read November 2026):
//! - Release layout: `https://<channel>.release.flatcar-linux.net/amd64-usr/
//!   <version|current>/`, with `version.txt` (shell `KEY=value` lines, from
//!   flatcar/scripts `build_image`). Each file `X` has `X.sig` (a binary
//!   detached signature), `X.DIGESTS` (`# MD5 HASH`, `# SHA1 HASH`,
//!   `# SHA512 HASH` blocks of `<hex>  <name>`; no sha256) and
//!   `X.DIGESTS.sig`/`X.DIGESTS.asc` (flatcar/scripts
//!   `ci-automation/ci_automation_common.sh`, `create_digests`,
//!   `sign_artifacts`). mkstick checks the DIGESTS file's signature, the
//!   file's sha512 from it, and the file's own signature.
//! - Boot contract (flatcar-website `docs/latest/installing/bare-metal/
//!   booting-with-pxe.md`; flatcar/bootengine `minimal-init`,
//!   `dracut/30ignition/ignition-generator`, `ignition-setup.sh`):
//!   `flatcar_production_pxe.vmlinuz` carries its initramfs built in, and
//!   `flatcar_production_pxe_image.cpio.gz` (holding `usr.squashfs`) is the
//!   one initrd; there is no separate rootfs. Ignition runs only with
//!   `flatcar.first_boot=1`. An embedded config goes in an extra cpio at
//!   `usr/share/oem/config.ign` ("Adding a Custom OEM"); the initramfs copies
//!   it to `/usr/lib/ignition/user.ign`.
//! - EFI: Flatcar's ISO boots BIOS only (isolinux, no El Torito EFI image),
//!   and its `flatcar_production_pxe_grub.efi` carries the disk A/B menu. So
//!   a Flatcar stick boots through the shim and GRUB that Fedora signs and
//!   publishes in the Fedora CoreOS live ISO, checked with Fedora's keys.
//!   GRUB then loads Flatcar's kernel, which Fedora's shim does not trust:
//!   Secure Boot must be off (Flatcar's docs say the same of UEFI PXE).
//!
//! Differences other parts rely on: Flatcar ships the kernel NFS server
//! (`nfs-server.service`, nfs-utils), so the data export uses it; its
//! Kubernetes binaries can come from the flatcar/sysext-bakery `kubernetes`
//! sysext (`https://extensions.flatcar.org/extensions/kubernetes-vX.Y.Z-
//! x86-64.raw`, checked by SHA256SUMS only) or from mkstick's pinned table.

use super::download::{Artifact, Downloader};
use super::release::Keys;
use super::source::Release;
use super::verify::Digest;
use super::{FileRef, NfsServer, OsManifest};
use anyhow::{bail, Context, Result};
use std::path::PathBuf;

/// How this OS serves NFS: Flatcar ships nfs-utils and `nfs-server.service`.
pub const NFS_SERVER: NfsServer = NfsServer::Kernel;

pub const DISTRO: &str = "flatcar";
pub const KERNEL_FILE: &str = "flatcar_production_pxe.vmlinuz";
pub const IMAGE_FILE: &str = "flatcar_production_pxe_image.cpio.gz";
/// Where Flatcar's initramfs looks for an embedded Ignition config.
pub const CONFIG_PATH: &str = "usr/share/oem/config.ign";
const KERNEL_ARGS: &[&str] = &["flatcar.first_boot=1"];
const GRUB_CFG: &[&str] = &["EFI/BOOT/grub.cfg", "EFI/fedora/grub.cfg"];

/// `FLATCAR_VERSION` from a `version.txt`.
pub fn parse_version_txt(text: &str) -> Result<String> {
    for line in text.lines() {
        if let Some(v) = line.trim().strip_prefix("FLATCAR_VERSION=") {
            let v = v.trim().trim_matches('"');
            if super::source::is_release_version(v) {
                return Ok(v.to_string());
            }
            bail!("version.txt has an unreadable FLATCAR_VERSION `{v}`");
        }
    }
    bail!("version.txt has no FLATCAR_VERSION= line; is the release URL right?")
}

/// The sha512 a `.DIGESTS` file gives for `name`.
pub fn parse_digests(text: &str, name: &str) -> Result<Digest> {
    let mut in_sha512 = false;
    for line in text.lines() {
        let line = line.trim();
        if let Some(h) = line.strip_prefix('#') {
            in_sha512 = h.trim().eq_ignore_ascii_case("SHA512 HASH");
            continue;
        }
        if !in_sha512 {
            continue;
        }
        if let Some((hex, file)) = line.split_once(char::is_whitespace) {
            if file.trim().trim_start_matches('*') == name {
                let d = Digest::parse_hex(hex)?;
                if let Digest::Sha512(_) = d {
                    return Ok(d);
                }
                bail!("the SHA512 entry for {name} is not 128 hex digits");
            }
        }
    }
    bail!("the DIGESTS file has no SHA512 entry for {name}")
}

/// Fetch the release `r` asks for; return its OS directory.
pub fn fetch(r: &Release, dl: &Downloader, keys: &Keys) -> Result<PathBuf> {
    if let Some(v) = &r.version {
        if !super::source::is_release_version(v) {
            bail!("`{v}` is not a release version");
        }
        if let Some(dir) = super::release::cached_os(dl, &[&keys.flatcar, &keys.fedora], DISTRO, v)
        {
            dl.note(&format!("Flatcar {v}: in the cache"));
            return Ok(dir);
        }
    }
    let version = match &r.version {
        Some(v) => v.clone(),
        None => {
            let url = format!("{}/current/version.txt", r.url);
            let bytes = dl
                .get_small("version.txt", &url)
                .with_context(|| super::release::offline_hint(dl.cache, DISTRO))?;
            parse_version_txt(&String::from_utf8_lossy(&bytes))
                .with_context(|| format!("reading {url}"))?
        }
    };
    if let Some(why) = super::source::unusable_release(&version) {
        bail!("{why}; pin one in [os] version");
    }
    if let Some(dir) =
        super::release::cached_os(dl, &[&keys.flatcar, &keys.fedora], DISTRO, &version)
    {
        dl.note(&format!(
            "Flatcar {version} ({} channel): in the cache",
            r.stream
        ));
        return Ok(dir);
    }
    dl.note(&format!(
        "Flatcar {version} ({} channel): fetching",
        r.stream
    ));
    let base = format!("{}/{version}", r.url);
    let fetch = |what: &str, file: &str| -> Result<FileRef> {
        let a = artifact(dl, keys, &base, what, file)?;
        let got = dl.fetch(&a, Some(&keys.flatcar))?;
        Ok(FileRef {
            path: file.to_string(),
            sha256: got.sha256,
            signed_as: Some(a.file_name()),
        })
    };
    let kernel = fetch("kernel", KERNEL_FILE)?;
    let image = fetch("/usr image", IMAGE_FILE)?;
    let (fcos_version, efiboot, efiboot_signed_as) =
        super::fcos::current_efiboot(&r.efi_stream_url, dl, &keys.fedora)
            .context("getting the EFI boot chain (Fedora's signed shim and GRUB)")?;
    dl.note(&format!(
        "EFI boot chain: shim and GRUB from Fedora CoreOS {fcos_version}; turn Secure Boot off to boot Flatcar with it"
    ));
    let manifest = OsManifest {
        format: super::FORMAT,
        id: DISTRO.to_string(),
        name: "Flatcar Container Linux".to_string(),
        version,
        kernel,
        initramfs: image,
        rootfs: None,
        efi: super::efiboot_image(efiboot, efiboot_signed_as),
        grub_cfg: GRUB_CFG.iter().map(|s| s.to_string()).collect(),
        kernel_args: super::kernel_args(KERNEL_ARGS)?,
        ignition_config_path: CONFIG_PATH.to_string(),
        nfs_server: NFS_SERVER,
        network: Some(crate::os::NetworkStack::Networkd),
        // Flatcar signs its kernel with its own key (flatcar/Flatcar#501:
        // no shim of its own yet), which Fedora's shim does not trust.
        secure_boot_unsupported: Some("Flatcar's kernel is not signed by Fedora's shim".into()),
        // flatcar docs booting-with-pxe.md: at least 3 GB of RAM for PXE,
        // where the /usr image lives in RAM as on a stick (rounded up).
        min_ram_mib: Some(3072),
        bin_dir: "/opt/bin".into(),
        read_only: vec!["/usr".into()],
        writable_links: Vec::new(),
    };
    super::release::write_os_dir(dl.cache, &manifest)
}

/// Read `file.DIGESTS`, check it against `file.DIGESTS.sig`, and describe
/// `file` with the sha512 it gives and its own `.sig`.
fn artifact(dl: &Downloader, keys: &Keys, base: &str, name: &str, file: &str) -> Result<Artifact> {
    let url = format!("{base}/{file}");
    let digests_url = format!("{url}.DIGESTS");
    let text = dl.get_signed_small(&format!("the {name} digests"), &digests_url, &keys.flatcar)?;
    let digest = parse_digests(&String::from_utf8_lossy(&text), file)
        .with_context(|| format!("reading {digests_url}"))?;
    Ok(Artifact {
        name: name.to_string(),
        url: url.clone(),
        digest,
        signature_url: Some(format!("{url}.sig")),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn version_txt_gives_the_version() {
        let text = "FLATCAR_BUILD=4459\nFLATCAR_BRANCH=2\nFLATCAR_PATCH=1\nFLATCAR_VERSION=4459.2.1\nFLATCAR_VERSION_ID=4459.2.1\nFLATCAR_BUILD_ID=\"2025-10-01-0000\"\n";
        assert_eq!(parse_version_txt(text).unwrap(), "4459.2.1");
        assert!(parse_version_txt("FLATCAR_BUILD=1\n").is_err());
        assert!(parse_version_txt("FLATCAR_VERSION=../../x\n").is_err());
        assert!(parse_version_txt("FLATCAR_VERSION=..\n").is_err());
        assert_eq!(
            parse_version_txt("FLATCAR_VERSION=4799.0.0+nightly-20261101\n").unwrap(),
            "4799.0.0+nightly-20261101"
        );
    }

    #[test]
    fn digests_give_the_sha512_of_the_named_file() {
        let sha512 = "ab".repeat(64);
        let text = format!(
            "# MD5 HASH\n{md5}  {IMAGE_FILE}\n# SHA1 HASH\n{sha1}  {IMAGE_FILE}\n# SHA512 HASH\n{other}  README\n{sha512}  {IMAGE_FILE}\n",
            md5 = "0".repeat(32),
            sha1 = "1".repeat(40),
            other = "cd".repeat(64),
        );
        let d = parse_digests(&text, IMAGE_FILE).unwrap();
        assert_eq!(d, Digest::Sha512([0xab; 64]));
        let e = parse_digests(&text, KERNEL_FILE).unwrap_err();
        assert!(format!("{e}").contains("no SHA512 entry"), "{e}");
        let only_md5 = format!("# MD5 HASH\n{}  {KERNEL_FILE}\n", "0".repeat(32));
        assert!(parse_digests(&only_md5, KERNEL_FILE).is_err());
    }
}
