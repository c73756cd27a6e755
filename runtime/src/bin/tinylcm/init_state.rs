//! `tinylcm init-state` and `tinylcm fit-features`: build what the KNN starts from, from a
//! folder of labelled images run through the real model.

use std::path::{Path, PathBuf};

use anyhow::{Context, bail};
use tinylcm::assemble;
use tinylcm::autonomy::InitialState;
use tinylcm::config::Config;
use tinylcm::features::{FeaturePath, FeatureTransform, FitOptions, fit_from_folder};
use tinylcm::frame::Frame;
use tinylcm::knn::{InitialOptions, build_initial_from_folder};
use tinylcm::model::LoadedModel;
use tinylcm::pipeline::Pipeline;

/// Options of `tinylcm init-state`.
#[derive(clap::Args)]
pub struct InitArgs {
    /// Folder of JPEG/PNG images, one sub-folder per class (e.g. from `tinylcm synth`).
    dir: PathBuf,
    /// Configuration file: its `[model]`, `[engine]` and `[knn]` are used.
    #[arg(long, short)]
    config: Option<PathBuf>,
    /// Output file; default `<model stem>.state` beside a model file (required for the
    /// built-in model).
    #[arg(long)]
    out: Option<PathBuf>,
    /// A feature transform from `tinylcm fit-features`, applied after normalisation.
    #[arg(long, value_name = "FILE")]
    features: Option<PathBuf>,
    /// Do not L2-normalise embeddings.
    #[arg(long)]
    no_normalize: bool,
    /// Samples kept per class at most (default: `knn.max-samples` / classes).
    #[arg(long, value_name = "N")]
    per_class: Option<usize>,
}

/// Options of `tinylcm fit-features`.
#[derive(clap::Args)]
pub struct FitArgs {
    /// Folder of JPEG/PNG images (sub-folders included).
    dir: PathBuf,
    /// Configuration file: its `[model]` and `[engine]` are used.
    #[arg(long, short)]
    config: Option<PathBuf>,
    /// Output file (portable TLCMFEAT format).
    #[arg(long)]
    out: PathBuf,
    /// Principal components kept; 0 standardises only.
    #[arg(long, default_value_t = 0, value_name = "N")]
    components: usize,
    /// Do not L2-normalise embeddings before fitting (match `init-state --no-normalize`).
    #[arg(long)]
    no_normalize: bool,
}

/// The model, running, for embedding images.
struct Embedder {
    model: LoadedModel,
    pipeline: Pipeline,
}

impl Embedder {
    fn open(config: &Config) -> anyhow::Result<Self> {
        let model = assemble::load_model(&config.model).context("cannot load the model")?;
        let pipeline = assemble::pipeline(config, &model).context("cannot start the model")?;
        if pipeline.embedding_len().is_none() {
            bail!(
                "the model {} has no embedding output; name one in its manifest \
                 (`[outputs] embedding = ...`) or with `model.embedding`",
                model.origin
            );
        }
        Ok(Embedder { model, pipeline })
    }

    /// The raw embedding of one frame.
    fn embed(&mut self, frame: &Frame) -> anyhow::Result<Vec<f32>> {
        let p = self.pipeline.process(frame)?;
        Ok(p.embedding.unwrap_or_default().to_vec())
    }
}

/// Run `tinylcm init-state`.
pub fn init(args: InitArgs) -> anyhow::Result<()> {
    let config = Config::load(args.config.as_deref())?;
    let out = match (&args.out, &config.model.path) {
        (Some(out), _) => out.clone(),
        (None, Some(model)) => tinylcm::autonomy::initial::beside(model),
        (None, None) => {
            bail!("the built-in model needs --out FILE (the file is built in at compile time)")
        }
    };
    let mut embedder = Embedder::open(&config)?;
    let dim = embedder.pipeline.embedding_len().unwrap_or(0);
    let transform_bytes = match &args.features {
        Some(path) => {
            Some(std::fs::read(path).with_context(|| format!("cannot read {}", path.display()))?)
        }
        None => None,
    };
    let transform = transform_bytes
        .as_deref()
        .map(FeatureTransform::from_bytes)
        .transpose()
        .context("the feature transform is unusable")?;
    let path = FeaturePath::new(dim, !args.no_normalize, transform)
        .context("the feature transform does not fit the model's embedding")?;
    let classes = count_classes(&args.dir)?;
    let options = InitialOptions {
        config: config.knn,
        per_class: args
            .per_class
            .unwrap_or(config.knn.max_samples / classes.max(1)),
        timestamp: 0,
    };
    let mut features = vec![0.0; path.output_dim()];
    let initial = build_initial_from_folder(&args.dir, &options, |frame| {
        let e = embedder.embed(frame)?;
        path.apply(&e, &mut features)?;
        anyhow::Ok(features.clone())
    })
    .with_context(|| format!("cannot build the initial state from {}", args.dir.display()))?;
    let state = InitialState {
        model_sha256: embedder.model.manifest.sha256.to_ascii_lowercase(),
        normalize: !args.no_normalize,
        transform: transform_bytes,
        knn: initial.knn.to_state(),
        reference: initial.reference.clone(),
    };
    state.write(&out)?;
    let r = &initial.reference.overall;
    println!(
        "wrote {} for {}: {} samples of {} classes ({}-d features); mean k-NN distance {:.4} ± {:.4} (leave-one-out, {} images)",
        out.display(),
        embedder.model.origin,
        initial.knn.len(),
        initial.knn.labels().len(),
        path.output_dim(),
        r.mean,
        r.std,
        r.count
    );
    for c in &initial.reference.per_class {
        println!(
            "  {:<12} {:>4} stored, distance {:.4} ± {:.4}",
            c.label, c.stored, c.distance.mean, c.distance.std
        );
    }
    Ok(())
}

/// Run `tinylcm fit-features`.
pub fn fit(args: FitArgs) -> anyhow::Result<()> {
    let config = Config::load(args.config.as_deref())?;
    let mut embedder = Embedder::open(&config)?;
    let dim = embedder.pipeline.embedding_len().unwrap_or(0);
    let normalize = FeaturePath::new(dim, !args.no_normalize, None)?;
    let mut buffer = vec![0.0; dim];
    let options = FitOptions {
        standardize: true,
        components: (args.components > 0).then_some(args.components),
    };
    let fitted = fit_from_folder(&args.dir, &options, |frame| {
        let e = embedder.embed(frame)?;
        normalize.apply(&e, &mut buffer)?;
        anyhow::Ok(buffer.clone())
    })
    .with_context(|| format!("cannot fit features to {}", args.dir.display()))?;
    fitted.transform.write(&args.out)?;
    let explained: f32 = fitted.explained_variance_ratio.iter().sum();
    println!(
        "wrote {}: {} → {} dimensions from {} images{}",
        args.out.display(),
        fitted.transform.input_dim(),
        fitted.transform.output_dim(),
        fitted.samples,
        if fitted.explained_variance_ratio.is_empty() {
            String::new()
        } else {
            format!(", {:.1} % of the variance kept", explained * 100.0)
        }
    );
    println!(
        "use it with: tinylcm init-state DIR --features {}",
        args.out.display()
    );
    Ok(())
}

/// Number of class sub-folders in `dir`.
fn count_classes(dir: &Path) -> anyhow::Result<usize> {
    let entries =
        std::fs::read_dir(dir).with_context(|| format!("cannot read {}", dir.display()))?;
    let mut n = 0;
    for e in entries {
        if e?.file_type()?.is_dir() {
            n += 1;
        }
    }
    if n == 0 {
        bail!(
            "{} has no class sub-folders; put each class's images in DIR/<class>/",
            dir.display()
        );
    }
    Ok(n)
}
