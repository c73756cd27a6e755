//! The PCA projection's matrix–vector product, with explicit SIMD kernels.
//!
//! The projection (256 × 1280 at the original TinyLCM's size) is most of the
//! CPU time after inference. A kernel that reads four matrix rows against each
//! load of the input and keeps eight independent accumulators is several times
//! faster than one dot product per row, but only when every accumulator stays
//! in a register; written in plain Rust (or with a portable-SIMD crate) the
//! compiler spilled them inside this crate and it was slower than the one-row
//! dot. Intrinsics pin the register use down, so the speed no longer depends
//! on how the surrounding code happens to be inlined.
//!
//! Kernels: x86_64 AVX2 + FMA, chosen at run time (a device without them gets
//! the SSE2 kernel, which every x86_64 has); aarch64 NEON (always present on
//! aarch64); elsewhere the scalar reference, which also serves as the test
//! oracle. The kernels add in a different order than the reference, so
//! results agree to rounding, not bit for bit.

/// Rows one kernel step reads against each load of the input.
const ROWS: usize = 4;

/// `out[r] += m[r·stride .. r·stride + x.len()] · x` for every `r < out.len()`.
///
/// `m` holds the rows at `stride` apart (a column block of a row-major matrix
/// is `&matrix[block_start..]` with the matrix's row length as the stride).
///
/// # Panics
/// When `stride < x.len()` or `m` is too short for `out.len()` rows: the
/// callers size these from the validated transform, so this is a bug, not
/// bad input.
pub(crate) fn matvec_add(m: &[f32], stride: usize, x: &[f32], out: &mut [f32]) {
    let rows = out.len();
    if rows == 0 || x.is_empty() {
        return;
    }
    assert!(
        stride >= x.len() && m.len() >= (rows - 1) * stride + x.len(),
        "matvec_add: {} values cannot hold {rows} rows of {} at stride {stride}",
        m.len(),
        x.len()
    );
    #[cfg(target_arch = "x86_64")]
    {
        if std::arch::is_x86_feature_detected!("avx2") && std::arch::is_x86_feature_detected!("fma")
        {
            // SAFETY: the CPU has AVX2 and FMA (checked just above); the bounds
            // the kernel reads within were asserted above.
            unsafe { x86::matvec_add_avx2(m, stride, x, out) };
        } else {
            // SAFETY: SSE2 is part of the x86_64 baseline; bounds asserted above.
            unsafe { x86::matvec_add_sse2(m, stride, x, out) };
        }
    }
    #[cfg(target_arch = "aarch64")]
    {
        // SAFETY: NEON is part of the aarch64 baseline; bounds asserted above.
        unsafe { arm::matvec_add_neon(m, stride, x, out) };
    }
    #[cfg(not(any(target_arch = "x86_64", target_arch = "aarch64")))]
    matvec_add_scalar(m, stride, x, out);
}

/// The reference: one plain dot product per row, in index order. The SSE2 and
/// NEON kernels also use it for the rows after their last group of [`ROWS`].
pub(crate) fn matvec_add_scalar(m: &[f32], stride: usize, x: &[f32], out: &mut [f32]) {
    for (r, o) in out.iter_mut().enumerate() {
        let row = &m[r * stride..r * stride + x.len()];
        *o += row.iter().zip(x).map(|(a, b)| a * b).sum::<f32>();
    }
}

/// Plain dot of `len` values at `a` and `b`, for the columns after the last
/// full SIMD step.
///
/// # Safety
/// `a` and `b` are valid for reads of `len` values.
#[cfg(any(target_arch = "x86_64", target_arch = "aarch64"))]
unsafe fn dot_tail(a: *const f32, b: *const f32, len: usize) -> f32 {
    let mut s = 0.0;
    for i in 0..len {
        // SAFETY: i < len, within both ranges (the caller's contract).
        s += unsafe { *a.add(i) * *b.add(i) };
    }
    s
}

#[cfg(target_arch = "x86_64")]
mod x86 {
    use std::arch::x86_64::*;

    use super::{ROWS, dot_tail, matvec_add_scalar};

    /// Sum of the 8 lanes.
    #[target_feature(enable = "avx2,fma")]
    fn hsum256(v: __m256) -> f32 {
        let s = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps::<1>(v));
        hsum128(s)
    }

    /// Sum of the 4 lanes.
    #[inline]
    fn hsum128(v: __m128) -> f32 {
        // SAFETY: SSE/SSE2 are the x86_64 baseline; register-only operations.
        unsafe {
            let hi = _mm_movehl_ps(v, v);
            let s = _mm_add_ps(v, hi);
            let s = _mm_add_ss(s, _mm_shuffle_ps::<0b01>(s, s));
            _mm_cvtss_f32(s)
        }
    }

    /// [`super::matvec_add`] with 256-bit FMA: 4 rows × 2 accumulators of 8
    /// lanes per step (16 columns).
    ///
    /// # Safety
    /// The CPU has AVX2 and FMA; `m` holds `out.len()` rows of `x.len()` values
    /// at `stride` apart (asserted by the caller).
    #[target_feature(enable = "avx2,fma")]
    pub(super) unsafe fn matvec_add_avx2(m: &[f32], stride: usize, x: &[f32], out: &mut [f32]) {
        let n = x.len();
        let full = n - n % 16;
        let half = n - n % 8;
        let xp = x.as_ptr();
        let mut r = 0;
        while r + ROWS <= out.len() {
            let p = [0, 1, 2, 3].map(|k| m[(r + k) * stride..].as_ptr());
            let mut acc = [_mm256_setzero_ps(); 8];
            let mut i = 0;
            while i < full {
                // SAFETY: i + 16 <= n, and every row and `x` hold n values.
                unsafe {
                    let x0 = _mm256_loadu_ps(xp.add(i));
                    let x1 = _mm256_loadu_ps(xp.add(i + 8));
                    for k in 0..ROWS {
                        acc[2 * k] = _mm256_fmadd_ps(_mm256_loadu_ps(p[k].add(i)), x0, acc[2 * k]);
                        acc[2 * k + 1] =
                            _mm256_fmadd_ps(_mm256_loadu_ps(p[k].add(i + 8)), x1, acc[2 * k + 1]);
                    }
                }
                i += 16;
            }
            if i < half {
                // SAFETY: i + 8 <= n.
                unsafe {
                    let x0 = _mm256_loadu_ps(xp.add(i));
                    for k in 0..ROWS {
                        acc[2 * k] = _mm256_fmadd_ps(_mm256_loadu_ps(p[k].add(i)), x0, acc[2 * k]);
                    }
                }
                i += 8;
            }
            for k in 0..ROWS {
                let s = hsum256(_mm256_add_ps(acc[2 * k], acc[2 * k + 1]));
                // SAFETY: the last n − i values of the row and of `x` are in bounds.
                out[r + k] += s + unsafe { dot_tail(p[k].add(i), xp.add(i), n - i) };
            }
            r += ROWS;
        }
        for (k, o) in out.iter_mut().enumerate().skip(r) {
            let row = m[k * stride..].as_ptr();
            let mut acc = _mm256_setzero_ps();
            let mut i = 0;
            while i < half {
                // SAFETY: i + 8 <= n.
                unsafe {
                    acc = _mm256_fmadd_ps(
                        _mm256_loadu_ps(row.add(i)),
                        _mm256_loadu_ps(xp.add(i)),
                        acc,
                    );
                }
                i += 8;
            }
            // SAFETY: the last n − i values are in bounds.
            *o += hsum256(acc) + unsafe { dot_tail(row.add(i), xp.add(i), n - i) };
        }
    }

    /// [`super::matvec_add`] with SSE2 (no FMA): 4 rows × 2 accumulators of 4
    /// lanes per step (8 columns).
    ///
    /// # Safety
    /// `m` holds `out.len()` rows of `x.len()` values at `stride` apart
    /// (asserted by the caller). SSE2 is always present on x86_64.
    pub(super) unsafe fn matvec_add_sse2(m: &[f32], stride: usize, x: &[f32], out: &mut [f32]) {
        let n = x.len();
        let full = n - n % 8;
        let xp = x.as_ptr();
        let mut r = 0;
        while r + ROWS <= out.len() {
            let p = [0, 1, 2, 3].map(|k| m[(r + k) * stride..].as_ptr());
            // SAFETY: SSE2 is the x86_64 baseline; loads stay within i + 8 <= n.
            unsafe {
                let mut acc = [_mm_setzero_ps(); 8];
                let mut i = 0;
                while i < full {
                    let x0 = _mm_loadu_ps(xp.add(i));
                    let x1 = _mm_loadu_ps(xp.add(i + 4));
                    for k in 0..ROWS {
                        acc[2 * k] =
                            _mm_add_ps(acc[2 * k], _mm_mul_ps(_mm_loadu_ps(p[k].add(i)), x0));
                        acc[2 * k + 1] = _mm_add_ps(
                            acc[2 * k + 1],
                            _mm_mul_ps(_mm_loadu_ps(p[k].add(i + 4)), x1),
                        );
                    }
                    i += 8;
                }
                for k in 0..ROWS {
                    let s = hsum128(_mm_add_ps(acc[2 * k], acc[2 * k + 1]));
                    out[r + k] += s + dot_tail(p[k].add(i), xp.add(i), n - i);
                }
            }
            r += ROWS;
        }
        // With no row left, `m` may end before `r * stride` (gaps between rows).
        if r < out.len() {
            matvec_add_scalar(&m[r * stride..], stride, x, &mut out[r..]);
        }
    }
}

#[cfg(target_arch = "aarch64")]
mod arm {
    use std::arch::aarch64::*;

    use super::{ROWS, dot_tail, matvec_add_scalar};

    /// [`super::matvec_add`] with NEON FMA: 4 rows × 2 accumulators of 4 lanes
    /// per step (8 columns).
    ///
    /// # Safety
    /// `m` holds `out.len()` rows of `x.len()` values at `stride` apart
    /// (asserted by the caller). NEON is always present on aarch64.
    pub(super) unsafe fn matvec_add_neon(m: &[f32], stride: usize, x: &[f32], out: &mut [f32]) {
        let n = x.len();
        let full = n - n % 8;
        let xp = x.as_ptr();
        let mut r = 0;
        while r + ROWS <= out.len() {
            let p = [0, 1, 2, 3].map(|k| m[(r + k) * stride..].as_ptr());
            // SAFETY: NEON is the aarch64 baseline; loads stay within i + 8 <= n.
            unsafe {
                let mut acc = [vdupq_n_f32(0.0); 8];
                let mut i = 0;
                while i < full {
                    let x0 = vld1q_f32(xp.add(i));
                    let x1 = vld1q_f32(xp.add(i + 4));
                    for k in 0..ROWS {
                        acc[2 * k] = vfmaq_f32(acc[2 * k], vld1q_f32(p[k].add(i)), x0);
                        acc[2 * k + 1] = vfmaq_f32(acc[2 * k + 1], vld1q_f32(p[k].add(i + 4)), x1);
                    }
                    i += 8;
                }
                for k in 0..ROWS {
                    let s = vaddvq_f32(vaddq_f32(acc[2 * k], acc[2 * k + 1]));
                    out[r + k] += s + dot_tail(p[k].add(i), xp.add(i), n - i);
                }
            }
            r += ROWS;
        }
        // With no row left, `m` may end before `r * stride` (gaps between rows).
        if r < out.len() {
            matvec_add_scalar(&m[r * stride..], stride, x, &mut out[r..]);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Deterministic values in [−1, 1) without a random-number crate.
    fn values(n: usize, seed: u32) -> Vec<f32> {
        let mut s = seed.wrapping_mul(2_654_435_761).wrapping_add(1);
        (0..n)
            .map(|_| {
                s ^= s << 13;
                s ^= s >> 17;
                s ^= s << 5;
                (s as f32 / u32::MAX as f32) * 2.0 - 1.0
            })
            .collect()
    }

    /// The dispatched kernel agrees with the scalar reference at sizes that
    /// leave remainders in both rows (not a multiple of 4) and columns (not a
    /// multiple of 8 or 16), with a stride wider than the block, and adds to
    /// what `out` held.
    #[test]
    fn kernel_matches_reference_at_odd_sizes() {
        for &(rows, cols, pad) in &[
            (1, 1, 0),
            (3, 7, 0),
            (4, 8, 0),
            (5, 15, 3),
            (7, 17, 1),
            (9, 33, 5),
            (13, 100, 0),
            (256, 512, 768),
            (255, 1279, 2),
        ] {
            let stride = cols + pad;
            let m = values((rows - 1) * stride + cols, rows as u32);
            let x = values(cols, cols as u32 + 7);
            let start = values(rows, 99);
            let mut want = start.clone();
            matvec_add_scalar(&m, stride, &x, &mut want);
            let mut got = start.clone();
            matvec_add(&m, stride, &x, &mut got);
            for (r, (g, w)) in got.iter().zip(&want).enumerate() {
                let tol = 1e-5 * (cols as f32).sqrt() * (1.0 + w.abs());
                assert!(
                    (g - w).abs() <= tol,
                    "{rows}x{cols} stride {stride}: row {r}: {g} vs {w}"
                );
            }
        }
    }

    /// On x86_64 the SSE2 fallback is tested too, whichever kernel this CPU picks.
    #[cfg(target_arch = "x86_64")]
    #[test]
    fn sse2_fallback_matches_reference() {
        for &(rows, cols) in &[(3, 5), (6, 9), (11, 31), (64, 200)] {
            let m = values(rows * cols, 3);
            let x = values(cols, 4);
            let mut want = vec![0.5; rows];
            matvec_add_scalar(&m, cols, &x, &mut want);
            let mut got = vec![0.5; rows];
            // SAFETY: SSE2 is the x86_64 baseline; m holds rows × cols values.
            unsafe { x86::matvec_add_sse2(&m, cols, &x, &mut got) };
            for (g, w) in got.iter().zip(&want) {
                assert!((g - w).abs() <= 1e-4, "{rows}x{cols}: {g} vs {w}");
            }
        }
    }
}
