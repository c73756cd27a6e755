//! Line charts of a device's metrics for its dashboard page, drawn as inline SVG on the server.
//!
//! Why: the dashboard has no build step, loads nothing from other origins (it often runs
//! offline) and its CSP forbids inline scripts and styles, so a chart library is out. A chart
//! here is geometry computed in Rust (numbers only) plus the `chart.html` template, which draws
//! it with SVG presentation attributes and `app.css` classes; every text (the key, the labels)
//! goes through askama's escaping like any other value on the page.

use std::collections::BTreeMap;

use tinylcm_protocol::api::{DriftEventQuery, DriftEventView};
use tinylcm_protocol::learning::{LearningEvent, LearningEventView};
use tinylcm_protocol::metric_keys::{self, Scale};

use super::time::format_utc;
use crate::domain::{DomainError, MetricQuery, Sphere, valid_metric_key};

/// Width of a chart's view box (the SVG scales to its card's width; text scales with it).
pub const WIDTH: f64 = 960.0;
/// Height of a chart's view box.
pub const HEIGHT: f64 = 220.0;
/// Room left of the plot for the value labels.
const LEFT: f64 = 70.0;
/// Room right of the plot.
const RIGHT: f64 = 16.0;
/// Room above the plot (incident marker labels).
const TOP: f64 = 16.0;
/// Room below the plot for the time labels.
const BOTTOM: f64 = 30.0;
/// Up to this many points every point also gets a dot (a single point is only a dot).
const MAX_DOTS: usize = 60;
/// About this many labels on each axis.
const TARGET_TICKS: usize = 5;

/// Keys charted when the operator chose none, in this order, if the device sends them: the
/// protocol crate's list, which the runtime's metrics builder writes from the same constants.
pub const DEFAULT_KEYS: [&str; 6] = metric_keys::DEFAULT_CHARTS;

/// Most charts on one page.
pub const MAX_CHARTS: usize = 8;

/// Points per chart (evenly thinned beyond: a 900-unit line shows no more).
pub const CHART_POINTS: usize = 300;

/// Most drift events (and most learning events) looked at for a device page's markers.
pub const MARKER_EVENTS: usize = 200;

/// What a vertical marker on a chart stands for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum MarkerKind {
    /// A drift incident's first onset.
    Incident,
    /// An adaptation round the guard kept.
    Adaptation,
    /// An adaptation round the guard rolled back.
    Rollback,
}

impl MarkerKind {
    /// The marker's CSS class (also its legend's).
    pub fn class(self) -> &'static str {
        match self {
            MarkerKind::Incident => "incident",
            MarkerKind::Adaptation => "adaptation",
            MarkerKind::Rollback => "rollback",
        }
    }

    /// The SVG stroke colour (the legend's colour in `app.css` is the same).
    pub fn colour(self) -> &'static str {
        match self {
            MarkerKind::Incident => "#d97706",
            MarkerKind::Adaptation => "#16a34a",
            MarkerKind::Rollback => "#dc2626",
        }
    }

    /// The legend's words.
    pub fn label(self) -> &'static str {
        match self {
            MarkerKind::Incident => "drift incident",
            MarkerKind::Adaptation => "adaptation kept",
            MarkerKind::Rollback => "adaptation rolled back",
        }
    }
}

/// A label on the time axis, with its grid line.
#[derive(Debug, Clone, PartialEq)]
pub struct Tick {
    /// Horizontal position.
    pub x: String,
    /// SVG `text-anchor`: `start`, `middle` or `end`.
    pub anchor: &'static str,
    /// The time (UTC): `HH:MM`, `HH:MM:SS` for short spans, `MM-DD HH:MM` over a day.
    pub text: String,
}

/// A value label on the y axis, with its grid line.
#[derive(Debug, Clone, PartialEq)]
pub struct YTick {
    /// Vertical position.
    pub y: String,
    /// The value, formatted.
    pub text: String,
}

/// A vertical marker: a drift incident's first onset, or an adaptation round's verdict, on the
/// device.
#[derive(Debug, Clone, PartialEq)]
pub struct Marker {
    /// Horizontal position.
    pub x: String,
    /// What happened, e.g. `incident 3` (escaped by the template).
    pub text: String,
    /// Which kind of marker.
    pub kind: MarkerKind,
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
    /// The largest value, formatted.
    pub max: String,
    /// The smallest value, formatted.
    pub min: String,
    /// The newest value, formatted.
    pub last: String,
    /// Points outside the y axis (drawn at its edge): a start-up spike does not flatten the
    /// rest of the line.
    pub clipped: usize,
    /// Time labels.
    pub ticks: Vec<Tick>,
    /// Value labels.
    pub yticks: Vec<YTick>,
    /// Incident and adaptation markers inside the time range.
    pub markers: Vec<Marker>,
    /// The kinds of marker drawn, for the legend.
    pub legend: Vec<MarkerKind>,
    /// Left, right, top and bottom edge of the plot area.
    pub plot: (String, String, String, String),
    /// The view box's width and height.
    pub size: (String, String),
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

/// A "nice" step (1, 2 or 5 × 10ⁿ) giving about [`TARGET_TICKS`] labels over `span`.
fn nice_step(span: f64) -> f64 {
    let raw = span / TARGET_TICKS as f64;
    let mag = 10f64.powf(raw.log10().floor());
    let f = raw / mag;
    let nice = if f <= 1.0 {
        1.0
    } else if f <= 2.0 {
        2.0
    } else if f <= 5.0 {
        5.0
    } else {
        10.0
    };
    nice * mag
}

/// The value at quantile `q` of sorted `v`.
fn quantile(v: &[f64], q: f64) -> f64 {
    let i = ((v.len() - 1) as f64 * q).round() as usize;
    v[i.min(v.len() - 1)]
}

/// The y axis of `values` of `key`: (bottom, top, step). Confidences run 0..1, percentages
/// from 0 to at least 100 and other non-negative series from 0, so a small dip looks small;
/// the top leaves out outliers far outside the middle half (Tukey's fence at 3 × the
/// interquartile range), so one start-up spike does not squash the rest (it is drawn at the
/// edge and counted); ends are rounded out to a nice step.
fn y_axis(key: &str, values: &[f64]) -> (f64, f64, f64) {
    let mut v = values.to_vec();
    v.sort_by(f64::total_cmp);
    let (min, max) = (v[0], v[v.len() - 1]);
    let (q1, q3) = (quantile(&v, 0.25), quantile(&v, 0.75));
    let fence = 3.0 * (q3 - q1);
    let mut lo = min.max(q1 - fence);
    let mut hi = max.min(q3 + fence);
    match metric_keys::scale_of(key) {
        Scale::Fraction if min >= 0.0 && max <= 1.0 => return (0.0, 1.0, 0.2),
        Scale::Percent if min >= 0.0 => {
            lo = 0.0;
            hi = hi.max(100.0);
        }
        _ => {
            // A quantity that never went below 0 (all of the runtime's: latency, fps,
            // temperature) reads from 0, so 15 fps ± 0.05 is a flat line, not a zigzag
            // filling the plot. (Zoom in by charting a narrower key, e.g. a percentile.)
            if lo >= 0.0 {
                lo = 0.0;
            }
        }
    }
    if hi <= lo {
        // One value: a band around it.
        let pad = if lo == 0.0 { 1.0 } else { lo.abs() * 0.1 };
        lo -= pad;
        hi += pad;
        if min >= 0.0 && lo < 0.0 {
            lo = 0.0;
        }
    }
    let step = nice_step(hi - lo);
    ((lo / step).floor() * step, (hi / step).ceil() * step, step)
}

/// Time steps a time axis may use, ms.
const TIME_STEPS: [u64; 17] = [
    1_000,
    5_000,
    10_000,
    30_000,
    60_000,
    2 * 60_000,
    5 * 60_000,
    10 * 60_000,
    15 * 60_000,
    30 * 60_000,
    3_600_000,
    2 * 3_600_000,
    3 * 3_600_000,
    6 * 3_600_000,
    12 * 3_600_000,
    86_400_000,
    7 * 86_400_000,
];

/// The time label of `unix_ms` at the resolution `step` needs (`YYYY-MM-DD HH:MM:SS` cut).
fn time_label(unix_ms: u64, step: u64, span: u64) -> String {
    let full = format_utc(unix_ms); // YYYY-MM-DD HH:MM:SS…
    let (from, to) = if span >= 86_400_000 {
        (5, 16) // MM-DD HH:MM
    } else if step < 60_000 {
        (11, 19) // HH:MM:SS
    } else {
        (11, 16) // HH:MM
    };
    full.get(from..to).unwrap_or(&full).to_owned()
}

/// Time ticks at round multiples of the smallest step giving at most [`TARGET_TICKS`] distinct
/// labels over `t0..=t1`.
fn time_ticks(t0: u64, t1: u64, x: impl Fn(u64) -> f64) -> Vec<Tick> {
    let span = t1 - t0;
    let step = TIME_STEPS
        .iter()
        .copied()
        .find(|s| span / s < TARGET_TICKS as u64 - 1)
        .unwrap_or_else(|| span.div_ceil(TARGET_TICKS as u64).max(1));
    let mut ticks: Vec<Tick> = Vec::new();
    let mut t = t0.div_ceil(step) * step;
    while t <= t1 {
        let text = time_label(t, step, span);
        if ticks.last().is_none_or(|last| last.text != text) {
            ticks.push(Tick {
                x: coord(x(t)),
                anchor: "middle",
                text,
            });
        }
        t += step;
    }
    ticks
}

impl Chart {
    /// The chart of `points` (ascending by time, finite values) of `key`, with a marker per
    /// `(unix_ms, kind, text)` of `markers` inside its time range; `None` when there are no
    /// points.
    pub fn new(
        key: &str,
        points: &[(u64, f64)],
        markers: &[(u64, MarkerKind, String)],
    ) -> Option<Chart> {
        let (first, last) = (points.first()?, points.last()?);
        let (t0, t1) = (first.0, last.0);
        let values: Vec<f64> = points.iter().map(|p| p.1).collect();
        let (min, max) = values
            .iter()
            .fold((f64::INFINITY, f64::NEG_INFINITY), |(lo, hi), v| {
                (lo.min(*v), hi.max(*v))
            });
        let (lo, hi, step) = y_axis(key, &values);
        let (w, h) = (WIDTH - LEFT - RIGHT, HEIGHT - TOP - BOTTOM);
        // One instant: in the middle rather than a division by zero.
        let x = |t: u64| {
            if t1 > t0 {
                LEFT + (t - t0) as f64 / (t1 - t0) as f64 * w
            } else {
                LEFT + w / 2.0
            }
        };
        let y = |v: f64| TOP + (hi - v.clamp(lo, hi)) / (hi - lo) * h;
        let clipped = values.iter().filter(|v| **v < lo || **v > hi).count();
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
            time_ticks(t0, t1, x)
        } else {
            vec![Tick {
                x: coord(LEFT + w / 2.0),
                anchor: "middle",
                text: time_label(t0, 60_000, 0),
            }]
        };
        let n = ((hi - lo) / step).round() as usize;
        let yticks = (0..=n.min(20))
            .map(|i| {
                let v = lo + step * i as f64;
                YTick {
                    y: coord(y(v)),
                    // Round away float noise (0.6000000001).
                    text: format_value((v / step).round() * step),
                }
            })
            .collect();
        let markers: Vec<Marker> = markers
            .iter()
            .filter(|(t, _, _)| t1 > t0 && (t0..=t1).contains(t))
            .map(|(t, kind, text)| Marker {
                x: coord(x(*t)),
                text: text.clone(),
                kind: *kind,
            })
            .collect();
        let mut legend: Vec<MarkerKind> = markers.iter().map(|m| m.kind).collect();
        legend.sort();
        legend.dedup();
        Some(Chart {
            key: key.to_owned(),
            count: points.len(),
            line,
            dots: if xy.len() <= MAX_DOTS { xy } else { Vec::new() },
            max: format_value(max),
            min: format_value(min),
            last: format_value(last.1),
            clipped,
            ticks,
            yticks,
            markers,
            legend,
            plot: (coord(LEFT), coord(LEFT + w), coord(TOP), coord(TOP + h)),
            size: (coord(WIDTH), coord(HEIGHT)),
        })
    }
}

/// One group of the metric chooser: the keys under one first part (`latency`, `system`, …).
#[derive(Debug, Clone, Default)]
pub struct KeyGroup {
    /// The first part of its keys (`(top level)` for keys without a dot).
    pub name: String,
    /// Its keys, with whether each is charted.
    pub keys: Vec<(String, bool)>,
    /// Whether a key of it is charted (the group opens).
    pub open: bool,
}

/// The metrics part of a device page.
#[derive(Debug, Clone, Default)]
pub struct MetricsPanel {
    /// Every key of the device with whether it is charted, grouped by first part.
    pub groups: Vec<KeyGroup>,
    /// Whether the device has any key.
    pub any_keys: bool,
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

/// `keys` grouped by their first part, groups and keys in the order given.
fn group_keys(keys: Vec<(String, bool)>) -> Vec<KeyGroup> {
    let mut groups: BTreeMap<String, KeyGroup> = BTreeMap::new();
    for (k, on) in keys {
        let name = match k.split_once('.') {
            Some((first, _)) => first.to_owned(),
            None => "(top level)".to_owned(),
        };
        let g = groups.entry(name.clone()).or_insert_with(|| KeyGroup {
            name,
            ..KeyGroup::default()
        });
        g.open |= on;
        g.keys.push((k, on));
    }
    groups.into_values().collect()
}

/// The markers of `device_id`'s charts, by device time: the first onset of each drift
/// incident and each adaptation round the guard kept or rolled back.
fn device_markers(
    sphere: &Sphere,
    device_id: &str,
) -> Result<Vec<(u64, MarkerKind, String)>, DomainError> {
    let list = sphere.list_drift_events(&DriftEventQuery {
        device: Some(device_id.to_owned()),
        limit: Some(MARKER_EVENTS),
        ..DriftEventQuery::default()
    })?;
    let mut markers: Vec<(u64, MarkerKind, String)> = first_onsets(&list.events)
        .into_iter()
        .map(|(t, text)| (t, MarkerKind::Incident, text))
        .collect();
    markers.extend(verdicts(&sphere.learning_events(device_id, MARKER_EVENTS)?));
    markers.sort();
    Ok(markers)
}

/// A marker per adaptation round the guard kept or rolled back.
fn verdicts(events: &[LearningEventView]) -> Vec<(u64, MarkerKind, String)> {
    events
        .iter()
        .filter_map(|e| match &e.event {
            LearningEvent::RoundKept { round, added, .. } => Some((
                e.unix_ms,
                MarkerKind::Adaptation,
                format!("adaptation round {round} kept ({added} samples added)"),
            )),
            LearningEvent::RoundRolledBack { round, reason, .. } => Some((
                e.unix_ms,
                MarkerKind::Rollback,
                format!("adaptation round {round} rolled back: {reason}"),
            )),
            _ => None,
        })
        .collect()
}

/// The earliest event of each incident (several detectors report one incident), by time.
fn first_onsets(events: &[DriftEventView]) -> Vec<(u64, String)> {
    let mut first: BTreeMap<(Option<&str>, u64), u64> = BTreeMap::new();
    for e in events {
        let at = first
            .entry((e.epoch.as_deref(), e.incident))
            .or_insert(e.unix_ms);
        *at = (*at).min(e.unix_ms);
    }
    let mut out: Vec<(u64, String)> = first
        .into_iter()
        .map(|((_, incident), t)| (t, format!("incident {incident}")))
        .collect();
    out.sort();
    out
}

/// The charts of `device_id`: the `chosen` keys, or the [`DEFAULT_KEYS`] it has (else its
/// first keys) when none are chosen; drift incidents and adaptation verdicts marked on each.
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
    let markers = if shown.is_empty() {
        Vec::new()
    } else {
        device_markers(sphere, device_id)?
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
        charts.extend(Chart::new(key, &points, &markers));
    }
    let any_keys = !all.is_empty();
    Ok(MetricsPanel {
        groups: group_keys(
            all.into_iter()
                .map(|k| {
                    let on = shown.contains(&k);
                    (k, on)
                })
                .collect(),
        ),
        any_keys,
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

    fn none() -> Vec<(u64, MarkerKind, String)> {
        Vec::new()
    }

    #[test]
    fn points_are_scaled_into_the_plot() {
        let c = Chart::new(
            "fps",
            &[(T, 10.0), (T + 60_000, 20.0), (T + 120_000, 15.0)],
            &none(),
        )
        .unwrap();
        assert_eq!(
            c.plot,
            ("70.0".into(), "944.0".into(), "16.0".into(), "190.0".into())
        );
        // Oldest at the left edge, newest at the right; the axis runs 0..20, so 20 is on top
        // and 10 half-way.
        assert_eq!(c.line, "70.0,103.0 507.0,16.0 944.0,59.5");
        assert_eq!(
            (c.min.as_str(), c.max.as_str(), c.last.as_str()),
            ("10", "20", "15")
        );
        assert_eq!(c.dots.len(), 3);
        let ticks: Vec<&str> = c.ticks.iter().map(|t| t.text.as_str()).collect();
        assert_eq!(ticks, ["09:00", "09:01", "09:02"]);
    }

    /// Fails before this change: the y axis had only two labels, the raw min and max.
    #[test]
    fn the_y_axis_has_nice_ticks() {
        let c = Chart::new("fps", &[(T, 10.0), (T + 60_000, 23.0)], &none()).unwrap();
        let labels: Vec<&str> = c.yticks.iter().map(|t| t.text.as_str()).collect();
        assert_eq!(labels, ["0", "5", "10", "15", "20", "25"]);
        let c = Chart::new("x", &[(T, 0.1), (T + 1, 0.7)], &none()).unwrap();
        let labels: Vec<&str> = c.yticks.iter().map(|t| t.text.as_str()).collect();
        // A series that never went negative reads from 0.
        assert_eq!(labels, ["0", "0.2", "0.4", "0.6", "0.8"]);
        // Fails before this change: 15 fps ± 0.05 (a paced camera) filled the plot's height.
        let c = Chart::new("fps_interval", &[(T, 14.96), (T + 1, 15.06)], &none()).unwrap();
        assert_eq!(c.yticks.first().unwrap().text, "0");
        assert_eq!(c.yticks.last().unwrap().text, "20");
        let c = Chart::new("x", &[(T, -3.0), (T + 1, 4.0)], &none()).unwrap();
        assert_eq!(c.yticks.first().unwrap().text, "-4");
    }

    /// Fails before this change: confidence was scaled 0.956..1, so a 4-point dip filled the
    /// plot's height.
    #[test]
    fn confidence_axes_run_from_0_to_1_and_percent_from_0_to_100() {
        let c = Chart::new(
            "confidence.mean",
            &[(T, 1.0), (T + 1000, 0.956), (T + 2000, 1.0)],
            &none(),
        )
        .unwrap();
        let labels: Vec<&str> = c.yticks.iter().map(|t| t.text.as_str()).collect();
        assert_eq!(labels, ["0", "0.2", "0.4", "0.6", "0.8", "1"]);
        let cpu = Chart::new(
            "system.process_cpu_percent",
            &[(T, 40.0), (T + 1000, 44.0)],
            &none(),
        )
        .unwrap();
        assert_eq!(cpu.yticks.first().unwrap().text, "0");
        assert_eq!(cpu.yticks.last().unwrap().text, "100");
    }

    /// Fails before this change: one start-up value of 1,200 fps made a steady 30 fps a flat
    /// line at the bottom.
    #[test]
    fn a_start_up_spike_does_not_flatten_the_line() {
        let mut points = vec![(T, 1200.0)];
        points.extend((1..100).map(|i| (T + i * 1000, 30.0 + (i % 5) as f64)));
        let c = Chart::new("fps_interval", &points, &none()).unwrap();
        assert_eq!(c.clipped, 1);
        assert_eq!(c.max, "1200");
        let top: f64 = c.yticks.last().unwrap().text.parse().unwrap();
        assert!((34.0..=50.0).contains(&top), "axis top {top}");
    }

    /// Fails before this change: labels were start, middle and end, cut to minutes, so
    /// charts shorter than two minutes repeated a label.
    #[test]
    fn time_labels_are_distinct_round_times() {
        let c = Chart::new("k", &[(T + 7_000, 1.0), (T + 95_000, 2.0)], &none()).unwrap();
        let ticks: Vec<&str> = c.ticks.iter().map(|t| t.text.as_str()).collect();
        assert_eq!(ticks, ["09:00:30", "09:01:00", "09:01:30"]);
        let day = Chart::new("k", &[(T, 1.0), (T + 3 * 86_400_000, 2.0)], &none()).unwrap();
        let ticks: Vec<&str> = day.ticks.iter().map(|t| t.text.as_str()).collect();
        let mut distinct = ticks.clone();
        distinct.dedup();
        assert_eq!(ticks, distinct);
        assert!(ticks.len() >= 3, "{ticks:?}");
        assert!(ticks[0].starts_with("11-"), "{ticks:?}");
    }

    #[test]
    fn incidents_inside_the_range_are_marked() {
        let markers = vec![
            (T - 1, MarkerKind::Incident, "incident 1".to_string()),
            (T + 500, MarkerKind::Incident, "incident 2".to_string()),
        ];
        let c = Chart::new("k", &[(T, 1.0), (T + 1000, 2.0)], &markers).unwrap();
        assert_eq!(
            c.markers,
            vec![Marker {
                x: "507.0".into(),
                text: "incident 2".into(),
                kind: MarkerKind::Incident,
            }]
        );
        assert_eq!(c.legend, vec![MarkerKind::Incident]);
    }

    /// Fails before this change: a device's adaptation rounds were on its timeline only, so a
    /// chart could not show whether a dip followed an adaptation or its rollback.
    #[test]
    fn kept_and_rolled_back_rounds_are_marked_with_their_own_legend() {
        let learnt = |seq: u64, unix_ms: u64, event: serde_json::Value| {
            serde_json::from_value::<LearningEventView>(serde_json::json!({
                "device_id": "d", "package_id": "p", "event_seq": seq, "unix_ms": unix_ms,
                "received_unix_ms": unix_ms, "event": event
            }))
            .unwrap()
        };
        let events = [
            learnt(
                1,
                T + 100,
                serde_json::json!({"kind": "round-kept", "round": 1, "added": 14}),
            ),
            learnt(
                2,
                T + 200,
                serde_json::json!({"kind": "new-class", "round": 2, "class": "new-1", "members": 9}),
            ),
            learnt(
                3,
                T + 300,
                serde_json::json!({"kind": "round-rolled-back", "round": 2, "reason": "protected-samples", "added": 9}),
            ),
        ];
        let mut markers = verdicts(&events);
        assert_eq!(
            markers,
            vec![
                (
                    T + 100,
                    MarkerKind::Adaptation,
                    "adaptation round 1 kept (14 samples added)".to_string()
                ),
                (
                    T + 300,
                    MarkerKind::Rollback,
                    "adaptation round 2 rolled back: protected-samples".to_string()
                ),
            ]
        );
        markers.push((T + 50, MarkerKind::Incident, "incident 1".to_string()));
        let c = Chart::new("k", &[(T, 1.0), (T + 1000, 2.0)], &markers).unwrap();
        assert_eq!(c.markers.len(), 3);
        assert_eq!(
            c.legend,
            vec![
                MarkerKind::Incident,
                MarkerKind::Adaptation,
                MarkerKind::Rollback
            ]
        );
        let svg = One { chart: &c }.render().unwrap();
        for drawn in [
            r#"class="chart-marker rollback""#,
            r##"stroke="#16a34a""##,
            "adaptation rolled back</figcaption>",
        ] {
            assert!(svg.contains(drawn), "{drawn} in {svg}");
        }
    }

    #[test]
    fn one_incident_is_one_marker_at_its_first_onset() {
        let event = |incident: u64, unix_ms: u64| {
            serde_json::from_value::<DriftEventView>(serde_json::json!({
                "id": unix_ms, "device_id": "d", "package_id": "p", "event_seq": unix_ms,
                "incident": incident, "detector": "x", "statistic": 1.0, "threshold": 1.0,
                "magnitude": 1.0, "sample_id": 1, "unix_ms": unix_ms, "received_unix_ms": 1,
                "samples": [], "status": "pending"
            }))
            .unwrap()
        };
        let m = first_onsets(&[event(3, 20), event(3, 10), event(4, 30)]);
        assert_eq!(
            m,
            vec![
                (10, "incident 3".to_string()),
                (30, "incident 4".to_string())
            ]
        );
    }

    #[test]
    fn keys_are_grouped_by_first_part() {
        let g = group_keys(vec![
            ("fps".into(), true),
            ("latency.total.p50_us".into(), false),
            ("latency.invoke.p50_us".into(), true),
        ]);
        let names: Vec<&str> = g.iter().map(|g| g.name.as_str()).collect();
        assert_eq!(names, ["(top level)", "latency"]);
        assert_eq!(g[1].keys.len(), 2);
        assert!(g[1].open);
    }

    #[test]
    fn empty_single_and_constant_series() {
        assert_eq!(Chart::new("k", &[], &none()), None);
        let one = Chart::new("k", &[(T, 3.0)], &none()).unwrap();
        assert_eq!(one.line, "");
        assert_eq!(one.dots.len(), 1);
        assert_eq!(one.dots[0].0, "507.0");
        assert_eq!(one.ticks.len(), 1);
        let flat = Chart::new("k", &[(T, 7.0), (T + 1000, 7.0)], &none()).unwrap();
        assert_eq!((flat.min.as_str(), flat.max.as_str()), ("7", "7"));
        let ys: Vec<&str> = flat
            .line
            .split(' ')
            .map(|p| p.split(',').nth(1).unwrap())
            .collect();
        assert_eq!(ys[0], ys[1]);
        let many: Vec<(u64, f64)> = (0..200).map(|i| (T + i, i as f64)).collect();
        let many = Chart::new("k", &many, &none()).unwrap();
        assert!(many.dots.is_empty());
        assert_eq!(many.line.split(' ').count(), 200);
    }

    #[test]
    fn texts_are_escaped_in_the_svg() {
        // Keys are validated before they get here; the template must not rely on it.
        let c = Chart::new(
            "<script>x</script>&\"'",
            &[(T, 1.0), (T + 1, 2.0)],
            &[(T, MarkerKind::Incident, "<b>".to_string())],
        )
        .unwrap();
        let svg = One { chart: &c }.render().unwrap();
        assert!(svg.contains("<svg"), "{svg}");
        assert!(!svg.contains("<script>"), "{svg}");
        assert!(!svg.contains("<b>"), "{svg}");
        assert!(svg.contains("&#60;script&#62;"), "{svg}");
        assert!(!svg.contains("style="), "CSP: no inline styles: {svg}");
        // Responsive: the view box scales to the card's width.
        assert!(svg.contains(r#"width="100%""#), "{svg}");
    }

    #[test]
    fn chosen_keys_are_checked() {
        assert!(check_keys(&["fps".into(), "latency_ms.p50".into()]).is_ok());
        assert!(check_keys(&["<b>".into()]).is_err());
        let many: Vec<String> = (0..=MAX_CHARTS).map(|i| format!("k{i}")).collect();
        assert!(check_keys(&many).is_err());
    }
}
