//! systemd units the plan writes: typed mount units ([`MountUnit`]), and
//! unit names with the escaping `systemd-escape --path` does, so mount and
//! device units get the names systemd expects for their paths.

/// `systemd-escape --path PATH`: `/var/mnt/data` -> `var-mnt-data`.
pub fn escape_path(path: &str) -> String {
    let trimmed = path.trim_matches('/');
    if trimmed.is_empty() {
        return "-".to_string();
    }
    let mut out = String::with_capacity(trimmed.len());
    let mut prev_slash = false;
    for (i, b) in trimmed.bytes().enumerate() {
        match b {
            b'/' if prev_slash => continue, // `a//b` is `a/b`
            b'/' => out.push('-'),
            b'.' if i == 0 => out.push_str("\\x2e"),
            b if b.is_ascii_alphanumeric() || b == b':' || b == b'_' || b == b'.' => {
                out.push(b as char)
            }
            b => out.push_str(&format!("\\x{b:02x}")),
        }
        prev_slash = b == b'/';
    }
    out
}

/// The mount unit systemd requires for a mount point.
pub fn mount_unit(path: &str) -> String {
    format!("{}.mount", escape_path(path))
}

/// The device unit systemd creates for a device node or link.
pub fn device_unit(path: &str) -> String {
    format!("{}.device", escape_path(path))
}

/// A mount unit, typed: its name follows from `where_`, and every value
/// is written once, in the order systemd.mount(5) documents them.
#[derive(Debug, Clone, PartialEq)]
pub struct MountUnit {
    /// `#` lines at the top of the file, saying why it exists.
    pub comment: Vec<String>,
    pub description: String,
    pub requires: Vec<String>,
    pub after: Vec<String>,
    pub before: Vec<String>,
    pub what: String,
    pub where_: String,
    pub fs_type: String,
    pub options: Vec<String>,
    pub wanted_by: String,
}

impl MountUnit {
    /// The name systemd requires: the escaped mount point.
    pub fn name(&self) -> String {
        mount_unit(&self.where_)
    }

    pub fn render(&self) -> String {
        let mut s = String::new();
        for line in &self.comment {
            s.push_str(&format!("# {line}\n"));
        }
        s.push_str("[Unit]\n");
        s.push_str(&format!("Description={}\n", self.description));
        for (key, units) in [
            ("Requires", &self.requires),
            ("After", &self.after),
            ("Before", &self.before),
        ] {
            if !units.is_empty() {
                s.push_str(&format!("{key}={}\n", units.join(" ")));
            }
        }
        s.push_str(&format!(
            "\n[Mount]\nWhat={}\nWhere={}\nType={}\nOptions={}\n",
            self.what,
            self.where_,
            self.fs_type,
            self.options.join(",")
        ));
        s.push_str(&format!("\n[Install]\nWantedBy={}\n", self.wanted_by));
        s
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn escapes_like_systemd_escape() {
        // Values printed by `systemd-escape --path` (systemd 252).
        assert_eq!(escape_path("/var/mnt/data"), "var-mnt-data");
        assert_eq!(escape_path("/"), "-");
        assert_eq!(escape_path("/etc/kubernetes/"), "etc-kubernetes");
        assert_eq!(
            escape_path("/dev/disk/by-label/my-data"),
            "dev-disk-by\\x2dlabel-my\\x2ddata"
        );
        assert_eq!(escape_path("/var/lib/.hidden"), "var-lib-.hidden");
        assert_eq!(escape_path("/.x"), "\\x2ex");
        assert_eq!(escape_path("/a b+c@d"), "a\\x20b\\x2bc\\x40d");
        assert_eq!(mount_unit("/var/lib/etcd"), "var-lib-etcd.mount");
    }

    #[test]
    fn a_mount_unit_is_named_for_its_mount_point_and_leaves_out_empty_lists() {
        let u = MountUnit {
            comment: vec!["why".into()],
            description: "d".into(),
            requires: vec!["a.mount".into(), "b.service".into()],
            after: vec![],
            before: vec!["c.service".into()],
            what: "/var/mnt/data/state/var/lib/my-app".into(),
            where_: "/var/lib/my-app".into(),
            fs_type: "none".into(),
            options: vec!["bind".into(), "nofail".into()],
            wanted_by: "multi-user.target".into(),
        };
        assert_eq!(u.name(), "var-lib-my\\x2dapp.mount");
        assert_eq!(
            u.render(),
            "# why\n[Unit]\nDescription=d\nRequires=a.mount b.service\nBefore=c.service\n\n[Mount]\nWhat=/var/mnt/data/state/var/lib/my-app\nWhere=/var/lib/my-app\nType=none\nOptions=bind,nofail\n\n[Install]\nWantedBy=multi-user.target\n"
        );
    }
}
