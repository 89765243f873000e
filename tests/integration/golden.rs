//! Golden files: what mkstick renders for the configs under tests/golden/.
//! Run with MKSTICK_BLESS=1 to regenerate them after an intended change;
//! the diff then shows in review.

use crate::common::*;
use std::path::Path;

pub fn check_golden(case: &Path, name: &str, got: &[u8]) {
    let path = case.join(name);
    if std::env::var("MKSTICK_BLESS").as_deref() == Ok("1") {
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(&path, got).unwrap();
        return;
    }
    let want = std::fs::read(&path).unwrap_or_else(|e| {
        panic!(
            "{}: {e}; run with MKSTICK_BLESS=1 to create it",
            path.display()
        )
    });
    if want != got {
        let (w, g) = (String::from_utf8_lossy(&want), String::from_utf8_lossy(got));
        let diff = similar::TextDiff::from_lines(&*w, &*g)
            .unified_diff()
            .context_radius(3)
            .header(&format!("{} (golden)", path.display()), "rendered")
            .to_string();
        panic!(
            "{} differs from what mkstick renders (MKSTICK_BLESS=1 to accept):\n{diff}",
            path.display()
        );
    }
}

/// Every unit and every file of a rendered Ignition config, decoded, as
/// readable golden files: `units/NAME` and `files/PATH`. A golden file
/// there that is no longer rendered fails too (blessing removes it).
pub fn check_rendered(case: &Path, config: &mkstick::ignition::Config) {
    let mut rendered = std::collections::BTreeSet::new();
    for u in &config.systemd.units {
        let name = format!("units/{}", u.name);
        check_golden(case, &name, u.contents.as_deref().unwrap_or("").as_bytes());
        rendered.insert(case.join(name));
    }
    for f in &config.storage.files {
        let Some(source) = f.contents.as_ref().map(|c| &c.source) else {
            continue;
        };
        let bytes = mkstick::ignition::decode_data_url(source)
            .unwrap_or_else(|| panic!("{}: mkstick writes data URLs", f.path));
        let name = format!("files{}", f.path);
        check_golden(case, &name, &bytes);
        rendered.insert(case.join(name));
    }
    let bless = std::env::var("MKSTICK_BLESS").as_deref() == Ok("1");
    let mut stale = Vec::new();
    let mut dirs = vec![case.join("units"), case.join("files")];
    while let Some(dir) = dirs.pop() {
        let Ok(entries) = std::fs::read_dir(&dir) else {
            continue;
        };
        for e in entries {
            let p = e.unwrap().path();
            if p.is_dir() {
                dirs.push(p);
            } else if !rendered.contains(&p) {
                stale.push(p);
            }
        }
    }
    if bless {
        for p in &stale {
            std::fs::remove_file(p).unwrap();
        }
    } else if !stale.is_empty() {
        panic!("golden files no longer rendered (MKSTICK_BLESS=1 removes them): {stale:?}");
    }
}

fn run_case(name: &str) {
    let case = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/golden")
        .join(name);
    let s = Scratch::new("");
    for e in std::fs::read_dir(case.join("input")).unwrap() {
        let e = e.unwrap();
        std::fs::copy(e.path(), s.path(&e.file_name().to_string_lossy())).unwrap();
    }
    let plan = ok(s.run(&["plan"]));
    ok(s.run(&["build", "-q"]));
    let img = s.path("mkstick.img");
    // The real parsers first, then the exact bytes.
    let ignition = embedded_ignition(&img);
    ignition_validate(&ignition);
    let grub = esp_file(&img, "EFI/BOOT/grub.cfg");
    grub_script_check(&grub);
    check_golden(&case, "plan.txt", plan.as_bytes());
    check_golden(&case, "ignition.json", &ignition);
    check_golden(&case, "grub.cfg", &grub);
    let config: mkstick::ignition::Config = serde_json::from_slice(&ignition).unwrap();
    check_rendered(&case, &config);
}

#[test]
fn golden_minimal() {
    run_case("minimal");
}

#[test]
fn golden_full() {
    run_case("full");
}
