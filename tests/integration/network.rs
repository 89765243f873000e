//! `[network]`: a static address reaches each OS's network stack as the
//! file that stack reads, and the NetworkManager keyfile for Fedora CoreOS
//! passes the real NetworkManager's keyfile parser (`nmcli --offline`,
//! NetworkManager 1.40+). The networkd unit is applied by the test OS's
//! real systemd-networkd in the boot tests (boot.rs).

use crate::common::*;

/// The file at `path` in the image's embedded Ignition config: its mode and
/// contents.
fn ignition_file(s: &Scratch, path: &str) -> Option<(u32, String)> {
    let config: mkstick::ignition::Config =
        serde_json::from_slice(&embedded_ignition(&s.path("mkstick.img"))).unwrap();
    let mode = config.storage.files.iter().find(|f| f.path == path)?.mode;
    Some((
        mode.unwrap(),
        crate::kubernetes::ignition_file(&config, path)?,
    ))
}

fn set_stack(s: &Scratch, stack: Option<&str>) {
    let path = s.path("os/os.json");
    let mut os: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap();
    match stack {
        Some(v) => os["network"] = serde_json::json!(v),
        None => {
            os.as_object_mut().unwrap().remove("network");
        }
    }
    std::fs::write(&path, serde_json::to_string_pretty(&os).unwrap()).unwrap();
}

const NETWORKD: &str = "/etc/systemd/network/00-mkstick-static.network";
const KEYFILE: &str = "/etc/NetworkManager/system-connections/mkstick-static.nmconnection";

#[test]
fn a_static_address_reaches_each_network_stack() {
    let config = format!(
        "{}\n[network]\nmac = \"52:54:00:AB:CD:01\"\naddress = \"192.168.1.20/24\"\ngateway = \"192.168.1.1\"\ndns = [\"192.168.1.1\", \"1.1.1.1\"]\n",
        minimal_config()
    );
    let s = Scratch::new(&config);
    // systemd-networkd (Flatcar, the test OS).
    ok(s.run(&["build", "-q", "--force"]));
    let (mode, unit) = ignition_file(&s, NETWORKD).expect("the networkd unit");
    assert_eq!(mode, 0o644);
    assert!(unit.contains("[Match]\nMACAddress=52:54:00:ab:cd:01\n\n[Network]\nAddress=192.168.1.20/24\nGateway=192.168.1.1\nDNS=192.168.1.1\nDNS=1.1.1.1\n"), "{unit}");
    assert!(ignition_file(&s, KEYFILE).is_none());
    let plan = ok(s.run(&["plan"]));
    assert!(
        plan.contains("  - give it the static address 192.168.1.20/24 on the interface with MAC 52:54:00:ab:cd:01, gateway 192.168.1.1, DNS 192.168.1.1, 1.1.1.1\n"),
        "{plan}"
    );

    // NetworkManager (Fedora CoreOS): a keyfile only root can read, which
    // NetworkManager's own parser reads as the same settings.
    set_stack(&s, Some("network-manager"));
    ok(s.run(&["build", "-q", "--force"]));
    assert!(ignition_file(&s, NETWORKD).is_none());
    let (mode, keyfile) = ignition_file(&s, KEYFILE).expect("the keyfile");
    assert_eq!(
        mode, 0o600,
        "NetworkManager ignores keyfiles others can read"
    );
    if let Some(nmcli) = tool("nmcli") {
        let read = nm_reads(&nmcli, &keyfile);
        for want in [
            "type=ethernet",
            "mac-address=52:54:00:AB:CD:01",
            "address1=192.168.1.20/24,192.168.1.1",
            "dns=192.168.1.1;1.1.1.1;",
            "method=manual",
            "may-fail=false",
        ] {
            assert!(
                read.contains(want),
                "{want:?} in NetworkManager's reading:\n{read}"
            );
        }
        // The parser is not lenient: a manual method without an address fails.
        let broken = keyfile.replace("address1=192.168.1.20/24\n", "");
        assert!(nm_fails(&nmcli, &broken), "{broken}");
    }

    // An OS directory that does not say what configures its network.
    set_stack(&s, None);
    let e = fails(s.run(&["build", "-q", "--force"]));
    assert!(
        e.contains("[network] sets the static address 192.168.1.20/24, but")
            && e.contains("does not say what configures its network"),
        "{e}"
    );
}

/// NetworkManager's reading of `keyfile`: `nmcli --offline` parses a
/// keyfile from stdin and writes it back out, normalized.
fn nm_reads(nmcli: &std::path::Path, keyfile: &str) -> String {
    let out = nm_offline(nmcli, keyfile);
    assert!(
        out.status.success(),
        "NetworkManager refuses the keyfile: {}\n{keyfile}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

fn nm_fails(nmcli: &std::path::Path, keyfile: &str) -> bool {
    !nm_offline(nmcli, keyfile).status.success()
}

fn nm_offline(nmcli: &std::path::Path, keyfile: &str) -> std::process::Output {
    use std::io::Write;
    let mut child = std::process::Command::new(nmcli)
        .args([
            "--offline",
            "connection",
            "modify",
            "connection.autoconnect",
            "yes",
        ])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    child
        .stdin
        .take()
        .unwrap()
        .write_all(keyfile.as_bytes())
        .unwrap();
    child.wait_with_output().unwrap()
}

#[test]
fn an_interface_named_by_its_name_reaches_networkmanager() {
    let config = format!(
        "{}\n[network]\ninterface = \"enp1s0\"\naddress = \"10.0.2.50/24\"\n",
        minimal_config()
    );
    let s = Scratch::new(&config);
    set_stack(&s, Some("network-manager"));
    ok(s.run(&["build", "-q", "--force"]));
    let (_, keyfile) = ignition_file(&s, KEYFILE).unwrap();
    if let Some(nmcli) = tool("nmcli") {
        let read = nm_reads(&nmcli, &keyfile);
        assert!(
            read.contains("interface-name=enp1s0") && read.contains("address1=10.0.2.50/24\n"),
            "{read}"
        );
    }
}
