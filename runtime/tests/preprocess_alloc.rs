//! Steady-state allocations of the frame path, counted with a tracking allocator.
//!
//! The synthetic source and our own preprocessing code allocate nothing per
//! frame. `fast_image_resize` recomputes its filter coefficients on every call
//! (one small vector per output row and column); that cost depends only on the
//! input tensor size and is bounded here so that any allocation of ours shows.

use tinylcm::engine::{ElementType, Quantization, TensorInfo};
use tinylcm::frame::{Frame, FrameSource, SyntheticConfig, SyntheticSource};
use tinylcm::preprocess::{PreprocessConfig, Preprocessor, ResizeMode, TensorLayout};

#[path = "support/alloc.rs"]
mod alloc_support;

use alloc_support::allocations;

#[global_allocator]
static GLOBAL: alloc_support::Counting = alloc_support::Counting;

#[test]
fn preprocessing_without_resize_allocates_nothing() {
    let mut frame = Frame::default();
    frame.reshape(96, 96);
    for (dtype, q) in [
        (ElementType::F32, None),
        (ElementType::U8, Some((1.0 / 255.0, 0))),
        (ElementType::I8, Some((1.0 / 255.0, -128))),
    ] {
        for shape in [vec![1, 96, 96, 3], vec![1, 3, 96, 96]] {
            let t = TensorInfo {
                name: "x".into(),
                dtype,
                shape,
                quantization: q.map(|(scale, zero_point)| Quantization { scale, zero_point }),
            };
            let mut p = Preprocessor::new(&PreprocessConfig::default(), &t).unwrap();
            let mut out = vec![0u8; p.output_len()];
            p.run(&frame, &mut out).unwrap();
            let n = allocations(|| {
                for _ in 0..20 {
                    p.run(&frame, &mut out).unwrap();
                }
            });
            assert_eq!(n, 0, "{dtype:?}: {n} allocations");
        }
    }
}

#[test]
fn synthetic_frames_allocate_nothing_and_resize_allocations_are_bounded() {
    let mut src = SyntheticSource::new(SyntheticConfig {
        looping: true,
        ..SyntheticConfig::default()
    })
    .unwrap();
    let mut frame = Frame::default();
    let inputs = [
        (vec![1, 96, 96, 3], ElementType::F32, None),
        (vec![1, 96, 96, 3], ElementType::U8, Some((1.0 / 255.0, 0))),
        (
            vec![1, 3, 224, 224],
            ElementType::I8,
            Some((1.0 / 255.0, -128)),
        ),
    ];
    for (shape, dtype, q) in inputs {
        let t = TensorInfo {
            name: "x".into(),
            dtype,
            shape,
            quantization: q.map(|(scale, zero_point)| Quantization { scale, zero_point }),
        };
        for resize in [
            ResizeMode::Stretch,
            ResizeMode::CenterCrop,
            ResizeMode::Letterbox,
        ] {
            let cfg = PreprocessConfig {
                resize,
                layout: TensorLayout::Auto,
                ..Default::default()
            };
            let mut p = Preprocessor::new(&cfg, &t).unwrap();
            let mut out = vec![0u8; p.output_len()];
            // Warm up: buffers reach their final size.
            for _ in 0..2 {
                src.next_frame(&mut frame).unwrap();
                p.run(&frame, &mut out).unwrap();
            }
            let n = allocations(|| {
                for _ in 0..5 {
                    src.next_frame(&mut frame).unwrap();
                }
            });
            assert_eq!(n, 0, "synthetic source: {n} allocations in 5 frames");
            let n = allocations(|| p.run(&frame, &mut out).unwrap());
            let (w, h) = p.input_size();
            let fir_bound = 2 * (w + h) + 16;
            assert!(
                n <= fir_bound,
                "{dtype:?} {resize:?}: {n} allocations per frame"
            );
            let repeated = allocations(|| {
                for _ in 0..5 {
                    p.run(&frame, &mut out).unwrap();
                }
            });
            assert_eq!(
                repeated,
                5 * n,
                "{dtype:?} {resize:?}: allocations must not grow"
            );
        }
    }
}
