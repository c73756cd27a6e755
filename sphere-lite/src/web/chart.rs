//! Line charts of a device's metrics for its dashboard page, drawn as inline SVG on the server.
//!
//! Why: the dashboard has no build step, loads nothing from other origins (it often runs
//! offline) and its CSP forbids inline scripts and styles, so a chart library is out. A chart
//! here is geometry computed in Rust (numbers only) plus the `chart.html` template, which draws
//! it with SVG presentation attributes and `app.css` classes; every text (the key, the labels)
//! goes through askama's escaping like any other value on the page.

use super::time::format_utc;
use crate::domain::{DomainError, MetricQuery, Sphere, valid_metric_key};

/// Width of a chart's view box.
pub const WIDTH: f64 = 640.0;
/// Height of a chart's view box.
pub const HEIGHT: f64 = 180.0;
/// Room left of the plot for the value labels.
const LEFT: f64 = 70.0;
/// Room right of the plot.
const RIGHT: f64 = 14.0;
/// Room above the plot.
const TOP: f64 = 12.0;
/// Room below the plot for the time labels.
const BOTTOM: f64 = 30.0;
/// Up to this many points every point also gets a dot (a single point is only a dot).
const MAX_DOTS: usize = 60;

/// Keys charted when the operator chose none, in this order, if the device sends them
/// (the runtime's status report: latency, frame rate, confidence, CPU, temperature).
pub const DEFAULT_KEYS: [&str; 6] = [
    "latency_ms.p50",
    "latency_ms.p99",
    "fps",
    "confidence.mean",
    "system.cpu_percent",
    "system.temperature_c",
];

/// Most charts on one page.
pub const MAX_CHARTS: usize = 8;

/// Points per chart (evenly thinned beyond: a 600-pixel line shows no more).
pub const CHART_POINTS: usize = 300;

/// A label on the time axis.
#[derive(Debug, Clone, PartialEq)]
pub struct Tick {
    /// Horizontal position.
    pub x: String,
    /// SVG `text-anchor`: `start`, `middle` or `end`.
    pub anchor: &'static str,
    /// The time, `YYYY-MM-DD HH:MM` (UTC).
    pub text: String,
}

/// One chart, ready for `chart.html`: coordinates as numbers, texts to be escaped.
#[derive(Debug, Clone, PartialEq)]
pub struct Chart {
    /// The metric key (device-supplied; escaped by the template).
    pub key: String,
    /// Number of points drawn.
    pub count: usize,
    /// `x,y x,y …` of the line (empty below two points).
    pub line: String,
    /// (cx, cy) of the dots.
    pub dots: Vec<(String, String)>,
    /// The largest value, formatted (top of the plot).
    pub max: String,
    /// The smallest value, formatted (bottom of the plot).
    pub min: String,
    /// The newest value, formatted.
    pub last: String,
    /// Time labels.
    pub ticks: Vec<Tick>,
    /// Left, right, top and bottom edge of the plot area.
    pub plot: (String, String, String, String),
}

/// A number for a label: up to three decimals without trailing zeros, exponent form when very
/// large or very small.
pub fn format_value(v: f64) -> String {
    let a = v.abs();
    if a != 0.0 && !(1e-3..1e9).contains(&a) {
        return format!("{v:.3e}");
    }
    let text = format!("{v:.3}");
    let text = text.trim_end_matches('0').trim_end_matches('.');
    if text == "-0" { "0" } else { text }.to_owned()
}

fn coord(v: f64) -> String {
    format!("{v:.1}")
}

fn minute(unix_ms: u64) -> String {
    let mut text = format_utc(unix_ms);
    text.truncate(16);
    text
}

impl Chart {
    /// The chart of `points` (ascending by time, finite values) of `key`; `None` when there
    /// are none.
    pub fn new(key: &str, points: &[(u64, f64)]) -> Option<Chart> {
        let (first, last) = (points.first()?, points.last()?);
        let (t0, t1) = (first.0, last.0);
        let (lo, hi) = points
            .iter()
            .fold((f64::INFINITY, f64::NEG_INFINITY), |(lo, hi), p| {
                (lo.min(p.1), hi.max(p.1))
            });
        let (w, h) = (WIDTH - LEFT - RIGHT, HEIGHT - TOP - BOTTOM);
        // One instant or one value: in the middle rather than a division by zero.
        let x = |t: u64| {
            if t1 > t0 {
                LEFT + (t - t0) as f64 / (t1 - t0) as f64 * w
            } else {
                LEFT + w / 2.0
            }
        };
        let y = |v: f64| {
            if hi > lo {
                TOP + (hi - v) / (hi - lo) * h
            } else {
                TOP + h / 2.0
            }
        };
        let xy: Vec<(String, String)> = points
            .iter()
            .map(|&(t, v)| (coord(x(t)), coord(y(v))))
            .collect();
        let line = if xy.len() >= 2 {
            xy.iter()
                .map(|(a, b)| format!("{a},{b}"))
                .collect::<Vec<_>>()
                .join(" ")
        } else {
            String::new()
        };
        let ticks = if t1 > t0 {
            vec![
                Tick {
                    x: coord(LEFT),
                    anchor: "start",
                    text: minute(t0),
                },
                Tick {
                    x: coord(LEFT + w / 2.0),
                    anchor: "middle",
                    text: minute(t0 + (t1 - t0) / 2),
                },
                Tick {
                    x: coord(LEFT + w),
                    anchor: "end",
                    text: minute(t1),
                },
            ]
        } else {
            vec![Tick {
                x: coord(LEFT + w / 2.0),
                anchor: "middle",
                text: minute(t0),
            }]
        };
        Some(Chart {
            key: key.to_owned(),
            count: points.len(),
            line,
            dots: if xy.len() <= MAX_DOTS { xy } else { Vec::new() },
            max: format_value(hi),
            min: format_value(lo),
            last: format_value(last.1),
            ticks,
            plot: (coord(LEFT), coord(LEFT + w), coord(TOP), coord(TOP + h)),
        })
    }
}

/// The metrics part of a device page.
#[derive(Debug, Clone, Default)]
pub struct MetricsPanel {
    /// Every key of the device with whether it is charted (the chooser's options).
    pub keys: Vec<(String, bool)>,
    /// One chart per charted key that has points.
    pub charts: Vec<Chart>,
}

/// Refuse chosen keys that cannot be metric keys, or too many of them (a 400 on the page).
pub fn check_keys(keys: &[String]) -> Result<(), String> {
    if keys.len() > MAX_CHARTS {
        return Err(format!("choose at most {MAX_CHARTS} metrics"));
    }
    if keys.iter().any(|k| !valid_metric_key(k)) {
        return Err("`key` is not a metric key".into());
    }
    Ok(())
}

/// The charts of `device_id`: the `chosen` keys, or the [`DEFAULT_KEYS`] it has (else its
/// first keys) when none are chosen.
pub fn device_panel(
    sphere: &Sphere,
    device_id: &str,
    chosen: &[String],
) -> Result<MetricsPanel, DomainError> {
    let all = sphere.metric_keys(device_id)?.keys;
    let shown: Vec<String> = if !chosen.is_empty() {
        chosen.to_vec()
    } else {
        let defaults: Vec<String> = DEFAULT_KEYS
            .iter()
            .filter(|k| all.iter().any(|a| a == *k))
            .map(|k| (*k).to_owned())
            .collect();
        if defaults.is_empty() {
            all.iter().take(4).cloned().collect()
        } else {
            defaults
        }
    };
    let mut charts = Vec::new();
    for key in &shown {
        let series = sphere.metric_series(
            device_id,
            &MetricQuery {
                key: key.clone(),
                limit: Some(CHART_POINTS),
                ..MetricQuery::default()
            },
        )?;
        let points: Vec<(u64, f64)> = series.points.iter().map(|p| (p.unix_ms, p.value)).collect();
        charts.extend(Chart::new(key, &points));
    }
    Ok(MetricsPanel {
        keys: all
            .into_iter()
            .map(|k| {
                let on = shown.contains(&k);
                (k, on)
            })
            .collect(),
        charts,
    })
}

#[cfg(test)]
mod tests {
    use askama::Template;

    use super::*;

    /// The chart partial on its own, as the device page includes it.
    #[derive(Template)]
    #[template(source = r#"{% include "chart.html" %}"#, ext = "html")]
    struct One<'a> {
        chart: &'a Chart,
    }

    const T: u64 = 1_764_147_600_000; // 2025-11-26 09:00 UTC

    #[test]
    fn values_are_formatted_compactly() {
        assert_eq!(format_value(11.8), "11.8");
        assert_eq!(format_value(12.0), "12");
        assert_eq!(format_value(0.12345), "0.123");
        assert_eq!(format_value(-0.0001), "-1.000e-4");
        assert_eq!(format_value(0.0), "0");
        assert_eq!(format_value(-0.0), "0");
        assert_eq!(format_value(2.5e12), "2.500e12");
    }

    #[test]
    fn points_are_scaled_into_the_plot() {
        let c = Chart::new("fps", &[(T, 10.0), (T + 60_000, 20.0), (T + 120_000, 15.0)]).unwrap();
        assert_eq!(
            c.plot,
            ("70.0".into(), "626.0".into(), "12.0".into(), "150.0".into())
        );
        // Oldest at the left edge, newest at the right; the largest value on top.
        assert_eq!(c.line, "70.0,150.0 348.0,12.0 626.0,81.0");
        assert_eq!(
            (c.min.as_str(), c.max.as_str(), c.last.as_str()),
            ("10", "20", "15")
        );
        assert_eq!(c.dots.len(), 3);
        let ticks: Vec<&str> = c.ticks.iter().map(|t| t.text.as_str()).collect();
        assert_eq!(
            ticks,
            ["2025-11-26 09:00", "2025-11-26 09:01", "2025-11-26 09:02"]
        );
    }

    #[test]
    fn empty_single_and_constant_series() {
        assert_eq!(Chart::new("k", &[]), None);
        let one = Chart::new("k", &[(T, 3.0)]).unwrap();
        assert_eq!(one.line, "");
        assert_eq!(one.dots, vec![("348.0".into(), "81.0".into())]);
        assert_eq!(one.ticks.len(), 1);
        let flat = Chart::new("k", &[(T, 7.0), (T + 1000, 7.0)]).unwrap();
        assert_eq!(flat.line, "70.0,81.0 626.0,81.0");
        assert_eq!((flat.min.as_str(), flat.max.as_str()), ("7", "7"));
        let many: Vec<(u64, f64)> = (0..200).map(|i| (T + i, i as f64)).collect();
        let many = Chart::new("k", &many).unwrap();
        assert!(many.dots.is_empty());
        assert_eq!(many.line.split(' ').count(), 200);
    }

    #[test]
    fn texts_are_escaped_in_the_svg() {
        // Keys are validated before they get here; the template must not rely on it.
        let c = Chart::new("<script>x</script>&\"'", &[(T, 1.0), (T + 1, 2.0)]).unwrap();
        let svg = One { chart: &c }.render().unwrap();
        assert!(svg.contains("<svg"), "{svg}");
        assert!(!svg.contains("<script>"), "{svg}");
        assert!(svg.contains("&#60;script&#62;"), "{svg}");
        assert!(!svg.contains("style="), "CSP: no inline styles: {svg}");
    }

    #[test]
    fn chosen_keys_are_checked() {
        assert!(check_keys(&["fps".into(), "latency_ms.p50".into()]).is_ok());
        assert!(check_keys(&["<b>".into()]).is_err());
        let many: Vec<String> = (0..=MAX_CHARTS).map(|i| format!("k{i}")).collect();
        assert!(check_keys(&many).is_err());
    }
}
