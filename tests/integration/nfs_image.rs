//! The NFS server's container image on an OS that ships no NFS server
//! (Fedora CoreOS): pinned in the binaries table, pulled from a real
//! registry on 127.0.0.1, laid out on the stick as podman's oci-archive
//! layout, and loaded at boot by the node's own `mkstick-nfs-image` (taken
//! from the stick's Ignition config) into the REAL podman, with no network.
//! Only `mount`, `mountpoint` and `umount` are TEST DOUBLES (this host's
//! kernel cannot mount vfat): the mount double shows the stick's files,
//! read from the built image.

use crate::common::*;
use crate::http::Server;
use crate::images::{TestImage, TestRegistry};
use crate::kubernetes::{doubles, ignition_file, k8s_config, publish_carrying, publish_images};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::Command;

/// os.json of the scratch's fake OS, saying its NFS server is a container.
fn container_nfs_os(s: &Scratch) {
    let path = s.path("os/os.json");
    let json = std::fs::read_to_string(&path).unwrap();
    let json = json.replace(
        "\"network\": \"networkd\"",
        "\"network\": \"networkd\",\n  \"nfs-server\": \"container\"",
    );
    assert!(json.contains("nfs-server"));
    std::fs::write(&path, json).unwrap();
}

/// A scratch with [`k8s_config`] on a fake OS whose NFS server is a
/// container, its table of 1.36.4 doubles listing `images`.
fn container_nfs_scratch(server: &Server, images: &[String]) -> Scratch {
    let s = Scratch::new("");
    container_nfs_os(&s);
    s.write(
        "k8s.toml",
        &publish_carrying(server, "1.36.4", &doubles("1.36.4"), images),
    );
    s.write("mkstick.toml", &k8s_config("os", "k8s.toml"));
    std::fs::create_dir(s.path("apps")).unwrap();
    s.write("apps/hello.yaml", crate::kubernetes::APP);
    s
}

/// A node for the loader: its root (MKSTICK_ROOT) with the files the
/// stick's Ignition config writes for it, the stick's files for the mount
/// double, and a podman store of its own.
struct Node {
    _dir: tempfile::TempDir,
    root: PathBuf,
    doubles: PathBuf,
    /// A directory with `podman`: the real one, on this node's store.
    podman_dir: PathBuf,
    podman: PathBuf,
    store: PathBuf,
}

impl Node {
    fn new(img: &Path, podman: &Path) -> Node {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().join("root");
        let doubles = dir.path().join("doubles");
        let config: mkstick::ignition::Config =
            serde_json::from_slice(&embedded_ignition(img)).unwrap();
        for path in [
            "/etc/mkstick/nfs-image.env",
            "/etc/mkstick/release",
            "/usr/local/bin/mkstick-nfs-image",
        ] {
            let text = ignition_file(&config, path).unwrap_or_else(|| panic!("{path}"));
            let p = root.join(&path[1..]);
            std::fs::create_dir_all(p.parent().unwrap()).unwrap();
            std::fs::write(&p, text).unwrap();
        }
        std::fs::create_dir_all(root.join("dev/disk/by-partlabel")).unwrap();
        std::fs::write(root.join("dev/disk/by-partlabel/MKSTICK"), "").unwrap();
        for (path, bytes) in esp_files(img) {
            let p = doubles.join("stick").join(path);
            std::fs::create_dir_all(p.parent().unwrap()).unwrap();
            std::fs::write(p, bytes).unwrap();
        }
        let store = dir.path().join("store");
        let podman_dir = dir.path().join("bin");
        std::fs::create_dir_all(&podman_dir).unwrap();
        let wrapper = podman_dir.join("podman");
        std::fs::write(
            &wrapper,
            format!(
                "#!/bin/sh\nexec {} --root {} --runroot {} --storage-driver vfs \"$@\"\n",
                podman.display(),
                store.join("root").display(),
                store.join("run").display()
            ),
        )
        .unwrap();
        std::fs::set_permissions(&wrapper, std::fs::Permissions::from_mode(0o755)).unwrap();
        Node {
            _dir: dir,
            root,
            doubles,
            podman: wrapper,
            podman_dir,
            store,
        }
    }

    /// Run the loader; (success, stdout, stderr, the doubles' calls).
    fn load(&self) -> (bool, String, String, String) {
        let _ = std::fs::remove_file(self.doubles.join("calls"));
        let node_doubles =
            Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/node-doubles");
        let path = format!(
            "{}:{}:{}",
            node_doubles.display(),
            self.podman_dir.display(),
            std::env::var("PATH").unwrap_or_default()
        );
        let out = Command::new("bash")
            .arg(self.root.join("usr/local/bin/mkstick-nfs-image"))
            .env("MKSTICK_ROOT", &self.root)
            .env("NODE_DOUBLES", &self.doubles)
            .env("PATH", path)
            // podman keeps a copy of what it loads from stdin here.
            .env("TMPDIR", &self.store)
            .output()
            .unwrap();
        (
            out.status.success(),
            String::from_utf8_lossy(&out.stdout).into_owned(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
            std::fs::read_to_string(self.doubles.join("calls")).unwrap_or_default(),
        )
    }

    /// The real podman on this node's store.
    fn podman(&self, args: &[&str]) -> std::process::Output {
        Command::new(&self.podman)
            .args(args)
            .env("TMPDIR", &self.store)
            .output()
            .unwrap()
    }

    fn stick_file(&self, path: &str) -> PathBuf {
        self.doubles.join("stick").join(path)
    }
}

/// The table pins the NFS image: it is pulled and verified, carried once
/// in podman's layout (not containerd's), described by `plan`, and loaded
/// from the stick into the real podman under its name at its pinned
/// digest, which the quadlet's `Image=` then finds and runs with no
/// registry. A damaged stick is refused.
#[test]
fn the_nfs_server_image_is_carried_pinned_and_loads_into_real_podman_offline() {
    let Some(reg) = TestRegistry::start() else {
        return;
    };
    let Some(podman) = tool("podman") else {
        return;
    };
    let server = Server::start();
    let mut images = publish_images(&reg, "1.36.4");
    // Multi-arch, like quay.io/coreos-assembler/nfs.
    let nfs = TestImage::hello_multi_arch("coreos-assembler/nfs");
    let nfs_ref = reg.push("coreos-assembler/nfs", "test", &nfs);
    images.push(nfs_ref.clone());
    let s = container_nfs_scratch(&server, &images);
    let cache = s.path("cache");
    let env = [("XDG_CACHE_HOME", cache.to_str().unwrap())];

    let plan = ok(s.run_env(&["plan"], &env));
    assert!(
        plan.contains("The NFS server's image is on the stick (mkstick/nfs-image/)")
            && plan.contains(&format!("    {nfs_ref}  ")),
        "{plan}"
    );
    assert!(!plan.contains("NOT PINNED"), "{plan}");
    let json: serde_json::Value =
        serde_json::from_str(&ok(s.run_env(&["plan", "--json"], &env))).unwrap();
    let listed = &json["storage"]["nfs"]["image"];
    assert_eq!(listed["reference"].as_str(), Some(nfs_ref.as_str()));
    assert_eq!(listed["pinned"], serde_json::json!(true));
    // containerd's list is the cluster's alone.
    let k8s: Vec<&str> = json["kubernetes"]["images"]
        .as_array()
        .unwrap()
        .iter()
        .map(|i| i["reference"].as_str().unwrap())
        .collect();
    assert_eq!(k8s.len(), images.len() - 1, "{k8s:?}");
    assert!(!k8s.contains(&nfs_ref.as_str()));

    ok(s.run_env(&["build", "-q"], &env));
    let img = s.path("mkstick.img");
    // inspect --verify hashes every file manifest.json lists, these too.
    let nfs_files = esp_files(&img)
        .iter()
        .filter(|(p, _)| p.starts_with("mkstick/nfs-image/"))
        .count();
    // oci-layout, index.json, and the index, the amd64 manifest, its
    // config and layer: not the arm64 manifest the index also names.
    assert_eq!(nfs_files, 6);
    let verified = ok(s.run_env(&["inspect", "-q", "--verify", "mkstick.img"], &env));
    assert!(verified.contains("verified: all"), "{verified}");
    let index: serde_json::Value =
        serde_json::from_slice(&esp_file(&img, "mkstick/nfs-image/index.json")).unwrap();
    let entries = index["manifests"].as_array().unwrap();
    let nametag = nfs_ref.split_once('@').unwrap().0;
    // One image, named once: podman load takes no other.
    assert_eq!(entries.len(), 1, "{index}");
    assert_eq!(
        entries[0]["digest"].as_str(),
        Some(format!("sha256:{}", nfs.top.digest).as_str())
    );
    assert_eq!(
        entries[0]["annotations"]["org.opencontainers.image.ref.name"].as_str(),
        Some(nametag)
    );
    let containerd: serde_json::Value =
        serde_json::from_slice(&esp_file(&img, "mkstick/images/index.json")).unwrap();
    assert!(
        !containerd.to_string().contains("coreos-assembler/nfs"),
        "{containerd}"
    );
    let manifest: serde_json::Value =
        serde_json::from_slice(&esp_file(&img, "mkstick/manifest.json")).unwrap();
    assert!(
        manifest["images"]
            .as_array()
            .unwrap()
            .iter()
            .any(|i| i["reference"].as_str() == Some(nfs_ref.as_str())),
        "{manifest}"
    );
    // The quadlet runs it by digest and never pulls.
    let config: mkstick::ignition::Config =
        serde_json::from_slice(&embedded_ignition(&img)).unwrap();
    let quadlet = ignition_file(&config, "/etc/containers/systemd/mkstick-nfs.container").unwrap();
    let by_digest = format!(
        "{}@sha256:{}",
        nametag.rsplit_once(':').unwrap().0,
        nfs.top.digest
    );
    assert!(
        quadlet.contains(&format!("\nImage={by_digest}\nPull=never\n")),
        "{quadlet}"
    );

    // The loader: nothing in podman, so the stick is mounted, checked and
    // loaded; the registry is gone.
    drop(reg);
    let node = Node::new(&img, &podman);
    let (ok_, out, err, calls) = node.load();
    assert!(ok_, "{out}\n{err}\n{calls}");
    assert!(
        out.contains(&format!(
            "loaded {nametag} from the stick into podman's store, digest sha256:{} checked",
            nfs.top.digest
        )),
        "{out}"
    );
    assert!(calls.contains("mount -t vfat -o ro"), "{calls}");
    // Named by its tag, and found by the pinned (the index's) digest as
    // the same image. (`.Digest` is the index's on podman 4, the platform
    // manifest's on podman 5: not what the pin is checked by.)
    let inspect = |reference: &str| {
        let o = node.podman(&["image", "inspect", reference]);
        assert!(
            o.status.success(),
            "podman image inspect {reference}: {o:?}"
        );
        serde_json::from_slice::<serde_json::Value>(&o.stdout).unwrap()
    };
    let held = inspect(nametag);
    assert_eq!(inspect(&by_digest)[0]["Id"], held[0]["Id"]);
    let repo_digests = held[0]["RepoDigests"].to_string();
    assert!(
        repo_digests.contains(&format!("@sha256:{}", nfs.top.digest))
            && repo_digests.contains(&format!("@sha256:{}", nfs.manifest.digest)),
        "{repo_digests}"
    );
    // The quadlet's Image= finds it with --pull never (what Pull=never
    // passes): podman makes the container from it with no registry. (This
    // host cannot run one: crun cannot set its rlimits and cgroups here.)
    let create = node.podman(&["create", "--pull", "never", "--network", "none", &by_digest]);
    assert!(
        create.status.success(),
        "podman create {by_digest}: {create:?}"
    );
    let id = String::from_utf8_lossy(&create.stdout).trim().to_string();
    let made = node.podman(&["container", "inspect", &id]);
    let made: serde_json::Value = serde_json::from_slice(&made.stdout).unwrap();
    assert_eq!(made[0]["Image"], held[0]["Id"], "{made}");
    // (podman 4 gives the entrypoint as a string, podman 5 as a list.)
    assert!(
        made[0]["Config"]["Entrypoint"]
            .to_string()
            .contains("\"/hello\""),
        "{made}"
    );
    // Another digest of the same name is not there, and is not pulled.
    let other = format!(
        "{}@sha256:{}",
        nametag.rsplit_once(':').unwrap().0,
        "0".repeat(64)
    );
    assert!(!node
        .podman(&["create", "--pull", "never", "--network", "none", &other])
        .status
        .success());

    // The next start: already there, nothing mounted or loaded.
    let (ok_, out, err, calls) = node.load();
    assert!(
        ok_ && out.contains("is already in podman's store at sha256:"),
        "{out}\n{err}"
    );
    assert!(!calls.contains("mount"), "{calls}");

    // Another image under the name (not at the pin): loaded anyway, and
    // the name then is the pinned image's.
    let node = Node::new(&img, &podman);
    std::fs::create_dir_all(&node.store).unwrap();
    let other = node.store.join("other.tar");
    std::fs::write(&other, crate::images::tar_one("other", b"other\n")).unwrap();
    let imported = node.podman(&["import", other.to_str().unwrap(), nametag]);
    assert!(imported.status.success(), "{imported:?}");
    let (ok_, out, err, _) = node.load();
    assert!(
        ok_ && out.contains(&format!("loaded {nametag} from the stick")),
        "{out}\n{err}"
    );
    let id = |reference: &str| {
        let o = node.podman(&["image", "inspect", reference]);
        serde_json::from_slice::<serde_json::Value>(&o.stdout).unwrap()[0]["Id"].clone()
    };
    assert_eq!(id(nametag), id(&by_digest));

    // A stick whose layout is not the image NFS_IMAGE pins: loaded, then
    // refused.
    let node = Node::new(&img, &podman);
    let env_file = node.root.join("etc/mkstick/nfs-image.env");
    let env_text = std::fs::read_to_string(&env_file).unwrap();
    std::fs::write(
        &env_file,
        env_text.replace(&nfs.top.digest.to_string(), &"0".repeat(64)),
    )
    .unwrap();
    let (ok_, out, err, _) = node.load();
    assert!(!ok_, "{out}");
    assert!(
        err.contains(&format!(
            "after loading, podman holds no {nametag} at the pinned sha256:{}",
            "0".repeat(64)
        )),
        "{err}"
    );

    // A damaged index.json: refused before podman sees it.
    let node = Node::new(&img, &podman);
    let index_path = node.stick_file("mkstick/nfs-image/index.json");
    let mut bytes = std::fs::read(&index_path).unwrap();
    bytes.push(b'\n');
    std::fs::write(&index_path, bytes).unwrap();
    let (ok_, out, err, _) = node.load();
    assert!(!ok_, "{out}");
    assert!(
        err.contains("mkstick/nfs-image/index.json on the stick has sha256")
            && err.contains("write it again (mkstick flash)"),
        "{err}"
    );
    assert!(!node.podman(&["image", "exists", nametag]).status.success());

    // A damaged layer: podman refuses it, and so does the loader.
    let node = Node::new(&img, &podman);
    let layer = node.stick_file(&format!(
        "mkstick/nfs-image/blobs/sha256/{}",
        nfs.layer.digest
    ));
    let mut bytes = std::fs::read(&layer).unwrap();
    let last = bytes.len() - 1;
    bytes[last] ^= 0xff;
    std::fs::write(&layer, bytes).unwrap();
    let (ok_, out, err, _) = node.load();
    assert!(!ok_, "{out}");
    assert!(
        err.contains("loading the NFS server's image from the stick failed"),
        "{err}"
    );
    assert!(!node.podman(&["image", "exists", nametag]).status.success());
}

/// A binaries table that lists images but not the NFS server's, for an OS
/// whose NFS server is a container, is refused before anything is
/// downloaded, naming the table.
#[test]
fn a_table_without_the_nfs_image_is_refused_where_the_os_needs_it() {
    let server = Server::start();
    let images: Vec<String> = mkstick::os::kubernetes::KUBEADM_IMAGE_PINS
        .iter()
        .map(|s| s.to_string())
        .chain(
            mkstick::os::kubernetes::ADDON_IMAGES
                .iter()
                .map(|(_, r)| r.to_string()),
        )
        .collect();
    let s = container_nfs_scratch(&server, &images);
    let cache = s.path("cache");
    let env = [("XDG_CACHE_HOME", cache.to_str().unwrap())];
    for cmd in ["plan", "build"] {
        let e = fails(s.run_env(&[cmd], &env));
        assert!(
            e.contains("k8s.toml: `images` lists no `nfs` image, which this OS needs")
                && e.contains("quay.io/coreos-assembler/nfs:TAG@sha256:DIGEST"),
            "{e}"
        );
    }
    assert!(server.requests().is_empty(), "nothing was downloaded");
    assert!(!s.path("mkstick.img").exists());
}

/// A stick with `[storage]` alone (no binaries table) pins the NFS
/// server's image in mkstick.toml: carried pinned, and a rebuild from the
/// cache needs no registry. A reference without a digest is refused at
/// its line before anything is downloaded.
#[test]
fn storage_nfs_image_pins_it_and_a_cached_rebuild_needs_no_registry() {
    let Some(reg) = TestRegistry::start() else {
        return;
    };
    let nfs = TestImage::hello_multi_arch("coreos-assembler/nfs");
    let nfs_ref = reg.push("coreos-assembler/nfs", "test", &nfs);
    let config = |image: &str| {
        format!(
            "{}\n[storage]\ndrives = [\"/dev/disk/by-id/virtio-d0\"]\nnfs-image = \"{image}\"\n",
            minimal_config()
        )
    };
    let s = Scratch::new(&config(&nfs_ref));
    container_nfs_os(&s);
    let cache = s.path("cache");
    let env = [("XDG_CACHE_HOME", cache.to_str().unwrap())];

    let plan = ok(s.run_env(&["plan"], &env));
    assert!(
        plan.contains(&format!("    {nfs_ref}  ")) && !plan.contains("NOT PINNED"),
        "{plan}"
    );
    let json: serde_json::Value =
        serde_json::from_str(&ok(s.run_env(&["plan", "--json"], &env))).unwrap();
    assert_eq!(
        json["storage"]["nfs"]["image"]["named-in"].as_str(),
        Some("mkstick.toml:10")
    );
    ok(s.run_env(&["build", "-q"], &env));
    let first = std::fs::read(s.path("mkstick.img")).unwrap();
    let index: serde_json::Value = serde_json::from_slice(&esp_file(
        &s.path("mkstick.img"),
        "mkstick/nfs-image/index.json",
    ))
    .unwrap();
    assert_eq!(
        index["manifests"][0]["digest"].as_str(),
        Some(format!("sha256:{}", nfs.top.digest).as_str())
    );

    // The registry is gone: the cache has every blob, and the same stick
    // comes out.
    drop(reg);
    ok(s.run_env(&["build", "-q", "--force"], &env));
    assert_eq!(std::fs::read(s.path("mkstick.img")).unwrap(), first);

    // Not pinned: refused at its line, before anything is fetched.
    let nametag = nfs_ref.split_once('@').unwrap().0;
    s.write("mkstick.toml", &config(nametag));
    std::fs::remove_dir_all(&cache).unwrap();
    let e = fails(s.run_env(&["plan"], &env));
    assert!(
        e.contains("mkstick.toml:10:")
            && e.contains(&format!("`{nametag}` is not pinned"))
            && e.contains("NAME:TAG@sha256:DIGEST"),
        "{e}"
    );
    assert!(!cache.exists(), "nothing was fetched");
    let by_digest = format!(
        "{}@sha256:{}",
        nametag.rsplit_once(':').unwrap().0,
        nfs.top.digest
    );
    s.write("mkstick.toml", &config(&by_digest));
    let e = fails(s.run_env(&["plan"], &env));
    assert!(
        e.contains("mkstick.toml:10:") && e.contains(&format!("`{by_digest}` names no tag")),
        "{e}"
    );
    assert!(!cache.exists(), "nothing was fetched");

    // An OS with its own NFS server: the pin is not used, and plan says so.
    s.write("mkstick.toml", &config(&nfs_ref));
    fake_os(&s.path("os"), Efi::Dir);
    let plan = ok(s.run_env(&["plan"], &env));
    assert!(
        plan.contains(&format!(
            "[storage] nfs-image (mkstick.toml:10, {nfs_ref}) is not used: this OS has its own NFS server."
        )) && !plan.contains("The NFS server's image is on the stick"),
        "{plan}"
    );
}
