//! Turning a camera frame into model input.
//!
//! A [`Preprocessor`] is built once for a model's input tensor: it checks the
//! tensor, resolves its layout and pre-computes a table from every pixel value
//! to the encoded input value (normalisation and quantisation folded in). Per
//! frame it resizes into a reused buffer and writes the tensor bytes directly,
//! so the steady state allocates nothing of its own; only the resize library
//! (`fast_image_resize`) computes its filter coefficients, small vectors freed
//! in the same call, on every frame whose size differs from the model input
//! (`tests/loop_alloc.rs`). Colour order is explicit configuration: the
//! original proof of concept fed BGR to an RGB-trained model by accident.

mod fit;
mod lut;

use crate::config_error::ConfigError;
use crate::engine::{ElementType, TensorInfo};
use crate::frame::Frame;
use fit::{Fitter, placement};
use lut::{Lut, OutputType};

/// Largest model input side accepted, in pixels.
pub const MAX_INPUT_SIDE: usize = 4096;

/// How a frame is fitted to the model's input size, and the channel order the model
/// expects: words of the model manifest too, so the protocol crate's.
pub use tinylcm_protocol::model_manifest::{ChannelOrder, ResizeMode};

/// Memory layout of the input tensor.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum TensorLayout {
    /// NHWC when the last dimension is 3, else NCHW when the second is 3.
    #[default]
    Auto,
    /// `[1, height, width, 3]`.
    Nhwc,
    /// `[1, 3, height, width]`.
    Nchw,
}

/// Settings of preprocessing (`[preprocess]`).
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
#[serde(default, deny_unknown_fields, rename_all = "kebab-case")]
pub struct PreprocessConfig {
    /// `stretch` (default), `center-crop` or `letterbox`.
    pub resize: ResizeMode,
    /// `rgb` (default) or `bgr`.
    pub channel_order: ChannelOrder,
    /// `auto` (default), `nhwc` or `nchw`.
    pub layout: TensorLayout,
    /// Subtracted from each pixel value (0..255), per channel in the model's
    /// channel order (default 0, 0, 0).
    pub mean: [f32; 3],
    /// Divides the result, per channel in the model's order (default 255,
    /// 255, 255: the model sees 0..1).
    pub std: [f32; 3],
    /// Pixel value of the letterbox padding, before normalisation (default 0).
    pub pad: u8,
}

impl Default for PreprocessConfig {
    fn default() -> Self {
        PreprocessConfig {
            resize: ResizeMode::Stretch,
            channel_order: ChannelOrder::Rgb,
            layout: TensorLayout::Auto,
            mean: [0.0; 3],
            std: [255.0; 3],
            pad: 0,
        }
    }
}

impl PreprocessConfig {
    /// Check the values; keys are reported as `preprocess.<key>`.
    pub fn validate(&self) -> Result<(), ConfigError> {
        if let Some(m) = self.mean.iter().find(|m| !m.is_finite()) {
            return Err(ConfigError::new(
                "preprocess.mean",
                format!("{m} is not a finite number"),
                "give three numbers on the 0..255 pixel scale, e.g. [0, 0, 0]",
            ));
        }
        if let Some(s) = self.std.iter().find(|s| !s.is_finite() || s.abs() < 1e-6) {
            return Err(ConfigError::new(
                "preprocess.std",
                format!("{s} cannot divide pixel values"),
                "give three non-zero numbers, e.g. [255, 255, 255] for inputs in 0..1",
            ));
        }
        Ok(())
    }
}

/// Why a preprocessor cannot be built or run.
#[derive(Debug, thiserror::Error)]
pub enum PreprocessError {
    /// The configuration is invalid.
    #[error(transparent)]
    Config(#[from] ConfigError),
    /// The model's input tensor is not an image input this runtime can feed.
    #[error("model input `{name}` {shape:?} {dtype}: {reason}")]
    Tensor {
        /// Tensor name.
        name: String,
        /// Its shape.
        shape: Vec<usize>,
        /// Its element type.
        dtype: ElementType,
        /// What is unsupported.
        reason: String,
    },
    /// The frame cannot be used (empty, inconsistent buffer).
    #[error("frame {width}x{height} with {len} bytes: {reason}")]
    Frame {
        /// Frame width.
        width: u32,
        /// Frame height.
        height: u32,
        /// Length of its data.
        len: usize,
        /// What is wrong.
        reason: String,
    },
    /// The output buffer does not have the tensor's size.
    #[error("output buffer has {got} bytes, the input tensor needs {expected}")]
    Output {
        /// Tensor size in bytes.
        expected: usize,
        /// Buffer size.
        got: usize,
    },
    /// Resizing failed.
    #[error("resize failed: {0}")]
    Resize(String),
}

/// Resolved input geometry.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Geometry {
    width: usize,
    height: usize,
    nchw: bool,
}

/// Frame to input tensor bytes for one model input.
pub struct Preprocessor {
    cfg: PreprocessConfig,
    geometry: Geometry,
    out_type: OutputType,
    lut: Lut,
    /// Model channel c reads frame channel `source[c]`.
    source: [usize; 3],
    fitter: Fitter,
}

impl std::fmt::Debug for Preprocessor {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Preprocessor")
            .field("cfg", &self.cfg)
            .field("geometry", &self.geometry)
            .field("out_type", &self.out_type)
            .finish_non_exhaustive()
    }
}

impl Preprocessor {
    /// A preprocessor for `input`: rank 4, batch 1, 3 channels, float32, uint8
    /// or int8 (the 8-bit types need quantisation parameters).
    pub fn new(cfg: &PreprocessConfig, input: &TensorInfo) -> Result<Self, PreprocessError> {
        cfg.validate()?;
        let bad = |reason: String| PreprocessError::Tensor {
            name: input.name.clone(),
            shape: input.shape.clone(),
            dtype: input.dtype,
            reason,
        };
        let geometry = geometry(cfg.layout, &input.shape).map_err(bad)?;
        let out_type = match (input.dtype, input.quantization) {
            (ElementType::F32, _) => OutputType::F32,
            (ElementType::U8 | ElementType::I8, None) => {
                return Err(bad(
                    "quantised input without quantisation parameters (scale, zero point)".into(),
                ));
            }
            (ElementType::U8 | ElementType::I8, Some(q))
                if !(q.scale.is_finite() && q.scale > 0.0) =>
            {
                return Err(bad(format!("invalid quantisation scale {}", q.scale)));
            }
            (ElementType::U8, Some(q)) => OutputType::U8(q),
            (ElementType::I8, Some(q)) => OutputType::I8(q),
            (other, _) => {
                return Err(bad(format!(
                    "element type {other} is not supported (float32, uint8 or int8)"
                )));
            }
        };
        let lut = Lut::build(out_type, cfg.mean, cfg.std);
        let source = match cfg.channel_order {
            ChannelOrder::Rgb => [0, 1, 2],
            ChannelOrder::Bgr => [2, 1, 0],
        };
        tracing::debug!(
            width = geometry.width,
            height = geometry.height,
            nchw = geometry.nchw,
            ?out_type,
            "preprocessor ready"
        );
        Ok(Preprocessor {
            cfg: cfg.clone(),
            geometry,
            out_type,
            lut,
            source,
            fitter: Fitter::new(),
        })
    }

    /// Input width and height the frames are fitted to.
    pub fn input_size(&self) -> (usize, usize) {
        (self.geometry.width, self.geometry.height)
    }

    /// Bytes `run` writes (the input tensor's size).
    pub fn output_len(&self) -> usize {
        self.geometry.width * self.geometry.height * 3 * self.out_type.size()
    }

    /// Write the input tensor for `frame` into `out` (exactly [`Self::output_len`] bytes).
    pub fn run(&mut self, frame: &Frame, out: &mut [u8]) -> Result<(), PreprocessError> {
        let (fw, fh) = (frame.width as usize, frame.height as usize);
        let frame_err = |reason: &str| PreprocessError::Frame {
            width: frame.width,
            height: frame.height,
            len: frame.data.len(),
            reason: reason.into(),
        };
        if fw == 0 || fh == 0 {
            return Err(frame_err("empty frame"));
        }
        if fw.checked_mul(fh).and_then(|p| p.checked_mul(3)) != Some(frame.data.len()) {
            return Err(frame_err("data length is not width * height * 3"));
        }
        let expected = self.output_len();
        if out.len() != expected {
            return Err(PreprocessError::Output {
                expected,
                got: out.len(),
            });
        }
        let g = self.geometry;
        let place = placement(self.cfg.resize, (fw, fh), (g.width, g.height));
        let pic = self
            .fitter
            .fit(&frame.data, (fw, fh), self.cfg.resize, place)
            .map_err(PreprocessError::Resize)?;
        let letterboxed = (place.width, place.height) != (g.width, g.height);
        match &self.lut {
            Lut::Byte(t) => {
                if letterboxed {
                    fill_pad(out, t, self.cfg.pad, g);
                }
                write(out, pic, t, self.source, g, place);
            }
            Lut::F32(t) => {
                if letterboxed {
                    fill_pad(out, t, self.cfg.pad, g);
                }
                write(out, pic, t, self.source, g, place);
            }
        }
        Ok(())
    }
}

/// Resolve width, height and layout from the tensor shape.
fn geometry(layout: TensorLayout, shape: &[usize]) -> Result<Geometry, String> {
    let &[batch, d1, d2, d3] = shape else {
        return Err(format!(
            "expected rank 4 [1, H, W, 3] or [1, 3, H, W], got rank {}",
            shape.len()
        ));
    };
    if batch != 1 {
        return Err(format!("batch size {batch}, expected 1"));
    }
    let nchw = match layout {
        TensorLayout::Nhwc => false,
        TensorLayout::Nchw => true,
        TensorLayout::Auto if d3 == 3 => false,
        TensorLayout::Auto if d1 == 3 => true,
        TensorLayout::Auto => {
            return Err(
                "no dimension of 3 colour channels (last for NHWC, second for NCHW)".into(),
            );
        }
    };
    let (channels, height, width) = if nchw { (d1, d2, d3) } else { (d3, d1, d2) };
    if channels != 3 {
        return Err(format!(
            "{channels} channels in {} layout, expected 3",
            if nchw { "NCHW" } else { "NHWC" }
        ));
    }
    if !(1..=MAX_INPUT_SIDE).contains(&width) || !(1..=MAX_INPUT_SIDE).contains(&height) {
        return Err(format!(
            "input size {width}x{height} is outside 1..={MAX_INPUT_SIDE}"
        ));
    }
    Ok(Geometry {
        width,
        height,
        nchw,
    })
}

/// Fill the whole tensor with the encoded padding value.
fn fill_pad<const N: usize>(out: &mut [u8], lut: &[[[u8; N]; 256]; 3], pad: u8, g: Geometry)
where
    [u8; N]: Copy,
{
    let plane = g.width * g.height;
    for (i, el) in out.chunks_exact_mut(N).enumerate() {
        let c = if g.nchw { i / plane } else { i % 3 };
        el.copy_from_slice(&lut[c][usize::from(pad)]);
    }
}

/// Write the packed RGB8 picture `pic` through the tables into `out`.
fn write<const N: usize>(
    out: &mut [u8],
    pic: &[u8],
    lut: &[[[u8; N]; 256]; 3],
    source: [usize; 3],
    g: Geometry,
    place: fit::Placement,
) {
    let plane = g.width * g.height;
    for y in 0..place.height {
        let row = &pic[y * place.width * 3..(y + 1) * place.width * 3];
        let first = (y + place.top) * g.width + place.left;
        if g.nchw {
            for c in 0..3 {
                let base = (c * plane + first) * N;
                let dst = &mut out[base..base + place.width * N];
                for (el, px) in dst.chunks_exact_mut(N).zip(row.chunks_exact(3)) {
                    el.copy_from_slice(&lut[c][usize::from(px[source[c]])]);
                }
            }
        } else {
            let dst = &mut out[first * 3 * N..(first + place.width) * 3 * N];
            for (el, px) in dst.chunks_exact_mut(3 * N).zip(row.chunks_exact(3)) {
                for c in 0..3 {
                    el[c * N..(c + 1) * N].copy_from_slice(&lut[c][usize::from(px[source[c]])]);
                }
            }
        }
    }
}
