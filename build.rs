//! Embeds `overlays/` and `manifests/` into the binary as sorted tables, so
//! an installed mkstick needs no files beside it.

use std::fmt::Write as _;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

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

fn main() {
    let root = PathBuf::from(std::env::var("CARGO_MANIFEST_DIR").expect("cargo sets it"));
    let mut code = String::new();
    embed(&root.join("overlays"), "OVERLAYS", &mut code);
    embed(&root.join("manifests"), "MANIFESTS", &mut code);
    let out = PathBuf::from(std::env::var("OUT_DIR").expect("cargo sets it")).join("overlays.rs");
    std::fs::write(out, code).expect("writing overlays.rs");
}
