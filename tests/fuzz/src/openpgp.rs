//! `openpgp`: detached signatures and public keys as `os/verify.rs` reads
//! them. The first byte picks:
//! 0 a signature (binary or armored), checked against the embedded Fedora
//!   and Flatcar keys over [`SIGNED`];
//! 1 an armored public key loaded as a keyring (bindings verified), then
//!   asked whether it or a subkey could sign at a few times;
//! 2 a key and a signature: two bytes of key length, the armored key, then
//!   the signature, checked over [`SIGNED`].

use crate::{with_selector, Seed};
use anyhow::{bail, Context, Result};
use mkstick::os::verify::{unusable_at, Keyring, Signature};
use pgp::composed::{Deserializable, SignedPublicKey};
use pgp::types::KeyDetails;
use std::path::Path;
use std::process::Command;
use std::sync::OnceLock;

/// The bytes every signature in the seeds signs.
pub const SIGNED: &[u8] = b"mkstick fuzz: the signed data\n";

fn embedded() -> &'static [Keyring; 2] {
    static RINGS: OnceLock<[Keyring; 2]> = OnceLock::new();
    RINGS.get_or_init(|| {
        [
            Keyring::fedora().expect("the embedded Fedora keys load"),
            Keyring::flatcar().expect("the embedded Flatcar key loads"),
        ]
    })
}

pub fn run(data: &[u8]) {
    let Some((&selector, rest)) = data.split_first() else {
        return;
    };
    match selector % 3 {
        0 => {
            if let Ok(sig) = Signature::parse(rest) {
                for ring in embedded() {
                    let _ = sig.verify(ring, SIGNED);
                }
            }
        }
        1 => {
            if let Ok(text) = std::str::from_utf8(rest) {
                key(text);
            }
        }
        _ => {
            if rest.len() < 2 {
                return;
            }
            let n = usize::from(u16::from_be_bytes([rest[0], rest[1]]));
            let rest = &rest[2..];
            let (key, sig) = rest.split_at(n.min(rest.len()));
            let Ok(key) = std::str::from_utf8(key) else {
                return;
            };
            let Ok(ring) = Keyring::from_armored("Fuzz", &[("fuzz", key)]) else {
                return;
            };
            if let Ok(sig) = Signature::parse(sig) {
                let _ = sig.verify(&ring, SIGNED);
            }
        }
    }
}

/// A key as `Keyring::from_armored` loads it, and the checks a signature
/// by it goes through.
fn key(text: &str) {
    let Ok(ring) = Keyring::from_armored("Fuzz", &[("fuzz", text)]) else {
        return;
    };
    for (_, fpr) in ring.fingerprints() {
        let _ = ring.has(&fpr);
    }
    // The ring loaded it, so it parses; its keys are private to the ring.
    let Ok((key, _)) = SignedPublicKey::from_string(text) else {
        return;
    };
    let born = key.primary_key.created_at().as_secs();
    for at in [0, born, born.saturating_add(86_400), u32::MAX] {
        let _ = unusable_at(&key, None, at);
        for sub in &key.public_subkeys {
            let _ = unusable_at(&key, Some(sub), at);
        }
    }
}

pub fn seeds(repo: &Path) -> Result<Vec<Seed>> {
    let mut out = Vec::new();
    for p in crate::files_under(&repo.join("src/os/keys"), &[".asc"]) {
        let bytes = std::fs::read(&p)?;
        out.push((crate::seed_name("1-", repo, &p), with_selector(1, &bytes)));
    }
    match gpg_seeds() {
        Ok(s) => out.extend(s),
        Err(e) => eprintln!("openpgp: no gpg-made seeds ({e:#}); install gnupg for them"),
    }
    Ok(out)
}

/// Throwaway keys made with gpg (RSA, and ed25519 with a signing subkey),
/// and their signatures over [`SIGNED`], binary and armored.
fn gpg_seeds() -> Result<Vec<Seed>> {
    let home = tempfile::tempdir()?;
    let gpg = |args: &[&str]| -> Result<Vec<u8>> {
        let out = Command::new("gpg")
            .arg("--homedir")
            .arg(home.path())
            .args([
                "--batch",
                "--quiet",
                "--pinentry-mode",
                "loopback",
                "--passphrase",
                "",
            ])
            .args(args)
            .output()
            .context("running gpg")?;
        if !out.status.success() {
            bail!("gpg {args:?}: {}", String::from_utf8_lossy(&out.stderr));
        }
        Ok(out.stdout)
    };
    let data = home.path().join("data");
    std::fs::write(&data, SIGNED)?;
    let data = data.to_str().context("a UTF-8 temp path")?;
    let mut out = Vec::new();
    let keys = [
        ("rsa", "rsa2048", "sign", None),
        ("ed25519-subkey", "ed25519", "cert", Some("ed25519")),
    ];
    for (name, algo, usage, sub) in keys {
        let uid = format!("mkstick fuzz {name} <{name}@example.invalid>");
        gpg(&["--quick-gen-key", &uid, algo, usage, "never"])?;
        if let Some(sub_algo) = sub {
            let listing = String::from_utf8(gpg(&["--with-colons", "--list-keys", &uid])?)?;
            let fpr = listing
                .lines()
                .find_map(|l| l.strip_prefix("fpr:"))
                .and_then(|l| l.split(':').find(|f| !f.is_empty()))
                .context("gpg listed no fingerprint")?
                .to_string();
            gpg(&["--quick-add-key", &fpr, sub_algo, "sign", "never"])?;
        }
        let public = gpg(&["--armor", "--export", &uid])?;
        out.push((format!("1-{name}.asc"), with_selector(1, &public)));
        for armor in [false, true] {
            let mut args = vec![
                "--yes",
                "--local-user",
                &uid,
                "--detach-sign",
                "--output",
                "-",
            ];
            if armor {
                args.insert(0, "--armor");
            }
            args.push(data);
            let sig = gpg(&args)?;
            let kind = if armor { "armored" } else { "binary" };
            out.push((format!("0-{name}-{kind}.sig"), with_selector(0, &sig)));
            let mut both = vec![2];
            both.extend_from_slice(&u16::try_from(public.len())?.to_be_bytes());
            both.extend_from_slice(&public);
            both.extend_from_slice(&sig);
            out.push((format!("2-{name}-{kind}.keysig"), both));
        }
    }
    Ok(out)
}
