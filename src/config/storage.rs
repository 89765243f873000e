//! `[storage]` as the user wrote it: the data drives, the btrfs pool on them,
//! the paths kept there and the NFS export. Every value is a newtype that
//! parses once and says how to fix a mistake.

use super::CheckedList;
use serde::Deserialize;
use std::fmt;
use std::str::FromStr;
use toml::Spanned;

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct StorageConfig {
    /// Whole drives, by their stable `/dev/disk/by-id/` names.
    #[serde(default)]
    pub drives: CheckedList<DrivePath>,
    #[serde(default = "default_label")]
    pub label: Spanned<PoolLabel>,
    /// Data and metadata profile; raid1 for two or more drives, else single.
    pub profile: Option<Spanned<Profile>>,
    #[serde(default = "default_mount")]
    pub mount: Spanned<StatePath>,
    #[serde(default)]
    pub compress: Compress,
    /// Paths kept on the pool, in addition to what the features need
    /// (`plan::storage::StorageNeeds`).
    #[serde(default)]
    pub persist: CheckedList<StatePath>,
    /// How long a boot waits for the listed drives to appear.
    #[serde(default = "default_device_timeout")]
    pub device_timeout_secs: Spanned<u32>,
    /// Who may mount `<mount>/exports` over NFS (exports(5) client names).
    #[serde(default = "default_nfs_clients")]
    pub nfs_clients: CheckedList<NfsClient>,
    /// The NFS server container's image, pinned as NAME:TAG@sha256:DIGEST,
    /// on an OS without an NFS server of its own (checked by the plan).
    pub nfs_image: Option<Spanned<String>>,
}

fn default_label() -> Spanned<PoolLabel> {
    Spanned::new(0..0, PoolLabel("data".into()))
}

fn default_mount() -> Spanned<StatePath> {
    Spanned::new(0..0, StatePath("/var/mnt/data".into()))
}

fn default_device_timeout() -> Spanned<u32> {
    Spanned::new(0..0, 90)
}

fn default_nfs_clients() -> CheckedList<NfsClient> {
    CheckedList::from_values(vec![NfsClient("127.0.0.1".into())])
}

/// A drive's stable name under `/dev/disk/by-id/`.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Deserialize, serde::Serialize)]
#[serde(try_from = "String", into = "String")]
pub struct DrivePath(String);
string_newtype!(DrivePath);

pub const BY_ID: &str = "/dev/disk/by-id/";

impl FromStr for DrivePath {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        let how = "list the drive by its stable name from /dev/disk/by-id/ (on the server, `ls -l /dev/disk/by-id/` shows which name points at which sdX)";
        let kernel_names = [
            "/dev/sd",
            "/dev/hd",
            "/dev/vd",
            "/dev/xvd",
            "/dev/nvme",
            "/dev/mmcblk",
        ];
        if kernel_names.iter().any(|p| s.starts_with(p)) {
            return Err(format!(
                "`{s}` is a kernel name, and kernel names change between boots (a USB stick plugged in can turn sdb into sdc), so mkstick could pick the wrong drive; {how}"
            ));
        }
        if let Some(kind) = ["by-uuid", "by-label", "by-partuuid", "by-partlabel"]
            .iter()
            .find(|k| s.starts_with(&format!("/dev/disk/{k}/")))
        {
            return Err(format!(
                "`{s}` names a filesystem or partition ({kind}), which changes when the drive is formatted; {how}"
            ));
        }
        if s.starts_with("/dev/disk/by-path/") {
            return Err(format!(
                "`{s}` names a port, not a drive: moving the drive to another port would lose it; {how}"
            ));
        }
        let Some(name) = s.strip_prefix(BY_ID) else {
            return Err(format!("`{s}` is not a /dev/disk/by-id/ name; {how}"));
        };
        if name.is_empty() || name.contains('/') {
            return Err(format!(
                "`{s}` is not one name under /dev/disk/by-id/; {how}"
            ));
        }
        if let Some(c) = name
            .chars()
            .find(|c| !(c.is_ascii_alphanumeric() || "._:+@=,-".contains(*c)))
        {
            return Err(format!(
                "`{s}` contains {c:?}; udev names under /dev/disk/by-id/ use letters, digits and ._:+@=,- only; copy the name from `ls /dev/disk/by-id/`"
            ));
        }
        // udev's 60-persistent-storage.rules names partitions
        // `<disk id>-part<N>`; mkstick needs the whole drive.
        if let Some((disk, n)) = name.rsplit_once("-part") {
            if !disk.is_empty() && !n.is_empty() && n.bytes().all(|b| b.is_ascii_digit()) {
                return Err(format!(
                    "`{s}` is partition {n} of a drive, and mkstick pools whole drives; use the drive itself: `{BY_ID}{disk}`"
                ));
            }
        }
        Ok(DrivePath(s.to_string()))
    }
}

impl DrivePath {
    /// The name under `/dev/disk/by-id/`.
    pub fn id(&self) -> &str {
        &self.0[BY_ID.len()..]
    }
}

/// The btrfs label that identifies the pool.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, serde::Serialize)]
#[serde(try_from = "String", into = "String")]
pub struct PoolLabel(String);
string_newtype!(PoolLabel);

impl FromStr for PoolLabel {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        let ok = !s.is_empty()
            && s.len() <= 32
            && s.chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_');
        if !ok {
            return Err(format!(
                "label `{s}` must be 1 to 32 letters, digits, `-` or `_` (it becomes /dev/disk/by-label/<label>), like \"data\""
            ));
        }
        Ok(PoolLabel(s.to_string()))
    }
}

/// A btrfs profile for data and metadata.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Profile {
    Single,
    Raid1,
    Raid1c3,
}

impl Profile {
    pub fn as_str(self) -> &'static str {
        match self {
            Profile::Single => "single",
            Profile::Raid1 => "raid1",
            Profile::Raid1c3 => "raid1c3",
        }
    }

    /// How many drives the profile needs.
    pub fn min_drives(self) -> usize {
        match self {
            Profile::Single => 1,
            Profile::Raid1 => 2,
            Profile::Raid1c3 => 3,
        }
    }

    /// How many drives may fail without losing data.
    pub fn tolerates(self) -> usize {
        self.min_drives() - 1
    }
}

impl fmt::Display for Profile {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for Profile {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "single" => Ok(Profile::Single),
            "raid1" => Ok(Profile::Raid1),
            "raid1c3" => Ok(Profile::Raid1c3),
            "raid5" | "raid6" => Err(format!(
                "profile `{s}` is refused: btrfs {s} can lose data after a crash or power cut (the write hole) and is not recommended by btrfs itself; use \"raid1\" (2+ drives) or \"raid1c3\" (3+ drives)"
            )),
            _ => Err(format!(
                "unknown profile `{s}`; use \"single\" (no redundancy), \"raid1\" (two copies, 2+ drives) or \"raid1c3\" (three copies, 3+ drives)"
            )),
        }
    }
}

impl<'de> Deserialize<'de> for Profile {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        String::deserialize(d)?
            .parse()
            .map_err(serde::de::Error::custom)
    }
}

/// A btrfs `compress=` value.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, serde::Serialize)]
#[serde(try_from = "String", into = "String")]
pub struct Compress(String);
string_newtype!(Compress);

impl Default for Compress {
    fn default() -> Self {
        Compress("zstd".into())
    }
}

impl FromStr for Compress {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        let (algo, level) = match s.split_once(':') {
            Some((a, l)) => (a, Some(l)),
            None => (s, None),
        };
        let max_level = match algo {
            "zstd" => 15,
            "zlib" => 9,
            "lzo" | "none" => 0,
            _ => 0,
        };
        let known = ["zstd", "zlib", "lzo", "none"].contains(&algo);
        let level_ok = match level {
            None => true,
            Some(l) => l.parse::<u32>().is_ok_and(|n| (1..=max_level).contains(&n)),
        };
        if !known || !level_ok {
            return Err(format!(
                "compress `{s}` is not a btrfs compression; use \"zstd\" (the default), \"zstd:1\" to \"zstd:15\", \"zlib\", \"zlib:1\" to \"zlib:9\", \"lzo\" or \"none\""
            ));
        }
        Ok(Compress(s.to_string()))
    }
}

impl Compress {
    /// The mount option, if any.
    pub fn mount_option(&self) -> Option<String> {
        (self.0 != "none").then(|| format!("compress={}", self.0))
    }
}

/// An absolute path under `/var` or `/etc` on the booted OS: the data
/// mount point, or a directory kept on the pool.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Deserialize, serde::Serialize)]
#[serde(try_from = "String", into = "String")]
pub struct StatePath(String);
string_newtype!(StatePath);

impl FromStr for StatePath {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        if !s.starts_with('/') {
            return Err(format!(
                "`{s}` is not an absolute path; write it from the root, like \"/var/lib/myapp\""
            ));
        }
        if s.len() > 1 && s.ends_with('/') {
            return Err(format!(
                "`{s}` ends in `/`; write it without, like \"{}\"",
                s.trim_end_matches('/')
            ));
        }
        if s.split('/')
            .skip(1)
            .any(|p| p.is_empty() || p == "." || p == "..")
        {
            return Err(format!(
                "`{s}` has an empty, `.` or `..` part; write the plain path"
            ));
        }
        if let Some(c) = s
            .chars()
            .find(|c| !(c.is_ascii_alphanumeric() || "/._+@-".contains(*c)))
        {
            return Err(format!(
                "`{s}` contains {c:?}; use letters, digits and /._+@- only"
            ));
        }
        let links = ["/home", "/root", "/srv", "/opt", "/mnt", "/usr/local"];
        if let Some(l) = links
            .iter()
            .find(|l| s == **l || s.starts_with(&format!("{l}/")))
        {
            return Err(format!(
                "`{s}`: on Fedora CoreOS {l} is a link into /var (or read-only), so mount units cannot use it; write the path under /var (like /var{s}) instead"
            ));
        }
        if s == "/var" || s == "/etc" {
            return Err(format!(
                "`{s}` is all of {s}; the live OS writes there at every boot, so name a directory under it instead"
            ));
        }
        if !(s.starts_with("/var/") || s.starts_with("/etc/")) {
            return Err(format!(
                "`{s}` is outside /etc and /var; only those hold state on Fedora CoreOS and Flatcar (/usr is read-only), so write a path under /var or /etc"
            ));
        }
        Ok(StatePath(s.to_string()))
    }
}

impl StatePath {
    pub fn from_static(s: &'static str) -> StatePath {
        s.parse().expect("built-in paths are valid")
    }

    /// Whether `other` is this path or below it.
    pub fn contains(&self, other: &StatePath) -> bool {
        other.0 == self.0 || other.0.starts_with(&format!("{}/", self.0))
    }
}

/// A client of the NFS export, as exports(5) writes it: a host name, an IP
/// address or a network (`192.168.1.0/24`), or a wildcard (`*.lan`).
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, serde::Serialize)]
#[serde(try_from = "String", into = "String")]
pub struct NfsClient(String);
string_newtype!(NfsClient);

impl FromStr for NfsClient {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        let ok = !s.is_empty()
            && s.len() <= 253
            && s.chars()
                .all(|c| c.is_ascii_alphanumeric() || ".:/*?_-".contains(c));
        if !ok {
            return Err(format!(
                "NFS client `{s}` is not a host, address or network; write it like \"127.0.0.1\", \"192.168.1.0/24\" or \"*.lan\" (no options: mkstick sets them)"
            ));
        }
        if s == "*" {
            return Err(
                "NFS client `*` would let anyone who can reach the server read and write the export as root; name your network instead, like \"192.168.1.0/24\"".into(),
            );
        }
        Ok(NfsClient(s.to_string()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn drives_must_be_by_id_names() {
        let d: DrivePath = "/dev/disk/by-id/ata-WDC_WD40EFRX-68N32N0_WD-WCC7K0XXXXXX"
            .parse()
            .unwrap();
        assert_eq!(d.id(), "ata-WDC_WD40EFRX-68N32N0_WD-WCC7K0XXXXXX");
        let e = "/dev/sdb".parse::<DrivePath>().unwrap_err();
        assert!(e.contains("kernel name") && e.contains("by-id"), "{e}");
        for bad in [
            "/dev/nvme0n1",
            "/dev/disk/by-uuid/1234",
            "/dev/disk/by-path/pci-0000:00:1f.2-ata-1",
            "/dev/disk/by-id/",
            "/dev/disk/by-id/a/b",
            "/dev/disk/by-id/a b",
            "sdb",
        ] {
            assert!(bad.parse::<DrivePath>().is_err(), "{bad}");
        }
        let e = "/dev/disk/by-id/ata-WDC_WD40EFRX-68N32N0_WD-WCC7K0XXXXXX-part1"
            .parse::<DrivePath>()
            .unwrap_err();
        assert!(
            e.contains("partition 1")
                && e.ends_with("`/dev/disk/by-id/ata-WDC_WD40EFRX-68N32N0_WD-WCC7K0XXXXXX`"),
            "{e}"
        );
        // `-part` inside a model name is not a partition suffix.
        assert!("/dev/disk/by-id/usb-Ext-parts_Disk-0:0"
            .parse::<DrivePath>()
            .is_ok());
    }

    #[test]
    fn profiles_refuse_raid56_and_know_their_drive_counts() {
        assert_eq!("raid1c3".parse::<Profile>().unwrap().min_drives(), 3);
        let e = "raid5".parse::<Profile>().unwrap_err();
        assert!(e.contains("write hole"), "{e}");
        assert!("raid10".parse::<Profile>().is_err());
    }

    #[test]
    fn compress_values() {
        for ok in ["zstd", "zstd:3", "zlib:9", "lzo", "none"] {
            assert!(ok.parse::<Compress>().is_ok(), "{ok}");
        }
        for bad in ["zstd:0", "zstd:16", "lz4", "zlib:x", ""] {
            assert!(bad.parse::<Compress>().is_err(), "{bad}");
        }
        assert_eq!(Compress::default().mount_option().unwrap(), "compress=zstd");
        assert_eq!("none".parse::<Compress>().unwrap().mount_option(), None);
    }

    #[test]
    fn state_paths_stay_under_etc_and_var() {
        for ok in ["/var/lib/etcd", "/etc/kubernetes", "/var/mnt/data"] {
            assert!(ok.parse::<StatePath>().is_ok(), "{ok}");
        }
        for bad in [
            "var/lib",
            "/var/lib/",
            "/var//lib",
            "/var/lib/../etc",
            "/usr/lib/x",
            "/home/core",
            "/opt/app",
            "/var/lib/my app",
            "/",
            "/var",
        ] {
            assert!(bad.parse::<StatePath>().is_err(), "{bad}");
        }
        let e = "/home/core".parse::<StatePath>().unwrap_err();
        assert!(e.contains("/var/home/core"), "{e}");
        let var_lib = StatePath::from_static("/var/lib");
        assert!(var_lib.contains(&StatePath::from_static("/var/lib/etcd")));
        assert!(!var_lib.contains(&StatePath::from_static("/var/library")));
    }

    #[test]
    fn nfs_clients_refuse_everyone() {
        assert!("192.168.1.0/24".parse::<NfsClient>().is_ok());
        assert!("*".parse::<NfsClient>().unwrap_err().contains("as root"));
        assert!("host(rw)".parse::<NfsClient>().is_err());
    }
}
