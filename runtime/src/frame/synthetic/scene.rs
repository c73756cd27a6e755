//! What one synthetic frame shows: the random choices (table, light, object,
//! camera noise) drawn for a frame, separate from drawing them.
//!
//! All choices are made here from a per-frame [`Rng`], so a frame depends only
//! on the seed and its index. Object colours are drawn from the same palette for
//! every class: a model trained on these frames has to learn shapes, not colours.

use super::rng::{Rng, sin_cos};
use super::tables::TEXTURES;
use super::{Phase, SceneClass};

/// Table-top colours at normal light (R, G, B).
const TABLE_COLOURS: [[i32; 3]; 6] = [
    [196, 160, 120], // light wood
    [140, 100, 70],  // dark wood
    [165, 165, 160], // grey laminate
    [210, 205, 195], // white laminate
    [95, 130, 100],  // green felt
    [120, 130, 150], // blue-grey
];

/// Object colours at normal light (R, G, B), shared by all classes.
const OBJECT_COLOURS: [[f32; 3]; 10] = [
    [200.0, 40.0, 40.0],
    [230.0, 130.0, 30.0],
    [230.0, 200.0, 40.0],
    [50.0, 160.0, 60.0],
    [40.0, 90.0, 200.0],
    [130.0, 60.0, 170.0],
    [235.0, 235.0, 235.0],
    [40.0, 40.0, 45.0],
    [140.0, 90.0, 50.0],
    [100.0, 100.0, 110.0],
];

/// Geometry of the object, in pixels, in the object's own rotated frame.
#[derive(Debug, Clone, Copy)]
pub(crate) enum Shape {
    /// A ball of radius `r`.
    Disc { r: f32 },
    /// A rectangle with half extents `a` (along the object's axis) and `b`;
    /// `rounded` selects cylinder shading (a bar) instead of a flat top (a box).
    Rect { a: f32, b: f32, rounded: bool },
    /// A five-pointed star with tips on a circle of radius `r`: inside when at
    /// least four of the five lines `n_k · p = c` have the point on their inner
    /// side, and inside the circle.
    Star {
        normals: [(f32, f32); 5],
        c: f32,
        r: f32,
    },
    /// A triangle: inside all three lines `n_k · p = c`, bounded by its tip circle `r`.
    Triangle {
        normals: [(f32, f32); 3],
        c: f32,
        r: f32,
    },
    /// A ring of outer radius `r` and width `t`.
    Ring { r: f32, t: f32 },
    /// Two bars of half extents `a` × `b` crossing at right angles.
    Cross { a: f32, b: f32 },
    /// Half a disc of radius `r`, its straight edge along the object's axis.
    HalfDisc { r: f32 },
}

/// The object in a frame, with everything needed to draw it.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Object {
    pub(crate) shape: Shape,
    /// Centre, in pixels.
    pub(crate) cx: f32,
    pub(crate) cy: f32,
    /// Rotation (cosine, sine).
    pub(crate) cos: f32,
    pub(crate) sin: f32,
    /// Radius of a circle containing the shape.
    pub(crate) extent: f32,
    /// Colour under the frame's light (may exceed 255 before shading).
    pub(crate) rgb: [f32; 3],
    /// Unit vector towards the light (x right, y down, z towards the camera).
    pub(crate) light: [f32; 3],
    /// Shadow offset, softness (pixels) and darkness (0..1).
    pub(crate) shadow_dx: f32,
    pub(crate) shadow_dy: f32,
    pub(crate) shadow_soft: f32,
    pub(crate) shadow_strength: f32,
}

/// Everything random about one frame.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Scene {
    /// Table colour under the frame's light, pixel value at brightness 1.0.
    pub(crate) table_rgb: [i32; 3],
    /// Which texture, its strength (128 = ±100 %), and where the frame starts in it.
    pub(crate) texture: usize,
    pub(crate) tex_amp: i32,
    pub(crate) tex_ox: usize,
    pub(crate) tex_oy: usize,
    /// Brightness at pixel (0, 0) and its change per pixel, 16.16 fixed point.
    pub(crate) lum0: i32,
    pub(crate) lum_gx: i32,
    pub(crate) lum_gy: i32,
    /// Sensor noise standard deviation in pixel values.
    pub(crate) noise_sigma: i32,
    /// Box-blur radius (0 = sharp).
    pub(crate) blur: usize,
    /// The object, unless the class is `empty`.
    pub(crate) object: Option<Object>,
}

impl Scene {
    /// Draw the random choices for one frame of `class` in `phase`.
    pub(crate) fn sample(
        rng: &mut Rng,
        phase: Phase,
        class: SceneClass,
        width: u32,
        height: u32,
    ) -> Scene {
        let (w, h) = (width as f32, height as f32);
        let gains = light_gains(rng, phase);

        let base = TABLE_COLOURS[rng.below(TABLE_COLOURS.len() as u32) as usize];
        let mut table_rgb = [0i32; 3];
        for c in 0..3 {
            let v = (base[c] + rng.range_i32(-12, 12)) as f32 * gains[c];
            table_rgb[c] = v as i32;
        }
        let texture = rng.below(TEXTURES as u32) as usize;
        let tex_amp = rng.range_i32(6, 18);
        let tex_ox = rng.below(256) as usize;
        let tex_oy = rng.below(256) as usize;

        // Light falls off across the table in a random direction.
        let (gs, gc) = sin_cos(rng.unit());
        let grad = rng.range(0.0, 0.25); // brightness change across the frame diagonal
        let diag = w + h;
        let lum_gx = (gc * grad / diag * 65536.0) as i32;
        let lum_gy = (gs * grad / diag * 65536.0) as i32;
        let centre = rng.range(0.88, 1.04) * 65536.0;
        let lum0 = centre as i32 - lum_gx * (width as i32 / 2) - lum_gy * (height as i32 / 2);

        let (noise_sigma, blur) = match phase {
            Phase::Noise => (rng.range_i32(44, 60), 2 + rng.below(2) as usize),
            _ => (rng.range_i32(2, 5), 0),
        };

        let object = match class {
            SceneClass::Empty => None,
            _ => Some(sample_object(rng, class, w, h, gains)),
        };
        Scene {
            table_rgb,
            texture,
            tex_amp,
            tex_ox,
            tex_oy,
            lum0,
            lum_gx,
            lum_gy,
            noise_sigma,
            blur,
            object,
        }
    }
}

/// Per-channel gains of the light: brightness and colour temperature.
fn light_gains(rng: &mut Rng, phase: Phase) -> [f32; 3] {
    let (brightness, temp) = match phase {
        Phase::Lighting => {
            let b = if rng.chance(0.5) {
                rng.range(0.35, 0.55)
            } else {
                rng.range(1.45, 1.75)
            };
            let t = rng.range(0.2, 0.35);
            (b, if rng.chance(0.5) { t } else { -t })
        }
        _ => (rng.range(0.9, 1.1), rng.range(-0.05, 0.05)),
    };
    [
        brightness * (1.0 + temp),
        brightness,
        brightness * (1.0 - temp),
    ]
}

fn sample_object(rng: &mut Rng, class: SceneClass, w: f32, h: f32, gains: [f32; 3]) -> Object {
    let s = w.min(h) * rng.range(0.25, 0.45);
    let (sin, cos) = sin_cos(rng.unit());
    let (shape, extent) = match class {
        SceneClass::Ball => {
            let r = s * 0.5;
            (Shape::Disc { r }, r)
        }
        SceneClass::Box => {
            let a = s * 0.5 * rng.range(0.8, 0.95);
            let b = a * rng.range(0.7, 1.0);
            (
                Shape::Rect {
                    a,
                    b,
                    rounded: false,
                },
                (a * a + b * b).sqrt(),
            )
        }
        SceneClass::Bar => {
            let a = s * rng.range(0.55, 0.75);
            let b = a * rng.range(0.1, 0.18);
            (
                Shape::Rect {
                    a,
                    b,
                    rounded: true,
                },
                (a * a + b * b).sqrt(),
            )
        }
        SceneClass::Star | SceneClass::Empty => {
            // Tips at radius r; lines slightly further out than a true pentagram
            // (cos 72° = 0.309) with the tips cut by the circle give blunt tips.
            let r = s * 0.58;
            let c = r * 0.309_017 * rng.range(1.0, 1.15);
            let rot = rng.unit();
            let mut normals = [(0.0, 0.0); 5];
            for (k, n) in normals.iter_mut().enumerate() {
                let (ns, nc) = sin_cos(rot + k as f32 / 5.0);
                *n = (nc, ns);
            }
            (Shape::Star { normals, c, r }, r)
        }
        SceneClass::Triangle => {
            let r = s * 0.6;
            let c = r * 0.5 * rng.range(1.0, 1.2);
            let rot = rng.unit();
            let mut normals = [(0.0, 0.0); 3];
            for (k, n) in normals.iter_mut().enumerate() {
                let (ns, nc) = sin_cos(rot + k as f32 / 3.0);
                *n = (nc, ns);
            }
            (Shape::Triangle { normals, c, r }, r)
        }
        SceneClass::Ring => {
            let r = s * 0.5;
            let t = r * rng.range(0.3, 0.5);
            (Shape::Ring { r, t }, r)
        }
        SceneClass::Cross => {
            let a = s * rng.range(0.45, 0.6);
            let b = a * rng.range(0.2, 0.32);
            (Shape::Cross { a, b }, (a * a + b * b).sqrt())
        }
        SceneClass::HalfDisc => {
            let r = s * 0.55;
            (Shape::HalfDisc { r }, r)
        }
    };
    let margin = extent * 0.8;
    let cx = if w > 2.0 * margin {
        rng.range(margin, w - margin)
    } else {
        w * 0.5
    };
    let cy = if h > 2.0 * margin {
        rng.range(margin, h - margin)
    } else {
        h * 0.5
    };

    let base = OBJECT_COLOURS[rng.below(OBJECT_COLOURS.len() as u32) as usize];
    let mut rgb = [0.0f32; 3];
    for c in 0..3 {
        rgb[c] = (base[c] + rng.range(-20.0, 20.0)).max(5.0) * gains[c];
    }

    // Light from the upper left, with some variation.
    let lx = rng.range(-0.6, -0.3);
    let ly = rng.range(-0.65, -0.35);
    let lz = (1.0 - lx * lx - ly * ly).sqrt();
    let lxy = (lx * lx + ly * ly).sqrt();
    let shadow_len = s * rng.range(0.06, 0.12);
    Object {
        shape,
        cx,
        cy,
        cos,
        sin,
        extent,
        rgb,
        light: [lx, ly, lz],
        shadow_dx: -lx / lxy * shadow_len,
        shadow_dy: -ly / lxy * shadow_len,
        shadow_soft: s * rng.range(0.08, 0.15) + 1.0,
        shadow_strength: rng.range(0.3, 0.5),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn objects_are_spread_over_the_frame_and_inside_it() {
        let (w, h) = (320.0, 240.0);
        for class in [
            SceneClass::Ball,
            SceneClass::Box,
            SceneClass::Bar,
            SceneClass::Star,
            SceneClass::Triangle,
            SceneClass::Ring,
            SceneClass::Cross,
            SceneClass::HalfDisc,
        ] {
            let mut quadrants = [0u32; 4];
            let mut rng = Rng::new(3);
            for _ in 0..800 {
                let s = Scene::sample(&mut rng, Phase::Normal, class, 320, 240);
                let o = s.object.expect("an object");
                assert!(o.cx > 0.0 && o.cx < w && o.cy > 0.0 && o.cy < h);
                assert!(o.extent > 10.0 && o.extent < 120.0, "{class}: {}", o.extent);
                let q = usize::from(o.cx > w / 2.0) + 2 * usize::from(o.cy > h / 2.0);
                quadrants[q] += 1;
            }
            assert!(quadrants.iter().all(|&n| n > 140), "{class}: {quadrants:?}");
        }
        let mut rng = Rng::new(3);
        assert!(
            Scene::sample(&mut rng, Phase::Normal, SceneClass::Empty, 320, 240)
                .object
                .is_none()
        );
    }

    #[test]
    fn phases_change_light_and_noise() {
        let mut rng = Rng::new(11);
        for _ in 0..200 {
            let n = Scene::sample(&mut rng, Phase::Normal, SceneClass::Ball, 320, 240);
            assert!((2..=5).contains(&n.noise_sigma) && n.blur == 0);
            let z = Scene::sample(&mut rng, Phase::Noise, SceneClass::Ball, 320, 240);
            assert!(z.noise_sigma >= 44 && (2..=3).contains(&z.blur));
        }
        let mut far = 0;
        for _ in 0..200 {
            let g = light_gains(&mut rng, Phase::Lighting);
            if g[1] < 0.6 || g[1] > 1.4 {
                far += 1;
            }
            assert!((g[0] - g[2]).abs() > 0.3 * g[1]);
            let g = light_gains(&mut rng, Phase::Normal);
            assert!(g[1] > 0.85 && g[1] < 1.15);
        }
        assert_eq!(far, 200);
    }
}
