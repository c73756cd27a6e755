//! The fleet map: devices with a location (set by an operator in their settings) as labelled
//! points on an equirectangular lat/lon graticule, each linking to its device page.
//!
//! Why no map tiles: the server often runs where there is no internet, and the dashboard's CSP
//! loads nothing from other origins. A graticule still shows where devices are relative to
//! each other; exact places are in the device settings. Like the charts, this module computes
//! numbers and the `map.html` template draws them, escaping every text.

use crate::domain::DeviceSummary;
use crate::ports::DeviceSettings;

/// Width of the map's view box (2 units per degree of longitude).
pub const WIDTH: f64 = 720.0;
/// Height of the map's view box (2 units per degree of latitude).
pub const HEIGHT: f64 = 360.0;
/// Degrees between graticule lines.
const STEP: i32 = 30;

/// One located device.
#[derive(Debug, Clone, PartialEq)]
pub struct MapPoint {
    /// Its device page.
    pub href: String,
    /// Horizontal position.
    pub x: String,
    /// Vertical position.
    pub y: String,
    /// Where the label starts.
    pub label_x: String,
    /// SVG `text-anchor` of the label (`end` near the right edge, so it stays visible).
    pub anchor: &'static str,
    /// Its name (device- or operator-supplied; escaped by the template).
    pub label: String,
    /// `lat, lon` for the tooltip.
    pub position: String,
}

/// The map of the located devices of one fleet page.
#[derive(Debug, Clone, PartialEq)]
pub struct FleetMap {
    /// Graticule lines: (x1, y1, x2, y2).
    pub grid: Vec<(String, String, String, String)>,
    /// The devices.
    pub points: Vec<MapPoint>,
}

/// Equirectangular projection into the view box; out-of-range input is clamped to the edge.
pub fn project(latitude: f64, longitude: f64) -> (f64, f64) {
    let lon = longitude.clamp(-180.0, 180.0);
    let lat = latitude.clamp(-90.0, 90.0);
    ((lon + 180.0) * WIDTH / 360.0, (90.0 - lat) * HEIGHT / 180.0)
}

fn num(v: f64) -> String {
    format!("{v:.1}")
}

fn graticule() -> Vec<(String, String, String, String)> {
    let meridians = (-180 / STEP..=180 / STEP).map(|i| {
        let (x, _) = project(0.0, f64::from(i * STEP));
        (num(x), num(0.0), num(x), num(HEIGHT))
    });
    let parallels = (-90 / STEP..=90 / STEP).map(|i| {
        let (_, y) = project(f64::from(i * STEP), 0.0);
        (num(0.0), num(y), num(WIDTH), num(y))
    });
    meridians.chain(parallels).collect()
}

impl FleetMap {
    /// The map of `located` (device id, label, latitude, longitude); `None` when it is empty.
    pub fn new(located: &[(String, String, f64, f64)]) -> Option<FleetMap> {
        if located.is_empty() {
            return None;
        }
        let points = located
            .iter()
            .filter(|(_, _, lat, lon)| lat.is_finite() && lon.is_finite())
            .map(|(id, label, lat, lon)| {
                let (x, y) = project(*lat, *lon);
                let right = x > WIDTH - 140.0;
                MapPoint {
                    href: format!("/ui/devices/{id}"),
                    x: num(x),
                    y: num(y),
                    label_x: num(if right { x - 6.0 } else { x + 6.0 }),
                    anchor: if right { "end" } else { "start" },
                    label: label.clone(),
                    position: format!("{lat:.4}, {lon:.4}"),
                }
            })
            .collect();
        Some(FleetMap {
            grid: graticule(),
            points,
        })
    }
}

/// The map of the devices of one fleet page that have a location (`None` when none has).
pub fn fleet_map(devices: &[(&DeviceSummary, &DeviceSettings)]) -> Option<FleetMap> {
    let mut located = Vec::new();
    for (d, settings) in devices {
        if let Some(l) = settings.location {
            let label = super::display_name(d, Some(settings));
            located.push((d.device_id.clone(), label, l.latitude, l.longitude));
        }
    }
    FleetMap::new(&located)
}

#[cfg(test)]
mod tests {
    use askama::Template;

    use super::*;

    #[derive(Template)]
    #[template(source = r#"{% include "map.html" %}"#, ext = "html")]
    struct Only<'a> {
        map: &'a FleetMap,
    }

    #[test]
    fn positions_are_projected_and_clamped() {
        assert_eq!(project(0.0, 0.0), (360.0, 180.0));
        assert_eq!(project(90.0, -180.0), (0.0, 0.0));
        assert_eq!(project(-90.0, 180.0), (720.0, 360.0));
        assert_eq!(
            project(48.1, 11.6),
            ((11.6 + 180.0) * 2.0, (90.0 - 48.1) * 2.0)
        );
        assert_eq!(project(1000.0, -1000.0), (0.0, 0.0));
    }

    #[test]
    fn no_location_no_map_and_labels_are_escaped() {
        assert_eq!(FleetMap::new(&[]), None);
        let map = FleetMap::new(&[
            (
                "dev-a".into(),
                "<img src=x onerror=alert(1)>".into(),
                48.1,
                11.6,
            ),
            ("dev-b".into(), "east".into(), 0.0, 179.0),
        ])
        .unwrap();
        assert_eq!(map.grid.len(), 13 + 7);
        assert_eq!(map.points[1].anchor, "end");
        let svg = Only { map: &map }.render().unwrap();
        assert!(svg.contains("<svg"), "{svg}");
        assert!(svg.contains("/ui/devices/dev-a"), "{svg}");
        assert!(!svg.contains("<img"), "{svg}");
        assert!(svg.contains("&#60;img"), "{svg}");
        assert!(!svg.contains("style="), "CSP: no inline styles: {svg}");
    }
}
