//! Stage 0: `mkstick.toml` as the user wrote it -> [`StickConfig`].
//!
//! Every table denies unknown keys. Errors name the file, line and column,
//! say what is wrong and how to fix it, and suggest the nearest valid key.

/// `Display`, `as_str` and the `String` conversions serde uses
/// (`#[serde(try_from = "String", into = "String")]`) for a newtype over a
/// `String` whose `FromStr` does the checking. Defined before the modules
/// that use it.
macro_rules! string_newtype {
    ($name:ident) => {
        impl std::fmt::Display for $name {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str(&self.0)
            }
        }
        impl TryFrom<String> for $name {
            type Error = String;
            fn try_from(s: String) -> Result<Self, String> {
                s.parse()
            }
        }
        impl From<$name> for String {
            fn from(v: $name) -> String {
                v.0
            }
        }
        impl $name {
            pub fn as_str(&self) -> &str {
                &self.0
            }
        }
    };
}

/// `Deserialize` through `FromStr` (whose `Err` is the message), for
/// values that parse at the edge: an error names the value's own place.
macro_rules! deserialize_from_str {
    ($($t:ty),*) => {$(
        impl<'de> serde::Deserialize<'de> for $t {
            fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
                <String as serde::Deserialize>::deserialize(d)?
                    .parse()
                    .map_err(serde::de::Error::custom)
            }
        }
    )*};
}

pub mod kubernetes;
pub mod network;
mod starter;
pub mod storage;
pub mod types;

pub use starter::starter_config;
use types::{Hostname, KernelArg, PasswordHash, SshPublicKey, Timezone};

use crate::io::Sha256Digest;
use anyhow::{Context, Result};
use serde::Deserialize;
use std::fmt;
use std::path::{Path, PathBuf};
use toml::Spanned;

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct StickConfig {
    pub node: NodeConfig,
    #[serde(default)]
    pub os: OsConfig,
    #[serde(default)]
    pub boot: BootConfig,
    /// How the server gets its address: DHCP unless `[network]` sets one.
    pub network: Option<network::NetworkConfig>,
    pub storage: Option<storage::StorageConfig>,
    /// First-boot Kubernetes; left out, the stick boots the OS alone.
    pub kubernetes: Option<kubernetes::KubernetesConfig>,
    pub ingress: Option<kubernetes::IngressConfig>,
    pub nfs: Option<kubernetes::NfsClassConfig>,
    #[serde(default)]
    pub extra: ExtraConfig,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct NodeConfig {
    pub hostname: Hostname,
    #[serde(default)]
    pub ssh_authorized_keys: CheckedList<SshPublicKey>,
    pub password_hash: Option<PasswordHash>,
    #[serde(default)]
    pub timezone: Timezone,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct OsConfig {
    /// An OS directory (one holding `os.json`), relative to the config file.
    pub path: Option<Spanned<PathBuf>>,
    /// `fedora-coreos` (the default) or `flatcar`, downloaded and verified.
    pub distro: Option<Spanned<String>>,
    /// Fedora CoreOS's stream or Flatcar's channel (`channel` is accepted too).
    #[serde(alias = "channel")]
    pub stream: Option<Spanned<String>>,
    /// A pinned release; the stream's current one when left out.
    pub version: Option<Spanned<String>>,
    /// Where Fedora CoreOS's stream metadata is read from.
    pub stream_url: Option<Spanned<String>>,
    /// The base URL of Flatcar's releases.
    pub release_url: Option<Spanned<String>>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct BootConfig {
    #[serde(default)]
    pub kernel_args: CheckedList<KernelArg>,
    #[serde(default = "yes")]
    pub serial_console: bool,
    /// The main console; `None` is [`MainConsole::Screen`].
    pub console: Option<Spanned<MainConsole>>,
}

impl Default for BootConfig {
    fn default() -> Self {
        BootConfig {
            kernel_args: CheckedList::default(),
            serial_console: true,
            console: None,
        }
    }
}

impl BootConfig {
    pub fn main_console(&self) -> MainConsole {
        self.console
            .as_ref()
            .map_or_else(Default::default, |c| *c.get_ref())
    }
}

/// Which console is `/dev/console`: where systemd's status, Ignition's
/// errors and the emergency shell appear. The kernel gives it to the last
/// `console=` argument (kernel `Documentation/admin-guide/serial-console.rst`);
/// kernel messages go to every console.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize, serde::Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum MainConsole {
    /// The screen: a server with a monitor and no serial cable sees
    /// everything (Fedora CoreOS's choice on bare metal).
    #[default]
    Screen,
    /// The serial port ttyS0: headless servers, and the QEMU boot tests.
    Serial,
}

fn yes() -> bool {
    true
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct ExtraConfig {
    /// User Ignition configs (spec 3.x), merged through `ignition.config.merge`.
    #[serde(default)]
    pub ignition: Vec<Spanned<PathBuf>>,
    /// The user's Kubernetes manifests (files or directories), applied
    /// after mkstick's own at every boot.
    #[serde(default)]
    pub manifests: Vec<Spanned<PathBuf>>,
}

/// A list whose items are parsed after the TOML is read, so that an error
/// points at the bad item itself (toml reports errors inside an array at the
/// array's start).
#[derive(Debug, Clone)]
pub struct CheckedList<T> {
    items: Vec<(std::ops::Range<usize>, Result<T, String>)>,
}

impl<T> Default for CheckedList<T> {
    fn default() -> Self {
        CheckedList { items: Vec::new() }
    }
}

impl<'de, T: std::str::FromStr<Err = String>> Deserialize<'de> for CheckedList<T> {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let raw = Vec::<Spanned<String>>::deserialize(d)?;
        Ok(CheckedList {
            items: raw
                .into_iter()
                .map(|s| (s.span(), s.get_ref().parse()))
                .collect(),
        })
    }
}

impl<T> CheckedList<T> {
    /// A list of values that need no checking (defaults).
    pub fn from_values(values: Vec<T>) -> Self {
        CheckedList {
            items: values.into_iter().map(|v| (0..0, Ok(v))).collect(),
        }
    }

    /// The items that parsed, each with its byte range in the config.
    pub fn spanned(&self) -> impl Iterator<Item = (std::ops::Range<usize>, &T)> {
        self.items
            .iter()
            .filter_map(|(span, r)| r.as_ref().ok().map(|v| (span.clone(), v)))
    }

    /// The items that parsed; `parse` refuses a config with any other.
    pub fn iter(&self) -> impl Iterator<Item = &T> {
        self.items.iter().filter_map(|(_, r)| r.as_ref().ok())
    }

    pub fn len(&self) -> usize {
        self.items.len()
    }

    pub fn is_empty(&self) -> bool {
        self.items.is_empty()
    }

    /// The byte offset and message of the first item that did not parse.
    fn first_error(&self) -> Option<(usize, &str)> {
        self.items
            .iter()
            .find_map(|(span, r)| r.as_ref().err().map(|e| (span.start, e.as_str())))
    }
}

/// A config file as loaded: where it came from, its text and its values.
#[derive(Debug, Clone)]
pub struct LoadedConfig {
    pub path: PathBuf,
    pub text: String,
    pub config: StickConfig,
}

/// A mistake in a file the user wrote, located to the line and column.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SourceError {
    pub file: PathBuf,
    pub line: usize,
    pub column: usize,
    pub message: String,
}

impl fmt::Display for SourceError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{}:{}:{}: {}",
            self.file.display(),
            self.line,
            self.column,
            self.message
        )
    }
}

impl std::error::Error for SourceError {}

impl SourceError {
    /// Locate byte offset `at` of `text` as 1-based line and column.
    pub fn at(file: &Path, text: &str, at: usize, message: String) -> Self {
        let at = at.min(text.len());
        let before = &text.as_bytes()[..at];
        let line = before.iter().filter(|&&b| b == b'\n').count() + 1;
        let line_start = before
            .iter()
            .rposition(|&b| b == b'\n')
            .map_or(0, |p| p + 1);
        let column = String::from_utf8_lossy(&before[line_start..])
            .chars()
            .count()
            + 1;
        SourceError {
            file: file.to_path_buf(),
            line,
            column,
            message,
        }
    }
}

impl SourceError {
    /// Locate a serde_json error in `text`, adding `advice` after the reason.
    pub fn json(file: &Path, text: &str, e: &serde_json::Error, advice: &str) -> Self {
        let line_start: usize = text
            .split_inclusive('\n')
            .take(e.line().saturating_sub(1))
            .map(str::len)
            .sum();
        let msg = e.to_string();
        let msg = msg.split(" at line ").next().unwrap_or(&msg);
        SourceError::at(
            file,
            text,
            line_start + e.column().saturating_sub(1),
            format!("{msg}; {advice}"),
        )
    }
}

impl LoadedConfig {
    /// The directory relative paths in the config are resolved against.
    pub fn dir(&self) -> &Path {
        match self.path.parent() {
            Some(p) if !p.as_os_str().is_empty() => p,
            _ => Path::new("."),
        }
    }

    /// Resolve a path the user wrote in the config.
    pub fn resolve(&self, p: &Path) -> PathBuf {
        if p.is_absolute() {
            p.to_path_buf()
        } else {
            self.dir().join(p)
        }
    }

    /// Where the table `[name]` starts, if it is written as a header.
    pub fn table_at(&self, name: &str) -> Option<usize> {
        self.text.find(&format!("[{name}]"))
    }

    /// An error pointing at a value of this config.
    pub fn error_at<T>(&self, value: &Spanned<T>, message: String) -> SourceError {
        SourceError::at(&self.path, &self.text, value.span().start, message)
    }

    pub fn sha256(&self) -> Sha256Digest {
        Sha256Digest::of(self.text.as_bytes())
    }

    /// The config as the user wrote it, comments kept, with every secret
    /// removed: this copy goes onto the stick for reference.
    pub fn redacted_text(&self) -> Result<String> {
        let mut doc: toml_edit::DocumentMut = self
            .text
            .parse()
            .with_context(|| format!("re-reading {}", self.path.display()))?;
        let mut removed = Vec::new();
        if let Some(node) = doc.get_mut("node").and_then(|n| n.as_table_like_mut()) {
            if node.remove("password-hash").is_some() {
                removed.push("node.password-hash");
            }
        }
        let note = if removed.is_empty() {
            "no secrets were found to remove".to_string()
        } else {
            format!("removed: {}", removed.join(", "))
        };
        Ok(format!(
            "# A copy of the config this stick was built from, secrets removed ({note}).\n{doc}"
        ))
    }
}

/// Read and parse a config file.
pub fn load(path: &Path) -> Result<LoadedConfig> {
    let text = std::fs::read_to_string(path).with_context(|| {
        format!(
            "reading {}; create one with `mkstick init` or name another with --config",
            path.display()
        )
    })?;
    let config = parse(path, &text)?;
    Ok(LoadedConfig {
        path: path.to_path_buf(),
        text,
        config,
    })
}

/// Parse config text; `path` is only used in error messages.
pub fn parse(path: &Path, text: &str) -> Result<StickConfig, SourceError> {
    let config = toml::from_str::<StickConfig>(text).map_err(|e| {
        let at = e.span().map_or(0, |s| s.start);
        SourceError::at(path, text, at, explain(e.message()))
    })?;
    let list_error = config
        .node
        .ssh_authorized_keys
        .first_error()
        .or_else(|| config.boot.kernel_args.first_error())
        .or_else(|| config.network.as_ref().and_then(|n| n.dns.first_error()))
        .or_else(|| {
            config.storage.as_ref().and_then(|s| {
                s.drives
                    .first_error()
                    .or_else(|| s.persist.first_error())
                    .or_else(|| s.nfs_clients.first_error())
            })
        })
        .or_else(|| {
            config
                .kubernetes
                .as_ref()
                .and_then(|k| k.api_server_sans.first_error())
        });
    if let Some((at, message)) = list_error {
        return Err(SourceError::at(path, text, at, message.to_string()));
    }
    Ok(config)
}

/// Turn serde's wording into advice.
pub fn explain(message: &str) -> String {
    let message = message.trim();
    if let Some(rest) = message.strip_prefix("unknown field `") {
        let (key, expected) = rest.split_once('`').unwrap_or((rest, ""));
        let valid: Vec<&str> = expected.split('`').skip(1).step_by(2).collect();
        let mut out = format!("unknown key `{key}`");
        match nearest(key, &valid) {
            Some(near) => out.push_str(&format!("; did you mean `{near}`?")),
            None if valid.is_empty() => out.push_str("; this table takes no keys"),
            None => out.push_str(&format!("; valid keys here: {}", valid.join(", "))),
        }
        return out;
    }
    if let Some(rest) = message.strip_prefix("missing field `") {
        let key = rest.split('`').next().unwrap_or(rest);
        return match key {
            "node" => "the [node] table is missing; add\n[node]\nhostname = \"kube1\"".into(),
            "hostname" => "[node] needs a hostname; add hostname = \"kube1\"".into(),
            _ => format!("missing key `{key}`; add it"),
        };
    }
    if let Some(m) = explain_type(message) {
        return m;
    }
    message.to_string()
}

/// What a Rust number type means to someone writing TOML.
fn number_kind(rust_type: &str) -> Option<&'static str> {
    Some(match rust_type {
        "i8" | "i16" | "i32" | "i64" | "i128" | "isize" => "a number",
        "u8" => "a whole number from 0 to 255",
        "u16" => "a whole number from 0 to 65535",
        "u32" | "u64" | "u128" | "usize" => "a whole number, 0 or more",
        "f32" | "f64" => "a number",
        _ => return None,
    })
}

/// serde's "invalid type: string \"80\", expected i64" in the words of a
/// TOML file: `expected a number, like 80 (without quotes)`.
fn explain_type(message: &str) -> Option<String> {
    let (got, expected) = message
        .strip_prefix("invalid type: ")
        .or_else(|| message.strip_prefix("invalid value: "))?
        .rsplit_once(", expected ")?;
    if let Some(kind) = number_kind(expected) {
        let string = got
            .strip_prefix("string \"")
            .and_then(|g| g.strip_suffix('"'));
        return Some(match string {
            Some(v) if v.trim().parse::<f64>().is_ok() => format!(
                "expected {kind}, like {} (without quotes), not the string \"{v}\"",
                v.trim()
            ),
            Some(v) => format!("expected {kind}, like 80 (without quotes), not the string \"{v}\""),
            None => format!("expected {kind}, not {got}"),
        });
    }
    match (got, expected) {
        (g, "a boolean") if g.starts_with("string ") => Some(format!(
            "expected true or false (without quotes), not the {g}"
        )),
        (g, "a string") => {
            let v = g.split('`').nth(1).unwrap_or("");
            Some(format!(
                "expected a string in quotes, like \"{v}\", not the {g}"
            ))
        }
        _ => None,
    }
}

/// The valid name closest to a misspelled one, if any is close enough.
pub fn nearest<'a>(wrong: &str, valid: &[&'a str]) -> Option<&'a str> {
    let wrong_l = wrong.to_ascii_lowercase().replace('_', "-");
    valid
        .iter()
        .map(|v| (strsim::levenshtein(&wrong_l, v), *v))
        .filter(|(d, v)| *d <= (v.len() / 3).max(2))
        .min()
        .map(|(_, v)| v)
}

#[cfg(test)]
mod tests {
    use super::*;

    const KEY: &str = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIIiI12AOmJheE4nbgJvDhe47oAV8xqWv1169OlfLBIpZ test@mkstick";

    fn err(text: &str) -> SourceError {
        parse(Path::new("mkstick.toml"), text).unwrap_err()
    }

    #[test]
    fn minimal_config_gets_defaults() {
        let c = parse(Path::new("x.toml"), "[node]\nhostname = \"kube1\"\n").unwrap();
        assert_eq!(c.node.hostname.as_str(), "kube1");
        assert_eq!(c.node.timezone.as_str(), "UTC");
        assert!(c.boot.serial_console);
        assert!(c.extra.ignition.is_empty());
    }

    #[test]
    fn misspelled_key_is_located_and_corrected() {
        let e = err("[node]\nhostname = \"kube1\"\nssh-authorised-keys = []\n");
        assert_eq!((e.line, e.column), (3, 1), "{e}");
        assert_eq!(
            e.message,
            "unknown key `ssh-authorised-keys`; did you mean `ssh-authorized-keys`?"
        );
        let e = err("[nodes]\nhostname = \"kube1\"\n");
        assert!(e.message.contains("did you mean `node`?"), "{e}");
        let e = err("[node]\nhostname = \"kube1\"\n[boot]\nzzz = 1\n");
        assert!(
            e.message
                .contains("valid keys here: kernel-args, serial-console"),
            "{e}"
        );
    }

    #[test]
    fn bad_values_point_at_the_value() {
        let e = err(&format!(
            "[node]\nhostname = \"kube1\"\nssh-authorized-keys = [\n  \"{KEY}\",\n  \"ssh-rsa AAAA\",\n]\n"
        ));
        assert_eq!(e.line, 5, "{e}");
        assert!(e.message.contains("ssh-rsa"), "{e}");
        let e = err("[node]\nhostname = \"Kube_1\"\n");
        assert_eq!((e.line, e.column), (2, 12), "{e}");
        assert!(
            e.to_string()
                .starts_with("mkstick.toml:2:12: hostname `Kube_1`"),
            "{e}"
        );
    }

    #[test]
    fn wrong_types_are_said_in_toml_words() {
        let e = err("[node]\nhostname = \"kube1\"\n[ingress]\nhttp-port = \"80\"\n");
        assert_eq!((e.line, e.column), (4, 13), "{e}");
        assert!(
            e.message
                .contains("expected a number, like 80 (without quotes)"),
            "{e}"
        );
        assert!(!e.message.contains("i64"), "{e}");
        let e = err("[node]\nhostname = \"kube1\"\n[boot]\nserial-console = \"false\"\n");
        assert!(
            e.message
                .contains("expected true or false (without quotes)"),
            "{e}"
        );
        let e = err("[node]\nhostname = 5\n");
        assert!(
            e.message
                .contains("expected a string in quotes, like \"5\""),
            "{e}"
        );
        let e = err("[node]\nhostname = \"a\"\n[storage]\ndrives = []\ndevice-timeout-secs = -5\n");
        assert!(
            e.message.contains("expected a whole number, 0 or more"),
            "{e}"
        );
    }

    #[test]
    fn missing_tables_say_what_to_add() {
        assert!(err("").message.contains("[node] table is missing"));
        assert!(err("[node]\n").message.contains("hostname = \"kube1\""));
    }

    #[test]
    fn redacted_copy_drops_the_password_hash_and_keeps_comments() {
        let text = "# my server\n[node]\nhostname = \"kube1\"\npassword-hash = \"$y$j9T$abcdefghijklmnopqrstuvwxyz\"\n";
        let loaded = LoadedConfig {
            path: "m.toml".into(),
            text: text.into(),
            config: parse(Path::new("m.toml"), text).unwrap(),
        };
        let red = loaded.redacted_text().unwrap();
        assert!(!red.contains("$y$"), "{red}");
        assert!(red.contains("# my server") && red.contains("removed: node.password-hash"));
        parse(Path::new("m.toml"), &red).expect("the redacted copy still parses");
    }

    #[test]
    fn nearest_only_suggests_close_names() {
        assert_eq!(
            nearest("hostnme", &["hostname", "timezone"]),
            Some("hostname")
        );
        assert_eq!(
            nearest("kernel_args", &["kernel-args"]),
            Some("kernel-args")
        );
        assert_eq!(nearest("zzzzzz", &["hostname", "timezone"]), None);
    }
}
