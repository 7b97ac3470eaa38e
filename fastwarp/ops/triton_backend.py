"""Triton kernels of fastwarp's ops, exposed as torch ops through ``torch.library.triton_op``.

``fastwarp::triton_warp``, ``fastwarp::triton_warp_blend`` and their backward ops
``fastwarp::triton_warp_backward``, ``fastwarp::triton_warp_blend_backward`` have the
signatures of the C++ ops (``csrc/fastwarp.cpp``) and the same per-pixel semantics
(``csrc/warp_math.h``, docs/design.md "The ops"): this module mirrors that header function by
function (``_axis`` is ``Axis::make``, ``_up_axis`` is ``UpAxis::make``, ``_lowres`` and
``_sample`` are ``LowRes``, ``_quad`` is ``load_quad``). ``mode="bicubic"`` (the CUBIC
constexpr: the bilinear kernels compile as before) swaps the image's 2 x 2 taps for
grid_sample's 4 x 4 Keys taps (``_cubic_axis``, ``_cubic_sample``); the maps stay bilinear.
Reached through
``fastwarp.warp(..., backend="triton")``; importing it needs the ``triton`` package
(fastwarp imports it lazily, on first use).

Kernels: one program per block of output pixels, the channels looped inside, so the flow,
the mask and the four (bicubic: sixteen) taps are computed once per pixel. The image gradient is a scatter:
``tl.atomic_add`` into a float32 (float64 for float64 inputs) buffer, or, when
``torch.are_deterministic_algorithms_enabled()``, one recorded (target pixel, value) pair
per pixel and tap summed by ``index_put_(accumulate=True)`` in a fixed order, as the CUDA
kernels do. With a flow/texture/mask grid smaller than the image, the backward writes
per-output-pixel gradients into H x W float32 buffers and reduces them onto h x w with a
gather (the adjoint of the upsampling, one separable pass per axis, no atomics).

``TRITON_INTERPRET=1`` (set before this module is first imported) runs the kernels on CPU
tensors in Triton's interpreter, for tests on machines with no GPU; there the ops stay
opaque to ``torch.compile`` (the interpreter cannot run on its fake tensors), while on
GPUs ``torch.compile`` sees the Triton kernels themselves.
"""

from __future__ import annotations

import os
from typing import Sequence

import torch
import triton
import triton.language as tl
from torch import Tensor
from torch._subclasses.fake_tensor import is_fake
from torch.library import triton_op, wrap_triton

from . import checks
from .registration import output_like_image, register_op_autocast, register_op_autograd
from .triton_cubic import (_acc, _cubic_axis, _cubic_record_row, _cubic_row, _cubic_sample,  # noqa: F401
                           _cubic_scatter_row, _cubic_tap, _cubic_value_row)

__all__ = ["INTERPRET", "warp", "warp_blend"]

#: Kernels run in Triton's interpreter (on CPU tensors): read once, at import, as triton does.
INTERPRET = os.environ.get("TRITON_INTERPRET", "0") == "1"

# Pixels (or gradient elements) per program. GPU: 256 with triton's default 4 warps, two
# pixels per thread; a gather-bound kernel whose per-pixel work is a few dozen loads. Not
# yet tuned on a GPU (bench/ will). The interpreter pays per operation, not per element:
# large blocks keep it fast.
_GPU_BLOCK = 256
_INTERPRETER_BLOCK = 8192


def _block(total: int) -> int:
    if INTERPRET:
        return min(_INTERPRETER_BLOCK, max(16, triton.next_power_of_2(total)))
    return _GPU_BLOCK


# --- 32-bit indexing guard ---------------------------------------------------------------------
# The kernels compute flat pixel/element indices (program_id * BLOCK + arange) and element
# offsets (index * stride) in int32, as Triton does by default; past 2**31 they would wrap
# and read or write the wrong elements, silently. Rather than 64-bit index math in every
# kernel (int64 division and modulo on every pixel, for sizes the product never meets: 2**31
# elements is 8 GiB of float32 in one tensor), the host refuses such calls before any launch
# (check_int32_indexing); the CUDA backend's generic kernels index in 64 bits.

#: The largest index or offset a kernel may compute in int32.
INT32_MAX = 2**31 - 1


def max_offset(t: Tensor, per_item: bool = False) -> int:
    """The largest element offset of ``t`` from its first element: ``sum((size - 1) * |stride|)``
    over its dimensions, or over all but the first (the batch) with ``per_item`` (0 for an
    empty tensor). Reads only the shape and strides, so it works on meta and fake tensors."""
    if t.numel() == 0:
        return 0
    dims = list(zip(t.shape, t.stride()))[1 if per_item else 0:]
    return sum((size - 1) * abs(stride) for size, stride in dims)


def int32_index_problem(total: int, block: int, tensors: dict[str, Tensor | None],
                        values: dict[str, int] | None = None, per_item: bool = False) -> str | None:
    """Why a launch over ``total`` pixels/elements in blocks of ``block`` would overflow int32:
    a program's last flat index (``cdiv(total, block) * block - 1``), an element offset of
    one of ``tensors`` (name -> tensor indexed with 32-bit offsets, None skipped; with
    ``per_item`` only the offsets within one batch item count, for kernels that compute the
    batch offset in int64), or one of ``values`` (name -> the largest other int32
    intermediate a kernel computes) above :data:`INT32_MAX`. A phrase for an error message,
    or None when everything fits. Shapes and strides only: nothing is allocated or read."""
    last = triton.cdiv(total, block) * block - 1 if total > 0 else 0
    if last > INT32_MAX:
        return f"the launch covers {total} pixels/elements (flat indices up to {last})"
    for name, t in tensors.items():
        if t is not None and max_offset(t, per_item) > INT32_MAX:
            within = " within one batch item" if per_item else ""
            return f"{name} of shape {list(t.shape)} has element offsets{within} up to {max_offset(t, per_item)}"
    for name, v in (values or {}).items():
        if v > INT32_MAX:
            return f"{name} reaches {v}"
    return None


def check_int32_indexing(op: str, total: int, block: int, values: dict[str, int] | None = None,
                         per_item: bool = False, **tensors: Tensor | None) -> None:
    """Raise ``ValueError`` before a launch whose indices or offsets would not fit in int32
    (arguments as :func:`int32_index_problem`)."""
    problem = int32_index_problem(total, block, tensors, values, per_item)
    if problem is not None:
        raise ValueError(f"{op}: backend='triton' indexes with 32-bit offsets, which must stay below 2^31, but "
                         f"{problem}: use backend='cuda' (64-bit offsets) or smaller tensors")


# --- per-pixel math (csrc/warp_math.h) ---------------------------------------------------------

@triton.jit
def _ratio(num, den, like, F64: tl.constexpr):
    """``num / den`` (integers) in the accumulation type, correctly rounded, shaped like ``like``."""
    zero = _acc(like * 0, F64)
    if F64:
        return (zero + num) / (zero + den)
    else:
        return tl.div_rn(zero + num, zero + den)


@triton.jit
def _up_axis(dst, scale, n_in, F64: tl.constexpr):
    """``UpAxis::make``: source samples (i0, i1) and weights (l0, l1) of output sample ``dst``
    in ``F.interpolate(bilinear, align_corners=False)`` from ``n_in`` samples; ``scale`` =
    n_in / n_out."""
    src = tl.maximum(scale * (_acc(dst, F64) + 0.5) - 0.5, 0.0)
    i0 = tl.minimum(src.to(tl.int32), n_in - 1)  # src >= 0 and finite: truncation is floor
    i1 = i0 + (i0 < n_in - 1).to(tl.int32)
    l1 = tl.minimum(tl.maximum(src - _acc(i0, F64), 0.0), 1.0)
    return i0, i1, 1.0 - l1, l1


@triton.jit
def _lowres(y, x, h, w, H, W, IDENTITY: tl.constexpr, F64: tl.constexpr):
    """``LowRes::make``: where output pixel (y, x) reads the h x w grid, as
    (iy0, iy1, ly0, ly1, ix0, ix1, lx0, lx1); the pixel itself when IDENTITY (h, w == H, W)."""
    if IDENTITY:
        one = _acc(y * 0 + 1, F64)
        return y, y, one, one - 1.0, x, x, one, one - 1.0
    else:
        iy0, iy1, ly0, ly1 = _up_axis(y, _ratio(h, H, y, F64), h, F64)
        ix0, ix1, lx0, lx1 = _up_axis(x, _ratio(w, W, x, F64), w, F64)
        return iy0, iy1, ly0, ly1, ix0, ix1, lx0, lx1


@triton.jit
def _sample(plane, sh, sw, lr, ok, IDENTITY: tl.constexpr, F64: tl.constexpr):
    """``LowRes::sample``: the (upsampled) value of one h x w plane at the pixels ``lr`` describes."""
    iy0, iy1, ly0, ly1, ix0, ix1, lx0, lx1 = lr
    if IDENTITY:
        return _acc(tl.load(plane + iy0 * sh + ix0 * sw, mask=ok, other=0.0), F64)
    else:
        r0 = plane + iy0 * sh
        r1 = plane + iy1 * sh
        top = (lx0 * _acc(tl.load(r0 + ix0 * sw, mask=ok, other=0.0), F64)
               + lx1 * _acc(tl.load(r0 + ix1 * sw, mask=ok, other=0.0), F64))
        bottom = (lx0 * _acc(tl.load(r1 + ix0 * sw, mask=ok, other=0.0), F64)
                  + lx1 * _acc(tl.load(r1 + ix1 * sw, mask=ok, other=0.0), F64))
        return ly0 * top + ly1 * bottom


@triton.jit
def _axis(pos, d, size, BORDER: tl.constexpr, F64: tl.constexpr):
    """``Axis::make``: one axis of a bilinear sample at ``pos + d`` in [0, size - 1], as
    (i0, v0, v1, frac, grad): lower tap, which taps are inside, weight of the upper tap,
    d coordinate / d flow (0 where border clamps, strictly, or the size is 1)."""
    zero = _acc(pos * 0, F64)
    last = zero + (size - 1)
    c = tl.where(size == 1, d * 0.0, _acc(pos, F64) + d)  # size 1: every finite coordinate is 0
    grad = tl.where(size == 1, zero, zero + 1.0)
    if BORDER:
        low = ~(c > 0.0)  # NaN lands on 0, as grid_sample's CPU clamp does
        grad = tl.where(low, zero, grad)
        c = tl.where(low, zero, c)
        high = ~(c < last)
        grad = tl.where(high, zero, grad)
        c = tl.where(high, last, c)
    f = tl.floor(c)
    # Range tests on the floating value first: no NaN or huge value becomes an index.
    v0 = (f >= 0.0) & (f <= last)
    v1 = (f >= -1.0) & (f <= last - 1.0)
    i0 = tl.where(v0 | v1, f, zero).to(tl.int32)
    return i0, v0, v1, c - f, grad


@triton.jit
def _quad(plane, sh, sw, tx, ty, ok, F64: tl.constexpr):
    """``load_quad``: the four taps (nw, ne, sw, se) of one channel plane; outside ones read 0."""
    x0, xv0, xv1, _fx, _gx = tx
    y0, yv0, yv1, _fy, _gy = ty
    p = plane + y0 * sh + x0 * sw
    nw = _acc(tl.load(p, mask=ok & yv0 & xv0, other=0.0), F64)
    ne = _acc(tl.load(p + sw, mask=ok & yv0 & xv1, other=0.0), F64)
    sw_ = _acc(tl.load(p + sh, mask=ok & yv1 & xv0, other=0.0), F64)
    se = _acc(tl.load(p + sh + sw, mask=ok & yv1 & xv1, other=0.0), F64)
    return nw, ne, sw_, se


@triton.jit
def _pixels(flow, sf_n, sf_c, sf_h, sf_w, mask, sm_n, sm_h, sm_w, H, W, h, w, total,
            BLEND: tl.constexpr, IDENTITY: tl.constexpr, BORDER: tl.constexpr, F64: tl.constexpr,
            BLOCK: tl.constexpr, CUBIC: tl.constexpr = False):
    """This program's output pixels: (p, ok, n, y, x, lr, tx, ty, m) with p the flat pixel
    index, lr their reads of the h x w grid, tx/ty the taps (``_axis``; ``_cubic_axis`` if
    CUBIC), m the mask (1 for warp)."""
    p = tl.program_id(0) * BLOCK + tl.arange(0, BLOCK)
    ok = p < total
    x = p % W
    y = (p // W) % H
    n = (p // W // H).to(tl.int64)
    lr = _lowres(y, x, h, w, H, W, IDENTITY, F64)
    dx = _sample(flow + n * sf_n, sf_h, sf_w, lr, ok, IDENTITY, F64)
    dy = _sample(flow + n * sf_n + sf_c, sf_h, sf_w, lr, ok, IDENTITY, F64)
    if not IDENTITY:  # pixels of the h x w grid -> pixels of the image
        dx = dx * _ratio(W, w, x, F64)
        dy = dy * _ratio(H, h, y, F64)
    if CUBIC:
        tx = _cubic_axis(x, dx, W, BORDER, F64)
        ty = _cubic_axis(y, dy, H, BORDER, F64)
    else:
        tx = _axis(x, dx, W, BORDER, F64)
        ty = _axis(y, dy, H, BORDER, F64)
    if BLEND:
        m = _sample(mask + n * sm_n, sm_h, sm_w, lr, ok, IDENTITY, F64)
    else:
        m = _acc(x * 0 + 1, F64)
    return p, ok, n, y, x, lr, tx, ty, m


@triton.jit
def _tap_masks(tx, ty, ok):
    """Which of the taps nw, ne, sw, se lie inside the image (where ``ok``)."""
    _x0, xv0, xv1, _fx, _gx = tx
    _y0, yv0, yv1, _fy, _gy = ty
    return ok & yv0 & xv0, ok & yv0 & xv1, ok & yv1 & xv0, ok & yv1 & xv1


@triton.jit
def _weights(tx, ty):
    """Bilinear weights of the taps nw, ne, sw, se."""
    fx = tx[3]
    fy = ty[3]
    return (1.0 - fx) * (1.0 - fy), fx * (1.0 - fy), (1.0 - fx) * fy, fx * fy


# (the bicubic image taps, mode="bicubic": fastwarp/ops/triton_cubic.py)

@triton.jit
def _forward_kernel(image, flow, texture, mask, out,
                    si_n, si_c, si_h, si_w, sf_n, sf_c, sf_h, sf_w, st_n, st_c, st_h, st_w, sm_n, sm_h, sm_w,
                    so_n, so_c, so_h, so_w, C, H, W, h, w, total,
                    BLEND: tl.constexpr, IDENTITY: tl.constexpr, BORDER: tl.constexpr, F64: tl.constexpr,
                    CUBIC: tl.constexpr, BLOCK: tl.constexpr):
    """``warp_forward_pixel`` for a block of output pixels, all channels."""
    p, ok, n, y, x, lr, tx, ty, m = _pixels(flow, sf_n, sf_c, sf_h, sf_w, mask, sm_n, sm_h, sm_w, H, W, h, w,
                                            total, BLEND, IDENTITY, BORDER, F64, BLOCK, CUBIC)
    if not CUBIC:
        w_nw, w_ne, w_sw, w_se = _weights(tx, ty)
    for c in range(C):
        if CUBIC:
            v, _ddx, _ddy = _cubic_sample(image + n * si_n + c * si_c, si_h, si_w, tx, ty, ok, F64)
        else:
            nw, ne, sw_, se = _quad(image + n * si_n + c * si_c, si_h, si_w, tx, ty, ok, F64)
            v = w_nw * nw + w_ne * ne + w_sw * sw_ + w_se * se
        if BLEND:
            tex = _sample(texture + n * st_n + c * st_c, st_h, st_w, lr, ok, IDENTITY, F64)
            v = m * v + (1.0 - m) * tex
        tl.store(out + n * so_n + c * so_c + y * so_h + x * so_w, v.to(out.dtype.element_ty), mask=ok)


@triton.jit
def _backward_kernel(grad_out, image, flow, texture, mask, g_image, rec_index, g_flow, g_texture, g_mask,
                     sg_n, sg_c, sg_h, sg_w, si_n, si_c, si_h, si_w, sf_n, sf_c, sf_h, sf_w,
                     st_n, st_c, st_h, st_w, sm_n, sm_h, sm_w, sa_n, sa_c, sa_h, sa_w,
                     sgf_n, sgf_c, sgf_h, sgf_w, sgt_n, sgt_c, sgt_h, sgt_w, sgm_n, sgm_h, sgm_w,
                     C, H, W, h, w, total,
                     BLEND: tl.constexpr, IDENTITY: tl.constexpr, BORDER: tl.constexpr, F64: tl.constexpr,
                     NEED_IMAGE: tl.constexpr, NEED_FLOW: tl.constexpr, NEED_TEXTURE: tl.constexpr,
                     NEED_MASK: tl.constexpr, DETERMINISTIC: tl.constexpr, CUBIC: tl.constexpr,
                     BLOCK: tl.constexpr):
    """``warp_backward_pixel`` for a block of output pixels. The image gradient goes to
    ``g_image``: an accumulation buffer (atomics), or, if DETERMINISTIC, records
    ``rec_index[T p + tap]`` (flat target pixel, 0 for taps outside) and
    ``g_image[(T p + tap) * C + c]`` (value, 0 outside), T = 4 taps (bilinear: nw, ne, sw,
    se) or, if CUBIC, 16 (row-major, 4 i + j for row tap i and column tap j). Flow, texture
    and mask gradients are written per output pixel (into H x W buffers when the grid is smaller)."""
    p, ok, n, y, x, lr, tx, ty, m = _pixels(flow, sf_n, sf_c, sf_h, sf_w, mask, sm_n, sm_h, sm_w, H, W, h, w,
                                            total, BLEND, IDENTITY, BORDER, F64, BLOCK, CUBIC)
    zero = _acc(x * 0, F64)
    if CUBIC:
        _xi, _xin, _wx, _dwx, gx = tx
        yidx, yin, wy, _dwy, gy = ty
        ty0, ty1, ty2, ty3 = yidx
        yv0, yv1, yv2, yv3 = yin
        wy0, wy1, wy2, wy3 = wy
        no = ok & ~ok  # no pixel records anything else in its tap 0
        if NEED_IMAGE and DETERMINISTIC:
            slot = p.to(tl.int64) * 16
            _cubic_record_row(rec_index, slot, (n * H + ty0) * W, tx, ok & yv0, ok, 0, no)
            _cubic_record_row(rec_index, slot + 4, (n * H + ty1) * W, tx, ok & yv1, ok, 0, no)
            _cubic_record_row(rec_index, slot + 8, (n * H + ty2) * W, tx, ok & yv2, ok, 0, no)
            _cubic_record_row(rec_index, slot + 12, (n * H + ty3) * W, tx, ok & yv3, ok, 0, no)
    else:
        x0, xv0, xv1, fx, gx = tx
        y0, yv0, yv1, fy, gy = ty
        w_nw, w_ne, w_sw, w_se = _weights(tx, ty)
        t_nw, t_ne, t_sw, t_se = _tap_masks(tx, ty, ok)
        if NEED_IMAGE and DETERMINISTIC:
            slot = p.to(tl.int64) * 4
            target = (n * H + y0) * W + x0
            tl.store(rec_index + slot, tl.where(t_nw, target, 0), mask=ok)
            tl.store(rec_index + slot + 1, tl.where(t_ne, target + 1, 0), mask=ok)
            tl.store(rec_index + slot + 2, tl.where(t_sw, target + W, 0), mask=ok)
            tl.store(rec_index + slot + 3, tl.where(t_se, target + W + 1, 0), mask=ok)
    gdx = zero
    gdy = zero
    gmask = zero
    for c in range(C):
        go = _acc(tl.load(grad_out + n * sg_n + c * sg_c + y * sg_h + x * sg_w, mask=ok, other=0.0), F64)
        if NEED_FLOW or (BLEND and NEED_MASK):
            if CUBIC:  # the sample and its derivatives along t_x, t_y
                val, ddx, ddy = _cubic_sample(image + n * si_n + c * si_c, si_h, si_w, tx, ty, ok, F64)
            else:
                nw, ne, sw_, se = _quad(image + n * si_n + c * si_c, si_h, si_w, tx, ty, ok, F64)
        if BLEND:
            if NEED_TEXTURE:
                tl.store(g_texture + n * sgt_n + c * sgt_c + y * sgt_h + x * sgt_w,
                         (go * (1.0 - m)).to(g_texture.dtype.element_ty), mask=ok)
            if NEED_MASK:
                tex = _sample(texture + n * st_n + c * st_c, st_h, st_w, lr, ok, IDENTITY, F64)
                if CUBIC:
                    gmask += go * (val - tex)
                else:
                    gmask += go * (w_nw * nw + w_ne * ne + w_sw * sw_ + w_se * se - tex)
            go = go * m  # the gradient reaching the warped image
        if NEED_IMAGE and CUBIC:
            if DETERMINISTIC:
                v = g_image + slot * C + c
                _cubic_value_row(v, C, tx, wy0 * go, ok & yv0, ok, zero, no, zero)
                _cubic_value_row(v + 4 * C, C, tx, wy1 * go, ok & yv1, ok, zero, no, zero)
                _cubic_value_row(v + 8 * C, C, tx, wy2 * go, ok & yv2, ok, zero, no, zero)
                _cubic_value_row(v + 12 * C, C, tx, wy3 * go, ok & yv3, ok, zero, no, zero)
            else:
                a = g_image + n * sa_n + c * sa_c
                _cubic_scatter_row(a + ty0 * sa_h, sa_w, tx, wy0 * go, ok & yv0)
                _cubic_scatter_row(a + ty1 * sa_h, sa_w, tx, wy1 * go, ok & yv1)
                _cubic_scatter_row(a + ty2 * sa_h, sa_w, tx, wy2 * go, ok & yv2)
                _cubic_scatter_row(a + ty3 * sa_h, sa_w, tx, wy3 * go, ok & yv3)
        elif NEED_IMAGE:
            if DETERMINISTIC:
                v = g_image + slot * C + c
                tl.store(v, tl.where(t_nw, w_nw * go, zero), mask=ok)
                tl.store(v + C, tl.where(t_ne, w_ne * go, zero), mask=ok)
                tl.store(v + 2 * C, tl.where(t_sw, w_sw * go, zero), mask=ok)
                tl.store(v + 3 * C, tl.where(t_se, w_se * go, zero), mask=ok)
            else:
                a = g_image + n * sa_n + c * sa_c + y0 * sa_h + x0 * sa_w
                tl.atomic_add(a, w_nw * go, mask=t_nw, sem="relaxed")
                tl.atomic_add(a + sa_w, w_ne * go, mask=t_ne, sem="relaxed")
                tl.atomic_add(a + sa_h, w_sw * go, mask=t_sw, sem="relaxed")
                tl.atomic_add(a + sa_h + sa_w, w_se * go, mask=t_se, sem="relaxed")
        if NEED_FLOW and CUBIC:
            gdx += go * ddx
            gdy += go * ddy
        elif NEED_FLOW:
            gdx += go * ((1.0 - fy) * (ne - nw) + fy * (se - sw_))
            gdy += go * ((1.0 - fx) * (sw_ - nw) + fx * (se - ne))
    if NEED_FLOW:
        gdx = gdx * gx
        gdy = gdy * gy
        if not IDENTITY:  # d (image pixels) / d (grid pixels)
            gdx = gdx * _ratio(W, w, x, F64)
            gdy = gdy * _ratio(H, h, y, F64)
        gf = g_flow + n * sgf_n + y * sgf_h + x * sgf_w
        tl.store(gf, gdx.to(g_flow.dtype.element_ty), mask=ok)
        tl.store(gf + sgf_c, gdy.to(g_flow.dtype.element_ty), mask=ok)
    if BLEND and NEED_MASK:
        tl.store(g_mask + n * sgm_n + y * sgm_h + x * sgm_w, gmask.to(g_mask.dtype.element_ty), mask=ok)


@triton.jit
def _upsample_adjoint_kernel(src, s_n, s_k, s_p, s_o, dst, d_n, d_k, d_p, d_i, K, P, n_in, n_out, total, WINDOW,
                             F64: tl.constexpr, BLOCK: tl.constexpr):
    """Adjoint of the upsampling along one axis (``upsample_adjoint_at``, one axis), as a
    gather: ``dst[n, k, p, i] = sum_o weight(i, o) * src[n, k, p, o]`` over the output samples
    o in [lo, hi) that may read source sample i (``UpAxis::readers``, in integers),
    WINDOW >= hi - lo. Zero weights are skipped, as the C++ kernels do."""
    e = tl.program_id(0) * BLOCK + tl.arange(0, BLOCK)
    ok = e < total
    i = e % n_in
    q = (e // n_in) % P
    k = (e // n_in // P) % K
    n = (e // n_in // P // K).to(tl.int64)
    lo = tl.maximum(((2 * i - 1) * n_out - n_in) // (2 * n_in) - 2, 0)
    hi = tl.minimum(((2 * i + 3) * n_out - n_in) // (2 * n_in) + 3, n_out)
    scale = _ratio(n_in, n_out, i, F64)
    base = src + n * s_n + k * s_k + q * s_p
    zero = _acc(i * 0, F64)
    total_sum = zero
    for d in range(WINDOW):
        o = lo + d
        i0, i1, l0, l1 = _up_axis(o, scale, n_in, F64)
        weight = tl.where(i0 == i, l0, zero) + tl.where(i1 == i, l1, zero)
        use = ok & (o < hi) & (weight != 0.0)
        g = _acc(tl.load(base + o * s_o, mask=use, other=0.0), F64)
        total_sum += tl.where(use, weight * g, zero)
    tl.store(dst + n * d_n + k * d_k + q * d_p + i * d_i, total_sum.to(dst.dtype.element_ty), mask=ok)


# --- host side ---------------------------------------------------------------------------------

def _launch(kernel, total: int, *args, **meta) -> None:
    """``kernel`` over ``total`` pixels/elements. Skipped on meta tensors (nothing to
    compute) and, in the interpreter, on fake tensors: ``wrap_triton`` traces compiled
    kernels only, so an interpreted op stays opaque and its fake kernel (this same code)
    just allocates. Compiled kernels always launch through ``wrap_triton``, which records
    them when tracing."""
    tensors = [a for a in args if isinstance(a, Tensor)]
    if total == 0 or any(t.device.type == "meta" or (INTERPRET and is_fake(t)) for t in tensors):
        return
    block = _block(total)
    kernel[(triton.cdiv(total, block),)](*args, BLOCK=block, **meta)


def _strides(t: Tensor, channels: bool = True) -> tuple[int, ...]:
    """Element strides (n, c, h, w), or (n, h, w) of a one-channel tensor; zeros for a
    placeholder (a tensor the kernel does not touch)."""
    s = t.stride() if t.dim() == 4 else (0, 0, 0, 0)
    return s if channels else (s[0], s[2], s[3])


def _flags(image: Tensor, flow: Tensor, texture: Tensor | None, padding_mode: str, mode: str) -> dict:
    return dict(BLEND=texture is not None, IDENTITY=tuple(flow.shape[2:]) == tuple(image.shape[2:]),
                BORDER=padding_mode == "border", F64=image.dtype == torch.float64, CUBIC=mode == "bicubic")


#: Image taps per output pixel of each ``mode`` (the deterministic backward's records per pixel).
TAPS = {"bilinear": 4, "bicubic": 16}


def _forward(op: str, image: Tensor, flow: Tensor, texture: Tensor | None, mask: Tensor | None,
             padding_mode: str, mode: str) -> Tensor:
    checks.check_warp_args(op, image, flow, texture, mask, padding_mode, mode)
    out = output_like_image(image)
    N, C, H, W = image.shape
    # Flat pixel index over the batch; the batch offset n * stride in int64, the rest in int32.
    check_int32_indexing(op, N * H * W, _block(N * H * W), per_item=True, image=image, flow=flow, texture=texture,
                         mask=mask, output=out)
    # warp has no texture and mask: the image stands in for them (never read).
    tex, msk = (texture, mask) if texture is not None else (image, image)
    _launch(wrap_triton(_forward_kernel), N * H * W if C else 0, image, flow, tex, msk, out,
            *_strides(image), *_strides(flow), *_strides(tex), *_strides(msk, False), *_strides(out),
            C, H, W, flow.shape[2], flow.shape[3], N * H * W, **_flags(image, flow, texture, padding_mode, mode))
    return out


def _upsample_adjoint(op: str, grad_hi: Tensor, grad: Tensor) -> None:
    """``grad`` [N, K, h, w] = the adjoint of the upsampling applied to ``grad_hi`` [N, K, H, W]
    ((h, w) != (H, W)): one gather pass per upsampled axis, x first, then y (the summation
    order of ``upsample_adjoint_at``), the intermediate in ``grad_hi``'s (accumulation) dtype."""
    passes = [(axis, n_in, n_out) for axis, n_in, n_out in ((3, grad.shape[3], grad_hi.shape[3]),
                                                             (2, grad.shape[2], grad_hi.shape[2]))
              if n_in != n_out]
    src = grad_hi
    for j, (axis, n_in, n_out) in enumerate(passes):
        shape = list(src.shape)
        shape[axis] = n_in
        dst = grad if j == len(passes) - 1 else src.new_empty(shape)
        # Both seen as [N, K, P, L] with L the reduced axis.
        s, d = (src, dst) if axis == 3 else (src.transpose(2, 3), dst.transpose(2, 3))
        # The readers' window bound (2 i + 3) n_out, i < n_in, is an int32 product as well.
        check_int32_indexing(op, d.numel(), _block(d.numel()),
                             {"the upsampling adjoint's window bound": (2 * n_in + 1) * n_out},
                             per_item=True, gradient_buffer=s, gradient=d)
        _launch(wrap_triton(_upsample_adjoint_kernel), d.numel(), s, *s.stride(), d, *d.stride(), d.shape[1],
                d.shape[2], n_in, n_out, d.numel(), 2 * n_out // n_in + 8, F64=grad.dtype == torch.float64)
        src = dst


def _backward(op: str, grad_output: Tensor, image: Tensor, flow: Tensor, texture: Tensor | None,
              mask: Tensor | None, padding_mode: str, mode: str, need: Sequence[bool]) -> tuple[Tensor, ...]:
    checks.check_warp_args(op, image, flow, texture, mask, padding_mode, mode)
    checks.check_grad_output(op, grad_output, image)
    blend = texture is not None
    inputs = (image, flow, texture, mask) if blend else (image, flow)
    need = [bool(b) for b in need[:len(inputs)]]
    N, C, H, W = image.shape
    total = N * H * W
    acc_dtype = torch.float64 if image.dtype == torch.float64 else torch.float32
    identity = tuple(flow.shape[2:]) == (H, W)
    deterministic = need[0] and torch.are_deterministic_algorithms_enabled()
    # Gradients not asked for are fresh empty tensors each (the schema's outputs must not alias).
    if total * C == 0 or not any(need):  # nothing to compute: zeros
        return tuple(torch.zeros_like(t) if wanted else image.new_empty((0,)) for t, wanted in zip(inputs, need))
    # The inputs and the gradients (or their H x W buffers, at most [N, max(C, 2), H, W], dense)
    # are indexed in int32 within a batch item; the deterministic records in 64 bits.
    check_int32_indexing(op, total, _block(total), {"a gradient buffer's largest offset within one batch item":
                                                    max(C, 2) * H * W - 1},
                         per_item=True, grad_output=grad_output, image=image, flow=flow, texture=texture, mask=mask)
    grads = [torch.empty_like(t) if wanted else image.new_empty((0,)) for t, wanted in zip(inputs[1:], need[1:])]
    # Where the kernel writes the flow/texture/mask gradients: into them, or into H x W buffers.
    targets = [g if identity or g.numel() == 0 else
               torch.empty((N, g.shape[1], H, W), dtype=acc_dtype, device=image.device) for g in grads]
    fmt = torch._prims_common.suggest_memory_format(image)
    acc = rec_index = rec_value = image.new_empty((0,))
    if need[0] and deterministic:
        acc = torch.zeros((total, C), dtype=acc_dtype, device=image.device)
        rec_index = torch.empty((total * TAPS[mode],), dtype=torch.int64, device=image.device)
        rec_value = torch.empty((total * TAPS[mode], C), dtype=acc_dtype, device=image.device)
    elif need[0]:
        acc = torch.zeros_like(image, dtype=acc_dtype, memory_format=fmt)
    g_flow, g_texture, g_mask = (targets + [targets[0], targets[0]])[:3]  # warp: placeholders
    tex, msk = (texture, mask) if blend else (image, image)
    _launch(wrap_triton(_backward_kernel), total, grad_output, image, flow, tex, msk,
            rec_value if deterministic else acc, rec_index, g_flow, g_texture, g_mask,
            *_strides(grad_output), *_strides(image), *_strides(flow), *_strides(tex), *_strides(msk, False),
            *_strides(acc), *_strides(g_flow), *_strides(g_texture), *_strides(g_mask, False),
            C, H, W, flow.shape[2], flow.shape[3], total, **_flags(image, flow, texture, padding_mode, mode),
            NEED_IMAGE=need[0], NEED_FLOW=need[1], NEED_TEXTURE=blend and need[2],
            NEED_MASK=blend and need[3], DETERMINISTIC=deterministic)
    for g, target in zip(grads, targets):
        if target is not g:
            _upsample_adjoint(op, target, g)
    grad_image = image.new_empty((0,))
    if need[0]:
        if deterministic:
            acc.index_put_((rec_index,), rec_value, accumulate=True)
            acc = acc.view(N, H, W, C).permute(0, 3, 1, 2)
        grad_image = acc.to(image.dtype).contiguous(memory_format=fmt)
    return (grad_image, *grads)


# --- the ops -------------------------------------------------------------------------------------

@triton_op("fastwarp::triton_warp", mutates_args=())
def warp(image: Tensor, flow: Tensor, padding_mode: str = "border", mode: str = "bilinear") -> Tensor:
    """Triton kernel of :func:`fastwarp.warp` (same arguments, result and errors)."""
    return _forward("fastwarp.warp", image, flow, None, None, padding_mode, mode)


@triton_op("fastwarp::triton_warp_blend", mutates_args=())
def warp_blend(image: Tensor, flow: Tensor, texture: Tensor, mask: Tensor, padding_mode: str = "border",
               mode: str = "bilinear") -> Tensor:
    """Triton kernel of :func:`fastwarp.warp_blend` (same arguments, result and errors)."""
    return _forward("fastwarp.warp_blend", image, flow, texture, mask, padding_mode, mode)


@triton_op("fastwarp::triton_warp_backward", mutates_args=())
def warp_backward(grad_output: Tensor, image: Tensor, flow: Tensor, padding_mode: str, mode: str,
                  output_mask: Sequence[bool]) -> tuple[Tensor, Tensor]:
    """Gradients (image, flow) of :func:`warp`; those not in ``output_mask`` are empty."""
    return _backward("fastwarp.warp_backward", grad_output, image, flow, None, None, padding_mode, mode,
                     output_mask)  # type: ignore[return-value]


@triton_op("fastwarp::triton_warp_blend_backward", mutates_args=())
def warp_blend_backward(grad_output: Tensor, image: Tensor, flow: Tensor, texture: Tensor, mask: Tensor,
                        padding_mode: str, mode: str,
                        output_mask: Sequence[bool]) -> tuple[Tensor, Tensor, Tensor, Tensor]:
    """Gradients (image, flow, texture, mask) of :func:`warp_blend`; those not in
    ``output_mask`` are empty."""
    return _backward("fastwarp.warp_blend_backward", grad_output, image, flow, texture, mask, padding_mode, mode,
                     output_mask)  # type: ignore[return-value]


def keep_opaque_when_interpreted(*ops) -> None:
    """Interpreted kernels cannot be traced (see _launch): keep these ops whole under
    torch.compile's functionalization instead of decomposing them into their kernels."""
    if not INTERPRET:
        return
    from torch._subclasses.functional_tensor import FunctionalTensorMode

    def _opaque(mode, op, types, args, kwargs):
        return mode.__torch_dispatch__(op, types, args, kwargs)

    for op in ops:
        op.register_torch_dispatch(FunctionalTensorMode, _opaque)


keep_opaque_when_interpreted(warp, warp_blend, warp_backward, warp_blend_backward)

register_op_autograd(warp, warp_backward)
register_op_autograd(warp_blend, warp_blend_backward)
register_op_autocast("fastwarp::triton_warp")
register_op_autocast("fastwarp::triton_warp_blend")
