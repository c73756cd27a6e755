//! The `sphere-lite` binary end to end: secrets created on the command line work against
//! `serve`, which logs its RSS at startup and stops cleanly on SIGTERM; with MLflow + S3 the
//! secrets can be created while the server runs, and nothing is written to `--data`.

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

#[test]
fn mlflow_without_s3_is_refused_and_creates_no_local_state() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("never-created");
    let out = Command::new(BIN)
        .args(["serve", "--data", data.to_str().unwrap()])
        .args(["--mlflow-url", "http://127.0.0.1:9"])
        .env_remove("SPHERE_LITE_CONFIG")
        .env_remove("SPHERE_LITE_S3_ENDPOINT")
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("mlflow_url") && err.contains("S3") && err.contains("Fix"),
        "{err}"
    );
    assert!(!data.exists());
}

/// `--mlflow-url` and `--s3-*` arguments for the test stack under a fresh namespace, or `None`.
fn stateless_args(test: &str) -> Option<Vec<String>> {
    let (Ok(url), Ok(s3)) = (
        std::env::var("SPHERE_TEST_MLFLOW_URL"),
        std::env::var("SPHERE_TEST_S3_ENDPOINT"),
    ) else {
        tinylcm_protocol::test_support::missing(
            &format!(
                "{test}: MLflow and S3 (SPHERE_TEST_MLFLOW_URL or SPHERE_TEST_S3_ENDPOINT is not \
                 set)"
            ),
            "run ./scripts/test sphere, which starts MLflow and SeaweedFS and sets them",
        );
        return None;
    };
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_nanos();
    let space = format!("t/cli-{nanos:x}");
    Some(
        [
            "--mlflow-url",
            &url,
            "--mlflow-namespace",
            &space,
            "--s3-endpoint",
            &s3,
            "--s3-bucket",
            "sphere-cli-test",
            "--s3-prefix",
            &space,
        ]
        .iter()
        .map(|s| s.to_string())
        .collect(),
    )
}

#[test]
fn with_mlflow_secrets_can_be_created_while_the_server_runs() {
    let Some(stateless) = stateless_args("cli-mlflow") else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("unused");
    let with = |args: &[&str]| -> Vec<String> {
        let mut all: Vec<String> = args.iter().map(|s| s.to_string()).collect();
        all.extend(["--data".to_string(), data.to_str().unwrap().to_string()]);
        all.extend(stateless.iter().cloned());
        all
    };
    let s3_env = |c: &mut Command| {
        c.env(
            "SPHERE_LITE_S3_ACCESS_KEY",
            std::env::var("SPHERE_TEST_S3_ACCESS_KEY").unwrap(),
        )
        .env(
            "SPHERE_LITE_S3_SECRET_KEY",
            std::env::var("SPHERE_TEST_S3_SECRET_KEY").unwrap(),
        )
        .env_remove("SPHERE_LITE_CONFIG");
    };
    let mut serve = Command::new(BIN);
    serve
        .args(with(&["serve", "--listen", "127.0.0.1:0"]))
        .env("SPHERE_LITE_LOG", "info")
        .stderr(Stdio::piped())
        .stdout(Stdio::null());
    s3_env(&mut serve);
    let mut child = serve.spawn().unwrap();
    let mut stderr = BufReader::new(child.stderr.take().unwrap());
    let mut startup = String::new();
    while !startup.contains("serving") {
        startup.clear();
        assert!(stderr.read_line(&mut startup).unwrap() > 0, "server exited");
    }
    assert!(startup.contains("tracking: MLflow"), "{startup}");
    let addr = startup
        .split_whitespace()
        .find_map(|w| w.strip_prefix("listen="))
        .unwrap()
        .to_owned();

    // Created while the server runs: no stopped server needed, the server sees them at once.
    let create = |args: &[&str], prefix: &str| -> String {
        let mut c = Command::new(BIN);
        c.args(with(args));
        s3_env(&mut c);
        let out = c.output().unwrap();
        assert!(out.status.success(), "{out:?}");
        let secret = String::from_utf8(out.stdout).unwrap().trim().to_owned();
        assert!(secret.starts_with(prefix), "{secret}");
        secret
    };
    let key = create(&["enrollment-key", "create", "--uses", "1"], "sle_");
    let operator = create(&["token", "create", "--operator", "ops"], "slo_");
    let enrolled: serde_json::Value = ureq::post(&format!("http://{addr}/api/v2/devices/enroll"))
        .send_string(&format!(r#"{{"enrollment_key":"{key}"}}"#))
        .map(json)
        .unwrap();
    assert!(enrolled["token"].as_str().unwrap().starts_with("sld_"));
    let mut list = serde_json::Value::Null;
    // A new operator token reaches a running server within its cache refresh (1 s).
    for _ in 0..30 {
        match ureq::get(&format!("http://{addr}/api/v2/devices"))
            .set("Authorization", &format!("Bearer {operator}"))
            .call()
        {
            Ok(r) => {
                list = json(r);
                break;
            }
            Err(_) => std::thread::sleep(Duration::from_millis(100)),
        }
    }
    assert_eq!(list["devices"][0]["device_id"], enrolled["device_id"]);
    let _ = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status();
    let status = child.wait().unwrap();
    assert!(status.success(), "{status}");
    assert!(!data.exists(), "stateless mode wrote to --data");
}
