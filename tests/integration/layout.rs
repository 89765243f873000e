//! The pipeline in the code: no module imports a module that imports it
//! back, `lib.rs` holds only the module list and the dispatch, and the
//! flashing library knows nothing of the command line.
//!
//! Reads `src/` as text: a `crate::NAME` path (also inside
//! `use crate::{…}`) is an edge between top-level modules, and a
//! `super::NAME` or `crate::PARENT::NAME` path is an edge between two files
//! of one directory. Unit tests (`#[cfg(test)]` to the end of a file) and
//! comments are left out.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

type Graph = BTreeMap<String, BTreeSet<String>>;

fn src() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("src")
}

fn rust_files(dir: &Path, out: &mut Vec<PathBuf>) {
    for e in std::fs::read_dir(dir).unwrap() {
        let p = e.unwrap().path();
        if p.is_dir() {
            rust_files(&p, out);
        } else if p.extension().is_some_and(|x| x == "rs") {
            out.push(p);
        }
    }
}

/// The module path of a file: `src/os/fcos.rs` -> ["os", "fcos"],
/// `src/os/mod.rs` -> ["os"], `src/image.rs` -> ["image"].
fn module_of(file: &Path) -> Vec<String> {
    let rel = file.strip_prefix(src()).unwrap().with_extension("");
    let mut parts: Vec<String> = rel
        .components()
        .map(|c| c.as_os_str().to_string_lossy().into_owned())
        .collect();
    if parts.last().is_some_and(|l| l == "mod") {
        parts.pop();
    }
    parts
}

/// The code without unit tests and comments.
fn code(text: &str) -> String {
    let text = text.split("#[cfg(test)]").next().unwrap_or("");
    text.lines()
        .map(|l| match l.find("//") {
            Some(i) => &l[..i],
            None => l,
        })
        .collect::<Vec<_>>()
        .join("\n")
}

fn ident_at(s: &str) -> &str {
    let end = s
        .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
        .unwrap_or(s.len());
    &s[..end]
}

/// Every name right after `prefix`, and every name in a `prefix{a, b::c}`
/// group.
fn names_after(code: &str, prefix: &str) -> BTreeSet<String> {
    let mut out = BTreeSet::new();
    for (i, _) in code.match_indices(prefix) {
        let before = code[..i].chars().next_back();
        if before.is_some_and(|c| c.is_ascii_alphanumeric() || c == '_' || c == ':') {
            continue; // `super::super::x`, `foo_crate::x`
        }
        let rest = &code[i + prefix.len()..];
        if let Some(group) = rest.strip_prefix('{') {
            let group = &group[..group.find('}').unwrap_or(group.len())];
            for item in group.split(',') {
                let name = ident_at(item.trim());
                if !name.is_empty() {
                    out.insert(name.to_string());
                }
            }
        } else {
            let name = ident_at(rest);
            // `super::super::x` leaves the directory.
            if !name.is_empty() && name != "super" && name != "self" {
                out.insert(name.to_string());
            }
        }
    }
    out
}

/// (top-level module graph, graphs of the files of each directory)
fn graphs() -> (Graph, BTreeMap<String, Graph>) {
    let mut files = Vec::new();
    rust_files(&src(), &mut files);
    let modules: Vec<Vec<String>> = files.iter().map(|f| module_of(f)).collect();
    let exists = |m: &[String]| modules.iter().any(|x| x == m);
    let mut top = Graph::new();
    let mut siblings: BTreeMap<String, Graph> = BTreeMap::new();
    for (file, module) in files.iter().zip(&modules) {
        let code = code(&std::fs::read_to_string(file).unwrap());
        let me = module.first().cloned().unwrap_or_default();
        for name in names_after(&code, "crate::") {
            if name != me && exists(std::slice::from_ref(&name)) {
                top.entry(me.clone()).or_default().insert(name);
            }
        }
        if module.len() >= 2 {
            let parent = &module[..module.len() - 1];
            let leaf = &module[module.len() - 1];
            let mut near = names_after(&code, "super::");
            near.extend(names_after(
                &code,
                &format!("crate::{}::", parent.join("::")),
            ));
            for name in near {
                let mut sib = parent.to_vec();
                sib.push(name.clone());
                if &name != leaf && exists(&sib) {
                    siblings
                        .entry(parent.join("/"))
                        .or_default()
                        .entry(leaf.clone())
                        .or_default()
                        .insert(name);
                }
            }
        }
    }
    (top, siblings)
}

/// One cycle of `g`, as a path that ends where it starts, if there is one.
fn cycle(g: &Graph) -> Option<Vec<String>> {
    fn visit(
        g: &Graph,
        n: &str,
        path: &mut Vec<String>,
        done: &mut BTreeSet<String>,
    ) -> Option<Vec<String>> {
        if let Some(i) = path.iter().position(|p| p == n) {
            let mut c = path[i..].to_vec();
            c.push(n.to_string());
            return Some(c);
        }
        if done.contains(n) {
            return None;
        }
        path.push(n.to_string());
        for next in g.get(n).into_iter().flatten() {
            if let Some(c) = visit(g, next, path, done) {
                return Some(c);
            }
        }
        path.pop();
        done.insert(n.to_string());
        None
    }
    let mut done = BTreeSet::new();
    g.keys()
        .find_map(|n| visit(g, n, &mut Vec::new(), &mut done))
}

#[test]
fn the_cycle_finder_finds_cycles() {
    let g = |edges: &[(&str, &str)]| {
        let mut g = Graph::new();
        for (a, b) in edges {
            g.entry(a.to_string()).or_default().insert(b.to_string());
        }
        g
    };
    assert_eq!(cycle(&g(&[("a", "b"), ("b", "c")])), None);
    assert_eq!(
        cycle(&g(&[("a", "b"), ("b", "c"), ("c", "a")])).unwrap(),
        ["a", "b", "c", "a"]
    );
    let code =
        "use crate::{os::x, plan};\nuse super::fat::Layout; crate::io::hex(); super::super::y";
    assert_eq!(
        names_after(code, "crate::"),
        ["io", "os", "plan"].map(String::from).into()
    );
    assert_eq!(
        names_after(code, "super::"),
        ["fat"].map(String::from).into()
    );
}

#[test]
fn no_module_imports_one_that_imports_it_back() {
    let (top, siblings) = graphs();
    // The graph is real: the stages do use each other.
    assert!(top["plan"].contains("config"), "{top:?}");
    assert!(top["image"].contains("payload"), "{top:?}");
    if let Some(c) = cycle(&top) {
        panic!(
            "an import cycle between modules: {}; move what both need into the earlier one, or into a shared module\n{top:#?}",
            c.join(" -> ")
        );
    }
    for (dir, g) in &siblings {
        if let Some(c) = cycle(g) {
            panic!(
                "an import cycle between the files of src/{dir}: {}\n{g:#?}",
                c.join(" -> ")
            );
        }
    }
}

#[test]
fn lib_rs_is_the_module_list_and_the_dispatch() {
    let lib = code(&std::fs::read_to_string(src().join("lib.rs")).unwrap());
    let fns: Vec<&str> = lib
        .lines()
        .filter(|l| l.trim_start().starts_with("pub fn ") || l.trim_start().starts_with("fn "))
        .collect();
    assert_eq!(
        fns,
        ["pub fn run(cli: Cli, progress: &Progress) -> Result<ExitCode> {"]
    );
    for word in ["struct ", "enum ", "impl ", "trait "] {
        assert!(!lib.contains(word), "lib.rs defines a {word}");
    }
}

#[test]
fn the_flashing_library_has_no_command_line_types() {
    let mut files = Vec::new();
    rust_files(&src().join("device"), &mut files);
    for f in files {
        let text = std::fs::read_to_string(&f).unwrap();
        assert!(
            !text.contains("clap") && !text.contains("crate::cli"),
            "{} uses the command line's types",
            f.display()
        );
    }
}
