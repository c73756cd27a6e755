"""Shared helpers for the TinyLCM model scripts: seeding, TFLite export, tensor naming,
model description and golden values.

Everything here runs inside the training venv (see venv.sh); nothing in CI imports it.
"""

from __future__ import annotations

import hashlib
import os
import random
import tempfile

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
os.environ.setdefault("PYTHONHASHSEED", "0")

import warnings

warnings.filterwarnings("ignore", message=".*tf.lite.Interpreter is deprecated.*")

import numpy as np
import tensorflow as tf
import keras

# The formula every golden value is computed for (also written into golden.json).
GOLDEN_INPUT_FORMULA = "x[k] = (k*7919 % 255) / 255 for k = 0..N-1 over the flattened NHWC input (float); " \
    "quantised inputs: q = clamp(round(x / scale + zero_point))"
GOLDEN_HEAD = 6


def set_seeds(seed: int) -> None:
    """Seed Python, NumPy, TF and Keras and ask TF for deterministic kernels."""
    random.seed(seed)
    np.random.seed(seed)
    keras.utils.set_random_seed(seed)
    tf.random.set_seed(seed)
    try:
        tf.config.experimental.enable_op_determinism()
    except Exception:  # pragma: no cover - older TF
        pass


def golden_input_float(shape) -> np.ndarray:
    n = int(np.prod(shape))
    k = np.arange(n, dtype=np.int64)
    return ((k * 7919 % 255).astype(np.float32) / np.float32(255.0)).reshape(shape)


def calibrate_batchnorm(model: keras.Model, batch: np.ndarray) -> None:
    """Give a random-init model sensible BatchNorm statistics.

    Random init leaves moving_mean=0 / moving_variance=1, so activations of a deep
    random network (MobileNetV2) collapse towards zero at inference.  One training-mode
    pass with momentum 0 sets each BN layer's moving statistics to the batch statistics,
    which keeps activations well scaled (useful golden values, meaningful int8 ranges).
    No weights other than the BN statistics change.
    """
    bns = [l for l in model._flatten_layers() if isinstance(l, keras.layers.BatchNormalization)]
    if not bns:
        return
    saved = [l.momentum for l in bns]
    for l in bns:
        l.momentum = 0.0
    model(batch, training=True)
    for l, m in zip(bns, saved):
        l.momentum = m


def convert(model: keras.Model, output_names, input_shape, quant: str | None = None,
            representative=None, batch: int | None = 1) -> bytes:
    """Convert a Keras model to TFLite with a static batch of 1 (batch=None: a dynamic batch,
    shape signature [-1, ...], as models exported for batched serving have).

    quant: None (float32), "int8" (full integer, int8 I/O) or "uint8" (full integer, uint8 I/O).
    representative: iterable of float32 arrays shaped (1, *input_shape) for calibration.
    Tensors are renamed afterwards so that the input is called "input" and every output
    carries its signature name (see rename_tensors).
    """
    names = list(output_names)

    def serve(x):
        outs = model(x, training=False)
        if not isinstance(outs, (list, tuple)):
            outs = [outs]
        return {n: o for n, o in zip(names, outs)}

    with tempfile.TemporaryDirectory() as d:
        # Keras' ExportArchive (not a hand-made tf.Module: that one kept the weights as
        # resource variables, READ_VARIABLE ops that fail in TFLite); the dict keys become
        # the signature's output names.
        archive = keras.export.ExportArchive()
        archive.track(model)
        archive.add_endpoint(name="serving_default", fn=serve, input_signature=[
            tf.TensorSpec((batch, *input_shape), tf.float32, name="input")])
        archive.write_out(d, verbose=False)
        conv = tf.lite.TFLiteConverter.from_saved_model(d)
        if quant is not None:
            samples = [np.asarray(s, np.float32) for s in representative]

            def rep():
                for s in samples:
                    yield [s]

            conv.optimizations = [tf.lite.Optimize.DEFAULT]
            conv.representative_dataset = rep
            conv.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]
            io = {"int8": tf.int8, "uint8": tf.uint8}[quant]
            conv.inference_input_type = io
            conv.inference_output_type = io
            # Per-tensor (not per-channel) weights for FULLY_CONNECTED: TF 2.21 writes
            # per-channel FC weights under op version 4, which older runtimes (the classic
            # TFLite 2.6 C API) accept but misread — every output came out as its zero point.
            conv._experimental_disable_per_channel_quantization_for_dense_layers = True
        raw = conv.convert()
    renamed = rename_tensors(raw)
    _check_same_outputs(raw, renamed)
    return renamed


def rename_tensors(model_bytes: bytes) -> bytes:
    """Give the I/O tensors their signature names ("input", "scores", "embedding", ...).

    The converter names outputs "StatefulPartitionedCall:N", which means nothing to a
    runtime that has no signature API (the classic TFLite 2.6 C API).  The model is
    re-serialised with the flatbuffer object API; buffer data is kept 16-byte aligned as
    the TFLite schema asks (force_align: 16).
    """
    from tensorflow.lite.python import schema_py_generated as fb
    from tensorflow.lite.tools import flatbuffer_utils as fu

    model = fu.read_model_from_bytearray(bytearray(model_bytes))
    sg = model.subgraphs[0]
    renames = {}
    for sig in model.signatureDefs or []:
        for tm in list(sig.inputs or []) + list(sig.outputs or []):
            renames[tm.tensorIndex] = tm.name.decode() if isinstance(tm.name, bytes) else tm.name
    for idx, name in renames.items():
        sg.tensors[idx].name = name.encode()
    for buf in model.buffers:
        if buf.data is not None:
            buf.data = bytes(bytearray(buf.data))

    orig = fb.BufferStartDataVector
    fb.BufferStartDataVector = lambda builder, n: builder.StartVector(1, n, 16)
    try:
        out = fu.convert_object_to_bytearray(model)
    finally:
        fb.BufferStartDataVector = orig
    return bytes(out)


def interpreter(model_bytes: bytes) -> tf.lite.Interpreter:
    it = tf.lite.Interpreter(model_content=model_bytes, num_threads=1)
    it.allocate_tensors()
    return it


def run(model_bytes_or_it, x_float: np.ndarray):
    """Run one float input through the model (quantising it if the input is quantised);
    returns the list of dequantised float32 outputs in output-index order."""
    it = model_bytes_or_it if isinstance(model_bytes_or_it, tf.lite.Interpreter) else interpreter(model_bytes_or_it)
    d = it.get_input_details()[0]
    it.set_tensor(d["index"], quantize(x_float, d))
    it.invoke()
    return [dequantize(it.get_tensor(o["index"]), o) for o in it.get_output_details()]


def quantize(x: np.ndarray, detail) -> np.ndarray:
    dt = detail["dtype"]
    if dt == np.float32:
        return x.astype(np.float32)
    scale, zp = detail["quantization"]
    info = np.iinfo(dt)
    q = np.round(x / scale + zp)
    return np.clip(q, info.min, info.max).astype(dt)


def dequantize(y: np.ndarray, detail) -> np.ndarray:
    if detail["dtype"] == np.float32:
        return y.astype(np.float32)
    scale, zp = detail["quantization"]
    return ((y.astype(np.float32) - zp) * scale).astype(np.float32)


def _check_same_outputs(a: bytes, b: bytes) -> None:
    ia, ib = interpreter(a), interpreter(b)
    shape = tuple(ia.get_input_details()[0]["shape"])
    x = golden_input_float(shape)
    for ya, yb in zip(run(ia, x), run(ib, x)):
        if not np.array_equal(ya, yb):
            raise RuntimeError("renaming tensors changed the model's outputs")


def sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def _tensor_desc(d) -> dict:
    scale, zp = d["quantization"]
    desc = {
        "index": None,
        "tensor_index": int(d["index"]),
        "name": d["name"],
        "dtype": np.dtype(d["dtype"]).name,
        "shape": [int(s) for s in d["shape"]],
    }
    signature = [int(s) for s in d.get("shape_signature", d["shape"])]
    if signature != desc["shape"]:
        desc["shape_signature"] = signature
    if d["dtype"] != np.float32:
        desc["quantization"] = {"scale": float(scale), "zero_point": int(zp)}
    else:
        desc["quantization"] = None
    return desc


def describe(model_bytes: bytes) -> dict:
    """Inputs, outputs (in output-index order), signature map and size of a .tflite model."""
    it = interpreter(model_bytes)
    ins, outs = [], []
    for i, d in enumerate(it.get_input_details()):
        t = _tensor_desc(d)
        t["index"] = i
        ins.append(t)
    for i, d in enumerate(it.get_output_details()):
        t = _tensor_desc(d)
        t["index"] = i
        outs.append(t)
    return {"inputs": ins, "outputs": outs, "bytes": len(model_bytes), "sha256": sha256(model_bytes)}


def golden(model_bytes: bytes) -> dict:
    """Golden values for the deterministic input: per output the first values and the sum,
    dequantised, computed with the TF Python interpreter (1 thread, default delegates)."""
    desc = describe(model_bytes)
    it = interpreter(model_bytes)
    d_in = it.get_input_details()[0]
    x = golden_input_float(tuple(d_in["shape"]))
    ys = run(it, x)
    # The same input through the other kernel sets: optimised builtins without XNNPACK
    # (what the classic C API runs when no delegate is attached) and the reference kernels.
    # Quantised deep nets round differently per kernel set; the spread is recorded.
    variants = {}
    R = tf.lite.experimental.OpResolverType
    for key, rt in [("builtin_no_xnnpack", R.BUILTIN_WITHOUT_DEFAULT_DELEGATES),
                    ("reference", R.BUILTIN_REF)]:
        alt = tf.lite.Interpreter(model_content=model_bytes, num_threads=1,
                                  experimental_op_resolver_type=rt)
        alt.allocate_tensors()
        variants[key] = run(alt, x)
    import capi26
    if capi26.available():
        variants["tflite_c_2.6.0"] = capi26.run(model_bytes, x, xnnpack=False)
        variants["tflite_c_2.6.0_xnnpack"] = capi26.run(model_bytes, x, xnnpack=True)
    import litert_c
    if litert_c.available():
        variants["litert_2.3.0"] = litert_c.run(model_bytes, x, desc["inputs"], desc["outputs"])
    q_in = quantize(x, d_in)
    outputs = {}
    for i, (o, y) in enumerate(zip(desc["outputs"], ys)):
        flat = y.reshape(-1)
        alts = {k: v[i].reshape(-1) for k, v in variants.items()}
        outputs[str(o["index"])] = {
            "name": o["name"],
            "dtype": o["dtype"],
            "shape": o["shape"],
            "quantization": o["quantization"],
            "first": [float(v) for v in flat[:GOLDEN_HEAD]],
            "sum": float(flat.astype(np.float64).sum()),
            "other_kernels": {
                k: {"first": [float(v) for v in a[:GOLDEN_HEAD]],
                    "sum": float(a.astype(np.float64).sum()),
                    "max_abs_diff": float(np.max(np.abs(a - flat)))}
                for k, a in alts.items()},
            "max_abs_diff_between_kernels": float(max(np.max(np.abs(a - flat)) for a in alts.values())),
        }
    return {
        "input": {
            "formula": GOLDEN_INPUT_FORMULA,
            "name": desc["inputs"][0]["name"],
            "dtype": desc["inputs"][0]["dtype"],
            "shape": desc["inputs"][0]["shape"],
            "quantization": desc["inputs"][0]["quantization"],
            "first_values": [float(v) if q_in.dtype == np.float32 else int(v) for v in q_in.reshape(-1)[:GOLDEN_HEAD]],
        },
        "outputs": outputs,
        "sha256": desc["sha256"],
        "bytes": desc["bytes"],
        "computed_with": f"tensorflow {tf.__version__} tf.lite.Interpreter, 1 thread, default "
                         "op resolver (XNNPACK delegate applied); other_kernels: the same interpreter "
                         "with BUILTIN_WITHOUT_DEFAULT_DELEGATES and BUILTIN_REF, and (where scripts/fetch-libs "
                         "has put them in the cache) the classic TFLite 2.6.0 C library without and "
                         "with its XNNPACK delegate, and the LiteRT 2.3.0 C API (CPU)",
    }


def fmt_quant(q) -> str:
    if q is None:
        return "—"
    return f"scale {q['scale']:.8g}, zero point {q['zero_point']}"


def markdown_model_section(fname: str, info: dict, gold: dict, extra: str = "") -> str:
    lines = [f"### `{fname}`", ""]
    if extra:
        lines += [extra, ""]
    lines += [f"- size: {info['bytes']:,} bytes", f"- SHA-256: `{info['sha256']}`", ""]
    lines += ["| kind | index | name | dtype | shape | quantisation |", "|---|---|---|---|---|---|"]
    def shape(t) -> str:
        sig = t.get("shape_signature")
        return f"{t['shape']} (signature {sig})" if sig else f"{t['shape']}"

    for t in info["inputs"]:
        lines.append(f"| input | {t['index']} | `{t['name']}` | {t['dtype']} | {shape(t)} | {fmt_quant(t['quantization'])} |")
    for t in info["outputs"]:
        lines.append(f"| output | {t['index']} | `{t['name']}` | {t['dtype']} | {shape(t)} | {fmt_quant(t['quantization'])} |")
    lines += ["", "Golden values (dequantised; input per the formula above):", ""]
    if gold["input"]["quantization"] is not None:
        lines.append(f"- quantised input starts {gold['input']['first_values']}")
    for idx, o in gold["outputs"].items():
        head = ", ".join(f"{v:.6g}" for v in o["first"])
        lines.append(f"- output {idx} `{o['name']}`: first 6 `[{head}]`, sum `{o['sum']:.6g}`")
        for k, v in o["other_kernels"].items():
            if v["max_abs_diff"] > 0:
                h = ", ".join(f"{x:.6g}" for x in v["first"])
                lines.append(f"  - with {k} kernels: `[{h}]`, sum `{v['sum']:.6g}`,"
                             f" max abs difference {v['max_abs_diff']:.3g}")
            else:
                lines.append(f"  - with {k} kernels: identical")
    lines.append("")
    return "\n".join(lines)
