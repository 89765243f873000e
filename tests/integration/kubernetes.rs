//! First-boot Kubernetes on the stick, without booting: the binaries a
//! table names are downloaded from a 127.0.0.1 server, verified and put on
//! the stick; the kubeadm config, the units and the manifests land in the
//! Ignition config; `plan` prints the URLs; and every manifest passes
//! `kubernetes-validate --strict` for the Kubernetes minor on the stick.
//!
//! The "binaries" here are the TEST DOUBLES of tests/fixtures/k8s-doubles/
//! (the boot tests run them); the real kubeadm and kubelet need
//! registry.k8s.io, which these machines cannot reach.

use crate::common::*;
use crate::http::Server;
use crate::images::{TestImage, TestRegistry};
use std::path::Path;
use std::process::Command;

const DOUBLES: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures/k8s-doubles");

/// A gzip'd ustar archive of `(name, mode, bytes)`, made the same way on
/// every machine (no dates, no owners), like the published tarballs.
pub fn tar_gz(entries: &[(&str, u32, &[u8])]) -> Vec<u8> {
    let mut tar = Vec::new();
    for (name, mode, data) in entries {
        let mut h = [0u8; 512];
        h[..name.len()].copy_from_slice(name.as_bytes());
        let octal = |field: &mut [u8], v: u64| {
            let s = format!("{v:0w$o}\0", w = field.len() - 1);
            field.copy_from_slice(s.as_bytes());
        };
        octal(&mut h[100..108], u64::from(*mode));
        octal(&mut h[108..116], 0);
        octal(&mut h[116..124], 0);
        octal(&mut h[124..136], data.len() as u64);
        octal(&mut h[136..148], 0);
        h[156] = b'0';
        h[257..263].copy_from_slice(b"ustar\0");
        h[263..265].copy_from_slice(b"00");
        h[148..156].copy_from_slice(b"        ");
        let sum: u32 = h.iter().map(|&b| u32::from(b)).sum();
        let s = format!("{sum:06o}\0 ");
        h[148..156].copy_from_slice(s.as_bytes());
        tar.extend_from_slice(&h);
        tar.extend_from_slice(data);
        tar.resize(tar.len().div_ceil(512) * 512, 0);
    }
    tar.resize(tar.len() + 1024, 0);
    let mut gz = flate2::GzBuilder::new()
        .mtime(0)
        .write(Vec::new(), flate2::Compression::best());
    std::io::Write::write_all(&mut gz, &tar).unwrap();
    gz.finish().unwrap()
}

/// The five files of a Kubernetes release, as TEST DOUBLES of `version`.
pub fn doubles(version: &str) -> Vec<(&'static str, Vec<u8>)> {
    let read = |name: &str| std::fs::read_to_string(Path::new(DOUBLES).join(name)).unwrap();
    let common = read("common.sh");
    let script = |name: &str| {
        read(name)
            .replace("@VERSION@", version)
            .replace("@COMMON@", &common)
            .into_bytes()
    };
    let stub = read("stub").into_bytes();
    vec![
        ("kubeadm", script("kubeadm")),
        ("kubelet", script("kubelet")),
        ("kubectl", script("kubectl")),
        ("crictl", tar_gz(&[("crictl", 0o755, &stub)])),
        (
            "cni-plugins",
            tar_gz(&[
                ("./bridge", 0o755, &stub),
                ("./host-local", 0o755, &stub),
                ("./loopback", 0o755, &stub),
                ("./portmap", 0o755, &stub),
            ]),
        ),
    ]
}

/// Serve a release's files and return a binaries table naming them.
pub fn publish(server: &Server, version: &str, files: &[(&str, Vec<u8>)]) -> String {
    publish_carrying(server, version, files, &[])
}

/// [`publish`], with the table listing `images` (pinned references).
pub fn publish_carrying(
    server: &Server,
    version: &str,
    files: &[(&str, Vec<u8>)],
    images: &[String],
) -> String {
    let mut table = format!(
        "# Kubernetes {version}: TEST DOUBLES served by the test\nkubernetes = \"{version}\"\narch = \"amd64\"\n"
    );
    if !images.is_empty() {
        table.push_str("images = [\n");
        for i in images {
            table.push_str(&format!("  \"{i}\",\n"));
        }
        table.push_str("]\n");
    }
    for (name, bytes) in files {
        let path = format!("/k8s/v{version}/{name}");
        server.put(&path, bytes.clone());
        table.push_str(&format!(
            "\n[{name}]\nurl = \"{}{path}\"\nsha256 = \"{}\"\n",
            server.base,
            sha256_hex(bytes)
        ));
    }
    table
}

/// Push a hello TEST image (tests/integration/images.rs) for every image
/// a stick of Kubernetes `version` carries, under the names a mirror would
/// use: kubeadm's under `k8s/`, the addons' under `addons/`. Each image is
/// its own (its config names it), and all share one layer. Returns the
/// pinned references, for the table's `images`.
pub fn publish_images(reg: &TestRegistry, version: &str) -> Vec<String> {
    use mkstick::os::kubernetes::{ADDON_IMAGES, KUBEADM_IMAGES};
    KUBEADM_IMAGES
        .iter()
        .map(|role| {
            let (repo, tag) = match *role {
                "coredns" => ("k8s/coredns/coredns".to_string(), "v1.14.2".to_string()),
                "etcd" => ("k8s/etcd".to_string(), "3.6.8-0".to_string()),
                "pause" => ("k8s/pause".to_string(), "3.10.2".to_string()),
                r => (format!("k8s/{r}"), format!("v{version}")),
            };
            // The kube-* images of each version differ, as real ones do.
            reg.push(&repo, &tag, &TestImage::hello(&format!("{repo}:{tag}")))
        })
        .chain(ADDON_IMAGES.iter().map(|(role, _)| {
            let repo = format!("addons/{role}");
            reg.push(&repo, "test", &TestImage::hello(&repo))
        }))
        .collect()
}

/// A Deployment of `image`, whose `image:` is on line 17.
pub fn web_app(image: &str) -> String {
    format!(
        "apiVersion: apps/v1\nkind: Deployment\nmetadata:\n  name: web\n  namespace: default\nspec:\n  selector:\n    matchLabels:\n      app: web\n  template:\n    metadata:\n      labels:\n        app: web\n    spec:\n      containers:\n        - name: web\n          image: {image}\n"
    )
}

pub const APP: &str = "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: hello\n  namespace: default\ndata:\n  greeting: hi\n";

/// A config with [storage], [kubernetes] (a binaries table), [ingress],
/// [nfs] and one extra manifest.
pub fn k8s_config(os: &str, table: &str) -> String {
    format!(
        "[node]\nhostname = \"kube1\"\nssh-authorized-keys = [\"{KEY}\"]\n\n[os]\npath = \"{os}\"\n\n\
[storage]\ndrives = [\"/dev/disk/by-id/virtio-d0\"]\n\n\
[kubernetes]\nbinaries = \"{table}\"\nadvertise-address = \"192.168.1.10\"\n\n\
[ingress]\nhttp-port = 8080\nhttps-port = 8443\n\n\
[nfs]\nstorage-class = \"shared\"\n\n\
[extra]\nmanifests = [\"apps\"]\n"
    )
}

pub fn ignition_file(config: &mkstick::ignition::Config, path: &str) -> Option<String> {
    config
        .storage
        .files
        .iter()
        .find(|f| f.path == path)
        .map(|f| {
            let url = &f.contents.as_ref().unwrap().source;
            String::from_utf8(mkstick::ignition::decode_data_url(url).unwrap()).unwrap()
        })
}

/// Run `kubernetes-validate --strict` for `version`'s minor on every file.
pub fn kubernetes_validate(version: &str, files: &[(String, String)]) {
    let Some(tool) = tool("kubernetes-validate") else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let mut paths = Vec::new();
    for (i, (name, text)) in files.iter().enumerate() {
        let p = dir
            .path()
            .join(format!("{i:02}-{}", name.rsplit('/').next().unwrap()));
        std::fs::write(&p, text).unwrap();
        paths.push(p);
    }
    let o = Command::new(tool)
        .args(["--strict", "-k", version])
        .args(&paths)
        .output()
        .unwrap();
    let out = format!(
        "{}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    );
    assert!(o.status.success(), "kubernetes-validate failed:\n{out}");
    assert!(!out.contains("ERROR"), "{out}");
    // Every object was checked against the schemas, none skipped.
    let passed = out.matches("passed").count();
    let objects: usize = files
        .iter()
        .map(|(_, t)| t.matches("\nkind: ").count() + usize::from(t.starts_with("kind: ")))
        .sum();
    assert_eq!(passed, objects, "{out}");
}

/// A scratch directory with [`k8s_config`], its table of 1.36.4 doubles
/// served by `server`, and `apps/hello.yaml`.
fn k8s_scratch(server: &Server, files: &[(&str, Vec<u8>)]) -> Scratch {
    let s = Scratch::new("");
    s.write("k8s.toml", &publish(server, "1.36.4", files));
    s.write("mkstick.toml", &k8s_config("os", "k8s.toml"));
    std::fs::create_dir(s.path("apps")).unwrap();
    s.write("apps/hello.yaml", APP);
    s
}

#[test]
fn the_stick_carries_verified_binaries_the_kubeadm_config_units_and_manifests() {
    let server = Server::start();
    let files = doubles("1.36.4");
    let s = k8s_scratch(&server, &files);
    let cache = s.path("cache");
    let env = [("XDG_CACHE_HOME", cache.to_str().unwrap())];

    let plan = ok(s.run_env(&["plan"], &env));
    for want in [
        "Kubernetes 1.36.4: a single-node cluster \"mkstick\"",
        "API:        https://192.168.1.10:6443",
        "Ingress:    http://192.168.1.10:8080/",
        "https://192.168.1.10:8443/",
        "StorageClass \"shared\", the default (ReadWriteMany)",
        "kubeconfig: ssh core@192.168.1.10 sudo cat /etc/kubernetes/admin.conf",
        "a cluster at 1.35.x, or an older 1.36 patch: kubeadm upgrade apply v1.36.4",
        "apps/hello.yaml (1 object)",
    ] {
        assert!(plan.contains(want), "{want:?} in:\n{plan}");
    }
    // plan downloaded them once; build reuses the cache.
    server.clear_log();
    ok(s.run_env(&["build", "-q"], &env));
    assert_eq!(server.requests(), vec![]);

    let img = s.path("mkstick.img");
    let manifest: serde_json::Value =
        serde_json::from_slice(&esp_file(&img, "mkstick/manifest.json")).unwrap();
    for (name, bytes) in &files {
        let path = mkstick::os::kubernetes::stick_path(name);
        assert_eq!(&esp_file(&img, &path), bytes, "{path}");
        assert_eq!(
            manifest["files"][&path]["sha256"].as_str(),
            Some(sha256_hex(bytes).as_str()),
            "{path}"
        );
    }
    let ign = embedded_ignition(&img);
    ignition_validate(&ign);
    let config: mkstick::ignition::Config = serde_json::from_slice(&ign).unwrap();
    let unit = |name: &str| {
        config
            .systemd
            .units
            .iter()
            .find(|u| u.name == name)
            .unwrap_or_else(|| panic!("{name}"))
    };
    for u in [
        "mkstick-kubernetes-install.service",
        "mkstick-kubeadm.service",
        "mkstick-addons.service",
    ] {
        assert_eq!(unit(u).enabled, Some(true), "{u}");
    }
    // The kubelet starts when mkstick-kubeadm has decided, never on its own.
    assert_eq!(unit("kubelet.service").enabled, Some(false));
    let kubeadm = unit("mkstick-kubeadm.service").contents.clone().unwrap();
    assert!(
        kubeadm.contains("After=mkstick-kubernetes-install.service containerd.service etc-kubernetes.mount var-lib-containerd.mount var-lib-etcd.mount var-lib-kubelet.mount\n"),
        "{kubeadm}"
    );
    let install = unit("mkstick-kubernetes-install.service")
        .contents
        .clone()
        .unwrap();
    assert!(
        install.contains("After=dev-disk-by\\x2dpartlabel-MKSTICK.device\n"),
        "{install}"
    );
    let env_file = ignition_file(&config, "/etc/mkstick/kubernetes.env").unwrap();
    assert!(
        env_file.contains("KUBERNETES_VERSION=1.36.4\n"),
        "{env_file}"
    );
    assert!(env_file.contains("STICK_LABEL=MKSTICK\n"), "{env_file}");

    let kubeadm_yaml = ignition_file(&config, "/etc/mkstick/kubeadm.yaml").unwrap();
    let parsed = mkstick::k8s::kubeadm::KubeadmConfig::from_yaml(&kubeadm_yaml).unwrap();
    assert_eq!(parsed.cluster.kubernetes_version, "v1.36.4");
    assert!(parsed.init.node_registration.taints.is_empty());
    assert_eq!(
        parsed.cluster.api_server.cert_sans,
        ["kube1", "192.168.1.10"]
    );
    assert_eq!(parsed.kubelet.cgroup_driver, "systemd");
    assert_eq!(
        config
            .storage
            .files
            .iter()
            .find(|f| f.path == "/etc/mkstick/kubeadm.yaml")
            .unwrap()
            .mode,
        Some(0o600)
    );
    // The NFS provisioner mounts the export from the node itself.
    let exports = ignition_file(&config, "/etc/exports.d/mkstick.exports")
        .or_else(|| ignition_file(&config, "/etc/mkstick/nfs.exports"))
        .unwrap();
    assert!(exports.contains("127.0.0.1("), "{exports}");

    // Every manifest, in the order the addons unit applies them.
    let manifests: Vec<(String, String)> = config
        .storage
        .files
        .iter()
        .filter(|f| {
            f.path.starts_with("/etc/mkstick/manifests/")
                || f.path.starts_with("/etc/mkstick/examples/")
        })
        .map(|f| (f.path.clone(), ignition_file(&config, &f.path).unwrap()))
        .collect();
    let names: Vec<&str> = manifests.iter().map(|(p, _)| p.as_str()).collect();
    assert_eq!(
        names,
        [
            "/etc/mkstick/examples/whoami.yaml",
            "/etc/mkstick/manifests/20-ingress-traefik.yaml",
            "/etc/mkstick/manifests/30-nfs-csi-driver-nfs.yaml",
            "/etc/mkstick/manifests/31-nfs-storageclass.yaml",
            "/etc/mkstick/manifests/50-extra-0001-hello.yaml",
        ]
    );
    for (path, text) in &manifests {
        assert!(!text.contains("{{"), "{path} has an unfilled placeholder");
        for line in text
            .lines()
            .filter(|l| l.trim_start().starts_with("image:"))
        {
            let image = line.trim_start().trim_start_matches("image:").trim();
            let (name, digest) = image.split_once('@').unwrap_or((image, ""));
            assert!(
                name.rsplit('/').next().unwrap().contains(':')
                    && digest.len() == 71
                    && digest.starts_with("sha256:"),
                "{path}: {image} is not pinned by tag and digest"
            );
        }
    }
    let traefik = &manifests[1].1;
    assert!(traefik.contains("hostPort: 8080") && traefik.contains("hostPort: 8443"));
    let nfs = &manifests[3].1;
    for want in [
        "name: \"shared\"",
        "is-default-class: \"true\"",
        "server: \"127.0.0.1\"",
        "share: \"/\"",
        "onDelete: \"archive\"",
        "reclaimPolicy: \"Delete\"",
    ] {
        assert!(nfs.contains(want), "{want}");
    }
    assert!(manifests[0].1.contains("ReadWriteMany"));
    assert!(manifests[0].1.contains("storageClassName: \"shared\""));
    kubernetes_validate("1.36.4", &manifests);

    let cni = ignition_file(&config, "/etc/mkstick/cni/10-mkstick.conflist").unwrap();
    let cni: serde_json::Value = serde_json::from_str(&cni).unwrap();
    assert_eq!(
        cni["plugins"][0]["ipam"]["ranges"][0][0]["subnet"],
        "10.244.0.0/16"
    );
    let types: Vec<&str> = cni["plugins"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["type"].as_str().unwrap())
        .collect();
    assert_eq!(types, ["bridge", "portmap"]);
}

#[test]
fn mistakes_are_reported_before_anything_is_downloaded() {
    let server = Server::start();
    let s = Scratch::new("");
    s.write("k8s.toml", &publish(&server, "1.36.4", &doubles("1.36.4")));
    s.write("ok.yaml", APP);
    s.write(
        "bad.yaml",
        "apiVersion: v1\nkind: ConfigMap\n---\nnot: kubernetes\n",
    );
    let cache = s.path("cache");
    let env = [("XDG_CACHE_HOME", cache.to_str().unwrap())];
    let base = k8s_config("os", "k8s.toml").replace("[\"apps\"]", "[\"ok.yaml\"]");
    for (from, to, want) in [
        (
            "http-port = 8080",
            "http-port = 6443",
            "mkstick.toml:16:13: port 6443 is taken on the node by the Kubernetes API server",
        ),
        ("https-port = 8443", "https-port = 30443", "NodePort range"),
        (
            "advertise-address = \"192.168.1.10\"",
            "advertise-address = \"10.244.3.4\"",
            "inside pod-cidr",
        ),
        (
            "binaries = \"k8s.toml\"",
            "version = \"1.35.2\"",
            "pins the binaries of Kubernetes 1.36.4 only",
        ),
        (
            "[\"ok.yaml\"]",
            "[\"bad.yaml\"]",
            "bad.yaml:3:1: document 2 is not a Kubernetes object",
        ),
    ] {
        // Each case changes one line of a good config.
        assert!(base.contains(from), "{from}");
        s.write("mkstick.toml", &base.replace(from, to));
        let e = fails(s.run_env(&["check"], &env));
        assert!(e.contains(want), "{want:?} in {e}");
    }
    assert_eq!(server.requests(), vec![], "nothing was fetched");
    // The good config passes its checks, and only then downloads. Its
    // table lists no images, so the stick is not air-gap complete: check
    // says where the server would need a registry, and fails.
    s.write("mkstick.toml", &base);
    let e = fails(s.run_env(&["check"], &env));
    assert_eq!(server.requests().len(), 5);
    for want in [
        "the stick is not air-gap complete",
        "mkstick's /etc/mkstick/manifests/20-ingress-traefik.yaml:155: docker.io/library/traefik:v3.7.13@sha256:",
        "mkstick's /etc/mkstick/manifests/30-nfs-csi-driver-nfs.yaml:209: registry.k8s.io/sig-storage/csi-provisioner:v6.3.0@sha256:",
        "the binaries table lists no `images`",
    ] {
        assert!(e.contains(want), "{want:?} in {e}");
    }
    // The user's manifests: a warning, and an error with --strict.
    s.write("web.yaml", &web_app("docker.io/library/nginx:1.27"));
    s.write(
        "mkstick.toml",
        &base.replace("[\"ok.yaml\"]", "[\"web.yaml\"]"),
    );
    let user = "./web.yaml:17: docker.io/library/nginx:1.27: the binaries table lists no `images`";
    let e = fails(s.run_env(&["check"], &env));
    let (warnings, errors) = e.split_once("the stick is not air-gap complete").unwrap();
    assert!(warnings.contains(&format!("warning: {user}")), "{e}");
    assert!(!errors.contains("web.yaml"), "{e}");
    let e = fails(s.run_env(&["check", "--strict"], &env));
    let (_, errors) = e.split_once("the stick is not air-gap complete").unwrap();
    assert!(errors.contains(user), "{e}");
    // A cluster bound to whatever DHCP gives at its first boot: a warning,
    // at [kubernetes].
    let dhcp = base.replace("advertise-address = \"192.168.1.10\"\n", "");
    assert_ne!(dhcp, base);
    s.write("mkstick.toml", &dhcp);
    let e = fails(s.run_env(&["check"], &env));
    let line = dhcp.lines().position(|l| l == "[kubernetes]").unwrap() + 1;
    assert!(
        e.contains(&format!("warning: mkstick.toml:{line}:1: [kubernetes] is set, but the server gets its address by DHCP and no advertise-address is given")),
        "{e}"
    );
    // [network]'s static address is the advertise address: no warning.
    s.write(
        "mkstick.toml",
        &format!("{dhcp}\n[network]\nmac = \"52:54:00:12:34:56\"\naddress = \"192.168.1.10/24\"\n"),
    );
    let e = fails(s.run_env(&["check"], &env));
    assert!(!e.contains("gets its address by DHCP"), "{e}");
    assert!(e.contains("the stick is not air-gap complete"), "{e}");
}

/// A pinned `plan`, `build` and readable copies of the rendered Kubernetes
/// files, like tests/golden's cases (MKSTICK_BLESS=1 regenerates).
#[test]
fn golden_kubernetes() {
    let case = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/golden/kubernetes");
    let server = Server::start();
    let s = k8s_scratch(&server, &doubles("1.36.4"));
    let cache = s.path("cache");
    let env = [("XDG_CACHE_HOME", cache.to_str().unwrap())];
    let plan = ok(s.run_env(&["plan"], &env));
    crate::golden::check_golden(&case, "plan.txt", plan.as_bytes());
    ok(s.run_env(&["build", "-q"], &env));
    let ign = embedded_ignition(&s.path("mkstick.img"));
    let config: mkstick::ignition::Config = serde_json::from_slice(&ign).unwrap();
    crate::golden::check_rendered(&case, &config);
}

/// A table that lists images: `plan` lists each, the build pulls each by
/// its pin into the cache and lays them out once on the stick, and kubeadm,
/// containerd and the manifests name the carried images. A cached rebuild
/// needs no registry; a wrong pin fails the build, naming the image, the
/// table and both digests, and leaves the old image as it was.
#[test]
fn a_table_that_lists_images_carries_them_pinned_verified_and_stored_once() {
    let Some(reg) = TestRegistry::start() else {
        return;
    };
    let server = Server::start();
    let files = doubles("1.36.4");
    let images = publish_images(&reg, "1.36.4");
    let s = k8s_scratch(&server, &files);
    s.write(
        "k8s.toml",
        &publish_carrying(&server, "1.36.4", &files, &images),
    );
    // The user's own app, named by tag only: resolved now and carried.
    let app = reg.push("apps/web", "1.0", &TestImage::hello("apps/web"));
    let app_tag = app.split_once('@').unwrap().0.to_string();
    s.write("apps/web.yaml", &web_app(&app_tag));
    let cache = s.path("cache");
    let env = [("XDG_CACHE_HOME", cache.to_str().unwrap())];

    let plan = ok(s.run_env(&["plan"], &env));
    assert!(
        plan.contains("Container images on the stick (mkstick/images/, 14 in all"),
        "{plan}"
    );
    assert!(
        plan.contains(&format!("    {app}  "))
            && plan.contains("NOT PINNED: ./apps/web.yaml:17 names a tag only"),
        "{plan}"
    );
    let json: serde_json::Value =
        serde_json::from_str(&ok(s.run_env(&["plan", "--json"], &env))).unwrap();
    let listed = json["kubernetes"]["images"].as_array().unwrap();
    assert_eq!(listed.len(), 14);
    let unpinned: Vec<&serde_json::Value> = listed
        .iter()
        .filter(|i| i["pinned"] == serde_json::json!(false))
        .collect();
    assert_eq!(unpinned.len(), 1, "{listed:?}");
    assert_eq!(unpinned[0]["reference"].as_str(), Some(app.as_str()));
    assert_eq!(unpinned[0]["named-in"].as_str(), Some("./apps/web.yaml:17"));
    // Every image an applied manifest names is on the stick.
    ok(s.run_env(&["check", "--strict"], &env));
    // Carried, but pulled anyway at every start: a warning, an error with
    // --strict.
    s.write(
        "apps/web.yaml",
        &format!("{}          imagePullPolicy: Always\n", web_app(&app_tag)),
    );
    let always = "./apps/web.yaml:17: ".to_string() + &app_tag + ": imagePullPolicy: Always";
    let o = s.run_env(&["check"], &env);
    assert!(
        o.status.success() && stderr(&o).contains(&format!("warning: {always}")),
        "{}",
        stderr(&o)
    );
    let e = fails(s.run_env(&["check", "--strict"], &env));
    assert!(
        e.contains("not air-gap complete") && e.contains(&always),
        "{e}"
    );
    s.write("apps/web.yaml", &web_app(&app_tag));
    let mut images = images;
    images.push(app.clone());
    let listed: Vec<&str> = plan
        .lines()
        .filter_map(|l| l.trim().split_once("  ").map(|(r, _)| r))
        .filter(|r| r.contains("@sha256:"))
        .collect();
    let mut sorted = images.clone();
    sorted.sort();
    assert_eq!(listed, sorted, "one line per image, sorted:\n{plan}");

    ok(s.run_env(&["build", "-q"], &env));
    let img = s.path("mkstick.img");
    let manifest: serde_json::Value =
        serde_json::from_slice(&esp_file(&img, "mkstick/manifest.json")).unwrap();
    let on_stick: Vec<(String, Vec<u8>)> = esp_files(&img)
        .into_iter()
        .filter(|(p, _)| p.starts_with("mkstick/images/"))
        .collect();
    let mut blobs = 0;
    for (path, bytes) in &on_stick {
        assert_eq!(
            manifest["files"][path]["sha256"].as_str(),
            Some(sha256_hex(bytes).as_str()),
            "{path} is in manifest.json"
        );
        if let Some(hex) = path.strip_prefix("mkstick/images/blobs/sha256/") {
            assert_eq!(hex, sha256_hex(bytes), "a blob is named by its sha256");
            blobs += 1;
        }
    }
    // 14 manifests and 14 configs, and the one layer they all share.
    assert_eq!(
        blobs,
        29,
        "{:?}",
        on_stick.iter().map(|f| &f.0).collect::<Vec<_>>()
    );
    let index: serde_json::Value =
        serde_json::from_slice(&esp_file(&img, "mkstick/images/index.json")).unwrap();
    let mut named: Vec<(String, String)> = index["manifests"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| {
            (
                m["annotations"]["io.containerd.image.name"]
                    .as_str()
                    .unwrap()
                    .to_string(),
                m["digest"].as_str().unwrap().to_string(),
            )
        })
        .collect();
    named.sort();
    // Each image by tag and by digest, both pointing at the pinned digest.
    let mut want: Vec<(String, String)> = images
        .iter()
        .flat_map(|i| {
            let (tagged, digest) = i.split_once('@').unwrap();
            let name = tagged.rsplit_once(':').unwrap().0;
            [
                (tagged.to_string(), digest.to_string()),
                (format!("{name}@{digest}"), digest.to_string()),
            ]
        })
        .collect();
    want.sort();
    assert_eq!(named, want);

    // The node is told to import them, and kubeadm, containerd and the
    // manifests name them.
    let config: mkstick::ignition::Config =
        serde_json::from_slice(&embedded_ignition(&img)).unwrap();
    let file = |p: &str| ignition_file(&config, p).unwrap_or_else(|| panic!("{p}"));
    let env_file = file("/etc/mkstick/kubernetes.env");
    assert!(
        env_file.contains(&format!("\nIMAGES=\"{}\"\n", sorted.join(" "))),
        "{env_file}"
    );
    let addr = reg.addr();
    let kubeadm = file("/etc/mkstick/kubeadm.yaml");
    for line in [
        format!("\nimageRepository: {addr}/k8s\n"),
        format!("\ndns:\n  imageRepository: {addr}/k8s/coredns\n  imageTag: v1.14.2\n"),
        format!("\netcd:\n  local:\n    imageRepository: {addr}/k8s\n    imageTag: 3.6.8-0\n"),
    ] {
        assert!(kubeadm.contains(&line), "{line:?} in\n{kubeadm}");
    }
    let containerd = file("/etc/containerd/config.toml");
    assert!(
        containerd.contains(&format!("sandbox_image = \"{addr}/k8s/pause:3.10.2\"")),
        "{containerd}"
    );
    let traefik = file("/etc/mkstick/manifests/20-ingress-traefik.yaml");
    let pinned = images
        .iter()
        .find(|i| i.contains("/addons/traefik:"))
        .unwrap();
    assert!(traefik.contains(&format!("image: {pinned}\n")), "{traefik}");

    // inspect --verify reads every image file against manifest.json: one
    // changed byte in a config blob is found and named.
    ok(s.run(&["inspect", "-q", "--verify", "mkstick.img"]));
    let mut bytes = std::fs::read(&img).unwrap();
    let label = b"\"mkstick.test.name\":\"k8s/etcd:3.6.8-0\"";
    let at = bytes
        .windows(label.len())
        .position(|w| w == label)
        .expect("etcd's config blob is on the stick");
    bytes[at + label.len() - 2] ^= 1;
    std::fs::write(s.path("damaged.img"), &bytes).unwrap();
    drop(bytes);
    let e = fails(s.run(&["inspect", "-q", "--verify", "damaged.img"]));
    assert!(e.contains("mkstick/images/blobs/sha256/"), "{e}");

    // Offline from the cache: the registry is gone. A tag alone cannot be
    // resolved then; pinned, the app builds from the cache.
    drop(reg);
    let e = fails(s.run_env(&["build", "-q", "--force"], &env));
    assert!(
        e.contains(&format!("the image {app_tag} is named by its tag alone"))
            && e.contains("./apps/web.yaml:17")
            && e.contains("to build offline"),
        "{e}"
    );
    s.write("apps/web.yaml", &web_app(&app));
    ok(s.run_env(&["build", "-q", "--force"], &env));

    // A wrong pin: refused before the image is written, naming the image,
    // the table and both digests; nothing of it is cached.
    let reg = TestRegistry::start().unwrap();
    let images = publish_images(&reg, "1.36.4");
    let victim = images.iter().find(|i| i.contains("/k8s/etcd:")).unwrap();
    let real = victim.split_once("@sha256:").unwrap().1.to_string();
    let wrong = format!(
        "{}@sha256:{}",
        victim.split_once('@').unwrap().0,
        "0".repeat(64)
    );
    let table = publish_carrying(&server, "1.36.4", &files, &images).replace(victim, &wrong);
    s.write("k8s.toml", &table);
    let before = file_sha256(&img);
    let e = fails(s.run_env(&["build", "-q", "--force"], &env));
    eprintln!("the wrong pin's error:\n{e}");
    for want in [
        format!("{}/k8s/etcd:3.6.8-0", reg.addr()),
        "k8s.toml".to_string(),
        "0".repeat(64),
        real,
    ] {
        assert!(e.contains(&want), "{want:?} in:\n{e}");
    }
    assert_eq!(file_sha256(&img), before, "the old image is left as it was");
}
