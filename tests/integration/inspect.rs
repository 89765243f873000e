//! `mkstick inspect`: every file is compared with the stick's manifest, with
//! or without `--verify`, and the server the stick makes is summed up.

use crate::common::*;
use crate::http::Server;
use crate::kubernetes::{doubles, k8s_config, publish, APP};

/// A built minimal image, and a copy `bad.img` with one byte of
/// os/rootfs.img flipped.
fn built_and_corrupted() -> Scratch {
    let s = Scratch::new(&minimal_config());
    ok(s.run(&["build", "-q"]));
    write_corrupted_copy(&s);
    s
}

#[test]
fn a_corrupted_file_fails_inspect_without_verify() {
    let s = built_and_corrupted();
    let good = ok(s.run(&["inspect", "-q", "mkstick.img"]));
    assert!(good.contains("verified: all 8 files match"), "{good}");
    assert!(!good.contains("DOES NOT MATCH"), "{good}");

    let o = s.run(&["inspect", "-q", "bad.img"]);
    let listing = stdout(&o);
    let err = fails(o);
    assert!(
        err.contains("bad.img failed verification: os/rootfs.img: sha256"),
        "{err}"
    );
    // Listed, but never as fine.
    let line = listing
        .lines()
        .find(|l| l.trim_start().starts_with("os/rootfs.img"))
        .unwrap_or_else(|| panic!("{listing}"));
    assert!(line.ends_with("DOES NOT MATCH the manifest"), "{line}");
    assert!(!listing.contains("verified"), "{listing}");
    // Only the corrupted file is marked.
    assert_eq!(listing.matches("DOES NOT MATCH").count(), 1, "{listing}");

    // --verify is still accepted and says the same.
    let err = fails(s.run(&["inspect", "-q", "--verify", "bad.img"]));
    assert!(err.contains("os/rootfs.img: sha256"), "{err}");

    // JSON too: the document, then exit 1.
    let o = s.run(&["inspect", "-q", "--json", "bad.img"]);
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(v["verify"]["ok"], false);
    assert_eq!(
        v["verify"]["bad-files"],
        serde_json::json!(["os/rootfs.img"])
    );
    assert_eq!(o.status.code(), Some(1));
}

#[test]
fn inspect_sums_up_the_server_without_secrets() {
    let s = Scratch::new(&minimal_config());
    ok(s.run(&["build", "-q"]));
    let out = ok(s.run(&["inspect", "-q", "mkstick.img"]));
    assert!(
        out.contains("\nserver kube1, no data drives, no Kubernetes\n"),
        "{out}"
    );

    let server = Server::start();
    let s = Scratch::new("");
    s.write("k8s.toml", &publish(&server, "1.36.4", &doubles("1.36.4")));
    s.write("mkstick.toml", &k8s_config("os", "k8s.toml"));
    std::fs::create_dir(s.path("apps")).unwrap();
    s.write("apps/hello.yaml", APP);
    let cache = s.path("cache");
    let env = [("XDG_CACHE_HOME", cache.to_str().unwrap())];
    ok(s.run_env(&["build", "-q"], &env));
    let out = ok(s.run_env(&["inspect", "-q", "mkstick.img"], &env));
    assert!(
        out.contains(
            "\nserver kube1, 1 data drive (single): /dev/disk/by-id/virtio-d0, Kubernetes 1.36.4\n"
        ),
        "{out}"
    );
    assert!(
        !out.contains(KEY.split_whitespace().nth(1).unwrap()),
        "{out}"
    );
    let json = ok(s.run_env(&["inspect", "-q", "--json", "mkstick.img"], &env));
    let v: serde_json::Value = serde_json::from_str(&json).unwrap();
    assert_eq!(v["server"]["hostname"], "kube1");
    assert_eq!(v["server"]["kubernetes-version"], "1.36.4");
    assert_eq!(
        v["server"]["drives"],
        serde_json::json!(["/dev/disk/by-id/virtio-d0"])
    );
}
