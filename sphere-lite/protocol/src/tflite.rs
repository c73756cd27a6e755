//! A bounds-checking walk over a `.tflite` flatbuffer, run before LiteRT sees it.
//!
//! In the protocol crate because three parties run the same walk: the runtime before it
//! hands a model to LiteRT, `tinylcm model sign` before it signs one, and sphere-lite before
//! it publishes one (a release nobody's device can load is refused where it is made, not on
//! the fleet); the fuzz targets in `tests/fuzz` call it here too.
//!
//! LiteRT 2.3.0 does not verify model flatbuffers: a truncated or corrupt file
//! makes `LiteRtCreateModelFromFile` read out of bounds and crash the process.
//! This walker follows every table, vector and string of the TFLite schema that
//! the loader reads (model, operator codes, subgraphs, tensors, quantisation,
//! operators, buffers, metadata, signatures) and checks each offset against the
//! buffer, plus the indices that link them (tensor → buffer, operator → code,
//! operator/subgraph/signature → tensor). Option tables inside operators are
//! checked as tables (header and field bounds); their rare vector fields are
//! not followed.

/// Upper bound on tables, vectors and strings visited (bounds the work a
/// hostile file can cause; real models have a few thousand).
const MAX_OBJECTS: usize = 4_000_000;

/// Why a buffer is not a well-formed TFLite model.
pub type Invalid = String;

struct Walker<'a> {
    buf: &'a [u8],
    visited: usize,
}

#[derive(Clone, Copy)]
struct Table {
    pos: usize,
    vtable: usize,
    vt_len: usize,
    inline_len: usize,
}

impl<'a> Walker<'a> {
    fn bytes(&self, pos: usize, len: usize, what: &str) -> Result<&'a [u8], Invalid> {
        pos.checked_add(len)
            .and_then(|end| self.buf.get(pos..end))
            .ok_or_else(|| {
                format!(
                    "{what} at byte {pos} (+{len}) lies beyond the end ({} bytes)",
                    self.buf.len()
                )
            })
    }

    fn u16(&self, pos: usize, what: &str) -> Result<usize, Invalid> {
        let b = self.bytes(pos, 2, what)?;
        Ok(u16::from_le_bytes([b[0], b[1]]) as usize)
    }

    fn u32(&self, pos: usize, what: &str) -> Result<u32, Invalid> {
        let b = self.bytes(pos, 4, what)?;
        Ok(u32::from_le_bytes([b[0], b[1], b[2], b[3]]))
    }

    fn u64(&self, pos: usize, what: &str) -> Result<u64, Invalid> {
        let b = self.bytes(pos, 8, what)?;
        let mut a = [0u8; 8];
        a.copy_from_slice(b);
        Ok(u64::from_le_bytes(a))
    }

    fn count(&mut self) -> Result<(), Invalid> {
        self.visited += 1;
        if self.visited > MAX_OBJECTS {
            return Err(format!("more than {MAX_OBJECTS} objects"));
        }
        Ok(())
    }

    /// Follow the uoffset stored at `pos`.
    fn deref(&self, pos: usize, what: &str) -> Result<usize, Invalid> {
        let off = self.u32(pos, what)? as usize;
        pos.checked_add(off)
            .filter(|&p| p < self.buf.len())
            .ok_or_else(|| format!("{what}: offset at byte {pos} points beyond the end"))
    }

    fn table(&mut self, pos: usize, what: &str) -> Result<Table, Invalid> {
        self.count()?;
        let soff = self.u32(pos, what)? as i32 as i64;
        let vtable = usize::try_from(pos as i64 - soff)
            .map_err(|_| format!("{what}: vtable offset out of range"))?;
        let vt_len = self.u16(vtable, what)?;
        let inline_len = self.u16(vtable + 2, what)?;
        if vt_len < 4 || vt_len % 2 != 0 {
            return Err(format!("{what}: malformed vtable"));
        }
        self.bytes(vtable, vt_len, what)?;
        self.bytes(pos, inline_len.max(4), what)?;
        let t = Table {
            pos,
            vtable,
            vt_len,
            inline_len,
        };
        for i in 0..(vt_len - 4) / 2 {
            let fo = self.u16(vtable + 4 + 2 * i, what)?;
            if fo != 0 && fo >= inline_len {
                return Err(format!("{what}: field {i} outside its table"));
            }
        }
        Ok(t)
    }

    /// Position of field `id` (absent → None).
    fn field(
        &self,
        t: Table,
        id: usize,
        size: usize,
        what: &str,
    ) -> Result<Option<usize>, Invalid> {
        let slot = 4 + 2 * id;
        if slot + 2 > t.vt_len {
            return Ok(None);
        }
        let fo = self.u16(t.vtable + slot, what)?;
        if fo == 0 {
            return Ok(None);
        }
        if fo + size > t.inline_len {
            return Err(format!("{what}: field {id} overruns its table"));
        }
        Ok(Some(t.pos + fo))
    }

    fn scalar_u32(&self, t: Table, id: usize, what: &str) -> Result<Option<u32>, Invalid> {
        match self.field(t, id, 4, what)? {
            Some(p) => Ok(Some(self.u32(p, what)?)),
            None => Ok(None),
        }
    }

    /// Vector field: (first element position, length), checked for `elem` bytes each.
    fn vector(
        &mut self,
        t: Table,
        id: usize,
        elem: usize,
        what: &str,
    ) -> Result<Option<(usize, usize)>, Invalid> {
        let Some(p) = self.field(t, id, 4, what)? else {
            return Ok(None);
        };
        self.count()?;
        let v = self.deref(p, what)?;
        let n = self.u32(v, what)? as usize;
        let len = n
            .checked_mul(elem)
            .ok_or_else(|| format!("{what}: vector length overflows"))?;
        self.bytes(v + 4, len, what)?;
        Ok(Some((v + 4, n)))
    }

    fn string(&mut self, t: Table, id: usize, what: &str) -> Result<(), Invalid> {
        if let Some((start, n)) = self.vector(t, id, 1, what)? {
            self.bytes(start, n + 1, what)?; // NUL terminator
        }
        Ok(())
    }

    /// Tables of a vector-of-tables field.
    fn tables(&mut self, t: Table, id: usize, what: &str) -> Result<Vec<Table>, Invalid> {
        let Some((start, n)) = self.vector(t, id, 4, what)? else {
            return Ok(Vec::new());
        };
        (0..n)
            .map(|i| {
                let p = self.deref(start + 4 * i, what)?;
                self.table(p, what)
            })
            .collect()
    }

    fn sub_table(&mut self, t: Table, id: usize, what: &str) -> Result<Option<Table>, Invalid> {
        match self.field(t, id, 4, what)? {
            Some(p) => {
                let pos = self.deref(p, what)?;
                Ok(Some(self.table(pos, what)?))
            }
            None => Ok(None),
        }
    }

    /// The zero points (an i64 vector found by [`Walker::vector`]) of a tensor of TFLite type
    /// `ty` lie in its type's range: -128..=127 for int8, 0..=255 for uint8. LiteRT 2.3.0
    /// trusts them: an int8 tensor whose zero point was -11 with four bytes changed crashed it
    /// (SIGSEGV) while tflite-c 2.6.0 loaded the model (found by the fuzz target
    /// `tflite_walker`'s LiteRT check).
    fn zero_points(&self, ty: u8, zero_points: Option<(usize, usize)>) -> Result<(), Invalid> {
        let range = match ty {
            TENSOR_INT8 => -128..=127,
            TENSOR_UINT8 => 0..=255,
            _ => return Ok(()),
        };
        let Some((start, n)) = zero_points else {
            return Ok(());
        };
        for i in 0..n {
            let z = self.u64(start + 8 * i, "quantization zero point")? as i64;
            if !range.contains(&z) {
                return Err(format!(
                    "quantization zero point {z} outside {range:?} for the tensor's type"
                ));
            }
        }
        Ok(())
    }

    /// i32 index vector whose entries must be -1 (optional) or `< limit`.
    /// Tensor index vector field, each index checked against `limit` (-1: none); the
    /// indices (as many as the vector's bounded length).
    fn indices(
        &mut self,
        t: Table,
        id: usize,
        limit: usize,
        what: &str,
    ) -> Result<Vec<i32>, Invalid> {
        let mut out = Vec::new();
        if let Some((start, n)) = self.vector(t, id, 4, what)? {
            for i in 0..n {
                let v = self.u32(start + 4 * i, what)? as i32;
                if v < -1 || (v >= 0 && v as usize >= limit) {
                    return Err(format!("{what}: index {v} out of range (0..{limit})"));
                }
                out.push(v);
            }
        }
        Ok(out)
    }
}

/// Check that `buf` is a structurally sound TFLite model.
pub fn verify_tflite(buf: &[u8]) -> Result<(), Invalid> {
    let mut w = Walker { buf, visited: 0 };
    if buf.len() < 8 || &buf[4..8] != b"TFL3" {
        return Err("no TFLite file identifier".into());
    }
    let root = w.deref(0, "model")?;
    let model = w.table(root, "model")?;

    let codes = w.tables(model, 1, "operator codes")?;
    for c in &codes {
        w.string(*c, 1, "operator custom code")?;
    }
    let buffers = w.tables(model, 4, "buffers")?;
    for b in &buffers {
        w.vector(*b, 0, 1, "buffer data")?;
        let off = w
            .field(*b, 1, 8, "buffer offset")?
            .map(|p| w.u64(p, "buffer offset"))
            .transpose()?;
        let size = w
            .field(*b, 2, 8, "buffer size")?
            .map(|p| w.u64(p, "buffer size"))
            .transpose()?;
        if let (Some(off), Some(size)) = (off, size)
            && off > 1
            && off
                .checked_add(size)
                .is_none_or(|end| end > buf.len() as u64)
        {
            return Err(format!("buffer data at {off}+{size} lies beyond the end"));
        }
    }
    let subgraphs = w.tables(model, 2, "subgraphs")?;
    let mut tensor_counts = Vec::new();
    for sg in &subgraphs {
        let tensors = w.tables(*sg, 0, "tensors")?;
        for t in &tensors {
            w.vector(*t, 0, 4, "tensor shape")?;
            if let Some(b) = w.scalar_u32(*t, 2, "tensor buffer")?
                && b as usize >= buffers.len().max(1)
            {
                return Err(format!("tensor buffer index {b} out of range"));
            }
            w.string(*t, 3, "tensor name")?;
            if let Some(q) = w.sub_table(*t, 4, "quantization")? {
                w.vector(q, 0, 4, "quantization min")?;
                w.vector(q, 1, 4, "quantization max")?;
                w.vector(q, 2, 4, "quantization scale")?;
                let zero_points = w.vector(q, 3, 8, "quantization zero point")?;
                let ty = match w.field(*t, 1, 1, "tensor type")? {
                    Some(p) => w.bytes(p, 1, "tensor type")?[0],
                    None => 0,
                };
                w.zero_points(ty, zero_points)?;
                w.sub_table(q, 5, "quantization details")?;
            }
            w.sub_table(*t, 6, "sparsity")?;
            w.vector(*t, 7, 4, "tensor shape signature")?;
            for v in w.tables(*t, 9, "variant tensors")? {
                w.vector(v, 0, 4, "variant shape")?;
            }
        }
        let nt = tensors.len();
        let inputs = w.indices(*sg, 1, nt, "subgraph inputs")?;
        let outputs = w.indices(*sg, 2, nt, "subgraph outputs")?;
        tensor_counts.push((nt, [inputs, outputs]));
        for op in w.tables(*sg, 3, "operators")? {
            if let Some(i) = w.scalar_u32(op, 0, "operator code index")?
                && i as usize >= codes.len()
            {
                return Err(format!("operator code index {i} out of range"));
            }
            w.indices(op, 1, nt, "operator inputs")?;
            w.indices(op, 2, nt, "operator outputs")?;
            w.sub_table(op, 4, "builtin options")?;
            w.vector(op, 5, 1, "custom options")?;
            w.vector(op, 7, 1, "mutating variable inputs")?;
            w.indices(op, 8, nt, "intermediates")?;
            w.sub_table(op, 12, "builtin options 2")?;
        }
        w.string(*sg, 4, "subgraph name")?;
    }
    w.string(model, 3, "description")?;
    w.vector(model, 5, 4, "metadata buffer")?;
    for m in w.tables(model, 6, "metadata")? {
        w.string(m, 0, "metadata name")?;
    }
    for s in w.tables(model, 7, "signature defs")? {
        let sg = w.scalar_u32(s, 4, "signature subgraph")?.unwrap_or(0) as usize;
        let Some((nt, ends)) = tensor_counts.get(sg) else {
            return Err(format!("signature subgraph {sg} out of range"));
        };
        for id in [0, 1] {
            for m in w.tables(s, id, "signature tensors")? {
                // LiteRT 2.3.0 copies this name into a C++ string without checking that it is
                // there: an absent one throws an exception through its C API, which aborts
                // the process (Rust cannot catch it). All 43 findings of the fuzz target
                // `tflite_walker`'s LiteRT check in its second run had one; a signature
                // without its key, by contrast, is refused by LiteRT with an error.
                if w.field(m, 0, 4, "signature tensor name")?.is_none() {
                    let side = if id == 0 { "input" } else { "output" };
                    return Err(format!(
                        "a signature {side} has no name (LiteRT 2.3.0 aborts on such a model)"
                    ));
                }
                w.string(m, 0, "signature tensor name")?;
                // Absent means tensor 0, as in the schema.
                let i = w.scalar_u32(m, 1, "signature tensor index")?.unwrap_or(0);
                if i as usize >= *nt {
                    return Err(format!("signature tensor index {i} out of range"));
                }
                // LiteRT 2.3.0 looks a signature's tensors up among its subgraph's inputs and
                // outputs and throws (aborting the process, as above) when one is not there:
                // the fuzz target's LiteRT check found models whose signature outputs had lost
                // their index (so named tensor 0, the input).
                if !ends[id].contains(&(i as i32)) {
                    let side = if id == 0 { "input" } else { "output" };
                    return Err(format!(
                        "signature {side} names tensor {i}, which is not one of its subgraph's \
                         {side}s (LiteRT 2.3.0 aborts on such a model)"
                    ));
                }
            }
        }
        w.string(s, 2, "signature key")?;
    }
    Ok(())
}

/// What backend selection needs to know about a model before any library sees it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Traits {
    /// Some tensor that is computed (not a constant) is int8 or uint8: the model's
    /// operations run on integers (full-integer quantisation), not floats.
    pub integer_ops: bool,
}

/// `TensorType` codes of the TFLite schema for int8 and uint8.
const TENSOR_UINT8: u8 = 3;
const TENSOR_INT8: u8 = 9;

/// The [`Traits`] of a model that [`verify_tflite`] accepts (checked again here, so every
/// offset followed below is known to lie inside `buf`).
pub fn traits(buf: &[u8]) -> Result<Traits, Invalid> {
    verify_tflite(buf)?;
    let mut w = Walker { buf, visited: 0 };
    let root = w.deref(0, "model")?;
    let model = w.table(root, "model")?;
    let buffers = w.tables(model, 4, "buffers")?;
    // A constant's data sits in its buffer (inline, or at an offset in large files).
    let mut constant = Vec::with_capacity(buffers.len());
    for b in &buffers {
        let inline = w
            .vector(*b, 0, 1, "buffer data")?
            .is_some_and(|(_, n)| n > 0);
        let outside = w
            .field(*b, 1, 8, "buffer offset")?
            .map(|p| w.u64(p, "buffer offset"))
            .transpose()?
            .is_some_and(|off| off > 1);
        constant.push(inline || outside);
    }
    let mut traits = Traits::default();
    for sg in w.tables(model, 2, "subgraphs")? {
        for t in w.tables(sg, 0, "tensors")? {
            let ty = match w.field(t, 1, 1, "tensor type")? {
                Some(p) => w.bytes(p, 1, "tensor type")?[0],
                None => 0,
            };
            let buffer = w.scalar_u32(t, 2, "tensor buffer")?.unwrap_or(0) as usize;
            let is_constant = constant.get(buffer).copied().unwrap_or(false);
            if !is_constant && (ty == TENSOR_INT8 || ty == TENSOR_UINT8) {
                traits.integer_ops = true;
            }
        }
    }
    Ok(traits)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn model(name: &str) -> Vec<u8> {
        let p = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("../../runtime/models/test")
            .join(name);
        std::fs::read(p).unwrap()
    }

    /// Every `.tflite` under `runtime/models` (the test models and the default models built
    /// into the binary) passes the walk: a rule that refuses a real model is too wide.
    #[test]
    fn committed_models_verify() {
        let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../runtime/models");
        let mut dirs = vec![root];
        let mut seen = Vec::new();
        while let Some(dir) = dirs.pop() {
            for entry in std::fs::read_dir(&dir).unwrap() {
                let path = entry.unwrap().path();
                if path.is_dir() {
                    dirs.push(path);
                } else if path.extension().is_some_and(|e| e == "tflite") {
                    let bytes = std::fs::read(&path).unwrap();
                    verify_tflite(&bytes).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
                    seen.push(path.file_name().unwrap().to_string_lossy().into_owned());
                }
            }
        }
        for n in [
            "tiny_f32.tflite",
            "tiny_int8.tflite",
            "tiny_uint8.tflite",
            "tiny_dynbatch_uint8.tflite",
            "mobilenetv2_int8.tflite",
            "default_f32.tflite",
            "default_int8.tflite",
        ] {
            assert!(
                seen.iter().any(|s| s == n),
                "{n} not found under runtime/models"
            );
        }
    }

    #[test]
    fn integer_models_are_told_from_float_ones() {
        for (n, integer) in [
            ("tiny_f32.tflite", false),
            ("tiny_int8.tflite", true),
            ("tiny_uint8.tflite", true),
            ("mobilenetv2_int8.tflite", true),
        ] {
            let t = traits(&model(n)).unwrap_or_else(|e| panic!("{n}: {e}"));
            assert_eq!(t.integer_ops, integer, "{n}");
        }
        assert!(traits(&model("tiny_int8.tflite")[..100]).is_err());
    }

    #[test]
    fn every_truncation_is_rejected() {
        let full = model("tiny_int8.tflite");
        for len in 0..full.len() {
            assert!(
                verify_tflite(&full[..len]).is_err(),
                "prefix of {len} bytes accepted"
            );
        }
    }

    /// Fails before this change: the walker accepted this model, and LiteRT 2.3.0 died of
    /// SIGSEGV loading it (the fuzz target `tflite_walker`'s differential check found it;
    /// tflite-c 2.6.0 loads it). Four bytes of `tiny_uint8.tflite` turn the int8 output
    /// `StatefulPartitionedCall:01`'s zero point -11 (an i64 at byte 4240) into a huge one.
    #[test]
    fn a_zero_point_outside_its_type_is_rejected() {
        let mut m = model("tiny_uint8.tflite");
        assert_eq!(
            m[4240..4248],
            (-11i64).to_le_bytes(),
            "the committed model changed; find the zero point again"
        );
        m[4241..4245].copy_from_slice(&[1, 0, 0, 19]);
        let e = verify_tflite(&m).unwrap_err();
        assert!(e.contains("zero point"), "{e}");
        assert!(traits(&m).is_err());
    }

    /// Fails before this change: the walker accepted these models, and LiteRT 2.3.0 aborted
    /// the process loading them (a C++ exception: "Rust cannot catch foreign exceptions")
    /// while tflite-c 2.6.0 loads them. In `tiny_uint8.tflite` the signature input `input`
    /// (a table at byte 188 holding only its name) is pointed at an empty vtable (at byte
    /// 10048) so its name is absent and nothing else changes; in `tiny_f32.tflite` one byte
    /// of the output `scores`'s table (byte 140, the fuzzer's mutation) moves its vtable so
    /// its name is absent.
    #[test]
    fn a_signature_tensor_without_a_name_is_rejected() {
        let mut m = model("tiny_uint8.tflite");
        assert_eq!(
            (&m[188..192], &m[10048..10052]),
            (&(188i32 - 3054).to_le_bytes()[..], &[4u8, 0, 4, 0][..]),
            "the committed model changed; find the signature input again"
        );
        m[188..192].copy_from_slice(&(188i32 - 10048).to_le_bytes());
        let e = verify_tflite(&m).unwrap_err();
        assert!(e.contains("signature input has no name"), "{e}");
        assert!(traits(&m).is_err());

        let mut m = model("tiny_f32.tflite");
        assert_eq!(
            m[140..144],
            (-128i32).to_le_bytes(),
            "the committed model changed; find the signature output again"
        );
        m[140] = 122;
        let e = verify_tflite(&m).unwrap_err();
        assert!(e.contains("signature output has no name"), "{e}");
    }

    /// Fails before this change: the walker accepted this model and LiteRT 2.3.0 aborted the
    /// process loading it (`LiteRtGetCompiledModelOutputBufferRequirements` throwing
    /// `std::logic_error`). In `tiny_int8.tflite` the vtable at byte 268, shared by both
    /// signature outputs, loses its tensor-index field (byte 274: 4 → 0, the fuzzer's
    /// mutation), so both name tensor 0, the subgraph's input.
    #[test]
    fn a_signature_output_that_is_not_a_subgraph_output_is_rejected() {
        let mut m = model("tiny_int8.tflite");
        assert!(verify_tflite(&m).is_ok());
        assert_eq!(
            m[268..276],
            [8, 0, 12, 0, 8, 0, 4, 0],
            "the committed model changed; find the signature outputs' vtable again"
        );
        m[274] = 0;
        let e = verify_tflite(&m).unwrap_err();
        assert!(
            e.contains(
                "signature output names tensor 0, which is not one of its subgraph's outputs"
            ),
            "{e}"
        );
        assert!(traits(&m).is_err());
    }

    #[test]
    fn garbage_never_panics() {
        let full = model("tiny_f32.tflite");
        // Flip bytes one at a time (a cheap fuzz); any result is fine, no panic.
        let mut m = full.clone();
        for i in (8..m.len()).step_by(7) {
            m[i] ^= 0x5a;
            let _ = verify_tflite(&m);
            m[i] = full[i];
        }
    }
}
