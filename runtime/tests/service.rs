//! The field service's generations: a remote configuration applied while frames run takes
//! effect in the next generation without a restart, the frame limit counts over all
//! generations, a stop ends the service, and a stored fragment that no longer fits the local
//! runtime never keeps the device from running.

use std::path::Path;
use std::sync::Arc;

use tinylcm::pipeline::runner::{EndReason, FrameReport, Observer};
use tinylcm::service::{
    Control, GenerationEnd, RemoteConfig, Service, ServiceObserver, ServiceOptions,
};

const LOCAL: &str = "[source]\nkind = \"synthetic\"\n[source.synthetic]\nloop = true\n";

/// Records each generation and asks for things at given frames.
struct Script {
    control: Arc<Control>,
    remote: RemoteConfig,
    config_file: std::path::PathBuf,
    frames_in_generation: u64,
    generations: Vec<(u64, bool)>,
    reload_at: Option<u64>,
    stop_in_second_at: Option<u64>,
}

impl Observer for Script {
    fn on_frame(&mut self, _report: &FrameReport<'_>) {
        self.frames_in_generation += 1;
        let first = self.generations.is_empty();
        if first && self.reload_at == Some(self.frames_in_generation) {
            self.remote
                .apply(
                    Some(&self.config_file),
                    "0123456789abcdef",
                    "[autonomy]\nenabled = false\n",
                    1,
                )
                .unwrap();
            self.control
                .request_reload("remote configuration 0123456789abcdef");
        }
        if !first && self.stop_in_second_at == Some(self.frames_in_generation) {
            self.control.request_stop();
        }
    }
}

impl ServiceObserver for Script {
    fn on_generation_end(&mut self, end: GenerationEnd<'_>) {
        assert_eq!(end.summary.frames, self.frames_in_generation);
        self.generations
            .push((self.frames_in_generation, end.autonomy.is_some()));
        self.frames_in_generation = 0;
    }
}

fn setup(dir: &Path, max_frames: Option<u64>) -> (Service, Script) {
    let config_file = dir.join("tinylcm.toml");
    std::fs::write(&config_file, LOCAL).unwrap();
    let state = dir.join("state");
    let control = Control::new();
    let service = Service::new(
        ServiceOptions {
            config_file: Some(config_file.clone()),
            state_dir: Some(state.clone()),
            max_frames,
            ..ServiceOptions::default()
        },
        Arc::clone(&control),
    );
    let script = Script {
        control,
        remote: RemoteConfig::beside(&state.join("state.redb")),
        config_file,
        frames_in_generation: 0,
        generations: Vec::new(),
        reload_at: None,
        stop_in_second_at: None,
    };
    (service, script)
}

#[test]
fn a_remote_configuration_takes_effect_in_the_next_generation_and_a_stop_ends_the_service() {
    let dir = tempfile::tempdir().unwrap();
    let (mut service, mut script) = setup(dir.path(), None);
    script.reload_at = Some(40);
    script.stop_in_second_at = Some(25);
    let summary = service.run(&mut script).unwrap();
    assert_eq!(summary.end, EndReason::Stopped);
    assert_eq!(summary.generations, 2);
    assert_eq!(script.generations, vec![(40, true), (25, false)]);
    assert_eq!(summary.frames, 65);
    // A restart runs on the stored fragment too.
    assert!(!service.config().unwrap().autonomy.enabled);
}

#[test]
fn the_frame_limit_counts_over_all_generations() {
    let dir = tempfile::tempdir().unwrap();
    let (mut service, mut script) = setup(dir.path(), Some(90));
    script.reload_at = Some(30);
    let summary = service.run(&mut script).unwrap();
    assert_eq!(summary.end, EndReason::FrameLimit);
    assert_eq!(script.generations, vec![(30, true), (60, false)]);
}

#[test]
fn a_stored_fragment_that_no_longer_fits_is_ignored_and_the_device_runs() {
    let dir = tempfile::tempdir().unwrap();
    let (mut service, mut script) = setup(dir.path(), Some(20));
    // Stored by an older runtime whose `[knn]` had a key this one no longer knows.
    std::fs::create_dir_all(dir.path().join("state")).unwrap();
    std::fs::write(
        script.remote.path(),
        r#"{"format": 1, "revision": "aaaa", "toml": "[knn]\nk = 9\nweighting = \"old\"\n", "applied_unix_ms": 1}"#,
    )
    .unwrap();
    assert!(script.remote.read().unwrap().is_some());
    let config = service.config().unwrap();
    assert_eq!(config.knn.k, tinylcm::knn::KnnConfig::default().k);
    let summary = service.run(&mut script).unwrap();
    assert_eq!((summary.end, summary.frames), (EndReason::FrameLimit, 20));
}
