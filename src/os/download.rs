//! Downloads: a URL and the digest its publisher gives -> a verified file in
//! the [`Cache`].
//!
//! The HTTP client is ureq (blocking, rustls, no async runtime to carry for
//! a handful of sequential downloads). It reads `HTTPS_PROXY`, `HTTP_PROXY`,
//! `ALL_PROXY` and `NO_PROXY` (and their lowercase forms). Its transparent
//! gzip is left out on purpose: a resumed Range download must be the
//! publisher's bytes, unchanged.
//!
//! A download goes to `partial/*.part`, resumes with `Range: bytes=N-`, and
//! is retried a bounded number of times. A file with no signature to check
//! is hashed while it is written (a resumed `.part` left by an earlier run is
//! hashed first), so it is not read again. A signed file is checked in one
//! pass over the finished file: its digest and its detached signature. Only
//! a file that checks out is renamed into the cache; a failed check deletes
//! it.

use super::cache::{Cache, Signer};
use super::verify::{Digest, DigestReader, Hasher, Keyring, Signature};
use crate::io::{human_bytes, Sha256Digest, BUFFER_SIZE};
use crate::progress::Progress;
use anyhow::{anyhow, Context, Result};
use std::cell::RefCell;
use std::io::{Read, Write};
use std::path::PathBuf;
use std::time::Duration;

/// How many times one request is tried before its error is reported.
pub const ATTEMPTS: u32 = 4;

/// One file to fetch.
#[derive(Debug, Clone)]
pub struct Artifact {
    /// What it is, for the progress bar and messages: "kernel".
    pub name: String,
    pub url: String,
    pub digest: Digest,
    /// The detached signature's URL, where the publisher signs this file.
    pub signature_url: Option<String>,
}

impl Artifact {
    /// The last part of the URL's path: the file name the publisher signed.
    pub fn file_name(&self) -> String {
        let path = self.url.split(['?', '#']).next().unwrap_or_default();
        path.rsplit('/').next().unwrap_or_default().to_string()
    }
}

/// A file in the cache, verified.
#[derive(Debug, Clone)]
pub struct Fetched {
    pub path: PathBuf,
    pub sha256: Sha256Digest,
    pub size_bytes: u64,
    /// Whose signature it carries, if it was signature-checked.
    pub signed_by: Option<Signer>,
}

/// What a run fetched and what it reused, for the summary line.
#[derive(Debug, Clone, Default)]
pub struct Summary {
    pub fetched: Vec<(String, u64)>,
    pub reused: Vec<String>,
    pub unsigned: Vec<String>,
}

impl std::fmt::Display for Summary {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let bytes: u64 = self.fetched.iter().map(|(_, b)| b).sum();
        write!(
            f,
            "fetched {} file{} ({}), reused {} from the cache",
            self.fetched.len(),
            if self.fetched.len() == 1 { "" } else { "s" },
            human_bytes(bytes),
            self.reused.len()
        )?;
        if !self.unsigned.is_empty() {
            write!(f, "; NOT signature-checked: {}", self.unsigned.join(", "))?;
        }
        Ok(())
    }
}

/// Credentials for a server that asks for them (a container registry's
/// bearer tokens): what to send to a URL, and what to do when a URL
/// answers 401 with a `WWW-Authenticate` challenge.
pub trait Authorizer {
    /// The `Authorization` header value for this URL, if there is one.
    fn header(&self, url: &str) -> Option<String>;
    /// `url` (the last one, after redirects) answered 401 with this
    /// challenge. `Ok(true)`: new credentials are in place, so the request
    /// is sent once more to `url`.
    fn challenged(&self, url: &str, challenge: &str) -> Result<bool>;
}

/// What a request sends beyond a plain GET (registries).
#[derive(Clone, Copy, Default)]
pub struct RequestOptions<'r> {
    /// The `Accept` header.
    pub accept: Option<&'r str>,
    pub auth: Option<&'r dyn Authorizer>,
    /// Refuse a body larger than this, before it is written (a blob whose
    /// size its manifest gives); at most [`MAX_DOWNLOAD_BYTES`].
    pub max_bytes: Option<u64>,
    /// What a 404 means, for the error (the default speaks of `[os]`).
    pub not_found: Option<&'r str>,
}

/// A small document with the media type its server gave it.
#[derive(Debug, Clone)]
pub struct SmallResponse {
    pub body: Vec<u8>,
    /// `Content-Type`, without its parameters.
    pub content_type: Option<String>,
}

/// Signature policy: never skipped unless the user said so, loudly.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum SignaturePolicy {
    #[default]
    Require,
    /// `--insecure-skip-signature`: the digest is still checked.
    InsecureSkip,
}

pub struct Downloader<'a> {
    agent: ureq::Agent,
    pub cache: &'a Cache,
    progress: &'a Progress,
    policy: SignaturePolicy,
    retry_delay: Duration,
    reverify: bool,
    summary: RefCell<Summary>,
}

/// A connection that sends nothing for this long is given up (and retried).
pub const READ_TIMEOUT: Duration = Duration::from_secs(60);
/// No download may grow past this, whatever the server sends.
pub const MAX_DOWNLOAD_BYTES: u64 = 16 << 30;

fn agent(read_timeout: Duration) -> ureq::Agent {
    ureq::Agent::config_builder()
        .http_status_as_error(false)
        .timeout_connect(Some(Duration::from_secs(30)))
        .timeout_recv_response(Some(read_timeout))
        .timeout_per_read(Some(read_timeout))
        .user_agent(concat!("mkstick/", env!("CARGO_PKG_VERSION")))
        .build()
        .new_agent()
}

/// Why one attempt failed, and whether another may help.
enum Failure {
    Retry(anyhow::Error),
    Fatal(anyhow::Error),
}

impl<'a> Downloader<'a> {
    pub fn new(cache: &'a Cache, progress: &'a Progress, policy: SignaturePolicy) -> Self {
        Downloader {
            agent: agent(READ_TIMEOUT),
            cache,
            progress,
            policy,
            retry_delay: Duration::from_millis(500),
            reverify: false,
            summary: RefCell::new(Summary::default()),
        }
    }

    /// Hash cached OS files again before reusing them.
    pub fn with_reverify(mut self, yes: bool) -> Self {
        self.reverify = yes;
        self
    }

    pub fn reverify(&self) -> bool {
        self.reverify
    }

    /// Give up on a connection that sends nothing for this long (tests).
    pub fn with_read_timeout(mut self, d: Duration) -> Self {
        self.agent = agent(d);
        self
    }

    /// Shorter waits between attempts (tests).
    pub fn with_retry_delay(mut self, d: Duration) -> Self {
        self.retry_delay = d;
        self
    }

    pub fn summary(&self) -> Summary {
        self.summary.borrow().clone()
    }

    pub fn signature_policy(&self) -> SignaturePolicy {
        self.policy
    }

    pub fn note(&self, text: &str) {
        self.progress.note(text);
    }

    /// A small document (metadata, a digest list), into memory, retried.
    pub fn get_small(&self, what: &str, url: &str) -> Result<Vec<u8>> {
        match self.get_small_with(what, url, RequestOptions::default())? {
            Some(r) => Ok(r.body),
            None => Err(status_failure(what, url, 404).into_error()),
        }
    }

    /// [`Downloader::get_small`] with an `Accept` header and credentials;
    /// `None` when the server answers 404.
    pub fn get_small_with(
        &self,
        what: &str,
        url: &str,
        opts: RequestOptions,
    ) -> Result<Option<SmallResponse>> {
        self.retrying(url, |_| {
            let mut resp = self.request(url, None, opts)?;
            let status = resp.status().as_u16();
            if status == 404 {
                return Ok(None);
            }
            if status != 200 {
                return Err(status_failure(what, url, status));
            }
            let content_type = resp
                .headers()
                .get("content-type")
                .and_then(|v| v.to_str().ok())
                .and_then(|v| v.split(';').next())
                .map(|v| v.trim().to_string());
            let mut body = Vec::new();
            resp.body_mut()
                .with_config()
                .limit(64 << 20)
                .reader()
                .read_to_end(&mut body)
                .map_err(|e| match e.kind() {
                    std::io::ErrorKind::InvalidData | std::io::ErrorKind::Other
                        if e.to_string().contains("limit") =>
                    {
                        Failure::Fatal(anyhow!(
                            "{url} is larger than 64 MiB; it is not the document mkstick expects"
                        ))
                    }
                    _ => Failure::Retry(anyhow!("reading {url}: {e}")),
                })?;
            Ok(Some(SmallResponse { body, content_type }))
        })
    }

    /// A small document and its detached signature `<url>.sig`, checked
    /// with `keys` (under `--insecure-skip-signature`, a failed check is a
    /// loud warning).
    pub fn get_signed_small(&self, what: &str, url: &str, keys: &Keyring) -> Result<Vec<u8>> {
        let text = self.get_small(what, url)?;
        let sig_url = format!("{url}.sig");
        let checked = self
            .get_small(&format!("{what}' signature"), &sig_url)
            .and_then(|sig| Signature::parse(&sig))
            .and_then(|sig| sig.verify(keys, &text[..]));
        match (checked, self.policy) {
            (Ok(_), _) => {}
            (Err(e), SignaturePolicy::Require) => {
                return Err(e.context(format!(
                    "refusing {url}: its signature {sig_url} does not check out; if you accept that risk, pass --insecure-skip-signature"
                )))
            }
            (Err(e), SignaturePolicy::InsecureSkip) => self.progress.note(&format!(
                "WARNING: --insecure-skip-signature: {url} is NOT signature-checked ({e:#})"
            )),
        }
        Ok(text)
    }

    /// Fetch one artifact into the cache, or find it there. `keys` checks
    /// the signature of an artifact that has one.
    ///
    /// A cached file is reused without a request only if its signature was
    /// checked with these keys when it entered the cache. One accepted under
    /// `--insecure-skip-signature` (or cached for another purpose) is checked
    /// against its signature now, without being downloaded again.
    pub fn fetch(&self, a: &Artifact, keys: Option<&Keyring>) -> Result<Fetched> {
        self.fetch_with(a, keys, RequestOptions::default())
    }

    /// [`Downloader::fetch`] with credentials (a registry's blobs).
    pub fn fetch_with(
        &self,
        a: &Artifact,
        keys: Option<&Keyring>,
        opts: RequestOptions,
    ) -> Result<Fetched> {
        let publisher = keys.map(|k| k.publisher.as_str());
        let file = a.file_name();
        if let Some(sha256) = self.cache.lookup(&a.digest)? {
            let path = self.cache.blob_path(&sha256);
            let size_bytes = std::fs::metadata(&path)
                .with_context(|| format!("reading {}", path.display()))?
                .len();
            let record = self.cache.signed_by(&sha256);
            let rings: Vec<&Keyring> = keys.into_iter().collect();
            let trusted = a.signature_url.is_none()
                || record.as_ref().is_some_and(|r| r.trusted(&rings, &file));
            let damaged = trusted
                && self.reverify
                && check(&path, a, None, None).map_or(true, |c| c.got != a.digest);
            if trusted && !damaged {
                self.summary.borrow_mut().reused.push(a.name.clone());
                return Ok(Fetched {
                    path,
                    sha256,
                    size_bytes,
                    signed_by: record.map(|r| Signer {
                        publisher: r.publisher,
                        fingerprint: r.fingerprint,
                    }),
                });
            }
            let signature = if damaged { None } else { self.signature(a)? };
            let c = if damaged {
                None
            } else {
                Some(check(&path, a, signature.as_ref(), keys)?)
            };
            if let Some(c) = c.filter(|c| c.got == a.digest) {
                let signed = match self.accept(a, &c, signature.is_some()) {
                    Ok(s) => s,
                    Err(e) => {
                        // Never signature-checked (taken with the insecure
                        // flag): out of the cache with it, and with every
                        // OS directory built from it. A file signed as
                        // another file stays; the metadata was wrong.
                        if record.is_none() {
                            self.cache.evict(&sha256)?;
                        }
                        return Err(e);
                    }
                };
                let signed_by = signed.map(|fingerprint| Signer {
                    publisher: publisher.unwrap_or_default().to_string(),
                    fingerprint,
                });
                if let Some(signer) = &signed_by {
                    self.cache.mark_signed(&sha256, signer, &file)?;
                }
                self.summary.borrow_mut().reused.push(a.name.clone());
                return Ok(Fetched {
                    path,
                    sha256,
                    size_bytes,
                    signed_by,
                });
            }
            {
                // A damaged cache file: drop it and download again.
                self.progress.note(&format!(
                    "{}: the cached copy is damaged; downloading it again",
                    a.name
                ));
                self.cache.evict(&sha256)?;
            }
        }
        let signature = self.signature(a)?;
        let part = self.cache.part_path(&a.digest);
        // A signature is checked over the finished file, which hashes it in
        // the same pass; without one, the digest is taken as it streams.
        let (size_bytes, streamed) = self.download(a, &part, opts, signature.is_none())?;
        let c = match streamed {
            Some(hasher) => Ok(Checked::new(a, hasher.finish(), None)),
            None => check(&part, a, signature.as_ref(), keys),
        };
        let signed_by = match c {
            Ok(c) if c.got == a.digest => self
                .accept(a, &c, signature.is_some())
                .map(|s| {
                    let signer = s.map(|fingerprint| Signer {
                        publisher: publisher.unwrap_or_default().to_string(),
                        fingerprint,
                    });
                    (c, signer)
                }),
            Ok(c) => Err(anyhow!(
                "{} mismatch for {} ({}): its publisher says {}, the download has {}; the file was deleted. Run the command again; if it happens again, the mirror or the network changes the file",
                a.digest.algorithm(),
                a.name,
                a.url,
                a.digest.hex(),
                c.got.hex()
            )),
            Err(e) => Err(e),
        };
        let (c, signed_by) = match signed_by {
            Ok(v) => v,
            Err(e) => {
                let _ = std::fs::remove_file(&part);
                return Err(e);
            }
        };
        let path = self.cache.admit(&part, &a.digest, &c.sha256)?;
        if let Some(signer) = &signed_by {
            self.cache.mark_signed(&c.sha256, signer, &file)?;
        }
        self.summary
            .borrow_mut()
            .fetched
            .push((a.name.clone(), size_bytes));
        Ok(Fetched {
            path,
            sha256: c.sha256,
            size_bytes,
            signed_by,
        })
    }

    /// Decide on a file whose digest matched: whether its signature checked
    /// out, or why it is accepted without (only `--insecure-skip-signature`,
    /// loudly).
    fn accept(&self, a: &Artifact, c: &Checked, had_signature: bool) -> Result<Option<String>> {
        match (&c.signature, self.policy) {
            (Some(Ok(fingerprint)), _) => Ok(Some(fingerprint.clone())),
            (Some(Err(e)), SignaturePolicy::Require) => Err(anyhow!("{e:#}").context(format!(
                "bad signature on {} ({}): the file was removed from the cache; do not use it; if you accept that risk, pass --insecure-skip-signature",
                a.name, a.url
            ))),
            (Some(Err(e)), SignaturePolicy::InsecureSkip) => {
                self.progress.note(&format!(
                    "WARNING: --insecure-skip-signature: accepting {} although its signature is bad ({e:#}); only its {} was checked",
                    a.url,
                    a.digest.algorithm()
                ));
                self.summary.borrow_mut().unsigned.push(a.name.clone());
                Ok(None)
            }
            (None, _) if a.signature_url.is_some() => {
                // Only reachable under InsecureSkip: signature() refuses a
                // missing signature otherwise.
                debug_assert!(!had_signature);
                self.summary.borrow_mut().unsigned.push(a.name.clone());
                Ok(None)
            }
            (None, _) => Ok(None),
        }
    }

    /// The artifact's detached signature, parsed, or `None` when the user
    /// gave `--insecure-skip-signature` and it is missing or unreadable.
    fn signature(&self, a: &Artifact) -> Result<Option<Signature>> {
        let Some(url) = &a.signature_url else {
            return Ok(None);
        };
        let got = self
            .get_small(&format!("the {} signature", a.name), url)
            .and_then(|bytes| {
                Signature::parse(&bytes).with_context(|| format!("reading the signature {url}"))
            });
        match (got, self.policy) {
            (Ok(sig), _) => Ok(Some(sig)),
            (Err(e), SignaturePolicy::Require) => Err(e.context(format!(
                "refusing {}: without its signature nothing shows that its publisher made it; \
                 if you accept that risk, pass --insecure-skip-signature",
                a.url
            ))),
            (Err(e), SignaturePolicy::InsecureSkip) => {
                self.progress.note(&format!(
                    "WARNING: --insecure-skip-signature: {} is NOT signature-checked ({e:#}); only its {} is",
                    a.url,
                    a.digest.algorithm()
                ));
                Ok(None)
            }
        }
    }

    /// Download into `part`, resuming what is there. Returns the bytes fetched
    /// over the network in this run and, if `hash`, the digests of the whole
    /// `part`, taken as it was written.
    fn download(
        &self,
        a: &Artifact,
        part: &std::path::Path,
        opts: RequestOptions,
        hash: bool,
    ) -> Result<(u64, Option<Hasher>)> {
        let fetched_before = std::cell::Cell::new(0u64);
        let bar = RefCell::new(None::<crate::progress::Bar>);
        let want_sha512 = matches!(a.digest, Digest::Sha512(_));
        // Kept across attempts: the digests of `part`'s first `bytes` bytes.
        let mut hasher = hash.then(|| Hasher::new(want_sha512));
        let result = self.retrying(&a.url, |attempt| {
            let have = std::fs::metadata(part).map(|m| m.len()).unwrap_or(0);
            if let Some(h) = hasher.as_mut().filter(|h| h.bytes != have) {
                // Left by an earlier run, or started over: hash what is there.
                *h = hash_prefix(part, have, want_sha512).map_err(Failure::Fatal)?;
            }
            let mut resp = self.request(&a.url, (have > 0).then_some(have), opts)?;
            let status = resp.status().as_u16();
            let (offset, total) = match status {
                200 => (0, content_length(&resp)),
                206 => match content_range(&resp) {
                    Some((start, total)) if start == have => (start, total),
                    _ => {
                        let _ = std::fs::remove_file(part);
                        return Err(Failure::Retry(anyhow!(
                            "{}: the server answered the resume request with a range that does not start at byte {have}; starting over",
                            a.url
                        )));
                    }
                },
                416 if content_total(&resp) == Some(have) => {
                    // The earlier run got the whole file; the check decides.
                    return Ok(());
                }
                416 => {
                    // What we have is not a prefix of what the server has.
                    let _ = std::fs::remove_file(part);
                    return Err(Failure::Retry(anyhow!(
                        "{}: the server refused to resume at byte {have}; starting over",
                        a.url
                    )));
                }
                404 if opts.not_found.is_some() => {
                    return Err(Failure::Fatal(anyhow!(
                        "{} answered HTTP 404 for {}: {}",
                        a.url,
                        a.name,
                        opts.not_found.unwrap_or_default()
                    )))
                }
                _ => return Err(status_failure(&a.name, &a.url, status)),
            };
            let limit = opts
                .max_bytes
                .map_or(MAX_DOWNLOAD_BYTES, |m| m.min(MAX_DOWNLOAD_BYTES));
            if let Some(t) = total.filter(|&t| t > limit) {
                let _ = std::fs::remove_file(part);
                return Err(Failure::Fatal(anyhow!(
                    "{}: the server sends {} for this file, which is {}; refusing it",
                    a.url,
                    human_bytes(t),
                    human_bytes(limit)
                )));
            }
            if offset > 0 && attempt == 1 {
                self.progress.note(&format!(
                    "{}: resuming at {}",
                    a.name,
                    human_bytes(offset)
                ));
            }
            if offset == 0 {
                // The body starts at byte 0 (a server that ignores Range).
                if let Some(h) = hasher.as_mut() {
                    *h = Hasher::new(want_sha512);
                }
            }
            let mut file = std::fs::OpenOptions::new()
                .create(true)
                .write(true)
                .truncate(offset == 0)
                .append(offset > 0)
                .open(part)
                .with_context(|| format!("opening {}", part.display()))
                .map_err(Failure::Fatal)?;
            let mut bar_slot = bar.borrow_mut();
            let b = bar_slot.get_or_insert_with(|| {
                self.progress
                    .bar(&short_label(&a.name), total.unwrap_or(0))
            });
            b.set_position(offset);
            let mut reader = resp.body_mut().with_config().limit(u64::MAX).reader();
            let mut buf = vec![0u8; BUFFER_SIZE];
            let mut got = offset;
            loop {
                let n = match reader.read(&mut buf) {
                    Ok(0) => break,
                    Ok(n) => n,
                    Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
                    Err(e) => {
                        let of = total.map(|t| format!(" of {}", human_bytes(t)));
                        return Err(Failure::Retry(anyhow!(
                            "{}: the body was cut off (truncated) after {}{}: {e}",
                            a.url,
                            human_bytes(got),
                            of.unwrap_or_default()
                        )));
                    }
                };
                if got + n as u64 > limit || total.is_some_and(|t| got + n as u64 > t) {
                    let _ = std::fs::remove_file(part);
                    return Err(Failure::Fatal(anyhow!(
                        "{}: the server sends more than {} for this file; refusing it",
                        a.url,
                        human_bytes(total.unwrap_or(limit))
                    )));
                }
                file.write_all(&buf[..n])
                    .with_context(|| format!("writing {}", part.display()))
                    .map_err(Failure::Fatal)?;
                if let Some(h) = hasher.as_mut() {
                    h.update(&buf[..n]);
                }
                got += n as u64;
                fetched_before.set(fetched_before.get() + n as u64);
                b.inc(n as u64);
            }
            file.flush()
                .with_context(|| format!("writing {}", part.display()))
                .map_err(Failure::Fatal)?;
            if let Some(t) = total {
                if got < t {
                    return Err(Failure::Retry(anyhow!(
                        "{}: the body ended after {} of {} (truncated)",
                        a.url,
                        human_bytes(got),
                        human_bytes(t)
                    )));
                }
            }
            Ok(())
        });
        if let Some(b) = bar.borrow().as_ref() {
            b.finish();
        }
        result.map(|_| (fetched_before.get(), hasher))
    }

    fn request(
        &self,
        url: &str,
        from: Option<u64>,
        opts: RequestOptions,
    ) -> std::result::Result<ureq::http::Response<ureq::Body>, Failure> {
        use ureq::ResponseExt;
        let send = |url: &str| {
            let mut req = self.agent.get(url);
            if let Some(n) = from {
                req = req.header("Range", format!("bytes={n}-"));
            }
            if let Some(accept) = opts.accept {
                req = req.header("Accept", accept);
            }
            if let Some(value) = opts.auth.and_then(|a| a.header(url)) {
                req = req.header("Authorization", value);
            }
            req.call().map_err(|e| match e {
                ureq::Error::BadUri(_) | ureq::Error::RequireHttpsOnly(_) => {
                    Failure::Fatal(anyhow!("{url} is not a URL this client can fetch: {e}"))
                }
                _ => Failure::Retry(anyhow!("requesting {url}: {e}")),
            })
        };
        let mut resp = send(url)?;
        let Some(auth) = opts.auth.filter(|_| resp.status().as_u16() == 401) else {
            return Ok(resp);
        };
        // Redirects drop the Authorization header (ureq's default), so
        // the challenge may come from the host redirected to: answer it
        // there, with the credentials held for it if there are some.
        let mut last = resp.get_uri().to_string();
        if last != url && auth.header(&last).is_some() {
            resp = send(&last)?;
            if resp.status().as_u16() != 401 {
                return Ok(resp);
            }
            last = resp.get_uri().to_string();
        }
        let challenge = resp
            .headers()
            .get("www-authenticate")
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default()
            .to_string();
        if auth.challenged(&last, &challenge).map_err(Failure::Fatal)? {
            send(&last)
        } else {
            Ok(resp)
        }
    }

    /// Run `attempt` up to [`ATTEMPTS`] times while it fails in a way that
    /// another try may fix, waiting a little longer each time.
    fn retrying<T>(
        &self,
        url: &str,
        mut attempt: impl FnMut(u32) -> std::result::Result<T, Failure>,
    ) -> Result<T> {
        let mut last = None;
        for n in 1..=ATTEMPTS {
            match attempt(n) {
                Ok(v) => return Ok(v),
                Err(Failure::Fatal(e)) => return Err(e),
                Err(Failure::Retry(e)) => {
                    if n < ATTEMPTS {
                        self.progress
                            .note(&format!("{e:#}; trying again ({}/{ATTEMPTS})", n + 1));
                        std::thread::sleep(self.retry_delay * n);
                    }
                    last = Some(e);
                }
            }
        }
        let e = last.expect("the loop ran at least once and every failure was kept");
        Err(e.context(format!(
            "giving up on {url} after {ATTEMPTS} attempts; check the network (and HTTPS_PROXY), then run the command again (a cut download resumes where it stopped)"
        )))
    }
}

impl Failure {
    fn into_error(self) -> anyhow::Error {
        match self {
            Failure::Retry(e) | Failure::Fatal(e) => e,
        }
    }
}

fn status_failure(what: &str, url: &str, status: u16) -> Failure {
    let e = anyhow!("{url} answered HTTP {status} for {what}");
    match status {
        408 | 425 | 429 | 500..=599 => Failure::Retry(e),
        404 => Failure::Fatal(e.context(
            "the file is not there: the release may have been removed, or the URL in [os] is wrong",
        )),
        _ => Failure::Fatal(e),
    }
}

fn content_length(resp: &ureq::http::Response<ureq::Body>) -> Option<u64> {
    resp.headers()
        .get("content-length")?
        .to_str()
        .ok()?
        .parse()
        .ok()
}

/// `Content-Range: bytes START-END/TOTAL` -> (START, TOTAL).
fn content_range(resp: &ureq::http::Response<ureq::Body>) -> Option<(u64, Option<u64>)> {
    let v = resp.headers().get("content-range")?.to_str().ok()?;
    parse_content_range(v)
}

/// The total of `Content-Range: bytes */TOTAL` (a 416's answer).
fn content_total(resp: &ureq::http::Response<ureq::Body>) -> Option<u64> {
    let v = resp.headers().get("content-range")?.to_str().ok()?;
    v.rsplit_once('/')?.1.trim().parse().ok()
}

fn parse_content_range(v: &str) -> Option<(u64, Option<u64>)> {
    let rest = v.trim().strip_prefix("bytes ")?;
    let (range, total) = rest.split_once('/')?;
    let (start, _) = range.split_once('-')?;
    Some((start.trim().parse().ok()?, total.trim().parse().ok()))
}

fn short_label(name: &str) -> String {
    crate::progress::fit_label(name)
}

/// What one check pass over a file found.
struct Checked {
    /// The sha256 the cache names the file by.
    sha256: Sha256Digest,
    /// The file's digest in the publisher's algorithm.
    got: Digest,
    /// The signature check: the signing primary key's fingerprint, or why
    /// it failed.
    signature: Option<Result<String>>,
}

impl Checked {
    /// From a file's (sha256, sha512 if asked for), in the publisher's
    /// algorithm.
    fn new(
        a: &Artifact,
        (sha256, sha512): ([u8; 32], Option<[u8; 64]>),
        signature: Option<Result<String>>,
    ) -> Checked {
        let got = match a.digest {
            Digest::Sha256(_) => Digest::Sha256(sha256),
            Digest::Sha512(_) => Digest::Sha512(
                sha512.expect("the digests were taken with sha512 for a sha512 digest"),
            ),
        };
        Checked {
            sha256: Sha256Digest(sha256),
            got,
            signature,
        }
    }
}

/// The digests of the first `len` bytes of `part` (a `.part` to resume).
fn hash_prefix(part: &std::path::Path, len: u64, want_sha512: bool) -> Result<Hasher> {
    let mut hasher = Hasher::new(want_sha512);
    if len == 0 {
        return Ok(hasher);
    }
    let file = std::fs::File::open(part).with_context(|| format!("opening {}", part.display()))?;
    let mut reader = std::io::BufReader::with_capacity(BUFFER_SIZE, file.take(len));
    let read = std::io::copy(&mut reader, &mut hasher)
        .with_context(|| format!("reading {}", part.display()))?;
    if read != len {
        return Err(anyhow!(
            "reading {}: it ended at byte {read} of {len}",
            part.display()
        ));
    }
    Ok(hasher)
}

/// One pass over a file: its digests, and its signature where there is one.
fn check(
    path: &std::path::Path,
    a: &Artifact,
    signature: Option<&Signature>,
    keys: Option<&Keyring>,
) -> Result<Checked> {
    let file = std::fs::File::open(path).with_context(|| format!("opening {}", path.display()))?;
    let mut reader = DigestReader::new(
        std::io::BufReader::with_capacity(BUFFER_SIZE, file),
        matches!(a.digest, Digest::Sha512(_)),
    );
    let sig_result = signature.map(|s| match keys {
        Some(k) => s.verify(k, &mut reader),
        None => Err(anyhow!("no keys were given to check its signature with")),
    });
    let digests = reader
        .finish()
        .with_context(|| format!("reading {}", path.display()))?;
    Ok(Checked::new(a, digests, sig_result))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn content_range_parses() {
        assert_eq!(
            parse_content_range("bytes 100-199/200"),
            Some((100, Some(200)))
        );
        assert_eq!(parse_content_range("bytes 5-9/*"), Some((5, None)));
        assert_eq!(parse_content_range("items 1-2/3"), None);
        assert_eq!(parse_content_range("bytes x-2/3"), None);
    }
}
