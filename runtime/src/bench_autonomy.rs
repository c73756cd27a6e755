//! What everything after inference costs per frame at the size of the original TinyLCM's
//! own model: a 1280-d MobileNetV2 embedding, L2-normalised, standardised and projected to
//! 256 PCA components, 200 KNN samples, all seven drift detectors, state writes queued.
//!
//! A model of that size may not be at hand (the default model's embedding is only 64-d), so
//! `tinylcm bench` also measures the autonomy layer on synthetic data of that size: 400
//! embeddings drawn around 4 class centres, a transform *fitted* to them (as
//! `tinylcm fit-features` does), a KNN of 200 of them, and a stream of embeddings drawn
//! around the same centres, through the real [`Autonomy`] with a real state store.
//! Per-frame cost is each `step` timed alone; [`breakdown`] times the three per-frame kernels
//! (features, KNN search, detectors) apart, on the same data.

use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::adapt::AdaptationConfig;
use crate::autonomy::{self, Autonomy, AutonomyConfig, AutonomyError, InitialError, InitialState};
use crate::drift::{DetectorSet, DriftConfig, DriftError, Observation};
use crate::features::{FeatureError, FeaturePath, FitOptions, fit};
use crate::frame::Frame;
use crate::knn::{self, InitialOptions, KnnConfig, build_initial};
use crate::pipeline::Prediction;
use crate::quarantine::QuarantineConfig;
use crate::state::{DurabilityPolicy, StateError, Store};
use crate::stats::{Percentiles, Stage, StageLatencies, thread_cpu_time};

/// The size measured.
#[derive(Debug, Clone, Copy)]
pub struct AutonomyBench {
    /// Length of the model's embedding.
    pub embedding_dim: usize,
    /// Length of the feature vector the KNN and the detectors see: the PCA components kept.
    /// Equal to `embedding_dim`: no transform (L2 normalisation only).
    pub feature_dim: usize,
    /// KNN samples.
    pub samples: usize,
    /// Frames measured (after enough frames for the detectors to learn their references).
    pub frames: u64,
}

impl Default for AutonomyBench {
    /// The original TinyLCM's object model: 1280-d embedding → 256 PCA components, 200 KNN
    /// samples.
    fn default() -> Self {
        AutonomyBench {
            embedding_dim: 1280,
            feature_dim: 256,
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
    /// The feature transform could not be fitted.
    #[error("fitting the benchmark feature transform: {0}")]
    Features(#[from] FeatureError),
    /// The drift detectors could not be built.
    #[error("building the benchmark detectors: {0}")]
    Drift(#[from] DriftError),
    /// The synthetic initial state is unusable.
    #[error(transparent)]
    Initial(#[from] InitialError),
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

/// The synthetic model: its initial state and a stream of (class, embedding) to replay.
struct Synthetic {
    state: InitialState,
    knn_config: KnnConfig,
    stream: Vec<(usize, Vec<f32>)>,
}

impl Synthetic {
    fn new(size: AutonomyBench) -> Result<Self, AutonomyBenchError> {
        let mut rng = Rng(0x9e37_79b9_7f4a_7c15);
        // Non-negative like a ReLU backbone's pooled features.
        let centres: Vec<Vec<f32>> = (0..CLASSES)
            .map(|_| (0..size.embedding_dim).map(|_| rng.next().abs()).collect())
            .collect();
        let around = |class: usize, rng: &mut Rng| -> Vec<f32> {
            centres[class]
                .iter()
                .map(|c| (c + 0.2 * rng.next()).max(0.0))
                .collect()
        };
        let embeddings: Vec<(String, Vec<f32>)> = (0..size.samples * 2)
            .map(|i| (format!("c{}", i % CLASSES), around(i % CLASSES, &mut rng)))
            .collect();
        let transform = if size.feature_dim < size.embedding_dim {
            // Fitted on the L2-normalised embeddings, as `tinylcm fit-features` does.
            let normalise = FeaturePath::new(size.embedding_dim, true, None)?;
            let mut data = vec![0.0; embeddings.len() * size.embedding_dim];
            for ((_, e), row) in embeddings
                .iter()
                .zip(data.chunks_exact_mut(size.embedding_dim))
            {
                normalise.apply(e, row)?;
            }
            let options = FitOptions {
                standardize: true,
                components: Some(size.feature_dim),
            };
            Some(fit(&data, size.embedding_dim, &options)?.transform)
        } else {
            None
        };
        let path = FeaturePath::new(size.embedding_dim, true, transform.clone())?;
        let mut features = Vec::with_capacity(embeddings.len());
        for (label, e) in embeddings {
            let mut out = vec![0.0; path.output_dim()];
            path.apply(&e, &mut out)?;
            features.push((label, out));
        }
        let knn_config = KnnConfig {
            max_samples: size.samples,
            ..KnnConfig::default()
        };
        let initial = build_initial(
            features,
            &InitialOptions {
                config: knn_config,
                per_class: size.samples / CLASSES,
                timestamp: 0,
            },
        )?;
        let stream = (0..256)
            .map(|i| (i % CLASSES, around(i % CLASSES, &mut rng)))
            .collect();
        Ok(Synthetic {
            state: InitialState {
                model_sha256: "bench".into(),
                normalize: true,
                transform: transform.map(|t| t.to_bytes()),
                knn: initial.knn.to_state(),
                reference: initial.reference,
            },
            knn_config,
            stream,
        })
    }

    /// Frames replayed before measuring: the detectors' warm-up and reference, and some.
    fn warm_up() -> u64 {
        u64::from(DriftConfig::default().reference_samples) + 100
    }
}

/// Class scores shaped like a confident model's.
fn scores_for(class: usize, scores: &mut [f32; CLASSES]) {
    scores.fill(0.05);
    scores[class] = 0.85;
}

/// What [`measure`] found.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Measured {
    /// Wall time of each `step`: percentiles of whole microseconds, exact mean.
    pub wall: Percentiles,
    /// Mean CPU time of the thread per frame, µs (`None` where the OS does not report
    /// thread CPU time). On a busy machine this is the figure to compare: the wall time also
    /// counts waiting for a core.
    pub cpu_us: Option<f64>,
}

/// Measure `step` of the autonomy layer, keeping its state in `dir`.
pub fn measure(size: AutonomyBench, dir: &std::path::Path) -> Result<Measured, AutonomyBenchError> {
    let synthetic = Synthetic::new(size)?;
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
        knn: &synthetic.knn_config,
        drift: &DriftConfig::default(),
        model_sha256: "bench",
        labels: &labels,
        embedding_dim: Some(size.embedding_dim),
        initial: Some(("bench".into(), synthetic.state)),
        store: Some(Arc::clone(&store)),
        inbox: None,
        quarantine: &quarantine,
        adaptation: &AdaptationConfig::default(),
        snapshots: None,
    })?;
    let stream = &synthetic.stream;
    let mut scores = [0.05f32; CLASSES];
    let mut latencies = StageLatencies::default();
    let image = Frame::default();
    let warm_up = Synthetic::warm_up();
    let mut cpu_start = None;
    for frame in 1..=warm_up + size.frames {
        if frame == warm_up + 1 {
            cpu_start = thread_cpu_time();
        }
        let (class, embedding) = &stream[frame as usize % stream.len()];
        scores_for(*class, &mut scores);
        let prediction = Prediction {
            class: *class,
            label: &labels[*class],
            confidence: 0.85,
            scores: &scores,
            embedding: Some(embedding),
        };
        let start = Instant::now();
        layer.step(frame, &prediction, &image);
        let elapsed = start.elapsed();
        if frame > warm_up {
            latencies.record(Stage::Autonomy, elapsed);
        }
    }
    let cpu = cpu_start
        .zip(thread_cpu_time())
        .map(|(a, b)| b.saturating_sub(a));
    layer.finish()?;
    Ok(Measured {
        wall: latencies.percentiles(Stage::Autonomy),
        cpu_us: cpu.map(|t| mean_us(t, size.frames)),
    })
}

/// Mean CPU time of the three per-frame kernels after inference, on the data of [`measure`].
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Breakdown {
    /// L2 normalisation, standardisation and PCA projection, µs.
    pub features_us: f64,
    /// KNN search (distances, k best, vote), µs.
    pub knn_us: f64,
    /// Every default drift detector, µs.
    pub detectors_us: f64,
}

/// Time the kernels of the per-frame path apart: features, KNN search, detectors.
///
/// Each kernel runs over all measured frames in one batch, timed by the thread's CPU time
/// (wall time where the OS does not report it); the detectors first see enough frames to
/// learn their references, so what is timed is monitoring, as in the field. Kernels running
/// back to back keep their data in cache better than the interleaved `step` does, so the
/// parts may add up to a little less than [`measure`]'s figure.
pub fn breakdown(size: AutonomyBench) -> Result<Breakdown, AutonomyBenchError> {
    let synthetic = Synthetic::new(size)?;
    let path = synthetic.state.feature_path(size.embedding_dim)?;
    let knn = synthetic.state.knn()?;
    let mut detectors = DetectorSet::from_config(&DriftConfig::default())?;
    let stream = &synthetic.stream;
    let frames = Synthetic::warm_up() + size.frames;
    let dim = path.output_dim();
    let embedding = |frame: u64| &stream[frame as usize % stream.len()];

    let mut features = vec![0.0; dim * frames as usize];
    let clock = Clock::start();
    for (frame, out) in (1..=frames).zip(features.chunks_exact_mut(dim)) {
        path.apply(&embedding(frame).1, out)?;
    }
    let t_features = clock.elapsed();

    let mut out = knn::Prediction::with_capacity(knn.config().k);
    let mut distances = vec![0.0; frames as usize];
    let clock = Clock::start();
    for (f, d) in features.chunks_exact(dim).zip(&mut distances) {
        knn.predict(f, &mut out)?;
        *d = out.mean_distance;
    }
    let t_knn = clock.elapsed();

    let observe = |frame: u64| Observation {
        sample_id: frame,
        predicted: embedding(frame).0,
        num_classes: CLASSES,
        confidence: 0.85,
        knn_distance: Some(distances[frame as usize - 1]),
        embedding: Some(&features[(frame as usize - 1) * dim..frame as usize * dim]),
    };
    for frame in 1..=Synthetic::warm_up() {
        detectors.update(&observe(frame));
    }
    let clock = Clock::start();
    for frame in Synthetic::warm_up() + 1..=frames {
        detectors.update(&observe(frame));
    }
    let t_detectors = clock.elapsed();
    Ok(Breakdown {
        features_us: mean_us(t_features, frames),
        knn_us: mean_us(t_knn, frames),
        detectors_us: mean_us(t_detectors, size.frames),
    })
}

/// The thread's CPU clock where there is one, else the wall clock.
enum Clock {
    Cpu(Duration),
    Wall(Instant),
}

impl Clock {
    fn start() -> Self {
        thread_cpu_time().map_or_else(|| Clock::Wall(Instant::now()), Clock::Cpu)
    }

    fn elapsed(&self) -> Duration {
        match self {
            Clock::Cpu(start) => {
                thread_cpu_time().map_or(Duration::ZERO, |t| t.saturating_sub(*start))
            }
            Clock::Wall(start) => start.elapsed(),
        }
    }
}

fn mean_us(total: Duration, count: u64) -> f64 {
    if count == 0 {
        0.0
    } else {
        total.as_secs_f64() * 1e6 / count as f64
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const SMALL: AutonomyBench = AutonomyBench {
        embedding_dim: 24,
        feature_dim: 8,
        samples: 20,
        frames: 50,
    };

    #[test]
    fn measures_every_frame_after_the_warm_up() {
        let dir = tempfile::tempdir().unwrap();
        let m = measure(SMALL, dir.path()).unwrap();
        let p = m.wall;
        assert_eq!(p.count, 50);
        assert!(p.max_us >= p.p50_us);
        assert!(p.mean_us > 0.0);
        assert!(m.cpu_us.is_some_and(|c| c > 0.0), "{m:?}");
        // The layer kept its state where it was told to.
        assert!(dir.path().join("state.redb").is_file());
    }

    #[test]
    fn the_synthetic_model_projects_and_its_stream_is_recognised() {
        let synthetic = Synthetic::new(SMALL).unwrap();
        let path = synthetic.state.feature_path(SMALL.embedding_dim).unwrap();
        assert_eq!(path.output_dim(), SMALL.feature_dim);
        assert!(path.transform().is_some());
        let knn = synthetic.state.knn().unwrap();
        assert_eq!(knn.len(), SMALL.samples);
        // The stream is drawn around the KNN's classes, so the KNN knows it: a benchmark of
        // a stream in permanent drift would measure something else than the field.
        let mut features = vec![0.0; SMALL.feature_dim];
        let mut out = knn::Prediction::with_capacity(knn.config().k);
        let mut right = 0;
        for (class, e) in &synthetic.stream {
            path.apply(e, &mut features).unwrap();
            knn.predict(&features, &mut out).unwrap();
            let label = out.label.and_then(|l| knn.labels().name(l)).unwrap();
            right += usize::from(label == format!("c{class}"));
        }
        assert!(right * 10 >= synthetic.stream.len() * 9, "{right}");
    }

    #[test]
    fn breakdown_times_each_kernel() {
        let b = breakdown(SMALL).unwrap();
        assert!(b.features_us > 0.0 && b.knn_us > 0.0 && b.detectors_us > 0.0);
    }
}
