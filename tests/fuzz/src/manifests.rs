//! `manifests`: the user's files that `[extra]` names. First byte even: a
//! Kubernetes manifest (`[extra] manifests`, YAML or JSON, checked by
//! `check_manifest`); odd: an Ignition config to merge (`[extra]
//! ignition`, read by `load_fragment`).

use crate::{with_selector, Seed};
use anyhow::Result;
use mkstick::config::LoadedConfig;
use std::path::{Path, PathBuf};
use std::sync::OnceLock;

struct Env {
    loaded: LoadedConfig,
    fragment: toml::Spanned<PathBuf>,
}

fn env() -> &'static Env {
    static ENV: OnceLock<Env> = OnceLock::new();
    ENV.get_or_init(|| {
        let dir = crate::scratch().join("manifests");
        std::fs::create_dir_all(&dir).expect("creating the manifests directory");
        let text = "[node]\nhostname = \"kube1\"\n\n[extra]\nignition = [\"extra.ign\"]\n";
        let path = dir.join("mkstick.toml");
        let config = mkstick::config::parse(&path, text).expect("the fixed config parses");
        let fragment = config.extra.ignition[0].clone();
        Env {
            loaded: LoadedConfig {
                path,
                text: text.to_string(),
                config,
            },
            fragment,
        }
    })
}

pub fn run(data: &[u8]) {
    let Some((&selector, rest)) = data.split_first() else {
        return;
    };
    if selector & 1 == 0 {
        // `user_manifests` reads each file with `read_to_string`.
        if let Ok(text) = std::str::from_utf8(rest) {
            let _ = mkstick::plan::kubernetes::check_manifest(Path::new("m.yaml"), text);
        }
    } else {
        let env = env();
        std::fs::write(env.loaded.resolve(env.fragment.get_ref()), rest)
            .expect("writing the Ignition fragment");
        let _ = mkstick::plan::load_fragment(&env.loaded, &env.fragment);
    }
}

pub fn seeds(repo: &Path) -> Result<Vec<Seed>> {
    let mut out = Vec::new();
    let mut yaml = crate::files_under(&repo.join("manifests"), &[".yaml", ".yml", ".json"]);
    yaml.extend(crate::files_under(
        &repo.join("tests/golden"),
        &[".yaml", ".yml"],
    ));
    for p in yaml {
        out.push((
            crate::seed_name("0-", repo, &p),
            with_selector(0, &std::fs::read(&p)?),
        ));
    }
    out.push((
        "0-app.yaml".into(),
        with_selector(0, crate::config::APP.as_bytes()),
    ));
    out.push((
        "0-app.json".into(),
        with_selector(
            0,
            br#"{"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "apps"}}"#,
        ),
    ));
    out.push((
        "0-two-docs.yaml".into(),
        with_selector(
            0,
            format!(
                "---\n{}---\n# empty\n---\n{}",
                crate::config::APP,
                crate::config::APP
            )
            .as_bytes(),
        ),
    ));
    let mut ign = crate::files_under(&repo.join("scripts/demo.d"), &[".ign"]);
    ign.extend(crate::files_under(
        &repo.join("tests/golden"),
        &[".ign", "ignition.json"],
    ));
    for p in ign {
        out.push((
            crate::seed_name("1-", repo, &p),
            with_selector(1, &std::fs::read(&p)?),
        ));
    }
    Ok(out)
}
