//! Container images: an image reference -> a [`PulledImage`] whose
//! manifests, config and layers are verified files in the [`Cache`].
//!
//! A client for the pull side of the OCI distribution spec
//! (opencontainers/distribution-spec `spec.md`), on the [`Downloader`]: the
//! same blocking ureq + rustls agent, retries, resume with `Range`, proxy
//! and timeouts as the OS downloads. Every manifest and blob is named by
//! its sha256, so it goes into the same content-addressed cache
//! (`blobs/sha256/<hex>`), shared by every image and every build.
//!
//! - A reference pinned by digest is fetched by that digest, and its bytes
//!   must hash to it; a fully cached pinned image needs no request at all.
//! - An index (OCI image index, Docker manifest list) is resolved to one
//!   platform; the chosen manifest must match the index's descriptor
//!   (digest and size), the config and layers theirs.
//! - Anonymous bearer tokens, as registry.k8s.io, Docker Hub, quay.io and
//!   ghcr.io hand them out (distribution/distribution
//!   `docs/spec/auth/token.md`): a 401 with `WWW-Authenticate: Bearer
//!   realm=…,service=…,scope=…` -> `GET realm?service=…&scope=…` -> the
//!   request again with `Authorization: Bearer <token>`. Tokens are kept
//!   per host and repository for the run.

use super::cache::Cache;
use super::download::{Artifact, Authorizer, Downloader, RequestOptions};
use super::verify::Digest;
use crate::io::Sha256Digest;
use anyhow::{anyhow, bail, Context, Result};
use serde::Deserialize;
use std::cell::RefCell;
use std::collections::BTreeMap;
use std::path::PathBuf;

/// Media types (opencontainers/image-spec `media-types.md`; Docker's from
/// distribution/distribution `docs/spec/manifest-v2-2.md`).
pub const OCI_INDEX: &str = "application/vnd.oci.image.index.v1+json";
pub const OCI_MANIFEST: &str = "application/vnd.oci.image.manifest.v1+json";
pub const DOCKER_MANIFEST_LIST: &str = "application/vnd.docker.distribution.manifest.list.v2+json";
pub const DOCKER_MANIFEST: &str = "application/vnd.docker.distribution.manifest.v2+json";

/// The `Accept` header of a manifest request: the four types above, the
/// same set containerd sends (`core/remotes/docker/resolver.go`).
const MANIFEST_ACCEPT: &str = "application/vnd.oci.image.index.v1+json, application/vnd.oci.image.manifest.v1+json, application/vnd.docker.distribution.manifest.list.v2+json, application/vnd.docker.distribution.manifest.v2+json";

/// Docker Hub: `docker.io` is a name, the registry's host is
/// `registry-1.docker.io`, and official images live under `library/`
/// (distribution `reference/normalize.go`; containerd
/// `core/remotes/docker/resolver.go`).
const DOCKER_HUB: &str = "docker.io";
const DOCKER_HUB_HOST: &str = "registry-1.docker.io";

/// An image reference: `[registry/]repository[:tag][@sha256:digest]`.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct Reference {
    /// As users write it: `docker.io`, `registry.k8s.io`, `127.0.0.1:5000`.
    pub registry: String,
    /// `library/traefik`, `sig-storage/csi-provisioner`.
    pub repository: String,
    pub tag: Option<String>,
    pub digest: Option<Sha256Digest>,
}

impl Reference {
    /// The host (and port) the registry's API answers on.
    pub fn host(&self) -> &str {
        if self.registry == DOCKER_HUB {
            DOCKER_HUB_HOST
        } else {
            &self.registry
        }
    }

    /// `https://HOST/v2/REPOSITORY`. Plain HTTP only on the loopback
    /// interface (a registry the tests start), as Docker allows it there.
    pub fn api_base(&self) -> String {
        let host = self.host();
        let name = host.rsplit_once(':').map_or(host, |(h, port)| {
            if port.bytes().all(|b| b.is_ascii_digit()) {
                h
            } else {
                host
            }
        });
        let loopback = name == "localhost"
            || name == "[::1]"
            || name
                .parse::<std::net::Ipv4Addr>()
                .is_ok_and(|a| a.is_loopback());
        let scheme = if loopback { "http" } else { "https" };
        format!("{scheme}://{host}/v2/{}", self.repository)
    }

    /// The name without tag or digest: `docker.io/library/traefik`.
    pub fn name(&self) -> String {
        format!("{}/{}", self.registry, self.repository)
    }

    /// Does a lookup by `r` find the image this reference names: the same
    /// name, and `r`'s digest when it has one, else its tag? containerd's
    /// CRI looks `NAME:TAG@DIGEST` up by the digest alone
    /// (`internal/cri/server/images/service.go` LocalResolve).
    pub fn answers(&self, r: &Reference) -> bool {
        self.name() == r.name()
            && match r.digest {
                Some(d) => self.digest == Some(d),
                None => self.tag == r.tag,
            }
    }
}

impl std::fmt::Display for Reference {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}", self.name())?;
        if let Some(t) = &self.tag {
            write!(f, ":{t}")?;
        }
        if let Some(d) = &self.digest {
            write!(f, "@sha256:{d}")?;
        }
        Ok(())
    }
}

impl std::str::FromStr for Reference {
    type Err = anyhow::Error;

    /// The grammar of distribution's `reference/reference.go`, with
    /// Docker Hub's defaults (`traefik` -> `docker.io/library/traefik`).
    /// A reference must name a tag or a digest: no implicit `latest`.
    fn from_str(s: &str) -> Result<Reference> {
        let bad = |why: &str| anyhow!("`{s}` is not an image reference: {why}");
        if s.is_empty() {
            return Err(bad("it is empty"));
        }
        let (rest, digest) = match s.split_once('@') {
            Some((rest, d)) => {
                let hex = d
                    .strip_prefix("sha256:")
                    .ok_or_else(|| bad("the digest must be sha256:<64 hex digits>"))?;
                let digest: Sha256Digest = hex
                    .parse()
                    .map_err(|_| bad("the digest must be sha256: and 64 lowercase hex digits"))?;
                (rest, Some(digest))
            }
            None => (s, None),
        };
        let last_slash = rest.rfind('/').map_or(0, |i| i + 1);
        let (name, tag) = match rest[last_slash..].rfind(':') {
            Some(i) => (&rest[..last_slash + i], Some(&rest[last_slash + i + 1..])),
            None => (rest, None),
        };
        if let Some(t) = tag {
            let ok = !t.is_empty()
                && t.len() <= 128
                && !t.starts_with(['.', '-'])
                && t.bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b"._-".contains(&b));
            if !ok {
                return Err(bad(&format!(
                    "the tag `{t}` is not [A-Za-z0-9_][A-Za-z0-9._-]{{0,127}}"
                )));
            }
        }
        if tag.is_none() && digest.is_none() {
            return Err(bad(
                "it names neither a tag nor a digest; add :TAG or @sha256:DIGEST (mkstick never assumes `latest`)",
            ));
        }
        let (registry, repository) = match name.split_once('/') {
            Some((first, path)) if first.contains(['.', ':']) || first == "localhost" => {
                (first.to_string(), path.to_string())
            }
            _ => (DOCKER_HUB.to_string(), name.to_string()),
        };
        let registry = if registry == "index.docker.io" {
            DOCKER_HUB.to_string()
        } else {
            registry
        };
        if registry.is_empty()
            || !registry
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b".-:[]".contains(&b))
        {
            return Err(bad(&format!("`{registry}` is not a registry host")));
        }
        let repository = if registry == DOCKER_HUB && !repository.contains('/') {
            format!("library/{repository}")
        } else {
            repository
        };
        for part in repository.split('/') {
            if !path_component(part) {
                return Err(bad(&format!(
                    "`{part}` is not a repository path part (lowercase letters and digits, separated by `.`, `_`, `__` or dashes)"
                )));
            }
        }
        if registry.len() + 1 + repository.len() > 255 {
            return Err(bad("the name is longer than 255 characters"));
        }
        Ok(Reference {
            registry,
            repository,
            tag: tag.map(str::to_string),
            digest,
        })
    }
}

/// `[a-z0-9]+((\.|_|__|-+)[a-z0-9]+)*` (distribution-spec `spec.md`).
fn path_component(s: &str) -> bool {
    let b = s.as_bytes();
    let alnum = |c: u8| c.is_ascii_lowercase() || c.is_ascii_digit();
    if b.is_empty() || !alnum(b[0]) || !alnum(b[b.len() - 1]) {
        return false;
    }
    let mut i = 0;
    while i < b.len() {
        if alnum(b[i]) {
            i += 1;
            continue;
        }
        let start = i;
        while i < b.len() && !alnum(b[i]) {
            i += 1;
        }
        let sep = &s[start..i];
        if !(sep == "." || sep == "_" || sep == "__" || sep.bytes().all(|c| c == b'-')) {
            return false;
        }
    }
    true
}

/// The platform an index is resolved to.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct Platform {
    pub os: String,
    pub architecture: String,
    #[serde(default)]
    pub variant: Option<String>,
}

impl Platform {
    /// The one platform mkstick builds for (x86_64 UEFI).
    pub fn linux_amd64() -> Platform {
        Platform::linux("amd64")
    }

    /// `linux/<architecture>`, in Go's names (`amd64`, `arm64`).
    pub fn linux(architecture: &str) -> Platform {
        Platform {
            os: "linux".into(),
            architecture: architecture.into(),
            variant: None,
        }
    }

    fn matches(&self, other: &Platform) -> bool {
        self.os == other.os
            && self.architecture == other.architecture
            && (self.variant.is_none() || self.variant == other.variant)
    }
}

impl std::fmt::Display for Platform {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}/{}", self.os, self.architecture)?;
        if let Some(v) = &self.variant {
            write!(f, "/{v}")?;
        }
        Ok(())
    }
}

/// A descriptor (image-spec `descriptor.md`): what a manifest says about
/// the file it points at.
#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase")]
struct Descriptor {
    media_type: String,
    digest: String,
    size: u64,
    #[serde(default)]
    platform: Option<Platform>,
}

impl Descriptor {
    fn sha256(&self, what: &str) -> Result<Sha256Digest> {
        self.digest
            .strip_prefix("sha256:")
            .and_then(|h| h.parse().ok())
            .ok_or_else(|| {
                anyhow!(
                    "{what} has the digest `{}`; mkstick takes only sha256 digests",
                    self.digest
                )
            })
    }
}

/// An image manifest or an index, as much of it as a pull reads.
#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase")]
struct ManifestDoc {
    #[serde(default)]
    schema_version: Option<u32>,
    #[serde(default)]
    media_type: Option<String>,
    #[serde(default)]
    manifests: Option<Vec<Descriptor>>,
    #[serde(default)]
    config: Option<Descriptor>,
    #[serde(default)]
    layers: Option<Vec<Descriptor>>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Kind {
    Index,
    Manifest,
}

impl ManifestDoc {
    /// Parse, and check that the body's `mediaType` agrees with the
    /// server's `Content-Type` (distribution-spec: a mismatch is refused).
    fn parse(bytes: &[u8], content_type: Option<&str>, what: &str) -> Result<(ManifestDoc, Kind)> {
        let doc: ManifestDoc = serde_json::from_slice(bytes)
            .with_context(|| format!("{what} is not a JSON image manifest or index"))?;
        if doc.schema_version != Some(2) {
            bail!(
                "{what} has schemaVersion {:?}; mkstick reads only version 2 (OCI, Docker v2 schema 2)",
                doc.schema_version
            );
        }
        if let (Some(body), Some(header)) = (&doc.media_type, content_type) {
            if body != header
                && [
                    OCI_INDEX,
                    OCI_MANIFEST,
                    DOCKER_MANIFEST_LIST,
                    DOCKER_MANIFEST,
                ]
                .contains(&header)
            {
                bail!("{what} says it is {body}, but the registry sent it as {header}");
            }
        }
        let media_type = doc.media_type.as_deref().or(content_type);
        let kind = match media_type {
            Some(OCI_INDEX | DOCKER_MANIFEST_LIST) => Kind::Index,
            Some(OCI_MANIFEST | DOCKER_MANIFEST) => Kind::Manifest,
            Some(other) if doc.manifests.is_none() && doc.config.is_none() => {
                bail!("{what} is a {other}, not an image manifest or index")
            }
            _ if doc.manifests.is_some() => Kind::Index,
            _ if doc.config.is_some() => Kind::Manifest,
            _ => bail!("{what} is neither an image manifest nor an index"),
        };
        Ok((doc, kind))
    }
}

/// A manifest or index: its exact bytes, as the registry served them.
#[derive(Debug, Clone)]
pub struct ManifestBytes {
    pub digest: Sha256Digest,
    pub media_type: String,
    pub bytes: Vec<u8>,
}

/// A config or layer blob, verified, in the cache.
#[derive(Debug, Clone)]
pub struct BlobFile {
    pub digest: Sha256Digest,
    pub size_bytes: u64,
    pub media_type: String,
    pub path: PathBuf,
}

/// An image a stick carries, and where it is named: what the acquire stage
/// pulls.
#[derive(Debug, Clone, PartialEq)]
pub struct WantedImage {
    /// With a digest when pinned; a tag alone is resolved when pulled.
    pub reference: Reference,
    pub pinned: bool,
    /// The binaries table, or the user's manifest and line.
    pub named_in: String,
}

impl WantedImage {
    /// Is `pulled` this image: the same name and tag, and, when pinned,
    /// the pinned digest? (A pulled reference carries the digest it
    /// resolved to.)
    pub fn is(&self, pulled: &PulledImage) -> bool {
        pulled.reference.answers(&self.reference) && pulled.reference.tag == self.reference.tag
    }
}

/// One image for one platform, every file verified and in the cache.
#[derive(Debug, Clone)]
pub struct PulledImage {
    /// The reference, with the digest it resolved to.
    pub reference: Reference,
    /// What the reference names: usually an index, whose digest is the
    /// one that pins the image.
    pub top: ManifestBytes,
    /// The manifest for the platform (the same as `top` when the
    /// reference names a single manifest).
    pub manifest: ManifestBytes,
    pub config: BlobFile,
    pub layers: Vec<BlobFile>,
}

impl PulledImage {
    /// The bytes the image adds to a stick: manifests, config and layers.
    pub fn size_bytes(&self) -> u64 {
        let manifests = if self.top.digest == self.manifest.digest {
            self.top.bytes.len() as u64
        } else {
            (self.top.bytes.len() + self.manifest.bytes.len()) as u64
        };
        manifests + self.config.size_bytes + self.layers.iter().map(|l| l.size_bytes).sum::<u64>()
    }

    /// Every cached file the image uses (for the cache's records).
    pub fn digests(&self) -> Vec<Sha256Digest> {
        let mut v = vec![self.top.digest, self.manifest.digest, self.config.digest];
        v.extend(self.layers.iter().map(|l| l.digest));
        v.sort();
        v.dedup();
        v
    }
}

/// The pull client: a [`Downloader`] and the run's bearer tokens.
pub struct Registry<'d, 'a> {
    dl: &'d Downloader<'a>,
    /// (host, repository) -> `Bearer <token>`.
    tokens: RefCell<BTreeMap<(String, String), String>>,
    token_requests: RefCell<u64>,
}

impl<'d, 'a> Registry<'d, 'a> {
    pub fn new(dl: &'d Downloader<'a>) -> Self {
        Registry {
            dl,
            tokens: RefCell::new(BTreeMap::new()),
            token_requests: RefCell::new(0),
        }
    }

    fn cache(&self) -> &Cache {
        self.dl.cache
    }

    /// How many tokens this client asked for (tests, reports).
    pub fn token_requests(&self) -> u64 {
        *self.token_requests.borrow()
    }

    /// Resolve `reference` to `platform` and bring every file it needs into
    /// the cache, each checked against its sha256. A reference pinned by
    /// digest whose files are all cached needs no request.
    pub fn pull(&self, reference: &Reference, platform: &Platform) -> Result<PulledImage> {
        self.pull_inner(reference, platform)
            .with_context(|| format!("pulling {reference}"))
    }

    fn pull_inner(&self, r: &Reference, platform: &Platform) -> Result<PulledImage> {
        let auth = RepoAuth {
            reg: self,
            repository: &r.repository,
        };
        let top = self.top_manifest(r, &auth)?;
        let (doc, kind) = ManifestDoc::parse(&top.bytes, Some(&top.media_type), "the manifest")?;
        let (manifest, doc) = match kind {
            Kind::Manifest => (top.clone(), doc),
            Kind::Index => {
                let entries = doc.manifests.unwrap_or_default();
                let chosen = entries
                    .iter()
                    .find(|d| d.platform.as_ref().is_some_and(|p| platform.matches(p)))
                    .ok_or_else(|| {
                        let have: Vec<String> = entries
                            .iter()
                            .filter_map(|d| d.platform.as_ref().map(|p| p.to_string()))
                            .collect();
                        anyhow!(
                            "the index sha256:{} has no manifest for {platform}; it has: {}",
                            top.digest,
                            if have.is_empty() {
                                "none with a platform".to_string()
                            } else {
                                have.join(", ")
                            }
                        )
                    })?;
                let what = format!("the {platform} manifest");
                let digest = chosen.sha256(&what)?;
                let bytes = self
                    .manifest_by_digest(r, &digest, &auth, &what)?
                    .ok_or_else(|| {
                        anyhow!("the registry has no {what} sha256:{digest}, which the index lists")
                    })?;
                if bytes.0.len() as u64 != chosen.size {
                    bail!(
                        "{what} sha256:{digest} is {} bytes, but the index says {}",
                        bytes.0.len(),
                        chosen.size
                    );
                }
                let (doc, kind) = ManifestDoc::parse(&bytes.0, bytes.1.as_deref(), &what)?;
                if kind != Kind::Manifest {
                    bail!(
                        "{what} sha256:{digest} is another index; mkstick reads one level of index"
                    );
                }
                self.cache().admit_bytes(&bytes.0)?;
                let media_type = doc
                    .media_type
                    .clone()
                    .unwrap_or_else(|| chosen.media_type.clone());
                (
                    ManifestBytes {
                        digest,
                        media_type,
                        bytes: bytes.0,
                    },
                    doc,
                )
            }
        };
        let config_desc = doc
            .config
            .ok_or_else(|| anyhow!("the manifest sha256:{} has no config", manifest.digest))?;
        let config = self.blob(r, &config_desc, "config", &auth)?;
        self.check_config_platform(&config, platform)?;
        let layer_descs = doc.layers.unwrap_or_default();
        let n = layer_descs.len();
        let layers = layer_descs
            .iter()
            .enumerate()
            .map(|(i, d)| self.blob(r, d, &format!("layer {}/{n}", i + 1), &auth))
            .collect::<Result<Vec<_>>>()?;
        let mut reference = r.clone();
        reference.digest = Some(top.digest);
        let image = PulledImage {
            reference,
            top,
            manifest,
            config,
            layers,
        };
        // So that `cache prune` keeps what the image uses.
        self.cache()
            .record_image(&image.reference.to_string(), &image.digests())?;
        Ok(image)
    }

    /// What the reference names: by its digest when pinned (from the cache
    /// if it is there), else by its tag, hashed as received.
    fn top_manifest(&self, r: &Reference, auth: &RepoAuth) -> Result<ManifestBytes> {
        let (bytes, content_type, digest) = match &r.digest {
            Some(pin) => match self.manifest_by_digest(r, pin, auth, "the manifest")? {
                Some((b, ct)) => (b, ct, *pin),
                None => return Err(self.explain_missing_pin(r, pin, auth)),
            },
            None => {
                let tag = r.tag.as_deref().expect("a reference has a tag or a digest");
                let url = format!("{}/manifests/{tag}", r.api_base());
                let got = self
                    .get_manifest(&url, auth, "the manifest")?
                    .ok_or_else(|| anyhow!("{} has no tag {tag} ({url} answered 404)", r.name()))?;
                let digest = Sha256Digest::of(&got.body);
                (got.body, got.content_type, digest)
            }
        };
        let (doc, _) = ManifestDoc::parse(&bytes, content_type.as_deref(), "the manifest")?;
        let media_type = doc
            .media_type
            .or(content_type)
            .unwrap_or_else(|| OCI_MANIFEST.to_string());
        self.cache().admit_bytes(&bytes)?;
        Ok(ManifestBytes {
            digest,
            media_type,
            bytes,
        })
    }

    /// A manifest by digest, from the cache or the registry; the bytes
    /// must hash to `digest`.
    fn manifest_by_digest(
        &self,
        r: &Reference,
        digest: &Sha256Digest,
        auth: &RepoAuth,
        what: &str,
    ) -> Result<Option<(Vec<u8>, Option<String>)>> {
        let cached = self.cache().blob_path(digest);
        if cached.is_file() {
            let bytes =
                std::fs::read(&cached).with_context(|| format!("reading {}", cached.display()))?;
            if Sha256Digest::of(&bytes) == *digest {
                return Ok(Some((bytes, None)));
            }
            self.cache().evict(digest)?;
        }
        let url = format!("{}/manifests/sha256:{digest}", r.api_base());
        let Some(got) = self.get_manifest(&url, auth, what)? else {
            return Ok(None);
        };
        let actual = Sha256Digest::of(&got.body);
        if actual != *digest {
            bail!(
                "{what} does not match its pin: expected sha256:{digest}, the registry sent bytes with sha256:{actual}; nothing was cached"
            );
        }
        Ok(Some((got.body, got.content_type)))
    }

    /// A pinned digest the registry does not have: say what the tag points
    /// at now, so the error names both digests.
    fn explain_missing_pin(
        &self,
        r: &Reference,
        pin: &Sha256Digest,
        auth: &RepoAuth,
    ) -> anyhow::Error {
        let missing = anyhow!(
            "it is pinned to sha256:{pin}, but the registry has no manifest with that digest; nothing was cached"
        );
        let Some(tag) = &r.tag else { return missing };
        let url = format!("{}/manifests/{tag}", r.api_base());
        match self.get_manifest(&url, auth, "the manifest") {
            Ok(Some(got)) => anyhow!(
                "it is pinned to sha256:{pin}, but the registry has no manifest with that digest; its tag {tag} is sha256:{} now. Check the pin (if the tag's digest is the right one, pin that); nothing was cached",
                Sha256Digest::of(&got.body)
            ),
            _ => missing,
        }
    }

    fn get_manifest(
        &self,
        url: &str,
        auth: &RepoAuth,
        what: &str,
    ) -> Result<Option<super::download::SmallResponse>> {
        self.dl.get_small_with(
            what,
            url,
            RequestOptions {
                accept: Some(MANIFEST_ACCEPT),
                auth: Some(auth),
                ..Default::default()
            },
        )
    }

    /// A config or layer, through the downloader: from the cache, or
    /// fetched (resumed, retried), checked against its sha256 and only
    /// then cached.
    fn blob(&self, r: &Reference, d: &Descriptor, what: &str, auth: &RepoAuth) -> Result<BlobFile> {
        let digest = d.sha256(what)?;
        let artifact = Artifact {
            name: format!("{}/{} {what}", r.registry, r.repository),
            url: format!("{}/blobs/sha256:{digest}", r.api_base()),
            digest: Digest::Sha256(digest.0),
            signature_url: None,
        };
        let got = self
            .dl
            .fetch_with(
                &artifact,
                None,
                RequestOptions {
                    accept: None,
                    auth: Some(auth),
                    max_bytes: Some(d.size),
                    not_found: Some(
                        "the registry does not have this blob, which the image's manifest names",
                    ),
                },
            )
            .with_context(|| format!("fetching the {what} sha256:{digest}"))?;
        let size_bytes = std::fs::metadata(&got.path)
            .with_context(|| format!("reading {}", got.path.display()))?
            .len();
        if size_bytes != d.size {
            // The digest matched, so the descriptor's size is wrong.
            bail!(
                "the {what} sha256:{digest} is {} bytes, but the manifest says {}",
                size_bytes,
                d.size
            );
        }
        Ok(BlobFile {
            digest,
            size_bytes,
            media_type: d.media_type.clone(),
            path: got.path,
        })
    }

    /// A single-platform manifest must be for the platform asked for.
    fn check_config_platform(&self, config: &BlobFile, platform: &Platform) -> Result<()> {
        #[derive(Deserialize)]
        struct Config {
            os: Option<String>,
            architecture: Option<String>,
        }
        let bytes = std::fs::read(&config.path)
            .with_context(|| format!("reading {}", config.path.display()))?;
        let c: Config = serde_json::from_slice(&bytes)
            .with_context(|| format!("the config sha256:{} is not JSON", config.digest))?;
        let (os, arch) = (c.os.unwrap_or_default(), c.architecture.unwrap_or_default());
        if os != platform.os || arch != platform.architecture {
            bail!(
                "the image is for {os}/{arch}, not {platform} (its config sha256:{})",
                config.digest
            );
        }
        Ok(())
    }

    /// Get an anonymous token for a challenge and keep it.
    fn fetch_token(&self, host: &str, repository: &str, challenge: &str) -> Result<bool> {
        let c = Challenge::parse(challenge).ok_or_else(|| {
            anyhow!("{host} asks for credentials (`WWW-Authenticate: {challenge}`); mkstick pulls anonymously only, with the bearer tokens public registries hand out")
        })?;
        let scope = c
            .scope
            .clone()
            .unwrap_or_else(|| format!("repository:{repository}:pull"));
        let mut url = c.realm.clone();
        url.push(if url.contains('?') { '&' } else { '?' });
        if let Some(service) = &c.service {
            url.push_str(&format!("service={}&", query_escape(service)));
        }
        url.push_str(&format!("scope={}", query_escape(&scope)));
        *self.token_requests.borrow_mut() += 1;
        let body = self
            .dl
            .get_small("a registry token", &url)
            .with_context(|| format!("getting a token for {repository} from {}", c.realm))?;
        #[derive(Deserialize)]
        struct TokenResponse {
            token: Option<String>,
            access_token: Option<String>,
        }
        let t: TokenResponse = serde_json::from_slice(&body)
            .with_context(|| format!("the token service {} sent no JSON", c.realm))?;
        let token = t
            .token
            .or(t.access_token)
            .filter(|t| !t.is_empty())
            .ok_or_else(|| anyhow!("the token service {} sent no token", c.realm))?;
        self.tokens.borrow_mut().insert(
            (host.to_string(), repository.to_string()),
            format!("Bearer {token}"),
        );
        Ok(true)
    }
}

/// The credentials of one repository's requests.
struct RepoAuth<'r, 'd, 'a> {
    reg: &'r Registry<'d, 'a>,
    repository: &'r str,
}

impl Authorizer for RepoAuth<'_, '_, '_> {
    fn header(&self, url: &str) -> Option<String> {
        let host = url_host(url)?;
        self.reg
            .tokens
            .borrow()
            .get(&(host.to_string(), self.repository.to_string()))
            .cloned()
    }

    fn challenged(&self, url: &str, challenge: &str) -> Result<bool> {
        let host = url_host(url).ok_or_else(|| anyhow!("{url} has no host"))?;
        self.reg.fetch_token(host, self.repository, challenge)
    }
}

fn url_host(url: &str) -> Option<&str> {
    let rest = url.split_once("://")?.1;
    Some(rest.split(['/', '?', '#']).next().unwrap_or(rest))
}

/// `WWW-Authenticate: Bearer realm="…",service="…",scope="…"` (RFC 6750
/// §3, auth-params of RFC 7235 §2.1: quoted strings may hold commas).
#[derive(Debug, Clone, PartialEq, Eq)]
struct Challenge {
    realm: String,
    service: Option<String>,
    scope: Option<String>,
}

impl Challenge {
    fn parse(header: &str) -> Option<Challenge> {
        let (scheme, rest) = header.trim().split_once(char::is_whitespace)?;
        if !scheme.eq_ignore_ascii_case("bearer") {
            return None;
        }
        let mut params = BTreeMap::new();
        let mut s = rest.trim_start();
        while !s.is_empty() {
            let (key, after) = s.split_once('=')?;
            let key = key.trim().to_ascii_lowercase();
            let after = after.trim_start();
            let (value, next) = if let Some(q) = after.strip_prefix('"') {
                let mut value = String::new();
                let mut chars = q.char_indices();
                let mut end = None;
                while let Some((i, c)) = chars.next() {
                    match c {
                        '\\' => value.extend(chars.next().map(|(_, c)| c)),
                        '"' => {
                            end = Some(i + 1);
                            break;
                        }
                        c => value.push(c),
                    }
                }
                (value, &q[end?..])
            } else {
                let end = after.find(',').unwrap_or(after.len());
                (after[..end].trim().to_string(), &after[end..])
            };
            params.insert(key, value);
            s = next.trim_start().trim_start_matches(',').trim_start();
        }
        let realm = params.remove("realm").filter(|r| !r.is_empty())?;
        Some(Challenge {
            realm,
            service: params.remove("service"),
            scope: params.remove("scope"),
        })
    }
}

/// Percent-encode a query value (RFC 3986 unreserved characters pass).
fn query_escape(s: &str) -> String {
    let mut out = String::new();
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || b"-._~".contains(&b) {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    const D: &str = "4b2a9a2d5e3c1f00112233445566778899aabbccddeeff00112233445566778f";

    #[test]
    fn references_parse_with_docker_hub_defaults() {
        let r: Reference = "traefik:v3.7.13".parse().unwrap();
        assert_eq!(r.registry, "docker.io");
        assert_eq!(r.repository, "library/traefik");
        assert_eq!(r.host(), "registry-1.docker.io");
        assert_eq!(
            r.api_base(),
            "https://registry-1.docker.io/v2/library/traefik"
        );
        assert_eq!(r.to_string(), "docker.io/library/traefik:v3.7.13");

        let r: Reference = "docker.io/traefik/whoami:v1.11.0".parse().unwrap();
        assert_eq!(r.repository, "traefik/whoami");
        let r: Reference = "index.docker.io/library/busybox:1".parse().unwrap();
        assert_eq!(r.name(), "docker.io/library/busybox");

        let s = format!("registry.k8s.io/sig-storage/csi-provisioner:v6.3.0@sha256:{D}");
        let r: Reference = s.parse().unwrap();
        assert_eq!(r.registry, "registry.k8s.io");
        assert_eq!(r.repository, "sig-storage/csi-provisioner");
        assert_eq!(r.tag.as_deref(), Some("v6.3.0"));
        assert_eq!(r.digest.unwrap().to_string(), D);
        assert_eq!(r.to_string(), s);

        let r: Reference = format!("127.0.0.1:5000/test/hello@sha256:{D}")
            .parse()
            .unwrap();
        assert_eq!(r.registry, "127.0.0.1:5000");
        assert_eq!(r.tag, None);
        assert_eq!(r.api_base(), "http://127.0.0.1:5000/v2/test/hello");
        let r: Reference = "localhost:5000/a:b".parse().unwrap();
        assert!(r.api_base().starts_with("http://localhost:5000/"));
        let r: Reference = "localhost/a:b".parse().unwrap();
        assert_eq!(r.registry, "localhost");
        // A port on a public host does not make it plain HTTP.
        let r: Reference = "quay.io:443/coreos-assembler/nfs:x".parse().unwrap();
        assert!(r.api_base().starts_with("https://"));
    }

    #[test]
    fn bad_references_say_why() {
        for (s, why) in [
            ("", "empty"),
            ("traefik", "neither a tag nor a digest"),
            ("Traefik:v1", "repository path part"),
            ("docker.io/a//b:v1", "repository path part"),
            ("a/b:", "tag"),
            ("a/b:-x", "tag"),
            ("a@sha256:abc", "64 lowercase hex"),
            ("a@md5:abc", "sha256:<64 hex digits>"),
            ("reg.io/a_-b:v1", "repository path part"),
            ("re g.io/a:v1", "registry host"),
        ] {
            let e = s.parse::<Reference>().unwrap_err().to_string();
            assert!(e.contains(why), "{s}: {e}");
            assert!(e.contains(&format!("`{s}`")), "{s}: {e}");
        }
        assert!(path_component("a__b.c-d---e"));
        assert!(!path_component("a___b"));
        assert!(!path_component("a-"));
    }

    #[test]
    fn a_lookup_finds_an_image_by_its_digest_or_else_its_tag() {
        let d = "ab".repeat(32);
        let pinned: Reference = format!("quay.io/a/b:1.0@sha256:{d}").parse().unwrap();
        let r = |s: &str| s.parse::<Reference>().unwrap();
        assert!(pinned.answers(&r("quay.io/a/b:1.0")));
        assert!(pinned.answers(&r(&format!("quay.io/a/b@sha256:{d}"))));
        // The digest decides, as the CRI drops the tag of NAME:TAG@DIGEST.
        assert!(pinned.answers(&r(&format!("quay.io/a/b:2.0@sha256:{d}"))));
        assert!(!pinned.answers(&r(&format!("quay.io/a/b:1.0@sha256:{}", "cd".repeat(32)))));
        assert!(!pinned.answers(&r("quay.io/a/b:2.0")));
        assert!(!pinned.answers(&r("quay.io/a/c:1.0")));
        let tag_only = r("quay.io/a/b:1.0");
        assert!(!tag_only.answers(&r(&format!("quay.io/a/b@sha256:{d}"))));
    }

    #[test]
    fn challenges_parse_with_quoted_commas() {
        let c = Challenge::parse(
            r#"Bearer realm="https://auth.docker.io/token",service="registry.docker.io",scope="repository:library/a:pull,push""#,
        )
        .unwrap();
        assert_eq!(c.realm, "https://auth.docker.io/token");
        assert_eq!(c.service.as_deref(), Some("registry.docker.io"));
        assert_eq!(c.scope.as_deref(), Some("repository:library/a:pull,push"));
        let c = Challenge::parse(r#"bearer realm=https://x/t, service = "s""#).unwrap();
        assert_eq!(c.realm, "https://x/t");
        assert_eq!(c.service.as_deref(), Some("s"));
        assert_eq!(c.scope, None);
        assert_eq!(Challenge::parse(r#"Basic realm="Registry""#), None);
        assert_eq!(Challenge::parse("Bearer service=\"x\""), None);
        assert_eq!(Challenge::parse(""), None);
        assert_eq!(
            query_escape("repository:a/b:pull"),
            "repository%3Aa%2Fb%3Apull"
        );
    }

    #[test]
    fn manifest_kinds_come_from_the_media_type_or_the_shape() {
        let index = format!(r#"{{"schemaVersion":2,"mediaType":"{OCI_INDEX}","manifests":[]}}"#);
        assert_eq!(
            ManifestDoc::parse(index.as_bytes(), None, "m").unwrap().1,
            Kind::Index
        );
        let e = ManifestDoc::parse(index.as_bytes(), Some(OCI_MANIFEST), "m").unwrap_err();
        assert!(e.to_string().contains("sent it as"), "{e}");
        let bare = br#"{"schemaVersion":2,"config":{"mediaType":"x","digest":"sha256:00","size":1},"layers":[]}"#;
        assert_eq!(
            ManifestDoc::parse(bare, None, "m").unwrap().1,
            Kind::Manifest
        );
        let v1 = br#"{"schemaVersion":1,"name":"x"}"#;
        assert!(ManifestDoc::parse(v1, None, "m").is_err());
    }

    #[test]
    fn platforms_match_on_os_and_architecture() {
        let amd64 = Platform::linux_amd64();
        let mut v3 = amd64.clone();
        v3.variant = Some("v3".into());
        assert!(amd64.matches(&v3));
        assert!(!v3.matches(&amd64));
        let mut arm = amd64.clone();
        arm.architecture = "arm64".into();
        assert!(!amd64.matches(&arm));
    }
}
