//! The download cache: `$XDG_CACHE_HOME/mkstick` -> verified files by sha256.
//!
//! ```text
//! blobs/sha256/<hex>        a verified file, named by its sha256
//! blobs/sha512/<hex>        the sha256 of a file its publisher names by sha512
//! partial/<alg>-<hex>.part  a download in progress, resumed with Range
//! os/<distro>/<version>/    an OS directory (os.json), files hard-linked from blobs
//! k8s/<version>-<arch>.json which blobs hold one Kubernetes release
//! images/<sha256>.json      which blobs one pulled container image uses,
//!                           named by the sha256 of its reference
//! ```
//!
//! A file enters `blobs/` only after its digest (and signature, where the
//! publisher signs) checked out, by a rename within one filesystem.

use super::verify::Digest;
use crate::io::{human_bytes, Sha256Digest};
use anyhow::{bail, Context, Result};
use std::collections::BTreeMap;
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
        for sub in [
            "blobs/sha256",
            "blobs/sha512",
            "blobs/signed",
            "partial",
            "os",
            "k8s",
            "images",
        ] {
            let p = root.join(sub);
            std::fs::create_dir_all(&p)
                .with_context(|| format!("creating the cache directory {}", p.display()))?;
        }
        Ok(Cache { root })
    }

    /// Hold the cache for this process: one mkstick at a time fetches or
    /// prunes, so two never write one `.part` or prune a fetch's files.
    pub fn lock(&self, progress: &crate::progress::Progress) -> Result<CacheLock> {
        use nix::fcntl::{Flock, FlockArg};
        let path = self.root.join("lock");
        let open = || {
            std::fs::OpenOptions::new()
                .create(true)
                .truncate(false)
                .write(true)
                .open(&path)
                .with_context(|| format!("opening {}", path.display()))
        };
        match Flock::lock(open()?, FlockArg::LockExclusiveNonblock) {
            Ok(l) => Ok(CacheLock(l)),
            Err((_, nix::errno::Errno::EWOULDBLOCK)) => {
                progress.note(&format!(
                    "waiting for another mkstick that is using the cache {}",
                    self.root.display()
                ));
                Flock::lock(open()?, FlockArg::LockExclusive)
                    .map(CacheLock)
                    .map_err(|(_, e)| anyhow::anyhow!("locking {}: {e}", path.display()))
            }
            Err((_, e)) => bail!("locking {}: {e}", path.display()),
        }
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

    /// Whose signature a cached file carried, and under which file name,
    /// when it entered the cache (`None`: not signature-checked).
    pub fn signed_by(&self, sha256: &Sha256Digest) -> Option<SignedRecord> {
        let text = std::fs::read_to_string(self.root.join("blobs/signed").join(sha256.to_string()))
            .ok()?;
        let mut lines = text.lines().map(|l| l.trim().to_string());
        let publisher = lines.next().filter(|p| !p.is_empty())?;
        let file = lines.next().unwrap_or_default();
        let fingerprint = lines.next().unwrap_or_default();
        Some(SignedRecord {
            publisher,
            file,
            fingerprint,
        })
    }

    /// Record that `sha256` carried the signature of `signer` as `file`.
    pub fn mark_signed(&self, sha256: &Sha256Digest, signer: &Signer, file: &str) -> Result<()> {
        write_atomic(
            &self.root.join("blobs/signed").join(sha256.to_string()),
            format!("{}\n{file}\n{}\n", signer.publisher, signer.fingerprint).as_bytes(),
        )
    }

    /// Take a file out of the cache, with its signature record and every
    /// OS directory that uses it.
    pub fn evict(&self, sha256: &Sha256Digest) -> Result<()> {
        for os in self.os_dirs()? {
            let uses = std::fs::read_to_string(os.dir.join(super::MANIFEST_NAME))
                .is_ok_and(|t| t.contains(&sha256.to_string()));
            if uses {
                std::fs::remove_dir_all(&os.dir)
                    .with_context(|| format!("removing {}", os.dir.display()))?;
            }
        }
        for p in [
            self.blob_path(sha256),
            self.root.join("blobs/signed").join(sha256.to_string()),
        ] {
            match std::fs::remove_file(&p) {
                Ok(()) => {}
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                Err(e) => return Err(e).with_context(|| format!("removing {}", p.display())),
            }
        }
        Ok(())
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
                let complete = dir.join(super::MANIFEST_NAME).is_file();
                out.push(CachedOs {
                    distro: distro.clone(),
                    version,
                    complete,
                    dir,
                });
            }
        }
        out.sort_by(|a, b| {
            (
                a.distro.as_str(),
                std::cmp::Reverse(version_key(&a.version)),
            )
                .cmp(&(
                    b.distro.as_str(),
                    std::cmp::Reverse(version_key(&b.version)),
                ))
        });
        Ok(out)
    }

    /// Every blob, with its size and whether an OS directory's os.json or a
    /// Kubernetes record names it.
    pub fn blobs(&self) -> Result<Vec<Blob>> {
        let dir = self.root.join("blobs/sha256");
        let mut referenced = self.k8s_blobs()?;
        referenced.extend(self.image_blobs()?);
        for os in self.os_dirs()? {
            if let Ok(os) = super::OsDir::load(&os.dir) {
                let m = &os.manifest;
                let mut files = vec![&m.kernel, &m.initramfs];
                files.extend(m.rootfs.as_ref());
                if let super::EfiSource::FatImage(f) = &m.efi {
                    files.push(f);
                }
                referenced.extend(files.iter().map(|f| f.sha256.to_string()));
            }
        }
        let mut out = Vec::new();
        for name in read_dir_names(&dir)? {
            let path = dir.join(&name);
            let meta =
                std::fs::metadata(&path).with_context(|| format!("reading {}", path.display()))?;
            out.push(Blob {
                used: referenced.contains(&name),
                path,
                size_bytes: meta.len(),
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
            if !os.complete {
                std::fs::remove_dir_all(&os.dir)
                    .with_context(|| format!("removing {}", os.dir.display()))?;
                report
                    .os_dirs
                    .push(format!("{} {} (incomplete)", os.distro, os.version));
                continue;
            }
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
            if n > keep {
                std::fs::remove_dir_all(&os.dir)
                    .with_context(|| format!("removing {}", os.dir.display()))?;
                report.os_dirs.push(format!("{} {}", os.distro, os.version));
            }
        }
        // Temporary files and half-made OS directories of interrupted runs
        // (their hard links would keep blobs alive).
        let mut dirs = vec![
            self.root.join("blobs/sha256"),
            self.root.join("blobs/sha512"),
            self.root.join("blobs/signed"),
            self.root.join("k8s"),
            self.root.join("images"),
        ];
        for d in read_dir_names(&self.root.join("os"))? {
            dirs.push(self.root.join("os").join(d));
        }
        for dir in dirs {
            remove_leftovers(&dir)?;
        }
        for blob in self.blobs()? {
            if !blob.used {
                std::fs::remove_file(&blob.path)
                    .with_context(|| format!("removing {}", blob.path.display()))?;
                report.freed_bytes += blob.size_bytes;
                report.blobs += 1;
            }
        }
        // Index entries and signature records of files that are gone.
        for sub in ["blobs/sha512", "blobs/signed"] {
            let dir = self.root.join(sub);
            for name in read_dir_names(&dir)? {
                let path = dir.join(&name);
                let target = if sub == "blobs/sha512" {
                    std::fs::read_to_string(&path)
                        .unwrap_or_default()
                        .trim()
                        .to_string()
                } else {
                    name.clone()
                };
                let alive = target
                    .parse::<Sha256Digest>()
                    .is_ok_and(|d| self.blob_path(&d).is_file());
                if !alive {
                    std::fs::remove_file(&path)
                        .with_context(|| format!("removing {}", path.display()))?;
                }
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

    /// Record the blobs a pulled image uses (manifests, config, layers), so
    /// that `prune` keeps them, as it keeps a Kubernetes release's.
    pub fn record_image(&self, reference: &str, blobs: &[Sha256Digest]) -> Result<()> {
        let record = ImageRecord {
            reference: reference.to_string(),
            blobs: blobs.to_vec(),
        };
        let name = format!("{}.json", Sha256Digest::of(reference.as_bytes()));
        let json = serde_json::to_vec_pretty(&record).context("encoding an image record")?;
        write_atomic(&self.root.join("images").join(name), &json)
    }

    /// The sha256 names of the blobs the image records use.
    fn image_blobs(&self) -> Result<Vec<String>> {
        self.recorded_blobs("images", "pull again", |r: ImageRecord| {
            r.blobs.iter().map(|d| d.to_string()).collect()
        })
    }

    /// The sha256 names of the blobs the Kubernetes records use.
    fn k8s_blobs(&self) -> Result<Vec<String>> {
        self.recorded_blobs("k8s", "fetch again", |r: BTreeMap<String, String>| {
            r.into_values().collect()
        })
    }

    /// The blob names the JSON records under `dir` use, each record read as a
    /// `T` and passed to `blobs`; a damaged record says to delete it and `redo`.
    fn recorded_blobs<T: serde::de::DeserializeOwned>(
        &self,
        dir: &str,
        redo: &str,
        blobs: impl Fn(T) -> Vec<String>,
    ) -> Result<Vec<String>> {
        let dir = self.root.join(dir);
        let mut out = Vec::new();
        for name in read_dir_names(&dir)? {
            let path = dir.join(&name);
            let text = std::fs::read_to_string(&path)
                .with_context(|| format!("reading {}", path.display()))?;
            let record: T = serde_json::from_str(&text)
                .with_context(|| format!("{} is damaged; delete it and {redo}", path.display()))?;
            out.extend(blobs(record));
        }
        Ok(out)
    }
}

/// `images/<sha256 of the reference>.json`.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct ImageRecord {
    /// With the digest it resolved to: `registry.k8s.io/pause:3.10.2@sha256:…`.
    reference: String,
    blobs: Vec<Sha256Digest>,
}

/// Whose signature a cached file carried, and as which file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SignedRecord {
    pub publisher: String,
    pub file: String,
    /// The signing primary key's fingerprint.
    pub fingerprint: String,
}

impl SignedRecord {
    /// The one rule for trusting a cached file without checking its
    /// signature again: it was checked when it entered the cache, by one of
    /// `rings`' publishers, with a key that publisher still has, *as the
    /// file `file`*, so that metadata cannot pass off another cached file
    /// (an older kernel) as this one.
    pub fn trusted(&self, rings: &[&crate::os::verify::Keyring], file: &str) -> bool {
        self.file == file
            && rings
                .iter()
                .any(|k| k.publisher == self.publisher && k.has(&self.fingerprint))
    }
}

/// Who signed a file: the publisher, and the primary key's fingerprint.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Signer {
    pub publisher: String,
    pub fingerprint: String,
}

/// The cache's lock; released when dropped.
pub struct CacheLock(#[allow(dead_code)] nix::fcntl::Flock<std::fs::File>);

#[derive(Debug, Clone)]
pub struct CachedOs {
    pub distro: String,
    pub version: String,
    pub dir: PathBuf,
    /// Whether os.json was written (the fetch finished).
    pub complete: bool,
}

/// A version as a list of numbers and words, so that `43.20261116.3.0`
/// sorts after `43.20261101.3.0` and `4459.10.0` after `4459.9.0`.
pub fn version_key(v: &str) -> Vec<(u64, String)> {
    let mut out = Vec::new();
    let mut rest = v;
    while !rest.is_empty() {
        let digits = rest.len() - rest.trim_start_matches(|c: char| c.is_ascii_digit()).len();
        if digits > 0 {
            out.push((rest[..digits].parse().unwrap_or(u64::MAX), String::new()));
            rest = &rest[digits..];
        } else {
            let word = rest.len() - rest.trim_start_matches(|c: char| !c.is_ascii_digit()).len();
            out.push((0, rest[..word].to_string()));
            rest = &rest[word..];
        }
    }
    out
}

#[derive(Debug, Clone)]
pub struct Blob {
    pub path: PathBuf,
    pub size_bytes: u64,
    pub used: bool,
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

/// Remove the hidden temporary entries (`.partial-*`, `.mkstick-*`) in `dir`.
fn remove_leftovers(dir: &Path) -> Result<()> {
    let entries = match std::fs::read_dir(dir) {
        Ok(e) => e,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
        Err(e) => return Err(e).with_context(|| format!("reading {}", dir.display())),
    };
    for e in entries {
        let e = e.with_context(|| format!("reading {}", dir.display()))?;
        let name = e.file_name();
        let name = name.to_string_lossy();
        if name.starts_with(".partial-") || name.starts_with(".mkstick-") {
            let path = e.path();
            if path.is_dir() {
                std::fs::remove_dir_all(&path)
            } else {
                std::fs::remove_file(&path)
            }
            .with_context(|| format!("removing {}", path.display()))?;
        }
    }
    Ok(())
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
    let unused: Vec<&Blob> = blobs.iter().filter(|b| !b.used).collect();
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

#[cfg(test)]
mod tests {
    use super::*;

    /// One rule for the download path and the cached-OS path: publisher,
    /// file name and a key the publisher still has must all match.
    #[test]
    fn a_cached_file_is_trusted_only_as_the_file_its_publisher_signed() {
        use crate::os::verify::Keyring;
        let fedora = Keyring::fedora().unwrap();
        let flatcar = Keyring::flatcar().unwrap();
        let (_, fpr) = flatcar.fingerprints().remove(0);
        let record = |publisher: &str, file: &str, fingerprint: &str| SignedRecord {
            publisher: publisher.into(),
            file: file.into(),
            fingerprint: fingerprint.into(),
        };
        let good = record(&flatcar.publisher, "flatcar_production_pxe.vmlinuz", &fpr);
        assert!(good.trusted(&[&flatcar], "flatcar_production_pxe.vmlinuz"));
        assert!(good.trusted(&[&fedora, &flatcar], "flatcar_production_pxe.vmlinuz"));
        // Another file's record: an older kernel passed off as this one.
        assert!(!good.trusted(&[&flatcar], "flatcar_production_pxe_image.cpio.gz"));
        // The right key under another publisher's name.
        let renamed = record(&fedora.publisher, "flatcar_production_pxe.vmlinuz", &fpr);
        assert!(!renamed.trusted(&[&fedora, &flatcar], "flatcar_production_pxe.vmlinuz"));
        // A key that is no longer embedded.
        let gone = record(&flatcar.publisher, "flatcar_production_pxe.vmlinuz", "0000");
        assert!(!gone.trusted(&[&flatcar], "flatcar_production_pxe.vmlinuz"));
    }

    #[test]
    fn versions_sort_by_their_numbers() {
        let mut v = vec![
            "43.20261116.3.0",
            "4459.10.0",
            "43.20261101.3.0",
            "4459.9.0",
            "42.1",
        ];
        v.sort_by_key(|x| version_key(x));
        assert_eq!(
            v,
            [
                "42.1",
                "43.20261101.3.0",
                "43.20261116.3.0",
                "4459.9.0",
                "4459.10.0"
            ]
        );
    }
}
