//! `mkstick plan`: what the stick will do, in plain words, from the
//! [`Plan`] and the rendered [`Payload`] (for the stick's size). Secrets
//! appear only as hashes.

use crate::image;
use crate::os::registry::{PulledImage, WantedImage};
use crate::payload::Payload;
use crate::plan::{OverlayFile, Plan};
use serde::Serialize;
use std::fmt::Write as _;

use crate::io::human_bytes as size;

fn plural(n: usize, one: &str, many: &str) -> String {
    format!("{n} {}", if n == 1 { one } else { many })
}

fn describe_storage(s: &mut String, plan: &Plan) {
    let Some(st) = &plan.storage else {
        let _ = writeln!(s, "Data drives: none ([storage] is not set)");
        let _ = writeln!(
            s,
            "  Nothing survives a reboot: cluster state and data live in RAM only."
        );
        return;
    };
    let profile = if st.profile_defaulted {
        format!(
            "{} (the default for {})",
            st.profile,
            plural(st.drives.len(), "drive", "drives")
        )
    } else {
        st.profile.to_string()
    };
    let _ = writeln!(
        s,
        "Data drives: a btrfs pool labelled \"{}\", {profile}, mounted at {}",
        st.label, st.mount
    );
    let copies = match st.tolerates() {
        0 => "one copy of everything: losing any drive loses the pool".to_string(),
        n => format!(
            "{} copies of everything: the pool survives losing {}",
            n + 1,
            plural(n, "drive", "drives")
        ),
    };
    let _ = writeln!(s, "  {copies}.");
    let _ = writeln!(s, "  Drives:");
    for d in &st.drives {
        let _ = writeln!(s, "    {d}");
    }
    let _ = writeln!(
        s,
        "  At every boot, mkstick looks at each drive before it writes anything. A drive"
    );
    let _ = writeln!(
        s,
        "    - that is blank, when no pool \"{}\" exists yet: becomes part of the new pool",
        st.label
    );
    let _ = writeln!(
        s,
        "    - that is blank, when the pool exists: is added, and the pool is balanced to {}",
        st.profile
    );
    let _ = writeln!(s, "    - already in the pool: is used as it is");
    let _ = writeln!(
        s,
        "    - holding anything else (a filesystem, a partition table): is never touched;"
    );
    let _ = writeln!(s, "      the console says what is on it and how to free it");
    let _ = writeln!(
        s,
        "    - that is missing: the server boots on and says so; the pool is never mounted degraded"
    );
    let _ = writeln!(
        s,
        "  A new pool is made with: {} (only when every drive is blank)",
        st.mkfs_command()
    );
    let _ = writeln!(
        s,
        "  Mount options: {} (waits {}s for the drives)",
        st.mount_options(),
        st.device_timeout_secs
    );
    if st.persist.is_empty() {
        let _ = writeln!(
            s,
            "  Nothing else is kept across reboots; list directories in [storage] persist to keep them on the pool."
        );
    } else {
        let _ = writeln!(
            s,
            "  Kept on the pool, under {}/state, so they survive reboots and reflashing:",
            st.mount
        );
    }
    for p in &st.persist {
        let _ = writeln!(s, "    {p}");
    }
    let server = match st.nfs.server {
        crate::os::NfsServer::Kernel => "the OS's own NFS server".to_string(),
        crate::os::NfsServer::Container => {
            "an NFS server container (podman), since the OS ships none".to_string()
        }
    };
    let clients: Vec<String> = st.nfs.clients.iter().map(|c| c.to_string()).collect();
    let _ = writeln!(
        s,
        "  NFS: {} is served by {server} to {} (mount it as <server>:{})",
        st.nfs.dir,
        clients.join(", "),
        st.nfs.share()
    );
    if let (crate::os::NfsServer::Kernel, Some((r, at))) = (st.nfs.server, &st.nfs.pinned_image) {
        let _ = writeln!(
            s,
            "  [storage] nfs-image ({at}, {r}) is not used: this OS has its own NFS server."
        );
    }
    if let Some((w, i)) = &plan.nfs_image {
        let _ = writeln!(
            s,
            "  The NFS server's image is on the stick ({}/), loaded into podman at every boot\n  with its digest checked, so it needs no registry:",
            crate::payload::images::NFS_IMAGE_DIR
        );
        image_line(s, w, i);
    }
    let wide: Vec<&String> = clients.iter().filter(|c| is_network(c)).collect();
    if !wide.is_empty() {
        let list: Vec<&str> = wide.iter().map(|c| c.as_str()).collect();
        let _ = writeln!(
            s,
            "  WARNING: the export is rw,no_root_squash, so every machine in {} may",
            list.join(", ")
        );
        let _ = writeln!(
            s,
            "    mount it and read or change every file there as root; list single hosts in"
        );
        let _ = writeln!(s, "    [storage] nfs-clients where you can.");
    }
    let _ = writeln!(
        s,
        "  The pool's state shows on the console and at the login prompt."
    );
}

/// Whether an `nfs-clients` entry names more than one host: a CIDR
/// network broader than /32 (IPv4) or /128 (IPv6), or a wildcard name.
fn is_network(client: &str) -> bool {
    if client.contains(['*', '?']) {
        return true;
    }
    match client.split_once('/') {
        Some((addr, prefix)) => {
            let full = if addr.contains(':') { 128 } else { 32 };
            // A netmask ("255.255.255.0") counts as a network unless it is
            // all ones.
            match prefix.parse::<u32>() {
                Ok(p) => p < full,
                Err(_) => prefix != "255.255.255.255",
            }
        }
        None => false,
    }
}

/// The host names your own manifests route: `spec.rules[].host` of each
/// Ingress, and the `Host(`…`)` rules of Traefik's IngressRoutes. Sorted,
/// without repeats.
fn ingress_hosts(manifests: &[crate::plan::kubernetes::UserManifest]) -> Vec<String> {
    use serde::Deserialize as _;
    let mut hosts = std::collections::BTreeSet::new();
    for m in manifests {
        for doc in serde_yaml_ng::Deserializer::from_str(&m.contents) {
            // After a syntax error the stream yields the same error again
            // and again: stop at the first one (plan checked the manifests).
            let Ok(v) = serde_yaml_ng::Value::deserialize(doc) else {
                break;
            };
            match v.get("kind").and_then(|k| k.as_str()) {
                Some("Ingress") => {
                    let rules = v
                        .get("spec")
                        .and_then(|s| s.get("rules"))
                        .and_then(|r| r.as_sequence());
                    for r in rules.into_iter().flatten() {
                        if let Some(h) = r.get("host").and_then(|h| h.as_str()) {
                            hosts.insert(h.to_string());
                        }
                    }
                }
                Some("IngressRoute") => {
                    let routes = v
                        .get("spec")
                        .and_then(|s| s.get("routes"))
                        .and_then(|r| r.as_sequence());
                    for r in routes.into_iter().flatten() {
                        let rule = r.get("match").and_then(|m| m.as_str()).unwrap_or("");
                        for part in rule.split("Host(").skip(1) {
                            let part = part.trim_start();
                            let quote = part.chars().next().unwrap_or('`');
                            if let Some(h) = part[quote.len_utf8()..].split(quote).next() {
                                if !h.is_empty() {
                                    hosts.insert(h.to_string());
                                }
                            }
                        }
                    }
                }
                _ => {}
            }
        }
    }
    hosts.into_iter().collect()
}

/// The container images: on the stick, each pinned, or pulled at first boot.
fn describe_images(s: &mut String, plan: &Plan, payload: &Payload) {
    if plan.images.is_empty() {
        let _ = writeln!(
            s,
            "  Container images: none on the stick (the binaries table lists no `images`);\n    the first boot pulls them from their registries, so it needs the internet."
        );
        return;
    }
    let total: u64 = plan.images.iter().map(|i| i.size_bytes()).sum();
    let dir = format!("{}/", crate::payload::images::IMAGES_DIR);
    let shared: u64 = payload
        .files
        .iter()
        .filter(|f| f.path.starts_with(&dir))
        .map(|f| f.size_bytes)
        .sum();
    let _ = writeln!(
        s,
        "  Container images on the stick (mkstick/images/, {} in all, {} with shared layers stored once),",
        plan.images.len(),
        size(shared)
    );
    let _ = writeln!(
        s,
        "  each pinned by digest and verified; imported into containerd before kubeadm runs,\n  so the first boot needs no registry ({} before sharing):",
        size(total)
    );
    for (w, i) in plan.carried_images() {
        image_line(s, &w, i);
    }
}

/// One carried image: `    NAME:TAG@sha256:DIGEST  SIZE`, and whether a
/// pin named it.
fn image_line(s: &mut String, w: &WantedImage, i: &PulledImage) {
    let _ = write!(s, "    {}  {}", i.reference, size(i.size_bytes()));
    if !w.pinned {
        let _ = write!(
            s,
            "  NOT PINNED: {} names a tag only; resolved now",
            w.named_in
        );
    }
    let _ = writeln!(s);
}

fn describe_kubernetes(s: &mut String, plan: &Plan, payload: &Payload) {
    let Some(k) = &plan.kubernetes else {
        let _ = writeln!(s, "Kubernetes: none ([kubernetes] is not set)");
        return;
    };
    let hostname = plan.node.hostname.as_str();
    let host = k.host(hostname);
    let _ = writeln!(
        s,
        "Kubernetes {}: a single-node cluster \"{}\" (kubeadm, containerd)",
        k.version, k.cluster_name
    );
    let _ = writeln!(
        s,
        "  Its binaries ride on the stick (k8s/), checked against mkstick/manifest.json"
    );
    let _ = writeln!(s, "    at every boot.");
    describe_images(s, plan, payload);
    let _ = writeln!(s, "  At every boot, once the data drives are mounted:");
    let _ = writeln!(
        s,
        "    - no cluster on the drives: kubeadm init creates one (workloads run on this node)"
    );
    let _ = writeln!(
        s,
        "    - a cluster at {}: the kubelet starts it as it is",
        k.version
    );
    let _ = writeln!(
        s,
        "    - a cluster at {}.{}.x, or an older {}.{} patch: kubeadm upgrade apply v{}",
        k.version.major,
        k.version.minor.saturating_sub(1),
        k.version.major,
        k.version.minor,
        k.version
    );
    if let Some(st) = &plan.storage {
        let _ = writeln!(
            s,
            "      first taking a read-only snapshot of the cluster's state (etcd, /etc/kubernetes,"
        );
        let _ = writeln!(
            s,
            "      /var/lib/kubelet) into {} (the last {} are kept); a failed upgrade",
            st.snapshots_dir(),
            crate::plan::kubernetes::KEEP_SNAPSHOTS
        );
        let _ = writeln!(
            s,
            "      is rolled back to it, and the old version runs again"
        );
    }
    let _ = writeln!(
        s,
        "    - any other version: refused, on the console and at the login prompt; the"
    );
    let _ = writeln!(
        s,
        "      cluster is not touched (kubeadm goes one minor version at a time, never down)"
    );
    if let Some(st) = &plan.storage {
        let _ = writeln!(
            s,
            "    - the way back after an upgrade: the previous stick's refusal names the snapshot"
        );
        let _ = writeln!(
            s,
            "      taken before it; written into {}/restore, it is restored at the next boot",
            st.snapshots_dir()
        );
    }
    let _ = writeln!(s, "  Then, in order, it applies:");
    let _ = writeln!(
        s,
        "    1. CNI: a bridge with host-local addresses from pod-cidr {} and hostPort mapping",
        k.pod_cidr
    );
    match &k.ingress {
        Some(i) => {
            let _ = writeln!(
                s,
                "    2. ingress: {} (the default IngressClass) on host ports {} and {}",
                i.controller, i.http_port, i.https_port
            );
        }
        None => {
            let _ = writeln!(s, "    2. ingress: none (controller = \"none\")");
        }
    }
    let _ = writeln!(
        s,
        "    3. NFS provisioning: csi-driver-nfs, StorageClass \"{}\"{} (ReadWriteMany),",
        k.nfs.storage_class,
        if k.nfs.default { ", the default" } else { "" }
    );
    let reclaim = match k.nfs.reclaim {
        crate::config::kubernetes::Reclaim::Retain => {
            "a deleted claim keeps its volume and directory"
        }
        crate::config::kubernetes::Reclaim::Archive => {
            "a deleted claim's directory is renamed archived-... and kept"
        }
        crate::config::kubernetes::Reclaim::Delete => {
            "a deleted claim's directory is DELETED with its data"
        }
    };
    let dir = plan.storage.as_ref().map_or("", |st| st.nfs.dir.as_str());
    let _ = writeln!(s, "       one directory per volume under {dir}; {reclaim}");
    if k.extra_manifests.is_empty() {
        let _ = writeln!(s, "    4. your manifests: none ([extra] manifests)");
    } else {
        let _ = writeln!(s, "    4. your manifests:");
        for m in &k.extra_manifests {
            let _ = writeln!(
                s,
                "       {} ({})",
                m.name,
                plural(m.documents, "object", "objects")
            );
        }
    }
    let _ = writeln!(
        s,
        "  Every day (mkstick-certs.timer): kubeadm's certificates last a year; 30 days"
    );
    let _ = writeln!(
        s,
        "    before they expire they are renewed and the control plane restarts on them."
    );
    let _ = writeln!(
        s,
        "    The login prompt shows when they expire; a failed renewal is on the console."
    );
    let _ = writeln!(
        s,
        "  Services: {}; the API server's certificate names {}",
        k.service_cidr,
        k.cert_sans.join(", ")
    );
    let _ = writeln!(s, "  Reach it at:");
    let _ = writeln!(
        s,
        "    API:        https://{host}:{}",
        crate::plan::kubernetes::API_PORT
    );
    if let Some(i) = &k.ingress {
        let _ = writeln!(
            s,
            "    Ingress:    http://{host}{}/",
            port_suffix(i.http_port, 80)
        );
        let _ = writeln!(
            s,
            "                https://{host}{}/ (Traefik's self-signed certificate)",
            port_suffix(i.https_port, 443)
        );
    }
    let hosts = ingress_hosts(&k.extra_manifests);
    if !hosts.is_empty() {
        match &k.ingress {
            Some(i) => {
                let _ = writeln!(
                    s,
                    "    Your Ingress hosts (point their names at the server, in DNS or /etc/hosts):"
                );
                for h in &hosts {
                    let _ = writeln!(
                        s,
                        "      http://{h}{}/  https://{h}{}/",
                        port_suffix(i.http_port, 80),
                        port_suffix(i.https_port, 443)
                    );
                }
            }
            None => {
                let _ = writeln!(
                    s,
                    "    Your manifests route {}, but no ingress controller serves them (controller = \"none\")",
                    hosts.join(", ")
                );
            }
        }
    }
    let _ = writeln!(
        s,
        "    kubeconfig: ssh core@{host} sudo cat /etc/kubernetes/admin.conf > kubeconfig"
    );
    let _ = writeln!(
        s,
        "    try it:     ssh core@{host} sudo /opt/bin/kubectl --kubeconfig /etc/kubernetes/admin.conf apply -f /etc/mkstick/examples/whoami.yaml"
    );
    let _ = writeln!(
        s,
        "    if it fails: ssh core@{host} sudo journalctl -u mkstick-kubeadm -u mkstick-addons"
    );
    if k.advertise_address.is_none() {
        let _ = writeln!(
            s,
            "  ({hostname} must resolve on your LAN; set a static address in [network] to use its address)"
        );
    }
    let at = match (k.advertise_address, &plan.network.static_address) {
        (Some(a), Some(_)) => format!("{a} ([network]'s static address)"),
        (Some(a), None) => format!("{a} (advertise-address)"),
        (None, _) => "the one the server has when the cluster is made (DHCP)".into(),
    };
    let _ = writeln!(s, "  Its address: {at}.");
    let _ = writeln!(
        s,
        "  etcd, the API server, its certificates and kubeconfigs are bound to it. If the"
    );
    let _ = writeln!(
        s,
        "  server boots with another address, Kubernetes is not started, and the console"
    );
    let _ = writeln!(s, "  and the login prompt say so, naming both addresses.");
    if plan.network.static_address.is_none() {
        let _ = writeln!(
            s,
            "  With DHCP, reserve the address on your router, or set it in [network]."
        );
    }
    describe_drift(s);
}

/// Which settings a cluster already on the data drives takes from a stick
/// built later ([`crate::k8s::drift`]).
fn describe_drift(s: &mut String) {
    use crate::k8s::drift::{OnExisting, SETTINGS};
    let _ = writeln!(
        s,
        "  On a cluster already on the data drives, a change in mkstick.toml"
    );
    let _ = writeln!(s, "    takes effect at the next boot:");
    for (key, on) in SETTINGS {
        if let OnExisting::Applied(how) = on {
            let _ = writeln!(s, "      {key}\n        {how}");
        }
    }
    let _ = writeln!(
        s,
        "    is fixed when the cluster was made (not applied; the console and the login"
    );
    let _ = writeln!(s, "    prompt say so, and the cluster runs as it was):");
    for (key, on) in SETTINGS {
        if let OnExisting::FixedAtInit(why) = on {
            let _ = writeln!(s, "      {key}\n        {why}");
        }
    }
}

/// ":PORT" in a URL, or nothing for the scheme's default port.
fn port_suffix(port: u16, default: u16) -> String {
    if port == default {
        String::new()
    } else {
        format!(":{port}")
    }
}

/// MiB as the README writes RAM: "4 GiB", "1.5 GiB", "512 MiB".
fn mib(n: u64) -> String {
    if n >= 1024 && n.is_multiple_of(512) {
        let g = n as f64 / 1024.0;
        if n.is_multiple_of(1024) {
            format!("{g:.0} GiB")
        } else {
            format!("{g:.1} GiB")
        }
    } else {
        format!("{n} MiB")
    }
}

pub fn describe(plan: &Plan, payload: &Payload) -> String {
    let mut s = String::new();
    let m = &plan.os.manifest;
    let node = &plan.node;
    // Writing into a String cannot fail; the results are ignored.
    let _ = writeln!(s, "mkstick plan for {}", plan.config_path.display());
    let _ = writeln!(s);
    let _ = writeln!(s, "Operating system");
    let _ = writeln!(
        s,
        "  {} {} ({}), from {}",
        m.name,
        m.version,
        m.id,
        plan.os.dir.display()
    );
    let _ = writeln!(
        s,
        "  It runs live from RAM: /etc and /var start empty at every boot, and"
    );
    let _ = writeln!(s, "  Ignition applies the settings below again each time.");
    let _ = match (m.min_ram_mib, plan.min_ram_mib()) {
        (Some(os), Some(all)) if all > os => writeln!(
            s,
            "  RAM: at least {}: {} for the OS in RAM, {} for Kubernetes;\n  the console warns at boot when the server has less.",
            mib(all),
            mib(os),
            mib(all - os)
        ),
        (Some(os), _) => writeln!(
            s,
            "  RAM: at least {} for the OS in RAM; the console warns at boot\n  when the server has less.",
            mib(os)
        ),
        _ => writeln!(s, "  RAM: this OS states no minimum."),
    };
    let _ = writeln!(s);
    let _ = writeln!(s, "At every boot the stick will");
    let _ = writeln!(s, "  - name the server {}", node.hostname);
    match &plan.network.static_address {
        None => {
            let _ = writeln!(
                s,
                "  - get its address by DHCP on every interface with a cable (the OS's default)"
            );
        }
        Some(a) => {
            let _ = writeln!(s, "  - give it the static address {a}");
            let _ = writeln!(s, "    (any other interface gets DHCP)");
        }
    }
    let _ = writeln!(s, "  - set the time zone to {}", node.timezone);
    if node.ssh_authorized_keys.is_empty() {
        let _ = writeln!(s, "  - let user core log in with no SSH key");
    } else {
        let _ = writeln!(
            s,
            "  - let user core log in over SSH with {}:",
            plural(node.ssh_authorized_keys.len(), "key", "keys")
        );
        for k in node.ssh_authorized_keys.iter() {
            let _ = writeln!(s, "      {} {} {}", k.kind(), k.fingerprint(), k.comment());
        }
    }
    match &node.password_hash {
        Some(h) => {
            let _ = writeln!(
                s,
                "  - let core log in on the console with a password (hash {})",
                h.fingerprint()
            );
        }
        None => {
            let _ = writeln!(s, "  - set no password: core logs in with an SSH key only");
        }
    }
    let files: Vec<String> = payload
        .ignition
        .storage
        .files
        .iter()
        .map(|f| format!("{} ({:o})", f.path, f.mode.unwrap_or(0o644)))
        .collect();
    let _ = writeln!(s, "  - write {}:", plural(files.len(), "file", "files"));
    for f in files {
        let _ = writeln!(s, "      {f}");
    }
    let units: Vec<&OverlayFile> = plan
        .overlay
        .iter()
        .filter(|o| matches!(o, OverlayFile::Unit { .. }))
        .collect();
    if !units.is_empty() {
        let _ = writeln!(s, "  - install {}:", plural(units.len(), "unit", "units"));
        for u in &payload.ignition.systemd.units {
            let what = if u.enabled == Some(true) {
                "enabled"
            } else {
                "not enabled"
            };
            let _ = writeln!(s, "      {} ({what})", u.name);
        }
    }
    for x in &plan.extra_ignition {
        let _ = writeln!(
            s,
            "  - merge your Ignition config {} (sha256 {})",
            x.name,
            x.sha256.short()
        );
    }
    let _ = writeln!(s);
    describe_storage(&mut s, plan);
    let _ = writeln!(s);
    describe_kubernetes(&mut s, plan, payload);
    let _ = writeln!(s);
    let _ = writeln!(s, "Boot");
    let args: Vec<String> = plan.kernel_args.iter().map(|a| a.to_string()).collect();
    let _ = writeln!(s, "  kernel command line: {}", args.join(" "));
    let _ = writeln!(
        s,
        "  console: {}",
        match (plan.serial_console, plan.main_console) {
            (false, _) => "screen only",
            (true, crate::config::MainConsole::Screen) =>
                "the screen (boot status, errors, emergency shell), and serial port ttyS0 (115200 baud: kernel messages and a login)",
            (true, crate::config::MainConsole::Serial) =>
                "serial port ttyS0 (115200 baud: boot status, errors, emergency shell), and the screen (kernel messages and a login)",
        }
    );
    let _ = writeln!(s);
    let layout = image::esp_layout(payload);
    let _ = writeln!(s, "Image");
    let _ = writeln!(
        s,
        "  {} in all: a GPT with one FAT32 EFI partition labelled MKSTICK ({})",
        size(image::image_size_bytes(layout)),
        size(layout.size_bytes)
    );
    let _ = writeln!(
        s,
        "  {} files, {} of data:",
        payload.files.len(),
        size(payload.total_bytes())
    );
    for f in &payload.files {
        let _ = writeln!(
            s,
            "    {:<28} {:>10}  sha256 {}",
            f.path,
            size(f.size_bytes),
            f.sha256.short()
        );
    }
    let _ = writeln!(
        s,
        "  Ignition config: sha256 {}. It holds the login keys, so keep the stick safe.",
        payload.ignition_sha256().short()
    );
    let _ = writeln!(
        s,
        "  Seed {}: disk {}, partition {}, volume {}",
        &plan.ids.seed_hex()[..16],
        plan.ids.disk_guid,
        plan.ids.esp_guid,
        crate::payload::grub::fat_uuid(plan.ids.volume_id)
    );
    s
}

/// `mkstick plan --json`: the facts of [`describe`], for scripts. Secrets
/// appear only as hashes, as in the text.
#[derive(Debug, Serialize)]
#[serde(rename_all = "kebab-case")]
pub struct PlanJson {
    pub mkstick_version: &'static str,
    pub config: String,
    pub config_sha256: String,
    pub hostname: String,
    pub timezone: String,
    pub ssh_keys: Vec<SshKeyJson>,
    /// The fingerprint `plan` prints for the password hash.
    pub password_hash_fingerprint: Option<String>,
    pub os: OsJson,
    pub files: Vec<FileModeJson>,
    pub units: Vec<UnitJson>,
    pub extra_ignition: Vec<NamedHashJson>,
    pub network: NetworkJson,
    pub storage: Option<StorageJson>,
    pub kubernetes: Option<KubernetesJson>,
    pub boot: BootJson,
    pub image: ImageJson,
}

/// `[network]`: `static-address` is `null` with DHCP.
#[derive(Debug, Serialize)]
#[serde(rename_all = "kebab-case")]
pub struct NetworkJson {
    pub static_address: Option<String>,
    pub interface: Option<String>,
    pub mac: Option<String>,
    pub gateway: Option<String>,
    pub dns: Vec<String>,
}

#[derive(Debug, Serialize)]
#[serde(rename_all = "kebab-case")]
pub struct SshKeyJson {
    pub kind: String,
    pub fingerprint: String,
    pub comment: String,
}

#[derive(Debug, Serialize)]
#[serde(rename_all = "kebab-case")]
pub struct OsJson {
    pub name: String,
    pub version: String,
    pub id: String,
    pub dir: String,
    /// The RAM the server needs: the OS's figure plus Kubernetes'.
    pub min_ram_mib: Option<u64>,
}

#[derive(Debug, Serialize)]
pub struct FileModeJson {
    pub path: String,
    /// Octal, as `plan` prints it: "644".
    pub mode: String,
}

#[derive(Debug, Serialize)]
pub struct UnitJson {
    pub name: String,
    pub enabled: bool,
}

#[derive(Debug, Serialize)]
pub struct NamedHashJson {
    pub name: String,
    pub sha256: String,
}

#[derive(Debug, Serialize)]
#[serde(rename_all = "kebab-case")]
pub struct StorageJson {
    pub label: String,
    pub profile: String,
    pub profile_defaulted: bool,
    pub mount: String,
    pub drives: Vec<String>,
    /// How many drives the pool survives losing.
    pub tolerates_lost_drives: usize,
    pub mkfs_command: String,
    pub mount_options: String,
    pub device_timeout_secs: u32,
    pub persist: Vec<String>,
    pub nfs: NfsJson,
}

#[derive(Debug, Serialize)]
#[serde(rename_all = "kebab-case")]
pub struct NfsJson {
    /// "kernel" (the OS's own server) or "container".
    pub server: &'static str,
    /// The container's image on the stick, for "container".
    #[serde(skip_serializing_if = "Option::is_none")]
    pub image: Option<ContainerImageJson>,
    pub dir: String,
    pub share: String,
    pub clients: Vec<String>,
}

#[derive(Debug, Serialize)]
#[serde(rename_all = "kebab-case")]
pub struct KubernetesJson {
    pub version: String,
    pub cluster_name: String,
    pub pod_cidr: String,
    pub service_cidr: String,
    pub advertise_address: Option<String>,
    pub cert_sans: Vec<String>,
    pub ingress: Option<IngressJson>,
    pub storage_class: String,
    pub storage_class_default: bool,
    pub reclaim_policy: &'static str,
    pub manifests: Vec<ManifestJson>,
    /// The container images on the stick; empty when the first boot pulls
    /// them from their registries.
    pub images: Vec<ContainerImageJson>,
    pub api_url: String,
    pub kubeconfig_command: String,
}

#[derive(Debug, Serialize)]
#[serde(rename_all = "kebab-case")]
pub struct ContainerImageJson {
    /// `NAME:TAG@sha256:DIGEST`.
    pub reference: String,
    pub size_bytes: u64,
    /// false: a tag alone in the user's manifest, resolved at build time.
    pub pinned: bool,
    pub named_in: String,
}

#[derive(Debug, Serialize)]
#[serde(rename_all = "kebab-case")]
pub struct IngressJson {
    pub controller: String,
    pub http_port: u16,
    pub https_port: u16,
    pub http_url: String,
    pub https_url: String,
}

#[derive(Debug, Serialize)]
pub struct ManifestJson {
    pub name: String,
    pub objects: usize,
}

#[derive(Debug, Serialize)]
#[serde(rename_all = "kebab-case")]
pub struct BootJson {
    pub kernel_args: Vec<String>,
    pub serial_console: bool,
    /// "screen" or "serial": which one is /dev/console.
    pub main_console: &'static str,
}

#[derive(Debug, Serialize)]
#[serde(rename_all = "kebab-case")]
pub struct ImageJson {
    pub size_bytes: u64,
    pub esp_size_bytes: u64,
    pub data_bytes: u64,
    pub files: Vec<ImageFileJson>,
    pub ignition_sha256: String,
    pub seed: String,
    pub disk_guid: String,
    pub esp_guid: String,
    pub volume_id: String,
}

#[derive(Debug, Serialize)]
#[serde(rename_all = "kebab-case")]
pub struct ImageFileJson {
    pub path: String,
    pub size_bytes: u64,
    pub sha256: String,
}

fn reclaim_name(r: crate::config::kubernetes::Reclaim) -> &'static str {
    match r {
        crate::config::kubernetes::Reclaim::Retain => "retain",
        crate::config::kubernetes::Reclaim::Archive => "archive",
        crate::config::kubernetes::Reclaim::Delete => "delete",
    }
}

fn image_json(w: &WantedImage, p: &PulledImage) -> ContainerImageJson {
    ContainerImageJson {
        reference: p.reference.to_string(),
        size_bytes: p.size_bytes(),
        pinned: w.pinned,
        named_in: w.named_in.clone(),
    }
}

/// The plan's facts as one JSON document (see [`PlanJson`]).
pub fn describe_json(plan: &Plan, payload: &Payload) -> PlanJson {
    let m = &plan.os.manifest;
    let node = &plan.node;
    let storage = plan.storage.as_ref().map(|st| StorageJson {
        label: st.label.to_string(),
        profile: st.profile.to_string(),
        profile_defaulted: st.profile_defaulted,
        mount: st.mount.to_string(),
        drives: st.drives.iter().map(|d| d.to_string()).collect(),
        tolerates_lost_drives: st.tolerates(),
        mkfs_command: st.mkfs_command(),
        mount_options: st.mount_options(),
        device_timeout_secs: st.device_timeout_secs,
        persist: st.persist.iter().map(|p| p.to_string()).collect(),
        nfs: NfsJson {
            server: match st.nfs.server {
                crate::os::NfsServer::Kernel => "kernel",
                crate::os::NfsServer::Container => "container",
            },
            image: plan.nfs_image.as_ref().map(|(w, p)| image_json(w, p)),
            dir: st.nfs.dir.clone(),
            share: st.nfs.share().to_string(),
            clients: st.nfs.clients.iter().map(|c| c.to_string()).collect(),
        },
    });
    let kubernetes = plan.kubernetes.as_ref().map(|k| {
        let host = k.host(node.hostname.as_str());
        KubernetesJson {
            version: k.version.to_string(),
            cluster_name: k.cluster_name.to_string(),
            pod_cidr: k.pod_cidr.to_string(),
            service_cidr: k.service_cidr.to_string(),
            advertise_address: k.advertise_address.map(|a| a.to_string()),
            cert_sans: k.cert_sans.clone(),
            images: plan
                .carried_images()
                .into_iter()
                .map(|(w, p)| image_json(&w, p))
                .collect(),
            ingress: k.ingress.as_ref().map(|i| IngressJson {
                controller: i.controller.to_string(),
                http_port: i.http_port,
                https_port: i.https_port,
                http_url: format!("http://{host}{}/", port_suffix(i.http_port, 80)),
                https_url: format!("https://{host}{}/", port_suffix(i.https_port, 443)),
            }),
            storage_class: k.nfs.storage_class.to_string(),
            storage_class_default: k.nfs.default,
            reclaim_policy: reclaim_name(k.nfs.reclaim),
            manifests: k
                .extra_manifests
                .iter()
                .map(|m| ManifestJson {
                    name: m.name.clone(),
                    objects: m.documents,
                })
                .collect(),
            api_url: format!("https://{host}:{}", crate::plan::kubernetes::API_PORT),
            kubeconfig_command: format!(
                "ssh core@{host} sudo cat /etc/kubernetes/admin.conf > kubeconfig"
            ),
        }
    });
    let layout = image::esp_layout(payload);
    PlanJson {
        mkstick_version: crate::plan::MKSTICK_VERSION,
        config: plan.config_path.display().to_string(),
        config_sha256: plan.config_sha256.to_string(),
        hostname: node.hostname.to_string(),
        timezone: node.timezone.to_string(),
        ssh_keys: node
            .ssh_authorized_keys
            .iter()
            .map(|k| SshKeyJson {
                kind: k.kind().to_string(),
                fingerprint: k.fingerprint(),
                comment: k.comment(),
            })
            .collect(),
        password_hash_fingerprint: node.password_hash.as_ref().map(|h| h.fingerprint()),
        os: OsJson {
            name: m.name.clone(),
            version: m.version.clone(),
            id: m.id.clone(),
            dir: plan.os.dir.display().to_string(),
            min_ram_mib: plan.min_ram_mib(),
        },
        files: payload
            .ignition
            .storage
            .files
            .iter()
            .map(|f| FileModeJson {
                path: f.path.clone(),
                mode: format!("{:o}", f.mode.unwrap_or(0o644)),
            })
            .collect(),
        units: payload
            .ignition
            .systemd
            .units
            .iter()
            .map(|u| UnitJson {
                name: u.name.clone(),
                enabled: u.enabled == Some(true),
            })
            .collect(),
        extra_ignition: plan
            .extra_ignition
            .iter()
            .map(|x| NamedHashJson {
                name: x.name.clone(),
                sha256: x.sha256.to_string(),
            })
            .collect(),
        network: {
            use crate::plan::network::Link;
            let a = plan.network.static_address.as_ref();
            let (interface, mac) = match a.map(|a| &a.link) {
                Some(Link::Name(n)) => (Some(n.clone()), None),
                Some(Link::Mac(m)) => (None, Some(m.clone())),
                None => (None, None),
            };
            NetworkJson {
                static_address: a.map(|a| a.address.to_string()),
                interface,
                mac,
                gateway: a.and_then(|a| a.gateway.map(|g| g.to_string())),
                dns: a.map_or_else(Vec::new, |a| a.dns.iter().map(|d| d.to_string()).collect()),
            }
        },
        storage,
        kubernetes,
        boot: BootJson {
            kernel_args: plan.kernel_args.iter().map(|a| a.to_string()).collect(),
            serial_console: plan.serial_console,
            main_console: match plan.main_console {
                crate::config::MainConsole::Screen => "screen",
                crate::config::MainConsole::Serial => "serial",
            },
        },
        image: ImageJson {
            size_bytes: image::image_size_bytes(layout),
            esp_size_bytes: layout.size_bytes,
            data_bytes: payload.total_bytes(),
            files: payload
                .files
                .iter()
                .map(|f| ImageFileJson {
                    path: f.path.clone(),
                    size_bytes: f.size_bytes,
                    sha256: f.sha256.to_string(),
                })
                .collect(),
            ignition_sha256: payload.ignition_sha256().to_string(),
            seed: plan.ids.seed_hex(),
            disk_guid: plan.ids.disk_guid.to_string(),
            esp_guid: plan.ids.esp_guid.to_string(),
            volume_id: crate::payload::grub::fat_uuid(plan.ids.volume_id),
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn networks_are_told_from_hosts() {
        for net in [
            "192.168.1.0/24",
            "10.0.0.0/8",
            "10.0.0.4/31",
            "fd00::/64",
            "*.lan",
            "host?.lan",
            "192.168.1.0/255.255.255.0",
        ] {
            assert!(is_network(net), "{net}");
        }
        for host in [
            "127.0.0.1",
            "192.168.1.7/32",
            "fd00::1/128",
            "fd00::1",
            "laptop.lan",
        ] {
            assert!(!is_network(host), "{host}");
        }
    }

    #[test]
    fn ingress_hosts_come_from_ingresses_and_ingress_routes() {
        let m = |contents: &str| crate::plan::kubernetes::UserManifest {
            name: "apps/x.yaml".into(),
            node_path: "/etc/mkstick/manifests/50-extra-00-x.yaml".into(),
            contents: contents.into(),
            documents: 1,
            images: Vec::new(),
        };
        let ingress = "apiVersion: networking.k8s.io/v1\nkind: Ingress\nmetadata:\n  name: a\nspec:\n  rules:\n    - host: b.lan\n      http: {}\n    - host: a.lan\n    - http: {}\n---\napiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: c\ndata:\n  host: not-a-route.lan\n";
        let route = "apiVersion: traefik.io/v1alpha1\nkind: IngressRoute\nmetadata:\n  name: r\nspec:\n  routes:\n    - match: Host(`c.lan`) || Host(`a.lan`)\n      kind: Rule\n";
        assert_eq!(
            ingress_hosts(&[m(ingress), m(route)]),
            ["a.lan", "b.lan", "c.lan"]
        );
        assert!(ingress_hosts(&[m("not: [yaml")]).is_empty());
    }
}
