//! Progress on a pipe: plain lines, and enough of them that a log shows a
//! long download is alive.

use crate::common::*;
use crate::http::Server;
use crate::kubernetes::{doubles, k8s_config, publish, APP};

#[test]
fn a_piped_download_prints_a_line_every_tenth() {
    let server = Server::start();
    let mut files = doubles("1.36.4");
    // kubeadm made large: 8 MiB arrive in many reads.
    files[0].1 = filler(8 << 20, 7);
    let s = Scratch::new("");
    s.write("k8s.toml", &publish(&server, "1.36.4", &files));
    s.write("mkstick.toml", &k8s_config("os", "k8s.toml"));
    std::fs::create_dir(s.path("apps")).unwrap();
    s.write("apps/hello.yaml", APP);
    let cache = s.path("cache");
    // stderr is a pipe here, as in a CI log.
    let o = s.run_env(&["fetch"], &[("XDG_CACHE_HOME", cache.to_str().unwrap())]);
    let err = stderr(&o);
    ok(o);
    let lines: Vec<&str> = err
        .lines()
        .filter(|l| l.starts_with("kubeadm 1.36.4: ") && l.contains(" of 8.0 MiB ("))
        .collect();
    // A line at each tenth on the way (10 % .. 90 %; then the "done"
    // line), not one at the start and silence.
    let tenths: Vec<u64> = lines
        .iter()
        .map(|l| {
            let pct = l.split('(').nth(1).unwrap().split('%').next().unwrap();
            pct.parse::<u64>().unwrap() / 10
        })
        .collect();
    assert_eq!(tenths, (1..=9).collect::<Vec<_>>(), "{err}");
    assert!(lines.iter().all(|l| l.ends_with(" MiB/s")), "{err}");
    assert!(err.contains("kubeadm 1.36.4: done, 8.0 MiB in "), "{err}");
}
