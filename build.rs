//! Embeds `overlays/` and `manifests/` into the binary as sorted tables, so
//! an installed mkstick needs no files beside it; and names the commit
//! mkstick is built from, for `mkstick --version`.
//!
//! `MKSTICK_LONG_VERSION` is `0.1.0 (abcdef123456 2026-12-05)`: the package
//! version, the commit and the commit's date (not the build's, so the same
//! commit always says the same). Built outside its own git checkout (a
//! crate tarball, no git), it is the package version alone.

use std::fmt::Write as _;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::Command;

fn walk(dir: &Path, out: &mut Vec<PathBuf>) {
    let mut entries: Vec<_> = std::fs::read_dir(dir)
        .unwrap_or_else(|e| panic!("reading {}: {e}", dir.display()))
        .map(|e| e.expect("directory entry").path())
        .collect();
    entries.sort();
    for p in entries {
        if p.is_dir() {
            walk(&p, out);
        } else {
            out.push(p);
        }
    }
}

/// `pub static NAME: &[EmbeddedFile]` for every file under `dir/<group>/`.
fn embed(dir: &Path, name: &str, code: &mut String) {
    println!("cargo:rerun-if-changed={}", dir.display());
    let mut files = Vec::new();
    walk(dir, &mut files);
    writeln!(code, "pub static {name}: &[EmbeddedFile] = &[").expect("writing to a String");
    for f in &files {
        let rel = f.strip_prefix(dir).expect("under the directory");
        let mut parts = rel.iter().map(|p| p.to_str().expect("UTF-8 paths"));
        let group = parts.next().expect("a group directory");
        let path: Vec<&str> = parts.collect();
        if path.is_empty() {
            continue; // README.md and other top-level notes
        }
        println!("cargo:rerun-if-changed={}", f.display());
        let mode = std::fs::metadata(f).expect("metadata").permissions().mode();
        writeln!(
            code,
            "    EmbeddedFile {{ group: {:?}, path: {:?}, executable: {}, contents: include_bytes!({:?}) }},",
            group,
            path.join("/"),
            mode & 0o111 != 0,
            f.display().to_string()
        )
        .expect("writing to a String");
    }
    code.push_str("];\n");
}

/// `git ARGS` in `dir`, trimmed stdout; `None` if git is missing or fails.
fn git(dir: &Path, args: &[&str]) -> Option<String> {
    let out = Command::new("git")
        .arg("-C")
        .arg(dir)
        .args(args)
        .output()
        .ok()?;
    let text = String::from_utf8(out.stdout).ok()?.trim().to_string();
    (out.status.success() && !text.is_empty()).then_some(text)
}

/// Whether `dir` is the top of a git checkout (not a tarball unpacked inside
/// some other repository); if so, rebuild when HEAD or its branch moves.
fn own_checkout(dir: &Path) -> Option<()> {
    let top = PathBuf::from(git(dir, &["rev-parse", "--show-toplevel"])?);
    if top.canonicalize().ok()? != dir.canonicalize().ok()? {
        return None;
    }
    // In a worktree, HEAD lives in its own git dir, branches in the common one.
    let git_dir = dir.join(git(dir, &["rev-parse", "--git-dir"])?);
    let common = dir.join(git(dir, &["rev-parse", "--git-common-dir"])?);
    let mut watch = vec![git_dir.join("HEAD"), common.join("packed-refs")];
    if let Some(branch) = git(dir, &["symbolic-ref", "-q", "HEAD"]) {
        watch.push(common.join(branch));
    }
    // A path that does not exist would make cargo rerun this every time.
    for p in watch.iter().filter(|p| p.exists()) {
        println!("cargo:rerun-if-changed={}", p.display());
    }
    Some(())
}

/// `MKSTICK_LONG_VERSION`, for clap's `--version`.
fn long_version(dir: &Path) {
    let version = std::env::var("CARGO_PKG_VERSION").expect("cargo sets CARGO_PKG_VERSION");
    let commit = own_checkout(dir).and_then(|_| {
        let hash = git(dir, &["rev-parse", "--short=12", "HEAD"])?;
        let date = git(dir, &["log", "-1", "--format=%cs", "HEAD"])?;
        Some(format!("{hash} {date}"))
    });
    let long = match commit {
        Some(c) => format!("{version} ({c})"),
        None => version,
    };
    println!("cargo:rustc-env=MKSTICK_LONG_VERSION={long}");
}

fn main() {
    let root = PathBuf::from(std::env::var("CARGO_MANIFEST_DIR").expect("cargo sets it"));
    let mut code = String::new();
    embed(&root.join("overlays"), "OVERLAYS", &mut code);
    embed(&root.join("manifests"), "MANIFESTS", &mut code);
    let out = PathBuf::from(std::env::var("OUT_DIR").expect("cargo sets it")).join("overlays.rs");
    std::fs::write(out, code).expect("writing overlays.rs");
    long_version(&root);
}
