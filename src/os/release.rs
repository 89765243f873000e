//! What every distribution's fetch shares, as mkosi's distributions share
//! their base: the publishers' keys, the cached release that can be reused,
//! the hint for building offline, and laying out a fetched OS directory in
//! the cache. [`super::fcos`] and [`super::flatcar`] depend on this module,
//! and [`super::fetch`] on them; nothing here calls back.

use super::cache::Cache;
use super::download::{Downloader, SignaturePolicy};
use super::verify::Keyring;
use super::{OsDir, OsManifest};
use anyhow::{Context, Result};
use std::path::{Path, PathBuf};

/// The keys each publisher signs with; tests pass throwaway ones.
#[derive(Debug, Clone)]
pub struct Keys {
    pub fedora: Keyring,
    pub flatcar: Keyring,
}

impl Keys {
    pub fn embedded() -> Result<Keys> {
        Ok(Keys {
            fedora: Keyring::fedora()?,
            flatcar: Keyring::flatcar()?,
        })
    }
}

/// The context for a failure to learn the newest release: how to build
/// offline from what the cache already holds.
pub fn offline_hint(cache: &Cache, distro: &str) -> String {
    let versions: Vec<String> = cache
        .os_dirs()
        .unwrap_or_default()
        .into_iter()
        .filter(|o| o.distro == distro && o.complete)
        .map(|o| o.version)
        .collect();
    match versions.first() {
        Some(v) => format!(
            "cannot learn the newest release; to build offline from the cache, pin it in [os]: version = \"{v}\" (cached: {})",
            versions.join(", ")
        ),
        None => "cannot learn the newest release, and the cache holds none to build from".to_string(),
    }
}

/// A complete OS directory for this release in the cache, if there is one
/// whose every file carries a checked signature (any file, under
/// `--insecure-skip-signature`, with a warning). With `reverify` (the
/// `fetch` command) every file is hashed again, and a damaged one is
/// dropped from the cache so that the caller downloads it again.
pub fn cached_os(
    dl: &Downloader,
    rings: &[&Keyring],
    distro: &str,
    version: &str,
) -> Option<PathBuf> {
    let dir = dl.cache.os_dir(distro, version);
    let os = OsDir::load(&dir).ok()?;
    os.efi_files().ok()?;
    let m = &os.manifest;
    let mut files = vec![&m.kernel, &m.initramfs];
    files.extend(m.rootfs.as_ref());
    if let super::EfiSource::FatImage(f) = &m.efi {
        files.push(f);
    }
    let unsigned: Vec<&str> = files
        .iter()
        .filter(|f| {
            !(dl.cache.signed_by(&f.sha256))
                .zip(f.signed_as.as_deref())
                .is_some_and(|(r, name)| r.trusted(rings, name))
        })
        .map(|f| f.path.as_str())
        .collect();
    if !unsigned.is_empty() {
        if dl.signature_policy() == SignaturePolicy::Require {
            // Go the long way: fetch() checks those files' signatures now.
            return None;
        }
        dl.note(&format!(
            "WARNING: --insecure-skip-signature: using the cached {distro} {version}, whose {} never passed a signature check",
            unsigned.join(", ")
        ));
    }
    if dl.reverify() {
        let mut damaged = false;
        for f in &files {
            let path = dir.join(&f.path);
            let ok = std::fs::File::open(&path)
                .ok()
                .and_then(|r| crate::io::sha256_reader(r).ok())
                .is_some_and(|(got, _)| got == f.sha256);
            if !ok {
                dl.note(&format!(
                    "{}: damaged in the cache; downloading it again",
                    path.display()
                ));
                let _ = std::fs::remove_file(dl.cache.blob_path(&f.sha256));
                damaged = true;
            }
        }
        if damaged {
            let _ = std::fs::remove_dir_all(&dir);
            return None;
        }
    }
    Some(dir)
}

/// Lay out an OS directory in the cache: each file hard-linked from its
/// blob, then `os.json`, then one rename into place.
pub fn write_os_dir(cache: &Cache, m: &OsManifest) -> Result<PathBuf> {
    let final_dir = cache.os_dir(&m.id, &m.version);
    let parent = final_dir
        .parent()
        .expect("an OS directory has a distro directory above it");
    std::fs::create_dir_all(parent).with_context(|| format!("creating {}", parent.display()))?;
    let tmp = tempfile::Builder::new()
        .prefix(".partial-")
        .tempdir_in(parent)
        .with_context(|| format!("creating a directory in {}", parent.display()))?;
    let mut refs = vec![&m.kernel, &m.initramfs];
    refs.extend(m.rootfs.as_ref());
    if let super::EfiSource::FatImage(f) = &m.efi {
        refs.push(f);
    }
    for f in refs {
        link(&cache.blob_path(&f.sha256), &tmp.path().join(&f.path))?;
    }
    let mut json = serde_json::to_vec_pretty(m).context("writing os.json")?;
    json.push(b'\n');
    super::cache::write_atomic(&tmp.path().join(super::MANIFEST_NAME), &json)?;
    if final_dir.exists() {
        std::fs::remove_dir_all(&final_dir)
            .with_context(|| format!("replacing {}", final_dir.display()))?;
    }
    let path = tmp.keep();
    std::fs::rename(&path, &final_dir)
        .with_context(|| format!("moving {} to {}", path.display(), final_dir.display()))?;
    OsDir::load(&final_dir)?;
    Ok(final_dir)
}

fn link(blob: &Path, to: &Path) -> Result<()> {
    std::fs::hard_link(blob, to)
        .or_else(|_| std::fs::copy(blob, to).map(|_| ()))
        .with_context(|| format!("linking {} to {}", blob.display(), to.display()))
}
