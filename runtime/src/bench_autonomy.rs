//! What everything after inference costs per frame at the size the product promises:
//! 256-d embeddings, 200 KNN samples, all seven drift detectors, state writes queued.
//!
//! The default model's embedding is only 32-d, so `tinylcm bench` also measures the
//! autonomy layer on a synthetic model of the promised size: a KNN of 200 random 256-d
//! samples in 4 classes and a stream of embeddings drawn around them, through the real
//! [`Autonomy`] with a real state store. Per-frame cost is each `step` timed alone.

use std::sync::Arc;
use std::time::Instant;

use crate::adapt::AdaptationConfig;
use crate::autonomy::{self, Autonomy, AutonomyConfig, AutonomyError, InitialState};
use crate::drift::DriftConfig;
use crate::frame::Frame;
use crate::knn::{InitialOptions, KnnConfig, build_initial};
use crate::pipeline::Prediction;
use crate::quarantine::QuarantineConfig;
use crate::state::{DurabilityPolicy, StateError, Store};
use crate::stats::{Percentiles, Stage, StageLatencies};

/// The size measured.
#[derive(Debug, Clone, Copy)]
pub struct AutonomyBench {
    /// Embedding length.
    pub dim: usize,
    /// KNN samples.
    pub samples: usize,
    /// Frames measured (after as many again to learn the detectors' references).
    pub frames: u64,
}

impl Default for AutonomyBench {
    fn default() -> Self {
        AutonomyBench {
            dim: 256,
            samples: 200,
            frames: 2000,
        }
    }
}

/// Failures of the measurement.
#[derive(Debug, thiserror::Error)]
pub enum AutonomyBenchError {
    /// The synthetic KNN could not be built.
    #[error("building the benchmark KNN: {0}")]
    Knn(#[from] crate::knn::KnnError),
    /// The layer could not start.
    #[error(transparent)]
    Autonomy(#[from] AutonomyError),
    /// The state store failed.
    #[error(transparent)]
    State(#[from] StateError),
}

/// A small deterministic generator (xorshift64*), so every run measures the same stream.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> f32 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        let bits = self.0.wrapping_mul(0x2545_f491_4f6c_dd1d) >> 40;
        bits as f32 / (1u64 << 24) as f32 * 2.0 - 1.0
    }
}

const CLASSES: usize = 4;

/// Measure `step` of the autonomy layer, keeping its state in `dir`.
pub fn measure(
    size: AutonomyBench,
    dir: &std::path::Path,
) -> Result<Percentiles, AutonomyBenchError> {
    let mut rng = Rng(0x9e37_79b9_7f4a_7c15);
    let centres: Vec<Vec<f32>> = (0..CLASSES)
        .map(|_| (0..size.dim).map(|_| rng.next()).collect())
        .collect();
    let around = |class: usize, rng: &mut Rng| -> Vec<f32> {
        centres[class]
            .iter()
            .map(|c| c + 0.2 * rng.next())
            .collect()
    };
    let samples: Vec<(String, Vec<f32>)> = (0..size.samples * 2)
        .map(|i| (format!("c{}", i % CLASSES), around(i % CLASSES, &mut rng)))
        .collect();
    let knn_config = KnnConfig {
        max_samples: size.samples,
        ..KnnConfig::default()
    };
    let initial = build_initial(
        samples,
        &InitialOptions {
            config: knn_config,
            per_class: size.samples / CLASSES,
            timestamp: 0,
        },
    )?;
    let state = InitialState {
        model_sha256: "bench".into(),
        normalize: true,
        transform: None,
        knn: initial.knn.to_state(),
        reference: initial.reference,
    };
    let store = Arc::new(Store::open(
        dir.join("state.redb"),
        DurabilityPolicy::default(),
    )?);
    let labels: Vec<String> = (0..CLASSES).map(|c| format!("c{c}")).collect();
    let quarantine = QuarantineConfig {
        thumbnail_dir: dir.join("quarantine"),
        ..QuarantineConfig::default()
    };
    let mut layer = Autonomy::start(autonomy::Setup {
        config: &AutonomyConfig::default(),
        knn: &knn_config,
        drift: &DriftConfig::default(),
        model_sha256: "bench",
        labels: &labels,
        embedding_dim: Some(size.dim),
        initial: Some(("bench".into(), state)),
        store: Some(Arc::clone(&store)),
        inbox: None,
        quarantine: &quarantine,
        adaptation: &AdaptationConfig::default(),
        snapshots: None,
    })?;
    let stream: Vec<(usize, Vec<f32>)> = (0..256)
        .map(|i| (i % CLASSES, around(i % CLASSES, &mut rng)))
        .collect();
    let mut scores = [0.05f32; CLASSES];
    let mut latencies = StageLatencies::default();
    let image = Frame::default();
    let warm_up = u64::from(DriftConfig::default().reference_samples) + 100;
    for frame in 1..=warm_up + size.frames {
        let (class, embedding) = &stream[frame as usize % stream.len()];
        scores.fill(0.05);
        scores[*class] = 0.85;
        let prediction = Prediction {
            class: *class,
            label: &labels[*class],
            confidence: 0.85,
            scores: &scores,
            embedding: Some(embedding),
        };
        let start = Instant::now();
        layer.step(frame, &prediction, &image);
        if frame > warm_up {
            latencies.record(Stage::Autonomy, start.elapsed());
        }
    }
    layer.finish()?;
    Ok(latencies.percentiles(Stage::Autonomy))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn measures_every_frame_after_the_warm_up() {
        let dir = tempfile::tempdir().unwrap();
        let size = AutonomyBench {
            dim: 16,
            samples: 20,
            frames: 50,
        };
        let p = measure(size, dir.path()).unwrap();
        assert_eq!(p.count, 50);
        assert!(p.max_us >= p.p50_us);
        // The layer kept its state where it was told to.
        assert!(dir.path().join("state.redb").is_file());
    }
}
