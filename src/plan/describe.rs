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

fn describe_storage(s: &mut String, plan: &Plan) {
    let Some(st) = &plan.storage else {
        let _ = writeln!(s, "Data drives: none ([storage] is not set)");
        let _ = writeln!(
            s,
            "  Nothing survives a reboot: cluster state and data live in RAM only."
        );
        return;
    };
    let profile = if st.profile_defaulted {
        format!(
            "{} (the default for {})",
            st.profile,
            plural(st.drives.len(), "drive", "drives")
        )
    } else {
        st.profile.to_string()
    };
    let _ = writeln!(
        s,
        "Data drives: a btrfs pool labelled \"{}\", {profile}, mounted at {}",
        st.label, st.mount
    );
    let copies = match st.tolerates() {
        0 => "one copy of everything: losing any drive loses the pool".to_string(),
        n => format!(
            "{} copies of everything: the pool survives losing {}",
            n + 1,
            plural(n, "drive", "drives")
        ),
    };
    let _ = writeln!(s, "  {copies}.");
    let _ = writeln!(s, "  Drives:");
    for d in &st.drives {
        let _ = writeln!(s, "    {d}");
    }
    let _ = writeln!(
        s,
        "  At every boot, mkstick looks at each drive before it writes anything. A drive"
    );
    let _ = writeln!(
        s,
        "    - that is blank, when no pool \"{}\" exists yet: becomes part of the new pool",
        st.label
    );
    let _ = writeln!(
        s,
        "    - that is blank, when the pool exists: is added, and the pool is balanced to {}",
        st.profile
    );
    let _ = writeln!(s, "    - already in the pool: is used as it is");
    let _ = writeln!(
        s,
        "    - holding anything else (a filesystem, a partition table): is never touched;"
    );
    let _ = writeln!(s, "      the console says what is on it and how to free it");
    let _ = writeln!(
        s,
        "    - that is missing: the server boots on and says so; the pool is never mounted degraded"
    );
    let _ = writeln!(
        s,
        "  A new pool is made with: {} (only when every drive is blank)",
        st.mkfs_command()
    );
    let _ = writeln!(
        s,
        "  Mount options: {} (waits {}s for the drives)",
        st.mount_options(),
        st.device_timeout_secs
    );
    let _ = writeln!(
        s,
        "  Kept on the pool, under {}/state, so they survive reboots and reflashing:",
        st.mount
    );
    for p in &st.persist {
        let _ = writeln!(s, "    {p}");
    }
    let server = match st.nfs.server {
        crate::os::NfsServer::Kernel => "the OS's own NFS server".to_string(),
        crate::os::NfsServer::Container => format!(
            "an NFS server container ({}), since the OS ships none",
            super::storage::NFS_CONTAINER_IMAGE
        ),
    };
    let clients: Vec<String> = st.nfs.clients.iter().map(|c| c.to_string()).collect();
    let _ = writeln!(
        s,
        "  NFS: {} is served by {server} to {} (mount it as <server>:{})",
        st.nfs.dir,
        clients.join(", "),
        st.nfs.share()
    );
    let _ = writeln!(
        s,
        "  The pool's state shows on the console and at the login prompt."
    );
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
    describe_storage(&mut s, plan);
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
