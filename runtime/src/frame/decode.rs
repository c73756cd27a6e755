//! Decoding JPEG and PNG bytes into a [`Frame`] (RGB8), for directory replay
//! and MJPEG cameras.
//!
//! Images come from outside (files, a USB camera), so sizes are bounded before
//! anything is allocated and a decoder failure — even a panic inside a
//! third-party decoder — becomes an error message instead of a crash.

use std::io::Cursor;
use std::panic::{AssertUnwindSafe, catch_unwind};

use image::codecs::png::PngDecoder;
use image::{ColorType, ImageDecoder, Limits};
use zune_core::bytestream::ZCursor;
use zune_core::colorspace::ColorSpace;
use zune_core::options::DecoderOptions;
use zune_jpeg::JpegDecoder;

use super::Frame;
use super::synthetic::MAX_SIDE;

/// Image container formats we decode.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ImageKind {
    /// JPEG / MJPEG frame.
    Jpeg,
    /// PNG.
    Png,
}

impl ImageKind {
    /// Recognise the format from the first bytes.
    pub fn sniff(bytes: &[u8]) -> Option<ImageKind> {
        if bytes.starts_with(&[0xFF, 0xD8]) {
            Some(ImageKind::Jpeg)
        } else if bytes.starts_with(b"\x89PNG\r\n\x1a\n") {
            Some(ImageKind::Png)
        } else {
            None
        }
    }
}

/// Decode a JPEG or PNG (recognised by its first bytes) into `frame`, reusing
/// `frame.data` and `scratch`. Images wider or taller than [`MAX_SIDE`] are refused.
pub fn decode_image(bytes: &[u8], frame: &mut Frame, scratch: &mut Vec<u8>) -> Result<(), String> {
    match ImageKind::sniff(bytes) {
        Some(ImageKind::Jpeg) => decode_jpeg(bytes, frame),
        Some(ImageKind::Png) => decode_png(bytes, frame, scratch),
        None => Err("not a JPEG or PNG image".into()),
    }
}

/// Decode a JPEG (any colour space the decoder knows) into `frame` as RGB8.
pub fn decode_jpeg(bytes: &[u8], frame: &mut Frame) -> Result<(), String> {
    guarded(|| {
        let options = DecoderOptions::default()
            .jpeg_set_out_colorspace(ColorSpace::RGB)
            .set_max_width(MAX_SIDE as usize)
            .set_max_height(MAX_SIDE as usize)
            .set_strict_mode(false);
        let mut decoder = JpegDecoder::new_with_options(ZCursor::new(bytes), options);
        decoder.decode_headers().map_err(|e| format!("{e:?}"))?;
        let (w, h) = decoder
            .dimensions()
            .ok_or_else(|| "no image dimensions".to_string())?;
        let (w, h) = checked_size(w, h)?;
        frame.reshape(w, h);
        decoder
            .decode_into(&mut frame.data)
            .map_err(|e| format!("{e:?}"))
    })
}

/// Decode a PNG into `frame` as RGB8; other colour types go through `scratch`.
pub fn decode_png(bytes: &[u8], frame: &mut Frame, scratch: &mut Vec<u8>) -> Result<(), String> {
    guarded(|| {
        let mut limits = Limits::default();
        limits.max_image_width = Some(MAX_SIDE);
        limits.max_image_height = Some(MAX_SIDE);
        let decoder =
            PngDecoder::with_limits(Cursor::new(bytes), limits).map_err(|e| e.to_string())?;
        let (w, h) = decoder.dimensions();
        let (w, h) = checked_size(w as usize, h as usize)?;
        let color = decoder.color_type();
        frame.reshape(w, h);
        if color == ColorType::Rgb8 {
            return decoder
                .read_image(&mut frame.data)
                .map_err(|e| e.to_string());
        }
        let len = usize::try_from(decoder.total_bytes()).map_err(|_| "image too large")?;
        scratch.resize(len, 0);
        decoder.read_image(scratch).map_err(|e| e.to_string())?;
        to_rgb8(color, scratch, &mut frame.data)
    })
}

/// Convert decoded pixels of `color` into packed RGB8 `out` (already sized).
fn to_rgb8(color: ColorType, src: &[u8], out: &mut [u8]) -> Result<(), String> {
    let pixels = out.len() / 3;
    // 16-bit samples are native-endian; keep the high byte.
    let hi16 = |s: &[u8]| (u16::from_ne_bytes([s[0], s[1]]) >> 8) as u8;
    let (channels, bytes): (usize, usize) = match color {
        ColorType::L8 => (1, 1),
        ColorType::La8 => (2, 1),
        ColorType::Rgba8 => (4, 1),
        ColorType::L16 => (1, 2),
        ColorType::La16 => (2, 2),
        ColorType::Rgb16 => (3, 2),
        ColorType::Rgba16 => (4, 2),
        other => return Err(format!("unsupported pixel format {other:?}")),
    };
    let step = channels * bytes;
    if src.len() < pixels * step {
        return Err("decoder returned fewer pixels than announced".into());
    }
    for (px, s) in out.chunks_exact_mut(3).zip(src.chunks_exact(step)) {
        let sample = |c: usize| {
            if bytes == 1 {
                s[c]
            } else {
                hi16(&s[c * 2..c * 2 + 2])
            }
        };
        if channels < 3 {
            px.fill(sample(0));
        } else {
            px.copy_from_slice(&[sample(0), sample(1), sample(2)]);
        }
    }
    Ok(())
}

fn checked_size(w: usize, h: usize) -> Result<(u32, u32), String> {
    let max = MAX_SIDE as usize;
    if w == 0 || h == 0 || w > max || h > max {
        return Err(format!("image size {w}x{h} is outside 1..={max} per side"));
    }
    Ok((w as u32, h as u32))
}

/// Run a decoder, turning a panic inside it into an error.
fn guarded<T>(f: impl FnOnce() -> Result<T, String>) -> Result<T, String> {
    catch_unwind(AssertUnwindSafe(f))
        .unwrap_or_else(|_| Err("decoder crashed on this input".into()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use image::ImageEncoder;

    fn png(color: image::ExtendedColorType, w: u32, h: u32, data: &[u8]) -> Vec<u8> {
        let mut out = Vec::new();
        image::codecs::png::PngEncoder::new(&mut out)
            .write_image(data, w, h, color)
            .unwrap();
        out
    }

    #[test]
    fn png_colour_types_become_rgb8() {
        let mut f = Frame::default();
        let mut scratch = Vec::new();
        let rgb = png(image::ExtendedColorType::Rgb8, 2, 1, &[1, 2, 3, 4, 5, 6]);
        decode_image(&rgb, &mut f, &mut scratch).unwrap();
        assert_eq!(
            (f.width, f.height, &f.data[..]),
            (2, 1, &[1, 2, 3, 4, 5, 6][..])
        );
        let gray = png(image::ExtendedColorType::L8, 2, 1, &[7, 200]);
        decode_image(&gray, &mut f, &mut scratch).unwrap();
        assert_eq!(f.data, [7, 7, 7, 200, 200, 200]);
        let rgba = png(image::ExtendedColorType::Rgba8, 1, 1, &[9, 8, 7, 0]);
        decode_image(&rgba, &mut f, &mut scratch).unwrap();
        assert_eq!(f.data, [9, 8, 7]);
        let rgb16 = png(
            image::ExtendedColorType::Rgb16,
            1,
            1,
            &[0x12, 0x34, 0xAB, 0xCD, 0xFF, 0xFF].map(|b| b),
        );
        decode_image(&rgb16, &mut f, &mut scratch).unwrap();
        assert_eq!(f.data.len(), 3);
    }

    #[test]
    fn jpeg_round_trip_is_close() {
        let mut data = vec![0u8; 16 * 8 * 3];
        for (i, px) in data.chunks_exact_mut(3).enumerate() {
            px.copy_from_slice(&[200, (i % 16 * 8) as u8, 40]);
        }
        let mut jpg = Vec::new();
        image::codecs::jpeg::JpegEncoder::new_with_quality(&mut jpg, 95)
            .write_image(&data, 16, 8, image::ExtendedColorType::Rgb8)
            .unwrap();
        let mut f = Frame::default();
        decode_image(&jpg, &mut f, &mut Vec::new()).unwrap();
        assert_eq!((f.width, f.height), (16, 8));
        let max_err = f
            .data
            .iter()
            .zip(&data)
            .map(|(a, b)| a.abs_diff(*b))
            .max()
            .unwrap();
        assert!(max_err < 20, "{max_err}");
    }

    #[test]
    fn oversized_images_are_refused_before_decoding() {
        let wide = png(
            image::ExtendedColorType::L8,
            MAX_SIDE + 1,
            1,
            &vec![0; MAX_SIDE as usize + 1],
        );
        let err = decode_image(&wide, &mut Frame::default(), &mut Vec::new()).unwrap_err();
        assert!(!err.is_empty());
        let mut jpg = Vec::new();
        image::codecs::jpeg::JpegEncoder::new(&mut jpg)
            .write_image(
                &vec![0; (MAX_SIDE as usize + 8) * 8 * 3],
                MAX_SIDE + 8,
                8,
                image::ExtendedColorType::Rgb8,
            )
            .unwrap();
        assert!(decode_image(&jpg, &mut Frame::default(), &mut Vec::new()).is_err());
    }

    #[test]
    fn garbage_and_truncated_inputs_are_errors() {
        let mut f = Frame::default();
        let mut s = Vec::new();
        assert!(decode_image(b"hello", &mut f, &mut s).is_err());
        assert!(decode_image(&[], &mut f, &mut s).is_err());
        assert!(decode_image(&[0xFF, 0xD8, 0xFF], &mut f, &mut s).is_err());
        let good = png(image::ExtendedColorType::Rgb8, 4, 4, &[50; 48]);
        assert!(decode_image(&good[..good.len() / 2], &mut f, &mut s).is_err());
        let mut jpg = Vec::new();
        image::codecs::jpeg::JpegEncoder::new(&mut jpg)
            .write_image(&[10; 64 * 64 * 3], 64, 64, image::ExtendedColorType::Rgb8)
            .unwrap();
        for cut in [3, 20, 100, jpg.len() / 2] {
            // Must not panic; an error or a (partially grey) image are both fine.
            let _ = decode_image(&jpg[..cut], &mut f, &mut s);
        }
        // Flipped bytes all over the file.
        for i in (2..jpg.len()).step_by(7) {
            let mut bad = jpg.clone();
            bad[i] ^= 0x5A;
            let _ = decode_image(&bad, &mut f, &mut s);
        }
    }
}
