//! `[network]` as the user wrote it: DHCP (the default, also with no
//! table), or one static IPv4 address on one interface. Values parse at the
//! edge; how they relate (the gateway inside the network, an interface
//! named) is checked in `plan::network`.

use super::CheckedList;
use serde::Deserialize;
use std::fmt;
use std::net::{IpAddr, Ipv4Addr};
use std::str::FromStr;
use toml::Spanned;

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct NetworkConfig {
    /// The interface the address goes on, by its kernel name (`ip link`).
    pub interface: Option<Spanned<InterfaceName>>,
    /// The interface the address goes on, by its MAC address: stable when
    /// a new kernel renames the interface.
    pub mac: Option<Spanned<MacAddress>>,
    /// The static address and its prefix, like `192.168.1.10/24`; DHCP
    /// when left out.
    pub address: Option<Spanned<HostAddress>>,
    pub gateway: Option<Spanned<Ipv4Addr>>,
    #[serde(default)]
    pub dns: CheckedList<DnsServer>,
}

/// A network interface's kernel name. The kernel refuses an empty name,
/// one of 16 bytes or more (IFNAMSIZ), `.` and `..`, and any name with `/`,
/// `:` or white space (linux `net/core/dev.c` dev_valid_name).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InterfaceName(String);
string_newtype!(InterfaceName);

impl FromStr for InterfaceName {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        let fix = "write the name `ip link` shows on the server, like \"enp1s0\", or use mac = \"…\" instead";
        if s.is_empty() || s.len() > 15 || s == "." || s == ".." {
            return Err(format!(
                "`{s}` cannot be an interface name (1 to 15 characters); {fix}"
            ));
        }
        if s.chars()
            .any(|c| c == '/' || c == ':' || c.is_whitespace() || c.is_control())
        {
            return Err(format!(
                "`{s}` cannot be an interface name (no `/`, `:` or spaces); {fix}"
            ));
        }
        Ok(InterfaceName(s.to_string()))
    }
}

/// An Ethernet MAC address, kept as lower-case hex pairs joined by colons:
/// the notation NetworkManager's keyfiles and systemd.network's
/// `MACAddress=` both document.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MacAddress(String);
string_newtype!(MacAddress);

impl FromStr for MacAddress {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        let fix = "write six hex pairs as `ip link` shows them after link/ether, like \"52:54:00:12:34:56\"";
        let parts: Vec<&str> = s.split([':', '-']).collect();
        let ok = parts.len() == 6
            && parts
                .iter()
                .all(|p| p.len() == 2 && p.bytes().all(|b| b.is_ascii_hexdigit()));
        if !ok {
            return Err(format!("`{s}` is not a MAC address; {fix}"));
        }
        let first = u8::from_str_radix(parts[0], 16).unwrap_or(0);
        if first & 1 == 1 {
            return Err(format!(
                "`{s}` is a multicast address, which no network card has; {fix}"
            ));
        }
        Ok(MacAddress(parts.join(":").to_ascii_lowercase()))
    }
}

/// The node's static IPv4 address with its network prefix.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HostAddress {
    pub ip: Ipv4Addr,
    pub prefix: u8,
}

impl HostAddress {
    fn mask(self) -> u32 {
        if self.prefix == 0 {
            0
        } else {
            u32::MAX << (32 - u32::from(self.prefix))
        }
    }

    /// Whether `other` is on this address's network.
    pub fn contains(self, other: Ipv4Addr) -> bool {
        u32::from(self.ip) & self.mask() == u32::from(other) & self.mask()
    }

    pub fn network(self) -> Ipv4Addr {
        Ipv4Addr::from(u32::from(self.ip) & self.mask())
    }
}

impl fmt::Display for HostAddress {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.ip, self.prefix)
    }
}

impl FromStr for HostAddress {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        let fix =
            "write the server's address and its network's prefix length, like \"192.168.1.10/24\"";
        let Some((ip, prefix)) = s.split_once('/') else {
            return Err(format!(
                "`{s}` has no prefix length, and a wrong guess cuts the server off its LAN; {fix}"
            ));
        };
        let ip: Ipv4Addr = ip.parse().map_err(|_| match ip.parse::<IpAddr>() {
            Ok(_) => format!(
                "`{s}` is an IPv6 address; mkstick sets a static IPv4 address (IPv6 stays automatic); {fix}"
            ),
            Err(_) => format!("`{s}` is not an IPv4 address; {fix}"),
        })?;
        let prefix: u8 = prefix
            .parse()
            .ok()
            .filter(|p| (8..=30).contains(p))
            .ok_or_else(|| {
                format!(
                    "`{s}`: the prefix length must be 8 to 30 (a home LAN is usually 24); {fix}"
                )
            })?;
        if ip.is_loopback() || ip.is_unspecified() || ip.is_multicast() || ip.is_broadcast() {
            return Err(format!(
                "`{s}` cannot be the server's LAN address; write the address other machines reach it at; {fix}"
            ));
        }
        let a = HostAddress { ip, prefix };
        let host_bits = u32::from(ip) & !a.mask();
        if host_bits == 0 || host_bits == !a.mask() {
            return Err(format!(
                "`{s}` is the {} address of {}/{prefix}, which no host may have; {fix}",
                if host_bits == 0 {
                    "network"
                } else {
                    "broadcast"
                },
                a.network()
            ));
        }
        Ok(a)
    }
}

/// A DNS server's address.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DnsServer(pub IpAddr);

impl FromStr for DnsServer {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        let ip: IpAddr = s.parse().map_err(|_| {
            format!("`{s}` is not an IP address; a DNS server is written like \"192.168.1.1\"")
        })?;
        if ip.is_unspecified() || ip.is_multicast() {
            return Err(format!(
                "`{s}` cannot be a DNS server; write your router's or resolver's address, like \"192.168.1.1\""
            ));
        }
        Ok(DnsServer(ip))
    }
}

impl fmt::Display for DnsServer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.fmt(f)
    }
}

deserialize_from_str!(HostAddress, InterfaceName, MacAddress);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn addresses_need_a_prefix_and_a_host_part() {
        let a: HostAddress = "192.168.1.10/24".parse().unwrap();
        assert_eq!(
            (a.to_string(), a.network()),
            ("192.168.1.10/24".into(), Ipv4Addr::new(192, 168, 1, 0))
        );
        assert!(a.contains(Ipv4Addr::new(192, 168, 1, 1)));
        assert!(!a.contains(Ipv4Addr::new(192, 168, 2, 1)));
        for (bad, says) in [
            ("192.168.1.10", "no prefix length"),
            ("192.168.1.0/24", "network address"),
            ("192.168.1.255/24", "broadcast address"),
            ("192.168.1.10/31", "8 to 30"),
            ("192.168.1.10/x", "8 to 30"),
            ("fd00::10/64", "IPv6"),
            ("kube1/24", "not an IPv4 address"),
            ("127.0.0.2/8", "cannot be the server's LAN address"),
        ] {
            let e = bad.parse::<HostAddress>().unwrap_err();
            assert!(e.contains(says), "{bad}: {e}");
        }
    }

    #[test]
    fn macs_are_normalized_and_names_follow_the_kernel() {
        let m: MacAddress = "52-54-00-AB-cd-01".parse().unwrap();
        assert_eq!(m.as_str(), "52:54:00:ab:cd:01");
        assert!("52:54:00:ab:cd".parse::<MacAddress>().is_err());
        assert!("01:00:5e:00:00:01"
            .parse::<MacAddress>()
            .unwrap_err()
            .contains("multicast"));
        assert!("enp1s0".parse::<InterfaceName>().is_ok());
        for bad in ["", ".", "enp1s0:1", "eth 0", "a-very-long-name0", "a/b"] {
            assert!(bad.parse::<InterfaceName>().is_err(), "{bad}");
        }
        assert!("1.1.1.1".parse::<DnsServer>().is_ok());
        assert!("2606:4700:4700::1111".parse::<DnsServer>().is_ok());
        assert!("dns.lan".parse::<DnsServer>().is_err());
    }
}
