"""Test helpers shared by the op tests: the backends to run them on, random op inputs in
every layout, the faces data location. Imported as ``op_helpers`` (pytest puts tests/ on
sys.path); conftest.py re-uses them for its fixtures and hooks (and sets
``TRITON_INTERPRET=1`` before this module imports fastwarp where no GPU is visible).
"""

from __future__ import annotations

import functools
import os
from pathlib import Path
from typing import Callable, NamedTuple

import pytest
import torch

import fastwarp

# Real face photos and videos (docs/design.md, "Real data"): read in place, never copied
# into the repository. FASTWARP_FACES_DIR points elsewhere.
FACES_DIR = Path(os.environ.get("FASTWARP_FACES_DIR")
                 or Path(__file__).resolve().parents[1].parent / "shared" / "data" / "faces")

HAS_CUDA = fastwarp.backends()["cuda"]
_NO_CUDA_REASON = ("needs CUDA: fastwarp's CUDA kernels are not built into fastwarp._C "
                   "or no CUDA device is visible (fastwarp.backends()['cuda'] is False)")
HAS_TRITON = fastwarp.backends()["triton"]
_NO_TRITON_REASON = ("needs Triton: the triton package does not import, or there is neither a CUDA device nor "
                     "TRITON_INTERPRET=1 (fastwarp.backends()['triton'] is False)")

LAYOUTS = ("contiguous", "channels_last", "strided")


class Backend(NamedTuple):
    """One kernel backend under test: its ``backend=`` name, the device its tensors live on,
    and whether it runs in Triton's interpreter (slow: tests may give it fewer cases)."""
    name: str
    device: str
    interpreted: bool = False

    def fn(self, op: str) -> Callable[..., torch.Tensor]:
        """The public op (``"warp"``, ``"warp_blend"``) with this backend."""
        return functools.partial(getattr(fastwarp, op), backend=self.name)

    def op(self, op: str):
        """The registered torch op behind it (``"warp"``, ``"warp_blend_backward"``, ...)."""
        return getattr(torch.ops.fastwarp, ("triton_" if self.name == "triton" else "") + op).default


def backends() -> list:
    """Backends to parametrise over: "cpu"; "cuda", marked ``needs_cuda`` (skipped with the
    reason where fastwarp has no usable CUDA backend); "triton", marked ``triton``, on CUDA
    where there is a GPU, else on CPU in Triton's interpreter (skipped with the reason where
    triton does not import or cannot run)."""
    on_gpu = torch.cuda.is_available()
    triton = Backend("triton", "cuda" if on_gpu else "cpu", interpreted=os.environ.get("TRITON_INTERPRET") == "1")
    return [pytest.param(Backend("cpu", "cpu"), id="cpu"),
            pytest.param(Backend("cuda", "cuda"), id="cuda",
                         marks=[pytest.mark.needs_cuda, pytest.mark.skipif(not HAS_CUDA, reason=_NO_CUDA_REASON)]),
            pytest.param(triton, id="triton",
                         marks=[pytest.mark.triton, pytest.mark.skipif(not HAS_TRITON, reason=_NO_TRITON_REASON)])]


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


def outputs_with_and_without_simd(script: str, tmp_path: Path) -> tuple[list, list]:
    """Runs ``script`` (Python that saves a list of cases to ``sys.argv[1]`` with torch.save)
    twice in a fresh interpreter, with the CPU's vectorised kernels (FASTWARP_CPU_SIMD=1; the
    scalar path anyway on a CPU without AVX2) and with the scalar path only (=0); returns the
    two loaded lists. tests/ is on the script's path."""
    import subprocess
    import sys

    import pytest

    if not cpu_has_avx2_fma():
        pytest.skip("this CPU has no AVX2 + FMA: fastwarp's vectorised CPU kernels cannot run here")
    # After the script, how many kernel calls chose the vectorised path (it must be > 0 with
    # SIMD on, or the comparison compared the scalar path with itself; 0 with it off).
    epilogue = "\nimport torch as _t, fastwarp as _f\nprint('SIMD_CALLS', _t.ops.fastwarp._cpu_simd_calls())\n"
    outputs = {}
    for simd in ("1", "0"):
        path = tmp_path / f"simd{simd}.pt"
        env = dict(os.environ, FASTWARP_CPU_SIMD=simd, PYTHONPATH=str(Path(__file__).parent))
        run = subprocess.run([sys.executable, "-c", script + epilogue, str(path)], check=True, env=env,
                             capture_output=True, text=True)
        calls = int(run.stdout.rsplit("SIMD_CALLS", 1)[1].split()[0])
        assert (calls > 0) == (simd == "1"), f"FASTWARP_CPU_SIMD={simd}: {calls} kernel calls ran vectorised"
        outputs[simd] = torch.load(path)
    return outputs["1"], outputs["0"]


def cpu_has_avx2_fma() -> bool:
    """Whether this CPU has AVX2 and FMA (what fastwarp's vectorised CPU kernels need), from
    /proc/cpuinfo (Linux; False elsewhere)."""
    try:
        flags = Path("/proc/cpuinfo").read_text()
    except OSError:
        return False
    line = next((ln for ln in flags.splitlines() if ln.startswith("flags")), "")
    words = set(line.split())
    return {"avx2", "fma"} <= words
