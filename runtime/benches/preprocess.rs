//! Per-frame cost outside inference: rendering a synthetic frame, converting a
//! camera buffer, and turning a frame into model input (each element type).
//!
//! The design budget is 1 ms per frame on a Pi Zero 2 W class CPU for all of
//! this together; run with `cargo bench -p tinylcm --bench preprocess`.

use criterion::{BenchmarkId, Criterion, criterion_group, criterion_main};
use tinylcm::engine::{ElementType, Quantization, TensorInfo};
use tinylcm::frame::convert::{Layout, yuyv_to_rgb};
use tinylcm::frame::{Frame, FrameSource, SyntheticConfig, SyntheticSource};
use tinylcm::preprocess::{PreprocessConfig, Preprocessor, ResizeMode};

fn synthetic_frame(width: u32, height: u32) -> Frame {
    let mut src = SyntheticSource::new(SyntheticConfig {
        width,
        height,
        ..SyntheticConfig::default()
    })
    .expect("valid config");
    let mut frame = Frame::default();
    src.next_frame(&mut frame).expect("frame");
    frame
}

fn synthetic(c: &mut Criterion) {
    let mut group = c.benchmark_group("synthetic");
    for (w, h) in [(320, 240), (640, 480)] {
        let mut src = SyntheticSource::new(SyntheticConfig {
            width: w,
            height: h,
            looping: true,
            ..SyntheticConfig::default()
        })
        .expect("valid config");
        let mut frame = Frame::default();
        group.bench_function(BenchmarkId::from_parameter(format!("{w}x{h}")), |b| {
            b.iter(|| src.next_frame(&mut frame).expect("frame"))
        });
    }
    group.finish();
}

fn yuyv(c: &mut Criterion) {
    let (w, h) = (640u32, 480u32);
    let src: Vec<u8> = (0..w * h * 2).map(|i| (i * 7 % 251) as u8).collect();
    let mut dst = vec![0u8; (w * h * 3) as usize];
    let layout = Layout {
        width: w,
        height: h,
        stride: (w * 2) as usize,
    };
    c.bench_function("yuyv_to_rgb/640x480", |b| {
        b.iter(|| yuyv_to_rgb(&src, layout, &mut dst).expect("convert"))
    });
}

fn preprocess(c: &mut Criterion) {
    let mut group = c.benchmark_group("preprocess");
    let types = [
        ("f32", ElementType::F32, None),
        ("u8", ElementType::U8, Some((1.0 / 255.0, 0))),
        ("i8", ElementType::I8, Some((1.0 / 255.0, -128))),
    ];
    for ((fw, fh), side) in [((320, 240), 96), ((640, 480), 224)] {
        let frame = synthetic_frame(fw, fh);
        for (name, dtype, q) in types {
            for resize in [ResizeMode::Stretch, ResizeMode::Letterbox] {
                let t = TensorInfo {
                    name: "input".into(),
                    dtype,
                    shape: vec![1, side, side, 3],
                    quantization: q.map(|(scale, zero_point)| Quantization { scale, zero_point }),
                };
                let cfg = PreprocessConfig {
                    resize,
                    ..PreprocessConfig::default()
                };
                let mut p = Preprocessor::new(&cfg, &t).expect("supported tensor");
                let mut out = vec![0u8; p.output_len()];
                let id = format!("{fw}x{fh}->{side}x{side}/{name}/{resize:?}");
                group.bench_function(BenchmarkId::from_parameter(id), |b| {
                    b.iter(|| p.run(&frame, &mut out).expect("preprocess"))
                });
            }
        }
    }
    group.finish();
}

criterion_group!(benches, synthetic, yuyv, preprocess);
criterion_main!(benches);
