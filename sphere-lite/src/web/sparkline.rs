//! The fleet page's drift trend: a device's drift events per hour over the last day as a row
//! of small bars.
//!
//! Why bars of counts: an operator scanning the fleet wants to see at once whether a device's
//! drift is new, steady or over; a number alone says none of that. Like the charts, this
//! module computes numbers only and `fleet.html` draws them as inline SVG (nothing to load,
//! nothing the CSP must allow).

use crate::domain::TREND_HOURS;

/// Width of one hour's bar in view-box units.
const BAR: u32 = 2;
/// Gap between bars.
const GAP: u32 = 1;
/// Height of the view box; the tallest bar fills it.
pub const HEIGHT: u32 = 16;
/// Width of the view box (`fleet.html` draws it 72 wide: 24 hours of bar and gap).
#[cfg(test)]
const WIDTH: u32 = TREND_HOURS as u32 * (BAR + GAP);

/// One hour's bar.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Bar {
    /// Left edge.
    pub x: u32,
    /// Top edge.
    pub y: u32,
    /// Height (at least 1 for an hour with any event, so a single event shows).
    pub h: u32,
    /// Tooltip, e.g. `3 in the hour 5 h ago`.
    pub title: String,
}

/// A device's trend: the bars of the hours with events, and the day's total.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Sparkline {
    /// Bars, oldest hour first (hours without events have none).
    pub bars: Vec<Bar>,
    /// Drift events in the last [`TREND_HOURS`] hours.
    pub total: u32,
}

/// The sparkline of `per_hour` (oldest first, the last entry the current hour).
pub fn sparkline(per_hour: &[u32; TREND_HOURS]) -> Sparkline {
    let peak = per_hour.iter().copied().max().unwrap_or(0).max(1);
    let bars = per_hour
        .iter()
        .enumerate()
        .filter(|(_, n)| **n > 0)
        .map(|(i, &n)| {
            let h = (u64::from(n) * u64::from(HEIGHT)).div_ceil(u64::from(peak)) as u32;
            let h = h.clamp(1, HEIGHT);
            let ago = TREND_HOURS - 1 - i;
            Bar {
                x: i as u32 * (BAR + GAP),
                y: HEIGHT - h,
                h,
                title: if ago == 0 {
                    format!("{n} this hour")
                } else {
                    format!("{n} in the hour {ago} h ago")
                },
            }
        })
        .collect();
    Sparkline {
        bars,
        total: per_hour.iter().sum(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bars_scale_to_the_busiest_hour_and_empty_hours_have_none() {
        let mut per_hour = [0; TREND_HOURS];
        per_hour[TREND_HOURS - 1] = 4;
        per_hour[0] = 1;
        let s = sparkline(&per_hour);
        assert_eq!(s.total, 5);
        assert_eq!(s.bars.len(), 2);
        assert_eq!((s.bars[0].x, s.bars[0].h, s.bars[0].y), (0, 4, HEIGHT - 4));
        assert_eq!(s.bars[0].title, "1 in the hour 23 h ago");
        assert_eq!(s.bars[1].h, HEIGHT);
        assert_eq!(s.bars[1].title, "4 this hour");
        assert_eq!(sparkline(&[0; TREND_HOURS]), Sparkline::default());
        assert_eq!(WIDTH, 72, "the view box fleet.html draws");
    }
}
