//! `[os]` -> [`OsSource`]: a local OS directory, or a release to download.

use crate::config::LoadedConfig;
use anyhow::Result;
use std::path::PathBuf;
use toml::Spanned;

/// Fedora CoreOS's stream metadata, by stream name.
pub const FCOS_STREAM_URL: &str = "https://builds.coreos.fedoraproject.org/streams/{stream}.json";
/// Flatcar's releases, by channel: `<base>/<version or current>/`.
pub const FLATCAR_RELEASE_URL: &str = "https://{channel}.release.flatcar-linux.net/amd64-usr";

pub const FCOS_STREAMS: &[&str] = &["stable", "testing", "next"];
pub const FLATCAR_CHANNELS: &[&str] = &["stable", "beta", "alpha"];

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum OsSource {
    /// An OS directory holding `os.json`.
    Dir(PathBuf),
    Fcos(Release),
    Flatcar(Release),
}

/// A published release to fetch.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Release {
    /// The stream (FCOS) or channel (Flatcar).
    pub stream: String,
    pub version: Option<String>,
    /// The stream metadata URL (FCOS) or the channel's base URL (Flatcar).
    pub url: String,
    /// The Fedora CoreOS stream metadata whose live ISO gives the EFI boot
    /// chain (the same as `url` for Fedora CoreOS; see `flatcar.rs`).
    pub efi_stream_url: String,
}

/// A release version as publishers write them (`43.20261116.3.0`,
/// `4459.2.1`, `4799.0.0+nightly-20261101`): it starts with a digit and
/// holds only letters, digits and `.+-_`, so it is safe as a directory name.
/// Versions read from servers are held to the same rule.
pub fn is_release_version(v: &str) -> bool {
    !v.is_empty()
        && v.len() <= 64
        && v.starts_with(|c: char| c.is_ascii_digit())
        && v.chars()
            .all(|c| c.is_ascii_alphanumeric() || ".+-_".contains(c))
}

impl OsSource {
    /// Resolve `[os]`; `cli_dir` (`--os-dir`) wins over everything.
    pub fn from_config(loaded: &LoadedConfig, cli_dir: Option<&PathBuf>) -> Result<OsSource> {
        let os = &loaded.config.os;
        if let Some(dir) = cli_dir {
            return Ok(OsSource::Dir(dir.clone()));
        }
        let err =
            |v: &Spanned<String>, msg: String| -> anyhow::Error { loaded.error_at(v, msg).into() };
        if let Some(p) = &os.path {
            let others = [
                ("distro", &os.distro),
                ("stream", &os.stream),
                ("version", &os.version),
                ("stream-url", &os.stream_url),
                ("release-url", &os.release_url),
            ];
            let given: Vec<_> = others
                .into_iter()
                .filter_map(|(key, v)| v.as_ref().map(|v| (key, v)))
                .collect();
            if let Some((_, first)) = given.first() {
                let keys: Vec<String> = given.iter().map(|(k, _)| format!("`{k}`")).collect();
                return Err(err(
                    first,
                    format!(
                        "[os] has both `path` (a local OS directory) and a release to download; to use `path`, remove or comment out {}; to download, remove `path`",
                        keys.join(" and ")
                    ),
                ));
            }
            let dir = loaded.resolve(p.get_ref());
            if !dir.is_dir() {
                return Err(loaded
                    .error_at(
                        p,
                        format!(
                            "the OS directory {} does not exist; build one (scripts/build-test-os DIR), fix the path, or remove `path` to download Fedora CoreOS",
                            dir.display()
                        ),
                    )
                    .into());
            }
            return Ok(OsSource::Dir(dir));
        }
        let distro = os.distro.as_ref().map(|d| d.get_ref().as_str());
        let flatcar = match distro {
            None | Some("fedora-coreos") => false,
            Some("flatcar") => true,
            Some(other) => {
                let hint = crate::config::nearest(other, &["fedora-coreos", "flatcar"])
                    .map(|n| format!(" (did you mean `{n}`?)"))
                    .unwrap_or_default();
                return Err(err(
                    os.distro.as_ref().expect("distro is set in this arm"),
                    format!("unknown distro `{other}`{hint}; use \"fedora-coreos\" or \"flatcar\""),
                ));
            }
        };
        let (valid, word) = if flatcar {
            (FLATCAR_CHANNELS, "Flatcar channel")
        } else {
            (FCOS_STREAMS, "Fedora CoreOS stream")
        };
        let stream = match &os.stream {
            None => "stable".to_string(),
            Some(s) if valid.contains(&s.get_ref().as_str()) => s.get_ref().clone(),
            Some(s) => {
                return Err(err(
                    s,
                    format!(
                        "`{}` is not a {word}; use one of {}",
                        s.get_ref(),
                        valid
                            .iter()
                            .map(|v| format!("\"{v}\""))
                            .collect::<Vec<_>>()
                            .join(", ")
                    ),
                ))
            }
        };
        let version = match &os.version {
            None => None,
            Some(v) => {
                let t = v.get_ref();
                if !is_release_version(t) {
                    let example = if flatcar {
                        "4459.2.1"
                    } else {
                        "43.20261020.3.0"
                    };
                    return Err(err(
                        v,
                        format!("`{t}` is not a release version; write it as published, like \"{example}\", or leave `version` out for the newest"),
                    ));
                }
                if let Some(why) = flatcar.then(|| unusable_release(t)).flatten() {
                    return Err(err(v, why));
                }
                Some(t.clone())
            }
        };
        if let (false, Some(u)) = (flatcar, &os.release_url) {
            return Err(err(
                u,
                "`release-url` is Flatcar's; for Fedora CoreOS use `stream-url`".to_string(),
            ));
        }
        let check_url = |u: &Spanned<String>| -> Result<String> {
            check_url(u.get_ref()).map_err(|m| err(u, m))
        };
        // Flatcar boots through Fedora's signed shim and GRUB, read from the
        // stable Fedora CoreOS live ISO (flatcar.rs says why).
        let efi_stream_url = match &os.stream_url {
            Some(u) => check_url(u)?,
            None if flatcar => FCOS_STREAM_URL.replace("{stream}", "stable"),
            None => FCOS_STREAM_URL.replace("{stream}", &stream),
        };
        let url = match (&os.release_url, flatcar) {
            (Some(u), true) => check_url(u)?,
            (None, true) => FLATCAR_RELEASE_URL.replace("{channel}", &stream),
            (_, false) => efi_stream_url.clone(),
        };
        let release = Release {
            stream,
            version,
            url,
            efi_stream_url,
        };
        Ok(if flatcar {
            OsSource::Flatcar(release)
        } else {
            OsSource::Fcos(release)
        })
    }
}

/// An http(s) URL to download from, with no user name; plain http only from
/// this machine (a local mirror, the tests), since metadata and tables carry
/// the digests downloads are checked against. Returns it without a trailing `/`.
pub fn check_url(u: &str) -> Result<String, String> {
    let t = u.trim_end_matches('/');
    if !(t.starts_with("https://") || t.starts_with("http://")) || t.contains(' ') {
        return Err(format!("`{t}` is not an http(s) URL"));
    }
    let authority = t
        .split_once("://")
        .map(|(_, rest)| rest.split(['/', '?', '#']).next().unwrap_or(""))
        .unwrap_or("");
    let host = authority
        .rsplit_once(':')
        .filter(|(_, port)| port.chars().all(|c| c.is_ascii_digit()))
        .map_or(authority, |(h, _)| h);
    let local = matches!(host, "127.0.0.1" | "localhost" | "[::1]");
    if authority.contains('@') {
        return Err(format!("`{t}` carries a user name; leave it out"));
    }
    if t.starts_with("http://") && !local {
        return Err(format!(
            "`{t}` is plain http; the metadata carries the digests mkstick checks downloads against, so use https (plain http only for 127.0.0.1 or localhost)"
        ));
    }
    Ok(t.to_string())
}

/// Releases whose two-stage initrd drops the contents of appended initrds,
/// so a stick's config (`usr/share/oem/config.ign`) never reaches Ignition
/// and the server boots with no users and no keys: flatcar/Flatcar#2023,
/// brought in with the two-stage initrd (flatcar/scripts `5f1944b072`),
/// fixed by `changelog/bugfixes/2026-03-03-pxe-oem.md`. Ranges read from
/// the release tags that carry each change; no stable or LTS release was
/// affected. (channel, first broken, last broken, first fixed)
const DROPS_APPENDED_INITRDS: [(&str, [u64; 3], [u64; 3], &str); 2] = [
    ("alpha", [4487, 0, 0], [4628, 0, 0], "4669.0.0"),
    ("beta", [4515, 1, 0], [4593, 1, 0], "4628.1.0"),
];

/// Why a Flatcar release cannot boot from a stick, if it cannot.
pub fn unusable_release(version: &str) -> Option<String> {
    let parts: Vec<u64> = version
        .split('.')
        .map(|p| p.parse().ok())
        .collect::<Option<Vec<u64>>>()?;
    let v: [u64; 3] = parts.try_into().ok()?;
    DROPS_APPENDED_INITRDS
        .iter()
        // A channel's releases share the middle number (alpha .0, beta .1).
        .find(|(_, first, last, _)| v[1] == first[1] && *first <= v && v <= *last)
        .map(|(channel, _, _, fixed)| {
            format!(
                "Flatcar {version} drops the config a stick carries: its two-stage initrd discards appended initrds (flatcar/Flatcar#2023), so the server would boot with no users and no keys; use {channel} {fixed} or later, or the stable channel (4593.2.0 and later are fixed)"
            )
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn releases_that_drop_the_stick_config_are_refused() {
        for (version, refused) in [
            ("4486.0.0", false),
            ("4487.0.0", true),
            ("4600.0.0", true),
            ("4628.0.0", true),
            ("4669.0.0", false),
            ("4514.1.0", false),
            ("4515.1.0", true),
            ("4593.1.0", true),
            ("4628.1.0", false),
            // Stable and LTS were never affected, whatever their number.
            ("4593.2.0", false),
            ("4515.2.1", false),
            ("4600.3.0", false),
            ("4459.2.1", false),
            ("not.a.version", false),
        ] {
            let why = unusable_release(version);
            assert_eq!(why.is_some(), refused, "{version}: {why:?}");
            if let Some(why) = why {
                assert!(why.contains("flatcar/Flatcar#2023"), "{why}");
                assert!(why.contains("or later"), "{why}");
            }
        }
        assert!(unusable_release("4600.0.0")
            .unwrap()
            .contains("alpha 4669.0.0"));
        assert!(unusable_release("4593.1.0")
            .unwrap()
            .contains("beta 4628.1.0"));
    }
}
