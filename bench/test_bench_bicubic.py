"""Bicubic image taps (the ops' ``mode="bicubic"``, issue 21) against eager
``F.grid_sample(mode="bicubic")`` with its autograd and against fastwarp's own bilinear taps,
(8, 3, 256, 256) float32, full-size flow, border padding, on this run's device.

Providers: ``fastwarp-bicubic`` and ``fastwarp-bilinear`` (``fastwarp.warp``, the device's
kernels), ``eager-bicubic`` (``fastwarp.reference.warp``: the normalised grid built from the
flow, then ``F.grid_sample``, eager). Modes: ``forward`` (inputs requiring grad) and
``backward`` (``out.backward(grad_output)`` alone; the forward runs untimed).

Names: ``test_bicubic[<mode>-<provider>]``; ``bench/ratios.py`` prints the issue's ratios:
eager / fastwarp-bicubic (forward >= 2x, backward >= 1.5x) and fastwarp-bicubic /
fastwarp-bilinear (forward <= 2.5x).
"""

from __future__ import annotations

import pytest
import torch

import fastwarp
from fastwarp import reference

SHAPE = (8, 3, 256, 256)
PROVIDERS = ("fastwarp-bicubic", "fastwarp-bilinear", "eager-bicubic")
MODES = ("forward", "backward")


def _fn(provider: str):
    if provider == "eager-bicubic":
        return lambda image, flow: reference.warp(image, flow, mode="bicubic")
    mode = provider.split("-")[1]
    return lambda image, flow: fastwarp.warp(image, flow, mode=mode)


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("provider", PROVIDERS)
def test_bicubic(benchmark, bench_config, mode, provider):
    dev = bench_config.device
    gen = torch.Generator().manual_seed(0)
    image = torch.rand(SHAPE, generator=gen).to(dev).requires_grad_()
    flow = (torch.randn(SHAPE[0], 2, *SHAPE[2:], generator=gen) * 3).to(dev).requires_grad_()
    grad_output = torch.rand(SHAPE, generator=gen).to(dev)
    fn = _fn(provider)
    benchmark.group = f"bicubic {mode}"
    benchmark.extra_info.update(op="warp", mode=mode, provider=provider, shape=list(SHAPE), dtype="float32")
    sync = (lambda: torch.cuda.synchronize(dev)) if dev.type == "cuda" else (lambda: None)
    if mode == "forward":
        def setup():
            return (), {}

        def call():
            fn(image, flow)
            sync()
    else:
        pending = []

        def setup():
            image.grad = flow.grad = None
            pending[:] = [fn(image, flow)]
            sync()
            return (), {}

        def call():
            pending[0].backward(grad_output)
            sync()
    benchmark.pedantic(call, setup=setup, rounds=bench_config.rounds, warmup_rounds=bench_config.warmup,
                       iterations=1)
