"""Degenerate shapes on every backend (issue 13, item 3): no channels (C == 0), an empty
batch (N == 0), 1x1 and 1xW / Hx1 images, 1x1 maps and maps smaller than the image, for
warp, warp_blend (with and without theta) and mesh_flow, forward and backward. Results are
compared with :mod:`fastwarp.reference` in float64, and with exact zeros where the math
says 0 (no channel contributes to a flow or mask gradient; an empty mesh moves nothing).
Zero-height or zero-width images (and mesh_flow sizes) are refused with one clear error,
as the op contract says (docs/design.md, "The ops"; fastwarp/ops/checks.py).

Gradients that the op returns but that hold no element (C == 0 textures, N == 0) are
compared by shape only; allocated-but-unwritten memory would show in the others.
"""

from __future__ import annotations

import pytest
import torch

import fastwarp
from fastwarp import reference

from op_helpers import backends, make_inputs

MODES = ("border", "zeros")
OPS = ("warp", "warp_blend")
ARITY = {"warp": 2, "warp_blend": 4}
TOL = 1e-12  # float64 against the float64 reference

# (N, C, H, W), (h, w): the image and the maps' grid.
SHAPES = [
    ((2, 0, 5, 6), (5, 6)),    # no channels, maps at the image's size
    ((2, 0, 9, 8), (3, 2)),    # no channels, smaller maps (the upsampling adjoint)
    ((0, 3, 5, 6), (5, 6)),    # empty batch
    ((0, 3, 7, 9), (2, 3)),    # empty batch, smaller maps
    ((2, 3, 1, 1), (1, 1)),    # 1x1 image
    ((3, 2, 1, 7), (1, 3)),    # 1xW image, smaller maps
    ((2, 2, 6, 1), (2, 1)),    # Hx1 image, smaller maps
    ((2, 3, 7, 9), (1, 1)),    # 1x1 maps: one flow, texture and mask for the whole image
    ((1, 3, 11, 13), (4, 5)),  # maps smaller than the image, odd ratio
]


def shape_id(case) -> str:
    (shape, grid) = case
    return "x".join(map(str, shape)) + "-" + "x".join(map(str, grid))


def cpu64(t: torch.Tensor) -> torch.Tensor:
    return t.detach().to(device="cpu", dtype=torch.float64)


def resize_theta(N: int, grid, size, dtype=torch.float64) -> torch.Tensor:
    """docs/design.md: theta for which the composite is the op without theta."""
    (h, w), (H, W) = grid, size
    t = torch.tensor([[w / W, 0.0, 0.5 * w / W - 0.5], [0.0, h / H, 0.5 * h / H - 0.5]], dtype=dtype)
    return t.expand(N, 2, 3).contiguous()


def assert_close64(actual: torch.Tensor, expected: torch.Tensor, name: str) -> None:
    assert actual.shape == expected.shape, f"{name}: shape {tuple(actual.shape)} != {tuple(expected.shape)}"
    scale = max(1.0, expected.abs().max().item()) if expected.numel() else 1.0
    torch.testing.assert_close(cpu64(actual), expected, rtol=TOL, atol=TOL * scale,
                               msg=lambda m: f"{name}: {m}")


def run(fn, args, grad_output, **kwargs):
    """The output and every input's gradient (zeros where autograd gives none: an input the
    output does not depend on, e.g. anything of an empty output)."""
    leaves = [t.detach().clone().requires_grad_() for t in args]
    out = fn(*leaves, **kwargs)
    if out.requires_grad:
        grads = torch.autograd.grad(out, leaves, grad_output.to(out.device), allow_unused=True)
    else:
        grads = [None] * len(leaves)
    return out, [torch.zeros_like(t) if g is None else g for t, g in zip(leaves, grads)]


@pytest.mark.parametrize("theta", [False, True], ids=["plain", "theta"])
@pytest.mark.parametrize("op", OPS)
@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("case", SHAPES, ids=shape_id)
@pytest.mark.parametrize("backend", backends())
def test_degenerate_shapes_match_reference(backend, case, mode, op, theta):
    shape, grid = case
    inputs = make_inputs(shape, torch.float64, backend.device, grid=grid, flow_scale=2.0, seed=1)
    args = tuple(inputs[:ARITY[op]])
    gen = torch.Generator().manual_seed(2)
    grad_output = torch.rand(shape, dtype=torch.float64, generator=gen) * 2 - 1
    kwargs = dict(padding_mode=mode)
    if theta:
        kwargs["theta"] = resize_theta(shape[0], grid, shape[2:]).to(backend.device)
    out, grads = run(backend.fn(op), args, grad_output, **kwargs)
    ref_kwargs = dict(kwargs, theta=kwargs["theta"].cpu()) if theta else kwargs
    ref_out, ref_grads = run(getattr(reference, op), [cpu64(t) for t in args], grad_output, **ref_kwargs)

    assert_close64(out, ref_out, "output")
    for name, g, r in zip(("image", "flow", "texture", "mask"), grads, ref_grads):
        assert g.dtype == torch.float64, name
        assert_close64(g, r, f"grad {name}")
    if shape[1] == 0:
        # No channel: nothing reaches the flow or the mask. Exactly 0, not "small".
        for name, g in zip(("flow", "mask"), grads[1::2]):
            assert g.numel() > 0 and torch.equal(g.cpu(), torch.zeros_like(g.cpu())), f"grad {name}: {g.flatten()[:4]}"


@pytest.mark.parametrize("op", OPS)
@pytest.mark.parametrize("backend", backends())
def test_zero_channel_backward_op_writes_zeros(backend, op):
    """The registered backward op itself (not through autograd), with every gradient asked
    for, on buffers that are not pre-zeroed: the issue's all-zero problem whose CPU flow
    gradient was uninitialised memory (e.g. 108.2)."""
    N, H, W = 2, 4, 5
    image = torch.zeros(N, 0, H, W, dtype=torch.float32, device=backend.device)
    flow = torch.zeros(N, 2, H, W, dtype=torch.float32, device=backend.device)
    texture = torch.zeros(N, 0, H, W, dtype=torch.float32, device=backend.device)
    mask = torch.zeros(N, 1, H, W, dtype=torch.float32, device=backend.device)
    grad_output = torch.zeros_like(image)
    for grid in ((H, W), (2, 3)):
        f, t, m = (x[..., :grid[0], :grid[1]].contiguous() for x in (flow, texture, mask))
        args = (grad_output, image, f) + ((t, m) if op == "warp_blend" else ())
        for _ in range(3):  # fresh allocations each time: garbage would differ from run to run
            grads = backend.op(f"{op}_backward")(*args, "border", "bilinear", [True] * (len(args) - 1))
            assert grads[1].shape == f.shape and torch.equal(grads[1].cpu(), torch.zeros(f.shape))
            if op == "warp_blend":
                assert grads[3].shape == m.shape and torch.equal(grads[3].cpu(), torch.zeros(m.shape))
                assert grads[2].shape == t.shape


@pytest.mark.parametrize("theta", [False, True], ids=["plain", "theta"])
@pytest.mark.parametrize("op", OPS)
@pytest.mark.parametrize("size", [(0, 5), (4, 0), (0, 0)], ids=str)
@pytest.mark.parametrize("backend", backends())
def test_zero_height_or_width_is_refused(backend, size, op, theta):
    """The contract refuses an image with no rows or columns (a flow grid needs at least
    [1, 1]): one ValueError naming the image's shape, on every backend."""
    H, W = size
    image = torch.zeros(1, 3, H, W, device=backend.device)
    maps = (torch.zeros(1, 2, 1, 1, device=backend.device),)
    if op == "warp_blend":
        maps += (torch.zeros(1, 3, 1, 1, device=backend.device), torch.zeros(1, 1, 1, 1, device=backend.device))
    kwargs = dict(theta=torch.eye(2, 3, device=backend.device)[None]) if theta else {}
    with pytest.raises(ValueError, match=rf"fastwarp\.{op}: image height and width must be at least 1, "
                                         rf"got shape \[1, 3, {H}, {W}\]"):
        backend.fn(op)(image, *maps, **kwargs)


# --- mesh_flow --------------------------------------------------------------------------------

def covering_mesh(N: int, H: int, W: int, dtype=torch.float64):
    """A 3 x 3 vertex grid over the whole H x W image (pixel centres at integers, so the
    corners sit half a pixel outside), 8 triangles, the inner vertex moving: every pixel
    lies in a triangle, even for 1x1, 1xW and Hx1 images."""
    xs = torch.tensor([-0.5, (W - 1) / 2, W - 0.5], dtype=dtype)
    ys = torch.tensor([-0.5, (H - 1) / 2, H - 0.5], dtype=dtype)
    vertices = torch.stack(torch.meshgrid(xs, ys, indexing="xy"), -1).reshape(1, 9, 2).repeat(N, 1, 1)
    displacement = torch.zeros_like(vertices)
    displacement[:, 4] = torch.tensor([0.125 * W, -0.0625 * H], dtype=dtype)
    triangles = []
    for r in range(2):
        for c in range(2):
            a, b, d, e = 3 * r + c, 3 * r + c + 1, 3 * (r + 1) + c, 3 * (r + 1) + c + 1
            triangles += [[a, b, e], [a, e, d]]
    return vertices, displacement, torch.tensor(triangles)


MESH_CASES = [
    (0, (4, 5), "covering"),  # empty batch
    (2, (4, 5), "no_triangles"),
    (2, (4, 5), "no_vertices"),
    (2, (1, 1), "covering"),  # 1x1 flow
    (2, (1, 7), "covering"),  # 1xW
    (2, (6, 1), "covering"),  # Hx1
    (1, (5, 6), "outside"),   # a mesh entirely outside the image: flow 0 everywhere
]


@pytest.mark.parametrize("case", MESH_CASES, ids=lambda c: f"N{c[0]}-{c[1][0]}x{c[1][1]}-{c[2]}")
@pytest.mark.parametrize("backend", backends())
def test_mesh_flow_degenerate_match_reference(backend, case):
    N, (H, W), kind = case
    vertices, displacement, triangles = covering_mesh(N, H, W)
    if kind == "no_triangles":
        triangles = triangles[:0]
    elif kind == "no_vertices":
        vertices, displacement, triangles = vertices[:, :0], displacement[:, :0], triangles[:0]
    elif kind == "outside":
        vertices = vertices + 4.0 * max(H, W)
    gen = torch.Generator().manual_seed(3)
    grad_flow = torch.rand(N, 2, H, W, dtype=torch.float64, generator=gen) * 2 - 1
    leaves = [t.clone().to(backend.device).requires_grad_() for t in (vertices, displacement)]
    flow, index = fastwarp.mesh_flow(*leaves, triangles.to(backend.device), (H, W), backend=backend.name)
    grads = torch.autograd.grad(flow, leaves, grad_flow.to(backend.device), allow_unused=True)
    ref_leaves = [t.clone().requires_grad_() for t in (vertices, displacement)]
    ref_flow, ref_index = reference.mesh_flow(*ref_leaves, triangles, (H, W))
    if ref_flow.requires_grad:
        ref_grads = torch.autograd.grad(ref_flow, ref_leaves, grad_flow, allow_unused=True)
    else:
        ref_grads = (None, None)

    assert flow.shape == (N, 2, H, W) and index.shape == (N, H, W) and index.dtype == torch.int32
    assert torch.equal(index.cpu(), ref_index)
    assert_close64(flow, ref_flow, "flow")
    for name, g, r, leaf in zip(("vertices", "displacement"), grads, ref_grads, ref_leaves):
        g = torch.zeros_like(leaf) if g is None else g
        r = torch.zeros_like(leaf) if r is None else r
        assert_close64(g, r, f"grad {name}")
    if kind == "covering" and N > 0:
        assert bool((index >= 0).all()), "the covering mesh holds every pixel"
        assert flow.abs().max() > 0 and grads[1].abs().max() > 0, "a mesh that moves: non-trivial flow and gradient"
    if kind in ("no_triangles", "no_vertices", "outside"):
        assert torch.equal(flow.cpu(), torch.zeros(N, 2, H, W, dtype=torch.float64))
        assert bool((index == -1).all())
        for g in grads:
            assert g is None or torch.equal(g.cpu(), torch.zeros_like(g.cpu()))


@pytest.mark.parametrize("size", [(0, 5), (4, 0)], ids=str)
@pytest.mark.parametrize("backend", backends())
def test_mesh_flow_zero_size_is_refused(backend, size):
    vertices, displacement, triangles = covering_mesh(1, 4, 5)
    with pytest.raises(ValueError, match=r"fastwarp\.mesh_flow: size must be \(H, W\) with H >= 1 and W >= 1, "
                                         rf"got \[{size[0]}, {size[1]}\]"):
        fastwarp.mesh_flow(vertices.to(backend.device), displacement.to(backend.device), triangles.to(backend.device),
                           size, backend=backend.name)
