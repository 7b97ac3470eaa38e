"""mesh_flow (a landmark mesh's motion rendered to a dense flow, docs/design.md "mesh_flow")
against its pure-PyTorch reference, on this run's device.

Cases: ``face``: one face (N=1) on the 128 px map grid, forward only (the real-time path);
``train``: a training batch (N=8), forward and backward together (``full``: the flow's
gradient reaches the displacements). The mesh is face-like: a centre vertex and 20
concentric rings of 25 vertices (V = 501, T = 975), the outer ring fixed, inner vertices
moved by ~1.5 px. Providers: ``fastwarp-cpu`` (C++) on CPU runs, ``fastwarp-cuda`` and
``fastwarp-triton`` on GPU runs, ``reference`` (:func:`fastwarp.reference.mesh_flow`) on both.

Names: ``test_mesh_flow[<mode>-<case>-<provider>]``, one group per mode, case and dtype
(``mesh_flow forward face-1x128x128 float32``), so ``bench/ratios.py``'s table prints
reference / provider per case::

    python -m pytest bench/test_bench_mesh_flow.py -q --benchmark-json=/tmp/m.json
    python bench/ratios.py /tmp/m.json
"""

from __future__ import annotations

import functools
import math

import pytest
import torch

import fastwarp
import harness
from fastwarp import reference

GRID = 128
CASES = {"face": ("forward", 1), "train": ("full", 8)}
PROVIDERS = ("fastwarp-cpu", "fastwarp-cuda", "fastwarp-triton", "reference")


def face_mesh(N: int, device: torch.device, rings: int = 20, per_ring: int = 25, seed: int = 0):
    """(vertices [N, V, 2], displacement [N, V, 2], triangles [T, 3]) float32 on ``device``: a
    centre vertex and ``rings`` rings of ``per_ring`` vertices (each rotated half a step from
    the last) over the 128 px grid, triangulated ring to ring; the outer ring fixed."""
    g = torch.Generator().manual_seed(seed)
    c, radius = (GRID - 1) / 2, 0.47 * GRID
    pts = [(c, c)]
    for r in range(1, rings + 1):
        for k in range(per_ring):
            a = 2 * math.pi * (k + 0.5 * (r % 2)) / per_ring
            pts.append((c + radius * r / rings * math.cos(a), c + radius * r / rings * math.sin(a)))
    tris = [[0, 1 + k, 1 + (k + 1) % per_ring] for k in range(per_ring)]
    for r in range(1, rings):
        a, b = 1 + (r - 1) * per_ring, 1 + r * per_ring
        for k in range(per_ring):
            k1 = (k + 1) % per_ring
            tris += ([[a + k, b + k1, b + k], [a + k, a + k1, b + k1]] if r % 2 else
                     [[a + k, a + k1, b + k], [a + k1, b + k1, b + k]])
    v = torch.tensor(pts).view(1, -1, 2).repeat(N, 1, 1)
    d = torch.randn(v.shape, generator=g) * 1.5
    d[:, -per_ring:] = 0.0
    return v.to(device), d.to(device), torch.tensor(tris, device=device)


def _params():
    for case, (mode, _) in CASES.items():
        for provider in PROVIDERS:
            yield pytest.param(mode, case, provider, id=f"{mode}-{case}-{provider}")


@pytest.mark.parametrize("mode, case, provider", list(_params()))
def test_mesh_flow(benchmark, bench_config, mode, case, provider):
    dev = bench_config.device
    reason = harness.unavailable_reason(provider, dev)
    if reason:
        pytest.skip(reason)
    N = CASES[case][1]
    v, d, t = face_mesh(N, dev)
    size = (GRID, GRID)
    fn = (reference.mesh_flow if provider == "reference"
          else functools.partial(fastwarp.mesh_flow, backend=provider.removeprefix("fastwarp-")))
    want = reference.mesh_flow(v, d, t, size)[1]
    assert torch.equal(fn(v, d, t, size)[1], want)  # the same pixels, whatever the provider
    go = torch.randn(N, 2, GRID, GRID, generator=torch.Generator().manual_seed(1)).to(dev)
    leaf = d.detach().requires_grad_(mode == "full")  # training: the displacements are predicted

    def call():
        flow, _ = fn(v, leaf, t, size)
        if mode == "full":
            flow.backward(go)
            leaf.grad = None

    sync = (lambda: torch.cuda.synchronize(dev)) if dev.type == "cuda" else (lambda: None)

    def timed():
        call()
        sync()

    case_id = f"{case}-{N}x{GRID}x{GRID}"
    benchmark.group = f"mesh_flow {mode} {case_id} float32"
    benchmark.extra_info.update(op="mesh_flow", mode=mode, case=case_id, dtype="float32", provider=provider,
                                vertices=v.shape[1], triangles=t.shape[0])
    benchmark.pedantic(timed, rounds=bench_config.rounds, warmup_rounds=bench_config.warmup, iterations=1)
