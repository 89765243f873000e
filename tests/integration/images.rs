//! Test images and a registry to push them to, shared by the tests that
//! pull: OCI image layouts written here, Debian's `docker-registry` (the
//! CNCF distribution server) on 127.0.0.1, and `skopeo` to push.
//! [`TestImage`] is a runnable linux/amd64 image (`/hello`, a tiny static
//! ELF) and [`TestRegistry`] pushes it and returns the pinned reference.
//! Without both tools the registry tests are skipped with a message, unless
//! MKSTICK_REQUIRE_TOOLS=1 (CI) makes that a failure.

use crate::common;
use mkstick::io::Sha256Digest;
use mkstick::os::cache::Cache;
use mkstick::os::download::{Downloader, SignaturePolicy};
use mkstick::os::registry::{Platform, Reference, Registry, OCI_INDEX, OCI_MANIFEST};
use mkstick::progress::Progress;
use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::os::unix::fs::PermissionsExt;
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
    tar_file(name, 0o644, data)
}

/// A one-file ustar archive of a file with `mode` (mtime 0, uid 0).
pub fn tar_file(name: &str, mode: u32, data: &[u8]) -> Vec<u8> {
    let mut h = [0u8; 512];
    h[..name.len()].copy_from_slice(name.as_bytes());
    h[100..108].copy_from_slice(format!("{mode:07o}\0").as_bytes());
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
        self.config_and_manifest(&config, layer)
    }

    /// Store `config` and an OCI manifest of it and `layer`: (manifest,
    /// config, layer).
    fn config_and_manifest(&self, config: &serde_json::Value, layer: Desc) -> (Desc, Desc, Desc) {
        let config = self.blob(
            "application/vnd.oci.image.config.v1+json",
            &serde_json::to_vec(config).unwrap(),
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

/// Where the kernel loads the hello ELF (the usual x86-64 base).
const ELF_BASE: u64 = 0x40_0000;
/// The ELF header's size, and one program header's (ELF-64, System V gABI).
const ELF_HEADER_BYTES: usize = 64;
const PROGRAM_HEADER_BYTES: usize = 56;

/// A minimal static x86-64 Linux executable (no libc) that writes
/// `message` and a newline to stdout and exits 0: an ELF header, one
/// PT_LOAD segment mapping the whole file read+execute, then the code and
/// the message.
pub fn hello_elf(message: &str) -> Vec<u8> {
    let text = format!("{message}\n");
    let len = u32::try_from(text.len()).expect("a test message is short");
    let code_at = ELF_HEADER_BYTES + PROGRAM_HEADER_BYTES;
    let mut code = Vec::new();
    code.extend([0xb8, 1, 0, 0, 0]); // mov eax, 1 (write)
    code.extend([0xbf, 1, 0, 0, 0]); // mov edi, 1 (stdout)
    code.extend([0x48, 0x8d, 0x35]); // lea rsi, [rip + rel32]
    let rel32_at = code.len();
    code.extend([0; 4]);
    let lea_end = code.len();
    code.push(0xba); // mov edx, len
    code.extend(len.to_le_bytes());
    code.extend([0x0f, 0x05]); // syscall
    code.extend([0xb8, 60, 0, 0, 0]); // mov eax, 60 (exit)
    code.extend([0x31, 0xff]); // xor edi, edi
    code.extend([0x0f, 0x05]); // syscall
                               // The message follows the code: rel32 counts from the lea's end.
    let rel = u32::try_from(code.len() - lea_end).expect("the code is short");
    code[rel32_at..lea_end].copy_from_slice(&rel.to_le_bytes());
    let file_bytes = (code_at + code.len() + text.len()) as u64;

    let mut elf = Vec::new();
    elf.extend(b"\x7fELF");
    elf.extend([2, 1, 1, 0]); // 64-bit, little-endian, version 1, System V
    elf.extend([0; 8]);
    elf.extend(2u16.to_le_bytes()); // e_type: ET_EXEC
    elf.extend(0x3eu16.to_le_bytes()); // e_machine: EM_X86_64
    elf.extend(1u32.to_le_bytes()); // e_version
    elf.extend((ELF_BASE + code_at as u64).to_le_bytes()); // e_entry
    elf.extend((ELF_HEADER_BYTES as u64).to_le_bytes()); // e_phoff
    elf.extend(0u64.to_le_bytes()); // e_shoff
    elf.extend(0u32.to_le_bytes()); // e_flags
    elf.extend((ELF_HEADER_BYTES as u16).to_le_bytes()); // e_ehsize
    elf.extend((PROGRAM_HEADER_BYTES as u16).to_le_bytes()); // e_phentsize
    elf.extend(1u16.to_le_bytes()); // e_phnum
    elf.extend([0; 6]); // e_shentsize, e_shnum, e_shstrndx
    assert_eq!(elf.len(), ELF_HEADER_BYTES);
    elf.extend(1u32.to_le_bytes()); // p_type: PT_LOAD
    elf.extend(5u32.to_le_bytes()); // p_flags: R | X
    elf.extend(0u64.to_le_bytes()); // p_offset
    elf.extend(ELF_BASE.to_le_bytes()); // p_vaddr
    elf.extend(ELF_BASE.to_le_bytes()); // p_paddr
    elf.extend(file_bytes.to_le_bytes()); // p_filesz
    elf.extend(file_bytes.to_le_bytes()); // p_memsz
    elf.extend(0x1000u64.to_le_bytes()); // p_align
    assert_eq!(elf.len(), code_at);
    elf.extend(code);
    elf.extend(text.as_bytes());
    assert_eq!(elf.len() as u64, file_bytes);
    elf
}

/// What every hello image's `/hello` prints.
pub const HELLO_MESSAGE: &str = "hello from an mkstick test image";
/// The config label that holds a hello image's name.
pub const NAME_LABEL: &str = "mkstick.test.name";
const LAYER_TAR_GZIP: &str = "application/vnd.oci.image.layer.v1.tar+gzip";
/// The tag a [`TestImage`]'s layout gives its top manifest.
const LAYOUT_TAG: &str = "test";

/// The hello layer: `/hello` (0755) in a tar, gzip'd with mtime 0 and no
/// file name, so every build gives the same bytes. Returns the gzip bytes
/// and the digest of the uncompressed tar (the config's diff_id).
fn hello_layer() -> (Vec<u8>, Sha256Digest) {
    let tar = tar_file("hello", 0o755, &hello_elf(HELLO_MESSAGE));
    let mut gz = flate2::GzBuilder::new()
        .mtime(0)
        .write(Vec::new(), flate2::Compression::default());
    gz.write_all(&tar).unwrap();
    (gz.finish().unwrap(), Sha256Digest::of(&tar))
}

impl Layout {
    /// A runnable linux/amd64 image whose entrypoint `/hello` prints
    /// [`HELLO_MESSAGE`]; `name` goes only into a config label, so images
    /// of different names share their layer and differ in config and
    /// manifest. Returns (manifest, config, layer).
    pub fn hello_image(&self, name: &str) -> (Desc, Desc, Desc) {
        let (gz, diff_id) = hello_layer();
        let layer = self.blob(LAYER_TAR_GZIP, &gz);
        let config = serde_json::json!({
            "architecture": "amd64",
            "os": "linux",
            "config": {
                "Entrypoint": ["/hello"],
                "Labels": {NAME_LABEL: name},
            },
            "rootfs": {"type": "layers", "diff_ids": [format!("sha256:{diff_id}")]},
        });
        self.config_and_manifest(&config, layer)
    }
}

/// A hello image written as an OCI layout in a temporary directory.
pub struct TestImage {
    layout: Layout,
    _dir: tempfile::TempDir,
    pub name: String,
    /// What a reference names: the amd64 manifest, or the index.
    pub top: Desc,
    /// The runnable linux/amd64 manifest, its config and its one layer.
    pub manifest: Desc,
    pub config: Desc,
    pub layer: Desc,
}

impl TestImage {
    /// A single-platform linux/amd64 hello image.
    pub fn hello(name: &str) -> TestImage {
        TestImage::build(name, false)
    }

    /// An index of an arm64 manifest (noise, not runnable; listed first)
    /// and the linux/amd64 hello image.
    pub fn hello_multi_arch(name: &str) -> TestImage {
        TestImage::build(name, true)
    }

    fn build(name: &str, multi_arch: bool) -> TestImage {
        let dir = tempfile::tempdir().unwrap();
        let layout = Layout::new(dir.path().join("layout"));
        let (manifest, config, layer) = layout.hello_image(name);
        let top = if multi_arch {
            let (arm, _, _) = layout.image("arm64", 64, 2000);
            layout.index(&[(&arm, "arm64"), (&manifest, "amd64")])
        } else {
            manifest.clone()
        };
        layout.tag(&top, LAYOUT_TAG);
        TestImage {
            layout,
            _dir: dir,
            name: name.into(),
            top,
            manifest,
            config,
            layer,
        }
    }
}

/// A `docker-registry` of its own on a free 127.0.0.1 port, without auth,
/// storing in a temporary directory; stopped when dropped.
pub struct TestRegistry {
    // Stopped before its storage is removed.
    registry: RegistryProc,
    tools: Tools,
    _dir: tempfile::TempDir,
}

impl TestRegistry {
    /// None, with a message, when docker-registry or skopeo is missing
    /// (a failure instead under MKSTICK_REQUIRE_TOOLS=1).
    pub fn start() -> Option<TestRegistry> {
        let tools = tools()?;
        let dir = tempfile::tempdir().unwrap();
        let registry = RegistryProc::start(&tools, dir.path(), &dir.path().join("store"), None);
        Some(TestRegistry {
            registry,
            tools,
            _dir: dir,
        })
    }

    /// `127.0.0.1:PORT`.
    pub fn addr(&self) -> &str {
        &self.registry.addr
    }

    /// Push `image` (every platform, digests kept) as `repo:tag`; returns
    /// the pinned reference `127.0.0.1:PORT/repo:tag@sha256:HEX`, checked
    /// against the manifest bytes the registry serves for the tag.
    pub fn push(&self, repo: &str, tag: &str, image: &TestImage) -> String {
        let out = Command::new(&self.tools.skopeo)
            .args([
                "--insecure-policy",
                "copy",
                "--quiet",
                "--all",
                "--preserve-digests",
                "--dest-tls-verify=false",
            ])
            .arg(format!("oci:{}:{LAYOUT_TAG}", image.layout.dir.display()))
            .arg(format!("docker://{}/{repo}:{tag}", self.addr()))
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "skopeo copy of {} to {repo}:{tag} failed: {}",
            image.name,
            String::from_utf8_lossy(&out.stderr)
        );
        let served = Sha256Digest::of(&self.manifest(repo, tag));
        assert_eq!(
            served, image.top.digest,
            "the registry serves other manifest bytes for {repo}:{tag}"
        );
        format!("{}/{repo}:{tag}@sha256:{served}", self.addr())
    }

    /// The manifest or index bytes the registry serves for `repo:reference`.
    pub fn manifest(&self, repo: &str, reference: &str) -> Vec<u8> {
        ureq::get(format!(
            "http://{}/v2/{repo}/manifests/{reference}",
            self.addr()
        ))
        .header("Accept", format!("{OCI_MANIFEST}, {OCI_INDEX}"))
        .call()
        .unwrap()
        .body_mut()
        .read_to_vec()
        .unwrap()
    }

    /// Does the registry have this blob in `repo` (`HEAD .../blobs/...`)?
    pub fn has_blob(&self, repo: &str, digest: &Sha256Digest) -> bool {
        let url = format!("http://{}/v2/{repo}/blobs/sha256:{digest}", self.addr());
        status(ureq::head(url)) == 200
    }
}

/// Run `path`, retrying while another test's fork still holds it open
/// for writing (ETXTBSY, "Text file busy").
fn exec(path: &Path) -> std::process::Output {
    for _ in 0..100 {
        match Command::new(path).output() {
            Err(e) if e.raw_os_error() == Some(nix::libc::ETXTBSY) => {
                std::thread::sleep(Duration::from_millis(20))
            }
            other => return other.unwrap(),
        }
    }
    panic!("{} stayed busy", path.display());
}

#[test]
fn the_hello_elf_runs_and_prints_its_message() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("hello");
    std::fs::write(&path, hello_elf("hi there")).unwrap();
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755)).unwrap();
    let out = exec(&path);
    assert_eq!(String::from_utf8_lossy(&out.stdout), "hi there\n");
    assert!(out.status.success(), "{:?}", out.status);
    // The lea's rel32 is 16: from its end, over 16 bytes of code.
    let elf = hello_elf("x");
    assert_eq!(&elf[130..137], &[0x48, 0x8d, 0x35, 16, 0, 0, 0]);
    assert_eq!(&elf[153..], b"x\n");
}

#[test]
fn hello_images_of_two_names_share_their_layer_and_pull() {
    let hello = TestImage::hello("first");
    let other = TestImage::hello("second");
    assert_eq!(hello.layer.digest, other.layer.digest);
    assert_ne!(hello.config.digest, other.config.digest);
    assert_ne!(hello.manifest.digest, other.manifest.digest);
    // The same name gives the same bytes.
    assert_eq!(
        TestImage::hello("first").manifest.digest,
        hello.manifest.digest
    );
    let Some(registry) = TestRegistry::start() else {
        return;
    };
    let a = registry.push("test/first", "v1", &hello);
    let b = registry.push("test/second", "v1", &other);
    assert_ne!(a, b);
    assert_eq!(
        a,
        format!(
            "{}/test/first:v1@sha256:{}",
            registry.addr(),
            hello.manifest.digest
        )
    );
    // One layer blob, in both repositories; each config only in its own.
    for repo in ["test/first", "test/second"] {
        assert!(registry.has_blob(repo, &hello.layer.digest), "{repo}");
    }
    assert!(registry.has_blob("test/first", &hello.config.digest));
    assert!(!registry.has_blob("test/first", &other.config.digest));

    let cache_dir = tempfile::tempdir().unwrap();
    let cache = Cache::open(Some(cache_dir.path())).unwrap();
    let progress = Progress::hidden();
    let dl = Downloader::new(&cache, &progress, SignaturePolicy::Require)
        .with_retry_delay(Duration::from_millis(5));
    let reference: Reference = b.parse().unwrap();
    let img = Registry::new(&dl)
        .pull(&reference, &Platform::linux_amd64())
        .unwrap();
    assert_eq!(img.manifest.digest, other.manifest.digest);
    assert_eq!(img.layers[0].digest, other.layer.digest);
    assert_eq!(img.layers[0].media_type, LAYER_TAR_GZIP);
    let config: serde_json::Value =
        serde_json::from_slice(&std::fs::read(&img.config.path).unwrap()).unwrap();
    assert_eq!(config["config"]["Labels"][NAME_LABEL], "second");
    assert_eq!(config["config"]["Entrypoint"][0], "/hello");

    // The pulled layer holds /hello, mode 0755, and it runs.
    let gz = std::fs::File::open(&img.layers[0].path).unwrap();
    let mut tar = Vec::new();
    flate2::read::GzDecoder::new(gz)
        .read_to_end(&mut tar)
        .unwrap();
    assert_eq!(
        Sha256Digest::of(&tar).to_string(),
        config["rootfs"]["diff_ids"][0].as_str().unwrap()[7..]
    );
    assert_eq!(&tar[..6], b"hello\0");
    assert_eq!(&tar[100..108], b"0000755\0");
    let size = usize::from_str_radix(std::str::from_utf8(&tar[124..135]).unwrap(), 8).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("hello");
    std::fs::write(&path, &tar[512..512 + size]).unwrap();
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755)).unwrap();
    let out = exec(&path);
    assert_eq!(
        String::from_utf8_lossy(&out.stdout),
        format!("{HELLO_MESSAGE}\n")
    );
}

#[test]
fn a_multi_arch_hello_image_pulls_its_amd64_manifest() {
    let image = TestImage::hello_multi_arch("multi");
    assert_ne!(image.top.digest, image.manifest.digest);
    let Some(registry) = TestRegistry::start() else {
        return;
    };
    let pinned = registry.push("test/multi", "v1", &image);
    assert!(pinned.ends_with(&format!("@sha256:{}", image.top.digest)));
    let cache_dir = tempfile::tempdir().unwrap();
    let cache = Cache::open(Some(cache_dir.path())).unwrap();
    let progress = Progress::hidden();
    let dl = Downloader::new(&cache, &progress, SignaturePolicy::Require);
    let img = Registry::new(&dl)
        .pull(&pinned.parse().unwrap(), &Platform::linux_amd64())
        .unwrap();
    assert_eq!(img.top.digest, image.top.digest);
    assert_eq!(img.manifest.digest, image.manifest.digest);
    assert_eq!(img.layers[0].digest, image.layer.digest);
}

/// The HTTP status a request gets, an error status included.
pub fn status(request: ureq::RequestBuilder<ureq::typestate::WithoutBody>) -> u16 {
    request
        .config()
        .http_status_as_error(false)
        .build()
        .call()
        .unwrap()
        .status()
        .as_u16()
}
