//! `tinylcm synth`: write labelled frames of the synthetic scene to disk.
//!
//! The output (`DIR/<class>/NNNNN.png`) is the training set of the default
//! model and the input format of every labelled-folder command.

use std::path::{Path, PathBuf};

use anyhow::Context;
use tinylcm::frame::synthetic::{self, Phase, SceneClass};

/// Options of `tinylcm synth`.
#[derive(clap::Args)]
pub struct Args {
    /// Output directory; one sub-folder per class is created in it.
    #[arg(long, value_name = "DIR")]
    out: PathBuf,
    /// Images per class.
    #[arg(long, default_value_t = 200, value_name = "N")]
    per_class: usize,
    /// Seed: the same seed writes the same images on every machine.
    #[arg(long, default_value_t = 1)]
    seed: u64,
    /// Image width in pixels.
    #[arg(long, default_value_t = 320)]
    width: u32,
    /// Image height in pixels.
    #[arg(long, default_value_t = 240)]
    height: u32,
    /// Scenario phase whose look to render: normal, lighting, unseen or noise.
    #[arg(long, default_value = "normal", value_parser = parse_phase)]
    phase: Phase,
    /// Comma-separated classes to write (empty, ball, box, bar, star, or the auxiliary
    /// training shapes no scenario shows: triangle, ring, cross, half-disc).
    /// Default: the four known classes, plus star for `--phase unseen`.
    #[arg(long, value_delimiter = ',', value_parser = parse_class)]
    classes: Option<Vec<SceneClass>>,
    /// Write even if the output directory is not empty (existing files with the
    /// same names are overwritten).
    #[arg(long)]
    force: bool,
}

fn parse_phase(s: &str) -> Result<Phase, String> {
    s.parse()
}

fn parse_class(s: &str) -> Result<SceneClass, String> {
    s.trim().parse()
}

/// Run the subcommand.
pub fn run(args: Args) -> anyhow::Result<()> {
    if !args.force && !is_empty_or_missing(&args.out)? {
        anyhow::bail!(
            "{} is not empty; choose an empty directory or pass --force to write into it",
            args.out.display()
        );
    }
    let started = std::time::Instant::now();
    let summary = match &args.classes {
        Some(classes) => synthetic::export_classes(
            &args.out,
            args.per_class,
            args.seed,
            args.width,
            args.height,
            args.phase,
            classes,
        ),
        None => synthetic::export_dataset(
            &args.out,
            args.per_class,
            args.seed,
            args.width,
            args.height,
            args.phase,
        ),
    }?;
    let names: Vec<&str> = summary.classes.iter().map(|c| c.as_str()).collect();
    tracing::info!(
        files = summary.files,
        classes = %names.join(","),
        phase = %args.phase,
        seconds = format_args!("{:.1}", started.elapsed().as_secs_f64()),
        "wrote synthetic dataset to {}",
        args.out.display()
    );
    Ok(())
}

/// `true` when `dir` does not exist or has no entries; an error if it is not a directory.
fn is_empty_or_missing(dir: &Path) -> anyhow::Result<bool> {
    match std::fs::read_dir(dir) {
        Ok(mut entries) => Ok(entries.next().is_none()),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(true),
        Err(e) => Err(e).with_context(|| format!("cannot read {}", dir.display())),
    }
}
