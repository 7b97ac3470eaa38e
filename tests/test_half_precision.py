"""One accumulation rule for half precision on every backend (issue 13, item 5): float32
until the final store. With flow, texture and mask smaller than the image, each map
gradient is a sum (the upsampling adjoint) of per-pixel gradients; those must reach the sum
in float32, not rounded to float16/bfloat16 first.

The test compares each backend's float16/bfloat16 output and gradients with the reference
run in float64 on the same half inputs cast up, with a bound derived from the formats, not
measured on a machine. The inputs are dyadic with few bits (image multiples of 1/64,
grad_output and texture multiples of 1/4, mask in {0, 1/2, 1}, a 4x upsampling whose
weights are multiples of 1/8,
a flow that is constant per image, so every sample coordinate is exact and 1/8 away from
an integer): every per-pixel value a kernel computes in float32 is then exact, and the
only roundings are (a) float32's in the adjoint's n products and sums, at most
gamma_n = n u / (1 - n u) (u = 2^-24) times the sum of the absolute terms S, and (b) the
one final rounding to the half format, at most u_h = eps / 2 relative (plus half the
subnormal spacing). So |op - exact| <= u_h (|exact| + gamma_n S) + gamma_n S + subnormal.
Rounding each per-pixel term to half before the sum would add up to u_h S, which this
bound does not allow: the test checks that such a result would fail it.
"""

from __future__ import annotations

import math

import pytest
import torch

from fastwarp import reference

from op_helpers import backends

OPS = ("warp", "warp_blend")
NAMES = ("image", "flow", "texture", "mask")
ARITY = {"warp": 2, "warp_blend": 4}
N, C, H, W = 2, 2, 16, 12
GRID = (4, 3)  # 4x upsampling on both axes: UpAxis weights are multiples of 1/8
U32 = 2.0 ** -24


def dyadic_inputs(seed: int) -> list[torch.Tensor]:
    """float64 image (multiples of 1/64), flow, texture, mask, grad_output (multiples of 1/4),
    exactly representable in float16 and bfloat16 (at most 7 significant bits). A per-pixel
    flow gradient then needs 16 to 22 bits: exact in float32, not in float16."""
    gen = torch.Generator().manual_seed(seed)
    h, w = GRID

    def quarter(*shape):
        return torch.randint(-4, 5, shape, generator=gen).double() / 4

    image = torch.randint(-64, 65, (N, C, H, W), generator=gen).double() / 64
    texture = quarter(N, C, h, w)
    mask = torch.randint(0, 3, (N, 1, h, w), generator=gen).double() / 2
    # Constant per image, in pixels of the grid: times W / w = 4 in the image, the sample
    # coordinates' fractional parts are 5/8, 1/8 (image 0) and 5/8, 1/8 (image 1).
    flow = torch.empty(N, 2, h, w, dtype=torch.float64)
    flow[0, 0], flow[0, 1] = 5 / 32, -7 / 32
    flow[1, 0], flow[1, 1] = -3 / 32, 9 / 32
    grad_output = quarter(N, C, H, W)
    return [image, flow, texture, mask, grad_output]


def adjoint(name: str, lo: torch.Tensor, grad_hi: torch.Tensor) -> torch.Tensor:
    """The upsampling's adjoint (with the flow's W / w, H / h scale) applied to grad_hi, float64."""
    leaf = lo.detach().clone().requires_grad_()
    up = reference.upsample_flow(leaf, (H, W)) if name == "flow" else reference.upsample(leaf, (H, W))
    return torch.autograd.grad(up, leaf, grad_hi)[0]


def bound(exact: torch.Tensor, abs_sum: torch.Tensor, n_terms: int, dtype: torch.dtype,
          truncating: bool = False) -> torch.Tensor:
    """|op - exact| allowed: float32's sum of n_terms terms whose absolute values sum to
    abs_sum, then one rounding to dtype (see the module docstring); 1e-12 for the float64
    reference's own rounding. ``truncating``: the final conversion truncates (Triton's
    interpreter converts float32 to bfloat16 by dropping bits; a GPU rounds to nearest),
    a relative error of up to eps instead of eps / 2."""
    finfo = torch.finfo(dtype)
    u_h = finfo.eps if truncating else finfo.eps / 2
    gamma = n_terms * U32 / (1 - n_terms * U32)
    half_subnormal = finfo.tiny * finfo.eps / 2
    return u_h * (exact.abs() + gamma * abs_sum) + gamma * abs_sum + half_subnormal + 1e-12 * (1 + abs_sum)


@pytest.mark.parametrize("op", OPS)
@pytest.mark.parametrize("mode", ["border", "zeros"])
@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16], ids=str)
@pytest.mark.parametrize("backend", backends())
def test_half_gradients_with_small_maps_sum_in_float32(backend, dtype, mode, op):
    image, flow, texture, mask, grad_output = dyadic_inputs(seed=31)
    args64 = [image, flow, texture, mask][:ARITY[op]]
    for t in args64 + [grad_output]:
        assert torch.equal(t.to(dtype).double(), t), "inputs must be exact in the half format"

    # The op, in dtype on the backend's device.
    leaves = [t.to(device=backend.device, dtype=dtype).requires_grad_() for t in args64]
    out = backend.fn(op)(*leaves, padding_mode=mode)
    out.backward(grad_output.to(device=backend.device, dtype=dtype))

    # The float64 reference on the same inputs, and the sums of absolute terms.
    leaves64 = [t.clone().requires_grad_() for t in args64]
    out64 = getattr(reference, op)(*leaves64, padding_mode=mode)
    exact = torch.autograd.grad(out64, leaves64, grad_output)
    abs_leaves = [t.clone().requires_grad_(i == 0) for i, t in enumerate(args64)]
    if op == "warp_blend":
        abs_leaves[3] = abs_leaves[3].abs()
    # Image gradient: bilinear weights and the mask are >= 0, so |grad_output| gives sum |terms|.
    abs_image = torch.autograd.grad(getattr(reference, op)(*abs_leaves, padding_mode=mode), abs_leaves[0],
                                    grad_output.abs())[0]
    pixel = per_pixel_grads(op, args64, grad_output, mode)

    n_terms = (2 * math.ceil(H / GRID[0]) + 2) * (2 * math.ceil(W / GRID[1]) + 2)
    checks = [("output", out, out64.detach(), torch.zeros_like(out64), 0),
              ("image", leaves[0].grad, exact[0], abs_image, 4 * N)]
    for k, name in enumerate(NAMES[1:ARITY[op]]):
        abs_sum = adjoint(name, args64[k + 1], pixel[k].abs())
        checks.append((name, leaves[k + 1].grad, exact[k + 1], abs_sum, n_terms))
    for name, mine, ex, abs_sum, n in checks:
        assert mine.dtype == dtype, name
        err = (mine.detach().cpu().double() - ex).abs()
        allowed = bound(ex, abs_sum, max(n, 1), dtype, truncating=backend.interpreted and dtype == torch.bfloat16)
        worst = (err - allowed).argmax()
        assert bool((err <= allowed).all()), (f"{name}: error {err.flatten()[worst]:.3g} > bound "
                                              f"{allowed.flatten()[worst]:.3g} (exact {ex.flatten()[worst]:.6g})")
        if name == "flow":
            # The bound can fail: terms rounded to the half format before the sum exceed it.
            early = adjoint(name, args64[1], pixel[0].to(dtype).double()).to(dtype).double()
            assert bool(((early - ex).abs() > allowed).any()), "the bound does not tell the two rules apart"


def per_pixel_grads(op: str, args: list[torch.Tensor], grad_output: torch.Tensor, mode: str) -> list[torch.Tensor]:
    """float64 gradients with respect to the maps upsampled to the image (the per-pixel
    terms the adjoint sums), the flow in image pixels."""
    size = (H, W)
    hi = [reference.upsample_flow(args[1], size)] + [reference.upsample(t, size) for t in args[2:]]
    leaves = [t.detach().requires_grad_() for t in hi]
    out = getattr(reference, op)(args[0], *leaves, padding_mode=mode)
    return list(torch.autograd.grad(out, leaves, grad_output))
