//! `mkstick init`: the starter config, with the user's SSH key.

use super::write_private;
use crate::cli::InitArgs;
use crate::{config, image};
use anyhow::Result;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

pub fn init(a: &InitArgs, out: &mut impl Write) -> Result<ExitCode> {
    image::check_output(&a.output, a.force)?;
    let key = find_ssh_key();
    let text = config::starter_config(key.as_ref().map(|(_, k)| k.as_str()));
    write_private(&a.output, text.as_bytes(), a.force)?;
    match &key {
        Some((path, _)) => writeln!(
            out,
            "wrote {} with your key {}",
            a.output.display(),
            path.display()
        )?,
        None => writeln!(
            out,
            "wrote {}; no ~/.ssh/id_*.pub was found, so add your public key to it",
            a.output.display()
        )?,
    }
    writeln!(
        out,
        "next: run `mkstick plan` (it downloads Fedora CoreOS once; see [os])"
    )?;
    Ok(ExitCode::SUCCESS)
}

/// The user's first valid public key, preferring ed25519.
fn find_ssh_key() -> Option<(PathBuf, String)> {
    let home = std::env::var_os("HOME")?;
    let dir = Path::new(&home).join(".ssh");
    let mut keys: Vec<PathBuf> = std::fs::read_dir(&dir)
        .ok()?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| {
            let name = p.file_name().and_then(|n| n.to_str()).unwrap_or("");
            name.starts_with("id_") && name.ends_with(".pub")
        })
        .collect();
    keys.sort_by_key(|p| (!p.to_string_lossy().contains("ed25519"), p.clone()));
    keys.into_iter().find_map(|p| {
        let text = std::fs::read_to_string(&p).ok()?;
        let key: config::types::SshPublicKey = text.trim().parse().ok()?;
        Some((p, key.to_string()))
    })
}
