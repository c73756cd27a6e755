//! A database written by versions that stored one row per metric point (`metric_points`)
//! opens with every series intact: its points are moved into package rows on open, opening it
//! again changes nothing, and a package processed again afterwards adds nothing.
//!
//! The old tables are written here with their own definitions (names and key/value types as
//! those versions had them), not the adapter's, so the test pins the format on disk.

use redb::{ReadableTable, TableDefinition};
use sphere_lite::adapters::RedbTracking;
use sphere_lite::ports::MetricStore;

const OLD_POINTS: TableDefinition<(&str, &str, u64, &str), f64> =
    TableDefinition::new("metric_points");
const OLD_KEYS: TableDefinition<(&str, &str), u64> = TableDefinition::new("metric_keys");

const T: u64 = 1_764_147_600_000;

/// The points the old database holds: (device, key, time, package, value). Device `a` sends
/// `fps` in every package and `temp` in every third; two of its packages share a time; device
/// `b` has one key.
fn old_points() -> Vec<(&'static str, String, u64, String, f64)> {
    let mut out = Vec::new();
    for i in 0..40u64 {
        let at = T + (i / 2) * 60_000;
        out.push(("a", "fps".into(), at, format!("p{i:02}"), i as f64));
        if i.is_multiple_of(3) {
            out.push(("a", "temp".into(), at, format!("p{i:02}"), 40.0 + i as f64));
        }
    }
    out.push(("b", "fps".into(), T, "q".into(), 7.5));
    out
}

fn series_of(
    points: &[(&str, String, u64, String, f64)],
    device: &str,
    key: &str,
) -> Vec<(u64, f64)> {
    let mut out: Vec<(u64, &str, f64)> = points
        .iter()
        .filter(|p| p.0 == device && p.1 == key)
        .map(|p| (p.2, p.3.as_str(), p.4))
        .collect();
    out.sort_by(|x, y| (x.0, x.1).cmp(&(y.0, y.1)));
    out.into_iter().map(|(t, _, v)| (t, v)).collect()
}

#[test]
fn an_old_layout_database_keeps_its_series() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("sphere.redb");
    let points = old_points();
    {
        let db = redb::Database::create(&path).unwrap();
        let tx = db.begin_write().unwrap();
        {
            let mut table = tx.open_table(OLD_POINTS).unwrap();
            let mut keys = tx.open_table(OLD_KEYS).unwrap();
            for (device, key, at, package, value) in &points {
                table
                    .insert((*device, key.as_str(), *at, package.as_str()), *value)
                    .unwrap();
                let newest = keys
                    .get((*device, key.as_str()))
                    .unwrap()
                    .map(|v| v.value());
                if newest.is_none_or(|n| *at > n) {
                    keys.insert((*device, key.as_str()), *at).unwrap();
                }
            }
        }
        tx.commit().unwrap();
    }
    for _ in 0..2 {
        let t = RedbTracking::open(&path).unwrap();
        assert_eq!(t.metric_keys("a", 10).unwrap(), vec!["fps", "temp"]);
        assert_eq!(t.metric_keys("b", 10).unwrap(), vec!["fps"]);
        for (device, key) in [("a", "fps"), ("a", "temp"), ("b", "fps")] {
            let want = series_of(&points, device, key);
            assert!(!want.is_empty());
            assert_eq!(
                t.metric_series(device, key, 0, u64::MAX, 1000).unwrap(),
                want,
                "{device} {key}"
            );
        }
        // A range and the newest point alone read the same rows as before.
        assert_eq!(
            t.metric_series("a", "fps", T + 60_000, T + 3 * 60_000, 1000)
                .unwrap(),
            vec![
                (T + 60_000, 2.0),
                (T + 60_000, 3.0),
                (T + 120_000, 4.0),
                (T + 120_000, 5.0)
            ]
        );
        assert_eq!(
            t.metric_series("a", "temp", 0, u64::MAX, 1).unwrap(),
            vec![(T + 19 * 60_000, 79.0)]
        );
    }
    // Processed again after the move (same time, same package): nothing is added.
    let t = RedbTracking::open(&path).unwrap();
    t.put_metrics(
        "a",
        "p03",
        T + 60_000,
        &[("fps".into(), 3.0), ("temp".into(), 43.0)],
    )
    .unwrap();
    assert_eq!(
        t.metric_series("a", "fps", 0, u64::MAX, 1000).unwrap(),
        series_of(&points, "a", "fps")
    );
    assert_eq!(
        t.metric_series("a", "temp", 0, u64::MAX, 1000).unwrap(),
        series_of(&points, "a", "temp")
    );
}
