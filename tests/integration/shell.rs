//! What mkstick tells shells and `man`: completion scripts and manual pages,
//! generated from the clap definitions, checked by the real tools.

use crate::common::*;
use std::process::{Command, Stdio};

/// Run `tool args… FILE` on `text` written to a file; assert it succeeds
/// and says nothing on stderr.
fn check_with(tool_path: &std::path::Path, args: &[&str], text: &str, ext: &str) {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join(format!("mkstick.{ext}"));
    std::fs::write(&file, text).unwrap();
    let out = Command::new(tool_path)
        .args(args)
        .arg(&file)
        .stdin(Stdio::null())
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success() && err.trim().is_empty(),
        "{} {args:?} failed: {err}",
        tool_path.display()
    );
}

fn completion(shell: &str) -> String {
    let dir = tempfile::tempdir().unwrap();
    let text = ok(mkstick(dir.path(), &["completions", shell], &[]));
    assert!(text.contains("mkstick"), "{text}");
    // Every subcommand can be completed.
    for sub in ["init", "plan", "build", "flash", "completions", "man"] {
        assert!(text.contains(sub), "{shell} completion lacks {sub}");
    }
    text
}

#[test]
fn bash_completion_parses_and_registers() {
    let text = completion("bash");
    let bash = tool("bash").expect("bash is always there");
    check_with(&bash, &["-n"], &text, "bash");
    // Sourced, it registers a completion for mkstick.
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("mkstick.bash");
    std::fs::write(&file, &text).unwrap();
    let out = Command::new(&bash)
        .arg("-c")
        .arg(format!(". '{}' && complete -p mkstick", file.display()))
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(String::from_utf8_lossy(&out.stdout).contains("mkstick"));
}

#[test]
fn zsh_completion_parses() {
    let text = completion("zsh");
    assert!(text.starts_with("#compdef mkstick"), "{text}");
    if let Some(zsh) = tool("zsh") {
        check_with(&zsh, &["-n"], &text, "zsh");
    }
}

#[test]
fn fish_completion_parses() {
    let text = completion("fish");
    if let Some(fish) = tool("fish") {
        check_with(&fish, &["-n"], &text, "fish");
    }
}

#[test]
fn unknown_shell_is_a_usage_error() {
    let dir = tempfile::tempdir().unwrap();
    let out = mkstick(dir.path(), &["completions", "tcsh"], &[]);
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
}

#[test]
fn man_page_renders_without_warnings() {
    let dir = tempfile::tempdir().unwrap();
    let roff = ok(mkstick(dir.path(), &["man"], &[]));
    assert!(roff.contains(".TH mkstick 1"), "{roff}");
    assert!(roff.contains("mkstick\\-flash(1)"), "{roff}");
    if let Some(groff) = tool("groff") {
        check_with(&groff, &["-man", "-Tutf8", "-ww", "-z"], &roff, "1");
    }
}

#[test]
fn man_dir_writes_one_page_per_command() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("man1");
    std::fs::create_dir(&out).unwrap();
    ok(mkstick(
        dir.path(),
        &["man", "--dir", out.to_str().unwrap()],
        &[],
    ));
    for page in [
        "mkstick.1",
        "mkstick-build.1",
        "mkstick-flash.1",
        "mkstick-cache-prune.1",
    ] {
        let text = std::fs::read_to_string(out.join(page)).unwrap();
        if let Some(groff) = tool("groff") {
            check_with(&groff, &["-man", "-Tutf8", "-ww", "-z"], &text, "1");
        }
    }
    let flash = std::fs::read_to_string(out.join("mkstick-flash.1")).unwrap();
    assert!(flash.contains("\\-\\-no\\-verify"), "{flash}");
}
