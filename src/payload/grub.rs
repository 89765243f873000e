//! The boot entry: a straight-line grub.cfg with no menu. It finds this
//! stick's partition by its FAT volume id, loads the kernel and the three
//! initrds, and boots. Every failure path prints why and ends in `halt`.

use crate::config::types::KernelArg;

/// Where the boot files live on the EFI partition.
pub const KERNEL: &str = "os/vmlinuz";
pub const INITRAMFS: &str = "os/initramfs.img";
pub const ROOTFS: &str = "os/rootfs.img";
pub const CONFIG_INITRD: &str = "mkstick/ignition.img";

/// GRUB's spelling of a FAT volume id, as `search --fs-uuid` expects it.
pub fn fat_uuid(volume_id: u32) -> String {
    format!("{:04X}-{:04X}", volume_id >> 16, volume_id & 0xffff)
}

pub struct GrubArgs<'a> {
    pub title: &'a str,
    pub volume_id: u32,
    pub serial_console: bool,
    pub kernel_args: &'a [KernelArg],
    /// Whether the OS has a separate root filesystem initrd.
    pub rootfs: bool,
    /// Why the kernel cannot boot under Secure Boot, for an OS whose kernel
    /// the stick's shim does not trust ([`crate::os::OsManifest`]).
    pub secure_boot_unsupported: Option<&'a str>,
}

/// The grub.cfg text. Kernel arguments are single-quoted; [`KernelArg`]
/// refuses quotes, so nothing in them is expanded by GRUB.
pub fn config(a: &GrubArgs) -> String {
    let uuid = fat_uuid(a.volume_id);
    let args: Vec<String> = a.kernel_args.iter().map(|k| format!("'{k}'")).collect();
    // The stick boots only under UEFI, where GRUB's `console` terminal is
    // the firmware's console (ConOut): the monitor, and the serial port too
    // wherever the firmware copies its console there (OVMF does; so does a
    // server with console redirection or Serial-over-LAN). GRUB's own
    // `serial` terminal beside it prints every line twice there: "Using
    // console and serial as terminal_output for EFI boot mode causes
    // doubled output" (truenas/middleware#9761), and Fedora CoreOS has
    // "GRUB write only to console, which gets copied to the serial port. If
    // we use serial we get doubled output" (fedora-coreos-config
    // platforms.yaml, azure) and sets no GRUB terminal for metal. So GRUB
    // writes to the console only: a monitor always sees it. The cost: a
    // serial port the firmware does not redirect stays silent until the
    // kernel starts (console=ttyS0).
    let terminal = if a.serial_console {
        "terminal_output console\n"
    } else {
        ""
    };
    let safe = |t: &str, also: &str| {
        t.replace(
            |c: char| !(c.is_ascii_alphanumeric() || " .-_+:()/".contains(c) || also.contains(c)),
            "_",
        )
    };
    let title = safe(a.title, "");
    // GRUB sets and exports shim_lock=y when Secure Boot is on (grub2
    // grub-core/kern/efi/sb.c; Fedora's and Debian's GRUB alike), and only
    // then; the kernel would then fail shim's check with a message that
    // sends the user the wrong way ("rebuild the stick").
    let secure_boot = match a.secure_boot_unsupported {
        Some(why) => format!(
            // Double quotes keep the apostrophe; `safe` leaves no `$`, `\`
            // or `"` to expand.
            "  if [ \"$shim_lock\" = y ]; then\n    echo \"mkstick: Secure Boot is on; {}: turn Secure Boot off for this server\"\n    sleep 30\n    halt\n  fi\n",
            safe(why, ",'")
        ),
        None => String::new(),
    };
    format!(
        "# Written by mkstick. Boots {title} live from this stick; no menu.\n\
{terminal}\
if search --no-floppy --fs-uuid --set=root {uuid}; then
  echo 'mkstick: booting {title}'
{secure_boot}  if linux /{KERNEL} {args}; then
    echo 'mkstick: loading the initramfs, the root filesystem and the config'
    if initrd /{INITRAMFS} {rootfs}/{CONFIG_INITRD}; then
      boot
      echo 'mkstick: the kernel did not start'
    else
      echo 'mkstick: cannot load the initrds from the stick; rebuild it'
    fi
  elif [ \"$shim_lock\" = y ]; then
    echo 'mkstick: Secure Boot is on, and the shim does not trust the kernel /{KERNEL}'
    echo 'mkstick: turn Secure Boot off for this server'
  else
    echo 'mkstick: cannot load the kernel /{KERNEL}; rebuild the stick'
  fi
else
  echo 'mkstick: cannot find the stick partition {uuid}; rebuild the stick'
fi
sleep 10
halt
",
        args = args.join(" "),
        rootfs = if a.rootfs {
            format!("/{ROOTFS} ")
        } else {
            String::new()
        }
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every `if` has its `fi` (grub-script-check checks the rest in the
    /// integration tests).
    fn assert_balanced(cfg: &str) {
        let count = |f: fn(&str) -> bool| cfg.lines().map(str::trim).filter(|l| f(l)).count();
        assert_eq!(
            count(|l| l.starts_with("if ")),
            count(|l| l == "fi"),
            "{cfg}"
        );
    }

    #[test]
    fn every_path_ends_in_halt_and_args_are_quoted() {
        let args: Vec<KernelArg> = ["ignition.firstboot", "console=ttyS0,115200n8"]
            .iter()
            .map(|s| s.parse().unwrap())
            .collect();
        let cfg = config(&GrubArgs {
            title: "Fedora CoreOS 41 'x'",
            volume_id: 0x1234abcd,
            serial_console: true,
            kernel_args: &args,
            rootfs: true,
            secure_boot_unsupported: None,
        });
        // A kernel the shim refuses is named as a Secure Boot problem, not
        // as a broken stick.
        let refused = cfg.find("elif [ \"$shim_lock\" = y ]; then\n    echo 'mkstick: Secure Boot is on, and the shim does not trust the kernel /os/vmlinuz'\n    echo 'mkstick: turn Secure Boot off for this server'\n").unwrap();
        assert!(refused < cfg.find("rebuild the stick'").unwrap());
        assert!(cfg.contains("--fs-uuid --set=root 1234-ABCD"));
        assert!(cfg.contains("'ignition.firstboot' 'console=ttyS0,115200n8'"));
        assert!(cfg.trim_end().ends_with("halt"));
        assert!(!cfg.contains("'x'"), "titles cannot inject quotes: {cfg}");
        // Under UEFI the console reaches the serial port wherever the
        // firmware redirects it; GRUB's own serial terminal would double it.
        assert!(cfg.contains("\nterminal_output console\n"), "{cfg}");
        assert!(!cfg.contains("serial"), "no GRUB serial terminal: {cfg}");
        assert_balanced(&cfg);
    }

    #[test]
    fn an_os_the_shim_cannot_boot_halts_with_why_under_secure_boot() {
        let cfg = config(&GrubArgs {
            title: "Flatcar Container Linux 4593.2.0",
            volume_id: 1,
            serial_console: false,
            kernel_args: &[],
            rootfs: false,
            secure_boot_unsupported: Some("Flatcar's kernel is not signed by Fedora's shim $x\""),
        });
        let check = cfg.find("if [ \"$shim_lock\" = y ]; then").unwrap();
        assert!(
            check < cfg.find("if linux").unwrap(),
            "checked before the kernel: {cfg}"
        );
        assert!(cfg.contains("echo \"mkstick: Secure Boot is on; Flatcar's kernel is not signed by Fedora's shim _x_: turn Secure Boot off for this server\"\n    sleep 30\n    halt\n  fi\n"), "{cfg}");
        assert_balanced(&cfg);
    }
}
