//! Reading the model's outputs back as numbers: class scores and embedding.
//!
//! Output tensors may be float32 or quantised; this module owns the reusable
//! buffers they are copied and dequantised into, so reading them allocates
//! nothing per frame.

use crate::engine::{Engine, EngineError, TensorInfo, tensor};

/// One output tensor with its raw and dequantised buffers.
#[derive(Debug)]
pub struct OutputBuffer {
    index: usize,
    info: TensorInfo,
    raw: Vec<u8>,
    values: Vec<f32>,
}

impl OutputBuffer {
    /// Prepare buffers for output `index` of `engine`.
    pub fn new(engine: &dyn Engine, index: usize) -> Result<Self, EngineError> {
        let info = engine
            .outputs()
            .get(index)
            .cloned()
            .ok_or_else(|| EngineError::Tensor {
                tensor: format!("output #{index}"),
                reason: format!("the model has {} outputs", engine.outputs().len()),
            })?;
        let byte_len = info.byte_len().ok_or_else(|| EngineError::Tensor {
            tensor: info.name.clone(),
            reason: format!("element type {} is not supported", info.dtype),
        })?;
        Ok(OutputBuffer {
            index,
            raw: vec![0; byte_len],
            values: vec![0.0; info.element_count()],
            info,
        })
    }

    /// Copy the output out of the engine and dequantise it.
    pub fn read(&mut self, engine: &mut dyn Engine) -> Result<&[f32], EngineError> {
        engine.output(self.index, &mut self.raw)?;
        tensor::decode_output(&self.info, &self.raw, &mut self.values)?;
        Ok(&self.values)
    }

    /// The values of the last [`read`](Self::read).
    pub fn values(&self) -> &[f32] {
        &self.values
    }

    /// The tensor read.
    pub fn info(&self) -> &TensorInfo {
        &self.info
    }
}

/// Index and value of the largest score (the first on ties); `None` when empty or all NaN.
pub fn top_class(scores: &[f32]) -> Option<(usize, f32)> {
    scores
        .iter()
        .copied()
        .enumerate()
        .filter(|(_, s)| !s.is_nan())
        .fold(None, |best, (i, s)| match best {
            Some((_, b)) if b >= s => best,
            _ => Some((i, s)),
        })
}

#[cfg(test)]
mod tests {
    use super::top_class;

    #[test]
    fn top_class_picks_first_maximum_and_skips_nan() {
        assert_eq!(top_class(&[0.1, 0.7, 0.7, 0.2]), Some((1, 0.7)));
        assert_eq!(top_class(&[f32::NAN, 0.3]), Some((1, 0.3)));
        assert_eq!(top_class(&[]), None);
        assert_eq!(top_class(&[f32::NAN]), None);
    }
}
