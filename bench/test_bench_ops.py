"""CPU benchmarks of fastwarp's ops against their pure-PyTorch reference.

Providers: ``fastwarp`` (the op's CPU kernel) and ``reference`` (``fastwarp.reference``,
``F.grid_sample`` eager). Modes:

- ``forward``: the op on inputs that require grad (as in training);
- ``backward``: only ``out.backward(grad_output)``; the forward runs in each round's
  setup, outside the timing;
- ``full``: forward and backward together.

Every round gets fresh random inputs (built in the setup, untimed). Benchmarks of one
op, mode and shape share a group, so ``--benchmark-group-by=group`` prints the providers
side by side; ``bench/ratios.py`` turns the JSON into reference/fastwarp ratios.

Run (not part of the test suite)::

    python -m pytest bench -q --benchmark-enable --benchmark-json=/tmp/bench_ops.json
    python bench/ratios.py /tmp/bench_ops.json
"""

from __future__ import annotations

import pytest
import torch

import fastwarp
from fastwarp import reference

PROVIDERS = {
    "fastwarp": {"warp": fastwarp.warp, "warp_blend": fastwarp.warp_blend},
    "reference": {"warp": reference.warp, "warp_blend": reference.warp_blend},
}
SHAPES = [(8, 3, 128, 128), (8, 3, 256, 256)]
MODES = ("forward", "backward", "full")
DTYPE = torch.float32
ROUNDS = 25
WARMUP_ROUNDS = 3


def _inputs(op: str, shape, seed: int) -> tuple[list[torch.Tensor], torch.Tensor]:
    """Fresh leaves (requiring grad) for ``op`` and a grad_output: a smooth-ish flow of a
    few pixels, as a motion network predicts, mostly inside the image."""
    N, C, H, W = shape
    gen = torch.Generator().manual_seed(seed)
    image = torch.rand(N, C, H, W, generator=gen, dtype=DTYPE)
    flow = torch.randn(N, 2, H, W, generator=gen, dtype=DTYPE) * 4.0
    texture = torch.rand(N, C, H, W, generator=gen, dtype=DTYPE)
    mask = torch.rand(N, 1, H, W, generator=gen, dtype=DTYPE)
    grad_output = torch.randn(N, C, H, W, generator=gen, dtype=DTYPE)
    leaves = [image, flow] if op == "warp" else [image, flow, texture, mask]
    return [t.requires_grad_() for t in leaves], grad_output


def _shape_id(shape) -> str:
    return "x".join(map(str, shape))


@pytest.mark.parametrize("provider", list(PROVIDERS))
@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("shape", SHAPES, ids=_shape_id)
@pytest.mark.parametrize("op", ["warp", "warp_blend"])
def test_bench(benchmark, op, shape, mode, provider):
    fn = PROVIDERS[provider][op]
    seeds = iter(range(1_000_000))

    if mode == "forward":
        def setup():
            leaves, _ = _inputs(op, shape, next(seeds))
            return tuple(leaves), {}

        def target(*leaves):
            return fn(*leaves)
    elif mode == "backward":
        def setup():
            leaves, grad_output = _inputs(op, shape, next(seeds))
            return (fn(*leaves), grad_output), {}

        def target(out, grad_output):
            out.backward(grad_output)
    else:
        def setup():
            leaves, grad_output = _inputs(op, shape, next(seeds))
            return (leaves, grad_output), {}

        def target(leaves, grad_output):
            fn(*leaves).backward(grad_output)

    benchmark.group = f"{op} {mode} {_shape_id(shape)} {str(DTYPE).removeprefix('torch.')}"
    benchmark.extra_info.update(op=op, mode=mode, shape=list(shape), dtype=str(DTYPE), provider=provider,
                                device="cpu")
    benchmark.pedantic(target, setup=setup, rounds=ROUNDS, warmup_rounds=WARMUP_ROUNDS)
