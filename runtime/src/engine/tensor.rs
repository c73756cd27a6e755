//! Converting between real values and tensor bytes, and naming tensors.
//!
//! Engines move raw bytes; the rest of the runtime thinks in `f32`. These
//! helpers quantise and dequantise with the tensor's own scale and zero point
//! into caller-provided buffers, so the per-frame path allocates nothing.

use super::{ElementType, EngineError, Quantization, TensorInfo};

fn tensor_error(tensor: &str, reason: impl Into<String>) -> EngineError {
    EngineError::Tensor {
        tensor: tensor.to_string(),
        reason: reason.into(),
    }
}

/// Quantise one real value: `round(x / scale) + zero_point`, rounding half away
/// from zero (as TFLite does) and clamping to `[min, max]`. NaN maps to the zero point.
pub fn quantize_value(x: f32, q: Quantization, min: i32, max: i32) -> i32 {
    let scaled = (x / q.scale).round();
    // `as` saturates (and maps NaN to 0); the add saturates too.
    let v = (scaled as i64).saturating_add(i64::from(q.zero_point));
    v.clamp(i64::from(min), i64::from(max)) as i32
}

/// Dequantise one value: `scale * (v - zero_point)`.
pub fn dequantize_value(v: i32, q: Quantization) -> f32 {
    q.scale * (v as f32 - q.zero_point as f32)
}

/// Quantise `src` into `u8` values. Lengths must match.
pub fn quantize_u8(src: &[f32], q: Quantization, dst: &mut [u8]) -> Result<(), EngineError> {
    check_len("<u8 buffer>", src.len(), dst.len())?;
    check_quant("<u8 buffer>", q)?;
    for (d, &x) in dst.iter_mut().zip(src) {
        *d = quantize_value(x, q, 0, 255) as u8;
    }
    Ok(())
}

/// Quantise `src` into `i8` values. Lengths must match.
pub fn quantize_i8(src: &[f32], q: Quantization, dst: &mut [i8]) -> Result<(), EngineError> {
    check_len("<i8 buffer>", src.len(), dst.len())?;
    check_quant("<i8 buffer>", q)?;
    for (d, &x) in dst.iter_mut().zip(src) {
        *d = quantize_value(x, q, -128, 127) as i8;
    }
    Ok(())
}

/// Dequantise `u8` values into `dst`. Lengths must match.
pub fn dequantize_u8(src: &[u8], q: Quantization, dst: &mut [f32]) -> Result<(), EngineError> {
    check_len("<u8 buffer>", dst.len(), src.len())?;
    for (d, &v) in dst.iter_mut().zip(src) {
        *d = dequantize_value(i32::from(v), q);
    }
    Ok(())
}

/// Dequantise `i8` values into `dst`. Lengths must match.
pub fn dequantize_i8(src: &[i8], q: Quantization, dst: &mut [f32]) -> Result<(), EngineError> {
    check_len("<i8 buffer>", dst.len(), src.len())?;
    for (d, &v) in dst.iter_mut().zip(src) {
        *d = dequantize_value(i32::from(v), q);
    }
    Ok(())
}

/// Fill the input tensor bytes `dst` from real values `src`, as `info` requires:
/// float32 copied, uint8/int8 quantised with the tensor's parameters.
pub fn encode_input(info: &TensorInfo, src: &[f32], dst: &mut [u8]) -> Result<(), EngineError> {
    let name = display_name(info);
    check_len(name, info.element_count(), src.len())?;
    let want = info
        .byte_len()
        .ok_or_else(|| tensor_error(name, format!("cannot encode {}", info.dtype)))?;
    if dst.len() != want {
        return Err(tensor_error(
            name,
            format!("byte buffer is {} bytes, tensor needs {want}", dst.len()),
        ));
    }
    match info.dtype {
        ElementType::F32 => {
            for (d, x) in dst.chunks_exact_mut(4).zip(src) {
                d.copy_from_slice(&x.to_ne_bytes());
            }
        }
        ElementType::U8 | ElementType::I8 => {
            let q = require_quant(info, name)?;
            let (min, max) = if info.dtype == ElementType::U8 {
                (0, 255)
            } else {
                (-128, 127)
            };
            for (d, &x) in dst.iter_mut().zip(src) {
                *d = quantize_value(x, q, min, max) as u8;
            }
        }
        other => {
            return Err(tensor_error(
                name,
                format!("cannot encode {other} from f32"),
            ));
        }
    }
    Ok(())
}

/// Read the output tensor bytes `src` into real values `dst`, as `info` describes:
/// float32 copied, uint8/int8 dequantised (unquantised integers are taken as is).
pub fn decode_output(info: &TensorInfo, src: &[u8], dst: &mut [f32]) -> Result<(), EngineError> {
    let name = display_name(info);
    check_len(name, info.element_count(), dst.len())?;
    let want = info
        .byte_len()
        .ok_or_else(|| tensor_error(name, format!("cannot decode {}", info.dtype)))?;
    if src.len() != want {
        return Err(tensor_error(
            name,
            format!("byte buffer is {} bytes, tensor has {want}", src.len()),
        ));
    }
    let q = info.quantization.unwrap_or(Quantization {
        scale: 1.0,
        zero_point: 0,
    });
    match info.dtype {
        ElementType::F32 => {
            for (d, s) in dst.iter_mut().zip(src.chunks_exact(4)) {
                *d = f32::from_ne_bytes([s[0], s[1], s[2], s[3]]);
            }
        }
        ElementType::U8 => {
            for (d, &v) in dst.iter_mut().zip(src) {
                *d = dequantize_value(i32::from(v), q);
            }
        }
        ElementType::I8 => {
            for (d, &v) in dst.iter_mut().zip(src) {
                *d = dequantize_value(i32::from(v as i8), q);
            }
        }
        other => return Err(tensor_error(name, format!("cannot decode {other} to f32"))),
    }
    Ok(())
}

/// The tensor's name for messages, borrowed: encode and decode run per frame and must not
/// allocate unless they fail.
fn display_name(info: &TensorInfo) -> &str {
    if info.name.is_empty() {
        "<unnamed>"
    } else {
        &info.name
    }
}

fn require_quant(info: &TensorInfo, name: &str) -> Result<Quantization, EngineError> {
    let q = info.quantization.ok_or_else(|| {
        tensor_error(
            name,
            format!("{} tensor without quantisation parameters", info.dtype),
        )
    })?;
    check_quant(name, q)?;
    Ok(q)
}

fn check_quant(name: &str, q: Quantization) -> Result<(), EngineError> {
    if !(q.scale.is_finite() && q.scale > 0.0) {
        return Err(tensor_error(
            name,
            format!("invalid quantisation scale {}", q.scale),
        ));
    }
    Ok(())
}

fn check_len(name: &str, want: usize, got: usize) -> Result<(), EngineError> {
    if want != got {
        return Err(tensor_error(
            name,
            format!("{got} values given, {want} expected"),
        ));
    }
    Ok(())
}

/// A tensor chosen by position or by name (config: an integer or a string); the model
/// manifest names outputs with it, so it is the protocol crate's.
pub use tinylcm_protocol::model_manifest::TensorRef;

/// Finding a [`TensorRef`] among a loaded model's tensors (a trait: the type is the
/// protocol crate's).
pub trait ResolveTensor {
    /// Index of the referenced tensor in `tensors`, or a [`EngineError::Tensor`]
    /// listing what exists.
    fn resolve(&self, tensors: &[TensorInfo]) -> Result<usize, EngineError>;
}

impl ResolveTensor for TensorRef {
    fn resolve(&self, tensors: &[TensorInfo]) -> Result<usize, EngineError> {
        let found = match self {
            TensorRef::Index(i) => (*i < tensors.len()).then_some(*i),
            TensorRef::Name(n) => tensors.iter().position(|t| &t.name == n),
        };
        found.ok_or_else(|| {
            let names: Vec<String> = tensors
                .iter()
                .enumerate()
                .map(|(i, t)| format!("#{i} \"{}\"", t.name))
                .collect();
            tensor_error(
                &self.to_string(),
                format!(
                    "no such tensor; the model has {}: {}",
                    tensors.len(),
                    names.join(", ")
                ),
            )
        })
    }
}

/// Check a backend's `set_input`/`output` call: tensor `index` exists among
/// `tensors` (with its backend handle in `handles`) and `len` is its byte size.
/// Returns the handle and the byte size. `role` is "input" or "output".
pub(crate) fn checked_slot<H: Copy>(
    role: &str,
    handles: &[H],
    tensors: &[TensorInfo],
    index: usize,
    len: usize,
) -> Result<(H, usize), EngineError> {
    let (Some(&handle), Some(info)) = (handles.get(index), tensors.get(index)) else {
        return Err(EngineError::Tensor {
            tensor: format!("{role} #{index}"),
            reason: format!("no such {role}; the model has {}", tensors.len()),
        });
    };
    let want = info.byte_len().unwrap_or(0);
    if len != want {
        return Err(EngineError::Tensor {
            tensor: format!("{role} #{index} \"{}\"", info.name),
            reason: if role == "input" {
                format!("{len} bytes given, the tensor takes {want}")
            } else {
                format!("buffer is {len} bytes, the tensor has {want}")
            },
        });
    }
    Ok((handle, want))
}

#[cfg(test)]
mod tests {
    use super::*;

    const Q: Quantization = Quantization {
        scale: 0.5,
        zero_point: 10,
    };

    fn info(dtype: ElementType, n: usize, q: Option<Quantization>) -> TensorInfo {
        TensorInfo {
            name: "t".into(),
            dtype,
            shape: vec![1, n],
            quantization: q,
        }
    }

    #[test]
    fn reference_values_and_rounding() {
        assert_eq!(quantize_value(0.0, Q, 0, 255), 10);
        assert_eq!(quantize_value(1.0, Q, 0, 255), 12);
        // 0.25 / 0.5 = 0.5 rounds away from zero to 1; -0.25 to -1.
        assert_eq!(quantize_value(0.25, Q, 0, 255), 11);
        assert_eq!(quantize_value(-0.25, Q, 0, 255), 9);
        assert_eq!(quantize_value(0.74, Q, 0, 255), 11);
        assert_eq!(dequantize_value(12, Q), 1.0);
        assert_eq!(dequantize_value(10, Q), 0.0);
        assert_eq!(dequantize_value(0, Q), -5.0);
    }

    #[test]
    fn clamping_and_non_finite() {
        assert_eq!(quantize_value(1e9, Q, 0, 255), 255);
        assert_eq!(quantize_value(-1e9, Q, 0, 255), 0);
        assert_eq!(quantize_value(f32::INFINITY, Q, -128, 127), 127);
        assert_eq!(quantize_value(f32::NEG_INFINITY, Q, -128, 127), -128);
        assert_eq!(quantize_value(f32::NAN, Q, -128, 127), 10);
    }

    #[test]
    fn typed_round_trip() {
        let q = Quantization {
            scale: 1.0 / 255.0,
            zero_point: -128,
        };
        let src = [0.0f32, 0.25, 1.0, 2.0, -1.0];
        let mut qi = [0i8; 5];
        quantize_i8(&src, q, &mut qi).unwrap();
        assert_eq!(qi, [-128, -64, 127, 127, -128]);
        let mut back = [0f32; 5];
        dequantize_i8(&qi, q, &mut back).unwrap();
        assert!((back[1] - 64.0 / 255.0).abs() < 1e-6);
        let mut qu = [0u8; 5];
        quantize_u8(
            &src,
            Quantization {
                scale: 1.0 / 255.0,
                zero_point: 0,
            },
            &mut qu,
        )
        .unwrap();
        assert_eq!(qu, [0, 64, 255, 255, 0]);
        let mut back = [0f32; 5];
        dequantize_u8(
            &qu,
            Quantization {
                scale: 2.0,
                zero_point: 1,
            },
            &mut back,
        )
        .unwrap();
        assert_eq!(back, [-2.0, 126.0, 508.0, 508.0, -2.0]);
    }

    #[test]
    fn length_and_scale_errors() {
        let mut d = [0u8; 2];
        assert!(quantize_u8(&[0.0; 3], Q, &mut d).is_err());
        let bad = Quantization {
            scale: 0.0,
            zero_point: 0,
        };
        assert!(quantize_u8(&[0.0; 2], bad, &mut d).is_err());
        let mut f = [0f32; 1];
        assert!(dequantize_u8(&[0; 2], Q, &mut f).is_err());
    }

    #[test]
    fn encode_decode_by_tensor_info() {
        let t = info(ElementType::U8, 3, Some(Q));
        let mut bytes = [0u8; 3];
        encode_input(&t, &[0.0, 1.0, 200.0], &mut bytes).unwrap();
        assert_eq!(bytes, [10, 12, 255]);
        let mut out = [0f32; 3];
        decode_output(&t, &bytes, &mut out).unwrap();
        assert_eq!(out, [0.0, 1.0, 122.5]);

        let t = info(ElementType::I8, 2, Some(Q));
        let mut bytes = [0u8; 2];
        encode_input(&t, &[-100.0, 1.0], &mut bytes).unwrap();
        assert_eq!(bytes, [(-128i8) as u8, 12]);
        decode_output(&t, &bytes, &mut out[..2]).unwrap();
        assert_eq!(&out[..2], &[-69.0, 1.0]);

        let t = info(ElementType::F32, 2, None);
        let mut bytes = [0u8; 8];
        encode_input(&t, &[1.5, -2.0], &mut bytes).unwrap();
        decode_output(&t, &bytes, &mut out[..2]).unwrap();
        assert_eq!(&out[..2], &[1.5, -2.0]);

        // Wrong sizes and missing quantisation name the tensor.
        let e = encode_input(&t, &[1.0], &mut bytes).unwrap_err();
        assert!(e.to_string().contains("tensor t"), "{e}");
        assert!(encode_input(&t, &[1.0, 2.0], &mut [0u8; 7]).is_err());
        let t = info(ElementType::U8, 1, None);
        assert!(encode_input(&t, &[1.0], &mut [0u8; 1]).is_err());
        let t = info(ElementType::I32, 1, None);
        assert!(decode_output(&t, &[0; 4], &mut [0f32; 1]).is_err());
    }

    #[test]
    fn tensor_ref_resolves_and_reports() {
        let ts = vec![info(ElementType::F32, 1, None), {
            let mut t = info(ElementType::F32, 1, None);
            t.name = "embedding".into();
            t
        }];
        assert_eq!(TensorRef::Index(1).resolve(&ts).unwrap(), 1);
        assert_eq!(TensorRef::Name("embedding".into()).resolve(&ts).unwrap(), 1);
        let e = TensorRef::Index(2).resolve(&ts).unwrap_err();
        assert!(
            e.to_string().contains("#2") && e.to_string().contains("embedding"),
            "{e}"
        );
        assert!(TensorRef::Name("logits".into()).resolve(&ts).is_err());
    }
}
