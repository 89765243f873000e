//! Test images and a registry to push them to, shared by the tests that
//! pull: OCI image layouts written here, Debian's `docker-registry` (the
//! CNCF distribution server) on 127.0.0.1, and `skopeo` to push.

use crate::common;
use mkstick::io::Sha256Digest;
use mkstick::os::registry::{OCI_INDEX, OCI_MANIFEST};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

pub const ISSUER_CERT: &str = "tests/fixtures/registry/token-issuer.crt";

pub struct Tools {
    pub registry: PathBuf,
    pub skopeo: PathBuf,
}

pub fn tools() -> Option<Tools> {
    let registry = common::tool("docker-registry");
    let skopeo = common::tool("skopeo");
    match (registry, skopeo) {
        (Some(registry), Some(skopeo)) => Some(Tools { registry, skopeo }),
        _ => {
            eprintln!("SKIPPED registry test: docker-registry and skopeo are needed (apt-get install docker-registry skopeo)");
            None
        }
    }
}

pub fn free_addr() -> String {
    let l = TcpListener::bind("127.0.0.1:0").unwrap();
    l.local_addr().unwrap().to_string()
}

/// A `docker-registry serve` child, stopped when dropped.
pub struct RegistryProc {
    child: Child,
    pub addr: String,
    pub log: PathBuf,
}

impl RegistryProc {
    /// Serve `store`; with `token_realm`, only to holders of a token the
    /// fixture issuer signed (distribution's token auth).
    pub fn start(
        tools: &Tools,
        dir: &Path,
        store: &Path,
        token_realm: Option<&str>,
    ) -> RegistryProc {
        let addr = free_addr();
        let mut config = format!(
            "version: 0.1\nlog: {{ level: error, accesslog: {{ disabled: true }} }}\nstorage: {{ filesystem: {{ rootdirectory: {} }} }}\nhttp: {{ addr: \"{addr}\" }}\n",
            store.display()
        );
        if let Some(realm) = token_realm {
            let cert = Path::new(env!("CARGO_MANIFEST_DIR")).join(ISSUER_CERT);
            config.push_str(&format!(
                "auth: {{ token: {{ realm: \"{realm}\", service: mkstick-test-registry, issuer: mkstick-test-issuer, rootcertbundle: {} }} }}\n",
                cert.display()
            ));
        }
        let name = addr.replace([':', '.'], "-");
        let config_path = dir.join(format!("registry-{name}.yml"));
        std::fs::write(&config_path, config).unwrap();
        let log = dir.join(format!("registry-{name}.log"));
        let child = Command::new(&tools.registry)
            .arg("serve")
            .arg(&config_path)
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&log).unwrap())
            .spawn()
            .unwrap();
        let r = RegistryProc { child, addr, log };
        let deadline = Instant::now() + Duration::from_secs(20);
        while TcpStream::connect(&r.addr).is_err() {
            assert!(
                Instant::now() < deadline,
                "docker-registry did not listen on {}: {}",
                r.addr,
                std::fs::read_to_string(&r.log).unwrap_or_default()
            );
            std::thread::sleep(Duration::from_millis(20));
        }
        r
    }
}

impl Drop for RegistryProc {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A one-file ustar archive (mtime 0, uid 0): an image layer.
pub fn tar_one(name: &str, data: &[u8]) -> Vec<u8> {
    let mut h = [0u8; 512];
    h[..name.len()].copy_from_slice(name.as_bytes());
    h[100..108].copy_from_slice(b"0000644\0");
    h[108..116].copy_from_slice(b"0000000\0");
    h[116..124].copy_from_slice(b"0000000\0");
    h[124..136].copy_from_slice(format!("{:011o}\0", data.len()).as_bytes());
    h[136..148].copy_from_slice(b"00000000000\0");
    h[148..156].copy_from_slice(b"        ");
    h[156] = b'0';
    h[257..263].copy_from_slice(b"ustar\0");
    h[263..265].copy_from_slice(b"00");
    let sum: u32 = h.iter().map(|&b| b as u32).sum();
    h[148..156].copy_from_slice(format!("{sum:06o}\0 ").as_bytes());
    let mut out = h.to_vec();
    out.extend_from_slice(data);
    out.resize(out.len().div_ceil(512) * 512 + 1024, 0);
    out
}

/// A descriptor's three facts.
#[derive(Debug, Clone)]
pub struct Desc {
    pub media_type: String,
    pub digest: Sha256Digest,
    pub size: usize,
}

impl Desc {
    pub fn json(&self) -> serde_json::Value {
        serde_json::json!({
            "mediaType": self.media_type,
            "digest": format!("sha256:{}", self.digest),
            "size": self.size,
        })
    }
}

/// An OCI image layout being written (image-spec `image-layout.md`).
pub struct Layout {
    pub dir: PathBuf,
}

impl Layout {
    pub fn new(dir: PathBuf) -> Layout {
        std::fs::create_dir_all(dir.join("blobs/sha256")).unwrap();
        std::fs::write(dir.join("oci-layout"), r#"{"imageLayoutVersion":"1.0.0"}"#).unwrap();
        Layout { dir }
    }

    pub fn blob(&self, media_type: &str, bytes: &[u8]) -> Desc {
        let digest = Sha256Digest::of(bytes);
        std::fs::write(
            self.dir.join("blobs/sha256").join(digest.to_string()),
            bytes,
        )
        .unwrap();
        Desc {
            media_type: media_type.into(),
            digest,
            size: bytes.len(),
        }
    }

    /// One image for `arch`: a layer of `layer_bytes` of noise, a config,
    /// a manifest. Returns (manifest, config, layer).
    pub fn image(&self, arch: &str, seed: u8, layer_bytes: usize) -> (Desc, Desc, Desc) {
        let tar = tar_one("hello", &common::filler(layer_bytes, seed));
        let layer = self.blob("application/vnd.oci.image.layer.v1.tar", &tar);
        let config = serde_json::json!({
            "architecture": arch,
            "os": "linux",
            "config": {},
            "rootfs": {"type": "layers", "diff_ids": [format!("sha256:{}", layer.digest)]},
        });
        let config = self.blob(
            "application/vnd.oci.image.config.v1+json",
            &serde_json::to_vec(&config).unwrap(),
        );
        let manifest = serde_json::json!({
            "schemaVersion": 2,
            "mediaType": OCI_MANIFEST,
            "config": config.json(),
            "layers": [layer.json()],
        });
        let manifest = self.blob(OCI_MANIFEST, &serde_json::to_vec(&manifest).unwrap());
        (manifest, config, layer)
    }

    /// An index of (manifest, architecture).
    pub fn index(&self, entries: &[(&Desc, &str)]) -> Desc {
        let manifests: Vec<serde_json::Value> = entries
            .iter()
            .map(|(d, arch)| {
                let mut j = d.json();
                j["platform"] = serde_json::json!({"architecture": arch, "os": "linux"});
                j
            })
            .collect();
        let index = serde_json::json!({
            "schemaVersion": 2,
            "mediaType": OCI_INDEX,
            "manifests": manifests,
        });
        self.blob(OCI_INDEX, &serde_json::to_vec(&index).unwrap())
    }

    /// index.json naming `top` as `tag`.
    pub fn tag(&self, top: &Desc, tag: &str) {
        let mut entry = top.json();
        entry["annotations"] = serde_json::json!({"org.opencontainers.image.ref.name": tag});
        let index = serde_json::json!({"schemaVersion": 2, "manifests": [entry]});
        std::fs::write(
            self.dir.join("index.json"),
            serde_json::to_vec(&index).unwrap(),
        )
        .unwrap();
    }

    /// `skopeo copy` to `addr/repo:tag`, every instance, digests kept.
    pub fn push(&self, tools: &Tools, tag: &str, addr: &str, repo: &str) {
        self.push_with(tools, tag, addr, repo, "--preserve-digests")
    }

    /// `skopeo copy` with one more option (`--format=v2s2`).
    pub fn push_with(&self, tools: &Tools, tag: &str, addr: &str, repo: &str, option: &str) {
        let out = Command::new(&tools.skopeo)
            .args([
                "--insecure-policy",
                "copy",
                "--quiet",
                "--all",
                option,
                "--dest-tls-verify=false",
            ])
            .arg(format!("oci:{}:{tag}", self.dir.display()))
            .arg(format!("docker://{addr}/{repo}:{tag}"))
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "skopeo copy failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
}
