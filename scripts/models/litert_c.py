"""Runs a .tflite through the LiteRT 2.3.0 C API (libLiteRt.so, which scripts/fetch-libs puts in
the cache), so golden.json can also record what that runtime computes.  Optional: when the
library is absent the scripts skip it.  Call sequence as in platform-notes §1.2."""

from __future__ import annotations

import ctypes as C
import os
import pathlib
import tempfile

import numpy as np

P = C.c_void_p


class _Layout(C.Structure):
    _fields_ = [("bits", C.c_uint32), ("dims", C.c_int32 * 8), ("strides", C.c_uint32 * 8)]


class _RankedTensorType(C.Structure):  # 72 bytes
    _fields_ = [("element_type", C.c_int), ("layout", _Layout)]


def library_path() -> pathlib.Path:
    cache = pathlib.Path(os.environ.get("TINYLCM_CACHE", pathlib.Path.home() / ".cache/tinylcm"))
    return cache / "libs/litert-2.3.0/x86_64/libLiteRt.so"


_lib = None


def _load():
    global _lib
    if _lib is None and library_path().exists():
        _lib = C.CDLL(str(library_path()))
    return _lib


def available() -> bool:
    return _load() is not None


def _chk(status: int, what: str) -> None:
    if status != 0:
        raise RuntimeError(f"LiteRT {what} failed with status {status}")


def run(model_bytes: bytes, x_float: np.ndarray, inputs: list[dict], outputs: list[dict]) -> list[np.ndarray]:
    """Dequantised outputs in signature-output order (the same as output-index order for the
    project's models).  inputs/outputs: tflcommon.describe() entries (dtype, shape, quantisation)."""
    lib = _load()
    dts = {"float32": np.float32, "int8": np.int8, "uint8": np.uint8}
    with tempfile.NamedTemporaryFile(suffix=".tflite") as f:
        f.write(model_bytes)
        f.flush()
        env, model, opts, cm, sig = P(), P(), P(), P(), P()
        bufs_in, bufs_out = [], []
        try:
            _chk(lib.LiteRtCreateEnvironment(0, None, C.byref(env)), "CreateEnvironment")
            _chk(lib.LiteRtCreateModelFromFile(env, f.name.encode(), C.byref(model)), "CreateModelFromFile")
            _chk(lib.LiteRtCreateOptions(C.byref(opts)), "CreateOptions")
            _chk(lib.LiteRtSetOptionsHardwareAccelerators(opts, 1), "SetOptionsHardwareAccelerators")
            _chk(lib.LiteRtCreateCompiledModel(env, model, opts, C.byref(cm)), "CreateCompiledModel")
            _chk(lib.LiteRtGetModelSignature(model, 0, C.byref(sig)), "GetModelSignature")

            # A dynamic batch (-1 in the shape signature) is resized to 1, as the runtime does;
            # the compiled model's layouts then give every tensor's real shape.
            resolved = {}
            for i in range(len(inputs)):
                t = P()
                _chk(lib.LiteRtGetSignatureInputTensorByIndex(sig, i, C.byref(t)), "GetSignatureInputTensor")
                rtt = _RankedTensorType()
                _chk(lib.LiteRtGetRankedTensorType(t, C.byref(rtt)), "GetRankedTensorType")
                rank = rtt.layout.bits & 0x7F
                dims = [rtt.layout.dims[k] for k in range(rank)]
                if any(d < 0 for d in dims):
                    fixed = (C.c_int * rank)(*[1 if d < 0 else d for d in dims])
                    _chk(lib.LiteRtCompiledModelResizeInputTensor(cm, 0, i, fixed, rank), "ResizeInputTensor")
            layouts = (_Layout * max(1, len(outputs)))()
            dynamic = lib.LiteRtGetCompiledModelOutputTensorLayouts(cm, 0, len(outputs), layouts, True) == 0
            for i in range(len(inputs)):
                lay = _Layout()
                if lib.LiteRtGetCompiledModelInputTensorLayout(cm, 0, i, C.byref(lay)) == 0:
                    resolved[(False, i)] = lay
            if dynamic:
                for i in range(len(outputs)):
                    resolved[(True, i)] = layouts[i]

            def make(i: int, out: bool):
                t, req, buf = P(), P(), P()
                get_t = lib.LiteRtGetSignatureOutputTensorByIndex if out else lib.LiteRtGetSignatureInputTensorByIndex
                _chk(get_t(sig, i, C.byref(t)), "GetSignatureTensorByIndex")
                rtt = _RankedTensorType()
                _chk(lib.LiteRtGetRankedTensorType(t, C.byref(rtt)), "GetRankedTensorType")
                if (out, i) in resolved:
                    rtt.layout = resolved[(out, i)]
                get_r = (lib.LiteRtGetCompiledModelOutputBufferRequirements if out
                         else lib.LiteRtGetCompiledModelInputBufferRequirements)
                _chk(get_r(cm, 0, i, C.byref(req)), "GetBufferRequirements")
                _chk(lib.LiteRtCreateManagedTensorBufferFromRequirements(env, C.byref(rtt), req, C.byref(buf)),
                     "CreateManagedTensorBuffer")
                return buf

            bufs_in = [make(i, False) for i in range(len(inputs))]
            bufs_out = [make(i, True) for i in range(len(outputs))]
            d_in = inputs[0]
            x = x_float.reshape(-1).astype(np.float32)
            if d_in["quantization"]:
                q = d_in["quantization"]
                info = np.iinfo(dts[d_in["dtype"]])
                x = np.clip(np.round(x / q["scale"] + q["zero_point"]), info.min, info.max)
            x = np.ascontiguousarray(x.astype(dts[d_in["dtype"]]))
            ptr = P()
            _chk(lib.LiteRtLockTensorBuffer(bufs_in[0], C.byref(ptr), 1), "LockTensorBuffer")
            C.memmove(ptr, x.ctypes.data, x.nbytes)
            lib.LiteRtUnlockTensorBuffer(bufs_in[0])
            arr_in = (P * len(bufs_in))(*bufs_in)
            arr_out = (P * len(bufs_out))(*bufs_out)
            _chk(lib.LiteRtRunCompiledModel(cm, 0, len(bufs_in), arr_in, len(bufs_out), arr_out), "RunCompiledModel")
            res = []
            for b, o in zip(bufs_out, outputs):
                y = np.zeros(int(np.prod(o["shape"])), dts[o["dtype"]])
                _chk(lib.LiteRtLockTensorBuffer(b, C.byref(ptr), 0), "LockTensorBuffer")
                C.memmove(y.ctypes.data, ptr, y.nbytes)
                lib.LiteRtUnlockTensorBuffer(b)
                if o["quantization"]:
                    q = o["quantization"]
                    y = ((y.astype(np.float32) - q["zero_point"]) * q["scale"]).astype(np.float32)
                res.append(y.astype(np.float32))
            return res
        finally:
            for b in bufs_in + bufs_out:
                lib.LiteRtDestroyTensorBuffer(b)
            if cm:
                lib.LiteRtDestroyCompiledModel(cm)
            if opts:
                lib.LiteRtDestroyOptions(opts)
            if model:
                lib.LiteRtDestroyModel(model)
            if env:
                lib.LiteRtDestroyEnvironment(env)
