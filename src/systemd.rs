//! systemd units the plan writes. Their names use the escaping
//! `systemd-escape --path` does, so mount and device units get the names
//! systemd expects for their paths.

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
}
