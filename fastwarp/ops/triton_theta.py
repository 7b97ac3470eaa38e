"""Triton kernels of the frame-space composite (the ops' ``theta``, docs/design.md
"Frame-space composite"), exposed as ``fastwarp::triton_warp_theta`` and
``fastwarp::triton_warp_blend_theta`` with their backward ops: the signatures of the C++
ops and the per-pixel math of ``csrc/warp_theta.h`` (``_grid_axis`` is ``GridAxis::make``,
``_grid_sample`` ``GridSample::sample``), built on :mod:`fastwarp.ops.triton_backend`'s
image taps (``mode="bicubic"``: the CUBIC constexpr, its 4 x 4 taps ``_cubic_axis`` and
``_cubic_sample``; the grid's own samples stay bilinear).

Forward: one launch per image over its footprint's bounding box; the output starts as a
copy of the image, so every pixel outside the footprint is the image, bit for bit. A uint8
image (an OpenCV frame) takes float32 maps and float32 math, rounded to the nearest
integer (ties to even), after clamping to 0..255. Backward: every pixel records its
contributions (the image's four taps, sixteen if bicubic, or its own pixel outside the
footprint; the grid's four taps for flow, mask and texture), summed by
``index_put_(accumulate=True)``: no atomics, the same order every run.
"""

from __future__ import annotations

from typing import Sequence

import torch
import triton
import triton.language as tl
from torch import Tensor
from torch.library import triton_op, wrap_triton

from . import checks
from .registration import register_op_autocast, register_op_autograd, theta_output_like_image
from .triton_backend import (TAPS, _acc, _axis, _block, _cubic_axis, _cubic_record_row, _cubic_sample,
                             _cubic_value_row, _launch, _quad, _strides, _tap_masks, _weights, check_int32_indexing,
                             keep_opaque_when_interpreted)

__all__ = ["warp_theta", "warp_blend_theta"]


@triton.jit
def _coef(coef, n, k, F64: tl.constexpr):
    """theta's k-th coefficient of image n: 0..5 theta, 6..9 the inverse of its linear part."""
    return _acc(tl.load(coef + n * 10 + k), F64)


@triton.jit
def _grid_axis(c, size, F64: tl.constexpr):
    """``GridAxis::make``: the coordinate clamped to [0, size - 1] (NaN -> 0), its taps (i0, i1)
    and weights (l0, l1)."""
    zero = _acc(c * 0, F64)
    c = tl.where(c > 0.0, c, zero)
    c = tl.minimum(c, zero + (size - 1))
    f = tl.floor(c)
    i0 = f.to(tl.int32)
    i1 = tl.minimum(i0 + 1, size - 1)
    l1 = c - f
    return i0, i1, 1.0 - l1, l1


@triton.jit
def _grid_sample(plane, sh, sw, gx, gy, ok, F64: tl.constexpr):
    x0, x1, lx0, lx1 = gx
    y0, y1, ly0, ly1 = gy
    top = (lx0 * _acc(tl.load(plane + y0 * sh + x0 * sw, mask=ok, other=0.0), F64)
           + lx1 * _acc(tl.load(plane + y0 * sh + x1 * sw, mask=ok, other=0.0), F64))
    bottom = (lx0 * _acc(tl.load(plane + y1 * sh + x0 * sw, mask=ok, other=0.0), F64)
              + lx1 * _acc(tl.load(plane + y1 * sh + x1 * sw, mask=ok, other=0.0), F64))
    return ly0 * top + ly1 * bottom


@triton.jit
def _round_half_even(v):
    r = tl.floor(v + 0.5)
    tie = (r - v) == 0.5
    odd = (r - 2.0 * tl.floor(r * 0.5)) == 1.0
    return tl.where(tie & odd, r - 1.0, r)


@triton.jit
def _composite_pixels(flow, sf_n, sf_c, sf_h, sf_w, mask, sm_n, sm_h, sm_w, coef, n, x, y, ok, H, W, h, w,
                      BLEND: tl.constexpr, BORDER: tl.constexpr, F64: tl.constexpr, CUBIC: tl.constexpr = False):
    """(inside, gx, gy, tx, ty, m, i00, i01, i10, i11) of pixels (n, y, x): whether each lies in
    the footprint, its grid taps, its image taps (``_axis``; ``_cubic_axis`` if CUBIC) and its
    mask (1 for warp)."""
    u = _coef(coef, n, 0, F64) * x + _coef(coef, n, 1, F64) * y + _coef(coef, n, 2, F64)
    v = _coef(coef, n, 3, F64) * x + _coef(coef, n, 4, F64) * y + _coef(coef, n, 5, F64)
    inside = ok & (u >= -0.5) & (u <= w - 0.5) & (v >= -0.5) & (v <= h - 0.5)
    gx = _grid_axis(u, w, F64)
    gy = _grid_axis(v, h, F64)
    fx = _grid_sample(flow + n * sf_n, sf_h, sf_w, gx, gy, inside, F64)
    fy = _grid_sample(flow + n * sf_n + sf_c, sf_h, sf_w, gx, gy, inside, F64)
    i00 = _coef(coef, n, 6, F64)
    i01 = _coef(coef, n, 7, F64)
    i10 = _coef(coef, n, 8, F64)
    i11 = _coef(coef, n, 9, F64)
    if CUBIC:
        tx = _cubic_axis(x, i00 * fx + i01 * fy, W, BORDER, F64)
        ty = _cubic_axis(y, i10 * fx + i11 * fy, H, BORDER, F64)
    else:
        tx = _axis(x, i00 * fx + i01 * fy, W, BORDER, F64)
        ty = _axis(y, i10 * fx + i11 * fy, H, BORDER, F64)
    if BLEND:
        m = _grid_sample(mask + n * sm_n, sm_h, sm_w, gx, gy, inside, F64)
    else:
        m = _acc(u * 0 + 1, F64)
    return inside, gx, gy, tx, ty, m, i00, i01, i10, i11


@triton.jit
def _theta_forward_kernel(image, flow, texture, mask, out, coef,
                          si_n, si_c, si_h, si_w, sf_n, sf_c, sf_h, sf_w, st_n, st_c, st_h, st_w, sm_n, sm_h, sm_w,
                          so_n, so_c, so_h, so_w, n, C, H, W, h, w, x0, bw, y0, total,
                          BLEND: tl.constexpr, BORDER: tl.constexpr, F64: tl.constexpr, U8: tl.constexpr,
                          CUBIC: tl.constexpr, BLOCK: tl.constexpr):
    """``theta_forward_pixel`` over a block of image n's footprint box, all channels."""
    q = tl.program_id(0) * BLOCK + tl.arange(0, BLOCK)
    ok = q < total
    x = x0 + q % bw
    y = y0 + q // bw
    inside, gx, gy, tx, ty, m, _a, _b, _c, _d = _composite_pixels(
        flow, sf_n, sf_c, sf_h, sf_w, mask, sm_n, sm_h, sm_w, coef, n, x, y, ok, H, W, h, w, BLEND, BORDER, F64,
        CUBIC)
    if not CUBIC:
        w_nw, w_ne, w_sw, w_se = _weights(tx, ty)
    for c in range(C):
        if CUBIC:
            val, _ddx, _ddy = _cubic_sample(image + n * si_n + c * si_c, si_h, si_w, tx, ty, inside, F64)
        else:
            nw, ne, sw_, se = _quad(image + n * si_n + c * si_c, si_h, si_w, tx, ty, inside, F64)
            val = w_nw * nw + w_ne * ne + w_sw * sw_ + w_se * se
        if BLEND:
            tex = _grid_sample(texture + n * st_n + c * st_c, st_h, st_w, gx, gy, inside, F64)
            val = m * val + (1.0 - m) * tex
        if U8:
            val = _round_half_even(tl.minimum(tl.where(val > 0.0, val, 0.0), 255.0))
        tl.store(out + n * so_n + c * so_c + y * so_h + x * so_w, val.to(out.dtype.element_ty), mask=inside)


@triton.jit
def _theta_backward_kernel(grad_out, image, flow, texture, mask, coef, img_index, img_value, grid_index, grid_value,
                           sg_n, sg_c, sg_h, sg_w, si_n, si_c, si_h, si_w, sf_n, sf_c, sf_h, sf_w,
                           st_n, st_c, st_h, st_w, sm_n, sm_h, sm_w, C, K, H, W, h, w, total,
                           BLEND: tl.constexpr, BORDER: tl.constexpr, F64: tl.constexpr,
                           NEED_IMAGE: tl.constexpr, NEED_FLOW: tl.constexpr, NEED_MASK: tl.constexpr,
                           NEED_TEXTURE: tl.constexpr, CUBIC: tl.constexpr, BLOCK: tl.constexpr):
    """``theta_backward_pixel`` for a block of pixels, as records: ``img_index[T p + tap]``
    (flat target pixel n, y, x) with ``img_value[(T p + tap) * C + c]`` (0 where a tap is
    outside; outside the footprint tap 0 is the pixel itself with weight 1), T = 4 image taps
    or, if CUBIC, 16 (4 i + j for row tap i, column tap j), and ``grid_index[4 p + tap]``
    (flat n, gy, gx) with ``grid_value[(4 p + tap) * K + k]``, k = 0, 1 flow, 2 mask, 3 + c
    texture (0 outside the footprint)."""
    p = tl.program_id(0) * BLOCK + tl.arange(0, BLOCK)
    ok = p < total
    x = p % W
    y = (p // W) % H
    # Lanes past the end (p >= total) are image 0's: _coef's loads of theta are unmasked.
    n = tl.where(ok, p // W // H, 0).to(tl.int64)
    inside, gx, gy, tx, ty, m, i00, i01, i10, i11 = _composite_pixels(
        flow, sf_n, sf_c, sf_h, sf_w, mask, sm_n, sm_h, sm_w, coef, n, x, y, ok, H, W, h, w, BLEND, BORDER, F64,
        CUBIC)
    outside = ok & ~inside
    zero = _acc(x * 0, F64)
    slot = p.to(tl.int64) * 4
    if CUBIC:
        _xi, _xin, _wx, _dwx, gxx = tx
        yidx, yin, wy, _dwy, gyy = ty
        ty0, ty1, ty2, ty3 = yidx
        yv0, yv1, yv2, yv3 = yin
        wy0, wy1, wy2, wy3 = wy
        no = ok & ~ok
        islot = p.to(tl.int64) * 16
        if NEED_IMAGE:
            own = (n * H + y) * W + x
            _cubic_record_row(img_index, islot, (n * H + ty0) * W, tx, inside & yv0, ok, own, outside)
            _cubic_record_row(img_index, islot + 4, (n * H + ty1) * W, tx, inside & yv1, ok, own, no)
            _cubic_record_row(img_index, islot + 8, (n * H + ty2) * W, tx, inside & yv2, ok, own, no)
            _cubic_record_row(img_index, islot + 12, (n * H + ty3) * W, tx, inside & yv3, ok, own, no)
    else:
        x0, xv0, xv1, fx, gxx = tx
        y0, yv0, yv1, fy, gyy = ty
        w_nw, w_ne, w_sw, w_se = _weights(tx, ty)
        t_nw, t_ne, t_sw, t_se = _tap_masks(tx, ty, inside)
        if NEED_IMAGE:
            target = (n * H + y0) * W + x0
            own = (n * H + y) * W + x
            tl.store(img_index + slot, tl.where(t_nw, target, tl.where(outside, own, 0)), mask=ok)
            tl.store(img_index + slot + 1, tl.where(t_ne, target + 1, 0), mask=ok)
            tl.store(img_index + slot + 2, tl.where(t_sw, target + W, 0), mask=ok)
            tl.store(img_index + slot + 3, tl.where(t_se, target + W + 1, 0), mask=ok)
    gx0, gx1, lx0, lx1 = gx
    gy0, gy1, ly0, ly1 = gy
    gw0 = tl.where(inside, ly0 * lx0, zero)
    gw1 = tl.where(inside, ly0 * lx1, zero)
    gw2 = tl.where(inside, ly1 * lx0, zero)
    gw3 = tl.where(inside, ly1 * lx1, zero)
    if NEED_FLOW or NEED_MASK or NEED_TEXTURE:
        g = (n * h + gy0) * w
        tl.store(grid_index + slot, g + gx0, mask=ok)
        tl.store(grid_index + slot + 1, g + gx1, mask=ok)
        g = (n * h + gy1) * w
        tl.store(grid_index + slot + 2, g + gx0, mask=ok)
        tl.store(grid_index + slot + 3, g + gx1, mask=ok)
    gdx = zero
    gdy = zero
    gmask = zero
    for c in range(C):
        go = _acc(tl.load(grad_out + n * sg_n + c * sg_c + y * sg_h + x * sg_w, mask=ok, other=0.0), F64)
        if NEED_FLOW or (BLEND and NEED_MASK):
            if CUBIC:  # the sample and its derivatives along t_x, t_y
                val, ddx, ddy = _cubic_sample(image + n * si_n + c * si_c, si_h, si_w, tx, ty, inside, F64)
            else:
                nw, ne, sw_, se = _quad(image + n * si_n + c * si_c, si_h, si_w, tx, ty, inside, F64)
        gin = go
        if BLEND:
            if NEED_TEXTURE:
                gt = go * (1.0 - m)
                v = grid_value + slot * K + 3 + c
                tl.store(v, gw0 * gt, mask=ok)
                tl.store(v + K, gw1 * gt, mask=ok)
                tl.store(v + 2 * K, gw2 * gt, mask=ok)
                tl.store(v + 3 * K, gw3 * gt, mask=ok)
            if NEED_MASK:
                tex = _grid_sample(texture + n * st_n + c * st_c, st_h, st_w, gx, gy, inside, F64)
                if CUBIC:
                    gmask += tl.where(inside, go * (val - tex), zero)
                else:
                    gmask += tl.where(inside, go * (w_nw * nw + w_ne * ne + w_sw * sw_ + w_se * se - tex), zero)
            gin = go * m
        if NEED_IMAGE and CUBIC:
            v = img_value + islot * C + c
            _cubic_value_row(v, C, tx, wy0 * gin, inside & yv0, ok, go, outside, zero)
            _cubic_value_row(v + 4 * C, C, tx, wy1 * gin, inside & yv1, ok, go, no, zero)
            _cubic_value_row(v + 8 * C, C, tx, wy2 * gin, inside & yv2, ok, go, no, zero)
            _cubic_value_row(v + 12 * C, C, tx, wy3 * gin, inside & yv3, ok, go, no, zero)
        elif NEED_IMAGE:
            v = img_value + slot * C + c
            tl.store(v, tl.where(t_nw, w_nw * gin, tl.where(outside, go, zero)), mask=ok)
            tl.store(v + C, tl.where(t_ne, w_ne * gin, zero), mask=ok)
            tl.store(v + 2 * C, tl.where(t_sw, w_sw * gin, zero), mask=ok)
            tl.store(v + 3 * C, tl.where(t_se, w_se * gin, zero), mask=ok)
        if NEED_FLOW and CUBIC:
            gdx += tl.where(inside, gin * ddx, zero)
            gdy += tl.where(inside, gin * ddy, zero)
        elif NEED_FLOW:
            gdx += tl.where(inside, gin * ((1.0 - fy) * (ne - nw) + fy * (se - sw_)), zero)
            gdy += tl.where(inside, gin * ((1.0 - fx) * (sw_ - nw) + fx * (se - ne)), zero)
    if NEED_FLOW:
        gdx = gdx * gxx
        gdy = gdy * gyy
        gfx = i00 * gdx + i10 * gdy  # L^-T (gdx, gdy)
        gfy = i01 * gdx + i11 * gdy
        v = grid_value + slot * K
        tl.store(v, gw0 * gfx, mask=ok)
        tl.store(v + K, gw1 * gfx, mask=ok)
        tl.store(v + 2 * K, gw2 * gfx, mask=ok)
        tl.store(v + 3 * K, gw3 * gfx, mask=ok)
        tl.store(v + 1, gw0 * gfy, mask=ok)
        tl.store(v + K + 1, gw1 * gfy, mask=ok)
        tl.store(v + 2 * K + 1, gw2 * gfy, mask=ok)
        tl.store(v + 3 * K + 1, gw3 * gfy, mask=ok)
    if BLEND and NEED_MASK:
        v = grid_value + slot * K + 2
        tl.store(v, gw0 * gmask, mask=ok)
        tl.store(v + K, gw1 * gmask, mask=ok)
        tl.store(v + 2 * K, gw2 * gmask, mask=ok)
        tl.store(v + 3 * K, gw3 * gmask, mask=ok)


# --- host side ---------------------------------------------------------------------------------

def _coefficients(op: str, theta: Tensor, like: Tensor) -> tuple[Tensor, list[list[float]]]:
    """theta checked (finite, invertible), as [N, 10] (theta, then L^-1) in the accumulation
    dtype on the device, and as Python floats."""
    values = checks.check_theta_values(op, theta) if not _no_values(theta) else []
    if not values:
        return torch.zeros((theta.shape[0], 10), dtype=torch.float64, device=like.device), []
    rows = []
    for t in values:
        det = t[0] * t[4] - t[1] * t[3]
        rows.append(t + [t[4] / det, -t[1] / det, -t[3] / det, t[0] / det])
    acc = torch.float64 if like.dtype == torch.float64 else torch.float32
    return torch.tensor(rows, dtype=torch.float64).to(device=like.device, dtype=acc), values


def _no_values(t: Tensor) -> bool:
    from torch._subclasses.fake_tensor import is_fake

    return t.device.type == "meta" or is_fake(t)


def _footprint_box(t: list[float], h: int, w: int, H: int, W: int) -> tuple[int, int, int, int]:
    """``footprint_box`` of csrc/warp_theta.h: (x0, x1, y0, y1)."""
    import math

    det = t[0] * t[4] - t[1] * t[3]
    i00, i01, i10, i11 = t[4] / det, -t[1] / det, -t[3] / det, t[0] / det
    xs, ys = [], []
    for u in (-0.5, w - 0.5):
        for v in (-0.5, h - 0.5):
            du, dv = u - t[2], v - t[5]
            xs.append(i00 * du + i01 * dv)
            ys.append(i10 * du + i11 * dv)

    def clip(v: float, hi: int) -> int:
        return 0 if not v > 0 else min(int(v), hi)

    x0, x1 = clip(math.floor(min(xs)) - 1, W), clip(math.ceil(max(xs)) + 2, W)
    y0, y1 = clip(math.floor(min(ys)) - 1, H), clip(math.ceil(max(ys)) + 2, H)
    return x0, max(x1, x0), y0, max(y1, y0)


def _forward(op: str, image: Tensor, flow: Tensor, texture: Tensor | None, mask: Tensor | None, theta: Tensor,
             padding_mode: str, mode: str) -> Tensor:
    checks.check_theta_args(op, image, flow, texture, mask, theta, padding_mode, mode=mode)
    out = theta_output_like_image(image)
    coef, values = _coefficients(op, theta, flow)
    if not values or out.numel() == 0:
        return out
    N, C, H, W = image.shape
    h, w = flow.shape[2:]
    # One launch per image (n a 32-bit argument): offsets over the whole tensors in int32.
    check_int32_indexing(op, H * W, _block(H * W), image=image, flow=flow, texture=texture, mask=mask, output=out)
    out.copy_(image)
    tex, msk = (texture, mask) if texture is not None else (flow, flow)
    for n, t in enumerate(values):
        x0, x1, y0, y1 = _footprint_box(t, h, w, H, W)
        total = (x1 - x0) * (y1 - y0)
        _launch(wrap_triton(_theta_forward_kernel), total if C else 0, image, flow, tex, msk, out, coef,
                *_strides(image), *_strides(flow), *_strides(tex), *_strides(msk, False), *_strides(out),
                n, C, H, W, h, w, x0, x1 - x0, y0, total, BLEND=texture is not None,
                BORDER=padding_mode == "border", F64=flow.dtype == torch.float64, U8=image.dtype == torch.uint8,
                CUBIC=mode == "bicubic")
    return out


def _backward(op: str, grad_output: Tensor, image: Tensor, flow: Tensor, texture: Tensor | None,
              mask: Tensor | None, theta: Tensor, padding_mode: str, mode: str,
              need: Sequence[bool]) -> tuple[Tensor, ...]:
    checks.check_theta_args(op, image, flow, texture, mask, theta, padding_mode, allow_uint8=False, mode=mode)
    checks.check_grad_output(op, grad_output, image)
    blend = texture is not None
    inputs = (image, flow, texture, mask) if blend else (image, flow)
    need = [bool(b) for b in need[:len(inputs)]]
    N, C, H, W = image.shape
    h, w = flow.shape[2:]
    K = 3 + C
    total = N * H * W
    coef, values = _coefficients(op, theta, image)
    acc_dtype = torch.float64 if image.dtype == torch.float64 else torch.float32
    if not values or total * C == 0 or not any(need):
        return tuple(torch.zeros_like(t) if wanted else image.new_empty((0,)) for t, wanted in zip(inputs, need))
    # The batch index and the records' slots are int64; offsets within an image int32.
    check_int32_indexing(op, total, _block(total), per_item=True, grad_output=grad_output, image=image, flow=flow,
                         texture=texture, mask=mask)
    need_grid = any(need[1:])
    dev = image.device
    empty = image.new_empty((0,))
    taps = TAPS[mode]  # image records per pixel
    img_index = torch.zeros(total * taps, dtype=torch.int64, device=dev) if need[0] else empty
    img_value = torch.zeros(total * taps, C, dtype=acc_dtype, device=dev) if need[0] else empty
    grid_index = torch.zeros(total * 4, dtype=torch.int64, device=dev) if need_grid else empty
    grid_value = torch.zeros(total * 4, K, dtype=acc_dtype, device=dev) if need_grid else empty
    tex, msk = (texture, mask) if blend else (flow, flow)
    _launch(wrap_triton(_theta_backward_kernel), total, grad_output, image, flow, tex, msk, coef,
            img_index, img_value, grid_index, grid_value,
            *_strides(grad_output), *_strides(image), *_strides(flow), *_strides(tex), *_strides(msk, False),
            C, K, H, W, h, w, total, BLEND=blend, BORDER=padding_mode == "border", F64=image.dtype == torch.float64,
            NEED_IMAGE=need[0], NEED_FLOW=need[1], NEED_MASK=blend and need[3], NEED_TEXTURE=blend and need[2],
            CUBIC=mode == "bicubic")
    out: list[Tensor] = []
    fmt = torch._prims_common.suggest_memory_format(image)
    if need[0]:
        acc = torch.zeros(total, C, dtype=acc_dtype, device=dev).index_put_((img_index,), img_value, accumulate=True)
        out.append(acc.view(N, H, W, C).permute(0, 3, 1, 2).to(image.dtype).contiguous(memory_format=fmt))
    else:
        out.append(image.new_empty((0,)))
    grid = None
    if need_grid:
        grid = torch.zeros(N * h * w, K, dtype=acc_dtype, device=dev).index_put_((grid_index,), grid_value,
                                                                                  accumulate=True)
        grid = grid.view(N, h, w, K).permute(0, 3, 1, 2)
    for i, (lo, k) in enumerate(((0, 2), (3, C), (2, 1))[:len(inputs) - 1]):
        if need[i + 1]:
            out.append(grid[:, lo:lo + k].to(image.dtype).contiguous(
                memory_format=torch._prims_common.suggest_memory_format(inputs[i + 1])))
        else:
            out.append(image.new_empty((0,)))
    return tuple(out)


# --- the ops -------------------------------------------------------------------------------------

@triton_op("fastwarp::triton_warp_theta", mutates_args=())
def warp_theta(image: Tensor, flow: Tensor, theta: Tensor, padding_mode: str = "border",
               mode: str = "bilinear") -> Tensor:
    """Triton kernel of :func:`fastwarp.warp` with ``theta`` (same arguments, result and errors)."""
    return _forward("fastwarp.warp", image, flow, None, None, theta, padding_mode, mode)


@triton_op("fastwarp::triton_warp_blend_theta", mutates_args=())
def warp_blend_theta(image: Tensor, flow: Tensor, texture: Tensor, mask: Tensor, theta: Tensor,
                     padding_mode: str = "border", mode: str = "bilinear") -> Tensor:
    """Triton kernel of :func:`fastwarp.warp_blend` with ``theta``."""
    return _forward("fastwarp.warp_blend", image, flow, texture, mask, theta, padding_mode, mode)


@triton_op("fastwarp::triton_warp_theta_backward", mutates_args=())
def warp_theta_backward(grad_output: Tensor, image: Tensor, flow: Tensor, theta: Tensor, padding_mode: str,
                        mode: str, output_mask: Sequence[bool]) -> tuple[Tensor, Tensor]:
    """Gradients (image, flow) of :func:`warp_theta`; those not in ``output_mask`` are empty."""
    return _backward("fastwarp.warp_backward", grad_output, image, flow, None, None, theta, padding_mode, mode,
                     output_mask)  # type: ignore[return-value]


@triton_op("fastwarp::triton_warp_blend_theta_backward", mutates_args=())
def warp_blend_theta_backward(grad_output: Tensor, image: Tensor, flow: Tensor, texture: Tensor, mask: Tensor,
                              theta: Tensor, padding_mode: str, mode: str,
                              output_mask: Sequence[bool]) -> tuple[Tensor, Tensor, Tensor, Tensor]:
    """Gradients (image, flow, texture, mask) of :func:`warp_blend_theta`."""
    return _backward("fastwarp.warp_blend_backward", grad_output, image, flow, texture, mask, theta, padding_mode,
                     mode, output_mask)  # type: ignore[return-value]


keep_opaque_when_interpreted(warp_theta, warp_blend_theta, warp_theta_backward, warp_blend_theta_backward)

register_op_autograd(warp_theta, warp_theta_backward, no_grad_tensors=1)
register_op_autograd(warp_blend_theta, warp_blend_theta_backward, no_grad_tensors=1)
register_op_autocast("fastwarp::triton_warp_theta")
register_op_autocast("fastwarp::triton_warp_blend_theta")
