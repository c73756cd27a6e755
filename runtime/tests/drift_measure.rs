//! The figures of the table in `drift/mod.rs`: detection delay over 20 seeds and false alarms
//! over 20 × 50 000 stationary samples per detector, at the defaults. Long, so ignored:
//! `cargo test -p tinylcm --test drift_measure -- --ignored --nocapture`.

mod drift_support;

use drift_support::{Rng, Stream, detector, feed, reference_len, skewed_sample};
use tinylcm::drift::DetectorKind;

#[test]
#[ignore = "long measurement; prints the table of drift/mod.rs"]
fn measure_delay_and_false_alarms() {
    println!(
        "| detector | change | delay mean | delay max | false alarms / samples | skewed input |"
    );
    println!("|---|---|---|---|---|---|");
    for kind in DetectorKind::ALL {
        let seeds = 20u64;
        let mut delays = Vec::new();
        for seed in 0..seeds {
            let mut d = detector(kind);
            let mut s = Stream::new(kind, seed);
            let before = reference_len() + 1000;
            feed(d.as_mut(), &mut s, false, before);
            let e = feed(d.as_mut(), &mut s, true, 2000);
            delays.push(e.first().map(|e| e.at - before as u64).unwrap_or(u64::MAX));
        }
        let mut alarms = 0;
        let n = 50_000;
        for seed in 1000..1000 + seeds {
            let mut d = detector(kind);
            let mut s = Stream::new(kind, seed);
            feed(d.as_mut(), &mut s, false, reference_len());
            alarms += feed(d.as_mut(), &mut s, false, n).len();
        }
        let mut skewed = 0;
        for seed in 2000..2000 + seeds {
            let mut d = detector(kind);
            let mut rng = Rng::new(seed);
            for i in 0..(reference_len() + n) as u64 {
                skewed += usize::from(d.update(&skewed_sample(&mut rng, i).obs()).is_some());
            }
        }
        let change = match kind {
            DetectorKind::PageHinkleyDistance => "distance +2σ",
            DetectorKind::Distribution => "mix 25/25/25/25 → 85/5/5/5",
            DetectorKind::Embedding => "+1σ in 8 of 16 dims",
            _ => "confidence −2σ",
        };
        let mean = delays.iter().sum::<u64>() as f64 / delays.len() as f64;
        println!(
            "| `{kind}` | {change} | {mean:.0} | {} | {alarms} / {} | {skewed} / {} |",
            delays.iter().max().unwrap(),
            n as u64 * seeds,
            n as u64 * seeds
        );
    }
}
