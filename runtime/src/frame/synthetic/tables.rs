//! Pre-computed lookup data of the synthetic scene: table-top textures, a sensor
//! noise table and the lens vignette.
//!
//! Computing these once per renderer keeps the per-frame cost to a few integer
//! operations per pixel, and makes every frame reuse the same memory.

use super::rng::Rng;

/// Side of the square, tiling textures (a power of two, so wrapping is a mask).
pub(crate) const TEX: usize = 256;
/// Entries of the noise table that rows pick random windows from.
pub(crate) const NOISE_LEN: usize = 1 << 16;
/// Standard deviation of the noise table, in table units.
pub(crate) const NOISE_SIGMA: i32 = 16;

/// Number of table-top textures.
pub(crate) const TEXTURES: usize = 2;

/// Lookup data shared by all frames of one renderer.
pub(crate) struct Tables {
    /// `TEXTURES` textures of `TEX * TEX` values in `-127..=127` (wood grain, speckled stone).
    pub(crate) textures: [Vec<i8>; TEXTURES],
    /// Approximately Gaussian noise, sigma [`NOISE_SIGMA`], `NOISE_LEN + row_bytes` long.
    pub(crate) noise: Vec<i8>,
    /// Per-pixel brightness factor of the lens vignette (256 = 1.0).
    pub(crate) vignette: Vec<u16>,
}

impl Tables {
    /// Build the tables for a `width` x `height` frame from `seed`.
    pub(crate) fn new(width: usize, height: usize, seed: u64) -> Self {
        let mut rng = Rng::new(seed);
        let wood = texture(
            &mut rng,
            &[(128, 16, 170), (64, 4, 110), (16, 2, 60), (1, 1, 22)],
        );
        let stone = texture(
            &mut rng,
            &[(32, 32, 110), (8, 8, 90), (2, 2, 60), (1, 1, 55)],
        );
        let noise = (0..NOISE_LEN + width * 3)
            .map(|_| {
                // Sum of four uniforms in -32..=32: close to Gaussian, sigma ~ 37.52;
                // scaled to NOISE_SIGMA.
                let s: i32 = (0..4).map(|_| rng.below(65) as i32 - 32).sum();
                (s * NOISE_SIGMA * 1000 / 37_523).clamp(-127, 127) as i8
            })
            .collect();
        let mut vignette = Vec::with_capacity(width * height);
        let rmax2 = (width * width + height * height) as i64;
        for y in 0..height {
            let dy = (2 * y + 1) as i64 - height as i64;
            for x in 0..width {
                let dx = (2 * x + 1) as i64 - width as i64;
                vignette.push((256 - 72 * (dx * dx + dy * dy) / rmax2) as u16);
            }
        }
        Tables {
            textures: [wood, stone],
            noise,
            vignette,
        }
    }
}

/// A tiling texture: the sum of value-noise octaves `(cell_x, cell_y, amplitude)`,
/// normalised to `-127..=127`. Cells must divide [`TEX`].
fn texture(rng: &mut Rng, octaves: &[(usize, usize, i32)]) -> Vec<i8> {
    let mut acc = vec![0i32; TEX * TEX];
    for &(cx, cy, amp) in octaves {
        value_noise(rng, cx, cy, amp, &mut acc);
    }
    let peak = acc.iter().map(|v| v.abs()).max().unwrap_or(1).max(1);
    acc.iter().map(|&v| (v * 127 / peak) as i8).collect()
}

/// Add bilinearly interpolated lattice noise with `cell_x` x `cell_y` cells to `acc`.
fn value_noise(rng: &mut Rng, cell_x: usize, cell_y: usize, amp: i32, acc: &mut [i32]) {
    let gx = TEX / cell_x;
    let gy = TEX / cell_y;
    let lattice: Vec<i32> = (0..gx * gy).map(|_| rng.below(513) as i32 - 256).collect();
    let den = (cell_x * cell_y) as i32;
    for y in 0..TEX {
        let (ly, fy) = (y / cell_y, (y % cell_y) as i32);
        let ly1 = (ly + 1) % gy;
        for x in 0..TEX {
            let (lx, fx) = (x / cell_x, (x % cell_x) as i32);
            let lx1 = (lx + 1) % gx;
            let wx = cell_x as i32;
            let top = lattice[ly * gx + lx] * (wx - fx) + lattice[ly * gx + lx1] * fx;
            let bot = lattice[ly1 * gx + lx] * (wx - fx) + lattice[ly1 * gx + lx1] * fx;
            let v = (top * (cell_y as i32 - fy) + bot * fy) / den;
            acc[y * TEX + x] += v * amp / 256;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tables_have_expected_shapes_and_ranges() {
        let t = Tables::new(32, 24, 5);
        assert_eq!(t.vignette.len(), 32 * 24);
        assert_eq!(t.noise.len(), NOISE_LEN + 32 * 3);
        for tex in &t.textures {
            assert_eq!(tex.len(), TEX * TEX);
            assert!(tex.iter().any(|&v| v > 60) && tex.iter().any(|&v| v < -60));
        }
        assert!(t.vignette.iter().all(|&v| (180..=256).contains(&v)));
        let mean: f64 = t.noise.iter().map(|&v| f64::from(v)).sum::<f64>() / t.noise.len() as f64;
        let var: f64 = t
            .noise
            .iter()
            .map(|&v| (f64::from(v) - mean).powi(2))
            .sum::<f64>()
            / t.noise.len() as f64;
        assert!(mean.abs() < 0.5, "mean {mean}");
        assert!(
            (var.sqrt() - f64::from(NOISE_SIGMA)).abs() < 1.0,
            "sigma {}",
            var.sqrt()
        );
    }
}
