//! Fedora CoreOS: stream metadata -> verified live artifacts -> an OS directory.
//!
//! The stream document (`https://builds.coreos.fedoraproject.org/streams/
//! <stream>.json`, shape: coreos/stream-metadata-go `stream/stream.go`)
//! names the current release and, under `x86_64 -> metal -> pxe`, the live
//! kernel, initramfs and rootfs, each with a sha256 and a detached `.sig`.
//! A pinned older version is read from that release's `release.json`
//! (`release/release.go`), next to its artifacts.
//!
//! The EFI boot chain (shim, GRUB) is published only as `images/efiboot.img`
//! inside the live ISO (`formats.iso.disk`). There is no separately signed
//! copy, so mkstick downloads the ISO, checks its sha256 and signature like
//! the rest, and reads that one file out of it with a small ISO 9660 reader
//! ([`super::iso9660`], as coreos-installer does). The ISO is not kept in the
//! OS directory: `mkstick cache prune` may drop it once efiboot.img is out.

use super::download::{Artifact, Downloader};
use super::source::Release;
use super::verify::{Digest, Keyring};
use super::{FileRef, NfsServer, OsManifest};
use anyhow::{anyhow, bail, Context, Result};
use serde::Deserialize;
use std::collections::BTreeMap;
use std::path::PathBuf;

/// How this OS serves NFS: Fedora CoreOS ships the kernel's NFS server but
/// not its tools (its nfs-utils-coreos is client-only): a container runs
/// them.
pub const NFS_SERVER: NfsServer = NfsServer::Container;

pub const DISTRO: &str = "fedora-coreos";
/// The only architecture mkstick builds for.
const ARCH: &str = "x86_64";
/// Where efiboot.img sits in the live ISO (coreos-assembler
/// `src/cmd-buildextend-live`; coreos-installer `iso extract`).
pub const EFIBOOT_PATH: &str = "images/efiboot.img";
const EFIBOOT_MAX_BYTES: u64 = 64 << 20;
/// Where the live ISO records its kernel arguments, `coreos/kargs.json`,
/// by its ISO 9660 name, as coreos-installer reads it (`src/live/embed.rs`
/// COREOS_KARG_EMBED_INFO_PATH = "COREOS/KARGS.JSO"): `{"default": "...",
/// "files": [...], "size": N}`, `default` being the release's command line.
pub const KARGS_PATH: &str = "coreos/kargs.jso";
const KARGS_MAX_BYTES: u64 = 64 << 10;
/// What a stick adds to the release's arguments and takes away: Ignition's
/// two (a live system runs Ignition at every boot, from the `metal`
/// platform), and no `coreos.liveiso=`, which wants an ISO 9660 filesystem
/// with that label (fedora-coreos-config `35coreos-live`); the rootfs comes
/// as a second initrd instead.
const IGNITION_ARGS: [&str; 2] = ["ignition.firstboot", "ignition.platform.id=metal"];
const DROPPED_ARG: &str = "coreos.liveiso=";

/// The kernel arguments a stick boots this release with, from its
/// `coreos/kargs.json`.
pub fn kernel_args_from_kargs_json(bytes: &[u8]) -> Result<Vec<crate::config::types::KernelArg>> {
    #[derive(Deserialize)]
    struct Kargs {
        default: String,
    }
    let k: Kargs = serde_json::from_slice(bytes)
        .with_context(|| format!("reading {KARGS_PATH}: it has no \"default\" string"))?;
    let mut args: Vec<&str> = k
        .default
        .split_whitespace()
        .filter(|a| !a.starts_with(DROPPED_ARG))
        .collect();
    for a in IGNITION_ARGS {
        if !args.contains(&a) {
            args.push(a);
        }
    }
    super::kernel_args(&args).with_context(|| format!("reading {KARGS_PATH}"))
}
/// Where Fedora's signed GRUB reads its config (its prefix is /EFI/fedora);
/// EFI/BOOT/grub.cfg for a GRUB started from the fallback path.
const GRUB_CFG: &[&str] = &["EFI/fedora/grub.cfg", "EFI/BOOT/grub.cfg"];

#[derive(Debug, Clone, Deserialize)]
pub struct ArtifactRef {
    pub location: String,
    pub signature: Option<String>,
    pub sha256: String,
}

/// `streams/<stream>.json`, the parts mkstick reads.
#[derive(Debug, Deserialize)]
pub struct StreamDoc {
    pub stream: String,
    pub architectures: BTreeMap<String, StreamArch>,
}

#[derive(Debug, Deserialize)]
pub struct StreamArch {
    pub artifacts: BTreeMap<String, StreamPlatform>,
}

#[derive(Debug, Deserialize)]
pub struct StreamPlatform {
    pub release: String,
    pub formats: BTreeMap<String, BTreeMap<String, ArtifactRef>>,
}

/// `builds/<version>/release.json`, the parts mkstick reads.
#[derive(Debug, Deserialize)]
pub struct ReleaseDoc {
    pub release: String,
    pub architectures: BTreeMap<String, ReleaseArch>,
}

#[derive(Debug, Deserialize)]
pub struct ReleaseArch {
    pub media: BTreeMap<String, ReleaseMedia>,
}

#[derive(Debug, Deserialize)]
pub struct ReleaseMedia {
    #[serde(default)]
    pub artifacts: BTreeMap<String, BTreeMap<String, ArtifactRef>>,
}

/// One release's live artifacts for x86_64 metal.
#[derive(Debug, Clone)]
pub struct LiveRelease {
    pub version: String,
    pub kernel: ArtifactRef,
    pub initramfs: ArtifactRef,
    pub rootfs: ArtifactRef,
    pub iso: ArtifactRef,
}

fn pick(
    version: &str,
    formats: &BTreeMap<String, BTreeMap<String, ArtifactRef>>,
    source: &str,
) -> Result<LiveRelease> {
    if !super::source::is_release_version(version) {
        bail!("{source} names release `{version}`, which is not a version mkstick can use");
    }
    let get = |format: &str, key: &str| -> Result<ArtifactRef> {
        formats
            .get(format)
            .and_then(|f| f.get(key))
            .cloned()
            .ok_or_else(|| anyhow!("{source} has no {ARCH} metal {format} {key} artifact"))
    };
    Ok(LiveRelease {
        version: version.to_string(),
        kernel: get("pxe", "kernel")?,
        initramfs: get("pxe", "initramfs")?,
        rootfs: get("pxe", "rootfs")?,
        iso: get("iso", "disk")?,
    })
}

/// Read a stream document: the current release's live artifacts.
pub fn parse_stream(bytes: &[u8], source: &str) -> Result<LiveRelease> {
    let doc: StreamDoc = serde_json::from_slice(bytes)
        .with_context(|| format!("{source} is not Fedora CoreOS stream metadata"))?;
    let metal = doc
        .architectures
        .get(ARCH)
        .and_then(|a| a.artifacts.get("metal"))
        .ok_or_else(|| {
            anyhow!(
                "{source} (stream {}) has no {ARCH} metal artifacts",
                doc.stream
            )
        })?;
    pick(&metal.release, &metal.formats, source)
}

/// Read a release document (`release.json`).
pub fn parse_release(bytes: &[u8], source: &str) -> Result<LiveRelease> {
    let doc: ReleaseDoc = serde_json::from_slice(bytes)
        .with_context(|| format!("{source} is not Fedora CoreOS release metadata"))?;
    let metal = doc
        .architectures
        .get(ARCH)
        .and_then(|a| a.media.get("metal"))
        .ok_or_else(|| anyhow!("{source} has no {ARCH} metal artifacts"))?;
    pick(&doc.release, &metal.artifacts, source)
}

/// `.../streams/<stream>.json` -> `.../prod/streams/<stream>/builds/<v>/release.json`,
/// the layout builds.coreos.fedoraproject.org uses.
fn release_url(stream_url: &str, stream: &str, version: &str) -> Result<String> {
    let suffix = format!("/streams/{stream}.json");
    match stream_url.strip_suffix(&suffix) {
        Some(base) => Ok(format!(
            "{base}/prod/streams/{stream}/builds/{version}/release.json"
        )),
        None => bail!(
            "version {version} is not the stream's current release, and its release.json cannot be found from stream-url {stream_url} (which does not end in {suffix}); pin the current version or leave `version` out"
        ),
    }
}

/// An artifact of release `version`. Every Fedora CoreOS artifact is
/// signed: without a `signature` entry, `<location>.sig` is where
/// coreos-installer looks too. A location that does not name the release
/// is refused, so metadata cannot pass off another release's file.
pub fn artifact(name: &str, version: &str, r: &ArtifactRef) -> Result<Artifact> {
    let sha: crate::io::Sha256Digest = r
        .sha256
        .parse()
        .map_err(|e: String| anyhow!("the stream metadata's sha256 for the {name}: {e}"))?;
    let sig = format!("{}.sig", r.location);
    if r.signature.as_ref().is_some_and(|s| *s != sig) {
        bail!(
            "the stream metadata gives the {name}'s signature as {}, not {sig} next to the file; refusing it",
            r.signature.as_deref().unwrap_or_default()
        );
    }
    let a = Artifact {
        name: name.to_string(),
        url: r.location.clone(),
        digest: Digest::Sha256(sha.0),
        signature_url: Some(sig),
    };
    if !a.file_name().contains(version) {
        bail!(
            "the stream metadata gives the {name} of {version} as {}, a file that does not name that release; refusing it",
            r.location
        );
    }
    Ok(a)
}

/// Fetch the release `r` asks for into the cache; return its OS directory.
pub fn fetch(r: &Release, dl: &Downloader, keys: &Keyring) -> Result<PathBuf> {
    if let Some(v) = &r.version {
        if !super::source::is_release_version(v) {
            bail!("`{v}` is not a release version");
        }
        if let Some(dir) = super::release::cached_os(dl, &[keys], DISTRO, v) {
            dl.note(&format!("Fedora CoreOS {v}: in the cache"));
            return Ok(dir);
        }
    }
    let bytes = dl
        .get_small("stream metadata", &r.url)
        .with_context(|| super::release::offline_hint(dl.cache, DISTRO))?;
    let mut live = parse_stream(&bytes, &r.url)?;
    if let Some(v) = &r.version {
        if *v != live.version {
            let url = release_url(&r.url, &r.stream, v)?;
            let bytes = dl.get_small("release metadata", &url)?;
            live = parse_release(&bytes, &url)?;
            if live.version != *v {
                bail!("{url} describes release {}, not {v}", live.version);
            }
        }
    }
    if let Some(dir) = super::release::cached_os(dl, &[keys], DISTRO, &live.version) {
        dl.note(&format!(
            "Fedora CoreOS {} ({} stream): in the cache",
            live.version, r.stream
        ));
        return Ok(dir);
    }
    dl.note(&format!(
        "Fedora CoreOS {} ({} stream): fetching",
        live.version, r.stream
    ));
    let fetch = |what: &str, file: &ArtifactRef| -> Result<FileRef> {
        let a = artifact(what, &live.version, file)?;
        let got = dl.fetch(&a, Some(keys))?;
        Ok(FileRef {
            path: String::new(),
            sha256: got.sha256,
            signed_as: Some(a.file_name()),
        })
    };
    let named = |path: &str, f: FileRef| FileRef {
        path: path.to_string(),
        ..f
    };
    let kernel = named("kernel", fetch("kernel", &live.kernel)?);
    let initramfs = named("initramfs.img", fetch("initramfs", &live.initramfs)?);
    let rootfs = named("rootfs.img", fetch("rootfs", &live.rootfs)?);
    let iso = live_iso(&live, dl, keys)?;

    let manifest = OsManifest {
        format: super::FORMAT,
        id: DISTRO.to_string(),
        name: "Fedora CoreOS".to_string(),
        version: live.version.clone(),
        kernel,
        initramfs,
        rootfs: Some(rootfs),
        efi: super::efiboot_image(iso.efiboot_sha256, iso.efiboot_signed_as),
        grub_cfg: GRUB_CFG.iter().map(|s| s.to_string()).collect(),
        kernel_args: iso.kernel_args,
        ignition_config_path: "config.ign".to_string(),
        nfs_server: NFS_SERVER,
        network: Some(crate::os::NetworkStack::NetworkManager),
        secure_boot_unsupported: None,
        // fedora-coreos-docs live-reference.adoc: 4 GiB of RAM when the
        // rootfs is passed as an initrd, as a stick does.
        min_ram_mib: Some(4096),
        bin_dir: "/usr/local/bin".into(),
        read_only: vec!["/usr".into()],
        // /usr/local -> ../var/usrlocal (fedora-coreos-config tmpfiles).
        writable_links: vec!["/usr/local".into()],
    };
    super::release::write_os_dir(dl.cache, &manifest)
}

/// What a stick takes from a release's verified live ISO.
pub struct LiveIso {
    /// Its `images/efiboot.img`, stored in the cache.
    pub efiboot_sha256: crate::io::Sha256Digest,
    /// The name efiboot.img is trusted as: part of the signed ISO.
    pub efiboot_signed_as: String,
    /// From its `coreos/kargs.json` ([`kernel_args_from_kargs_json`]).
    pub kernel_args: Vec<crate::config::types::KernelArg>,
}

fn live_iso(live: &LiveRelease, dl: &Downloader, keys: &Keyring) -> Result<LiveIso> {
    let iso_artifact = artifact("live ISO", &live.version, &live.iso)?;
    let iso_name = iso_artifact.file_name();
    let iso = dl.fetch(&iso_artifact, Some(keys))?;
    let mut f = std::fs::File::open(&iso.path)
        .with_context(|| format!("opening {}", iso.path.display()))?;
    let mut read = |path: &str, max: u64| {
        super::iso9660::read_file(&mut f, path, max)
            .with_context(|| format!("reading {path} from the live ISO {}", iso.path.display()))
    };
    let bytes = read(EFIBOOT_PATH, EFIBOOT_MAX_BYTES)?;
    let kernel_args = kernel_args_from_kargs_json(&read(KARGS_PATH, KARGS_MAX_BYTES)?)
        .with_context(|| format!("in the live ISO of Fedora CoreOS {}", live.version))?;
    let sha = dl.cache.admit_bytes(&bytes)?;
    // It is part of the ISO, so it carries the ISO's signature.
    let signed_as = format!("{EFIBOOT_PATH} of {iso_name}");
    if let Some(signer) = &iso.signed_by {
        dl.cache.mark_signed(&sha, signer, &signed_as)?;
    }
    Ok(LiveIso {
        efiboot_sha256: sha,
        efiboot_signed_as: signed_as,
        kernel_args,
    })
}

/// The EFI boot chain of the current release of the stream at `stream_url`
/// (for Flatcar, which publishes none that boots from a stick).
pub fn current_efiboot(
    stream_url: &str,
    dl: &Downloader,
    keys: &Keyring,
) -> Result<(String, crate::io::Sha256Digest, String)> {
    let bytes = dl.get_small("Fedora CoreOS stream metadata", stream_url)?;
    let live = parse_stream(&bytes, stream_url)?;
    let iso = live_iso(&live, dl, keys)?;
    Ok((live.version, iso.efiboot_sha256, iso.efiboot_signed_as))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kernel_args_come_from_the_isos_kargs_json() {
        // The format coreos-installer reads (`iso kargs show`).
        let json = br##"{"default": "mitigations=auto,nosmt coreos.liveiso=fedora-coreos-43.20261116.3.0 ignition.firstboot ignition.platform.id=metal", "files": [{"path": "EFI/fedora/grub.cfg", "offset": 1234, "pad": "#", "end": "\n"}], "size": 1137}"##;
        let args: Vec<String> = kernel_args_from_kargs_json(json)
            .unwrap()
            .iter()
            .map(|a| a.to_string())
            .collect();
        assert_eq!(
            args,
            [
                "mitigations=auto,nosmt",
                "ignition.firstboot",
                "ignition.platform.id=metal"
            ]
        );
        // Ignition's two are added when a release leaves them out.
        let args =
            kernel_args_from_kargs_json(br#"{"default": "quiet coreos.liveiso=x"}"#).unwrap();
        let args: Vec<String> = args.iter().map(|a| a.to_string()).collect();
        assert_eq!(
            args,
            ["quiet", "ignition.firstboot", "ignition.platform.id=metal"]
        );
        for bad in [&b"{}"[..], b"not json", br#"{"default": "a='b'"}"#] {
            assert!(kernel_args_from_kargs_json(bad).is_err());
        }
    }

    const REAL_STREAM: &str =
        include_str!("../../tests/fixtures/streams/fcos-stream-stable-2020-12.json");

    #[test]
    fn reads_the_real_stream_document() {
        let live = parse_stream(REAL_STREAM.as_bytes(), "fixture").unwrap();
        assert_eq!(live.version, "33.20201201.3.0");
        assert!(live.kernel.location.ends_with("live-kernel-x86_64"));
        assert_eq!(
            live.kernel.sha256,
            "d6bddcc1cc8f2642b11f38ca4602573211171814a53ab57c2655853008167407"
        );
        assert!(live.rootfs.location.ends_with("live-rootfs.x86_64.img"));
        assert!(live
            .initramfs
            .signature
            .as_deref()
            .unwrap()
            .ends_with(".img.sig"));
        assert!(live.iso.location.ends_with("live.x86_64.iso"));
        for a in [&live.kernel, &live.initramfs, &live.rootfs, &live.iso] {
            let art = artifact("x", &live.version, a).unwrap();
            assert_eq!(art.signature_url.unwrap(), format!("{}.sig", a.location));
        }
        // No signature entry: the .sig next to the file is still required.
        let mut unsigned = live.kernel.clone();
        unsigned.signature = None;
        let art = artifact("kernel", &live.version, &unsigned).unwrap();
        assert_eq!(
            art.signature_url.unwrap(),
            format!("{}.sig", unsigned.location)
        );
        // Another release's file is refused.
        let e = artifact("kernel", "33.20201214.3.1", &live.kernel).unwrap_err();
        assert!(format!("{e}").contains("does not name that release"), "{e}");
    }

    #[test]
    fn a_stream_without_metal_is_refused_clearly() {
        let e = parse_stream(br#"{"stream":"stable","architectures":{}}"#, "u").unwrap_err();
        assert!(format!("{e:#}").contains("no x86_64 metal"), "{e:#}");
        let doc = REAL_STREAM.replace("33.20201201.3.0\",", "..\",");
        let e = parse_stream(doc.as_bytes(), "u").unwrap_err();
        assert!(format!("{e:#}").contains("not a version"), "{e:#}");
        let e = parse_stream(b"<html>", "u").unwrap_err();
        assert!(
            format!("{e:#}").contains("not Fedora CoreOS stream metadata"),
            "{e:#}"
        );
    }

    #[test]
    fn release_json_is_found_next_to_the_stream() {
        assert_eq!(
            release_url(
                "https://builds.coreos.fedoraproject.org/streams/stable.json",
                "stable",
                "43.1"
            )
            .unwrap(),
            "https://builds.coreos.fedoraproject.org/prod/streams/stable/builds/43.1/release.json"
        );
        assert!(release_url("http://x/y.json", "stable", "1").is_err());
    }
}
