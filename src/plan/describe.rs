//! `mkstick plan`: what the stick will do, in plain words. Secrets appear
//! only as hashes.

use super::{OverlayFile, Plan};
use crate::image;
use crate::payload::Payload;
use std::fmt::Write as _;

use crate::io::human_bytes as size;

fn plural(n: usize, one: &str, many: &str) -> String {
    format!("{n} {}", if n == 1 { one } else { many })
}

pub fn describe(plan: &Plan, payload: &Payload) -> String {
    let mut s = String::new();
    let m = &plan.os.manifest;
    let node = &plan.node;
    // Writing into a String cannot fail; the results are ignored.
    let _ = writeln!(s, "mkstick plan for {}", plan.config_path.display());
    let _ = writeln!(s);
    let _ = writeln!(s, "Operating system");
    let _ = writeln!(
        s,
        "  {} {} ({}), from {}",
        m.name,
        m.version,
        m.id,
        plan.os.dir.display()
    );
    let _ = writeln!(
        s,
        "  It runs live from RAM: /etc and /var start empty at every boot, and"
    );
    let _ = writeln!(s, "  Ignition applies the settings below again each time.");
    let _ = writeln!(s);
    let _ = writeln!(s, "At every boot the stick will");
    let _ = writeln!(s, "  - name the server {}", node.hostname);
    let _ = writeln!(s, "  - set the time zone to {}", node.timezone);
    if node.ssh_authorized_keys.is_empty() {
        let _ = writeln!(s, "  - let user core log in with no SSH key");
    } else {
        let _ = writeln!(
            s,
            "  - let user core log in over SSH with {}:",
            plural(node.ssh_authorized_keys.len(), "key", "keys")
        );
        for k in node.ssh_authorized_keys.iter() {
            let _ = writeln!(s, "      {} {} {}", k.kind(), k.fingerprint(), k.comment());
        }
    }
    match &node.password_hash {
        Some(h) => {
            let _ = writeln!(
                s,
                "  - let core log in on the console with a password (hash {})",
                h.fingerprint()
            );
        }
        None => {
            let _ = writeln!(s, "  - set no password: core logs in with an SSH key only");
        }
    }
    let files: Vec<String> = payload
        .ignition
        .storage
        .files
        .iter()
        .map(|f| format!("{} ({:o})", f.path, f.mode.unwrap_or(0o644)))
        .collect();
    let _ = writeln!(s, "  - write {}:", plural(files.len(), "file", "files"));
    for f in files {
        let _ = writeln!(s, "      {f}");
    }
    let units: Vec<&OverlayFile> = plan
        .overlay
        .iter()
        .filter(|o| matches!(o, OverlayFile::Unit { .. }))
        .collect();
    if !units.is_empty() {
        let _ = writeln!(s, "  - install {}:", plural(units.len(), "unit", "units"));
        for u in &payload.ignition.systemd.units {
            let what = if u.enabled == Some(true) {
                "enabled"
            } else {
                "not enabled"
            };
            let _ = writeln!(s, "      {} ({what})", u.name);
        }
    }
    for x in &plan.extra_ignition {
        let _ = writeln!(
            s,
            "  - merge your Ignition config {} (sha256 {})",
            x.name,
            x.sha256.short()
        );
    }
    let _ = writeln!(s);
    let _ = writeln!(s, "Boot");
    let args: Vec<String> = plan.kernel_args.iter().map(|a| a.to_string()).collect();
    let _ = writeln!(s, "  kernel command line: {}", args.join(" "));
    let _ = writeln!(
        s,
        "  console: {}",
        if plan.serial_console {
            "screen and serial port ttyS0 (115200 baud)"
        } else {
            "screen only"
        }
    );
    let _ = writeln!(s);
    let sizes: Vec<u64> = payload.files.iter().map(|f| f.size_bytes).collect();
    let layout = image::fat::layout(&sizes, payload.dirs().len());
    let _ = writeln!(s, "Image");
    let _ = writeln!(
        s,
        "  {} in all: a GPT with one FAT32 EFI partition labelled MKSTICK ({})",
        size(image::image_size_bytes(layout)),
        size(layout.size_bytes)
    );
    let _ = writeln!(
        s,
        "  {} files, {} of data:",
        payload.files.len(),
        size(payload.total_bytes())
    );
    for f in &payload.files {
        let _ = writeln!(
            s,
            "    {:<28} {:>10}  sha256 {}",
            f.path,
            size(f.size_bytes),
            f.sha256.short()
        );
    }
    let _ = writeln!(
        s,
        "  Ignition config: sha256 {}. It holds the login keys, so keep the stick safe.",
        payload.ignition_sha256().short()
    );
    let _ = writeln!(
        s,
        "  Seed {}: disk {}, partition {}, volume {}",
        &plan.ids.seed_hex()[..16],
        plan.ids.disk_guid,
        plan.ids.esp_guid,
        image::grub::fat_uuid(plan.ids.volume_id)
    );
    s
}
