//! The files of `overlays/` and `manifests/`, embedded at compile time by
//! `build.rs`, and the template engine that renders them: `{{name}}`
//! placeholders in paths and contents, each one required.

use anyhow::{bail, Context, Result};
use std::collections::BTreeMap;

/// One file of `overlays/<group>/<path>` or `manifests/<group>/<path>`.
#[derive(Debug)]
pub struct EmbeddedFile {
    pub group: &'static str,
    pub path: &'static str,
    pub executable: bool,
    pub contents: &'static [u8],
}

include!(concat!(env!("OUT_DIR"), "/overlays.rs"));

/// A file from `overlays/`, as it will be placed into the booted OS.
#[derive(Debug, Clone, PartialEq)]
pub enum OverlayFile {
    Unit {
        name: String,
        contents: String,
    },
    File {
        path: String,
        mode: u32,
        contents: Vec<u8>,
    },
}

/// One `overlays/` template, its path and contents rendered with `vars`.
pub fn render_overlay(f: &EmbeddedFile, vars: &BTreeMap<&str, String>) -> Result<OverlayFile> {
    let text = std::str::from_utf8(f.contents)
        .with_context(|| format!("overlay template {} is not UTF-8", f.path))?;
    let path = render_template(f.path, vars)
        .with_context(|| format!("rendering the name of overlays/{}/{}", f.group, f.path))?;
    // overlays/*/usr/local/bin/ holds mkstick's node scripts; on the node
    // they go to the OS's bin_dir (os.json), which units name as {{bin_dir}}.
    let path = match (path.strip_prefix(OVERLAY_BIN_DIR), vars.get("bin_dir")) {
        (Some(name), Some(dir)) => format!("{}/{name}", dir.trim_matches('/')),
        (Some(_), None) => bail!("overlays/{}/{}: no bin_dir to place it in", f.group, f.path),
        (None, _) => path,
    };
    let contents = render_template(text, vars)
        .with_context(|| format!("rendering overlays/{}/{}", f.group, f.path))?;
    overlay_file(&path, f.executable, contents.into_bytes())
}

/// Where the overlay tree keeps mkstick's node scripts (see [`render_overlay`]).
pub const OVERLAY_BIN_DIR: &str = "usr/local/bin/";

/// Replace every `{{name}}` in `text`; an unknown name is an error.
pub fn render_template(text: &str, vars: &BTreeMap<&str, String>) -> Result<String> {
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(start) = rest.find("{{") {
        out.push_str(&rest[..start]);
        let after = &rest[start + 2..];
        let Some(end) = after.find("}}") else {
            bail!("an unclosed `{{{{` in a template");
        };
        let name = &after[..end];
        match vars.get(name) {
            Some(v) => out.push_str(v),
            None => bail!("unknown placeholder `{{{{{name}}}}}`"),
        }
        rest = &after[end + 2..];
    }
    out.push_str(rest);
    Ok(out)
}

/// The files of one `overlays/` group, sorted, with the OS's bin_dir and
/// no other values.
pub fn group_files(group: &str, bin_dir: &str) -> Result<Vec<OverlayFile>> {
    let vars = std::collections::BTreeMap::from([("bin_dir", bin_dir.to_string())]);
    OVERLAYS
        .iter()
        .filter(|f| f.group == group)
        .map(|f| render_overlay(f, &vars))
        .collect()
}

/// One overlay file at `path` (relative to `/`): a systemd unit when it sits
/// directly in `etc/systemd/system/`, else a plain file.
fn overlay_file(path: &str, executable: bool, contents: Vec<u8>) -> Result<OverlayFile> {
    let unit_suffixes = [
        ".service", ".mount", ".target", ".timer", ".path", ".socket",
    ];
    let unit_name = path
        .strip_prefix("etc/systemd/system/")
        .filter(|n| !n.contains('/') && unit_suffixes.iter().any(|s| n.ends_with(s)));
    Ok(match unit_name {
        Some(name) => OverlayFile::Unit {
            name: name.to_string(),
            contents: String::from_utf8(contents)
                .with_context(|| format!("overlay unit {path} is not UTF-8"))?,
        },
        None => OverlayFile::File {
            path: format!("/{path}"),
            mode: if executable { 0o755 } else { 0o644 },
            contents,
        },
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn templates_render_every_placeholder_or_fail() {
        let vars = BTreeMap::from([("a", "1".to_string())]);
        assert_eq!(render_template("x{{a}}y{{a}}", &vars).unwrap(), "x1y1");
        assert!(render_template("{{b}}", &vars).is_err());
        assert!(render_template("{{a", &vars).is_err());
        assert_eq!(
            render_template("${#x[@]} {x}", &vars).unwrap(),
            "${#x[@]} {x}"
        );
    }

    #[test]
    fn base_overlay_has_the_banner_unit_and_its_script() {
        let files = group_files("base", "/usr/local/bin").unwrap();
        assert!(files.iter().any(
            |f| matches!(f, OverlayFile::Unit { name, .. } if name == "mkstick-banner.service")
        ));
        assert!(files.iter().any(|f| matches!(
            f,
            OverlayFile::File { path, mode: 0o755, .. } if path == "/usr/local/bin/mkstick-banner"
        )));
    }
}
