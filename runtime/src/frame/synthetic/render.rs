//! Drawing a [`Scene`] into an RGB8 buffer: table, shadow, shaded object,
//! optional blur, sensor noise.
//!
//! The background, blur and noise are integer arithmetic over the whole frame;
//! only the object's bounding box uses `f32` (basic operations only, see
//! [`super::rng`]), so frames are identical on every platform and a 320x240
//! frame costs well under a millisecond.

use super::rng::Rng;
use super::scene::{Object, Scene, Shape};
use super::tables::{NOISE_LEN, NOISE_SIGMA, TEX, Tables};

/// Draws scenes of one size, reusing its lookup tables and scratch memory.
pub(crate) struct Renderer {
    width: usize,
    height: usize,
    tables: Tables,
    /// Intermediate sums of the horizontal blur pass.
    scratch: Vec<u16>,
    /// Brightness of one row (background pass).
    row: Vec<i32>,
}

impl Renderer {
    /// Renderer for `width` x `height` frames; `seed` picks the textures and noise.
    pub(crate) fn new(width: u32, height: u32, seed: u64) -> Self {
        let (width, height) = (width as usize, height as usize);
        Renderer {
            width,
            height,
            tables: Tables::new(width, height, seed),
            scratch: Vec::new(),
            row: vec![0; width],
        }
    }

    /// Draw `scene` into `out` (`width * height * 3` bytes); `rng` supplies the noise.
    pub(crate) fn draw(&mut self, scene: &Scene, out: &mut [u8], rng: &mut Rng) {
        debug_assert_eq!(out.len(), self.width * self.height * 3);
        self.background(scene, out);
        if let Some(obj) = &scene.object {
            self.object(obj, out);
        }
        if scene.blur > 0 {
            self.blur(scene.blur, out);
        }
        self.noise(scene.noise_sigma, out, rng);
    }

    fn background(&mut self, s: &Scene, out: &mut [u8]) {
        let w = self.width;
        let tex = &self.tables.textures[s.texture];
        let lums = &mut self.row[..w];
        let [r, g, b] = s.table_rgb;
        for (y, row) in out.chunks_exact_mut(w * 3).enumerate() {
            // Brightness: gradient times vignette (vectorisable passes over one row).
            let vig = &self.tables.vignette[y * w..(y + 1) * w];
            let mut lum = s.lum0 + s.lum_gy * y as i32;
            for (l, &v) in lums.iter_mut().zip(vig) {
                *l = ((lum >> 8) * i32::from(v)) >> 8;
                lum += s.lum_gx;
            }
            // Texture, in contiguous pieces of the wrapping texture row.
            let ty = (y + s.tex_oy) & (TEX - 1);
            let tex_row = &tex[ty * TEX..(ty + 1) * TEX];
            let mut x = 0;
            while x < w {
                let start = (x + s.tex_ox) & (TEX - 1);
                let n = (TEX - start).min(w - x);
                for (l, &t) in lums[x..x + n].iter_mut().zip(&tex_row[start..start + n]) {
                    *l += (i32::from(t) * s.tex_amp) >> 7;
                }
                x += n;
            }
            for (px, &t) in row.chunks_exact_mut(3).zip(lums.iter()) {
                px[0] = ((t * r) >> 8).clamp(0, 255) as u8;
                px[1] = ((t * g) >> 8).clamp(0, 255) as u8;
                px[2] = ((t * b) >> 8).clamp(0, 255) as u8;
            }
        }
    }

    fn object(&self, o: &Object, out: &mut [u8]) {
        let reach = o.extent + o.shadow_dx.abs().max(o.shadow_dy.abs()) + o.shadow_soft + 2.0;
        let x0 = (o.cx - reach).floor().max(0.0) as usize;
        let y0 = (o.cy - reach).floor().max(0.0) as usize;
        let x1 = ((o.cx + reach).ceil().max(0.0) as usize).min(self.width);
        let y1 = ((o.cy + reach).ceil().max(0.0) as usize).min(self.height);
        if x0 >= x1 || y0 >= y1 {
            return;
        }
        // Every outline distance is 1-Lipschitz, so the shadow (the outline moved
        // by `offset`) is at least `d_obj - offset` away: far pixels need one
        // distance, not two.
        let offset = (o.shadow_dx * o.shadow_dx + o.shadow_dy * o.shadow_dy).sqrt();
        let w = self.width;
        for y in y0..y1 {
            let qy = y as f32 + 0.5 - o.cy;
            let row = &mut out[(y * w + x0) * 3..(y * w + x1) * 3];
            for (i, px) in row.chunks_exact_mut(3).enumerate() {
                let qx = (x0 + i) as f32 + 0.5 - o.cx;
                let d_obj = sdf(o, qx, qy);
                if d_obj >= 0.5 && d_obj - offset >= o.shadow_soft {
                    continue;
                }
                let cover = (0.5 - d_obj).clamp(0.0, 1.0);
                let dark = if cover >= 1.0 {
                    1.0 // fully covered: the shadow underneath is invisible
                } else {
                    let d_shadow = sdf(o, qx - o.shadow_dx, qy - o.shadow_dy);
                    let shadow =
                        ((o.shadow_soft - d_shadow) / (2.0 * o.shadow_soft)).clamp(0.0, 1.0);
                    1.0 - o.shadow_strength * shadow
                };
                let shade = if cover > 0.0 {
                    shading(o, qx, qy, d_obj)
                } else {
                    0.0
                };
                for (p, &col) in px.iter_mut().zip(&o.rgb) {
                    let bg = f32::from(*p) * dark;
                    let v = bg + (col * shade - bg) * cover;
                    *p = (v + 0.5).clamp(0.0, 255.0) as u8;
                }
            }
        }
    }

    /// Separable box blur of radius `r` (integer, edges clamped). Sums are
    /// accumulated tap by tap over whole rows so the loops vectorise.
    fn blur(&mut self, r: usize, out: &mut [u8]) {
        let (w, h) = (self.width, self.height);
        let stride = w * 3;
        let k = 2 * r + 1;
        self.scratch.resize(w * h * 3 + stride, 0);
        let (sums, acc) = self.scratch.split_at_mut(w * h * 3);
        // Horizontal: sums[x] = Σ row[clamp(x + d)] for d in -r..=r.
        for (row, dst) in out.chunks_exact(stride).zip(sums.chunks_exact_mut(stride)) {
            dst.fill(0);
            for d in -(r as isize)..=(r as isize) {
                let shift = d.unsigned_abs() * 3;
                if shift >= stride {
                    // Tiny frame: every tap beyond the edge is the edge pixel.
                    for x in 0..w {
                        let sx = (x as isize + d).clamp(0, w as isize - 1) as usize;
                        for c in 0..3 {
                            dst[x * 3 + c] += u16::from(row[sx * 3 + c]);
                        }
                    }
                    continue;
                }
                if d >= 0 {
                    // Interior: dst[i] += row[i + shift]; right edge repeats the last pixel.
                    for (a, &b) in dst[..stride - shift].iter_mut().zip(&row[shift..]) {
                        *a += u16::from(b);
                    }
                    let last = &row[stride - 3..];
                    for (i, a) in dst[stride - shift..].iter_mut().enumerate() {
                        *a += u16::from(last[i % 3]);
                    }
                } else {
                    for (a, &b) in dst[shift..].iter_mut().zip(&row[..stride - shift]) {
                        *a += u16::from(b);
                    }
                    for (i, a) in dst[..shift].iter_mut().enumerate() {
                        *a += u16::from(row[i % 3]);
                    }
                }
            }
        }
        // Vertical: sum k rows of horizontal sums (max 25 * 255, fits u16), then divide.
        let recip = ((65536 + k * k / 2) / (k * k)) as u32;
        let acc = &mut acc[..stride];
        for (y, dst) in out.chunks_exact_mut(stride).enumerate() {
            acc.fill(0);
            for d in -(r as isize)..=(r as isize) {
                let sy = (y as isize + d).clamp(0, h as isize - 1) as usize;
                for (a, &b) in acc.iter_mut().zip(&sums[sy * stride..(sy + 1) * stride]) {
                    *a += b;
                }
            }
            for (o, &a) in dst.iter_mut().zip(acc.iter()) {
                *o = ((u32::from(a) * recip + 32768) >> 16).min(255) as u8;
            }
        }
    }

    /// Add sensor noise of standard deviation `sigma` (pixel values).
    fn noise(&self, sigma: i32, out: &mut [u8], rng: &mut Rng) {
        let row_bytes = self.width * 3;
        let amp = sigma.clamp(0, 60) as i16;
        let shift = NOISE_SIGMA.trailing_zeros();
        for row in out.chunks_exact_mut(row_bytes) {
            let off = rng.below(NOISE_LEN as u32) as usize;
            let noise = &self.tables.noise[off..off + row_bytes];
            for (p, &n) in row.iter_mut().zip(noise) {
                let v = i16::from(*p) + ((i16::from(n) * amp) >> shift);
                *p = v.clamp(0, 255) as u8;
            }
        }
    }
}

/// Signed distance (pixels, negative inside) from the object's outline, at
/// offset (`qx`, `qy`) from its centre.
fn sdf(o: &Object, qx: f32, qy: f32) -> f32 {
    match o.shape {
        Shape::Disc { r } => (qx * qx + qy * qy).sqrt() - r,
        Shape::Rect { a, b, .. } => {
            let u = qx * o.cos + qy * o.sin;
            let v = qy * o.cos - qx * o.sin;
            let dx = u.abs() - a;
            let dy = v.abs() - b;
            if dx > 0.0 && dy > 0.0 {
                (dx * dx + dy * dy).sqrt()
            } else {
                dx.max(dy)
            }
        }
        Shape::Star { normals, c, r } => {
            // Second largest of the five line distances.
            let (mut first, mut second) = (f32::NEG_INFINITY, f32::NEG_INFINITY);
            for (nx, ny) in normals {
                let d = nx * qx + ny * qy - c;
                if d > first {
                    second = first;
                    first = d;
                } else if d > second {
                    second = d;
                }
            }
            // Bounded by the tip circle: beyond a tip the two lines meeting
            // there diverge slowly, which would smear the soft shadow.
            second.max((qx * qx + qy * qy).sqrt() - r)
        }
        Shape::Triangle { normals, c, r } => {
            let mut d = f32::NEG_INFINITY;
            for (nx, ny) in normals {
                d = d.max(nx * qx + ny * qy - c);
            }
            d.max((qx * qx + qy * qy).sqrt() - r)
        }
        Shape::Ring { r, t } => ((qx * qx + qy * qy).sqrt() - (r - t * 0.5)).abs() - t * 0.5,
        Shape::Cross { a, b } => {
            let u = qx * o.cos + qy * o.sin;
            let v = qy * o.cos - qx * o.sin;
            rect_sdf(u, v, a, b).min(rect_sdf(u, v, b, a))
        }
        Shape::HalfDisc { r } => {
            let v = qy * o.cos - qx * o.sin;
            ((qx * qx + qy * qy).sqrt() - r).max(v)
        }
    }
}

/// Signed distance from an axis-aligned rectangle of half extents `a` × `b` at (`u`, `v`).
fn rect_sdf(u: f32, v: f32, a: f32, b: f32) -> f32 {
    let dx = u.abs() - a;
    let dy = v.abs() - b;
    if dx > 0.0 && dy > 0.0 {
        (dx * dx + dy * dy).sqrt()
    } else {
        dx.max(dy)
    }
}

/// Brightness factor of the object's surface at (`qx`, `qy`), `d` = signed distance.
fn shading(o: &Object, qx: f32, qy: f32, d: f32) -> f32 {
    let [lx, ly, lz] = o.light;
    match o.shape {
        Shape::Disc { r } => {
            let nx = qx / r;
            let ny = qy / r;
            let nz = (1.0 - nx * nx - ny * ny).max(0.0).sqrt();
            let diffuse = (nx * lx + ny * ly + nz * lz).max(0.0);
            let mut spec = diffuse * diffuse;
            spec *= spec;
            spec *= spec;
            spec *= spec;
            0.25 + 0.8 * diffuse + 0.35 * spec
        }
        Shape::Rect {
            b, rounded: true, ..
        } => {
            let v = qy * o.cos - qx * o.sin;
            let t = (v / b).clamp(-1.0, 1.0);
            let nx = -t * o.sin;
            let ny = t * o.cos;
            let nz = (1.0 - t * t).sqrt();
            let diffuse = (nx * lx + ny * ly + nz * lz).max(0.0);
            let mut spec = diffuse * diffuse;
            spec *= spec;
            spec *= spec;
            0.3 + 0.75 * diffuse + 0.2 * spec
        }
        _ => {
            // Flat top lit from above, a gentle gradient towards the light and a
            // darker bevel along the edges.
            let grad = -(qx * lx + qy * ly) / o.extent.max(1.0);
            let bevel = (-d / 3.0).clamp(0.0, 1.0);
            (0.45 + 0.55 * lz + 0.12 * grad) * (0.7 + 0.3 * bevel)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Box blur with clamped edges, the obvious way.
    fn naive_blur(src: &[u8], w: usize, h: usize, r: usize) -> Vec<u8> {
        let k = (2 * r + 1) as u32;
        let recip = (65536 + k * k / 2) / (k * k);
        let mut out = vec![0u8; src.len()];
        for y in 0..h {
            for x in 0..w {
                for c in 0..3 {
                    let mut sum = 0u32;
                    for dy in -(r as isize)..=(r as isize) {
                        for dx in -(r as isize)..=(r as isize) {
                            let sy = (y as isize + dy).clamp(0, h as isize - 1) as usize;
                            let sx = (x as isize + dx).clamp(0, w as isize - 1) as usize;
                            sum += u32::from(src[(sy * w + sx) * 3 + c]);
                        }
                    }
                    out[(y * w + x) * 3 + c] = ((sum * recip + 32768) >> 16).min(255) as u8;
                }
            }
        }
        out
    }

    #[test]
    fn blur_matches_the_naive_definition() {
        let (w, h) = (19, 17);
        let mut rng = Rng::new(9);
        let src: Vec<u8> = (0..w * h * 3).map(|_| rng.below(256) as u8).collect();
        for r in 1..=2 {
            let mut renderer = Renderer::new(w as u32, h as u32, 1);
            let mut out = src.clone();
            renderer.blur(r, &mut out);
            assert_eq!(out, naive_blur(&src, w, h, r), "radius {r}");
        }
    }
}
