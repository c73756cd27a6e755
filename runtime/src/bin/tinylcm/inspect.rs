//! `tinylcm inspect-model`: what a model file contains and what would run it.

use std::path::PathBuf;

use anyhow::Context;
use comfy_table::{Table, presets::UTF8_FULL_CONDENSED};
use tinylcm::config::Config;
use tinylcm::engine::{self, ModelSource, TensorInfo};
use tinylcm::model::{self, LoadedModel};

/// Options of `tinylcm inspect-model`.
#[derive(clap::Args)]
pub struct Args {
    /// The `.tflite` file.
    file: PathBuf,
    /// Configuration file for the `[engine]` settings (backend, libraries).
    #[arg(long, short)]
    config: Option<PathBuf>,
}

/// Run the subcommand.
pub fn run(args: Args) -> anyhow::Result<()> {
    let config = Config::load(args.config.as_deref())?;
    let bytes = model::read_bounded(&args.file, model::MAX_MODEL_BYTES)?;
    println!("model:  {} ({} bytes)", args.file.display(), bytes.len());
    println!("sha256: {}", model::sha256_hex(&bytes));
    let manifest_path = args.file.with_extension("toml");
    if manifest_path.is_file() {
        match LoadedModel::from_file(&args.file, Some(&manifest_path)) {
            Ok(m) if m.manifest.embedding_only() => println!(
                "manifest: {} {} v{}, embedding-only (no scores: the KNN classifies, with the \
                 classes of its initial state), embedding {}",
                manifest_path.display(),
                m.manifest.name,
                m.manifest.version,
                m.manifest
                    .outputs
                    .embedding
                    .as_ref()
                    .map_or("the single output".to_string(), |e| format!("{e:?}")),
            ),
            Ok(m) => println!(
                "manifest: {} {} v{}, labels {:?}, scores {:?}, embedding {:?}",
                manifest_path.display(),
                m.manifest.name,
                m.manifest.version,
                m.manifest.labels,
                m.manifest.outputs.scores,
                m.manifest.outputs.embedding,
            ),
            Err(e) => println!("manifest: {e}"),
        }
    } else {
        println!(
            "manifest: none ({} not found; needed to run it)",
            manifest_path.display()
        );
    }

    println!("\nbackends:");
    for status in engine::probe(&config.engine) {
        let accelerators: Vec<String> = status.accelerators.iter().map(|a| a.to_string()).collect();
        println!(
            "  {} {}: {}{}",
            status.backend,
            status.version.as_deref().unwrap_or("-"),
            if status.usable {
                "usable"
            } else {
                "not usable"
            },
            if accelerators.is_empty() {
                String::new()
            } else {
                format!(", accelerators: {}", accelerators.join(", "))
            },
        );
        println!(
            "      library: {} (found via {:?})",
            status.library.display(),
            status.source
        );
        println!("      {}", status.detail);
    }

    let info = engine::inspect(&config.engine, &ModelSource::File(args.file.clone()))
        .with_context(|| format!("cannot load {}", args.file.display()))?;
    println!(
        "\nwould run on: {} with {} (engine.backend = {:?})",
        info.backend, info.accelerator, config.engine.backend
    );
    println!("{}", tensor_table("input", &info.inputs));
    println!("{}", tensor_table("output", &info.outputs));
    Ok(())
}

fn tensor_table(kind: &str, tensors: &[TensorInfo]) -> Table {
    let mut table = Table::new();
    table.load_preset(UTF8_FULL_CONDENSED).set_header(vec![
        kind,
        "name",
        "dtype",
        "shape",
        "quantisation",
    ]);
    for (i, t) in tensors.iter().enumerate() {
        let quant = t
            .quantization
            .map(|q| format!("scale {} zero point {}", q.scale, q.zero_point))
            .unwrap_or_else(|| "-".into());
        table.add_row(vec![
            i.to_string(),
            t.name.clone(),
            t.dtype.to_string(),
            format!("{:?}", t.shape),
            quant,
        ]);
    }
    table
}
