//! Fitting a frame to the model's input size: stretch, centre crop or letterbox,
//! resized with `fast_image_resize` into a reused buffer.

use fast_image_resize::images::{Image, ImageRef};
use fast_image_resize::{FilterType, PixelType, ResizeAlg, ResizeOptions, Resizer};

use super::ResizeMode;

/// Where the resized picture sits in the model input.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Placement {
    /// Size of the resized picture.
    pub(crate) width: usize,
    pub(crate) height: usize,
    /// Offset of its top-left corner in the input (non-zero only for letterbox).
    pub(crate) left: usize,
    pub(crate) top: usize,
}

/// The size and offset of the picture for `mode`, frame `src` and input `dst`.
pub(crate) fn placement(mode: ResizeMode, src: (usize, usize), dst: (usize, usize)) -> Placement {
    match mode {
        ResizeMode::Stretch | ResizeMode::CenterCrop => Placement {
            width: dst.0,
            height: dst.1,
            left: 0,
            top: 0,
        },
        ResizeMode::Letterbox => {
            // Scale by the smaller ratio: compare src.0/dst.0 with src.1/dst.1 in integers.
            let (sw, sh) = (src.0 as u64, src.1 as u64);
            let (dw, dh) = (dst.0 as u64, dst.1 as u64);
            let (w, h) = if sw * dh >= sh * dw {
                // Width-limited.
                (dw, ((sh * dw + sw / 2) / sw).clamp(1, dh))
            } else {
                (((sw * dh + sh / 2) / sh).clamp(1, dw), dh)
            };
            Placement {
                width: w as usize,
                height: h as usize,
                left: (dst.0 - w as usize) / 2,
                top: (dst.1 - h as usize) / 2,
            }
        }
    }
}

/// Resizes RGB8 frames; owns the resizer state and the output buffer.
pub(crate) struct Fitter {
    resizer: Resizer,
    buf: Vec<u8>,
}

impl Fitter {
    pub(crate) fn new() -> Self {
        Fitter {
            resizer: Resizer::new(),
            buf: Vec::new(),
        }
    }

    /// Resize `src` (RGB8, `w` x `h`) for `mode` into `place`; returns the packed
    /// RGB8 picture of `place.width` x `place.height`. A frame that already has
    /// the target size is returned as is (no copy).
    pub(crate) fn fit<'a>(
        &'a mut self,
        src: &'a [u8],
        (w, h): (usize, usize),
        mode: ResizeMode,
        place: Placement,
    ) -> Result<&'a [u8], String> {
        if (w, h) == (place.width, place.height) {
            return Ok(src);
        }
        let src_img = ImageRef::new(w as u32, h as u32, src, PixelType::U8x3)
            .map_err(|e| format!("frame buffer: {e}"))?;
        let len = place.width * place.height * 3;
        self.buf.resize(len, 0);
        let mut dst_img = Image::from_slice_u8(
            place.width as u32,
            place.height as u32,
            &mut self.buf[..len],
            PixelType::U8x3,
        )
        .map_err(|e| format!("resize buffer: {e}"))?;
        let mut options =
            ResizeOptions::new().resize_alg(ResizeAlg::Convolution(FilterType::Bilinear));
        if mode == ResizeMode::CenterCrop {
            options = options.fit_into_destination(Some((0.5, 0.5)));
        }
        self.resizer
            .resize(&src_img, &mut dst_img, &options)
            .map_err(|e| format!("resize: {e}"))?;
        Ok(&self.buf[..len])
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn letterbox_keeps_the_aspect_ratio_and_centres() {
        let p = placement(ResizeMode::Letterbox, (640, 480), (224, 224));
        assert_eq!(
            p,
            Placement {
                width: 224,
                height: 168,
                left: 0,
                top: 28
            }
        );
        let p = placement(ResizeMode::Letterbox, (240, 320), (96, 96));
        assert_eq!(
            p,
            Placement {
                width: 72,
                height: 96,
                left: 12,
                top: 0
            }
        );
        let p = placement(ResizeMode::Letterbox, (100, 100), (50, 50));
        assert_eq!(
            p,
            Placement {
                width: 50,
                height: 50,
                left: 0,
                top: 0
            }
        );
        // Extreme aspect ratio: never below one pixel.
        let p = placement(ResizeMode::Letterbox, (4000, 1), (10, 10));
        assert_eq!((p.width, p.height), (10, 1));
        let p = placement(ResizeMode::Stretch, (640, 480), (96, 64));
        assert_eq!(
            p,
            Placement {
                width: 96,
                height: 64,
                left: 0,
                top: 0
            }
        );
    }
}
