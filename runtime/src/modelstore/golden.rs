//! Golden checks: a candidate model must compute, through the real engine, the outputs its
//! signed manifest promises for inputs generated from seeds, before it may be activated.
//!
//! The input of a golden is an RGB8 frame of the manifest's input size whose byte *k* is the
//! top byte of the *k*-th SplitMix64 draw seeded with the golden's seed (the generator of the
//! synthetic camera), prepared with the manifest's own `[input]` spec. A frame of the exact
//! input size passes the resize stage unchanged, so the tensor depends only on the seed and
//! the spec, and goldens stay a seed plus a few numbers for any model.

use std::fmt::Write as _;
use std::sync::Arc;
use std::time::Duration;

use super::error::ModelStoreError;
use crate::engine::{self, EngineConfig, ModelSource, ResolveTensor};
use crate::frame::Frame;
use crate::frame::synthetic::rng::Rng;
use crate::model::{Golden, ModelManifest};
use crate::pipeline::{OutputSelection, Pipeline};

/// Seed of the input a manifest without goldens is smoke-tested on.
const SMOKE_SEED: u64 = 0;

/// The golden input frame for `seed` at `width` x `height`.
pub fn golden_frame(seed: u64, width: u32, height: u32) -> Frame {
    let mut rng = Rng::new(seed);
    let len = width as usize * height as usize * 3;
    let data = (0..len).map(|_| (rng.next_u64() >> 56) as u8).collect();
    Frame {
        width,
        height,
        data,
        sequence: 0,
        timestamp: Duration::ZERO,
        truth: None,
    }
}

/// Outputs of one golden input.
#[derive(Debug, Clone, PartialEq)]
pub struct GoldenOutputs {
    /// Class scores, dequantised.
    pub scores: Vec<f32>,
    /// Embedding, dequantised, if the model has one.
    pub embedding: Option<Vec<f32>>,
}

/// Runs `model` (with `manifest`, the manifest's own preprocessing and output roles) through
/// the engine `engine` selects, on the golden input of each seed.
pub fn run_seeds(
    engine_config: &EngineConfig,
    model: Arc<[u8]>,
    manifest: &ModelManifest,
    seeds: &[u64],
) -> Result<Vec<GoldenOutputs>, String> {
    let mut pipeline = open_pipeline(engine_config, model, manifest)?;
    run_on(&mut pipeline, manifest, seeds)
}

fn open_pipeline(
    engine_config: &EngineConfig,
    model: Arc<[u8]>,
    manifest: &ModelManifest,
) -> Result<Pipeline, String> {
    let engine = engine::open(engine_config, &ModelSource::Bytes(model))
        .map_err(|e| format!("the model does not load: {e}"))?;
    Pipeline::new(engine, manifest, None, &OutputSelection::default())
        .map_err(|e| format!("the model does not fit its manifest: {e}"))
}

/// The largest quantisation step of the scores and embedding outputs (0 for float outputs).
fn quantisation_step(pipeline: &Pipeline, manifest: &ModelManifest) -> f32 {
    let outputs = pipeline.engine().outputs();
    [
        manifest.outputs.scores.as_ref(),
        manifest.outputs.embedding.as_ref(),
    ]
    .into_iter()
    .flatten()
    .filter_map(|r| r.resolve(outputs).ok())
    .filter_map(|i| outputs[i].quantization)
    .map(|q| q.scale.abs())
    .fold(0.0, f32::max)
}

fn run_on(
    pipeline: &mut Pipeline,
    manifest: &ModelManifest,
    seeds: &[u64],
) -> Result<Vec<GoldenOutputs>, String> {
    let (width, height) = (manifest.input.width, manifest.input.height);
    seeds
        .iter()
        .map(|&seed| {
            let frame = golden_frame(seed, width, height);
            let p = pipeline
                .process(&frame)
                .map_err(|e| format!("inference on golden seed {seed} failed: {e}"))?;
            let out = GoldenOutputs {
                scores: p.scores.to_vec(),
                embedding: p.embedding.map(<[f32]>::to_vec),
            };
            let finite = out
                .scores
                .iter()
                .chain(out.embedding.iter().flatten())
                .all(|v| v.is_finite());
            if !finite {
                return Err(format!("non-finite outputs on golden seed {seed}"));
            }
            Ok(out)
        })
        .collect()
}

/// Tolerance of computed goldens for float outputs.
pub const FLOAT_TOLERANCE: f32 = 1e-3;

/// `n` goldens for `model` (seeds 1..=n), for `tinylcm model sign --golden`.
///
/// `tolerance` `None` picks one that holds across backends: [`FLOAT_TOLERANCE`] for float
/// outputs, two quantisation steps of the coarsest output for quantised ones (kernels of
/// different libraries round int8 arithmetic differently by a step).
pub fn compute(
    engine_config: &EngineConfig,
    model: Arc<[u8]>,
    manifest: &ModelManifest,
    n: usize,
    tolerance: Option<f32>,
) -> Result<Vec<Golden>, String> {
    let seeds: Vec<u64> = (1..=n as u64).collect();
    let mut pipeline = open_pipeline(engine_config, model, manifest)?;
    let tolerance = tolerance
        .unwrap_or_else(|| FLOAT_TOLERANCE.max(2.0 * quantisation_step(&pipeline, manifest)));
    let outputs = run_on(&mut pipeline, manifest, &seeds)?;
    Ok(seeds
        .into_iter()
        .zip(outputs)
        .map(|(seed, o)| Golden {
            seed,
            tolerance,
            scores: o.scores,
            embedding: o.embedding,
        })
        .collect())
}

/// `goldens` as `[[golden]]` TOML tables, to append to a manifest's text (floats in their
/// shortest exact form, so the values read back bit for bit).
pub fn to_toml(goldens: &[Golden]) -> String {
    let list = |values: &[f32]| {
        let items: Vec<String> = values.iter().map(|v| format!("{v:?}")).collect();
        format!("[{}]", items.join(", "))
    };
    let mut text = String::new();
    for g in goldens {
        let _ = write!(
            text,
            "\n[[golden]]\nseed = {}\ntolerance = {:?}\nscores = {}\n",
            g.seed,
            g.tolerance,
            list(&g.scores)
        );
        if let Some(e) = &g.embedding {
            let _ = writeln!(text, "embedding = {}", list(e));
        }
    }
    text
}

/// What a passed smoke test measured.
#[derive(Debug, Clone, PartialEq)]
pub struct SmokeReport {
    /// Golden entries checked (0: the manifest has none, only loading and finite outputs
    /// were checked).
    pub goldens: usize,
}

/// The smoke test: the model loads through the engine, and every golden of `manifest`
/// matches within its tolerance; without goldens, one generated input must give finite
/// outputs. `what` names the release in errors.
pub fn smoke_test(
    engine_config: &EngineConfig,
    model: Arc<[u8]>,
    manifest: &ModelManifest,
    what: &str,
) -> Result<SmokeReport, ModelStoreError> {
    let seeds: Vec<u64> = if manifest.golden.is_empty() {
        vec![SMOKE_SEED]
    } else {
        manifest.golden.iter().map(|g| g.seed).collect()
    };
    let outputs = run_seeds(engine_config, model, manifest, &seeds).map_err(|reason| {
        ModelStoreError::SmokeTest {
            what: what.to_string(),
            reason,
        }
    })?;
    for (k, (golden, got)) in manifest.golden.iter().zip(&outputs).enumerate() {
        let mismatch =
            |output, index: usize, expected: f32, got: f32| ModelStoreError::GoldenMismatch {
                what: what.to_string(),
                golden: k,
                seed: golden.seed,
                output,
                index,
                expected,
                got,
                tolerance: golden.tolerance,
            };
        compare(&golden.scores, &got.scores, golden.tolerance)
            .map_err(|(i, e, g)| mismatch("scores", i, e, g))?;
        match (&golden.embedding, &got.embedding) {
            (Some(expected), Some(got)) => compare(expected, got, golden.tolerance)
                .map_err(|(i, e, g)| mismatch("embedding", i, e, g))?,
            (Some(_), None) => {
                return Err(ModelStoreError::SmokeTest {
                    what: what.to_string(),
                    reason: format!("golden {k} lists an embedding, the model has none"),
                });
            }
            _ => {}
        }
    }
    Ok(SmokeReport {
        goldens: manifest.golden.len(),
    })
}

/// The first value out of tolerance as (index, expected, got); a length difference reports
/// the first missing index with NaN for the missing side.
fn compare(expected: &[f32], got: &[f32], tolerance: f32) -> Result<(), (usize, f32, f32)> {
    if expected.len() != got.len() {
        let i = expected.len().min(got.len());
        return Err((
            i,
            expected.get(i).copied().unwrap_or(f32::NAN),
            got.get(i).copied().unwrap_or(f32::NAN),
        ));
    }
    for (i, (&e, &g)) in expected.iter().zip(got).enumerate() {
        let ok = (g - e).abs() <= tolerance * e.abs().max(1.0);
        if !ok {
            return Err((i, e, g));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn golden_frames_are_deterministic_and_seed_dependent() {
        let a = golden_frame(7, 8, 4);
        assert_eq!(a.data.len(), 8 * 4 * 3);
        assert_eq!(a.data, golden_frame(7, 8, 4).data);
        assert_ne!(a.data, golden_frame(8, 8, 4).data);
    }

    #[test]
    fn comparison_is_relative_above_one_and_absolute_below() {
        assert!(compare(&[0.5, 100.0], &[0.5009, 100.09], 1e-3).is_ok());
        assert_eq!(
            compare(&[0.5, 100.0], &[0.5, 100.2], 1e-3),
            Err((1, 100.0, 100.2))
        );
        assert!(compare(&[0.5], &[0.502], 1e-3).is_err());
        assert!(compare(&[0.5], &[f32::NAN], 1e-3).is_err());
        assert!(compare(&[0.5], &[0.5, 1.0], 1e-3).is_err());
    }

    #[test]
    fn toml_goldens_read_back_exactly() {
        let g = Golden {
            seed: 3,
            tolerance: 1e-3,
            scores: vec![0.1, 0.2, 1.0 / 3.0, 0.4],
            embedding: Some(vec![-1.5e-7, 12.25]),
        };
        let text = format!(
            "{}{}",
            include_str!("../../models/default/default_f32.toml"),
            to_toml(std::slice::from_ref(&g))
        );
        let m = ModelManifest::parse(&text, std::path::Path::new("t")).unwrap();
        assert_eq!(m.golden, vec![g.clone()]);
        // Entries that cannot be checked are refused when the manifest is read.
        for bad in [
            Golden {
                scores: vec![0.5; 3],
                ..g.clone()
            },
            Golden {
                tolerance: -1.0,
                ..g.clone()
            },
            Golden {
                scores: vec![f32::INFINITY; 4],
                ..g.clone()
            },
        ] {
            let text = format!(
                "{}{}",
                include_str!("../../models/default/default_f32.toml"),
                to_toml(std::slice::from_ref(&bad)).replace("inf", "1e99")
            );
            assert!(
                ModelManifest::parse(&text, std::path::Path::new("t")).is_err(),
                "{bad:?}"
            );
        }
    }
}
