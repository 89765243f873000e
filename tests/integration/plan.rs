//! `mkstick plan`: the text for a person at 1 a.m., and `--json` for scripts.

use crate::common::*;
use crate::http::Server;
use crate::kubernetes::{doubles, k8s_config, publish, APP};

/// A scratch directory with [`k8s_config`] (storage, Kubernetes 1.36.4
/// doubles served by `server`, ingress on 8080/8443, `apps/hello.yaml`).
fn k8s_scratch(server: &Server) -> Scratch {
    let s = Scratch::new("");
    s.write("k8s.toml", &publish(server, "1.36.4", &doubles("1.36.4")));
    s.write("mkstick.toml", &k8s_config("os", "k8s.toml"));
    std::fs::create_dir(s.path("apps")).unwrap();
    s.write("apps/hello.yaml", APP);
    s
}

fn plan_json(s: &Scratch, env: &[(&str, &str)]) -> serde_json::Value {
    let out = ok(s.run_env(&["plan", "--json"], env));
    serde_json::from_str(&out).unwrap_or_else(|e| panic!("{e}: {out}"))
}

#[test]
fn plan_json_holds_the_facts_of_the_text_plan() {
    let server = Server::start();
    let s = k8s_scratch(&server);
    let cache = s.path("cache");
    let env = [("XDG_CACHE_HOME", cache.to_str().unwrap())];
    let j = plan_json(&s, &env);
    assert_eq!(j["hostname"], "kube1");
    assert_eq!(j["timezone"], "UTC");
    assert!(j["os"]["version"].as_str().is_some(), "{j}");
    assert_eq!(j["ssh-keys"][0]["kind"], "ssh-ed25519");
    assert!(j["ssh-keys"][0]["fingerprint"]
        .as_str()
        .unwrap()
        .starts_with("SHA256:"));
    assert_eq!(j["password-hash-fingerprint"], serde_json::Value::Null);
    assert_eq!(
        j["storage"]["drives"],
        serde_json::json!(["/dev/disk/by-id/virtio-d0"])
    );
    assert_eq!(j["storage"]["profile"], "single");
    assert_eq!(j["storage"]["label"], "data");
    assert_eq!(j["storage"]["mount"], "/var/mnt/data");
    let k = &j["kubernetes"];
    assert_eq!(k["version"], "1.36.4");
    assert_eq!(k["cluster-name"], "mkstick");
    assert_eq!(k["advertise-address"], "192.168.1.10");
    assert_eq!(k["api-url"], "https://192.168.1.10:6443");
    assert_eq!(k["ingress"]["http-port"], 8080);
    assert_eq!(k["ingress"]["https-port"], 8443);
    assert_eq!(k["ingress"]["http-url"], "http://192.168.1.10:8080/");
    assert_eq!(k["ingress"]["https-url"], "https://192.168.1.10:8443/");
    assert_eq!(k["storage-class"], "shared");
    assert!(k["manifests"][0]["name"]
        .as_str()
        .unwrap()
        .ends_with("apps/hello.yaml"));
    assert_eq!(k["manifests"][0]["objects"], 1);
    // The same facts as the text plan, and never the key itself.
    let text = ok(s.run_env(&["plan"], &env));
    let ign = j["image"]["ignition-sha256"].as_str().unwrap();
    assert!(text.contains(&ign[..12]), "{ign} not in:\n{text}");
    let seed = j["image"]["seed"].as_str().unwrap();
    assert!(text.contains(&seed[..16]), "{seed} not in:\n{text}");
    assert!(!j
        .to_string()
        .contains(KEY.split_whitespace().nth(1).unwrap()));
}

#[test]
fn plan_json_without_storage_or_kubernetes() {
    let s = Scratch::new(&minimal_config());
    let j = plan_json(&s, &[]);
    assert_eq!(j["hostname"], "kube1");
    assert_eq!(j["storage"], serde_json::Value::Null);
    assert_eq!(j["kubernetes"], serde_json::Value::Null);
    assert!(j["image"]["files"].as_array().unwrap().len() > 2, "{j}");
}

const INGRESS: &str = "apiVersion: networking.k8s.io/v1\nkind: Ingress\nmetadata:\n  name: whoami\n  namespace: default\nspec:\n  rules:\n    - host: whoami.lan\n      http:\n        paths:\n          - path: /\n            pathType: Prefix\n            backend:\n              service:\n                name: whoami\n                port:\n                  number: 80\n";

#[test]
fn plan_lists_ingress_hosts_the_journal_and_wide_nfs_exports() {
    let server = Server::start();
    let s = k8s_scratch(&server);
    s.write("apps/ingress.yaml", INGRESS);
    let config = k8s_config("os", "k8s.toml").replace(
        "drives = [\"/dev/disk/by-id/virtio-d0\"]\n",
        "drives = [\"/dev/disk/by-id/virtio-d0\"]\nnfs-clients = [\"192.168.1.0/24\", \"10.0.0.5\"]\n",
    );
    s.write("mkstick.toml", &config);
    let cache = s.path("cache");
    let env = [("XDG_CACHE_HOME", cache.to_str().unwrap())];
    let plan = ok(s.run_env(&["plan"], &env));
    for want in [
        "    if it fails: ssh core@192.168.1.10 sudo journalctl -u mkstick-kubeadm -u mkstick-addons\n",
        "    Your Ingress hosts (point their names at the server, in DNS or /etc/hosts):\n      http://whoami.lan:8080/  https://whoami.lan:8443/\n",
        "  WARNING: the export is rw,no_root_squash, so every machine in 192.168.1.0/24 may\n",
    ] {
        assert!(plan.contains(want), "{want:?} in:\n{plan}");
    }
    // The single host is no network.
    assert!(
        !plan.contains("machine in 192.168.1.0/24, 10.0.0.5"),
        "{plan}"
    );

    // Without an Ingress of your own and with single hosts: neither.
    std::fs::remove_file(s.path("apps/ingress.yaml")).unwrap();
    s.write("mkstick.toml", &k8s_config("os", "k8s.toml"));
    let plan = ok(s.run_env(&["plan"], &env));
    assert!(!plan.contains("Your Ingress hosts"), "{plan}");
    assert!(!plan.contains("WARNING"), "{plan}");
    assert!(plan.contains("journalctl -u mkstick-kubeadm"), "{plan}");
}
