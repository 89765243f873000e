//! The commented starter config that `mkstick init` writes.

/// A starter `mkstick.toml`. `ssh_key` is the user's public key, if one was found.
pub fn starter_config(ssh_key: Option<&str>) -> String {
    let keys = match ssh_key {
        Some(k) => format!(
            "# Picked up from your ~/.ssh. Add more keys as more strings.\nssh-authorized-keys = [\n  \"{}\",\n]",
            k.trim()
        ),
        None => "# No ~/.ssh/id_*.pub was found. Paste your public key here, for example:\n# ssh-authorized-keys = [\"ssh-ed25519 AAAA... you@laptop\"]\nssh-authorized-keys = []".to_string(),
    };
    format!(
        r#"# mkstick.toml: everything mkstick needs to build your server's boot stick.
# Check it with `mkstick check`, see what the stick will do with `mkstick plan`,
# then build it with `mkstick build`.

[node]
# The server's name on your network.
hostname = "kube1"
# You log in as user `core` with one of these SSH keys.
{keys}
# Optional: allow console login with a password. Never put the password itself
# here, only its hash: run `mkpasswd --method=yescrypt` and paste the result.
# password-hash = "$y$..."
# IANA time zone name; UTC when left out.
timezone = "UTC"

[os]
# The CoreOS the stick boots: "fedora-coreos" or "flatcar". mkstick downloads
# it into ~/.cache/mkstick and checks its sha256 and its publisher's OpenPGP
# signature; `mkstick fetch` does only that, ahead of time.
# distro = "fedora-coreos"   # the default
# Fedora CoreOS: "stable", "testing" or "next". Flatcar: "stable", "beta" or
# "alpha" (`channel` works too).
# stream = "stable"          # the default
# Pin one release; without it, each build takes the stream's newest.
# version = "43.20261116.3.0"
# Or boot a local OS directory (one holding os.json) instead of downloading
# (then leave distro, stream and version out):
# path = "os"

[boot]
# Extra kernel arguments, one string each.
kernel-args = []
# Show the boot console on the first serial port too (ttyS0, 115200 baud).
serial-console = true
# The main console, where boot status, errors and the emergency shell
# appear: "screen" (a monitor), or "serial" for a server with only a
# serial cable.
console = "screen"

# The server's address. Without this table it uses DHCP. A Kubernetes
# cluster is bound to the address it is made at, so give the server a fixed
# one: here, or as a reservation on your router. `ip link` on the server
# shows the MAC after link/ether.
# [network]
# mac = "52:54:00:12:34:56"
# address = "192.168.1.10/24"
# gateway = "192.168.1.1"
# dns = ["192.168.1.1"]

# Data drives: a btrfs pool that keeps the cluster's state and your data
# across reboots and reflashing. Without it, nothing survives a reboot.
# List whole drives by their stable names (`ls -l /dev/disk/by-id/` on the
# server). A drive that holds anything is never formatted.
# [storage]
# drives = [
#   "/dev/disk/by-id/ata-WDC_WD40EFRX-68N32N0_WD-WCC7K0XXXXXX",
#   "/dev/disk/by-id/ata-WDC_WD40EFRX-68N32N0_WD-WCC7K0YYYYYY",
# ]
# profile = "raid1"          # single, raid1 (2+ drives) or raid1c3 (3+)
# nfs-clients = ["127.0.0.1"]  # who may mount <mount>/exports over NFS

# A single-node Kubernetes cluster (kubeadm), kept on the data drives: it
# needs [storage]. `mkstick plan` prints its URLs.
# [kubernetes]
# version = "1.36.4"
# advertise-address = "192.168.1.10"  # the server's fixed LAN address, if any
# [ingress]
# http-port = 80                      # Traefik answers here on the LAN
# https-port = 443
# [nfs]
# storage-class = "nfs"               # the default StorageClass, ReadWriteMany

[extra]
# Your own Ignition configs (spec 3.0.0 to 3.3.0), merged over mkstick's.
ignition = []
# Your own Kubernetes manifests (files or directories), applied after mkstick's.
# manifests = ["k8s/"]
"#
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::Path;

    #[test]
    fn starter_parses_with_and_without_a_key() {
        let key = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIIiI12AOmJheE4nbgJvDhe47oAV8xqWv1169OlfLBIpZ test@mkstick\n";
        let c = crate::config::parse(Path::new("s.toml"), &starter_config(Some(key))).unwrap();
        assert_eq!(c.node.ssh_authorized_keys.len(), 1);
        let c = crate::config::parse(Path::new("s.toml"), &starter_config(None)).unwrap();
        assert!(c.node.ssh_authorized_keys.is_empty());
        // [os] is all defaults (Fedora CoreOS stable), so that uncommenting
        // `path`, as its comment says, gives a valid config.
        assert!(c.os.distro.is_none() && c.os.stream.is_none() && c.os.path.is_none());
        let text = starter_config(Some(key)).replace("# path = \"os\"", "path = \"os\"");
        let c = crate::config::parse(Path::new("s.toml"), &text).unwrap();
        assert!(c.os.path.is_some() && c.os.distro.is_none() && c.os.stream.is_none());
        // The commented [storage] example is valid once uncommented.
        let text = starter_config(Some(key)).replace("# [storage]", "[storage]");
        let text: String = text
            .lines()
            .map(|l| match l.strip_prefix("# ") {
                Some(rest)
                    if rest.starts_with("drives")
                        || rest.starts_with("  \"/dev")
                        || rest.starts_with(']')
                        || rest.starts_with("profile")
                        || rest.starts_with("nfs-clients") =>
                {
                    format!("{rest}\n")
                }
                _ => format!("{l}\n"),
            })
            .collect();
        let c = crate::config::parse(Path::new("s.toml"), &text).unwrap();
        assert_eq!(c.storage.unwrap().drives.len(), 2);
        // And so is the commented Kubernetes example.
        let text: String = text
            .lines()
            .map(|l| match l.strip_prefix("# ") {
                Some(rest)
                    if rest.starts_with('[')
                        || ["version", "advertise", "http", "https", "storage-class"]
                            .iter()
                            .any(|k| rest.starts_with(k)) =>
                {
                    format!("{rest}\n")
                }
                _ => format!("{l}\n"),
            })
            .collect();
        let c = crate::config::parse(Path::new("s.toml"), &text).unwrap();
        assert!(c.kubernetes.is_some() && c.ingress.is_some() && c.nfs.is_some());
        // And the [network] example, which then also sets the cluster's
        // address (the commented advertise-address is the same).
        let text: String = text
            .lines()
            .map(|l| match l.strip_prefix("# ") {
                Some(rest)
                    if ["[network]", "mac =", "address =", "gateway =", "dns ="]
                        .iter()
                        .any(|k| rest.starts_with(k)) =>
                {
                    format!("{rest}\n")
                }
                _ => format!("{l}\n"),
            })
            .collect();
        let loaded = crate::config::LoadedConfig {
            path: "s.toml".into(),
            config: crate::config::parse(Path::new("s.toml"), &text).unwrap(),
            text,
        };
        let network = crate::plan::network::NetworkPlan::from_config(&loaded).unwrap();
        assert_eq!(
            network
                .static_address
                .map(|a| a.address.to_string())
                .as_deref(),
            Some("192.168.1.10/24")
        );
    }
}
