//! `mkstick build`: the image and its build record, then `--flash` or the
//! next steps.

use super::{plan_and_render, write_private};
use crate::cli::BuildArgs;
use crate::plan::SeedChoice;
use crate::progress::Progress;
use crate::{image, io, plan};
use anyhow::Result;
use serde::Serialize;
use std::collections::BTreeMap;
use std::io::Write;
use std::path::PathBuf;
use std::process::ExitCode;

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

pub fn build(a: &BuildArgs, progress: &Progress, out: &mut impl Write) -> Result<ExitCode> {
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
        return super::flash::flash_image(&img.path, dev, &a.safety, progress, out);
    }
    let img_path = img.path.display();
    writeln!(out, "try it:   {}", boot_hint(&plan, &img_path.to_string()))?;
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

/// The `mkstick boot` line for this stick. QEMU's data disks appear as
/// `/dev/disk/by-id/virtio-SERIAL` (`--data-disk SIZE,serial=SERIAL`): a
/// stick whose drives are named so gets one `--data-disk` per drive; one
/// with real drive names is told that its storage waits for drives QEMU
/// cannot name, and how to try the storage anyway.
fn boot_hint(plan: &crate::plan::Plan, img: &str) -> String {
    let Some(storage) = &plan.storage else {
        return format!("mkstick boot {img}");
    };
    let serials: Vec<&str> = storage
        .drives
        .iter()
        .filter_map(|d| d.id().strip_prefix("virtio-"))
        .collect();
    if serials.len() == storage.drives.len() {
        let disks: Vec<String> = serials
            .iter()
            .map(|s| format!("--data-disk 8G,serial={s}"))
            .collect();
        return format!("mkstick boot {img} {}", disks.join(" "));
    }
    format!(
        "mkstick boot {img}   (the stick's [storage] drives are real disks, such as {}, which QEMU cannot name, so the pool stays unmounted there; to try the storage, build a copy whose drives are /dev/disk/by-id/virtio-data0, -data1, … and boot it with --data-disk 8G,serial=data0 …)",
        storage.drives[0]
    )
}
