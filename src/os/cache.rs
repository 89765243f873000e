//! The download cache: `$XDG_CACHE_HOME/mkstick` -> verified files by sha256.
//!
//! ```text
//! blobs/sha256/<hex>        a verified file, named by its sha256
//! blobs/sha512/<hex>        the sha256 of a file its publisher names by sha512
//! partial/<alg>-<hex>.part  a download in progress, resumed with Range
//! os/<distro>/<version>/    an OS directory (os.json), files hard-linked from blobs
//! k8s/<version>-<arch>.json which blobs hold one Kubernetes release
//! ```
//!
//! A file enters `blobs/` only after its digest (and signature, where the
//! publisher signs) checked out, by a rename within one filesystem.

use super::verify::Digest;
use crate::io::{hex, human_bytes, Sha256Digest};
use anyhow::{bail, Context, Result};
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

#[derive(Debug, Clone)]
pub struct Cache {
    pub root: PathBuf,
}

impl Cache {
    /// `dir`, or `$XDG_CACHE_HOME/mkstick`, or `~/.cache/mkstick`.
    pub fn open(dir: Option<&Path>) -> Result<Cache> {
        let root = match dir {
            Some(d) => d.to_path_buf(),
            None => default_dir()?,
        };
        for sub in ["blobs/sha256", "blobs/sha512", "partial", "os", "k8s"] {
            let p = root.join(sub);
            std::fs::create_dir_all(&p)
                .with_context(|| format!("creating the cache directory {}", p.display()))?;
        }
        Ok(Cache { root })
    }

    pub fn blob_path(&self, sha256: &Sha256Digest) -> PathBuf {
        self.root.join("blobs/sha256").join(sha256.to_string())
    }

    /// A verified file for this digest, if the cache has one: no network.
    pub fn lookup(&self, want: &Digest) -> Result<Option<Sha256Digest>> {
        let sha256 = match want {
            Digest::Sha256(d) => Sha256Digest(*d),
            Digest::Sha512(_) => {
                let index = self.root.join("blobs/sha512").join(want.hex());
                match std::fs::read_to_string(&index) {
                    Ok(text) => match text.trim().parse() {
                        Ok(d) => d,
                        Err(_) => return Ok(None),
                    },
                    Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
                    Err(e) => {
                        return Err(e).with_context(|| format!("reading {}", index.display()))
                    }
                }
            }
        };
        Ok(self.blob_path(&sha256).is_file().then_some(sha256))
    }

    pub fn part_path(&self, want: &Digest) -> PathBuf {
        self.root
            .join("partial")
            .join(format!("{}-{}.part", want.algorithm(), want.hex()))
    }

    /// Move a verified `.part` into `blobs/`, and index it by sha512 if
    /// that is how its publisher names it.
    pub fn admit(&self, part: &Path, want: &Digest, sha256: &Sha256Digest) -> Result<PathBuf> {
        let dest = self.blob_path(sha256);
        std::fs::File::open(part)
            .and_then(|f| f.sync_all())
            .with_context(|| format!("syncing {}", part.display()))?;
        std::fs::rename(part, &dest)
            .with_context(|| format!("moving {} to {}", part.display(), dest.display()))?;
        if let Digest::Sha512(_) = want {
            let index = self.root.join("blobs/sha512").join(want.hex());
            write_atomic(&index, format!("{sha256}\n").as_bytes())?;
        }
        Ok(dest)
    }

    /// Store bytes made here (a file read out of a verified ISO).
    pub fn admit_bytes(&self, bytes: &[u8]) -> Result<Sha256Digest> {
        let sha = Sha256Digest::of(bytes);
        let dest = self.blob_path(&sha);
        if !dest.is_file() {
            write_atomic(&dest, bytes)?;
        }
        Ok(sha)
    }

    pub fn os_dir(&self, distro: &str, version: &str) -> PathBuf {
        self.root.join("os").join(distro).join(version)
    }

    /// Every OS directory in the cache, newest first within a distro.
    pub fn os_dirs(&self) -> Result<Vec<CachedOs>> {
        let mut out = Vec::new();
        for distro in read_dir_names(&self.root.join("os"))? {
            for version in read_dir_names(&self.root.join("os").join(&distro))? {
                let dir = self.root.join("os").join(&distro).join(&version);
                let modified = std::fs::metadata(dir.join(super::MANIFEST_NAME))
                    .and_then(|m| m.modified())
                    .ok();
                out.push(CachedOs {
                    distro: distro.clone(),
                    version,
                    complete: modified.is_some(),
                    dir,
                    modified,
                });
            }
        }
        out.sort_by(|a, b| {
            (a.distro.as_str(), std::cmp::Reverse(a.modified))
                .cmp(&(b.distro.as_str(), std::cmp::Reverse(b.modified)))
        });
        Ok(out)
    }

    /// Every blob, with its size and its link count (1: used by nothing).
    pub fn blobs(&self) -> Result<Vec<Blob>> {
        let dir = self.root.join("blobs/sha256");
        let mut out = Vec::new();
        for name in read_dir_names(&dir)? {
            let path = dir.join(&name);
            let meta =
                std::fs::metadata(&path).with_context(|| format!("reading {}", path.display()))?;
            out.push(Blob {
                path,
                size_bytes: meta.len(),
                links: meta.nlink(),
            });
        }
        Ok(out)
    }

    /// Remove OS directories beyond the newest `keep` per distro, then
    /// every blob no OS directory or Kubernetes record uses, and every
    /// partial download.
    pub fn prune(&self, keep: usize) -> Result<PruneReport> {
        let mut report = PruneReport::default();
        let mut seen: Vec<(String, usize)> = Vec::new();
        for os in self.os_dirs()? {
            let n = match seen.iter_mut().find(|(d, _)| *d == os.distro) {
                Some((_, n)) => {
                    *n += 1;
                    *n
                }
                None => {
                    seen.push((os.distro.clone(), 1));
                    1
                }
            };
            if n > keep || !os.complete {
                std::fs::remove_dir_all(&os.dir)
                    .with_context(|| format!("removing {}", os.dir.display()))?;
                report.os_dirs.push(format!("{} {}", os.distro, os.version));
            }
        }
        let kept_k8s = self.k8s_blobs()?;
        for blob in self.blobs()? {
            let name = blob.path.file_name().and_then(|n| n.to_str()).unwrap_or("");
            if blob.links <= 1 && !kept_k8s.iter().any(|k| k == name) {
                std::fs::remove_file(&blob.path)
                    .with_context(|| format!("removing {}", blob.path.display()))?;
                report.freed_bytes += blob.size_bytes;
                report.blobs += 1;
            }
        }
        let live = self.blobs()?;
        let idx = self.root.join("blobs/sha512");
        for name in read_dir_names(&idx)? {
            let path = idx.join(&name);
            let target = std::fs::read_to_string(&path).unwrap_or_default();
            if !live.iter().any(|b| b.path.ends_with(target.trim())) {
                std::fs::remove_file(&path)
                    .with_context(|| format!("removing {}", path.display()))?;
            }
        }
        let partial = self.root.join("partial");
        for name in read_dir_names(&partial)? {
            let path = partial.join(&name);
            report.freed_bytes += std::fs::metadata(&path).map(|m| m.len()).unwrap_or(0);
            std::fs::remove_file(&path).with_context(|| format!("removing {}", path.display()))?;
            report.partial += 1;
        }
        Ok(report)
    }

    /// The sha256 names of the blobs the Kubernetes records use.
    fn k8s_blobs(&self) -> Result<Vec<String>> {
        let dir = self.root.join("k8s");
        let mut out = Vec::new();
        for name in read_dir_names(&dir)? {
            let path = dir.join(&name);
            let text = std::fs::read_to_string(&path)
                .with_context(|| format!("reading {}", path.display()))?;
            let record: std::collections::BTreeMap<String, String> = serde_json::from_str(&text)
                .with_context(|| {
                    format!("{} is damaged; delete it and fetch again", path.display())
                })?;
            out.extend(record.into_values());
        }
        Ok(out)
    }
}

#[derive(Debug, Clone)]
pub struct CachedOs {
    pub distro: String,
    pub version: String,
    pub dir: PathBuf,
    /// Whether os.json was written (the fetch finished).
    pub complete: bool,
    modified: Option<std::time::SystemTime>,
}

#[derive(Debug, Clone)]
pub struct Blob {
    pub path: PathBuf,
    pub size_bytes: u64,
    pub links: u64,
}

#[derive(Debug, Clone, Default)]
pub struct PruneReport {
    pub os_dirs: Vec<String>,
    pub blobs: usize,
    pub partial: usize,
    pub freed_bytes: u64,
}

impl std::fmt::Display for PruneReport {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        for os in &self.os_dirs {
            writeln!(f, "removed {os}")?;
        }
        write!(
            f,
            "removed {} unused files and {} partial downloads, freeing {}",
            self.blobs,
            self.partial,
            human_bytes(self.freed_bytes)
        )
    }
}

fn default_dir() -> Result<PathBuf> {
    if let Some(x) = std::env::var_os("XDG_CACHE_HOME").filter(|x| !x.is_empty()) {
        let p = PathBuf::from(x);
        if p.is_absolute() {
            return Ok(p.join("mkstick"));
        }
    }
    match std::env::var_os("HOME").filter(|h| !h.is_empty()) {
        Some(home) => Ok(PathBuf::from(home).join(".cache/mkstick")),
        None => bail!("neither XDG_CACHE_HOME nor HOME is set, so there is no cache directory; pass --cache-dir DIR"),
    }
}

fn read_dir_names(dir: &Path) -> Result<Vec<String>> {
    let mut names = Vec::new();
    let entries = match std::fs::read_dir(dir) {
        Ok(e) => e,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(names),
        Err(e) => return Err(e).with_context(|| format!("reading {}", dir.display())),
    };
    for e in entries {
        let e = e.with_context(|| format!("reading {}", dir.display()))?;
        if let Some(n) = e.file_name().to_str() {
            if !n.starts_with('.') {
                names.push(n.to_string());
            }
        }
    }
    names.sort();
    Ok(names)
}

/// Write a small file through a temporary file and a rename.
pub fn write_atomic(path: &Path, bytes: &[u8]) -> Result<()> {
    use std::io::Write;
    let dir = path.parent().unwrap_or(Path::new("."));
    let mut tmp = tempfile::Builder::new()
        .prefix(".mkstick-")
        .tempfile_in(dir)
        .with_context(|| format!("creating a temporary file in {}", dir.display()))?;
    tmp.write_all(bytes)
        .and_then(|_| tmp.as_file().sync_all())
        .with_context(|| format!("writing {}", path.display()))?;
    tmp.persist(path)
        .map_err(|e| e.error)
        .with_context(|| format!("saving {}", path.display()))?;
    Ok(())
}

/// `hex` of a sha256, for callers that hold raw bytes.
pub fn sha256_name(d: &[u8; 32]) -> String {
    hex(d)
}

/// `mkstick cache ls`: the releases, then the files and what they use.
pub fn describe(cache: &Cache) -> Result<String> {
    use std::fmt::Write;
    let mut s = String::new();
    writeln!(s, "cache: {}", cache.root.display())?;
    let oses = cache.os_dirs()?;
    if oses.is_empty() {
        writeln!(
            s,
            "no OS releases; `mkstick fetch` downloads the one your config names"
        )?;
    }
    for os in &oses {
        let state = if os.complete { "" } else { " (incomplete)" };
        writeln!(
            s,
            "os  {} {}{state}  {}",
            os.distro,
            os.version,
            os.dir.display()
        )?;
    }
    let blobs = cache.blobs()?;
    let total: u64 = blobs.iter().map(|b| b.size_bytes).sum();
    let unused: Vec<&Blob> = blobs.iter().filter(|b| b.links <= 1).collect();
    writeln!(
        s,
        "{} verified files, {}; {} not used by a release ({}), which `mkstick cache prune` removes",
        blobs.len(),
        human_bytes(total),
        unused.len(),
        human_bytes(unused.iter().map(|b| b.size_bytes).sum())
    )?;
    let partial = read_dir_names(&cache.root.join("partial"))?;
    if !partial.is_empty() {
        writeln!(
            s,
            "{} partial downloads, resumed by the next fetch",
            partial.len()
        )?;
    }
    Ok(s)
}
