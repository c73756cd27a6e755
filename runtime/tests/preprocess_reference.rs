//! Preprocessing against hand-computed values: every resize mode, channel
//! order, layout and element type, and the quantisation arithmetic.

use tinylcm::engine::{ElementType, Quantization, TensorInfo};
use tinylcm::frame::Frame;
use tinylcm::preprocess::{
    ChannelOrder, PreprocessConfig, PreprocessError, Preprocessor, ResizeMode, TensorLayout,
};

fn frame(width: u32, height: u32, data: &[u8]) -> Frame {
    assert_eq!(data.len(), (width * height * 3) as usize);
    Frame {
        width,
        height,
        data: data.to_vec(),
        ..Frame::default()
    }
}

fn tensor(shape: &[usize], dtype: ElementType, q: Option<(f32, i32)>) -> TensorInfo {
    TensorInfo {
        name: "input".into(),
        dtype,
        shape: shape.to_vec(),
        quantization: q.map(|(scale, zero_point)| Quantization { scale, zero_point }),
    }
}

fn run(cfg: &PreprocessConfig, t: &TensorInfo, f: &Frame) -> Vec<u8> {
    let mut p = Preprocessor::new(cfg, t).unwrap();
    let mut out = vec![0xAA; p.output_len()];
    p.run(f, &mut out).unwrap();
    out
}

fn f32s(bytes: &[u8]) -> Vec<f32> {
    bytes
        .chunks_exact(4)
        .map(|b| f32::from_ne_bytes([b[0], b[1], b[2], b[3]]))
        .collect()
}

fn i8s(bytes: &[u8]) -> Vec<i8> {
    bytes.iter().map(|&b| b as i8).collect()
}

/// 2x2 frame: red-ish, green-ish / blue-ish, grey.
const PIXELS: [u8; 12] = [255, 0, 10, 0, 128, 20, 30, 40, 200, 51, 102, 153];

#[test]
fn float32_nhwc_rgb_is_pixel_over_255() {
    let out = run(
        &PreprocessConfig::default(),
        &tensor(&[1, 2, 2, 3], ElementType::F32, None),
        &frame(2, 2, &PIXELS),
    );
    let want: Vec<f32> = PIXELS.iter().map(|&v| f32::from(v) / 255.0).collect();
    assert_eq!(f32s(&out), want);
}

#[test]
fn bgr_swaps_red_and_blue() {
    let cfg = PreprocessConfig {
        channel_order: ChannelOrder::Bgr,
        mean: [0.0; 3],
        std: [1.0; 3],
        ..Default::default()
    };
    let out = run(
        &cfg,
        &tensor(&[1, 2, 2, 3], ElementType::F32, None),
        &frame(2, 2, &PIXELS),
    );
    assert_eq!(
        f32s(&out),
        [
            10., 0., 255., 20., 128., 0., 200., 40., 30., 153., 102., 51.
        ]
    );
}

#[test]
fn nchw_writes_channel_planes() {
    let cfg = PreprocessConfig {
        std: [1.0; 3],
        ..Default::default()
    };
    let t = tensor(&[1, 3, 2, 2], ElementType::F32, None);
    let out = run(&cfg, &t, &frame(2, 2, &PIXELS));
    assert_eq!(
        f32s(&out),
        [
            255., 0., 30., 51., 0., 128., 40., 102., 10., 20., 200., 153.
        ]
    );
    // Explicit layouts: NCHW forced on the same tensor gives the same; BGR + NCHW.
    let forced = PreprocessConfig {
        layout: TensorLayout::Nchw,
        ..cfg.clone()
    };
    assert_eq!(run(&forced, &t, &frame(2, 2, &PIXELS)), out);
    let bgr = PreprocessConfig {
        channel_order: ChannelOrder::Bgr,
        ..cfg
    };
    assert_eq!(
        f32s(&run(&bgr, &t, &frame(2, 2, &PIXELS))),
        [
            10., 20., 200., 153., 0., 128., 40., 102., 255., 0., 30., 51.
        ]
    );
}

#[test]
fn mean_and_std_apply_per_model_channel() {
    let cfg = PreprocessConfig {
        channel_order: ChannelOrder::Bgr,
        mean: [10.0, 20.0, 30.0],
        std: [2.0, 4.0, 5.0],
        ..Default::default()
    };
    let f = frame(1, 1, &[130, 60, 50]); // R, G, B
    let out = run(&cfg, &tensor(&[1, 1, 1, 3], ElementType::F32, None), &f);
    // Model channel 0 is blue: (50-10)/2; 1 green: (60-20)/4; 2 red: (130-30)/5.
    assert_eq!(f32s(&out), [20.0, 10.0, 20.0]);
}

#[test]
fn uint8_with_input_quantisation_is_the_pixel() {
    let t = tensor(&[1, 2, 2, 3], ElementType::U8, Some((1.0 / 255.0, 0)));
    let out = run(&PreprocessConfig::default(), &t, &frame(2, 2, &PIXELS));
    assert_eq!(out, PIXELS);
}

#[test]
fn uint8_quantisation_rounds_and_clamps() {
    // (v - 100) / 1, scale 2, zp 10: q = round((v-100)/2) + 10, clamped to 0..255.
    let cfg = PreprocessConfig {
        mean: [100.0; 3],
        std: [1.0; 3],
        ..Default::default()
    };
    let t = tensor(&[1, 1, 2, 3], ElementType::U8, Some((2.0, 10)));
    let out = run(&cfg, &t, &frame(2, 1, &[0, 79, 101, 255, 103, 100]));
    // 0 → -50+10 = -40 → 0; 79 → round(-10.5) = -11 → -1 → 0; 101 → round(0.5)=1 → 11;
    // 255 → round(77.5)=78 → 88; 103 → round(1.5)=2 → 12; 100 → 10.
    assert_eq!(out, [0, 0, 11, 88, 12, 10]);
}

#[test]
fn int8_quantisation_common_cases() {
    // [0,1] input with scale 1/255, zp -128: pixel - 128.
    let t = tensor(&[1, 2, 2, 3], ElementType::I8, Some((1.0 / 255.0, -128)));
    let out = run(&PreprocessConfig::default(), &t, &frame(2, 2, &PIXELS));
    let want: Vec<i8> = PIXELS.iter().map(|&v| (i32::from(v) - 128) as i8).collect();
    assert_eq!(i8s(&out), want);
    // [-1,1] input (mean 127.5, std 127.5) with scale 1/128, zp 0.
    let cfg = PreprocessConfig {
        mean: [127.5; 3],
        std: [127.5; 3],
        ..Default::default()
    };
    let t = tensor(&[1, 1, 2, 3], ElementType::I8, Some((1.0 / 128.0, 0)));
    let out = run(&cfg, &t, &frame(2, 1, &[0, 255, 128, 127, 64, 191]));
    // 0 → -128; 255 → 128 → clamp 127; 128 → 0.502 → 1; 127 → -1; 64 → -63.75 → -64;
    // 191 → 63.75 → 64.
    assert_eq!(i8s(&out), [-128, 127, 1, -1, -64, 64]);
}

#[test]
fn center_crop_takes_the_middle() {
    // 4x2 frame, columns X P Q X; a 2x2 input crops the middle two columns 1:1.
    let x = [9, 9, 9];
    let p = [10, 20, 30];
    let q = [40, 50, 60];
    let row: Vec<u8> = [x, p, q, x].concat();
    let data = [row.clone(), row].concat();
    let cfg = PreprocessConfig {
        resize: ResizeMode::CenterCrop,
        ..Default::default()
    };
    let t = tensor(&[1, 2, 2, 3], ElementType::U8, Some((1.0 / 255.0, 0)));
    let out = run(&cfg, &t, &frame(4, 2, &data));
    assert_eq!(out, [p, q, p, q].concat());
    // Stretch squeezes all four columns instead.
    let stretched = run(&PreprocessConfig::default(), &t, &frame(4, 2, &data));
    assert_ne!(stretched, out);
}

#[test]
fn letterbox_centres_and_pads() {
    // 2x1 frame into a 2x3 input: the picture is row 1, rows 0 and 2 are padding.
    let data = [10, 20, 30, 40, 50, 60];
    let cfg = PreprocessConfig {
        resize: ResizeMode::Letterbox,
        pad: 114,
        std: [1.0; 3],
        ..Default::default()
    };
    let out = f32s(&run(
        &cfg,
        &tensor(&[1, 3, 2, 3], ElementType::F32, None),
        &frame(2, 1, &data),
    ));
    let pad = [114.0; 6];
    let pic: Vec<f32> = data.iter().map(|&v| f32::from(v)).collect();
    assert_eq!(out, [&pad[..], &pic, &pad].concat());
    // NCHW int8: padding 0 → -128 with the usual int8 input quantisation.
    let cfg = PreprocessConfig {
        resize: ResizeMode::Letterbox,
        ..Default::default()
    };
    let t = tensor(&[1, 3, 3, 2], ElementType::I8, Some((1.0 / 255.0, -128)));
    let out = i8s(&run(&cfg, &t, &frame(2, 1, &data)));
    #[rustfmt::skip]
    let want: [i8; 18] = [
        -128, -128, -118, -88, -128, -128,
        -128, -128, -108, -78, -128, -128,
        -128, -128, -98, -68, -128, -128,
    ];
    assert_eq!(out, want);
}

#[test]
fn stretch_downscale_is_a_bilinear_area_filter() {
    // 4x1 → 2x1 (factor 2): the triangle filter is widened to ±2 source pixels.
    // Output 0 is centred at x = 1.0: weights 0.75 (x=0.5), 0.75 (1.5), 0.25 (2.5).
    let data: Vec<u8> = [0u8, 0, 255, 255].iter().flat_map(|&v| [v, v, v]).collect();
    let t = tensor(&[1, 1, 2, 3], ElementType::U8, Some((1.0 / 255.0, 0)));
    let out = run(&PreprocessConfig::default(), &t, &frame(4, 1, &data));
    let a = (0.25 * 255.0) / 1.75; // 36.4
    let b = (1.5 * 255.0) / 1.75; // 218.6
    for (i, want) in [a, a, a, b, b, b].iter().enumerate() {
        assert!((f64::from(out[i]) - want).abs() <= 1.0, "{out:?}");
    }
    // A uniform frame stays uniform at any size.
    let flat = frame(7, 5, &[77; 105]);
    let t = tensor(&[1, 3, 4, 3], ElementType::U8, Some((1.0 / 255.0, 0)));
    for mode in [ResizeMode::Stretch, ResizeMode::CenterCrop] {
        let cfg = PreprocessConfig {
            resize: mode,
            ..Default::default()
        };
        assert!(run(&cfg, &t, &flat).iter().all(|&v| v == 77), "{mode:?}");
    }
}

#[test]
fn unsupported_tensors_are_refused() {
    let cfg = PreprocessConfig::default();
    let q = Some((1.0 / 255.0, 0));
    let cases = [
        (tensor(&[2, 2, 3], ElementType::F32, None), "rank"),
        (tensor(&[2, 2, 2, 3], ElementType::F32, None), "batch"),
        (tensor(&[1, 2, 2, 4], ElementType::F32, None), "channels"),
        (tensor(&[1, 2, 2, 3], ElementType::I16, q), "not supported"),
        (tensor(&[1, 2, 2, 3], ElementType::U8, None), "quantisation"),
        (
            tensor(&[1, 2, 2, 3], ElementType::I8, Some((0.0, 0))),
            "scale",
        ),
        (tensor(&[1, 5000, 2, 3], ElementType::F32, None), "outside"),
    ];
    for (t, needle) in cases {
        match Preprocessor::new(&cfg, &t) {
            Err(e @ PreprocessError::Tensor { .. }) => {
                assert!(e.to_string().contains(needle), "{needle}: {e}")
            }
            other => panic!("{needle}: {other:?}"),
        }
    }
    let nhwc = PreprocessConfig {
        layout: TensorLayout::Nhwc,
        ..Default::default()
    };
    assert!(Preprocessor::new(&nhwc, &tensor(&[1, 3, 2, 2], ElementType::F32, None)).is_err());
}

#[test]
fn bad_frames_and_buffers_are_errors_not_panics() {
    let t = tensor(&[1, 2, 2, 3], ElementType::F32, None);
    let mut p = Preprocessor::new(&PreprocessConfig::default(), &t).unwrap();
    let mut out = vec![0; p.output_len()];
    assert!(matches!(
        p.run(&Frame::default(), &mut out),
        Err(PreprocessError::Frame { .. })
    ));
    let short = Frame {
        width: 2,
        height: 2,
        data: vec![0; 5],
        ..Frame::default()
    };
    assert!(matches!(
        p.run(&short, &mut out),
        Err(PreprocessError::Frame { .. })
    ));
    let huge = Frame {
        width: u32::MAX,
        height: u32::MAX,
        data: vec![0; 3],
        ..Frame::default()
    };
    assert!(matches!(
        p.run(&huge, &mut out),
        Err(PreprocessError::Frame { .. })
    ));
    let mut small = vec![0; 3];
    assert!(matches!(
        p.run(&frame(2, 2, &PIXELS), &mut small),
        Err(PreprocessError::Output {
            expected: 48,
            got: 3
        })
    ));
    // A 1x1 frame into a large input, and a large frame into a 1x1 input, work.
    let one = frame(1, 1, &[1, 2, 3]);
    let big = tensor(&[1, 64, 48, 3], ElementType::U8, Some((1.0 / 255.0, 0)));
    for mode in [
        ResizeMode::Stretch,
        ResizeMode::CenterCrop,
        ResizeMode::Letterbox,
    ] {
        let cfg = PreprocessConfig {
            resize: mode,
            ..Default::default()
        };
        run(&cfg, &big, &one);
        run(
            &cfg,
            &tensor(&[1, 1, 1, 3], ElementType::F32, None),
            &frame(3, 2, &[5; 18]),
        );
    }
}

#[test]
fn config_validation_and_toml() {
    let bad_std = PreprocessConfig {
        std: [255.0, 0.0, 255.0],
        ..Default::default()
    };
    assert_eq!(bad_std.validate().unwrap_err().key, "preprocess.std");
    let bad_mean = PreprocessConfig {
        mean: [f32::NAN, 0.0, 0.0],
        ..Default::default()
    };
    assert_eq!(bad_mean.validate().unwrap_err().key, "preprocess.mean");
    assert!(matches!(
        Preprocessor::new(&bad_std, &tensor(&[1, 2, 2, 3], ElementType::F32, None)),
        Err(PreprocessError::Config(_))
    ));
    let cfg: PreprocessConfig = toml::from_str(
        "resize = \"center-crop\"\nchannel-order = \"bgr\"\nlayout = \"nchw\"\nmean = [1, 2, 3]\nstd = [4, 5, 6]\npad = 114\n",
    )
    .unwrap();
    assert_eq!(cfg.resize, ResizeMode::CenterCrop);
    assert_eq!(cfg.channel_order, ChannelOrder::Bgr);
    assert_eq!(cfg.layout, TensorLayout::Nchw);
    assert_eq!(cfg.std, [4.0, 5.0, 6.0]);
    assert!(toml::from_str::<PreprocessConfig>("scale = 1").is_err());
    assert_eq!(
        toml::from_str::<PreprocessConfig>("").unwrap(),
        PreprocessConfig::default()
    );
}
