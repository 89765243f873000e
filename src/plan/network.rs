//! `[network]` -> [`NetworkPlan`]: DHCP, or one static IPv4 address,
//! rendered for the OS's network stack.
//!
//! - Fedora CoreOS: a NetworkManager keyfile in
//!   `/etc/NetworkManager/system-connections/`, mode 0600 (NetworkManager
//!   ignores keyfiles that others can read: nm-settings-keyfile(5); the
//!   place and the fields as fedora-coreos-docs
//!   `sysconfig-network-configuration.adoc` writes them through Ignition).
//!   A keyfile in the real root also stops the initramfs's network settings
//!   from being carried over (fedora-coreos-config
//!   `35coreos-ignition/coreos-teardown-initramfs.sh`).
//! - Flatcar and the Debian test OS: a systemd-networkd unit in
//!   `/etc/systemd/network/` named `00-…`, so that it sorts before
//!   Flatcar's catch-all DHCP units (flatcar/init
//!   `systemd/network/yy-pxe.network`, `zz-default.network`): networkd
//!   applies the first file that matches a link (systemd.network(5)).
//!
//! Other interfaces keep DHCP, as the OS does by default.

use crate::config::network::{DnsServer, HostAddress};
use crate::config::{LoadedConfig, SourceError};
use crate::os::NetworkStack;
use crate::plan::OverlayFile;
use anyhow::Result;
use std::net::Ipv4Addr;

/// Where the static address's file goes on each stack.
pub const NETWORKD_FILE: &str = "/etc/systemd/network/00-mkstick-static.network";
pub const KEYFILE: &str = "/etc/NetworkManager/system-connections/mkstick-static.nmconnection";

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct NetworkPlan {
    /// `None`: every interface uses DHCP.
    pub static_address: Option<StaticAddress>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StaticAddress {
    pub link: Link,
    pub address: HostAddress,
    pub gateway: Option<Ipv4Addr>,
    pub dns: Vec<DnsServer>,
}

/// Which interface the address goes on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Link {
    Name(String),
    Mac(String),
}

impl std::fmt::Display for Link {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Link::Name(n) => write!(f, "interface {n}"),
            Link::Mac(m) => write!(f, "the interface with MAC {m}"),
        }
    }
}

impl NetworkPlan {
    pub fn from_config(loaded: &LoadedConfig) -> Result<NetworkPlan> {
        let Some(n) = &loaded.config.network else {
            return Ok(NetworkPlan::default());
        };
        let err = |at: usize, msg: String| -> anyhow::Error {
            SourceError::at(&loaded.path, &loaded.text, at, msg).into()
        };
        let table_at = loaded.table_at("network").unwrap_or(0);
        let Some(address) = &n.address else {
            // Only DHCP: the other keys would do nothing.
            let stray = [
                n.interface.as_ref().map(|v| ("interface", v.span().start)),
                n.mac.as_ref().map(|v| ("mac", v.span().start)),
                n.gateway.as_ref().map(|v| ("gateway", v.span().start)),
                n.dns.spanned().next().map(|(s, _)| ("dns", s.start)),
            ];
            if let Some((key, at)) = stray.into_iter().flatten().next() {
                return Err(err(
                    at,
                    format!("`{key}` is for a static address, and [network] sets none, so the server uses DHCP and `{key}` would do nothing; add address = \"192.168.1.10/24\" (your server's address), or remove `{key}`"),
                ));
            }
            return Ok(NetworkPlan::default());
        };
        let a = *address.get_ref();
        let link = match (&n.interface, &n.mac) {
            (Some(i), None) => Link::Name(i.get_ref().to_string()),
            (None, Some(m)) => Link::Mac(m.get_ref().to_string()),
            (Some(_), Some(m)) => {
                return Err(err(
                    m.span().start,
                    "[network] names the interface twice, by `interface` and by `mac`; keep one (mac stays right when a new kernel renames the interface)".into(),
                ))
            }
            (None, None) => {
                return Err(err(
                    table_at,
                    format!("[network] sets address = \"{a}\" but not which interface it goes on; add mac = \"52:54:00:12:34:56\" (`ip link` on the server shows it after link/ether) or interface = \"enp1s0\""),
                ))
            }
        };
        let gateway = match &n.gateway {
            Some(g) => {
                let ip = *g.get_ref();
                if ip == a.ip {
                    return Err(err(
                        g.span().start,
                        format!("the gateway {ip} is the server's own address; write your router's address, like \"{}\"", first_host(a)),
                    ));
                }
                if !a.contains(ip) {
                    return Err(err(
                        g.span().start,
                        format!("the gateway {ip} is not on the server's network {}/{}, so it cannot be reached; write your router's address on that network, like \"{}\", or fix address's prefix", a.network(), a.prefix, first_host(a)),
                    ));
                }
                Some(ip)
            }
            None => None,
        };
        Ok(NetworkPlan {
            static_address: Some(StaticAddress {
                link,
                address: a,
                gateway,
                dns: n.dns.iter().copied().collect(),
            }),
        })
    }

    /// The file that gives the static address on `stack`, if there is one.
    pub fn overlay(&self, stack: NetworkStack) -> Vec<OverlayFile> {
        let Some(s) = &self.static_address else {
            return Vec::new();
        };
        let (path, mode, contents) = match stack {
            NetworkStack::NetworkManager => (KEYFILE, 0o600, s.keyfile()),
            NetworkStack::Networkd => (NETWORKD_FILE, 0o644, s.networkd_unit()),
        };
        vec![OverlayFile::File {
            path: path.to_string(),
            mode,
            contents: contents.into_bytes(),
        }]
    }
}

/// `.1` of the network: the usual router, for examples in errors.
fn first_host(a: HostAddress) -> Ipv4Addr {
    Ipv4Addr::from(u32::from(a.network()) + 1)
}

const HEADER: &str = "# Written by mkstick from [network] in mkstick.toml, at every boot.\n";

impl StaticAddress {
    /// A systemd.network(5) unit.
    pub fn networkd_unit(&self) -> String {
        let mut s = format!("{HEADER}[Match]\n");
        match &self.link {
            Link::Name(n) => s.push_str(&format!("Name={n}\n")),
            Link::Mac(m) => s.push_str(&format!("MACAddress={m}\n")),
        }
        s.push_str(&format!("\n[Network]\nAddress={}\n", self.address));
        if let Some(g) = self.gateway {
            s.push_str(&format!("Gateway={g}\n"));
        }
        for d in &self.dns {
            s.push_str(&format!("DNS={d}\n"));
        }
        s
    }

    /// A NetworkManager keyfile (nm-settings-keyfile(5)): lists end in `;`.
    pub fn keyfile(&self) -> String {
        let mut s = format!("{HEADER}[connection]\nid=mkstick-static\ntype=ethernet\n");
        match &self.link {
            Link::Name(n) => s.push_str(&format!("interface-name={n}\n")),
            Link::Mac(m) => s.push_str(&format!("\n[ethernet]\nmac-address={m}\n")),
        }
        s.push_str(&format!(
            "\n[ipv4]\nmethod=manual\naddress1={}\n",
            self.address
        ));
        if let Some(g) = self.gateway {
            s.push_str(&format!("gateway={g}\n"));
        }
        // Each family's servers, as a keyfile list.
        let dns = |v4: bool| -> String {
            self.dns
                .iter()
                .filter(|d| d.0.is_ipv4() == v4)
                .map(|d| format!("{d};"))
                .collect()
        };
        let v4 = dns(true);
        if !v4.is_empty() {
            s.push_str(&format!("dns={v4}\n"));
        }
        // Boot fails visibly rather than coming up without the address
        // the cluster was made with.
        s.push_str("may-fail=false\n");
        let v6 = dns(false);
        if !v6.is_empty() {
            s.push_str(&format!("\n[ipv6]\nmethod=auto\ndns={v6}\n"));
        }
        s
    }
}

impl std::fmt::Display for StaticAddress {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} on {}", self.address, self.link)?;
        if let Some(g) = self.gateway {
            write!(f, ", gateway {g}")?;
        }
        if !self.dns.is_empty() {
            let d: Vec<String> = self.dns.iter().map(|d| d.to_string()).collect();
            write!(f, ", DNS {}", d.join(", "))?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::Path;

    const NODE: &str = "[node]\nhostname = \"kube1\"\n";

    fn plan(network: &str) -> Result<NetworkPlan> {
        let text = format!("{NODE}\n[network]\n{network}");
        let config = crate::config::parse(Path::new("mkstick.toml"), &text)?;
        let loaded = LoadedConfig {
            path: "mkstick.toml".into(),
            text,
            config,
        };
        NetworkPlan::from_config(&loaded)
    }

    /// Compares with tests/golden/`name` (MKSTICK_BLESS=1 rewrites it).
    fn golden(name: &str, got: &[u8]) {
        let path = Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("tests/golden")
            .join(name);
        if std::env::var("MKSTICK_BLESS").as_deref() == Ok("1") {
            std::fs::create_dir_all(path.parent().unwrap()).unwrap();
            std::fs::write(&path, got).unwrap();
        }
        let want = std::fs::read(&path)
            .unwrap_or_else(|e| panic!("{}: {e}; run with MKSTICK_BLESS=1", path.display()));
        assert_eq!(
            String::from_utf8_lossy(got),
            String::from_utf8_lossy(&want),
            "{name}"
        );
    }

    fn error(network: &str) -> String {
        format!("{:#}", plan(network).unwrap_err())
    }

    #[test]
    fn a_static_address_renders_for_both_stacks() {
        let p = plan("mac = \"52:54:00:AB:CD:01\"\naddress = \"192.168.1.10/24\"\ngateway = \"192.168.1.1\"\ndns = [\"192.168.1.1\", \"2606:4700:4700::1111\"]\n").unwrap();
        for (stack, want_path, want_mode, name) in [
            (
                NetworkStack::NetworkManager,
                KEYFILE,
                0o600,
                "network/static-mac.nmconnection",
            ),
            (
                NetworkStack::Networkd,
                NETWORKD_FILE,
                0o644,
                "network/static-mac.network",
            ),
        ] {
            let files = p.overlay(stack);
            let OverlayFile::File {
                path,
                mode,
                contents,
            } = &files[0]
            else {
                panic!("{stack:?}: not a file")
            };
            assert_eq!((path.as_str(), *mode), (want_path, want_mode));
            golden(name, contents);
        }

        let p = plan("interface = \"enp1s0\"\naddress = \"10.0.2.50/24\"\n").unwrap();
        let s = p.static_address.as_ref().unwrap();
        assert_eq!(s.to_string(), "10.0.2.50/24 on interface enp1s0");
        golden("network/static-name.network", s.networkd_unit().as_bytes());
        golden("network/static-name.nmconnection", s.keyfile().as_bytes());
    }

    #[test]
    fn dhcp_writes_nothing() {
        assert!(plan("").unwrap().overlay(NetworkStack::Networkd).is_empty());
        let no_table = crate::config::parse(Path::new("m.toml"), NODE).unwrap();
        assert!(no_table.network.is_none());
    }

    #[test]
    fn mistakes_are_located_and_say_what_to_do() {
        let e = error("address = \"192.168.1.10/24\"\n");
        assert!(
            e.starts_with("mkstick.toml:4:1: [network] sets address") && e.contains("add mac ="),
            "{e}"
        );
        let e = error(
            "interface = \"enp1s0\"\nmac = \"52:54:00:12:34:56\"\naddress = \"192.168.1.10/24\"\n",
        );
        assert!(
            e.starts_with("mkstick.toml:6:7:") && e.contains("keep one"),
            "{e}"
        );
        let e = error("mac = \"52:54:00:12:34:56\"\naddress = \"192.168.1.10/24\"\ngateway = \"192.168.2.1\"\n");
        assert!(
            e.starts_with("mkstick.toml:7:11:")
                && e.contains("not on the server's network 192.168.1.0/24")
                && e.contains("like \"192.168.1.1\""),
            "{e}"
        );
        let e = error("mac = \"52:54:00:12:34:56\"\naddress = \"192.168.1.10/24\"\ngateway = \"192.168.1.10\"\n");
        assert!(e.contains("the server's own address"), "{e}");
        let e = error("gateway = \"192.168.1.1\"\n");
        assert!(
            e.starts_with("mkstick.toml:5:11:")
                && e.contains("uses DHCP and `gateway` would do nothing"),
            "{e}"
        );
        let e = error("mac = \"52:54:00:12:34:56\"\naddress = \"192.168.1.10/24\"\ndns = [\"1.1.1.1\", \"dns.lan\"]\n");
        assert!(
            e.starts_with("mkstick.toml:7:19:") && e.contains("not an IP address"),
            "{e}"
        );
        let e = error("address = \"192.168.1.10\"\n");
        assert!(
            e.starts_with("mkstick.toml:5:11:") && e.contains("no prefix length"),
            "{e}"
        );
        let e = error("adress = \"192.168.1.10/24\"\n");
        assert!(e.contains("did you mean `address`?"), "{e}");
    }
}
