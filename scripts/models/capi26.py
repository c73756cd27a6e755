"""Runs a .tflite through the classic TFLite 2.6.0 C API (the library scripts/fetch-libs puts in
the cache), so golden.json can also record what that runtime computes.  Optional: when the
library is absent the scripts skip it."""

from __future__ import annotations

import ctypes as C
import os
import pathlib

import numpy as np

P = C.c_void_p
_DT = {1: np.float32, 3: np.uint8, 9: np.int8}


class _QP(C.Structure):
    _fields_ = [("scale", C.c_float), ("zero_point", C.c_int32)]


def library_path() -> pathlib.Path:
    cache = pathlib.Path(os.environ.get("TINYLCM_CACHE", pathlib.Path.home() / ".cache/tinylcm"))
    return cache / "libs/tflite-c-2.6.0/x86_64/libtensorflowlite_c.so"


_lib = None


def _load():
    global _lib
    if _lib is not None:
        return _lib
    p = library_path()
    if not p.exists():
        return None
    lib = C.CDLL(str(p))
    for n, r, a in [
        ("TfLiteModelCreate", P, [P, C.c_size_t]), ("TfLiteModelDelete", None, [P]),
        ("TfLiteInterpreterOptionsCreate", P, []), ("TfLiteInterpreterOptionsDelete", None, [P]),
        ("TfLiteInterpreterOptionsSetNumThreads", None, [P, C.c_int]),
        ("TfLiteInterpreterOptionsAddDelegate", None, [P, P]),
        ("TfLiteXNNPackDelegateCreate", P, [P]), ("TfLiteXNNPackDelegateDelete", None, [P]),
        ("TfLiteInterpreterCreate", P, [P, P]), ("TfLiteInterpreterDelete", None, [P]),
        ("TfLiteInterpreterAllocateTensors", C.c_int, [P]),
        ("TfLiteInterpreterGetInputTensor", P, [P, C.c_int]),
        ("TfLiteInterpreterGetOutputTensor", P, [P, C.c_int]),
        ("TfLiteInterpreterGetOutputTensorCount", C.c_int, [P]),
        ("TfLiteInterpreterInvoke", C.c_int, [P]),
        ("TfLiteTensorCopyFromBuffer", C.c_int, [P, P, C.c_size_t]),
        ("TfLiteTensorCopyToBuffer", C.c_int, [P, P, C.c_size_t]),
        ("TfLiteTensorByteSize", C.c_size_t, [P]), ("TfLiteTensorType", C.c_int, [P]),
        ("TfLiteTensorQuantizationParams", _QP, [P]),
    ]:
        f = getattr(lib, n)
        f.restype, f.argtypes = r, a
    _lib = lib
    return lib


def available() -> bool:
    return _load() is not None


def run(model_bytes: bytes, x_float: np.ndarray, xnnpack: bool) -> list[np.ndarray]:
    """Dequantised outputs (output-index order) for one float input, quantised like tflcommon."""
    lib = _load()
    buf = C.create_string_buffer(model_bytes, len(model_bytes))
    model = lib.TfLiteModelCreate(C.cast(buf, P), len(model_bytes))
    opts = lib.TfLiteInterpreterOptionsCreate()
    lib.TfLiteInterpreterOptionsSetNumThreads(opts, 1)
    delegate = None
    if xnnpack:
        # 2.6's options struct is {int32 num_threads; bool ...}; pass an over-sized zeroed one.
        xo = (C.c_int32 * 16)()
        xo[0] = 1
        delegate = lib.TfLiteXNNPackDelegateCreate(C.cast(xo, P))
        lib.TfLiteInterpreterOptionsAddDelegate(opts, delegate)
    it = lib.TfLiteInterpreterCreate(model, opts)
    try:
        if not it or lib.TfLiteInterpreterAllocateTensors(it) != 0:
            raise RuntimeError("TFLite 2.6 C API could not create/allocate the interpreter")
        t = lib.TfLiteInterpreterGetInputTensor(it, 0)
        dt = _DT[lib.TfLiteTensorType(t)]
        x = x_float.reshape(-1).astype(np.float32)
        if dt != np.float32:
            q = lib.TfLiteTensorQuantizationParams(t)
            info = np.iinfo(dt)
            x = np.clip(np.round(x / q.scale + q.zero_point), info.min, info.max).astype(dt)
        x = np.ascontiguousarray(x)
        if lib.TfLiteTensorCopyFromBuffer(t, x.ctypes.data, x.nbytes) != 0:
            raise RuntimeError("input size mismatch")
        if lib.TfLiteInterpreterInvoke(it) != 0:
            raise RuntimeError("invoke failed")
        outs = []
        for k in range(lib.TfLiteInterpreterGetOutputTensorCount(it)):
            t = lib.TfLiteInterpreterGetOutputTensor(it, k)
            dt = _DT[lib.TfLiteTensorType(t)]
            y = np.zeros(lib.TfLiteTensorByteSize(t) // np.dtype(dt).itemsize, dt)
            lib.TfLiteTensorCopyToBuffer(t, y.ctypes.data, y.nbytes)
            if dt != np.float32:
                q = lib.TfLiteTensorQuantizationParams(t)
                y = ((y.astype(np.float32) - q.zero_point) * q.scale).astype(np.float32)
            outs.append(y)
        return outs
    finally:
        if it:
            lib.TfLiteInterpreterDelete(it)
        lib.TfLiteInterpreterOptionsDelete(opts)
        if delegate:
            lib.TfLiteXNNPackDelegateDelete(delegate)
        lib.TfLiteModelDelete(model)
