//! Pixel value (0..=255) to model input value, per channel, as a table.
//!
//! Normalisation and quantisation happen once per possible byte value when the
//! preprocessor is built; the per-frame work is a table lookup per sample.

use crate::engine::Quantization;

/// Element encoding of the model input.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) enum OutputType {
    /// 32-bit float, native endianness.
    F32,
    /// Quantised unsigned byte.
    U8(Quantization),
    /// Quantised signed byte.
    I8(Quantization),
}

impl OutputType {
    /// Bytes per element.
    pub(crate) fn size(self) -> usize {
        match self {
            OutputType::F32 => 4,
            OutputType::U8(_) | OutputType::I8(_) => 1,
        }
    }
}

/// One table per model channel: the encoded bytes of every pixel value.
#[derive(Debug, Clone)]
pub(crate) enum Lut {
    /// Encoded `f32` bytes (native endianness).
    F32(Box<[[[u8; 4]; 256]; 3]>),
    /// Encoded single bytes (`u8`, or `i8` as its two's-complement byte).
    Byte(Box<[[[u8; 1]; 256]; 3]>),
}

/// Model input value of pixel `v` in a channel: `(v - mean) / std`.
pub(crate) fn normalise(v: u8, mean: f32, std: f32) -> f32 {
    (f32::from(v) - mean) / std
}

/// Quantise `real` with `q`, rounding half away from zero (as TFLite's
/// quantize kernel does) and clamping to `lo..=hi`.
pub(crate) fn quantise(real: f32, q: Quantization, lo: i32, hi: i32) -> i32 {
    let scaled = (real / q.scale).round();
    // Clamp in f32 first: huge values must not overflow the integer conversion.
    let clamped = scaled.clamp(
        lo as f32 - q.zero_point as f32,
        hi as f32 - q.zero_point as f32,
    );
    (clamped as i32 + q.zero_point).clamp(lo, hi)
}

impl Lut {
    /// Tables for `out` with per-model-channel `mean` and `std`.
    pub(crate) fn build(out: OutputType, mean: [f32; 3], std: [f32; 3]) -> Lut {
        match out {
            OutputType::F32 => {
                let mut t = Box::new([[[0u8; 4]; 256]; 3]);
                for c in 0..3 {
                    for v in 0..=255u8 {
                        t[c][usize::from(v)] = normalise(v, mean[c], std[c]).to_ne_bytes();
                    }
                }
                Lut::F32(t)
            }
            OutputType::U8(q) | OutputType::I8(q) => {
                let (lo, hi) = if matches!(out, OutputType::U8(_)) {
                    (0, 255)
                } else {
                    (-128, 127)
                };
                let mut t = Box::new([[[0u8; 1]; 256]; 3]);
                for c in 0..3 {
                    for v in 0..=255u8 {
                        let x = quantise(normalise(v, mean[c], std[c]), q, lo, hi);
                        t[c][usize::from(v)] = [x as u8]; // i8 keeps its bit pattern
                    }
                }
                Lut::Byte(t)
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn q(scale: f32, zero_point: i32) -> Quantization {
        Quantization { scale, zero_point }
    }

    #[test]
    fn quantise_rounds_half_away_from_zero_and_clamps() {
        assert_eq!(quantise(0.5, q(1.0, 0), -128, 127), 1);
        assert_eq!(quantise(-0.5, q(1.0, 0), -128, 127), -1);
        assert_eq!(quantise(1.49, q(1.0, 0), -128, 127), 1);
        assert_eq!(quantise(1000.0, q(1.0, 0), -128, 127), 127);
        assert_eq!(quantise(-1000.0, q(1.0, 3), 0, 255), 0);
        assert_eq!(quantise(f32::MAX, q(1e-9, 0), 0, 255), 255);
        assert_eq!(quantise(0.0, q(0.5, -128), -128, 127), -128);
        assert_eq!(quantise(1.0, q(1.0 / 255.0, 0), 0, 255), 255);
    }

    #[test]
    fn uint8_identity_with_the_usual_input_quantisation() {
        // mean 0, std 255 → [0, 1]; scale 1/255, zero point 0 → the pixel itself.
        let Lut::Byte(t) = Lut::build(OutputType::U8(q(1.0 / 255.0, 0)), [0.0; 3], [255.0; 3])
        else {
            panic!("byte table expected")
        };
        for c in 0..3 {
            for v in 0..256 {
                assert_eq!(usize::from(t[c][v][0]), v);
            }
        }
    }

    #[test]
    fn int8_signed_range_quantisation() {
        // mean 127.5, std 127.5 → [-1, 1]; scale 1/128, zp 0.
        let Lut::Byte(t) = Lut::build(OutputType::I8(q(1.0 / 128.0, 0)), [127.5; 3], [127.5; 3])
        else {
            panic!("byte table expected")
        };
        assert_eq!(t[0][0][0] as i8, -128);
        assert_eq!(t[0][255][0] as i8, 127); // 128 clamped
        assert_eq!(t[0][128][0] as i8, 1); // 0.50196 → 1
        assert_eq!(t[0][127][0] as i8, -1); // -0.50196 → -1
        assert_eq!(t[1][64][0] as i8, -64); // (64-127.5)/127.5*128 = -63.75 → -64
        // The common int8 input: [0,1] with scale 1/255, zp -128 → pixel - 128.
        let Lut::Byte(t) = Lut::build(OutputType::I8(q(1.0 / 255.0, -128)), [0.0; 3], [255.0; 3])
        else {
            panic!("byte table expected")
        };
        for v in 0..256 {
            assert_eq!(i32::from(t[2][v][0] as i8), v as i32 - 128);
        }
    }

    #[test]
    fn float_tables_hold_the_normalised_value_per_channel() {
        let Lut::F32(t) = Lut::build(OutputType::F32, [10.0, 20.0, 30.0], [2.0, 4.0, 8.0]) else {
            panic!("float table expected")
        };
        assert_eq!(f32::from_ne_bytes(t[0][10]), 0.0);
        assert_eq!(f32::from_ne_bytes(t[1][0]), -5.0);
        assert_eq!(f32::from_ne_bytes(t[2][255]), 28.125);
    }
}
