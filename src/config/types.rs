//! Newtypes for config values: each parses once, at the edge, and prints back
//! the same text. clap and serde share the one `FromStr` parser.

use base64::Engine;
use sha2::{Digest, Sha256};
use std::fmt;
use std::str::FromStr;

/// A static hostname: RFC 1123 labels, at most 63 characters in all
/// (systemd and Fedora CoreOS cap the static hostname at 64 bytes).
#[derive(Debug, Clone, PartialEq, Eq, serde::Deserialize, serde::Serialize)]
#[serde(try_from = "String", into = "String")]
pub struct Hostname(String);
string_newtype!(Hostname);

impl FromStr for Hostname {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        let fix = "use lowercase letters, digits and hyphens, like `kube1` or `nas-01`";
        if s.is_empty() {
            return Err(format!("the hostname is empty; {fix}"));
        }
        if s.len() > 63 {
            return Err(format!(
                "hostname `{s}` is {} characters long; the limit is 63",
                s.len()
            ));
        }
        for label in s.split('.') {
            if label.is_empty() {
                return Err(format!(
                    "hostname `{s}` has an empty part between dots; {fix}"
                ));
            }
            if let Some(c) = label
                .chars()
                .find(|c| !(c.is_ascii_lowercase() || c.is_ascii_digit() || *c == '-'))
            {
                return Err(format!("hostname `{s}` contains {c:?}; {fix}"));
            }
            if label.starts_with('-') || label.ends_with('-') {
                return Err(format!(
                    "hostname `{s}` has a part that starts or ends with a hyphen; {fix}"
                ));
            }
        }
        Ok(Hostname(s.to_string()))
    }
}

/// The key types OpenSSH accepts in `authorized_keys`.
const SSH_KEY_TYPES: &[&str] = &[
    "ssh-ed25519",
    "ssh-rsa",
    "ecdsa-sha2-nistp256",
    "ecdsa-sha2-nistp384",
    "ecdsa-sha2-nistp521",
    "sk-ssh-ed25519@openssh.com",
    "sk-ecdsa-sha2-nistp256@openssh.com",
];

/// Text found only in private keys: the PEM and OpenSSH armour (`-----BEGIN
/// OPENSSH PRIVATE KEY-----`, `RSA`, `EC`, `DSA`, `ENCRYPTED`, PKCS#8's
/// plain `PRIVATE KEY`), PuTTY's `.ppk` header, and `b3BlbnNzaC1rZXktdjE`,
/// the base64 of `openssh-key-v1` that opens an OpenSSH private key's body
/// (OpenSSH `PROTOCOL.key`), for a body pasted without its armour.
const PRIVATE_KEY_MARKERS: &[&str] = &[
    "PRIVATE KEY-----",
    "PuTTY-User-Key-File",
    "b3BlbnNzaC1rZXktdjE",
];

/// One OpenSSH public key line: `type base64 [comment]`, checked by decoding
/// the key blob and comparing the type it names.
#[derive(Debug, Clone, PartialEq, Eq, serde::Deserialize, serde::Serialize)]
#[serde(try_from = "String", into = "String")]
pub struct SshPublicKey(String);
string_newtype!(SshPublicKey);

impl FromStr for SshPublicKey {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        let line = s.trim();
        let fix =
            "paste one line of your ~/.ssh/id_ed25519.pub (it starts with `ssh-ed25519 AAAA`)";
        // Before anything that could quote the text: never echo a secret.
        if PRIVATE_KEY_MARKERS.iter().any(|m| line.contains(m)) {
            return Err(format!(
                "this is a PRIVATE key; use the .pub file beside it, and keep the private key off the stick; {fix}"
            ));
        }
        if line.contains('\n') {
            return Err(format!(
                "an SSH key must be one line; put each key in its own string; {fix}"
            ));
        }
        if line.starts_with("-----BEGIN") {
            return Err(format!(
                "this is not an OpenSSH public key line (it is PEM armour); {fix}"
            ));
        }
        let mut parts = line.split_whitespace();
        let kind = parts.next().unwrap_or("");
        // A type name is short and plain; anything else may be key material,
        // and is not quoted back.
        let looks_like_type = kind.len() <= 40
            && kind
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || "-@.".contains(c));
        if !SSH_KEY_TYPES.contains(&kind) && !looks_like_type {
            return Err(format!(
                "this does not start with an SSH public key type (one of {}); {fix}",
                SSH_KEY_TYPES.join(", ")
            ));
        }
        if !SSH_KEY_TYPES.contains(&kind) {
            return Err(format!(
                "`{}` is not an SSH public key type (expected one of {}); {fix}",
                kind.chars().take(40).collect::<String>(),
                SSH_KEY_TYPES.join(", ")
            ));
        }
        let blob_text = parts.next().unwrap_or("");
        let blob = base64::engine::general_purpose::STANDARD
            .decode(blob_text)
            .map_err(|_| {
                format!(
                    "the {kind} key's data is not valid base64: the key is cut or damaged; {fix}"
                )
            })?;
        // The blob is a run of length-prefixed fields (RFC 4253, 6.6): the
        // type name, then the key material. A cut key breaks the run.
        let mut fields = Vec::new();
        let mut rest = &blob[..];
        while !rest.is_empty() {
            let len = rest
                .get(..4)
                .map(|l| u32::from_be_bytes([l[0], l[1], l[2], l[3]]) as usize);
            match len.and_then(|n| rest.get(4..4 + n)) {
                Some(field) => {
                    fields.push(field);
                    rest = &rest[4 + field.len()..];
                }
                None => {
                    return Err(format!("the {kind} key's data is cut short; {fix}"));
                }
            }
        }
        if fields.first() != Some(&kind.as_bytes()) || fields.len() < 2 {
            return Err(format!(
                "the key's data does not belong to a {kind} key: the key is cut or damaged; {fix}"
            ));
        }
        Ok(SshPublicKey(line.to_string()))
    }
}

impl SshPublicKey {
    pub fn kind(&self) -> &str {
        self.0.split_whitespace().next().unwrap_or("")
    }

    pub fn comment(&self) -> String {
        self.0
            .split_whitespace()
            .skip(2)
            .collect::<Vec<_>>()
            .join(" ")
    }

    /// The OpenSSH fingerprint: `SHA256:` and unpadded base64 of the blob.
    pub fn fingerprint(&self) -> String {
        let blob_text = self.0.split_whitespace().nth(1).unwrap_or("");
        let blob = base64::engine::general_purpose::STANDARD
            .decode(blob_text)
            .unwrap_or_default();
        let digest = Sha256::digest(blob);
        format!(
            "SHA256:{}",
            base64::engine::general_purpose::STANDARD_NO_PAD.encode(digest)
        )
    }
}

/// A crypt(3) password hash such as `mkpasswd --method=yescrypt` prints.
/// Never a plain password. Debug output is redacted.
#[derive(Clone, PartialEq, Eq, serde::Deserialize, serde::Serialize)]
#[serde(try_from = "String", into = "String")]
pub struct PasswordHash(String);
string_newtype!(PasswordHash);

impl fmt::Debug for PasswordHash {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "PasswordHash(<redacted>)")
    }
}

impl FromStr for PasswordHash {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        let fix = "put a hash here, never a password: run `mkpasswd --method=yescrypt` and paste what it prints (it starts with `$y$`)";
        let schemes = ["$y$", "$gy$", "$7$", "$6$", "$5$", "$2b$", "$2y$"];
        if s.starts_with("$1$") {
            return Err(format!(
                "MD5 password hashes (`$1$`) are too weak to accept; {fix}"
            ));
        }
        if !schemes.iter().any(|p| s.starts_with(p)) {
            return Err(format!(
                "password-hash does not look like a crypt(3) hash; {fix}"
            ));
        }
        if s.chars().any(|c| c.is_whitespace() || c == ':') {
            return Err(format!("password-hash contains white space or `:`; {fix}"));
        }
        if s.len() < 20 {
            return Err(format!(
                "password-hash is too short to be a real hash; {fix}"
            ));
        }
        Ok(PasswordHash(s.to_string()))
    }
}

impl PasswordHash {
    /// The first hex digits of the hash's sha256: enough to compare, useless to crack.
    pub fn fingerprint(&self) -> String {
        let d = Sha256::digest(self.0.as_bytes());
        format!("sha256:{}", crate::io::hex(&d[..6]))
    }
}

/// An IANA time zone name such as `Europe/Berlin`, or `UTC`.
#[derive(Debug, Clone, PartialEq, Eq, serde::Deserialize, serde::Serialize)]
#[serde(try_from = "String", into = "String")]
pub struct Timezone(String);
string_newtype!(Timezone);

impl Default for Timezone {
    fn default() -> Self {
        Timezone("UTC".to_string())
    }
}

impl FromStr for Timezone {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        let fix = "use an IANA name such as `UTC`, `Europe/Berlin` or `America/New_York` (see `timedatectl list-timezones`)";
        let ok_chars = s
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "/_+-".contains(c));
        let ok_parts = s.split('/').all(|p| !p.is_empty() && p != "." && p != "..");
        let starts_upper = s.chars().next().is_some_and(|c| c.is_ascii_uppercase());
        if s.is_empty() || !ok_chars || !ok_parts || !starts_upper {
            return Err(format!("`{s}` is not a time zone name; {fix}"));
        }
        if s.parse::<chrono_tz::Tz>().is_err() {
            return Err(match timezone_suggestion(s) {
                Some(near) => {
                    format!("`{s}` is not an IANA time zone name; did you mean `{near}`?")
                }
                None => format!(
                    "`{s}` is not an IANA time zone name (tz database {}); {fix}",
                    chrono_tz::IANA_TZDB_VERSION
                ),
            });
        }
        Ok(Timezone(s.to_string()))
    }
}

/// The zone a mistaken name most likely meant: `Berlin` -> `Europe/Berlin`
/// (the city alone), else the closest spelling.
fn timezone_suggestion(s: &str) -> Option<&'static str> {
    let names = || chrono_tz::TZ_VARIANTS.iter().map(|tz| tz.name());
    let city = |n: &str| n.rsplit('/').next().unwrap_or(n).to_ascii_lowercase();
    let wanted = city(s);
    names()
        .filter(|n| n.contains('/') && city(n) == wanted)
        .min_by_key(|n| n.len())
        .or_else(|| {
            names()
                .map(|n| {
                    (
                        strsim::jaro_winkler(&n.to_ascii_lowercase(), &s.to_ascii_lowercase()),
                        n,
                    )
                })
                .filter(|(score, _)| *score > 0.9)
                .max_by(|a, b| a.0.total_cmp(&b.0))
                .map(|(_, n)| n)
        })
}

/// One kernel argument. It is written into grub.cfg inside single quotes, so
/// characters that GRUB's script or the kernel's parser treat specially are refused.
#[derive(Debug, Clone, PartialEq, Eq, serde::Deserialize, serde::Serialize)]
#[serde(try_from = "String", into = "String")]
pub struct KernelArg(String);
string_newtype!(KernelArg);

impl FromStr for KernelArg {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        if s.is_empty() {
            return Err("a kernel argument is empty; remove the empty string".into());
        }
        if s.chars().any(|c| c.is_whitespace()) {
            return Err(format!(
                "kernel argument `{s}` contains white space; write each argument as its own string, like [\"quiet\", \"loglevel=3\"]"
            ));
        }
        if let Some(c) = s
            .chars()
            .find(|c| c.is_control() || !c.is_ascii() || "'\"\\$;{}".contains(*c))
        {
            return Err(format!(
                "kernel argument `{s}` contains {c:?}, which the boot menu cannot pass safely; remove it"
            ));
        }
        Ok(KernelArg(s.to_string()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    // A real ed25519 public key (throwaway, generated for these tests).
    pub const ED25519: &str = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIIiI12AOmJheE4nbgJvDhe47oAV8xqWv1169OlfLBIpZ test@mkstick";

    #[test]
    fn hostnames() {
        for ok in ["kube1", "nas-01", "a", "node.lab.example"] {
            assert!(ok.parse::<Hostname>().is_ok(), "{ok}");
        }
        for bad in [
            "",
            "Kube1",
            "-a",
            "a-",
            "a..b",
            "under_score",
            &"x".repeat(64),
        ] {
            assert!(bad.parse::<Hostname>().is_err(), "{bad}");
        }
        let e = "my_host".parse::<Hostname>().unwrap_err();
        assert!(e.contains("'_'") && e.contains("lowercase letters"), "{e}");
    }

    #[test]
    fn ssh_keys_are_decoded_and_checked() {
        let k: SshPublicKey = ED25519.parse().unwrap();
        assert_eq!(k.kind(), "ssh-ed25519");
        assert_eq!(k.comment(), "test@mkstick");
        // The same value `ssh-keygen -l` prints for this key.
        assert_eq!(
            k.fingerprint(),
            "SHA256:nmbrRBDTp2qqNr6Fvx2v3Otvn11bbjuDJdZcyLGIRro"
        );
        // The type says rsa but the blob says ed25519.
        let wrong = ED25519.replace("ssh-ed25519", "ssh-rsa");
        assert!(wrong
            .parse::<SshPublicKey>()
            .unwrap_err()
            .contains("does not belong"));
        // Cut in the middle.
        let cut = &ED25519[..40];
        assert!(cut.parse::<SshPublicKey>().is_err());
        assert!("-----BEGIN OPENSSH PRIVATE KEY-----"
            .parse::<SshPublicKey>()
            .unwrap_err()
            .contains("PRIVATE"));
        assert!("hunter2".parse::<SshPublicKey>().is_err());
    }

    #[test]
    fn private_keys_are_named_and_never_quoted() {
        let body = "b3BlbnNzaC1rZXktdjEAAAAABG5vbmUAAAAEbm9uZQAAAAAAAAABAAAAMwAAAAtzc2gtZW";
        let secret = "MIIEowIBAAKCAQEAu1SU1LfVLPHCozMxH2Mo4lgOEePzNm0tRgeLezV6ffAt0gun";
        for pasted in [
            format!(
                "-----BEGIN OPENSSH PRIVATE KEY-----\n{body}\n-----END OPENSSH PRIVATE KEY-----\n"
            ),
            format!("-----BEGIN RSA PRIVATE KEY-----\n{secret}\n-----END RSA PRIVATE KEY-----"),
            format!("-----BEGIN EC PRIVATE KEY-----\n{secret}"),
            format!("-----BEGIN PRIVATE KEY-----\n{secret}"),
            format!("-----BEGIN ENCRYPTED PRIVATE KEY-----\n{secret}"),
            format!("PuTTY-User-Key-File-3: ssh-ed25519\n{secret}"),
            // The OpenSSH body alone, without its armour.
            body.to_string(),
        ] {
            let e = pasted.parse::<SshPublicKey>().unwrap_err();
            assert!(
                e.contains("this is a PRIVATE key; use the .pub file"),
                "{e}"
            );
            assert!(
                !e.contains(&body[..20]) && !e.contains(&secret[..20]),
                "{e}"
            );
        }
        // Something that is neither: not quoted back either.
        let e = secret.parse::<SshPublicKey>().unwrap_err();
        assert!(!e.contains(&secret[..20]), "{e}");
        assert!(
            e.contains("does not start with an SSH public key type"),
            "{e}"
        );
        // A plain wrong type name still is.
        let e = "ssh-dss AAAA".parse::<SshPublicKey>().unwrap_err();
        assert!(e.contains("`ssh-dss`"), "{e}");
    }

    #[test]
    fn password_hash_refuses_plain_passwords_and_redacts_debug() {
        let h: PasswordHash = "$y$j9T$abcdefghijklmnop$ABCDEFGHIJKLMNOPQRSTUVWXYZ012345678901234"
            .parse()
            .unwrap();
        assert_eq!(format!("{h:?}"), "PasswordHash(<redacted>)");
        assert!(h.fingerprint().starts_with("sha256:"));
        assert!("hunter2"
            .parse::<PasswordHash>()
            .unwrap_err()
            .contains("mkpasswd"));
        assert!("$1$salt$abcdefghijklmnopqrstuv"
            .parse::<PasswordHash>()
            .is_err());
    }

    #[test]
    fn timezones_and_kernel_args() {
        for ok in [
            "UTC",
            "Europe/Berlin",
            "America/Argentina/Buenos_Aires",
            "Etc/GMT+5",
        ] {
            assert!(ok.parse::<Timezone>().is_ok(), "{ok}");
        }
        for bad in ["", "utc", "Europe/../etc", "Europe/Berlin ", "/UTC"] {
            assert!(bad.parse::<Timezone>().is_err(), "{bad}");
        }
        // Well-formed, but not in the tz database: the server would boot
        // with no /etc/localtime target.
        for (bad, hint) in [
            ("Berlin", Some("Europe/Berlin")),
            ("Mars/Olympus_Mons", None),
            ("Europe/Berln", Some("Europe/Berlin")),
        ] {
            let err = bad.parse::<Timezone>().unwrap_err();
            assert!(err.contains("is not an IANA time zone name"), "{err}");
            match hint {
                Some(h) => assert!(err.contains(&format!("did you mean `{h}`")), "{err}"),
                None => assert!(!err.contains("did you mean"), "{err}"),
            }
        }
        assert!("console=ttyS1,115200n8".parse::<KernelArg>().is_ok());
        assert!("a b".parse::<KernelArg>().is_err());
        assert!("x=$(reboot)".parse::<KernelArg>().is_err());
        assert!("x='a'".parse::<KernelArg>().is_err());
    }
}
