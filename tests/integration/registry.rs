//! The registry client (`mkstick::os::registry`) against a real registry:
//! Debian's `docker-registry` (the CNCF distribution server) on 127.0.0.1,
//! with images written here as OCI layouts and pushed with `skopeo`.
//! Without both tools the tests are skipped with a message, unless
//! MKSTICK_REQUIRE_TOOLS=1 (CI) makes that a failure.

use crate::images::{status, tools, Desc, Layout, RegistryProc, Tools};
use mkstick::io::Sha256Digest;
use mkstick::os::cache::Cache;
use mkstick::os::download::{Downloader, SignaturePolicy};
use mkstick::os::registry::{
    PulledImage, Reference, Registry, DOCKER_MANIFEST, DOCKER_MANIFEST_LIST, OCI_INDEX,
    OCI_MANIFEST,
};
use mkstick::progress::Progress;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

const TOKEN_FIXTURE: &str = "tests/fixtures/registry/token-test-auth-pull.jwt";

/// Pull `reference` into the cache at `cache_dir`, for linux/amd64; also
/// returns how many tokens the client asked for.
fn pull(cache_dir: &Path, reference: &str) -> (anyhow::Result<PulledImage>, u64) {
    let cache = Cache::open(Some(cache_dir)).unwrap();
    let progress = Progress::hidden();
    let dl = Downloader::new(&cache, &progress, SignaturePolicy::Require)
        .with_retry_delay(Duration::from_millis(5));
    let reg = Registry::new(&dl);
    let r: Reference = reference.parse().unwrap();
    let got = reg.pull(&r, &mkstick::os::registry::Platform::linux_amd64());
    (got, reg.token_requests())
}

fn cached(cache_dir: &Path, d: &Sha256Digest) -> bool {
    cache_dir.join("blobs/sha256").join(d.to_string()).is_file()
}

fn partials(cache_dir: &Path) -> Vec<String> {
    std::fs::read_dir(cache_dir.join("partial"))
        .map(|rd| {
            rd.map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
                .collect()
        })
        .unwrap_or_default()
}

/// A reverse proxy in front of a registry, one request per connection:
/// it logs every request (method, path, Range) and can cut one response's
/// body in half, or change the last digest a manifest names, for the paths
/// asked.
struct Proxy {
    addr: String,
    log: Arc<Mutex<Vec<String>>>,
    cut: Arc<Mutex<Vec<String>>>,
    flip: Arc<Mutex<Vec<String>>>,
    /// Answer every blob request with a redirect to this host, as
    /// registry.k8s.io sends its clients to a backend.
    redirect_blobs: Arc<Mutex<Option<String>>>,
}

impl Proxy {
    fn start(upstream: &str) -> Proxy {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap().to_string();
        let p = Proxy {
            addr,
            log: Arc::default(),
            cut: Arc::default(),
            flip: Arc::default(),
            redirect_blobs: Arc::default(),
        };
        let (log, cut, flip) = (p.log.clone(), p.cut.clone(), p.flip.clone());
        let redirect = p.redirect_blobs.clone();
        let upstream = upstream.to_string();
        std::thread::spawn(move || {
            for conn in listener.incoming() {
                let Ok(conn) = conn else { continue };
                let (log, cut, flip, upstream) =
                    (log.clone(), cut.clone(), flip.clone(), upstream.clone());
                let redirect = redirect.lock().unwrap().clone();
                std::thread::spawn(move || {
                    let _ = proxy_one(conn, &upstream, &log, &cut, &flip, redirect);
                });
            }
        });
        p
    }

    fn requests(&self) -> Vec<String> {
        self.log.lock().unwrap().clone()
    }
}

fn proxy_one(
    conn: TcpStream,
    upstream: &str,
    log: &Mutex<Vec<String>>,
    cut: &Mutex<Vec<String>>,
    flip: &Mutex<Vec<String>>,
    redirect_blobs: Option<String>,
) -> std::io::Result<()> {
    let mut reader = BufReader::new(conn.try_clone()?);
    let mut head = Vec::new();
    let mut line = String::new();
    loop {
        line.clear();
        if reader.read_line(&mut line)? == 0 {
            return Ok(());
        }
        if line == "\r\n" {
            break;
        }
        head.push(line.trim_end().to_string());
    }
    let path = head[0].split(' ').nth(1).unwrap_or_default().to_string();
    let range = head
        .iter()
        .find(|h| h.to_ascii_lowercase().starts_with("range:"))
        .map(|h| format!(" Range: {}", h[6..].trim()))
        .unwrap_or_default();
    log.lock()
        .unwrap()
        .push(format!("{}{range}", head[0].rsplit_once(' ').unwrap().0));
    let mut conn = conn;
    if let Some(to) = redirect_blobs.filter(|_| path.contains("/blobs/")) {
        return write!(
            conn,
            "HTTP/1.1 307 Temporary Redirect\r\nLocation: http://{to}{path}\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
        );
    }
    let mut up = TcpStream::connect(upstream)?;
    let mut request = String::new();
    for h in &head {
        if !h.to_ascii_lowercase().starts_with("connection:") {
            request.push_str(h);
            request.push_str("\r\n");
        }
    }
    request.push_str("Connection: close\r\n\r\n");
    up.write_all(request.as_bytes())?;
    let mut response = Vec::new();
    up.read_to_end(&mut response)?;
    let body_at = response
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .map_or(response.len(), |i| i + 4);
    let take = |list: &Mutex<Vec<String>>| {
        let mut list = list.lock().unwrap();
        let hit = list.iter().position(|p| path.contains(p.as_str()));
        hit.map(|i| list.remove(i)).is_some()
    };
    if response.starts_with(b"HTTP/1.1 200") && take(cut) {
        let half = body_at + (response.len() - body_at) / 2;
        conn.write_all(&response[..half])?;
        conn.flush()?;
        return conn.shutdown(std::net::Shutdown::Both);
    }
    if response.starts_with(b"HTTP/1.1 200") && take(flip) {
        // Still valid JSON of the same length: the last digest it names
        // (a layer's) now names another blob.
        let body = &response[body_at..];
        if let Some(i) = body.windows(7).rposition(|w| w == b"sha256:") {
            let at = body_at + i + 7;
            response[at] = if response[at] == b'0' { b'1' } else { b'0' };
        }
    }
    conn.write_all(&response)
}

/// One pushed image: its layout's descriptors, in a registry.
struct Pushed {
    // Stopped before its storage is removed.
    registry: RegistryProc,
    tmp: tempfile::TempDir,
    manifest: Desc,
    config: Desc,
    layer: Desc,
}

impl Pushed {
    fn store(&self) -> PathBuf {
        self.tmp.path().join("store")
    }
}

/// A single-platform linux/amd64 image with a 300 KB layer, pushed as
/// `repo:v1` to a registry of its own.
fn push_single(tools: &Tools, repo: &str, seed: u8) -> Pushed {
    let tmp = tempfile::tempdir().unwrap();
    let layout = Layout::new(tmp.path().join("layout"));
    let (manifest, config, layer) = layout.image("amd64", seed, 300_000);
    layout.tag(&manifest, "v1");
    let registry = RegistryProc::start(tools, tmp.path(), &tmp.path().join("store"), None);
    layout.push(tools, "v1", &registry.addr, repo);
    Pushed {
        registry,
        tmp,
        manifest,
        config,
        layer,
    }
}

#[test]
fn a_pinned_digest_that_matches_pulls_every_file_into_the_cache() {
    let Some(tools) = tools() else { return };
    let p = push_single(&tools, "test/hello", 1);
    let cache = tempfile::tempdir().unwrap();
    let reference = format!(
        "{}/test/hello:v1@sha256:{}",
        p.registry.addr, p.manifest.digest
    );
    let (got, _) = pull(cache.path(), &reference);
    let img = got.unwrap();
    assert_eq!(img.top.digest, p.manifest.digest);
    assert_eq!(img.manifest.digest, p.manifest.digest);
    assert_eq!(Sha256Digest::of(&img.top.bytes), p.manifest.digest);
    assert_eq!(img.top.media_type, OCI_MANIFEST);
    assert_eq!(img.config.digest, p.config.digest);
    assert_eq!(img.layers.len(), 1);
    let layer = &img.layers[0];
    assert_eq!(layer.digest, p.layer.digest);
    assert_eq!(layer.size_bytes, p.layer.size as u64);
    assert_eq!(layer.media_type, "application/vnd.oci.image.layer.v1.tar");
    assert_eq!(
        Sha256Digest::of(&std::fs::read(&layer.path).unwrap()),
        p.layer.digest
    );
    for d in [&p.manifest, &p.config, &p.layer] {
        assert!(cached(cache.path(), &d.digest), "{d:?} is not in the cache");
    }
    assert_eq!(img.reference.to_string(), reference);
    assert!(partials(cache.path()).is_empty());

    // `cache prune` keeps what a pulled image uses, and drops the rest.
    let stray = Sha256Digest::of(b"stray");
    std::fs::write(
        cache.path().join("blobs/sha256").join(stray.to_string()),
        b"stray",
    )
    .unwrap();
    let report = Cache::open(Some(cache.path())).unwrap().prune(1).unwrap();
    assert_eq!(report.blobs, 1, "{report}");
    assert!(!cached(cache.path(), &stray));
    for d in [&p.manifest, &p.config, &p.layer] {
        assert!(cached(cache.path(), &d.digest), "prune removed {d:?}");
    }
}

#[test]
fn a_wrong_pinned_digest_is_refused_naming_the_image_and_both_digests() {
    let Some(tools) = tools() else { return };
    let p = push_single(&tools, "test/pinned", 2);
    let cache = tempfile::tempdir().unwrap();
    let wrong = Sha256Digest::of(b"not this image");
    let reference = format!("{}/test/pinned:v1@sha256:{wrong}", p.registry.addr);
    let e = format!("{:#}", pull(cache.path(), &reference).0.unwrap_err());
    assert!(e.contains(&reference), "{e}");
    assert!(e.contains(&format!("sha256:{wrong}")), "{e}");
    assert!(e.contains(&format!("sha256:{}", p.manifest.digest)), "{e}");
    assert!(e.contains("nothing was cached"), "{e}");
    for d in [&p.manifest, &p.config, &p.layer] {
        assert!(!cached(cache.path(), &d.digest), "{d:?} was cached");
    }
}

#[test]
fn a_registry_that_sends_other_bytes_is_refused_and_nothing_is_cached() {
    let Some(tools) = tools() else { return };
    let p = push_single(&tools, "test/tamper", 3);
    // The layer in the registry's own storage, changed after the push:
    // the registry serves it as it is (distribution does not re-hash).
    let hex = p.layer.digest.to_string();
    let data = stored_blob(&p.store(), &p.layer.digest);
    let mut bytes = std::fs::read(&data).unwrap();
    bytes[600] ^= 0xff;
    std::fs::write(&data, &bytes).unwrap();
    let cache = tempfile::tempdir().unwrap();
    let reference = format!(
        "{}/test/tamper:v1@sha256:{}",
        p.registry.addr, p.manifest.digest
    );
    let e = format!("{:#}", pull(cache.path(), &reference).0.unwrap_err());
    assert!(e.contains(&format!("pulling {reference}")), "{e}");
    assert!(e.contains("sha256 mismatch"), "{e}");
    assert!(e.contains(&hex), "{e}");
    assert!(e.contains(&Sha256Digest::of(&bytes).to_string()), "{e}");
    assert!(!cached(cache.path(), &p.layer.digest));
    assert!(!cached(cache.path(), &Sha256Digest::of(&bytes)));
    assert!(
        partials(cache.path()).is_empty(),
        "{:?}",
        partials(cache.path())
    );

    // A manifest with other bytes than its pin (a proxy flips one): refused
    // with both digests, and not cached.
    let proxy = Proxy::start(&p.registry.addr);
    proxy.flip.lock().unwrap().push("/manifests/".into());
    let cache = tempfile::tempdir().unwrap();
    let reference = format!("{}/test/tamper:v1@sha256:{}", proxy.addr, p.manifest.digest);
    let e = format!("{:#}", pull(cache.path(), &reference).0.unwrap_err());
    assert!(e.contains(&reference), "{e}");
    assert!(e.contains("does not match its pin"), "{e}");
    assert!(
        e.contains(&format!("expected sha256:{}", p.manifest.digest)),
        "{e}"
    );
    assert!(!cached(cache.path(), &p.manifest.digest));
    let blobs = std::fs::read_dir(cache.path().join("blobs/sha256"))
        .unwrap()
        .count();
    assert_eq!(blobs, 0, "nothing may be cached");
}

/// The blob file in a registry's storage (distribution's filesystem
/// driver: `docker/registry/v2/blobs/sha256/<2>/<hex>/data`).
fn stored_blob(store: &Path, d: &Sha256Digest) -> PathBuf {
    let hex = d.to_string();
    store
        .join("docker/registry/v2/blobs/sha256")
        .join(&hex[..2])
        .join(&hex)
        .join("data")
}

#[test]
fn a_blob_longer_than_its_descriptor_or_missing_is_refused_before_it_is_stored() {
    let Some(tools) = tools() else { return };
    let p = push_single(&tools, "test/long", 4);
    let data = stored_blob(&p.store(), &p.layer.digest);
    let mut bytes = std::fs::read(&data).unwrap();
    bytes.extend_from_slice(&[0u8; 100_000]);
    std::fs::write(&data, &bytes).unwrap();
    let cache = tempfile::tempdir().unwrap();
    let reference = format!(
        "{}/test/long:v1@sha256:{}",
        p.registry.addr, p.manifest.digest
    );
    let e = format!("{:#}", pull(cache.path(), &reference).0.unwrap_err());
    assert!(e.contains(&p.layer.digest.to_string()), "{e}");
    assert!(e.contains("refusing it"), "{e}");
    assert!(!cached(cache.path(), &p.layer.digest));
    assert!(
        partials(cache.path()).is_empty(),
        "{:?}",
        partials(cache.path())
    );

    std::fs::remove_file(&data).unwrap();
    let e = format!("{:#}", pull(cache.path(), &reference).0.unwrap_err());
    assert!(e.contains("404"), "{e}");
    assert!(e.contains("the registry does not have this blob"), "{e}");
    assert!(!e.contains("[os]"), "{e}");
}

#[test]
fn a_multi_arch_index_resolves_to_linux_amd64() {
    let Some(tools) = tools() else { return };
    let tmp = tempfile::tempdir().unwrap();
    let layout = Layout::new(tmp.path().join("layout"));
    let (arm, _, arm_layer) = layout.image("arm64", 40, 2000);
    let (amd, amd_config, amd_layer) = layout.image("amd64", 41, 2000);
    // arm64 first: the client must pick, not take the first entry.
    let index = layout.index(&[(&arm, "arm64"), (&amd, "amd64")]);
    layout.tag(&index, "v1");
    let registry = RegistryProc::start(&tools, tmp.path(), &tmp.path().join("store"), None);
    layout.push(&tools, "v1", &registry.addr, "test/multi");
    let cache = tempfile::tempdir().unwrap();
    let reference = format!("{}/test/multi:v1@sha256:{}", registry.addr, index.digest);
    let img = pull(cache.path(), &reference).0.unwrap();
    assert_eq!(img.top.digest, index.digest);
    assert_eq!(img.top.media_type, OCI_INDEX);
    assert_eq!(img.manifest.digest, amd.digest);
    assert_eq!(img.manifest.media_type, OCI_MANIFEST);
    assert_eq!(img.config.digest, amd_config.digest);
    assert_eq!(img.layers[0].digest, amd_layer.digest);
    assert!(cached(cache.path(), &index.digest));
    assert!(cached(cache.path(), &amd.digest));
    assert!(!cached(cache.path(), &arm.digest));
    assert!(!cached(cache.path(), &arm_layer.digest));

    // Unpinned, by tag: the same resolution, and the digest it found.
    let (got, _) = pull(cache.path(), &format!("{}/test/multi:v1", registry.addr));
    assert_eq!(got.unwrap().reference.digest, Some(index.digest));

    // The same index as a Docker manifest list of Docker manifests
    // (skopeo converts it): resolved the same way, by tag and then pinned.
    layout.push_with(&tools, "v1", &registry.addr, "test/docker", "--format=v2s2");
    let by_tag = format!("{}/test/docker:v1", registry.addr);
    let img = pull(cache.path(), &by_tag).0.unwrap();
    assert_eq!(img.top.media_type, DOCKER_MANIFEST_LIST);
    assert_eq!(img.manifest.media_type, DOCKER_MANIFEST);
    let config: serde_json::Value =
        serde_json::from_slice(&std::fs::read(&img.config.path).unwrap()).unwrap();
    assert_eq!(config["architecture"], "amd64");
    let pinned = format!("{by_tag}@sha256:{}", img.top.digest);
    let again = pull(cache.path(), &pinned).0.unwrap();
    assert_eq!(again.manifest.digest, img.manifest.digest);
}

#[test]
fn a_cut_connection_resumes_with_range() {
    let Some(tools) = tools() else { return };
    let p = push_single(&tools, "test/resume", 5);
    let proxy = Proxy::start(&p.registry.addr);
    proxy
        .cut
        .lock()
        .unwrap()
        .push(format!("/blobs/sha256:{}", p.layer.digest));
    let cache = tempfile::tempdir().unwrap();
    let reference = format!("{}/test/resume:v1@sha256:{}", proxy.addr, p.manifest.digest);
    let img = pull(cache.path(), &reference).0.unwrap();
    assert_eq!(img.layers[0].digest, p.layer.digest);
    let blob = format!("GET /v2/test/resume/blobs/sha256:{}", p.layer.digest);
    let log = proxy.requests();
    let layer_gets: Vec<&String> = log.iter().filter(|l| l.starts_with(&blob)).collect();
    assert_eq!(layer_gets.len(), 2, "{log:#?}");
    assert_eq!(layer_gets[0], &blob, "{log:#?}");
    let half = layer_gets[1]
        .strip_prefix(&format!("{blob} Range: bytes="))
        .and_then(|r| r.strip_suffix('-'))
        .unwrap_or_else(|| panic!("the second request did not resume: {log:#?}"));
    let half: usize = half.parse().unwrap();
    assert!(half > 0 && half < p.layer.size, "{half}");
    // Hashed across the cut (its first half as it was resumed), and stored
    // under the digest of what is on disk.
    let stored = cache
        .path()
        .join("blobs/sha256")
        .join(p.layer.digest.to_string());
    let bytes = std::fs::read(&stored).unwrap();
    assert_eq!(bytes.len(), p.layer.size);
    assert_eq!(Sha256Digest::of(&bytes), p.layer.digest);
    assert!(
        partials(cache.path()).is_empty(),
        "{:?}",
        partials(cache.path())
    );
}

#[test]
fn a_cached_image_pinned_by_digest_is_pulled_with_zero_requests() {
    let Some(tools) = tools() else { return };
    let p = push_single(&tools, "test/offline", 6);
    let proxy = Proxy::start(&p.registry.addr);
    let cache = tempfile::tempdir().unwrap();
    let reference = format!(
        "{}/test/offline:v1@sha256:{}",
        proxy.addr, p.manifest.digest
    );
    let first = pull(cache.path(), &reference).0.unwrap();
    assert_eq!(proxy.requests().len(), 3, "{:#?}", proxy.requests());
    proxy.log.lock().unwrap().clear();
    let again = pull(cache.path(), &reference).0.unwrap();
    assert_eq!(proxy.requests(), Vec::<String>::new());
    assert_eq!(again.top.bytes, first.top.bytes);
    assert_eq!(again.layers[0].path, first.layers[0].path);

    // By tag, only the tag's manifest is asked for: the blobs are shared.
    let by_tag = format!("{}/test/offline:v1", proxy.addr);
    pull(cache.path(), &by_tag).0.unwrap();
    assert_eq!(
        proxy.requests(),
        vec!["GET /v2/test/offline/manifests/v1".to_string()]
    );
}

/// A token service: answers `GET /token?service=…&scope=…` with the
/// fixture's signed token when the service and scope are right.
struct TokenServer {
    realm: String,
    log: Arc<Mutex<Vec<String>>>,
}

fn percent_decode(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::new();
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'%' && i + 3 <= b.len() {
            if let Ok(v) = u8::from_str_radix(&s[i + 1..i + 3], 16) {
                out.push(v);
                i += 3;
                continue;
            }
        }
        out.push(if b[i] == b'+' { b' ' } else { b[i] });
        i += 1;
    }
    String::from_utf8(out).unwrap()
}

impl TokenServer {
    fn start() -> TokenServer {
        let token =
            std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join(TOKEN_FIXTURE))
                .unwrap()
                .trim()
                .to_string();
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let realm = format!("http://{}/token", listener.local_addr().unwrap());
        let log: Arc<Mutex<Vec<String>>> = Arc::default();
        let l = log.clone();
        std::thread::spawn(move || {
            for conn in listener.incoming() {
                let Ok(mut conn) = conn else { continue };
                let mut line = String::new();
                let mut reader = BufReader::new(conn.try_clone().unwrap());
                let _ = reader.read_line(&mut line);
                let mut h = String::new();
                while reader.read_line(&mut h).is_ok_and(|n| n > 2) {
                    h.clear();
                }
                let target = line.split(' ').nth(1).unwrap_or_default().to_string();
                let query = target.split_once('?').map(|q| q.1).unwrap_or_default();
                let params: Vec<(String, String)> = query
                    .split('&')
                    .filter_map(|kv| kv.split_once('='))
                    .map(|(k, v)| (k.to_string(), percent_decode(v)))
                    .collect();
                let get = |k: &str| params.iter().find(|p| p.0 == k).map(|p| p.1.clone());
                l.lock().unwrap().push(format!(
                    "service={} scope={}",
                    get("service").unwrap_or_default(),
                    get("scope").unwrap_or_default()
                ));
                let ok = target.starts_with("/token?")
                    && get("service").as_deref() == Some("mkstick-test-registry")
                    && get("scope").as_deref() == Some("repository:test/auth:pull");
                let (status, body) = if ok {
                    (
                        "200 OK",
                        format!(r#"{{"token":"{token}","expires_in":300}}"#),
                    )
                } else {
                    (
                        "403 Forbidden",
                        r#"{"details":"wrong service or scope"}"#.to_string(),
                    )
                };
                let _ = write!(
                    conn,
                    "HTTP/1.1 {status}\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
                    body.len()
                );
            }
        });
        TokenServer { realm, log }
    }
}

#[test]
fn docker_hub_style_token_auth_is_answered_with_one_token_per_repository() {
    let Some(tools) = tools() else { return };
    let tmp = tempfile::tempdir().unwrap();
    let layout = Layout::new(tmp.path().join("layout"));
    let (manifest, config, layer) = layout.image("amd64", 7, 5000);
    layout.tag(&manifest, "v1");
    let store = tmp.path().join("store");
    // Pushed through an open registry; pulled from one that serves the
    // same storage only to token holders.
    let open = RegistryProc::start(&tools, tmp.path(), &store, None);
    layout.push(&tools, "v1", &open.addr, "test/auth");
    let tokens = TokenServer::start();
    let locked = RegistryProc::start(&tools, tmp.path(), &store, Some(&tokens.realm));
    let status = status(ureq::get(format!(
        "http://{}/v2/test/auth/manifests/v1",
        locked.addr
    )));
    assert_eq!(status, 401, "the registry must ask for a token");

    let cache = tempfile::tempdir().unwrap();
    let reference = format!("{}/test/auth:v1@sha256:{}", locked.addr, manifest.digest);
    let (got, token_requests) = pull(cache.path(), &reference);
    let img = got.unwrap();
    assert_eq!(img.config.digest, config.digest);
    assert_eq!(img.layers[0].digest, layer.digest);
    // Manifest, config and layer: one token, kept for the repository.
    assert_eq!(token_requests, 1);
    assert_eq!(
        *tokens.log.lock().unwrap(),
        vec!["service=mkstick-test-registry scope=repository:test/auth:pull".to_string()]
    );

    // Through a front that redirects blobs to the locked registry, as
    // registry.k8s.io does: the redirect drops the front's token, the
    // backend challenges, and the client answers on the backend.
    let front = Proxy::start(&locked.addr);
    *front.redirect_blobs.lock().unwrap() = Some(locked.addr.clone());
    tokens.log.lock().unwrap().clear();
    let cache = tempfile::tempdir().unwrap();
    let reference = format!("{}/test/auth:v1@sha256:{}", front.addr, manifest.digest);
    let (got, token_requests) = pull(cache.path(), &reference);
    let img = got.unwrap();
    assert_eq!(img.layers[0].digest, layer.digest);
    // One token for the front (its manifest), one for the backend.
    assert_eq!(token_requests, 2);
    assert_eq!(tokens.log.lock().unwrap().len(), 2);
    let log = front.requests();
    assert!(
        log.iter().any(|l| l.contains("/blobs/sha256:")),
        "the blobs were not asked of the front: {log:#?}"
    );
}
