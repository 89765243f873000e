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

    /// `name fingerprint` of every primary key, for `mkstick cache ls` and tests.
    pub fn fingerprints(&self) -> Vec<(String, String)> {
        self.keys
            .iter()
            .map(|(n, k)| (n.clone(), format!("{}", k.fingerprint()).to_uppercase()))
            .collect()
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
    pub fn verify(&self, ring: &Keyring, data: impl Read) -> Result<String> {
        let s = &self.sig.signature;
        let ids: Vec<String> = s
            .issuer_key_id()
            .iter()
            .map(|k| format!("{k:?}"))
            .chain(s.issuer_fingerprint().iter().map(|f| format!("{f:?}")))
            .collect();
        for (name, key) in &ring.keys {
            if signed_by(s, key) {
                self.sig
                    .signature
                    .verify(key, data)
                    .map_err(|e| anyhow!("the signature by {name} does not match: {e}"))?;
                return Ok(name.clone());
            }
            for sub in &key.public_subkeys {
                if signed_by(s, sub) {
                    self.sig.signature.verify(sub, data).map_err(|e| {
                        anyhow!("the signature by {name} (subkey) does not match: {e}")
                    })?;
                    return Ok(name.clone());
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

/// A reader that computes sha256 (for the cache's name) and sha512 (when a
/// publisher gives only that) of everything read through it.
pub struct DigestReader<R> {
    inner: R,
    sha256: sha2::Sha256,
    sha512: Option<sha2::Sha512>,
    pub bytes: u64,
}

impl<R: Read> DigestReader<R> {
    pub fn new(inner: R, want_sha512: bool) -> Self {
        use sha2::Digest as _;
        DigestReader {
            inner,
            sha256: sha2::Sha256::new(),
            sha512: want_sha512.then(sha2::Sha512::new),
            bytes: 0,
        }
    }

    /// Read what is left, then return (sha256, sha512 if asked for).
    pub fn finish(mut self) -> Result<([u8; 32], Option<[u8; 64]>)> {
        use sha2::Digest as _;
        std::io::copy(&mut self, &mut std::io::sink()).context("reading the file to hash it")?;
        Ok((
            self.sha256.finalize().into(),
            self.sha512.map(|h| h.finalize().into()),
        ))
    }
}

impl<R: Read> Read for DigestReader<R> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        use sha2::Digest as _;
        let n = self.inner.read(buf)?;
        self.sha256.update(&buf[..n]);
        if let Some(h) = &mut self.sha512 {
            h.update(&buf[..n]);
        }
        self.bytes += n as u64;
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
