//! Feature path: L2 normalisation, standardisation + PCA, the portable file
//! format (round trip, truncated and corrupt files), and fitting on data
//! with known principal axes.

use tinylcm::features::{
    FeatureError, FeaturePath, FeatureTransform, FitOptions, PcaArrays, fit, format,
};

/// Deterministic standard normal values (xorshift + Box-Muller).
struct Normal(u64);

impl Normal {
    fn uniform(&mut self) -> f64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        ((self.0 >> 11) as f64 + 0.5) / (1u64 << 53) as f64
    }

    fn next(&mut self) -> f64 {
        let (u, v) = (self.uniform(), self.uniform());
        (-2.0 * u.ln()).sqrt() * (std::f64::consts::TAU * v).cos()
    }
}

fn small_transform() -> FeatureTransform {
    FeatureTransform::from_arrays(
        vec![1.0, 0.0, -1.0],
        vec![2.0, 1.0, 0.5],
        Some(PcaArrays {
            mean: vec![0.5, 0.0, 0.0],
            components: vec![1.0, 0.0, 0.0, 0.0, 0.6, 0.8],
            n_components: 2,
            explained_variance: vec![3.0, 1.0],
        }),
    )
    .unwrap()
}

#[test]
fn path_normalises_then_transforms() {
    let t = small_transform();
    let path = FeaturePath::new(3, true, Some(t.clone())).unwrap();
    assert_eq!((path.input_dim(), path.output_dim()), (3, 2));
    let x = [3.0f32, 0.0, 4.0];
    // By hand: x/5 = (0.6, 0, 0.8); z = ((0.6−1)/2, 0, (0.8+1)/0.5) = (−0.2, 0, 3.6);
    // minus pca mean (0.5, 0, 0) = (−0.7, 0, 3.6); y = (−0.7, 0.8·3.6).
    let mut out = [0.0; 2];
    path.apply(&x, &mut out).unwrap();
    assert!(
        (out[0] + 0.7).abs() < 1e-6 && (out[1] - 2.88).abs() < 1e-5,
        "{out:?}"
    );
    // Without normalisation, the transform alone.
    let mut direct = [0.0; 2];
    t.apply(&[0.6, 0.0, 0.8], &mut direct).unwrap();
    assert_eq!(out, direct);
}

#[test]
fn zero_embedding_stays_zero() {
    let path = FeaturePath::new(4, true, None).unwrap();
    let mut out = [9.0; 4];
    path.apply(&[0.0; 4], &mut out).unwrap();
    assert_eq!(out, [0.0; 4]);
}

#[test]
fn dimension_mismatch_is_an_error_never_a_pass_through() {
    let path = FeaturePath::new(3, false, Some(small_transform())).unwrap();
    let mut out = [0.0; 2];
    let err = path.apply(&[1.0; 5], &mut out).unwrap_err();
    assert!(
        matches!(
            err,
            FeatureError::Dimension {
                expected: 3,
                got: 5,
                ..
            }
        ),
        "{err}"
    );
    let mut wide = [0.0; 3];
    assert!(path.apply(&[1.0; 3], &mut wide).is_err());
    assert!(path.apply(&[1.0, f32::NAN, 0.0], &mut out).is_err());
    assert!(FeaturePath::new(4, false, Some(small_transform())).is_err());
}

#[test]
fn file_round_trip() {
    let t = small_transform();
    let bytes = t.to_bytes();
    assert_eq!(&bytes[..8], format::MAGIC);
    assert_eq!(FeatureTransform::from_bytes(&bytes).unwrap(), t);
    let plain = FeatureTransform::from_arrays(vec![0.5; 7], vec![2.0; 7], None).unwrap();
    assert_eq!(
        FeatureTransform::from_bytes(&plain.to_bytes()).unwrap(),
        plain
    );

    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("features.tlcmf");
    t.write(&file).unwrap();
    assert_eq!(FeatureTransform::read(&file).unwrap(), t);
    let missing = FeatureTransform::read(&dir.path().join("nope")).unwrap_err();
    assert!(matches!(missing, FeatureError::Io { .. }), "{missing}");
}

fn format_error(bytes: &[u8]) -> String {
    match FeatureTransform::from_bytes(bytes) {
        Err(FeatureError::Format { reason }) => reason,
        other => panic!("expected a format error, got {other:?}"),
    }
}

/// Re-seal a modified body with a correct checksum.
fn seal(mut bytes: Vec<u8>) -> Vec<u8> {
    use sha2::Digest;
    let body = bytes.len() - 32;
    let digest = sha2::Sha256::digest(&bytes[..body]);
    bytes[body..].copy_from_slice(&digest);
    bytes
}

#[test]
fn truncated_and_corrupt_files_are_rejected() {
    let bytes = small_transform().to_bytes();
    for len in [0, 10, 55, 60, bytes.len() - 1] {
        assert!(
            format_error(&bytes[..len]).contains("truncated"),
            "len {len}"
        );
    }
    let mut longer = bytes.clone();
    longer.push(0);
    assert!(format_error(&longer).contains("trailing"));
    let mut flipped = bytes.clone();
    flipped[30] ^= 1;
    assert!(format_error(&flipped).contains("checksum"));
    let mut magic = bytes.clone();
    magic[0] = b'X';
    assert!(format_error(&magic).contains("magic"));
    let mut version = bytes.clone();
    version[8] = 9;
    assert!(format_error(&version).contains("version 9"));
    let mut flags = bytes.clone();
    flags[12] = 0x80;
    assert!(format_error(&flags).contains("flags"));
    // Huge dimensions in the header: refused before anything is allocated.
    let mut huge = bytes.clone();
    huge[16..20].copy_from_slice(&u32::MAX.to_le_bytes());
    assert!(format_error(&huge).contains("dimensions"));
    let mut more_out = bytes.clone();
    more_out[20..24].copy_from_slice(&4u32.to_le_bytes());
    assert!(format_error(&more_out).contains("more components"));
    // A NaN with a valid checksum is a value error.
    let mut nan = bytes.clone();
    nan[24..28].copy_from_slice(&f32::NAN.to_le_bytes());
    let err = FeatureTransform::from_bytes(&seal(nan)).unwrap_err();
    assert!(
        matches!(err, FeatureError::Value { what: "mean", .. }),
        "{err}"
    );
    let mut zero_scale = bytes;
    zero_scale[36..40].copy_from_slice(&0f32.to_le_bytes());
    let err = FeatureTransform::from_bytes(&seal(zero_scale)).unwrap_err();
    assert!(
        matches!(err, FeatureError::Value { what: "scale", .. }),
        "{err}"
    );
}

/// Rows of `dim` values: Σ std_i · N(0,1) · axis_i plus an offset.
fn dataset(n: usize, dim: usize, axes: &[(Vec<f64>, f64)], seed: u64) -> Vec<f32> {
    let mut rng = Normal(seed);
    let mut data = Vec::with_capacity(n * dim);
    for _ in 0..n {
        let mut row = vec![3.0f64; dim];
        for (axis, std) in axes {
            let c = rng.next() * std;
            row.iter_mut().zip(axis).for_each(|(r, a)| *r += c * a);
        }
        data.extend(row.iter().map(|&v| v as f32));
    }
    data
}

fn unit(v: &[f64]) -> Vec<f64> {
    let n = v.iter().map(|x| x * x).sum::<f64>().sqrt();
    v.iter().map(|x| x / n).collect()
}

fn abs_cos(a: &[f32], b: &[f64]) -> f64 {
    a.iter()
        .zip(b)
        .map(|(&x, y)| f64::from(x) * y)
        .sum::<f64>()
        .abs()
}

#[test]
fn fit_recovers_known_axes() {
    let u1 = unit(&[1.0, 1.0, 0.0]);
    let u2 = unit(&[1.0, -1.0, 0.0]);
    let u3 = vec![0.0, 0.0, 1.0];
    let data = dataset(
        2000,
        3,
        &[(u1.clone(), 10.0), (u2.clone(), 3.0), (u3, 0.5)],
        7,
    );
    let opts = FitOptions {
        standardize: false,
        components: Some(2),
    };
    let fitted = fit(&data, 3, &opts).unwrap();
    let t = &fitted.transform;
    let c = t.components().unwrap();
    assert!(abs_cos(&c[..3], &u1) > 0.999, "{c:?}");
    assert!(abs_cos(&c[3..], &u2) > 0.999, "{c:?}");
    let var = t.explained_variance().unwrap();
    assert!(
        (var[0] / 100.0 - 1.0).abs() < 0.1 && (var[1] / 9.0 - 1.0).abs() < 0.1,
        "{var:?}"
    );
    let ratio: f32 = fitted.explained_variance_ratio.iter().sum();
    assert!((ratio - 109.0 / 109.25).abs() < 0.01, "{ratio}");
    assert!(fitted.explained_variance_ratio[0] > fitted.explained_variance_ratio[1]);
    // Signs are fixed: the largest entry of each axis is positive.
    for axis in c.chunks(3) {
        let big = axis
            .iter()
            .copied()
            .fold(0.0f32, |m, v| if v.abs() > m.abs() { v } else { m });
        assert!(big > 0.0);
    }
    // The PCA mean is the data's mean; projecting it gives 0.
    let mut out = [1.0; 2];
    t.apply(t.pca_mean().unwrap(), &mut out).unwrap();
    assert!(out.iter().all(|v| v.abs() < 1e-4), "{out:?}");
    // Same data, same transform.
    assert_eq!(fit(&data, 3, &opts).unwrap(), fitted);
}

#[test]
fn fit_with_fewer_samples_than_dimensions() {
    // 40 samples in 60-d around two axes: the Gram-matrix path.
    let dim = 60;
    let u1 = unit(
        &(0..dim)
            .map(|i| if i < 30 { 1.0 } else { 0.0 })
            .collect::<Vec<_>>(),
    );
    let u2 = unit(
        &(0..dim)
            .map(|i| if i % 2 == 0 { 1.0 } else { -1.0 })
            .collect::<Vec<_>>(),
    );
    let noise: Vec<(Vec<f64>, f64)> = (0..dim)
        .map(|i| {
            (
                (0..dim).map(|j| if i == j { 1.0 } else { 0.0 }).collect(),
                0.01,
            )
        })
        .collect();
    let mut axes = vec![(u1.clone(), 20.0), (u2.clone(), 5.0)];
    axes.extend(noise);
    let data = dataset(40, dim, &axes, 11);
    let fitted = fit(
        &data,
        dim,
        &FitOptions {
            standardize: false,
            components: Some(5),
        },
    )
    .unwrap();
    let c = fitted.transform.components().unwrap();
    assert!(abs_cos(&c[..dim], &u1) > 0.99);
    assert!(abs_cos(&c[dim..2 * dim], &u2) > 0.99);
    // Axes are orthonormal.
    for i in 0..5 {
        for j in 0..5 {
            let d: f32 = c[i * dim..][..dim]
                .iter()
                .zip(&c[j * dim..][..dim])
                .map(|(a, b)| a * b)
                .sum();
            let want = if i == j { 1.0 } else { 0.0 };
            assert!((d - want).abs() < 1e-4, "{i}·{j} = {d}");
        }
    }
}

#[test]
fn fit_standardises_like_a_standard_scaler() {
    let data = [1.0f32, 10.0, 5.0, 3.0, 10.0, 7.0, 5.0, 10.0, 9.0];
    let fitted = fit(
        &data,
        3,
        &FitOptions {
            standardize: true,
            components: None,
        },
    )
    .unwrap();
    let t = fitted.transform;
    assert_eq!(t.mean(), &[3.0, 10.0, 7.0]);
    let s = (8.0f32 / 3.0).sqrt();
    assert!((t.scale()[0] - s).abs() < 1e-6 && (t.scale()[2] - s).abs() < 1e-6);
    assert_eq!(t.scale()[1], 1.0, "a constant feature is left unscaled");
    assert!(t.pca_mean().is_none());
    let mut out = [0.0; 3];
    t.apply(&[5.0, 10.0, 9.0], &mut out).unwrap();
    assert!((out[0] - 2.0 / s).abs() < 1e-6 && out[1] == 0.0);
}

#[test]
fn fit_refuses_bad_requests() {
    let data = [0.0f32, 1.0, 2.0, 3.0, 4.0, 6.0];
    let fit_err = |data: &[f32], dim, k| {
        fit(
            data,
            dim,
            &FitOptions {
                standardize: true,
                components: k,
            },
        )
    };
    assert!(matches!(
        fit_err(&data[..2], 2, None),
        Err(FeatureError::Fit { .. })
    ));
    assert!(matches!(
        fit_err(&data[..5], 2, None),
        Err(FeatureError::Fit { .. })
    ));
    assert!(matches!(
        fit_err(&data, 2, Some(3)),
        Err(FeatureError::Fit { .. })
    ));
    assert!(matches!(
        fit_err(&data, 2, Some(0)),
        Err(FeatureError::Fit { .. })
    ));
    assert!(fit_err(&data, 0, None).is_err());
    let mut nan = data;
    nan[3] = f32::NAN;
    assert!(matches!(
        fit_err(&nan, 2, Some(1)),
        Err(FeatureError::Value { .. })
    ));
    assert!(fit_err(&data, 2, Some(2)).is_ok());
}

#[test]
fn fit_from_a_folder_of_images() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir(dir.path().join("sub")).unwrap();
    for i in 0..6u8 {
        let px = image::Rgb([i * 40, 255 - i * 40, 100 + i % 2 * 50]);
        let folder = if i % 2 == 0 {
            dir.path().to_path_buf()
        } else {
            dir.path().join("sub")
        };
        image::RgbImage::from_pixel(4, 4, px)
            .save(folder.join(format!("{i}.png")))
            .unwrap();
    }
    let mean_rgb = |f: &tinylcm::frame::Frame| -> Result<Vec<f32>, String> {
        let mut sum = [0.0f32; 3];
        for px in f.data.chunks_exact(3) {
            (0..3).for_each(|c| sum[c] += f32::from(px[c]));
        }
        Ok(sum.iter().map(|s| s / (f.data.len() / 3) as f32).collect())
    };
    let opts = FitOptions {
        standardize: true,
        components: Some(2),
    };
    let fitted = tinylcm::features::fit_from_folder(dir.path(), &opts, mean_rgb).unwrap();
    assert_eq!(fitted.samples, 6);
    assert_eq!(
        (fitted.transform.input_dim(), fitted.transform.output_dim()),
        (3, 2)
    );
    // Red and green move together (one axis), blue alternates (the other).
    let ratio: f32 = fitted.explained_variance_ratio.iter().sum();
    assert!(ratio > 0.999, "{ratio}");
    let failing = |_: &tinylcm::frame::Frame| -> Result<Vec<f32>, String> { Err("boom".into()) };
    let err = tinylcm::features::fit_from_folder(dir.path(), &opts, failing).unwrap_err();
    assert!(err.to_string().contains("boom"), "{err}");
}

/// At the original TinyLCM's size (1280 inputs → 256 components) and at sizes that leave
/// remainders everywhere (rows not a multiple of eight, columns not a multiple of the
/// standardisation block or of the lane width), the path agrees with the textbook formula
/// computed in f64, one row at a time: `y = ((x/‖x‖ − mean)/scale − pca_mean) · componentsᵀ`.
#[test]
fn projection_equals_the_straightforward_formula() {
    let mut rng = Normal(0x1280);
    for (n, m) in [(1280, 256), (1100, 13), (515, 9), (17, 17), (8, 1)] {
        let mut values = |count: usize, f: &dyn Fn(f64) -> f64| -> Vec<f32> {
            (0..count).map(|_| f(rng.next()) as f32).collect()
        };
        let mean = values(n, &|v| 0.03 + 0.01 * v);
        let scale = values(n, &|v| 0.02 + 0.005 * v.abs());
        let pca_mean = values(n, &|v| 0.1 * v);
        let components = values(n * m, &|v| v / (n as f64).sqrt());
        let x = values(n, &|v| (1.0 + v).max(0.0));
        let t = FeatureTransform::from_arrays(
            mean.clone(),
            scale.clone(),
            Some(PcaArrays {
                mean: pca_mean.clone(),
                components: components.clone(),
                n_components: m,
                explained_variance: vec![],
            }),
        )
        .unwrap();
        let path = FeaturePath::new(n, true, Some(t)).unwrap();
        let mut out = vec![0.0; m];
        path.apply(&x, &mut out).unwrap();

        let norm = x.iter().map(|&v| f64::from(v).powi(2)).sum::<f64>().sqrt();
        let z: Vec<f64> = (0..n)
            .map(|j| {
                (f64::from(x[j]) / norm - f64::from(mean[j])) / f64::from(scale[j])
                    - f64::from(pca_mean[j])
            })
            .collect();
        for r in 0..m {
            let row = &components[r * n..(r + 1) * n];
            let want: f64 = row.iter().zip(&z).map(|(c, z)| f64::from(*c) * z).sum();
            let size: f64 = row
                .iter()
                .zip(&z)
                .map(|(c, z)| (f64::from(*c) * z).abs())
                .sum();
            assert!(
                (f64::from(out[r]) - want).abs() <= 1e-5 * size.max(1.0),
                "{n}→{m} row {r}: {} vs {want}",
                out[r]
            );
        }
    }
}
