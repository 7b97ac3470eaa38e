"""mesh_flow: a triangle mesh's motion rendered to a dense backward flow (docs/design.md,
"mesh_flow"), every backend (CPU C++, CUDA, Triton) against the pure-PyTorch reference in
float64, and that reference against a per-pixel loop written from the contract's words.

Meshes: a jittered grid (random displacements, folds included) and a face-like ring mesh (a
centre vertex and concentric rings, each rotated by half a step: Delaunay-like triangles)
whose outer ring does not move. Gradients are checked only where no pixel lies near an edge
(:func:`assert_stable`): the flow is piecewise, and a pixel changing triangle is a jump.
"""

from __future__ import annotations

import math
import re

import pytest
import torch
from torch._subclasses.fake_tensor import FakeTensorMode

import fastwarp
from fastwarp.ops import reference
from op_helpers import Backend, backends

CPU = Backend("cpu", "cpu")


def grid_mesh(N=2, n=6, size=(24, 20), jitter=0.3, disp=1.5, seed=0, dtype=torch.float64):
    """A jittered ``n x n`` grid of vertices over the ``size`` grid, two triangles per cell
    (alternating diagonals), random displacements of ``disp`` px: (vertices, displacement,
    triangles)."""
    H, W = size
    g = torch.Generator().manual_seed(seed)
    ys, xs = torch.meshgrid(torch.linspace(1, H - 2, n, dtype=torch.float64),
                            torch.linspace(1, W - 2, n, dtype=torch.float64), indexing="ij")
    v = torch.stack([xs, ys], -1).view(1, -1, 2).repeat(N, 1, 1)
    v = v + torch.randn(v.shape, generator=g, dtype=torch.float64) * jitter
    tris = []
    for i in range(n - 1):
        for j in range(n - 1):
            a, b, c, d = i * n + j, i * n + j + 1, (i + 1) * n + j, (i + 1) * n + j + 1
            tris += [[a, b, c], [b, d, c]] if (i + j) % 2 else [[a, b, d], [a, d, c]]
    d = torch.randn(v.shape, generator=g, dtype=torch.float64) * disp
    return v.to(dtype), d.to(dtype), torch.tensor(tris)


def ring_mesh(N=1, rings=3, per_ring=10, centre=(15.3, 13.7), radius=11.0, disp=1.0, seed=0,
              dtype=torch.float64):
    """A face-like mesh: a centre vertex and ``rings`` concentric rings of ``per_ring``
    vertices, triangulated ring to ring; inner vertices jittered and moved by ~``disp`` px,
    the outer ring fixed (zero displacement). Returns (vertices, displacement, triangles,
    outer ring's vertex indices)."""
    g = torch.Generator().manual_seed(seed)
    pts = [centre]
    for r in range(1, rings + 1):
        for k in range(per_ring):
            a = 2 * math.pi * (k + 0.5 * (r % 2)) / per_ring
            pts.append((centre[0] + radius * r / rings * math.cos(a), centre[1] + radius * r / rings * math.sin(a)))
    tris = [[0, 1 + k, 1 + (k + 1) % per_ring] for k in range(per_ring)]
    for r in range(1, rings):
        a, b = 1 + (r - 1) * per_ring, 1 + r * per_ring
        for k in range(per_ring):
            k1 = (k + 1) % per_ring
            if r % 2:  # ring r is rotated half a step ahead of ring r + 1
                tris += [[a + k, b + k1, b + k], [a + k, a + k1, b + k1]]
            else:
                tris += [[a + k, a + k1, b + k], [a + k1, b + k1, b + k]]
    v = torch.tensor(pts, dtype=torch.float64).view(1, -1, 2).repeat(N, 1, 1)
    outer = torch.arange(1 + (rings - 1) * per_ring, 1 + rings * per_ring)
    inner = torch.ones(v.shape[1], dtype=torch.bool)
    inner[outer] = False
    v[:, inner] += torch.randn(N, int(inner.sum()), 2, generator=g, dtype=torch.float64) * 0.3
    d = torch.randn(v.shape, generator=g, dtype=torch.float64) * disp
    d[:, outer] = 0.0
    return v.to(dtype), d.to(dtype), torch.tensor(tris), outer


def run(backend: Backend, v, d, t, size, dtype=None):
    dtype = dtype or v.dtype
    return backend.fn("mesh_flow")(v.to(backend.device, dtype), d.to(backend.device, dtype), t.to(backend.device),
                                   size)


def assert_stable(v, d, t, size, eps=1e-4, draws=4):
    """No pixel changes triangle when the mesh moves by ~eps: the flow is smooth in the inputs
    there (gradcheck's steps are far smaller)."""
    _, index = reference.mesh_flow(v, d, t, size)
    g = torch.Generator().manual_seed(99)
    for _ in range(draws):
        _, moved = reference.mesh_flow(v + eps * torch.randn(v.shape, generator=g, dtype=v.dtype),
                                       d + eps * torch.randn(d.shape, generator=g, dtype=d.dtype), t, size)
        assert torch.equal(moved, index), "a pixel lies within ~1e-4 of an edge: pick another mesh"


# --- the reference against the contract, pixel by pixel --------------------------------------

def _naive(v, d, t, size, min_area2=1e-12):
    """The contract's words as loops over Python floats: for each pixel, the first valid
    destination triangle whose bounding box and barycentric coordinates hold it."""
    H, W = size
    N = len(v)
    flow = [[[[0.0] * W for _ in range(H)] for _ in range(2)] for _ in range(N)]
    index = [[[-1] * W for _ in range(H)] for _ in range(N)]
    for n in range(N):
        dest = [(v[n][i][0] + d[n][i][0], v[n][i][1] + d[n][i][1]) for i in range(len(v[n]))]
        for y in range(H):
            for x in range(W):
                for k, tri in enumerate(t):
                    (x0, y0), (x1, y1), (x2, y2) = (dest[i] for i in tri)
                    area2 = (x1 - x0) * (y2 - y0) - (x2 - x0) * (y1 - y0)
                    if not (min_area2 <= abs(area2) < math.inf):
                        continue
                    if not (min(x0, x1, x2) <= x <= max(x0, x1, x2) and min(y0, y1, y2) <= y <= max(y0, y1, y2)):
                        continue
                    b = [((x1 - x) * (y2 - y) - (x2 - x) * (y1 - y)) / area2,
                         ((x2 - x) * (y0 - y) - (x0 - x) * (y2 - y)) / area2,
                         ((x0 - x) * (y1 - y) - (x1 - x) * (y0 - y)) / area2]
                    if min(b) >= 0:
                        index[n][y][x] = k
                        for c in range(2):  # sum_k b_k L_k - p, the contract's own formula
                            flow[n][c][y][x] = sum(bk * v[n][i][c] for bk, i in zip(b, tri)) - (x, y)[c]
                        break
    return torch.tensor(flow, dtype=torch.float64), torch.tensor(index, dtype=torch.int32)


@pytest.mark.parametrize("mesh", ["grid", "ring"])
def test_reference_matches_the_contract_pixel_by_pixel(mesh):
    if mesh == "grid":
        v, d, t = grid_mesh(N=2, n=4, size=(13, 11), disp=2.5, seed=3)  # displacements this large fold it
        size = (13, 11)
    else:
        v, d, t, _ = ring_mesh(N=1, rings=2, per_ring=7, centre=(8.2, 7.1), radius=6.5, disp=1.0)
        size = (15, 17)
    flow, index = reference.mesh_flow(v, d, t, size)
    want_flow, want_index = _naive(v.tolist(), d.tolist(), t.tolist(), size)
    assert torch.equal(index, want_index)
    torch.testing.assert_close(flow, want_flow, rtol=0, atol=1e-12)
    assert 0 < int((index >= 0).sum()) < index.numel()


# --- every backend against the reference -------------------------------------------------------

CASES = {  # id: (mesh builder, size); Triton's interpreter runs the first two only (it is slow)
    "grid": (lambda: grid_mesh(N=2, n=6, size=(24, 20), disp=1.5, seed=0), (24, 20)),
    "ring": (lambda: ring_mesh(N=2, disp=1.0, seed=1)[:3], (29, 31)),
    "folded": (lambda: grid_mesh(N=3, n=8, size=(37, 33), disp=5.0, seed=2), (37, 33)),  # many folds
    "beyond": (lambda: grid_mesh(N=1, n=7, size=(20, 20), jitter=2.0, disp=8.0, seed=4), (16, 13)),  # off the grid
}


@pytest.mark.parametrize("case", list(CASES))
@pytest.mark.parametrize("backend", backends())
def test_forward_matches_reference(backend, case):
    if backend.interpreted and case in ("folded", "beyond"):
        pytest.skip("Triton's interpreter: the first two cases only")
    build, size = CASES[case]
    v, d, t = build()
    want_flow, want_index = reference.mesh_flow(v, d, t, size)
    flow, index = run(backend, v, d, t, size)
    assert flow.dtype == torch.float64 and flow.shape == (v.shape[0], 2, *size)
    assert index.dtype == torch.int32 and index.shape == (v.shape[0], *size)
    assert torch.equal(index.cpu(), want_index)
    torch.testing.assert_close(flow.cpu(), want_flow, rtol=0, atol=1e-12)
    # float32: the same rule in float32 (the reference's float32), close to float64's
    v32, d32 = v.float(), d.float()
    ref32_flow, ref32_index = reference.mesh_flow(v32, d32, t.int(), size)
    flow, index = run(backend, v32, d32, t.int(), size)
    assert flow.dtype == torch.float32
    assert torch.equal(index.cpu(), ref32_index)
    torch.testing.assert_close(flow.cpu(), ref32_flow, rtol=0, atol=2e-5)
    same = index.cpu() == want_index
    assert float(same.float().mean()) > 0.99  # float32 moves only pixels on edges
    torch.testing.assert_close(flow.cpu().double() * same[:, None], want_flow * same[:, None], rtol=0, atol=1e-4)


@pytest.mark.parametrize("backend", backends())
def test_zero_displacement_is_exactly_no_flow(backend):
    v, _, t = grid_mesh(N=2, disp=0.0)
    for dtype in (torch.float64, torch.float32):
        flow, index = run(backend, v, torch.zeros_like(v), t, (24, 20), dtype)
        assert torch.equal(flow.cpu(), torch.zeros(2, 2, 24, 20, dtype=dtype))
        assert int((index >= 0).sum()) > 0.6 * index.numel()  # the mesh still covers its pixels
        assert torch.equal(index.cpu(), reference.mesh_flow(v.to(dtype), torch.zeros_like(v, dtype=dtype), t,
                                                            (24, 20))[1])


@pytest.mark.parametrize("backend", backends())
def test_translation_is_a_constant_flow(backend):
    v, _, t = grid_mesh(N=1, disp=0.0)
    shift = torch.tensor([2.25, -1.5], dtype=torch.float64)
    flow, index = run(backend, v, shift.expand_as(v), t, (24, 20))
    inside = (index >= 0).cpu()
    assert int(inside.sum()) > 200
    want = (-shift).view(1, 2, 1, 1) * inside[:, None]
    torch.testing.assert_close(flow.cpu(), want.expand_as(flow), rtol=0, atol=1e-12)


@pytest.mark.parametrize("backend", backends())
def test_affine_motion_is_the_inverse_affine_map(backend):
    """dest = M v + c: inside the moved mesh flow(p) = M^-1 (p - c) - p; every pixel whose
    source lies inside the (regular) grid's rectangle is covered, none outside it."""
    H, W, n = 26, 23, 5
    v, _, t = grid_mesh(N=1, n=n, size=(H, W), jitter=0.0, disp=0.0)
    M = torch.tensor([[1.1, 0.2], [-0.15, 0.95]], dtype=torch.float64)
    c = torch.tensor([1.3, -0.7], dtype=torch.float64)
    d = v @ M.T + c - v
    flow, index = run(backend, v, d, t, (H, W))
    ys, xs = torch.meshgrid(torch.arange(H, dtype=torch.float64), torch.arange(W, dtype=torch.float64), indexing="ij")
    p = torch.stack([xs, ys], -1)
    source = (p - c) @ torch.linalg.inv(M).T
    want = (source - p).permute(2, 0, 1)
    inside = (index[0] >= 0).cpu()
    torch.testing.assert_close(flow[0].cpu() * inside, want * inside, rtol=0, atol=1e-12)
    sx, sy = source[..., 0], source[..., 1]
    margin = 1e-6
    well_in = (sx > 1 + margin) & (sx < W - 2 - margin) & (sy > 1 + margin) & (sy < H - 2 - margin)
    well_out = (sx < 1 - margin) | (sx > W - 2 + margin) | (sy < 1 - margin) | (sy > H - 2 + margin)
    assert bool(inside[well_in].all()) and not bool(inside[well_out].any())
    assert torch.equal(flow[0].cpu()[:, well_out], torch.zeros(2, int(well_out.sum()), dtype=torch.float64))


@pytest.mark.parametrize("backend", backends())
def test_fixed_outer_ring_fades_to_zero(backend):
    """A face-like mesh whose outer ring does not move: the flow is exactly 0 outside the
    ring and continuous across it: |flow(p)| <= K * (p's distance to the ring), K the steepest
    piece's slope max_t |A_t - I| (a flow that jumped at the ring would break this next to it)."""
    v, d, t, outer = ring_mesh(N=1, rings=4, per_ring=12, centre=(20.2, 19.6), radius=15.0, disp=0.7, seed=5)
    flow, index = (x.cpu()[0] for x in run(backend, v, d, t, (40, 41)))
    outside = index < 0
    assert int(outside.sum()) > 300
    assert torch.equal(flow[:, outside], torch.zeros(2, int(outside.sum()), dtype=torch.float64))
    assert float(flow.abs().max()) > 1.0  # inside, about the displacements' size
    L, D = v[0][t], (v + d)[0][t]  # [T, 3, 2]
    P, E = (L[:, 1:] - L[:, :1]).transpose(1, 2), (D[:, 1:] - D[:, :1]).transpose(1, 2)
    K = float(torch.linalg.matrix_norm(P @ torch.linalg.inv(E) - torch.eye(2, dtype=torch.float64), ord=2).max())
    ys, xs = torch.meshgrid(torch.arange(40.0, dtype=torch.float64), torch.arange(41.0, dtype=torch.float64),
                            indexing="ij")
    p = torch.stack([xs, ys], -1).view(-1, 1, 2)
    a, b = v[0, outer], v[0, outer.roll(-1)]  # the ring's edges
    s = (((p - a) * (b - a)).sum(-1) / ((b - a) ** 2).sum(-1)).clamp(0, 1)
    dist = (p - (a + s[..., None] * (b - a))).norm(dim=-1).amin(1).view(40, 41)
    inside = ~outside
    assert bool((flow.norm(dim=0)[inside] <= K * dist[inside] + 1e-9).all())
    near = inside & (dist < 1.0)
    assert int(near.sum()) > 30 and float(flow.norm(dim=0)[near].max()) > 0.01  # it does move there


@pytest.mark.parametrize("backend", backends())
def test_overlap_lowest_index_wins(backend):
    """Two overlapping triangles (a fold), moving differently: where both hold a pixel the
    lower index gives its flow; swapping their order swaps the winner. Either orientation."""
    v = torch.tensor([[[2.0, 2.0], [12.0, 2.0], [2.0, 12.0], [5.0, 4.5], [15.0, 4.5], [5.0, 14.5]]],
                     dtype=torch.float64)
    d = torch.tensor([[[1.0, 0.0]] * 3 + [[0.0, 1.0]] * 3], dtype=torch.float64)
    for order in ([[0, 1, 2], [3, 5, 4]], [[3, 4, 5], [0, 2, 1]]):  # clockwise and not
        t = torch.tensor(order)
        flow, index = (x.cpu() for x in run(backend, v, d, t, (18, 18)))
        ref_flow, ref_index = reference.mesh_flow(v, d, t, (18, 18))
        assert torch.equal(index, ref_index)
        first = (-d[0, order[0][0]]).view(2, 1)
        x, y = torch.arange(18).view(1, 18), torch.arange(18).view(18, 1)
        # inside both destination triangles: (3, 2) (13, 2) (3, 12) and (5, 5.5) (15, 5.5) (5, 15.5)
        both = (x >= 5) & (y >= 6) & (x + y <= 15)
        assert int(both.sum()) > 10
        assert bool((index[0][both] == 0).all())
        torch.testing.assert_close(flow[0][:, both], first.expand(2, int(both.sum())), rtol=0, atol=1e-12)
        assert int((index == 1).sum()) > 10


@pytest.mark.parametrize("backend", backends())
def test_degenerate_triangles_are_skipped(backend):
    """Zero-area triangles (collinear vertices, a repeated vertex, an area below 1e-12) and
    triangles with a non-finite vertex hold no pixel, even with the lowest indices."""
    v = torch.tensor([[[1.0, 1.0], [9.0, 9.0], [13.0, 13.0], [1.0, 13.0], [13.0, 1.0], [7.0, 7.0 + 1e-14],
                       [float("nan"), 3.0]]], dtype=torch.float64)
    d = torch.zeros_like(v)
    d[0, :6] = torch.tensor([0.5, -0.25])
    d[0, 6] = 0.0
    t = torch.tensor([[0, 1, 2], [0, 0, 3], [0, 5, 2], [6, 3, 4], [0, 4, 3], [4, 2, 3]])
    flow, index = (x.cpu() for x in run(backend, v, d, t, (16, 16)))
    ref_flow, ref_index = reference.mesh_flow(v, d, t, (16, 16))
    assert torch.equal(index, ref_index)
    torch.testing.assert_close(flow, ref_flow, rtol=0, atol=1e-12)
    assert set(index.unique().tolist()) == {-1, 4, 5}
    # the diagonal (on triangles 0 and 2's lines) belongs to the real triangles
    diag = torch.arange(2, 13)
    assert bool((index[0, diag, diag] >= 4).all())


@pytest.mark.parametrize("backend", backends())
def test_batch_items_are_independent(backend):
    v, d, t = grid_mesh(N=3, seed=6, disp=2.0)
    flow, index = run(backend, v, d, t, (24, 20))
    for n in range(3):
        f1, i1 = run(backend, v[n:n + 1], d[n:n + 1], t, (24, 20))
        assert torch.equal(f1, flow[n:n + 1]) and torch.equal(i1, index[n:n + 1])


@pytest.mark.parametrize("backend", backends())
def test_empty_batch_and_no_triangles(backend):
    v, d, t = grid_mesh(N=1)
    flow, index = run(backend, v[:0], d[:0], t, (5, 6))
    assert flow.shape == (0, 2, 5, 6) and index.shape == (0, 5, 6)
    flow, index = run(backend, v, d, t[:0], (5, 6))
    assert torch.equal(flow.cpu(), torch.zeros(1, 2, 5, 6, dtype=torch.float64))
    assert torch.equal(index.cpu(), torch.full((1, 5, 6), -1, dtype=torch.int32))


# --- gradients -------------------------------------------------------------------------------

def _small_mesh(seed=7):
    v, d, t = grid_mesh(N=1, n=4, size=(10, 9), jitter=0.25, disp=0.6, seed=seed)
    assert_stable(v, d, t, (10, 9))
    return v, d, t, (10, 9)


@pytest.mark.parametrize("backend", [pytest.param(Backend("reference", "cpu"), id="reference"), *backends()])
def test_gradcheck(backend):
    v, d, t, size = _small_mesh()
    inputs = [x.to(backend.device).detach().requires_grad_() for x in (v, d)]
    fn = lambda v_, d_: backend.fn("mesh_flow")(v_, d_, t.to(backend.device), size)[0]  # noqa: E731
    assert torch.autograd.gradcheck(fn, inputs, fast_mode=backend.interpreted)


@pytest.mark.parametrize("need", [(True, True), (False, True), (True, False)], ids=["both", "displacement", "vertices"])
@pytest.mark.parametrize("backend", backends())
def test_backward_matches_reference(backend, need):
    if backend.interpreted and need != (True, True):
        pytest.skip("Triton's interpreter: both gradients only (it is slow)")
    v, d, t = grid_mesh(N=2, n=7, size=(30, 27), disp=2.0, seed=8)  # folds included
    size = (30, 27)
    go = torch.randn(2, 2, *size, dtype=torch.float64, generator=torch.Generator().manual_seed(1))
    ref = [x.clone().requires_grad_(w) for x, w in zip((v, d), need)]
    wanted = [x for x in ref if x.requires_grad]
    want = torch.autograd.grad(reference.mesh_flow(*ref, t, size)[0], wanted, go)
    for dtype, tol in ((torch.float64, 1e-10), (torch.float32, 2e-3)):
        leaves = [x.to(backend.device, dtype).detach().requires_grad_(w) for x, w in zip((v, d), need)]
        flow, index = backend.fn("mesh_flow")(*leaves, t.to(backend.device), size)
        assert not index.requires_grad
        flow.backward(go.to(backend.device, dtype))
        got = [x.grad for x in leaves if x.requires_grad]
        assert all(x.grad is None for x in leaves if not x.requires_grad)
        for g, w in zip(got, want):
            assert g.dtype == dtype
            torch.testing.assert_close(g.cpu().double(), w, rtol=tol, atol=tol * float(w.abs().max()))


def test_cpu_backward_is_deterministic():
    v, d, t = grid_mesh(N=3, n=7, size=(30, 27), disp=2.0, seed=9, dtype=torch.float32)
    go = torch.randn(3, 2, 30, 27, generator=torch.Generator().manual_seed(2))
    index = fastwarp.mesh_flow(v, d, t, (30, 27))[1]
    a = torch.ops.fastwarp.mesh_flow_backward(go, v, d, t, index, [True, True])
    b = torch.ops.fastwarp.mesh_flow_backward(go, v, d, t, index, [True, True])
    assert all(torch.equal(x, y) for x, y in zip(a, b))


# --- the flow moves an image as the displacement says --------------------------------------------

@pytest.mark.parametrize("backend", backends())
def test_warp_moves_a_dot_to_its_vertex_plus_displacement(backend):
    v, d, t, outer = ring_mesh(N=1, rings=3, per_ring=12, centre=(19.6, 20.3), radius=15.0, disp=0.0, seed=10)
    d[0, 0] = torch.tensor([3.4, -2.2], dtype=torch.float64)  # the centre vertex moves, the rest stays
    H = W = 41
    ys, xs = torch.meshgrid(torch.arange(H, dtype=torch.float64), torch.arange(W, dtype=torch.float64), indexing="ij")
    cx, cy = v[0, 0].tolist()
    image = torch.exp(-((xs - cx) ** 2 + (ys - cy) ** 2) / (2 * 1.2 ** 2)).view(1, 1, H, W)
    flow, index = run(backend, v, d, t, (H, W))
    out = fastwarp.warp(image.to(backend.device), flow).cpu()
    peak = int(out.flatten().argmax())
    target = (v[0, 0] + d[0, 0]).tolist()
    assert abs(peak % W - target[0]) <= 1.0 and abs(peak // W - target[1]) <= 1.0
    outside = (index < 0).cpu().view(1, 1, H, W)
    assert torch.equal(out[outside], image[outside])  # flow 0: untouched, bit for bit


# --- registration: opcheck, torch.compile ---------------------------------------------------------

@pytest.mark.parametrize("backend", backends())
def test_opcheck(backend):
    """Includes a backward output mask that skips a gradient: the schema promises distinct
    (non-aliasing) outputs, so the skipped one must be an empty tensor of its own."""
    v, d, t = (x.to(backend.device) for x in grid_mesh(N=2, n=3, size=(9, 8), disp=0.5, seed=11, dtype=torch.float32))
    leaves = [v.detach().requires_grad_(), d.detach().requires_grad_()]
    torch.library.opcheck(backend.op("mesh_flow"), [*leaves, t, [9, 8]])
    index = backend.op("mesh_flow")(v, d, t, [9, 8])[1]
    go = torch.randn(2, 2, 9, 8, generator=torch.Generator().manual_seed(4)).to(backend.device)
    for mask in ([True, True], [False, True]):
        torch.library.opcheck(backend.op("mesh_flow_backward"), [go, v, d, t, index, mask])


def test_torch_compile_fullgraph():
    v, d, t = grid_mesh(N=2, n=5, size=(20, 18), disp=1.0, seed=12)
    image = torch.rand(2, 3, 20, 18, dtype=torch.float64, generator=torch.Generator().manual_seed(3))

    def f(v, d):
        flow, index = fastwarp.mesh_flow(v, d * 2, t, (20, 18))
        return fastwarp.warp(image, flow) * (index >= 0).unsqueeze(1)

    def grads(fn):
        leaves = [v.clone().requires_grad_(), d.clone().requires_grad_()]
        out = fn(*leaves)
        out.sum().backward()
        return [out.detach()] + [x.grad for x in leaves]

    torch._dynamo.reset()
    compiled = torch.compile(f, fullgraph=True, backend="aot_eager")
    for a, b in zip(grads(compiled), grads(f)):
        torch.testing.assert_close(a, b, rtol=1e-12, atol=1e-12)


# --- bad input -----------------------------------------------------------------------------------

def _base(device="cpu") -> dict:
    v, d, t = grid_mesh(N=2, n=3, size=(6, 7), dtype=torch.float32)
    return dict(vertices=v.to(device), displacement=d.to(device), triangles=t.to(device), size=[6, 7])


def _f(*shape, dtype=torch.float32):
    return torch.rand(*shape).to(dtype)


# (id, replacements, exception, message after "fastwarp.mesh_flow: ")
BAD_INPUTS = [
    ("vertices_rank", dict(vertices=_f(9, 2)), ValueError,
     r"vertices must be a 3-D tensor [N, V, 2], got 2-D with shape [9, 2]"),
    ("vertices_xy", dict(vertices=_f(2, 9, 3)), ValueError, r"vertices.shape[2] must be 2 (x, y), got 3"),
    ("vertices_half", dict(vertices=_f(2, 9, 2, dtype=torch.float16), displacement=_f(2, 9, 2, dtype=torch.float16)),
     TypeError, r"vertices must be a float32 or float64 tensor, got Half"),
    ("vertices_integer", dict(vertices=torch.ones(2, 9, 2, dtype=torch.int64)), TypeError,
     r"vertices must be a float32 or float64 tensor, got Long"),
    ("displacement_shape", dict(displacement=_f(2, 8, 2)), ValueError,
     r"displacement must have the vertices' shape [2, 9, 2], got [2, 8, 2]"),
    ("displacement_batch", dict(displacement=_f(1, 9, 2)), ValueError,
     r"displacement must have the vertices' shape [2, 9, 2], got [1, 9, 2]"),
    ("displacement_dtype", dict(displacement=_f(2, 9, 2, dtype=torch.float64)), TypeError,
     r"displacement.dtype must match vertices.dtype (Float), got Double"),
    ("triangles_rank", dict(triangles=torch.tensor([0, 1, 2])), ValueError,
     r"triangles must be a 2-D tensor [T, 3], got 1-D with shape [3]"),
    ("triangles_columns", dict(triangles=torch.tensor([[0, 1, 2, 3]])), ValueError,
     r"triangles.shape[1] must be 3 (vertex indices), got 4"),
    ("triangles_float", dict(triangles=torch.tensor([[0.0, 1.0, 2.0]])), TypeError,
     r"triangles must be an int32 or int64 tensor, got Float"),
    ("triangles_int16", dict(triangles=torch.tensor([[0, 1, 2]], dtype=torch.int16)), TypeError,
     r"triangles must be an int32 or int64 tensor, got Short"),
    ("size_zero", dict(size=[0, 7]), ValueError, r"size must be (H, W) with H >= 1 and W >= 1, got [0, 7]"),
    ("size_negative", dict(size=[6, -1]), ValueError, r"size must be (H, W) with H >= 1 and W >= 1, got [6, -1]"),
]
# Checks of values: eager calls only (fake and meta tensors have none).
BAD_VALUES = [
    ("index_too_large", dict(triangles=torch.tensor([[0, 1, 9]])), ValueError,
     r"triangles must hold vertex indices in [0, V) = [0, 9), got values from 0 to 9"),
    ("index_negative", dict(triangles=torch.tensor([[0, -1, 2]], dtype=torch.int32)), ValueError,
     r"triangles must hold vertex indices in [0, V) = [0, 9), got values from -1 to 2"),
]


def _call(backend: Backend, how: str, args: dict, op="mesh_flow"):
    """Calls the backend's op eagerly, on fake tensors (FakeTensorMode) or on the meta device."""
    tensors = [v for v in args.values() if isinstance(v, torch.Tensor)]
    rest = [v for v in args.values() if not isinstance(v, torch.Tensor)]
    fn = backend.op(op)
    if how == "eager":
        return fn(*tensors, *rest)
    if how == "meta":
        return fn(*(t.to("meta") for t in tensors), *rest)
    with FakeTensorMode() as fake_mode:
        return fn(*(fake_mode.from_tensor(t) for t in tensors), *rest)


@pytest.mark.parametrize("how", ["eager", "fake", "meta", "wrapper"])
@pytest.mark.parametrize("case,replace,exc,message", BAD_INPUTS + BAD_VALUES,
                         ids=[c[0] for c in BAD_INPUTS + BAD_VALUES])
@pytest.mark.parametrize("backend", backends())
def test_bad_input_raises(backend, case, replace, exc, message, how):
    if (case, replace, exc, message) in BAD_VALUES and how in ("fake", "meta"):
        pytest.skip("values are checked on real tensors only")
    args = _base(backend.device)
    args.update({k: v.to(backend.device) if isinstance(v, torch.Tensor) else v for k, v in replace.items()})
    with pytest.raises(exc, match=re.escape("fastwarp.mesh_flow: " + message)):
        if how == "wrapper":
            backend.fn("mesh_flow")(*args.values())
        else:
            _call(backend, how, args)


def test_wrapper_checks_size_and_devices():
    args = _base()
    with pytest.raises(ValueError, match=re.escape("fastwarp.mesh_flow: size must be (H, W) with H >= 1 and W >= 1, "
                                                   "got [6, 7, 1]")):
        fastwarp.mesh_flow(*list(args.values())[:3], (6, 7, 1))
    with pytest.raises(TypeError, match=re.escape("fastwarp.mesh_flow: size must be (H, W), a sequence of integers, "
                                                  "got (6.0, 7)")):
        fastwarp.mesh_flow(*list(args.values())[:3], (6.0, 7))
    assert fastwarp.mesh_flow(*list(args.values())[:3], torch.Size([6, 7]))[0].shape == (2, 2, 6, 7)
    for which in ("displacement", "triangles"):
        bad = dict(args, **{which: args[which].to("meta")})
        with pytest.raises(ValueError, match=re.escape(f"fastwarp.mesh_flow: {which} must be on the vertices' device "
                                                       "(cpu), got meta")):
            fastwarp.mesh_flow(*bad.values())
    with pytest.raises(ValueError, match=re.escape("fastwarp.mesh_flow: backend='cuda' needs CUDA tensors, got cpu")):
        fastwarp.mesh_flow(*args.values(), backend="cuda")
    with pytest.raises(ValueError, match="backend must be one of 'auto', 'cpu', 'cuda', 'triton', 'reference', "
                                         "got 'gpu'"):
        fastwarp.mesh_flow(*args.values(), backend="gpu")


BAD_BACKWARD = [
    ("grad_shape", dict(grad_flow=_f(2, 2, 6, 6)), ValueError,
     r"grad_flow must have the flow's shape [2, 2, 6, 7], got [2, 2, 6, 6]"),
    ("grad_dtype", dict(grad_flow=_f(2, 2, 6, 7, dtype=torch.float64)), TypeError,
     r"grad_flow.dtype must match vertices.dtype (Float), got Double"),
    ("index_dtype", dict(triangle_index=torch.zeros(2, 6, 7, dtype=torch.int64)), TypeError,
     r"triangle_index must be an int32 tensor, got Long"),
    ("index_shape", dict(triangle_index=torch.zeros(3, 6, 7, dtype=torch.int32)), ValueError,
     r"triangle_index must have shape [N, H, W] with N=2, got [3, 6, 7]"),
    ("vertices_xy", dict(vertices=_f(2, 9, 3)), ValueError, r"vertices.shape[2] must be 2 (x, y), got 3"),
]


@pytest.mark.parametrize("how", ["eager", "fake", "meta"])
@pytest.mark.parametrize("case,replace,exc,message", BAD_BACKWARD, ids=[c[0] for c in BAD_BACKWARD])
@pytest.mark.parametrize("backend", backends())
def test_backward_op_checks_its_arguments(backend, case, replace, exc, message, how):
    base = _base(backend.device)
    args = dict(grad_flow=_f(2, 2, 6, 7).to(backend.device), vertices=base["vertices"],
                displacement=base["displacement"], triangles=base["triangles"],
                triangle_index=torch.zeros(2, 6, 7, dtype=torch.int32, device=backend.device), output_mask=[True, True])
    args.update({k: v.to(backend.device) for k, v in replace.items()})
    with pytest.raises(exc, match=re.escape("fastwarp.mesh_flow_backward: " + message)):
        _call(backend, how, args, "mesh_flow_backward")


@pytest.mark.parametrize("backend", backends())
def test_backward_op_checks_triangle_index_values(backend):
    base = _base(backend.device)
    index = torch.full((2, 6, 7), 8, dtype=torch.int32, device=backend.device)  # T = 8: one too many
    with pytest.raises(ValueError, match=re.escape("fastwarp.mesh_flow_backward: triangle_index must hold triangle "
                                                   "indices in [-1, T) = [-1, 8), got values from 8 to 8")):
        backend.op("mesh_flow_backward")(_f(2, 2, 6, 7).to(backend.device), base["vertices"], base["displacement"],
                                         base["triangles"], index, [True, True])
