//! Textbook distances between two vectors, written so the compiler
//! vectorises them (eight independent accumulators).
//!
//! The original proof of concept "inflated" every distance (an offset of
//! 0.01 and dimension-dependent factors) and expressed all thresholds in
//! those units; we use the plain definitions, so a stored copy of the query
//! is at distance 0.

/// How the distance between two feature vectors is measured.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Metric {
    /// `sqrt(Σ (aᵢ − bᵢ)²)`.
    #[default]
    Euclidean,
    /// `Σ |aᵢ − bᵢ|`.
    Manhattan,
    /// `1 − a·b / (‖a‖ ‖b‖)`, in `[0, 2]`. When either vector has norm 0 the
    /// cosine similarity is taken as 0, so the distance is 1.
    Cosine,
}

const LANES: usize = 8;

/// Sum over `i` of `f(a[i], b[i])`, accumulated in eight lanes.
#[inline(always)]
fn lanes(a: &[f32], b: &[f32], f: impl Fn(f32, f32) -> f32) -> f32 {
    let mut acc = [0.0f32; LANES];
    let (ca, cb) = (a.chunks_exact(LANES), b.chunks_exact(LANES));
    let (ra, rb) = (ca.remainder(), cb.remainder());
    for (x, y) in ca.zip(cb) {
        for l in 0..LANES {
            acc[l] += f(x[l], y[l]);
        }
    }
    let mut tail = 0.0;
    for (x, y) in ra.iter().zip(rb) {
        tail += f(*x, *y);
    }
    let pairs = [
        acc[0] + acc[4],
        acc[1] + acc[5],
        acc[2] + acc[6],
        acc[3] + acc[7],
    ];
    (pairs[0] + pairs[2]) + (pairs[1] + pairs[3]) + tail
}

/// Dot product `a · b` (over the shorter length).
pub fn dot(a: &[f32], b: &[f32]) -> f32 {
    lanes(a, b, |x, y| x * y)
}

/// Euclidean distance.
pub fn euclidean(a: &[f32], b: &[f32]) -> f32 {
    lanes(a, b, |x, y| (x - y) * (x - y)).sqrt()
}

/// Manhattan (L1) distance.
pub fn manhattan(a: &[f32], b: &[f32]) -> f32 {
    lanes(a, b, |x, y| (x - y).abs())
}

/// Cosine distance given the two norms (see [`Metric::Cosine`] for the
/// zero-norm rule). The similarity is clamped to `[−1, 1]` against rounding.
pub fn cosine_with_norms(a: &[f32], b: &[f32], norm_a: f32, norm_b: f32) -> f32 {
    if norm_a == 0.0 || norm_b == 0.0 {
        return 1.0;
    }
    let sim = (dot(a, b) / (norm_a * norm_b)).clamp(-1.0, 1.0);
    // + 0.0 turns a −0.0 into 0.0, so ordering with total_cmp is plain.
    (1.0 - sim) + 0.0
}

/// Cosine distance `1 − cos(a, b)`.
pub fn cosine(a: &[f32], b: &[f32]) -> f32 {
    cosine_with_norms(a, b, dot(a, a).sqrt(), dot(b, b).sqrt())
}

impl Metric {
    /// Distance between `a` and `b` under this metric.
    pub fn distance(self, a: &[f32], b: &[f32]) -> f32 {
        match self {
            Metric::Euclidean => euclidean(a, b),
            Metric::Manhattan => manhattan(a, b),
            Metric::Cosine => cosine(a, b),
        }
    }
}
