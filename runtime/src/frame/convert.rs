//! Camera pixel formats to packed RGB8, into the caller's buffer.
//!
//! A V4L2 camera delivers YUYV (4:2:2), RGB24 or MJPEG; everything after the
//! frame source sees RGB8 only. Conversions write into a reused buffer and use
//! integer arithmetic (BT.601, the colour matrix of SD/webcam video).

use super::Frame;
use super::decode::decode_jpeg;

/// Pixel formats the camera source can convert.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum PixelFormat {
    /// Motion JPEG: every frame a JPEG (small over USB, costs a decode).
    Mjpeg,
    /// YUYV 4:2:2, limited range BT.601 (cheap to convert, twice the bandwidth of MJPEG or more).
    Yuyv,
    /// Packed R, G, B bytes.
    Rgb24,
}

impl PixelFormat {
    /// Every supported format.
    pub const ALL: [PixelFormat; 3] = [PixelFormat::Mjpeg, PixelFormat::Yuyv, PixelFormat::Rgb24];

    /// The V4L2 four-character code.
    pub fn fourcc(self) -> [u8; 4] {
        match self {
            PixelFormat::Mjpeg => *b"MJPG",
            PixelFormat::Yuyv => *b"YUYV",
            PixelFormat::Rgb24 => *b"RGB3",
        }
    }

    /// The format with V4L2 code `code`, if supported (`JPEG` counts as MJPEG).
    pub fn from_fourcc(code: [u8; 4]) -> Option<PixelFormat> {
        match &code {
            b"MJPG" | b"JPEG" => Some(PixelFormat::Mjpeg),
            b"YUYV" => Some(PixelFormat::Yuyv),
            b"RGB3" => Some(PixelFormat::Rgb24),
            _ => None,
        }
    }

    /// Bytes per pixel of an uncompressed row, `None` for MJPEG.
    pub fn bytes_per_pixel(self) -> Option<usize> {
        match self {
            PixelFormat::Mjpeg => None,
            PixelFormat::Yuyv => Some(2),
            PixelFormat::Rgb24 => Some(3),
        }
    }
}

impl std::fmt::Display for PixelFormat {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            PixelFormat::Mjpeg => "MJPEG",
            PixelFormat::Yuyv => "YUYV",
            PixelFormat::Rgb24 => "RGB24",
        })
    }
}

/// Geometry of an uncompressed camera buffer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Layout {
    /// Pixels per row.
    pub width: u32,
    /// Rows.
    pub height: u32,
    /// Bytes from one row to the next (at least `width * bytes_per_pixel`).
    pub stride: usize,
}

/// Convert one camera buffer of `format` into `frame` (RGB8).
pub fn to_frame(
    format: PixelFormat,
    layout: Layout,
    src: &[u8],
    frame: &mut Frame,
) -> Result<(), String> {
    match format {
        PixelFormat::Mjpeg => decode_jpeg(src, frame),
        PixelFormat::Yuyv => {
            frame.reshape(layout.width, layout.height);
            yuyv_to_rgb(src, layout, &mut frame.data)
        }
        PixelFormat::Rgb24 => {
            frame.reshape(layout.width, layout.height);
            rgb24_copy(src, layout, &mut frame.data)
        }
    }
}

fn check(src: &[u8], layout: Layout, bpp: usize, dst: &[u8]) -> Result<(), String> {
    let (w, h) = (layout.width as usize, layout.height as usize);
    if w == 0 || h == 0 {
        return Err(format!("empty frame {w}x{h}"));
    }
    if layout.stride < w * bpp {
        return Err(format!(
            "row stride {} is shorter than {w} pixels",
            layout.stride
        ));
    }
    let need = layout.stride * (h - 1) + w * bpp;
    if src.len() < need {
        return Err(format!(
            "short buffer: {} bytes for {w}x{h} (need {need})",
            src.len()
        ));
    }
    if dst.len() != w * h * 3 {
        return Err(format!(
            "output buffer of {} bytes for {w}x{h} RGB",
            dst.len()
        ));
    }
    Ok(())
}

/// Copy RGB24 rows (dropping any row padding) into packed `dst`.
pub fn rgb24_copy(src: &[u8], layout: Layout, dst: &mut [u8]) -> Result<(), String> {
    check(src, layout, 3, dst)?;
    let row = layout.width as usize * 3;
    for (y, out) in dst.chunks_exact_mut(row).enumerate() {
        out.copy_from_slice(&src[y * layout.stride..y * layout.stride + row]);
    }
    Ok(())
}

/// YUYV 4:2:2 (limited range BT.601) to packed RGB8. The width must be even.
pub fn yuyv_to_rgb(src: &[u8], layout: Layout, dst: &mut [u8]) -> Result<(), String> {
    if !layout.width.is_multiple_of(2) {
        return Err(format!("YUYV width {} is odd", layout.width));
    }
    check(src, layout, 2, dst)?;
    let w = layout.width as usize;
    for (y, out) in dst.chunks_exact_mut(w * 3).enumerate() {
        let row = &src[y * layout.stride..y * layout.stride + w * 2];
        for (quad, px) in row.chunks_exact(4).zip(out.chunks_exact_mut(6)) {
            let (y0, u, y1, v) = (quad[0], quad[1], quad[2], quad[3]);
            let (cr, cg, cb) = chroma(u, v);
            px[..3].copy_from_slice(&yuv_px(y0, cr, cg, cb));
            px[3..].copy_from_slice(&yuv_px(y1, cr, cg, cb));
        }
    }
    Ok(())
}

/// Chroma contributions (×256) of one U, V pair.
#[inline]
fn chroma(u: u8, v: u8) -> (i32, i32, i32) {
    let d = i32::from(u) - 128;
    let e = i32::from(v) - 128;
    (409 * e, -100 * d - 208 * e, 516 * d)
}

/// One pixel: R = 1.164(Y−16) + 1.596(V−128), G = 1.164(Y−16) − 0.391(U−128) − 0.813(V−128),
/// B = 1.164(Y−16) + 2.018(U−128), in 8.8 fixed point with rounding.
#[inline]
fn yuv_px(y: u8, cr: i32, cg: i32, cb: i32) -> [u8; 3] {
    let c = 298 * (i32::from(y) - 16) + 128;
    [
        ((c + cr) >> 8).clamp(0, 255) as u8,
        ((c + cg) >> 8).clamp(0, 255) as u8,
        ((c + cb) >> 8).clamp(0, 255) as u8,
    ]
}

#[cfg(test)]
mod tests {
    use super::*;

    fn layout(w: u32, h: u32, stride: usize) -> Layout {
        Layout {
            width: w,
            height: h,
            stride,
        }
    }

    /// Float BT.601 limited-range reference.
    fn reference(y: u8, u: u8, v: u8) -> [f64; 3] {
        let c = 1.164_383 * (f64::from(y) - 16.0);
        let d = f64::from(u) - 128.0;
        let e = f64::from(v) - 128.0;
        [
            (c + 1.596_027 * e).clamp(0.0, 255.0),
            (c - 0.391_762 * d - 0.812_968 * e).clamp(0.0, 255.0),
            (c + 2.017_232 * d).clamp(0.0, 255.0),
        ]
    }

    #[test]
    fn yuyv_known_colours() {
        // Y, U, V of black, white, grey and the BT.601 primaries (limited range).
        let cases: [([u8; 3], [u8; 3]); 6] = [
            ([16, 128, 128], [0, 0, 0]),
            ([235, 128, 128], [255, 255, 255]),
            ([126, 128, 128], [128, 128, 128]),
            ([81, 90, 240], [255, 0, 0]),
            ([145, 54, 34], [0, 255, 0]),
            ([41, 240, 110], [0, 0, 255]),
        ];
        for ([y, u, v], want) in cases {
            let src = [y, u, y, v];
            let mut dst = [0u8; 6];
            yuyv_to_rgb(&src, layout(2, 1, 4), &mut dst).unwrap();
            for c in 0..3 {
                assert!(
                    dst[c].abs_diff(want[c]) <= 1,
                    "{y},{u},{v}: {dst:?} vs {want:?}"
                );
            }
            assert_eq!(dst[..3], dst[3..]);
        }
    }

    #[test]
    fn yuyv_matches_float_reference_everywhere() {
        for y in (0..=255u8).step_by(5) {
            for u in (0..=255u8).step_by(15) {
                for v in (0..=255u8).step_by(15) {
                    let mut dst = [0u8; 6];
                    yuyv_to_rgb(&[y, u, y, v], layout(2, 1, 4), &mut dst).unwrap();
                    let r = reference(y, u, v);
                    for c in 0..3 {
                        assert!(
                            (f64::from(dst[c]) - r[c]).abs() <= 1.0,
                            "{y},{u},{v} ch{c}: {} vs {}",
                            dst[c],
                            r[c]
                        );
                    }
                }
            }
        }
    }

    #[test]
    fn yuyv_pairs_share_chroma_and_stride_padding_is_skipped() {
        // 2x2 image, stride 6 (2 bytes padding per row).
        let src = [16, 128, 235, 128, 0xEE, 0xEE, 235, 128, 16, 128, 0xEE, 0xEE];
        let mut dst = [0u8; 12];
        yuyv_to_rgb(&src, layout(2, 2, 6), &mut dst).unwrap();
        assert_eq!(dst, [0, 0, 0, 255, 255, 255, 255, 255, 255, 0, 0, 0]);
    }

    #[test]
    fn rgb24_copy_drops_padding() {
        let src = [1, 2, 3, 4, 5, 6, 9, 9, 7, 8, 9, 10, 11, 12];
        let mut dst = [0u8; 12];
        rgb24_copy(&src, layout(2, 2, 8), &mut dst).unwrap();
        assert_eq!(dst, [1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12]);
    }

    #[test]
    fn short_or_malformed_buffers_are_errors() {
        let mut dst = [0u8; 12];
        assert!(yuyv_to_rgb(&[0; 7], layout(2, 2, 4), &mut dst).is_err());
        assert!(yuyv_to_rgb(&[0; 8], layout(2, 2, 2), &mut dst).is_err());
        assert!(yuyv_to_rgb(&[0; 8], layout(3, 1, 6), &mut [0; 9]).is_err());
        assert!(rgb24_copy(&[0; 11], layout(2, 2, 6), &mut dst).is_err());
        assert!(rgb24_copy(&[0; 12], layout(0, 2, 6), &mut dst).is_err());
        let mut f = Frame::default();
        assert!(to_frame(PixelFormat::Mjpeg, layout(2, 2, 0), b"junk", &mut f).is_err());
        assert!(to_frame(PixelFormat::Yuyv, layout(2, 2, 4), &[0; 3], &mut f).is_err());
    }

    #[test]
    fn fourcc_round_trip() {
        for f in PixelFormat::ALL {
            assert_eq!(PixelFormat::from_fourcc(f.fourcc()), Some(f));
        }
        assert_eq!(PixelFormat::from_fourcc(*b"JPEG"), Some(PixelFormat::Mjpeg));
        assert_eq!(PixelFormat::from_fourcc(*b"BA81"), None);
    }
}
