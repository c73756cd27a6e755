//! The service and the A/B model store: a release handed over while the service runs is
//! installed off the inference thread, the service reloads onto it without a restart, runs it
//! on trial and commits it once its health window passed.

#[path = "modelstore_support/mod.rs"]
mod support;

use std::path::{Path, PathBuf};
use std::sync::Arc;

use tinylcm::modelstore::{ActiveState, Layout, hand_over_install};
use tinylcm::pipeline::runner::{EndReason, FrameReport, Observer};
use tinylcm::service::{Control, GenerationEnd, Service, ServiceObserver, ServiceOptions};
use tinylcm_protocol::release::SigningKey;

struct Script {
    control: Arc<Control>,
    hand_over: Option<(Layout, PathBuf, PathBuf)>,
    frames: u64,
    engine_lines: Vec<String>,
}

impl Observer for Script {
    fn on_frame(&mut self, _report: &FrameReport<'_>) {
        self.frames += 1;
        if self.frames == 20 {
            if let Some((layout, model, release)) = self.hand_over.take() {
                hand_over_install(&layout, &model, &release, 64 << 20, true).unwrap();
            }
        }
        if self.engine_lines.len() == 1 && self.frames == 80 {
            self.control.request_stop();
        }
    }
}

impl ServiceObserver for Script {
    fn on_generation_end(&mut self, end: GenerationEnd<'_>) {
        self.engine_lines.push(end.engine_line.to_string());
        self.frames = 0;
    }
}

fn write_release(dir: &Path, key: &SigningKey) -> (PathBuf, PathBuf) {
    let int8 = support::model("default_int8");
    let int8 = support::with_goldens(&int8, &int8, 2);
    let signed = support::release(&int8, key, "shapes", "2");
    let (model, release) = (dir.join("shapes.tflite"), dir.join("shapes.release.json"));
    std::fs::write(&model, &int8.bytes).unwrap();
    std::fs::write(&release, serde_json::to_vec(&signed).unwrap()).unwrap();
    (model, release)
}

#[test]
fn a_release_handed_over_while_running_is_loaded_by_a_reload_and_committed_after_its_window() {
    let dir = tempfile::tempdir().unwrap();
    let key = SigningKey::generate().unwrap();
    let trusted = support::trust(dir.path(), &key);
    let (model, release) = write_release(dir.path(), &key);
    let config_file = dir.path().join("tinylcm.toml");
    std::fs::write(
        &config_file,
        format!(
            "[source]\nkind = \"synthetic\"\n[source.synthetic]\nloop = true\n\
             [models]\ntrusted-keys = \"{}\"\nhealth-frames = 30\n",
            trusted.display()
        ),
    )
    .unwrap();
    let state = dir.path().join("state");
    let control = Control::new();
    let mut service = Service::new(
        ServiceOptions {
            config_file: Some(config_file),
            state_dir: Some(state.clone()),
            max_frames: None,
            ..ServiceOptions::default()
        },
        Arc::clone(&control),
    );
    let mut script = Script {
        control,
        hand_over: Some((Layout::new(state.join("models")), model, release)),
        frames: 0,
        engine_lines: Vec::new(),
    };
    let summary = service.run(&mut script).unwrap();
    assert_eq!(summary.end, EndReason::Stopped);
    assert_eq!(summary.generations, 2, "{:?}", script.engine_lines);
    assert!(
        script.engine_lines[0].contains("builtin"),
        "{}",
        script.engine_lines[0]
    );
    assert!(
        script.engine_lines[1].contains("release shapes 2 (on trial, slot "),
        "{}",
        script.engine_lines[1]
    );
    drop(service);

    // The last status report names the release (added on the status writer thread).
    let report = tinylcm::status::StatusReport::read(&state.join("status.json")).unwrap();
    let release = report.release.expect("the status names the release");
    assert_eq!(
        (release.name.as_str(), release.state),
        ("shapes", ActiveState::Committed)
    );

    // The health window (30 frames) passed within the 80 frames of the second generation.
    let (_store, models) = support::open(&state, &support::config(Some(trusted)));
    let active = models.active().unwrap().unwrap();
    assert_eq!(
        (active.name.as_str(), active.version.as_str(), active.state),
        ("shapes", "2", ActiveState::Committed)
    );
}
