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

    fn background(&self, s: &Scene, out: &mut [u8]) {
        let w = self.width;
        let tex = &self.tables.textures[s.texture];
        for (y, row) in out.chunks_exact_mut(w * 3).enumerate() {
            let vig = &self.tables.vignette[y * w..(y + 1) * w];
            let ty = (y + s.tex_oy) & (TEX - 1);
            let tex_row = &tex[ty * TEX..(ty + 1) * TEX];
            let mut lum = s.lum0 + s.lum_gy * y as i32;
            for (x, px) in row.chunks_exact_mut(3).enumerate() {
                let l = ((lum >> 8) * i32::from(vig[x])) >> 8;
                let t = l + ((i32::from(tex_row[(x + s.tex_ox) & (TEX - 1)]) * s.tex_amp) >> 7);
                for (p, &col) in px.iter_mut().zip(&s.table_rgb) {
                    *p = ((t * col) >> 8).clamp(0, 255) as u8;
                }
                lum += s.lum_gx;
            }
        }
    }

    fn object(&self, o: &Object, out: &mut [u8]) {
        let reach = o.extent + o.shadow_dx.abs().max(o.shadow_dy.abs()) + o.shadow_soft + 2.0;
        let x0 = (o.cx - reach).floor().max(0.0) as usize;
        let y0 = (o.cy - reach).floor().max(0.0) as usize;
        let x1 = ((o.cx + reach).ceil().max(0.0) as usize).min(self.width);
        let y1 = ((o.cy + reach).ceil().max(0.0) as usize).min(self.height);
        let w = self.width;
        for y in y0..y1 {
            let qy = y as f32 + 0.5 - o.cy;
            for x in x0..x1 {
                let qx = x as f32 + 0.5 - o.cx;
                let d_shadow = sdf(o, qx - o.shadow_dx, qy - o.shadow_dy);
                let d_obj = sdf(o, qx, qy);
                if d_shadow >= o.shadow_soft && d_obj >= 0.5 {
                    continue;
                }
                let shadow = ((o.shadow_soft - d_shadow) / (2.0 * o.shadow_soft)).clamp(0.0, 1.0);
                let dark = 1.0 - o.shadow_strength * shadow;
                let cover = (0.5 - d_obj).clamp(0.0, 1.0);
                let shade = if cover > 0.0 {
                    shading(o, qx, qy, d_obj)
                } else {
                    0.0
                };
                let px = &mut out[(y * w + x) * 3..(y * w + x) * 3 + 3];
                for (p, &col) in px.iter_mut().zip(&o.rgb) {
                    let bg = f32::from(*p) * dark;
                    let v = bg + (col * shade - bg) * cover;
                    *p = (v + 0.5).clamp(0.0, 255.0) as u8;
                }
            }
        }
    }

    /// Separable box blur of radius `r` (integer, edges clamped).
    fn blur(&mut self, r: usize, out: &mut [u8]) {
        let (w, h) = (self.width, self.height);
        let k = 2 * r + 1;
        self.scratch.resize(w * h * 3, 0);
        for y in 0..h {
            let row = &out[y * w * 3..(y + 1) * w * 3];
            let dst = &mut self.scratch[y * w * 3..(y + 1) * w * 3];
            for x in 0..w {
                let lo = x.saturating_sub(r);
                let hi = (x + r).min(w - 1);
                for c in 0..3 {
                    // Clamped edge: the missing taps repeat the border pixel.
                    let mut sum = u16::from(row[lo * 3 + c]) * (r + lo - x) as u16
                        + u16::from(row[hi * 3 + c]) * (x + r - hi) as u16;
                    for xi in lo..=hi {
                        sum += u16::from(row[xi * 3 + c]);
                    }
                    dst[x * 3 + c] = sum;
                }
            }
        }
        let recip = ((65536 + k * k / 2) / (k * k)) as u32;
        let stride = w * 3;
        for y in 0..h {
            let lo = y.saturating_sub(r);
            let hi = (y + r).min(h - 1);
            let extra_lo = (r + lo - y) as u32;
            let extra_hi = (y + r - hi) as u32;
            let dst = &mut out[y * stride..(y + 1) * stride];
            for (i, d) in dst.iter_mut().enumerate() {
                let mut sum = u32::from(self.scratch[lo * stride + i]) * extra_lo
                    + u32::from(self.scratch[hi * stride + i]) * extra_hi;
                for yi in lo..=hi {
                    sum += u32::from(self.scratch[yi * stride + i]);
                }
                *d = ((sum * recip + 32768) >> 16).min(255) as u8;
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
            let ox = dx.max(0.0);
            let oy = dy.max(0.0);
            (ox * ox + oy * oy).sqrt() + dx.max(dy).min(0.0)
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
