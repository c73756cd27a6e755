//! Running a configuration through the real model and the autonomy layer, with its state
//! in the configuration's state folder, for the autonomy tests.

use tinylcm::assemble;
use tinylcm::autonomy::Autonomy;
use tinylcm::config::Config;
use tinylcm::pipeline::runner::{self, Observer, RunOptions, RunSummary};

/// Run `config` until its source ends, continuing from the state in its folder; `before`
/// may change the layer before the first frame. The state is saved at the end.
pub fn run(
    config: &Config,
    before: impl FnOnce(&mut Autonomy),
    observer: &mut dyn Observer,
) -> (RunSummary, Autonomy) {
    let model = assemble::load_model(&config.model).unwrap();
    let mut pipeline = assemble::pipeline(config, &model)
        .unwrap_or_else(|e| panic!("{e} (run ./scripts/fetch-libs first)"));
    let mut source = assemble::source(config).unwrap();
    let store = assemble::store(config).unwrap();
    let mut autonomy = assemble::autonomy(config, &model, &pipeline, Some(store)).unwrap();
    before(&mut autonomy);
    let summary = runner::run_with(
        source.as_mut(),
        &mut pipeline,
        Some(&mut autonomy),
        &RunOptions {
            capture_depth: 2,
            ..RunOptions::default()
        },
        observer,
    )
    .unwrap();
    autonomy.finish().unwrap();
    (summary, autonomy)
}
