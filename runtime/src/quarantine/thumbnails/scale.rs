//! Shrinking a frame to thumbnail size on the caller's thread.
//!
//! Why here and not on the writer thread: handing the writer a copy of the full frame would
//! cost a 0.9 MB allocation and copy per admitted sample at 640×480 (and up to
//! `queue × frame` bytes of memory while jobs wait), against at most `size² × 3` bytes
//! (12 KiB at the default 64 px) for a thumbnail-sized copy.
//!
//! Why not `fast_image_resize`: a convolution reads every source pixel; a thumbnail only
//! needs an average of each output pixel's source block. We average up to
//! [`SAMPLES`]×[`SAMPLES`] evenly spread pixels per block, so the cost depends on the
//! thumbnail's size, not the frame's: about 12 k pixel reads for 64×48 whatever the camera.
//! This is sub-sampling, so a pattern finer than the sample spacing (e.g. one-pixel stripes)
//! can alias; a thumbnail is for a human to recognise what the camera saw, which survives
//! that, and reading every pixel would cost about as much as the whole per-frame budget on a
//! Pi Zero 2 W.
//!
//! Measured (`cargo bench -p tinylcm --bench quarantine`, development machine: x86_64,
//! 2 shared cores): 640×480 → 64×48 in 18 µs with 2×2 samples per block, 46 µs with 4×4;
//! we take 2×2 (four pixels averaged per block already tames sensor noise in a 64 px
//! picture) to keep the admitting thread's cost low. The JPEG encoding the writer thread does
//! takes 85 µs. Expect several times these figures on a Cortex-A53.

/// Samples per axis averaged for one output pixel (fewer when the block is smaller).
pub const SAMPLES: u32 = 2;

/// The thumbnail's size for a `width`×`height` frame: longest side `size`, aspect kept,
/// never enlarged, at least 1×1. `None` for an empty frame.
pub fn thumbnail_dims(width: u32, height: u32, size: u32) -> Option<(u32, u32)> {
    if width == 0 || height == 0 || size == 0 {
        return None;
    }
    let longest = width.max(height);
    if longest <= size {
        return Some((width, height));
    }
    let scale = |side: u32| {
        ((u64::from(side) * u64::from(size) + u64::from(longest) / 2) / u64::from(longest)).max(1)
            as u32
    };
    Some((scale(width), scale(height)))
}

/// The longest thumbnail side [`downscale`] produces (larger `size`s are clamped): the
/// sample positions are kept in fixed arrays of this length, so shrinking allocates only the
/// output.
pub const MAX_SIZE: u32 = 256;

/// Sample positions along one axis: for each output index, up to [`SAMPLES`] source
/// coordinates.
struct Axis {
    at: [[u32; SAMPLES as usize]; MAX_SIZE as usize],
    n: [u8; MAX_SIZE as usize],
}

impl Axis {
    /// Positions for `out_len` outputs over `src_len` inputs (`out_len` ≤ `src_len`,
    /// `out_len` ≤ [`MAX_SIZE`]). Computed once per axis, so the pixel loop only adds.
    fn new(out_len: u32, src_len: u32) -> Axis {
        let mut axis = Axis {
            at: [[0; SAMPLES as usize]; MAX_SIZE as usize],
            n: [0; MAX_SIZE as usize],
        };
        for o in 0..out_len {
            let (start, n, len) = block(o, out_len, src_len);
            axis.n[o as usize] = n as u8;
            for i in 0..n {
                axis.at[o as usize][i as usize] = start + sample(i, n, len);
            }
        }
        axis
    }

    fn samples(&self, o: u32) -> &[u32] {
        &self.at[o as usize][..usize::from(self.n[o as usize])]
    }
}

/// Shrinks the packed RGB8 image `src` (`width`×`height`) so its longest side is at most
/// `size` (clamped to [`MAX_SIZE`]), into `out` (resized; its allocation reused). Returns the
/// thumbnail's size, or `None` when `src` is not a `width`×`height` RGB8 image (then `out`
/// is untouched).
pub fn downscale(
    src: &[u8],
    width: u32,
    height: u32,
    size: u32,
    out: &mut Vec<u8>,
) -> Option<(u32, u32)> {
    let expected = (width as usize)
        .checked_mul(height as usize)?
        .checked_mul(3)?;
    if src.len() != expected {
        return None;
    }
    let (ow, oh) = thumbnail_dims(width, height, size.min(MAX_SIZE))?;
    let xs = Axis::new(ow, width);
    let ys = Axis::new(oh, height);
    out.clear();
    out.reserve_exact(ow as usize * oh as usize * 3);
    let row = width as usize * 3;
    for oy in 0..oh {
        let rows = ys.samples(oy);
        for ox in 0..ow {
            let cols = xs.samples(ox);
            let mut sum = [0u32; 3];
            for &y in rows {
                let line = &src[y as usize * row..(y as usize + 1) * row];
                for &x in cols {
                    let p = x as usize * 3;
                    if let [r, g, b] = line[p..p + 3] {
                        sum[0] += u32::from(r);
                        sum[1] += u32::from(g);
                        sum[2] += u32::from(b);
                    }
                }
            }
            let n = (rows.len() * cols.len()) as u32;
            out.extend(sum.iter().map(|&s| ((s + n / 2) / n) as u8));
        }
    }
    Some((ow, oh))
}

/// The source block of output index `o` of `out_len` over `src_len`: start, samples taken,
/// block length.
fn block(o: u32, out_len: u32, src_len: u32) -> (u32, u32, u32) {
    let start = (u64::from(o) * u64::from(src_len) / u64::from(out_len)) as u32;
    let end = ((u64::from(o) + 1) * u64::from(src_len) / u64::from(out_len)) as u32;
    let len = end.saturating_sub(start).max(1);
    (start, len.min(SAMPLES), len)
}

/// Offset of sample `i` of `n` spread over a block of `len` (centred in equal parts).
fn sample(i: u32, n: u32, len: u32) -> u32 {
    ((2 * u64::from(i) + 1) * u64::from(len) / (2 * u64::from(n))) as u32
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dims_keep_the_aspect_and_never_enlarge() {
        assert_eq!(thumbnail_dims(640, 480, 64), Some((64, 48)));
        assert_eq!(thumbnail_dims(480, 640, 64), Some((48, 64)));
        assert_eq!(thumbnail_dims(32, 16, 64), Some((32, 16)));
        assert_eq!(thumbnail_dims(10_000, 1, 64), Some((64, 1)));
        assert_eq!(thumbnail_dims(0, 10, 64), None);
    }

    #[test]
    fn a_flat_image_stays_flat_and_halves_average() {
        let (w, h) = (640u32, 480u32);
        let mut src = vec![0u8; (w * h * 3) as usize];
        // Left half red 200, right half blue 100.
        for y in 0..h {
            for x in 0..w {
                let p = ((y * w + x) * 3) as usize;
                if x < w / 2 {
                    src[p] = 200;
                } else {
                    src[p + 2] = 100;
                }
            }
        }
        let mut out = Vec::new();
        assert_eq!(downscale(&src, w, h, 64, &mut out), Some((64, 48)));
        assert_eq!(out.len(), 64 * 48 * 3);
        for y in 0..48 {
            assert_eq!(&out[(y * 64) * 3..(y * 64) * 3 + 3], &[200, 0, 0]);
            assert_eq!(&out[(y * 64 + 63) * 3..(y * 64 + 64) * 3], &[0, 0, 100]);
        }
    }

    #[test]
    fn a_gradient_keeps_the_mean_of_each_block() {
        // Red rises by one per column: each output pixel must be close to its block's mean
        // (2 of 4 columns are sampled: off by at most half a step).
        let (w, h) = (256u32, 4u32);
        let mut src = vec![0u8; (w * h * 3) as usize];
        for (i, px) in src.chunks_exact_mut(3).enumerate() {
            px[0] = (i as u32 % w) as u8;
        }
        let mut out = Vec::new();
        assert_eq!(downscale(&src, w, h, 64, &mut out), Some((64, 1)));
        for ox in 0..64usize {
            let block_mean = (ox * 4) as f32 + 1.5;
            let got = f32::from(out[ox * 3]);
            assert!(
                (got - block_mean).abs() <= 1.0,
                "column {ox}: {got} vs {block_mean}"
            );
        }
    }

    #[test]
    fn wrong_buffer_sizes_are_refused_not_read_past() {
        let mut out = vec![1, 2, 3];
        assert_eq!(downscale(&[0; 10], 2, 2, 64, &mut out), None);
        assert_eq!(downscale(&[], 0, 0, 64, &mut out), None);
        assert_eq!(downscale(&[0; 3], u32::MAX, u32::MAX, 64, &mut out), None);
        assert_eq!(out, [1, 2, 3]);
        // Small images are copied as they are.
        let src = [1u8, 2, 3, 4, 5, 6];
        assert_eq!(downscale(&src, 2, 1, 64, &mut out), Some((2, 1)));
        assert_eq!(out, src);
        // Sizes beyond MAX_SIZE are clamped, never index past the position tables.
        let big = vec![7u8; 1000 * 10 * 3];
        assert_eq!(
            downscale(&big, 1000, 10, 10_000, &mut out),
            Some((MAX_SIZE, 3))
        );
        assert!(out.iter().all(|&v| v == 7));
    }
}
