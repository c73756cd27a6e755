//! `tinylcm report`: run the synthetic scenario and draw what happened
//! (confidence with phases and events, class mix, drift statistics) as PNG and SVG.

use std::path::PathBuf;

use anyhow::Context;
use tinylcm::assemble;
use tinylcm::pipeline::runner::{self, RunOptions};
use tinylcm::report::{self, Timeline};

use crate::demo::ScenarioArgs;

/// Options of `tinylcm report`.
#[derive(clap::Args)]
pub struct Args {
    #[command(flatten)]
    scenario: ScenarioArgs,
    /// Folder for `report.png` and `report.svg` (created if missing).
    #[arg(long, default_value = ".")]
    out: PathBuf,
}

/// Run the scenario unpaced and write the report.
pub fn run(args: Args) -> anyhow::Result<()> {
    let mut config = args.scenario.config(0.0)?;
    let state = args.scenario.state_dir()?;
    assemble::state_in(&mut config, &state.path);
    let model = assemble::load_model(&config.model).context("cannot load the model")?;
    let mut pipeline = assemble::pipeline(&config, &model).context("cannot start the model")?;
    let mut source = assemble::source(&config).context("cannot open the frame source")?;
    let store = assemble::store(&config).context("cannot open the state store")?;
    let mut autonomy = assemble::autonomy(&config, &model, &pipeline, Some(store))
        .context("cannot start the autonomy layer")?;
    let mut timeline = Timeline::new(pipeline.labels().to_vec());
    let options = RunOptions {
        capture_depth: config.run.capture_depth,
        ..RunOptions::default()
    };
    let summary = runner::run_with(
        source.as_mut(),
        &mut pipeline,
        Some(&mut autonomy),
        &options,
        &mut timeline,
    )
    .context("the pipeline stopped")?;
    autonomy.finish().context("cannot save the state")?;
    std::fs::create_dir_all(&args.out)
        .with_context(|| format!("cannot create {}", args.out.display()))?;
    let png = args.out.join("report.png");
    let svg = args.out.join("report.svg");
    report::render(&timeline, Some(&png), Some(&svg))?;
    println!(
        "{} frames; report written to {} and {}",
        summary.frames,
        png.display(),
        svg.display()
    );
    Ok(())
}
