//! `mkstick inspect`: read an image back (GPT, FAT, manifest, config initrd)
//! and report what is in it. Secrets are redacted unless --show-config.

use crate::cli::InspectArgs;
use crate::formats::{fat, gpt, initrd};
use crate::ignition;
use crate::io::{HashReader, Sha256Digest, Slice, BUFFER_SIZE};
use crate::payload::grub;
use crate::payload::{StickManifest, MANIFEST_PATH};
use crate::progress::Progress;
use anyhow::{bail, Context, Result};
use serde::Serialize;
use std::io::{Read, Write};
use std::process::ExitCode;

#[derive(Debug, Serialize)]
#[serde(rename_all = "kebab-case")]
pub struct Report {
    pub image: String,
    pub size_bytes: u64,
    pub disk_guid: String,
    pub partition: PartitionReport,
    pub mkstick_version: Option<String>,
    pub os: Option<crate::payload::ManifestOs>,
    pub seed: Option<String>,
    pub kernel_args: Vec<String>,
    pub files: Vec<FileReport>,
    pub config: Option<ConfigSummary>,
    /// The server the stick makes, from its Ignition config; no secrets.
    pub server: Option<ServerSummary>,
    /// Every file compared with `mkstick/manifest.json`; `None` when the
    /// image has no manifest.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub verify: Option<VerifyReport>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub ignition: Option<ignition::Config>,
}

#[derive(Debug, Serialize)]
#[serde(rename_all = "kebab-case")]
pub struct PartitionReport {
    pub name: String,
    pub guid: String,
    pub first_lba: u64,
    pub size_bytes: u64,
    pub fat_volume_id: String,
    pub cluster_bytes: u32,
}

#[derive(Debug, Serialize)]
#[serde(rename_all = "kebab-case")]
pub struct FileReport {
    pub path: String,
    pub size_bytes: u64,
    pub sha256: Sha256Digest,
}

#[derive(Debug, Serialize)]
#[serde(rename_all = "kebab-case")]
pub struct ConfigSummary {
    pub sha256: Sha256Digest,
    pub spec: String,
    pub users: Vec<UserSummary>,
    pub files: Vec<String>,
    pub links: Vec<String>,
    pub units: Vec<String>,
    pub merged_configs: usize,
}

#[derive(Debug, Serialize)]
#[serde(rename_all = "kebab-case")]
pub struct UserSummary {
    pub name: String,
    pub ssh_keys: Vec<String>,
    pub password: String,
}

#[derive(Debug, Serialize)]
#[serde(rename_all = "kebab-case")]
pub struct VerifyReport {
    pub ok: bool,
    pub checked: usize,
    pub problems: Vec<String>,
    /// The files whose bytes differ from the manifest, or are missing.
    pub bad_files: Vec<String>,
}

#[derive(Debug, Serialize)]
#[serde(rename_all = "kebab-case")]
pub struct ServerSummary {
    pub hostname: Option<String>,
    /// The data drives' `/dev/disk/by-id/` names; empty without `[storage]`.
    pub drives: Vec<String>,
    pub profile: Option<String>,
    pub kubernetes_version: Option<String>,
}

/// The contents of the file at `path` in an Ignition config, if it is there.
fn ignition_file(c: &ignition::Config, path: &str) -> Option<String> {
    let f = c.storage.files.iter().find(|f| f.path == path)?;
    let bytes = ignition::decode_data_url(&f.contents.as_ref()?.source)?;
    String::from_utf8(bytes).ok()
}

/// `KEY`'s value in a shell env file mkstick wrote (`KEY=value` or
/// `KEY='value'`).
fn env_value(text: &str, key: &str) -> Option<String> {
    text.lines().find_map(|l| {
        let v = l.strip_prefix(key)?.strip_prefix('=')?;
        Some(v.trim().trim_matches(|c| c == '\'' || c == '"').to_string())
    })
}

/// The server's name, drives and Kubernetes version, read from the files
/// the Ignition config writes (`/etc/hostname`, and the env files of
/// `overlays/storage` and `overlays/kubernetes`).
fn server_summary(c: &ignition::Config) -> ServerSummary {
    let storage = ignition_file(c, "/etc/mkstick/storage.env");
    let k8s = ignition_file(c, "/etc/mkstick/kubernetes.env");
    ServerSummary {
        hostname: ignition_file(c, "/etc/hostname").map(|h| h.trim().to_string()),
        drives: storage
            .as_deref()
            .and_then(|t| env_value(t, "MKSTICK_DRIVES"))
            .map(|d| d.split_whitespace().map(String::from).collect())
            .unwrap_or_default(),
        profile: storage
            .as_deref()
            .and_then(|t| env_value(t, "MKSTICK_PROFILE")),
        kubernetes_version: k8s
            .as_deref()
            .and_then(|t| env_value(t, "KUBERNETES_VERSION")),
    }
}

impl std::fmt::Display for ServerSummary {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "server {}",
            self.hostname.as_deref().unwrap_or("(no hostname)")
        )?;
        match self.drives.len() {
            0 => write!(f, ", no data drives")?,
            n => write!(
                f,
                ", {n} data drive{} ({}): {}",
                if n == 1 { "" } else { "s" },
                self.profile.as_deref().unwrap_or("?"),
                self.drives.join(", ")
            )?,
        }
        match &self.kubernetes_version {
            Some(v) => write!(f, ", Kubernetes {v}"),
            None => write!(f, ", no Kubernetes"),
        }
    }
}

/// Read everything `inspect` reports from the image at `path`.
pub fn read(path: &std::path::Path, with_config: bool, progress: &Progress) -> Result<Report> {
    let file = std::fs::File::open(path).with_context(|| format!("opening {}", path.display()))?;
    let size_bytes = crate::io::len_of(&file).context("reading the size")?;
    let esp = gpt::read_esp(&file).with_context(|| format!("reading {}", path.display()))?;
    let mut disk = Slice::new(&file, esp.start_bytes(), esp.size_bytes());
    fat::check_volume(&mut disk).with_context(|| format!("reading {}", path.display()))?;
    let fs = fatfs::FileSystem::new(&mut disk, fatfs::FsOptions::new()).with_context(|| {
        format!(
            "{}: the EFI partition is not a FAT filesystem",
            path.display()
        )
    })?;
    let partition = PartitionReport {
        name: esp.name.clone(),
        guid: esp.part_guid.to_string(),
        first_lba: esp.first_lba,
        size_bytes: esp.size_bytes(),
        fat_volume_id: grub::fat_uuid(fs.volume_id()),
        cluster_bytes: fs.cluster_size(),
    };
    let bar = progress.bar("reading image", esp.size_bytes());
    let mut files = Vec::new();
    let mut small = std::collections::BTreeMap::new();
    let mut buf = vec![0u8; BUFFER_SIZE];
    fat::walk(&fs, |p, f| {
        let mut r = HashReader::new(f);
        let mut keep = Vec::new();
        loop {
            let n = r.read(&mut buf).with_context(|| format!("reading {p}"))?;
            if n == 0 {
                break;
            }
            bar.inc(n as u64);
            if keep.len() < 4 << 20 {
                keep.extend_from_slice(&buf[..n]);
            }
        }
        let (sha256, size_bytes) = r.finish();
        if [MANIFEST_PATH, grub::CONFIG_INITRD].contains(&p) || p.ends_with("grub.cfg") {
            small.insert(p.to_string(), keep);
        }
        files.push(FileReport {
            path: p.to_string(),
            size_bytes,
            sha256,
        });
        Ok(())
    })?;
    bar.finish();

    let manifest: Option<StickManifest> = small
        .get(MANIFEST_PATH)
        .map(|b| serde_json::from_slice(b).context("mkstick/manifest.json is damaged"))
        .transpose()?;
    let kernel_args = small
        .iter()
        .filter(|(p, _)| p.ends_with("grub.cfg"))
        .find_map(|(_, b)| {
            let text = String::from_utf8_lossy(b);
            let line = text
                .lines()
                .find(|l| l.trim_start().starts_with("if linux "))?;
            let args = line
                .trim_start()
                .strip_prefix("if linux ")?
                .trim_end_matches("; then");
            Some(
                args.split_whitespace()
                    .skip(1)
                    .map(|a| a.trim_matches('\'').to_string())
                    .collect(),
            )
        })
        .unwrap_or_default();
    let config = small
        .get(grub::CONFIG_INITRD)
        .map(|b| read_config(b))
        .transpose()?;
    let summary = config.as_ref().map(|(json, c)| summarize(json, c));
    let server = config.as_ref().map(|(_, c)| server_summary(c));
    let verify = manifest.as_ref().map(|m| verify(&files, m));
    Ok(Report {
        image: path.display().to_string(),
        size_bytes,
        disk_guid: esp.disk_guid.to_string(),
        partition,
        mkstick_version: manifest.as_ref().map(|m| m.mkstick_version.clone()),
        os: manifest.as_ref().map(|m| m.os.clone()),
        seed: manifest.as_ref().map(|m| m.seed.clone()),
        kernel_args,
        verify,
        ignition: if with_config {
            config.map(|(_, c)| c)
        } else {
            None
        },
        config: summary,
        server,
        files,
    })
}

/// The Ignition config inside the config initrd: its bytes and its parse.
fn read_config(initrd_bytes: &[u8]) -> Result<(Vec<u8>, ignition::Config)> {
    let members = initrd::read(initrd_bytes).context("reading mkstick/ignition.img")?;
    let member = members
        .into_iter()
        .find(|m| m.mode & 0o170000 == 0o100000)
        .context("mkstick/ignition.img holds no file")?;
    let config = serde_json::from_slice(&member.data)
        .context("the embedded Ignition config is not valid JSON")?;
    Ok((member.data, config))
}

fn summarize(json: &[u8], c: &ignition::Config) -> ConfigSummary {
    ConfigSummary {
        sha256: Sha256Digest::of(json),
        spec: c.ignition.version.clone(),
        users: c
            .passwd
            .users
            .iter()
            .map(|u| UserSummary {
                name: u.name.clone(),
                ssh_keys: u
                    .ssh_authorized_keys
                    .iter()
                    .map(|k| match k.parse::<crate::config::types::SshPublicKey>() {
                        Ok(k) => format!("{} {} {}", k.kind(), k.fingerprint(), k.comment())
                            .trim_end()
                            .to_string(),
                        Err(_) => "(unreadable key)".to_string(),
                    })
                    .collect(),
                password: match &u.password_hash {
                    Some(_) => "set (hash redacted)".to_string(),
                    None => "none".to_string(),
                },
            })
            .collect(),
        files: c
            .storage
            .files
            .iter()
            .map(|f| format!("{} ({:o})", f.path, f.mode.unwrap_or(0o644)))
            .collect(),
        links: c
            .storage
            .links
            .iter()
            .map(|l| format!("{} -> {}", l.path, l.target))
            .collect(),
        units: c
            .systemd
            .units
            .iter()
            .map(|u| {
                format!(
                    "{}{}",
                    u.name,
                    if u.enabled == Some(true) {
                        " (enabled)"
                    } else {
                        ""
                    }
                )
            })
            .collect(),
        merged_configs: c.ignition.config.merge.len(),
    }
}

/// Compare the files found with `mkstick/manifest.json`.
fn verify(files: &[FileReport], m: &StickManifest) -> VerifyReport {
    let mut problems = Vec::new();
    let mut bad_files = Vec::new();
    let mut checked = 0;
    for f in files.iter().filter(|f| f.path != MANIFEST_PATH) {
        match m.files.get(&f.path) {
            None => {
                problems.push(format!("{}: on the stick but not in the manifest", f.path));
                bad_files.push(f.path.clone());
            }
            Some(want) if want.sha256 != f.sha256 || want.size_bytes != f.size_bytes => {
                problems.push(format!(
                    "{}: sha256 {} ({} bytes), the manifest says {} ({} bytes)",
                    f.path, f.sha256, f.size_bytes, want.sha256, want.size_bytes
                ));
                bad_files.push(f.path.clone());
            }
            Some(_) => checked += 1,
        }
    }
    for path in m.files.keys() {
        if !files.iter().any(|f| &f.path == path) {
            problems.push(format!(
                "{path}: in the manifest but missing from the stick"
            ));
            bad_files.push(path.clone());
        }
    }
    VerifyReport {
        ok: problems.is_empty(),
        checked,
        problems,
        bad_files,
    }
}

pub fn run(a: &InspectArgs, progress: &Progress, out: &mut impl Write) -> Result<ExitCode> {
    let report = read(&a.image, a.show_config, progress)?;
    if a.json {
        let mut json = serde_json::to_vec_pretty(&report)?;
        json.push(b'\n');
        out.write_all(&json)?;
    } else {
        print_text(&report, out)?;
        if let Some(c) = &report.ignition {
            writeln!(out, "\nIgnition config (it holds secrets):")?;
            out.write_all(&ignition::to_json(c))?;
        }
    }
    // Every file is hashed on the way anyway: always compare. `--verify`
    // adds only that an image without a manifest is an error.
    match &report.verify {
        None if a.verify => bail!(
            "{} has no mkstick/manifest.json to verify against",
            a.image.display()
        ),
        None => {
            if !a.json {
                writeln!(
                    out,
                    "not verified: the image has no mkstick/manifest.json to compare with"
                )?;
            }
        }
        Some(v) if !v.ok => bail!(
            "{} failed verification: {}; rebuild the stick",
            a.image.display(),
            v.problems.join("; ")
        ),
        Some(v) => {
            if !a.json {
                writeln!(
                    out,
                    "verified: all {} files match mkstick/manifest.json",
                    v.checked
                )?;
            }
        }
    }
    Ok(ExitCode::SUCCESS)
}

fn print_text(r: &Report, out: &mut impl Write) -> Result<()> {
    let size = crate::io::human_bytes;
    writeln!(
        out,
        "{}: {}, GPT disk {}",
        r.image,
        size(r.size_bytes),
        r.disk_guid
    )?;
    let p = &r.partition;
    writeln!(
        out,
        "partition {} ({}): FAT32 volume {}, {} from LBA {}, {}-byte clusters",
        p.name,
        p.guid,
        p.fat_volume_id,
        size(p.size_bytes),
        p.first_lba,
        p.cluster_bytes
    )?;
    if let (Some(os), Some(v)) = (&r.os, &r.mkstick_version) {
        writeln!(
            out,
            "OS: {} {} ({}), made by mkstick {v}",
            os.name, os.version, os.id
        )?;
    }
    if !r.kernel_args.is_empty() {
        writeln!(out, "kernel command line: {}", r.kernel_args.join(" "))?;
    }
    if let Some(server) = &r.server {
        writeln!(out, "{server}")?;
    }
    let bad = |p: &str| {
        r.verify
            .as_ref()
            .is_some_and(|v| v.bad_files.iter().any(|b| b == p))
    };
    writeln!(out, "files:")?;
    for f in &r.files {
        writeln!(
            out,
            "  {:<28} {:>10}  {}{}",
            f.path,
            size(f.size_bytes),
            f.sha256,
            if bad(&f.path) {
                "  DOES NOT MATCH the manifest"
            } else {
                ""
            }
        )?;
    }
    if let Some(c) = &r.config {
        writeln!(
            out,
            "Ignition config {} (spec {}, sha256 {}):",
            grub::CONFIG_INITRD,
            c.spec,
            c.sha256.short()
        )?;
        for u in &c.users {
            writeln!(
                out,
                "  user {}: password {}, {} SSH key(s)",
                u.name,
                u.password,
                u.ssh_keys.len()
            )?;
            for k in &u.ssh_keys {
                writeln!(out, "    {k}")?;
            }
        }
        for f in &c.files {
            writeln!(out, "  file {f}")?;
        }
        for l in &c.links {
            writeln!(out, "  link {l}")?;
        }
        for u in &c.units {
            writeln!(out, "  unit {u}")?;
        }
        if c.merged_configs > 0 {
            writeln!(out, "  merges {} extra config(s)", c.merged_configs)?;
        }
    }
    Ok(())
}
