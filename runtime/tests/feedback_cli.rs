//! `tinylcm feedback` queues verdicts in the inbox beside the database, bad ones are
//! refused before anything is written, and the next run applies them and removes the file.

use std::path::Path;

#[path = "support/cli.rs"]
mod cli_support;

use cli_support::tinylcm;

fn run(cmd: &mut std::process::Command) -> (bool, String, String) {
    let out = cmd.output().expect("tinylcm runs");
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

fn inbox_files(state: &Path) -> Vec<std::path::PathBuf> {
    match std::fs::read_dir(state.join("inbox")) {
        Ok(entries) => entries
            .flatten()
            .map(|e| e.path())
            .filter(|p| p.extension().is_some_and(|e| e == "toml"))
            .collect(),
        Err(_) => Vec::new(),
    }
}

#[test]
fn feedback_is_queued_then_applied_by_the_next_run() {
    let dir = tempfile::tempdir().unwrap();
    let state = dir.path().join("state");
    let (ok, stdout, stderr) = run(tinylcm()
        .args(["feedback", "class", "ball", "--is", "sphere", "--state"])
        .arg(&state));
    assert!(ok, "{stdout}{stderr}");
    assert!(stdout.contains("queued"), "{stdout}");
    assert_eq!(inbox_files(&state).len(), 1);

    // A labelled folder through the runtime with that state: the verdict is applied.
    let images = dir.path().join("images");
    let (ok, _, stderr) = run(tinylcm()
        .args(["synth", "--per-class", "2", "--out"])
        .arg(&images));
    assert!(ok, "{stderr}");
    let (ok, stdout, stderr) = run(tinylcm()
        .arg("replay")
        .arg(&images)
        .arg("--state")
        .arg(&state));
    assert!(ok, "{stdout}{stderr}");
    assert!(
        inbox_files(&state).is_empty(),
        "the applied file is removed"
    );
    let (ok, stdout, stderr) = run(tinylcm().args(["status", "--state"]).arg(&state));
    assert!(ok, "{stdout}{stderr}");
    assert!(stdout.contains("class renamed"), "{stdout}");
    assert!(stdout.contains("ball → sphere"), "{stdout}");
}

#[test]
fn bad_feedback_is_refused_and_nothing_is_queued() {
    let dir = tempfile::tempdir().unwrap();
    let state = dir.path().join("state");
    // Neither a label nor --reject.
    let (ok, _, stderr) = run(tinylcm()
        .args(["feedback", "sample", "5", "--state"])
        .arg(&state));
    assert!(!ok);
    assert!(stderr.contains("--label"), "{stderr}");
    // Both verdicts at once.
    let (ok, _, _) = run(tinylcm()
        .args([
            "feedback",
            "incident",
            "1",
            "--false-alarm",
            "--confirm",
            "--state",
        ])
        .arg(&state));
    assert!(!ok);
    // A file that is not feedback.
    let bad = dir.path().join("bad.toml");
    std::fs::write(&bad, "[[sample]]\nid = 1\nlabel = \"a\"\nreject = true\n").unwrap();
    let (ok, _, stderr) = run(tinylcm()
        .args(["feedback", "file"])
        .arg(&bad)
        .arg("--state")
        .arg(&state));
    assert!(!ok);
    assert!(
        stderr.starts_with("error:") && stderr.contains("label or reject"),
        "{stderr}"
    );
    assert!(inbox_files(&state).is_empty());
}
