//! The fuzz harnesses: one module per fuzz target, each with `run` (one
//! input, through the same code mkstick runs on that kind of file) and
//! `seeds` (the starting corpus, made from the repository's fixtures).
//!
//! Errors returned as `Err` are the expected outcome for most inputs; only
//! a panic, an overflow, a hang or running out of memory is a finding.
//! Targets that read several kinds of file pick one with the input's first
//! byte.

pub mod config;
pub mod cpio;
pub mod devices;
pub mod image;
pub mod iso9660;
pub mod manifests;
pub mod openpgp;
pub mod release_metadata;

use anyhow::{Context, Result};
use std::path::{Path, PathBuf};
use std::sync::OnceLock;

/// A seed file: its name in the corpus and its bytes.
pub type Seed = (String, Vec<u8>);

/// Called once when a target starts. With `MKSTICK_FUZZ_WRITE_SEEDS=DIR`
/// in the environment it writes the target's seeds into DIR and exits,
/// so `scripts/fuzz` seeds every corpus from the same build.
pub fn init(target: &str) {
    let Some(dir) = std::env::var_os("MKSTICK_FUZZ_WRITE_SEEDS") else {
        return;
    };
    let dir = PathBuf::from(dir);
    match write_seeds(target, &dir) {
        Ok(n) => {
            eprintln!("{target}: wrote {n} seeds into {}", dir.display());
            std::process::exit(0)
        }
        Err(e) => {
            eprintln!("{target}: writing seeds: {e:#}");
            std::process::exit(1)
        }
    }
}

fn write_seeds(target: &str, dir: &Path) -> Result<usize> {
    let repo = repo_root();
    let seeds = match target {
        "config" => config::seeds(&repo)?,
        "cpio" => cpio::seeds(&repo)?,
        "devices" => devices::seeds(&repo)?,
        "image" => image::seeds(&repo)?,
        "iso9660" => iso9660::seeds(&repo)?,
        "manifests" => manifests::seeds(&repo)?,
        "openpgp" => openpgp::seeds(&repo)?,
        "release_metadata" => release_metadata::seeds(&repo)?,
        other => anyhow::bail!("no seeds for target {other}"),
    };
    std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    for (name, bytes) in &seeds {
        let path = dir.join(name);
        std::fs::write(&path, bytes).with_context(|| format!("writing {}", path.display()))?;
    }
    Ok(seeds.len())
}

/// The mkstick checkout this crate sits in (`tests/fuzz/../..`).
pub fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

/// A scratch directory for the whole run of one target, under `$TMPDIR`
/// (`scripts/fuzz` points that into target/ and removes it afterwards).
pub fn scratch() -> &'static Path {
    static DIR: OnceLock<tempfile::TempDir> = OnceLock::new();
    DIR.get_or_init(|| {
        tempfile::Builder::new()
            .prefix("mkstick-fuzz-")
            .tempdir()
            .expect("creating a scratch directory under $TMPDIR")
    })
    .path()
}

/// `selector` followed by `bytes`: a seed for a target that picks a parser
/// with the first byte.
pub fn with_selector(selector: u8, bytes: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(bytes.len() + 1);
    out.push(selector);
    out.extend_from_slice(bytes);
    out
}

/// Every file under `dir` (recursively) whose name ends in one of `exts`,
/// sorted; nothing if `dir` does not exist.
pub fn files_under(dir: &Path, exts: &[&str]) -> Vec<PathBuf> {
    let mut out = Vec::new();
    let mut todo = vec![dir.to_path_buf()];
    while let Some(d) = todo.pop() {
        let Ok(rd) = std::fs::read_dir(&d) else {
            continue;
        };
        for e in rd.flatten() {
            let p = e.path();
            if p.is_dir() {
                todo.push(p);
            } else if exts.iter().any(|x| {
                p.file_name()
                    .and_then(|n| n.to_str())
                    .is_some_and(|n| n.ends_with(x))
            }) {
                out.push(p);
            }
        }
    }
    out.sort();
    out
}

/// A seed name from a path: its components joined with `_`.
pub fn seed_name(prefix: &str, repo: &Path, p: &Path) -> String {
    let rel = p.strip_prefix(repo).unwrap_or(p);
    let flat: String = rel
        .to_string_lossy()
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '.' || c == '-' {
                c
            } else {
                '_'
            }
        })
        .collect();
    format!("{prefix}{flat}")
}

/// CRC-32 (IEEE, as GPT uses), bit by bit: only for fixing up inputs.
pub fn crc32(bytes: &[u8]) -> u32 {
    let mut crc = !0u32;
    for &b in bytes {
        crc ^= u32::from(b);
        for _ in 0..8 {
            crc = if crc & 1 != 0 {
                (crc >> 1) ^ 0xedb8_8320
            } else {
                crc >> 1
            };
        }
    }
    !crc
}

/// An OpenSSH public key for seeds (the one the unit tests use).
pub const SSH_KEY: &str =
    "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIIiI12AOmJheE4nbgJvDhe47oAV8xqWv1169OlfLBIpZ test@mkstick";

/// The harnesses' own checks (`cargo +nightly test --manifest-path
/// tests/fuzz/Cargo.toml --lib`): the seeds are inputs mkstick accepts, so
/// fuzzing starts past the parsers' first error.
#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn seed_configs_pass_check() {
        for (name, bytes) in config::seeds(&repo_root()).unwrap() {
            let r = config::check_text(std::str::from_utf8(&bytes).unwrap());
            if name == "starter-without-key.toml" {
                assert!(r.is_err(), "nobody could log in");
            } else {
                r.unwrap_or_else(|e| panic!("{name}: {e:#}"));
            }
        }
    }

    #[test]
    fn seed_images_inspect_and_verify() {
        for (name, bytes) in image::seeds(&repo_root()).unwrap() {
            if name.contains("tests_fixtures_fuzz") {
                continue; // a crash's input
            }
            if bytes[0] & 1 == 1 {
                assert!(!mkstick::formats::fat::read_tree(&bytes[1..])
                    .unwrap()
                    .is_empty());
                continue;
            }
            let p = scratch().join("t.img");
            std::fs::write(&p, &bytes[1..]).unwrap();
            let r = mkstick::inspect::run(
                &mkstick::cli::InspectArgs {
                    image: p,
                    json: false,
                    show_config: false,
                    verify: !name.contains("empty"),
                },
                &mkstick::progress::Progress::hidden(),
                &mut Vec::new(),
            );
            r.unwrap_or_else(|e| panic!("{name}: {e:#}"));
        }
    }
}
