//! Bounds on a metric series read back, shared by both tracking adapters so a chart or an API
//! answer never holds more than a fixed number of points, whatever a device has sent.

/// Most points of one series read from a store before thinning (the newest are kept).
pub(crate) const MAX_SCAN_POINTS: usize = 100_000;

/// `points` (ascending by time) thinned evenly to at most `max`: the first and the last point
/// stay, the others are picked at even index steps.
pub(crate) fn thin(points: Vec<(u64, f64)>, max: usize) -> Vec<(u64, f64)> {
    let n = points.len();
    if n <= max {
        return points;
    }
    match max {
        0 => Vec::new(),
        1 => points.last().copied().into_iter().collect(),
        _ => (0..max).map(|i| points[i * (n - 1) / (max - 1)]).collect(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn thinning_keeps_the_ends_and_spreads_evenly() {
        let points: Vec<(u64, f64)> = (0..10).map(|i| (i, i as f64)).collect();
        assert_eq!(thin(points.clone(), 20), points);
        assert_eq!(thin(points.clone(), 0), vec![]);
        assert_eq!(thin(points.clone(), 1), vec![(9, 9.0)]);
        let times: Vec<u64> = thin(points.clone(), 4).iter().map(|p| p.0).collect();
        assert_eq!(times, vec![0, 3, 6, 9]);
        assert_eq!(thin(points, 2), vec![(0, 0.0), (9, 9.0)]);
    }
}
