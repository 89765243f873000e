//! Verified downloads against a real HTTP server on 127.0.0.1 (`http.rs`),
//! serving releases laid out like the publishers' and signed by gpg with a
//! throwaway key made for this test run. The verifier gets that key as a
//! parameter; the `mkstick` binary, which only trusts the embedded Fedora
//! and Flatcar keys, must refuse the same files.

use crate::common::*;
use crate::http::{Fault, Server};
use mkstick::os::cache::Cache;
use mkstick::os::download::{Artifact, Downloader, SignaturePolicy, ATTEMPTS};
use mkstick::os::fetch::Keys;
use mkstick::os::source::Release;
use mkstick::os::verify::{Digest, Keyring};
use mkstick::os::OsDir;
use mkstick::progress::Progress;
use std::path::Path;
use std::process::Command;
use std::sync::{Mutex, OnceLock};
use std::time::Duration;

/// A throwaway gpg home with one RSA signing key.
pub struct Signer {
    home: tempfile::TempDir,
    public: String,
    lock: Mutex<()>,
}

fn gpg(home: &Path, args: &[&str], input: Option<&Path>) -> Vec<u8> {
    let mut cmd = Command::new("gpg");
    cmd.arg("--homedir").arg(home).args(["--batch", "--quiet"]);
    cmd.args(args);
    if let Some(i) = input {
        cmd.arg(i);
    }
    let out = cmd.output().expect("gpg runs (Debian package gnupg)");
    assert!(
        out.status.success(),
        "gpg {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    out.stdout
}

impl Signer {
    fn new(uid: &str) -> Signer {
        let home = tempfile::tempdir().unwrap();
        gpg(
            home.path(),
            &[
                "--pinentry-mode",
                "loopback",
                "--passphrase",
                "",
                "--quick-gen-key",
                uid,
                "rsa2048",
                "sign",
                "never",
            ],
            None,
        );
        let public = String::from_utf8(gpg(home.path(), &["--armor", "--export"], None)).unwrap();
        Signer {
            home,
            public,
            lock: Mutex::new(()),
        }
    }

    /// A binary detached signature, as Fedora and Flatcar publish.
    fn sign(&self, data: &[u8]) -> Vec<u8> {
        let _g = self.lock.lock().unwrap();
        let file = self.home.path().join("data");
        std::fs::write(&file, data).unwrap();
        gpg(
            self.home.path(),
            &["--yes", "--detach-sign", "--output", "-"],
            Some(&file),
        )
    }

    fn keyring(&self, publisher: &str) -> Keyring {
        Keyring::from_armored(publisher, &[("throwaway", &self.public)]).unwrap()
    }
}

pub fn signer() -> &'static Signer {
    static S: OnceLock<Signer> = OnceLock::new();
    S.get_or_init(|| Signer::new("mkstick test <publisher@example.invalid>"))
}

fn stranger() -> &'static Signer {
    static S: OnceLock<Signer> = OnceLock::new();
    S.get_or_init(|| Signer::new("someone else <stranger@example.invalid>"))
}

pub fn test_keys() -> Keys {
    Keys {
        fedora: signer().keyring("Fedora (test)"),
        flatcar: signer().keyring("Flatcar (test)"),
    }
}

/// The kernel arguments the fake releases' ISOs record, in the format of
/// the real `coreos/kargs.json`, with one argument of their own
/// (`mkstick.test=kargs-json`) that shows they are read, not assumed.
pub const KARGS_JSON: &str = r##"{"default": "mitigations=auto,nosmt coreos.liveiso=fedora-coreos-test ignition.firstboot ignition.platform.id=metal mkstick.test=kargs-json", "files": [{"path": "EFI/fedora/grub.cfg", "offset": 1234, "pad": "#", "end": "\n"}], "size": 1137}"##;

/// An ISO 9660 image holding `images/efiboot.img` and `coreos/kargs.json`,
/// made by xorriso.
fn live_iso(efiboot: &[u8]) -> Vec<u8> {
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir_all(dir.path().join("tree/images")).unwrap();
    std::fs::create_dir_all(dir.path().join("tree/coreos")).unwrap();
    std::fs::write(dir.path().join("tree/images/efiboot.img"), efiboot).unwrap();
    std::fs::write(dir.path().join("tree/coreos/kargs.json"), KARGS_JSON).unwrap();
    std::fs::write(dir.path().join("tree/README.md"), b"a fake live ISO").unwrap();
    let iso = dir.path().join("live.iso");
    let out = Command::new("xorriso")
        .args(["-as", "mkisofs", "-quiet", "-R", "-J", "-o"])
        .arg(&iso)
        .arg(dir.path().join("tree"))
        .output()
        .expect("xorriso runs (Debian package xorriso)");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    std::fs::read(&iso).unwrap()
}

fn efiboot() -> Vec<u8> {
    fat_image(&[
        ("EFI/BOOT/BOOTX64.EFI", b"shim (fake)"),
        ("EFI/BOOT/grubx64.efi", b"grub (fake)"),
        (
            "EFI/BOOT/grub.cfg",
            b"# the ISO's stub, replaced by mkstick's\n",
        ),
    ])
}

/// One fake Fedora CoreOS release, published on `server` like
/// builds.coreos.fedoraproject.org: artifacts, `.sig`s, the stream
/// document and `release.json`.
pub struct Fcos {
    pub version: String,
    kernel: Vec<u8>,
    rootfs: Vec<u8>,
}

fn publish_fcos(server: &Server, version: &str, signer: &Signer) -> Fcos {
    // Each release's files differ, as real ones do (the cache is by
    // content): the initramfs and rootfs by their stamps.
    let mut kernel = format!("{version}/1").into_bytes();
    kernel.extend(filler(300_000, 1));
    let stamp = format!("{version}\n");
    publish_fcos_files(
        server,
        version,
        signer,
        [
            kernel,
            fake_initramfs(200_000, 2, Some(&stamp)),
            fake_rootfs("root.erofs", 900_000, 3, Some(&stamp)),
        ],
        &efiboot(),
    )
}

/// Publish these kernel, initramfs and rootfs, and a live ISO holding this
/// efiboot.img, as Fedora CoreOS release `version`.
pub fn publish_fcos_files(
    server: &Server,
    version: &str,
    signer: &Signer,
    [kernel, initramfs, rootfs]: [Vec<u8>; 3],
    efiboot: &[u8],
) -> Fcos {
    let dir = format!("/prod/streams/stable/builds/{version}/x86_64");
    let iso = live_iso(efiboot);
    let mut entries = serde_json::Map::new();
    for (key, name, bytes) in [
        ("kernel", "live-kernel.x86_64", &kernel),
        ("initramfs", "live-initramfs.x86_64.img", &initramfs),
        ("rootfs", "live-rootfs.x86_64.img", &rootfs),
        ("iso", "live.x86_64.iso", &iso),
    ] {
        let path = format!("{dir}/fedora-coreos-{version}-{name}");
        server.put(&path, bytes.clone());
        server.put(&format!("{path}.sig"), signer.sign(bytes));
        entries.insert(
            key.to_string(),
            serde_json::json!({
                "location": server.url(&path),
                "signature": server.url(&format!("{path}.sig")),
                "sha256": sha256_hex(bytes),
            }),
        );
    }
    let formats = serde_json::json!({
        "pxe": {
            "kernel": entries["kernel"],
            "initramfs": entries["initramfs"],
            "rootfs": entries["rootfs"],
        },
        "iso": { "disk": entries["iso"] },
    });
    let stream = serde_json::json!({
        "stream": "stable",
        "metadata": { "last-modified": "2026-11-20T00:00:00Z" },
        "architectures": { "x86_64": { "artifacts": { "metal": {
            "release": version,
            "formats": formats,
        }}}},
    });
    let release = serde_json::json!({
        "release": version,
        "stream": "stable",
        "architectures": { "x86_64": { "media": { "metal": { "artifacts": formats }}}},
    });
    server.put("/streams/stable.json", serde_json::to_vec(&stream).unwrap());
    server.put(
        &format!("/prod/streams/stable/builds/{version}/release.json"),
        serde_json::to_vec(&release).unwrap(),
    );
    Fcos {
        version: version.to_string(),
        kernel,
        rootfs,
    }
}

fn kernel_path(f: &Fcos) -> String {
    format!(
        "/prod/streams/stable/builds/{v}/x86_64/fedora-coreos-{v}-live-kernel.x86_64",
        v = f.version
    )
}

fn rootfs_path(f: &Fcos) -> String {
    format!(
        "/prod/streams/stable/builds/{v}/x86_64/fedora-coreos-{v}-live-rootfs.x86_64.img",
        v = f.version
    )
}

pub fn fcos_release(server: &Server, version: Option<&str>) -> Release {
    Release {
        stream: "stable".to_string(),
        version: version.map(str::to_string),
        url: server.url("/streams/stable.json"),
        efi_stream_url: server.url("/streams/stable.json"),
    }
}

pub fn downloader<'a>(cache: &'a Cache, policy: SignaturePolicy) -> Downloader<'a> {
    static P: OnceLock<Progress> = OnceLock::new();
    let progress = P.get_or_init(Progress::hidden);
    Downloader::new(cache, progress, policy).with_retry_delay(Duration::from_millis(5))
}

/// Files in the cache's blobs/ and partial/ directories.
fn cache_files(cache: &Cache) -> (usize, usize) {
    let count = |d: &str| std::fs::read_dir(cache.root.join(d)).unwrap().count();
    (count("blobs/sha256"), count("partial"))
}

#[test]
fn fedora_coreos_fetch_gives_a_usable_os_directory_and_a_cache_hit_uses_no_network() {
    let server = Server::start();
    let rel = publish_fcos(&server, "43.20261116.3.0", signer());
    let tmp = tempfile::tempdir().unwrap();
    let cache = Cache::open(Some(&tmp.path().join("cache"))).unwrap();
    let keys = test_keys();

    let dl = downloader(&cache, SignaturePolicy::Require);
    let dir = mkstick::os::fcos::fetch(&fcos_release(&server, None), &dl, &keys.fedora).unwrap();
    let summary = dl.summary();
    assert_eq!(summary.fetched.len(), 4, "{summary}");
    assert!(summary.unsigned.is_empty());
    let os = OsDir::load(&dir).unwrap();
    assert_eq!(os.manifest.version, rel.version);
    assert_eq!(os.manifest.id, "fedora-coreos");
    os.verify(|_| {}).unwrap();
    assert_eq!(std::fs::read(dir.join("kernel")).unwrap(), rel.kernel);
    let efi: Vec<String> = os
        .efi_files()
        .unwrap()
        .into_iter()
        .map(|f| f.esp_path)
        .collect();
    assert!(efi.contains(&"EFI/BOOT/BOOTX64.EFI".to_string()), "{efi:?}");
    assert!(os
        .manifest
        .kernel_args
        .iter()
        .any(|a| a.as_str() == "ignition.firstboot"));
    // Each of the 4 artifacts: its signature, then the file.
    let paths = server.paths();
    assert_eq!(paths.len(), 1 + 4 * 2, "{paths:?}");

    // The directory builds a stick.
    let s = Scratch::new(&minimal_config());
    ok(s.run(&["build", "--os-dir", dir.to_str().unwrap()]));
    let grub = esp_file(&s.path("mkstick.img"), "EFI/BOOT/grub.cfg");
    grub_script_check(&grub);
    assert!(String::from_utf8_lossy(&grub).contains("os/rootfs.img"));
    // The release's own kernel arguments, from its ISO's coreos/kargs.json,
    // without coreos.liveiso= (a stick is no ISO 9660 filesystem).
    assert!(
        String::from_utf8_lossy(&grub).contains(
            "linux /os/vmlinuz 'mitigations=auto,nosmt' 'ignition.firstboot' 'ignition.platform.id=metal' 'mkstick.test=kargs-json' 'console=ttyS0,115200n8' 'console=tty0'"
        ),
        "{}",
        String::from_utf8_lossy(&grub)
    );

    // Pinned and cached: not one request.
    server.clear_log();
    let dl = downloader(&cache, SignaturePolicy::Require);
    let again = mkstick::os::fcos::fetch(
        &fcos_release(&server, Some(&rel.version)),
        &dl,
        &keys.fedora,
    )
    .unwrap();
    assert_eq!(again, dir);
    assert_eq!(
        server.requests(),
        vec![],
        "a cache hit must not touch the network"
    );

    // Unpinned: only the stream document, to learn the current release.
    let dl = downloader(&cache, SignaturePolicy::Require);
    mkstick::os::fcos::fetch(&fcos_release(&server, None), &dl, &keys.fedora).unwrap();
    let paths = server.paths();
    assert_eq!(paths, vec!["/streams/stable.json".to_string()]);

    // An older pinned release is read from its release.json.
    server.clear_log();
    let old = publish_fcos(&server, "43.20261101.3.0", signer());
    publish_fcos(&server, "43.20261116.3.0", signer());
    let dl = downloader(&cache, SignaturePolicy::Require);
    let dir = mkstick::os::fcos::fetch(
        &fcos_release(&server, Some(&old.version)),
        &dl,
        &keys.fedora,
    )
    .unwrap();
    assert_eq!(OsDir::load(&dir).unwrap().manifest.version, old.version);
    assert!(server
        .requests()
        .iter()
        .any(|r| r.path.ends_with(&format!("{}/release.json", old.version))));
}

#[test]
fn a_tampered_artifact_is_refused_and_nothing_is_left_in_the_cache() {
    let server = Server::start();
    let rel = publish_fcos(&server, "43.1.3.0", signer());
    let mut bad = rel.kernel.clone();
    bad[1000] ^= 1;
    server.put(&kernel_path(&rel), bad.clone());
    let tmp = tempfile::tempdir().unwrap();
    let cache = Cache::open(Some(tmp.path())).unwrap();
    let dl = downloader(&cache, SignaturePolicy::Require);
    let e = mkstick::os::fcos::fetch(&fcos_release(&server, None), &dl, &test_keys().fedora)
        .unwrap_err();
    let msg = format!("{e:#}");
    assert!(msg.contains("sha256 mismatch for kernel"), "{msg}");
    assert!(
        msg.contains(&sha256_hex(&rel.kernel)),
        "names the expected hash: {msg}"
    );
    assert!(
        msg.contains(&sha256_hex(&bad)),
        "names the hash it got: {msg}"
    );
    assert!(
        msg.contains(&server.url(&kernel_path(&rel))),
        "names the URL: {msg}"
    );
    assert_eq!(cache_files(&cache), (0, 0), "nothing kept");
    assert!(cache.os_dirs().unwrap().is_empty());
}

#[test]
fn a_signature_by_another_key_or_over_other_bytes_is_refused() {
    let server = Server::start();
    let rel = publish_fcos(&server, "43.2.3.0", signer());
    let sig = format!("{}.sig", rootfs_path(&rel));
    let tmp = tempfile::tempdir().unwrap();
    let cache = Cache::open(Some(tmp.path())).unwrap();
    let keys = test_keys();

    // Signed by a key that is not the publisher's.
    server.put(&sig, stranger().sign(&rel.rootfs));
    let dl = downloader(&cache, SignaturePolicy::Require);
    let e = mkstick::os::fcos::fetch(&fcos_release(&server, None), &dl, &keys.fedora).unwrap_err();
    let msg = format!("{e:#}");
    assert!(msg.contains("bad signature on rootfs"), "{msg}");
    assert!(msg.contains("not one of Fedora (test)'s"), "{msg}");

    // The publisher's key, but over different bytes.
    server.put(&sig, signer().sign(b"something else"));
    let dl = downloader(&cache, SignaturePolicy::Require);
    let e = mkstick::os::fcos::fetch(&fcos_release(&server, None), &dl, &keys.fedora).unwrap_err();
    let msg = format!("{e:#}");
    assert!(msg.contains("bad signature on rootfs"), "{msg}");
    assert!(msg.contains("does not match"), "{msg}");

    // Garbage where the signature should be.
    server.put(&sig, b"<html>mirror error page</html>".to_vec());
    let dl = downloader(&cache, SignaturePolicy::Require);
    let e = mkstick::os::fcos::fetch(&fcos_release(&server, None), &dl, &keys.fedora).unwrap_err();
    assert!(
        format!("{e:#}").contains("not an OpenPGP signature"),
        "{e:#}"
    );

    // The rootfs never entered the cache (kernel and initramfs did).
    assert!(cache
        .lookup(&mkstick::os::verify::Digest::parse_hex(&sha256_hex(&rel.rootfs)).unwrap())
        .unwrap()
        .is_none());
    assert_eq!(cache_files(&cache).1, 0, "no partial file is left");
}

#[test]
fn a_missing_signature_is_refused_unless_the_insecure_flag_is_given() {
    let server = Server::start();
    let rel = publish_fcos(&server, "43.3.3.0", signer());
    server.remove(&format!("{}.sig", kernel_path(&rel)));
    let tmp = tempfile::tempdir().unwrap();
    let cache = Cache::open(Some(tmp.path())).unwrap();
    let keys = test_keys();

    let dl = downloader(&cache, SignaturePolicy::Require);
    let e = mkstick::os::fcos::fetch(&fcos_release(&server, None), &dl, &keys.fedora).unwrap_err();
    let msg = format!("{e:#}");
    assert!(msg.contains("HTTP 404"), "{msg}");
    assert!(msg.contains("--insecure-skip-signature"), "{msg}");
    assert!(
        !server
            .requests()
            .iter()
            .any(|r| r.path == kernel_path(&rel)),
        "the file itself is not even downloaded"
    );

    let dl = downloader(&cache, SignaturePolicy::InsecureSkip);
    let dir = mkstick::os::fcos::fetch(&fcos_release(&server, None), &dl, &keys.fedora).unwrap();
    assert_eq!(dl.summary().unsigned, vec!["kernel".to_string()]);
    assert!(dl
        .summary()
        .to_string()
        .contains("NOT signature-checked: kernel"));
    OsDir::load(&dir).unwrap().verify(|_| {}).unwrap();

    // The flag never skips the sha256.
    let rel = publish_fcos(&server, "43.4.3.0", signer());
    server.remove(&format!("{}.sig", kernel_path(&rel)));
    server.put(&kernel_path(&rel), filler(300_000, 9));
    let dl = downloader(&cache, SignaturePolicy::InsecureSkip);
    let e = mkstick::os::fcos::fetch(&fcos_release(&server, None), &dl, &keys.fedora).unwrap_err();
    assert!(format!("{e:#}").contains("sha256 mismatch"), "{e:#}");
}

#[test]
fn an_interrupted_download_resumes_with_range_and_is_verified() {
    let server = Server::start();
    let rel = publish_fcos(&server, "43.5.3.0", signer());
    let path = rootfs_path(&rel);
    // The connection breaks twice, at 300000 bytes each time.
    server.fault(
        &path,
        Fault {
            truncate_at: Some(300_000),
            truncations: 2,
            ..Fault::default()
        },
    );
    let tmp = tempfile::tempdir().unwrap();
    let cache = Cache::open(Some(tmp.path())).unwrap();
    let dl = downloader(&cache, SignaturePolicy::Require);
    let dir =
        mkstick::os::fcos::fetch(&fcos_release(&server, None), &dl, &test_keys().fedora).unwrap();
    let ranges = server.ranges(&path);
    assert_eq!(ranges, vec![None, Some(300_000), Some(600_000)]);
    assert_eq!(std::fs::read(dir.join("rootfs.img")).unwrap(), rel.rootfs);

    // A .part left by an earlier run (killed mid-way) is picked up.
    let rel = publish_fcos(&server, "43.6.3.0", signer());
    let want = mkstick::os::verify::Digest::parse_hex(&sha256_hex(&rel.rootfs)).unwrap();
    std::fs::write(cache.part_path(&want), &rel.rootfs[..500_000]).unwrap();
    server.clear_log();
    let dl = downloader(&cache, SignaturePolicy::Require);
    let dir =
        mkstick::os::fcos::fetch(&fcos_release(&server, None), &dl, &test_keys().fedora).unwrap();
    let ranges = server.ranges(&rootfs_path(&rel));
    assert_eq!(ranges, vec![Some(500_000)]);
    assert_eq!(std::fs::read(dir.join("rootfs.img")).unwrap(), rel.rootfs);

    // A .part that is not a prefix of the file fails the check and is deleted.
    let rel = publish_fcos(&server, "43.7.3.0", signer());
    let want = mkstick::os::verify::Digest::parse_hex(&sha256_hex(&rel.rootfs)).unwrap();
    std::fs::write(cache.part_path(&want), filler(500_000, 77)).unwrap();
    let dl = downloader(&cache, SignaturePolicy::Require);
    let e = mkstick::os::fcos::fetch(&fcos_release(&server, None), &dl, &test_keys().fedora)
        .unwrap_err();
    assert!(
        format!("{e:#}").contains("sha256 mismatch for rootfs"),
        "{e:#}"
    );
    assert!(!cache.part_path(&want).exists());
    // ...and the next run starts over and succeeds.
    let dl = downloader(&cache, SignaturePolicy::Require);
    mkstick::os::fcos::fetch(&fcos_release(&server, None), &dl, &test_keys().fedora).unwrap();
}

#[test]
fn server_errors_and_cut_bodies_give_a_clear_error_after_bounded_retries() {
    let server = Server::start();
    let rel = publish_fcos(&server, "43.8.3.0", signer());
    let tmp = tempfile::tempdir().unwrap();
    let cache = Cache::open(Some(tmp.path())).unwrap();

    // Two 500s, then it works: retried.
    server.fault(
        "/streams/stable.json",
        Fault {
            errors_500: 2,
            ..Fault::default()
        },
    );
    let dl = downloader(&cache, SignaturePolicy::Require);
    mkstick::os::fcos::fetch(&fcos_release(&server, None), &dl, &test_keys().fedora).unwrap();

    // Always 500: exactly ATTEMPTS requests, then the URL and the reason.
    server.clear_log();
    server.fault(
        "/streams/stable.json",
        Fault {
            errors_500: 1000,
            ..Fault::default()
        },
    );
    let dl = downloader(&cache, SignaturePolicy::Require);
    let e = mkstick::os::fcos::fetch(&fcos_release(&server, None), &dl, &test_keys().fedora)
        .unwrap_err();
    let msg = format!("{e:#}");
    assert!(
        msg.contains(&format!(
            "giving up on {} after {ATTEMPTS} attempts",
            server.url("/streams/stable.json")
        )),
        "{msg}"
    );
    assert!(msg.contains("HTTP 500"), "{msg}");
    assert_eq!(server.requests().len(), ATTEMPTS as usize);

    // A body that is always cut short: bounded too, and nothing admitted.
    server.fault("/streams/stable.json", Fault::default());
    let rel2 = publish_fcos(&server, "43.9.3.0", signer());
    server.fault(
        &kernel_path(&rel2),
        Fault {
            truncate_at: Some(0),
            truncations: 1000,
            ..Fault::default()
        },
    );
    server.clear_log();
    let dl = downloader(&cache, SignaturePolicy::Require);
    let e = mkstick::os::fcos::fetch(&fcos_release(&server, None), &dl, &test_keys().fedora)
        .unwrap_err();
    let msg = format!("{e:#}");
    assert!(msg.contains("truncated"), "{msg}");
    assert!(msg.contains(&server.url(&kernel_path(&rel2))), "{msg}");
    let tries = server.ranges(&kernel_path(&rel2)).len();
    assert_eq!(tries, ATTEMPTS as usize);
    drop(rel);
}

/// A fake Flatcar release on `server`, laid out like
/// `<channel>.release.flatcar-linux.net/amd64-usr/<version>/`.
fn publish_flatcar(server: &Server, version: &str) -> (Vec<u8>, Vec<u8>) {
    let kernel = filler(250_000, 5);
    let image = filler(700_000, 6);
    for (name, bytes) in [
        ("flatcar_production_pxe.vmlinuz", &kernel),
        ("flatcar_production_pxe_image.cpio.gz", &image),
    ] {
        let path = format!("/amd64-usr/{version}/{name}");
        use sha2::Digest;
        let digests = format!(
            "# MD5 HASH\n{}  {name}\n# SHA1 HASH\n{}  {name}\n# SHA512 HASH\n{}  {name}\n",
            "0".repeat(32),
            "1".repeat(40),
            mkstick::io::hex(&sha2::Sha512::digest(bytes))
        );
        server.put(&path, bytes.clone());
        server.put(&format!("{path}.sig"), signer().sign(bytes));
        server.put(
            &format!("{path}.DIGESTS.sig"),
            signer().sign(digests.as_bytes()),
        );
        server.put(&format!("{path}.DIGESTS"), digests);
    }
    server.put(
        "/amd64-usr/current/version.txt",
        format!("FLATCAR_BUILD=4459\nFLATCAR_VERSION={version}\nFLATCAR_VERSION_ID={version}\n"),
    );
    (kernel, image)
}

#[test]
fn flatcar_fetch_checks_digests_and_signatures_and_boots_through_fedoras_efi_chain() {
    let server = Server::start();
    publish_fcos(&server, "43.10.3.0", signer());
    let (kernel, image) = publish_flatcar(&server, "4459.2.1");
    let tmp = tempfile::tempdir().unwrap();
    let cache = Cache::open(Some(tmp.path())).unwrap();
    let release = Release {
        stream: "stable".to_string(),
        version: None,
        url: server.url("/amd64-usr"),
        efi_stream_url: server.url("/streams/stable.json"),
    };
    let dl = downloader(&cache, SignaturePolicy::Require);
    let dir = mkstick::os::flatcar::fetch(&release, &dl, &test_keys()).unwrap();
    let os = OsDir::load(&dir).unwrap();
    os.verify(|_| {}).unwrap();
    let m = &os.manifest;
    assert_eq!((m.id.as_str(), m.version.as_str()), ("flatcar", "4459.2.1"));
    assert!(
        m.rootfs.is_none(),
        "Flatcar's /usr image is its only initrd"
    );
    assert_eq!(m.ignition_config_path, "usr/share/oem/config.ign");
    assert!(m
        .kernel_args
        .iter()
        .any(|a| a.as_str() == "flatcar.first_boot=1"));
    assert_eq!(
        std::fs::read(dir.join("flatcar_production_pxe.vmlinuz")).unwrap(),
        kernel
    );
    assert_eq!(
        std::fs::read(dir.join("flatcar_production_pxe_image.cpio.gz")).unwrap(),
        image
    );

    // The stick: two initrds (the /usr image, then the config at Flatcar's path).
    let s = Scratch::new(&minimal_config());
    ok(s.run(&["build", "--os-dir", dir.to_str().unwrap()]));
    let img = s.path("mkstick.img");
    let grub = String::from_utf8(esp_file(&img, "EFI/BOOT/grub.cfg")).unwrap();
    grub_script_check(grub.as_bytes());
    // Fedora's shim does not trust Flatcar's kernel: say so under Secure Boot.
    assert!(
        grub.contains("if [ \"$shim_lock\" = y ]; then\n    echo \"mkstick: Secure Boot is on; Flatcar's kernel is not signed by Fedora's shim: turn Secure Boot off for this server\"\n    sleep 30\n    halt"),
        "{grub}"
    );
    assert!(
        grub.contains("initrd /os/initramfs.img /mkstick/ignition.img"),
        "{grub}"
    );
    let members = mkstick::formats::initrd::read(&esp_file(&img, "mkstick/ignition.img")).unwrap();
    assert!(members.iter().any(|m| m.name == "usr/share/oem/config.ign"));
    // Flatcar's /usr, /usr/local included, is read-only: mkstick's scripts
    // go to /opt/bin, and nothing is written under /usr.
    let oem = members
        .iter()
        .find(|m| m.name == "usr/share/oem/config.ign")
        .unwrap();
    let config: mkstick::ignition::Config = serde_json::from_slice(&oem.data).unwrap();
    let paths: Vec<&str> = config
        .storage
        .files
        .iter()
        .map(|f| f.path.as_str())
        .collect();
    assert!(paths.contains(&"/opt/bin/mkstick-banner"), "{paths:?}");
    assert!(!paths.iter().any(|p| p.starts_with("/usr/")), "{paths:?}");
    let banner = config
        .systemd
        .units
        .iter()
        .find(|u| u.name == "mkstick-banner.service")
        .and_then(|u| u.contents.as_deref())
        .unwrap();
    assert!(
        banner.contains("ExecStart=/opt/bin/mkstick-banner\n"),
        "{banner}"
    );
    // A fragment that writes under /usr/local is refused for Flatcar.
    s.write(
        "usr.ign",
        r#"{"ignition": {"version": "3.3.0"}, "storage": {"files": [{"path": "/usr/local/bin/tool", "mode": 493}]}}"#,
    );
    s.write(
        "mkstick.toml",
        &format!("{}\n[extra]\nignition = [\"usr.ign\"]\n", minimal_config()),
    );
    let e = fails(s.run(&["build", "--os-dir", dir.to_str().unwrap(), "-o", "usr.img"]));
    assert!(
        e.contains("[extra] ignition usr.ign: /usr/local/bin/tool is under /usr, which Flatcar Container Linux mounts read-only")
            && e.contains("(programs: /opt/bin)"),
        "{e}"
    );
    assert!(!s.path("usr.img").exists());

    // Pinned and cached: no request at all.
    server.clear_log();
    let pinned = Release {
        version: Some("4459.2.1".to_string()),
        ..release.clone()
    };
    let dl = downloader(&cache, SignaturePolicy::Require);
    mkstick::os::flatcar::fetch(&pinned, &dl, &test_keys()).unwrap();
    assert_eq!(server.requests(), vec![]);

    // A DIGESTS file signed by someone else is refused before any download.
    publish_flatcar(&server, "4459.3.0");
    let path = "/amd64-usr/4459.3.0/flatcar_production_pxe.vmlinuz.DIGESTS";
    let text = b"# SHA512 HASH\n00  flatcar_production_pxe.vmlinuz\n".to_vec();
    server.put(&format!("{path}.sig"), stranger().sign(&text));
    server.put(path, text);
    let dl = downloader(&cache, SignaturePolicy::Require);
    let e = mkstick::os::flatcar::fetch(&release, &dl, &test_keys()).unwrap_err();
    let msg = format!("{e:#}");
    assert!(
        msg.contains("refusing") && msg.contains(".DIGESTS"),
        "{msg}"
    );
    assert!(msg.contains("not one of Flatcar (test)'s"), "{msg}");
}

#[test]
fn the_kubernetes_table_is_enforced() {
    use mkstick::os::kubernetes::{self as binaries, Mirrors, Table, BINARIES, KUBERNETES_VERSION};
    let server = Server::start();
    let mirrors = Mirrors {
        k8s: server.base.clone(),
        github: server.base.clone(),
    };
    for b in BINARIES {
        let url = b.artifact("amd64", &mirrors).unwrap().url;
        server.put(url.strip_prefix(&server.base).unwrap(), filler(10_000, 4));
    }
    let tmp = tempfile::tempdir().unwrap();
    let cache = Cache::open(Some(tmp.path())).unwrap();
    let dl = downloader(&cache, SignaturePolicy::Require);
    // These files are not the real binaries, so the pinned hashes refuse them.
    let table = Table::from_static(BINARIES, "amd64", &mirrors).unwrap();
    let e = binaries::fetch(&dl, &table).unwrap_err();
    let msg = format!("{e:#}");
    assert!(
        msg.contains(&format!("sha256 mismatch for kubeadm {KUBERNETES_VERSION}")),
        "{msg}"
    );
    assert!(msg.contains(BINARIES[0].sha256[0].1), "{msg}");
    assert_eq!(cache_files(&cache), (0, 0));
    assert!(!binaries::record_path(&cache, &table).exists());
}

#[test]
fn the_binary_trusts_only_the_embedded_keys_and_honours_no_proxy() {
    let server = Server::start();
    let rel = publish_fcos(&server, "43.11.3.0", signer());
    let s = Scratch::new(&minimal_config());
    let config = format!(
        "[node]\nhostname = \"kube1\"\nssh-authorized-keys = [\"{KEY}\"]\n\n[os]\ndistro = \"fedora-coreos\"\nstream = \"stable\"\nstream-url = \"{}\"\n",
        server.url("/streams/stable.json")
    );
    s.write("mkstick.toml", &config);
    let cache = s.path("cache");
    let cache_arg = cache.to_str().unwrap();
    // A proxy that does not exist: NO_PROXY must keep 127.0.0.1 away from it.
    let env = [
        ("HTTPS_PROXY", "http://127.0.0.1:9"),
        ("HTTP_PROXY", "http://127.0.0.1:9"),
        ("NO_PROXY", "127.0.0.1"),
    ];

    // Signed, but not by Fedora: refused, exit 1, nothing admitted.
    let err = fails(s.run_env(&["fetch", "--cache-dir", cache_arg], &env));
    assert!(err.contains("bad signature on kernel"), "{err}");
    assert!(err.contains("not one of Fedora's"), "{err}");
    assert_eq!(
        std::fs::read_dir(cache.join("blobs/sha256"))
            .unwrap()
            .count(),
        0
    );

    // --insecure-skip-signature: loud, accepted on the sha256 alone.
    let o = s.run_env(
        &[
            "fetch",
            "--cache-dir",
            cache_arg,
            "--insecure-skip-signature",
        ],
        &env,
    );
    let err = stderr(&o);
    let out = ok(o);
    assert!(err.contains("WARNING: --insecure-skip-signature"), "{err}");
    assert!(out.contains("fetched 4 files"), "{out}");
    assert!(out.contains("NOT signature-checked"), "{out}");
    assert!(
        out.contains(&format!("Fedora CoreOS {} is ready", rel.version)),
        "{out}"
    );

    // build uses the cache, with no new download.
    server.clear_log();
    let o = s.run_env(
        &[
            "build",
            "--cache-dir",
            cache_arg,
            "--insecure-skip-signature",
        ],
        &env,
    );
    ok(o);
    let paths = server.paths();
    assert_eq!(paths, vec!["/streams/stable.json".to_string()]);

    // Files taken with the flag are not trusted later without it: their
    // signatures are checked now, and these are not Fedora's.
    server.clear_log();
    let err = fails(s.run_env(&["build", "--force", "--cache-dir", cache_arg], &env));
    assert!(err.contains("bad signature on kernel"), "{err}");
    assert!(
        !server
            .requests()
            .iter()
            .any(|r| r.path == kernel_path(&rel)),
        "the cached file is checked in place, not downloaded again"
    );
    // It is then out of the cache: the next run with the flag fetches it.
    let o = s.run_env(
        &[
            "fetch",
            "--cache-dir",
            cache_arg,
            "--insecure-skip-signature",
        ],
        &env,
    );
    assert!(ok(o).contains("fetched 1 file"));

    // Without NO_PROXY the dead proxy is used: the server, which is up,
    // sees nothing.
    server.clear_log();
    let o = s.run_env(
        &["fetch", "--cache-dir", cache_arg],
        &[
            ("HTTPS_PROXY", "http://127.0.0.1:9"),
            ("HTTP_PROXY", "http://127.0.0.1:9"),
            ("NO_PROXY", ""),
        ],
    );
    let err = fails(o);
    assert!(err.contains("giving up on"), "{err}");
    assert_eq!(server.requests(), vec![], "every request went to the proxy");
    assert!(
        err.contains(&format!("pin it in [os]: version = \"{}\"", rel.version)),
        "offline, it says how to build from the cache: {err}"
    );

    // cache ls shows the release; prune keeps it and drops the ISO, which
    // only served to take efiboot.img out.
    let ls = ok(s.run(&["cache", "ls", "--cache-dir", cache_arg]));
    assert!(
        ls.contains(&format!("os  fedora-coreos {}", rel.version)),
        "{ls}"
    );
    assert!(ls.contains("1 not used by a release"), "{ls}");
    let pruned = ok(s.run(&["cache", "prune", "--cache-dir", cache_arg]));
    assert!(pruned.contains("removed 1 unused files"), "{pruned}");
    let ls = ok(s.run(&["cache", "ls", "--cache-dir", cache_arg]));
    assert!(ls.contains("0 not used"), "{ls}");
    ok(s.run_env(
        &[
            "check",
            "--cache-dir",
            cache_arg,
            "--insecure-skip-signature",
        ],
        &env,
    ));
}

#[test]
fn os_config_mistakes_are_located() {
    let s = Scratch::new(&minimal_config());
    let base = format!("[node]\nhostname = \"kube1\"\nssh-authorized-keys = [\"{KEY}\"]\n\n[os]\n");
    for (os, want) in [
        ("distro = \"fedora\"\n", "unknown distro `fedora`"),
        (
            "distro = \"flatcar\"\nchannel = \"testing\"\n",
            "`testing` is not a Flatcar channel",
        ),
        (
            "stream = \"beta\"\n",
            "`beta` is not a Fedora CoreOS stream",
        ),
        (
            "version = \"latest\"\n",
            "`latest` is not a release version",
        ),
        ("release-url = \"http://x\"\n", "`release-url` is Flatcar's"),
        ("stream-url = \"ftp://x\"\n", "is not an http(s) URL"),
        (
            "stream-url = \"http://mirror.example/s.json\"\n",
            "is plain http",
        ),
        (
            "stream-url = \"http://localhost:1@mirror.example/s.json\"\n",
            "carries a user name",
        ),
        (
            "path = \"os\"\ndistro = \"flatcar\"\nstream = \"stable\"\n",
            "to use `path`, remove or comment out `distro` and `stream`",
        ),
    ] {
        s.write("mkstick.toml", &format!("{base}{os}"));
        let err = fails(s.run(&["plan", "--cache-dir", s.path("c").to_str().unwrap()]));
        assert!(err.contains(want), "{os}: {err}");
        assert!(err.contains("mkstick.toml:"), "located: {err}");
    }
}

#[test]
fn a_signature_by_a_revoked_subkey_is_refused() {
    use mkstick::os::verify::Signature;
    // A publisher-shaped key: a certify-only primary and a signing subkey.
    let home = tempfile::tempdir().unwrap();
    let h = home.path();
    let quiet = ["--pinentry-mode", "loopback", "--passphrase", ""];
    let mut args = quiet.to_vec();
    args.extend([
        "--quick-gen-key",
        "pub <p@example.invalid>",
        "rsa2048",
        "cert",
        "never",
    ]);
    gpg(h, &args, None);
    let listing = String::from_utf8(gpg(h, &["--list-keys", "--with-colons"], None)).unwrap();
    let fpr = listing
        .lines()
        .find_map(|l| l.strip_prefix("fpr:::::::::"))
        .map(|l| l.trim_end_matches(':').to_string())
        .unwrap();
    let mut args = quiet.to_vec();
    args.extend(["--quick-add-key", &fpr, "rsa2048", "sign", "never"]);
    gpg(h, &args, None);
    let data = h.join("data");
    std::fs::write(&data, b"a release").unwrap();
    let sig = gpg(h, &["--detach-sign", "--output", "-"], Some(&data));
    let before = String::from_utf8(gpg(h, &["--armor", "--export"], None)).unwrap();
    let ring = Keyring::from_armored("P", &[("p", &before)]).unwrap();
    let parsed = Signature::parse(&sig).unwrap();
    parsed.verify(&ring, &b"a release"[..]).unwrap();

    // Revoke the subkey (gpg --edit-key, driven through --command-fd).
    let mut child = Command::new("gpg")
        .arg("--homedir")
        .arg(h)
        .args([
            "--batch",
            "--quiet",
            "--pinentry-mode",
            "loopback",
            "--passphrase",
            "",
        ])
        .args(["--command-fd", "0", "--edit-key", &fpr])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    std::io::Write::write_all(
        child.stdin.as_mut().unwrap(),
        b"key 1\nrevkey\ny\n0\n\ny\nsave\n",
    )
    .unwrap();
    drop(child.stdin.take());
    assert!(child.wait().unwrap().success());
    let after = String::from_utf8(gpg(h, &["--armor", "--export"], None)).unwrap();
    let ring = Keyring::from_armored("P", &[("p", &after)]).unwrap();
    let e = parsed.verify(&ring, &b"a release"[..]).unwrap_err();
    assert!(
        format!("{e:#}").contains("that subkey was revoked"),
        "{e:#}"
    );
}

#[test]
fn kubernetes_binaries_land_in_the_cache_and_a_second_fetch_is_free() {
    use mkstick::os::kubernetes::{self as binaries, Binary, Mirrors, Table, BINARIES};
    let server = Server::start();
    let mirrors = Mirrors {
        k8s: server.base.clone(),
        github: server.base.clone(),
    };
    // The real table's URLs, with hashes of this test's own files.
    let table: Vec<Binary> = BINARIES
        .iter()
        .enumerate()
        .map(|(i, b)| {
            let bytes = filler(20_000, i as u8 + 10);
            let hex: &'static str = Box::leak(sha256_hex(&bytes).into_boxed_str());
            let t = Binary {
                name: b.name,
                url: b.url,
                version: b.version,
                sha256: Box::leak(vec![("amd64", hex)].into_boxed_slice()),
            };
            let url = t.artifact("amd64", &mirrors).unwrap().url;
            server.put(url.strip_prefix(&server.base).unwrap(), bytes);
            t
        })
        .collect();
    let tmp = tempfile::tempdir().unwrap();
    let cache = Cache::open(Some(tmp.path())).unwrap();
    let dl = downloader(&cache, SignaturePolicy::Require);
    let table = Table::from_static(&table, "amd64", &mirrors).unwrap();
    let got = binaries::fetch(&dl, &table).unwrap();
    assert_eq!(got.len(), BINARIES.len());
    for (b, t) in got.iter().zip(&table.files) {
        assert_eq!(b.name, t.name);
        assert_eq!(b.sha256, t.sha256);
        assert_eq!(b.path, cache.blob_path(&b.sha256));
        assert!(b.path.is_file());
    }
    assert!(binaries::record_path(&cache, &table).is_file());
    // Recorded binaries count as used: prune keeps them.
    cache.prune(1).unwrap();
    assert_eq!(cache_files(&cache).0, BINARIES.len());
    server.clear_log();
    let dl = downloader(&cache, SignaturePolicy::Require);
    binaries::fetch(&dl, &table).unwrap();
    assert_eq!(server.requests(), vec![]);
    assert_eq!(dl.summary().reused.len(), BINARIES.len());
}

#[test]
fn a_stalled_server_times_out_and_a_server_ignoring_range_still_works() {
    let server = Server::start();
    let rel = publish_fcos(&server, "43.12.3.0", signer());
    let tmp = tempfile::tempdir().unwrap();
    let cache = Cache::open(Some(tmp.path())).unwrap();

    // Goes silent after 1000 bytes, every time: bounded, and said so.
    server.fault(
        &kernel_path(&rel),
        Fault {
            stall_at: Some(1000),
            stall_secs: 5,
            ..Fault::default()
        },
    );
    let dl =
        downloader(&cache, SignaturePolicy::Require).with_read_timeout(Duration::from_millis(300));
    let e = mkstick::os::fcos::fetch(&fcos_release(&server, None), &dl, &test_keys().fedora)
        .unwrap_err();
    let msg = format!("{e:#}");
    assert!(msg.contains(&format!("after {ATTEMPTS} attempts")), "{msg}");
    assert!(
        msg.to_lowercase().contains("timeout") || msg.contains("timed out"),
        "{msg}"
    );

    // A server that answers every Range request with the whole file (200):
    // the part is started over, and the result is right.
    server.fault(
        &kernel_path(&rel),
        Fault {
            ignore_range: true,
            truncate_at: Some(100_000),
            truncations: 1,
            ..Fault::default()
        },
    );
    server.clear_log();
    let dl = downloader(&cache, SignaturePolicy::Require);
    let dir =
        mkstick::os::fcos::fetch(&fcos_release(&server, None), &dl, &test_keys().fedora).unwrap();
    assert_eq!(std::fs::read(dir.join("kernel")).unwrap(), rel.kernel);
    let tries = server.ranges(&kernel_path(&rel));
    assert_eq!(
        tries.len(),
        2,
        "one cut attempt, one whole retry: {tries:?}"
    );

    // A complete .part from a run killed before the check: the server says
    // 416, and the file is checked without downloading it again.
    let rel = publish_fcos(&server, "43.13.3.0", signer());
    let want = mkstick::os::verify::Digest::parse_hex(&sha256_hex(&rel.rootfs)).unwrap();
    std::fs::write(cache.part_path(&want), &rel.rootfs).unwrap();
    server.clear_log();
    let dl = downloader(&cache, SignaturePolicy::Require);
    let dir =
        mkstick::os::fcos::fetch(&fcos_release(&server, None), &dl, &test_keys().fedora).unwrap();
    assert_eq!(std::fs::read(dir.join("rootfs.img")).unwrap(), rel.rootfs);
    let rootfs_reqs = server.ranges(&rootfs_path(&rel));
    assert_eq!(rootfs_reqs, vec![Some(rel.rootfs.len() as u64)]);
}

#[test]
fn insecurely_accepted_files_are_checked_again_and_damaged_ones_replaced() {
    let server = Server::start();
    let rel = publish_fcos(&server, "43.14.3.0", signer());
    let sig_path = format!("{}.sig", kernel_path(&rel));
    let sig = signer().sign(&rel.kernel);
    server.remove(&sig_path);
    let tmp = tempfile::tempdir().unwrap();
    let cache = Cache::open(Some(tmp.path())).unwrap();
    let keys = test_keys();
    let dl = downloader(&cache, SignaturePolicy::InsecureSkip);
    mkstick::os::fcos::fetch(
        &fcos_release(&server, Some(&rel.version)),
        &dl,
        &keys.fedora,
    )
    .unwrap();

    // Without the flag, pinned and cached, the kernel is not trusted yet:
    // with its signature still missing, it is refused.
    let dl = downloader(&cache, SignaturePolicy::Require);
    let e = mkstick::os::fcos::fetch(
        &fcos_release(&server, Some(&rel.version)),
        &dl,
        &keys.fedora,
    )
    .unwrap_err();
    assert!(
        format!("{e:#}").contains("--insecure-skip-signature"),
        "{e:#}"
    );

    // Once the signature is published, the cached file is checked in place.
    server.put(&sig_path, sig);
    server.clear_log();
    let dl = downloader(&cache, SignaturePolicy::Require);
    mkstick::os::fcos::fetch(
        &fcos_release(&server, Some(&rel.version)),
        &dl,
        &keys.fedora,
    )
    .unwrap();
    let paths = server.paths();
    assert!(paths.contains(&sig_path), "{paths:?}");
    assert!(
        !paths.contains(&kernel_path(&rel)),
        "not downloaded again: {paths:?}"
    );
    // ...and from then on it is trusted: no request at all.
    server.clear_log();
    let dl = downloader(&cache, SignaturePolicy::Require);
    mkstick::os::fcos::fetch(
        &fcos_release(&server, Some(&rel.version)),
        &dl,
        &keys.fedora,
    )
    .unwrap();
    assert_eq!(server.requests(), vec![]);

    // A cached file damaged on disk: `fetch` (reverify) notices and
    // downloads it again.
    // So is the ISO, which no OS directory holds (only its efiboot.img).
    let iso_sha = std::fs::read_dir(cache.root.join("blobs/signed"))
        .unwrap()
        .map(|e| e.unwrap())
        .find(|e| {
            std::fs::read_to_string(e.path())
                .unwrap()
                .contains("\nfedora-coreos-43.14.3.0-live.x86_64.iso\n")
        })
        .map(|e| e.file_name().into_string().unwrap())
        .expect("the ISO's signature record");
    for sha in [sha256_hex(&rel.rootfs), iso_sha] {
        let blob = cache.blob_path(&sha.parse().unwrap());
        let mut bytes = std::fs::read(&blob).unwrap();
        bytes[10] ^= 0xff;
        std::fs::write(&blob, &bytes).unwrap();
    }
    server.clear_log();
    let dl = downloader(&cache, SignaturePolicy::Require).with_reverify(true);
    let dir = mkstick::os::fcos::fetch(
        &fcos_release(&server, Some(&rel.version)),
        &dl,
        &keys.fedora,
    )
    .unwrap();
    assert_eq!(std::fs::read(dir.join("rootfs.img")).unwrap(), rel.rootfs);
    let paths = server.paths();
    assert!(paths.contains(&rootfs_path(&rel)), "{paths:?}");
    assert!(
        paths.iter().any(|p| p.ends_with("live.x86_64.iso")),
        "{paths:?}"
    );
    assert!(
        !paths.contains(&kernel_path(&rel)),
        "intact files are kept: {paths:?}"
    );
}

#[test]
fn prune_keeps_the_newest_releases_by_version_and_clears_leftovers() {
    let server = Server::start();
    let tmp = tempfile::tempdir().unwrap();
    let cache = Cache::open(Some(tmp.path())).unwrap();
    let keys = test_keys();
    // Fetched out of order: the newest version is fetched first.
    for v in ["43.20261116.3.0", "43.20261101.3.0", "43.20261020.3.0"] {
        publish_fcos(&server, v, signer());
        let dl = downloader(&cache, SignaturePolicy::Require);
        mkstick::os::fcos::fetch(&fcos_release(&server, Some(v)), &dl, &keys.fedora).unwrap();
    }
    // Leftovers of an interrupted run: a half-made OS directory holding a
    // hard link (which would keep its blob alive), and a partial download.
    let half = cache.root.join("os/fedora-coreos/.partial-abc");
    std::fs::create_dir_all(&half).unwrap();
    let oldest = cache.os_dir("fedora-coreos", "43.20261020.3.0");
    std::fs::hard_link(oldest.join("kernel"), half.join("kernel")).unwrap();
    std::fs::write(cache.root.join("partial/sha256-00.part"), b"half").unwrap();
    let report = cache.prune(2).unwrap();
    assert_eq!(
        report.os_dirs,
        vec!["fedora-coreos 43.20261020.3.0".to_string()]
    );
    assert_eq!(report.partial, 1);
    let left: Vec<String> = cache
        .os_dirs()
        .unwrap()
        .into_iter()
        .map(|o| o.version)
        .collect();
    assert_eq!(left, vec!["43.20261116.3.0", "43.20261101.3.0"]);
    assert!(!cache.root.join("os/fedora-coreos/.partial-abc").exists());
    assert!(
        cache.blobs().unwrap().iter().all(|b| b.used),
        "only used files are left"
    );
    for os in cache.os_dirs().unwrap() {
        OsDir::load(&os.dir).unwrap().verify(|_| {}).unwrap();
    }
    let report = cache.prune(1).unwrap();
    assert_eq!(
        report.os_dirs,
        vec!["fedora-coreos 43.20261101.3.0".to_string()]
    );
}

#[test]
fn metadata_cannot_pass_off_another_cached_file() {
    let server = Server::start();
    let old = publish_fcos(&server, "43.15.3.0", signer());
    let tmp = tempfile::tempdir().unwrap();
    let cache = Cache::open(Some(tmp.path())).unwrap();
    let keys = test_keys();
    let dl = downloader(&cache, SignaturePolicy::Require);
    mkstick::os::fcos::fetch(&fcos_release(&server, None), &dl, &keys.fedora).unwrap();

    // A newer stream document that names the old, cached kernel's sha256 at
    // the new release's location.
    publish_fcos(&server, "43.16.3.0", signer());
    let dl = downloader(&cache, SignaturePolicy::Require);
    let doc = dl
        .get_small("test document", &server.url("/streams/stable.json"))
        .unwrap();
    let mut doc: serde_json::Value = serde_json::from_slice(&doc).unwrap();
    doc["architectures"]["x86_64"]["artifacts"]["metal"]["formats"]["pxe"]["kernel"]["sha256"] =
        serde_json::Value::String(sha256_hex(&old.kernel));
    server.put("/streams/stable.json", serde_json::to_vec(&doc).unwrap());
    let e = mkstick::os::fcos::fetch(&fcos_release(&server, None), &dl, &keys.fedora).unwrap_err();
    let msg = format!("{e:#}");
    assert!(msg.contains("bad signature on kernel"), "{msg}");
    // The old release, whose kernel that really is, is untouched.
    let old_dir = cache.os_dir("fedora-coreos", &old.version);
    OsDir::load(&old_dir).unwrap().verify(|_| {}).unwrap();
    assert!(!cache
        .os_dir("fedora-coreos", "43.16.3.0")
        .join("os.json")
        .exists());
}

#[test]
fn a_cached_file_is_trusted_only_while_its_signing_key_is() {
    let server = Server::start();
    let rel = publish_fcos(&server, "43.17.3.0", signer());
    let tmp = tempfile::tempdir().unwrap();
    let cache = Cache::open(Some(tmp.path())).unwrap();
    let dl = downloader(&cache, SignaturePolicy::Require);
    let pinned = fcos_release(&server, Some(&rel.version));
    mkstick::os::fcos::fetch(&pinned, &dl, &test_keys().fedora).unwrap();

    // A later keyring of the same publisher that no longer holds that key
    // (it was dropped or replaced): the cache is not a silent hit any more.
    server.clear_log();
    let rotated = stranger().keyring("Fedora (test)");
    let dl = downloader(&cache, SignaturePolicy::Require);
    let e = mkstick::os::fcos::fetch(&pinned, &dl, &rotated).unwrap_err();
    assert!(
        format!("{e:#}").contains("not one of Fedora (test)'s"),
        "{e:#}"
    );
    let paths = server.paths();
    assert!(
        paths.contains(&format!("{}.sig", kernel_path(&rel))),
        "{paths:?}"
    );
    assert!(
        !paths.contains(&kernel_path(&rel)),
        "checked in place: {paths:?}"
    );
}

/// An unsigned artifact (as a registry blob or a Kubernetes binary is).
fn unsigned(server: &Server, path: &str, digest: Digest) -> Artifact {
    Artifact {
        name: "blob".into(),
        url: server.url(path),
        digest,
        signature_url: None,
    }
}

fn sha512_hex(bytes: &[u8]) -> String {
    use sha2::Digest as _;
    sha2::Sha512::digest(bytes)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// Run a download that is cut after `cut` bytes on every attempt, so that
/// it gives up and leaves a `.part` of `ATTEMPTS * cut` bytes behind.
fn leave_a_part(server: &Server, cache: &Cache, a: &Artifact, path: &str, cut: usize) -> Vec<u8> {
    server.fault(
        path,
        Fault {
            truncate_at: Some(cut),
            truncations: ATTEMPTS as usize,
            ..Fault::default()
        },
    );
    let blobs = cache_files(cache).0;
    let e = downloader(cache, SignaturePolicy::Require)
        .fetch(a, None)
        .unwrap_err();
    assert!(format!("{e:#}").contains("truncated"), "{e:#}");
    server.fault(path, Fault::default());
    let part = std::fs::read(cache.part_path(&a.digest)).unwrap();
    assert_eq!(part.len(), ATTEMPTS as usize * cut);
    assert_eq!(cache_files(cache).0, blobs, "nothing is cached unchecked");
    part
}

/// A file with no signature is hashed as it is written, not read again:
/// resumed by a second run, its digest covers the prefix the first run
/// left on disk, so a byte changed there is caught, and a right prefix
/// gives the right digest.
#[test]
fn an_unsigned_download_resumed_by_a_later_run_is_hashed_from_its_first_byte() {
    let server = Server::start();
    let body = filler(2_000_000, 31);
    let path = "/blobs/one";
    server.put(path, body.clone());
    let tmp = tempfile::tempdir().unwrap();
    let cache = Cache::open(Some(tmp.path())).unwrap();
    let want = Digest::parse_hex(&sha256_hex(&body)).unwrap();
    let a = unsigned(&server, path, want);

    // A byte of the first run's prefix changes on disk between the runs.
    let mut part = leave_a_part(&server, &cache, &a, path, 200_000);
    assert_eq!(part[..], body[..part.len()]);
    part[1000] ^= 0xff;
    std::fs::write(cache.part_path(&want), &part).unwrap();
    let mut damaged = part.clone();
    damaged.extend_from_slice(&body[part.len()..]);
    server.clear_log();
    let e = downloader(&cache, SignaturePolicy::Require)
        .fetch(&a, None)
        .unwrap_err();
    let msg = format!("{e:#}");
    assert_eq!(server.ranges(path), vec![Some(part.len() as u64)]);
    assert!(msg.contains("sha256 mismatch for blob"), "{msg}");
    assert!(msg.contains(&a.url), "{msg}");
    assert!(msg.contains(&sha256_hex(&body)), "{msg}");
    assert!(
        msg.contains(&format!("the download has {}", sha256_hex(&damaged))),
        "{msg}"
    );
    assert!(!cache.part_path(&want).exists());
    assert_eq!(cache_files(&cache), (0, 0), "nothing is cached");

    // Right bytes, resumed by a second run: admitted.
    leave_a_part(&server, &cache, &a, path, 200_000);
    server.clear_log();
    let dl = downloader(&cache, SignaturePolicy::Require);
    let got = dl.fetch(&a, None).unwrap();
    assert_eq!(server.ranges(path), vec![Some(800_000)]);
    assert_eq!(std::fs::read(&got.path).unwrap(), body);
    assert_eq!(got.sha256.to_string(), sha256_hex(&body));
    assert_eq!(got.size_bytes, 1_200_000, "only the rest was fetched");
    assert_eq!(cache_files(&cache), (1, 0));

    // The same with a sha512 digest (Flatcar's): both are streamed, the
    // file is stored by sha256 and found again by sha512.
    let body = filler(1_000_000, 32);
    let path = "/blobs/two";
    server.put(path, body.clone());
    let want = Digest::parse_hex(&sha512_hex(&body)).unwrap();
    let a = unsigned(&server, path, want);
    leave_a_part(&server, &cache, &a, path, 100_000);
    let got = downloader(&cache, SignaturePolicy::Require)
        .fetch(&a, None)
        .unwrap();
    assert_eq!(std::fs::read(&got.path).unwrap(), body);
    assert_eq!(got.sha256.to_string(), sha256_hex(&body));
    assert_eq!(
        cache.lookup(&want).unwrap().map(|s| s.to_string()),
        Some(sha256_hex(&body))
    );
    let other = Cache::open(Some(&tmp.path().join("other"))).unwrap();
    let mut part = leave_a_part(&server, &other, &a, path, 100_000);
    part[10] ^= 1;
    std::fs::write(other.part_path(&want), &part).unwrap();
    let e = downloader(&other, SignaturePolicy::Require)
        .fetch(&a, None)
        .unwrap_err();
    let msg = format!("{e:#}");
    assert!(msg.contains("sha512 mismatch for blob"), "{msg}");
    assert_eq!(cache_files(&other), (0, 0), "nothing is cached");
}

/// A server that answers a Range request with the whole file (200): the
/// streamed digest starts over with the file, whether the `.part` came from
/// an earlier run (and is not even a prefix) or from a cut attempt.
#[test]
fn a_server_ignoring_range_still_gives_the_right_streamed_digest() {
    let server = Server::start();
    let body = filler(1_500_000, 33);
    let path = "/blobs/whole";
    server.put(path, body.clone());
    let tmp = tempfile::tempdir().unwrap();
    let cache = Cache::open(Some(tmp.path())).unwrap();
    let want = Digest::parse_hex(&sha256_hex(&body)).unwrap();
    let a = unsigned(&server, path, want);

    // A .part from an earlier run, other bytes altogether.
    std::fs::write(cache.part_path(&want), filler(300_000, 99)).unwrap();
    server.fault(
        path,
        Fault {
            ignore_range: true,
            ..Fault::default()
        },
    );
    let got = downloader(&cache, SignaturePolicy::Require)
        .fetch(&a, None)
        .unwrap();
    assert_eq!(server.ranges(path), vec![Some(300_000)]);
    assert_eq!(std::fs::read(&got.path).unwrap(), body);
    assert_eq!(cache_files(&cache), (1, 0));

    // Cut within one run, then the retry's Range is answered with 200.
    let tmp = tempfile::tempdir().unwrap();
    let cache = Cache::open(Some(tmp.path())).unwrap();
    server.fault(
        path,
        Fault {
            ignore_range: true,
            truncate_at: Some(400_000),
            truncations: 1,
            ..Fault::default()
        },
    );
    server.clear_log();
    let got = downloader(&cache, SignaturePolicy::Require)
        .fetch(&a, None)
        .unwrap();
    assert_eq!(server.ranges(path), vec![None, Some(400_000)]);
    assert_eq!(std::fs::read(&got.path).unwrap(), body);
    assert_eq!(cache_files(&cache), (1, 0));
}

/// Bytes this thread has read from files (`rchar` of
/// `/proc/thread-self/io`, which counts read(2) and its kin; a socket read
/// with recv(2), as Rust's `TcpStream` does, goes around it); `None` where
/// the kernel keeps no per-task I/O accounting.
fn thread_read_bytes() -> Option<u64> {
    let io = std::fs::read_to_string("/proc/thread-self/io").ok()?;
    io.lines()
        .find_map(|l| l.strip_prefix("rchar:"))?
        .trim()
        .parse()
        .ok()
}

/// The download runs on the calling thread, so what that thread reads from
/// files is, for a fresh download, next to nothing (the cache's own small
/// files), and for a resumed one the prefix already on disk, once, to hash
/// it. A second pass over the finished file would read all of it again.
#[test]
fn an_unsigned_download_is_not_read_back_after_it_is_written() {
    if thread_read_bytes().is_none() {
        eprintln!("skipped: /proc/thread-self/io is not available");
        return;
    }
    let server = Server::start();
    let size = 8_000_000u64;
    let body = filler(size as usize, 34);
    let path = "/blobs/once";
    server.put(path, body.clone());
    let tmp = tempfile::tempdir().unwrap();
    let cache = Cache::open(Some(tmp.path())).unwrap();
    let a = unsigned(
        &server,
        path,
        Digest::parse_hex(&sha256_hex(&body)).unwrap(),
    );
    let dl = downloader(&cache, SignaturePolicy::Require);
    let before = thread_read_bytes().unwrap();
    let got = dl.fetch(&a, None).unwrap();
    let read = thread_read_bytes().unwrap() - before;
    assert!(
        read < 1 << 20,
        "{read} bytes read from files for a {size}-byte download"
    );
    assert_eq!(std::fs::read(&got.path).unwrap(), body);

    // Resumed by a later run: the prefix is read once, to hash it.
    let tmp = tempfile::tempdir().unwrap();
    let cache = Cache::open(Some(tmp.path())).unwrap();
    let prefix = leave_a_part(&server, &cache, &a, path, 1_000_000).len() as u64;
    let dl = downloader(&cache, SignaturePolicy::Require);
    let before = thread_read_bytes().unwrap();
    let got = dl.fetch(&a, None).unwrap();
    let read = thread_read_bytes().unwrap() - before;
    assert!(
        read >= prefix && read < prefix + (1 << 20),
        "{read} bytes read from files for a {size}-byte download resumed at {prefix}"
    );
    assert_eq!(std::fs::read(&got.path).unwrap(), body);
}
