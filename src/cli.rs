//! Command-line types (clap derive) and nothing else.

use clap::{Args, Parser, Subcommand};
use std::path::PathBuf;

#[derive(Debug, Parser)]
#[command(
    name = "mkstick",
    // The package version, and the commit when built from a checkout
    // (build.rs).
    version = env!("MKSTICK_LONG_VERSION"),
    about = "Turn one mkstick.toml into a USB stick that boots a home server",
    long_about = "Turn one mkstick.toml into a USB stick that boots a home server live \
into a CoreOS, configured by Ignition at every boot.\n\n\
Start with `mkstick init`, check with `mkstick plan`, then `mkstick build`.",
    term_width = 80
)]
pub struct Cli {
    /// Print no progress, only results and errors
    #[arg(long, short, global = true)]
    pub quiet: bool,

    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Write a commented starter mkstick.toml
    Init(InitArgs),
    /// Check the config and the OS files, build nothing
    Check(CheckArgs),
    /// Say in plain words what the stick will do
    Plan(PlanArgs),
    /// Build the stick image
    Build(BuildArgs),
    /// Download and verify the OS the config names, into the cache
    Fetch(ConfigArgs),
    /// Show or trim the download cache
    #[command(subcommand)]
    Cache(CacheCommand),
    /// Show what is inside a stick image
    Inspect(InspectArgs),
    /// Boot a stick image in QEMU, leaving the image unchanged
    Boot(BootArgs),
    /// List drives that could take a stick image
    Devices(DevicesArgs),
    /// Write an image to a USB stick, safely, and verify it
    Flash(FlashArgs),
    /// Print a shell completion script (bash, zsh, fish, elvish, powershell)
    Completions(CompletionsArgs),
    /// Print the manual page (roff), or write one page per command
    Man(ManArgs),
}

#[derive(Debug, Args)]
pub struct ManArgs {
    /// Write mkstick.1 and one mkstick-COMMAND.1 per command into this
    /// directory instead of printing mkstick.1
    #[arg(long, value_name = "DIR")]
    pub dir: Option<PathBuf>,
}

#[derive(Debug, Args)]
pub struct CompletionsArgs {
    /// The shell to complete for
    #[arg(value_enum)]
    pub shell: clap_complete::Shell,
}

#[derive(Debug, Args)]
pub struct DevicesArgs {
    /// Print one JSON document
    #[arg(long)]
    pub json: bool,
    /// Also show fixed disks, marked unsafe with the reason
    #[arg(long)]
    pub all: bool,
}

#[derive(Debug, Args, Clone)]
pub struct FlashArgs {
    /// The image to write
    pub image: PathBuf,
    /// The whole stick: /dev/sdX or /dev/disk/by-id/NAME
    pub device: PathBuf,
    #[command(flatten)]
    pub safety: FlashSafety,
}

/// Options shared by `flash` and `build --flash`.
#[derive(Debug, Args, Clone, Default)]
pub struct FlashSafety {
    /// Do not ask: for scripts that name the device explicitly
    #[arg(long)]
    pub yes: bool,
    /// Allow a disk that is neither removable nor on USB
    #[arg(long)]
    pub allow_fixed: bool,
    /// The target is a file (created if missing), mode 0600
    #[arg(long)]
    pub to_file: bool,
    /// Skip reading the stick back (not recommended)
    #[arg(long)]
    pub no_verify: bool,
    /// Write every byte the image holds, even where the stick already has it
    #[arg(long)]
    pub full: bool,
}

#[derive(Debug, Args)]
pub struct InitArgs {
    /// Where to write the config
    #[arg(long, short, default_value = "mkstick.toml")]
    pub output: PathBuf,
    /// Replace an existing file
    #[arg(long)]
    pub force: bool,
}

#[derive(Debug, Args, Clone)]
pub struct CheckArgs {
    #[command(flatten)]
    pub config: ConfigArgs,
    /// An image of [extra] manifests that is not on the stick is an error
    #[arg(long)]
    pub strict: bool,
}

#[derive(Debug, Args, Clone)]
pub struct ConfigArgs {
    /// The config file
    #[arg(long, short, default_value = "mkstick.toml")]
    pub config: PathBuf,
    /// An OS directory (holding os.json); overrides [os]
    #[arg(long, value_name = "DIR")]
    pub os_dir: Option<PathBuf>,
    #[command(flatten)]
    pub fetch: FetchArgs,
}

#[derive(Debug, Args, Clone)]
pub struct PlanArgs {
    #[command(flatten)]
    pub config: ConfigArgs,
    /// Print one JSON document with the same facts
    #[arg(long)]
    pub json: bool,
}

/// Where downloads go and how they are checked.
#[derive(Debug, Args, Clone, Default)]
pub struct FetchArgs {
    /// The download cache (default: $XDG_CACHE_HOME/mkstick)
    #[arg(long, value_name = "DIR")]
    pub cache_dir: Option<PathBuf>,
    /// Accept a download whose OpenPGP signature is missing or bad, on its
    /// digest alone (dangerous; the digest is always checked)
    #[arg(long)]
    pub insecure_skip_signature: bool,
}

#[derive(Debug, Subcommand)]
pub enum CacheCommand {
    /// List the cached OS releases and files
    Ls(CacheArgs),
    /// Remove older releases, unused files and partial downloads
    Prune(PruneArgs),
}

#[derive(Debug, Args)]
pub struct CacheArgs {
    /// The download cache (default: $XDG_CACHE_HOME/mkstick)
    #[arg(long, value_name = "DIR")]
    pub cache_dir: Option<PathBuf>,
}

#[derive(Debug, Args)]
pub struct PruneArgs {
    #[command(flatten)]
    pub cache: CacheArgs,
    /// How many releases of each OS to keep, newest first
    #[arg(long, default_value_t = 1)]
    pub keep: usize,
}

#[derive(Debug, Args)]
pub struct BuildArgs {
    #[command(flatten)]
    pub config: ConfigArgs,
    /// The image file to write
    #[arg(long, short, default_value = "mkstick.img")]
    pub output: PathBuf,
    /// Replace an existing image
    #[arg(long)]
    pub force: bool,
    /// Derive the disk IDs from this text instead of from the inputs
    #[arg(long, conflicts_with = "random_guids")]
    pub seed: Option<String>,
    /// Use random disk IDs (the image is then not reproducible)
    #[arg(long)]
    pub random_guids: bool,
    /// Then write the image to this stick, as `mkstick flash` does
    #[arg(long, value_name = "DEVICE")]
    pub flash: Option<PathBuf>,
    #[command(flatten)]
    pub safety: FlashSafety,
}

#[derive(Debug, Args)]
pub struct InspectArgs {
    /// The image (or stick) to read
    pub image: PathBuf,
    /// Print one JSON document
    #[arg(long)]
    pub json: bool,
    /// Print the whole embedded Ignition config, secrets included
    #[arg(long)]
    pub show_config: bool,
    /// Also fail when the image has no mkstick/manifest.json (every file
    /// is always checked against it)
    #[arg(long)]
    pub verify: bool,
}

#[derive(Debug, Args)]
pub struct BootArgs {
    /// The image to boot; QEMU writes to a snapshot, never to the image
    pub image: PathBuf,
    /// Attach a data disk: a size (8G, 512M) for a blank temporary disk, or a
    /// raw image file to use and keep; add ",serial=NAME" to name it
    /// (default data0, data1, ...; it appears as /dev/disk/by-id/virtio-NAME)
    #[arg(long = "data-disk", value_name = "SIZE|FILE")]
    pub data_disks: Vec<String>,
    /// Guest memory in MiB (Fedora CoreOS live needs about 4096)
    #[arg(long, default_value_t = 4096)]
    pub memory_mib: u32,
    /// Virtual CPUs
    #[arg(long, default_value_t = 2)]
    pub cpus: u32,
    /// UEFI firmware (default: OVMF from the usual places)
    #[arg(long, value_name = "FILE", conflicts_with = "secure_boot")]
    pub firmware: Option<PathBuf>,
    /// Boot with Secure Boot enforced and Microsoft's keys enrolled, as a
    /// PC ships (OVMF's Secure Boot build)
    #[arg(long)]
    pub secure_boot: bool,
    /// Stop with success when this text appears on the serial console
    #[arg(long, value_name = "TEXT")]
    pub expect: Option<String>,
    /// Stop with failure when this text appears on the serial console
    #[arg(long, value_name = "TEXT")]
    pub fail_on: Vec<String>,
    /// Give up after this many seconds (0: never)
    #[arg(long, default_value_t = 0, value_name = "SECS")]
    pub timeout: u64,
    /// Use KVM, TCG (software) or whichever works
    #[arg(long, value_enum, default_value_t = Accel::Auto)]
    pub accel: Accel,
    /// Forward this port on 127.0.0.1 to the guest's SSH port (default: a
    /// free port, printed before the boot; not with --network none)
    #[arg(long, value_name = "PORT", value_parser = clap::value_parser!(u16).range(1..))]
    pub ssh_port: Option<u16>,
    /// The guest's network: QEMU's user-mode network with SSH forwarded;
    /// isolated, the same with nothing beyond it reachable and no gateway
    /// (a LAN with no router); or none at all (no network device, as a
    /// server with no cable)
    #[arg(long, value_enum, default_value_t = Network::User)]
    pub network: Network,
    /// The user-mode network's range, from which the guest's DHCP address
    /// comes (default 10.0.2.0/24): another one gives the server a new
    /// address, as a new lease from the router would
    #[arg(long, value_name = "CIDR", value_parser = parse_subnet)]
    pub subnet: Option<String>,
}

/// An IPv4 network QEMU's `net=` takes: `A.B.C.D/N`, N from 8 to 28.
fn parse_subnet(s: &str) -> Result<String, String> {
    let (ip, n) = s
        .split_once('/')
        .ok_or_else(|| format!("`{s}` is not a network; write it like 10.0.3.0/24"))?;
    let ok = ip.parse::<std::net::Ipv4Addr>().is_ok()
        && n.parse::<u8>().is_ok_and(|n| (8..=28).contains(&n));
    if ok {
        Ok(s.to_string())
    } else {
        Err(format!(
            "`{s}` is not an IPv4 network with a prefix of 8 to 28; write it like 10.0.3.0/24"
        ))
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Network {
    User,
    Isolated,
    None,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Accel {
    Auto,
    Kvm,
    Tcg,
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory;

    #[test]
    fn cli_is_consistent() {
        Cli::command().debug_assert();
    }

    #[test]
    fn help_fits_in_80_columns() {
        let mut cmd = Cli::command();
        let mut texts = vec![cmd.render_long_help().to_string()];
        for sub in cmd.get_subcommands_mut() {
            texts.push(sub.render_long_help().to_string());
        }
        for text in texts {
            for line in text.lines() {
                assert!(line.chars().count() <= 80, "too wide: {line:?}");
            }
        }
    }
}
