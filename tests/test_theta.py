"""The frame-space composite: ``theta`` for fastwarp.warp and fastwarp.warp_blend
(docs/design.md, "Frame-space composite"), every backend (CPU C++, CUDA, Triton, the
pure-PyTorch reference) against a float64 reference, and that reference against a naive
per-pixel loop written from the contract's words."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

import fastwarp
from fastwarp.ops import reference
from op_helpers import backends, outputs_with_and_without_simd, with_layout

OPS = ("warp", "warp_blend")


def similarity(N: int, size: tuple[int, int], grid: tuple[int, int], scale: float, angle: float,
               centre: tuple[float, float], dtype=torch.float64) -> torch.Tensor:
    """theta [N, 2, 3] of a similarity transform placing the grid's centre at ``centre``
    (image pixels), rotated by ``angle`` (+0.4 rad per image), image px -> grid px scaled by
    ``scale``."""
    h, w = grid
    rows = []
    for n in range(N):
        c, s = math.cos(angle + 0.4 * n), math.sin(angle + 0.4 * n)
        L = np.array([[c, -s], [s, c]]) * scale
        t = np.array([(w - 1) / 2, (h - 1) / 2]) - L @ np.array(centre)
        rows.append(np.concatenate([L, t[:, None]], 1))
    return torch.tensor(np.stack(rows), dtype=dtype)


def inputs(N, C, H, W, h, w, dtype=torch.float64, device="cpu", seed=0, flow_scale=2.0):
    g = torch.Generator().manual_seed(seed)
    r = lambda *s: torch.rand(*s, generator=g, dtype=torch.float64)  # noqa: E731
    image, texture, mask = r(N, C, H, W) * 2 - 1, r(N, C, h, w) * 2 - 1, r(N, 1, h, w)
    flow = (torch.randn(N, 2, h, w, generator=g, dtype=torch.float64) * flow_scale)
    return [t.to(dtype=dtype, device=device) for t in (image, flow, texture, mask)]


def args_of(op, image, flow, texture, mask):
    return (image, flow) if op == "warp" else (image, flow, texture, mask)


# --- the reference against the contract, pixel by pixel --------------------------------------

def _naive(image, flow, texture, mask, theta, padding_mode):
    """The contract's words as loops (float64, numpy): no grid_sample anywhere."""
    N, C, H, W = image.shape
    h, w = flow.shape[2:]
    out = image.copy()

    def grid_sample(plane, u, v):
        u = min(max(u, 0.0), w - 1.0)
        v = min(max(v, 0.0), h - 1.0)
        x0, y0 = int(math.floor(u)), int(math.floor(v))
        x1, y1 = min(x0 + 1, w - 1), min(y0 + 1, h - 1)
        fx, fy = u - x0, v - y0
        return ((1 - fy) * ((1 - fx) * plane[y0, x0] + fx * plane[y0, x1])
                + fy * ((1 - fx) * plane[y1, x0] + fx * plane[y1, x1]))

    def bilinear(plane, x, y):
        if padding_mode == "border":
            x, y = min(max(x, 0.0), W - 1.0), min(max(y, 0.0), H - 1.0)
        x0, y0 = int(math.floor(x)), int(math.floor(y))
        total = 0.0
        for yy, wy in ((y0, 1 - (y - y0)), (y0 + 1, y - y0)):
            for xx, wx in ((x0, 1 - (x - x0)), (x0 + 1, x - x0)):
                if 0 <= xx < W and 0 <= yy < H:
                    total += wy * wx * plane[yy, xx]
        return total

    for n in range(N):
        t = theta[n]
        Linv = np.linalg.inv(t[:, :2])
        for y in range(H):
            for x in range(W):
                u, v = t[0, 0] * x + t[0, 1] * y + t[0, 2], t[1, 0] * x + t[1, 1] * y + t[1, 2]
                if not (-0.5 <= u <= w - 0.5 and -0.5 <= v <= h - 0.5):
                    continue
                f = np.array([grid_sample(flow[n, 0], u, v), grid_sample(flow[n, 1], u, v)])
                dx, dy = Linv @ f
                m = grid_sample(mask[n, 0], u, v) if mask is not None else 1.0
                for c in range(C):
                    val = bilinear(image[n, c], x + dx, y + dy)
                    if texture is not None:
                        val = m * val + (1 - m) * grid_sample(texture[n, c], u, v)
                    out[n, c, y, x] = val
    return out


@pytest.mark.parametrize("padding_mode", ["border", "zeros"])
@pytest.mark.parametrize("op", OPS)
def test_reference_matches_the_contract_pixel_by_pixel(op, padding_mode):
    image, flow, texture, mask = inputs(2, 2, 11, 13, 5, 4)
    theta = similarity(2, (11, 13), (5, 4), 0.45, 0.3, (7.0, 4.0))  # partly outside the image
    got = getattr(reference, op)(*args_of(op, image, flow, texture, mask), padding_mode=padding_mode, theta=theta)
    want = _naive(image.numpy(), flow.numpy(), texture.numpy() if op == "warp_blend" else None,
                  mask.numpy() if op == "warp_blend" else None, theta.numpy(), padding_mode)
    np.testing.assert_allclose(got.numpy(), want, rtol=0, atol=1e-12)
    inside = reference.footprint(theta, (5, 4), (11, 13)).expand_as(image)
    assert 0 < int(inside.sum()) < inside.numel()  # the case has both kinds of pixel


# --- every backend against the reference -------------------------------------------------------

CASES = [  # (N, C, H, W, h, w, scale, angle, centre): rotated, scaled, partly outside, odd sizes
    (2, 3, 23, 31, 9, 7, 0.42, 0.5, (12.0, 10.0)),
    (1, 1, 17, 29, 6, 6, 0.25, -1.1, (26.0, 3.0)),
    (1, 4, 9, 8, 16, 12, 1.6, 0.0, (4.0, 4.5)),   # a grid finer than the image
]


@pytest.mark.parametrize("layout", ["contiguous", "channels_last"])
@pytest.mark.parametrize("padding_mode", ["border", "zeros"])
@pytest.mark.parametrize("case", CASES, ids=["rotated", "corner", "upscaled"])
@pytest.mark.parametrize("op", OPS)
@pytest.mark.parametrize("backend", backends())
def test_forward_matches_reference(backend, op, case, padding_mode, layout):
    N, C, H, W, h, w, scale, angle, centre = case
    image, flow, texture, mask = inputs(N, C, H, W, h, w)
    theta = similarity(N, (H, W), (h, w), scale, angle, centre)
    want = getattr(reference, op)(*args_of(op, image, flow, texture, mask), padding_mode=padding_mode, theta=theta)
    for dtype, tol in ((torch.float64, 1e-12), (torch.float32, 2e-5)):
        dev = [with_layout(t.to(dtype=dtype, device=backend.device), layout) for t in (image, flow, texture, mask)]
        out = backend.fn(op)(*args_of(op, *dev), padding_mode=padding_mode, theta=theta.to(backend.device))
        assert out.dtype == dtype and out.shape == image.shape
        if layout == "channels_last":
            assert out.is_contiguous(memory_format=torch.channels_last)
        torch.testing.assert_close(out.double().cpu(), want, rtol=0, atol=tol)


@pytest.mark.parametrize("op", OPS)
@pytest.mark.parametrize("backend", backends())
def test_outside_the_footprint_is_the_image_bit_for_bit(backend, op):
    image, flow, texture, mask = inputs(1, 3, 40, 50, 8, 8, flow_scale=30.0)  # wild flow inside
    theta = similarity(1, (40, 50), (8, 8), 0.5, 0.7, (20.0, 18.0))
    outside = ~reference.footprint(theta, (8, 8), (40, 50)).expand_as(image)
    for dtype in (torch.float32, torch.float16, torch.float64):
        dev = [t.to(dtype=dtype, device=backend.device) for t in (image, flow, texture, mask)]
        out = backend.fn(op)(*args_of(op, *dev), theta=theta.to(backend.device)).cpu()
        assert torch.equal(out[outside], dev[0].cpu()[outside]), dtype
        assert not torch.equal(out, dev[0].cpu())


@pytest.mark.parametrize("backend", backends())
def test_the_scale_map_is_the_op_without_theta(backend):
    """theta = [[w/W, 0, 0.5 w/W - 0.5], [0, h/H, 0.5 h/H - 0.5]] is today's
    resolution-independent op (F.interpolate upsampling, flow scaled by W/w, H/h)."""
    N, C, H, W, h, w = 2, 3, 37, 29, 9, 12
    image, flow, texture, mask = [t.to(backend.device) for t in inputs(N, C, H, W, h, w)]
    theta = torch.tensor([[w / W, 0, 0.5 * w / W - 0.5], [0, h / H, 0.5 * h / H - 0.5]],
                         dtype=torch.float64).expand(N, 2, 3).to(backend.device)
    for padding_mode in ("border", "zeros"):
        a = backend.fn("warp_blend")(image, flow, texture, mask, padding_mode=padding_mode)
        b = backend.fn("warp_blend")(image, flow, texture, mask, padding_mode=padding_mode, theta=theta)
        torch.testing.assert_close(b, a, rtol=0, atol=1e-12)


@pytest.mark.parametrize("backend", backends())
def test_zero_flow_and_mask_one_is_the_identity(backend):
    """No edit means no change: flow 0 and mask 1 give the image back bit for bit, inside the
    footprint too (float32 and a uint8 frame)."""
    image, _, texture, _ = inputs(1, 3, 30, 40, 8, 8)
    theta = similarity(1, (30, 40), (8, 8), 0.3, 0.2, (20.0, 15.0))
    zeros, ones = torch.zeros(1, 2, 8, 8), torch.ones(1, 1, 8, 8)
    f32 = image.float().to(backend.device)
    out = backend.fn("warp_blend")(f32, zeros.to(f32), texture.float().to(f32.device), ones.to(f32), theta=theta.to(f32.device))
    assert torch.equal(out, f32)
    frame = torch.randint(0, 256, (30, 40, 3), dtype=torch.uint8, generator=torch.Generator().manual_seed(3))
    view = frame.to(backend.device).permute(2, 0, 1)[None]
    out = backend.fn("warp_blend")(view, zeros.to(backend.device), texture.float().to(backend.device) * 255,
                                   ones.to(backend.device), theta=theta.float().to(backend.device))
    assert torch.equal(out, view)


def test_a_zero_flow_reads_each_pixel_itself_in_either_mode():
    """A region blend (fastwarp.region_paint: zero flow, texture and mask placed by theta) reads
    each frame pixel at its own centre, where bilinear (1, 0) and bicubic (0, 1, 0, 0) taps both
    give the pixel itself: the two modes are the same bit for bit, so the painter runs the cheaper
    bilinear kernel (uint8 frames and float32, as the editor's 16-bit path; CPU kernel)."""
    g = torch.Generator().manual_seed(11)
    H, W, h, w = 60, 80, 16, 32
    theta = similarity(1, (H, W), (h, w), 0.45, 0.3, (41.3, 28.7)).float()
    zero = torch.zeros(1, 2, h, w)
    texture, mask = torch.rand(1, 3, h, w, generator=g) * 255, torch.rand(1, 1, h, w, generator=g)
    frame = torch.randint(0, 256, (H, W, 3), dtype=torch.uint8, generator=g).permute(2, 0, 1)[None]
    for image in (frame, frame.float() * 257.0):
        a = fastwarp.warp_blend(image, zero, texture, mask, theta=theta, mode="bilinear")
        b = fastwarp.warp_blend(image, zero, texture, mask, theta=theta, mode="bicubic")
        assert not torch.equal(a, image)  # the texture was blended somewhere
        assert torch.equal(a, b)


# --- uint8 frames ----------------------------------------------------------------------------

@pytest.mark.parametrize("op", OPS)
@pytest.mark.parametrize("backend", backends())
def test_uint8_frame_matches_the_float_path_within_one_grey_level(backend, op):
    g = torch.Generator().manual_seed(5)
    H, W, h, w = 48, 64, 10, 9
    frame = torch.randint(0, 256, (H, W, 3), dtype=torch.uint8, generator=g).to(backend.device)
    view = frame.permute(2, 0, 1)[None]  # an OpenCV frame as channels_last [1, 3, H, W]
    assert view.is_contiguous(memory_format=torch.channels_last)
    flow = (torch.randn(1, 2, h, w, generator=g) * 3).to(backend.device)
    texture = (torch.rand(1, 3, h, w, generator=g) * 300 - 20).to(backend.device)  # beyond 0..255: clamped
    mask = torch.rand(1, 1, h, w, generator=g).to(backend.device)
    theta = similarity(1, (H, W), (h, w), 0.3, 0.25, (30.0, 20.0)).float().to(backend.device)
    args = args_of(op, view, flow, texture, mask)
    out = backend.fn(op)(*args, theta=theta)
    assert out.dtype == torch.uint8 and out.shape == view.shape and out.stride() == view.stride()
    as_float = backend.fn(op)(view.float(), *args[1:], theta=theta)
    diff = (out.int() - as_float.clamp(0, 255).round().int()).abs()
    assert int(diff.max()) <= 1
    assert float((diff > 0).float().mean()) < 0.01  # ties and float rounding only
    ref = getattr(reference, op)(view.cpu().double(), *[a.cpu().double() for a in args[1:]], theta=theta.cpu().double())
    assert int((out.cpu().int() - ref.clamp(0, 255).round().int()).abs().max()) <= 1
    assert torch.equal(frame, view.permute(0, 2, 3, 1)[0])  # the input frame was not written


@pytest.mark.parametrize("backend", backends())
def test_uint8_is_refused_under_autograd(backend):
    view = torch.zeros(1, 3, 8, 8, dtype=torch.uint8, device=backend.device)
    flow = torch.zeros(1, 2, 4, 4, device=backend.device, requires_grad=True)
    theta = torch.tensor([[[0.5, 0, 0], [0, 0.5, 0]]], device=backend.device)
    with pytest.raises(RuntimeError, match="uint8 image is for inference only, but autograd records flow"):
        backend.fn("warp")(view, flow, theta=theta)
    with torch.no_grad():
        assert torch.equal(backend.fn("warp")(view, flow, theta=theta), view)
    with pytest.raises(TypeError, match="image must be a floating-point tensor"):
        backend.fn("warp")(view, flow.detach())  # uint8 only with theta


# --- gradients -------------------------------------------------------------------------------

@pytest.mark.parametrize("padding_mode", ["border", "zeros"])
@pytest.mark.parametrize("op", OPS)
@pytest.mark.parametrize("backend", backends())
def test_gradcheck(backend, op, padding_mode):
    image, flow, texture, mask = inputs(1, 2, 9, 10, 5, 4, seed=2, flow_scale=0.8)
    theta = similarity(1, (9, 10), (5, 4), 0.5, 0.35, (5.0, 4.0)).to(backend.device)
    tensors = [t.to(backend.device).requires_grad_() for t in args_of(op, image, flow, texture, mask)]
    fn = lambda *a: backend.fn(op)(*a, padding_mode=padding_mode, theta=theta)  # noqa: E731
    assert torch.autograd.gradcheck(fn, tensors, fast_mode=backend.interpreted)


@pytest.mark.parametrize("op", OPS)
@pytest.mark.parametrize("backend", backends())
def test_backward_matches_reference_and_theta_gets_none(backend, op):
    N, C, H, W, h, w = 2, 3, 19, 23, 7, 6
    image, flow, texture, mask = inputs(N, C, H, W, h, w, seed=4)
    theta = similarity(N, (H, W), (h, w), 0.4, -0.3, (11.0, 9.0))
    go = torch.randn(N, C, H, W, dtype=torch.float64, generator=torch.Generator().manual_seed(1))
    ref_in = [t.clone().requires_grad_() for t in args_of(op, image, flow, texture, mask)]
    want = torch.autograd.grad(getattr(reference, op)(*ref_in, theta=theta), ref_in, go)
    for dtype, tol in ((torch.float64, 1e-10), (torch.float32, 1e-4)):
        dev = [t.to(dtype=dtype, device=backend.device).requires_grad_() for t in args_of(op, image, flow, texture, mask)]
        th = theta.to(dtype=dtype, device=backend.device).requires_grad_()
        out = backend.fn(op)(*dev, theta=th)
        got = torch.autograd.grad(out, dev, go.to(dtype=dtype, device=backend.device))
        for g, w_ in zip(got, want):
            torch.testing.assert_close(g.double().cpu(), w_, rtol=tol, atol=tol)
        out2 = backend.fn(op)(*dev, theta=th)
        out2.backward(go.to(dtype=dtype, device=backend.device))
        assert th.grad is None


@pytest.mark.parametrize("backend", backends())
def test_empty_batch_and_zero_channels(backend):
    theta = torch.zeros(0, 2, 3, dtype=torch.float64, device=backend.device)
    out = backend.fn("warp_blend")(*[t.to(backend.device) for t in inputs(0, 3, 5, 6, 3, 3)], theta=theta)
    assert out.shape == (0, 3, 5, 6)
    image, flow, texture, mask = [t.to(backend.device) for t in inputs(1, 0, 5, 6, 3, 3)]
    theta = similarity(1, (5, 6), (3, 3), 0.5, 0.0, (3.0, 2.0)).to(backend.device)
    assert backend.fn("warp_blend")(image, flow, texture, mask, theta=theta).shape == (1, 0, 5, 6)


# --- registration: opcheck, torch.compile -----------------------------------------------------

@pytest.mark.parametrize("name", ["warp_theta", "warp_blend_theta"])
def test_opcheck(name):
    image, flow, texture, mask = inputs(1, 3, 12, 14, 5, 6)
    theta = similarity(1, (12, 14), (5, 6), 0.4, 0.2, (7.0, 6.0))
    tensors = [image, flow] + ([texture, mask] if name == "warp_blend_theta" else [])
    args = [t.clone().requires_grad_() for t in tensors] + [theta, "zeros"]
    torch.library.opcheck(getattr(torch.ops.fastwarp, name).default, args)
    frame = torch.randint(0, 256, (12, 14, 3), dtype=torch.uint8).permute(2, 0, 1)[None]
    maps = [t.float() for t in tensors[1:]]
    torch.library.opcheck(getattr(torch.ops.fastwarp, name).default, [frame, *maps, theta.float(), "border"])


def test_torch_compile_fullgraph():
    image, flow, texture, mask = inputs(1, 3, 16, 20, 6, 6, dtype=torch.float32)
    theta = similarity(1, (16, 20), (6, 6), 0.4, 0.3, (10.0, 8.0), dtype=torch.float32)

    def f(image, flow, texture, mask, theta):
        return fastwarp.warp_blend(image, flow * 2, texture, mask, theta=theta) + 1

    compiled = torch.compile(f, fullgraph=True, backend="aot_eager")
    torch.testing.assert_close(compiled(image, flow, texture, mask, theta), f(image, flow, texture, mask, theta))


# --- bad theta -------------------------------------------------------------------------------

@pytest.mark.parametrize("backend", backends())
@pytest.mark.parametrize("bad, exc, message", [
    (lambda t: t[:, :, :2], ValueError, r"theta must have shape \[N, 2, 3\] = \[1, 2, 3\], got \[1, 2, 2\]"),
    (lambda t: t[0], ValueError, r"theta must have shape \[N, 2, 3\]"),
    (lambda t: t.expand(2, 2, 3), ValueError, r"theta must have shape \[N, 2, 3\] = \[1, 2, 3\], got \[2, 2, 3\]"),
    (lambda t: t.to(torch.int64), TypeError, r"theta.dtype must be the maps' dtype \(Float\) or float64, got Long"),
    (lambda t: t.half(), TypeError, r"theta.dtype must be the maps' dtype \(Float\) or float64, got Half"),
    (lambda t: torch.tensor([[[1.0, 2.0, 0.0], [0.5, 1.0, 0.0]]]), ValueError,
     r"theta\[0\] must be finite with an invertible linear part theta\[0, :, :2\] \(determinant 0\)"),
    (lambda t: torch.tensor([[[float("nan"), 0.0, 0.0], [0.0, 1.0, 0.0]]]), ValueError,
     r"theta\[0\] must be finite"),
])
def test_bad_theta_raises_naming_it(backend, bad, exc, message):
    image, flow, texture, mask = [t.float().to(backend.device) for t in inputs(1, 3, 8, 8, 4, 4)]
    theta = bad(torch.tensor([[[0.5, 0.0, 0.0], [0.0, 0.5, 0.0]]])).to(backend.device)
    with pytest.raises(exc, match="fastwarp.warp_blend: " + message):
        backend.fn("warp_blend")(image, flow, texture, mask, theta=theta)


def test_theta_on_another_device_is_refused():
    image, flow, texture, mask = [t.float() for t in inputs(1, 3, 8, 8, 4, 4)]
    theta = torch.empty(1, 2, 3, device="meta")
    with pytest.raises(ValueError, match=r"fastwarp.warp_blend: theta must be on the image's device \(cpu\), got meta"):
        fastwarp.warp_blend(image, flow, texture, mask, theta=theta)


@pytest.mark.parametrize("backend", backends())
def test_maps_of_a_uint8_frame_must_be_float32(backend):
    view = torch.zeros(1, 3, 8, 8, dtype=torch.uint8, device=backend.device)
    theta = torch.tensor([[[0.5, 0, 0], [0, 0.5, 0]]], device=backend.device)
    with pytest.raises(TypeError, match=r"flow.dtype must be float32 with a uint8 image \(Float\), got Double"):
        backend.fn("warp")(view, torch.zeros(1, 2, 4, 4, dtype=torch.float64, device=backend.device), theta=theta)


# --- the CPU's AVX2 row kernel against its scalar path ------------------------------------------

_SIMD_SCRIPT = r"""
import sys, torch, fastwarp
from test_theta import inputs, similarity
cases = []
for N, C, H, W, h, w, scale, angle, centre in [(2, 3, 23, 31, 9, 7, 0.42, 0.5, (12.0, 10.0)),
                                               (1, 3, 61, 83, 13, 11, 0.3, 0.2, (40.0, 30.0)),
                                               (1, 4, 9, 8, 16, 12, 1.6, 0.0, (4.0, 4.5)),
                                               (1, 3, 2, 3, 4, 4, 0.9, 0.3, (1.0, 0.5))]:
    image, flow, texture, mask = inputs(N, C, H, W, h, w, dtype=torch.float32, flow_scale=4.0)
    flow[:, :, 0, 0] = float("nan")
    theta = similarity(N, (H, W), (h, w), scale, angle, centre).float()
    out = []
    for im in (image, image.contiguous(memory_format=torch.channels_last)):
        for pm in ("border", "zeros"):
            out += [fastwarp.warp_blend(im, flow, texture, mask, theta=theta, padding_mode=pm),
                    fastwarp.warp(im, flow, theta=theta, padding_mode=pm)]
    frame = torch.randint(0, 256, (N, H, W, C), dtype=torch.uint8, generator=torch.Generator().manual_seed(1))
    out.append(fastwarp.warp_blend(frame.permute(0, 3, 1, 2), flow, texture * 300, mask, theta=theta))
    cases.append(out)
torch.save(cases, sys.argv[1])
"""


def test_cpu_vectorised_and_scalar_composites_are_identical(tmp_path):
    """The composite's AVX2 row kernel (float32 maps, float32 or uint8 images, border
    padding) computes the scalar path's operations in its order: the outputs are equal bit
    for bit, NaN flow, frames and tiny images included (FASTWARP_CPU_SIMD=0 is the scalar
    path; on a CPU without AVX2 both runs are scalar)."""
    for case_simd, case_scalar in zip(*outputs_with_and_without_simd(_SIMD_SCRIPT, tmp_path)):
        for a, b in zip(case_simd, case_scalar):
            assert a.dtype == b.dtype and torch.equal(a.isnan(), b.isnan())
            assert torch.equal(torch.nan_to_num(a), torch.nan_to_num(b))
