//! `mkstick boot`: boot an image in QEMU under UEFI (OVMF) to try a stick
//! before flashing it. QEMU writes to a snapshot, so the image never changes.
//! With --expect, the serial console is watched for a marker: the tests use
//! this to prove an image boots.

use crate::cli::{Accel, BootArgs, Network};
use crate::progress::Progress;
use anyhow::{bail, Context, Result};
use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitCode, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

const QEMU: &str = "qemu-system-x86_64";

/// OVMF builds that hold code and variables in one file (for `-bios`).
const OVMF_COMBINED: &[&str] = &[
    "/usr/share/ovmf/OVMF.fd",
    "/usr/share/OVMF/OVMF.fd",
    "/usr/share/qemu/OVMF.fd",
];

/// Split OVMF builds: code (read-only) and a variable store to copy.
const OVMF_SPLIT: &[(&str, &str)] = &[
    (
        "/usr/share/OVMF/OVMF_CODE_4M.fd",
        "/usr/share/OVMF/OVMF_VARS_4M.fd",
    ),
    (
        "/usr/share/OVMF/OVMF_CODE.fd",
        "/usr/share/OVMF/OVMF_VARS.fd",
    ),
    (
        "/usr/share/edk2/ovmf/OVMF_CODE.fd",
        "/usr/share/edk2/ovmf/OVMF_VARS.fd",
    ),
    (
        "/usr/share/edk2/x64/OVMF_CODE.fd",
        "/usr/share/edk2/x64/OVMF_VARS.fd",
    ),
];

/// Secure Boot builds: code with Secure Boot and SMM, and a variable store
/// with Microsoft's keys enrolled and Secure Boot on, as a PC ships. Debian
/// and Ubuntu's `ovmf` (/usr/share/doc/ovmf/README.Debian: the .ms.fd vars
/// have "the default Microsoft keys in KEK/DB" and "Secure Boot already
/// activated"; the secboot code "will abort if QEMU does not support SMM"),
/// Fedora's `edk2-ovmf`.
const OVMF_SECURE_BOOT: &[(&str, &str)] = &[
    (
        "/usr/share/OVMF/OVMF_CODE_4M.secboot.fd",
        "/usr/share/OVMF/OVMF_VARS_4M.ms.fd",
    ),
    (
        "/usr/share/edk2/ovmf/OVMF_CODE.secboot.fd",
        "/usr/share/edk2/ovmf/OVMF_VARS.secboot.fd",
    ),
];

/// One `--data-disk` argument, parsed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DataDisk {
    pub source: DiskSource,
    pub serial: String,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DiskSource {
    /// A blank temporary disk of this many bytes.
    Blank(u64),
    /// An image file, used in place and kept.
    File(PathBuf),
}

/// Parse `8G`, `512M`, `1024K` or a plain byte count (binary units).
pub fn parse_size(s: &str) -> Option<u64> {
    let s = s.trim();
    let (num, mult) = match s.char_indices().last()? {
        (i, 'K' | 'k') => (&s[..i], 1u64 << 10),
        (i, 'M' | 'm') => (&s[..i], 1 << 20),
        (i, 'G' | 'g') => (&s[..i], 1 << 30),
        (i, 'T' | 't') => (&s[..i], 1 << 40),
        _ => (s, 1),
    };
    if num.is_empty() || !num.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    num.parse::<u64>()
        .ok()?
        .checked_mul(mult)
        .filter(|&n| n > 0)
}

pub fn parse_data_disk(spec: &str, index: usize) -> Result<DataDisk> {
    let (what, opts) = match spec.split_once(",serial=") {
        Some((w, s)) => (w, Some(s)),
        None => (spec, None),
    };
    let serial = opts.map_or_else(|| format!("data{index}"), str::to_string);
    if serial.is_empty()
        || serial.len() > 20
        || !serial
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
    {
        bail!("--data-disk {spec}: the serial must be 1 to 20 letters, digits, `-` or `_` (virtio's limit)");
    }
    let path = Path::new(what);
    let source = if path.exists() {
        DiskSource::File(path.to_path_buf())
    } else if let Some(bytes) = parse_size(what) {
        DiskSource::Blank(bytes)
    } else {
        bail!("--data-disk {spec}: no file {what} exists and it is not a size; give a size like 8G for a blank disk, or an image file");
    };
    Ok(DataDisk { source, serial })
}

/// The firmware arguments for QEMU, and a temp dir holding a VARS copy.
fn firmware_args(given: Option<&Path>, secure_boot: bool, tmp: &Path) -> Result<Vec<String>> {
    if let Some(fw) = given {
        if !fw.is_file() {
            bail!("--firmware {}: no such file", fw.display());
        }
        return Ok(vec!["-bios".into(), fw.display().to_string()]);
    }
    let split = |code: &str, vars: &str| -> Result<Vec<String>> {
        let copy = tmp.join("OVMF_VARS.fd");
        std::fs::copy(vars, &copy).with_context(|| format!("copying {vars}"))?;
        Ok(vec![
            "-drive".into(),
            format!("if=pflash,format=raw,readonly=on,file={code}"),
            "-drive".into(),
            format!("if=pflash,format=raw,file={}", copy.display()),
        ])
    };
    let present =
        |(code, vars): &&(&str, &str)| Path::new(code).is_file() && Path::new(vars).is_file();
    if secure_boot {
        return match OVMF_SECURE_BOOT.iter().find(present) {
            Some((code, vars)) => split(code, vars),
            None => bail!("no UEFI firmware with Secure Boot found; install OVMF (Debian/Ubuntu: apt-get install ovmf, which has OVMF_CODE_4M.secboot.fd and OVMF_VARS_4M.ms.fd; Fedora: dnf install edk2-ovmf)"),
        };
    }
    if let Some(fw) = OVMF_COMBINED.iter().find(|p| Path::new(p).is_file()) {
        return Ok(vec!["-bios".into(), fw.to_string()]);
    }
    if let Some((code, vars)) = OVMF_SPLIT.iter().find(present) {
        return split(code, vars);
    }
    bail!("no UEFI firmware found; install OVMF (Debian/Ubuntu: apt-get install ovmf; Fedora: dnf install edk2-ovmf) or pass --firmware FILE")
}

/// QEMU's `-machine` value. Secure Boot firmware needs SMM (the secboot
/// build aborts without it, README.Debian above), and its flash marked
/// secure, so that only the firmware in SMM can write its variables.
fn machine(accel: &str, secure_boot: bool) -> String {
    if secure_boot {
        format!("q35,smm=on,accel={accel}")
    } else {
        format!("q35,accel={accel}")
    }
}

/// The extra QEMU arguments Secure Boot firmware needs.
const SECURE_BOOT_ARGS: &[&str] = &["-global", "driver=cfi.pflash01,property=secure,value=on"];

/// The guest's network: QEMU's user-mode network (the guest gets
/// 10.0.2.15 by DHCP, as on a LAN, and needs no privileges on the host),
/// with `port` on the host's 127.0.0.1 forwarded to the guest's SSH port, so
/// the booted server can be logged into as it would be on the LAN.
/// `restrict=on` keeps DHCP (an address only: libslirp `bootp.c` leaves the
/// gateway and DNS server out when restricted) and the forwarded port, but lets no packet out of
/// the guest (QEMU's `-netdev user` documentation: the guest "will not be
/// able to contact the host and no guest IP packets will be routed over the
/// host to the outside"); `net=` picks the range the address comes from.
fn nic_arg(ssh_port: u16, isolated: bool, subnet: Option<&str>) -> String {
    let mut nic = "user,model=virtio-net-pci".to_string();
    if isolated {
        nic.push_str(",restrict=on");
    }
    if let Some(net) = subnet {
        nic.push_str(&format!(",net={net}"));
    }
    nic.push_str(&format!(",hostfwd=tcp:127.0.0.1:{ssh_port}-:22"));
    nic
}

/// How the booted guest can be reached from the host.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Reach {
    /// By SSH to `port` on 127.0.0.1 (QEMU's user-mode network);
    /// `isolated`: nothing else is reachable from the guest.
    Ssh {
        port: u16,
        isolated: bool,
        subnet: Option<String>,
    },
    /// Not at all: no network device, as a server with no cable.
    Unplugged,
}

impl Reach {
    /// From `--network`, `--subnet` and `--ssh-port`; a free port when none
    /// is given.
    fn new(network: Network, ssh_port: Option<u16>, subnet: Option<&str>) -> Result<Reach> {
        let isolated = match network {
            Network::User => false,
            Network::Isolated => true,
            Network::None => {
                if let Some(port) = ssh_port {
                    bail!("--ssh-port {port} needs a network, but --network none gives the guest none; drop one of them");
                }
                if let Some(net) = subnet {
                    bail!("--subnet {net} needs a network, but --network none gives the guest none; drop one of them");
                }
                return Ok(Reach::Unplugged);
            }
        };
        let port = match ssh_port {
            Some(p) => p,
            None => free_local_port()?,
        };
        Ok(Reach::Ssh {
            port,
            isolated,
            subnet: subnet.map(str::to_string),
        })
    }

    /// QEMU's `-nic` arguments.
    fn qemu_args(&self) -> [String; 2] {
        let nic = match self {
            Reach::Ssh {
                port,
                isolated,
                subnet,
            } => nic_arg(*port, *isolated, subnet.as_deref()),
            Reach::Unplugged => "none".into(),
        };
        ["-nic".into(), nic]
    }

    /// The line printed before the boot.
    fn note(&self) -> String {
        match self {
            Reach::Ssh {
                port,
                isolated: false,
                ..
            } => format!("boot: log in with: ssh -p {port} core@localhost"),
            Reach::Ssh { port, .. } => format!(
                "boot: log in with: ssh -p {port} core@localhost (the guest reaches nothing else)"
            ),
            Reach::Unplugged => "boot: no network (-nic none)".into(),
        }
    }
}

/// A port on 127.0.0.1 that is free now: the one the kernel picks for a
/// socket bound to port 0. The socket is closed before QEMU binds the port;
/// were it taken in between, QEMU fails and says so.
fn free_local_port() -> Result<u16> {
    let socket = std::net::TcpListener::bind(("127.0.0.1", 0))
        .context("finding a free port on 127.0.0.1 for SSH")?;
    Ok(socket
        .local_addr()
        .context("reading the free port's number")?
        .port())
}

/// QEMU's `file=` option value, with its commas doubled as QEMU requires.
fn qemu_path(p: &Path) -> String {
    p.display().to_string().replace(',', ",,")
}

/// Does KVM really run a guest here? Some hosts open /dev/kvm fine and then
/// fail at the first instruction ("KVM internal error"), so run OVMF briefly.
fn kvm_works(firmware: &[String], secure_boot: bool) -> bool {
    if std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open("/dev/kvm")
        .is_err()
    {
        return false;
    }
    let mut cmd = Command::new(QEMU);
    cmd.args(["-machine", &machine("kvm", secure_boot)])
        .args(["-cpu", "host", "-m", "64"])
        .args(firmware)
        .args(if secure_boot { SECURE_BOOT_ARGS } else { &[] })
        .args([
            "-display",
            "none",
            "-monitor",
            "none",
            "-serial",
            "none",
            "-nic",
            "none",
            "-no-reboot",
        ])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped());
    let Ok(mut child) = cmd.spawn() else {
        return false;
    };
    let errors = Arc::new(Mutex::new(Vec::new()));
    let reader = child.stderr.take().map(|mut s| {
        let errors = Arc::clone(&errors);
        std::thread::spawn(move || {
            let mut buf = [0u8; 4096];
            while let Ok(n) = s.read(&mut buf) {
                if n == 0 {
                    break;
                }
                errors
                    .lock()
                    .map(|mut e| e.extend_from_slice(&buf[..n]))
                    .ok();
            }
        })
    });
    let started = Instant::now();
    let works = loop {
        let failed = errors.lock().map(|e| {
            let text = String::from_utf8_lossy(&e);
            text.contains("KVM internal error") || text.contains("failed to initialize")
        });
        if failed.unwrap_or(true) {
            break false;
        }
        if let Ok(Some(_)) = child.try_wait() {
            break false;
        }
        if started.elapsed() > Duration::from_secs(3) {
            break true;
        }
        std::thread::sleep(Duration::from_millis(100));
    };
    let _ = child.kill();
    let _ = child.wait();
    if let Some(r) = reader {
        let _ = r.join();
    }
    works
}

pub fn run(a: &BootArgs, progress: &Progress) -> Result<ExitCode> {
    if !a.image.is_file() {
        bail!(
            "{}: no such image; build one with `mkstick build`",
            a.image.display()
        );
    }
    if which(QEMU).is_none() {
        bail!("{QEMU} is not installed; install QEMU (Debian/Ubuntu: apt-get install qemu-system-x86 ovmf)");
    }
    let tmp = tempfile::tempdir().context("creating a temporary directory")?;
    // The blank data disks are sparse but may fill up: never leave them.
    let _tmp_on_signal = crate::io::cleanup::remove_dir_on_signal(tmp.path());
    let firmware = firmware_args(a.firmware.as_deref(), a.secure_boot, tmp.path())?;
    let use_kvm = match a.accel {
        Accel::Kvm => true,
        Accel::Tcg => false,
        Accel::Auto => kvm_works(&firmware, a.secure_boot),
    };
    progress.note(if use_kvm {
        "boot: using KVM"
    } else {
        "boot: KVM is not usable here, using TCG (software emulation, slower)"
    });

    let mut args: Vec<String> = vec![
        "-machine".into(),
        machine(if use_kvm { "kvm" } else { "tcg" }, a.secure_boot),
        "-cpu".into(),
        if use_kvm { "host" } else { "max" }.into(),
        "-m".into(),
        a.memory_mib.to_string(),
        "-smp".into(),
        a.cpus.to_string(),
    ];
    args.extend(firmware);
    if a.secure_boot {
        args.extend(SECURE_BOOT_ARGS.iter().map(|s| s.to_string()));
        progress.note("boot: Secure Boot is enforced, with Microsoft's keys enrolled");
    }
    args.extend(
        [
            "-display",
            "none",
            "-monitor",
            "none",
            "-serial",
            "stdio",
            "-no-reboot",
        ]
        .map(String::from),
    );
    let reach = Reach::new(a.network, a.ssh_port, a.subnet.as_deref())?;
    args.extend(reach.qemu_args());
    args.push("-drive".into());
    args.push(format!(
        "if=none,id=stick,format=raw,snapshot=on,file={}",
        qemu_path(&a.image)
    ));
    args.extend([
        "-device".into(),
        "virtio-blk-pci,drive=stick,bootindex=0".into(),
    ]);
    for (i, spec) in a.data_disks.iter().enumerate() {
        let disk = parse_data_disk(spec, i)?;
        let path = match &disk.source {
            DiskSource::File(p) => p.clone(),
            DiskSource::Blank(bytes) => {
                let p = tmp.path().join(format!("{}.img", disk.serial));
                let f = std::fs::File::create(&p)
                    .with_context(|| format!("creating {}", p.display()))?;
                f.set_len(*bytes)
                    .with_context(|| format!("sizing {}", p.display()))?;
                p
            }
        };
        args.push("-drive".into());
        args.push(format!(
            "if=none,id=data{i},format=raw,file={}",
            qemu_path(&path)
        ));
        args.push("-device".into());
        args.push(format!(
            "virtio-blk-pci,drive=data{i},serial={}",
            disk.serial
        ));
        progress.note(&format!(
            "boot: data disk {} is /dev/disk/by-id/virtio-{}",
            path.display(),
            disk.serial
        ));
    }

    progress.note(&reach.note());

    let watching = a.expect.is_some() || !a.fail_on.is_empty() || a.timeout > 0;
    let mut cmd = Command::new(QEMU);
    cmd.args(&args);
    // QEMU keeps the stick's snapshot (snapshot=on) in a file of its own
    // under $TMPDIR (block.c, bdrv_append_temp_snapshot), removed only when
    // QEMU closes it: in our temporary directory, a signal that kills QEMU
    // removes it too.
    cmd.env("TMPDIR", tmp.path());
    if !watching {
        progress.note("boot: the serial console follows; press Ctrl-A then X to stop QEMU");
        let mut child = cmd
            .spawn()
            .with_context(|| format!("running {QEMU} {}", args.join(" ")))?;
        let _kill_on_signal = crate::io::cleanup::kill_child_on_signal(child.id());
        let status = child.wait().context("waiting for QEMU")?;
        return Ok(if status.success() {
            ExitCode::SUCCESS
        } else {
            ExitCode::FAILURE
        });
    }
    cmd.stdin(Stdio::null()).stdout(Stdio::piped());
    let child = cmd
        .spawn()
        .with_context(|| format!("running {QEMU} {}", args.join(" ")))?;
    let _kill_on_signal = crate::io::cleanup::kill_child_on_signal(child.id());
    watch(child, a)
}

enum Seen {
    Expected,
    Failure(String),
    Exited(std::process::ExitStatus),
    TimedOut,
}

/// Copy the serial console to stdout and stop at a marker, exit or timeout.
fn watch(mut child: Child, a: &BootArgs) -> Result<ExitCode> {
    let log = Arc::new(Mutex::new(Vec::<u8>::new()));
    let mut stdout = child.stdout.take().context("QEMU's output is not piped")?;
    let copier = {
        let log = Arc::clone(&log);
        std::thread::spawn(move || {
            let mut buf = [0u8; 8192];
            let mut out = std::io::stdout();
            while let Ok(n) = stdout.read(&mut buf) {
                if n == 0 {
                    break;
                }
                let _ = out.write_all(&buf[..n]);
                let _ = out.flush();
                if let Ok(mut l) = log.lock() {
                    l.extend_from_slice(&buf[..n]);
                }
            }
        })
    };
    let started = Instant::now();
    let mut scanned = 0usize;
    let seen = loop {
        let exited = child.try_wait().context("waiting for QEMU")?;
        let text = {
            let l = log
                .lock()
                .map_err(|_| anyhow::anyhow!("the console reader failed"))?;
            let from = scanned.saturating_sub(256);
            scanned = l.len();
            String::from_utf8_lossy(&l[from..]).into_owned()
        };
        if let Some(f) = a.fail_on.iter().find(|f| text.contains(f.as_str())) {
            break Seen::Failure(f.clone());
        }
        if a.expect.as_ref().is_some_and(|e| text.contains(e.as_str())) {
            break Seen::Expected;
        }
        if let Some(status) = exited {
            // Read what is left before deciding.
            let _ = copier.is_finished();
            std::thread::sleep(Duration::from_millis(200));
            let l = log
                .lock()
                .map_err(|_| anyhow::anyhow!("the console reader failed"))?;
            let rest = String::from_utf8_lossy(&l[scanned.saturating_sub(256)..]).into_owned();
            if let Some(f) = a.fail_on.iter().find(|f| rest.contains(f.as_str())) {
                break Seen::Failure(f.clone());
            }
            if a.expect.as_ref().is_some_and(|e| rest.contains(e.as_str())) {
                break Seen::Expected;
            }
            break Seen::Exited(status);
        }
        if a.timeout > 0 && started.elapsed() > Duration::from_secs(a.timeout) {
            break Seen::TimedOut;
        }
        std::thread::sleep(Duration::from_millis(100));
    };
    // A guest that printed its marker powers itself off; give it a moment.
    if matches!(seen, Seen::Expected) {
        let grace = Instant::now();
        while grace.elapsed() < Duration::from_secs(20) && child.try_wait().ok().flatten().is_none()
        {
            std::thread::sleep(Duration::from_millis(200));
        }
    }
    let _ = child.kill();
    let _ = child.wait();
    let _ = copier.join();
    let secs = started.elapsed().as_secs();
    match seen {
        Seen::Expected => {
            eprintln!("boot: saw {:?} after {secs} s", a.expect.as_deref().unwrap_or(""));
            Ok(ExitCode::SUCCESS)
        }
        Seen::Failure(f) => bail!("the guest printed {f:?} after {secs} s; see the console output above"),
        Seen::Exited(status) => match &a.expect {
            Some(e) => bail!("QEMU stopped ({status}) after {secs} s without printing {e:?}; see the console output above"),
            None if status.success() => Ok(ExitCode::SUCCESS),
            None => bail!("QEMU failed ({status})"),
        },
        Seen::TimedOut => bail!(
            "timed out after {} s{}; see the console output above",
            a.timeout,
            a.expect.as_ref().map(|e| format!(" waiting for {e:?}")).unwrap_or_default()
        ),
    }
}

fn which(name: &str) -> Option<PathBuf> {
    std::env::var_os("PATH")?
        .to_str()?
        .split(':')
        .map(|d| Path::new(d).join(name))
        .find(|p| p.is_file())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_parse_in_binary_units() {
        assert_eq!(parse_size("8G"), Some(8 << 30));
        assert_eq!(parse_size("512m"), Some(512 << 20));
        assert_eq!(parse_size("4096"), Some(4096));
        for bad in ["", "G", "0", "1.5G", "-1G", "8GB", "99999999999999T"] {
            assert_eq!(parse_size(bad), None, "{bad}");
        }
    }

    #[test]
    fn data_disks_get_stable_serials() {
        let d = parse_data_disk("1G", 2).unwrap();
        assert_eq!(
            d,
            DataDisk {
                source: DiskSource::Blank(1 << 30),
                serial: "data2".into()
            }
        );
        let d = parse_data_disk("1G,serial=fast-ssd", 0).unwrap();
        assert_eq!(d.serial, "fast-ssd");
        assert!(parse_data_disk("1G,serial=bad name", 0).is_err());
        assert!(parse_data_disk("/no/such/file.img", 0)
            .unwrap_err()
            .to_string()
            .contains("give a size"));
    }

    #[test]
    fn the_guest_gets_a_user_network_with_ssh_forwarded_from_localhost() {
        assert_eq!(
            nic_arg(2222, false, None),
            "user,model=virtio-net-pci,hostfwd=tcp:127.0.0.1:2222-:22"
        );
        assert_eq!(
            nic_arg(2222, true, Some("10.0.3.0/24")),
            "user,model=virtio-net-pci,restrict=on,net=10.0.3.0/24,hostfwd=tcp:127.0.0.1:2222-:22"
        );
        let port = free_local_port().unwrap();
        assert_ne!(port, 0);
        // Free again once the probe's socket is closed.
        std::net::TcpListener::bind(("127.0.0.1", port)).unwrap();
    }

    #[test]
    fn network_none_gives_the_guest_no_network_device_and_no_ssh() {
        let reach = Reach::new(Network::None, None, None).unwrap();
        assert_eq!(reach, Reach::Unplugged);
        assert_eq!(reach.qemu_args(), ["-nic", "none"]);
        assert_eq!(reach.note(), "boot: no network (-nic none)");
        let e = Reach::new(Network::None, Some(2222), None)
            .unwrap_err()
            .to_string();
        assert_eq!(
            e,
            "--ssh-port 2222 needs a network, but --network none gives the guest none; drop one of them"
        );

        assert!(Reach::new(Network::None, None, Some("10.0.3.0/24"))
            .unwrap_err()
            .to_string()
            .starts_with("--subnet 10.0.3.0/24 needs a network"));
        let reach = Reach::new(Network::User, Some(2222), None).unwrap();
        assert_eq!(
            reach.qemu_args(),
            [
                "-nic",
                "user,model=virtio-net-pci,hostfwd=tcp:127.0.0.1:2222-:22"
            ]
        );
        assert_eq!(
            reach.note(),
            "boot: log in with: ssh -p 2222 core@localhost"
        );
        assert!(matches!(
            Reach::new(Network::User, None, None).unwrap(),
            Reach::Ssh { port, isolated: false, subnet: None } if port != 0
        ));
        let reach = Reach::new(Network::Isolated, Some(2222), Some("10.0.3.0/24")).unwrap();
        assert_eq!(
            reach.qemu_args()[1],
            "user,model=virtio-net-pci,restrict=on,net=10.0.3.0/24,hostfwd=tcp:127.0.0.1:2222-:22"
        );
        assert!(reach.note().ends_with("(the guest reaches nothing else)"));
    }

    #[test]
    fn network_defaults_to_user_and_parses_none() {
        use crate::cli::{Cli, Command};
        use clap::Parser;
        let boot = |extra: &[&str]| {
            let args = [&["mkstick", "boot", "x.img"], extra].concat();
            match Cli::try_parse_from(args).unwrap().command {
                Command::Boot(a) => a,
                other => panic!("not boot: {other:?}"),
            }
        };
        assert_eq!(boot(&[]).network, Network::User);
        assert_eq!(boot(&["--network", "none"]).network, Network::None);
        let both = boot(&["--network", "user", "--ssh-port", "2222"]);
        assert_eq!((both.network, both.ssh_port), (Network::User, Some(2222)));
        assert!(Cli::try_parse_from(["mkstick", "boot", "x.img", "--network", "wifi"]).is_err());
        let moved = boot(&["--network", "isolated", "--subnet", "10.0.3.0/24"]);
        assert_eq!(
            (moved.network, moved.subnet.as_deref()),
            (Network::Isolated, Some("10.0.3.0/24"))
        );
        for bad in ["10.0.3.0", "10.0.3.0/30", "ten/24"] {
            assert!(
                Cli::try_parse_from(["mkstick", "boot", "x.img", "--subnet", bad]).is_err(),
                "{bad}"
            );
        }
    }

    #[test]
    fn qemu_paths_escape_commas() {
        assert_eq!(qemu_path(Path::new("/a,b/c.img")), "/a,,b/c.img");
    }
}
