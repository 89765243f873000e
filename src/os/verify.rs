//! Download verification: expected digests and detached OpenPGP signatures,
//! checked against a [`Keyring`] the caller passes in.
//!
//! The publishers' keys ship inside mkstick ([`Keyring::fedora`],
//! [`Keyring::flatcar`]); tests pass a throwaway key instead. The OpenPGP
//! work is done by rpgp (the `pgp` crate), a pure-Rust implementation, so
//! mkstick needs no `gpg` on the build machine (coreos-installer shells out to
//! `gpg`).

use anyhow::{anyhow, bail, Context, Result};
use pgp::composed::{Deserializable, DetachedSignature, SignedPublicKey};
use pgp::types::KeyDetails;
use std::io::Read;

/// Fedora's primary keys: Fedora CoreOS artifacts are signed with the key of
/// the Fedora release they are built from (coreos-assembler signs each
/// artifact with a detached `.sig` made by Fedora's robosignatory).
///
/// The files are fedora-repos' `RPM-GPG-KEY-fedora-NN-primary`, as carried by
/// rpm-software-management/distribution-gpg-keys (`keys/fedora/`, August
/// 2026). coreos-installer embeds 43-45 (`src/signing-keys.asc`, February
/// 2026) and adds each new release's key; 46 and 47 are here so that the
/// `next` stream and the next rebase verify too.
const FEDORA_KEYS: &[(&str, &str)] = &[
    (
        "fedora-43-primary",
        include_str!("keys/fedora-43-primary.asc"),
    ),
    (
        "fedora-44-primary",
        include_str!("keys/fedora-44-primary.asc"),
    ),
    (
        "fedora-45-primary",
        include_str!("keys/fedora-45-primary.asc"),
    ),
    (
        "fedora-46-primary",
        include_str!("keys/fedora-46-primary.asc"),
    ),
    (
        "fedora-47-primary",
        include_str!("keys/fedora-47-primary.asc"),
    ),
];

/// Flatcar's image signing key (buildbot@flatcar-linux.org, fingerprint
/// F88CFEDEFF29A5B4D9523864E25D9AED0593B34A), from flatcar/flatcar-website
/// `static/security/image-signing-key/Flatcar_Image_Signing_Key.asc`
/// (commit 08bdee0a, 2025-03-07), the file flatcar.org serves. Its current
/// signing subkey expires 2027-03-08; Flatcar rotates it before then.
const FLATCAR_KEYS: &[(&str, &str)] = &[(
    "flatcar-image-signing-key",
    include_str!("keys/flatcar-image-signing-key.asc"),
)];

/// The keys one publisher signs with.
#[derive(Debug, Clone)]
pub struct Keyring {
    /// Who these keys belong to, for messages: "Fedora", "Flatcar".
    pub publisher: String,
    keys: Vec<(String, SignedPublicKey)>,
}

impl Keyring {
    /// Parse ASCII-armored public keys. Each key's self-signatures and subkey
    /// bindings must verify.
    pub fn from_armored(publisher: &str, keys: &[(&str, &str)]) -> Result<Keyring> {
        let mut out = Vec::new();
        for (name, text) in keys {
            let (key, _) = SignedPublicKey::from_string(text)
                .map_err(|e| anyhow!("parsing the OpenPGP key {name}: {e}"))?;
            key.verify_bindings()
                .map_err(|e| anyhow!("the OpenPGP key {name} does not verify: {e}"))?;
            out.push((name.to_string(), key));
        }
        if out.is_empty() {
            bail!("no {publisher} keys to check signatures with");
        }
        Ok(Keyring {
            publisher: publisher.to_string(),
            keys: out,
        })
    }

    /// Fedora's primary keys, embedded in mkstick.
    pub fn fedora() -> Result<Keyring> {
        Keyring::from_armored("Fedora", FEDORA_KEYS)
    }

    /// Flatcar's image signing key, embedded in mkstick.
    pub fn flatcar() -> Result<Keyring> {
        Keyring::from_armored("Flatcar", FLATCAR_KEYS)
    }

    /// `name fingerprint` of every primary key.
    pub fn fingerprints(&self) -> Vec<(String, String)> {
        self.keys
            .iter()
            .map(|(n, k)| (n.clone(), fingerprint(k)))
            .collect()
    }

    /// Whether this ring holds the primary key with this fingerprint.
    pub fn has(&self, fpr: &str) -> bool {
        self.keys.iter().any(|(_, k)| fingerprint(k) == fpr)
    }
}

/// A parsed detached signature, checked before the big download starts so
/// that a malformed one fails fast.
#[derive(Debug, Clone)]
pub struct Signature {
    sig: DetachedSignature,
}

impl Signature {
    /// Parse a detached signature, binary or ASCII-armored.
    pub fn parse(bytes: &[u8]) -> Result<Signature> {
        let armored = bytes.starts_with(b"-----BEGIN PGP SIGNATURE-----");
        let sig = if armored {
            DetachedSignature::from_armor_single(bytes).map(|(s, _)| s)
        } else {
            DetachedSignature::from_bytes(bytes)
        }
        .map_err(|e| anyhow!("not an OpenPGP signature: {e}"))?;
        Ok(Signature { sig })
    }

    /// Find the key (primary or subkey) in `ring` that made this signature,
    /// then hash `data` and check the signature. Reads `data` to its end.
    /// Returns the fingerprint of the primary key that signed.
    pub fn verify(&self, ring: &Keyring, data: impl Read) -> Result<String> {
        let s = &self.sig.signature;
        let ids: Vec<String> = s
            .issuer_key_id()
            .iter()
            .map(|k| format!("{k:?}"))
            .chain(s.issuer_fingerprint().iter().map(|f| format!("{f:?}")))
            .collect();
        let made = s
            .created()
            .map(|t| t.as_secs())
            .ok_or_else(|| anyhow!("the signature has no creation time"))?;
        use pgp::crypto::hash::HashAlgorithm as H;
        use pgp::packet::SignatureType as T;
        if !matches!(s.typ(), Some(T::Binary | T::Text)) {
            bail!("it is not a signature over a file ({:?})", s.typ());
        }
        match s.hash_alg() {
            Some(H::Md5 | H::Sha1 | H::Ripemd160 | H::None) | None => {
                bail!("it uses a broken hash ({:?})", s.hash_alg())
            }
            _ => {}
        }
        if let Some(d) = s
            .signature_expiration_time()
            .map(|d| d.as_secs())
            .filter(|d| *d > 0)
        {
            let now = std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(0, |d| d.as_secs());
            if now > u64::from(made) + u64::from(d) {
                bail!("it expired on {}", ymd(made.saturating_add(d)));
            }
        }
        for (name, key) in &ring.keys {
            if signed_by(s, key) {
                if let Some(why) = unusable_at(key, None, made) {
                    bail!("it was made by {name}, but {why}");
                }
                self.sig
                    .signature
                    .verify(key, data)
                    .map_err(|e| anyhow!("the signature by {name} does not match: {e}"))?;
                return Ok(fingerprint(key));
            }
            for sub in &key.public_subkeys {
                if signed_by(s, sub) {
                    if let Some(why) = unusable_at(key, Some(sub), made) {
                        bail!("it was made by a subkey of {name}, but {why}");
                    }
                    self.sig.signature.verify(sub, data).map_err(|e| {
                        anyhow!("the signature by {name} (subkey) does not match: {e}")
                    })?;
                    return Ok(fingerprint(key));
                }
            }
        }
        bail!(
            "it was made by a key that is not one of {}'s ({})",
            ring.publisher,
            if ids.is_empty() {
                "the signature names no issuer".to_string()
            } else {
                ids.join(", ")
            }
        )
    }
}

/// Why `key` (or its subkey `sub`) could not have made a valid signature at
/// `at` (seconds since 1970), if it could not: revoked, expired, not yet
/// made, or a subkey not bound for signing. The bindings themselves were
/// verified when the keyring was loaded.
pub fn unusable_at(
    key: &SignedPublicKey,
    sub: Option<&pgp::composed::SignedPublicSubKey>,
    at: u32,
) -> Option<String> {
    use pgp::packet::SignatureType;
    let created = |s: &pgp::packet::Signature| s.created().map_or(0, |t| t.as_secs());
    let expiry = |born: u32, s: &pgp::packet::Signature| {
        s.key_expiration_time()
            .map(|d| d.as_secs())
            .filter(|d| *d > 0)
            .map(|d| born.saturating_add(d))
    };
    if !key.details.revocation_signatures.is_empty() {
        return Some("that key has been revoked".to_string());
    }
    let key_born = key.primary_key.created_at().as_secs();
    if at < key_born {
        return Some(format!(
            "the signature ({}) is older than the key ({})",
            ymd(at),
            ymd(key_born)
        ));
    }
    let newest_cert = key
        .details
        .users
        .iter()
        .flat_map(|u| u.signatures.iter())
        .max_by_key(|s| created(s));
    if let Some(end) = newest_cert.and_then(|s| expiry(key_born, s)) {
        if at > end {
            return Some(format!(
                "the key expired on {} and the signature is from {}",
                ymd(end),
                ymd(at)
            ));
        }
    }
    let sub = sub?;
    if let Some(r) = sub
        .signatures
        .iter()
        .find(|s| s.typ() == Some(SignatureType::SubkeyRevocation))
    {
        return Some(format!("that subkey was revoked on {}", ymd(created(r))));
    }
    let Some(binding) = sub
        .signatures
        .iter()
        .filter(|s| s.typ() == Some(SignatureType::SubkeyBinding))
        .max_by_key(|s| created(s))
    else {
        return Some("that subkey is not bound to the key".to_string());
    };
    if !binding.key_flags().sign() {
        return Some("that subkey is not a signing subkey".to_string());
    }
    let born = sub.key.created_at().as_secs();
    if at < born {
        return Some(format!(
            "the signature ({}) is older than that subkey ({})",
            ymd(at),
            ymd(born)
        ));
    }
    if let Some(end) = expiry(born, binding) {
        if at > end {
            return Some(format!(
                "that subkey expired on {} and the signature is from {}",
                ymd(end),
                ymd(at)
            ));
        }
    }
    None
}

/// `YYYY-MM-DD` of a Unix time (UTC), for messages.
fn ymd(secs: u32) -> String {
    // Howard Hinnant's civil_from_days.
    let z = i64::from(secs) / 86_400 + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1_460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    format!("{y:04}-{m:02}-{d:02}")
}

/// A primary key's fingerprint, in upper-case hex as gpg prints it.
fn fingerprint(key: &SignedPublicKey) -> String {
    format!("{}", key.fingerprint()).to_uppercase()
}

/// Whether the signature names this key as its issuer.
fn signed_by(s: &pgp::packet::Signature, key: &impl KeyDetails) -> bool {
    let id = key.legacy_key_id();
    let fp = key.fingerprint();
    s.issuer_key_id().iter().any(|k| **k == id) || s.issuer_fingerprint().iter().any(|f| **f == fp)
}

/// What the publisher says a file's digest is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Digest {
    Sha256([u8; 32]),
    Sha512([u8; 64]),
}

impl Digest {
    pub fn algorithm(&self) -> &'static str {
        match self {
            Digest::Sha256(_) => "sha256",
            Digest::Sha512(_) => "sha512",
        }
    }

    pub fn hex(&self) -> String {
        match self {
            Digest::Sha256(d) => crate::io::hex(d),
            Digest::Sha512(d) => crate::io::hex(d),
        }
    }

    /// Parse lowercase or uppercase hex of either length.
    pub fn parse_hex(s: &str) -> Result<Digest> {
        let s = s.trim();
        let bytes = (0..s.len())
            .step_by(2)
            .map(|i| {
                s.get(i..i + 2)
                    .and_then(|p| u8::from_str_radix(p, 16).ok())
                    .ok_or_else(|| anyhow!("`{s}` is not a hex digest"))
            })
            .collect::<Result<Vec<u8>>>()?;
        match bytes.len() {
            32 => Ok(Digest::Sha256(bytes.try_into().expect("32 bytes"))),
            64 => Ok(Digest::Sha512(bytes.try_into().expect("64 bytes"))),
            n => bail!("`{s}` is {n} bytes; a sha256 digest is 32 and a sha512 is 64"),
        }
    }
}

impl std::fmt::Display for Digest {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}:{}", self.algorithm(), self.hex())
    }
}

/// The running sha256 (for the cache's name) and sha512 (when a publisher
/// gives only that) of the bytes fed to it so far.
#[derive(Clone)]
pub struct Hasher {
    sha256: sha2::Sha256,
    sha512: Option<sha2::Sha512>,
    pub bytes: u64,
}

impl Hasher {
    pub fn new(want_sha512: bool) -> Self {
        use sha2::Digest as _;
        Hasher {
            sha256: sha2::Sha256::new(),
            sha512: want_sha512.then(sha2::Sha512::new),
            bytes: 0,
        }
    }

    pub fn update(&mut self, data: &[u8]) {
        use sha2::Digest as _;
        self.sha256.update(data);
        if let Some(h) = &mut self.sha512 {
            h.update(data);
        }
        self.bytes += data.len() as u64;
    }

    /// (sha256, sha512 if asked for) of everything fed.
    pub fn finish(self) -> ([u8; 32], Option<[u8; 64]>) {
        use sha2::Digest as _;
        (
            self.sha256.finalize().into(),
            self.sha512.map(|h| h.finalize().into()),
        )
    }
}

impl std::io::Write for Hasher {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.update(buf);
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// A reader that computes sha256 (for the cache's name) and sha512 (when a
/// publisher gives only that) of everything read through it.
pub struct DigestReader<R> {
    inner: R,
    hasher: Hasher,
}

impl<R: Read> DigestReader<R> {
    pub fn new(inner: R, want_sha512: bool) -> Self {
        DigestReader {
            inner,
            hasher: Hasher::new(want_sha512),
        }
    }

    /// Read what is left, then return (sha256, sha512 if asked for).
    pub fn finish(mut self) -> Result<([u8; 32], Option<[u8; 64]>)> {
        std::io::copy(&mut self, &mut std::io::sink()).context("reading the file to hash it")?;
        Ok(self.hasher.finish())
    }
}

impl<R: Read> Read for DigestReader<R> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.hasher.update(&buf[..n]);
        Ok(n)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn embedded_keys_parse_and_their_bindings_verify() {
        let fedora = Keyring::fedora().unwrap();
        assert_eq!(fedora.keys.len(), FEDORA_KEYS.len());
        let flatcar = Keyring::flatcar().unwrap();
        let fps = flatcar.fingerprints();
        assert_eq!(
            fps[0].1, "F88CFEDEFF29A5B4D9523864E25D9AED0593B34A",
            "Flatcar's published fingerprint (flatcar.org/security/image-signing-key)"
        );
        for (name, key) in fedora.keys.iter().chain(&flatcar.keys) {
            assert!(
                key.details.users.iter().any(|u| !u.signatures.is_empty()),
                "{name} has a signed user ID"
            );
        }
    }

    /// Seconds since 1970 of a UTC date.
    fn at(y: i64, m: i64, d: i64) -> u32 {
        // Inverse of ymd (days_from_civil).
        let y = if m <= 2 { y - 1 } else { y };
        let era = y.div_euclid(400);
        let yoe = y - era * 400;
        let mp = (m + 9) % 12;
        let doy = (153 * mp + 2) / 5 + d - 1;
        let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
        ((era * 146_097 + doe - 719_468) * 86_400) as u32
    }

    #[test]
    fn dates_print_as_published() {
        assert_eq!(ymd(0), "1970-01-01");
        assert_eq!(ymd(at(2027, 3, 8)), "2027-03-08");
        assert_eq!(ymd(at(2024, 2, 29) + 86_399), "2024-02-29");
    }

    /// Flatcar's real key: which signing subkey could sign when, as
    /// `gpg --show-keys` reports it (flatcar.org's file, 2025-03-07).
    #[test]
    fn flatcar_subkeys_are_usable_only_in_their_lifetime() {
        let ring = Keyring::flatcar().unwrap();
        let key = &ring.keys[0].1;
        let sub = |fpr: &str| {
            key.public_subkeys
                .iter()
                .find(|s| format!("{}", s.key.fingerprint()).eq_ignore_ascii_case(fpr))
                .unwrap_or_else(|| panic!("subkey {fpr}"))
        };
        let current = sub("52F145DFD00BBDCD928CBB5A32DA80F91EF52974");
        assert_eq!(unusable_at(key, Some(current), at(2026, 11, 24)), None);
        let why = unusable_at(key, Some(current), at(2027, 6, 1)).unwrap();
        assert!(why.contains("expired on 2027-03-08"), "{why}");
        let why = unusable_at(key, Some(current), at(2025, 1, 1)).unwrap();
        assert!(why.contains("older than that subkey (2025-03-07)"), "{why}");
        let previous = sub("E9426D8B67E35DF476BD048185F7C8868837E271");
        assert_eq!(unusable_at(key, Some(previous), at(2024, 6, 1)), None);
        assert!(unusable_at(key, Some(previous), at(2025, 6, 1)).is_some());
        let revoked = sub("1E100DD7A677A6F9A532C9F9B51DE377064D542D");
        let why = unusable_at(key, Some(revoked), at(2018, 3, 1)).unwrap();
        assert!(why.contains("revoked on 2018-03-14"), "{why}");
        // The primary key itself never expires.
        assert_eq!(unusable_at(key, None, at(2030, 1, 1)), None);
    }

    #[test]
    fn digests_parse_by_length() {
        let d = Digest::parse_hex(&"ab".repeat(32)).unwrap();
        assert_eq!(d, Digest::Sha256([0xab; 32]));
        let d = Digest::parse_hex(&"CD".repeat(64)).unwrap();
        assert_eq!(d.algorithm(), "sha512");
        assert!(Digest::parse_hex("abc").is_err());
        assert!(Digest::parse_hex(&"zz".repeat(32)).is_err());
        assert!(Digest::parse_hex(&"ab".repeat(20)).is_err());
    }

    #[test]
    fn garbage_is_not_a_signature() {
        assert!(Signature::parse(b"not a signature").is_err());
        assert!(Signature::parse(b"").is_err());
    }
}
