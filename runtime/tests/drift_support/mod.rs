//! Seeded synthetic streams for the drift tests: a normal and a drifted condition per
//! detector, and helpers that feed them.
#![allow(dead_code)]

use tinylcm::drift::{Detector, DetectorKind, DriftConfig, DriftEvent, Observation};

/// SplitMix64: small, deterministic on every platform.
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Self {
        Rng(seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) ^ 0xD1B5_4A32_D192_ED03)
    }
    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }
    pub fn uniform(&mut self) -> f64 {
        (self.next_u64() >> 11) as f64 / (1u64 << 53) as f64
    }
    pub fn normal(&mut self) -> f64 {
        let u1 = self.uniform().max(1e-300);
        let u2 = self.uniform();
        (-2.0 * u1.ln()).sqrt() * (std::f64::consts::TAU * u2).cos()
    }
    pub fn categorical(&mut self, p: &[f64]) -> usize {
        let mut u = self.uniform();
        for (i, q) in p.iter().enumerate() {
            if u < *q {
                return i;
            }
            u -= q;
        }
        p.len() - 1
    }
}

pub const DIM: usize = 16;
pub const CLASSES: usize = 4;

/// One generated sample (owns its embedding).
pub struct Sample {
    pub id: u64,
    pub class: usize,
    pub confidence: f32,
    pub distance: f32,
    pub embedding: [f32; DIM],
}

impl Sample {
    pub fn obs(&self) -> Observation<'_> {
        Observation {
            sample_id: self.id,
            predicted: self.class,
            num_classes: CLASSES,
            confidence: self.confidence,
            knn_distance: Some(self.distance),
            embedding: Some(&self.embedding),
        }
    }
}

/// The stream every test uses: in the normal condition confidence ~ N(0.8, 0.05),
/// distance ~ N(10, 1), classes uniform, embedding ~ N(0, I). The drifted condition changes
/// exactly the input of `kind` by the size the tests assert on: −2 σ confidence, +2 σ
/// distance, class mix (0.85, 0.05, 0.05, 0.05), +1 σ in half the embedding dimensions.
pub struct Stream {
    pub kind: DetectorKind,
    rng: Rng,
    next_id: u64,
}

impl Stream {
    pub fn new(kind: DetectorKind, seed: u64) -> Self {
        Stream {
            kind,
            rng: Rng::new(seed),
            next_id: 0,
        }
    }

    pub fn sample(&mut self, drifted: bool) -> Sample {
        let r = &mut self.rng;
        let d = drifted;
        let k = self.kind;
        let conf_mean = if d && confidence_kind(k) { 0.7 } else { 0.8 };
        let confidence = (conf_mean + 0.05 * r.normal()).clamp(0.0, 1.0) as f32;
        let dist_mean = if d && k == DetectorKind::PageHinkleyDistance {
            12.0
        } else {
            10.0
        };
        let distance = (dist_mean + r.normal()).max(0.0) as f32;
        let class = if d && k == DetectorKind::Distribution {
            r.categorical(&[0.85, 0.05, 0.05, 0.05])
        } else {
            r.categorical(&[0.25; 4])
        };
        let mut embedding = [0f32; DIM];
        for (i, e) in embedding.iter_mut().enumerate() {
            let shift = if d && k == DetectorKind::Embedding && i % 2 == 0 {
                1.0
            } else {
                0.0
            };
            *e = (shift + r.normal()) as f32;
        }
        let id = self.next_id;
        self.next_id += 1;
        Sample {
            id,
            class,
            confidence,
            distance,
            embedding,
        }
    }
}

pub fn confidence_kind(k: DetectorKind) -> bool {
    matches!(
        k,
        DetectorKind::EwmaConfidence
            | DetectorKind::PageHinkleyConfidence
            | DetectorKind::Cusum
            | DetectorKind::Adwin
    )
}

/// The default detector of `kind`.
pub fn detector(kind: DetectorKind) -> Box<dyn Detector> {
    detector_with(kind, &DriftConfig::default())
}

/// The detector of `kind` built from `config` (the others disabled).
pub fn detector_with(kind: DetectorKind, config: &DriftConfig) -> Box<dyn Detector> {
    let mut c = config.clone();
    c.page_hinkley_distance.enabled = kind == DetectorKind::PageHinkleyDistance;
    c.ewma_confidence.enabled = kind == DetectorKind::EwmaConfidence;
    c.page_hinkley_confidence.enabled = kind == DetectorKind::PageHinkleyConfidence;
    c.cusum.enabled = kind == DetectorKind::Cusum;
    c.distribution.enabled = kind == DetectorKind::Distribution;
    c.embedding.enabled = kind == DetectorKind::Embedding;
    c.adwin.enabled = kind == DetectorKind::Adwin;
    let set = tinylcm::drift::DetectorSet::from_config(&c).unwrap();
    let mut v = set.into_detectors();
    assert_eq!(v.len(), 1);
    v.pop().unwrap()
}

/// Feed `n` samples of one condition; the events.
pub fn feed(
    det: &mut dyn Detector,
    stream: &mut Stream,
    drifted: bool,
    n: usize,
) -> Vec<DriftEvent> {
    let mut events = Vec::new();
    for _ in 0..n {
        let s = stream.sample(drifted);
        if let Some(e) = det.update(&s.obs()) {
            events.push(e);
        }
    }
    events
}

/// Reference samples at the defaults.
pub fn reference_len() -> usize {
    DriftConfig::default().reference_samples as usize
}

/// Length of "long" stationary streams: shorter under emulation (qemu-aarch64 is ~20× slower).
pub fn stationary_len() -> usize {
    if cfg!(target_arch = "x86_64") {
        20_000
    } else {
        2_000
    }
}

/// A skewed, non-Gaussian stationary sample (what real confidences and distances look
/// like): confidence `1 − |N(0, 0.1)|` (mass near 1, a long lower tail), log-normal distance
/// and embedding components, an uneven class mix.
pub fn skewed_sample(rng: &mut Rng, id: u64) -> Sample {
    let confidence = (1.0 - (0.1 * rng.normal()).abs()).clamp(0.0, 1.0) as f32;
    let distance = (2.0 + 0.5 * rng.normal()).exp() as f32;
    let mut embedding = [0f32; DIM];
    for e in &mut embedding {
        *e = (0.5 * rng.normal()).exp() as f32;
    }
    Sample {
        id,
        class: rng.categorical(&[0.7, 0.2, 0.05, 0.05]),
        confidence,
        distance,
        embedding,
    }
}
