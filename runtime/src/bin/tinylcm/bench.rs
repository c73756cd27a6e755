//! `tinylcm bench`: per-stage latency percentiles, bare-invoke rate vs
//! full-pipeline rate measured in the same run, and peak RSS.

use std::path::PathBuf;

use anyhow::Context;
use tinylcm::assemble;
use tinylcm::bench::{self, BenchOptions};
use tinylcm::bench_autonomy::{self, AutonomyBench};
use tinylcm::config::Config;

use crate::summary;

/// Options of `tinylcm bench`.
#[derive(clap::Args)]
pub struct Args {
    /// Configuration file (model, engine, source); without it, the built-in
    /// model on the synthetic camera, unpaced.
    #[arg(long, short)]
    config: Option<PathBuf>,
    /// Measured invokes, and measured pipeline frames.
    #[arg(long, default_value_t = 1000)]
    iterations: u64,
    /// Unmeasured warm-up invokes and frames.
    #[arg(long, default_value_t = 50)]
    warmup: u64,
}

/// Run the benchmark.
pub fn run(args: Args) -> anyhow::Result<()> {
    let mut config = Config::load(args.config.as_deref())?;
    // Pacing would measure the clock, not the pipeline; looping keeps the source
    // going for as many frames as asked.
    config.source.synthetic.fps = 0.0;
    config.source.synthetic.looping = true;
    config.source.directory.fps = 0.0;
    config.source.directory.looping = true;
    let model = assemble::load_model(&config.model).context("cannot load the model")?;
    let mut pipeline = assemble::pipeline(&config, &model).context("cannot start the model")?;
    let mut source = assemble::source(&config).context("cannot open the frame source")?;
    let line = tinylcm::assemble::describe(&pipeline, &model.origin, &source.describe());
    let options = BenchOptions {
        warmup: args.warmup,
        iterations: args.iterations,
    };
    // The autonomy layer runs as in the field, with its state in a scratch folder.
    let scratch = tempfile::Builder::new()
        .prefix("tinylcm-bench-")
        .tempdir()
        .context("cannot create a scratch folder")?;
    assemble::state_in(&mut config, &scratch.path().join("model"));
    let mut autonomy = if config.autonomy.enabled {
        let store = assemble::store(&config).context("cannot open the state store")?;
        Some(
            assemble::autonomy(&config, &model, &pipeline, Some(store))
                .context("cannot start the autonomy layer")?,
        )
    } else {
        None
    };
    let report = bench::run(source.as_mut(), &mut pipeline, autonomy.as_mut(), options)
        .context("benchmark failed")?;
    drop(autonomy);
    let size = AutonomyBench::default();
    let promised = bench_autonomy::measure(size, &scratch.path().join("promised"))
        .context("autonomy benchmark failed")?;
    let parts = bench_autonomy::breakdown(size).context("autonomy benchmark failed")?;
    summary::print_bench(&report, &line);
    summary::print_autonomy_bench(&size, &promised, &parts, &report.bare_invoke);
    Ok(())
}
