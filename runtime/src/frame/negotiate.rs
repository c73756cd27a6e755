//! Choosing a camera format and size from what a device offers.
//!
//! Pure functions over plain data, so the decision is unit-tested without a
//! camera: the V4L2 source only collects the offers and applies the choice.

use super::convert::PixelFormat;

/// Frame sizes a device offers for one pixel format.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SizeOffer {
    /// Exactly this size.
    Discrete {
        /// Pixels.
        width: u32,
        /// Pixels.
        height: u32,
    },
    /// Any size in a range, in steps (also V4L2's "continuous", step 1).
    Stepwise {
        /// Smallest width.
        min_width: u32,
        /// Largest width.
        max_width: u32,
        /// Width increment (0 is treated as 1).
        step_width: u32,
        /// Smallest height.
        min_height: u32,
        /// Largest height.
        max_height: u32,
        /// Height increment (0 is treated as 1).
        step_height: u32,
    },
}

/// One pixel format a device offers, with its sizes (empty: not enumerated).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FormatOffer {
    /// The format.
    pub format: PixelFormat,
    /// Sizes offered for it.
    pub sizes: Vec<SizeOffer>,
}

/// The format and size to request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Choice {
    /// Pixel format.
    pub format: PixelFormat,
    /// Width in pixels.
    pub width: u32,
    /// Height in pixels.
    pub height: u32,
}

/// Pick the first format of `prefs` that the device offers, and the offered
/// size closest to `want` (see [`closest_size`]).
///
/// `Err` lists what the device offers when none of the preferred formats is there.
pub fn choose(
    offers: &[FormatOffer],
    prefs: &[PixelFormat],
    want: (u32, u32),
) -> Result<Choice, String> {
    for &format in prefs {
        if let Some(offer) = offers.iter().find(|o| o.format == format) {
            let (mut width, height) = closest_size(&offer.sizes, want);
            if format == PixelFormat::Yuyv && width % 2 == 1 {
                width -= 1; // 4:2:2 needs pairs of pixels
            }
            return Ok(Choice {
                format,
                width: width.max(2),
                height: height.max(1),
            });
        }
    }
    let offered: Vec<String> = offers.iter().map(|o| o.format.to_string()).collect();
    Err(format!(
        "none of the preferred formats [{}] is offered (convertible formats offered: [{}])",
        prefs
            .iter()
            .map(|p| p.to_string())
            .collect::<Vec<_>>()
            .join(", "),
        offered.join(", ")
    ))
}

/// The offered size closest to `want`: the exact size if offered; else the
/// smallest offered size at least as large in both dimensions (downscaling
/// keeps detail); else the largest offered size. No offers: `want` itself (the
/// driver adjusts it when the format is set).
pub fn closest_size(sizes: &[SizeOffer], want: (u32, u32)) -> (u32, u32) {
    let mut best: Option<((u32, u32), (u8, u64))> = None;
    for candidate in sizes.iter().map(|s| nearest_in(s, want)) {
        let score = rank(candidate, want);
        if best.is_none_or(|(_, b)| score < b) {
            best = Some((candidate, score));
        }
    }
    best.map_or(want, |(size, _)| size)
}

/// Lower is better: (class, tie-breaker).
fn rank((w, h): (u32, u32), (ww, wh): (u32, u32)) -> (u8, u64) {
    let area = u64::from(w) * u64::from(h);
    if (w, h) == (ww, wh) {
        (0, 0)
    } else if w >= ww && h >= wh {
        (1, area)
    } else {
        (2, u64::MAX - area)
    }
}

/// The size of `offer` nearest to `want`.
fn nearest_in(offer: &SizeOffer, want: (u32, u32)) -> (u32, u32) {
    match *offer {
        SizeOffer::Discrete { width, height } => (width, height),
        SizeOffer::Stepwise {
            min_width,
            max_width,
            step_width,
            min_height,
            max_height,
            step_height,
        } => (
            snap(want.0, min_width, max_width, step_width),
            snap(want.1, min_height, max_height, step_height),
        ),
    }
}

/// `v` clamped to `lo..=hi` and rounded up to `lo + k * step` (staying within `hi`).
fn snap(v: u32, lo: u32, hi: u32, step: u32) -> u32 {
    let hi = hi.max(lo);
    let step = step.max(1);
    let v = v.clamp(lo, hi);
    let k = (v - lo).div_ceil(step);
    let snapped = u64::from(lo) + u64::from(k) * u64::from(step);
    if snapped > u64::from(hi) {
        lo + (hi - lo) / step * step
    } else {
        snapped as u32
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use PixelFormat::*;

    fn d(width: u32, height: u32) -> SizeOffer {
        SizeOffer::Discrete { width, height }
    }

    fn offer(format: PixelFormat, sizes: &[SizeOffer]) -> FormatOffer {
        FormatOffer {
            format,
            sizes: sizes.to_vec(),
        }
    }

    #[test]
    fn preference_order_decides_the_format() {
        let offers = [
            offer(Yuyv, &[d(640, 480)]),
            offer(Mjpeg, &[d(640, 480), d(1280, 720)]),
        ];
        let c = choose(&offers, &[Mjpeg, Yuyv], (640, 480)).unwrap();
        assert_eq!(
            c,
            Choice {
                format: Mjpeg,
                width: 640,
                height: 480
            }
        );
        let c = choose(&offers, &[Rgb24, Yuyv, Mjpeg], (640, 480)).unwrap();
        assert_eq!(c.format, Yuyv);
        let err = choose(&offers, &[Rgb24], (640, 480)).unwrap_err();
        assert!(
            err.contains("RGB24") && err.contains("YUYV, MJPEG"),
            "{err}"
        );
        assert!(choose(&[], &[Yuyv], (640, 480)).is_err());
    }

    #[test]
    fn size_is_exact_else_smallest_covering_else_largest() {
        let sizes = [d(320, 240), d(1280, 720), d(800, 600), d(160, 120)];
        assert_eq!(closest_size(&sizes, (320, 240)), (320, 240));
        assert_eq!(closest_size(&sizes, (640, 480)), (800, 600));
        assert_eq!(closest_size(&sizes, (1920, 1080)), (1280, 720));
        assert_eq!(closest_size(&[], (640, 480)), (640, 480));
    }

    #[test]
    fn stepwise_sizes_snap_to_the_grid() {
        let s = SizeOffer::Stepwise {
            min_width: 32,
            max_width: 2592,
            step_width: 16,
            min_height: 32,
            max_height: 1944,
            step_height: 16,
        };
        assert_eq!(closest_size(&[s], (640, 480)), (640, 480));
        assert_eq!(closest_size(&[s], (641, 470)), (656, 480));
        assert_eq!(closest_size(&[s], (9000, 10)), (2592, 32));
        assert_eq!(snap(100, 10, 95, 10), 90);
        assert_eq!(snap(5, 10, 10, 0), 10);
    }

    #[test]
    fn yuyv_width_is_made_even() {
        let offers = [offer(Yuyv, &[d(641, 480)])];
        let c = choose(&offers, &[Yuyv], (641, 480)).unwrap();
        assert_eq!((c.width, c.height), (640, 480));
    }
}
