//! `tinylcm synth` end to end: class folders of PNGs, refusal to overwrite.

use std::path::Path;

#[path = "support/cli.rs"]
mod support;

/// `tinylcm synth ...`; `TINYLCM_TEST_RUNNER` (e.g. qemu for cross-built test
/// runs, set by `./scripts/test aarch64`) is put in front of the binary.
fn synth(out: &Path, extra: &[&str]) -> std::process::Output {
    support::tinylcm()
        .arg("synth")
        .arg("--out")
        .arg(out)
        .args(["--width", "48", "--height", "32"])
        .args(extra)
        .output()
        .expect("run tinylcm")
}

fn pngs(dir: &Path) -> usize {
    std::fs::read_dir(dir)
        .map(|rd| {
            rd.filter(|e| {
                e.as_ref()
                    .unwrap()
                    .path()
                    .extension()
                    .is_some_and(|x| x == "png")
            })
            .count()
        })
        .unwrap_or(0)
}

#[test]
fn synth_writes_class_folders_and_refuses_non_empty_dirs() {
    let dir = std::env::temp_dir().join(format!("tinylcm-synth-cli-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);

    let out = synth(&dir, &["--per-class", "2", "--seed", "5"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    for class in ["empty", "ball", "box", "bar"] {
        assert_eq!(pngs(&dir.join(class)), 2, "{class}");
    }
    assert!(!dir.join("star").exists());

    let again = synth(&dir, &["--per-class", "1"]);
    assert!(!again.status.success());
    assert!(String::from_utf8_lossy(&again.stderr).contains("--force"));

    let forced = synth(
        &dir,
        &[
            "--per-class",
            "3",
            "--classes",
            "star,ball",
            "--phase",
            "unseen",
            "--force",
        ],
    );
    assert!(
        forced.status.success(),
        "{}",
        String::from_utf8_lossy(&forced.stderr)
    );
    assert_eq!(pngs(&dir.join("star")), 3);
    assert_eq!(pngs(&dir.join("ball")), 3);

    let bad = synth(&dir.join("x"), &["--classes", "cat"]);
    assert!(!bad.status.success());
    assert!(String::from_utf8_lossy(&bad.stderr).contains("unknown class"));
    let bad = synth(&dir.join("y"), &["--phase", "night"]);
    assert!(!bad.status.success());
    std::fs::remove_dir_all(&dir).unwrap();
}
