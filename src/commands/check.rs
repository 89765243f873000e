//! `mkstick check`: the config and the OS files, without building, and
//! that the stick is air-gap complete: every image an applied manifest
//! names is on it.

use super::plan_and_render;
use crate::cli::CheckArgs;
use crate::plan::Plan;
use crate::plan::SeedChoice;
use crate::progress::Progress;
use anyhow::Result;
use std::io::Write;
use std::process::ExitCode;

pub fn check(args: &CheckArgs, progress: &Progress, out: &mut impl Write) -> Result<ExitCode> {
    let a = &args.config;
    let (plan, payload, _lock) = plan_and_render(a, SeedChoice::Derived, progress)?;
    let missing = missing_images(&plan)?;
    let (errors, warnings): (Vec<_>, Vec<_>) =
        missing.into_iter().partition(|m| m.ours || args.strict);
    for w in &warnings {
        progress.note(&format!("warning: {}", w.message));
    }
    if let Some(w) = address_warning(&plan, &a.config) {
        progress.note(&format!("warning: {w}"));
    }
    if !errors.is_empty() {
        let list: Vec<String> = errors.iter().map(|e| e.message.clone()).collect();
        anyhow::bail!(
            "the stick is not air-gap complete: the server would need a registry at boot:\n  {}",
            list.join("\n  ")
        );
    }
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

/// A cluster bound to whatever address DHCP gives at its first boot dies
/// (mkstick refuses to start it) when a later lease differs: kubeadm writes
/// the address into etcd's and the API server's flags, the certificates and
/// the kubeconfigs (kubernetes `cmd/kubeadm/app/phases/etcd/local.go`,
/// `controlplane/manifests.go`, `util/pkiutil/pki_helpers.go`).
fn address_warning(plan: &Plan, config: &std::path::Path) -> Option<String> {
    let k = plan.kubernetes.as_ref()?;
    if k.advertise_address.is_some() || plan.network.static_address.is_some() {
        return None;
    }
    let text = std::fs::read_to_string(config).unwrap_or_default();
    let at = text.find("[kubernetes]").unwrap_or(0);
    Some(
        crate::config::SourceError::at(
            config,
            &text,
            at,
            "[kubernetes] is set, but the server gets its address by DHCP and no advertise-address is given. The cluster is bound to the address of its first boot; if the router later gives the server another one, Kubernetes is not started. Reserve the address for this server on your router and set it as a static address in [network] (address = \"192.168.1.10/24\", mac = \"…\"), or at least as [kubernetes] advertise-address".into(),
        )
        .to_string(),
    )
}

/// An image an applied manifest names that the stick does not carry.
struct Missing {
    /// In mkstick's own manifests (always an error), or the user's.
    ours: bool,
    message: String,
}

/// Every image that an applied manifest names and the stick lacks, at the
/// manifest's file and line.
fn missing_images(plan: &Plan) -> Result<Vec<Missing>> {
    let Some(k) = &plan.kubernetes else {
        return Ok(Vec::new());
    };
    let carried = |image: &str| {
        let Ok(r) = image.parse::<crate::os::registry::Reference>() else {
            return false;
        };
        plan.images.iter().any(|p| p.reference.answers(&r))
    };
    let how = if plan.images.is_empty() {
        "the binaries table lists no `images`, so the stick carries none; list them (README: \"Other Kubernetes versions\") or use mkstick's own table"
    } else {
        "it is not in the stick's image list; name it in the binaries table's `images`"
    };
    let mut out = Vec::new();
    let storage = plan
        .storage
        .as_ref()
        .expect("check_config refuses [kubernetes] without [storage]");
    let user: std::collections::BTreeMap<&str, &str> = k
        .extra_manifests
        .iter()
        .map(|m| (m.node_path.as_str(), m.name.as_str()))
        .collect();
    for (node_path, text) in k.manifests(storage.nfs.share())? {
        let (ours, file) = match user.get(node_path.as_str()) {
            Some(name) => (false, name.to_string()),
            None => (true, format!("mkstick's {node_path}")),
        };
        if !node_path.ends_with(".yaml") || node_path.starts_with("/etc/mkstick/examples/") {
            continue;
        }
        let containers =
            crate::plan::kubernetes::manifest_containers(std::path::Path::new(&file), &text)?;
        for (at, image, policy) in containers {
            let line = text[..at].matches('\n').count() + 1;
            if !carried(&image) {
                out.push(Missing {
                    ours,
                    message: format!("{file}:{line}: {image}: {how}"),
                });
            } else if policy.as_deref() == Some("Always") {
                out.push(Missing {
                    ours,
                    message: format!("{file}:{line}: {image}: imagePullPolicy: Always pulls it at every start, although the stick carries it; use IfNotPresent"),
                });
            }
        }
    }
    Ok(out)
}
