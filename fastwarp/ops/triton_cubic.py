"""Triton device functions of fastwarp's bicubic image taps (``mode="bicubic"``), shared by
:mod:`fastwarp.ops.triton_backend` and :mod:`fastwarp.ops.triton_theta` (split from the
former to keep each module readable): Keys' cubic convolution (a = -0.75), taps ``f - 1 ..
f + 2`` per axis, ``border`` clamping each tap's index, ``zeros`` reading 0 outside, exactly
``F.grid_sample(mode="bicubic", align_corners=True)`` (docs/design.md, "The ops"); and
``_acc``, the accumulation dtype both modules use.
"""

from __future__ import annotations

import triton
import triton.language as tl


@triton.jit
def _acc(v, F64: tl.constexpr):
    """``v`` in the accumulation type: float64 for float64 tensors, else float32."""
    if F64:
        return v.to(tl.float64)
    else:
        return v.to(tl.float32)


# Keys' cubic convolution, A = -0.75, on the taps f - 1 .. f + 2 of c = pos + d (f = floor(c),
# t = c - f). Unlike bilinear, the coordinate itself is never clamped: "border" clamps each
# tap's index into the image (border pixels then take several weights), "zeros" drops the
# taps outside; a non-finite coordinate makes t, hence the weights and the result, NaN.

@triton.jit
def _cubic_tap(tf, last, BORDER: tl.constexpr):
    """One tap at the (floating) index ``tf``: (index, inside). Clamped into [0, last] with
    BORDER (NaN lands on 0; all inside), else outside ones masked (index 0). Range tests and
    clamps on the floating value: no NaN or huge value becomes an index."""
    zero = last * 0.0
    if BORDER:
        tf = tl.where(tf > 0.0, tf, zero)
        tf = tl.where(tf < last, tf, last)
        inside = tf >= 0.0  # all
    else:
        inside = (tf >= 0.0) & (tf <= last)
        tf = tl.where(inside, tf, zero)
    return tf.to(tl.int32), inside


@triton.jit
def _cubic_axis(pos, d, size, BORDER: tl.constexpr, F64: tl.constexpr):
    """One axis of a bicubic sample at ``pos + d``, as (taps, inside, weights, dweights, grad):
    4-tuples of tap indices (``_cubic_tap``), which taps are inside, Keys weights w0..w3 and
    their derivatives d w / d t, and d coordinate / d flow (0 for a size-1 axis, where every
    finite coordinate is 0; border clamping does not zero it, as in grid_sample)."""
    zero = _acc(pos * 0, F64)
    last = zero + (size - 1)
    c = tl.where(size == 1, d * 0.0, _acc(pos, F64) + d)
    grad = tl.where(size == 1, zero, zero + 1.0)
    f = tl.floor(c)
    t = c - f
    i0, v0 = _cubic_tap(f - 1.0, last, BORDER)
    i1, v1 = _cubic_tap(f, last, BORDER)
    i2, v2 = _cubic_tap(f + 1.0, last, BORDER)
    i3, v3 = _cubic_tap(f + 2.0, last, BORDER)
    # Keys (A = -0.75): w1, w2 = cubic1(t), cubic1(1 - t); w0, w3 = cubic2(t + 1), cubic2(2 - t)
    # with cubic1(x) = ((A + 2) x - (A + 3)) x^2 + 1, cubic2(x) = ((A x - 5A) x + 8A) x - 4A.
    s = 1.0 - t
    x0 = t + 1.0
    x3 = s + 1.0
    w0 = ((-0.75 * x0 + 3.75) * x0 - 6.0) * x0 + 3.0
    w1 = (1.25 * t - 2.25) * t * t + 1.0
    w2 = (1.25 * s - 2.25) * s * s + 1.0
    w3 = ((-0.75 * x3 + 3.75) * x3 - 6.0) * x3 + 3.0
    # d/dt: cubic1'(x) = (3 (A + 2) x - 2 (A + 3)) x, cubic2'(x) = (3A x - 10A) x + 8A.
    d0 = (-2.25 * x0 + 7.5) * x0 - 6.0
    d1 = (3.75 * t - 4.5) * t
    d2 = -((3.75 * s - 4.5) * s)
    d3 = -((-2.25 * x3 + 7.5) * x3 - 6.0)
    return (i0, i1, i2, i3), (v0, v1, v2, v3), (w0, w1, w2, w3), (d0, d1, d2, d3), grad


@triton.jit
def _cubic_row(row, sw, tx, m, F64: tl.constexpr):
    """One image row's four taps (where ``m`` and inside; 0 elsewhere): (sum_j wx_j v_j,
    sum_j dwx_j v_j)."""
    idx, inside, wts, dws, _g = tx
    i0, i1, i2, i3 = idx
    v0, v1, v2, v3 = inside
    w0, w1, w2, w3 = wts
    d0, d1, d2, d3 = dws
    a0 = _acc(tl.load(row + i0 * sw, mask=m & v0, other=0.0), F64)
    a1 = _acc(tl.load(row + i1 * sw, mask=m & v1, other=0.0), F64)
    a2 = _acc(tl.load(row + i2 * sw, mask=m & v2, other=0.0), F64)
    a3 = _acc(tl.load(row + i3 * sw, mask=m & v3, other=0.0), F64)
    return w0 * a0 + w1 * a1 + w2 * a2 + w3 * a3, d0 * a0 + d1 * a1 + d2 * a2 + d3 * a3


@triton.jit
def _cubic_sample(plane, sh, sw, tx, ty, ok, F64: tl.constexpr):
    """The bicubic sample of one channel plane and its derivatives along the two axes'
    t: (sum_ij wy_i wx_j v_ij, sum_ij wy_i dwx_j v_ij, sum_ij dwy_i wx_j v_ij) (rows first,
    then columns, grid_sample's order)."""
    idx, inside, wts, dws, _g = ty
    i0, i1, i2, i3 = idx
    v0, v1, v2, v3 = inside
    w0, w1, w2, w3 = wts
    d0, d1, d2, d3 = dws
    r0, e0 = _cubic_row(plane + i0 * sh, sw, tx, ok & v0, F64)
    r1, e1 = _cubic_row(plane + i1 * sh, sw, tx, ok & v1, F64)
    r2, e2 = _cubic_row(plane + i2 * sh, sw, tx, ok & v2, F64)
    r3, e3 = _cubic_row(plane + i3 * sh, sw, tx, ok & v3, F64)
    return (w0 * r0 + w1 * r1 + w2 * r2 + w3 * r3, w0 * e0 + w1 * e1 + w2 * e2 + w3 * e3,
            d0 * r0 + d1 * r1 + d2 * r2 + d3 * r3)


@triton.jit
def _cubic_scatter_row(a, sw, tx, g, m):
    """``atomic_add`` of ``wx_j * g`` into the row ``a``'s four taps (where ``m`` and inside;
    border-clamped taps that coincide each add their share)."""
    idx, inside, wts, _d, _g = tx
    i0, i1, i2, i3 = idx
    v0, v1, v2, v3 = inside
    w0, w1, w2, w3 = wts
    tl.atomic_add(a + i0 * sw, w0 * g, mask=m & v0, sem="relaxed")
    tl.atomic_add(a + i1 * sw, w1 * g, mask=m & v1, sem="relaxed")
    tl.atomic_add(a + i2 * sw, w2 * g, mask=m & v2, sem="relaxed")
    tl.atomic_add(a + i3 * sw, w3 * g, mask=m & v3, sem="relaxed")


@triton.jit
def _cubic_record_row(index, slot, target, tx, m, ok, own, use_own):
    """Records of one row's four taps: ``index[slot + j]`` = ``target + x_j`` where the tap
    is inside and ``m``, else 0 (tap 0: ``own`` where ``use_own``)."""
    idx, inside, _w, _d, _g = tx
    i0, i1, i2, i3 = idx
    v0, v1, v2, v3 = inside
    tl.store(index + slot, tl.where(m & v0, target + i0, tl.where(use_own, own, 0)), mask=ok)
    tl.store(index + slot + 1, tl.where(m & v1, target + i1, 0), mask=ok)
    tl.store(index + slot + 2, tl.where(m & v2, target + i2, 0), mask=ok)
    tl.store(index + slot + 3, tl.where(m & v3, target + i3, 0), mask=ok)


@triton.jit
def _cubic_value_row(v, C, tx, g, m, ok, own, use_own, zero):
    """Values of one row's four records (``v``, ``v + C``, ... for channel c): ``wx_j * g``
    where the tap is inside and ``m``, else 0 (tap 0: ``own`` where ``use_own``)."""
    _i, inside, wts, _d, _g = tx
    v0, v1, v2, v3 = inside
    w0, w1, w2, w3 = wts
    tl.store(v, tl.where(m & v0, w0 * g, tl.where(use_own, own, zero)), mask=ok)
    tl.store(v + C, tl.where(m & v1, w1 * g, zero), mask=ok)
    tl.store(v + 2 * C, tl.where(m & v2, w2 * g, zero), mask=ok)
    tl.store(v + 3 * C, tl.where(m & v3, w3 * g, zero), mask=ok)


# --- kernels -------------------------------------------------------------------------------------
