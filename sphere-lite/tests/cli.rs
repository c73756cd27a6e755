//! The `sphere-lite` binary end to end: secrets created on the command line work against
//! `serve`, which logs its RSS at startup and stops cleanly on SIGTERM.

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::time::Duration;

const BIN: &str = env!("CARGO_BIN_EXE_sphere-lite");

fn run(args: &[&str]) -> std::process::Output {
    Command::new(BIN)
        .args(args)
        .env_remove("SPHERE_LITE_DATA")
        .env_remove("SPHERE_LITE_CONFIG")
        .output()
        .unwrap()
}

fn created(args: &[&str], prefix: &str) -> String {
    let out = run(args);
    assert!(out.status.success(), "{out:?}");
    let secret = String::from_utf8(out.stdout).unwrap().trim().to_owned();
    assert!(secret.starts_with(prefix), "{secret}");
    secret
}

fn json(response: ureq::Response) -> serde_json::Value {
    serde_json::from_str(&response.into_string().unwrap()).unwrap()
}

#[test]
fn secrets_from_the_cli_work_against_serve_which_stops_on_sigterm() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().to_str().unwrap();
    let key = created(
        &["enrollment-key", "create", "--data", data, "--uses", "1"],
        "sle_",
    );
    let operator = created(
        &["token", "create", "--operator", "ops", "--data", data],
        "slo_",
    );

    let mut child = Command::new(BIN)
        .args(["serve", "--data", data, "--listen", "127.0.0.1:0"])
        .env("SPHERE_LITE_LOG", "info")
        .stderr(Stdio::piped())
        .stdout(Stdio::null())
        .spawn()
        .unwrap();
    let mut stderr = BufReader::new(child.stderr.take().unwrap());
    let mut startup = String::new();
    while !startup.contains("serving") {
        startup.clear();
        assert!(stderr.read_line(&mut startup).unwrap() > 0, "server exited");
    }
    assert!(startup.contains("vm_rss_kib="), "{startup}");
    let addr = startup
        .split_whitespace()
        .find_map(|w| w.strip_prefix("listen="))
        .unwrap()
        .to_owned();

    let enrolled: serde_json::Value = ureq::post(&format!("http://{addr}/api/v2/devices/enroll"))
        .send_string(&format!(r#"{{"enrollment_key":"{key}"}}"#))
        .map(json)
        .unwrap();
    assert!(enrolled["token"].as_str().unwrap().starts_with("sld_"));
    let list: serde_json::Value = ureq::get(&format!("http://{addr}/api/v2/devices"))
        .set("Authorization", &format!("Bearer {operator}"))
        .call()
        .map(json)
        .unwrap();
    assert_eq!(list["devices"][0]["device_id"], enrolled["device_id"]);

    let killed = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(killed.success());
    let mut rest = String::new();
    for _ in 0..200 {
        if let Some(status) = child.try_wait().unwrap() {
            std::io::Read::read_to_string(&mut stderr, &mut rest).unwrap();
            assert!(status.success(), "{status}: {rest}");
            assert!(rest.contains("stopped"), "{rest}");
            return;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    let _ = child.kill();
    panic!("no clean exit within 10 s of SIGTERM");
}

#[test]
fn bad_settings_fail_with_a_fix() {
    let out = run(&["serve", "--data", "/nonexistent-dir-x", "--listen", "nope"]);
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("listen") && err.contains("Fix"), "{err}");

    let dir = tempfile::tempdir().unwrap();
    let out = run(&[
        "enrollment-key",
        "create",
        "--data",
        dir.path().to_str().unwrap(),
        "--uses",
        "0",
    ]);
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("--uses"));
}
