"""Test helpers shared by the op tests: the device list, random op inputs in every
layout, the faces data location. Imported as ``op_helpers`` (pytest puts tests/ on
sys.path); conftest.py re-uses them for its fixtures and hooks.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import NamedTuple

import pytest
import torch

import fastwarp

# Real face photos and videos (DESIGN.md, "Real data"): read in place, never copied
# into the repository. FASTWARP_FACES_DIR points elsewhere.
FACES_DIR = Path(os.environ.get("FASTWARP_FACES_DIR")
                 or Path(__file__).resolve().parents[1].parent / "shared" / "data" / "faces")

HAS_CUDA = fastwarp.backends()["cuda"]
_NO_CUDA_REASON = ("needs CUDA: fastwarp's CUDA kernels are not built into fastwarp._C "
                   "or no CUDA device is visible (fastwarp.backends()['cuda'] is False)")

LAYOUTS = ("contiguous", "channels_last", "strided")


def devices() -> list:
    """Devices to parametrise over: "cpu", and "cuda" marked ``needs_cuda`` (skipped
    with the reason where fastwarp has no usable CUDA backend)."""
    return ["cpu", pytest.param("cuda", marks=[pytest.mark.needs_cuda,
                                                pytest.mark.skipif(not HAS_CUDA, reason=_NO_CUDA_REASON)])]


class WarpInputs(NamedTuple):
    image: torch.Tensor    # [N, C, H, W]
    flow: torch.Tensor     # [N, 2, H, W], pixels
    texture: torch.Tensor  # [N, C, H, W]
    mask: torch.Tensor     # [N, 1, H, W], in [0, 1]


def away_from_integers(flow: torch.Tensor) -> torch.Tensor:
    """Moves every value's fractional part into [0.1, 0.9].

    Bilinear sampling is not differentiable at integer coordinates (the flow gradient is
    one-sided there) and, in border mode, on the image bounds: pixel centres are
    integers, so a flow with no near-integer values keeps every sample coordinate at
    least 0.1 px from both, and a float32/float16 rounding cannot move a sample into
    another cell.
    """
    whole = torch.floor(flow)
    return whole + 0.1 + 0.8 * (flow - whole)


def with_layout(t: torch.Tensor, layout: str) -> torch.Tensor:
    """The same values as ``t`` in ``layout``: "contiguous" NCHW, "channels_last", or
    "strided": a non-contiguous view into a larger buffer whose other elements are NaN
    (so a kernel that ignores strides reads NaN and fails the comparison)."""
    if layout == "contiguous":
        return t.contiguous()
    if layout == "channels_last":
        return t.contiguous(memory_format=torch.channels_last)
    if layout == "strided":
        N, C, H, W = t.shape
        big = torch.full((N, 2 * C + 1, H + 3, 2 * W + 1), float("nan"), dtype=t.dtype, device=t.device)
        view = big[:, 1::2, 2:H + 2, 1::2]
        view.copy_(t)
        return view
    raise ValueError(f"unknown layout {layout!r}, expected one of {LAYOUTS}")


def make_inputs(shape, dtype=torch.float64, device="cpu", layout="contiguous", flow_scale=3.0,
                seed=0, grid=None) -> WarpInputs:
    """Fresh random inputs of the ops (never zeros).

    Args:
        shape: (N, C, H, W) of the image.
        dtype, device: of every tensor.
        layout: "contiguous", "channels_last" or "strided" (see :func:`with_layout`).
        flow_scale: standard deviation of the flow in pixels; a few times the image size
            sends most samples outside it.
        seed: the data depend on it only (drawn in float64 on the CPU, then converted).
        grid: (h, w) of flow, texture and mask (resolution independence); default (H, W).

    Returns:
        WarpInputs(image [N, C, H, W] uniform in [-1, 1), flow [N, 2, h, w] with
        fractional parts in [0.1, 0.9] (see :func:`away_from_integers`), texture
        [N, C, h, w] like image, mask [N, 1, h, w] uniform in [0, 1)). None requires grad.
    """
    N, C, H, W = shape
    h, w = grid or (H, W)
    gen = torch.Generator().manual_seed(seed)
    opts = dict(dtype=torch.float64, generator=gen)
    image = torch.rand(N, C, H, W, **opts) * 2 - 1
    flow = away_from_integers(torch.randn(N, 2, h, w, **opts) * flow_scale)
    texture = torch.rand(N, C, h, w, **opts) * 2 - 1
    mask = torch.rand(N, 1, h, w, **opts)
    return WarpInputs(*(with_layout(t.to(device=device, dtype=dtype), layout)
                        for t in (image, flow, texture, mask)))
