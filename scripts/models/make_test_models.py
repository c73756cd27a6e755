"""Random-init test models for the engine tests: runtime/models/test/.

Run through scripts/make-test-models (which sets up the venv).  No weights are downloaded
(impossible offline): every model is random-init from a fixed seed, with BatchNorm statistics
calibrated on a fixed pseudo-random batch so that activations and int8 ranges are sensible.
"""

from __future__ import annotations

import argparse
import json
import pathlib

import tflcommon as tc
from tflcommon import keras, np, tf

SEED = 20261126
TINY_SHAPE = (64, 64, 3)
MNV2_SHAPE = (96, 96, 3)
SIZE_BUDGET_F32_MNV2 = 1_600_000  # brief: include mobilenetv2_f32 only if below this ...
MODELS_DIR_BUDGET = 2_000_000     # ... and only if runtime/models stays below 2 MB in total


def tiny_net(batch: int | None = 1) -> keras.Model:
    """64x64x3 -> small conv net; outputs [scores (softmax 5), embedding (16)]."""
    L = keras.layers
    inp = keras.Input(TINY_SHAPE, batch_size=batch, name="input")
    x = L.Conv2D(8, 3, strides=2, padding="same", use_bias=False)(inp)
    x = L.BatchNormalization()(x)
    x = L.ReLU()(x)
    x = L.DepthwiseConv2D(3, padding="same", use_bias=False)(x)
    x = L.BatchNormalization()(x)
    x = L.ReLU()(x)
    x = L.Conv2D(16, 1, use_bias=False)(x)
    x = L.BatchNormalization()(x)
    x = L.ReLU()(x)
    x = L.DepthwiseConv2D(3, strides=2, padding="same", use_bias=False)(x)
    x = L.BatchNormalization()(x)
    x = L.ReLU()(x)
    x = L.Conv2D(32, 1, use_bias=False)(x)
    x = L.BatchNormalization()(x)
    x = L.ReLU()(x)
    x = L.GlobalAveragePooling2D()(x)
    emb = L.Dense(16, name="embedding")(x)
    scores = L.Dense(5, activation="softmax", name="scores")(emb)
    return keras.Model(inp, [scores, emb], name="tiny")


def mobilenet() -> keras.Model:
    base = keras.applications.MobileNetV2(
        input_shape=MNV2_SHAPE, alpha=0.35, include_top=False, weights=None, pooling="avg")
    inp = keras.Input(MNV2_SHAPE, batch_size=1, name="input")
    return keras.Model(inp, base(inp), name="mobilenetv2_035_96")


def random_images(rng: np.random.Generator, n: int, shape) -> np.ndarray:
    """Pseudo-random 'images' in [0, 1]: smooth blobs plus noise, so conv features vary."""
    h, w, c = shape
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
    out = np.empty((n, h, w, c), np.float32)
    for i in range(n):
        img = np.zeros((h, w, c), np.float32)
        for _ in range(3):
            cy, cx = rng.uniform(0, h), rng.uniform(0, w)
            r = rng.uniform(h / 10, h / 3)
            col = rng.uniform(0, 1, c).astype(np.float32)
            mask = np.exp(-((yy - cy) ** 2 + (xx - cx) ** 2) / (2 * r * r))[..., None]
            img += mask * col
        img += rng.normal(0, 0.08, (h, w, c)).astype(np.float32)
        out[i] = np.clip(img, 0.0, 1.0)
    return out


NOTE_TINY = ("Tiny conv net (conv/BN/ReLU, depthwise-separable blocks, GAP, dense 16 `embedding`, "
             "dense softmax 5 `scores`), random init (seed {}), BatchNorm statistics calibrated on "
             "pseudo-random images.").format(SEED)
NOTE_MN = ("Keras MobileNetV2 alpha 0.35, 96x96, `include_top=False, pooling='avg'` (1280-d "
           "features, output named `embedding`), random init (seed {}), BatchNorm statistics "
           "calibrated on pseudo-random images; a standard architecture for engine and latency "
           "tests.").format(SEED + 1)
TINY_FLAVOURS = [
    ("tiny_f32.tflite", None, 1, "float32 input and outputs."),
    ("tiny_int8.tflite", "int8", 1, "Full-integer int8, int8 input and outputs (same weights as tiny_f32)."),
    ("tiny_uint8.tflite", "uint8", 1, "Full-integer int8 inside, uint8 input and outputs (same weights as tiny_f32)."),
    ("tiny_dynbatch_uint8.tflite", "uint8", None,
     "Full-integer int8 inside, uint8 input and outputs, exported with a **dynamic batch** "
     "(input shape signature `[-1, 64, 64, 3]`, as models exported for batched serving have; "
     "LiteRT must resize it to batch 1). Same architecture and seed as tiny_uint8, its own "
     "conversion."),
]
MNV2_NAMES = ["mobilenetv2_int8.tflite"]
ALL = [f[0] for f in TINY_FLAVOURS] + MNV2_NAMES


def build_tiny(names) -> dict:
    """The tiny net: one set of weights, several I/O flavours (only those in `names`)."""
    results = {}
    for fname, quant, batch, extra in TINY_FLAVOURS:
        if fname not in names:
            continue
        # Same seed, same calibration for every flavour: the weights are identical.
        tc.set_seeds(SEED)
        rng = np.random.default_rng(SEED)
        tiny = tiny_net(batch)
        tc.calibrate_batchnorm(tiny, random_images(rng, 32, TINY_SHAPE))
        rep = [s[None] for s in random_images(rng, 48, TINY_SHAPE)]
        rep.append(tc.golden_input_float((1, *TINY_SHAPE)))
        b = tc.convert(tiny, ["scores", "embedding"], TINY_SHAPE, quant, rep, batch=batch)
        results[fname] = (b, NOTE_TINY + " " + extra)
    return results


def build_mobilenet(out: pathlib.Path, others: int):
    """MobileNetV2 alpha 0.35, 96x96, GAP features (1280); the f32 one only within budget."""
    results = {}
    tc.set_seeds(SEED + 1)
    rng = np.random.default_rng(SEED + 1)
    mnv2 = mobilenet()
    tc.calibrate_batchnorm(mnv2, random_images(rng, 16, MNV2_SHAPE))
    rep = [s[None] for s in random_images(rng, 32, MNV2_SHAPE)]
    rep.append(tc.golden_input_float((1, *MNV2_SHAPE)))
    b = tc.convert(mnv2, ["embedding"], MNV2_SHAPE, "uint8", rep)
    results["mobilenetv2_int8.tflite"] = (b, NOTE_MN + " Full-integer int8 inside, uint8 input and output.")
    b32 = tc.convert(mnv2, ["embedding"], MNV2_SHAPE, None)

    others += len(b)
    existing_elsewhere = sum(p.stat().st_size for p in out.parent.rglob("*")
                             if p.is_file() and out not in p.parents)
    mn32_note = None
    if len(b32) < SIZE_BUDGET_F32_MNV2 and others + len(b32) + existing_elsewhere < MODELS_DIR_BUDGET - 200_000:
        results["mobilenetv2_f32.tflite"] = (b32, NOTE_MN + " float32 input and output.")
    else:
        mn32_note = (f"`mobilenetv2_f32.tflite` is not committed: it is {len(b32):,} bytes and would push "
                     f"runtime/models over its 2 MB budget (the other test models take {others:,} bytes).")
        stale = out / "mobilenetv2_f32.tflite"
        if stale.exists():
            stale.unlink()
    return results, mn32_note


def kept_not_included(out: pathlib.Path):
    """The README's "Not included" note of an earlier full run (kept by --only runs)."""
    readme = out / "README.md"
    if not readme.exists():
        return None
    text = readme.read_text()
    marker = "\n## Not included\n\n"
    return text.split(marker, 1)[1].strip() if marker in text else None


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--out", required=True, type=pathlib.Path)
    ap.add_argument("--only", default="",
                    help="comma-separated model files to (re)build; the others are kept as they "
                         "are (bytes and golden values), so adding a model changes no other")
    args = ap.parse_args()
    out: pathlib.Path = args.out
    out.mkdir(parents=True, exist_ok=True)
    only = [n for n in args.only.split(",") if n]
    unknown = [n for n in only if n not in ALL]
    if unknown:
        raise SystemExit(f"unknown model(s) {unknown}; known: {ALL}")
    build = set(only or ALL)

    # fname -> (bytes, description): built now, or kept from `out` (with its golden values).
    old_golden = {}
    if (out / "golden.json").exists():
        old_golden = json.loads((out / "golden.json").read_text()).get("models", {})
    results = build_tiny(build)
    mn32_note = None
    if set(MNV2_NAMES) & build:
        others = sum(len(v[0]) for v in results.values())
        mn, mn32_note = build_mobilenet(out, others)
        results.update(mn)
    else:
        mn32_note = kept_not_included(out)
    built = set(results)
    notes = {f[0]: NOTE_TINY + " " + f[3] for f in TINY_FLAVOURS}
    notes.update({"mobilenetv2_int8.tflite": NOTE_MN + " Full-integer int8 inside, uint8 input and output.",
                  "mobilenetv2_f32.tflite": NOTE_MN + " float32 input and output."})
    ordered = {}
    for fname in ALL + ["mobilenetv2_f32.tflite"]:
        if fname in results:
            ordered[fname] = results[fname]
        elif (out / fname).exists() and fname in old_golden:
            ordered[fname] = ((out / fname).read_bytes(), notes[fname])
    results = ordered

    golden_all = {}
    sections = []
    for fname, (b, note) in results.items():
        if fname in built:
            (out / fname).write_bytes(b)
            gold = tc.golden(b)
        else:
            gold = old_golden[fname]
        info = tc.describe(b)
        golden_all[fname] = gold
        sections.append(tc.markdown_model_section(fname, info, gold, note))
        print(f"{fname}: {len(b):,} bytes{'' if fname in built else ' (kept)'}, outputs "
              + ", ".join(f"{o['index']}={o['name']}{o['shape']}" for o in info["outputs"]))

    (out / "golden.json").write_text(json.dumps(
        {"seed": SEED, "input_formula": tc.GOLDEN_INPUT_FORMULA, "models": golden_all},
        indent=2) + "\n")
    write_readme(out, results, sections, mn32_note)


def write_readme(out, results, sections, mn32_note) -> None:
    total = sum(len(v[0]) for v in results.values())
    head = f"""# Test models

Random-init models for the engine tests (real inference through real libraries).
They are **not** trained: their outputs mean nothing, only that they are reproducible.
Generated by `./scripts/make-test-models` (TensorFlow {tf.__version__}, Keras {keras.__version__};
see `scripts/models/`). CI never regenerates them. Re-running the script on another machine gives
other weights and therefore other golden values and hashes: if you regenerate, commit the
`.tflite` files, `golden.json` and this README together.

All models but `tiny_dynbatch_uint8.tflite` have a **static batch of 1**; that one keeps the
dynamic batch (`-1`) a batched-serving export has, which the runtime resizes to 1 on LiteRT.
Tensor names were set from the SavedModel signature after conversion (the converter itself names
outputs `StatefulPartitionedCall:N`): the input is `input`, outputs are `scores` / `embedding`.
**Output order:** the converter orders outputs by signature name, so in every two-output model
here output 0 is `embedding` and output 1 is `scores` — look them up by name, not position, where
you can.

Total size: {total:,} bytes.

## Golden values

Input: `{tc.GOLDEN_INPUT_FORMULA}`.
Outputs were computed with the TF Python interpreter (default op resolver, which applies the
XNNPACK delegate; 1 thread) and are given dequantised (`real = scale * (q - zero_point)`).
The same input was also run with the optimised builtin kernels without XNNPACK (what the classic
C API runs without a delegate), with the reference kernels and, when `scripts/fetch-libs` has put
it in the cache, through the classic TFLite 2.6.0 C library (without and with its XNNPACK
delegate — 2.6's XNNPACK does not take int8, so those two agree) and the LiteRT 2.3.0 C API
(`litert_2.3.0`, CPU = XNNPACK); where they differ, the README and
`golden.json` (`other_kernels`) give their values too. `golden.json` holds everything
machine-readably (per model: input spec, per output index: name, dtype, shape, quantisation,
first 6 values, sum of all values, other kernels' values and the largest difference between
kernel sets — use that for test tolerances).

Tolerances: the tiny models agree to within one quantisation step across kernel sets. The
random-init int8 MobileNetV2 does not: 50-odd quantised layers with random weights amplify
rounding differences between kernel implementations, so individual features may differ by many
quantisation steps between XNNPACK and non-XNNPACK kernels. LiteRT 2.3.0 reproduces the default
(XNNPACK) values exactly; the TFLite 2.6 C library reproduces `builtin_no_xnnpack` almost (2.6's
XNNPACK has no int8 kernels). Compare against the matching kernel set, or only loosely (shape,
dtype, sum within a few percent).

Quantised dense layers use per-tensor weights on purpose: TF 2.21 otherwise writes per-channel
FULLY_CONNECTED weights under an op version that TFLite 2.6 accepts but misreads (every output
came out at its zero point).

"""
    tail = ""
    if mn32_note:
        tail = "\n## Not included\n\n" + mn32_note + "\n"
    # `scripts/make-test-models --only NAME` rebuilds one model and keeps the others.
    (out / "README.md").write_text(head + "## Models\n\n" + "\n".join(sections) + tail)


if __name__ == "__main__":
    main()
