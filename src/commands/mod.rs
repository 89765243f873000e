//! The command layer: one module per subcommand, each turning its clap
//! arguments into calls to the library's plain functions and writing what
//! the user sees. What several commands share is here: the pipeline up to
//! the payload ([`plan_and_render`]), acquiring the OS, and private files.

pub mod build;
pub mod check;
pub mod fetch;
pub mod flash;
pub mod init;
pub mod plan;
pub mod shell;

use crate::cli::{self, ConfigArgs};
use crate::plan::{PlanArgs, SeedChoice};
use crate::progress::Progress;
use crate::{config, io, os, payload};
use anyhow::{Context, Result};
use std::io::Write;
use std::path::Path;

/// `SOURCE_DATE_EPOCH`, the reproducible-builds convention for "now".
pub fn source_date_epoch() -> Result<Option<i64>> {
    match std::env::var("SOURCE_DATE_EPOCH") {
        Ok(v) if !v.is_empty() => Ok(Some(v.trim().parse().with_context(|| {
            format!("SOURCE_DATE_EPOCH={v:?} is not a number of seconds; unset it or fix it")
        })?)),
        _ => Ok(None),
    }
}

pub fn fetch_options(a: &cli::FetchArgs, reverify: bool) -> os::fetch::FetchOptions {
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
/// The Kubernetes binaries come along when `[kubernetes]` names them, and
/// the images the stick carries ([`crate::plan::wanted_images`]).
pub fn acquire_os(
    loaded: &config::LoadedConfig,
    checked: &crate::plan::ConfigChecked,
    a: &ConfigArgs,
    reverify: bool,
    progress: &Progress,
) -> Result<os::fetch::Acquired> {
    let source = os::source::OsSource::from_config(loaded, a.os_dir.as_ref())?;
    let k8s = checked.kubernetes.as_ref();
    // Known, and any mistake reported, before anything is downloaded.
    let nfs_server = match &checked.storage {
        Some(_) => os::fetch::nfs_server(&source)?,
        None => os::NfsServer::Kernel,
    };
    let images = crate::plan::wanted_images(checked.storage.as_ref(), k8s, nfs_server)?;
    let keys = os::fetch::Keys::embedded()?;
    os::fetch::acquire(
        &source,
        k8s.map(|k| &k.table),
        &images,
        &fetch_options(&a.fetch, reverify),
        &keys,
        progress,
    )
}

/// The plan and payload, and the cache lock that keeps a downloaded OS in
/// place while they are used.
pub fn plan_and_render(
    a: &ConfigArgs,
    seed: SeedChoice,
    progress: &Progress,
) -> Result<(
    crate::plan::Plan,
    payload::Payload,
    Option<os::cache::CacheLock>,
)> {
    let loaded = config::load(&a.config)?;
    // Checked before anything is downloaded.
    let checked = crate::plan::check_config(&loaded)?;
    let got = acquire_os(&loaded, &checked, a, false, progress)?;
    if let Some(s) = got.summary {
        progress.note(&s.to_string());
    }
    let plan = crate::plan::plan(
        &loaded,
        checked,
        &PlanArgs {
            os_dir: got.dir,
            kubernetes_binaries: got.kubernetes,
            images: got.images,
            seed,
            source_date_epoch: source_date_epoch()?,
        },
    )?;
    let payload = payload::render(&plan)?;
    Ok((plan, payload, got.lock))
}

/// Write a file with mode 0600 through a temp file in the same directory.
pub fn write_private(path: &Path, bytes: &[u8], force: bool) -> Result<()> {
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
