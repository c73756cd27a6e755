"""Frame → model input, written out explicitly so the Rust runtime can do exactly the same.

The runtime feeds the model the full frame stretched to the model size (no crop, no aspect
preservation), RGB, value = pixel / 255 (manifest: mean 0, std 255).  Which resampling the
runtime uses is its own choice; the default model is trained on a mix of the three below so it
does not depend on it, and the model card reports accuracy for each.
"""

from __future__ import annotations

import numpy as np

METHODS = ("bilinear", "area", "nearest")  # mixed during training
# Evaluated too: "triangle" = Pillow's BILINEAR, a convolution with a triangle filter widened by
# the downscale factor (antialiased), rounded to u8 — what the runtime's preprocessing does
# (fast_image_resize `ResizeAlg::Convolution(FilterType::Bilinear)`, which follows Pillow).
EVAL_METHODS = ("bilinear", "area", "nearest", "triangle")


def _bilinear_axis(n_in: int, n_out: int):
    # half-pixel centres (OpenCV INTER_LINEAR / TF half_pixel_centers), edge-clamped
    scale = n_in / n_out
    src = (np.arange(n_out, dtype=np.float64) + 0.5) * scale - 0.5
    src = np.clip(src, 0.0, n_in - 1)
    i0 = np.floor(src).astype(np.int64)
    i1 = np.minimum(i0 + 1, n_in - 1)
    w1 = (src - i0).astype(np.float32)
    return i0, i1, w1


def bilinear(img: np.ndarray, h: int, w: int) -> np.ndarray:
    """uint8 HxWxC → float32 hxwxC in pixel units (0..255)."""
    H, W = img.shape[:2]
    y0, y1, wy = _bilinear_axis(H, h)
    x0, x1, wx = _bilinear_axis(W, w)
    f = img.astype(np.float32)
    top = f[y0][:, x0] * (1 - wx)[None, :, None] + f[y0][:, x1] * wx[None, :, None]
    bot = f[y1][:, x0] * (1 - wx)[None, :, None] + f[y1][:, x1] * wx[None, :, None]
    return top * (1 - wy)[:, None, None] + bot * wy[:, None, None]


def nearest(img: np.ndarray, h: int, w: int) -> np.ndarray:
    H, W = img.shape[:2]
    ys = np.minimum(((np.arange(h) + 0.5) * H / h).astype(np.int64), H - 1)
    xs = np.minimum(((np.arange(w) + 0.5) * W / w).astype(np.int64), W - 1)
    return img[ys][:, xs].astype(np.float32)


def _area_matrix(n_in: int, n_out: int) -> np.ndarray:
    # exact box filter: output cell j averages input [j*s, (j+1)*s) with fractional overlaps
    s = n_in / n_out
    m = np.zeros((n_out, n_in), np.float64)
    for j in range(n_out):
        a, b = j * s, (j + 1) * s
        for i in range(int(np.floor(a)), min(int(np.ceil(b)), n_in)):
            m[j, i] = max(0.0, min(b, i + 1) - max(a, i))
    m /= m.sum(axis=1, keepdims=True)
    return m.astype(np.float32)


def area(img: np.ndarray, h: int, w: int) -> np.ndarray:
    H, W = img.shape[:2]
    my, mx = _area_matrix(H, h), _area_matrix(W, w)
    f = img.astype(np.float32)
    t = np.einsum("yi,ixc->yxc", my, f)
    return np.einsum("xj,yjc->yxc", mx, t)


def triangle(img: np.ndarray, h: int, w: int) -> np.ndarray:
    from PIL import Image
    return np.asarray(Image.fromarray(img).resize((w, h), Image.BILINEAR), dtype=np.float32)


def resize(img: np.ndarray, h: int, w: int, method: str = "bilinear") -> np.ndarray:
    return {"bilinear": bilinear, "area": area, "nearest": nearest, "triangle": triangle}[method](img, h, w)
