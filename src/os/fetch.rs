//! [`OsSource`] -> an OS directory on disk: local as given, or fetched by
//! its distribution's module ([`super::fcos`], [`super::flatcar`]),
//! verified and laid out in the cache. This module only dispatches; what
//! the distributions share is in [`super::release`].

use super::cache::Cache;
use super::download::{Downloader, SignaturePolicy, Summary};
pub use super::release::Keys;
use super::source::OsSource;
use crate::progress::Progress;
use anyhow::{Context, Result};
use std::path::PathBuf;

/// How to fetch: where the cache is, and whether signatures may be skipped.
#[derive(Debug, Clone, Default)]
pub struct FetchOptions {
    pub cache_dir: Option<PathBuf>,
    pub signatures: SignaturePolicy,
    /// Hash every cached file again before reusing it (`mkstick fetch`).
    pub reverify: bool,
}

/// An OS directory to build from.
pub struct Acquired {
    pub dir: PathBuf,
    /// What was fetched and reused, for a downloaded OS.
    pub summary: Option<Summary>,
    /// Held while the directory is in use, so `cache prune` cannot remove
    /// it under a build.
    pub lock: Option<super::cache::CacheLock>,
    /// The Kubernetes binaries, when a table was given.
    pub kubernetes: Vec<super::kubernetes::CachedBinary>,
    /// The container images the stick carries, in the order asked for.
    pub images: Vec<super::registry::PulledImage>,
}

/// How the OS of `source` serves NFS, known before anything is downloaded:
/// fixed for a distribution mkstick fetches, read from a directory's
/// os.json. It decides whether the stick carries the NFS server's image.
pub fn nfs_server(source: &OsSource) -> Result<super::NfsServer> {
    Ok(match source {
        OsSource::Dir(d) => super::OsDir::load(d)?.manifest.nfs_server,
        OsSource::Fcos(_) => super::fcos::NFS_SERVER,
        OsSource::Flatcar(_) => super::flatcar::NFS_SERVER,
    })
}

/// The OS directory for `source`, the files of `k8s` when given, and the
/// `images` (the NFS server's may come without `k8s`), fetching what the
/// cache lacks.
pub fn acquire(
    source: &OsSource,
    k8s: Option<&super::kubernetes::Table>,
    images: &[super::registry::WantedImage],
    opts: &FetchOptions,
    keys: &Keys,
    progress: &Progress,
) -> Result<Acquired> {
    if let (OsSource::Dir(d), None, true) = (source, k8s, images.is_empty()) {
        return Ok(Acquired {
            dir: d.clone(),
            summary: None,
            lock: None,
            kubernetes: Vec::new(),
            images: Vec::new(),
        });
    }
    if opts.signatures == SignaturePolicy::InsecureSkip {
        progress.note(
            "WARNING: --insecure-skip-signature: a file whose signature is missing or unreadable is accepted on its digest alone; nothing then shows its publisher made it",
        );
    }
    let cache = Cache::open(opts.cache_dir.as_deref())?;
    let lock = cache.lock(progress)?;
    let dl = Downloader::new(&cache, progress, opts.signatures).with_reverify(opts.reverify);
    let dir = match source {
        OsSource::Dir(d) => d.clone(),
        OsSource::Fcos(r) => super::fcos::fetch(r, &dl, &keys.fedora)?,
        OsSource::Flatcar(r) => super::flatcar::fetch(r, &dl, keys)?,
    };
    let kubernetes = match k8s {
        Some(t) => super::kubernetes::fetch(&dl, t)?,
        None => Vec::new(),
    };
    let arch = k8s.map_or("amd64", |t| t.arch.as_str());
    let platform = super::registry::Platform::linux(arch);
    let registry = super::registry::Registry::new(&dl);
    let images = images
        .iter()
        .map(|w| {
            let how = if w.pinned {
                "pinned"
            } else {
                "named by its tag alone (resolved at every build; pin it as NAME:TAG@sha256:DIGEST to build offline)"
            };
            registry
                .pull(&w.reference, &platform)
                .with_context(|| format!("the image {} is {how} in {}", w.reference, w.named_in))
        })
        .collect::<Result<Vec<_>>>()?;
    Ok(Acquired {
        dir,
        summary: Some(dl.summary()),
        lock: Some(lock),
        kubernetes,
        images,
    })
}
