"""Triton kernels of :func:`fastwarp.ops.mesh_flow` (docs/design.md, "mesh_flow"), exposed as
``fastwarp::triton_mesh_flow`` and ``fastwarp::triton_mesh_flow_backward``: the signatures of
the C++ ops and the math of ``csrc/mesh_flow.h`` (``_edge_functions`` is
``MeshTriangle::make`` and ``barycentric``; ``_vertex`` reads ``MeshInputs``).

Forward: one program per block of pixels of one image, looping over the triangles in tiles,
in index order; a pixel keeps the lowest index of the triangles that hold it, then gets that
triangle's flow ``-sum_k b_k d_k``. Backward, in two launches that add with ``tl.atomic_add`` (float32 order, so float32
results vary in the last bits from run to run): per pixel, ``b_j g`` into its triangle's sums
S ``[N, T, 6]``; per triangle, ``-A^T S_j`` (and ``+ S_j`` for the source vertices) into its
three vertices' gradients.

On a GPU Triton may fuse the edge functions' multiply-adds (its default), unlike the other
backends: a pixel within rounding of an edge can then take the neighbouring triangle. In the
interpreter (``TRITON_INTERPRET=1``) the arithmetic is the other backends' exactly.
"""

from __future__ import annotations

from typing import Sequence

import torch
import triton
import triton.language as tl
from torch import Tensor
from torch._subclasses.fake_tensor import is_fake
from torch.library import triton_op, wrap_triton

from . import checks
from .registration import mesh_flow_outputs, register_mesh_flow_autograd, register_op_autocast
from .triton_backend import INTERPRET, _block, check_int32_indexing, keep_opaque_when_interpreted

__all__ = ["mesh_flow", "mesh_flow_backward"]

# Twice a triangle's area below which it is degenerate (fastwarp.ops.reference.MESH_MIN_AREA2).
_MIN_AREA2 = {torch.float32: 1e-8, torch.float64: 1e-12}

# The forward's tile on a GPU: pixels x triangles per step (not yet tuned on a GPU).
_GPU_PIXELS = 128
_GPU_TRIANGLES = 16


@triton.jit
def _div(num, den, F64: tl.constexpr):
    """``num / den`` correctly rounded (float32 ``/`` is approximate on GPUs)."""
    if F64:
        return num / den
    else:
        return tl.div_rn(num, den)


@triton.jit
def _vertex(vertices, displacement, base, i, ok):
    """Source (lx, ly), displacement (dx, dy) and destination (x, y) of vertices ``i`` of image
    ``base // (2 V)`` (``base`` = n * V * 2)."""
    lx = tl.load(vertices + base + 2 * i, mask=ok, other=0.0)
    ly = tl.load(vertices + base + 2 * i + 1, mask=ok, other=0.0)
    dx = tl.load(displacement + base + 2 * i, mask=ok, other=0.0)
    dy = tl.load(displacement + base + 2 * i + 1, mask=ok, other=0.0)
    return lx, ly, dx, dy, lx + dx, ly + dy


@triton.jit
def _corners(triangles, t, ok):
    return (tl.load(triangles + 3 * t, mask=ok, other=0), tl.load(triangles + 3 * t + 1, mask=ok, other=0),
            tl.load(triangles + 3 * t + 2, mask=ok, other=0))


@triton.jit
def _area2(x0, y0, x1, y1, x2, y2, limits, zero):
    """Twice the signed area, and whether the triangle is valid (not degenerate, finite), as
    blocks shaped like ``zero`` (the interpreter cannot combine scalar and block masks)."""
    area2 = zero + ((x1 - x0) * (y2 - y0) - (x2 - x0) * (y1 - y0))
    a = tl.abs(area2)
    return area2, (a >= tl.load(limits)) & (a <= tl.load(limits + 1))


@triton.jit
def _barycentric(x0, y0, x1, y1, x2, y2, area2, px, py, F64: tl.constexpr):
    w0 = (x1 - px) * (y2 - py) - (x2 - px) * (y1 - py)
    w1 = (x2 - px) * (y0 - py) - (x0 - px) * (y2 - py)
    w2 = (x0 - px) * (y1 - py) - (x1 - px) * (y0 - py)
    return _div(w0, area2, F64), _div(w1, area2, F64), _div(w2, area2, F64)


@triton.jit
def _mesh_flow_forward_kernel(vertices, displacement, triangles, limits, flow, index, V, T, H, W,
                              F64: tl.constexpr, BLOCK: tl.constexpr, TRIS: tl.constexpr):
    """Pixels of image ``program_id(1)``: the lowest-index triangle holding each (tiles of
    ``BLOCK`` pixels x ``TRIS`` triangles, in index order), then its flow ``-sum_k b_k d_k``."""
    n = tl.program_id(1).to(tl.int64)
    q = tl.program_id(0) * BLOCK + tl.arange(0, BLOCK)
    ok = q < H * W
    zero = tl.zeros([BLOCK], dtype=flow.dtype.element_ty)
    px = zero + (q % W)
    py = zero + (q // W)
    base = n * V * 2
    zero_t = tl.zeros([TRIS], dtype=flow.dtype.element_ty)
    best = tl.full([BLOCK], T, tl.int32)  # T: none yet
    for start in range(0, T, TRIS):
        t = start + tl.arange(0, TRIS)
        live = t < T
        i0, i1, i2 = _corners(triangles, t, live)
        _a, _b, _c, _d, x0, y0 = _vertex(vertices, displacement, base, i0, live)
        _e, _f, _g, _h, x1, y1 = _vertex(vertices, displacement, base, i1, live)
        _i, _j, _k, _l, x2, y2 = _vertex(vertices, displacement, base, i2, live)
        area2, valid = _area2(x0, y0, x1, y1, x2, y2, limits, zero_t)
        valid = valid & live
        xmin = tl.minimum(tl.minimum(x0, x1), x2)[None, :]
        xmax = tl.maximum(tl.maximum(x0, x1), x2)[None, :]
        ymin = tl.minimum(tl.minimum(y0, y1), y2)[None, :]
        ymax = tl.maximum(tl.maximum(y0, y1), y2)[None, :]
        X, Y = px[:, None], py[:, None]
        b0, b1, b2 = _barycentric(x0[None, :], y0[None, :], x1[None, :], y1[None, :], x2[None, :], y2[None, :],
                                  tl.where(valid, area2, 1.0)[None, :], X, Y, F64)
        inside = ((X >= xmin) & (X <= xmax) & (Y >= ymin) & (Y <= ymax) & valid[None, :]
                  & (b0 >= 0.0) & (b1 >= 0.0) & (b2 >= 0.0))
        best = tl.minimum(best, tl.min(tl.where(inside, t[None, :], T), axis=1))
    has = ok & (best < T)
    t = tl.where(has, best, 0).to(tl.int64)
    i0, i1, i2 = _corners(triangles, t, has)
    _a, _b, dx0, dy0, x0, y0 = _vertex(vertices, displacement, base, i0, has)
    _c, _d, dx1, dy1, x1, y1 = _vertex(vertices, displacement, base, i1, has)
    _e, _f, dx2, dy2, x2, y2 = _vertex(vertices, displacement, base, i2, has)
    area2, _v = _area2(x0, y0, x1, y1, x2, y2, limits, zero)
    b0, b1, b2 = _barycentric(x0, y0, x1, y1, x2, y2, tl.where(has, area2, 1.0), px, py, F64)
    tl.store(flow + n * 2 * H * W + q, tl.where(has, -(b0 * dx0 + b1 * dx1 + b2 * dx2), 0.0), mask=ok)
    tl.store(flow + n * 2 * H * W + H * W + q, tl.where(has, -(b0 * dy0 + b1 * dy1 + b2 * dy2), 0.0), mask=ok)
    tl.store(index + n * H * W + q, tl.where(has, best, -1), mask=ok)


@triton.jit
def _mesh_flow_sums_kernel(grad_flow, vertices, displacement, triangles, limits, index, sums, V, T, H, W,
                           F64: tl.constexpr, BLOCK: tl.constexpr):
    """Pixels of image ``program_id(1)``: ``S[n, t, 2 j + c] += b_j g_c`` of each pixel's triangle t."""
    n = tl.program_id(1).to(tl.int64)
    q = tl.program_id(0) * BLOCK + tl.arange(0, BLOCK)
    ok = q < H * W
    t = tl.load(index + n * H * W + q, mask=ok, other=-1)
    has = ok & (t >= 0)
    t = tl.where(has, t, 0).to(tl.int64)
    zero = tl.zeros([BLOCK], dtype=vertices.dtype.element_ty)
    px = zero + (q % W)
    py = zero + (q // W)
    base = n * V * 2
    i0, i1, i2 = _corners(triangles, t, has)
    _a, _b, _c, _d, x0, y0 = _vertex(vertices, displacement, base, i0, has)
    _e, _f, _g, _h, x1, y1 = _vertex(vertices, displacement, base, i1, has)
    _i, _j, _k, _l, x2, y2 = _vertex(vertices, displacement, base, i2, has)
    area2, valid = _area2(x0, y0, x1, y1, x2, y2, limits, zero)
    has = has & valid  # only a triangle_index not made by the forward points at an invalid one
    b0, b1, b2 = _barycentric(x0, y0, x1, y1, x2, y2, tl.where(has, area2, 1.0), px, py, F64)
    gx = tl.load(grad_flow + n * 2 * H * W + q, mask=has, other=0.0).to(sums.dtype.element_ty)
    gy = tl.load(grad_flow + n * 2 * H * W + H * W + q, mask=has, other=0.0).to(sums.dtype.element_ty)
    s = sums + (n * T + t) * 6
    tl.atomic_add(s, b0 * gx, mask=has)
    tl.atomic_add(s + 1, b0 * gy, mask=has)
    tl.atomic_add(s + 2, b1 * gx, mask=has)
    tl.atomic_add(s + 3, b1 * gy, mask=has)
    tl.atomic_add(s + 4, b2 * gx, mask=has)
    tl.atomic_add(s + 5, b2 * gy, mask=has)


@triton.jit
def _vertex_grads(grad_vertices, grad_displacement, at, s, a00, a01, a10, a11, ok):
    """One corner's sums S_j (at ``s``): ``-A^T S_j`` into the displacement's gradient at
    element ``at``, ``-A^T S_j + S_j`` into the vertices'."""
    sx = tl.load(s, mask=ok, other=0.0)
    sy = tl.load(s + 1, mask=ok, other=0.0)
    gx = -(a00 * sx + a10 * sy)
    gy = -(a01 * sx + a11 * sy)
    tl.atomic_add(grad_displacement + at, gx, mask=ok)
    tl.atomic_add(grad_displacement + at + 1, gy, mask=ok)
    tl.atomic_add(grad_vertices + at, gx + sx, mask=ok)
    tl.atomic_add(grad_vertices + at + 1, gy + sy, mask=ok)


@triton.jit
def _mesh_flow_vertex_grads_kernel(vertices, displacement, triangles, limits, sums, grad_vertices,
                                   grad_displacement, V, T, total, BLOCK: tl.constexpr):
    """Triangles (n, t) of a block: ``-A^T S_j`` into the displacement's gradient at vertex
    t_j, ``-A^T S_j + S_j`` into the vertices'."""
    e = (tl.program_id(0) * BLOCK + tl.arange(0, BLOCK)).to(tl.int64)
    ok = e < total
    n = e // T
    t = e % T
    base = n * V * 2
    i0, i1, i2 = _corners(triangles, t, ok)
    lx0, ly0, _a, _b, x0, y0 = _vertex(vertices, displacement, base, i0, ok)
    lx1, ly1, _c, _d, x1, y1 = _vertex(vertices, displacement, base, i1, ok)
    lx2, ly2, _e, _f, x2, y2 = _vertex(vertices, displacement, base, i2, ok)
    area2, valid = _area2(x0, y0, x1, y1, x2, y2, limits, tl.zeros([BLOCK], dtype=vertices.dtype.element_ty))
    ok = ok & valid
    acc = sums.dtype.element_ty
    det = tl.where(ok, area2, 1.0).to(acc)
    # P = [L1 - L0, L2 - L0], E = [D1 - D0, D2 - D0] (columns), A = P E^-1 (csrc/mesh_flow.h).
    p00 = (lx1 - lx0).to(acc)
    p01 = (lx2 - lx0).to(acc)
    p10 = (ly1 - ly0).to(acc)
    p11 = (ly2 - ly0).to(acc)
    e00 = (x1 - x0).to(acc)
    e01 = (x2 - x0).to(acc)
    e10 = (y1 - y0).to(acc)
    e11 = (y2 - y0).to(acc)
    a00 = (p00 * e11 - p01 * e10) / det
    a01 = (p01 * e00 - p00 * e01) / det
    a10 = (p10 * e11 - p11 * e10) / det
    a11 = (p11 * e00 - p10 * e01) / det
    s = sums + e * 6
    _vertex_grads(grad_vertices, grad_displacement, base + 2 * i0, s, a00, a01, a10, a11, ok)
    _vertex_grads(grad_vertices, grad_displacement, base + 2 * i1, s + 2, a00, a01, a10, a11, ok)
    _vertex_grads(grad_vertices, grad_displacement, base + 2 * i2, s + 4, a00, a01, a10, a11, ok)


# --- host side ---------------------------------------------------------------------------------

def _runs(*tensors: Tensor) -> bool:
    """Whether kernels run: not on meta tensors, nor on fake ones in the interpreter (see
    triton_backend._launch)."""
    return not any(t.device.type == "meta" or (INTERPRET and is_fake(t)) for t in tensors)


def _limits(like: Tensor) -> Tensor:
    """(minimum |area2|, largest finite value) in the working precision, on the device."""
    return torch.tensor([_MIN_AREA2[like.dtype], torch.finfo(like.dtype).max], dtype=like.dtype, device=like.device)


def _forward(vertices: Tensor, displacement: Tensor, triangles: Tensor, size: Sequence[int]) -> tuple[Tensor, Tensor]:
    op = "fastwarp.mesh_flow"
    checks.check_mesh_flow_args(op, vertices, displacement, triangles, size)
    checks.check_mesh_flow_values(op, vertices, triangles)
    flow, index = mesh_flow_outputs(vertices, size)
    N, V = vertices.shape[:2]
    H, W = size
    if N == 0 or not _runs(vertices, displacement, triangles):
        return flow, index
    T = triangles.shape[0]
    if INTERPRET:  # the interpreter pays per operation: large tiles
        block, tris = min(2048, triton.next_power_of_2(H * W)), min(64, max(16, triton.next_power_of_2(T)))
    else:
        block, tris = _GPU_PIXELS, _GPU_TRIANGLES
    # The batch offset is int64; a pixel's index, offsets within one image's flow and the
    # triangles' offsets (the tiles' indices) are int32.
    check_int32_indexing(op, H * W, block, {"the largest offset within one image's flow": 2 * H * W - 1,
                                            "the largest triangle offset": 3 * (T + tris) - 1})
    wrap_triton(_mesh_flow_forward_kernel)[(triton.cdiv(H * W, block), N)](
        vertices.contiguous(), displacement.contiguous(), triangles.long().contiguous(), _limits(vertices), flow,
        index, V, T, H, W, F64=vertices.dtype == torch.float64, BLOCK=block, TRIS=tris)
    return flow, index


def _backward(grad_flow: Tensor, vertices: Tensor, displacement: Tensor, triangles: Tensor, triangle_index: Tensor,
              need: Sequence[bool]) -> tuple[Tensor, Tensor]:
    op = "fastwarp.mesh_flow_backward"
    checks.check_mesh_flow_backward_args(op, grad_flow, vertices, displacement, triangles, triangle_index)
    checks.check_mesh_flow_values(op, vertices, triangles, triangle_index)
    need = [bool(b) for b in need[:2]]
    N, V = vertices.shape[:2]
    T = triangles.shape[0]
    H, W = triangle_index.shape[1:]
    acc = torch.float64 if vertices.dtype == torch.float64 else torch.float32
    grad_v = torch.zeros((N, V, 2), dtype=acc, device=vertices.device)
    grad_d = torch.zeros((N, V, 2), dtype=acc, device=vertices.device)
    if N * T * H * W > 0 and any(need) and _runs(grad_flow, vertices, displacement, triangles, triangle_index):
        v, d, tri = vertices.contiguous(), displacement.contiguous(), triangles.long().contiguous()
        block = _block(H * W)
        check_int32_indexing(op, H * W, block, {"the largest offset within one image's flow": 2 * H * W - 1})
        limits = _limits(vertices)
        sums = torch.zeros((N, T, 6), dtype=acc, device=vertices.device)
        wrap_triton(_mesh_flow_sums_kernel)[(triton.cdiv(H * W, block), N)](
            grad_flow.contiguous(), v, d, tri, limits, triangle_index.contiguous(), sums, V, T, H, W,
            F64=vertices.dtype == torch.float64, BLOCK=block)
        block = _block(N * T)
        wrap_triton(_mesh_flow_vertex_grads_kernel)[(triton.cdiv(N * T, block),)](
            v, d, tri, limits, sums, grad_v, grad_d, V, T, N * T, BLOCK=block)
    # A gradient not asked for is an empty tensor of its own (the schema's outputs must not alias).
    return (grad_v.to(vertices.dtype) if need[0] else vertices.new_empty((0,)),
            grad_d.to(vertices.dtype) if need[1] else vertices.new_empty((0,)))


# --- the ops -------------------------------------------------------------------------------------

@triton_op("fastwarp::triton_mesh_flow", mutates_args=())
def mesh_flow(vertices: Tensor, displacement: Tensor, triangles: Tensor, size: Sequence[int]) -> tuple[Tensor, Tensor]:
    """Triton kernel of :func:`fastwarp.ops.mesh_flow` (same arguments, results and errors)."""
    return _forward(vertices, displacement, triangles, size)


@triton_op("fastwarp::triton_mesh_flow_backward", mutates_args=())
def mesh_flow_backward(grad_flow: Tensor, vertices: Tensor, displacement: Tensor, triangles: Tensor,
                       triangle_index: Tensor, output_mask: Sequence[bool]) -> tuple[Tensor, Tensor]:
    """Gradients (vertices, displacement) of :func:`mesh_flow`; those not in ``output_mask`` are empty."""
    return _backward(grad_flow, vertices, displacement, triangles, triangle_index, output_mask)


keep_opaque_when_interpreted(mesh_flow, mesh_flow_backward)
register_mesh_flow_autograd(mesh_flow, mesh_flow_backward)
register_op_autocast("fastwarp::triton_mesh_flow")
