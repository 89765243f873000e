//! mkstick: one mkstick.toml -> a USB stick image that boots a server live.
//!
//! ```text
//! StickConfig -plan-> Plan -render-> Payload -assemble-> Image
//!  config/            plan/  ignition/, payload.rs  image/
//! ```

pub mod boot;
pub mod cli;
pub mod config;
pub mod device;
pub mod ignition;
pub mod image;
pub mod inspect;
pub mod io;
pub mod k8s;
pub mod os;
pub mod overlays;
pub mod payload;
pub mod plan;
pub mod progress;

use anyhow::{Context, Result};
use cli::{BuildArgs, Cli, Command, ConfigArgs, InitArgs};
use plan::{PlanArgs, SeedChoice};
use progress::Progress;
use serde::Serialize;
use std::collections::BTreeMap;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

/// Run one command. Output goes to stdout; progress and notes to stderr.
pub fn run(cli: Cli, progress: &Progress) -> Result<ExitCode> {
    let out = || std::io::stdout().lock();
    match cli.command {
        Command::Init(a) => init(&a, &mut out()),
        Command::Check(a) => check(&a, progress, &mut out()),
        Command::Plan(a) => {
            let (plan, payload, _lock) = plan_and_render(&a.config, SeedChoice::Derived, progress)?;
            if a.json {
                let mut out = out();
                serde_json::to_writer_pretty(&mut out, &plan::describe_json(&plan, &payload))?;
                writeln!(out)?;
            } else {
                write!(out(), "{}", plan::describe(&plan, &payload))?;
            }
            Ok(ExitCode::SUCCESS)
        }
        Command::Build(a) => build(&a, progress, &mut out()),
        Command::Fetch(a) => fetch(&a, progress, &mut out()),
        Command::Cache(c) => cache(&c, progress, &mut out()),
        Command::Inspect(a) => inspect::run(&a, progress, &mut out()),
        // `boot` copies the guest's console to stdout from a thread of its
        // own, so this thread must not hold the stdout lock meanwhile.
        Command::Boot(a) => boot::run(&a, progress),
        Command::Devices(a) => device::devices(&a, &mut out()),
        Command::Flash(a) => device::flash(&a, progress, &mut out()),
        Command::Completions(a) => completions(a.shell, &mut out()),
        Command::Man(a) => man(&a, &mut out()),
    }
}

/// A completion script for `shell`, generated from the clap definitions.
fn completions(shell: clap_complete::Shell, out: &mut impl Write) -> Result<ExitCode> {
    let mut cmd = <Cli as clap::CommandFactory>::command();
    clap_complete::generate(shell, &mut cmd, "mkstick", out);
    Ok(ExitCode::SUCCESS)
}

/// The manual page, roff, generated from the clap definitions: mkstick(1)
/// on stdout, or with `--dir` that page and one per command, as files.
fn man(a: &cli::ManArgs, out: &mut impl Write) -> Result<ExitCode> {
    let cmd = <Cli as clap::CommandFactory>::command();
    match &a.dir {
        None => clap_mangen::Man::new(cmd)
            .render(out)
            .context("writing the manual page")?,
        Some(dir) => clap_mangen::generate_to(cmd, dir)
            .with_context(|| format!("writing manual pages into {}", dir.display()))?,
    }
    Ok(ExitCode::SUCCESS)
}

/// `SOURCE_DATE_EPOCH`, the reproducible-builds convention for "now".
fn source_date_epoch() -> Result<Option<i64>> {
    match std::env::var("SOURCE_DATE_EPOCH") {
        Ok(v) if !v.is_empty() => Ok(Some(v.trim().parse().with_context(|| {
            format!("SOURCE_DATE_EPOCH={v:?} is not a number of seconds; unset it or fix it")
        })?)),
        _ => Ok(None),
    }
}

fn fetch_options(a: &cli::FetchArgs, reverify: bool) -> os::fetch::FetchOptions {
    os::fetch::FetchOptions {
        reverify,
        cache_dir: a.cache_dir.clone(),
        signatures: if a.insecure_skip_signature {
            os::download::SignaturePolicy::InsecureSkip
        } else {
            os::download::SignaturePolicy::Require
        },
    }
}

/// The OS directory the config names: local, or fetched into the cache.
/// `reverify` (the `fetch` command) hashes cached files again.
/// The Kubernetes binaries come along when `k8s` names them.
fn acquire_os(
    loaded: &config::LoadedConfig,
    k8s: Option<&plan::kubernetes::KubernetesPlan>,
    a: &ConfigArgs,
    reverify: bool,
    progress: &Progress,
) -> Result<os::fetch::Acquired> {
    let source = os::source::OsSource::from_config(loaded, a.os_dir.as_ref())?;
    let keys = os::fetch::Keys::embedded()?;
    os::fetch::acquire(
        &source,
        k8s.map(|k| &k.table),
        &fetch_options(&a.fetch, reverify),
        &keys,
        progress,
    )
}

fn fetch(a: &ConfigArgs, progress: &Progress, out: &mut impl Write) -> Result<ExitCode> {
    let loaded = config::load(&a.config)?;
    // Checked before anything is downloaded.
    let checked = plan::check_config(&loaded)?;
    let got = acquire_os(&loaded, checked.kubernetes.as_ref(), a, true, progress)?;
    let dir = got.dir;
    let os = os::OsDir::load(&dir)?;
    if let Some(s) = got.summary {
        writeln!(out, "{s}")?;
    }
    writeln!(
        out,
        "{} {} is ready in {}",
        os.manifest.name,
        os.manifest.version,
        dir.display()
    )?;
    Ok(ExitCode::SUCCESS)
}

fn cache(c: &cli::CacheCommand, progress: &Progress, out: &mut impl Write) -> Result<ExitCode> {
    match c {
        cli::CacheCommand::Ls(a) => {
            let cache = os::cache::Cache::open(a.cache_dir.as_deref())?;
            write!(out, "{}", os::cache::describe(&cache)?)?;
        }
        cli::CacheCommand::Prune(a) => {
            let cache = os::cache::Cache::open(a.cache.cache_dir.as_deref())?;
            let _lock = cache.lock(progress)?;
            writeln!(out, "{}", cache.prune(a.keep)?)?;
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// The plan and payload, and the cache lock that keeps a downloaded OS in
/// place while they are used.
fn plan_and_render(
    a: &ConfigArgs,
    seed: SeedChoice,
    progress: &Progress,
) -> Result<(plan::Plan, payload::Payload, Option<os::cache::CacheLock>)> {
    let loaded = config::load(&a.config)?;
    // Checked before anything is downloaded.
    let mut checked = plan::check_config(&loaded)?;
    let got = acquire_os(&loaded, checked.kubernetes.as_ref(), a, false, progress)?;
    if let Some(k) = &mut checked.kubernetes {
        k.binaries = got.kubernetes;
    }
    if let Some(s) = got.summary {
        progress.note(&s.to_string());
    }
    let plan = plan::plan(
        &loaded,
        checked,
        &PlanArgs {
            os_dir: got.dir,
            seed,
            source_date_epoch: source_date_epoch()?,
        },
    )?;
    let payload = payload::render(&plan)?;
    Ok((plan, payload, got.lock))
}

fn init(a: &InitArgs, out: &mut impl Write) -> Result<ExitCode> {
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

/// Write a file with mode 0600 through a temp file in the same directory.
fn write_private(path: &Path, bytes: &[u8], force: bool) -> Result<()> {
    let dir = match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p,
        _ => Path::new("."),
    };
    let tmp = io::cleanup::PrivateTemp::new_in(dir)?;
    let mut file = tmp.file();
    file.write_all(bytes)
        .with_context(|| format!("writing {}", path.display()))?;
    file.sync_all()
        .with_context(|| format!("syncing {}", path.display()))?;
    tmp.persist(path, force)
}

fn check(a: &ConfigArgs, progress: &Progress, out: &mut impl Write) -> Result<ExitCode> {
    let (plan, payload, _lock) = plan_and_render(a, SeedChoice::Derived, progress)?;
    let total = plan.kernel.size_bytes
        + plan.initramfs.size_bytes
        + plan.rootfs.as_ref().map_or(0, |r| r.size_bytes);
    let bar = progress.bar("checking OS", total);
    plan.os.verify(|n| bar.inc(n))?;
    bar.finish();
    writeln!(
        out,
        "{} is valid: {} on {} {}, {} files on the stick; the OS files match os.json",
        a.config.display(),
        plan.node.hostname,
        plan.os.manifest.name,
        plan.os.manifest.version,
        payload.files.len()
    )?;
    Ok(ExitCode::SUCCESS)
}

/// `<image>.manifest.json`: how an image was made, to reproduce or audit it.
/// It records every input's sha256; the image's own hash would cost a second
/// full read of the image (`sha256sum` gives it when wanted).
#[derive(Serialize)]
#[serde(rename_all = "kebab-case")]
struct BuildRecord {
    mkstick_version: &'static str,
    seed: String,
    source_date_epoch: Option<i64>,
    inputs: BTreeMap<String, String>,
    image: ImageRecord,
}

#[derive(Serialize)]
#[serde(rename_all = "kebab-case")]
struct ImageRecord {
    size_bytes: u64,
    files: usize,
    ignition_sha256: String,
}

fn build(a: &BuildArgs, progress: &Progress, out: &mut impl Write) -> Result<ExitCode> {
    let seed = match (&a.seed, a.random_guids) {
        (Some(s), _) => SeedChoice::Given(s.clone()),
        (None, true) => SeedChoice::Random,
        (None, false) => SeedChoice::Derived,
    };
    let record_path = PathBuf::from(format!("{}.manifest.json", a.output.display()));
    image::check_output(&a.output, a.force)?;
    image::check_output(&record_path, a.force)?;
    let (plan, payload, _lock) = plan_and_render(&a.config, seed, progress)?;
    let img = image::assemble(&plan, &payload, &a.output, a.force, progress)?;

    let mut inputs = BTreeMap::new();
    inputs.insert(
        format!("config:{}", plan.config_path.display()),
        plan.config_sha256.to_string(),
    );
    for (name, f) in [
        ("kernel", Some(&plan.kernel)),
        ("initramfs", Some(&plan.initramfs)),
        ("rootfs", plan.rootfs.as_ref()),
    ] {
        if let Some(f) = f {
            inputs.insert(format!("os:{name}"), f.sha256.to_string());
        }
    }
    for x in &plan.extra_ignition {
        inputs.insert(format!("extra-ignition:{}", x.name), x.sha256.to_string());
    }
    let record = BuildRecord {
        mkstick_version: plan::MKSTICK_VERSION,
        seed: plan.ids.seed_hex(),
        source_date_epoch: plan.source_date_epoch,
        inputs,
        image: ImageRecord {
            size_bytes: img.size_bytes,
            files: img.files,
            ignition_sha256: payload.ignition_sha256().to_string(),
        },
    };
    let mut json = serde_json::to_vec_pretty(&record)?;
    json.push(b'\n');
    write_private(&record_path, &json, a.force)?;

    writeln!(
        out,
        "built {}: {}, {} files",
        img.path.display(),
        io::human_bytes(img.size_bytes),
        img.files
    )?;
    if let Some(dev) = &a.flash {
        let flash = cli::FlashArgs {
            image: img.path.clone(),
            device: dev.clone(),
            safety: a.safety.clone(),
        };
        return device::flash(&flash, progress, out);
    }
    let img_path = img.path.display();
    writeln!(out, "try it:   mkstick boot {img_path}")?;
    writeln!(
        out,
        "write it: mkstick devices   (which sticks are plugged in)"
    )?;
    writeln!(
        out,
        "          sudo mkstick flash {img_path} /dev/sdX   (checks, asks, writes, verifies)"
    )?;
    writeln!(
        out,
        "          without mkstick's checks, as a last resort: sudo dd if={img_path} of=/dev/sdX bs=4M conv=fsync"
    )?;
    Ok(ExitCode::SUCCESS)
}
