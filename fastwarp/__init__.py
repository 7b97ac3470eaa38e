"""fastwarp: facial expression editing by Action Units with fused flow-warp kernels.

The ops :func:`warp` and :func:`warp_blend` are torch ops with CPU (C++) and CUDA
kernels; :mod:`fastwarp.reference` is their pure-PyTorch specification;
:mod:`fastwarp.models` holds the editor networks, :mod:`fastwarp.face` the landmark,
AU and alignment pipeline, :mod:`fastwarp.editor` the end-to-end photo/video editor.
"""

from __future__ import annotations

import torch

from . import reference
from .au import AU_NAMES
from .ops import Warp, WarpBlend, warp, warp_blend

__version__ = "0.1.0"
__all__ = ["warp", "warp_blend", "Warp", "WarpBlend", "reference", "backends", "AU_NAMES", "__version__"]


def backends() -> dict[str, bool]:
    """Which kernel backends this installation can run.

    Returns:
        ``{"cpu": True, "cuda": bool}``: ``"cuda"`` is True when the CUDA kernels were
        compiled into ``fastwarp._C`` and a CUDA device is visible.
    """
    has_cuda_kernels = torch._C._dispatch_has_kernel_for_dispatch_key("fastwarp::warp", "CUDA")
    return {"cpu": True, "cuda": bool(has_cuda_kernels and torch.cuda.is_available())}
