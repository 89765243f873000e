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
        let mut diff = String::new();
        for (i, (a, b)) in w.lines().zip(g.lines()).enumerate() {
            if a != b {
                diff.push_str(&format!("line {}:\n- {a}\n+ {b}\n", i + 1));
            }
        }
        if w.lines().count() != g.lines().count() {
            diff.push_str(&format!(
                "{} lines expected, {} rendered\n",
                w.lines().count(),
                g.lines().count()
            ));
        }
        panic!(
            "{} differs from what mkstick renders (MKSTICK_BLESS=1 to accept):\n{diff}",
            path.display()
        );
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
    for u in &config.systemd.units {
        check_golden(
            &case,
            &format!("units/{}", u.name),
            u.contents.as_deref().unwrap_or("").as_bytes(),
        );
    }
}

#[test]
fn golden_minimal() {
    run_case("minimal");
}

#[test]
fn golden_full() {
    run_case("full");
}
