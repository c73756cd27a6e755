//! Per-frame cost outside inference: rendering a synthetic frame and turning a
//! frame into model input.

use criterion::{Criterion, criterion_group, criterion_main};
use tinylcm::frame::{Frame, FrameSource, SyntheticConfig, SyntheticSource};

fn synthetic(c: &mut Criterion) {
    let cfg = SyntheticConfig {
        looping: true,
        ..SyntheticConfig::default()
    };
    let mut src = SyntheticSource::new(cfg).expect("valid config");
    let mut frame = Frame::default();
    c.bench_function("synthetic_320x240", |b| {
        b.iter(|| src.next_frame(&mut frame).expect("frame"))
    });
}

criterion_group!(benches, synthetic);
criterion_main!(benches);
